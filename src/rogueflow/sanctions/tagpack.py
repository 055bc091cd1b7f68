"""GraphSense TagPacks: read them as an attribution source, write rogueflow's wallet tags.

A TagPack is a YAML document: a header (``title`` and ``creator`` required) with a
``tags`` list; any other header field (``currency``, ``network``, ``source``,
``category``, ``confidence``, ``lastmod`` …) is a default every tag inherits unless it
sets its own. A tag names an ``address`` with a ``label``, a ``source`` and a
``currency``. YAML is read with ``yaml.safe_load`` (no Python objects, no tags that
construct anything); tags without an address (entity or transaction tags) are skipped.

rogueflow writes the wallets it saw in traffic (a Stratum login's payout wallet)
as a TagPack: one tag per wallet, labelled with the pool, ``category: miner``,
``confidence: forensic`` (GraphSense's level for evidence from analysis), and a
JSON ``context`` with the flows, hosts, pools and first/last seen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from rogueflow.errors import InputError
from rogueflow.sanctions.addresses import check
from rogueflow.workspace import Workspace

HEADER_ONLY = ("title", "creator", "description", "owner", "is_public", "tags")
_MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class Tag:
    address: str
    currency: str
    label: str
    source: str
    network: str | None = None
    category: str | None = None
    abuse: str | None = None
    confidence: str | None = None
    lastmod: str | None = None
    context: str | None = None
    actor: str | None = None
    key: str = ""  # matching key (validated spelling), the address itself when unknown


@dataclass
class TagPack:
    title: str
    creator: str
    tags: list[Tag]
    description: str = ""
    source: str = ""  # the file it was read from
    skipped: int = 0  # tags without an address

    def lookup(self, key: str) -> list[Tag]:
        return [t for t in self.tags if t.key == key]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def read_tagpack(path: str | Path) -> TagPack:
    """Parse one TagPack file; bad YAML or a missing mandatory field is an InputError."""
    p = Path(path)
    try:
        raw = p.read_bytes()[: _MAX_BYTES + 1]
    except OSError as exc:
        raise InputError(p, None, f"cannot read: {exc.strerror or exc}") from None
    if len(raw) > _MAX_BYTES:
        raise InputError(p, None, f"larger than {_MAX_BYTES >> 20} MB")
    try:
        doc = yaml.safe_load(raw)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else None
        raise InputError(p, where, f"malformed YAML ({exc.problem})") from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise InputError(p, None, f"malformed YAML ({exc})") from None
    if not isinstance(doc, dict):
        raise InputError(p, None, "not a TagPack (expected a mapping with title, creator, tags)")
    for key in ("title", "creator", "tags"):
        if doc.get(key) in (None, ""):
            raise InputError(p, None, f"TagPack header field {key!r} is missing")
    if not isinstance(doc["tags"], list):
        raise InputError(p, None, "TagPack 'tags' is not a list")
    defaults = {k: v for k, v in doc.items() if k not in HEADER_ONLY}
    tags, skipped = [], 0
    for n, item in enumerate(doc["tags"], 1):
        if not isinstance(item, dict):
            raise InputError(p, f"tag {n}", "not a mapping")
        merged = {**defaults, **item}
        if merged.get("address") in (None, ""):
            skipped += 1
            continue
        for key in ("label", "source", "currency"):
            if merged.get(key) in (None, ""):
                raise InputError(p, f"tag {n}", f"mandatory field {key!r} is missing")
        address, currency = str(merged["address"]).strip(), str(merged["currency"]).upper()
        c = check(address, currency)
        tags.append(
            Tag(
                address=address,
                currency=currency,
                label=str(merged["label"]),
                source=str(merged["source"]),
                network=_text(merged.get("network")),
                category=_text(merged.get("category")),
                abuse=_text(merged.get("abuse")),
                confidence=_text(merged.get("confidence")),
                lastmod=_text(merged.get("lastmod")),
                context=_text(merged.get("context")),
                actor=_text(merged.get("actor")),
                key=c.key if c.valid else address,
            )
        )
    return TagPack(
        title=str(doc["title"]),
        creator=str(doc["creator"]),
        tags=tags,
        description=str(doc.get("description") or ""),
        source=str(p),
        skipped=skipped,
    )


@dataclass(frozen=True)
class WalletSighting:
    """A wallet seen in traffic, aggregated over the flows that carried it."""

    wallet: str
    coin: str | None
    pools: tuple[str, ...]
    flows: int
    hosts: tuple[str, ...]  # internal (login-sending) addresses
    first_seen: datetime
    last_seen: datetime
    servers: tuple[str, ...] = ()  # pool server address:port
    extra: dict[str, Any] = field(default_factory=dict)


#: rogueflow's coin codes to GraphSense currency / network codes
_GS_CURRENCY = {"XBT": "BTC"}


def wallet_tagpack(
    sightings: Iterable[WalletSighting], *, title: str, creator: str, source: str
) -> dict[str, Any]:
    """The TagPack document (a dict ready for YAML) for wallets seen in traffic."""
    tags = []
    for s in sorted(sightings, key=lambda s: (s.first_seen, s.wallet)):
        coin = _GS_CURRENCY.get(s.coin or "", s.coin or "UNKNOWN")
        pools = ", ".join(s.pools or s.servers) or "an unnamed pool"
        context = {
            "seen_in": "Stratum login (pool payout wallet)",
            "pools": list(s.pools),
            "pool_servers": list(s.servers),
            "flows": s.flows,
            "hosts": list(s.hosts),
            "first_seen": _utc(s.first_seen),
            "last_seen": _utc(s.last_seen),
            **s.extra,
        }
        tags.append(
            {
                "address": s.wallet,
                "currency": coin,
                "network": coin,
                "label": f"mining payout wallet seen in traffic to {pools}",
                "lastmod": s.last_seen.date(),
                "context": json.dumps(context, sort_keys=True),
            }
        )
    return {
        "title": title,
        "creator": creator,
        "description": "Wallets seen in network traffic by rogueflow (payout wallets in pool "
        "logins), with the flows that carried them.",
        "is_public": False,
        "source": source,
        "category": "miner",
        "confidence": "forensic",
        "lastmod": datetime.now(UTC).date(),
        "tags": tags,
    }


def dump_tagpack(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)


def _utc(t: datetime) -> str:
    t = t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)
    return t.isoformat().replace("+00:00", "Z")


def wallet_sightings(ws: Workspace) -> list[WalletSighting]:
    """Every wallet in the workspace's flow store, with its pools, flows, hosts and times.

    The host is the flow's source: a Stratum login travels from the miner to the pool.
    """
    from rogueflow.analyze.engine import DuckDBEngine

    engine = DuckDBEngine(ws)
    try:
        rows = engine.arrow(
            """
            SELECT wallet, min(coin) AS coin, list(DISTINCT pool) AS pools, count(*) AS flows,
                   list(DISTINCT src_ip) AS hosts,
                   list(DISTINCT dst_ip || ':' || CAST(dst_port AS VARCHAR)) AS servers,
                   min(CAST(ts_start AS TIMESTAMP)) AS first_ts,
                   max(CAST(ts_start AS TIMESTAMP)) AS last_ts
            FROM flows WHERE wallet IS NOT NULL AND wallet <> ''
            GROUP BY wallet ORDER BY first_ts, wallet
            """
        ).to_pylist()
    finally:
        engine.close()
    return [
        WalletSighting(
            wallet=r["wallet"],
            coin=r["coin"],
            pools=tuple(sorted(p for p in r["pools"] if p)),
            flows=int(r["flows"]),
            hosts=tuple(sorted(h for h in r["hosts"] if h)),
            first_seen=r["first_ts"],
            last_seen=r["last_ts"],
            servers=tuple(sorted(x for x in r["servers"] if x)),
        )
        for r in rows
    ]
