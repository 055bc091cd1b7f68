"""Scope files: each source's flows that touch a territory, sided for it, written at ingest.

A report's scope (:func:`rogueflow.analyze.context.base_sql`) is the flows with an end
inside its territory, each with its inside and outside end resolved. Made from the
store, it is one scan of every stored flow and a write of the result into the row
cache: 16-20 s of a first report on the full demo (23.7M flows in scope), about half
of it. The store's territory index already knows, at ingest, which end of each flow
lies inside which built-in territory; so the store writes the scope's rows there, from
the same rows in the same write: one file per source and indexed territory,
``<store>/_scope/<code>/<source>-<ingest>.parquet``, in the columns and types of
``base_sql`` (:data:`SCOPE_SCHEMA`).

They share their source's lifecycle: staged, moved in and committed in the catalog
(table ``scope_files``: a row per source and indexed territory, its path NULL when no
flow of the source touches that territory) together with the source's store files;
replaced by a re-ingest (``--force``) and by re-enrichment (``rogueflow enrich``, which
also writes them for sources ingested before they existed); removed with the source.
A report reads them instead of building its scope when every source in the store has
its row for the report's territory and the territory index answers for it (its profile
unchanged since ingest), on the embedded engine; otherwise from the store, as before.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rogueflow.enrich.territory import SIDE_IN, SIDE_INTERNAL, SIDE_OUT
from rogueflow.schema import STORE_SCHEMA
from rogueflow.store.catalog import ScopeFile

SCOPE_DIR = "_scope"
#: rows per row group at most (they are buffered per territory until a group is full)
SCOPE_GROUP_ROWS = 262_144

_SIDES = pa.array([SIDE_INTERNAL, SIDE_OUT, SIDE_IN], pa.string())
#: (column, source column of a flow whose source is inside, of one whose destination is)
_SIDED = (
    ("internal_addr", "src_addr", "dst_addr"),
    ("remote_addr", "dst_addr", "src_addr"),
    ("internal_port", "src_port", "dst_port"),
    ("remote_port", "dst_port", "src_port"),
    ("remote_country", "dst_country", "src_country"),
    ("remote_asn", "dst_asn", "src_asn"),
    ("remote_as_org", "dst_as_org", "src_as_org"),
)
_KEPT_BEFORE = (
    "proto", "tcp_flags", "packets", "bytes", "rev_packets", "rev_bytes", "sampling_rate",
    "exporter", "source_id", "app_label", "server_name", "dns_query",
)  # fmt: skip
_KEPT_AFTER = (
    "service", "category", "confidence", "evidence", "coin", "pool", "wallet", "intel",
)  # fmt: skip
_NAIVE = pa.timestamp("us")


def _store_type(name: str) -> pa.DataType:
    return STORE_SCHEMA.field(name).type


#: the columns of ``base_sql``'s rows, in its order, as the store types them (strings
#: stay dictionaries; a reader sees the same values either way)
SCOPE_SCHEMA = pa.schema(
    [
        pa.field("ts_utc", _NAIVE, nullable=False),
        pa.field("ts_end", _NAIVE, nullable=False),
        pa.field("side", pa.dictionary(pa.int32(), pa.string()), nullable=False),
        *(pa.field(name, _store_type(src)) for name, src, _ in _SIDED[:4]),
        *(pa.field(name, _store_type(name)) for name in _KEPT_BEFORE),
        pa.field("remote_country", _store_type("dst_country")),
        pa.field("remote_asn", pa.int64()),
        pa.field("remote_as_org", _store_type("dst_as_org")),
        *(pa.field(name, _store_type(name)) for name in _KEPT_AFTER),
    ]
)

#: what queries filter on, so row groups carry their min/max
_STATISTICS = ["ts_utc", "side", "internal_port", "remote_port", "proto"]


def scope_path(root: Path, code: str, name: str) -> Path:
    """Where scope file ``name`` of territory ``code`` lives under a store (or staging) root."""
    return root / SCOPE_DIR / code / name


def scope_rows(touching: pa.Table, code: str) -> pa.Table:
    """The rows of ``touching`` (store rows, territory index set) with an end inside
    territory ``code``, sided for it: :data:`SCOPE_SCHEMA`, as ``base_sql`` makes them."""
    si = pc.fill_null(pc.equal(touching.column("src_territory"), code), False)
    di = pc.fill_null(pc.equal(touching.column("dst_territory"), code), False)
    keep = pc.or_(si, di)
    if not pc.all(keep).as_py():
        touching, si, di = touching.filter(keep), si.filter(keep), di.filter(keep)
    s = np.asarray(si.to_numpy(zero_copy_only=False), dtype=bool)
    d = np.asarray(di.to_numpy(zero_copy_only=False), dtype=bool)
    side_code = np.where(s & d, 0, np.where(s, 1, 2)).astype(np.int32)
    cols: dict[str, pa.Array | pa.ChunkedArray] = {
        "ts_utc": touching.column("ts_start").cast(_NAIVE),
        "ts_end": touching.column("ts_end").cast(_NAIVE),
        "side": pa.DictionaryArray.from_arrays(pa.array(side_code), _SIDES),
    }
    inside = pa.array(s)
    for name, if_src, if_dst in _SIDED:
        cols[name] = pc.if_else(inside, touching.column(if_src), touching.column(if_dst))
    cols["remote_asn"] = cols["remote_asn"].cast(pa.int64())
    for name in (*_KEPT_BEFORE, *_KEPT_AFTER):
        cols[name] = touching.column(name)
    return pa.Table.from_arrays([cols[f.name] for f in SCOPE_SCHEMA], schema=SCOPE_SCHEMA)


class ScopeWriter:
    """The scope files of one source being written: one Parquet file per indexed
    territory that its flows touch, under a staging root.

    ``add`` takes each store file's touching rows (from the writer threads: it is
    thread-safe); rows are buffered per territory and written as row groups of about
    ``row_group_rows``, so memory stays bounded whatever the source's size.
    """

    def __init__(
        self, root: Path, name: str, codes: list[str], *, row_group_rows: int, zstd_level: int
    ) -> None:
        self.root = root
        self.name = name
        self.codes = list(codes)
        self.row_group_rows = row_group_rows
        self.zstd_level = zstd_level
        self._lock = threading.Lock()
        self._buffers: dict[str, list[pa.Table]] = {c: [] for c in self.codes}
        self._buffered: dict[str, int] = dict.fromkeys(self.codes, 0)
        self._rows: dict[str, int] = dict.fromkeys(self.codes, 0)
        self._writers: dict[str, pq.ParquetWriter] = {}

    def add(self, touching: pa.Table) -> None:
        """Take the touching rows of one store file (any indexed territory)."""
        if not touching.num_rows:
            return
        present: set[str] = set()
        for end in ("src_territory", "dst_territory"):
            col = touching.column(end)
            if col.null_count < len(col):
                present.update(v for v in pc.unique(col).to_pylist() if v is not None)
        for code in sorted(present & set(self.codes)):
            rows = scope_rows(touching, code)  # outside the lock: writer threads overlap
            with self._lock:
                self._buffers[code].append(rows)
                self._buffered[code] += rows.num_rows
                self._rows[code] += rows.num_rows
                if self._buffered[code] >= self.row_group_rows:
                    self._flush(code)

    def _flush(self, code: str) -> None:
        parts, self._buffers[code], self._buffered[code] = self._buffers[code], [], 0
        if not parts:
            return
        writer = self._writers.get(code)
        if writer is None:
            dest = scope_path(self.root, code, self.name)
            dest.parent.mkdir(parents=True, exist_ok=True)
            writer = self._writers[code] = pq.ParquetWriter(
                dest,
                SCOPE_SCHEMA,
                compression="zstd",
                compression_level=self.zstd_level,
                write_statistics=_STATISTICS,
                column_encoding={"ts_utc": "DELTA_BINARY_PACKED", "ts_end": "DELTA_BINARY_PACKED"},
                use_dictionary=[f.name for f in SCOPE_SCHEMA if not f.name.startswith("ts_")],
            )
        # one dictionary per column, so that a row group's column stays dictionary-encoded
        # (on a change of dictionary the writer falls back to plain values); the other
        # columns are written from their chunks (combine_chunks copied them all: 0.22
        # CPU-s per 1M rows, against 0.01 for unifying the dictionaries)
        writer.write_table(pa.concat_tables(parts).unify_dictionaries(), self.row_group_rows)

    def close(self) -> list[ScopeFile]:
        """Write what is buffered and close the files; a row per indexed territory
        (``source_id`` is the name's first 16 characters)."""
        with self._lock:
            for code in self.codes:
                self._flush(code)
            self.abort()
        source_id = self.name[:16]
        return [
            ScopeFile(
                source_id,
                code,
                f"{SCOPE_DIR}/{code}/{self.name}" if self._rows[code] else None,
                self._rows[code],
            )
            for code in self.codes
        ]

    def abort(self) -> None:
        """Close the open files (the caller discards the staging root)."""
        writers, self._writers = self._writers, {}
        for w in writers.values():
            w.close()
