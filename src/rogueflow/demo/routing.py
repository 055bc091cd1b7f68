"""The demo's BGP view: who carries each watched prefix, as MRT files a collector would write.

The scenario (:data:`ROUTING`) gives, per announced prefix and from a UTC time on,
the origin AS and how many of the collector's ten peers reach it through each
upstream. :func:`write_mrt` turns it into monthly TABLE_DUMP_V2 RIB dumps plus
BGP4MP update files at each change (the reference case's TransTelecom arrival at
09:07:51 UTC on 2017-10-01 included), with neighbouring prefixes as background.
:func:`carrier_weights` gives the same split per flow for the ground truth: the
share of the peers through each upstream at the flow's time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from rogueflow.bgp.mrtwrite import MrtWriter, Peer, RibEntry, open_mrt_output
from rogueflow.demo import scenario as sc

UNICOM, TTK, STAR = 4837, 20485, 131279
SATELLITE = 30721  # origin of 77.94.35.0/24 in RouteViews 2014 (pyasn's ipasn_20140513)
COLLECTOR_AS, COLLECTOR_IP = 6447, "198.51.100.1"  # a RouteViews-like collector
#: the collector's peers: (AS, address); a peer reaches a prefix through one upstream
PEERS: tuple[tuple[int, str], ...] = (
    (3356, "198.51.100.11"),
    (1299, "198.51.100.12"),
    (174, "198.51.100.13"),
    (2914, "198.51.100.14"),
    (6939, "198.51.100.15"),
    (3257, "198.51.100.16"),
    (6453, "198.51.100.17"),
    (6762, "198.51.100.18"),
    (9002, "198.51.100.19"),
    (4637, "198.51.100.20"),
)
N_PEERS = len(PEERS)
STAR_24S = tuple(f"175.45.{i}.0/24" for i in range(176, 180))


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _all(ttk: int) -> dict[int, int]:
    return {TTK: ttk, UNICOM: N_PEERS - ttk} if ttk else {UNICOM: N_PEERS}


#: (from, prefix, origin AS, {upstream AS: peers through it}); an origin outside the
#: watched ASes is its own carrier (upstream None in the paths: the peer reaches it direct)
ROUTING: tuple[tuple[datetime, str, int, dict[int, int]], ...] = (
    *((_t("2017-01-01"), p, STAR, _all(0)) for p in STAR_24S),
    (_t("2017-01-01"), "210.52.109.0/24", UNICOM, {UNICOM: N_PEERS}),
    (_t("2017-01-01"), "77.94.35.0/24", SATELLITE, {SATELLITE: N_PEERS}),
    # TransTelecom appears for .176, .178 and .179 (Dyn: ~60 % of the routes at launch)
    *(
        (_t("2017-10-01T09:07:51"), p, STAR, _all(6))
        for p in ("175.45.176.0/24", "175.45.178.0/24", "175.45.179.0/24")
    ),
    # by 2 October only .178 stays on TransTelecom
    *(
        (_t("2017-10-02T03:12:40"), p, STAR, _all(0))
        for p in ("175.45.176.0/24", "175.45.179.0/24")
    ),
    *((_t("2018-01-01T06:30:00"), p, STAR, _all(4)) for p in STAR_24S),
    *((_t("2019-01-01T06:30:00"), p, STAR, _all(5)) for p in STAR_24S),
)
#: the control scenario: the 2017 routing, unchanged throughout
CONTROL_ROUTING: tuple[tuple[datetime, str, int, dict[int, int]], ...] = tuple(
    r for r in ROUTING if r[0] == _t("2017-01-01")
)
ROUTINGS = {"reference": ROUTING, "control": CONTROL_ROUTING}

#: neighbours announced beside the watched space (a prefix test must leave them out)
BACKGROUND: tuple[tuple[str, int, int], ...] = (
    ("175.45.180.0/24", 9808, 58453),
    ("210.52.108.0/24", 4837, 4837),
    ("77.94.34.0/24", 12389, 30721),
    ("175.45.0.0/16", 4837, 4837),  # a covering aggregate: the watched /24s are more specific
)


def _state(
    at: datetime, routing: tuple[tuple[datetime, str, int, dict[int, int]], ...] = ROUTING
) -> dict[str, tuple[int, dict[int, int]]]:
    cur: dict[str, tuple[int, dict[int, int]]] = {}
    for when, prefix, origin, ups in routing:
        if when <= at:
            cur[prefix] = (origin, ups)
    return cur


def _paths(origin: int, ups: dict[int, int]) -> list[tuple[int, ...]]:
    """Each peer's AS path (without the peer itself) for one prefix."""
    out: list[tuple[int, ...]] = []
    for up, n in sorted(ups.items(), key=lambda kv: kv[0] != TTK):
        out += [(origin,) if up == origin else (up, origin)] * n
    return out


