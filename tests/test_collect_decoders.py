"""Golden decoder tests on real exporter datagrams (../shared/data), and the readers.

References: nfcapd decoding the very same datagrams (sent over loopback) for NetFlow
and IPFIX; pmacct's expected JSON for its IPFIX/NFv9 captures; the values akvorado's
own tests expect for its sFlow captures.
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest
from click.testing import CliRunner

from rogueflow import addr
from rogueflow.cli.main import cli
from rogueflow.collect.decoder import NO_TEMPLATE, Decoder
from rogueflow.collect.pcapsource import datagrams
from tests import collectlab as lab
from tests.conftest import require_tool


def decode(*pcaps: Path, **kw: object) -> tuple[Decoder, pa.Table]:
    dec = Decoder(**kw)  # type: ignore[arg-type]
    for p in pcaps:
        for ts, exporter, payload in datagrams(p):
            dec.feed(payload, exporter, ts)
    table = dec.finish()
    assert table is not None
    return dec, table


AKV = ("akvorado-flows",)
NFCAPD_CASES = {
    "v5": ["netflow_nfv5.pcap"],
    "v9": ["netflow_template.pcap", "netflow_data.pcap"],
}
# Not compared with nfcapd 1.7.1, which differs on purpose-built corner cases:
# netflow_data+templates (data before its template in one datagram: nfcapd drops the
# 11 records, we hold and decode them), netflow_icmp-* and ipfixprobe (ICMP type/code).


@pytest.mark.parametrize("case", sorted(NFCAPD_CASES))
def test_akvorado_datagrams_decode_as_nfcapd_does(tmp_path: Path, shared: Path, case: str) -> None:
    require_tool("nfcapd", "nfdump")
    pcaps = [shared / "akvorado-flows" / f for f in NFCAPD_CASES[case]]
    dec, table = decode(*pcaps)
    port = lab.free_udp_port()
    with lab.nfcapd(tmp_path / "nf", port), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for p in pcaps:
            for _, _, payload in datagrams(p):
                s.sendto(payload, ("127.0.0.1", port))
        time.sleep(0.5)
    theirs = lab.nfcapd_flows(tmp_path / "nf", swap_times=False)
    rate = table.column("sampling_rate").to_numpy()
    # nfcapd multiplies counters by the announced sampling rate; we store them as sent
    scaled = table.set_column(
        table.schema.get_field_index("packets"),
        "packets",
        pa.array(table.column("packets").to_numpy() * rate),
    )
    scaled = scaled.set_column(
        scaled.schema.get_field_index("bytes"),
        "bytes",
        pa.array(table.column("bytes").to_numpy() * rate),
    )
    mine = lab.rows(scaled)
    assert mine == theirs
    assert sum(dec.stats.dropped().values()) == 0


def test_akvorado_counts(shared: Path) -> None:
    d = shared / "akvorado-flows"
    assert decode(d / "netflow_nfv5.pcap")[1].num_rows == 29
    _, t = decode(d / "netflow_data+templates.pcap")
    assert t.num_rows == 21  # 11 records arrive before their template in the datagram
    assert set(t.column("sampling_rate").to_pylist()) == {100}  # options: samplingInterval
    _, t = decode(d / "netflow_icmp-template.pcap", d / "netflow_icmp-data.pcap")
    icmp = {(r["proto"], r["dst_port"]) for r in t.to_pylist()}
    assert (58, 128 * 256) in icmp and (1, 8 * 256) in icmp  # echo requests: type*256+code


def test_sflow_samples(shared: Path) -> None:
    d = shared / "akvorado-flows"
    dec, t = decode(d / "sflow_data-sflow-ipv4-data.pcap")
    row = t.to_pylist()[0]
    assert addr.format_one(row["src_addr"]) == "50.50.50.50"
    assert addr.format_one(row["dst_addr"]) == "51.51.51.51"
    assert (row["src_port"], row["dst_port"], row["proto"]) == (46622, 58631, 17)
    assert (row["packets"], row["bytes"], row["sampling_rate"]) == (1, 1344, 256)
    dec, t = decode(d / "sflow_data-1140.pcap")
    assert t.num_rows == 5 and set(t.column("sampling_rate").to_pylist()) == {1024}
    dec, t = decode(shared / "ndpi" / "pcap" / "sflow.pcap")
    assert t.num_rows == 1
    assert dec.stats.total("counter_samples") == 8  # counted, not turned into flows


def test_v9_data_without_template_is_held_then_dropped(shared: Path) -> None:
    dec, _ = decode(shared / "akvorado-flows" / "netflow_nfv5.pcap")  # a table to start
    dec = Decoder()
    for ts, exporter, payload in datagrams(shared / "ndpi" / "pcap" / "netflowv9.pcap"):
        dec.feed(payload, exporter, ts)
    assert dec.stats.held_sets == 23 and dec.flush() is None
    dec.expire(dec.now + 31)  # past --hold-seconds (30)
    assert dec.stats.held_sets == 0
    assert dec.stats.dropped() == Counter({NO_TEMPLATE: 23})


def test_v9_data_before_template_is_decoded_when_it_comes(shared: Path) -> None:
    d = shared / "akvorado-flows"
    dec, t = decode(d / "netflow_data.pcap", d / "netflow_template.pcap")
    assert t.num_rows == 4 and not dec.stats.dropped()
    _, ref = decode(d / "netflow_template.pcap", d / "netflow_data.pcap")
    assert lab.rows(t) == lab.rows(ref)


def test_held_data_expires_before_late_template(shared: Path) -> None:
    d = shared / "akvorado-flows"
    dec = Decoder(hold_seconds=5)
    for ts, exporter, payload in datagrams(d / "netflow_data.pcap"):
        dec.feed(payload, exporter, ts)
    dec.expire(dec.now + 6)
    for _, exporter, payload in datagrams(d / "netflow_template.pcap"):
        dec.feed(payload, exporter, dec.now)
    assert dec.finish() is None
    assert dec.stats.dropped()[NO_TEMPLATE] == 1


def _pmacct_expected(path: Path) -> Counter[tuple[str, str, int, int, str]]:
    out: Counter[tuple[str, str, int, int, str]] = Counter()
    for line in path.read_text().splitlines():
        j = json.loads(line)
        key = (j["ip_src"], j["ip_dst"], j["port_src"], j["port_dst"], j["ip_proto"])
        out[(*key, "p")] += j["packets"]  # type: ignore[index]
        out[(*key, "b")] += j["bytes"]  # type: ignore[index]
    return out


@pytest.mark.parametrize(
    "test",
    [
        "100-IPFIXv10-CISCO",
        "101-NFv9-CISCO-cust_primitives",
        "111-IPFIXv10-NFv9-IPv6-IPv4-mix_sources",
    ],
)
def test_pmacct_expected_json(shared: Path, test: str) -> None:
    d = shared / "pmacct-ipfix" / test
    dec, t = decode(*sorted(d.glob("traffic-*.pcap")))
    names = {6: "tcp", 17: "udp", 1: "icmp", 58: "ipv6-icmp"}
    got: Counter[tuple[str, str, int, int, str]] = Counter()
    for r in t.to_pylist():
        key = (
            addr.format_one(r["src_addr"]),
            addr.format_one(r["dst_addr"]),
            r["src_port"],
            r["dst_port"],
            names.get(r["proto"], str(r["proto"])),
        )
        got[(*key, "p")] += r["packets"]  # type: ignore[index]
        got[(*key, "b")] += r["bytes"]  # type: ignore[index]
    assert got == _pmacct_expected(d / "output-flow-00.json")
    assert dec.stats.malformed() == 0


def _sequence_gap(payload: bytes, offset: int, fmt: str, bump: int) -> bytes:
    value = struct.unpack_from(fmt, payload, offset)[0]
    out = bytearray(payload)
    struct.pack_into(fmt, out, offset, (value + bump) & 0xFFFFFFFF)
    return bytes(out)


def test_sequence_losses_are_counted(shared: Path) -> None:
    d = shared / "akvorado-flows"
    ((_, _, v5),) = datagrams(d / "netflow_nfv5.pcap")
    ((_, _, tpl),) = datagrams(d / "netflow_template.pcap")
    ((_, _, ipfix_t),) = datagrams(d / "netflow_ipfixprobe-templates.pcap")
    ((_, _, ipfix_d),) = datagrams(d / "netflow_ipfixprobe-data.pcap")
    dec = Decoder()
    dec.feed(v5, "a", 0)
    dec.feed(_sequence_gap(v5, 16, "!I", 29 + 7), "a", 0)  # 7 records missing
    dec.feed(tpl, "b", 0)
    dec.feed(_sequence_gap(tpl, 12, "!I", 4), "b", 0)  # 3 datagrams missing
    dec.feed(ipfix_t, "c", 0)
    dec.feed(ipfix_d, "c", 0)
    dec.feed(_sequence_gap(ipfix_d, 8, "!I", 4 + 5), "c", 0)  # 5 records missing
    dec.feed(_sequence_gap(ipfix_d, 8, "!I", -100), "c", 0)  # restart: not a loss
    assert dec.stats.of("a").lost_records == 7
    assert dec.stats.of("b").lost_datagrams == 3
    assert dec.stats.of("c").lost_records == 5
    assert dec.stats.of("c").sequence_resets == 1


def test_ingest_netflow_pcap_and_ipfix_file(tmp_path: Path, shared: Path) -> None:
    d = shared / "akvorado-flows"
    pcaps = [d / "netflow_ipfixprobe-templates.pcap", d / "netflow_ipfixprobe-data.pcap"]
    ipfix = tmp_path / "export.ipfix"
    ipfix.write_bytes(b"".join(p for pcap in pcaps for _, _, p in datagrams(pcap)))
    ws = str(tmp_path / "ws")
    r = CliRunner().invoke(cli, ["-w", ws, "ingest", str(ipfix)])  # detected
    assert r.exit_code == 0, r.output
    assert "[ipfix-file] 4 flows" in r.output
    pm = shared / "pmacct-ipfix" / "100-IPFIXv10-CISCO" / "traffic-00.pcap"
    r = CliRunner().invoke(cli, ["-w", ws, "ingest", str(pm), "--format", "netflow-pcap"])
    assert r.exit_code == 0, r.output
    _, ref = decode(pm)
    assert f"[netflow-pcap] {ref.num_rows} flows" in r.output
    bad = tmp_path / "bad.ipfix"
    bad.write_bytes(ipfix.read_bytes()[:-7])
    r = CliRunner().invoke(cli, ["-w", ws, "ingest", str(bad), "--format", "ipfix-file"])
    assert r.exit_code == 2 and "runs past the end" in r.output
