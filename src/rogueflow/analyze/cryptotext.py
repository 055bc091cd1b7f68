"""Wording and confidence checks of the per-coin crypto findings (:mod:`.crypto`)."""

from __future__ import annotations

from rogueflow.addr import format_one
from rogueflow.analyze.context import Scope
from rogueflow.analyze.cryptoevidence import Coin
from rogueflow.findings import (
    Check,
    Finding,
    Metric,
    Provenance,
    Table,
    assess,
    fold,
    grade,
    num,
    pct,
)

RATE_METHOD = (
    "mean sessions per local day with data; 95% interval on the log scale from the daily "
    "variance (floored at Poisson)"
)
RATIO_METHOD = (
    "mean daily sessions after ÷ baseline; 95% delta-method interval on the log ratio "
    "(overdispersion-aware, floored at Poisson)"
)
ALTERNATIVES = (
    "Researchers' honeypots or scanners: sessions opened from outside to the territory on "
    "mining or node ports look like activity but are someone else's (see share_inbound).",
    "Misattributed pool or node addresses: a pool address list or a shared hosting/CDN "
    "address can label unrelated flows; sessions named by pool host name, TLS SNI or Stratum "
    "payload are stronger than those labelled by address or port alone.",
    "One inside address can be a NAT or proxy hiding many machines (the single-fronting-IP "
    "flag counts addresses, not machines), or many addresses can be one machine moving.",
    "Blockchain P2P alone shows a node (a wallet, an exchange client, a block explorer), "
    "not necessarily mining; DNS lookups of pool names show interest, not mining.",
    "A change in collection (a new sensor, sampling, a routing change that moves the traffic "
    "past or away from the vantage point) changes counts without any change in use.",
)
MIN_SESSIONS, FEW_SESSIONS, MIN_DAYS, MIN_BASE_SESSIONS = 100, 20, 14, 10


def _label(c: Coin) -> str:
    return c.name if c.coin == "UNKNOWN" else f"{c.name} ({c.coin})"


