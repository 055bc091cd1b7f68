"""Ingest: find files, pick a reader, hash, read, conform, store atomically."""

from __future__ import annotations

import contextlib
import hashlib
import queue
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from rogueflow.detect.behaviour import Behaviour
from rogueflow.enrich.intel import Enricher
from rogueflow.errors import InputError, UnknownFormat
from rogueflow.ingest.base import Reader, ReadOptions, read_head
from rogueflow.schema import conform
from rogueflow.store.flowstore import FlowStore, IngestResult, hash_file
from rogueflow.store.rows import Rows

#: batches each pipeline stage may hold ready ahead of the next (bounds memory)
PREFETCH = 2
_DONE = object()


class _Failed:
    """A stage's exception, carried to the consuming thread to be raised there."""

    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def readers() -> list[Reader]:
    from rogueflow.ingest import READERS

    return list(READERS)


def reader_by_name(name: str) -> Reader:
    for r in readers():
        if r.name == name:
            return r
    names = ", ".join(r.name for r in readers())
    raise UnknownFormat(None, None, f"unknown format {name!r}; known formats: {names}")


def detect(path: Path) -> Reader:
    head = read_head(path)
    for r in readers():
        if r.sniff(path, head):
            return r
    names = ", ".join(r.name for r in readers())
    raise UnknownFormat(
        path, None, f"no reader recognises this file; pass --format (one of: {names})"
    )


def expand(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, and every regular file under named directories (sorted).

    Companion files (Zeek dns/ssl logs) found in directories are left to their main
    file's reader. Hidden files are skipped.
    """
    from rogueflow.ingest import COMPANION_ONLY

    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise InputError(p, None, "no such file or directory")
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and not f.name.startswith(".") and not COMPANION_ONLY(f):
                    out.append(f)
        else:
            out.append(p)
    return out


def source_hash(paths: list[Path]) -> str:
    """sha256 over the main file and its companions (so a new ssl.log is a new source)."""
    h = hashlib.sha256()
    for i, p in enumerate(paths):
        if i:
            h.update(b"\x00companion:" + p.name.encode() + b"\x00")
        hash_file(h, p)
    return h.hexdigest()


@dataclass(frozen=True)
class Plan:
    path: Path
    reader: Reader
    companions: list[Path]
    sha256: str


def plan(path: Path, fmt: str | None = None) -> Plan:
    reader = reader_by_name(fmt) if fmt else detect(path)
    comps = reader.companions(path)
    return Plan(path.resolve(), reader, comps, source_hash([path, *comps]))


def ingest_file(
    store: FlowStore,
    path: Path,
    *,
    fmt: str | None = None,
    force: bool = False,
    options: ReadOptions | None = None,
    on_rows: Callable[[int], None] | None = None,
    enricher: Enricher | None = None,
    behaviour: Behaviour | None = None,
) -> IngestResult:
    """Ingest one file; on any error nothing of it becomes visible.

    Every batch is enriched (country, AS, service, category …) from the reference
    data valid at each flow's time; pass ``enricher`` to share one across files.
    Then sessions are judged by their behaviour (mining flow shape, blockchain P2P
    fan-out): their candidate rows are held back until the file's end; pass
    ``behaviour`` to share one across the files of a run, so that a session cut
    into rotation files is judged as a whole.
    """
    opts = options or ReadOptions(batch_rows=int(store.ws.setting("batch_rows")))
    p = plan(path, fmt)
    existing = store.catalog.source_by_sha(p.sha256)
    if existing is not None and not force:
        return IngestResult(
            existing.source_id,
            existing.path,
            existing.format,
            existing.rows,
            len(store.catalog.files(existing.source_id)),
            skipped=True,
        )
    source_id = p.sha256[:16]
    enrich = enricher or Enricher(store.ws)
    judge = behaviour or Behaviour()

    def conformed() -> Iterator[pa.Table]:
        for batch in p.reader.read(p.path, opts):
            if batch.num_rows:
                yield conform(batch, source_format=p.reader.name, source_id=source_id)

    def enriched() -> Generator[Rows, None, None]:
        # enrichment stays in this thread: the intel store's SQLite handle is bound to it
        judge.begin_file()
        with contextlib.closing(prefetched(conformed)) as stream:
            for batch in stream:
                for now in judge.split(enrich.apply(batch)):
                    if now.num_rows:
                        yield now
        for held in judge.release():
            if held.num_rows:
                yield held

    # reading+conforming, enriching and writing run in different threads at once (Arrow,
    # numpy and the Parquet writer release the GIL for their heavy work); the stream is
    # closed explicitly so that on a store error the reading thread stops at once
    with contextlib.closing(enriched()) as stream:
        return store.write_source(
            path=p.path,
            sha256=p.sha256,
            fmt=p.reader.name,
            batches=stream,
            force=force,
            on_rows=on_rows,
        )


def prefetched(
    make: Callable[[], Iterator[pa.Table]], depth: int = PREFETCH
) -> Generator[pa.Table, None, None]:
    """The items of ``make()``, produced in a worker thread up to ``depth`` ahead.

    Nothing starts before the first item is asked for. An exception in the worker is
    raised here, at the point of the stream where it happened; when the consumer stops
    early (its own error, or it closes this generator) the worker is stopped and
    joined before this generator returns, so no stage outlives the ingest.
    """
    q: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        it = make()
        try:
            for item in it:
                if not put(item):
                    return
            put(_DONE)
        except BaseException as exc:  # carried to the consumer, raised there
            put(_Failed(exc))
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=work, name="rogueflow-ingest-stage", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.05)  # unblock a worker waiting to put
        worker.join()
