"""Reports: run the analyses over a territory scope and write HTML, Markdown and JSON.

``build_report`` is the library call behind ``rogueflow report``::

    result = build_report(Workspace("ws"), "kp", territory_file=None, start=None, end=None,
                          baseline=None, out=None, quiet=True)
    print(result.summary())

It writes ``report.html`` (self-contained: plotly.js inlined, charts as JSON,
no network), ``report.md`` and ``findings.json`` into ``out`` (default
``<workspace>/reports/<code>``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from rogueflow import findings as fnd
from rogueflow.analyze.base import builtin_analyses, reference_data, rogueflow_version
from rogueflow.analyze.context import Scope, load_profile, open_scope, parse_baseline
from rogueflow.analyze.pattern import days_text, zone_text
from rogueflow.analyze.stats import gaps
from rogueflow.findings import Finding
from rogueflow.workspace import Workspace

__all__ = ["ReportResult", "build_report"]


@dataclass
class ReportResult:
    out_dir: Path
    findings: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def html_path(self) -> Path:
        return self.out_dir / "report.html"

    @property
    def markdown_path(self) -> Path:
        return self.out_dir / "report.md"

    @property
    def json_path(self) -> Path:
        return self.out_dir / "findings.json"

    def summary(self) -> str:
        """The report's path and headline numbers, a few lines."""
        t, cov = self.meta.get("territory", {}), self.meta.get("coverage", {})
        lines = [
            f"report: {self.html_path} (also report.md, findings.json, report.stix.json, "
            "report.misp.json, intel.dat)",
            f"{t.get('code', '?')} {t.get('name', '')}: {self.meta['analysis_window']['start']} "
            f"to {self.meta['analysis_window']['end']}, {fnd.num(cov.get('flows'))} flows on "
            f"{fnd.num(cov.get('days_with_data'))} days with data",
        ]
        for f in self.findings:
            parts = [
                f"{name} {format_metric(f['metrics'][name])}"
                for name in f.get("headline", [])
                if name in f["metrics"]
            ]
            lines.append(f"{f['id']} [{f['confidence']['level']}]: " + (", ".join(parts) or "—"))
        return "\n".join(lines)


