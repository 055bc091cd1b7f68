"""Tor's link protocol in captures (rogueflow.detect.tor): nDPI's real 2013 Tor capture
(every relay found, checked against nDPI's own expected output), a real Tor 0.4.x
bridge and client on loopback (TLS 1.3), sessions captured mid-way, every other shared
capture as a negative, crafted near-misses, and fuzzing of every parser."""

from __future__ import annotations

import functools
import ipaddress
import os
import re
import struct
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.detect import tor
from rogueflow.detect.p2p import Label, Stream
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.pcap import PcapReader
from rogueflow.ingest.pcapdns import frames, ip_of_frame
from rogueflow.ingest.pcappayload import payload_index
from tests.conftest import SHARED, require_tool

RELAYS = {"91.143.93.242", "38.229.70.53", "46.59.52.31", "212.83.155.250", "62.210.137.230"}
CLIENT = "192.168.1.252"
TOR_PCAP = "ndpi/pcap/tor.pcap"

# --- helpers: captures rewritten, streams reassembled ---------------------------------------


def write_pcap(path: Path, packets: list[tuple[int, bytes]], linktype: int = 1) -> Path:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    for us, frame in packets:
        out += struct.pack("<IIII", us // 10**6, us % 10**6, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


def _tcp(linktype: int, frame: bytes) -> tuple[bytes, int] | None:
    """(IPv4 packet, TCP header offset) of a TCP/IPv4 frame."""
    ip = ip_of_frame(linktype, frame)
    if ip is None or ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    return bytes(ip), (ip[0] & 15) * 4


def rewrite(
    src: Path, dst: Path, keep: Callable[[int], bool], port_map: dict[int, int] | None = None
) -> Path:
    """The packets of ``src`` whose number within their connection passes ``keep``,
    with TCP ports renamed by ``port_map``."""
    seen: dict[tuple[int, int], int] = {}
    out, link = [], 1
    for _, us, linktype, frame in frames(src):
        link, got, data = linktype, _tcp(linktype, frame), bytearray(frame)
        if got is not None:
            ip, off = got
            a, b = struct.unpack_from("!HH", ip, off)
            k = seen[(min(a, b), max(a, b))] = seen.get((min(a, b), max(a, b)), 0) + 1
            if not keep(k):
                continue
            if port_map:
                at = len(frame) - len(ip) + off  # the TCP header within the frame
                pm = port_map
                struct.pack_into("!HH", data, at, pm.get(a, a), pm.get(b, b))
        out.append((us, bytes(data)))
    return write_pcap(dst, out, link)


def streams_of(path: Path) -> dict[tuple[str, int, str, int], list[Stream]]:
    """Each TCP/IPv4 connection's directions, reassembled here independently of the code
    under test (segments by sequence number, duplicates dropped)."""
    segments: dict[tuple[bytes, int, bytes, int], dict[int, bytes]] = {}
    for _, _, linktype, frame in frames(path):
        got = _tcp(linktype, frame)
        if got is None:
            continue
        ip, off = got
        end = min(len(ip), int.from_bytes(ip[2:4], "big"))
        data = ip[off + (ip[off + 12] >> 4) * 4 : end]
        sport, dport, seq = struct.unpack_from("!HHI", ip, off)
        if data:
            segments.setdefault((ip[12:16], sport, ip[16:20], dport), {}).setdefault(seq, data)
    conns: dict[tuple[str, int, str, int], list[Stream]] = {}
    for (a, pa_, b, pb), segs in segments.items():
        buf, end_seq = bytearray(), None
        for seq in sorted(segs):
            chunk = segs[seq]
            if end_seq is not None and seq + len(chunk) <= end_seq:
                continue
            buf += chunk[0 if end_seq is None else max(0, end_seq - seq) :]
            end_seq = seq + len(chunk)
        ends = sorted([(str(ipaddress.ip_address(a)), pa_), (str(ipaddress.ip_address(b)), pb)])
        conns.setdefault((*ends[0], *ends[1]), []).append(Stream(bytes(buf)))
    return conns


@functools.cache
def real_streams(rel: str) -> tuple[tuple[bytes, ...], ...]:
    if not (SHARED / rel).is_file():
        pytest.skip(f"{SHARED / rel} not present")
    return tuple(tuple(s.data for s in ss) for ss in streams_of(SHARED / rel).values())


# --- nDPI's real Tor capture (2013, link protocol 3/4 over TLS 1.0) ---------------------------

NDPI_LINE = re.compile(r"TCP [\d.]+:(\d+) <-> [\d.]+:443 .*\[Hostname/SNI: ([^\]]+)\].*"
                       r"\[Issuer: CN=([^\]]+)\]\[Subject: CN=([^\]]+)\]")  # fmt: skip


@pytest.mark.needs_shared
def test_every_tor_connection_in_the_capture_is_found(shared: Path) -> None:
    index = payload_index(shared / TOR_PCAP)
    assert index is not None
    # nDPI's expected output names each connection's SNI and link certificate
    expected = {
        int(m[1]): m.groups()[1:]
        for m in map(
            NDPI_LINE.search, (shared / f"{TOR_PCAP}.ndpiReader.out").read_text().split("\n")
        )
        if m
    }
    assert len(expected) == 7
    found = {}
    for d in index.detections:
        ends = {addr.format_one(d.key[1]), addr.format_one(d.key[3])}
        assert CLIENT in ends and ends - {CLIENT} <= RELAYS
        label = d.label
        assert (label.service, label.category) == ("tor", "anonymizer.tor")
        assert label.coin is label.pool is label.wallet is None
        found[d.key[2] if d.key[2] != 443 else d.key[4]] = label
    assert set(found) == set(expected)  # recall 7 / 7, no other connection labelled
    for port, (sni, issuer, subject) in expected.items():
        ev = found[port].evidence
        assert ev.startswith("Tor link protocol: ClientHello SNI " + sni), ev
        assert f"link certificate CN={subject} issued by CN={issuer}" in ev
        assert "port 443 (ORPort on 443)" in ev
    # the short connection 51176 carried two cells per direction: handshake evidence only
    assert found[51176].confidence == 0.93 and "cell framing" not in found[51176].evidence
    others = [lb for p, lb in found.items() if p != 51176]
    assert all(lb.confidence == 0.97 and "(544 B ×" in lb.evidence for lb in others)


@pytest.mark.needs_shared
def test_tor_flows_are_labelled_at_ingest(shared: Path) -> None:
    """Flow recall on the capture as ingested (nDPI itself labels only 3 of the 7)."""
    table = pa.concat_tables(list(PcapReader().read(shared / TOR_PCAP, ReadOptions())))
    rows = table.to_pylist()
    tor_flows = [
        r for r in rows if {addr.format_one(r["src_addr"]), addr.format_one(r["dst_addr"])} & RELAYS
    ]
    labelled = [r for r in tor_flows if r["category"] == "anonymizer.tor"]
    assert len(tor_flows) == 7 and len(labelled) / len(tor_flows) == 1.0
    assert all(r["evidence"].startswith("payload: Tor link protocol: ") for r in labelled)
    assert [r for r in rows if r["category"] == "anonymizer.tor" and r not in labelled] == []


@pytest.mark.needs_shared
def test_sessions_seen_midway(shared: Path, tmp_path: Path) -> None:
    # drop each connection's first 8 packets: TCP and TLS handshakes, certificate
    path = rewrite(shared / TOR_PCAP, tmp_path / "mid.pcap", lambda k: k > 8)
    data = path.read_bytes()
    assert b"www." not in data and b"\x55\x04\x03" not in data  # no SNI, no certificate
    index = payload_index(path)
    assert index is not None
    labels = {d.key[2] if d.key[2] != 443 else d.key[4]: d.label for d in index.detections}
    # 51176 is too short mid-way (two cells each way): 6 of the 7 stay labelled
    assert set(labels) == {51110, 51111, 51112, 51174, 51175, 51185}
    for label in labels.values():
        assert label.category == "anonymizer.tor" and label.confidence == 0.55
        assert label.evidence.startswith("Tor link protocol (session seen mid-way, no handshake)")
        assert "in both directions; port 443" in label.evidence
    # cell framing alone, on a port Tor has no convention for, is one signal: no label
    moved = rewrite(shared / TOR_PCAP, tmp_path / "moved.pcap", lambda k: k > 8, {443: 8080})
    assert payload_index(moved) is None
    # ...while with its handshake, the same connections on 8080 are still Tor
    full = rewrite(shared / TOR_PCAP, tmp_path / "full.pcap", lambda k: True, {443: 8080})
    index = payload_index(full)
    assert index is not None and len(index) == 7


NEGATIVE_DIRS = ("ndpi/pcap", "zeek-traces", "akvorado-flows")


def negative_captures() -> list[str]:
    out = []
    for d in NEGATIVE_DIRS:
        for p in sorted((SHARED / d).glob("*.pcap*")) if (SHARED / d).is_dir() else []:
            if not p.name.endswith(".out") and f"{d}/{p.name}" != TOR_PCAP:
                out.append(f"{d}/{p.name}")
    return out or ["ndpi/pcap/http.pcapng"]


@pytest.mark.needs_shared
@pytest.mark.parametrize("rel", negative_captures())
def test_other_captures_have_no_tor(shared: Path, rel: str) -> None:
    index = payload_index(shared / rel)
    assert index is None or all(d.label.category != "anonymizer.tor" for d in index.detections)
    for streams in streams_of(shared / rel).values():  # the detector on every connection
        assert tor.detect_tor(streams, (443, 9001)) is None


# --- a real Tor (Debian's tor 0.4.x) on loopback: TLS 1.3, link protocol 5 --------------------

LAB_SCRIPT = """
set -eu
ip link set lo up
{tcpdump} -i lo -U -n -Z root -w {cap} tcp port 9001 2>{dir}/tcpdump.err &
dump=$!
for _ in $(seq 50); do grep -q listening {dir}/tcpdump.err && break; sleep 0.1; done
{tor} -f {dir}/bridge.torrc >{dir}/bridge.log 2>&1 &
bridge=$!
for _ in $(seq 300); do grep -q "Bootstrapped 0%" {dir}/bridge.log && break; sleep 0.1; done
{tor} -f {dir}/client.torrc >{dir}/client.log 2>&1 &
client=$!
# a few consensus requests (answered 404: the bridge has none) carry cells both ways
for _ in $(seq 300); do [ "$(grep -c 'fetching consensus' {dir}/client.log)" -ge 3 ] && break
    sleep 0.1; done
kill $client $bridge
wait $client $bridge || true
sleep 0.3
kill -INT $dump
wait $dump || true
"""
# directory authority and fallbacks on loopback: nothing tries the public network (the
# network namespace has only lo in any case)
LAB_DIR = (
    "DirAuthority lab orport=9999 no-v2 v3ident=" + "0" * 40 + " 127.0.0.1:9998 " + "0" * 40 + "\n"
    "UseDefaultFallbackDirs 0\nSocksPort 0\nLog notice stdout\n"
)


@pytest.fixture(scope="module")
def tor_lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A capture of a Tor client bootstrapping through a Tor bridge on 127.0.0.1:9001,
    run in a network namespace of its own (loopback only)."""
    exe = require_tool("tor", "tor")
    tcpdump = require_tool("tcpdump", "tcpdump")
    require_tool("unshare", "util-linux")
    require_tool("ip", "iproute2")
    if os.geteuid() != 0:
        pytest.skip("a network namespace and a loopback capture need root")
    d = tmp_path_factory.mktemp("torlab")
    for name in ("bridge", "client"):
        (d / name).mkdir(mode=0o700)
    (d / "bridge.torrc").write_text(
        f"DataDirectory {d}/bridge\nORPort 127.0.0.1:9001\nAddress 127.0.0.1\nBridgeRelay 1\n"
        "PublishServerDescriptor 0\nAssumeReachable 1\nExitRelay 0\nNickname labbridge\n" + LAB_DIR
    )
    (d / "client.torrc").write_text(
        f"DataDirectory {d}/client\nUseBridges 1\nBridge 127.0.0.1:9001\n" + LAB_DIR
    )
    cap = d / "tor-lab.pcap"
    script = LAB_SCRIPT.format(tcpdump=tcpdump, tor=exe, cap=cap, dir=d)
    subprocess.run(["unshare", "--net", "sh", "-c", script], check=True, timeout=120)
    client_log = (d / "client.log").read_text()
    assert "Handshake with a relay done" in client_log, client_log[-2000:]
    return cap


@pytest.mark.needs_tool("tor")
def test_real_tor_on_loopback(tor_lab: Path, tmp_path: Path) -> None:
    index = payload_index(tor_lab)
    assert index is not None
    labels = [d.label for d in index.detections]
    assert len(labels) == len(streams_of(tor_lab)) >= 1  # every link connection
    for label in labels:
        assert label.category == "anonymizer.tor" and label.confidence == 0.93
        ev = label.evidence
        # TLS 1.3: the certificate is encrypted, the SNI and the cells are not
        assert re.search(r"ClientHello SNI www\.[a-z2-7]{4,25}\.com \(random base32", ev), ev
        assert "link certificate" not in ev
        assert "(531 B ×" in ev  # a 514-byte cell + 17 bytes of TLS 1.3 (type, tag)
        assert ev.endswith("port 9001 (Tor ORPort default)")
    mid = payload_index(rewrite(tor_lab, tmp_path / "mid.pcap", lambda k: k > 8))
    assert mid is not None and [d.label.confidence for d in mid.detections] == [0.60] * len(labels)


# --- crafted TLS: near misses ----------------------------------------------------------------


def record(kind: int, body: bytes, version: int = 0x0303) -> bytes:
    return struct.pack("!BHH", kind, version, len(body)) + body


def client_hello(sni: str | None, alpn: bool = False) -> bytes:
    exts = b""
    if sni is not None:
        name = sni.encode()
        entry = b"\x00" + struct.pack("!H", len(name)) + name
        exts += struct.pack("!HH", 0, len(entry) + 2) + struct.pack("!H", len(entry)) + entry
    if alpn:
        protos = b"\x02h2\x08http/1.1"
        exts += struct.pack("!HHH", 16, len(protos) + 2, len(protos)) + protos
    exts += struct.pack("!HH", 10, 4) + b"\x00\x02\x00\x1d"  # supported groups
    body = (
        b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x04\x13\x01\xc0\x2f" + b"\x01\x00"
        + struct.pack("!H", len(exts)) + exts
    )  # fmt: skip
    return record(22, b"\x01" + len(body).to_bytes(3, "big") + body, 0x0301)


def der(tag: int, content: bytes) -> bytes:
    n = len(content)
    size = bytes([n]) if n < 128 else bytes([0x82]) + n.to_bytes(2, "big")
    return bytes([tag]) + size + content


def name(*attrs: tuple[bytes, str]) -> bytes:
    return der(
        0x30, b"".join(der(0x31, der(0x30, der(6, o) + der(0x0C, v.encode()))) for o, v in attrs)
    )


CN, ORG = b"\x55\x04\x03", b"\x55\x04\x0a"


def certificate(issuer: bytes, subject: bytes) -> bytes:
    alg = der(0x30, der(6, b"\x2a\x86\x48\x86\xf7\x0d\x01\x01\x0b") + b"\x05\x00")
    validity = der(0x30, der(0x17, b"131003000000Z") + der(0x17, b"131118235959Z"))
    tbs = der(0x30, der(0xA0, der(2, b"\x02")) + der(2, b"\x01") + alg + issuer + validity
              + subject + der(0x30, b""))  # fmt: skip
    return der(0x30, tbs + alg + der(3, b"\x00" + bytes(16)))


def server_flight(cert: bytes) -> bytes:
    hello = b"\x02" + (38).to_bytes(3, "big") + b"\x03\x01" + bytes(32) + b"\x00\xc0\x13\x00"
    certs = len(cert).to_bytes(3, "big") + cert
    msg = b"\x0b" + (len(certs) + 3).to_bytes(3, "big") + len(certs).to_bytes(3, "big") + certs
    return record(22, hello + msg) + record(20, b"\x01")


TOR_CERT = certificate(
    name((CN, "www.xkgk7fdx362yyyxib.com")), name((CN, "www.g6ghvisevf3ibuu5.net"))
)


def cells(n: int, size: int = 538) -> bytes:
    return b"".join(record(23, bytes([i % 251]) * size) for i in range(n))


def detect(client: bytes, server: bytes, port: int = 443) -> Label | None:
    return tor.detect_tor([Stream(client), Stream(server)], (50000, port))


def confidence(client: bytes, server: bytes, port: int = 443) -> float:
    label = detect(client, server, port)
    assert label is not None
    return label.confidence


def test_two_strong_signals_make_a_label() -> None:
    hello = client_hello("www.t3i3ru.com")
    assert confidence(hello + cells(5), server_flight(TOR_CERT) + cells(5)) == 0.97
    assert confidence(hello, server_flight(TOR_CERT)) == 0.93
    assert detect(hello + cells(4), record(22, b"\x02\x00\x00\x00") + cells(4)) is not None
    label = detect(client_hello("www.abc.com") + cells(4), server_flight(TOR_CERT) + cells(4))
    assert label is not None and "SNI" not in label.evidence  # 3 characters: not Tor's SNI


@pytest.mark.parametrize(
    ("client", "server"),
    [
        # a script fetching www.python.com without ALPN, ordinary records: one signal
        (client_hello("www.python.com") + record(23, b"x" * 310), record(23, b"y" * 1400) * 3),
        # Tor-shaped SNI but ALPN (Tor never sends one), plus cell-sized records
        (client_hello("www.t3i3ru.com", alpn=True) + cells(6),
         server_flight(TOR_CERT)[:40] + cells(6)),
        # a certificate with Tor-like names and an organisation: not Tor's link certificate
        (client_hello("example.org"), server_flight(certificate(
            name((CN, "www.xkgk7fdx362yyyxib.com")),
            name((ORG, "Example"), (CN, "www.g6ghvisevf3ibuu5.net"))))),
        # issuer == subject (self-signed with one random name)
        (client_hello("example.org"), server_flight(certificate(
            name((CN, "www.g6ghvisevf3ibuu5.net")), name((CN, "www.g6ghvisevf3ibuu5.net"))))),
        # ~540-byte messages of varying length (a chat protocol) after an ordinary hello
        (client_hello("chat.example.com", alpn=True)
         + b"".join(record(23, b"m" * (530 + 7 * i)) for i in range(9)),
         b"".join(record(23, b"n" * (560 - 5 * i)) for i in range(9))),
    ],
    ids=["python-no-alpn", "alpn", "cert-with-org", "cert-self-issued", "chat-540"],
)  # fmt: skip
def test_near_misses_are_not_tor(client: bytes, server: bytes) -> None:
    assert detect(client, server) is None


def test_midway_needs_a_tor_port_and_both_directions() -> None:
    split = record(23, b"\x01" * 32) + record(23, b"\x02" * 544)  # TLS 1.0 1/n-1 halves
    assert confidence(split * 5, split * 5) == 0.55
    assert confidence(split * 5, split * 5, 9001) == 0.60
    assert detect(split * 5, split * 5, 8443) is None  # framing alone
    assert detect(split * 5, record(23, b"z" * 900) * 5) is None  # one direction
    assert detect(split * 3, split * 3) is None  # too few cells
    varied = b"".join(record(23, b"v" * (530 + 6 * i)) for i in range(8))
    assert detect(varied, varied) is None  # one-cell records of one exact length only
    # mid-way segments start with a record: a cell-sized one among the first makes a probe
    assert tor.probe(split, 50000, 443) is True
    assert tor.probe(split, 50000, 8443) is None


def test_probe_decisions() -> None:
    assert tor.probe(client_hello("www.ct7ctrgb6cr7.com"), 50000, 443) is True
    assert tor.probe(client_hello("www.ct7ctrgb6cr7.com", alpn=True), 50000, 443) is False
    assert tor.probe(client_hello("www.wikipedia.org"), 50000, 443) is False
    assert tor.probe(client_hello(None), 50000, 443) is False
    assert tor.probe(client_hello("www.ct7ctrgb6cr7.com")[:20], 50000, 443) is None  # cut
    assert tor.probe(b"GET / HTTP/1.1\r\n", 50000, 443) is None
    # a capture that starts after the ClientHello: the server's flight names the relay
    assert tor.probe(server_flight(TOR_CERT), 443, 50000) is True
    assert tor.probe(server_flight(TOR_CERT)[60:], 443, 50000) is None  # not at a record


def test_parsers() -> None:
    hello = tor.client_hello(client_hello("www.gfu7hbxpfp.com", alpn=True)[9:])
    assert hello == tor.Hello("www.gfu7hbxpfp.com", True, True)
    assert tor.client_hello(client_hello(None)[9:]) == tor.Hello(None, False, True)
    assert tor.tor_link_cert(TOR_CERT) == ("www.g6ghvisevf3ibuu5.net", "www.xkgk7fdx362yyyxib.com")
    assert tor.tor_link_cert(TOR_CERT[:-30]) is not None  # cut in the key: the names are in
    assert tor.tor_link_cert(TOR_CERT[: len(TOR_CERT) // 2]) is None  # cut before the subject
    assert [tor.cells_in(n) for n in (527, 528, 531, 544, 594, 595, 1045, 3104, 16400)] == [
        0, 1, 1, 1, 1, 0, 2, 6, 0
    ]  # fmt: skip
    data = b"junk" + cells(3) + b"\n" + cells(2)[7:] + cells(2)
    assert [r.length for r in tor.records(data)] == [538] * 5


# --- fuzzing -----------------------------------------------------------------------------------


def _garble(draw: st.DrawFn, data: bytes) -> bytes:
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(data)))
        op = draw(st.integers(0, 3))
        if op == 0:
            data = data[:i]
        elif op == 1:
            data = data[:i] + draw(st.binary(max_size=40)) + data[i:]
        elif op == 2 and i < len(data):
            data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1 :]
        else:
            data = data[:i] + data[i + draw(st.integers(1, 600)) :]
    return data


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=3000), min_size=1, max_size=2), st.integers(0, 65535))
def test_arbitrary_bytes_never_crash_nor_make_tor(streams: list[bytes], port: int) -> None:
    assert tor.detect_tor([Stream(s) for s in streams], (port, 443)) is None
    for s in streams:
        assert tor.probe(s[:4096], port, 443) in (True, False, None)
        tor.records(s)


ORDINARY_TLS = ("zeek-traces/tls-conn-with-extensions.pcap", "ndpi/pcap/dns_doh.pcap",
                "zeek-traces/chrome-34-google.pcap", "ndpi/pcap/protonvpn.pcap")  # fmt: skip


@st.composite
def garbled_ordinary_tls(draw: st.DrawFn) -> list[bytes]:
    conns = [c for rel in ORDINARY_TLS for c in real_streams(rel) if c and c[0][:1] == b"\x16"]
    conn = draw(st.sampled_from(conns))
    return [_garble(draw, s) for s in conn]


@pytest.mark.needs_shared
@settings(max_examples=200)
@given(garbled_ordinary_tls(), st.sampled_from([443, 9001, 8443]))
def test_garbled_ordinary_tls_is_never_tor(streams: list[bytes], port: int) -> None:
    assert tor.detect_tor([Stream(s) for s in streams], (51000, port)) is None


@pytest.mark.needs_shared
@settings(max_examples=200)
@given(st.data())
def test_garbled_tor_never_crashes_nor_invents_names(data: st.DataObject) -> None:
    conn = data.draw(st.sampled_from(real_streams(TOR_PCAP)))
    streams = [_garble(data.draw, s) for s in conn]
    label = tor.detect_tor([Stream(s) for s in streams], (51000, 443))
    if label is None:
        return
    joined = b"".join(streams)
    for found in re.findall(r"www\.[a-z2-7]+\.(?:com|net)", label.evidence):
        assert found.encode() in joined  # every name in the evidence is in the bytes
