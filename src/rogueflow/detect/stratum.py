"""Mining protocols in a connection's payload, with the payout wallet they name.

Pools and miners speak newline-delimited JSON-RPC over TCP (or JSON bodies over
HTTP). The dialects recognised, by the messages that prove them:

- Stratum v1: ``mining.subscribe/authorize/notify/submit/set_difficulty``,
  ``mining.extranonce.subscribe`` and the other ``mining.*`` methods;
- EthereumStratum/1.0.0: ``mining.subscribe`` announcing that version;
- CryptoNote (Monero family): ``login``, ``job``, ``submit``, ``getjob``, ``keepalived``;
- Ethereum stratum-proxy: ``eth_submitLogin/eth_getWork/eth_submitWork/eth_submitHashrate``;
- getwork / getblocktemplate over HTTP POST.

A session captured midway still shows ``mining.notify`` or ``job`` pushes, share
submissions, or ``eth_getWork`` results, and is recognised from those. The wallet
comes only from a login the miner sent (``login``, ``mining.authorize`` or
``mining.submit`` user, ``eth_submitLogin``, HTTP Basic user), must be valid for its
format (:mod:`.wallets`) and must occur literally in the bytes: garbage never yields
one. Nothing here raises on arbitrary input.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from rogueflow.detect.p2p import Label, Stream, place
from rogueflow.detect.wallets import split_login
from rogueflow.intel.indicators import ServiceCatalog

_DECODER = json.JSONDecoder()
_MAX_LINE = 256 * 1024
_EXCERPT = 160
_HOST = re.compile(r"(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}", re.I)
_IPV4 = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")
_HEX32 = re.compile(r"0x[0-9a-fA-F]{64}")
_REQUEST_LINE = re.compile(rb"(?:POST|GET) \S+ HTTP/1\.[01]\r?$")

DIALECTS = {
    "stratum": "Stratum v1",
    "ethstratum": "EthereumStratum/1.0.0",
    "cryptonote": "CryptoNote Stratum",
    "ethproxy": "Ethereum stratum-proxy (eth_*)",
    "getwork": "getwork/getblocktemplate over HTTP",
}
#: what the dialect alone says about the coin, when no wallet decides it
_DIALECT_COIN = {
    "cryptonote": ("XMR", "probably XMR: the CryptoNote dialect (Monero family, or a fork)"),
    "ethproxy": ("ETH", "probably ETH: the eth_* dialect (Ethash family, ETH or ETC)"),
    "ethstratum": ("ETH", "probably ETH: EthereumStratum (Ethash family, ETH or ETC)"),
}
_CLIENT_FIRST = ("login", "mining.authorize", "eth_submitLogin", "mining.subscribe")


@dataclass
class _Found:
    """What one connection's messages add up to."""

    kinds: dict[str, tuple[int, int]] = field(default_factory=dict)  # kind → (packet, stream)
    dialect: str | None = None
    first: tuple[str, Stream, int, str] | None = None  # kind, stream, offset, raw text
    login: tuple[str, Stream, int, str] | None = None
    pool: str | None = None
    agent: str | None = None
    worker: str | None = None
    coin: str | None = None
    wallet: str | None = None
    http: bool = False

    def add(self, kind: str, dialect: str, stream_no: int, where: tuple[Stream, int, str]) -> None:
        packet = (where[0].where(where[1]) or (0, 0))[0]
        if kind not in self.kinds or packet < self.kinds[kind][0]:
            self.kinds[kind] = (packet, stream_no)
        if self.dialect is None or (dialect == "ethstratum" and self.dialect == "stratum"):
            self.dialect = dialect
        if self.first is None or packet < (self.first[1].where(self.first[2]) or (0, 0))[0]:
            self.first = (kind, *where)
        if kind in _CLIENT_FIRST and self.login is None:
            self.login = (kind, *where)


def _host(text: object) -> str | None:
    if not isinstance(text, str):
        return None
    host = text.strip().lower().rsplit(":", 1)[0] if text.count(":") == 1 else text.strip()
    host = host.lower().rstrip(".")
    return host if _HOST.fullmatch(host) or _IPV4.fullmatch(host) else None


def _text(value: object, limit: int = 80) -> str | None:
    """A short printable string from a JSON value, or None."""
    if not isinstance(value, str):
        return None
    value = "".join(c for c in value.strip() if c.isprintable())[:limit]
    return value or None


