"""``rogueflow collect``: UDP receive loop, batch decoding, rotation into the store.

One thread receives and decodes: each readable socket is drained by a tight loop of
non-blocking ``recv_into`` calls into one preallocated buffer (Python has no
``recvmmsg``), then the datagrams are fed to the decoder, which queues data sets per
template; every ``DECODE_RECORDS`` records (or 0.25 s) the queue is decoded in one
batch into an Arrow table. A rotation (``--rotate-seconds``/``--rotate-flows``) hands
its tables to a writer thread, which writes the spool file and ingests it as one
committed source (enriched like any ingest). While it works the receive loop goes
on; the socket buffers are raised (``SO_RCVBUFFORCE`` when allowed) to absorb the
GIL's pauses. SIGTERM/SIGINT drain the sockets and commit everything received;
SIGUSR1 prints the counters.
"""

from __future__ import annotations

import os
import queue
import selectors
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

from rogueflow.collect.decoder import Decoder
from rogueflow.collect.spool import leftovers, spool_dir, write_spool
from rogueflow.collect.stats import Stats
from rogueflow.errors import ConfigError, RogueflowError
from rogueflow.workspace import Workspace

DECODE_RECORDS = 65_536
DECODE_SECONDS = 0.25
RECV_SLOT = 65_536
RECV_BUFFER = 16 << 20  # up to 256 datagrams received before they are decoded
DEFAULT_RCVBUF = 64 << 20

Address = tuple[str, int]


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
        force = getattr(socket, "SO_RCVBUFFORCE", None)
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
        self._stop = threading.Event()
        self._report = threading.Event()
        self._names: dict[str, str] = {}
        self._queue: queue.Queue[tuple[list[pa.Table], str] | Path | None] = queue.Queue(2)
        self._writer = threading.Thread(target=self._write_loop, name="rogueflow-rotate")
        self.errors: list[str] = []
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
        self._writer.start()
        for path in [] if self.options.discard else leftovers(spool_dir(self.ws.root)):
            self._queue.put(path)  # rotations a killed collector wrote but did not commit
        try:
            self._loop()
        finally:
            for sig, old in handlers.items():
                signal.signal(sig, old)
            self._queue.put(None)
            self._writer.join()
            final = self.report()
            for s in self.sockets:
                s.close()
            self.say(final)
        return self.stats

    def _loop(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.sockets:
            sel.register(s, selectors.EVENT_READ)
        buf = bytearray(RECV_BUFFER)
        view = memoryview(buf)
        dec = self.decoder
        rotation = _Rotation()
        start = last_decode = last_expire = time.monotonic()
        next_health = start + self.options.stats_interval if self.options.stats_interval else None
        try:
            while True:
                stopping = self._stop.is_set()
                ready = [k.fileobj for k, _ in sel.select(0 if stopping else 0.1)]
                got = 0
                for sock in ready:
                    got += self._drain(sock, view)  # type: ignore[arg-type]
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
                if stopping and not got:
                    break  # every datagram the kernel held has been read
        finally:
            sel.close()
            table = dec.finish()
            if table is not None:
                rotation.tables.append(table)
                rotation.rows += table.num_rows
            if rotation.rows:
                self._rotate(rotation)

    def _drain(self, sock: socket.socket, view: memoryview) -> int:
        """Read every queued datagram (up to the buffer), then decode them."""
        got: list[tuple[int, int, str]] = []
        off = 0
        names = self._names
        while off + RECV_SLOT <= len(view):
            try:
                n, peer = sock.recvfrom_into(view[off : off + RECV_SLOT])
            except BlockingIOError:
                break
            except OSError:
                continue  # e.g. ICMP errors surfacing on the socket: not ours to fail on
            name = names.get(peer[0])
            if name is None:
                name = names[peer[0]] = _exporter_name(peer[0])
            got.append((off, n, name))
            off += n
        now = time.time()
        feed = self.decoder.feed
        for a, n, name in got:
            feed(view[a : a + n], name, now)
        return len(got)

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
            self._queue.put((rotation.tables, note))
        return _Rotation()

    # --- the writer thread ---------------------------------------------------------

    def _write_loop(self) -> None:
        from rogueflow.detect.behaviour import Behaviour
        from rogueflow.enrich.intel import Enricher
        from rogueflow.ingest.pipeline import ingest_file
        from rogueflow.store.flowstore import FlowStore

        store = FlowStore(self.ws)
        enricher = Enricher(self.ws)
        behaviour = Behaviour()  # one per run: sessions cut by rotation are judged whole
        spool = spool_dir(self.ws.root)
        try:
            while (item := self._queue.get()) is not None:
                path: Path | None = None
                try:
                    path = item if isinstance(item, Path) else write_spool(spool, *item)
                    result = ingest_file(
                        store, path, fmt="collect", enricher=enricher, behaviour=behaviour
                    )
                    path.unlink(missing_ok=True)
                    self.stats.rotations += 1
                    self.stats.stored_flows += result.rows
                except (RogueflowError, OSError, pa.ArrowException) as exc:
                    kept = f"; kept {path} for the next run" if path is not None else ""
                    self.errors.append(f"rotation not committed: {exc}{kept}")
                    self.say(f"error: rotation not committed: {exc}{kept}")
        finally:
            store.close()


def _exporter_name(host: str) -> str:
    return host[7:] if host.startswith("::ffff:") and "." in host else host