def _peers() -> list[Peer]:
    return [Peer(ip, asn) for asn, ip in PEERS]


def write_mrt(
    out: Path, start: date = sc.START, end: date = sc.END, scenario: str = "reference"
) -> list[Path]:
    """Monthly RIB dumps and one update file per routing change; returns the paths."""
    routing = ROUTINGS[scenario]
    out.mkdir(parents=True, exist_ok=True)
    peers = _peers()
    files: list[Path] = []
    for when in _months(start, end):
        path = out / f"bview.{when:%Y%m%d.%H%M}.gz"
        with open_mrt_output(path) as fh:
            w = MrtWriter(fh)
            ts = int(when.timestamp())
            w.peer_index(ts, COLLECTOR_IP, peers)
            routes = {p: (o, _paths(o, u)) for p, (o, u) in _state(when, routing).items()}
            for prefix, upstream, origin in BACKGROUND:
                routes[prefix] = (
                    origin,
                    [(upstream, origin) if upstream != origin else (origin,)] * N_PEERS,
                )
            for prefix, (_origin, paths) in sorted(routes.items()):
                w.rib(
                    ts,
                    prefix,
                    [
                        RibEntry(i, (PEERS[i][0], *p), PEERS[i][1], originated=ts)
                        for i, p in enumerate(paths)
                    ],
                )
        files.append(path)
    changes = sorted({when for when, *_ in routing if when > _t(start.isoformat())})
    for when in changes:
        before = _state(datetime.fromtimestamp(when.timestamp() - 1, UTC), routing)
        after = _state(when, routing)
        path = out / f"updates.{when:%Y%m%d.%H%M}.gz"
        with open_mrt_output(path) as fh:
            w = MrtWriter(fh)
            ts = int(when.timestamp())
            for prefix, (origin, ups) in sorted(after.items()):
                old = _paths(*before[prefix]) if prefix in before else []
                new = _paths(origin, ups)
                for i, p in enumerate(new):
                    if i < len(old) and old[i] == p:
                        continue
                    w.update(
                        ts,
                        peers[i],
                        COLLECTOR_AS,
                        COLLECTOR_IP,
                        announce=[prefix],
                        as_path=(PEERS[i][0], *p),
                        next_hop=PEERS[i][1],
                    )
        files.append(path)
    return files


def _months(start: date, end: date) -> Iterator[datetime]:
    y, m = start.year, start.month
    while (y, m) <= (end.year, end.month):
        yield datetime(y, m, 1, tzinfo=UTC)
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)


def carrier_weights(
    inside: npt.NDArray[np.uint32], ts_us: npt.NDArray[np.int64], scenario: str = "reference"
) -> dict[int, npt.NDArray[np.float64]]:
    """Per flow (IPv4 inside address, UTC µs): each carrier's share of the collector's
    peers for the flow's /24 at the flow's time; flows outside :data:`ROUTING` get 0."""
    net24 = (inside.astype(np.uint64) >> np.uint64(8)).astype(np.int64)
    out: dict[int, npt.NDArray[np.float64]] = {}
    by_prefix: dict[str, list[tuple[int, dict[int, int]]]] = {}
    for when, prefix, _origin, ups in ROUTINGS[scenario]:
        by_prefix.setdefault(prefix, []).append((int(when.timestamp() * 1_000_000), ups))
    for prefix, steps in by_prefix.items():
        a, b, c, _d = (int(x) for x in prefix.split("/")[0].split("."))
        sel = net24 == ((a << 16) | (b << 8) | c)
        if not sel.any():
            continue
        times = np.array([t for t, _ in steps], dtype=np.int64)
        idx = np.searchsorted(times, ts_us[sel], side="right") - 1
        for k, (_t0, ups) in enumerate(steps):
            here = idx == k
            for asn, n in ups.items():
                arr = out.setdefault(asn, np.zeros(len(inside), dtype=np.float64))
                arr[np.flatnonzero(sel)[here]] = n / N_PEERS
    return out
