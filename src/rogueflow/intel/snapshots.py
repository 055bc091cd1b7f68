"""Versioned reference-data snapshots: a content-addressed file store plus a manifest.

<workspace>/intel/
  manifest.sqlite         one row per snapshot (the single source of truth)
  files/<sha256>.<ext>    the snapshot's bytes, named by content (a directory ``.d``
                          for directory formats such as ``cidr-dir``)
  cache/                  parsed objects of loaders that can save themselves (.npz)
  tmp/                    copies in progress; swept when no writer holds the lock

An add copies and fsyncs the file, validates it with the kind's loader, renames
it into ``files/`` and only then commits its manifest row, so a crash at any
point leaves a manifest that names complete files only; the orphans a crash
leaves behind are swept the next time a store is opened.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import hashlib
import importlib
import os
import re
import shutil
import sqlite3
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rogueflow.errors import ConfigError, InputError, StoreError
from rogueflow.intel.kinds import kind as get_kind
from rogueflow.store.catalog import open_sqlite
from rogueflow.workspace import Workspace

MANIFEST_VERSION = 1
_CACHE_OBJECTS = 8  # parsed tables kept in memory per store; a geo table is tens of MB

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    id           TEXT PRIMARY KEY,   -- <kind>:<name>:<sha256[:12]>
    kind         TEXT NOT NULL,
    name         TEXT NOT NULL,
    format       TEXT NOT NULL,
    valid_from   TEXT,               -- ISO 8601 UTC; NULL = open
    valid_to     TEXT,               -- exclusive
    source       TEXT NOT NULL,
    retrieved_at TEXT NOT NULL,
    sha256       TEXT NOT NULL,
    path         TEXT NOT NULL,      -- relative to <workspace>/intel
    rows         INTEGER NOT NULL,
    UNIQUE (kind, name, sha256)
);
CREATE INDEX IF NOT EXISTS snapshots_kind ON snapshots(kind, name);
CREATE TABLE IF NOT EXISTS cache (
    sha256 TEXT NOT NULL, kind TEXT NOT NULL, format TEXT NOT NULL,
    cls    TEXT NOT NULL,            -- module:qualname with a from_npz classmethod
    path   TEXT NOT NULL,            -- relative to <workspace>/intel
    PRIMARY KEY (sha256, kind, format)
);
"""
_COLS = "id, kind, name, format, valid_from, valid_to, source, retrieved_at, sha256, path, rows"


@dataclass(frozen=True)
class Snapshot:
    """One version of one reference list, valid over ``[valid_from, valid_to)``."""

    id: str
    kind: str
    name: str
    format: str
    valid_from: datetime | None
    valid_to: datetime | None
    source: str
    retrieved_at: datetime
    sha256: str
    path: Path
    rows: int

    @property
    def builtin(self) -> bool:
        """Shipped with a package (the embedded default), not stored in the workspace."""
        return self.source.startswith("package:")

    def contains(self, when: datetime) -> bool:
        when = as_utc(when)
        return (self.valid_from is None or self.valid_from <= when) and (
            self.valid_to is None or when < self.valid_to
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "format": self.format,
            "valid_from": _iso(self.valid_from),
            "valid_to": _iso(self.valid_to),
            "source": self.source,
            "retrieved_at": _iso(self.retrieved_at),
            "sha256": self.sha256,
            "path": str(self.path),
            "rows": self.rows,
            "builtin": self.builtin,
        }


