"""Readers for the files analysts already have, assembled in one visible list.

Order matters: the first reader whose ``sniff`` accepts a file reads it.
"""

from __future__ import annotations

from pathlib import Path

from rogueflow.ingest.base import Reader, ReadOptions
from rogueflow.ingest.collectspool import SpoolReader
from rogueflow.ingest.csvfile import CsvReader
from rogueflow.ingest.ipfixfile import IpfixFileReader
from rogueflow.ingest.netflowpcap import NetflowPcapReader
from rogueflow.ingest.nfcapd import NfcapdReader
from rogueflow.ingest.parquetfile import ParquetReader
from rogueflow.ingest.pcap import PcapReader
from rogueflow.ingest.zeek import ZeekConnReader

READERS: list[Reader] = [
    ParquetReader(),
    PcapReader(),
    NfcapdReader(),
    ZeekConnReader(),
    IpfixFileReader(),
    SpoolReader(),
    NetflowPcapReader(),  # --format netflow-pcap only: sniffs nothing
    CsvReader(),
]


def COMPANION_ONLY(path: Path) -> bool:
    """Files read only through another file: Zeek dns/ssl/http logs beside a conn.log.

    Matches ``dns.log``, ``dns.2017-05.log.gz`` and ``site.dns.log`` alike.
    """
    name = path.name
    return ".log" in name and any(part in _COMPANION_KINDS for part in name.split("."))


_COMPANION_KINDS = frozenset({"dns", "ssl", "http", "x509", "files"})


__all__ = ["COMPANION_ONLY", "READERS", "ReadOptions", "Reader"]