def _literal(wallet: str, stream: Stream) -> bool:
    raw = wallet.encode()
    return raw in stream.data or (raw == raw.lower() and raw in stream.data.lower())


def _take_login(found: _Found, user: object, stream: Stream) -> None:
    """Wallet and worker from a pool login, when it names a valid, literal wallet."""
    if found.wallet is not None or not isinstance(user, str):
        return
    got = split_login(user.strip())
    if got is None:
        if found.worker is None and "." in user:
            found.worker = _text(user.split(".", 1)[1])  # account.worker: keep the worker
        return
    coin, wallet, worker = got
    if _literal(wallet, stream):
        found.coin, found.wallet = coin, wallet
        found.worker = _text(worker) if worker else found.worker


def _classify(msg: dict[str, Any], found: _Found, stream: Stream) -> tuple[str, str] | None:
    """(message kind, dialect) of one JSON object, reading what it carries."""
    method, params = msg.get("method"), msg.get("params")
    if isinstance(method, str):
        if method == "mining.subscribe" and isinstance(params, list):
            agent = _text(params[0]) if params else None
            found.agent = found.agent or agent
            ver = params[1] if len(params) > 1 else None
            eth = isinstance(ver, str) and ver.startswith("EthereumStratum/")
            if len(params) > 2:
                found.pool = found.pool or _host(params[2])
            return method, "ethstratum" if eth else "stratum"
        if method in ("mining.authorize", "mining.submit") and isinstance(params, list):
            if params:
                _take_login(found, params[0], stream)
            return method, "stratum"
        if (
            method.startswith("mining.")
            and len(method) > 7
            and method[7:].replace(".", "_").isidentifier()
        ):
            return method, "stratum"
        if isinstance(params, dict):
            if method == "login" and isinstance(params.get("login"), str):
                found.agent = found.agent or _text(params.get("agent"))
                _take_login(found, params["login"], stream)
                return method, "cryptonote"
            if method in ("job", "getjob") and ("blob" in params or "id" in params):
                return method, "cryptonote"
            if method == "submit" and "job_id" in params and "nonce" in params:
                return method, "cryptonote"
        if method == "keepalived":
            return method, "cryptonote"
        if method == "eth_submitLogin" and isinstance(params, list):
            if params:
                _take_login(found, params[0], stream)
            if found.worker is None:
                found.worker = _text(msg.get("worker"))
            return method, "ethproxy"
        if method in ("eth_getWork", "eth_submitWork", "eth_submitHashrate"):
            return method, "ethproxy"
        if method in ("getwork", "getblocktemplate"):
            return method, "getwork"
        return None
    return _classify_result(msg.get("result"))


def _classify_result(result: object) -> tuple[str, str] | None:
    """Responses that prove mining by their shape alone (a session seen midway)."""
    if isinstance(result, dict):
        job = result.get("job", result)
        if isinstance(job, dict) and "blob" in job and "job_id" in job and "target" in job:
            return "job (result)", "cryptonote"
        if "midstate" in result and "data" in result and "target" in result:
            return "getwork (result)", "getwork"
    if isinstance(result, list) and 3 <= len(result) <= 4:
        hashes = all(isinstance(x, str) and _HEX32.fullmatch(x) for x in result[:3])
        if hashes and str(result[2]).startswith("0x0000"):  # a boundary has leading zeros
            return "eth_getWork (result)", "ethproxy"
        head = result[0]
        if isinstance(head, list) and any(  # mining.subscribe result: [[method, id], ...]
            isinstance(p, list) and p and isinstance(p[0], str) and p[0].startswith("mining.")
            for p in head
        ):
            return "mining.subscribe (result)", "stratum"
    return None


