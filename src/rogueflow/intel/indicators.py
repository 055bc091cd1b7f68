"""Indicator lists: domain lists, address/ASN lists, Tor relays, the service taxonomy.

Every loader has the signature ``(path: Path) -> object`` (see ``intel/kinds.py``)
and raises :class:`InputError` naming the file and line for content it cannot
read. Formats and matching rules are described in ``docs/indicators.md``. Lists
are read line by line as UTF-8; a file larger than :data:`MAX_LIST_BYTES` is
refused before a byte is parsed, because no real list is that large.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import lzma
import re
import tarfile
import tomllib
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rogueflow import addr
from rogueflow.arrays import masked
from rogueflow.errors import InputError
from rogueflow.intel.domains import DomainTable, entry_problem, normalise

if TYPE_CHECKING:
    from rogueflow.intel.ranges import RangeTable

MAX_LIST_BYTES = 512 * 2**20

#: How much a classification is worth, by the rule that made it (docs/indicators.md).
CONFIDENCE = {
    "domain-exact": 0.95,
    "domain-suffix": 0.90,
    "address-list": 0.80,
    "port-rule": 0.40,
}

# ---- reading text safely -----------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _check_size(path: Path) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise InputError(path, None, "not a regular file")
    if st.st_size > MAX_LIST_BYTES:
        raise InputError(
            path, None, f"{st.st_size} bytes is too large for a list (limit {MAX_LIST_BYTES})"
        )


def _decode(raw: bytes, path: Path, where: str) -> str:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, where, f"not UTF-8 text (byte {exc.start} of the line)") from None
    if _CONTROL.search(text):
        raise InputError(path, where, "binary data (control characters) in a text list")
    return text


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of a text file; bad bytes raise InputError."""
    _check_size(path)
    try:
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh, 1):
                if n == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    raw = raw[3:]  # a UTF-8 byte-order mark some Windows tools write
                yield n, _decode(raw.rstrip(b"\r\n"), path, f"line {n}").strip()
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None


