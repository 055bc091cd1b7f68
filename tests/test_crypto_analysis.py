"""Crypto per coin (``crypto.mining.<COIN>``): the demo's ground truth, data without mining,
and the series rules (sustained onset, windows) on known series."""

from __future__ import annotations

import json
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from rogueflow.analyze import coinseries as cs
from rogueflow.analyze import load_profile, open_scope
from rogueflow.analyze.crypto import CryptoActivity
from rogueflow.findings import Finding, document, dumps
from rogueflow.ops import ingest_paths
from rogueflow.report.charts import render
from rogueflow.workspace import Workspace
from tests.conftest import DemoRun
from tests.flowrows import write_rows

Run = tuple[dict[str, Finding], dict[str, dict[str, Any]]]


def _run(ws: Workspace, baseline: tuple[date, date] | None = None) -> Run:
    scope = open_scope(ws, load_profile("kp", None), baseline=baseline)
    try:
        out = CryptoActivity().run(scope)
    finally:
        scope.close()
    return {f.id: f for f in out.findings}, out.charts


def _asserted(f: Finding) -> bool:
    return bool(f.detected) and f.confidence.level in ("moderate", "high")


# --- the reference demo ----------------------------------------------------------------


@pytest.fixture(scope="module")
def auto(demo_reference: DemoRun) -> Run:
    return _run(demo_reference.ws)


@pytest.fixture(scope="module")
def given(demo_reference: DemoRun) -> Run:
    lo, hi = demo_reference.truth["monero"]["baseline_window"]
    return _run(demo_reference.ws, (date.fromisoformat(lo), date.fromisoformat(hi)))


def test_one_finding_per_coin(auto: Run, demo_reference: DemoRun) -> None:
    findings, _ = auto
    assert set(findings) == {"crypto.mining.BTC", "crypto.mining.LTC", "crypto.mining.XMR"}
    # Litecoin is P2P only, and the truth counts its flows
    ltc = findings["crypto.mining.LTC"].metrics
    assert ltc["sessions"].value == demo_reference.truth["litecoin"]["flows"]
    assert ltc["p2p_sessions"].value == ltc["sessions"].value
    assert ltc["mining_sessions"].value == 0


def test_bitcoin_onset(auto: Run, demo_reference: DemoRun) -> None:
    truth = demo_reference.truth["bitcoin"]
    f = auto[0]["crypto.mining.BTC"]
    onset = date.fromisoformat(f.period["onset"])
    assert abs((onset - date.fromisoformat(truth["onset_local_date"])).days) <= 1
    assert f.metrics["sessions_before_onset"].value == truth["flows_before_onset"]
    first30 = f.metrics["sessions_per_day_first_30_days"].value
    assert first30 == pytest.approx(truth["mean_daily_flows_first_30_days"], rel=0.2)
    hosts = sorted(i.value for i in f.indicators if i.kind == "ipv4-addr")
    assert hosts == truth["hosts"]
    assert f.metrics["internal_hosts_after"].value == len(truth["hosts"])
    assert _asserted(f)
    assert f"began on {f.period['onset']}" in f.statement
    # the days either side of the onset are the evidence
    table = next(t for t in f.evidence if t.title.startswith("Days with data around the onset"))
    marked = [r for r in table.rows if "onset" in str(r[0])]
    assert len(marked) == 1 and int(marked[0][2]) > 0
    assert all(int(r[2]) == 0 for r in table.rows[: table.rows.index(marked[0])])


def test_monero_multiplier_with_the_truth_windows(given: Run, demo_reference: DemoRun) -> None:
    truth = demo_reference.truth["monero"]
    f = given[0]["crypto.mining.XMR"]
    assert [f.period["baseline_start"], f.period["baseline_end"]] == truth["baseline_window"]
    assert f.metrics["multiplier"].value == pytest.approx(truth["multiplier"], rel=0.2)
    lo, hi = f.metrics["multiplier"].low, f.metrics["multiplier"].high
    assert lo is not None and hi is not None and lo < f.metrics["multiplier"].value < hi
    assert "given (--baseline)" in f.statement
    assert _asserted(f)


def test_monero_multiplier_automatic(auto: Run, demo_reference: DemoRun) -> None:
    f = auto[0]["crypto.mining.XMR"]
    m = f.metrics["multiplier"]
    assert m.value is not None and m.value >= 10
    assert m.low is not None and m.low > 1
    # the windows it chose are stated, the baseline before the rise
    b1 = date.fromisoformat(f.period["baseline_end"])
    a0 = date.fromisoformat(f.period["after_start"])
    assert b1 < a0
    assert f"baseline {f.period['baseline_start']} to {f.period['baseline_end']}" in f.statement
    assert "automatic" in f.statement
    assert any(t.title == "Baseline and after windows" for t in f.evidence)


