"""Passive DNS from a capture's own DNS responses, to name the flows nDPI left unnamed.

nfstream reports a DNS flow's query name but not its answers, so a connection to an
address resolved a moment earlier stays anonymous. :func:`passive_dns` walks the
(already validated, see :mod:`rogueflow.ingest.pcapcheck`) pcap or pcapng records,
decodes Ethernet (802.1Q/802.1ad tags, PPPoE sessions), Linux cooked v1/v2 and raw IP links, takes
IPv4/IPv6 UDP datagrams from port 53 and feeds their A/AAAA answers (time = packet
time, client = the datagram's destination) into the same
:class:`~rogueflow.ingest.zeek.PassiveDns` the Zeek reader uses for dns.log.

A malformed packet is skipped: the file structure was checked, and garbled payloads
are ordinary traffic, not a damaged file. DNS over TCP and fragmented responses beyond
the first fragment are not decoded.
"""

from __future__ import annotations

import ipaddress
import mmap
import struct
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from rogueflow.ingest import pcapcheck
from rogueflow.ingest.zeek import ANSWER_TYPES, PassiveDns
from rogueflow.intel.resolve import DNSParseError, parse_answers

ETHERNET, SLL, SLL2 = 1, 113, 276
RAW = frozenset({101, 12, 228, 229})
_VLAN = frozenset({0x8100, 0x88A8, 0x9100})
_IPV4, _IPV6 = 0x0800, 0x86DD
_PPPOE_SESSION = 0x8864
_PPP_IP = {0x0021: _IPV4, 0x0057: _IPV6}
_V6_EXTENSIONS = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_BATCH = 65_536  # answers handed to PassiveDns at once
_MAX_US = 2**33 * 10**6  # the Zeek reader's bound on plausible epoch times


