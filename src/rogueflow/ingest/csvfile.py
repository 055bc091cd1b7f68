"""CSV flow exports (nfdump -o csv, SiLK rwcut, Argus ra, or anything with --map)."""

from __future__ import annotations

import bz2
import codecs
import csv
import gzip
import io
import lzma
import zlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, Any, cast

import pyarrow as pa
import pyarrow.csv as pacsv

from rogueflow.errors import InputError
from rogueflow.ingest import mapping as colmap
from rogueflow.ingest.base import (
    SNIFF_BYTES,
    NoCompanions,
    ReadOptions,
    compression_of,
    text_head,
)
from rogueflow.ingest.zeek import prefetch

# what decoding a damaged (possibly compressed) text file can raise
_READ_ERRORS = (
    pa.ArrowException,
    OSError,
    EOFError,
    ValueError,
    zlib.error,
    lzma.LZMAError,
)

# nfdump appends a summary block after the records when not run with -q
_NFDUMP_TRAILERS = ("Summary", "flows,bytes,packets", "No matching flows")


class _Utf8Checked(io.RawIOBase):
    """Passes bytes through, stopping at the first byte that is not UTF-8.

    Arrow's invalid-row callback fails on such a row before rogueflow sees it, and
    its string columns reject it anyway; this names the byte offset instead.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        super().__init__()
        self.raw = raw
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.offset = 0
        self.bad_offset: int | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        # pure ASCII (the usual export) is valid on its own, unless a sequence is open
        if not data or not data.isascii() or self.decoder.getstate()[0]:
            try:
                self.decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                self.bad_offset = self.offset + exc.start
                raise
        buffer[: len(data)] = data
        self.offset += len(data)
        return len(data)

    def close(self) -> None:
        self.raw.close()
        super().close()


def _open(path: Path) -> IO[bytes]:
    """The file, decompressed; each opener owns (and closes) the underlying file.

    ``base.open_maybe_compressed`` wraps a file object that its wrapper never closes.
    """
    with open(path, "rb") as fh:
        kind = compression_of(fh.read(6))
    if kind == "gzip":
        return cast(IO[bytes], gzip.open(path, "rb"))
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    return open(path, "rb")


class CsvReader(NoCompanions):
    name = "csv"
    description = "CSV with a header row; columns named by a preset or --map"

    def sniff(self, path: Path, head: bytes) -> bool:
        text = text_head(head)
        first = text.split("\n", 1)[0]
        if first.startswith("#") or "," not in first:
            return False
        names = [c.strip().strip('"') for c in first.split(",")]
        return colmap.infer_mapping(names) is not None

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        delimiter = options.extra.get("delimiter", ",")
        row0 = 0
        parsed = [0]  # rows Arrow has handed over (its thread runs ahead of row0)
        pending_error: list[tuple[str, str]] = []

        in_summary = False

        def skip_bad(row: pacsv.InvalidRow) -> str:
            # Only nfdump's trailing summary block is skipped; any other short or long
            # line is an error, never silently dropped data.
            nonlocal in_summary
            try:
                text = (row.text or "").strip()
            except UnicodeDecodeError:  # the handler must not raise: Arrow swallows it
                text = "<not UTF-8>"
            if in_summary or text.startswith(_NFDUMP_TRAILERS):
                in_summary = True
                return "skip"
            # Arrow's streaming reader does not know the row's line number
            number = row.number if isinstance(row.number, int) and row.number > 0 else None
            line = number or _first_ragged_line(path, delimiter)
            pending_error.append(
                (
                    f"line {line}" if line else f"after line {parsed[0] + 1}",
                    f"expected {row.expected_columns} columns, found {row.actual_columns}: "
                    f"{text[:80]!r}",
                )
            )
            return "error"

        try:
            fh = _Utf8Checked(_open(path))
        except OSError as exc:
            raise InputError(path, None, f"cannot open ({exc.strerror or exc})") from None

        def not_utf8() -> InputError | None:
            if fh.bad_offset is None:
                return None
            return InputError(path, f"byte {fh.bad_offset}", "not UTF-8 text")

        try:
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=skip_bad),
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=True,
                    null_values=["", "NULL", "null", "-"],
                    include_columns=_mapped_columns(path, delimiter, options.mapping),
                ),
            )
        except _READ_ERRORS as exc:
            fh.close()
            if err := not_utf8():
                raise err from None
            if pending_error:
                raise InputError(path, *pending_error[0]) from None
            raise InputError(path, "line 1", f"not readable as CSV ({exc})") from None

        def read_error(exc: Exception, rows_read: int) -> InputError:
            if err := not_utf8():
                return err
            if pending_error:
                return InputError(path, *pending_error[0])
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            return InputError(path, f"after line {rows_read + 1}", f"malformed CSV ({detail})")

        with fh:
            try:
                names = reader.schema.names
            except UnicodeDecodeError:
                raise InputError(path, "line 1", "the header is not UTF-8 text") from None
            inferred = colmap.infer_mapping([n.strip() for n in names])
            # --map entries override (or complete) the preset the header matches
            mapping = {**(inferred or {}), **options.mapping}
            if not mapping:
                raise InputError(
                    path,
                    "line 1",
                    "header matches no preset; pass --preset NAME or --map COL=SRC "
                    f"(columns: {', '.join(names[:12])})",
                )
            # Arrow parses on a thread while this one converts the rows it already parsed
            for table in prefetch(_gathered(reader, options.batch_rows, read_error, parsed)):
                for start in range(0, table.num_rows, options.batch_rows):
                    part = table.slice(start, options.batch_rows)
                    # line numbers: the header is line 1 (blank lines are not counted)
                    out = colmap.apply(
                        part, mapping, path=str(path), row0=row0 + 1, row_label="line"
                    )
                    row0 += part.num_rows
                    n = out.num_rows
                    if options.sampling_rate and "sampling_rate" not in out.column_names:
                        out = out.append_column(
                            "sampling_rate",
                            pa.repeat(pa.scalar(options.sampling_rate, pa.uint32()), n),
                        )
                    if options.exporter and "exporter" not in out.column_names:
                        out = out.append_column(
                            "exporter", pa.repeat(pa.scalar(options.exporter, pa.string()), n)
                        )
                    yield out


def _gathered(
    reader: pacsv.CSVStreamingReader,
    rows: int,
    read_error: Callable[[Exception, int], InputError],
    parsed: list[int],
) -> Iterator[pa.Table]:
    """Arrow's batches (one per 4 MiB block) joined into tables of about ``rows`` rows;
    ``parsed[0]`` counts the rows read.

    A read error is raised after the rows before it are handed on, so a bad value in
    those is still the error reported: the first one in the file.
    """
    pending: list[pa.RecordBatch] = []
    count = done = 0
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            break
        except _READ_ERRORS as exc:
            if pending:
                yield pa.Table.from_batches(pending)
            raise read_error(exc, parsed[0]) from None
        if batch.num_rows:
            pending.append(batch)
            count += batch.num_rows
            parsed[0] = done + count
        if count >= rows:
            yield pa.Table.from_batches(pending)
            pending, done, count = [], done + count, 0
    if pending:
        yield pa.Table.from_batches(pending)


def _first_ragged_line(path: Path, delimiter: str) -> int | None:
    """The number of the first line whose field count differs from the header's.

    Only called on the error path, to name the line Arrow's reader could not.
    """
    try:
        with _open(path) as raw, io.TextIOWrapper(raw, errors="replace", newline="") as fh:
            rows = csv.reader(fh, delimiter=delimiter)
            width = len(next(rows))
            for rec in rows:
                if rec and len(rec) != width:
                    return rows.line_num
    except (*_READ_ERRORS, csv.Error, StopIteration):
        return None
    return None


def _mapped_columns(path: Path, delimiter: str, overrides: Mapping[str, str]) -> list[str]:
    """The header's names that the mapping reads; [] (all columns) when unsure.

    The other columns are still split but never converted: nfdump -o csv has 48
    columns and its preset reads 13, and converting only those halves the parse time.
    """
    try:
        with _open(path) as fh:
            head = fh.read(SNIFF_BYTES)
    except _READ_ERRORS:
        return []
    first = text_head(head).lstrip("\ufeff").split("\n", 1)[0].rstrip("\r")
    try:
        names = next(csv.reader([first], delimiter=delimiter))
    except (csv.Error, TypeError, StopIteration):
        return []
    mapping = {**(colmap.infer_mapping([n.strip() for n in names]) or {}), **overrides}
    wanted = set(mapping.values())
    cols = [n for n in names if n.strip() in wanted]
    # a doubled name must reach apply(), which reports it
    return cols if len(set(cols)) == len(cols) else []
