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
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(path, None, f"not a readable Parquet file ({exc})") from None
        names = pf.schema_arrow.names
        mapping = dict(options.mapping) or colmap.infer_mapping(names)
        if not mapping:
            raise InputError(
                path, None,
                f"columns match no preset; pass --preset NAME or --map COL=SRC (columns: {', '.join(names[:12])})",
            )
        wanted = sorted({c for c in mapping.values() if c in names})
        row0 = 0
        try:
            for i in range(pf.num_row_groups):
                for batch in pf.iter_batches(
                    batch_size=options.batch_rows, row_groups=[i], columns=wanted
                ):
                    yield colmap.apply(batch, mapping, path=f"{path}", row0=row0 + 1)
                    row0 += batch.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(path, f"row group {i}", f"corrupt Parquet data ({exc})") from None