def _and(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def significant(m: dict[str, Metric]) -> bool | None:
    """Whether the multiplier's interval excludes ×1 (None without a multiplier)."""
    r = m.get("multiplier")
    if r is None or r.low is None or r.high is None:
        return None
    return r.low > 1 or r.high < 1


def confidence_checks(c: Coin, m: dict[str, Metric]) -> tuple[list[Check], str]:
    """The checks behind a coin finding, and the level they start from."""
    n = c.tot["sessions"]
    if n == 0:
        return [Check(False, "", "no sessions: lookups of pool names alone are not mining", 0)], (
            "low"
        )
    active = int(m["days_with_sessions"].value or 0)
    port_only = float(m["share_port_only"].value or 0.0)
    checks = [
        Check(
            n >= MIN_SESSIONS,
            f"{num(n)} sessions",
            f"only {n} sessions: too few to date or size the activity",
            1 if n >= FEW_SESSIONS else 2,
        ),
        Check(active >= MIN_DAYS, f"sessions on {active} days", f"sessions on only {active} days"),
        Check(
            c.onset is not None,
            "the activity is sustained (an onset is found)",
            "the activity is sporadic: no sustained onset",
        ),
        Check(
            port_only <= 0.1,
            "sessions are labelled by names, payload, address lists or session behaviour "
            f"({pct(m['share_named'].value)} named, {pct(m['share_behaviour'].value)} by "
            "behaviour), not by port alone",
            f"{pct(port_only)} of sessions are labelled by port number alone",
        ),
        Check(
            float(m["share_inbound"].value or 0.0) <= 0.5,
            "",
            f"{pct(m['share_inbound'].value)} of sessions were opened from outside (scanners "
            "or researchers' honeypots?)",
        ),
        Check(
            c.max_rate <= 1,
            "",
            f"flows are sampled (up to 1:{c.max_rate}): the first sampled session can follow "
            "the real onset and small counts are noisy",
        ),
    ]
    if c.onset is not None and not c.onset.censored and c.onset.index > 0:
        prev, on = c.days[c.onset.index - 1], c.days[c.onset.index]
        checks.append(
            Check(
                (on - prev).days <= 2,
                "the days before the onset have data",
                f"no data between {prev} and the onset: it may be earlier",
            )
        )
    elif c.onset is not None:
        checks.append(
            Check(False, "", "active from the first days of the data: the onset is earlier", 0)
        )
    if significant(m) and c.baseline is not None:
        base = int(c.y[c.baseline.lo : c.baseline.hi].sum())
        checks.append(
            Check(
                base >= MIN_BASE_SESSIONS,
                f"the multiplier's 95% interval excludes no change; the baseline holds {base} "
                "sessions",
                f"the baseline holds only {base} sessions, so the multiplier is imprecise",
            )
        )
    for label in ("baseline", "after"):
        w = c.window(label)
        if w is not None and w.days:
            d0, d1 = c.span(w)
            cal = (d1 - d0).days + 1
            checks.append(
                Check(
                    w.days >= 0.8 * cal,
                    "",
                    f"the {label} window has data on only {w.days} of {cal} days",
                )
            )
    unl = c.unlabelled.get("all", 0)
    checks.append(
        Check(
            unl == 0,
            "",
            f"the same hosts sent {num(unl)} unclassified flows to pool ports: counts "
            "understate the activity (ratios hold if the mix is stable)",
            0,
        )
    )
    return checks, "high"


def _mix(c: Coin) -> str:
    mining, p2p = c.tot["mining"], c.tot["sessions"] - c.tot["mining"]
    parts = []
    if mining:
        pools = f"pools {_and(c.pools[:4])}" if c.pools else "no pool name"
        parts.append(f"{num(mining)} mining sessions (crypto.mining; {pools})")
    if p2p:
        ports = ", ".join(sorted(c.p2p_ports))
        parts.append(
            f"{num(p2p)} blockchain P2P sessions (crypto.p2p; {ports}, {num(c.peers)} peers)"
        )
    return _and(parts)


def _levels(c: Coin, m: dict[str, Metric]) -> str:
    if c.after is None:
        return ""
    a = m["after_sessions_per_day"]
    a0, a1 = c.span(c.after)
    mult, sig = m.get("multiplier"), significant(m)
    if c.baseline is None:
        return f" It averaged {a.value:.3g} sessions per day in {a0} to {a1}."
    b0, b1 = c.span(c.baseline)
    b = m["baseline_sessions_per_day"]
    windows = f"the baseline {b0} to {b1} ({c.baseline.how}) and {a0} to {a1} ({c.after.how})"
    if mult is None or mult.value is None:
        return (
            f" It averaged {a.value:.3g} sessions per day from {a0} to {a1}, against none on "
            f"the {c.baseline.days} days with data from {b0} to {b1} ({c.baseline.how}; 95% "
            f"upper bound {b.high or 0:.2g} per day)."
        )
    interval = f"95% interval ×{mult.low or 0:.1f}–×{mult.high or 0:.1f}"
    if not sig:
        return (
            f" Mean daily sessions did not change significantly between {windows}: "
            f"{b.value:.3g} and {a.value:.3g} per day (×{mult.value:.2f}, {interval})."
        )
    return (
        f" Mean daily sessions {fold(float(mult.value))} between {windows}: from "
        f"{b.value:.3g} to {a.value:.3g} per day ({interval})."
    )


def statement(scope: Scope, c: Coin, m: dict[str, Metric]) -> str:
    where = f"networks in {scope.territory.name}"
    lookups = ""
    if c.tot["lookups"]:
        lookups = (
            f" {num(c.tot['lookups'])} DNS lookups of its pool names are supporting evidence "
            "only and not counted as sessions."
        )
    if c.tot["sessions"] == 0:
        return (
            f"no {_label(c)} mining or blockchain P2P sessions were seen from {where}: only "
            f"{num(c.tot['lookups'])} DNS lookups of its pool names, and a lookup alone is not "
            "mining."
        )
    if c.onset is None:
        return (
            f"{_label(c)} activity from {where} was sporadic, never sustained: {_mix(c)} on "
            f"{m['days_with_sessions'].value} days from {c.first_day}.{lookups}"
        )
    on = c.days[c.onset.index]
    text = f"{_label(c)} activity from {where} — {_mix(c)} — "
    if c.onset.censored:
        text += f"was present from the first days of the data ({on}); its onset is earlier."
    else:
        strays = (
            f"; {c.onset.sessions_before} stray session"
            f"{'s' if c.onset.sessions_before != 1 else ''} before it, the first on "
            f"{c.days[c.onset.first_index]}"
            if c.onset.sessions_before
            else ""
        )
        first30 = m["sessions_per_day_first_30_days"].value or 0.0
        text += (
            f"began on {on} (local date, first day of sustained activity{strays}), "
            f"from none before to {first30:.2g} sessions per day over the next 30 days."
        )
    text += _levels(c, m)
    if c.fronting:
        text += (
            f" Every session in the after window came from one inside address, "
            f"{format_one(next(iter(c.hosts_after)))}: a single fronting IP (a NAT or proxy "
            "may hide several machines behind it)."
        )
    else:
        shown = [format_one(h) for h in sorted(c.hosts_after, key=lambda h: -c.hosts_after[h])]
        more = f" and {len(shown) - 5} more" if len(shown) > 5 else ""
        text += f" {len(shown)} inside addresses had sessions ({_and(shown[:5])}{more})."
    unl = c.unlabelled.get("all", 0)
    if unl:
        text += (
            f" The same hosts also sent {num(unl)} unclassified flows to pool-convention "
            "ports, likely unlabelled mining, not counted."
        )
    return text + lookups


def none_finding(scope: Scope, prov: Provenance) -> Finding:
    """No coin seen: a 'nothing found' finding, low because absence rests on labels."""
    conf = grade(
        [
            Check(
                False,
                "",
                "absence of labelled sessions rests on the classifier: unlabelled Stratum, or "
                "mining through a VPN, Tor or a proxy, would not show",
                2,
            )
        ]
    )
    return Finding(
        id="crypto.mining",
        title="Cryptocurrency mining and blockchain P2P",
        statement=f"{assess(conf.level)} no mining or blockchain P2P sessions of any coin, "
        f"and no lookups of mining pool names, were seen from networks in "
        f"{scope.territory.name} between {scope.start} and {scope.end}.",
        period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
        metrics={"sessions": Metric(0, unit="sessions", method="crypto.mining or crypto.p2p")},
        confidence=conf,
        evidence=(Table("Coins seen", ("coin", "sessions"), ()),),
        charts=(),
        provenance=prov,
        alternatives=ALTERNATIVES,
        headline=("sessions",),
        detected=False,
    )
