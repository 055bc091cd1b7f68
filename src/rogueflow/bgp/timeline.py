"""Per-prefix routing timelines: who originates a prefix and which AS carries it, when.

The routes of the prefixes of interest (overlapping given address ranges, or
originated by given ASes) are replayed in time order across every ingested MRT
file:

* a RIB dump (TABLE_DUMP / TABLE_DUMP_V2 lines of one file with one timestamp) is
  the full table of each peer in it at that time: it sets those peers' routes and
  withdraws what they no longer carry;
* an announcement sets one (peer, prefix, path id) route, a withdrawal removes it;
* a peer session leaving Established (a STATE line) withdraws all its routes.

After every change the distinct peers per (prefix, origin AS, upstream AS) are
counted; an interval is one unchanged count. The upstream is the AS adjacent to
the origin in the path (prepends skipped, see :func:`rogueflow.bgp.lines.path_ends`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import duckdb
import pyarrow as pa

from rogueflow.bgp.store import BgpStore

ESTABLISHED = 6
Key = tuple[bytes, int, str, int]  # peer address, peer AS, prefix, path id
Route = tuple[int | None, int | None]  # origin, upstream


@dataclass(frozen=True)
class Interval:
    prefix: str
    prefix_lo: bytes
    prefix_hi: bytes
    origin_asn: int | None
    upstream_asn: int | None
    peers: int  # collector peers that see this (origin, upstream) for the prefix
    peers_total: int  # peers the collectors had at the start (the visibility denominator)
    valid_from: datetime
    valid_to: datetime | None  # exclusive; None while still in force

    @property
    def visibility(self) -> float:
        return self.peers / self.peers_total if self.peers_total else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "origin_asn": self.origin_asn,
            "upstream_asn": self.upstream_asn,
            "peers": self.peers,
            "peers_total": self.peers_total,
            "visibility": round(self.visibility, 4),
            "valid_from": self.valid_from.isoformat(),
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
        }


_COLS = (
    "ts, record, kind, peer_addr, peer_asn, prefix, prefix_lo, prefix_hi, path_id, "
    "origin_asn, upstream_asn, new_state"
)


def load_routes(
    store: BgpStore, ranges: Sequence[tuple[bytes, bytes]], asns: Iterable[int] = ()
) -> tuple[pa.Table, pa.Table]:
    """(routes of interest + all STATE lines, the peers of every RIB dump), from the store.

    A route is of interest when its prefix overlaps one of ``ranges`` (16-byte first
    and last addresses) or its origin is one of ``asns``.
    """
    files = [str(p) for p in store.files()]
    empty = pa.table({"x": pa.array([], pa.int64())})
    if not files:
        return empty, empty
    con = duckdb.connect()
    try:
        con.execute("SET threads TO 2")
        src = f"read_parquet({files!r}, filename = true)"
        cond = [
            f"(prefix_hi >= ${2 * i + 1} AND prefix_lo <= ${2 * i + 2})" for i in range(len(ranges))
        ]
        params: list[Any] = [b for r in ranges for b in r]
        origin = ", ".join(str(int(a)) for a in asns)
        if origin:
            cond.append(f"origin_asn IN ({origin})")
        where = " OR ".join(cond) or "FALSE"
        routes = con.sql(
            f"SELECT {_COLS}, filename FROM {src} WHERE kind = 'STATE' OR ({where}) "
            "ORDER BY ts, filename, record",
            params=params,
        ).to_arrow_table()
        peers = con.sql(
            f"SELECT DISTINCT filename, ts, peer_addr, peer_asn FROM {src} WHERE kind = 'B'"
        ).to_arrow_table()
    finally:
        con.close()
    return routes, peers


def build_timeline(routes: pa.Table, dump_peers: pa.Table) -> list[Interval]:
    """Replay ``routes`` (from :func:`load_routes`) into intervals, by prefix then time."""
    if routes.num_rows == 0 or "kind" not in routes.column_names:
        return []
    dumps: dict[tuple[str, datetime], set[tuple[bytes, int]]] = defaultdict(set)
    if dump_peers.num_rows and "peer_addr" in dump_peers.column_names:
        for f, ts, pa_, asn in zip(
            *(dump_peers[c].to_pylist() for c in ("filename", "ts", "peer_addr", "peer_asn")),
            strict=True,
        ):
            dumps[(f, ts)].add((pa_, asn))
    bounds: dict[str, tuple[bytes, bytes]] = {}
    state: dict[Key, Route] = {}
    by_prefix: dict[str, set[Key]] = defaultdict(set)
    open_: dict[tuple[str, int | None, int | None], tuple[int, int, datetime]] = {}
    out: list[Interval] = []
    known_peers: set[tuple[bytes, int]] = set()
    latest_dump: dict[str, set[tuple[bytes, int]]] = {}

    def total() -> int:
        peers = set().union(*latest_dump.values()) if latest_dump else known_peers
        return len(peers)

    def settle(prefixes: Iterable[str], when: datetime) -> None:
        n_total = total()
        for prefix in prefixes:
            counts: dict[tuple[int | None, int | None], set[tuple[bytes, int]]] = defaultdict(set)
            for key in by_prefix[prefix]:
                counts[state[key]].add((key[0], key[1]))
            now = {(prefix, o, u): len(p) for (o, u), p in counts.items()}
            for k in [k for k in open_ if k[0] == prefix]:
                peers, tot, since = open_[k]
                if now.get(k) != peers:
                    lo, hi = bounds[prefix]
                    if since < when:
                        out.append(Interval(prefix, lo, hi, k[1], k[2], peers, tot, since, when))
                    del open_[k]
            for k, peers in now.items():
                if k not in open_:
                    open_[k] = (peers, n_total, when)

    def drop(keys: Iterable[Key], touched: set[str]) -> None:
        for key in list(keys):
            del state[key]
            by_prefix[key[2]].discard(key)
            touched.add(key[2])

    cols = {c: routes[c].to_pylist() for c in routes.column_names}
    n = routes.num_rows
    i = 0
    while i < n:
        ts = cols["ts"][i]
        touched: set[str] = set()
        # one timestamp at a time; a RIB dump (B lines of one file) applies as a whole
        j = i
        while j < n and cols["ts"][j] == ts:
            j += 1
        dumped: dict[str, list[int]] = defaultdict(list)
        for r in range(i, j):
            if cols["kind"][r] == "B":
                dumped[cols["filename"][r]].append(r)
        for fname, rows in dumped.items():
            peers = dumps.get((fname, ts), set())
            latest_dump[fname] = peers
            drop([k for k in state if (k[0], k[1]) in peers], touched)
            for r in rows:
                touched.add(_apply_announce(cols, r, state, by_prefix, bounds))
        for r in range(i, j):
            kind = cols["kind"][r]
            peer = (cols["peer_addr"][r], cols["peer_asn"][r])
            known_peers.add(peer)
            if kind == "A":
                touched.add(_apply_announce(cols, r, state, by_prefix, bounds))
            elif kind == "W":
                key = (*peer, cols["prefix"][r], cols["path_id"][r] or 0)
                drop([key] if key in state else [], touched)
            elif kind == "STATE" and cols["new_state"][r] != ESTABLISHED:
                drop([k for k in state if (k[0], k[1]) == peer], touched)
        settle(touched, ts)
        i = j
    for (prefix, o, u), (count, tot, since) in open_.items():
        lo, hi = bounds[prefix]
        out.append(Interval(prefix, lo, hi, o, u, count, tot, since, None))
    out.sort(key=lambda iv: (iv.prefix_lo, iv.prefix_hi, iv.valid_from, iv.upstream_asn or 0))
    return out


def _apply_announce(
    cols: dict[str, list[Any]],
    r: int,
    state: dict[Key, Route],
    by_prefix: dict[str, set[Key]],
    bounds: dict[str, tuple[bytes, bytes]],
) -> str:
    prefix = cols["prefix"][r]
    key = (cols["peer_addr"][r], cols["peer_asn"][r], prefix, cols["path_id"][r] or 0)
    state[key] = (cols["origin_asn"][r], cols["upstream_asn"][r])
    by_prefix[prefix].add(key)
    bounds.setdefault(prefix, (cols["prefix_lo"][r], cols["prefix_hi"][r]))
    return str(prefix)


@dataclass(frozen=True)
class DayWeight:
    """How a prefix was carried on one UTC day: each upstream's share of peer-time."""

    day: date
    prefix: str
    prefix_lo: bytes
    prefix_hi: bytes
    origin_asn: int | None
    upstream_asn: int | None
    weight: float  # share of the prefix's peer-seconds that day; upstreams sum to 1
    peers: int  # most peers seeing this upstream at any time that day