def _ip(text: str) -> str | None:
    """Canonical text of an IP literal, or None."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


# ---- domain lists ------------------------------------------------------------------

# hosts entries naming the machine itself, present in every stock hosts file
_LOCAL_NAMES = frozenset(
    {"localhost", "localhost.localdomain", "local", "broadcasthost", "0.0.0.0"}
    | {"ip6-localhost", "ip6-loopback", "ip6-localnet", "ip6-mcastprefix"}
    | {"ip6-allnodes", "ip6-allrouters", "ip6-allhosts"}
)
_ADBLOCK_DOMAIN = re.compile(r"\|\|([^/^$|*]+)(?:\^)?(?:\$.*)?")
_HOST_PORT = re.compile(r"(.+?):(\d{1,5})")


@dataclass
class DomainList:
    """Domains (suffix indicators) and IP literals read from one list."""

    label: str
    domains: list[str]
    addresses: list[str] = field(default_factory=list)
    #: adblock rules that name a URL pattern rather than a domain (not indicators)
    skipped: int = 0
    _table: DomainTable | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def rows(self) -> int:
        return len(self.domains) + len(self.addresses)

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        n, a = len(self.domains), len(self.addresses)
        return f"DomainList({self.label!r}, {n} domains, {a} addresses)"

    def table(self) -> DomainTable:
        """Each entry maps to itself, so a hit names the list entry that matched."""
        if self._table is None:
            self._table = DomainTable.from_domains(self.domains)
        return self._table

    def address_table(self) -> RangeTable:
        from rogueflow.intel.ranges import RangeTable

        return RangeTable.from_cidrs(((a, self.label) for a in self.addresses), source=None)


def _domain(token: str, path: Path, where: str) -> str:
    d = normalise(token)
    if d.startswith("*."):
        d = d[2:]
    problem = entry_problem(d)
    if problem:
        raise InputError(path, where, f"neither a domain, a hosts entry nor a comment: {problem}")
    if "." not in d:
        # a bare label as a suffix would match a whole top-level domain
        raise InputError(path, where, f"{d!r} is a single label, not a domain")
    return d


def load_domain_list(path: Path, label: str = "domains") -> DomainList:
    """One domain per line, hosts format, adblock ``||domain^``, ``host<TAB>score``.

    ``host:port`` keeps the host; IP literals go to ``addresses``. In a file with an
    ``[Adblock ...]`` header, rules that are URL patterns rather than domains are
    counted in ``skipped``; elsewhere any line that is not an entry is an error.
    """
    path = Path(path)
    domains: dict[str, None] = {}
    addresses: dict[str, None] = {}
    skipped = 0
    adblock = False
    for n, text in text_lines(path):
        where = f"line {n}"
        if not adblock and not domains and not addresses and text.startswith("[Adblock"):
            adblock = True
            continue
        if not text or text[0] in ("!" if adblock else "#!;"):
            continue
        if "#" in text and not adblock:
            text = text[: text.index("#")].rstrip()  # trailing comment
        if text.startswith("||"):
            m = _ADBLOCK_DOMAIN.fullmatch(text)
            if m:
                ip = _ip(m.group(1))
                if ip is not None:
                    addresses.setdefault(ip, None)
                else:
                    domains.setdefault(_domain(m.group(1), path, where), None)
                continue
        if adblock:
            skipped += 1  # @@exceptions, ##element hiding, /path/ and URL patterns
            continue
        tokens = text.split()
        first = _ip(tokens[0])
        if first is not None and len(tokens) == 1:
            addresses.setdefault(first, None)
        elif first is not None:  # hosts file: address then names
            for name in tokens[1:]:
                if normalise(name) not in _LOCAL_NAMES:
                    domains.setdefault(_domain(name, path, where), None)
        elif len(tokens) == 2 and re.fullmatch(r"-?\d+(\.\d+)?", tokens[1]):
            domains.setdefault(_domain(tokens[0], path, where), None)  # host<TAB>score
        elif len(tokens) == 1:
            m = _HOST_PORT.fullmatch(tokens[0])
            name = m.group(1) if m and int(m.group(2)) <= 65535 else tokens[0]
            domains.setdefault(_domain(name, path, where), None)
        else:
            raise InputError(path, where, "neither a domain, a hosts entry nor a comment")
    if not domains and not addresses:
        raise InputError(path, None, "no entries: not a domain list, or an empty one")
    return DomainList(label, list(domains), list(addresses), skipped)


def load_crypto_domains(path: Path) -> DomainList:
    return load_domain_list(path, "crypto")


def load_cryptojacking_domains(path: Path) -> DomainList:
    return load_domain_list(path, "cryptojacking")


def load_doh_domains(path: Path) -> DomainList:
    return load_domain_list(path, "doh")


def load_vpn_domains(path: Path) -> DomainList:
    return load_domain_list(path, "vpn")


def load_mining_domains(path: Path) -> DomainList:
    return load_domain_list(path, "mining")


# ---- address and ASN lists ---------------------------------------------------------

_ASN = re.compile(r"AS(\d+)", re.IGNORECASE)


@dataclass
class NetworkList:
    """Prefixes -> value (a provider from the line's comment, else the list label), ASNs."""

    label: str
    cidrs: list[tuple[str, str]]
    asns: dict[int, str] = field(default_factory=dict)
    lines: list[int] = field(default_factory=list, repr=False)
    source: str | None = None
    _table: RangeTable | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def rows(self) -> int:
        return len(self.cidrs) + len(self.asns)

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        return f"NetworkList({self.label!r}, {len(self.cidrs)} prefixes, {len(self.asns)} ASNs)"

    def table(self) -> RangeTable:
        """The prefixes as a RangeTable (built once; nested prefixes: most specific wins)."""
        if self._table is None:
            from rogueflow.intel.ranges import RangeTable

            lines = self.lines or [0] * len(self.cidrs)
            items = (
                (*addr.prefix_range(c), v, f"line {n}")
                for (c, v), n in zip(self.cidrs, lines, strict=True)
            )
            self._table = RangeTable.from_ranges(items, source=self.source)
        return self._table


def load_network_list(path: Path, label: str) -> NetworkList:
    """CIDRs, single addresses or ``AS<n>`` lines, each with an optional ``# comment``."""
    path = Path(path)
    out = NetworkList(label, [], source=str(path))
    for n, text in text_lines(path):
        body, _, comment = text.partition("#")
        body, comment = body.strip(), comment.strip()
        if not body:
            continue
        value = comment or label
        m = _ASN.fullmatch(body)
        if m:
            asn = int(m.group(1))
            if asn >= 2**32:
                raise InputError(path, f"line {n}", f"AS number {asn} is out of range")
            out.asns[asn] = value
            continue
        try:
            net = ipaddress.ip_network(body, strict=True)
        except ValueError as exc:
            raise InputError(
                path, f"line {n}", f"not a prefix, address or AS number: {exc}"
            ) from None
        out.cidrs.append((str(net), value))
        out.lines.append(n)
    if not out.rows:
        raise InputError(path, None, "no entries: not an address list, or an empty one")
    out.table()  # validates: one prefix given two values, an overlap the table cannot nest
    return out


def load_vpn_cidrs(path: Path) -> NetworkList:
    return load_network_list(path, "vpn")


def load_hosting_cidrs(path: Path) -> NetworkList:
    return load_network_list(path, "hosting")


def load_mining_ips(path: Path) -> NetworkList:
    return load_network_list(path, "mining")


# ---- Tor: network-status consensuses and TorDNSEL exit lists ------------------------

_TOR_TIME = "%Y-%m-%d %H:%M:%S"
_FINGERPRINT = re.compile(r"[0-9A-Fa-f]{40}")
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")
Lines = Iterable[tuple[int, str]]


@dataclass(frozen=True)
class TorRelay:
    fingerprint: str  # 40 upper-case hex digits
    nickname: str | None
    addresses: tuple[str, ...]  # consensus: r-line IPv4 + a-line IPv6; exit list: exit IPs
    or_port: int | None
    dir_port: int | None
    or_addresses: tuple[tuple[str, int], ...]  # every (address, ORPort) the relay listens on
    flags: frozenset[str]
    published: datetime | None


@dataclass
class TorRelays:
    """Relays of one or more documents of one format, dated by the documents themselves."""

    format: str  # "consensus" | "exit-list"
    relays: list[TorRelay]
    valid_from: datetime
    valid_to: datetime  # exclusive
    documents: int = 1

    @property
    def rows(self) -> int:
        return len(self.relays)

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        span = f"{self.valid_from:%Y-%m-%d %H:%M}..{self.valid_to:%Y-%m-%d %H:%M}"
        return f"TorRelays({self.format}, {len(self.relays)} relays, {span})"

    def exits(self) -> list[TorRelay]:
        return [r for r in self.relays if "Exit" in r.flags and "BadExit" not in r.flags]

    def addresses(self, *, exits_only: bool = False) -> set[str]:
        relays = self.exits() if exits_only else self.relays
        return {a for r in relays for a in r.addresses}

    def endpoints(self) -> set[tuple[str, int]]:
        """(address, ORPort) pairs: a flow to one of them is a Tor connection."""
        return {ep for r in self.relays for ep in r.or_addresses}

    def table(self) -> RangeTable:
        """Relay addresses -> ``"tor-exit"`` or ``"tor-relay"`` (exit wins for a shared IP)."""
        from rogueflow.intel.ranges import RangeTable

        exits = self.addresses(exits_only=True)
        items = {a: "tor-exit" if a in exits else "tor-relay" for a in self.addresses()}
        return RangeTable.from_cidrs(sorted(items.items()), source=None)


def _tor_time(text: str, path: Path, where: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), _TOR_TIME).replace(tzinfo=UTC)
    except ValueError:
        raise InputError(
            path, where, f"bad time {text.strip()!r} (want YYYY-MM-DD HH:MM:SS)"
        ) from None


