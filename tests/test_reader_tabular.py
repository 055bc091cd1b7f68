"""CSV and Parquet readers: presets, real nfdump exports, time/protocol/flag forms,
errors that name file and row, and arbitrary bytes that raise only our errors."""

from __future__ import annotations

import csv
import gzip
import io
import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rogueflow.errors import ConfigError, InputError
from rogueflow.ingest import READERS
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.csvfile import CsvReader
from rogueflow.ingest.mapping import load_mapping
from rogueflow.ingest.parquetfile import ParquetReader
from rogueflow.ingest.pipeline import detect

NFDUMP_CSVS = ("mining.nfdump.csv", "tor.nfdump.csv")
V4_PREFIX = bytes(10) + b"\xff\xff"
# nfdump 1.7 prints TCP flags as 8 positions, most significant first:
# CWR ECE URG ACK PSH RST SYN FIN
NFDUMP_FLAG_ORDER = "CEUAPRSF"
PROTO = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMP6": 58, "GRE": 47, "ESP": 50}


def read_all(path: Path, reader: Any = None, **opts: Any) -> pa.Table:
    r = reader or CsvReader()
    tables = list(r.read(path, ReadOptions(**opts)))
    return pa.concat_tables(tables) if tables else pa.table({})


def raw_addr(text: str) -> bytes:
    ip = ipaddress.ip_address(text)
    return V4_PREFIX + ip.packed if ip.version == 4 else ip.packed


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def nfdump_flags(text: str) -> int:
    assert len(text) == 8
    return sum(1 << (7 - i) for i, ch in enumerate(text) if ch != ".")


def expected_nfdump_rows(path: Path) -> tuple[list[dict[str, Any]], bool]:
    """The records of an nfdump CSV parsed with the csv module; also whether a summary follows."""
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    out = []
    summary = False
    for rec in body:
        if len(rec) != len(header):
            summary = rec == ["Summary"]
            break
        d = dict(zip(header, rec, strict=True))
        out.append(
            {
                "ts_start": utc(d["ts"]),
                "ts_end": utc(d["te"]),
                "src_addr": raw_addr(d["sa"]),
                "dst_addr": raw_addr(d["da"]),
                "src_port": int(d["sp"]),
                "dst_port": int(d["dp"]),
                "proto": PROTO.get(d["pr"]) or int(d["pr"]),
                "tcp_flags": nfdump_flags(d["flg"]),
                "packets": int(d["ipkt"]),
                "bytes": int(d["ibyt"]),
                "rev_packets": int(d["opkt"]),
                "rev_bytes": int(d["obyt"]),
                "exporter": d["ra"],
            }
        )
    return out, summary


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", NFDUMP_CSVS)
def test_nfdump_csv_every_row(shared: Path, name: str) -> None:
    path = shared / "derived-nfcapd" / name
    expected, has_summary = expected_nfdump_rows(path)
    assert has_summary, "these exports end with nfdump's Summary block"
    assert isinstance(detect(path), CsvReader)
    got = read_all(path).to_pylist()
    assert len(got) == len(expected) > 0
    for i, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert {k: g[k] for k in e} == e, f"row {i + 1}"


@pytest.mark.needs_shared
def test_nfdump_csv_without_summary_reads_the_same(shared: Path, tmp_path: Path) -> None:
    """``nfdump -q`` writes no summary; the records are the same either way."""
    path = shared / "derived-nfcapd" / "tor.nfdump.csv"
    lines = path.read_text().splitlines(keepends=True)
    quiet = tmp_path / "quiet.csv"
    quiet.write_text("".join(lines[: lines.index("Summary\n")]))
    assert read_all(quiet).equals(read_all(path))


