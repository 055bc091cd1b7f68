"""IP addresses as 16 big-endian bytes, vectorised.

IPv4 and IPv6 share one representation: IPv6 as is, IPv4 as the IPv4-mapped
IPv6 address ``::ffff:a.b.c.d``. Byte order equals numeric order, so "is this
address in that prefix" is ``lo <= addr <= hi`` on the bytes, in Arrow, numpy,
DuckDB (BLOB compares as unsigned bytes) and Spark alike.

>>> parse_one("175.45.176.1").hex()
'00000000000000000000ffffaf2db001'
>>> prefix_range("175.45.176.0/22")[1].hex()
'00000000000000000000ffffaf2db3ff'
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow.errors import InputError

ADDR_WIDTH = 16
ADDR_TYPE = pa.binary(ADDR_WIDTH)
V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"

U8 = npt.NDArray[np.uint8]


def parse_one(text: str) -> bytes:
    """One address (IPv4 or IPv6 text) to its 16 bytes; raises ValueError."""
    ip = ipaddress.ip_address(text.strip())
    if ip.version == 4:
        return V4_MAPPED_PREFIX + ip.packed
    return ip.packed


def format_one(raw: bytes) -> str:
    """16 bytes back to conventional text (dotted quad for mapped IPv4)."""
    if len(raw) != ADDR_WIDTH:
        raise ValueError(f"an address is {ADDR_WIDTH} bytes, got {len(raw)}")
    if raw[:12] == V4_MAPPED_PREFIX:
        return str(ipaddress.IPv4Address(raw[12:]))
    return str(ipaddress.IPv6Address(raw))


def prefix_range(cidr: str) -> tuple[bytes, bytes]:
    """First and last address of a prefix, both as 16 bytes."""
    net = ipaddress.ip_network(cidr.strip(), strict=False)
    lo, hi = net.network_address.packed, net.broadcast_address.packed
    if net.version == 4:
        return V4_MAPPED_PREFIX + lo, V4_MAPPED_PREFIX + hi
    return lo, hi


def from_ipv4_uint32(values: npt.ArrayLike) -> pa.FixedSizeBinaryArray:
    """IPv4 addresses held as host-order integers (NetFlow, IPFIX) to 16-byte form."""
    v = np.asarray(values, dtype=np.uint32)
    out = np.zeros((len(v), ADDR_WIDTH), dtype=np.uint8)
    out[:, 10:12] = 0xFF
    out[:, 12:16] = v.astype(">u4").view(np.uint8).reshape(-1, 4)
    return _to_arrow(out)


def from_bytes_matrix(matrix: U8) -> pa.FixedSizeBinaryArray:
    """An (n, 16) uint8 matrix to an Arrow array."""
    return _to_arrow(np.ascontiguousarray(matrix, dtype=np.uint8))


def _to_arrow(matrix: U8) -> pa.FixedSizeBinaryArray:
    buf = pa.py_buffer(matrix.tobytes())
    return pa.Array.from_buffers(ADDR_TYPE, len(matrix), [None, buf])


def to_matrix(arr: pa.Array | pa.ChunkedArray) -> U8:
    """A 16-byte address column to an (n, 16) uint8 matrix (nulls become zeros)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if arr.null_count:
        arr = pc.fill_null(arr, pa.scalar(bytes(ADDR_WIDTH), ADDR_TYPE))
    buf = arr.buffers()[1]
    start = arr.offset * ADDR_WIDTH
    data = np.frombuffer(buf, dtype=np.uint8, count=len(arr) * ADDR_WIDTH, offset=start)
    return data.reshape(-1, ADDR_WIDTH)


def to_u64_pair(arr: pa.Array | pa.ChunkedArray) -> tuple[npt.NDArray[np.uint64], ...]:
    """High and low 64-bit halves, for numpy range tests and searchsorted."""
    m = to_matrix(arr)
    halves = m.view(">u8").reshape(-1, 2)
    return halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)


def parse_array(
    values: pa.Array | pa.ChunkedArray | Sequence[str | None],
    *,
    path: str | None = None,
    column: str = "address",
    row_offset: int = 0,
    row_label: str = "row",
) -> pa.FixedSizeBinaryArray:
    """Text addresses to 16-byte form, vectorised; accepts exactly what ``parse_one`` does.

    A bad value raises InputError naming ``path``, the first bad row (``row_offset`` +
    index, 1-based) and the column.
    """
    arr = (
        values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, pa.string())
    )
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    if arr.null_count:
        first = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(path, f"{row_label} {row_offset + first + 1}", f"{column} is empty")
    parsed = parse_or_first_bad(arr)
    if isinstance(parsed, int):
        text = pc.utf8_trim_whitespace(arr.slice(parsed, 1))[0].as_py()
        raise InputError(
            path,
            f"{row_label} {row_offset + parsed + 1}",
            f"{column} {text!r} is not an IP address",
        )
    return parsed


