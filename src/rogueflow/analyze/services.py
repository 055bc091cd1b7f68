"""Service mix and the Western→Chinese shift.

Findings:

* ``services.mix`` — the share of flows per category in each period (calendar years
  of local days by default, explicit periods when given, plus the ``--baseline``
  window), with clustered intervals; the unclassified share is always reported
  beside the categories, before and after attribution by address
  (:mod:`rogueflow.analyze.categories` says how flows are counted). The categories
  whose share moved most between the first (or baseline) and the last period are
  named when their change is beyond day-to-day variation.
* ``services.social_shift`` — Western social media against Chinese services, named
  (Facebook against Baidu, Alibaba and Tencent: the demo truth's definition) and by
  category (``social.western`` against ``social.chinese``), each with its ratio per
  period and its crossover date (built by :mod:`rogueflow.analyze.social`).
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np

from rogueflow.analyze import categories as cat
from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.categories import F64, DailyMix, Period
from rogueflow.analyze.context import Scope
from rogueflow.analyze.social import CHINESE, WESTERN, SocialShift
from rogueflow.enrich.intel import UNCLASSIFIED
from rogueflow.findings import Check, Finding, Metric, Table, assess, grade, num, pct

GREY = {UNCLASSIFIED: "#9e9e9e", cat.NOT_ENRICHED: "#d0d0d0", "other categories": "#6b6b6b"}
CHART_CATEGORIES = 9
MIN_DAYS, MIN_FLOWS = 30, 1000


class ServiceMix:
    id = "services"
    title = "Service mix and the Western→Chinese shift"

    def __init__(
        self,
        periods: list[tuple[str, date, date]] | None = None,
        western: tuple[str, ...] = WESTERN,
        chinese: tuple[str, ...] = CHINESE,
        attribute_by_address: bool = True,
    ) -> None:
        """``periods`` (label, first, last local day) replace the calendar years;
        ``western`` / ``chinese`` name the companies or services compared;
        ``attribute_by_address=False`` skips attribution by address (one query less)."""
        self.periods = cat.explicit(periods)
        self.western, self.chinese = western, chinese
        self.attribute = attribute_by_address

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        mix = cat.daily_mix(scope, self.attribute)
        if not mix.days:
            return out
        periods = self._periods(scope, mix)
        out.findings.append(self._mix(scope, mix, periods, out))
        social = SocialShift(self.western, self.chinese, self.periods is not None, self.attribute)
        out.findings.append(social.finding(scope, mix, periods, out))
        return out

    def _periods(self, scope: Scope, mix: DailyMix) -> list[Period]:
        ps = self.periods or cat.calendar_years(mix.days[0], mix.days[-1])
        if scope.baseline is not None:
            b0, b1 = scope.baseline
            ps = [Period("baseline", b0, b1), *[p for p in ps if p.label != "baseline"]]
        return [p for p in ps if mix.mask(p.lo, p.hi).any()]

    # --- services.mix -------------------------------------------------------------------

    def _mix(
        self,
        scope: Scope,
        mix: DailyMix,
        periods: list[Period],
        out: AnalysisOutput,
    ) -> Finding:
        with scope.trace() as used:
            cat.record_mix(scope, self.attribute)
            names = sorted(mix.category, key=lambda c: -mix.category[c].sum())
            metrics: dict[str, Metric] = {}
            shares: dict[str, dict[str, tuple[stats.Share, F64]]] = {}
            rows: list[tuple[Any, ...]] = []
            checks: list[Check] = []
            zero = np.zeros(len(mix.days))
            extra = {
                "gaming+streaming": mix.category.get("gaming", zero)
                + mix.category.get("streaming", zero),
                "before attribution": mix.raw_unclassified(),
                "by address": mix.by_address,
            }
            for i, p in enumerate(periods):
                sel = mix.mask(p.lo, p.hi)
                key = cat.label_key(p.label)
                # one bootstrap per period (own seed: periods' resamples stay independent)
                w = cat.resample_weights(int(sel.sum()), stats.BOOTSTRAP_SEED + i)
                got = cat.shares(mix.total, {**mix.category, **extra}, sel, w)
                shares[p.label] = {c: got[c] for c in names}
                bytes_ = cat.ratios(mix.category_bytes, mix.total_bytes, sel, w)
                for c in names:
                    s = got[c][0]
                    metrics[f"share_{c}_{key}"] = cat.share_metric(s)
                    byte = bytes_[c]
                    metrics[f"byte_share_{c}_{key}"] = cat.estimate_metric(
                        byte, "share", cat.RATIO_METHOD.replace("flow counts", "bytes")
                    )
                    rows.append(
                        (
                            p.label,
                            c,
                            num(mix.category[c][sel].sum()),
                            cat.interval_text(s),
                            pct(byte.value, 1),
                        )
                    )
                raw = got["before attribution"][0]
                metrics[f"share_gaming+streaming_{key}"] = cat.share_metric(
                    got["gaming+streaming"][0]
                )
                unc = got[UNCLASSIFIED][0] if UNCLASSIFIED in got else cat.empty_share(raw)
                metrics[f"unclassified_{key}"] = cat.share_metric(unc)
                metrics[f"unclassified_before_attribution_{key}"] = cat.share_metric(raw)
                metrics[f"attributed_by_address_{key}"] = cat.share_metric(got["by address"][0])
                n_days, flows = int(sel.sum()), float(mix.total[sel].sum())
                checks += [
                    Check(
                        n_days >= MIN_DAYS,
                        "",
                        f"{p.label}: only {n_days} days with data",
                    ),
                    Check(flows >= MIN_FLOWS, "", f"{p.label}: only {num(flows)} flows"),
                ]
            worst = max(
                metrics[f"unclassified_{cat.label_key(p.label)}"].value or 0 for p in periods
            )
            checks.append(
                Check(
                    worst <= 0.4,
                    "",
                    f"up to {pct(worst)} of flows are unclassified: the classified shares describe "
                    "only part of the activity",
                )
            )
            checks.append(
                Check(
                    worst <= 0.2,
                    f"at most {pct(worst)} of flows are unclassified in any period",
                    f"{pct(worst)} of flows are unclassified in at least one period",
                )
            )
            movers, phrase = self._movers(periods, shares, names, metrics)
            checks.append(
                Check(
                    True,
                    f"{mix.by_address.sum() / max(mix.total.sum(), 1):.1%} of flows were "
                    "attributed by address (same remote address and port as classified flows)",
                    "",
                )
            )
            confidence = grade(checks)
            last = periods[-1]
            top = [
                c
                for c in sorted(names, key=lambda c: -shares[last.label][c][0].value)
                if c not in (UNCLASSIFIED, cat.NOT_ENRICHED)
            ][:4]
            lk = cat.label_key(last.label)
            statement = (
                f"in {last.label} the largest categories of activity to and from "
                f"{scope.territory.name} were "
                + ", ".join(f"{c} ({pct(shares[last.label][c][0].value, 1)})" for c in top)
                + f"; gaming and streaming together made up "
                f"{pct(metrics[f'share_gaming+streaming_{lk}'].value, 1)} of flows. "
                f"{pct(metrics[f'unclassified_{lk}'].value, 1)} of flows stayed unclassified "
                f"({pct(metrics[f'unclassified_before_attribution_{lk}'].value, 1)} before "
                f"attribution by address). {phrase}"
            )
            self._mix_chart(out, periods, shares, names)
            samples = sample_flows(
                scope, "unclassified flow samples", f"category = '{UNCLASSIFIED}'", 5
            )
            prov = provenance(scope, used)
        return Finding(
            id="services.mix",
            title="Service mix per period",
            statement=f"{assess(confidence.level)} {statement}",
            period={"start": periods[0].lo.isoformat(), "end": periods[-1].hi.isoformat()},
            metrics=metrics,
            confidence=confidence,
            evidence=(
                Table(
                    "Category shares per period (local days)",
                    ("period", "category", "flows", "flow share (95% CI)", "byte share"),
                    tuple(rows),
                    "DNS lookups count as infrastructure; unclassified flows are listed as a "
                    "category so the classified shares are read for what they are.",
                ),
                Table(
                    "Largest changes between the first and the last period",
                    ("category", "first", "last", "change (pp)", "95% interval (pp)"),
                    tuple(movers),
                ),
            ),
            charts=("services.mix",),
            provenance=prov,
            alternatives=(
                "Changes in classification coverage (TLS without SNI, VPNs, new services the "
                "taxonomy does not know) move flows between categories and 'unclassified' "
                "without any change in use.",
                "Flow counts weigh chatty services (games, messaging) above bulky ones "
                "(streaming); the byte shares in the table weigh the other way.",
            ),
            headline=(
                f"share_gaming+streaming_{cat.label_key(periods[-1].label)}",
                f"unclassified_{cat.label_key(periods[-1].label)}",
            ),
            samples=samples,
            detected=None,  # descriptive: the mix asserts no behaviour
        )

    def _movers(
        self,
        periods: list[Period],
        shares: dict[str, dict[str, tuple[stats.Share, F64]]],
        names: list[str],
        metrics: dict[str, Metric],
    ) -> tuple[list[tuple[Any, ...]], str]:
        if len(periods) < 2:
            return [], "With one period, no change between periods is measured."
        a, b = periods[0].label, periods[-1].label
        found = []
        for c in names:
            if c in (UNCLASSIFIED, cat.NOT_ENRICHED):
                continue
            (s0, b0), (s1, b1) = shares[a][c], shares[b][c]
            n = min(len(b0), len(b1))
            lo, hi = stats.percentile_interval((b1[:n] - b0[:n]) * 100)
            d = (s1.value - s0.value) * 100
            metrics[f"change_{c}"] = Metric(
                d, lo, hi, "pp", f"share in {b} − share in {a}; bootstrap over days"
            )
            # beyond day-to-day variation, and at least 1 pp and a quarter of the smaller share
            beyond = (lo > 0 or hi < 0) and abs(d) >= 1 and abs(d) >= 25 * min(s0.value, s1.value)
            found.append((abs(d), beyond, c, s0, s1, d, lo, hi))
        found.sort(key=lambda x: -x[0])
        rows = [
            (c, pct(s0.value, 1), pct(s1.value, 1), f"{d:+.1f}", f"{lo:+.1f} to {hi:+.1f}")
            for _, _, c, s0, s1, d, lo, hi in found[:8]
        ]
        real = [x for x in found if x[1]][:4]
        if not real:
            return (
                rows,
                f"No category's share changed between {a} and {b} beyond day-to-day variation.",
            )
        parts = [
            f"{c} {'rose' if d > 0 else 'fell'} from {pct(s0.value, 1)} to {pct(s1.value, 1)}"
            for _, _, c, s0, s1, d, _, _ in real
        ]
        return rows, f"Between {a} and {b}: " + "; ".join(parts) + "."

    def _mix_chart(
        self,
        out: AnalysisOutput,
        periods: list[Period],
        shares: dict[str, dict[str, tuple[stats.Share, F64]]],
        names: list[str],
    ) -> None:
        shown = [c for c in names if c not in (UNCLASSIFIED, cat.NOT_ENRICHED)][:CHART_CATEGORIES]
        rest = [c for c in names if c not in shown and c not in (UNCLASSIFIED, cat.NOT_ENRICHED)]
        series: dict[str, list[float]] = {}
        for c in shown:
            series[c] = [shares[p.label][c][0].value for p in periods]
        if rest:
            series["other categories"] = [
                sum(shares[p.label][c][0].value for c in rest) for p in periods
            ]
        for c in (cat.NOT_ENRICHED, UNCLASSIFIED):
            if c in names:
                series[c] = [shares[p.label][c][0].value for p in periods]
        out.charts["services.mix"] = {
            "id": "services.mix",
            "kind": "stacked_bars",
            "title": "Category shares of flows per period (unclassified in grey)",
            "caption": "Local days; DNS lookups count as infrastructure; flows attributed by "
            "address are included in their category.",
            "data": {
                "categories": [p.label for p in periods],
                "series": series,
                "y_title": "share of flows",
                "percent": True,
                "colors": {c: GREY[c] for c in series if c in GREY},
            },
        }

    # --- services.social_shift ----------------------------------------------------------
