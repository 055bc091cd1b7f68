"""Write MRT files (RFC 6396): TABLE_DUMP_V2 RIB snapshots and BGP4MP updates.

The demo scenario ships its BGP history in the format collectors publish, the
benchmark builds a full-size table with it, and the tests check every record
kind against ``bgpdump -m``.

>>> import io
>>> w = MrtWriter(io.BytesIO())
>>> w.peer_index(1_500_000_000, "10.0.0.1", [Peer("192.0.2.1", 64500)])
>>> w.rib(1_500_000_000, "175.45.176.0/22", [RibEntry(0, [64500, 4837, 131279], "192.0.2.1")])

All values are validated; a wrong one raises :class:`~rogueflow.errors.ConfigError`
naming it. Attribute blocks are cached because RIB entries repeat a few thousand
AS paths across hundreds of thousands of prefixes.
"""

from __future__ import annotations

import bz2
import gzip
import io
import operator
import socket
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

from rogueflow.errors import ConfigError

# MRT types and subtypes (RFC 6396 §4, RFC 8050 §4)
TABLE_DUMP_V2 = 13
PEER_INDEX_TABLE = 1
RIB_IPV4_UNICAST = 2
RIB_IPV6_UNICAST = 4
RIB_IPV4_UNICAST_ADDPATH = 8
RIB_IPV6_UNICAST_ADDPATH = 10
BGP4MP = 16
BGP4MP_MESSAGE_AS4 = 4
BGP4MP_STATE_CHANGE_AS4 = 5

# BGP path attributes (RFC 4271 §5, RFC 1997, RFC 4760) and their flags
ORIGIN, AS_PATH, NEXT_HOP, MED, LOCAL_PREF, ATOMIC_AGGREGATE, AGGREGATOR = 1, 2, 3, 4, 5, 6, 7
COMMUNITIES, MP_REACH_NLRI, MP_UNREACH_NLRI = 8, 14, 15
_OPTIONAL, _TRANSITIVE, _EXTENDED = 0x80, 0x40, 0x10
_FLAGS = {
    ORIGIN: _TRANSITIVE,
    AS_PATH: _TRANSITIVE,
    NEXT_HOP: _TRANSITIVE,
    MED: _OPTIONAL,
    LOCAL_PREF: _TRANSITIVE,
    ATOMIC_AGGREGATE: _TRANSITIVE,
    AGGREGATOR: _OPTIONAL | _TRANSITIVE,
    COMMUNITIES: _OPTIONAL | _TRANSITIVE,
    MP_REACH_NLRI: _OPTIONAL,
    MP_UNREACH_NLRI: _OPTIONAL,
}
AS_SET, AS_SEQUENCE = 1, 2
AFI_IPV4, AFI_IPV6, SAFI_UNICAST = 1, 2, 1
BGP_MAX_MESSAGE = 4096  # RFC 4271 §4
_BGP_HEADER = b"\xff" * 16  # marker; length and type follow
_BGP_UPDATE = 2
_U32 = 0xFFFFFFFF
_ATTR_CACHE_LIMIT = 1 << 18  # distinct attribute blocks kept; a full table has fewer

#: An AS path: ASNs in order; a nested sequence of ASNs stands for an AS_SET.
AsPath = Sequence[int | Sequence[int]]


@dataclass(frozen=True)
class Peer:
    """A BGP neighbour of the collector; ``bgp_id`` defaults to ``ip`` for IPv4."""

    ip: str
    asn: int
    bgp_id: str = ""


class RibEntry(NamedTuple):
    """One peer's route to a prefix in a RIB record (a tuple: RIBs hold millions)."""

    peer: int
    as_path: AsPath
    next_hop: str
    origin: int = 0
    originated: int | None = None
    med: int | None = None
    local_pref: int | None = None
    communities: Sequence[tuple[int, int]] = ()
    path_id: int | None = None
    atomic_aggregate: bool = False
    aggregator: tuple[int, str] | None = None  # (AS, router id)


