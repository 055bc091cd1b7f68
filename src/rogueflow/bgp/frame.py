"""MRT framing (RFC 6396 §2): record boundaries, types and counts — never the contents.

The contents are bgpdump's job (:mod:`rogueflow.bgp.mrt`). Framing alone tells us
which record is which, so every route line can name its record, a cut-short file
is reported at the exact record and byte where it ends, and record types bgpdump
does not read are reported and skipped instead of silently vanishing.
"""

from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol

from rogueflow.errors import InputError

HEADER = struct.Struct(">IHHI")
TABLE_DUMP, TABLE_DUMP_V2, BGP4MP, BGP4MP_ET = 12, 13, 16, 17
PEER_INDEX_TABLE = 1
#: (type, subtype) pairs bgpdump 1.6 decodes (bgpdump_lib.c); anything else is skipped
READABLE: dict[int, frozenset[int]] = {
    TABLE_DUMP: frozenset({1, 2}),
    # PEER_INDEX_TABLE, RIB_{IPV4,IPV6}_{UNICAST,MULTICAST}, RIB_GENERIC and ADD-PATH variants
    TABLE_DUMP_V2: frozenset({1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12}),
    # STATE_CHANGE(_AS4), MESSAGE(_AS4)(_LOCAL) and their ADD-PATH variants
    BGP4MP: frozenset({0, 1, 4, 5, 6, 7, 8, 9, 10, 11}),
    BGP4MP_ET: frozenset({0, 1, 4, 5, 6, 7, 8, 9, 10, 11}),
}
TYPE_NAMES = {
    11: "OSPFv2",
    12: "TABLE_DUMP",
    13: "TABLE_DUMP_V2",
    16: "BGP4MP",
    17: "BGP4MP_ET",
    32: "ISIS",
    33: "ISIS_ET",
    48: "OSPFv3",
    49: "OSPFv3_ET",
}
_SUBTYPE_NAMES = {(16, 2): "BGP4MP_ENTRY", (16, 3): "BGP4MP_SNAPSHOT", (13, 7): "GEO_PEER_TABLE"}
#: a record longer than this is taken as garbage framing (real ones are < 1 MiB)
MAX_RECORD = 1 << 26
_READ = 1 << 20


class Record(NamedTuple):  # a tuple: one is made per record, millions per file
    number: int  # 1-based position in the file
    offset: int  # byte offset of its header in the decompressed stream
    type: int
    subtype: int
    data: bytes  # header + body, ready to hand to bgpdump

    @property
    def is_peer_index(self) -> bool:
        return self.type == TABLE_DUMP_V2 and self.subtype == PEER_INDEX_TABLE


def split_records(data: bytes, numbers: list[int], offsets: list[int]) -> list[Record]:
    """Records of a run of whole records framed once before (a chunk), given the numbers
    and offsets framing gave them (skipped records are not in the run, so the numbers
    need not be consecutive)."""
    out: list[Record] = []
    at = 0
    for number, offset in zip(numbers, offsets, strict=True):
        _ts, mrt_type, subtype, length = HEADER.unpack_from(data, at)
        end = at + HEADER.size + length
        out.append(Record(number, offset, mrt_type, subtype, data[at:end]))
        at = end
    return out


def type_name(mrt_type: int, subtype: int) -> str:
    name = _SUBTYPE_NAMES.get((mrt_type, subtype))
    if name:
        return name
    return f"{TYPE_NAMES.get(mrt_type, 'type ' + str(mrt_type))} subtype {subtype}"


