"""Wallets seen in traffic, screened against the imported sanctions lists (``sanctions``).

The territory's flows carry a ``wallet`` (the payout address of a Stratum login, read
from the payload and checksum-validated at ingest) with its ``coin`` and ``pool``.
Every distinct wallet is screened against the newest sanctions snapshot of the
workspace (:class:`rogueflow.sanctions.snapshots.SanctionsStore`; the advanced XML
wins a tie with the legacy CSV of the same date) and, to catch delistings, against
every older snapshot too. Outcomes, all under the id ``sanctions.wallet_match``:

* a match: ``detected=True``, ``priority="high"``, linking the wallet, the flows that
  carried it (samples), the pool and its servers, the internal hosts, and the
  designation (party, programme, designation date, list date), with the snapshot in
  the provenance;
* wallets seen, none listed: ``detected=False``, saying how many wallets were
  screened against which list (and how many could not be, being invalid);
* wallets seen but no list imported: ``detected=None``, saying what to import;
* no wallet in the scope: no finding.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from rogueflow.addr import format_one
from rogueflow.analyze.base import AnalysisOutput, provenance, sample_flows
from rogueflow.analyze.context import VIEW, Scope
from rogueflow.analyze.engine import sql_string
from rogueflow.findings import (
    Check,
    Confidence,
    Finding,
    Indicator,
    Metric,
    Provenance,
    Table,
    assess,
    grade,
    num,
)
from rogueflow.sanctions.model import ScreenResult
from rogueflow.sanctions.snapshots import SanctionsStore, Snapshot

FINDING_ID = "sanctions.wallet_match"
TITLE = "Sanctioned wallets in traffic"
#: checks that verify a checksum (hex in one case and Solana's base58 carry none)
CHECKSUMMED = frozenset({"base58check", "bech32", "bech32m", "eip55", "monero", "cashaddr"})
SAMPLES = 10
ALTERNATIVES = (
    "The wallet may be a shared deposit address (an exchange's or a pool's) that the "
    "designated party also used, rather than the party's own.",
    "The login may name a wallet the miner does not control (a typo that still passes the "
    "checksum is vanishingly unlikely; a copied or planted address is not).",
    "A designation dated after the traffic shows the wallet's later status, not that the "
    "traffic broke a sanction in force at the time.",
)


def _iso(t: datetime | None) -> str | None:
    return None if t is None else t.replace(tzinfo=None).isoformat(timespec="seconds") + "Z"


def _ip_kind(text: str) -> str:
    return "ipv6-addr" if ":" in text else "ipv4-addr"


@dataclass
class Seen:
    """One distinct wallet string over the scope's flows."""

    wallet: str
    coins: set[str] = field(default_factory=set)
    pools: set[str] = field(default_factory=set)
    flows: int = 0
    first: datetime | None = None
    last: datetime | None = None
    result: ScreenResult | None = None
    earlier: list[tuple[Snapshot, ScreenResult]] = field(default_factory=list)

    @property
    def coin(self) -> str | None:
        return sorted(self.coins)[0] if self.coins else None

    @property
    def listed(self) -> bool:
        return bool(self.result and self.result.match) or bool(self.earlier)


class SanctionedWallets:
    id = "sanctions"
    title = TITLE

    def run(self, scope: Scope) -> AnalysisOutput:
        out = AnalysisOutput()
        with scope.trace() as used:
            seen = _wallets(scope)
            if not seen:
                return out
            store = SanctionsStore(scope.engine.ws)
            try:
                snaps = store.list()
                if not snaps:
                    out.findings.append(_unscreened(scope, seen, provenance(scope, used)))
                    return out
                newest = snaps[-1]
                _screen(store, snaps, seen)
            finally:
                store.close()
            refs = tuple(s.reference() for s in reversed(snaps))
            matched = [s for s in seen.values() if s.listed]
            if not matched:
                prov = _with_refs(provenance(scope, used), refs[:1])
                out.findings.append(_no_match(scope, seen, newest, prov))
                return out
            out.findings.append(_match(scope, seen, matched, newest, list(used), refs))
        return out


