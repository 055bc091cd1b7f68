"""The flow store: Parquet (zstd) partitioned by UTC day, made visible by the catalog.

Writing a source:

1. batches are split by day and buffered (bounded by ``buffer_rows``);
2. full buffers are sorted by ``ts_start`` and written under ``store/.staging/<ingest>``;
3. when the reader is exhausted without error the staged files are renamed into
   ``store/flows/day=…/`` and committed to the catalog in one transaction.

A failure (bad input, SIGKILL, full disk) before step 3's commit leaves nothing
visible; leftovers are swept by the next write. Re-ingesting a file with the same
content is refused unless ``force`` is given, in which case the old files are
replaced in the same transaction.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rogueflow.schema import FLOW_SCHEMA, SCHEMA_VERSION
from rogueflow.store.catalog import Catalog, Source, StoredFile, now_iso
from rogueflow.workspace import Workspace

HASH_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class IngestResult:
    source_id: str
    path: str
    format: str
    rows: int
    files: int
    skipped: bool = False
    replaced: bool = False


class FlowStore:
    def __init__(self, workspace: Workspace) -> None:
        self.ws = workspace
        self.ws.flows_dir.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(self.ws.catalog_path)

    def close(self) -> None:
        self.catalog.close()

    # --- writing -------------------------------------------------------------

    def write_source(
        self,
        *,
        path: Path,
        sha256: str,
        fmt: str,
        batches: Iterable[pa.Table],
        force: bool = False,
        on_rows: Callable[[int], None] | None = None,
    ) -> IngestResult:
        """Store every batch of one source atomically (see module docstring)."""
        source_id = sha256[:16]
        with self.ws.write_lock():
            existing = self.catalog.source_by_sha(sha256)
            if existing is not None and not force:
                return IngestResult(
                    existing.source_id,
                    existing.path,
                    existing.format,
                    existing.rows,
                    len(self.catalog.files(existing.source_id)),
                    skipped=True,
                )
            self.sweep()
            ingest_id = uuid.uuid4().hex[:12]
            stage = self.ws.staging_dir / ingest_id
            stage.mkdir(parents=True)
            try:
                writer = _DayPartitionWriter(
                    stage,
                    prefix=f"{source_id}-{ingest_id}",
                    buffer_rows=int(self.ws.setting("buffer_rows")),
                    row_group_rows=int(self.ws.setting("row_group_rows")),
                    zstd_level=int(self.ws.setting("zstd_level")),
                )
                try:
                    for batch in batches:
                        writer.add(batch)
                        if on_rows is not None:
                            on_rows(batch.num_rows)
                except BaseException:
                    writer.abort()  # before the staging dir is removed under it
                    raise
                staged = writer.close()
                first_ts, last_ts = writer.time_range()
                final: list[StoredFile] = []
                for rel, day, rows in staged:
                    dest = self.ws.flows_dir / rel
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    src = stage / rel
                    size = src.stat().st_size
                    os.replace(src, dest)
                    final.append(StoredFile(rel, source_id, day, rows, size))
                # one sync for all files and renames: a committed catalog row must never
                # name a torn file, and an fsync per day file costs seconds per source
                os.sync()
                source = Source(
                    source_id=source_id,
                    sha256=sha256,
                    path=str(path),
                    format=fmt,
                    size=path.stat().st_size,
                    rows=sum(f.rows for f in final),
                    first_ts=first_ts,
                    last_ts=last_ts,
                    ingested_at=now_iso(),
                    schema_version=SCHEMA_VERSION,
                )
                try:
                    old = self.catalog.replace_source(source, final)
                except BaseException:
                    for f in final:
                        (self.ws.flows_dir / f.path).unlink(missing_ok=True)
                    raise
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            keep = {f.path for f in final}
            for f in old:
                if f.path not in keep:
                    (self.ws.flows_dir / f.path).unlink(missing_ok=True)
            return IngestResult(
                source_id, str(path), fmt, source.rows, len(final), replaced=existing is not None
            )

    def remove_source(self, source_id: str) -> int:
        with self.ws.write_lock():
            old = self.catalog.remove_source(source_id)
            for f in old:
                (self.ws.flows_dir / f.path).unlink(missing_ok=True)
            return sum(f.rows for f in old)

    def sweep(self) -> int:
        """Delete staging leftovers and store files no committed source owns.

        Called with the write lock held, so no ingest is in flight.
        """
        removed = 0
        if self.ws.staging_dir.exists():
            for d in self.ws.staging_dir.iterdir():
                shutil.rmtree(d, ignore_errors=True)
                removed += 1
        known = {f.path for f in self.catalog.files()}
        for p in self.ws.flows_dir.glob("day=*/*.parquet"):
            rel = p.relative_to(self.ws.flows_dir).as_posix()
            if rel not in known:
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    # --- reading -------------------------------------------------------------

    def files(self) -> list[Path]:
        return [self.ws.flows_dir / f.path for f in self.catalog.files()]


class _DayPartitionWriter:
    """Buffers rows per UTC day; writes sorted Parquet files to a staging dir."""

    def __init__(
        self, root: Path, *, prefix: str, buffer_rows: int, row_group_rows: int, zstd_level: int
    ) -> None:
        self.root = root
        self.prefix = prefix
        self.buffer_rows = buffer_rows
        self.row_group_rows = row_group_rows
        self.zstd_level = zstd_level
        self.buffers: dict[str, list[pa.Table]] = {}
        self.buffered = 0
        self.written: list[tuple[str, str, int]] = []
        self.counter = 0
        self._min: int | None = None
        self._max: int | None = None
        # Parquet encoding and zstd run without the GIL, so a writer thread overlaps
        # them with the reader's parsing; at most two files are in flight (bounded memory)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rogueflow-write")
        self._pending: deque[Future[None]] = deque()

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if table.schema != FLOW_SCHEMA:
            table = table.cast(FLOW_SCHEMA)
        ts = table.column("ts_start")
        lo, hi = pc.min_max(ts).values()
        lo_us, hi_us = lo.value, hi.value
        self._min = lo_us if self._min is None else min(self._min, lo_us)
        self._max = hi_us if self._max is None else max(self._max, hi_us)
        days_us = 86_400_000_000
        day_idx = pc.cast(ts, pa.int64()).to_numpy() // days_us
        first, last = int(day_idx.min()), int(day_idx.max())
        if first == last:
            self._buffer(_day_name(first), table)
        else:
            order = np.argsort(day_idx, kind="stable")
            sorted_days = day_idx[order]
            bounds = np.flatnonzero(np.diff(sorted_days)) + 1
            starts = np.concatenate(([0], bounds))
            ends = np.concatenate((bounds, [len(order)]))
            taken = table.take(pa.array(order))
            for s, e in zip(starts, ends, strict=True):
                self._buffer(_day_name(int(sorted_days[s])), taken.slice(int(s), int(e - s)))
        while self.buffered > self.buffer_rows:
            biggest = max(self.buffers, key=lambda d: sum(t.num_rows for t in self.buffers[d]))
            self._flush(biggest)

    def _buffer(self, day: str, table: pa.Table) -> None:
        self.buffers.setdefault(day, []).append(table)
        self.buffered += table.num_rows

    def _flush(self, day: str) -> None:
        tables = self.buffers.pop(day)
        table = pa.concat_tables(tables)
        self.buffered -= table.num_rows
        table = table.sort_by([("ts_start", "ascending")])
        self.counter += 1
        rel = f"day={day}/{self.prefix}-{self.counter:05d}.parquet"
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        while len(self._pending) >= 2:
            self._pending.popleft().result()
        self._pending.append(
            self._pool.submit(write_flow_table, table, dest, self.row_group_rows, self.zstd_level)
        )
        self.written.append((rel, day, table.num_rows))

    def close(self) -> list[tuple[str, str, int]]:
        """Flush every buffer and wait for the writes; re-raises a write error."""
        try:
            for day in sorted(self.buffers):
                self._flush(day)
            while self._pending:
                self._pending.popleft().result()
        finally:
            self.abort()
        return self.written

    def abort(self) -> None:
        """Stop the writer thread (pending writes finish; their files are discarded)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def time_range(self) -> tuple[str | None, str | None]:
        if self._min is None or self._max is None:
            return None, None
        conv = np.datetime64(self._min, "us"), np.datetime64(self._max, "us")
        return str(conv[0]) + "Z", str(conv[1]) + "Z"


def write_flow_table(table: pa.Table, dest: Path, row_group_rows: int, zstd_level: int) -> None:
    """Write one store file (the caller syncs before committing it to the catalog)."""
    pq.write_table(
        table,
        dest,
        row_group_size=row_group_rows,
        compression="zstd",
        compression_level=zstd_level,
        use_dictionary=[
            "src_addr",
            "dst_addr",
            "exporter",
            "observation_point",
            "app_label",
            "server_name",
            "dns_query",
            "source_format",
            "source_id",
            "src_port",
            "dst_port",
            "proto",
            "tcp_flags",
            "sampling_rate",
        ],
        column_encoding={
            "ts_start": "DELTA_BINARY_PACKED",
            "ts_end": "DELTA_BINARY_PACKED",
            "packets": "DELTA_BINARY_PACKED",
            "bytes": "DELTA_BINARY_PACKED",
            "rev_packets": "DELTA_BINARY_PACKED",
            "rev_bytes": "DELTA_BINARY_PACKED",
        },
        write_statistics=True,
    )


def _day_name(day_index: int) -> str:
    return str(np.datetime64(day_index, "D"))
