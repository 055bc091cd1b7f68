"""Roll-ups: quarter-hour aggregates, without addresses, of the flows touching a territory.

Every store file is written with a roll-up file beside it (``<store>/_rollup/<same
relative path>``), made from the same rows in the same write: the flows that touch an
indexed territory (the block the territory index puts first in the file) grouped by
UTC quarter-hour and :data:`KEYS`, with their counts and sums. It shares the store
file's lifecycle — staged, renamed and committed with it, removed with it — so a
roll-up exists exactly for the committed files written since schema 4, and a
re-ingest or ``rogueflow enrich`` replaces both.

A report reads them for the trends that need no address (flows, bytes and packets
per day, month, side and local time; see :class:`rogueflow.analyze.context.Trend`)
when every file in its scope has one, instead of rescanning the flows. Quarter-hours,
not hours: local time must come out exact in zones offset by a half or a quarter hour
(Pyongyang was UTC+08:30), and a report routes to the roll-ups only when every offset
of its window and its business hours fall on quarter-hours.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rogueflow.schema import STORE_SCHEMA, TIMESTAMP

ROLLUP_DIR = "_rollup"
ROLLUP_VERSION = 1
VERSION_KEY = b"rogueflow.rollup_version"
#: the bucket width, microseconds
QUARTER_US = 900_000_000

#: what a roll-up row is keyed by besides its quarter-hour: no addresses, no ports, and
#: no countries (the remote country multiplies the rows 1.4x on the full demo, where
#: these keys already make 3.5M rows of 23.7M flows: 1,000 days of 96 quarter-hours)
KEYS = (
    "src_territory", "dst_territory", "proto", "sampling_rate", "category", "service",
    "coin", "source_id",
)  # fmt: skip
SUMS = ("packets", "bytes", "rev_packets", "rev_bytes")

ROLLUP_SCHEMA = pa.schema(
    [
        pa.field("qh", TIMESTAMP, nullable=False),
        *(STORE_SCHEMA.field(k) for k in KEYS),
        pa.field("flows", pa.int64(), nullable=False),
        *(pa.field(s, pa.int64(), nullable=False) for s in SUMS),
    ]
)


def rollup_path(root: Path, rel: str) -> Path:
    """Where the roll-up of store file ``rel`` lives under a store (or staging) root."""
    return root / ROLLUP_DIR / rel


def rollup_table(touching: pa.Table) -> pa.Table:
    """The roll-up rows of ``touching`` (store rows that touch an indexed territory)."""
    us = pc.cast(touching.column("ts_start"), pa.int64()).to_numpy()
    qh = pa.array(us - us % QUARTER_US, pa.int64()).cast(TIMESTAMP)
    cols = {"qh": qh, **{k: touching.column(k) for k in (*KEYS, *SUMS)}}
    grouped = (
        pa.table(cols)
        .group_by(["qh", *KEYS], use_threads=False)
        .aggregate([*((s, "sum") for s in SUMS), ("qh", "count")])
    )
    out = {
        "qh": grouped.column("qh"),
        **{k: grouped.column(k) for k in KEYS},
        "flows": grouped.column("qh_count"),
        **{s: grouped.column(f"{s}_sum") for s in SUMS},
    }
    table = pa.table(out).cast(ROLLUP_SCHEMA)
    if table.num_rows > 1:
        order = np.argsort(pc.cast(table.column("qh"), pa.int64()).to_numpy(), kind="stable")
        table = table.take(pa.array(order))
    return table


def write_rollup(touching: pa.Table, dest: Path, metadata: dict[bytes, bytes]) -> None:
    """Write the roll-up of ``touching`` to ``dest`` (an empty file when no row touches:
    a store file without its roll-up means one written before roll-ups existed)."""
    table = rollup_table(touching).replace_schema_metadata(
        {**metadata, VERSION_KEY: str(ROLLUP_VERSION).encode()}
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        dest,
        compression="zstd",
        compression_level=1,
        column_encoding={"qh": "DELTA_BINARY_PACKED"},
        use_dictionary=[c for c in table.column_names if c != "qh"],
    )
