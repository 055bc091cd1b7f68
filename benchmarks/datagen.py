"""Synthetic but realistic flows for the benchmark, generated and written vectorised.

The flows look like a border router's NetFlow: unidirectional records (``rev_*`` = 0),
timestamps with millisecond precision (what NetFlow v9 and nfcapd hold) spread over
~30 days with a daily cycle and exported roughly in end-time order, Zipf-distributed
addresses (a few heavy hitters, a long tail) with the watched /22 among them, a port
mix dominated by web and DNS, and heavy-tailed packet and byte counts. About 8% of
the flows are IPv6.

The same :class:`Flows` is written as Parquet, as nfdump-style CSV, as a Zeek
``conn.log`` and (by :mod:`nfdump_ref`) as NetFlow v9 into a real nfcapd, so every
tool sees identical records.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

WATCHED = "175.45.176.0/22"
START = np.datetime64("2019-05-01T00:00:00", "ms")
SPAN_DAYS = 30
V6_SHARE = 0.08
WATCHED_SHARE = 0.012  # share of flows with one end inside the watched /22
V4_POOL, V6_POOL = 400_000, 40_000
ZIPF_S = 1.1

I64 = npt.NDArray[np.int64]

# (port, proto, weight): client -> server destination ports
_SERVICES: tuple[tuple[int, int, float], ...] = (
    (443, 6, 0.36),
    (80, 6, 0.12),
    (53, 17, 0.16),
    (443, 17, 0.06),
    (123, 17, 0.03),
    (22, 6, 0.02),
    (25, 6, 0.015),
    (993, 6, 0.01),
    (3389, 6, 0.01),
    (8080, 6, 0.01),
    (3333, 6, 0.005),
    (9001, 6, 0.005),
    (1194, 17, 0.005),
    (5060, 17, 0.005),
    (8333, 6, 0.003),
    (18080, 6, 0.002),
)
ICMP_SHARE = 0.03
RANDOM_PORT_SHARE = 0.07  # scans, P2P, high ports: uniform over 1..65535


@dataclass
class Flows:
    """Column arrays of n flows; addresses are indices into ``pool`` (k, 16) bytes."""

    ts_start_ms: I64
    ts_end_ms: I64
    src_idx: npt.NDArray[np.int32]
    dst_idx: npt.NDArray[np.int32]
    src_port: npt.NDArray[np.uint16]
    dst_port: npt.NDArray[np.uint16]
    proto: npt.NDArray[np.uint8]
    tcp_flags: npt.NDArray[np.uint8]
    packets: I64
    bytes: I64
    pool: npt.NDArray[np.uint8]
    n_v4: int  # pool[:n_v4] are IPv4 (mapped), the rest IPv6

    def __len__(self) -> int:
        return len(self.ts_start_ms)

    def is_v6(self) -> npt.NDArray[np.bool_]:
        return self.src_idx >= self.n_v4

    def addr_matrix(self, which: str) -> npt.NDArray[np.uint8]:
        return self.pool[self.src_idx if which == "src" else self.dst_idx]

    def pool_text(self) -> pa.Array:
        """Every pool address as conventional text (IPv6 compressed, as nfdump and Zeek print)."""
        v4 = self.pool[: self.n_v4, 12:16].astype(np.int64)
        parts = [pc.cast(pa.array(v4[:, i]), pa.string()) for i in range(4)]
        v4_text = pc.binary_join_element_wise(*parts, ".")
        v6_text = pa.array(
            [str(ipaddress.IPv6Address(bytes(r))) for r in self.pool[self.n_v4 :]], pa.string()
        )
        return pa.concat_arrays([v4_text, v6_text])

    def watched_mask(self) -> npt.NDArray[np.bool_]:
        net = ipaddress.ip_network(WATCHED)
        lo, hi = int(net.network_address), int(net.broadcast_address)
        v4 = np.zeros(len(self.pool), dtype=bool)
        as_int = self.pool[: self.n_v4, 12:16].copy().view(">u4").ravel().astype(np.int64)
        v4[: self.n_v4] = (as_int >= lo) & (as_int <= hi)
        return v4[self.src_idx] | v4[self.dst_idx]


def _zipf_ranks(rng: np.random.Generator, k: int, n: int) -> npt.NDArray[np.int32]:
    cdf = np.cumsum(1.0 / np.arange(1, k + 1) ** ZIPF_S)
    cdf /= cdf[-1]
    return np.searchsorted(cdf, rng.random(n)).astype(np.int32)


def _pool(rng: np.random.Generator) -> tuple[npt.NDArray[np.uint8], int]:
    """Public-looking IPv4 (outside the watched /22), all 1024 watched addresses, IPv6."""
    net = ipaddress.ip_network(WATCHED)
    lo = int(net.network_address)
    v4 = rng.integers(0x01000000, 0xDF000000, size=V4_POOL * 2, dtype=np.int64)
    first = v4 >> 24
    bad = (first == 10) | (first == 127) | ((v4 >> 10) == (lo >> 10))
    bad |= ((v4 >> 20) == 0xAC1) | ((v4 >> 16) == 0xC0A8)
    v4 = np.unique(v4[~bad])[:V4_POOL]
    rng.shuffle(v4)  # ranks must not follow numeric order
    watched = np.arange(lo, lo + net.num_addresses, dtype=np.int64)
    rng.shuffle(watched)
    all_v4 = np.concatenate([v4, watched]).astype(np.uint32)
    n_v4 = len(all_v4)
    pool = np.zeros((n_v4 + V6_POOL, 16), dtype=np.uint8)
    pool[:n_v4, 10:12] = 0xFF
    pool[:n_v4, 12:16] = all_v4.astype(">u4").view(np.uint8).reshape(-1, 4)
    # IPv6: a few hundred /48s (2001:db8::/32 is documentation space, fine for a benchmark)
    prefixes = rng.integers(0, 1 << 16, size=400, dtype=np.int64)
    v6 = pool[n_v4:]
    v6[:, 0:2] = (0x20, 0x01)
    v6[:, 2:4] = (0x0D, 0xB8)
    pick = prefixes[rng.integers(0, len(prefixes), size=V6_POOL)]
    v6[:, 4:6] = pick.astype(">u2").view(np.uint8).reshape(-1, 2)
    v6[:, 8:16] = rng.integers(0, 256, size=(V6_POOL, 8), dtype=np.uint8)
    v6[:, 15] |= 1  # never the all-zero interface id
    return pool, n_v4


def generate(n: int, seed: int = 1, *, watched_share: float = WATCHED_SHARE) -> Flows:
    """n flows, deterministic for a seed; ``watched_share`` of them touch WATCHED."""
    rng = np.random.default_rng(seed)
    pool, n_v4 = _pool(rng)
    n_plain_v4 = n_v4 - 1024

    # end times: a daily cycle (busier 08-22 UTC) sorted, as exporters emit on expiry
    span_ms = SPAN_DAYS * 86_400_000
    t = rng.random(n) * span_ms
    hour = (t // 3_600_000) % 24
    keep = rng.random(n) < np.where((hour >= 8) & (hour < 22), 1.0, 0.45)
    t = np.where(keep, t, rng.random(n) * span_ms)  # thin the nights, keep n exact
    end_rel = np.sort(t.astype(np.int64))
    end_rel += rng.integers(0, 2_000, size=n)  # exporter jitter: sorted-ish, not sorted

    # heavy-tailed packets; bytes = packets * per-packet size (40..1500)
    packets = np.minimum(1 + np.floor(rng.pareto(1.2, n) * 2.0), 5_000_000).astype(np.int64)
    pkt_size = np.clip(rng.lognormal(5.6, 0.9, n), 40, 1500)
    bytes_ = np.maximum(np.round(packets * pkt_size), packets * 40).astype(np.int64)
    dur = np.where(packets > 1, np.minimum(packets * rng.exponential(40.0, n), 300_000), 0)
    dur = dur.astype(np.int64)
    end_rel = np.maximum(end_rel, dur)
    ts_end = START.astype(np.int64) + end_rel
    ts_start = ts_end - dur

    # services: client -> server, a third of the records are the server's reply direction
    weights = np.array([w for _, _, w in _SERVICES])
    weights = weights / weights.sum() * (1 - ICMP_SHARE - RANDOM_PORT_SHARE)
    choice = rng.choice(len(_SERVICES) + 2, size=n, p=[*weights, ICMP_SHARE, RANDOM_PORT_SHARE])
    svc_port = np.array([p for p, _, _ in _SERVICES] + [0, 0], dtype=np.int64)[choice]
    proto = np.array([q for _, q, _ in _SERVICES] + [1, 6], dtype=np.int64)[choice]
    rnd = choice == len(_SERVICES) + 1
    svc_port[rnd] = rng.integers(1, 65536, size=int(rnd.sum()))
    proto[rnd] = np.where(rng.random(int(rnd.sum())) < 0.7, 6, 17)
    ephemeral = rng.integers(32768, 61000, size=n)
    reply = rng.random(n) < 0.33
    src_port = np.where(reply, svc_port, ephemeral)
    dst_port = np.where(reply, ephemeral, svc_port)

    client = _zipf_ranks(rng, n_plain_v4, n)
    server = _zipf_ranks(rng, n_plain_v4, n)
    server = (server + n_plain_v4 // 2) % n_plain_v4  # clients and servers differ in rank
    v6 = rng.random(n) < V6_SHARE
    client[v6] = n_v4 + _zipf_ranks(rng, V6_POOL, int(v6.sum()))
    server[v6] = n_v4 + _zipf_ranks(rng, V6_POOL, int(v6.sum()))
    watched = ~v6 & (rng.random(n) < watched_share)
    inside = n_plain_v4 + _zipf_ranks(rng, 1024, int(watched.sum()))
    as_client = rng.random(int(watched.sum())) < 0.8
    wi = np.flatnonzero(watched)
    client[wi[as_client]] = inside[as_client]
    server[wi[~as_client]] = inside[~as_client]
    src_idx = np.where(reply, server, client).astype(np.int32)
    dst_idx = np.where(reply, client, server).astype(np.int32)

    icmp = choice == len(_SERVICES)
    proto[icmp & v6] = 58
    icmp_type = np.where(rng.random(n) < 0.5, 8, 0)  # echo request / reply
    dst_port[icmp] = (icmp_type * 256)[icmp]
    src_port[icmp] = 0

    tcp = proto == 6
    flag_sets = np.array([0x1B, 0x1B, 0x1B, 0x1A, 0x02, 0x12, 0x14, 0x18, 0x10], dtype=np.int64)
    flags = np.where(tcp, flag_sets[rng.integers(0, len(flag_sets), size=n)], 0)
    syn_only = tcp & (packets == 1)
    flags[syn_only] = 0x02

    return Flows(
        ts_start_ms=ts_start,
        ts_end_ms=ts_end,
        src_idx=src_idx,
        dst_idx=dst_idx,
        src_port=src_port.astype(np.uint16),
        dst_port=dst_port.astype(np.uint16),
        proto=proto.astype(np.uint8),
        tcp_flags=flags.astype(np.uint8),
        packets=packets,
        bytes=bytes_,
        pool=pool,
        n_v4=n_v4,
    )


def _addr_array(flows: Flows, which: str) -> pa.Array:
    m = np.ascontiguousarray(flows.addr_matrix(which))
    return pa.Array.from_buffers(pa.binary(16), len(m), [None, pa.py_buffer(m.tobytes())])


def _ts(ms: I64) -> pa.Array:
    return pa.array(ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))


def to_rogueflow_table(flows: Flows, lo: int = 0, hi: int | None = None) -> pa.Table:
    """Canonical measured columns (the ``rogueflow`` preset: names equal schema fields)."""
    f = flows
    sl = slice(lo, hi)
    return pa.table(
        {
            "ts_start": _ts(f.ts_start_ms[sl]).cast(pa.timestamp("us", tz="UTC")),
            "ts_end": _ts(f.ts_end_ms[sl]).cast(pa.timestamp("us", tz="UTC")),
            "src_addr": _addr_array(_slice(f, sl), "src"),
            "dst_addr": _addr_array(_slice(f, sl), "dst"),
            "src_port": pa.array(f.src_port[sl]),
            "dst_port": pa.array(f.dst_port[sl]),
            "proto": pa.array(f.proto[sl]),
            "tcp_flags": pa.array(f.tcp_flags[sl]),
            "packets": pa.array(f.packets[sl]),
            "bytes": pa.array(f.bytes[sl]),
        }
    )


def _slice(f: Flows, sl: slice) -> Flows:
    return Flows(
        f.ts_start_ms[sl],
        f.ts_end_ms[sl],
        f.src_idx[sl],
        f.dst_idx[sl],
        f.src_port[sl],
        f.dst_port[sl],
        f.proto[sl],
        f.tcp_flags[sl],
        f.packets[sl],
        f.bytes[sl],
        f.pool,
        f.n_v4,
    )


CHUNK = 2_000_000  # rows per write step: bounds the memory of the text formats


def write_parquet(flows: Flows, path: Path) -> None:
    """An analyst's Parquet export (snappy, pyarrow defaults), rogueflow column names."""
    writer: pq.ParquetWriter | None = None
    try:
        for lo in range(0, len(flows), CHUNK):
            table = to_rogueflow_table(flows, lo, lo + CHUNK)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=1 << 20)
    finally:
        if writer is not None:
            writer.close()


