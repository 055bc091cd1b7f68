"""DNS tunnelling: a client pushing data through the query names of one domain.

Tunnels (dns2tcp, iodine, dnscat2, DNSExfiltrator …) encode data into the labels
under a domain whose authoritative server they run, so one client sends many
distinct, long, high-entropy, encoded-looking names under one registered domain,
often with TXT/NULL/CNAME questions and at a steady rate. :class:`TunnelDetector`
takes every query (Zeek dns.log rows or a capture's requests, not one per flow),
sums per-name features per (client, registered domain), and scores each pair by
named evidence. CDN names (``a1234.dscb.akamai.net``, ``r3---sn-abc.googlevideo.com``)
are short, low in entropy and not encoded-looking, and do not trip it.

The registered domain comes from :func:`registered_domain`: the last two labels, or
three under a two-letter country code with a generic second level (``co.uk``,
``com.cn``), a deliberate approximation of the Public Suffix List, which the project
does not ship.
"""

from __future__ import annotations

import math
import struct
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr
from rogueflow.ingest import pcapcheck
from rogueflow.ingest.pcapdns import frames, ip_of_frame
from rogueflow.intel.resolve import DNSParseError, read_name

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

CATEGORY = "dns.tunnel"
MAX_CONFIDENCE = 0.9
#: a pair needs this much traffic before it is judged at all
MIN_QUERIES, MIN_DISTINCT = 50, 30
#: distinct names remembered per pair (the count saturates there) and pairs kept
DISTINCT_CAP, MAX_PAIRS = 2_000, 200_000
#: question types that carry data back in tunnels (NULL, TXT, CNAME, MX, KEY, ANY …)
TUNNEL_QTYPES = frozenset({10, 16, 5, 15, 25, 255, 99})
QTYPE_NAMES = {
    1: "A",
    28: "AAAA",
    5: "CNAME",
    10: "NULL",
    15: "MX",
    16: "TXT",
    25: "KEY",
    99: "SPF",
    255: "ANY",
    12: "PTR",
    33: "SRV",
    65: "HTTPS",
    2: "NS",
    6: "SOA",
}
WEIGHTS = {
    "long_names": 0.3,  # mean subdomain length >= 20
    "very_long_names": 0.15,  # ... >= 40
    "long_label": 0.15,  # a label of >= 40 characters
    "entropy": 0.25,  # mean Shannon entropy of the subdomain >= 3.5 bits/char
    "high_entropy": 0.1,  # ... >= 4.0
    "encoded": 0.3,  # >= half the names carry a hex/base32/base64-looking label
    "unique": 0.15,  # >= 70% of queries are distinct names
    "qtypes": 0.15,  # >= half the queries ask TXT/NULL/CNAME/MX/KEY/ANY
    "rate": 0.1,  # >= 30 queries per minute
}
THRESHOLD = 0.9

_GENERIC_SLD = "com|net|org|gov|edu|ac|co|or|ne|go|mil|gob|nic|ltd|plc|sch|info|biz|nom"
_SPLIT = r"^(?:(?P<sub>.*?)\.)?(?P<reg>[^.]+\.(?:(?:" + _GENERIC_SLD + r")\.[a-z]{2}|[^.]+))$"
#: an encoded-looking label: long, from a hex/base32/base64 alphabet (no "--" as in
#: punycode or googlevideo's "r3---sn-…"), mixing letters and digits
_ENCODED = r"^[a-z0-9+/=_-]{16,}$"


def registered_domain(names: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, pa.Array]:
    """(registered domain, subdomain part) of normalised names; null where none."""
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks()
    parts = pc.extract_regex(names, _SPLIT)
    # struct_field keeps the nulls of names that do not match (StructArray.field would not)
    reg = pc.struct_field(parts, "reg")
    sub = pc.struct_field(parts, "sub")
    return reg, pc.if_else(pc.equal(sub, ""), pa.scalar(None, pa.string()), sub)


def normalise_names(names: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(names, pa.ChunkedArray):
        names = names.combine_chunks()
    if not pa.types.is_string(names.type):
        names = names.cast(pa.string())
    return pc.utf8_rtrim(pc.utf8_lower(names), characters=".")


def _string_parts(arr: pa.Array) -> tuple[I64, npt.NDArray[np.uint8]]:
    arr = arr.fill_null("") if arr.null_count else arr
    if not isinstance(arr, pa.StringArray):
        arr = arr.cast(pa.string())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int32, count=len(arr) + 1, offset=arr.offset * 4)
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offsets.astype(np.int64), data


