"""Analyses on synthetic canonical flows with known answers (volume, pattern of life, stats)."""

from __future__ import annotations

import ipaddress
import json
import shutil
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rogueflow import addr
from rogueflow.analyze import builtin_analyses, load_profile, open_scope, parse_baseline, stats
from rogueflow.analyze.context import ProfileInfo, one_of, quarter_hours
from rogueflow.analyze.pattern import PatternOfLife
from rogueflow.analyze.volume import VolumeGrowth
from rogueflow.enrich.territory import INDEX_KEY, fingerprint, member_mask, read_claim
from rogueflow.errors import ConfigError, RogueflowError
from rogueflow.findings import Check, fold, grade
from rogueflow.ops import enrich_store, ingest_paths
from rogueflow.schema import METADATA_KEY
from rogueflow.store.flowstore import FlowStore
from rogueflow.territory import load_builtin
from rogueflow.workspace import Workspace

PYONGYANG = ZoneInfo("Asia/Pyongyang")
GAP = (date(2018, 7, 1), date(2018, 7, 10))
LEVELS = {2017: 10, 2018: 20, 2019: 40}
HOSTS = {2017: 5, 2018: 10, 2019: 20}


def write_flows(
    path: Path,
    ts_us: np.ndarray,
    src: list[str],
    dst: list[str],
    *,
    sampling: int = 1,
    exporter: str = "sensor-1",
) -> Path:
    """A Parquet file with canonical column names (ingested with the 'rogueflow' preset)."""
    n = len(ts_us)
    t = pa.array(np.asarray(ts_us, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "ts_start": t,
            "ts_end": t,
            "src_addr": addr.parse_array(src),
            "dst_addr": addr.parse_array(dst),
            "src_port": pa.array(np.full(n, 40000), pa.uint16()),
            "dst_port": pa.array(np.full(n, 443), pa.uint16()),
            "proto": pa.array(np.full(n, 6), pa.uint8()),
            "packets": pa.array(np.full(n, 3), pa.int64()),
            "bytes": pa.array(np.full(n, 100), pa.int64()),
            "rev_packets": pa.array(np.full(n, 1), pa.int64()),
            "rev_bytes": pa.array(np.full(n, 50), pa.int64()),
            "sampling_rate": pa.array(np.full(n, sampling), pa.uint32()),
            "exporter": pa.array([exporter] * n, pa.string()),
        }
    )
    pq.write_table(table, path)
    return path


def us(t: datetime) -> int:
    return int(t.timestamp() * 1_000_000)


@dataclass
class Dataset:
    ws: Workspace
    ts_us: np.ndarray  # territory flows only
    source_id: str


def build_three_years(root: Path, seed: int = 7, days_per_year: int = 366) -> Dataset:
    """Poisson daily counts stepping 10 → 20 → 40 at each new year, a 10-day gap in 2018,
    times of day drawn so 2017 leans to evenings and 2019 to local working hours, plus
    flows that touch no territory (which must be ignored)."""
    rng = np.random.default_rng(seed)
    ts: list[np.ndarray] = []
    day = date(2017, 1, 1)
    while day <= date(2019, 12, 31):
        if not GAP[0] <= day <= GAP[1] and day.timetuple().tm_yday <= days_per_year:
            n = int(rng.poisson(LEVELS[day.year]))
            base = us(datetime(day.year, day.month, day.day, tzinfo=UTC))
            if day.year == 2019 and day.weekday() < 5:
                # around 01:00–08:00 UTC, i.e. 10:00–17:00 in Pyongyang
                secs = rng.integers(3600, 8 * 3600, n)
            elif day.year == 2017:
                secs = rng.integers(8 * 3600, 14 * 3600, n)  # 16:30–22:30 local
            else:
                secs = rng.integers(0, 86400, n)
            ts.append(base + secs.astype(np.int64) * 1_000_000)
        day += timedelta(days=1)
    t = np.concatenate(ts)
    t.sort()
    years = np.array([datetime.fromtimestamp(x / 1e6, UTC).year for x in t])
    host_idx = np.arange(len(t)) % np.array([HOSTS[y] for y in years])
    hosts = [f"175.45.176.{1 + i}" for i in host_idx]
    outbound = np.arange(len(t)) % 2 == 1
    src = [h if o else "8.8.4.4" for h, o in zip(hosts, outbound, strict=True)]
    dst = ["8.8.8.8" if o else h for h, o in zip(hosts, outbound, strict=True)]
    # noise: flows with neither end in the territory
    noise = us(datetime(2018, 3, 1, tzinfo=UTC)) + np.arange(500, dtype=np.int64) * 60_000_000
    all_t = np.concatenate([t, noise])
    src += ["1.1.1.1"] * len(noise)
    dst += ["9.9.9.9"] * len(noise)
    f = write_flows(root / "flows.parquet", all_t, src, dst)
    ws = Workspace(root / "ws")
    res = ingest_paths(ws, [f])
    return Dataset(ws, t, res[0].source_id)


