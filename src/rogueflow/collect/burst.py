"""A received burst of datagrams decoded at once: the common case without Python per datagram.

Most of what a collector receives is IPFIX messages and NetFlow v9 packets holding
one data set of a template already known. For those, the headers of the whole burst
are read with numpy, the sequence numbers of each stream are checked with numpy, and
the records of each (exporter, domain, template) are copied out of all their
datagrams by one gather, to be decoded with the others at the next flush.

Everything else — templates, options, several sets, unknown templates, other
versions, anything malformed — goes, one datagram at a time and in arrival order,
through :meth:`Decoder.feed`. Such a datagram is a barrier: the datagrams before it
are decoded first, and the ones after it are classified again if it changed the
templates. The result is exactly what feeding every datagram to ``feed`` gives
(``tests/test_collect_burst.py`` checks that).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from rogueflow.collect.recv import Burst

if TYPE_CHECKING:
    from rogueflow.collect.decoder import Decoder, Domain
    from rogueflow.collect.templates import Template

I64 = npt.NDArray[np.int64]

_HEAD = 24
# IPFIX message header + first set header; NetFlow v9 packet header + first flowset header
_IPFIX = np.dtype(
    {
        "names": ["length", "export", "seq", "domain", "sid", "slen"],
        "formats": [">u2", ">u4", ">u4", ">u4", ">u2", ">u2"],
        "offsets": [2, 4, 8, 12, 16, 18],
        "itemsize": _HEAD,
    }
)
_V9 = np.dtype(
    {
        "names": ["uptime", "secs", "seq", "source", "sid", "slen"],
        "formats": [">u4", ">u4", ">u4", ">u4", ">u2", ">u2"],
        "offsets": [4, 8, 12, 16, 20, 22],
        "itemsize": _HEAD,
    }
)
_NO_KEY = np.uint64(2**64 - 1)
#: below this many datagrams one by one is cheaper than the numpy calls of a burst
FEW = 16
_SEQ_SPACE = 2**32


def decode_burst(dec: Decoder, burst: Burst, now: float) -> None:
    """Decode every datagram of ``burst``, received at ``now`` (Unix seconds)."""
    n = len(burst)
    if n == 0:
        return
    dec.now = now
    if n < FEW:
        _one_by_one(dec, burst, range(n), now)
        return
    lengths = burst.lengths
    # bytes past a datagram's end are stale, but only datagrams of at least 20 (IPFIX) or
    # 24 (v9) bytes are taken here, and every field read lies within those
    width = min(_HEAD, burst.buf.shape[1])
    head = np.zeros((n, _HEAD), dtype=np.uint8)
    head[:, :width] = burst.buf[:n, :width]
    version = (head[:, 0].astype(np.int64) << 8) | head[:, 1]
    ipfix = head.view(_IPFIX)[:, 0]
    v9 = head.view(_V9)[:, 0]
    # one data set filling the whole message: the only shape taken here
    is10 = (
        (version == 10)
        & (lengths >= 20)
        & (ipfix["length"] == lengths)
        & (ipfix["sid"] >= 256)
        & (ipfix["slen"] == lengths - 16)
    )
    is9 = (version == 9) & (lengths >= 24) & (v9["sid"] >= 256) & (v9["slen"] == lengths - 20)
    cand = is10 | is9
    if not cand.any():
        _one_by_one(dec, burst, range(n), now)
        return
    f = _Fields(
        domain=np.where(is10, ipfix["domain"], v9["source"]).astype(np.int64),
        seq=np.where(is10, ipfix["seq"], v9["seq"]).astype(np.int64),
        export_ms=np.where(is10, ipfix["export"], v9["secs"]).astype(np.int64) * 1000,
        uptime=np.where(is10, -1, v9["uptime"].astype(np.int64)),
        body=np.where(is10, 16, 20),  # where the (only) set starts
        body_len=np.where(is10, ipfix["slen"], v9["slen"]).astype(np.int64) - 4,
        v9=is9,
    )
    tid = np.where(is10, ipfix["sid"], v9["sid"]).astype(np.uint64)
    key = (
        (burst.exporters.astype(np.uint64) << np.uint64(49))
        | (is9.astype(np.uint64) << np.uint64(48))
        | (f.domain.astype(np.uint64) << np.uint64(16))
        | tid
    )
    key = np.where(cand, key, _NO_KEY)
    ukeys, kidx = np.unique(key, return_inverse=True)
    kidx = kidx.reshape(-1)
    pos, generation = 0, -1
    barriers: I64 = np.zeros(0, dtype=np.int64)
    known: list[tuple[Template, Domain] | None] = []
    while pos < n:
        if dec.generation != generation:  # templates changed: classify the rest again
            generation = dec.generation
            known = [_usable(dec, burst.names, int(k)) for k in ukeys.tolist()]
            ok = np.array([k is not None for k in known], dtype=bool)
            size = np.array([1 if k is None else k[0].fixed_len for k in known], dtype=np.int64)
            barriers = np.flatnonzero(~ok[kidx])
        b = int(np.searchsorted(barriers, pos))
        stop = int(barriers[b]) if b < len(barriers) else n
        if stop > pos:
            _fast(dec, burst, f, kidx, known, size, pos, stop)
        if stop < n:
            dec.feed(burst.datagram(stop), burst.names[burst.exporters[stop]], now)
        pos = stop + 1


def _one_by_one(dec: Decoder, burst: Burst, which: range, now: float) -> None:
    for i in which:
        dec.feed(burst.datagram(i), burst.names[burst.exporters[i]], now)


class _Fields:
    """Per-datagram header fields of a burst (meaningful where the datagram is a candidate)."""

    def __init__(self, **arrays: Any) -> None:
        self.domain: I64 = arrays["domain"]
        self.seq: I64 = arrays["seq"]
        self.export_ms: I64 = arrays["export_ms"]
        self.uptime: I64 = arrays["uptime"]
        self.body: I64 = arrays["body"]
        self.body_len: I64 = arrays["body_len"]
        self.v9: npt.NDArray[np.bool_] = arrays["v9"]


def _usable(dec: Decoder, names: list[str], key: int) -> tuple[Template, Domain] | None:
    """The template of a burst key if its data sets can be decoded here."""
    if key == int(_NO_KEY):
        return None
    version = 9 if (key >> 48) & 1 else 10
    domain = dec.domains.get((names[key >> 49], version, (key >> 16) & 0xFFFFFFFF))
    if domain is None:
        return None
    tpl = dec.template(domain, key & 0xFFFF)
    if tpl is None or tpl.variable or tpl.options or not tpl.has_flow_fields():
        return None
    return tpl, domain


def _fast(
    dec: Decoder,
    burst: Burst,
    f: _Fields,
    kidx: I64,
    known: list[tuple[Template, Domain] | None],
    size: I64,
    a: int,
    b: int,
) -> None:
    """Datagrams ``a:b``, every one a data set of a usable template."""
    exporters = burst.exporters[a:b]
    sizes = np.bincount(exporters, weights=burst.lengths[a:b])
    for e in np.flatnonzero(sizes).tolist():
        st = dec.stats.of(burst.names[e])
        st.datagrams += int(np.count_nonzero(exporters == e))
        st.bytes += int(sizes[e])
    keys = kidx[a:b]
    counts = f.body_len[a:b] // size[keys]  # records in each datagram's data set
    # batches are queued in order of their first records, as feeding one by one would
    # (a data set without records queues nothing)
    having = keys[counts > 0]
    if len(having) == 0:
        groups: list[int] = []
    elif (having == having[0]).all():
        groups = [int(having[0])]
    else:
        uniq, first = np.unique(having, return_index=True)
        groups = uniq[np.argsort(first)].tolist()
    everyone = bool((keys == keys[0]).all())
    for g in groups:
        entry = known[g]
        assert entry is not None
        tpl, domain = entry
        idx = np.arange(a, b) if everyone else a + np.flatnonzero(keys == g)
        k = counts[idx - a]
        records = _gather(burst.buf, idx, f.body[idx] + 4, k, tpl.fixed_len)
        name = burst.names[int(exporters[idx[0] - a])]
        v9 = bool(f.v9[idx[0]])
        dkey = (name, 9 if v9 else 10, int(f.domain[idx[0]]))
        ctx = np.stack([k, f.export_ms[idx], f.uptime[idx]], axis=1)
        dec.add_block(dkey, domain, tpl, records, ctx)
    _sequences(dec, burst, f, a, b, counts)


def _gather(
    buf: npt.NDArray[np.uint8], idx: I64, start: I64, k: I64, size: int
) -> npt.NDArray[np.uint8]:
    """The ``k[i]`` records of ``size`` bytes at ``start[i]`` of slot ``idx[i]``, packed."""
    total = int(k.sum())
    if total == 0:
        return np.zeros(0, dtype=np.uint8)
    s0, k0 = int(start[0]), int(k[0])
    if (start == s0).all() and (k == k0).all():  # the usual case: one slice of every slot
        if idx[-1] - idx[0] + 1 == len(idx):
            rows = buf[int(idx[0]) : int(idx[-1]) + 1, s0 : s0 + k0 * size]
        else:
            rows = buf[idx, s0 : s0 + k0 * size]
        return np.ascontiguousarray(rows).reshape(-1)
    first = np.cumsum(k) - k
    nth = np.arange(total, dtype=np.int64) - np.repeat(first, k)
    offsets = np.repeat(idx * buf.shape[1] + start, k) + nth * size
    flat = buf.reshape(-1)
    windows = np.lib.stride_tricks.as_strided(
        flat, shape=(len(flat) - size + 1, size), strides=(1, 1), writeable=False
    )
    return windows[offsets].reshape(-1)


def _sequences(dec: Decoder, burst: Burst, f: _Fields, a: int, b: int, counts: I64) -> None:
    """Sequence numbers of datagrams ``a:b``, per stream, as SequenceTracker.check would."""
    exporters = burst.exporters[a:b]
    v9 = f.v9[a:b]
    domain = f.domain[a:b]
    stream = (exporters << 33) | (v9.astype(np.int64) << 32) | domain
    first = stream[0]
    streams = [int(first)] if (stream == first).all() else np.unique(stream).tolist()
    for s in streams:
        sel = np.flatnonzero(stream == s) if len(streams) > 1 else np.arange(b - a)
        seq = f.seq[a:b][sel]
        is_v9 = bool(v9[sel[0]])
        advance = np.ones(len(sel), dtype=np.int64) if is_v9 else counts[sel]
        name = burst.names[s >> 33]
        key = (name, 9 if is_v9 else 10, s & 0xFFFFFFFF)
        expected = (seq + advance) % _SEQ_SPACE
        want = dec.sequences.expected.get(key)
        dec.sequences.expected[key] = int(expected[-1])
        gaps = (seq[1:] - expected[:-1]) % _SEQ_SPACE
        if want is not None:
            gaps = np.concatenate([[(int(seq[0]) - want) % _SEQ_SPACE], gaps])
        lost = int(gaps[gaps < _SEQ_SPACE // 2].sum())
        resets = int(np.count_nonzero(gaps >= _SEQ_SPACE // 2))
        st = dec.stats.of(name)
        if is_v9:
            st.lost_datagrams += lost
        else:
            st.lost_records += lost
        st.sequence_resets += resets
