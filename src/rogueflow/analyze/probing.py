"""Inbound probing: outside sources that repeatedly try to connect to the territory and fail.

A **failed attempt** is an inbound flow of at most :data:`MAX_ATTEMPT_PACKETS`
packets the inside end did not answer (no reply, or only a reset; see
:mod:`rogueflow.analyze.replies`, shared with the hosted-services analysis).

A source **bursts** on a local day with at least :data:`BURST_ATTEMPTS` failed
attempts; it **repeatedly probed** with bursts on at least
:data:`MIN_BURST_DAYS` days. Attempts of a repeated prober are those of its burst
days (the demo's ground truth uses the same definition). Sources are grouped by
the organisation of their address (``remote_as_org``, ``remote_asn``,
``remote_country`` as enriched at the flow's time).

Finding: ``inbound.probing``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from rogueflow.addr import format_one
from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.analyze.replies import ANSWERED_SQL, MAX_ATTEMPT_PACKETS, failed_sql
from rogueflow.findings import (
    Check,
    Finding,
    Indicator,
    Metric,
    SampleFlow,
    Table,
    assess,
    grade,
    num,
)

BURST_ATTEMPTS = 20  # failed attempts from one source on one local day
MIN_BURST_DAYS = 2  # "repeatedly": bursts on this many local days
MIN_BREADTH = 3  # inside addresses or ports: a sweep, not one client retrying one service
MAX_ANSWERED_SHARE = 0.1  # a prober whose connections mostly succeed is a client
MAX_BURST_SOURCE_DAY_SHARE = 0.05  # bursts this common among other sources: background
MAX_REPEATED = 5  # more repeated probers than this: scanning is routine, not targeted
STAND_OUT = 10  # a prober's attempts per burst day over the background's per source-day
TOP_ORGS = 10
MAX_SAMPLED_SOURCES = 5
INBOUND_VIEW = "inbound_flows"

BUCKETS = ((100, "100+"), (BURST_ATTEMPTS, f"{BURST_ATTEMPTS}–99"), (5, "5–19"), (2, "2–4"))


@dataclass
class Source:
    addr: bytes
    days: dict[date, int] = field(default_factory=dict)  # burst days -> failed attempts
    targets: int = 0  # distinct inside addresses over all its failed attempts
    ports: int = 0
    failed: int = 0  # all failed attempts, burst days or not
    answered: int = 0  # inbound flows from it the inside answered
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    asn: int | None = None
    org: str | None = None
    country: str | None = None
    top_ports: list[tuple[int, int]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return format_one(self.addr)

    @property
    def attempts(self) -> int:
        return sum(self.days.values())

    @property
    def repeated(self) -> bool:
        return len(self.days) >= MIN_BURST_DAYS

    @property
    def org_label(self) -> str:
        return _org_label(self.asn, self.org, self.country)


def _org_label(asn: int | None, org: str | None, country: str | None) -> str:
    name = org or "(unknown organisation)"
    return (
        f"{name} (AS{asn}, {country or '??'})" if asn is not None else f"{name} ({country or '??'})"
    )


class InboundProbing:
    id = "probing"
    title = "Inbound probing"

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        t = scope.territory
        with scope.trace() as used:
            flows = inbound_flows(scope)
            inbound = scope.rows(
                "probing: inbound flows and reverse counters",
                f"""
                SELECT count(*) AS inbound,
                       sum(CASE WHEN rev_packets > 0 THEN 1 ELSE 0 END) AS with_reply,
                       count(DISTINCT CASE WHEN {failed_sql()} THEN remote_addr END) AS bi,
                       count(DISTINCT CASE WHEN {failed_sql(True)} THEN remote_addr END) AS uni,
                       max(sampling_rate) AS max_rate
                FROM {flows} WHERE side = 'in'""",
            )[0]
            # no reverse counters anywhere: a UDP request looks the same answered or not
            uniflow = int(inbound["inbound"] or 0) > 0 and not int(inbound["with_reply"] or 0)
            failed = failed_sql(uniflow)
            inbound["failed_sources"] = inbound["uni" if uniflow else "bi"]
            hist = scope.rows(
                "probing: source-days by failed inbound attempts",
                f"""
                SELECT bucket, count(*) AS source_days, sum(attempts) AS attempts,
                       count(DISTINCT remote_addr) AS sources
                FROM (SELECT remote_addr, local_day, count(*) AS attempts,
                             {_bucket_sql("count(*)")} AS bucket
                      FROM {flows} WHERE {failed} GROUP BY remote_addr, local_day) sd
                GROUP BY bucket""",
            )
            daily = scope.rows(
                "probing: failed inbound attempts per local day",
                f"""
                SELECT local_day, count(*) AS attempts, count(DISTINCT remote_addr) AS sources
                FROM {flows} WHERE {failed} GROUP BY local_day ORDER BY local_day""",
            )
            sources = self._sources(scope, failed)
            orgs = self._orgs(scope, failed)
            repeated = [s for s in sources if s.repeated]
            single = [s for s in sources if not s.repeated]
            metrics = _metrics(daily, inbound, repeated)
            checks = _checks(hist, inbound, repeated)
            confidence = grade(checks)
            statement = _statement(t.name, hist, repeated, single)
            out.charts["probing.by_org"] = _org_chart(orgs, repeated)
            out.charts["probing.daily"] = _daily_chart(daily, repeated)
            samples = self._samples(scope, repeated, failed)
            prov = provenance(scope, used)
        out.findings.append(
            Finding(
                id="inbound.probing",
                title=f"Inbound probing of networks in {t.name}",
                statement=f"{assess(confidence.level)} {statement}",
                period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
                metrics=metrics,
                confidence=confidence,
                evidence=(_source_table(sources), _org_table(orgs, repeated), _hist_table(hist)),
                charts=("probing.by_org", "probing.daily"),
                provenance=prov,
                alternatives=_alternatives(),
                headline=("repeated_probers", "prober_attempts", "failed_attempts"),
                indicators=tuple(
                    Indicator(
                        kind="ipv6-addr" if ":" in s.address else "ipv4-addr",
                        value=s.address,
                        role=f"inbound prober ({s.org_label})",
                        first_seen=_iso(s.first_ts),
                        last_seen=_iso(s.last_ts),
                        flows=s.attempts,
                    )
                    for s in repeated
                ),
                samples=samples,
                detected=bool(repeated),
            )
        )
        return out

    # --- aggregates ------------------------------------------------------------------

    def _sources(self, scope: Scope, failed: str) -> list[Source]:
        """Every source with at least one burst day: its burst days, then its totals."""
        flows = inbound_flows(scope)
        bursts = f"""
            SELECT remote_addr, local_day, count(*) AS attempts,
                   min(ts_utc) AS first_ts, max(ts_utc) AS last_ts,
                   max(remote_asn) AS asn, max(remote_as_org) AS org,
                   max(remote_country) AS country
            FROM {flows} WHERE {failed}
            GROUP BY remote_addr, local_day HAVING count(*) >= {BURST_ATTEMPTS}"""
        rows = scope.rows("probing: burst days (source, local day)", bursts)
        by: dict[bytes, Source] = {}
        for r in rows:
            s = by.setdefault(bytes(r["remote_addr"]), Source(bytes(r["remote_addr"])))
            s.days[r["local_day"]] = int(r["attempts"])
            s.first_ts = min(filter(None, (s.first_ts, r["first_ts"])))
            s.last_ts = max(filter(None, (s.last_ts, r["last_ts"])))
            s.asn = s.asn if s.asn is not None else r["asn"]
            s.org, s.country = s.org or r["org"], s.country or r["country"]
        if not by:
            return []
        chosen = f"SELECT DISTINCT remote_addr FROM ({bursts}) b"
        totals = scope.rows(
            "probing: totals of bursting sources",
            f"""
            SELECT remote_addr,
                   sum(CASE WHEN {failed} THEN 1 ELSE 0 END) AS failed,
                   sum(CASE WHEN {ANSWERED_SQL} THEN 1 ELSE 0 END) AS answered,
                   count(DISTINCT CASE WHEN {failed} THEN internal_addr END) AS targets,
                   count(DISTINCT CASE WHEN {failed} THEN internal_port END) AS ports
            FROM {flows} WHERE side = 'in' AND remote_addr IN ({chosen})
            GROUP BY remote_addr""",
        )
        for r in totals:
            s = by[bytes(r["remote_addr"])]
            s.failed, s.answered = int(r["failed"] or 0), int(r["answered"] or 0)
            s.targets, s.ports = int(r["targets"] or 0), int(r["ports"] or 0)
        ports = scope.rows(
            "probing: ports tried by bursting sources",
            f"""
            SELECT remote_addr, internal_port, count(*) AS attempts
            FROM {flows} WHERE {failed} AND remote_addr IN ({chosen})
            GROUP BY remote_addr, internal_port""",
        )
        per: dict[bytes, list[tuple[int, int]]] = defaultdict(list)
        for r in ports:
            per[bytes(r["remote_addr"])].append((int(r["internal_port"] or 0), int(r["attempts"])))
        for addr, ps in per.items():
            by[addr].top_ports = sorted(ps, key=lambda p: (-p[1], p[0]))
        return sorted(by.values(), key=lambda s: (not s.repeated, -s.attempts, s.addr))

    def _orgs(self, scope: Scope, failed: str) -> list[dict[str, Any]]:
        flows = inbound_flows(scope)
        return scope.rows(
            "probing: failed inbound attempts by organisation",
            f"""
            SELECT remote_asn AS asn, remote_as_org AS org, remote_country AS country,
                   count(*) AS attempts, count(DISTINCT remote_addr) AS sources,
                   count(DISTINCT local_day) AS days
            FROM {flows} WHERE {failed}
            GROUP BY remote_asn, remote_as_org, remote_country
            ORDER BY attempts DESC, asn NULLS LAST, org NULLS LAST, country NULLS LAST
            LIMIT {TOP_ORGS * 3}""",
        )

    def _samples(self, scope: Scope, repeated: list[Source], failed: str) -> tuple[SampleFlow, ...]:
        out: list[SampleFlow] = []
        flows = inbound_flows(scope)
        for s in repeated[:MAX_SAMPLED_SOURCES]:
            day = min(s.days)
            where = (
                f"local_day = DATE '{day.isoformat()}' AND {failed} "
                f"AND ip_text(remote_addr) = '{s.address}'"
            )
            label = f"probing: first failed attempts of {s.address}"
            out += sample_flows(scope, label, where, 3, view=flows)
        return tuple(out)


def inbound_flows(scope: Scope) -> str:
    """The scope's inbound flows, materialised once (every probing query reads only
    these: 94k of the full demo's 23.7M flows, each query 0.2-0.45 s over the scope)."""
    return scope.derived(INBOUND_VIEW, f"SELECT * FROM {VIEW} WHERE side = 'in'")


