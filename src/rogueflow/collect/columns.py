"""Decoded records to the canonical flow columns, vectorised over a whole batch.

A batch of one template (or of NetFlow v5 records) arrives as one numpy structured
array plus, per record, the context of the datagram it came in: the export time, the
exporter's uptime (NetFlow), which exporter and observation point, and the sampling
rate. Every conversion here is a numpy expression over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rogueflow import addr
from rogueflow.collect.elements import NTP_UNIX_OFFSET
from rogueflow.collect.templates import Template, uint_column
from rogueflow.schema import TIMESTAMP

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

_ICMP = (1, 58)
#: the third word of an IPv4-mapped IPv6 address (bytes 00 00 ff ff) as a native uint32
_MAPPED = np.frombuffer(b"\x00\x00\xff\xff", dtype=np.uint32)[0]


@dataclass
class Context:
    """Per-record context, each array as long as the batch."""

    export_ms: I64
    uptime_ms: I64  # NetFlow sysUptime at export; -1 where the header has none (IPFIX)
    exporter: npt.NDArray[np.int32]
    observation: npt.NDArray[np.int32]
    rate: npt.NDArray[np.uint32]
    boot_ms: int | None = None  # IPFIX systemInitTimeMilliseconds of the domain


@dataclass
class Part:
    """Canonical columns of n decoded flows."""

    start_us: I64
    end_us: I64
    src: U8  # (n, 16)
    dst: U8
    sport: npt.NDArray[np.uint16]
    dport: npt.NDArray[np.uint16]
    proto: npt.NDArray[np.uint8]
    flags: npt.NDArray[np.uint8]
    packets: I64
    bytes: I64
    rev_packets: I64
    rev_bytes: I64
    rate: npt.NDArray[np.uint32]
    exporter: npt.NDArray[np.int32]
    observation: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.start_us)


def v4_matrix(values: npt.ArrayLike) -> U8:
    """IPv4 addresses (integers) as IPv4-mapped IPv6 rows of 16 bytes.

    Written as four 32-bit words: whole-word stores are several times faster than
    byte-column slices of an (n, 16) matrix, and the address word is the big-endian
    value's bytes reinterpreted, so it lands in network order on any host.
    """
    raw = np.asarray(values, dtype=">u4").view(np.uint32)
    out = np.empty((len(raw), 4), dtype=np.uint32)
    out[:, 0] = 0
    out[:, 1] = 0
    out[:, 2] = _MAPPED
    out[:, 3] = raw
    return out.view(np.uint8)


def counter(values: npt.NDArray[np.uint64]) -> I64:
    """Unsigned 64-bit counters as the schema's signed 64-bit (clipped, never wrapped)."""
    return np.minimum(values, np.uint64(2**63 - 1)).astype(np.int64)


def uptime_to_ms(rel: npt.NDArray[np.uint64], ctx: Context, *, signed: bool = False) -> I64:
    """NetFlow FIRST/LAST_SWITCHED (ms of uptime) to Unix ms: boot time + offset.

    Exactly as nfcapd 1.7 does, so that both store the same times: for NetFlow v9 the
    boot time is the export time minus sysUptime and the offset is added as is; for
    NetFlow v5 an offset above the uptime is taken as before the uptime's 32-bit wrap
    (a flow cannot start after the datagram that reports it).
    """
    delta = rel.astype(np.int64) - ctx.uptime_ms
    if signed:
        delta = np.where(delta > 0, delta - 2**32, delta)
    return ctx.export_ms + delta


def unwrap_end(start_us: I64, end_us: I64) -> I64:
    """LAST_SWITCHED below FIRST_SWITCHED: the 32-bit uptime wrapped during the flow."""
    return np.where(end_us < start_us, end_us + (2**32) * 1000, end_us)


