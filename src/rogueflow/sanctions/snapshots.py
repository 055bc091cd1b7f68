"""Each sanctions list issue kept as a dated snapshot in the workspace; diffs between two.

Follows the conventions of :mod:`rogueflow.intel.snapshots`::

  <workspace>/sanctions/
    manifest.sqlite          one row per snapshot (the single source of truth)
    files/<sha256>.<ext>     the list file exactly as imported, named by content
    parsed/<sha256>.json.gz  the parsed list; rebuilt from the file when missing or damaged
    tmp/                     imports in progress; swept when no writer holds the lock

An import copies and fsyncs the file, parses the copy completely (a truncated or
refused file never becomes a snapshot), renames it into ``files/``, writes the parsed
form, and only then commits the manifest row. Ids are ``sanctions:<name>:<sha256[:12]>``;
the same content under the same name is the same snapshot. A snapshot is valid from
its list date until the next list date of the same name.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import gzip
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rogueflow.errors import ConfigError, InputError, StoreError
from rogueflow.intel.snapshots import (
    _copy_file,
    _fsync_dir,
    _remove_path,
    _suffix,
    default_name,
    open_manifest,
)
from rogueflow.sanctions.model import SanctionsList, read_list
from rogueflow.workspace import Workspace

MANIFEST_VERSION = 1
DEFAULT_NAMES = {"ofac-advanced-xml": "ofac-sdn", "ofac-sdn-csv": "ofac-sdn-legacy"}

_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS snapshots (
    id           TEXT PRIMARY KEY,   -- sanctions:<name>:<sha256[:12]>
    name         TEXT NOT NULL,
    format       TEXT NOT NULL,      -- ofac-advanced-xml | ofac-sdn-csv
    list_date    TEXT,               -- the issue's date (ISO); NULL = unknown
    source       TEXT NOT NULL,
    retrieved_at TEXT NOT NULL,      -- when it was imported (UTC)
    sha256       TEXT NOT NULL,
    path         TEXT NOT NULL,      -- relative to <workspace>/sanctions
    parties      INTEGER NOT NULL,
    addresses    INTEGER NOT NULL,   -- distinct (asset, address) pairs
    problems     INTEGER NOT NULL,
    UNIQUE (name, sha256)
);
"""
_COLS = (
    "id, name, format, list_date, source, retrieved_at, sha256, path, parties, addresses, problems"
)


@dataclass(frozen=True)
class Snapshot:
    """One stored list issue; ``valid_to`` is the next issue's date of the same name."""

    id: str
    name: str
    format: str
    list_date: date | None
    source: str
    retrieved_at: datetime
    sha256: str
    path: Path
    parties: int
    addresses: int
    problems: int
    valid_to: date | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "format": self.format,
            "list_date": self.list_date.isoformat() if self.list_date else None,
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
            "source": self.source,
            "retrieved_at": self.retrieved_at.isoformat(),
            "sha256": self.sha256,
            "path": str(self.path),
            "parties": self.parties,
            "addresses": self.addresses,
            "problems": self.problems,
        }

    def reference(self) -> dict[str, Any]:
        """This snapshot as a finding's reference-data entry (the provenance shape)."""
        listed = self.list_date.isoformat() if self.list_date else None
        return {
            "kind": "sanctions list",
            "id": self.id,
            "label": f"{self.id} (list of {listed or 'unknown date'})",
            "name": self.name,
            "source": self.source,
            "sha256": self.sha256,
            "valid_from": listed,
            "valid_to": self.valid_to.isoformat() if self.valid_to else None,
            "validity": f"list of {listed}" if listed else "list date unknown",
            "retrieved_at": self.retrieved_at.isoformat(),
            "removed": False,
            "flows": None,
            "first_day": None,
            "last_day": None,
        }


def _order(s: Snapshot) -> tuple[str, bool, str, str]:
    """Oldest to newest: list date, then the advanced XML over the legacy CSV (it is
    complete where the CSV cuts remarks), then import time."""
    listed = s.list_date.isoformat() if s.list_date else ""
    return listed, s.format == "ofac-advanced-xml", s.retrieved_at.isoformat(), s.id


