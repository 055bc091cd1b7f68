"""Enrichment from reference data, as of each flow's time.

For every flow, both ends get a country, an AS number and an organisation, and
the flow gets a service, a category, a confidence and the evidence for it.
Every lookup uses the snapshot of its kind that was valid at the flow's
``ts_start`` (:meth:`rogueflow.intel.snapshots.IntelStore.at`); the ids of the
snapshots used are written into the ``intel`` column, so a finding can name
them. Measured columns are never touched.

Classification, first hit by confidence wins:

1. names seen in the flow (TLS SNI / HTTP Host, then the DNS query) against the
   service taxonomy and the domain indicator lists (0.90–0.95);
2. the source's own application label (nDPI, Zeek) (0.85);
3. either address in an address indicator list valid at that time: Tor relays,
   VPN ranges, mining-pool addresses, addresses of indicator domains resolved at
   ``intel update`` (0.80);
4. the server port (the lower of the two ports, and the destination first) (0.40);

else ``unclassified`` with confidence 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr
from rogueflow.arrays import masked
from rogueflow.detect import DETECTOR_PREFIXES
from rogueflow.intel.indicators import CATEGORIES, CONFIDENCE, ServiceCatalog, ServiceMatch
from rogueflow.intel.ranges import Queries, RangeTable
from rogueflow.intel.resolve import DOMAIN_CATEGORIES
from rogueflow.intel.snapshots import IntelStore, Snapshot
from rogueflow.workspace import Workspace

UNCLASSIFIED = "unclassified"

#: application labels of nDPI / Zeek -> (service, category); matched case-insensitively on
#: the label's last dotted part first, then the whole label ("TLS.Tor" -> "tor")
APP_LABELS: dict[str, tuple[str, str]] = {
    "mining": ("mining", "crypto.mining"),
    "bitcoin": ("bitcoin-p2p", "crypto.p2p"),
    "monero": ("monero-p2p", "crypto.p2p"),
    "ethereum": ("ethereum-p2p", "crypto.p2p"),
    "nano": ("nano-p2p", "crypto.p2p"),
    "tor": ("tor", "anonymizer.tor"),
    "openvpn": ("openvpn", "anonymizer.vpn"),
    "wireguard": ("wireguard", "anonymizer.vpn"),
    "ipsec": ("ipsec", "anonymizer.vpn"),
    "protonvpn": ("protonvpn", "anonymizer.vpn"),
    "mullvad": ("mullvad", "anonymizer.vpn"),
    "nordvpn": ("nordvpn", "anonymizer.vpn"),
    "expressvpn": ("expressvpn", "anonymizer.vpn"),
    "surfshark": ("surfshark", "anonymizer.vpn"),
    "pia": ("pia", "anonymizer.vpn"),
    "hotspotshield": ("hotspotshield", "anonymizer.vpn"),
    "tunnelbear": ("tunnelbear", "anonymizer.vpn"),
    "psiphon": ("psiphon", "anonymizer.vpn"),
    "doh_dot": ("doh", "anonymizer.doh"),
    "bittorrent": ("bittorrent", "filesharing"),
}
APP_LABEL_CONFIDENCE = 0.85

#: domain indicator kinds -> category of a hit
#: (one table, shared with the resolution snapshots of `intel update`)
DOMAIN_KINDS = DOMAIN_CATEGORIES
#: address indicator kinds -> category of a hit (hosting is an attribute, not a category)
ADDRESS_KINDS = {
    "tor-relays": "anonymizer.tor",
    "vpn-ranges": "anonymizer.vpn",
    "mining-pools": "crypto.mining",
    #: addresses of indicator domains resolved at `intel update`; each value is
    #: "name|category", so the category comes from the value (see _resolved_codes)
    "dns-resolutions": "",
}

_US = 1_000_000
_TODO = -2  # a snapshot value not converted yet (see Enricher._values)


class _Strings:
    """Interns strings to int32 codes; columns come out as Arrow dictionaries.

    Every per-row string in enrichment has few distinct values (countries, services,
    rules), so rows carry codes and strings are built once per distinct value.
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}
        self._values: list[str] = []
        self._array: pa.Array | None = None

    def code(self, value: str) -> int:
        got = self._index.get(value)
        if got is None:
            got = self._index[value] = len(self._values)
            self._values.append(value)
            self._array = None
        return got

    def codes(self, values: Sequence[object]) -> npt.NDArray[np.int32]:
        """Codes for ``values`` plus a trailing -1, so index -1 maps to null."""
        out = [-1 if v is None else self.code(str(v)) for v in values]
        return np.array([*out, -1], dtype=np.int32)

    def values(self) -> list[str]:
        """Every interned string, in code order."""
        return self._values

    def column(self, codes: npt.NDArray[np.int32]) -> pa.Array:
        """A dictionary column (-1: null) holding only the strings these rows use.

        The interner keeps every string of the run (evidence texts included); a batch
        uses a few of them, and the store writes each file's dictionary once per column.
        """
        if self._array is None:
            self._array = pa.array(self._values, pa.string())
        # slot 0 counts the nulls; code c counts at c + 1
        counts = np.bincount(codes + 1, minlength=len(self._values) + 1)
        used = np.flatnonzero(counts[1:])
        # remap[-1] (the null code) is 0, any valid index: those rows are masked
        remap = np.zeros(len(self._values) + 1, dtype=np.int32)
        remap[used] = np.arange(len(used), dtype=np.int32)
        indices = masked(remap[codes], codes < 0, pa.int32())
        return pa.DictionaryArray.from_arrays(indices, self._array.take(pa.array(used)))


