"""``rogueflow collect``: UDP receive loop, batch decoding, rotation into the store.

The receive thread (:class:`rogueflow.collect.recv.Intake`) drains the sockets with
``recvmmsg`` (through ctypes on Linux), up to 1024 datagrams per call, into bursts
waiting in a bounded in-memory queue; it holds the GIL only briefly, so the kernel's
socket buffer is emptied while the rest works. The calling thread decodes each burst
at once with numpy (:mod:`rogueflow.collect.burst`) and, every ``DECODE_RECORDS``
records (or 0.25 s), the queued records in one batch into an Arrow table. A rotation
(``--rotate-seconds``/``--rotate-flows``) goes to a writer thread, which writes the
spool file and has a child process (:mod:`rogueflow.collect.commit`) ingest it as one
committed source, enriched like any ingest: enrichment runs long stretches of Python,
and in this process it would hold the GIL the receive path needs. The socket buffers
are raised (``SO_RCVBUFFORCE`` when allowed). SIGTERM/SIGINT drain the sockets and
commit everything received; SIGUSR1 prints the counters.
"""

from __future__ import annotations

import os
import queue
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import pyarrow as pa

from rogueflow.collect.commit import Committer, describe
from rogueflow.collect.decoder import Decoder
from rogueflow.collect.recv import Intake
from rogueflow.collect.spool import leftovers, spool_dir, write_spool
from rogueflow.collect.stats import Stats
from rogueflow.errors import ConfigError, RogueflowError
from rogueflow.workspace import Workspace

DECODE_RECORDS = 65_536
DECODE_SECONDS = 0.25
DEFAULT_RCVBUF = 64 << 20
#: received bytes waiting for the decoder, at most (beyond: the kernel buffers, then drops)
BACKLOG_BYTES = 256 << 20

Address = tuple[str, int]

# Python's socket module does not name it; 33 on every Linux architecture
_SO_RCVBUFFORCE = 33 if sys.platform.startswith("linux") else None


