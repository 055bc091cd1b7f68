"""Cryptocurrency mining and blockchain P2P, one finding per coin (``crypto.mining.<COIN>``).

What is counted (the demo's ground truth measures the same things from its rows):

* a **session** is a territory flow labelled ``crypto.mining`` or ``crypto.p2p`` that
  is not a name lookup. DNS flows for a pool's name (dns_query set, app label
  ``dns`` or port 53/853) carry the pool's label, but a lookup is not mining: they
  are reported apart as supporting evidence and never counted as sessions;
* the coin is the flow's ``coin``; a multi-coin pool's coin is read from its host
  name by the built-in service taxonomy (``xmr-eu1.nanopool.org`` → XMR); flows of
  no known coin form ``crypto.mining.UNKNOWN``;
* days are **local** days (the territory's zone history) with data, i.e. with at
  least one territory flow; a day without data is a collection gap, not a quiet day;
  ``--baseline`` dates are read as local days here;
* the onset, level segments and windows are defined in
  :mod:`rogueflow.analyze.coinseries`; the multiplier is mean daily sessions in the
  after window over the baseline's (:func:`rogueflow.analyze.stats.ratio_of_means`);
* internal hosts and the single-fronting-IP flag count distinct inside addresses
  with sessions in the after window (a NAT or proxy front is one address however
  many miners sit behind it).

All aggregation is SQL. The local days with data come from the scope's trend (the
roll-ups where they answer); every other query reads only crypto-labelled flows.
"""

from __future__ import annotations

import functools
from datetime import timedelta

from rogueflow.analyze import coinseries as cs
from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.context import VIEW, QueryRecord, Scope, one_of
from rogueflow.analyze.cryptoevidence import Coin, CryptoData, chart, evidence
from rogueflow.analyze.cryptotext import (
    ALTERNATIVES,
    RATE_METHOD,
    RATIO_METHOD,
    confidence_checks,
    none_finding,
    statement,
)
from rogueflow.analyze.engine import sql_string
from rogueflow.detect.behaviour import MINING_PORTS
from rogueflow.findings import Finding, Metric, assess, grade
from rogueflow.intel.indicators import ServiceCatalog

CRYPTO = one_of("category", ("crypto.mining", "crypto.p2p"))
LOOKUP = (
    "(dns_query IS NOT NULL OR COALESCE(app_label, '') = 'dns'"
    " OR COALESCE(src_port, 0) IN (53, 853) OR COALESCE(dst_port, 0) IN (53, 853))"
)
SESSION = f"{CRYPTO} AND NOT {LOOKUP}"
CRYPTO_VIEW = "crypto_flows"
# label confidence floors: names/payload (0.9+), address lists (0.8), flow shape (≤ 0.75);
# below BEHAVIOUR a label rests on the port number alone (0.4)
NAMED, ADDRESS, BEHAVIOUR = 0.85, 0.78, 0.45
COUNTS = ("sessions", "mining", "lookups", "by_name", "by_address", "by_behaviour", "inbound")


class CryptoActivity:
    id = "crypto"
    title = "Cryptocurrency mining and blockchain P2P"

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        with scope.trace() as used:
            data = _collect(scope)
            if not data.coins:
                out.findings.append(none_finding(scope, provenance(scope, used)))
                return out
        for coin in data.coins:
            out.findings.append(_coin_finding(scope, data, coin, list(used), out))
        return out


# --- aggregates ------------------------------------------------------------------------


@functools.cache
def _catalog() -> ServiceCatalog:
    """The built-in service taxonomy (loaded once per process, only when a pool needs it)."""
    return ServiceCatalog.builtin()


def crypto_flows(scope: Scope) -> str:
    """The scope's mining and blockchain flows (:data:`CRYPTO`), materialised once: a
    few hundred thousand of the full demo's 23.7M flows, which the collection's six
    queries and each coin's two samples then read instead of each scanning the scope
    (0.3-0.5 s each)."""
    return scope.derived(CRYPTO_VIEW, f"SELECT * FROM {VIEW} WHERE {CRYPTO}")


def _coin_sql(scope: Scope, data: CryptoData) -> str:
    """SQL for a flow's coin: its ``coin``, a multi-coin pool's from its name, else UNKNOWN."""
    pools = scope.rows(
        "crypto: pools without a coin",
        f"SELECT DISTINCT pool FROM {crypto_flows(scope)} WHERE coin IS NULL AND pool IS NOT NULL",
    )
    for r in pools:
        coin = _catalog().coin_of(str(r["pool"]))
        if coin:
            data.inferred[str(r["pool"])] = coin
    if not data.inferred:
        return "COALESCE(coin, 'UNKNOWN')"
    cases = " ".join(
        f"WHEN {sql_string(p)} THEN {sql_string(c)}" for p, c in sorted(data.inferred.items())
    )
    return f"COALESCE(coin, CASE pool {cases} END, 'UNKNOWN')"