def parse_or_first_bad(arr: pa.Array) -> pa.FixedSizeBinaryArray | int:
    """Non-null address texts to 16-byte form, or the index of the first bad one."""
    # flows repeat addresses: parse each distinct text once. The dictionary is in order
    # of first occurrence, so the first bad entry is also the first bad row.
    enc = pc.dictionary_encode(arr)
    parsed, good = _parse_texts(pc.utf8_trim_whitespace(enc.dictionary))
    if not good.all():
        k = int(np.flatnonzero(~good)[0])
        return int(np.flatnonzero(enc.indices.to_numpy(zero_copy_only=False) == k)[0])
    out = _to_arrow(parsed)
    return out if len(out) == len(arr) and _is_identity(enc.indices) else out.take(enc.indices)


def _is_identity(indices: pa.Array) -> bool:
    """Whether dictionary indices are 0, 1, 2 … (every value distinct)."""
    idx = indices.to_numpy(zero_copy_only=False)
    return bool((idx == np.arange(len(idx))).all())


_COLON, _DOT, _ZERO = ord(":"), ord("."), ord("0")
# hex digit values; 255 marks any other byte
_HEX_VALUE = np.full(256, 255, dtype=np.uint8)
for _k, _c in enumerate("0123456789abcdef"):
    _HEX_VALUE[ord(_c)] = _HEX_VALUE[ord(_c.upper())] = _k


def _parse_texts(texts: pa.Array) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Trimmed address texts to an (n, 16) matrix, and which of them are valid."""
    n = len(texts)
    out = np.zeros((n, ADDR_WIDTH), dtype=np.uint8)
    offsets, data = _string_buffers(texts)
    lengths = np.diff(offsets)
    # the first 16 bytes of each text, as columns: a dotted quad has at most 15
    cols = _columns(data, offsets[:-1], 16)
    inside = np.arange(16)[:, None] < lengths
    is_v4 = (lengths <= 15) & ~((cols == _COLON) & inside).any(axis=0)
    out[:, 10:], ok = _parse_v4(cols, lengths)
    ok &= is_v4
    if not is_v4.all():
        v6_idx = np.flatnonzero(~is_v4)
        out[v6_idx], ok[v6_idx] = _parse_v6(texts.take(pa.array(v6_idx)))
    return out, ok


def _string_buffers(arr: pa.Array) -> tuple[npt.NDArray[np.int64], U8]:
    """A string array's offsets (n+1, into ``data``) and its data bytes, without copies."""
    n = len(arr)
    bufs = arr.buffers()
    width = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    offsets = np.frombuffer(bufs[1], dtype=width, count=n + 1, offset=arr.offset * width().itemsize)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


def _columns(data: U8, starts: npt.NDArray[np.int64], width: int) -> U8:
    """A (width, n) matrix: row j holds byte j of each value (garbage past its end)."""
    padded = np.concatenate((data, np.zeros(width, dtype=np.uint8)))
    return np.stack([padded.take(starts + j) for j in range(width)])


def _parse_v4(cols: U8, lengths: Any) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Dotted quads (byte columns, see _columns) to bytes 10..15 of the address.

    ipaddress's rules: four decimal octets of 1-3 ASCII digits, at most 255, no leading
    zeros ("010" is octal 8 to inet_aton and decimal 10 to others). One pass over the
    byte columns, the row state in small vectors, masks applied by arithmetic (np.where
    and masked stores cost ten times more).
    """
    n = len(lengths)
    size = np.minimum(lengths, 255).astype(np.uint8)
    bad = (size < 7) | (size > 15)
    acc = np.zeros(n, dtype=np.uint32)  # the finished octets
    cur = np.zeros(n, dtype=np.uint16)  # the current octet's value
    nd = np.zeros(n, dtype=np.uint8)  # and its digits so far
    zero_first = np.zeros(n, dtype=np.bool_)
    dots = np.zeros(n, dtype=np.uint8)
    for j in range(min(int(size.max(initial=0)), 15)):
        c = cols[j]
        d = c - np.uint8(_ZERO)  # bytes below '0' wrap to large values
        inside = size > j
        is_digit = (d < 10) & inside
        is_dot = (c == _DOT) & inside
        bad |= inside & ~(is_digit | is_dot)
        bad |= is_digit & zero_first  # "0" followed by a digit
        zero_first = is_digit & (nd == 0) & (d == 0)
        dig = is_digit.view(np.uint8)
        cur = cur * (dig * np.uint8(9) + np.uint8(1)) + d * dig
        nd += dig
        bad |= is_dot & ((nd == 0) | (nd > 3) | (cur > 255))
        dot = is_dot.view(np.uint8)
        acc = (acc << (dot * np.uint8(8)).astype(np.uint32)) | (cur * dot)
        dots += dot
        stay = ~is_dot
        cur *= stay
        nd *= stay
    bad |= (nd == 0) | (nd > 3) | (cur > 255) | (dots != 3)
    acc = (acc << np.uint32(8)) | cur
    res = np.empty((n, 6), dtype=np.uint8)
    res[:, :2] = 0xFF
    res[:, 2:] = acc.astype(">u4").view(np.uint8).reshape(n, 4)
    return res, ~bad


def _parse_v6(texts: pa.Array) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Distinct IPv6 texts to 16 bytes each, and which of them are valid."""
    k = len(texts)
    res = np.zeros((k, ADDR_WIDTH), dtype=np.uint8)
    ok = np.zeros(k, dtype=np.bool_)
    plain = pc.match_substring_regex(texts, r"^[0-9A-Fa-f:]*$").to_numpy(zero_copy_only=False)
    # an embedded IPv4 tail (::ffff:1.2.3.4) or a zone id (fe80::1%eth0) is rare: ipaddress
    special = pc.match_substring_regex(texts, r"[.%]").to_numpy(zero_copy_only=False)
    for j in np.flatnonzero(~plain & special).tolist():
        try:
            res[j] = np.frombuffer(parse_one(texts[j].as_py()), dtype=np.uint8)
            ok[j] = True
        except ValueError:
            pass
    idx = np.flatnonzero(plain)
    if len(idx):
        sub = texts if len(idx) == k else texts.take(pa.array(idx))
        res[idx], ok[idx] = _parse_hextets(sub)
    return res, ok


