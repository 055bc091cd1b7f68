"""Presence abroad: countries where people of the territory are probably present.

A country is a **country of presence** when the territory's people reach its
local institutions — universities, government, local news, sites under the
country's own domain on domestic networks — and not only the global services
every user of the territory reaches (the measurements are in :mod:`.localness`):

* **local** basis (*probably* present): local counterparts carry a substantial
  part of the country's place-informative flows — the lower limit of the local
  share, at the family-wise 95% level, is at least :data:`LOCAL_FLOOR`. Nothing
  global explains that traffic; it is unusual for the territory;
* **rise** basis (*possibly* present): the country's share of counterpart flows
  rose significantly against the baseline *and* it has local counterparts, though
  most of its traffic is with global services. A rise without local counterparts
  (a national search engine, hosting, a mining pool) is shown as an anomaly only.

Either basis needs breadth: at least :data:`MIN_LOCAL_FLOWS` local flows to
:data:`MIN_LOCAL_ADDRS` addresses from :data:`MIN_LOCAL_HOSTS` inside hosts on
:data:`MIN_LOCAL_DAYS` days, so one machine or one server never makes a country.

Country shares are those of ``counterparts.overview`` (same SQL: the profile's
access and transit providers are left out). Finding: ``presence.abroad``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rogueflow.analyze import stats
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.context import Scope
from rogueflow.analyze.countries import (
    UNKNOWN,
    and_list,
    excluded_sql,
    stale_geo,
)
from rogueflow.analyze.localness import (
    Change,
    Group,
    Local,
    Period,
    Windows,
    countries,
    country_changes,
    domestic_networks,
    groups,
    local_sql,
    locals_by_country,
    org_kind,
    windows,
)
from rogueflow.findings import Check, Finding, Metric, SampleFlow, Table, assess, grade, num, pct

LOCAL_FLOOR = 0.25
MIN_LOCAL_FLOWS, MIN_LOCAL_ADDRS, MIN_LOCAL_HOSTS, MIN_LOCAL_DAYS = 30, 3, 3, 10
STRONG_FLOWS, STRONG_DAYS = 100, 30  # a country of presence below these is weakly supported
MIN_WINDOW_DAYS = 30
MIN_GEO, MIN_NAMED = 0.9, 0.5
TOP_METRICS, TOP_TABLE, CHART_COUNTRIES, SAMPLED = 5, 12, 14, 6
SHARE_METHOD = (
    "share of flows; Wilson 95% interval with n_eff = n / design effect, the design "
    "effect from the linearised variance of the ratio over UTC days"
)
FAMILY = "at a Bonferroni-adjusted 95% family-wise level over {m} countries"
CHANGE_METHOD = (
    "comparison share − baseline share; Newcombe hybrid score interval from design-effect "
    f"Wilson limits {FAMILY}"
)
RATIO_METHOD = f"comparison share / baseline share; Katz log interval (+0.5) {FAMILY}"
PRESENCE_COLUMNS = ("country", "basis", "local share (interval)", "change, points (interval)",
    "local flows", "local networks", "local addresses", "inside hosts",
    "days with local flows", "kinds of local counterparts", "first local flow")  # fmt: skip
ANOMALY_COLUMNS = ("country", "baseline share", "comparison share", "change, points (interval)",
    "ratio (interval)", "assessment", "local share (interval)")  # fmt: skip
KIND_COLUMNS = ("country", "kind (service)", "kind (network name)", "AS", "organisation",
    "category", "flows", "addresses", "inside hosts", "names")  # fmt: skip
LOCAL_METHOD = (
    "local counterpart flows / place-informative outbound flows of the country over the "
    f"window; Wilson interval with the day-cluster design effect {FAMILY}"
)


def _share(y: Period, cc: str) -> stats.Share:
    return y.shares[cc]


class PresenceAbroad:
    id = "presence"
    title = "Presence abroad"

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        t = scope.territory
        excl = excluded_sql(t)
        with scope.trace() as used:
            cs = countries(scope, excl)
            years = cs.years()
            w = windows(scope.baseline, cs.grid.days, MIN_WINDOW_DAYS)
            changes, z = country_changes(cs, w)
            gs = groups(scope, excl)
            domestic = domestic_networks(gs)
            locs = locals_by_country(scope, excl, gs, domestic, z)
            found = _presence(locs, changes)
            samples = _samples(scope, found, locs, domestic)
            refs = scope.intel_used()
            confidence = grade(_checks(bool(t.exclude), gs, found, locs, w, refs))
            span = f"between {scope.start} and {scope.end}"
            statement = _statement(t.name, span, years, found, locs, changes, w)
            metrics = _metrics(years, found, locs, changes)
            _charts(out, years, found, locs, changes, w)
            evidence = _evidence(years, found, locs, changes, w)
            prov = provenance(scope, used)
        headline = ["presence_countries", *(f"local_share_{cc}" for cc in found[:1])]
        out.findings.append(
            Finding(
                id="presence.abroad",
                title=f"Presence abroad of people in {t.name}",
                statement=f"{assess(confidence.level)} {statement}",
                period={"start": scope.start.isoformat(), "end": scope.end.isoformat()},
                metrics=metrics,
                confidence=confidence,
                evidence=evidence,
                charts=("presence.countries", "presence.anomaly", "presence.local"),
                provenance=prov,
                alternatives=ALTERNATIVES,
                headline=tuple(h for h in headline if h in metrics),
                samples=samples,
                detected=bool(found),
            )
        )
        return out


# --- judgment ------------------------------------------------------------------------


def _local_basis(loc: Local) -> bool:
    return loc.low >= LOCAL_FLOOR


def _presence(locs: dict[str, Local], changes: dict[str, Change]) -> list[str]:
    """Countries of presence: local basis first, then rise basis, by local flows."""
    out = []
    for cc, loc in locs.items():
        broad = (
            cc != UNKNOWN
            and loc.flows >= MIN_LOCAL_FLOWS
            and loc.addrs >= MIN_LOCAL_ADDRS
            and loc.hosts >= MIN_LOCAL_HOSTS
            and loc.days >= MIN_LOCAL_DAYS
        )
        c = changes.get(cc)
        if broad and (_local_basis(loc) or (c is not None and c.rose)):
            out.append(cc)
    return sorted(out, key=lambda cc: (not _local_basis(locs[cc]), -locs[cc].flows))


def _checks(
    has_exclude: bool,
    gs: list[Group],
    found: list[str],
    locs: dict[str, Local],
    w: Windows,
    refs: list[dict[str, Any]],
) -> list[Check]:
    kept = sum(g.flows for g in gs)
    geo = sum(g.flows for g in gs if g.country != UNKNOWN) / kept if kept else 0.0
    inf = [g for g in gs if g.informative]
    n_inf = sum(g.flows for g in inf)
    named = sum(g.named for g in inf) / n_inf if n_inf else 0.0
    weak = [cc for cc in found if locs[cc].flows < STRONG_FLOWS or locs[cc].days < STRONG_DAYS]
    rise_only = bool(found) and not any(_local_basis(locs[cc]) for cc in found)
    short = w.base_days < MIN_WINDOW_DAYS or w.comp_days < MIN_WINDOW_DAYS
    stale = stale_geo(refs)
    return [
        Check(
            geo >= MIN_GEO,
            f"{pct(geo)} of counterpart flows geolocated",
            f"only {pct(geo)} of counterpart flows have a known country: countries of presence "
            "may be missed",
            penalty=1 if geo >= 0.5 else 2,
        ),
        Check(
            named >= MIN_NAMED,
            f"{pct(named)} of place-informative flows carry a server or DNS name",
            f"only {pct(named)} of place-informative flows carry a server or DNS name: local "
            "institutions are recognised mostly by name, so local shares are lower bounds",
        ),
        Check(
            not weak,
            f"every country of presence has ≥ {STRONG_FLOWS} local flows on ≥ {STRONG_DAYS} days"
            if found
            else "",
            f"few local flows or days for {', '.join(weak)}: presence there rests on little "
            "traffic",
        ),
        Check(
            not rise_only,
            "",
            "no country's traffic is mostly local: presence rests only on rises in share, "
            "which a service's popularity explains as well",
            penalty=2,
        ),
        Check(
            not short,
            f"baseline ({w.base_label}, {w.base_days} days, {w.how}) and comparison "
            f"({w.comp_label}, {w.comp_days} days) each cover ≥ {MIN_WINDOW_DAYS} days",
            f"baseline ({w.base_days} days) or comparison ({w.comp_days} days) shorter than "
            f"{MIN_WINDOW_DAYS} days: changes in share are unreliable",
        ),
        Check(
            has_exclude,
            "the profile's access and transit providers are left out of the shares",
            "the profile names no access or transit providers: the territory's on-ramp counts "
            "as a counterpart and inflates its country",
        ),
        Check(
            not stale,
            "geolocation and AS data dated for the flows' time",
            "undated geolocation retrieved long after the flows ("
            + ", ".join(f"{r['id']} retrieved {str(r['retrieved_at'])[:10]}" for r in stale)
            + ") may place addresses that moved since",
        ),
    ]


def _points(d: float, lo: float, hi: float) -> str:
    return f"{d * 100:+.1f} points (interval {lo * 100:+.1f} to {hi * 100:+.1f})"


def _statement(
    name: str,
    span: str,
    years: dict[int, Period],
    found: list[str],
    locs: dict[str, Local],
    changes: dict[str, Change],
    w: Windows,
) -> str:
    if not years:
        return f"networks in {name} exchanged no flows with counterparts abroad to assess."
    rose = sorted((c for c in changes.values() if c.rose), key=lambda c: (-c.diff, c.country))
    other = [c.country for c in rose if c.country not in found]
    if not found:
        text = (
            f"the flows {span} show no country where people of {name} are likely present: in no "
            "country do local institutions (universities, government, local news, sites under "
            "the country's domain on domestic networks) carry a substantial part of the "
            "traffic, and no rise in a country's share comes with local counterparts"
        )
        if other:
            text += (
                f"; the shares of {and_list(other)} rose against the baseline "
                f"({w.base_label}) with global services only"
            )
        return text + "."
    local = [cc for cc in found if _local_basis(locs[cc])]
    by_rise = [cc for cc in found if cc not in local]
    text = ""
    if local:
        parts = [f"{cc} {pct(locs[cc].value)}" for cc in local]
        kinds = sorted({k for cc in local for k, _ in locs[cc].kinds()[:2]})
        text = (
            f"{span}, people of {name} were probably present in {and_list(local)}: there, local "
            f"counterparts ({and_list(kinds)}) carry much of the traffic that says where its "
            f"users are ({and_list(parts)}), unusual for a territory whose other traffic goes "
            "to global services."
        )
    for cc in by_rise:
        c = changes[cc]
        what = and_list([k for k, _ in locs[cc].kinds()[:3]])
        lead = (
            f"{span}, people of {name} were possibly present in {cc}"
            if not text
            else f"{cc} was possibly one too"
        )
        text += (
            f"{' ' if text else ''}{lead}: its share of counterpart flows rose from "
            f"{pct(c.base.value)} ({w.base_label}) to {pct(c.comp.value)} ({w.comp_label}), "
            f"{_points(c.diff, c.diff_low, c.diff_high)}, with local counterparts ({what}), "
            "though most of its traffic is with global services."
        )
    last = years[max(years)]
    top = [cc for cc in last.ranked() if cc in found][:2]
    if top:
        had = [f"{cc} had {pct(_share(last, cc).value)}" for cc in top]
        text += f" In {last.label}, {and_list(had)} of counterpart flows."
    sites = [(cc, locs[cc].sites) for cc in found]
    sites = [(cc, n) for cc, n in sites if n >= 2][:4]
    if sites:
        text += " Academic sites reached: " + and_list([f"{n} in {cc}" for cc, n in sites]) + "."
    if other:
        text += (
            f" The shares of {and_list(other)} also rose, without local counterparts "
            "(services, not presence)."
        )
    return text


# --- numbers and evidence ------------------------------------------------------------


def _metrics(
    years: dict[int, Period], found: list[str], locs: dict[str, Local], changes: dict[str, Change]
) -> dict[str, Metric]:
    m = len(changes)
    out = {
        "presence_countries": Metric(
            len(found),
            None,
            None,
            "countries",
            f"countries of presence: {', '.join(found) or 'none'}",
        )
    }
    for yr, y in sorted(years.items()):
        have = [c for c in found if y.flows.get(c)]
        for cc in dict.fromkeys(y.known()[:TOP_METRICS] + have):
            s = _share(y, cc)
            out[f"country_share_{cc}_{yr}"] = Metric(
                s.value, s.low, s.high, "share", f"share of counterpart flows; {SHARE_METHOD}"
            )
    last = years[max(years)] if years else None
    for cc in found:
        loc = locs[cc]
        basis = "local counterparts" if _local_basis(loc) else "share rise with local counterparts"
        if last is not None and last.flows.get(cc):
            s = _share(last, cc)
            out[f"presence_{cc}"] = Metric(
                s.value, s.low, s.high, "share",
                f"country of presence ({basis}): its share of counterpart flows in "
                f"{last.label}; {SHARE_METHOD}",
            )  # fmt: skip
        if loc.share is not None:
            out[f"local_share_{cc}"] = Metric(
                loc.share.value, loc.low, loc.high, "share", LOCAL_METHOD.format(m=m)
            )
        if n := loc.sites:
            out[f"education_sites_{cc}"] = Metric(
                n, None, None, "sites",
                "distinct server/DNS names classified education (addresses when unnamed)",
            )  # fmt: skip
    for cc, c in changes.items():
        if cc in found or c.rose:
            out[f"share_change_{cc}"] = Metric(
                c.diff, c.diff_low, c.diff_high, "share", CHANGE_METHOD.format(m=m)
            )
            out[f"share_ratio_{cc}"] = Metric(
                c.ratio, c.ratio_low, c.ratio_high, "×", RATIO_METHOD.format(m=m)
            )
    return out


def _ts(t: datetime) -> str:
    return f"TIMESTAMP '{t.replace(tzinfo=None).isoformat(sep=' ')}'"


def _samples(
    scope: Scope, found: list[str], locs: dict[str, Local], domestic: set[int]
) -> tuple[SampleFlow, ...]:
    """The first local counterpart flow of each leading country of presence (one query)."""
    firsts = [(cc, locs[cc].first_ts) for cc in found[:SAMPLED]]
    ors = [f"(remote_country = '{cc}' AND ts_utc = {_ts(t)})" for cc, t in firsts if t]
    if not ors:
        return ()
    where = f"({' OR '.join(ors)}) AND {local_sql(domestic)}"
    return sample_flows(
        scope, "presence: first local counterpart flow per country", where, 2 * len(ors)
    )


def _evidence(
    years: dict[int, Period],
    found: list[str],
    locs: dict[str, Local],
    changes: dict[str, Change],
    w: Windows,
) -> tuple[Table, ...]:
    def local_cell(loc: Local | None) -> str:
        if loc is None or loc.share is None:
            return "—"
        return f"{pct(loc.share.value, 1)} ({pct(loc.low, 1)}–{pct(loc.high, 1)})"

    def change_cell(c: Change | None) -> str:
        if c is None:
            return "—"
        return f"{c.diff * 100:+.2f} ({c.diff_low * 100:+.2f} to {c.diff_high * 100:+.2f})"

    presence = [
        (cc, "local counterparts" if _local_basis(loc) else "share rise", local_cell(loc),
         "—" if c is None else f"{pct(c.base.value, 1)} → {pct(c.comp.value, 1)}",
         change_cell(c), num(loc.flows), loc.networks, loc.addrs, loc.hosts, loc.days,
         ", ".join(k for k, _ in loc.kinds()[:4]), _first_day(loc))
        for cc in found
        for loc, c in [(locs[cc], changes.get(cc))]
    ]  # fmt: skip
    anomaly = [
        (c.country, pct(c.base.value, 2), pct(c.comp.value, 2), change_cell(c),
         _ratio_cell(c),
         _group(c, found), local_cell(locs.get(c.country)))
        for c in sorted(changes.values(), key=lambda c: (-c.comp.value, c.country))
    ]  # fmt: skip
    kinds = [
        (cc, g.kind, org_kind(g.org), "—" if g.asn is None else f"AS{g.asn}", g.org, g.category,
         num(g.flows), g.addrs, g.hosts,
         g.first_name or "" if g.names < 2 else f"{g.first_name} … {g.last_name} ({g.names})")
        for cc in sorted(locs, key=lambda k: -locs[k].flows)
        if cc in found or locs[cc].flows >= MIN_LOCAL_FLOWS
        for g in locs[cc].groups
    ]  # fmt: skip
    shares = []
    for yr, y in sorted(years.items()):
        ranked = y.ranked()
        keep = set(ranked[:TOP_TABLE]) | set(found)
        for cc in ranked:
            f = y.flows[cc]
            if cc in keep:
                s = _share(y, cc)
                iv = f"{pct(s.low, 1)}–{pct(s.high, 1)}"
                shares.append((yr, cc, num(f), pct(s.value, 1), iv, "yes" if cc in found else ""))
    family = "Intervals: family-wise (Bonferroni) 95% over the countries tested."
    return (
        Table(
            "Countries of presence",
            (
                "country",
                "basis",
                "local share (interval)",
                f"share {w.base_label} → {w.comp_label}",
                "change, points (interval)",
                "local flows",
                "local networks",
                "local addresses",
                "inside hosts",
                "days with local flows",
                "kinds of local counterparts",
                "first local flow",
            ),
            tuple(presence),
            "Local share: local counterpart flows over the country's place-informative outbound "
            f"flows (no VPN, Tor, crypto or P2P). {family}",
        ),
        Table(
            f"Country shares: baseline {w.base_label} ({w.how}) vs {w.comp_label}",
            (
                "country",
                "baseline share",
                "comparison share",
                "change, points (interval)",
                "ratio (interval)",
                "assessment",
                "local share (interval)",
            ),
            tuple(anomaly),
            "Shares of counterpart flows without the profile's access and transit providers; "
            f"'rose'/'fell': the change's interval excludes 0. {family}",
        ),
        Table(
            "Kinds of local counterparts per country",
            (
                "country",
                "kind (service)",
                "kind (network name)",
                "AS",
                "organisation",
                "category",
                "flows",
                "addresses",
                "inside hosts",
                "names",
            ),
            tuple(kinds),
            "Only domestic networks (≥ 95% of their counterpart flows in one country) count; the "
            "network kind is read from the organisation's registered name (descriptive only).",
        ),
        Table(
            "Counterpart country shares per year",
            ("year", "country", "flows", "share", "95% interval", "country of presence"),
            tuple(shares),
            "The shares of counterparts.overview (access and transit providers left out).",
        ),
    )


def _ratio_cell(c: Change) -> str:
    if c.ratio is None:
        return "—"
    return f"×{c.ratio:.2f} ({num(c.ratio_low, 2)}–{num(c.ratio_high, 2)})"


def _first_day(loc: Local) -> str:
    t = loc.first_ts
    return "" if t is None else t.date().isoformat()


GROUP_COLORS = {
    "country of presence": "#1f4e79",
    "rose": "#f79646",
    "fell": "#4bacc6",
    "no significant change": "#9e9e9e",
}


def _group(c: Change, found: list[str]) -> str:
    if c.country in found:
        return "country of presence"
    return "rose" if c.rose else "fell" if c.fell else "no significant change"


def _charts(
    out: AnalysisOutput,
    years: dict[int, Period],
    found: list[str],
    locs: dict[str, Local],
    changes: dict[str, Change],
    w: Windows,
) -> None:
    overall: dict[str, float] = {}
    for y in years.values():
        for cc in y.known():
            overall[cc] = overall.get(cc, 0.0) + y.flows[cc]
    others = [cc for cc in sorted(overall, key=lambda k: -overall[k]) if cc not in found]
    ccs = (found + others)[: max(CHART_COUNTRIES, len(found))]
    series = {}
    for yr in sorted(years):
        ss = [_share(years[yr], cc) for cc in ccs]
        series[str(yr)] = ([s.value for s in ss], [s.low for s in ss], [s.high for s in ss])
    out.charts["presence.countries"] = {
        "id": "presence.countries",
        "kind": "bars_with_intervals",
        "title": "Counterpart country shares per year (countries of presence first)",
        "caption": "Share of counterpart flows with 95% intervals, the profile's access and "
        f"transit providers left out. Countries of presence: {', '.join(found) or 'none'}.",
        "data": {"categories": ccs, "series": series,
                 "y_title": "share of counterpart flows", "percent": True},
    }  # fmt: skip
    # flagged countries (presence, rose, fell) first, then the largest others
    shown = sorted(
        changes.values(),
        key=lambda c: (_group(c, found) == "no significant change", -c.comp.value),
    )[: CHART_COUNTRIES + 4]
    out.charts["presence.anomaly"] = {
        "id": "presence.anomaly",
        "kind": "interval_dots",
        "title": f"Change in country share, {w.comp_label} vs baseline {w.base_label}",
        "caption": "Share points with family-wise 95% intervals; an interval right of 0 is a "
        "significant rise. Countries of presence need local counterparts too.",
        "data": {
            "labels": [c.country for c in shown],
            "values": [c.diff for c in shown],
            "lows": [c.diff_low for c in shown],
            "highs": [c.diff_high for c in shown],
            "groups": [_group(c, found) for c in shown],
            "x_title": "change in share of counterpart flows",
            "percent": True,
            "colors": GROUP_COLORS,
        },
    }
    with_local = [cc for cc in ccs if cc in locs and locs[cc].share is not None]
    out.charts["presence.local"] = {
        "id": "presence.local",
        "kind": "bars_with_intervals",
        "title": "Local share of each country's place-informative traffic",
        "caption": "Universities, government, news and own-domain sites on domestic networks, "
        f"family-wise 95% intervals; the local basis needs a lower limit ≥ {pct(LOCAL_FLOOR)}.",
        "data": {
            "categories": with_local,
            "series": {
                "local share": (
                    [locs[cc].value for cc in with_local],
                    [locs[cc].low for cc in with_local],
                    [locs[cc].high for cc in with_local],
                )
            },
            "y_title": "local share",
            "percent": True,
        },
    }


ALTERNATIVES = (
    "VPN exits and proxies: someone elsewhere reaching local sites through an exit in the "
    "country looks like presence there; known tunnels are left out of the local share, an "
    "unrecognised VPN is not.",
    "CDNs and anycast: a local site served from a global network is not counted as local "
    "(domestic networks only), but a CDN node registered to a local company can be.",
    "Foreign researchers and officials: visits to a country's universities, ministries or "
    "news from inside the territory (research, diplomacy, media monitoring) need nobody "
    "abroad; a steady share over years fits that as well as residents abroad.",
    "Geolocation error: addresses placed in the wrong country (stale snapshots, reassigned "
    "blocks, registration vs use) move traffic between countries.",
    "A rise in a country's share may be a national service becoming popular (e.g. a switch "
    "to Chinese platforms) rather than people moving there.",
)
