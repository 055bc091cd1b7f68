"""Live BGP: BIRD 2 and GoBGP on loopback, a GoBGP collector's MRT dump, a withdrawal midway.

One lab run (tests/bgplab.py) serves the module: the watched AS 64500 announces its prefixes
through AS 64501 (BIRD) and AS 64502 (GoBGP) to a collector; after convergence the watched AS
drops its session to AS 64502. Checked three ways: bgpdump's reading of the MRT file (ground
truth), rogueflow's MRT reader, and the ``bgp timeline`` command.

MRT BGP4MP records carry whole seconds, so a withdrawal recorded at t shows at floor(t).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from rogueflow import addr
from tests.bgplab import LabResult, have_root, run_lab
from tests.conftest import IN_CI, require_tool

pytestmark = [
    pytest.mark.slow,
    pytest.mark.needs_tool("bird"),
    pytest.mark.needs_tool("gobgpd"),
    pytest.mark.needs_tool("bgpdump"),
]

# How late after the recorded withdrawal the collector may log it (loaded CI machines).
LATE = timedelta(seconds=5)
# Whole-second MRT timestamps round down.
EARLY = timedelta(seconds=1)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> LabResult:
    require_tool("bird", "bird2")
    require_tool("birdc", "bird2")
    require_tool("gobgpd", "gobgpd")
    require_tool("gobgp", "gobgpd")
    bgpdump = require_tool("bgpdump", "bgpdump")
    if not have_root():
        msg = "needs root: BIRD and GoBGP listen on TCP port 179 of 127.0.0.2-9"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    # run_lab stops every daemon before it returns or raises.
    return run_lab(tmp_path_factory.mktemp("bgplab"), bgpdump=bgpdump)


def within(ts: datetime, result: LabResult) -> bool:
    return result.withdrawn_at - EARLY <= ts <= result.withdrawn_at + LATE


def bgpdump_rows(result: LabResult) -> list[tuple[datetime, str, str, int, str, str]]:
    """(time, kind, peer address, peer AS, prefix, AS path) from ``bgpdump -m``."""
    bgpdump = require_tool("bgpdump", "bgpdump")
    rows = []
    for path in result.mrt_files:
        out = subprocess.run(
            [bgpdump, "-m", str(path)], capture_output=True, text=True, timeout=30, check=True
        ).stdout
        for line in out.splitlines():
            f = line.split("|")
            if f[0] != "BGP4MP" or f[2] not in ("A", "W"):
                continue
            ts = datetime.fromtimestamp(int(f[1]), UTC)
            prefix = str(ipaddress.ip_network(f[5]))
            rows.append((ts, f[2], f[3], int(f[4]), prefix, f[6] if f[2] == "A" else ""))
    return rows


def test_bgpdump_sees_both_paths_then_the_withdrawal(lab: LabResult) -> None:
    rows = bgpdump_rows(lab)
    assert rows, f"no BGP4MP records in {lab.mrt_files}\n{lab.log_tails()}"
    gone_addr = lab.upstream_addrs[lab.withdrawn_upstream]
    for prefix in lab.prefixes:
        before = {
            (peer_as, path)
            for ts, kind, _, peer_as, p, path in rows
            if p == prefix and kind == "A" and ts <= lab.withdrawn_at
        }
        assert before == {(up, f"{up} {lab.watched_asn}") for up in lab.upstream_asns}, prefix
        withdrawals = [
            ts
            for ts, kind, peer, _, p, _ in rows
            if p == prefix and kind == "W" and peer == gone_addr
        ]
        assert len(withdrawals) == 1, (prefix, withdrawals)
        assert within(withdrawals[0], lab), (prefix, withdrawals[0], lab.withdrawn_at)
        # Nothing else changed: no other withdrawal, no re-announcement through 64502.
        others = [r for r in rows if r[4] == prefix and r[1] == "W" and r[2] != gone_addr]
        assert others == []
        again = [
            r
            for r in rows
            if r[4] == prefix and r[1] == "A" and r[2] == gone_addr and r[0] > withdrawals[0]
        ]
        assert again == []


def test_reader_upstream_history(lab: LabResult) -> None:
    from rogueflow.bgp.mrt import read_mrt

    batches = [b for path in lab.mrt_files for b in read_mrt(path)]
    table = pa.Table.from_batches(batches)
    ts_type = table.schema.field("ts").type
    assert pa.types.is_timestamp(ts_type) and ts_type.unit == "us" and ts_type.tz is not None
    rows = table.select(
        [
            "ts",
            "kind",
            "record",
            "peer_addr",
            "peer_asn",
            "prefix",
            "as_path",
            "origin_asn",
            "upstream_asn",
        ]
    ).to_pylist()
    assert {r["kind"] for r in rows} <= {"B", "A", "W", "STATE"}
    records = [r["record"] for r in rows]
    assert records == sorted(records), "rows come in file order"
    peer_asn = {addr.parse_one(a): asn for asn, a in lab.upstream_addrs.items()}
    for r in rows:
        assert peer_asn[r["peer_addr"]] == r["peer_asn"]
    gone = addr.parse_one(lab.upstream_addrs[lab.withdrawn_upstream])

    for prefix in lab.prefixes:
        mine = [
            r
            for r in rows
            if r["prefix"] is not None and str(ipaddress.ip_network(r["prefix"])) == prefix
        ]
        announced = [r for r in mine if r["kind"] == "A"]
        before = {
            (r["upstream_asn"], r["origin_asn"], r["as_path"])
            for r in announced
            if r["ts"] <= lab.withdrawn_at
        }
        paths = {(up, lab.watched_asn, f"{up} {lab.watched_asn}") for up in lab.upstream_asns}
        assert before == paths, prefix
        withdrawn = [r for r in mine if r["kind"] == "W"]
        assert [r["peer_addr"] for r in withdrawn] == [gone], prefix
        w = withdrawn[0]
        assert w["peer_asn"] == lab.withdrawn_upstream
        assert within(w["ts"], lab), (prefix, w["ts"], lab.withdrawn_at)
        # After the withdrawal the prefix is reachable through the other upstream only.
        last: dict[bytes, dict[str, object]] = {}
        for r in mine:
            last[r["peer_addr"]] = r
        live = {r["upstream_asn"] for r in last.values() if r["kind"] == "A"}
        assert live == set(lab.upstream_asns) - {lab.withdrawn_upstream}, prefix


def _iso(text: str) -> datetime:
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert ts.tzinfo is not None, f"{text!r}: not an aware UTC time"
    return ts.astimezone(UTC)


def test_timeline_cli(lab: LabResult, tmp_path: Path) -> None:
    from rogueflow.cli.main import cli

    ws = tmp_path / "ws"
    runner = CliRunner()
    files = [str(p) for p in lab.mrt_files]
    res = runner.invoke(
        cli, ["--workspace", str(ws), "-q", "bgp", "ingest", *files], catch_exceptions=False
    )
    assert res.exit_code == 0, res.output
    prefix = "198.51.100.0/24"
    res = runner.invoke(
        cli,
        ["--workspace", str(ws), "-q", "bgp", "timeline", "--prefix", prefix, "--json"],
        catch_exceptions=False,
    )
    assert res.exit_code == 0, res.output
    intervals = json.loads(res.stdout)
    assert isinstance(intervals, list) and intervals, res.output
    for iv in intervals:
        assert {"prefix", "origin_asn", "upstream_asn", "peers", "valid_from", "valid_to"} <= set(
            iv
        ), iv
        assert str(ipaddress.ip_network(iv["prefix"])) == prefix
        assert iv["origin_asn"] == lab.watched_asn
        assert iv["peers"], iv
    by_upstream: dict[int, list[dict[str, object]]] = {}
    for iv in intervals:
        by_upstream.setdefault(iv["upstream_asn"], []).append(iv)
    assert set(by_upstream) == set(lab.upstream_asns), intervals

    (ended,) = by_upstream[lab.withdrawn_upstream]
    assert ended["valid_to"] is not None, ended
    assert _iso(str(ended["valid_from"])) <= lab.withdrawn_at
    assert within(_iso(str(ended["valid_to"])), lab), (ended, lab.withdrawn_at)

    (kept,) = by_upstream[next(a for a in lab.upstream_asns if a != lab.withdrawn_upstream)]
    assert kept["valid_to"] is None, kept
    assert _iso(str(kept["valid_from"])) <= lab.converged_at
