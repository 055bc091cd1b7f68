"""Enrichment at ingest: as-of snapshot selection, fall-through, re-enrichment, migration."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rogueflow import addr
from rogueflow.analyze.engine import DuckDBEngine
from rogueflow.intel.snapshots import IntelStore
from rogueflow.ops import enrich_store, ingest_paths
from rogueflow.schema import ENRICHMENT, FLOW_SCHEMA, MEASURED, METADATA_KEY, SCHEMA_VERSION
from rogueflow.store.flowstore import FlowStore, read_store_file
from rogueflow.store.scopefile import SCOPE_DIR
from rogueflow.workspace import Workspace

WATCHED = "175.45.176.10"
PEER = "203.0.113.7"  # TEST-NET-3: in no real geolocation table


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _flows(path: Path, rows: list[tuple[str, str, str, int, int]]) -> Path:
    """A canonical Parquet file: (ts, src, dst, proto, dst_port)."""
    ts = [_utc(r[0]) for r in rows]
    table = pa.table(
        {
            "ts_start": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "ts_end": pa.array(ts, pa.timestamp("us", tz="UTC")),
            "src_addr": addr.parse_array([r[1] for r in rows]),
            "dst_addr": addr.parse_array([r[2] for r in rows]),
            "src_port": pa.array([40000] * len(rows), pa.uint16()),
            "dst_port": pa.array([r[4] for r in rows], pa.uint16()),
            "proto": pa.array([r[3] for r in rows], pa.uint8()),
            "packets": pa.array([3] * len(rows), pa.int64()),
            "bytes": pa.array([300] * len(rows), pa.int64()),
        }
    )
    pq.write_table(table, path)
    return path


def _rows(ws: Workspace, sql: str) -> list[tuple[object, ...]]:
    eng = DuckDBEngine(ws)
    try:
        return eng.sql(sql).fetchall()
    finally:
        eng.close()


def test_embedded_default_enriches_country_and_org(workspace: Workspace, tmp_path: Path) -> None:
    f = _flows(
        tmp_path / "f.parquet",
        [
            ("2019-03-01T10:00:00", WATCHED, "8.8.8.8", 17, 53),
            ("2019-03-01T10:00:01", WATCHED, "1.1.1.1", 6, 443),
        ],
    )
    ingest_paths(workspace, [f])
    got = _rows(
        workspace,
        "SELECT dst_ip, src_country, dst_country, dst_as_org, intel, src_asn, dst_asn "
        "FROM flows ORDER BY dst_ip",
    )
    assert got[0][0] == "1.1.1.1" and got[1][0] == "8.8.8.8"
    assert got[1][1] == "KP" and got[1][2] == "US"
    assert "GOOGLE" in str(got[1][3]).upper() and "CLOUDFLARE" in str(got[0][3]).upper()
    assert all("geo-country:embedded" in str(r[4]) for r in got)
    assert got[1][5] == 131279 and got[1][6] == 15169 and got[0][6] == 13335


def test_port_rule_and_unclassified(workspace: Workspace, tmp_path: Path) -> None:
    f = _flows(
        tmp_path / "f.parquet",
        [
            ("2019-03-01T10:00:00", WATCHED, "8.8.8.8", 6, 8333),
            ("2019-03-01T10:00:01", WATCHED, "8.8.8.8", 6, 47123),
        ],
    )
    ingest_paths(workspace, [f])
    got = _rows(workspace, "SELECT dst_port, category, confidence, evidence FROM flows ORDER BY 1")
    assert got[0][1] == "crypto.p2p" and got[0][2] == pytest.approx(0.4)
    assert "8333" in str(got[0][3])
    assert got[1][1] == "unclassified" and got[1][2] == 0.0 and got[1][3] is None


def _country_csv(path: Path, cc: str) -> Path:
    path.write_text(f"network,country\n203.0.113.0/24,{cc}\n")
    return path


def test_flow_uses_the_snapshot_valid_at_its_time(workspace: Workspace, tmp_path: Path) -> None:
    store = IntelStore(workspace)
    s17 = store.add(
        "geo-country", _country_csv(tmp_path / "a.csv", "NZ"), fmt="csv", name="peers",
        valid_from=_utc("2017-01-01T00:00:00"), valid_to=_utc("2018-01-01T00:00:00"),
    )  # fmt: skip
    s18 = store.add(
        "geo-country", _country_csv(tmp_path / "b.csv", "IN"), fmt="csv", name="peers",
        valid_from=_utc("2018-01-01T00:00:00"), valid_to=_utc("2019-01-01T00:00:00"),
    )  # fmt: skip
    f = _flows(
        tmp_path / "f.parquet",
        [
            ("2017-06-01T10:00:00", WATCHED, PEER, 6, 443),
            ("2018-06-01T10:00:00", WATCHED, PEER, 6, 443),
            ("2019-06-01T10:00:00", WATCHED, PEER, 6, 443),
            # an address the user tables do not cover falls through to the embedded default
            ("2018-06-01T10:00:00", WATCHED, "8.8.8.8", 6, 443),
        ],
    )
    ingest_paths(workspace, [f])
    got = _rows(
        workspace,
        "SELECT year(ts_start), dst_ip, dst_country, intel FROM flows ORDER BY 1, 2",
    )
    by = {(r[0], r[1]): (r[2], str(r[3])) for r in got}
    assert by[(2017, PEER)][0] == "NZ" and s17.id in by[(2017, PEER)][1]
    assert by[(2018, PEER)][0] == "IN" and s18.id in by[(2018, PEER)][1]
    assert s17.id not in by[(2018, PEER)][1]
    assert by[(2019, PEER)][0] is None  # no snapshot covers it in 2019, nothing is guessed
    assert by[(2018, "8.8.8.8")][0] == "US"
    assert "geo-country:embedded" in by[(2018, "8.8.8.8")][1]


def test_reenrich_changes_derived_columns_only(workspace: Workspace, tmp_path: Path) -> None:
    f = _flows(tmp_path / "f.parquet", [("2018-06-01T10:00:00", WATCHED, PEER, 6, 443)])
    ingest_paths(workspace, [f])
    before = _rows(workspace, "SELECT dst_country FROM flows")
    assert before == [(None,)]
    IntelStore(workspace).add("geo-country", _country_csv(tmp_path / "c.csv", "MY"), fmt="csv")
    done = enrich_store(workspace)
    assert [rows for _, rows in done] == [1]
    assert _rows(workspace, "SELECT dst_country FROM flows") == [("MY",)]
    assert _rows(workspace, "SELECT count(*) FROM flows") == [(1,)]
    store = FlowStore(workspace)
    stored = {p for p in workspace.flows_dir.rglob("*.parquet") if SCOPE_DIR not in p.parts}
    assert {p.name for p in stored} == {Path(x.path).name for x in store.catalog.files()}
    # the source's scope file was rewritten with the new country
    (scoped,) = [x.path for x in store.catalog.scope_files() if x.path is not None]
    assert {p.relative_to(workspace.flows_dir).as_posix() for p in
            (workspace.flows_dir / SCOPE_DIR).rglob("*.parquet")} == {scoped}  # fmt: skip
    table = pq.read_table(workspace.flows_dir / scoped)
    assert table.column("remote_country").to_pylist() == ["MY"]


def test_schema_1_files_read_and_upgrade(workspace: Workspace, tmp_path: Path) -> None:
    f = _flows(tmp_path / "f.parquet", [("2018-06-01T10:00:00", WATCHED, "8.8.8.8", 6, 443)])
    ingest_paths(workspace, [f])
    store = FlowStore(workspace)
    (stored,) = store.files()
    # rewrite the stored file as schema 1 wrote it: no enrichment columns, version 1
    old = pq.read_table(stored).drop_columns(list(ENRICHMENT))
    old = old.replace_schema_metadata({METADATA_KEY: b"1"})
    pq.write_table(old, stored)
    assert _rows(workspace, "SELECT dst_country, category FROM flows") == [(None, None)]
    upgraded = read_store_file(stored)
    assert upgraded.schema.names == FLOW_SCHEMA.names
    enrich_store(workspace)
    (new,) = FlowStore(workspace).files()
    table = pq.read_table(new)
    assert table.schema.metadata[METADATA_KEY] == str(SCHEMA_VERSION).encode()
    assert table.select(list(MEASURED)).equals(old.select(list(MEASURED)))
    assert _rows(workspace, "SELECT dst_country FROM flows") == [("US",)]
