"""Real exporters and collectors on loopback for the collect tests (bounded, cleaned up).

Every process is started with a deadline and killed in ``finally``; every socket is
bound to 127.0.0.1. The tee forwards each datagram an exporter sends to both
rogueflow's collector and nfcapd, so both decode the same stream.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from rogueflow.workspace import Workspace

LOOPBACK = "127.0.0.1"
COMPARED = (
    "ts_start",
    "ts_end",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
    "packets",
    "bytes",
)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def stop(proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    """SIGTERM, wait, then SIGKILL: never leaves the process behind."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def collector(ws_root: Path, ports: list[int], *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    """``rogueflow collect`` as a subprocess, ready when it says it listens."""
    cmd = [sys.executable, "-m", "rogueflow.cli.main", "-w", str(ws_root), "collect"]
    for p in ports:
        cmd += ["--listen", f"{LOOPBACK}:{p}"]
    log = ws_root.parent / f"collect-{ports[0]}.log"
    ws_root.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as err:
        proc = subprocess.Popen([*cmd, *extra], stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 30
        while log.read_bytes().count(b"listening on") < len(ports):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"collector did not start: {log.read_text()}")
            time.sleep(0.05)
        time.sleep(0.2)
        yield proc
    finally:
        stop(proc)
        proc.log = log.read_text()  # type: ignore[attr-defined]


@contextlib.contextmanager
def nfcapd(out: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        ["nfcapd", "-w", str(out), "-b", LOOPBACK, "-p", str(port), "-B", str(8 << 20)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        yield proc
    finally:
        stop(proc)


class Tee:
    """Forwards every datagram received on ``port`` to each of ``targets``."""

    def __init__(self, targets: list[int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((LOOPBACK, 0))
        self.sock.settimeout(0.1)
        self.port = int(self.sock.getsockname()[1])
        self.targets = targets
        self.count = 0
        self.last = 0.0  # time.monotonic() of the latest datagram
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65535)
            except TimeoutError:
                continue
            self.count += 1
            self.last = time.monotonic()
            for port in self.targets:
                out.sendto(data, (LOOPBACK, port))
        out.close()

    def settle(self, *, first: float, quiet: float) -> None:
        """Wait up to ``first`` s for a datagram, then until ``quiet`` s pass without one.

        For exporters that send on their own timers (fprobe expires idle flows on a
        scan, then queues them for an emitter that wakes every few seconds).
        """
        deadline = time.monotonic() + first
        while self.count == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        while self.count and time.monotonic() - self.last < quiet:
            time.sleep(0.1)

    def __enter__(self) -> Tee:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join(timeout=10)
        self.sock.close()


def run(cmd: list[str], timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)


def stored(ws_root: Path) -> pa.Table:
    """Every flow in the workspace's store (measured columns)."""
    from rogueflow.store.flowstore import FlowStore, read_store_file

    store = FlowStore(Workspace(ws_root))
    try:
        tables = [read_store_file(p) for p in store.files()]
    finally:
        store.close()
    return pa.concat_tables(tables) if tables else pa.table({c: [] for c in COMPARED})


_PROTO = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMP6": 58, "GRE": 47, "ESP": 50, "SCTP": 132}


def nfcapd_flows(out: Path, *, swap_times: bool = False) -> list[tuple[object, ...]]:
    """What nfcapd stored, as ``nfdump -r`` prints it: rows in COMPARED order.

    ``swap_times``: nfcapd 1.7.1 stores IPFIX flowStartSysUpTime as the end and
    flowEndSysUpTime as the start (every such flow then has a negative duration); the
    caller asks for them back in their order and checks that the duration is negative.
    """
    import datetime as dt

    from rogueflow import addr

    fmt = "fmt:%ts|%te|%sa|%da|%sp|%dp|%it|%ic|%pr|%pkt|%byt"
    env = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}
    result: list[tuple[object, ...]] = []
    for f in sorted(out.glob("nfcapd.*")):
        if f.name.startswith("nfcapd.current"):
            continue
        text = subprocess.run(
            ["nfdump", "-r", str(f), "-q", "-N", "-6", "-o", fmt],
            env=env,
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
        for line in text.splitlines():
            # a file nfcapd rotated while the stream was idle holds no flow at all
            if not line.strip() or line.strip() == "No matching flows":
                continue
            ts, te, sa, da, sp, dp, it, ic, pr, pkt, byt = (x.strip() for x in line.split("|"))
            start, end = (
                round(
                    dt.datetime.strptime(t, "%Y-%m-%d %H:%M:%S.%f")
                    .replace(tzinfo=dt.UTC)
                    .timestamp()
                    * 1000
                )
                * 1000
                for t in (ts, te)
            )
            if swap_times:
                assert end <= start, f"nfcapd no longer swaps IPFIX times: {line}"
                start, end = end, start
            proto = int(pr) if pr.isdigit() else _PROTO[pr.upper()]
            icmp = proto in (1, 58)
            result.append(
                (
                    start,
                    end,
                    addr.parse_one(sa),
                    addr.parse_one(da),
                    0 if icmp else int(sp),
                    int(it) * 256 + int(ic) if icmp else int(dp),
                    proto,
                    int(pkt),
                    int(byt),
                )
            )
    return sorted(result)


def rows(table: pa.Table) -> list[tuple[object, ...]]:
    """The compared columns as sorted tuples (times in microseconds)."""
    cols = []
    for c in COMPARED:
        col = table.column(c)
        if pa.types.is_timestamp(col.type):
            col = pc.cast(col, pa.int64())
        cols.append(col.to_pylist())
    return sorted(zip(*cols, strict=True))


def netns_available() -> bool:
    return os.geteuid() == 0 and run(["ip", "netns", "list"]).returncode == 0
