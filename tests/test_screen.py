"""Address screening: per-chain validation, `rogueflow screen`, the `sanctions` commands,
and the automatic screening of wallets seen in traffic (acceptance 3 of issue 8)."""

from __future__ import annotations

import hashlib
import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow.cli.main import cli
from rogueflow.detect.wallets import B58, eip55, identify, keccak256
from rogueflow.sanctions import ofac_csv
from rogueflow.sanctions.addresses import cashaddr_to_legacy, check, monero_encode
from rogueflow.sanctions.model import SanctionsList
from tests.conftest import SHARED
from tests.sanctionslab import ListedParty, advanced_xml, legacy_csv

LEGACY_2024 = SHARED / "ofac-sdn" / "sdn-legacy-2024-05-03.csv"
MINING = SHARED / "ndpi" / "pcap" / "mining.pcapng"
SANCTIONED_ZEC = "t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd"  # eu1-zcash.flypool.org login in MINING
CHECKSUMMED = {"base58check", "bech32", "bech32m", "eip55", "monero", "cashaddr"}
REQUIRED_KEYS = {"address", "asset", "valid", "match", "party", "programme", "list_date"}


# ---- independent encoders (the tests' own, from the specifications) -------------------------


def _b58(raw: bytes, alphabet: str = B58) -> str:
    n, out = int.from_bytes(raw, "big"), ""
    while n:
        n, r = divmod(n, 58)
        out = alphabet[r] + out
    return alphabet[0] * (len(raw) - len(raw.lstrip(b"\0"))) + out


def _b58check(payload: bytes, alphabet: str = B58) -> str:
    digest = hashlib.sha256(hashlib.sha256(payload).digest()).digest()
    return _b58(payload + digest[:4], alphabet)


_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def _polymod(values: list[int]) -> int:
    gen = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
    chk = 1
    for v in values:
        b = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= gen[i] if (b >> i) & 1 else 0
    return chk


def _bech32(hrp: str, data5: list[int], m: bool) -> str:
    values = [ord(x) >> 5 for x in hrp] + [0] + [ord(x) & 31 for x in hrp] + data5
    const = 0x2BC830A3 if m else 1
    mod = _polymod([*values, 0, 0, 0, 0, 0, 0]) ^ const
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[d] for d in data5 + checksum)


def _to5(data: bytes) -> list[int]:
    acc, bits, out = 0, 0, []
    for b in data:
        acc, bits = (acc << 8) | b, bits + 8
        while bits >= 5:
            bits -= 5
            out.append((acc >> bits) & 31)
    if bits:
        out.append((acc << (5 - bits)) & 31)
    return out


_XRP = "rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz"


@st.composite
def valid_addresses(draw: st.DrawFn) -> tuple[str, str]:
    """(expected asset, a random address with a correct checksum) over many formats."""
    h20 = draw(st.binary(min_size=20, max_size=20))
    kind = draw(st.sampled_from(
        ["p2pkh", "p2sh", "segwit0", "segwit0-32", "taproot", "ltc", "ltc-bech32", "dash",
         "zec", "trx", "xrp", "eth", "xmr", "xmr-sub", "doge"]
    ))  # fmt: skip
    if kind in ("p2pkh", "p2sh"):
        return "XBT", _b58check((b"\x00" if kind == "p2pkh" else b"\x05") + h20)
    if kind == "segwit0":
        return "XBT", _bech32("bc", [0, *_to5(h20)], m=False)
    if kind == "segwit0-32":
        return "XBT", _bech32("bc", [0, *_to5(h20 + h20[:12])], m=False)
    if kind == "taproot":
        return "XBT", _bech32("bc", [1, *_to5(h20 + h20[:12])], m=True)
    if kind == "ltc":
        return "LTC", _b58check(b"\x30" + h20)
    if kind == "ltc-bech32":
        return "LTC", _bech32("ltc", [0, *_to5(h20)], m=False)
    if kind == "dash":
        return "DASH", _b58check(b"\x4c" + h20)
    if kind == "doge":
        return "DOGE", _b58check(b"\x1e" + h20)
    if kind == "zec":
        return "ZEC", _b58check(b"\x1c\xb8" + h20)
    if kind == "trx":
        return "TRX", _b58check(b"\x41" + h20)
    if kind == "xrp":
        return "XRP", _b58check(b"\x00" + h20, _XRP)
    if kind == "eth":
        if int.from_bytes(h20, "big") == 0:
            h20 = b"\x01" + h20[1:]
        return "ETH", "0x" + eip55(h20.hex())
    keys = draw(st.binary(min_size=64, max_size=64))
    raw = bytes([18 if kind == "xmr" else 42]) + keys
    return "XMR", monero_encode(raw + keccak256(raw)[:4])