def _port(text: str, path: Path, where: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise InputError(path, where, f"bad port {text!r}")
    return int(text)


def _documents(path: Path) -> Iterator[tuple[str, Lines]]:
    """The text documents in ``path``: the file itself, or each file of a tar archive."""
    _check_size(path)
    with open(path, "rb") as fh:
        head = fh.read(512)
    # an archive without members is one zero block; compressed tars are read through
    if head[257:262] == b"ustar" or head == bytes(512) or head.startswith(_COMPRESSED):
        yield from _tar_documents(path)
    else:
        yield "", text_lines(path)


def _tar_documents(path: Path) -> Iterator[tuple[str, Lines]]:
    total = 0
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                if not member.isfile():
                    continue  # directories; links are never followed
                fh = tf.extractfile(member)
                if fh is None:
                    continue
                # read() is capped: a decompression bomb stops at the list size limit
                data = fh.read(MAX_LIST_BYTES - total + 1)
                total += len(data)
                if total > MAX_LIST_BYTES:
                    raise InputError(path, member.name, "archive expands beyond the list limit")
                yield member.name, _split(data, path, f"{member.name}, ")
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError, ValueError) as exc:
        raise InputError(path, None, f"unreadable tar archive: {exc}") from None


def _split(data: bytes, path: Path, prefix: str) -> list[tuple[int, str]]:
    return [
        (n, _decode(raw.rstrip(b"\r"), path, f"{prefix}line {n}").strip())
        for n, raw in enumerate(data.split(b"\n"), 1)
    ]


