"""Cryptocurrency wallet addresses: recognise, validate, normalise.

:func:`identify` answers ``(coin, address)`` only for a string whose checksum holds
for its format, so a wallet reported from a capture is never a guess:

- base58check (double SHA-256): Bitcoin ``1``/``3``, Litecoin ``L``/``M``, Dogecoin
  ``D``/``9``/``A``, Dash ``X``/``7``, Zcash transparent ``t1``/``t3`` (2-byte versions);
- bech32 / bech32m segwit (BIP-173/350): ``bc1`` (Bitcoin), ``ltc1`` (Litecoin);
- Monero standard, integrated and subaddresses (95/106 characters, Monero's block
  base58, Keccak-256 checksum);
- Ethereum ``0x`` + 40 hex digits, the EIP-55 checksum enforced when mixed case.

Keccak-256 (the original padding, not SHA3-256) is implemented here: the inputs are
a few dozen bytes, and it keeps the package free of a crypto dependency.

>>> identify("1BoatSLRHtKNngkdXEeobR76b53LETtpyT")
('BTC', '1BoatSLRHtKNngkdXEeobR76b53LETtpyT')
"""

from __future__ import annotations

import hashlib
import re

# ---- Keccak-256 ----------------------------------------------------------------------


def _round_constants() -> tuple[int, ...]:
    """The 24 ι-step constants, from the LFSR of the Keccak reference."""
    out, r = [], 1
    for _ in range(24):
        rc = 0
        for j in range(7):
            if r & 1:  # LFSR86540: output the low bit, then step
                rc |= 1 << ((1 << j) - 1)
            r = ((r << 1) ^ 0x71) & 0xFF if r & 0x80 else r << 1
        out.append(rc)
    return tuple(out)