@pytest.fixture(scope="module")
def three_years(tmp_path_factory: pytest.TempPathFactory) -> Dataset:
    with pytest.MonkeyPatch.context() as mp:
        # The store fsyncs each of the ~1,100 day files; durability is not under test here.
        mp.setattr("os.fsync", lambda fd: None)
        return build_three_years(tmp_path_factory.mktemp("three-years"))


@pytest.fixture(scope="module")
def outputs(three_years: Dataset):  # type: ignore[no-untyped-def]
    scope = open_scope(three_years.ws, load_profile("kp", None))
    try:
        findings, charts = {}, {}
        for a in builtin_analyses():
            out = a.run(scope)
            findings.update({f.id: f for f in out.findings})
            charts.update(out.charts)
        yield findings, charts, scope.log
    finally:
        scope.close()


def _daily_counts(ts_us: np.ndarray) -> dict[date, int]:
    days = (ts_us // 86_400_000_000).astype(np.int64)
    uniq, counts = np.unique(days, return_counts=True)
    return {
        date(1970, 1, 1) + timedelta(days=int(d)): int(c) for d, c in zip(uniq, counts, strict=True)
    }


def test_growth_ratio_exact(three_years: Dataset, outputs) -> None:  # type: ignore[no-untyped-def]
    growth = outputs[0]["volume.growth"]
    daily = _daily_counts(three_years.ts_us)
    per_year = {y: [c for d, c in daily.items() if d.year == y] for y in (2017, 2018, 2019)}
    fpd = {y: sum(v) / len(v) for y, v in per_year.items()}
    m = growth.metrics
    for y in (2017, 2018, 2019):
        assert m[f"flows_{y}"].value == sum(per_year[y])
        assert m[f"days_with_data_{y}"].value == len(per_year[y])
        assert m[f"flows_per_day_{y}"].value == pytest.approx(fpd[y], rel=1e-12)
        # bytes = (100 + 50) × sampling rate 1, both directions
        assert m[f"bytes_per_day_{y}"].value == pytest.approx(150 * fpd[y], rel=1e-12)
        assert m[f"packets_per_day_{y}"].value == pytest.approx(4 * fpd[y], rel=1e-12)
        assert m[f"active_hosts_{y}"].value == HOSTS[y]
    assert m["days_with_data_2018"].value == 365 - 10  # the gap is not counted as quiet days
    ratio = fpd[2019] / fpd[2017]
    assert m["growth_ratio"].value == pytest.approx(ratio, rel=1e-12)
    assert m["growth_pct"].value == pytest.approx((ratio - 1) * 100, rel=1e-12)
    assert m["growth_ratio"].low < ratio < m["growth_ratio"].high
    assert m["growth_ratio"].low > 3.5 and m["growth_ratio"].high < 4.5
    assert growth.confidence.level == "high"
    assert "fourfold" in growth.statement and f"{(ratio - 1) * 100:+.0f}%" in growth.statement


def test_change_points_found_at_steps(outputs) -> None:  # type: ignore[no-untyped-def]
    cp = outputs[0]["volume.change_points"]
    steps = sorted(
        date.fromisoformat(k.removeprefix("step_")) for k in cp.metrics if k.startswith("step_")
    )
    assert cp.metrics["change_points"].value == len(steps) == 2
    for found, true in zip(steps, (date(2018, 1, 1), date(2019, 1, 1)), strict=True):
        assert abs((found - true).days) <= 2
    for k, m in cp.metrics.items():
        if k.startswith("step_"):
            assert m.value == pytest.approx(2.0, rel=0.1)


def _local(t_us: int) -> datetime:
    return datetime.fromtimestamp(t_us / 1e6, UTC).astimezone(PYONGYANG)


def test_pattern_shares_exact(three_years: Dataset, outputs) -> None:  # type: ignore[no-untyped-def]
    pat = outputs[0]["pattern.weekday_shift"]
    # an independent oracle: Python's zoneinfo on every constructed timestamp
    for y in (2017, 2018, 2019):
        sel = [x for x in three_years.ts_us if datetime.fromtimestamp(x / 1e6, UTC).year == y]
        loc = [_local(int(x)) for x in sel]
        n = len(loc)
        weekday = sum(t.weekday() < 5 for t in loc) / n
        business = (
            sum(t.weekday() < 5 and 9 * 60 <= t.hour * 60 + t.minute < 18 * 60 for t in loc) / n
        )
        evening = sum(17 <= t.hour < 23 for t in loc) / n
        m = pat.metrics
        assert m[f"weekday_share_{y}"].value == pytest.approx(weekday, abs=1e-12)
        assert m[f"weekend_share_{y}"].value == pytest.approx(1 - weekday, abs=1e-12)
        assert m[f"business_hours_share_{y}"].value == pytest.approx(business, abs=1e-12)
        assert m[f"evening_share_{y}"].value == pytest.approx(evening, abs=1e-12)
        for name in ("weekday", "business_hours", "evening", "weekend"):
            mm = m[f"{name}_share_{y}"]
            assert 0 <= mm.low <= mm.value <= mm.high <= 1
    assert pat.metrics["business_hours_share_change_pp"].low > 0
    assert "shifted toward weekday business hours" in pat.statement
    # the weekday share itself was built not to move: that costs one confidence step
    assert (
        pat.metrics["weekday_share_change_pp"].low < 0 < pat.metrics["weekday_share_change_pp"].high
    )
    assert pat.confidence.level == "moderate"
    assert any("working days share is within day-to-day" in r for r in pat.confidence.reasons)
    split = [t for t in pat.evidence if t.title == "Shares per year by side"]
    assert split and {r[1] for r in split[0].rows} == {"in", "out"}


def test_local_time_follows_zone_history(tmp_path: Path) -> None:
    moments = [
        datetime(2017, 6, 5, 0, 45, tzinfo=UTC),  # Mon 09:15 at +08:30: business hours
        datetime(2017, 6, 5, 0, 15, tzinfo=UTC),  # Mon 08:45: before business hours
        datetime(2019, 6, 3, 0, 45, tzinfo=UTC),  # Mon 09:45 at +09:00
        datetime(2019, 6, 3, 0, 15, tzinfo=UTC),  # Mon 09:15: business hours now
        datetime(2018, 5, 4, 14, 59, tzinfo=UTC),  # Fri 23:29 at +08:30
        datetime(2018, 5, 4, 15, 0, tzinfo=UTC),  # Sat 00:00 at +09:00 (the switch)
    ]
    f = write_flows(
        tmp_path / "f.parquet",
        np.array([us(m) for m in moments]),
        ["175.45.176.9"] * len(moments),
        ["8.8.8.8"] * len(moments),
    )
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [f])
    scope = open_scope(ws, load_profile("kp", None))
    try:
        rows = scope.rows(
            "t",
            """
            SELECT ts_utc, local_ts, local_weekday, local_hour, local_minute, local_day
            FROM territory_flows ORDER BY ts_utc""",
        )
    finally:
        scope.close()
    got = {r["ts_utc"].replace(tzinfo=UTC): r for r in rows}
    expect = {
        moments[0]: ("09:15", 0),
        moments[1]: ("08:45", 0),
        moments[2]: ("09:45", 0),
        moments[3]: ("09:15", 0),
        moments[4]: ("23:29", 4),
        moments[5]: ("00:00", 5),
    }
    for m, (hhmm, wd) in expect.items():
        r = got[m]
        assert r["local_ts"].strftime("%H:%M") == hhmm
        assert r["local_weekday"] == wd
        h, mi = map(int, hhmm.split(":"))
        assert (r["local_hour"], r["local_minute"]) == (h, h * 60 + mi)
    # 0:45 UTC counts as business hours in both years; 0:15 only after the switch
    scope = open_scope(ws, load_profile("kp", None), date(2017, 1, 1), date(2019, 12, 31))
    try:
        out = PatternOfLife().run(scope)
    finally:
        scope.close()
    m = out.findings[0].metrics
    assert m["business_hours_share_2017"].value == pytest.approx(1 / 2)
    assert m["business_hours_share_2019"].value == pytest.approx(2 / 2)


