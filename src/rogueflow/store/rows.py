"""Rows on their way to the store: a whole table, or some of its rows not yet copied.

A stage that drops a few rows of a batch (the behaviour detector keeps candidate rows
back) hands on a :class:`Selection` instead of filtering: the day writer folds the
selection into the one gather it does anyway (day split and time sort), so each row
is copied once between reader and Parquet encoder instead of three times.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import pyarrow as pa

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Selection:
    """The rows of ``table`` at ``indices`` (ascending), in that order."""

    table: pa.Table
    indices: I64

    @property
    def num_rows(self) -> int:
        return len(self.indices)

    def materialise(self) -> pa.Table:
        return self.table.take(pa.array(self.indices))


Rows: TypeAlias = "pa.Table | Selection"


def unpack(rows: Rows) -> tuple[pa.Table, I64 | None]:
    """(table, indices) — ``None`` for every row of the table."""
    if isinstance(rows, Selection):
        return rows.table, rows.indices
    return rows, None


def materialise(rows: Rows) -> pa.Table:
    return rows.materialise() if isinstance(rows, Selection) else rows