@pytest.mark.needs_shared
def test_gzipped_csv_reads_like_the_plain_one(shared: Path, tmp_path: Path) -> None:
    plain = shared / "derived-nfcapd" / "mining.nfdump.csv"
    packed = tmp_path / "mining.nfdump.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_all(packed).equals(read_all(plain))


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_silk_rwcut_export(tmp_path: Path) -> None:
    src = write(
        tmp_path / "silk.csv",
        "sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,duration,eTime,sensor\n"
        "10.0.0.1,175.45.176.9,51000,443,6,10,1500,FSPA,2017/05/17T12:00:00.123,1.500,"
        "2017/05/17T12:00:01.623,S0\n"
        "2001:db8::1,2001:db8::2,53,53,17,1,80,,2017/05/17T23:59:59.999,0.000,"
        "2017/05/17T23:59:59.999,S1\n",
    )
    assert isinstance(detect(src), CsvReader)
    rows = read_all(src).to_pylist()
    assert rows[0]["src_addr"] == raw_addr("10.0.0.1")
    assert rows[0]["tcp_flags"] == 0x01 | 0x02 | 0x08 | 0x10
    assert rows[0]["ts_start"] == datetime(2017, 5, 17, 12, 0, 0, 123_000, tzinfo=UTC)
    assert rows[0]["ts_end"] == datetime(2017, 5, 17, 12, 0, 1, 623_000, tzinfo=UTC)
    assert rows[0]["exporter"] == "S0"
    assert (rows[1]["proto"], rows[1]["tcp_flags"], rows[1]["bytes"]) == (17, 0, 80)
    assert rows[1]["dst_addr"] == raw_addr("2001:db8::2")


def test_argus_export_with_epoch_times_and_names(tmp_path: Path) -> None:
    src = write(
        tmp_path / "argus.csv",
        "StartTime,LastTime,SrcAddr,Sport,DstAddr,Dport,Proto,SrcPkts,DstPkts,SrcBytes,DstBytes\n"
        "1494979200.123456,1494979201.5,192.0.2.1,40000,198.51.100.7,3333,tcp,12,10,900,4000\n"
        "1494979202,1494979202,192.0.2.1,5353,224.0.0.251,5353,udp,1,0,70,0\n",
    )
    rows = read_all(src).to_pylist()
    assert rows[0]["ts_start"] == datetime(2017, 5, 17, 0, 0, 0, 123_456, tzinfo=UTC)
    assert rows[0]["ts_end"] == datetime(2017, 5, 17, 0, 0, 1, 500_000, tzinfo=UTC)
    assert [r["proto"] for r in rows] == [6, 17]
    assert (rows[0]["rev_packets"], rows[0]["rev_bytes"]) == (10, 4000)


def test_map_overrides_and_custom_headers(tmp_path: Path) -> None:
    src = write(
        tmp_path / "custom.csv",
        "start,secs,src,dst,proto,pk,by,router\n"
        "2019-06-01T10:00:00Z,2.5,175.45.176.1,8.8.8.8,UDP,1,60,r1\n",
    )
    with pytest.raises(InputError, match="header matches no preset"):
        read_all(src)
    mapping = load_mapping(
        None,
        None,
        {
            "ts_start": "start",
            "duration": "secs",
            "src_addr": "src",
            "dst_addr": "dst",
            "proto": "proto",
            "packets": "pk",
            "bytes": "by",
            "exporter": "router",
        },
    )
    (row,) = read_all(src, mapping=mapping).to_pylist()
    assert row["ts_end"] == datetime(2019, 6, 1, 10, 0, 2, 500_000, tzinfo=UTC)
    assert (row["proto"], row["exporter"], row["src_addr"]) == (17, "r1", raw_addr("175.45.176.1"))
    assert "src_port" not in row  # unmapped: the pipeline's conform() fills the default

    # on a file a preset recognises, --map overrides single columns of it
    nf = write(
        tmp_path / "nf.csv",
        "ts,te,sa,da,sp,dp,pr,flg,ipkt,ibyt,ra,router\n"
        "2017-01-01 00:00:00,2017-01-01 00:00:01,1.1.1.1,2.2.2.2,1,2,TCP,....S.,1,40,"
        "0.0.0.0,edge7\n",
    )
    (row,) = read_all(nf, mapping={"exporter": "router"}).to_pylist()
    assert row["exporter"] == "edge7" and row["tcp_flags"] == 0x02