def test_window_and_baseline(three_years: Dataset) -> None:
    scope = open_scope(
        three_years.ws,
        load_profile("kp", None),
        date(2018, 1, 1),
        date(2019, 12, 31),
        parse_baseline("2018-01-01:2018-06-30"),
    )
    try:
        out = VolumeGrowth().run(scope)
    finally:
        scope.close()
    m = out.findings[0].metrics
    assert "flows_2017" not in m and "flows_2018" in m
    daily = _daily_counts(three_years.ts_us)
    base = [c for d, c in daily.items() if date(2018, 1, 1) <= d <= date(2018, 6, 30)]
    rest = [c for d, c in daily.items() if d > date(2018, 6, 30)]
    want = (sum(rest) / len(rest)) / (sum(base) / len(base))
    assert m["growth_ratio_baseline"].value == pytest.approx(want, rel=1e-12)
    assert "baseline window 2018-01-01 to 2018-06-30" in out.findings[0].statement


def _scope_count(ws: Workspace) -> tuple[int, bool]:
    scope = open_scope(ws, load_profile("kp", None))
    try:
        n = scope.rows("n", "SELECT count(*) AS n FROM territory_flows")[0]["n"]
        assert n == scope.flows
        return int(n), scope.engine.reused["_scope_base"]  # type: ignore[attr-defined]
    finally:
        scope.close()


