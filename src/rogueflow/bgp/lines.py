"""bgpdump ``-m -p`` text lines turned into Arrow columns (schema :data:`ROUTES`).

:mod:`rogueflow.bgp.mrt` runs bgpdump and ties each line to its MRT record; here the
lines are sorted by shape (:func:`lines_table`) and converted, vectorised, to typed
columns (:func:`finish`), which names the rows whose values do not parse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr

ROUTES = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("record", pa.uint64(), nullable=False),  # MRT record number, 1-based
        pa.field("mrt_type", pa.string(), nullable=False),  # as bgpdump names it
        pa.field("kind", pa.string(), nullable=False),  # B (RIB), A, W, STATE
        pa.field("peer_addr", pa.binary(16), nullable=False),
        pa.field("peer_asn", pa.uint32(), nullable=False),
        pa.field("prefix", pa.string()),
        pa.field("prefix_lo", pa.binary(16)),
        pa.field("prefix_hi", pa.binary(16)),
        pa.field("prefix_len", pa.uint8()),  # as written: 0-32 for IPv4
        pa.field("path_id", pa.uint32()),  # ADD-PATH
        pa.field("as_path", pa.string()),
        pa.field("origin_asn", pa.uint32()),
        pa.field("upstream_asn", pa.uint32()),  # the AS before the origin, prepends skipped
        pa.field("origin", pa.string()),  # IGP, EGP, INCOMPLETE
        pa.field("next_hop", pa.string()),
        pa.field("local_pref", pa.uint32()),
        pa.field("med", pa.uint32()),
        pa.field("communities", pa.string()),
        pa.field("atomic_aggregate", pa.bool_()),
        pa.field("aggregator", pa.string()),
        pa.field("old_state", pa.uint8()),  # STATE rows: BGP FSM states 1-6
        pa.field("new_state", pa.uint8()),
    ]
)

# bgpdump -m -p: B and A lines have 16 fields; W, STATE and ADD-PATH lines go the slow way
NAMES = [
    "mrt", "p", "ts", "kind", "peer", "peer_as", "prefix", "path", "origin", "nh",
    "lp", "med", "comm", "atomic", "aggr", "end",
]  # fmt: skip
_PATH_ERROR = "! Error !"  # what bgpdump prints as the AS path of a corrupt one


def lines_table(
    fast: pa.Table | None, slow: list[str]
) -> tuple[pa.Table, list[tuple[int, int | None, str]]]:
    """bgpdump lines as one table of text columns (+ path_id and FSM states), and the
    slow lines of no known shape as (index, -p if it has one, text)."""
    cols: dict[str, list[Any]] = {n: [] for n in (*NAMES, "path_id", "old", "new")}
    bad: list[tuple[int, int | None, str]] = []
    for i, text in enumerate(slow):
        f = text.split("|")
        kind = f[3] if len(f) > 3 else ""
        ap = f[0].endswith("_AP")
        row: dict[str, str | None] | None = None
        if len(f) < 7 or not (_int_text(f[1]) and _int_text(f[5])):
            pass
        elif kind == "STATE" and len(f) == 8:
            row = {**dict(zip(NAMES[:6], f[:6], strict=True)), "old": f[6], "new": f[7]}
        elif kind == "W" and len(f) == 7 + ap:
            row = {**dict(zip(NAMES[:7], f[:7], strict=True)), "path_id": f[7] if ap else None}
        elif kind in ("A", "B") and len(f) == 16 + ap:  # 16: careful runs only
            row = {**dict(zip(NAMES[:7], f[:7], strict=True)), "path_id": f[7] if ap else None}
            row.update(zip(NAMES[7:], f[7 + ap :], strict=True))
        if row is None:
            bad.append((i, int(f[1]) if len(f) > 1 and _int_text(f[1]) else None, text))
            continue
        for k in cols:
            cols[k].append(row.get(k))
    slow_t = pa.table(
        {
            k: pa.array(v, pa.string())
            if k not in ("p", "peer_as")
            else pa.array([int(x) for x in v], pa.int64())
            for k, v in cols.items()
        }
    )
    if fast is None or fast.num_rows == 0:
        table = slow_t
    else:
        n = fast.num_rows
        nulls = pa.nulls(n, pa.string())
        fast = fast.append_column("path_id", nulls).append_column("old", nulls)
        table = pa.concat_tables([fast.append_column("new", nulls), slow_t])
    names = [c if c != "ts" else "ts_text" for c in table.column_names]
    return table.rename_columns(names), bad


def _int_text(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) < 19  # fits int64


class _Bad(Exception):
    """A value bgpdump printed does not parse (found in a vectorised step)."""


class BadRows(Exception):
    """Rows (``mask``) of a table handed to :func:`finish` hold values that do not parse."""

    def __init__(self, mask: np.ndarray[Any, Any]) -> None:
        super().__init__(f"{int(mask.sum())} bad rows")
        self.mask = mask


def _uint(col: pa.Array, dtype: pa.DataType) -> pa.Array:
    text = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    return pc.cast(pc.cast(text, pa.int64()), dtype)


def _per_value(col: pa.Array, fn: Any) -> Any:
    """``fn`` applied once per distinct value of ``col`` (a RIB repeats prefixes, paths,
    peers and times many times over), then spread back to every row."""
    enc = pc.dictionary_encode(col)
    out = fn(enc.dictionary)
    idx = enc.indices
    if isinstance(out, tuple):
        return tuple(pc.take(o, idx) for o in out)
    return pc.take(out, idx)


def _micros(ts: pa.Array) -> pa.Array:
    # BGP4MP_ET prints seconds.microseconds; float64 holds those to well under 1 µs
    return pc.cast(pc.round(pc.multiply(pc.cast(ts, pa.float64()), 1e6)), pa.int64())


def finish(t: pa.Table, record: np.ndarray[Any, Any]) -> pa.RecordBatch:
    """Text columns → :data:`ROUTES`; raises :class:`BadRows` naming the rows whose
    values do not parse (checked row by row only when the vectorised pass fails)."""
    t = t.combine_chunks()
    try:
        return _columns(t, record)
    except (pa.ArrowInvalid, _Bad):
        mask = _bad_rows(t)
        raise BadRows(mask if mask.any() else np.ones(t.num_rows, dtype=bool)) from None


def _bad_rows(t: pa.Table) -> np.ndarray[Any, Any]:
    """Which rows hold a value :func:`_columns` cannot convert (slow; for bad input)."""

    def number(text: str | None, hi: int) -> bool:
        return text is None or text == "" or (_int_text(text) and int(text) <= hi)

    def prefix(text: str | None) -> bool:
        if text is None:
            return True
        net, _, bits = text.partition("/")
        try:
            v4 = len(addr.parse_one(net)) == 16 and "." in net and ":" not in net
        except ValueError:
            return False
        return _int_text(bits) and int(bits) <= (32 if v4 else 128)

    def ok(r: dict[str, Any]) -> bool:
        ts = r["ts_text"] or ""
        try:
            addr.parse_one(r["peer"] or "")
        except ValueError:
            return False
        return (
            all(_int_text(x) for x in ts.split(".", 1))
            and 0 <= r["peer_as"] <= 0xFFFFFFFF
            and prefix(r["prefix"])
            and _PATH_ERROR not in (r["path"] or "")
            and all(number(r[k], 0xFFFFFFFF) for k in ("lp", "med", "path_id"))
            and all(number(r[k], 0xFF) for k in ("old", "new"))
        )

    return np.array([not ok(r) for r in t.to_pylist()], dtype=bool)


def _columns(t: pa.Table, record: np.ndarray[Any, Any]) -> pa.RecordBatch:
    col = {name: t[name].combine_chunks() for name in t.column_names}
    ts = _per_value(col["ts_text"], _micros)
    peer = _per_value(col["peer"], _address)
    lo, hi, plen = _per_value(col["prefix"], _prefixes)
    origin_asn, upstream = _per_value(col["path"], _checked_path_ends)
    arrays = {
        "ts": pc.cast(ts, pa.timestamp("us", tz="UTC")),
        "record": pa.array(record, pa.uint64()),
        "mrt_type": col["mrt"],
        "kind": col["kind"],
        "peer_addr": peer,
        "peer_asn": pc.cast(col["peer_as"], pa.uint32()),
        "prefix": col["prefix"],
        "prefix_lo": lo,
        "prefix_hi": hi,
        "prefix_len": plen,
        "path_id": _uint(col["path_id"], pa.uint32()),
        "as_path": col["path"],
        "origin_asn": origin_asn,
        "upstream_asn": upstream,
        "origin": col["origin"],
        "next_hop": col["nh"],
        "local_pref": _per_value(col["lp"], lambda v: _uint(v, pa.uint32())),
        "med": _per_value(col["med"], lambda v: _uint(v, pa.uint32())),
        "communities": col["comm"],
        "atomic_aggregate": pc.equal(col["atomic"], "AG"),
        "aggregator": col["aggr"],
        "old_state": _uint(col["old"], pa.uint8()),
        "new_state": _uint(col["new"], pa.uint8()),
    }
    return pa.RecordBatch.from_arrays([arrays[f.name] for f in ROUTES], schema=ROUTES)


def _address(values: pa.Array) -> pa.Array:
    parsed = addr.parse_or_first_bad(values)
    if isinstance(parsed, int):
        raise _Bad
    return parsed


def _checked_path_ends(path: pa.Array) -> tuple[pa.Array, pa.Array]:
    if pc.any(pc.match_substring(path, _PATH_ERROR)).as_py():
        raise _Bad  # a corrupt AS path (bgpdump also warns of most, not all, of these)
    return path_ends(path)


def _prefixes(prefix: pa.Array) -> tuple[pa.Array, pa.Array, pa.Array]:
    """CIDR text → (first, last address as 16 bytes, length as written); null stays null."""
    has = pc.is_valid(prefix).to_numpy(zero_copy_only=False)
    parts = pc.split_pattern(pc.fill_null(prefix, "::/0"), "/", max_splits=1)
    length = pc.cast(pc.list_element(parts, 1), pa.int64()).to_numpy()
    raw = _address(pc.list_element(parts, 0))
    m = addr.to_matrix(raw)
    v4 = addr.is_ipv4(raw)
    bad = (length < 0) | (length > np.where(v4, 32, 128))
    if bad.any():
        raise _Bad
    bits = np.where(v4, length + 96, length)
    keep = np.clip(bits[:, None] - 8 * np.arange(16)[None, :], 0, 8)
    netmask = (0xFF00 >> keep).astype(np.uint8)  # 'keep' leading ones in each byte
    lo = m & netmask
    hi = lo | ~netmask
    mask = pa.array(~has)
    none = pa.scalar(None, pa.binary(16))
    lo_a = pc.if_else(mask, none, addr.from_bytes_matrix(lo))
    hi_a = pc.if_else(mask, none, addr.from_bytes_matrix(hi))
    plen = pa.array(np.where(has, length, 0).astype(np.uint8), mask=~has)
    return lo_a, hi_a, plen


def path_ends(path: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(origin AS, the distinct AS before it) of each AS path, vectorised.

    Prepends are skipped (``3 7 7 7`` → origin 7, upstream 3). A path ending in an
    AS_SET of one member uses that member; a larger set has no single origin.
    """
    n = len(path)
    tokens = pc.split_pattern(pc.fill_null(path, ""), " ")
    offsets = tokens.offsets.to_numpy()
    values = pc.replace_substring_regex(tokens.values, r"^\{(\d+)\}$", r"\1")
    digits = pc.match_substring_regex(values, r"^\d{1,10}$")
    asn = pc.cast(pc.if_else(digits, values, "-1"), pa.int64()).to_numpy().copy()
    asn[asn > 0xFFFFFFFF] = -1
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    origin = np.full(n, -1, dtype=np.int64)
    origin[nonempty] = asn[offsets[1:][nonempty] - 1]
    row = np.repeat(np.arange(n), lengths)
    differs = (asn != origin[row]) if len(asn) else np.zeros(0, dtype=bool)
    pos = np.where(differs, np.arange(len(asn)), -1)
    last = np.full(n, -1, dtype=np.int64)
    if len(asn):
        starts = np.minimum(offsets[:-1], len(asn) - 1)
        last = np.maximum.reduceat(pos, starts)
        last[~nonempty] = -1
        last[last < offsets[:-1]] = -1  # reduceat spilled into the next row's tokens
    up = np.where(last >= 0, asn[np.maximum(last, 0)] if len(asn) else -1, -1)
    up[origin < 0] = -1
    return (
        pa.array(origin.astype(np.uint32), mask=origin < 0),
        pa.array(up.astype(np.uint32), mask=up < 0),
    )