def _coin_where(data: CryptoData, coin: str) -> str:
    """SQL selecting one coin's flows (the coin expression inverted)."""
    if coin == "UNKNOWN":
        known = ", ".join(map(sql_string, data.inferred)) or "''"
        return f"coin IS NULL AND (pool IS NULL OR pool NOT IN ({known}))"
    pools = [p for p, c in data.inferred.items() if c == coin]
    extra = f" OR (coin IS NULL AND pool IN ({', '.join(map(sql_string, pools))}))" if pools else ""
    return f"(coin = {sql_string(coin)}{extra})"


def _collect(scope: Scope) -> CryptoData:
    data = CryptoData()
    coin = _coin_sql(scope, data)
    flows = crypto_flows(scope)
    ses = f"CASE WHEN {LOOKUP} THEN 0 ELSE 1 END"
    # local days with data from the trend; each coin's days from its own flows only (one
    # pass over every flow for both took 5.5 s of the full demo's report, these 1.0 s)
    for r in scope.rows(
        "crypto: flows per local day",
        f"SELECT local_day, {scope.trend.flows} AS flows FROM {scope.trend.view} GROUP BY 1",
    ):
        data.day_flows[r["local_day"]] = int(r["flows"])
    for r in scope.rows(
        "crypto: sessions and lookups per coin and local day",
        f"""
        SELECT local_day, {coin} AS coin, count(*) AS flows,
               SUM({ses}) AS sessions,
               SUM(CASE WHEN category = 'crypto.mining' THEN {ses} ELSE 0 END) AS mining,
               SUM(1 - {ses}) AS lookups,
               COUNT(DISTINCT CASE WHEN {ses} = 1 THEN remote_addr END) AS peers,
               COUNT(DISTINCT CASE WHEN {ses} = 1 THEN internal_addr END) AS hosts,
               SUM(CASE WHEN confidence >= {NAMED} THEN {ses} ELSE 0 END) AS by_name,
               SUM(CASE WHEN confidence >= {ADDRESS} AND confidence < {NAMED}
                   THEN {ses} ELSE 0 END) AS by_address,
               SUM(CASE WHEN confidence >= {BEHAVIOUR} AND confidence < {ADDRESS}
                   THEN {ses} ELSE 0 END) AS by_behaviour,
               SUM(CASE WHEN side = 'in' THEN {ses} ELSE 0 END) AS inbound
        FROM {flows} GROUP BY 1, 2""",
    ):
        data.daily[r["coin"]][r["local_day"]] = r
    data.days = sorted(data.day_flows)
    data.coins = sorted(data.daily, key=lambda c: (c == "UNKNOWN", c))
    if not data.coins:
        return data
    for r in scope.rows(
        "crypto: sessions per coin, internal host and local day",
        f"""
        SELECT {coin} AS coin, internal_addr, local_day, count(*) AS sessions,
               MIN(ts_utc) AS first_ts, MAX(ts_utc) AS last_ts
        FROM {flows} WHERE {SESSION} GROUP BY 1, 2, 3""",
    ):
        data.host_days[r["coin"]][r["internal_addr"]][r["local_day"]] = int(r["sessions"])
        span = data.host_span.setdefault((r["coin"], r["internal_addr"]), [r["first_ts"]] * 2)
        span[0], span[1] = min(span[0], r["first_ts"]), max(span[1], r["last_ts"])
    for r in scope.rows(
        "crypto: remote ends of sessions",
        f"""
        SELECT {coin} AS coin, category, pool, remote_addr, remote_port, proto,
               count(*) AS sessions, count(DISTINCT internal_addr) AS hosts,
               MIN(ts_utc) AS first_ts, MAX(ts_utc) AS last_ts
        FROM {flows} WHERE {SESSION} GROUP BY 1, 2, 3, 4, 5, 6
        ORDER BY 1, 2 NULLS FIRST, 3 NULLS FIRST, 4, 5, 6""",
    ):
        data.remotes[r["coin"]].append(r)
    for r in scope.rows(
        "crypto: wallets",
        f"""
        SELECT {coin} AS coin, wallet, pool, count(*) AS flows,
               MIN(ts_utc) AS first_ts, MAX(ts_utc) AS last_ts
        FROM {VIEW} WHERE wallet IS NOT NULL GROUP BY 1, 2, 3 ORDER BY 1, 2, 3 NULLS FIRST""",
    ):
        data.wallets[r["coin"]].append(r)
    for r in scope.rows(
        "crypto: pool-name lookups",
        f"""
        SELECT {coin} AS coin, COALESCE(dns_query, pool, server_name, '(unnamed)') AS name,
               count(*) AS lookups, count(DISTINCT internal_addr) AS hosts,
               MIN(ts_utc) AS first_ts, MAX(ts_utc) AS last_ts
        FROM {flows} WHERE {LOOKUP} GROUP BY 1, 2 ORDER BY 1, 2""",
    ):
        data.lookups[r["coin"]].append(r)
    ports = ", ".join(str(p) for p in sorted(MINING_PORTS))
    for r in scope.rows(
        "crypto: unclassified pool-port flows of hosts with sessions",
        f"""
        SELECT internal_addr, local_day, remote_port, count(*) AS flows FROM {VIEW}
        WHERE (category IS NULL OR category = 'unclassified') AND side = 'out'
          AND remote_port IN ({ports})
          AND internal_addr IN (SELECT internal_addr FROM {flows} WHERE {SESSION})
        GROUP BY 1, 2, 3""",
    ):
        per_day = data.unlabelled[r["internal_addr"]][r["local_day"]]
        per_day[int(r["remote_port"])] = int(r["flows"])
    data.max_rate = max((int(r["sampling_rate"] or 1) for r in scope.sampling()), default=1)
    return data