def _ip(text: str, what: str) -> bytes:
    """Packed address (4 or 16 bytes) of IPv4 or IPv6 text."""
    if isinstance(text, str):
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                return socket.inet_pton(family, text)
            except OSError:
                continue
    raise ConfigError(f"{what} {text!r} is not an IPv4 or IPv6 address")


def _ipv4(text: str, what: str) -> bytes:
    raw = _ip(text, what)
    if len(raw) != 4:
        raise ConfigError(f"{what} {text!r} must be an IPv4 address")
    return raw


def _prefix(text: str) -> tuple[bool, bytes]:
    """(is IPv6, length byte + the prefix's significant bytes) as NLRI encodes it."""
    addr, slash, length = text.partition("/") if isinstance(text, str) else ("", "", "")
    raw = b""
    if slash and length.isdigit() and length.isascii():
        try:
            raw = socket.inet_pton(socket.AF_INET6 if ":" in addr else socket.AF_INET, addr)
        except OSError:
            raw = b""
    bits = int(length) if raw else 0
    if not raw or bits > len(raw) * 8:
        raise ConfigError(f"prefix {text!r} is not IPv4 or IPv6 CIDR text (like 10.0.0.0/8)")
    value = int.from_bytes(raw, "big")
    if value & ((1 << (len(raw) * 8 - bits)) - 1):
        raise ConfigError(f"prefix {text!r} has host bits set")
    return len(raw) == 16, bytes((bits,)) + raw[: (bits + 7) // 8]


def _check(value: int, hi: int, what: str) -> int:
    """``value`` as an int in 0..hi (numpy integers welcome), else ConfigError naming it."""
    try:
        number = operator.index(value)
    except TypeError:
        number = -1
    if isinstance(value, bool) or not 0 <= number <= hi:
        raise ConfigError(f"{what} {value!r} is out of range 0..{hi}")
    return number


def _attr(code: int, value: bytes) -> bytes:
    flags = _FLAGS[code]
    if len(value) > 255:
        return struct.pack(">BBH", flags | _EXTENDED, code, len(value)) + value
    return struct.pack(">BBB", flags, code, len(value)) + value


def _as_path(path: AsPath) -> bytes:
    """AS_PATH with 4-byte ASNs: runs of ASNs as AS_SEQUENCE segments of at most 255,
    each nested sequence as one AS_SET (aggregates write ``… 3549 {4237}``)."""
    out, run = [], []
    for hop in [*path, None]:
        if hop is not None and not isinstance(hop, Sequence):
            run.append(_check(hop, _U32, "AS"))
            continue
        for i in range(0, len(run), 255):
            seg = run[i : i + 255]
            out.append(struct.pack(f">BB{len(seg)}I", AS_SEQUENCE, len(seg), *seg))
        run = []
        if hop is None:
            continue
        if isinstance(hop, (str, bytes)) or not 0 < len(hop) < 256:
            raise ConfigError(f"AS path element {hop!r} is neither an AS nor a set of 1..255 ASes")
        members = [_check(asn, _U32, "AS") for asn in hop]
        out.append(struct.pack(f">BB{len(members)}I", AS_SET, len(members), *members))
    return _attr(AS_PATH, b"".join(out))


def _common_attrs(
    origin: int,
    as_path: AsPath,
    med: int | None,
    local_pref: int | None,
    communities: Sequence[tuple[int, int]],
    atomic_aggregate: bool = False,
    aggregator: tuple[int, str] | None = None,
) -> tuple[bytes, bytes]:
    """(ORIGIN + AS_PATH, MED … COMMUNITIES): NEXT_HOP goes between to keep type order."""
    head = _attr(ORIGIN, bytes((_check(origin, 2, "origin"),))) + _as_path(as_path)
    tail = b""
    if med is not None:
        tail += _attr(MED, struct.pack(">I", _check(med, _U32, "MED")))
    if local_pref is not None:
        tail += _attr(LOCAL_PREF, struct.pack(">I", _check(local_pref, _U32, "local_pref")))
    if atomic_aggregate:
        tail += _attr(ATOMIC_AGGREGATE, b"")
    if aggregator is not None:
        asn, router = aggregator
        value = struct.pack(">I", _check(asn, _U32, "aggregator AS"))
        tail += _attr(AGGREGATOR, value + _ipv4(router, "aggregator address"))
    if communities:
        packed = b"".join(
            struct.pack(">HH", _check(a, 0xFFFF, "community AS"), _check(b, 0xFFFF, "community"))
            for a, b in communities
        )
        tail += _attr(COMMUNITIES, packed)
    return head, tail


def _v6_next_hop(text: str) -> bytes:
    """An IPv6 next hop; IPv4 becomes IPv4-mapped IPv6 as in RFC 4798."""
    raw = _ip(text, "next hop")
    return raw if len(raw) == 16 else b"\0" * 10 + b"\xff\xff" + raw


def _hashable_key(v6: bool, e: RibEntry) -> tuple[object, ...]:
    """The attribute cache key of an entry given with lists instead of tuples."""
    path = tuple(tuple(h) if isinstance(h, Sequence) else h for h in e.as_path)
    comms = tuple(tuple(c) for c in e.communities)
    aggr = None if e.aggregator is None else tuple(e.aggregator)
    return (v6, path, e.next_hop, e.origin, e.med, e.local_pref, comms, e.atomic_aggregate, aggr)


class MrtWriter:
    """Appends MRT records to a binary file; call :meth:`peer_index` before :meth:`rib`."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self._peers = 0
        self._seq = 0
        self._attrs: dict[tuple[object, ...], bytes] = {}

    def _record(self, ts: int, mrt_type: int, subtype: int, body: bytes) -> None:
        _check(ts, _U32, "timestamp")
        self._fh.write(struct.pack(">IHHI", ts, mrt_type, subtype, len(body)) + body)

    def peer_index(self, ts: int, collector_id: str, peers: Sequence[Peer], view: str = "") -> None:
        """TABLE_DUMP_V2 PEER_INDEX_TABLE; RIB entries refer to peers by position."""
        name = view.encode()
        if len(name) > 0xFFFF or len(peers) > 0xFFFF:
            raise ConfigError(f"view name or peer list too long ({len(name)}, {len(peers)})")
        parts = [_ipv4(collector_id, "collector id"), struct.pack(">H", len(name)), name]
        parts.append(struct.pack(">H", len(peers)))
        for p in peers:
            ip = _ip(p.ip, "peer address")
            bgp_id = _ipv4(p.bgp_id or (p.ip if len(ip) == 4 else "0.0.0.0"), "peer BGP id")
            asn = _check(p.asn, _U32, "peer AS")
            kind = (1 if len(ip) == 16 else 0) | (2 if asn > 0xFFFF else 0)
            parts.append(bytes((kind,)) + bgp_id + ip)
            parts.append(struct.pack(">I" if kind & 2 else ">H", asn))
        self._record(ts, TABLE_DUMP_V2, PEER_INDEX_TABLE, b"".join(parts))
        self._peers = len(peers)

    def _rib_attrs(self, key: tuple[object, ...], e: RibEntry) -> bytes:
        """Encode (and cache under ``key``) the attribute block of one RIB entry."""
        head, tail = _common_attrs(
            e.origin,
            e.as_path,
            e.med,
            e.local_pref,
            e.communities,
            e.atomic_aggregate,
            e.aggregator,
        )
        if key[0]:  # IPv6, RFC 6396 §4.3.4: only next-hop length and next hop
            hop = _v6_next_hop(e.next_hop)
            blob = head + tail + _attr(MP_REACH_NLRI, bytes((len(hop),)) + hop)
        else:
            blob = head + _attr(NEXT_HOP, _ipv4(e.next_hop, "next hop")) + tail
        if len(self._attrs) >= _ATTR_CACHE_LIMIT:
            self._attrs.clear()
        self._attrs[key] = blob
        return blob

    def rib(self, ts: int, prefix: str, entries: Sequence[RibEntry]) -> None:
        """One RIB_IPV4/IPV6_UNICAST record (the ADD-PATH subtype if any entry has a path id)."""
        if not self._peers:
            raise ConfigError("write a peer index table (with at least one peer) before RIBs")
        if not entries or len(entries) > 0xFFFF:
            raise ConfigError(f"a RIB record for {prefix} needs 1..65535 entries")
        _check(ts, _U32, "timestamp")
        v6, nlri = _prefix(prefix)
        addpath = any(e.path_id is not None for e in entries)
        parts = [struct.pack(">I", self._seq), nlri, struct.pack(">H", len(entries))]
        cache, npeers = self._attrs, self._peers
        for e in entries:
            peer, path, hop, origin, originated, med, pref, comms, path_id, atomic, aggr = e
            if type(peer) is not int or not 0 <= peer < npeers:
                peer = _check(peer, npeers - 1, "peer index (position in the peer table)")
            key: tuple[object, ...] = (v6, path, hop, origin, med, pref, comms, atomic, aggr)
            try:
                blob = cache.get(key)
            except TypeError:  # lists in the path or communities: a hashable copy
                key = _hashable_key(v6, e)
                blob = cache.get(key)
            if blob is None:
                blob = self._rib_attrs(key, e)
            when = ts if originated is None else _check(originated, _U32, "originated time")
            if addpath:
                pid = _check(path_id or 0, _U32, "path id")
                parts.append(struct.pack(">HIIH", peer, when, pid, len(blob)))
            else:
                parts.append(struct.pack(">HIH", peer, when, len(blob)))
            parts.append(blob)
        subtype = (RIB_IPV6_UNICAST if v6 else RIB_IPV4_UNICAST) + (6 if addpath else 0)
        self._record(ts, TABLE_DUMP_V2, subtype, b"".join(parts))
        self._seq = (self._seq + 1) & _U32

    def _bgp4mp_head(self, peer: Peer, local_asn: int, local_ip: str) -> bytes:
        peer_ip, local = _ip(peer.ip, "peer address"), _ip(local_ip, "local address")
        if len(peer_ip) != len(local):
            raise ConfigError(f"peer {peer.ip} and local {local_ip} must be the same family")
        afi = AFI_IPV6 if len(local) == 16 else AFI_IPV4
        asns = struct.pack(
            ">IIHH", _check(peer.asn, _U32, "peer AS"), _check(local_asn, _U32, "local AS"), 0, afi
        )
        return asns + peer_ip + local

    def state_change(
        self, ts: int, peer: Peer, local_asn: int, local_ip: str, old: int, new: int
    ) -> None:
        """BGP4MP_STATE_CHANGE_AS4 (states 1 Idle … 6 Established, RFC 4271 §8.2.2)."""
        for state in (old, new):
            if _check(state, 6, "BGP state") == 0:
                raise ConfigError("BGP state 0 is not a state (1 Idle … 6 Established)")
        body = self._bgp4mp_head(peer, local_asn, local_ip) + struct.pack(">HH", old, new)
        self._record(ts, BGP4MP, BGP4MP_STATE_CHANGE_AS4, body)

    def update(
        self,
        ts: int,
        peer: Peer,
        local_asn: int,
        local_ip: str,
        *,
        announce: Sequence[str] = (),
        as_path: AsPath = (),
        next_hop: str | None = None,
        withdraw: Sequence[str] = (),
        origin: int = 0,
        communities: Sequence[tuple[int, int]] = (),
    ) -> None:
        """BGP4MP_MESSAGE_AS4 UPDATE(s): IPv6 prefixes travel in MP_(UN)REACH_NLRI.

        The next hop defaults to the peer's address; an IPv4 next hop for IPv6
        prefixes is sent IPv4-mapped. Split into several messages past 4096 bytes.
        """
        if not announce and not withdraw:
            raise ConfigError("an update needs prefixes to announce or withdraw")
        head = self._bgp4mp_head(peer, local_asn, local_ip)
        a4: list[bytes] = []
        a6: list[bytes] = []
        w4: list[bytes] = []
        w6: list[bytes] = []
        for text in withdraw:
            v6, nlri = _prefix(text)
            (w6 if v6 else w4).append(nlri)
        for text in announce:
            v6, nlri = _prefix(text)
            (a6 if v6 else a4).append(nlri)
        base_head, base_tail = _common_attrs(origin, as_path, None, None, communities)
        hop_text = peer.ip if next_hop is None else next_hop
        hop = _ip(hop_text, "next hop")
        nh_attr = b""
        if a4:
            if len(hop) != 4:
                raise ConfigError(f"IPv4 prefixes need an IPv4 next hop, not {hop_text!r}")
            nh_attr = _attr(NEXT_HOP, hop)
        mp_nh = _v6_next_hop(hop_text) if a6 else b""

        def message(w4: list[bytes], w6: list[bytes], a4: list[bytes], a6: list[bytes]) -> bytes:
            attrs = b""
            if w6:
                unreach = struct.pack(">HB", AFI_IPV6, SAFI_UNICAST) + b"".join(w6)
                attrs += _attr(MP_UNREACH_NLRI, unreach)
            if a4 or a6:
                attrs = base_head + (nh_attr if a4 else b"") + base_tail + attrs
            if a6:
                reach = struct.pack(">HBB", AFI_IPV6, SAFI_UNICAST, len(mp_nh)) + mp_nh
                attrs += _attr(MP_REACH_NLRI, reach + b"\0" + b"".join(a6))
            withdrawn = b"".join(w4)
            body = struct.pack(">H", len(withdrawn)) + withdrawn
            body += struct.pack(">H", len(attrs)) + attrs + b"".join(a4)
            return _BGP_HEADER + struct.pack(">HB", 19 + len(body), _BGP_UPDATE) + body

        # Greedy packing; sizes are recomputed exactly, so attribute header widths
        # (3 or 4 bytes) never need predicting. Prefixes are few per call.
        groups: list[list[bytes]] = [[], [], [], []]
        pending = [(0, n) for n in w4] + [(1, n) for n in w6]
        pending += [(2, n) for n in a4] + [(3, n) for n in a6]
        out: list[bytes] = []
        current = b""
        for slot, nlri in pending:
            groups[slot].append(nlri)
            candidate = message(*groups)
            if len(candidate) > BGP_MAX_MESSAGE:
                groups[slot].pop()
                if not any(groups):
                    raise ConfigError(
                        f"attributes too large for one BGP message ({len(candidate)} B)"
                    )
                out.append(current)
                groups = [[], [], [], []]
                groups[slot].append(nlri)
                candidate = message(*groups)
                if len(candidate) > BGP_MAX_MESSAGE:
                    raise ConfigError(
                        f"attributes too large for one BGP message ({len(candidate)} B)"
                    )
            current = candidate
        out.append(current)
        for msg in out:
            self._record(ts, BGP4MP, BGP4MP_MESSAGE_AS4, head + msg)


def open_mrt_output(path: Path) -> BinaryIO:
    """A buffered binary file for MRT records: gzip for ``.gz``, bzip2 for ``.bz2``.

    gzip uses level 6 and no timestamp: rewriting a file gives the same bytes.
    Large buffers matter: the compressors cost a Python call per ``write``.
    """
    path = Path(path)
    if path.suffix == ".gz":
        raw: io.BufferedIOBase = gzip.GzipFile(path, "wb", compresslevel=6, mtime=0)
    elif path.suffix == ".bz2":
        raw = bz2.BZ2File(path, "wb")
    else:
        return open(path, "wb", buffering=1 << 20)
    return io.BufferedWriter(raw, 1 << 20)
