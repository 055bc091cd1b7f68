"""Live collection benchmark: IPFIX over loopback at stepped rates, next to nfcapd.

    .venv/bin/python benchmarks/collect.py [--seconds S] [--rates R,R,...] [--discard]

A bundled load generator sends IPFIX datagrams (one template, 30 flows of 46 bytes
per datagram, sequence numbers correct) over 127.0.0.1 at each offered rate for S
seconds, first to ``rogueflow collect`` (storing, unless --discard), then to nfcapd
1.7 with the same socket buffer. A step is lossless when every flow sent is counted
by the collector (rogueflow: decoded and, when storing, committed to the store;
nfcapd: in its file, read back with ``nfdump -I``). Printed per step: flows received,
loss, and flows per CPU-second of the collector process (user+system, from wait4).
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


def send(port: int, rate: float, seconds: float, pool: list[bytearray]) -> int:
    """Send at ``rate`` flows/s for ``seconds``; the number of flows sent."""
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
    for _ in range(3):  # templates again, as exporters resend them
        s.sendto(template_message(seq), dest)
    s.close()
    return total * PER_DATAGRAM


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


def run_rogueflow(
    rate: float, seconds: float, pool: list[bytearray], discard: bool, tmp: Path
) -> tuple[int, int, float]:
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
        str(RCVBUF),
    ]
    cmd += ["--discard"] if discard else []
    log = tmp / f"rf-{int(rate)}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
    try:
        while b"listening on" not in log.read_bytes():
            time.sleep(0.05)
        sent = send(port, rate, seconds, pool)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        cpu = cpu_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    m = re.search(r"decoded ([\d,]+) flows, stored ([\d,]+)", text)
    got = int(m.group(2 if not discard else 1).replace(",", "")) if m else 0
    return sent, got, cpu


def run_nfcapd(
    rate: float, seconds: float, pool: list[bytearray], tmp: Path
) -> tuple[int, int, float]:
    port = free_port()
    out = tmp / f"nf-{int(rate)}"
    out.mkdir()
    proc = subprocess.Popen(
        ["nfcapd", "-w", str(out), "-b", "127.0.0.1", "-p", str(port), "-B", str(RCVBUF)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        sent = send(port, rate, seconds, pool)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        cpu = cpu_of(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    info = subprocess.run(
        ["nfdump", "-R", str(out), "-I"], capture_output=True, text=True, timeout=120
    ).stdout
    m = re.search(r"^Flows:\s+(\d+)", info, re.M)
    return sent, int(m.group(1)) if m else 0, cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rates", default="250000,500000,1000000,1500000,2000000")
    ap.add_argument("--discard", action="store_true", help="rogueflow decodes but stores nothing")
    args = ap.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    pool = data_messages(2000, np.random.default_rng(7))
    have_nfcapd = shutil.which("nfcapd") is not None
    print(
        f"# collect benchmark: IPFIX {PER_DATAGRAM} flows/datagram over loopback, "
        f"{args.seconds:g} s per step, SO_RCVBUF {RCVBUF >> 20} MiB, {os.cpu_count()} CPUs, "
        f"rogueflow {'discarding' if args.discard else 'storing'}"
    )
    print(
        f"{'offered flows/s':>16} | {'rogueflow recv':>14} {'loss':>7} {'flows/CPU-s':>12} | "
        f"{'nfcapd recv':>12} {'loss':>7} {'flows/CPU-s':>12}"
    )
    best = {"rogueflow": 0.0, "nfcapd": 0.0}
    with tempfile.TemporaryDirectory(prefix="rf-bench-collect-") as d:
        tmp = Path(d)
        for rate in rates:
            line = f"{rate:>16,.0f} |"
            sent, got, cpu = run_rogueflow(rate, args.seconds, pool, args.discard, tmp)
            loss = 1 - got / sent
            best["rogueflow"] = rate if got == sent else best["rogueflow"]
            line += f" {got:>14,} {loss:>7.2%} {got / max(cpu, 1e-9):>12,.0f} |"
            if have_nfcapd:
                sent, got, cpu = run_nfcapd(rate, args.seconds, pool, tmp)
                loss = 1 - got / sent
                best["nfcapd"] = rate if got == sent else best["nfcapd"]
                line += f" {got:>12,} {loss:>7.2%} {got / max(cpu, 1e-9):>12,.0f}"
            print(line, flush=True)
    ratio = best["rogueflow"] / best["nfcapd"] if best["nfcapd"] else float("nan")
    print(
        f"lossless: rogueflow {best['rogueflow']:,.0f} flows/s, nfcapd {best['nfcapd']:,.0f} "
        f"flows/s, ratio {ratio:.2f} (target: >= 1,000,000 flows/s and >= 0.33)"
    )


if __name__ == "__main__":
    main()
