"""Payload detectors on captures: mining (Stratum, CryptoNote, eth-proxy, getwork) with
wallets, blockchain P2P (Bitcoin family, Monero levin), TCP reassembly, flow-table
labelling, the shared real captures (ground truth and negatives), captures cut or
started mid-session, and fuzzing of every parser."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.detect import p2p, stratum
from rogueflow.detect.p2p import Stream, detect_p2p
from rogueflow.detect.stratum import detect_mining
from rogueflow.detect.wallets import identify
from rogueflow.errors import InputError
from rogueflow.ingest import pcappayload
from rogueflow.ingest.pcapdns import frames, ip_of_frame
from rogueflow.ingest.pcappayload import PayloadIndex, payload_index, scan
from rogueflow.schema import TIMESTAMP

T0 = 1_514_196_000  # 2017-12-25
MINER, POOL = "10.0.0.2", "203.0.113.9"
XMR = (  # the Monero general fund
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
)
BTC = "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"
ETH = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"

# --- packet builders and a pcap writer ---------------------------------------------------


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    return struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0x4000, 64, proto, 0,
                       ip4(src), ip4(dst)) + payload  # fmt: skip


def ipv6(src: bytes, dst: bytes, proto: int, payload: bytes) -> bytes:
    return struct.pack("!IHBB16s16s", 6 << 28, len(payload), proto, 64, src, dst) + payload


def tcp(sport: int, dport: int, seq: int, payload: bytes = b"", flags: int = 0x18) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, 5 << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def ether(ip: bytes) -> bytes:
    kind = 0x0800 if ip[0] >> 4 == 4 else 0x86DD
    return bytes.fromhex("020000000001020000000002") + struct.pack("!H", kind) + ip


def write_pcap(path: Path, packets: list[tuple[int, bytes]], linktype: int = 1) -> Path:
    """A classic pcap of (time in µs, frame) records."""
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    for us, frame in packets:
        out += struct.pack("<IIII", us // 10**6, us % 10**6, len(frame), len(frame)) + frame
    path.write_bytes(bytes(out))
    return path


class Session:
    """A TCP conversation between a miner and a pool, as Ethernet frames."""

    def __init__(self, cport: int = 40000, sport: int = 3333) -> None:
        self.cport, self.sport = cport, sport
        self.seq = {True: 1000, False: 9000}
        self.packets: list[tuple[int, bytes]] = []
        self.us = T0 * 10**6

    def handshake(self) -> Session:
        self.send(True, b"", 0x02)
        self.send(False, b"", 0x12)
        return self

    def send(self, from_client: bool, data: bytes, flags: int = 0x18) -> Session:
        src, dst = (MINER, POOL) if from_client else (POOL, MINER)
        ports = (self.cport, self.sport) if from_client else (self.sport, self.cport)
        seq = self.seq[from_client]
        self.packets.append((self.us, ether(ipv4(src, dst, 6, tcp(*ports, seq, data, flags)))))
        self.seq[from_client] = (seq + len(data) + (1 if flags & 0x03 else 0)) & 0xFFFFFFFF
        self.us += 10_000
        return self

    def lines(self, *pairs: tuple[bool, object]) -> Session:
        for from_client, msg in pairs:
            self.send(from_client, (json.dumps(msg) + "\n").encode())
        return self

    def detections(self) -> list[pcappayload.Detection]:
        return scan((i + 1, us, 1, f) for i, (us, f) in enumerate(self.packets))


def label_of(session: Session) -> p2p.Label:
    found = session.detections()
    assert len(found) == 1
    return found[0].label


# --- synthetic sessions --------------------------------------------------------------------


def test_stratum_v1_with_wallet_pool_and_agent() -> None:
    s = (
        Session()
        .handshake()
        .lines(
            (
                True,
                {
                    "id": 1,
                    "method": "mining.subscribe",
                    "params": ["cgminer/4.10", None, "btc.f2pool.com", "3333"],
                },
            ),
            (
                False,
                {
                    "id": 1,
                    "result": [
                        [["mining.notify", "ae6812eb4cd7735a302a8a9dd95cf71f"]],
                        "08000002",
                        4,
                    ],
                    "error": None,
                },
            ),
            (True, {"id": 2, "method": "mining.authorize", "params": [f"{BTC}.rig7", "x"]}),
            (False, {"id": None, "method": "mining.set_difficulty", "params": [8]}),
        )
    )
    label = label_of(s)
    assert (label.service, label.category, label.coin) == ("f2pool", "crypto.mining", "BTC")
    assert (label.pool, label.wallet, label.confidence) == ("btc.f2pool.com", BTC, 0.99)
    assert "agent cgminer/4.10" in label.evidence and "worker rig7" in label.evidence
    assert "packet 3 (2017-12-25T10:00:00.020000Z)" in label.evidence


def test_ethereumstratum_and_dialect_coin() -> None:
    s = Session().lines(
        (
            True,
            {
                "id": 1,
                "method": "mining.subscribe",
                "params": ["ethminer/0.19.0", "EthereumStratum/1.0.0"],
            },
        ),
        (True, {"id": 2, "method": "mining.authorize", "params": ["account.rig1", "x"]}),
    )
    label = label_of(s)
    assert label.coin == "ETH" and label.wallet is None and label.pool is None
    assert label.evidence.startswith("EthereumStratum/1.0.0: mining.subscribe, mining.authorize")
    assert "probably ETH" in label.evidence and "worker rig1" in label.evidence


def test_cryptonote_login_with_payment_id_and_hashvault_pool() -> None:
    login = {
        "method": "login",
        "params": {"login": f"{XMR}.{'ab' * 8}.box+5000", "pass": "x", "agent": "XMRig/6.21.0"},
        "id": 1,
    }
    s = Session(sport=443).lines((True, login))
    label = label_of(s)
    assert (label.coin, label.wallet, label.confidence) == ("XMR", XMR, 0.95)
    assert "worker box" in label.evidence and "agent XMRig/6.21.0" in label.evidence


def test_eth_proxy_login() -> None:
    s = Session(sport=8008).lines(
        (
            True,
            {
                "worker": "w",
                "jsonrpc": "2.0",
                "params": [f"{ETH}.farm1", "x"],
                "id": 2,
                "method": "eth_submitLogin",
            },
        ),
        (False, {"jsonrpc": "2.0", "id": 2, "result": True}),
    )
    label = label_of(s)
    assert label.wallet == ETH.lower() and label.coin == "ETH" and "worker farm1" in label.evidence


def test_getwork_over_http_with_basic_auth() -> None:
    body = json.dumps({"method": "getwork", "params": [], "id": 0}).encode()
    auth = base64.b64encode(f"{BTC}.w2:x".encode()).decode()
    request = (
        f"POST / HTTP/1.1\r\nHost: stratum.slushpool.com:8332\r\nUser-Agent: cgminer 2.7.5\r\n"
        f"Authorization: Basic {auth}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    reply = json.dumps(
        {
            "result": {
                "midstate": "00" * 32,
                "data": "00" * 128,
                "hash1": "00",
                "target": "ff" * 32,
            },
            "error": None,
            "id": 0,
        }
    )
    response = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{reply}".encode()
    s = Session(sport=8332).send(True, request).send(False, response)
    label = label_of(s)
    assert (label.service, label.pool, label.wallet) == ("braiins", "stratum.slushpool.com", BTC)
    assert "getwork" in label.evidence and "agent cgminer 2.7.5" in label.evidence


def test_bare_getwork_json_line_is_not_proof() -> None:
    s = Session().lines((True, {"method": "getwork", "params": [], "id": 1}))
    assert s.detections() == []


def test_ordinary_json_rpc_is_not_mining() -> None:
    s = Session(sport=8545).lines(
        (True, {"jsonrpc": "2.0", "method": "eth_blockNumber", "params": [], "id": 1}),
        (False, {"jsonrpc": "2.0", "result": "0x10d4f", "id": 1}),
        (True, {"method": "submit", "params": {"form": "x"}, "id": 2}),
        (True, {"method": "login", "params": {"user": "alice"}, "id": 3}),
    )
    assert s.detections() == []


def test_reassembly_out_of_order_duplicates_and_gaps() -> None:
    login = {"method": "login", "params": {"login": f"{XMR}.rig", "pass": "x"}, "id": 1}
    job = {"method": "job", "params": {"blob": "0606", "job_id": "1", "target": "dc46"}}
    first, second = (json.dumps(login) + "\n").encode(), (json.dumps(job) + "\n").encode()
    s = Session(sport=5555)
    base = s.seq[True]
    # the second line is captured first (the buffer re-bases when the first arrives),
    # the login comes in two pieces, the second of them retransmitted with an overlap
    pieces = [(len(first), second), (0, first[:60]), (50, first[50:]), (40, first[40:])]
    for off, data in pieces:
        s.seq[True] = base + off
        s.send(True, data)
    label = label_of(s)
    assert label.wallet == XMR and label.confidence == 0.99
    assert label.evidence.startswith("CryptoNote Stratum: job, login; login in packet 2 ")
    # a gap splits the line: the login is not recognised, nothing is invented
    gap = Session(sport=5555).handshake()
    gap.send(True, first[:50])
    gap.seq[True] += 20
    gap.send(True, first[70:] + second)
    (only,) = gap.detections()
    assert only.label.wallet is None and "login" not in only.label.evidence


def test_direction_buffer_is_bounded() -> None:
    d = pcappayload._Direction()
    for i in range(400):
        d.add_tcp(1000 + i * 1000, 0x18, b"x" * 1000, i, i)
    d.add_tcp(1000, 0x18, b"y" * 1000, 999, 999)  # a retransmission after the cap
    stream = d.stream()
    assert d.full and len(stream.data) == pcappayload.DIRECTION_CAP
    assert stream.data[:1] == b"x"  # the first copy of a byte wins


def test_live_connections_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pcappayload, "LIVE_CAP", 3)
    packets: list[tuple[int, bytes]] = []
    for k in range(10):
        s = Session(cport=41000 + k).lines(
            (True, {"id": 1, "method": "mining.subscribe", "params": ["m/1"]})
        )
        packets += s.packets
    state = pcappayload._Pass()
    for i, (us, frame) in enumerate(packets):
        state.packet(i + 1, us, 1, frame)
        assert len(state.live) <= 3
    assert len(state.finish()) == 10


def test_udp_and_ipv6() -> None:
    a, b = (
        bytes.fromhex("20010db8" + "00" * 11 + "01"),
        bytes.fromhex("20010db8" + "00" * 11 + "02"),
    )
    msg = json.dumps({"id": None, "method": "mining.notify", "params": ["1", "2"]}).encode()
    pkts = [(T0 * 10**6, ether(ipv6(a, b, 17, udp(3333, 50000, msg))))]
    found = scan((i + 1, us, 1, f) for i, (us, f) in enumerate(pkts))
    assert len(found) == 1 and found[0].key[0] == 17 and found[0].key[1] == a


def test_port_reuse_is_a_new_connection(tmp_path: Path) -> None:
    mining = (
        Session()
        .handshake()
        .lines((True, {"id": 2, "method": "mining.authorize", "params": [BTC, "x"]}))
    )
    later = Session()
    later.us = start = mining.us + 3600 * 10**6
    later.handshake().send(True, b"GET / HTTP/1.1\r\nHost: example.org\r\n\r\n")
    path = write_pcap(tmp_path / "reuse.pcap", mining.packets + later.packets)
    index = payload_index(path)
    assert index is not None and len(index) == 1
    (only,) = index.detections
    assert only.last_us < start  # the later web request did not extend it
    table = flow_table([
        (MINER, 40000, POOL, 3333, 6, T0, T0 + 1),
        (MINER, 40000, POOL, 3333, 6, T0 + 3600, T0 + 3601),
    ])  # fmt: skip
    assert index.label_columns(table)["wallet"].to_pylist() == [BTC, None]


def test_capture_without_detections_and_unreadable_file(tmp_path: Path) -> None:
    plain = Session(sport=80).handshake().send(True, b"GET / HTTP/1.1\r\n\r\n")
    assert payload_index(write_pcap(tmp_path / "web.pcap", plain.packets)) is None
    with pytest.raises(InputError, match=r"missing\.pcap"):
        payload_index(tmp_path / "missing.pcap")


# --- P2P ----------------------------------------------------------------------------------


def bitcoin_message(magic: str, command: bytes, payload: bytes) -> bytes:
    import hashlib

    check = hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    head = bytes.fromhex(magic) + command.ljust(12, b"\0") + struct.pack("<I", len(payload))
    return head + check + payload


def test_bitcoin_family_headers() -> None:
    s = Session(sport=9333)
    s.send(True, bitcoin_message("fbc0b6db", b"version", b"\x7f" * 90))
    s.send(False, bitcoin_message("fbc0b6db", b"verack", b""))
    label = label_of(s)
    assert (label.service, label.coin, label.category) == ("litecoin-p2p", "LTC", "crypto.p2p")
    assert "Litecoin message 'version' (magic fbc0b6db) in packet 1" in label.evidence
    bad = Session(sport=8333).send(
        True, bytes.fromhex("f9beb4d9") + b"Version\0\0\0\0\0" + bytes(8)
    )
    assert bad.detections() == []  # not a lower-case command


def test_levin_needs_a_known_command() -> None:
    head = p2p.LEVIN_SIGNATURE + struct.pack("<QBIiII", 10, 1, 1003, 0, 1, 1) + bytes(10)
    assert [m.command for m in p2p.levin_messages(head)] == ["ping"]
    unknown = p2p.LEVIN_SIGNATURE + struct.pack("<QBIiII", 10, 1, 4242, 0, 1, 1)
    assert p2p.levin_messages(unknown) == []
    label = detect_p2p([Stream(head, [(0, 7, T0 * 10**6)])])
    assert label is not None and label.confidence == 0.95 and "packet 7" in label.evidence


def test_nano_needs_a_header_both_ways() -> None:
    hello = b"RC\x14\x14\x12\x0a\x01\x00" + bytes(40)
    assert p2p.nano_message(hello) is not None
    assert p2p.nano_message(b"RC\x12\x14\x12\x0a\x01\x00") is None  # using > max
    assert p2p.nano_message(b"RC\x14\x14\x12\x63\x01\x00") is None  # unknown type
    one_way = Session(sport=7075).send(True, hello)
    assert one_way.detections() == []
    label = label_of(Session(sport=7075).send(True, hello).send(False, hello))
    assert (label.service, label.coin, label.confidence) == ("nano-p2p", "XNO", 0.99)
    assert "Nano message 'node_id_handshake' (live network) in packet 1" in label.evidence


# --- the flow table --------------------------------------------------------------------------


def flow_table(rows: list[tuple[str, int, str, int, int, int, int]]) -> pa.Table:
    """(src, sport, dst, dport, proto, start s, end s) rows as a canonical table."""

    def ts(seconds: list[int]) -> pa.Array:
        return pa.array([datetime.fromtimestamp(x, UTC) for x in seconds], TIMESTAMP)

    return pa.table({
        "ts_start": ts([r[5] for r in rows]),
        "ts_end": ts([r[6] for r in rows]),
        "src_addr": pa.array([addr.parse_one(r[0]) for r in rows], addr.ADDR_TYPE),
        "dst_addr": pa.array([addr.parse_one(r[2]) for r in rows], addr.ADDR_TYPE),
        "src_port": pa.array([r[1] for r in rows], pa.uint16()),
        "dst_port": pa.array([r[3] for r in rows], pa.uint16()),
        "proto": pa.array([r[4] for r in rows], pa.uint8()),
    })  # fmt: skip


def test_label_columns_by_connection_and_time() -> None:
    s = Session().lines((True, {"id": 2, "method": "mining.authorize", "params": [BTC, "x"]}))
    index = PayloadIndex(s.detections())
    table = flow_table([
        (MINER, 40000, POOL, 3333, 6, T0, T0 + 5),  # the session
        (POOL, 3333, MINER, 40000, 6, T0, T0 + 5),  # the same, the other way round
        (MINER, 40000, POOL, 3333, 6, T0 + 3600, T0 + 3700),  # an hour later: port reuse
        (MINER, 40000, POOL, 3333, 17, T0, T0 + 5),  # UDP
        (MINER, 40001, POOL, 3333, 6, T0, T0 + 5),  # another connection
    ])  # fmt: skip
    cols = index.label_columns(table)
    assert set(cols) == {"service", "category", "confidence", "evidence", "coin", "pool", "wallet"}
    assert cols["wallet"].to_pylist() == [BTC, BTC, None, None, None]
    assert cols["confidence"].type == pa.float32()
    assert cols["confidence"].to_pylist()[:3] == [pytest.approx(0.95), pytest.approx(0.95), None]
    assert cols["category"].to_pylist()[0] == "crypto.mining"
    empty = index.label_columns(table.slice(0, 0))
    assert all(len(v) == 0 for v in empty.values())


# --- shared real captures --------------------------------------------------------------------

RYZEN = "4BCeEPhodgPMbPWFN1dPwhWXdRX8q4mhhdZdA1dtSMLTLCEYvAj9QXjXAfF7CugEbmfBhgkqHbdgK9b2wKA6nqRZQCgvCDm"  # noqa: E501
MINING_TRUTH = {
    # (client port): coin, pool, wallet, evidence words
    55190: ("XMR", None, RYZEN,
            "mining", ["CryptoNote", "agent xmr-stak-cpu/1.3.0-1.5.0", "worker ryzen", "login"]),
    46838: ("ZEC", "eu1-zcash.flypool.org", "t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd", "flypool",
            ["Stratum v1", "agent EWBF 0.3.4b", "worker rig4", "mining.authorize"]),
    53846: ("ZEC", "cn1-zcash.flypool.org", "t1fJuHWrfcWnYMYyP9VAF96vRnvND2NziMG", "flypool",
            ["Stratum v1", "agent EWBF 0.3.4b", "worker c1", "mining.submit"]),
    49307: ("ETH", None, "0x9c99d212f7e5daa18ab50810e0fd255d1f04303b", "mining",
            ["eth_submitLogin", "eth_getWork", "worker tester.worker1"]),
}  # fmt: skip


@pytest.mark.needs_shared
def test_mining_capture_ground_truth(shared: Path) -> None:
    index = payload_index(shared / "ndpi" / "pcap" / "mining.pcapng")
    assert index is not None and index.packets == 673
    got = {}
    for d in index.detections:
        client = d.key[2] if d.key[2] in MINING_TRUTH else d.key[4]
        got[client] = d.label
    assert set(got) == set(MINING_TRUTH)
    for port, (coin, pool, wallet, service, words) in MINING_TRUTH.items():
        label = got[port]
        assert (label.coin, label.pool, label.wallet) == (coin, pool, wallet), port
        assert (label.service, label.category, label.confidence) == (service, "crypto.mining", 0.99)
        for word in words:
            assert word in label.evidence, (port, word)
    assert "probably" not in got[55190].evidence  # the wallet, not the dialect, says XMR


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    ("name", "service", "peers"),
    [
        ("bitcoin.pcap", "bitcoin-p2p", {"74.89.181.229", "66.68.83.22", "195.218.16.178",
                                         "69.118.54.122", "184.58.165.119", "188.165.213.169"}),
        ("monero.pcap", "monero-p2p", {"159.69.36.66", "78.56.22.89", "62.210.127.86",
                                       "100.42.27.58"}),
        ("nano.pcapng", "nano-p2p", {"37.120.187.138"}),
    ],
)  # fmt: skip
def test_p2p_captures_every_peer(shared: Path, name: str, service: str, peers: set[str]) -> None:
    index = payload_index(shared / "ndpi" / "pcap" / name)
    assert index is not None
    found = set()
    for d in index.detections:
        assert d.label.service == service and d.label.category == "crypto.p2p"
        assert d.label.wallet is None and d.label.confidence == 0.99
        found |= {addr.format_one(d.key[1]), addr.format_one(d.key[3])}
    assert found - {"192.168.1.142", "192.168.2.100", "192.168.88.231"} == peers
    assert len(index) == len(peers)


NEGATIVES = [
    "ndpi/pcap/openvpn.pcap", "ndpi/pcap/wireguard.pcap",
    "ndpi/pcap/protonvpn.pcap", "ndpi/pcap/dns_doh.pcap", "ndpi/pcap/http.pcapng",
    "ndpi/pcap/443-chrome.pcap", "ndpi/pcap/dns.pcap", "ndpi/pcap/mullvad_wireguard.pcap",
]  # fmt: skip


@pytest.mark.needs_shared
def test_negative_captures(shared: Path) -> None:
    paths = [shared / n for n in NEGATIVES] + sorted((shared / "zeek-traces").glob("*.pcap"))
    assert len(paths) > len(NEGATIVES)
    for path in paths:
        assert payload_index(path) is None, path
    # Tor's link protocol is labelled (tests/test_detect_tor.py), never mining or P2P
    tor = payload_index(shared / "ndpi" / "pcap" / "tor.pcap")
    assert tor is not None and {d.label.category for d in tor.detections} == {"anonymizer.tor"}


def connection_of(linktype: int, frame: bytes) -> tuple[int, int] | None:
    ip = ip_of_frame(linktype, frame)
    if ip is None or ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    off = (ip[0] & 15) * 4
    a, b = struct.unpack_from("!HH", ip, off)
    return (a, b) if a < b else (b, a)


def rewrite(src: Path, dst: Path, keep: object) -> Path:
    """A pcap of the packets of ``src`` for which ``keep(k, frame)`` holds, where k counts
    the packets of the frame's connection so far."""
    seen: dict[object, int] = {}
    out, link = [], 1
    for _, us, linktype, frame in frames(src):
        link, conn = linktype, connection_of(linktype, frame)
        k = seen[conn] = seen.get(conn, 0) + 1
        if keep(k, bytes(frame)):  # type: ignore[operator]
            out.append((us, bytes(frame)))
    return write_pcap(dst, out, link)


