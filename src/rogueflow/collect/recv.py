"""Receiving datagrams in bursts: many datagrams per system call, no Python per datagram.

Python's socket module has no ``recvmmsg``, so a receive costs a system call and a
few Python objects (the bytes count, the peer tuple) per datagram. On Linux this
module calls libc's ``recvmmsg(2)`` through ctypes: one call fills up to ``SLOTS``
fixed-size slots of one buffer with datagrams and their peer addresses, and both
are then read with numpy. Elsewhere (or if libc cannot be loaded) it falls back to
a loop of ``recvfrom_into`` into the same layout, so the decoder sees one format.

A :class:`Burst` is valid until the next receive on the same :class:`Receiver`: the
slots are reused, and whatever the decoder keeps it copies out.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import mmap
import queue
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

#: a slot holds the largest UDP payload, so no datagram is ever truncated
SLOT = 65_536
#: datagrams per receive call; the slots are an anonymous mapping, so only the pages
#: datagrams are written to become resident (about 4 KiB per slot for 1500-byte ones)
SLOTS = 1024

_SOCKADDR = 128  # sizeof(struct sockaddr_storage)


@dataclass
class Burst:
    """Datagram ``i`` is ``buf[i, :lengths[i]]``, sent by ``names[exporters[i]]``."""

    buf: npt.NDArray[np.uint8]  # (slots, SLOT)
    lengths: npt.NDArray[np.int64]
    exporters: npt.NDArray[np.int64]
    names: list[str]

    def __len__(self) -> int:
        return len(self.lengths)

    def datagram(self, i: int) -> bytes:
        return self.buf[i, : int(self.lengths[i])].tobytes()

    @classmethod
    def of(cls, datagrams: list[tuple[bytes, str]]) -> Burst:
        """A burst of given datagrams (tests, replays); at most ``SLOT`` bytes each."""
        buf = np.zeros((max(len(datagrams), 1), SLOT), dtype=np.uint8)
        names: dict[str, int] = {}
        exporters = np.zeros(len(datagrams), dtype=np.int64)
        lengths = np.zeros(len(datagrams), dtype=np.int64)
        for i, (data, name) in enumerate(datagrams):
            buf[i, : len(data)] = np.frombuffer(data, dtype=np.uint8)
            lengths[i] = len(data)
            exporters[i] = names.setdefault(name, len(names))
        return cls(buf, lengths, exporters, list(names))


def exporter_name(host: str) -> str:
    """The exporter's address as text (an IPv4 peer of an IPv6 socket without ``::ffff:``)."""
    return host[7:] if host.startswith("::ffff:") and "." in host else host


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


def _libc_recvmmsg() -> Any | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.recvmmsg
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _libc_recvmmsg()
_MSG_SIZE = ctypes.sizeof(_MMsgHdr)
_LEN_OFFSET = _MMsgHdr.len.offset
_NAMELEN_OFFSET = _MsgHdr.namelen.offset
_FLAGS_OFFSET = _MsgHdr.flags.offset


