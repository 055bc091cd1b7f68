"""Sanctions lists: the OFAC advanced XML and legacy CSV parsers, snapshots and diffs.

The shared list (../shared/data/ofac-sdn, issue of 2025-11-19) is parsed once per
session in a child process, which also measures its peak memory; its per-asset
address sets are checked three ways: exact counts, a plain-text extraction of the
same XML, and the per-asset lists a public tool extracted from the 2024-09-27 issue.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import json
import re
import socket
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rogueflow.errors import ConfigError, InputError
from rogueflow.sanctions import ofac_csv, ofac_xml
from rogueflow.sanctions.model import SanctionsList, read_list
from rogueflow.sanctions.snapshots import SanctionsStore, diff
from rogueflow.sanctions.tagpack import WalletSighting, read_tagpack, wallet_tagpack
from tests.conftest import SHARED
from tests.sanctionslab import ListedParty, advanced_xml, legacy_csv

OFAC = SHARED / "ofac-sdn"
XML_2025 = OFAC / "sdn_advanced.xml.bz2"
LEGACY_2024 = OFAC / "sdn-legacy-2024-05-03.csv"
LISTS_2024_09 = OFAC / "lists-0xb10c-2024-09"

#: distinct addresses per asset in the 2025-11-19 issue (distinct by normalised address)
COUNTS_2025 = {
    "ARB": 1, "BCH": 7, "BNB": 1, "BSC": 1, "BSV": 1, "BTG": 1, "DASH": 3, "ETC": 1,
    "ETH": 77, "LTC": 10, "SOL": 1, "TRX": 29, "USDC": 2, "USDT": 93, "XBT": 517, "XMR": 8,
    "XRP": 1, "XVG": 1, "ZEC": 3,
}  # fmt: skip
#: the legacy CSV of 2024-05-03 (remarks cut at 1,000 characters lose some addresses)
COUNTS_LEGACY = {
    "ARB": 1, "BCH": 2, "BSC": 1, "BTG": 1, "DASH": 3, "ETC": 1, "ETH": 49, "LTC": 4,
    "TRX": 4, "USDC": 2, "USDT": 17, "XBT": 196, "XMR": 3, "XVG": 1, "ZEC": 2,
}  # fmt: skip
LAZARUS_ETH = [
    "0x098B716B8Aaf21512996dC57EB0615e2383E2f96",
    "0xa0e1c89Ef1a489c9C7dE96311eD5Ce5D32c20E4B",
    "0x3Cffd56B47B7b41c56258D9C7731ABaDc360E073",
    "0x53b6936513e738f44FB50d2b9476730C0Ab3Bfc1",
    "0x35fB6f6DB4fb05e6A4cE86f2C93691425626d4b1",
    "0xF7B31119c2682c88d88D455dBb9d5932c65Cf1bE",
    "0x3e37627dEAA754090fBFbb8bd226c1CE66D255e9",
    "0x08723392Ed15743cc38513C4925f5e6be5c17243",
]
TORNADO_CASH = "39796"  # delisted by OFAC on 2025-03-21
#: a parse this far over its own baseline would mean the tree is being kept (a full
#: ElementTree of the 121 MB document takes about a gigabyte)
MAX_PARSE_GROWTH_KB = 64 * 1024

_CHILD = """
import json, re, sys, time
from pathlib import Path
from rogueflow.sanctions import ofac_xml

def status(key):
    return int(re.search(key + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))

base = status("VmRSS")
Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
t = time.monotonic()
lst = ofac_xml.parse(sys.argv[1])
peak = status("VmHWM")
with open(sys.argv[2], "w") as fh:
    json.dump(lst.to_json(), fh)
