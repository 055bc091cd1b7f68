"""Event overlay: did activity change in the days before dated events (an early warning)?

Events come from a CSV file (:func:`load_events`, header ``date,label``, dates
``YYYY-MM-DD``) given to the report with ``--events FILE``. Event dates are
taken as UTC days, like the daily series they are laid over. Without events the
analysis produces no finding.

Per event on day D, over daily territory flows (UTC days; days without data are
gaps and left out, never counted as zero):

* **pre-event window**: D−3 … D−1 (``pre_days``);
* **baseline**: D−33 … D−4 and D+1 … D+30 (``baseline_days`` either side; the
  event day itself is left out);
* ``pre_event_z`` = (mean of the pre-event days − baseline mean) ÷ baseline
  standard deviation (of days; population form) — how unusual the pre-event
  level is in units of ordinary day-to-day variation;
* the pre/baseline **ratio** with a delta-method interval (3 days are few: the
  interval is wide) and an **empirical p-value**: the rank of the pre-event mean
  among the means of every ``pre_days``-day window inside the baseline, which
  keeps the weekly rhythm and overdispersion of real traffic (Holm-adjusted
  across events).

Across events: the mean ``pre_event_z`` with a Student-t 95% interval (k − 1
degrees of freedom: a handful of events is a small sample), the geometric mean
ratio with a t interval on the log scale, and a **placebo test**: the same event
calendar shifted over every other position in the data (at least a week away),
the p-value being the share of shifts whose mean |z| is at least the observed
one. An early-warning signal is reported only when the placebo test and the
t interval both reject no change.

Finding: ``events.early_warning``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance
from rogueflow.analyze.context import Scope
from rogueflow.analyze.eventstats import (
    Windows,
    empirical_p,
    event_stats,
    holm,
    t_interval,
    take,
)
from rogueflow.errors import InputError
from rogueflow.findings import Check, Finding, Metric, Table, assess, grade, num

Floats = npt.NDArray[np.float64]

PRE_DAYS = 3
BASELINE_DAYS = 30  # each side of the event
MIN_PLACEBOS = 20  # shifted calendars needed for the placebo test
PLACEBO_MIN_SHIFT = 7  # days: a placebo calendar this far from the real one at least
MIN_COVERAGE = 0.8  # pre-event days with data
POWER_BAND = (0.8, 1.25)  # the mean-ratio interval inside this: a ±20–25% change excluded
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True)
class Event:
    """A dated event (``day`` is a UTC day); ``line`` is where a file gave it."""

    day: date
    label: str
    line: int | None = None


def load_events(path: str | Path) -> list[Event]:
    """Read a CSV of dated events: a header with ``date`` (and optionally ``label``),
    then one event per line; blank lines and lines starting with ``#`` are skipped.

    >>> load_events("events.csv")  # doctest: +SKIP
    [Event(day=datetime.date(2017, 4, 5), label='KN-15 launch', line=2), ...]

    Raises :class:`InputError` naming the file and line of anything it cannot read.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise InputError(path, None, f"cannot read the events file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise InputError(path, f"byte {exc.start}", "not UTF-8 text") from None
    # strict: an unterminated quote is an error, not a label running to the end of the file
    rows = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    events: list[Event] = []
    try:
        for row in rows:
            line = rows.line_num
            if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip().lower() for c in row]
                if "date" not in header:
                    raise InputError(
                        path,
                        f"line {line}",
                        f"the header {','.join(row)!r} has no 'date' column "
                        "(expected a header line 'date,label')",
                    )
                continue
            i_date = header.index("date")
            if len(row) <= i_date or not row[i_date].strip():
                raise InputError(path, f"line {line}", "no date (expected YYYY-MM-DD)")
            value = row[i_date].strip()
            try:
                if not _DATE.match(value):
                    raise ValueError
                day = date.fromisoformat(value)
            except ValueError:
                raise InputError(
                    path, f"line {line}", f"date {value!r} is not a date (expected YYYY-MM-DD)"
                ) from None
            label = ""
            if "label" in header and len(row) > header.index("label"):
                label = row[header.index("label")].strip()
            events.append(Event(day, label or f"event {day}", line))
    except csv.Error as exc:
        raise InputError(path, f"line {rows.line_num}", f"bad CSV ({exc})") from None
    if header is None:
        raise InputError(path, "line 1", "empty file (expected a header line 'date,label')")
    return events