class Receiver:
    """Bursts of datagrams from one non-blocking UDP socket."""

    def __init__(self, sock: socket.socket, slots: int = SLOTS, *, native: bool = True) -> None:
        self.sock = sock
        self.slots = slots
        # an anonymous mapping: zero pages until written, unlike bytearray(n)
        self._mem = mmap.mmap(-1, slots * SLOT)
        self.buf: npt.NDArray[np.uint8] = np.frombuffer(self._mem, dtype=np.uint8).reshape(
            slots, SLOT
        )
        self._names: dict[bytes, int] = {}
        self._name_list: list[str] = []
        self._cache: dict[str, str] = {}
        #: slots holding datagrams not yet taken, and when the first of them came
        self.filled = 0
        self.since = 0.0  # time.monotonic()
        self.stamp = 0.0  # time.time()
        self.native = native and _RECVMMSG is not None
        if self.native:
            self._setup_native()
        else:
            self._lengths = np.zeros(slots, dtype=np.int64)
            self._exporters = np.zeros(slots, dtype=np.int64)

    def close(self) -> None:
        # numpy views keep the mapping's buffer exported; the mapping is freed with them
        self.__dict__.pop("_msgs", None)

    # --- recvmmsg ------------------------------------------------------------------

    def _setup_native(self) -> None:
        n = self.slots
        base = ctypes.addressof(ctypes.c_char.from_buffer(self._mem))
        self._iov = (_IoVec * n)()
        self._addr = np.zeros((n, _SOCKADDR), dtype=np.uint8)
        addr_base = self._addr.ctypes.data
        self._msgs = (_MMsgHdr * n)()
        for i in range(n):
            self._iov[i].base = base + i * SLOT
            self._iov[i].len = SLOT
            h = self._msgs[i].hdr
            h.name = addr_base + i * _SOCKADDR
            h.namelen = _SOCKADDR
            h.iov = ctypes.addressof(self._iov[i])
            h.iovlen = 1
        size = ctypes.sizeof(_MMsgHdr)
        raw = np.frombuffer(memoryview(self._msgs).cast("B"), dtype=np.uint8).reshape(n, size)
        self._msg_len = raw[:, _LEN_OFFSET : _LEN_OFFSET + 4].view(np.uint32)[:, 0]
        self._namelen = raw[:, _NAMELEN_OFFSET : _NAMELEN_OFFSET + 4].view(np.uint32)[:, 0]
        self._fd = self.sock.fileno()

    def receive(self, *, copy: bool = False) -> Burst | None:
        """The datagrams waiting on the socket (up to ``slots``), or None if none."""
        self.fill()
        return self.take(copy=copy)

    def fill(self) -> int:
        """Receive into the free slots; the number of datagrams that came (0: none waiting)."""
        free = self.slots - self.filled
        if free == 0:
            return 0
        got = self._fill_native(free) if self.native else self._fill_py(free)
        if got and not self.filled:
            self.since, self.stamp = time.monotonic(), time.time()
        self.filled += got
        return got

    def take(self, *, copy: bool = True) -> Burst | None:
        """The datagrams received so far, or None; the slots are free again.

        With ``copy`` the burst owns its bytes (only as wide as its longest datagram) and
        stays valid after the next receive; without, it lives in the slots.
        """
        n, self.filled = self.filled, 0
        if not n:
            return None
        if self.native:
            lengths = self._msg_len[:n].astype(np.int64)
            exporters = self._peers(n)
            self._namelen[:n] = _SOCKADDR  # the kernel shrank them to the address size
        else:
            lengths, exporters = self._lengths[:n].copy(), self._exporters[:n].copy()
        buf = self.buf
        if copy:
            buf = np.array(buf[:n, : max(int(lengths.max()), 1)])
        return Burst(buf, lengths, exporters, self._name_list)

    def _fill_native(self, free: int) -> int:
        assert _RECVMMSG is not None
        first = ctypes.addressof(self._msgs) + self.filled * _MSG_SIZE
        for _ in range(8):
            got = int(_RECVMMSG(self._fd, first, free, 0, None))
            if got > 0:
                return got
            err = ctypes.get_errno()
            if got == 0 or err in (errno.EAGAIN, errno.EWOULDBLOCK):
                return 0
            # EINTR, or an error queued on the socket (ICMP): consumed by the call, retry
        return 0

    def _peers(self, n: int) -> npt.NDArray[np.int64]:
        """Burst-wide exporter indexes from the sockaddrs, with numpy (one exporter: fast)."""
        addr = self._addr[:n]
        family = addr[:, 0:2].copy().view(np.uint16)[:, 0]
        key = np.zeros((n, 16), dtype=np.uint8)
        v4 = family == socket.AF_INET
        key[v4, 10:12] = 0xFF
        key[v4, 12:16] = addr[v4, 4:8]
        key[~v4] = addr[~v4, 8:24]
        if (key == key[0]).all():
            return np.full(n, self._index(key[0].tobytes()), dtype=np.int64)
        uniq, inverse = np.unique(key.view("V16")[:, 0], return_inverse=True)
        idx = np.array([self._index(u.tobytes()) for u in uniq], dtype=np.int64)
        return idx[inverse.reshape(-1)]

    def _index(self, raw: bytes) -> int:
        i = self._names.get(raw)
        if i is None:
            if raw[:12] == b"\x00" * 10 + b"\xff\xff":
                name = socket.inet_ntop(socket.AF_INET, raw[12:])
            else:
                name = socket.inet_ntop(socket.AF_INET6, raw)
            i = self._names[raw] = len(self._name_list)
            self._name_list.append(name)
        return i

    # --- the portable loop -------------------------------------------------------------

    def _fill_py(self, free: int) -> int:
        got = 0
        view = memoryview(self._mem)
        names = self._cache
        while got < free:
            slot = self.filled + got
            try:
                n, peer = self.sock.recvfrom_into(view[slot * SLOT : (slot + 1) * SLOT])
            except BlockingIOError:
                break
            except OSError:
                continue  # e.g. ICMP errors surfacing on the socket: not ours to fail on
            name = names.get(peer[0])
            if name is None:
                name = names[peer[0]] = exporter_name(peer[0])
            raw = name.encode()
            i = self._names.get(raw)
            if i is None:
                i = self._names[raw] = len(self._name_list)
                self._name_list.append(name)
            self._lengths[slot] = n
            self._exporters[slot] = i
            got += 1
        view.release()
        return got


