"""Bursts: many datagrams received by one call and decoded at once, exactly as one by one.

The collector receives with ``recvmmsg`` and decodes the common datagrams of a burst
with numpy (:mod:`rogueflow.collect.burst`); everything else goes through
``Decoder.feed``. Whatever the mix — templates announced, re-defined and withdrawn
mid-burst, options, variable-length fields, data before its template, sequence gaps
and restarts, several exporters and domains, garbage — the flows (in the same order)
and every counter must be those of feeding the datagrams one at a time.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow.collect.collector import CollectOptions, Collector
from rogueflow.collect.decoder import Decoder
from rogueflow.collect.pcapsource import datagrams
from rogueflow.collect.recv import Burst, Intake, Receiver
from rogueflow.workspace import Workspace
from tests.test_collect_fuzz import PCAPS, mutate

EXPORTERS = ("192.0.2.1", "192.0.2.2", "2001:db8::7")

# (element, length) layouts; 0x8000 marks an enterprise element (IPFIX only)
V4_MS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 8), (1, 8), (152, 8), (153, 8))
V6_UPTIME = ((27, 16), (28, 16), (7, 2), (11, 2), (4, 1), (1, 4), (2, 4), (22, 4), (21, 4))
ODD = ((10, 4), (8, 4), (12, 4), (0x8000 | 5, 2), (1, 3), (2, 2), (32, 2), (4, 1))
VARIABLE = ((8, 4), (12, 4), (82, 0xFFFF), (1, 8))
LAYOUTS = (V4_MS, V6_UPTIME, ODD, VARIABLE)


def _fields(layout: tuple[tuple[int, int], ...], ipfix: bool) -> bytes:
    out = b""
    for element, length in layout:
        out += struct.pack("!HH", element, length)
        if element & 0x8000:
            out += struct.pack("!I", 9)  # Cisco's enterprise number: skipped by its length
    return out


def _record(rng: random.Random, layout: tuple[tuple[int, int], ...]) -> bytes:
    out = b""
    for element, length in layout:
        if element in (152, 153):  # flowStart/EndMilliseconds: a time the store can hold
            out += struct.pack("!Q", rng.randrange(1_600_000_000_000, 1_800_000_000_000))
        elif length == 0xFFFF:
            n = rng.choice([0, 3, 17, 300])
            head = bytes([n]) if n < 255 else b"\xff" + struct.pack("!H", n)
            out += head + rng.randbytes(n)
        else:
            out += rng.randbytes(length)
    return out


class Stream:
    """A random but plausible mix of IPFIX and NetFlow v9 traffic from a few exporters."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seq: dict[tuple[str, int, int], int] = {}
        self.templates: dict[tuple[str, int, int], dict[int, int]] = {}

    def _set(self, sid: int, body: bytes, pad: int = 0) -> bytes:
        return struct.pack("!HH", sid, 4 + len(body) + pad) + body + bytes(pad)

    def _message(self, version: int, domain: int, sets: list[bytes], seq: int) -> bytes:
        body = b"".join(sets)
        if version == 10:
            return struct.pack("!HHIII", 10, 16 + len(body), 1_700_000_000, seq, domain) + body
        uptime = 3_600_000
        return struct.pack("!HHIIII", 9, len(sets), uptime, 1_700_000_000, seq, domain) + body

    def _template(self, version: int, tid: int, layout: int) -> bytes:
        fields = LAYOUTS[layout]
        if version == 9:
            fields = tuple((e & 0x7FFF, n) for e, n in fields)
        body = struct.pack("!HH", tid, len(fields)) + _fields(fields, version == 10)
        return self._set(2 if version == 10 else 0, body)

    def _data(self, version: int, tid: int, layout: int, k: int, pad: int) -> bytes:
        fields = LAYOUTS[layout]
        if version == 9:
            fields = tuple((e & 0x7FFF, n) for e, n in fields)
        records = b"".join(_record(self.rng, fields) for _ in range(k))
        return self._set(tid, records, pad)

    def _options(self, version: int, domain: int) -> list[bytes]:
        rate = self.rng.choice([1, 10, 100])
        if version == 10:  # scope observationDomainId, samplingInterval
            tpl = self._set(3, struct.pack("!HHHHHHH", 400, 2, 1, 149, 4, 34, 4))
        else:  # scope System, SAMPLING_INTERVAL
            tpl = self._set(1, struct.pack("!HHHHHHH", 400, 4, 4, 1, 4, 34, 4))
        return [tpl, self._set(400, struct.pack("!II", domain, rate))]

    def message(self) -> tuple[bytes, str]:
        rng = self.rng
        exporter = rng.choice(EXPORTERS)
        version = rng.choice([9, 10, 10])
        domain = rng.choice([1, 2])
        key = (exporter, version, domain)
        known = self.templates.setdefault(key, {})
        tid = rng.choice([300, 301, 302])
        seq = self.seq.get(key, rng.randrange(2**32))
        roll = rng.random()
        sets: list[bytes] = []
        records = 0
        if roll < 0.10 or (not known and roll < 0.5):  # (re)announce: same or new layout
            layout = known.get(tid, rng.randrange(len(LAYOUTS)))
            if rng.random() < 0.3:
                layout = rng.randrange(len(LAYOUTS))
            if version == 9 and LAYOUTS[layout] is VARIABLE:
                layout = 0
            known[tid] = layout
            sets.append(self._template(version, tid, layout))
            if rng.random() < 0.3:  # template and data in one message
                k = rng.randrange(0, 5)
                sets.append(self._data(version, tid, layout, k, 0))
                records += k
        elif roll < 0.13 and version == 10 and known:  # withdrawal of one template
            gone = rng.choice(sorted(known))
            del known[gone]
            sets.append(self._set(2, struct.pack("!HH", gone, 0)))
        elif roll < 0.16:
            sets.extend(self._options(version, domain))
        elif roll < 0.19:
            return rng.randbytes(rng.randrange(0, 60)), exporter  # garbage
        else:  # data: of a known template, or (rarely) of one never announced
            if known and rng.random() < 0.95:
                tid = rng.choice(sorted(known))
                layout = known[tid]
            else:
                tid, layout = 999, 0
            k = rng.choice([0, 1, 7, 30, 30, 30])
            sets.append(self._data(version, tid, layout, k, rng.choice([0, 0, 0, 2])))
            records += k if tid in known else 0
        jump = rng.random()
        if jump < 0.03:
            seq += rng.randrange(1, 50)  # lost datagrams or records
        elif jump < 0.04:
            seq -= rng.randrange(1, 50)  # a restart
        advance = 1 if version == 9 else records
        self.seq[key] = (seq + advance) & 0xFFFFFFFF
        return self._message(version, domain, sets, seq & 0xFFFFFFFF), exporter


