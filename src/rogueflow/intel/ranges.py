"""Address range tables: sorted, non-overlapping 128-bit ranges -> value index, vectorised.

A :class:`RangeTable` maps 16-byte addresses (:mod:`rogueflow.addr`) to an index into
its ``values`` list, ``-1`` where no range covers the address. Lookups never loop in
Python:

* IPv4-mapped queries (the common case) are answered from a direct table indexed by
  the top ``bits`` of the address (``bits`` chosen per table so that almost every
  bucket lies inside one range); the few queries in mixed buckets fall back to
  ``searchsorted`` over the table's IPv4 breakpoints (uint32);
* other IPv6 queries use ``searchsorted`` on the high 64 bits, then a bounded
  vectorised binary search on the low 64 bits inside runs of equal high halves.

Building (:meth:`RangeTable.from_ranges`) flattens nested ranges so the most specific
wins, merges adjacent ranges with the same value, and rejects inverted and partially
overlapping ranges with an :class:`~rogueflow.errors.InputError` naming both.

>>> t = RangeTable.from_cidrs([("10.0.0.0/8", "A"), ("10.1.0.0/16", "B")], source="x")
>>> [t.values[i] for i in t.lookup(addr.parse_array(["10.1.2.3", "10.2.0.1"]))]
['B', 'A']
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections.abc import Hashable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rogueflow import addr
from rogueflow.errors import InputError

U64 = npt.NDArray[np.uint64]
I32 = npt.NDArray[np.int32]
Range = tuple[bytes, bytes, Hashable] | tuple[bytes, bytes, Hashable, str]

NPZ_VERSION = 1
_V4_LO = 0xFFFF_0000_0000  # low half of ::ffff:0.0.0.0
_V4_HI = 0xFFFF_FFFF_FFFF  # low half of ::ffff:255.255.255.255
_MIXED = np.int32(-2)  # direct-table marker: the bucket holds more than one range
_BITS = (16, 18, 20, 22, 24)
_MIXED_SHARE = 0.002  # accept the smallest direct table with at most this share mixed
_CHUNK = 1 << 20  # queries per thread task
_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1))
        return _POOL


def _fmt(hi: int, lo: int) -> str:
    return addr.format_one(((hi << 64) | lo).to_bytes(16, "big"))


class RangeTable:
    """Sorted non-overlapping inclusive ranges ``[start, end]`` -> ``codes`` into ``values``."""

    def __init__(
        self,
        start_hi: U64,
        start_lo: U64,
        end_hi: U64,
        end_lo: U64,
        codes: I32,
        values: Sequence[Any],
    ) -> None:
        self.start_hi, self.start_lo = start_hi, start_lo
        self.end_hi, self.end_lo = end_hi, end_lo
        self.codes = codes
        self.values: list[Any] = list(values)
        self._index_lock = threading.Lock()
        self._v4: tuple[int, I32, npt.NDArray[np.uint32], I32] | None = None
        self._v6: tuple[U64, U64, I32] | None = None

    def __len__(self) -> int:
        return len(self.codes)

    def __repr__(self) -> str:
        return f"RangeTable({len(self)} ranges, {len(self.values)} values)"

    # ---- building ------------------------------------------------------------

    @classmethod
    def from_ranges(
        cls,
        ranges: Iterable[Range],
        *,
        source: str | Path | None,
        on_overlap: Literal["most-specific", "error"] = "most-specific",
    ) -> RangeTable:
        """Ranges ``(lo, hi, value[, where])`` of 16-byte addresses, in any order.

        ``where`` (e.g. ``"line 12"``) is named in errors. Nested ranges resolve to the
        most specific (``on_overlap="error"`` rejects them); partial overlaps, inverted
        ranges and one range given two values raise :class:`InputError`.
        """
        index: dict[Hashable, int] = {}
        los: list[bytes] = []
        his: list[bytes] = []
        codes: list[int] = []
        wheres: list[str | None] = []
        for item in ranges:
            lo, hi, value = item[0], item[1], item[2]
            if len(lo) != 16 or len(hi) != 16:
                raise ValueError("range bounds are 16-byte addresses")
            los.append(lo)
            his.append(hi)
            codes.append(index.setdefault(value, len(index)))
            wheres.append(item[3] if len(item) > 3 else None)
        s = np.frombuffer(b"".join(los), dtype=">u8").reshape(-1, 2).astype(np.uint64)
        e = np.frombuffer(b"".join(his), dtype=">u8").reshape(-1, 2).astype(np.uint64)
        return cls.from_bounds(
            s,
            e,
            np.asarray(codes, dtype=np.int32),
            list(index),
            source=source,
            wheres=wheres,
            on_overlap=on_overlap,
        )

    @classmethod
    def from_bounds(
        cls,
        starts: U64,
        ends: U64,
        codes: I32,
        values: Sequence[Any],
        *,
        source: str | Path | None,
        wheres: Sequence[str | None] | None = None,
        on_overlap: Literal["most-specific", "error"] = "most-specific",
    ) -> RangeTable:
        """Like :meth:`from_ranges` from arrays: ``starts``/``ends`` are (n, 2) (hi, lo) halves."""
        s, e, c = starts.reshape(-1, 2), ends.reshape(-1, 2), np.asarray(codes, dtype=np.int32)
        if not len(c):
            return cls.empty(values)
        bad = np.flatnonzero((s[:, 0] > e[:, 0]) | ((s[:, 0] == e[:, 0]) & (s[:, 1] > e[:, 1])))
        if len(bad):
            i = int(bad[0])
            lo, hi = _fmt(int(s[i, 0]), int(s[i, 1])), _fmt(int(e[i, 0]), int(e[i, 1]))
            raise InputError(source, wheres[i] if wheres else None, f"inverted range {lo} - {hi}")
        order = np.lexsort((~e[:, 1], ~e[:, 0], s[:, 1], s[:, 0]))  # start asc, end desc
        s, e, c = s[order], e[order], c[order]
        # fast path: already disjoint (mmdb networks, most CSV exports)
        disjoint = (s[1:, 0] > e[:-1, 0]) | ((s[1:, 0] == e[:-1, 0]) & (s[1:, 1] > e[:-1, 1]))
        if not disjoint.all():
            where: list[str | None] = [wheres[int(k)] if wheres else None for k in order]
            s, e, c = _flatten(s, e, c, where, source, on_overlap)
        return cls._merged(s, e, c, list(values))

    @classmethod
    def from_cidrs(
        cls,
        items: Iterable[tuple[str, Hashable]],
        *,
        source: str | Path | None,
        on_overlap: Literal["most-specific", "error"] = "most-specific",
    ) -> RangeTable:
        """``(cidr text, value)`` pairs; host bits set are an error (``10.0.0.1/8``)."""

        def ranges() -> Iterable[Range]:
            for n, (cidr, value) in enumerate(items, 1):
                try:
                    lo, hi = addr.prefix_range(cidr)
                except ValueError as exc:
                    raise InputError(source, f"item {n}", f"not a prefix: {exc}") from None
                yield lo, hi, value, f"item {n}"

        return cls.from_ranges(ranges(), source=source, on_overlap=on_overlap)

    @classmethod
    def empty(cls, values: Sequence[Any] = ()) -> RangeTable:
        z = np.zeros(0, dtype=np.uint64)
        return cls(z, z, z, z, np.zeros(0, dtype=np.int32), values)

    @classmethod
    def _merged(
        cls, s: npt.NDArray[np.uint64], e: npt.NDArray[np.uint64], c: I32, values: list[Any]
    ) -> RangeTable:
        """Merge neighbours that touch (end + 1 == next start) and share a value."""
        nxt_lo = e[:-1, 1] + np.uint64(1)  # wraps to 0 at the end of a /64 run
        nxt_hi = e[:-1, 0] + (nxt_lo == 0).astype(np.uint64)
        touch = (s[1:, 0] == nxt_hi) & (s[1:, 1] == nxt_lo) & (c[1:] == c[:-1])
        touch &= ~((e[:-1, 0] == np.uint64(2**64 - 1)) & (e[:-1, 1] == np.uint64(2**64 - 1)))
        first = np.concatenate([[True], ~touch])
        last = np.concatenate([~touch, [True]])
        return cls(
            np.ascontiguousarray(s[first, 0]),
            np.ascontiguousarray(s[first, 1]),
            np.ascontiguousarray(e[last, 0]),
            np.ascontiguousarray(e[last, 1]),
            np.ascontiguousarray(c[first]),
            values,
        )

    # ---- lookups -------------------------------------------------------------

    def lookup(self, addrs: pa.Array | pa.ChunkedArray | npt.NDArray[np.uint8]) -> I32:
        """Value index per address (``-1``: not covered); nulls are ``::`` (rarely covered)."""
        return lookup_many([self], addrs)[0]

    def get(self, text: str) -> Any:
        """The value for one address given as text, or ``None``."""
        raw = np.frombuffer(addr.parse_one(text), dtype=np.uint8).reshape(1, 16)
        code = int(self.lookup(raw)[0])
        return None if code < 0 else self.values[code]

    def answer(self, q: Queries) -> I32:
        """Value index per address of ``q`` (addresses split once for many tables)."""
        # every row goes through the IPv4 path (cheaper than selecting the mapped ones);
        # the IPv6 rows are then overwritten with their own answers
        out = self._lookup_v4(q.q4)
        if q.v6 is not None:
            out[q.v6] = self._lookup_v6(q.qh, q.ql)
        return out

    def _lookup_v4(self, q: npt.NDArray[np.uint32]) -> I32:
        shift, direct, bp, bc = self._indexes()[0]
        got: I32 = direct[q >> np.uint32(shift)]
        mixed = np.flatnonzero(got == _MIXED)
        if len(mixed):
            got[mixed] = bc[np.searchsorted(bp, q[mixed], side="right") - 1]
        return got

    def _lookup_v6(self, qh: U64, ql: U64) -> I32:
        bh, bl, bc = self._indexes()[1]
        j = np.searchsorted(bh, qh, side="right") - 1
        # j is the last breakpoint with high half <= qh; inside a run of equal high halves
        # the low halves decide, by a vectorised binary search over that run only
        amb = np.flatnonzero((bh[j] == qh) & (bl[j] > ql))
        if len(amb):
            qa, la = ql[amb], np.searchsorted(bh, qh[amb], side="left")
            lo, hi = la, j[amb] + 1
            while True:
                act = np.flatnonzero(lo < hi)
                if not len(act):
                    break
                mid = (lo[act] + hi[act]) // 2
                le = bl[mid] <= qa[act]
                lo[act] = np.where(le, mid + 1, lo[act])
                hi[act] = np.where(le, hi[act], mid)
            j[amb] = lo - 1
        result: I32 = bc[j]
        return result

    def _indexes(self) -> tuple[tuple[int, I32, npt.NDArray[np.uint32], I32], tuple[U64, U64, I32]]:
        with self._index_lock:
            if self._v4 is None or self._v6 is None:
                self._v6 = self._breakpoints_v6()
                self._v4 = self._direct_v4()
            return self._v4, self._v6

    def _breakpoints_v6(self) -> tuple[U64, U64, I32]:
        """Every range start and every end + 1 that opens a gap; bp[0] = ::, code -1."""
        sh, sl, eh, el, c = self.start_hi, self.start_lo, self.end_hi, self.end_lo, self.codes
        nl = el + np.uint64(1)
        nh = eh + (nl == 0).astype(np.uint64)
        at_top = (eh == np.uint64(2**64 - 1)) & (el == np.uint64(2**64 - 1))
        gap = ~at_top
        if len(c) > 1:
            gap[:-1] &= ~((sh[1:] == nh[:-1]) & (sl[1:] == nl[:-1]))
        zero = np.zeros(1, dtype=np.uint64)  # a Python 0 would promote uint64 to float64
        bh = np.concatenate([zero, sh, nh[gap]])
        bl = np.concatenate([zero, sl, nl[gap]])
        bc = np.concatenate([[-1], c, np.full(int(gap.sum()), -1)]).astype(np.int32)
        order = np.lexsort((np.arange(len(bc)), bl, bh))
        bh, bl, bc = bh[order], bl[order], bc[order]
        # a range starting at :: replaces the sentinel (the later of two equal keys wins)
        keep = np.concatenate([(bh[1:] != bh[:-1]) | (bl[1:] != bl[:-1]), [True]])
        return bh[keep], bl[keep], bc[keep]

    def _direct_v4(self) -> tuple[int, I32, npt.NDArray[np.uint32], I32]:
        bh, bl, bc6 = self._v6 if self._v6 is not None else self._breakpoints_v6()
        # the IPv4-mapped slice of the breakpoints, as uint32, with the code at 0.0.0.0
        lo = np.searchsorted(bh, np.uint64(0), side="right")
        lo_k = np.searchsorted(bl[:lo], np.uint64(_V4_LO), side="right") - 1
        hi_k = np.searchsorted(bl[:lo], np.uint64(_V4_HI), side="right")
        start = np.int64(lo_k)
        bp = (bl[start + 1 : hi_k] - np.uint64(_V4_LO)).astype(np.uint32)
        bp = np.concatenate([np.zeros(1, dtype=np.uint32), bp])
        bc = np.concatenate([[bc6[start]], bc6[start + 1 : hi_k]]).astype(np.int32)
        shift = 32 - _BITS[-1]
        for bits in _BITS:
            shift = 32 - bits
            inner = bp[(bp & np.uint32((1 << shift) - 1)) != 0] >> np.uint32(shift)
            if len(np.unique(inner)) <= _MIXED_SHARE * (1 << bits):
                break
        # breakpoint k answers the buckets whose first address lies in [bp[k], bp[k+1]):
        # a repeat of the codes, ~50x cheaper than a searchsorted of every bucket start
        first = (bp.astype(np.int64) + ((1 << shift) - 1)) >> shift
        counts = np.diff(first, append=np.int64(1 << (32 - shift)))
        direct: I32 = np.repeat(bc, counts)
        low = bp & np.uint32((1 << shift) - 1)
        inner = bp[low != 0] >> np.uint32(shift)
        direct[inner] = _MIXED
        return shift, direct, bp, bc

    # ---- persistence ---------------------------------------------------------

    def to_npz(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        """Save the table (and JSON-able ``meta``) without pickles: values go as JSON."""
        np.savez(
            path,
            version=np.int64(NPZ_VERSION),
            start_hi=self.start_hi,
            start_lo=self.start_lo,
            end_hi=self.end_hi,
            end_lo=self.end_lo,
            codes=self.codes,
            values=np.array(json.dumps(self.values)),
            meta=np.array(json.dumps(meta or {})),
        )

    @classmethod
    def from_npz(cls, path: str | Path) -> RangeTable:
        return cls.load_npz(path)[0]

    @classmethod
    def load_npz(cls, path: str | Path) -> tuple[RangeTable, dict[str, Any]]:
        """The table and the ``meta`` saved with it; a damaged file raises InputError."""
        try:
            # our own handle: np.load leaks its file when the zip is damaged
            with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
                if int(z["version"]) != NPZ_VERSION:
                    raise InputError(path, None, f"range table version {int(z['version'])}")
                values = [_tupled(v) for v in json.loads(str(z["values"]))]
                meta: dict[str, Any] = json.loads(str(z["meta"]))
                arrays = [z[k] for k in ("start_hi", "start_lo", "end_hi", "end_lo")]
                codes = z["codes"]
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            raise InputError(path, None, f"not a range table: {exc}") from None
        n = len(codes)
        if any(a.dtype != np.uint64 or a.shape != (n,) for a in arrays) or codes.dtype != np.int32:
            raise InputError(path, None, "range table arrays have the wrong type or length")
        if n and (int(codes.min()) < 0 or int(codes.max()) >= len(values)):
            raise InputError(path, None, "range table codes point outside its values")
        return cls(arrays[0], arrays[1], arrays[2], arrays[3], codes, values), meta

    def ranges(self) -> Iterable[tuple[bytes, bytes, Any]]:
        """The ranges as ``(lo, hi, value)`` with 16-byte bounds, in order."""
        for k in range(len(self)):
            lo = (int(self.start_hi[k]) << 64 | int(self.start_lo[k])).to_bytes(16, "big")
            hi = (int(self.end_hi[k]) << 64 | int(self.end_lo[k])).to_bytes(16, "big")
            yield lo, hi, self.values[int(self.codes[k])]


class Queries:
    """Addresses split once into IPv4 (uint32) and IPv6 (hi, lo) for any number of tables."""

    def __init__(self, m: npt.NDArray[np.uint8]) -> None:
        self.n = len(m)
        words = np.ascontiguousarray(m).view(">u4").reshape(-1, 4)
        w = words.view("<u8").reshape(-1, 2)
        # bytes 0-7 zero and bytes 8-11 = 00 00 ff ff: an IPv4-mapped address
        mapped = (w[:, 0] == 0) & ((w[:, 1] & np.uint64(0xFFFFFFFF)) == np.uint64(0xFFFF0000))
        self.v6: npt.NDArray[np.intp] | None = None
        self.qh = self.ql = np.zeros(0, dtype=np.uint64)
        self.q4 = words[:, 3].astype(np.uint32)
        if mapped.all():
            return
        self.v6 = np.flatnonzero(~mapped)
        halves = words[self.v6].view(">u8").reshape(-1, 2)
        self.qh, self.ql = halves[:, 0].astype(np.uint64), halves[:, 1].astype(np.uint64)


def lookup_many(
    tables: Sequence[RangeTable], addrs: pa.Array | pa.ChunkedArray | npt.NDArray[np.uint8]
) -> list[I32]:
    """:meth:`RangeTable.lookup` for several tables at once: the addresses are split once.

    Large inputs run in chunks on a small thread pool (numpy releases the GIL).
    """
    m = addrs if isinstance(addrs, np.ndarray) else addr.to_matrix(addrs)
    if m.ndim != 2 or m.shape[1] != 16 or m.dtype != np.uint8:
        raise ValueError("addresses are an (n, 16) uint8 matrix or a 16-byte Arrow column")
    n = len(m)
    if n <= _CHUNK:
        q = Queries(m)
        return [t.answer(q) for t in tables]
    outs = [np.empty(n, dtype=np.int32) for _ in tables]
    for t in tables:
        t._indexes()  # built once, before the threads race for them

    def part(k: int) -> None:
        q = Queries(m[k : k + _CHUNK])
        for t, out in zip(tables, outs, strict=True):
            out[k : k + _CHUNK] = t.answer(q)

    list(_pool().map(part, range(0, n, _CHUNK)))
    return outs


def _tupled(v: Any) -> Any:
    """JSON has no tuples; values that were tuples (asn, org) come back as lists."""
    if not isinstance(v, list):
        return v
    # scalars inline: this runs once per value of 100k+-entry tables at every load
    return tuple([_tupled(x) if isinstance(x, list) else x for x in v])


def _flatten(
    s: U64,
    e: U64,
    c: I32,
    where: list[str | None],
    source: str | Path | None,
    on_overlap: str,
) -> tuple[U64, U64, I32]:
    """Nested ranges to disjoint segments, the innermost range's value winning.

    ``s``/``e`` are (n, 2) (hi, lo) halves sorted by start ascending, end descending, so a
    container precedes what it contains; one pass with a stack of open ranges.
    """
    starts = [(int(h) << 64) | int(lo) for h, lo in s.tolist()]
    ends = [(int(h) << 64) | int(lo) for h, lo in e.tolist()]
    cl = c.tolist()
    out: list[tuple[int, int, int]] = []
    stack: list[int] = []
    cursor = 0

    def close(k: int) -> None:
        nonlocal cursor
        if cursor <= ends[k]:
            out.append((cursor, ends[k], cl[k]))
        cursor = ends[k] + 1

    def fail(a: int, b: int, problem: str) -> InputError:
        def label(k: int) -> str:
            text = f"{_fmt(starts[k] >> 64, starts[k] & (2**64 - 1))} - "
            text += _fmt(ends[k] >> 64, ends[k] & (2**64 - 1))
            return text + (f" ({where[k]})" if where[k] else "")

        return InputError(source, where[b], f"{problem}: {label(a)} and {label(b)}")

    for k in range(len(starts)):
        while stack and ends[stack[-1]] < starts[k]:
            close(stack.pop())
        if stack:
            top = stack[-1]
            if starts[k] == starts[top] and ends[k] == ends[top]:
                if cl[k] == cl[top]:
                    continue  # the same range listed twice with the same value
                raise fail(top, k, "one range has two values")
            if ends[k] > ends[top]:
                raise fail(top, k, "ranges overlap partially")
            if on_overlap == "error":
                raise fail(top, k, "ranges are nested")
            if cursor < starts[k]:
                out.append((cursor, starts[k] - 1, cl[top]))
        cursor = starts[k]
        stack.append(k)
    while stack:
        close(stack.pop())
    mask = 2**64 - 1
    arr_s = np.array([[a >> 64, a & mask] for a, _, _ in out], dtype=np.uint64)
    arr_e = np.array([[b >> 64, b & mask] for _, b, _ in out], dtype=np.uint64)
    return arr_s, arr_e, np.array([v for _, _, v in out], dtype=np.int32)
