"""Rotation files of the collector: the flows of one rotation, waiting to be committed.

A rotation is written as an Arrow IPC file under ``<workspace>/collect/spool``
(LZ4: it is read back within seconds, so speed matters more than size; zstd cost
three times the CPU) — first to a ``.tmp`` name, synced, then renamed — and ingested
like any file, with the ``collect`` reader, as one committed source of the catalog.
The file is removed once its ingest is committed. A collector killed between the two
leaves a complete spool file behind, which the next ``rogueflow collect`` (or
``rogueflow ingest``) commits; the catalog's content hash makes that safe to repeat.
They are read by :mod:`rogueflow.ingest.collectspool`.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

MARKER = b"rogueflow.collect"
ARROW_MAGIC = b"ARROW1"


def spool_dir(root: Path) -> Path:
    return root / "collect" / "spool"


def write_spool(directory: Path, tables: list[pa.Table], note: str) -> Path:
    """One rotation's flows as a spool file, durable before its name appears."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    final = directory / f"rotation-{stamp}-{uuid.uuid4().hex[:8]}.arrow"
    tmp = final.with_suffix(".tmp")
    table = pa.concat_tables(tables, promote_options="permissive").combine_chunks()
    # the note (collector, rotation number, time) also makes every file's hash unique
    table = table.replace_schema_metadata({MARKER: note.encode()})
    options = ipc.IpcWriteOptions(compression="lz4")
    with open(tmp, "wb") as fh:
        with ipc.new_file(fh, table.schema, options=options) as writer:
            writer.write_table(table, max_chunksize=262_144)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return final


def leftovers(directory: Path) -> list[Path]:
    """Complete spool files not yet committed (a ``.tmp`` is an unfinished write)."""
    if not directory.is_dir():
        return []
    for tmp in directory.glob("*.tmp"):
        tmp.unlink(missing_ok=True)
    return sorted(directory.glob("rotation-*.arrow"))
