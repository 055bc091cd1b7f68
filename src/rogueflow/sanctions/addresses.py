"""Per-chain validation and normalisation of the addresses sanctions lists name.

:func:`check` answers, for an address and (optionally) the asset it is listed or
claimed under, whether it is valid, what was verified, and the *key* it is
matched on:

- Bitcoin-like base58check (double SHA-256; the version byte must belong to the
  asset): XBT, BCH and BSV legacy, LTC, DASH, DOGE, BTG, XVG, Zcash ``t1``/``t3``,
  and Omni USDT; TRX (version ``0x41``); XRP (Ripple's own base58 alphabet);
- bech32 / bech32m (BIP-173/350) segwit for XBT (``bc1``), LTC (``ltc1``) and BTG
  (``btg1``); plain bech32 for BNB Beacon (``bnb1``) and Zcash Sapling (``zs1``);
- CashAddr for BCH (``bitcoincash:q…``, the prefix optional), keyed on its legacy
  base58 spelling so both spellings of one BCH address match;
- Ethereum-style hex for every EVM asset (ETH, ETC, BSC, ARB, USDC, USDT, …): 40 hex
  digits matched case-insensitively, the EIP-55 checksum enforced when mixed case;
- Monero standard, integrated and subaddresses (block base58 + Keccak-256); an
  integrated address is keyed on its standard address (same keys, plus a payment id);
- Solana: base58 of a 32-byte key (the format has no checksum; ``check`` says so).

An asset with no validator here is reported ``valid=None`` (``check="unknown-format"``)
and matched on its exact spelling only: an honest "cannot tell", never a guess.

>>> check("0x098b716b8aaf21512996dc57eb0615e2383e2f96", "ETH").key
'0x098b716b8aaf21512996dc57eb0615e2383e2f96'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from rogueflow.detect.wallets import B58, b58decode, eip55, identify, keccak256, monero_decode

UNKNOWN = "unknown-format"

#: Assets whose addresses are EVM accounts (tokens carry their chain's address format).
EVM = frozenset(
    {
        "ETH",
        "ETC",
        "BSC",
        "ARB",
        "USDC",
        "USDT",
        "MATIC",
        "POL",
        "AVAX",
        "OP",
        "BASE",
        "FTM",
        "DAI",
        "BUSD",
        "TUSD",
        "LINK",
        "UNI",
        "SHIB",
        "WETH",
        "CRO",
        "MANA",
    }
)

#: traffic coin codes (detect/wallets.identify) to the OFAC asset code of the same chain
COIN_TO_ASSET = {"BTC": "XBT"}


@dataclass(frozen=True)
class Checked:
    """One address checked: ``valid`` is True/False, or None when no validator exists."""

    text: str  # as given, surrounding whitespace removed
    asset: str | None  # the asset given, or the one the format implies
    valid: bool | None
    key: str  # what matching compares (normalised spelling)
    check: str  # what was verified, or "unknown-format"
    reason: str = ""  # why it is invalid


# ---- encodings not in detect/wallets ----------------------------------------------------

_B58_INDEX = {c: i for i, c in enumerate(B58)}
_XRP_ALPHABET = "rpshnaf39wBUDNEGHJKLM4PQRST7VWXYZ2bcdeCg65jkm8oFqi1tuvAxyz"
_XRP_TO_B58 = str.maketrans(_XRP_ALPHABET, B58)
_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST, _BECH32M_CONST = 1, 0x2BC830A3


def sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def b58encode(raw: bytes) -> str:
    n = int.from_bytes(raw, "big")
    out = []
    while n:
        n, r = divmod(n, 58)
        out.append(B58[r])
    zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(out))


def b58check_encode(payload: bytes) -> str:
    return b58encode(payload + sha256d(payload)[:4])


def _b58check(text: str) -> bytes | None:
    """The payload (version + hash) of a base58check string whose checksum holds."""
    raw = b58decode(text) if 25 <= len(text) <= 64 else None
    if raw is None or len(raw) < 5 or sha256d(raw[:-4])[:4] != raw[-4:]:
        return None
    return raw[:-4]


def _bech32_polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= g if (top >> i) & 1 else 0
    return chk


def _convert_bits(data: list[int], frm: int, to: int) -> bytes | None:
    """Regroup bits (5 → 8) with zero padding, as BIP-173 does; None on bad padding."""
    acc, bits, out = 0, 0, bytearray()
    for v in data:
        acc, bits = (acc << frm) | v, bits + frm
        while bits >= to:
            bits -= to
            out.append((acc >> bits) & ((1 << to) - 1))
    if bits >= frm or acc & ((1 << bits) - 1):
        return None
    return bytes(out)


def bech32_decode(text: str) -> tuple[str, list[int], int] | None:
    """(hrp, 5-bit data without checksum, constant) when the bech32(m) checksum holds."""
    if len(text) > 90 or (text != text.lower() and text != text.upper()):
        return None
    low = text.lower()
    hrp, sep, data = low.rpartition("1")
    if not sep or not hrp or len(data) < 6 or any(c not in _BECH32 for c in data):
        return None
    values = [_BECH32.index(c) for c in data]
    const = _bech32_polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values)
    if const not in (_BECH32_CONST, _BECH32M_CONST):
        return None
    return hrp, values[:-6], const


def _segwit(text: str, hrps: frozenset[str]) -> str | None:
    """The check name ("bech32"/"bech32m") of a valid segwit address of one of ``hrps``."""
    dec = bech32_decode(text)
    if dec is None or dec[0] not in hrps or not dec[1]:
        return None
    _, data, const = dec
    version, prog = data[0], _convert_bits(data[1:], 5, 8)
    if prog is None or version > 16 or not 2 <= len(prog) <= 40:
        return None
    if version == 0 and (len(prog) not in (20, 32) or const != _BECH32_CONST):
        return None
    if version > 0 and const != _BECH32M_CONST:
        return None
    return "bech32" if const == _BECH32_CONST else "bech32m"


def _bech32_payload(text: str, hrp: str, size: int) -> bool:
    """A plain bech32 string (not segwit) of ``hrp`` carrying ``size`` bytes."""
    dec = bech32_decode(text)
    if dec is None or dec[0] != hrp or dec[2] != _BECH32_CONST:
        return False
    raw = _convert_bits(dec[1], 5, 8)
    return raw is not None and len(raw) == size


def _cashaddr_polymod(values: list[int]) -> int:
    c = 1
    for d in values:
        c0 = c >> 35
        c = ((c & 0x07FFFFFFFF) << 5) ^ d
        for i, g in enumerate(
            (0x98F2BC8E61, 0x79B76D99E2, 0xF33E5FB3C4, 0xAE2EABE2A8, 0x1E4F43E470)
        ):
            c ^= g if (c0 >> i) & 1 else 0
    return c ^ 1


def cashaddr_to_legacy(text: str) -> str | None:
    """A BCH CashAddr (``bitcoincash:`` optional) as its legacy base58 address, or None."""
    if text != text.lower() and text != text.upper():
        return None
    low = text.lower()
    prefix, _, payload = low.rpartition(":")
    prefix = prefix or "bitcoincash"
    if prefix != "bitcoincash" or len(payload) != 42 or any(c not in _BECH32 for c in payload):
        return None
    values = [_BECH32.index(c) for c in payload]
    if _cashaddr_polymod([ord(c) & 31 for c in prefix] + [0] + values) != 0:
        return None
    raw = _convert_bits(values[:-8], 5, 8)
    if raw is None or len(raw) != 21 or raw[0] & 0x87:  # 160-bit hash, reserved bit clear
        return None
    kind = (raw[0] >> 3) & 0x0F
    if kind not in (0, 1):
        return None
    return b58check_encode((b"\x00" if kind == 0 else b"\x05") + raw[1:])


_XMR_BLOCK = (0, 2, 3, 5, 6, 7, 9, 10, 11)  # encoded length of a 0..8-byte block


def monero_encode(raw: bytes) -> str:
    """Monero's block base58 (8-byte blocks to 11 characters)."""
    out = []
    for off in range(0, len(raw), 8):
        block = raw[off : off + 8]
        n, chars = int.from_bytes(block, "big"), []
        for _ in range(_XMR_BLOCK[len(block)]):
            n, r = divmod(n, 58)
            chars.append(B58[r])
        out.append("".join(reversed(chars)))
    return "".join(out)