# --- judgment ----------------------------------------------------------------------------


def _bucket_sql(expr: str) -> str:
    whens = " ".join(f"WHEN {expr} >= {lo} THEN '{label}'" for lo, label in BUCKETS)
    return f"CASE {whens} ELSE '1' END"


def _burst_days(hist: list[dict[str, Any]]) -> tuple[int, int]:
    """(source-days with a burst, all source-days with a failed attempt)."""
    heavy = {label for lo, label in BUCKETS if lo >= BURST_ATTEMPTS}
    total = sum(int(r["source_days"]) for r in hist)
    return sum(int(r["source_days"]) for r in hist if r["bucket"] in heavy), total


def _metrics(
    daily: list[dict[str, Any]],
    inbound: dict[str, Any],
    repeated: list[Source],
) -> dict[str, Metric]:
    failed = sum(int(r["attempts"]) for r in daily)
    repeated_def = (
        f"sources with ≥ {BURST_ATTEMPTS} failed attempts on ≥ {MIN_BURST_DAYS} local days"
    )
    metrics = {  # exact counts: (value, unit, method)
        name: Metric(value, None, None, unit, method)
        for name, value, unit, method in (
            ("failed_attempts", failed, "flows", "inbound, ≤ 5 packets, not answered"),
            (
                "failed_attempt_sources",
                int(inbound["failed_sources"] or 0),
                "addresses",
                "distinct",
            ),
            ("repeated_probers", len(repeated), "sources", repeated_def),
            ("prober_attempts", sum(s.attempts for s in repeated), "flows", "on burst days"),
        )
    }
    if repeated and failed:
        per_day = {r["local_day"]: int(r["attempts"]) for r in daily}
        hits: dict[date, int] = defaultdict(int)
        for s in repeated:
            for d, n in s.days.items():
                hits[d] += n
        share, _ = stats.clustered_share(list(per_day.values()), [hits.get(d, 0) for d in per_day])
        metrics["prober_share_of_failed"] = Metric(
            share.value,
            share.low,
            share.high,
            "share",
            "repeated probers' burst-day attempts ÷ all failed inbound attempts; Wilson 95% "
            "interval widened by the local-day design effect",
        )
    for s in repeated:
        r = stats.rate(list(s.days.values()))
        metrics[f"attempts_{s.address}"] = Metric(
            s.attempts, None, None, "flows", "failed attempts on its burst days"
        )
        metrics[f"attempts_per_burst_day_{s.address}"] = Metric(
            r.value,
            r.low,
            r.high,
            "flows/day",
            "mean over its burst days; 95% interval on the log scale (variance floored at Poisson)",
        )
        metrics[f"burst_days_{s.address}"] = Metric(len(s.days), None, None, "days", "local days")
        metrics[f"targets_{s.address}"] = Metric(
            s.targets, None, None, "addresses", "distinct inside addresses tried"
        )
    return metrics