# --- gathering and screening --------------------------------------------------------------


def _wallets(scope: Scope) -> dict[str, Seen]:
    seen: dict[str, Seen] = {}
    for r in scope.rows(
        "sanctions: wallets seen",
        f"""
        SELECT wallet, coin, pool, count(*) AS flows, MIN(ts_utc) AS first_ts,
               MAX(ts_utc) AS last_ts
        FROM {VIEW} WHERE wallet IS NOT NULL AND wallet <> '' GROUP BY wallet, coin, pool
        """,
    ):
        s = seen.setdefault(str(r["wallet"]), Seen(str(r["wallet"])))
        if r["coin"]:
            s.coins.add(str(r["coin"]))
        if r["pool"]:
            s.pools.add(str(r["pool"]))
        s.flows += int(r["flows"])
        s.first = min(filter(None, (s.first, r["first_ts"])), default=None)
        s.last = max(filter(None, (s.last, r["last_ts"])), default=None)
    return seen


def _screen_one(lst: Any, s: Seen, snap: Snapshot) -> ScreenResult:
    # the format decides; the flow's coin is a fallback for formats inference cannot know
    res: ScreenResult = lst.screen(s.wallet, snapshot=snap.id)
    if res.checked.valid is False and s.coin:
        res = lst.screen(s.wallet, s.coin, snapshot=snap.id)
    return res


def _screen(store: SanctionsStore, snaps: list[Snapshot], seen: dict[str, Seen]) -> None:
    newest = snaps[-1]
    lst = store.load(newest)
    for s in seen.values():
        s.result = _screen_one(lst, s, newest)
    for snap in reversed(snaps[:-1]):  # earlier issues: a delisted wallet still matters
        older = store.load(snap)
        for s in seen.values():
            res = _screen_one(older, s, snap)
            if res.match:
                s.earlier.append((snap, res))


def _with_refs(prov: Provenance, refs: tuple[dict[str, Any], ...]) -> Provenance:
    return replace(prov, reference_data=(*prov.reference_data, *refs))


def _list_name(snap: Snapshot) -> str:
    listed = snap.list_date.isoformat() if snap.list_date else "undated"
    return f"the sanctions list {snap.name} of {listed} ({snap.id})"


def _period(scope: Scope) -> dict[str, str]:
    return {"start": scope.start.isoformat(), "end": scope.end.isoformat()}


# --- the three outcomes ------------------------------------------------------------------


def _screened_table(seen: dict[str, Seen]) -> Table:
    rows = []
    for s in sorted(seen.values(), key=lambda s: (s.first or datetime.min, s.wallet)):
        r = s.result
        state = "not screened"
        if r is not None:
            state = {True: "listed", False: "not listed", None: "invalid or unknown format"}[
                r.match
            ]
            if r.match is None and r.checked.valid is None:
                state = "unknown format, not listed under this spelling"
        if s.earlier and not (r and r.match):
            state = f"delisted (in {s.earlier[0][0].id})"
        rows.append((s.wallet, s.coin or "", ", ".join(sorted(s.pools)), s.flows, state))
    return Table(
        "Wallets screened", ("wallet", "coin", "pools", "flows", "result"), tuple(rows[:200])
    )


def _unscreened(scope: Scope, seen: dict[str, Seen], prov: Provenance) -> Finding:
    n = len(seen)
    return Finding(
        id=FINDING_ID,
        title=TITLE,
        statement=f"{n} wallet(s) were seen in traffic of {scope.territory.name}, but no "
        "sanctions list is imported in this workspace, so none was screened; import one "
        "with `rogueflow sanctions import FILE` and rebuild the report.",
        period=_period(scope),
        metrics={"wallets_seen": Metric(n, unit="wallets", method="distinct wallet values")},
        confidence=Confidence("low", ("no sanctions list to screen against",)),
        evidence=(_screened_table(seen),),
        charts=(),
        provenance=prov,
        headline=("wallets_seen",),
        detected=None,
    )