def merge_same_day(events: list[Event]) -> list[Event]:
    """One event per day (labels joined): two events on a day are one test, not two."""
    by: dict[date, list[Event]] = {}
    for e in events:
        by.setdefault(e.day, []).append(e)
    return [
        Event(d, "; ".join(e.label for e in es), es[0].line) if len(es) > 1 else es[0]
        for d, es in sorted(by.items())
    ]


@dataclass
class Tested:
    event: Event
    z: float
    pre: Floats  # flows on the pre-event days with data
    base: Floats  # flows on the baseline days with data
    ratio: stats.Estimate
    p_empirical: float
    p_holm: float = 1.0


class EventOverlay:
    id = "events"
    title = "Event overlay"

    def __init__(
        self,
        events: list[Event] | None = None,
        *,
        pre_days: int = PRE_DAYS,
        baseline_days: int = BASELINE_DAYS,
    ) -> None:
        self.events = merge_same_day(list(events or []))
        self.pre_days = pre_days
        self.baseline_days = baseline_days

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        if not self.events:
            return out
        with scope.trace() as used:
            rows = scope.daily().to_pylist()
            first = scope.first_day
            n_days = (scope.last_day - first).days + 1
            values = np.full(n_days, np.nan)
            for r in rows:
                values[(r["day"] - first).days] = float(r["flows"])
            tested, skipped = self._test(values, first)
            summary = self._summary(values, first, tested)
            metrics = _metrics(tested, skipped, summary)
            signal = summary["signal"]
            confidence = grade(self._checks(tested, summary, values, first))
            statement = self._statement(scope.territory.name, tested, skipped, summary)
            out.charts["events.overlay"] = self._chart(rows, tested, skipped)
            prov = provenance(scope, used)
        out.findings.append(
            Finding(
                id="events.early_warning",
                title="Activity before dated events (early warning test)",
                statement=f"{assess(confidence.level)} {statement}",
                period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
                metrics=metrics,
                confidence=confidence,
                evidence=(self._table(tested, skipped),),
                charts=("events.overlay",),
                provenance=prov,
                alternatives=_alternatives(signal),
                headline=tuple(
                    m for m in ("mean_pre_event_z", "placebo_p", "events_tested") if m in metrics
                ),
                detected=bool(signal),
            )
        )
        return out

    # --- tests -----------------------------------------------------------------------

    def _test(self, values: Floats, first: date) -> tuple[list[Tested], list[tuple[Event, str]]]:
        pre, base = self.pre_days, self.baseline_days
        w = Windows.of(values, pre + base + 1)
        tested: list[Tested] = []
        skipped: list[tuple[Event, str]] = []
        for e in self.events:
            i = (e.day - first).days
            if i < 0 or i >= len(values):
                skipped.append((e, "outside the data window"))
                continue
            st = event_stats(w, i, pre, base)
            z = float(st["z"])
            if math.isnan(z):
                skipped.append(
                    (
                        e,
                        f"too little data ({int(st['pre_n'])} pre-event and "
                        f"{int(st['base_n'])} baseline days with data)",
                    )
                )
                continue
            pre_v = take(values, i - pre, i - 1)
            base_v = np.concatenate(
                [take(values, i - pre - base, i - pre - 1), take(values, i + 1, i + base)]
            )
            tested.append(
                Tested(
                    e,
                    z,
                    pre_v,
                    base_v,
                    stats.ratio_of_means(base_v, pre_v),
                    empirical_p(values, i, pre, base, float(pre_v.mean())),
                )
            )
        for t, p in zip(tested, holm([t.p_empirical for t in tested]), strict=True):
            t.p_holm = p
        return tested, skipped

    def _summary(self, values: Floats, first: date, tested: list[Tested]) -> dict[str, Any]:
        z = np.array([t.z for t in tested])
        mz, zlo, zhi = t_interval(z)
        logs = np.array([math.log(t.ratio.value) for t in tested if t.ratio.value > 0])
        lm, llo, lhi = t_interval(logs)
        placebo_p, placebos = self._placebo(values, first, tested, mz)
        excludes = zlo is not None and zhi is not None and (zlo > 0 or zhi < 0)
        signal = len(tested) >= 3 and excludes and placebo_p is not None and placebo_p < 0.05
        loo = []  # does the interval still exclude 0 without each event in turn?
        if len(z) >= 4:
            for k in range(len(z)):
                _m, lo, hi = t_interval(np.delete(z, k))
                loo.append(lo is not None and hi is not None and (lo > 0 or hi < 0))
        return {
            "mean_z": mz,
            "z_low": zlo,
            "z_high": zhi,
            "ratio": math.exp(lm) if len(logs) else math.nan,
            "ratio_low": math.exp(llo) if llo is not None else None,
            "ratio_high": math.exp(lhi) if lhi is not None else None,
            "placebo_p": placebo_p,
            "placebos": placebos,
            "signal": signal,
            "robust": bool(loo) and all(loo),
            "significant": sum(1 for t in tested if t.p_holm < 0.05),
        }

    def _placebo(
        self, values: Floats, first: date, tested: list[Tested], observed: float
    ) -> tuple[float | None, int]:
        """Share of shifted event calendars whose mean z is at least as extreme."""
        if not tested or math.isnan(observed):
            return None, 0
        pre, base = self.pre_days, self.baseline_days
        idx = np.array([(t.event.day - first).days for t in tested])
        lo_off = pre + base - int(idx.min())
        hi_off = len(values) - 1 - base - int(idx.max())
        offsets = np.array(
            [o for o in range(lo_off, hi_off + 1) if abs(o) >= PLACEBO_MIN_SHIFT], dtype=np.int64
        )
        if len(offsets) == 0:
            return None, 0
        w = Windows.of(values, pre + base + 1)
        z = event_stats(w, idx[None, :] + offsets[:, None], pre, base)["z"]
        valid = np.sum(~np.isnan(z), axis=1) >= max(1, len(idx) // 2)
        means = np.nanmean(np.where(valid[:, None], z, 0.0), axis=1)[valid]
        if len(means) < MIN_PLACEBOS:
            return None, len(means)
        extreme = np.sum(np.abs(means) >= abs(observed) - 1e-12)
        return float((1 + extreme) / (1 + len(means))), len(means)

    def _checks(
        self, tested: list[Tested], s: dict[str, Any], values: Floats, first: date
    ) -> list[Check]:
        k = len(tested)
        pre_days = sum(len(t.pre) for t in tested)
        coverage = pre_days / (k * self.pre_days) if k else 0.0
        checks = [
            Check(k >= 3, "", f"only {k} event(s) could be tested", penalty=2),
            Check(
                k >= 5,
                f"{k} events tested",
                f"only {k} events tested: too few to generalise",
            ),
            Check(
                coverage >= MIN_COVERAGE,
                f"{100 * coverage:.0f}% of pre-event days have data",
                f"only {100 * coverage:.0f}% of pre-event days have data (collection gaps)",
            ),
            Check(
                s["placebo_p"] is not None,
                f"placebo test over {s['placebos']} shifted event calendars",
                "too little data around the events for a placebo test",
            ),
        ]
        if s["signal"]:
            checks += [
                Check(
                    s["placebo_p"] < 0.01,
                    f"placebo p = {s['placebo_p']:.3f}",
                    f"placebo p = {s['placebo_p']:.3f}: a weak rejection",
                ),
                Check(
                    s["robust"],
                    "the signal survives leaving out any one event",
                    "the signal rests on one event: without it the interval includes no change",
                ),
            ]
        else:
            lo, hi = s["ratio_low"], s["ratio_high"]
            tight = (
                lo is not None and hi is not None and POWER_BAND[0] <= lo and hi <= POWER_BAND[1]
            )
            checks.append(
                Check(
                    tight,
                    f"the 95% interval of the mean pre/baseline ratio (×{_f(lo)}–×{_f(hi)}) "
                    "excludes changes beyond about ±20%",
                    f"the 95% interval of the mean pre/baseline ratio (×{_f(lo)}–×{_f(hi)}) is "
                    "wide: a modest pre-event change cannot be excluded",
                )
            )
        return checks

    # --- wording, evidence, chart ----------------------------------------------------

    def _statement(
        self,
        name: str,
        tested: list[Tested],
        skipped: list[tuple[Event, str]],
        s: dict[str, Any],
    ) -> str:
        k = len(tested)
        if k == 0:
            return (
                f"none of the {len(self.events)} dated events could be tested against activity "
                f"in {name}: " + "; ".join(f"{e.day} {why}" for e, why in skipped[:5]) + "."
            )
        window = (
            f"in the {self.pre_days} days before each of {k} events, daily flows to and from "
            f"{name} were on average {s['mean_z']:+.2f} baseline standard deviations from the "
            f"surrounding {2 * self.baseline_days}-day baseline"
            + (
                f" (95% interval {s['z_low']:+.2f} to {s['z_high']:+.2f})"
                if s["z_low"] is not None
                else ""
            )
            + f", a pre/baseline ratio of ×{_f(s['ratio'])}"
            + (
                f" (×{_f(s['ratio_low'])}–×{_f(s['ratio_high'])})"
                if s["ratio_low"] is not None
                else ""
            )
        )
        placebo = (
            f"; shifting the event calendar to {s['placebos']} other positions gives a mean "
            f"as extreme {100 * s['placebo_p']:.0f}% of the time (placebo p = "
            f"{s['placebo_p']:.2f})"
            if s["placebo_p"] is not None
            else ""
        )
        single = (
            f" {s['significant']} event(s) stand out on their own after Holm correction."
            if s["significant"]
            else " No single event stands out after correction for multiple comparisons."
        )
        skip = f" {len(skipped)} event(s) could not be tested." if skipped else ""
        if s["signal"]:
            way = "rose" if s["mean_z"] > 0 else "fell"
            return (
                f"activity {way} before the dated events, an early-warning signal: "
                + window
                + placebo
                + "."
                + single
                + skip
            )
        return (
            "the traffic gave no early warning of the dated events: "
            + window
            + placebo
            + ", within the range seen on dates without events."
            + single
            + skip
        )

    def _table(self, tested: list[Tested], skipped: list[tuple[Event, str]]) -> Table:
        rows: list[tuple[Any, ...]] = []
        for t in tested:
            r = t.ratio
            rows.append(
                (
                    t.event.day.isoformat(),
                    t.event.label,
                    len(t.pre),
                    num(float(t.pre.mean())),
                    len(t.base),
                    num(float(t.base.mean())),
                    num(float(t.base.std())),
                    f"{t.z:+.2f}",
                    f"×{_f(r.value)} (×{_f(r.low)}–×{_f(r.high)})",
                    f"{t.p_empirical:.3f}",
                    f"{t.p_holm:.3f}",
                )
            )
        for e, why in skipped:
            rows.append((e.day.isoformat(), e.label, "—", "—", "—", "—", "—", why, "", "", ""))
        return Table(
            "Pre-event windows against their baselines",
            (
                "date (UTC)",
                "event",
                "pre-event days with data",
                "pre-event flows/day",
                "baseline days with data",
                "baseline flows/day",
                "baseline sd",
                "z",
                "pre/baseline ratio (95% CI)",
                "empirical p",
                "Holm-adjusted p",
            ),
            tuple(rows),
            f"Pre-event: D−{self.pre_days}…D−1; baseline: D−{self.pre_days + self.baseline_days}"
            f"…D−{self.pre_days + 1} and D+1…D+{self.baseline_days} (UTC days with data). "
            "Empirical p: share of the baseline's own windows at least as far from its mean.",
        )

    def _chart(
        self, rows: list[dict[str, Any]], tested: list[Tested], skipped: list[tuple[Event, str]]
    ) -> dict[str, Any]:
        days = [e.event.day for e in tested] + [e.day for e, _ in skipped]
        lo = min(days) - timedelta(days=self.pre_days + self.baseline_days + 7)
        hi = max(days) + timedelta(days=self.baseline_days + 7)
        shown = [r for r in rows if lo <= r["day"] <= hi]
        return {
            "id": "events.overlay",
            "kind": "event_overlay",
            "title": "Daily flows around the dated events",
            "caption": f"Shaded: the {self.pre_days} days before each event (the pre-event "
            "window); triangles: events (hover for the label). UTC days with data.",
            "data": {
                "days": [r["day"].isoformat() for r in shown],
                "values": [float(r["flows"]) for r in shown],
                "events": [(t.event.day.isoformat(), t.event.label) for t in tested]
                + [(e.day.isoformat(), f"{e.label} (not tested)") for e, _ in skipped],
                "windows": [
                    (
                        (t.event.day - timedelta(days=self.pre_days)).isoformat(),
                        t.event.day.isoformat(),
                    )
                    for t in tested
                ],
            },
        }


def _f(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.2f}"


def _metrics(
    tested: list[Tested], skipped: list[tuple[Event, str]], s: dict[str, Any]
) -> dict[str, Metric]:
    z_method = (
        "(mean of pre-event days − baseline mean) ÷ baseline sd (population), UTC days with data"
    )
    metrics = {
        "events_tested": Metric(len(tested), None, None, "events", "events with enough data"),
        "events_not_tested": Metric(len(skipped), None, None, "events", "outside or thin data"),
        "mean_pre_event_z": Metric(
            s["mean_z"],
            s["z_low"],
            s["z_high"],
            "sd",
            f"mean over events of {z_method}; Student-t 95% interval (k − 1 degrees of freedom)",
        ),
        "mean_pre_event_ratio": Metric(
            s["ratio"],
            s["ratio_low"],
            s["ratio_high"],
            "×",
            "geometric mean over events of pre-event ÷ baseline flows per day; Student-t 95% "
            "interval on the log scale",
        ),
        "placebo_p": Metric(
            s["placebo_p"],
            None,
            None,
            "p",
            f"two-sided: share of the event calendar shifted by ≥ {PLACEBO_MIN_SHIFT} days "
            f"({s['placebos']} shifts) with |mean z| at least the observed",
        ),
        "events_significant": Metric(
            s["significant"], None, None, "events", "empirical p < 0.05 after Holm adjustment"
        ),
    }
    for t in tested:
        d = t.event.day.isoformat()
        metrics[f"pre_event_z_{d}"] = Metric(t.z, None, None, "sd", z_method)
        metrics[f"pre_event_ratio_{d}"] = Metric(
            t.ratio.value,
            t.ratio.low,
            t.ratio.high,
            "×",
            "pre-event ÷ baseline mean flows per day; 95% delta-method interval (variance of "
            "the daily counts, floored at Poisson)",
        )
    return metrics


def _alternatives(signal: bool) -> tuple[str, ...]:
    common = (
        "Flow telemetry sees use of the internet by a small elite; preparations for an event "
        "need not show in it at all, so the absence of a signal says nothing about the events "
        "themselves.",
        "Event dates are UTC days; an event late in the local day falls on the previous UTC "
        "day for a zone ahead of UTC, moving a day between the pre-event window and the "
        "event day.",
    )
    if signal:
        return (
            "Pre-event changes can come from the calendar (holidays, weekly rhythm) or from "
            "collection changes that happen to precede the events; check the placebo and the "
            "events one by one.",
            *common,
        )
    return (
        "A short-lived or small change (a few hours, a few hosts) is diluted in daily totals; "
        "a per-category or hourly test could still show one.",
        *common,
    )
