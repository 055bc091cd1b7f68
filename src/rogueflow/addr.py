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
    """Text addresses to 16-byte form; IPv4 is parsed with Arrow kernels, IPv6 per row.

    A bad value raises InputError naming ``path``, the row (``row_offset`` + index,
    1-based) and the column.
    """
    arr = (
        values if isinstance(values, pa.Array | pa.ChunkedArray) else pa.array(values, pa.string())
    )
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if not pa.types.is_string(arr.type) and not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.string())
    n = len(arr)
    if arr.null_count:
        first = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise InputError(path, f"{row_label} {row_offset + first + 1}", f"{column} is empty")
    arr = pc.utf8_trim_whitespace(arr)
    is_v6 = pc.match_substring(arr, ":").to_numpy(zero_copy_only=False)
    out = np.zeros((n, ADDR_WIDTH), dtype=np.uint8)
    v4_idx = np.flatnonzero(~is_v6)
    if len(v4_idx):
        v4 = arr if len(v4_idx) == n else arr.take(pa.array(v4_idx))
        parts = pc.split_pattern(v4, ".")
        lengths = pc.list_value_length(parts).to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(lengths != 4)
        octets: npt.NDArray[np.int64] | None = None
        if not len(bad):
            flat = pc.list_flatten(parts)
            # no leading zeros, as ipaddress (and so the IPv6 path) insists: "010" is
            # octal 8 to inet_aton and decimal 10 to others
            good_digits = pc.match_substring_regex(flat, r"^(0|[1-9][0-9]{0,2})$").to_numpy(
                zero_copy_only=False
            )
            if good_digits.all():
                octets = pc.cast(flat, pa.int64()).to_numpy().reshape(-1, 4)
                bad = np.flatnonzero((octets > 255).any(axis=1))
            else:
                bad = np.unique(np.flatnonzero(~good_digits) // 4)
        if len(bad):
            row = int(v4_idx[bad[0]])
            raise InputError(
                path,
                f"{row_label} {row_offset + row + 1}",
                f"{column} {arr[row].as_py()!r} is not an IP address",
            )
        assert octets is not None
        out[v4_idx, 10:12] = 0xFF
        out[v4_idx, 12:16] = octets.astype(np.uint8)
    v6_idx = np.flatnonzero(is_v6)
    if len(v6_idx):
        # parse each distinct IPv6 text once (flows repeat addresses); the dictionary is in
        # first-occurrence order, so the first bad entry is also the first bad row
        enc = pc.dictionary_encode(arr.take(pa.array(v6_idx)))
        codes = enc.indices.to_numpy(zero_copy_only=False)
        parsed = np.zeros((len(enc.dictionary), ADDR_WIDTH), dtype=np.uint8)
        for k, text in enumerate(enc.dictionary.to_pylist()):
            try:
                parsed[k] = np.frombuffer(parse_one(text), dtype=np.uint8)
            except ValueError:
                i = int(v6_idx[int(np.flatnonzero(codes == k)[0])])
                raise InputError(
                    path,
                    f"{row_label} {row_offset + i + 1}",
                    f"{column} {text!r} is not an IP address",
                ) from None
        out[v6_idx] = parsed[codes]
    return _to_arrow(out)


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
