"""Committing rotation files in a child process, away from the receive path's GIL.

Enrichment and the store's writes run long stretches of Python; in a thread of the
collector they hold the GIL for most of a commit, and the threads that receive and
decode wait behind them while the kernel's socket buffer fills. So the collector's
writer thread writes each rotation's spool file and hands its path to a child
process (``python -m rogueflow.collect.commit WORKSPACE FD``), which ingests it as one
committed source and answers with the number of flows stored, or the error.

The child reads paths from its standard input and ends when it closes; it ignores
SIGINT and SIGTERM (a Ctrl-C reaches the whole process group), so a commit under way
finishes and the collector, which handles them, decides when to stop. It runs at a
lower CPU priority (nice +10) than the receive path. A spool file the child did not
commit stays for the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any

from rogueflow.errors import RogueflowError

_OK_EXCEPTIONS = (RogueflowError, OSError)
NICE = 10


def describe(exc: BaseException) -> str:
    """Our own errors speak for themselves; anything else is named (it is a bug)."""
    import pyarrow as pa

    if isinstance(exc, (*_OK_EXCEPTIONS, pa.ArrowException)):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def open_store(root: Path) -> tuple[Any, ...]:
    """The store, enricher and behaviour tracker of one run, and ``ingest_file``."""
    from rogueflow.detect.behaviour import Behaviour
    from rogueflow.enrich.intel import Enricher
    from rogueflow.ingest.pipeline import ingest_file
    from rogueflow.store.flowstore import FlowStore
    from rogueflow.workspace import Workspace

    ws = Workspace(root)
    store = FlowStore(ws)
    try:
        # one Behaviour per run: sessions cut by rotation are judged whole
        return store, Enricher(ws), Behaviour(), ingest_file
    except BaseException:
        store.close()
        raise


class Committer:
    """The parent's end: ``commit(path)`` returns the flows stored or raises."""

    def __init__(self, root: Path) -> None:
        read, write = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rogueflow.collect.commit", str(root), str(write)],
                stdin=subprocess.PIPE,
                pass_fds=(write,),
                start_new_session=True,  # terminal signals are the collector's to handle
            )
        finally:
            os.close(write)
        self._answers: IO[str] = os.fdopen(read, encoding="utf-8")
        assert self.proc.stdin is not None
        self._requests = self.proc.stdin

    def commit(self, path: Path) -> int:
        try:
            self._requests.write(f"{path}\n".encode())
            self._requests.flush()
            line = self._answers.readline()
        except OSError:
            line = ""
        if not line:
            code = self.proc.poll()
            raise RogueflowError(f"the commit process ended (exit status {code})")
        answer = json.loads(line)
        if "error" in answer:
            raise RogueflowError(str(answer["error"]))
        return int(answer["rows"])

    def close(self) -> None:
        with contextlib.suppress(OSError):  # a child that died has closed it
            self._requests.close()
        try:
            self.proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._answers.close()


def serve(root: Path, answers: IO[str], requests: IO[str]) -> None:
    """The child's loop: one line per spool file in, one JSON line per commit out."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # committing may fall behind and catch up (rotations wait in memory, then on disk);
    # receiving may not: when the CPUs are short, the receive path goes first
    with contextlib.suppress(OSError):
        os.nice(NICE)
    opened: tuple[Any, ...] | None = None
    failure = ""
    try:
        opened = open_store(root)
    except Exception as exc:  # every request is answered with it
        failure = f"store not opened: {describe(exc)}"
    try:
        for line in requests:
            path = Path(line.rstrip("\n"))
            if opened is None:
                answer: dict[str, object] = {"error": failure}
            else:
                store, enricher, behaviour, ingest_file = opened
                try:
                    result = ingest_file(
                        store, path, fmt="collect", enricher=enricher, behaviour=behaviour
                    )
                    path.unlink(missing_ok=True)
                    answer = {"rows": result.rows}
                except Exception as exc:  # one bad rotation must not end the process
                    answer = {"error": describe(exc)}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()
    finally:
        if opened is not None:
            opened[0].close()


if __name__ == "__main__":
    with os.fdopen(int(sys.argv[2]), "w", encoding="utf-8") as out:
        serve(Path(sys.argv[1]), out, sys.stdin)
