"""The Western→Chinese shift in social media and services (finding ``services.social_shift``).

Two comparisons, each with its own ratio per period and its own crossover date:

* **named** — the reference case's measure and the demo truth's definition:
  Facebook against its Chinese peers Baidu, Alibaba and Tencent (companies, see
  :data:`~rogueflow.analyze.categories.COMPANIES`). Metrics
  ``facebook_to_chinese_<period>``; the crossover in ``period["crossover"]``.
* **category** — every service of ``social.western`` against ``social.chinese``.
  Metrics ``western_to_chinese_<period>``; the crossover in
  ``period["crossover_category"]``.

The crossover is the first local day from which the Chinese side's 14-day trailing
flow count exceeds the Western side's on every later day; its 95% interval comes
from redraws of both daily series with their own scatter, centred on that day
(:func:`crossover_interval`). The
finding is built by :class:`rogueflow.analyze.services.ServiceMix`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from rogueflow.analyze import categories as cat
from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.categories import F64, DailyMix, Period
from rogueflow.analyze.context import Scope, one_of
from rogueflow.enrich.intel import UNCLASSIFIED
from rogueflow.findings import Check, Finding, Metric, Table, assess, grade, num, pct

WESTERN = ("facebook",)
CHINESE = ("baidu", "alibaba", "tencent")
TRAILING_DAYS = 14
MIN_GROUP_FLOWS = 100  # flows of the pair in each period compared
MIN_LEAD_DAYS = 60
MIN_DAYS = 56
MAX_INTERVAL_DAYS = 60  # the crossover date's 95% interval may span this many days
SIMULATIONS = 400


@dataclass(frozen=True)
class Crossover:
    """When the Chinese side overtook the Western side for good (None: it did not)."""

    index: int | None
    ahead_throughout: bool
    crossings: int  # changes of the lead after the first full window
    lead_days: int  # days from the crossover to the last day
    low: int | None = None  # 95% interval of the crossover day (index), see crossover_interval
    high: int | None = None
    reproduced: float = 0.0  # share of simulated series with a crossover at all


def crossover(west: F64, china: F64, k: int = TRAILING_DAYS) -> Crossover:
    """The demo truth's rule: the first day from which china's k-day trailing flow count
    exceeds west's on every later day (trailing sums start partial on the first days)."""
    n = len(west)
    if n == 0:
        return Crossover(None, False, 0, 0)
    w = np.convolve(west, np.ones(k), "full")[:n]
    c = np.convolve(china, np.ones(k), "full")[:n]
    ahead = c > w
    full = ahead[k - 1 :] if n >= k else ahead
    crossings = int(np.count_nonzero(full[1:] != full[:-1])) if len(full) > 1 else 0
    behind = np.flatnonzero(~ahead)
    if len(behind) == 0:
        return Crossover(None, True, crossings, 0)
    idx = int(behind[-1]) + 1
    if idx >= n:
        return Crossover(None, False, crossings, 0)
    lo, mid, hi, rep = crossover_interval(west, china, k)
    if lo is None or mid is None or hi is None:
        return Crossover(idx, False, crossings, n - idx, None, None, rep)
    # the draws scatter around the crossover of the smoothed rates, which need not be
    # the observed one (the full demo's: four days earlier): their spread, not their
    # place, is the uncertainty, so the interval is centred on the observed day
    low, high = max(0, idx + lo - mid), min(n - 1, idx + hi - mid)
    return Crossover(idx, False, crossings, n - idx, low, high, rep)


