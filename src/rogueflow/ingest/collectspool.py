"""Rotation files of ``rogueflow collect`` (see :mod:`rogueflow.collect.spool`).

The collector commits each rotation through this reader; ``rogueflow ingest`` reads a
rotation file a killed collector left behind.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc

from rogueflow.collect.spool import ARROW_MAGIC, MARKER
from rogueflow.errors import InputError
from rogueflow.ingest.base import NoCompanions, ReadOptions


class SpoolReader(NoCompanions):
    name = "collect"
    description = "rotation files written by `rogueflow collect` (Arrow IPC)"

    def sniff(self, path: Path, head: bytes) -> bool:
        return head.startswith(ARROW_MAGIC) and MARKER in head

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        try:
            with ipc.open_file(path) as reader:
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    yield pa.Table.from_batches([batch]).replace_schema_metadata(None)
        except (pa.ArrowException, OSError) as exc:
            raise InputError(path, None, f"not a readable collect rotation file ({exc})") from None