def parse_listen(text: str) -> Address:
    """``HOST:PORT``, ``[v6]:PORT`` or ``:PORT`` (all IPv4 addresses)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen {text!r}: expected HOST:PORT, e.g. 0.0.0.0:2055 or [::]:2055")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@dataclass(frozen=True)
class CollectOptions:
    listen: tuple[Address, ...]
    stats_interval: float = 0.0
    rotate_seconds: float = 60.0
    rotate_flows: int = 1_000_000
    rcvbuf: int = DEFAULT_RCVBUF
    hold_seconds: float = 30.0
    template_timeout: float = 1800.0
    sampling_rate: int | None = None
    #: decode and count only, store nothing (exporter checks, benchmarks, fuzzing)
    discard: bool = False


@dataclass
class _Rotation:
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    started: float = field(default_factory=time.monotonic)


def open_socket(host: str, port: int, rcvbuf: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--listen {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        force = getattr(socket, "SO_RCVBUFFORCE", _SO_RCVBUFFORCE)
        try:
            if force is None:
                raise PermissionError
            sock.setsockopt(socket.SOL_SOCKET, force, rcvbuf)  # beyond rmem_max (root)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind(sockaddr)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"--listen {host}:{port}: cannot bind ({exc.strerror})") from None
    return sock


def rcvbuf_of(sock: socket.socket) -> int:
    """The socket's receive buffer as the kernel accounts it (Linux doubles what is set)."""
    size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    return int(size // 2 if sys.platform.startswith("linux") else size)


def kernel_drops(sock: socket.socket) -> int:
    """Datagrams the kernel dropped on this socket (full buffer), from /proc/net/udp*."""
    inode = str(os.fstat(sock.fileno()).st_ino)
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(name) as fh:
                for line in fh:
                    cols = line.split()
                    if len(cols) > 12 and cols[9] == inode:
                        return int(cols[-1])
        except OSError:
            continue
    return 0


class Collector:
    def __init__(
        self, ws: Workspace, options: CollectOptions, say: Callable[[str], None] | None = None
    ) -> None:
        self.ws = ws
        self.options = options
        self.say = say or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.decoder = Decoder(
            template_timeout=options.template_timeout,
            hold_seconds=options.hold_seconds,
            default_rate=options.sampling_rate,
        )
        self.stats: Stats = self.decoder.stats
        self.sockets = [open_socket(h, p, options.rcvbuf) for h, p in options.listen]
        self.addresses = [s.getsockname()[:2] for s in self.sockets]
        self.intake = Intake(self.sockets, BACKLOG_BYTES)
        for s, (host, port) in zip(self.sockets, self.addresses, strict=True):
            have = rcvbuf_of(s)
            if have < options.rcvbuf:
                self.say(
                    f"warning: {host}:{port}: socket receive buffer {have >> 10:,} KiB, not the "
                    f"{options.rcvbuf >> 10:,} KiB asked (capped by net.core.rmem_max; "
                    "SO_RCVBUFFORCE needs CAP_NET_ADMIN): bursts may be dropped by the kernel"
                )
        self._stop = threading.Event()
        self._report = threading.Event()
        self._queue: queue.Queue[tuple[list[pa.Table], str] | Path | None] = queue.Queue(2)
        self._writer = threading.Thread(target=self._write_loop, name="rogueflow-rotate")
        self.errors: list[str] = []
        self.committer: Committer | None = None  # the commit process, once started
        self.kernel_dropped = 0

    # --- control -------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def report(self) -> str:
        drops = sum(kernel_drops(s) for s in self.sockets) if self.sockets else 0
        self.kernel_dropped = max(self.kernel_dropped, drops)
        return self.stats.report() + f"\nkernel socket drops: {self.kernel_dropped:,}"

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGUSR1:
            self._report.set()
        else:
            self._stop.set()

    # --- the loop --------------------------------------------------------------

    def run(self) -> Stats:
        """Receive until stop() or SIGTERM/SIGINT; commit everything; the counters."""
        handlers = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
                handlers[sig] = signal.signal(sig, self._on_signal)
        if not self.options.discard:  # else no writer thread, no commit process
            self._writer.start()
            for path in leftovers(spool_dir(self.ws.root)):
                self._hand_over(path)  # rotations a killed collector wrote but did not commit
        try:
            self._loop()
        finally:
            for sig, old in handlers.items():
                signal.signal(sig, old)
            if self._writer.is_alive():
                self._hand_over(None)
                self._writer.join()
            final = self.report()
            self.intake.close()
            for s in self.sockets:
                s.close()
            self.say(final)
        return self.stats

    def _loop(self) -> None:
        dec = self.decoder
        intake = self.intake
        rotation = _Rotation()
        start = last_decode = last_expire = time.monotonic()
        next_health = start + self.options.stats_interval if self.options.stats_interval else None
        intake.start()
        try:
            while True:
                if self._stop.is_set():
                    intake.stop()  # it reads what the kernel holds, then ends the queue
                try:
                    item = intake.queue.get(timeout=0.1)
                except queue.Empty:
                    pass
                else:
                    if item is None:
                        if intake.error is not None:
                            raise intake.error
                        break
                    burst, now = item
                    dec.feed_burst(burst, now)
                    intake.done(burst)
                mono = time.monotonic()
                if dec.pending_records >= DECODE_RECORDS or mono - last_decode > DECODE_SECONDS:
                    self._decode(rotation)
                    last_decode = mono
                if mono - last_expire > 1.0:
                    dec.expire(time.time())
                    last_expire = mono
                if rotation.rows and (
                    rotation.rows >= self.options.rotate_flows
                    or mono - rotation.started >= self.options.rotate_seconds
                ):
                    rotation = self._rotate(rotation)
                if self._report.is_set():
                    self._report.clear()
                    self.say(self.report())
                if next_health is not None and mono >= next_health:
                    self.say(self.stats.health_line(mono - start))
                    next_health = mono + self.options.stats_interval
        finally:
            intake.stop()
            table = dec.finish()
            if table is not None:
                rotation.tables.append(table)
                rotation.rows += table.num_rows
            if rotation.rows:
                self._rotate(rotation)

    def _decode(self, rotation: _Rotation) -> None:
        table = self.decoder.flush()
        if table is not None:
            rotation.tables.append(table)
            rotation.rows += table.num_rows

    def _rotate(self, rotation: _Rotation) -> _Rotation:
        self._decode(rotation)
        if rotation.rows and self.options.discard:
            self.stats.rotations += 1
        elif rotation.rows:
            listen = ",".join(f"{h}:{p}" for h, p in self.addresses)
            note = f"collect {listen} pid {os.getpid()} at {time.time():.6f}"
            self._hand_over((rotation.tables, note))
        return _Rotation()

    # --- the writer thread ---------------------------------------------------------

    def _hand_over(self, item: tuple[list[pa.Table], str] | Path | None) -> None:
        """Queue work for the writer; never wait forever on a writer that has died."""
        while True:
            try:
                self._queue.put(item, timeout=1.0)
                return
            except queue.Full:
                if not self._writer.is_alive():
                    if item is not None:
                        self.errors.append("rotation not committed: the writer thread ended")
                    return

    def _write_loop(self) -> None:
        spool = spool_dir(self.ws.root)
        committer: Committer | None = None
        try:
            committer = self.committer = Committer(self.ws.root)
        except OSError as exc:  # the rotations are still written, for the next run
            self._failed(f"commit process not started: {exc}")
        try:
            while (item := self._queue.get()) is not None:
                path: Path | None = None
                try:
                    path = item if isinstance(item, Path) else write_spool(spool, *item)
                    if committer is None:
                        raise RogueflowError("no commit process")
                    rows = committer.commit(path)
                    self.stats.rotations += 1
                    self.stats.stored_flows += rows
                except Exception as exc:  # one bad rotation must not end the writer
                    kept = f"; kept {path} for the next run" if path is not None else ""
                    self._failed(f"rotation not committed: {describe(exc)}{kept}")
        finally:
            if committer is not None:
                committer.close()

    def _failed(self, message: str) -> None:
        self.errors.append(message)
        self.say(f"error: {message}")
