"""CSV flow exports (nfdump -o csv, SiLK rwcut, Argus ra, or anything with --map)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from rogueflow.errors import InputError
from rogueflow.ingest import mapping as colmap
from rogueflow.ingest.base import NoCompanions, ReadOptions, open_maybe_compressed, text_head

# nfdump appends a summary block after the records when not run with -q
_NFDUMP_TRAILERS = ("Summary", "flows,bytes,packets", "No matching flows")


class CsvReader(NoCompanions):
    name = "csv"
    description = "CSV with a header row; columns named by a preset or --map"

    def sniff(self, path: Path, head: bytes) -> bool:
        text = text_head(head)
        first = text.split("\n", 1)[0]
        if first.startswith("#") or "," not in first:
            return False
        return colmap.infer_mapping([c.strip() for c in first.split(",")]) is not None

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        delimiter = options.extra.get("delimiter", ",")
        row0 = 0
        pending_error: list[str] = []

        def skip_bad(row: pacsv.InvalidRow) -> str:
            text = (row.text or "").strip()
            if text.startswith(_NFDUMP_TRAILERS) or not text or text[0].isalpha() and "," not in text:
                return "skip"
            if text.split(",")[0].strip().isdigit() and len(text.split(",")) <= 6:
                return "skip"  # the numbers line of nfdump's summary
            pending_error.append(
                f"expected {row.expected_columns} columns, found {row.actual_columns}: {text[:80]!r}"
            )
            return "error"

        try:
            fh = open_maybe_compressed(path)
            reader = pacsv.open_csv(
                fh,
                read_options=pacsv.ReadOptions(block_size=1 << 22),
                parse_options=pacsv.ParseOptions(delimiter=delimiter, invalid_row_handler=skip_bad),
                convert_options=pacsv.ConvertOptions(
                    strings_can_be_null=True, null_values=["", "NULL", "null", "-"]
                ),
            )
        except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError) as exc:
            raise InputError(path, "line 1", f"not readable as CSV ({exc})") from None
        with fh:
            names = reader.schema.names
            mapping = colmap.load_mapping(None, None, options.mapping) if options.mapping else None
            if not mapping:
                mapping = colmap.infer_mapping([n.strip() for n in names])
                if mapping is None:
                    raise InputError(
                        path, "line 1",
                        "header matches no preset; pass --preset NAME or --map COL=SRC "
                        f"(columns: {', '.join(names[:12])})",
                    )
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    break
                except (pa.ArrowInvalid, OSError, EOFError, UnicodeDecodeError) as exc:
                    detail = pending_error[0] if pending_error else str(exc).splitlines()[0]
                    raise InputError(
                        path, f"after line {row0 + 1}", f"malformed CSV ({detail})"
                    ) from None
                if batch.num_rows == 0:
                    continue
                for start in range(0, batch.num_rows, options.batch_rows):
                    part = batch.slice(start, options.batch_rows)
                    table = colmap.apply(part, mapping, path=str(path), row0=row0 + 1)
                    row0 += part.num_rows
                    if options.sampling_rate and "sampling_rate" not in table.column_names:
                        table = table.append_column(
                            "sampling_rate",
                            pa.array([options.sampling_rate] * table.num_rows, pa.uint32()),
                        )
                    if options.exporter and "exporter" not in table.column_names:
                        table = table.append_column(
                            "exporter", pa.array([options.exporter] * table.num_rows, pa.string())
                        )
                    yield table
