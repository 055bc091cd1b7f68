"""Geo loaders against real reference data: MaxMind test DBs, country-ip-blocks, pyasn, RIR."""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import ipaddress
import json
import random
import shutil
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from rogueflow import addr
from rogueflow.errors import InputError
from rogueflow.intel import embedded as embedded_mod
from rogueflow.intel import geo

maxminddb = pytest.importorskip("maxminddb")

pytestmark = pytest.mark.needs_shared

MMDB = "maxmind-test-mmdb"


def _source_network(key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Source JSON keys: IPv4, IPv6, or IPv4 written inside ::/96 (``::1.2.0.0/112``)."""
    net = ipaddress.ip_network(key, strict=False)
    if net.version == 6 and net.prefixlen >= 96 and int(net.network_address) < 2**32:
        return ipaddress.ip_network(
            f"{ipaddress.IPv4Address(int(net.network_address))}/{net.prefixlen - 96}"
        )
    return net


def _samples(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> list[str]:
    lo, hi = int(net.network_address), int(net.broadcast_address)
    cls = ipaddress.IPv4Address if net.version == 4 else ipaddress.IPv6Address
    return [str(cls(x)) for x in sorted({lo, hi, (lo + hi) // 2, min(lo + 1, hi)})]


def _country(record: dict[str, Any] | None) -> str | None:
    for key in ("country", "registered_country"):
        if record and isinstance(record.get(key), dict) and record[key].get("iso_code"):
            return str(record[key]["iso_code"])
    return None


def _asn(record: dict[str, Any] | None) -> tuple[int, str] | None:
    if not record or "autonomous_system_number" not in record:
        return None
    return record["autonomous_system_number"], record.get("autonomous_system_organization", "")


def _flags(record: dict[str, Any] | None) -> tuple[str, ...] | None:
    out = tuple(sorted(k for k, v in (record or {}).items() if k.startswith("is_") and v is True))
    return out or None


CASES = [
    ("GeoLite2-Country-Test", geo.load_country_mmdb, _country),
    ("GeoLite2-ASN-Test", geo.load_asn_mmdb, _asn),
    ("GeoIP2-Anonymous-IP-Test", geo.load_anonymous_mmdb, _flags),
]


@pytest.mark.parametrize(("name", "loader", "value"), CASES, ids=[c[0] for c in CASES])
def test_mmdb_answers_as_source_json_and_reader(
    shared: Path, name: str, loader: Any, value: Any
) -> None:
    """Acceptance 2: addresses inside every source network answer as the JSON says.

    Where source networks nest, the most specific one decides, as maxminddb.get does,
    and maxminddb's own answer is checked for every address too.
    """
    table = loader(shared / MMDB / f"{name}.mmdb")
    entries = [
        (_source_network(k), rec)
        for item in json.loads((shared / MMDB / f"{name}.json.source.json").read_text())
        for k, rec in item.items()
    ]
    reader = maxminddb.open_database(str(shared / MMDB / f"{name}.mmdb"))
    checked = 0
    with reader:
        for net, _ in entries:
            for text in _samples(net):
                ip = ipaddress.ip_address(text)
                containing = [(n, r) for n, r in entries if n.version == ip.version and ip in n]
                best = max(containing, key=lambda x: x[0].prefixlen)[1]
                assert table.get(text) == value(best), (name, net, text)
                assert table.get(text) == value(reader.get(text)), (name, net, text)
                checked += 1
    assert checked >= len(entries)


def test_known_mmdb_values(shared: Path) -> None:
    asn = geo.load_asn_mmdb(shared / MMDB / "GeoLite2-ASN-Test.mmdb")
    assert asn.get("1.0.0.1") == (15169, "Google Inc.")
    assert asn.get("12.81.92.5")[0] == 7018
    assert asn.get("10.0.0.1") is None
    assert "GeoLite2-ASN" in asn.describe()


def test_mmdb_loaded_for_the_wrong_kind_or_damaged(shared: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no country records in this GeoLite2-ASN database"):
        geo.load_country_mmdb(shared / MMDB / "GeoLite2-ASN-Test.mmdb")
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"\x00" * 4096)
    with pytest.raises(InputError, match=r"bad\.mmdb: not a MaxMind DB"):
        geo.load_country_mmdb(bad)
    cut = tmp_path / "cut.mmdb"
    cut.write_bytes((shared / MMDB / "GeoLite2-Country-Test.mmdb").read_bytes()[:9000])
    with pytest.raises(InputError, match=r"cut\.mmdb"):
        geo.load_country_mmdb(cut)


# ---- country-ip-blocks ---------------------------------------------------------------


@pytest.fixture(scope="module")
def cidr_blocks() -> geo.GeoTable:
    from tests.conftest import SHARED

    if not (SHARED / "country-ip-blocks").is_dir():
        pytest.skip("shared data absent")
    return geo.load_country_cidr_dir(SHARED / "country-ip-blocks")


def test_country_cidr_dir(shared: Path, cidr_blocks: geo.GeoTable) -> None:
    assert cidr_blocks.get("175.45.176.0") == "KP" and cidr_blocks.get("175.45.179.255") == "KP"
    assert cidr_blocks.get("175.45.180.0") != "KP"
    assert cidr_blocks.get("210.52.109.1") == "CN"  # DPRK's Chinese link is listed as CN
    single = geo.load_country_cidr_dir(shared / "country-ip-blocks" / "ipv4" / "kp.cidr")
    assert [(lo.hex()[-8:], hi.hex()[-8:], v) for lo, hi, v in single.table.ranges()] == [
        ("af2db000", "af2db3ff", "KP")
    ]
    # the same /24 under two real countries (aq, us) is left unknown and reported
    assert "conflicts 1" in cidr_blocks.describe()
    for line in (shared / "country-ip-blocks" / "ipv6" / "de.cidr").read_text().split()[:50]:
        assert cidr_blocks.get(line.split("/")[0]) == "DE"


def test_cidr_file_errors_name_file_and_line(tmp_path: Path) -> None:
    d = tmp_path / "blocks"
    d.mkdir()
    (d / "kp.cidr").write_text("175.45.176.0/22\n")
    (d / "xx.cidr").write_text("1.2.3.0/24\n# comment\n1.2.300.0/24\n")
    with pytest.raises(InputError) as exc:
        geo.load_country_cidr_dir(d)
    assert exc.value.path == str(d / "xx.cidr") and exc.value.where == "line 3"


# ---- prefix -> origin AS -------------------------------------------------------------


def test_pfx2as_shared_pyasn_table(shared: Path) -> None:
    t = geo.load_pfx2as(shared / "bgp-mrt" / "pyasn" / "ipasn_20140513.dat.gz")
    for ip in ("175.45.176.1", "175.45.179.254"):
        assert t.get(ip) == (131279, "")
    assert t.get("210.52.109.9") == (9929, "")
    assert t.get("77.94.35.1") == (30721, "")
    assert t.meta["records"] == 512621


def test_pfx2as_cut_short_or_binary_raises_with_line(shared: Path, tmp_path: Path) -> None:
    src = shared / "bgp-mrt" / "pyasn" / "ipasn_20140513.dat.gz"
    cut = tmp_path / "ipasn.dat.gz"
    cut.write_bytes(src.read_bytes()[:300_000])
    with pytest.raises(InputError, match=r"ipasn\.dat\.gz, line \d+: .*cut short"):
        geo.load_pfx2as(cut)
    with pytest.raises(InputError, match=r"line \d+"):
        geo.load_pfx2as(shared / "bgp-mrt" / "pyasn" / "rib.20140523.0600_firstMB.bz2")


def test_pfx2as_formats(tmp_path: Path) -> None:
    f = tmp_path / "p.txt"
    f.write_text("; comment\n10.0.0.0/8\t64500\n10.1.0.0 16 64501_64502\n2001:db8::/32 {64503,1}\n")
    t = geo.load_pfx2as(f)
    assert [t.get(x) for x in ("10.2.0.0", "10.1.0.1", "2001:db8::1")] == [
        (64500, ""),
        (64501, ""),
        (64503, ""),
    ]
    f.write_text("10.0.0.0/8\t64500\n10.0.0.0/8 x\n")
    with pytest.raises(InputError, match=r"p\.txt, line 2: 'x' is not an AS number"):
        geo.load_pfx2as(f)


# ---- RIR delegated -------------------------------------------------------------------

RIR = """\
# a comment
2|apnic|20190301|5|19830613|20190228|+1000
apnic|*|asn|*|1|summary
apnic|*|ipv4|*|3|summary
apnic|*|ipv6|*|1|summary
apnic|KP|ipv4|175.45.176.0|1024|20100412|allocated|A9123
apnic|JP|ipv4|10.0.0.0|768|20110101|assigned|A9124
apnic|JP|ipv4|10.0.3.0|256|20110101|available|
apnic|CN|ipv6|2001:db8::|32|20110101|allocated|A9125
apnic|JP|asn|7500|1|19880101|allocated|A9126
"""


def test_rir_delegated_exact_ranges(tmp_path: Path) -> None:
    f = tmp_path / "delegated-apnic-extended-20190301"
    f.write_text(RIR)
    t = geo.load_rir_delegated(f)
    assert t.valid_from == datetime(2019, 2, 28, tzinfo=UTC)
    assert t.get("175.45.179.255") == "KP" and t.get("175.45.180.0") is None
    # 768 addresses: not a power of two, the range ends exactly at 10.0.2.255
    assert t.get("10.0.2.255") == "JP" and t.get("10.0.3.0") is None
    assert t.get("2001:db8:ffff::1") == "CN"
    assert t.rows == 3
    f.write_text(RIR + "apnic|JP|ipv4|10.9.0.0|zero|20110101|allocated|\n")
    with pytest.raises(InputError, match=r"line 11: bad ipv4 record"):
        geo.load_rir_delegated(f)


# ---- CSV -----------------------------------------------------------------------------


def test_csv_country_layouts(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("start,end,country\n10.0.0.0,10.0.0.255,kp\n2001:db8::,2001:db8::ff,CN\n")
    t = geo.load_country_csv(f)
    assert (t.get("10.0.0.7"), t.get("2001:db8::1"), t.get("10.0.1.0")) == ("KP", "CN", None)
    f.write_text("10.0.0.0/24,KP\n10.0.0.128/25,CN\n")
    t = geo.load_country_csv(f)
    assert (t.get("10.0.0.7"), t.get("10.0.0.200")) == ("KP", "CN")
    # ip2location DB1: quoted integer ranges, IPv4 plain and IPv6 (incl. ::ffff:) as 128-bit
    f.write_text(
        '"0","16777215","-","-"\n"2939006976","2939007999","KP","Korea (DPRK)"\n'
        '"281473621524480","281473621525503","KP","Korea (DPRK)"\n'
    )
    t = geo.load_country_csv(f)
    assert (t.get("175.45.176.9"), t.get("0.0.0.1")) == ("KP", None)


def test_csv_asn_geolite_blocks(tmp_path: Path) -> None:
    f = tmp_path / "asn.csv"
    f.write_text(
        "network,autonomous_system_number,autonomous_system_organization\n"
        '1.0.0.0/24,13335,"Cloudflare, Inc."\n175.45.176.0/22,AS131279,Ryugyong-dong\n'
    )
    t = geo.load_asn_csv(f)
    assert t.get("1.0.0.1") == (13335, "Cloudflare, Inc.")
    assert t.get("175.45.177.1") == (131279, "Ryugyong-dong")


def test_csv_errors_name_file_and_line(tmp_path: Path) -> None:
    f = tmp_path / "c.csv"
    f.write_text("start,end,country\n10.0.0.0,10.0.0.255,KP\n10.0.1.0,10.0.x.255,CN\n")
    with pytest.raises(InputError, match=r"c\.csv, line 3: .*not an address range"):
        geo.load_country_csv(f)
    f.write_text("start,end,country\n10.0.0.0,10.0.0.255,KP\n10.0.0.100,10.0.1.0,CN\n")
    with pytest.raises(InputError, match=r"c\.csv, line 3: ranges overlap partially"):
        geo.load_country_csv(f)
    f.write_text("start,end,country\n10.0.0.0,10.0.0.255,Korea\n")
    with pytest.raises(InputError, match=r"line 2: 'Korea' is not a two-letter country code"):
        geo.load_country_csv(f)
    f.write_text("foo,bar\n1,2\n")
    with pytest.raises(InputError, match=r"line 1: header"):
        geo.load_country_csv(f)


# ---- embedded default ----------------------------------------------------------------

# The Python-side sources of truth for the network database: plevin's own lookup()
plevin = pytest.importorskip("plevin")
pytest.importorskip("geoip2fast")
pytest.importorskip("plevin_db_network")

# (address, AS number, a word of the operator's name); checked against public routing data
SOURCES = [("country", "geoip2fast"), ("asn", "plevin-db-network")]
KNOWN_ASN = [
    ("8.8.8.8", 15169, "google"),
    ("1.1.1.1", 13335, "cloudflare"),
    ("175.45.176.1", 131279, "star joint venture"),
    ("9.9.9.9", 19281, "quad9"),
    ("2001:4860:4860::8888", 15169, "google"),
    ("2606:4700:4700::1111", 13335, "cloudflare"),
]


def _no_network(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("the embedded default touched the network")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both embedded tables built from the installed packages alone, sockets refused."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(socket.socket, "connect", _no_network)
        mp.setattr(socket, "getaddrinfo", _no_network)
        embedded_mod._LOADED.clear()
        geo.embedded_country(cache)
        geo.embedded_asn(cache)
    return cache


@pytest.fixture(scope="module")
def embedded(cache_dir: Path) -> tuple[geo.GeoTable, geo.GeoTable]:
    return geo.embedded_country(cache_dir), geo.embedded_asn(cache_dir)


def test_embedded_known_answers(embedded: tuple[geo.GeoTable, geo.GeoTable]) -> None:
    country, asn = embedded
    assert country.get("8.8.8.8") == "US" and country.get("175.45.176.1") == "KP"
    assert country.get("2001:4860:4860::8888") == "US"
    assert country.get("10.1.2.3") is None and country.get("::1") is None
    for ip, number, word in KNOWN_ASN:
        got = asn.get(ip)
        assert got is not None and got[0] == number and word in got[1].lower(), (ip, got)
    assert asn.get("::ffff:8.8.8.8") == asn.get("8.8.8.8")
    for reserved in ("10.1.2.3", "192.168.0.1", "127.0.0.1", "::1", "fe80::1"):
        assert asn.get(reserved) is None, reserved
    codes = asn.lookup(addr.parse_array(pa.array([ip for ip, _, _ in KNOWN_ASN])))
    assert [asn.values[c][0] for c in codes.tolist()] == [n for _, n, _ in KNOWN_ASN]
    assert country.source.startswith("package:geoip2fast ")
    assert (
        asn.source == f"package:plevin-db-network {importlib.metadata.version('plevin-db-network')}"
    )
    assert asn.rows > 400_000 and sum(v[0] is not None for v in asn.values) > 70_000


def _plevin_answer(db: Any, ip: str) -> tuple[int | None, str] | None:
    """What plevin's public lookup() says, in the embedded table's (asn, name) form."""
    net = db.lookup(ip).network
    if net is None:
        return None
    name = (net.operator.company if net.operator and net.operator.company else None) or net.handle
    if net.asn is None and not name:
        return None
    return net.asn, (name or "").strip()


def test_embedded_asn_equals_plevin_lookup(embedded: tuple[geo.GeoTable, geo.GeoTable]) -> None:
    """Random addresses and both sides of random range bounds answer as plevin.lookup() does."""
    asn = embedded[1]
    db = plevin.Plevin(embedded_mod.embedded_data_file("asn")[0])
    rng = random.Random(7)
    probes: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv4Address(rng.getrandbits(32)) for _ in range(2000)
    ]
    probes += [ipaddress.IPv6Address(2 << 124 | rng.getrandbits(124)) for _ in range(500)]
    bounds = list(asn.table.ranges())
    for lo, hi, _ in rng.sample(bounds, 1000):
        for edge in (int.from_bytes(lo, "big") - 1, int.from_bytes(hi, "big") + 1):
            if 0 <= edge < 2**128:
                probes.append(
                    ipaddress.IPv6Address(edge).ipv4_mapped or ipaddress.IPv6Address(edge)
                )
    checked = answered = 0
    for ip in map(str, probes):
        want = _plevin_answer(db, ip)
        assert asn.get(ip) == want, ip
        checked += 1
        answered += want is not None
    assert checked > 3500 and answered > checked // 2


def test_embedded_cache_and_snapshots(
    cache_dir: Path,
    embedded: tuple[geo.GeoTable, geo.GeoTable],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each table is built once and cached; a torn cache file is rebuilt from the package."""
    files = {k: list(cache_dir.glob(f"embedded-v*-{d}-*-{k}.npz")) for k, d in SOURCES}
    assert all(len(found) == 1 for found in files.values()), files
    embedded_mod._LOADED.clear()
    for table, again in zip(
        embedded, (geo.embedded_country(cache_dir), geo.embedded_asn(cache_dir)), strict=True
    ):
        assert again is not table and again.rows == table.rows
        assert (again.meta, again.source) == (table.meta, table.source)
        assert again.get("175.45.176.1") == table.get("175.45.176.1")
    files["country"][0].write_bytes(b"torn")
    embedded_mod._LOADED.clear()
    assert geo.embedded_country(cache_dir).rows == embedded[0].rows  # rebuilt from the package
    assert files["country"][0].stat().st_size > 1_000_000
    snaps = geo.embedded_snapshots(cache_dir)
    assert [s["kind"] for s in snaps] == ["geo-country", "geo-asn"]
    for s, (_, dist) in zip(snaps, SOURCES, strict=True):
        assert s["name"] == "embedded" and s["valid_from"] is None
        assert s["source"] == f"package:{dist} {importlib.metadata.version(dist)}"
        assert s["sha256"] == hashlib.sha256(Path(s["path"]).read_bytes()).hexdigest()
        assert s["id"] == f"{s['kind']}:embedded:{s['sha256'][:12]}" and s["rows"] > 100_000
    built = plevin.Plevin(snaps[1]["path"]).built  # the database's own build date
    assert snaps[1]["retrieved_at"] == datetime.fromisoformat(built).replace(tzinfo=UTC)
    # the registry loaders use the default cache, ~/.cache/rogueflow: seed one there
    (tmp_path / ".cache").mkdir()
    shutil.copytree(cache_dir, tmp_path / ".cache" / "rogueflow")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert geo.load_embedded_country(snaps[0]["path"]).get("8.8.8.8") == "US"
    assert geo.load_embedded_asn(snaps[1]["path"]).get("8.8.8.8")[0] == 15169


def test_embedded_asn_refuses_damaged_files(tmp_path: Path) -> None:
    """Cut, corrupted or foreign files fail with InputError naming the file; never load."""
    real, _ = embedded_mod.embedded_data_file("asn")
    data = real.read_bytes()
    flipped = bytearray(data)
    for k in range(len(data) // 5, len(data) // 5 + 4096):  # inside the LZMA blocks
        flipped[k] ^= 0xA5
    cases = {
        "cut.plv": data[: len(data) // 3],
        "flipped.plv": bytes(flipped),
        "no-sections.plv": b"PLEVIN\0\x02\x02\x00\x00\x00{}",
        "country.plv": gzip.compress(b"not a plevin file"),
        "empty.plv": b"",
    }
    for name, content in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(InputError) as err:
            embedded_mod._asn_table(path, "test")
        assert str(path) in str(err.value), name
    with pytest.raises(InputError, match="is not the one plevin-db-network shipped"):
        embedded_mod._check_record("asn", real, "0" * 64)


def test_geotable_npz_round_trip(tmp_path: Path) -> None:
    f = tmp_path / "d"
    f.write_text(RIR)
    t = geo.load_rir_delegated(f)
    t.to_npz(tmp_path / "t.npz")
    back = geo.GeoTable.from_npz(tmp_path / "t.npz")
    assert (back.kind, back.valid_from, back.get("10.0.0.1")) == ("country", t.valid_from, "JP")
    assert back.describe() == t.describe()


def test_safe_decoder_refuses_globals(tmp_path: Path) -> None:
    import pickle

    bad = tmp_path / "evil.dat.gz"
    with gzip.open(bad, "wb") as fh:
        pickle.dump((120, {"info": "x", "country": True, "asn": True}, 1, [print]), fh)
    with pytest.raises(InputError, match="refusing global"):
        embedded_mod._decode_geoip2fast(bad)