# --- one coin --------------------------------------------------------------------------


def _same_hosts(data: CryptoData, c: Coin) -> str:
    """For the unidentified coin: which identified coins the same inside addresses mine.

    Plain Stratum to a pool's address names no coin; when the hosts behind it also mine
    a named coin, the reader should see both findings as possibly one activity.
    """
    hosts = set(c.hosts_after or c.hosts)
    shared = []
    for other in data.coins:
        if other == "UNKNOWN":
            continue
        common = hosts & set(data.hosts(other))
        if common:
            shared.append((other, len(common)))
    if not shared:
        return ""
    if len(hosts) == 1:
        coins = " and ".join(f"{coin} (crypto.mining.{coin})" for coin, _ in shared)
        subject = "The same inside address also mines"
    else:
        coins = " and ".join(
            f"{coin} (crypto.mining.{coin}; {k} of the {len(hosts)} addresses)"
            for coin, k in shared
        )
        subject = "The same inside addresses also mine"
    return (
        f" {subject} {coins}: these sessions may be the same miners on pools the flows do not name."
    )


def _measure(scope: Scope, data: CryptoData, coin: str) -> tuple[Coin, dict[str, Metric]]:
    """Onset, windows, multiplier and hosts of one coin, as metrics."""
    days, y = data.days, data.series(coin, "sessions")
    c = Coin(coin, days, y, {k: int(data.series(coin, k).sum()) for k in COUNTS})
    c.max_rate = data.max_rate
    c.onset = cs.find_onset(y)
    if c.onset is not None:
        if scope.baseline is not None:
            c.baseline, c.after = cs.user_windows(days, y, c.onset, scope.baseline)
        else:
            c.baseline, c.after = cs.auto_windows(y, c.onset)
    n, mining = c.tot["sessions"], c.tot["mining"]
    m = {
        "sessions": Metric(n, unit="sessions", method="crypto.mining or crypto.p2p flows "
                           "that are not name lookups"),
        "mining_sessions": Metric(mining, unit="sessions", method="crypto.mining"),
        "p2p_sessions": Metric(n - mining, unit="sessions", method="crypto.p2p"),
        "dns_lookups": Metric(c.tot["lookups"], unit="flows", method="DNS flows for the "
                              "coin's pool names (supporting evidence, not sessions)"),
        "days_with_sessions": Metric(int((y > 0).sum()), unit="days", method="local days"),
    }  # fmt: skip
    if c.onset is not None:
        on_day = days[c.onset.index]
        m["sessions_before_onset"] = Metric(
            c.onset.sessions_before, unit="sessions", method="before the sustained onset"
        )
        rows = data.daily[coin]
        first30 = sum(
            float(rows[d]["sessions"])
            for d in (on_day + timedelta(days=i) for i in range(30))
            if d in rows
        )
        m["sessions_per_day_first_30_days"] = Metric(
            first30 / 30, unit="sessions/day", method="sessions in the 30 calendar days from "
            "the onset ÷ 30",
        )  # fmt: skip
    for label in ("baseline", "after"):
        w = c.window(label)
        if w is not None:
            e = stats.rate(y[w.lo : w.hi])
            m[f"{label}_sessions_per_day"] = Metric(
                e.value, e.low, e.high, "sessions/day", RATE_METHOD
            )
    if c.baseline is not None and c.after is not None:
        b = y[c.baseline.lo : c.baseline.hi]
        if b.sum() == 0:  # from nothing: a Poisson 95% upper bound instead of a ratio
            m["baseline_sessions_per_day"] = Metric(
                0.0, 0.0, 3.0 / len(b), "sessions/day", "no sessions; 95% upper bound 3 / days"
            )
        else:
            r = stats.ratio_of_means(b, y[c.after.lo : c.after.hi])
            m["multiplier"] = Metric(r.value, r.low, r.high, "×", RATIO_METHOD)
    c.hosts = data.hosts(coin)
    c.hosts_after = data.hosts(coin, *c.span(c.after)) if c.after is not None else c.hosts
    c.fronting = len(c.hosts_after) == 1
    m["internal_hosts"] = Metric(
        len(c.hosts),
        unit="hosts",
        method="distinct inside addresses with sessions (a NAT front counts once)",
    )
    m["internal_hosts_after"] = Metric(
        len(c.hosts_after),
        unit="hosts",
        method="distinct inside addresses with sessions in the after window",
    )
    m["single_fronting_ip"] = Metric(
        int(c.fronting),
        unit="flag",
        method="1 when every session in the after window comes from one address",
    )
    ses = max(n, 1)
    for key, label in (
        ("by_name", "named"),
        ("by_address", "address_list"),
        ("by_behaviour", "behaviour"),
        ("inbound", "inbound"),
    ):
        m[f"share_{label}"] = Metric(c.tot[key] / ses, unit="share", method="of sessions")
    by_port = ses - c.tot["by_name"] - c.tot["by_address"] - c.tot["by_behaviour"]
    m["share_port_only"] = Metric(
        by_port / ses if n else 0.0,
        unit="share",
        method="of sessions, labelled by port number alone",
    )
    return c, m  # fmt: skip


