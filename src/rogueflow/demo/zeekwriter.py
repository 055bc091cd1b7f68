"""Write generated flows as Zeek TSV logs (conn, dns, ssl), one set per calendar month.

The text is built column-wise with Arrow compute and serialised by
``pyarrow.csv.write_csv`` (tab delimiter, no quoting), then gzip-compressed at
level 1: the full demo writes tens of millions of rows, and Python-level row
formatting would be two orders of magnitude slower.
"""

from __future__ import annotations

import gzip
import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rogueflow.demo.simulate import (
    HISTORY_TCP,
    HISTORY_UDP,
    NAME_DNS,
    NAME_SNI,
    NAME_TUNNEL,
    STATES,
    US,
    Flows,
    Plan,
)

UNSET = "-"
# the connection key every Zeek log starts with
ID_FIELDS = (
    ("ts", "time"),
    ("uid", "string"),
    ("id.orig_h", "addr"),
    ("id.orig_p", "port"),
    ("id.resp_h", "addr"),
    ("id.resp_p", "port"),
)
CONN_FIELDS = (
    *ID_FIELDS,
    ("proto", "enum"),
    ("service", "string"),
    ("duration", "interval"),
    ("orig_bytes", "count"),
    ("resp_bytes", "count"),
    ("conn_state", "string"),
    ("local_orig", "bool"),
    ("local_resp", "bool"),
    ("missed_bytes", "count"),
    ("history", "string"),
    ("orig_pkts", "count"),
    ("orig_ip_bytes", "count"),
    ("resp_pkts", "count"),
    ("resp_ip_bytes", "count"),
    ("tunnel_parents", "set[string]"),
)
DNS_FIELDS = (
    *ID_FIELDS,
    ("proto", "enum"),
    ("trans_id", "count"),
    ("rtt", "interval"),
    ("query", "string"),
    ("qclass", "count"),
    ("qclass_name", "string"),
    ("qtype", "count"),
    ("qtype_name", "string"),
    ("rcode", "count"),
    ("rcode_name", "string"),
    ("AA", "bool"),
    ("TC", "bool"),
    ("RD", "bool"),
    ("RA", "bool"),
    ("Z", "count"),
    ("answers", "vector[string]"),
    ("TTLs", "vector[interval]"),
    ("rejected", "bool"),
)
SSL_FIELDS = (
    *ID_FIELDS,
    ("version", "string"),
    ("cipher", "string"),
    ("curve", "string"),
    ("server_name", "string"),
    ("resumed", "bool"),
    ("last_alert", "string"),
    ("next_protocol", "string"),
    ("established", "bool"),
    ("ssl_history", "string"),
)

_OCTETS = pa.array([str(i) for i in range(256)], pa.string())


def addr_text(a: npt.NDArray[np.uint32]) -> pa.Array:
    """IPv4 addresses (host-order uint32) to dotted quads, vectorised."""
    parts = [pc.take(_OCTETS, pa.array((a >> sh) & 0xFF)) for sh in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*parts, ".")


