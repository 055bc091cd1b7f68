"""The MRT writer: every record kind read back by the real ``bgpdump -m``, line for line."""

from __future__ import annotations

import bisect
import gzip
import io
import ipaddress
import itertools
import re
import socket
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow.bgp.mrtwrite import MrtWriter, Peer, RibEntry, open_mrt_output
from rogueflow.errors import ConfigError
from tests import strategies as rst
from tests.conftest import ROOT, require_tool

sys.path.insert(0, str(ROOT / "benchmarks"))

ORIGIN = ("IGP", "EGP", "INCOMPLETE")
WELL_KNOWN = {(65535, 65281): "no-export", (65535, 65282): "no-advertise"}
WELL_KNOWN[(65535, 65283)] = "local-AS"  # bgpdump's name for NO_EXPORT_SUBCONFED
LOCAL = (65000, "192.0.2.254", "2001:db8::fe")  # the collector: AS, IPv4, IPv6
bgpdump_needed = pytest.mark.needs_tool("bgpdump")


# ---- what bgpdump -m prints, written independently of the writer ----------------------


def ntop(text: str) -> str:
    """Address text the way bgpdump prints it, with the old BIND inet_ntop it carries:
    the first longest run of zero groups becomes "::" even when it is one group long,
    and IPv4-mapped and IPv4-compatible addresses (::/96 but :: and ::1) end dotted:
    ``0:1:0:1:0:1:10:0`` is ``::1:0:1:0:1:10:0``, ``::2`` is ``::0.0.0.2``."""
    if ":" not in text:
        return socket.inet_ntoa(socket.inet_aton(text))
    raw = socket.inet_pton(socket.AF_INET6, text)
    compat = raw[:12] == bytes(12) and int.from_bytes(raw[12:], "big") > 1
    dotted = compat or raw[:12] == bytes(10) + b"\xff\xff"
    groups = [
        f"{int.from_bytes(raw[i : i + 2], 'big'):x}" for i in range(0, 12 if dotted else 16, 2)
    ]
    if dotted:
        groups.append(socket.inet_ntoa(raw[12:]))
    best, start = (0, 0), 0  # (length, start) of the first longest run of "0"
    for i, g in enumerate([*groups, "end"]):
        if g != "0":
            best, start = max(best, (i - start, -start)), i + 1
    n, first = best[0], -best[1]
    if not n:
        return ":".join(groups)
    return ":".join(groups[:first]) + "::" + ":".join(groups[first + n :])


def prefix_text(prefix: str) -> str:
    net, _, n = prefix.partition("/")
    return f"{ntop(net)}/{n}"


def path_text(path: Sequence[Any]) -> str:
    return " ".join(
        str(h) if isinstance(h, int) else "{" + ",".join(map(str, h)) + "}" for h in path
    )


def comm_text(comms: Sequence[tuple[int, int]]) -> str:
    return " ".join(WELL_KNOWN.get((a, b), f"{a}:{b}") for a, b in comms)


def hop_text(hop: str, v6_prefix: bool) -> str:
    return f"::ffff:{hop}" if v6_prefix and ":" not in hop else ntop(hop)


def rib_lines(
    ts: int, peers: Sequence[Peer], prefix: str, entries: Sequence[RibEntry]
) -> list[str]:
    addpath = any(e.path_id is not None for e in entries)
    out = []
    for e in entries:
        p = peers[e.peer]
        # bgpdump takes aggregator address 255.255.255.255 for "none" and prints nothing
        shown = e.aggregator and e.aggregator[1] != "255.255.255.255"
        aggr = f"{e.aggregator[0]} {e.aggregator[1]}" if e.aggregator and shown else ""
        out.append(
            f"TABLE_DUMP2{'_AP' if addpath else ''}|{ts}|B|{ntop(p.ip)}|{p.asn}|"
            f"{prefix_text(prefix)}|{f'{e.path_id or 0}|' if addpath else ''}"
            f"{path_text(e.as_path)}|{ORIGIN[e.origin]}|{hop_text(e.next_hop, ':' in prefix)}|"
            f"{e.local_pref or 0}|{e.med or 0}|{comm_text(e.communities)}|"
            f"{'AG' if e.atomic_aggregate else 'NAG'}|{aggr}|"
        )
    return out


