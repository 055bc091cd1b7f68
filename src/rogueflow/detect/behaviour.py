"""Mining and blockchain P2P from flow shape: payload-less records judged as sessions.

A NetFlow/nfcapd exporter cuts one TCP session into many one-way records (active
timeout, file rotation), so one record (1 packet, 40 bytes, port 3333) proves
nothing. :class:`Behaviour` keeps the *candidate* records of a run back, sums them
per session (the canonical bidirectional 5-tuple, client and server told apart by
the service port) across records and files, and at each file end labels them:

* ``crypto.mining`` when a session on a pool port (or already marked by a pool
  indicator) scores enough named evidence: long-lived, small packets, a low steady
  packet rate, still open, the server pushing while the client only ACKs;
* ``crypto.p2p`` when one host talks to at least :data:`MIN_PEERS` distinct peers on
  the same blockchain port with data both ways (fan-out; fan-in for ports that are
  no pool convention).

Both confidences stay at or below :data:`MAX_CONFIDENCE`, so names, nDPI labels,
indicator lists and payload detectors keep precedence; a row whose existing
confidence is higher is never relabelled. Shape alone never makes mining: a row
must be on a pool port or carry a mining indicator to be scored at all.

Memory is bounded: held rows by ``max_held_rows`` (when reached, what is held is
decided and released early) and sessions by ``max_sessions`` (the least recently
seen are forgotten). ``hold`` returns the rows it does not keep first, so rows
leave in a different order than they came.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr
from rogueflow.intel.indicators import ServiceCatalog
from rogueflow.store.rows import Rows, Selection, materialise

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]
BOOL = npt.NDArray[np.bool_]

MAX_CONFIDENCE = 0.75
MIN_PEERS = 3
TCP, UDP = 6, 17

#: Server ports that mining pools conventionally use for Stratum, -> (weight, note).
#: Dedicated conventions weigh more than ports shared with common services.
#: Sources: pools' own connection pages and miner configs of 2017-2020 —
#: 3333 is the Stratum default (slush/Braiins, flypool, supportxmr, f2pool, AntPool);
#: 3334-3336 and 3357 are NiceHash per-algorithm ports (3333 + n) and difficulty tiers
#: of several pools; 14444/14433 nanopool Monero (plain/TLS); 9999 nanopool Ethereum
#: (also Dash P2P: resolved by fan-out); 4444/14444 ethermine; 5555/6666/7777
#: minexmr/supportxmr/hashvault difficulty tiers (6666 also nanopool Zcash); 8008
#: f2pool Ethereum; 8888 and 9000 supportxmr/various TLS and high-difficulty ports;
#: 9050 dwarfpool Monero (also Tor's local SOCKS port, never remote);
#: 17777 minexmr/xmrpool high difficulty; 45560 and 45700 MinerGate.
DEDICATED, SHARED = 0.5, 0.3
MINING_PORTS: dict[int, tuple[float, str]] = {
    3333: (DEDICATED, "Stratum default"),
    3334: (DEDICATED, "NiceHash/tiered Stratum"),
    3335: (DEDICATED, "NiceHash/tiered Stratum"),
    3336: (DEDICATED, "NiceHash/tiered Stratum"),
    3357: (DEDICATED, "NiceHash Stratum"),
    14433: (DEDICATED, "nanopool XMR TLS"),
    14444: (DEDICATED, "nanopool/ethermine Stratum"),
    17777: (DEDICATED, "XMR pool high difficulty"),
    45560: (DEDICATED, "MinerGate"),
    45700: (DEDICATED, "MinerGate"),
    4444: (SHARED, "pool convention"),
    5555: (SHARED, "pool convention"),
    6666: (SHARED, "pool convention"),
    7777: (SHARED, "pool convention"),
    8008: (SHARED, "pool convention"),
    8888: (SHARED, "pool convention"),
    9000: (SHARED, "pool convention"),
    9050: (SHARED, "pool convention"),
    9999: (SHARED, "pool convention"),
}

#: Blockchain P2P ports the built-in taxonomy has no rule for: port -> (service, coin).
EXTRA_P2P: dict[int, tuple[str, str]] = {
    9999: ("dash-p2p", "DASH"),
    7075: ("nano-p2p", "NANO"),
    22556: ("dogecoin-p2p", "DOGE"),
    8767: ("ravencoin-p2p", "RVN"),
}

#: Evidence weights of the mining score, and the score a session needs.
WEIGHTS = {
    "indicator": 0.5,  # a pool list already marks the row
    "long": 0.2,  # session spans >= LONG_S
    "very_long": 0.1,  # ... and >= VERY_LONG_S
    "small": 0.2,  # one direction's mean packet <= SMALL_B
    "steady": 0.2,  # <= STEADY_PPS packets/s over >= 60 s
    "open": 0.15,  # no FIN/RST seen
    "acks": 0.1,  # client records that are ACKs only
    "bulk": -0.6,  # large packets both ways, or a high byte rate: a transfer
    "brief": -0.5,  # closed within BRIEF_S: a request, not a miner's session
}
THRESHOLD = 0.8
LONG_S, VERY_LONG_S, BRIEF_S = 120.0, 600.0, 30.0
SMALL_B, BULK_B, STEADY_PPS, BULK_BPS = 300.0, 1000.0, 2.0, 50_000.0
#: payload estimate = bytes - HEADER_B * packets; a session must carry MIN_PAYLOAD
HEADER_B, MIN_PAYLOAD = 40, 100

_KEYS = ("c_hi", "c_lo", "s_hi", "s_lo", "ports")
_SUMS = ("c_pkts", "c_bytes", "s_pkts", "s_bytes", "records", "acks")
_MAXES = ("syn", "closed", "flagged", "indicator", "mining", "p2p", "touched", "last")
_SYN, _FIN_RST, _ACK = 0x02, 0x05, 0x10


@dataclass
class _P2PPort:
    service: str
    coin: str | None


def _p2p_ports(catalog: ServiceCatalog) -> dict[tuple[int, int], _P2PPort]:
    out: dict[tuple[int, int], _P2PPort] = {}
    for s in catalog.services:
        if s.category != "crypto.p2p":
            continue
        for proto, lo, hi in s.ports:
            for port in range(lo, hi + 1):
                out[(proto, port)] = _P2PPort(s.name, s.coins[0] if s.coins else None)
    for port, (name, coin) in EXTRA_P2P.items():
        out.setdefault((TCP, port), _P2PPort(name, coin))
    return out


def _np(col: pa.ChunkedArray | pa.Array, dtype: type = np.int64) -> npt.NDArray[np.int64]:
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    fill = False if pa.types.is_boolean(col.type) else 0
    return np.asarray(col.fill_null(fill).to_numpy(zero_copy_only=False)).astype(dtype)


class Behaviour:
    """Holds candidate rows of a run, labels them per session at each file end."""

    def __init__(
        self,
        catalog: ServiceCatalog | None = None,
        *,
        max_held_rows: int = 2_000_000,
        max_sessions: int = 1_000_000,
    ) -> None:
        self.max_held_rows = max_held_rows
        self.max_sessions = max_sessions
        p2p = _p2p_ports(catalog or ServiceCatalog.builtin())
        self._p2p = list(p2p.values())
        # lookup tables over the 65536 ports: vectorised candidate selection
        self._mining_w = np.zeros(65536, dtype=np.float32)
        for port, (w, _) in MINING_PORTS.items():
            self._mining_w[port] = w
        self._p2p_idx = {p: np.full(65536, -1, dtype=np.int32) for p in (TCP, UDP)}
        for i, ((proto, port), _) in enumerate(p2p.items()):
            self._p2p_idx[proto][port] = i
        self._known = {
            p: (self._p2p_idx[p] >= 0) | ((self._mining_w > 0) if p == TCP else False)
            for p in (TCP, UDP)
        }
        self._held: list[tuple[pa.Table, pa.Table]] = []  # (rows, their session keys)
        self._held_rows = 0
        self._parts: list[pa.Table] = []
        self._state: pa.Table | None = None

    @property
    def sessions(self) -> int:
        """Sessions remembered from the run so far (bounded by ``max_sessions``)."""
        return 0 if self._state is None else self._state.num_rows

    # --- streaming interface ---------------------------------------------------------

    def begin_file(self) -> None:
        """Start a file of the run; session aggregates carry over from earlier files.

        Rows still held here belong to a file whose ingest failed before :meth:`release`
        (the store wrote nothing of it): they and their unmerged aggregates are dropped.
        """
        self._held, self._held_rows, self._parts = [], 0, []

    def hold(self, table: pa.Table) -> pa.Table:
        """Rows to write now; candidate rows are kept back (see :meth:`release`)."""
        return pa.concat_tables([materialise(part) for part in self.split(table)])

    def split(self, table: pa.Table) -> list[Rows]:
        """:meth:`hold` without copying: the rows to write now as a :class:`Selection`.

        Candidates are a few percent of a batch; filtering the other rows out would copy
        the whole batch once more, which the store's day writer does anyway.
        """
        table = _with_detection_columns(table)
        cand = self.candidates(table)
        if not cand.any():
            return [table]
        rows = table.filter(pa.array(cand))
        keys, values = self._session_rows(rows)
        self._parts.append(pa.Table.from_pydict({**keys, **values}))
        self._held.append((rows, pa.Table.from_pydict(keys)))
        self._held_rows += rows.num_rows
        rest: list[Rows] = [Selection(table, np.flatnonzero(~cand))]
        if self._held_rows < self.max_held_rows:
            return rest
        return [*rest, *self.release()]

    def release(self) -> Iterator[pa.Table]:
        """The held rows, relabelled where behaviour decides; call at each file end."""
        if not self._held:
            return iter(())
        # decided now, labelled as the caller iterates
        verdict = self._decide()
        held, self._held, self._held_rows = self._held, [], 0
        return (self._label(rows, keys, verdict) for rows, keys in held)

    # --- candidates and session keys -------------------------------------------------

    def candidates(self, table: pa.Table) -> BOOL:
        """Rows worth judging: pool or blockchain ports, or a weaker crypto label."""
        n = table.num_rows
        if n == 0:
            return np.zeros(0, dtype=bool)
        proto = _np(table.column("proto"), np.uint8)
        sp = _np(table.column("src_port"), np.int32) & 0xFFFF
        dp = _np(table.column("dst_port"), np.int32) & 0xFFFF
        tcp, udp = proto == TCP, proto == UDP
        out = tcp & (self._known[TCP][sp] | self._known[TCP][dp])
        out |= udp & (self._known[UDP][sp] | self._known[UDP][dp])
        if "category" in table.column_names:
            cat = table.column("category")
            labelled = pc.is_in(cat, pa.array(["crypto.mining", "crypto.p2p"]))
            out |= _np(labelled, np.bool_) & (tcp | udp)
        return np.asarray(out, dtype=bool)

    def _session_rows(
        self, rows: pa.Table
    ) -> tuple[dict[str, U64], dict[str, npt.NDArray[np.int64]]]:
        """Per row: the session key (client, server, ports) and its per-direction values."""
        proto = _np(rows.column("proto"))
        sp = _np(rows.column("src_port")) & 0xFFFF
        dp = _np(rows.column("dst_port")) & 0xFFFF
        src_hi, src_lo = addr.to_u64_pair(rows.column("src_addr"))
        dst_hi, dst_lo = addr.to_u64_pair(rows.column("dst_addr"))
        known = np.zeros(len(sp), dtype=bool)
        ks, kd = known.copy(), known.copy()
        for p in (TCP, UDP):
            sel = proto == p
            ks[sel], kd[sel] = self._known[p][sp[sel]], self._known[p][dp[sel]]
        src_lower = (src_hi < dst_hi) | ((src_hi == dst_hi) & (src_lo <= dst_lo))
        # the server is the side on a known port; between two (or none), the lower port;
        # equal ports: the lower address. Both directions of a session agree.
        by_port = np.where(dp == sp, ~src_lower, dp < sp)
        server_dst = np.where(kd & ks, by_port, np.where(kd | ks, kd, by_port))
        c_port, s_port = np.where(server_dst, sp, dp), np.where(server_dst, dp, sp)
        keys = {
            "c_hi": np.where(server_dst, src_hi, dst_hi),
            "c_lo": np.where(server_dst, src_lo, dst_lo),
            "s_hi": np.where(server_dst, dst_hi, src_hi),
            "s_lo": np.where(server_dst, dst_lo, src_lo),
            "ports": ((proto << 32) | (c_port << 16) | s_port).astype(np.uint64),
        }
        pk, by = _np(rows.column("packets")), _np(rows.column("bytes"))
        rpk, rby = _np(rows.column("rev_packets")), _np(rows.column("rev_bytes"))
        flags = _np(rows.column("tcp_flags"))
        tcp = proto == TCP
        one_way = rpk == 0
        cat = (
            _np(pc.equal(rows.column("category"), "crypto.mining"), np.bool_)
            if ("category" in rows.column_names)
            else np.zeros(len(pk), dtype=bool)
        )
        values = {
            "c_pkts": np.where(server_dst, pk, rpk),
            "c_bytes": np.where(server_dst, by, rby),
            "s_pkts": np.where(server_dst, rpk, pk),
            "s_bytes": np.where(server_dst, rby, by),
            "records": np.ones(len(pk), dtype=np.int64),
            # a client record of bare ACKs: the server pushes, the client acknowledges
            "acks": (tcp & server_dst & one_way & (flags == _ACK)).astype(np.int64),
            "first": _np(pc.cast(rows.column("ts_start"), pa.int64())),
            "last": _np(pc.cast(rows.column("ts_end"), pa.int64())),
            "syn": (tcp & (flags & _SYN > 0)).astype(np.int64),
            "closed": (tcp & (flags & _FIN_RST > 0)).astype(np.int64),
            # exporters without TCP flags write 0: "no FIN seen" then means nothing
            "flagged": (tcp & (flags > 0)).astype(np.int64),
            "indicator": cat.astype(np.int64),
            "mining": np.zeros(len(pk), dtype=np.int64),
            "p2p": np.zeros(len(pk), dtype=np.int64),
            "touched": np.ones(len(pk), dtype=np.int64),  # has rows held now
        }
        return keys, values

    # --- deciding ----------------------------------------------------------------------

    def _merge(self) -> pa.Table:
        order = [*_KEYS, *_SUMS, *_MAXES, "first"]
        parts = [p.select(order) for p in (self._state, *self._parts) if p is not None]
        self._parts = []
        table = pa.concat_tables(parts) if len(parts) > 1 else parts[0]
        aggs = [(c, "sum") for c in _SUMS] + [(c, "max") for c in _MAXES] + [("first", "min")]
        merged = table.group_by(list(_KEYS), use_threads=False).aggregate(aggs)
        names = {f"{c}_{fn}": c for c, fn in aggs}
        merged = merged.rename_columns([names.get(c, c) for c in merged.column_names])
        if merged.num_rows > self.max_sessions:
            # forget the sessions seen least recently
            last = merged.column("last").to_numpy()
            keep = np.argsort(last, kind="stable")[-self.max_sessions :]
            merged = merged.take(pa.array(np.sort(keep)))
        return merged

    def _decide(self) -> _Verdict:
        s = self._merge()
        col = {c: s.column(c).to_numpy() for c in s.column_names}
        ports = col["ports"]
        proto = (ports >> np.uint64(32)).astype(np.int64)
        s_port = (ports & np.uint64(0xFFFF)).astype(np.int64)
        c_pkts, s_pkts = col["c_pkts"].astype(np.float64), col["s_pkts"].astype(np.float64)
        c_bytes, s_bytes = col["c_bytes"].astype(np.float64), col["s_bytes"].astype(np.float64)
        pay_c = c_bytes - HEADER_B * c_pkts
        pay_s = s_bytes - HEADER_B * s_pkts
        both_ways = (pay_c >= MIN_PAYLOAD) & (pay_s >= MIN_PAYLOAD)

        # P2P: a host with >= MIN_PEERS distinct peers on one blockchain port
        p2p_idx = np.full(len(s_port), -1, dtype=np.int32)
        for p in (TCP, UDP):
            sel = proto == p
            p2p_idx[sel] = self._p2p_idx[p][s_port[sel]]
        on_p2p = p2p_idx >= 0
        fan_out = _distinct(
            col["c_hi"],
            col["c_lo"],
            ports & np.uint64(0xFFFF_0000_FFFF),
            col["s_hi"],
            col["s_lo"],
            on_p2p & both_ways,
        )
        fan_in = _distinct(
            col["s_hi"],
            col["s_lo"],
            ports & np.uint64(0xFFFF_0000_FFFF),
            col["c_hi"],
            col["c_lo"],
            on_p2p & both_ways,
        )
        mining_w = np.where(proto == TCP, self._mining_w[s_port], 0.0)
        fan_in_ok = mining_w == 0  # many miners at one pool must not look like P2P
        peers = np.maximum(fan_out, np.where(fan_in_ok, fan_in, 0))
        p2p = on_p2p & ((peers >= MIN_PEERS) | (col["p2p"] > 0))

        # mining: named evidence on pool-port (or indicator) sessions
        span = np.maximum(col["last"] - col["first"], 0) / 1e6
        pkts = c_pkts + s_pkts
        mean_c = np.divide(c_bytes, c_pkts, out=np.full_like(c_bytes, np.nan), where=c_pkts > 0)
        mean_s = np.divide(s_bytes, s_pkts, out=np.full_like(s_bytes, np.nan), where=s_pkts > 0)
        smallest = np.fmin(mean_c, mean_s)
        rate = np.divide(pkts, span, out=np.full_like(span, np.inf), where=span > 0)
        byte_rate = np.divide(c_bytes + s_bytes, span, out=np.zeros_like(span), where=span > 0)
        open_ = (col["closed"] == 0) & (col["flagged"] > 0)
        feats = {
            "indicator": col["indicator"] > 0,
            "long": span >= LONG_S,
            "very_long": span >= VERY_LONG_S,
            "small": smallest <= SMALL_B,
            "steady": (span >= 60) & (rate <= STEADY_PPS),
            "open": open_,
            "acks": (col["acks"] > 0) & (s_pkts > 0),
            "bulk": (smallest > BULK_B) | ((span >= 10) & (byte_rate > BULK_BPS)),
            "brief": ~open_ & (span < BRIEF_S),
        }
        score = mining_w.astype(np.float64)
        for name, hit in feats.items():
            score += np.where(hit, WEIGHTS[name], 0.0)
        carries = (pkts >= 3) & ((pay_c >= MIN_PAYLOAD) | (pay_s >= MIN_PAYLOAD))
        gated = (mining_w > 0) | feats["indicator"]
        mining = ~p2p & ((gated & carries & (score >= THRESHOLD)) | (col["mining"] > 0))
        conf = np.clip(0.5 + (score - THRESHOLD) * 0.4, 0.5, MAX_CONFIDENCE)

        # remember decisions: a session once judged keeps its label in later files
        s = s.set_column(
            s.schema.get_field_index("mining"), "mining", pa.array(mining.astype(np.int64))
        )
        s = s.set_column(s.schema.get_field_index("p2p"), "p2p", pa.array(p2p.astype(np.int64)))
        i = s.schema.get_field_index("touched")
        self._state = s.set_column(i, "touched", pa.array(np.zeros(s.num_rows, dtype=np.int64)))

        # verdicts only for the sessions of the rows held now
        decided = np.flatnonzero((mining | p2p) & (col["touched"] > 0))
        service: list[str] = []
        coin: list[str | None] = []
        confidence: list[float] = []
        evidence: list[str] = []
        for i in decided.tolist():
            if p2p[i]:
                svc = self._p2p[int(p2p_idx[i])]
                service.append(svc.service)
                coin.append(svc.coin)
                confidence.append(MAX_CONFIDENCE if peers[i] >= 2 * MIN_PEERS else 0.65)
                side = "fan-out" if fan_out[i] >= fan_in[i] or not fan_in_ok[i] else "fan-in"
                host = (
                    (col["c_hi"], col["c_lo"]) if side == "fan-out" else (col["s_hi"], col["s_lo"])
                )
                evidence.append(
                    f"{side}: {_ip(host[0][i], host[1][i])} with {int(peers[i])} peers on "
                    f"{_PROTO[int(proto[i])]}/{int(s_port[i])} ({svc.service}), data both ways"
                )
                continue
            service.append("mining")
            coin.append(None)
            confidence.append(float(conf[i]))
            evidence.append(
                self._mining_evidence(i, col, s_port, span, mean_c, mean_s, rate, feats, score)
            )
        table = pa.table(
            {
                **{k: s.column(k).take(pa.array(decided)) for k in _KEYS},
                "_v": pa.array(np.arange(len(decided), dtype=np.int64)),
            }
        )
        return _Verdict(
            table,
            pa.array(
                ["crypto.p2p" if p2p[i] else "crypto.mining" for i in decided.tolist()], pa.string()
            ),
            pa.array(service, pa.string()),
            pa.array(coin, pa.string()),
            np.array(confidence, dtype=np.float32),
            pa.array(evidence, pa.string()),
        )

    def _mining_evidence(
        self,
        i: int,
        col: dict[str, npt.NDArray[np.generic]],
        s_port: npt.NDArray[np.int64],
        span: F64,
        mean_c: F64,
        mean_s: F64,
        rate: F64,
        feats: dict[str, BOOL],
        score: F64,
    ) -> str:
        port = int(s_port[i])
        parts = []
        if port in MINING_PORTS:
            parts.append(f"port {port} ({MINING_PORTS[port][1]})")
        if feats["indicator"][i]:
            parts.append("pool indicator on the row")
        parts.append(f"session {span[i]:.0f} s over {int(col['records'][i])} records")
        for side, mean in (("client", mean_c[i]), ("server", mean_s[i])):
            if not np.isnan(mean):
                parts.append(f"{mean:.0f} B/pkt {side}")
        if np.isfinite(rate[i]):
            parts.append(f"{rate[i]:.2f} pkt/s")
        if feats["acks"][i]:
            parts.append(f"{int(col['acks'][i])} client ACK-only records")
        if feats["open"][i]:
            parts.append("no FIN/RST")
        elif col["closed"][i]:
            parts.append("closed")
        return f"flow shape: {', '.join(parts)}; score {score[i]:.2f}"

    def _label(self, rows: pa.Table, keys: pa.Table, verdict: _Verdict) -> pa.Table:
        rows = _with_detection_columns(rows)
        if verdict.table.num_rows == 0:
            return rows
        keyed = keys.append_column("_row", pa.array(np.arange(keys.num_rows, dtype=np.int64)))
        joined = keyed.join(verdict.table, list(_KEYS), join_type="inner", use_threads=False)
        if joined.num_rows == 0:
            return rows
        row_idx = joined.column("_row").to_numpy()
        v_idx = joined.column("_v").to_numpy()
        n = rows.num_rows
        old = (
            rows.column("confidence").to_numpy(zero_copy_only=False)
            if ("confidence" in rows.column_names)
            else np.zeros(n)
        )
        old = np.nan_to_num(np.asarray(old, dtype=np.float64), nan=0.0)
        new_conf = np.zeros(n, dtype=np.float32)
        new_conf[row_idx] = verdict.confidence[v_idx]
        take = np.zeros(n, dtype=bool)
        take[row_idx] = True
        take &= new_conf > old  # never relabel a row its own stronger rule named
        if not take.any():
            return rows
        pick = np.zeros(n, dtype=np.int64)
        pick[row_idx] = v_idx
        mask = pa.array(take)
        idx = pa.array(pick)
        updates = {
            "category": verdict.category.take(idx),
            "service": verdict.service.take(idx),
            "confidence": pa.array(new_conf, pa.float32()),
            "evidence": verdict.evidence.take(idx),
            "coin": verdict.coin.take(idx),
        }
        for name, new in updates.items():
            i = rows.schema.get_field_index(name)
            if i < 0:
                rows = rows.append_column(name, pa.nulls(n, new.type))
                i = rows.schema.get_field_index(name)
            old_col = rows.column(i)
            if name == "coin":
                new = pc.coalesce(new, old_col)  # a payload detector's coin stays
            rows = rows.set_column(
                i, rows.field(i), pc.if_else(mask, new.cast(old_col.type), old_col)
            )
        return rows


@dataclass
class _Verdict:
    table: pa.Table  # session keys + "_v" index into the arrays below
    category: pa.Array
    service: pa.Array
    coin: pa.Array
    confidence: npt.NDArray[np.float32]
    evidence: pa.Array


_PROTO = {TCP: "tcp", UDP: "udp"}


def _ip(hi: np.uint64, lo: np.uint64) -> str:
    return addr.format_one(int(hi).to_bytes(8, "big") + int(lo).to_bytes(8, "big"))


def _distinct(
    a_hi: U64, a_lo: U64, port: U64, b_hi: U64, b_lo: U64, where: BOOL
) -> npt.NDArray[np.int64]:
    """Per row: distinct b among the ``where`` rows that share (a, port) with it."""
    n = len(a_hi)
    out = np.zeros(n, dtype=np.int64)
    if not where.any():
        return out
    t = pa.table({"a_hi": a_hi, "a_lo": a_lo, "port": port, "b_hi": b_hi, "b_lo": b_lo})
    sel = t.filter(pa.array(where))
    pairs = sel.group_by(["a_hi", "a_lo", "port", "b_hi", "b_lo"], use_threads=False).aggregate([])
    counts = pairs.group_by(["a_hi", "a_lo", "port"], use_threads=False).aggregate(
        [("b_hi", "count")]
    )
    rows = t.append_column("_i", pa.array(np.arange(n, dtype=np.int64)))
    joined = rows.join(counts, ["a_hi", "a_lo", "port"], join_type="inner", use_threads=False)
    out[joined.column("_i").to_numpy()] = joined.column("b_hi_count").to_numpy()
    return out


def _with_detection_columns(rows: pa.Table) -> pa.Table:
    """coin/pool/wallet present (schema 3), so held and passed-through rows agree."""
    for name in ("coin", "pool", "wallet"):
        if name not in rows.column_names:
            rows = rows.append_column(
                pa.field(name, pa.string()), pa.nulls(rows.num_rows, pa.string())
            )
    return rows
