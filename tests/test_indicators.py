"""Indicator-list loaders on the shared real lists, malformed input and arbitrary bytes."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.errors import InputError
from rogueflow.intel import indicators as ind
from rogueflow.intel.kinds import KINDS

MINING = "mining-lists"
UT1 = "ut1-categories"
VPN = "vpn-datacenter-lists"
TOR = "tor-lists/stem-testdata"


def write(tmp_path: Path, text: str | bytes, name: str = "list.txt") -> Path:
    p = tmp_path / name
    p.write_bytes(text.encode() if isinstance(text, str) else text)
    return p


# ---- shared real lists -------------------------------------------------------------


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    ("rel", "loader", "domains", "addresses", "known"),
    [
        (f"{MINING}/nocoin/hosts.txt", ind.load_mining_domains, 313, 0, "coinhiveproxy.com"),
        (f"{MINING}/nocoin/nocoin.txt", ind.load_mining_domains, 190, 7, "2miners.com"),
        (f"{MINING}/coinblockerlists-2018/list.txt", ind.load_mining_domains, 5837, 0,
         "eu1-zcash.flypool.org"),
        ("ndpi/lists/mining_hosts.txt", ind.load_mining_domains, 245, 0, "coinhive.com"),
        (f"{UT1}/bitcoin.domains", ind.load_crypto_domains, 1394, 25, "binance.com"),
        (f"{UT1}/cryptojacking.domains", ind.load_cryptojacking_domains, 11491, 0,
         "nanopool.org"),
        (f"{UT1}/doh.domains", ind.load_doh_domains, 2996, 19, "cloudflare-dns.com"),
        (f"{UT1}/vpn.domains", ind.load_vpn_domains, 6039, 0, "nordvpn.com"),
    ],
)  # fmt: skip
def test_domain_lists(
    shared: Path,
    rel: str,
    loader: Callable[[Path], ind.DomainList],
    domains: int,
    addresses: int,
    known: str,
) -> None:
    got = loader(shared / rel)
    assert (len(got.domains), len(got.addresses)) == (domains, addresses)
    assert got.rows == domains + addresses
    assert known in got.domains
    t = got.table()
    hit = t.match(pa.array([f"www.{known}", f"{known}.invalid"]))
    assert [t.values[hit[0]], hit[1]] == [known, -1]


@pytest.mark.needs_shared
def test_list_quirks(shared: Path) -> None:
    nocoin = ind.load_mining_domains(shared / MINING / "nocoin/nocoin.txt")
    assert nocoin.skipped > 50  # URL-pattern rules are not domain indicators
    assert "ddns.net" not in nocoin.domains  # ||ddns.net^*=ws:// is a URL rule
    assert "23.83.114.131" in nocoin.addresses
    blocker = ind.load_mining_domains(shared / MINING / "coinblockerlists-2018/list.txt")
    assert "hashbag.cc" in blocker.domains  # listed as hashbag.cc:8688
    assert "myètherwället.com" in blocker.domains  # Unicode kept as given
    assert "bestetnpool.com" in blocker.domains  # lower-cased
    ut1 = ind.load_crypto_domains(shared / UT1 / "bitcoin.domains")
    assert "100.1.220.138" in ut1.addresses
    assert ut1.address_table().get("100.1.220.138") == "crypto"


@pytest.mark.needs_shared
def test_mining_ips(shared: Path) -> None:
    got = ind.load_mining_ips(shared / MINING / "coinblockerlists-2018/MiningServerIPList.txt")
    assert len(got.cidrs) == 1026
    table = got.table()
    q = addr.parse_array(["178.32.196.217", "8.8.8.8"])  # the Monero pool in mining.pcapng
    assert table.lookup(q).tolist()[1] == -1
    assert table.values[table.lookup(q)[0]] == "mining"


@pytest.mark.needs_shared
def test_vpn_and_hosting_lists(shared: Path) -> None:
    v4 = ind.load_vpn_cidrs(shared / VPN / "output_vpn_ipv4.txt")
    v6 = ind.load_vpn_cidrs(shared / VPN / "output_vpn_ipv6.txt")
    assert (len(v4.cidrs), len(v6.cidrs)) == (10862, 498)
    assert v4.table().get("2.27.224.5") == "vpn" and v4.table().get("2.27.228.1") is None
    assert v6.table().get("2001:ac8::1") == "vpn"
    asns = ind.load_vpn_cidrs(shared / VPN / "input_vpn_ASN.txt")
    assert asns.asns[9009] == "M247, GB (NordVPN)" and asns.asns[209854] == "Surfshark"
    dc = ind.load_hosting_cidrs(shared / VPN / "input_datacenter_ASN.txt")
    assert dc.asns[45090].startswith("Tencent cloud")
    mullvad = ind.load_vpn_cidrs(shared / VPN / "input_vpn_ips_mullvadvpn.txt")
    assert mullvad.table().get("23.144.160.67") == "vpn"


@pytest.mark.needs_shared
@pytest.mark.slow
def test_datacenter_lists(shared: Path) -> None:
    v4 = ind.load_hosting_cidrs(shared / VPN / "output_datacenter_ipv4.txt")
    v6 = ind.load_hosting_cidrs(shared / VPN / "output_datacenter_ipv6.txt")
    assert (len(v4.cidrs), len(v6.cidrs)) == (42566, 8752)
    assert v4.table().get("1.12.3.4") == "hosting" and v6.table().get("2001:310::9") == "hosting"


@pytest.mark.needs_shared
def test_tor_consensus_2012_and_2017(shared: Path) -> None:
    c = ind.load_tor_consensus(shared / TOR / "metrics_consensus")
    assert c.rows == 7
    assert (c.valid_from, c.valid_to) == (
        datetime(2012, 7, 12, 10, tzinfo=UTC),
        datetime(2012, 7, 12, 13, tzinfo=UTC),
    )
    sumkledi = next(r for r in c.relays if r.nickname == "sumkledi")
    assert (sumkledi.addresses, sumkledi.or_port, sumkledi.dir_port) == (
        ("178.218.213.229",),
        80,
        None,
    )
    assert "Exit" in sumkledi.flags
    assert sumkledi.fingerprint == "0013D22389CD50D0B784A3E4061CB31E8CE8CEB5"
    tiny = ind.load_tor_consensus(shared / TOR / "cached-consensus")
    assert tiny.rows == 3 and tiny.valid_from == datetime(2017, 5, 25, 4, 46, 30, tzinfo=UTC)


@pytest.mark.needs_shared
def test_tor_consensus_2018_tar(shared: Path) -> None:
    c = ind.load_tor_consensus(shared / TOR / "consensuses-2018-06-cropped.tar")
    assert c.documents == 2
    assert c.valid_from == datetime(2018, 6, 1, 0, tzinfo=UTC)
    assert c.valid_to == datetime(2018, 6, 1, 4, tzinfo=UTC)  # the 01:00 one's valid-until
    # 243 'r' lines in two hours, 239 distinct relays
    assert c.rows == 239
    relay = next(r for r in c.relays if r.nickname == "PancakeWhore")
    assert relay.addresses == ("198.27.66.209", "2607:5300:60:1bd1::1")
    assert relay.or_addresses == (("198.27.66.209", 9001), ("2607:5300:60:1bd1::1", 9050))
    assert (relay.dir_port, "Guard" in relay.flags, "Exit" in relay.flags) == (9030, True, False)
    assert ("198.27.66.209", 9001) in c.endpoints()
    assert len(c.exits()) > 0 and all("Exit" in r.flags for r in c.exits())
    t = c.table()
    assert t.get("198.27.66.209") == "tor-relay" and t.get("2607:5300:60:1bd1::1") == "tor-relay"
    assert t.get(c.exits()[0].addresses[0]) == "tor-exit"


@pytest.mark.needs_shared
def test_tor_exit_list_2018(shared: Path) -> None:
    e = ind.load_tor_exit_list(shared / TOR / "exit-list-2018-11-cropped.tar")
    assert e.documents == 4 and e.rows == 963  # distinct ExitNode fingerprints
    assert len(e.addresses()) == 912
    assert "162.247.74.201" in e.addresses(exits_only=True)
    node = next(r for r in e.relays if r.fingerprint.startswith("0011BD2485AD45D9"))
    assert "162.247.74.201" in node.addresses
    assert e.valid_from == datetime(2018, 10, 31, 0, 2, 27, tzinfo=UTC)
    # the latest ExitAddress is 2018-11-02 00:03:25; the interval includes it
    assert e.valid_to == datetime(2018, 11, 2, 0, 3, 26, tzinfo=UTC)
    assert e.table().get("162.247.74.201") == "tor-exit"


@pytest.mark.needs_shared
def test_tor_single_exit_list_file(shared: Path, tmp_path: Path) -> None:
    with tarfile.open(shared / TOR / "exit-list-2018-11-cropped.tar") as tf:
        member = tf.getmember("exit-list-2018-11/01/2018-11-01-00-02-01")
        data = tf.extractfile(member).read()  # type: ignore[union-attr]
    e = ind.load_tor_exit_list(write(tmp_path, data, "exit-list"))
    assert e.documents == 1 and len(e.addresses()) == 934 - _duplicate_exit_ips(data)


def _duplicate_exit_ips(data: bytes) -> int:
    ips = [ln.split()[1] for ln in data.decode().splitlines() if ln.startswith("ExitAddress")]
    return len(ips) - len(set(ips))


def test_every_indicator_kind_resolves() -> None:
    for k in KINDS.values():
        for fmt, target in k.formats.items():
            if target.startswith("rogueflow.intel.indicators:"):
                assert callable(k.loader(fmt))


# ---- formats and malformed input ---------------------------------------------------


def test_domain_list_formats(tmp_path: Path) -> None:
    text = (
        "\ufeff# comment\n\n! adblock-style comment\n"
        "plain.example.com\n"
        "0.0.0.0 hosts.example.com other.example.org # trailing\n"
        "127.0.0.1 localhost\n"
        "||ad.example.net^\n||ad2.example.net^$third-party\n"
        "scored.example.com\t99\n"
        "WithPort.Example.com:3333\n"
        "*.wild.example.com\n"
        "trailing.example.com.\r\n"
        "192.0.2.7\n2001:db8::1\n"
    )
    got = ind.load_domain_list(write(tmp_path, text), "test")
    assert got.domains == [
        "plain.example.com", "hosts.example.com", "other.example.org", "ad.example.net",
        "ad2.example.net", "scored.example.com", "withport.example.com", "wild.example.com",
        "trailing.example.com",
    ]  # fmt: skip
    assert got.addresses == ["192.0.2.7", "2001:db8::1"]
    assert got.skipped == 0


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("good.com\nthis is not a domain\n", 2, "neither a domain"),
        ("good.com\n||x.com/path.js\n", 2, "neither a domain"),
        ("good.com\nbad..com\n", 2, "empty label"),
        ("good.com\ncom\n", 2, "single label"),
        ("a.com\nb.com\nc\u00a0d.com\n", 3, "neither a domain"),
        ("a.com\nb.com\nc\u200bd.com\n", 3, "not a domain name"),
        ("good.com\n0.0.0.0 bad!name.com\n", 2, "not a domain name"),
    ],
)
def test_domain_list_errors(tmp_path: Path, text: str, line: int, problem: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(InputError, match=problem) as exc:
        ind.load_mining_domains(p)
    assert exc.value.path == str(p) and exc.value.where == f"line {line}"


def test_binary_and_empty_and_oversized(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not UTF-8") as exc:
        ind.load_doh_domains(write(tmp_path, b"a.com\n\xff\xfe\x00junk\n"))
    assert exc.value.where == "line 2"
    with pytest.raises(InputError, match="control characters"):
        ind.load_doh_domains(write(tmp_path, b"a.com\nb\x00.com\n"))
    with pytest.raises(InputError, match="no entries"):
        ind.load_vpn_domains(write(tmp_path, "# only a comment\n\n"))
    big = tmp_path / "big.txt"
    with open(big, "wb") as fh:
        fh.truncate(ind.MAX_LIST_BYTES + 1)  # sparse: costs no disk
    for loader in (ind.load_vpn_domains, ind.load_vpn_cidrs, ind.load_tor_consensus):
        with pytest.raises(InputError, match="too large"):
            loader(big)
    with pytest.raises(InputError, match="not a regular file"):
        ind.load_vpn_cidrs(tmp_path)
    with pytest.raises(InputError, match="cannot read"):
        ind.load_vpn_cidrs(tmp_path / "missing.txt")


def test_adblock_mode_skips_url_rules(tmp_path: Path) -> None:
    text = "[Adblock Plus 2.0]\n! c\n||a.com^\n@@||b.com^\n/miner.js\n##.ad\n||c.com^*.php\n"
    got = ind.load_mining_domains(write(tmp_path, text))
    assert got.domains == ["a.com"] and got.skipped == 4


def test_network_list_formats_and_errors(tmp_path: Path) -> None:
    text = "# header\n10.0.0.0/8 # Corp VPN\n10.1.0.0/16\n192.0.2.1\n2001:db8::/32\nAS9009 # M247\n"
    got = ind.load_vpn_cidrs(write(tmp_path, text))
    assert got.cidrs == [
        ("10.0.0.0/8", "Corp VPN"),
        ("10.1.0.0/16", "vpn"),
        ("192.0.2.1/32", "vpn"),
        ("2001:db8::/32", "vpn"),
    ]
    assert got.asns == {9009: "M247"} and got.rows == 5
    t = got.table()
    assert [t.get(a) for a in ("10.2.0.1", "10.1.2.3", "192.0.2.1", "192.0.2.2")] == [
        "Corp VPN",
        "vpn",
        "vpn",
        None,
    ]
    for text, line, problem in [
        ("10.0.0.0/8\n10.0.0.1/8\n", 2, "host bits"),
        ("10.0.0.0/8\nnot-an-ip\n", 2, "not a prefix"),
        ("AS99999999999\n", 1, "out of range"),
        ("10.0.0.0/33\n", 1, "not a prefix"),
    ]:
        with pytest.raises(InputError, match=problem) as exc:
            ind.load_hosting_cidrs(write(tmp_path, text))
        assert exc.value.where == f"line {line}"
    with pytest.raises(InputError, match="line 2") as exc:  # one prefix, two providers
        ind.load_vpn_cidrs(write(tmp_path, "10.0.0.0/8 # A\n10.0.0.0/8 # B\n"))


CONSENSUS = """@type network-status-consensus-3 1.0
network-status-version 3
valid-after 2019-03-01 12:00:00
fresh-until 2019-03-01 13:00:00
valid-until 2019-03-01 15:00:00
r relay1 AAoQ1DAR6kkoo19hBAX5K0QztNw evtkDQeqgaEIuj55lP3MXloQYcI 2019-02-28 13:28:36 \
192.0.2.10 9001 9030
a [2001:db8::10]:9001
s Exit Fast Running Valid
r micro AAwffNL+oHO5EdyUoWAOwvEX3ws 2019-02-28 11:09:21 192.0.2.11 443 0
s Guard Running
directory-footer
directory-signature AAAA BBBB
"""


def test_consensus_formats(tmp_path: Path) -> None:
    c = ind.load_tor_consensus(write(tmp_path, CONSENSUS))
    assert [r.nickname for r in c.relays] == ["relay1", "micro"]
    assert c.relays[0].or_addresses == (("192.0.2.10", 9001), ("2001:db8::10", 9001))
    assert c.relays[1].flags == frozenset({"Guard", "Running"})
    assert c.addresses(exits_only=True) == {"192.0.2.10", "2001:db8::10"}


@pytest.mark.parametrize(
    ("old", "new", "where", "problem"),
    [
        ("network-status-version 3", "network-status-version 2", "line 2", "not a Tor consensus"),
        ("192.0.2.10 9001 9030", "192.0.2.10 99999 9030", "line 6", "bad port"),
        ("192.0.2.10 9001", "2001:db8::1 9001", "line 6", "IPv4"),
        ("AAoQ1DAR6kkoo19hBAX5K0QztNw", "AAoQ!", "line 6", "identity"),
        ("[2001:db8::10]:9001", "[2001:db8::zz]:9001", "line 7", "'a' line"),
        ("valid-until 2019-03-01 15:00:00", "valid-until 2019-3-1", "line 5", "bad time"),
        ("valid-until 2019-03-01 15:00:00\n", "", None, "valid-until"),
        ("2019-02-28 11:09:21 192.0.2.11", "192.0.2.11", "line 9", "fields"),
    ],
)
def test_consensus_errors(
    tmp_path: Path, old: str, new: str, where: str | None, problem: str
) -> None:
    assert old in CONSENSUS
    p = write(tmp_path, CONSENSUS.replace(old, new))
    with pytest.raises(InputError, match=problem) as exc:
        ind.load_tor_consensus(p)
    assert exc.value.where == where and exc.value.path == str(p)


EXITS = """@type tordnsel 1.0
Downloaded 2019-01-02 00:02:01
ExitNode 0011BD2485AD45D984EC4159C88FC066E5E3300E
Published 2019-01-01 05:08:21
LastStatus 2019-01-01 06:02:24
ExitAddress 198.51.100.1 2019-01-01 06:03:23
ExitAddress 198.51.100.2 2019-01-01 23:00:00
"""


def test_exit_list_and_errors(tmp_path: Path) -> None:
    e = ind.load_tor_exit_list(write(tmp_path, EXITS))
    assert e.relays[0].addresses == ("198.51.100.1", "198.51.100.2")
    assert e.valid_from == datetime(2019, 1, 1, 6, 2, 24, tzinfo=UTC)
    assert e.valid_to == datetime(2019, 1, 1, 23, 0, 1, tzinfo=UTC)
    for text, where, problem in [
        (EXITS.replace("ExitNode 0011", "ExitNode zz11"), "line 3", "fingerprint"),
        (EXITS.replace("198.51.100.2", "198.51.100.999"), "line 7", "exit address"),
        ("ExitAddress 198.51.100.1 2019-01-01 06:03:23\n", "line 1", "before any ExitNode"),
        (EXITS + "r x y z\n", "line 8", "not a TorDNSEL"),
        (CONSENSUS, "line 1", "not a TorDNSEL"),
    ]:
        with pytest.raises(InputError, match=problem) as exc:
            ind.load_tor_exit_list(write(tmp_path, text))
        assert exc.value.where == where


def test_tar_of_documents_and_bad_members(tmp_path: Path) -> None:
    def tar(members: dict[str, bytes], mode: str = "w") -> Path:
        p = tmp_path / ("docs.tar" + (".gz" if mode == "w:gz" else ""))
        with tarfile.open(p, mode) as tf:  # type: ignore[call-overload]
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return p

    later = EXITS.replace("2019-01-01", "2019-01-05").replace("198.51.100.2", "198.51.100.3")
    e = ind.load_tor_exit_list(tar({"a": EXITS.encode(), "b": later.encode()}, "w:gz"))
    assert e.documents == 2 and len(e.relays) == 1
    assert e.relays[0].addresses == ("198.51.100.1", "198.51.100.2", "198.51.100.3")
    assert e.valid_to == datetime(2019, 1, 5, 23, 0, 1, tzinfo=UTC)
    with pytest.raises(InputError, match="fingerprint") as exc:
        ind.load_tor_exit_list(tar({"a": EXITS.encode(), "bad/doc": b"ExitNode 12\n"}))
    assert exc.value.where == "bad/doc, line 1"
    with pytest.raises(InputError, match="unreadable tar"):
        ind.load_tor_consensus(write(tmp_path, b"\x1f\x8b\x08\x00garbage", "x.tar.gz"))
    with pytest.raises(InputError, match="no documents"):
        ind.load_tor_consensus(tar({}))


# ---- arbitrary bytes ---------------------------------------------------------------

LOADERS = [
    ind.load_mining_domains,
    ind.load_mining_ips,
    ind.load_vpn_cidrs,
    ind.load_tor_consensus,
    ind.load_tor_exit_list,
    ind.load_services,
]
LINEISH = st.lists(
    st.sampled_from(
        [b"a.com", b"0.0.0.0 x.org", b"||y.net^", b"10.0.0.0/8", b"AS1 # x", b"# c", b"",
         b"ExitNode " + b"A" * 40, b"ExitAddress 1.2.3.4 2019-01-01 00:00:00", b"\xff",
         b"network-status-version 3", b"valid-after 2019-01-01 00:00:00", b"r a b c",
         b"version = 1", b"[[service]]", b'name = "x"', b"\x1f\x8b", b"s Exit"]
    ),
    max_size=12,
).map(b"\n".join)  # fmt: skip


@settings(max_examples=150)
@given(st.one_of(st.binary(max_size=600), LINEISH), st.sampled_from(LOADERS))
def test_arbitrary_bytes_raise_only_input_error(
    data: bytes, loader: Callable[[Path], object]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "input"
        p.write_bytes(data)
        try:
            loader(p)
        except InputError as exc:
            assert exc.path == str(p)
