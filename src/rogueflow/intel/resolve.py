"""Addresses of indicator domains, resolved at ``intel update``.

Flows without names (plain NetFlow) can only meet a domain indicator by
address. When a feed stores a domain list, its names are resolved once with a
small DNS stub (UDP, A and AAAA, our own wire codec) and stored as a
``dns-resolutions`` snapshot: a CSV ``name,address,category,resolved_at`` valid
from the resolution time for the feed's ``valid_for_days``.

The codec trusts nothing it receives: every read is bounds-checked, compression
pointers are followed with a loop guard, and any garbled, truncated or
mismatched answer yields no addresses (:class:`DNSParseError`, handled inside).
"""

from __future__ import annotations

import csv
import ipaddress
import re
import secrets
import select
import socket
import struct
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from rogueflow import addr
from rogueflow.errors import ConfigError, InputError
from rogueflow.intel.indicators import text_lines
from rogueflow.intel.ranges import RangeTable

KIND = "dns-resolutions"
HEADER = ("name", "address", "category", "resolved_at")
#: domain indicator kinds whose names are resolved -> category of a hit (the same
#: categories as name matches in rogueflow.enrich.intel.DOMAIN_KINDS)
DOMAIN_CATEGORIES = {
    "mining-pools": "crypto.mining",
    "crypto-sites": "crypto.exchange",
    "cryptojacking": "crypto.mining",
    "vpn-domains": "anonymizer.vpn",
    "doh-resolvers": "anonymizer.doh",
}
MAX_NAMES = 5_000
MAX_SECONDS = 120.0
DEFAULT_TIMEOUT = 2.0
DEFAULT_VALID_DAYS = 7.0
RESOLV_CONF = Path("/etc/resolv.conf")

QTYPE_A, QTYPE_AAAA = 1, 28
_ADDR_LEN = {QTYPE_A: 4, QTYPE_AAAA: 16}
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_MAX_JUMPS = 32  # compression pointers followed per name before giving up (loop guard)
_WINDOW = 64  # queries in flight at once
_RETRIES = 1


class DNSParseError(ValueError):
    """A DNS message that is truncated, garbled or not the answer to our question."""


# ---- wire format ---------------------------------------------------------------------


def encode_query(qid: int, name: str, qtype: int) -> bytes:
    """A recursive query for ``name`` (a checked lower-case ASCII domain)."""
    labels = name.rstrip(".").split(".")
    qname = b"".join(bytes([len(lb)]) + lb.encode("ascii") for lb in labels) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)


