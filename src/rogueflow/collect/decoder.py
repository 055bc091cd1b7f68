"""The decoder shared by the collector and the file readers: datagrams in, flow tables out.

``feed`` takes one datagram and its exporter; it parses headers and set structure in
Python (a few microseconds) and appends each data set's bytes to its template's
pending batch. ``flush`` decodes every pending batch with one numpy structured dtype
per template and returns one Arrow table of canonical columns. Data whose template
has not arrived yet is held (bounded in time and bytes) and decoded when the template
comes, else counted as dropped "no template". Nothing a datagram contains raises out
of ``feed``: a malformed one is counted with its exporter and the reason.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rogueflow.collect import columns as cols
from rogueflow.collect.burst import decode_burst
from rogueflow.collect.recv import Burst
from rogueflow.collect.stats import ExporterStats, SequenceTracker, Stats
from rogueflow.collect.templates import Template, TemplateError

#: (exporter, version, observation domain / source id)
DomainKey = tuple[str, int, int]

NO_TEMPLATE = "no template (sets)"


class Malformed(ValueError):
    """A datagram that breaks its protocol; the message is the counted reason."""


@dataclass
class Domain:
    """What an exporter's observation domain (v9 source id) has told us."""

    templates: dict[int, Template] = field(default_factory=dict)
    boot_ms: int | None = None
    rate: int | None = None
    sampler_rates: dict[int, int] = field(default_factory=dict)


#: per datagram: records, export time (ms), sysUptime (ms; -1 for IPFIX)
Ctx = tuple[int, int, int]


@dataclass
class Pending:
    """Data sets of one template (of one exporter's domain) waiting for the batch decode.

    ``data[i]`` holds the packed records of ``ctx[i]``: bytes and one context tuple for
    a data set queued by :func:`netflow.data_set`, or a uint8 array and an (n, 3) array
    for a block of datagrams queued by :mod:`rogueflow.collect.burst`.
    """

    template: Template
    domain: Domain
    exporter: int
    observation: int
    data: list[bytes | npt.NDArray[np.uint8]] = field(default_factory=list)
    ctx: list[Ctx | npt.NDArray[np.int64]] = field(default_factory=list)


@dataclass
class Held:
    key: DomainKey
    tid: int
    payload: bytes
    export_ms: int
    uptime_ms: int
    exporter: str
    observation: str
    at: float
    released: bool = False