def entropy(strings: pa.Array) -> F64:
    """Shannon entropy (bits per character) of each string, dots left out; 0 for ''."""
    offsets, data = _string_parts(strings)
    n = len(strings)
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
    chars = data[offsets[0] : offsets[-1]].astype(np.int64)
    keep = chars != ord(".")
    owner, chars = owner[keep], chars[keep]
    size = np.bincount(owner, minlength=n).astype(np.float64)
    pairs, counts = np.unique(owner * 256 + chars, return_counts=True)
    who = pairs // 256
    p = counts / size[who]
    return np.asarray(np.bincount(who, weights=-p * np.log2(p), minlength=n), dtype=np.float64)


@dataclass
class TunnelVerdict:
    """One (client, registered domain) pair with the numbers behind its score."""

    client: bytes
    domain: str
    tunnel: bool
    score: float
    confidence: float
    queries: int
    distinct: int
    mean_length: float
    max_label: int
    entropy: float
    encoded_share: float
    per_minute: float
    qtypes: dict[str, int] = field(default_factory=dict)

    def evidence(self) -> str:
        distinct = f"{self.distinct}+" if self.distinct >= DISTINCT_CAP else str(self.distinct)
        types = ", ".join(f"{k} {v}" for k, v in sorted(self.qtypes.items(), key=lambda kv: -kv[1]))
        return (
            f"dns tunnel {self.domain} from {addr.format_one(self.client)}: "
            f"{self.queries} queries, {distinct} distinct names, subdomain mean "
            f"{self.mean_length:.0f} chars, longest label {self.max_label}, entropy "
            f"{self.entropy:.2f} bits/char, {self.encoded_share:.0%} encoded-looking, "
            f"{self.per_minute:.0f}/min"
            + (f", types {types}" if types else "")
            + f"; score {self.score:.2f}"
        )


class QueryBatch(NamedTuple):
    """DNS questions: client address (16 bytes), name, time (µs), question type."""

    clients: pa.Array
    names: pa.Array
    ts_us: I64
    qtypes: pa.Array | None = None


