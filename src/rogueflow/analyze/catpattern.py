"""Pattern of life per category: which kinds of use moved into office hours.

The territory-wide shares of :mod:`rogueflow.analyze.pattern` mix people and
machines: mining runs round the clock, social media follows evenings, e-mail and
government sites follow the working day. This analysis takes the same local-time
shares (working days, business hours; the zone history applied) per category and
calendar year, with day-clustered intervals, and names the categories whose
business-hours share moved beyond its interval between the first and last year.

Finding: ``pattern.by_category``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance
from rogueflow.analyze.context import Scope
from rogueflow.analyze.pattern import DIFF_METHOD, SHARE_METHOD, days_text
from rogueflow.findings import Check, Finding, Metric, Table, assess, grade, num, pct

TOP = 10  # categories shown (by flows); the rest are summed under "other"
MIN_FLOWS = 200  # per category and year, for a share to be compared at all
UNCLASSIFIED = "unclassified"


class CategoryPattern:
    id = "pattern.category"
    title = "Pattern of life per category"

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        t = scope.territory
        working = ", ".join(str(d) for d in sorted(t.working_days)) or "-1"
        bh0, bh1 = (x.hour * 60 + x.minute for x in t.business_hours)
        tr = scope.trend  # address-free: the roll-ups answer where they can
        with scope.trace() as used:
            rows = scope.rows(
                "pattern: flows per category and local day",
                f"""
                SELECT year, local_day, COALESCE(category, '{UNCLASSIFIED}') AS category,
                       {tr.flows} AS flows,
                       CAST(sum(CASE WHEN local_weekday IN ({working}) THEN {tr.weight} ELSE 0
                                END) AS BIGINT) AS weekday,
                       CAST(sum(CASE WHEN local_weekday IN ({working}) AND local_minute >= {bh0}
                                AND local_minute < {bh1} THEN {tr.weight} ELSE 0 END) AS BIGINT)
                           AS business_hours
                FROM {tr.view}
                GROUP BY year, local_day, COALESCE(category, '{UNCLASSIFIED}')""",
            )
            prov = provenance(scope, used)
        years = sorted({int(r["year"]) for r in rows})
        totals: dict[str, float] = defaultdict(float)
        for r in rows:
            totals[r["category"]] += r["flows"]
        cats = sorted(totals, key=lambda c: -totals[c])[:TOP]
        # day -> [flows, weekday, business hours] per (category, year)
        cells: dict[tuple[str, int], dict[Any, list[float]]] = defaultdict(
            lambda: defaultdict(lambda: [0.0, 0.0, 0.0])
        )
        for r in rows:
            acc = cells[(r["category"], int(r["year"]))][r["local_day"]]
            acc[0] += r["flows"]
            acc[1] += r["weekday"]
            acc[2] += r["business_hours"]
        year_days: dict[int, list[Any]] = defaultdict(list)
        for y in years:
            year_days[y] = sorted({r["local_day"] for r in rows if int(r["year"]) == y})
        metrics: dict[str, Metric] = {}
        table: list[tuple[Any, ...]] = []
        moved: list[tuple[str, float]] = []
        y0, y1 = (years[0], years[-1]) if years else (0, 0)
        for c in cats:
            shares: dict[int, tuple[stats.Share, Any, stats.Share]] = {}
            for y in years:
                days = cells.get((c, y))
                if not days:
                    continue
                # every category of a year over the same local days (zero where it had
                # none): the clusters are the year's days, and the bootstrap draws are shared
                a = np.array([days.get(d, (0.0, 0.0, 0.0)) for d in year_days[y]], dtype=np.float64)
                wd, _ = stats.clustered_share(a[:, 0], a[:, 1])
                bh, boot = stats.clustered_share(a[:, 0], a[:, 2])
                shares[y] = (bh, boot, wd)
                key = _key(c)
                metrics[f"business_hours_share_{key}_{y}"] = Metric(
                    bh.value, bh.low, bh.high, "share", SHARE_METHOD
                )
                metrics[f"weekday_share_{key}_{y}"] = Metric(
                    wd.value, wd.low, wd.high, "share", SHARE_METHOD
                )
            change = ""
            if len(years) > 1 and y0 in shares and y1 in shares:
                a0, a1 = shares[y0], shares[y1]
                if min(a0[0].flows, a1[0].flows) >= MIN_FLOWS:
                    lo, hi = stats.percentile_interval(a1[1] - a0[1])
                    v = a1[0].value - a0[0].value
                    metrics[f"business_hours_change_pp_{_key(c)}"] = Metric(
                        100 * v, 100 * lo, 100 * hi, "pp", DIFF_METHOD
                    )
                    change = f"{100 * v:+.0f} pp ({100 * lo:+.0f} to {100 * hi:+.0f})"
                    if lo > 0 or hi < 0:
                        moved.append((c, v))
            table.append(
                (
                    c,
                    num(totals[c], 0),
                    *(pct(shares[y][2].value) if y in shares else "—" for y in (y0, y1)),
                    *(pct(shares[y][0].value) if y in shares else "—" for y in (y0, y1)),
                    change,
                )
            )
        classified = sum(v for k, v in totals.items() if k != UNCLASSIFIED)
        unclassified = totals.get(UNCLASSIFIED, 0.0) / max(
            classified + totals.get(UNCLASSIFIED, 0.0), 1
        )
        metrics["unclassified_share"] = Metric(
            unclassified, unit="share", method="flows with no category ÷ all flows in scope"
        )
        checks = [
            Check(len(years) > 1, "", "a single calendar year: no change can be measured", 2),
            Check(
                unclassified <= 0.3,
                f"{pct(unclassified)} of flows are unclassified",
                f"{pct(unclassified)} of flows are unclassified: categories cover only part "
                "of the activity",
            ),
            Check(
                all(
                    (c, y) in cells and sum(v[0] for v in cells[(c, y)].values()) >= MIN_FLOWS
                    for c in cats[:5]
                    for y in (y0, y1)
                ),
                f"the five largest categories have {MIN_FLOWS}+ flows in {y0} and {y1}",
                f"some of the five largest categories have fewer than {MIN_FLOWS} flows in "
                f"{y0} or {y1}",
            ),
        ]
        confidence = grade(checks)
        wdays = days_text(t.working_days)
        hours = f"{wdays} {t.business_hours[0]:%H:%M}–{t.business_hours[1]:%H:%M}"
        if len(years) < 2:
            statement = (
                f"one year of data ({y0}): per-category shares of business hours ({hours}) are "
                "given in the evidence; no change can be measured."
            )
        elif moved:
            up = [f"{c} ({100 * v:+.0f} pp)" for c, v in sorted(moved, key=lambda m: (-m[1], m[0]))]
            statement = (
                f"between {y0} and {y1} the business-hours share ({hours}, local time) moved "
                f"beyond day-to-day variation for {', '.join(up)}; the other categories "
                "kept their timing."
            )
        else:
            statement = (
                f"no category's business-hours share ({hours}, local time) moved beyond "
                f"day-to-day variation between {y0} and {y1}."
            )
        out.charts["pattern.by_category"] = {
            "id": "pattern.by_category",
            "kind": "bars_with_intervals",
            "title": f"Business-hours share per category, {y0} vs {y1} (local time)",
            "caption": f"Share of each category's flows in {hours}, 95% day-clustered intervals; "
            "unclassified flows are their own bar.",
            "data": {
                "categories": list(cats),
                "series": {str(y): _series(metrics, cats, y) for y in sorted({y0, y1})},
                "y_title": "business-hours share",
                "percent": True,
            },
        }
        out.findings.append(
            Finding(
                id="pattern.by_category",
                title=f"Pattern of life per category in {t.name}",
                statement=f"{assess(confidence.level)} {statement}",
                period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
                metrics=metrics,
                confidence=confidence,
                evidence=(
                    Table(
                        "Working-day and business-hours shares per category (local time)",
                        (
                            "category",
                            "flows",
                            f"working days {y0}",
                            f"working days {y1}",
                            f"business hours {y0}",
                            f"business hours {y1}",
                            "change (95% CI)",
                        ),
                        tuple(table),
                        "Intervals are day-clustered bootstraps; a change counts when its "
                        "interval excludes zero.",
                    ),
                ),
                charts=("pattern.by_category",),
                provenance=prov,
                alternatives=(
                    "A category's timing also changes when its mix of services changes (a new "
                    "service with other users), not only when the same people change habits.",
                    "Machines (mining rigs, mail servers) run round the clock: a category that "
                    "gains machine traffic loses business-hours share without any change in "
                    "people's use.",
                ),
                detected=bool(moved) if len(years) > 1 else None,
            )
        )
        return out


def _series(
    metrics: dict[str, Metric], cats: list[str], year: int
) -> tuple[list[float | None], list[float | None], list[float | None]]:
    ms = [metrics.get(f"business_hours_share_{_key(c)}_{year}") for c in cats]
    return (
        [None if m is None else float(m.value or 0.0) for m in ms],
        [None if m is None else m.low for m in ms],
        [None if m is None else m.high for m in ms],
    )


def _key(category: str) -> str:
    return category.replace(".", "_").replace("-", "_").replace(" ", "_")
