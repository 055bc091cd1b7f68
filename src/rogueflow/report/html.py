"""The HTML report: one self-contained file (plotly.js inlined once, charts as JSON specs).

Every value from data or profiles goes through Jinja2 autoescaping; chart specs
are embedded with ``tojson`` (which escapes ``<``, ``>`` and ``&``) in
``application/json`` blocks, so nothing in the data can close a tag.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2

from rogueflow.report import format_interval, format_metric

PLOTLY_CONFIG = {
    "displaylogo": False,
    "responsive": True,
    "modeBarButtonsToRemove": ["sendDataToCloud"],
}


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


def render_html(doc: dict[str, Any], charts: dict[str, dict[str, Any]]) -> str:
    """``doc`` is the findings.json document; ``charts`` the rendered Plotly specs by id."""
    template = environment().get_template("report.html")
    return template.render(
        doc=doc, charts=charts, plotly_js=plotly_js(), plotly_config=PLOTLY_CONFIG
    )
