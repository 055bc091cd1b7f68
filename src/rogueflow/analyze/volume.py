"""Volume and growth: how much activity touches the territory, per year, and when it stepped.

Definitions (the demo's ground truth uses exactly these):

* flows — territory flows; bytes / packets — both directions × sampling rate;
* active internal hosts — distinct inside addresses;
* days with data — distinct UTC days with at least one territory flow;
* flows per day — flows / days with data (days without data are gaps in
  collection, not quiet days);
* growth ratio — flows per day in the last calendar year with data over the
  first (and, with ``--baseline``, the rest of the window over the baseline).

Findings: ``volume.growth`` and ``volume.change_points``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import numpy as np

from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.findings import (
    Check,
    Finding,
    Metric,
    Table,
    assess,
    fold,
    grade,
    human_bytes,
    num,
)

GROWTH_CLEAR = 1.1  # growth is asserted when its interval lies beyond ±10 %
RATE_METHOD = (
    "mean of daily counts over days with data; 95% interval on the log scale with the "
    "variance of the daily series (floored at Poisson)"
)
RATIO_METHOD = (
    "ratio of mean daily counts; 95% delta-method interval on the log ratio using each "
    "period's daily variance (overdispersion-aware, floored at Poisson)"
)


@dataclass(frozen=True)
class Period:
    label: str
    days: list[date]
    flows: np.ndarray
    bytes: np.ndarray
    packets: np.ndarray
    calendar_days: int

    @property
    def coverage(self) -> float:
        return len(self.days) / self.calendar_days if self.calendar_days else 0.0


def _period(label: str, rows: list[dict[str, Any]], lo: date, hi: date) -> Period:
    sel = [r for r in rows if lo <= r["day"] <= hi]
    return Period(
        label,
        [r["day"] for r in sel],
        np.array([r["flows"] for r in sel], dtype=np.float64),
        np.array([r["bytes"] or 0.0 for r in sel], dtype=np.float64),
        np.array([r["packets"] or 0.0 for r in sel], dtype=np.float64),
        (hi - lo).days + 1,
    )


def _interval(e: stats.Estimate, unit: str, method: str, scale: float = 1.0) -> Metric:
    lo = None if e.low is None else e.low * scale
    hi = None if e.high is None else e.high * scale
    return Metric(e.value * scale, lo, hi, unit, method)


def _pct_change(g: stats.Estimate, ratio_name: str) -> Metric:
    """A ratio and its interval as a percentage change ("+300%")."""
    lo = None if g.low is None else (g.low - 1) * 100
    hi = None if g.high is None else (g.high - 1) * 100
    return Metric((g.value - 1) * 100, lo, hi, "%", f"({ratio_name} − 1) × 100")


class VolumeGrowth:
    id = "volume"
    title = "Volume and growth"

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        rows = scope.daily().to_pylist()
        out.findings.append(self._growth(scope, rows, out))
        out.findings.append(self._change_points(scope, rows, out))
        return out

    # --- volume.growth ----------------------------------------------------------------

    def _growth(self, scope: Scope, rows: list[dict[str, Any]], out: AnalysisOutput) -> Finding:
        t = scope.territory
        with scope.trace() as used:
            scope.daily()
            per_year = {
                r["year"]: r
                for r in scope.rows(
                    "hosts and collection per year",
                    f"""
                SELECT year, count(DISTINCT internal_addr) AS hosts,
                       count(DISTINCT remote_addr) AS remotes,
                       min(sampling_rate) AS min_rate, max(sampling_rate) AS max_rate
                FROM {VIEW} GROUP BY year ORDER BY year""",
                )
            }
            exporters: dict[int, set[str]] = {}
            for r in scope.rows(
                "exporters per year",
                f"""
                SELECT DISTINCT year, coalesce(exporter, '(unnamed)') AS exporter
                FROM {VIEW} ORDER BY year, exporter""",
            ):
                exporters.setdefault(r["year"], set()).add(r["exporter"])
            years = sorted(per_year)
            periods = {
                y: _period(
                    str(y),
                    rows,
                    max(date(y, 1, 1), scope.first_day),
                    min(date(y, 12, 31), scope.last_day),
                )
                for y in years
            }
            metrics: dict[str, Metric] = {}
            table_rows = []
            for y in years:
                p = periods[y]
                fr, br, pr = stats.rate(p.flows), stats.rate(p.bytes), stats.rate(p.packets)
                n = len(p.days)
                metrics[f"flows_{y}"] = _interval(
                    fr,
                    "flows",
                    "observed count; interval = days with data × interval of the daily mean",
                    scale=n,
                )
                metrics[f"flows_per_day_{y}"] = _interval(fr, "flows/day", RATE_METHOD)
                metrics[f"bytes_per_day_{y}"] = _interval(br, "bytes/day", RATE_METHOD)
                metrics[f"packets_per_day_{y}"] = _interval(pr, "packets/day", RATE_METHOD)
                metrics[f"active_hosts_{y}"] = Metric(
                    per_year[y]["hosts"],
                    None,
                    None,
                    "hosts",
                    "distinct internal addresses (exact count, no interval)",
                )
                metrics[f"days_with_data_{y}"] = Metric(n, None, None, "days", "distinct UTC days")
                table_rows.append(
                    (
                        y,
                        n,
                        f"{100 * p.coverage:.0f}%",
                        num(p.flows.sum()),
                        f"{num(fr.value)} ({num(fr.low)}–{num(fr.high)})",
                        human_bytes(br.value),
                        num(per_year[y]["hosts"]),
                        num(per_year[y]["remotes"]),
                        ", ".join(sorted(exporters.get(y, ()))),
                    )
                )
            checks: list[Check] = []
            headline: list[str] = []
            first, last = years[0], years[-1]
            sampled = any(r["max_rate"] > 1 for r in per_year.values())
            if len(years) >= 2:
                p0, p1 = periods[first], periods[last]
                g = stats.ratio_of_means(p0.flows, p1.flows)
                gb = stats.ratio_of_means(p0.bytes, p1.bytes)
                metrics["growth_ratio"] = Metric(g.value, g.low, g.high, "×", RATIO_METHOD)
                metrics["growth_pct"] = _pct_change(g, "growth_ratio")
                metrics["bytes_growth_ratio"] = Metric(gb.value, gb.low, gb.high, "×", RATIO_METHOD)
                headline = [
                    "growth_ratio",
                    "growth_pct",
                    f"flows_per_day_{first}",
                    f"flows_per_day_{last}",
                ]
                checks += _sample_checks(p0, p1, g)
                same_rate = (per_year[first]["min_rate"], per_year[first]["max_rate"]) == (
                    per_year[last]["min_rate"],
                    per_year[last]["max_rate"],
                )
                checks.append(
                    Check(
                        same_rate,
                        "the sampling rate is the same in both years"
                        + ("" if sampled else " (unsampled)"),
                        "the sampling rate differs between the years compared, so flow counts are "
                        "not like for like",
                    )
                )
                same_exp = exporters.get(first) == exporters.get(last)
                checks.append(
                    Check(
                        same_exp,
                        "the same exporters/sensors reported in both years",
                        f"the exporters differ between {first} and {last} "
                        f"({len(exporters.get(first, ()))} vs {len(exporters.get(last, ()))}); "
                        "part of the change may be collection",
                    )
                )
                statement = (
                    f"activity to and from networks in {t.name} {fold(g.value)} from {first} to "
                    f"{last}: {num(p0.flows.mean())} flows per day in {first} against "
                    f"{num(p1.flows.mean())} in {last} (95% interval for the ratio "
                    f"×{g.low:.2f}–×{g.high:.2f}). Bytes per day changed ×{gb.value:.1f} and "
                    f"active internal hosts went from {num(per_year[first]['hosts'])} to "
                    f"{num(per_year[last]['hosts'])}."
                )
            else:
                p0 = periods[first]
                checks.append(
                    Check(
                        False,
                        "",
                        f"the data cover a single calendar year ({first}), "
                        "so no year-on-year growth can be measured",
                        penalty=2,
                    )
                )
                statement = (
                    f"activity to and from networks in {t.name} averaged "
                    f"{num(p0.flows.mean())} flows per day over {len(p0.days)} days with data in "
                    f"{first}; the data cover one calendar year, so no growth is measured."
                )
            if scope.baseline is not None:
                statement += " " + self._baseline(scope, rows, metrics, checks)
            if sampled:
                checks.append(
                    Check(
                        True,
                        "flows are sampled: flow counts are of sampled flows "
                        "and bytes/packets are scaled by the sampling rate",
                        "",
                    )
                )
            confidence = grade(checks)
            out.charts["volume.yearly"] = {
                "id": "volume.yearly",
                "kind": "bars_with_intervals",
                "title": "Flows per day with data, per year (95% interval)",
                "caption": "Mean daily flows on days with data; error bars from the daily "
                "variance.",
                "data": {
                    "categories": [str(y) for y in years],
                    "y_title": "flows per day",
                    "series": {
                        "flows/day": (
                            [metrics[f"flows_per_day_{y}"].value for y in years],
                            [metrics[f"flows_per_day_{y}"].low for y in years],
                            [metrics[f"flows_per_day_{y}"].high for y in years],
                        )
                    },
                },
            }
            out.charts["volume.monthly"], monthly = self._monthly(scope)
            prov = provenance(scope, used)
        gm = metrics.get("growth_ratio")
        return Finding(
            detected=None
            if gm is None or gm.low is None or gm.high is None
            else bool(gm.low > GROWTH_CLEAR or gm.high < 1 / GROWTH_CLEAR),
            id="volume.growth",
            title=f"Growth of activity to and from {t.name}",
            statement=f"{assess(confidence.level)} {statement}",
            period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
            metrics=metrics,
            confidence=confidence,
            evidence=(
                Table(
                    "Volume per calendar year (UTC)",
                    (
                        "year",
                        "days with data",
                        "coverage",
                        "flows",
                        "flows/day (95% CI)",
                        "bytes/day",
                        "active internal hosts",
                        "remote addresses",
                        "exporters",
                    ),
                    tuple(table_rows),
                    "Coverage = days with data ÷ calendar days of the year inside the data window.",
                ),
                monthly,
            ),
            charts=("volume.yearly", "volume.monthly"),
            provenance=prov,
            alternatives=(
                "Changes in collection (more sensors, different sampling or a vantage point that "
                "sees a different share of the territory's upstreams) change flow counts without "
                "any change in use.",
                "New address space coming into use, or hosts moving behind NAT, changes host "
                "counts and flow counts differently.",
                "Growth in automated traffic (updates, scanning of the territory from outside, "
                "mining) inflates flow counts without more people online.",
            ),
            headline=tuple(headline),
        )

    def _baseline(
        self,
        scope: Scope,
        rows: list[dict[str, Any]],
        metrics: dict[str, Metric],
        checks: list[Check],
    ) -> str:
        assert scope.baseline is not None
        b0, b1 = scope.baseline
        base = _period("baseline", rows, max(b0, scope.first_day), min(b1, scope.last_day))
        rest_rows = [r for r in rows if not b0 <= r["day"] <= b1]
        rest = Period(
            "comparison",
            [r["day"] for r in rest_rows],
            np.array([r["flows"] for r in rest_rows], dtype=np.float64),
            np.zeros(0),
            np.zeros(0),
            0,
        )
        if len(base.days) == 0 or len(rest.days) == 0:
            checks.append(
                Check(
                    False,
                    "",
                    f"the baseline window {b0}–{b1} "
                    f"{'has no data' if not base.days else 'covers all the data'}; "
                    "no baseline comparison",
                    penalty=0,
                )
            )
            return f"No baseline comparison: the window {b0} to {b1} leaves nothing to compare."
        g = stats.ratio_of_means(base.flows, rest.flows)
        br, rr = stats.rate(base.flows), stats.rate(rest.flows)
        metrics["baseline_flows_per_day"] = _interval(br, "flows/day", RATE_METHOD)
        metrics["comparison_flows_per_day"] = _interval(rr, "flows/day", RATE_METHOD)
        metrics["growth_ratio_baseline"] = Metric(g.value, g.low, g.high, "×", RATIO_METHOD)
        metrics["growth_pct_baseline"] = _pct_change(g, "growth_ratio_baseline")
        return (
            f"Outside the baseline window {b0} to {b1} ({num(br.value)} flows per day), "
            f"activity {fold(g.value)} (95% interval ×{g.low:.2f}–×{g.high:.2f})."
        )

    def _monthly(self, scope: Scope) -> tuple[dict[str, Any], Table]:
        rows = scope.rows(
            "monthly flows by side",
            f"""
            SELECT year, month, side, {scope.trend.flows} AS flows, sum(flow_bytes) AS bytes
            FROM {scope.trend.view} GROUP BY year, month, side ORDER BY year, month, side""",
        )
        months = sorted({f"{r['year']:04d}-{r['month']:02d}" for r in rows})
        series: dict[str, list[float]] = {}
        for side, label in (("out", "outbound"), ("in", "inbound"), ("internal", "internal")):
            by = {
                f"{r['year']:04d}-{r['month']:02d}": r["flows"] for r in rows if r["side"] == side
            }
            if by:
                series[label] = [by.get(m, 0) for m in months]
        chart = {
            "id": "volume.monthly",
            "kind": "monthly_bars",
            "title": "Flows per month by direction",
            "caption": "Direction relative to the territory (UTC months).",
            "data": {"months": months, "series": series, "y_title": "flows"},
        }
        names = list(series)
        table = Table(
            "Flows per month by direction (UTC)",
            ("month", *names, "total"),
            tuple(
                (m, *(num(series[n][i]) for n in names), num(sum(series[n][i] for n in names)))
                for i, m in enumerate(months)
            ),
        )
        return chart, table

    # --- volume.change_points ----------------------------------------------------------

    def _change_points(
        self, scope: Scope, rows: list[dict[str, Any]], out: AnalysisOutput
    ) -> Finding:
        t = scope.territory
        with scope.trace() as used:
            scope.daily()
            days = [r["day"] for r in rows]
            flows = np.array([r["flows"] for r in rows], dtype=np.float64)
            cps = stats.change_points(np.log1p(flows))
            bounds = [0, *cps, len(days)]
            boundaries = {s["source_id"]: (s["first_day"], s["last_day"]) for s in scope.sources()}
            metrics: dict[str, Metric] = {
                "change_points": Metric(
                    len(cps),
                    None,
                    None,
                    "dates",
                    "binary segmentation of log(1 + daily flows), Gaussian mean-shift cost, noise "
                    "from first differences (MAD), BIC-type penalty 3·log(n), segments ≥ 7 days",
                )
            }
            events, phrases, table_rows, alternatives = [], [], [], []
            all_clear, near_gap, near_source = True, False, False
            for i, k in enumerate(cps):
                before = flows[bounds[i] : k]
                after = flows[k : bounds[i + 2]]
                r = stats.ratio_of_means(before, after)
                d = days[k]
                metrics[f"step_{d.isoformat()}"] = Metric(r.value, r.low, r.high, "×", RATIO_METHOD)
                all_clear &= r.low is not None and (r.low > 1 or (r.high or 0) < 1)
                gap = (d - days[k - 1]).days - 1
                near_gap |= gap > 0
                for sid, (lo, hi) in boundaries.items():
                    if (lo != scope.first_day and abs((d - lo).days) <= 2) or (
                        hi != scope.last_day and abs((d - hi - timedelta(days=1)).days) <= 2
                    ):
                        near_source = True
                        alternatives.append(
                            f"The change on {d} coincides with the start or end "
                            f"of catalog source {sid}: check collection first."
                        )
                events.append((d.isoformat(), f"{d:%Y-%m-%d} ×{r.value:.1f}"))
                phrases.append(
                    f"on {d} from about {num(before.mean())} to {num(after.mean())} "
                    f"flows per day (×{r.value:.1f})"
                )
                table_rows.append(
                    (
                        d.isoformat(),
                        num(before.mean()),
                        num(after.mean()),
                        f"×{r.value:.2f} (×{r.low:.2f}–×{r.high:.2f})",
                        f"{(r.value - 1) * 100:+.0f}%",
                        gap,
                    )
                )
            checks = [
                Check(
                    len(days) >= 60,
                    f"{len(days)} days with data",
                    f"only {len(days)} days with data: short series hide or invent steps",
                ),
                Check(
                    all_clear,
                    "each step's 95% interval excludes no change",
                    "at least one step's interval includes no change",
                ),
                Check(
                    not near_gap,
                    "no step follows a gap in the data",
                    "a step follows a gap in the data (possible collection outage)",
                ),
                Check(
                    not near_source,
                    "no step coincides with the start or end of a source",
                    "a step coincides with the start or end of a catalog source",
                ),
            ]
            confidence = grade(checks)
            if cps:
                statement = (
                    f"daily activity to and from networks in {t.name} changed level "
                    f"abruptly on {len(cps)} date{'s' if len(cps) > 1 else ''}: "
                    + "; ".join(phrases)
                    + "."
                )
            else:
                statement = (
                    f"daily activity to and from networks in {t.name} shows no abrupt "
                    f"level change between {days[0]} and {days[-1]} beyond day-to-day "
                    "variation."
                )
            levels = [
                (
                    days[bounds[i]].isoformat(),
                    days[bounds[i + 1] - 1].isoformat(),
                    float(flows[bounds[i] : bounds[i + 1]].mean()),
                )
                for i in range(len(bounds) - 1)
            ]
            out.charts["volume.daily"] = {
                "id": "volume.daily",
                "kind": "daily_series",
                "title": "Flows per day (UTC) with detected change points",
                "caption": "Dotted lines: change points; red steps: segment means.",
                "data": {
                    "days": [d.isoformat() for d in days],
                    "values": flows.tolist(),
                    "events": events,
                    "levels": levels,
                },
            }
            prov = provenance(scope, used)
        return Finding(
            detected=bool(cps),
            id="volume.change_points",
            title="Dated changes in daily activity",
            statement=f"{assess(confidence.level)} {statement}",
            period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
            metrics=metrics,
            confidence=confidence,
            evidence=(
                Table(
                    "Change points",
                    (
                        "date",
                        "flows/day before",
                        "flows/day after",
                        "ratio (95% CI)",
                        "change",
                        "gap before (days)",
                    ),
                    tuple(table_rows),
                    "Levels are mean daily flows of the adjacent segments.",
                ),
            ),
            charts=("volume.daily",),
            provenance=prov,
            alternatives=(
                *alternatives,
                "A step can reflect a change in collection (a sensor added or lost, a sampling "
                "change) or in routing (a new upstream carrying traffic the vantage point does or "
                "does not see) rather than a change in use.",
            ),
            headline=("change_points",),
        )


def _sample_checks(p0: Period, p1: Period, g: stats.Estimate) -> list[Check]:
    lo, hi = g.low or 0.0, g.high or float("inf")
    n = min(len(p0.days), len(p1.days))
    cov = min(p0.coverage, p1.coverage)
    return [
        Check(n >= 7, "", f"only {n} days with data in one of the years compared", penalty=2),
        Check(
            n >= 30,
            f"{len(p0.days)} and {len(p1.days)} days with data",
            f"fewer than 30 days with data in one year ({len(p0.days)}, {len(p1.days)})",
        ),
        Check(
            cov >= 0.5,
            f"days with data cover at least {100 * cov:.0f}% of each year's span",
            f"days with data cover only {100 * cov:.0f}% of one year's span (gaps)",
        ),
        Check(
            lo > 1 or hi < 1,
            "the 95% interval of the ratio excludes no change",
            "the 95% interval of the ratio includes no change",
            penalty=2,
        ),
        Check(
            hi / lo <= 1.5 if lo > 0 else False,
            "the interval of the ratio is narrow",
            "the interval of the ratio is wide",
        ),
    ]
