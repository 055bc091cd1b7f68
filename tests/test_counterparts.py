"""Counterparts and reference-data provenance on synthetic flows enriched at ingest."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rogueflow import addr
from rogueflow.analyze import load_profile, open_scope, stats
from rogueflow.analyze.counterparts import Counterparts, excluded_sql
from rogueflow.intel.snapshots import IntelStore
from rogueflow.ops import ingest_paths
from rogueflow.report import ReportResult, build_report
from rogueflow.workspace import Workspace

KP = "175.45.176.5"
KP2 = "175.45.176.6"
US = "8.8.8.8"  # embedded default: US, AS15169
RU = "95.167.1.1"  # embedded default: RU
UNICOM = "221.192.1.1"  # embedded default: CN, AS4837 China Unicom (kp's exclude list)
PRIVATE = "10.1.1.1"  # in no table: unknown country and AS
PEER = "203.0.113.7"  # TEST-NET-3: only the user snapshots below know it

# per day: (src, dst, proto, src_port, dst_port, count); 8333 is a bitcoin port (crypto.p2p)
DAY_2017 = [
    (KP, US, 6, 40000, 443, 3),
    (RU, KP, 6, 8333, 50000, 1),  # inbound: the remote end is the source
    (KP, UNICOM, 6, 40000, 443, 2),
    (KP, PRIVATE, 6, 40000, 443, 1),
    (KP, KP2, 6, 40000, 443, 1),  # internal: no counterpart
]
DAY_2018 = [
    (KP, US, 6, 40000, 443, 1),
    (RU, KP, 6, 8333, 50000, 3),
    (KP, UNICOM, 6, 40000, 443, 1),
]
DAYS = 40


def write(path: Path, rows: list[tuple[datetime, str, str, int, int, int]]) -> Path:
    """Canonical Parquet: (ts, src, dst, proto, src_port, dst_port)."""
    ts = pa.array([r[0] for r in rows], pa.timestamp("us", tz="UTC"))
    n = len(rows)
    pq.write_table(
        pa.table(
            {
                "ts_start": ts,
                "ts_end": ts,
                "src_addr": addr.parse_array([r[1] for r in rows]),
                "dst_addr": addr.parse_array([r[2] for r in rows]),
                "proto": pa.array([r[3] for r in rows], pa.uint8()),
                "src_port": pa.array([r[4] for r in rows], pa.uint16()),
                "dst_port": pa.array([r[5] for r in rows], pa.uint16()),
                "packets": pa.array([3] * n, pa.int64()),
                "bytes": pa.array([300] * n, pa.int64()),
            }
        ),
        path,
    )
    return path


def days(year: int, pattern: list[tuple[str, str, int, int, int, int]], n: int) -> list:  # type: ignore[type-arg]
    out = []
    for d in range(n):
        t = datetime(year, 3, 1, 2, tzinfo=UTC) + timedelta(days=d)
        i = 0
        for src, dst, proto, sp, dp, count in pattern:
            for _ in range(count):
                out.append((t + timedelta(seconds=i), src, dst, proto, sp, dp))
                i += 1
    return out


@dataclass
class Built:
    ws: Workspace
    report: ReportResult
    doc: dict  # type: ignore[type-arg]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    root = tmp_path_factory.mktemp("counterparts")
    f = write(root / "f.parquet", days(2017, DAY_2017, DAYS) + days(2018, DAY_2018, DAYS))
    ws = Workspace(root / "ws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("os.fsync", lambda fd: None)  # durability is not under test here
        ingest_paths(ws, [f])
    report = build_report(ws, "kp", out=root / "out")
    return Built(ws, report, json.loads(report.json_path.read_text()))


def finding(doc: dict, fid: str = "counterparts.overview") -> dict:  # type: ignore[type-arg]
    return next(f for f in doc["findings"] if f["id"] == fid)


def test_scope_view_carries_the_remote_end(built: Built) -> None:
    scope = open_scope(built.ws, load_profile("kp", None))
    try:
        got = scope.rows(
            "test",
            "SELECT DISTINCT side, remote_country, remote_asn, category FROM territory_flows "
            "ORDER BY side, remote_country",
        )
    finally:
        scope.close()
    by = {(r["side"], r["remote_country"]): r for r in got}
    assert by[("in", "RU")]["category"] == "crypto.p2p"  # remote = source for inbound flows
    assert by[("out", "US")]["remote_asn"] == 15169
    assert by[("out", "CN")]["remote_asn"] == 4837
    assert by[("out", None)]["remote_asn"] is None
    assert by[("internal", "KP")]["remote_asn"] == 131279  # internal: the destination
    assert {r["side"] for r in got} == {"in", "out", "internal"}


def _wilson(k: int, n: int) -> tuple[float, float]:
    # every day is identical, so the design effect is 1 and the interval is plain Wilson
    return stats.wilson(k, n)


@pytest.mark.parametrize(
    ("name", "k", "n"),
    [
        ("country_share_US_2017", 3, 5),
        ("country_share_RU_2017", 1, 5),
        ("top_country_share_2017", 3, 5),
        ("country_share_US_2018", 1, 4),
        ("country_share_RU_2018", 3, 4),
        ("top_country_share_2018", 3, 4),
        ("excluded_share_AS4837_2017", 2, 7),
        ("excluded_share_2018", 1, 5),
        ("asn_share_AS15169_2017", 3, 5),
        ("unclassified_share_2017", 6, 7),
        ("unclassified_share_2018", 2, 5),
        ("category_share_crypto.p2p_2018", 3, 5),
    ],
)
def test_shares_exact(built: Built, name: str, k: int, n: int) -> None:
    m = finding(built.doc)["metrics"][name]
    lo, hi = _wilson(k * DAYS, n * DAYS)
    assert m["value"] == pytest.approx(k / n)
    assert m["low"] == pytest.approx(lo) and m["high"] == pytest.approx(hi)
    assert m["unit"] == "share"


def test_coverage_and_exclusion(built: Built) -> None:
    f = finding(built.doc)
    m = {k: v["value"] for k, v in f["metrics"].items()}
    assert m["counterpart_flows_2017"] == 7 * DAYS and m["counterpart_flows_2018"] == 5 * DAYS
    assert m["country_coverage_2017"] == pytest.approx(6 / 7)
    assert m["asn_coverage_2017"] == pytest.approx(6 / 7)
    assert m["classified_share_2017"] == pytest.approx(1 / 7)
    assert m["country_coverage_2018"] == 1.0
    # China Unicom is excluded: its country is in no share, it is reported on its own
    assert not any(k.startswith("country_share_CN") for k in m)
    tables = {t["title"]: t for t in f["evidence"]}
    countries = tables["Counterpart countries per year"]["rows"]
    assert "CN" not in {r[1] for r in countries}
    assert countries[2][:4] == [2017, "(unknown)", "40", "20.0%"]
    excl = tables["Access and transit providers reported separately (profile exclude list)"]
    assert [r[:5] for r in excl["rows"]] == [
        [2017, "AS4837", "China Unicom", excl["rows"][0][3], "80"],
        [2018, "AS4837", "China Unicom", excl["rows"][1][3], "40"],
    ]
    cov = tables["Enrichment coverage per year"]["rows"]
    assert cov[0][:3] == [2017, "280", "40"]  # 40 internal flows counted, not counterparts
    cats = {(r[0], r[1]): r[3] for r in tables["Category mix per year"]["rows"]}
    assert cats[(2018, "unclassified")] == "40.0%" and cats[(2018, "crypto.p2p")] == "60.0%"


def test_statement_and_confidence(built: Built) -> None:
    f = finding(built.doc)
    s = f["statement"]
    assert s.startswith(f"We assess with {f['confidence']['level']} confidence that in 2018")
    assert "AS4837 China Unicom" in s and "left out of the country shares" in s
    assert "RU (75%, 95% interval" in s and "US (25%" in s
    assert "In 2017 the leading country was US (60%)" in s
    assert "40% of counterpart flows stayed unclassified" in s
    assert "not where people or equipment of North Korea are" in s
    reasons = " ".join(f["confidence"]["reasons"])
    assert "only 86% of counterpart flows in 2017 have a known country" in reasons
    assert "unclassified" in reasons
    assert any("anycast" in a.lower() for a in f["alternatives"])
    assert any("vpn" in a.lower() for a in f["alternatives"])


def test_charts_show_unclassified(built: Built) -> None:
    charts = built.doc["charts"]
    cats = charts["counterparts.categories"]["data"]
    assert cats["categories"] == ["2017", "2018"]
    assert cats["series"]["unclassified"] == pytest.approx([6 / 7, 2 / 5])
    assert cats["series"]["crypto.p2p"] == pytest.approx([1 / 7, 3 / 5])
    countries = charts["counterparts.countries"]["data"]
    assert countries["categories"] == ["US", "RU", "(unknown)"]
    assert countries["series"]["2018"][0] == pytest.approx([0.25, 0.75, 0.0])
    html = built.report.html_path.read_text()
    assert 'data-chart="counterparts.categories"' in html and 'id="reference-data"' in html


def test_provenance_names_embedded_snapshots(built: Built) -> None:
    ids = {s.id for s in IntelStore(built.ws).list() if s.builtin}
    top = {r["id"]: r for r in built.doc["reference_data"]}
    assert ids <= set(top)
    for sid in ids:
        assert top[sid]["sha256"] and top[sid]["source"].startswith("package:")
        assert top[sid]["first_day"] == "2017-03-01" and top[sid]["last_day"] == "2018-04-09"
    for f in built.doc["findings"]:
        assert ids <= {r["id"] for r in f["provenance"]["reference_data"]}
        assert any(q["label"] == "reference data used" for q in f["provenance"]["queries"])


def test_excluded_sql_respects_validity(tmp_path: Path) -> None:
    profile = tmp_path / "xx.toml"
    profile.write_text(
        'code = "xx"\nname = "X"\ntimezone = "UTC"\n[[prefixes]]\ncidr = "175.45.176.0/22"\n'
        '[[exclude]]\nasn = 4837\nname = "China Unicom"\nvalid_from = "2018-01-01"\n'
    )
    t = load_profile(None, profile).territory
    sql = excluded_sql(t)
    assert "remote_asn = 4837 AND ts_utc >= TIMESTAMP '2018-01-01 00:00:00'" in sql
    f = write(tmp_path / "f.parquet", days(2017, DAY_2018, 2) + days(2018, DAY_2018, 2))
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [f])
    scope = open_scope(ws, load_profile(None, profile))
    try:
        m = Counterparts().run(scope).findings[0].metrics
    finally:
        scope.close()
    assert m["country_share_CN_2017"].value == pytest.approx(1 / 5)  # not yet excluded
    assert "country_share_CN_2018" not in m and m["excluded_share_2018"].value == 0.2


def _country_csv(path: Path, cc: str) -> Path:
    path.write_text(f"network,country\n203.0.113.0/24,{cc}\n")
    return path


def test_each_year_uses_its_snapshot_and_provenance_names_both(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    store = IntelStore(ws)
    s17 = store.add(
        "geo-country",
        _country_csv(tmp_path / "a.csv", "NZ"),
        fmt="csv",
        name="peers",
        valid_from=datetime(2017, 1, 1, tzinfo=UTC),
        valid_to=datetime(2018, 1, 1, tzinfo=UTC),
    )
    s18 = store.add(
        "geo-country",
        _country_csv(tmp_path / "b.csv", "IN"),
        fmt="csv",
        name="peers",
        valid_from=datetime(2018, 1, 1, tzinfo=UTC),
        valid_to=datetime(2019, 1, 1, tzinfo=UTC),
    )
    pattern = [(KP, PEER, 6, 40000, 443, 2), (KP, US, 6, 40000, 443, 1)]
    f = write(tmp_path / "f.parquet", days(2017, pattern, 3) + days(2018, pattern, 3))
    ingest_paths(ws, [f])
    res = build_report(ws, "kp", out=tmp_path / "out")
    doc = json.loads(res.json_path.read_text())
    m = finding(doc)["metrics"]
    assert m["country_share_NZ_2017"]["value"] == pytest.approx(2 / 3)
    assert m["country_share_IN_2018"]["value"] == pytest.approx(2 / 3)
    assert "country_share_IN_2017" not in m and "country_share_NZ_2018" not in m
    top = {r["id"]: r for r in doc["reference_data"]}
    assert (top[s17.id]["first_day"], top[s17.id]["last_day"]) == ("2017-03-01", "2017-03-03")
    assert (top[s18.id]["first_day"], top[s18.id]["last_day"]) == ("2018-03-01", "2018-03-03")
    assert top[s17.id]["flows"] == 6 and top[s17.id]["validity"] == "2017-01-01 to 2018-01-01"
    assert top[s18.id]["sha256"] == s18.sha256 and top[s18.id]["source"] == s18.source
    for fnd in doc["findings"]:
        named = {r["id"] for r in fnd["provenance"]["reference_data"]}
        assert {s17.id, s18.id} <= named
    md = res.markdown_path.read_text()
    assert s17.id in md and s18.id in md and "2018-01-01 to 2019-01-01" in md
    # a snapshot removed after ingest stays named, marked as removed
    store.remove(s17.id)
    store.close()
    again = build_report(ws, "kp", out=tmp_path / "out2")
    refs = json.loads(again.json_path.read_text())["reference_data"]
    gone = next(r for r in refs if r["id"] == s17.id)
    assert gone["removed"] and gone["label"] == f"(removed) {s17.id}" and gone["flows"] == 6
    assert f"(removed) {s17.id}" in again.html_path.read_text()