def _coin_finding(
    scope: Scope, data: CryptoData, coin: str, used: list[QueryRecord], out: AnalysisOutput
) -> Finding:
    c, m = _measure(scope, data, coin)
    tables, indicators = evidence(data, c, m)
    checks, start = confidence_checks(c, m)
    confidence = grade(checks, start)
    chart_id = f"crypto.{coin}.daily"
    out.charts[chart_id] = chart(data, c)
    period = {"start": scope.start.isoformat(), "end": scope.end.isoformat()}
    if c.onset is not None:
        period["onset"] = c.days[c.onset.index].isoformat()
        period["first_session"] = c.days[c.onset.first_index].isoformat()
    for label in ("baseline", "after"):
        w = c.window(label)
        if w is not None:
            d0, d1 = c.span(w)
            period[f"{label}_start"], period[f"{label}_end"] = d0.isoformat(), d1.isoformat()
    with scope.trace() as own:
        where = f"{SESSION} AND {_coin_where(data, coin)}"
        flows = crypto_flows(scope)
        samples = sample_flows(scope, f"crypto: {coin} first sessions", where, 5, view=flows)
        if c.after is not None:
            after = f"{where} AND local_day >= DATE '{c.span(c.after)[0].isoformat()}'"
            label = f"crypto: {coin} after-window sessions"
            samples += sample_flows(scope, label, after, 5, view=flows)
        prov = provenance(scope, used + [q for q in own if q not in used])
    headline = ("multiplier", "after_sessions_per_day", "sessions", "internal_hosts_after")
    title = (
        f"{c.name} mining and blockchain P2P"
        if coin != "UNKNOWN"
        else "Mining and blockchain P2P of an unidentified coin"
    )
    text = f"{assess(confidence.level)} {statement(scope, c, m)}"
    if coin == "UNKNOWN":
        text += _same_hosts(data, c)
    return Finding(
        id=f"crypto.mining.{coin}",
        title=title,
        statement=text,
        period=period,
        metrics=m,
        confidence=confidence,
        evidence=tables,
        charts=(chart_id,),
        provenance=prov,
        alternatives=ALTERNATIVES,
        headline=tuple(k for k in headline if k in m),
        indicators=indicators,
        samples=samples,
        # asserted: sustained activity; lookups only: absent; sporadic: described only
        detected=True if c.onset is not None else (False if c.tot["sessions"] == 0 else None),
    )
