"""Services hosted inside the territory: which inside addresses answer on server ports, since when.

A service is an (inside address, port, transport) that *answered* a connection
from outside on a port of :data:`~rogueflow.analyze.replies.SERVER_PORTS` (mail,
FTP, DNS, web, SSH, VPN …). Answering is decided from the flow's own counters
(:mod:`rogueflow.analyze.replies`): a reply from the inside end on a biflow, or
the server's own half of a uniflow exchange — a scan of a closed port (silence,
or a reset) never makes a server.

Per service: first seen (UTC timestamp and local date), last seen, answered
flows, distinct remote clients, days active, and what the address did before
it first answered (first flow of any kind; unanswered attempts on the port). A
service is **new** when it first answered at least :data:`NEW_MARGIN_DAYS` after
the data start — present from the first days means it predates the data, not
that it was stood up. A new service is **established** with at least
:data:`MIN_FLOWS` answered flows from :data:`MIN_CLIENTS` clients on
:data:`MIN_DAYS` days; fewer is named as *possible* only.

Finding: ``hosted.services``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np

from rogueflow.addr import format_one
from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.analyze.replies import SERVED_SQL, SERVER_PORTS, TCP, UDP
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

NEW_MARGIN_DAYS = 30  # first answered this long after the data start: stood up in the window
MIN_FLOWS, MIN_CLIENTS, MIN_DAYS = 10, 3, 3  # an established service, not a one-off reply
MAX_SAMPLED_SERVICES = 8  # new services given sample flows (one small query each)


@dataclass
class Service:
    addr: bytes
    port: int
    proto: int
    flows: int
    clients: int
    days: int
    first_ts: datetime
    last_ts: datetime
    first_local: datetime
    volume: float  # bytes, both directions × sampling rate
    addr_first_ts: datetime | None = None  # first flow of any kind touching the address
    flows_before: int = 0  # flows of the address before the service first answered
    attempts_before: int = 0  # unanswered inbound attempts on the port before that
    gap_before: int = 0  # calendar days without data just before the first-seen day
    new: bool = False
    daily: np.ndarray | None = None  # answered flows per day with data since first seen

    @property
    def address(self) -> str:
        return format_one(self.addr)

    @property
    def name(self) -> str:
        return SERVER_PORTS[(self.port, self.proto)][0]

    @property
    def group(self) -> str:
        return SERVER_PORTS[(self.port, self.proto)][1]

    @property
    def proto_name(self) -> str:
        return {TCP: "tcp", UDP: "udp"}.get(self.proto, str(self.proto))

    @property
    def label(self) -> str:
        return f"{self.address} {self.proto_name}/{self.port} {self.name}"

    @property
    def key(self) -> str:
        return f"{self.address}_{self.proto_name}{self.port}"

    @property
    def established(self) -> bool:
        return self.flows >= MIN_FLOWS and self.clients >= MIN_CLIENTS and self.days >= MIN_DAYS


def _ts_literal(t: datetime) -> str:
    return f"TIMESTAMP '{t.replace(tzinfo=None).isoformat(sep=' ', timespec='microseconds')}'"


class HostedServices:
    id = "hosted"
    title = "Services hosted inside the territory"

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        t = scope.territory
        with scope.trace() as used:
            threshold = scope.first_day + timedelta(days=NEW_MARGIN_DAYS)
            services = self._collect(scope, threshold)
            inbound = scope.rows(
                "hosted: inbound flows with reverse counters",
                f"""
                SELECT count(*) AS inbound,
                       sum(CASE WHEN rev_packets > 0 THEN 1 ELSE 0 END) AS with_reply,
                       max(sampling_rate) AS max_rate
                FROM {VIEW} WHERE side = 'in'""",
            )[0]
            new = [s for s in services if s.new]
            strong = [s for s in new if s.established]
            weak = [s for s in new if not s.established]
            old = [s for s in services if not s.new]
            samples = self._samples(scope, strong or weak)
            metrics = self._metrics(services, strong, weak)
            confidence = grade(self._checks(scope, services, strong, weak, inbound))
            statement = self._statement(t.name, scope, threshold, services, strong, weak)
            out.charts["hosted.timeline"] = _timeline_chart(services, threshold)
            prov = provenance(scope, used)
        out.findings.append(
            Finding(
                id="hosted.services",
                title=f"Services hosted inside {t.name}",
                statement=f"{assess(confidence.level)} {statement}",
                period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
                metrics=metrics,
                confidence=confidence,
                evidence=(_table(services),),
                charts=("hosted.timeline",),
                provenance=prov,
                alternatives=_alternatives(),
                headline=("new_services", "new_server_addresses", "hosted_services"),
                indicators=_indicators(strong, old),
                samples=samples,
                detected=bool(strong),
            )
        )
        return out

    # --- aggregates ------------------------------------------------------------------

    def _collect(self, scope: Scope, threshold: date) -> list[Service]:
        served = f"SELECT * FROM {VIEW} WHERE {SERVED_SQL}"
        rows = scope.rows(
            "hosted: services answered by inside addresses",
            f"""
            SELECT internal_addr, internal_port, proto, count(*) AS flows,
                   count(DISTINCT remote_addr) AS clients, count(DISTINCT day) AS days,
                   min(ts_utc) AS first_ts, max(ts_utc) AS last_ts,
                   min(local_ts) AS first_local, sum(flow_bytes) AS bytes
            FROM ({served}) s
            GROUP BY internal_addr, internal_port, proto""",
        )
        services = [
            Service(
                bytes(r["internal_addr"]),
                int(r["internal_port"]),
                int(r["proto"]),
                int(r["flows"]),
                int(r["clients"]),
                int(r["days"]),
                r["first_ts"],
                r["last_ts"],
                r["first_local"],
                float(r["bytes"] or 0.0),
            )
            for r in rows
        ]
        if not services:
            return []
        firsts = f"""
            SELECT internal_addr, internal_port, proto, min(ts_utc) AS first_ts
            FROM ({served}) s GROUP BY internal_addr, internal_port, proto"""
        before = scope.rows(
            "hosted: activity of each server address before it first answered",
            f"""
            SELECT f.internal_addr, f.internal_port, f.proto,
                   min(v.ts_utc) AS addr_first_ts,
                   sum(CASE WHEN v.ts_utc < f.first_ts THEN 1 ELSE 0 END) AS flows_before,
                   sum(CASE WHEN v.ts_utc < f.first_ts AND v.side = 'in'
                             AND v.internal_port = f.internal_port AND v.proto = f.proto
                            THEN 1 ELSE 0 END) AS attempts_before
            FROM ({firsts}) f JOIN {VIEW} v ON v.internal_addr = f.internal_addr
            GROUP BY f.internal_addr, f.internal_port, f.proto""",
        )
        by_key = {(s.addr, s.port, s.proto): s for s in services}
        for r in before:
            s = by_key[(bytes(r["internal_addr"]), int(r["internal_port"]), int(r["proto"]))]
            s.addr_first_ts = r["addr_first_ts"]
            s.flows_before = int(r["flows_before"] or 0)
            s.attempts_before = int(r["attempts_before"] or 0)
        data_days = [r["day"] for r in scope.daily().to_pylist()]
        for s in services:
            s.new = s.first_ts.date() >= threshold
            earlier = [d for d in data_days if d < s.first_ts.date()]
            s.gap_before = (s.first_ts.date() - earlier[-1]).days - 1 if earlier else 0
        self._daily(scope, [s for s in services if s.new], data_days, threshold)
        services.sort(key=lambda s: (not s.new, s.first_ts, s.addr, s.port))
        return services

    def _daily(
        self, scope: Scope, new: list[Service], data_days: list[date], threshold: date
    ) -> None:
        """Answered flows per day with data since each new service first answered."""
        if not new:
            return
        rows = scope.rows(
            "hosted: answered flows per day of services first seen in the window",
            f"""
            SELECT internal_addr, internal_port, proto, day, count(*) AS flows
            FROM {VIEW} WHERE {SERVED_SQL} AND day >= DATE '{threshold.isoformat()}'
            GROUP BY internal_addr, internal_port, proto, day""",
        )
        per: dict[tuple[bytes, int, int], dict[date, int]] = defaultdict(dict)
        for r in rows:
            key = (bytes(r["internal_addr"]), int(r["internal_port"]), int(r["proto"]))
            per[key][r["day"]] = int(r["flows"])
        for s in new:
            counts = per.get((s.addr, s.port, s.proto), {})
            s.daily = np.array(
                [counts.get(d, 0) for d in data_days if d >= s.first_ts.date()], dtype=np.float64
            )

    def _samples(self, scope: Scope, new: list[Service]) -> tuple[SampleFlow, ...]:
        """The first answered flow of each new service (its first-seen evidence), one query."""
        chosen = new[:MAX_SAMPLED_SERVICES]
        if not chosen:
            return ()
        each = " OR ".join(
            f"(ts_utc = {_ts_literal(s.first_ts)} AND internal_port = {s.port} "
            f"AND proto = {s.proto} AND ip_text(internal_addr) = '{s.address}')"
            for s in chosen
        )
        where = f"({each}) AND {SERVED_SQL}"
        return sample_flows(
            scope, "hosted: first answered flow of each new service", where, 2 * len(chosen)
        )

    # --- judgment --------------------------------------------------------------------

    def _metrics(
        self, services: list[Service], strong: list[Service], weak: list[Service]
    ) -> dict[str, Metric]:
        count = "exact count over the window"
        metrics = {
            "hosted_services": Metric(len(services), None, None, "services", count),
            "server_addresses": Metric(
                len({s.addr for s in services}), None, None, "addresses", count
            ),
            "new_services": Metric(
                len(strong),
                None,
                None,
                "services",
                f"first answered ≥ {NEW_MARGIN_DAYS} days after the data start, with "
                f"≥ {MIN_FLOWS} answered flows from ≥ {MIN_CLIENTS} clients on ≥ {MIN_DAYS} days",
            ),
            "new_server_addresses": Metric(
                len({s.addr for s in strong}), None, None, "addresses", count
            ),
            "possible_new_services": Metric(
                len(weak), None, None, "services", "first answered in the window, thin evidence"
            ),
        }
        for s in strong + weak:
            assert s.daily is not None
            r = stats.rate(s.daily)
            metrics[f"flows_per_day_{s.key}"] = Metric(
                r.value,
                r.low,
                r.high,
                "flows/day",
                "answered flows per day with data since first seen; 95% interval on the log "
                "scale from the daily variance (floored at Poisson)",
            )
            metrics[f"clients_{s.key}"] = Metric(
                s.clients, None, None, "addresses", "distinct remote clients answered"
            )
            metrics[f"first_seen_uncertainty_{s.key}"] = Metric(
                s.gap_before,
                None,
                None,
                "days",
                "calendar days without data just before the first-seen day: the service may "
                "have started that much earlier",
            )
        return metrics

    def _checks(
        self,
        scope: Scope,
        services: list[Service],
        strong: list[Service],
        weak: list[Service],
        inbound: dict[str, Any],
    ) -> list[Check]:
        span = (scope.last_day - scope.first_day).days + 1
        n_in, with_reply = int(inbound["inbound"] or 0), int(inbound["with_reply"] or 0)
        checks = [
            Check(
                span >= 2 * NEW_MARGIN_DAYS,
                f"the data span {span} days, enough to tell new services from old",
                f"the data span only {span} days: too short to tell a new service from one "
                "that predates the data",
            ),
            Check(n_in > 0, "", "no inbound flows at all: nothing shows whether anyone served"),
            Check(
                n_in == 0 or with_reply > 0,
                "the exporter reports reverse counters, so replies are seen on the flow itself"
                if n_in
                else "",
                "no inbound flow carries reverse counters (uniflow export): answering is "
                "inferred from server-side flows only",
            ),
        ]
        if strong or weak:
            checks.append(
                Check(
                    bool(strong),
                    f"each new service answered ≥ {MIN_FLOWS} flows from ≥ {MIN_CLIENTS} "
                    f"clients on ≥ {MIN_DAYS} days",
                    "no new service has more than a few answered flows, clients or days",
                    penalty=2,
                )
            )
            named = strong or weak
            gaps = [s for s in named if s.gap_before > 0]
            checks.append(
                Check(
                    not gaps,
                    "no first-seen date follows a gap in the data",
                    "first-seen dates follow days without data for "
                    + ", ".join(f"{s.label} ({s.gap_before} d)" for s in gaps)
                    + ": they may have started earlier",
                )
            )
            if int(inbound["max_rate"] or 1) > 1:
                checks.append(
                    Check(
                        False,
                        "",
                        "flows are sampled: a sparse service's first-seen date is a late bound",
                    )
                )
        return checks

    def _statement(
        self,
        name: str,
        scope: Scope,
        threshold: date,
        services: list[Service],
        strong: list[Service],
        weak: list[Service],
    ) -> str:
        old = [s for s in services if not s.new]
        parts: list[str] = []
        if strong:
            parts.append(
                f"{len(strong)} service{'s' if len(strong) != 1 else ''} on "
                f"{len({s.addr for s in strong})} address"
                f"{'es' if len({s.addr for s in strong}) != 1 else ''} inside {name} "
                f"{'were' if len(strong) != 1 else 'was'} stood up during the window, "
                f"answering connections from outside for the first time after the data start "
                f"({scope.first_day}; dates UTC): " + _describe(strong) + "."
            )
            quiet = [s for s in strong if s.flows_before == 0]
            if quiet:
                parts.append(
                    f"{_count(len({s.addr for s in quiet}), 'address')} had no flows at all "
                    "before answering (previously unused address space)."
                )
        elif not services:
            return (
                f"no inside address in {name} answered connections from outside on a server "
                "port (mail, FTP, DNS, web, SSH, VPN …) in the window: the data show no "
                "hosted service, new or old."
            )
        else:
            parts.append(
                f"no service inside {name} was stood up during the window with enough "
                f"evidence to say so: no inside address first answered connections on a "
                f"server port after {threshold} with ≥ {MIN_FLOWS} flows from "
                f"≥ {MIN_CLIENTS} clients."
            )
        if weak:
            parts.append(
                f"{_count(len(weak), 'more service')} first answered in the window on too "
                "little evidence to call it a server (possible only): "
                + "; ".join(f"{s.label} from {s.first_ts.date()} ({s.flows} flows)" for s in weak)
                + "."
            )
        if old:
            parts.append(
                f"{_count(len(old), 'service')} answered from the first weeks of the data "
                f"and {'predates' if len(old) == 1 else 'predate'} it: "
                + ", ".join(s.label for s in old[:6])
                + (" …" if len(old) > 6 else "")
                + "."
            )
        return " ".join(parts)


# --- wording, evidence, chart ------------------------------------------------------------


def _count(n: int, noun: str) -> str:
    plural = noun + ("es" if noun.endswith("ss") else "s")
    return f"{n} {noun if n == 1 else plural}"


def _describe(services: list[Service]) -> str:
    """'a mail server at 175.45.177.25 (tcp/25 smtp from 2019-03-11, …; 150 flows from
    99 clients)', one clause per address and group."""
    by: dict[tuple[str, str], list[Service]] = defaultdict(list)
    for s in services:
        by[(s.address, s.group)].append(s)
    clauses = []
    for (address, group), ss in by.items():
        ports = ", ".join(f"{s.proto_name}/{s.port} {s.name} from {_first(s)}" for s in ss)
        flows, clients = sum(s.flows for s in ss), max(s.clients for s in ss)
        article = "an" if group[0].lower() in "aeiof" else "a"
        clauses.append(
            f"{article} {group} server at {address} — {ports} — with {num(flows)} answered "
            f"flows from up to {num(clients)} distinct remote clients"
        )
    return "; ".join(clauses)