class Decoder:
    """Stateful decoder of NetFlow v5/v9, IPFIX and sFlow v5 datagrams."""

    def __init__(
        self,
        *,
        template_timeout: float = 1800.0,
        hold_seconds: float = 30.0,
        hold_bytes: int = 16 << 20,
        default_rate: int | None = None,
    ) -> None:
        self.stats = Stats()
        self.sequences = SequenceTracker()
        self.template_timeout = template_timeout
        self.hold_seconds = hold_seconds
        self.hold_bytes = hold_bytes
        self.default_rate = default_rate or 1
        self.domains: dict[DomainKey, Domain] = {}
        self.pending: dict[tuple[DomainKey, int], Pending] = {}
        self.parts: list[cols.Part] = []
        self.pending_records = 0
        self.held: deque[Held] = deque()
        self.held_by_key: dict[tuple[DomainKey, int], list[Held]] = {}
        #: bumped whenever a template appears, changes, expires or is withdrawn
        self.generation = 0
        self.exporters: list[str] = []
        self._exporter_ids: dict[str, int] = {}
        self.observations: list[str] = []
        self._observation_ids: dict[str, int] = {}
        self.now = 0.0
        from rogueflow.collect import netflow, sflow

        self._v5 = netflow.V5Batch(self)
        self._sflow = sflow.SflowBatch(self)
        self._parse = {5: netflow.parse_v5, 9: netflow.parse_v9, 10: netflow.parse_ipfix}
        self._parse_sflow = sflow.parse_sflow

    # --- input --------------------------------------------------------------

    def feed(self, data: bytes | memoryview, exporter: str, now: float) -> None:
        """Decode one datagram from ``exporter`` received at ``now`` (Unix seconds)."""
        self.now = now
        st = self.stats.of(exporter)
        st.datagrams += 1
        st.bytes += len(data)
        if len(data) < 4:
            self.stats.drop(exporter, "malformed: shorter than any header")
            return
        data = bytes(data)
        version = (data[0] << 8) | data[1]
        try:
            parse = self._parse.get(version)
            if parse is not None:
                parse(self, data, exporter, st)
            elif version == 0 and data[2] == 0 and data[3] == 5:
                self._parse_sflow(self, data, exporter, st)
            else:
                raise Malformed(f"malformed: unknown version {version}")
        except Malformed as exc:
            self.stats.drop(exporter, str(exc))
        except (TemplateError, struct.error, IndexError, ValueError, OverflowError) as exc:
            self.stats.drop(exporter, f"malformed: {exc}")

    def feed_burst(self, burst: Burst, now: float) -> None:
        """Decode a received burst of datagrams (see :mod:`rogueflow.collect.burst`)."""
        decode_burst(self, burst, now)

    def exporter_id(self, name: str) -> int:
        i = self._exporter_ids.get(name)
        if i is None:
            i = self._exporter_ids[name] = len(self.exporters)
            self.exporters.append(name)
        return i

    def observation_id(self, name: str) -> int:
        i = self._observation_ids.get(name)
        if i is None:
            i = self._observation_ids[name] = len(self.observations)
            self.observations.append(name)
        return i

    def domain(self, key: DomainKey) -> Domain:
        d = self.domains.get(key)
        if d is None:
            d = self.domains[key] = Domain()
        return d

    def template(self, domain: Domain, tid: int) -> Template | None:
        tpl = domain.templates.get(tid)
        if tpl is not None and self.now - tpl.refreshed > self.template_timeout:
            del domain.templates[tid]  # expired: the exporter stopped announcing it
            self.generation += 1
            return None
        return tpl

    # --- templates and held data ---------------------------------------------

    def define(self, key: DomainKey, tpl: Template, st: ExporterStats) -> None:
        """A template (re)announced; data held for it is decoded now."""
        domain = self.domain(key)
        old = domain.templates.get(tpl.tid)
        if old is not None and old.same_layout(tpl):
            current = old  # the periodic re-announcement: keep the one batches refer to
        else:
            if old is not None:
                self._decode_pending((key, tpl.tid))  # earlier data keeps its own layout
            st.templates += 1
            self.generation += 1
            current = domain.templates[tpl.tid] = tpl
        current.refreshed = self.now
        waiting = self.held_by_key.pop((key, tpl.tid), None)
        if waiting:
            from rogueflow.collect.netflow import data_set

            for h in waiting:
                if h.released:
                    continue
                h.released = True
                self.stats.held_sets -= 1
                self.stats.held_bytes -= len(h.payload)
                data_set(
                    self,
                    key,
                    domain,
                    current,
                    h.payload,
                    h.export_ms,
                    h.uptime_ms,
                    self.stats.of(h.exporter),
                )

    def withdraw(self, key: DomainKey, tid: int | None) -> None:
        domain = self.domain(key)
        self.generation += 1
        if tid is None:
            for t in list(domain.templates):
                self._decode_pending((key, t))
            domain.templates.clear()
        else:
            self._decode_pending((key, tid))
            domain.templates.pop(tid, None)

    def hold(self, h: Held) -> None:
        """Keep a data set whose template is unknown; the oldest go when over the bound."""
        self.held.append(h)
        self.held_by_key.setdefault((h.key, h.tid), []).append(h)
        self.stats.held_sets += 1
        self.stats.held_bytes += len(h.payload)
        while self.stats.held_bytes > self.hold_bytes and self.held:
            self._drop_held(self.held.popleft())

    def expire(self, now: float) -> None:
        """Drop held data older than ``hold_seconds`` (counted "no template")."""
        self.now = max(self.now, now)
        while self.held and (self.held[0].released or now - self.held[0].at > self.hold_seconds):
            self._drop_held(self.held.popleft())

    def _drop_held(self, h: Held) -> None:
        if h.released:
            return
        h.released = True
        self.stats.held_sets -= 1
        self.stats.held_bytes -= len(h.payload)
        self.stats.drop(h.exporter, NO_TEMPLATE)
        waiting = self.held_by_key.get((h.key, h.tid))
        if waiting is not None:
            waiting.remove(h)
            if not waiting:
                del self.held_by_key[(h.key, h.tid)]

    # --- output -------------------------------------------------------------

    def add_records(
        self,
        key: DomainKey,
        domain: Domain,
        tpl: Template,
        packed: bytes,
        n: int,
        export_ms: int,
        uptime_ms: int,
    ) -> None:
        """Queue ``n`` packed records of ``tpl`` (one data set) for the next batch decode."""
        p = self._pending(key, domain, tpl)
        p.data.append(packed)
        p.ctx.append((n, export_ms, uptime_ms))
        self.pending_records += n

    def add_block(
        self,
        key: DomainKey,
        domain: Domain,
        tpl: Template,
        packed: npt.NDArray[np.uint8],
        ctx: npt.NDArray[np.int64],
    ) -> None:
        """Queue the records of many data sets: ``ctx`` has one ``Ctx`` row per data set."""
        p = self._pending(key, domain, tpl)
        p.data.append(packed)
        p.ctx.append(ctx)
        self.pending_records += len(packed) // tpl.fixed_len

    def _pending(self, key: DomainKey, domain: Domain, tpl: Template) -> Pending:
        pk = (key, tpl.tid)
        p = self.pending.get(pk)
        if p is None or p.template is not tpl:
            if p is not None:
                self._decode_pending(pk)
            exporter = self.exporter_id(key[0])
            p = Pending(tpl, domain, exporter, self.observation_id(str(key[2])))
            self.pending[pk] = p
        return p

    def _decode_pending(self, pk: tuple[DomainKey, int]) -> None:
        p = self.pending.pop(pk, None)
        if p is None or not p.data:
            return
        raw, ctx = _packed(p)
        records = raw.view(p.template.dtype)
        n = len(records)
        counts = ctx[:, 0]
        rate = np.full(n, p.domain.rate or self.default_rate, dtype=np.uint32)
        context = cols.Context(
            export_ms=np.repeat(ctx[:, 1], counts),
            uptime_ms=np.repeat(ctx[:, 2], counts),
            exporter=np.full(n, p.exporter, dtype=np.int32),
            observation=np.full(n, p.observation, dtype=np.int32),
            rate=rate,
            boot_ms=p.domain.boot_ms,
        )
        if "sampler_id" in p.template.roles or "selector_id" in p.template.roles:
            context.rate = _sampler_rates(records, p.template, p.domain, context.rate)
        self.parts.append(cols.template_part(records, p.template, context))

    def flush(self) -> pa.Table | None:
        """Decode everything pending; the flows since the last flush, or None."""
        for pk in list(self.pending):
            self._decode_pending(pk)
        self._v5.decode()
        self._sflow.decode()
        parts, self.parts = [p for p in self.parts if len(p)], []
        self.pending_records = 0
        if not parts:
            return None
        part = cols.concat(parts)
        counts = np.bincount(part.exporter, minlength=len(self.exporters))
        for i in np.flatnonzero(counts):
            self.stats.of(self.exporters[i]).flows += int(counts[i])
        return cols.to_table(part, self.exporters, self.observations)

    def finish(self) -> pa.Table | None:
        """End of input: the last flows; data still without template is dropped."""
        table = self.flush()
        while self.held:
            self._drop_held(self.held.popleft())
        return table


