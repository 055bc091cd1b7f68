"""A coin's daily sessions: the sustained onset, level segments, baseline and after windows.

Pure functions over one daily series (local days with data, zero-filled), used by
:mod:`rogueflow.analyze.crypto` and tested on their own.

* **Active-day segmentation** (:func:`bernoulli_change_points`): binary
  segmentation of the 0/1 series "the coin had a session that day" under a
  Bernoulli likelihood, BIC penalty 2·log n. It sees a step from silence to one
  session a fortnight, which the Gaussian change points of
  :func:`rogueflow.analyze.stats.change_points` (built for dense counts) miss.
* **Sustained onset** (:func:`find_onset`): the first day with a session in the
  first active-day segment holding at least :data:`MIN_ACTIVE_DAYS` days with
  sessions and a session on at least 1 day in :data:`MIN_DENSITY_DAYS`. A stray
  flow in a silent stretch is its own (or a silent) segment, so it never sets
  the onset; it is reported as the first flow.
* **Windows** (:func:`auto_windows`, :func:`user_windows`): level segments after
  the onset are the union of both detectors' change points. The *after* window is
  the highest stable segment (at least :data:`STABLE_DAYS` days with data); the
  automatic *baseline* is the nearest earlier stable segment with a lower level;
  both leave out a guard band next to the change (a rise can take weeks). With no
  such segment the comparison is the days before the onset.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from datetime import date

import numpy as np
import numpy.typing as npt

from rogueflow.analyze import stats

Floats = npt.NDArray[np.float64]

MIN_ACTIVE_DAYS = 3  # days with sessions an onset segment must hold
MIN_DENSITY_DAYS = 30  # ... and at least one such day per this many days with data
STABLE_DAYS = 28  # days with data a segment needs to serve as a baseline or after window
RAMP_RATIO, RAMP_Z = 1.5, 3.0  # a segment rising this much within itself is a ramp, not a level
GUARD_DAYS = 28  # days with data left out next to a rise (a third of the segment at most)


def _xlogx_ratio(k: Floats, n: Floats) -> Floats:
    """k·log(k/n) with 0·log 0 = 0."""
    safe_k = np.where(k > 0, k, 1.0)
    safe_n = np.where(n > 0, n, 1.0)
    return np.where(k > 0, k * np.log(safe_k / safe_n), 0.0)


def _bern_cost(k: Floats, n: Floats) -> Floats:
    """−2 × the Bernoulli log-likelihood at the MLE of k successes in n trials."""
    return -2.0 * (_xlogx_ratio(k, n) + _xlogx_ratio(n - k, n))


def bernoulli_change_points(active: npt.ArrayLike, penalty: float | None = None) -> list[int]:
    """Indices where a new segment of the 0/1 series starts, by penalised binary segmentation.

    >>> bernoulli_change_points([0] * 40 + [1] * 20)
    [40]
    """
    a = (np.asarray(active, dtype=np.float64) > 0).astype(np.float64)
    n = len(a)
    if n < 2:
        return []
    beta = penalty if penalty is not None else 2.0 * math.log(n)
    cs = np.concatenate([[0.0], np.cumsum(a)])
    segments, found = [(0, n)], []
    while segments:
        best: tuple[float, int, tuple[int, int]] | None = None
        for lo, hi in segments:
            if hi - lo < 2:
                continue
            ks = np.arange(lo + 1, hi)
            k_all, n_all = cs[hi] - cs[lo], float(hi - lo)
            k_left, n_left = cs[ks] - cs[lo], (ks - lo).astype(np.float64)
            gain = (
                _bern_cost(np.array([k_all]), np.array([n_all]))[0]
                - _bern_cost(k_left, n_left)
                - _bern_cost(k_all - k_left, n_all - n_left)
            )
            i = int(np.argmax(gain))
            if best is None or gain[i] > best[0]:
                best = (float(gain[i]), int(ks[i]), (lo, hi))
        if best is None or best[0] <= beta:
            break
        _gain, k, (lo, hi) = best
        found.append(k)
        segments.remove((lo, hi))
        segments += [(lo, k), (k, hi)]
    return sorted(found)


@dataclass(frozen=True)
class Onset:
    index: int  # first day (index into the series) of sustained activity
    first_index: int  # first day with any session
    sessions_before: int  # sessions before the sustained onset (strays)
    censored: bool  # active from the first day of the data: the real onset may be earlier


def find_onset(sessions: npt.ArrayLike) -> Onset | None:
    """The sustained onset of a daily series (see the module docstring); None if never."""
    y = np.asarray(sessions, dtype=np.float64)
    active = y > 0
    if not active.any():
        return None
    first = int(np.flatnonzero(active)[0])
    bounds = [0, *bernoulli_change_points(active), len(y)]
    for lo, hi in itertools.pairwise(bounds):
        days = int(active[lo:hi].sum())
        if days >= MIN_ACTIVE_DAYS and days * MIN_DENSITY_DAYS >= hi - lo:
            at = lo + int(np.flatnonzero(active[lo:hi])[0])
            return Onset(at, first, int(y[:at].sum()), censored=lo == 0 and at == first)
    return None


@dataclass(frozen=True)
class Window:
    """Days ``lo``..``hi - 1`` of the series (indices), how the window was chosen."""

    lo: int
    hi: int
    how: str

    def mean(self, y: Floats) -> float:
        return float(y[self.lo : self.hi].mean()) if self.hi > self.lo else math.nan

    @property
    def days(self) -> int:
        return self.hi - self.lo


def level_segments(sessions: npt.ArrayLike, start: int) -> list[tuple[int, int]]:
    """Segments of the series from ``start``: the union of both detectors' change points."""
    y = np.asarray(sessions, dtype=np.float64)[start:]
    cps = set(bernoulli_change_points(y > 0)) | set(stats.change_points(np.log1p(y)))
    bounds = [0, *sorted(c for c in cps if 0 < c < len(y)), len(y)]
    return [(start + a, start + b) for a, b in itertools.pairwise(bounds) if b > a]


