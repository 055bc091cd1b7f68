"""Hosted services, inbound probing and the event overlay: against the demo's ground truth,
on the demo's control scenario, and on synthetic near misses (a server present from day
one, a one-off reply, refused scans, a retrying client, a uniflow exporter, a planted
pre-event rise)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rogueflow import addr
from rogueflow.analyze import load_profile, open_scope
from rogueflow.analyze.base import AnalysisOutput
from rogueflow.analyze.events import Event, EventOverlay, load_events
from rogueflow.analyze.eventstats import holm, t_quantile
from rogueflow.analyze.hosted import HostedServices
from rogueflow.analyze.probing import InboundProbing
from rogueflow.errors import InputError
from rogueflow.findings import Finding
from rogueflow.ops import ingest_paths
from rogueflow.report.charts import render
from rogueflow.workspace import Workspace
from tests.conftest import DemoRun

SYN, RST, PSH, ACK = 0x02, 0x04, 0x08, 0x10
DONE = SYN | ACK | PSH | 0x01  # a completed TCP session
REFUSED = SYN | RST | ACK  # a NetFlow-style refused attempt (RST-ACK from a closed port)


@dataclass
class Run:
    truth: dict[str, Any]
    outputs: dict[str, AnalysisOutput]

    def finding(self, name: str) -> Finding:
        (f,) = self.outputs[name].findings
        return f


def _run(ws: Workspace, events: list[Event]) -> dict[str, AnalysisOutput]:
    scope = open_scope(ws, load_profile("kp", None))
    try:
        return {
            "hosted": HostedServices().run(scope),
            "probing": InboundProbing().run(scope),
            "events": EventOverlay(events).run(scope),
        }
    finally:
        scope.close()


@pytest.fixture(scope="module")
def reference(demo_reference: DemoRun) -> Run:
    events = load_events(demo_reference.input / "events.csv")
    return Run(demo_reference.truth, _run(demo_reference.ws, events))


@pytest.fixture(scope="module")
def control(demo_control: DemoRun) -> Run:
    events = load_events(demo_control.input / "events.csv")
    return Run(demo_control.truth, _run(demo_control.ws, events))


def _asserted(f: Finding) -> bool:
    return bool(f.detected) and f.confidence.level in ("moderate", "high")


def _days(a: str, b: str) -> int:
    return abs((date.fromisoformat(a[:10]) - date.fromisoformat(b[:10])).days)


# --- the demo against its ground truth ------------------------------------------------------


def test_new_servers_match_truth(reference: Run) -> None:
    f = reference.finding("hosted")
    assert _asserted(f), f.statement
    new = {(r[0], int(r[1].split("/")[1])): r for r in f.evidence[0].rows if r[4] == "new"}
    truth = {(s["address"], s["port"]): s for s in reference.truth["new_servers"]}
    assert set(new) == set(truth)
    for key, s in truth.items():
        row = new[key]
        assert _days(row[5], s["first_seen_utc"]) <= 1, (key, row[5], s["first_seen_utc"])
        assert _days(row[6], s["first_seen_local_date"]) <= 1, key
    roles = {i.value: i.role for i in f.indicators}
    assert roles["175.45.177.25"].startswith("new mail server")
    assert roles["175.45.177.21"].startswith("new FTP server")
    assert roles["175.45.177.53"].startswith("new DNS server")
    assert f.metrics["new_server_addresses"].value == 3
    # every new service has sample flows: its first answered connections
    sampled = {(s.dst, s.dst_port) for s in f.samples}
    assert set(truth) <= sampled
    # the probed ports (22, 80, 445 … refused or unanswered) are no servers
    assert all(int(r[1].split("/")[1]) in (21, 25, 53, 587) for r in f.evidence[0].rows)


def test_probing_matches_truth(reference: Run) -> None:
    f = reference.finding("probing")
    assert _asserted(f), f.statement
    (truth,) = reference.truth["probing"]
    (src,) = [r for r in f.evidence[0].rows if r[2] == "yes"]
    assert src[0] == truth["source"]
    days = [d.split(" ")[0] for d in src[3].split(", ")]
    assert days == truth["days_local"]
    assert abs(src[4] - truth["attempts"]) <= 0.1 * truth["attempts"]
    assert f.metrics[f"burst_days_{truth['source']}"].value == len(truth["days_local"])
    (ind,) = f.indicators
    assert ind.value == truth["source"] and ind.role.startswith("inbound prober")
    # grouped by organisation: the prober's organisation leads the table
    assert f.evidence[1].rows[0][-1] == src[4]
    assert {s.src for s in f.samples} == {truth["source"]}


def test_event_z_reproduces_truth(reference: Run) -> None:
    f = reference.finding("events")
    for e in reference.truth["events"]:
        got = f.metrics[f"pre_event_z_{e['date']}"].value
        assert got is not None
        want = e["pre_event_z"]
        assert abs(got - want) <= max(0.1, 0.1 * abs(want)), (e["date"], got, want)
    # the simulation puts nothing before the events: no early warning is claimed
    assert f.detected is False
    assert "no early warning" in f.statement
    m = f.metrics["mean_pre_event_z"]
    assert m.low is not None and m.high is not None and m.low < 0 < m.high
    p = f.metrics["placebo_p"].value
    assert p is not None and p > 0.05


def test_charts_render(reference: Run) -> None:
    for out in reference.outputs.values():
        for f in out.findings:
            for cid in f.charts:
                assert render(out.charts[cid])["figure"]["data"], cid


def test_control_asserts_none_of_it(control: Run) -> None:
    assert control.truth["new_servers"] == [] and control.truth["probing"] == []
    for name in ("hosted", "probing", "events"):
        f = control.finding(name)
        assert not _asserted(f), f.statement
    hosted = control.finding("hosted")
    assert hosted.metrics["new_services"].value == 0 and not hosted.indicators
    assert "no outside source repeatedly probed" in control.finding("probing").statement


# --- synthetic near misses ----------------------------------------------------------------


class Flows:
    """Rows of canonical flows, written as one Parquet file."""

    def __init__(self) -> None:
        self.rows: list[tuple[Any, ...]] = []

    def add(
        self,
        t: datetime,
        src: str,
        dst: str,
        sport: int,
        dport: int,
        *,
        proto: int = 6,
        flags: int = DONE,
        packets: int = 5,
        rev_packets: int = 4,
        rev_bytes: int = 3000,
    ) -> None:
        self.rows.append((t, src, dst, sport, dport, proto, flags, packets, rev_packets, rev_bytes))

    def write(self, path: Path) -> Path:
        cols = list(zip(*self.rows, strict=True))
        ts = pa.array([int(t.timestamp() * 1e6) for t in cols[0]]).cast(
            pa.timestamp("us", tz="UTC")
        )
        n = len(self.rows)
        table = pa.table(
            {
                "ts_start": ts,
                "ts_end": ts,
                "src_addr": addr.parse_array(list(cols[1])),
                "dst_addr": addr.parse_array(list(cols[2])),
                "src_port": pa.array(cols[3], pa.uint16()),
                "dst_port": pa.array(cols[4], pa.uint16()),
                "proto": pa.array(cols[5], pa.uint8()),
                "tcp_flags": pa.array(cols[6], pa.uint8()),
                "packets": pa.array(cols[7], pa.int64()),
                "bytes": pa.array([60 * p for p in cols[7]], pa.int64()),
                "rev_packets": pa.array(cols[8], pa.int64()),
                "rev_bytes": pa.array(cols[9], pa.int64()),
                "sampling_rate": pa.array(np.ones(n, dtype=np.uint32), pa.uint32()),
                "exporter": pa.array(["sensor-1"] * n, pa.string()),
            }
        )
        pq.write_table(table, path)
        return path


def _at(d: date, rng: np.random.Generator) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(
        seconds=int(rng.integers(0, 86_400))
    )


def _year() -> list[date]:
    return [date(2017, 1, 1) + timedelta(days=i) for i in range(365)]


def _base(f: Flows, rng: np.random.Generator, d: date, n: int, *, uniflow: bool = False) -> None:
    for _ in range(n):
        host = f"175.45.176.{10 + int(rng.integers(0, 10))}"
        f.add(
            _at(d, rng),
            host,
            "8.8.8.8",
            int(rng.integers(30000, 60000)),
            443,
            rev_packets=0 if uniflow else 4,
            rev_bytes=0 if uniflow else 3000,
        )


def _ingest(root: Path, f: Flows) -> Workspace:
    ws = Workspace(root / "ws")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("os.fsync", lambda fd: None)  # ~365 day files; durability not under test
        ingest_paths(ws, [f.write(root / "flows.parquet")])
    return ws


CONTROL_EVENTS = [date(2017, m, d) for m, d in ((3, 9), (4, 21), (5, 30), (7, 4), (9, 12))]


@pytest.fixture(scope="module")
def near_miss(tmp_path_factory: pytest.TempPathFactory) -> dict[str, AnalysisOutput]:
    """A year with a web server from day one, a one-off SSH reply in September, background
    scanners (silent and refused, incl. a closed mail port), a one-day burst, a client
    retrying a closed port on two days, and events on a flat series."""
    rng = np.random.default_rng(6)
    f = Flows()
    for d in _year():
        _base(f, rng, d, int(rng.poisson(40)))
        for _ in range(int(rng.poisson(5))):  # the web server, answering since 1 January
            client = f"81.2.69.{1 + int(rng.integers(0, 30))}"
            f.add(_at(d, rng), client, "175.45.176.80", int(rng.integers(30000, 60000)), 80)
    for k in range(2):  # a one-off answered SSH connection
        f.add(datetime(2017, 9, 1, 3, k, tzinfo=UTC), "81.2.69.200", "175.45.176.90", 50000, 22)
    days = _year()
    for s in range(150):  # background scanners: a few attempts on a few days each
        src = f"45.33.{s}.7"
        for d in rng.choice(days, size=3, replace=False):
            for _ in range(int(rng.integers(1, 5))):
                dst = f"175.45.176.{10 + int(rng.integers(0, 30))}"
                port = int(rng.choice([22, 23, 25, 445, 3389]))
                if rng.random() < 0.5:  # silence (S0)
                    f.add(_at(d, rng), src, dst, 40000, port, flags=SYN, packets=2, rev_packets=0)
                else:  # refused: one RST-ACK back
                    f.add(
                        _at(d, rng),
                        src,
                        dst,
                        40000,
                        port,
                        flags=REFUSED,
                        packets=1,
                        rev_packets=1,
                        rev_bytes=40,
                    )
    # bursts inside one local day (UTC 00:00-12:00 is 08:30-20:30 in Pyongyang in 2017)
    for k in range(30):  # one burst, one day only
        t = datetime(2017, 6, 10, k % 12, k, tzinfo=UTC)
        dst = f"175.45.176.{10 + int(rng.integers(0, 10))}"
        f.add(t, "45.33.200.9", dst, 40000, 22, flags=SYN, rev_packets=0)
    for d in (date(2017, 3, 3), date(2017, 3, 4)):  # a client retrying a dead service
        for k in range(25):
            t = datetime(d.year, d.month, d.day, k % 12, k, tzinfo=UTC)
            f.add(t, "81.2.69.77", "175.45.176.80", 41000, 8443, flags=SYN, rev_packets=0)
    ws = _ingest(tmp_path_factory.mktemp("near-miss"), f)
    return _run(ws, [Event(d, f"event {i}") for i, d in enumerate(CONTROL_EVENTS)])


def test_near_miss_hosted(near_miss: dict[str, AnalysisOutput]) -> None:
    (f,) = near_miss["hosted"].findings
    assert not _asserted(f), f.statement
    status = {(r[0], r[1]): r[4] for r in f.evidence[0].rows}
    assert status == {
        ("175.45.176.80", "tcp/80"): "from the start",
        ("175.45.176.90", "tcp/22"): "possible new",
    }  # scanned ports (25 refused, 22/445 silent) are not services
    assert f.confidence.level == "low"
    assert {i.role for i in f.indicators} == {"web server (tcp/80 http)"}


def test_near_miss_probing(near_miss: dict[str, AnalysisOutput]) -> None:
    (f,) = near_miss["probing"].findings
    # the retrying client meets the letter of "repeated" but not its sense
    assert f.detected and f.confidence.level == "low", f.confidence
    assert [i.value for i in f.indicators] == ["81.2.69.77"]
    assert any("narrow" in r for r in f.confidence.reasons)
    rows = {r[0]: r for r in f.evidence[0].rows}
    assert rows["45.33.200.9"][2] == "no" and rows["45.33.200.9"][4] == 30
    assert "burst on a single day" in f.statement


def test_near_miss_events(near_miss: dict[str, AnalysisOutput]) -> None:
    (f,) = near_miss["events"].findings
    assert f.detected is False and "no early warning" in f.statement
    assert f.metrics["events_tested"].value == len(CONTROL_EVENTS)


SIGNAL_EVENTS = [date(2017, 3, 1) + timedelta(days=30 * i + 3 * (i % 3)) for i in range(9)]


@pytest.fixture(scope="module")
def uniflow(tmp_path_factory: pytest.TempPathFactory) -> dict[str, AnalysisOutput]:
    """A NetFlow-style export (no reverse counters): a DNS server from 1 June seen by its
    own outbound replies, and daily activity 60% higher on the three days before events."""
    rng = np.random.default_rng(9)
    f = Flows()
    pre = {e - timedelta(days=k) for e in SIGNAL_EVENTS for k in (1, 2, 3)}
    for d in _year():
        _base(f, rng, d, int(rng.poisson(96 if d in pre else 60)), uniflow=True)
        if d >= date(2017, 6, 1):
            for _ in range(int(rng.poisson(8))):
                client = f"81.2.69.{1 + int(rng.integers(0, 40))}"
                t, port = _at(d, rng), int(rng.integers(1024, 65000))
                f.add(t, client, "175.45.176.53", port, 53, proto=17, flags=0, packets=1,
                      rev_packets=0, rev_bytes=0)  # fmt: skip
                f.add(t, "175.45.176.53", client, 53, port, proto=17, flags=0, packets=1,
                      rev_packets=0, rev_bytes=0)  # fmt: skip
    for s in range(3):  # SYN-only attempts: the only failures a uniflow export shows
        for k in range(5):
            t = datetime(2017, 8, 1 + s, 2, k, tzinfo=UTC)
            f.add(t, f"45.33.{s}.7", "175.45.176.20", 40000, 22, flags=SYN, rev_packets=0)
    ws = _ingest(tmp_path_factory.mktemp("uniflow"), f)
    return _run(ws, [Event(d, f"event {i}") for i, d in enumerate(SIGNAL_EVENTS)])


def test_uniflow_server_found_with_less_confidence(uniflow: dict[str, AnalysisOutput]) -> None:
    (f,) = uniflow["hosted"].findings
    assert f.detected
    (row,) = f.evidence[0].rows
    assert row[:5] == ("175.45.176.53", "udp/53", "dns", "DNS", "new")
    assert _days(row[5], "2017-06-01") == 0
    assert f.confidence.level == "moderate"
    assert any("no inbound flow carries reverse counters" in r for r in f.confidence.reasons)


def test_uniflow_failed_attempts_are_tcp_syns(uniflow: dict[str, AnalysisOutput]) -> None:
    (f,) = uniflow["probing"].findings
    # the DNS requests (UDP, no reverse counters) are not taken for failed attempts
    assert f.metrics["failed_attempts"].value == 15
    assert f.metrics["failed_attempt_sources"].value == 3
    assert f.detected is False and f.confidence.level == "moderate"


def test_planted_pre_event_rise_is_found(uniflow: dict[str, AnalysisOutput]) -> None:
    (f,) = uniflow["events"].findings
    assert f.detected and f.confidence.level in ("moderate", "high"), f.statement
    assert "early-warning signal" in f.statement and "rose" in f.statement
    ratio = f.metrics["mean_pre_event_ratio"]
    assert ratio.low is not None and ratio.high is not None and ratio.low > 1.2
    # planted ×1.6 on the base traffic; the DNS server's flows (from June) dilute it
    assert 1.35 < ratio.value < 1.7
    p = f.metrics["placebo_p"].value
    assert p is not None and p < 0.05


def test_no_events_no_finding(uniflow: dict[str, AnalysisOutput], tmp_path: Path) -> None:
    assert uniflow["events"].findings  # with events there is one, without none
    empty = tmp_path / "events.csv"
    empty.write_text("date,label\n")
    assert load_events(empty) == []
    # no events: the analysis returns before it reads anything
    assert EventOverlay(None).run(None).findings == []  # type: ignore[arg-type]
    assert EventOverlay(load_events(empty)).run(None).findings == []  # type: ignore[arg-type]


# --- the events file ---------------------------------------------------------------------


def test_load_events(tmp_path: Path) -> None:
    p = tmp_path / "events.csv"
    p.write_text(
        "\ufeffDate , Label\n# launches\n\n2017-04-05,KN-15 launch\n"
        '2017-04-16,"KN-15, failed"\n2017-04-16,second\n2017-05-01,\n'
    )
    got = load_events(p)
    assert [(e.day, e.label, e.line) for e in got] == [
        (date(2017, 4, 5), "KN-15 launch", 4),
        (date(2017, 4, 16), "KN-15, failed", 5),
        (date(2017, 4, 16), "second", 6),
        (date(2017, 5, 1), "event 2017-05-01", 7),
    ]
    merged = EventOverlay(got).events
    assert [e.label for e in merged][1] == "KN-15, failed; second"


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("", "line 1", "empty file"),
        ("when,label\n2017-01-01,x\n", "line 1", "no 'date' column"),
        ("date,label\n2017-01-01,ok\n2017-13-01,bad month\n", "line 3", "'2017-13-01'"),
        ("date,label\n2017-01-01,ok\n5 April 2017,x\n", "line 3", "expected YYYY-MM-DD"),
        ("date,label\n2017-01-01,ok\n,no date\n", "line 3", "no date"),
        ("label,date\nonly a label\n", "line 2", "no date"),
        ('date,label\n2017-01-01,"open quote\n', "line 2", "bad CSV"),
    ],
)
def test_load_events_bad_input(tmp_path: Path, text: str, where: str, problem: str) -> None:
    p = tmp_path / "events.csv"
    p.write_text(text)
    with pytest.raises(InputError) as err:
        load_events(p)
    assert err.value.path == str(p) and err.value.where == where
    assert problem in str(err.value)


def test_load_events_unreadable(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read the events file"):
        load_events(tmp_path / "missing.csv")
    p = tmp_path / "latin1.csv"
    p.write_bytes(b"date,label\n2017-01-01,caf\xe9\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_events(p)


# --- the small-sample statistics ----------------------------------------------------------


@pytest.mark.parametrize(
    ("df", "want"),
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (11, 2.2010), (30, 2.0423)],
)
def test_t_quantile(df: int, want: float) -> None:
    assert t_quantile(df) == pytest.approx(want, abs=1e-3)


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03, 0.2]) == pytest.approx([0.04, 0.09, 0.09, 0.2])