print(json.dumps({"baseline_kb": base, "peak_kb": peak, "seconds": time.monotonic() - t}))
"""


@pytest.fixture(scope="session")
def xml_2025(tmp_path_factory: pytest.TempPathFactory) -> tuple[SanctionsList, dict[str, float]]:
    """The shared 2025 list, parsed in a child process that reports its peak RSS."""
    if not XML_2025.is_file():
        pytest.skip(f"{XML_2025} not present")
    out = tmp_path_factory.mktemp("sdn") / "parsed.json"
    run = subprocess.run(
        [sys.executable, "-c", _CHILD, str(XML_2025), str(out)],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    stats = json.loads(run.stdout.strip().splitlines()[-1])
    return SanctionsList.from_json(json.loads(out.read_text())), stats


@pytest.fixture(scope="session")
def legacy() -> SanctionsList:
    if not LEGACY_2024.is_file():
        pytest.skip(f"{LEGACY_2024} not present")
    return ofac_csv.parse(LEGACY_2024)


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


PARTIES = [
    ListedParty(
        1,
        "TEST MINING FRONT",
        [("ZEC", "t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd"), ("ETH", LAZARUS_ETH[0])],
        ("DPRK3", "CYBER2"),
    ),
    ListedParty(
        2,
        "KIM, Il Sung",
        [
            ("XBT", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
            ("XBT", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
        ],
        individual=True,
        designated=(2020, 1, 31),
        false_address=("XBT", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
    ),
    ListedParty(3, "NO WALLET TRADING", [], ("IRAN",)),
]


# ---- the shared 2025 advanced XML ---------------------------------------------------------


@pytest.mark.slow
@pytest.mark.needs_shared
def test_full_list_counts_per_asset(xml_2025: tuple[SanctionsList, dict[str, float]]) -> None:
    lst, _ = xml_2025
    assert lst.list_date == date(2025, 11, 19)
    assert len(lst.parties) == 18367
    assert lst.assets() == COUNTS_2025
    # two XBT addresses and one LTC address are listed for two parties each
    assert len(lst.listings) == sum(COUNTS_2025.values()) + 3
    assert lst.problems == []


@pytest.mark.slow
@pytest.mark.needs_shared
def test_full_list_parsed_in_bounded_memory(
    xml_2025: tuple[SanctionsList, dict[str, float]],
) -> None:
    _, stats = xml_2025
    growth = stats["peak_kb"] - stats["baseline_kb"]
    print(f"peak RSS {stats['peak_kb'] / 1024:.0f} MiB, parse added {growth / 1024:.1f} MiB")
    assert growth < MAX_PARSE_GROWTH_KB


@pytest.mark.slow
@pytest.mark.needs_shared
def test_full_list_equals_a_plain_text_extraction(
    xml_2025: tuple[SanctionsList, dict[str, float]],
) -> None:
    """Every digital-currency feature of the raw text, found by regular expressions."""
    lst, _ = xml_2025
    text = bz2.decompress(XML_2025.read_bytes()).decode("utf-8")
    types = dict(
        (m.group(1), m.group(2))
        for m in re.finditer(
            r'<FeatureType ID="(\d+)"[^>]*>Digital Currency Address - (\w+)</FeatureType>', text
        )
    )
    raw: dict[str, set[str]] = {}
    for m in re.finditer(
        r'<Feature ID="\d+" FeatureTypeID="(\d+)">\s*<FeatureVersion[^>]*>\s*'
        r"<Comment(?:\s*/>|>[^<]*</Comment>)\s*"  # some carry a note ("only active on BCH")
        r'<VersionDetail DetailTypeID="1432">([^<]+)</VersionDetail>',
        text,
    ):
        if m.group(1) in types:
            raw.setdefault(types[m.group(1)], set()).add(m.group(2).strip())
    assert {a: set(lst.addresses(a)) for a in raw} == raw
    assert set(lst.assets()) == set(raw)
    features = re.findall(r'<Feature ID="\d+" FeatureTypeID="(\d+)"', text)
    assert sum(f in types for f in features) == len(lst.listings)  # every feature, once


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


@pytest.mark.slow
@pytest.mark.needs_shared
def test_full_list_against_the_2024_09_lists(
    xml_2025: tuple[SanctionsList, dict[str, float]], legacy: SanctionsList
) -> None:
    """0xB10C's tool extracted the 2024-09-27 issue; ours reads the 2025-11-19 issue.

    Assets that did not change in between must come out byte-identical (same spelling,
    same code-point order). The others differ only by what OFAC did in between:
    additions (new designations, and addresses added to earlier ones: Garantex Europe,
    Cheil Credit Bank, Ansarallah and Sa'id al-Jamal got TRON/USDT and ETH addresses in
    2025) and one removal: Tornado Cash, delisted on 2025-03-21, takes 90 ETH addresses
    with it.
    """
    lst, _ = xml_2025
    old = {
        p.name.removeprefix("sanctioned_addresses_").removesuffix(".txt"): _lines(p)
        for p in LISTS_2024_09.glob("sanctioned_addresses_*.txt")
    }
    unchanged = {
        "ARB",
        "BCH",
        "BSC",
        "BSV",
        "BTG",
        "DASH",
        "ETC",
        "LTC",
        "USDC",
        "XRP",
        "XVG",
        "ZEC",
    }
    for asset in unchanged:
        assert lst.addresses(asset) == old[asset], asset
    assert set(old) - unchanged == {"ETH", "TRX", "USDT", "XBT", "XMR"}
    assert set(lst.assets()) - set(old) == {"BNB", "SOL"}  # first listed after 2024-09
    earlier_parties_with_new_addresses = {"36025", "22985", "47664", "32171"}
    for asset in ("ETH", "TRX", "USDT", "XBT", "XMR"):
        new = set(lst.addresses(asset))
        for address in new - set(old[asset]):
            owners = {i.party_id for i in lst.listings if i.address == address}
            for pid in owners:
                p = lst.parties[pid]
                assert (p.designated or "") > "2024-09-27" or pid in (
                    earlier_parties_with_new_addresses
                ), (asset, address, p)
    removed_eth = set(old["ETH"]) - set(lst.addresses("ETH"))
    assert len(removed_eth) == 90
    assert all(set(old[a]) <= set(lst.addresses(a)) for a in ("TRX", "USDT", "XBT", "XMR"))
    assert TORNADO_CASH not in lst.parties
    in_legacy = {i.address: i.party_id for i in legacy.listings}
    assert {in_legacy[a] for a in removed_eth if a in in_legacy} == {TORNADO_CASH}


@pytest.mark.slow
@pytest.mark.needs_shared
def test_full_list_known_entries(xml_2025: tuple[SanctionsList, dict[str, float]]) -> None:
    lst, _ = xml_2025
    assert set(LAZARUS_ETH) <= set(lst.addresses("ETH"))
    lazarus = lst.parties["27307"]
    assert (lazarus.name, lazarus.programmes, lazarus.designated, lazarus.kind) == (
        "Lazarus Group",
        ("DPRK3",),
        "2019-09-13",
        "entity",
    )
    for address in LAZARUS_ETH:
        r = lst.screen(address.lower())  # case-insensitive for Ethereum hex
        assert r.match and r.matches[0].party.id == "27307", address
    assert lst.parties["25308"].name == "YAN, Xiaobing"  # last name first
    # two entries are malformed on the list itself: reported invalid, kept, never dropped
    invalid = {(i.asset, i.address) for i in lst.listings if i.valid is False}
    assert invalid == {
        ("XBT", "TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq"),  # a TRON address filed under XBT
        ("XMR", "5be5543ff73456ab9f2d207887e2af87322c651ea1a873c5b25b7ffae456c320"),  # a hash
    }
    assert all(i.valid for i in lst.listings if (i.asset, i.address) not in invalid)


@pytest.mark.slow
@pytest.mark.needs_shared
def test_legacy_dprk_addresses_screened(
    xml_2025: tuple[SanctionsList, dict[str, float]], legacy: SanctionsList
) -> None:
    """Acceptance 2: the legacy CSV's DPRK-programme addresses all match (their own list);
    against the 2025 list all match the same party except Tornado Cash's, delisted."""
    lst, _ = xml_2025
    dprk = [
        i
        for i in legacy.listings
        if any(p.startswith("DPRK") for p in legacy.parties[i.party_id].programmes)
    ]
    assert len(dprk) == 69
    for item in dprk:
        own = legacy.screen(item.address)
        assert own.match is True and own.matches[0].party.id == item.party_id
    missed = []
    for item in dprk:
        r = lst.screen(item.address)
        assert r.checked.valid is True
        if r.match:
            assert item.party_id in {m.party.id for m in r.matches}
            assert r.list_date == "2025-11-19"
        else:
            missed.append(item.party_id)
    assert missed == [TORNADO_CASH] * 12


