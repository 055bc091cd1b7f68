"""Service mix, the Western→Chinese shift and obfuscation (``services.*``, ``opsec.*``):
the demo's ground truth, the control scenario, and small synthetic stores."""

from __future__ import annotations

import calendar
import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rogueflow.analyze import load_profile, open_scope
from rogueflow.analyze.opsec import Obfuscation
from rogueflow.analyze.services import ServiceMix
from rogueflow.analyze.social import crossover
from rogueflow.findings import Finding, document, dumps
from rogueflow.ops import ingest_paths
from rogueflow.report.charts import render
from rogueflow.workspace import Workspace
from tests.conftest import DemoRun
from tests.flowrows import write_rows

Run = tuple[dict[str, Finding], dict[str, dict[str, Any]]]
Periods = list[tuple[str, date, date]]


def _runs(ws: Workspace, *groups: tuple[Any, ...]) -> list[Run]:
    """Each group of analyses run over one scope (opened once: it is the slow part)."""
    scope = open_scope(ws, load_profile("kp", None))
    try:
        runs = []
        for analyses in groups:
            findings: dict[str, Finding] = {}
            charts: dict[str, dict[str, Any]] = {}
            for a in analyses:
                out = a.run(scope)
                findings.update({f.id: f for f in out.findings})
                charts.update(out.charts)
            runs.append((findings, charts))
    finally:
        scope.close()
    return runs


def _run(ws: Workspace, *analyses: Any) -> Run:
    return _runs(ws, analyses)[0]


def _window(label: str) -> tuple[str, date, date]:
    """'2017-04..2017-07' -> first and last day of those months (the truth's windows)."""
    a, b = label.split("..")
    y, m = (int(x) for x in b.split("-"))
    return label, date.fromisoformat(a + "-01"), date(y, m, calendar.monthrange(y, m)[1])


def _close(got: float | None, want: float, rel: float = 0.10) -> bool:
    return got is not None and abs(got - want) <= rel * abs(want)


def _asserted(f: Finding) -> bool:
    return bool(f.detected) and f.confidence.level in ("moderate", "high")


# --- the reference demo ------------------------------------------------------------------


@pytest.fixture(scope="module")
def social_windows(demo_reference: DemoRun) -> Periods:
    keys = [k for k in demo_reference.truth["social"] if k.startswith("facebook_to_chinese_")]
    return [_window(k.removeprefix("facebook_to_chinese_")) for k in sorted(keys)]


@pytest.fixture(scope="module")
def obf_windows(demo_reference: DemoRun) -> Periods:
    return [_window(k) for k in demo_reference.truth["obfuscation"]["periods"]]


@pytest.fixture(scope="module")
def reference(demo_reference: DemoRun, social_windows: Periods, obf_windows: Periods) -> list[Run]:
    """Periods chosen from the data, and the truth's windows given explicitly."""
    return _runs(
        demo_reference.ws,
        (ServiceMix(), Obfuscation()),
        (ServiceMix(periods=social_windows), Obfuscation(periods=obf_windows)),
    )


@pytest.fixture(scope="module")
def auto(reference: list[Run]) -> Run:
    return reference[0]


@pytest.fixture(scope="module")
def given(reference: list[Run]) -> Run:
    return reference[1]


@pytest.fixture(scope="module")
def with_relays(demo_reference: DemoRun, obf_windows: Periods) -> Run:
    """The reference demo with the truth's windows: the demo loads its world's Tor relay
    list before ingesting (as an analyst would), so Tor on port 443 is classified."""
    return _run(demo_reference.ws, Obfuscation(periods=obf_windows))


def test_social_ratios_with_the_truth_windows(given: Run, demo_reference: DemoRun) -> None:
    f = given[0]["services.social_shift"]
    truth = demo_reference.truth["social"]
    for key, want in truth.items():
        if key.startswith("facebook_to_chinese_"):
            got = f.metrics[key].value
            assert _close(got, want), (key, got, want)
            m = f.metrics[key]
            assert m.low is not None and m.high is not None and m.low < want < m.high
    assert f.detected and f.confidence.level in ("moderate", "high")


