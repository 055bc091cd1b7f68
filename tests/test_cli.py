"""The CLI as a user drives it: a temporary workspace, real files, real output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from rogueflow.cli.main import cli
from rogueflow.schema import FIELDS, SCHEMA_VERSION

ROWS = [
    (
        "2017-05-17 00:00:01",
        "2017-05-17 00:00:05",
        "175.45.176.5",
        "8.8.8.8",
        53211,
        53,
        "UDP",
        "",
        1,
        70,
    ),
    (
        "2017-05-17 09:30:00",
        "2017-05-17 09:31:00",
        "175.45.178.9",
        "94.23.199.191",
        46838,
        3333,
        "TCP",
        "...AP.S.",
        24,
        22824,
    ),
    (
        "2017-05-18 12:00:00",
        "2017-05-18 12:00:00",
        "2001:db8::1",
        "2001:db8::2",
        0,
        2048,
        "ICMP6",
        "",
        1,
        64,
    ),
]


def write_nfdump_like(path: Path) -> Path:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["ts", "te", "sa", "da", "sp", "dp", "pr", "flg", "ipkt", "ibyt"])
        w.writerows(ROWS)
        w.writerow(["Summary"])
    return path


def run(ws: Path | None, *args: str, env: dict[str, str] | None = None) -> Result:
    argv = (["-w", str(ws)] if ws is not None else []) + list(args)
    return CliRunner().invoke(cli, argv, env=env, catch_exceptions=False)


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[Path, Path]:
    ws = tmp_path / "ws"
    src = write_nfdump_like(tmp_path / "flows.csv")
    result = run(ws, "-q", "ingest", str(src))
    assert result.exit_code == 0, result.output
    return ws, src


def test_ingest_reports_and_dedups(loaded: tuple[Path, Path]) -> None:
    ws, src = loaded
    again = run(ws, "-q", "ingest", str(src))
    assert again.exit_code == 0
    assert again.stdout.startswith("skipped (already ingested; --force replaces): ")
    assert f"{src.resolve()} [csv] 3 flows" in again.stdout
    forced = run(ws, "-q", "ingest", "--force", str(src))
    assert forced.stdout.startswith("replaced: ")


def test_query_formats(loaded: tuple[Path, Path]) -> None:
    ws, _ = loaded
    sql = "SELECT src_ip, dst_ip, dst_port, proto, tcp_flags, bytes FROM flows ORDER BY ts_start"
    as_csv = run(ws, "query", "--format", "csv", sql)
    assert as_csv.exit_code == 0, as_csv.output
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [(r["src_ip"], r["dst_ip"], r["bytes"]) for r in rows] == [
        (r[2], r[3], str(r[9])) for r in ROWS
    ]
    assert rows[1]["tcp_flags"] == str(0x1A) and rows[2]["proto"] == "58"

    as_json = run(ws, "query", "--format", "json", sql + " LIMIT 2")
    docs = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert docs[0] == {
        "src_ip": "175.45.176.5",
        "dst_ip": "8.8.8.8",
        "dst_port": 53,
        "proto": 17,
        "tcp_flags": 0,
        "bytes": 70,
    }
    assert len(docs) == 2

    addr_json = run(ws, "query", "--format", "json", "SELECT src_addr FROM flows WHERE proto = 58")
    assert json.loads(addr_json.stdout) == {"src_addr": "2001:db8::1"}

    table = run(ws, "query", "SELECT count(*) AS n, sum(bytes) AS b FROM flows")
    assert table.exit_code == 0, table.output
    assert "22958" in table.stdout and "n" in table.stdout


def test_query_error_is_one_line(loaded: tuple[Path, Path]) -> None:
    ws, _ = loaded
    for sql in ("SELECT nope FROM flows", "SELECT CAST(src_ip AS INTEGER) FROM flows"):
        for fmt in ("table", "csv"):
            result = run(ws, "query", "--format", fmt, sql)
            assert result.exit_code == 2, (sql, fmt)
            assert result.stderr.startswith("error: query failed")


def test_sources(loaded: tuple[Path, Path]) -> None:
    ws, src = loaded
    result = run(ws, "sources")
    assert result.exit_code == 0
    (line,) = result.stdout.splitlines()
    assert "csv" in line and str(src.resolve()) in line and "2017-05-17T00:00:01" in line
    assert "1 sources, 3 flows" in result.stderr


def test_territories() -> None:
    result = run(None, "territories")
    assert result.exit_code == 0
    for code in ("kp", "ir", "sy", "ve", "cu"):
        assert any(line.startswith(f"{code}  ") for line in result.stdout.splitlines())
    kp = run(None, "territories", "-t", "kp", "--json")
    (doc,) = json.loads(kp.stdout)
    assert doc["timezone"] == "Asia/Pyongyang" and doc["iso"] == "KP"
    unknown = run(None, "territories", "-t", "zz")
    assert unknown.exit_code == 2 and "no built-in territory 'zz'" in unknown.stderr


def test_schema_and_settings(tmp_path: Path) -> None:
    result = run(None, "schema")
    assert result.stdout.startswith(f"schema version {SCHEMA_VERSION}\n")
    for f in FIELDS:
        assert f.name in result.stdout
    md = run(None, "schema", "--markdown")
    assert md.stdout.startswith("# Canonical flow record")

    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "config.toml").write_text("zstd_level = 9\n")
    shown = run(ws, "settings", env={"ROGUEFLOW_BATCH_ROWS": "1000"})
    values = {line.split()[0]: line.split()[1] for line in shown.stdout.splitlines()}
    assert values["zstd_level"] == "9"  # config.toml
    assert values["batch_rows"] == "1000"  # environment
    assert values["row_group_rows"] == "1048576"  # default


def test_bad_file_exit_code_and_one_line(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "ts,sa,da,pr,ipkt,ibyt\n1494979200,1.2.3.4,5.6.7.8,6,1,40\n1494979200,1.2.3,5.6.7.8,6,1,40\n"
    )
    result = run(ws, "-q", "ingest", str(bad))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert lines[0] == f"error: {bad.resolve()}, line 3: sa '1.2.3' is not an IP address"
    assert result.stdout == ""

    unknown = tmp_path / "blob.bin"
    unknown.write_bytes(b"\x00\x01\x02 not flows")
    result = run(ws, "-q", "ingest", str(unknown))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {unknown}") and "pass --format" in result.stderr
    assert len(result.stderr.splitlines()) == 1

    missing = run(ws, "-q", "ingest", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "no such file or directory" in missing.stderr


def test_ingest_options(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    src = tmp_path / "semi.txt"
    src.write_text("start;src;dst;p;pk;by\n2019-01-01T00:00:00Z;1.1.1.1;2.2.2.2;tcp;3;120\n")
    args = ["-q", "ingest", "--format", "csv", "--option", "delimiter=;", "--sampling-rate", "100"]
    maps = [
        "--map",
        "ts_start=start",
        "--map",
        "src_addr=src",
        "--map",
        "dst_addr=dst",
        "--map",
        "proto=p",
        "--map",
        "packets=pk",
        "--map",
        "bytes=by",
    ]
    result = run(ws, *args, *maps, str(src))
    assert result.exit_code == 0, result.output
    q = run(ws, "query", "--format", "json", "SELECT proto, packets, sampling_rate FROM flows")
    assert json.loads(q.stdout) == {"proto": 6, "packets": 3, "sampling_rate": 100}

    bad_map = run(ws, "-q", "ingest", "--map", "src_ip=src", str(src))
    assert bad_map.exit_code == 2 and "unknown canonical column" in bad_map.stderr


def test_workspace_flag_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = write_nfdump_like(tmp_path / "flows.csv")
    by_flag, by_env = tmp_path / "flag-ws", tmp_path / "env-ws"
    assert run(by_flag, "-q", "ingest", str(src)).exit_code == 0
    assert (by_flag / "catalog.sqlite").exists()

    monkeypatch.setenv("ROGUEFLOW_WORKSPACE", str(by_env))
    assert run(None, "-q", "ingest", str(src)).stdout.startswith("ingested: ")
    assert (by_env / "catalog.sqlite").exists()
    count = run(None, "query", "--format", "csv", "SELECT count(*) AS n FROM flows")
    assert count.stdout.splitlines()[1] == "3"
    # the flag wins over the environment
    other = tmp_path / "other-ws"
    empty = run(other, "query", "--format", "csv", "SELECT count(*) AS n FROM flows")
    assert empty.stdout.splitlines()[1] == "0"
    assert not (tmp_path / "rogueflow-data").exists()


def test_version() -> None:
    result = run(None, "--version")
    assert result.exit_code == 0 and "version" in result.stdout


def test_query_of_the_territory_index_warns_about_older_sources(
    loaded: tuple[Path, Path],
) -> None:
    """Sources stored before schema 4 have null territory columns; a query reading them
    says so on stderr (and only such a query, only while such sources exist)."""
    import sqlite3

    ws, _ = loaded
    sql = "SELECT count(*) AS n FROM flows WHERE src_territory IS NULL"
    fresh = run(ws, "query", "--format", "csv", sql)
    assert fresh.exit_code == 0 and "warning" not in fresh.stderr
    db = sqlite3.connect(ws / "catalog.sqlite")
    with db:
        db.execute("UPDATE sources SET schema_version = 3")
    db.close()
    old = run(ws, "query", "--format", "csv", sql)
    assert old.exit_code == 0
    assert "1 of 1 sources (3 flows) were stored before the territory index" in old.stderr
    assert "rogueflow enrich" in old.stderr and old.stdout == fresh.stdout  # a note only
    plain = run(ws, "query", "--format", "csv", "SELECT count(*) AS n FROM flows")
    assert "warning" not in plain.stderr
