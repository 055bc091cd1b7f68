"""Column mappings: turn any tabular flow export into canonical columns.

A mapping names, for each canonical column, the source column holding it::

    ts_start = "first"        # ISO-8601 text, epoch seconds or epoch milliseconds
    duration = "td"           # seconds; used when there is no ts_end column
    src_addr = "sa"
    proto    = "pr"           # number or name (TCP, UDP, ICMP …)
    tcp_flags = "flg"         # number or nfdump's "...AP.S." form

Presets cover common exports (``rogueflow``, ``nfdump``, ``silk``, ``argus``);
``--map COL=SRC`` and ``--mapping FILE.toml`` override them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr
from rogueflow.arrays import masked
from rogueflow.errors import ConfigError, InputError
from rogueflow.schema import FIELD_BY_NAME, TIMESTAMP

EXTRA_KEYS = ("duration",)

PRESETS: dict[str, dict[str, str]] = {
    "rogueflow": {f: f for f in FIELD_BY_NAME if f not in ("source_format", "source_id")},
    # nfdump -o csv (1.7): ts,te,td,sa,da,sp,dp,pr,flg,...,ipkt,ibyt,opkt,obyt,...,ra,...
    "nfdump": {
        "ts_start": "ts",
        "ts_end": "te",
        "src_addr": "sa",
        "dst_addr": "da",
        "src_port": "sp",
        "dst_port": "dp",
        "proto": "pr",
        "tcp_flags": "flg",
        "packets": "ipkt",
        "bytes": "ibyt",
        "rev_packets": "opkt",
        "rev_bytes": "obyt",
        "exporter": "ra",
    },
    # SiLK rwcut --delimited=,: sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,eTime
    "silk": {
        "ts_start": "sTime",
        "ts_end": "eTime",
        "src_addr": "sIP",
        "dst_addr": "dIP",
        "src_port": "sPort",
        "dst_port": "dPort",
        "proto": "protocol",
        "tcp_flags": "flags",
        "packets": "packets",
        "bytes": "bytes",
        "exporter": "sensor",
    },
    # ra -c , -s stime ltime saddr sport daddr dport proto spkts dpkts sbytes dbytes
    "argus": {
        "ts_start": "StartTime",
        "ts_end": "LastTime",
        "src_addr": "SrcAddr",
        "dst_addr": "DstAddr",
        "src_port": "Sport",
        "dst_port": "Dport",
        "proto": "Proto",
        "packets": "SrcPkts",
        "bytes": "SrcBytes",
        "rev_packets": "DstPkts",
        "rev_bytes": "DstBytes",
    },
}

REQUIRED = ("ts_start", "src_addr", "dst_addr", "proto", "packets", "bytes")

PROTO_NAMES = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "egp": 8,
    "udp": 17,
    "ipv6": 41,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmp6": 58,
    "ipv6-icmp": 58,
    "icmpv6": 58,
    "ospf": 89,
    "pim": 103,
    "sctp": 132,
}
TCP_FLAG_BITS = {
    "F": 0x01,
    "S": 0x02,
    "R": 0x04,
    "P": 0x08,
    "A": 0x10,
    "U": 0x20,
    "E": 0x40,
    "C": 0x80,
}


def load_mapping(
    preset: str | None, file: str | Path | None, pairs: Mapping[str, str]
) -> dict[str, str]:
    mapping: dict[str, str] = {}
    if preset:
        if preset not in PRESETS:
            raise ConfigError(f"unknown mapping preset {preset!r}; presets: {', '.join(PRESETS)}")
        mapping.update(PRESETS[preset])
    if file:
        try:
            data = tomllib.loads(Path(file).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read mapping ({exc})") from None
        mapping.update({str(k): str(v) for k, v in data.items()})
    mapping.update(pairs)
    bad = sorted(k for k in mapping if k not in FIELD_BY_NAME and k not in EXTRA_KEYS)
    if bad:
        raise ConfigError(
            f"mapping names unknown canonical column(s) {', '.join(bad)}; "
            f"see docs/schema.md (extra: {', '.join(EXTRA_KEYS)})"
        )
    return mapping


def infer_mapping(columns: list[str]) -> dict[str, str] | None:
    """The preset whose required source columns are all present, if any."""
    cols = set(columns)
    for name in ("rogueflow", "nfdump", "silk", "argus"):
        preset = PRESETS[name]
        needed = [preset[k] for k in REQUIRED if k in preset]
        if all(c in cols for c in needed):
            return {k: v for k, v in preset.items() if v in cols}
    return None


@dataclass(frozen=True)
class _Where:
    """Positions for error messages: value ``i`` of a batch is ``label row0+i+1``."""

    path: str
    row0: int
    label: str

    def at(self, i: int) -> str:
        return f"{self.label} {self.row0 + i + 1}"


# Flow times are after 1970 and, for any real export, before 2200.
_MAX_US = 7_258_118_400_000_000


def _times(col: pa.Array, w: _Where, name: str) -> pa.Array:
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            # naive = UTC: the same numbers relabelled (assume_timezone costs a pass)
            col = col.view(pa.timestamp(col.type.unit, tz="UTC"))
        return _check_time_range(pc.cast(col, TIMESTAMP), w, name)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        if (~np.isfinite(v)).any():
            i = int(np.flatnonzero(~np.isfinite(v))[0])
            raise InputError(w.path, w.at(i), f"{name} is empty or not a number")
        # epoch milliseconds look like 1.4e12; seconds like 1.4e9
        scale = 1_000.0 if len(v) and np.abs(v).max() > 1e11 else 1_000_000.0
        us = v * scale
        bad = np.flatnonzero((us < 0) | (us >= _MAX_US))
        if len(bad):
            i = int(bad[0])
            raise InputError(w.path, w.at(i), f"{name} {col[i].as_py()!r} is not a plausible time")
        return pa.array(us.round().astype(np.int64), pa.int64()).cast(TIMESTAMP)
    text = pc.utf8_trim_whitespace(col.cast(pa.string()))
    numeric = pc.match_substring_regex(text, _NUMBER)
    if len(text) and not text.null_count and pc.all(numeric).as_py():
        return _times(_numbers(text, w, name), w, name)  # epoch numbers read as text
    try:
        out = _iso(text)
    except pa.ArrowException:
        for i, v in enumerate(text.to_pylist()):
            if v is None or numeric[i].as_py():
                continue
            try:
                _iso(pa.array([v], pa.string()))
            except pa.ArrowException:
                raise InputError(w.path, w.at(i), f"{name} {v!r} is not a timestamp") from None
        raise InputError(w.path, None, f"{name} mixes epoch numbers and date text") from None
    return _check_time_range(out, w, name)


_NUMBER = r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$"


def _iso(text: pa.Array) -> pa.Array:
    """ISO-8601 with 'T' or space, optional fraction and offset (naive = UTC); SiLK's
    2017/05/17T… too. Raises ArrowException on anything else."""
    norm = pc.replace_substring_regex(text, r"^(\d{4})/(\d\d)/(\d\d)", r"\1-\2-\3")
    norm = pc.replace_substring_regex(norm, r"^(\d{4}-\d\d-\d\d)[ T]", r"\1T")
    has_tz = pc.match_substring_regex(norm, r"(Z|[+-]\d\d:?\d\d)$")
    if pc.any(has_tz).as_py():
        norm = pc.if_else(has_tz, norm, pc.binary_join_element_wise(norm, "Z", ""))
        norm = pc.replace_substring_regex(norm, r"Z$", "+00:00")
        return pc.cast(pc.cast(norm, pa.timestamp("us", tz="UTC")), TIMESTAMP)
    return pc.cast(pc.assume_timezone(pc.cast(norm, pa.timestamp("us")), "UTC"), TIMESTAMP)


def _check_time_range(ts: pa.Array, w: _Where, name: str) -> pa.Array:
    us = pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero((us < 0) | (us >= _MAX_US))
    if len(bad):
        i = int(bad[0])
        raise InputError(w.path, w.at(i), f"{name} {ts[i]} is not a plausible time")
    return ts


def _numbers(col: pa.Array, w: _Where, name: str) -> pa.Array:
    """Text to float64, naming the first value that is not a number."""
    try:
        return pc.cast(col, pa.float64())
    except pa.ArrowException:
        for i, v in enumerate(col.to_pylist()):
            try:
                pc.cast(pa.array([v], pa.string()), pa.float64())
            except pa.ArrowException:
                raise InputError(w.path, w.at(i), f"{name} {v!r} is not a number") from None
        raise InputError(w.path, None, f"{name}: cannot read the numbers") from None


#: columns this long or longer read their distinct texts once (see :func:`_ints`)
_DISTINCT_MIN = 64


def _ints(col: pa.Array, w: _Where, canon: str, name: str, target: pa.DataType) -> pa.Array:
    if not (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)):
        col = col.cast(pa.string())
        if canon == "proto" and len(col) >= _DISTINCT_MIN:
            # a protocol column holds a handful of names (TCP, UDP …): each distinct text
            # is read once, by this very function, then spread by the indices
            enc = pc.dictionary_encode(col)
            if len(enc.dictionary) * 8 <= len(col):
                try:
                    return pc.take(_ints(enc.dictionary, w, canon, name, target), enc.indices)
                except InputError:
                    pass  # the pass over every row below names the first bad row
        col = pc.utf8_trim_whitespace(col)
        if canon == "proto":
            low = pc.utf8_lower(col)
            known = pa.array(list(PROTO_NAMES), pa.string())
            idx = pc.index_in(low, known)
            nums = pc.take(pa.array(list(PROTO_NAMES.values()), pa.int64()), idx)
            col = pc.if_else(pc.is_null(idx), col, pc.cast(nums, pa.string()))
        if canon == "tcp_flags":
            return _flags(col, w)
        col = _numbers(col, w, name)
    if pa.types.is_floating(col.type):
        # counters exported as 12.0 are integers; NaN, infinities and values beyond
        # 64 bits are not, and must not be clipped into plausible-looking numbers
        v = col.to_numpy(zero_copy_only=False)
        nulls = col.is_null().to_numpy(zero_copy_only=False)
        nan = np.isnan(v) & ~nulls
        if nan.any():
            i = int(np.flatnonzero(nan)[0])
            raise InputError(w.path, w.at(i), f"{name} {col[i].as_py()!r} is not a number")
        huge = ~nulls & ~((v >= -(2.0**63)) & (v < 2.0**63))
        if huge.any():
            i = int(np.flatnonzero(huge)[0])
            raise InputError(
                w.path, w.at(i), f"{name} {col[i].as_py()!r} is out of range for {target}"
            )
        col = masked(np.round(np.where(nulls, 0.0, v)), nulls, pa.int64())
    try:
        out = pc.cast(col, target)
    except pa.ArrowInvalid:
        vals = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        info = np.iinfo(target.to_pandas_dtype())
        bad = np.flatnonzero((vals < info.min) | (vals > info.max))
        i = int(bad[0]) if len(bad) else 0
        raise InputError(
            w.path, w.at(i), f"{name} {col[i].as_py()!r} is out of range for {target}"
        ) from None
    # counters are signed only so every engine reads them; a negative count is bad input
    if out.null_count < len(out) and pc.min(out).as_py() < 0:
        i = int(np.flatnonzero(pc.less(out, 0).to_numpy(zero_copy_only=False))[0])
        raise InputError(w.path, w.at(i), f"{name} {out[i].as_py()} is negative")
    return out


def _flags(col: pa.Array, w: _Where) -> pa.Array:
    # flag strings repeat (nfdump prints a few dozen distinct ones): decode each distinct
    # value once; the dictionary is in first-occurrence order, so the first bad entry is
    # also the first bad row
    enc = pc.dictionary_encode(col)
    lut = np.zeros(len(enc.dictionary) + 1, dtype=np.int64)  # last slot: null -> 0
    codes = pc.fill_null(enc.indices, len(enc.dictionary)).to_numpy(zero_copy_only=False)
    for k, v in enumerate(enc.dictionary.to_pylist()):
        value = _flag_value(v)
        if isinstance(value, str):
            raise InputError(w.path, w.at(int(np.flatnonzero(codes == k)[0])), value)
        lut[k] = value
    return pa.array(lut[codes].astype(np.uint8))


def _flag_value(v: str) -> int | str:
    """The bits of one flag value (number, 0x.., or nfdump's '...AP.S.'), or an error."""
    if v == "":
        return 0
    try:
        if v.isascii() and v.isdigit():
            bits = int(v)
        elif v.lower().startswith("0x"):
            bits = int(v, 16)
        else:
            bits = 0
            for ch in v:
                if ch in TCP_FLAG_BITS:
                    bits |= TCP_FLAG_BITS[ch]
                elif ch not in ". ":
                    raise ValueError(ch)
    except (ValueError, OverflowError):
        return f"tcp_flags {v!r} is not a flag string"
    if not 0 <= bits <= 255:
        return f"tcp_flags {v!r} is out of range"
    return bits


def _addrs(col: pa.Array, w: _Where, name: str) -> pa.Array:
    """Text addresses, or raw ones (16 bytes, or 4 for IPv4) as a rogueflow export holds."""
    if not (
        pa.types.is_binary(col.type)
        or pa.types.is_fixed_size_binary(col.type)
        or pa.types.is_large_binary(col.type)
    ):
        return addr.parse_array(col, path=w.path, column=name, row_offset=w.row0, row_label=w.label)
    # fast path (a rogueflow export): every value already 16 bytes, no per-row Python
    if not col.null_count and pc.all(pc.equal(pc.binary_length(col), addr.ADDR_WIDTH)).as_py():
        return col.cast(addr.ADDR_TYPE)
    values = col.to_pylist()
    raw = bytearray()
    for i, v in enumerate(values):
        if v is None:
            raise InputError(w.path, w.at(i), f"{name} is empty")
        if len(v) == addr.ADDR_WIDTH:
            raw += v
        elif len(v) == 4:
            raw += addr.V4_MAPPED_PREFIX + v
        else:
            raise InputError(w.path, w.at(i), f"{name} holds {len(v)} bytes, not an address")
    matrix = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(-1, addr.ADDR_WIDTH)
    return addr.from_bytes_matrix(matrix)


def apply(
    table: pa.Table | pa.RecordBatch,
    mapping: Mapping[str, str],
    *,
    path: str,
    row0: int,
    row_label: str = "row",
) -> pa.Table:
    """Source columns → canonical measured columns (errors name file, row and column).

    ``row0`` is the number of rows (or lines, with ``row_label="line"``) before the
    first row of ``table``, so its i-th row is reported as ``row_label row0+i+1``.
    """
    if isinstance(table, pa.RecordBatch):
        table = pa.Table.from_batches([table])
    missing = [k for k in REQUIRED if k not in mapping]
    if missing:
        raise ConfigError(
            f"{path}: no column mapped to {', '.join(missing)}; pass --preset or --map COL=SRC"
        )
    absent = sorted({v for v in mapping.values() if v not in table.column_names})
    if absent:
        raise InputError(
            path,
            None,
            f"column(s) {', '.join(absent)} not found; "
            f"the file has: {', '.join(table.column_names)}",
        )
    doubled = sorted({v for v in mapping.values() if table.column_names.count(v) > 1})
    if doubled:
        raise InputError(path, None, f"column(s) {', '.join(doubled)} appear more than once")
    w = _Where(path, row0, row_label)
    out: dict[str, pa.Array] = {}
    for canon, src in mapping.items():
        if canon == "duration":
            continue
        col = table.column(src).combine_chunks()
        if pa.types.is_dictionary(col.type):
            col = col.dictionary_decode()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            try:
                col.validate(full=True)  # Parquet does not promise valid UTF-8
            except pa.ArrowInvalid:
                raise InputError(
                    path, None, f"column {src!r} holds text that is not UTF-8"
                ) from None
        try:
            out[canon] = _column(col, w, canon, src)
        except pa.ArrowException as exc:
            raise InputError(
                path, None, f"column {src!r} ({col.type}) cannot be read as {canon} ({exc})"
            ) from None
    if "ts_end" not in out:
        if "duration" in mapping:
            dur = _numbers(
                table.column(mapping["duration"]).combine_chunks(), w, mapping["duration"]
            )
            dur = pc.fill_null(pc.cast(dur, pa.float64()), 0.0)
            us = dur.to_numpy(zero_copy_only=False) * 1_000_000.0
            bad = np.flatnonzero(~np.isfinite(us) | (us < 0) | (us >= _MAX_US))
            if len(bad):
                i = int(bad[0])
                raise InputError(path, w.at(i), f"{mapping['duration']} {dur[i]} is not a duration")
            start_us = pc.cast(out["ts_start"], pa.int64()).to_numpy(zero_copy_only=False)
            out["ts_end"] = pa.array(start_us + us.round().astype(np.int64)).cast(TIMESTAMP)
        else:
            out["ts_end"] = out["ts_start"]
    # an empty required value would otherwise reach the store as a null
    for canon, arr in out.items():
        if arr.null_count and not FIELD_BY_NAME[canon].nullable:
            i = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
            raise InputError(path, w.at(i), f"{mapping.get(canon, canon)} is empty")
    return pa.table(out)


def _column(col: pa.Array, w: _Where, canon: str, src: str) -> pa.Array:
    if canon in ("ts_start", "ts_end"):
        return _times(col, w, src)
    if canon in ("src_addr", "dst_addr"):
        return _addrs(col, w, src)
    field = FIELD_BY_NAME[canon]
    if pa.types.is_integer(field.type):
        if pa.types.is_null(col.type):
            col = pa.nulls(len(col), pa.int64())
        arr = _ints(col, w, canon, src, field.type)
        if field.default is not None and arr.null_count:
            arr = pc.fill_null(arr, pa.scalar(field.default, field.type))
        return arr
    return pc.cast(col, field.type)