def _highest(y: Floats, segs: list[tuple[int, int]]) -> tuple[int, int] | None:
    stable = [s for s in segs if s[1] - s[0] >= STABLE_DAYS] or sorted(
        segs, key=lambda s: s[0] - s[1]
    )[:1]
    return max(stable, key=lambda s: float(y[s[0] : s[1]].mean()), default=None)


def _flat(y: Floats, seg: tuple[int, int]) -> bool:
    """Whether a segment is a level rather than a step of a ramp: its second half is not
    clearly higher or lower than its first (both a ratio past :data:`RAMP_RATIO` and a
    difference past :data:`RAMP_Z` standard errors, so sparse series stay levels)."""
    a = y[seg[0] : seg[1]]
    half = len(a) // 2
    if half < 2:
        return True
    m1, m2 = float(a[:half].mean()), float(a[half:].mean())
    se = math.sqrt(
        float(a[:half].var(ddof=1)) / half + float(a[half:].var(ddof=1)) / (len(a) - half)
    )
    ratio = max(m1, m2) / max(min(m1, m2), 1e-9)
    return not (ratio > RAMP_RATIO and abs(m2 - m1) > RAMP_Z * max(se, 1e-9))


def _guard(lo: int, hi: int) -> int:
    return min(GUARD_DAYS, (hi - lo) // 3)


def _after(y: Floats, segs: list[tuple[int, int]], top: tuple[int, int], how: str) -> Window:
    """The top segment without its first weeks (the end of a ramp), extended over the later
    segments that stay at or above its level (the activity kept up to the end)."""
    level, hi = float(y[top[0] : top[1]].mean()), top[1]
    for s in segs:
        if s[0] == hi and float(y[s[0] : s[1]].mean()) >= level:
            hi = s[1]
    return Window(top[0] + _guard(*top), hi, how)


def auto_windows(sessions: npt.ArrayLike, onset: Onset) -> tuple[Window | None, Window]:
    """(baseline, after) chosen from the level segments after the onset.

    After: the highest stable segment. Baseline: the longest earlier stable segment
    with a lower level that is flat (not a step of the ramp up to the after level: on a
    large series a gradual rise splits into several short segments). Both leave out up to
    :data:`GUARD_DAYS` days with data next to
    the change (a third of the segment at most), so a gradual rise does not blur either
    level. With no lower segment the baseline is the days before the onset (None when
    the onset is censored: nothing before it is known to be quiet).
    """
    y = np.asarray(sessions, dtype=np.float64)
    segs = level_segments(y, onset.index)
    top = _highest(y, segs)
    assert top is not None  # the onset leaves at least one day
    level = float(y[top[0] : top[1]].mean())
    lower = [
        s
        for s in segs
        if s[1] <= top[0]
        and s[1] - s[0] >= STABLE_DAYS
        and float(y[s[0] : s[1]].mean()) < level
        and _flat(y, s)
    ]
    if lower:
        # the longest level, not the nearest: a rise over weeks leaves short intermediate
        # levels that are steps of the ramp (on a large series they pass the flatness test)
        lo, hi = max(lower, key=lambda s: (s[1] - s[0], s[0]))
        return (
            Window(lo, hi - _guard(lo, hi), "automatic: the longest stable level before the rise"),
            _after(y, segs, top, "automatic: the highest stable level"),
        )
    after = Window(onset.index, len(y), "from the sustained onset to the end of the data")
    if onset.censored or onset.index == 0:
        return None, after
    return Window(0, onset.index, "automatic: the days with data before the onset"), after


def user_windows(
    days: list[date], sessions: npt.ArrayLike, onset: Onset | None, baseline: tuple[date, date]
) -> tuple[Window | None, Window | None]:
    """(baseline, after) for a user's baseline: after is the highest stable segment
    starting after the baseline's last day, else every day with data after it."""
    y = np.asarray(sessions, dtype=np.float64)
    b0, b1 = baseline
    idx = [i for i, d in enumerate(days) if b0 <= d <= b1]
    base = Window(idx[0], idx[-1] + 1, "given (--baseline)") if idx else None
    later = [i for i, d in enumerate(days) if d > b1]
    if not later:
        return base, None
    start = later[0]
    segs = level_segments(y, max(start, onset.index if onset else start))
    top = _highest(y, [s for s in segs if s[0] >= start])
    if top is not None and top[1] - top[0] >= STABLE_DAYS:
        return base, _after(y, segs, top, "the highest stable level after the baseline")
    return base, Window(start, len(y), "every day with data after the baseline")