class _Addrs:
    """An address column split once into the range tables' query form (IPv4 words,
    IPv6 halves; nulls as ``::``) and looked up once per table, every row.

    Not per distinct address: hashing the 16-byte addresses to find the distinct ones
    (``pc.dictionary_encode``, 0.14 s per 1M rows) cost more than the lookups it saved
    (the direct IPv4 index answers a row in a few nanoseconds per table).
    """

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._queries = Queries(addr.to_matrix(column))
        self._hits: dict[int, tuple[RangeTable, npt.NDArray[np.int32]]] = {}

    def lookup(self, rt: RangeTable) -> npt.NDArray[np.int32]:
        """``rt.lookup`` of every row of the column."""
        got = self._hits.get(id(rt))
        if got is None or got[0] is not rt:
            got = self._hits[id(rt)] = (rt, rt.answer(self._queries))
        return got[1]


@dataclass
class _Label:
    """Per-row classification being assembled as string codes (best confidence wins)."""

    service: npt.NDArray[np.int32]
    category: npt.NDArray[np.int32]
    confidence: npt.NDArray[np.float32]
    evidence: npt.NDArray[np.int32]

    @classmethod
    def empty(cls, n: int, unclassified: int) -> _Label:
        return cls(
            np.full(n, -1, dtype=np.int32),
            np.full(n, unclassified, dtype=np.int32),
            np.zeros(n, dtype=np.float32),
            np.full(n, -1, dtype=np.int32),
        )

    def offer(
        self,
        mask: npt.NDArray[np.bool_],
        service: npt.ArrayLike,
        category: npt.ArrayLike,
        confidence: npt.ArrayLike,
        evidence: npt.ArrayLike,
    ) -> None:
        conf = np.broadcast_to(np.asarray(confidence, dtype=np.float32), mask.shape)
        take = mask & (conf > self.confidence)
        if not take.any():
            return
        for target, value in (
            (self.service, service),
            (self.category, category),
            (self.evidence, evidence),
        ):
            target[take] = np.broadcast_to(np.asarray(value, dtype=np.int32), mask.shape)[take]
        self.confidence[take] = conf[take]