class SanctionsStore:
    """The sanctions snapshots of one workspace."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.root = ws.root / "sanctions"
        self.files_dir = self.root / "files"
        self.parsed_dir = self.root / "parsed"
        self.tmp_dir = self.root / "tmp"
        for d in (self.files_dir, self.parsed_dir, self.tmp_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.manifest_path = self.root / "manifest.sqlite"
        self._loaded: dict[str, SanctionsList] = {}
        self._db = open_manifest(self.manifest_path, _DDL, MANIFEST_VERSION)
        with self._lock(wait=False) as locked:
            if locked:
                self._sweep()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SanctionsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- reading -----------------------------------------------------------------------

    def list(self, name: str | None = None) -> list[Snapshot]:
        """Snapshots oldest to newest, each with ``valid_to`` set from its successor."""
        sql = f"SELECT {_COLS} FROM snapshots"
        args: tuple[str, ...] = ()
        if name is not None:
            sql, args = sql + " WHERE name = ?", (name,)
        snaps = sorted((self._row(r) for r in self._db.execute(sql, args)), key=_order)
        out = []
        for i, s in enumerate(snaps):
            later = [t.list_date for t in snaps[i + 1 :] if t.name == s.name and t.list_date]
            nxt = min((d for d in later if s.list_date is None or d > s.list_date), default=None)
            out.append(replace(s, valid_to=nxt))
        return out

    def get(self, ident: str) -> Snapshot:
        """By id, unique id prefix, or name (the newest of that name)."""
        snaps = self.list()
        exact = [s for s in snaps if s.id == ident]
        if exact:
            return exact[0]
        named = [s for s in snaps if s.name == ident]
        if named:
            return named[-1]
        prefixed = [s for s in snaps if s.id.startswith(ident)]
        if len(prefixed) == 1:
            return prefixed[0]
        if prefixed:
            raise ConfigError(
                f"{ident!r} matches {len(prefixed)} sanctions snapshots; give the full id "
                f"({', '.join(s.id for s in prefixed[:5])})"
            )
        raise ConfigError(f"no sanctions snapshot {ident!r}; see `rogueflow sanctions list`")

    def newest(self, name: str | None = None) -> Snapshot | None:
        snaps = self.list(name)
        return snaps[-1] if snaps else None

    def at(self, when: date) -> builtins.list[Snapshot]:
        """The snapshots valid on ``when`` (list date on or before it, no later issue)."""
        return [
            s
            for s in self.list()
            if s.list_date is not None
            and s.list_date <= when
            and (s.valid_to is None or when < s.valid_to)
        ]

    def load(self, snap: Snapshot) -> SanctionsList:
        """The parsed list: from ``parsed/``, else re-parsed from the stored file."""
        if snap.id in self._loaded:
            return self._loaded[snap.id]
        cached = self.parsed_dir / f"{snap.sha256}.json.gz"
        lst: SanctionsList | None = None
        with (
            contextlib.suppress(OSError, EOFError, ValueError, InputError),
            gzip.open(cached, "rt", encoding="utf-8") as fh,
        ):
            lst = SanctionsList.from_json(json.load(fh), cached)
        if lst is None:  # a missing or torn cache is rebuilt from the snapshot itself
            if not snap.path.exists():
                raise StoreError(
                    f"sanctions snapshot {snap.id}: {snap.path} is missing; remove the "
                    "snapshot and import the list again"
                )
            lst = read_list(snap.path, snap.list_date)
            self._write_parsed(snap.sha256, lst)
        lst.source = snap.source
        self._loaded[snap.id] = lst
        return lst

    # ---- writing -----------------------------------------------------------------------

    def import_file(
        self,
        file: str | os.PathLike[str],
        *,
        name: str | None = None,
        list_date: date | None = None,
        source: str | None = None,
    ) -> tuple[Snapshot, bool]:
        """Parse ``file`` completely and store it; (snapshot, True when newly added)."""
        src = Path(file)
        if not src.is_file():
            raise InputError(src, None, "no such file")
        with self._lock(wait=True):
            staged = self.tmp_dir / f"{uuid.uuid4().hex}.part{_suffix(src)}"
            try:
                try:
                    sha = _copy_file(src, staged)
                except OSError as exc:
                    raise InputError(src, None, f"cannot read: {exc.strerror or exc}") from None
                same = [s for s in self.list() if s.sha256 == sha and name in (None, s.name)]
                if same:  # known bytes: no need to parse 120 MB again
                    return same[-1], False
                try:
                    lst = read_list(staged, list_date or _name_date(src))
                except InputError as exc:  # name the user's file, not the staged copy
                    raise InputError(src, exc.where, exc.problem) from None
                if list_date is not None:
                    lst.list_date = list_date
                if lst.list_date is None:
                    raise ConfigError(
                        f"{src}: the list carries no issue date; give --list-date YYYY-MM-DD"
                    )
                snap_name = _check_name(name or DEFAULT_NAMES.get(lst.format) or default_name(src))
                existing = self._by_key(snap_name, sha)
                if existing is not None:
                    return existing, False
                dest = self.files_dir / (sha + _suffix(src))
                if dest.exists():
                    _remove_path(staged)
                else:
                    os.replace(staged, dest)
                    _fsync_dir(self.files_dir)
                lst.source = source or str(src.resolve())
                self._write_parsed(sha, lst)
                snap = Snapshot(
                    id=f"sanctions:{snap_name}:{sha[:12]}",
                    name=snap_name,
                    format=lst.format,
                    list_date=lst.list_date,
                    source=lst.source,
                    retrieved_at=datetime.now(UTC),
                    sha256=sha,
                    path=dest,
                    parties=len(lst.parties),
                    addresses=sum(lst.assets().values()),
                    problems=len(lst.problems),
                )
                self._record(snap)
            finally:
                _remove_path(staged)
        return self.get(snap.id), True

    def remove(self, ident: str) -> Snapshot:
        snap = self.get(ident)
        with self._lock(wait=True):
            self._db.execute("DELETE FROM snapshots WHERE id = ?", (snap.id,))
            self._sweep()
        self._loaded.pop(snap.id, None)
        return snap

    # ---- internals ---------------------------------------------------------------------

    def _row(self, r: tuple[Any, ...]) -> Snapshot:
        return Snapshot(
            id=r[0],
            name=r[1],
            format=r[2],
            list_date=date.fromisoformat(r[3]) if r[3] else None,
            source=r[4],
            retrieved_at=datetime.fromisoformat(r[5]),
            sha256=r[6],
            path=self.root / r[7],
            parties=int(r[8]),
            addresses=int(r[9]),
            problems=int(r[10]),
        )

    def _by_key(self, name: str, sha: str) -> Snapshot | None:
        for s in self.list(name):
            if s.sha256 == sha:
                return s
        return None

    def _record(self, s: Snapshot) -> None:
        """Commit the manifest row: the moment the snapshot becomes visible."""
        self._db.execute(
            f"INSERT INTO snapshots ({_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                s.id,
                s.name,
                s.format,
                s.list_date.isoformat() if s.list_date else None,
                s.source,
                s.retrieved_at.isoformat(),
                s.sha256,
                str(s.path.relative_to(self.root)),
                s.parties,
                s.addresses,
                s.problems,
            ),
        )

    def _write_parsed(self, sha: str, lst: SanctionsList) -> None:
        tmp = self.tmp_dir / f"{uuid.uuid4().hex}.json.gz"
        try:
            with gzip.open(tmp, "wt", encoding="utf-8") as fh:
                json.dump(lst.to_json(), fh, separators=(",", ":"))
            os.replace(tmp, self.parsed_dir / f"{sha}.json.gz")
        except OSError:
            pass  # the parsed form is a cache; the stored file is the snapshot
        finally:
            _remove_path(tmp)

    def _sweep(self) -> None:
        """Delete what no manifest row names: crash leftovers and removed content."""
        rows = list(self._db.execute("SELECT path, sha256 FROM snapshots"))
        named = {r[0] for r in rows}
        live = {r[1] for r in rows}
        for entry in self.tmp_dir.iterdir():
            _remove_path(entry)
        for entry in self.files_dir.iterdir():
            if str(entry.relative_to(self.root)) not in named:
                _remove_path(entry)
        for entry in self.parsed_dir.iterdir():
            if entry.name.split(".")[0] not in live:
                _remove_path(entry)

    @contextlib.contextmanager
    def _lock(self, wait: bool) -> Iterator[bool]:
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


def _name_date(path: Path) -> date | None:
    from rogueflow.sanctions.ofac_csv import date_from_name

    return date_from_name(path)


def _check_name(name: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise ConfigError(
            f"snapshot name {name!r}: use letters, digits, '.', '_' and '-' (no ':' or spaces)"
        )
    return name


# ---- diff ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ListDiff:
    """What changed from list ``a`` to list ``b``: addresses and parties, added/removed."""

    a: str
    b: str
    a_date: date | None
    b_date: date | None
    added_addresses: tuple[tuple[str, str, str, str], ...]  # asset, address, party id, name
    removed_addresses: tuple[tuple[str, str, str, str], ...]
    added_parties: tuple[tuple[str, str, str], ...]  # id, name, programmes
    removed_parties: tuple[tuple[str, str, str], ...]

    def to_json(self) -> dict[str, Any]:
        def addr(rows: tuple[tuple[str, str, str, str], ...]) -> list[dict[str, str]]:
            keys = ("asset", "address", "party_id", "party")
            return [dict(zip(keys, r, strict=True)) for r in rows]

        def party(rows: tuple[tuple[str, str, str], ...]) -> list[dict[str, str]]:
            return [dict(zip(("party_id", "party", "programme"), r, strict=True)) for r in rows]

        return {
            "a": {"id": self.a, "list_date": _iso(self.a_date)},
            "b": {"id": self.b, "list_date": _iso(self.b_date)},
            "added_addresses": addr(self.added_addresses),
            "removed_addresses": addr(self.removed_addresses),
            "added_parties": party(self.added_parties),
            "removed_parties": party(self.removed_parties),
        }

    def lines(self) -> list[str]:
        """A plain-text report: one ``+``/``-`` line per change, addresses then parties."""
        out = [
            f"--- {self.a} ({_iso(self.a_date) or 'undated'})",
            f"+++ {self.b} ({_iso(self.b_date) or 'undated'})",
        ]
        for sign, rows in (("-", self.removed_addresses), ("+", self.added_addresses)):
            out += [f"{sign} address {a} {ad}  [{pid}] {nm}" for a, ad, pid, nm in rows]
        for sign, prows in (("-", self.removed_parties), ("+", self.added_parties)):
            out += [f"{sign} party [{pid}] {nm} ({prog or '-'})" for pid, nm, prog in prows]
        out.append(
            f"addresses: +{len(self.added_addresses)} -{len(self.removed_addresses)}; "
            f"parties: +{len(self.added_parties)} -{len(self.removed_parties)}"
        )
        return out


def _iso(d: date | None) -> str | None:
    return d.isoformat() if d else None


def diff(a: SanctionsList, b: SanctionsList, a_id: str = "a", b_id: str = "b") -> ListDiff:
    """Addresses (by asset and matching key) and parties (by OFAC id) in one, not the other."""

    def addresses(lst: SanctionsList) -> dict[tuple[str, str], tuple[str, str, str, str]]:
        out: dict[tuple[str, str], tuple[str, str, str, str]] = {}
        for i in lst.listings:
            p = lst.parties.get(i.party_id)
            out.setdefault((i.asset, i.key), (i.asset, i.address, i.party_id, p.name if p else ""))
        return out

    def parties(lst: SanctionsList) -> dict[str, tuple[str, str, str]]:
        return {pid: (pid, p.name, p.programme) for pid, p in lst.parties.items()}

    aa, ba = addresses(a), addresses(b)
    ap, bp = parties(a), parties(b)
    return ListDiff(
        a_id,
        b_id,
        a.list_date,
        b.list_date,
        tuple(ba[k] for k in sorted(ba.keys() - aa.keys())),
        tuple(aa[k] for k in sorted(aa.keys() - ba.keys())),
        tuple(bp[k] for k in sorted(bp.keys() - ap.keys(), key=_num)),
        tuple(ap[k] for k in sorted(ap.keys() - bp.keys(), key=_num)),
    )


def _num(pid: str) -> tuple[int, str]:
    return (int(pid), pid) if pid.isdigit() else (1 << 62, pid)
