"""Routing: which upstream ASes carry the territory's traffic, and when that changed.

Reads the BGP store (``rogueflow bgp ingest``) for the territory's prefixes and
ASes, and the territory's flows per UTC day and inside address. Findings:

* ``routing.upstream_change`` — each upstream that appeared (or was lost) with
  its exact time and prefixes, from the MRT timestamps;
* ``routing.upstream_share`` — route share and traffic-weighted share per
  upstream per quarter and per year, and the change of the newest upstream's
  traffic share from its first full quarter to the last year.

No finding when the store holds no route for the territory: the report says so
in the analysis' place instead of guessing from flows.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pyarrow as pa

from rogueflow.analyze.base import AnalysisOutput, provenance, reference_entry
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.bgp.shares import Routing, Shares, compute_shares, territory_routing
from rogueflow.findings import Check, Finding, Metric, Table, assess, grade, num, pct
from rogueflow.territory import Territory

SHARE_MOVED = 0.03  # an upstream's share is said to move past 3 points
SHARE_METHOD = (
    "bytes of the territory's flows, each split over the upstreams of the most specific "
    "announced prefix covering its inside address that UTC day, by the collector peers' "
    "time on each upstream"
)
ROUTE_METHOD = "mean over days and announced prefixes of each upstream's share of peer-time"
MIN_COVERAGE = 0.9


def traffic_by_address(scope: Scope) -> pa.Table:
    """Bytes and flows per UTC day and inside address: what the upstream split weighs."""
    return scope.query(
        "traffic per day and inside address",
        f"""
        SELECT day, internal_addr, sum(flow_bytes) AS bytes, count(*) AS flows
        FROM {VIEW} GROUP BY day, internal_addr
        """,
    )


class UpstreamRouting:
    id = "routing"
    title = "Upstreams"

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        t = scope.territory
        routing = territory_routing(scope.engine.ws, t, scope.start, scope.end)
        if routing.empty:
            return out
        with scope.trace() as used:
            traffic = traffic_by_address(scope)
        quarters = compute_shares(routing, traffic, "quarter")
        years = compute_shares(routing, traffic, "year")
        prov = provenance(scope, used)
        names = _names(t)
        if routing.changes:
            out.findings.append(_change_finding(scope, routing, names, prov))
        out.findings.append(_share_finding(scope, routing, quarters, years, names, prov))
        out.charts["routing.shares"] = _chart(quarters, names)
        return out


def _names(t: Territory) -> dict[int | None, str]:
    names: dict[int | None, str] = {u.asn: u.name for u in (*t.upstreams, *t.exclude)}
    names[None] = "(origin is the carrier)"
    return names


def _label(asn: int | None, names: dict[int | None, str]) -> str:
    if asn is None:
        return names[None]
    return f"{names[asn]} (AS{asn})" if asn in names else f"AS{asn}"


def _change_finding(
    scope: Scope, routing: Routing, names: dict[int | None, str], prov: Any
) -> Finding:
    t = scope.territory
    first_seen = min(c.ts for c in routing.changes)
    news = [c for c in routing.changes if c.change == "appeared" and c.ts > first_seen]
    lost = [c for c in routing.changes if c.change == "lost"]
    parts = []
    for c in news:
        parts.append(
            f"{_label(c.upstream_asn, names)} began carrying {', '.join(c.prefixes)} at "
            f"{c.ts:%H:%M:%S} UTC on {c.ts:%Y-%m-%d}"
        )
    for c in lost:
        parts.append(
            f"{_label(c.upstream_asn, names)} stopped carrying {', '.join(c.prefixes)} at "
            f"{c.ts:%H:%M:%S} UTC on {c.ts:%Y-%m-%d}"
        )
    if not parts:
        base = sorted({_label(c.upstream_asn, names) for c in routing.changes})
        statement = (
            f"{t.name}'s announced prefixes kept the same upstream(s) ({', '.join(base)}) "
            "throughout the routing data."
        )
    else:
        statement = "in the routing data, " + "; ".join(parts) + "."
    checks = [
        Check(len(routing.sources) > 1, "several MRT files agree", "one MRT file only"),
        Check(
            max(iv.peers_total for iv in routing.intervals) >= 3,
            "seen by several collector peers",
            "fewer than three collector peers: one peer's view may not be the internet's",
        ),
    ]
    rows = tuple(
        (c.ts.isoformat(), _label(c.upstream_asn, names), c.change, " ".join(c.prefixes))
        for c in routing.changes
    )
    metrics: dict[str, Metric] = {}
    for c in news:
        metrics[f"appeared_AS{c.upstream_asn}"] = Metric(c.ts.timestamp(), unit="unix time")
    confidence = grade(checks)
    return Finding(
        detected=bool(news),
        id="routing.upstream_change",
        title=f"Upstream changes of {t.name}",
        statement=f"{assess(confidence.level)} {statement}" if parts else statement,
        period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
        metrics=metrics,
        confidence=confidence,
        evidence=(
            Table(
                "upstream changes",
                ("time (UTC)", "upstream", "change", "prefixes"),
                rows,
                "From the MRT timestamps of the first and last route through each upstream.",
            ),
            _interval_table(routing, names),
        ),
        charts=(),
        provenance=_with_bgp(prov, routing),
        alternatives=(
            "A route seen by the collectors' peers need not carry traffic from every "
            "network: the collectors see their peers' best paths only.",
        ),
    )


def _interval_table(routing: Routing, names: dict[int | None, str]) -> Table:
    rows = tuple(
        (
            iv.prefix,
            f"AS{iv.origin_asn}" if iv.origin_asn is not None else "?",
            _label(iv.upstream_asn, names),
            f"{iv.peers}/{iv.peers_total}",
            iv.valid_from.isoformat(),
            iv.valid_to.isoformat() if iv.valid_to else "(still)",
        )
        for iv in routing.intervals[:60]
    )
    return Table(
        "route timeline",
        ("prefix", "origin", "upstream", "peers", "from", "to"),
        rows,
        "peers: collector peers seeing the prefix through that upstream / peers of the collectors.",
    )


def _share_finding(
    scope: Scope,
    routing: Routing,
    quarters: Shares,
    years: Shares,
    names: dict[int | None, str],
    prov: Any,
) -> Finding:
    t = scope.territory
    metrics: dict[str, Metric] = {}
    rows = []
    for shares in (quarters, years):
        for s in shares.rows:
            key = f"AS{s.upstream_asn}" if s.upstream_asn is not None else "origin"
            if s.traffic_share is not None:
                metrics[f"traffic_share_{key}_{s.period}"] = Metric(
                    s.traffic_share, unit="share", method=SHARE_METHOD
                )
            if s.route_share is not None:
                metrics[f"route_share_{key}_{s.period}"] = Metric(
                    s.route_share, unit="share", method=ROUTE_METHOD
                )
            rows.append(
                (
                    s.period,
                    _label(s.upstream_asn, names),
                    pct(s.route_share, 1),
                    pct(s.traffic_share, 1),
                    num(s.flows, 0),
                    pct(shares.coverage(s.period), 1),
                )
            )
    newest = [c for c in routing.changes if c.change == "appeared"]
    newest = [c for c in newest if c.ts > min(x.ts for x in newest)] or newest
    focus = max(newest, key=lambda c: c.ts).upstream_asn
    q_after = [
        s
        for s in quarters.rows
        if s.upstream_asn == focus
        and s.traffic_share is not None
        and _full_quarter_after(s.period, newest)
    ]
    y_last = [s for s in years.rows if s.upstream_asn == focus and s.traffic_share is not None]
    statement = "no traffic of the territory fell under an announced prefix."
    headline: list[str] = []
    if q_after and y_last:
        a, b = q_after[0], y_last[-1]
        statement = (
            f"{_label(focus, names)}'s share of {t.name}'s traffic went from "
            f"{pct(a.traffic_share)} in {a.period} to {pct(b.traffic_share)} in {b.period}"
        )
        others = [s for s in years.rows if s.period == b.period and s.upstream_asn != focus]
        if others:
            statement += "; " + ", ".join(
                f"{_label(s.upstream_asn, names)} carried {pct(s.traffic_share)}" for s in others
            )
        statement += "."
        headline = [
            f"traffic_share_AS{focus}_{a.period}",
            f"traffic_share_AS{focus}_{b.period}",
        ]
    cov = [years.coverage(p) for p in years.total_bytes]
    low_cov = min((c for c in cov if c is not None), default=0.0)
    checks = [
        Check(
            low_cov >= MIN_COVERAGE,
            f"{pct(low_cov)} or more of the bytes fall under an announced prefix each year",
            f"only {pct(low_cov)} of the bytes fall under an announced prefix in some year",
        ),
        Check(
            max(iv.peers_total for iv in routing.intervals) >= 3,
            "several collector peers",
            "fewer than three collector peers",
        ),
        Check(
            False,
            "",
            "the split of a prefix announced through two upstreams follows the collector "
            "peers' view, an estimate of inbound paths, not a measurement of them",
        ),
    ]
    confidence = grade(checks)
    moved = bool(q_after and y_last) and (
        abs((y_last[-1].traffic_share or 0.0) - (q_after[0].traffic_share or 0.0)) >= SHARE_MOVED
    )
    return Finding(
        detected=moved and any(c.ts > min(x.ts for x in routing.changes) for c in newest),
        id="routing.upstream_share",
        title=f"Upstream shares of {t.name}'s traffic",
        statement=f"{assess(confidence.level)} {statement}" if q_after and y_last else statement,
        period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
        metrics=metrics,
        confidence=confidence,
        evidence=(
            Table(
                "upstream shares per period",
                ("period", "upstream", "route share", "traffic share", "flows", "coverage"),
                tuple(rows),
                "coverage: share of the period's bytes under a prefix announced that day.",
            ),
        ),
        charts=("routing.shares",),
        provenance=_with_bgp(prov, routing),
        alternatives=(
            "Traffic to a prefix announced through two upstreams may favour one of them "
            "more than the collectors' peer counts suggest (local preference, prepending "
            "seen only by some peers).",
            "A sensor placed on one upstream's side sees that upstream's traffic only.",
        ),
        headline=tuple(headline),
    )


def _full_quarter_after(period: str, news: list[Any]) -> bool:
    year, q = int(period[:4]), int(period[-1])
    start = date(year, 3 * (q - 1) + 1, 1)
    return all(start > c.ts.date() for c in news)


def _with_bgp(prov: Any, routing: Routing) -> Any:
    """The provenance plus every MRT file of the BGP store, with the span it covers."""
    refs = [
        reference_entry("bgp-mrt", s["source_id"], s["path"], s["sha256"])
        | {
            "label": s["path"],
            "name": s["path"].rsplit("/", 1)[-1],
            "valid_from": s["first_ts"],
            "valid_to": s["last_ts"],
            "validity": f"{s['first_ts']} .. {s['last_ts']}",
        }
        for s in routing.sources
    ]
    return replace(prov, reference_data=(*prov.reference_data, *refs))


def _chart(quarters: Shares, names: dict[int | None, str]) -> dict[str, Any]:
    periods = sorted({s.period for s in quarters.rows})
    ups = sorted({s.upstream_asn for s in quarters.rows}, key=lambda x: (x is None, x or 0))
    series = {
        _label(u, names): [
            next(
                (
                    s.traffic_share or 0.0
                    for s in quarters.rows
                    if s.period == p and s.upstream_asn == u
                ),
                0.0,
            )
            for p in periods
        ]
        for u in ups
    }
    return {
        "id": "routing.shares",
        "kind": "stacked_bars",
        "title": "Traffic share per upstream and quarter",
        "caption": "Bytes of the territory's flows split over the upstreams of their prefix "
        "that day (BGP collector view).",
        "data": {
            "categories": periods,
            "series": series,
            "y_title": "share of bytes",
            "percent": True,
        },
    }
