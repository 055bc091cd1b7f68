"""The ingest catalog: which sources are in the store and which files they own.

It is the single source of truth for visibility: a Parquet file under
``store/flows`` is part of the data only when a committed catalog row names
it. An ingest writes its files first and commits their rows in one SQLite
transaction, so a crash at any point leaves either all of a source or none
of it visible.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rogueflow.errors import StoreError

CATALOG_VERSION = 1

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources (
    source_id   TEXT PRIMARY KEY,   -- first 16 hex of sha256
    sha256      TEXT NOT NULL UNIQUE,
    path        TEXT NOT NULL,      -- as given at ingest, absolute
    format      TEXT NOT NULL,
    size        INTEGER NOT NULL,
    rows        INTEGER NOT NULL,
    first_ts    TEXT,
    last_ts     TEXT,
    ingested_at TEXT NOT NULL,
    schema_version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS files (
    path      TEXT PRIMARY KEY,     -- relative to store/flows
    source_id TEXT NOT NULL REFERENCES sources(source_id),
    day       TEXT NOT NULL,
    rows      INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    territories TEXT                -- the footer's territory index claim (NULL: not copied)
);
CREATE INDEX IF NOT EXISTS files_source ON files(source_id);
CREATE TABLE IF NOT EXISTS scope_files (  -- see rogueflow.store.scopefile
    source_id TEXT NOT NULL,
    territory TEXT NOT NULL,
    path      TEXT,                 -- relative to store/flows; NULL: no flow touches it
    rows      INTEGER NOT NULL,
    PRIMARY KEY (source_id, territory)
);
"""


@dataclass(frozen=True)
class Source:
    source_id: str
    sha256: str
    path: str
    format: str
    size: int
    rows: int
    first_ts: str | None
    last_ts: str | None
    ingested_at: str
    schema_version: int


#: how long opening a SQLite file of the workspace retries while another process holds it
OPEN_RETRY_SECONDS = 60.0


def open_sqlite(path: Path, ddl: str, version: int, what: str) -> sqlite3.Connection:
    """A workspace SQLite file (the catalog, a snapshot manifest): WAL, full sync,
    schema applied, version recorded; refused when written by a newer rogueflow or
    unreadable, naming the file and ``what`` it is.

    Two processes opening a new workspace at once can meet a lock that SQLite's busy
    timeout does not wait for (switching the journal to WAL); the whole opening, which
    is idempotent, is then retried with backoff for up to OPEN_RETRY_SECONDS.
    """
    deadline = time.monotonic() + OPEN_RETRY_SECONDS
    pause = 0.02
    while True:
        db: sqlite3.Connection | None = None
        try:
            db = sqlite3.connect(path, isolation_level=None, timeout=OPEN_RETRY_SECONDS)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(ddl)
            row = db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            if row is None:
                db.execute("INSERT OR IGNORE INTO meta VALUES ('version', ?)", (str(version),))
            elif int(row[0]) > version:
                db.close()
                raise StoreError(
                    f"{path}: {what} version {row[0]} is newer than this rogueflow; "
                    "upgrade rogueflow"
                )
            return db
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            locked = isinstance(exc, sqlite3.OperationalError) and (
                "locked" in str(exc) or "busy" in str(exc)
            )
            if not locked or time.monotonic() + pause > deadline:
                raise StoreError(f"{path}: the {what} is unreadable ({exc})") from None
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


@dataclass(frozen=True)
class StoredFile:
    path: str
    source_id: str
    day: str
    rows: int
    bytes: int
    #: a copy of the file's footer claim (enrich.territory.INDEX_KEY), so opening a scope
    #: reads no footers; None for rows committed before the catalog kept it
    territories: str | None = None


@dataclass(frozen=True)
class ScopeFile:
    """A source's scope file for one indexed territory (:mod:`rogueflow.store.scopefile`):
    ``path`` relative to the store, None when none of the source's flows touches it."""

    source_id: str
    territory: str
    path: str | None
    rows: int


