"""Blockchain peer-to-peer payload signatures: Bitcoin family, Monero levin, Nano.

A Bitcoin-family message starts with the network's 4-byte magic and a 12-byte
NUL-padded ASCII command, then the payload length (and, since 2012, a checksum);
Monero (and other CryptoNote) nodes frame every message with levin's 33-byte
header: the signature ``0x0101010101012101`` little-endian, the body size, a
command id (1001–1007 peer protocol, 2001–2010 block/transaction relay), a return
code, flags and protocol version 1. Both are plain-text framing on the wire, so a
single header proves the protocol. Nano's 8-byte header is weaker ('R', a network
letter, versions, a type), so both directions must open with one. Ethereum's
devp2p is encrypted and is left to nDPI.

:class:`Stream` (one direction of one connection, reassembled) and :class:`Label`
(what a detector concludes) are shared with :mod:`rogueflow.detect.stratum`.
"""

from __future__ import annotations

import bisect
import re
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

# ---- shared by the payload detectors ------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class Stream:
    """One direction of a connection: its bytes in sequence order, and where each
    piece came from (stream offset, packet number, time in µs), sorted by offset."""

    data: bytes
    marks: list[tuple[int, int, int]] = field(default_factory=list)

    def where(self, offset: int) -> tuple[int, int] | None:
        """(packet number, µs) of the packet that carried byte ``offset``."""
        if not self.marks:
            return None
        i = bisect.bisect_right(self.marks, (offset, 1 << 62, 0)) - 1
        _, n, us = self.marks[max(i, 0)]
        return n, us