def _rho_pi() -> tuple[tuple[int, int, int], ...]:
    """(source lane, target lane, rotation) of the combined ρ and π steps."""
    steps, x, y = [(0, 0, 0)], 1, 0
    for t in range(24):
        steps.append((x + 5 * y, y + 5 * ((2 * x + 3 * y) % 5), ((t + 1) * (t + 2) // 2) % 64))
        x, y = y, (2 * x + 3 * y) % 5
    # lane (0, 0) is not rotated; it still moves to (0, 0)
    return tuple(steps)


_MASK = (1 << 64) - 1
_RC = _round_constants()
_RHO_PI = _rho_pi()


def _permute(a: list[int]) -> list[int]:
    for rc in _RC:
        c = [a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ (((c[(x + 1) % 5] << 1) | (c[(x + 1) % 5] >> 63)) & _MASK)
             for x in range(5)]  # fmt: skip
        a = [a[i] ^ d[i % 5] for i in range(25)]
        b = [0] * 25
        for src, dst, rot in _RHO_PI:
            v = a[src]
            b[dst] = ((v << rot) | (v >> (64 - rot))) & _MASK if rot else v
        a = [b[i] ^ (~b[i - i % 5 + (i + 1) % 5] & b[i - i % 5 + (i + 2) % 5]) for i in range(25)]
        a[0] ^= rc
    return a


def keccak(data: bytes, pad: int = 0x01, rate: int = 136, size: int = 32) -> bytes:
    """Keccak sponge; the defaults are Keccak-256. ``pad=0x06`` gives SHA3-256."""
    msg = bytearray(data)
    msg.append(pad)
    msg.extend(bytes(-len(msg) % rate))
    msg[-1] |= 0x80
    state = [0] * 25
    for off in range(0, len(msg), rate):
        for i in range(rate // 8):
            state[i] ^= int.from_bytes(msg[off + 8 * i : off + 8 * i + 8], "little")
        state = _permute(state)
    return b"".join(lane.to_bytes(8, "little") for lane in state)[:size]


def keccak256(data: bytes) -> bytes:
    return keccak(data)


# ---- base58 ---------------------------------------------------------------------------

B58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {c: i for i, c in enumerate(B58)}
_B58_RE = re.compile(f"[{B58}]+")


def b58decode(text: str) -> bytes | None:
    """Bitcoin base58 to bytes (leading ``1`` = zero byte); None for other characters."""
    if not _B58_RE.fullmatch(text):
        return None
    n = 0
    for ch in text:
        n = n * 58 + _B58_INDEX[ch]
    zeros = len(text) - len(text.lstrip("1"))
    return bytes(zeros) + (n.to_bytes((n.bit_length() + 7) // 8, "big") if n else b"")


def _sha256d(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


#: base58check version bytes → coin; P2SH 0x05 is shared with Litecoin's legacy form
_B58_VERSIONS = {
    b"\x00": "BTC", b"\x05": "BTC", b"\x30": "LTC", b"\x32": "LTC",
    b"\x1e": "DOGE", b"\x16": "DOGE", b"\x4c": "DASH", b"\x10": "DASH",
    b"\x1c\xb8": "ZEC", b"\x1c\xbd": "ZEC",
}  # fmt: skip


def _base58check(text: str) -> str | None:
    raw = b58decode(text) if 26 <= len(text) <= 36 else None
    if raw is None or _sha256d(raw[:-4])[:4] != raw[-4:]:
        return None
    for size in (1, 2):  # a 20-byte hash behind a 1- or 2-byte version
        if len(raw) == size + 24 and raw[:size] in _B58_VERSIONS:
            return _B58_VERSIONS[raw[:size]]
    return None


# ---- Monero ---------------------------------------------------------------------------

_XMR_BLOCK = (0, 2, 3, 5, 6, 7, 9, 10, 11)  # encoded length of a 0..8-byte block
_XMR_TAIL = {n: size for size, n in enumerate(_XMR_BLOCK)}
#: network byte → kind (mainnet only: testnet/stagenet wallets never pay a real pool)
_XMR_PREFIX = {18: ("standard", 69), 19: ("integrated", 77), 42: ("subaddress", 69)}


def monero_decode(text: str) -> bytes | None:
    """Monero base58 (11 characters per 8-byte block) to bytes, or None."""
    if not _B58_RE.fullmatch(text):
        return None
    out = bytearray()
    for off in range(0, len(text), 11):
        chunk = text[off : off + 11]
        size = _XMR_TAIL.get(len(chunk))
        if size is None:
            return None
        n = 0
        for ch in chunk:
            n = n * 58 + _B58_INDEX[ch]
        if n >= 1 << (8 * size):
            return None
        out += n.to_bytes(size, "big")
    return bytes(out)


def _monero(text: str) -> str | None:
    if len(text) not in (95, 106) or text[0] not in "48":
        return None
    raw = monero_decode(text)
    if raw is None or raw[0] not in _XMR_PREFIX or len(raw) != _XMR_PREFIX[raw[0]][1]:
        return None
    return "XMR" if keccak256(raw[:-4])[:4] == raw[-4:] else None


# ---- bech32 / bech32m -----------------------------------------------------------------

_BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST, _BECH32M_CONST = 1, 0x2BC830A3
_SEGWIT_HRP = {"bc": "BTC", "ltc": "LTC"}


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= g if (top >> i) & 1 else 0
    return chk


def _segwit(text: str) -> tuple[str, str] | None:
    if len(text) > 90 or (text != text.lower() and text != text.upper()):
        return None
    low = text.lower()
    hrp, sep, data = low.rpartition("1")
    if not sep or hrp not in _SEGWIT_HRP or len(data) < 6 or any(c not in _BECH32 for c in data):
        return None
    values = [_BECH32.index(c) for c in data]
    const = _polymod([ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + values)
    if not values[:-6] or const not in (_BECH32_CONST, _BECH32M_CONST):
        return None
    version, prog5 = values[0], values[1:-6]
    acc, bits, prog = 0, 0, bytearray()
    for v in prog5:  # 5-bit groups to bytes; leftover bits must be zero padding
        acc, bits = (acc << 5) | v, bits + 5
        if bits >= 8:
            bits -= 8
            prog.append((acc >> bits) & 0xFF)
    if bits >= 5 or acc & ((1 << bits) - 1):
        return None
    if version > 16 or not 2 <= len(prog) <= 40:
        return None
    if version == 0 and (len(prog) not in (20, 32) or const != _BECH32_CONST):
        return None
    if version > 0 and const != _BECH32M_CONST:
        return None
    return _SEGWIT_HRP[hrp], low


# ---- Ethereum -------------------------------------------------------------------------

_ETH_RE = re.compile(r"0[xX]([0-9a-fA-F]{40})")


def eip55(hex40: str) -> str:
    """The EIP-55 mixed-case spelling of 40 hex digits."""
    low = hex40.lower()
    digest = keccak256(low.encode("ascii")).hex()
    return "".join(c.upper() if c.isalpha() and int(h, 16) >= 8 else c
                   for c, h in zip(low, digest[:40], strict=True))  # fmt: skip


def _ethereum(text: str) -> str | None:
    m = _ETH_RE.fullmatch(text)
    if m is None:
        return None
    digits = m.group(1)
    if digits != digits.lower() and digits != digits.upper() and eip55(digits) != digits:
        return None
    if int(digits, 16) == 0:
        return None  # the zero address is a burn sink, never a payout
    return "0x" + digits.lower()


# ---- entry points ---------------------------------------------------------------------


def identify(text: str) -> tuple[str, str] | None:
    """(coin, normalised address) when ``text`` is a valid wallet address, else None.

    Case-insensitive formats (bech32, Ethereum hex) come back lower-case; base58
    ones exactly as given.
    """
    if not isinstance(text, str) or not 14 <= len(text) <= 106 or not text.isascii():
        return None
    if text[:2] in ("0x", "0X"):
        eth = _ethereum(text)
        return ("ETH", eth) if eth else None
    if len(text) in (95, 106):
        coin = _monero(text)
        return (coin, text) if coin else None
    if "1" in text[1:5] and text[:3].lower() in ("bc1", "ltc"):
        return _segwit(text)
    coin = _base58check(text)
    return (coin, text) if coin else None


_LOGIN_SPLIT = re.compile(r"[./+:@,;\s|]")
_PAYMENT_ID = re.compile(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{64}")


def split_login(login: str) -> tuple[str, str, str | None] | None:
    """A pool login ``WALLET[.payment-id][.worker][+diff]`` or ``WALLET/worker/email``
    as (coin, wallet, worker or None); None when it does not start with a wallet.

    >>> split_login("t1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd.rig4")
    ('ZEC', 't1fAhZF5aUJdY7CikGULHmeYk7id8qmvbAd', 'rig4')
    """
    if not isinstance(login, str):
        return None
    m = _LOGIN_SPLIT.search(login)
    head, rest = (login[: m.start()], login[m.start() :]) if m else (login, "")
    got = identify(head)
    if got is None:
        return None
    coin, wallet = got
    worker: str | None = None
    if rest.startswith("/"):  # eth-proxy: WALLET/worker/email
        worker = rest[1:].split("/", 1)[0] or None
    elif rest.startswith("."):
        parts = re.split(r"[+/:@,;\s|]", rest[1:], maxsplit=1)[0].split(".")
        if parts and _PAYMENT_ID.fullmatch(parts[0]):
            parts = parts[1:]  # Monero payment id before the worker name
        worker = ".".join(parts) or None
    return coin, wallet, worker


__all__ = ["b58decode", "eip55", "identify", "keccak", "keccak256", "monero_decode", "split_login"]