def test_mapping_file_and_unknown_columns(tmp_path: Path) -> None:
    f = write(tmp_path / "m.toml", 'ts_start = "t"\nsrc_addr = "s"\n')
    assert load_mapping("nfdump", f, {"dst_addr": "d"})["ts_start"] == "t"
    with pytest.raises(ConfigError, match="unknown canonical column"):
        load_mapping(None, None, {"src_ip": "sa"})
    with pytest.raises(ConfigError, match="unknown mapping preset"):
        load_mapping("netflow9", None, {})
    with pytest.raises(ConfigError, match="cannot read mapping"):
        load_mapping(None, write(tmp_path / "bad.toml", "ts_start = "), {})


@pytest.mark.parametrize(
    ("cells", "expected"),
    [
        (["1494979200", "1494979260"], ["2017-05-17T00:00:00", "2017-05-17T00:01:00"]),
        (
            ["1494979200.25", "1494979200.000001"],
            ["2017-05-17T00:00:00.25", "2017-05-17T00:00:00.000001"],
        ),
        (
            ["1494979200123", "1494979200999"],
            ["2017-05-17T00:00:00.123", "2017-05-17T00:00:00.999"],
        ),
        (["2017-05-17T00:00:00Z", "2017-05-17 09:00:00+09:00"], ["2017-05-17T00:00:00"] * 2),
        (["2017-05-17 08:30:00.5+0830", "2017-05-17T00:00:00.5"], ["2017-05-17T00:00:00.5"] * 2),
        (
            ["2017-05-17 00:00:00", "2017-05-17T23:59:59.999999"],
            ["2017-05-17T00:00:00", "2017-05-17T23:59:59.999999"],
        ),
    ],
    ids=["epoch-s", "epoch-s-fraction", "epoch-ms", "iso-offsets", "iso-mixed", "iso-naive"],
)
def test_time_columns(tmp_path: Path, cells: list[str], expected: list[str]) -> None:
    body = "".join(f"{c},10.0.0.1,10.0.0.2,6,1,40\n" for c in cells)
    src = write(tmp_path / "t.csv", "ts,sa,da,pr,ipkt,ibyt\n" + body)
    got = read_all(src).column("ts_start").to_pylist()
    assert got == [utc(e) for e in expected]


def test_protocol_names_and_flag_strings(tmp_path: Path) -> None:
    protos = ["tcp", "UDP", "icmp", "ipv6-icmp", "GRE", "47", "ICMP6", " esp "]
    flags = ["...AP.S.", "........", "CEUAPRSF", "0x12", "18", ".A..RS.F", "", "SA"]
    body = "".join(
        f"1494979200,10.0.0.1,10.0.0.2,{p},{f},1,40\n" for p, f in zip(protos, flags, strict=True)
    )
    src = write(tmp_path / "p.csv", "ts,sa,da,pr,flg,ipkt,ibyt\n" + body)
    t = read_all(src)
    assert t.column("proto").to_pylist() == [6, 17, 1, 58, 47, 47, 58, 50]
    assert t.column("tcp_flags").to_pylist() == [0x1A, 0, 0xFF, 0x12, 18, 0x17, 0, 0x12]


@pytest.mark.parametrize(("bad", "needle"), [("tcpx", "pr 'tcpx' is not a number"),
                                             ("300", "pr 300 is out of range")])  # fmt: skip
def test_long_protocol_column_reads_each_text_once(tmp_path: Path, bad: str, needle: str) -> None:
    """A protocol column of many rows is read by its distinct texts: the same numbers as
    row by row, and a bad text far down the file still named by its own line."""
    protos = ["tcp", "UDP", "icmp", "ipv6-icmp", "GRE", "47", "ICMP6", " esp "] * 25
    body = "".join(f"1494979200,10.0.0.1,10.0.0.2,{p},1,40\n" for p in protos)
    src = write(tmp_path / "p.csv", "ts,sa,da,pr,ipkt,ibyt\n" + body)
    assert read_all(src).column("proto").to_pylist() == [6, 17, 1, 58, 47, 47, 58, 50] * 25
    protos[150] = bad  # line 152: the header is line 1
    body = "".join(f"1494979200,10.0.0.1,10.0.0.2,{p},1,40\n" for p in protos)
    src = write(tmp_path / "bad.csv", "ts,sa,da,pr,ipkt,ibyt\n" + body)
    with pytest.raises(InputError) as err:
        read_all(src)
    assert "line 152" in str(err.value) and needle in str(err.value), str(err.value)