def day_weights(intervals: Sequence[Interval], first: date, last: date) -> list[DayWeight]:
    """Per UTC day in [first, last] and announced prefix: each upstream's weight."""
    acc: dict[tuple[date, str, int | None, int | None], list[float]] = {}
    bounds: dict[str, tuple[bytes, bytes]] = {}
    lo_t = datetime(first.year, first.month, first.day, tzinfo=UTC)
    hi_t = datetime(last.year, last.month, last.day, tzinfo=UTC) + timedelta(days=1)
    for iv in intervals:
        bounds[iv.prefix] = (iv.prefix_lo, iv.prefix_hi)
        a = max(iv.valid_from, lo_t)
        b = min(iv.valid_to or hi_t, hi_t)
        d = a.date()
        while a < b:
            day_end = datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(days=1)
            seg_end = min(b, day_end)
            k = (d, iv.prefix, iv.origin_asn, iv.upstream_asn)
            cur = acc.setdefault(k, [0.0, 0.0])
            cur[0] += iv.peers * (seg_end - a).total_seconds()
            cur[1] = max(cur[1], iv.peers)
            a, d = seg_end, d + timedelta(days=1)
    totals: dict[tuple[date, str], float] = defaultdict(float)
    for (d, prefix, _o, _u), (ps, _mx) in acc.items():
        totals[(d, prefix)] += ps
    out = []
    for (d, prefix, o, u), (ps, mx) in sorted(acc.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        tot = totals[(d, prefix)]
        if tot > 0:
            out.append(DayWeight(d, prefix, *bounds[prefix], o, u, ps / tot, int(mx)))
    return out


@dataclass(frozen=True)
class Change:
    """An upstream that starts or stops carrying prefixes of interest."""

    ts: datetime
    upstream_asn: int
    change: str  # "appeared" or "lost"
    prefixes: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ts": self.ts.isoformat(),
            "upstream_asn": self.upstream_asn,
            "change": self.change,
            "prefixes": list(self.prefixes),
        }


