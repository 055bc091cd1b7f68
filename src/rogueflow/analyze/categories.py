"""Per-day category and service counts, shared by the service-mix and obfuscation analyses.

:func:`daily_mix` gives, per local day of the territory and per category, the
flows and bytes, the flows of the named services the analyses follow, how many
flows were attributed by address, and how many were TLS. It runs two aggregate
queries (the mix, grouped on plain columns and judged on the small result, and
the attribution of unclassified flows); both :mod:`rogueflow.analyze.services`
and :mod:`rogueflow.analyze.opsec` read them from the scope's cache.

Choices, so a report can state them:

* **Days are the territory's local calendar days** (``local_day``): what its users
  did on a day, the way the pattern-of-life analysis and the demo's ground truth
  count; a ``--baseline`` window is applied to local days too.
* **DNS lookups are infrastructure.** A query to a resolver (server port 53) names
  a service without using it; counting it under the service would count each
  visit twice (lookup and connection). DNS-tunnel flows keep ``dns.tunnel``.
* **Attribution by address.** An outbound flow the enrichment left unclassified
  (a failed handshake, a connection without SNI) takes the category (and the
  company or social service) of the classified flows to the same remote address
  and port, when those all agree. The
  flows so attributed are counted and reported; the unclassified share is given
  both before and after.
* **Companies, not domains**, for the reference case's named services: Facebook
  against its Chinese peers Baidu, Alibaba (Taobao, Alipay) and Tencent (QQ,
  WeChat, QQ Mail …) — :data:`COMPANIES` maps the taxonomy's services to them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow.analyze import stats
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.analyze.engine import sql_string
from rogueflow.enrich.intel import UNCLASSIFIED
from rogueflow.findings import Metric, pct

F64 = npt.NDArray[np.float64]
NOT_ENRICHED = "(not enriched)"
INFRASTRUCTURE = "infrastructure"
TUNNEL = "dns.tunnel"

#: services of the taxonomy (intel/data/services.toml) grouped by the company behind them
COMPANIES: dict[str, tuple[str, ...]] = {
    "facebook": ("facebook",),
    "baidu": ("baidu", "baidu-tieba", "baidu-pan"),
    "alibaba": ("alibaba", "taobao", "alipay"),
    "tencent": ("tencent", "qq", "wechat", "qq-mail", "tencent-video", "tencent-games"),
}
_COMPANY = {svc: name for name, members in COMPANIES.items() for svc in members}
#: categories whose individual services are counted too (for the social comparison)
SERVICE_CATEGORIES = ("social.western", "social.chinese")
#: application labels meaning TLS (Zeek 'ssl', nDPI 'TLS', 'TLS.<app>', 'QUIC' …)
TLS_LABELS = frozenset({"ssl", "tls", "quic", "dtls"})


def _in(values: tuple[str, ...] | list[str]) -> str:
    return "(" + ", ".join(sql_string(v) for v in values) + ")"


def unit_of(service: str | None, category: str | None) -> str | None:
    """The company of a service (per :data:`COMPANIES`), else the service itself for the
    social categories, else None: the named units the analyses follow day by day."""
    if service is None:
        return None
    if service in _COMPANY:
        return _COMPANY[service]
    return service if category in SERVICE_CATEGORIES else None


def unit_sql(service: str = "service", category: str = "category") -> str:
    """:func:`unit_of` in SQL."""
    whens = " ".join(
        f"WHEN {service} IN {_in(list(members))} THEN {sql_string(name)}"
        for name, members in COMPANIES.items()
    )
    return f"CASE {whens} WHEN {category} IN {_in(list(SERVICE_CATEGORIES))} THEN {service} END"


def is_tls(label: str | None) -> bool:
    if not label:
        return False
    low = label.lower()
    return low in TLS_LABELS or low.split(".", 1)[0] in TLS_LABELS


#: an outbound flow the enrichment left unclassified (or did not enrich), not a DNS lookup
_OPEN = (
    f"side = 'out' AND coalesce(remote_port, 0) <> 53 "
    f"AND coalesce(category, '{UNCLASSIFIED}') = '{UNCLASSIFIED}'"
)


def mix_sql() -> str:
    """Flows and bytes per local day × category × service × side × DNS lookup × app label
    (grouping keys only: every judgement is made on the small result)."""
    return f"""
    SELECT local_day, category, service, side, coalesce(remote_port, 0) = 53 AS p53,
           app_label, count(*) AS flows, sum(flow_bytes) AS bytes
    FROM {VIEW}
    GROUP BY local_day, category, service, side, coalesce(remote_port, 0) = 53, app_label
    """


def attribution_sql() -> str:
    """Unclassified outbound flows per local day, with the category and unit of the
    classified flows to the same remote address and port when those all agree."""
    unit = unit_sql()
    return f"""
    WITH open_flows AS (
      SELECT local_day, remote_addr, remote_port, category IS NULL AS ne, app_label,
             count(*) AS flows, sum(flow_bytes) AS bytes
      FROM {VIEW} WHERE {_OPEN}
      GROUP BY local_day, remote_addr, remote_port, category IS NULL, app_label),
    pairs AS (SELECT DISTINCT remote_addr, remote_port FROM open_flows),
    seen AS (
      SELECT v.remote_addr, v.remote_port, v.category, v.service
      FROM {VIEW} v JOIN pairs p ON v.remote_addr = p.remote_addr
                                AND v.remote_port = p.remote_port
      WHERE v.side = 'out' AND v.category <> '{UNCLASSIFIED}'
      GROUP BY v.remote_addr, v.remote_port, v.category, v.service),
    learned AS (
      SELECT remote_addr, remote_port,
             CASE WHEN count(DISTINCT category) = 1 THEN min(category) END AS l_category,
             CASE WHEN count(DISTINCT {unit}) = 1 AND count({unit}) = count(*)
                  THEN min({unit}) END AS l_unit
      FROM seen GROUP BY remote_addr, remote_port)
    SELECT o.local_day, o.ne, l.l_category, l.l_unit, o.app_label,
           sum(o.flows) AS flows, sum(o.bytes) AS bytes
    FROM open_flows o LEFT JOIN learned l
      ON o.remote_addr = l.remote_addr AND o.remote_port = l.remote_port
    GROUP BY o.local_day, o.ne, l.l_category, l.l_unit, o.app_label
    """


@dataclass
class DailyMix:
    """Calendar local days from the first to the last with data; days without data are 0."""

    days: list[date]
    has: npt.NDArray[np.bool_]
    total: F64
    total_bytes: F64
    category: dict[str, F64] = field(default_factory=dict)
    category_bytes: dict[str, F64] = field(default_factory=dict)
    unit: dict[str, F64] = field(default_factory=dict)
    by_address: F64 = field(default_factory=lambda: np.zeros(0))
    tls: F64 = field(default_factory=lambda: np.zeros(0))
    known: F64 = field(default_factory=lambda: np.zeros(0))

    def mask(self, lo: date, hi: date) -> npt.NDArray[np.bool_]:
        """Days with data in [lo, hi] (inclusive)."""
        d = np.array([(x - self.days[0]).days for x in self.days])
        return self.has & (d >= (lo - self.days[0]).days) & (d <= (hi - self.days[0]).days)

    def series(self, table: dict[str, F64], keys: tuple[str, ...] | list[str]) -> F64:
        out = np.zeros(len(self.days))
        for k in keys:
            if k in table:
                out = out + table[k]
        return out

    def raw_unclassified(self) -> F64:
        """Unclassified before attribution by address."""
        return self.category.get(UNCLASSIFIED, np.zeros(len(self.days))) + self.by_address


def _codes(col: pa.ChunkedArray | pa.Array) -> tuple[npt.NDArray[np.int64], list[Any]]:
    """Dictionary codes of a column (-1 for null) and its distinct values."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    enc = pc.dictionary_encode(arr)
    codes = np.asarray(pc.fill_null(enc.indices, -1).to_numpy(zero_copy_only=False), np.int64)
    return codes, enc.dictionary.to_pylist()


