"""pcap/pcapng reader: nDPI golden captures, tshark ground truth, the structural
validator, crafted packets for ICMP and TCP flags, and damaged or arbitrary bytes
that raise only InputError."""

from __future__ import annotations

import gzip
import re
import struct
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.errors import ConfigError, InputError, MissingDependency
from rogueflow.ingest import pcapcheck
from rogueflow.ingest.base import ReadOptions
from rogueflow.ingest.pcap import PcapReader, icmp_code
from rogueflow.ingest.pipeline import detect

CRYPTO_OR_TOR = ("Mining", "BITCOIN", "Monero", "ETHEREUM", "Nano", "Tor")
ETH_HEADER = 14

# --- helpers -------------------------------------------------------------------------


def read_all(path: Path, **extra: str) -> pa.Table:
    tables = list(PcapReader().read(path, ReadOptions(extra=extra)))
    assert tables, f"no flows from {path}"
    return pa.concat_tables(tables)


def flows(table: pa.Table) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = table.to_pylist()
    for r in rows:
        r["src"] = addr.format_one(r["src_addr"])
        r["dst"] = addr.format_one(r["dst_addr"])
    return rows


PROTO_NAMES = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMPV6"}
OUT_LINE = re.compile(
    r"^\t\d+\t(?P<proto>\w+) (?P<a>\[[^\]]+\]|[\d.]+):(?P<ap>\d+) (?:<->|->) "
    r"(?P<b>\[[^\]]+\]|[\d.]+):(?P<bp>\d+) .*?\[proto: [\d.]+/(?P<label>[^\]]+)\]"
)
OUT_SNI = re.compile(r"\[Hostname/SNI: ([^\]]+)\]")


def ndpi_expected(out: Path) -> dict[tuple[str, str, int, str, int], dict[str, str | None]]:
    """Per-flow lines of an ndpiReader .out file: 5-tuple -> label and Hostname/SNI."""
    expected = {}
    for line in out.read_text().splitlines():
        m = OUT_LINE.match(line)
        if m:
            key = (m["proto"], m["a"].strip("[]"), int(m["ap"]), m["b"].strip("[]"), int(m["bp"]))
            sni = OUT_SNI.search(line)
            expected[key] = {"label": m["label"], "name": sni.group(1) if sni else None}
    return expected


def five_tuple(r: dict[str, Any]) -> tuple[str, str, int, str, int]:
    return (
        PROTO_NAMES.get(r["proto"], str(r["proto"])),
        r["src"],
        r["src_port"],
        r["dst"],
        r["dst_port"],
    )


# Crafted packets, so the tests know every byte of the capture.


def csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\0"
    s: int = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF


def ipv4(src: str, dst: str, proto: int, payload: bytes) -> bytes:
    h = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(payload),
        1,
        0,
        64,
        proto,
        0,
        addr.parse_one(src)[12:],
        addr.parse_one(dst)[12:],
    )
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload


def ipv6(src: str, dst: str, nxt: int, payload: bytes) -> bytes:
    return (
        struct.pack(
            "!IHBB16s16s", 6 << 28, len(payload), nxt, 64, addr.parse_one(src), addr.parse_one(dst)
        )
        + payload
    )


def eth(ip: bytes, vlan: int | None = None) -> bytes:
    macs = bytes.fromhex("001122334455") + bytes.fromhex("66778899aabb")
    ethertype = b"\x86\xdd" if ip[0] >> 4 == 6 else b"\x08\x00"
    if vlan is not None:
        return macs + b"\x81\x00" + struct.pack("!H", vlan) + ethertype + ip
    return macs + ethertype + ip


def icmp(t: int, c: int) -> bytes:
    body = struct.pack("!BBHHH", t, c, 0, 7, 1) + b"rogueflow"
    return body[:2] + struct.pack("!H", csum(body)) + body[4:]


