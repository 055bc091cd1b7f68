"""Bad input: >= 100k random and mutated datagrams into the decoder and a live collector.

Mutations start from every real datagram in ../shared/data (NetFlow v5/v9, IPFIX,
sFlow): byte flips, truncation, extension, lying length fields, spliced sets. The
decoder must never raise; the live collector must stay alive (a valid datagram sent
after the storm is decoded) and count exactly the malformed datagrams, by reason,
that an offline decoder counts for the same sequence.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
from hypothesis import given
from hypothesis import strategies as st

from rogueflow.collect.collector import CollectOptions, Collector
from rogueflow.collect.decoder import Decoder
from rogueflow.collect.pcapsource import datagrams
from rogueflow.errors import InputError
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.ipfixfile import IpfixFileReader
from rogueflow.workspace import Workspace

FUZZ_COUNT = 100_000
PCAPS = [
    "akvorado-flows/netflow_nfv5.pcap",
    "akvorado-flows/netflow_template.pcap",
    "akvorado-flows/netflow_data.pcap",
    "akvorado-flows/netflow_data+templates.pcap",
    "akvorado-flows/netflow_ipfixprobe-templates.pcap",
    "akvorado-flows/netflow_ipfixprobe-data.pcap",
    "akvorado-flows/sflow_data-1140.pcap",
    "akvorado-flows/sflow_data-sflow-ipv4-data.pcap",
    "ndpi/pcap/netflow-fritz.pcap",
    "ndpi/pcap/sflow.pcap",
    "pmacct-ipfix/100-IPFIXv10-CISCO/traffic-00.pcap",
    "pmacct-ipfix/101-NFv9-CISCO-cust_primitives/traffic-00.pcap",
]


def seeds(shared: Path) -> list[bytes]:
    return [p for name in PCAPS for _, _, p in datagrams(shared / name)]


def mutate(rng: random.Random, base: list[bytes]) -> bytes:
    kind = rng.randrange(7)
    if kind == 0:  # random bytes behind a plausible version field
        head = rng.choice([b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05", b""])
        return head + rng.randbytes(rng.randrange(0, 1500))
    d = bytearray(rng.choice(base))
    if kind == 1:
        for _ in range(rng.randrange(1, 8)):
            d[rng.randrange(len(d))] = rng.randrange(256)
    elif kind == 2:
        d = d[: rng.randrange(len(d))]
    elif kind == 3:
        d += rng.randbytes(rng.randrange(1, 64))
    elif kind == 4 and len(d) > 24:  # a set/flowset/sample length that lies
        pos = rng.choice([16, 18, 20, 22, 24]) if len(d) > 26 else 2
        struct.pack_into("!H", d, pos, rng.choice([0, 1, 3, 4, 0xFFFF, rng.randrange(65536)]))
    elif kind == 5 and len(d) > 40:  # splice the tail of another datagram
        other = rng.choice(base)
        cut = rng.randrange(16, len(d))
        d = d[:cut] + other[rng.randrange(len(other)) :]
    else:
        for _ in range(rng.randrange(1, 3)):
            d[rng.randrange(len(d))] ^= 1 << rng.randrange(8)
    return bytes(d)


def corpus(shared: Path, n: int = FUZZ_COUNT) -> list[bytes]:
    rng = random.Random(20170517)
    base = seeds(shared)
    return [mutate(rng, base) for _ in range(n)]


def _malformed(dec: Decoder) -> Counter[str]:
    return Counter({r: n for r, n in dec.stats.dropped().items() if r.startswith("malformed")})


def test_fuzz_decoder_and_live_collector(tmp_path: Path, shared: Path) -> None:
    items = corpus(shared)
    offline = Decoder()
    for i, d in enumerate(items):
        offline.feed(d, "127.0.0.1", 1.0e9 + i * 1e-4)
        if i % 5000 == 0:
            offline.flush()
    offline.finish()
    assert offline.stats.total("datagrams") == FUZZ_COUNT
    bad = _malformed(offline)
    assert sum(bad.values()) > FUZZ_COUNT // 4  # the mutations do break things
    assert offline.stats.total("flows") > 0  # and some still decode

    ws = Workspace(tmp_path / "ws")
    opts = CollectOptions(listen=(("127.0.0.1", 0),), discard=True, rcvbuf=64 << 20)
    col = Collector(ws, opts, say=lambda msg: None)
    runner = threading.Thread(target=col.run)
    runner.start()
    try:
        port = col.addresses[0][1]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for start in range(0, len(items), 2000):
                for d in items[start : start + 2000]:
                    s.sendto(d, ("127.0.0.1", port))
                deadline = time.monotonic() + 20  # paced: never overrun the socket buffer
                while col.stats.total("datagrams") < start + 2000 and time.monotonic() < deadline:
                    time.sleep(0.005)
            assert col.stats.total("datagrams") == FUZZ_COUNT
            before = col.stats.total("flows")
            ((_, _, v5),) = datagrams(shared / "akvorado-flows" / "netflow_nfv5.pcap")
            s.sendto(v5, ("127.0.0.1", port))
            deadline = time.monotonic() + 10
            while col.stats.total("flows") < before + 29 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert runner.is_alive()
        assert col.stats.total("flows") >= before + 29  # alive and decoding after the storm
    finally:
        col.stop()
        runner.join(timeout=60)
    assert not runner.is_alive()
    assert _malformed(col.decoder) == bad  # every bad datagram counted, with its reason


@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    dec = Decoder()
    for prefix in (b"", b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05"):
        dec.feed(prefix + data, "192.0.2.1", 0.0)
    table = dec.finish()
    assert table is None or isinstance(table, pa.Table)
    assert dec.stats.total("datagrams") == 5


@given(st.binary(max_size=600))
def test_ipfix_file_reader_raises_only_input_error(tmp_path_factory: object, data: bytes) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "x.ipfix"
        path.write_bytes(struct.pack("!HHIII", 10, 16 + len(data), 0, 0, 0) + data)
        try:
            for _ in IpfixFileReader().read(path, ReadOptions()):
                pass
        except InputError:
            pass