@pytest.mark.needs_shared
def test_mining_sessions_seen_midway(shared: Path, tmp_path: Path) -> None:
    # drop each connection's first 12 packets: handshake, login, subscribe, authorize
    path = rewrite(
        shared / "ndpi" / "pcap" / "mining.pcapng", tmp_path / "mid.pcap", lambda k, f: k > 12
    )
    data = path.read_bytes()
    for word in (b'"login"', b"mining.authorize", b"eth_submitLogin", b"mining.subscribe"):
        assert word not in data
    index = payload_index(path)
    assert index is not None
    labels = {d.key[2] if d.key[2] in MINING_TRUTH else d.key[4]: d.label for d in index.detections}
    assert set(labels) == set(MINING_TRUTH)
    for port, label in labels.items():
        coin, _, wallet, _, _ = MINING_TRUTH[port]
        assert label.category == "crypto.mining" and label.coin == coin
        # a wallet only where a share submission still names it, never another one
        assert label.wallet in (None, wallet)
        if label.wallet is not None:
            assert label.wallet.encode() in data
    assert labels[55190].wallet is None and "probably XMR" in labels[55190].evidence
    assert labels[49307].wallet is None and "eth_getWork (result)" in labels[49307].evidence
    assert labels[46838].wallet == MINING_TRUTH[46838][2]  # mining.submit carries the user