def _http_headers(found: _Found, line: bytes, stream: Stream) -> None:
    name, sep, value = line.partition(b":")
    if not sep:
        return
    key, text = name.strip().lower(), value.strip().decode("latin-1")
    if key == b"host":
        found.pool = found.pool or _host(text)
    elif key == b"user-agent":
        found.agent = found.agent or _text(text)
    elif key == b"authorization" and text[:6].lower() == "basic ":
        try:
            user = base64.b64decode(text[6:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return
        head = user.split(":", 1)[0]
        got = split_login(head)
        if got is not None and found.wallet is None:  # literal in the decoded header only
            found.coin, found.wallet = got[0], got[1]
            found.worker = found.worker or got[2]


def _scan(stream: Stream, stream_no: int, found: _Found) -> None:
    data, off = stream.data, 0
    in_headers = False
    while off < len(data):
        end = data.find(b"\n", off)
        end = len(data) if end < 0 else end
        line = data[off:end].rstrip(b"\r")
        start = off + len(data[off:end]) - len(data[off:end].lstrip())
        off = end + 1
        stripped = line.strip()
        if _REQUEST_LINE.fullmatch(stripped):
            found.http, in_headers = True, True
            continue
        if in_headers:
            if not stripped:
                in_headers = False
            else:
                _http_headers(found, stripped, stream)
            continue
        brace = stripped.find(b"{")
        if brace < 0 or brace > 8 or len(stripped) > _MAX_LINE:
            continue  # JSON-RPC objects open their line (an HTTP body may follow a header)
        try:
            msg, _ = _DECODER.raw_decode(stripped[brace:].decode("utf-8"))
        except (ValueError, RecursionError, UnicodeDecodeError):
            continue
        if not isinstance(msg, dict):
            continue
        got = _classify(msg, found, stream)
        if got is not None:
            text = stripped.decode("utf-8", "replace")
            found.add(got[0], got[1], stream_no, (stream, start, text))


@lru_cache(maxsize=1)
def _catalog() -> ServiceCatalog:
    return ServiceCatalog.builtin()


def _pool_service(pool: str | None, catalog: ServiceCatalog) -> tuple[str, str | None]:
    """(service name, coin the pool's name points at) for a pool host."""
    if pool is None:
        return "mining", None
    match = catalog.by_name([pool])
    i = int(match.service[0])
    if i >= 0 and catalog.services[i].category == "crypto.mining":
        return catalog.services[i].name, catalog.coin_of(pool)
    return "mining", None


def _shorten(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"


def detect_mining(streams: list[Stream], catalog: ServiceCatalog | None = None) -> Label | None:
    """A ``crypto.mining`` label for a connection whose streams (either direction)
    carry a mining protocol; None otherwise."""
    found = _Found()
    for i, stream in enumerate(streams):
        _scan(stream, i, found)
    if not found.kinds or found.dialect is None:
        return None
    if found.dialect == "getwork" and not found.http and "getwork (result)" not in found.kinds:
        return None  # getwork is an HTTP protocol: a bare JSON line naming it is no proof
    catalog = catalog or _catalog()
    service, pool_coin = _pool_service(found.pool, catalog)
    notes: list[str] = []
    coin = found.coin
    if coin is not None:
        notes.append(f"coin {coin} from the wallet's format")
    elif found.dialect in _DIALECT_COIN:
        coin, why = _DIALECT_COIN[found.dialect]
        notes.append(why)
    elif pool_coin is not None:
        coin = pool_coin
        notes.append(f"coin {coin} from the pool host {found.pool}")
    exchange = len(found.kinds) > 1 or len({s for _, s in found.kinds.values()}) > 1
    kinds = sorted(found.kinds, key=lambda k: found.kinds[k][0])
    shown = found.login or found.first
    assert shown is not None  # kinds is not empty
    kind, stream, offset, raw = shown
    parts = [
        f"{DIALECTS[found.dialect]}: {', '.join(kinds[:10])}",
        f"{kind} in {place(stream, offset) or 'the payload'}: {_shorten(raw)}",
    ]
    parts += [f"agent {found.agent}"] if found.agent else []
    parts += [f"worker {found.worker}"] if found.worker else []
    parts += [f"pool {found.pool}"] if found.pool else []
    return Label(
        service=service,
        category="crypto.mining",
        confidence=0.99 if exchange else 0.95,
        evidence="; ".join(parts + notes),
        coin=coin,
        pool=found.pool,
        wallet=found.wallet,
    )


#: markers that make a segment worth buffering for this detector: every JSON-RPC
#: request or notification names a method, every response carries a result
MARKERS: tuple[bytes, ...] = (b'"method"', b'"result"')

__all__ = ["DIALECTS", "MARKERS", "detect_mining"]
