"""One conformance suite over every engine: each analysis, run on DuckDB and on a real
local SparkSession over the same demo store, must give the same findings.

Same means: the same finding ids in the same order, confidence levels and reasons,
statements, metrics (values and intervals equal within 1e-9 relative), evidence
tables, indicators, sample flows, periods and chart data; provenance apart from the
SQL text (each engine's spelling of the scope view) and the time it was written.

A known difference is declared in :data:`GAPS` with the reason it exists; the test
then runs as a strict xfail, so a gap that closes fails the suite until it is removed.
One SparkSession serves the module (started once, ~10-30 s of JVM start-up).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rogueflow.analyze import builtin_analyses, load_profile, open_scope
from rogueflow.analyze.base import Analysis, AnalysisOutput
from tests.conftest import IN_CI, DemoRun

pytestmark = pytest.mark.slow  # a JVM start and the demo's analyses twice: minutes

ENGINES = ("duckdb", "spark")
SPARK_STORE = "spark, scope from the store"
REL = 1e-9

#: Analyses written but not yet listed in builtin_analyses: checked too, so they are
#: portable before they join the report (dropped here once builtin lists them).
EXTRA = (
    ("rogueflow.analyze.services", "ServiceMix"),
    ("rogueflow.analyze.opsec", "Obfuscation"),
)

#: analysis id -> (engine, why its findings differ there). Empty: every analysis conforms.
GAPS: dict[str, tuple[str, str]] = {}

#: analyses the demo gives nothing to find (compared all the same: both must be empty)
NOTHING_ON_DEMO = {
    "sanctions": "the demo's flows carry no wallet and its workspace has no sanctions list",
}


def gap(engine: str, reason: str) -> pytest.MarkDecorator:
    """A declared difference: a strict xfail that must say why."""
    if not reason.strip():
        raise ValueError("an engine gap must state its reason")
    return pytest.mark.xfail(reason=f"{engine}: {reason}", strict=True)


def _analyses(events: list[Any] | None) -> list[Analysis]:
    import importlib

    found = builtin_analyses(events=events)
    ids = {a.id for a in found}
    for module, name in EXTRA:
        extra = getattr(importlib.import_module(module), name)()
        if extra.id not in ids:
            found.append(extra)
    return found


# "events" joins the list only with events; the demo writes some (demo-input/events.csv)
IDS = [a.id for a in _analyses(None)] + ["events"]


@dataclass
class Run:
    engine: str
    seconds: float
    scope: dict[str, Any]
    outputs: dict[str, AnalysisOutput | BaseException]


def _run(demo: DemoRun, engine: str) -> Run:
    from rogueflow.analyze.events import load_events

    events = load_events(demo.input / "events.csv")
    t0 = time.perf_counter()
    scope = open_scope(demo.ws, load_profile("kp", None), engine=engine)
    outputs: dict[str, AnalysisOutput | BaseException] = {}
    try:
        facts = {
            "flows": scope.flows,
            "first_ts": scope.first_ts,
            "last_ts": scope.last_ts,
            "daily": scope.daily().to_pylist(),
            "sources": scope.sources(),
            "sampling": scope.sampling(),
            "intel": scope.intel_used(),
        }
        for analysis in _analyses(list(events)):
            try:
                outputs[analysis.id] = analysis.run(scope)
            except Exception as exc:  # one analysis failing must not hide the others
                outputs[analysis.id] = exc
    finally:
        scope.close()
    return Run(engine, time.perf_counter() - t0, facts, outputs)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    """The module's local SparkSession (loopback, no UI), stopped at the end."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        msg = "pyspark not installed (pip install -e '.[spark]')"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    from rogueflow.analyze.engine_spark import spark_session

    session = spark_session("local[2]")
    yield session
    session.stop()


@pytest.fixture(scope="module")
def runs(demo_reference: DemoRun, spark: Any) -> dict[str, Run]:
    done = {engine: _run(demo_reference, engine) for engine in ENGINES}
    # Spark's scope built from the store itself, as when scope files cannot be used
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROGUEFLOW_USE_SCOPE_FILES", "0")
        done[SPARK_STORE] = _run(demo_reference, "spark")
    print(  # shown with -s or -rA; the time asked of the Spark run
        "conformance: "
        + ", ".join(f"{e} {r.seconds:.1f} s for {len(r.outputs)} analyses" for e, r in done.items())
    )
    return done


# --- comparison ----------------------------------------------------------------------

IGNORED = {("provenance", "queries"), ("provenance", "generated_at")}