# ---- per-format validators: (text) -> (key, check) or None ------------------------------

Validator = Callable[[str], tuple[str, str] | None]


def _base58(*versions: bytes) -> Validator:
    allowed = frozenset(versions)

    def validate(text: str) -> tuple[str, str] | None:
        payload = _b58check(text)
        if payload is None:
            return None
        for size in (1, 2):
            if len(payload) == size + 20 and payload[:size] in allowed:
                return text, "base58check"
        return None

    return validate


def _segwit_of(*hrps: str) -> Validator:
    allowed = frozenset(hrps)

    def validate(text: str) -> tuple[str, str] | None:
        kind = _segwit(text, allowed) if "1" in text else None
        return (text.lower(), kind) if kind else None

    return validate


def _evm(text: str) -> tuple[str, str] | None:
    m = re.fullmatch(r"0[xX]([0-9a-fA-F]{40})", text)
    if m is None:
        return None
    digits = m.group(1)
    if digits not in (digits.lower(), digits.upper()):
        return ("0x" + digits.lower(), "eip55") if eip55(digits) == digits else None
    return "0x" + digits.lower(), "hex"  # single-case hex carries no checksum


def _monero(text: str) -> tuple[str, str] | None:
    if identify(text) != ("XMR", text):
        return None
    raw = monero_decode(text)
    if raw is not None and raw[0] == 19:  # integrated: keys of the standard address + id
        std = bytes([18]) + raw[1:65]
        return monero_encode(std + keccak256(std)[:4]), "monero"
    return text, "monero"