# ---- per-chain validation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "asset", "check_name"),
    [
        ("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "XBT", "base58check"),
        ("bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3", "XBT", "bech32"),
        ("bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y", "XBT",
         "bech32m"),
        ("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a", "BCH", "cashaddr"),
        ("qr95sy3j9xwd2ap32xkykttr4cvcu7as4y0qverfuy", "BCH", "cashaddr"),
        ("LaMT348PWRnrqeeWArpwQPbuanpXDZGEUz", "LTC", "base58check"),
        ("XnPFsRWTaSgiVauosEwQ6dEitGYXgwznz2", "DASH", "base58check"),
        ("t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd", "ZEC", "base58check"),
        ("GPwg61XoHqQPNmAucFACuQ5H9sGCDv9TpS", "BTG", "base58check"),
        ("TFwjPScaJRCbSWVAywE1S1WgaUgSnyYUbD", "TRX", "base58check"),
        ("rHb9CJAWyB4rj91VRWn96DkukG4bwdtyTh", "XRP", "base58check"),
        ("bnb136ns6lfw4zs5hg4n85vdthaad7hq5m4gtkgf23", "BNB", "bech32"),
        ("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed", "ETH", "eip55"),
        ("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed", "ETH", "hex"),
        ("44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2w"
         "fn3RVGQBEP3A", "XMR", "monero"),
    ],
)  # fmt: skip
def test_known_addresses_validate_and_infer(address: str, asset: str, check_name: str) -> None:
    c = check(address)
    assert (c.valid, c.asset, c.check) == (True, asset, check_name)
    assert check(address, asset).valid is True


