"""The workspace's BGP routes: one Parquet file per ingested MRT file, with a catalog.

<workspace>/bgp/
  catalog.sqlite      sources (by content hash) and the files they own
  routes/*.parquet    the routes of one MRT file (schema :data:`rogueflow.bgp.mrt.ROUTES`)
  .staging/           files being written; swept when no writer holds the lock

As with flows, a file is part of the data only once a committed catalog row names
it: an ingest that fails or is killed leaves the store as it was, the same file
ingested twice changes nothing, and ``force`` replaces it in one transaction.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from rogueflow.bgp.mrt import ROUTES, read_mrt
from rogueflow.errors import InputError
from rogueflow.store.catalog import Catalog, Source, StoredFile, now_iso
from rogueflow.store.flowstore import file_sha256
from rogueflow.workspace import Workspace

ROUTES_VERSION = 1
_ROW_GROUP = 256_000


@dataclass
class BgpIngest:
    path: Path
    source_id: str
    routes: int = 0
    records: int = 0
    skipped: bool = False  # already in the store
    problems: list[InputError] = field(default_factory=list)
    first_ts: str | None = None
    last_ts: str | None = None


class BgpStore:
    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.root = ws.root / "bgp"
        self.routes_dir = self.root / "routes"
        self.staging = self.root / ".staging"
        for d in (self.routes_dir, self.staging):
            d.mkdir(parents=True, exist_ok=True)
        self.catalog = Catalog(self.root / "catalog.sqlite")

    def close(self) -> None:
        self.catalog.close()

    def sources(self) -> list[Source]:
        return self.catalog.sources()

    def files(self) -> list[Path]:
        return [self.routes_dir / f.path for f in self.catalog.files()]

    def version_token(self) -> str:
        return self.catalog.version_token()

    def ingest(
        self, path: str | os.PathLike[str], *, force: bool = False, workers: int | None = None
    ) -> BgpIngest:
        """Read one MRT file into the store (skipped when its content is already there)."""
        src = Path(path)
        if not src.is_file():
            raise InputError(src, None, "no such file")
        sha = file_sha256(src)
        result = BgpIngest(src, sha[:16])
        with self.ws.write_lock():
            self._sweep()
            old = self.catalog.source_by_sha(sha)
            if old is not None and not force:
                result.skipped = True
                result.routes = old.rows
                return result
            name = f"{result.source_id}-{uuid.uuid4().hex[:8]}.parquet"
            staged = self.staging / name
            reader = read_mrt(src, workers=workers)
            lo: int | None = None
            hi: int | None = None
            try:
                with pq.ParquetWriter(
                    staged, ROUTES, compression="zstd", compression_level=3
                ) as out:
                    for batch in reader:
                        out.write_batch(batch, row_group_size=_ROW_GROUP)
                        mm = pc.min_max(batch.column("ts").cast(pa.int64()))
                        mn, mx = mm["min"].as_py(), mm["max"].as_py()
                        if mn is not None:
                            lo = mn if lo is None else min(lo, mn)
                            hi = mx if hi is None else max(hi, mx)
                with open(staged, "rb") as fh:
                    os.fsync(fh.fileno())
                dest = self.routes_dir / name
                os.replace(staged, dest)
            except BaseException:
                staged.unlink(missing_ok=True)
                raise
            result.routes, result.records = reader.routes, reader.records
            result.problems = reader.problems
            result.first_ts = _iso(lo)
            result.last_ts = _iso(hi)
            source = Source(
                source_id=result.source_id,
                sha256=sha,
                path=str(src.resolve()),
                format="mrt",
                size=src.stat().st_size,
                rows=reader.routes,
                first_ts=result.first_ts,
                last_ts=result.last_ts,
                ingested_at=now_iso(),
                schema_version=ROUTES_VERSION,
            )
            day = (result.first_ts or "")[:10]
            stored = StoredFile(name, source.source_id, day, reader.routes, dest.stat().st_size)
            try:
                replaced = self.catalog.replace_source(source, [stored])
            except BaseException:
                dest.unlink(missing_ok=True)
                raise
            for f in replaced:
                if f.path != name:
                    (self.routes_dir / f.path).unlink(missing_ok=True)
        return result

    def remove(self, source_id: str) -> int:
        with self.ws.write_lock():
            files = self.catalog.remove_source(source_id)
            for f in files:
                (self.routes_dir / f.path).unlink(missing_ok=True)
        return len(files)

    def _sweep(self) -> None:
        """Drop what a killed ingest left: staging files and route files no row names."""
        for p in self.staging.iterdir():
            p.unlink(missing_ok=True)
        known = {f.path for f in self.catalog.files()}
        for p in self.routes_dir.iterdir():
            if p.name not in known:
                p.unlink(missing_ok=True)


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    return datetime.fromtimestamp(micros / 1e6, UTC).isoformat()
