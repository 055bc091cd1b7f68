"""Ground truth measured from the generated rows (never copied from scenario parameters).

Definitions follow the report's: a flow counts when at least one end is inside
the watched prefixes; volume uses the UTC day of ``ts_start`` (the store's
``day``); patterns use local time in Asia/Pyongyang with its zone history.
Each month is summarised on its own (:class:`MonthStats`, mergeable), so
months can be generated in parallel and nothing holds all rows at once.
"""

from __future__ import annotations

import ipaddress
from datetime import date, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt

from rogueflow.demo import scenario as sc
from rogueflow.demo.routing import carrier_weights
from rogueflow.demo.simulate import DAY_US, HOUR_US, REJ, S0, SF, Flows, Plan, to_local

EPOCH = date(1970, 1, 1)
SERVER_PORTS = {25: "smtp", 587: "smtp-submission", 21: "ftp", 53: "dns"}


def _range(cidr: str) -> tuple[int, int]:
    n = ipaddress.IPv4Network(cidr)
    return int(n.network_address), int(n.broadcast_address)


KP_RANGES = tuple(_range(c) for c in sc.KP_PREFIXES)
_NET_LO = np.array([_range(n.cidr)[0] for n in sc.NETS], dtype=np.int64)
_NET_HI = np.array([_range(n.cidr)[1] for n in sc.NETS], dtype=np.int64)
_NET_ORDER = np.argsort(_NET_LO)


def prefix_index(a: npt.NDArray[np.uint32]) -> npt.NDArray[np.int64]:
    """Index into KP_PREFIXES per address, -1 outside the watched space."""
    out = np.full(len(a), -1, dtype=np.int64)
    for i, (lo, hi) in enumerate(KP_RANGES):
        out[(a >= lo) & (a <= hi)] = i
    return out


