"""Configured feeds and ``intel update``: fetch, validate, store, keep the old on failure.

A feed is a URL whose content is one kind of reference data. The built-in list
names public sources; a workspace adds or overrides feeds in ``feeds.toml``::

    builtin_feeds = true          # include the built-in list (default)
    max_bytes = 268435456         # defaults for every feed
    [[feed]]
    name = "my-pools"
    kind = "mining-pools"
    format = "domains"
    url = "https://intel.example.org/pools.txt"
    valid_for_days = 7
    [defaults]
    resolver = "127.0.0.1:5353"   # or "system"; resolves domain lists (resolve.py)

Feeds are fetched only when the user runs ``rogueflow intel update``.
"""

from __future__ import annotations

import shutil
import time
import tomllib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from rogueflow.errors import ConfigError, InputError
from rogueflow.intel import resolve
from rogueflow.intel.fetch import Fetcher, fetch
from rogueflow.intel.kinds import KINDS
from rogueflow.intel.snapshots import IntelStore, Snapshot
from rogueflow.workspace import Workspace

FEEDS_FILE = "feeds.toml"
DEFAULT_MAX_BYTES = 256 << 20
DEFAULT_TIMEOUT = 120.0
DEFAULT_MAX_RATIO = 100.0
#: kinds whose content describes one moment (a consensus, an exit list): a new
#: snapshot ends the previous one's validity instead of replacing it for all dates
DATED_KINDS = frozenset({"tor-relays"})


@dataclass(frozen=True)
class Feed:
    name: str
    kind: str
    format: str
    url: str
    #: refresh interval; for dated kinds also how long a snapshot stays valid
    #: when no newer one arrives
    valid_for_days: float = 7.0
    enabled: bool = True
    dated: bool | None = None  # None: from the kind (DATED_KINDS)
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = DEFAULT_TIMEOUT
    max_ratio: float = DEFAULT_MAX_RATIO
    description: str = ""

    @property
    def is_dated(self) -> bool:
        return self.kind in DATED_KINDS if self.dated is None else self.dated


_GH = "https://raw.githubusercontent.com"
_UT1 = f"{_GH}/olbat/ut1-blacklists/master/blacklists"
_X4B = f"{_GH}/X4BNet/lists_vpn/main/output"
_CBL = "https://zerodot1.gitlab.io/CoinBlockerLists"
_RIR_NOTE = (
    "one registry's delegations only; enable all five or none, since a geo-country "
    "snapshot replaces the embedded table for the dates it covers"
)