def update_lines(ts: int, peer: Peer, **kw: Any) -> list[str]:
    """W lines (IPv4, then IPv6), then A lines (IPv4, then IPv6): bgpdump's order."""
    head = f"BGP4MP|{ts}|{{}}|{ntop(peer.ip)}|{peer.asn}|"
    hop = kw.get("next_hop") or peer.ip
    announce, withdraw = kw.get("announce", ()), kw.get("withdraw", ())
    tail = (
        f"|{path_text(kw.get('as_path', ()))}|{ORIGIN[kw.get('origin', 0)]}|{{}}|0|0|"
        f"{comm_text(kw.get('communities', ()))}|NAG||"
    )
    out = []
    for v6 in (False, True):
        out += [head.format("W") + prefix_text(p) for p in withdraw if (":" in p) == v6]
    for v6 in (False, True):
        out += [
            head.format("A") + prefix_text(p) + tail.format(hop_text(hop, v6))
            for p in announce
            if (":" in p) == v6
        ]
    return out


def bgpdump(path: Path, *args: str) -> list[str]:
    exe = require_tool("bgpdump", "bgpdump")
    done = subprocess.run(
        [exe, "-m", "-v", *args, str(path)], capture_output=True, text=True, timeout=120
    )
    complaints = [line for line in done.stderr.splitlines() if "[info]" not in line]
    assert done.returncode == 0 and not complaints, done.stderr[-2000:]
    return done.stdout.splitlines()


