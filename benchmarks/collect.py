"""Live collection benchmark: IPFIX over loopback at stepped rates, next to nfcapd.

    .venv/bin/python benchmarks/collect.py [--seconds S] [--rates R,R,...] [--discard]
                                           [--rcvbuf MIB]

A bundled load generator sends IPFIX datagrams (one template, 30 flows of 46 bytes
per datagram, sequence numbers correct) over 127.0.0.1 at each offered rate for S
seconds, first to ``rogueflow collect`` (storing, unless --discard), then to nfcapd
1.7. Both get the same socket receive buffer: nfcapd's ``-B`` can only ask for
``SO_RCVBUF``, which the kernel caps at ``net.core.rmem_max``, so rogueflow (which
would force its 64 MiB with CAP_NET_ADMIN) is given that cap too; raise rmem_max to
measure both with more. A step is lossless when every flow sent is counted by the
collector (rogueflow: decoded and, when storing, committed to the store; nfcapd: in
its file, read back with ``nfdump -I``). Printed per step: the rate the generator
achieved (it is Python too, and shares the CPUs), flows received, loss, and flows
per CPU-second of the collector process (user+system, from wait4, its start-up
included); a first idle run of each collector gives the start-up CPU, and the
``marginal`` rate leaves it out.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TEMPLATE_ID = 300
FIELDS = ((8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (2, 8), (1, 8), (152, 8), (153, 8))
RECORD = np.dtype(
    [
        ("sa", ">u4"),
        ("da", ">u4"),
        ("sp", ">u2"),
        ("dp", ">u2"),
        ("pr", "u1"),
        ("fl", "u1"),
        ("pk", ">u8"),
        ("by", ">u8"),
        ("t0", ">u8"),
        ("t1", ">u8"),
    ]
)
PER_DATAGRAM = 30
RCVBUF = 64 << 20


def effective_rcvbuf(wanted: int) -> int:
    """What nfcapd's -B gets: SO_RCVBUF is capped at net.core.rmem_max."""
    try:
        cap = int(Path("/proc/sys/net/core/rmem_max").read_text())
    except (OSError, ValueError):
        return wanted
    return min(wanted, cap)


def template_message(seq: int) -> bytes:
    body = struct.pack("!HH", TEMPLATE_ID, len(FIELDS)) + b"".join(
        struct.pack("!HH", e, n) for e, n in FIELDS
    )
    tset = struct.pack("!HH", 2, 4 + len(body)) + body
    return struct.pack("!HHIII", 10, 16 + len(tset), int(time.time()), seq, 1) + tset