def test_monero_fronting_ip(given: Run, auto: Run, demo_reference: DemoRun) -> None:
    truth = demo_reference.truth["monero"]
    for findings, _ in (given, auto):
        f = findings["crypto.mining.XMR"]
        assert f.metrics["internal_hosts_after"].value == truth["fronting_ips_after"] == 1
        assert f.metrics["single_fronting_ip"].value == 1
        front = [i.value for i in f.indicators if i.role == "fronting host"]
        assert front == truth["fronting_ip"]
        assert f"one inside address, {truth['fronting_ip'][0]}" in f.statement


def test_lookups_are_not_sessions(auto: Run, demo_reference: DemoRun) -> None:
    f = auto[0]["crypto.mining.XMR"]
    # people look up pool names from 2017 on; counted as sessions they would date the
    # onset long before the mining began
    assert f.metrics["dns_lookups"].value > 100
    start = date.fromisoformat(demo_reference.truth["monero"]["baseline_window"][0])
    assert abs((date.fromisoformat(f.period["onset"]) - start).days) <= 1
    assert all(53 not in (s.src_port, s.dst_port) for s in f.samples)
    assert any("lookups" in t.title for t in f.evidence)
    # pools named in sessions, one of them a multi-coin pool read as XMR from its name
    pools = {i.value for i in f.indicators if i.role == "mining pool"}
    assert "xmr-eu1.nanopool.org" in pools
    assert f.metrics["mining_sessions"].value > 0 and f.metrics["p2p_sessions"].value > 0
    assert "crypto.mining" in f.statement and "crypto.p2p" in f.statement


def test_evidence_charts_and_json(auto: Run) -> None:
    findings, charts = auto
    for f in findings.values():
        assert f.samples and all(s.community_id.startswith("1:") for s in f.samples)
        assert any(q.label.startswith("crypto:") for q in f.provenance.queries)
        assert f.charts[0] in charts
    for c in charts.values():
        fig = render(c)["figure"]
        assert fig["data"] and c["data"]["markers"]
    doc = json.loads(dumps(document(list(findings.values()), {})))
    assert {f["id"] for f in doc["findings"]} == set(findings)


def test_control_demo_asserts_no_mining(demo_control: DemoRun) -> None:
    findings, _ = _run(demo_control.ws)
    assert findings
    loud = [f"{f.id}: {f.statement}" for f in findings.values() if f.confidence.level != "low"]
    assert not loud, loud
    assert not any(f.detected for f in findings.values())


# --- synthetic data --------------------------------------------------------------------

DAY0 = date(2019, 1, 1)


def _write(path: Path, rows: list[tuple[date, int, str, str, int, int, str | None]]) -> Path:
    """(day, hour UTC, src, dst, dst_port, proto, dns_query) rows as canonical flows."""
    return write_rows(path, rows, ("dns_query",))


