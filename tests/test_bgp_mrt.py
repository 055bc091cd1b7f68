"""The MRT reader (rogueflow.bgp.mrt, rogueflow.bgp.frame) against real dumps and bgpdump.

Ground truth is bgpdump itself: its own regression expectations for the six files that
ship one, and ``bgpdump -m`` run live for every other shared MRT file. Our rows are
turned back into bgpdump's ``-m`` lines and compared exactly, grouped by MRT record (the
reader promises file order across records, not the order of lines inside one record).
Record numbers and byte offsets are checked against a framing written here from RFC 6396,
and damaged copies of the shared files (cut, corrupted, spliced) are built in tmp_path.
"""

from __future__ import annotations

import bz2
import gzip
import ipaddress
import itertools
import random
import struct
import subprocess
import threading
import zlib
from collections import Counter
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.bgp import mrt
from rogueflow.bgp.lines import BadRows, finish, lines_table, path_ends
from rogueflow.bgp.mrt import ROUTES, MrtReader, read_mrt
from rogueflow.errors import InputError
from tests.conftest import SHARED, require_tool

pytestmark = [pytest.mark.needs_shared, pytest.mark.needs_tool("bgpdump")]

MRT_DIR = "bgp-mrt"
WITH_EXPECTED = [
    "bgpdump/bview.20020722.2337.gz",
    "bgpdump/bview.ipv4_unicast_add_path.gz",
    "bgpdump/bview.ipv6_unicast_add_path.gz",
    "bgpdump/updates.20020722.2238.gz",
    "bgpdump/updates.20100722.2015.gz",
    "bgpdump/updates.20160811.1600.gz",
]
# (file, line counts by "mrt_type|kind" as PROVENANCE.md states them)
LIVE = [
    ("mrtparse/bird-mrtdump_bgp", {"BGP4MP_AP|A": 12, "BGP4MP|STATE": 12}),
    ("mrtparse/bird-mrtdump_rib", {"TABLE_DUMP2_AP|B": 14, "TABLE_DUMP2|B": 4}),
    ("mrtparse/bird6-mrtdump_rib", {"TABLE_DUMP2_AP|B": 8, "TABLE_DUMP2|B": 2}),
    ("mrtparse/openbgpd_bgp", {"BGP4MP|A": 93, "BGP4MP|STATE": 16}),
    ("mrtparse/openbgpd_rib_table-mp", {}),
    ("mrtparse/openbgpd_rib_table-v2", {"TABLE_DUMP2|B": 31}),
    ("mrtparse/quagga_bgp", {"BGP4MP|A": 18, "BGP4MP|STATE": 20}),
    ("mrtparse/quagga_rib", {"TABLE_DUMP2|B": 9}),
    ("libbgpstream/ris.rrc06.updates.1427846400.gz",
     {"BGP4MP|A": 1435, "BGP4MP|W": 122, "BGP4MP|STATE": 4}),
    ("libbgpstream/routeviews.route-views.jinx.updates.1427846400.bz2",
     {"BGP4MP|A": 8160, "BGP4MP|W": 451}),
    ("pyasn/rib.20140523.0600_firstMB.bz2", {"TABLE_DUMP2|B": 270_005}),
    ("pyasn/rib6.20151101.0600_firstMB.bz2", {"TABLE_DUMP2|B": 149_578}),
]  # fmt: skip
# PROVENANCE: entries of the bview, "records" of the update dumps (= bgpdump lines)
PROVENANCE_ROUTES = {
    "bgpdump/bview.20020722.2337.gz": 115_521,
    "bgpdump/bview.ipv4_unicast_add_path.gz": 62,
    "bgpdump/bview.ipv6_unicast_add_path.gz": 62,
    "bgpdump/updates.20020722.2238.gz": 3_337,
    "bgpdump/updates.20100722.2015.gz": 5_654,
    "bgpdump/updates.20160811.1600.gz": 41_234,
}
UPDATES_2002 = "bgpdump/updates.20020722.2238.gz"
DPRK_AS = 131279
RIB_2014 = "pyasn/rib.20140523.0600_firstMB.bz2"
READ_TIMEOUT = 60.0
HEADER = struct.Struct(">IHHI")
# BGP4MP subtypes (RFC 6396 §4.4, RFC 8050): those carrying a BGP message, those with 4-byte ASNs
MESSAGES = frozenset({1, 4, 6, 7, 8, 9, 10, 11})
AS4 = frozenset({4, 5, 7, 9, 11})


@pytest.fixture(autouse=True)
def bgpdump() -> str:
    return require_tool("bgpdump", "bgpdump")


# ---- an independent framing (RFC 6396 §2) -------------------------------------------------


class Rec(NamedTuple):
    number: int
    offset: int
    ts: int
    type: int
    subtype: int
    data: bytes  # header + body