def differences(a: Any, b: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Where two JSON-like values differ (floats within REL); paths in IGNORED skipped."""
    if path[-2:] in IGNORED:
        return
    where = "/".join(path) or "<root>"
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            yield f"{where}: keys {sorted(set(a) ^ set(b))} in one engine only"
        for k in sorted(set(a) & set(b), key=str):
            yield from differences(a[k], b[k], (*path, str(k)))
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        if len(a) != len(b):
            yield f"{where}: {len(a)} vs {len(b)} items"
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            yield from differences(x, y, (*path, str(i)))
    elif isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        if a is not b and a != b:
            yield f"{where}: {a!r} vs {b!r}"
    elif isinstance(a, int | float) and isinstance(b, int | float):
        if math.isnan(a) and math.isnan(b):
            return
        if not math.isclose(a, b, rel_tol=REL, abs_tol=1e-12):
            yield f"{where}: {a!r} vs {b!r}"
    elif a != b:
        yield f"{where}: {a!r} vs {b!r}"


def _plain(out: AnalysisOutput) -> dict[str, Any]:
    import json

    from rogueflow import findings as fnd

    doc = {"findings": [f.to_dict() for f in out.findings], "charts": out.charts}
    # through JSON as findings.json is written: dates and Decimals become text alike
    return dict(json.loads(fnd.dumps(doc)))


# --- tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("other", ["spark", SPARK_STORE])
def test_scope_is_the_same(runs: dict[str, Run], other: str) -> None:
    duck, spark = runs["duckdb"].scope, runs[other].scope
    diff = list(differences(_jsonable(duck), _jsonable(spark)))
    assert not diff, "\n".join(diff[:20])


def _jsonable(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))


@pytest.mark.parametrize(
    "analysis",
    [
        pytest.param(a, marks=gap(*GAPS[a])) if a in GAPS and GAPS[a][0] == "spark" else a
        for a in IDS
    ],
)
def test_analysis_conforms(runs: dict[str, Run], analysis: str) -> None:
    """Each analysis gives the same findings on DuckDB (scope files) as on Spark, whose
    scope comes from the scope files or, as when they cannot be used, from the store."""
    got = {e: runs[e].outputs.get(analysis) for e in (*ENGINES, SPARK_STORE)}
    for engine, out in got.items():
        if isinstance(out, BaseException):
            raise AssertionError(f"{analysis} failed on {engine}: {out!r}") from out
        assert out is not None, f"{analysis} did not run on {engine}"
    duck = _plain(got["duckdb"])  # type: ignore[arg-type]
    if analysis in NOTHING_ON_DEMO:
        assert not duck["findings"], f"{analysis} now finds something: compare it, drop it here"
    else:
        assert duck["findings"], f"{analysis}: no findings on the demo; nothing was compared"
    for other in ("spark", SPARK_STORE):
        diff = list(differences(duck, _plain(got[other])))  # type: ignore[arg-type]
        assert not diff, f"{analysis}: DuckDB vs {other}\n" + "\n".join(diff[:30])


def test_query_command_on_spark(demo_reference: DemoRun, spark: Any, tmp_path: Path) -> None:
    """`rogueflow query --engine spark`: the flows view with its computed columns."""
    from rogueflow.cli.main import cli

    sql = (
        "SELECT ip_text(src_addr) AS src, src_ip, community_id, source_file, day, hour "
        "FROM flows WHERE in_prefix(src_addr, '175.45.176.0/22') "
        # one week: Parquet statistics skip the other days' row groups on both engines
        "AND ts_start >= TIMESTAMP '2019-06-03 00:00:00' "
        "AND ts_start < TIMESTAMP '2019-06-10 00:00:00' "
        "ORDER BY ts_start, src_addr, dst_addr, src_port, dst_port LIMIT 5"
    )
    out = {}
    for engine in ENGINES:
        result = CliRunner().invoke(
            cli,
            [
                "-w",
                str(demo_reference.ws.root),
                "query",
                "--engine",
                engine,
                "--format",
                "csv",
                sql,
            ],
        )
        assert result.exit_code == 0, result.output
        out[engine] = result.stdout
    assert out["duckdb"] == out["spark"]
    rows = out["spark"].splitlines()
    assert len(rows) == 6 and rows[1].split(",")[0].strip('"').startswith("175.45.17")
    table = CliRunner().invoke(
        cli, ["-w", str(demo_reference.ws.root), "query", "--engine", "spark", "--limit", "2", sql]
    )
    assert table.exit_code == 0, table.output
    assert "src_ip" in table.stdout and "(2 rows)" in table.stdout


def test_unknown_engine_is_a_config_error(workspace: Any) -> None:
    from rogueflow.analyze.engine import open_engine
    from rogueflow.errors import ConfigError

    with pytest.raises(ConfigError, match="--engine 'sparkle'"):
        open_engine(workspace, "sparkle")


def _descendants(pid: int) -> set[int]:
    found, todo = {pid}, [pid]
    while todo:
        for task in Path(f"/proc/{todo.pop()}/task").glob("*/children"):
            for child in task.read_text().split():
                if int(child) not in found:
                    found.add(int(child))
                    todo.append(int(child))
    return found


def _listening(pids: set[int]) -> list[str]:
    """Addresses the processes listen on (TCP, from /proc): socket inodes of their fds
    matched against the LISTEN rows of /proc/net/tcp and tcp6."""
    import ipaddress
    import os

    inodes = set()
    for pid in pids:
        for fd in Path(f"/proc/{pid}/fd").glob("*"):
            try:
                target = os.readlink(fd)
            except OSError:  # closed meanwhile
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    out = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:
                continue
            raw = bytes.fromhex(cols[1].split(":")[0])
            # the kernel prints each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            out.append(str(ipaddress.ip_address(words)))
    return out


def test_spark_listens_on_loopback_only(spark: Any) -> None:
    """The local session's driver, block manager and Python workers bind to loopback."""
    spark.sql("SELECT 1").collect()
    proc = spark.sparkContext._gateway.proc
    addrs = _listening(_descendants(proc.pid))
    assert addrs, "found no listening socket of the Spark JVM: the check saw nothing"
    outside = [a for a in addrs if not _is_loopback(a)]
    assert not outside, f"Spark listens beyond loopback: {outside}"


AWKWARD = ["plain", "it's", "a\\b", "\\'", "\\", "", "%.x\\n", "''"]


def test_string_constants_read_alike(spark: Any) -> None:
    """The analyses' string constants (``sql_string``: pool names, wallets, domains from
    the data) mean the same string on both engines, quotes and backslashes included."""
    import duckdb

    from rogueflow.analyze.context import one_of
    from rogueflow.analyze.engine import sql_string

    cols = ", ".join(f"{sql_string(v)} AS c{i}" for i, v in enumerate(AWKWARD))
    assert list(spark.sql(f"SELECT {cols}").collect()[0]) == AWKWARD
    assert list(duckdb.sql(f"SELECT {cols}").fetchall()[0]) == AWKWARD
    values = ", ".join(f"({sql_string(v)})" for v in AWKWARD)
    cond = one_of("v", AWKWARD[1:4])
    query = f"SELECT v FROM (VALUES {values}) AS t(v) WHERE {cond} ORDER BY v"
    want = sorted(AWKWARD[1:4])
    assert [r[0] for r in spark.sql(query).collect()] == want
    assert [r[0] for r in duckdb.sql(query).fetchall()] == want


def _is_loopback(text: str) -> bool:
    import ipaddress

    ip = ipaddress.ip_address(text)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def test_flows_view_has_the_same_columns(
    demo_reference: DemoRun, spark: Any, workspace: Any
) -> None:
    """Same column names on both engines, and an empty store reads as an empty view."""
    from rogueflow.analyze.engine import open_engine

    names = {}
    for engine in ENGINES:
        eng = open_engine(demo_reference.ws, engine)
        try:
            names[engine] = eng.head("SELECT * FROM flows", 1).column_names
        finally:
            eng.close()
    assert names["duckdb"] == names["spark"]
    eng = open_engine(workspace, "spark")  # nothing ingested
    try:
        assert eng.arrow("SELECT count(*) AS n FROM flows").to_pylist() == [{"n": 0}]
    finally:
        eng.close()


def test_quiet_spark_prints_no_logging(demo_reference: DemoRun, tmp_path: Path) -> None:
    """`rogueflow -q` on Spark, in a process of its own (the JVM starts with rogueflow's
    log4j2 profile, its stderr through rogueflow's relay): nothing at all on stderr, not
    even the JVM's notice of the incubator vector module that Spark's launcher loads."""
    import subprocess
    import sys

    pytest.importorskip("pyspark")
    exe = Path(sys.executable).parent / "rogueflow"
    r = subprocess.run(
        [str(exe), "--workspace", str(demo_reference.ws.root), "-q", "query", "--engine",
         "spark", "--format", "csv", "SELECT count(*) AS n FROM flows"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].strip('"') == "n" and int(r.stdout.splitlines()[1]) > 0
    assert r.stderr == ""


def test_jvm_stderr_relay_drops_only_the_incubator_notice() -> None:
    """What the driver JVM writes reaches stderr line by line, partial last line too;
    only the exact notice is dropped (a line merely mentioning it is kept)."""
    import threading

    from rogueflow.analyze.engine_spark import JVM_NOTICE, relay_stderr

    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    relay = threading.Thread(target=relay_stderr, args=(src_r, dst_w))
    relay.start()
    lines = [
        JVM_NOTICE + b"\n",
        b"26/12/04 17:30:01 ERROR SparkContext: Error initializing SparkContext.\n",
        b"echo: " + JVM_NOTICE + b"\n",
        JVM_NOTICE + b"\r\n",
        b"no newline at the end",
    ]
    for line in lines:
        os.write(src_w, line)
    os.close(src_w)
    relay.join(10)
    assert not relay.is_alive()
    os.close(dst_w)
    with os.fdopen(dst_r, "rb") as fh:
        out = fh.read()
    assert out == lines[1] + lines[2] + lines[4]