def _background(days: int) -> list[tuple[date, int, str, str, int, int, str | None]]:
    rows: list[tuple[date, int, str, str, int, int, str | None]] = []
    for i in range(days):
        d = DAY0 + timedelta(days=i)
        for k in range(12):
            rows.append((d, 1 + k, f"175.45.176.{10 + k}", "93.184.216.34", 443, 6, None))
        # people reading about mining: pool names looked up through a resolver
        if i % 3 == 0:
            q = ("pool.minexmr.com", "gulf.moneroocean.stream", "xmr-eu1.nanopool.org")[i % 9 // 3]
            rows.append((d, 5, f"175.45.176.{10 + i % 12}", "8.8.8.8", 53, 17, q))
    return rows


def _ingest(root: Path, rows: list[tuple[date, int, str, str, int, int, str | None]]) -> Workspace:
    root.mkdir(parents=True, exist_ok=True)
    ws = Workspace(root / "ws")
    ingest_paths(ws, [_write(root / "flows.parquet", rows)])
    return ws


@pytest.fixture(scope="module")
def no_mining(tmp_path_factory: pytest.TempPathFactory) -> Run:
    rows = _background(200)
    # a handful of stray flows to the Bitcoin port (labelled by port alone)
    for i in (20, 75, 130, 170):
        rows.append((DAY0 + timedelta(days=i), 3, "175.45.176.11", "159.203.7.7", 8333, 6, None))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("os.fsync", lambda fd: None)  # durability is not under test
        return _run(_ingest(tmp_path_factory.mktemp("no-mining"), rows))


@pytest.fixture(scope="module")
def stray_then_node(tmp_path_factory: pytest.TempPathFactory) -> Run:
    rows = _background(200)
    rows.append((DAY0 + timedelta(days=40), 3, "175.45.178.21", "159.203.7.7", 8333, 6, None))
    for i in range(120, 200):
        for k in range(3):
            peer = f"159.203.{i % 50}.{k + 1}"
            rows.append((DAY0 + timedelta(days=i), 2 + k, "175.45.178.21", peer, 8333, 6, None))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("os.fsync", lambda fd: None)
        return _run(_ingest(tmp_path_factory.mktemp("stray"), rows))


def test_no_mining_asserts_nothing(no_mining: Run) -> None:
    findings, _ = no_mining
    assert findings
    loud = [f"{f.id}: {f.statement}" for f in findings.values() if f.confidence.level != "low"]
    assert not loud, loud
    xmr = findings["crypto.mining.XMR"]  # lookups only
    assert xmr.metrics["sessions"].value == 0 and xmr.detected is False
    assert xmr.metrics["dns_lookups"].value > 0
    btc = findings["crypto.mining.BTC"]  # four stray flows, months apart
    assert btc.metrics["sessions"].value == 4
    assert "onset" not in btc.period and "sporadic" in btc.statement


def test_a_stray_flow_does_not_set_the_onset(stray_then_node: Run) -> None:
    f = stray_then_node[0]["crypto.mining.BTC"]
    assert f.period["first_session"] == (DAY0 + timedelta(days=40)).isoformat()
    assert f.period["onset"] == (DAY0 + timedelta(days=120)).isoformat()
    assert f.metrics["sessions_before_onset"].value == 1
    # one host talking to several peers a day: labelled by behaviour (fan-out), the stray
    # from the same host with it
    assert f.metrics["share_behaviour"].value == 1.0
    assert f"1 stray session before it, the first on {f.period['first_session']}" in f.statement
    assert f.detected


def test_nothing_at_all(tmp_path: Path) -> None:
    rows = [r for r in _background(30) if r[4] != 53]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("os.fsync", lambda fd: None)
        findings, charts = _run(_ingest(tmp_path / "none", rows))
    assert list(findings) == ["crypto.mining"] and not charts
    f = findings["crypto.mining"]
    assert f.confidence.level == "low" and f.detected is False


# --- series rules on known series ----------------------------------------------------


def test_bernoulli_change_points() -> None:
    assert cs.bernoulli_change_points([0] * 200 + [1, 0] * 50) == [200]
    rng = np.random.default_rng(1)
    flat = (rng.random(400) < 0.3).astype(float)
    assert cs.bernoulli_change_points(flat) == []


def test_onset_sparse_and_stray() -> None:
    y = np.zeros(600)
    y[50] = 1  # a stray
    y[300::13] = 1  # sparse but recurring: one session a fortnight
    on = cs.find_onset(y)
    assert on is not None and (on.index, on.first_index, on.sessions_before) == (300, 50, 1)
    assert not on.censored
    assert cs.find_onset(np.zeros(100)) is None
    assert cs.find_onset(np.array([0.0] * 100 + [1.0] + [0.0] * 100)) is None
    busy = cs.find_onset(np.ones(100))
    assert busy is not None and busy.censored


def test_windows_around_a_gradual_rise() -> None:
    rng = np.random.default_rng(7)
    rate = np.concatenate(
        [np.zeros(200), np.full(210, 0.2), np.linspace(0.2, 4, 45), np.full(180, 4)]
    )
    y = rng.poisson(rate).astype(float)
    on = cs.find_onset(y)
    assert on is not None and abs(on.index - 200) <= 10
    base, after = cs.auto_windows(y, on)
    assert base is not None
    r = after.mean(y) / base.mean(y)
    assert 15 <= r <= 26  # true 20; a ramp left in either window would pull it down
    assert base.hi <= 420 and after.lo >= 440
    # a user's baseline
    days = [date(2018, 1, 1) + timedelta(days=i) for i in range(len(y))]
    b, a = cs.user_windows(days, y, on, (days[200], days[409]))
    assert b is not None and a is not None and (b.lo, b.hi) == (200, 410)
    assert 15 <= a.mean(y) / b.mean(y) <= 26


def test_unidentified_coin_names_the_coins_its_hosts_also_mine() -> None:
    from rogueflow.analyze.crypto import _same_hosts
    from rogueflow.analyze.cryptoevidence import Coin, CryptoData

    a, b, c = (bytes([0] * 10 + [255, 255, 175, 45, 178, k]) for k in (1, 2, 3))
    data = CryptoData(coins=["BTC", "XMR", "UNKNOWN"])
    data.host_days["XMR"][a][DAY0] = 5
    data.host_days["BTC"][c][DAY0] = 2
    data.host_days["UNKNOWN"][a][DAY0] = 3
    data.host_days["UNKNOWN"][b][DAY0] = 1
    unknown = Coin("UNKNOWN", [DAY0], np.array([4.0]), {})
    unknown.hosts_after = data.hosts("UNKNOWN")
    text = _same_hosts(data, unknown)
    assert "addresses also mine XMR (crypto.mining.XMR; 1 of the 2 addresses)" in text
    assert "BTC" not in text  # host c mines BTC but none of the unidentified sessions
    unknown.hosts_after = {a: 3}
    assert "The same inside address also mines XMR (crypto.mining.XMR):" in _same_hosts(
        data, unknown
    )
    data.host_days["XMR"].clear()
    assert _same_hosts(data, unknown) == ""
