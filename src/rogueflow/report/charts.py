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


def _dated_lines(fig: go.Figure, dated: Sequence[tuple[str, str]], color: str = PALETTE[1]) -> None:
    """A dotted vertical line per dated label, the label at the top of the plot."""
    for day, label in dated:
        fig.add_vline(x=day, line={"color": color, "dash": "dot", "width": 1})
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
    _dated_lines(fig, events)
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


def first_seen_timeline(
    chart_id: str,
    title: str,
    items: Sequence[Sequence[Any]],
    threshold: str | None = None,
) -> dict[str, Any]:
    """One horizontal bar per item from first to last seen, a diamond at first seen.

    ``items``: ``[label, first_day, last_day, flows, status]``; the status (e.g. "new",
    "from the start") picks the colour and the legend entry. ``threshold`` draws a
    dotted vertical line (e.g. the date after which a first sighting counts as new).
    """
    fig = go.Figure()
    statuses = list(dict.fromkeys(str(it[4]) for it in items))
    for i, status in enumerate(statuses):
        color = PALETTE[(i + 1) % len(PALETTE)] if status != "from the start" else "#9e9e9e"
        for j, (label, first, last, flows, st) in enumerate(it for it in items if it[4] == status):
            fig.add_trace(
                go.Scatter(
                    x=[first, last],
                    y=[label, label],
                    mode="lines+markers",
                    name=str(st),
                    legendgroup=str(st),
                    showlegend=j == 0,
                    line={"color": color, "width": 6},
                    marker={"symbol": ["diamond", "line-ns"], "size": [11, 8], "color": color},
                    text=[f"{label}<br>first {first}, last {last}<br>{flows} flows"] * 2,
                    hovertemplate="%{text}<extra></extra>",
                )
            )
    if threshold:
        fig.add_vline(x=threshold, line={"color": "#555555", "dash": "dot", "width": 1})
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_xaxes(type="date")
    return spec(chart_id, title, fig)


def event_overlay(
    chart_id: str,
    title: str,
    days: Sequence[str],
    values: Sequence[float],
    events: Sequence[tuple[str, str]],
    windows: Sequence[tuple[str, str]] = (),
    y_title: str = "flows per day",
) -> dict[str, Any]:
    """A daily line with dated events (dotted lines, labelled markers) and shaded windows
    (e.g. the days before each event that a pre-event test compares with its baseline)."""
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
    for start, end in windows:
        fig.add_vrect(x0=start, x1=end, fillcolor=PALETTE[5], opacity=0.25, line_width=0)
    by_day = dict(zip(days, values, strict=True))
    for day, _label in events:
        fig.add_vline(x=day, line={"color": PALETTE[1], "dash": "dot", "width": 1})
    fig.add_trace(
        go.Scatter(
            x=[d for d, _ in events],
            y=[by_day.get(d) for d, _ in events],
            mode="markers",
            name="event",
            text=[label for _, label in events],
            marker={"color": PALETTE[1], "size": 8, "symbol": "triangle-down"},
            hovertemplate="%{x}<br>%{text}<extra></extra>",
        )
    )
    if windows:
        # a legend entry for the shading (shapes have none)
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name="pre-event window",
                marker={"color": PALETTE[5], "symbol": "square", "size": 10, "opacity": 0.5},
            )
        )
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    return spec(chart_id, title, fig)