def records(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(timestamp, type, subtype, body) of each MRT record."""
    out, off = [], 0
    while off < len(data):
        ts, kind, sub, n = struct.unpack_from(">IHHI", data, off)
        out.append((ts, kind, sub, data[off + 12 : off + 12 + n]))
        off += 12 + n
    assert off == len(data)
    return out


# ---- fixed examples -------------------------------------------------------------------

PEERS = [
    Peer("192.0.2.1", 64500),
    Peer("2001:db8::1", 4200000000),
    Peer("198.51.100.7", 70000, bgp_id="10.9.9.9"),
    Peer("2001:db8:0:1::7", 3356),
]


@bgpdump_needed
def test_rib_records_round_trip(tmp_path: Path) -> None:
    ribs = [
        (
            1277971199,
            "175.45.176.0/22",
            [
                RibEntry(0, [64500, 4837, 131279], "192.0.2.1", med=5, local_pref=100),
                RibEntry(1, [4200000000, 20485, 131279], "203.0.113.9", origin=2),
                RibEntry(2, [70000, 1, [4237, 4238], 7, [9]], "192.0.2.2", communities=[(1, 2)]),
                RibEntry(3, [3356] * 300, "192.0.2.3", atomic_aggregate=True),  # 2 segments
            ],
        ),
        (
            1277971200,
            "2001:db8:8000::/33",
            [
                RibEntry(1, [4200000000], "2001:db8::99", communities=[(65535, 65281)]),
                RibEntry(0, [], "192.0.2.1", origin=1),  # IPv4 next hop → IPv4-mapped
                RibEntry(3, [3356, 174], "fe80::1", aggregator=(174, "10.0.0.1")),
            ],
        ),
        (1277971200, "0.0.0.0/0", [RibEntry(2, (70000,), "198.51.100.7", originated=5)]),
        (1277971201, "::/0", [RibEntry(3, (3356,), "::", originated=6)]),
        (4294967295, "203.0.113.255/32", [RibEntry(0, (64500,), "192.0.2.1")]),
    ]
    path = tmp_path / "rib.mrt"
    with path.open("wb") as fh:
        w = MrtWriter(fh)
        w.peer_index(1277971199, "193.0.4.28", PEERS, view="rrc00")
        for ts, prefix, entries in ribs:
            w.rib(ts, prefix, entries)
    want = [line for ts, p, e in ribs for line in rib_lines(ts, PEERS, p, e)]
    assert bgpdump(path) == want
    recs = records(path.read_bytes())
    # originated time (bgpdump 1.6's "-t change" does not print it): after sequence
    # number, prefix, entry count and peer index; it defaults to the record's time
    originated = [struct.unpack_from(">I", b, 5 + (b[4] + 7) // 8 + 4)[0] for *_, b in recs[3:]]
    assert originated == [5, 6, 4294967295]
    assert [(k, s) for _, k, s, _ in recs] == [(13, 1), (13, 2), (13, 4), (13, 2), (13, 4), (13, 2)]
    assert [struct.unpack_from(">I", b)[0] for *_, b in recs[1:]] == [0, 1, 2, 3, 4]  # sequence
    # peer entries: type bits (IPv6 = 1, AS4 = 2), BGP id defaulting to the IPv4 address
    body = recs[0][3]
    assert body[:4] == socket.inet_aton("193.0.4.28") and body[6:11] == b"rrc00"
    assert body[13] == 0 and body[14:18] == socket.inet_aton("192.0.2.1")
    assert body[24] == 3 and body[25:29] == bytes(4)  # IPv6 + AS4, BGP id 0.0.0.0
    assert body[49] == 2 and body[50:54] == socket.inet_aton("10.9.9.9")


@bgpdump_needed
def test_add_path_ribs(tmp_path: Path) -> None:
    ribs = [
        ("10.0.10.0/24", [RibEntry(0, [64500, 65011], "192.0.2.1", path_id=36, local_pref=100)]),
        (
            "10.0.10.0/24",
            [RibEntry(0, [64500], "192.0.2.1", path_id=4294967295), RibEntry(2, [1], "192.0.2.5")],
        ),
        ("2001:db8:28::/48", [RibEntry(1, [4200000000, 65017], "2001:db8:16::2", path_id=59)]),
    ]
    path = tmp_path / "addpath.mrt"
    with path.open("wb") as fh:
        w = MrtWriter(fh)
        w.peer_index(1452168107, "10.0.0.1", PEERS)
        for prefix, entries in ribs:
            w.rib(1452168107, prefix, entries)
    assert bgpdump(path) == [line for p, e in ribs for line in rib_lines(1452168107, PEERS, p, e)]
    assert [s for _, _, s, _ in records(path.read_bytes())] == [1, 8, 8, 10]


UPDATES: list[tuple[int, Peer, dict[str, Any]]] = [
    (
        1470931200,
        PEERS[0],
        {
            "announce": ["1.0.0.0/24", "2804:14d::/40", "1.0.4.0/22"],
            "withdraw": ["3.0.0.0/8", "2001:db9::/32"],
            "as_path": [64500, 4200000000, 131279],
            "communities": [(65535, 65282), (64500, 100)],
        },
    ),
    (1470931201, PEERS[1], {"announce": ["2001:db8::/33"], "as_path": [4200000000], "origin": 2}),
    (1470931202, PEERS[1], {"withdraw": ["2001:db8::/33", "2001:db8:8000::/33"]}),
    (1470931203, PEERS[2], {"withdraw": ["192.0.2.0/24"]}),
    (
        1470931204,
        PEERS[3],
        {"announce": ["::/0"], "as_path": [3356], "next_hop": "2001:db8::5", "origin": 1},
    ),
    (1470931205, PEERS[2], {"announce": ["0.0.0.0/0"], "as_path": [], "next_hop": "198.51.100.1"}),
]


def _write_updates(w: MrtWriter) -> None:
    for ts, peer, kw in UPDATES:
        local_ip = LOCAL[2] if ":" in peer.ip else LOCAL[1]
        w.update(ts, peer, LOCAL[0], local_ip, **kw)
    w.state_change(1470931210, PEERS[0], LOCAL[0], LOCAL[1], 6, 1)
    w.state_change(1470931211, PEERS[1], 4200000001, LOCAL[2], 1, 2)


UPDATE_LINES = [line for ts, peer, kw in UPDATES for line in update_lines(ts, peer, **kw)] + [
    "BGP4MP|1470931210|STATE|192.0.2.1|64500|6|1",
    "BGP4MP|1470931211|STATE|2001:db8::1|4200000000|1|2",
]


@bgpdump_needed
def test_updates_and_state_changes_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "updates.mrt"
    with path.open("wb") as fh:
        _write_updates(MrtWriter(fh))
    assert bgpdump(path) == UPDATE_LINES
    recs = records(path.read_bytes())
    assert [(k, s) for _, k, s, _ in recs] == [(16, 4)] * len(UPDATES) + [(16, 5)] * 2
    # BGP4MP_*_AS4 header: peer AS, local AS, interface 0, AFI by the peer's family
    assert struct.unpack_from(">IIHH", recs[1][3]) == (4200000000, 65000, 0, 2)
    assert struct.unpack_from(">IIHH", recs[-1][3]) == (4200000000, 4200000001, 0, 2)


@bgpdump_needed
def test_large_update_splits_into_4096_byte_messages(tmp_path: Path) -> None:
    withdraw = [f"10.{i // 256}.{i % 256}.0/24" for i in range(1500)]
    announce = [f"20.{i // 256}.{i % 256}.128/25" for i in range(1200)]
    announce += [f"2001:db8:{i:x}::/48" for i in range(400)]
    kw: dict[str, Any] = {"announce": announce, "withdraw": withdraw, "as_path": [64500] * 40}
    path = tmp_path / "big.mrt"
    with path.open("wb") as fh:
        MrtWriter(fh).update(7, PEERS[0], *LOCAL[:2], **kw)
    assert bgpdump(path) == update_lines(7, PEERS[0], **kw)
    recs = records(path.read_bytes())
    assert len(recs) >= 4
    for *_, body in recs:
        message = body[20:]  # after ASes, interface, AFI and the two IPv4 addresses
        assert message[:16] == b"\xff" * 16 and message[18] == 2
        assert struct.unpack_from(">H", message, 16)[0] == len(message) <= 4096
    assert len(recs[0][3]) - 20 > 4000  # packed full, not one prefix per message


@bgpdump_needed
@pytest.mark.parametrize("name", ["rib.mrt", "rib.mrt.gz", "rib.mrt.bz2"])
def test_compressed_outputs(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    with open_mrt_output(path) as fh:
        w = MrtWriter(fh)
        w.peer_index(1, "10.0.0.1", PEERS)
        w.rib(2, "175.45.176.0/24", [RibEntry(0, [64500, 131279], "192.0.2.1")])
        _write_updates(w)
    magic = {".gz": b"\x1f\x8b", ".bz2": b"BZh", ".mrt": struct.pack(">IHH", 1, 13, 1)}
    assert path.read_bytes().startswith(magic[path.suffix])
    want = rib_lines(2, PEERS, "175.45.176.0/24", [RibEntry(0, [64500, 131279], "192.0.2.1")])
    assert bgpdump(path) == want + UPDATE_LINES


def test_gzip_output_is_reproducible(tmp_path: Path) -> None:
    blobs = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        with open_mrt_output(tmp_path / name / "u.mrt.gz") as fh:
            _write_updates(MrtWriter(fh))
        blobs.append((tmp_path / name / "u.mrt.gz").read_bytes())
    assert blobs[0] == blobs[1] and len(gzip.decompress(blobs[0])) > 100


def _writer() -> MrtWriter:
    w = MrtWriter(io.BytesIO())
    w.peer_index(1, "10.0.0.1", PEERS[:2])
    return w


def _rib(prefix: str = "10.0.0.0/8", **kw: Any) -> Callable[[MrtWriter], None]:
    entry = {"peer": 0, "as_path": [1], "next_hop": "192.0.2.1", **kw}
    return lambda w: w.rib(1, prefix, [RibEntry(**entry)])


def _update(peer: Peer = PEERS[0], local: str = LOCAL[1], **kw: Any) -> Callable[[MrtWriter], None]:
    return lambda w: w.update(1, peer, LOCAL[0], local, **kw)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (_rib("10.0.0.0/33"), "10.0.0.0/33"),
        (_rib("10.0.0.1/8"), "host bits"),
        (_rib("10.0.0.0"), "10.0.0.0"),
        (_rib("10.0.0.0/+8"), "10.0.0.0/+8"),
        (_rib("2001:db8::/129"), "2001:db8::/129"),
        (_rib("ten/8"), "ten/8"),
        (_rib(as_path=[1, 2**32]), "4294967296"),
        (_rib(as_path=[1, -1]), "-1"),
        (_rib(as_path=[1, []]), "[]"),
        (_rib(as_path=[1, "2"]), "'2'"),
        (_rib(peer=2), "peer index (position in the peer table) 2 is out of range 0..1"),
        (_rib(peer=-1), "peer index (position in the peer table) -1"),
        (_rib(peer=1.0), "1.0"),
        (_rib(next_hop="300.1.1.1"), "300.1.1.1"),
        (_rib(next_hop="2001:db8::1"), "2001:db8::1"),  # IPv4 prefix, IPv6 next hop
        (_rib(origin=3), "origin 3"),
        (_rib(med=2**32), "MED 4294967296"),
        (_rib(communities=[(70000, 1)]), "70000"),
        (_rib(path_id=-5), "path id -5"),
        (_rib(aggregator=(1, "2001:db8::1")), "2001:db8::1"),
        (lambda w: w.rib(2**32, "10.0.0.0/8", [RibEntry(0, [1], "192.0.2.1")]), "4294967296"),
        (lambda w: w.rib(1, "10.0.0.0/8", []), "10.0.0.0/8"),
        (
            lambda w: MrtWriter(io.BytesIO()).rib(1, "10.0.0.0/8", [RibEntry(0, [1], "1.1.1.1")]),
            "peer index table",
        ),
        (lambda w: w.peer_index(1, "2001:db8::1", PEERS), "2001:db8::1"),
        (lambda w: w.peer_index(1, "10.0.0.1", [Peer("10.0.0.2", 2**32)]), "4294967296"),
        (lambda w: w.peer_index(1, "10.0.0.1", [Peer("10.0.0.256", 1)]), "10.0.0.256"),
        (_update(), "announce or withdraw"),
        (_update(local=LOCAL[2], withdraw=["10.0.0.0/8"]), "same family"),
        (_update(PEERS[1], LOCAL[2], announce=["10.0.0.0/8"], as_path=[1]), "2001:db8::1"),
        (_update(withdraw=["10.0.0.0/33"]), "10.0.0.0/33"),
        (_update(announce=["10.0.0.0/8"], as_path=[1] * 1100), "too large"),
        (lambda w: w.state_change(1, PEERS[0], 1, LOCAL[1], 6, 7), "BGP state 7"),
        (lambda w: w.state_change(1, PEERS[0], 1, LOCAL[1], 0, 1), "state 0"),
    ],
)
def test_rejects_bad_values_naming_them(call: Callable[[MrtWriter], None], named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        call(_writer())


# ---- properties -----------------------------------------------------------------------

asns = st.integers(0, 2**32 - 1)
hops = st.one_of(asns, st.lists(asns, min_size=1, max_size=4))
communities = st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 65535)), max_size=4)
peers = st.lists(st.builds(Peer, rst.ip_text, asns), min_size=1, max_size=4)


@st.composite
def rib_records(draw: st.DrawFn, n_peers: int) -> tuple[int, str, list[RibEntry]]:
    prefix = draw(rst.prefixes())
    v6 = prefix.version == 6
    addpath = draw(st.booleans())

    def entry() -> RibEntry:
        return RibEntry(
            draw(st.integers(0, n_peers - 1)),
            draw(st.lists(hops, max_size=8)),
            draw(rst.ip_text if v6 else rst.ipv4_text),
            draw(st.integers(0, 2)),
            draw(st.none() | st.integers(0, 2**32 - 1)),
            draw(st.none() | st.integers(1, 2**32 - 1)),
            draw(st.none() | st.integers(1, 2**32 - 1)),
            draw(communities),
            draw(st.integers(0, 2**32 - 1)) if addpath else None,
            draw(st.booleans()),
            draw(st.none() | st.tuples(asns, rst.ipv4_text)),
        )

    entries = [entry() for _ in range(draw(st.integers(1, 4)))]
    return draw(st.integers(0, 2**32 - 1)), str(prefix), entries


@bgpdump_needed
@settings(max_examples=30)
@given(data=st.data(), peer_list=peers)
def test_random_ribs_round_trip(
    tmp_path_factory: pytest.TempPathFactory, data: st.DataObject, peer_list: list[Peer]
) -> None:
    ribs = data.draw(st.lists(rib_records(len(peer_list)), min_size=1, max_size=5))
    path = tmp_path_factory.mktemp("rib") / "rib.mrt"
    with path.open("wb") as fh:
        w = MrtWriter(fh)
        w.peer_index(0, data.draw(rst.ipv4_text), peer_list)
        for ts, prefix, entries in ribs:
            w.rib(ts, prefix, entries)
    assert bgpdump(path) == [line for r in ribs for line in rib_lines(r[0], peer_list, *r[1:])]


@bgpdump_needed
@settings(max_examples=30)
@given(
    data=st.data(),
    peer=st.builds(Peer, rst.ip_text, asns),
    prefixes=st.lists(rst.prefixes().map(str), max_size=40),
    as_path=st.lists(asns, max_size=10),
    comms=communities,
)
def test_random_updates_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    data: st.DataObject,
    peer: Peer,
    prefixes: list[str],
    as_path: list[int],
    comms: list[tuple[int, int]],
) -> None:
    split = data.draw(st.integers(0, len(prefixes)))
    announce, withdraw = prefixes[:split], prefixes[split:]
    v6_peer = ":" in peer.ip
    local = data.draw(rst.ipv6_text if v6_peer else rst.ipv4_text)
    # IPv4 prefixes need an IPv4 next hop; IPv6 ones take either family
    any_v4 = any(":" not in p for p in announce)
    hop = data.draw(rst.ipv4_text if any_v4 or not v6_peer else rst.ip_text)
    kw: dict[str, Any] = {"announce": announce, "withdraw": withdraw, "as_path": as_path}
    kw.update(next_hop=hop, origin=data.draw(st.integers(0, 2)), communities=comms)
    path = tmp_path_factory.mktemp("upd") / "u.mrt.gz"
    with open_mrt_output(path) as fh:
        w = MrtWriter(fh)
        if prefixes:
            w.update(data.draw(st.integers(0, 2**32 - 1)), peer, 65000, local, **kw)
        w.state_change(9, peer, 4200000000, local, 2, 3)
    want = update_lines(0, peer, **kw) if prefixes else []
    got = bgpdump(path)
    assert [re.sub(r"^BGP4MP\|\d+\|", "BGP4MP|0|", line) for line in got[:-1]] == want
    assert got[-1] == f"BGP4MP|9|STATE|{ntop(peer.ip)}|{peer.asn}|2|3"


# ---- the benchmark's table: real routes written back exactly --------------------------


@bgpdump_needed
@pytest.mark.needs_shared
def test_real_rib_text_round_trips_and_extends(shared: Path, tmp_path: Path) -> None:
    import bgp as bench_bgp

    src = shared / "bgp-mrt/bgpdump/bview.20100701.0759.bgpdump-m-output-only.txt.gz"
    with gzip.open(src, "rt") as fh:
        lines = [next(fh).rstrip("\n") for _ in range(20_000)]
    while lines[-1].split("|")[5] == lines[-2].split("|")[5]:
        lines.pop()  # end on a whole prefix
    rib = bench_bgp.parse_text(lines)
    assert len(rib.peers) >= 2 and rib.routes == len(lines)
    assert any("{" in line for line in lines) and any("|AG|" in line for line in lines)
    path = tmp_path / "real.mrt.gz"
    bench_bgp.write(rib, path)
    assert bgpdump(path) == lines

    grown = bench_bgp.extend(rib, len(rib.records) + 3000)
    real = {(a, n): g for a, n, _, g in rib.records}
    added = [r for r in grown.records if (r[0], r[1]) not in real]
    assert len(added) == 3000 and len(grown.records) == len(rib.records) + 3000
    nets = [ipaddress.ip_network((a, n)) for a, n, _, _ in grown.records]
    assert nets == sorted(nets, key=lambda x: (x.network_address, x.prefixlen))
    real_groups = set(real.values())
    covered: list[tuple[int, int]] = []  # real coverage, merged: [lo, hi) intervals
    for lo, hi in sorted((a, a + (1 << (32 - n))) for a, n in real):
        if covered and lo <= covered[-1][1]:
            covered[-1] = (covered[-1][0], max(hi, covered[-1][1]))
        else:
            covered.append((lo, hi))
    for a, n, _, group in added:
        assert n >= bench_bgp.MIN_CLONE_LEN and group in real_groups
        assert ipaddress.ip_network((a, n)).is_global
        i = bisect.bisect_right(covered, (a, 2**33)) - 1
        assert i < 0 or covered[i][1] <= a  # starts after the covered run before it
        assert i + 1 == len(covered) or a + (1 << (32 - n)) <= covered[i + 1][0]
    spans = sorted((a, a + (1 << (32 - n))) for a, n, _, _ in added)
    assert all(hi <= lo for (_, hi), (lo, _) in itertools.pairwise(spans))
    assert bench_bgp.extend(rib, len(rib.records) + 3000).records == grown.records