def _merge(
    fmt: str, path: Path, docs: list[tuple[datetime, datetime, list[TorRelay]]]
) -> TorRelays:
    if not docs:
        raise InputError(path, None, "an empty archive: no documents")
    # one relay per fingerprint: a snapshot spanning several documents knows every
    # address, port and flag the relay had during the span
    by_fp: dict[str, TorRelay] = {}
    for r in (r for _, _, rs in docs for r in rs):
        old = by_fp.get(r.fingerprint)
        if old is not None:
            r = TorRelay(
                r.fingerprint,
                r.nickname or old.nickname,
                tuple(dict.fromkeys(old.addresses + r.addresses)),
                r.or_port if r.or_port is not None else old.or_port,
                r.dir_port if r.dir_port is not None else old.dir_port,
                tuple(dict.fromkeys(old.or_addresses + r.or_addresses)),
                old.flags | r.flags,
                max((t for t in (old.published, r.published) if t), default=None),
            )
        by_fp[r.fingerprint] = r
    relays = list(by_fp.values())
    lo = min(d[0] for d in docs)
    hi = max(d[1] for d in docs)
    return TorRelays(fmt, relays, lo, hi, len(docs))


def load_tor_consensus(path: Path) -> TorRelays:
    """A network-status consensus (full or microdesc), or a tar of them.

    ``valid_from``/``valid_to`` are the earliest valid-after and latest valid-until.
    """
    path = Path(path)
    return _merge("consensus", path, [_consensus(lines, path, p) for p, lines in _documents(path)])


def _consensus(lines: Lines, path: Path, member: str) -> tuple[datetime, datetime, list[TorRelay]]:
    pre = f"{member}, " if member else ""
    started = False
    after = until = None
    relays: list[TorRelay] = []
    cur: dict[str, Any] | None = None

    def close() -> None:
        if cur is not None:
            relays.append(TorRelay(**cur))

    for n, text in lines:
        where = f"{pre}line {n}"
        if not text:
            continue
        kw, _, rest = text.partition(" ")
        if not started:
            if kw == "@type" and rest.startswith("network-status-"):
                continue
            if kw != "network-status-version" or not rest.startswith("3"):
                raise InputError(path, where, "not a Tor consensus (no network-status-version 3)")
            started = True
        elif kw == "valid-after":
            after = _tor_time(rest, path, where)
        elif kw == "valid-until":
            until = _tor_time(rest, path, where)
        elif kw == "directory-footer":
            break  # signatures follow; nothing about relays
        elif kw == "r":
            close()
            cur = _router(rest.split(), path, where)
        elif kw in ("s", "a") and cur is None:
            raise InputError(path, where, f"{kw!r} line before any 'r' line")
        elif kw == "s" and cur is not None:
            cur["flags"] = frozenset(rest.split())
        elif kw == "a" and cur is not None:
            host, port = _or_address(rest.strip(), path, where)
            cur["or_addresses"] += ((host, port),)
            if host not in cur["addresses"]:
                cur["addresses"] += (host,)
    close()
    if after is None or until is None:
        raise InputError(path, member or None, "consensus without valid-after / valid-until")
    if until <= after:
        raise InputError(path, member or None, "valid-until is not after valid-after")
    if not relays:
        raise InputError(path, member or None, "consensus without router ('r') entries")
    return after, until, relays