def net_index(a: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Index into scenario.NETS per address, -1 when no counterpart net holds it."""
    lo = _NET_LO[_NET_ORDER]
    pos = np.searchsorted(lo, a, side="right") - 1
    ok = pos >= 0
    idx = np.where(ok, _NET_ORDER[np.clip(pos, 0, None)], -1)
    inside = ok & (a <= _NET_HI[np.clip(idx, 0, None)])
    return np.where(inside, idx, -1)


class MonthStats:
    """Additive summaries of one or more months of flows.

    Day-indexed arrays share one axis: the scenario's local days plus one day either
    side, used for local days and UTC days alike.
    """

    def __init__(self, n_days: int, n_streams: int) -> None:
        d, s = n_days + 2, n_streams
        self.all_flows = 0
        self.utc_flows = np.zeros(d, np.int64)
        self.utc_bytes = np.zeros(d, np.int64)
        self.utc_weekday = np.zeros(d, np.int64)
        self.utc_bh = np.zeros(d, np.int64)
        self.stream_day = np.zeros((s, d), np.int64)
        self.stream_bytes = np.zeros((s, d), np.int64)
        self.stream_bh = np.zeros((s, d), np.int64)
        self.net_year = np.zeros((3, len(sc.NETS)), np.int64)
        self.carried: dict[tuple[str, int], float] = {}  # (UTC quarter or year, AS) -> bytes
        self.hosts_utc_year: dict[int, set[int]] = {}
        self.servers: dict[tuple[int, int], int] = {}
        self.probes: dict[tuple[int, int], int] = {}
        self.coin_hosts: dict[tuple[str, str], set[int]] = {}

    def merge(self, o: MonthStats) -> None:
        self.all_flows += o.all_flows
        for name in _ARRAYS:
            getattr(self, name).__iadd__(getattr(o, name))
        for k, v in o.carried.items():
            self.carried[k] = self.carried.get(k, 0.0) + v
        for y, hs in o.hosts_utc_year.items():
            self.hosts_utc_year.setdefault(y, set()).update(hs)
        for k2, t in o.servers.items():
            self.servers[k2] = min(self.servers.get(k2, t), t)
        for k3, c in o.probes.items():
            self.probes[k3] = self.probes.get(k3, 0) + c
        for k4, hs in o.coin_hosts.items():
            self.coin_hosts.setdefault(k4, set()).update(hs)


_ARRAYS = (
    "utc_flows",
    "utc_bytes",
    "utc_weekday",
    "utc_bh",
    "stream_day",
    "stream_bytes",
    "stream_bh",
    "net_year",
)


def _day0() -> int:
    return (sc.START - EPOCH).days - 1  # axis index 0


def summarise(plan: Plan, f: Flows) -> MonthStats:
    """Summaries of one month of generated rows."""
    st = MonthStats(plan.grid.shape[1], len(plan.streams))
    st.all_flows = len(f)
    pi_o, pi_r = prefix_index(f.orig), prefix_index(f.resp)
    kp = (pi_o >= 0) | (pi_r >= 0)
    ts = f.ts_us[kp]
    local = to_local(ts, plan.offsets)
    ldays = local // DAY_US
    udays = ts // DAY_US
    b = f.orig_ip_bytes[kp] + f.resp_ip_bytes[kp]
    s = f.stream[kp].astype(np.int64)
    base, width = _day0(), plan.grid.shape[1] + 2
    li, ui = ldays - base, udays - base
    st.utc_flows += np.bincount(ui, minlength=width)
    st.utc_bytes += np.bincount(ui, weights=b, minlength=width).astype(np.int64)
    key = s * width + li
    size = len(plan.streams) * width
    st.stream_day += np.bincount(key, minlength=size).reshape(-1, width)
    st.stream_bytes += (
        np.bincount(key, weights=b, minlength=size).astype(np.int64).reshape(-1, width)
    )
    hour = (local % DAY_US) // HOUR_US
    wd = (ldays + 3) % 7
    bh = (wd < 5) & (hour >= 9) & (hour < 18)
    st.stream_bh += np.bincount(key[bh], minlength=size).reshape(-1, width)
    st.utc_weekday += np.bincount(ui[wd < 5], minlength=width)
    st.utc_bh += np.bincount(ui[bh], minlength=width)
    inside = np.where(pi_o[kp] >= 0, f.orig[kp], f.resp[kp])
    other = np.where(pi_o[kp] >= 0, f.resp[kp], f.orig[kp]).astype(np.int64)
    years = ldays.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    ni = net_index(other)
    ok = ni >= 0
    np.add.at(st.net_year, (years[ok] - 2017, ni[ok]), 1)
    uyears = udays.astype("datetime64[D]").astype("datetime64[Y]").astype(np.int64) + 1970
    for y in np.unique(uyears):
        st.hosts_utc_year[int(y)] = set(np.unique(inside[uyears == y]).tolist())
    # bytes per carrier: the flow's /24 split over its upstreams by the demo's BGP view
    uday = udays.astype("datetime64[D]")
    quarter = np.char.add(
        np.char.add(uday.astype("datetime64[Y]").astype(str), "-Q"),
        ((uday.astype("datetime64[M]").astype(np.int64) % 12) // 3 + 1).astype(str),
    )
    year = uday.astype("datetime64[Y]").astype(str)
    for asn, w in carrier_weights(inside.astype(np.uint32), ts, plan.scenario).items():
        for labels in (quarter, year):
            for label in np.unique(labels):
                sel = labels == label
                key = (str(label), int(asn))
                st.carried[key] = st.carried.get(key, 0.0) + float((b[sel] * w[sel]).sum())
    state = f.state[kp]
    inbound = (pi_r[kp] >= 0) & (pi_o[kp] < 0)
    resp_p = f.resp_p[kp]
    srv = inbound & (state == SF) & np.isin(resp_p, list(SERVER_PORTS))
    for ip, port, t in zip(inside[srv], resp_p[srv], ts[srv], strict=True):
        k = (int(ip), int(port))
        st.servers[k] = min(st.servers.get(k, int(t)), int(t))
    att = inbound & ((state == S0) | (state == REJ))
    src, day = f.orig[kp][att], ldays[att]
    if len(src):
        pairs, counts = np.unique(np.stack([src.astype(np.int64), day]), axis=1, return_counts=True)
        for (a, d), c in zip(pairs.T.tolist(), counts.tolist(), strict=True):
            st.probes[(a, d)] = st.probes.get((a, d), 0) + c
    coins = np.array([x.coin for x in plan.streams], dtype=object)[s]
    for coin in ("BTC", "XMR", "LTC"):
        for wname, (lo, hi) in (("baseline", sc.XMR_BASELINE), ("after", sc.XMR_AFTER)):
            sel = (coins == coin) & (ldays >= (lo - EPOCH).days) & (ldays <= (hi - EPOCH).days)
            if sel.any():
                st.coin_hosts.setdefault((coin, wname), set()).update(
                    np.unique(inside[sel]).tolist()
                )
    return st


def _d(i: int) -> date:
    return EPOCH + timedelta(days=i + _day0())


def _ip(a: int) -> str:
    return str(ipaddress.IPv4Address(a))


def finalise(plan: Plan, st: MonthStats) -> dict[str, Any]:
    """The ground_truth.json document."""
    width = plan.grid.shape[1] + 2
    dates = [_d(i) for i in range(width)]
    year_of = np.array([d.year for d in dates])
    ordinal = np.array([(d - EPOCH).days for d in dates])
    weekday = (ordinal + 3) % 7
    streams = plan.streams
    kp_streams = np.array([not x.noise for x in streams])
    local_flows = st.stream_day[kp_streams].sum(axis=0)
    local_bytes = st.stream_bytes[kp_streams].sum(axis=0)
    out: dict[str, Any] = {
        "definitions": {
            "activity": "flows with at least one end in " + ", ".join(sc.KP_PREFIXES),
            "volume_day": "UTC date of ts_start (the store's day column); *_local use local dates",
            "pattern_year": "UTC calendar year of ts_start; weekday and hour in local time "
            "(*_local_year: local calendar year)",
            "local_time": f"ts_start in {sc.ZONE} with its zone history (UTC+08:30 2015-08-15.."
            "2018-05-04, else UTC+09:00)",
            "business_hours": "Mon-Fri, local hour in [09:00, 18:00)",
            "bytes": "orig_ip_bytes + resp_ip_bytes",
        },
        "scenario": plan.scenario,
        "seed": plan.seed,
        "flows_written": st.all_flows,
        "collection_gaps_utc": sorted((EPOCH + timedelta(days=g)).isoformat() for g in plan.gaps),
        "calibration_2019_step": round(plan.calibration, 4),
    }
    years: dict[str, Any] = {}
    for y in (2017, 2018, 2019):
        sel = year_of == y
        flows = int(st.utc_flows[sel].sum())
        days = int((st.utc_flows[sel] > 0).sum())
        lflows = int(local_flows[sel].sum())
        ldays = int((local_flows[sel] > 0).sum())
        wdays = sel & (weekday < 5)
        bh = int(st.stream_bh[kp_streams][:, sel].sum())
        # the report's pattern years are UTC calendar years of ts_start, weekday/hour local
        years[str(y)] = {
            "flows": flows,
            "bytes": int(st.utc_bytes[sel].sum()),
            "days_with_data": days,
            "flows_per_day": flows / days if days else 0.0,
            "active_hosts": len(st.hosts_utc_year.get(y, set())),
            "flows_local": lflows,
            "days_with_data_local": ldays,
            "flows_per_day_local": lflows / ldays if ldays else 0.0,
            "weekday_share": float(st.utc_weekday[sel].sum() / max(flows, 1)),
            "business_hours_share": float(st.utc_bh[sel].sum() / max(flows, 1)),
            "weekday_share_local_year": float(local_flows[wdays].sum() / max(lflows, 1)),
            "business_hours_share_local_year": bh / max(lflows, 1),
        }
    out["years"] = years
    out["growth_ratio"] = years["2019"]["flows_per_day"] / years["2017"]["flows_per_day"]
    out["growth_ratio_local"] = (
        years["2019"]["flows_per_day_local"] / years["2017"]["flows_per_day_local"]
    )
    out["growth_ratio_bytes"] = (years["2019"]["bytes"] / years["2019"]["days_with_data"]) / (
        years["2017"]["bytes"] / years["2017"]["days_with_data"]
    )
    out.update(_categories(plan, st, year_of, weekday, local_flows, local_bytes))
    out.update(_crypto(plan, st, dates, local_flows))
    out["social"] = _social(plan, st, dates)
    out["obfuscation"] = _obfuscation(plan, st, dates, local_flows)
    out["new_servers"] = [
        {
            "address": _ip(a),
            "port": p,
            "service": SERVER_PORTS[p],
            "first_seen_utc": np.datetime64(t, "us").astype(str) + "Z",
            "first_seen_local_date": (
                EPOCH + timedelta(days=int(to_local(np.array([t]), plan.offsets)[0] // DAY_US))
            ).isoformat(),
        }
        for (a, p), t in sorted(st.servers.items(), key=lambda kv: kv[1])
    ]
    out["countries"] = _countries(st, dates, year_of)
    out["probing"] = _probing(st)
    out["upstream_share"] = _upstreams(st)
    out["events"] = _events(st, dates)
    return out


def _categories(
    plan: Plan, st: MonthStats, year_of: Any, weekday: Any, local_flows: Any, local_bytes: Any
) -> dict[str, Any]:
    cats = sorted({x.category for x in plan.streams if not x.noise})
    cat_of = np.array([x.category for x in plan.streams])
    r1 = _window(sc.OBF_PERIODS[0][1], sc.OBF_PERIODS[0][2])
    res: dict[str, Any] = {}
    for label, sel in (
        ("2017", year_of == 2017),
        ("2018", year_of == 2018),
        ("2019", year_of == 2019),
        ("2017-04..2017-07", r1),
    ):
        tot_f, tot_b = local_flows[sel].sum(), local_bytes[sel].sum()
        entry: dict[str, Any] = {}
        for c in cats:
            rows = cat_of == c
            f = st.stream_day[rows][:, sel].sum()
            b = st.stream_bytes[rows][:, sel].sum()
            we = st.stream_day[rows][:, sel & (weekday >= 5)].sum()
            entry[c] = {
                "flow_share": float(f / tot_f),
                "byte_share": float(b / tot_b),
                "weekend_share": float(we / f) if f else None,
            }
        gs = ("gaming", "streaming")
        entry["gaming+streaming"] = {
            "flow_share": sum(entry[c]["flow_share"] for c in gs),
            "byte_share": sum(entry[c]["byte_share"] for c in gs),
        }
        res[label] = entry
    return {"categories": res}


def _window(lo: date, hi: date) -> Any:
    width = len(range((sc.END - sc.START).days + 1)) + 2
    idx = np.arange(width) + _day0()
    return (idx >= (lo - EPOCH).days) & (idx <= (hi - EPOCH).days)


def _series(plan: Plan, st: MonthStats, pred: Any) -> Any:
    rows = np.array([bool(pred(x)) for x in plan.streams])
    return st.stream_day[rows].sum(axis=0)


def _crypto(plan: Plan, st: MonthStats, dates: list[date], local_flows: Any) -> dict[str, Any]:
    btc = _series(plan, st, lambda x: x.coin == "BTC")
    first = int(np.flatnonzero(btc)[0]) if btc.any() else None
    onset = dates[first] if first is not None else None
    xmr = _series(plan, st, lambda x: x.coin == "XMR")
    has = local_flows > 0

    def mean(lo: date, hi: date) -> float:
        w = _window(lo, hi) & has
        return float(xmr[w].sum() / max(w.sum(), 1))

    base, after = mean(*sc.XMR_BASELINE), mean(*sc.XMR_AFTER)
    ltc = _series(plan, st, lambda x: x.coin == "LTC")
    return {
        "bitcoin": {
            "onset_local_date": onset.isoformat() if onset else None,
            "flows_before_onset": int(btc[:first].sum()) if first is not None else 0,
            "mean_daily_flows_first_30_days": float(btc[first : first + 30].mean())
            if first is not None
            else 0.0,
            "hosts": sorted(_ip(h) for h in st.coin_hosts.get(("BTC", "after"), set())),
        },
        "monero": {
            "baseline_window": [d.isoformat() for d in sc.XMR_BASELINE],
            "after_window": [d.isoformat() for d in sc.XMR_AFTER],
            "baseline_mean_daily_flows": base,
            "after_mean_daily_flows": after,
            "multiplier": after / base if base else None,
            "fronting_ips_after": len(st.coin_hosts.get(("XMR", "after"), set())),
            "fronting_ips_baseline": len(st.coin_hosts.get(("XMR", "baseline"), set())),
            "fronting_ip": sorted(_ip(h) for h in st.coin_hosts.get(("XMR", "after"), set())),
        },
        "litecoin": {"flows": int(ltc.sum())},
    }


def _social(plan: Plan, st: MonthStats, dates: list[date]) -> dict[str, Any]:
    fb = _series(plan, st, lambda x: x.service == "facebook")
    peers = ("baidu", "alibaba", "tencent")
    cn = _series(plan, st, lambda x: x.service in peers)
    k = 14
    fb14 = np.convolve(fb, np.ones(k), "full")[: len(fb)]
    cn14 = np.convolve(cn, np.ones(k), "full")[: len(cn)]
    above = cn14 > fb14
    # the crossover: first day from which the Chinese peers stay ahead to the end
    tail = np.flatnonzero(~above)
    cross = int(tail[-1]) + 1 if len(tail) else 0
    li = _series(plan, st, lambda x: x.service == "linkedin")

    def ratio(lo: date, hi: date) -> float:
        w = _window(lo, hi)
        return float(fb[w].sum() / max(cn[w].sum(), 1))

    return {
        "chinese_peers": list(peers),
        "crossover_local_date": dates[cross].isoformat() if cross < len(dates) else None,
        "crossover_rule": "first local day from which the 14-day trailing flow count of the "
        "Chinese peers exceeds Facebook's on every later day",
        "facebook_to_chinese_2017-04..2017-07": ratio(date(2017, 4, 1), date(2017, 7, 31)),
        "facebook_to_chinese_2017-12..2018-03": ratio(date(2017, 12, 1), date(2018, 3, 31)),
        "linkedin_flows_2017": int(li[_window(date(2017, 1, 1), date(2017, 12, 31))].sum()),
        "linkedin_flows_2019": int(li[_window(date(2019, 1, 1), date(2019, 11, 30))].sum()),
    }


def _obfuscation(plan: Plan, st: MonthStats, dates: list[date], local_flows: Any) -> dict[str, Any]:
    kinds = {
        "vpn": ("openvpn", "wireguard", "ipsec"),
        "tor": ("tor",),
        "dns_tunnel": ("dns-tunnel",),
    }
    series = {k: _series(plan, st, lambda x, v=v: x.service in v) for k, v in kinds.items()}
    periods = {}
    for label, lo, hi in sc.OBF_PERIODS:
        w = _window(lo, hi)
        tot = local_flows[w].sum()
        entry = {k: float(s[w].sum() / tot) for k, s in series.items()}
        entry["share"] = sum(entry.values())
        periods[label] = entry
    first = sc.OBF_PERIODS[0][0]
    tun = series["dns_tunnel"]
    return {
        "periods": periods,
        "peak_over_2017": periods[sc.OBF_PERIODS[1][0]]["share"] / periods[first]["share"],
        "dns_tunnel_first_local_date": dates[int(np.flatnonzero(tun)[0])].isoformat()
        if tun.any()
        else None,
        "dns_tunnel_domain": sc.TUNNEL_DOMAIN,
        "dns_tunnel_endpoint": sc.TUNNEL_ENDPOINT,
    }


def _countries(st: MonthStats, dates: list[date], year_of: Any) -> dict[str, Any]:
    access = np.array([n.kind == "access" for n in sc.NETS])
    country = np.array([n.country for n in sc.NETS])
    res: dict[str, Any] = {"excluded": [n.cidr for n in sc.NETS if n.kind == "access"]}
    for label, rows in (("2017", [0]), ("2018", [1]), ("2019", [2]), ("all", [0, 1, 2])):
        counts = st.net_year[rows].sum(axis=0) * ~access
        tot = counts.sum()
        shares: dict[str, float] = {}
        for c in sorted(set(country)):
            v = counts[country == c].sum()
            if v:
                shares[str(c)] = float(v / tot)
        res[label] = dict(sorted(shares.items(), key=lambda kv: -kv[1]))
    return res


def _probing(st: MonthStats) -> list[dict[str, Any]]:
    by_src: dict[int, list[tuple[int, int]]] = {}
    for (a, d), c in st.probes.items():
        by_src.setdefault(a, []).append((d, c))
    out = []
    for a, days in sorted(by_src.items()):
        busy = sorted(d for d, c in days if c >= 20)  # a burst: 20+ failed attempts a day
        if len(busy) >= 2:
            out.append(
                {
                    "source": _ip(a),
                    "days_local": [(EPOCH + timedelta(days=d)).isoformat() for d in busy],
                    "attempts": sum(c for d, c in days if d in busy),
                }
            )
    return out


def _upstreams(st: MonthStats) -> dict[str, dict[str, float]]:
    """Per UTC quarter and year: each carrier's share of the routed bytes."""
    totals: dict[str, float] = {}
    for (label, _asn), v in st.carried.items():
        totals[label] = totals.get(label, 0.0) + v
    out: dict[str, dict[str, float]] = {}
    for (label, asn), v in sorted(st.carried.items()):
        if totals[label] > 0:
            out.setdefault(label, {})[f"AS{asn}"] = v / totals[label]
    return out


def _events(st: MonthStats, dates: list[date]) -> list[dict[str, Any]]:
    daily = st.utc_flows.astype(np.float64)
    out = []
    for d, label in sc.EVENTS:
        i = dates.index(d)
        pre = daily[i - 3 : i]
        base = np.concatenate([daily[i - 33 : i - 3], daily[i + 1 : i + 31]])
        base = base[base > 0]
        pre = pre[pre > 0]
        z = float((pre.mean() - base.mean()) / base.std()) if len(pre) and base.std() else 0.0
        out.append({"date": d.isoformat(), "label": label, "pre_event_z": z})
    return out