def test_listed_asset_decides_the_format() -> None:
    assert check("0x4f47bc496083c727c5fbe3ce9cdf2b0f6496270c", "BSC").valid is True
    assert check("TFwjPScaJRCbSWVAywE1S1WgaUgSnyYUbD", "USDT").check == "base58check"  # TRC-20
    assert check("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "USDT").valid is True  # Omni
    assert check("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "ETH").valid is False
    assert check("TUCsTq7TofTCJRRoHk6RvhMoS2mJLm5Yzq", "XBT").valid is False
    assert check("42RLPACwZPx3vYYmxSueqsogfynBDqXK298EDsNoyoHi", "SOL").check.startswith(
        "base58-32"
    )
    assert check("btc-what", "BTC").asset == "XBT"  # traffic coin code, OFAC asset code


def test_matching_keys() -> None:
    # one BCH address, three spellings
    legacy = "1BpEi6DfDAUFd7GtittLSdBeYJvcoaVggu"
    assert cashaddr_to_legacy("bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a") == legacy
    assert check("QPM2QSZNHKS23Z7629MMS6S4CWEF74VCWVY22GDX6A", "BCH").key == legacy
    assert cashaddr_to_legacy("bitcoincash:ppm2qsznhks23z7629mms6s4cwef74vcwvn0h829pq") == (
        "3CWFddi6m4ndiGyKqzYvsFYagqDLPVMTzC"
    )
    # Ethereum hex and bech32 match case-insensitively
    assert (
        check("0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed").key
        == check("0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED").key
    )
    assert check("BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4").key == (
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
    )
    # a Monero integrated address is keyed on the standard address of the same keys
    integrated = (
        "4LL9oSLmtpccfufTMvppY6JwXNouMBzSkbLYfpAV5Usx3skxNgYeYTRj5UzqtReoS44qo9mtmXCqY45DJ852K5Jv"
        "2bYXZKKQePHES9khPK"
    )
    key = check(integrated).key
    assert key != integrated and identify(key) == ("XMR", key) and key[0] == "4"


@given(valid_addresses())
@settings(max_examples=300)
def test_random_valid_addresses_validate(item: tuple[str, str]) -> None:
    asset, address = item
    c = check(address)
    assert c.valid is True, (address, c)
    assert c.asset == asset or {c.asset, asset} <= {"DOGE", "XVG"}
    assert check(address, asset).valid is True


@pytest.fixture(scope="module")
def legacy() -> SanctionsList:
    if not LEGACY_2024.is_file():
        pytest.skip(f"{LEGACY_2024} not present")
    return ofac_csv.parse(LEGACY_2024)


@pytest.mark.needs_shared
@given(item=valid_addresses())
@settings(max_examples=300)
def test_random_valid_addresses_match_nothing(legacy: SanctionsList, item: tuple[str, str]) -> None:
    r = legacy.screen(item[1])
    assert (r.checked.valid, r.match, r.matches) == (True, False, ())
    assert r.to_json()["party"] is None


def _mutations(address: str, check_name: str) -> list[str]:
    """Single-character damage a checksum must catch."""
    out = []
    if check_name == "eip55":  # flip the case of each letter
        for i, ch in enumerate(address[2:], 2):
            if ch.isalpha():
                out.append(address[:i] + ch.swapcase() + address[i + 1 :])
        return out
    alphabet = _CHARSET if check_name in ("bech32", "bech32m", "cashaddr") else B58
    for i in range(1, len(address), max(1, len(address) // 9)):
        ch = address[i]
        if ch.lower() in alphabet or ch in alphabet:
            repl = next(c for c in alphabet if c != ch.lower() and c != ch)
            out.append(address[:i] + repl + address[i + 1 :])
    return out


@pytest.mark.needs_shared
def test_malformed_listed_addresses_are_invalid_not_unmatched(legacy: SanctionsList) -> None:
    checked = 0
    for item in legacy.listings:
        if item.check not in CHECKSUMMED:
            continue
        for bad in _mutations(item.address, item.check):
            r = legacy.screen(bad, item.asset)
            assert r.checked.valid is False, (item, bad)
            assert r.match is None and r.to_json()["match"] is None
            assert r.to_json()["reason"].startswith(f"not a valid {item.asset} address")
            checked += 1
    assert checked > 1000
    for bad in ("", "   ", "0x123", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT1", "O0Il" * 9, "héllo"):
        r = legacy.screen(bad)
        assert (r.checked.valid, r.match) == (False, None), bad


def test_unknown_asset_is_honest(tmp_path: Path) -> None:
    csv = legacy_csv([ListedParty(7, "ODD COIN", [("XBT", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT")])])
    csv = csv.replace(
        "Digital Currency Address - XBT",
        "Digital Currency Address - FOO abcDEF123; alt. Digital Currency Address - XBT",
    )
    lst = ofac_csv.parse(_write(tmp_path / "odd.csv", csv))
    (foo,) = [i for i in lst.listings if i.asset == "FOO"]
    assert (foo.valid, foo.check) == (None, "unknown-format")
    listed = lst.screen("abcDEF123").to_json()
    assert (listed["valid"], listed["match"], listed["asset"]) == (None, True, "FOO")
    unknown = lst.screen("zzzz9999", "FOO").to_json()
    assert (unknown["valid"], unknown["check"], unknown["match"]) == (None, "unknown-format", None)


def test_solana_found_through_the_list(tmp_path: Path) -> None:
    sol = "42RLPACwZPx3vYYmxSueqsogfynBDqXK298EDsNoyoHi"
    csv = legacy_csv([ListedParty(8, "SOL HOLDER", [("SOL", sol)])])
    lst = ofac_csv.parse(_write(tmp_path / "sol.csv", csv))
    assert check(sol).valid is False  # no checksum, so never inferred on its own
    r = lst.screen(sol)
    assert (r.match, r.checked.asset, r.checked.valid) == (True, "SOL", True)


# ---- the commands --------------------------------------------------------------------------


def _write(path: Path, text: str | bytes) -> Path:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _run(ws: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["-w", str(ws), *args], input=stdin)
    return r.exit_code, r.stdout, r.stderr


@pytest.mark.needs_shared
def test_screen_command_against_the_legacy_csv(tmp_path: Path) -> None:
    if not LEGACY_2024.is_file():
        pytest.skip("shared data missing")
    ws = tmp_path / "ws"
    lazarus = "0x098b716b8aaf21512996dc57eb0615e2383e2f96"  # listed mixed-case
    random_eth = "0x" + eip55(hashlib.sha256(b"nobody").hexdigest()[:40])
    listing = _write(
        tmp_path / "in.txt",
        f"# to screen\n{random_eth}\n\n1BoatSLRHtKNngkdXEeobR76b53LETtpyU  # typo\n",
    )
    code, out, err = _run(
        ws, "screen", lazarus, "--file", str(listing), "--source", str(LEGACY_2024)
    )
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["address"] for r in rows] == [
        lazarus,
        random_eth,
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyU",
    ]
    assert all(set(r) >= REQUIRED_KEYS for r in rows)
    hit, miss, bad = rows
    assert (hit["match"], hit["party"], hit["programme"], hit["asset"]) == (
        True, "LAZARUS GROUP", "DPRK3", "ETH",
    )  # fmt: skip
    assert hit["list_date"] == "2024-05-03" and hit["valid"] is True
    assert (miss["match"], miss["valid"], miss["party"]) == (False, True, None)
    assert (bad["match"], bad["valid"]) == (None, False) and "reason" in bad


def test_sanctions_commands(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    code, _, err = _run(ws, "screen", SANCTIONED_ZEC)
    assert code == 2 and "no sanctions list in this workspace" in err
    parties = [
        ListedParty(1, "TEST MINING FRONT", [("ZEC", SANCTIONED_ZEC)], ("DPRK3",)),
        ListedParty(2, "SECOND", [("XBT", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
                                  ("XBT", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy")]),
    ]  # fmt: skip
    old = _write(tmp_path / "old.xml", advanced_xml(parties[:1], issued=(2024, 1, 1)))
    new = _write(tmp_path / "new.xml", advanced_xml(parties, issued=(2025, 1, 2)))
    code, out, err = _run(ws, "sanctions", "import", str(old))
    assert code == 0 and out.startswith("imported: sanctions:ofac-sdn:"), err
    code, out, _ = _run(ws, "sanctions", "import", str(new), "--source", "test list")
    assert "list of 2025-01-02: 2 parties, 3 addresses" in out
    code, out, _ = _run(ws, "sanctions", "import", str(new))
    assert out.startswith("already stored:")
    code, out, _ = _run(ws, "sanctions", "list", "--json")
    snaps = json.loads(out)
    assert [s["list_date"] for s in snaps] == ["2024-01-01", "2025-01-02"]
    assert snaps[0]["valid_to"] == "2025-01-02" and snaps[1]["source"] == "test list"
    code, out, _ = _run(ws, "sanctions", "addresses", "--asset", "XBT")
    assert out.splitlines() == [
        "1BoatSLRHtKNngkdXEeobR76b53LETtpyT",
        "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
    ]
    code, out, _ = _run(ws, "sanctions", "addresses", "--snapshot", snaps[0]["id"])
    assert out.splitlines() == [SANCTIONED_ZEC]
    code, out, _ = _run(ws, "sanctions", "addresses", "--counts")
    assert out.splitlines() == ["XBT\t2", "ZEC\t1"]
    code, out, _ = _run(ws, "sanctions", "diff", snaps[0]["id"], str(new))
    assert "+ address XBT 1BoatSLRHtKNngkdXEeobR76b53LETtpyT  [2] SECOND" in out
    assert out.splitlines()[-1] == "addresses: +2 -0; parties: +1 -0"
    code, out, _ = _run(ws, "sanctions", "diff", snaps[1]["id"], snaps[0]["id"], "--json")
    assert len(json.loads(out)["removed_addresses"]) == 2
    code, out, _ = _run(ws, "screen", "--file", "-", stdin=f"{SANCTIONED_ZEC}\n")
    (row,) = [json.loads(x) for x in out.splitlines()]
    assert (row["match"], row["party"], row["list_date"], row["designated"]) == (
        True, "TEST MINING FRONT", "2025-01-02", "2019-09-13",
    )  # fmt: skip
    assert row["snapshot"] == snaps[1]["id"]
    code, out, _ = _run(
        ws, "screen", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "--snapshot", snaps[0]["id"]
    )
    assert json.loads(out)["match"] is False
    code, _, err = _run(ws, "sanctions", "import", str(_write(tmp_path / "x.xml", "<Sanctions>")))
    assert code == 2 and "x.xml" in err and "truncated" in err
    code, out, _ = _run(ws, "sanctions", "remove", snaps[0]["id"])
    assert out == f"removed: {snaps[0]['id']}\n"
    code, _, err = _run(ws, "screen")
    assert code == 2


# ---- wallets seen in traffic (acceptance 3) -------------------------------------------------

LAB_PROFILE = """\
code = "lab"
name = "Test lab"
timezone = "Europe/Prague"

[[prefixes]]
cidr = "192.168.2.0/24"
note = "the internal network of nDPI's mining.pcapng"
"""


@pytest.fixture(scope="module")
def mining_ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """mining.pcapng ingested into a workspace (nfstream/nDPI reads the Stratum logins)."""
    pytest.importorskip("nfstream")
    if not MINING.is_file():
        pytest.skip(f"{MINING} not present")
    ws = tmp_path_factory.mktemp("mining") / "ws"
    code, _, err = _run(ws, "-q", "ingest", str(MINING))
    assert code == 0, err
    return ws


def _scope(ws: Path, profile: Path):  # type: ignore[no-untyped-def]
    from rogueflow.analyze.context import load_profile, open_scope
    from rogueflow.workspace import Workspace

    return open_scope(Workspace(ws), load_profile(None, profile))


@pytest.mark.needs_shared
def test_stratum_wallet_on_a_sanctions_list_becomes_a_linked_finding(
    mining_ws: Path, tmp_path: Path
) -> None:
    from rogueflow.analyze.sanctioned import SanctionedWallets

    profile = _write(tmp_path / "lab.toml", LAB_PROFILE)
    test_list = _write(
        tmp_path / "test-sdn-2025-01-02.csv",
        legacy_csv(
            [ListedParty(90001, "TEST MINING FRONT", [("ZEC", SANCTIONED_ZEC)], ("DPRK3",))]
        ),
    )
    code, _, err = _run(mining_ws, "sanctions", "import", str(test_list))
    assert code == 0, err
    code, _, err = _run(
        mining_ws, "-q", "report", "--territory-file", str(profile), "--out", str(tmp_path / "r")
    )
    assert code == 0, err
    scope = _scope(mining_ws, profile)
    try:
        (finding,) = SanctionedWallets().run(scope).findings
    finally:
        scope.close()
    f = finding.to_dict()
    assert (f["id"], f["priority"], f["detected"]) == ("sanctions.wallet_match", "high", True)
    assert f["confidence"]["level"] == "high"
    assert SANCTIONED_ZEC in f["statement"] and "TEST MINING FRONT" in f["statement"]
    assert "DPRK3" in f["statement"] and "eu1-zcash.flypool.org" in f["statement"]
    inds = {(i["kind"], i["value"]): i["role"] for i in f["indicators"]}
    assert inds[("wallet", SANCTIONED_ZEC)] == "sanctioned payout wallet"
    assert ("domain-name", "eu1-zcash.flypool.org") in inds
    assert ("ipv4-addr", "94.23.199.191") in inds  # the pool server
    assert inds[("ipv4-addr", "192.168.2.148")] == "host sending a sanctioned wallet"
    (sample,) = f["samples"]
    assert (sample["src"], sample["dst"], sample["dst_port"]) == (
        "192.168.2.148",
        "94.23.199.191",
        3333,
    )
    assert sample["community_id"].startswith("1:")
    designation = f["evidence"][0]
    assert designation["title"] == "Designations"
    assert designation["rows"][0][:6] == [
        SANCTIONED_ZEC,
        "ZEC",
        "TEST MINING FRONT",
        "90001",
        "DPRK3",
        "",
    ]
    refs = [r for r in f["provenance"]["reference_data"] if r["kind"] == "sanctions list"]
    assert len(refs) == 1 and refs[0]["valid_from"] == "2025-01-02"
    assert refs[0]["id"].startswith("sanctions:ofac-sdn-legacy:")
    assert any(q["label"] == "sanctions: wallets seen" for q in f["provenance"]["queries"])
    screened = {r[0]: r[4] for r in f["evidence"][2]["rows"]}
    assert screened[SANCTIONED_ZEC] == "listed"
    assert screened["t1fJuHWrfcWnYMYyP9VAF96vRnvND2NziMG"] == "not listed"
    assert f["metrics"]["wallets_matched"]["value"] == 1


@pytest.mark.needs_shared
def test_report_includes_the_sanctions_finding(mining_ws: Path, tmp_path: Path) -> None:
    profile = _write(tmp_path / "lab.toml", LAB_PROFILE)
    test_list = _write(
        tmp_path / "test-sdn-2025-01-02.csv",
        legacy_csv([ListedParty(90001, "TEST MINING FRONT", [("ZEC", SANCTIONED_ZEC)])]),
    )
    _run(mining_ws, "sanctions", "import", str(test_list))
    out = tmp_path / "report"
    code, _, err = _run(
        mining_ws, "-q", "report", "--territory-file", str(profile), "--out", str(out)
    )
    assert code == 0, err
    doc = json.loads((out / "findings.json").read_text())
    found = {f["id"]: f for f in doc["findings"]}
    assert found["sanctions.wallet_match"]["detected"] is True
    assert found["sanctions.wallet_match"]["priority"] == "high"


@pytest.mark.needs_shared
def test_wallets_screened_without_a_match_and_without_a_list(
    mining_ws: Path, tmp_path: Path
) -> None:
    from rogueflow.analyze.sanctioned import SanctionedWallets
    from rogueflow.sanctions.snapshots import SanctionsStore
    from rogueflow.workspace import Workspace

    profile = _write(tmp_path / "lab.toml", LAB_PROFILE)
    ws = tmp_path / "copy"  # the ingested flows, without any sanctions list
    shutil.copytree(mining_ws, ws, ignore=shutil.ignore_patterns("sanctions", ".lock"))
    scope = _scope(ws, profile)
    try:
        (unscreened,) = SanctionedWallets().run(scope).findings
        assert (
            unscreened.detected is None and "no sanctions list is imported" in unscreened.statement
        )
        clean = _write(
            tmp_path / "clean.csv",
            legacy_csv(
                [ListedParty(5, "ELSEWHERE", [("XBT", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT")])]
            ),
        )
        with SanctionsStore(Workspace(ws)) as store:
            store.import_file(clean, list_date=date(2025, 3, 1))
        (none,) = SanctionedWallets().run(scope).findings
    finally:
        scope.close()
    assert (none.id, none.detected, none.priority) == ("sanctions.wallet_match", False, "normal")
    assert none.metrics["wallets_screened"].value == 3  # the XMR and both ZEC logins
    assert "2025-03-01" in none.statement and "none of the 3 wallet(s)" in none.statement


def test_no_wallets_no_finding(tmp_path: Path) -> None:
    from rogueflow.analyze.sanctioned import SanctionedWallets

    ws = tmp_path / "ws"
    flows = _write(
        tmp_path / "flows.csv",
        "ts_start,ts_end,src_addr,dst_addr,src_port,dst_port,proto,packets,bytes\n"
        "2019-05-01T10:00:00Z,2019-05-01T10:00:05Z,10.9.0.5,8.8.8.8,5555,443,6,10,1000\n",
    )
    assert _run(ws, "-q", "ingest", str(flows))[0] == 0
    profile = _write(tmp_path / "p.toml", LAB_PROFILE.replace("192.168.2.0/24", "10.9.0.0/16"))
    scope = _scope(ws, profile)
    try:
        assert SanctionedWallets().run(scope).findings == []
    finally:
        scope.close()
