"""sFlow v5 (sflow.org/sflow_version_5.txt): flow samples become one-packet flows.

A flow sample's raw packet header (Ethernet with VLAN tags, or bare IPv4/IPv6) gives
the 5-tuple, TCP flags and the layer-3 length; sampled-IPv4/IPv6 records give them
directly. Each becomes a flow of one packet with the sample's sampling rate and the
datagram's receive time (sFlow carries no flow times). Counter samples are counted
and ignored. A datagram is parsed whole before any of its samples is kept.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np

from rogueflow.collect import columns as cols
from rogueflow.collect.decoder import Malformed
from rogueflow.collect.stats import ExporterStats

if TYPE_CHECKING:
    from rogueflow.collect.decoder import Decoder

_II = struct.Struct("!II")
_V4_MAPPED = bytes(10) + b"\xff\xff"
_IPV6_EXTENSIONS = frozenset({0, 43, 60, 51})
_VLAN = frozenset({0x8100, 0x88A8, 0x9100})

#: (src 16 bytes, dst 16 bytes, sport, dport, proto, flags, l3 bytes)
Tuple5 = tuple[bytes, bytes, int, int, int, int, int]


class _Reader:
    def __init__(self, data: bytes, pos: int, end: int) -> None:
        self.data, self.pos, self.end = data, pos, end

    def u32(self) -> int:
        if self.pos + 4 > self.end:
            raise Malformed(f"malformed: sFlow structure truncated at byte {self.pos}")
        v: int = struct.unpack_from("!I", self.data, self.pos)[0]
        self.pos += 4
        return v

    def take(self, n: int) -> tuple[int, int]:
        if n < 0 or self.pos + n > self.end:
            raise Malformed(f"malformed: sFlow length {n} at byte {self.pos} overruns")
        a = self.pos
        self.pos += n
        return a, a + n


def parse_sflow(dec: Decoder, data: bytes, exporter: str, st: ExporterStats) -> None:
    rd = _Reader(data, 4, len(data))
    kind = rd.u32()
    if kind == 1:
        a, b = rd.take(4)
        agent = ".".join(str(x) for x in data[a:b])
    elif kind == 2:
        a, b = rd.take(16)
        agent = data[a:b].hex()
    else:
        raise Malformed(f"malformed: sFlow agent address type {kind}")
    sub, seq, _uptime, n_samples = rd.u32(), rd.u32(), rd.u32(), rd.u32()
    flows: list[tuple[Tuple5, int]] = []
    counters = 0
    for _ in range(n_samples):
        fmt = rd.u32()
        a, b = rd.take(rd.u32())
        enterprise, number = fmt >> 12, fmt & 0xFFF
        if enterprise != 0:
            continue
        if number in (1, 3):
            flows.extend(_flow_sample(_Reader(data, a, b), expanded=number == 3))
        elif number in (2, 4):
            counters += 1
    if rd.pos != len(data):
        raise Malformed(f"malformed: {len(data) - rd.pos} bytes after the last sFlow sample")
    lost, reset = dec.sequences.check((exporter, "sflow", agent, sub), seq, 1)
    st.lost_datagrams += lost
    st.sequence_resets += reset
    st.counter_samples += counters
    if flows:
        dec._sflow.add(flows, dec.exporter_id(exporter), dec.observation_id(f"{agent}/{sub}"))


def _flow_sample(rd: _Reader, *, expanded: bool) -> list[tuple[Tuple5, int]]:
    rd.u32()  # sequence number of this source's samples
    rd.take(8 if expanded else 4)  # source id
    rate = rd.u32()
    rd.take(8)  # sample pool, drops
    rd.take(16 if expanded else 8)  # input, output interfaces
    out = []
    for _ in range(rd.u32()):
        fmt = rd.u32()
        a, b = rd.take(rd.u32())
        if fmt >> 12:
            continue
        t = _flow_record(rd.data, a, b, fmt & 0xFFF)
        if t is not None:
            out.append((t, max(rate, 1)))
            break  # one packet per sample: the first decodable record describes it
    return out


def _flow_record(data: bytes, a: int, b: int, number: int) -> Tuple5 | None:
    if number == 1:  # raw packet header
        if b - a < 16:
            raise Malformed("malformed: sFlow raw header record truncated")
        proto, frame_len, stripped, hlen = struct.unpack_from("!IIII", data, a)
        if a + 16 + hlen > b:
            raise Malformed(f"malformed: sFlow header length {hlen} overruns its record")
        header = data[a + 16 : a + 16 + hlen]
        return _header(header, proto, frame_len - stripped)
    if number == 3 and b - a >= 32:  # sampled IPv4
        length, proto, sport, dport, flags = struct.unpack_from("!II8xIII", data, a)
        src, dst = _V4_MAPPED + data[a + 8 : a + 12], _V4_MAPPED + data[a + 12 : a + 16]
        return _ports(src, dst, proto, sport, dport, flags, length)
    if number == 4 and b - a >= 56:  # sampled IPv6
        length, proto = struct.unpack_from("!II", data, a)
        sport, dport, flags = struct.unpack_from("!III", data, a + 40)
        return _ports(
            data[a + 8 : a + 24], data[a + 24 : a + 40], proto, sport, dport, flags, length
        )
    return None


def _ports(
    src: bytes, dst: bytes, proto: int, sport: int, dport: int, flags: int, length: int
) -> Tuple5:
    return (src, dst, sport & 0xFFFF, dport & 0xFFFF, proto & 0xFF, flags & 0xFF, length)


def _header(h: bytes, proto: int, frame_len: int) -> Tuple5 | None:
    pos = 0
    if proto == 1:  # Ethernet
        if len(h) < 14:
            return None
        etype = int.from_bytes(h[12:14], "big")
        pos = 14
        while etype in _VLAN and len(h) >= pos + 4:
            etype = int.from_bytes(h[pos + 2 : pos + 4], "big")
            pos += 4
        l3_fallback = frame_len - pos
        if etype == 0x0800:
            return _ipv4(h, pos, l3_fallback)
        if etype == 0x86DD:
            return _ipv6(h, pos, l3_fallback)
        return None
    if proto == 11:
        return _ipv4(h, 0, frame_len)
    if proto == 12:
        return _ipv6(h, 0, frame_len)
    return None


def _ipv4(h: bytes, pos: int, fallback: int) -> Tuple5 | None:
    if len(h) < pos + 20 or h[pos] >> 4 != 4:
        return None
    ihl = (h[pos] & 0x0F) * 4
    total = int.from_bytes(h[pos + 2 : pos + 4], "big") or fallback
    frag = int.from_bytes(h[pos + 6 : pos + 8], "big") & 0x1FFF
    proto = h[pos + 9]
    src, dst = _V4_MAPPED + h[pos + 12 : pos + 16], _V4_MAPPED + h[pos + 16 : pos + 20]
    return _l4(h, pos + ihl if not frag else len(h), proto, src, dst, total)


def _ipv6(h: bytes, pos: int, fallback: int) -> Tuple5 | None:
    if len(h) < pos + 40 or h[pos] >> 4 != 6:
        return None
    total = int.from_bytes(h[pos + 4 : pos + 6], "big") + 40 if fallback >= 0 else fallback
    nxt = h[pos + 6]
    src, dst = h[pos + 8 : pos + 24], h[pos + 24 : pos + 40]
    pos += 40
    while nxt in _IPV6_EXTENSIONS and len(h) >= pos + 8:
        size = (h[pos + 1] + 2) * 4 if nxt == 51 else (h[pos + 1] + 1) * 8
        nxt = h[pos]
        pos += size
    if nxt == 44:  # fragment header: ports only in the first fragment
        if len(h) < pos + 8:
            return _ports(src, dst, nxt, 0, 0, 0, total)
        first = int.from_bytes(h[pos + 2 : pos + 4], "big") >> 3 == 0
        nxt = h[pos]
        pos = pos + 8 if first else len(h)
    return _l4(h, pos, nxt, src, dst, total)


def _l4(h: bytes, pos: int, proto: int, src: bytes, dst: bytes, total: int) -> Tuple5:
    sport = dport = flags = 0
    if proto in (6, 17, 132) and len(h) >= pos + 4:
        sport = int.from_bytes(h[pos : pos + 2], "big")
        dport = int.from_bytes(h[pos + 2 : pos + 4], "big")
        if proto == 6 and len(h) >= pos + 14:
            flags = h[pos + 13]
    elif proto in (1, 58) and len(h) >= pos + 2:
        dport = h[pos] * 256 + h[pos + 1]
    return (src, dst, sport, dport, proto, flags, max(total, 0))


class SflowBatch:
    """Samples of many datagrams, turned into columns at the next flush."""

    def __init__(self, dec: Decoder) -> None:
        self.dec = dec
        self.rows: list[tuple[Tuple5, int, int, int, int]] = []

    def add(self, flows: list[tuple[Tuple5, int]], exporter: int, observation: int) -> None:
        now_us = int(self.dec.now * 1_000_000)
        self.rows.extend((t, rate, now_us, exporter, observation) for t, rate in flows)
        self.dec.pending_records += len(flows)

    def decode(self) -> None:
        if not self.rows:
            return
        rows, self.rows = self.rows, []
        n = len(rows)
        src = np.frombuffer(b"".join(r[0][0] for r in rows), dtype=np.uint8).reshape(n, 16)
        dst = np.frombuffer(b"".join(r[0][1] for r in rows), dtype=np.uint8).reshape(n, 16)
        num = np.array([(*r[0][2:], r[1], r[2], r[3], r[4]) for r in rows], dtype=np.int64)
        ts = num[:, 6]
        self.dec.parts.append(
            cols.Part(
                start_us=ts,
                end_us=ts.copy(),
                src=src.copy(),
                dst=dst.copy(),
                sport=num[:, 0].astype(np.uint16),
                dport=num[:, 1].astype(np.uint16),
                proto=num[:, 2].astype(np.uint8),
                flags=num[:, 3].astype(np.uint8),
                packets=np.ones(n, dtype=np.int64),
                bytes=num[:, 4],
                rev_packets=np.zeros(n, dtype=np.int64),
                rev_bytes=np.zeros(n, dtype=np.int64),
                rate=np.minimum(num[:, 5], 2**32 - 1).astype(np.uint32),
                exporter=num[:, 7].astype(np.int32),
                observation=num[:, 8].astype(np.int32),
            )
        )