class TunnelDetector:
    """Accumulates DNS queries per (client, registered domain); flags tunnels."""

    def __init__(self, *, min_queries: int = MIN_QUERIES, min_distinct: int = MIN_DISTINCT) -> None:
        self.min_queries = min_queries
        self.min_distinct = min_distinct
        self._ids: dict[tuple[bytes, str], int] = {}
        self._keys: list[tuple[bytes, str]] = []
        self._sums = np.zeros((0, 6), dtype=np.float64)  # queries, len, entropy, enc, qt, max
        self._span = np.zeros((0, 2), dtype=np.int64)  # first, last µs
        self._qtypes: list[Counter[int]] = []
        self._seen: list[set[str]] = []
        self._flagged: list[TunnelVerdict] | None = None  # cached until the next add

    def flagged(self) -> list[TunnelVerdict]:
        """The pairs judged to be tunnels (computed once per set of queries)."""
        if self._flagged is None:
            self._flagged = [v for v in self.verdicts() if v.tunnel]
        return self._flagged

    def add(
        self,
        clients: pa.Array | pa.ChunkedArray,
        names: pa.Array | pa.ChunkedArray,
        ts_us: npt.ArrayLike,
        qtypes: pa.Array | pa.ChunkedArray | None = None,
    ) -> None:
        """One batch of queries (every query, not one per flow)."""
        self._flagged = None
        if isinstance(clients, pa.ChunkedArray):
            clients = clients.combine_chunks()
        norm = normalise_names(names)
        reg, sub = registered_domain(norm)
        ok = pc.and_(pc.is_valid(reg), pc.is_valid(clients))
        if not pc.any(ok).as_py():
            return
        t = pa.table(
            {
                "client": clients,
                "reg": reg,
                "name": norm,
                "sub": pc.fill_null(sub, ""),
                "ts": pa.array(np.asarray(ts_us, dtype=np.int64)),
                "qtype": pa.nulls(len(norm), pa.int64())
                if qtypes is None
                else pc.cast(qtypes, pa.int64()),
            }
        ).filter(ok)
        sub_arr = t.column("sub").combine_chunks()
        labels = pc.split_pattern(sub_arr, ".")
        flat = pc.list_flatten(labels)
        parent = pc.list_parent_indices(labels).to_numpy()
        lab_len = pc.utf8_length(flat).to_numpy(zero_copy_only=False).astype(np.int64)
        encoded = np.asarray(
            pc.and_(
                pc.and_(
                    pc.match_substring_regex(flat, _ENCODED),
                    pc.invert(pc.match_substring(flat, "--")),
                ),
                pc.and_(
                    pc.greater_equal(pc.count_substring_regex(flat, "[0-9]"), 2),
                    pc.greater_equal(pc.count_substring_regex(flat, "[a-z]"), 2),
                ),
            ).to_numpy(zero_copy_only=False),
            dtype=bool,
        )
        n = t.num_rows
        max_label = np.zeros(n, dtype=np.int64)
        np.maximum.at(max_label, parent, lab_len)
        enc_name = np.zeros(n, dtype=np.int64)
        np.maximum.at(enc_name, parent, encoded.astype(np.int64))
        qt = t.column("qtype").to_numpy(zero_copy_only=False)
        qt = np.nan_to_num(np.asarray(qt, dtype=np.float64), nan=-1).astype(np.int64)
        unusual = np.isin(qt, list(TUNNEL_QTYPES)).astype(np.int64)
        t = t.append_column("len", pa.array(pc.utf8_length(sub_arr).cast(pa.int64())))
        t = t.append_column("ent", pa.array(entropy(sub_arr)))
        t = t.append_column("enc", pa.array(enc_name))
        t = t.append_column("unusual", pa.array(unusual))
        t = t.append_column("maxlab", pa.array(max_label))
        g = t.group_by(["client", "reg"], use_threads=False).aggregate(
            [
                ("ts", "count"),
                ("len", "sum"),
                ("ent", "sum"),
                ("enc", "sum"),
                ("unusual", "sum"),
                ("maxlab", "max"),
                ("ts", "min"),
                ("ts", "max"),
            ]
        )
        ids = np.array(
            [
                self._id(c, r)
                for c, r in zip(
                    g.column("client").to_pylist(), g.column("reg").to_pylist(), strict=True
                )
            ],
            dtype=np.int64,
        )
        cols = ("ts_count", "len_sum", "ent_sum", "enc_sum", "unusual_sum")
        for j, c in enumerate(cols):
            np.add.at(self._sums[:, j], ids, g.column(c).to_numpy().astype(np.float64))
        np.maximum.at(self._sums[:, 5], ids, g.column("maxlab_max").to_numpy().astype(np.float64))
        first, last = g.column("ts_min").to_numpy(), g.column("ts_max").to_numpy()
        np.minimum.at(self._span[:, 0], ids, first)
        np.maximum.at(self._span[:, 1], ids, last)
        # distinct names and question types: per distinct (pair, value) only
        d = t.group_by(["client", "reg", "name", "qtype"], use_threads=False).aggregate(
            [("ts", "count")]
        )
        for c, r, name, q, k in zip(
            *(d.column(x).to_pylist() for x in ("client", "reg", "name", "qtype", "ts_count")),
            strict=True,
        ):
            i = self._ids[(c, r)]
            seen = self._seen[i]
            if len(seen) < DISTINCT_CAP:
                seen.add(name)
            if q is not None:
                self._qtypes[i][q] += k
        if len(self._keys) > MAX_PAIRS:
            self._forget()

    def add_dns_log(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Queries from Zeek dns.log columns ``ts``, ``id.orig_h``, ``query`` [, ``qtype``]."""
        t = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
        if not {"ts", "id.orig_h", "query"} <= set(t.column_names):
            return
        keep = pc.and_(pc.is_valid(t.column("id.orig_h")), pc.is_valid(t.column("ts")))
        t = t.filter(pc.and_(keep, pc.is_valid(t.column("query"))))
        if t.num_rows == 0:
            return
        texts = pc.cast(t.column("id.orig_h"), pa.string()).combine_chunks()
        parsed = addr.parse_or_first_bad(texts)
        if isinstance(parsed, int):  # the conn reader reports bad addresses; skip them here
            good = [_parses(x) for x in texts.to_pylist()]
            t, texts = t.filter(pa.array(good)), texts.filter(pa.array(good))
            parsed = addr.parse_or_first_bad(texts) if len(texts) else pa.array([], addr.ADDR_TYPE)
            assert not isinstance(parsed, int)
        ts = pc.cast(t.column("ts"), pa.float64()).to_numpy()
        qtypes = t.column("qtype") if "qtype" in t.column_names else None
        self.add(parsed, t.column("query"), np.round(ts * 1e6).astype(np.int64), qtypes)

    def _id(self, client: bytes, reg: str) -> int:
        key = (client, reg)
        got = self._ids.get(key)
        if got is None:
            got = self._ids[key] = len(self._keys)
            self._keys.append(key)
            self._qtypes.append(Counter())
            self._seen.append(set())
            if got >= len(self._sums):
                grow = max(1024, len(self._sums))
                self._sums = np.vstack([self._sums, np.zeros((grow, 6))])
                span = np.empty((grow, 2), dtype=np.int64)
                span[:, 0], span[:, 1] = np.iinfo(np.int64).max, np.iinfo(np.int64).min
                self._span = np.vstack([self._span, span])
        return got

    def _forget(self) -> None:
        """Keep the busiest half of the pairs: a tunnel is never among the quietest."""
        n = len(self._keys)
        keep = np.sort(np.argsort(-self._sums[:n, 0], kind="stable")[: MAX_PAIRS // 2])
        self._keys = [self._keys[i] for i in keep.tolist()]
        self._qtypes = [self._qtypes[i] for i in keep.tolist()]
        self._seen = [self._seen[i] for i in keep.tolist()]
        self._sums, self._span = self._sums[keep], self._span[keep]
        self._ids = {k: i for i, k in enumerate(self._keys)}

    def verdicts(self) -> list[TunnelVerdict]:
        """Every pair with enough traffic to judge, tunnel or not, best score first."""
        n = len(self._keys)
        s = self._sums[:n]
        q = np.maximum(s[:, 0], 1)
        distinct = np.array([len(x) for x in self._seen], dtype=np.float64)
        mean_len, mean_ent, enc = s[:, 1] / q, s[:, 2] / q, s[:, 3] / q
        minutes = np.maximum((self._span[:n, 1] - self._span[:n, 0]) / 60e6, 1.0)
        per_min = s[:, 0] / minutes
        feats = {
            "long_names": mean_len >= 20,
            "very_long_names": mean_len >= 40,
            "long_label": s[:, 5] >= 40,
            "entropy": mean_ent >= 3.5,
            "high_entropy": mean_ent >= 4.0,
            "encoded": enc >= 0.5,
            "unique": distinct / q >= 0.7,
            "qtypes": s[:, 4] / q >= 0.5,
            "rate": per_min >= 30,
        }
        score = np.zeros(n)
        for name, hit in feats.items():
            score += np.where(hit, WEIGHTS[name], 0.0)
        judged = (s[:, 0] >= self.min_queries) & (distinct >= self.min_distinct)
        tunnel = judged & (score >= THRESHOLD)
        conf = np.clip(0.55 + 0.35 * (score - THRESHOLD), 0.55, MAX_CONFIDENCE)
        out = [
            TunnelVerdict(
                client=self._keys[i][0],
                domain=self._keys[i][1],
                tunnel=bool(tunnel[i]),
                score=round(float(score[i]), 3),
                confidence=float(conf[i]) if tunnel[i] else 0.0,
                queries=int(s[i, 0]),
                distinct=int(distinct[i]),
                mean_length=float(mean_len[i]),
                max_label=int(s[i, 5]),
                entropy=float(mean_ent[i]),
                encoded_share=float(enc[i]),
                per_minute=float(per_min[i]),
                qtypes={QTYPE_NAMES.get(k, str(k)): v for k, v in self._qtypes[i].items()},
            )
            for i in np.flatnonzero(judged).tolist()
        ]
        return sorted(out, key=lambda v: -v.score)

    def label_columns(self, table: pa.Table) -> pa.Table:
        """Flows whose ``dns_query`` is under a domain flagged for their ``src_addr``
        become ``dns.tunnel`` (service = the domain); stronger labels are kept."""
        flagged = self.flagged()
        if not flagged or table.num_rows == 0:
            return table
        reg, _ = registered_domain(normalise_names(table.column("dns_query")))
        left = pa.table(
            {
                "client": table.column("src_addr").combine_chunks(),
                "reg": reg,
                "_row": pa.array(np.arange(table.num_rows, dtype=np.int64)),
            }
        )
        right = pa.table(
            {
                "client": pa.array([v.client for v in flagged], addr.ADDR_TYPE),
                "reg": pa.array([v.domain for v in flagged], pa.string()),
                "_v": pa.array(np.arange(len(flagged), dtype=np.int64)),
            }
        )
        joined = left.join(right, ["client", "reg"], join_type="inner", use_threads=False)
        if joined.num_rows == 0:
            return table
        n = table.num_rows
        rows, vs = joined.column("_row").to_numpy(), joined.column("_v").to_numpy()
        conf = np.zeros(n, dtype=np.float32)
        conf[rows] = np.array([v.confidence for v in flagged], dtype=np.float32)[vs]
        old = np.nan_to_num(
            np.asarray(table.column("confidence").to_numpy(zero_copy_only=False), np.float64)
        )
        take = conf > old
        if not take.any():
            return table
        pick = np.zeros(n, dtype=np.int64)
        pick[rows] = vs
        idx, mask = pa.array(pick), pa.array(take)
        new = {
            "category": pa.array([CATEGORY] * len(flagged), pa.string()).take(idx),
            "service": pa.array([v.domain for v in flagged], pa.string()).take(idx),
            "confidence": pa.array(conf, pa.float32()),
            "evidence": pa.array([v.evidence() for v in flagged], pa.string()).take(idx),
        }
        for name, values in new.items():
            i = table.schema.get_field_index(name)
            old_col = table.column(i)
            table = table.set_column(i, table.field(i), pc.if_else(mask, values, old_col))
        return table


def _parses(text: str | None) -> bool:
    try:
        addr.parse_one(text or "")
    except ValueError:
        return False
    return True


# --- DNS requests from a capture ------------------------------------------------------

_BATCH = 65_536


def _request(ip: bytes) -> tuple[bytes, bytes] | None:
    """(client address, DNS payload) of a UDP datagram to port 53, else None."""
    version = ip[0] >> 4 if ip else 0
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if ihl < 20 or len(ip) < ihl + 8 or ip[9] != 17 or int.from_bytes(ip[6:8], "big") & 0x1FFF:
            return None
        client, off = b"\x00" * 10 + b"\xff\xff" + ip[12:16], ihl
    elif version == 6 and len(ip) >= 48 and ip[6] == 17:
        client, off = ip[8:24], 40
    else:
        return None
    if int.from_bytes(ip[off + 2 : off + 4], "big") != 53:
        return None
    return client, ip[off + 8 :]


def _question(payload: bytes) -> tuple[str, int] | None:
    """(name, qtype) of a DNS query (QR=0, at least one question), else None."""
    if len(payload) < 12:
        return None
    _, flags, qd = struct.unpack_from("!HHH", payload, 0)
    if flags & 0x8000 or qd == 0:
        return None
    try:
        name, off = read_name(payload, 12)
    except DNSParseError:
        return None
    if off + 2 > len(payload) or not name:
        return None
    return name, int.from_bytes(payload[off : off + 2], "big")


def queries_from_pcap(path: Path, *, checked: bool = False) -> Iterator[QueryBatch]:
    """The DNS requests (UDP to port 53, QR=0) of a pcap/pcapng file, in batches.

    The file is validated first unless ``checked`` (:func:`rogueflow.ingest.pcapcheck.check`
    raises InputError naming the packet); a garbled request is ordinary traffic and skipped.
    """
    if not checked:
        pcapcheck.check(path)
    clients: list[bytes] = []
    names: list[str] = []
    ts: list[int] = []
    qtypes: list[int] = []

    def batch() -> QueryBatch:
        out = QueryBatch(
            pa.array(clients, addr.ADDR_TYPE),
            pa.array(names, pa.string()),
            np.array(ts, dtype=np.int64),
            pa.array(qtypes, pa.int64()),
        )
        for x in (clients, names, ts, qtypes):
            x.clear()
        return out

    for _, us, linktype, frame in frames(path):
        ip = ip_of_frame(linktype, bytes(frame))
        req = _request(ip) if ip else None
        q = _question(req[1]) if req else None
        if req is None or q is None:
            continue
        clients.append(req[0])
        names.append(q[0])
        ts.append(us)
        qtypes.append(q[1])
        if len(names) >= _BATCH:
            yield batch()
    if names:
        yield batch()


def shannon(text: str) -> float:
    """Shannon entropy of one string in bits per character (for docs and tests)."""
    if not text:
        return 0.0
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def label_table(det: TunnelDetector, table: pa.Table) -> pa.Table:
    """:meth:`TunnelDetector.label_columns` on a reader's table (no label columns yet)."""
    for name, typ in (
        ("service", pa.string()),
        ("category", pa.string()),
        ("confidence", pa.float32()),
        ("evidence", pa.string()),
    ):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, typ))
    return det.label_columns(table)