def _router(tok: list[str], path: Path, where: str) -> dict[str, Any]:
    # full consensus: nick identity digest date time IP ORPort DirPort; microdesc lacks digest
    if len(tok) not in (7, 8):
        raise InputError(path, where, f"'r' line has {len(tok)} fields, expected 7 or 8")
    nick, ident = tok[0], tok[1]
    try:
        raw = base64.b64decode(ident + "=" * (-len(ident) % 4), validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 20:
        raise InputError(path, where, f"bad relay identity {ident!r}")
    ip = _ip(tok[-3])
    if ip is None or ":" in ip:
        raise InputError(path, where, f"bad relay IPv4 address {tok[-3]!r}")
    or_port, dir_port = _port(tok[-2], path, where), _port(tok[-1], path, where)
    return {
        "fingerprint": raw.hex().upper(),
        "nickname": nick,
        "addresses": (ip,),
        "or_port": or_port,
        "dir_port": dir_port or None,
        "or_addresses": ((ip, or_port),),
        "flags": frozenset(),
        "published": _tor_time(f"{tok[-5]} {tok[-4]}", path, where),
    }


def _or_address(text: str, path: Path, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    ip = _ip(host) if sep else None
    if ip is None:
        raise InputError(path, where, f"bad 'a' line address {text!r}")
    return ip, _port(port, path, where)


def load_tor_exit_list(path: Path) -> TorRelays:
    """TorDNSEL exit lists (``ExitNode``/``Published``/``LastStatus``/``ExitAddress``).

    Dated from the earliest to the latest LastStatus or ExitAddress time (inclusive).
    """
    path = Path(path)
    return _merge("exit-list", path, [_exit_list(ls, path, p) for p, ls in _documents(path)])


def _exit_list(lines: Lines, path: Path, member: str) -> tuple[datetime, datetime, list[TorRelay]]:
    pre = f"{member}, " if member else ""
    relays: list[TorRelay] = []
    seen: list[datetime] = []
    cur: dict[str, Any] | None = None

    def close() -> None:
        if cur is not None:
            relays.append(TorRelay(**cur))

    for n, text in lines:
        where = f"{pre}line {n}"
        if not text:
            continue
        kw, _, rest = text.partition(" ")
        if kw == "@type":
            if not rest.startswith("tordnsel"):
                raise InputError(path, where, f"not a TorDNSEL exit list (@type {rest})")
        elif kw == "Downloaded":
            _tor_time(rest, path, where)
        elif kw == "ExitNode":
            close()
            if not _FINGERPRINT.fullmatch(rest.strip()):
                raise InputError(path, where, f"bad relay fingerprint {rest.strip()!r}")
            cur = dict(
                fingerprint=rest.strip().upper(), nickname=None, addresses=(), or_port=None,
                dir_port=None, or_addresses=(), flags=frozenset({"Exit"}), published=None,
            )  # fmt: skip
        elif kw in ("Published", "LastStatus", "ExitAddress") and cur is None:
            raise InputError(path, where, f"{kw} before any ExitNode")
        elif kw == "Published" and cur is not None:
            cur["published"] = _tor_time(rest, path, where)
        elif kw == "LastStatus":
            seen.append(_tor_time(rest, path, where))
        elif kw == "ExitAddress" and cur is not None:
            ip_text, _, when = rest.partition(" ")
            ip = _ip(ip_text)
            if ip is None:
                raise InputError(path, where, f"bad exit address {ip_text!r}")
            seen.append(_tor_time(when, path, where))
            if ip not in cur["addresses"]:
                cur["addresses"] += (ip,)
        else:
            raise InputError(path, where, f"unexpected {kw!r}: not a TorDNSEL exit list")
    close()
    if not relays or not seen:
        raise InputError(path, member or None, "exit list without ExitNode/ExitAddress entries")
    return min(seen), max(seen) + timedelta(seconds=1), relays


# ---- the service / category taxonomy ----------------------------------------------

CATEGORIES = (
    "social.western", "social.chinese", "streaming", "gaming", "filesharing", "email",
    "news", "search", "shopping", "government", "education", "crypto.exchange",
    "crypto.mining", "crypto.p2p", "anonymizer.tor", "anonymizer.vpn", "anonymizer.doh",
    "dns.tunnel", "infrastructure", "other",
)  # fmt: skip
#: categories only behaviour detectors assign: no service of the taxonomy belongs to one
DETECTOR_CATEGORIES = frozenset({"dns.tunnel"})
#: nDPI's category names (ndpi_category_get_name) the taxonomy may cite
NDPI_CATEGORIES = frozenset((
    "Unspecified", "Media", "VPN", "Email", "DataTransfer", "Web", "SocialNetwork",
    "Download", "Game", "Chat", "VoIP", "Database", "RemoteAccess", "Cloud", "Network",
    "Collaborative", "RPC", "Streaming", "System", "SoftwareUpdate", "Music", "Video",
    "Shopping", "Productivity", "FileSharing", "ConnCheck", "Mining", "Crypto_Currency",
    "Advertisement", "Finance", "News", "Government", "Education",
))  # fmt: skip
ORIGINS = ("western", "chinese", "russian", "other")
PROTOCOLS = {"tcp": 6, "udp": 17, "sctp": 132}
_PROTO_NAMES = {v: k for k, v in PROTOCOLS.items()}
_SERVICE_KEYS = {"name", "title", "category", "ndpi", "origin", "coins", "domains", "ports"}
_COIN_ALIASES = {
    "xmr": "XMR", "monero": "XMR", "eth": "ETH", "ethereum": "ETH", "etc": "ETC",
    "zec": "ZEC", "zcash": "ZEC", "btc": "BTC", "bitcoin": "BTC", "ltc": "LTC",
    "litecoin": "LTC", "bch": "BCH", "rvn": "RVN", "ravencoin": "RVN", "erg": "ERG",
    "ergo": "ERG", "dash": "DASH", "zen": "ZEN", "grin": "GRIN", "beam": "BEAM",
}  # fmt: skip
F32 = npt.NDArray[np.float32]
I32 = npt.NDArray[np.int32]


@dataclass(frozen=True)
class Service:
    name: str
    title: str
    category: str  # one of CATEGORIES
    ndpi: str  # nDPI category name
    origin: str | None  # western / chinese / russian / other, where it matters
    coins: tuple[str, ...]
    domains: tuple[str, ...]
    ports: tuple[tuple[int, int, int], ...]  # (IP protocol, first port, last port)


class ServiceMatch(NamedTuple):
    """Per flow: service index (-1 none), category, confidence (0 none), evidence."""

    service: I32
    category: pa.DictionaryArray
    confidence: F32
    evidence: pa.DictionaryArray


class ServiceCatalog:
    """Services by domain suffix and by port rule; see docs/indicators.md."""

    def __init__(self, services: list[Service], source: str | None = None) -> None:
        self.services = services
        self.source = source
        self._by_name = {s.name: i for i, s in enumerate(services)}
        domains = [(d, i) for i, s in enumerate(services) for d in s.domains]
        self.domains = DomainTable.from_domains([d for d, _ in domains], source=source)
        self._entry_service = np.array([i for _, i in domains] + [-1], dtype=np.int32)
        self._cat_code = np.array(
            [CATEGORIES.index(s.category) for s in services] + [0], dtype=np.int32
        )
        self._rules: list[tuple[int, int, int, int]] = []  # proto, lo, hi, service
        self._ports: dict[int, I32] = {}
        for i, s in enumerate(services):
            for proto, lo, hi in s.ports:
                table = self._ports.setdefault(proto, np.full(65536, -1, dtype=np.int32))
                taken = table[lo : hi + 1]
                if (taken >= 0).any():
                    other = services[self._rules[int(taken[taken >= 0][0])][3]].name
                    rule = f"{_PROTO_NAMES[proto]}/{lo}-{hi}"
                    raise InputError(source, f"service {s.name!r}", f"port {rule} is {other}'s")
                taken[:] = len(self._rules)
                self._rules.append((proto, lo, hi, i))

    @property
    def rows(self) -> int:
        return len(self.services)

    def __len__(self) -> int:
        return self.rows

    def __repr__(self) -> str:
        return f"ServiceCatalog({len(self)} services, {len(self.domains)} domains)"

    @classmethod
    def builtin(cls) -> ServiceCatalog:
        """The taxonomy shipped with the package (``intel/data/services.toml``)."""
        with resources.as_file(resources.files(__package__) / "data" / "services.toml") as p:
            return load_services(p)

    def index(self, name: str) -> int:
        return self._by_name.get(name, -1)

    def service(self, name: str) -> Service:
        return self.services[self._by_name[name]]

    def by_name(self, names: pa.Array | pa.ChunkedArray | list[str | None]) -> ServiceMatch:
        """Classify host names (SNI, DNS query, HTTP Host) by the longest domain suffix."""
        entry, exact = self.domains.match_detail(names)
        svc = self._entry_service[entry]  # entry -1 picks the trailing -1
        conf = np.where(exact, CONFIDENCE["domain-exact"], CONFIDENCE["domain-suffix"]).astype(
            np.float32
        )
        conf[entry < 0] = 0.0
        words = [f"domain {e} ({k})" for e in self.domains.entries for k in ("suffix", "exact")]
        ev = entry.astype(np.int64) * 2 + exact
        return self._result(svc, conf, ev, words)

    def by_port(
        self, proto: npt.ArrayLike | pa.Array, port: npt.ArrayLike | pa.Array
    ) -> ServiceMatch:
        """Classify by (IP protocol, port) rules, e.g. the server port of each flow."""
        pr, po = _ints(proto), _ints(port)
        rule = np.full(len(po), -1, dtype=np.int32)
        ok = (po >= 0) & (po < 65536)
        for p, table in self._ports.items():
            sel = ok & (pr == p)
            rule[sel] = table[po[sel]]
        svc_of_rule = np.array([r[3] for r in self._rules] + [-1], dtype=np.int32)
        svc = svc_of_rule[rule]
        conf = np.where(rule >= 0, CONFIDENCE["port-rule"], 0.0).astype(np.float32)
        words = [
            f"port {_PROTO_NAMES[p]}/{lo}" + (f"-{hi}" if hi != lo else "")
            for p, lo, hi, _ in self._rules
        ]
        return self._result(svc, conf, rule.astype(np.int64), words)

    def coin_of(self, name: str) -> str | None:
        """The coin a pool host name points at: the pool's only coin, or a coin label."""
        code, entry = self.domains.match_one(name)
        if code < 0 or entry is None:
            return None
        s = self.services[int(self._entry_service[code])]
        if len(s.coins) == 1:
            return s.coins[0]
        head = normalise(name)[: -len(entry)]
        for word in re.split(r"[.\-_\d]+", head):
            coin = _COIN_ALIASES.get(word)
            if coin in s.coins:
                return coin
        return None

    def _result(
        self, svc: I32, conf: F32, ev: npt.NDArray[np.int64], words: list[str]
    ) -> ServiceMatch:
        none = svc < 0
        cat = pa.DictionaryArray.from_arrays(
            masked(self._cat_code[svc], none, pa.int32()), pa.array(CATEGORIES)
        )
        evidence = pa.DictionaryArray.from_arrays(
            masked(np.where(none, 0, ev), none, pa.int32()),
            pa.array(words, pa.string()),
        )
        return ServiceMatch(svc, cat, conf, evidence)


def _ints(values: npt.ArrayLike | pa.Array | pa.ChunkedArray) -> npt.NDArray[np.int64]:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, pa.Array):
        values = values.cast(pa.int64()).fill_null(-1)  # null never matches a rule
        return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.int64)
    return np.asarray(values, dtype=np.int64)