def read_name(data: bytes, off: int) -> tuple[str, int]:
    """(name, offset after it in the original position); follows compression pointers."""
    labels: list[str] = []
    end = -1
    jumps = 0
    total = 0
    while True:
        if off >= len(data):
            raise DNSParseError(f"name runs past the end at byte {off}")
        n = data[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(data):
                raise DNSParseError(f"cut compression pointer at byte {off}")
            if end < 0:
                end = off + 2
            jumps += 1
            if jumps > _MAX_JUMPS:
                raise DNSParseError("compression pointer loop")
            off = ((n & 0x3F) << 8) | data[off + 1]
            continue
        if n & 0xC0:
            raise DNSParseError(f"reserved label type at byte {off}")
        if n == 0:
            return ".".join(labels), (end if end >= 0 else off + 1)
        if off + 1 + n > len(data):
            raise DNSParseError(f"label runs past the end at byte {off}")
        total += n + 1
        if total > 255:
            raise DNSParseError("name longer than 255 bytes")
        labels.append(data[off + 1 : off + 1 + n].decode("latin-1").lower())
        off += 1 + n


def _u16s(data: bytes, off: int, count: int) -> tuple[int, ...]:
    if off + 2 * count > len(data):
        raise DNSParseError(f"record cut at byte {off}")
    return struct.unpack_from(f"!{count}H", data, off)


def parse_response(data: bytes, qid: int, name: str, qtype: int) -> list[str]:
    """Addresses of type ``qtype`` answering our question ``qid``/``name``.

    A negative answer (NXDOMAIN, no data) or a truncated one (TC bit) gives [];
    anything malformed or not matching the question raises :class:`DNSParseError`.
    """
    if len(data) < 12:
        raise DNSParseError("shorter than a DNS header")
    rid, flags, qd, an = struct.unpack_from("!HHHH", data, 0)
    if rid != qid or not flags & 0x8000:
        raise DNSParseError("not a response to our query")
    if flags & 0x0200 or flags & 0x000F:
        return []  # truncated (TCP would be needed) or an error rcode: no addresses
    if qd != 1:
        raise DNSParseError(f"{qd} questions in a response")
    qname, off = read_name(data, 12)
    qt, qc = _u16s(data, off, 2)
    if qname != name.rstrip(".").lower() or qt != qtype or qc != 1:
        raise DNSParseError("response to another question")
    off += 4
    out: list[str] = []
    for _ in range(an):
        _, off = read_name(data, off)
        rtype, rclass = _u16s(data, off, 2)
        if off + 10 > len(data):
            raise DNSParseError(f"record cut at byte {off}")
        (rdlen,) = _u16s(data, off + 8, 1)
        off += 10
        if off + rdlen > len(data):
            raise DNSParseError(f"record data runs past the end at byte {off}")
        # CNAME chains put the target's records in the same answer section
        if rtype == qtype and rclass == 1:
            if rdlen != _ADDR_LEN[qtype]:
                raise DNSParseError(f"address record of {rdlen} bytes")
            raw = data[off : off + rdlen]
            out.append(str(ipaddress.ip_address(raw)))
        off += rdlen
    return out


def parse_answers(data: bytes) -> tuple[str, list[tuple[bytes, int]]]:
    """(question name, [(4- or 16-byte address, TTL seconds)]) of any DNS response.

    For passively observed answers: A and AAAA records of class IN anywhere in the
    answer section (CNAME chains included) count for the first question. A query, an
    error rcode or no question gives no addresses; anything malformed raises
    :class:`DNSParseError` and nothing else.
    """
    if len(data) < 12:
        raise DNSParseError("shorter than a DNS header")
    _, flags, qd, an = struct.unpack_from("!HHHH", data, 0)
    if not flags & 0x8000 or flags & 0x000F or qd == 0:
        return "", []
    qname, off = read_name(data, 12)
    off += 4
    for _ in range(qd - 1):
        _, off = read_name(data, off)
        off += 4
    out: list[tuple[bytes, int]] = []
    for _ in range(an):
        _, off = read_name(data, off)
        if off + 10 > len(data):
            raise DNSParseError(f"record cut at byte {off}")
        rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", data, off)
        off += 10
        if off + rdlen > len(data):
            raise DNSParseError(f"record data runs past the end at byte {off}")
        if rclass == 1 and _ADDR_LEN.get(rtype) == rdlen:
            # RFC 2181: a TTL with the top bit set is treated as zero
            out.append((data[off : off + rdlen], ttl if ttl < 1 << 31 else 0))
        off += rdlen
    return qname, out


# ---- the stub resolver ---------------------------------------------------------------


def system_resolver(conf: Path = RESOLV_CONF) -> str:
    """The first ``nameserver`` of resolv.conf."""
    try:
        text = conf.read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"{conf}: cannot read ({exc.strerror or exc}); set a resolver") from None
    for line in text.splitlines():
        tok = line.split()
        if len(tok) >= 2 and tok[0] == "nameserver":
            return tok[1]
    raise ConfigError(f"{conf}: no nameserver line; set a resolver")