def _packed(p: Pending) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """All the records of ``p`` as one byte array, and one context row per data set."""
    datas: list[npt.NDArray[np.uint8]] = []
    ctxs: list[npt.NDArray[np.int64]] = []
    chunks: list[bytes] = []
    rows: list[Ctx] = []
    for data, ctx in zip(p.data, p.ctx, strict=True):
        if isinstance(ctx, tuple):
            chunks.append(data)  # type: ignore[arg-type]
            rows.append(ctx)
            continue
        if rows:
            datas.append(np.frombuffer(b"".join(chunks), dtype=np.uint8))
            ctxs.append(np.array(rows, dtype=np.int64))
            chunks, rows = [], []
        datas.append(data)  # type: ignore[arg-type]
        ctxs.append(ctx)
    if rows:
        datas.append(np.frombuffer(b"".join(chunks), dtype=np.uint8))
        ctxs.append(np.array(rows, dtype=np.int64))
    raw = datas[0] if len(datas) == 1 else np.concatenate(datas)
    return raw, ctxs[0] if len(ctxs) == 1 else np.concatenate(ctxs)


def _sampler_rates(
    records: np.ndarray[Any, Any], tpl: Template, domain: Domain, default: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Per-record rates looked up by the sampler/selector id the record names."""
    from rogueflow.collect.templates import uint_column

    if not domain.sampler_rates:
        return default
    ids = uint_column(records, tpl.roles.get("sampler_id") or tpl.roles["selector_id"])
    keys = np.array(sorted(domain.sampler_rates), dtype=np.uint64)
    vals = np.array([domain.sampler_rates[int(k)] for k in keys], dtype=np.uint32)
    pos = np.clip(np.searchsorted(keys, ids), 0, len(keys) - 1)
    return np.where(keys[pos] == ids, vals[pos], default).astype(np.uint32)