def _checks(
    hist: list[dict[str, Any]], inbound: dict[str, Any], repeated: list[Source]
) -> list[Check]:
    n_in, with_reply = int(inbound["inbound"] or 0), int(inbound["with_reply"] or 0)
    checks = [
        Check(n_in > 0, "", "no inbound flows at all: the vantage point may not see them"),
        Check(
            n_in == 0 or with_reply > 0,
            "the exporter reports reverse counters, so unanswered attempts are seen as such"
            if n_in
            else "",
            "no inbound flow carries reverse counters (uniflow export): only TCP attempts that "
            "never completed a handshake are counted, UDP not at all",
        ),
    ]
    if not repeated:
        return checks
    narrow = [s for s in repeated if max(s.targets, s.ports) < MIN_BREADTH]
    checks.append(
        Check(
            not narrow,
            f"each repeated prober tried ≥ {MIN_BREADTH} inside addresses or ports (a sweep)",
            "narrow: " + ", ".join(s.address for s in narrow) + " tried fewer than "
            f"{MIN_BREADTH} inside addresses and ports, as a client retrying a dead service would",
            penalty=2,  # one address and port: a retrying client is the likelier reading
        )
    )
    answered = [s for s in repeated if s.answered > MAX_ANSWERED_SHARE * (s.answered + s.failed)]
    checks.append(
        Check(
            not answered,
            "the repeated probers' connections were (almost) never answered",
            "partly answered: "
            + ", ".join(f"{s.address} ({s.answered} answered)" for s in answered)
            + " also completed connections, as a legitimate client of a flaky service would",
        )
    )
    # the background: every failed attempt except the repeated probers' burst days
    burst, total = _burst_days(hist)
    own_days = sum(len(s.days) for s in repeated)
    own_attempts = sum(s.attempts for s in repeated)
    bg_days = total - own_days
    bg_mean = (sum(int(r["attempts"]) for r in hist) - own_attempts) / bg_days if bg_days else 0.0
    weakest = min(s.attempts / len(s.days) for s in repeated)
    checks.append(
        Check(
            bg_days == 0 or weakest >= STAND_OUT * bg_mean,
            f"the probers stand out: ≥ {num(weakest)} attempts per burst day against "
            f"{num(bg_mean)} per source-day for other sources"
            if bg_days
            else "no other source made failed attempts",
            f"weak contrast: a prober's {num(weakest)} attempts per burst day is less than "
            f"{STAND_OUT}× the {num(bg_mean)} per source-day of other sources",
        )
    )
    other_bursts = burst - own_days
    common = len(repeated) > MAX_REPEATED or (
        bg_days >= 20 and other_bursts > MAX_BURST_SOURCE_DAY_SHARE * bg_days
    )
    checks.append(
        Check(
            not common,
            f"bursts are rare: {len(repeated)} repeated prober(s), {other_bursts} single-day "
            f"burst(s) among {bg_days} other source-days",
            f"bursts are common ({len(repeated)} repeated probers, {other_bursts} single-day "
            f"bursts among {bg_days} other source-days): this may be ordinary background "
            "scanning of the internet",
        )
    )
    unknown = [s for s in repeated if not s.org]
    checks.append(
        Check(
            not unknown,
            "every repeated prober's organisation is known from the AS data",
            "no organisation known for " + ", ".join(s.address for s in unknown),
        )
    )
    if int(inbound["max_rate"] or 1) > 1:
        checks.append(
            Check(False, "", "flows are sampled: attempt counts are a fraction of the real ones")
        )
    return checks


