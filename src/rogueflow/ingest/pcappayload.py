"""Payload labels for a capture's flows: mining sessions, blockchain P2P and Tor, with proof.

:func:`payload_index` makes one pass over a validated pcap/pcapng (frames from
:mod:`rogueflow.ingest.pcapdns`), decodes IPv4/IPv6 TCP and UDP, and buffers only
connections whose first payload segments look like JSON-RPC, carry a P2P
signature or look like Tor's link handshake (:func:`rogueflow.detect.tor.probe`),
so ordinary traffic costs a header decode and one dictionary look-up per packet;
a connection that opens with an ordinary TLS ClientHello is given up at once (the
rest is encrypted). Each
buffered direction is reassembled by sequence number (duplicates and
retransmissions dropped, gaps tolerated, a capture may start mid-session) up to
:data:`DIRECTION_CAP` bytes; at most :data:`LIVE_CAP` connections are buffered at
once (the oldest is judged early when more arrive), so memory stays bounded on
any capture. A connection is judged when both sides closed, both buffers are
full, or the capture ends, by :func:`rogueflow.detect.stratum.detect_mining`,
:func:`rogueflow.detect.p2p.detect_p2p` and :func:`rogueflow.detect.tor.detect_tor`.

:meth:`PayloadIndex.label_columns` then labels a canonical flow table by
connection (either direction) and overlapping time.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr
from rogueflow.detect import p2p, stratum, tor
from rogueflow.detect.p2p import Label, Stream
from rogueflow.errors import InputError
from rogueflow.ingest.pcapdns import ETHERNET, RAW, SLL, SLL2, frames, ip_of_frame

DIRECTION_CAP = 64 * 1024  # bytes kept per direction: a login and a few jobs fit
LIVE_CAP = 2048  # connections buffered at once (≤ 2 × 64 KiB each)
IGNORED_CAP = 1_000_000  # connections remembered as uninteresting before forgetting them
PROBES = 16  # payload segments examined before a connection is ignored
PROBES_ON_CRYPTO_PORT = 1024  # more on ports where a capture may start mid-block
#: default ports of the P2P networks in :data:`p2p.MAGICS` and levin, and common
#: Stratum ports: only widen the probing, never label by themselves
CRYPTO_PORTS = frozenset({
    8333, 18333, 48333, 38333, 9333, 19335, 22556, 8233, 9999, 18080, 18089, 8433,
    3333, 4444, 5555, 7777, 8888, 14433, 14444, 45560, 45700,
})  # fmt: skip
SLACK_US = 1_000_000  # flow times are in ms in nfstream; captures and meters disagree a little
_LINKS = frozenset({ETHERNET, SLL, SLL2, *RAW})
_V6_EXTENSIONS = frozenset({0, 43, 60})
_MASK32 = 0xFFFFFFFF
_FIN, _SYN, _RST = 0x01, 0x02, 0x04
_HTTP = (b"POST ", b"GET ")
_PORTS, _SEQ = struct.Struct("!HH"), struct.Struct("!I")

Key = tuple[int, bytes, int, bytes, int]  # proto, address a, port a, address b, port b


def _interesting(payload: bytes, crypto_port: bool) -> bool:
    """Worth buffering? JSON-RPC markers anywhere, a P2P header opening the segment,
    or (on a conventional crypto port, where a capture may start mid-message) a P2P
    signature anywhere. Ordinary segments cost two substring scans."""
    head = payload[:4096]
    if head.startswith(_HTTP):
        return b"json" in head or b"X-Mining" in head or b"getwork" in head
    if any(m in head for m in stratum.MARKERS):
        return True
    if head[:4] in p2p.MAGICS or head[:8] == p2p.LEVIN_SIGNATURE:
        return True
    if p2p.nano_message(head) is not None:
        return True
    return crypto_port and any(sig in head for sig in p2p.SIGNATURES)


@dataclass
class _Direction:
    base: int | None = None  # sequence number of stream offset 0
    anchored: bool = False  # base set from a SYN: earlier bytes cannot exist
    chunks: list[tuple[int, bytes, int, int]] = field(default_factory=list)
    stored: int = 0
    full: bool = False
    closed: bool = False

    def add_tcp(self, seq: int, flags: int, data: bytes, n: int, us: int) -> None:
        if flags & _SYN:
            if self.base is None:
                self.base, self.anchored = (seq + 1) & _MASK32, True
            seq = (seq + 1) & _MASK32
        if flags & (_FIN | _RST):
            self.closed = True
        if not data or self.full:
            return
        if self.base is None:
            self.base = seq
        rel = (seq - self.base) & _MASK32
        if rel >= 1 << 31:  # before offset 0: an earlier segment arriving late
            back = (self.base - seq) & _MASK32
            if self.anchored or back + self.stored > DIRECTION_CAP:
                return
            self.chunks = [(r + back, c, cn, cu) for r, c, cn, cu in self.chunks]
            self.base, rel = seq, 0
        self._keep(rel, data, n, us)

    def add_datagram(self, data: bytes, n: int, us: int) -> None:
        if data and not self.full:
            self._keep(self.stored, data + b"\n", n, us)

    def _keep(self, rel: int, data: bytes, n: int, us: int) -> None:
        if rel >= DIRECTION_CAP:
            self.full = True
            return
        piece = data[: DIRECTION_CAP - rel]
        self.chunks.append((rel, piece, n, us))
        self.stored += len(piece)
        # retransmissions count too: a stream of them must not grow without bound
        self.full = rel + len(piece) >= DIRECTION_CAP or self.stored >= 2 * DIRECTION_CAP

    def stream(self) -> Stream:
        """The bytes in sequence order, each byte once; a gap becomes a newline so a
        JSON line is never glued across lost data."""
        out, marks, end = bytearray(), [], None
        for rel, data, n, us in sorted(self.chunks, key=lambda c: (c[0], -len(c[1]))):
            if end is not None and rel + len(data) <= end:
                continue  # duplicate
            if end is not None and rel > end:
                out += b"\n"
                end = rel
            skip = 0 if end is None else end - rel
            marks.append((len(out), n, us))
            out += data[skip:]
            end = rel + len(data)
        return Stream(bytes(out), marks)


@dataclass
class _Connection:
    first_us: int
    last_us: int
    sides: tuple[_Direction, _Direction] = field(
        default_factory=lambda: (_Direction(), _Direction())
    )

    def finished(self) -> bool:
        a, b = self.sides
        return (a.closed and b.closed) or (a.full and b.full)


@dataclass(frozen=True)
class Detection:
    """One labelled connection: endpoints (16-byte addresses), time span, label."""

    key: Key
    first_us: int
    last_us: int
    label: Label


class PayloadIndex:
    """Payload labels of one capture's connections, ready to label its flow table."""

    def __init__(self, detections: list[Detection], packets: int = 0, seconds: float = 0.0):
        self.detections = detections
        self.packets = packets
        self.seconds = seconds
        self._by_key: dict[Key, list[Detection]] = {}
        for d in detections:
            self._by_key.setdefault(d.key, []).append(d)

    def __len__(self) -> int:
        return len(self.detections)

    def __repr__(self) -> str:
        return f"PayloadIndex({len(self)} connections, {self.packets} packets)"

    def lookup(
        self, proto: int, a: bytes, pa_: int, b: bytes, pb: int, t0: int, t1: int
    ) -> Label | None:
        """The best label of the connection (either direction) overlapping [t0, t1] µs."""
        key = _key(proto, a, pa_, b, pb)[0]
        best: Label | None = None
        for d in self._by_key.get(key, ()):
            overlaps = t0 <= d.last_us + SLACK_US and t1 >= d.first_us - SLACK_US
            if overlaps and (best is None or d.label.confidence > best.confidence):
                best = d.label
        return best

    def label_columns(self, table: pa.Table) -> dict[str, pa.Array]:
        """service, category, confidence, evidence, coin, pool, wallet for each flow
        of a canonical table; null where no payload detection applies."""
        n = table.num_rows
        which = np.full(n, -1, dtype=np.int32)  # per flow: index into ``labels``, -1 none
        labels: dict[Label, int] = {}
        ports = np.array(sorted({p for k in self._by_key for p in (k[2], k[4])}), dtype=np.int64)
        if n and len(ports):
            proto = _ints(table["proto"])
            sport, dport = _ints(table["src_port"]), _ints(table["dst_port"])
            cand = np.nonzero(
                np.isin(proto, (6, 17)) & np.isin(sport, ports) & np.isin(dport, ports)
            )[0]
            if len(cand):
                rows = pa.array(cand)
                src = addr.to_matrix(table["src_addr"].take(rows))
                dst = addr.to_matrix(table["dst_addr"].take(rows))
                t0, t1 = _ints(table["ts_start"].take(rows)), _ints(table["ts_end"].take(rows))
                for j, i in enumerate(cand.tolist()):
                    a, b = src[j].tobytes(), dst[j].tobytes()
                    label = self.lookup(
                        int(proto[i]), a, int(sport[i]), b, int(dport[i]), int(t0[j]), int(t1[j])
                    )
                    if label is not None:
                        which[i] = labels.setdefault(label, len(labels))
        take = pa.array(which, pa.int32(), mask=which < 0)
        return {
            k: pa.array(
                [getattr(lb, k) for lb in labels],
                pa.float32() if k == "confidence" else pa.string(),
            ).take(take)
            for k in _COLUMNS
        }