def test_scope_rows_are_reused_until_the_store_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROGUEFLOW_USE_SCOPE_FILES", "0")  # the scope built from the store
    data = build_three_years(tmp_path, days_per_year=40)
    ws = data.ws
    cache = ws.root / ".cache" / "rows"
    n, reused = _scope_count(ws)
    assert n == len(data.ts_us) and not reused
    # two entries: the scope's rows and its trends from the roll-ups
    entries = [e for e in cache.iterdir() if not e.name.startswith(".")]
    assert len(entries) == 2 and all(list(e.rglob("*.parquet")) for e in entries)
    assert {(e / "query.sql").read_text().count("flows_rollup") for e in entries} == {0, 1}
    assert _scope_count(ws) == (n, True)
    # a new file in the store: a new key, the new flow counted
    extra = write_flows(
        tmp_path / "extra.parquet",
        np.array([us(datetime(2019, 6, 1, 12, tzinfo=UTC))]),
        ["175.45.176.9"],
        ["8.8.8.8"],
    )
    ingest_paths(ws, [extra])
    assert _scope_count(ws) == (n + 1, False)
    # another window is another query: two more entries evict the least recently used
    scope = open_scope(ws, load_profile("kp", None), date(2019, 1, 1), date(2019, 12, 31))
    scope.close()
    kept = [e for e in cache.iterdir() if not e.name.startswith(".")]
    assert len(kept) == 4 and not set(entries) & set(kept)


VIEWS = {"flows_stored": "_scope_base", "flows_rollup": "territory_rollup"}


def _scope_tables(ws: Workspace) -> dict[str, pa.Table]:
    """The scope's rows and its trends (from the roll-ups), keyed by what they read."""
    scope = open_scope(ws, load_profile("kp", None))
    try:
        return {s: scope.engine.arrow(f"SELECT * FROM {v} ORDER BY ALL") for s, v in VIEWS.items()}
    finally:
        scope.close()


def _newest_entries(ws: Workspace) -> dict[str, tuple[Path, dict[str, list[str]]]]:
    """The newest cache entry of each view of :data:`VIEWS`, and its parts."""
    cache = ws.root / ".cache" / "rows"
    out = {}
    for source in VIEWS:
        entries = [e for e in cache.iterdir() if f"FROM {source}" in (e / "query.sql").read_text()]
        entry = max(entries, key=lambda e: e.stat().st_mtime_ns)
        out[source] = entry, json.loads((entry / "rows" / "chunks.json").read_text())
    return out