def _first(s: Service) -> str:
    """First-seen date in UTC, and the local date when it differs."""
    utc, local = s.first_ts.date(), s.first_local.date()
    return f"{utc}" if utc == local else f"{utc} UTC ({local} local)"


def _indicators(strong: list[Service], old: list[Service]) -> tuple[Indicator, ...]:
    out: list[Indicator] = []
    for prefix, services in (("new ", strong), ("", old)):
        by: dict[tuple[str, str], list[Service]] = defaultdict(list)
        for s in services:
            by[(s.address, s.group)].append(s)
        for (address, group), ss in by.items():
            ports = ", ".join(f"{s.proto_name}/{s.port} {s.name}" for s in ss)
            out.append(
                Indicator(
                    kind="ipv6-addr" if ":" in address else "ipv4-addr",
                    value=address,
                    role=f"{prefix}{group} server ({ports})",
                    first_seen=_iso(min(s.first_ts for s in ss)),
                    last_seen=_iso(max(s.last_ts for s in ss)),
                    flows=sum(s.flows for s in ss),
                )
            )
    return tuple(out)


def _iso(t: datetime) -> str:
    return t.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _table(services: list[Service]) -> Table:
    rows = []
    for s in services:
        status = ("new" if s.established else "possible new") if s.new else "from the start"
        rows.append(
            (
                s.address,
                f"{s.proto_name}/{s.port}",
                s.name,
                s.group,
                status,
                _iso(s.first_ts),
                s.first_local.date().isoformat(),
                _iso(s.last_ts),
                s.flows,
                s.clients,
                s.days,
                _iso(s.addr_first_ts) if s.addr_first_ts else "—",
                s.flows_before,
                s.attempts_before,
                s.gap_before,
            )
        )
    return Table(
        "Services answered by inside addresses",
        (
            "address",
            "port",
            "service",
            "kind",
            "status",
            "first seen (UTC)",
            "first seen (local date)",
            "last seen (UTC)",
            "answered flows",
            "remote clients",
            "days",
            "address first active (UTC)",
            "flows of the address before",
            "unanswered attempts before",
            "days without data before first seen",
        ),
        tuple(rows),
        f"'new': first answered ≥ {NEW_MARGIN_DAYS} days after the data start with "
        f"≥ {MIN_FLOWS} flows, ≥ {MIN_CLIENTS} clients and ≥ {MIN_DAYS} days. Answered: an "
        "inbound flow the inside end replied to (not a reset or silence), or the server's half "
        "of a uniflow exchange.",
    )


