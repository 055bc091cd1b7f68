"""What the crypto analysis gathered per coin, and its evidence: tables, indicators, chart.

:class:`CryptoData` holds the aggregates of :mod:`rogueflow.analyze.crypto`'s queries;
:class:`Coin` one coin's view of them (series, windows, hosts) once measured.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from rogueflow.addr import format_one
from rogueflow.analyze import coinseries as cs
from rogueflow.findings import Indicator, Metric, Table, num

Floats = npt.NDArray[np.float64]
ONSET_CONTEXT = 7  # days with data shown either side of the onset
MAX_HOST_INDICATORS = 20
COIN_NAMES = {
    "BTC": "Bitcoin",
    "XMR": "Monero",
    "LTC": "Litecoin",
    "ETH": "Ethereum",
    "ETC": "Ethereum Classic",
    "ZEC": "Zcash",
    "DASH": "Dash",
    "DOGE": "Dogecoin",
    "BCH": "Bitcoin Cash",
    "RVN": "Ravencoin",
    "XNO": "Nano",
    "UNKNOWN": "an unidentified coin",
}


def iso(t: datetime | None) -> str | None:
    """A naive UTC timestamp of the view as ISO 8601 with a Z."""
    return None if t is None else t.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _ip_kind(text: str) -> str:
    return "ipv6-addr" if ":" in text else "ipv4-addr"


@dataclass
class CryptoData:
    """Aggregates of the crypto queries (all coins)."""

    days: list[date] = field(default_factory=list)  # local days with data
    day_flows: dict[date, int] = field(default_factory=dict)
    coins: list[str] = field(default_factory=list)
    daily: dict[str, dict[date, dict[str, Any]]] = field(default_factory=lambda: defaultdict(dict))
    host_days: dict[str, dict[bytes, dict[date, int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )
    host_span: dict[tuple[str, bytes], list[datetime]] = field(default_factory=dict)
    remotes: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    wallets: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    lookups: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    unlabelled: dict[bytes, dict[date, dict[int, int]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )
    inferred: dict[str, str] = field(default_factory=dict)  # pool -> coin read from its name
    max_rate: int = 1

    def series(self, coin: str, key: str) -> Floats:
        """A per-day count of one coin over the days with data (0 where none)."""
        rows = self.daily[coin]
        return np.array([float(rows[d][key] or 0) if d in rows else 0.0 for d in self.days])

    def hosts(self, coin: str, lo: date = date.min, hi: date = date.max) -> dict[bytes, int]:
        """Inside addresses with sessions between two local days, with their sessions."""
        out: dict[bytes, int] = {}
        for h, per_day in self.host_days[coin].items():
            n = sum(v for d, v in per_day.items() if lo <= d <= hi)
            if n:
                out[h] = n
        return out


@dataclass
class Coin:
    """One coin as measured: the series, onset, windows and hosts behind its finding."""

    coin: str
    days: list[date]
    y: Floats  # sessions per day with data
    tot: dict[str, int]
    onset: cs.Onset | None = None
    baseline: cs.Window | None = None
    after: cs.Window | None = None
    hosts: dict[bytes, int] = field(default_factory=dict)
    hosts_after: dict[bytes, int] = field(default_factory=dict)
    fronting: bool = False
    pools: list[str] = field(default_factory=list)
    p2p_ports: dict[str, int] = field(default_factory=dict)
    peers: int = 0
    unlabelled: dict[str, int] = field(default_factory=dict)
    max_rate: int = 1

    @property
    def name(self) -> str:
        return COIN_NAMES.get(self.coin, self.coin)

    def span(self, w: cs.Window) -> tuple[date, date]:
        return self.days[w.lo], self.days[w.hi - 1]

    def window(self, label: str) -> cs.Window | None:
        return self.baseline if label == "baseline" else self.after

    @property
    def first_day(self) -> date | None:
        active = np.flatnonzero(self.y)
        return self.days[int(active[0])] if len(active) else None


def evidence(
    data: CryptoData, c: Coin, m: dict[str, Metric]
) -> tuple[tuple[Table, ...], tuple[Indicator, ...]]:
    """The coin's evidence tables and indicators; fills c.pools/p2p_ports/peers and metrics."""
    tables = _onset_and_windows(data, c, m)
    inds: list[Indicator] = []
    role = "fronting host" if c.fronting else "internal host with sessions"
    host_rows = []
    for h, n in sorted(c.hosts.items(), key=lambda kv: (-kv[1], kv[0])):
        first, last = data.host_span[(c.coin, h)]
        text = format_one(h)
        host_rows.append((text, num(n), num(c.hosts_after.get(h, 0)), iso(first), iso(last)))
        if len(inds) < MAX_HOST_INDICATORS:
            inds.append(Indicator(_ip_kind(text), text, role, iso(first), iso(last), n, c.coin))
    if host_rows:
        tables.append(
            Table(
                "Internal hosts",
                ("address", "sessions", "in the after window", "first (UTC)", "last (UTC)"),
                tuple(host_rows),
                "A NAT or proxy front counts as one host however many machines are behind it.",
            )
        )
    pools: dict[str, list[Any]] = {}
    servers: dict[str, list[Any]] = {}
    server_rows: list[tuple[Any, ...]] = []
    peers: set[bytes] = set()
    ports: dict[str, int] = defaultdict(int)
    for r in data.remotes[c.coin]:
        if r["category"] != "crypto.mining":
            peers.add(r["remote_addr"])
            proto = {6: "tcp", 17: "udp"}.get(r["proto"], str(r["proto"]))
            ports[f"{r['remote_port']}/{proto}"] += int(r["sessions"])
            continue
        text = format_one(r["remote_addr"])
        server_rows.append(
            (
                text,
                r["remote_port"],
                r["pool"] or "",
                num(r["sessions"]),
                r["hosts"],
                iso(r["first_ts"]),
                iso(r["last_ts"]),
            )
        )
        for key, book in ((text, servers), (r["pool"], pools)):
            if key:
                e = book.setdefault(key, [0, r["first_ts"], r["last_ts"]])
                e[0] += int(r["sessions"])
                e[1], e[2] = min(e[1], r["first_ts"]), max(e[2], r["last_ts"])
    for text, (n, first, last) in sorted(servers.items()):
        inds.append(Indicator(_ip_kind(text), text, "mining pool server", iso(first), iso(last), n))
    for name, (n, first, last) in sorted(pools.items()):
        inds.append(Indicator("domain-name", name, "mining pool", iso(first), iso(last), n))
    for r in data.lookups[c.coin] if c.tot["sessions"] else ():  # no indicators from lookups alone
        if r["name"] not in pools and "." in r["name"]:
            role = "mining pool name looked up (no session seen)"
            inds.append(
                Indicator("domain-name", r["name"], role, iso(r["first_ts"]), iso(r["last_ts"]))
            )
    wallet_coin = None if c.coin == "UNKNOWN" else c.coin
    for r in data.wallets[c.coin]:
        inds.append(
            Indicator(
                "wallet",
                r["wallet"],
                "payout wallet",
                iso(r["first_ts"]),
                iso(r["last_ts"]),
                r["flows"],
                wallet_coin,
            )
        )
    c.pools, c.p2p_ports, c.peers = sorted(pools), dict(ports), len(peers)
    for key, n, unit, method in (
        ("pools", len(pools), "pools", "distinct pool names in mining sessions"),
        ("pool_servers", len(servers), "servers", "remote ends of mining sessions"),
        ("p2p_peers", len(peers), "peers", "distinct remote ends of P2P sessions"),
        ("wallets", len(data.wallets[c.coin]), "wallets", "distinct wallets seen"),
    ):
        m[key] = Metric(n, unit=unit, method=method)
    if server_rows:
        cols = ("server", "port", "pool", "sessions", "hosts", "first (UTC)", "last (UTC)")
        tables.append(Table("Mining pool servers", cols, tuple(sorted(server_rows))))
    if ports:
        note = f"{len(peers)} distinct peers (public nodes, so not listed as indicators)."
        tables.append(Table("Blockchain P2P", ("port", "sessions"), tuple(ports.items()), note))
    rows: tuple[tuple[Any, ...], ...]
    if data.wallets[c.coin]:
        rows = tuple(
            (r["wallet"], r["pool"] or "", r["flows"], iso(r["first_ts"]))
            for r in data.wallets[c.coin]
        )
        tables.append(Table("Wallets", ("wallet", "pool", "flows", "first (UTC)"), rows))
    if data.lookups[c.coin]:
        rows = tuple(
            (r["name"], num(r["lookups"]), r["hosts"], iso(r["first_ts"]), iso(r["last_ts"]))
            for r in sorted(data.lookups[c.coin], key=lambda r: -int(r["lookups"]))
        )
        tables.append(
            Table(
                "Pool-name lookups (supporting evidence, not sessions)",
                ("name", "lookups", "hosts", "first (UTC)", "last (UTC)"),
                rows,
            )
        )
    unlabelled(data, c, m, tables)
    return tuple(tables), tuple(inds)


