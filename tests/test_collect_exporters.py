"""rogueflow collect next to nfcapd, fed the same stream by real exporters on loopback.

softflowd replays captures (NetFlow v5, v9, IPFIX), nfreplay replays nfcapd files,
fprobe meters frames injected into a veth pair whose far end lives in a network
namespace. A tee sends each datagram to both collectors; what rogueflow stores must
equal what nfcapd stored (5-tuple, times, packets, bytes), flow for flow.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests import collectlab as lab
from tests.conftest import require_tool


def _compare(
    tmp_path: Path,
    send: object,
    *,
    ipfix: bool = False,
    drain: Callable[[lab.Tee], None] | None = None,
) -> tuple[int, str]:
    ws = tmp_path / "ws"
    rf_port, nf_port = lab.free_udp_port(), lab.free_udp_port()
    with lab.collector(ws, [rf_port]) as proc, lab.nfcapd(tmp_path / "nfcapd", nf_port):
        with lab.Tee([rf_port, nf_port]) as tee:
            send(tee.port)  # type: ignore[operator]
            if drain is not None:
                drain(tee)
            time.sleep(0.5)
        assert tee.count > 0, "the exporter sent nothing"
    mine = lab.stored(ws)
    theirs = lab.nfcapd_flows(tmp_path / "nfcapd", swap_times=ipfix)
    assert theirs
    assert lab.rows(mine) == theirs
    return mine.num_rows, proc.log  # type: ignore[attr-defined]


CAPTURES = ["tor.pcap", "mining.pcapng", "bitcoin.pcap"]


@pytest.mark.parametrize("version", ["5", "9", "10"])
@pytest.mark.parametrize("capture", CAPTURES)
def test_softflowd_equals_nfcapd(tmp_path: Path, shared: Path, version: str, capture: str) -> None:
    softflowd = require_tool("softflowd", "softflowd")
    require_tool("nfcapd", "nfdump")
    pcap = shared / "ndpi" / "pcap" / capture

    def send(port: int) -> None:
        r = lab.run([softflowd, "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", version])
        assert r.returncode == 0, r.stderr

    flows, log = _compare(tmp_path, send, ipfix=version == "10")
    assert flows > 0
    assert "lost 0 datagrams + 0 records" in log


@pytest.mark.parametrize("version", ["5", "9"])
@pytest.mark.parametrize("source", ["mining", "tor"])
def test_nfreplay_equals_nfcapd(tmp_path: Path, shared: Path, version: str, source: str) -> None:
    nfreplay = require_tool("nfreplay", "nfdump")
    files = sorted((shared / "derived-nfcapd" / source).glob("nfcapd.*"))

    def send(port: int) -> None:
        for f in files:
            r = lab.run(
                [
                    nfreplay,
                    "-r",
                    str(f),
                    "-H",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-v",
                    version,
                    "-d",
                    "1000",
                ]
            )
            assert r.returncode == 0, r.stderr

    flows, _ = _compare(tmp_path, send)
    assert flows > 0


_INJECT = """
import socket, sys, dpkt
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
with open(sys.argv[2], "rb") as fh:
    r = dpkt.pcapng.Reader(fh) if fh.read(4) == b"\\x0a\\x0d\\x0d\\x0a" else None
    fh.seek(0)
    r = r or dpkt.pcap.Reader(fh)
    for _, frame in r:
        s.send(frame)
"""


def test_fprobe_equals_nfcapd(tmp_path: Path, shared: Path) -> None:
    """fprobe reads only live interfaces: frames are sent into a veth pair from a netns."""
    fprobe = require_tool("fprobe", "fprobe")
    if not lab.netns_available():
        pytest.skip("fprobe needs a live interface: creating a network namespace needs root")
    ns, here, there = f"rf{lab.free_udp_port()}", "rfprobe0", "rfprobe1"
    pcap = shared / "ndpi" / "pcap" / "tor.pcap"
    script = tmp_path / "inject.py"
    script.write_text(_INJECT)
    created = False
    try:
        assert lab.run(["ip", "netns", "add", ns]).returncode == 0
        created = True
        r = lab.run(["ip", "link", "add", here, "type", "veth", "peer", "name", there, "netns", ns])
        assert r.returncode == 0, r.stderr
        for cmd in (
            ["ip", "link", "set", here, "up"],
            ["ip", "netns", "exec", ns, "ip", "link", "set", there, "up"],
        ):
            assert lab.run(cmd).returncode == 0

        log = tmp_path / "fprobe.log"
        probes: list[subprocess.Popen[bytes]] = []

        def send(port: int) -> None:
            probes.append(_start_fprobe(fprobe, here, port, log))
            r = lab.run(["ip", "netns", "exec", ns, sys.executable, str(script), there, str(pcap)])
            assert r.returncode == 0, r.stderr

        def drain(tee: lab.Tee) -> None:
            # fprobe expires idle flows on its 1 s scan and its emitter wakes every few
            # seconds: wait for that export, then SIGTERM flushes anything left.
            tee.settle(first=30, quiet=8)
            _flush_fprobe(probes.pop(), log)
            tee.settle(first=0, quiet=1)

        try:
            flows, _ = _compare(tmp_path, send, drain=drain)
        finally:
            for probe in probes:
                lab.stop(probe, timeout=10)
        assert flows > 0
    finally:
        lab.run(["ip", "link", "del", here])
        if created:
            lab.run(["ip", "netns", "del", ns])
    assert shutil.which("ip")


def _start_fprobe(fprobe: str, interface: str, port: int, log: Path) -> subprocess.Popen[bytes]:
    """Start fprobe in the foreground and return once its capture is open.

    With ``-l 2`` fprobe logs to stdout and stays in the foreground (with any other
    log destination it forks into the background, out of reach of a clean stop);
    its ``interface:`` line comes after libpcap has opened the capture.
    """
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                fprobe,
                "-i",
                interface,
                "-p",
                "-s",
                "1",
                "-d",
                "1",
                "-e",
                "2",
                "-l",
                "2",
                f"127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if f"interface: {interface}".encode() in log.read_bytes():
            return proc
        time.sleep(0.1)
    lab.stop(proc, timeout=10)
    raise AssertionError(f"fprobe did not open {interface}: {log.read_text(errors='replace')}")


def _flush_fprobe(proc: subprocess.Popen[bytes], log: Path) -> None:
    """SIGTERM makes fprobe emit its whole flow cache before it exits."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert b"Emitting flows cache" in log.read_bytes(), log.read_text(errors="replace")
