"""`rogueflow report`: findings.json schema, a self-contained HTML file, Markdown, errors."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from markupsafe import escape

from rogueflow.cli.main import cli
from rogueflow.enrich.territory import fingerprint
from rogueflow.errors import RogueflowError
from rogueflow.findings import LEVELS
from rogueflow.ops import ingest_paths
from rogueflow.report import ReportResult, build_report
from rogueflow.report.html import plotly_js
from rogueflow.territory import load_builtin
from rogueflow.workspace import Workspace
from tests.test_analyze import Dataset, build_three_years, us, write_flows

IDS = {  # the synthetic store's findings of the foundation analyses (others join them)
    "volume.growth",
    "volume.change_points",
    "pattern.weekday_shift",
    "counterparts.overview",
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("os.fsync", lambda fd: None)  # durability is not under test here
        return build_three_years(tmp_path_factory.mktemp("report"), days_per_year=40)


@pytest.fixture(scope="module")
def report(data: Dataset) -> ReportResult:
    return build_report(
        data.ws,
        "kp",
        territory_file=None,
        start=None,
        end=None,
        baseline=None,
        out=None,
        quiet=True,
    )


def test_outputs_and_summary(data: Dataset, report: ReportResult) -> None:
    assert report.out_dir == data.ws.reports_dir / "kp"
    for name in ("report.html", "report.md", "findings.json"):
        assert (report.out_dir / name).stat().st_size > 0
    summary = report.summary()
    assert str(report.out_dir / "report.html") in summary
    assert "volume.growth [" in summary and "growth_ratio ×" in summary
    # two lines of context, then one line per finding
    assert len(summary.splitlines()) == 2 + len(report.findings)


def test_findings_json_schema(data: Dataset, report: ReportResult) -> None:
    doc = json.loads((report.out_dir / "findings.json").read_text())
    assert doc["format"] == "rogueflow.findings/1"
    assert {f["id"] for f in doc["findings"]} >= IDS
    assert doc["findings"] == report.findings
    for f in doc["findings"]:
        assert f["title"] and f["statement"].startswith("We assess with ")
        assert f["confidence"]["level"] in LEVELS and f["confidence"]["reasons"]
        assert f["confidence"]["level"] in f["statement"]
        assert set(f["period"]) == {"start", "end"}
        assert f["metrics"]
        for m in f["metrics"].values():
            assert set(m) == {"value", "low", "high", "unit", "method"}
            assert m["method"]
            if m["low"] is not None:
                assert m["low"] - 1e-9 <= m["value"] <= m["high"] + 1e-9  # float rounding
        # a finding that saw nothing may have nothing to draw
        assert f["chart"] in doc["charts"] or (f["chart"] is None and f["detected"] is False)
        prov = f["provenance"]
        assert prov["catalog_sources"] == [data.source_id]
        assert (
            prov["territory"]["profile_sha256"] and len(prov["territory"]["profile_sha256"]) == 64
        )
        sqls = [q["sql"] for q in prov["queries"]]
        assert any("CREATE" not in s and "FROM territory_flows" in s for s in sqls)
        # the scope's definition: the scope files the store's territory index wrote at
        # ingest, named with its fingerprint
        index = f"scope files of the store's territory index, kp {fingerprint(load_builtin('kp'))}"
        assert any(index in s for s in sqls)
        assert prov["rogueflow_version"] and prov["generated_at"]
        assert prov["data_window"]["start"].startswith("2017-01-01")
        assert f["alternatives"]
    pattern = next(f for f in doc["findings"] if f["id"] == "pattern.weekday_shift")
    assert any("Asia/Pyongyang" in a for a in pattern["alternatives"])
    growth = next(f for f in doc["findings"] if f["id"] == "volume.growth")
    for y in (2017, 2018, 2019):
        for k in ("flows_per_day", "bytes_per_day", "active_hosts", "flows"):
            assert f"{k}_{y}" in growth["metrics"]
    cov = doc["coverage"]
    assert cov["days_with_data"] == 120 and cov["flows"] == len(data.ts_us)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[tuple[str, str, str]] = []
        self.inline_scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("src", "href", "data", "action", "poster", "srcset") and v:
                self.refs.append((tag, k, v))
        if tag == "script" and not dict(attrs).get("src"):
            self.inline_scripts += 1


def test_html_is_self_contained(report: ReportResult) -> None:
    html = (report.out_dir / "report.html").read_text()
    p = _Refs()
    p.feed(html)
    external = [r for r in p.refs if r[2].startswith(("http:", "https:", "//"))]
    assert external == []
    assert not any(tag == "script" and k == "src" for tag, k, _ in p.refs)
    assert not any(tag == "link" for tag, _, _ in p.refs)
    js = plotly_js()
    assert html.count(js[:2000]) == 1  # plotly.js inlined exactly once
    for cid in (
        "volume.daily",
        "volume.monthly",
        "pattern.heatmap.2017",
        "pattern.heatmap.delta",
        "pattern.shares",
    ):
        assert f'id="spec-{cid}"' in html and f'data-chart="{cid}"' in html
    for f in report.findings:
        assert str(escape(f["statement"])) in html


def test_markdown_has_every_statement(report: ReportResult) -> None:
    md = (report.out_dir / "report.md").read_text()
    for f in report.findings:
        assert f["statement"] in md
        assert f"## {f['title']}" in md
    coverage = md.split("## Coverage")[1]
    assert "| 2017-02-10 | 2017-12-31 | 325 |" in coverage  # the longest gap is listed
    assert "<script" not in md


def test_html_escapes_profile_and_data(tmp_path: Path) -> None:
    profile = tmp_path / "evil.toml"
    profile.write_text(
        'code = "xx"\nname = "<script>alert(1)</script> & Co"\ntimezone = "Asia/Pyongyang"\n'
        '[[prefixes]]\ncidr = "175.45.176.0/22"\n'
    )
    t = np.array([us_day(2017, 1, d) for d in range(1, 20)])
    f = write_flows(
        tmp_path / "f.parquet",
        t,
        ["175.45.176.3"] * len(t),
        ["8.8.8.8"] * len(t),
        exporter="<img src=x onerror=alert(2)>",
    )
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [f])
    res = build_report(
        ws,
        None,
        territory_file=str(profile),
        start=None,
        end=None,
        baseline=None,
        out=tmp_path / "out",
        quiet=True,
    )
    html = (res.out_dir / "report.html").read_text()
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; Co" in html
    assert "<img src=x" not in html
    md = (res.out_dir / "report.md").read_text()
    assert "alert(1)" in md  # Markdown is plain text; the statement is there verbatim
    one_year = res.findings[0]
    assert one_year["confidence"]["level"] == "low"  # a single year: no growth measured


def us_day(y: int, m: int, d: int) -> int:
    from datetime import UTC, datetime

    return us(datetime(y, m, d, 3, tzinfo=UTC))


def test_empty_territory_raises(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(RogueflowError, match="no flows touch territory kp in the store"):
        build_report(
            ws, "kp", territory_file=None, start=None, end=None, baseline=None, out=None, quiet=True
        )
    assert not (ws.reports_dir / "kp").exists()


def test_cli_report(data: Dataset, tmp_path: Path) -> None:
    out = tmp_path / "cli-out"
    result = CliRunner().invoke(
        cli,
        [
            "-q",
            "-w",
            str(data.ws.root),
            "report",
            "-t",
            "kp",
            "--from",
            "2018-01-01",
            "--baseline",
            "2018-01-01:2018-02-09",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "report:" in result.output
    doc = json.loads((out / "findings.json").read_text())
    assert doc["analysis_window"]["start"] == "2018-01-01"
    growth = next(f for f in doc["findings"] if f["id"] == "volume.growth")
    assert "growth_ratio_baseline" in growth["metrics"]
    bad = CliRunner().invoke(cli, ["-w", str(tmp_path / "empty"), "report", "-t", "kp"])
    assert bad.exit_code == 2 and "no flows touch territory kp" in bad.output
