"""Captures of exporter traffic (pcap/pcapng): NetFlow v5/v9, IPFIX and sFlow datagrams.

The UDP datagrams are fed, in capture order, to the collector's decoder
(:mod:`rogueflow.collect`): the flows are what ``rogueflow collect`` would have
stored had it received them, with the capture time as the receive time (sFlow flows
carry it). Other UDP datagrams in the capture (DNS …) are not flow exports; they are
skipped, and a capture without a single decodable datagram is refused.
Chosen by ``--format netflow-pcap`` only: a capture is otherwise read as packets.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from rogueflow.collect.decoder import Decoder
from rogueflow.collect.pcapsource import datagrams
from rogueflow.errors import InputError
from rogueflow.ingest.base import NoCompanions, ReadOptions


def decoded_tables(
    dec: Decoder, items: Iterator[tuple[float, str, bytes]], batch_rows: int
) -> Iterator[pa.Table]:
    """Feed datagrams; yield a table whenever ``batch_rows`` records are pending."""
    for ts, exporter, payload in items:
        dec.feed(payload, exporter, ts)
        dec.expire(ts)
        if dec.pending_records >= batch_rows:
            table = dec.flush()
            if table is not None:
                yield table
    table = dec.finish()
    if table is not None:
        yield table


class NetflowPcapReader(NoCompanions):
    name = "netflow-pcap"
    description = "pcap/pcapng of NetFlow v5/v9, IPFIX and sFlow exports (--format only)"

    def sniff(self, path: Path, head: bytes) -> bool:
        return False  # a capture is a capture of packets unless the user says otherwise

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        dec = Decoder(default_rate=options.sampling_rate)
        flows = 0
        for table in decoded_tables(dec, datagrams(path), options.batch_rows):
            flows += table.num_rows
            yield table
        if flows == 0 and dec.stats.total("datagrams"):
            dropped = dec.stats.dropped()
            why = ", ".join(f"{r} {n}" for r, n in dropped.most_common(3)) or "no flow records"
            raise InputError(path, None, f"no NetFlow/IPFIX/sFlow flow decoded ({why})")
