"""nfcapd files holding the benchmark's flows, made by a real nfcapd from NetFlow v9.

The flows are encoded as NetFlow v9 datagrams (vectorised: one structured numpy
array per template) and sent over loopback to ``nfcapd`` on 127.0.0.1, paced by
watching the collector's socket receive queue in ``/proc/net/udp`` so the kernel
never drops a datagram. nfcapd is stopped with SIGTERM, which flushes and closes
its file; the flow count and totals are then checked with ``nfdump``.

Time in v9 is relative: a record's FIRST_SWITCHED/LAST_SWITCHED are milliseconds
of the exporter's sysUptime, and the header carries sysUptime and unix_secs. We
pick a boot time on a whole second, so ``boot_ms + FIRST_SWITCHED`` is exactly the
flow's millisecond timestamp; a 32-bit uptime covers 49 days, enough for 30.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
from datagen import Flows

V4_TEMPLATE, V6_TEMPLATE = 256, 257
# (element id, length): NetFlow v9 field types (RFC 3954)
# ICMP_TYPE (32) carries type*256+code: nfdump ignores L4_DST_PORT for ICMP flows
_COMMON = ((7, 2), (11, 2), (4, 1), (6, 1), (2, 8), (1, 8), (22, 4), (21, 4), (32, 2))
V4_FIELDS = ((8, 4), (12, 4), *_COMMON)  # IPV4_SRC_ADDR, IPV4_DST_ADDR, ...
V6_FIELDS = ((27, 16), (28, 16), *_COMMON)  # IPV6_SRC_ADDR, IPV6_DST_ADDR, ...
_TAIL = [
    ("sp", ">u2"),
    ("dp", ">u2"),
    ("pr", "u1"),
    ("fl", "u1"),
    ("pk", ">u8"),
    ("by", ">u8"),
    ("first", ">u4"),
    ("last", ">u4"),
    ("icmp", ">u2"),
]
V4_DTYPE = np.dtype([("sa", ">u4"), ("da", ">u4"), *_TAIL])
V6_DTYPE = np.dtype([("sa", "u1", (16,)), ("da", "u1", (16,)), *_TAIL])
MAX_DATAGRAM = 60_000  # below nfcapd's 65535-byte receive buffer
QUEUE_LIMIT = 1 << 21  # bytes waiting in nfcapd's socket before the sender pauses
SOCKET_BUFFER = 1 << 22


def _template_flowset() -> bytes:
    body = b""
    for tid, fields in ((V4_TEMPLATE, V4_FIELDS), (V6_TEMPLATE, V6_FIELDS)):
        body += struct.pack("!HH", tid, len(fields))
        body += b"".join(struct.pack("!HH", t, n) for t, n in fields)
    return struct.pack("!HH", 0, 4 + len(body)) + body


def _records(flows: Flows, rows: npt.NDArray[np.int64], v6: bool, boot_ms: int) -> bytes:
    rec = np.zeros(len(rows), dtype=V6_DTYPE if v6 else V4_DTYPE)
    src, dst = flows.pool[flows.src_idx[rows]], flows.pool[flows.dst_idx[rows]]
    if v6:
        rec["sa"], rec["da"] = src, dst
    else:
        rec["sa"] = np.ascontiguousarray(src[:, 12:16]).view(">u4").ravel()
        rec["da"] = np.ascontiguousarray(dst[:, 12:16]).view(">u4").ravel()
    rec["sp"], rec["dp"] = flows.src_port[rows], flows.dst_port[rows]
    rec["pr"], rec["fl"] = flows.proto[rows], flows.tcp_flags[rows]
    rec["pk"], rec["by"] = flows.packets[rows], flows.bytes[rows]
    rec["first"] = flows.ts_start_ms[rows] - boot_ms
    rec["last"] = flows.ts_end_ms[rows] - boot_ms
    proto = flows.proto[rows]
    rec["icmp"] = np.where((proto == 1) | (proto == 58), flows.dst_port[rows], 0)
    return rec.tobytes()


def datagrams(flows: Flows, source_id: int = 1) -> Iterator[bytes]:
    """The flows as NetFlow v9 export packets, each with both templates first."""
    if len(flows) == 0:
        return
    boot_ms = (int(flows.ts_start_ms.min()) // 1000 - 60) * 1000
    unix_secs = int(flows.ts_end_ms.max()) // 1000 + 60
    uptime = unix_secs * 1000 - boot_ms
    if uptime >= 1 << 32:
        raise ValueError("flows span more than a 32-bit sysUptime (49.7 days)")
    templates = _template_flowset()
    seq = 0
    v6_mask = flows.is_v6()
    for v6 in (False, True):
        rows_all = np.flatnonzero(v6_mask == v6)
        size = (V6_DTYPE if v6 else V4_DTYPE).itemsize
        per = (MAX_DATAGRAM - 20 - len(templates) - 8) // size
        tid = V6_TEMPLATE if v6 else V4_TEMPLATE
        step = per * 64  # encode in slabs: vectorised, bounded memory
        for lo in range(0, len(rows_all), step):
            slab = _records(flows, rows_all[lo : lo + step], v6, boot_ms)
            for off in range(0, len(slab), per * size):
                body = slab[off : off + per * size]
                k = len(body) // size
                pad = (-len(body)) % 4
                header = struct.pack("!HHIIII", 9, k + 2, uptime, unix_secs, seq, source_id)
                seq += 1
                data = struct.pack("!HH", tid, 4 + len(body) + pad) + body + bytes(pad)
                yield header + templates + data


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _socket_state(port: int) -> tuple[int, int] | None:
    """(receive queue bytes, drops) of the UDP socket bound to 127.0.0.1:port."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/udp") as fh:
        for line in fh:
            parts = line.split()
            if len(parts) > 12 and parts[1] == local:
                return int(parts[4].split(":")[1], 16), int(parts[-1])
    return None


