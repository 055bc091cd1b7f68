"""Chart specs: plain Plotly JSON (``{"data": [...], "layout": {...}}``) built from aggregates.

Analyses describe a chart without knowing about Plotly: a dict
``{"id", "kind", "title", "caption", "data"}`` where ``kind`` names one of the
builders below and ``data`` holds its arguments (plain lists). :func:`render`
turns that into a Plotly figure spec; the HTML report embeds each spec as JSON
and draws it with the inlined plotly.js, so a report opens offline. Figures are
validated against plotly's schema when built.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

DAY_LABELS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
PALETTE = ("#1f4e79", "#c0504d", "#4f81bd", "#9bbb59", "#8064a2", "#f79646", "#4bacc6")
_GRID = {"gridcolor": "#e6e6e6", "zerolinecolor": "#cccccc", "linecolor": "#999999"}
_LAYOUT: dict[str, Any] = {
    "paper_bgcolor": "white",
    "plot_bgcolor": "white",
    "xaxis": _GRID,
    "yaxis": _GRID,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 50},
    "font": {"family": "system-ui, -apple-system, Segoe UI, sans-serif", "size": 12},
    "legend": {"orientation": "h", "y": -0.2},
}


def spec(chart_id: str, title: str, fig: go.Figure) -> dict[str, Any]:
    fig.update_layout(title={"text": title}, **_LAYOUT)
    figure = json.loads(pio.to_json(fig, validate=True, engine="json"))
    # plotly.py expands its default template (~10 kB) into every figure; the page styles
    # its charts through the explicit layout above instead.
    figure["layout"].pop("template", None)
    return {"id": chart_id, "title": title, "caption": "", "figure": figure}


def daily_series(
    chart_id: str,
    title: str,
    days: Sequence[str],
    values: Sequence[float],
    events: Sequence[tuple[str, str]] = (),
    levels: Sequence[tuple[str, str, float]] = (),
    y_title: str = "flows per day",
) -> dict[str, Any]:
    """A daily line with dated events (vertical lines) and segment levels (steps)."""
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=list(days),
            y=list(values),
            mode="lines",
            name="daily",
            line={"color": PALETTE[0], "width": 1},
        )
    )
    for i, (start, end, level) in enumerate(levels):
        fig.add_trace(
            go.Scatter(
                x=[start, end],
                y=[level, level],
                mode="lines",
                name="segment mean",
                line={"color": PALETTE[1], "width": 2},
                showlegend=i == 0,
            )
        )
    for day, label in events:
        fig.add_vline(x=day, line={"color": PALETTE[1], "dash": "dot", "width": 1})
        fig.add_annotation(
            x=day,
            y=1,
            yref="paper",
            text=label,
            showarrow=False,
            xanchor="left",
            yanchor="bottom",
            font={"size": 10},
        )
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    return spec(chart_id, title, fig)


def monthly_bars(
    chart_id: str,
    title: str,
    months: Sequence[str],
    series: dict[str, Sequence[float]],
    y_title: str,
) -> dict[str, Any]:
    """Stacked monthly bars, one trace per series (e.g. per side of the border)."""
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        fig.add_trace(
            go.Bar(
                x=list(months),
                y=list(values),
                name=name,
                marker={"color": PALETTE[i % len(PALETTE)]},
            )
        )
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title_text=y_title)
    return spec(chart_id, title, fig)


def bars_with_intervals(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: dict[str, tuple[Sequence[float], Sequence[float | None], Sequence[float | None]]],
    y_title: str,
    percent: bool = False,
) -> dict[str, Any]:
    """Grouped bars with asymmetric 95% error bars: {name: (values, lows, highs)}."""
    fig = go.Figure()
    for i, (name, (vals, lows, highs)) in enumerate(series.items()):
        plus = [None if h is None else h - v for v, h in zip(vals, highs, strict=True)]
        minus = [None if lo is None else v - lo for v, lo in zip(vals, lows, strict=True)]
        fig.add_trace(
            go.Bar(
                x=list(categories),
                y=list(vals),
                name=name,
                marker={"color": PALETTE[i % len(PALETTE)]},
                error_y={"type": "data", "symmetric": False, "array": plus, "arrayminus": minus},
            )
        )
    fig.update_layout(barmode="group")
    # categories such as years are labels, not numbers (no "2,016.5" ticks)
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text=y_title, tickformat=".0%" if percent else None)
    return spec(chart_id, title, fig)


def stacked_bars(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: dict[str, Sequence[float]],
    y_title: str,
    percent: bool = False,
    colors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Stacked bars over labelled categories (years); ``colors`` pins a series' colour
    (the unclassified share is grey, so it never reads as a category)."""
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        color = (colors or {}).get(name, PALETTE[i % len(PALETTE)])
        fig.add_trace(
            go.Bar(x=list(categories), y=list(values), name=name, marker={"color": color})
        )
    fig.update_layout(barmode="stack")
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text=y_title, tickformat=".0%" if percent else None)
    return spec(chart_id, title, fig)


def heatmap(
    chart_id: str,
    title: str,
    matrix: Sequence[Sequence[float]],
    *,
    diverging: bool = False,
    z_title: str = "share of flows",
) -> dict[str, Any]:
    """Hour (x, 0–23) × weekday (y, Mon–Sun) heatmap; ``diverging`` for deltas."""
    z = [list(row) for row in matrix]
    peak = max((abs(v) for row in z for v in row), default=0.0) or 1.0
    trace = go.Heatmap(
        z=z,
        x=list(range(24)),
        y=list(DAY_LABELS),
        colorscale="RdBu" if diverging else "Blues",
        reversescale=diverging,
        zmid=0 if diverging else None,
        zmin=-peak if diverging else 0,
        zmax=peak,
        colorbar={"title": {"text": z_title}, "tickformat": ".1%"},
        hovertemplate="%{y} %{x}:00 local<br>%{z:.2%}<extra></extra>",
    )
    fig = go.Figure(trace)
    fig.update_xaxes(title_text="local hour", dtick=3)
    fig.update_yaxes(autorange="reversed")
    return spec(chart_id, title, fig)


BUILDERS = {
    "daily_series": daily_series,
    "monthly_bars": monthly_bars,
    "bars_with_intervals": bars_with_intervals,
    "stacked_bars": stacked_bars,
    "heatmap": heatmap,
}


def render(chart: dict[str, Any]) -> dict[str, Any]:
    """A chart description from an analysis to ``{"id", "title", "caption", "figure"}``."""
    try:
        build = BUILDERS[chart["kind"]]
    except KeyError:
        raise ValueError(f"chart {chart.get('id')!r}: unknown kind {chart.get('kind')!r}") from None
    out: dict[str, Any] = build(chart["id"], chart["title"], **chart["data"])  # type: ignore[operator]
    out["caption"] = chart.get("caption", "")
    return out