def coin_activity(
    chart_id: str,
    title: str,
    days: Sequence[str],
    series: dict[str, Sequence[float]],
    weeks: Sequence[str] = (),
    weekly: Sequence[float] = (),
    windows: Sequence[tuple[str, str, str, float]] = (),
    markers: Sequence[tuple[str, str]] = (),
    y_title: str = "sessions per day",
) -> dict[str, Any]:
    """Daily stacked bars (e.g. mining / P2P sessions), a weekly mean line, shaded windows
    ``(label, first day, last day, mean level)`` and dated markers ``(day, label)``."""
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        fig.add_trace(
            go.Bar(x=list(days), y=list(values), name=name, marker={"color": PALETTE[i % 7]})
        )
    if weeks:
        fig.add_trace(
            go.Scatter(
                x=list(weeks),
                y=list(weekly),
                mode="lines",
                name="weekly mean per day with data",
                line={"color": PALETTE[5], "width": 2, "shape": "hv"},
            )
        )
    for i, (label, first, last, level) in enumerate(windows):
        color = PALETTE[(i + 2) % 7]
        fig.add_vrect(x0=first, x1=last, fillcolor=color, opacity=0.12, line_width=0)
        fig.add_trace(
            go.Scatter(
                x=[first, last],
                y=[level, level],
                mode="lines",
                name=f"{label} mean",
                line={"color": color, "width": 2, "dash": "dash"},
            )
        )
    _dated_lines(fig, markers)
    fig.update_layout(barmode="stack", bargap=0)
    fig.update_yaxes(title_text=y_title, rangemode="tozero")
    return spec(chart_id, title, fig)


def multi_series(
    chart_id: str,
    title: str,
    x: Sequence[str],
    series: dict[str, Sequence[float | None]],
    events: Sequence[tuple[str, str]] = (),
    levels: Sequence[tuple[str, str, float]] = (),
    y_title: str = "",
    percent: bool = False,
    colors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Several lines over one date axis (e.g. Western vs Chinese services, or the
    obfuscated share per kind), dated events as vertical lines (a crossover) and
    segment levels as red steps (phases)."""
    fig = go.Figure()
    for i, (name, values) in enumerate(series.items()):
        color = (colors or {}).get(name, PALETTE[i % len(PALETTE)])
        fig.add_trace(
            go.Scatter(x=list(x), y=list(values), mode="lines", name=name, line={"color": color})
        )
    for i, (start, end, level) in enumerate(levels):
        fig.add_trace(
            go.Scatter(
                x=[start, end],
                y=[level, level],
                mode="lines",
                name="phase level",
                line={"color": PALETTE[1], "width": 2, "dash": "dash"},
                showlegend=i == 0,
            )
        )
    _dated_lines(fig, events, "#444444")
    fig.update_yaxes(title_text=y_title, rangemode="tozero", tickformat=".1%" if percent else None)
    return spec(chart_id, title, fig)


def interval_dots(
    chart_id: str,
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float | None],
    highs: Sequence[float | None],
    groups: Sequence[str] = (),
    x_title: str = "",
    percent: bool = False,
    colors: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One dot with a horizontal interval per label (a forest plot), a line at 0; ``groups``
    names the legend entries (e.g. "rose", "no significant change"), ``colors`` pins a
    group's colour."""
    fig = go.Figure()
    names = list(groups) if groups else ["estimate"] * len(labels)
    for i, group in enumerate(dict.fromkeys(names)):
        idx = [j for j, g in enumerate(names) if g == group]
        color = (colors or {}).get(group, PALETTE[i % len(PALETTE)])
        plus = [None if (h := highs[j]) is None else h - values[j] for j in idx]
        minus = [None if (lo := lows[j]) is None else values[j] - lo for j in idx]
        fig.add_trace(
            go.Scatter(
                x=[values[j] for j in idx],
                y=[labels[j] for j in idx],
                mode="markers",
                name=group,
                marker={"color": color, "size": 9},
                error_x={
                    "type": "data",
                    "symmetric": False,
                    "array": plus,
                    "arrayminus": minus,
                    "color": color,
                },
            )
        )
    fig.add_vline(x=0, line={"color": "#555555", "width": 1})
    fig.update_yaxes(type="category", autorange="reversed", categoryorder="array",
                     categoryarray=list(labels))  # fmt: skip
    fig.update_xaxes(title_text=x_title, tickformat=".1%" if percent else None)
    return spec(chart_id, title, fig)


BUILDERS = {
    "daily_series": daily_series,
    "monthly_bars": monthly_bars,
    "bars_with_intervals": bars_with_intervals,
    "stacked_bars": stacked_bars,
    "heatmap": heatmap,
    "coin_activity": coin_activity,
    "first_seen_timeline": first_seen_timeline,
    "event_overlay": event_overlay,
    "multi_series": multi_series,
    "interval_dots": interval_dots,
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
