"""Measurements behind ``presence.abroad``: local counterparts and country shares vs a baseline.

Everything is aggregated in SQL — the country-per-day query of ``counterparts``
(same text, so a report runs it once), one scan for the counterpart networks and
one for the daily local counterparts — and judged in :mod:`.presence`; Python only
sees a few thousand rows, handled as numpy (country × day) grids.

**Place-informative flows.** Outbound flows (the territory's side opened them)
that are not tunnels, pools or swarms: a VPN exit, a Tor relay, a mining pool or
a BitTorrent peer says nothing about where the territory's people are, so
categories ``anonymizer.*``, ``crypto.*`` and ``filesharing`` are left out.

**Local counterparts.** A place-informative flow (not :data:`PLACELESS`) whose remote network is
*domestic* — at least :data:`DOMESTIC` of the territory's flows with that AS
geolocate to one country; global content, CDN and cloud networks answer from
many countries — and whose service is a local institution: classified
``education``, ``government``, ``news`` or ``military``, or, when the taxonomy
does not know the site (``unclassified``, ``other``, ``email``), a server or DNS
name under the country's own top-level domain. Global services (social, search,
shopping, streaming, gaming, infrastructure) never count as local even when a
domestic network serves them under the country's domain.

**Local share** of a country: local counterpart flows over its place-informative
flows. Every share here is clustered by UTC day: Wilson with the design effect of
the linearised ratio variance (:func:`shares`).

**Anomaly.** Each country's share of counterpart flows (profile's access and
transit providers excluded) in a baseline window vs a comparison window. The
difference gets Newcombe's hybrid score interval and the ratio a Katz log
interval (0.5 added to the effective counts, so a country absent from the
baseline still gets a finite interval); both use the design-effect Wilson
limits at a Bonferroni-adjusted level over the countries tested, so on a
30-country table a chance "rise" stays near 5% for the whole table.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow.analyze import stats
from rogueflow.analyze.context import VIEW, Scope, one_of
from rogueflow.analyze.countries import (
    CCTLD_SQL,
    GROUP_CCTLD_SQL,
    NAME_SQL,
    NEUTRAL_CATEGORIES,
    UNKNOWN,
    cat_sql,
    counterpart_cells,
    country_days_table,
    quoted,
)

LOCAL_CATEGORIES = ("education", "government", "news", "military")
PLACELESS = ("anonymizer", "crypto", "filesharing")  # category prefixes
DOMESTIC = 0.95
ALPHA = 0.05

#: descriptive only (the kinds table): what an organisation's registered name says it is
ORG_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("military", ("armed force", "defence", "defense", "military", "army", "navy")),
    ("university or research network", ("universit", "educat", "research", "academ", "college",
                                         "school", "knowledge network", "forschung")),
    ("government", ("government", "ministry", "informatics", "parliament", "govt",
                    "administration", "public service")),
    ("hosting, cloud or CDN", ("hosting", "cloud", "data cent", "datacenter", "server", "cdn",
                               "content delivery", "colocation", "idc")),
    ("access provider (ISP)", ("telecom", "telekom", "communications", "mobile", "broadband",
                               "cable", "wireless", "cellular", "isp", "internet service")),
)  # fmt: skip
CATEGORY_KINDS = {
    "education": "universities",
    "government": "government",
    "news": "news",
    "military": "military",
    "email": "webmail",
}


PLACELESS_SQL = " OR ".join(f"{cat_sql()} LIKE '{p}%'" for p in PLACELESS)
INFORMATIVE_SQL = f"side = 'out' AND NOT ({PLACELESS_SQL})"


def local_sql(domestic: set[int]) -> str:
    """Portable SQL condition: the flow is with a local counterpart (see the module doc)."""
    if not domestic:
        return "1 = 0"
    nets = ", ".join(str(a) for a in sorted(domestic))
    # place-informative is ``side = 'out'`` here: no local or neutral category is
    # placeless (the test asks; skipping the prefix tests per row saves 0.6 s a scan)
    return (
        f"side = 'out' AND remote_country IS NOT NULL AND remote_asn IN ({nets}) AND "
        f"({cat_sql()} IN ({quoted(LOCAL_CATEGORIES)}) OR "
        f"({cat_sql()} IN ({quoted(NEUTRAL_CATEGORIES)}) AND {CCTLD_SQL}))"
    )


def org_kind(org: str | None) -> str:
    low = (org or "").lower()
    for kind, words in ORG_KINDS:
        if any(w in low for w in words):
            return kind
    return "other"


@dataclass(frozen=True)
class Group:
    """Counterpart flows of one (country, AS, category, direction, own-domain name) cell.

    ``cctld`` is judged only where it can make a flow local (outbound, a
    :data:`NEUTRAL_CATEGORIES` category); elsewhere it is false. The breadth
    (``addrs`` … ``last_name``) is counted for local cells only
    (:func:`locals_by_country`), zero elsewhere."""

    country: str
    asn: int | None
    org: str
    category: str
    outbound: bool
    cctld: bool
    flows: int
    named: int  # flows carrying a server or DNS name
    first_ts: datetime
    addrs: int = 0
    hosts: int = 0
    names: int = 0
    first_name: str | None = None
    last_name: str | None = None

    @property
    def key(self) -> tuple[str, int | None, str, bool, bool]:
        return self.country, self.asn, self.category, self.outbound, self.cctld

    @property
    def informative(self) -> bool:
        return self.outbound and not self.category.startswith(PLACELESS)

    def local(self, domestic: set[int]) -> bool:
        return (
            self.informative
            and self.country != UNKNOWN
            and self.asn in domestic
            and (
                self.category in LOCAL_CATEGORIES
                or (self.category in NEUTRAL_CATEGORIES and self.cctld)
            )
        )

    @property
    def kind(self) -> str:
        """What the counterpart is, from its service (the network's kind is ``org_kind``)."""
        if self.category in CATEGORY_KINDS:
            return CATEGORY_KINDS[self.category]
        return "sites under the country's domain" if self.cctld else self.category


def groups(scope: Scope, excl: str) -> list[Group]:
    """Every counterpart cell's flows, from the counterpart cells (no distinct counts:
    those need only the local cells, one scan of their flows in
    :func:`locals_by_country`)."""
    cells = counterpart_cells(scope, excl)
    rows = scope.rows(
        "presence: counterpart networks by category",
        f"""
        SELECT country, asn, max(org) AS org, cat, outbound, cctld, sum(flows) AS flows,
               sum(named) AS named, min(first_ts) AS first_ts
        FROM (SELECT country, asn, org, {cat_sql()} AS cat,
                     CASE WHEN side = 'out' THEN 1 ELSE 0 END AS outbound, cctld, flows, named,
                     first_ts
              FROM {cells} WHERE side <> 'internal' AND excluded_asn IS NULL) c
        GROUP BY country, asn, cat, outbound, cctld
        ORDER BY country NULLS FIRST, asn NULLS FIRST, cat, outbound, cctld""",
    )
    return [
        Group(
            r["country"] or UNKNOWN,
            None if r["asn"] is None else int(r["asn"]),
            r["org"] or "",
            r["cat"],
            bool(r["outbound"]),
            bool(r["cctld"]),
            int(r["flows"]),
            int(r["named"]),
            r["first_ts"],
        )
        for r in rows
    ]


def domestic_networks(gs: list[Group]) -> set[int]:
    """ASes whose counterpart flows geolocate to one known country (≥ :data:`DOMESTIC`)."""
    by_as: dict[int, Counter[str]] = defaultdict(Counter)
    for g in gs:
        if g.asn is not None:
            by_as[g.asn][g.country] += g.flows
    out = set()
    for asn, c in by_as.items():
        top, n = c.most_common(1)[0]
        if top != UNKNOWN and n >= DOMESTIC * sum(c.values()):
            out.add(asn)
    return out


Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


@dataclass
class Local:
    """One country's local counterparts: the cells behind them, breadth and local share."""

    country: str
    groups: list[Group] = field(default_factory=list)
    days: int = 0  # days with local flows
    addrs: int = 0  # distinct local counterpart addresses
    hosts: int = 0  # distinct inside hosts talking to them
    sites: int = 0  # distinct education names (addresses when unnamed)
    share: stats.Share | None = None  # local / place-informative flows
    low: float = 0.0  # interval at the family-wise level
    high: float = 1.0

    @property
    def flows(self) -> int:
        return sum(g.flows for g in self.groups)

    @property
    def networks(self) -> int:
        return len({g.asn for g in self.groups})

    @property
    def first_ts(self) -> datetime | None:
        return min((g.first_ts for g in self.groups), default=None)

    @property
    def value(self) -> float:
        return self.share.value if self.share is not None else 0.0

    def kinds(self) -> list[tuple[str, int]]:
        c: Counter[str] = Counter()
        for g in self.groups:
            c[g.kind] += g.flows
        return c.most_common()


# --- day grids and clustered shares ----------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Counts per (country, UTC day): ``counts[i, j]`` for ``keys[i]`` on ``days[j]``."""

    keys: list[str]
    days: npt.NDArray[np.datetime64]
    counts: dict[str, Floats]  # one (keys × days) matrix per value column


def grid(table: pa.Table, values: tuple[str, ...]) -> Grid:
    """A grid from an Arrow table with ``day``, ``country`` and the ``values`` columns."""
    days_col = table.column("day").to_numpy(zero_copy_only=False).astype("datetime64[D]")
    days, di = np.unique(days_col, return_inverse=True)
    names = [c or UNKNOWN for c in table.column("country").to_pylist()]
    keys, ki = np.unique(np.array(names, dtype=object), return_inverse=True)
    counts = {}
    for v in values:
        m = np.zeros((len(keys), len(days)))
        col = table.column(v).to_numpy(zero_copy_only=False)
        np.add.at(m, (ki, di), np.nan_to_num(col.astype(np.float64)))
        counts[v] = m
    return Grid([str(k) for k in keys], days, counts)


def shares(k: Floats, n: Floats) -> list[stats.Share]:
    """Row-wise share sum(k)/sum(n) over days, Wilson interval with the day-cluster
    design effect (``n`` is one row for all, or one per row of ``k``).

    The design effect comes from the linearised variance of the ratio estimator over
    days (clusters), m/(m-1)·Σ(k_d − p·n_d)²/N², the closed form that
    :func:`rogueflow.analyze.stats.clustered_share`'s bootstrap approximates (they agree
    to a few hundredths of a point on the demo; the bootstrap costs ~50 ms a share, and
    the anomaly table needs a hundred).
    """
    nn = np.broadcast_to(n, k.shape)
    big_n, big_k = nn.sum(axis=1), k.sum(axis=1)
    p = np.divide(big_k, big_n, out=np.zeros_like(big_k), where=big_n > 0)
    m = (nn > 0).sum(axis=1)
    ss = ((k - p[:, None] * nn) ** 2).sum(axis=1)
    out = []
    for i in range(len(p)):
        pi, ni, deff = float(p[i]), float(big_n[i]), 1.0
        if m[i] >= 2 and 0 < pi < 1:
            var = m[i] / (m[i] - 1) * ss[i] / (ni * ni)
            deff = max(1.0, float(var / (pi * (1 - pi) / ni)))
        lo, hi = stats.wilson(big_k[i] / deff, ni / deff)
        wlo, whi = stats.wilson(float(big_k[i]), ni)
        out.append(stats.Share(pi, lo, hi, deff, wlo, whi, int(m[i]), int(ni)))
    return out


@dataclass(frozen=True)
class Period:
    """Country shares of counterpart flows over some days."""

    label: str
    flows: dict[str, float]
    shares: dict[str, stats.Share]

    def ranked(self) -> list[str]:
        """Countries with flows, largest first; the unknown row last."""
        have = [cc for cc, f in self.flows.items() if f > 0]
        return sorted(have, key=lambda cc: (cc == UNKNOWN, -self.flows[cc], cc))

    def known(self) -> list[str]:
        return [cc for cc in self.ranked() if cc != UNKNOWN]


@dataclass(frozen=True)
class Countries:
    """Counterpart flows per country and day, the profile's excluded providers left out."""

    grid: Grid

    @property
    def flows(self) -> Floats:
        return self.grid.counts["flows"]

    def period(self, label: str, mask: Mask) -> Period:
        k = self.flows[:, mask]
        ss = shares(k, k.sum(axis=0))
        sums = k.sum(axis=1)
        return Period(
            label,
            {cc: float(f) for cc, f in zip(self.grid.keys, sums, strict=True)},
            dict(zip(self.grid.keys, ss, strict=True)),
        )

    def years(self) -> dict[int, Period]:
        yrs = self.grid.days.astype("datetime64[Y]").astype(int) + 1970
        return {int(y): self.period(str(y), yrs == y) for y in np.unique(yrs)}


def countries(scope: Scope, excl: str) -> Countries:
    """The ``counterparts`` query (same SQL, so the scope's cache answers it) as a grid."""
    table = country_days_table(scope, excl)
    kept = table.filter(pc.is_null(table.column("excluded_asn")))
    return Countries(grid(kept, ("flows",)))


def locals_by_country(
    scope: Scope, excl: str, gs: list[Group], domestic: set[int], z: float
) -> dict[str, Local]:
    """Countries with local counterparts: their cells, days and local share at level ``z``."""
    out: dict[str, Local] = {}
    for g in gs:
        if g.local(domestic):
            out.setdefault(g.country, Local(g.country)).groups.append(g)
    if not out:
        return out
    where = f"side = 'out' AND {one_of('remote_country', out)} AND {excl} IS NULL"
    # two queries, not one over GROUPING SETS: the daily series needs no distinct count,
    # and the window's distinct counts need only the local flows (5.2 s -> 4.5 s over
    # the full demo's 23.7M flows). The series judges each distinct cell of the columns
    # its conditions read, not each flow (12.4M flows, 0.1M cells: 8.6 s -> 3.1 s on a
    # loaded machine).
    table = scope.query(
        "presence: place-informative and local counterpart flows per day and country",
        f"""
        SELECT day, remote_country AS country,
               sum(CASE WHEN {INFORMATIVE_SQL} THEN n ELSE 0 END) AS informative,
               sum(CASE WHEN {local_sql(domestic)} THEN n ELSE 0 END) AS local
        FROM (SELECT day, side, remote_country, remote_asn, category, server_name, dns_query,
                     count(*) AS n
              FROM {VIEW} WHERE {where}
              GROUP BY day, side, remote_country, remote_asn, category, server_name,
                       dns_query) c
        GROUP BY day, remote_country""",
    )
    # one scan of the local flows for both breadths: per country (its rows have a null
    # network: local cells always have one) and per local cell, from the distinct
    # (cell, addresses, name) tuples (41k of the full demo's 6M local flows, so the two
    # levels' distinct counts cost little; grouping the flows into them is the 2-3 s)
    edu = "CASE WHEN cat = 'education' THEN {x} END"
    cells = {g.key: g for loc in out.values() for g in loc.groups}
    for r in scope.rows(
        "presence: local counterparts per country and cell (distinct addresses, hosts, sites)",
        f"""
        SELECT country, asn, cat, cctld, count(DISTINCT remote_addr) AS addrs,
               count(DISTINCT internal_addr) AS hosts, count(DISTINCT name) AS names,
               min(name) AS first_name, max(name) AS last_name,
               count(DISTINCT {edu.format(x="name")}) AS edu_names,
               count(DISTINCT {edu.format(x="remote_addr")}) AS edu_addrs
        FROM (SELECT country, asn, cat, cctld, remote_addr, internal_addr, name
              FROM (SELECT remote_country AS country, remote_asn AS asn, remote_addr,
                           internal_addr, {cat_sql()} AS cat, {GROUP_CCTLD_SQL} AS cctld,
                           {NAME_SQL} AS name
                    FROM {VIEW} WHERE {where} AND {local_sql(domestic)}) f
              GROUP BY country, asn, cat, cctld, remote_addr, internal_addr, name) c
        GROUP BY GROUPING SETS ((country), (country, asn, cat, cctld))
        ORDER BY country, asn NULLS FIRST, cat NULLS FIRST, cctld NULLS FIRST""",
    ):
        if r["asn"] is None:
            loc = out[r["country"]]
            loc.addrs, loc.hosts = int(r["addrs"]), int(r["hosts"])
            loc.sites = int(r["edu_names"]) or int(r["edu_addrs"])
            continue
        key = (r["country"], int(r["asn"]), r["cat"], True, bool(r["cctld"]))
        cells[key] = replace(
            cells[key],
            addrs=int(r["addrs"]),
            hosts=int(r["hosts"]),
            names=int(r["names"]),
            first_name=r["first_name"],
            last_name=r["last_name"],
        )
    for loc in out.values():
        loc.groups = [cells[g.key] for g in loc.groups]
    daily = grid(table, ("informative", "local"))
    ss = shares(daily.counts["local"], daily.counts["informative"])
    for i, cc in enumerate(daily.keys):
        loc = out[cc]
        loc.groups.sort(key=lambda x: (-x.flows, x.asn or 0, x.category, x.outbound, x.cctld))
        loc.days = int((daily.counts["local"][i] > 0).sum())
        loc.share = ss[i]
        loc.low, loc.high = widened(ss[i], z)
    return out


# --- change against a baseline ----------------------------------------------------------


def family_z(tests: int, alpha: float = ALPHA) -> float:
    """Two-sided Bonferroni z for ``tests`` simultaneous intervals."""
    return NormalDist().inv_cdf(1 - alpha / (2 * max(tests, 1)))


def widened(s: stats.Share, z: float) -> tuple[float, float]:
    """The design-effect Wilson interval of ``s`` at another level."""
    n_eff = s.flows / s.design_effect if s.flows else 0.0
    return stats.wilson(s.value * n_eff, n_eff, z)


@dataclass(frozen=True)
class Change:
    """One country's share in the baseline and comparison windows, and how it moved."""

    country: str
    base: stats.Share
    comp: stats.Share
    diff: float
    diff_low: float
    diff_high: float
    ratio: float | None
    ratio_low: float | None
    ratio_high: float | None

    @property
    def rose(self) -> bool:
        return self.diff_low > 0

    @property
    def fell(self) -> bool:
        return self.diff_high < 0


def change(cc: str, base: stats.Share, comp: stats.Share, z: float) -> Change:
    p1, p2 = base.value, comp.value
    l1, u1 = widened(base, z)
    l2, u2 = widened(comp, z)
    d = p2 - p1  # Newcombe's hybrid score interval (method 10)
    lo = d - math.sqrt((p2 - l2) ** 2 + (u1 - p1) ** 2)
    hi = d + math.sqrt((u2 - p2) ** 2 + (p1 - l1) ** 2)
    ratio = rlo = rhi = None
    if base.flows and comp.flows:
        n1, n2 = base.flows / base.design_effect, comp.flows / comp.design_effect
        k1, k2 = p1 * n1, p2 * n2
        r = ((k2 + 0.5) / (n2 + 0.5)) / ((k1 + 0.5) / (n1 + 0.5))
        se = math.sqrt(1 / (k1 + 0.5) - 1 / (n1 + 0.5) + 1 / (k2 + 0.5) - 1 / (n2 + 0.5))
        ratio = p2 / p1 if p1 > 0 else None
        rlo, rhi = r * math.exp(-z * se), r * math.exp(z * se)
    return Change(cc, base, comp, d, lo, hi, ratio, rlo, rhi)


@dataclass(frozen=True)
class Windows:
    """Baseline and comparison days (masks over the country grid's days) and their origin."""

    base: Mask
    comp: Mask
    base_label: str
    comp_label: str
    how: str

    @property
    def base_days(self) -> int:
        return int(self.base.sum())

    @property
    def comp_days(self) -> int:
        return int(self.comp.sum())


def _span(days: npt.NDArray[np.datetime64], mask: Mask) -> str:
    sel = days[mask]
    return f"{sel[0]}..{sel[-1]}" if len(sel) else "(no days)"


def windows(
    given: tuple[date, date] | None, days: npt.NDArray[np.datetime64], min_days: int
) -> Windows:
    """``--baseline`` if given; else the first calendar year, else the first third of days."""
    if given is not None:
        lo, hi = (np.datetime64(d, "D") for d in given)
        base = (days >= lo) & (days <= hi)
        comp = days > hi if (days > hi).any() else days < lo
        return Windows(
            base, comp, f"{given[0]}..{given[1]}", _span(days, comp), "given with --baseline"
        )
    if not len(days):
        none = np.zeros(0, dtype=bool)
        return Windows(none, none, "(no days)", "(no days)", "no counterpart flows")
    yrs = days.astype("datetime64[Y]").astype(int) + 1970
    first = yrs == yrs.min()
    if len(np.unique(yrs)) >= 2 and first.sum() >= min_days:
        later = sorted({int(y) for y in yrs[~first]})
        label = str(later[0]) if len(later) == 1 else f"{later[0]}–{later[-1]}"
        return Windows(first, ~first, str(yrs.min()), label, "the first calendar year")
    base = np.arange(len(days)) < len(days) // 3
    return Windows(
        base, ~base, _span(days, base), _span(days, ~base), "the first third of the days"
    )


def country_changes(c: Countries, w: Windows) -> tuple[dict[str, Change], float]:
    """Per known country with flows in either window: baseline vs comparison share."""
    if not w.base.any() or not w.comp.any():
        return {}, family_z(1)
    base, comp = c.period("baseline", w.base), c.period("comparison", w.comp)
    tested = [cc for cc in c.grid.keys if cc != UNKNOWN and (base.flows[cc] or comp.flows[cc])]
    z = family_z(len(tested))
    return {cc: change(cc, base.shares[cc], comp.shares[cc], z) for cc in tested}, z