def place(stream: Stream, offset: int) -> str:
    """'packet N (2017-12-24T10:00:00Z)' for a stream offset, or '' if unknown."""
    got = stream.where(offset)
    if got is None:
        return ""
    n, us = got
    try:  # integer arithmetic: a float of epoch µs can be a microsecond off
        when = (_EPOCH + timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except OverflowError:
        return f"packet {n}"
    return f"packet {n} ({when})"


@dataclass(frozen=True)
class Label:
    """A payload detector's conclusion about one connection."""

    service: str
    category: str
    confidence: float
    evidence: str
    coin: str | None = None
    pool: str | None = None
    wallet: str | None = None


# ---- Bitcoin family ------------------------------------------------------------------

#: wire magic → (network title, service name, coin)
MAGICS: dict[bytes, tuple[str, str, str]] = {
    bytes.fromhex("f9beb4d9"): ("Bitcoin", "bitcoin-p2p", "BTC"),
    bytes.fromhex("0b110907"): ("Bitcoin testnet3", "bitcoin-p2p", "BTC"),
    bytes.fromhex("1c163f28"): ("Bitcoin testnet4", "bitcoin-p2p", "BTC"),
    bytes.fromhex("0a03cf40"): ("Bitcoin signet", "bitcoin-p2p", "BTC"),
    bytes.fromhex("fbc0b6db"): ("Litecoin", "litecoin-p2p", "LTC"),
    bytes.fromhex("fdd2c8f1"): ("Litecoin testnet", "litecoin-p2p", "LTC"),
    bytes.fromhex("c0c0c0c0"): ("Dogecoin", "dogecoin-p2p", "DOGE"),
    bytes.fromhex("24e92764"): ("Zcash", "zcash-p2p", "ZEC"),
    bytes.fromhex("bf0c6bbd"): ("Dash", "dash-p2p", "DASH"),
    bytes.fromhex("e3e1f3e8"): ("Bitcoin Cash", "bitcoincash-p2p", "BCH"),
}
_COMMAND = re.compile(rb"[a-z][a-z0-9]{0,11}\x00*")
_MAX_MESSAGE = 32 * 2**20  # Bitcoin Core's MAX_SIZE: no larger message is legal


@dataclass(frozen=True)
class Message:
    offset: int
    magic: bytes
    command: str


def bitcoin_messages(data: bytes, limit: int = 64) -> list[Message]:
    """Bitcoin-family message headers anywhere in ``data`` (a capture may start
    mid-message), at most ``limit``."""
    found: list[Message] = []
    for magic in MAGICS:
        start = data.find(magic)
        while start >= 0 and len(found) < limit:
            head = data[start + 4 : start + 20]
            if len(head) == 16 and _COMMAND.fullmatch(head[:12]):
                (length,) = struct.unpack_from("<I", head, 12)
                if length <= _MAX_MESSAGE:
                    found.append(Message(start, magic, head[:12].rstrip(b"\0").decode()))
            start = data.find(magic, start + 1)
    found.sort(key=lambda m: m.offset)
    return found[:limit]


# ---- Monero levin --------------------------------------------------------------------

LEVIN_SIGNATURE = struct.pack("<Q", 0x0101010101012101)
_LEVIN = struct.Struct("<QQBIiII")  # signature, body size, return?, command, code, flags, ver
LEVIN_COMMANDS = {
    1001: "handshake", 1002: "timed_sync", 1003: "ping", 1004: "request_stat_info",
    1005: "request_network_state", 1006: "request_peer_id", 1007: "request_support_flags",
    2001: "new_block", 2002: "new_transactions", 2003: "request_get_objects",
    2004: "response_get_objects", 2006: "request_chain", 2007: "response_chain_entry",
    2008: "new_fluffy_block", 2009: "request_fluffy_missing_tx", 2010: "get_txpool_complement",
}  # fmt: skip
#: the network_id in a Monero mainnet handshake (cryptonote_config.h)
MONERO_MAINNET_ID = bytes.fromhex("1230f171610441611731008216a1a110")
_LEVIN_MAX_BODY = 100 * 2**20  # levin's default packet size limit


def levin_messages(data: bytes, limit: int = 64) -> list[Message]:
    """levin headers anywhere in ``data`` with a known command and sane fields."""
    found: list[Message] = []
    start = data.find(LEVIN_SIGNATURE)
    while start >= 0 and len(found) < limit and start + _LEVIN.size <= len(data):
        _, size, ret, cmd, _, flags, version = _LEVIN.unpack_from(data, start)
        sane = size <= _LEVIN_MAX_BODY and ret <= 1 and version == 1
        if sane and cmd in LEVIN_COMMANDS and flags in (1, 2):  # fragments carry no command
            found.append(Message(start, LEVIN_SIGNATURE, LEVIN_COMMANDS[cmd]))
        start = data.find(LEVIN_SIGNATURE, start + 1)
    return found


# ---- Nano -----------------------------------------------------------------------------

#: Nano's 8-byte header: 'R', network ('A' test, 'B' beta, 'C' live, 'X' dev), protocol
#: versions max/using/min, message type, 2 bytes of extensions (nano/node/messages.hpp)
NANO_TYPES = {
    2: "keepalive", 3: "publish", 4: "confirm_req", 5: "confirm_ack", 6: "bulk_pull",
    7: "bulk_push", 8: "frontier_req", 10: "node_id_handshake", 11: "bulk_pull_account",
    12: "telemetry_req", 13: "telemetry_ack", 14: "asc_pull_req", 15: "asc_pull_ack",
}  # fmt: skip
NANO_NETWORKS = {ord("A"): "test", ord("B"): "beta", ord("C"): "live", ord("X"): "dev"}


def nano_message(data: bytes) -> Message | None:
    """The Nano message opening ``data``, if its header is well formed."""
    if len(data) < 8 or data[0] != ord("R") or data[1] not in NANO_NETWORKS:
        return None
    vmax, vusing, vmin, kind = data[2], data[3], data[4], data[5]
    if not 1 <= vmin <= vusing <= vmax <= 64 or kind not in NANO_TYPES:
        return None
    return Message(0, data[:2], NANO_TYPES[kind])


# ---- the detector --------------------------------------------------------------------


def _names(msgs: list[Message]) -> str:
    names = list(dict.fromkeys(m.command for m in msgs))
    return ", ".join(names[:8]) + (", …" if len(names) > 8 else "")


def detect_p2p(streams: list[Stream]) -> Label | None:
    """A ``crypto.p2p`` label for a connection whose streams carry blockchain
    peer-to-peer framing; None otherwise. Never raises on arbitrary bytes."""
    btc = [(s, m) for s in streams for m in bitcoin_messages(s.data)]
    levin = [(s, m) for s in streams for m in levin_messages(s.data)]
    if btc:
        # the network seen most often wins (a stray magic-like run in a block is rare)
        counts: dict[bytes, int] = {}
        for _, m in btc:
            counts[m.magic] = counts.get(m.magic, 0) + 1
        magic = max(counts, key=lambda k: counts[k])
        chosen = [(s, m) for s, m in btc if m.magic == magic]
        title, service, coin = MAGICS[magic]
        s0, first = min(chosen, key=lambda sm: (sm[0].where(sm[1].offset) or (0, 0))[0])
        msgs = [m for _, m in chosen]
        evidence = (
            f"{title} message {first.command!r} (magic {magic.hex()}) in "
            f"{place(s0, first.offset) or 'the payload'}; "
            f"{len(msgs)} message(s): {_names(msgs)}"
        )
        return Label(service, "crypto.p2p", _confidence(chosen), evidence, coin)
    if levin:
        s0, first = min(levin, key=lambda sm: (sm[0].where(sm[1].offset) or (0, 0))[0])
        msgs = [m for _, m in levin]
        mainnet = any(MONERO_MAINNET_ID in s.data for s in streams)
        network = "Monero mainnet network id" if mainnet else "Monero or a CryptoNote fork"
        evidence = (
            f"levin message {first.command!r} (signature {LEVIN_SIGNATURE.hex()}) in "
            f"{place(s0, first.offset) or 'the payload'}; {network}; "
            f"{len(msgs)} message(s): {_names(msgs)}"
        )
        return Label("monero-p2p", "crypto.p2p", _confidence(levin), evidence, "XMR")
    # Nano frames carry no magic beyond 'R' and a network letter: both directions
    # must open with a well-formed header before the connection counts as Nano
    opened = [(s, nano_message(s.data)) for s in streams]
    nano = sorted(
        ((s, m) for s, m in opened if m is not None), key=lambda sm: sm[0].where(0) or (0, 0)
    )
    if len(nano) == 2:
        (s0, first), (_, second) = nano
        network = NANO_NETWORKS[first.magic[1]]
        evidence = (
            f"Nano message {first.command!r} ({network} network) in "
            f"{place(s0, 0) or 'the payload'}, answered by {second.command!r}"
        )
        return Label("nano-p2p", "crypto.p2p", 0.99, evidence, "XNO")
    return None


def _confidence(found: list[tuple[Stream, Message]]) -> float:
    """0.99 for an exchange (both directions, or several messages), else 0.95."""
    directions = {id(s) for s, _ in found}
    return 0.99 if len(directions) > 1 or len(found) > 1 else 0.95


#: the byte strings whose presence makes a connection worth buffering
SIGNATURES: tuple[bytes, ...] = (*MAGICS, LEVIN_SIGNATURE)

__all__ = [
    "LEVIN_COMMANDS",
    "LEVIN_SIGNATURE",
    "MAGICS",
    "NANO_NETWORKS",
    "NANO_TYPES",
    "SIGNATURES",
    "Label",
    "Message",
    "Stream",
    "bitcoin_messages",
    "detect_p2p",
    "levin_messages",
    "nano_message",
    "place",
]
