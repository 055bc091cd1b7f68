"""Small-sample statistics of the event overlay: Student-t intervals, Holm's correction,
pre-event/baseline window sums over a calendar with gaps, and empirical window ranks.

numpy only (no scipy): Student's t for integer degrees of freedom has a closed form.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]

MIN_BASELINE = 10  # days with data in an event's baseline to test it


def t_two_sided(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with integer ``df`` (Abramowitz & Stegun 26.7.3–4)."""
    theta = math.atan(abs(t) / math.sqrt(df))
    c2, s = math.cos(theta) ** 2, math.sin(theta)
    if df % 2:
        term = total = math.cos(theta) if df > 1 else 0.0
        for j in range(1, (df - 1) // 2):
            term *= 2 * j / (2 * j + 1) * c2
            total += term
        return 2 / math.pi * (theta + s * total)
    term = total = 1.0
    for j in range(1, (df - 2) // 2 + 1):
        term *= (2 * j - 1) / (2 * j) * c2
        total += term
    return s * total


def t_quantile(df: int, level: float = 0.95) -> float:
    """The two-sided ``level`` critical value of Student's t (bisection on the CDF)."""
    lo, hi = 0.0, 1e4
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_two_sided(mid, df) < level:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def t_interval(x: Floats) -> tuple[float, float | None, float | None]:
    """Mean and Student-t 95% interval (None with fewer than two values)."""
    if len(x) == 0:
        return math.nan, None, None
    m = float(x.mean())
    if len(x) < 2:
        return m, None, None
    half = t_quantile(len(x) - 1) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return m, m - half, m + half


def holm(p: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (same order as given)."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    out = [1.0] * len(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out


@dataclass(frozen=True)
class Windows:
    """Running sums over a calendar of daily values (NaN = no data), padded both sides."""

    s1: Floats
    s2: Floats
    n: Floats
    pad: int

    @classmethod
    def of(cls, values: Floats, pad: int) -> Windows:
        x = np.concatenate([np.full(pad, np.nan), values, np.full(pad + 1, np.nan)])
        ok = ~np.isnan(x)
        z = np.where(ok, x, 0.0)
        return cls(_cum(z), _cum(z * z), _cum(ok.astype(np.float64)), pad)

    def span(self, a: Any, b: Any) -> tuple[Any, Any, Any]:
        """Sums over calendar days a … b inclusive (arrays of indices)."""
        a, b = np.asarray(a) + self.pad, np.asarray(b) + self.pad + 1
        return self.s1[b] - self.s1[a], self.s2[b] - self.s2[a], self.n[b] - self.n[a]


def event_stats(w: Windows, i: Any, pre: int, base: int) -> dict[str, Any]:
    """Pre-event and baseline statistics for events at calendar indices ``i`` (any shape)."""
    i = np.asarray(i)
    p1, _p2, pn = w.span(i - pre, i - 1)
    b1a, b2a, bna = w.span(i - pre - base, i - pre - 1)
    b1b, b2b, bnb = w.span(i + 1, i + base)
    b1, b2, bn = b1a + b1b, b2a + b2b, bna + bnb
    with np.errstate(divide="ignore", invalid="ignore"):
        pm = np.where(pn > 0, p1 / pn, np.nan)
        bm = np.where(bn > 0, b1 / bn, np.nan)
        sd = np.sqrt(np.maximum(np.where(bn > 0, b2 / bn, np.nan) - bm * bm, 0.0))
        ok = (pn > 0) & (bn >= MIN_BASELINE) & (sd > 0)
        z = np.where(ok, (pm - bm) / np.where(sd > 0, sd, 1.0), np.nan)
    return {"z": z, "pre_mean": pm, "base_mean": bm, "base_sd": sd, "pre_n": pn, "base_n": bn}


def _cum(a: Floats) -> Floats:
    return np.concatenate([[0.0], np.cumsum(a)])


def take(values: Floats, a: int, b: int) -> Floats:
    """Values of calendar days a … b inclusive that have data."""
    seg = values[max(a, 0) : max(b + 1, 0)]
    return seg[~np.isnan(seg)]


def empirical_p(values: Floats, i: int, pre: int, base: int, pre_mean: float) -> float:
    """Two-sided rank of the pre-event mean among the baseline's own ``pre``-day windows."""
    spans = ((i - pre - base, i - pre - 1), (i + 1, i + base))
    base_v = np.concatenate([take(values, a, b) for a, b in spans])
    centre = float(base_v.mean())
    means = []
    for a, b in spans:
        for s in range(a, b - pre + 2):
            seg = take(values, s, s + pre - 1)
            if len(seg):
                means.append(float(seg.mean()))
    if not means:
        return 1.0
    far = sum(1 for m in means if abs(m - centre) >= abs(pre_mean - centre) - 1e-12)
    return (1 + far) / (1 + len(means))
