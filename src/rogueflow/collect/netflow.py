"""NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) message parsing.

Headers and set structure are parsed here; records are decoded in batches by
:mod:`rogueflow.collect.decoder` and :mod:`rogueflow.collect.columns`. The whole set
structure of a message is checked before any of it is used, so a datagram whose
set lengths lie is refused as a whole.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import numpy as np

from rogueflow.collect import columns as cols
from rogueflow.collect.stats import ExporterStats
from rogueflow.collect.templates import FieldSpec, Template, build_template, split_records
from rogueflow.collect.templates import uint_column as _uint

if TYPE_CHECKING:
    from rogueflow.collect.decoder import Decoder, Domain, DomainKey

from rogueflow.collect.decoder import Held, Malformed

V5_HEADER = struct.Struct("!HHIIIIBBH")
V5_RECORD = np.dtype(
    [
        ("src", ">u4"),
        ("dst", ">u4"),
        ("nexthop", ">u4"),
        ("input", ">u2"),
        ("output", ">u2"),
        ("packets", ">u4"),
        ("bytes", ">u4"),
        ("first", ">u4"),
        ("last", ">u4"),
        ("sport", ">u2"),
        ("dport", ">u2"),
        ("pad1", "u1"),
        ("flags", "u1"),
        ("proto", "u1"),
        ("tos", "u1"),
        ("src_as", ">u2"),
        ("dst_as", ">u2"),
        ("src_mask", "u1"),
        ("dst_mask", "u1"),
        ("pad2", ">u2"),
    ]
)
V9_HEADER = struct.Struct("!HHIIII")
IPFIX_HEADER = struct.Struct("!HHIII")
_HH = struct.Struct("!HH")
_HHH = struct.Struct("!HHH")
_I = struct.Struct("!I")
#: enterprise value marking a NetFlow v9 options scope field (its own type namespace)
SCOPE_NAMESPACE = -1
RESERVED_SET = "reserved set id (sets)"
NOT_FLOWS = "not flow records (records)"


# --- NetFlow v5 ------------------------------------------------------------------


def parse_v5(dec: Decoder, data: bytes, exporter: str, st: ExporterStats) -> None:
    if len(data) < V5_HEADER.size:
        raise Malformed("malformed: v5 header truncated")
    _, count, uptime, secs, nsecs, seq, etype, eid, sampling = V5_HEADER.unpack_from(data)
    have = (len(data) - V5_HEADER.size) // V5_RECORD.itemsize
    if count == 0 or count > have:
        raise Malformed(f"malformed: v5 header says {count} records, datagram holds {have}")
    lost, reset = dec.sequences.check((exporter, 5, etype, eid), seq, count)
    st.lost_records += lost
    st.sequence_resets += reset
    rate = sampling & 0x3FFF  # top two bits: the sampling mode
    export_ms = secs * 1000 + nsecs // 1_000_000
    obs = dec.observation_id(f"engine {etype}/{eid}")
    end = V5_HEADER.size + count * V5_RECORD.itemsize
    dec._v5.add(
        data[V5_HEADER.size : end],
        count,
        (count, export_ms, uptime, dec.exporter_id(exporter), obs, rate),
    )


class V5Batch:
    def __init__(self, dec: Decoder) -> None:
        self.dec = dec
        self.chunks: list[bytes] = []
        self.ctx: list[tuple[int, int, int, int, int, int]] = []

    def add(self, chunk: bytes, n: int, ctx: tuple[int, int, int, int, int, int]) -> None:
        self.chunks.append(chunk)
        self.ctx.append(ctx)
        self.dec.pending_records += n

    def decode(self) -> None:
        if not self.chunks:
            return
        rec = np.frombuffer(b"".join(self.chunks), dtype=V5_RECORD)
        ctx = np.array(self.ctx, dtype=np.int64)
        rep = np.repeat(ctx[:, 1:], ctx[:, 0], axis=0)
        self.chunks, self.ctx = [], []
        rate = rep[:, 4]
        c = cols.Context(
            export_ms=rep[:, 0],
            uptime_ms=rep[:, 1],
            exporter=rep[:, 2].astype(np.int32),
            observation=rep[:, 3].astype(np.int32),
            rate=np.where(rate > 0, rate, self.dec.default_rate).astype(np.uint32),
        )
        proto = rec["proto"]
        icmp = (proto == 1) | (proto == 58)
        n = len(rec)
        zeros = np.zeros(n, dtype=np.int64)
        start = cols.uptime_to_ms(rec["first"].astype(np.uint64), c, signed=True) * 1000
        end = cols.uptime_to_ms(rec["last"].astype(np.uint64), c, signed=True) * 1000
        self.dec.parts.append(
            cols.Part(
                start_us=start,
                end_us=cols.unwrap_end(start, end),
                src=cols.v4_matrix(rec["src"]),
                dst=cols.v4_matrix(rec["dst"]),
                sport=np.where(icmp, 0, rec["sport"]).astype(np.uint16),
                dport=rec["dport"].astype(np.uint16),
                proto=proto.astype(np.uint8),
                flags=rec["flags"].astype(np.uint8),
                packets=rec["packets"].astype(np.int64),
                bytes=rec["bytes"].astype(np.int64),
                rev_packets=zeros,
                rev_bytes=zeros,
                rate=c.rate,
                exporter=c.exporter,
                observation=c.observation,
            )
        )


# --- NetFlow v9 and IPFIX ------------------------------------------------------------


def _sets(data: bytes, start: int, what: str) -> list[tuple[int, int, int]]:
    """(set id, body start, body end) of every set, all lengths checked first."""
    out = []
    pos, end = start, len(data)
    while pos < end:
        if end - pos < 4:
            if any(data[pos:]):
                raise Malformed(f"malformed: {end - pos} stray bytes after the last {what}")
            break
        sid, length = _HH.unpack_from(data, pos)
        if length < 4 or pos + length > end:
            raise Malformed(f"malformed: {what} at byte {pos} claims {length} bytes")
        out.append((sid, pos + 4, pos + length))
        pos += length
    return out


def parse_v9(dec: Decoder, data: bytes, exporter: str, st: ExporterStats) -> None:
    if len(data) < V9_HEADER.size:
        raise Malformed("malformed: v9 header truncated")
    _, _count, uptime, secs, seq, source = V9_HEADER.unpack_from(data)
    sets = _sets(data, V9_HEADER.size, "v9 flowset")
    key: DomainKey = (exporter, 9, source)
    lost, reset = dec.sequences.check(key, seq, 1)
    st.lost_datagrams += lost
    st.sequence_resets += reset
    observation = str(source)
    for sid, a, b in sets:
        if sid == 0:
            template_set(dec, key, data[a:b], st, ipfix=False, options=False)
        elif sid == 1:
            template_set(dec, key, data[a:b], st, ipfix=False, options=True)
        elif sid >= 256:
            received(dec, key, sid, data[a:b], secs * 1000, uptime, exporter, observation, st)
        else:
            st.dropped[RESERVED_SET] += 1


def parse_ipfix(dec: Decoder, data: bytes, exporter: str, st: ExporterStats) -> None:
    if len(data) < IPFIX_HEADER.size:
        raise Malformed("malformed: IPFIX header truncated")
    _, length, export, seq, domain_id = IPFIX_HEADER.unpack_from(data)
    if length != len(data):
        raise Malformed(f"malformed: IPFIX length field {length}, datagram {len(data)} bytes")
    sets = _sets(data, IPFIX_HEADER.size, "IPFIX set")
    key: DomainKey = (exporter, 10, domain_id)
    observation = str(domain_id)
    records: int | None = 0
    for sid, a, b in sets:
        if sid == 2:
            template_set(dec, key, data[a:b], st, ipfix=True, options=False)
        elif sid == 3:
            template_set(dec, key, data[a:b], st, ipfix=True, options=True)
        elif sid >= 256:
            n = received(dec, key, sid, data[a:b], export * 1000, -1, exporter, observation, st)
            records = None if n is None or records is None else records + n
        else:
            st.dropped[RESERVED_SET] += 1
    # the IPFIX sequence counts data records: unknown while a set waits for its template
    if records is None:
        dec.sequences.forget(key)
    else:
        lost, reset = dec.sequences.check(key, seq, records)
        st.lost_records += lost
        st.sequence_resets += reset


def template_set(
    dec: Decoder, key: DomainKey, body: bytes, st: ExporterStats, *, ipfix: bool, options: bool
) -> None:
    pos, end = 0, len(body)
    while end - pos >= 4:
        if options and not ipfix:  # v9: id, scope length (bytes), option length (bytes)
            if end - pos < 6:
                break
            tid, scope_len, opt_len = _HHH.unpack_from(body, pos)
            pos += 6
            if scope_len % 4 or opt_len % 4:
                raise Malformed(f"malformed: v9 options template {tid} lengths not fields")
            scope, count = scope_len // 4, (scope_len + opt_len) // 4
        elif options:
            if end - pos < 6:
                break
            tid, count, scope = _HHH.unpack_from(body, pos)
            pos += 6
            if count and not 0 < scope <= count:
                raise Malformed(f"malformed: options template {tid} has {scope} scope fields")
        else:
            tid, count = _HH.unpack_from(body, pos)
            pos += 4
            scope = 0
        if count == 0:
            if tid == 0 and not ipfix:
                break  # v9 padding
            if not ipfix:
                raise Malformed(f"malformed: v9 template {tid} has no fields")
            dec.withdraw(key, None if tid in (2, 3) else tid)  # RFC 7011 §8.1
            continue
        fields: list[FieldSpec] = []
        for _ in range(count):
            if end - pos < 4:
                raise Malformed(f"malformed: template {tid} runs past its set")
            element, length = _HH.unpack_from(body, pos)
            pos += 4
            enterprise = 0
            if ipfix and element & 0x8000:
                if end - pos < 4:
                    raise Malformed(f"malformed: template {tid} runs past its set")
                enterprise = _I.unpack_from(body, pos)[0]
                element &= 0x7FFF
                pos += 4
            if length == 0xFFFF and not ipfix:
                raise Malformed(f"malformed: v9 template {tid} has a variable-length field")
            if not ipfix and len(fields) < scope:
                enterprise = SCOPE_NAMESPACE  # v9 scope types (1 System …) are not elements
            fields.append((element, enterprise, length))
        tpl = build_template(tid, tuple(fields), scope_count=scope, options=options)
        dec.define(key, tpl, st)


def received(
    dec: Decoder,
    key: DomainKey,
    tid: int,
    payload: bytes,
    export_ms: int,
    uptime_ms: int,
    exporter: str,
    observation: str,
    st: ExporterStats,
) -> int | None:
    """A data set: queued for decoding (its record count), or held (None)."""
    domain = dec.domain(key)
    tpl = dec.template(domain, tid)
    if tpl is None:
        dec.hold(Held(key, tid, payload, export_ms, uptime_ms, exporter, observation, dec.now))
        return None
    return data_set(dec, key, domain, tpl, payload, export_ms, uptime_ms, st)


def data_set(
    dec: Decoder,
    key: DomainKey,
    domain: Domain,
    tpl: Template,
    payload: bytes,
    export_ms: int,
    uptime_ms: int,
    st: ExporterStats,
) -> int:
    """Queue a data set's records (or apply options data); how many records it held."""
    packed, n = split_records(tpl, payload)
    if n == 0:
        return 0
    if tpl.options:
        apply_options(domain, tpl, np.frombuffer(packed, dtype=tpl.dtype))
    elif not tpl.has_flow_fields():
        st.dropped[NOT_FLOWS] += n
    else:
        dec.add_records(key, domain, tpl, packed, n, export_ms, uptime_ms)
    return n