@dataclass(frozen=True)
class Collected:
    directory: Path
    flows: int
    datagrams: int
    seconds: float
    drops: int


def collect(flows: Flows, directory: Path, *, timeout: float = 900.0) -> Collected:
    """Run nfcapd on loopback, send it every flow, stop it, return what it stored."""
    nfcapd = shutil.which("nfcapd")
    if nfcapd is None:
        raise FileNotFoundError("nfcapd not installed (apt-get install nfdump)")
    directory.mkdir(parents=True, exist_ok=True)
    port = _free_udp_port()
    log = open(directory.parent / f"{directory.name}.nfcapd.log", "wb")  # noqa: SIM115
    # -y: LZ4 blocks, the usual choice for a collector that is also queried
    proc = subprocess.Popen(
        [
            nfcapd,
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "-w",
            str(directory),
            "-t",
            "3600",
            "-y",
            "-B",
            str(SOCKET_BUFFER),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TZ": "UTC"},
    )
    start = time.monotonic()
    deadline = start + timeout
    sent = 0
    try:
        while _socket_state(port) is None:
            if proc.poll() is not None or time.monotonic() > start + 10:
                raise RuntimeError(f"nfcapd did not start (see {log.name})")
            time.sleep(0.02)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for dgram in datagrams(flows):
                # pace on the collector's receive queue: never let the kernel drop
                while (state := _socket_state(port)) is not None and state[0] > QUEUE_LIMIT:
                    if time.monotonic() > deadline:
                        raise TimeoutError("nfcapd stopped draining its socket")
                    time.sleep(0.0005)
                sock.sendto(dgram, ("127.0.0.1", port))
                sent += 1
        while (state := _socket_state(port)) is not None and state[0] > 0:
            if time.monotonic() > deadline:
                raise TimeoutError("nfcapd stopped draining its socket")
            time.sleep(0.01)
        drops = state[1] if state else -1
        time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    seconds = time.monotonic() - start
    stored = summary(directory)[0]
    return Collected(directory, stored, sent, seconds, drops)


def nfdump(*args: str, timeout: float = 900.0) -> str:
    """Run nfdump (UTC, so printed times are the flows' own) and return its stdout."""
    exe = shutil.which("nfdump")
    if exe is None:
        raise FileNotFoundError("nfdump not installed (apt-get install nfdump)")
    done = subprocess.run(
        [exe, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "TZ": "UTC"},
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"nfdump {' '.join(args)} failed: {done.stderr.strip()[:300]}")
    return done.stdout


Record = tuple[int, int, str, str, int, int, int, int, int, int]
_FLAG_BITS = {ch: 0x80 >> i for i, ch in enumerate("CEUAPRSF")}


def records(directory: Path) -> list[Record]:
    """Every stored flow, sorted: (first_ms, last_ms, src, dst, sport, dport, proto,
    flags, packets, bytes), read through ``nfdump -o json`` (it keeps milliseconds)."""
    text = nfdump("-R", str(directory), "-q", "-o", "json").strip()
    rows = (
        json.loads("[" + text.rstrip(",") + "]")
        if text and text[0] != "["
        else json.loads(text or "[]")
    )
    out: list[Record] = []
    for r in rows:
        flags = sum(_FLAG_BITS[c] for c in r.get("tcp_flags", "") if c in _FLAG_BITS)
        out.append(
            (
                _ms(r["first"]),
                _ms(r["last"]),
                r.get("src4_addr") or r["src6_addr"],
                r.get("dst4_addr") or r["dst6_addr"],
                int(r.get("src_port", 0)),
                int(r.get("dst_port", r.get("icmp_type", 0) * 256 + r.get("icmp_code", 0))),
                int(r["proto"]),
                flags,
                int(r["in_packets"]),
                int(r["in_bytes"]),
            )
        )
    return sorted(out)


def _ms(text: str) -> int:
    return int(np.datetime64(text, "ms").astype(np.int64))


_SUMMARY = re.compile(r"total flows: (\d+), total bytes: (\d+), total packets: (\d+)")


def summary(directory: Path, filter_expr: str | None = None) -> tuple[int, int, int]:
    """(flows, bytes, packets) that nfdump finds in a directory, optionally filtered."""
    args = ["-R", str(directory), "-N", "-o", "null"]
    out = nfdump(*args, *([filter_expr] if filter_expr else []))
    m = _SUMMARY.search(out)
    if m is None:
        raise RuntimeError(f"no summary in nfdump output: {out[-300:]!r}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3))