def test_scope_rows_are_recomputed_only_for_the_months_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After an ingest, the scope's and the trends' rows of the months whose files are
    unchanged are an older entry's files (hard links), and all rows equal a fresh
    computation."""
    monkeypatch.setenv("ROGUEFLOW_USE_SCOPE_FILES", "0")  # the scope built from the store
    from rogueflow.analyze.engine import month_groups
    from rogueflow.store.flowstore import FlowStore

    data = build_three_years(tmp_path, days_per_year=40)
    ws = data.ws
    tables = _scope_tables(ws)
    entries = _newest_entries(ws)
    store = FlowStore(ws)
    try:
        # January and February of three years, and the March 2018 of the noise flows
        assert len(month_groups(store.files())) == 7
        assert len(month_groups(store.rollups(store.files()))) == 7
    finally:
        store.close()
    assert all(len(chunks) == 7 for _, chunks in entries.values())
    for when in (datetime(2019, 6, 1, 12, tzinfo=UTC), datetime(2017, 1, 20, 12, tzinfo=UTC)):
        # a flow in a month without data, then one in a month with data
        inodes = {
            n: (entry / "rows" / n).stat().st_ino
            for entry, chunks in entries.values()
            for ns in chunks.values()
            for n in ns
        }
        extra = write_flows(
            tmp_path / f"extra-{when:%Y%m}.parquet",
            np.array([us(when)]),
            ["175.45.176.9"],
            ["8.8.8.8"],
        )
        ingest_paths(ws, [extra])
        again = _scope_tables(ws)
        assert again["flows_stored"].num_rows == tables["flows_stored"].num_rows + 1
        assert again["flows_rollup"].num_rows in (
            tables["flows_rollup"].num_rows,  # the flow joined an existing quarter hour
            tables["flows_rollup"].num_rows + 1,
        )
        now = _newest_entries(ws)
        for source, (entry, new) in now.items():
            chunks = entries[source][1]
            kept = set(new) & set(chunks)
            assert len(new) - len(kept) == 1, source  # the month of the new flow
            assert len(kept) == len(chunks) - (when.year == 2017), source
            for part in kept:
                assert new[part] == chunks[part]
                assert all((entry / "rows" / n).stat().st_ino == inodes[n] for n in new[part])
        shutil.rmtree(ws.root / ".cache" / "rows")
        fresh = _scope_tables(ws)
        for source in VIEWS:  # the same rows as computed afresh
            assert fresh[source].equals(again[source]), source
        tables, entries = again, _newest_entries(ws)


def test_eviction_keeps_every_entry_of_the_last_run(tmp_path: Path) -> None:
    """A report materialises more views than ``keep`` (scope, trends, derived views):
    its own entries all survive it, older ones fill what ``keep`` leaves."""
    import time as _time

    from rogueflow.analyze.rowcache import RowCache

    def build(d: Path) -> None:
        (d / "rows").mkdir()

    run1 = RowCache(tmp_path, keep=2)
    for k in "abc":
        run1.open(k, build)
        _time.sleep(0.01)  # distinct modification times
    run1.release()
    assert sorted(e.name for e in tmp_path.iterdir()) == ["a", "b", "c"]
    run2 = RowCache(tmp_path, keep=2)
    run2.open("d", build)
    run2.release()  # d, and the most recent one of the older: c
    assert sorted(e.name for e in tmp_path.iterdir()) == ["c", "d"]


def test_an_entry_without_its_lock_is_built_again(tmp_path: Path) -> None:
    """A workspace copied without the cache's lock files (as ``copytree`` with an
    ignore pattern does) holds entries no cache published: they are rebuilt."""
    from rogueflow.analyze.rowcache import LOCK, RowCache

    built: list[Path] = []

    def build(d: Path) -> None:
        (d / "rows").mkdir()
        (d / "rows" / "x.parquet").write_bytes(b"new")
        built.append(d)

    stale = tmp_path / "k"
    (stale / "rows").mkdir(parents=True)
    (stale / "rows" / "x.parquet").write_bytes(b"old")
    cache = RowCache(tmp_path, keep=4)
    entry, reused = cache.open("k", build)
    assert not reused and len(built) == 1
    assert (entry / LOCK).exists() and (entry / "rows" / "x.parquet").read_bytes() == b"new"
    cache.release()


def test_a_part_is_borrowed_whole_or_not_at_all(tmp_path: Path) -> None:
    from rogueflow.analyze.rowcache import CHUNKS, RowCache

    def build(d: Path) -> None:
        (d / "rows").mkdir()
        for n in ("p-0.parquet", "p-1.parquet"):
            (d / "rows" / n).write_bytes(n.encode())
        (d / "rows" / CHUNKS).write_text(json.dumps({"p": ["p-0.parquet", "p-1.parquet"]}))

    cache = RowCache(tmp_path, keep=4)
    entry, _ = cache.open("a", build)
    dest = tmp_path / "new"
    dest.mkdir()
    lenders = cache.lenders()
    assert [e for e, _ in lenders] == [entry]
    assert cache.borrow("p", dest, lenders) == ["p-0.parquet", "p-1.parquet"]
    assert (dest / "p-1.parquet").read_bytes() == b"p-1.parquet"
    assert cache.borrow("q", tmp_path / "other", lenders) is None  # no entry has it
    (entry / "rows" / "p-1.parquet").unlink()  # a donor missing a file lends nothing
    dest2 = tmp_path / "new2"
    dest2.mkdir()
    assert cache.borrow("p", dest2, lenders) is None and not list(dest2.iterdir())
    cache.release()


def test_a_copied_workspace_keeps_its_scope_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files are keyed by their path inside the workspace: a copy (times kept) reuses."""
    monkeypatch.setenv("ROGUEFLOW_USE_SCOPE_FILES", "0")  # the scope built from the store
    data = build_three_years(tmp_path, days_per_year=20)
    n, reused = _scope_count(data.ws)
    assert not reused
    copy = tmp_path / "copy"
    shutil.copytree(data.ws.root, copy)  # copy2: modification times kept
    assert _scope_count(Workspace(copy)) == (n, True)