def _floats(col: pa.ChunkedArray) -> F64:
    return np.nan_to_num(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64))


def _pick(codes: npt.NDArray[np.int64], values: list[Any], fn: Any) -> npt.NDArray[Any]:
    """``fn(value)`` per row, computed once per distinct value (None for null)."""
    table = np.array([fn(v) for v in values] + [fn(None)], dtype=object)
    return table[codes]  # code -1 takes the last entry


class _Fold:
    """Rows of per-day counts folded into a :class:`DailyMix`."""

    def __init__(self) -> None:
        self.parts: list[dict[str, Any]] = []

    def add(self, **cols: Any) -> None:
        self.parts.append(cols)

    def mix(self) -> DailyMix:
        parts = [p for p in self.parts if len(p["day"])]
        if not parts:
            return DailyMix([], np.zeros(0, bool), np.zeros(0), np.zeros(0))
        col = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        first, last = int(col["day"].min()), int(col["day"].max())
        n = last - first + 1
        i = col["day"] - first
        flows = col["flows"]

        def per_day(values: F64, sel: npt.NDArray[np.bool_] | None = None) -> F64:
            if sel is None:
                return np.asarray(np.bincount(i, weights=values, minlength=n), np.float64)
            return np.asarray(np.bincount(i[sel], weights=values[sel], minlength=n), np.float64)

        epoch = date(1970, 1, 1)
        mix = DailyMix(
            [epoch + timedelta(days=first + k) for k in range(n)],
            np.bincount(i, minlength=n) > 0,
            per_day(flows),
            per_day(col["bytes"]),
            by_address=per_day(flows, col["by_address"]),
            tls=per_day(flows, col["tls"]),
            known=per_day(flows, col["known"]),
        )
        cats = col["category"]
        for c in sorted(set(cats.tolist())):
            sel = cats == c
            mix.category[c] = per_day(flows, sel)
            mix.category_bytes[c] = per_day(col["bytes"], sel)
        units = col["unit"]
        for u in sorted({x for x in units.tolist() if x is not None}):
            mix.unit[u] = per_day(flows, units == u)
        return mix


