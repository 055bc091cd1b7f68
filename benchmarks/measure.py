"""Run a rogueflow command in a process of its own and measure it (wall, CPU, peak RSS)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any


def measured(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run ``cmd``; its wall time, CPU time and peak RSS (bytes), or raise on failure."""
    t = time.perf_counter()
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped here: Popen must not wait for it again
    wall = time.perf_counter() - t
    if code:
        tail = log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{' '.join(cmd[:3])} … exited {code}:\n{tail}")
    return {
        "seconds": wall,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_rss": usage.ru_maxrss * 1024,  # Linux reports KiB
    }
