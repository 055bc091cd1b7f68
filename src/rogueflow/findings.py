"""Findings: the product. A statement in estimative language with everything behind it.

A :class:`Finding` carries its numbers (:class:`Metric`), a :class:`Confidence`
with reasons, evidence tables, the chart it is drawn in, provenance (data
window, profile hash, catalog sources, the SQL run, version, time) and
alternative explanations. ``Finding.to_dict()`` is the JSON form written to
``findings.json`` and used by every export.

Confidence is graded, not asserted: :func:`grade` starts from *high* and steps
down once per failed check (sample size, coverage, sampling, interval width),
keeping every check's wording as a reason.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

LEVELS = ("low", "moderate", "high")
FINDINGS_FORMAT = "rogueflow.findings/1"


@dataclass(frozen=True)
class Metric:
    value: float | int | None
    low: float | None = None
    high: float | None = None
    unit: str = ""
    method: str = ""


@dataclass(frozen=True)
class Confidence:
    level: str
    reasons: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"confidence level must be one of {LEVELS}, got {self.level!r}")


@dataclass(frozen=True)
class Check:
    """One confidence check: ``ok`` keeps the level, a failure steps it down ``penalty`` times."""

    ok: bool
    good: str
    bad: str
    penalty: int = 1


def grade(checks: list[Check], start: str = "high") -> Confidence:
    """Step down from ``start`` once per failed check (by its penalty); never below low."""
    level = LEVELS.index(start)
    reasons = []
    for c in checks:
        if c.ok:
            if c.good:
                reasons.append(c.good)
        else:
            level -= c.penalty
            reasons.append(c.bad)
    return Confidence(LEVELS[max(level, 0)], tuple(reasons))


@dataclass(frozen=True)
class Table:
    """A small evidence table (rows of plain values)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    note: str = ""


@dataclass(frozen=True)
class Query:
    label: str
    sql: str


@dataclass(frozen=True)
class Provenance:
    analysis_window: dict[str, str]
    data_window: dict[str, str]
    territory: dict[str, str]
    catalog_sources: tuple[str, ...]
    reference_data: tuple[dict[str, Any], ...]  # kind, id, source, sha256, validity …
    queries: tuple[Query, ...]
    rogueflow_version: str
    generated_at: str


INDICATOR_KINDS = ("ipv4-addr", "ipv6-addr", "domain-name", "wallet")


@dataclass(frozen=True)
class Indicator:
    """Something a finding names that others can look for: an address, a domain, a wallet.

    Exports (STIX indicators, MISP attributes, Zeek intel) are written from these.
    ``role`` says what it is in this finding ("mining pool", "fronting host",
    "tunnel endpoint", "new mail server" …); ``coin`` is set for wallets.
    """

    kind: str
    value: str
    role: str
    first_seen: str | None = None  # ISO 8601 UTC
    last_seen: str | None = None
    flows: int | None = None
    coin: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in INDICATOR_KINDS:
            raise ValueError(f"indicator kind must be one of {INDICATOR_KINDS}, got {self.kind!r}")


@dataclass(frozen=True)
class SampleFlow:
    """One stored flow shown as evidence (STIX observed-data, MISP netflow objects)."""

    ts_start: str  # ISO 8601 UTC
    ts_end: str
    src: str
    dst: str
    proto: int
    src_port: int
    dst_port: int
    packets: int
    bytes: int
    community_id: str
    service: str | None = None
    category: str | None = None
    evidence: str | None = None


@dataclass(frozen=True)
class Finding:
    id: str
    title: str
    statement: str
    period: dict[str, str]
    metrics: dict[str, Metric]
    confidence: Confidence
    evidence: tuple[Table, ...]
    charts: tuple[str, ...]
    provenance: Provenance
    alternatives: tuple[str, ...] = ()
    headline: tuple[str, ...] = field(default=())  # metric names shown beside key judgments
    indicators: tuple[Indicator, ...] = ()
    samples: tuple[SampleFlow, ...] = ()
    priority: str = "normal"  # "high" puts a finding first (e.g. a sanctioned wallet)
    #: True when the finding asserts the behaviour it looks for (a change, an onset, a
    #: presence), False when it reports its absence, None when it only describes
    detected: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["metrics"] = {k: _clean(asdict(m)) for k, m in self.metrics.items()}
        d["chart"] = self.charts[0] if self.charts else None
        return _clean(d)  # type: ignore[no-any-return]


def _clean(obj: Any) -> Any:
    """Tuples to lists, NaN/inf to null: strict JSON."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def document(findings: list[Finding], meta: dict[str, Any]) -> dict[str, Any]:
    """The findings.json document: format marker, report metadata, findings."""
    return {"format": FINDINGS_FORMAT, **_clean(meta), "findings": [f.to_dict() for f in findings]}


def dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False, default=str) + "\n"


# --- wording ---------------------------------------------------------------------------

_FOLD = {
    2: "twofold",
    3: "threefold",
    4: "fourfold",
    5: "fivefold",
    6: "sixfold",
    7: "sevenfold",
    8: "eightfold",
    9: "ninefold",
    10: "tenfold",
}


def assess(level: str) -> str:
    """The opening of an estimative statement."""
    return f"We assess with {level} confidence that"


def fold(ratio: float) -> str:
    """'grew about fourfold (×4.0, +300%)' style wording for a ratio after/before.

    Both forms are given because the press reads "+300%" as ×3 or ×4.
    """
    pct = (ratio - 1) * 100
    nums = f"×{ratio:.2f}, {pct:+.0f}%" if ratio < 10 else f"×{ratio:.1f}, {pct:+.0f}%"
    if ratio >= 1.5:
        r = round(ratio)
        word = _FOLD.get(r) if abs(ratio - r) <= 0.2 else None
        return f"grew about {word} ({nums})" if word else f"grew about {ratio:.1f}-fold ({nums})"
    if ratio >= 1.1:
        return f"grew by about {pct:.0f}% ({nums})"
    if ratio > 0.9:
        return f"stayed about level ({nums})"
    return f"fell by about {-pct:.0f}% ({nums})"


def num(x: float | int | None, digits: int | None = None) -> str:
    """Thousands separators; one decimal for small fractional values; '—' when missing."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if digits is None:
        digits = 1 if abs(x) < 100 and x != int(x) else 0
    return f"{x:,.{digits}f}"


def human_bytes(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(x) < 1000 or unit == "PB":
            return f"{x:,.1f} {unit}" if unit != "B" else f"{x:,.0f} B"
        x /= 1000
    return f"{x:,.1f} PB"


def pct(x: float | None, digits: int = 0) -> str:
    if x is None or not math.isfinite(x):
        return "—"
    return f"{100 * x:.{digits}f}%"
