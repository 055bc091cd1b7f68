"""Readers for the files analysts already have, assembled in one visible list.

Order matters: the first reader whose ``sniff`` accepts a file reads it.
"""

from __future__ import annotations

from pathlib import Path

from rogueflow.ingest.base import Reader, ReadOptions
from rogueflow.ingest.csvfile import CsvReader
from rogueflow.ingest.parquetfile import ParquetReader

READERS: list[Reader] = [
    ParquetReader(),
    CsvReader(),
]


def COMPANION_ONLY(path: Path) -> bool:  # noqa: N802 - a predicate constant
    """Files that are read only through another file (Zeek dns/ssl logs beside conn.log)."""
    name = path.name
    return name.startswith(("dns.", "ssl.", "http.", "x509.", "files.")) and ".log" in name


__all__ = ["COMPANION_ONLY", "READERS", "ReadOptions", "Reader"]
