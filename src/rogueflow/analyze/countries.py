"""Counterpart countries per day and year, shared by ``counterparts`` and ``presence``.

The profile's access and transit providers (``exclude``), each tested at the
flow's time, are counted on their own and left out of the country shares: their
addresses are the territory's on-ramp, not counterparts. Both analyses run the
same SQL text, so the scope's query cache answers the second one for free.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import pyarrow as pa

from rogueflow.analyze import stats
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.analyze.engine import sql_string
from rogueflow.enrich.intel import UNCLASSIFIED
from rogueflow.findings import num, pct
from rogueflow.territory import Territory
from rogueflow.territory.profile import EPOCH, FOREVER

UNKNOWN = "(unknown)"
SHARE_METHOD = (
    "share of flows; Wilson 95% interval with n_eff = n / design effect, the design "
    "effect estimated by a bootstrap over UTC days (2,000 resamples)"
)
STALE_DAYS = 365  # an undated snapshot retrieved this long after a flow may have moved on


@dataclass
class Year:
    """One calendar year's aggregates: day -> flows, and day -> flows per key."""

    year: int
    days: list[date] = field(default_factory=list)
    total: dict[date, float] = field(default_factory=lambda: defaultdict(float))  # counterparts
    kept: dict[date, float] = field(default_factory=lambda: defaultdict(float))  # not excluded
    country: dict[str, dict[date, float]] = field(default_factory=dict)
    excluded: dict[int, dict[date, float]] = field(default_factory=dict)
    asn: dict[str, dict[date, float]] = field(default_factory=dict)
    category: dict[str, dict[date, float]] = field(default_factory=dict)
    coverage: dict[str, int] = field(default_factory=dict)

    def share(self, counts: dict[date, float], of_kept: bool = True) -> stats.Share:
        denom = self.kept if of_kept else self.total
        n = [denom.get(d, 0.0) for d in self.days]
        k = [counts.get(d, 0.0) for d in self.days]
        return stats.clustered_share(n, k)[0]

    def ranked(self, table: dict[str, dict[date, float]]) -> list[tuple[str, float]]:
        """Keys by flows, largest first; the unknown row last."""
        totals = [(key, sum(v.values())) for key, v in table.items()]
        return sorted(totals, key=lambda kv: (kv[0] == UNKNOWN, -kv[1], kv[0]))


def excluded_sql(t: Territory, asn: str = "remote_asn", ts: str = "ts_utc") -> str:
    """The profile's excluded AS valid at the flow's time, else NULL (portable SQL)."""
    whens = []
    for e in t.exclude:
        cond = f"{asn} = {int(e.asn)}"
        if e.valid.valid_from > EPOCH:
            cond += f" AND {ts} >= TIMESTAMP '{e.valid.valid_from:%Y-%m-%d %H:%M:%S}'"
        if e.valid.valid_to < FOREVER:
            cond += f" AND {ts} < TIMESTAMP '{e.valid.valid_to:%Y-%m-%d %H:%M:%S}'"
        whens.append(f"WHEN {cond} THEN {int(e.asn)}")
    return f"CASE {' '.join(whens)} END" if whens else "CAST(NULL AS BIGINT)"


NEUTRAL_CATEGORIES = (UNCLASSIFIED, "other", "email")  # local only under the country's domain
TLD_EXCEPTIONS = {"GB": "uk"}  # ISO 3166 code -> its ccTLD where they differ


def cat_sql(column: str = "category") -> str:
    """The category, unclassified where the flow was never classified."""
    return f"coalesce({column}, '{UNCLASSIFIED}')"


def quoted(xs: tuple[str, ...]) -> str:
    """A portable SQL list of the strings ``xs``."""
    return ", ".join(map(sql_string, xs))


def _tld() -> str:
    whens = " ".join(f"WHEN '{cc}' THEN '{tld}'" for cc, tld in TLD_EXCEPTIONS.items())
    return f"CASE remote_country {whens} ELSE lower(remote_country) END"