_COLUMNS = ("service", "category", "confidence", "evidence", "coin", "pool", "wallet")


def _ints(col: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    if pa.types.is_timestamp(col.type):
        col = pc.cast(col, pa.int64())
    return np.asarray(col.cast(pa.int64()).fill_null(-1).to_numpy(zero_copy_only=False))


def _mapped(raw: bytes) -> bytes:
    return addr.V4_MAPPED_PREFIX + raw if len(raw) == 4 else raw


def _key(proto: int, a: bytes, pa_: int, b: bytes, pb: int) -> tuple[Key, int]:
    """(canonical connection key, direction 0/1) with 16-byte addresses."""
    a, b = _mapped(a), _mapped(b)
    if (a, pa_) <= (b, pb):
        return (proto, a, pa_, b, pb), 0
    return (proto, b, pb, a, pa_), 1


def _transport(ip: bytes) -> tuple[int, bytes, bytes, int, int] | None:
    """(protocol, source, destination, transport offset, end) of a TCP/UDP packet."""
    version = ip[0] >> 4 if ip else 0
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if ihl < 20 or len(ip) < ihl + 8 or ip[9] not in (6, 17):
            return None
        if int.from_bytes(ip[6:8], "big") & 0x1FFF:
            return None  # a later fragment: no transport header
        total = int.from_bytes(ip[2:4], "big")
        end = min(len(ip), total) if total >= ihl + 8 else len(ip)  # 0 with TSO offload
        return ip[9], ip[12:16], ip[16:20], ihl, end
    if version == 6 and len(ip) >= 48:
        nxt, off = ip[6], 40
        while nxt in _V6_EXTENSIONS and off + 8 <= len(ip):
            nxt, off = ip[off], off + (ip[off + 1] + 1) * 8
        if nxt not in (6, 17) or off + 8 > len(ip):
            return None
        plen = int.from_bytes(ip[4:6], "big")
        return nxt, ip[8:24], ip[24:40], off, min(len(ip), 40 + plen) if plen else len(ip)
    return None


class _Pass:
    """The state of one pass over a capture.

    ``state`` holds, per connection (addresses as on the wire, 4 or 16 bytes), either
    the number of payload segments still to probe (0: ignored), the live
    :class:`_Connection` being buffered, or the detection already made; one look-up
    per packet decides what to do with it.
    """

    def __init__(self) -> None:
        self.state: dict[Key, int | _Connection | Detection] = {}
        self.live: dict[Key, _Connection] = {}  # oldest first
        self.history: list[Detection] = []  # verdicts on earlier uses of reused ports
        self.ignored = 0

    def packet(self, n: int, us: int, linktype: int, frame: bytes) -> None:
        ip = ip_of_frame(linktype, frame)
        got = _transport(ip) if ip is not None else None
        if got is None or ip is None:
            return
        proto, src, dst, off, end = got
        if off + (20 if proto == 6 else 8) > end:
            return
        sport, dport = _PORTS.unpack_from(ip, off)
        if (src, sport) <= (dst, dport):
            key, side = (proto, src, sport, dst, dport), 0
        else:
            key, side = (proto, dst, dport, src, sport), 1
        now = self.state.get(key)
        if proto == 6 and ip[off + 13] & 0x12 == _SYN and now is not None:
            # a new connection reusing the ports: judged afresh, the old verdict kept apart
            if isinstance(now, _Connection):  # it carried data, so this SYN is a new one
                self.judge(key)
                now = self.state.get(key)
            if isinstance(now, Detection):
                self.history.append(now)
            self.state.pop(key, None)
            now = None
        if isinstance(now, Detection):  # judged: only its time span moves on
            if us > now.last_us:
                self.state[key] = Detection(now.key, now.first_us, us, now.label)
            return
        if now == 0:
            return
        if proto == 6:
            flags, data_off = ip[off + 13], (ip[off + 12] >> 4) * 4
            payload = ip[off + data_off : end] if data_off >= 20 else b""
        else:
            flags, payload = 0, ip[off + 8 : end]
        if not isinstance(now, _Connection):
            if not payload:
                return
            crypto = sport in CRYPTO_PORTS or dport in CRYPTO_PORTS
            verdict = tor.probe(payload, sport, dport)
            if verdict is False:  # an ordinary TLS ClientHello: nothing readable follows
                if now is None:
                    self._forget_ignored()
                    self.ignored += 1
                self.state[key] = 0
                return
            if not verdict and not _interesting(payload, crypto):
                if now is None:
                    now = PROBES_ON_CRYPTO_PORT if crypto else PROBES
                    self._forget_ignored()
                    self.ignored += 1
                self.state[key] = now - 1
                return
            now = self.state[key] = self.live[key] = _Connection(us, us)
            if len(self.live) > LIVE_CAP:
                self.judge(next(iter(self.live)))
        now.last_us = max(now.last_us, us)
        if proto == 6:
            seq = _SEQ.unpack_from(ip, off + 4)[0]
            now.sides[side].add_tcp(seq, flags, payload, n, us)
        else:
            now.sides[side].add_datagram(payload, n, us)
        if now.finished():
            self.judge(key)

    def _forget_ignored(self) -> None:
        """Drop the probe counts when there are too many: re-probing costs a little,
        forgetting a live connection or a detection would lose a label."""
        if self.ignored >= IGNORED_CAP:
            self.state = {k: v for k, v in self.state.items() if not isinstance(v, int)}
            self.ignored = 0

    def judge(self, key: Key) -> None:
        conn = self.live.pop(key)
        streams = [s.stream() for s in conn.sides if s.chunks]
        # Tor first: its proof is a TLS handshake, after which nothing else is readable,
        # and a mining or P2P connection fails its record check at once
        label = (
            tor.detect_tor(streams, (key[2], key[4]))
            or stratum.detect_mining(streams)
            or p2p.detect_p2p(streams)
        )
        if label is None:
            self.state[key] = 0
            return
        proto, a, pa_, b, pb = key
        det = Detection(
            (proto, _mapped(a), pa_, _mapped(b), pb), conn.first_us, conn.last_us, label
        )
        self.state[key] = det

    def finish(self) -> list[Detection]:
        for key in list(self.live):
            self.judge(key)
        return self.history + [v for v in self.state.values() if isinstance(v, Detection)]


def scan(packets: Iterable[tuple[int, int, int, bytes]]) -> list[Detection]:
    """Detections from (packet number, µs, link type, frame) tuples."""
    state = _Pass()
    for n, us, linktype, frame in packets:
        if linktype in _LINKS:
            state.packet(n, us, linktype, frame)
    return state.finish()


def payload_index(path: Path) -> PayloadIndex | None:
    """Mining, blockchain-P2P and Tor labels of a validated capture; None if none found."""
    counted = 0

    def counting() -> Iterable[tuple[int, int, int, bytes]]:
        nonlocal counted
        for item in frames(path):
            counted = item[0]
            yield item

    started = time.perf_counter()
    try:
        detections = scan(counting())
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None
    if not detections:
        return None
    return PayloadIndex(detections, counted, time.perf_counter() - started)


__all__ = [
    "CRYPTO_PORTS",
    "DIRECTION_CAP",
    "LIVE_CAP",
    "Detection",
    "PayloadIndex",
    "payload_index",
    "scan",
]
