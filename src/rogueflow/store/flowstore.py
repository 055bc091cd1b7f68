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
import queue
import shutil
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rogueflow.enrich.territory import INDEX_KEY, builtin_index, read_claim
from rogueflow.errors import StoreError
from rogueflow.schema import (
    DICTIONARY_COLUMNS,
    FLOW_SCHEMA,
    MEASURED,
    METADATA_KEY,
    SCHEMA_VERSION,
    STORE_SCHEMA,
    upgrade,
)
from rogueflow.store.catalog import Catalog, ScopeFile, Source, StoredFile, now_iso
from rogueflow.store.rollup import rollup_path, write_rollup
from rogueflow.store.rows import I64, Rows, unpack
from rogueflow.store.scopefile import SCOPE_DIR, SCOPE_GROUP_ROWS, ScopeWriter
from rogueflow.workspace import Workspace

HASH_CHUNK = 1 << 20


def hash_file(h: Any, path: Path) -> None:
    """Feed a file's bytes to a hashlib object, in chunks (bounded memory)."""
    with open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    hash_file(h, path)
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
        batches: Iterable[Rows],
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
                scoper = self._scope_writer(stage, f"{source_id}-{ingest_id}.parquet")
                writer = _DayPartitionWriter(
                    stage,
                    prefix=f"{source_id}-{ingest_id}",
                    buffer_rows=int(self.ws.setting("buffer_rows")),
                    row_group_rows=int(self.ws.setting("row_group_rows")),
                    zstd_level=int(self.ws.setting("zstd_level")),
                    scope=scoper.add,
                )
                try:
                    for batch in batches:
                        writer.add(batch)
                        if on_rows is not None:
                            on_rows(batch.num_rows)
                    staged = writer.close()
                    scopes = scoper.close()
                except BaseException:
                    writer.abort()  # before the staging dir is removed under it
                    scoper.abort()
                    raise
                first_ts, last_ts = writer.time_range()
                final: list[StoredFile] = []
                for rel, day, rows, claim in staged:
                    size = (stage / rel).stat().st_size
                    self._move_in(stage, rel)
                    final.append(StoredFile(rel, source_id, day, rows, size, claim))
                old_scopes = self._scope_paths(source_id)
                self._move_scopes_in(stage, scopes)
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
                    old = self.catalog.replace_source(source, final, scopes)
                except BaseException:
                    for f in final:
                        self._unlink(f.path)
                    self._unlink_scopes(s.path for s in scopes)
                    raise
            finally:
                shutil.rmtree(stage, ignore_errors=True)
            keep = {f.path for f in final}
            for f in old:
                if f.path not in keep:
                    self._unlink(f.path)
            self._unlink_scopes(old_scopes - {s.path for s in scopes})
            return IngestResult(
                source_id, str(path), fmt, source.rows, len(final), replaced=existing is not None
            )

    def rewrite_source(
        self,
        source_id: str,
        transform: Callable[[pa.Table], pa.Table],
        *,
        on_file: Callable[[int], None] | None = None,
    ) -> int:
        """Rewrite every file of one source through ``transform``, atomically.

        Used to upgrade old files to the current schema and to refresh derived
        (enrichment) columns. Measured columns are checked to be unchanged: derived
        data may change, measurements never do. Returns the rows rewritten.
        """
        with self.ws.write_lock():
            files = self.catalog.files(source_id)
            if not files:
                return 0
            self.sweep()
            ingest_id = uuid.uuid4().hex[:12]
            stage = self.ws.staging_dir / ingest_id
            stage.mkdir(parents=True)
            new: list[StoredFile] = []
            scoper = self._scope_writer(stage, f"{source_id}-{ingest_id}.parquet")
            try:
                for k, f in enumerate(files, 1):
                    table = read_store_file(self.ws.flows_dir / f.path)
                    out = transform(table)
                    if not out.select(list(MEASURED)).equals(table.select(list(MEASURED))):
                        raise StoreError(f"rewrite of {f.path} changed measured columns; refused")
                    rel = f"day={f.day}/{source_id}-{ingest_id}-{k:05d}.parquet"
                    (stage / rel).parent.mkdir(parents=True, exist_ok=True)
                    claim = write_flow_table(
                        out.cast(FLOW_SCHEMA),
                        stage / rel,
                        int(self.ws.setting("row_group_rows")),
                        int(self.ws.setting("zstd_level")),
                        rollup=rollup_path(stage, rel),
                        scope=scoper.add,
                    )
                    size = (stage / rel).stat().st_size
                    new.append(StoredFile(rel, source_id, f.day, out.num_rows, size, claim))
                    if on_file is not None:
                        on_file(k)
                scopes = scoper.close()
                for f in new:
                    self._move_in(stage, f.path)
                old_scopes = self._scope_paths(source_id)
                self._move_scopes_in(stage, scopes)
                os.sync()
                try:
                    old = self.catalog.swap_files(source_id, new, SCHEMA_VERSION, scopes)
                except BaseException:
                    for f in new:
                        self._unlink(f.path)
                    self._unlink_scopes(s.path for s in scopes)
                    raise
            finally:
                scoper.abort()
                shutil.rmtree(stage, ignore_errors=True)
            for f in old:
                self._unlink(f.path)
            self._unlink_scopes(old_scopes - {s.path for s in scopes})
            return sum(f.rows for f in new)

    def remove_source(self, source_id: str) -> int:
        with self.ws.write_lock():
            old_scopes = self._scope_paths(source_id)
            old = self.catalog.remove_source(source_id)
            for f in old:
                self._unlink(f.path)
            self._unlink_scopes(old_scopes)
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
        for root in (self.ws.flows_dir, rollup_path(self.ws.flows_dir, "")):
            for p in root.glob("day=*/*.parquet"):
                if p.relative_to(root).as_posix() not in known:
                    p.unlink(missing_ok=True)
                    removed += 1
        scoped = self._scope_paths()
        for p in (self.ws.flows_dir / SCOPE_DIR).glob("*/*.parquet"):
            if p.relative_to(self.ws.flows_dir).as_posix() not in scoped:
                p.unlink(missing_ok=True)
                removed += 1
        return removed

    def _scope_writer(self, stage: Path, name: str) -> ScopeWriter:
        """The writer of a source's scope files (one per territory the store indexes)."""
        return ScopeWriter(
            stage,
            name,
            [t.code for t in builtin_index().territories],
            # smaller groups than the store's: a source's rows wait in memory for them
            row_group_rows=min(int(self.ws.setting("row_group_rows")), SCOPE_GROUP_ROWS),
            zstd_level=int(self.ws.setting("zstd_level")),
        )

    def _scope_paths(self, source_id: str | None = None) -> set[str]:
        """The committed scope files of one source (default: all), store-relative."""
        return {f.path for f in self.catalog.scope_files(source_id) if f.path is not None}

    def _move_scopes_in(self, stage: Path, scopes: list[ScopeFile]) -> None:
        for f in scopes:
            if f.path is not None:
                dest = self.ws.flows_dir / f.path
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / f.path, dest)

    def _unlink_scopes(self, paths: Iterable[str | None]) -> None:
        for rel in paths:
            if rel is not None:
                (self.ws.flows_dir / rel).unlink(missing_ok=True)

    def _move_in(self, stage: Path, rel: str) -> None:
        """Rename a staged store file and its roll-up into the store (before the commit
        that names them; the roll-up first, so a committed file never lacks it)."""
        for src, dest in (
            (rollup_path(stage, rel), rollup_path(self.ws.flows_dir, rel)),
            (stage / rel, self.ws.flows_dir / rel),
        ):
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)

    def _unlink(self, rel: str) -> None:
        """Delete a store file and its roll-up."""
        (self.ws.flows_dir / rel).unlink(missing_ok=True)
        rollup_path(self.ws.flows_dir, rel).unlink(missing_ok=True)

    # --- reading -------------------------------------------------------------

    def files(self) -> list[Path]:
        return [self.ws.flows_dir / f.path for f in self.catalog.files()]

    def claims(self, files: list[Path]) -> list[dict[str, str]]:
        """The territory index each of the store ``files`` claims (see enrich.territory):
        the catalog's copy of its footer, or the footer itself for files committed before
        the catalog kept one (reading 2,026 footers took 1.5 s of every report)."""
        copied = {f.path: f.territories for f in self.catalog.files()}
        out = []
        for p in files:
            text = copied.get(p.relative_to(self.ws.flows_dir).as_posix())
            if text is not None:
                out.append(read_claim(text.encode()))
            else:
                out.append(read_claim((pq.read_metadata(p).metadata or {}).get(INDEX_KEY)))
        return out

    def scope_files(self, code: str, files: list[Path]) -> list[Path] | None:
        """The scope files of territory ``code`` for the sources owning store ``files``;
        None unless each of those sources has its row (sources ingested before scope
        files existed have none until ``rogueflow enrich``). An empty list: no flow of
        theirs touches the territory."""
        owner = {f.path: f.source_id for f in self.catalog.files()}
        wanted: set[str] = set()
        for p in files:
            source = owner.get(p.relative_to(self.ws.flows_dir).as_posix())
            if source is None:  # committed after the caller listed the store: not ours
                return None
            wanted.add(source)
        rows = {f.source_id: f.path for f in self.catalog.scope_files(territory=code)}
        if not wanted <= rows.keys():
            return None
        return [self.ws.flows_dir / rel for s in sorted(wanted) if (rel := rows[s]) is not None]

    def rollups(self, files: list[Path]) -> list[Path] | None:
        """The roll-ups of store ``files``; None unless every one of them has its own
        (files written before roll-ups existed have none until ``rogueflow enrich``)."""
        out = [
            rollup_path(self.ws.flows_dir, p.relative_to(self.ws.flows_dir).as_posix())
            for p in files
        ]
        return out if all(p.is_file() for p in out) else None