def _tron(text: str) -> tuple[str, str] | None:
    payload = _b58check(text) if text.startswith("T") else None
    return (text, "base58check") if payload and len(payload) == 21 and payload[0] == 0x41 else None


def _ripple(text: str) -> tuple[str, str] | None:
    if not text.startswith("r") or any(c not in _XRP_ALPHABET for c in text):
        return None
    payload = _b58check(text.translate(_XRP_TO_B58))
    return (text, "base58check") if payload and len(payload) == 21 and payload[0] == 0 else None


def _cashaddr(text: str) -> tuple[str, str] | None:
    legacy = cashaddr_to_legacy(text)
    return (legacy, "cashaddr") if legacy else None


def _solana(text: str) -> tuple[str, str] | None:
    raw = b58decode(text) if 32 <= len(text) <= 44 else None
    # the key is 32 bytes; the format has no checksum, so well-formed is all one can say
    return (text, "base58-32 (no checksum)") if raw is not None and len(raw) == 32 else None


def _bnb(text: str) -> tuple[str, str] | None:
    return (text.lower(), "bech32") if _bech32_payload(text, "bnb", 20) else None


def _zs(text: str) -> tuple[str, str] | None:
    return (text.lower(), "bech32") if _bech32_payload(text, "zs", 43) else None


_BTC = _base58(b"\x00", b"\x05")
_BTC_SEGWIT = _segwit_of("bc")

#: asset → the formats its addresses may take (the first that accepts wins)
FORMATS: dict[str, tuple[Validator, ...]] = {
    "XBT": (_BTC, _BTC_SEGWIT),
    "BCH": (_BTC, _cashaddr),
    "BSV": (_BTC,),
    "LTC": (_base58(b"\x30", b"\x32", b"\x05"), _segwit_of("ltc")),
    "BTG": (_base58(b"\x26", b"\x17"), _segwit_of("btg")),
    "DASH": (_base58(b"\x4c", b"\x10"),),
    "DOGE": (_base58(b"\x1e", b"\x16"),),
    "XVG": (_base58(b"\x1e", b"\x21"),),
    "ZEC": (_base58(b"\x1c\xb8", b"\x1c\xbd"), _zs),
    "XMR": (_monero,),
    "TRX": (_tron,),
    "XRP": (_ripple,),
    "SOL": (_solana,),
    "BNB": (_bnb, _evm),
    # tokens: the chain they were listed on shows in the format (Omni USDT is a Bitcoin
    # address, TRC-20 a Tron one, ERC-20/BEP-20 an EVM one)
    "USDT": (_evm, _tron, _BTC, _BTC_SEGWIT),
    "USDC": (_evm, _tron, _solana),
    **{a: (_evm,) for a in EVM if a not in ("USDT", "USDC")},
}