class Catalog:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_sqlite(path, _DDL, CATALOG_VERSION, "catalog")
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(files)")}
        if "territories" not in columns:  # a catalog from before the column: added, NULL
            try:
                self._db.execute("ALTER TABLE files ADD COLUMN territories TEXT")
            except sqlite3.OperationalError as exc:
                if "duplicate column" not in str(exc):  # another process added it first
                    raise StoreError(f"{path}: cannot upgrade the catalog ({exc})") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    def source_by_sha(self, sha256: str) -> Source | None:
        row = self._db.execute(
            f"SELECT {_SOURCE_COLS} FROM sources WHERE sha256 = ?", (sha256,)
        ).fetchone()
        return Source(*row) if row else None

    def sources(self) -> list[Source]:
        rows = self._db.execute(
            f"SELECT {_SOURCE_COLS} FROM sources ORDER BY ingested_at, source_id"
        ).fetchall()
        return [Source(*r) for r in rows]

    def files(self, source_id: str | None = None) -> list[StoredFile]:
        if source_id is None:
            rows = self._db.execute(f"SELECT {_FILE_COLS} FROM files ORDER BY day, path").fetchall()
        else:
            rows = self._db.execute(
                f"SELECT {_FILE_COLS} FROM files WHERE source_id = ? ORDER BY day, path",
                (source_id,),
            ).fetchall()
        return [StoredFile(*r) for r in rows]

    def scope_files(
        self, source_id: str | None = None, territory: str | None = None
    ) -> list[ScopeFile]:
        """The scope-file rows of one source, or of one territory, or all."""
        where, args = [], []
        for column, value in (("source_id", source_id), ("territory", territory)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT source_id, territory, path, rows FROM scope_files"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self._db.execute(sql + " ORDER BY source_id, territory", args).fetchall()
        return [ScopeFile(*r) for r in rows]

    def totals(self) -> tuple[int, int, int]:
        """(sources, rows, bytes on disk)."""
        n_src = self._db.execute("SELECT count(*) FROM sources").fetchone()[0]
        rows, size = self._db.execute(
            "SELECT coalesce(sum(rows),0), coalesce(sum(bytes),0) FROM files"
        ).fetchone()
        return int(n_src), int(rows), int(size)

    def replace_source(
        self, source: Source, files: Iterable[StoredFile], scopes: Iterable[ScopeFile] = ()
    ) -> list[StoredFile]:
        """Commit ``source`` with ``files`` and its ``scopes`` in one transaction, replacing
        any source with the same hash. Returns the files the replaced source owned (to
        delete; its scope files are listed by :meth:`scope_files` before the call)."""
        files = list(files)
        with self.transaction() as db:
            db.execute(
                "DELETE FROM scope_files WHERE source_id IN "
                "(SELECT source_id FROM sources WHERE sha256 = ?)",
                (source.sha256,),
            )
            _insert_scopes(db, scopes)
            old = db.execute(
                f"SELECT {_FILE_COLS} FROM files WHERE source_id IN "
                "(SELECT source_id FROM sources WHERE sha256 = ?)",
                (source.sha256,),
            ).fetchall()
            db.execute(
                "DELETE FROM files WHERE source_id IN "
                "(SELECT source_id FROM sources WHERE sha256 = ?)",
                (source.sha256,),
            )
            db.execute("DELETE FROM sources WHERE sha256 = ?", (source.sha256,))
            db.execute(
                f"INSERT INTO sources ({_SOURCE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    source.source_id,
                    source.sha256,
                    source.path,
                    source.format,
                    source.size,
                    source.rows,
                    source.first_ts,
                    source.last_ts,
                    source.ingested_at,
                    source.schema_version,
                ),
            )
            db.executemany(
                _INSERT_FILES,
                [(f.path, f.source_id, f.day, f.rows, f.bytes, f.territories) for f in files],
            )
        return [StoredFile(*r) for r in old]

    def swap_files(
        self,
        source_id: str,
        files: Iterable[StoredFile],
        schema_version: int,
        scopes: Iterable[ScopeFile] | None = None,
    ) -> list[StoredFile]:
        """Replace a source's files (and, given ``scopes``, its scope files) in one
        transaction (re-enrichment, migration).

        Returns the files it owned before, for the caller to delete.
        """
        files = list(files)
        with self.transaction() as db:
            old = _take_files(db, source_id)
            if scopes is not None:
                db.execute("DELETE FROM scope_files WHERE source_id = ?", (source_id,))
                _insert_scopes(db, scopes)
            db.executemany(
                _INSERT_FILES,
                [(f.path, f.source_id, f.day, f.rows, f.bytes, f.territories) for f in files],
            )
            db.execute(
                "UPDATE sources SET schema_version = ? WHERE source_id = ?",
                (schema_version, source_id),
            )
        return old

    def remove_source(self, source_id: str) -> list[StoredFile]:
        with self.transaction() as db:
            old = _take_files(db, source_id)
            db.execute("DELETE FROM scope_files WHERE source_id = ?", (source_id,))
            db.execute("DELETE FROM sources WHERE source_id = ?", (source_id,))
        return old

    def version_token(self) -> str:
        """Changes whenever the committed contents change (for caches)."""
        row = self._db.execute(
            "SELECT count(*), coalesce(max(ingested_at),''), coalesce(sum(rows),0) FROM sources"
        ).fetchone()
        return f"{row[0]}-{row[1]}-{row[2]}"


_FILE_COLS = "path, source_id, day, rows, bytes, territories"
_INSERT_FILES = f"INSERT INTO files ({_FILE_COLS}) VALUES (?,?,?,?,?,?)"
_SOURCE_COLS = (
    "source_id, sha256, path, format, size, rows, first_ts, last_ts, ingested_at, schema_version"
)


def _insert_scopes(db: sqlite3.Connection, scopes: Iterable[ScopeFile]) -> None:
    db.executemany(
        "INSERT INTO scope_files (source_id, territory, path, rows) VALUES (?,?,?,?)",
        [(f.source_id, f.territory, f.path, f.rows) for f in scopes],
    )


def _take_files(db: sqlite3.Connection, source_id: str) -> list[StoredFile]:
    """Delete a source's file rows inside the caller's transaction; return what they were."""
    rows = db.execute(
        f"SELECT {_FILE_COLS} FROM files WHERE source_id = ?", (source_id,)
    ).fetchall()
    db.execute("DELETE FROM files WHERE source_id = ?", (source_id,))
    return [StoredFile(*r) for r in rows]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