def tcp(sport: int, dport: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 0x50, flags, 8192, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def pcap_bytes(
    packets: list[tuple[float, bytes]],
    *,
    order: str = "<",
    nanos: bool = False,
    modified: bool = False,
    linktype: int = 1,
) -> bytes:
    magic = 0xA1B2CD34 if modified else (0xA1B23C4D if nanos else 0xA1B2C3D4)
    out = [struct.pack(order + "IHHiIII", magic, 2, 4, 0, 0, 65535, linktype)]
    for ts, data in packets:
        frac = round((ts % 1) * (1e9 if nanos else 1e6))
        out.append(struct.pack(order + "IIII", int(ts), frac, len(data), len(data)))
        if modified:
            out.append(struct.pack(order + "iHBx", 2, 0x0800, 0))
        out.append(data)
    return b"".join(out)


def pcapng_block(order: str, btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    total = 12 + len(body)
    return struct.pack(order + "II", btype, total) + body + struct.pack(order + "I", total)


def pcapng_bytes(packets: list[tuple[float, bytes]], *, order: str = "<") -> bytes:
    out = [
        pcapng_block(order, 0x0A0D0D0A, struct.pack(order + "IHHq", 0x1A2B3C4D, 1, 0, -1)),
        pcapng_block(order, 1, struct.pack(order + "HHI", 1, 0, 0)),
        pcapng_block(order, 4, b"\0\0\0\0"),  # a name resolution block, skipped
    ]
    for i, (ts, data) in enumerate(packets):
        if i % 3 == 2:  # some Simple Packet Blocks (no timestamp) among the EPBs
            out.append(pcapng_block(order, 3, struct.pack(order + "I", len(data)) + data))
            continue
        us = round(ts * 1e6)
        head = struct.pack(order + "IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(data), len(data))
        out.append(pcapng_block(order, 6, head + data))
    return b"".join(out)


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


def pcap_record_offsets(data: bytes) -> list[int]:
    """Offsets of the record headers of a classic little-endian µs pcap (test oracle)."""
    assert data[:4] == b"\xd4\xc3\xb2\xa1"
    offs, off = [], 24
    while off < len(data):
        offs.append(off)
        off += 16 + struct.unpack_from("<I", data, off + 8)[0]
    return offs


def pcapng_block_offsets(data: bytes) -> list[tuple[int, int]]:
    """(offset, type) of every block of a little-endian pcapng (test oracle)."""
    blocks, off = [], 0
    while off < len(data):
        btype, total = struct.unpack_from("<II", data, off)
        blocks.append((off, btype))
        off += total
    return blocks


# --- sniffing and the structural validator ---------------------------------------------


def test_sniff_accepts_captures_only(tmp_path: Path) -> None:
    reader = PcapReader()
    pkt = [(1.0, eth(ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0))))]
    for data in (
        pcap_bytes(pkt),
        pcap_bytes(pkt, order=">", nanos=True),
        pcapng_bytes(pkt),
        pcapng_bytes(pkt, order=">"),
        pcap_bytes(pkt, modified=True),
    ):
        assert reader.sniff(tmp_path, data[:4096])
    for data in (
        b"",
        b"ts,src,dst\n1,2,3\n",
        b"PAR1" + bytes(60),
        b"\n\r\r\nnot pcapng at all",
        b"\xd4\xc3\xb2\xa1\x09\x00" + bytes(18),
        bytes(64),
    ):
        assert not reader.sniff(tmp_path, data)


def test_detect_picks_pcap(tmp_path: Path) -> None:
    data = pcapng_bytes([(1.0, eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x"))))])
    assert detect(write(tmp_path, "a.pcapng", data)).name == "pcap"
    assert detect(write(tmp_path, "b.pcap", pcap_bytes([]))).name == "pcap"


@pytest.mark.parametrize(
    "kw", [{}, {"order": ">"}, {"nanos": True}, {"order": ">", "nanos": True}, {"modified": True}]
)
def test_check_pcap_variants(tmp_path: Path, kw: dict[str, Any]) -> None:
    pkts = [(1.5 + i, eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x" * i)))) for i in range(7)]
    s = pcapcheck.check(write(tmp_path, "v.pcap", pcap_bytes(pkts, **kw)))
    assert (s.kind, s.packets, s.linktypes) == ("pcap", 7, [1])
    assert s.time_unit == ("ns" if kw.get("nanos") else "us")


@pytest.mark.parametrize("order", ["<", ">"])
def test_check_pcapng_both_byte_orders(tmp_path: Path, order: str) -> None:
    pkts = [(2.0 + i, eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"y" * i)))) for i in range(8)]
    data = pcapng_bytes(pkts, order=order) + pcapng_bytes(pkts[:2], order="<")  # two sections
    s = pcapcheck.check(write(tmp_path, "v.pcapng", data))
    assert (s.kind, s.packets, s.linktypes) == ("pcapng", 10, [1, 1])


def test_check_names_packet_and_offset_of_a_cut_pcap(tmp_path: Path) -> None:
    pkt = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"z" * 40)))
    pkts = [(1.0 + i, pkt) for i in range(5)]
    data = pcap_bytes(pkts)
    offs = pcap_record_offsets(data)
    for cut, n in ((offs[3] + 5, 4), (offs[3] + 16 + 10, 4), (offs[1] + 1, 2)):
        with pytest.raises(InputError) as ei:
            pcapcheck.check(write(tmp_path, "cut.pcap", data[:cut]))
        assert ei.value.where == f"packet {n} at byte offset {offs[n - 1]}"
        assert "cut short" in ei.value.problem and str(ei.value.path).endswith("cut.pcap")
    # cut exactly between records: a shorter, valid capture
    assert pcapcheck.check(write(tmp_path, "ok.pcap", data[: offs[3]])).packets == 3
    with pytest.raises(InputError, match="file header truncated"):
        pcapcheck.check(write(tmp_path, "h.pcap", data[:20]))
    with pytest.raises(InputError, match="empty file"):
        pcapcheck.check(write(tmp_path, "e.pcap", b""))