def _parse_hextets(texts: pa.Array) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Texts of hex digits and colons, by the rules of ipaddress.IPv6Address."""
    k = len(texts)
    parts = pc.split_pattern(texts, ":")
    counts = pc.list_value_length(parts).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(parts)
    starts, _ = _string_buffers(flat)
    plen = np.diff(starts)
    parent = np.repeat(np.arange(k), counts)
    first_part = np.concatenate(([0], np.cumsum(counts)[:-1]))
    pos = np.arange(len(flat)) - first_part[parent]
    count = counts[parent]
    # an empty part between others is the "::"; there may be one
    gap = (plen == 0) & (pos >= 1) & (pos <= count - 2)
    ok = (counts >= 3) & (counts <= 9) & (np.bincount(parent[gap], minlength=k) <= 1)
    skip = np.full(k, -1, dtype=np.int64)
    skip[parent[gap]] = pos[gap]
    has_skip = skip >= 0
    lead_empty = np.zeros(k, dtype=np.bool_)
    trail_empty = np.zeros(k, dtype=np.bool_)
    some = counts > 0
    lead_empty[some] = plen[first_part[some]] == 0
    trail_empty[some] = plen[first_part[some] + counts[some] - 1] == 0
    # parts before ("hi") and after ("lo") the "::"; an empty end is only allowed as "::"
    hi = np.where(has_skip, skip - lead_empty, counts)
    lo = np.where(has_skip, counts - skip - 1 - trail_empty, 0)
    ok &= np.where(
        has_skip,
        ~(lead_empty & (hi != 0)) & ~(trail_empty & (lo != 0)) & (hi + lo <= 7),
        (counts == 8) & ~lead_empty & ~trail_empty,
    )
    head = pos < hi[parent]
    used = head | (pos >= count - lo[parent])
    group = np.where(head, pos, 8 - (count - pos))
    bad_part = used & ((plen == 0) | (plen > 4))
    ok &= np.bincount(parent[bad_part], minlength=k) == 0
    if (plen > 4).any():
        flat = pc.if_else(pc.greater(pc.binary_length(flat), 4), "", flat)
    padded = pc.utf8_lpad(flat, 4, "0")
    p_off, p_data = _string_buffers(padded)
    digits = _HEX_VALUE[p_data[p_off[0] : p_off[0] + 4 * len(padded)]].reshape(-1, 4)
    digits = digits.astype(np.uint16)
    value = (digits[:, 0] << 12) | (digits[:, 1] << 8) | (digits[:, 2] << 4) | digits[:, 3]
    sel = used & ok[parent]
    rows, g, v = parent[sel], group[sel], value[sel]
    res = np.zeros((k, ADDR_WIDTH), dtype=np.uint8)
    res[rows, 2 * g] = v >> 8
    res[rows, 2 * g + 1] = v & 0xFF
    return res, ok


def format_array(arr: pa.Array | pa.ChunkedArray) -> list[str | None]:
    """16-byte addresses to text, for display and exports."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return [None if v is None else format_one(v) for v in arr.to_pylist()]


def is_ipv4(arr: pa.Array | pa.ChunkedArray) -> npt.NDArray[np.bool_]:
    m = to_matrix(arr)
    mapped: npt.NDArray[np.bool_] = np.all(
        m[:, :12] == np.frombuffer(V4_MAPPED_PREFIX, dtype=np.uint8), axis=1
    )
    return mapped
