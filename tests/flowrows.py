"""Small canonical flow files from readable rows, for synthetic analysis tests."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rogueflow import addr


def write_rows(
    path: Path, rows: Sequence[tuple[Any, ...]], names: Sequence[str] = ("dns_query",)
) -> Path:
    """Rows ``(day, hour UTC, src, dst, dst_port, proto, *labels)`` as a Parquet file of
    canonical flows (ingested with the 'rogueflow' preset); ``names`` are the string
    columns the trailing labels fill (e.g. ``server_name``, ``dns_query``). Each row gets
    its own microsecond so no two flows share a key."""
    days: list[date] = [r[0] for r in rows]
    ts = [
        int(datetime(d.year, d.month, d.day, r[1], tzinfo=UTC).timestamp() * 1e6) + i
        for i, (d, r) in enumerate(zip(days, rows, strict=True))
    ]
    n = len(rows)
    t = pa.array(np.array(ts, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC"))
    columns: dict[str, Any] = {
        "ts_start": t,
        "ts_end": t,
        "src_addr": addr.parse_array([r[2] for r in rows]),
        "dst_addr": addr.parse_array([r[3] for r in rows]),
        "src_port": pa.array([40000 + i % 20000 for i in range(n)], pa.uint16()),
        "dst_port": pa.array([r[4] for r in rows], pa.uint16()),
        "proto": pa.array([r[5] for r in rows], pa.uint8()),
        "packets": pa.array([4] * n, pa.int64()),
        "bytes": pa.array([300] * n, pa.int64()),
        "rev_packets": pa.array([4] * n, pa.int64()),
        "rev_bytes": pa.array([900] * n, pa.int64()),
        "sampling_rate": pa.array([1] * n, pa.uint32()),
        "exporter": pa.array(["sensor-1"] * n),
    }
    for k, name in enumerate(names):
        columns[name] = pa.array([r[6 + k] for r in rows], pa.string())
    pq.write_table(pa.table(columns), path)
    return path