def test_check_rejects_corrupt_headers(tmp_path: Path) -> None:
    pkts = [(1.0 + i, eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"w" * 9)))) for i in range(4)]
    data = bytearray(pcap_bytes(pkts))
    off = pcap_record_offsets(bytes(data))[2]
    data[off + 8 : off + 12] = struct.pack("<I", 300_000)
    with pytest.raises(InputError, match="exceeds the maximum") as ei:
        pcapcheck.check(write(tmp_path, "big.pcap", bytes(data)))
    assert ei.value.where == f"packet 3 at byte offset {off}"

    ng = pcapng_bytes(pkts)
    blocks = pcapng_block_offsets(ng)
    epb = [o for o, t in blocks if t == 6][1]  # the second packet
    bad = bytearray(ng)
    bad[epb + 4 : epb + 8] = struct.pack("<I", struct.unpack_from("<I", ng, epb + 4)[0] + 4)
    with pytest.raises(InputError) as ei:
        pcapcheck.check(write(tmp_path, "t.pcapng", bytes(bad)))
    assert ei.value.where == f"packet 2 at byte offset {epb}"
    bad = bytearray(ng)
    bad[epb + 8 : epb + 12] = struct.pack("<I", 3)  # interface 3 of 1
    with pytest.raises(InputError, match="interface 3"):
        pcapcheck.check(write(tmp_path, "i.pcapng", bytes(bad)))
    bad = bytearray(ng)
    bad[epb + 20 : epb + 24] = struct.pack("<I", 5000)  # captured length beyond the block
    with pytest.raises(InputError, match="does not fit"):
        pcapcheck.check(write(tmp_path, "c.pcapng", bytes(bad)))
    with pytest.raises(InputError, match="header but 0 in the trailer") as ei:  # SHB cut to 12
        pcapcheck.check(write(tmp_path, "s.pcapng", ng[:12] + ng[blocks[1][0] :]))
    assert ei.value.where == "packet 1 at byte offset 0"


def test_check_rejects_seconds_libpcap_reads_as_negative(tmp_path: Path) -> None:
    pkt = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"v")))
    data = bytearray(pcap_bytes([(5.0, pkt), (6.0, pkt)]))
    off = pcap_record_offsets(bytes(data))[1]
    data[off : off + 4] = struct.pack("<I", 1 << 31)
    with pytest.raises(InputError, match="before 1970") as ei:
        pcapcheck.check(write(tmp_path, "neg.pcap", bytes(data)))
    assert ei.value.where == f"packet 2 at byte offset {off}"


def test_reader_rejects_unrepresentable_pcapng_time(tmp_path: Path) -> None:
    # pcapng carries 64-bit timestamps; one past year 9999 fits no engine's timestamp type
    pkt = eth(ipv4("10.0.0.1", "10.0.0.2", 17, udp(1, 2, b"x")))
    us = 253_402_300_800_000_000
    data = b"".join(
        [
            pcapng_block("<", 0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)),
            pcapng_block("<", 1, struct.pack("<HHI", 1, 0, 0)),
            pcapng_block(
                "<",
                6,
                struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(pkt), len(pkt)) + pkt,
            ),
        ]
    )
    with pytest.raises(InputError, match="timestamps out of range") as ei:
        list(PcapReader().read(write(tmp_path, "far.pcapng", data), ReadOptions()))
    assert ei.value.where == "flow 1 (10.0.0.1 -> 10.0.0.2)"


def test_check_reads_headers_only(tmp_path: Path) -> None:
    # 200k records of 400 bytes (80 MB): a payload-reading walk in Python would take far longer
    rec = struct.pack("<IIII", 1, 0, 400, 400) + bytes(400)
    p = tmp_path / "large.pcap"
    with open(p, "wb") as fh:
        fh.write(pcap_bytes([]))
        for _ in range(200):
            fh.write(rec * 1000)
    t = time.perf_counter()
    assert pcapcheck.check(p).packets == 200_000
    assert time.perf_counter() - t < 5


