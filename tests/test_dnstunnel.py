"""DNS tunnelling detector (detect/dnstunnel.py): a real dns2tcp tunnel and benign DNS."""

from __future__ import annotations

import base64
import os
import random
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.detect.dnstunnel import (
    CATEGORY,
    MAX_CONFIDENCE,
    TunnelDetector,
    _question,
    entropy,
    queries_from_pcap,
    registered_domain,
    shannon,
)
from rogueflow.enrich.intel import Enricher
from rogueflow.errors import InputError
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.pcap import PcapReader
from rogueflow.schema import conform
from rogueflow.workspace import Workspace
from tests.conftest import require_tool

SERVER = "127.0.0.77"  # dns2tcpd's address: loopback only
ZONE = "tun.rogueflow.test"
PAYLOAD = 300_000


def detect(path: Path) -> TunnelDetector:
    d = TunnelDetector()
    for batch in queries_from_pcap(path):
        d.add(*batch)
    return d


# --- a real tunnel -----------------------------------------------------------------------


def _sink(server: socket.socket, got: list[int]) -> None:
    server.settimeout(20)
    try:
        conn, _ = server.accept()
    except OSError:
        return
    with conn:
        conn.settimeout(20)
        while data := conn.recv(65536):
            got[0] += len(data)


def _wait_for(proc: subprocess.Popen[bytes], text: bytes, seconds: float) -> None:
    assert proc.stderr is not None
    end = time.monotonic() + seconds
    line = b""
    while time.monotonic() < end and text not in line:
        line = proc.stderr.readline()
        if not line and proc.poll() is not None:
            break
    assert text in line, f"{proc.args!r} did not say {text!r}"