def decompressed(path: Path) -> bytes:
    """Everything that decodes, also from a cut-short gzip or bzip2 file."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.BZ2Decompressor().decompress(raw)
    return raw


def walk(data: bytes) -> tuple[list[Rec], int]:
    """Whole records, and the offset where the first incomplete one starts."""
    out: list[Rec] = []
    at = 0
    while at + HEADER.size <= len(data):
        ts, mrt_type, subtype, length = HEADER.unpack_from(data, at)
        end = at + HEADER.size + length
        if end > len(data):
            break
        out.append(Rec(len(out) + 1, at, ts, mrt_type, subtype, data[at:end]))
        at = end
    return out, at


def bgp_message(rec: Rec) -> tuple[int, int]:
    """(offset of the BGP message in ``rec.data``, its type) of a BGP4MP MESSAGE record."""
    as_len = 4 if rec.subtype in AS4 else 2
    afi_at = HEADER.size + 2 * as_len + 2
    afi = int.from_bytes(rec.data[afi_at : afi_at + 2], "big")
    at = afi_at + 2 + 2 * (4 if afi == 1 else 16)
    return at, rec.data[at + 18]


def join(records: list[Rec] | list[bytes]) -> bytes:
    return b"".join(r.data if isinstance(r, Rec) else r for r in records)


# ---- reading ----------------------------------------------------------------------------------


def shared_file(shared: Path, name: str) -> Path:
    return shared / MRT_DIR / name


def read(path: Path, **kw: Any) -> tuple[MrtReader, pa.Table]:
    """All routes of ``path`` in one table, failing (not hanging) after READ_TIMEOUT."""
    reader = read_mrt(path, **kw)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["batches"] = list(reader)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(READ_TIMEOUT)
    assert not thread.is_alive(), f"read_mrt({path}) still running after {READ_TIMEOUT} s"
    if "error" in box:
        raise box["error"]
    for batch in box["batches"]:
        assert batch.schema == ROUTES
    return reader, pa.Table.from_batches(box["batches"], schema=ROUTES)


@cache
def read_shared(path: Path) -> tuple[MrtReader, pa.Table]:
    """Each big shared file is read once per session."""
    return read(path)


Row = tuple[tuple[str, Any], ...]


def by_record(t: pa.Table) -> dict[int, list[Row]]:
    """Routes per record number, every column but ``record``, in a comparable order."""
    out: dict[int, list[Row]] = {}
    for row in t.to_pylist():
        number = row.pop("record")
        out.setdefault(number, []).append(tuple(sorted(row.items())))
    return {k: sorted(v, key=repr) for k, v in out.items()}


def wheres(reader: MrtReader) -> list[str | None]:
    return [p.where for p in reader.problems]


def problem_records(reader: MrtReader) -> set[int]:
    out = set()
    for p in reader.problems:
        assert isinstance(p, InputError)
        assert p.path == str(reader.path)
        if p.where and p.where.startswith("record "):
            out.add(int(p.where.split()[1]))
    return out


# ---- back to bgpdump -m lines -----------------------------------------------------------------


def bgpdump_ipv6(text: str) -> str:
    """IPv6 text as bgpdump's fmt_ipv6 writes it: the first longest zero run becomes '::'
    even when it is a single group (RFC 5952, and Python, leave those alone)."""
    ip = ipaddress.ip_address(text)
    if ip.version == 4:
        return text
    packed = ip.packed
    if packed[:12] == bytes(12) and int.from_bytes(packed[12:], "big") > 1:  # V4COMPAT
        return "::" + str(ipaddress.IPv4Address(packed[12:]))
    groups = [int.from_bytes(packed[i : i + 2], "big") for i in range(0, 16, 2)]
    start, length, i = -1, 0, 0
    while i < 8:
        j = i
        while j < 8 and groups[j] == 0:
            j += 1
        if j - i > length:
            start, length = i, j - i
        i = max(j, i + 1)
    if length == 0:
        return ":".join(f"{g:x}" for g in groups)
    left = ":".join(f"{g:x}" for g in groups[:start])
    right = ":".join(f"{g:x}" for g in groups[start + length :])
    return f"{left}::{right}"


def test_bgpdump_ipv6_formatting() -> None:
    assert bgpdump_ipv6("2001:7f8:30:0:2:1:0:8447") == "2001:7f8:30::2:1:0:8447"
    assert bgpdump_ipv6("fe80::") == "fe80::"
    assert bgpdump_ipv6("::") == "::"
    assert bgpdump_ipv6("::1") == "::1"
    assert bgpdump_ipv6("2001:db8:0:0:1:0:0:1") == "2001:db8::1:0:0:1"
    assert bgpdump_ipv6("::192.168.1.2") == "::192.168.1.2"
    assert bgpdump_ipv6("2001:db8:1:2:3:4:5:6") == "2001:db8:1:2:3:4:5:6"


def bgpdump_lines(t: pa.Table) -> list[str]:
    """Each row as the ``bgpdump -m`` line it came from (vectorised: RIBs are big)."""

    def text(name: str) -> pa.ChunkedArray:
        return pc.fill_null(pc.cast(t[name], pa.string()), "")

    def bar(*cols: Any) -> Any:
        return pc.binary_join_element_wise(*cols, "|")

    enc = pc.dictionary_encode(t["peer_addr"]).combine_chunks()
    peers = pa.array(
        [bgpdump_ipv6(x or "") for x in addr.format_array(enc.dictionary)], pa.string()
    )
    peer = pc.take(peers, enc.indices)
    us = pc.cast(t["ts"], pa.int64())
    secs = pc.divide(us, 1_000_000)  # integer division
    micros = pc.subtract(us, pc.multiply(secs, 1_000_000))
    secs_text = pc.cast(secs, pa.string())
    fraction = pc.utf8_lpad(pc.cast(micros, pa.string()), 6, "0")
    # BGP4MP_ET prints seconds.microseconds
    ts = pc.if_else(
        pc.equal(micros, 0), secs_text, pc.binary_join_element_wise(secs_text, fraction, ".")
    )
    head = bar(t["mrt_type"], ts, t["kind"], peer, text("peer_asn"))
    ap = pc.ends_with(t["mrt_type"], "_AP")
    prefix = pc.if_else(ap, bar(text("prefix"), text("path_id")), text("prefix"))
    atomic = pc.if_else(t["atomic_aggregate"], "AG", "NAG")
    state = bar(head, text("old_state"), text("new_state"))
    withdraw = bar(head, prefix)
    announce = bar(head, prefix, text("as_path"), text("origin"), text("next_hop"),
                   text("local_pref"), text("med"), text("communities"), atomic,
                   text("aggregator"), pa.scalar(""))  # fmt: skip
    kind = t["kind"]
    line = pc.if_else(
        pc.equal(kind, "STATE"), state, pc.if_else(pc.equal(kind, "W"), withdraw, announce)
    )
    out: list[str] = line.to_pylist()
    return out


def assert_same_lines(t: pa.Table, expected: list[str]) -> None:
    """Our lines equal ``expected`` record by record (the line order inside a record is free:
    bgpdump prints an update's withdrawals first, the reader emits them in another batch)."""
    lines = bgpdump_lines(t)
    record = t["record"].to_numpy()
    order = np.argsort(record, kind="stable")
    ours = [lines[i] for i in order]
    assert len(ours) == len(expected)
    rec = record[order]
    cuts = [0, *(np.flatnonzero(np.diff(rec)) + 1).tolist(), len(ours)]
    for a, b in itertools.pairwise(cuts):
        if sorted(ours[a:b]) != sorted(expected[a:b]):
            assert sorted(ours[a:b]) == sorted(expected[a:b]), f"record {rec[a]}"
    assert Counter(ours) == Counter(expected)


def live_bgpdump(path: Path) -> list[str]:
    run = subprocess.run(
        ["bgpdump", "-m", "-v", str(path)],
        capture_output=True,
        timeout=120,
        env={"TZ": "UTC", "LC_ALL": "C", "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert run.returncode == 0, run.stderr[-500:]
    return run.stdout.decode().splitlines()


def line_kinds(lines: list[str]) -> Counter[str]:
    return Counter("|".join(x.split("|")[0:3:2]) for x in lines)


# ---- 1. golden ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", WITH_EXPECTED)
def test_routes_equal_bgpdumps_expectation(shared: Path, name: str) -> None:
    path = shared_file(shared, name)
    expected_file = path.with_name(path.name + ".expected-bgpdump-m.txt.gz")
    expected = gzip.decompress(expected_file.read_bytes()).decode().splitlines()
    reader, t = read_shared(path)
    assert_same_lines(t, expected)
    assert reader.routes == t.num_rows == PROVENANCE_ROUTES[name]
    records, _ = walk(decompressed(path))
    assert reader.records == len(records)
    assert reader.problems == []
    assert t["record"].to_numpy().min() >= 1
    assert t["record"].to_numpy().max() <= reader.records


@pytest.mark.parametrize(("name", "kinds"), LIVE, ids=[n for n, _ in LIVE])
def test_routes_equal_live_bgpdump(shared: Path, name: str, kinds: dict[str, int]) -> None:
    path = shared_file(shared, name)
    expected = live_bgpdump(path)
    reader, t = read_shared(path)
    assert_same_lines(t, expected)
    assert dict(line_kinds(expected)) == kinds
    assert reader.routes == t.num_rows
    records, _ = walk(decompressed(path))
    assert reader.records == len(records)


# ---- 1b. derived columns --------------------------------------------------------------------


def origin_and_upstream(path: str) -> tuple[int | None, int | None]:
    """The origin AS and the distinct AS before it; a one-member AS_SET is that AS."""
    tokens = [
        x[1:-1] if x.startswith("{") and x.endswith("}") and "," not in x else x
        for x in path.split()
    ]
    asns = [int(x) if x.isdigit() and int(x) < 2**32 else None for x in tokens]
    if not asns or asns[-1] is None:
        return None, None
    origin = asns[-1]
    for asn in reversed(asns):
        if asn != origin:
            return origin, asn  # None: a larger set stands before the origin
    return origin, None


@pytest.mark.parametrize(
    "name", [RIB_2014, "bgpdump/updates.20160811.1600.gz", "mrtparse/bird6-mrtdump_rib"]
)
def test_origin_and_upstream_follow_the_as_path(shared: Path, name: str) -> None:
    _, t = read_shared(shared_file(shared, name))
    seen = t.select(["as_path", "origin_asn", "upstream_asn"]).group_by(
        ["as_path", "origin_asn", "upstream_asn"]
    ).aggregate([])  # fmt: skip
    by_path: dict[str | None, set[tuple[int | None, int | None]]] = {}
    for path, origin, up in zip(*(seen[c].to_pylist() for c in seen.column_names), strict=True):
        by_path.setdefault(path, set()).add((origin, up))
    assert all(len(v) == 1 for v in by_path.values())
    for path, got in by_path.items():
        want = origin_and_upstream(path) if path is not None else (None, None)
        assert got == {want}, path
    if name == RIB_2014:  # the real table has origin prepends and AS_SETs of one and many
        paths = [p.split() for p in by_path if p]
        assert any(len(p) > 2 and p[-1] == p[-2] != p[-3] for p in paths)
        assert any(p[-1].startswith("{") and "," not in p[-1] for p in paths)
        assert any(p[-1].startswith("{") and "," in p[-1] for p in paths)


def test_path_ends_edge_cases() -> None:
    paths = ["3 7 7 7", "1 2 {3}", "1 {2,3}", "{2,3} 4", "", "7 7", "5", "1 x 2", None,
             "4294967295 4294967296", "1 {2,3} 3"]  # fmt: skip
    origin, up = path_ends(pa.array(paths, pa.string()))
    got = list(zip(origin.to_pylist(), up.to_pylist(), strict=True))
    want = [origin_and_upstream(p) if p is not None else (None, None) for p in paths]
    assert got == want


@pytest.mark.parametrize(
    "name",
    [RIB_2014, "pyasn/rib6.20151101.0600_firstMB.bz2", "bgpdump/updates.20160811.1600.gz"],
)
def test_prefix_bounds_match_ipaddress(shared: Path, name: str) -> None:
    _, t = read_shared(shared_file(shared, name))
    has = t.filter(pc.is_valid(t["prefix"]))
    distinct = has.group_by(["prefix", "prefix_lo", "prefix_hi", "prefix_len"]).aggregate([])
    assert distinct.num_rows == len(set(has["prefix"].to_pylist()))
    for prefix, lo, hi, plen in zip(*(distinct[c].to_pylist() for c in distinct.column_names),
                                    strict=True):  # fmt: skip
        assert (lo, hi) == addr.prefix_range(prefix), prefix
        assert plen == ipaddress.ip_network(prefix, strict=False).prefixlen
    nulls = t.filter(pc.is_null(t["prefix"]))
    for col in ("prefix_lo", "prefix_hi", "prefix_len"):
        assert nulls[col].null_count == nulls.num_rows


def test_rib_2014_origins_agree_with_pyasn_table(shared: Path) -> None:
    """The DPRK /24s are checked if the first MB holds them; pyasn's table of ten days
    earlier must name one of our origins for (nearly) every prefix both contain."""
    _, t = read_shared(shared_file(shared, RIB_2014))
    origins: dict[str, set[int]] = {}
    for prefix, origin in zip(t["prefix"].to_pylist(), t["origin_asn"].to_pylist(), strict=True):
        origins.setdefault(prefix, set()).add(origin)
    dprk = [f"175.45.{n}.0/24" for n in range(176, 180)]
    for prefix in dprk:
        if prefix in origins:
            assert origins[prefix] == {DPRK_AS}
    pyasn: dict[str, int] = {}
    with gzip.open(shared / MRT_DIR / "pyasn" / "ipasn_20140513.dat.gz", "rt") as fh:
        for line in fh:
            if not line.startswith(";"):
                prefix, asn = line.split("\t")
                pyasn[prefix] = int(asn)
    assert all(pyasn[p] == DPRK_AS for p in dprk)
    both = [p for p in origins if p in pyasn]
    assert len(both) > 8_000
    agree = sum(pyasn[p] in origins[p] for p in both)
    assert agree / len(both) > 0.99


# ---- 2. problems -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "prefixes", "peers"),
    [(RIB_2014, 9_072, 35), ("pyasn/rib6.20151101.0600_firstMB.bz2", 6_870, 27)],
)
def test_cut_rib_keeps_every_whole_record(
    shared: Path, name: str, prefixes: int, peers: int
) -> None:
    path = shared_file(shared, name)
    data = decompressed(path)
    records, end = walk(data)
    assert end < len(data)  # PROVENANCE: the last record is cut
    reader, t = read_shared(path)
    assert reader.records == len(records)
    assert int(pc.max(t["record"]).as_py()) == len(records)
    assert wheres(reader) == [
        f"byte {len(data)} decompressed",
        f"record {len(records) + 1} (byte {end})",
    ]
    assert "cut short" in reader.problems[0].problem
    assert "cut short" in reader.problems[1].problem
    assert pc.count_distinct(t["prefix"]).as_py() == prefixes  # PROVENANCE.md
    assert pc.count_distinct(t["peer_addr"]).as_py() == peers


def test_unsupported_record_type_is_reported(shared: Path) -> None:
    path = shared_file(shared, "mrtparse/openbgpd_rib_table-mp")
    records, _ = walk(path.read_bytes())
    assert {(r.type, r.subtype) for r in records} == {(16, 2)}  # BGP4MP_ENTRY
    reader, t = read(path)
    assert t.num_rows == 0
    assert reader.records == len(records) == 31
    assert wheres(reader) == [f"record {r.number} (byte {r.offset})" for r in records]
    assert all("BGP4MP_ENTRY" in p.problem for p in reader.problems)


@pytest.mark.parametrize(
    "name", ["mrtparse/quagga_bgp", "mrtparse/openbgpd_bgp", "mrtparse/bird-mrtdump_bgp"]
)
def test_route_refresh_records_are_reported(shared: Path, name: str) -> None:
    """bgpdump decodes no ROUTE-REFRESH message: exactly those records are problems."""
    path = shared_file(shared, name)
    records, _ = walk(path.read_bytes())
    refresh = [r for r in records if r.subtype in MESSAGES and bgp_message(r)[1] == 5]
    assert refresh
    reader, t = read(path)
    assert wheres(reader) == [f"record {r.number} (byte {r.offset})" for r in refresh]
    assert not set(t["record"].to_pylist()) & {r.number for r in refresh}


def test_rib_generic_records_are_reported(shared: Path) -> None:
    path = shared_file(shared, "mrtparse/openbgpd_rib_table-v2")
    records, _ = walk(path.read_bytes())
    generic = [r for r in records if (r.type, r.subtype) == (13, 6)]
    assert [r.number for r in generic] == [23, 24]
    reader, t = read(path)
    assert wheres(reader) == [f"record {r.number} (byte {r.offset})" for r in generic]
    assert t.num_rows == 31


def test_file_of_only_undecodable_records(shared: Path, tmp_path: Path) -> None:
    """Every record bgpdump cannot decode is reported, also when none of a chunk's records
    gives a line (here: quagga_bgp's seven ROUTE-REFRESH messages and nothing else)."""
    records, _ = walk(shared_file(shared, "mrtparse/quagga_bgp").read_bytes())
    refresh = [r for r in records if r.subtype in MESSAGES and bgp_message(r)[1] == 5]
    assert len(refresh) == 7
    path = tmp_path / "refresh_only.mrt"
    path.write_bytes(join(refresh))
    reader, t = read(path)
    assert t.num_rows == 0
    assert reader.records == 7
    assert problem_records(reader) == set(range(1, 8))


@pytest.fixture
def updates(shared: Path) -> tuple[list[Rec], dict[int, list[Row]]]:
    path = shared_file(shared, UPDATES_2002)
    records, _ = walk(decompressed(path))
    _, t = read_shared(path)
    return records, by_record(t)


def renumbered(good: dict[int, list[Row]], start: int, by: int) -> dict[int, list[Row]]:
    return {k + by if k >= start else k: v for k, v in good.items()}


@pytest.mark.parametrize("fraction", [0.0, 0.013, 0.25, 0.5, 0.77, 0.999, 1.0])
@pytest.mark.parametrize("codec", ["plain", "gzip"])
def test_truncated_file(
    tmp_path: Path,
    updates: tuple[list[Rec], dict[int, list[Row]]],
    fraction: float,
    codec: str,
) -> None:
    records, good = updates
    data = join(records)
    if codec == "plain":
        cut = data[: int(len(data) * fraction)]
        avail = cut
        compressed_cut: list[str | None] = []
    else:
        packed = gzip.compress(data, mtime=0)
        cut = packed[: int(len(packed) * fraction)]
        avail = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(cut)
        compressed_cut = [f"byte {len(avail)} decompressed"] if 0 < fraction < 1 else []
    path = tmp_path / f"cut.{codec}"
    path.write_bytes(cut)
    whole, end = walk(avail)
    reader, t = read(path)
    tail = [f"record {len(whole) + 1} (byte {end})"] if end < len(avail) else []
    assert wheres(reader) == compressed_cut + tail
    assert reader.records == len(whole)
    assert by_record(t) == {k: v for k, v in good.items() if k <= len(whole)}


def test_cut_at_every_record_boundary_and_inside_headers(
    tmp_path: Path, updates: tuple[list[Rec], dict[int, list[Row]]]
) -> None:
    records, good = updates
    data = join(records[:40])
    path = tmp_path / "cut.mrt"
    for rec in records[30:40]:
        for extra in (0, 1, HEADER.size - 1, HEADER.size, HEADER.size + 1):
            end = min(rec.offset + extra, len(data))
            path.write_bytes(data[:end])
            reader, t = read(path)
            kept = rec.number - 1
            assert reader.records == kept
            assert wheres(reader) == ([f"record {rec.number} (byte {rec.offset})"] if extra else [])
            assert by_record(t) == {k: v for k, v in good.items() if k <= kept}


def test_unknown_record_type_between_good_ones(
    tmp_path: Path, updates: tuple[list[Rec], dict[int, list[Row]]]
) -> None:
    records, good = updates
    odd = HEADER.pack(records[49].ts, 99, 3, 5) + b"hello"
    path = tmp_path / "unknown.mrt"
    path.write_bytes(join(records[:50]) + odd + join(records[50:]))
    reader, t = read(path)
    assert wheres(reader) == [f"record 51 (byte {records[50].offset})"]
    assert "type 99" in reader.problems[0].problem
    assert reader.records == len(records) + 1
    assert by_record(t) == renumbered(good, 51, 1)


@pytest.mark.parametrize("at", [5, 26, 40])
def test_unknown_record_type_before_undecodable_ones(shared: Path, tmp_path: Path, at: int) -> None:
    """quagga_bgp's ROUTE-REFRESH records 27-33 make the reader locate bgpdump's gaps one
    record at a time; a skipped record earlier in the same chunk must not shift them."""
    src = shared_file(shared, "mrtparse/quagga_bgp")
    records, _ = walk(src.read_bytes())
    before, t0 = read(src)
    odd = HEADER.pack(records[0].ts, 16, 2, 4) + b"\x00\x00\x00\x00"  # BGP4MP_ENTRY
    path = tmp_path / "quagga_plus_one.mrt"
    path.write_bytes(join(records[:at]) + odd + join(records[at:]))
    reader, t = read(path)
    shift = {n if n <= at else n + 1 for n in problem_records(before)}
    assert problem_records(reader) == shift | {at + 1}
    assert by_record(t) == renumbered(by_record(t0), at + 1, 1)


def test_header_claiming_a_gigabyte(
    tmp_path: Path, updates: tuple[list[Rec], dict[int, list[Row]]]
) -> None:
    records, good = updates
    path = tmp_path / "huge.mrt"
    path.write_bytes(join(records[:50]) + HEADER.pack(records[49].ts, 16, 1, 2**30)
                     + join(records[50:]))  # fmt: skip
    reader, t = read(path)
    assert wheres(reader) == [f"record 51 (byte {records[50].offset})"]
    assert reader.records == 50
    assert by_record(t) == {k: v for k, v in good.items() if k <= 50}


def as_path_attribute(rec: Rec) -> int:
    """Offset in ``rec.data`` of the AS_PATH attribute's flags byte."""
    msg, kind = bgp_message(rec)
    assert kind == 2
    withdrawn = int.from_bytes(rec.data[msg + 19 : msg + 21], "big")
    at = msg + 21 + withdrawn + 2
    while True:
        flags, code = rec.data[at], rec.data[at + 1]
        extended = bool(flags & 0x10)
        size = int.from_bytes(rec.data[at + 2 : at + 4 if extended else at + 3], "big")
        if code == 2:
            return at
        at += (4 if extended else 3) + size


# (what, where relative to the AS_PATH attribute, new byte). Each makes bgpdump complain:
# a truncation warning on stderr, or "! Error !" printed as the AS path.
CORRUPTIONS = [
    ("as_path_longer_than_the_message", 2, 0xFF),
    ("as_path_segment_type_9", 3, 0x09),
    ("as_path_segment_overruns", 4, 0x40),
    ("attributes_longer_than_the_message", -2, 0xFF),
]


@pytest.mark.parametrize(("what", "delta", "value"), CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_corrupt_path_attribute(
    tmp_path: Path,
    updates: tuple[list[Rec], dict[int, list[Row]]],
    what: str,
    delta: int,
    value: int,
) -> None:
    """Acceptance: corrupt attributes are reported with the file and record number, and
    every other record's routes are kept."""
    records, good = updates
    announced = {k for k, rows in good.items() if any(dict(r)["kind"] == "A" for r in rows)}
    victim = next(r for r in records if r.number in announced and r.number > 10)
    at = as_path_attribute(victim)
    if delta < 0:  # the total path attribute length just before the first attribute
        at = bgp_message(victim)[0] + 21
    data = bytearray(victim.data)
    data[at + max(delta, 0)] = value
    path = tmp_path / f"{what}.mrt"
    path.write_bytes(join(records[: victim.number - 1]) + bytes(data)
                     + join(records[victim.number :]))  # fmt: skip
    reader, t = read(path)
    assert problem_records(reader) == {victim.number}, [str(p) for p in reader.problems]
    got = by_record(t)
    got.pop(victim.number, None)
    assert got == {k: v for k, v in good.items() if k != victim.number}


def test_state_change_from_the_marker_as(
    tmp_path: Path, updates: tuple[list[Rec], dict[int, list[Row]]]
) -> None:
    """A real STATE_CHANGE_AS4 from AS 4294967295 (reserved, but a corrupt or hostile file
    can hold one) must not be taken for the reader's own chunk marker."""
    records, good = updates
    body = struct.pack(">IIHH4s4sHH", 0xFFFFFFFF, 0, 0, 1, bytes([192, 0, 2, 1]),
                       bytes([192, 0, 2, 2]), 1, 6)  # fmt: skip
    odd = HEADER.pack(records[9].ts, 16, 5, len(body)) + body
    path = tmp_path / "as_max.mrt"
    path.write_bytes(join(records[:10]) + odd + join(records[10:40]))
    reader, t = read(path)
    got = by_record(t)
    state = got.pop(11, [])
    assert problem_records(reader) == {11} or [
        (dict(r)["kind"], dict(r)["peer_asn"], dict(r)["old_state"], dict(r)["new_state"])
        for r in state
    ] == [("STATE", 0xFFFFFFFF, 1, 6)]
    assert got == renumbered({k: v for k, v in good.items() if k <= 39}, 11, 1)


def test_rib_entry_naming_a_missing_peer(shared: Path, tmp_path: Path) -> None:
    """bgpdump aborts (assertion) on a RIB entry whose peer index is past the peer table."""
    src = shared_file(shared, "mrtparse/openbgpd_rib_table-v2")
    records, _ = walk(src.read_bytes())
    _, t0 = read(src)
    victim = records[2]
    assert (victim.type, victim.subtype) == (13, 2)
    plen = victim.data[HEADER.size + 4]
    entry = HEADER.size + 4 + 1 + (plen + 7) // 8 + 2
    data = bytearray(victim.data)
    struct.pack_into(">H", data, entry, 0x7777)
    path = tmp_path / "bad_peer_index.mrt"
    path.write_bytes(join(records[:2]) + bytes(data) + join(records[3:]))
    reader, t = read(path)
    assert victim.number in problem_records(reader)
    got = by_record(t)
    assert {k: v for k, v in got.items() if k != victim.number} == {
        k: v for k, v in by_record(t0).items() if k != victim.number
    }


def test_crash_mid_file_with_small_chunks(
    shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bgpdump that aborts in its second chunk is given up: that chunk and every later
    one of its worker are read carefully; only the record it aborted on is lost."""
    src = shared_file(shared, "mrtparse/openbgpd_rib_table-v2")
    records, _ = walk(src.read_bytes())
    _, t0 = read(src)
    victim = records[5]
    assert (victim.type, victim.subtype) == (13, 2)
    plen = victim.data[HEADER.size + 4]
    data = bytearray(victim.data)
    struct.pack_into(">H", data, HEADER.size + 4 + 1 + (plen + 7) // 8 + 2, 0x7777)
    path = tmp_path / "bad_peer_index.mrt"
    path.write_bytes(join(records[:5]) + bytes(data) + join(records[6:]))
    monkeypatch.setattr(mrt, "_CHUNK_BYTES", 100)
    reader, t = read(path, workers=2)
    assert problem_records(reader) == {victim.number, 23, 24}  # 23, 24: RIB_GENERIC
    assert any("signal 6" in p.problem for p in reader.problems)
    assert by_record(t) == {k: v for k, v in by_record(t0).items() if k != victim.number}


def test_bad_prefix_line_loses_only_its_record(shared: Path, tmp_path: Path) -> None:
    """bgpdump prints a TABLE_DUMP mask of 200 as "/200" without a warning: that record is
    a problem, every other one is kept."""
    path = shared_file(shared, "bgpdump/bview.20020722.2337.gz")
    records, _ = walk(decompressed(path))
    records = records[:3000]
    victim = records[1500]
    data = bytearray(victim.data)
    data[HEADER.size + 8] = 200  # view, sequence, prefix, then the mask
    bad = tmp_path / "mask200.mrt"
    bad.write_bytes(join(records[:1500]) + bytes(data) + join(records[1501:]))
    good_file = tmp_path / "good.mrt"
    good_file.write_bytes(join(records))
    _, t0 = read(good_file)
    reader, t = read(bad)
    assert wheres(reader) == [f"record {victim.number} (byte {victim.offset})"]
    assert "/200" in reader.problems[0].problem
    assert by_record(t) == {k: v for k, v in by_record(t0).items() if k != victim.number}


def test_each_problem_names_only_its_own_record(shared: Path, tmp_path: Path) -> None:
    """One chunk holds ROUTE-REFRESH records (no decoder) and a record with a truncated
    attribute: each problem carries its own record's message, not the chunk's."""
    records, _ = walk(shared_file(shared, "mrtparse/quagga_bgp").read_bytes())
    victim = records[7]  # an UPDATE (record 8)
    _, kind = bgp_message(victim)
    assert kind == 2
    data = bytearray(victim.data)
    data[bgp_message(victim)[0] + 21] = 0xFF  # total path attribute length
    path = tmp_path / "mixed.mrt"
    path.write_bytes(join(records[:7]) + bytes(data) + join(records[8:]))
    reader, _ = read(path)
    by_where = {p.where: p.problem for p in reader.problems}
    assert set(by_where) == {f"record {r.number} (byte {r.offset})" for r in records
                             if r.number in {8, 27, 28, 29, 30, 31, 32, 33}}  # fmt: skip
    for where, text in by_where.items():
        if where.startswith("record 8 "):
            assert "truncated" in text and "REFRESH" not in text
        else:
            assert "REFRESH" in text and "truncated" not in text


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "absent.mrt")


# ---- 3. record numbers against our own framing -------------------------------------------------


def test_record_numbers_of_an_update_dump(
    shared: Path, updates: tuple[list[Rec], dict[int, list[Row]]]
) -> None:
    records, _ = updates
    _, t = read_shared(shared_file(shared, UPDATES_2002))
    by_number = {r.number: r for r in records}
    state_records = set()
    for row in t.select(["record", "ts", "kind", "old_state", "new_state", "peer_asn"]).to_pylist():
        rec = by_number[row["record"]]
        assert int(row["ts"].timestamp()) == rec.ts
        assert rec.type == 16
        if row["kind"] == "STATE":
            assert rec.subtype in (0, 5)
            as_len = 4 if rec.subtype in AS4 else 2
            peer_as = int.from_bytes(rec.data[HEADER.size : HEADER.size + as_len], "big")
            assert (row["peer_asn"], row["old_state"], row["new_state"]) == (
                peer_as, *struct.unpack(">HH", rec.data[-4:]))  # fmt: skip
            state_records.add(rec.number)
        else:
            assert rec.subtype in MESSAGES
            assert bgp_message(rec)[1] == 2  # UPDATE
    assert state_records == {r.number for r in records if r.subtype in (0, 5)}
    assert t.filter(pc.equal(t["kind"], "STATE")).num_rows == len(state_records)


def test_record_numbers_of_a_table_dump_v1(shared: Path) -> None:
    """TABLE_DUMP holds one route per record: its prefix and peer sit at fixed offsets."""
    path = shared_file(shared, "bgpdump/bview.20020722.2337.gz")
    records, _ = walk(decompressed(path))
    _, t = read_shared(path)
    assert sorted(t["record"].to_pylist()) == list(range(1, len(records) + 1))
    order = pc.sort_indices(t["record"])
    prefixes = pc.take(t["prefix"], order).to_pylist()
    peers = addr.format_array(pc.take(t["peer_addr"], order))
    for rec, prefix, peer in zip(records, prefixes, peers, strict=True):
        assert (rec.type, rec.subtype) == (12, 1)
        body = rec.data[HEADER.size :]
        net = ipaddress.IPv4Address(body[4:8])
        assert prefix == f"{net}/{body[8]}"
        assert peer == str(ipaddress.IPv4Address(body[14:18]))


# ---- 4. workers and chunks --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "chunk"),
    [
        ("bgpdump/updates.20160811.1600.gz", 1 << 12),
        ("bgpdump/bview.ipv4_unicast_add_path.gz", 64),
        ("mrtparse/quagga_bgp", 200),
        ("mrtparse/openbgpd_rib_table-v2", 100),
    ],
)
def test_workers_and_chunk_sizes_agree(
    shared: Path, monkeypatch: pytest.MonkeyPatch, name: str, chunk: int
) -> None:
    path = shared_file(shared, name)
    one, t1 = read(path, workers=1)
    two, t2 = read(path, workers=2)
    monkeypatch.setattr(mrt, "_CHUNK_BYTES", chunk)
    many, t3 = read(path, workers=2)
    expected = by_record(t1)
    assert by_record(t2) == expected
    assert by_record(t3) == expected
    assert str(one.problems) == str(two.problems) == str(many.problems)
    assert one.records == two.records == many.records


# ---- 5. fuzz ---------------------------------------------------------------------------------

FUZZ_SOURCES = [
    "mrtparse/quagga_bgp",
    "mrtparse/bird-mrtdump_rib",
    "mrtparse/bird6-mrtdump_rib",
    "mrtparse/openbgpd_rib_table-v2",
    "mrtparse/openbgpd_bgp",
    "bgpdump/bview.ipv6_unicast_add_path.gz",
]


@cache
def fuzz_source(name: str) -> tuple[bytes, list[Rec], dict[int, list[Row]]]:
    path = SHARED / MRT_DIR / name
    data = decompressed(path)
    records, _ = walk(data)
    _, t = read(path)
    return data, records, by_record(t)


def check_robust(path: Path, original: list[Rec] | None, good: dict[int, list[Row]] | None) -> None:
    """Only InputError; record numbers in range; records untouched by the damage (and read
    under an untouched peer index table) give exactly their original routes."""
    try:
        reader, t = read(path)
    except InputError:
        return
    numbers = t["record"].to_numpy()
    if len(numbers):
        assert numbers.min() >= 1
        assert numbers.max() <= reader.records
    for p in reader.problems:
        assert isinstance(p, InputError)
    if original is None or good is None:
        return
    now, _ = walk(decompressed(path))
    got = by_record(t)
    for rec in now:
        if rec.number > len(original) or original[rec.number - 1] != rec:
            continue
        tables = [(r.number, r.data) for r in now[: rec.number] if (r.type, r.subtype) == (13, 1)]
        was = [(r.number, r.data) for r in original[: rec.number] if (r.type, r.subtype) == (13, 1)]
        if rec.type == 13 and tables != was:
            continue
        assert got.get(rec.number, []) == good.get(rec.number, []), f"record {rec.number}"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    source=st.sampled_from(FUZZ_SOURCES),
    flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
                   max_size=4),
    cut=st.none() | st.floats(0, 1),
    tail=st.binary(max_size=40),
    compress=st.booleans(),
)  # fmt: skip
def test_fuzz_mutated_files(
    shared: Path,
    tmp_path: Path,
    source: str,
    flips: list[tuple[float, int]],
    cut: float | None,
    tail: bytes,
    compress: bool,
) -> None:
    data, records, good = fuzz_source(source)
    damaged = bytearray(data)
    for where, value in flips:
        damaged[int(where * len(damaged))] = value
    if cut is not None:
        damaged = damaged[: int(cut * len(damaged))]
    damaged += tail
    path = tmp_path / "fuzz.mrt"
    path.write_bytes(gzip.compress(bytes(damaged), mtime=0) if compress else bytes(damaged))
    check_robust(path, records, good)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=400), framed=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_fuzz_random_bytes(
    shared: Path, tmp_path: Path, data: bytes, framed: bool, seed: int
) -> None:
    """Plain garbage, and garbage wrapped in plausible headers of readable types."""
    if framed:
        rng = random.Random(seed)
        parts = []
        at = 0
        while at < len(data):
            size = rng.randrange(0, 120)
            mrt_type, subtype = rng.choice([(12, 1), (13, 1), (13, 2), (13, 4), (16, 1),
                                            (16, 4), (16, 5), (17, 4), (13, 8)])  # fmt: skip
            parts.append(HEADER.pack(rng.randrange(2**32), mrt_type, subtype, size)
                         + data[at : at + size].ljust(size, b"\0"))  # fmt: skip
            at += size or 1
        data = b"".join(parts)
    path = tmp_path / "random.mrt"
    path.write_bytes(data)
    check_robust(path, None, None)


LINE_FIELDS = st.sampled_from(["BGP4MP", "TABLE_DUMP2", "TABLE_DUMP2_AP", "BGP4MP_ET", "A", "B",
                               "W", "STATE", "1", "0", "4294967296", "99999999999999999999",
                               "1.2.3.4", "::1", "1.2.3.4/33", "::/129", "10.0.0.0/8", "x/8",
                               "1 2 3", "! Error !", "{1,2}", "IGP", "NAG", "AG", "", "-1",
                               "1027377527.5", "1.2", "256", "fe80::1%eth0"])  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.lists(LINE_FIELDS | st.text(max_size=12), min_size=1, max_size=18)
                      .map("|".join), max_size=12))  # fmt: skip
def test_fuzz_bgpdump_lines(lines: list[str]) -> None:
    """Whatever bgpdump prints, line parsing sorts it into rows and lines of no known
    shape, and column conversion gives routes or names the bad rows; nothing else."""
    table, bad = lines_table(None, lines)
    assert table.num_rows + len(bad) == len(lines)
    assert all(0 <= i < len(lines) and lines[i] == text for i, _, text in bad)
    record = np.arange(1, table.num_rows + 1, dtype=np.uint64)
    try:
        batch = finish(table, record)
    except BadRows as exc:
        assert exc.mask.shape == (table.num_rows,) and exc.mask.any()
        good = table.filter(pa.array(~exc.mask))
        if good.num_rows:
            assert finish(good, record[~exc.mask]).num_rows == good.num_rows
    else:
        assert batch.num_rows == table.num_rows