# --- crafted captures through nfstream --------------------------------------------------


def test_icmp_type_and_code_become_dst_port(tmp_path: Path) -> None:
    pkts = [
        (100.25, eth(ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0)))),
        (100.5, eth(ipv4("10.0.0.2", "10.0.0.1", 1, icmp(0, 0)))),
        (101.0, eth(ipv4("10.0.0.3", "10.0.0.1", 1, icmp(3, 3)), vlan=42)),
        (102.0, eth(ipv6("2001:db8::1", "2001:db8::2", 58, icmp(128, 0)))),
        (103.0, eth(ipv4("10.0.0.1", "10.0.0.9", 17, udp(5000, 53, b"\0" * 12)))),
    ]
    table = read_all(write(tmp_path, "i.pcap", pcap_bytes(pkts)))
    got = {(r["src"], r["dst"]): r for r in flows(table)}
    echo = got[("10.0.0.1", "10.0.0.2")]
    assert (echo["proto"], echo["src_port"], echo["dst_port"]) == (1, 0, 8 * 256)
    assert (echo["packets"], echo["rev_packets"]) == (1, 1)
    assert echo["bytes"] == len(ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0)))  # layer 3
    assert echo["ts_start"].timestamp() == 100.25 and echo["ts_end"].timestamp() == 100.5
    assert got[("10.0.0.3", "10.0.0.1")]["dst_port"] == 3 * 256 + 3  # VLAN-tagged
    assert got[("2001:db8::1", "2001:db8::2")]["dst_port"] == 128 * 256
    dns = got[("10.0.0.1", "10.0.0.9")]
    assert (dns["dst_port"], dns["proto"]) == (53, 17)


def test_icmp_code_parser() -> None:
    v4 = ipv4("1.2.3.4", "5.6.7.8", 1, icmp(11, 1))
    assert icmp_code(v4) == 11 * 256 + 1
    frag = bytearray(v4)
    frag[6:8] = b"\x00\x10"  # a later fragment carries no ICMP header
    assert icmp_code(bytes(frag)) is None
    hop = bytes([58, 0]) + bytes(6)  # hop-by-hop options, then ICMPv6
    assert icmp_code(ipv6("::1", "::2", 0, hop + icmp(135, 0))) == 135 * 256
    assert icmp_code(ipv4("1.2.3.4", "5.6.7.8", 17, udp(1, 2, b""))) is None
    assert icmp_code(b"") is None and icmp_code(b"\x45") is None


def test_tcp_flags_are_or_of_both_directions(tmp_path: Path) -> None:
    a, b = "192.0.2.1", "198.51.100.7"
    pkts = [
        (10.0, eth(ipv4(a, b, 6, tcp(40000, 8333, 0x02)))),  # SYN
        (10.1, eth(ipv4(b, a, 6, tcp(8333, 40000, 0x12)))),  # SYN ACK
        (10.2, eth(ipv4(a, b, 6, tcp(40000, 8333, 0x18, b"version")))),  # PSH ACK
        (10.3, eth(ipv4(b, a, 6, tcp(8333, 40000, 0x11)))),  # FIN ACK
        (11.0, eth(ipv4(a, b, 17, udp(1000, 2000, b"hello")))),
    ]
    got = {r["proto"]: r for r in flows(read_all(write(tmp_path, "t.pcapng", pcapng_bytes(pkts))))}
    assert got[6]["tcp_flags"] == 0x02 | 0x10 | 0x08 | 0x01
    assert (got[6]["src"], got[6]["src_port"], got[6]["dst_port"]) == (a, 40000, 8333)
    assert (got[6]["packets"], got[6]["rev_packets"]) == (2, 2)
    assert got[17]["tcp_flags"] == 0 and got[17]["sampling_rate"] == 1
    assert got[17]["exporter"] is None and got[17]["observation_point"] == "t.pcapng"