class Stream:
    """The decompressed bytes of a file (gzip, bzip2 or xz by magic number, else plain).

    Decompressor objects rather than ``gzip.open``: when a compressed file is cut,
    they hand over everything that decodes before the cut, where the file objects
    raise and lose the last block. Concatenated members/streams are followed.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None
        magic = self._fh.read(6)
        self._fh.seek(0)
        self.codec = (
            "gzip" if magic[:2] == b"\x1f\x8b"
            else "bzip2" if magic[:3] == b"BZh"
            else "xz" if magic == b"\xfd7zXZ\x00"
            else ""
        )  # fmt: skip
        self._dec: _Decompressor | None = None
        self.cut = ""  # why the compressed data ended early, if it did

    def _new(self) -> _Decompressor:
        if self.codec == "gzip":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self.codec == "bzip2":
            return bz2.BZ2Decompressor()
        return lzma.LZMADecompressor()

    def read(self, size: int) -> bytes:
        """Up to about ``size`` bytes; b"" at the end (check ``cut`` for an early end)."""
        if not self.codec:
            return self._fh.read(size)
        out: list[bytes] = []
        have = 0
        while have < size:
            raw = self._fh.read(1 << 18)
            pending = raw
            try:
                while pending:
                    if self._dec is None:
                        self._dec = self._new()
                    piece = self._dec.decompress(pending)
                    out.append(piece)
                    have += len(piece)
                    if self._dec.eof:
                        pending = self._dec.unused_data
                        self._dec = None
                    else:
                        pending = b""
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
                self.cut = f"corrupt compressed data ({exc})"
                break
            if not raw:
                if self._dec is not None:
                    self.cut = f"the {self.codec} stream is cut short"
                break
        return b"".join(out)

    def close(self) -> None:
        self._fh.close()


class _Decompressor(Protocol):  # the shape zlib/bz2/lzma decompressor objects share
    @property
    def eof(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, /) -> bytes: ...


class Framer:
    """Iterates the records of one MRT file; problems accumulate in ``problems``.

    Everything before a problem is kept: a cut-short file ends the iteration at its
    last whole record, an unreadable type is skipped (its length is still known).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.problems: list[InputError] = []
        self.records = 0  # records seen, including skipped ones
        self.skipped = 0
        self.bytes = 0

    def _problem(self, number: int, offset: int, text: str) -> None:
        self.problems.append(InputError(self.path, f"record {number} (byte {offset})", text))

    def __iter__(self) -> Iterator[Record]:
        buf = b""
        at = 0  # read position in buf (slicing buf per record would copy it each time)
        pos = 0  # stream offset of buf[at]
        eof = False
        unpack = HEADER.unpack_from
        fh = Stream(self.path)
        try:
            while True:
                if len(buf) - at < HEADER.size and not eof:
                    buf, at, eof = self._fill(fh, buf, at, pos, HEADER.size)
                if len(buf) - at < HEADER.size:
                    if len(buf) > at:
                        self._problem(
                            self.records + 1,
                            pos,
                            f"cut short inside a record header ({len(buf) - at} of "
                            f"{HEADER.size} bytes); the file ends here",
                        )
                    break
                _ts, mrt_type, subtype, length = unpack(buf, at)
                number = self.records + 1
                if length > MAX_RECORD:
                    self._problem(
                        number,
                        pos,
                        f"header claims {length} bytes: not an MRT record (corrupt, or not "
                        "MRT); reading stops here",
                    )
                    break
                need = HEADER.size + length
                if len(buf) - at < need and not eof:
                    buf, at, eof = self._fill(fh, buf, at, pos, need)
                if len(buf) - at < need:
                    self._problem(
                        number,
                        pos,
                        f"cut short: {type_name(mrt_type, subtype)} record of {length} bytes, "
                        f"only {len(buf) - at - HEADER.size} present; the file ends here",
                    )
                    break
                self.records = number
                data = buf[at : at + need]
                offset = pos
                at += need
                pos += need
                if subtype not in READABLE.get(mrt_type, ()):
                    self.skipped += 1
                    self._problem(
                        number,
                        offset,
                        f"{type_name(mrt_type, subtype)} is not a record type bgpdump reads; "
                        "skipped",
                    )
                    continue
                yield Record(number, offset, mrt_type, subtype, data)
        finally:
            fh.close()
        if fh.cut:
            self.problems.insert(
                0, InputError(self.path, f"byte {pos + len(buf) - at} decompressed", fh.cut)
            )
        self.bytes = pos

    def _fill(
        self, fh: Stream, buf: bytes, at: int, pos: int, need: int
    ) -> tuple[bytes, int, bool]:
        parts = [buf[at:]]
        have = len(parts[0])
        while have < need:
            chunk = fh.read(max(_READ, need - have))
            if not chunk:
                return b"".join(parts), 0, True
            parts.append(chunk)
            have += len(chunk)
        return b"".join(parts), 0, False