@pytest.fixture
def dns2tcp_capture(tmp_path: Path) -> Path:
    """A loopback capture of PAYLOAD bytes pushed through dns2tcp (TXT queries)."""
    dns2tcpd = require_tool("dns2tcpd", "dns2tcp")
    dns2tcpc = require_tool("dns2tcpc", "dns2tcp")
    tcpdump = require_tool("tcpdump", "tcpdump")
    if os.geteuid() != 0:
        pytest.skip("dns2tcpd must bind port 53 (the client cannot use another): needs root")
    sink = socket.create_server(("127.0.0.1", 0))
    got = [0]
    worker = threading.Thread(target=_sink, args=(sink, got), daemon=True)
    worker.start()
    conf = tmp_path / "dns2tcpd.conf"
    conf.write_text(
        f"listen = {SERVER}\nport = 53\nuser = nobody\ndomain = {ZONE}\n"
        f"resources = sink:127.0.0.1:{sink.getsockname()[1]}\n"
    )
    cap = tmp_path / "tunnel.pcap"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        server = subprocess.Popen(
            [dns2tcpd, "-F", "-f", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        procs.append(server)
        dump = subprocess.Popen(
            [
                tcpdump,
                "-i",
                "lo",
                "-U",
                "-n",
                "-Z",
                "root",
                "-c",
                "40000",
                "-w",
                str(cap),
                f"udp port 53 and host {SERVER}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        procs.append(dump)
        _wait_for(dump, b"listening on", 10)
        data = base64.b64encode(random.Random(5).randbytes(PAYLOAD * 3 // 4))
        subprocess.run(
            [dns2tcpc, "-z", ZONE, "-r", "sink", "-l", "-", SERVER],
            input=data,
            capture_output=True,
            timeout=20,
            check=True,
        )
        end = time.monotonic() + 15
        while got[0] < len(data) and time.monotonic() < end:
            time.sleep(0.05)
        assert got[0] == len(data), f"the tunnel delivered {got[0]} of {len(data)} bytes"
        time.sleep(0.3)  # let tcpdump write the last answers
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGINT if p.args[0] == tcpdump else signal.SIGTERM)
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stderr is not None:
                p.stderr.close()
        sink.close()
        worker.join(timeout=5)
    return cap


@pytest.mark.needs_tool("dns2tcpd")
@pytest.mark.needs_tool("tcpdump")
def test_dns2tcp_tunnel_is_flagged(dns2tcp_capture: Path, tmp_path: Path) -> None:
    d = detect(dns2tcp_capture)
    flagged = [v for v in d.verdicts() if v.tunnel]
    assert [(addr.format_one(v.client), v.domain) for v in flagged] == [
        ("127.0.0.1", "rogueflow.test")
    ]
    v = flagged[0]
    assert v.queries > 1000 and v.qtypes.get("TXT", 0) > 0.9 * v.queries
    assert v.entropy > 3.5 and v.max_label >= 40
    assert 0.55 <= v.confidence <= MAX_CONFIDENCE
    # the flows of the capture (nfstream) carrying those queries become dns.tunnel
    ws = Workspace(tmp_path / "ws")
    enricher = Enricher(ws)
    rows = [
        d.label_columns(enricher.apply(conform(b, source_format="pcap", source_id="0" * 16)))
        for b in PcapReader().read(dns2tcp_capture, ReadOptions())
    ]
    t = pa.concat_tables(rows)
    named = [q is not None for q in t.column("dns_query").to_pylist()]
    cats = t.column("category").to_pylist()
    assert any(named) and all(c == CATEGORY for c, n in zip(cats, named, strict=True) if n)
    assert set(t.column("service").to_pylist()) >= {"rogueflow.test"}
    assert "dns tunnel rogueflow.test from 127.0.0.1" in t.column("evidence")[0].as_py()


# --- negatives ---------------------------------------------------------------------------


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    "rel",
    [
        "zeek-traces/dns53.pcap",
        "ndpi/pcap/dns.pcap",
        "zeek-traces/wikipedia.pcap",
        "zeek-traces/workshop_2011_browse.pcap",
    ],
)
def test_ordinary_captures_have_no_tunnel(shared: Path, rel: str) -> None:
    # few queries each: the volume gate alone clears them, so judge every pair as well
    d = TunnelDetector(min_queries=1, min_distinct=1)
    n = 0
    for batch in queries_from_pcap(shared / rel):
        n += len(batch.names)
        d.add(*batch)
    assert [v for v in d.verdicts() if v.tunnel] == []
    assert n == sum(v.queries for v in d.verdicts())


def benign_workload(seed: int = 3) -> tuple[pa.Array, pa.Array, np.ndarray, pa.Array]:
    """Many ordinary names from many clients, one client very busy on CDN names."""
    rnd = random.Random(seed)
    names: list[str] = []
    clients: list[bytes] = []
    qtypes: list[int] = []

    def hexish(n: int) -> str:
        return "".join(rnd.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(n))

    sites = [
        "www.wikipedia.org",
        "en.wikipedia.org",
        "www.google.com",
        "mail.google.com",
        "clients4.google.com",
        "safebrowsing.googleapis.com",
        "www.baidu.com",
        "static.xx.fbcdn.net",
        "e7.whatsapp.net",
        "api.weibo.cn",
        "ocsp.digicert.com",
        "time.windows.com",
        "update.microsoft.com",
        "www.bbc.co.uk",
        "news.sina.com.cn",
    ]
    for i in range(6000):
        busy = i % 2 == 0
        client = "10.1.0.5" if busy else f"10.1.{rnd.randint(1, 40)}.{rnd.randint(2, 250)}"
        k = rnd.random()
        if busy and k < 0.4:
            name = f"a{rnd.randint(1, 9999)}.dsc{rnd.choice('abcdefgh')}.akamai.net"
        elif busy and k < 0.8:
            name = f"r{rnd.randint(1, 9)}---sn-{hexish(8)}.googlevideo.com"
        elif busy:
            name = f"e{rnd.randint(1, 20)}-{rnd.randint(1, 99)}.cdn.{hexish(6)}.cloudfront.net"
        else:
            name = rnd.choice(sites)
        names.append(name)
        clients.append(addr.parse_one(client))
        qtypes.append(rnd.choice([1, 1, 1, 28, 28, 65]))
    ts = 1_600_000_000_000_000 + np.arange(len(names), dtype=np.int64) * 200_000
    return (pa.array(clients, addr.ADDR_TYPE), pa.array(names), ts, pa.array(qtypes, pa.int64()))


def test_benign_cdn_workload_is_not_a_tunnel() -> None:
    clients, names, ts, qtypes = benign_workload()
    d = TunnelDetector()
    for off in range(0, len(names), 1000):  # in batches, as a reader delivers them
        d.add(
            clients[off : off + 1000],
            names[off : off + 1000],
            ts[off : off + 1000],
            qtypes[off : off + 1000],
        )
    judged = d.verdicts()
    busy = [v for v in judged if addr.format_one(v.client) == "10.1.0.5"]
    # the busy client's CDN domains were judged (enough volume) and cleared
    assert {v.domain for v in busy} >= {"akamai.net", "googlevideo.com"}
    assert all(v.queries >= 1000 for v in busy if v.domain != "cloudfront.net")
    assert [v for v in judged if v.tunnel] == []


def test_encoded_exfiltration_is_flagged_beside_benign_traffic() -> None:
    clients, names, ts, qtypes = benign_workload()
    rnd = random.Random(9)
    exfil = [
        base64.b32encode(rnd.randbytes(30)).decode().rstrip("=").lower() + f".{i}.x.exfil.example"
        for i in range(400)
    ]
    d = TunnelDetector()
    d.add(clients, names, ts, qtypes)
    ex_ts = 1_600_000_000_000_000 + np.arange(400, dtype=np.int64) * 1_000_000
    d.add(pa.array([addr.parse_one("10.1.0.9")] * 400, addr.ADDR_TYPE), pa.array(exfil), ex_ts)
    flagged = [v for v in d.verdicts() if v.tunnel]
    assert [(addr.format_one(v.client), v.domain) for v in flagged] == [
        ("10.1.0.9", "exfil.example")
    ]
    assert flagged[0].encoded_share >= 0.95 and flagged[0].qtypes == {}
    ev = flagged[0].evidence()
    assert "400 queries, 400 distinct names" in ev and "% encoded-looking" in ev


def test_label_columns_only_touches_the_flagged_client_and_domain() -> None:
    d = TunnelDetector()
    rnd = random.Random(1)
    tunnel = [f"{rnd.randbytes(24).hex()}.t.exfil.example" for _ in range(200)]
    d.add(
        pa.array([addr.parse_one("10.0.0.1")] * 200, addr.ADDR_TYPE),
        pa.array(tunnel),
        np.arange(200, dtype=np.int64) * 500_000,
    )
    n = 4
    t = pa.table(
        {
            "src_addr": pa.array(
                [addr.parse_one(a) for a in ("10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.1")],
                addr.ADDR_TYPE,
            ),
            "dns_query": pa.array([tunnel[0], tunnel[1], "www.example.org", None]),
            "service": pa.array(["dns"] * n),
            "category": pa.array(["infrastructure"] * n),
            "confidence": pa.array([0.4] * n, pa.float32()),
            "evidence": pa.array(["port udp/53"] * n),
        }
    )
    out = d.label_columns(t)
    assert out.column("category").to_pylist() == [CATEGORY] + ["infrastructure"] * 3
    assert out.column("service")[0].as_py() == "exfil.example"
    assert out.column("confidence")[0].as_py() > 0.4
    # a stronger label (a domain list at 0.95) is kept
    strong = t.set_column(
        t.schema.get_field_index("confidence"), "confidence", pa.array([0.95] * n, pa.float32())
    )
    assert d.label_columns(strong).column("category").to_pylist() == ["infrastructure"] * n


def test_registered_domain_and_entropy() -> None:
    reg, sub = registered_domain(
        pa.array(
            [
                "a.b.example.com",
                "www.bbc.co.uk",
                "x.news.sina.com.cn",
                "localhost",
                "example.com",
                "r3---sn-abc.googlevideo.com",
            ]
        )
    )
    assert reg.to_pylist() == [
        "example.com",
        "bbc.co.uk",
        "sina.com.cn",
        None,
        "example.com",
        "googlevideo.com",
    ]
    assert sub.to_pylist() == ["a.b", "www", "x.news", None, None, "r3---sn-abc"]
    texts = ["", "aaaa", "abcd", "a.b", "0123456789abcdef"]
    got = entropy(pa.array(texts))
    want = [shannon(s.replace(".", "")) for s in texts]
    assert np.allclose(got, want)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_question_parser_never_raises(data: bytes) -> None:
    got = _question(data)
    assert got is None or (isinstance(got[0], str) and 0 <= got[1] < 65536)


@settings(max_examples=50)
@given(st.binary(max_size=200))
def test_garbage_capture_raises_input_error(
    tmp_path_factory: pytest.TempPathFactory, data: bytes
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "x.pcap"
    path.write_bytes(b"\xd4\xc3\xb2\xa1" + data)
    try:
        for _ in queries_from_pcap(path):
            pass
    except InputError:
        pass


def test_zeek_dns_log_columns() -> None:
    rnd = random.Random(2)
    n = 120
    names = [f"{rnd.randbytes(20).hex()}.z.exfil.example" for _ in range(n)]
    batch = pa.table(
        {
            "ts": pa.array([1_600_000_000.0 + i for i in range(n)]),
            "id.orig_h": pa.array(["10.9.8.7"] * (n - 1) + ["not-an-address"]),
            "query": pa.array(names),
            "qtype": pa.array([16] * n, pa.uint64()),
        }
    )
    d = TunnelDetector()
    d.add_dns_log(batch)
    (v,) = d.verdicts()
    assert v.tunnel and v.domain == "exfil.example" and v.queries == n - 1
    assert v.qtypes == {"TXT": n - 1} and addr.format_one(v.client) == "10.9.8.7"


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["10.0.0.1", "10.0.0.2", "::1"]),
            st.one_of(st.none(), st.text(max_size=80), st.from_regex(r"[a-z0-9.-]{0,70}")),
            st.one_of(st.none(), st.integers(0, 65535)),
        ),
        max_size=60,
    )
)
def test_detector_takes_any_names(rows: list[tuple[str, str | None, int | None]]) -> None:
    d = TunnelDetector(min_queries=1, min_distinct=1)
    clients = pa.array([addr.parse_one(c) for c, _, _ in rows], addr.ADDR_TYPE)
    d.add(
        clients,
        pa.array([n for _, n, _ in rows], pa.string()),
        np.arange(len(rows), dtype=np.int64),
        pa.array([q for *_, q in rows], pa.int64()),
    )
    judged = d.verdicts()
    assert sum(v.queries for v in judged) <= len(rows)
    assert all(0 <= v.encoded_share <= 1 and v.entropy >= 0 for v in judged)
