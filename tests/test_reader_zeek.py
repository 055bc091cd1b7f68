"""Zeek conn.log reader: Zeek's own baseline as golden file, companion joins, errors, fuzzing."""

from __future__ import annotations

import gzip
import ipaddress
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.errors import InputError
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.zeek import ZeekConnReader

READER = ZeekConnReader()
FIXED_TS = "1300475167.096535"  # 2011-03-18 19:06:07.096535 UTC, the first packet of wikipedia.pcap
PROTO = {"tcp": 6, "udp": 17, "icmp": 1}

CONN_FIELDS = [
    ("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
    ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"), ("service", "string"),
    ("duration", "interval"), ("orig_bytes", "count"), ("resp_bytes", "count"),
    ("conn_state", "string"), ("history", "string"), ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"), ("resp_pkts", "count"), ("resp_ip_bytes", "count"),
]  # fmt: skip


def head(path: Path) -> bytes:
    """What the pipeline hands to sniff: the first 64 KiB, decompressed."""
    data = path.read_bytes()
    return (gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)[:65536]


def read_all(path: Path, **kw: Any) -> pa.Table:
    tables = list(READER.read(path, ReadOptions(**kw)))
    return pa.concat_tables(tables) if tables else pa.table({})


def ip_texts(col: pa.ChunkedArray) -> list[str]:
    return [str(ipaddress.ip_address(t)) for t in addr.format_array(col)]


def write_tsv(path: Path, log: str, fields: Sequence[tuple[str, str]], rows: list[list[str]],
              *, compress: bool = False) -> Path:  # fmt: skip
    lines = [
        "#separator \\x09", "#set_separator\t,", "#empty_field\t(empty)", "#unset_field\t-",
        f"#path\t{log}", "#open\t2017-05-01-00-00-00",
        "#fields\t" + "\t".join(f for f, _ in fields),
        "#types\t" + "\t".join(t for _, t in fields),
        *("\t".join(r) for r in rows),
        "#close\t2017-05-01-01-00-00",
    ]  # fmt: skip
    data = ("\n".join(lines) + "\n").encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def write_json(path: Path, records: list[dict[str, Any]], *, compress: bool = False) -> Path:
    data = "".join(json.dumps(r) + "\n" for r in records).encode()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def as_json(fields: Sequence[tuple[str, str]], row: list[str], iso: bool) -> dict[str, Any]:
    """One TSV row as Zeek's JSON writer prints it (unset fields left out)."""
    out: dict[str, Any] = {}
    for (name, typ), value in zip(fields, row, strict=True):
        if value == "-":
            continue
        if typ == "time":
            t = datetime.fromtimestamp(float(value), UTC)
            out[name] = t.isoformat(timespec="microseconds")[:-6] + "Z" if iso else float(value)
        elif typ in ("port", "count"):
            out[name] = int(value)
        elif typ == "interval":
            out[name] = float(value)
        elif typ.startswith(("set[", "vector[")):
            items = value.split(",") if value != "(empty)" else []
            out[name] = [float(v) for v in items] if "interval" in typ else items
        elif value == "(empty)":
            out[name] = ""
        else:
            out[name] = value
    return out


# --- golden: Zeek's expected conn.log for wikipedia.pcap ---------------------------------


@pytest.mark.needs_shared
def test_masked_timestamps_are_a_clear_error(shared: Path) -> None:
    path = shared / "zeek-traces" / "wikipedia.conn.log"
    assert READER.sniff(path, head(path))
    with pytest.raises(InputError) as err:
        read_all(path)
    assert err.value.path == str(path)
    assert err.value.where == "line 10"  # the first record, after 9 header lines
    assert "XXXXXXXXXX.XXXXXX" in err.value.problem and "ts" in err.value.problem


@pytest.mark.needs_shared
def test_wikipedia_golden(shared: Path, tmp_path: Path) -> None:
    text = (shared / "zeek-traces" / "wikipedia.conn.log").read_text()
    path = tmp_path / "conn.log"
    path.write_text(text.replace("XXXXXXXXXX.XXXXXX", FIXED_TS))
    # parse the file independently: header fields, then one dict per record line
    lines = path.read_text().splitlines()
    fields = next(ln for ln in lines if ln.startswith("#fields")).split("\t")[1:]
    records = [dict(zip(fields, ln.split("\t"), strict=True)) for ln in lines if ln[:1] != "#"]
    assert len(records) == 34

    got = read_all(path, batch_rows=7)  # several batches
    assert got.num_rows == len(records)
    rows = got.to_pylist()
    src, dst = ip_texts(got["src_addr"]), ip_texts(got["dst_addr"])
    start_us = round(float(FIXED_TS) * 1e6)
    for i, rec in enumerate(records):

        def num(name: str, rec: dict[str, str] = rec) -> int:
            return 0 if rec[name] == "-" else int(rec[name])

        expected = {
            "src": str(ipaddress.ip_address(rec["id.orig_h"])),
            "dst": str(ipaddress.ip_address(rec["id.resp_h"])),
            "src_port": int(rec["id.orig_p"]), "dst_port": int(rec["id.resp_p"]),
            "proto": PROTO[rec["proto"]], "packets": num("orig_pkts"),
            "bytes": num("orig_ip_bytes"), "rev_packets": num("resp_pkts"),
            "rev_bytes": num("resp_ip_bytes"),
            "app_label": None if rec["service"] == "-" else rec["service"],
        }  # fmt: skip
        actual = {
            "src": src[i], "dst": dst[i], "src_port": rows[i]["src_port"],
            "dst_port": rows[i]["dst_port"], "proto": rows[i]["proto"],
            "packets": rows[i]["packets"], "bytes": rows[i]["bytes"],
            "rev_packets": rows[i]["rev_packets"], "rev_bytes": rows[i]["rev_bytes"],
            "app_label": rows[i]["app_label"],
        }  # fmt: skip
        assert actual == expected, f"record {i + 1}"
        ts_start = rows[i]["ts_start"]
        duration_us = 0 if rec["duration"] == "-" else round(float(rec["duration"]) * 1e6)
        assert (ts_start.timestamp() * 1e6) == pytest.approx(start_us, abs=1)
        assert (rows[i]["ts_end"] - ts_start).total_seconds() * 1e6 == pytest.approx(
            duration_us, abs=1
        )
        assert rows[i]["sampling_rate"] == 1
    # the history column: ShADad → SYN, SYN|ACK, ACK, PSH|ACK; "^h" → SYN|ACK; UDP → 0
    by_uid = {r["uid"]: rows[i] for i, r in enumerate(records)}
    assert by_uid["CiyBAq1bBLNaTiTAc"]["tcp_flags"] == 0x02 | 0x10 | 0x08
    assert by_uid["CFSwNi4CNGxcuffo49"]["tcp_flags"] == 0x12
    assert by_uid["CmES5u32sYpV7JYN"]["tcp_flags"] == 0


# --- companions and the uid join ---------------------------------------------------------

CONN_ROWS = [
    # uid C1: DNS query answered; C2: TLS with SNI and HTTP host; C3: HTTP only; C4: ICMP echo
    [FIXED_TS, "C1", "10.0.0.1", "40000", "8.8.8.8", "53", "udp", "dns", "0.5", "30", "90",
     "SF", "Dd", "1", "58", "1", "118"],
    ["1300475168.000001", "C2", "10.0.0.1", "40001", "175.45.176.1", "443", "tcp", "ssl",
     "1.25", "500", "4000", "SF", "ShADadFf", "10", "1020", "8", "4420"],
    ["1300475169.5", "C3", "2001:db8::1", "40002", "2001:db8::80", "80", "tcp", "http", "-",
     "100", "200", "SF", "ShADadR", "5", "360", "4", "408"],
    ["1300475170", "C4", "10.0.0.1", "8", "175.45.176.2", "0", "icmp", "-", "0.1", "64", "64",
     "OTH", "-", "1", "92", "1", "92"],
    ["1300475171", "C5", "fe80::1", "128", "fe80::2", "0", "icmp", "(empty)", "0", "8", "8",
     "OTH", "-", "1", "56", "1", "56"],
]  # fmt: skip
DNS_FIELDS = [("ts", "time"), ("uid", "string"), ("id.orig_h", "addr"), ("id.orig_p", "port"),
              ("id.resp_h", "addr"), ("id.resp_p", "port"), ("proto", "enum"),
              ("query", "string")]  # fmt: skip
DNS_ROWS = [
    [FIXED_TS, "C1", "10.0.0.1", "40000", "8.8.8.8", "53", "udp", "-"],
    [FIXED_TS, "C1", "10.0.0.1", "40000", "8.8.8.8", "53", "udp", "kcna.kp"],
    [FIXED_TS, "C1", "10.0.0.1", "40000", "8.8.8.8", "53", "udp", "second.example"],
    [FIXED_TS, "C9", "10.0.0.9", "40009", "8.8.8.8", "53", "udp", "orphan.example"],
]
SSL_FIELDS = [("ts", "time"), ("uid", "string"), ("server_name", "string")]
SSL_ROWS = [["1300475168.1", "C2", "www.star.co.kp"]]
HTTP_FIELDS = [("ts", "time"), ("uid", "string"), ("host", "string")]
HTTP_ROWS = [["1300475168.2", "C2", "ignored.example"], ["1300475169.6", "C3", "naenara.com.kp"]]

NAMINGS = ["{}.log", "{}.2017-05.log.gz", "{}.00:00:00-01:00:00.log.gz"]


def write_set(tmp: Path, naming: str, style: str) -> Path:
    compress = naming.endswith(".gz")
    logs = [("conn", CONN_FIELDS, CONN_ROWS), ("dns", DNS_FIELDS, DNS_ROWS),
            ("ssl", SSL_FIELDS, SSL_ROWS), ("http", HTTP_FIELDS, HTTP_ROWS)]  # fmt: skip
    for log, fields, rows in logs:
        path = tmp / naming.format(log)
        if style == "tsv":
            write_tsv(path, log, fields, rows, compress=compress)
        else:
            records = [as_json(fields, r, iso=style == "json-iso") for r in rows]
            write_json(path, records, compress=compress)
    return tmp / naming.format("conn")


@pytest.mark.parametrize("naming", NAMINGS)
@pytest.mark.parametrize("style", ["tsv", "json", "json-iso"])
def test_join_with_companions(tmp_path: Path, naming: str, style: str) -> None:
    conn = write_set(tmp_path, naming, style)
    (tmp_path / naming.format("x509")).write_text("not a companion\n")
    assert READER.sniff(conn, head(conn))
    assert not READER.sniff(tmp_path / naming.format("dns"), head(tmp_path / naming.format("dns")))
    assert [p.name for p in READER.companions(conn)] == [
        naming.format(k) for k in ("dns", "ssl", "http")
    ]
    got = read_all(conn, batch_rows=2)
    rows = got.to_pylist()
    assert [r["dns_query"] for r in rows] == ["kcna.kp", None, None, None, None]
    assert [r["server_name"] for r in rows] == [
        None,
        "www.star.co.kp",
        "naenara.com.kp",
        None,
        None,
    ]
    assert [r["app_label"] for r in rows] == ["dns", "ssl", "http", None, None]
    assert ip_texts(got["src_addr"]) == [
        "10.0.0.1",
        "10.0.0.1",
        "2001:db8::1",
        "10.0.0.1",
        "fe80::1",
    ]
    # ICMP: type in orig_p, code in resp_p → dst_port type*256+code; ICMP over IPv6 is 58
    assert [(r["proto"], r["src_port"], r["dst_port"]) for r in rows] == [
        (17, 40000, 53), (6, 40001, 443), (6, 40002, 80), (1, 0, 8 * 256), (58, 0, 128 * 256)
    ]  # fmt: skip
    assert [r["tcp_flags"] for r in rows] == [0, 0x1B, 0x1E, 0, 0]
    assert [(r["packets"], r["bytes"], r["rev_packets"], r["rev_bytes"]) for r in rows][1] == (
        10, 1020, 8, 4420
    )  # fmt: skip
    assert rows[1]["ts_start"].timestamp() == pytest.approx(1300475168.000001, abs=1e-6)
    assert (rows[1]["ts_end"] - rows[1]["ts_start"]).total_seconds() == pytest.approx(1.25)
    assert rows[2]["ts_end"] == rows[2]["ts_start"]  # unset duration


def test_no_companions_without_the_same_suffix(tmp_path: Path) -> None:
    conn = write_tsv(tmp_path / "conn.2017-05.log", "conn", CONN_FIELDS, CONN_ROWS)
    write_tsv(tmp_path / "dns.log", "dns", DNS_FIELDS, DNS_ROWS)  # other rotation: not ours
    assert READER.companions(conn) == []
    assert read_all(conn)["dns_query"].null_count == len(CONN_ROWS)


def test_payload_bytes_node_name_and_ip_proto(tmp_path: Path) -> None:
    fields = [f for f in CONN_FIELDS if f[0] not in ("orig_ip_bytes", "resp_ip_bytes")]
    fields += [("ip_proto", "count"), ("_node_name", "string")]
    rows = [
        [FIXED_TS, "C1", "10.0.0.1", "0", "10.0.0.2", "0", "unknown_transport", "-", "1", "7",
         "9", "OTH", "-", "1", "1", "47", "worker-1"],
    ]  # fmt: skip
    path = write_tsv(tmp_path / "conn.log", "conn", fields, rows)
    row = read_all(path, exporter="fallback").to_pylist()[0]
    assert (row["proto"], row["bytes"], row["rev_bytes"]) == (47, 7, 9)  # GRE; payload bytes
    assert row["exporter"] == "worker-1"


def test_options_fill_exporter_and_sampling(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "conn.log", "conn", CONN_FIELDS, CONN_ROWS[:1])
    row = read_all(path, exporter="sensor-pyongyang", sampling_rate=4).to_pylist()[0]
    assert (row["exporter"], row["sampling_rate"]) == ("sensor-pyongyang", 4)


def test_concatenated_logs_keep_line_numbers(tmp_path: Path) -> None:
    one = write_tsv(tmp_path / "a", "conn", CONN_FIELDS, CONN_ROWS[:2]).read_text()
    bad = [r.copy() for r in CONN_ROWS[:2]]
    bad[1][3] = "http"
    two = write_tsv(tmp_path / "b", "conn", CONN_FIELDS, bad).read_text()
    path = tmp_path / "conn.log"
    path.write_text(one + two)
    with pytest.raises(InputError) as err:
        read_all(path, batch_rows=1)
    # one: 8 header + 2 records + #close; two: 8 header + 1 record, then the bad one
    assert err.value.where == "line 21"
    assert "id.orig_p" in err.value.problem and "'http'" in err.value.problem


# --- passive DNS: names from dns.log answers ---------------------------------------------

T0 = 1500000000  # 2017-07-14 02:40:00 UTC
PDNS_FIELDS = [*DNS_FIELDS, ("answers", "vector[string]"), ("TTLs", "vector[interval]")]


def _dns(uid: str, ts: float, client: str, query: str, answers: str, ttls: str) -> list[str]:
    return [f"{ts:.6f}", uid, client, "5353", "10.0.0.53", "53", "udp", query, answers, ttls]


PDNS_ROWS = [
    # a CNAME chain: the CNAME target is no address; both addresses get the query name
    _dns("D1", T0, "10.0.0.5", "pool.minexmr.com", "pool.minexmr.com.cdn.example,94.130.12.30,"
         "2a01:4f8::1", "60.000000,300.000000,300.000000"),
    _dns("D2", T0 - 7200, "10.0.0.5", "old.example", "198.51.100.7", "60.000000"),
    _dns("D3", T0 - 100000, "10.0.0.5", "stale.example", "203.0.113.9", "-"),  # no TTL: a day
    _dns("D4", T0, "10.0.0.5", "kcna.kp", "175.45.176.71", "3600.000000"),
    _dns("D5", T0 - 30, "10.0.0.5", "first.example", "192.0.2.50", "600.000000"),
    _dns("D6", T0 - 5, "10.0.0.5", "second.example", "192.0.2.50", "600.000000"),
    _dns("D7", T0 + 100, "10.0.0.5", "later.example", "192.0.2.60", "600.000000"),
    _dns("D8", T0 - 90000, "10.0.0.5", "long.example", "198.51.100.99", "172800.000000"),
    _dns("D9", T0, "10.0.0.5", "-", "192.0.2.70", "60.000000"),  # no query: no name
    _dns("DA", T0, "10.0.0.5", "txt.example", "TXT 11 v=spf1 -all", "60.000000"),
]  # fmt: skip


def _conn(uid: str, ts: float, client: str, server: str, port: str) -> list[str]:
    return [f"{ts:.6f}", uid, client, "50000", server, port, "tcp", "-", "1.0", "10", "20",
            "SF", "ShADadFf", "3", "130", "3", "140"]  # fmt: skip


# (conn row, expected dns_query)
PDNS_CASES = [
    (_conn("K1", T0 + 10, "10.0.0.5", "94.130.12.30", "3333"), "pool.minexmr.com"),
    (_conn("K2", T0 + 10, "10.0.0.5", "2a01:4f8::1", "443"), "pool.minexmr.com"),
    (_conn("K3", T0 + 10, "10.0.0.6", "94.130.12.30", "3333"), None),  # another client
    (_conn("K4", T0 - 1, "10.0.0.5", "94.130.12.30", "3333"), None),  # before the answer
    (_conn("K5", T0 - 7200 + 30, "10.0.0.5", "198.51.100.7", "80"), "old.example"),
    (_conn("K6", T0 + 10, "10.0.0.5", "198.51.100.7", "80"), None),  # past its 60 s TTL
    (_conn("K7", T0 - 100000 + 3600, "10.0.0.5", "203.0.113.9", "80"), "stale.example"),
    (_conn("K8", T0 + 10, "10.0.0.5", "203.0.113.9", "80"), None),  # over a day old
    (_conn("K9", T0 + 10, "10.0.0.5", "198.51.100.99", "80"), None),  # TTL capped at a day
    (_conn("KA", T0 - 10, "10.0.0.5", "192.0.2.50", "80"), "first.example"),
    (_conn("KB", T0, "10.0.0.5", "192.0.2.50", "80"), "second.example"),  # the latest
    (_conn("KC", T0 + 10, "10.0.0.5", "192.0.2.60", "80"), None),  # answered afterwards
    (_conn("KD", T0 + 10, "10.0.0.5", "192.0.2.70", "80"), None),
    (_conn("KE", T0 + 10, "10.0.0.5", "175.45.176.71", "443"), None),  # has SNI
    (_conn("D1", T0, "10.0.0.5", "10.0.0.53", "53"), "pool.minexmr.com"),  # the DNS flow
    (_conn("D9", T0, "10.0.0.5", "10.0.0.53", "53"), None),
]  # fmt: skip


def write_pdns_set(tmp: Path, style: str, naming: str = "{}.log") -> Path:
    logs = [("conn", CONN_FIELDS, [row for row, _ in PDNS_CASES]), ("dns", PDNS_FIELDS, PDNS_ROWS),
            ("ssl", SSL_FIELDS, [[f"{T0 + 10.1:.6f}", "KE", "www.kcna.kp"]])]  # fmt: skip
    for log, fields, rows in logs:
        path = tmp / naming.format(log)
        if style == "tsv":
            write_tsv(path, log, fields, rows, compress=naming.endswith(".gz"))
        else:
            write_json(path, [as_json(fields, r, iso=style == "json-iso") for r in rows])
    return tmp / naming.format("conn")


@pytest.mark.parametrize("style", ["tsv", "json", "json-iso"])
def test_passive_dns_names_unnamed_flows(tmp_path: Path, style: str) -> None:
    conn = write_pdns_set(tmp_path, style)
    rows = read_all(conn, batch_rows=3).to_pylist()
    assert [r["dns_query"] for r in rows] == [name for _, name in PDNS_CASES]
    by_dst = {(r["dst_port"], r["ts_start"].timestamp()): r for r in rows}
    sni = by_dst[(443, T0 + 10)]
    assert (sni["server_name"], sni["dns_query"]) == ("www.kcna.kp", None)
    assert sum(r["server_name"] is not None for r in rows) == 1


def test_passive_dns_needs_answers_from_the_same_rotation(tmp_path: Path) -> None:
    conn = write_pdns_set(tmp_path, "tsv", naming="{}.00:00:00-01:00:00.log.gz")
    first = read_all(conn).to_pylist()[0]
    assert first["dns_query"] == "pool.minexmr.com"
    (tmp_path / "dns.00:00:00-01:00:00.log.gz").unlink()
    assert read_all(conn)["dns_query"].null_count == len(PDNS_CASES)


def test_passive_dns_honours_the_set_separator(tmp_path: Path) -> None:
    conn = write_pdns_set(tmp_path, "tsv")
    dns = tmp_path / "dns.log"
    text = dns.read_text().replace("#set_separator\t,", "#set_separator\t\\x7c")
    text = text.replace("example,94.130.12.30,2a01:4f8::1", "example|94.130.12.30|2a01:4f8::1")
    dns.write_text(text.replace("0,300.000000,300.0", "0|300.000000|300.0"))
    assert "#set_separator\t\\x7c" in dns.read_text()
    assert [r["dns_query"] for r in read_all(conn).to_pylist()][:2] == ["pool.minexmr.com"] * 2


@pytest.mark.parametrize(
    ("style", "old", "new", "where", "words"),
    [
        ("tsv", "\t60.000000\n", "\tsixty\n", "line 10", ["TTLs", "'sixty'"]),
        ("tsv", "\t10.0.0.5\t5353\t", "\t10.0.0.500\t5353\t", "line 9", ["id.orig_h"]),
        ("json", '"answers": ["198.51.100.7"]', '"answers": "198.51.100.7"', "line 2",
         ["answers"]),
    ],
    ids=["ttl", "client", "json-answers"],
)  # fmt: skip
def test_bad_answers_name_the_dns_log_line(tmp_path: Path, style: str, old: str, new: str,
                                           where: str, words: list[str]) -> None:  # fmt: skip
    conn = write_pdns_set(tmp_path, style)
    dns = tmp_path / "dns.log"
    assert old in dns.read_text()
    dns.write_text(dns.read_text().replace(old, new, 1))
    with pytest.raises(InputError) as err:
        read_all(conn)
    assert (err.value.path, err.value.where) == (str(dns), where), err.value
    for w in words:
        assert w in err.value.problem, err.value


# --- errors -------------------------------------------------------------------------------


def _tsv_text(rows: list[list[str]]) -> str:
    return "\n".join("\t".join(r) for r in rows)


@pytest.mark.parametrize(
    ("mutate", "where", "words"),
    [
        (lambda t: t[: t.rindex("\tOTH\t")], "line 13", ["truncated", "expected 17", "found 11"]),
        (lambda t: t.replace("\t118\n", "\t118\textra\n"), "line 9", ["expected 17", "found 18"]),
        (lambda t: t.replace("\t40001\t", "\tpop\t"), "line 10", ["id.orig_p", "'pop'"]),
        (lambda t: t.replace("\t40002\t", "\t70000\t"), "line 11", ["id.orig_p", "70000"]),
        (lambda t: t.replace("2001:db8::80", "2001:db8::zz"), "line 11", ["id.resp_h", "zz"]),
        (lambda t: t.replace("\tid.orig_h\t", "\tsrc\t"), "line 7", ["id.orig_h", "not a Zeek"]),
        (lambda t: t.replace("\torig_pkts\t", "\tpkts\t").replace("\torig_ip_bytes\t", "\tb\t")
         .replace("\torig_bytes\t", "\tc\t"), "line 7", ["orig_pkts"]),
        (lambda t: t.replace("1300475170\t", "1e300\t"), "line 12", ["ts"]),
        (lambda t: t.replace("\ttcp\t", "\tsctp-ish\t", 1), "line 10", ["proto", "sctp-ish"]),
    ],
    ids=["truncated", "extra-field", "port-text", "port-range", "address", "fields",
         "no-counters", "ts-range", "proto"],
)  # fmt: skip
def test_tsv_errors_name_file_and_line(
    tmp_path: Path, mutate: Any, where: str, words: list[str]
) -> None:
    good = write_tsv(tmp_path / "good", "conn", CONN_FIELDS, CONN_ROWS).read_text()
    good = good.replace("#close\t2017-05-01-01-00-00\n", "")
    path = tmp_path / "conn.log"
    path.write_text(mutate(good))
    with pytest.raises(InputError) as err:
        read_all(path, batch_rows=2)
    assert err.value.path == str(path)
    assert err.value.where == where, err.value
    for w in words:
        assert w in err.value.problem, err.value


def test_json_errors_name_the_line(tmp_path: Path) -> None:
    records = [as_json(CONN_FIELDS, r, iso=False) for r in CONN_ROWS]
    records[2]["id.resp_p"] = "eighty"
    path = write_json(tmp_path / "conn.log", records)
    with pytest.raises(InputError) as err:
        read_all(path)
    assert (err.value.where, err.value.path) == ("line 3", str(path))
    assert "id.resp_p" in err.value.problem
    records[2]["id.resp_p"] = 80
    path = write_json(tmp_path / "conn.log", records)
    path.write_text(path.read_text().replace('"C4",', '"C4",,', 1))  # broken JSON on line 4
    with pytest.raises(InputError) as err:
        read_all(path)
    assert err.value.where == "line 4"
    assert "not a JSON object" in err.value.problem


def test_other_zeek_logs_and_non_zeek_files_are_refused(tmp_path: Path) -> None:
    dns = write_tsv(tmp_path / "dns.log", "dns", DNS_FIELDS, DNS_ROWS)
    with pytest.raises(InputError, match=r"not a Zeek conn\.log"):
        read_all(dns)
    plain = tmp_path / "conn.csv"
    plain.write_text("ts,sa,da\n1,2,3\n")
    assert not READER.sniff(plain, head(plain))
    with pytest.raises(InputError, match="#separator/#fields header or JSON"):
        read_all(plain)
    gz = tmp_path / "conn.log.gz"
    gz.write_bytes(gzip.compress(b"#separator \\x09\n#fields\tts\n" * 50)[:40])  # cut short
    with pytest.raises(InputError):
        read_all(gz)


# --- properties: bad bytes raise InputError only -------------------------------------------

BYTES_SETTINGS = settings(max_examples=150, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip


def _read_or_input_error(path: Path) -> None:
    try:
        for table in READER.read(path, ReadOptions(batch_rows=4)):
            assert table.num_rows <= 4
    except InputError as exc:
        assert exc.path is not None and Path(exc.path).parent == path.parent  # conn or companion


@BYTES_SETTINGS
@given(data=st.binary(max_size=2048), prefix=st.sampled_from([b"", b"#", b"{", b"\x1f\x8b"]))
def test_arbitrary_bytes_raise_input_error_only(tmp_path: Path, data: bytes, prefix: bytes) -> None:
    path = tmp_path / "conn.log"
    path.write_bytes(prefix + data)
    _read_or_input_error(path)


def _mutations() -> st.SearchStrategy[list[tuple[str, int, int]]]:
    op = st.tuples(st.sampled_from(["flip", "cut", "dup", "insert"]), st.integers(0, 10**6),
                   st.integers(0, 255))  # fmt: skip
    return st.lists(op, min_size=1, max_size=4)


def mutate(data: bytes, ops: list[tuple[str, int, int]]) -> bytes:
    buf = bytearray(data)
    for kind, pos, value in ops:
        if not buf:
            break
        i = pos % len(buf)
        if kind == "flip":
            buf[i] = value
        elif kind == "cut":
            del buf[i:]
        elif kind == "dup":
            buf[i:i] = buf[i : i + value]
        else:
            buf.insert(i, value)
    return bytes(buf)


@BYTES_SETTINGS
@given(
    ops=_mutations(),
    style=st.sampled_from(["tsv", "json", "json-iso", "tsv-gz"]),
    victim=st.sampled_from(["conn", "conn", "conn", "dns", "ssl", "http"]),
)
def test_mutated_logs_raise_input_error_only(
    tmp_path: Path, ops: list[tuple[str, int, int]], style: str, victim: str
) -> None:
    src = tmp_path / style
    if not src.exists():
        src.mkdir()
        write_set(src, "{}.log.gz" if style == "tsv-gz" else "{}.log", style.removesuffix("-gz"))
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    for old in run.iterdir():
        old.unlink()
    for path in src.iterdir():
        data = path.read_bytes()
        (run / path.name).write_bytes(mutate(data, ops) if path.name.startswith(victim) else data)
    _read_or_input_error(next(run.glob("conn.log*")))


@BYTES_SETTINGS
@given(ops=_mutations(), style=st.sampled_from(["tsv", "json"]))
def test_mutated_dns_answers_raise_input_error_only(
    tmp_path: Path, ops: list[tuple[str, int, int]], style: str
) -> None:
    src = tmp_path / f"pdns-{style}"
    if not src.exists():
        src.mkdir()
        write_pdns_set(src, style)
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    for path in src.iterdir():
        data = path.read_bytes()
        (run / path.name).write_bytes(mutate(data, ops) if path.name == "dns.log" else data)
    _read_or_input_error(run / "conn.log")


# --- end to end -----------------------------------------------------------------------------


def test_ingest_and_query(tmp_path: Path) -> None:
    from rogueflow.analyze.engine import DuckDBEngine
    from rogueflow.ops import ingest_paths
    from rogueflow.workspace import Workspace

    (tmp_path / "logs").mkdir()
    conn = write_set(tmp_path / "logs", "{}.log", "tsv")
    ws = Workspace(tmp_path / "ws")
    results = ingest_paths(ws, [conn.parent])  # the directory: dns/ssl/http come as companions
    assert [r.rows for r in results] == [len(CONN_ROWS)]
    eng = DuckDBEngine(ws)
    try:
        assert eng.sql("select count(*) from flows").fetchall() == [(len(CONN_ROWS),)]
        got = eng.sql(
            "select dns_query, server_name, source_format from flows where dns_query is not null"
        ).fetchall()
        assert got == [("kcna.kp", None, "zeek-conn")]
    finally:
        eng.close()


def test_passive_dns_name_is_enriched(tmp_path: Path) -> None:
    from rogueflow.analyze.engine import DuckDBEngine
    from rogueflow.ops import ingest_paths
    from rogueflow.workspace import Workspace

    (tmp_path / "logs").mkdir()
    conn = write_pdns_set(tmp_path / "logs", "tsv")
    ws = Workspace(tmp_path / "ws")
    ingest_paths(ws, [conn.parent])
    eng = DuckDBEngine(ws)
    try:
        got = eng.sql(
            "select dns_query, category from flows where dst_port = 3333 "
            "order by src_addr, ts_start"
        ).fetchall()
    finally:
        eng.close()
    # to the pool: before the answer, after it (named, so classified), from another client
    unnamed = (None, "unclassified")
    assert got == [unnamed, ("pool.minexmr.com", "crypto.mining"), unnamed]