def time_text(us: npt.NDArray[np.int64]) -> pa.Array:
    """Microseconds to Zeek's ``seconds.micro`` text, exactly (no float rounding)."""
    secs = pa.array(us // US).cast(pa.string())
    frac = pc.utf8_lpad(pa.array(us % US).cast(pa.string()), 6, "0")
    return pc.binary_join_element_wise(secs, frac, ".")


def _opt_count(values: npt.NDArray[np.int64], unset: npt.NDArray[np.bool_]) -> pa.Array:
    return pc.if_else(pa.array(unset), UNSET, pa.array(values).cast(pa.string()))


def _choice(codes: npt.NDArray[np.integer], table: list[str] | tuple[str, ...]) -> pa.Array:
    return pc.take(pa.array(list(table), pa.string()), pa.array(codes.astype(np.int32)))


def _const(value: str, n: int) -> pa.Array:
    return pc.take(pa.array([value], pa.string()), pa.array(np.zeros(n, dtype=np.int32)))


def _header(path: str, fields: tuple[tuple[str, str], ...], opened: datetime) -> bytes:
    lines = [
        "#separator \\x09",
        "#set_separator\t,",
        "#empty_field\t(empty)",
        "#unset_field\t-",
        f"#path\t{path}",
        f"#open\t{opened:%Y-%m-%d-%H-%M-%S}",
        "#fields\t" + "\t".join(f for f, _ in fields),
        "#types\t" + "\t".join(t for _, t in fields),
    ]
    return ("\n".join(lines) + "\n").encode()


def _write(
    path: Path,
    log: str,
    fields: tuple[tuple[str, str], ...],
    cols: list[pa.Array],
    opened: datetime,
    closed: datetime,
) -> None:
    table = pa.Table.from_arrays(cols, names=[f for f, _ in fields])
    buf = io.BytesIO()
    if table.num_rows:
        pacsv.write_csv(
            table,
            buf,
            pacsv.WriteOptions(
                include_header=False, delimiter="\t", quoting_style="none", batch_size=65_536
            ),
        )
    tmp = path.with_name(path.name + ".part")
    # mtime=0 and no embedded name: the same seed gives byte-identical files
    with open(tmp, "wb") as raw, gzip.GzipFile("", "wb", 1, raw, mtime=0) as fh:
        fh.write(_header(log, fields, opened))
        fh.write(buf.getbuffer())
        fh.write(f"#close\t{closed:%Y-%m-%d-%H-%M-%S}\n".encode())
    tmp.replace(path)


def write_month(
    plan: Plan,
    flows: Flows,
    out_dir: Path,
    year: int,
    month: int,
    local_nets: tuple[tuple[int, int], ...],
) -> list[Path]:
    """Write conn/dns/ssl logs of one month; returns the paths (conn first)."""
    tag = f"{year:04d}-{month:02d}"
    n = len(flows)
    opened = datetime(year, month, 1, tzinfo=UTC)
    closed = datetime.fromtimestamp(int(flows.ts_us[-1]) // US, UTC) if n else opened
    ts = time_text(flows.ts_us)
    uid = pa.array(flows.uid).cast(pa.string())
    oh, rh = addr_text(flows.orig), addr_text(flows.resp)
    op, rp = pa.array(flows.orig_p), pa.array(flows.resp_p)
    tcp = flows.proto == 6
    streams = plan.streams
    svc = np.array([s.zeek_service for s in streams], dtype=object)[flows.stream]
    failed = flows.state != 0
    service = pa.array(np.where(failed, "-", svc).astype(object), pa.string())
    unset_bytes = failed & ~tcp
    hist = np.where(tcp, flows.state, flows.state + len(STATES))
    local = [_in_nets(flows.orig, local_nets), _in_nets(flows.resp, local_nets)]
    conn_cols = [
        ts,
        uid,
        oh,
        op,
        rh,
        rp,
        _choice(np.where(tcp, 0, 1), ("tcp", "udp")),
        service,
        _duration(flows.dur_us),
        _opt_count(flows.orig_bytes, unset_bytes),
        _opt_count(flows.resp_bytes, unset_bytes),
        _choice(flows.state, STATES),
        _choice(local[0].astype(np.int8), ("F", "T")),
        _choice(local[1].astype(np.int8), ("F", "T")),
        _const("0", n),
        _choice(hist, HISTORY_TCP + HISTORY_UDP),
        pa.array(flows.orig_pkts),
        pa.array(flows.orig_ip_bytes),
        pa.array(flows.resp_pkts),
        pa.array(flows.resp_ip_bytes),
        _const(UNSET, n),
    ]
    paths = [
        out_dir / f"conn.{tag}.log.gz",
        out_dir / f"dns.{tag}.log.gz",
        out_dir / f"ssl.{tag}.log.gz",
    ]
    _write(paths[0], "conn", CONN_FIELDS, conn_cols, opened, closed)

    kind = np.array([s.name_kind for s in streams], dtype=np.int8)[flows.stream]
    d = np.flatnonzero(((kind == NAME_DNS) | (kind == NAME_TUNNEL)) & (flows.resp_p == 53))
    m = len(d)
    answered = flows.state[d] == 0
    tunnel = kind[d] == NAME_TUNNEL
    rng = np.random.default_rng([plan.seed, year, month, 53])
    dns_cols = [
        ts.take(pa.array(d)),
        uid.take(pa.array(d)),
        oh.take(pa.array(d)),
        op.take(pa.array(d)),
        rh.take(pa.array(d)),
        rp.take(pa.array(d)),
        _const("udp", m),
        pa.array(rng.integers(0, 65536, m)),
        _duration(np.where(answered, flows.dur_us[d], -1)),
        pa.array(list(flows.name[d]), pa.string()),
        _const("1", m),
        _const("C_INTERNET", m),
        _choice(tunnel.astype(np.int8), ("1", "16")),
        _choice(tunnel.astype(np.int8), ("A", "TXT")),
        _opt_count(np.zeros(m, np.int64), ~answered),
        pc.if_else(pa.array(answered), "NOERROR", UNSET),
        _const("F", m),
        _const("F", m),
        _const("T", m),
        _choice(answered.astype(np.int8), ("F", "T")),
        _const("0", m),
        _const(UNSET, m),
        _const(UNSET, m),
        _const("F", m),
    ]
    _write(paths[1], "dns", DNS_FIELDS, dns_cols, opened, closed)

    t = np.flatnonzero((kind == NAME_SNI) & ~failed)
    k = len(t)
    ssl_cols = [
        ts.take(pa.array(t)),
        uid.take(pa.array(t)),
        oh.take(pa.array(t)),
        op.take(pa.array(t)),
        rh.take(pa.array(t)),
        rp.take(pa.array(t)),
        _choice((flows.ts_us[t] > 1_530_000_000 * US).astype(np.int8), ("TLSv12", "TLSv13")),
        _choice(
            (flows.ts_us[t] > 1_530_000_000 * US).astype(np.int8),
            ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256"),
        ),
        _const("x25519", k),
        pa.array(list(flows.name[t]), pa.string()),
        _const("F", k),
        _const(UNSET, k),
        _const(UNSET, k),
        _const("T", k),
        _const("CsxknGIti", k),
    ]
    _write(paths[2], "ssl", SSL_FIELDS, ssl_cols, opened, closed)
    return paths


def _duration(us: npt.NDArray[np.int64]) -> pa.Array:
    text = time_text(np.maximum(us, 0))
    return pc.if_else(pa.array(us < 0), UNSET, text)


def _in_nets(a: npt.NDArray[np.uint32], nets: tuple[tuple[int, int], ...]) -> npt.NDArray[np.bool_]:
    out = np.zeros(len(a), dtype=bool)
    for lo, hi in nets:
        out |= (a >= lo) & (a <= hi)
    return out