#: format inference for an address given without an asset, most specific first
_INFER: tuple[tuple[str, Validator], ...] = (
    ("ETH", _evm),
    ("XMR", _monero),
    ("XBT", _BTC_SEGWIT),
    ("LTC", _segwit_of("ltc")),
    ("BTG", _segwit_of("btg")),
    ("BCH", _cashaddr),
    ("BNB", _bnb),
    ("ZEC", _zs),
    ("TRX", _tron),
    ("XRP", _ripple),
    ("XBT", _BTC),
    ("LTC", _base58(b"\x30", b"\x32")),
    ("DASH", _base58(b"\x4c", b"\x10")),
    ("DOGE", _base58(b"\x1e", b"\x16")),
    ("ZEC", _base58(b"\x1c\xb8", b"\x1c\xbd")),
    ("BTG", _base58(b"\x26", b"\x17")),
    ("XVG", _base58(b"\x21")),
)


def asset_code(asset: str | None) -> str | None:
    """OFAC's spelling of an asset code (``BTC`` → ``XBT``), upper-cased."""
    if asset is None or not asset.strip():
        return None
    code = asset.strip().upper()
    return COIN_TO_ASSET.get(code, code)


def check(address: str, asset: str | None = None) -> Checked:
    """Validate ``address`` as an address of ``asset`` (or of whichever format it is).

    >>> check("1BoatSLRHtKNngkdXEeobR76b53LETtpyT").asset
    'XBT'
    >>> check("1BoatSLRHtKNngkdXEeobR76b53LETtpyT", "ETH").valid
    False
    """
    text = address.strip() if isinstance(address, str) else ""
    code = asset_code(asset)
    if not text or not text.isascii() or not text.isprintable() or " " in text:
        return Checked(text, code, False, text, "", "empty, non-ASCII or containing spaces")
    if code is not None:
        formats = FORMATS.get(code)
        if formats is None:
            return Checked(text, code, None, text, UNKNOWN, f"no validator for asset {code}")
        for validate in formats:
            got = validate(text)
            if got is not None:
                return Checked(text, code, True, got[0], got[1])
        return Checked(text, code, False, text, "", f"not a valid {code} address ({_why(text)})")
    for inferred, validate in _INFER:
        got = validate(text)
        if got is not None:
            return Checked(text, inferred, True, got[0], got[1])
    return Checked(
        text, None, False, text, "", f"not a valid address of any known format ({_why(text)})"
    )


def _why(text: str) -> str:
    """A short reason a string failed: the most telling first."""
    if re.fullmatch(r"0[xX][0-9a-fA-F]*", text):
        return "40 hex digits expected" if len(text) != 42 else "EIP-55 checksum mismatch"
    if re.fullmatch(f"[{B58}]+", text):
        return "base58 checksum or version mismatch"
    if re.fullmatch(r"[a-zA-Z]+1[a-zA-Z0-9]+", text):
        return "bech32 checksum or prefix mismatch"
    return "unrecognised characters or length"


def candidate_keys(text: str) -> tuple[str, ...]:
    """Keys an unvalidated string could be listed under (exact, and lower-cased)."""
    stripped = text.strip()
    return tuple(dict.fromkeys((stripped, stripped.lower())))


__all__ = [
    "EVM",
    "FORMATS",
    "UNKNOWN",
    "Checked",
    "asset_code",
    "b58check_encode",
    "b58encode",
    "bech32_decode",
    "candidate_keys",
    "cashaddr_to_legacy",
    "check",
    "monero_encode",
    "sha256d",
]
