"""What every reader is: a pure ``read`` generator of canonical Arrow tables.

A reader module defines one class with

* ``name`` — the ``--format`` value (``zeek-conn``, ``nfcapd``, ``pcap`` …);
* ``sniff(path, head)`` — does the file look like mine (``head`` = first 64 KiB,
  decompressed when the file is gzip)?
* ``read(path, options)`` — yields ``pa.Table`` batches with the measured columns
  of :data:`rogueflow.schema.FIELDS` (provenance columns are added by the
  pipeline), at most ``options.batch_rows`` rows each;
* ``companions(path)`` — other files whose content goes into this source
  (e.g. Zeek's dns.log and ssl.log beside conn.log); they are hashed with it.

Readers raise :class:`rogueflow.errors.InputError` naming the file and the
position (line, byte offset, packet or record number) for any bad input, and
nothing else: the property tests feed them arbitrary bytes.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol, cast

import pyarrow as pa

SNIFF_BYTES = 65536

GZIP_MAGIC = b"\x1f\x8b"
BZIP2_MAGIC = b"BZh"
XZ_MAGIC = b"\xfd7zXZ\x00"


@dataclass(frozen=True)
class ReadOptions:
    batch_rows: int = 262_144
    #: canonical column -> source column (CSV/Parquet readers); see ``ingest.mapping``
    mapping: Mapping[str, str] = field(default_factory=dict)
    #: reader-specific options from ``--option KEY=VALUE``
    extra: Mapping[str, str] = field(default_factory=dict)
    #: sampling rate to assume when the source carries none
    sampling_rate: int | None = None
    exporter: str | None = None


class Reader(Protocol):
    name: str
    description: str

    def sniff(self, path: Path, head: bytes) -> bool: ...

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]: ...

    def companions(self, path: Path) -> list[Path]: ...


class NoCompanions:
    def companions(self, path: Path) -> list[Path]:
        return []


def compression_of(head: bytes) -> str | None:
    if head.startswith(GZIP_MAGIC):
        return "gzip"
    if head.startswith(BZIP2_MAGIC):
        return "bz2"
    if head.startswith(XZ_MAGIC):
        return "xz"
    return None


def open_maybe_compressed(path: Path) -> IO[bytes]:
    """Open a file for binary reading, transparently decompressing gzip/bz2/xz.

    The decompressors open the file by name so that closing them closes it.
    """
    with open(path, "rb") as raw:
        head = raw.read(6)
    kind = compression_of(head)
    if kind == "gzip":
        return cast(IO[bytes], gzip.open(path, "rb"))
    if kind == "bz2":
        return cast(IO[bytes], bz2.open(path, "rb"))
    if kind == "xz":
        return cast(IO[bytes], lzma.open(path, "rb"))
    return open(path, "rb")


def read_head(path: Path, n: int = SNIFF_BYTES) -> bytes:
    """The first ``n`` bytes, decompressed if the file is compressed ("" on any error)."""
    try:
        with open_maybe_compressed(path) as fh:
            return fh.read(n)
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        try:
            with open(path, "rb") as fh:
                return fh.read(n)
        except OSError:
            return b""


def text_head(head: bytes) -> str:
    return head.decode("utf-8", errors="replace")
