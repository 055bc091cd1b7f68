"""Behaviour detectors: mining by flow shape, blockchain P2P by fan-out (detect/behaviour.py)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.detect.behaviour import MAX_CONFIDENCE, Behaviour
from rogueflow.enrich.intel import Enricher
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.pipeline import expand, plan
from rogueflow.schema import FLOW_SCHEMA, conform
from rogueflow.store.flowstore import FlowStore, read_store_file
from rogueflow.workspace import Workspace
from tests.conftest import require_tool
from tests.strategies import flow_tables

MINING_SESSIONS = {  # derived-nfcapd/PROVENANCE.md: (client, pool, pool port)
    ("192.168.2.92", "178.32.196.217", 9050),
    ("192.168.2.148", "94.23.199.191", 3333),
    ("192.168.2.148", "116.211.167.195", 3333),
    ("147.229.13.222", "185.71.66.39", 9999),
}
NEGATIVE_PCAPS = (
    "ndpi/pcap/tor.pcap",
    "ndpi/pcap/openvpn.pcap",
    "ndpi/pcap/wireguard.pcap",
    "ndpi/pcap/protonvpn.pcap",
    "ndpi/pcap/dns_doh.pcap",
    "ndpi/pcap/http.pcapng",
    "ndpi/pcap/443-chrome.pcap",
    "ndpi/pcap/dns.pcap",
    "ndpi/pcap/bitcoin.pcap",
    "ndpi/pcap/monero.pcap",
    "ndpi/pcap/ethereum.pcap",
)


# --- the pipeline's use of Behaviour, around Enricher.apply ------------------------------


def ingest_run(ws: Workspace, paths: Iterable[Path], *, drop_app_label: bool = False) -> pa.Table:
    """Ingest files in name order as one run, the way ingest/pipeline.py wires Behaviour.

    ``drop_app_label`` removes nDPI's label and the payload detectors' labels first:
    flow-record-only visibility.
    Returns every stored row.
    """
    store = FlowStore(ws)
    enricher = Enricher(ws)
    behaviour = Behaviour()
    try:
        for path in expand(paths):
            p = plan(path)
            source_id = p.sha256[:16]

            def batches(p: Any = p, source_id: str = source_id) -> Iterator[pa.Table]:
                behaviour.begin_file()
                for batch in p.reader.read(p.path, ReadOptions()):
                    t = conform(batch, source_format=p.reader.name, source_id=source_id)
                    if drop_app_label:
                        for name in ("app_label", "service", "category", "evidence", "coin"):
                            i = t.schema.get_field_index(name)
                            t = t.set_column(i, name, pa.nulls(t.num_rows, pa.string()))
                        i = t.schema.get_field_index("confidence")
                        t = t.set_column(i, "confidence", pa.nulls(t.num_rows, pa.float32()))
                    yield behaviour.hold(enricher.apply(t))
                yield from behaviour.release()

            store.write_source(path=p.path, sha256=p.sha256, fmt=p.reader.name, batches=batches())
        tables = [read_store_file(f) for f in store.files()]
    finally:
        store.close()
    return pa.concat_tables(tables) if tables else FLOW_SCHEMA.empty_table()


def by_behaviour(t: pa.Table) -> np.ndarray[Any, Any]:
    ev = pc.fill_null(t.column("evidence"), "")
    made = pc.or_(pc.starts_with(ev, "flow shape"), pc.starts_with(ev, "fan-"))
    return np.asarray(made.to_numpy(zero_copy_only=False), dtype=bool)


def endpoints(t: pa.Table) -> list[tuple[str, str, int, int]]:
    src = addr.format_array(t.column("src_addr"))
    dst = addr.format_array(t.column("dst_addr"))
    return list(
        zip(
            src,
            dst,
            t.column("src_port").to_pylist(),
            t.column("dst_port").to_pylist(),
            strict=True,
        )
    )


def in_mining_session(src: str, dst: str, sp: int, dp: int) -> bool:
    return any({src, dst} == {c, s} and port in (sp, dp) for c, s, port in MINING_SESSIONS)


# --- real data ---------------------------------------------------------------------------


@pytest.mark.needs_shared
@pytest.mark.needs_tool("nfdump")
def test_mining_nfcapd_run_by_behaviour_alone(shared: Path, workspace: Workspace) -> None:
    require_tool("nfdump", "nfdump")
    t = ingest_run(workspace, [shared / "derived-nfcapd" / "mining"])
    truth = [in_mining_session(*e) for e in endpoints(t)]
    assert t.num_rows >= 36 and all(truth)  # every record of the capture is mining
    mining = np.asarray(pc.equal(t.column("category"), "crypto.mining").to_numpy(False), bool)
    made = by_behaviour(t)
    # no indicator list is loaded: every mining label is the behaviour detector's own
    assert (mining <= made).all()
    recall = mining.sum() / len(truth)
    assert recall >= 0.9, recall
    conf = t.column("confidence").to_numpy()
    assert (conf[mining] <= MAX_CONFIDENCE + 1e-6).all() and (conf[mining] >= 0.5).all()
    ev = t.column("evidence").to_pylist()
    one_packet = [
        e
        for e, pk, m in zip(ev, t.column("packets").to_pylist(), mining, strict=True)
        if pk == 1 and m
    ]
    # a lone 40-byte ACK record is labelled from its session, not from itself
    assert one_packet and all("records" in e and "pkt/s" in e for e in one_packet)
    assert any("port 3333 (Stratum default)" in e and "no FIN/RST" in e for e in ev)


@pytest.mark.needs_shared
@pytest.mark.needs_tool("nfdump")
def test_no_mining_on_negatives(shared: Path, tmp_path: Path) -> None:
    require_tool("nfdump", "nfdump")
    paths = [shared / "derived-nfcapd" / "tor"]
    paths += sorted((shared / "zeek-traces").glob("*.pcap"))
    paths += [shared / p for p in NEGATIVE_PCAPS]
    t = ingest_run(Workspace(tmp_path / "ws"), paths)
    assert t.num_rows > 100
    cats = t.column("category").to_pylist()
    made = by_behaviour(t)
    assert "crypto.mining" not in cats
    # behaviour may only ever add crypto.p2p here (the blockchain captures)
    assert {c for c, m in zip(cats, made, strict=True) if m} <= {"crypto.p2p"}


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    ("name", "peers", "port"),
    [("bitcoin.pcap", 6, 8333), ("monero.pcap", 3, 18080)],
)
def test_p2p_pcaps(shared: Path, tmp_path: Path, name: str, peers: int, port: int) -> None:
    path = shared / "ndpi" / "pcap" / name
    # end to end: nDPI's label or fan-out, every flow to the peers is crypto.p2p
    full = ingest_run(Workspace(tmp_path / "a"), [path])
    assert set(full.column("category").to_pylist()) == {"crypto.p2p"}
    # flow-record visibility (no nDPI label): fan-out alone finds the node's peers
    bare = ingest_run(Workspace(tmp_path / "b"), [path], drop_app_label=True)
    on_port = np.asarray(pc.equal(bare.column("dst_port"), port).to_numpy(False), bool)
    made = by_behaviour(bare)
    assert on_port.sum() == peers and made[on_port].all()
    assert set(np.asarray(bare.column("category").to_pylist())[on_port]) == {"crypto.p2p"}
    ev = bare.column("evidence").to_pylist()
    assert all(f"with {peers} peers on tcp/{port}" in ev[i] for i in np.flatnonzero(on_port))
    assert (bare.column("confidence").to_numpy()[on_port] <= MAX_CONFIDENCE + 1e-6).all()


# --- synthetic sessions ------------------------------------------------------------------

T0 = 1_500_000_000_000_000  # µs


def flows(rows: list[dict[str, Any]], **enrich: Any) -> pa.Table:
    """Enriched-looking canonical rows: src, dst (text), sp, dp, t (s), d (s), pk, by …"""
    cols: dict[str, list[Any]] = {
        "ts_start": [T0 + int(r.get("t", 0) * 1e6) for r in rows],
        "ts_end": [T0 + int((r.get("t", 0) + r.get("d", 0)) * 1e6) for r in rows],
        "src_addr": [addr.parse_one(r["src"]) for r in rows],
        "dst_addr": [addr.parse_one(r["dst"]) for r in rows],
        "src_port": [r["sp"] for r in rows],
        "dst_port": [r["dp"] for r in rows],
        "proto": [r.get("proto", 6) for r in rows],
        "tcp_flags": [r.get("flags", 0x18) for r in rows],
        "packets": [r["pk"] for r in rows],
        "bytes": [r["by"] for r in rows],
        "rev_packets": [r.get("rpk", 0) for r in rows],
        "rev_bytes": [r.get("rby", 0) for r in rows],
    }
    t = pa.table(
        {
            **{k: pa.array(v) for k, v in cols.items() if not k.startswith("ts")},
            "ts_start": pa.array(cols["ts_start"], pa.int64()).cast(pa.timestamp("us", "UTC")),
            "ts_end": pa.array(cols["ts_end"], pa.int64()).cast(pa.timestamp("us", "UTC")),
        }
    )
    t = conform(t, source_format="test", source_id="0" * 16)
    n = t.num_rows
    values = {
        "category": [r.get("category", "unclassified") for r in rows],
        "confidence": [r.get("confidence", 0.0) for r in rows],
        **enrich,
    }
    for name, v in values.items():
        i = t.schema.get_field_index(name)
        t = t.set_column(i, name, pa.array(v, t.schema.field(i).type))
    assert t.num_rows == n
    return t


def run(files: list[list[dict[str, Any]]], **kw: Any) -> list[pa.Table]:
    """Each inner list is one file of the run; returns the labelled output per file."""
    b = Behaviour(**kw)
    out = []
    for rows in files:
        b.begin_file()
        parts = [b.hold(flows(rows))]
        parts += list(b.release())
        out.append(pa.concat_tables(parts))
    return out


def stratum(
    t: float, d: float, c2s: tuple[int, int], s2c: tuple[int, int], **kw: Any
) -> list[dict[str, Any]]:
    """The two one-way records of a pool session interval."""
    base = {"t": t, "d": d, **kw}
    cli = {"src": "10.0.0.5", "dst": "198.51.100.7", "sp": 40000, "dp": kw.pop("port", 3333)}
    srv = {"src": "198.51.100.7", "dst": "10.0.0.5", "sp": cli["dp"], "dp": 40000}
    base.pop("port", None)
    return [
        {**cli, **base, "pk": c2s[0], "by": c2s[1]},
        {**srv, **base, "pk": s2c[0], "by": s2c[1]},
    ]


def categories(t: pa.Table) -> list[str]:
    return [str(c) for c in t.column("category").to_pylist()]


def test_session_split_across_files_is_judged_as_one() -> None:
    files = [
        stratum(0, 280, (30, 4000), (25, 3000), flags=0x1A),
        stratum(300, 280, (1, 40), (1, 350), flags=0x10),
        stratum(600, 0, (1, 40), (1, 350), flags=0x10),
    ]
    out = run(files)
    for t in out:
        assert categories(t) == ["crypto.mining"] * 2
    ev = out[-1].column("evidence")[0].as_py()
    assert "session 600 s over 6 records" in ev and "no FIN/RST" in ev
    assert "port 3333 (Stratum default)" in ev


def test_a_lone_record_or_scan_is_not_mining() -> None:
    syn = [
        {
            "src": "10.0.0.9",
            "dst": "198.51.100.8",
            "sp": 5000,
            "dp": 3333,
            "pk": 1,
            "by": 60,
            "flags": 0x02,
        }
    ]
    brief = stratum(0, 2, (6, 700), (5, 3000), flags=0x1B, port=8888)  # a closed request
    bulk = stratum(0, 400, (20000, 30_000_000), (10000, 400_000), port=9000)
    for files in ([syn], [brief], [bulk]):
        assert "crypto.mining" not in categories(run(files)[0])


def test_shape_alone_on_other_ports_is_not_mining() -> None:
    # Tor on 443: long-lived, small packets, still open -- a miner's shape, not its port
    tor = stratum(0, 900, (60, 6000), (50, 9000), port=443)
    assert categories(run([tor])[0]) == ["unclassified"] * 2


def test_stronger_labels_are_kept() -> None:
    rows = stratum(0, 900, (60, 6000), (50, 9000))
    for r in rows:
        r.update(category="anonymizer.tor", confidence=0.8)
    t = run([rows])[0]
    assert categories(t) == ["anonymizer.tor"] * 2
    # a weaker port rule is upgraded, and a pool indicator adds weight
    for r in rows:
        r.update(category="crypto.mining", confidence=0.4)
    t = run([rows])[0]
    assert categories(t) == ["crypto.mining"] * 2
    assert "pool indicator on the row" in t.column("evidence")[0].as_py()


def test_port_9999_fan_out_is_dash_not_mining() -> None:
    dash = []
    for k in range(4):
        peer = f"203.0.113.{k + 1}"
        dash += [
            {
                "src": "10.0.0.7",
                "dst": peer,
                "sp": 50000 + k,
                "dp": 9999,
                "pk": 40,
                "by": 9000,
                "t": k,
                "d": 700,
            },
            {
                "src": peer,
                "dst": "10.0.0.7",
                "sp": 9999,
                "dp": 50000 + k,
                "pk": 40,
                "by": 20000,
                "t": k,
                "d": 700,
            },
        ]
    t = run([dash])[0]
    assert categories(t) == ["crypto.p2p"] * 8
    assert set(t.column("service").to_pylist()) == {"dash-p2p"}
    assert set(t.column("coin").to_pylist()) == {"DASH"}
    # one host, one peer on 9999, a miner's shape: a pool (nanopool ETH convention)
    pool = stratum(0, 900, (300, 30000), (250, 45000), port=9999)
    assert categories(run([pool])[0]) == ["crypto.mining"] * 2


def test_many_miners_at_one_pool_are_not_p2p() -> None:
    rows = []
    for k in range(5):
        cli = f"10.0.1.{k + 1}"
        rows += [
            {
                "src": cli,
                "dst": "198.51.100.9",
                "sp": 41000,
                "dp": 9999,
                "pk": 100,
                "by": 9000,
                "d": 900,
            },
            {
                "src": "198.51.100.9",
                "dst": cli,
                "sp": 9999,
                "dp": 41000,
                "pk": 90,
                "by": 12000,
                "d": 900,
            },
        ]
    assert set(categories(run([rows])[0])) == {"crypto.mining"}


def test_memory_caps() -> None:
    b = Behaviour(max_held_rows=4, max_sessions=2)
    b.begin_file()
    out = [b.hold(flows(stratum(0, 900, (60, 6000), (50, 9000))))]
    assert out[0].num_rows == 0  # both rows held
    out.append(b.hold(flows(stratum(0, 900, (60, 6000), (50, 9000), port=3334) * 1)))
    assert out[-1].num_rows == 4  # the cap released everything, decided
    assert set(categories(out[-1])) == {"crypto.mining"}
    assert list(b.release()) == []
    b.begin_file()
    for k in range(5):
        rows = stratum(k * 1000, 900, (60, 6000), (50, 9000))
        for r in rows:
            r["sp" if r["sp"] != 3333 else "dp"] = 42000 + k
        b.hold(flows(rows))
    list(b.release())
    assert b.sessions <= 2


# --- fuzz and speed ----------------------------------------------------------------------

CATS = st.sampled_from(["unclassified", "crypto.mining", "crypto.p2p", "anonymizer.tor"])


@settings(max_examples=60)
@given(
    tables=st.lists(flow_tables(max_rows=30), min_size=1, max_size=4),
    cats=st.lists(CATS, min_size=120, max_size=120),
    confs=st.lists(st.floats(0, 1, width=32), min_size=120, max_size=120),
    mining_ports=st.lists(
        st.sampled_from([3333, 9999, 8333, 18080, 443]), min_size=120, max_size=120
    ),
)
def test_fuzz_never_raises_and_labels_only_candidates(
    tables: list[pa.Table], cats: list[str], confs: list[float], mining_ports: list[int]
) -> None:
    b = Behaviour(max_held_rows=25, max_sessions=10)
    for k, raw in enumerate(tables):
        n = raw.num_rows
        # steer half the rows onto the ports that matter, so sessions actually form
        dp = np.where(np.arange(n) % 2 == 0, mining_ports[:n], raw.column("dst_port").to_numpy())
        raw = raw.set_column(
            raw.schema.get_field_index("dst_port"), "dst_port", pa.array(dp, pa.uint16())
        )
        t = conform(raw, source_format="fuzz", source_id=f"{k:016d}")
        t = t.set_column(
            t.schema.get_field_index("category"), "category", pa.array(cats[:n], pa.string())
        )
        t = t.set_column(
            t.schema.get_field_index("confidence"), "confidence", pa.array(confs[:n], pa.float32())
        )
        t = t.append_column("_row", pa.array(np.arange(n)))
        cand = b.candidates(t)
        b.begin_file()
        out = pa.concat_tables([b.hold(t), *b.release()])
        assert out.num_rows == n
        out = out.sort_by("_row")
        changed = np.asarray(
            pc.fill_null(pc.not_equal(out.column("category"), t.column("category")), True).to_numpy(
                False
            ),
            bool,
        )
        assert not (changed & ~cand).any()
        new = out.column("confidence").to_numpy()
        old = t.column("confidence").to_numpy()
        assert ((new == old) | ((new <= MAX_CONFIDENCE + 1e-6) & (new > old))).all()
        for name in ("src_addr", "bytes", "packets", "ts_start"):
            assert out.column(name).equals(t.column(name))


def synthetic(n: int, candidate_share: float = 0.01, seed: int = 7) -> pa.Table:
    """n enriched-looking rows; ``candidate_share`` of them on pool/blockchain ports."""
    rng = np.random.default_rng(seed)
    hosts = rng.integers(0, 50_000, n, dtype=np.uint32) + np.uint32(0x0A000000)
    peers = rng.integers(0, 2**32, n, dtype=np.uint32)
    dp = rng.choice(np.array([443, 80, 53, 123, 8080], dtype=np.uint16), n)
    k = int(n * candidate_share)
    dp[:k] = rng.choice(np.array([3333, 9999, 8333, 18080, 4444], dtype=np.uint16), k)
    ts = T0 + rng.integers(0, 300_000_000, n)
    t = pa.table(
        {
            "ts_start": pa.array(ts).cast(pa.timestamp("us", "UTC")),
            "ts_end": pa.array(ts + 60_000_000).cast(pa.timestamp("us", "UTC")),
            "src_addr": addr.from_ipv4_uint32(hosts),
            "dst_addr": addr.from_ipv4_uint32(peers),
            "src_port": pa.array(rng.integers(1024, 65535, n, dtype=np.uint16)),
            "dst_port": pa.array(dp),
            "proto": pa.array(np.full(n, 6, dtype=np.uint8)),
            "packets": pa.array(rng.integers(1, 100, n)),
            "bytes": pa.array(rng.integers(40, 100_000, n)),
        }
    )
    t = conform(t, source_format="bench", source_id="0" * 16)
    cat = pa.array(["unclassified", "infrastructure"]).take(pa.array(rng.integers(0, 2, n)))
    t = t.set_column(t.schema.get_field_index("category"), "category", cat)
    return t.set_column(
        t.schema.get_field_index("confidence"), "confidence", pa.array(np.zeros(n, np.float32))
    )


def hold_rate(n: int, batch: int = 262_144) -> float:
    """Rows per second through hold()+release() on an n-row synthetic table."""
    table = synthetic(n)
    b = Behaviour()
    b.begin_file()
    start = time.perf_counter()
    rows = 0
    for off in range(0, n, batch):
        rows += b.hold(table.slice(off, batch)).num_rows
    rows += sum(t.num_rows for t in b.release())
    took = time.perf_counter() - start
    assert rows == n
    return n / took


def test_hold_throughput_smoke() -> None:
    assert hold_rate(500_000) > 1_000_000


@pytest.mark.slow
def test_hold_throughput_5m() -> None:
    rate = hold_rate(5_000_000)
    print(f"hold+release: {rate / 1e6:.1f}M rows/s on 5M rows (1% candidates)")
    assert rate > 3_000_000
