"""IPFIX files (RFC 5655): IPFIX messages one after another, as written by exporters
and tools (``ipfixcol2``, ``yaf``, ``nfcapd``'s siblings). Decoded by the collector's
decoder; the export time of each message is its time.

A message whose length field runs past the end of the file, or a message the
decoder refuses, fails the file with its byte offset. ``--option exporter=NAME``
(or ReadOptions.exporter) names the exporter, which a file does not carry.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from rogueflow.collect.decoder import Decoder
from rogueflow.errors import InputError
from rogueflow.ingest.base import NoCompanions, ReadOptions, open_maybe_compressed
from rogueflow.ingest.netflowpcap import decoded_tables

_HEADER = struct.Struct("!HHIII")


def is_ipfix_file(head: bytes) -> bool:
    if len(head) < 20:
        return False
    version, length, _export, _seq, _domain = _HEADER.unpack_from(head)
    set_id, set_len = struct.unpack_from("!HH", head, 16)
    return bool(
        version == 10 and length >= 20 and (set_id in (2, 3) or set_id >= 256) and set_len >= 4
    )


class IpfixFileReader(NoCompanions):
    name = "ipfix-file"
    description = "IPFIX files (RFC 5655)"

    def sniff(self, path: Path, head: bytes) -> bool:
        return is_ipfix_file(head)

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        dec = Decoder(default_rate=options.sampling_rate)
        exporter = options.exporter or options.extra.get("exporter") or ""
        for table in decoded_tables(dec, self._messages(path, dec, exporter), options.batch_rows):
            if not exporter:
                table = table.set_column(
                    table.schema.get_field_index("exporter"),
                    "exporter",
                    pa.nulls(table.num_rows, pa.string()),
                )
            yield table

    @staticmethod
    def _messages(path: Path, dec: Decoder, exporter: str) -> Iterator[tuple[float, str, bytes]]:
        try:
            fh = open_maybe_compressed(path)
        except OSError as exc:
            raise InputError(path, None, f"cannot open ({exc.strerror})") from None
        offset = 0
        with fh:
            while head := fh.read(16):
                if len(head) < 16:
                    raise InputError(path, f"byte {offset}", "truncated IPFIX message header")
                version, length, export, _seq, _domain = _HEADER.unpack(head)
                if version != 10 or length < 16:
                    raise InputError(
                        path,
                        f"byte {offset}",
                        f"not an IPFIX message (version {version}, length {length})",
                    )
                body = fh.read(length - 16)
                if len(body) != length - 16:
                    raise InputError(
                        path, f"byte {offset}", f"IPFIX message of {length} bytes runs past the end"
                    )
                before = sum(dec.stats.dropped().values())
                yield float(export), exporter, head + body
                if dec.stats.malformed() and sum(dec.stats.dropped().values()) > before:
                    problem = dec.stats.of(exporter).last_problem
                    if problem.startswith("malformed"):
                        raise InputError(path, f"byte {offset}", problem)
                offset += length