def _no_match(scope: Scope, seen: dict[str, Seen], snap: Snapshot, prov: Provenance) -> Finding:
    results = [s.result for s in seen.values() if s.result is not None]
    screened = sum(r.checked.valid is not False for r in results)
    invalid = len(results) - screened
    conf = grade(
        [
            Check(
                False,
                "",
                "a list names only the addresses OFAC has published; a designated party's other "
                "wallets, and fresh ones, are not on it",
            ),
            Check(
                invalid == 0,
                "every wallet seen is a valid address",
                f"{invalid} wallet(s) are not valid addresses and could not be screened",
            ),
        ]
    )
    extra = f"; {invalid} more could not be screened (not valid addresses)" if invalid else ""
    return Finding(
        id=FINDING_ID,
        title=TITLE,
        statement=f"{assess(conf.level)} none of the {screened} wallet(s) seen in traffic of "
        f"{scope.territory.name} between {scope.start} and {scope.end} is on "
        f"{_list_name(snap)}{extra}.",
        period=_period(scope),
        metrics={
            "wallets_seen": Metric(len(seen), unit="wallets", method="distinct wallet values"),
            "wallets_screened": Metric(screened, unit="wallets", method="valid addresses"),
            "wallets_matched": Metric(0, unit="wallets", method=f"listed in {snap.id}"),
        },
        confidence=conf,
        evidence=(_screened_table(seen),),
        charts=(),
        provenance=prov,
        alternatives=(
            "A wallet not on the list may still belong to a designated party; the list is "
            "not exhaustive.",
        ),
        headline=("wallets_screened", "wallets_matched"),
        detected=False,
    )


def _match(
    scope: Scope,
    seen: dict[str, Seen],
    matched: list[Seen],
    newest: Snapshot,
    used: list[Any],
    refs: tuple[dict[str, Any], ...],
) -> Finding:
    where = f"wallet IN ({', '.join(sql_string(s.wallet) for s in matched)})"
    with scope.trace() as extra:
        links = scope.rows(
            "sanctions: flows of listed wallets",
            f"""
            SELECT wallet, pool, remote_addr, remote_port, internal_addr, count(*) AS flows,
                   MIN(ts_utc) AS first_ts, MAX(ts_utc) AS last_ts
            FROM {VIEW} WHERE {where}
            GROUP BY wallet, pool, remote_addr, remote_port, internal_addr
            ORDER BY first_ts, wallet, pool NULLS FIRST, remote_addr, remote_port, internal_addr
            """,
        )
        samples = sample_flows(scope, "sanctions: sample flows of listed wallets", where, SAMPLES)
    snaps_used = {newest.id} | {snap.id for s in matched for snap, _ in s.earlier}
    prov = _with_refs(
        provenance(scope, used + [q for q in extra if q not in used]),
        tuple(r for r in refs if r["id"] in snaps_used),
    )
    hosts = sorted({format_one(r["internal_addr"]) for r in links})
    pools = sorted({str(r["pool"]) for r in links if r["pool"]})
    design_rows, inds = [], []
    for s in matched:
        current = s.result is not None and bool(s.result.match)
        res = s.result if current and s.result else s.earlier[0][1]
        snap_id = newest.id if current else s.earlier[0][0].id
        also = ", ".join(snap.id for snap, _ in s.earlier)
        for m in res.matches:
            design_rows.append(
                (
                    s.wallet,
                    m.listing.asset,
                    m.party.name,
                    m.party.id,
                    m.party.programme,
                    m.party.designated or "",
                    res.list_date or "",
                    snap_id if current else f"{snap_id} (not in the newest list, {newest.id})",
                    also,
                )
            )
        inds.append(
            Indicator(
                "wallet",
                s.wallet,
                "sanctioned payout wallet" if current else "formerly sanctioned payout wallet",
                _iso(s.first),
                _iso(s.last),
                s.flows,
                s.coin,
            )
        )
    for h in hosts:
        n = sum(int(r["flows"]) for r in links if format_one(r["internal_addr"]) == h)
        inds.append(Indicator(_ip_kind(h), h, "host sending a sanctioned wallet", flows=n))
    servers = sorted({(format_one(r["remote_addr"]), r["remote_port"]) for r in links})
    for text in sorted({t for t, _ in servers}):
        inds.append(Indicator(_ip_kind(text), text, "mining pool server paying a listed wallet"))
    for p in pools:
        inds.append(Indicator("domain-name", p, "mining pool paying a listed wallet"))
    link_rows = tuple(
        (
            r["wallet"],
            r["pool"] or "",
            f"{format_one(r['remote_addr'])}:{r['remote_port']}",
            format_one(r["internal_addr"]),
            int(r["flows"]),
            _iso(r["first_ts"]),
            _iso(r["last_ts"]),
        )
        for r in links
    )
    checks = [
        Check(
            all(s.result is not None and s.result.checked.check in CHECKSUMMED for s in matched),
            "each listed wallet's checksum holds, and it matched the list exactly",
            "a wallet's format carries no checksum (single-case hex or no-checksum base58): "
            "the match is exact but the address itself is unverified",
        ),
        Check(
            all(s.result is not None and s.result.match for s in matched),
            "every wallet is on the newest list",
            "a wallet is only on an earlier list (delisted since)",
        ),
    ]
    conf = grade(checks)
    n_flows = sum(s.flows for s in matched)
    return Finding(
        id=FINDING_ID,
        title=TITLE,
        statement=_statement(scope, matched, newest, conf.level, hosts, pools),
        period=_period(scope),
        metrics={
            "wallets_matched": Metric(len(matched), unit="wallets", method="on a sanctions list"),
            "wallets_screened": Metric(len(seen), unit="wallets", method="distinct wallets seen"),
            "flows": Metric(n_flows, unit="flows", method="flows carrying a listed wallet"),
            "internal_hosts": Metric(len(hosts), unit="hosts", method="inside ends of them"),
            "pools": Metric(len(pools), unit="pools", method="pool names of those flows"),
        },
        confidence=conf,
        evidence=(
            Table(
                "Designations",
                (
                    "wallet",
                    "listed asset",
                    "party",
                    "party id",
                    "programme",
                    "designated",
                    "list date",
                    "snapshot",
                    "also in",
                ),
                tuple(design_rows),
            ),
            Table(
                "Flows carrying a listed wallet",
                (
                    "wallet",
                    "pool",
                    "pool server",
                    "internal host",
                    "flows",
                    "first (UTC)",
                    "last (UTC)",
                ),
                link_rows,
            ),
            _screened_table(seen),
        ),
        charts=(),
        provenance=prov,
        alternatives=ALTERNATIVES,
        headline=("wallets_matched", "flows", "internal_hosts"),
        indicators=tuple(inds),
        samples=samples,
        priority="high",
        detected=True,
    )


