"""The store's guarantees: dedup, force, crash safety, atomic failure, round trips,
day partitions, and one writer at a time."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings

from rogueflow.analyze.engine import DuckDBEngine
from rogueflow.errors import InputError, StoreError
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.pipeline import ingest_file
from rogueflow.ops import ingest_paths
from rogueflow.schema import MEASURED
from rogueflow.store.catalog import Catalog
from rogueflow.store.flowstore import FlowStore, file_sha256
from rogueflow.store.rollup import QUARTER_US, rollup_path
from rogueflow.workspace import Workspace
from tests.strategies import flow_tables

ROOT = Path(__file__).resolve().parent.parent


def write_csv(
    path: Path, n: int, *, start: str = "2017-03-01", days: int = 3, seed: int = 0
) -> Path:
    """An nfdump-preset CSV of ``n`` flows spread over ``days`` UTC days (epoch-second times)."""
    rng = np.random.default_rng(seed)
    t0 = int(datetime.fromisoformat(start).replace(tzinfo=UTC).timestamp())
    ts = t0 + np.sort(rng.integers(0, days * 86_400, n))

    def quads(v: np.ndarray) -> pa.Array:
        parts = [pc.cast(pa.array((v >> s) & 255), pa.string()) for s in (24, 16, 8, 0)]
        return pc.binary_join_element_wise(*parts, ".")

    table = pa.table(
        {
            "ts": ts,
            "te": ts + rng.integers(0, 600, n),
            "sa": quads(rng.integers(0, 2**32, n, dtype=np.uint64)),
            "da": quads(rng.integers(0, 2**32, n, dtype=np.uint64)),
            "sp": rng.integers(0, 65536, n),
            "dp": rng.integers(0, 65536, n),
            "pr": rng.choice([1, 6, 17], n),
            "ipkt": rng.integers(1, 1000, n),
            "ibyt": rng.integers(40, 10**6, n),
        }
    )
    pacsv.write_csv(table, path, pacsv.WriteOptions(quoting_style="none"))
    return path


def store_parquet_files(ws: Workspace) -> set[str]:
    return {p.relative_to(ws.flows_dir).as_posix() for p in ws.flows_dir.glob("day=*/*.parquet")}


def rollup_parquet_files(ws: Workspace) -> set[str]:
    root = rollup_path(ws.flows_dir, "")
    return {p.relative_to(root).as_posix() for p in root.rglob("*.parquet")}


def staged_files(ws: Workspace) -> list[Path]:
    return list(ws.staging_dir.rglob("*")) if ws.staging_dir.exists() else []


def count(ws: Workspace, where: str = "TRUE") -> int:
    eng = DuckDBEngine(ws)
    try:
        return int(eng.sql(f"SELECT count(*) FROM flows WHERE {where}").fetchall()[0][0])
    finally:
        eng.close()


def catalog_files(ws: Workspace) -> set[str]:
    cat = Catalog(ws.catalog_path)
    try:
        return {f.path for f in cat.files()}
    finally:
        cat.close()


def test_same_file_twice_is_skipped_and_force_replaces(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    src = write_csv(tmp_path / "a.csv", 5_000, days=3)
    (first,) = ingest_paths(ws, [src])
    assert (first.rows, first.skipped, first.replaced) == (5_000, False, False)
    assert first.files == 3
    files_before = store_parquet_files(ws)
    assert files_before == catalog_files(ws) == rollup_parquet_files(ws)

    # the same content under another name is the same source
    copy = tmp_path / "copy-of-a.csv"
    copy.write_bytes(src.read_bytes())
    second, third = ingest_paths(ws, [src, copy])
    for again in (second, third):
        assert again.skipped and again.rows == 5_000 and again.source_id == first.source_id
    assert store_parquet_files(ws) == files_before
    assert count(ws) == 5_000

    (forced,) = ingest_paths(ws, [src], force=True)
    assert forced.replaced and not forced.skipped
    assert forced.rows == 5_000 and forced.source_id == first.source_id
    files_after = store_parquet_files(ws)
    assert len(files_after) == len(files_before)
    assert files_after.isdisjoint(files_before), "force must write new files"
    assert files_after == catalog_files(ws), "the replaced files must be deleted"
    assert rollup_parquet_files(ws) == files_after, "and their roll-ups with them"
    assert count(ws) == 5_000
    cat = Catalog(ws.catalog_path)
    try:
        assert [s.sha256 for s in cat.sources()] == [file_sha256(src)]
    finally:
        cat.close()


@pytest.fixture(scope="module")
def big_csv(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    n = 600_000
    return write_csv(tmp_path_factory.mktemp("big") / "big.csv", n, days=4, seed=7), n


def _ingest_cmd(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "rogueflow.cli.main", "-w", str(ws), "-q", "ingest", *args]


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROGUEFLOW_")}
    env.update(extra)
    return env


@pytest.mark.slow
def test_sigkill_midway_leaves_nothing_and_rerun_completes(
    tmp_path: Path, big_csv: tuple[Path, int]
) -> None:
    big, n_big = big_csv
    ws_dir = tmp_path / "ws"
    ws = Workspace(ws_dir)
    early = write_csv(tmp_path / "early.csv", 2_000, start="2016-01-01", days=2, seed=1)
    ingest_paths(ws, [early])

    env = _child_env(ROGUEFLOW_BUFFER_ROWS="20000", ROGUEFLOW_BATCH_ROWS="10000")
    proc = subprocess.Popen(_ingest_cmd(ws_dir, str(big)), env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        while not any(p.suffix == ".parquet" for p in staged_files(ws)):
            assert proc.poll() is None, "the ingest finished before it could be killed"
            assert time.monotonic() < deadline, "no staging files appeared"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # Readable, the earlier file intact, nothing of the killed one visible.
    assert count(ws) == 2_000
    assert count(ws, f"source_file = '{big.resolve()}'") == 0
    cat = Catalog(ws.catalog_path)
    try:
        assert cat.source_by_sha(file_sha256(big)) is None
    finally:
        cat.close()

    rerun = subprocess.run(
        _ingest_cmd(ws_dir, str(big)), env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr
    assert f"{n_big:,} flows" in rerun.stdout and "ingested:" in rerun.stdout
    assert count(ws, f"source_file = '{big.resolve()}'") == n_big
    assert count(ws) == 2_000 + n_big
    # no orphans: the files on disk are exactly the catalog's, staging is empty
    assert store_parquet_files(ws) == catalog_files(ws) == rollup_parquet_files(ws)
    assert staged_files(ws) == []


def test_bad_row_in_the_middle_leaves_nothing(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    (ws.root / "config.toml").write_text("buffer_rows = 500\n")
    ws = Workspace(tmp_path / "ws")
    src = write_csv(tmp_path / "bad.csv", 20_000, days=3)
    lines = src.read_text().splitlines()
    cols = lines[15_000].split(",")
    cols[2] = "10.0.0.999"  # sa of data row 15000, which is line 15001
    lines[15_000] = ",".join(cols)
    src.write_text("\n".join(lines) + "\n")

    store = FlowStore(ws)
    staged_during: list[int] = []

    def watch(_rows: int) -> None:
        staged_during.append(sum(1 for p in staged_files(ws) if p.suffix == ".parquet"))

    try:
        with pytest.raises(InputError) as info:
            ingest_file(store, src, options=ReadOptions(batch_rows=1_000), on_rows=watch)
    finally:
        store.close()
    err = info.value
    assert err.path == str(src.resolve())
    assert err.where == "line 15001"
    assert "sa" in err.problem and "10.0.0.999" in err.problem
    assert max(staged_during) > 0, "the test must fail after files were staged"
    assert staged_files(ws) == []
    assert store_parquet_files(ws) == set() == rollup_parquet_files(ws)
    assert count(ws) == 0
    cat = Catalog(ws.catalog_path)
    try:
        assert cat.sources() == []
    finally:
        cat.close()


def _rows(table: pa.Table) -> list[tuple[object, ...]]:
    return sorted(zip(*(table.column(c).to_pylist() for c in MEASURED), strict=True))


@settings(max_examples=25, suppress_health_check=[HealthCheck.too_slow])
@given(flow_tables(min_rows=1, max_rows=30))
def test_canonical_parquet_round_trip(table: pa.Table) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "canonical.parquet"
        pq.write_table(table, src)
        ws = Workspace(Path(tmp) / "ws")
        store = FlowStore(ws)
        try:
            result = ingest_file(store, src)
        finally:
            store.close()
        assert result.format == "parquet" and result.rows == table.num_rows
        eng = DuckDBEngine(ws)
        try:
            got = eng.sql(f"SELECT {', '.join(MEASURED)} FROM flows").to_arrow_table()
            kinds = eng.sql("SELECT DISTINCT source_format, source_id FROM flows").fetchall()
        finally:
            eng.close()
        assert _rows(got) == _rows(table)
        assert kinds == [("parquet", result.source_id)]


def test_day_partitions_match_utc_dates(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    (ws.root / "config.toml").write_text("buffer_rows = 700\n")
    ws = Workspace(tmp_path / "ws")
    # flows straddling midnight UTC on both sides, over six days
    base = datetime(2018, 5, 3, tzinfo=UTC)
    stamps = [
        base + timedelta(days=d, hours=23, minutes=59, seconds=59, microseconds=999_999)
        for d in range(6)
    ]
    stamps += [base + timedelta(days=d) for d in range(6)]
    src = write_csv(tmp_path / "days.csv", 3_000, start="2018-05-03", days=6, seed=3)
    extra = tmp_path / "edges.csv"
    with open(extra, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "sa", "da", "pr", "ipkt", "ibyt"])
        for t in stamps:
            w.writerow([t.isoformat(), "175.45.176.1", "8.8.8.8", "udp", 1, 60])
    ingest_paths(ws, [src, extra])
    cat = Catalog(ws.catalog_path)
    try:
        files = cat.files()
    finally:
        cat.close()
    days = {f.day for f in files}
    assert days == {(base + timedelta(days=d)).date().isoformat() for d in range(6)}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    total = 0
    for f in files:
        assert f.path.startswith(f"day={f.day}/")
        got = con.execute(
            "SELECT DISTINCT CAST(ts_start AS DATE)::VARCHAR "
            "FROM read_parquet(?, hive_partitioning=false)",
            [str(ws.flows_dir / f.path)],
        ).fetchall()
        assert got == [(f.day,)]
        total += pq.ParquetFile(ws.flows_dir / f.path).metadata.num_rows
        assert pq.ParquetFile(ws.flows_dir / f.path).metadata.num_rows == f.rows
    con.close()
    assert total == 3_000 + len(stamps)
    assert count(ws, "CAST(ts_start AS DATE) = DATE '2018-05-04'") == sum(
        f.rows for f in files if f.day == "2018-05-04"
    )


def test_second_writer_waits_for_the_lock(tmp_path: Path) -> None:
    """write_source takes the workspace lock blocking, so a second writer waits, then runs."""
    ws_dir = tmp_path / "ws"
    ws = Workspace(ws_dir)
    src = write_csv(tmp_path / "small.csv", 1_000, days=1)
    with ws.write_lock():
        # a non-blocking attempt fails clearly
        with (
            pytest.raises(StoreError, match="being written by another rogueflow process"),
            ws.write_lock(wait=False),
        ):
            pass
        proc = subprocess.Popen(
            _ingest_cmd(ws_dir, str(src)),
            env=_child_env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            time.sleep(2.0)
            assert proc.poll() is None, "the second writer did not wait for the lock"
            assert count(ws) == 0
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "1,000 flows" in out
    assert count(ws) == 1_000


def test_concurrent_ingests_of_one_file_store_it_once(tmp_path: Path) -> None:
    ws_dir = tmp_path / "ws"
    src = write_csv(tmp_path / "same.csv", 50_000, days=2)
    procs = [
        subprocess.Popen(
            _ingest_cmd(ws_dir, str(src)),
            env=_child_env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    states = sorted(o[0].split(":")[0] for o in outs)
    # both may have planned before either committed; the lock serialises them and
    # the second sees the first's commit
    assert states == ["ingested", "skipped (already ingested; --force replaces)"]
    ws = Workspace(ws_dir)
    assert count(ws) == 50_000
    assert store_parquet_files(ws) == catalog_files(ws)


def test_rollups_sum_the_territory_flows_per_quarter_hour(tmp_path: Path) -> None:
    """Each store file's roll-up holds exactly its flows touching an indexed territory,
    grouped by UTC quarter-hour and the roll-up keys; they leave with their source."""
    ws = Workspace(tmp_path / "ws")
    src = write_csv(tmp_path / "a.csv", 4_000, days=2, seed=5)
    kp = tmp_path / "kp.csv"
    rng = np.random.default_rng(9)
    t0 = int(datetime(2017, 3, 1, tzinfo=UTC).timestamp())
    with open(kp, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "sa", "da", "pr", "ipkt", "ibyt"])
        for k in range(1_500):
            inside = f"175.45.{176 + k % 4}.{k % 250}"
            other = ["8.8.8.8", "210.52.109.7", "77.94.35.200", "1.2.3.4"][k % 4]
            pair = (inside, other) if k % 3 else (other, inside)
            w.writerow([t0 + int(rng.integers(0, 2 * 86_400)), *pair, "tcp", k % 7 + 1, 60 * k])
    ingest_paths(ws, [src, kp])
    assert rollup_parquet_files(ws) == catalog_files(ws)
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        for rel in catalog_files(ws):
            flows = str(ws.flows_dir / rel)
            want = con.execute(
                f"""SELECT epoch_us(ts_start) // {QUARTER_US} AS q, src_territory, dst_territory,
                           category, count(*), sum(packets), sum(bytes), sum(rev_bytes)
                    FROM read_parquet(?) WHERE src_territory IS NOT NULL
                       OR dst_territory IS NOT NULL
                    GROUP BY ALL ORDER BY ALL""",
                [flows],
            ).fetchall()
            got = con.execute(
                f"""SELECT epoch_us(qh) // {QUARTER_US} AS q, src_territory, dst_territory,
                           category, sum(flows), sum(packets), sum(bytes), sum(rev_bytes)
                    FROM read_parquet(?) GROUP BY ALL ORDER BY ALL""",
                [str(rollup_path(ws.flows_dir, rel))],
            ).fetchall()
            assert got == want
            if rel.split("/")[1].startswith(file_sha256(kp)[:16]):
                assert len(want) > 50  # the kp flows' files roll up something
    finally:
        con.close()
    # removing a source removes its roll-ups; an orphan roll-up is swept
    store = FlowStore(ws)
    try:
        store.remove_source(file_sha256(kp)[:16])
        assert rollup_parquet_files(ws) == catalog_files(ws)
        orphan = rollup_path(ws.flows_dir, "day=2017-03-01/orphan.parquet")
        orphan.write_bytes(b"x")
        with ws.write_lock():
            store.sweep()
        assert not orphan.exists()
        assert rollup_parquet_files(ws) == catalog_files(ws)
    finally:
        store.close()


def test_a_catalog_from_before_the_claim_copies_opens_upgraded(tmp_path: Path) -> None:
    """Catalogs written before ``files.territories`` gain the column (NULL for the rows
    they hold, so their claims are read from the footers) and keep working."""
    import sqlite3

    path = tmp_path / "catalog.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('version', '1');
        CREATE TABLE sources (source_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL UNIQUE,
            path TEXT NOT NULL, format TEXT NOT NULL, size INTEGER NOT NULL,
            rows INTEGER NOT NULL, first_ts TEXT, last_ts TEXT, ingested_at TEXT NOT NULL,
            schema_version INTEGER NOT NULL);
        CREATE TABLE files (path TEXT PRIMARY KEY,
            source_id TEXT NOT NULL REFERENCES sources(source_id), day TEXT NOT NULL,
            rows INTEGER NOT NULL, bytes INTEGER NOT NULL);
        INSERT INTO sources VALUES ('s1', 'h1', '/x', 'csv', 1, 5, NULL, NULL, 'now', 3);
        INSERT INTO files VALUES ('day=2018-01-01/a.parquet', 's1', '2018-01-01', 5, 100);
        """
    )
    db.close()
    for _ in range(2):  # the second open finds the column already there
        cat = Catalog(path)
        (f,) = cat.files()
        assert (f.path, f.rows, f.territories) == ("day=2018-01-01/a.parquet", 5, None)
        cat.close()
