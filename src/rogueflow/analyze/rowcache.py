"""Materialised query rows kept between runs: the scope of a report, reused by the next.

A report's one scan of the store (the territory's flows of the window, written as
Parquet) is most of its time; analysts re-run reports with another baseline, events
file or output. An entry is keyed by the query text and the exact committed files
(path, size, modification time) with the schema and rogueflow versions, so any
ingest, re-ingest, ``enrich`` rewrite or removal — or another profile or window,
which changes the query — makes a new key, never a stale answer.

Entries live in ``<workspace>/.cache/rows/<key>/``. One is built in a directory of its
own and renamed into place (atomic: a reader never sees half an entry; of two
processes building the same key, the second discards its copy and reads the first).
A reader holds a shared ``flock`` on the entry's lock file while it reads; eviction
(least recently used beyond ``keep`` entries, when a reader releases) takes the lock
exclusively without waiting, so it never removes rows another process is reading.

An entry built in parts (the scope, a month of store files at a time) lists each
part's key and files in ``rows/chunks.json``; a new entry takes a part whose key it
shares from an older entry by hard links (:meth:`RowCache.borrow`), so an ingest of
new days leaves the other months' rows to be reused, not recomputed. A link is a
second name of the same file: evicting the older entry later removes only its names.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from rogueflow.errors import RogueflowError
from rogueflow.schema import SCHEMA_VERSION

LOCK = ".lock"
CHUNKS = "chunks.json"  # in an entry's rows/: part key -> its files (see RowCache.borrow)


class RowCache:
    """The cache directory of one workspace; ``keep`` entries survive their readers."""

    def __init__(self, root: Path, keep: int) -> None:
        self.root = root
        self.keep = max(0, keep)
        self._held: dict[Path, int] = {}  # entry -> fd holding its shared lock
        self._used: set[Path] = set()  # entries opened (reused or built) by this cache

    def key(self, query: str, files: list[Path], version: str) -> str:
        """The entry of ``query``'s rows over ``files``. A file is named by its path
        relative to the cache (inside the workspace), so a workspace moved or copied
        with its cache keeps its entries."""
        h = hashlib.sha256(f"{SCHEMA_VERSION}\0{version}\0{query}\0".encode())
        for p in files:
            st = p.stat()
            rel = os.path.relpath(p, self.root)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
        return h.hexdigest()[:40]

    def open(self, key: str, build: Callable[[Path], None]) -> tuple[Path, bool]:
        """The entry for ``key``, locked for reading; ``build(dir)`` fills a new one.

        Returns the entry and whether it was reused. A directory of the key without
        its lock file was never published by a cache (every entry has its lock before
        it is renamed into place): a copy made without the locks, or one an evictor is
        removing. It is removed and built again."""
        self.root.mkdir(parents=True, exist_ok=True)
        entry = self.root / key
        for _ in range(3):  # another process may evict it between rename and lock
            if self._lock_existing(entry):
                return entry, True
            if entry.exists():
                shutil.rmtree(entry, ignore_errors=True)
            self._remove_orphans()
            work = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}-", dir=self.root))
            try:
                build(work)
                (work / LOCK).touch()
                try:
                    os.rename(work, entry)
                except OSError:  # another process published the same key first
                    shutil.rmtree(work, ignore_errors=True)
            except BaseException:
                shutil.rmtree(work, ignore_errors=True)
                raise
            if self._lock_existing(entry):
                return entry, False
        raise RogueflowError(
            f"{entry}: cannot publish and lock a row cache entry (remove the directory)"
        )

    def lenders(self) -> list[tuple[Path, dict[str, list[str]]]]:
        """The published entries built in parts, newest first, with their parts (read
        once per build: a scope has a part per month)."""
        out = []
        for entry in self._entries():
            try:
                parts = json.loads((entry / "rows" / CHUNKS).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(parts, dict):
                out.append((entry, parts))
        return out

    def borrow(
        self, part: str, rows: Path, lenders: list[tuple[Path, dict[str, list[str]]]]
    ) -> list[str] | None:
        """Hard-link the files of part ``part`` from the newest of ``lenders``
        (:meth:`lenders`) holding it into ``rows`` (a new entry's, still unpublished);
        their names, or None when no entry has the part whole (then nothing is left in
        ``rows`` from the attempt)."""
        for entry, parts in lenders:
            names = parts.get(part)
            if not isinstance(names, list) or not all(
                isinstance(n, str) and n.startswith(part) and "/" not in n for n in names
            ):
                continue
            try:
                fd = os.open(entry / LOCK, os.O_RDONLY)
            except OSError:  # evicted since the lenders were listed
                continue
            linked: list[Path] = []
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # not while it is evicted
                for n in names:
                    os.link(entry / "rows" / n, rows / n)
                    linked.append(rows / n)
                return list(names)
            except OSError:  # being evicted, or a file is gone: try the next entry
                for f in linked:
                    f.unlink(missing_ok=True)
            finally:
                os.close(fd)
        return None

    def release(self) -> None:
        """Unlock every entry this process reads, then evict beyond ``keep``."""
        for fd in self._held.values():
            os.close(fd)
        self._held.clear()
        self.evict()

    def evict(self) -> None:
        """Remove the least recently used entries beyond ``keep``. The entries this cache
        opened are kept whatever their number (with ``keep`` ≥ 1): a report materialises
        several views, and losing its scope — the first made, so the least recently
        used — would leave the next run nothing to reuse. ``keep`` 0 keeps none."""
        entries = self._entries()
        if self.keep:
            mine = [e for e in entries if e in self._used]
            entries = [e for e in entries if e not in self._used]
            entries = entries[max(0, self.keep - len(mine)) :]
        for entry in entries:
            if entry in self._held:
                continue
            try:
                fd = os.open(entry / LOCK, os.O_RDONLY)
            except OSError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:  # another process reads it
                os.close(fd)
                continue
            try:
                shutil.rmtree(entry, ignore_errors=True)
            finally:
                os.close(fd)

    def _entries(self) -> list[Path]:
        """Published entries, most recently used first."""
        return sorted(
            (e for e in self.root.glob("*") if e.is_dir() and not e.name.startswith(".")),
            key=lambda e: e.stat().st_mtime,
            reverse=True,
        )

    def _lock_existing(self, entry: Path) -> bool:
        try:
            fd = os.open(entry / LOCK, os.O_RDONLY)
        except OSError:
            return False
        fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while an evictor removes it
        if not (entry / LOCK).exists():  # removed while we waited
            os.close(fd)
            return False
        os.utime(entry)  # most recently used
        self._held[entry] = fd
        self._used.add(entry)
        return True

    def _remove_orphans(self) -> None:
        """Build directories of processes that died before publishing."""
        for d in self.root.glob(".build-*"):
            pid = d.name.split("-")[1]
            if pid.isdigit() and not Path(f"/proc/{pid}").exists():
                shutil.rmtree(d, ignore_errors=True)