def test_engine_death_is_an_input_error_not_a_hang(tmp_path: Path) -> None:
    # A crash of nDPI's C code kills the meter process; nfstream's own iterator would then
    # wait forever. Kill the real meter mid-file and expect a prompt, clean error.
    import multiprocessing
    import os
    import signal

    pkts = [
        (
            1000 + i / 100,
            eth(
                ipv4(
                    "10.0.0.1",
                    f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}",
                    17,
                    udp(1024 + i % 50000, 53, b"q"),
                )
            ),
        )
        for i in range(60_000)
    ]
    p = write(tmp_path, "many.pcap", pcap_bytes(pkts))
    batches = PcapReader().read(p, ReadOptions(batch_rows=1000, extra={"idle_timeout": "1"}))
    assert next(batches).num_rows == 1000
    (meter,) = multiprocessing.active_children()
    os.kill(meter.pid, signal.SIGKILL)
    t = time.perf_counter()
    with pytest.raises(InputError, match="signal 9"):
        for _ in batches:
            pass
    assert time.perf_counter() - t < 30
    assert not multiprocessing.active_children()


def test_options_are_validated(tmp_path: Path) -> None:
    ping = eth(ipv4("10.0.0.1", "10.0.0.2", 1, icmp(8, 0)))
    p = write(tmp_path, "o.pcap", pcap_bytes([(1.0, ping)]))
    for extra in (
        {"idle_timeout": "soon"},
        {"dissections": "999"},
        {"colour": "red"},
        {"decode_tunnels": "maybe"},
    ):
        with pytest.raises(ConfigError):
            list(PcapReader().read(p, ReadOptions(extra=extra)))


def test_missing_nfstream_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write(tmp_path, "m.pcap", pcap_bytes([]))
    monkeypatch.setitem(__import__("sys").modules, "nfstream.meter", None)  # import fails
    with pytest.raises(MissingDependency, match=r"rogueflow\[pcap\]"):
        list(PcapReader().read(p, ReadOptions()))


def test_empty_capture_yields_nothing(tmp_path: Path) -> None:
    assert list(PcapReader().read(write(tmp_path, "e.pcap", pcap_bytes([])), ReadOptions())) == []


# --- nDPI golden captures ------------------------------------------------------------

NDPI_CAPTURES = (
    "443-chrome.pcap",
    "BGP_redist.pcap",
    "bitcoin.pcap",
    "dns.pcap",
    "dns_doh.pcap",
    "ethereum.pcap",
    "http.pcapng",
    "mining.pcapng",
    "monero.pcap",
    "mullvad_wireguard.pcap",
    "nano.pcapng",
    "netflow-fritz.pcap",
    "netflowv9.pcap",
    "openvpn.pcap",
    "protonvpn.pcap",
    "sflow.pcap",
    "tor.pcap",
    "wireguard.pcap",
)
# Where nfstream 6.6's bundled nDPI legitimately differs from the nDPI snapshot (3b1286ab,
# 2024-10) that wrote the .out files: 5-tuple -> (label nDPI wrote, label we must see).
LABEL_DIFFERENCES = {
    # Mullvad's address list entered nDPI after the version nfstream bundles; the
    # protocol (WireGuard) is the same.
    ("UDP", "192.168.122.11", 22595, "198.54.131.98", 5060): ("WireGuard.Mullvad", "WireGuard"),
}
# dns.pcap's first flow carries two questions (www.l.google.com answered first, then
# www.example.com); the newer nDPI keeps the first name, nfstream's nDPI the last one.
NAME_DIFFERENCES = {
    ("UDP", "192.168.170.20", 53, "192.168.170.8", 32795): ("www.l.google.com", "www.example.com"),
}


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", NDPI_CAPTURES)
def test_ndpi_golden_flows_labels_and_names(shared: Path, name: str) -> None:
    pcap = shared / "ndpi" / "pcap" / name
    expected = ndpi_expected(pcap.with_name(name + ".ndpiReader.out"))
    assert expected, "the .out parser found no flows"
    got = {five_tuple(r): r for r in flows(read_all(pcap))}
    # the same flows, the same direction (first packet's sender is the source)
    assert set(got) == set(expected)
    for key, exp in expected.items():
        r = got[key]
        nDPI_label, ours = LABEL_DIFFERENCES.get(key, (exp["label"], exp["label"]))
        assert exp["label"] == nDPI_label
        assert r["app_label"] == ours, key
        assert r["observation_point"] == name and r["sampling_rate"] == 1
        master = str(r["app_label"]).split(".")[0]
        want = NAME_DIFFERENCES.get(key, (exp["name"], exp["name"]))[1]
        if master in ("TLS", "QUIC", "HTTP"):
            assert (r["server_name"], r["dns_query"]) == (want, None), key
        elif master == "DNS":
            assert (r["server_name"], r["dns_query"]) == (None, want), key
        else:
            # NetBIOS/DHCP host names are not server names
            assert r["server_name"] is None and r["dns_query"] is None, key


