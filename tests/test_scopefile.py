"""Scope files: the report's scope written at ingest, equal to the one built from the
store, and kept with their source through force, re-enrichment, removal and sweeps."""

from __future__ import annotations

import csv
import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rogueflow.analyze.context import (
    BASE,
    OPEN_WINDOW,
    SCOPED,
    base_sql,
    load_profile,
    open_scope,
    scoped_sql,
)
from rogueflow.analyze.engine import DuckDBEngine
from rogueflow.enrich.territory import builtin_index
from rogueflow.ops import enrich_store, ingest_paths
from rogueflow.schema import STORE_SCHEMA
from rogueflow.store.catalog import Catalog
from rogueflow.store.flowstore import FlowStore, file_sha256
from rogueflow.store.scopefile import SCOPE_DIR, SCOPE_SCHEMA, ScopeWriter
from rogueflow.workspace import Workspace
from tests.conftest import DemoRun
from tests.test_store import write_csv

INDEXED = [t.code for t in builtin_index().territories]


def write_territory_csv(path: Path, n: int, *, seed: int = 9) -> Path:
    """Flows of kp's prefixes with the world, and a fifth of them inside kp."""
    rng = np.random.default_rng(seed)
    t0 = int(datetime(2017, 3, 1, tzinfo=UTC).timestamp())
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "sa", "da", "sp", "dp", "pr", "ipkt", "ibyt"])
        for k in range(n):
            inside = f"175.45.{176 + k % 4}.{k % 250}"
            other = ["8.8.8.8", "2.176.0.9", "210.52.109.7", "1.2.3.4", "9.9.9.9"][k % 5]
            pair = (inside, other) if k % 3 else (other, inside)
            ts = t0 + int(rng.integers(0, 3 * 86_400))
            w.writerow([ts, *pair, 1024 + k % 5000, 443, "tcp", k % 7 + 1, 60 * k + 40])
    return path


def scope_rows_differ(eng: DuckDBEngine, code: str) -> tuple[int, int, int]:
    """(rows only built from the store, rows only in the scope files, rows in scope)."""
    t = load_profile(code, None).territory
    files = eng.store.scope_files(code, eng.files)
    assert files, "every source has its scope-file row and some flow touches the territory"
    eng.parquet_view(SCOPED, files)
    lo, hi = OPEN_WINDOW
    built = f"SELECT * FROM ({base_sql(t, lo, hi, indexed=True)})"
    read = f"SELECT * FROM ({scoped_sql(t, lo, hi)})"
    assert eng.sql(f"DESCRIBE {built}").fetchall() == eng.sql(f"DESCRIBE {read}").fetchall()
    only_built = eng.sql(f"SELECT count(*) FROM ({built} EXCEPT ALL {read})").fetchall()[0][0]
    only_read = eng.sql(f"SELECT count(*) FROM ({read} EXCEPT ALL {built})").fetchall()[0][0]
    n = eng.sql(f"SELECT count(*) FROM ({read})").fetchall()[0][0]
    return int(only_built), int(only_read), int(n)


def scope_dir_files(ws: Workspace) -> set[str]:
    return {
        p.relative_to(ws.flows_dir).as_posix()
        for p in (ws.flows_dir / SCOPE_DIR).glob("*/*.parquet")
    }


def catalog_scopes(ws: Workspace) -> list[tuple[str, str, str | None, int]]:
    cat = Catalog(ws.catalog_path)
    try:
        return [(f.source_id, f.territory, f.path, f.rows) for f in cat.scope_files()]
    finally:
        cat.close()


def test_the_demo_scope_files_hold_the_scope_built_from_the_store(
    demo_reference: DemoRun,
) -> None:
    """Row for row, column for column (names and types), the demo's kp scope read from
    its scope files equals base_sql over the stored flows; every source has a row for
    every indexed territory."""
    eng = DuckDBEngine(demo_reference.ws)
    try:
        only_built, only_read, n = scope_rows_differ(eng, "kp")
        assert (only_built, only_read) == (0, 0)
        assert n > 50_000
        sources = {s.source_id for s in eng.store.catalog.sources()}
    finally:
        eng.close()
    rows = catalog_scopes(demo_reference.ws)
    assert {(s, t) for s, t, _, _ in rows} == {(s, t) for s in sources for t in INDEXED}
    assert sum(r for _, t, _, r in rows if t == "kp") == n


