"""Reading a findings document for the exporters: checked fields, times, stable ids.

Every exporter reads the dict written to ``findings.json`` (``findings.document()``),
never the dataclasses, so a saved file exports exactly like a fresh report. Fields
the exporters rely on are checked here and a bad one raises
:class:`~rogueflow.errors.InputError` naming its path (``findings[3].samples[0].src``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rogueflow.errors import InputError
from rogueflow.findings import FINDINGS_FORMAT, INDICATOR_KINDS, LEVELS, num

# Namespace of every id the exporters make (uuid5(NAMESPACE_URL, "urn:rogueflow:export")),
# fixed so the same findings document always gives the same ids.
NAMESPACE = uuid.UUID("637dff6b-99c0-5c74-a635-a89746e6e786")


def stable_uuid(name: str) -> str:
    """A UUID of version 4 whose bits are SHA-256 of ``name`` under :data:`NAMESPACE`.

    STIX 2.1 says domain and relationship objects SHOULD have v4 ids (v5 is for
    observables), and the OASIS validator warns on anything else. Version 4 only
    requires (pseudo-)random bits; a hash gives those and makes the id a function
    of the content, so an export is reproducible.
    """
    digest = hashlib.sha256(NAMESPACE.bytes + name.encode("utf-8")).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


@dataclass(frozen=True)
class Sample:
    """One sample flow of a finding, with the findings that cite it."""

    ts_start: datetime
    ts_end: datetime
    src: str
    dst: str
    proto: int
    src_port: int
    dst_port: int
    packets: int
    bytes: int
    community_id: str
    service: str | None
    category: str | None
    evidence: str | None

    @property
    def key(self) -> str:
        """Identity of the flow record: Community ID (5-tuple) plus its timestamps."""
        return f"{self.community_id}|{iso(self.ts_start)}|{iso(self.ts_end)}"


@dataclass(frozen=True)
class Indicator:
    kind: str  # ipv4-addr | ipv6-addr | domain-name | wallet
    value: str
    role: str
    first_seen: datetime | None
    last_seen: datetime | None
    flows: int | None
    coin: str | None


@dataclass(frozen=True)
class Finding:
    """The parts of a finding the exporters use, checked."""

    index: int
    id: str
    title: str
    statement: str
    period: dict[str, str]
    metrics: dict[str, dict[str, Any]]
    level: str  # low | moderate | high
    reasons: tuple[str, ...]
    alternatives: tuple[str, ...]
    priority: str
    indicators: tuple[Indicator, ...]
    samples: tuple[Sample, ...]


@dataclass(frozen=True)
class Report:
    """The document's metadata plus its findings."""

    generated_at: datetime
    version: str
    territory: dict[str, Any]
    analysis_window: dict[str, str]
    data_window: dict[str, str]
    findings: tuple[Finding, ...]

    @property
    def code(self) -> str:
        return str(self.territory.get("code") or "?")

    @property
    def title(self) -> str:
        name = self.territory.get("name") or self.code
        w = self.analysis_window
        return f"rogueflow findings: {name} ({self.code}), {w.get('start')} to {w.get('end')}"

    @property
    def key(self) -> str:
        """What makes this report run distinct: territory, window and generation time.

        Ids derive from it, so exporting the same document twice gives the same
        objects, while a new ``rogueflow report`` run gives new ones (STIX forbids
        changing ``created`` between versions of one object, and a rerun's numbers
        may differ).
        """
        w = self.analysis_window
        return f"{self.code}|{w.get('start')}|{w.get('end')}|{iso(self.generated_at)}"

    def uuid(self, *parts: object) -> str:
        """A :func:`stable_uuid` for something of this report."""
        return stable_uuid("|".join([self.key, *map(str, parts)]))


def read(doc: dict[str, Any], source: str | None = None) -> Report:
    """Check a findings document and return its exporter view; ``source`` names it in errors."""

    def bad(where: str, problem: str) -> InputError:
        return InputError(source, where, problem)

    if not isinstance(doc, dict):
        raise bad("top level", "a findings document is a JSON object")
    if doc.get("format") != FINDINGS_FORMAT:
        raise bad(
            "format",
            f"expected {FINDINGS_FORMAT!r}, got {doc.get('format')!r} "
            "(write findings.json with `rogueflow report`)",
        )
    items = doc.get("findings")
    if not isinstance(items, list):
        raise bad("findings", "missing or not a list")
    return Report(
        generated_at=_time(doc.get("generated_at"), "generated_at", bad),
        version=str(doc.get("rogueflow_version") or ""),
        territory=_dict(doc.get("territory"), "territory", bad),
        analysis_window=_dict(doc.get("analysis_window"), "analysis_window", bad),
        data_window=_dict(doc.get("data_window"), "data_window", bad),
        findings=tuple(_finding(i, f, bad) for i, f in enumerate(items)),
    )


