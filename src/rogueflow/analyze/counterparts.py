"""Counterparts: whom the territory's networks exchange flows with, per year.

Descriptive groundwork (no claim of presence anywhere): per calendar year (UTC)
of the flows with one end outside the territory (``side`` in/out; internal flows
have no counterpart and are only counted):

* access and transit providers named in the profile's ``exclude`` list (kp:
  AS4837 China Unicom, AS20485 TransTelecom), each entry tested at the flow's
  time, are reported on their own and left out of the country and network
  shares — their addresses are the territory's on-ramp, not counterparts;
* country shares of the remaining flows, ``(unknown)`` (no geolocation) kept
  as a row so shares never hide what could not be located;
* network (AS) shares of the remaining flows, with the organisation most often
  named for the AS;
* the category mix of all counterpart flows, ``unclassified`` always beside it;
* coverage: the shares of counterpart flows with a known country, a known AS
  and a category other than ``unclassified``.

Shares carry Wilson intervals widened by the day-cluster design effect, as in
:mod:`rogueflow.analyze.pattern`. Finding: ``counterparts.overview``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date
from typing import Any

from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance
from rogueflow.analyze.context import Scope
from rogueflow.analyze.countries import (
    SHARE_METHOD,
    UNKNOWN,
    Year,
    counterpart_cells,
    country_days,
    excluded_sql,
    fill_countries,
    stale_geo,
)
from rogueflow.analyze.countries import and_list as _and
from rogueflow.analyze.countries import cells as _cells
from rogueflow.analyze.countries import with_interval as _with_interval
from rogueflow.enrich.intel import UNCLASSIFIED
from rogueflow.findings import Check, Finding, Metric, Table, assess, grade, num, pct
from rogueflow.territory import Territory

NOT_ENRICHED = "(not enriched)"
OTHER = "other categories"
TOP_TABLE = 10  # rows per year in the evidence tables
TOP_METRICS = 5  # countries / networks per year given as metrics
CHART_COUNTRIES = 8
CHART_CATEGORIES = 6
GREYS = {UNCLASSIFIED: "#9e9e9e", NOT_ENRICHED: "#d0d0d0", OTHER: "#6b6b6b"}
COVERAGE_METHOD = "fraction of the year's counterpart flows"
MIN_FLOWS, MIN_DAYS = 500, 30
_OUT = "side <> 'internal'"
COVERAGE = {  # per year: name -> condition counted (over the counterpart cells)
    "internal": "side = 'internal'",
    "counterpart": _OUT,
    "with_country": f"{_OUT} AND country IS NOT NULL",
    "with_asn": f"{_OUT} AND asn IS NOT NULL",
    "classified": f"{_OUT} AND category IS NOT NULL AND category <> '{UNCLASSIFIED}'",
    "not_enriched": f"{_OUT} AND category IS NULL",
}


class Counterparts:
    id = "counterparts"
    title = "Counterparts"

    def __init__(self) -> None:
        self.orgs: dict[int, str] = {}  # AS -> the organisation most often named for it

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        t = scope.territory
        excl = excluded_sql(t)
        with scope.trace() as used:
            years = self._collect(scope, excl)
            refs = scope.intel_used()
            metrics = self._metrics(years)
            confidence = grade(self._checks(years, refs))
            statement = self._statement(t, years)
            self._charts(out, years)
            evidence = self._evidence(t, years)
            last = max(years)
            prov = provenance(scope, used)
        out.findings.append(
            Finding(
                id="counterparts.overview",
                title=f"Counterparts of networks in {t.name}",
                statement=f"{assess(confidence.level)} {statement}",
                period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
                metrics=metrics,
                confidence=confidence,
                evidence=evidence,
                charts=("counterparts.countries", "counterparts.categories"),
                provenance=prov,
                alternatives=_alternatives(t),
                headline=tuple(
                    name
                    for name in (
                        f"top_country_share_{last}",
                        f"country_coverage_{last}",
                        f"unclassified_share_{last}",
                    )
                    if name in metrics
                ),
            )
        )
        return out

    # --- aggregates ------------------------------------------------------------------

    def _collect(self, scope: Scope, excl: str) -> dict[int, Year]:
        cells = counterpart_cells(scope, excl)
        countries = country_days(scope, excl)
        networks = scope.rows(
            "counterparts: networks per year",
            f"""
            SELECT year, asn, org, sum(flows) AS flows
            FROM {cells} WHERE side <> 'internal' AND excluded_asn IS NULL
            GROUP BY year, asn, org""",
        )
        categories = scope.rows(
            "counterparts: categories per day",
            f"SELECT year, day, category, {scope.trend.flows} AS flows FROM {scope.trend.view} "
            f"WHERE {_OUT} GROUP BY year, day, category",
        )
        sums = ",\n".join(
            f"CAST(sum(CASE WHEN {cond} THEN flows ELSE 0 END) AS BIGINT) AS {name}"
            for name, cond in COVERAGE.items()
        )
        coverage = scope.rows(
            "counterparts: enrichment coverage per year",
            f"SELECT year,\n{sums}\nFROM {cells} GROUP BY year ORDER BY year",
        )
        years = {int(r["year"]): Year(int(r["year"])) for r in coverage}
        for r in coverage:
            years[int(r["year"])].coverage = {k: int(v) for k, v in r.items() if k != "year"}
        fill_countries(years, countries)
        for r in categories:
            cats = years[int(r["year"])].category
            cats.setdefault(r["category"] or NOT_ENRICHED, defaultdict(float))[r["day"]] += r[
                "flows"
            ]
        self._networks(scope, years, networks, cells)
        # an empty year (only internal flows) has no counterparts to describe
        return {k: y for k, y in years.items() if y.days} or years

    def _networks(
        self, scope: Scope, years: dict[int, Year], rows: list[dict[str, Any]], cells: str
    ) -> None:
        """Top networks per year by flows, then their daily counts (for the intervals)."""
        totals: dict[int, Counter[int]] = defaultdict(Counter)
        org_votes: dict[int, Counter[str]] = defaultdict(Counter)
        for r in rows:
            if r["asn"] is None:
                continue
            totals[int(r["year"])][int(r["asn"])] += int(r["flows"])
            if r["org"]:
                org_votes[int(r["asn"])][str(r["org"])] += int(r["flows"])
        self.orgs = {a: v.most_common(1)[0][0] for a, v in org_votes.items()}
        top = sorted({a for c in totals.values() for a, _ in c.most_common(TOP_TABLE)})
        keep = f"asn IN ({', '.join(map(str, top))}) OR " if top else ""
        daily = scope.rows(
            "counterparts: top networks per day",
            f"""
            SELECT year, day, asn, sum(flows) AS flows
            FROM {cells}
            WHERE side <> 'internal' AND excluded_asn IS NULL AND ({keep}asn IS NULL)
            GROUP BY year, day, asn""",
        )
        chosen = {y: {a for a, _ in c.most_common(TOP_TABLE)} for y, c in totals.items()}
        for r in daily:
            y = years[int(r["year"])]
            a = r["asn"]
            if a is not None and int(a) not in chosen.get(y.year, set()):
                continue
            key = UNKNOWN if a is None else f"AS{int(a)}"
            y.asn.setdefault(key, defaultdict(float))[r["day"]] += float(r["flows"])

    # --- numbers -------------------------------------------------------------------

    def _metrics(self, years: dict[int, Year]) -> dict[str, Metric]:
        m: dict[str, Metric] = {}

        def share(name: str, s: stats.Share) -> None:
            # at a share of 0 or 1 the Wilson bound equals it only up to rounding
            m[name] = Metric(s.value, min(s.low, s.value), max(s.high, s.value), "share",
                             SHARE_METHOD)  # fmt: skip

        for yr, y in sorted(years.items()):
            cov = y.coverage
            n = cov["counterpart"]
            m[f"counterpart_flows_{yr}"] = Metric(
                n, unit="flows", method="flows with one end outside"
            )
            for key, label in (
                ("with_country", "country_coverage"),
                ("with_asn", "asn_coverage"),
                ("classified", "classified_share"),
            ):
                m[f"{label}_{yr}"] = Metric(
                    cov[key] / n if n else None, None, None, "share", COVERAGE_METHOD
                )
            cat = y.category
            share(f"unclassified_share_{yr}", y.share(cat.get(UNCLASSIFIED, {}), of_kept=False))
            excluded_all: dict[date, float] = defaultdict(float)
            for asn, counts in y.excluded.items():
                share(f"excluded_share_AS{asn}_{yr}", y.share(counts, of_kept=False))
                for d, v in counts.items():
                    excluded_all[d] += v
            share(f"excluded_share_{yr}", y.share(excluded_all, of_kept=False))
            known = [(cc, f) for cc, f in y.ranked(y.country) if cc != UNKNOWN]
            if known:
                share(f"top_country_share_{yr}", y.share(y.country[known[0][0]]))
            for cc, _ in known[:TOP_METRICS]:
                share(f"country_share_{cc}_{yr}", y.share(y.country[cc]))
            for key, _ in [kv for kv in y.ranked(y.asn) if kv[0] != UNKNOWN][:TOP_METRICS]:
                share(f"asn_share_{key}_{yr}", y.share(y.asn[key]))
            for c, _ in y.ranked(cat):
                if c not in (UNCLASSIFIED, NOT_ENRICHED):
                    share(f"category_share_{c}_{yr}", y.share(cat[c], of_kept=False))
        return m

    def _checks(self, years: dict[int, Year], refs: list[dict[str, Any]]) -> list[Check]:
        checks = []
        cov = {yr: y.coverage for yr, y in years.items()}
        worst = min(years, key=lambda yr: _frac(cov[yr], "with_country"))
        geo = _frac(cov[worst], "with_country")
        checks.append(
            Check(
                geo >= 0.9,
                f"{pct(geo)} or more of counterpart flows geolocated in every year",
                f"only {pct(geo)} of counterpart flows in {worst} have a known country",
                penalty=1 if geo >= 0.5 else 2,
            )
        )
        asn = min(_frac(c, "with_asn") for c in cov.values())
        checks.append(
            Check(
                asn >= 0.9,
                f"{pct(asn)} or more of counterpart flows mapped to a network (AS) in every year",
                f"only {pct(asn)} of counterpart flows in some year have a known AS",
            )
        )
        uncl = max(1 - _frac(c, "classified") for c in cov.values())
        checks.append(
            Check(
                uncl <= 0.5,
                f"at most {pct(uncl)} of counterpart flows unclassified in any year",
                f"up to {pct(uncl)} of counterpart flows are unclassified in a year: the "
                "category mix describes only the classified part",
            )
        )
        small = [
            yr
            for yr, y in years.items()
            if len(y.days) < MIN_DAYS or sum(y.kept.values()) < MIN_FLOWS
        ]
        checks.append(
            Check(
                not small,
                f"every year has at least {MIN_DAYS} days and {num(MIN_FLOWS)} counterpart flows",
                f"few days or flows in {', '.join(map(str, sorted(small)))}: shares are unstable",
            )
        )
        stale = stale_geo(refs)
        checks.append(
            Check(
                not stale,
                "geolocation and AS data dated for the flows' time",
                "undated reference data retrieved long after the flows ("
                + ", ".join(f"{r['id']} retrieved {r['retrieved_at'][:10]}" for r in stale)
                + ") may place addresses that moved since; add dated snapshots "
                "(`rogueflow intel add --valid-from/--valid-to`)",
            )
        )
        return checks

    def _statement(self, t: Territory, years: dict[int, Year]) -> str:
        y0, y1 = min(years), max(years)
        last = years[y1]
        n = last.coverage["counterpart"]
        if not n:
            return (
                f"networks in {t.name} exchanged no flows with the outside world in {y1}; "
                "there are no counterparts to describe."
            )
        if not last.coverage["with_country"] and not last.coverage["with_asn"]:
            return (
                f"the {num(n)} counterpart flows of networks in {t.name} in {y1} cannot be "
                "attributed to countries or networks: none carries geolocation (flows stored "
                "before enrichment; run `rogueflow enrich`)."
            )
        kept = sum(last.kept.values())
        text = f"in {y1}, of the {num(n)} flows between networks in {t.name} and counterparts "
        if t.exclude:
            names = ", ".join(f"AS{e.asn} {e.name}".strip() for e in t.exclude)
            ex = sum(sum(v.values()) for v in last.excluded.values())
            text += (
                f"outside it, {pct(ex / n)} were with the access and transit providers of the "
                f"profile ({names}), reported separately and left out of the country shares; "
                f"of the other {num(kept)}, "
            )
        else:
            text += "outside it, "
        known = [cc for cc, _ in last.ranked(last.country) if cc != UNKNOWN][:3]
        parts = [f"{cc} {_with_interval(last.share(last.country[cc]))}" for cc in known]
        unknown = sum(last.country.get(UNKNOWN, {}).values())
        text += (
            f"the largest shares were with addresses geolocated in "
            f"{_and(parts) or 'no known country'}"
            f"{f', and {pct(unknown / kept)} could not be located' if kept else ''}."
        )
        if y0 != y1:
            first = years[y0]
            top0 = [cc for cc, _ in first.ranked(first.country) if cc != UNKNOWN][:1]
            if top0:
                text += (
                    f" In {y0} the leading country was {top0[0]} "
                    f"({pct(first.share(first.country[top0[0]]).value)})."
                )
        nets = [a for a, _ in last.ranked(last.asn) if a != UNKNOWN][:1]
        if nets:
            org = self.orgs.get(int(nets[0][2:]), "")
            text += (
                f" The largest network was {nets[0]}{f' ({org})' if org else ''} with "
                f"{pct(last.share(last.asn[nets[0]]).value)}."
            )
        cats = [c for c, _ in last.ranked(last.category) if c not in (UNCLASSIFIED, NOT_ENRICHED)]
        uncl = pct(sum(last.category.get(UNCLASSIFIED, {}).values()) / n)
        cat_text = (
            f"the largest category was {cats[0]} "
            f"({pct(last.share(last.category[cats[0]], of_kept=False).value)})"
            if cats
            else "no flow fell in a category"
        )
        text += (
            f" By service, {cat_text}, while {uncl} of counterpart flows stayed unclassified. "
            "These shares describe where counterpart addresses are registered or geolocated, "
            f"not where people or equipment of {t.name} are."
        )
        return text

    # --- presentation ----------------------------------------------------------------

    def _charts(self, out: AnalysisOutput, years: dict[int, Year]) -> None:
        order = sorted(years)
        overall: Counter[str] = Counter()
        for y in years.values():
            for cc, f in y.ranked(y.country):
                if cc != UNKNOWN:
                    overall[cc] += int(f)
        ccs = [cc for cc, _ in overall.most_common(CHART_COUNTRIES)]
        if any(UNKNOWN in y.country for y in years.values()):
            ccs.append(UNKNOWN)
        series = {}
        for yr in order:
            y = years[yr]
            ss = [y.share(y.country.get(cc, {})) for cc in ccs]
            series[str(yr)] = ([s.value for s in ss], [s.low for s in ss], [s.high for s in ss])
        out.charts["counterparts.countries"] = {
            "id": "counterparts.countries",
            "kind": "bars_with_intervals",
            "title": "Counterpart countries per year (share of flows, 95% intervals)",
            "caption": "Geolocation of the outside end. Flows with the profile's access and "
            "transit providers are left out; (unknown): no geolocation.",
            "data": {
                "categories": ccs,
                "series": series,
                "y_title": "share of counterpart flows",
                "percent": True,
            },
        }
        cat_total: Counter[str] = Counter()
        for y in years.values():
            for c, f in y.ranked(y.category):
                cat_total[c] += int(f)
        named = [c for c, _ in cat_total.most_common() if c not in GREYS]
        shown, rest = named[:CHART_CATEGORIES], named[CHART_CATEGORIES:]
        stacks: dict[str, list[float]] = {c: [] for c in shown}
        if rest:
            stacks[OTHER] = []
        stacks[UNCLASSIFIED] = []  # always drawn, even at 0 (REFERENCE-CASE caveat 3)
        if NOT_ENRICHED in cat_total:
            stacks[NOT_ENRICHED] = []
        for yr in order:
            y = years[yr]
            n = sum(y.total.values()) or 1.0
            for c in stacks:
                keys = rest if c == OTHER else [c]
                stacks[c].append(sum(sum(y.category.get(k, {}).values()) for k in keys) / n)
        out.charts["counterparts.categories"] = {
            "id": "counterparts.categories",
            "kind": "stacked_bars",
            "title": "Category mix of counterpart flows per year (unclassified in grey)",
            "caption": "Categories from the service taxonomy; unclassified flows are shown, "
            "so the classified part is seen for what it is.",
            "data": {
                "categories": [str(yr) for yr in order],
                "series": stacks,
                "y_title": "share of counterpart flows",
                "percent": True,
                "colors": {c: GREYS[c] for c in stacks if c in GREYS},
            },
        }

    def _evidence(self, t: Territory, years: dict[int, Year]) -> tuple[Table, ...]:
        def rows_for(
            table_of: str, keyfn: Any, of_kept: bool = True, limit: int = TOP_TABLE
        ) -> list[tuple[Any, ...]]:
            rows = []
            for yr, y in sorted(years.items()):
                table = getattr(y, table_of)
                for key, f in y.ranked(table)[: limit + 1]:
                    rows.append((yr, *keyfn(key), *_cells(y.share(table[key], of_kept), f)))
            return rows

        cols = ("flows", "share", "95% interval")
        names = {e.asn: e for e in t.exclude}
        excluded = [
            (yr, f"AS{asn}", getattr(names.get(asn), "name", ""),
             getattr(names.get(asn), "reason", ""),
             *_cells(y.share(counts, of_kept=False), sum(counts.values())))
            for yr, y in sorted(years.items())
            for asn, counts in sorted(y.excluded.items())
        ]  # fmt: skip
        coverage = [
            (yr, num(c["counterpart"]), num(c["internal"]),
             *(pct(_frac(c, k), 1) for k in ("with_country", "with_asn", "classified")),
             pct((c["counterpart"] - c["classified"] - c["not_enriched"]) / c["counterpart"]
                 if c["counterpart"] else None, 1),
             num(c["not_enriched"]))
            for yr, c in sorted((yr, y.coverage) for yr, y in years.items())
        ]  # fmt: skip
        return (
            Table(
                "Counterpart countries per year",
                ("year", "country", *cols),
                tuple(rows_for("country", lambda k: (k,))),
                "Share of counterpart flows without the profile's access and transit "
                "providers; (unknown): the address is in no geolocation snapshot.",
            ),
            Table(
                "Counterpart networks (AS) per year",
                ("year", "AS", "organisation", *cols),
                tuple(
                    rows_for(
                        "asn",
                        lambda k: (k, "" if k == UNKNOWN else self.orgs.get(int(k[2:]), "")),
                    )
                ),
                "Organisation: the name most often given for the AS in the snapshots used.",
            ),
            Table(
                "Access and transit providers reported separately (profile exclude list)",
                ("year", "AS", "name", "reason", *cols),
                tuple(excluded),
                "Share of all counterpart flows of the year; these flows are not in the country "
                "and network shares.",
            ),
            Table(
                "Category mix per year",
                ("year", "category", *cols),
                tuple(rows_for("category", lambda k: (k,), of_kept=False, limit=100)),
                "Share of all counterpart flows; unclassified: no rule of the taxonomy matched; "
                "(not enriched): stored before enrichment.",
            ),
            Table(
                "Enrichment coverage per year",
                (
                    "year",
                    "counterpart flows",
                    "internal flows",
                    "known country",
                    "known AS",
                    "classified",
                    "unclassified",
                    "not enriched",
                ),
                tuple(coverage),
                "Internal flows (both ends inside the territory) have no counterpart.",
            ),
        )


def _frac(cov: dict[str, int], key: str) -> float:
    return cov[key] / cov["counterpart"] if cov.get("counterpart") else 0.0


def _alternatives(t: Territory) -> tuple[str, ...]:
    return (
        "Anycast and CDN addresses (public resolvers, content networks) geolocate to the "
        "operator's registration or nearest point of presence, not to where the content or "
        "the counterpart is; a large share for one country may be a few global services.",
        "VPN exits, proxies and Tor relays carry traffic under the country of the exit, so "
        "counterpart countries can be misattributed in either direction.",
        "Transit providers not in the profile's exclude list (or excluded only for part of "
        f"the window) count as counterparts and inflate their country; check the networks "
        f"table for {t.name}'s upstreams.",
        "Geolocation and AS data retrieved long after the flows may place addresses that were "
        "reassigned since; dated snapshots for each year avoid this.",
        "Unclassified flows can hide any category; a change in the classified mix may be a "
        "change in what the taxonomy recognises rather than in use.",
    )
