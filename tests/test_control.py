"""The control scenario: the same network with none of the reference behaviours.

Issue 6, acceptance 2: on data without these behaviours no finding asserts one with
moderate or high confidence. Every finding says whether it asserts its behaviour
(``detected``); the reference run must assert the behaviours the control lacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rogueflow.report import build_report
from tests.conftest import DemoRun

#: findings whose behaviour the reference scenario has and the control lacks
BEHAVIOURS = (
    "volume.growth",
    "pattern.weekday_shift",
    "pattern.by_category",
    "routing.upstream_change",
    "routing.upstream_share",
    "presence.abroad",
    "services.social_shift",
    "opsec.share",
    "opsec.dns_tunnel",
    "hosted.services",
    "inbound.probing",
)
#: per-coin findings exist only where a coin was seen
COINS = ("crypto.mining.BTC", "crypto.mining.XMR")


def _asserted(f: dict[str, Any]) -> bool:
    return bool(f.get("detected")) and f["confidence"]["level"] in ("moderate", "high")


def test_control_asserts_nothing(demo_control: DemoRun) -> None:
    assert demo_control.truth["scenario"] == "control"
    assert abs(demo_control.truth["growth_ratio"] - 1.0) < 0.1
    asserted = [
        f"{f['id']}: {f['statement']}" for f in demo_control.doc["findings"] if _asserted(f)
    ]
    assert not asserted, "\n".join(asserted)
    for fid in BEHAVIOURS:
        assert fid in demo_control.findings, fid


def test_reference_asserts_the_behaviours(demo_reference: DemoRun) -> None:
    missing = [
        fid
        for fid in BEHAVIOURS
        if not _asserted(demo_reference.findings.get(fid, {"confidence": {"level": "low"}}))
    ]
    assert not missing, missing


def test_every_finding_says_whether_it_asserts(demo_reference: DemoRun) -> None:
    for f in demo_reference.doc["findings"]:
        assert "detected" in f, f["id"]


def test_category_pattern_follows_people_not_machines(demo_reference: DemoRun) -> None:
    f = demo_reference.findings["pattern.by_category"]
    m = f["metrics"]
    # people's categories moved into office hours; the truth's 2019 weekend share of
    # e-mail is far below 2017's
    t = demo_reference.truth["categories"]
    assert t["2019"]["email"]["weekend_share"] < t["2017"]["email"]["weekend_share"] - 0.1
    assert m["business_hours_change_pp_email"]["low"] > 20
    assert m["weekday_share_email_2019"]["value"] > m["weekday_share_email_2017"]["value"] + 0.15


def test_rollups_answer_as_the_flows_do(
    demo_reference: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's report read its trends from the roll-ups; the same report read from the
    flows alone (use_rollups = 0) has the same findings and charts, number for number."""
    sqls = {q["sql"] for f in demo_reference.doc["findings"] for q in f["provenance"]["queries"]}
    assert any("FROM territory_rollup" in s for s in sqls)
    monkeypatch.setenv("ROGUEFLOW_USE_ROLLUPS", "0")
    events = demo_reference.input / "events.csv"
    raw = build_report(demo_reference.ws, "kp", events=events, out=tmp_path / "raw")
    doc = json.loads((raw.out_dir / "findings.json").read_text())
    assert not any(
        "territory_rollup" in q["sql"] for f in doc["findings"] for q in f["provenance"]["queries"]
    )

    def plain(d: dict[str, Any]) -> dict[str, Any]:
        return {f["id"]: {k: v for k, v in f.items() if k != "provenance"} for f in d["findings"]}

    # numbers equal to 1e-9 relative: DuckDB's parallel sums of doubles (the upstream
    # shares, read from the flows either way) may differ in the last bit between runs
    assert _close(plain(doc), plain(demo_reference.doc))
    assert _close(doc["charts"], demo_reference.doc["charts"])


def _close(a: Any, b: Any, path: str = "") -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        return all(_close(a[k], b[k], f"{path}/{k}") for k in a)
    if isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        return all(_close(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b, strict=True)))
    if isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
        return True
    assert a == b, path
    return True