def _onset_and_windows(data: CryptoData, c: Coin, m: dict[str, Metric]) -> list[Table]:
    days, rows = data.days, data.daily[c.coin]
    tables: list[Table] = []
    if c.onset is not None:
        at = c.onset.index
        lo, hi = max(0, at - ONSET_CONTEXT), min(len(days), at + ONSET_CONTEXT + 1)
        cols = ("local day", "territory flows", "sessions", "mining", "P2P", "peers", "hosts")
        cells = tuple(
            (
                days[i].isoformat() + (" ◀ onset" if i == at else ""),
                num(data.day_flows[days[i]]),
                *_day_cells(rows.get(days[i])),
            )
            for i in range(lo, hi)
        )
        tables.append(
            Table(
                f"Days with data around the onset ({days[at]})",
                (*cols, "lookups"),
                cells,
                "Every local day with at least one territory flow is listed (a missing day is "
                f"a gap in collection). First session: {days[c.onset.first_index]}; "
                f"{c.onset.sessions_before} sessions before the sustained onset.",
            )
        )
    win_rows: list[tuple[Any, ...]] = []
    for label in ("baseline", "after"):
        w = c.window(label)
        if w is None or f"{label}_sessions_per_day" not in m:
            continue
        d0, d1 = c.span(w)
        met = m[f"{label}_sessions_per_day"]
        cal = (d1 - d0).days + 1
        win_rows.append(
            (
                label,
                f"{d0} to {d1}",
                w.how,
                w.days,
                f"{100 * w.days / cal:.0f}%",
                num(c.y[w.lo : w.hi].sum()),
                f"{met.value:.3g} ({met.low or 0:.3g}–{met.high or 0:.3g})",
                len(data.hosts(c.coin, d0, d1)),
            )
        )
    if win_rows:
        wcols = ("window", "local days", "chosen", "days with data", "coverage", "sessions")
        tables.append(
            Table(
                "Baseline and after windows",
                (*wcols, "sessions/day (95% CI)", "internal hosts"),
                tuple(win_rows),
                "Means are over local days with data; coverage = days with data ÷ calendar days.",
            )
        )
    return tables