MINING_FLOWS = {  # PROVENANCE.md: 5-tuple -> total packets (tshark conversation)
    ("TCP", "192.168.2.92", 55190, "178.32.196.217", 9050): 145,
    ("TCP", "192.168.2.148", 46838, "94.23.199.191", 3333): 272,
    ("TCP", "192.168.2.148", 53846, "116.211.167.195", 3333): 47,
    ("TCP", "147.229.13.222", 49307, "185.71.66.39", 9999): 209,
}


@pytest.mark.needs_shared
def test_mining_four_stratum_flows(shared: Path) -> None:
    rows = flows(read_all(shared / "ndpi" / "pcap" / "mining.pcapng"))
    assert {five_tuple(r): r["packets"] + r["rev_packets"] for r in rows} == MINING_FLOWS
    assert all("Mining" in r["app_label"] for r in rows)
    assert all(r["tcp_flags"] & 0x12 == 0x12 for r in rows)  # SYN and ACK seen
    assert min(r["ts_start"] for r in rows).isoformat() == "2017-01-17T12:17:01.797000+00:00"


@pytest.mark.needs_shared
def test_idle_timeout_option_splits_quiet_sessions(shared: Path) -> None:
    # nfstream's own default (120 s) cuts the Zcash session after a 195 s gap; the
    # continuation starts with the pool's packet, so it is reversed and unlabelled.
    rows = flows(read_all(shared / "ndpi" / "pcap" / "mining.pcapng", idle_timeout="120"))
    mining = {five_tuple(r) for r in rows if r["app_label"] == "Mining"}
    assert mining == set(MINING_FLOWS)
    rest = [r for r in rows if r["app_label"] != "Mining"]
    assert rest and all(r["src"] == "116.211.167.195" and r["src_port"] == 3333 for r in rest)
    assert sum(r["packets"] + r["rev_packets"] for r in rows) == sum(MINING_FLOWS.values())


@pytest.mark.needs_shared
def test_tor_relays_labelled_where_ndpi_says(shared: Path) -> None:
    pcap = shared / "ndpi" / "pcap" / "tor.pcap"
    expected_tor = {
        k
        for k, v in ndpi_expected(pcap.with_name("tor.pcap.ndpiReader.out")).items()
        if v["label"] == "TLS.Tor"
    }
    rows = flows(read_all(pcap))
    assert {five_tuple(r) for r in rows if r["app_label"] == "TLS.Tor"} == expected_tor
    assert {k[3] for k in expected_tor} == {"38.229.70.53", "91.143.93.242", "46.59.52.31"}


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    ("name", "label", "n"),
    [
        ("bitcoin.pcap", "BITCOIN", 6),
        ("monero.pcap", "Monero", 4),
        ("ethereum.pcap", "ETHEREUM", 74),
    ],
)
def test_crypto_p2p_labels(shared: Path, name: str, label: str, n: int) -> None:
    rows = flows(read_all(shared / "ndpi" / "pcap" / name))
    assert [r["app_label"] for r in rows] == [label] * n


@pytest.mark.needs_shared
def test_batches_respect_batch_rows_and_gzip(shared: Path, tmp_path: Path) -> None:
    pcap = shared / "ndpi" / "pcap" / "ethereum.pcap"
    batches = list(PcapReader().read(pcap, ReadOptions(batch_rows=10)))
    assert [b.num_rows for b in batches] == [10] * 7 + [4]
    gz = write(tmp_path, "ethereum.pcap.gz", gzip.compress(pcap.read_bytes()))
    zipped = read_all(gz)
    assert zipped.drop(["observation_point"]).equals(
        pa.concat_tables(batches).drop(["observation_point"])
    )
    assert set(zipped.column("observation_point").to_pylist()) == {"ethereum.pcap.gz"}


# --- Zeek traces: negatives and tshark ground truth ---------------------------------------

ZEEK_TRACES = (
    "chrome-34-google.pcap",
    "curl-8.1.2-dev-http3-www-google-de.pcap",
    "dns53.pcap",
    "ipv6.pcap",
    "tls-conn-with-extensions.pcap",
    "web.pcap",
    "wikipedia.pcap",
    "workshop_2011_browse.pcap",
)
CONV = re.compile(
    r"^(?P<a>[\d.]+)\s+<->\s+(?P<b>[\d.]+)\s+(?P<ba_f>\d+) (?P<ba_b>\d+) (?P<ba_u>bytes|kB)\s+"
    r"(?P<ab_f>\d+) (?P<ab_b>\d+) (?P<ab_u>bytes|kB)"
)