def _statement(
    name: str, hist: list[dict[str, Any]], repeated: list[Source], single: list[Source]
) -> str:
    failed = sum(int(r["attempts"]) for r in hist)
    if repeated:
        clauses = []
        for s in repeated[:5]:
            days = sorted(s.days)
            ports = ", ".join(str(p) for p, _ in s.top_ports[:6])
            more = f" and {len(s.top_ports) - 6} more" if len(s.top_ports) > 6 else ""
            clauses.append(
                f"{s.address} of {s.org_label} made {num(s.attempts)} failed connection "
                f"attempts on {len(days)} local days ({_days_text(days)}) against "
                f"{num(s.targets)} inside address{'es' if s.targets != 1 else ''} on "
                f"port{'s' if len(s.top_ports) != 1 else ''} {ports}{more}"
            )
        orgs = sorted({s.org_label for s in repeated})
        text = (
            f"networks in {name} were repeatedly probed from outside by "
            f"{len(repeated)} source{'s' if len(repeated) != 1 else ''} in "
            f"{len(orgs)} organisation{'s' if len(orgs) != 1 else ''}: "
            + "; ".join(clauses)
            + ("; and more (see the table)" if len(repeated) > 5 else "")
            + ". The attempts went unanswered or were refused."
        )
    elif not failed:
        text = (
            f"no outside source repeatedly probed networks in {name}: no failed inbound "
            "connection attempt was seen at all."
        )
    else:
        text = (
            f"no outside source repeatedly probed networks in {name}: of {num(failed)} failed "
            f"inbound connection attempts, no source made ≥ {BURST_ATTEMPTS} on "
            f"{MIN_BURST_DAYS} or more local days."
        )
    if single:
        top = single[0]
        day = next(iter(top.days))
        text += (
            f" {len(single)} source{'s' if len(single) != 1 else ''} burst on a single day only "
            f"(largest: {top.address} of {top.org_label}, {num(top.attempts)} attempts on {day})."
        )
    return text


