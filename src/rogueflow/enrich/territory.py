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

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr
from rogueflow.arrays import masked
from rogueflow.territory import Territory, builtin_codes, load_builtin, utc_offsets

U64 = npt.NDArray[np.uint64]

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
    return _member_pairs(t, hi_half, lo_half, ts_us)


def _member_pairs(
    t: Territory, hi_half: U64, lo_half: U64, ts_us: npt.NDArray[np.int64]
) -> npt.NDArray[np.bool_]:
    mask = np.zeros(len(ts_us), dtype=bool)
    for p in t.prefixes:
        lo, hi = p.range
        lo_h, lo_l = int.from_bytes(lo[:8], "big"), int.from_bytes(lo[8:], "big")
        hi_h, hi_l = int.from_bytes(hi[:8], "big"), int.from_bytes(hi[8:], "big")
        above = (hi_half > lo_h) | ((hi_half == lo_h) & (lo_half >= np.uint64(lo_l)))
        below = (hi_half < hi_h) | ((hi_half == hi_h) & (lo_half <= np.uint64(hi_l)))
        inside = above & below
        if not inside.any():
            continue
        # bounds as member_sql applies them: only inside (_MIN_TS, _MAX_TS)
        if p.valid.valid_from > _MIN_TS:
            inside &= ts_us >= int(p.valid.valid_from.timestamp() * 1_000_000)
        if p.valid.valid_to < _MAX_TS:
            inside &= ts_us < int(p.valid.valid_to.timestamp() * 1_000_000)
        mask |= inside
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


# --- the store's territory index ------------------------------------------------------
#
# The store writes, for every flow, which indexed territory held its source and its
# destination (``src_territory``, ``dst_territory``) and sorts each file's flows that
# touch one first. A report then selects its scope by comparing a small dictionary
# column instead of testing 16-byte addresses against prefix ranges, and the engine
# skips the untouched flows' other columns. Each file names, in its footer, the
# territories it indexed with a fingerprint of their address space; a query trusts the
# columns for a territory only when every file it reads carries that territory's
# current fingerprint (else it tests the prefixes, as for a --territory-file profile).

#: Parquet footer key of a store file's territory index: JSON {code: fingerprint}.
INDEX_KEY = b"rogueflow.territories"


def fingerprint(t: Territory) -> str:
    """A hash of what membership depends on: the code and the dated prefixes."""
    space = [
        [p.cidr, p.valid.valid_from.isoformat(), p.valid.valid_to.isoformat()] for p in t.prefixes
    ]
    text = json.dumps([t.code, sorted(space)], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _overlap(a: Territory, b: Territory) -> bool:
    """Whether a prefix of ``a`` and one of ``b`` share an address at a shared time."""
    for p in a.prefixes:
        for q in b.prefixes:
            (plo, phi), (qlo, qhi) = p.range, q.range
            in_space = plo <= qhi and qlo <= phi
            pv, qv = p.valid, q.valid
            in_time = pv.valid_from < qv.valid_to and qv.valid_from < pv.valid_to
            if in_space and in_time:
                return True
    return False


@dataclass(frozen=True)
class TerritoryIndex:
    """Territories whose membership the store writes into every flow.

    A territory is indexed when it names prefixes and none of them overlaps (in
    space and time) a territory indexed before it, so that one column per end holds
    the answer for each indexed territory exactly.
    """

    territories: tuple[Territory, ...]

    @classmethod
    def of(cls, candidates: list[Territory]) -> TerritoryIndex:
        kept: list[Territory] = []
        for t in candidates:
            if t.prefixes and not any(_overlap(t, k) for k in kept):
                kept.append(t)
        return cls(tuple(kept))

    @property
    def claim(self) -> dict[str, str]:
        return {t.code: fingerprint(t) for t in self.territories}

    def footer(self) -> bytes:
        return json.dumps(self.claim, sort_keys=True, separators=(",", ":")).encode()

    def columns(self, table: pa.Table) -> tuple[pa.DictionaryArray, pa.DictionaryArray]:
        """``src_territory`` and ``dst_territory`` of a canonical flow table."""
        ts_us = pc.cast(table.column("ts_start"), pa.int64()).to_numpy()
        names = pa.array([t.code for t in self.territories], pa.string())
        out = []
        for end in ("src", "dst"):
            hi_half, lo_half = addr.to_u64_pair(table.column(f"{end}_addr"))
            code = np.full(len(ts_us), -1, dtype=np.int32)
            for k, t in enumerate(self.territories):
                code[_member_pairs(t, hi_half, lo_half, ts_us) & (code < 0)] = k
            out.append(pa.DictionaryArray.from_arrays(masked(code, code < 0, pa.int32()), names))
        return out[0], out[1]


@cache
def builtin_index() -> TerritoryIndex:
    """The index the store writes: the built-in profiles that name prefixes."""
    return TerritoryIndex.of([load_builtin(c) for c in builtin_codes()])


def indexed(t: Territory, claims: list[dict[str, str]]) -> bool:
    """Whether the files with these footer ``claims`` all index ``t`` as it is now."""
    fp = fingerprint(t)
    return bool(claims) and all(c.get(t.code) == fp for c in claims)


def read_claim(raw: bytes | None) -> dict[str, str]:
    """A file footer's index (empty for files written before the index existed)."""
    if not raw:
        return {}
    try:
        got = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in got.items()} if isinstance(got, dict) else {}