@pytest.mark.needs_shared
def test_mining_capture_cut_mid_session(shared: Path, tmp_path: Path) -> None:
    # keep each connection's first 5 packets; then cut the file inside a record
    def keep(k: int, frame: bytes) -> bool:
        return k <= 5

    path = rewrite(shared / "ndpi" / "pcap" / "mining.pcapng", tmp_path / "cut.pcap", keep)
    index = payload_index(path)
    assert index is not None and {d.label.category for d in index.detections} == {"crypto.mining"}
    raw = path.read_bytes()
    truncated = tmp_path / "truncated.pcap"
    for cut in (len(raw) - 7, len(raw) // 2, len(raw) // 3):
        truncated.write_bytes(raw[:cut])
        got = payload_index(truncated)
        for d in got.detections if got else []:
            assert d.label.wallet is None or d.label.wallet.encode() in raw[:cut]


# --- fuzzing ---------------------------------------------------------------------------------

REAL_LINES = [
    b'{"id":1,"method":"mining.subscribe",'
    b'"params":["EWBF 0.3.4b",null,"eu1-zcash.flypool.org","3333"]}',
    b'{"id":2,"method":"mining.authorize","params":["t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd.rig4","x"]}',
    b'{"method":"login","params":{"login":"'
    + XMR.encode()
    + b'.rig","pass":"x","agent":"a/1"},"id":1}',
    b'{"worker": "", "jsonrpc": "2.0", "params": ["'
    + ETH.encode()
    + b'/w/e@x", "x"], "id": 2, "method": "eth_submitLogin"}',
    b'{"jsonrpc":"2.0","method":"job","params":{"blob":"0606","job_id":"7","target":"dc460300"}}',
    b'{"id":null,"method":"mining.notify","params":["8c6f","04000000",true]}',
    b"POST / HTTP/1.1\r\nHost: pool.example.org\r\nAuthorization: Basic "
    + base64.b64encode(BTC.encode() + b":x"),
]


@st.composite
def garbled_streams(draw: st.DrawFn) -> bytes:
    """Real mining lines, truncated, spliced with random bytes and wallet-like junk."""
    parts = []
    for _ in range(draw(st.integers(1, 6))):
        line = draw(st.sampled_from(REAL_LINES))
        choice = draw(st.integers(0, 4))
        if choice == 1:
            line = line[: draw(st.integers(0, len(line)))]
        elif choice == 2:
            i = draw(st.integers(0, len(line)))
            line = line[:i] + draw(st.binary(max_size=12)) + line[i:]
        elif choice == 3:  # corrupt a wallet-like character, keeping the shape
            i = draw(st.integers(0, len(line) - 1))
            line = line[:i] + draw(st.sampled_from([b"1", b"a", b"Z", b"0"])) + line[i + 1 :]
        elif choice == 4:
            line = draw(st.binary(max_size=200))
        parts.append(line)
    return b"\n".join(parts) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))


