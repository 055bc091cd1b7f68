"""Passive DNS from pcaps: link/IP/UDP/DNS decoding, attribution of unnamed flows
through the real pcap reader and ingest, shared captures, and fuzzing."""

from __future__ import annotations

import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.ingest import pcapdns
from rogueflow.intel.resolve import DNSParseError, parse_answers

T0 = 1_500_000_000  # 2017-07-14
POOL = "203.0.113.9"


# --- packet builders ------------------------------------------------------------------


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return int(~s & 0xFFFF)


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                       ip4(src), ip4(dst))  # fmt: skip
    return head[:10] + struct.pack("!H", checksum(head)) + head[12:] + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def tcp(sport: int, dport: int, flags: int, seq: int = 1000, ack: int = 0) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)


def ether(ip: bytes, vlan: int | None = None) -> bytes:
    macs = bytes.fromhex("020000000001020000000002")
    tag = struct.pack("!HH", 0x8100, vlan) if vlan is not None else b""
    return macs + tag + struct.pack("!H", 0x0800 if ip[0] >> 4 == 4 else 0x86DD) + ip


def qname(name: str) -> bytes:
    return b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"


def dns_response(name: str, answers: list[tuple[bytes, int]], rcode: int = 0) -> bytes:
    msg = struct.pack("!HHHHHH", 0x1234, 0x8180 | rcode, 1, len(answers), 0, 0)
    msg += qname(name) + struct.pack("!HH", 1, 1)
    for raw, ttl in answers:
        rtype = 1 if len(raw) == 4 else 28
        msg += struct.pack("!HHHIH", 0xC00C, rtype, 1, ttl, len(raw)) + raw
    return msg


def write_pcap(path: Path, packets: list[tuple[float, bytes]], linktype: int = 1) -> Path:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype))
    for ts, frame in packets:
        sec, usec = int(ts), round((ts - int(ts)) * 1e6)
        out += struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


def mining_capture(path: Path) -> Path:
    """Client 10.0.0.2 resolves the pool (TTL 300), connects to it, then again after the
    TTL; 10.0.0.7 connects to the same address without having asked."""
    answer = dns_response("pool.minexmr.com", [(ip4(POOL), 300)])
    query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + answer[12:34]
    pkts: list[tuple[float, bytes]] = [
        (T0 + 0.0, ether(ipv4("10.0.0.2", "10.0.0.53", 17, udp(51000, 53, query)))),
        (T0 + 0.01, ether(ipv4("10.0.0.53", "10.0.0.2", 17, udp(53, 51000, answer)))),
    ]
    for t, client, port in ((1.0, "10.0.0.2", 40000), (2.0, "10.0.0.7", 40001),
                            (400.0, "10.0.0.2", 40002)):  # fmt: skip
        pkts += [
            (T0 + t, ether(ipv4(client, POOL, 6, tcp(port, 3333, 0x02)))),
            (T0 + t + 0.05, ether(ipv4(POOL, client, 6, tcp(3333, port, 0x12, 5000, 1001)))),
            (T0 + t + 0.1, ether(ipv4(client, POOL, 6, tcp(port, 3333, 0x10, 1001, 5001)))),
        ]
    return write_pcap(path, pkts)


# --- decoding -------------------------------------------------------------------------


def test_parse_answers_cname_chain_and_negative() -> None:
    msg = dns_response("a.example", [(ip4("192.0.2.1"), 60), (bytes(range(16)), 2**31 + 5)])
    assert parse_answers(msg) == ("a.example", [(ip4("192.0.2.1"), 60), (bytes(range(16)), 0)])
    assert parse_answers(dns_response("a.example", [(ip4("192.0.2.1"), 60)], rcode=3)) == ("", [])
    query = bytearray(msg)
    query[2] &= 0x7F  # QR bit off: a query carries no answers
    assert parse_answers(bytes(query)) == ("", [])
    with pytest.raises(DNSParseError):
        parse_answers(msg[:-2])


@pytest.mark.parametrize(
    ("linktype", "wrap"),
    [
        (1, lambda ip: ether(ip)),
        (1, lambda ip: ether(ip, vlan=7)),
        (1, lambda ip: ether(ip)[:12] + bytes.fromhex("88a80064") + ether(ip, vlan=9)[12:]),
        (113, lambda ip: bytes(14) + b"\x08\x00" + ip),
        (276, lambda ip: b"\x08\x00" + bytes(18) + ip),
        (101, lambda ip: ip),
        (12, lambda ip: ip),
        (228, lambda ip: ip),
    ],
)
def test_link_layers(linktype: int, wrap: Callable[[bytes], bytes]) -> None:
    ip = ipv4("10.0.0.53", "10.0.0.2", 17, udp(53, 5000, dns_response("x.test", [(ip4(POOL), 9)])))
    frame = wrap(ip)
    assert pcapdns.answers_of_frame(linktype, frame) == (
        ip4("10.0.0.2"),
        "x.test",
        [(ip4(POOL), 9)],
    )


def test_ipv6_pppoe_and_non_dns() -> None:
    payload = udp(53, 5000, dns_response("v6.test", [(bytes(16), 30)]))
    client = bytes.fromhex("20010db8000000000000000000000002")
    ip6 = struct.pack("!IHBB16s16s", 6 << 28, len(payload), 17, 64, bytes(16), client) + payload
    assert pcapdns.answers_of_frame(229, ip6) == (client, "v6.test", [(bytes(16), 30)])
    # PPPoE session over two VLAN tags, as in nDPI's dns.pcap
    pppoe = struct.pack("!BBHHH", 0x11, 0, 0x55, len(ip6) + 2, 0x0057) + ip6
    frame = bytes(12) + bytes.fromhex("8100000181000002") + b"\x88\x64" + pppoe
    assert pcapdns.answers_of_frame(1, frame)[1] == "v6.test"
    # a query (to port 53) and a datagram from another port are not answers
    query = ipv4("10.0.0.2", "10.0.0.53", 17, udp(5000, 53, dns_response("x.test", [])))
    other = ipv4("10.0.0.53", "10.0.0.2", 17, udp(54, 5000, dns_response("x.test", [])))
    assert pcapdns.answers_of_frame(101, query) == pcapdns.answers_of_frame(101, other)
    assert pcapdns.answers_of_frame(101, query) == (b"", "", [])