def _finding(i: int, f: Any, bad: Any) -> Finding:
    at = f"findings[{i}]"
    if not isinstance(f, dict):
        raise bad(at, "a finding is a JSON object")
    for key in ("id", "title", "statement"):
        if not isinstance(f.get(key), str) or not f[key]:
            raise bad(f"{at}.{key}", "missing or not a string")
    conf = _dict(f.get("confidence"), f"{at}.confidence", bad)
    level = conf.get("level")
    if level not in LEVELS:
        raise bad(f"{at}.confidence.level", f"must be one of {LEVELS}, got {level!r}")
    return Finding(
        index=i,
        id=f["id"],
        title=f["title"],
        statement=f["statement"],
        period={k: str(v) for k, v in _dict(f.get("period"), f"{at}.period", bad).items()},
        metrics=_dict(f.get("metrics"), f"{at}.metrics", bad),
        level=level,
        reasons=tuple(str(r) for r in conf.get("reasons") or ()),
        alternatives=tuple(str(a) for a in f.get("alternatives") or ()),
        priority=str(f.get("priority") or "normal"),
        indicators=tuple(
            _indicator(x, f"{at}.indicators[{j}]", bad)
            for j, x in enumerate(f.get("indicators") or ())
        ),
        samples=tuple(
            _sample(x, f"{at}.samples[{j}]", bad) for j, x in enumerate(f.get("samples") or ())
        ),
    )


def _indicator(x: Any, at: str, bad: Any) -> Indicator:
    x = _dict(x, at, bad)
    kind, value = x.get("kind"), x.get("value")
    if kind not in INDICATOR_KINDS:
        raise bad(f"{at}.kind", f"must be one of {INDICATOR_KINDS}, got {kind!r}")
    if not isinstance(value, str) or not value.strip():
        raise bad(f"{at}.value", "missing or empty")
    value = value.strip()
    if kind in ("ipv4-addr", "ipv6-addr"):
        try:
            addr = ipaddress.ip_address(value)
        except ValueError:
            raise bad(f"{at}.value", f"{value!r} is not an IP address") from None
        if f"ipv{addr.version}-addr" != kind:
            raise bad(f"{at}.value", f"{value!r} is not an {kind}")
        value = str(addr)  # canonical text, so duplicates merge
    elif kind == "domain-name":
        value = value.lower().rstrip(".")
        if any(c.isspace() for c in value) or not value:
            raise bad(f"{at}.value", f"{x.get('value')!r} is not a domain name")
    elif any(c.isspace() for c in value):
        raise bad(f"{at}.value", f"wallet address {value!r} contains whitespace")
    flows = x.get("flows")
    return Indicator(
        kind=kind,
        value=value,
        role=str(x.get("role") or kind),
        first_seen=_opt_time(x.get("first_seen"), f"{at}.first_seen", bad),
        last_seen=_opt_time(x.get("last_seen"), f"{at}.last_seen", bad),
        flows=int(flows) if isinstance(flows, int | float) else None,
        coin=str(x["coin"]).upper() if x.get("coin") else None,
    )


def _sample(x: Any, at: str, bad: Any) -> Sample:
    x = _dict(x, at, bad)
    for key in ("src", "dst"):
        try:
            ipaddress.ip_address(str(x.get(key)))
        except ValueError:
            raise bad(f"{at}.{key}", f"{x.get(key)!r} is not an IP address") from None
    ints = {}
    for key in ("proto", "src_port", "dst_port", "packets", "bytes"):
        v = x.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise bad(f"{at}.{key}", f"must be a non-negative integer, got {v!r}")
        ints[key] = v
    if not isinstance(x.get("community_id"), str) or not x["community_id"]:
        raise bad(f"{at}.community_id", "missing")
    start = _time(x.get("ts_start"), f"{at}.ts_start", bad)
    end = _time(x.get("ts_end") or x.get("ts_start"), f"{at}.ts_end", bad)
    if end < start:
        raise bad(f"{at}.ts_end", f"{iso(end)} is before ts_start {iso(start)}")
    return Sample(
        ts_start=start,
        ts_end=end,
        src=str(ipaddress.ip_address(x["src"])),
        dst=str(ipaddress.ip_address(x["dst"])),
        community_id=x["community_id"],
        service=x.get("service"),
        category=x.get("category"),
        evidence=x.get("evidence"),
        **ints,
    )


