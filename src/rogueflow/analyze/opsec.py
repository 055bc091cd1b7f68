"""Obfuscation: VPN, Tor, DNS-over-HTTPS and DNS tunnels, and how their use rose and waned.

Findings:

* ``opsec.share`` — the share of flows that are obfuscated (categories
  ``anonymizer.vpn``, ``anonymizer.tor``, ``anonymizer.doh`` and DNS-tunnel flows)
  per period, each kind on its own, and the TLS share of the flows whose
  application protocol is known (reported beside, not counted as obfuscation: TLS
  is the web's default). Periods: half-years of local days, or explicit periods
  given to :class:`Obfuscation`; the rise and fall are measured between *phases*,
  the segments of the weekly obfuscated share found by change points
  (:func:`rogueflow.analyze.stats.change_points`) — or, with explicit periods,
  between them. ``peak_over_first`` is the peak phase's (period's) share over the
  first one's, ``last_over_peak`` the last over the peak; with ``--baseline``,
  ``peak_over_baseline`` too.
* ``opsec.dns_tunnel`` — DNS tunnelling (judged by :mod:`rogueflow.analyze.tunnels`,
  written up by :mod:`rogueflow.analyze.tunnelfinding`): the
  domain, its direct endpoint, the hosts inside using it, the first local date
  (``period["start"]``) and its share of flows per period; indicators for the
  domain (domain-name), the endpoint and the inside hosts (ipv4-addr/ipv6-addr).

Days are local days and flows are counted as in :mod:`rogueflow.analyze.categories`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

import numpy as np

from rogueflow.analyze import categories as cat
from rogueflow.analyze import stats, tunnels
from rogueflow.analyze import tunnelfinding as tf
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.categories import F64, DailyMix, Period
from rogueflow.analyze.context import Scope, one_of
from rogueflow.enrich.intel import UNCLASSIFIED
from rogueflow.findings import Check, Finding, Metric, Table, assess, grade, num, pct

KINDS = {
    "vpn": "anonymizer.vpn",
    "tor": "anonymizer.tor",
    "doh": "anonymizer.doh",
}
WEEK = 7
MIN_PHASE_WEEKS = 4
MIN_OBFUSCATED = 30  # obfuscated flows in the peak phase before a multiplier means much
MIN_FIRST = 5  # ... and in the first phase
RISE = 2.0  # a rise this large (×) is called a rise
MIN_DAYS = 56  # days with data before an absence (of a rise, of a tunnel) means much


@dataclass
class Series:
    """Per local day: all flows and the obfuscated ones by kind."""

    mix: DailyMix
    kinds: dict[str, F64]

    @property
    def obfuscated(self) -> F64:
        return np.sum(list(self.kinds.values()), axis=0)  # type: ignore[no-any-return]


class Obfuscation:
    id = "opsec"
    title = "Obfuscation and DNS tunnelling"

    def __init__(
        self,
        periods: list[tuple[str, date, date]] | None = None,
        attribute_by_address: bool = True,
    ) -> None:
        """``periods`` (label, first, last local day) replace the half-years and the
        change-point phases in the comparisons (first, peak, last);
        ``attribute_by_address=False`` skips attribution by address (one query less)."""
        self.periods = cat.explicit(periods)
        self.attribute = attribute_by_address

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        mix = cat.daily_mix(scope, self.attribute)
        if not mix.days:
            return out
        domains, coverage = tunnels.candidates(scope)
        flagged = [d for d in domains if d.flagged]
        tunnel = tf.tunnel_days(scope, mix, flagged)
        zero = np.zeros(len(mix.days))
        kinds = {k: mix.category.get(c, zero) for k, c in KINDS.items()}
        kinds["dns_tunnel"] = tunnel[0] if flagged else mix.category.get(tunnels.TUNNEL, zero)
        series = Series(mix, kinds)
        out.findings.append(self._share(scope, series, flagged, out))
        out.findings.append(
            tf.dns_tunnel_finding(
                scope,
                mix,
                self._periods(scope, mix),
                domains,
                tunnel,
                coverage,
                out,
                self.attribute,
            )
        )
        return out

    # --- data ---------------------------------------------------------------------------

    def _periods(self, scope: Scope, mix: DailyMix) -> list[Period]:
        ps = self.periods or cat.half_years(mix.days[0], mix.days[-1])
        return [p for p in ps if mix.mask(p.lo, p.hi).any()]

    def _phases(self, s: Series) -> list[Period]:
        """Segments of the weekly obfuscated share between change points."""
        mix = s.mix
        n = len(mix.days) // WEEK
        if n < 2 * MIN_PHASE_WEEKS:
            return [Period(f"{mix.days[0]}..{mix.days[-1]}", mix.days[0], mix.days[-1])]
        tot = mix.total[: n * WEEK].reshape(n, WEEK).sum(axis=1)
        obf = s.obfuscated[: n * WEEK].reshape(n, WEEK).sum(axis=1)
        weeks = np.flatnonzero(tot > 0)
        cps = stats.change_points(obf[weeks] / tot[weeks], min_size=MIN_PHASE_WEEKS)
        starts = [0, *(int(weeks[c]) * WEEK for c in cps)]
        ends = [x - 1 for x in starts[1:]] + [len(mix.days) - 1]
        return [
            Period(f"{mix.days[a]}..{mix.days[b]}", mix.days[a], mix.days[b])
            for a, b in zip(starts, ends, strict=True)
        ]

    # --- opsec.share --------------------------------------------------------------------

    def _share(
        self, scope: Scope, s: Series, flagged: list[tunnels.Domain], out: AnalysisOutput
    ) -> Finding:
        mix = s.mix
        with scope.trace() as used:
            cat.record_mix(scope, self.attribute)
            tunnels.candidates(scope)
            if flagged:
                tf.tunnel_days(scope, mix, flagged)
            periods = self._periods(scope, mix)
            phases = self._phases(s) if self.periods is None else periods
            metrics: dict[str, Metric] = {}
            rows: list[tuple[Any, ...]] = []
            measured: dict[str, tuple[stats.Share, F64]] = {}
            table = {"share": s.obfuscated, **s.kinds}
            listed = list(periods) + [p for p in phases if p not in periods]
            if scope.baseline is not None:
                listed.append(Period("baseline", *scope.baseline))
            for i, p in enumerate(listed):
                sel = mix.mask(p.lo, p.hi)
                if not sel.any():
                    continue
                key = cat.label_key(p.label)
                w = cat.resample_weights(int(sel.sum()), stats.BOOTSTRAP_SEED + i)
                got = cat.shares(mix.total, table, sel, w)
                measured[p.label] = got["share"]
                for k, (sh, _) in got.items():
                    metrics[f"{k}_{key}"] = cat.share_metric(sh)
                tls = cat.shares(mix.known, {"tls": mix.tls}, sel, w)["tls"][0]
                metrics[f"tls_known_{key}"] = cat.share_metric(
                    tls,
                    "TLS flows among flows with a known application protocol; " + cat.SHARE_METHOD,
                )
                rows.append(
                    (
                        p.label,
                        "phase" if p in phases and p not in periods else "period",
                        num(mix.total[sel].sum()),
                        cat.interval_text(got["share"][0], 2),
                        *(pct(got[k][0].value, 2) for k in s.kinds),
                        pct(tls.value, 0) if mix.known[sel].sum() else "—",
                    )
                )
            ph = [p for p in phases if p.label in measured]
            first, last = ph[0], ph[-1]
            peak = max(ph, key=lambda p: measured[p.label][0].value)
            rise = cat.ratio_of_shares(measured[peak.label], measured[first.label])
            fall = cat.ratio_of_shares(measured[last.label], measured[peak.label])
            metrics["peak_over_first"] = cat.estimate_metric(
                rise,
                "×",
                f"obfuscated share in {peak.label} over {first.label}; bootstrap over days",
            )
            metrics["last_over_peak"] = cat.estimate_metric(
                fall,
                "×",
                f"obfuscated share in {last.label} over {peak.label}; bootstrap over days",
            )
            base_text = ""
            if scope.baseline is not None and "baseline" in measured:
                rb = cat.ratio_of_shares(measured[peak.label], measured["baseline"])
                metrics["peak_over_baseline"] = cat.estimate_metric(
                    rb, "×", f"obfuscated share in {peak.label} over the baseline window"
                )
                base_text = f" Against the baseline window the peak is {cat.times(rb)}."
            checks = self._share_checks(scope, s, first, peak, last, rise, fall, ph)
            confidence = grade(checks)
            statement = (
                self._share_statement(s, measured, first, peak, last, rise, fall) + base_text
            )
            self._share_chart(out, s, ph, measured)
            samples = sample_flows(
                scope,
                "obfuscated flow samples",
                one_of("category", KINDS.values()),
                6,
            )
            prov = provenance(scope, used)
        return Finding(
            id="opsec.share",
            title="Obfuscated share of activity (VPN, Tor, DoH, DNS tunnels)",
            statement=f"{assess(confidence.level)} {statement}",
            period={"start": mix.days[0].isoformat(), "end": mix.days[-1].isoformat()},
            metrics=metrics,
            confidence=confidence,
            evidence=(
                Table(
                    "Obfuscated share per period and phase (local days)",
                    ("window", "kind", "flows", "obfuscated (95% CI)", *s.kinds, "TLS of known"),
                    tuple(rows),
                    "Phases are the segments of the weekly obfuscated share between change "
                    "points. TLS is shown beside, not counted as obfuscation.",
                ),
            ),
            charts=("opsec.share",),
            provenance=prov,
            alternatives=(
                "Classification decides what counts: VPN or Tor on ports the rules do not know "
                "(443), with no relay or VPN-range list for the period, stays unclassified, and "
                "a newer list finds more than an older one.",
                "A few hosts (a proxy, an automated job) can carry most obfuscated flows; a "
                "change in one host looks like a change in a population's habits.",
                "Flow counts of long-lived tunnels undercount their use; byte shares may differ.",
            ),
            headline=("peak_over_first", "last_over_peak"),
            samples=samples,
            detected=peak != first and rise.value >= RISE,
        )

    def _share_checks(
        self,
        scope: Scope,
        s: Series,
        first: Period,
        peak: Period,
        last: Period,
        rise: stats.Estimate,
        fall: stats.Estimate,
        phases: list[Period],
    ) -> list[Check]:
        mix = s.mix
        obf = s.obfuscated
        n_first = float(obf[mix.mask(first.lo, first.hi)].sum())
        n_peak = float(obf[mix.mask(peak.lo, peak.hi)].sum())
        kinds = {r["kind"] for r in scope.intel_used()}
        lists = sorted(kinds & {"tor-relays", "vpn-ranges"})
        unc = mix.category.get(UNCLASSIFIED, np.zeros(len(mix.days))).sum() / max(
            mix.total.sum(), 1
        )
        span = int(mix.has.sum())
        checks = [
            Check(
                span >= MIN_DAYS,
                f"{span} days with data",
                f"only {span} days with data: too short to see a rise and a fall",
            ),
            Check(
                bool(lists),
                f"anonymizer lists used: {', '.join(lists)}" if lists else "",
                "no Tor relay or VPN range list covers the flows: Tor and VPNs are found by "
                "port and application label only, so those on common ports are missed",
            ),
            Check(
                unc <= 0.3,
                f"{pct(unc)} of flows unclassified",
                f"{pct(unc)} of flows unclassified: obfuscated traffic may hide there",
            ),
        ]
        if len(phases) < 2 or peak == first or rise.value < RISE:
            return checks  # no rise asserted: nothing more to grade
        checks += [
            Check(
                (rise.low or 0) > 1,
                "the peak's 95% interval over the first window excludes no change",
                "the peak's 95% interval over the first window includes no change",
                penalty=2,
            ),
            Check(
                n_peak >= MIN_OBFUSCATED and n_first >= MIN_FIRST,
                f"{num(n_first)} obfuscated flows in the first window, {num(n_peak)} at the peak",
                f"few obfuscated flows ({num(n_first)} in the first window, {num(n_peak)} at the "
                "peak): the multiplier is unstable",
            ),
        ]
        if last != peak and fall.value < 1:
            checks.append(
                Check(
                    fall.high is not None and fall.high < 1,
                    "the decline after the peak is beyond day-to-day variation",
                    "the decline after the peak is within day-to-day variation",
                    penalty=0,
                )
            )
        return checks

    def _share_statement(
        self,
        s: Series,
        measured: dict[str, tuple[stats.Share, F64]],
        first: Period,
        peak: Period,
        last: Period,
        rise: stats.Estimate,
        fall: stats.Estimate,
    ) -> str:
        def at(p: Period) -> str:
            return f"{pct(measured[p.label][0].value, 2)} of flows in {p.label}"

        what = "obfuscated traffic (VPN, Tor, DNS over HTTPS, DNS tunnels)"
        if peak == first or rise.value < RISE:
            text = f"{what} did not rise markedly: it made up {at(first)}"
            if peak != first:
                text += f" and at most {at(peak)} ({cat.times(rise)})"
            if last not in (first, peak):
                text += f", and {at(last)}"
            return text + f" (no rise of ×{RISE:.0f} or more between windows)."
        text = f"{what} rose from {at(first)} to {at(peak)}, {cat.times(rise)}"
        if last != peak:
            verb = "fell back to" if fall.value < 1 else "stayed at"
            text += f", then {verb} {at(last)} ({cat.times(fall)} of the peak)"
        top = max(s.kinds, key=lambda k: s.kinds[k][s.mix.mask(peak.lo, peak.hi)].sum())
        return text + f". At the peak most of it was {top.replace('_', ' ')}."

    def _share_chart(
        self,
        out: AnalysisOutput,
        s: Series,
        phases: list[Period],
        measured: dict[str, tuple[stats.Share, F64]],
    ) -> None:
        mix = s.mix
        n = len(mix.days) // WEEK
        tot = mix.total[: n * WEEK].reshape(n, WEEK).sum(axis=1)
        series: dict[str, list[float | None]] = {}
        for name, v in {"obfuscated": s.obfuscated, **s.kinds}.items():
            wk = v[: n * WEEK].reshape(n, WEEK).sum(axis=1)
            if name != "obfuscated" and not wk.any():
                continue
            series[name.replace("_", " ")] = [
                float(a / b) if b else None for a, b in zip(wk, tot, strict=True)
            ]
        out.charts["opsec.share"] = {
            "id": "opsec.share",
            "kind": "multi_series",
            "title": "Obfuscated share of flows per week, by kind",
            "caption": "Weeks of local days; dashed steps: the phases' shares (change points).",
            "data": {
                "x": [mix.days[i * WEEK].isoformat() for i in range(n)],
                "series": series,
                "levels": [
                    (p.lo.isoformat(), p.hi.isoformat(), measured[p.label][0].value) for p in phases
                ],
                "y_title": "share of flows",
                "percent": True,
            },
        }