@pytest.mark.slow
@pytest.mark.needs_shared
def test_diff_legacy_2024_to_2025(
    xml_2025: tuple[SanctionsList, dict[str, float]], legacy: SanctionsList
) -> None:
    lst, _ = xml_2025
    d = diff(legacy, lst, "legacy", "2025")
    assert TORNADO_CASH in {pid for pid, _, _ in d.removed_parties}
    assert {a for a, *_ in d.removed_addresses} <= {
        "ETH",
        "USDC",
        "USDT",
        "XBT",
        "ETC",
        "BSC",
        "ARB",
    }
    assert {ad for _, ad, pid, _ in d.removed_addresses if pid == TORNADO_CASH}
    assert not {ad for _, ad, _, _ in d.removed_addresses} & set(LAZARUS_ETH)
    assert len(d.added_parties) > 3000
    doc = d.to_json()
    assert doc["a"]["list_date"] == "2024-05-03" and doc["b"]["list_date"] == "2025-11-19"


# ---- the legacy CSV -------------------------------------------------------------------------


@pytest.mark.needs_shared
def test_legacy_csv_counts_and_cut_remarks(legacy: SanctionsList) -> None:
    assert legacy.list_date == date(2024, 5, 3)  # from the file name
    assert len(legacy.parties) == 14965
    assert legacy.assets() == COUNTS_LEGACY
    assert legacy.parties["28263"].programmes == ("DPRK3", "CYBER2")
    assert legacy.parties["27307"].name == "LAZARUS GROUP"
    assert [i.address for i in legacy.listings if i.party_id == "27307"] == LAZARUS_ETH
    # an address running into the 1,000-character cut is left out, never shortened
    assert not any(i.address.startswith("1B64QRxf") for i in legacy.listings)
    cut = [p for p in legacy.problems if "remarks cut" in p]
    assert len(cut) == 16  # 18 remarks reach the cap; two of them end there cleanly
    assert sum("runs into" in p for p in legacy.problems) == 6


