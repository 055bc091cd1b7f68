"""Wallet address recognition: published addresses and test vectors, Keccak against
SHA3, single-character corruption, pool-login splitting, and fuzzing."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow.detect import wallets
from rogueflow.detect.wallets import B58, identify, split_login

# Published addresses: Bitcoin wiki / BIP-173 / BIP-350 vectors, EIP-55 vectors, the
# Monero general fund, and the wallets in nDPI's mining.pcapng (checked by their
# checksums here, so a typo would fail rather than pass).
VALID = [
    ("BTC", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT"),
    ("BTC", "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"),
    ("BTC", "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4"),
    ("BTC", "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3"),
    ("BTC", "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y"),
    ("BTC", "BC1SW50QGDZ25J"),
    ("LTC", "LaMT348PWRnrqeeWArpwQPbuanpXDZGEUz"),
    ("DOGE", "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L"),
    ("ZEC", "t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd"),
    ("ZEC", "t1fJuHWrfcWnYMYyP9VAF96vRnvND2NziMG"),
    (
        "XMR",
        "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3XjrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A",
    ),
    (
        "XMR",
        "4BCeEPhodgPMbPWFN1dPwhWXdRX8q4mhhdZdA1dtSMLTLCEYvAj9QXjXAfF7CugEbmfBhgkqHbdgK9b2wKA6nqRZQCgvCDm",
    ),
    (
        "XMR",
        "888tNkZrPN6JsEgekjMnABU4TBzc2Dt29EPAvkRxbANsAnjyPbb3iQ1YBRk1UXcdRsiKc9dhwMVgN5S9cQUiyoogDavup3H",
    ),
    (
        "XMR",
        "4LL9oSLmtpccfufTMvppY6JwXNouMBzSkbLYfpAV5Usx3skxNgYeYTRj5UzqtReoS44qo9mtmXCqY45DJ852K5Jv2bYXZKKQePHES9khPK",
    ),
    ("ETH", "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
    ("ETH", "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359"),
    ("ETH", "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB"),
    ("ETH", "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb"),
    ("ETH", "0x9c99d212f7e5daa18ab50810e0fd255d1f04303b"),
]

INVALID = [
    "1BoatSLRHtKNngkdXEeobR76b53LETtpyU",  # checksum
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD",  # EIP-55 case wrong in one letter
    "0x0000000000000000000000000000000000000000",  # the burn address
    "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beae",  # 39 digits
    "bc1zw508d6qejxtdg4y5r3zarvary0c5xw7kvv08u",  # bech32m address with bech32 checksum
    "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",  # checksum
    "Bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",  # mixed case
    "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",  # testnet: never a pool payout
    "LaMT348PWRnrqeeWArpwQPbuanpXDZGEUzz",  # one character too many
    "4" * 95,
    "O0Il" * 10,  # characters outside base58
    "",
    "t1",
]


def test_keccak_vectors_and_sha3_relation() -> None:
    empty = "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    assert wallets.keccak256(b"").hex() == empty
    for size in (0, 1, 135, 136, 137, 300):
        data = bytes(range(256))[: size % 256] * (1 + size // 256)
        assert wallets.keccak(data, pad=0x06) == hashlib.sha3_256(data).digest()


@given(st.binary(max_size=400))
@settings(max_examples=60)
def test_keccak_matches_sha3_with_sha3_padding(data: bytes) -> None:
    assert wallets.keccak(data, pad=0x06) == hashlib.sha3_256(data).digest()


@pytest.mark.parametrize(("coin", "address"), VALID)
def test_valid_addresses(coin: str, address: str) -> None:
    got = identify(address)
    assert got is not None
    assert got[0] == coin
    lower = address.startswith(("0x", "bc1", "BC1", "ltc1"))
    assert got[1] == (address.lower() if lower else address)
    assert identify(got[1]) == got  # normalised form is stable


def test_ethereum_checksum_spelling() -> None:
    assert wallets.eip55("5aaeb6053f3e94c9b9a09f33669435e7ef1beaed") == (
        "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    )


@pytest.mark.parametrize("text", INVALID)
def test_invalid_addresses(text: str) -> None:
    assert identify(text) is None


def _checksummed() -> list[str]:
    """Addresses where any one-character change breaks a checksum."""
    return [a for c, a in VALID if not a.startswith("0x")]


@given(st.sampled_from(_checksummed()), st.data())
@settings(max_examples=150)
def test_one_character_substitution_is_rejected(address: str, data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(address) - 1))
    bech32 = address.lower().startswith("bc1")
    alphabet = "qpzry9x8gf2tvdw0s3jn54khce6mua7l" if bech32 else B58
    old = address[i].lower() if bech32 else address[i]
    ch = data.draw(st.sampled_from(alphabet).filter(lambda c: c != old))
    if address.isupper():
        ch = ch.upper()
    mutated = address[:i] + ch + address[i + 1 :]
    got = identify(mutated)
    # a 1-character change keeps a valid address only by a 2^-32 checksum accident; the
    # one exception: the prefix letter of a bech32 hrp changes the coin, still invalid
    assert got is None, mutated


wallet_like = st.one_of(
    st.text(alphabet=B58, min_size=20, max_size=110),
    st.text(alphabet="0123456789abcdefABCDEF", min_size=38, max_size=42).map(lambda s: "0x" + s),
    st.text(alphabet="qpzry9x8gf2tvdw0s3jn54khce6mua7l", min_size=8, max_size=80).map(
        lambda s: "bc1" + s
    ),
    st.text(max_size=120),
)


@given(wallet_like)
@settings(max_examples=300)
def test_identify_never_raises_and_never_invents(text: str) -> None:
    got = identify(text)
    if got is not None:
        coin, address = got
        assert address.lower() == text.lower()
        assert identify(address) == got
        assert coin in {"BTC", "LTC", "DOGE", "DASH", "ZEC", "XMR", "ETH"}


@given(st.text(max_size=120))
@settings(max_examples=200)
def test_decoders_never_raise(text: str) -> None:
    wallets.b58decode(text)
    wallets.monero_decode(text)
    split_login(text)


@pytest.mark.parametrize(
    ("login", "expected"),
    [
        (
            "4BCeEPhodgPMbPWFN1dPwhWXdRX8q4mhhdZdA1dtSMLTLCEYvAj9QXjXAfF7CugEbmfBhgkqHbdgK9b2wKA6nqRZQCgvCDm"
            ".cb2b73415c4faf214035a73b9d947c202342f3bf3bdf632132bd6d7af98cb257.ryzen",
            ("XMR", VALID[11][1], "ryzen"),
        ),
        (
            "t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd.rig4",
            ("ZEC", "t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd", "rig4"),
        ),
        (
            "0x9c99d212f7e5daa18ab50810e0fd255d1f04303b/tester.worker1/vvesely@mailinator",
            ("ETH", "0x9c99d212f7e5daa18ab50810e0fd255d1f04303b", "tester.worker1"),
        ),
        ("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", ("BTC", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", None)),
        (
            "1BoatSLRHtKNngkdXEeobR76b53LETtpyT+65536",
            ("BTC", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", None),
        ),
        (
            "1BoatSLRHtKNngkdXEeobR76b53LETtpyT.w1+65536",
            ("BTC", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "w1"),
        ),
        (
            "1BoatSLRHtKNngkdXEeobR76b53LETtpyT.0123456789abcdef.rig",
            ("BTC", "1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "rig"),
        ),
        ("myaccount.worker1", None),
        ("1BoatSLRHtKNngkdXEeobR76b53LETtpyU.rig", None),
        ("", None),
    ],
)
def test_split_login(login: str, expected: tuple[str, str, str | None] | None) -> None:
    assert split_login(login) == expected