def load_services(path: Path) -> ServiceCatalog:
    """The service taxonomy TOML (format: docs/indicators.md)."""
    path = Path(path)
    _check_size(path)
    try:
        doc = tomllib.loads(_decode(path.read_bytes(), path, "file"))
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"line (\d+)", str(exc))
        raise InputError(path, f"line {m.group(1)}" if m else None, f"bad TOML: {exc}") from None
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None
    if doc.get("version") != 1:
        raise InputError(path, None, "taxonomy 'version = 1' missing or unsupported")
    entries = doc.get("service")
    if not isinstance(entries, list) or not entries:
        raise InputError(path, None, "no [[service]] entries")
    services: list[Service] = []
    seen: dict[str, str] = {}
    for i, raw in enumerate(entries, 1):
        s = _service(raw, path, f"[[service]] #{i}")
        if s.name in {x.name for x in services}:
            raise InputError(path, f"service {s.name!r}", "duplicate service name")
        for d in s.domains:
            if d in seen:
                raise InputError(path, f"service {s.name!r}", f"{d} is also {seen[d]}'s")
            seen[d] = s.name
        services.append(s)
    return ServiceCatalog(services, str(path))


def _service(raw: Any, path: Path, where: str) -> Service:
    if not isinstance(raw, dict):
        raise InputError(path, where, "not a table")
    where = f"service {raw.get('name', where)!r}"

    def bad(problem: str) -> InputError:
        return InputError(path, where, problem)

    if unknown := set(raw) - _SERVICE_KEYS:
        raise bad(f"unknown keys {sorted(unknown)}")
    name, cat, ndpi = raw.get("name"), raw.get("category"), raw.get("ndpi", "Unspecified")
    if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9._-]*", name):
        raise bad("name must be lower-case letters, digits, '.', '_' or '-'")
    if cat not in CATEGORIES:
        raise bad(f"category {cat!r} is not one of {', '.join(CATEGORIES)}")
    if ndpi not in NDPI_CATEGORIES:
        raise bad(f"ndpi category {ndpi!r} is not an nDPI category name")
    origin = raw.get("origin")
    if origin is not None and origin not in ORIGINS:
        raise bad(f"origin {origin!r} is not one of {', '.join(ORIGINS)}")
    if cat.startswith("social.") and origin != cat.split(".")[1]:
        raise bad(f"a {cat} service needs origin = {cat.split('.')[1]!r}")
    lists = {k: raw.get(k, []) for k in ("coins", "domains", "ports")}
    for k, v in lists.items():
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise bad(f"{k} must be a list of strings")
    for c in lists["coins"]:
        if not re.fullmatch(r"[A-Z0-9]{2,10}", c):
            raise bad(f"coin {c!r} is not a ticker such as XMR")
    for d in lists["domains"]:
        problem = entry_problem(d) or (None if d == normalise(d) else "write domains lower-case")
        if problem or d != d.strip():
            raise bad(f"domain {d!r}: {problem or 'surrounding spaces'}")
    ports = tuple(_port_rule(r, bad) for r in lists["ports"])
    if not lists["domains"] and not ports:
        raise bad("a service needs domains or ports")
    title = raw.get("title", name)
    return Service(
        name, str(title), cat, ndpi, origin, tuple(lists["coins"]), tuple(lists["domains"]), ports
    )


def _port_rule(rule: str, bad: Any) -> tuple[int, int, int]:
    m = re.fullmatch(r"(tcp|udp|sctp)/(\d{1,5})(?:-(\d{1,5}))?", rule)
    if not m:
        raise bad(f"port rule {rule!r} is not proto/port or proto/first-last")
    lo = int(m.group(2))
    hi = int(m.group(3) or lo)
    if not 1 <= lo <= hi <= 65535:
        raise bad(f"port rule {rule!r} is out of range 1-65535 or inverted")
    return PROTOCOLS[m.group(1)], lo, hi