def data_messages(n: int, rng: np.random.Generator) -> list[bytearray]:
    """n distinct datagrams of PER_DATAGRAM flows; the sequence is patched when sent."""
    now_ms = int(time.time() * 1000)
    out = []
    for _ in range(n):
        rec = np.zeros(PER_DATAGRAM, dtype=RECORD)
        rec["sa"] = rng.integers(0x0A000000, 0x0AFFFFFF, PER_DATAGRAM)
        rec["da"] = rng.integers(0xC0000000, 0xDFFFFFFF, PER_DATAGRAM)
        rec["sp"], rec["dp"] = rng.integers(1024, 65535, PER_DATAGRAM), 443
        rec["pr"], rec["fl"] = 6, 0x1B
        rec["pk"] = rng.integers(1, 100, PER_DATAGRAM)
        rec["by"] = rec["pk"] * 500
        rec["t0"] = now_ms - rng.integers(1000, 60000, PER_DATAGRAM)
        rec["t1"] = now_ms
        dset = struct.pack("!HH", TEMPLATE_ID, 4 + rec.nbytes) + rec.tobytes()
        out.append(
            bytearray(struct.pack("!HHIII", 10, 16 + len(dset), now_ms // 1000, 0, 1) + dset)
        )
    return out


def send(port: int, rate: float, seconds: float, pool: list[bytearray]) -> tuple[int, float]:
    """Send at ``rate`` flows/s for ``seconds``; the flows sent and the seconds it took."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dest = ("127.0.0.1", port)
    s.sendto(template_message(0), dest)
    time.sleep(0.2)
    per_s = rate / PER_DATAGRAM
    total = int(per_s * seconds)
    seq = 0
    start = time.perf_counter()
    k = len(pool)
    for i in range(total):
        if i % 64 == 0:
            ahead = i / per_s - (time.perf_counter() - start)
            if ahead > 0:
                time.sleep(ahead)
        msg = pool[i % k]
        struct.pack_into("!I", msg, 8, seq)
        seq += PER_DATAGRAM
        s.sendto(msg, dest)
    took = time.perf_counter() - start
    for _ in range(3):  # templates again, as exporters resend them
        s.sendto(template_message(seq), dest)
    s.close()
    return total * PER_DATAGRAM, took


def cpu_of(proc: subprocess.Popen[bytes], timeout: float = 120) -> float:
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return float(usage.ru_utime + usage.ru_stime)
        if time.monotonic() > deadline:
            proc.kill()
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


Step = tuple[int, float, int, float]  # flows sent, seconds sending, flows counted, CPU-s


def run_rogueflow(
    rate: float, seconds: float, pool: list[bytearray], discard: bool, tmp: Path, rcvbuf: int
) -> Step:
    port = free_port()
    ws = tmp / f"ws-{int(rate)}"
    cmd = [
        sys.executable,
        "-m",
        "rogueflow.cli.main",
        "-w",
        str(ws),
        "collect",
        "--listen",
        f"127.0.0.1:{port}",
        "--rcvbuf",
        str(rcvbuf),
    ]
    cmd += ["--discard"] if discard else []
    log = tmp / f"rf-{int(rate)}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        while b"listening on" not in log.read_bytes():
            time.sleep(0.05)
        sent, took = send(port, rate, seconds, pool) if rate else (0, seconds)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        cpu = cpu_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    m = re.search(r"decoded ([\d,]+) flows, stored ([\d,]+)", text)
    got = int(m.group(2 if not discard else 1).replace(",", "")) if m else 0
    return sent, took, got, cpu


def run_nfcapd(rate: float, seconds: float, pool: list[bytearray], tmp: Path, rcvbuf: int) -> Step:
    port = free_port()
    out = tmp / f"nf-{int(rate)}"
    out.mkdir()
    proc = subprocess.Popen(
        ["nfcapd", "-w", str(out), "-b", "127.0.0.1", "-p", str(port), "-B", str(rcvbuf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        sent, took = send(port, rate, seconds, pool) if rate else (0, seconds)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        cpu = cpu_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    if not rate:
        return 0, took, 0, cpu
    info = subprocess.run(
        ["nfdump", "-R", str(out), "-I"], capture_output=True, text=True, timeout=120
    ).stdout
    m = re.search(r"^Flows:\s+(\d+)", info, re.M)
    return sent, took, int(m.group(1)) if m else 0, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rates", default="250000,500000,1000000,1500000,2000000")
    ap.add_argument("--discard", action="store_true", help="rogueflow decodes but stores nothing")
    ap.add_argument("--rcvbuf", type=int, default=RCVBUF >> 20, help="MiB (capped by rmem_max)")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    rcvbuf = effective_rcvbuf(args.rcvbuf << 20)
    pool = data_messages(2000, np.random.default_rng(7))
    have_nfcapd = shutil.which("nfcapd") is not None
    load = os.getloadavg()[0]
    print(
        f"# collect benchmark: IPFIX {PER_DATAGRAM} flows/datagram over loopback, "
        f"{args.seconds:g} s per step, SO_RCVBUF {rcvbuf / 2**20:g} MiB for both, "
        f"{os.cpu_count()} CPUs, load average {load:.1f}, "
        f"rogueflow {'discarding' if args.discard else 'storing'}"
    )
    best = {"rogueflow": 0.0, "nfcapd": 0.0}
    with tempfile.TemporaryDirectory(prefix="rf-bench-collect-") as d:
        tmp = Path(d)
        idle = {"rogueflow": run_rogueflow(0, args.seconds, pool, args.discard, tmp, rcvbuf)[3]}
        if have_nfcapd:
            idle["nfcapd"] = run_nfcapd(0, args.seconds, pool, tmp, rcvbuf)[3]
        print(
            "# idle run (start-up, no traffic), CPU-s: "
            + ", ".join(f"{k} {v:.2f}" for k, v in idle.items())
        )
        print(
            f"{'offered flows/s':>16} {'achieved':>10} | {'rogueflow recv':>14} {'loss':>7} "
            f"{'flows/CPU-s':>12} {'marginal':>10} | {'nfcapd recv':>12} {'loss':>7} "
            f"{'flows/CPU-s':>12} {'marginal':>10}"
        )
        for rate in rates:
            sent, took, got, cpu = run_rogueflow(
                rate, args.seconds, pool, args.discard, tmp, rcvbuf
            )
            best["rogueflow"] = rate if got == sent else best["rogueflow"]
            line = f"{rate:>16,.0f} {sent / took:>10,.0f} | " + _cells(
                sent, got, cpu, idle["rogueflow"]
            )
            if have_nfcapd:
                sent, took, got, cpu = run_nfcapd(rate, args.seconds, pool, tmp, rcvbuf)
                best["nfcapd"] = rate if got == sent else best["nfcapd"]
                line += " | " + _cells(sent, got, cpu, idle["nfcapd"])
            print(line, flush=True)
    ratio = best["rogueflow"] / best["nfcapd"] if best["nfcapd"] else float("nan")
    print(
        f"lossless: rogueflow {best['rogueflow']:,.0f} flows/s, nfcapd {best['nfcapd']:,.0f} "
        f"flows/s, ratio {ratio:.2f} (target: >= 1,000,000 flows/s and >= 0.33)"
    )


def _cells(sent: int, got: int, cpu: float, idle: float) -> str:
    marginal = got / (cpu - idle) if cpu > idle else float("inf")
    return f"{got:>14,} {1 - got / sent:>7.2%} {got / max(cpu, 1e-9):>12,.0f} {marginal:>10,.0f}"


if __name__ == "__main__":
    main()
