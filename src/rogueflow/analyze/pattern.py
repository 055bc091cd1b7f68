"""Pattern of life: when, in the territory's own local time, its networks are used.

Per calendar year (UTC), with weekday and hour taken from the flow's local time
(the zone's history applied, e.g. Pyongyang's +08:30 era until 2018-05-04):

* weekday share — flows on the profile's working days;
* business-hours share — working day and local time inside the profile's
  business hours (start inclusive, end exclusive);
* evening share — local 17:00–23:00, any day; weekend share — non-working days;
* the hour × weekday matrix per year and its change between first and last year.

Shares get a Wilson interval widened by the day-cluster design effect (see
:mod:`rogueflow.analyze.stats`). The per-year profile is also split by a column
of the scope (``side`` now; a service category once enrichment provides one).
Finding: ``pattern.weekday_shift``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, time
from typing import Any

import numpy as np

from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance
from rogueflow.analyze.context import TREND_COLUMNS, Scope, Trend
from rogueflow.findings import Check, Finding, Metric, Table, assess, grade, num, pct
from rogueflow.territory import Territory, utc_offsets
from rogueflow.territory.profile import DAY_NAMES

EVENING = (17, 23)  # local hours [17, 23)
SHARES = ("weekday", "business_hours", "evening", "weekend")
SHARE_LABEL = {
    "weekday": "working days",
    "business_hours": "business hours",
    "evening": "evenings (17–23 h)",
    "weekend": "weekend",
}
SHARE_METHOD = (
    "share of flows; Wilson 95% interval with n_eff = n / design effect, the design "
    "effect estimated by a bootstrap over local days (2,000 resamples)"
)
DIFF_METHOD = "last − first year, percentage points; 95% percentile interval of the day bootstrap"


def _minutes(t: time) -> int:
    return t.hour * 60 + t.minute


def days_text(days: frozenset[int]) -> str:
    s = sorted(days)
    if s and s == list(range(s[0], s[-1] + 1)) and len(s) > 2:
        return f"{DAY_NAMES[s[0]]}–{DAY_NAMES[s[-1]]}"
    return ", ".join(DAY_NAMES[d] for d in s)


def zone_text(t: Territory, first: datetime, last: datetime) -> str:
    """'Asia/Pyongyang: UTC+08:30, UTC+09:00 from 2018-05-04 15:00 UTC' over the data window."""
    steps = utc_offsets(t.timezone, first, last)
    parts = []
    for i, (since, off) in enumerate(steps):
        sign = "+" if off >= 0 else "-"
        h, m = divmod(abs(off) // 60, 60)
        txt = f"UTC{sign}{h:02d}:{m:02d}"
        parts.append(txt if i == 0 else f"{txt} from {since:%Y-%m-%d %H:%M} UTC")
    return f"{t.timezone}: " + ", ".join(parts)


class PatternOfLife:
    id = "pattern"
    title = "Pattern of life"

    def __init__(self, split: str | None = "side") -> None:
        # ``split`` is any column of the scope view; a category column slots in here.
        self.split = split

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        t = scope.territory
        working = ", ".join(str(d) for d in sorted(t.working_days)) or "-1"
        bh0, bh1 = (_minutes(x) for x in t.business_hours)
        split_col = f", {self.split}" if self.split else ""
        # the split must be a column of the roll-ups too to read them (side, category …)
        tr = scope.trend if self.split is None or self.split in TREND_COLUMNS else Trend()
        with scope.trace() as used:
            clusters = scope.rows(
                "pattern: flows per local day",
                f"""
                SELECT year, local_day, local_weekday{split_col}, {tr.flows} AS flows,
                       CAST(sum(CASE WHEN local_weekday IN ({working}) AND local_minute >= {bh0}
                                AND local_minute < {bh1} THEN {tr.weight} ELSE 0 END) AS BIGINT)
                           AS business_hours,
                       CAST(sum(CASE WHEN local_hour >= {EVENING[0]} AND local_hour < {EVENING[1]}
                                THEN {tr.weight} ELSE 0 END) AS BIGINT) AS evening
                FROM {tr.view}
                GROUP BY year, local_day, local_weekday{split_col}
                ORDER BY year, local_day""",
            )
            cells = scope.rows(
                "pattern: hour x weekday",
                f"""
                SELECT year, local_weekday, local_hour, {tr.flows} AS flows
                FROM {tr.view} GROUP BY year, local_weekday, local_hour""",
            )
            years = sorted({r["year"] for r in clusters})
            per_year = {y: self._year(t, [r for r in clusters if r["year"] == y]) for y in years}
            metrics: dict[str, Metric] = {}
            for y in years:
                for name in SHARES:
                    s = per_year[y]["shares"][name]
                    metrics[f"{name}_share_{y}"] = Metric(
                        s.value, s.low, s.high, "share", SHARE_METHOD
                    )
            matrices = {y: _matrix([c for c in cells if c["year"] == y]) for y in years}
            checks = self._checks(scope, years, per_year, metrics)
            confidence = grade(checks)
            statement = self._statement(scope, years, per_year, metrics)
            self._charts(out, years, per_year, matrices)
            evidence = self._evidence(years, per_year, matrices, clusters)
            headline = (
                [
                    f"weekday_share_{years[0]}",
                    f"weekday_share_{years[-1]}",
                    f"business_hours_share_{years[0]}",
                    f"business_hours_share_{years[-1]}",
                ]
                if len(years) > 1
                else [f"weekday_share_{years[0]}"]
            )
            prov = provenance(scope, used)
        out.findings.append(
            Finding(
                detected=_shifted(metrics) if len(years) > 1 else None,
                id="pattern.weekday_shift",
                title=f"Pattern of life in {t.name} local time",
                statement=f"{assess(confidence.level)} {statement}",
                period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
                metrics=metrics,
                confidence=confidence,
                evidence=evidence,
                charts=(
                    "pattern.shares",
                    *(f"pattern.heatmap.{y}" for y in years),
                    *(("pattern.heatmap.delta",) if len(years) > 1 else ()),
                ),
                provenance=prov,
                alternatives=_alternatives(zone_text(t, scope.first_ts, scope.last_ts)),
                headline=tuple(headline),
            )
        )
        return out

    def _year(self, t: Territory, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Shares for one year from its per-(local day, split) rows; clusters are local days."""
        by_day: dict[Any, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        for r in rows:
            acc = by_day[r["local_day"]]
            acc[0] += r["flows"]
            acc[1] += r["flows"] if r["local_weekday"] in t.working_days else 0
            acc[2] += r["business_hours"]
            acc[3] += r["evening"]
        a = np.array(list(by_day.values()), dtype=np.float64).reshape(-1, 4)
        n = a[:, 0]
        shares, boots = {}, {}
        for i, name in ((1, "weekday"), (2, "business_hours"), (3, "evening")):
            shares[name], boots[name] = stats.clustered_share(n, a[:, i])
        shares["weekend"], boots["weekend"] = stats.clustered_share(n, n - a[:, 1])
        working_days = sum(1 for d in by_day if d.weekday() in t.working_days)
        return {
            "shares": shares,
            "boots": boots,
            "days": len(by_day),
            "working_day_fraction": working_days / max(len(by_day), 1),
        }

    def _checks(
        self,
        scope: Scope,
        years: list[int],
        per_year: dict[int, dict[str, Any]],
        metrics: dict[str, Metric],
    ) -> list[Check]:
        t = scope.territory
        checks = [
            Check(
                True,
                "weekday and hour in local time from the IANA zone history "
                f"({zone_text(t, scope.first_ts, scope.last_ts)})",
                "",
            )
        ]
        if len(years) < 2:
            checks.append(
                Check(
                    False,
                    "",
                    f"a single calendar year ({years[0]}): no change can be measured",
                    penalty=2,
                )
            )
            return checks
        y0, y1 = years[0], years[-1]
        n = min(per_year[y0]["days"], per_year[y1]["days"])
        checks.append(
            Check(
                n >= 30,
                f"{per_year[y0]['days']} and {per_year[y1]['days']} local days with data",
                f"fewer than 30 days with data in {y0} or {y1}",
            )
        )
        expected = len(t.working_days) / 7
        skew = max(abs(per_year[y]["working_day_fraction"] - expected) for y in (y0, y1))
        checks.append(
            Check(
                skew <= 0.1,
                "days with data fall evenly over the week",
                "days with data fall unevenly over the week in one year, biasing its weekday share",
            )
        )
        for name in ("weekday", "business_hours"):
            diff = per_year[y1]["boots"][name] - per_year[y0]["boots"][name]
            lo, hi = stats.percentile_interval(diff)
            v = per_year[y1]["shares"][name].value - per_year[y0]["shares"][name].value
            metrics[f"{name}_share_change_pp"] = Metric(
                100 * v, 100 * lo, 100 * hi, "pp", DIFF_METHOD
            )
            clear = lo > 0 or hi < 0
            checks.append(
                Check(
                    clear,
                    f"the change of the {SHARE_LABEL[name]} share is outside "
                    "its 95% interval of no change",
                    f"the change of the {SHARE_LABEL[name]} share is within day-to-day variation",
                )
            )
        return checks

    def _statement(
        self,
        scope: Scope,
        years: list[int],
        per_year: dict[int, dict[str, Any]],
        metrics: dict[str, Metric],
    ) -> str:
        t = scope.territory
        wd = days_text(t.working_days)
        bh = f"{wd} {t.business_hours[0]:%H:%M}–{t.business_hours[1]:%H:%M}"
        y0, y1 = years[0], years[-1]
        s0, s1 = per_year[y0]["shares"], per_year[y1]["shares"]
        if len(years) < 2:
            return (
                f"in {y0}, {pct(s0['weekday'].value)} of activity to and from networks in "
                f"{t.name} fell on working days ({wd}, local time), "
                f"{pct(s0['business_hours'].value)} in business hours ({bh}), "
                f"{pct(s0['evening'].value)} in the evening and {pct(s0['weekend'].value)} "
                "at weekends; one year of data shows no change."
            )
        ch = {k: metrics[f"{k}_share_change_pp"] for k in ("weekday", "business_hours")}

        def clear_up(m: Metric) -> bool:
            return m.low is not None and m.low > 0

        def clear_down(m: Metric) -> bool:
            return m.high is not None and m.high < 0

        if clear_up(ch["business_hours"]) and not clear_down(ch["weekday"]):
            direction = "shifted toward weekday business hours"
        elif clear_down(ch["business_hours"]) and not clear_up(ch["weekday"]):
            direction = "shifted away from weekday business hours toward evenings and weekends"
        elif clear_up(ch["weekday"]):
            direction = "shifted toward working days"
        elif clear_down(ch["weekday"]):
            direction = "shifted toward weekends"
        else:
            direction = "did not shift measurably between working time and leisure time"
        return (
            f"use of networks in {t.name} {direction} between {y0} and {y1} (local time, "
            f"{t.timezone}): the working-day share ({wd}) went from {pct(s0['weekday'].value)} to "
            f"{pct(s1['weekday'].value)}, the business-hours share ({bh}) from "
            f"{pct(s0['business_hours'].value)} to {pct(s1['business_hours'].value)}, the weekend "
            f"share from {pct(s0['weekend'].value)} to {pct(s1['weekend'].value)} and the evening "
            f"share (17:00–23:00) from {pct(s0['evening'].value)} to {pct(s1['evening'].value)}."
        )

    def _charts(
        self,
        out: AnalysisOutput,
        years: list[int],
        per_year: dict[int, dict[str, Any]],
        matrices: dict[int, np.ndarray],
    ) -> None:
        series = {}
        for name in SHARES:
            ss = [per_year[y]["shares"][name] for y in years]
            series[SHARE_LABEL[name]] = (
                [s.value for s in ss],
                [s.low for s in ss],
                [s.high for s in ss],
            )
        out.charts["pattern.shares"] = {
            "id": "pattern.shares",
            "kind": "bars_with_intervals",
            "title": "When activity happens, per year (local time, 95% intervals)",
            "caption": "Intervals widened for clustering of flows by day (design effect).",
            "data": {
                "categories": [str(y) for y in years],
                "series": series,
                "y_title": "share of flows",
                "percent": True,
            },
        }
        for y in years:
            out.charts[f"pattern.heatmap.{y}"] = {
                "id": f"pattern.heatmap.{y}",
                "kind": "heatmap",
                "title": f"Hour × weekday in local time, {y} (share of the year's flows)",
                "caption": "",
                "data": {"matrix": matrices[y].tolist()},
            }
        if len(years) > 1:
            delta = matrices[years[-1]] - matrices[years[0]]
            out.charts["pattern.heatmap.delta"] = {
                "id": "pattern.heatmap.delta",
                "kind": "heatmap",
                "title": f"Change {years[0]} → {years[-1]} (share points)",
                "caption": "Blue: more of the year's activity than before; red: less.",
                "data": {"matrix": delta.tolist(), "diverging": True, "z_title": "change in share"},
            }

    def _evidence(
        self,
        years: list[int],
        per_year: dict[int, dict[str, Any]],
        matrices: dict[int, np.ndarray],
        clusters: list[dict[str, Any]],
    ) -> tuple[Table, ...]:
        rows = []
        for y in years:
            for name in SHARES:
                s = per_year[y]["shares"][name]
                rows.append(
                    (
                        y,
                        SHARE_LABEL[name],
                        pct(s.value, 1),
                        f"{pct(s.low, 1)}–{pct(s.high, 1)}",
                        f"{pct(s.wilson_low, 1)}–{pct(s.wilson_high, 1)}",
                        f"{s.design_effect:.1f}",
                        s.days,
                        num(s.flows),
                    )
                )
        tables = [
            Table(
                "Shares per year (local time)",
                (
                    "year",
                    "share of",
                    "value",
                    "95% interval",
                    "naive Wilson",
                    "design effect",
                    "days",
                    "flows",
                ),
                tuple(rows),
                "The naive Wilson interval treats flows as independent; the reported "
                "interval widens it by the design effect of clustering by day.",
            )
        ]
        tables.append(
            Table(
                "Share of flows by local weekday",
                ("weekday", *map(str, years)),
                tuple(
                    (DAY_NAMES[d], *(pct(matrices[y][d].sum(), 1) for y in years)) for d in range(7)
                ),
            )
        )
        tables.append(
            Table(
                "Share of flows by local hour",
                ("hour", *map(str, years)),
                tuple(
                    (f"{h:02d}:00", *(pct(matrices[y][:, h].sum(), 1) for y in years))
                    for h in range(24)
                ),
            )
        )
        if self.split:
            acc: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
            for r in clusters:
                a = acc[(r["year"], str(r[self.split]))]
                a[0] += r["flows"]
                a[1] += r["business_hours"]
                a[2] += r["evening"]
            tables.append(
                Table(
                    f"Shares per year by {self.split}",
                    ("year", self.split, "flows", "business hours", "evening"),
                    tuple(
                        (y, k, num(a[0]), pct(a[1] / a[0], 1), pct(a[2] / a[0], 1))
                        for (y, k), a in sorted(acc.items())
                    ),
                )
            )
        return tuple(tables)


def _shifted(metrics: dict[str, Metric]) -> bool:
    """Whether a weekday or business-hours share moved beyond its interval."""
    for k in ("weekday", "business_hours"):
        m = metrics.get(f"{k}_share_change_pp")
        if m is not None and m.low is not None and m.high is not None and (m.low > 0 or m.high < 0):
            return True
    return False


def _alternatives(zone: str) -> tuple[str, ...]:
    return (
        f"Local time comes from the IANA zone history ({zone}); an analysis that ignores a "
        "clock change (Pyongyang's 2018 move from +08:30 to +09:00) shifts every hour by the "
        "difference and can move activity across the business-hours edges.",
        "A change in the mix of services (automated transfers, mining, updates run on a "
        "schedule) shifts the hour profile without any change in how people work.",
        "A different population of users (new offices or institutions online) rather than "
        "changed habits of the same users.",
        "Partial years: a year whose days with data fall unevenly on the week biases its "
        "weekday share.",
    )


def _matrix(cells: list[dict[str, Any]]) -> np.ndarray:
    """7 × 24 shares of the year's flows (rows Mon..Sun, columns local hour)."""
    m = np.zeros((7, 24))
    for c in cells:
        m[int(c["local_weekday"]), int(c["local_hour"])] += c["flows"]
    total = m.sum()
    return m / total if total else m