BUILTIN_FEEDS: list[Feed] = [
    Feed("tor-exit-list", "tor-relays", "exit-list", "https://check.torproject.org/exit-addresses",
         1, description="TorDNSEL exit addresses (Tor Project)"),
    # gabelmoo, a Tor directory authority; the consensus is signed, but only
    # parsed here, so a tampered copy could only add or hide relays
    Feed("tor-consensus", "tor-relays", "consensus",
         "http://131.188.40.189/tor/status-vote/current/consensus", 1,
         description="current network-status consensus (all relays)"),
    Feed("coinblocker-pools", "mining-pools", "domains", f"{_CBL}/list.txt", 7,
         description="CoinBlockerLists: mining pool domains"),
    Feed("coinblocker-ips", "mining-pools", "ips", f"{_CBL}/MiningServerIPList.txt", 7,
         description="CoinBlockerLists: mining server addresses"),
    Feed("coinblocker-browser", "cryptojacking", "domains", f"{_CBL}/list_browser.txt", 7,
         description="CoinBlockerLists: browser miners"),
    Feed("nocoin", "cryptojacking", "domains",
         f"{_GH}/hoshsadiq/adblock-nocoin-list/master/hosts.txt", 7,
         description="NoCoin adblock list (hosts format)"),
    Feed("ut1-bitcoin", "crypto-sites", "domains", f"{_UT1}/bitcoin/domains", 7,
         description="UT1 category bitcoin: exchanges, wallets, pools"),
    Feed("ut1-cryptojacking", "cryptojacking", "domains", f"{_UT1}/cryptojacking/domains", 7,
         description="UT1 category cryptojacking"),
    Feed("ut1-vpn", "vpn-domains", "domains", f"{_UT1}/vpn/domains", 7,
         description="UT1 category vpn"),
    Feed("ut1-doh", "doh-resolvers", "domains", f"{_UT1}/doh/domains", 7,
         description="UT1 category doh"),
    Feed("x4bnet-vpn-ipv4", "vpn-ranges", "cidr", f"{_X4B}/vpn/ipv4.txt", 7,
         description="X4BNet known VPN networks, IPv4"),
    Feed("x4bnet-vpn-ipv6", "vpn-ranges", "cidr", f"{_X4B}/vpn/ipv6.txt", 7,
         description="X4BNet known VPN networks, IPv6"),
    Feed("x4bnet-datacenter-ipv4", "hosting-ranges", "cidr", f"{_X4B}/datacenter/ipv4.txt", 7,
         description="X4BNet VPN + datacenter networks, IPv4"),
    Feed("x4bnet-datacenter-ipv6", "hosting-ranges", "cidr", f"{_X4B}/datacenter/ipv6.txt", 7,
         description="X4BNet VPN + datacenter networks, IPv6"),
    *(
        Feed(f"rir-{rir}", "geo-country", "rir-delegated", url, 7, enabled=False,
             description=f"{rir.upper()} delegated-extended statistics ({_RIR_NOTE})")
        for rir, url in (
            ("apnic", "https://ftp.apnic.net/stats/apnic/delegated-apnic-extended-latest"),
            ("ripencc", "https://ftp.ripe.net/pub/stats/ripencc/delegated-ripencc-extended-latest"),
            ("arin", "https://ftp.arin.net/pub/stats/arin/delegated-arin-extended-latest"),
            ("lacnic", "https://ftp.lacnic.net/pub/stats/lacnic/delegated-lacnic-extended-latest"),
            ("afrinic",
             "https://ftp.afrinic.net/pub/stats/afrinic/delegated-afrinic-extended-latest"),
        )
    ),
]  # fmt: skip

_FEED_KEYS = {f.name for f in fields(Feed)}
_TOP_KEYS = {"builtin_feeds", "max_bytes", "timeout", "max_ratio", "feed", "defaults"}
_DEFAULTS_KEYS = {"resolver"}
_LIMIT_TYPES: dict[str, tuple[type[int] | type[float], ...]] = {
    "max_bytes": (int,),
    "timeout": (int, float),
    "max_ratio": (int, float),
    "valid_for_days": (int, float),
}


def load_feeds(ws: Workspace) -> list[Feed]:
    """Built-in feeds (unless ``builtin_feeds = false``) with the workspace's on top.

    A workspace feed with a built-in's name overrides only the keys it sets.
    """
    path = ws.root / FEEDS_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = tomllib.loads(path.read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: {exc}") from None
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)}; see docs/intel.md")
    defaults: dict[str, Any] = {
        k: data[k] for k in ("max_bytes", "timeout", "max_ratio") if k in data
    }
    _check_types(
        path, "top level", {k: v for k, v in data.items() if k not in ("feed", "defaults")}
    )
    _check_defaults(path, data.get("defaults", {}))
    feeds = {f.name: replace(f, **defaults) for f in BUILTIN_FEEDS}
    if not data.get("builtin_feeds", True):
        feeds = {}
    entries = data.get("feed", [])
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: `feed` must be an array of tables ([[feed]])")
    for i, entry in enumerate(entries, 1):
        where = f"[[feed]] #{i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ConfigError(f"{path}: {where} has no name")
        bad = sorted(set(entry) - _FEED_KEYS)
        if bad:
            raise ConfigError(f"{path}: {where} unknown key(s) {', '.join(bad)}")
        _check_types(path, where, entry)
        base = feeds.get(entry["name"])
        if base is None:
            missing = sorted({"kind", "format", "url"} - set(entry))
            if missing:
                raise ConfigError(f"{path}: {where} ({entry['name']}) lacks {', '.join(missing)}")
            feeds[entry["name"]] = Feed(**{**defaults, **entry})
        else:
            feeds[entry["name"]] = replace(base, **entry)
    for feed in feeds.values():
        _check_feed(path, feed)
    return list(feeds.values())


