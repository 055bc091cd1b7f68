"""Address-range lookups: rogueflow's RangeTable next to a DuckDB ASOF join, and enrichment.

    .venv/bin/python benchmarks/lookups.py [--queries N] [--flows N] [--duckdb-queries N]

One table = the embedded ASN table (about 600k ranges, IPv4 and IPv6). Queries are a
realistic mix: 95% IPv4 drawn Zipf-style from 400k addresses inside covered space, 5%
IPv6 inside the table's IPv6 ranges. DuckDB answers the same queries with an ASOF join
on BLOB keys (16-byte big-endian addresses compare as unsigned bytes) and its answers
are checked against ours. The enrichment times country + ASN + territory + an
indicator-range table for the source and destination of N flows.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rogueflow import addr
from rogueflow.intel import geo
from rogueflow.intel.ranges import RangeTable, lookup_many

LOOKUP_TARGET = 30e6  # lookups/s, one table, 2 cores
ENRICH_TARGET = 3.0  # seconds for 20M flows
ZIPF_S = 1.1


def _zipf(rng: np.random.Generator, k: int, n: int) -> npt.NDArray[np.int64]:
    cdf = np.cumsum(1.0 / np.arange(1, k + 1) ** ZIPF_S)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(n)).astype(np.int64)


def queries(
    table: RangeTable, n: int, seed: int = 7, v6_share: float = 0.05
) -> npt.NDArray[np.uint8]:
    """(n, 16) addresses: Zipf over a pool inside covered IPv4 space, plus IPv6 in ranges."""
    rng = np.random.default_rng(seed)
    v4_rows = np.flatnonzero(
        (table.start_hi == 0) & ((table.start_lo >> np.uint64(32)) == np.uint64(0xFFFF))
    )
    v6_rows = np.flatnonzero(table.start_hi != 0)
    size = (table.end_lo[v4_rows] - table.start_lo[v4_rows] + np.uint64(1)).astype(np.float64)
    pick = v4_rows[np.searchsorted(np.cumsum(size) / size.sum(), rng.random(400_000))]
    offset = (rng.random(len(pick)) * (table.end_lo[pick] - table.start_lo[pick] + 1)).astype(
        np.uint64
    )
    v4_pool = ((table.start_lo[pick] + offset) & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    v6_pick = v6_rows[rng.integers(0, len(v6_rows), 40_000)]
    v6_pool = np.zeros((len(v6_pick), 16), dtype=np.uint8)
    v6_pool[:, :8] = table.start_hi[v6_pick].astype(">u8").view(np.uint8).reshape(-1, 8)
    low = table.start_lo[v6_pick] | (rng.integers(0, 1 << 16, len(v6_pick)).astype(np.uint64))
    low = np.minimum(low, table.end_lo[v6_pick])
    v6_pool[:, 8:] = low.astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.zeros((n, 16), dtype=np.uint8)
    is6 = rng.random(n) < v6_share
    n4 = int((~is6).sum())
    out[~is6, 10:12] = 0xFF
    v4 = v4_pool[_zipf(rng, len(v4_pool), n4)]
    out[~is6, 12:] = v4.astype(">u4").view(np.uint8).reshape(-1, 4)
    out[is6] = v6_pool[_zipf(rng, len(v6_pool), n - n4)]
    return out


def best_of(fn: Callable[[], Any], repeat: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result


def duckdb_asof(table: RangeTable, q: npt.NDArray[np.uint8]) -> tuple[float, npt.NDArray[np.int32]]:
    """The same lookups as an ASOF join in DuckDB (2 threads): seconds and codes."""
    import duckdb

    rows = list(table.ranges())
    ranges = pa.table(
        {
            "s": pa.array([r[0] for r in rows], pa.binary()),
            "e": pa.array([r[1] for r in rows], pa.binary()),
            "code": pa.array(table.codes),
        }
    )
    qt = pa.table(
        {
            "i": pa.array(np.arange(len(q), dtype=np.int64)),
            "a": addr.from_bytes_matrix(q).cast(pa.binary()),
        }
    )
    con = duckdb.connect()
    con.execute("SET threads = 2")
    con.register("ranges_arrow", ranges)
    con.register("q_arrow", qt)
    con.execute("CREATE TABLE r AS SELECT * FROM ranges_arrow")
    con.execute("CREATE TABLE q AS SELECT * FROM q_arrow")
    sql = (
        "SELECT q.i, CASE WHEN q.a <= r.e THEN r.code ELSE -1 END AS code "
        "FROM q ASOF LEFT JOIN r ON q.a >= r.s"
    )
    t = time.perf_counter()
    res = con.execute(f"CREATE OR REPLACE TABLE out AS {sql}")
    dt = time.perf_counter() - t
    res = con.sql("SELECT i, code FROM out ORDER BY i").to_arrow_table()
    codes = res.column("code").fill_null(-1).to_numpy().astype(np.int32)
    con.close()
    return dt, codes


def enrichment(flows: int, country: RangeTable, asn: RangeTable) -> tuple[float, int]:
    """Country + ASN + territory + indicator ranges for src and dst of ``flows`` flows."""
    rng = np.random.default_rng(11)
    territory = RangeTable.from_cidrs(
        [("175.45.176.0/22", "KP"), ("210.52.109.0/24", "KP"), ("77.94.35.0/24", "KP")],
        source="territory",
    )
    hosting = RangeTable.from_cidrs(
        [
            (f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.0/24", "hosting")
            for a in rng.integers(1 << 24, 223 << 24, 20_000).tolist()
        ],
        source="indicators",
    )
    src = queries(asn, flows, seed=1)
    dst = queries(asn, flows, seed=2)
    tables = (country, asn, territory, hosting)
    for t in tables:
        t.lookup(src[:10])  # build the indexes: done once per loaded table
    t0 = time.perf_counter()
    hits = 0
    for side in (src, dst):
        codes = lookup_many(tables, side)
        hits += sum(int((c >= 0).sum()) for c in codes)
    return time.perf_counter() - t0, hits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queries", type=int, default=20_000_000)
    ap.add_argument("--duckdb-queries", type=int, default=5_000_000)
    ap.add_argument("--flows", type=int, default=20_000_000)
    ap.add_argument("--cache", type=Path, default=None, help="cache dir for the embedded tables")
    args = ap.parse_args(argv)

    t = time.perf_counter()
    country, asn = geo.embedded_country(args.cache).table, geo.embedded_asn(args.cache).table
    load = time.perf_counter() - t
    q = queries(asn, args.queries)
    asn.lookup(q[:10])
    ours_s, ours = best_of(lambda: asn.lookup(q))
    print(f"rogueflow: {len(q) / ours_s / 1e6:.1f}M lookups/s", flush=True)
    rate = len(q) / ours_s
    nd = min(args.duckdb_queries, len(q))
    duck_s, duck = duckdb_asof(asn, q[:nd])
    duck_rate = nd / duck_s
    agree = bool((duck == ours[:nd]).all())
    enrich_s, hits = enrichment(args.flows, country, asn)
    scale = 20_000_000 / args.flows

    print(f"embedded tables loaded in {load:.2f} s: {len(country)} country, {len(asn)} ASN ranges")
    print(f"{'metric':<44}{'rogueflow':>14}{'duckdb ASOF':>14}{'ratio':>9}{'target':>12}")
    print(
        f"{'lookups/s, one table (95% IPv4)':<44}{rate / 1e6:>13.1f}M{duck_rate / 1e6:>13.1f}M"
        f"{rate / duck_rate:>8.1f}x{'>= 30M':>12}  {'ok' if rate >= LOOKUP_TARGET else 'MISS'}"
    )
    print(f"{'answers identical to DuckDB':<44}{agree!s:>14}")
    print(
        f"{'enrich ' + format(args.flows, ',') + ' flows: 4 tables x src,dst (s)':<44}"
        f"{enrich_s:>14.2f}{'':>14}{'':>9}{'<= 3.0 s':>12}  "
        f"{'ok' if enrich_s * scale <= ENRICH_TARGET else 'MISS'}"
    )
    print(f"  ({hits:,} table hits; {2 * 4 * args.flows / enrich_s / 1e6:.1f}M lookups/s)")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