def _days(col: pa.ChunkedArray) -> npt.NDArray[np.int64]:
    return np.asarray(col.to_numpy(zero_copy_only=False), "datetime64[D]").astype(np.int64)


MIX_LABEL = "category and service mix per local day"
ATTRIBUTION_LABEL = "unclassified flows attributed by address"


def record_mix(scope: Scope, attribute: bool = True) -> None:
    """Name :func:`daily_mix`'s queries in the open trace (they come from the cache)."""
    scope.query(MIX_LABEL, mix_sql())
    if attribute:
        scope.query(ATTRIBUTION_LABEL, attribution_sql())


def daily_mix(scope: Scope, attribute: bool = True) -> DailyMix:
    """Flows, bytes, attributed and TLS flows per local day, category and unit (two
    aggregate queries, cached by the scope; ``attribute=False`` skips attribution).

    The judgements (lookup, classified, company, TLS) are made once per distinct value
    of the small result, never per flow."""
    fold = _Fold()
    t = scope.query(MIX_LABEL, mix_sql())
    cat_c, cat_v = _codes(t["category"])
    svc_c, svc_v = _codes(t["service"])
    side_c, side_v = _codes(t["side"])
    app_c, app_v = _codes(t["app_label"])
    side = _pick(side_c, side_v, lambda v: v)
    lookup = np.asarray(t["p53"].to_numpy(zero_copy_only=False), bool) & (side != "in")
    raw = _pick(cat_c, cat_v, lambda v: v)
    classified = _pick(cat_c, cat_v, lambda v: v is not None and v != UNCLASSIFIED).astype(bool)
    category = np.where(
        lookup,
        np.where(raw == TUNNEL, TUNNEL, INFRASTRUCTURE),
        np.where(classified, raw, np.where(raw == None, NOT_ENRICHED, UNCLASSIFIED)),  # noqa: E711
    )
    # the company / social service of each distinct (service, category) pair
    uniq, inverse = np.unique(np.stack([svc_c, cat_c], axis=1), axis=0, return_inverse=True)
    unit_of_pair = np.array(
        [
            unit_of(svc_v[sv] if sv >= 0 else None, cat_v[cv] if cv >= 0 else None)
            for sv, cv in uniq.tolist()
        ],
        dtype=object,
    )
    unit = unit_of_pair[inverse.reshape(-1)]
    unit[~classified | lookup] = None
    keep = ~(attribute & ~lookup & ~classified & (side == "out"))  # counted by attribution
    fold.add(
        day=_days(t["local_day"])[keep],
        category=category[keep],
        unit=unit[keep],
        flows=_floats(t["flows"])[keep],
        bytes=_floats(t["bytes"])[keep],
        tls=_pick(app_c, app_v, is_tls).astype(bool)[keep],
        known=(app_c >= 0)[keep],
        by_address=np.zeros(int(keep.sum()), bool),
    )
    if attribute:
        a = scope.query(ATTRIBUTION_LABEL, attribution_sql())
        lc, lv = _codes(a["l_category"])
        uc, uv = _codes(a["l_unit"])
        ac, av = _codes(a["app_label"])
        learned = _pick(lc, lv, lambda v: v)
        ne = np.asarray(a["ne"].to_numpy(zero_copy_only=False), bool)
        fold.add(
            day=_days(a["local_day"]),
            category=np.where(lc >= 0, learned, np.where(ne, NOT_ENRICHED, UNCLASSIFIED)),
            unit=_pick(uc, uv, lambda v: v),
            flows=_floats(a["flows"]),
            bytes=_floats(a["bytes"]),
            tls=_pick(ac, av, is_tls).astype(bool),
            known=ac >= 0,
            by_address=lc >= 0,
        )
    return fold.mix()