def parse_server(server: str) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (address, port)."""
    text = server.strip()
    host, port = text, 53
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?", text)
    if m:
        host, port = m.group(1), int(m.group(2) or 53)
    elif text.count(":") == 1:
        host, p = text.split(":")
        if not p.isdigit():
            raise ConfigError(f"resolver {server!r}: port is not a number")
        port = int(p)
    try:
        ip = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        raise ConfigError(f"resolver {server!r}: not an IP address (host[:port])") from None
    if not 0 < port < 65536:
        raise ConfigError(f"resolver {server!r}: port out of range")
    return str(ip), port


def resolvable(names: Iterable[str]) -> list[str]:
    """Sorted distinct names that can be asked: wildcard/adblock entries are skipped."""
    out: set[str] = set()
    for raw in names:
        name = raw.strip().rstrip(".").lower()
        if not name or len(name) > 253 or any(c in name for c in "*|^$/"):
            continue
        if all(_LABEL.fullmatch(lb) for lb in name.split(".")):
            out.add(name)
    return sorted(out)


class ResolveError(Exception):
    """The resolver could not be reached or answered nothing at all."""


def resolve_names(
    names: Sequence[str],
    server: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    *,
    max_names: int = MAX_NAMES,
    max_seconds: float = MAX_SECONDS,
) -> list[tuple[str, str]]:
    """Sorted distinct (name, address) pairs from A and AAAA answers.

    At most ``max_names`` names (in sorted order) and ``max_seconds`` in total;
    each query waits ``timeout`` and is sent at most twice. Raises
    :class:`ResolveError` when there were queries but not a single answer came back.
    """
    host, port = parse_server(server or system_resolver())
    todo = deque((n, t) for n in resolvable(names)[:max_names] for t in (QTYPE_A, QTYPE_AAAA))
    if not todo:
        return []
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    found: set[tuple[str, str]] = set()
    answered = expired = 0
    pending: dict[int, tuple[str, int, float]] = {}  # id -> (name, qtype, deadline)
    sent: dict[tuple[str, int], int] = {}  # times each question was sent
    stop = time.monotonic() + max_seconds
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((host, port))  # the kernel drops datagrams from anyone else
        except OSError as exc:
            raise ResolveError(f"resolver {host}:{port}: {exc.strerror or exc}") from None
        sock.setblocking(False)
        while (todo or pending) and time.monotonic() < stop:
            if not answered and expired >= _WINDOW:
                break  # a whole window of silence: the resolver is not there
            now = time.monotonic()
            for qid, (name, qtype, deadline) in list(pending.items()):
                if deadline <= now:
                    del pending[qid]
                    expired += 1
                    if sent[name, qtype] <= _RETRIES:
                        todo.appendleft((name, qtype))
            while todo and len(pending) < _WINDOW:
                name, qtype = todo.popleft()
                qid = secrets.randbelow(65536)
                while qid in pending:
                    qid = secrets.randbelow(65536)
                try:
                    sock.send(encode_query(qid, name, qtype))
                except OSError as exc:  # an ICMP unreachable from an earlier query
                    if not answered:
                        raise ResolveError(
                            f"resolver {host}:{port}: {exc.strerror or exc}"
                        ) from None
                sent[name, qtype] = sent.get((name, qtype), 0) + 1
                pending[qid] = (name, qtype, now + timeout)
            if not pending:
                continue  # every question settled (or given up)
            wait = min(min(d for _, _, d in pending.values()), stop) - time.monotonic()
            ready, _, _ = select.select([sock], [], [], max(wait, 0.0))
            while ready:
                try:
                    data = sock.recv(65535)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:  # ICMP port unreachable, on a connected socket
                    if not answered:
                        raise ResolveError(
                            f"resolver {host}:{port}: {exc.strerror or exc}"
                        ) from None
                    break
                got = _answer(data, pending)
                if got is not None:
                    answered += 1
                    found.update(got)
    if not answered:
        raise ResolveError(f"resolver {host}:{port} answered none of the queries")
    return sorted(found)


def _answer(
    data: bytes, pending: dict[int, tuple[str, int, float]]
) -> list[tuple[str, str]] | None:
    if len(data) < 2:
        return None
    qid = int.from_bytes(data[:2], "big")
    query = pending.get(qid)
    if query is None:
        return None  # late or stray: ignored
    name, qtype = query[0], query[1]
    try:
        addrs = parse_response(data, qid, name, qtype)
    except DNSParseError:
        return None  # garbled: the query may still time out and be retried
    del pending[qid]
    return [(name, a) for a in addrs]


# ---- the snapshot file -----------------------------------------------------------------


def write_resolutions(
    path: Path, pairs: Iterable[tuple[str, str]], category: str, resolved_at: datetime
) -> int:
    """Write the CSV of a resolutions snapshot; returns the number of rows."""
    stamp = resolved_at.astimezone(UTC).isoformat(timespec="seconds")
    n = 0
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(HEADER)
        for name, address in pairs:
            w.writerow((name, address, category, stamp))
            n += 1
    return n


@dataclass(frozen=True)
class Resolution:
    name: str
    address: str
    category: str
    resolved_at: datetime


@dataclass
class Resolutions:
    """Rows of a ``dns-resolutions`` snapshot; :meth:`table` maps address -> "name|category"."""

    rows: list[Resolution]
    _table: RangeTable | None = field(default=None, init=False, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def valid_from(self) -> datetime | None:
        """For a file added by hand: valid from its first resolution ..."""
        return min((r.resolved_at for r in self.rows), default=None)

    @property
    def valid_to(self) -> datetime | None:
        """... for the default validity after its last one."""
        last = max((r.resolved_at for r in self.rows), default=None)
        return None if last is None else last + timedelta(days=DEFAULT_VALID_DAYS)

    def table(self) -> RangeTable:
        if self._table is None:
            # several names can share an address (CDNs, pool front ends): the first in
            # sorted (name, category) order answers, so the result does not depend on
            # the order of the file
            first: dict[bytes, str] = {}
            for r in sorted(self.rows, key=lambda r: (r.name, r.category)):
                first.setdefault(addr.parse_one(r.address), f"{r.name}|{r.category}")
            self._table = RangeTable.from_ranges(((a, a, v) for a, v in first.items()), source=None)
        return self._table


def load_resolutions(path: Path) -> Resolutions:
    """Read ``name,address,category,resolved_at`` (with that header line)."""
    path = Path(path)
    rows: list[Resolution] = []
    header = False
    for n, text in text_lines(path):
        where = f"line {n}"
        if not text:
            continue
        try:
            fields = next(csv.reader([text]))
        except csv.Error as exc:
            raise InputError(path, where, f"bad CSV: {exc}") from None
        if not header:
            if tuple(f.strip().lower() for f in fields) != HEADER:
                raise InputError(path, where, f"header must be {','.join(HEADER)}")
            header = True
            continue
        if len(fields) != 4:
            raise InputError(path, where, f"{len(fields)} fields, expected 4 ({','.join(HEADER)})")
        name, address, category, stamp = (f.strip() for f in fields)
        if resolvable([name]) != [name.rstrip(".").lower()]:
            raise InputError(path, where, f"{name!r} is not a domain name")
        try:
            address = addr.format_one(addr.parse_one(address))
        except ValueError:
            raise InputError(path, where, f"{address!r} is not an IP address") from None
        if not category or "|" in category:
            raise InputError(path, where, "empty category or one containing '|'")
        try:
            when = datetime.fromisoformat(stamp)
        except ValueError:
            raise InputError(path, where, f"resolved_at {stamp!r} is not an ISO time") from None
        if when.tzinfo is None:
            raise InputError(path, where, f"resolved_at {stamp!r} has no time zone")
        rows.append(Resolution(name.rstrip(".").lower(), address, category, when.astimezone(UTC)))
    if not header:
        raise InputError(path, None, f"empty: expected the header {','.join(HEADER)}")
    return Resolutions(rows)