HEADER = "ts,sa,da,sp,dp,pr,ipkt,ibyt\n"
GOOD = "1494979200,10.0.0.1,10.0.0.2,1000,80,6,1,40\n"


@pytest.mark.parametrize(
    ("bad_row", "line", "needle"),
    [
        (
            "1494979200,10.0.0.1,10.0.0.256,1000,80,6,1,40",
            4,
            "da '10.0.0.256' is not an IP address",
        ),
        ("1494979200,10.0.0.1,::1::2,1000,80,6,1,40", 4, "da '::1::2' is not an IP address"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,70000,6,1,40", 4, "dp 70000 is out of range"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,http,6,1,40", 4, "dp 'http' is not a number"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,80,tcpx,1,40", 4, "pr 'tcpx' is not a number"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,80,6,,40", 4, "ipkt is empty"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,80,6,-3,40", 4, "ipkt -3 is negative"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,80,6,1,1e30", 4, "ibyt 1e+30 is out of range"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,80,6,1,inf", 4, "ibyt inf is out of range"),
        ("yesterday,10.0.0.1,10.0.0.2,1000,80,6,1,40", 4, "ts 'yesterday' is not a timestamp"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,80,6,1", 4, "expected 8 columns, found 7"),
        ("1494979200,10.0.0.1,10.0.0.2,1000,80,6,1,40,9", 4, "expected 8 columns, found 9"),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, bad_row: str, line: int, needle: str) -> None:
    src = write(tmp_path / "e.csv", HEADER + GOOD * (line - 2) + bad_row + "\n" + GOOD * 3)
    with pytest.raises(InputError) as info:
        read_all(src)
    err = info.value
    assert err.path == str(src)
    assert err.where == f"line {line}"
    assert needle in err.problem
    assert str(err).startswith(f"{src}, line {line}: ")


def test_error_lines_count_across_batches(tmp_path: Path) -> None:
    bad = "1494979200,10.0.0.1,10.0.0.2,1000,80,6,1,-"
    src = write(tmp_path / "e.csv", HEADER + GOOD * 2500 + bad + "\n" + GOOD * 10)
    with pytest.raises(InputError) as info:
        read_all(src, batch_rows=1000)
    assert info.value.where == "line 2502"


def test_missing_column(tmp_path: Path) -> None:
    src = write(tmp_path / "m.csv", "ts,sa,da,pr,ipkt\n" + "1494979200,1.1.1.1,2.2.2.2,6,1\n")
    with pytest.raises(InputError, match="header matches no preset"):
        read_all(src)
    mapping = load_mapping("nfdump", None, {})
    with pytest.raises(InputError) as info:
        read_all(src, mapping=mapping)
    assert info.value.path == str(src)
    assert "ibyt" in info.value.problem and "not found" in info.value.problem


def test_empty_file_and_header_only(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        read_all(write(tmp_path / "empty.csv", ""))
    assert read_all(write(tmp_path / "header.csv", HEADER)).num_rows == 0


def test_parquet_with_preset_columns_and_errors(tmp_path: Path) -> None:
    table = pa.table(
        {
            "ts": pa.array([1494979200, 1494979201], pa.int64()),
            "sa": ["175.45.176.1", "10.0.0.1"],
            "da": pa.array(["8.8.8.8", "1.1.1.1"]).dictionary_encode(),
            "pr": ["TCP", "udp"],
            "ipkt": [1, 2],
            "ibyt": [40.0, 80.0],
        }
    )
    src = tmp_path / "nf.parquet"
    pq.write_table(table, src)
    assert isinstance(detect(src), ParquetReader)
    got = read_all(src, ParquetReader()).to_pylist()
    assert [r["proto"] for r in got] == [6, 17]
    assert got[1]["dst_addr"] == raw_addr("1.1.1.1") and got[1]["bytes"] == 80

    bad = table.set_column(1, "sa", pa.array(["175.45.176.1", "nope"]))
    pq.write_table(bad, src, row_group_size=1)
    with pytest.raises(InputError) as info:
        read_all(src, ParquetReader(), batch_rows=1)
    assert info.value.where == "row 2" and "sa 'nope'" in info.value.problem


# --- arbitrary bytes raise only our errors ----------------------------------------

OUR_ERRORS = (InputError, ConfigError)
FUZZ = settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])


def fuzz_read(reader: Any, data: bytes, name: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(data)
        try:
            for _ in reader.read(path, ReadOptions(batch_rows=7)):
                pass
        except OUR_ERRORS:
            pass


_cell = st.one_of(
    st.sampled_from(
        [
            "",
            "-",
            "0",
            "1494979200",
            "1.5",
            "tcp",
            "10.0.0.1",
            "::1",
            "x",
            "1e309",
            "nan",
            "-1",
            "99999999999999999999",
            "2017-05-17T00:00:00Z",
            '"',
            "0x1f",
            "2017/05/17T00:00:00",
            "\u00b2",
            "...AP.S.",
            "inf",
        ]
    ),
    st.text(max_size=8),
)
_csv_line = st.lists(_cell, min_size=1, max_size=10).map(",".join)


@FUZZ
@given(st.binary(max_size=400))
def test_csv_reader_arbitrary_bytes(data: bytes) -> None:
    fuzz_read(CsvReader(), data, "x.csv")


@FUZZ
@given(
    st.sampled_from(
        [
            "ts,sa,da,pr,ipkt,ibyt",
            "ts,te,sa,da,sp,dp,pr,flg,ipkt,ibyt,opkt,obyt,ra",
            "sIP,dIP,sPort,dPort,protocol,packets,bytes,flags,sTime,eTime",
        ]
    ),
    st.lists(_csv_line, max_size=12),
    st.booleans(),
)
def test_csv_reader_near_valid_rows(header: str, lines: list[str], gz: bool) -> None:
    data = (header + "\n" + "\n".join(lines)).encode()
    fuzz_read(CsvReader(), gzip.compress(data) if gz else data, "x.csv")


@FUZZ
@given(st.binary(max_size=400), st.booleans())
def test_compressed_garbage(data: bytes, truncate: bool) -> None:
    packed = gzip.compress(b"ts,sa,da,pr,ipkt,ibyt\n" + data)
    fuzz_read(
        CsvReader(), packed[: len(packed) // 2] if truncate else packed[:10] + data, "x.csv.gz"
    )


def _valid_parquet() -> bytes:
    buf = io.BytesIO()
    t = pa.table(
        {
            "ts": [1494979200] * 5,
            "sa": ["1.1.1.1"] * 5,
            "da": ["::1"] * 5,
            "pr": ["tcp"] * 5,
            "ipkt": [1] * 5,
            "ibyt": [40] * 5,
        }
    )
    pq.write_table(t, buf, row_group_size=2)
    return buf.getvalue()


VALID_PARQUET = _valid_parquet()


@FUZZ
@given(st.binary(max_size=400))
def test_parquet_reader_arbitrary_bytes(data: bytes) -> None:
    fuzz_read(ParquetReader(), b"PAR1" + data + b"PAR1", "x.parquet")
    fuzz_read(ParquetReader(), data, "y.parquet")


@FUZZ
@given(
    st.lists(
        st.tuples(st.integers(0, len(VALID_PARQUET) - 1), st.integers(0, 255)),
        min_size=1,
        max_size=4,
    ),
    st.integers(8, len(VALID_PARQUET)),
)
def test_parquet_reader_damaged_file(edits: list[tuple[int, int]], keep: int) -> None:
    data = bytearray(VALID_PARQUET)
    for pos, value in edits:
        data[pos] = value
    fuzz_read(ParquetReader(), bytes(data), "x.parquet")
    fuzz_read(ParquetReader(), VALID_PARQUET[:keep] + VALID_PARQUET[-8:], "y.parquet")


def test_reader_names_are_unique() -> None:
    names = [r.name for r in READERS]
    assert len(names) == len(set(names))