def assert_no_invented_wallet(label: p2p.Label | None, data: bytes) -> None:
    if label is None or label.wallet is None:
        return
    assert identify(label.wallet) is not None
    w = label.wallet.encode()
    decoded = b""
    for line in data.split(b"\n"):  # the one place a wallet may be encoded: HTTP Basic
        if line.lower().startswith(b"authorization: basic "):
            with contextlib.suppress(ValueError):
                decoded += base64.b64decode(line[21:].strip(), validate=True)
    assert w in data or w in data.lower() or w in decoded


@given(garbled_streams(), garbled_streams())
@settings(max_examples=200)
def test_fuzz_mining_detector_on_garbled_json(a: bytes, b: bytes) -> None:
    label = detect_mining([Stream(a, [(0, 1, 0)]), Stream(b, [])])
    assert_no_invented_wallet(label, a + b"\n" + b)
    if label is not None:
        assert label.category == "crypto.mining" and label.confidence in (0.95, 0.99)


@given(st.binary(max_size=2000))
@settings(max_examples=200)
def test_fuzz_detectors_on_random_bytes(data: bytes) -> None:
    streams = [Stream(data, [(0, 1, 0)])]
    assert_no_invented_wallet(detect_mining(streams), data)
    detect_p2p(streams)
    p2p.bitcoin_messages(data)
    p2p.levin_messages(data)


