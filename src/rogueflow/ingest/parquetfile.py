"""Parquet flow files, with a column mapping (a rogueflow export needs none)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from rogueflow.errors import InputError
from rogueflow.ingest import mapping as colmap
from rogueflow.ingest.base import NoCompanions, ReadOptions

PARQUET_MAGIC = b"PAR1"


class ParquetReader(NoCompanions):
    name = "parquet"
    description = "Parquet files; columns named by a preset or --map"

    def sniff(self, path: Path, head: bytes) -> bool:
        return head.startswith(PARQUET_MAGIC)

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        try:
            pf = pq.ParquetFile(path)
            names = pf.schema_arrow.names
        except (pa.ArrowException, OSError, ValueError) as exc:
            # ValueError: a column name that is not UTF-8
            raise InputError(path, None, f"not a readable Parquet file ({exc})") from None
        # --map entries override (or complete) the preset the columns match
        mapping = {**(colmap.infer_mapping(names) or {}), **options.mapping}
        if not mapping:
            raise InputError(
                path,
                None,
                "columns match no preset; pass --preset NAME or --map COL=SRC "
                f"(columns: {', '.join(names[:12])})",
            )
        wanted = sorted({c for c in mapping.values() if c in names})
        row0 = 0
        for i in range(pf.num_row_groups):
            where = f"row group {i}"
            try:
                batches = pf.iter_batches(
                    batch_size=options.batch_rows, row_groups=[i], columns=wanted
                )
                while (batch := next(batches, None)) is not None:
                    # rows are counted from 1 across the whole file
                    table = colmap.apply(batch, mapping, path=str(path), row0=row0)
                    row0 += batch.num_rows
                    yield table
            except (pa.ArrowException, OSError, EOFError, ValueError) as exc:
                raise InputError(path, where, f"corrupt Parquet data ({exc})") from None