def _timeline_chart(services: list[Service], threshold: date) -> dict[str, Any]:
    shown = services[:40]
    return {
        "id": "hosted.timeline",
        "kind": "first_seen_timeline",
        "title": "Services answered by inside addresses: first and last seen",
        "caption": "Each bar runs from the first to the last answered flow (UTC); diamonds mark "
        f"first seen. The dotted line is the data start + {NEW_MARGIN_DAYS} days: services "
        "first seen after it are new in the window."
        + (f" {len(services) - len(shown)} more in the table." if len(services) > 40 else ""),
        "data": {
            "items": [
                [
                    s.label,
                    s.first_ts.date().isoformat(),
                    s.last_ts.date().isoformat(),
                    s.flows,
                    ("new" if s.established else "possible new") if s.new else "from the start",
                ]
                for s in shown
            ],
            "threshold": threshold.isoformat(),
        },
    }


def _alternatives() -> tuple[str, ...]:
    return (
        "An address answering on a server port may be a NAT or port forward to a host "
        "elsewhere, or an appliance (router, VPN concentrator) rather than a server the "
        "territory runs for its own use.",
        "A 'new' service may be an old one the vantage point did not see before: a routing "
        "change (a new upstream carrying the inbound traffic) or a sensor added can make a "
        "service appear without it being stood up.",
        "Clients counted are remote addresses; many may be scanners or mail relays probing "
        "an open port, not users of the service.",
    )
