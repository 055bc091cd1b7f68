"""Upstream shares of a territory per period: by routes and weighted by its traffic.

* **Route share** of upstream U in a period: the mean, over the days of the period
  and the territory's announced prefixes, of U's share of the collector peers'
  time on that prefix that day (:func:`rogueflow.bgp.timeline.day_weights`).
* **Traffic share**: every flow of the territory (its inside address, on its UTC
  day) goes to the most specific prefix covering that address on that day and is
  split over that prefix's upstreams by the same weights; the shares are of bytes.
  Bytes with no covering route that day are reported as uncovered, not guessed.

A prefix announced through two upstreams is split by how many collector peers see
each: an estimate of where the rest of the internet sends its traffic, the same
one route-level studies of the reference case made.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from rogueflow import addr
from rogueflow.bgp.store import BgpStore
from rogueflow.bgp.timeline import (
    Change,
    DayWeight,
    Interval,
    build_timeline,
    day_weights,
    load_routes,
    upstream_changes,
)
from rogueflow.territory import Territory
from rogueflow.workspace import Workspace

PERIODS = ("month", "quarter", "year")
SETTLE = timedelta(days=2)  # an upstream must be gone this long to count as lost


def period_label(d: date, period: str) -> str:
    if period == "month":
        return f"{d.year}-{d.month:02d}"
    if period == "quarter":
        return f"{d.year}-Q{(d.month - 1) // 3 + 1}"
    return str(d.year)


@dataclass
class Routing:
    """The territory's routing as the BGP store shows it."""

    intervals: list[Interval]
    weights: list[DayWeight]
    changes: list[Change]
    sources: list[dict[str, Any]] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.intervals


def territory_routing(
    ws: Workspace, t: Territory, first: date | None = None, last: date | None = None
) -> Routing:
    """Timeline, day weights and upstream changes of the territory's own prefixes, the
    weights over [first, last] (default: from the first route to today)."""
    store = BgpStore(ws)
    try:
        ranges = [p.range for p in t.prefixes]
        asns = [a.asn for a in t.asns]
        routes, peers = load_routes(store, ranges, asns)
        sources = [
            {
                "source_id": s.source_id,
                "path": s.path,
                "sha256": s.sha256,
                "routes": s.rows,
                "first_ts": s.first_ts,
                "last_ts": s.last_ts,
            }
            for s in store.sources()
        ]
    finally:
        store.close()
    intervals = _carriers([iv for iv in build_timeline(routes, peers) if _own(iv, t)], t)
    if first is None:
        first = min((iv.valid_from.date() for iv in intervals), default=date.today())
    weights = day_weights(intervals, first, last or date.today())
    changes = upstream_changes(intervals, SETTLE)
    return Routing(intervals, weights, changes, sources)


def _carriers(intervals: list[Interval], t: Territory) -> list[Interval]:
    """Space assigned by a provider (origin outside the territory's ASes) is carried by
    that provider: its upstream is the origin, whatever the collector peer's path."""
    own = {a.asn for a in t.asns}
    merged: dict[tuple[Any, ...], Interval] = {}
    for iv in intervals:
        if iv.origin_asn is not None and iv.origin_asn not in own:
            iv = replace(iv, upstream_asn=iv.origin_asn)
        key = (iv.prefix, iv.origin_asn, iv.upstream_asn, iv.valid_from, iv.valid_to)
        if key in merged:
            iv = replace(iv, peers=merged[key].peers + iv.peers)
        merged[key] = iv
    return sorted(merged.values(), key=lambda iv: (iv.prefix_lo, iv.valid_from))


def _own(iv: Interval, t: Territory) -> bool:
    """A prefix inside the territory's space (or originated by one of its ASes)."""
    if iv.origin_asn is not None and any(a.asn == iv.origin_asn for a in t.asns):
        return True
    return any(
        lo <= iv.prefix_lo and iv.prefix_hi <= hi for lo, hi in (p.range for p in t.prefixes)
    )


@dataclass(frozen=True)
class Share:
    period: str
    upstream_asn: int | None
    route_share: float | None
    traffic_share: float | None
    bytes: float  # of the territory's traffic carried by it (weighted)
    flows: float


@dataclass
class Shares:
    period: str
    rows: list[Share]
    covered_bytes: dict[str, float]  # per period: bytes with a route that day
    total_bytes: dict[str, float]  # per period: all bytes of the territory's flows

    def coverage(self, label: str) -> float | None:
        tot = self.total_bytes.get(label, 0.0)
        return self.covered_bytes.get(label, 0.0) / tot if tot else None