def test_social_crossover_date(auto: Run, given: Run, demo_reference: DemoRun) -> None:
    want = date.fromisoformat(demo_reference.truth["social"]["crossover_local_date"])
    for run in (auto, given):
        f = run[0]["services.social_shift"]
        got = date.fromisoformat(f.period["crossover"])
        assert abs((got - want).days) <= 1, (got, want)
        # the category comparison has its own date, later (weibo and QQ rise slowly)
        assert f.period["crossover_category"] >= f.period["crossover"]
        lo, hi = (
            f.metrics["crossover_named_offset_days"].low,
            f.metrics["crossover_named_offset_days"].high,
        )
        assert lo is not None and hi is not None and lo <= 0 <= hi
    f = auto[0]["services.social_shift"]
    # default periods: calendar years, plus before/after the crossover
    assert (
        f.metrics["facebook_to_chinese_2017"].value
        > 2
        > 0.1
        > f.metrics["facebook_to_chinese_2019"].value
    )
    assert "facebook_to_chinese_after_crossover" in f.metrics


def test_mix_shares_per_year(auto: Run, demo_reference: DemoRun) -> None:
    f = auto[0]["services.mix"]
    truth = demo_reference.truth["categories"]
    # categories whose meaning the taxonomy and the demo share
    for year in ("2017", "2018", "2019"):
        for c in ("streaming", "filesharing", "news", "shopping"):
            got = f.metrics[f"share_{c}_{year}"].value
            assert _close(got, truth[year][c]["flow_share"]), (year, c, got)
        unc = f.metrics[f"unclassified_{year}"]
        raw = f.metrics[f"unclassified_before_attribution_{year}"]
        assert unc.value is not None and raw.value is not None
        assert 0 < unc.value <= raw.value < 0.5
        total = sum(
            m.value
            for k, m in f.metrics.items()
            if k.startswith("share_") and k.endswith(year)
            if "gaming+streaming" not in k and m.value is not None
        )
        assert total == pytest.approx(1.0)
    assert f.detected is None
    series = auto[1]["services.mix"]["data"]["series"]
    assert "unclassified" in series and series  # the unclassified share is drawn


def test_vpn_and_tunnel_shares_with_the_truth_windows(given: Run, demo_reference: DemoRun) -> None:
    f = given[0]["opsec.share"]
    truth = demo_reference.truth["obfuscation"]["periods"]
    for label, t in truth.items():
        assert _close(f.metrics[f"vpn_{label}"].value, t["vpn"]), label
        if t["dns_tunnel"]:
            assert _close(f.metrics[f"dns_tunnel_{label}"].value, t["dns_tunnel"]), label
        else:
            assert f.metrics[f"dns_tunnel_{label}"].value == 0
        assert 0.5 < (f.metrics[f"tls_known_{label}"].value or 0) < 1


def test_obfuscation_with_a_relay_list(with_relays: Run, demo_reference: DemoRun) -> None:
    f = with_relays[0]["opsec.share"]
    truth = demo_reference.truth["obfuscation"]
    for label, t in truth["periods"].items():
        for kind in ("share", "vpn", "tor"):
            assert _close(f.metrics[f"{kind}_{label}"].value, t[kind]), (label, kind)
    assert _close(f.metrics["peak_over_first"].value, truth["peak_over_2017"])
    assert (f.metrics["last_over_peak"].high or 1) < 1  # it waned
    assert f.detected and f.confidence.level == "high"


def test_obfuscation_phases_from_the_data(auto: Run, demo_reference: DemoRun) -> None:
    f = auto[0]["opsec.share"]
    assert f.detected and f.confidence.level in ("moderate", "high")
    assert not any("no Tor relay" in r for r in f.confidence.reasons)  # the demo loads one
    rise = f.metrics["peak_over_first"]
    assert rise.value is not None and rise.value > 8 and (rise.low or 0) > 3
    peak = max(
        (k for k in f.metrics if k.startswith("share_") and ".." in k),
        key=lambda k: f.metrics[k].value or 0,
    )
    lo, hi = (date.fromisoformat(x) for x in peak.removeprefix("share_").split(".."))
    assert lo <= date(2018, 3, 31) and hi >= date(2017, 12, 1)  # overlaps the truth's peak
    assert auto[1]["opsec.share"]["kind"] == "multi_series"