def _day_cells(r: dict[str, Any] | None) -> tuple[int, ...]:
    if r is None:
        return (0, 0, 0, 0, 0, 0)
    s, mi = int(r["sessions"]), int(r["mining"])
    return (s, mi, s - mi, int(r["peers"]), int(r["hosts"]), int(r["lookups"]))


def unlabelled(data: CryptoData, c: Coin, m: dict[str, Metric], tables: list[Table]) -> None:
    """Unclassified flows of the coin's hosts to pool-convention ports: likely sessions the
    classifier missed. Shown per window, never counted (a cross-check of the multiplier)."""
    rows, counts = [], {}
    for label in ("baseline", "after", "all"):
        w = c.window(label) if label != "all" else None
        if label != "all" and w is None:
            continue
        lo, hi = c.span(w) if w is not None else (date.min, date.max)
        n_days = w.days if w is not None else len(data.days)
        ports: dict[int, int] = defaultdict(int)
        for h in c.hosts:
            for d, per_port in data.unlabelled.get(h, {}).items():
                if lo <= d <= hi:
                    for p, n in per_port.items():
                        ports[p] += n
        counts[label] = sum(ports.values())
        shown = ", ".join(f"{p} ({n})" for p, n in sorted(ports.items()))
        rows.append((label, num(counts[label]), f"{counts[label] / max(n_days, 1):.3g}", shown))
    m["unlabelled_pool_port_flows"] = Metric(
        counts["all"],
        unit="flows",
        method="unclassified flows of the coin's hosts to pool-convention ports (not counted)",
    )
    c.unlabelled = counts
    if counts["all"]:
        tables.append(
            Table(
                "Unclassified flows of these hosts to pool-convention ports (not counted)",
                ("window", "flows", "per day with data", "ports (flows)"),
                tuple(rows),
                "Likely mining sessions the classifier did not label (plain Stratum without a "
                "name). A host running several coins is listed under each.",
            )
        )


def chart(data: CryptoData, c: Coin) -> dict[str, Any]:
    """The coin's daily sessions (mining / P2P) with weekly means, windows and the onset."""
    days, y = data.days, c.y
    mining = data.series(c.coin, "mining")
    by_week: dict[date, list[float]] = defaultdict(list)
    for d, v in zip(days, y, strict=True):
        by_week[d - timedelta(days=d.weekday())].append(float(v))
    windows, markers = [], []
    for label in ("baseline", "after"):
        w = c.window(label)
        if w is not None:
            d0, d1 = c.span(w)
            windows.append((label, d0.isoformat(), d1.isoformat(), float(y[w.lo : w.hi].mean())))
    if c.onset is not None:
        markers.append((days[c.onset.index].isoformat(), f"onset {days[c.onset.index]}"))
        if c.onset.first_index != c.onset.index:
            markers.append((days[c.onset.first_index].isoformat(), "first session"))
    weeks = sorted(by_week)
    return {
        "id": f"crypto.{c.coin}.daily",
        "kind": "coin_activity",
        "title": f"{c.name} sessions per local day (mining and P2P)",
        "caption": "Bars: sessions per local day with data (DNS lookups excluded); line: weekly "
        "mean per day with data; shaded: baseline and after windows; dotted: onset.",
        "data": {
            "days": [d.isoformat() for d in days],
            "series": {"mining": mining.tolist(), "P2P": (y - mining).tolist()},
            "weeks": [w.isoformat() for w in weeks],
            "weekly": [float(np.mean(by_week[w])) for w in weeks],
            "windows": windows,
            "markers": markers,
        },
    }
