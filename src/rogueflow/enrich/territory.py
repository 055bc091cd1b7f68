"""Minimal enrichment: which side of a flow is inside the territory, and its local time.

Both are expressed twice, from the same profile data, so they can check each other:

* as SQL (portable to DuckDB and Spark SQL) for the analysis engines, so the
  watched subset is selected inside the engine with Parquet predicate pushdown;
* as numpy over Arrow batches (:func:`sides`, :func:`local_times`) for ingest-time
  and streaming use.

Membership is by explicit prefixes with validity intervals, tested as byte
ranges against the flow's ``ts_start``. Country- and ASN-named space is added
by the reference-data stage when a snapshot is available.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rogueflow import addr
from rogueflow.territory import Territory, utc_offsets

SIDE_OUT = "out"  # the territory is the source: traffic leaving it
SIDE_IN = "in"  # the territory is the destination
SIDE_INTERNAL = "internal"  # both ends inside

_MIN_TS = datetime(1990, 1, 1, tzinfo=UTC)
_MAX_TS = datetime(2100, 1, 1, tzinfo=UTC)


def _ts_literal(t: datetime) -> str:
    t = max(min(t, _MAX_TS), _MIN_TS)
    # microseconds kept: a validity bound may fall inside a second, as ts_start can
    return f"TIMESTAMP '{t.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}'"


def member_sql(t: Territory, addr_col: str, ts_col: str = "ts_start") -> str:
    """A boolean SQL expression: is ``addr_col`` inside ``t`` at ``ts_col``."""
    terms = []
    for p in t.prefixes:
        lo, hi = p.range
        cond = f"({addr_col} BETWEEN unhex('{lo.hex()}') AND unhex('{hi.hex()}')"
        if p.valid.valid_from > _MIN_TS:
            cond += f" AND {ts_col} >= {_ts_literal(p.valid.valid_from)}"
        if p.valid.valid_to < _MAX_TS:
            cond += f" AND {ts_col} < {_ts_literal(p.valid.valid_to)}"
        terms.append(cond + ")")
    return "(" + " OR ".join(terms) + ")" if terms else "FALSE"


def side_sql(
    t: Territory, src: str = "src_addr", dst: str = "dst_addr", ts: str = "ts_start"
) -> str:
    return side_case(member_sql(t, src, ts), member_sql(t, dst, ts))


def side_case(s_in: str, d_in: str) -> str:
    """The side from two boolean SQL expressions: is the source / destination inside."""
    return (
        f"CASE WHEN {s_in} AND {d_in} THEN '{SIDE_INTERNAL}' "
        f"WHEN {s_in} THEN '{SIDE_OUT}' WHEN {d_in} THEN '{SIDE_IN}' END"
    )


def local_time_sql(
    t: Territory, ts: str, start: datetime, end: datetime, seconds: str = "INTERVAL ({x}) SECOND"
) -> str:
    """``ts`` (UTC) shifted to the territory's wall-clock time, zone history included.

    ``seconds`` spells an interval of ``{x}`` seconds in the engine's SQL (DuckDB's by
    default; see :data:`rogueflow.analyze.context.DIALECTS`)."""
    steps = utc_offsets(t.timezone, start, end)
    if len(steps) == 1:
        return f"({ts} + {seconds.format(x=steps[0][1])})"
    case = "CASE"
    for i in range(len(steps) - 1, 0, -1):
        case += f" WHEN {ts} >= {_ts_literal(steps[i][0])} THEN {steps[i][1]}"
    case += f" ELSE {steps[0][1]} END"
    return f"({ts} + {seconds.format(x=case)})"


# --- numpy twins ------------------------------------------------------------------


def member_mask(
    t: Territory, addrs: pa.Array | pa.ChunkedArray, ts_us: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    hi_half, lo_half = addr.to_u64_pair(addrs)
    mask = np.zeros(len(ts_us), dtype=bool)
    for p in t.prefixes:
        lo, hi = p.range
        lo_h, lo_l = int.from_bytes(lo[:8], "big"), int.from_bytes(lo[8:], "big")
        hi_h, hi_l = int.from_bytes(hi[:8], "big"), int.from_bytes(hi[8:], "big")
        above = (hi_half > lo_h) | ((hi_half == lo_h) & (lo_half >= np.uint64(lo_l)))
        below = (hi_half < hi_h) | ((hi_half == hi_h) & (lo_half <= np.uint64(hi_l)))
        vf = int(p.valid.valid_from.timestamp() * 1_000_000)
        vt = int(min(p.valid.valid_to, _MAX_TS).timestamp() * 1_000_000)
        mask |= above & below & (ts_us >= vf) & (ts_us < vt)
    return mask


def sides(t: Territory, table: pa.Table) -> pa.Array:
    """The side column for a canonical flow table (null where neither end is inside)."""
    ts_us = table.column("ts_start").cast(pa.int64()).to_numpy()
    s = member_mask(t, table.column("src_addr"), ts_us)
    d = member_mask(t, table.column("dst_addr"), ts_us)
    out = np.full(len(ts_us), None, dtype=object)
    out[s & d] = SIDE_INTERNAL
    out[s & ~d] = SIDE_OUT
    out[~s & d] = SIDE_IN
    return pa.array(out, pa.string())


def local_times(t: Territory, ts_us: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """UTC microseconds to local wall-clock microseconds (naive)."""
    if len(ts_us) == 0:
        return ts_us.copy()
    start = datetime.fromtimestamp(int(ts_us.min()) // 1_000_000, UTC)
    end = datetime.fromtimestamp(int(ts_us.max()) // 1_000_000 + 1, UTC)
    steps = utc_offsets(t.timezone, start, end)
    bounds = np.array([int(s[0].timestamp() * 1_000_000) for s in steps], dtype=np.int64)
    offs = np.array([s[1] * 1_000_000 for s in steps], dtype=np.int64)
    idx = np.searchsorted(bounds, ts_us, side="right") - 1
    return ts_us + offs[np.clip(idx, 0, None)]