def test_pcapng_frames_honour_tsresol(tmp_path: Path) -> None:
    shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
    opts = struct.pack("<HHB3x", 9, 1, 9) + struct.pack("<HH", 0, 0)  # nanoseconds
    idb_body = struct.pack("<HHI", 1, 0, 0) + opts
    idb = (
        struct.pack("<II", 1, 12 + len(idb_body)) + idb_body + struct.pack("<I", 12 + len(idb_body))
    )
    frame = ether(ipv4("10.0.0.53", "10.0.0.2", 17, udp(53, 5000, b"")))
    data = frame + b"\0" * (-len(frame) % 4)
    ns = T0 * 10**9 + 123_456_789
    total = 32 + len(data)
    epb = struct.pack("<IIIIIII", 6, total, 0, ns >> 32, ns & 0xFFFFFFFF, len(frame), len(frame))
    epb += data + struct.pack("<I", total)
    path = tmp_path / "one.pcapng"
    path.write_bytes(shb + idb + epb)
    assert list(pcapdns.frames(path)) == [(1, T0 * 10**6 + 123_456, 1, frame)]


# --- through the reader and ingest ----------------------------------------------------


def test_passive_name_classifies_pool_flow(tmp_path: Path) -> None:
    pytest.importorskip("nfstream")
    from rogueflow.analyze.engine import DuckDBEngine
    from rogueflow.ops import ingest_paths
    from rogueflow.workspace import Workspace

    pcap = mining_capture(tmp_path / "mining.pcap")
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [pcap])
    eng = DuckDBEngine(ws)
    try:
        got = eng.sql(
            "select src_port, dns_query, category from flows where dst_port = 3333 "
            "order by ts_start"
        ).fetchall()
        dns = eng.sql("select dns_query from flows where dst_port = 53").fetchall()
    finally:
        eng.close()
    unnamed = (None, "unclassified")
    # after the answer: named, hence classified; another client; after the TTL ran out
    assert got == [(40000, "pool.minexmr.com", "crypto.mining"), (40001, *unnamed),
                   (40002, *unnamed)]  # fmt: skip
    assert dns == [("pool.minexmr.com",)]  # nDPI's own name for the DNS flow itself


@pytest.mark.needs_shared
def test_shared_captures(shared: Path) -> None:
    pytest.importorskip("nfstream")
    from rogueflow.ingest.base import ReadOptions
    from rogueflow.ingest.pcap import PcapReader

    # nDPI's dns.pcap: the A answers come over PPPoE inside two VLAN tags
    passive = pcapdns.passive_dns(shared / "ndpi" / "pcap" / "dns.pcap")
    assert passive is not None
    client = addr.parse_array(["82.178.113.245"])
    later = np.array([1484673026 * 10**6])
    for ip in ("169.45.219.235", "169.53.81.79"):
        found = passive.names(client, addr.parse_array([ip]), later, np.array([True]))
        assert found.to_pylist() == ["e7.whatsapp.net"]

    wiki = shared / "zeek-traces" / "wikipedia.pcap"
    passive = pcapdns.passive_dns(wiki)
    assert passive is not None
    t = pa.concat_tables(list(PcapReader().read(wiki, ReadOptions())))
    rows = [r for r in t.to_pylist() if r["dst_port"] == 80 and r["proto"] == 6]
    assert len(rows) >= 8
    # every HTTP flow carries its Host already, so the passive name is not used for them...
    assert all(r["server_name"] and r["dns_query"] is None for r in rows)
    # ...although the capture's answers do name the upload server
    upload = [r for r in rows if r["server_name"] == "upload.wikimedia.org"]
    assert upload
    start = np.array([int(r["ts_start"].timestamp() * 10**6) for r in upload], np.int64)
    src = addr.parse_array([addr.format_one(r["src_addr"]) for r in upload])
    dst = addr.parse_array([addr.format_one(r["dst_addr"]) for r in upload])
    found = passive.names(src, dst, start, np.ones(len(upload), np.bool_))
    assert set(found.to_pylist()) == {"upload.wikimedia.org"}


# --- fuzz -----------------------------------------------------------------------------

LINKS = st.sampled_from([1, 113, 276, 101, 12, 228, 229])


@settings(max_examples=400, deadline=None)
@given(LINKS, st.binary(max_size=300))
def test_fuzz_random_frames(linktype: int, frame: bytes) -> None:
    pcapdns.answers_of_frame(linktype, frame)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_dns_payload(payload: bytes, response: bool) -> None:
    if response and len(payload) >= 4:
        payload = payload[:2] + bytes([payload[2] | 0x80, payload[3] & 0xF0]) + payload[4:]
    frame = ether(ipv4("10.0.0.53", "10.0.0.2", 17, udp(53, 5000, payload)))
    got = pcapdns.answers_of_frame(1, frame)
    assert all(len(a) in (4, 16) and 0 <= ttl < 2**31 for a, ttl in got[2])
    try:
        name, answers = parse_answers(payload)
    except DNSParseError:
        assert got == (b"", "", [])  # malformed: skipped
        return
    assert got == ((ip4("10.0.0.2"), name, answers) if name else (b"", "", []))