def crossover_interval(
    west: F64, china: F64, k: int = TRAILING_DAYS, sims: int = SIMULATIONS
) -> tuple[int | None, int | None, int | None, float]:
    """How far the crossover day could move by chance: both series redrawn around their
    28-day running means with their own day-to-day scatter, the rule applied to each
    draw.

    Real daily counts scatter far more than Poisson counts would (weekdays, gaps,
    bursts: the full demo's Facebook series has a Pearson dispersion in the hundreds),
    so each series is redrawn as gamma-Poisson counts with its own dispersion; Poisson
    draws gave the full demo's crossover an interval three days wide that missed the
    date itself. Returns the 2.5th, 50th and 97.5th percentiles of the crossover day
    among the draws that have one, and the share of draws that have one.
    """
    n = len(west)
    rng = np.random.default_rng(stats.BOOTSTRAP_SEED)
    smooth = np.ones(2 * k) / (2 * k)
    draws = []
    for x in (west, china):
        rate = np.convolve(x, smooth, "same")
        mean = np.broadcast_to(rate, (sims, n))
        extra = dispersion(x, rate) - 1.0
        if extra > 0:  # gamma means of variance extra * rate: counts of variance phi * rate
            mean = rng.gamma(np.maximum(rate, 1e-12) / extra, extra, size=(sims, n))
        cs = np.cumsum(rng.poisson(mean), axis=1)
        trail = cs.copy()
        trail[:, k:] = cs[:, k:] - cs[:, :-k]
        draws.append(trail)
    behind = ~(draws[1] > draws[0])
    # last day each draw is not ahead, +1 (n: never ahead at the end; 0: ahead throughout)
    last = np.where(behind.any(axis=1), n - 1 - np.argmax(behind[:, ::-1], axis=1), -1) + 1
    found = last[(last > 0) & (last < n)]
    if len(found) == 0:
        return None, None, None, 0.0
    lo, mid, hi = np.percentile(found, [2.5, 50, 97.5])
    return int(np.rint(lo)), int(np.rint(mid)), int(np.rint(hi)), len(found) / sims


def dispersion(x: F64, rate: F64) -> float:
    """Pearson's dispersion of counts ``x`` around expected ``rate`` (1: Poisson)."""
    live = rate > 0
    if live.sum() < 2:
        return 1.0
    return float(np.sum((x[live] - rate[live]) ** 2 / rate[live]) / (live.sum() - 1))