def compute_shares(routing: Routing, traffic: pa.Table | None, period: str) -> Shares:
    """Shares per ``period``; ``traffic`` has columns day, internal_addr, bytes, flows."""
    route_acc: dict[tuple[str, int | None], float] = defaultdict(float)
    prefix_days: dict[str, set[tuple[date, str]]] = defaultdict(set)
    by_day: dict[date, list[DayWeight]] = defaultdict(list)
    for w in routing.weights:
        label = period_label(w.day, period)
        route_acc[(label, w.upstream_asn)] += w.weight
        prefix_days[label].add((w.day, w.prefix))
        by_day[w.day].append(w)
    traffic_acc: dict[tuple[str, int | None], list[float]] = defaultdict(lambda: [0.0, 0.0])
    covered: dict[str, float] = defaultdict(float)
    total: dict[str, float] = defaultdict(float)
    if traffic is not None and traffic.num_rows:
        _spread(routing, traffic, by_day, period, traffic_acc, covered, total)
    labels = sorted({k[0] for k in route_acc} | {k[0] for k in traffic_acc})
    rows = []
    for label in labels:
        ups = {k[1] for k in route_acc if k[0] == label} | {
            k[1] for k in traffic_acc if k[0] == label
        }
        n_pd = len(prefix_days.get(label, ()))
        for u in sorted(ups, key=lambda x: (x is None, x or 0)):
            r = route_acc.get((label, u))
            b, f = traffic_acc.get((label, u), [0.0, 0.0])
            rows.append(
                Share(
                    label,
                    u,
                    r / n_pd if r is not None and n_pd else None,
                    b / covered[label] if covered.get(label) else None,
                    b,
                    f,
                )
            )
    return Shares(period, rows, dict(covered), dict(total))


def _spread(
    routing: Routing,
    traffic: pa.Table,
    by_day: dict[date, list[DayWeight]],
    period: str,
    traffic_acc: dict[tuple[str, int | None], list[float]],
    covered: dict[str, float],
    total: dict[str, float],
) -> None:
    """Bytes per (day, most specific covering prefix), split by that day's weights."""
    days = np.asarray(traffic["day"].to_pylist(), dtype="datetime64[D]")
    hi64, lo64 = addr.to_u64_pair(traffic["internal_addr"].combine_chunks().cast(pa.binary(16)))
    nbytes = np.asarray(traffic["bytes"].to_numpy(zero_copy_only=False), dtype=np.float64)
    nflows = np.asarray(traffic["flows"].to_numpy(zero_copy_only=False), dtype=np.float64)
    prefixes = sorted(
        {(w.prefix, w.prefix_lo, w.prefix_hi) for w in routing.weights},
        key=lambda p: _size(p[1], p[2]),
    )  # most specific first
    bounds = [(_u64(plo), _u64(phi)) for _p, plo, phi in prefixes]  # once, not per row
    match = np.full(len(days), -1, dtype=np.int64)
    for i, ((a_hi, a_lo), (b_hi, b_lo)) in enumerate(bounds):
        ge = (hi64 > a_hi) | ((hi64 == a_hi) & (lo64 >= a_lo))
        le = (hi64 < b_hi) | ((hi64 == b_hi) & (lo64 <= b_lo))
        match[(match < 0) & ge & le] = i
    # the most specific prefix *announced that day*: fall back to wider ones
    index = {p[0]: i for i, p in enumerate(prefixes)}
    day_set = {d: {index[w.prefix] for w in ws} for d, ws in by_day.items()}
    uniq, inverse = np.unique(days, return_inverse=True)
    for k, day64 in enumerate(uniq):
        d = day64.astype("datetime64[D]").astype(date)
        label = period_label(d, period)
        sel = inverse == k
        total[label] += float(nbytes[sel].sum())
        live = day_set.get(d, set())
        if not live:
            continue
        # bytes and flows per prefix first, then one split per prefix by its weights
        per_prefix: dict[int, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for r in np.flatnonzero(sel):
            p = _best(int(match[r]), (int(hi64[r]), int(lo64[r])), bounds, live)
            if p >= 0:
                per_prefix[p][0] += float(nbytes[r])
                per_prefix[p][1] += float(nflows[r])
        for p, (b, f) in per_prefix.items():
            covered[label] += b
            for w in by_day[d]:
                if index[w.prefix] == p:
                    acc = traffic_acc[(label, w.upstream_asn)]
                    acc[0] += b * w.weight
                    acc[1] += f * w.weight


def _best(
    first: int,
    address: tuple[int, int],
    bounds: Sequence[tuple[tuple[int, int], tuple[int, int]]],
    live: set[int],
) -> int:
    """The first prefix from ``first`` on (most specific first) announced that day and
    covering ``address``; -1 when none is."""
    if first < 0 or first in live:
        return first
    for i in range(first + 1, len(bounds)):
        if i in live and bounds[i][0] <= address <= bounds[i][1]:
            return i
    return -1


def _u64(raw: bytes) -> tuple[int, int]:
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big")


def _size(lo: bytes, hi: bytes) -> int:
    return int.from_bytes(hi, "big") - int.from_bytes(lo, "big")