def load_resolver(ws: Workspace) -> str | None:
    """``[defaults] resolver`` of feeds.toml: an address, "system", or None (not set)."""
    path = ws.root / FEEDS_FILE
    if not path.exists():
        return None
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    section = data.get("defaults", {})
    _check_defaults(path, section)
    value = section.get("resolver")
    return value if isinstance(value, str) and value else None


def _check_defaults(path: Path, section: object) -> None:
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: `defaults` must be a table ([defaults])")
    bad = sorted(set(section) - _DEFAULTS_KEYS)
    if bad:
        raise ConfigError(f"{path}: [defaults] unknown key(s) {', '.join(bad)}")
    value = section.get("resolver")
    if value is None:
        return
    if not isinstance(value, str):
        raise ConfigError(f"{path}: [defaults] resolver must be a string")
    if value not in ("", "system"):
        resolve.parse_server(value)  # a bad address is a configuration error now


def _check_types(path: Path, where: str, values: dict[str, Any]) -> None:
    for key, value in values.items():
        if key in _LIMIT_TYPES:
            if isinstance(value, bool) or not isinstance(value, _LIMIT_TYPES[key]):
                raise ConfigError(f"{path}: {where}: {key} must be a number")
            if value <= 0:
                raise ConfigError(f"{path}: {where}: {key} must be positive")
        elif key in ("enabled", "dated", "builtin_feeds") and not isinstance(value, bool):
            raise ConfigError(f"{path}: {where}: {key} must be true or false")
        elif key in _FEED_KEYS and key not in ("enabled", "dated") and not isinstance(value, str):
            raise ConfigError(f"{path}: {where}: {key} must be a string")


def _check_feed(path: Path, feed: Feed) -> None:
    k = KINDS.get(feed.kind)
    if k is None:
        raise ConfigError(f"{path}: feed {feed.name}: unknown kind {feed.kind!r}")
    if feed.format not in k.formats:
        raise ConfigError(
            f"{path}: feed {feed.name}: kind {feed.kind} has no format {feed.format!r} "
            f"(formats: {', '.join(k.formats)})"
        )
    if not feed.url.lower().startswith(("http://", "https://")):
        raise ConfigError(f"{path}: feed {feed.name}: url must be http:// or https://")


@dataclass(frozen=True)
class FeedResult:
    feed: Feed
    ok: bool
    snapshot: Snapshot | None = None  # the new (or unchanged) snapshot
    previous: Snapshot | None = None  # what was current before; kept on failure
    unchanged: bool = False
    error: str | None = None
    seconds: float = 0.0
    #: the dns-resolutions snapshot stored from a domain list, or why there is none
    resolutions: Snapshot | None = None
    resolve_error: str | None = None

    def line(self) -> str:
        if not self.ok:
            kept = f"; kept {self.previous.id}" if self.previous else "; no previous snapshot"
            return f"FAILED {self.feed.name}: {self.error}{kept}"
        assert self.snapshot is not None
        state = "unchanged" if self.unchanged else "new"
        text = (
            f"ok {self.feed.name}: {state} {self.snapshot.id} "
            f"({self.snapshot.rows:,} rows, {self.seconds:.1f} s)"
        )
        if self.resolutions is not None:
            text += f"; resolved {self.resolutions.id} ({self.resolutions.rows:,} addresses)"
        elif self.resolve_error:
            text += f"; not resolved: {self.resolve_error}"
        return text


def update(
    ws: Workspace,
    names: list[str] | None = None,
    *,
    opener: Fetcher = fetch,
    store: IntelStore | None = None,
    on_start: Callable[[Feed], None] | None = None,
) -> list[FeedResult]:
    """Fetch the named feeds (default: every enabled one); one result per feed."""
    configured = {f.name: f for f in load_feeds(ws)}
    if names:
        unknown = [n for n in names if n not in configured]
        if unknown:
            raise ConfigError(
                f"unknown feed(s) {', '.join(unknown)}; feeds: {', '.join(configured)}"
            )
        chosen = [configured[n] for n in names]
    else:
        chosen = [f for f in configured.values() if f.enabled]
    store = store or IntelStore(ws)
    resolver = load_resolver(ws)
    results = []
    for feed in chosen:
        if on_start is not None:
            on_start(feed)
        result = _update_one(ws, store, feed, opener)
        if result.ok and resolver is not None and feed.kind in resolve.DOMAIN_CATEGORIES:
            result = _resolve(ws, store, result, None if resolver == "system" else resolver)
        results.append(result)
    return results