class SocialShift:
    """Builds ``services.social_shift`` from the shared daily mix."""

    def __init__(
        self, western: tuple[str, ...], chinese: tuple[str, ...], explicit: bool, attribute: bool
    ) -> None:
        self.western, self.chinese, self.explicit = western, chinese, explicit
        self.attribute = attribute

    def finding(
        self,
        scope: Scope,
        mix: DailyMix,
        periods: list[Period],
        out: AnalysisOutput,
    ) -> Finding:
        with scope.trace() as used:
            cat.record_mix(scope, self.attribute)
            west = mix.series(mix.unit, list(self.western))
            china = mix.series(mix.unit, list(self.chinese))
            w_cat = mix.series(mix.category, ["social.western"])
            c_cat = mix.series(mix.category, ["social.chinese"])
            named = crossover(west, china)
            by_cat = crossover(w_cat, c_cat)
            ps = list(periods)
            if named.index is not None and not self.explicit:
                x = mix.days[named.index]
                before = Period("before crossover", mix.days[0], mix.days[named.index - 1])
                ps += [before, Period("after crossover", x, mix.days[-1])]
            ps = [p for p in ps if mix.mask(p.lo, p.hi).any()]
            metrics: dict[str, Metric] = {}
            rows = []
            ratios: dict[str, tuple[stats.Estimate, stats.Estimate]] = {}
            for i, p in enumerate(ps):
                sel, key = mix.mask(p.lo, p.hi), cat.label_key(p.label)
                w = cat.resample_weights(int(sel.sum()), stats.BOOTSTRAP_SEED + i)
                got_r = cat.ratio_pairs({"n": (west, china), "c": (w_cat, c_cat)}, sel, w)
                rn, rc = got_r["n"], got_r["c"]
                ratios[p.label] = (rn, rc)
                metrics[f"facebook_to_chinese_{key}"] = cat.estimate_metric(
                    rn, "×", "named: " + cat.RATIO_METHOD
                )
                metrics[f"western_to_chinese_{key}"] = cat.estimate_metric(
                    rc, "×", "category: " + cat.RATIO_METHOD
                )
                got = cat.shares(mix.total, {"west": west, "china": china}, sel, w)
                fs = got["west"][0]
                metrics[f"facebook_share_{key}"] = cat.share_metric(fs)
                metrics[f"chinese_peers_share_{key}"] = cat.share_metric(got["china"][0])
                rows.append(
                    (
                        p.label,
                        num(west[sel].sum()),
                        num(china[sel].sum()),
                        cat.times(rn),
                        num(w_cat[sel].sum()),
                        num(c_cat[sel].sum()),
                        cat.times(rc),
                        pct(fs.value, 2),
                    )
                )
            first, last = periods[0], periods[-1]
            checks = self._social_checks(mix, named, by_cat, first, last, west, china, ratios)
            confidence = grade(checks)
            statement = self._social_statement(mix, named, by_cat, first, last, ratios, metrics)
            for name, c in (("named", named), ("category", by_cat)):
                metrics[f"crossover_{name}_lead_days"] = Metric(
                    c.lead_days if c.index is not None else None,
                    None,
                    None,
                    "days",
                    "days from the crossover to the last day with the Chinese side ahead "
                    f"({'Facebook vs Chinese peers' if name == 'named' else 'categories'})",
                )
                metrics[f"crossover_{name}_crossings"] = Metric(
                    c.crossings, None, None, "changes", "changes of the 14-day lead"
                )
                if c.index is not None:
                    metrics[f"crossover_{name}_offset_days"] = Metric(
                        0,
                        None if c.low is None else c.low - c.index,
                        None if c.high is None else c.high - c.index,
                        "days",
                        "the crossover date's 95% interval, in days from the date: "
                        "gamma-Poisson redraws of both daily series around their 28-day "
                        f"means with their own dispersion ({SIMULATIONS}), centred on the date",
                    )
            self._social_chart(out, mix, west, china, w_cat, c_cat, named, by_cat)
            units = [s for s in mix.unit if s not in self.western + self.chinese]
            svc_rows = [
                (u, *(num(mix.unit[u][mix.mask(p.lo, p.hi)].sum()) for p in periods))
                for u in sorted(units, key=lambda u: -mix.unit[u].sum())
            ]
            samples = sample_flows(
                scope,
                "social service flow samples",
                one_of(
                    "service",
                    (s for u in self.western + self.chinese for s in cat.COMPANIES.get(u, (u,))),
                ),
                6,
            )
            prov = provenance(scope, used)
        period = {"start": mix.days[0].isoformat(), "end": mix.days[-1].isoformat()}
        if named.index is not None:
            period["crossover"] = mix.days[named.index].isoformat()
        if by_cat.index is not None:
            period["crossover_category"] = mix.days[by_cat.index].isoformat()
        return Finding(
            id="services.social_shift",
            title="Western social media against Chinese services",
            statement=f"{assess(confidence.level)} {statement}",
            period=period,
            metrics=metrics,
            confidence=confidence,
            evidence=(
                Table(
                    "Western against Chinese services per period",
                    (
                        "period",
                        "Facebook flows",
                        "Chinese peers flows",
                        "ratio (named)",
                        "social.western flows",
                        "social.chinese flows",
                        "ratio (categories)",
                        "Facebook share of all flows",
                    ),
                    tuple(rows),
                    "Named: Facebook against Baidu, Alibaba (Taobao, Alipay) and Tencent (QQ, "
                    "WeChat, QQ Mail …), the reference case's measure. Categories: every "
                    "service of the taxonomy's social.western against social.chinese.",
                ),
                Table(
                    "Crossovers (local dates)",
                    ("comparison", "crossover", "95% interval", "days ahead since", "changes"),
                    tuple(
                        self._cross_row(mix, label, c)
                        for label, c in (
                            ("Facebook vs Chinese peers (named)", named),
                            ("social.western vs social.chinese", by_cat),
                        )
                    ),
                    f"Crossover: the first day from which the Chinese side's {TRAILING_DAYS}-day "
                    "trailing flow count exceeds the Western side's on every later day.",
                ),
                Table(
                    "Other social services, flows per period",
                    ("service", *(p.label for p in periods)),
                    tuple(svc_rows),
                ),
            ),
            charts=("services.social",),
            provenance=prov,
            alternatives=(
                "Western services moving behind VPNs or Tor (hiding them from the sensor) "
                "would look the same as abandoning them; compare with opsec.share.",
                "A change in classification (SNI no longer visible, CDN addresses shared by "
                "several services) can shift flows between the groups without a change in use.",
                "Chinese services also carry infrastructure traffic (CDNs, updates, payment) "
                "that is not social use.",
            ),
            headline=(
                f"facebook_to_chinese_{cat.label_key(first.label)}",
                f"facebook_to_chinese_{cat.label_key(last.label)}",
            ),
            samples=samples,
            detected=named.index is not None or by_cat.index is not None,
        )

    @staticmethod
    def _span(mix: DailyMix, c: Crossover) -> str:
        if c.low is None or c.high is None:
            return ""
        return f"; 95% interval {mix.days[c.low]} to {mix.days[min(c.high, len(mix.days) - 1)]}"

    @staticmethod
    def _cross_row(mix: DailyMix, label: str, c: Crossover) -> tuple[Any, ...]:
        if c.index is None:
            what = "Chinese side ahead throughout" if c.ahead_throughout else "none"
            return (label, what, "", "", c.crossings)
        span = ""
        if c.low is not None and c.high is not None:
            span = f"{mix.days[c.low]} to {mix.days[min(c.high, len(mix.days) - 1)]}"
        return (label, mix.days[c.index].isoformat(), span, c.lead_days, c.crossings)

    def _social_checks(
        self,
        mix: DailyMix,
        named: Crossover,
        by_cat: Crossover,
        first: Period,
        last: Period,
        west: F64,
        china: F64,
        ratios: dict[str, tuple[stats.Estimate, stats.Estimate]],
    ) -> list[Check]:
        r0, r1 = ratios[first.label][0], ratios[last.label][0]
        s0, s1 = mix.mask(first.lo, first.hi), mix.mask(last.lo, last.hi)
        # the vanished side may be small (that is the finding); the pair must not be
        small = min(west[s0].sum() + china[s0].sum(), west[s1].sum() + china[s1].sum())
        reversed_ = (r0.low or 0) > 1 and (r1.high if r1.high is not None else math.inf) < 1
        unc = mix.category.get(UNCLASSIFIED, np.zeros(len(mix.days))).sum() / max(
            mix.total.sum(), 1
        )
        checks = [
            Check(
                first != last and int(mix.has.sum()) >= MIN_DAYS,
                f"{first.label} and {last.label} compared",
                "a single period or fewer than "
                f"{MIN_DAYS} days with data: no shift between periods can be seen",
            ),
            Check(
                small >= MIN_GROUP_FLOWS,
                f"at least {num(small)} flows of the two sides in {first.label} and in "
                f"{last.label}",
                f"only {num(small)} flows of the two sides in {first.label} or {last.label}",
            ),
            Check(
                unc <= 0.3,
                f"{pct(unc)} of all flows unclassified",
                f"{pct(unc)} of all flows unclassified: services may hide there",
            ),
        ]
        if named.index is not None or by_cat.index is not None:
            c = named if named.index is not None else by_cat
            width = (c.high or 0) - (c.low or 0) + 1 if c.low is not None else len(mix.days)
            checks += [
                Check(
                    reversed_,
                    f"the Facebook/peers ratio's interval lies above 1 in {first.label} and "
                    f"below 1 in {last.label}",
                    "the ratio's intervals do not show a reversal between the first and the "
                    "last period",
                    penalty=2,
                ),
                Check(
                    c.lead_days >= MIN_LEAD_DAYS,
                    f"the Chinese side stayed ahead for {c.lead_days} days after the crossover",
                    f"the Chinese side has been ahead for only {c.lead_days} days",
                ),
                Check(
                    width <= MAX_INTERVAL_DAYS and c.reproduced >= 0.95,
                    f"the crossover date is good to {width} days (95% interval by simulation; "
                    f"{pct(c.reproduced)} of simulated series cross)",
                    f"the crossover date is uncertain: its 95% interval spans {width} days and "
                    f"{pct(c.reproduced)} of simulated series cross at all",
                ),
            ]
        return checks

    def _social_statement(
        self,
        mix: DailyMix,
        named: Crossover,
        by_cat: Crossover,
        first: Period,
        last: Period,
        ratios: dict[str, tuple[stats.Estimate, stats.Estimate]],
        metrics: dict[str, Metric],
    ) -> str:
        (n0, c0), (n1, c1) = ratios[first.label], ratios[last.label]
        fk, lk = cat.label_key(first.label), cat.label_key(last.label)
        peers = ", ".join(x.capitalize() for x in self.chinese)
        west = ", ".join(x.capitalize() for x in self.western)
        ratio_text = (
            f"{west} had {cat.times(n0)} the flows of its Chinese peers ({peers}) in "
            f"{first.label} and {cat.times(n1)} in {last.label}"
        )
        share_text = (
            f"{west}'s share of all flows went from {pct(metrics[f'facebook_share_{fk}'].value, 2)}"
            f" to {pct(metrics[f'facebook_share_{lk}'].value, 2)}"
        )
        cat_text = (
            f"Across categories, social.western had {cat.times(c0)} the flows of "
            f"social.chinese in {first.label} and {cat.times(c1)} in {last.label}"
        )
        if by_cat.index is not None:
            cat_text += f" (categories crossed on {mix.days[by_cat.index]})"
        if not sum(float(mix.unit[u].sum()) for u in self.western + self.chinese if u in mix.unit):
            return (
                f"neither {west} nor its Chinese peers ({peers}) appear in the flows, so no "
                f"shift between them can be measured. {cat_text}."
            )
        if named.index is not None:
            return (
                f"use of Western social media gave way to Chinese services: {ratio_text}; the "
                f"peers' {TRAILING_DAYS}-day flow count overtook {west}'s for good on "
                f"{mix.days[named.index]} (local date{self._span(mix, named)}) and "
                f"{share_text}. {cat_text}."
            )
        if by_cat.index is not None:
            return (
                f"Chinese social networks overtook Western ones on {mix.days[by_cat.index]} "
                f"(14-day flow counts of the categories), while {ratio_text}. {cat_text}."
            )
        lead = (
            "the Chinese side led throughout"
            if named.ahead_throughout
            else (f"{west} stayed ahead")
        )
        return (
            f"no lasting shift from Western social media to Chinese services is visible: "
            f"{ratio_text} and {lead}. {cat_text}."
        )

    def _social_chart(
        self,
        out: AnalysisOutput,
        mix: DailyMix,
        west: F64,
        china: F64,
        w_cat: F64,
        c_cat: F64,
        named: Crossover,
        by_cat: Crossover,
    ) -> None:
        k = np.ones(TRAILING_DAYS)
        n = len(mix.days)

        def trail(x: F64) -> list[float]:
            return [float(v) for v in np.convolve(x, k, "full")[:n]]

        events = []
        if named.index is not None:
            events.append((mix.days[named.index].isoformat(), "crossover (Facebook vs peers)"))
        if by_cat.index is not None:
            events.append((mix.days[by_cat.index].isoformat(), "crossover (categories)"))
        wname = " + ".join(self.western)
        cname = " + ".join(self.chinese)
        out.charts["services.social"] = {
            "id": "services.social",
            "kind": "multi_series",
            "title": f"Western vs Chinese services: {TRAILING_DAYS}-day trailing flows",
            "caption": f"{wname} against {cname} (companies), and the social.western and "
            "social.chinese categories; dotted lines mark the crossovers (local dates).",
            "data": {
                "x": [d.isoformat() for d in mix.days],
                "series": {
                    wname: trail(west),
                    cname: trail(china),
                    "social.western": trail(w_cat),
                    "social.chinese": trail(c_cat),
                },
                "events": events,
                "y_title": f"flows in the last {TRAILING_DAYS} days",
            },
        }