def test_legacy_csv_small(tmp_path: Path) -> None:
    path = _write(tmp_path / "sdn.csv", legacy_csv(PARTIES))
    lst = ofac_csv.parse(path, list_date=date(2025, 1, 2))
    assert lst.assets() == {"ETH": 1, "XBT": 1, "ZEC": 1}
    assert lst.parties["2"].kind == "individual" and lst.parties["1"].kind == "entity"
    assert lst.parties["1"].programmes == ("DPRK3", "CYBER2")
    assert lst.problems == []
    first_row = legacy_csv(PARTIES).split("\r\n")[0]
    short = _write(tmp_path / "short.csv", first_row + '\r\n7,"X","Y"\r\n')
    with pytest.raises(InputError, match=r"short\.csv, line 2: 3 columns, expected 12"):
        ofac_csv.parse(short)
    with pytest.raises(InputError, match=r"line 1: ent_num 'abc' is not a number"):
        ofac_csv.parse(_write(tmp_path / "word.csv", "abc" + first_row[1:]))


@pytest.mark.parametrize("cut", [1, 10, 60, 150, 200])
def test_legacy_csv_truncated(tmp_path: Path, cut: int) -> None:
    text = legacy_csv(PARTIES)
    with pytest.raises(InputError):
        ofac_csv.parse(_write(tmp_path / "sdn-2025-01-02.csv", text[: len(text) - cut - 3]))


def test_legacy_csv_cut_at_a_row_boundary_is_flagged(tmp_path: Path) -> None:
    text = legacy_csv(PARTIES)
    lst = ofac_csv.parse(_write(tmp_path / "sdn.csv", text.rsplit("\r\n", 2)[0] + "\r\n"))
    assert len(lst.parties) == 2
    assert any("end-of-file marker" in p for p in lst.problems)


