"""pcap / pcapng captures: flows metered and labelled by nDPI through nfstream.

Choices, measured on nfstream 6.6 (nDPI 4.x):

* **Validation first.** :mod:`rogueflow.ingest.pcapcheck` walks every record or
  block header before nfstream runs, because libpcap stops silently at a
  truncated record; a damaged file is refused with its packet number and offset.
* **Options** (``--option KEY=VALUE``): ``idle_timeout`` and ``active_timeout``
  (seconds), ``dissections`` (packets nDPI may inspect per flow, default 20: 255
  labels nothing more on nDPI's own test captures), ``decode_tunnels`` (GTP,
  TZSP, CAPWAP; default true).
* **Flow timeouts** default to 300 s idle and 1800 s active. nfstream's 120 s idle split the
  Stratum sessions of nDPI's mining.pcapng (quiet gaps of 195 s) into pieces whose
  continuation loses both its label and its direction; 300 s reproduces nDPI's
  reference flow set on all of nDPI's test captures used in the tests.
* **TCP flags** come from ``statistical_analysis=True`` (per-flag packet counters,
  OR-ed here into one byte). Measured on 300k-packet and 150k-flow captures its
  cost is within run-to-run noise, while the only other source of flags, a
  per-packet plugin, makes the meter ~1.5x slower.
* **ICMP**: nfstream keys ICMP flows with ports 0 and keeps no type or code. When a
  capture has ICMP flows, a second pass restricted by a BPF filter to ICMP reads
  the first packet's type and code with a small plugin (only ICMP packets reach
  Python), giving the canonical ``dst_port = type*256 + code``. ICMP inside
  tunnels the filter cannot see keeps 0.
* **Times** are nfstream's milliseconds, the finest it reports (stored as µs).
* **Bytes** are layer 3 (``accounting_mode=1``), as the canonical schema says.
* **Names**: nDPI keeps one requested server name per flow. It becomes
  ``server_name`` when the master protocol is TLS, DTLS, QUIC or HTTP and
  ``dns_query`` when it is DNS; other names (NetBIOS, mDNS, DHCP host names) are
  not server names and are dropped.
* **Passive DNS**: a flow still unnamed gets, as ``dns_query``, the name its client
  last resolved to its responder address in the capture's own DNS responses (within
  the answer's TTL and a day), as Zeek dns.log answers do: :mod:`.pcapdns`.
* The meter runs in a child process we start and watch ourselves (nfstream's own
  iterator waits forever if its child dies, and pins the calling process to CPU 0
  and 1), with nfstream's ``meter_workflow`` as the target.
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import inspect
import io
import lzma
import multiprocessing
import os
import queue
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rogueflow import addr
from rogueflow.errors import ConfigError, InputError, MissingDependency
from rogueflow.ingest import pcapcheck, pcapdns, pcappayload
from rogueflow.ingest.base import (
    NoCompanions,
    ReadOptions,
    compression_of,
)
from rogueflow.ingest.zeek import PassiveDns
from rogueflow.schema import TIMESTAMP

_INSTALL = ("nfstream (pcap ingest)", "pip install 'rogueflow[pcap]'")

# Master protocols whose nDPI "requested server name" names the server (SNI, Host).
_SERVER_NAME_MASTERS = frozenset({"TLS", "DTLS", "QUIC", "HTTP", "HTTP_Proxy", "HTTP_Connect"})
_DNS_MASTERS = frozenset({"DNS"})
# nfstream per-flag packet counters -> TCP flag bit.
_FLAG_BITS = (
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ece", 0x40),
    ("cwr", 0x80),
)
_ICMP = (1, 58)
_POLL_SECONDS = 0.5
# 9999-12-31T23:59:59.999Z: later times (from a corrupt 64-bit pcapng timestamp) cannot be
# represented by the engines' timestamp types.
_MAX_MS = 253_402_300_799_999


@dataclass(frozen=True)
class PcapSettings:
    """Reader options (``--option KEY=VALUE``)."""

    idle_timeout: int = 300
    active_timeout: int = 1800
    dissections: int = 20
    decode_tunnels: bool = True

    @classmethod
    def from_options(cls, extra: dict[str, str]) -> PcapSettings:
        known = {"idle_timeout", "active_timeout", "dissections", "decode_tunnels"}
        unknown = sorted(set(extra) - known)
        if unknown:
            raise ConfigError(
                f"unknown pcap option {unknown[0]!r}; pcap options: {', '.join(sorted(known))}"
            )
        kw: dict[str, Any] = {}
        for key, lo, hi in (
            ("idle_timeout", 1, 10**7),
            ("active_timeout", 1, 10**7),
            ("dissections", 0, 255),
        ):
            if key in extra:
                try:
                    value = int(extra[key])
                except ValueError:
                    value = lo - 1
                if not lo <= value <= hi:
                    raise ConfigError(f"pcap option {key} must be an integer in [{lo}, {hi}]")
                kw[key] = value
        if "decode_tunnels" in extra:
            text = extra["decode_tunnels"].strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise ConfigError("pcap option decode_tunnels must be true or false")
            kw["decode_tunnels"] = text in ("true", "1", "yes")
        return cls(**kw)


class PcapReader(NoCompanions):
    name = "pcap"
    description = "pcap / pcapng captures: flows, nDPI application labels, TLS/HTTP/DNS names"

    def sniff(self, path: Path, head: bytes) -> bool:
        return pcapcheck.kind_of(head) is not None

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        cfg = PcapSettings.from_options(dict(options.extra))
        _require_nfstream()
        with _plain_capture(path) as plain:
            summary = pcapcheck.check(plain, display=path)
            if summary.packets:
                passive = pcapdns.passive_dns(plain)
                payload = pcappayload.payload_index(plain)
                tunnels = _tunnels(plain)
                from rogueflow.detect.dnstunnel import label_table

                for table in _FlowBatcher(path, plain, cfg, options, summary, passive).batches():
                    if payload is not None:
                        table = _with_payload(table, payload)
                    yield table if tunnels is None else label_table(tunnels, table)


def _with_payload(table: pa.Table, payload: pcappayload.PayloadIndex) -> pa.Table:
    """The flows' payload labels (mining, blockchain P2P) with their coin, pool and wallet.

    Enrichment keeps them over its own weaker labels: the evidence is marked ``payload: ``.
    """
    cols = payload.label_columns(table)
    ev = cols["evidence"]
    cols["evidence"] = pc.if_else(
        pc.is_valid(ev), pc.binary_join_element_wise("payload: ", ev, ""), ev
    )
    for name, values in cols.items():
        table = table.append_column(name, values)
    return table


def _tunnels(plain: Path) -> Any:  # TunnelDetector | None
    """The capture's DNS requests judged for tunnelling; None when no pair is a tunnel.

    Every request counts (nDPI keeps one query name per flow, too few to judge)."""
    # imported here: the detector reads captures through rogueflow.ingest, which imports us
    from rogueflow.detect.dnstunnel import TunnelDetector, queries_from_pcap

    det = TunnelDetector()
    for batch in queries_from_pcap(plain, checked=True):
        det.add(*batch)
    return det if det.flagged() else None


def _require_nfstream() -> None:
    try:
        import nfstream.meter  # noqa: F401
    except ImportError:
        raise MissingDependency(*_INSTALL) from None


@contextlib.contextmanager
def _plain_capture(path: Path) -> Iterator[Path]:
    """The capture itself, or a temporary decompressed copy of a .gz/.bz2/.xz capture."""
    with open(path, "rb") as fh:
        kind = compression_of(fh.read(6))
    if kind is None:
        yield path
        return
    fd, tmp = tempfile.mkstemp(prefix="rogueflow-", suffix=".pcap")
    try:
        with os.fdopen(fd, "wb") as out, _decompressor(kind, path) as src:
            shutil.copyfileobj(src, out, 1 << 20)
    except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
        os.unlink(tmp)
        raise InputError(path, None, f"cannot decompress ({kind}): {exc}") from None
    try:
        yield Path(tmp)
    finally:
        os.unlink(tmp)


def _decompressor(kind: str, path: Path) -> io.BufferedIOBase:
    # opened by name so that closing the decompressor closes the file too
    if kind == "gzip":
        return gzip.GzipFile(path, "rb")
    if kind == "bz2":
        return bz2.BZ2File(path, "rb")
    return lzma.LZMAFile(path, "rb")


class _FlowBatcher:
    """nfstream flows -> canonical column lists, flushed every ``batch_rows``."""

    def __init__(
        self,
        path: Path,
        plain: Path,
        cfg: PcapSettings,
        options: ReadOptions,
        summary: pcapcheck.Summary,
        passive: PassiveDns | None = None,
    ) -> None:
        self.path, self.plain, self.cfg, self.options = path, plain, cfg, options
        self.summary, self.passive = summary, passive
        self._reset()
        # ICMP rows wait for their type/code from the second pass (few: one per host pair).
        self.icmp_rows: list[tuple[Any, ...]] = []
        self.count = 0

    def _reset(self) -> None:
        self.cols: dict[str, list[Any]] = {name: [] for name in _COLUMNS}

    def batches(self) -> Iterator[pa.Table]:
        for flow in _meter(self.path, self.plain, self.cfg, bpf=None, icmp_plugin=False):
            row = _row(flow)
            if row[_PROTO] in _ICMP:
                self.icmp_rows.append(row)
                continue
            self._append(row)
            if len(self.cols["src_ip"]) >= self.options.batch_rows:
                yield self._flush()
        if self.icmp_rows:
            codes = self._icmp_codes()
            for row in self.icmp_rows:
                key = _icmp_key(row)
                code = codes.get(key)
                if code is None:
                    code = codes.get(key[:-1])
                self._append((*row[:_DST_PORT], code or 0, *row[_DST_PORT + 1 :]))
                if len(self.cols["src_ip"]) >= self.options.batch_rows:
                    yield self._flush()
        if self.cols["src_ip"]:
            yield self._flush()

    def _append(self, row: tuple[Any, ...]) -> None:
        self.count += 1
        if not 0 <= row[0] <= row[1] <= _MAX_MS:
            raise InputError(
                self.path,
                f"flow {self.count} ({row[2]} -> {row[3]})",
                f"packet timestamps out of range ({row[0]} .. {row[1]} ms since 1970); "
                "the capture is corrupt",
            )
        for name, value in zip(_COLUMNS, row, strict=True):
            self.cols[name].append(value)

    def _icmp_codes(self) -> dict[tuple[Any, ...], int]:
        """(flow key + first_seen) and, when unambiguous, flow key -> type*256+code."""
        bpf = "icmp or icmp6"
        if set(self.summary.linktypes) == {1}:  # Ethernet: 802.1Q tagged frames too
            bpf = "icmp or icmp6 or (vlan and (icmp or icmp6))"
        exact: dict[tuple[Any, ...], int] = {}
        loose: dict[tuple[Any, ...], int | None] = {}
        try:
            for flow in _meter(self.path, self.plain, self.cfg, bpf=bpf, icmp_plugin=True):
                code = getattr(flow.udps, "icmp_code", None)
                if code is None:
                    continue
                key = _icmp_key(_row(flow))
                exact[key] = code
                loose[key[:-1]] = None if key[:-1] in loose else code
        except InputError:
            # The filter does not compile for this link type: the first pass was complete,
            # so keep its flows with ICMP type/code unknown (0) rather than fail the file.
            return {}
        exact.update({k: v for k, v in loose.items() if v is not None})
        return exact

    def _flush(self) -> pa.Table:
        c = self.cols
        n = len(c["src_ip"])
        start = np.asarray(c["first_ms"], dtype=np.int64) * 1000
        end = np.asarray(c["last_ms"], dtype=np.int64) * 1000
        name = self.path.name
        sampling = self.options.sampling_rate or 1
        table = pa.table(
            {
                "ts_start": pa.array(start, TIMESTAMP),
                "ts_end": pa.array(end, TIMESTAMP),
                "src_addr": addr.parse_array(
                    c["src_ip"], path=str(self.path), column="src_addr", row_label="flow"
                ),
                "dst_addr": addr.parse_array(
                    c["dst_ip"], path=str(self.path), column="dst_addr", row_label="flow"
                ),
                "src_port": pa.array(c["src_port"], pa.uint16()),
                "dst_port": pa.array(c["dst_port"], pa.uint16()),
                "proto": pa.array(c["proto"], pa.uint8()),
                "tcp_flags": pa.array(c["tcp_flags"], pa.uint8()),
                "packets": pa.array(c["packets"], pa.int64()),
                "bytes": pa.array(c["bytes"], pa.int64()),
                "rev_packets": pa.array(c["rev_packets"], pa.int64()),
                "rev_bytes": pa.array(c["rev_bytes"], pa.int64()),
                "sampling_rate": pa.array(np.full(n, sampling, dtype=np.uint32)),
                "exporter": pa.array([self.options.exporter] * n, pa.string()),
                "observation_point": pa.array([name] * n, pa.string()),
                "app_label": pa.array(c["app_label"], pa.string()),
                "server_name": pa.array(c["server_name"], pa.string()),
                "dns_query": pa.array(c["dns_query"], pa.string()),
            }
        )
        self._reset()
        if self.passive is not None:
            # only flows nDPI left unnamed: a name seen in the flow itself is better evidence
            unnamed = pc.and_(pc.is_null(table["server_name"]), pc.is_null(table["dns_query"]))
            found = self.passive.names(
                table["src_addr"].combine_chunks(),
                table["dst_addr"].combine_chunks(),
                start,
                np.asarray(unnamed, dtype=np.bool_),
            )
            named = pc.coalesce(table["dns_query"], found)
            table = table.set_column(table.schema.get_field_index("dns_query"), "dns_query", named)
        return table


_COLUMNS = (
    "first_ms",
    "last_ms",
    "src_ip",
    "dst_ip",
    "src_port",
    "dst_port",
    "proto",
    "tcp_flags",
    "packets",
    "bytes",
    "rev_packets",
    "rev_bytes",
    "app_label",
    "server_name",
    "dns_query",
    "vlan",
    "tunnel",
)
_PROTO = _COLUMNS.index("proto")
_DST_PORT = _COLUMNS.index("dst_port")


def _row(flow: Any) -> tuple[Any, ...]:
    """One nfstream NFlow as a tuple in ``_COLUMNS`` order."""
    app = flow.application_name or None
    requested = flow.requested_server_name or None
    master = app.split(".", 1)[0] if app else ""
    server = requested if master in _SERVER_NAME_MASTERS else None
    query = requested if master in _DNS_MASTERS else None
    flags = 0
    if flow.protocol == 6:
        for name, bit in _FLAG_BITS:
            if getattr(flow, f"bidirectional_{name}_packets", 0):
                flags |= bit
    return (
        flow.bidirectional_first_seen_ms,
        flow.bidirectional_last_seen_ms,
        flow.src_ip,
        flow.dst_ip,
        flow.src_port,
        flow.dst_port,
        flow.protocol,
        flags,
        flow.src2dst_packets,
        flow.src2dst_bytes,
        flow.dst2src_packets,
        flow.dst2src_bytes,
        app,
        server,
        query,
        flow.vlan_id,
        flow.tunnel_id,
    )


def _icmp_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    c = {name: row[i] for i, name in enumerate(_COLUMNS)}
    return (c["src_ip"], c["dst_ip"], c["proto"], c["vlan"], c["tunnel"], c["first_ms"])


def _meter(
    path: Path, plain: Path, cfg: PcapSettings, *, bpf: str | None, icmp_plugin: bool
) -> Iterator[Any]:
    """Flows of one capture from an nfstream meter process we start and watch."""
    from nfstream.meter import meter_workflow
    from nfstream.utils import NFEvent, NFMode

    # fork is what nfstream itself uses on POSIX and starts in ~0.1 s; spawn elsewhere.
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    ctx: Any = multiprocessing.get_context(method)
    lock = ctx.Lock()
    lock.acquire()  # the meter releases it once ready (nfstream's start barrier)
    channel = ctx.Queue(maxsize=32767)
    tracker = [ctx.Value("I", 0), ctx.Value("I", 0), ctx.Value("I", 0)]
    udps = (_make_icmp_plugin(),) if icmp_plugin else ()
    kwargs = {
        "source": str(plain),
        "snaplen": 1536,  # live capture only
        "decode_tunnels": cfg.decode_tunnels,
        "bpf_filter": bpf,
        "promisc": False,
        "n_roots": 1,  # one meter: several would each re-read the whole file
        "root_idx": 0,
        "mode": NFMode.SINGLE_FILE,
        "idle_timeout": cfg.idle_timeout * 1000,
        "active_timeout": cfg.active_timeout * 1000,
        "accounting_mode": 1,  # layer-3 bytes
        "udps": udps,
        "n_dissections": cfg.dissections,
        "statistics": True,  # per-flag counters for tcp_flags
        "splt": 0,
        "channel": channel,
        "tracker": tracker,
        "lock": lock,
        "group_id": os.getpid(),
        "system_visibility_mode": 0,
        "socket_buffer_size": 0,
    }
    # meter_workflow is nfstream's internal entry point: refuse a version that changed it.
    if set(inspect.signature(meter_workflow).parameters) != set(kwargs):
        raise MissingDependency(
            "a supported nfstream (6.x) for pcap ingest", "pip install 'nfstream>=6.6,<7'"
        )
    proc = ctx.Process(target=meter_workflow, kwargs=kwargs, daemon=True)
    proc.start()
    try:
        while True:
            try:
                item = channel.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if proc.is_alive():
                    continue
                try:  # it may have exited right after its last message
                    item = channel.get(timeout=_POLL_SECONDS)
                except queue.Empty:
                    raise InputError(path, None, _death(proc.exitcode)) from None
            if item is None:
                break
            if item.id == NFEvent.ERROR:
                raise InputError(path, None, f"libpcap cannot read this capture: {item.message}")
            if item.id == NFEvent.FLOW:
                yield item
    finally:
        if proc.is_alive():
            proc.terminate()
        proc.join()
        channel.close()
        channel.cancel_join_thread()


def _death(code: int | None) -> str:
    how = f"signal {-code}" if code is not None and code < 0 else f"exit code {code}"
    return (
        f"the nDPI flow engine stopped ({how}) while reading this capture; "
        "the capture is probably corrupt"
    )


# --- ICMP type/code plugin ---------------------------------------------------------


def _make_icmp_plugin() -> Any:
    """An NFPlugin recording the first packet's ICMP type*256+code (built lazily: the
    plugin base class lives in nfstream, an optional dependency)."""
    from nfstream import NFPlugin

    class IcmpCode(NFPlugin):  # type: ignore[misc]
        def on_init(self, packet: Any, flow: Any) -> None:
            flow.udps.icmp_code = icmp_code(packet.ip_packet)

        def __reduce__(self) -> tuple[Any, tuple[()]]:
            # picklable for the spawn start method: rebuilt in the child
            return _make_icmp_plugin, ()

    return IcmpCode()


def icmp_code(ip: bytes) -> int | None:
    """``type*256 + code`` of the ICMP/ICMPv6 message in an IP packet, else None.

    >>> icmp_code(bytes.fromhex("4500001c0001000040010000" "0a0000010a000002" "0800f7ff"))
    2048
    """
    if len(ip) < 1:
        return None
    version = ip[0] >> 4
    if version == 4:
        ihl = (ip[0] & 0x0F) * 4
        if len(ip) < max(ihl, 20) + 2 or ip[9] != 1:
            return None
        if int.from_bytes(ip[6:8], "big") & 0x1FFF:  # a later fragment has no ICMP header
            return None
        return ip[ihl] * 256 + ip[ihl + 1]
    if version == 6 and len(ip) >= 40:
        nxt, off = ip[6], 40
        # hop-by-hop, routing, fragment, destination options: skip to the upper layer
        while nxt in (0, 43, 44, 60) and off + 8 <= len(ip):
            if nxt == 44:
                if int.from_bytes(ip[off + 2 : off + 4], "big") & 0xFFF8:
                    return None
                nxt, off = ip[off], off + 8
            else:
                nxt, off = ip[off], off + (ip[off + 1] + 1) * 8
        if nxt == 58 and off + 2 <= len(ip):
            return ip[off] * 256 + ip[off + 1]
    return None


__all__ = ["PcapReader", "PcapSettings", "icmp_code"]
