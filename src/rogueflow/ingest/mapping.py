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
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr
from rogueflow.errors import ConfigError, InputError
from rogueflow.schema import FIELD_BY_NAME, TIMESTAMP

EXTRA_KEYS = ("duration",)

PRESETS: dict[str, dict[str, str]] = {
    "rogueflow": {f: f for f in FIELD_BY_NAME if f not in ("source_format", "source_id")},
    # nfdump -o csv (1.7): ts,te,td,sa,da,sp,dp,pr,flg,...,ipkt,ibyt,opkt,obyt,...,ra,...
    "nfdump": {
        "ts_start": "ts", "ts_end": "te", "src_addr": "sa", "dst_addr": "da",
        "src_port": "sp", "dst_port": "dp", "proto": "pr", "tcp_flags": "flg",
        "packets": "ipkt", "bytes": "ibyt", "rev_packets": "opkt", "rev_bytes": "obyt",
        "exporter": "ra",
    },
    # SiLK rwcut --delimited=,: sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,eTime
    "silk": {
        "ts_start": "sTime", "ts_end": "eTime", "src_addr": "sIP", "dst_addr": "dIP",
        "src_port": "sPort", "dst_port": "dPort", "proto": "protocol", "tcp_flags": "flags",
        "packets": "packets", "bytes": "bytes", "exporter": "sensor",
    },
    # ra -c , -s stime ltime saddr sport daddr dport proto spkts dpkts sbytes dbytes
    "argus": {
        "ts_start": "StartTime", "ts_end": "LastTime", "src_addr": "SrcAddr",
        "dst_addr": "DstAddr", "src_port": "Sport", "dst_port": "Dport", "proto": "Proto",
        "packets": "SrcPkts", "bytes": "SrcBytes", "rev_packets": "DstPkts",
        "rev_bytes": "DstBytes",
    },
}

REQUIRED = ("ts_start", "src_addr", "dst_addr", "proto", "packets", "bytes")

PROTO_NAMES = {
    "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "udp": 17, "ipv6": 41, "rsvp": 46,
    "gre": 47, "esp": 50, "ah": 51, "icmp6": 58, "ipv6-icmp": 58, "icmpv6": 58, "ospf": 89,
    "pim": 103, "sctp": 132,
}
TCP_FLAG_BITS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40,
                 "C": 0x80}


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


def _times(col: pa.Array, path: str, name: str, row0: int) -> pa.Array:
    if pa.types.is_timestamp(col.type):
        if col.type.tz is None:
            col = pc.assume_timezone(col, "UTC")
        return pc.cast(col, TIMESTAMP)
    if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
        v = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        if np.isnan(v).any():
            i = int(np.flatnonzero(np.isnan(v))[0])
            raise InputError(path, f"row {row0 + i + 1}", f"{name} is empty")
        # epoch milliseconds look like 1.4e12; seconds like 1.4e9
        scale = 1_000.0 if np.nanmax(np.abs(v)) > 1e11 else 1_000_000.0
        return pa.array((v * scale).round().astype(np.int64), pa.int64()).cast(TIMESTAMP)
    text = pc.utf8_trim_whitespace(col.cast(pa.string()))
    try:
        # ISO-8601 with 'T' or space, optional fraction and offset
        norm = pc.replace_substring_regex(text, r"^(\d{4}-\d\d-\d\d)[ T]", r"\1T")
        has_tz = pc.match_substring_regex(norm, r"(Z|[+-]\d\d:?\d\d)$")
        if pc.any(has_tz).as_py():
            norm = pc.if_else(has_tz, norm, pc.binary_join_element_wise(norm, "Z", ""))
            norm = pc.replace_substring_regex(norm, r"Z$", "+00:00")
            return pc.cast(pc.cast(norm, pa.timestamp("us", tz="UTC")), TIMESTAMP)
        return pc.cast(pc.assume_timezone(pc.cast(norm, pa.timestamp("us")), "UTC"), TIMESTAMP)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        for i, v in enumerate(text.to_pylist()):
            try:
                pc.cast(pa.array([(v or "").replace(" ", "T", 1)]), pa.timestamp("us"))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                raise InputError(path, f"row {row0 + i + 1}", f"{name} {v!r} is not a timestamp") from None
        raise