def test_scope_cache_key_names_the_files_the_rows_came_from(tmp_path: Path) -> None:
    """An ingest committing between an engine's start and its materialisation must not
    label the rows (read from the earlier files) with the new file list."""
    from rogueflow.analyze.engine import DuckDBEngine

    data = build_three_years(tmp_path, days_per_year=10)
    query = "SELECT count(*) AS n FROM flows_stored"
    early = DuckDBEngine(data.ws)
    extra = write_flows(
        tmp_path / "extra.parquet",
        np.array([us(datetime(2019, 6, 1, 12, tzinfo=UTC))]),
        ["175.45.176.9"],
        ["8.8.8.8"],
    )
    ingest_paths(data.ws, [extra])
    try:
        early.create_view("x", query, materialise=True)
        before = early.arrow("SELECT n FROM x").column("n")[0].as_py()
    finally:
        early.close()
    late = DuckDBEngine(data.ws)
    try:
        late.create_view("x", query, materialise=True)
        assert not late.reused["x"]
        assert late.arrow("SELECT n FROM x").column("n")[0].as_py() == before + 1
    finally:
        late.close()


def test_scope_cache_never_evicts_rows_being_read(tmp_path: Path) -> None:
    from rogueflow.analyze.rowcache import RowCache

    def build(d: Path) -> None:
        (d / "rows").mkdir()
        (d / "rows" / "x.parquet").write_bytes(b"rows")

    reader = RowCache(tmp_path, keep=0)
    entry, reused = reader.open("a", build)
    assert not reused
    other = RowCache(tmp_path, keep=0)
    other.open("b", build)
    other.release()  # keep 0: evicts b, and would evict a, which reader holds
    assert entry.exists() and not (tmp_path / "b").exists()
    assert other.open("a", build) == (entry, True)
    other.release()
    reader.release()
    assert not entry.exists()
    # a builder killed before publishing leaves an orphan, removed by the next build
    orphan = tmp_path / ".build-999999999-x"
    orphan.mkdir()
    RowCache(tmp_path, keep=1).open("c", build)
    assert not orphan.exists()


def test_scope_cache_off_keeps_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROGUEFLOW_USE_SCOPE_FILES", "0")  # the scope built from the store
    monkeypatch.setenv("ROGUEFLOW_SCOPE_CACHE", "0")
    data = build_three_years(tmp_path, days_per_year=20)
    assert _scope_count(data.ws) == (len(data.ts_us), False)
    assert _scope_count(data.ws)[1] is False
    cache = data.ws.root / ".cache" / "rows"
    assert not [e for e in cache.iterdir() if not e.name.startswith(".")]


def test_one_of_selects_exactly_the_listed_values() -> None:
    """The range that lets DuckDB push the list into the scan never widens it: values
    between the list's first and last are still left out, quotes are escaped."""
    import duckdb

    values = ["crypto.mining", "crypto.other", "crypto.p2p", "o'brien", None, "a", "zz"]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (c VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?)", [[v] for v in values])
    for chosen in (
        ["crypto.p2p", "crypto.mining"],
        ["o'brien"],
        ["a", "zz", "crypto.mining", "crypto.mining"],
        [],
    ):
        got = {r[0] for r in con.sql(f"SELECT c FROM t WHERE {one_of('c', chosen)}").fetchall()}
        assert got == set(chosen), chosen
    assert one_of("c", ["x"]) == "c = 'x'"
    pair = one_of("c", ["crypto.p2p", "crypto.mining"])
    assert "BETWEEN 'crypto.mining' AND 'crypto.p2p'" in pair


def test_parse_baseline_errors() -> None:
    assert parse_baseline(None) is None
    assert parse_baseline("2017-01-01:2017-12-31") == (date(2017, 1, 1), date(2017, 12, 31))
    for bad in ("2017-01-01", "2017-13-01:2018-01-01", "2018-01-01:2017-01-01"):
        with pytest.raises(ConfigError, match="--baseline"):
            parse_baseline(bad)