#: a wake-up that brought fewer datagrams than this waits COALESCE_SECONDS for more
COALESCE_BELOW = 64
COALESCE_SECONDS = 0.001
#: a burst is handed to the decoder when its slots are full or its first datagram is
#: this old: a burst's decode has a fixed cost, so bigger ones cost less per datagram
HOLD_SECONDS = 0.05


class Intake:
    """A thread draining the sockets into a bounded queue of bursts for the decoder.

    It spends its time in ``select`` and ``recvmmsg``, without the GIL, so the kernel's
    socket buffer is emptied while the decoder works; what it receives waits in memory
    (up to ``limit`` bytes; beyond that it stops reading and the kernel buffers, then
    drops). When few datagrams come at a wake-up it sleeps a millisecond, so that the
    fixed cost of a receive and of a burst decode is shared by more datagrams.
    """

    def __init__(self, sockets: list[socket.socket], limit: int) -> None:
        self.receivers = [Receiver(s) for s in sockets]
        self.limit = limit
        self.queue: queue.SimpleQueue[tuple[Burst, float] | None] = queue.SimpleQueue()
        self._queued = 0
        self._room = threading.Condition()
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="rogueflow-receive", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Read what the kernel still holds, then end the queue with None."""
        self._stop.set()

    def done(self, burst: Burst) -> None:
        """The decoder is finished with ``burst``: its bytes leave the bound."""
        with self._room:
            self._queued -= burst.buf.nbytes
            self._room.notify()

    def close(self) -> None:
        self._stop.set()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        for r in self.receivers:
            r.close()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        for r in self.receivers:
            sel.register(r.sock, selectors.EVENT_READ, r)
        try:
            while True:
                stopping = self._stop.is_set()
                timeout = 0.0 if stopping else 0.1
                for r in self.receivers:
                    if r.filled:  # wake up in time to hand it over
                        timeout = min(timeout, max(0.0, r.since + HOLD_SECONDS - time.monotonic()))
                got = 0
                for key, _ in sel.select(timeout):
                    got += self._drain(key.data)
                now = time.monotonic()
                for r in self.receivers:
                    if r.filled and (stopping or now - r.since >= HOLD_SECONDS):
                        self._hand_over(r)
                if stopping and not got:
                    break  # every datagram the kernel held has been read
                if 0 < got < COALESCE_BELOW and not stopping:
                    time.sleep(COALESCE_SECONDS)
        except BaseException as exc:  # handed to the decoder thread, which raises it
            self.error = exc
        finally:
            sel.close()
            self.queue.put(None)

    def _drain(self, receiver: Receiver) -> int:
        """Receive what the socket holds; full bursts go to the decoder at once."""
        got = 0
        while (n := receiver.fill()) > 0:
            got += n
            if receiver.filled < receiver.slots:
                break  # the socket is empty
            self._hand_over(receiver)
        return got

    def _hand_over(self, receiver: Receiver) -> None:
        stamp = receiver.stamp
        burst = receiver.take()
        if burst is None:
            return
        with self._room:
            while self._queued > self.limit and not self._stop.is_set():
                self._room.wait(0.1)
            self._queued += burst.buf.nbytes
        self.queue.put((burst, stamp))