# --- periods ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """A labelled window of local days, inclusive."""

    label: str
    lo: date
    hi: date


def calendar_years(first: date, last: date) -> list[Period]:
    return [
        Period(str(y), max(date(y, 1, 1), first), min(date(y, 12, 31), last))
        for y in range(first.year, last.year + 1)
    ]


def half_years(first: date, last: date) -> list[Period]:
    out = []
    for y in range(first.year, last.year + 1):
        for h, (lo, hi) in enumerate(
            ((date(y, 1, 1), date(y, 6, 30)), (date(y, 7, 1), date(y, 12, 31)))
        ):
            a, b = max(lo, first), min(hi, last)
            if a <= b:
                out.append(Period(f"{y}-H{h + 1}", a, b))
    return out


def explicit(periods: list[tuple[str, date, date]] | None) -> list[Period] | None:
    """Periods given by a caller (label, first day, last day), checked."""
    if periods is None:
        return None
    out = []
    for label, lo, hi in periods:
        if hi < lo:
            raise ValueError(f"period {label!r}: last day {hi} is before the first {lo}")
        out.append(Period(label, lo, hi))
    return out


# --- numbers ----------------------------------------------------------------------------

SHARE_METHOD = (
    "share of flows on the period's local days; Wilson 95% interval with n_eff = n / design "
    "effect, the design effect from a bootstrap over days (2,000 resamples)"
)
RATIO_METHOD = (
    "ratio of the period's flow counts; 95% percentile interval from a bootstrap over days "
    "(days are the clusters)"
)


def empty_share(like: stats.Share) -> stats.Share:
    """A zero share over the same days and flows as ``like`` (a category with no flows)."""
    lo, hi = stats.wilson(0, like.flows)
    return stats.Share(0.0, lo, hi, 1.0, lo, hi, like.days, like.flows)


def resample_weights(days: int, seed: int = stats.BOOTSTRAP_SEED) -> F64:
    """How often each of ``days`` days is drawn in each bootstrap resample (samples × days),
    so the bootstrap sums of many series are one matrix product; the draws (and cache) of
    :func:`rogueflow.analyze.stats.bootstrap_shares`. Periods compared with each other take
    different seeds, so their resamples are independent."""
    if days == 0:
        return np.zeros((stats.BOOTSTRAP_SAMPLES, 0))
    return stats.resample_weights(days, stats.BOOTSTRAP_SAMPLES, seed)


def shares(
    total: F64, table: dict[str, F64], sel: npt.NDArray[np.bool_], w: F64 | None = None
) -> dict[str, tuple[stats.Share, F64]]:
    """:func:`rogueflow.analyze.stats.clustered_share` of every series of ``table`` at once:
    the same design-effect-widened Wilson interval, the bootstrap done as one product."""
    n = total[sel]
    if w is None:
        w = resample_weights(len(n))
    keys = list(table)
    k = np.stack([table[c][sel] for c in keys], axis=1) if keys else np.zeros((len(n), 0))
    tot = w @ n
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.where(tot[:, None] > 0, (w @ k) / np.maximum(tot, 1)[:, None], np.nan)
    out = {}
    big_n = float(n.sum())
    for j, c in enumerate(keys):
        hits = float(k[:, j].sum())
        p = hits / big_n if big_n else 0.0
        deff = 1.0
        if len(n) >= 2 and 0 < p < 1:
            deff = max(1.0, float(np.nanvar(boot[:, j], ddof=1)) / (p * (1 - p) / big_n))
        lo, hi = stats.wilson(hits / deff, big_n / deff)
        wlo, whi = stats.wilson(hits, big_n)
        out[c] = (stats.Share(p, lo, hi, deff, wlo, whi, len(n), int(big_n)), boot[:, j])
    return out