def tshark_conversations(provenance: Path) -> dict[str, list[dict[str, Any]]]:
    """PROVENANCE.md's `tshark -z conv,ip` tables, per capture ("<-" is B to A)."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    current = None
    for line in provenance.read_text().splitlines():
        if line.startswith("### "):
            current = line[4:].strip()
        m = CONV.match(line)
        if m and current:
            out[current].append(m.groupdict())
    return out


def frame_bytes_match(ip_bytes: int, frames: int, shown: str, unit: str, *, padded: bool) -> bool:
    """Do layer-3 bytes fit tshark's Ethernet frame bytes?

    A frame is the IP packet plus a 14-byte header, plus padding up to the 60-byte minimum
    (at most 26 bytes, after a 20-byte IP header) when the capture kept it. tshark prints
    exact bytes below 10 kB and truncated kB (of 1000) above.
    """
    lo = ip_bytes + ETH_HEADER * frames
    hi = lo + (26 * frames if padded else 0)
    if unit == "bytes":
        return lo <= int(shown) <= hi
    return lo < (int(shown) + 1) * 1000 and hi >= int(shown) * 1000


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", ZEEK_TRACES)
def test_zeek_traces_no_crypto_and_tshark_counts(shared: Path, name: str) -> None:
    rows = flows(read_all(shared / "zeek-traces" / name))
    assert not [r for r in rows if any(t in (r["app_label"] or "") for t in CRYPTO_OR_TOR)]
    pair: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for r in rows:
        pair[(r["src"], r["dst"])][0] += r["packets"]
        pair[(r["src"], r["dst"])][1] += r["bytes"]
        pair[(r["dst"], r["src"])][0] += r["rev_packets"]
        pair[(r["dst"], r["src"])][1] += r["rev_bytes"]
    convs = tshark_conversations(shared / "zeek-traces" / "PROVENANCE.md")[name]
    if name != "ipv6.pcap":
        assert convs, "PROVENANCE has a conversation table for every IPv4 trace"
    for c in convs:
        for direction, (s, d) in (("ab", (c["a"], c["b"])), ("ba", (c["b"], c["a"]))):
            frames = int(c[f"{direction}_f"])
            packets, ip_bytes = pair[(s, d)][:2]
            assert packets == frames, (name, s, d)
            # tshark counts Ethernet frames; the canonical bytes are layer 3. wikipedia.pcap
            # has no padded frames (tshark: frame.len - ip.len == 14 for every packet), so
            # there the bytes are exact.
            assert frame_bytes_match(
                ip_bytes,
                frames,
                c[f"{direction}_b"],
                c[f"{direction}_u"],
                padded=name != "wikipedia.pcap",
            ), (name, s, d, ip_bytes)


@pytest.mark.needs_shared
def test_zeek_trace_server_names(shared: Path) -> None:
    names = {
        "chrome-34-google.pcap": ("TLS.Google", "google.de"),
        "curl-8.1.2-dev-http3-www-google-de.pcap": ("QUIC.Google", "www.google.de"),
        "tls-conn-with-extensions.pcap": ("TLS.Google", "ssl.gstatic.com"),
        "web.pcap": ("HTTP", "www.icir.org"),
    }
    for name, (label, server) in names.items():
        rows = flows(read_all(shared / "zeek-traces" / name))
        assert (label, server) in {(r["app_label"], r["server_name"]) for r in rows}, name
    dns = flows(read_all(shared / "zeek-traces" / "dns53.pcap"))
    assert [(r["app_label"], r["dns_query"], r["server_name"]) for r in dns] == [
        ("DNS", "us.v27.distributed.net", None)
    ]


# --- damaged captures: refused whole, nothing ingested ---------------------------------


@pytest.mark.needs_shared
@pytest.mark.parametrize("name", ["tor.pcap", "mining.pcapng"])
def test_truncated_capture_is_refused_and_nothing_ingested(
    shared: Path, tmp_path: Path, name: str
) -> None:
    from rogueflow.ops import ingest_paths
    from rogueflow.store.flowstore import FlowStore
    from rogueflow.workspace import Workspace

    data = (shared / "ndpi" / "pcap" / name).read_bytes()
    if name.endswith(".pcap"):
        starts = pcap_record_offsets(data)
    else:
        starts = [o for o, t in pcapng_block_offsets(data) if t in (3, 6)]
    n = len(starts) // 2
    cut = write(tmp_path, "cut-" + name, data[: starts[n - 1] + 30])  # inside packet n
    with pytest.raises(InputError) as ei:
        list(PcapReader().read(cut, ReadOptions()))
    assert ei.value.where == f"packet {n} at byte offset {starts[n - 1]}"
    assert ei.value.path == str(cut) and "cut short" in ei.value.problem

    ws = Workspace(tmp_path / "ws")
    with pytest.raises(InputError, match=f"packet {n} at byte offset"):
        ingest_paths(ws, [cut])
    store = FlowStore(ws)
    try:
        assert store.catalog.totals()[0] == 0
    finally:
        store.close()


# --- end to end ------------------------------------------------------------------


@pytest.mark.needs_shared
def test_ingest_mining_and_query_labels(shared: Path, tmp_path: Path) -> None:
    from rogueflow.analyze.engine import DuckDBEngine
    from rogueflow.ops import ingest_paths
    from rogueflow.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    (res,) = ingest_paths(ws, [shared / "ndpi" / "pcap" / "mining.pcapng"])
    assert (res.format, res.rows) == ("pcap", 4)
    eng = DuckDBEngine(ws)
    try:
        got = eng.sql("select app_label, count(*) from flows group by 1").fetchall()
        assert got == [("Mining", 4)]
        pools = eng.sql(
            "select dst_ip, dst_port, packets + rev_packets from flows order by 1"
        ).fetchall()
        assert pools == [
            ("116.211.167.195", 3333, 47),
            ("178.32.196.217", 9050, 145),
            ("185.71.66.39", 9999, 209),
            ("94.23.199.191", 3333, 272),
        ]
    finally:
        eng.close()


# --- property tests ---------------------------------------------------------------


def fuzz(examples: int) -> settings:
    return settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture],
    )


MAGICS = st.sampled_from(
    [
        b"",
        b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00",
        b"\xa1\xb2\x3c\x4d\x00\x02",
        b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00\x4d\x3c\x2b\x1a",
        b"\x34\xcd\xb2\xa1",
    ]
)


@fuzz(400)
@given(prefix=MAGICS, body=st.binary(max_size=600))
def test_check_arbitrary_bytes_only_input_error(tmp_path: Path, prefix: bytes, body: bytes) -> None:
    p = write(tmp_path, "fuzz.bin", prefix + body)
    try:
        s = pcapcheck.check(p)
    except InputError as exc:
        assert exc.path == str(p)
    else:
        assert s.kind in ("pcap", "pcapng") and s.packets >= 0


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for pos, value in flips:
        out[pos % len(out)] = value
    return bytes(out[:cut] if cut is not None else out)


FLIPS = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=12)


@pytest.mark.needs_shared
@fuzz(300)
@given(
    name=st.sampled_from(["tor.pcap", "mining.pcapng", "dns.pcap", "http.pcapng"]),
    flips=FLIPS,
    cut=st.none() | st.integers(0, 250_000),
)
def test_check_damaged_real_captures(
    shared: Path, tmp_path: Path, name: str, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = (shared / "ndpi" / "pcap" / name).read_bytes()
    p = write(tmp_path, "d.bin", mutate(data, flips, cut))
    try:
        pcapcheck.check(p)
    except InputError as exc:
        assert exc.where is not None and exc.where.startswith(("packet ", "byte offset"))


@pytest.mark.needs_shared
@fuzz(25)
@given(
    name=st.sampled_from(
        [
            "dns.pcap",
            "http.pcapng",
            "443-chrome.pcap",
            "nano.pcapng",
            "wireguard.pcap",
            "protonvpn.pcap",
        ]
    ),
    flips=FLIPS,
    cut=st.none() | st.integers(0, 15_000),
)
def test_reader_on_damaged_captures_never_crashes(
    shared: Path, tmp_path: Path, name: str, flips: list[tuple[int, int]], cut: int | None
) -> None:
    data = (shared / "ndpi" / "pcap" / name).read_bytes()
    p = write(tmp_path, "d.pcap", mutate(data, flips, cut))
    try:
        for table in PcapReader().read(p, ReadOptions()):
            assert table.num_rows > 0
    except InputError as exc:
        assert exc.path == str(p)


@fuzz(15)
@given(prefix=MAGICS, body=st.binary(max_size=400))
def test_reader_on_arbitrary_bytes_only_input_error(
    tmp_path: Path, prefix: bytes, body: bytes
) -> None:
    p = write(tmp_path, "a.bin", prefix + body)
    try:
        for table in PcapReader().read(p, ReadOptions()):
            assert table.num_rows > 0
    except InputError as exc:
        assert exc.path == str(p)