def format_metric(m: dict[str, Any]) -> str:
    """A metric for people: shares as %, ratios as ×, counts with separators."""
    unit, v = m.get("unit", ""), m.get("value")
    if v is None:
        return "—"
    if unit == "share":
        return fnd.pct(v, 1)
    if unit == "×":
        return f"×{v:.2f}"
    if unit in ("%", "pp"):
        return f"{v:+.0f}{'%' if unit == '%' else ' pp'}"
    if unit == "bytes/day":
        return f"{fnd.human_bytes(v)}/day"
    if unit == "unix time":
        return datetime.fromtimestamp(v, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{fnd.num(v)} {unit}".strip()


def format_interval(m: dict[str, Any]) -> str:
    lo, hi = m.get("low"), m.get("high")
    if lo is None or hi is None:
        return ""
    return f"{format_metric({**m, 'value': lo})} – {format_metric({**m, 'value': hi})}"


def _coverage(scope: Scope) -> dict[str, Any]:
    daily = scope.daily().to_pylist()
    days = [r["day"] for r in daily]
    span = (scope.last_day - scope.first_day).days + 1
    holes = gaps(days, scope.first_day, scope.last_day)
    holes.sort(key=lambda g: ((g[1] - g[0]).days, g[0]), reverse=True)
    per_year: dict[int, int] = {}
    for d in days:
        per_year[d.year] = per_year.get(d.year, 0) + 1
    return {
        "flows": scope.flows,
        "first_day": scope.first_day.isoformat(),
        "last_day": scope.last_day.isoformat(),
        "days_with_data": len(days),
        "calendar_days": span,
        "coverage": len(days) / span,
        "days_with_data_per_year": {str(y): n for y, n in sorted(per_year.items())},
        "missing_days": sum((b - a).days + 1 for a, b in holes),
        "gaps": [
            {"start": a.isoformat(), "end": b.isoformat(), "days": (b - a).days + 1}
            for a, b in holes[:25]
        ],
        "gaps_listed": min(len(holes), 25),
        "gaps_total": len(holes),
        "sampling": scope.sampling(),
    }


def _meta(scope: Scope, generated_at: str) -> dict[str, Any]:
    t = scope.territory
    used = {s["source_id"]: s for s in scope.sources()}
    catalog = {s.source_id: s for s in scope.engine.store.catalog.sources()}
    sources = [
        {
            "source_id": sid,
            "path": catalog[sid].path if sid in catalog else "",
            "format": catalog[sid].format if sid in catalog else "",
            "territory_flows": used[sid]["flows"],
            "first_day": str(used[sid]["first_day"]),
            "last_day": str(used[sid]["last_day"]),
            "sha256": catalog[sid].sha256 if sid in catalog else "",
        }
        for sid in sorted(used)
    ]
    return {
        "rogueflow_version": rogueflow_version(),
        "generated_at": generated_at,
        "engine": scope.engine.name,
        "territory": {
            "code": t.code,
            "iso": t.iso,
            "name": t.name,
            "timezone": t.timezone,
            "zone_history": zone_text(t, scope.first_ts, scope.last_ts),
            "working_days": days_text(t.working_days),
            "business_hours": f"{t.business_hours[0]:%H:%M}–{t.business_hours[1]:%H:%M}",
            "space": t.describe_space(),
            "profile_source": scope.profile.source,
            "profile_sha256": scope.profile.sha256,
        },
        "analysis_window": {"start": scope.start.isoformat(), "end": scope.end.isoformat()},
        "data_window": {"start": scope.first_ts.isoformat(), "end": scope.last_ts.isoformat()},
        "baseline": None
        if scope.baseline is None
        else {"start": scope.baseline[0].isoformat(), "end": scope.baseline[1].isoformat()},
        "sources": sources,
        "reference_data": list(reference_data(scope)),
        "coverage": _coverage(scope),
    }


def _write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_report(
    ws: Workspace,
    code: str | None,
    *,
    territory_file: str | None = None,
    start: date | None = None,
    end: date | None = None,
    baseline: str | None = None,
    events: Path | None = None,
    out: Path | None = None,
    quiet: bool = True,
    engine: str | None = None,
    spark_master: str | None = None,
) -> ReportResult:
    """Analyse one territory and write report.html, report.md and findings.json.

    ``events`` is a CSV of dated events (``date,label``) for the event overlay;
    ``engine`` (``duckdb``/``spark``) and ``spark_master`` override the settings.
    """
    from rogueflow.export import write_exports
    from rogueflow.report.charts import render
    from rogueflow.report.html import render_html
    from rogueflow.report.markdown import render_markdown

    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr)

    profile = load_profile(code, territory_file)
    window = parse_baseline(baseline)
    dated = None
    if events is not None:
        from rogueflow.analyze.events import load_events

        dated = load_events(events)  # before the engine opens: a bad file fails fast
    scope = open_scope(ws, profile, start, end, window, engine=engine, spark_master=spark_master)
    try:
        generated_at = datetime.now(UTC).isoformat(timespec="seconds")
        found: list[Finding] = []
        charts: dict[str, dict[str, Any]] = {}
        for analysis in builtin_analyses(events=dated):
            say(f"analysing {analysis.title.lower()} …")
            result = analysis.run(scope)
            found += result.findings
            charts.update(result.charts)
        meta = _meta(scope, generated_at)
        # high-priority findings (a sanctioned wallet in traffic) lead the report
        found.sort(key=lambda f: f.priority != "high")
    finally:
        scope.close()
    doc = fnd.document(found, meta)
    doc["charts"] = charts
    target = out if out is not None else ws.reports_dir / profile.territory.code
    target.mkdir(parents=True, exist_ok=True)
    say(f"writing {target} …")
    rendered = {cid: render(c) for cid, c in charts.items()}
    _write(target / "findings.json", fnd.dumps(doc))
    _write(target / "report.md", render_markdown(doc))
    _write(target / "report.html", render_html(doc, rendered))
    say("writing exports (STIX 2.1, MISP, Zeek intel) …")
    write_exports(doc, target)
    return ReportResult(target, doc["findings"], meta)