def ip_of_frame(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside one link-layer frame, or None (other link or payload)."""
    if linktype in RAW:
        return frame
    if linktype == ETHERNET:
        off, etype = 14, int.from_bytes(frame[12:14], "big") if len(frame) >= 14 else -1
        while etype in _VLAN and len(frame) >= off + 4:
            etype, off = int.from_bytes(frame[off + 2 : off + 4], "big"), off + 4
        if etype == _PPPOE_SESSION and len(frame) >= off + 8:
            # PPPoE header (6 bytes), then the PPP protocol: broadband access links
            ppp = int.from_bytes(frame[off + 6 : off + 8], "big")
            etype, off = _PPP_IP.get(ppp, -1), off + 8
    elif linktype == SLL and len(frame) >= 16:
        off, etype = 16, int.from_bytes(frame[14:16], "big")
    elif linktype == SLL2 and len(frame) >= 20:
        off, etype = 20, int.from_bytes(frame[0:2], "big")
    else:
        return None
    return frame[off:] if etype in (_IPV4, _IPV6) else None


def dns_from_ip(ip: bytes) -> tuple[bytes, bytes] | None:
    """(client address, DNS payload) of a UDP datagram from port 53, else None."""
    if not ip:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if ihl < 20 or len(ip) < ihl + 8 or ip[9] != 17:
            return None
        if int.from_bytes(ip[6:8], "big") & 0x1FFF:  # a later fragment: no UDP header
            return None
        total = int.from_bytes(ip[2:4], "big")
        end = min(len(ip), total) if total >= ihl + 8 else len(ip)  # 0 with TSO offload
        client, off, udp_end = ip[16:20], ihl, end
    elif version == 6 and len(ip) >= 40:
        nxt, off = ip[6], 40
        while nxt in _V6_EXTENSIONS and off + 8 <= len(ip):
            nxt, off = ip[off], off + (ip[off + 1] + 1) * 8
        if nxt != 17 or off + 8 > len(ip):
            return None
        client, udp_end = ip[24:40], min(len(ip), 40 + int.from_bytes(ip[4:6], "big"))
    else:
        return None
    if int.from_bytes(ip[off : off + 2], "big") != 53:
        return None
    length = int.from_bytes(ip[off + 4 : off + 6], "big")
    stop = min(udp_end, off + length) if length >= 8 else udp_end
    return client, ip[off + 8 : stop]


def answers_of_frame(linktype: int, frame: bytes) -> tuple[bytes, str, list[tuple[bytes, int]]]:
    """(client, query name, [(address, TTL)]) of a DNS response frame; empty when it is
    none or is malformed (never raises)."""
    ip = ip_of_frame(linktype, frame)
    got = dns_from_ip(ip) if ip is not None else None
    if got is None:
        return b"", "", []
    try:
        qname, answers = parse_answers(got[1])
    except DNSParseError:
        return b"", "", []
    return (got[0], qname, answers) if qname else (b"", "", [])


def frames(path: Path) -> Iterator[tuple[int, int, int, bytes]]:
    """(packet number, time in µs, link type, frame bytes) of a validated capture."""
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        kind = pcapcheck.kind_of(bytes(buf[: pcapcheck.PCAP_HEADER]))
        if kind == "pcap":
            yield from _pcap_frames(buf)
        elif kind == "pcapng":
            yield from _pcapng_frames(buf)


def _pcap_frames(buf: mmap.mmap) -> Iterator[tuple[int, int, int, bytes]]:
    order, rec_size, unit = pcapcheck.PCAP_MAGICS[bytes(buf[:4])]
    (network,) = struct.unpack_from(order + "I", buf, 20)
    linktype = network & 0xFFFF
    rec = struct.Struct(order + "IIII")
    div = 1000 if unit == "ns" else 1
    off, n, size = pcapcheck.PCAP_HEADER, 0, len(buf)
    while off + rec_size <= size:
        n += 1
        secs, frac, incl, _ = rec.unpack_from(buf, off)
        start = off + rec_size
        off = start + incl
        yield n, secs * 1_000_000 + frac // div, linktype, buf[start : min(off, size)]


def _pcapng_frames(buf: mmap.mmap) -> Iterator[tuple[int, int, int, bytes]]:
    off, n, size, order = 0, 0, len(buf), "<"
    links: list[tuple[int, int, int]] = []  # per interface: link type, ticks/s, ts offset
    while off + 12 <= size:
        if bytes(buf[off : off + 4]) == pcapcheck.PCAPNG_SHB:
            order = (
                "<" if struct.unpack_from("<I", buf, off + 8)[0] == pcapcheck.PCAPNG_BOM else ">"
            )
            links = []
        btype, total = struct.unpack_from(order + "II", buf, off)
        if total < 12 or off + total > size:
            return  # pcapcheck refuses such files; stop rather than loop
        if btype == pcapcheck.IDB:
            links.append(_interface(buf, off, total, order))
        elif btype in (pcapcheck.EPB, pcapcheck.PB):
            n += 1
            if btype == pcapcheck.EPB:
                iface, hi, lo, caplen, _ = struct.unpack_from(order + "IIIII", buf, off + 8)
            else:
                iface, _, hi, lo, caplen, _ = struct.unpack_from(order + "HHIIII", buf, off + 8)
            if iface < len(links):
                linktype, per_second, shift = links[iface]
                ticks = (hi << 32) | lo
                us = ticks * 1_000_000 // per_second + shift * 1_000_000
                end = min(off + 28 + caplen, off + total - 4)
                yield n, us, linktype, buf[off + 28 : end]
        elif btype == pcapcheck.SPB:
            n += 1  # no timestamp: cannot be placed before a flow
        off += total


def _interface(buf: mmap.mmap, off: int, total: int, order: str) -> tuple[int, int, int]:
    """(link type, timestamp ticks per second, offset seconds) from an IDB's options."""
    (linktype,) = struct.unpack_from(order + "H", buf, off + 8)
    per_second, shift = 1_000_000, 0
    p, end = off + 16, off + total - 4
    while p + 4 <= end:
        code, length = struct.unpack_from(order + "HH", buf, p)
        if code == 0:
            break
        if code == 9 and length >= 1 and p + 5 <= end:  # if_tsresol
            r = buf[p + 4]
            # a power of two when the top bit is set, of ten otherwise; absurd values keep µs
            per_second = (
                (1 << (r & 0x7F) if r & 0x80 else 10 ** (r & 0x7F)) if r & 0x7F < 64 else per_second
            )
        elif code == 14 and length == 8 and p + 12 <= end:  # if_tsoffset
            (shift,) = struct.unpack_from(order + "q", buf, p + 4)
        p += 4 + (length + 3) // 4 * 4
    return linktype, max(per_second, 1), shift


def passive_dns(path: Path) -> PassiveDns | None:
    """The DNS answers seen in a validated capture, ready for lookups; None if none."""
    passive = PassiveDns()
    rows: dict[str, list[object]] = {k: [] for k in ("n", "ts", "client", "query", "ans", "ttl")}
    seen = False

    def flush() -> None:
        packet_numbers = rows["n"][:]
        batch = pa.RecordBatch.from_pydict(
            {
                "ts": pa.array(rows["ts"], ANSWER_TYPES["ts"]),
                "id.orig_h": pa.array(rows["client"], pa.string()),
                "query": pa.array(rows["query"], pa.string()),
                "answers": pa.array(rows["ans"], ANSWER_TYPES["answers"]),
                "TTLs": pa.array(rows["ttl"], ANSWER_TYPES["TTLs"]),
            }
        )
        passive.add(batch, path, lambda k: f"packet {packet_numbers[k]}")
        for v in rows.values():
            v.clear()

    for n, us, linktype, frame in frames(path):
        if linktype != ETHERNET and linktype != SLL and linktype != SLL2 and linktype not in RAW:
            continue
        client, qname, answers = answers_of_frame(linktype, frame)
        if not answers or not 0 <= us < _MAX_US:
            continue
        rows["n"].append(n)
        # nfstream reports flow starts in whole milliseconds: an answer in the same
        # millisecond as the connection it led to must not look later than it
        rows["ts"].append(us // 1000 / 1000)
        rows["client"].append(str(ipaddress.ip_address(client)))
        rows["query"].append(qname)
        rows["ans"].append([str(ipaddress.ip_address(a)) for a, _ in answers])
        rows["ttl"].append([float(t) for _, t in answers])
        seen = True
        if len(rows["n"]) >= _BATCH:
            flush()
    if rows["n"]:
        flush()
    if not seen:
        return None
    passive.finish()
    return passive


__all__ = ["answers_of_frame", "dns_from_ip", "frames", "ip_of_frame", "passive_dns"]