#: the flow's server or DNS name, lower case
NAME_SQL = "lower(coalesce(server_name, dns_query))"
#: the name is under the remote end's country-code top-level domain
CCTLD_SQL = f"({NAME_SQL} LIKE ('%.' || {_tld()}))"
#: :data:`CCTLD_SQL` where it can make a flow local (outbound, a neutral category), as
#: 1 or 0: judged on the few flows where it matters, not on every counterpart flow
GROUP_CCTLD_SQL = (
    f"CASE WHEN side = 'out' AND {cat_sql()} IN ({quoted(NEUTRAL_CATEGORIES)}) AND {CCTLD_SQL} "
    "THEN 1 ELSE 0 END"
)

CELLS = "counterpart_cells"
COUNTRY_DAYS = "counterparts: countries per day"


def cells_sql(excl: str) -> str:
    """Flows per cell of what the counterpart queries group by (``year``, ``day``,
    ``side``, ``country``, ``asn``, ``org``, ``category`` as stored, ``cctld`` of
    :data:`GROUP_CCTLD_SQL`, ``excluded_asn``) with ``flows``, ``named`` (flows with a
    server or DNS name) and ``first_ts``: 0.15M cells for the full demo's 23.7M flows,
    one scan (1.9 s) instead of one per query (0.8-1.6 s each)."""
    keys = (
        f"year, day, side, remote_country, remote_asn, remote_as_org, category, "
        f"{GROUP_CCTLD_SQL}, {excl}"
    )
    return f"""
        SELECT year, day, side, remote_country AS country, remote_asn AS asn,
               remote_as_org AS org, category, {GROUP_CCTLD_SQL} AS cctld,
               {excl} AS excluded_asn, count(*) AS flows,
               count(coalesce(server_name, dns_query)) AS named, min(ts_utc) AS first_ts
        FROM {VIEW}
        GROUP BY {keys}"""


def counterpart_cells(scope: Scope, excl: str) -> str:
    """The view of :func:`cells_sql` (materialised once per scope), by name."""
    return scope.derived(CELLS, cells_sql(excl))


def country_days_sql(cells: str) -> str:
    """Counterpart flows per (year, UTC day, excluded AS or NULL, country), from the
    ``cells`` view."""
    return f"""
        SELECT year, day, excluded_asn, country, sum(flows) AS flows
        FROM {cells} WHERE side <> 'internal'
        GROUP BY year, day, excluded_asn, country"""


def country_days_table(scope: Scope, excl: str) -> pa.Table:
    """The rows of :func:`country_days_sql` (one query for counterparts and presence)."""
    return scope.query(COUNTRY_DAYS, country_days_sql(counterpart_cells(scope, excl)))


def country_days(scope: Scope, excl: str) -> list[dict[str, Any]]:
    return list(country_days_table(scope, excl).to_pylist())


def fill_countries(years: dict[int, Year], rows: list[dict[str, Any]]) -> None:
    """Add :func:`country_days` rows to ``years`` (created on demand) and set their days."""
    for r in rows:
        yr = int(r["year"])
        y = years.setdefault(yr, Year(yr))
        d, n = r["day"], float(r["flows"])
        y.total[d] += n
        if r["excluded_asn"] is not None:
            y.excluded.setdefault(int(r["excluded_asn"]), defaultdict(float))[d] += n
        else:
            y.kept[d] += n
            cc = r["country"] or UNKNOWN
            y.country.setdefault(cc, defaultdict(float))[d] += n
    for y in years.values():
        y.days = sorted(y.total)


def stale_geo(refs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Undated geolocation/AS snapshots retrieved long after the first flow that used them."""
    return [
        r
        for r in refs
        if r["kind"] in ("geo-country", "geo-asn")
        and not r["removed"]
        and r["valid_from"] is None
        and r["retrieved_at"] is not None
        and (
            datetime.fromisoformat(r["retrieved_at"]).date() - date.fromisoformat(r["first_day"])
        ).days
        > STALE_DAYS
    ]


def cells(s: stats.Share, flows: float) -> tuple[str, str, str]:
    return num(flows), pct(s.value, 1), f"{pct(s.low, 1)}–{pct(s.high, 1)}"


def with_interval(s: stats.Share) -> str:
    return f"({pct(s.value)}, 95% interval {pct(s.low)}–{pct(s.high)})"


def and_list(parts: list[str]) -> str:
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " and " + parts[-1]
