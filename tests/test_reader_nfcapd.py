"""nfcapd reader: real nfcapd files against nfdump's own CSV, a real exporter, bad files."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
import subprocess
import time
from calendar import timegm
from collections import Counter
from pathlib import Path
from time import strptime

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.errors import InputError, MissingDependency
from rogueflow.ingest.base import ReadOptions, read_head
from rogueflow.ingest.mapping import PROTO_NAMES, TCP_FLAG_BITS
from rogueflow.ingest.nfcapd import NfcapdReader, NfdumpRun
from tests.conftest import require_tool

READER = NfcapdReader()
pytestmark = pytest.mark.needs_tool("nfdump")

Key = tuple[int, str, str, int, int, int, int, int]


@pytest.fixture(autouse=True)
def nfdump() -> str:
    return require_tool("nfdump", "nfdump")


def read_all(path: Path, **kw: object) -> pa.Table:
    tables = list(READER.read(path, ReadOptions(**kw)))  # type: ignore[arg-type]
    return pa.concat_tables(tables) if tables else pa.table({})


def reader_rows(paths: list[Path]) -> Counter[tuple[Key, int, int]]:
    """(ts seconds, sa, da, sp, dp, proto, ipkt, ibyt), end seconds and flags, per record."""
    out: Counter[tuple[Key, int, int]] = Counter()
    for path in paths:
        t = read_all(path)
        if not t.num_rows:
            continue
        for r, sa, da in zip(t.to_pylist(), addr.format_array(t["src_addr"]),
                             addr.format_array(t["dst_addr"]), strict=True):  # fmt: skip
            key = (int(r["ts_start"].timestamp()), sa, da, r["src_port"], r["dst_port"],
                   r["proto"], r["packets"], r["bytes"])  # fmt: skip
            out[key, int(r["ts_end"].timestamp()), r["tcp_flags"]] += 1
    return out


def csv_rows(text: str) -> Counter[tuple[Key, int, int]]:
    """The same from ``nfdump -o csv`` (times in UTC, whole seconds; the summary ignored)."""
    lines = text.splitlines()
    header = lines[0].split(",")
    col = {name: i for i, name in enumerate(header)}
    out: Counter[tuple[Key, int, int]] = Counter()
    for line in lines[1:]:
        f = line.split(",")
        if len(f) != len(header):
            break  # "Summary" and its lines

        def secs(text: str) -> int:
            return timegm(strptime(text, "%Y-%m-%d %H:%M:%S"))

        pr = f[col["pr"]].strip()
        proto = int(pr) if pr.isdigit() else PROTO_NAMES[pr.lower()]
        flags = sum(TCP_FLAG_BITS[c] for c in f[col["flg"]] if c != ".")
        key = (secs(f[col["ts"]]), str(ipaddress.ip_address(f[col["sa"]])),
               str(ipaddress.ip_address(f[col["da"]])), int(f[col["sp"]]), int(float(f[col["dp"]])),
               proto, int(f[col["ipkt"]]), int(f[col["ibyt"]]))  # fmt: skip
        out[key, secs(f[col["te"]]), flags] += 1
    return out


# --- golden: nfcapd files made by nfpcapd, against nfdump's CSV of them ----------------------


@pytest.mark.needs_shared
@pytest.mark.parametrize(("name", "flows"), [("mining", 36), ("tor", 28)])
def test_derived_nfcapd_match_nfdump_csv(shared: Path, name: str, flows: int) -> None:
    folder = shared / "derived-nfcapd" / name
    files = sorted(folder.glob("nfcapd.*"))
    assert files and all(READER.sniff(p, read_head(p)) for p in files)
    expected = csv_rows((shared / "derived-nfcapd" / f"{name}.nfdump.csv").read_text())
    got = reader_rows(files)
    assert sum(expected.values()) == flows
    assert got == expected


@pytest.mark.needs_shared
def test_times_are_milliseconds_and_batches_bounded(shared: Path) -> None:
    path = shared / "derived-nfcapd" / "tor" / "nfcapd.201311071100"
    tables = list(READER.read(path, ReadOptions(batch_rows=4)))
    assert len(tables) > 1 and all(t.num_rows <= 4 for t in tables)
    rows = pa.concat_tables(tables).to_pylist()
    # the first record in nfdump -o json: first 10:54:33.254, last 11:02:03.915 (UTC)
    first = rows[0]
    assert first["ts_start"].isoformat() == "2013-11-07T10:54:33.254000+00:00"
    assert first["ts_end"].isoformat() == "2013-11-07T11:02:03.915000+00:00"
    assert (first["proto"], first["src_port"], first["dst_port"]) == (17, 17500, 17500)
    assert all(r["sampling_rate"] == 1 and r["exporter"] is None for r in rows)
    assert all(r["rev_packets"] == 0 for r in rows)  # nfpcapd writes uni-directional flows


# --- a real exporter run in the test ------------------------------------------------------


def _checksum(data: bytes) -> int:
    data += b"\0" * (len(data) % 2)
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s >> 16) + (s & 0xFFFF)
    return ~(s + (s >> 16)) & 0xFFFF


def write_icmp_pcap(path: Path) -> None:
    """Echo request/reply and a port-unreachable, Ethernet + IPv4 + ICMP."""

    def packet(src: str, dst: str, icmp_type: int, code: int) -> bytes:
        icmp = struct.pack("!BBHI", icmp_type, code, 0, 0x12340001) + b"rogueflow"
        icmp = icmp[:2] + struct.pack("!H", _checksum(icmp)) + icmp[4:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(icmp), 1, 0, 64, 1, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))  # fmt: skip
        ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
        return b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\x08\x00" + ip + icmp

    frames = [(1500000000.25, packet("175.45.176.1", "8.8.8.8", 8, 0)),
              (1500000000.5, packet("8.8.8.8", "175.45.176.1", 0, 0)),
              (1500000005.0, packet("10.0.0.1", "175.45.176.9", 3, 3))]  # fmt: skip
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for ts, frame in frames:
            fh.write(struct.pack("<IIII", int(ts), round(ts % 1 * 1e6), len(frame), len(frame)))
            fh.write(frame)


def nfpcapd_files(pcap: Path, out: Path) -> list[Path]:
    require_tool("nfpcapd", "nfdump")
    out.mkdir()
    subprocess.run(["nfpcapd", "-r", str(pcap), "-w", str(out)], check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    return sorted(out.glob("nfcapd.*"))


def nfdump_csv(path: Path) -> str:
    env = {**os.environ, "TZ": "UTC"}  # csv prints local time
    done = subprocess.run(["nfdump", "-r", str(path), "-o", "csv"], check=True,
                          capture_output=True, text=True, env=env, timeout=60)  # fmt: skip
    return done.stdout


@pytest.mark.parametrize("pcap", ["icmp", "zeek-traces/ipv6.pcap", "ndpi/pcap/bitcoin.pcap"])
def test_nfpcapd_output_matches_nfdump_csv(
    tmp_path: Path, pcap: str, request: pytest.FixtureRequest
) -> None:
    if pcap == "icmp":
        source = tmp_path / "icmp.pcap"
        write_icmp_pcap(source)
    else:
        source = request.getfixturevalue("shared") / pcap
    files = nfpcapd_files(source, tmp_path / "flows")
    assert files
    got = Counter[tuple[Key, int, int]]()
    expected = Counter[tuple[Key, int, int]]()
    for f in files:
        got += reader_rows([f])
        expected += csv_rows(nfdump_csv(f))
    assert got == expected and sum(got.values()) > 0
    keys = {k[0] for k in got}
    if pcap == "icmp":  # type*256+code, source port 0
        assert {(k[1], k[2], k[3], k[4], k[5]) for k in keys} == {
            ("175.45.176.1", "8.8.8.8", 0, 8 * 256, 1), ("8.8.8.8", "175.45.176.1", 0, 0, 1),
            ("10.0.0.1", "175.45.176.9", 0, 3 * 256 + 3, 1),
        }  # fmt: skip
    if "ipv6" in pcap:  # full IPv6 addresses, not nfdump's condensed "2001:..:4887"
        assert "2001:470:e5bf:dead:4957:2174:e82c:4887" in {k[1] for k in keys}


# --- bad files --------------------------------------------------------------------------------


def _expect_input_error(path: Path) -> InputError:
    with pytest.raises(InputError) as err:
        read_all(path)
    assert err.value.path == str(path)
    return err.value


@pytest.mark.needs_shared
def test_bad_files_are_input_errors(shared: Path, tmp_path: Path) -> None:
    real = (shared / "derived-nfcapd" / "tor" / "nfcapd.201311071100").read_bytes()
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is not an nfcapd file at all\n" * 20)
    assert not READER.sniff(junk, read_head(junk))
    assert "bad magic" in _expect_input_error(junk).problem
    half = tmp_path / "nfcapd.half"
    half.write_bytes(real[: len(real) // 2])
    assert READER.sniff(half, read_head(half))  # the header is intact: sniff cannot tell
    assert "nfdump failed" in _expect_input_error(half).problem
    for cut in (0, 3, 40, len(real) - 1):
        short = tmp_path / f"nfcapd.cut{cut}"
        short.write_bytes(real[:cut])
        _expect_input_error(short)
    with pytest.raises(InputError, match="no such file"):
        read_all(tmp_path / "missing")


@pytest.mark.needs_shared
def test_nfdump_flooding_stderr_is_stopped(shared: Path, tmp_path: Path) -> None:
    # a huge appendix record count makes nfdump 1.7.1 print an error per missing record
    data = bytearray((shared / "derived-nfcapd" / "mining" / "nfcapd.201701171215").read_bytes())
    data[41] = 106
    path = tmp_path / "nfcapd.flood"
    path.write_bytes(bytes(data))
    problem = _expect_input_error(path).problem
    assert "kept printing errors" in problem and "appendix" in problem


def test_a_stalled_child_is_killed() -> None:
    # the watchdog is independent of nfdump: any child that neither writes nor exits
    run = NfdumpRun(["sleep", "30"], stall=0.5)
    started = time.monotonic()
    assert run.read(1 << 16) == b""
    assert "no progress for 0.5 s" in (run.finish(kill=False) or "")
    assert time.monotonic() - started < 10


def test_missing_nfdump_names_the_install(tmp_path: Path) -> None:
    path = tmp_path / "nfcapd.x"
    path.write_bytes(b"\x0c\xa5\x02\x00")
    with pytest.raises(MissingDependency, match="apt-get install nfdump"):
        read_all(path, extra={"nfdump": str(tmp_path / "no-such-nfdump")})


# --- properties -------------------------------------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
MAGIC_V2 = b"\x0c\xa5\x02\x00"


def _read_or_input_error(path: Path) -> None:
    try:
        for table in READER.read(path, ReadOptions(batch_rows=8)):
            assert table.num_rows <= 8
    except InputError as exc:
        assert exc.path == str(path)


@FUZZ
@given(data=st.binary(max_size=1024), prefix=st.sampled_from([b"", MAGIC_V2, b"\x0c\xa5\x01\x00"]))
def test_arbitrary_bytes_raise_input_error_only(tmp_path: Path, data: bytes, prefix: bytes) -> None:
    path = tmp_path / "nfcapd.fuzz"
    path.write_bytes(prefix + data)
    _read_or_input_error(path)


@pytest.mark.needs_shared
@FUZZ
@given(
    which=st.sampled_from(["tor/nfcapd.201311071100", "mining/nfcapd.201712251015"]),
    flips=st.lists(st.tuples(st.integers(0, 4095), st.integers(0, 255)), min_size=1, max_size=6),
    cut=st.none() | st.integers(0, 4095),
)
def test_mutated_nfcapd_raise_input_error_only(
    shared: Path, tmp_path: Path, which: str, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = bytearray((shared / "derived-nfcapd" / which).read_bytes())
    for pos, value in flips:
        data[pos % len(data)] = value
    path = tmp_path / "nfcapd.mutant"
    path.write_bytes(bytes(data[:cut] if cut is not None else data))
    _read_or_input_error(path)


# --- end to end -------------------------------------------------------------------------------


@pytest.mark.needs_shared
def test_ingest_and_query(shared: Path, tmp_path: Path) -> None:
    from rogueflow.analyze.engine import DuckDBEngine
    from rogueflow.ops import ingest_paths
    from rogueflow.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    results = ingest_paths(ws, [shared / "derived-nfcapd" / "tor"])
    assert sum(r.rows for r in results) == 28
    eng = DuckDBEngine(ws)
    try:
        assert eng.sql("select count(*) from flows").fetchall() == [(28,)]
        got = eng.sql(
            "select count(*) from flows where dst_ip = '38.229.70.53' and dst_port = 443 "
            "and source_format = 'nfcapd'"
        ).fetchall()
        assert got[0][0] > 0
    finally:
        eng.close()