def upstream_changes(intervals: Sequence[Interval], settle: timedelta) -> list[Change]:
    """When each upstream starts carrying any of the prefixes, and when it stops.

    A gap shorter than ``settle`` (a flap, a session reset) is no change; an
    upstream still carrying something at the end of the data is not lost.
    """
    spans: dict[int, list[tuple[datetime, datetime | None, str]]] = defaultdict(list)
    for iv in intervals:
        if iv.upstream_asn is not None and iv.peers > 0:
            spans[iv.upstream_asn].append((iv.valid_from, iv.valid_to, iv.prefix))
    out: list[Change] = []
    for asn, items in spans.items():
        items.sort(key=lambda s: s[0])
        start, end = items[0][0], items[0][1]
        started = {p for a, _b, p in items if a == start}
        for a, b, prefix in items[1:]:
            if end is not None and a - end >= settle:  # a real gap: lost, then back
                ended = {p for _a, e, p in items if e == end}
                out.append(Change(end, asn, "lost", tuple(sorted(ended))))
                out.append(Change(start, asn, "appeared", tuple(sorted(started))))
                start, started = a, set()
            if a == start:
                started.add(prefix)
            end = None if end is None or b is None else max(end, b)
        out.append(Change(start, asn, "appeared", tuple(sorted(started))))
        if end is not None:
            ended = {p for _a, e, p in items if e == end}
            out.append(Change(end, asn, "lost", tuple(sorted(ended))))
    out.sort(key=lambda c: (c.ts, c.upstream_asn, c.change))
    return out