def _time_us(records: np.ndarray[Any, Any], tpl: Template, ctx: Context, side: str) -> I64 | None:
    r = tpl.roles
    if f"{side}_ms" in r:
        return uint_column(records, r[f"{side}_ms"]).astype(np.int64) * 1000
    if f"{side}_s" in r:
        return uint_column(records, r[f"{side}_s"]).astype(np.int64) * 1_000_000
    for ntp in (f"{side}_us_ntp", f"{side}_ns_ntp"):
        if ntp in r:
            v = uint_column(records, r[ntp])
            secs = (v >> np.uint64(32)).astype(np.int64) - NTP_UNIX_OFFSET
            frac = (v & np.uint64(0xFFFFFFFF)).astype(np.int64)
            return secs * 1_000_000 + (frac * 1_000_000) // 2**32
    if f"{side}_delta_us" in r:
        delta = uint_column(records, r[f"{side}_delta_us"]).astype(np.int64)
        return ctx.export_ms * 1000 - delta
    if f"{side}_uptime" in r:
        rel = uint_column(records, r[f"{side}_uptime"])
        if tpl_is_v9(ctx):
            return uptime_to_ms(rel, ctx) * 1000
        if ctx.boot_ms is not None:
            return (rel.astype(np.int64) + ctx.boot_ms) * 1000
        return ctx.export_ms * 1000  # IPFIX uptime without the exporter's init time
    return None


def tpl_is_v9(ctx: Context) -> bool:
    return bool(len(ctx.uptime_ms)) and bool(ctx.uptime_ms[0] >= 0)


def _first(records: np.ndarray[Any, Any], roles: dict[str, str], *names: str) -> Any:
    for n in names:
        if n in roles:
            return uint_column(records, roles[n])
    return None


def template_part(records: np.ndarray[Any, Any], tpl: Template, ctx: Context) -> Part:
    """One template's records (a structured array over packed bytes) to canonical columns."""
    n = len(records)
    r = tpl.roles
    start = _time_us(records, tpl, ctx, "start")
    end = _time_us(records, tpl, ctx, "end")
    dur = _first(records, r, "duration_ms", "duration_us")
    if dur is not None:
        dur_us = dur.astype(np.int64) * (1000 if "duration_ms" in r else 1)
        if start is not None and end is None:
            end = start + dur_us
        elif end is not None and start is None:
            start = end - dur_us
    if start is None:
        start = end if end is not None else ctx.export_ms * 1000
    if end is None:
        end = start
    elif "start_uptime" in r and "end_uptime" in r:
        end = unwrap_end(start, end)
    src = _address(records, r, "src", n)
    dst = _address(records, r, "dst", n)
    zeros = np.zeros(n, dtype=np.uint64)
    proto = _first(records, r, "proto")
    proto = zeros if proto is None else proto
    sport = _first(records, r, "sport")
    dport = _first(records, r, "dport")
    sport = zeros if sport is None else sport
    dport = zeros if dport is None else dport
    icmp = (proto == 1) | (proto == 58)
    code = _first(records, r, "icmp4", "icmp6")
    if code is None and ("icmp_type4" in r or "icmp_type6" in r):
        typ = _first(records, r, "icmp_type4", "icmp_type6")
        cod = _first(records, r, "icmp_code4", "icmp_code6")
        code = typ * np.uint64(256) + (zeros if cod is None else cod)
    if code is not None:
        dport = np.where(icmp, code, dport)
    sport = np.where(icmp, 0, sport)
    flags = _first(records, r, "flags")
    packets = _first(records, r, "packets", "packets_total", "post_packets")
    octets = _first(records, r, "bytes", "bytes_total", "post_bytes")
    rev_p = _first(records, r, "rev_packets")
    rev_b = _first(records, r, "rev_bytes")
    return Part(
        start_us=np.asarray(start, dtype=np.int64),
        end_us=np.asarray(end, dtype=np.int64),
        src=src,
        dst=dst,
        sport=sport.astype(np.uint16),
        dport=dport.astype(np.uint16),
        proto=proto.astype(np.uint8),
        flags=(zeros if flags is None else flags & np.uint64(0xFF)).astype(np.uint8),
        packets=counter(zeros if packets is None else packets),
        bytes=counter(zeros if octets is None else octets),
        rev_packets=counter(zeros if rev_p is None else rev_p),
        rev_bytes=counter(zeros if rev_b is None else rev_b),
        rate=record_rates(records, r, ctx.rate),
        exporter=ctx.exporter,
        observation=ctx.observation,
    )