def _days_text(days: list[date]) -> str:
    if len(days) > 2 and (days[-1] - days[0]).days == len(days) - 1:
        return f"{days[0]} to {days[-1]}"
    return ", ".join(str(d) for d in days)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


# --- evidence and charts -------------------------------------------------------------------


def _source_table(sources: list[Source]) -> Table:
    return Table(
        "Sources with bursts of failed inbound attempts",
        (
            "source",
            "organisation",
            "repeated",
            "burst days (local)",
            "attempts on burst days",
            "failed attempts (all days)",
            "answered",
            "inside addresses tried",
            "ports tried",
            "top ports (attempts)",
            "first (UTC)",
            "last (UTC)",
        ),
        tuple(
            (
                s.address,
                s.org_label,
                "yes" if s.repeated else "no",
                ", ".join(f"{d} ({n})" for d, n in sorted(s.days.items())),
                s.attempts,
                s.failed,
                s.answered,
                s.targets,
                s.ports,
                ", ".join(f"{p} ({n})" for p, n in s.top_ports[:8]),
                _iso(s.first_ts),
                _iso(s.last_ts),
            )
            for s in sources[:50]
        ),
        f"A burst: ≥ {BURST_ATTEMPTS} failed attempts from one source on one local day; "
        f"repeated: bursts on ≥ {MIN_BURST_DAYS} days. Failed attempt: inbound, ≤ "
        f"{MAX_ATTEMPT_PACKETS} packets, not answered (no reply or only a reset).",
    )