def _ints(
    col: pa.Array, path: str, canon: str, name: str, row0: int, target: pa.DataType
) -> pa.Array:
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        col = pc.utf8_trim_whitespace(col)
        if canon == "proto":
            low = pc.utf8_lower(col)
            known = pa.array(list(PROTO_NAMES), pa.string())
            idx = pc.index_in(low, known)
            nums = pc.take(pa.array(list(PROTO_NAMES.values()), pa.int64()), idx)
            col = pc.if_else(pc.is_null(idx), col, pc.cast(nums, pa.string()))
        if canon == "tcp_flags":
            return _flags(col, path, row0)
        try:
            col = pc.cast(pc.cast(col, pa.float64()), pa.int64())
        except pa.ArrowInvalid:
            for i, v in enumerate(col.to_pylist()):
                try:
                    float(v)
                except (TypeError, ValueError):
                    raise InputError(path, f"row {row0 + i + 1}", f"{name} {v!r} is not a number") from None
            raise
    if pa.types.is_floating(col.type):
        col = pc.cast(pc.round(col), pa.int64(), safe=False)
    try:
        return pc.cast(col, target)
    except pa.ArrowInvalid:
        vals = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
        info = np.iinfo(target.to_pandas_dtype())
        bad = np.flatnonzero((vals < info.min) | (vals > info.max) | np.isnan(vals))
        i = int(bad[0]) if len(bad) else 0
        raise InputError(
            path, f"row {row0 + i + 1}", f"{name} {col[i].as_py()!r} is out of range for {target}"
        ) from None


def _flags(col: pa.Array, path: str, row0: int) -> pa.Array:
    out = np.zeros(len(col), dtype=np.int64)
    for i, v in enumerate(col.to_pylist()):
        if v is None or v == "":
            continue
        if v.isdigit():
            out[i] = int(v)
        elif v.lower().startswith("0x"):
            out[i] = int(v, 16)
        else:
            bits = 0
            for ch in v:
                if ch in TCP_FLAG_BITS:
                    bits |= TCP_FLAG_BITS[ch]
                elif ch not in ". ":
                    raise InputError(path, f"row {row0 + i + 1}", f"tcp_flags {v!r} is not a flag string")
            out[i] = bits
    if (out > 255).any():
        i = int(np.flatnonzero(out > 255)[0])
        raise InputError(path, f"row {row0 + i + 1}", f"tcp_flags {out[i]} is out of range")
    return pa.array(out.astype(np.uint8))


def apply(
    table: pa.Table | pa.RecordBatch, mapping: Mapping[str, str], *, path: str, row0: int
) -> pa.Table:
    """Source columns → canonical measured columns (errors name file, row and column)."""
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
            path, None,
            f"column(s) {', '.join(absent)} not found; the file has: {', '.join(table.column_names)}",
        )
    out: dict[str, pa.Array] = {}
    for canon, src in mapping.items():
        col = table.column(src).combine_chunks()
        if canon in ("ts_start", "ts_end"):
            out[canon] = _times(col, path, src, row0)
        elif canon in ("src_addr", "dst_addr"):
            out[canon] = addr.parse_array(col, path=path, column=src, row_offset=row0)
        elif canon == "duration":
            continue
        else:
            target = FIELD_BY_NAME[canon].type
            if pa.types.is_integer(target):
                if col.null_count and FIELD_BY_NAME[canon].default is not None:
                    col = pc.fill_null(col.cast(pa.string()) if pa.types.is_string(col.type) else col,
                                       "0" if pa.types.is_string(col.type) else 0)
                out[canon] = _ints(col, path, canon, src, row0, target)
            else:
                out[canon] = pc.cast(col, target)
    if "ts_end" not in out:
        if "duration" in mapping:
            dur = pc.cast(table.column(mapping["duration"]).combine_chunks(), pa.float64())
            us = pc.cast(pc.round(pc.multiply(pc.fill_null(dur, 0.0), 1_000_000.0)), pa.int64())
            start_us = pc.cast(out["ts_start"], pa.int64())
            out["ts_end"] = pc.cast(pc.add(start_us, us), TIMESTAMP)
        else:
            out["ts_end"] = out["ts_start"]
    return pa.table(out)