def _dict(v: Any, at: str, bad: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise bad(at, "missing or not an object")
    return v


def _time(v: Any, at: str, bad: Any) -> datetime:
    t = _opt_time(v, at, bad)
    if t is None:
        raise bad(at, "missing timestamp")
    return t


def _opt_time(v: Any, at: str, bad: Any) -> datetime | None:
    """ISO 8601 (``Z``, an offset or naive = UTC; a bare date is its midnight) to aware UTC."""
    if v is None or v == "":
        return None
    try:
        t = datetime.fromisoformat(str(v))
    except ValueError:
        raise bad(at, f"{v!r} is not an ISO 8601 timestamp") from None
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def iso(t: datetime) -> str:
    """UTC with a Z; microseconds only when there are any."""
    spec = "microseconds" if t.microsecond else "seconds"
    return t.astimezone(UTC).replace(tzinfo=None).isoformat(timespec=spec) + "Z"


def metric_lines(metrics: dict[str, dict[str, Any]]) -> list[str]:
    """``name = value unit [low – high] (method)``, one per metric, in the document's order."""
    out = []
    for name, m in metrics.items():
        if not isinstance(m, dict):
            continue
        show = _time_text if m.get("unit") == "unix time" else _number
        value = show(m.get("value"))
        unit = f" {m['unit']}" if m.get("unit") and show is _number else ""
        if m.get("unit") == "share" and isinstance(m.get("value"), int | float):
            unit += f" ({100 * m['value']:.1f}%)"
        lo, hi = m.get("low"), m.get("high")
        interval = f" [{show(lo)} – {show(hi)}]" if lo is not None and hi is not None else ""
        method = f" ({m['method']})" if m.get("method") else ""
        out.append(f"{name} = {value}{unit}{interval}{method}")
    return out


def _time_text(x: Any) -> str:
    """A metric in seconds since the epoch, as ISO 8601 UTC."""
    if isinstance(x, bool) or not isinstance(x, int | float):
        return "—" if x is None else str(x)
    return iso(datetime.fromtimestamp(x, UTC))


def _number(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return "—" if x is None else str(x)
    if isinstance(x, float) and x != int(x) and abs(x) < 100:
        return f"{x:.4g}"
    return num(x)


def merged_indicators(report: Report) -> list[tuple[Indicator, list[Finding]]]:
    """Each distinct (kind, value) once, with every finding naming it (first-seen order).

    Seen times widen to cover all mentions; the role and coin of the first mention
    are kept (the findings' own roles go into comments and descriptions).
    """
    order: list[tuple[str, str]] = []
    found: dict[tuple[str, str], tuple[Indicator, list[Finding]]] = {}
    for f in report.findings:
        for ind in f.indicators:
            key = (ind.kind, ind.value)
            if key not in found:
                order.append(key)
                found[key] = (ind, [f])
                continue
            first, fs = found[key]
            if f not in fs:
                fs.append(f)
            found[key] = (
                Indicator(
                    kind=first.kind,
                    value=first.value,
                    role=first.role,
                    first_seen=_min(first.first_seen, ind.first_seen),
                    last_seen=_max(first.last_seen, ind.last_seen),
                    flows=max(first.flows or 0, ind.flows or 0) or None,
                    coin=first.coin or ind.coin,
                ),
                fs,
            )
    return [found[k] for k in order]


def merged_samples(report: Report) -> list[tuple[Sample, list[Finding]]]:
    """Each distinct sample flow once, with the findings citing it."""
    found: dict[str, tuple[Sample, list[Finding]]] = {}
    for f in report.findings:
        for s in f.samples:
            _, fs = found.setdefault(s.key, (s, []))
            if f not in fs:
                fs.append(f)
    return list(found.values())


def roles(ind: Indicator, findings: list[Finding]) -> str:
    """``role in finding-id; role in other-id`` for every finding naming the indicator."""
    parts = []
    for f in findings:
        for x in f.indicators:
            if (x.kind, x.value) == (ind.kind, ind.value):
                part = f"{x.role} in {f.id}"
                if part not in parts:
                    parts.append(part)
    return "; ".join(parts)


def sighting(ind: Indicator) -> str:
    """``first 2018-05-01T00:00:00Z, last …, 42 flows`` (the parts known), or ''."""
    parts = [
        f"first {iso(ind.first_seen)}" if ind.first_seen else "",
        f"last {iso(ind.last_seen)}" if ind.last_seen else "",
        f"{ind.flows:,} flow{'s' if ind.flows != 1 else ''}" if ind.flows else "",
    ]
    return ", ".join(p for p in parts if p)


def best_level(findings: list[Finding]) -> str:
    return max((f.level for f in findings), key=LEVELS.index)


def _min(a: datetime | None, b: datetime | None) -> datetime | None:
    return min(x for x in (a, b) if x is not None) if (a or b) else None


def _max(a: datetime | None, b: datetime | None) -> datetime | None:
    return max(x for x in (a, b) if x is not None) if (a or b) else None
