"""The DNS stub of ``intel update`` against a real UDP server on 127.0.0.1.

The server's wire format is written here independently of rogueflow's codec
(answers use compression pointers), so the codec is checked against bytes it
did not produce. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow.enrich.intel import DOMAIN_KINDS
from rogueflow.errors import ConfigError, InputError
from rogueflow.intel import resolve
from rogueflow.intel.feeds import load_feeds, update
from rogueflow.intel.resolve import (
    DNSParseError,
    ResolveError,
    encode_query,
    load_resolutions,
    parse_response,
    resolve_names,
)
from rogueflow.intel.snapshots import IntelStore
from rogueflow.ops import ingest_paths
from rogueflow.workspace import Workspace
from tests.test_enrich import _flows, _rows
from tests.test_intel_update import Server, server  # noqa: F401  (fixture)

Reply = Callable[[bytes, str, int], bytes | None]

RECORDS = {
    "pool.example.com": ["198.51.100.7", "2001:db8::7"],
    "xmr.example.org": ["198.51.100.8"],
    "shared-a.example.net": ["198.51.100.9"],
    "shared-b.example.net": ["198.51.100.9"],
}


def _qname(data: bytes) -> tuple[str, int]:
    labels, off = [], 12
    while data[off]:
        labels.append(data[off + 1 : off + 1 + data[off]].decode())
        off += 1 + data[off]
    return ".".join(labels), off + 1


def answer(query: bytes, addrs: list[str], *, flags: int = 0x8180) -> bytes:
    """A response with a CNAME-free answer section; owner names point at the question."""
    _, end = _qname(query)
    qtype = struct.unpack_from("!H", query, end)[0]
    question = query[12 : end + 4]
    records = b""
    n = 0
    for a in addrs:
        ip = ipaddress.ip_address(a)
        if (ip.version == 4) != (qtype == 1):
            continue
        records += struct.pack("!HHHIH", 0xC00C, qtype, 1, 300, len(ip.packed)) + ip.packed
        n += 1
    return struct.pack("!HHHHHH", query[0] << 8 | query[1], flags, 1, n, 0, 0) + question + records


def default_reply(query: bytes, name: str, qtype: int) -> bytes | None:
    if name not in RECORDS:
        return answer(query, [], flags=0x8183)  # NXDOMAIN
    return answer(query, RECORDS[name])


class DNSServer:
    """A UDP DNS server on 127.0.0.1 answering through ``reply`` (None: stay silent)."""

    def __init__(self, reply: Reply = default_reply) -> None:
        self.reply = reply
        self.queries: list[tuple[str, int]] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        deadline = time.monotonic() + 60  # bounded even if a test forgets to close
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                data, peer = self.sock.recvfrom(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            name, end = _qname(data)
            qtype = struct.unpack_from("!H", data, end)[0]
            self.queries.append((name, qtype))
            out = self.reply(data, name, qtype)
            if out is not None:
                self.sock.sendto(out, peer)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture
def dns() -> Iterator[DNSServer]:
    s = DNSServer()
    yield s
    s.close()


def test_resolves_a_and_aaaa(dns: DNSServer) -> None:
    names = [*RECORDS, "nothing.example.com", "*.wild.example.com", "||adblock.example.com^"]
    got = resolve_names(names, dns.address, 1.0)
    assert got == sorted(
        (name, str(ipaddress.ip_address(a))) for name, addrs in RECORDS.items() for a in addrs
    )
    asked = {n for n, _ in dns.queries}
    assert "nothing.example.com" in asked and not any("*" in n or "|" in n for n in asked)
    assert {t for _, t in dns.queries} == {1, 28}


def test_caps_the_number_of_names(dns: DNSServer) -> None:
    got = resolve_names(list(RECORDS), dns.address, 1.0, max_names=1)
    assert got == [("pool.example.com", "198.51.100.7"), ("pool.example.com", "2001:db8::7")]


def test_garbled_and_truncated_answers_give_no_addresses() -> None:
    def reply(query: bytes, name: str, qtype: int) -> bytes | None:
        good = answer(query, ["198.51.100.1", "2001:db8::1"])
        match name.split(".")[0]:
            case "good":
                return good
            case "junk":
                return query[:2] + b"\x81\x80\xff\xff\x00\x07garbage"
            case "cut":
                return good[:-3]  # the last address record runs past the end
            case "tc":
                return answer(query, ["198.51.100.1"], flags=0x8380)  # TC bit
            case "loop":  # the answer's owner name points at itself
                head = struct.pack("!HHHHHH", query[0] << 8 | query[1], 0x8180, 1, 1, 0, 0)
                body = head + query[12:]
                return body + struct.pack("!H", 0xC000 | len(body)) + b"\0\1\0\1"
            case "other":  # an answer to a different question
                return answer(encode_query(query[0] << 8 | query[1], "good.example.com", qtype), [])
        return None

    dns_server = DNSServer(reply)
    try:
        names = [f"{w}.example.com" for w in ("good", "junk", "cut", "tc", "loop", "other")]
        started = time.monotonic()
        got = resolve_names(names, dns_server.address, 0.2)
        assert time.monotonic() - started < 5
    finally:
        dns_server.close()
    assert got == [("good.example.com", "198.51.100.1"), ("good.example.com", "2001:db8::1")]
    # garbled answers are ignored, so their queries time out and are re-sent once
    assert dns_server.queries.count(("junk.example.com", 1)) == 2


def test_silent_or_absent_resolver_fails_in_bounded_time() -> None:
    silent = DNSServer(lambda q, n, t: None)
    try:
        started = time.monotonic()
        with pytest.raises(ResolveError, match="answered none"):
            resolve_names(["a.example.com", "b.example.com"], silent.address, 0.1)
        assert time.monotonic() - started < 2
    finally:
        silent.close()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    with pytest.raises(ResolveError):
        resolve_names(["a.example.com"], closed, 0.2)
    assert resolve_names(["*.only-wildcards.example.com"], closed, 0.2) == []


def test_server_addresses_and_resolv_conf(tmp_path: Path) -> None:
    assert resolve.parse_server("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert resolve.parse_server("[::1]:5353") == ("::1", 5353)
    assert resolve.parse_server("::1") == ("::1", 53)
    for bad in ("localhost", "127.0.0.1:x", "127.0.0.1:0"):
        with pytest.raises(ConfigError):
            resolve.parse_server(bad)
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nsearch example\nnameserver 127.0.0.53\nnameserver 10.0.0.1\n")
    assert resolve.system_resolver(conf) == "127.0.0.53"
    conf.write_text("search example\n")
    with pytest.raises(ConfigError, match="no nameserver"):
        resolve.system_resolver(conf)


def _response_prefix(qid: int, name: str, qtype: int, an: int) -> bytes:
    q = encode_query(qid, name, qtype)
    return struct.pack("!HHHHHH", qid, 0x8180, 1, an, 0, 0) + q[12:]


def test_codec_rejects_bad_messages() -> None:
    prefix = _response_prefix(7, "a.example.com", 1, 1)
    rr = struct.pack("!HHHIH", 0xC00C, 1, 1, 60, 4) + bytes([198, 51, 100, 1])
    assert parse_response(prefix + rr, 7, "a.example.com", 1) == ["198.51.100.1"]
    assert parse_response(prefix + rr, 7, "A.Example.COM.", 1) == ["198.51.100.1"]
    bad = {
        "short": prefix[:11],
        "wrong id": prefix + rr,
        "pointer loop": prefix + struct.pack("!H", 0xC000 | len(prefix)) + rr[2:],
        "pointer past end": prefix + b"\xff\xff" + rr[2:],
        "reserved label": prefix + b"\x80" + rr[2:],
        "cut rdata": prefix + rr[:-1],
        "bad rdlength": prefix + rr[:-6] + b"\0\5" + rr[-4:] + b"\0",
    }
    for what, data in bad.items():
        with pytest.raises(DNSParseError):
            parse_response(data, 8 if what == "wrong id" else 7, "a.example.com", 1)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600), st.integers(0, 3), st.booleans())
def test_decoder_fuzz(tail: bytes, an: int, with_prefix: bool) -> None:
    data = _response_prefix(7, "a.example.com", 28, an) + tail if with_prefix else tail
    try:
        got = parse_response(data, 7, "a.example.com", 28)
    except DNSParseError:
        return
    assert all(ipaddress.ip_address(a).version == 6 for a in got)


def test_load_resolutions(tmp_path: Path) -> None:
    f = tmp_path / "r.csv"
    f.write_text(
        "name,address,category,resolved_at\n"
        "b.example.net,198.51.100.9,crypto.mining,2024-03-01T00:00:00+00:00\n"
        "a.example.net,198.51.100.9,anonymizer.vpn,2024-03-01T00:00:00+00:00\n"
        "a.example.net,2001:db8::1,anonymizer.vpn,2024-03-02T00:00:00+00:00\n"
    )
    res = load_resolutions(f)
    assert len(res) == 3 and res.valid_from == datetime(2024, 3, 1, tzinfo=UTC)
    assert res.valid_to == datetime(2024, 3, 9, tzinfo=UTC)
    rt = res.table()
    assert rt.get("198.51.100.9") == "a.example.net|anonymizer.vpn"  # first in sorted order
    assert rt.get("2001:db8::1") == "a.example.net|anonymizer.vpn"
    assert rt.get("198.51.100.10") is None
    for line, problem in (
        ("a.example.net,999.1.1.1,x,2024-03-01T00:00:00+00:00", "not an IP address"),
        ("a.example.net,198.51.100.1,x", "3 fields"),
        ("bad name,198.51.100.1,x,2024-03-01T00:00:00+00:00", "not a domain"),
        ("a.example.net,198.51.100.1,x,2024-03-01", "no time zone"),
        ("a.example.net,198.51.100.1,,2024-03-01T00:00:00+00:00", "empty category"),
    ):
        f.write_text(f"name,address,category,resolved_at\n{line}\n")
        with pytest.raises(InputError, match=f"line 2: .*{problem}"):
            load_resolutions(f)
    f.write_text("domain,ip\n")
    with pytest.raises(InputError, match="line 1: header"):
        load_resolutions(f)


def test_categories_agree_with_enrichment() -> None:
    assert resolve.DOMAIN_CATEGORIES == DOMAIN_KINDS


def _feeds_toml(ws: Workspace, http: Server, resolver: str) -> None:
    (ws.root / "feeds.toml").write_text(
        "builtin_feeds = false\n"
        f'[defaults]\nresolver = "{resolver}"\n'
        '[[feed]]\nname = "pools"\nkind = "mining-pools"\nformat = "domains"\n'
        f'url = "{http.url("/pools.txt")}"\nvalid_for_days = 7\n'
    )


def test_update_resolves_and_enrichment_matches_by_address(
    server: Server,  # noqa: F811
    dns: DNSServer,
    workspace: Workspace,
    tmp_path: Path,
) -> None:
    server.routes["/pools.txt"] = b"# pools\npool.example.com\nxmr.example.org\ngone.example.com\n"
    _feeds_toml(workspace, server, dns.address)
    before = datetime.now(UTC)
    (result,) = update(workspace)
    assert result.ok and result.resolutions is not None, result.line()
    assert "resolved dns-resolutions:pools.resolved:" in result.line()
    snap = IntelStore(workspace).get(result.resolutions.id)
    assert snap.kind == "dns-resolutions" and snap.rows == 3
    assert snap.valid_from is not None and snap.valid_to is not None
    assert before <= snap.valid_from <= datetime.now(UTC)
    assert snap.valid_to - snap.valid_from == timedelta(days=7)
    assert snap.path.read_text().splitlines()[0] == "name,address,category,resolved_at"

    inside = (snap.valid_from + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    earlier = (snap.valid_from - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    f = _flows(
        tmp_path / "f.parquet",
        [
            (inside, "10.1.1.1", "198.51.100.7", 6, 3333),
            (inside, "10.1.1.2", "2001:db8::7", 6, 3333),
            (earlier, "10.1.1.3", "198.51.100.7", 6, 3333),
            ("2018-05-01T00:00:00", "10.1.1.4", "198.51.100.8", 6, 3333),
        ],
    )
    ingest_paths(workspace, [f])
    got = _rows(
        workspace,
        "SELECT ip_text(src_addr), category, confidence, evidence, intel FROM flows ORDER BY 1",
    )
    by_src = {r[0]: r[1:] for r in got}
    for src in ("10.1.1.1", "10.1.1.2"):
        category, confidence, evidence, intel = by_src[src]
        assert category == "crypto.mining" and evidence == "resolved pool.example.com"
        assert confidence == pytest.approx(0.8)
        assert snap.id in str(intel)
    for src in ("10.1.1.3", "10.1.1.4"):
        assert by_src[src][0] != "crypto.mining"
        assert snap.id not in str(by_src[src][3])


def test_resolution_failure_does_not_fail_the_feed(
    server: Server,  # noqa: F811
    workspace: Workspace,
) -> None:
    server.routes["/pools.txt"] = b"pool.example.com\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{s.getsockname()[1]}"
    _feeds_toml(workspace, server, closed)
    (result,) = update(workspace)
    assert result.ok and result.resolutions is None and result.resolve_error
    assert "not resolved: resolver 127.0.0.1" in result.line()
    store = IntelStore(workspace, builtins=list)
    assert [s.kind for s in store.list()] == ["mining-pools"]


def test_resolver_setting_is_checked(server: Server, workspace: Workspace) -> None:  # noqa: F811
    _feeds_toml(workspace, server, "resolver.example.com")
    with pytest.raises(ConfigError, match="not an IP address"):
        load_feeds(workspace)
    (workspace.root / "feeds.toml").write_text("[defaults]\nresolvers = '127.0.0.1'\n")
    with pytest.raises(ConfigError, match=r"\[defaults\] unknown key"):
        load_feeds(workspace)
