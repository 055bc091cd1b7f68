"""What the benchmark scripts share: progress lines with elapsed time, and a rogueflow
command run in a process of its own and measured (wall, CPU, peak RSS)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

GIB = 1 << 30


def progress() -> Callable[[str], None]:
    """A log function printing each line after the seconds since it was made."""
    t0 = time.perf_counter()
    return lambda s: print(f"[{time.perf_counter() - t0:7.1f}s] {s}", flush=True)


def usage(m: dict[str, Any]) -> str:
    """CPU time and peak RSS of a :func:`measured` run, for a summary line."""
    return f"CPU {m['cpu_seconds']:7.1f} s  peak RSS {m['peak_rss'] / GIB:5.2f} GiB"


def _hwm(pid: int) -> int:
    """The process's resident high-water mark (bytes) from /proc, 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def measured(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; its wall time, CPU time and peak RSS (bytes), or raise on failure.

    The peak is the child's own VmHWM, sampled every 20 ms until it exits (the mark
    only rises, so the last sample holds it). Not ``ru_maxrss`` from ``wait4``: Python
    starts children with vfork, and Linux carries the parent's peak into the child's
    ``ru_maxrss`` at exec, so a child of a benchmark that had just generated gigabytes of
    flows reported the generator's peak (3.3 GiB) instead of its own.
    """
    t = time.perf_counter()
    peak = 0
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        while True:
            peak = max(peak, _hwm(proc.pid))
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.02)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here: Popen must not wait for it again
    wall = time.perf_counter() - t
    if code:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd[:3])} … exited {code}:\n{tail}")
    return {
        "seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss": peak,
    }