class _DayPartitionWriter:
    """Buffers rows per UTC day; writes sorted Parquet files to a staging dir.

    Rows are buffered by reference — (batch, row indices) per day, never copied on
    arrival: a day's file gathers its rows from the batches in ``ts_start`` order with
    one ``take`` when it is written, which also drops the rows a :class:`Selection`
    left out. Gathering, Parquet encoding and zstd run without the GIL, so worker
    threads (one per core) overlap them with the reader's parsing. A day is written as
    soon as the input has moved past it (exports are sorted-ish by time), else when the
    buffer is full or at close; at most ``_IN_FLIGHT`` files wait for a worker.

    Splitting batches by day runs in a thread of its own too, so the caller's next
    batch is produced meanwhile; at most ``_INBOX`` batches wait for it, and its errors
    are raised by the next ``add``/``close``.
    """

    _WORKERS = 2
    _IN_FLIGHT = 3
    _INBOX = 2

    def __init__(
        self,
        root: Path,
        *,
        prefix: str,
        buffer_rows: int,
        row_group_rows: int,
        zstd_level: int,
        scope: Callable[[pa.Table], None] | None = None,
    ) -> None:
        self.root = root
        self.scope = scope
        self.prefix = prefix
        self.buffer_rows = buffer_rows
        self.row_group_rows = row_group_rows
        self.zstd_level = zstd_level
        self.buffers: dict[int, list[tuple[pa.Table, I64 | None]]] = {}
        self.day_rows: dict[int, int] = {}
        self.buffered = 0
        self.written: list[tuple[str, str, int, Future[str]]] = []
        self.counter = 0
        self._min: int | None = None
        self._max: int | None = None
        workers = max(1, min(self._WORKERS, os.cpu_count() or 1))
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rogueflow-write")
        self._pending: deque[Future[str]] = deque()
        self._inbox: queue.Queue[Rows | None] = queue.Queue(maxsize=self._INBOX)
        self._error: BaseException | None = None
        self._splitter: threading.Thread | None = threading.Thread(
            target=self._split_loop, name="rogueflow-split", daemon=True
        )
        self._splitter.start()

    def add(self, rows: Rows) -> None:
        """Queue one batch; raises an error of an earlier batch."""
        if self._error is not None:
            raise self._error
        if rows.num_rows:
            self._inbox.put(rows)

    def _split_loop(self) -> None:
        while (rows := self._inbox.get()) is not None:
            if self._error is not None:
                continue  # keep draining so that add() never blocks on a dead thread
            try:
                self._add(rows)
            except BaseException as exc:  # raised in the caller's thread
                self._error = exc

    def _stop_splitter(self) -> None:
        if self._splitter is not None:
            self._inbox.put(None)
            self._splitter.join()
            self._splitter = None

    def _add(self, rows: Rows) -> None:
        table, picked = unpack(rows)
        if table.schema != STORE_SCHEMA:
            table = table.cast(STORE_SCHEMA)
        us = _int64_values(table.column("ts_start"))
        if picked is not None:
            us = us[picked]
        lo_us, hi_us = int(us.min()), int(us.max())
        self._min = lo_us if self._min is None else min(self._min, lo_us)
        self._max = hi_us if self._max is None else max(self._max, hi_us)
        first, last = lo_us // _DAY_US, hi_us // _DAY_US
        if first == last:
            self._buffer(first, table, picked)
        else:
            day_idx = us // _DAY_US
            order = np.argsort(day_idx, kind="stable")
            days = day_idx[order]
            at = order if picked is None else picked[order]
            bounds = np.flatnonzero(np.diff(days)) + 1
            starts = np.concatenate(([0], bounds))
            ends = np.concatenate((bounds, [len(days)]))
            for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
                self._buffer(int(days[s]), table, at[s:e])
        # the input has moved past these days: write them now rather than at close
        for day in sorted(d for d in self.buffers if d < first):
            self._flush(day)
        while self.buffered > self.buffer_rows:
            self._flush(max(self.day_rows, key=self.day_rows.__getitem__))

    def _buffer(self, day: int, table: pa.Table, picked: I64 | None) -> None:
        rows = table.num_rows if picked is None else len(picked)
        self.buffers.setdefault(day, []).append((table, picked))
        self.day_rows[day] = self.day_rows.get(day, 0) + rows
        self.buffered += rows

    def _flush(self, day_index: int) -> None:
        parts = self.buffers.pop(day_index)
        rows = self.day_rows.pop(day_index)
        self.buffered -= rows
        day = _day_name(day_index)
        self.counter += 1
        rel = f"day={day}/{self.prefix}-{self.counter:05d}.parquet"
        dest = self.root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        while len(self._pending) >= self._IN_FLIGHT:
            self._pending.popleft().result()
        done = self._pool.submit(
            _write_day,
            parts,
            dest,
            rollup_path(self.root, rel),
            self.row_group_rows,
            self.zstd_level,
            self.scope,
        )
        self._pending.append(done)
        self.written.append((rel, day, rows, done))

    def close(self) -> list[tuple[str, str, int, str]]:
        """Flush every buffer and wait for the writes; re-raises a write error. Returns
        each file's path, day, rows and territory claim."""
        try:
            self._stop_splitter()
            if self._error is not None:
                raise self._error
            for day in sorted(self.buffers):
                self._flush(day)
            while self._pending:
                self._pending.popleft().result()
        finally:
            self.abort()
        return [(rel, day, rows, done.result()) for rel, day, rows, done in self.written]

    def abort(self) -> None:
        """Stop the writer threads (pending writes finish; their files are discarded)."""
        self._stop_splitter()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def time_range(self) -> tuple[str | None, str | None]:
        if self._min is None or self._max is None:
            return None, None
        conv = np.datetime64(self._min, "us"), np.datetime64(self._max, "us")
        return str(conv[0]) + "Z", str(conv[1]) + "Z"