def apply_options(domain: Domain, tpl: Template, recs: np.ndarray[Any, Any]) -> None:
    """Options data: the exporter's boot time and sampling rates (per sampler id)."""
    r = tpl.roles
    if "system_init_ms" in r:
        domain.boot_ms = int(_uint(recs, r["system_init_ms"])[-1])
    rates = option_rates(recs, r)
    if rates is None:
        return
    id_role = r.get("sampler_id") or r.get("selector_id")
    ids = _uint(recs, id_role) if id_role else None
    for i, rate in enumerate(rates.tolist()):
        if rate < 1:
            continue
        if ids is not None:
            domain.sampler_rates[int(ids[i])] = int(rate)
        # the latest announced rate also applies to records that name no sampler
        domain.rate = int(rate)


def option_rates(recs: np.ndarray[Any, Any], r: dict[str, str]) -> np.ndarray[Any, Any] | None:
    """1-in-N sampling rates from whichever sampling elements an options record has."""
    for name in ("sampling_interval", "sampler_random_interval"):
        if name in r:
            return _uint(recs, r[name]).astype(np.int64)
    if "packet_interval" in r and "packet_space" in r:
        interval = _uint(recs, r["packet_interval"]).astype(np.float64)
        space = _uint(recs, r["packet_space"]).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(interval > 0, np.round((interval + space) / interval), 0)
        return rate.astype(np.int64)
    if "sampling_size" in r and "sampling_population" in r:
        size = _uint(recs, r["sampling_size"]).astype(np.float64)
        pop = _uint(recs, r["sampling_population"]).astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where(size > 0, np.round(pop / size), 0)
        return rate.astype(np.int64)
    if "sampling_probability" in r:
        p = np.asarray(recs[r["sampling_probability"]], dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = np.where((p > 0) & (p <= 1), np.round(1 / np.where(p > 0, p, 1)), 0)
        return rate.astype(np.int64)
    return None