def share_metric(s: stats.Share, method: str = SHARE_METHOD) -> Metric:
    return Metric(s.value, s.low, s.high, "share", method)


def ratio_pairs(
    pairs: dict[str, tuple[F64, F64]], sel: npt.NDArray[np.bool_], w: F64 | None = None
) -> dict[str, stats.Estimate]:
    """sum(num) / sum(den) over the selected days for each named (num, den) pair, with a
    95% percentile interval from one bootstrap over days (``w``: its resample weights)."""
    if w is None:
        w = resample_weights(int(sel.sum()))
    keys = list(pairs)
    cols = np.stack([x[sel] for k in keys for x in pairs[k]], axis=1)
    boot = w @ cols  # resample sums, num and den side by side
    out = {}
    for j, k in enumerate(keys):
        a, b = cols[:, 2 * j], cols[:, 2 * j + 1]
        if b.sum() <= 0:
            out[k] = stats.Estimate(math.nan, None, None)
            continue
        tb = boot[:, 2 * j + 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(tb > 0, boot[:, 2 * j] / np.maximum(tb, 1e-300), np.nan)
        lo, hi = stats.percentile_interval(r)
        out[k] = stats.Estimate(float(a.sum() / b.sum()), _finite(lo), _finite(hi))
    return out


def ratios(
    table: dict[str, F64], den: F64, sel: npt.NDArray[np.bool_], w: F64
) -> dict[str, stats.Estimate]:
    """:func:`ratio` of every series of ``table`` over one denominator, in one product."""
    keys = list(table)
    b = den[sel]
    if not keys or b.sum() <= 0:
        return {k: stats.Estimate(math.nan, None, None) for k in keys}
    a = np.stack([table[k][sel] for k in keys], axis=1)
    tb = w @ b
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = np.where(tb[:, None] > 0, (w @ a) / np.maximum(tb, 1e-300)[:, None], np.nan)
    lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    total = float(b.sum())
    return {
        k: stats.Estimate(
            float(a[:, j].sum() / total), _finite(float(lo[j])), _finite(float(hi[j]))
        )
        for j, k in enumerate(keys)
    }


def ratio_of_shares(
    after: tuple[stats.Share, F64], before: tuple[stats.Share, F64]
) -> stats.Estimate:
    """share(after) / share(before) with a percentile interval from the two bootstraps."""
    (s1, b1), (s0, b0) = after, before
    if s0.value <= 0:
        return stats.Estimate(math.inf if s1.value > 0 else math.nan, None, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = b1 / b0
    lo, hi = stats.percentile_interval(r[~np.isnan(r)])
    return stats.Estimate(s1.value / s0.value, _finite(lo), _finite(hi))


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def estimate_metric(e: stats.Estimate, unit: str, method: str) -> Metric:
    v = e.value if math.isfinite(e.value) else None
    return Metric(v, e.low, e.high, unit, method)


def times(e: stats.Estimate) -> str:
    """'×2.86 (95% interval ×2.1–×3.9)'."""
    if not math.isfinite(e.value):
        return "from none" if math.isinf(e.value) else "—"
    out = f"×{e.value:.2f}"
    if e.low is not None and e.high is not None:
        out += f" (95% interval ×{e.low:.2f}–×{e.high:.2f})"
    elif e.low is not None:
        out += f" (95% interval from ×{e.low:.2f})"
    return out


def interval_text(s: stats.Share, digits: int = 1) -> str:
    return f"{pct(s.value, digits)} ({pct(s.low, digits)}–{pct(s.high, digits)})"


def label_key(label: str) -> str:
    """A period label as a metric-name part ('2017-04..2017-07' stays readable)."""
    return "".join(c if c.isalnum() or c in "-." else "_" for c in label)
