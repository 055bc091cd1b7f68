"""The Markdown report: the HTML report's content with tables in place of charts."""

from __future__ import annotations

from typing import Any

import jinja2

from rogueflow.report import format_interval, format_metric


def cell(value: Any) -> str:
    """A value safe inside a Markdown table cell (pipes escaped, one line)."""
    text = "" if value is None else str(value)
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rogueflow.report", "templates"),
        autoescape=False,  # Markdown, not HTML; table cells go through ``cell``
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["cell"] = cell
    env.filters["metric"] = format_metric
    env.filters["interval"] = format_interval
    return env


def render_markdown(doc: dict[str, Any]) -> str:
    return environment().get_template("report.md").render(doc=doc)