def _statement(
    scope: Scope,
    matched: list[Seen],
    newest: Snapshot,
    level: str,
    hosts: list[str],
    pools: list[str],
) -> str:
    parts = []
    for s in matched[:3]:
        current = s.result is not None and bool(s.result.match)
        res = s.result if current and s.result else s.earlier[0][1]
        m = res.matches[0]
        first = s.first.date().isoformat() if s.first else "?"
        when = f" (designated {m.party.designated}" if m.party.designated else " ("
        if m.party.designated and first < m.party.designated:
            when += f", after the first flow on {first})"
        elif m.party.designated:
            when += f", before the first flow on {first})"
        else:
            when = f" (first flow {first})"
        listed = "" if current else f"; delisted since, absent from {_list_name(newest)}"
        pool = ", ".join(sorted(s.pools)) or "a pool"
        parts.append(
            f"{s.wallet} ({m.listing.asset}), listed for {m.party.name} under programme "
            f"{m.party.programme or 'unknown'}{when}, was the payout wallet of {num(s.flows)} "
            f"flow(s) to {pool}{listed}"
        )
    more = f"; and {len(matched) - 3} more wallet(s)" if len(matched) > 3 else ""
    return (
        f"{assess(level)} mining traffic from {len(hosts)} internal host(s) of "
        f"{scope.territory.name} paid out to a wallet on {_list_name(newest)}: "
        + "; ".join(parts)
        + more
        + (f". Pools: {', '.join(pools)}." if pools else ".")
    )