def test_empty_territory_is_an_error(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws")
    with pytest.raises(RogueflowError, match="no flows touch territory kp in the store"):
        open_scope(ws, load_profile("kp", None))
    f = write_flows(
        tmp_path / "f.parquet",
        np.array([us(datetime(2017, 1, 2, tzinfo=UTC))]),
        ["1.1.1.1"],
        ["8.8.8.8"],
    )
    ingest_paths(ws, [f])
    with pytest.raises(RogueflowError, match="ingest data or check the window"):
        open_scope(ws, load_profile("kp", None))


def test_queries_are_recorded_and_portable(outputs) -> None:  # type: ignore[no-untyped-def]
    log = outputs[2]
    views = ["view _scope_base", "view territory_flows", "view territory_rollup"]
    assert [q.label for q in log[:3]] == views
    derived: list[str] = []
    for q in log[3:]:  # analysis queries read only the scope views, the snapshot ids too,
        sql = q.sql  # or views derived from them (defined before the queries reading them)
        assert any(v in sql for v in ("territory_flows", "territory_rollup", *derived)), q
        if q.label.startswith("derived view "):
            assert "territory_flows" in sql or "territory_rollup" in sql
            derived.append(q.label.removeprefix("derived view "))
        assert "isodow" not in sql and "::" not in sql  # engine spellings stay in the view
    assert derived


# --- stats --------------------------------------------------------------------------


def test_wilson_known_values() -> None:
    lo, hi = stats.wilson(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert stats.wilson(0, 10)[0] == 0.0
    assert stats.wilson(0, 0) == (0.0, 1.0)


def test_clustered_share_widens_for_clustered_days() -> None:
    # days are all-or-nothing: a huge design effect, the interval is much wider than naive
    n = np.full(100, 50.0)
    k = np.where(np.arange(100) % 7 < 5, 50.0, 0.0)
    share, _ = stats.clustered_share(n, k)
    assert share.value == pytest.approx(k.sum() / n.sum())
    assert share.design_effect > 10
    assert share.high - share.low > 3 * (share.wilson_high - share.wilson_low)
    assert share.low < share.value < share.high
    # independent flows: design effect near 1
    rng = np.random.default_rng(1)
    k2 = rng.binomial(50, 0.3, 200).astype(float)
    s2, _ = stats.clustered_share(np.full(200, 50.0), k2)
    assert s2.design_effect < 1.6


def test_ratio_of_means_covers_truth() -> None:
    rng = np.random.default_rng(3)
    hits = 0
    for _ in range(200):
        e = stats.ratio_of_means(rng.poisson(20, 60), rng.poisson(60, 60))
        hits += e.low is not None and e.high is not None and e.low <= 3.0 <= e.high
    assert hits >= 180  # ~95% coverage


def test_change_points_on_synthetic_steps() -> None:
    rng = np.random.default_rng(11)
    y = np.concatenate([rng.poisson(100, 80), rng.poisson(400, 60), rng.poisson(150, 90)])
    cps = stats.change_points(np.log1p(y))
    assert len(cps) == 2
    assert abs(cps[0] - 80) <= 2 and abs(cps[1] - 140) <= 2
    flat = rng.poisson(100, 300)
    assert stats.change_points(np.log1p(flat)) == []
    assert stats.change_points(np.log1p(flat[:10])) == []  # too short to split
    # false alarms on flat series stay rare
    alarms = sum(
        bool(stats.change_points(np.log1p(np.random.default_rng(s).poisson(100, 300))))
        for s in range(100)
    )
    assert alarms <= 5


def test_gaps() -> None:
    days = [date(2020, 1, d) for d in (1, 2, 5, 6, 9)]
    assert stats.gaps(days, date(2020, 1, 1), date(2020, 1, 10)) == [
        (date(2020, 1, 3), date(2020, 1, 4)),
        (date(2020, 1, 7), date(2020, 1, 8)),
        (date(2020, 1, 10), date(2020, 1, 10)),
    ]


def test_grade_and_wording() -> None:
    c = grade([Check(True, "ok", "bad"), Check(False, "ok", "too few days")])
    assert c.level == "moderate" and c.reasons == ("ok", "too few days")
    assert grade([Check(False, "", "x", penalty=5)]).level == "low"
    assert fold(4.0).startswith("grew about fourfold (×4.00, +300%")
    assert fold(1.0).startswith("stayed about level")
    assert fold(0.5).startswith("fell by about 50%")


# --- the store's territory index ------------------------------------------------------


def _scope_rows(ws: Workspace, profile: ProfileInfo) -> tuple[list[tuple[object, ...]], str]:
    scope = open_scope(ws, profile)
    try:
        rows = scope.rows(
            "t",
            "SELECT ts_utc, side, internal_addr, remote_addr FROM territory_flows "
            "ORDER BY ts_utc, side, internal_addr, remote_addr",
        )
        return [tuple(r.values()) for r in rows], scope.log[0].sql
    finally:
        scope.close()


def test_scope_reads_the_territory_index_only_where_every_file_holds_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ROGUEFLOW_USE_SCOPE_FILES", "0")  # the scope built from the store
    rng = np.random.default_rng(7)
    n = 3_000
    pool = ["175.45.176.9", "175.45.179.200", "210.52.109.4", "77.94.35.1", "8.8.8.8",
            "1.1.1.1", "2001:db8::1", "175.45.180.1", "210.52.108.255"]  # fmt: skip
    ts = np.sort(
        rng.integers(us(datetime(2018, 3, 1, tzinfo=UTC)), us(datetime(2018, 3, 4, tzinfo=UTC)), n)
    )
    src = [pool[i] for i in rng.integers(0, len(pool), n)]
    dst = [pool[i] for i in rng.integers(0, len(pool), n)]
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [write_flows(tmp_path / "f.parquet", ts, src, dst)])
    kp = load_profile("kp", None)
    files = FlowStore(ws).files()
    assert len(files) == 3
    for path in files:
        meta = pq.read_metadata(path).metadata
        assert read_claim(meta[INDEX_KEY]) == {"kp": fingerprint(kp.territory)}
        t = pq.read_table(path)
        ts_us = t.column("ts_start").cast(pa.int64()).to_numpy()
        inside = [member_mask(kp.territory, t.column(f"{e}_addr"), ts_us) for e in ("src", "dst")]
        for e, mask in zip(("src", "dst"), inside, strict=True):
            col = t.column(f"{e}_territory").cast(pa.string()).to_pylist()
            assert col == ["kp" if m else None for m in mask]
        touch = inside[0] | inside[1]
        k = int(touch.sum())
        assert 0 < k < len(touch) and touch[:k].all()  # touching flows first
        assert (np.diff(ts_us[:k]) >= 0).all() and (np.diff(ts_us[k:]) >= 0).all()

    want, sql = _scope_rows(ws, kp)
    assert "f.src_territory = 'kp'" in sql and "unhex" not in sql
    nets = [
        ipaddress.ip_network(c) for c in ("175.45.176.0/22", "210.52.109.0/24", "77.94.35.0/24")
    ]

    def inside(a: str) -> bool:
        ip = ipaddress.ip_address(a)
        return any(ip.version == net.version and ip in net for net in nets)

    assert len(want) == sum(inside(s) or inside(d) for s, d in zip(src, dst, strict=True))

    # the catalog keeps a copy of each footer's claim: opening a scope reads no footer
    store = FlowStore(ws)
    copies = {f.path: f.territories for f in store.catalog.files()}
    assert [read_claim(c.encode()) for c in copies.values() if c] == [
        read_claim(pq.read_metadata(p).metadata[INDEX_KEY]) for p in files
    ]
    assert store.claims(files) == [{"kp": fingerprint(kp.territory)}] * 3

    # a file as an older rogueflow wrote it (schema 3: no index columns, no claim) and
    # committed it (its source at schema 3, no copy of a claim in the catalog)
    old = files[1]
    t = pq.read_table(old).drop_columns(["src_territory", "dst_territory"])
    pq.write_table(t.replace_schema_metadata({METADATA_KEY: b"3"}), old)
    with store.catalog.transaction() as db:
        db.execute("UPDATE files SET territories = NULL")
        db.execute("UPDATE sources SET schema_version = 3")
    store.close()
    store = FlowStore(ws)
    claim = {"kp": fingerprint(kp.territory)}
    assert store.claims(files) == [claim, {}, claim]
    store.close()
    got, sql = _scope_rows(ws, kp)
    assert "unhex" in sql and "src_territory" not in sql
    assert got == want
    # `rogueflow enrich` upgrades it: the index is read again, with the same answer
    enrich_store(ws)
    got, sql = _scope_rows(ws, kp)
    assert "f.src_territory = 'kp'" in sql and got == want

    # a profile whose space differs from the indexed one is tested by its prefixes
    text = (Path(__file__).parent.parent / "src/rogueflow/territory/profiles/kp.toml").read_text()
    wider = tmp_path / "kp.toml"
    wider.write_text(text.replace('cidr = "175.45.176.0/22"', 'cidr = "175.45.176.0/21"'))
    got, sql = _scope_rows(ws, load_profile("kp", wider))
    assert "unhex" in sql
    assert len(got) > len(want)


def test_rollups_answer_only_on_quarter_hours() -> None:
    kp = load_builtin("kp")
    d = datetime(2017, 1, 1, tzinfo=UTC), datetime(2019, 11, 30, tzinfo=UTC)
    assert quarter_hours(kp, *d)  # +08:30, +09:00 from 2018-05-04 15:00 UTC
    assert quarter_hours(replace(kp, timezone="Asia/Kathmandu"), *d)  # +05:45
    late = (time(8, 20), time(17, 0))
    assert not quarter_hours(replace(kp, business_hours=late), *d)
    # Liberia kept its 1919 offset of -00:44:30 until 1972
    old = datetime(1971, 1, 1, tzinfo=UTC), datetime(1971, 1, 5, tzinfo=UTC)
    assert not quarter_hours(replace(kp, timezone="Africa/Monrovia"), *old)
    assert quarter_hours(replace(kp, timezone="Africa/Monrovia"), *d)