class Enricher:
    """Adds the enrichment columns of schema 2 to canonical flow tables."""

    def __init__(self, ws: Workspace, store: IntelStore | None = None) -> None:
        self.store = store or IntelStore(ws)
        self.catalog = ServiceCatalog.builtin()
        self._kinds_present = {s.kind for s in self.store.list()}
        self._value_cache: dict[tuple[str, int], npt.NDArray[Any]] = {}
        self._resolved: dict[str, tuple[npt.NDArray[np.int32], ...]] = {}
        self.strings = _Strings()
        self._unclassified = self.strings.code(UNCLASSIFIED)
        self._service_codes = self.strings.codes([x.name for x in self.catalog.services])
        self._category_codes = self.strings.codes(list(CATEGORIES))
        #: service name -> its coin, for services of exactly one coin
        self._single_coin = {x.name: x.coins[0] for x in self.catalog.services if len(x.coins) == 1}

    # --- snapshot selection ---------------------------------------------------------

    def _segments(
        self, kind: str, ts_us: npt.NDArray[np.int64]
    ) -> list[tuple[npt.NDArray[np.bool_], list[Snapshot]]]:
        """Rows grouped by the snapshots of ``kind`` valid at their time, best first.

        Validity only changes at snapshot boundaries, so rows between two boundaries
        share one ranked list.
        """
        if kind not in self._kinds_present or len(ts_us) == 0:
            return []
        snaps = self.store.list(kind)
        bounds = sorted(
            {
                int(t.timestamp() * _US)
                for s in snaps
                for t in (s.valid_from, s.valid_to)
                if t is not None
            }
        )
        edges = np.array(bounds, dtype=np.int64)
        interval = np.searchsorted(edges, ts_us, side="right")
        out: list[tuple[npt.NDArray[np.bool_], list[Snapshot]]] = []
        # the intervals present, without sorting the batch (np.unique: 5% of ingest CPU)
        for k in np.flatnonzero(np.bincount(interval, minlength=len(edges) + 1)):
            rows = interval == k
            at_us = int(ts_us[rows].min())
            ranked = self.store.ranked(kind, datetime.fromtimestamp(at_us / _US, UTC))
            if ranked:
                out.append((rows, ranked))
        return out

    def _each(
        self, kind: str, ts_us: npt.NDArray[np.int64]
    ) -> list[tuple[npt.NDArray[np.bool_], Snapshot]]:
        """(rows, snapshot) for every snapshot of an indicator kind valid for those rows."""
        return [(rows, snap) for rows, ranked in self._segments(kind, ts_us) for snap in ranked]

    def _layered(
        self,
        segments: list[tuple[npt.NDArray[np.bool_], list[Snapshot]]],
        column: _Addrs,
        n: int,
        mark: Callable[[npt.NDArray[np.bool_], Snapshot], None] | None,
    ) -> list[tuple[npt.NDArray[np.bool_], Snapshot, npt.NDArray[np.int32]]]:
        """Look up each row in the best snapshot that covers its address.

        A partial table (a user's CSV of a few ranges) answers for its ranges; other
        addresses fall through to the next valid snapshot, down to the embedded default.
        Returns (rows, snapshot, indices) per answering snapshot.
        """
        answers: list[tuple[npt.NDArray[np.bool_], Snapshot, npt.NDArray[np.int32]]] = []
        for rows, ranked in segments:
            todo = rows.copy()
            for snap in ranked:
                if not todo.any():
                    break
                idx = self._lookup(snap, column, todo)
                found = np.zeros(n, dtype=bool)
                found[np.flatnonzero(todo)[idx >= 0]] = True
                if found.any():
                    answers.append((found, snap, idx[idx >= 0]))
                    if mark is not None:
                        mark(found, snap)
                todo &= ~found
        return answers

    # --- the stage ------------------------------------------------------------------

    def apply(self, table: pa.Table) -> pa.Table:
        n = table.num_rows
        ts_us = pc.cast(table.column("ts_start"), pa.int64()).to_numpy()
        # which snapshots each row used, as a bit set over the snapshots of this batch
        used_bits = np.zeros(n, dtype=np.uint64)
        bit_of: dict[str, int] = {}

        def mark(rows: npt.NDArray[np.bool_], snap: Snapshot) -> None:
            bit = bit_of.setdefault(snap.id, len(bit_of))
            if bit < 64:
                used_bits[rows] |= np.uint64(1) << np.uint64(bit)

        cols: dict[str, pa.Array] = {}
        strings = self.strings
        country_segments = self._segments("geo-country", ts_us)
        asn_segments = self._segments("geo-asn", ts_us)
        addrs = {end: _Addrs(table.column(f"{end}_addr")) for end in ("src", "dst")}
        for end in ("src", "dst"):
            column = addrs[end]
            country = np.full(n, -1, dtype=np.int32)
            asn = np.full(n, -1, dtype=np.int64)
            org = np.full(n, -1, dtype=np.int32)
            for rows, snap, idx in self._layered(country_segments, column, n, mark):
                country[rows] = self._values(snap, 0, idx)
            for rows, snap, idx in self._layered(asn_segments, column, n, mark):
                asn[rows] = self._values(snap, 1, idx)
                org[rows] = self._values(snap, 2, idx)
            cols[f"{end}_country"] = strings.column(country)
            cols[f"{end}_asn"] = masked(np.clip(asn, 0, None), asn < 0, pa.uint32())
            cols[f"{end}_as_org"] = strings.column(org)

        label = self._classify(table, ts_us, mark, addrs)
        self._keep_detected(table, label)
        cols["service"] = strings.column(label.service)
        cols["category"] = strings.column(label.category)
        cols["confidence"] = pa.array(label.confidence, pa.float32())
        cols["evidence"] = strings.column(label.evidence)
        cols.update(self._coin_and_pool(table, label))
        ids = sorted(bit_of, key=bit_of.__getitem__)
        # few distinct bit sets per batch: hashed by Arrow (np.unique would sort them all)
        enc = pc.dictionary_encode(pa.array(used_bits, pa.uint64()))
        masks = enc.dictionary.to_numpy()
        texts = [
            ";".join(i for i in ids if int(m) >> bit_of[i] & 1) or None for m in masks.tolist()
        ]
        inverse = enc.indices.to_numpy().astype(np.int32, copy=False)
        empty = np.array([t is None for t in texts])[inverse]
        cols["intel"] = pa.DictionaryArray.from_arrays(
            masked(inverse, empty, pa.int32()),
            pa.array([t or "" for t in texts], pa.string()),
        )
        for name, col in cols.items():
            idx = table.schema.get_field_index(name)
            table = table.set_column(idx, name, col) if idx >= 0 else table.append_column(name, col)
        return table

    def _lookup(
        self, snap: Snapshot, column: _Addrs, rows: npt.NDArray[np.bool_]
    ) -> npt.NDArray[np.int32]:
        rt = _range_table(self.store.load(snap))
        if rt is None:
            return np.full(int(rows.sum()), -1, dtype=np.int32)
        found = column.lookup(rt)
        return found if rows.all() else found[rows]

    def _values(self, snap: Snapshot, part: int, idx: npt.NDArray[np.int32]) -> npt.NDArray[Any]:
        """The values at lookup results ``idx`` (all >= 0) of a snapshot.

        part 0: string code of the value (country); 1: AS number (-1 unknown);
        2: string code of the organisation. Values are converted the first time a
        lookup hits them: a flow file touches few of a table's 100k+ entries.
        """
        key = (snap.id, part)
        arr = self._value_cache.get(key)
        if arr is None:
            rt = _range_table(self.store.load(snap))
            size = len(rt.values) if rt is not None else 0
            arr = np.full(size, _TODO, dtype=np.int64 if part == 1 else np.int32)
            self._value_cache[key] = arr
        got = arr[idx]
        todo = got == _TODO
        if todo.any():
            rt = _range_table(self.store.load(snap))
            assert rt is not None  # a table without values has no hits
            new = np.unique(idx[todo])
            values = [rt.values[i] for i in new.tolist()]
            if part == 1:
                arr[new] = [_asn_number(v) for v in values]
            elif part == 2:
                arr[new] = self.strings.codes([_asn_name(v) for v in values])[:-1]
            else:
                arr[new] = self.strings.codes(values)[:-1]
            got = arr[idx]
        return got

    def _classify(
        self,
        table: pa.Table,
        ts_us: npt.NDArray[np.int64],
        mark: Callable[[npt.NDArray[np.bool_], Snapshot], None],
        addrs: dict[str, _Addrs],
    ) -> _Label:
        n = table.num_rows
        strings = self.strings
        label = _Label.empty(n, self._unclassified)
        # 1. names seen in the flow
        for column in ("server_name", "dns_query"):
            names = table.column(column)
            if names.null_count == n:
                continue
            self._offer_match(label, self.catalog.by_name(names))
            for kind, category in DOMAIN_KINDS.items():
                cat = strings.code(category)
                for rows, snap in self._each(kind, ts_us):
                    lst = self.store.load(snap)
                    table_fn = getattr(lst, "table", None)
                    dt = table_fn() if callable(table_fn) else None
                    if dt is None or not hasattr(dt, "match_detail"):
                        continue
                    entry, exact = dt.match_detail(names)
                    hit = rows & (entry >= 0)
                    if not hit.any():
                        continue
                    mark(hit, snap)
                    svc, ev = self._entry_codes(
                        entry, hit, list(dt.entries), f"{kind} list {snap.name}: "
                    )
                    conf = np.where(exact, CONFIDENCE["domain-exact"], CONFIDENCE["domain-suffix"])
                    label.offer(hit, svc, cat, conf, ev)
        # 2. the source's application label
        app = table.column("app_label")
        if app.null_count < n:
            enc = pc.dictionary_encode(app.combine_chunks())
            words = enc.dictionary.to_pylist()
            mapped = [_app_label(w) for w in words]
            codes = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
            app_svc = strings.codes([m[0] if m else None for m in mapped])
            app_cat = strings.codes([m[1] if m else None for m in mapped])
            app_ev = strings.codes([f"label {w}" for w in words])
            label.offer(
                app_cat[codes] >= 0, app_svc[codes], app_cat[codes], APP_LABEL_CONFIDENCE,
                app_ev[codes],
            )  # fmt: skip
        # 3. address indicators on either end
        for kind, category in ADDRESS_KINDS.items():
            cat = strings.code(category)
            svc_code = strings.code(kind.split("-")[0])
            for rows, snap in self._each(kind, ts_us):
                rt = _range_table(self.store.load(snap))
                if rt is None:
                    continue
                for end in ("dst", "src"):
                    idx = addrs[end].lookup(rt)
                    hit = rows & (idx >= 0)
                    if not hit.any():
                        continue
                    mark(hit, snap)
                    if kind == "dns-resolutions":
                        svc_map, cat_map, ev_map = self._resolved_codes(snap, rt)
                        label.offer(
                            hit, svc_map[idx], cat_map[idx], CONFIDENCE["address-list"],
                            ev_map[idx],
                        )  # fmt: skip
                        continue
                    _, ev = self._entry_codes(idx, hit, list(rt.values), f"{kind} {snap.name}: ")
                    label.offer(hit, svc_code, cat, CONFIDENCE["address-list"], ev)
        # 4. port rules on the server side (the lower port; destination first)
        proto = table.column("proto")
        sport = table.column("src_port").to_numpy(zero_copy_only=False).astype(np.int64)
        dport = table.column("dst_port").to_numpy(zero_copy_only=False).astype(np.int64)
        server = np.where((sport < dport) & (sport > 0), sport, dport)
        self._offer_match(label, self.catalog.by_port(proto, server))
        return label

    def _coin_and_pool(self, table: pa.Table, label: _Label) -> dict[str, pa.Array]:
        """Fill ``coin`` and ``pool`` where a detector left them empty.

        A flow classified by a single-coin service (a Monero pool, Bitcoin P2P) gets
        that coin; a mining flow classified by its server name gets that name as pool.
        Values a detector wrote (from the payload) are kept.
        """
        n = table.num_rows
        # only the services this batch uses: the interned strings also hold every evidence text
        values = self.strings.values()
        used = np.unique(label.service[label.service >= 0])
        # service code -> coin code (-1: none), and index -1 (no service) -> none
        svc_coin = np.full(len(values) + 1, -1, dtype=np.int32)
        coins = [self._single_coin.get(values[c]) for c in used.tolist()]
        svc_coin[used] = self.strings.codes(coins)[:-1]
        coin = self.strings.column(svc_coin[label.service])
        mining = label.category == self.strings.code("crypto.mining")
        named = mining & (label.confidence >= CONFIDENCE["domain-suffix"])
        name = pc.coalesce(table.column("server_name"), table.column("dns_query"))
        pool = pc.if_else(pa.array(named), name, pa.nulls(n, pa.string()))
        out: dict[str, pa.Array] = {}
        for column, derived in (("coin", coin), ("pool", pool)):
            have = table.column(column) if column in table.column_names else None
            if have is None or have.null_count == n:
                out[column] = derived
            else:
                out[column] = pc.coalesce(have.cast(pa.string()), derived.cast(pa.string()))
        return out

    def _keep_detected(self, table: pa.Table, label: _Label) -> None:
        """Rows a payload or behaviour detector labelled keep that label when it is surer.

        Such labels arrive with the reader's rows (payload) or were written at ingest
        (session behaviour); re-enriching one row cannot reproduce them.
        """
        if "evidence" not in table.column_names or table.column("evidence").null_count == len(
            table
        ):
            return
        evidence = table.column("evidence")
        detected = np.zeros(len(table), dtype=bool)
        for prefix in DETECTOR_PREFIXES:
            detected |= pc.fill_null(pc.starts_with(evidence, prefix), False).to_numpy(
                zero_copy_only=False
            )
        if not detected.any():
            return
        rows = np.flatnonzero(detected)
        sub = table.take(pa.array(rows))
        conf = pc.fill_null(sub.column("confidence"), 0).to_numpy(zero_copy_only=False)
        strings = self.strings
        codes = {
            name: strings.codes(sub.column(name).to_pylist())[:-1]
            for name in ("service", "category", "evidence")
        }
        take = conf > label.confidence[rows]
        at = rows[take]
        label.service[at] = codes["service"][take]
        label.category[at] = codes["category"][take]
        label.evidence[at] = codes["evidence"][take]
        label.confidence[at] = conf[take]

    def _resolved_codes(self, snap: Snapshot, rt: RangeTable) -> tuple[npt.NDArray[np.int32], ...]:
        """(service, category, evidence) codes per "name|category" value, plus a trailing -1.

        Built once per snapshot (a few thousand values), then indexed by lookup results.
        """
        got = self._resolved.get(snap.id)
        if got is None:
            pairs = [str(v).rpartition("|") for v in rt.values]
            got = self._resolved[snap.id] = (
                self.strings.codes([name for name, _, _ in pairs]),
                self.strings.codes([cat for _, _, cat in pairs]),
                self.strings.codes([f"resolved {name}" for name, _, _ in pairs]),
            )
        return got

    def _offer_match(self, label: _Label, m: ServiceMatch) -> None:
        """Offer a ServiceCatalog result (service index, category/evidence dictionaries)."""
        hit = m.service >= 0
        if not hit.any():
            return
        svc = self._service_codes[m.service]
        cat_idx = m.category.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        cat = self.strings.codes(m.category.dictionary.to_pylist())[cat_idx]
        ev_idx = m.evidence.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        used = np.unique(ev_idx[hit])
        ev_words = m.evidence.dictionary.take(pa.array(used)).to_pylist()
        ev_map = np.full(len(m.evidence.dictionary) + 1, -1, dtype=np.int32)
        ev_map[used] = self.strings.codes(ev_words)[:-1]
        label.offer(hit, svc, cat, m.confidence, ev_map[ev_idx])

    def _entry_codes(
        self,
        entry: npt.NDArray[np.int32],
        hit: npt.NDArray[np.bool_],
        entries: Sequence[object],
        prefix: str,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
        """String codes for the matched entries (as service) and their evidence text."""
        used = np.unique(entry[hit])
        svc_map = np.full(len(entries) + 1, -1, dtype=np.int32)
        ev_map = np.full(len(entries) + 1, -1, dtype=np.int32)
        for e in used.tolist():
            svc_map[e] = self.strings.code(str(entries[e]))
            ev_map[e] = self.strings.code(prefix + str(entries[e]))
        return svc_map[entry], ev_map[entry]


def _app_label(word: str | None) -> tuple[str, str] | None:
    if not word:
        return None
    # the most specific part first: "OpenVPN.NordVPN" -> nordvpn, "TLS.Tor" -> tor
    low = word.lower()
    for part in reversed(low.split(".")):
        if part in APP_LABELS:
            return APP_LABELS[part]
    return APP_LABELS.get(low)


def _range_table(obj: object) -> RangeTable | None:
    if isinstance(obj, RangeTable):
        return obj
    t = getattr(obj, "table", None)
    if isinstance(t, RangeTable):
        return t
    if callable(t):
        got = t()
        return got if isinstance(got, RangeTable) else None
    return None


def _asn_number(value: object) -> int:
    """(asn, org) pairs, bare AS numbers or "AS123" text -> the number, -1 when unknown."""
    v = value[0] if isinstance(value, tuple) else value
    if isinstance(v, int | np.integer):
        return int(v)
    if isinstance(v, str) and v.upper().startswith("AS") and v[2:].isdigit():
        return int(v[2:])
    return -1


def _asn_name(value: object) -> str | None:
    if isinstance(value, tuple):
        return None if len(value) < 2 or value[1] is None else str(value[1])
    return value if isinstance(value, str) and not value.upper().startswith("AS") else None