_DAY_US = 86_400_000_000


def _int64_values(col: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    """A non-null timestamp column's microseconds, without a copy when it is one chunk."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    return np.asarray(arr.view(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64)


def _write_day(
    parts: list[tuple[pa.Table, I64 | None]],
    dest: Path,
    rollup: Path,
    row_group_rows: int,
    zstd_level: int,
    scope: Callable[[pa.Table], None] | None,
) -> str:
    """Write one day's picked rows in store order (one gather, in write_flow_table)."""
    whole, rows = concat_parts(parts)
    return write_flow_table(
        whole, dest, row_group_rows, zstd_level, rows=rows, rollup=rollup, scope=scope
    )


def concat_parts(parts: list[tuple[pa.Table, I64 | None]]) -> tuple[pa.Table, I64 | None]:
    """The batches of ``parts`` concatenated without copying, and the rows picked from
    them (``None``: every row)."""
    tables, picks, offset = [], [], 0
    for table, picked in parts:
        tables.append(table)
        if picked is None:
            picks.append(np.arange(offset, offset + table.num_rows, dtype=np.int64))
        else:
            picks.append(picked + offset)
        offset += table.num_rows
    whole = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if all(picked is None for _, picked in parts):
        return whole, None
    return whole, np.concatenate(picks) if len(picks) > 1 else picks[0]


def store_order(table: pa.Table, rows: I64 | None) -> tuple[I64 | None, int]:
    """The store's row order of ``rows`` of ``table`` (``None``: all, already in order),
    and how many of them touch an indexed territory (the first block).

    Flows touching an indexed territory come first, then the rest, each by ts_start
    (stable): the engine skips the other columns of the untouched block when a query
    selects a territory, and ts_start stays sorted within each block.
    """
    index = np.arange(table.num_rows, dtype=np.int64) if rows is None else rows
    us = _int64_values(table.column("ts_start"))[index]
    if len(us) > 1 and not (us[1:] >= us[:-1]).all():
        index = index[np.argsort(us, kind="stable")]
    touch = np.zeros(table.num_rows, dtype=bool)
    for name in ("src_territory", "dst_territory"):
        col = table.column(name)
        if col.null_count < len(col):
            touch |= pc.is_valid(col).to_numpy(zero_copy_only=False)
    picked = touch[index]
    touching = int(picked.sum())
    if 0 < touching < len(index) and not picked[:touching].all():
        index = np.concatenate((index[picked], index[~picked]))
    if len(index) == table.num_rows and (index == np.arange(len(index))).all():
        return None, touching
    return index, touching


def _take(table: pa.Table, index: I64) -> pa.Table:
    """Rows ``index`` of ``table``; a column null in every row is made anew rather than
    gathered (readers leave many optional columns empty)."""
    at = pa.array(index)
    columns = [
        pa.nulls(len(index), col.type) if col.null_count == len(col) else col.take(at)
        for col in table.columns
    ]
    return pa.Table.from_arrays(columns, schema=table.schema)


#: Columns whose row-group min/max statistics are written: what queries filter on.
#: Statistics of the label strings cost a tenth of the write time and prune nothing.
STATISTICS_COLUMNS = [
    "ts_start", "ts_end", "src_addr", "dst_addr", "src_port", "dst_port", "proto",
    "src_asn", "dst_asn", "source_id", "src_territory", "dst_territory",
]  # fmt: skip

#: Dictionary-encoded in Parquet: the DICTIONARY_COLUMNS (written from their Arrow
#: codes) and the columns whose values repeat (addresses, ports, names).
PARQUET_DICTIONARY = [
    *(c for c in STORE_SCHEMA.names if c in DICTIONARY_COLUMNS),
    "src_addr", "dst_addr", "exporter", "observation_point", "app_label", "server_name",
    "dns_query", "pool", "wallet", "src_port", "dst_port", "proto", "tcp_flags",
    "sampling_rate",
]  # fmt: skip


def write_flow_table(
    table: pa.Table,
    dest: Path,
    row_group_rows: int,
    zstd_level: int,
    *,
    rows: I64 | None = None,
    rollup: Path | None = None,
    scope: Callable[[pa.Table], None] | None = None,
) -> str:
    """Write ``rows`` of ``table`` (default all) as one store file: the territory index
    computed (src_territory, dst_territory, and the footer naming what was indexed),
    in store order (:func:`store_order`), and its roll-up to ``rollup`` (see
    :mod:`rogueflow.store.rollup`). The caller syncs before committing them. Returns
    the footer's territory claim (the catalog keeps a copy: see :meth:`FlowStore.claims`)."""
    if table.schema != STORE_SCHEMA:
        table = table.cast(STORE_SCHEMA)
    index = builtin_index()
    src_t, dst_t = index.columns(table)
    table = table.set_column(table.schema.get_field_index("src_territory"), "src_territory", src_t)
    table = table.set_column(table.schema.get_field_index("dst_territory"), "dst_territory", dst_t)
    order, touching = store_order(table, rows)
    if order is not None:
        table = _take(table, order)
    claim = {INDEX_KEY: index.footer()}
    table = table.replace_schema_metadata({**(STORE_SCHEMA.metadata or {}), **claim})
    if rollup is not None:
        write_rollup(table.slice(0, touching), rollup, claim)
    if scope is not None:
        block = table.slice(0, touching)
        if 2 * touching < table.num_rows:
            # the scope writer buffers what it is given, and a slice keeps its whole table
            # alive: the few touching rows of a world-wide export are copied out
            block = block.take(pa.array(np.arange(touching, dtype=np.int64)))
        scope(block)
    pq.write_table(
        table,
        dest,
        row_group_size=row_group_rows,
        compression="zstd",
        compression_level=zstd_level,
        use_dictionary=PARQUET_DICTIONARY,
        column_encoding={
            "ts_start": "DELTA_BINARY_PACKED",
            "ts_end": "DELTA_BINARY_PACKED",
            "packets": "DELTA_BINARY_PACKED",
            "bytes": "DELTA_BINARY_PACKED",
            "rev_packets": "DELTA_BINARY_PACKED",
            "rev_bytes": "DELTA_BINARY_PACKED",
        },
        write_statistics=STATISTICS_COLUMNS,
    )
    return claim[INDEX_KEY].decode()


def read_store_file(path: Path) -> pa.Table:
    """A store file upgraded to the current schema (see schema.MIGRATIONS), as strings.

    Files keep DICTIONARY_COLUMNS as dictionaries; callers get FLOW_SCHEMA's types.
    """
    table = pq.read_table(path)
    meta = table.schema.metadata or {}
    version = int(meta.get(METADATA_KEY, b"1"))
    # only current-version files hold dictionaries; the migrations never see one
    return upgrade(table, version).cast(FLOW_SCHEMA)


def _day_name(day_index: int) -> str:
    return str(np.datetime64(day_index, "D"))