def _one_by_one(items: list[tuple[bytes, str]], now: float) -> tuple[Decoder, pa.Table | None]:
    dec = Decoder()
    for data, exporter in items:
        dec.feed(data, exporter, now)
    return dec, dec.finish()


def _in_bursts(
    items: list[tuple[bytes, str]], now: float, sizes: list[int]
) -> tuple[Decoder, pa.Table | None]:
    dec = Decoder()
    pos = i = 0
    while pos < len(items):
        size = sizes[i % len(sizes)]
        dec.feed_burst(Burst.of(items[pos : pos + size]), now)
        pos, i = pos + size, i + 1
    return dec, dec.finish()


def _assert_same(a: tuple[Decoder, pa.Table | None], b: tuple[Decoder, pa.Table | None]) -> None:
    (da, ta), (db, tb) = a, b
    assert (ta is None) == (tb is None)
    if ta is not None and tb is not None:
        assert ta.num_rows == tb.num_rows
        assert ta.equals(tb), "not the same flows in the same order"
    assert da.stats.as_dict() == db.stats.as_dict()
    assert (da.stats.held_sets, da.stats.held_bytes) == (db.stats.held_sets, db.stats.held_bytes)
    assert da.sequences.expected == db.sequences.expected


@settings(max_examples=40)
@given(seed=st.integers(0, 2**32), sizes=st.lists(st.integers(1, 600), min_size=1, max_size=4))
def test_bursts_equal_one_by_one_on_mixed_traffic(seed: int, sizes: list[int]) -> None:
    stream = Stream(seed)
    items = [stream.message() for _ in range(400)]
    _assert_same(_one_by_one(items, 1.7e9), _in_bursts(items, 1.7e9, sizes))


