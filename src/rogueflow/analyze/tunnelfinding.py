"""The ``opsec.dns_tunnel`` finding, built for :class:`rogueflow.analyze.opsec.Obfuscation`
from the domains :mod:`rogueflow.analyze.tunnels` judged: the domain, its direct
endpoint, the inside hosts, the first local date (``period["start"]``), the share of
flows per period, and indicators (domain-name, ipv4-addr/ipv6-addr)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from rogueflow.addr import format_one
from rogueflow.analyze import categories as cat
from rogueflow.analyze import stats, tunnels
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.categories import F64, DailyMix, Period
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.findings import Check, Finding, Indicator, Metric, Table, assess, grade, num, pct

MIN_TUNNEL_QUERIES, MIN_TUNNEL_DAYS = 200, 7
MIN_DAYS = 56  # days with data before "no tunnel seen" means much


def tunnel_days(
    scope: Scope, mix: DailyMix, flagged: list[tunnels.Domain]
) -> tuple[F64, list[dict[str, Any]]]:
    """Tunnel flows per local day, and per inside host (flows, first and last flow)."""
    if not flagged:
        return np.zeros(len(mix.days)), []
    rows = scope.rows(
        "DNS-tunnel flows per local day and inside host",
        f"""
        SELECT local_day, internal_addr, count(*) AS flows, min(ts_utc) AS first_ts,
               max(ts_utc) AS last_ts
        FROM {VIEW} WHERE {tunnels.tunnel_sql(flagged)}
        GROUP BY local_day, internal_addr
        """,
    )
    daily = np.zeros(len(mix.days))
    hosts: dict[bytes, dict[str, Any]] = {}
    for r in rows:
        i = (r["local_day"] - mix.days[0]).days
        if 0 <= i < len(daily):
            daily[i] += r["flows"]
        h = hosts.setdefault(r["internal_addr"], {"flows": 0, "first": None, "last": None})
        h["flows"] += r["flows"]
        h["first"] = min(x for x in (h["first"], r["first_ts"]) if x is not None)
        h["last"] = max(x for x in (h["last"], r["last_ts"]) if x is not None)
    ranked = sorted(hosts.items(), key=lambda kv: -kv[1]["flows"])
    return daily, [{"addr": format_one(a), **h} for a, h in ranked]


def dns_tunnel_finding(
    scope: Scope,
    mix: DailyMix,
    periods: list[Period],
    domains: list[tunnels.Domain],
    tunnel: tuple[F64, list[dict[str, Any]]],
    coverage: dict[str, float],
    out: AnalysisOutput,
    attribute: bool,
) -> Finding:
    """``opsec.dns_tunnel`` from the judged domains and the tunnel flows per day and host."""
    flagged = [d for d in domains if d.flagged]
    with scope.trace() as used:
        cat.record_mix(scope, attribute)
        tunnels.candidates(scope)
        daily, hosts = tunnel_days(scope, mix, flagged) if flagged else tunnel
        named = coverage["named"] / coverage["dns_flows"] if coverage["dns_flows"] else 0.0
        metrics: dict[str, Metric] = {
            "named_dns_share": Metric(
                named, None, None, "share", "DNS flows (server port 53) carrying a query name"
            ),
            "tunnel_domains": Metric(len(flagged), None, None, "domains", tunnels.__doc__ or ""),
        }
        indicators: list[Indicator] = []
        samples: tuple[Any, ...] = ()
        rows = [
            (
                d.name,
                "yes" if d.flagged else "no",
                num(d.queries),
                num(d.names),
                f"{d.subdomain:.0f}",
                f"{d.unique:.0%}",
                ", ".join(d.direct) or "—",
                d.how(),
            )
            for d in domains[:10]
        ]
        if flagged:
            top = flagged[0]
            on = np.flatnonzero(daily > 0)
            first_day, last_day = mix.days[int(on[0])], mix.days[int(on[-1])]
            for i, p in enumerate(periods):
                sel = mix.mask(p.lo, p.hi)
                w = cat.resample_weights(int(sel.sum()), stats.BOOTSTRAP_SEED + i)
                sh = cat.shares(mix.total, {"t": daily}, sel, w)["t"][0]
                metrics[f"share_{cat.label_key(p.label)}"] = cat.share_metric(sh)
            metrics["tunnel_flows"] = Metric(float(daily.sum()), None, None, "flows", "")
            metrics["days_active"] = Metric(len(on), None, None, "days", "local days")
            metrics["queries"] = Metric(top.queries, None, None, "queries", "")
            metrics["distinct_names"] = Metric(top.names, None, None, "names", "")
            metrics["mean_subdomain_length"] = Metric(top.subdomain, None, None, "chars", "")
            indicators = _indicators(flagged, hosts)
            samples = sample_flows(scope, "DNS-tunnel flow samples", tunnels.tunnel_sql(flagged), 5)
            checks = [
                Check(
                    top.queries >= MIN_TUNNEL_QUERIES,
                    f"{num(top.queries)} queries under {top.name}",
                    f"only {num(top.queries)} queries under {top.name}",
                ),
                Check(
                    len(on) >= MIN_TUNNEL_DAYS,
                    f"seen on {len(on)} days",
                    f"seen on only {len(on)} days",
                ),
                Check(
                    top.detector > 0,
                    "the ingest detector, which saw entropy and question types, flagged it",
                    "flagged from query-name length and uniqueness only (entropy and question "
                    "types were not seen by this analysis)",
                ),
                Check(
                    bool(top.direct),
                    f"queries go straight to {', '.join(top.direct)}, a server answering "
                    "little else",
                    "",
                    penalty=0,
                ),
            ]
            statement = (
                f"a host inside {scope.territory.name} tunnelled data through DNS under "
                f"{top.name} from {first_day} (local date) to {last_day}: {num(daily.sum())} "
                f"flows on {len(on)} days, {num(top.names)} distinct query names with a mean "
                f"subdomain of {top.subdomain:.0f} characters"
                + (f", sent straight to {', '.join(top.direct)}" if top.direct else "")
                + f", from {len(hosts)} inside host{'s' if len(hosts) != 1 else ''} "
                f"({', '.join(h['addr'] for h in hosts[:3])})."
            )
            if len(flagged) > 1:
                statement += f" {len(flagged) - 1} other domain(s) look alike: " + ", ".join(
                    d.name for d in flagged[1:4]
                )
            period = {"start": first_day.isoformat(), "end": last_day.isoformat()}
            _tunnel_chart(out, mix, daily, first_day, top.name)
        else:
            span = int(mix.has.sum())
            checks = [
                Check(
                    span >= MIN_DAYS,
                    f"{span} days with data",
                    f"only {span} days with data",
                ),
                Check(
                    coverage["named"] > 0,
                    f"{pct(named)} of DNS flows carry a query name",
                    "no DNS flow carries a query name: tunnels cannot be seen in this data",
                    penalty=2,
                ),
                Check(
                    named >= 0.5,
                    "",
                    f"only {pct(named)} of DNS flows carry a query name",
                ),
            ]
            statement = (
                f"no DNS tunnelling is visible: no domain drew {tunnels.MIN_QUERIES}+ queries "
                f"with long, mostly distinct names, and the ingest detector labelled none "
                f"({num(coverage['dns_flows'])} DNS flows examined)."
            )
            period = {"start": mix.days[0].isoformat(), "end": mix.days[-1].isoformat()}
        confidence = grade(checks)
        prov = provenance(scope, used)
    return Finding(
        id="opsec.dns_tunnel",
        title="DNS tunnelling",
        statement=f"{assess(confidence.level)} {statement}",
        period=period,
        metrics=metrics,
        confidence=confidence,
        evidence=(
            Table(
                "Domains judged (largest first)",
                (
                    "domain",
                    "tunnel",
                    "queries",
                    "distinct names",
                    "mean subdomain",
                    "distinct",
                    "direct endpoint",
                    "evidence",
                ),
                tuple(rows),
                f"Heuristic: ≥{tunnels.MIN_QUERIES} queries, ≥{tunnels.MIN_NAMES} distinct "
                f"names, mean subdomain ≥{tunnels.LONG_SUBDOMAIN:.0f} characters, "
                f"≥{tunnels.UNIQUE:.0%} distinct.",
            ),
            Table(
                "Inside hosts using the tunnel",
                ("host", "flows", "first flow (UTC)", "last flow (UTC)"),
                tuple(
                    (h["addr"], num(h["flows"]), _iso(h["first"]), _iso(h["last"]))
                    for h in (hosts if flagged else [])[:10]
                ),
            ),
        ),
        charts=("opsec.dns_tunnel",) if flagged else (),
        provenance=prov,
        alternatives=(
            "Security products (anti-virus reputation lookups, DNS blocklists) and some "
            "CDNs send long, unique names under one domain without tunnelling.",
            "Telemetry or licence checks encoded in DNS names look the same from flows.",
        ),
        headline=("tunnel_domains", "tunnel_flows") if flagged else ("tunnel_domains",),
        indicators=tuple(indicators),
        samples=samples,
        detected=bool(flagged),
    )


def _indicators(flagged: list[tunnels.Domain], hosts: list[dict[str, Any]]) -> list[Indicator]:
    out = []
    for d in flagged:
        first, last = _iso(d.first_ts), _iso(d.last_ts)
        out.append(Indicator("domain-name", d.name, "DNS tunnel domain", first, last, d.queries))
        for a in d.direct:
            out.append(Indicator(_kind(a), a, "DNS tunnel endpoint", first, last, d.servers[a][0]))
    for h in hosts[:10]:
        out.append(
            Indicator(
                _kind(h["addr"]),
                h["addr"],
                "DNS tunnel client (inside the territory)",
                _iso(h["first"]),
                _iso(h["last"]),
                int(h["flows"]),
            )
        )
    return out


def _tunnel_chart(out: AnalysisOutput, mix: DailyMix, daily: F64, first: date, domain: str) -> None:
    out.charts["opsec.dns_tunnel"] = {
        "id": "opsec.dns_tunnel",
        "kind": "daily_series",
        "title": f"DNS-tunnel flows per local day ({domain})",
        "caption": "Flows labelled by the ingest detector, carrying a query under the "
        "domain, or sent to its direct endpoint.",
        "data": {
            "days": [d.isoformat() for d in mix.days],
            "values": daily.tolist(),
            "events": [(first.isoformat(), f"first seen {first}")],
            "y_title": "flows per day",
        },
    }


def _kind(a: str) -> str:
    return "ipv6-addr" if ":" in a else "ipv4-addr"


def _iso(t: datetime | None) -> str | None:
    if t is None:
        return None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t.isoformat(timespec="seconds") + "Z"