def record_rates(
    records: np.ndarray[Any, Any], roles: dict[str, str], default: npt.NDArray[np.uint32]
) -> npt.NDArray[np.uint32]:
    """A sampling rate carried in the data records themselves wins over the options'."""
    for name in ("sampling_interval", "sampler_random_interval"):
        if name in roles:
            v = uint_column(records, roles[name])
            return np.where(v > 0, np.minimum(v, 2**32 - 1), default).astype(np.uint32)
    return default


def _address(records: np.ndarray[Any, Any], roles: dict[str, str], side: str, n: int) -> U8:
    v4, v6 = roles.get(f"{side}4"), roles.get(f"{side}6")
    if v4 is not None and v6 is not None:
        m6 = np.asarray(records[v6], dtype=np.uint8).reshape(n, 16)
        m4 = v4_matrix(records[v4])
        return np.where(m6.any(axis=1, keepdims=True), m6, m4)
    if v4 is not None:
        return v4_matrix(records[v4])
    if v6 is not None:
        return np.ascontiguousarray(records[v6], dtype=np.uint8).reshape(n, 16)
    return np.zeros((n, 16), dtype=np.uint8)


def concat(parts: list[Part]) -> Part:
    if len(parts) == 1:
        return parts[0]
    cols = {
        name: np.concatenate([getattr(p, name) for p in parts])
        for name in Part.__dataclass_fields__
    }
    return Part(**cols)


def to_table(part: Part, exporters: list[str], observations: list[str]) -> pa.Table:
    """Canonical measured columns plus exporter and observation point (dictionary-encoded).

    Built from the numpy buffers without copies, and without ``pa.array``, which on
    its first call imports pandas (a third of a second) just to check the input type.
    """
    return pa.table(
        {
            "ts_start": _arrow(part.start_us, TIMESTAMP),
            "ts_end": _arrow(part.end_us, TIMESTAMP),
            "src_addr": _arrow(part.src, addr.ADDR_TYPE),
            "dst_addr": _arrow(part.dst, addr.ADDR_TYPE),
            "src_port": _arrow(part.sport, pa.uint16()),
            "dst_port": _arrow(part.dport, pa.uint16()),
            "proto": _arrow(part.proto, pa.uint8()),
            "tcp_flags": _arrow(part.flags, pa.uint8()),
            "packets": _arrow(part.packets, pa.int64()),
            "bytes": _arrow(part.bytes, pa.int64()),
            "rev_packets": _arrow(part.rev_packets, pa.int64()),
            "rev_bytes": _arrow(part.rev_bytes, pa.int64()),
            "sampling_rate": _arrow(part.rate, pa.uint32()),
            "exporter": pa.DictionaryArray.from_arrays(
                _arrow(part.exporter, pa.int32()), _strings(exporters)
            ),
            "observation_point": pa.DictionaryArray.from_arrays(
                _arrow(part.observation, pa.int32()), _strings(observations)
            ),
        }
    )


def _arrow(values: npt.NDArray[Any], kind: pa.DataType) -> pa.Array:
    """A numpy column (rows first) as an Arrow array of ``kind`` sharing its memory."""
    data = np.ascontiguousarray(values)
    return pa.Array.from_buffers(kind, len(data), [None, pa.py_buffer(data)])


def _strings(values: list[str]) -> pa.Array:
    encoded = [v.encode() for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum([len(e) for e in encoded], out=offsets[1:])
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))]
    return pa.Array.from_buffers(pa.string(), len(encoded), buffers)