def test_dns_tunnel(auto: Run, demo_reference: DemoRun) -> None:
    f = auto[0]["opsec.dns_tunnel"]
    truth = demo_reference.truth["obfuscation"]
    assert f.detected
    got = date.fromisoformat(f.period["start"])
    want = date.fromisoformat(truth["dns_tunnel_first_local_date"])
    assert abs((got - want).days) <= 1
    found = {(i.kind, i.value) for i in f.indicators}
    assert ("domain-name", truth["dns_tunnel_domain"]) in found
    assert ("ipv4-addr", truth["dns_tunnel_endpoint"]) in found
    assert any(i.role.startswith("DNS tunnel client") for i in f.indicators)
    assert f.samples and all(s.dst_port == 53 for s in f.samples)
    # only the tunnel domain is flagged among the resolver's everyday names
    assert f.metrics["tunnel_domains"].value == 1


def test_findings_serialise_and_charts_render(auto: Run) -> None:
    findings, charts = auto
    doc = json.loads(dumps(document(list(findings.values()), {})))
    assert {f["id"] for f in doc["findings"]} == {
        "services.mix",
        "services.social_shift",
        "opsec.share",
        "opsec.dns_tunnel",
    }
    for f in findings.values():
        assert f.statement.startswith("We assess with")
        assert any(q.label.startswith("category and service mix") for q in f.provenance.queries)
        for cid in f.charts:
            assert cid in charts
    for chart in charts.values():
        assert render(chart)["figure"]["data"]
    crosses = [e[1] for e in charts["services.social"]["data"]["events"]]
    assert any("Facebook" in c for c in crosses)


# --- the control scenario ----------------------------------------------------------------


def test_control_asserts_nothing(demo_control: DemoRun, obf_windows: Periods) -> None:
    runs = _runs(
        demo_control.ws, (ServiceMix(), Obfuscation()), (Obfuscation(periods=obf_windows),)
    )
    for findings, _ in runs:
        asserted = [f"{f.id}: {f.statement}" for f in findings.values() if _asserted(f)]
        assert not asserted, "\n".join(asserted)
    findings = runs[0][0]
    assert findings["services.social_shift"].detected is False
    assert "crossover" not in findings["services.social_shift"].period
    assert findings["opsec.share"].detected is False
    assert findings["opsec.dns_tunnel"].detected is False


# --- synthetic stores --------------------------------------------------------------------

DAY0 = date(2018, 1, 1)
KP, KP2 = "175.45.176.5", "175.45.176.6"
Row = tuple[date, int, str, str, int, int, str | None, str | None]


def _write(path: Path, rows: list[Row]) -> Path:
    """(day, hour UTC, src, dst, dst_port, proto, server_name, dns_query) as canonical flows."""
    return write_rows(path, rows, ("server_name", "dns_query"))


def _everyday(days: int) -> list[Row]:
    """Steady use: Facebook ahead of Baidu, a little VPN, and DNS lookups of everyday
    names, CDN names (long, many) among them."""
    rows: list[Row] = []
    for i in range(days):
        d = DAY0 + timedelta(days=i)
        for k in range(6):
            rows.append((d, 1 + k, KP, "157.240.1.35", 443, 6, "www.facebook.com", None))
        for k in range(3):
            rows.append((d, 2 + k, KP2, "220.181.38.148", 443, 6, "www.baidu.com", None))
        for k in range(8):
            rows.append((d, 3 + k, KP, "93.184.216.34", 443, 6, None, None))
        rows.append((d, 9, KP2, "185.65.134.10", 1194, 17, None, None))
        for k in range(12):
            cdn = f"r{(i * 12 + k) % 40}---sn-a5mekn7s{k % 4}.googlevideo.com"
            q = (cdn, "www.facebook.com", "www.baidu.com")[k % 3]
            rows.append((d, 1 + k, KP, "219.158.1.1", 53, 17, None, q))
    return rows


def _tunnel(first: date, days: int) -> list[Row]:
    rows: list[Row] = []
    rng = np.random.default_rng(7)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz234567"))
    for i in range(days):
        d = first + timedelta(days=i)
        for k in range(6):
            label = "".join(rng.choice(alphabet, 48))
            rows.append((d, 8 + k, KP2, "203.0.113.53", 53, 17, None, f"{label}.t.exfil-demo.net"))
    return rows


