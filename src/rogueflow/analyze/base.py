"""What an analysis is, the list of built-in ones, and the provenance they share.

An analysis reads the territory scope (:class:`rogueflow.analyze.context.Scope`)
through SQL aggregates and returns findings plus the chart specs they refer to.
Adding one: write a module with a class satisfying :class:`Analysis` and list it
in :func:`builtin_analyses`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version
from typing import Any, Protocol

from rogueflow.analyze.context import QueryRecord, Scope
from rogueflow.findings import Finding, Provenance, Query


@dataclass
class AnalysisOutput:
    findings: list[Finding] = field(default_factory=list)
    charts: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> chart spec


class Analysis(Protocol):
    id: str
    title: str

    def run(self, scope: Scope) -> AnalysisOutput: ...


def builtin_analyses() -> list[Analysis]:
    """The analyses a report runs, in report order."""
    from rogueflow.analyze.pattern import PatternOfLife
    from rogueflow.analyze.volume import VolumeGrowth

    return [VolumeGrowth(), PatternOfLife()]


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


def reference_data(scope: Scope) -> tuple[dict[str, str], ...]:
    """Reference data the scope used: the territory profile and the zone history."""
    p = scope.profile
    return (
        {
            "kind": "territory profile",
            "id": p.territory.code,
            "source": p.source,
            "sha256": p.sha256,
        },
        {
            "kind": "time zone history",
            "id": p.territory.timezone,
            "source": f"IANA tz database (tzdata {tzdata_version()})",
            "sha256": "",
        },
    )


def provenance(
    scope: Scope, queries: list[QueryRecord], generated_at: str | None = None
) -> Provenance:
    """Provenance of a finding: the scope view's definition plus the queries it used."""
    view = [q for q in scope.log if q.label.startswith("view ")]
    used = view + [q for q in queries if q not in view]
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
        reference_data=reference_data(scope),
        queries=tuple(Query(q.label, q.sql) for q in used),
        rogueflow_version=rogueflow_version(),
        generated_at=generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
    )