def _resolve(
    ws: Workspace, store: IntelStore, result: FeedResult, server: str | None
) -> FeedResult:
    """Store the addresses of a domain list's names; a failure only annotates the result."""
    feed, snap = result.feed, result.snapshot
    assert snap is not None
    now = datetime.now(UTC)
    work = ws.intel_dir / "downloads" / uuid.uuid4().hex
    try:
        names = getattr(store.load(snap), "domains", None)
        if not isinstance(names, list):
            raise ConfigError(f"{snap.id} holds no domain names")
        pairs = resolve.resolve_names(names, server)
        if not pairs:
            return replace(result, resolve_error="no name resolved to an address")
        work.mkdir(parents=True)
        path = work / f"{feed.name}.resolved.csv"
        resolve.write_resolutions(path, pairs, resolve.DOMAIN_CATEGORIES[feed.kind], now)
        res = store.add(
            resolve.KIND, path, name=f"{feed.name}.resolved", fmt="csv",
            valid_from=now, valid_to=now + timedelta(days=feed.valid_for_days),
            source=f"dns {server or 'system resolver'}: {snap.id}", retrieved_at=now,
        )  # fmt: skip
    except Exception as exc:  # resolution is extra: the domain snapshot stands
        return replace(result, resolve_error=str(exc) or type(exc).__name__)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return replace(result, resolutions=res)


def _latest(store: IntelStore, feed: Feed) -> Snapshot | None:
    mine = [s for s in store.list(feed.kind) if s.name == feed.name and not s.builtin]
    return max(mine, key=lambda s: (s.retrieved_at, s.id)) if mine else None


def _update_one(ws: Workspace, store: IntelStore, feed: Feed, opener: Fetcher) -> FeedResult:
    started = time.monotonic()
    previous = _latest(store, feed)
    now = datetime.now(UTC)
    work = ws.intel_dir / "downloads" / uuid.uuid4().hex
    try:
        path = opener(
            feed.url, work, max_bytes=feed.max_bytes, timeout=feed.timeout, max_ratio=feed.max_ratio
        )
        try:
            snap = store.add(
                feed.kind, path, name=feed.name, fmt=feed.format, source=feed.url, retrieved_at=now
            )
        except InputError as exc:  # name the feed, not the temporary download
            raise InputError(feed.url, exc.where, exc.problem) from None
        unchanged = snap.retrieved_at != now
        if feed.is_dated:
            snap = _date(store, feed, snap, previous, now, unchanged)
    except Exception as exc:  # any failure of one feed is reported; the others go on
        return FeedResult(
            feed, False, previous=previous, error=str(exc) or type(exc).__name__,
            seconds=time.monotonic() - started,
        )  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return FeedResult(
        feed, True, snap, previous, unchanged=unchanged, seconds=time.monotonic() - started
    )


def _date(
    store: IntelStore,
    feed: Feed,
    snap: Snapshot,
    previous: Snapshot | None,
    now: datetime,
    unchanged: bool,
) -> Snapshot:
    """Give a dated snapshot its interval and end the previous one where it starts.

    The file's own date (a consensus's valid-after) wins over the retrieval time;
    an unchanged download re-confirms the latest snapshot until now + valid_for_days.
    """
    span = timedelta(days=feed.valid_for_days)
    start = snap.valid_from or now
    if unchanged:
        if previous is None or snap.id != previous.id:
            return snap  # an older snapshot's content came back; leave history alone
        end = max(snap.valid_to or now, now + span)
    else:
        end = snap.valid_to or start + span
    if (start, end) != (snap.valid_from, snap.valid_to):
        snap = store.set_validity(snap.id, start, max(end, start + timedelta(seconds=1)))
    if (
        not unchanged
        and previous is not None
        and previous.id != snap.id
        and (previous.valid_from is None or previous.valid_from < start)
        and (previous.valid_to is None or previous.valid_to > start)
    ):
        store.set_validity(previous.id, previous.valid_from, start)
    return snap