# nfdump 1.7 `-o csv` header, verbatim
NFDUMP_CSV_HEADER = (
    "ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt,opkt,obyt,in,out,sas,das,smk,dmk,dtos,dir,"
    "nh,nhb,svln,dvln,ismc,odmc,idmc,osmc,mpls1,mpls2,mpls3,mpls4,mpls5,mpls6,mpls7,mpls8,"
    "mpls9,mpls10,cl,sl,al,ra,eng,exid,tr"
)
_PROTO_TEXT = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMP6"}


def _time_text(ms: I64, sep: str = " ") -> pa.Array:
    """'YYYY-MM-DD hh:mm:ss.mmm' (nfdump 1.7.1 prints whole seconds; ms keeps data exact).

    Built from lookup tables (days, seconds of day, milliseconds): strftime per row is
    ~20x slower.
    """
    day = ms // 86_400_000
    d0 = int(day.min()) if len(day) else 0
    days = np.arange(d0, int(day.max()) + 1 if len(day) else d0 + 1).astype("datetime64[D]")
    day_text = pa.array(days.astype(str).tolist(), pa.string())
    tod = (ms // 1000) % 86_400
    return pc.binary_join_element_wise(
        day_text.take(pa.array(day - d0)),
        pc.binary_join_element_wise(_TOD.take(pa.array(tod)), _MS.take(pa.array(ms % 1000)), "."),
        sep,
    )


_TOD = pa.array(
    [f"{s // 3600:02d}:{s // 60 % 60:02d}:{s % 60:02d}" for s in range(86_400)], pa.string()
)
_MS = pa.array([f"{m:03d}" for m in range(1000)], pa.string())


def _flag_text(flags: npt.NDArray[np.uint8]) -> pa.Array:
    """nfdump's 8-character flag string, e.g. '...AP.S.' (CWR ECE URG ACK PSH RST SYN FIN)."""
    table = []
    for v in range(256):
        table.append("".join(ch if v & (0x80 >> i) else "." for i, ch in enumerate("CEUAPRSF")))
    return pa.array(table, pa.string()).take(pa.array(flags))


def write_nfdump_csv(flows: Flows, path: Path) -> None:
    """The layout of `nfdump -o csv` (1.7), with millisecond timestamps."""
    text = flows.pool_text()
    # fwd,stos ... exid: what nfdump prints for a plain NetFlow v9 record without extensions
    consts = ",".join(
        ["0"] * 2
        + ["{ipkt}", "{ibyt}"]
        + ["0"] * 10
        + ["0.0.0.0"] * 2
        + ["0"] * 2
        + ["00:00:00:00:00:00"] * 4
        + ["0-0-0"] * 10
        + ["0.000"] * 3
        + ["127.0.0.1", "0/0", "0"]
    )
    before, after = consts.split("{ipkt},{ibyt}")
    with open(path, "wb") as fh:
        fh.write(NFDUMP_CSV_HEADER.encode() + b"\n")
        for lo in range(0, len(flows), CHUNK):
            f = _slice(flows, slice(lo, lo + CHUNK))
            dur = f.ts_end_ms - f.ts_start_ms
            td = pc.binary_join_element_wise(
                pc.cast(pa.array(dur // 1000), pa.string()), _MS.take(pa.array(dur % 1000)), "."
            )
            proto = pa.array([_PROTO_TEXT.get(p, str(p)) for p in range(256)]).take(
                pa.array(f.proto)
            )
            tr = _time_text(f.ts_end_ms + 1500)
            cols = [
                _time_text(f.ts_start_ms),
                _time_text(f.ts_end_ms),
                td,
                text.take(pa.array(f.src_idx)),
                text.take(pa.array(f.dst_idx)),
                pc.cast(pa.array(f.src_port), pa.string()),
                pc.cast(pa.array(f.dst_port), pa.string()),
                proto,
                _flag_text(f.tcp_flags),
                pa.scalar(before.rstrip(","), pa.string()),
                pc.cast(pa.array(f.packets), pa.string()),
                pc.cast(pa.array(f.bytes), pa.string()),
                pa.scalar(after.lstrip(","), pa.string()),
                tr,
            ]
            line = pc.binary_join_element_wise(*cols, ",")
            _write_lines(fh, line)


def _write_lines(fh: object, lines: pa.Array) -> None:
    """Write a string array as newline-terminated lines, without quoting."""
    joined = pc.binary_join_element_wise(lines, pa.array([""] * len(lines)), "\n")
    offsets = np.frombuffer(
        joined.buffers()[1], dtype=np.int32, count=len(joined) + 1, offset=joined.offset * 4
    )
    data = joined.buffers()[2]
    assert hasattr(fh, "write")
    fh.write(memoryview(data)[offsets[0] : offsets[-1]])


ZEEK_FIELDS = [
    "ts",
    "uid",
    "id.orig_h",
    "id.orig_p",
    "id.resp_h",
    "id.resp_p",
    "proto",
    "service",
    "duration",
    "orig_bytes",
    "resp_bytes",
    "conn_state",
    "local_orig",
    "local_resp",
    "missed_bytes",
    "history",
    "orig_pkts",
    "orig_ip_bytes",
    "resp_pkts",
    "resp_ip_bytes",
    "tunnel_parents",
]
ZEEK_TYPES = [
    "time",
    "string",
    "addr",
    "port",
    "addr",
    "port",
    "enum",
    "string",
    "interval",
    "count",
    "count",
    "string",
    "bool",
    "bool",
    "count",
    "string",
    "count",
    "count",
    "count",
    "count",
    "set[string]",
]


def write_zeek_conn(flows: Flows, path: Path) -> None:
    """Standard Zeek conn.log TSV (#fields header); one record per flow, no reply side."""
    text = flows.pool_text()
    header = (
        "\n".join(
            [
                "#separator \\x09",
                "#set_separator\t,",
                "#empty_field\t(empty)",
                "#unset_field\t-",
                "#path\tconn",
                "#open\t2019-05-01-00-00-00",
                "#fields\t" + "\t".join(ZEEK_FIELDS),
                "#types\t" + "\t".join(ZEEK_TYPES),
            ]
        )
        + "\n"
    )
    proto_names = pa.array(
        [
            {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp"}.get(p, "unknown_transport")
            for p in range(256)
        ]
    )
    with open(path, "wb") as fh:
        fh.write(header.encode())
        for lo in range(0, len(flows), CHUNK):
            f = _slice(flows, slice(lo, lo + CHUNK))
            n = len(f)
            secs = pc.cast(pa.array(f.ts_start_ms // 1000), pa.string())
            micros = pa.array((f.ts_start_ms % 1000) * 1000)
            ts = pc.binary_join_element_wise(
                secs, pc.utf8_lpad(pc.cast(micros, pa.string()), 6, "0"), "."
            )
            dur_ms = f.ts_end_ms - f.ts_start_ms
            dur = pc.binary_join_element_wise(
                pc.cast(pa.array(dur_ms // 1000), pa.string()),
                pc.utf8_lpad(pc.cast(pa.array((dur_ms % 1000) * 1000), pa.string()), 6, "0"),
                ".",
            )
            uid = pc.binary_join_element_wise(
                pa.array(["C"] * n), pc.cast(pa.array(np.arange(lo, lo + n)), pa.string()), ""
            )
            # Zeek's ICMP "ports" are type (orig) and code (resp)
            icmp = (f.proto == 1) | (f.proto == 58)
            sport = np.where(icmp, f.dst_port >> 8, f.src_port)
            dport = np.where(icmp, f.dst_port & 0xFF, f.dst_port)
            payload = np.maximum(f.bytes - f.packets * 40, 0)
            state = pa.array(np.where(f.proto == 6, "SF", "S0"))
            dash = pa.array(["-"] * n, pa.string())
            cols = [
                ts,
                uid,
                text.take(pa.array(f.src_idx)),
                pc.cast(pa.array(sport), pa.string()),
                text.take(pa.array(f.dst_idx)),
                pc.cast(pa.array(dport), pa.string()),
                proto_names.take(pa.array(f.proto)),
                dash,
                dur,
                pc.cast(pa.array(payload), pa.string()),
                pa.array(["0"] * n),
                state,
                dash,
                dash,
                pa.array(["0"] * n),
                dash,
                pc.cast(pa.array(f.packets), pa.string()),
                pc.cast(pa.array(f.bytes), pa.string()),
                pa.array(["0"] * n),
                pa.array(["0"] * n),
                dash,
            ]
            _write_lines(fh, pc.binary_join_element_wise(*cols, "\t"))