def test_a_report_reads_its_scope_from_the_scope_files_and_finds_the_same(
    demo_reference: DemoRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The session's demo report read the scope files (its provenance says so); built
    from the store instead (use_scope_files = 0), every finding is the same."""
    from rogueflow.report import build_report

    prov = json.dumps(demo_reference.doc)
    assert "scope files of the store's territory index, kp" in prov
    monkeypatch.setenv("ROGUEFLOW_USE_SCOPE_FILES", "0")
    events = demo_reference.input / "events.csv"
    out = build_report(demo_reference.ws, "kp", events=events, out=tmp_path / "r")
    doc = json.loads((out.out_dir / "findings.json").read_text())
    assert "scope files of the store's territory index" not in json.dumps(doc)
    assert "FROM flows_stored f" in json.dumps(doc)

    def judged(value: object) -> object:
        """Findings without provenance, floats to 12 digits (sums in another order)."""
        if isinstance(value, float):
            return float(f"{value:.12g}")
        if isinstance(value, list):
            return [judged(v) for v in value]
        if isinstance(value, dict):
            return {k: judged(v) for k, v in value.items() if k != "provenance"}
        return value

    assert judged(doc["findings"]) == judged(demo_reference.doc["findings"])


def test_a_flow_between_two_indexed_territories_is_in_both_files_sided_for_each(
    tmp_path: Path,
) -> None:
    """The built-in profiles index kp alone; two territories' files from one source,
    each flow sided for the territory whose file holds it."""
    src = pa.array(["kp", "kp", "xx", None, "kp"])
    dst = pa.array(["xx", "kp", "kp", "kp", None])
    n = len(src)
    table = pa.table(
        {
            f.name: pa.nulls(n, f.type)
            if f.nullable
            else pa.array(np.arange(n), pa.int64()).cast(f.type)
            if not pa.types.is_fixed_size_binary(f.type)
            else pa.array([bytes([k]) * 16 for k in range(n)], f.type)
            for f in STORE_SCHEMA
            if f.name not in ("src_territory", "dst_territory", "source_format", "source_id")
        }
    )
    table = table.append_column("source_format", pa.array(["csv"] * n))
    table = table.append_column("source_id", pa.array(["0123456789abcdef"] * n))
    table = table.append_column("src_territory", src).append_column("dst_territory", dst)
    table = table.select(STORE_SCHEMA.names).cast(STORE_SCHEMA)
    writer = ScopeWriter(tmp_path, "0123456789abcdef-x.parquet", ["kp", "xx", "yy"],
                         row_group_rows=2, zstd_level=1)  # fmt: skip
    writer.add(table.slice(0, 2))
    writer.add(table.slice(2))
    files = {f.territory: f for f in writer.close()}
    assert {c: f.rows for c, f in files.items()} == {"kp": 5, "xx": 2, "yy": 0}
    assert files["yy"].path is None
    for code, want in (
        ("kp", {0: "out", 1: "internal", 2: "in", 3: "in", 4: "out"}),
        ("xx", {0: "in", 2: "out"}),
    ):
        path = files[code].path
        assert path is not None
        got = pq.read_table(tmp_path / path)
        assert got.schema.remove_metadata() == SCOPE_SCHEMA
        # row k has source port k and destination port k: the inside end's port is
        # the row's either way, so the row is known by the side's own end
        internal = got.column("internal_port").to_pylist()
        assert dict(zip(internal, got.column("side").to_pylist(), strict=True)) == want
        addrs = got.column("internal_addr").to_pylist()
        remote = got.column("remote_addr").to_pylist()
        for k, side, inside, outside in zip(
            internal, got.column("side").to_pylist(), addrs, remote, strict=True
        ):
            src, dst = bytes([k]) * 16, bytes([k]) * 16
            assert (inside, outside) == ((src, dst) if side != "in" else (dst, src))


def test_scope_files_follow_their_source(tmp_path: Path) -> None:
    """Written with the source's files, replaced by --force and by re-enrichment,
    removed with the source; an orphan is swept; a source without its rows (ingested
    before scope files existed) makes the report build its scope from the store, with
    the same rows."""
    ws = Workspace(tmp_path / "ws")
    world = write_csv(tmp_path / "world.csv", 3_000, days=2, seed=3)
    kp = write_territory_csv(tmp_path / "kp.csv", 2_000)
    ingest_paths(ws, [world, kp])
    kp_id, world_id = file_sha256(kp)[:16], file_sha256(world)[:16]

    rows = {(s, t): (p, n) for s, t, p, n in catalog_scopes(ws)}
    assert set(rows) == {(s, t) for s in (kp_id, world_id) for t in INDEXED}
    assert rows[(kp_id, "kp")][1] == 2_000  # every flow has a kp end
    committed = {p for p, _ in rows.values() if p is not None}
    assert committed == scope_dir_files(ws)
    eng = DuckDBEngine(ws)
    try:
        assert scope_rows_differ(eng, "kp") == (0, 0, 2_000)
    finally:
        eng.close()

    def files_of(source: str) -> set[str]:
        return {p for s, _, p, _ in catalog_scopes(ws) if s == source and p is not None}

    before = files_of(kp_id)
    ingest_paths(ws, [kp], force=True)
    after = files_of(kp_id)
    assert after and after.isdisjoint(before)
    assert scope_dir_files(ws) == files_of(kp_id) | files_of(world_id)

    # re-enrichment rewrites them (an older source gains them the same way)
    db = sqlite3.connect(ws.catalog_path)
    db.execute("DELETE FROM scope_files WHERE source_id = ?", (world_id,))
    db.commit()
    db.close()
    eng = DuckDBEngine(ws)
    try:
        assert eng.store.scope_files("kp", eng.files) is None
    finally:
        eng.close()
    t = load_profile("kp", None)
    scope = open_scope(ws, t)
    try:
        assert "FROM flows_stored f" in scope.log[0].sql  # built from the store
        from_store = scope.flows
    finally:
        scope.close()
    enrich_store(ws)
    assert files_of(kp_id).isdisjoint(after)
    assert scope_dir_files(ws) == files_of(kp_id) | files_of(world_id)
    scope = open_scope(ws, t)
    try:
        assert scope.log[0].label == f"view {BASE}"
        assert "scope files of the store's territory index" in scope.log[0].sql
        assert scope.flows == from_store
    finally:
        scope.close()

    store = FlowStore(ws)
    try:
        store.remove_source(kp_id)
        assert files_of(kp_id) == set() and scope_dir_files(ws) == files_of(world_id)
        orphan = ws.flows_dir / SCOPE_DIR / "kp" / "orphan.parquet"
        orphan.write_bytes(b"x")
        with ws.write_lock():
            store.sweep()
        assert not orphan.exists()
    finally:
        store.close()