def test_bursts_equal_one_by_one_on_real_and_mutated_datagrams(shared: Path) -> None:
    real = [(p, e) for name in PCAPS for _, e, p in datagrams(shared / name)]
    for sizes in ([1], [5, 64], [512]):
        _assert_same(_one_by_one(real, 1.7e9), _in_bursts(real, 1.7e9, sizes))
    rng = random.Random(7)
    seeds = [p for p, _ in real]
    mixed = [(mutate(rng, seeds), rng.choice(EXPORTERS)) for _ in range(5000)]
    mixed = [x for pair in zip(mixed, real * 20, strict=False) for x in pair]
    _assert_same(_one_by_one(mixed, 1.7e9), _in_bursts(mixed, 1.7e9, [97, 512]))


def test_plain_data_messages_skip_the_per_datagram_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only what is not one data set of a known fixed-length template goes one by one."""
    stream = Stream(3)
    items: list[tuple[bytes, str]] = []
    for exporter in EXPORTERS[:2]:
        for version in (9, 10):
            tpl = stream._template(version, 300, 0)
            items.append((stream._message(version, 1, [tpl], 0), exporter))
    expected_slow = {d for d, _ in items}
    for i in range(2000):
        version = 9 if i % 3 else 10
        data = stream._data(version, 300, 0, 30, 0)
        items.append((stream._message(version, 1, [data], i), EXPORTERS[i % 2]))
        if i == 1000:  # re-announced mid-stream: one barrier, then the fast path again
            again = stream._message(10, 1, [stream._template(10, 300, 0)], 0)
            items.append((again, EXPORTERS[0]))
            expected_slow.add(again)
    slow: list[bytes] = []
    original = Decoder.feed

    def counted(self: Decoder, data: Any, exporter: str, now: float) -> None:
        slow.append(bytes(data))
        original(self, data, exporter, now)

    monkeypatch.setattr(Decoder, "feed", counted)
    _, table = _in_bursts(items, 1.7e9, [512])
    assert table is not None and table.num_rows == 2000 * 30
    assert set(slow) == expected_slow and len(slow) == 5


def _send_from(source: str, port: int, payloads: list[bytes], family: int) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for p in payloads:
            s.sendto(p, ("::1" if family == socket.AF_INET6 else "127.0.0.1", port))


def _receive_all(r: Receiver, want: int) -> list[tuple[bytes, str]]:
    got: list[tuple[bytes, str]] = []
    deadline = time.monotonic() + 10
    while len(got) < want and time.monotonic() < deadline:
        burst = r.receive()
        if burst is None:
            time.sleep(0.01)
            continue
        got += [(burst.datagram(i), burst.names[burst.exporters[i]]) for i in range(len(burst))]
    return got


@pytest.mark.parametrize("native", [True, False])
def test_receiver_bursts_carry_every_datagram_and_its_exporter(native: bool) -> None:
    rng = random.Random(1)
    payloads = [rng.randbytes(rng.choice([0, 1, 100, 1400, 9000])) for _ in range(300)]
    payloads.append(rng.randbytes(65_507))  # the largest UDP payload arrives whole
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        r = Receiver(sock, slots=64, native=native)
        port = sock.getsockname()[1]
        _send_from("127.0.0.1", port, payloads[:150], socket.AF_INET)
        _send_from("127.0.0.2", port, payloads[150:], socket.AF_INET)
        got = _receive_all(r, len(payloads))
    assert [p for p, _ in got] == payloads
    assert [e for _, e in got] == ["127.0.0.1"] * 150 + ["127.0.0.2"] * (len(payloads) - 150)


@pytest.mark.parametrize("native", [True, False])
def test_receiver_on_a_dual_stack_socket_names_ipv4_peers_plainly(native: bool) -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind(("::", 0))
        sock.setblocking(False)
        r = Receiver(sock, slots=8, native=native)
        port = sock.getsockname()[1]
        _send_from("127.0.0.1", port, [b"four"], socket.AF_INET)
        time.sleep(0.05)
        _send_from("::1", port, [b"six"], socket.AF_INET6)
        got = _receive_all(r, 2)
    assert got == [(b"four", "127.0.0.1"), (b"six", "::1")]


def test_intake_hands_over_owned_bursts_in_order_and_ends() -> None:
    payloads = [struct.pack("!I", i) * 100 for i in range(3000)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        intake = Intake([sock], limit=1 << 20)  # small: the bound is exercised
        intake.start()
        _send_from("127.0.0.1", sock.getsockname()[1], payloads, socket.AF_INET)
        time.sleep(0.2)
        intake.stop()
        got: list[bytes] = []
        while (item := intake.queue.get(timeout=10)) is not None:
            burst, _ = item
            got += [burst.datagram(i) for i in range(len(burst))]
            intake.done(burst)
        intake.close()
    assert intake.error is None
    assert got == payloads


def test_live_collector_counts_as_an_offline_decoder(tmp_path: Path) -> None:
    """Full bursts through the receive thread: every counter as decoding the bytes offline.

    (What a live collector stores is compared with nfcapd in test_collect_exporters.)
    """
    stream = Stream(11)
    items = [d for d, e in (stream.message() for _ in range(6000)) if e == EXPORTERS[0]]
    opts = CollectOptions(listen=(("127.0.0.1", 0),), discard=True)
    col = Collector(Workspace(tmp_path / "ws"), opts, say=lambda msg: None)
    runner = threading.Thread(target=col.run)
    runner.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, d in enumerate(items):
                s.sendto(d, ("127.0.0.1", col.addresses[0][1]))
                if i % 500 == 0:
                    time.sleep(0.01)  # paced: never overrun the socket buffer
        deadline = time.monotonic() + 30
        while col.stats.total("datagrams") < len(items) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        col.stop()
        runner.join(timeout=60)
    assert not runner.is_alive() and col.kernel_dropped == 0
    offline = Decoder()
    for d in items:
        offline.feed(d, "127.0.0.1", time.time())
    table = offline.finish()
    assert table is not None and table.num_rows > 5000
    live, want = col.stats.as_dict(), offline.stats.as_dict()
    live.pop("rotations")
    want.pop("rotations")
    assert live == want


def _run_collector(ws: Workspace, **kw: Any) -> tuple[Collector, threading.Thread]:
    opts = CollectOptions(listen=(("127.0.0.1", 0),), **kw)
    col = Collector(ws, opts, say=lambda msg: None)
    runner = threading.Thread(target=col.run)
    runner.start()
    return col, runner


def _wait(condition: Any, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_dead_commit_process_keeps_rotations_for_the_next_run(tmp_path: Path) -> None:
    from tests import collectlab as lab

    stream = Stream(5)
    items = [d for d, e in (stream.message() for _ in range(1500)) if e == EXPORTERS[0]]
    half = len(items) // 2
    ws = Workspace(tmp_path / "ws")
    col, runner = _run_collector(ws, rotate_seconds=0.5)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in items[:half]:
                s.sendto(d, ("127.0.0.1", col.addresses[0][1]))
            _wait(lambda: col.stats.rotations >= 1)  # committed by the child
            assert col.committer is not None
            col.committer.proc.kill()
            for d in items[half:]:
                s.sendto(d, ("127.0.0.1", col.addresses[0][1]))
        _wait(lambda: col.stats.total("datagrams") >= len(items))
        _wait(lambda: any("kept" in e for e in col.errors))  # counted, file kept
    finally:
        col.stop()
        runner.join(timeout=300)
    assert not runner.is_alive()
    assert all("commit process ended" in e and "kept" in e for e in col.errors)
    assert col.stats.stored_flows < col.stats.total("flows")
    again, runner = _run_collector(ws)  # commits what the first run kept
    _wait(lambda: again.stats.stored_flows + col.stats.stored_flows >= col.stats.total("flows"))
    again.stop()
    runner.join(timeout=300)
    assert not again.errors
    offline = Decoder()
    for d in items:
        offline.feed(d, "127.0.0.1", time.time())
    table = offline.finish()
    assert table is not None
    assert lab.rows(lab.stored(ws.root)) == lab.rows(table)
