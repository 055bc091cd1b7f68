"""The HTML report: one self-contained file (plotly.js inlined once, charts as JSON specs).

Every value from data or profiles goes through Jinja2 autoescaping; chart specs
are embedded with ``tojson`` (which escapes ``<``, ``>`` and ``&``) in
``application/json`` blocks, so nothing in the data can close a tag.

Beside every category chart the page states the unclassified share (REFERENCE-CASE
caveat 3: encryption lowers classification coverage, so a category mix is only read
together with the part that could not be classified); see :func:`unclassified_notes`.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import jinja2

from rogueflow.findings import pct
from rogueflow.report import format_interval, format_metric

PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["sendDataToCloud"],
}
UNCLASSIFIED = "unclassified"
_UNCLASSIFIED_METRIC = re.compile(r"^unclassified_share(?:_(?P<period>.+))?$")


@cache
def plotly_js() -> str:
    """The installed plotly package's plotly.js bundle, for inlining."""
    from plotly.offline import get_plotlyjs

    js: str = get_plotlyjs()
    if "</script" in js.lower():  # would end the inline <script> early
        raise RuntimeError("the installed plotly.js cannot be inlined (contains </script)")
    return js


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rogueflow.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["metric"] = format_metric
    env.filters["interval"] = format_interval
    return env


def is_category_chart(chart: dict[str, Any]) -> bool:
    """A chart of service categories: ``unclassified`` is one of its series or labels,
    or its id or title names categories."""
    data = chart.get("data") or {}
    series = data.get("series")
    labels = data.get("categories") or ()
    return (
        (isinstance(series, dict) and UNCLASSIFIED in series)
        or UNCLASSIFIED in labels
        or "categor" in f"{chart.get('id', '')} {chart.get('title', '')}".lower()
    )


def _from_series(chart: dict[str, Any]) -> list[str]:
    """Per bar, the ``unclassified`` series over the bar's total (stacked charts)."""
    data = chart.get("data") or {}
    series = data.get("series") or {}
    if chart.get("kind") not in ("stacked_bars", "monthly_bars") or UNCLASSIFIED not in series:
        return []
    labels = data.get("categories") or data.get("months") or ()
    parts = []
    for i, label in enumerate(labels):
        total = sum(float(values[i] or 0) for values in series.values())
        share = float(series[UNCLASSIFIED][i] or 0) / total if total else None
        parts.append(f"{label} {pct(share, 1)}")
    return parts


def unclassified_notes(doc: dict[str, Any]) -> dict[str, str]:
    """The line shown beside each category chart, by chart id.

    From the owning finding's ``unclassified_share`` / ``unclassified_share_<period>``
    metrics (with their 95% intervals); else from the chart's own ``unclassified``
    series; a category chart with neither says so rather than staying silent.
    """
    charts: dict[str, dict[str, Any]] = doc.get("charts") or {}
    notes: dict[str, str] = {}
    for f in doc.get("findings", ()):
        parts = []
        for name, m in f.get("metrics", {}).items():
            match = _UNCLASSIFIED_METRIC.match(name)
            if match:
                interval = format_interval(m)
                parts.append(
                    " ".join(p for p in (match["period"], format_metric(m)) if p)
                    + (f" (95%: {interval})" if interval else "")
                )
        for cid in f.get("charts", ()):
            chart = charts.get(cid)
            if cid in notes or chart is None or not is_category_chart(chart):
                continue
            shown = parts or _from_series(chart)
            notes[cid] = (
                "Unclassified share (flows no taxonomy rule matched): " + " · ".join(shown)
                if shown
                else "Unclassified share: not reported by this analysis."
            )
    return notes


def render_html(doc: dict[str, Any], charts: dict[str, dict[str, Any]]) -> str:
    """``doc`` is the findings.json document; ``charts`` the rendered Plotly specs by id."""
    template = environment().get_template("report.html")
    return template.render(
        doc=doc,
        charts=charts,
        unclassified=unclassified_notes(doc),
        plotly_js=plotly_js(),
        plotly_config=PLOTLY_CONFIG,
    )