# ---- small advanced XML documents -------------------------------------------------------------


def test_small_xml(tmp_path: Path) -> None:
    lst = ofac_xml.parse(_write(tmp_path / "a.xml", advanced_xml(PARTIES)))
    assert lst.list_date == date(2025, 1, 2)
    assert lst.parties["2"].name == "KIM, Il Sung"
    assert lst.parties["2"].kind == "individual" and lst.parties["1"].kind == "entity"
    assert lst.parties["1"].programmes == ("DPRK3", "CYBER2")
    assert lst.parties["2"].designated == "2020-01-31"
    assert lst.parties["3"].programmes == ("IRAN",)
    assert lst.assets() == {"ETH": 1, "XBT": 1, "ZEC": 1}
    assert lst.addresses("btc") == ["1BoatSLRHtKNngkdXEeobR76b53LETtpyT"]
    # the feature marked reliability "False" is not an address of the party
    assert "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy" not in lst.addresses()
    assert lst.problems == ["profile 2: XBT address marked False, left out"]


@pytest.mark.parametrize("ns", ["", "http://www.un.org/sanctions/1.0"])
def test_small_xml_any_namespace(tmp_path: Path, ns: str) -> None:
    lst = ofac_xml.parse(_write(tmp_path / "a.xml", advanced_xml(PARTIES, ns=ns)))
    assert lst.assets() == {"ETH": 1, "XBT": 1, "ZEC": 1}