@given(
    st.lists(
        st.sampled_from([*sorted(p2p.SIGNATURES), b"RC\x14\x14\x12\x0a"]) | st.binary(max_size=40),
        max_size=12,
    )
)
@settings(max_examples=150)
def test_fuzz_p2p_signature_soup(parts: list[bytes]) -> None:
    data = b"".join(parts)
    label = detect_p2p([Stream(data)])
    if label is not None:
        assert label.category == "crypto.p2p" and label.wallet is None


@given(
    st.lists(
        st.tuples(st.sampled_from([1, 101, 113, 276, 147]), st.binary(max_size=120)), max_size=40
    )
)
@settings(max_examples=150)
def test_fuzz_scan_on_random_frames(items: list[tuple[int, bytes]]) -> None:
    scan((i + 1, i, link, frame) for i, (link, frame) in enumerate(items))


@given(st.binary(min_size=1, max_size=300), st.integers(0, 3))
@settings(max_examples=100)
def test_fuzz_scan_on_json_like_tcp_payloads(junk: bytes, where: int) -> None:
    payload = REAL_LINES[where] + b"\n" + junk
    s = Session().send(True, payload).send(False, junk)
    for d in s.detections():
        assert_no_invented_wallet(d.label, payload + b"\n" + junk)


def test_markers_cover_every_dialect() -> None:
    for line in REAL_LINES[:-1]:
        assert pcappayload._interesting(line, False), line
    levin = p2p.LEVIN_SIGNATURE + bytes(30)
    assert pcappayload._interesting(levin, False)
    assert not pcappayload._interesting(b"junk" + levin, False)
    assert pcappayload._interesting(b"junk" + levin, True)
    assert stratum.DIALECTS.keys() >= {"stratum", "cryptonote", "ethproxy", "getwork"}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=30)
    | st.sampled_from([BTC, ETH, XMR, f"{BTC}.w", "pool.f2pool.com", "EthereumStratum/1.0.0"]),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
METHODS = [
    "mining.subscribe", "mining.authorize", "mining.submit", "mining.notify", "login", "job",
    "submit", "getjob", "keepalived", "eth_submitLogin", "eth_getWork", "getwork", "mining.",
]  # fmt: skip


@given(
    st.lists(
        st.fixed_dictionaries(
            {"method": st.sampled_from(METHODS)},
            optional={"params": json_values, "result": json_values, "worker": json_values},
        ),
        min_size=1,
        max_size=5,
    )
)
@settings(max_examples=300)
def test_fuzz_known_methods_with_any_params(messages: list[dict[str, object]]) -> None:
    data = b"\n".join(json.dumps(m).encode() for m in messages)
    label = detect_mining([Stream(data, [(0, 1, 0)])])
    assert_no_invented_wallet(label, data)