def _ingest(root: Path, rows: list[Row]) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root / "ws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("os.fsync", lambda fd: None)  # durability is not under test
        ingest_paths(ws, [_write(root / "flows.parquet", rows)])
    return ws


@pytest.fixture(scope="module")
def everyday(tmp_path_factory: pytest.TempPathFactory) -> Run:
    return _run(
        _ingest(tmp_path_factory.mktemp("everyday"), _everyday(400)), ServiceMix(), Obfuscation()
    )


@pytest.fixture(scope="module")
def tunnelled(tmp_path_factory: pytest.TempPathFactory) -> Run:
    rows = _everyday(400) + _tunnel(DAY0 + timedelta(days=250), 60)
    return _run(_ingest(tmp_path_factory.mktemp("tunnelled"), rows), Obfuscation())


def test_synthetic_steady_use_asserts_nothing(everyday: Run) -> None:
    findings, _ = everyday
    asserted = [f"{f.id}: {f.statement}" for f in findings.values() if _asserted(f)]
    assert not asserted, "\n".join(asserted)
    social = findings["services.social_shift"]
    assert social.detected is False
    assert social.metrics["facebook_to_chinese_2018"].value == pytest.approx(2.0)
    assert findings["opsec.share"].detected is False
    tunnel = findings["opsec.dns_tunnel"]
    assert tunnel.detected is False and not tunnel.indicators
    # the CDN names were judged and let go
    judged = {row[0]: row[1] for row in tunnel.evidence[0].rows}
    assert judged.get("googlevideo.com") == "no"


def test_synthetic_tunnel_found_with_its_onset(tunnelled: Run) -> None:
    f = tunnelled[0]["opsec.dns_tunnel"]
    assert f.detected
    assert f.period["start"] == (DAY0 + timedelta(days=250)).isoformat()
    found = {(i.kind, i.value, i.role) for i in f.indicators}
    assert ("domain-name", "exfil-demo.net", "DNS tunnel domain") in found
    assert ("ipv4-addr", "203.0.113.53", "DNS tunnel endpoint") in found
    assert ("ipv4-addr", KP2, "DNS tunnel client (inside the territory)") in found
    assert f.metrics["tunnel_flows"].value == 360
    # the tunnel flows count as obfuscation
    assert tunnelled[0]["opsec.share"].metrics["dns_tunnel_2018-H2"].value > 0


def test_crossover_rule() -> None:
    west = np.array([3.0] * 40 + [1.0] * 40)
    china = np.array([1.0] * 40 + [3.0] * 40)
    c = crossover(west, china)
    # the 14-day sums cross when more than half the window is after the switch (day 47)
    assert c.index == 47 and c.lead_days == 33 and c.crossings == 1
    assert c.low is not None and c.high is not None and c.low <= 47 <= c.high
    assert crossover(west, west).index is None  # never strictly ahead at the end
    ahead = crossover(np.zeros(30), np.ones(30))
    assert ahead.index is None and ahead.ahead_throughout
    # a lead lost again at the end is no crossover
    assert crossover(west, np.array([1.0] * 40 + [3.0] * 30 + [0.0] * 10)).index is None


def test_crossover_interval_holds_its_date_when_days_scatter_beyond_poisson() -> None:
    """Daily counts with the scatter of real ones (lognormal day effects): the interval
    keeps that scatter and holds the date it belongs to. Poisson redraws around the
    smoothed rates gave 3-day intervals holding their own date in 13 of 40 series."""
    n, mid = 500, 250
    t = np.arange(n)
    held, widths = 0, []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        west = rng.poisson(400 / (1 + np.exp((t - mid) / 40)) * rng.lognormal(0, 0.7, n))
        china = rng.poisson(400 / (1 + np.exp(-(t - mid) / 40)) * rng.lognormal(0, 0.7, n))
        c = crossover(west.astype(float), china.astype(float))
        assert c.index is not None and c.low is not None and c.high is not None
        held += c.low <= c.index <= c.high
        widths.append(c.high - c.low)
    assert held == 40
    assert np.median(widths) > 14
