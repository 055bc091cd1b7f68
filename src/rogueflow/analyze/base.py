"""What an analysis is, the list of built-in ones, and the provenance they share.

An analysis reads the territory scope (:class:`rogueflow.analyze.context.Scope`)
through SQL aggregates and returns findings plus the chart specs they refer to.
Adding one: write a module with a class satisfying :class:`Analysis` and list it
in :func:`builtin_analyses`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import Any, Protocol

from rogueflow.addr import format_one
from rogueflow.analyze.context import VIEW, QueryRecord, Scope
from rogueflow.findings import Finding, Provenance, Query, SampleFlow
from rogueflow.flowkey import community_id


@dataclass
class AnalysisOutput:
    findings: list[Finding] = field(default_factory=list)
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> chart spec


class Analysis(Protocol):
    id: str
    title: str

    def run(self, scope: Scope) -> AnalysisOutput: ...


def builtin_analyses(events: Sequence[Any] | None = None) -> list[Analysis]:
    """The analyses a report runs, in report order; ``events`` (dated events, see
    :func:`rogueflow.analyze.events.load_events`) adds the event overlay."""
    from rogueflow.analyze.catpattern import CategoryPattern
    from rogueflow.analyze.counterparts import Counterparts
    from rogueflow.analyze.crypto import CryptoActivity
    from rogueflow.analyze.hosted import HostedServices
    from rogueflow.analyze.opsec import Obfuscation
    from rogueflow.analyze.pattern import PatternOfLife
    from rogueflow.analyze.presence import PresenceAbroad
    from rogueflow.analyze.probing import InboundProbing
    from rogueflow.analyze.routing import UpstreamRouting
    from rogueflow.analyze.sanctioned import SanctionedWallets
    from rogueflow.analyze.services import ServiceMix
    from rogueflow.analyze.volume import VolumeGrowth

    found: list[Analysis] = [
        VolumeGrowth(),
        PatternOfLife(),
        CategoryPattern(),
        UpstreamRouting(),
        Counterparts(),
        PresenceAbroad(),
        ServiceMix(),
        CryptoActivity(),
        Obfuscation(),
        HostedServices(),
        InboundProbing(),
        SanctionedWallets(),
    ]
    if events:
        from rogueflow.analyze.events import EventOverlay

        found.append(EventOverlay(list(events)))
    return found


def rogueflow_version() -> str:
    try:
        return dist_version("rogueflow")
    except PackageNotFoundError:
        import rogueflow

        return rogueflow.__version__


def tzdata_version() -> str:
    try:
        return dist_version("tzdata")
    except PackageNotFoundError:
        return "system zoneinfo"


def reference_entry(kind: str, ident: str, source: str, sha256: str) -> dict[str, Any]:
    """A piece of reference data that is not an intel snapshot (profile, zone database)."""
    return {
        "kind": kind,
        "id": ident,
        "label": ident,
        "name": ident,
        "source": source,
        "sha256": sha256,
        "valid_from": None,
        "valid_to": None,
        "validity": "",
        "retrieved_at": None,
        "removed": False,
        "flows": None,
        "first_day": None,
        "last_day": None,
    }


def reference_data(scope: Scope) -> tuple[dict[str, Any], ...]:
    """Reference data the scope used: the territory profile, the zone history and every
    intel snapshot named in the ``intel`` column of the flows in scope (with the flows
    and days that used it), so a 2018 flow's finding names the snapshot valid in 2018."""
    p = scope.profile
    return (
        reference_entry("territory profile", p.territory.code, p.source, p.sha256),
        reference_entry(
            "time zone history",
            p.territory.timezone,
            f"IANA tz database (tzdata {tzdata_version()})",
            "",
        ),
        *scope.intel_used(),
    )


def provenance(
    scope: Scope, queries: list[QueryRecord], generated_at: str | None = None
) -> Provenance:
    """Provenance of a finding: the scope view's definition plus the queries it used."""
    refs = reference_data(scope)  # before ``used``: its query joins the open trace
    view = [q for q in scope.log if q.label.startswith("view ")]
    # the query naming the reference data belongs to every finding, whether or not the
    # analysis asked for its provenance inside its trace
    refq = [q for q in scope.log if q.label == "reference data used" and q not in queries]
    used = view + [q for q in [*queries, *refq] if q not in view]
    return Provenance(
        analysis_window={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
        data_window={"start": scope.first_ts.isoformat(), "end": scope.last_ts.isoformat()},
        territory={
            "code": scope.territory.code,
            "name": scope.territory.name,
            "timezone": scope.territory.timezone,
            "profile_source": scope.profile.source,
            "profile_sha256": scope.profile.sha256,
        },
        catalog_sources=tuple(str(s["source_id"]) for s in scope.sources()),
        reference_data=refs,
        queries=tuple(Query(q.label, q.sql) for q in used),
        rogueflow_version=rogueflow_version(),
        generated_at=generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
    )


def sample_flows(
    scope: Scope, label: str, where: str, limit: int = 10, *, view: str = VIEW
) -> tuple[SampleFlow, ...]:
    """Up to ``limit`` flows of the scope matching ``where`` (SQL over ``territory_flows``,
    or over ``view``, a subset of its rows), earliest first, as evidence rows with their
    Community ID.

    >>> sample_flows(scope, "monero mining samples", "coin = 'XMR'", 5)  # doctest: +SKIP
    """
    rows = scope.rows(
        label,
        f"""
        SELECT ts_utc, ts_end, side, internal_addr, remote_addr, internal_port, remote_port,
               proto, packets + rev_packets AS packets, bytes + rev_bytes AS bytes,
               service, category, evidence
        FROM {view} WHERE {where}
        ORDER BY ts_utc, internal_addr, remote_addr, internal_port, remote_port, proto
        LIMIT {int(limit)}
        """,
    )
    out = []
    for r in rows:
        inbound = r["side"] == "in"
        src, dst = (
            (r["remote_addr"], r["internal_addr"])
            if inbound
            else (r["internal_addr"], r["remote_addr"])
        )
        sport, dport = (
            (r["remote_port"], r["internal_port"])
            if inbound
            else (r["internal_port"], r["remote_port"])
        )
        out.append(
            SampleFlow(
                ts_start=_iso(r["ts_utc"]),
                ts_end=_iso(r["ts_end"] or r["ts_utc"]),
                src=format_one(src),
                dst=format_one(dst),
                proto=int(r["proto"]),
                src_port=int(sport or 0),
                dst_port=int(dport or 0),
                packets=int(r["packets"] or 0),
                bytes=int(r["bytes"] or 0),
                community_id=community_id(
                    src, dst, int(r["proto"]), int(sport or 0), int(dport or 0)
                ),
                service=r["service"],
                category=r["category"],
                evidence=r["evidence"],
            )
        )
    return tuple(out)


def _iso(t: datetime) -> str:
    """Naive UTC timestamps of the view as ISO 8601 with a Z."""
    return t.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