@pytest.mark.parametrize("pack", ["bz2", "gz"])
def test_compressed_xml_and_its_truncation(tmp_path: Path, pack: str) -> None:
    raw = advanced_xml(PARTIES * 1).encode()
    data = bz2.compress(raw) if pack == "bz2" else gzip.compress(raw)
    assert read_list(_write(tmp_path / f"a.xml.{pack}", data)).assets() == {
        "ETH": 1,
        "XBT": 1,
        "ZEC": 1,
    }
    for cut in (10, len(data) // 2, len(data) - 5):
        with pytest.raises(InputError, match=r"truncated|cannot read"):
            ofac_xml.parse(_write(tmp_path / f"cut.xml.{pack}", data[:cut]))


def test_truncated_xml_is_an_error_at_every_cut(tmp_path: Path) -> None:
    text = advanced_xml(PARTIES)
    end = len(text.rstrip())
    for cut in range(1, end, max(1, end // 97)):
        path = _write(tmp_path / "cut.xml", text[:cut])
        with pytest.raises(InputError) as err:
            ofac_xml.parse(path)
        assert str(path) in str(err.value)


@pytest.mark.needs_shared
def test_truncated_shared_bz2(tmp_path: Path) -> None:
    if not XML_2025.is_file():
        pytest.skip("shared data missing")
    with open(XML_2025, "rb") as fh:
        head = fh.read(48 * 1024)
    with pytest.raises(InputError, match="truncated: the compressed stream ends early"):
        ofac_xml.parse(_write(tmp_path / "sdn_advanced.xml.bz2", head))


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE Sanctions [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<Sanctions><DateOfIssue><Year>&lol9;</Year></DateOfIssue></Sanctions>
"""


def test_billion_laughs_refused(tmp_path: Path) -> None:
    path = _write(tmp_path / "laughs.xml", BILLION_LAUGHS)
    started = time.monotonic()
    with pytest.raises(InputError, match=r"laughs\.xml: refused: the document has a DTD"):
        ofac_xml.parse(path)
    assert time.monotonic() - started < 5  # refused up front, nothing expanded
    with pytest.raises(InputError, match="refused"):
        ofac_xml.parse(_write(tmp_path / "laughs.xml.bz2", bz2.compress(BILLION_LAUGHS.encode())))


class _Listener:
    """A loopback TCP listener that counts connections (an XXE must make none)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


def test_xxe_refused_without_reading_anything(tmp_path: Path) -> None:
    secret = _write(tmp_path / "secret.txt", "TOP-SECRET-CONTENT")
    listener = _Listener()
    try:
        docs = {
            "file": f'<!DOCTYPE Sanctions [<!ENTITY x SYSTEM "file://{secret}">]>'
            "<Sanctions><DateOfIssue><Year>&x;</Year></DateOfIssue></Sanctions>",
            "http": f'<!DOCTYPE Sanctions [<!ENTITY x SYSTEM "http://127.0.0.1:{listener.port}/x">]>'
            "<Sanctions>&x;</Sanctions>",
            "parameter": "<!DOCTYPE Sanctions [<!ENTITY % p SYSTEM "
            f'"http://127.0.0.1:{listener.port}/dtd"> %p;]><Sanctions/>',
            "external-dtd": f'<!DOCTYPE Sanctions SYSTEM "http://127.0.0.1:{listener.port}/d.dtd">'
            "<Sanctions/>",
        }
        for name, doc in docs.items():
            path = _write(tmp_path / f"{name}.xml", doc)
            with pytest.raises(InputError, match="refused") as err:
                ofac_xml.parse(path)
            assert "TOP-SECRET" not in str(err.value), name
            assert str(path) in str(err.value)
        time.sleep(0.3)
        assert listener.connections == 0
    finally:
        listener.close()


@pytest.mark.parametrize(
    ("doc", "problem"),
    [
        ("<Other/>", "root element <Other>"),
        ("<Sanctions><DateOfIssue><Year>2025</Year></DateOfIssue></Sanctions>", "no Reference"),
        (
            "<Sanctions><DistinctParties><DistinctParty/></DistinctParties></Sanctions>",
            "FeatureType",
        ),
        ("", "malformed XML"),
        ('<?xml version="1.0" encoding="foo"?><Sanctions/>', "unreadable text encoding"),
        ('<?xml version="1.0" encoding="utf-16"?><Sanctions/>', "malformed XML"),
        (
            "<Sanctions><DateOfIssue><Year>2025</Year><Month>13</Month></DateOfIssue></Sanctions>",
            "bad date",
        ),
    ],
)
def test_not_an_ofac_list(tmp_path: Path, doc: str, problem: str) -> None:
    with pytest.raises(InputError, match=problem):
        ofac_xml.parse(_write(tmp_path / "x.xml", doc))


# ---- fuzz ----------------------------------------------------------------------------------

_FUZZ = settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])


@_FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_xml_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "f.xml", data)
    with pytest.raises(InputError):
        ofac_xml.parse(path)


_DECLS = [
    "",
    '<?xml version="1.0"?>',
    '<?xml version="1.0" encoding="latin-1"?>',
    '<?xml version="1.0" encoding="x-no-such-codec"?>',
    '<?xml version="1.1" encoding="utf-16"?>',
    '<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n<!DOCTYPE Sanctions>',
]


@_FUZZ
@given(decl=st.sampled_from(_DECLS), body=st.text(max_size=300), tags=st.booleans())
def test_fuzz_xml_declarations_and_text(tmp_path: Path, decl: str, body: str, tags: bool) -> None:
    doc = decl + (f"<Sanctions><DateOfIssue>{body}</DateOfIssue></Sanctions>" if tags else body)
    with pytest.raises(InputError):
        ofac_xml.parse(_write(tmp_path / "d.xml", doc.encode("utf-8", "surrogatepass")))


@_FUZZ
@given(data=st.binary(max_size=600))
def test_fuzz_csv_arbitrary_bytes(tmp_path: Path, data: bytes) -> None:
    path = _write(tmp_path / "f.csv", data)
    try:
        lst = ofac_csv.parse(path)
    except InputError:
        return
    assert all(p.id.isdigit() for p in lst.parties.values())


_SMALL = advanced_xml(PARTIES[:2]).encode()


@_FUZZ
@given(
    cut=st.integers(0, len(_SMALL)),
    flips=st.lists(st.tuples(st.integers(0, len(_SMALL) - 1), st.integers(0, 255)), max_size=4),
    pack=st.sampled_from(["", "bz2", "gz"]),
)
def test_fuzz_xml_mutations(
    tmp_path: Path, cut: int, flips: list[tuple[int, int]], pack: str
) -> None:
    """Damaged real-shaped documents: rogueflow's own error, or a list whose addresses
    are still validated (a flipped byte inside a text node is not a parse error)."""
    data = bytearray(_SMALL[:cut])
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    raw = bytes(data)
    raw = bz2.compress(raw) if pack == "bz2" else gzip.compress(raw) if pack == "gz" else raw
    try:
        lst = ofac_xml.parse(_write(tmp_path / "m.xml", raw))
    except InputError:
        return
    assert lst.list_date is not None
    assert all(i.valid in (True, False, None) for i in lst.listings)


@_FUZZ
@given(data=st.binary(max_size=400) | st.text(max_size=300).map(str.encode))
def test_fuzz_tagpack(tmp_path: Path, data: bytes) -> None:
    with contextlib.suppress(InputError):
        read_tagpack(_write(tmp_path / "t.yaml", data))


# ---- snapshots and diffs --------------------------------------------------------------------


def test_snapshots_import_list_newest_and_diff(tmp_path: Path, workspace: object) -> None:
    from rogueflow.workspace import Workspace

    assert isinstance(workspace, Workspace)
    a = _write(tmp_path / "a.xml", advanced_xml(PARTIES[:2], issued=(2024, 6, 1)))
    later = [
        PARTIES[0],
        ListedParty(
            4,
            "NEW EXCHANGE",
            [
                (
                    "XMR",
                    "888tNkZrPN6JsEgekjMnABU4TBzc2Dt29EPAvkRxbANsAnjyPbb3iQ1YBRk1UXcdRsiKc9dhwMVgN5S9cQUiyoogDavup3H",
                )
            ],
            ("CYBER2",),
        ),
    ]
    b = _write(
        tmp_path / "b.xml.bz2", bz2.compress(advanced_xml(later, issued=(2025, 2, 3)).encode())
    )
    c = _write(tmp_path / "sdn-2025-02-03.csv", legacy_csv(later))
    with SanctionsStore(workspace) as store:
        sb, added = store.import_file(b)
        assert (
            added and sb.id.startswith("sanctions:ofac-sdn:") and sb.list_date == date(2025, 2, 3)
        )
        sa, _ = store.import_file(a)
        again, added = store.import_file(a)
        assert (again.id, added) == (sa.id, False)
        sc, _ = store.import_file(c)  # same date as b, the legacy format
        assert sc.name == "ofac-sdn-legacy" and sc.list_date == date(2025, 2, 3)
        snaps = store.list()
        assert [s.id for s in snaps] == [sa.id, sc.id, sb.id]  # the XML wins the tie
        assert snaps[0].valid_to == date(2025, 2, 3) and snaps[2].valid_to is None
        assert store.newest() == snaps[2]
        assert store.get("ofac-sdn").id == sb.id
        assert store.get(sa.id[:22]).id == sa.id
        assert [s.id for s in store.at(date(2024, 12, 31))] == [sa.id]
        assert store.at(date(2020, 1, 1)) == []
        with pytest.raises(ConfigError, match="no sanctions snapshot"):
            store.get("nope")
        d = diff(store.load(sa), store.load(sb), sa.id, sb.id)
        assert [r[:3] for r in d.added_addresses] == [("XMR", later[1].addresses[0][1], "4")]
        assert [r[:3] for r in d.removed_addresses] == [
            ("XBT", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "2")
        ]
        assert [r[0] for r in d.added_parties] == ["4"] and [r[0] for r in d.removed_parties] == [
            "2"
        ]
        assert d.lines()[-1] == "addresses: +1 -1; parties: +1 -1"
    # a fresh store reads the parsed form; deleting it rebuilds it from the stored file
    for f in (workspace.root / "sanctions" / "parsed").iterdir():
        f.unlink()
    with SanctionsStore(workspace) as store:
        assert store.load(store.get(sb.id)).assets() == {"ETH": 1, "XMR": 1, "ZEC": 1}
        store.remove(sc.id)
        assert [s.id for s in store.list()] == [sa.id, sb.id]
    assert len(list((workspace.root / "sanctions" / "files").iterdir())) == 2


def test_failed_import_stores_nothing(tmp_path: Path, workspace: object) -> None:
    from rogueflow.workspace import Workspace

    assert isinstance(workspace, Workspace)
    bad = _write(tmp_path / "cut.xml", advanced_xml(PARTIES)[:500])
    undated = _write(tmp_path / "sdn.csv", legacy_csv(PARTIES))
    with SanctionsStore(workspace) as store:
        with pytest.raises(InputError, match=r"cut\.xml"):
            store.import_file(bad)
        with pytest.raises(ConfigError, match="--list-date"):
            store.import_file(undated)
        assert store.list() == []
        snap, _ = store.import_file(undated, list_date=date(2024, 1, 1), name="mine")
        assert snap.id.startswith("sanctions:mine:")
    root = workspace.root / "sanctions"
    assert not list((root / "tmp").iterdir())
    assert len(list((root / "files").iterdir())) == 1


# ---- TagPacks --------------------------------------------------------------------------------


def test_read_tagpack_header_inheritance(tmp_path: Path) -> None:
    doc = """\
title: Test TagPack
creator: analyst
source: https://example.org/list
currency: ETH
confidence: authority_data
lastmod: 2024-01-02
tags:
- address: "0x098b716b8aaf21512996dc57eb0615e2383e2f96"
  label: Lazarus Group
  category: perpetrator
- address: 1BoatSLRHtKNngkdXEeobR76b53LETtpyT
  currency: BTC
  label: boat
- entity: 12345
  label: an entity tag, no address
"""
    pack = read_tagpack(_write(tmp_path / "p.yaml", doc))
    assert [t.currency for t in pack.tags] == ["ETH", "BTC"]
    assert pack.skipped == 1 and pack.tags[0].source == "https://example.org/list"
    assert pack.tags[0].lastmod == "2024-01-02"
    assert pack.lookup("0x098b716b8aaf21512996dc57eb0615e2383e2f96")[0].label == "Lazarus Group"
    with pytest.raises(InputError, match=r"tag 1: mandatory field 'label'"):
        read_tagpack(
            _write(
                tmp_path / "q.yaml",
                "title: t\ncreator: c\ntags:\n- address: x\n  source: s\n  currency: BTC\n",
            )
        )
    with pytest.raises(InputError, match="header field 'creator'"):
        read_tagpack(_write(tmp_path / "r.yaml", "title: t\ntags: []\n"))
    with pytest.raises(InputError, match="malformed YAML"):
        read_tagpack(_write(tmp_path / "s.yaml", "title: [unclosed\n"))
    with pytest.raises(InputError, match="malformed YAML"):  # safe_load builds no objects
        read_tagpack(_write(tmp_path / "u.yaml", "!!python/object/apply:os.system ['true']\n"))


def test_wallet_tagpack_round_trip(tmp_path: Path) -> None:
    from datetime import datetime

    from rogueflow.sanctions.tagpack import dump_tagpack

    s = WalletSighting(
        "t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd", "ZEC", ("eu1-zcash.flypool.org",), 3,
        ("192.168.2.148",), datetime(2017, 12, 25, 10, 3, 8), datetime(2017, 12, 25, 10, 21),
        ("94.23.199.191:3333",),
    )  # fmt: skip
    doc = wallet_tagpack([s], title="t", creator="rogueflow", source="rogueflow test")
    pack = read_tagpack(_write(tmp_path / "w.yaml", dump_tagpack(doc)))
    (tag,) = pack.tags
    assert (tag.address, tag.currency, tag.category, tag.confidence) == (
        s.wallet, "ZEC", "miner", "forensic",
    )  # fmt: skip
    assert "eu1-zcash.flypool.org" in tag.label
    context = json.loads(tag.context or "{}")
    assert context["flows"] == 3 and context["hosts"] == ["192.168.2.148"]
    assert context["first_seen"] == "2017-12-25T10:03:08Z"