def as_utc(when: datetime) -> datetime:
    """Naive datetimes are UTC (flow timestamps are)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def _iso(when: datetime | None) -> str | None:
    return as_utc(when).isoformat() if when is not None else None


def _parse_dt(text: str | None) -> datetime | None:
    return as_utc(datetime.fromisoformat(text)) if text else None


def snapshot_id(kind: str, name: str, sha256: str) -> str:
    return f"{kind}:{name}:{sha256[:12]}"


def default_name(path: Path) -> str:
    """A snapshot name from a file name: ``exit-addresses.txt`` -> ``exit-addresses``."""
    stem = path.name.split(".")[0] if not path.name.startswith(".") else path.name
    name = re.sub(r"[^a-z0-9_.-]+", "-", stem.lower()).strip("-.")
    return name or "unnamed"


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ConfigError(
            f"snapshot name {name!r}: use letters, digits, '.', '_' and '-' (no ':' or spaces)"
        )
    return name


def builtin_snapshots() -> list[Snapshot]:
    """The embedded defaults shipped with the package (geo-country, geo-asn).

    The geo module provides them; imported lazily so the store works (without
    built-ins) while it is absent or broken.
    """
    try:
        provider = importlib.import_module("rogueflow.intel.geo").embedded_snapshots
    except (ImportError, AttributeError):
        return []
    return [_as_snapshot(s) for s in provider()]


def _as_snapshot(item: Any) -> Snapshot:
    if isinstance(item, Snapshot):
        return item
    names = [f.name for f in fields(Snapshot)]
    values = dict(item) if isinstance(item, dict) else dict(zip(names, item, strict=True))
    values["path"] = Path(values["path"])
    return Snapshot(**values)


def _count(obj: object) -> int:
    """Rows of a loaded object: ``len()`` or a ``rows`` attribute."""
    rows = getattr(obj, "rows", None)
    if isinstance(rows, int):
        return rows
    try:
        return len(obj)  # type: ignore[arg-type]
    except TypeError:
        return 0


def _object_dt(obj: object, attr: str) -> datetime | None:
    value = getattr(obj, attr, None)
    return as_utc(value) if isinstance(value, datetime) else None


class IntelStore:
    """The reference-data snapshots of one workspace, plus the built-in defaults."""

    def __init__(
        self,
        ws: Workspace,
        builtins: Callable[[], list[Snapshot]] = builtin_snapshots,
    ) -> None:
        self.ws = ws
        self.root = ws.intel_dir
        self.files_dir = self.root / "files"
        self.cache_dir = self.root / "cache"
        self.tmp_dir = self.root / "tmp"
        for d in (self.files_dir, self.cache_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.sqlite"
        self._builtins = builtins
        self._builtin_snaps: list[Snapshot] | None = None
        self._objects: OrderedDict[tuple[str, str, str], object] = OrderedDict()
        self._db = open_manifest(self.manifest_path, _DDL, MANIFEST_VERSION)
        with self._lock(wait=False) as locked:
            if locked:
                self._sweep()

    def close(self) -> None:
        self._db.close()

    # ---- reading ---------------------------------------------------------------

    def list(self, kind: str | None = None) -> list[Snapshot]:
        """Built-ins first, then the workspace's snapshots by kind, name, validity."""
        if self._builtin_snaps is None:
            self._builtin_snaps = self._builtins()
        builtins = [s for s in self._builtin_snaps if kind is None or s.kind == kind]
        sql = f"SELECT {_COLS} FROM snapshots"
        args: tuple[str, ...] = ()
        if kind is not None:
            sql += " WHERE kind = ?"
            args = (kind,)
        sql += " ORDER BY kind, name, coalesce(valid_from, ''), retrieved_at, id"
        return builtins + [self._row(r) for r in self._db.execute(sql, args).fetchall()]

    def get(self, id_or_name: str) -> Snapshot:
        """By id, unique id prefix, or name (the most recently retrieved of that name)."""
        snaps = self.list()
        exact = [s for s in snaps if s.id == id_or_name]
        if exact:
            return exact[0]
        named = [s for s in snaps if s.name == id_or_name]
        if named:
            return max(named, key=lambda s: (s.retrieved_at, _iso(s.valid_from) or ""))
        prefixed = [s for s in snaps if s.id.startswith(id_or_name)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise ConfigError(
                f"{id_or_name!r} matches {len(prefixed)} snapshots; give the full id "
                f"({', '.join(s.id for s in prefixed[:5])})"
            )
        raise ConfigError(f"no snapshot {id_or_name!r}; see `rogueflow intel list`")

    def at(self, kind: str, when: datetime, name: str | None = None) -> Snapshot | None:
        """The snapshot of ``kind`` (and ``name``) to use for something seen at ``when``.

        Among the snapshots whose interval contains ``when``: one with an interval
        beats one without; then the latest ``valid_from``; then a workspace snapshot
        beats a built-in; then the latest retrieval.
        """
        ranked = self.ranked(kind, when, name)
        return ranked[0] if ranked else None

    def ranked(self, kind: str, when: datetime, name: str | None = None) -> builtins.list[Snapshot]:
        """Every snapshot of ``kind`` valid at ``when``, best first (the order of :meth:`at`).

        Enrichment falls through this list for addresses a partial table does not cover.
        """
        get_kind(kind)
        when = as_utc(when)
        candidates = [
            s for s in self.list(kind) if (name is None or s.name == name) and s.contains(when)
        ]
        floor = datetime.min.replace(tzinfo=UTC)
        return sorted(
            candidates,
            key=lambda s: (
                s.valid_from is not None or s.valid_to is not None,
                s.valid_from or floor,
                not s.builtin,
                s.retrieved_at,
                s.id,
            ),
            reverse=True,
        )

    def load(self, snap: Snapshot) -> object:
        """The parsed object of ``snap``, cached in memory and, when it can, on disk."""
        key = (snap.sha256, snap.kind, snap.format)
        if key in self._objects:
            self._objects.move_to_end(key)
            return self._objects[key]
        obj = None if snap.builtin else self._load_cached(key)
        if obj is None:
            if not snap.path.exists():
                raise StoreError(
                    f"snapshot {snap.id}: {snap.path} is missing; remove the snapshot and "
                    "add it again"
                )
            obj = get_kind(snap.kind).loader(snap.format)(snap.path)
            if not snap.builtin:
                self._save_cached(key, obj)
        self._objects[key] = obj
        while len(self._objects) > _CACHE_OBJECTS:
            self._objects.popitem(last=False)
        return obj

    # ---- writing ---------------------------------------------------------------

    def add(
        self,
        kind: str,
        file: str | os.PathLike[str],
        *,
        name: str | None = None,
        fmt: str | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
        source: str | None = None,
        retrieved_at: datetime | None = None,
    ) -> Snapshot:
        """Validate ``file`` with the kind's loader and store it as a new snapshot.

        The same content under the same kind and name returns the existing snapshot.
        """
        k = get_kind(kind)
        fmt = fmt or next(iter(k.formats))
        loader = k.loader(fmt)
        src = Path(file)
        if not src.exists():
            raise InputError(src, None, "no such file or directory")
        name = _check_name(name or default_name(src))
        _check_interval(valid_from, valid_to)
        with self._lock(wait=True):
            staged, sha = self._stage(src)
            try:
                existing = self._by_key(kind, name, sha)
                if existing is not None:
                    return existing
                try:
                    obj = loader(staged)
                except InputError as exc:  # name the user's file, not the staged copy
                    raise _renamed(exc, staged, src) from None
                valid_from = valid_from or _object_dt(obj, "valid_from")
                valid_to = valid_to or _object_dt(obj, "valid_to")
                _check_interval(valid_from, valid_to)
                dest = self.files_dir / (sha + _suffix(src))
                if dest.exists():
                    _remove_path(staged)  # same bytes already stored (another kind/name)
                else:
                    os.replace(staged, dest)
                    _fsync_dir(self.files_dir)
                snap = Snapshot(
                    id=snapshot_id(kind, name, sha),
                    kind=kind,
                    name=name,
                    format=fmt,
                    valid_from=as_utc(valid_from) if valid_from else None,
                    valid_to=as_utc(valid_to) if valid_to else None,
                    source=source or str(src.resolve()),
                    retrieved_at=as_utc(retrieved_at or datetime.now(UTC)),
                    sha256=sha,
                    path=dest,
                    rows=_count(obj),
                )
                self._record(snap)
            finally:
                _remove_path(staged)
        self._objects[(sha, kind, fmt)] = obj
        self._save_cached((sha, kind, fmt), obj)
        return snap

    def set_validity(
        self, snap_id: str, valid_from: datetime | None, valid_to: datetime | None
    ) -> Snapshot:
        """Change a snapshot's interval (feeds close the previous one on update)."""
        snap = self.get(snap_id)
        if snap.builtin:
            raise ConfigError(f"{snap.id} is built in; its validity cannot change")
        with self._lock(wait=True):
            self._db.execute(
                "UPDATE snapshots SET valid_from = ?, valid_to = ? WHERE id = ?",
                (_iso(valid_from), _iso(valid_to), snap.id),
            )
        return self.get(snap.id)

    def remove(self, snap_id: str) -> Snapshot:
        """Forget a snapshot; its file goes when no other snapshot shares the content."""
        snap = self.get(snap_id)
        if snap.builtin:
            raise ConfigError(f"{snap.id} is built into the package and cannot be removed")
        with self._lock(wait=True):
            self._db.execute("DELETE FROM snapshots WHERE id = ?", (snap.id,))
            self._sweep()
        for key in [k for k in self._objects if k[0] == snap.sha256 and k[1] == snap.kind]:
            del self._objects[key]
        return snap

    # ---- internals -------------------------------------------------------------

    def _row(self, r: tuple[Any, ...]) -> Snapshot:
        return Snapshot(
            id=r[0],
            kind=r[1],
            name=r[2],
            format=r[3],
            valid_from=_parse_dt(r[4]),
            valid_to=_parse_dt(r[5]),
            source=r[6],
            retrieved_at=_parse_dt(r[7]) or datetime.now(UTC),
            sha256=r[8],
            path=self.root / r[9],
            rows=int(r[10]),
        )

    def _by_key(self, kind: str, name: str, sha: str) -> Snapshot | None:
        row = self._db.execute(
            f"SELECT {_COLS} FROM snapshots WHERE kind = ? AND name = ? AND sha256 = ?",
            (kind, name, sha),
        ).fetchone()
        return self._row(row) if row else None

    def _record(self, snap: Snapshot) -> None:
        """Commit the manifest row: the moment the snapshot becomes visible."""
        self._db.execute(
            f"INSERT INTO snapshots ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                snap.id,
                snap.kind,
                snap.name,
                snap.format,
                _iso(snap.valid_from),
                _iso(snap.valid_to),
                snap.source,
                _iso(snap.retrieved_at),
                snap.sha256,
                str(snap.path.relative_to(self.root)),
                snap.rows,
            ),
        )

    def _stage(self, src: Path) -> tuple[Path, str]:
        """Copy ``src`` into tmp/ (fsynced) and hash it; the copy is what gets validated."""
        staged = self.tmp_dir / f"{uuid.uuid4().hex}.part{_suffix(src)}"
        try:
            sha = _copy_tree(src, staged) if src.is_dir() else _copy_file(src, staged)
        except OSError as exc:
            _remove_path(staged)
            raise InputError(src, None, f"cannot read: {exc.strerror or exc}") from None
        except BaseException:
            _remove_path(staged)
            raise
        return staged, sha

    def _sweep(self) -> None:
        """Delete what no manifest row names: crash leftovers and removed content."""
        named = {r[0] for r in self._db.execute("SELECT path FROM snapshots")}
        named |= {r[0] for r in self._db.execute("SELECT path FROM cache")}
        for entry in self.tmp_dir.iterdir():
            _remove_path(entry)
        for entry in self.files_dir.iterdir():
            if str(entry.relative_to(self.root)) not in named:
                _remove_path(entry)
        live = {r[0] for r in self._db.execute("SELECT DISTINCT sha256 FROM snapshots")}
        stale = [r for r in self._db.execute("SELECT sha256, path FROM cache") if r[0] not in live]
        for sha, rel in stale:
            self._db.execute("DELETE FROM cache WHERE sha256 = ?", (sha,))
            _remove_path(self.root / rel)
        cached = {r[0] for r in self._db.execute("SELECT path FROM cache")}
        for entry in self.cache_dir.iterdir():
            if str(entry.relative_to(self.root)) not in cached:
                _remove_path(entry)

    @contextlib.contextmanager
    def _lock(self, wait: bool) -> Iterator[bool]:
        """The intel writer lock (separate from the flow store's, so both can run)."""
        with open(self.root / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _load_cached(self, key: tuple[str, str, str]) -> object | None:
        row = self._db.execute(
            "SELECT cls, path FROM cache WHERE sha256 = ? AND kind = ? AND format = ?", key
        ).fetchone()
        if row is None:
            return None
        module, _, qualname = row[0].partition(":")
        try:
            cls = getattr(importlib.import_module(module), qualname)
            obj: object = cls.from_npz(self.root / row[1])
        except Exception:  # a stale or torn cache is rebuilt from the snapshot itself
            return None
        return obj

    def _save_cached(self, key: tuple[str, str, str], obj: object) -> None:
        """Objects with ``to_npz(path)`` and a ``from_npz(path)`` classmethod (RangeTable)."""
        cls = type(obj)
        if not (
            callable(getattr(obj, "to_npz", None)) and callable(getattr(cls, "from_npz", None))
        ):
            return
        rel = f"cache/{key[0]}.{key[1]}.{key[2]}.npz"
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.npz"
        with self._lock(wait=True):
            try:
                obj.to_npz(tmp)  # type: ignore[attr-defined]
                os.replace(tmp, self.root / rel)
                self._db.execute(
                    "INSERT OR REPLACE INTO cache VALUES (?,?,?,?,?)",
                    (*key, f"{cls.__module__}:{cls.__qualname__}", rel),
                )
            except OSError:
                pass  # the cache is an optimisation; the snapshot itself is intact
            finally:
                _remove_path(tmp)


def open_manifest(path: Path, ddl: str, version: int) -> sqlite3.Connection:
    """A snapshot store's SQLite manifest: WAL, full sync, schema applied, and refused
    when written by a newer rogueflow or unreadable (both naming the file)."""
    return open_sqlite(path, ddl, version, "manifest")


def _renamed(exc: InputError, staged: Path, src: Path) -> InputError:
    if exc.path is None or not exc.path.startswith(str(staged)):
        return exc
    path = str(src) + exc.path[len(str(staged)) :]
    return type(exc)(path, exc.where, exc.problem)


def _check_interval(valid_from: datetime | None, valid_to: datetime | None) -> None:
    if valid_from is not None and valid_to is not None and as_utc(valid_to) <= as_utc(valid_from):
        raise ConfigError(f"valid-to {_iso(valid_to)} is not after valid-from {_iso(valid_from)}")


def _suffix(path: Path) -> str:
    """The extension kept on the stored copy (loaders may look at it)."""
    if path.is_dir():
        return ".d"
    suffixes = [s for s in path.suffixes[-2:] if re.fullmatch(r"\.[A-Za-z0-9]{1,8}", s)]
    return "".join(suffixes).lower()


def _copy_file(src: Path, dest: Path) -> str:
    digest = hashlib.sha256()
    with open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(1 << 20):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest()


def _copy_tree(src: Path, dest: Path) -> str:
    """Copy the regular files under ``src``; the hash covers names and contents."""
    digest = hashlib.sha256()
    files = sorted(p for p in src.rglob("*") if p.is_file())
    dest.mkdir()
    for f in files:
        rel = f.relative_to(src)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        digest.update(rel.as_posix().encode() + b"\0" + _copy_file(f, target).encode() + b"\0")
    for d in sorted({dest} | {(dest / f.relative_to(src)).parent for f in files}):
        _fsync_dir(d)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