def _by_org(repeated: list[Source]) -> dict[str, int]:
    burst: dict[str, int] = defaultdict(int)
    for s in repeated:
        burst[s.org_label] += s.attempts
    return burst


def _org_table(orgs: list[dict[str, Any]], repeated: list[Source]) -> Table:
    burst = _by_org(repeated)
    return Table(
        "Failed inbound attempts by organisation of the source",
        ("organisation", "AS", "country", "attempts", "sources", "days", "by repeated probers"),
        tuple(
            (
                r["org"] or "(unknown)",
                r["asn"],
                r["country"],
                r["attempts"],
                r["sources"],
                r["days"],
                burst.get(_org_label(r["asn"], r["org"], r["country"]), 0),
            )
            for r in orgs[:TOP_ORGS]
        ),
    )


def _hist_table(hist: list[dict[str, Any]]) -> Table:
    order = {label: i for i, (_lo, label) in enumerate(BUCKETS)}
    rows = sorted(hist, key=lambda r: order.get(r["bucket"], len(order)))
    return Table(
        "Source-days by failed attempts (how unusual a burst is)",
        ("failed attempts per source and local day", "source-days", "attempts", "sources"),
        tuple((r["bucket"], r["source_days"], r["attempts"], r["sources"]) for r in rows),
    )


def _org_chart(orgs: list[dict[str, Any]], repeated: list[Source]) -> dict[str, Any]:
    burst = _by_org(repeated)
    top = orgs[:TOP_ORGS]
    labels = [_org_label(r["asn"], r["org"], r["country"]) for r in top]
    return {
        "id": "probing.by_org",
        "kind": "stacked_bars",
        "title": "Failed inbound connection attempts by organisation of the source",
        "caption": f"Top {len(top)} organisations by failed attempts; the dark part is the "
        "repeated probers' burst days.",
        "data": {
            "categories": labels,
            "series": {
                "repeated probers (burst days)": [burst.get(lb, 0) for lb in labels],
                "other failed attempts": [
                    int(r["attempts"]) - burst.get(lb, 0) for r, lb in zip(top, labels, strict=True)
                ],
            },
            "y_title": "failed attempts",
            "colors": {"other failed attempts": "#9e9e9e"},
        },
    }


def _daily_chart(daily: list[dict[str, Any]], repeated: list[Source]) -> dict[str, Any]:
    events = sorted(
        (d.isoformat(), f"{s.address} ({n})") for s in repeated[:5] for d, n in s.days.items()
    )
    return {
        "id": "probing.daily",
        "kind": "daily_series",
        "title": "Failed inbound connection attempts per local day",
        "caption": "Dotted lines: burst days of the repeated probers (attempts that day).",
        "data": {
            "days": [r["local_day"].isoformat() for r in daily],
            "values": [int(r["attempts"]) for r in daily],
            "events": events,
            "y_title": "failed attempts",
        },
    }


def _alternatives() -> tuple[str, ...]:
    return (
        "Source addresses of unanswered SYNs can be spoofed; a scan 'from' an organisation's "
        "address may not be theirs (backscatter of spoofed floods looks alike, though it "
        "arrives as SYN-ACKs or resets rather than SYNs).",
        "Research and commercial scanners (Shodan, Censys, university projects) sweep the "
        "whole internet repeatedly; their visits are not interest in the territory in "
        "particular. Check whether the same source scanned other networks.",
        "A misconfigured client retrying a service that moved produces repeated failures to "
        "few addresses and ports; breadth over addresses and ports separates a sweep.",
        "The organisation is the holder of the address's AS as enriched at the time of the "
        "flow; a hosting or mobile network's customers are not the network itself.",
    )
