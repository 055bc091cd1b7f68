"""MRT archives read through bgpdump, parsed as columns.

bgpdump (RIPE NCC, Debian package ``bgpdump``) decodes every MRT record type that
collectors write: TABLE_DUMP, TABLE_DUMP_V2 with ADD-PATH and RIB_GENERIC, BGP4MP
and BGP4MP_ET updates with 2- and 4-byte ASNs. We do not decode BGP ourselves; we
frame the file (:mod:`rogueflow.bgp.frame`), hand chunks of records to a few
bgpdump processes in parallel and parse their one-line output with Arrow.

Each chunk is preceded by a marker record (a STATE_CHANGE from the reserved AS
4294967295, its timestamp the chunk number), and bgpdump's ``-p`` counter numbers
the records it decoded, so every route line is tied to its MRT record number
exactly; a record bgpdump cannot decode shows up as a gap in that count and is
reported by number. Batches come out in no particular order; ``record`` orders
them as the file did.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rogueflow import addr
from rogueflow.bgp.frame import HEADER, Framer, split_records
from rogueflow.errors import InputError, MissingDependency

MARKER_AS = 0xFFFFFFFF  # reserved (RFC 7300): never a real peer
_END = 0xFFFFFFFF  # chunk number of the marker that closes a worker's stream
_CHUNK_BYTES = 1 << 21
_SMALL_FILE = 1 << 18  # below this (compressed) size one bgpdump is quicker than two
_STDERR_KEEP = 64

ROUTES = pa.schema(
    [
        pa.field("ts", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("record", pa.uint64(), nullable=False),  # MRT record number, 1-based
        pa.field("mrt_type", pa.string(), nullable=False),  # as bgpdump names it
        pa.field("kind", pa.string(), nullable=False),  # B (RIB), A, W, STATE
        pa.field("peer_addr", pa.binary(16), nullable=False),
        pa.field("peer_asn", pa.uint32(), nullable=False),
        pa.field("prefix", pa.string()),
        pa.field("prefix_lo", pa.binary(16)),
        pa.field("prefix_hi", pa.binary(16)),
        pa.field("prefix_len", pa.uint8()),  # as written: 0-32 for IPv4
        pa.field("path_id", pa.uint32()),  # ADD-PATH
        pa.field("as_path", pa.string()),
        pa.field("origin_asn", pa.uint32()),
        pa.field("upstream_asn", pa.uint32()),  # the AS before the origin, prepends skipped
        pa.field("origin", pa.string()),  # IGP, EGP, INCOMPLETE
        pa.field("next_hop", pa.string()),
        pa.field("local_pref", pa.uint32()),
        pa.field("med", pa.uint32()),
        pa.field("communities", pa.string()),
        pa.field("atomic_aggregate", pa.bool_()),
        pa.field("aggregator", pa.string()),
        pa.field("old_state", pa.uint8()),  # STATE rows: BGP FSM states 1-6
        pa.field("new_state", pa.uint8()),
    ]
)

# bgpdump -m -p: B and A lines have 16 fields; W, STATE and ADD-PATH lines go the slow way
_NAMES = [
    "mrt", "p", "ts", "kind", "peer", "peer_as", "prefix", "path", "origin", "nh",
    "lp", "med", "comm", "atomic", "aggr", "end",
]  # fmt: skip
_TYPES = {n: pa.string() for n in _NAMES} | {"p": pa.int64(), "peer_as": pa.int64()}


def bgpdump_binary(override: str | None = None) -> str:
    found = shutil.which(override or "bgpdump")
    if found is None:
        raise MissingDependency("bgpdump (needed to read MRT files)", "apt-get install bgpdump")
    return found


def marker(number: int) -> bytes:
    """A BGP4MP STATE_CHANGE_AS4 from AS 4294967295 whose timestamp is ``number``."""
    body = struct.pack(">IIHH4s4sHH", MARKER_AS, 0, 0, 1, bytes(4), bytes(4), 0, 0)
    return HEADER.pack(number, 16, 5, len(body)) + body


@dataclass
class _Chunk:
    number: int
    worker: int
    numbers: list[int] = field(default_factory=list)  # its records (no PIT), in order
    offsets: list[int] = field(default_factory=list)
    data: bytes = b""  # those records, back to back
    pit: bytes = b""  # the peer index table in force for it
    decoded: list[int] | None = None  # record numbers bgpdump decoded, once known


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    stdin: IO[bytes]
    marks_p: list[int] = field(default_factory=list)  # -p of each marker seen, ascending
    marks_chunk: list[int] = field(default_factory=list)
    slow: list[str] = field(default_factory=list)  # lines of other shapes, filled by the parser
    pending: list[pa.Table] = field(default_factory=list)  # B/A lines, in -p order
    pending_odd: list[pa.Table] = field(default_factory=list)  # other lines, any order
    horizon: int = -1  # every line with a smaller -p has been absorbed
    freed: int = 0  # markers whose chunks are released
    stderr: list[str] = field(default_factory=list)


class MrtReader:
    """Iterates Arrow batches (schema :data:`ROUTES`) of one MRT file.

    After iteration ``problems`` lists what could not be read (each naming the file,
    record number and byte offset); everything else was read.
    """

    def __init__(self, path: Path, *, workers: int | None, bgpdump: str | None) -> None:
        self.path = path
        self.binary = bgpdump_binary(bgpdump)
        size = path.stat().st_size if path.exists() else 0
        if workers is None:
            workers = 1 if size < _SMALL_FILE else max(1, min(2, os.cpu_count() or 1))
        self.n_workers = workers
        self.problems: list[InputError] = []
        self.records = 0
        self.routes = 0
        self._chunks: dict[int, _Chunk] = {}
        self._lock = threading.Lock()
        self._framer = Framer(path)

    # ---- plumbing ----------------------------------------------------------------

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        if not self.path.exists():
            raise InputError(self.path, None, "no such file or directory")
        out: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(maxsize=8)
        workers = [self._spawn(i) for i in range(self.n_workers)]
        threads = [threading.Thread(target=self._feed, args=(workers, out), daemon=True)]
        for w in workers:
            threads.append(threading.Thread(target=self._drain, args=(w, out), daemon=True))
            threads.append(threading.Thread(target=self._stderr, args=(w,), daemon=True))
        for t in threads:
            t.start()
        done = 0
        try:
            while done < 1 + self.n_workers:
                item = out.get()
                if item is None:
                    done += 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    self.routes += item.num_rows
                    yield item
        finally:
            for w in workers:
                if w.proc.poll() is None:
                    w.proc.kill()
                w.proc.wait()
            for t in threads:
                t.join(timeout=5)
            for w in workers:
                for pipe in (w.proc.stdout, w.proc.stderr):
                    if pipe is not None:
                        pipe.close()
        self.records = self._framer.records
        self.problems = self._framer.problems + self.problems
        self.problems.sort(key=_problem_order)

    def _command(self) -> list[str]:
        """bgpdump reading stdin: one line per route (-m), -p numbering, warnings on stderr."""
        return [self.binary, "-m", "-p", "-v", "-"]

    def _spawn(self, index: int) -> _Worker:
        proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_env(),
        )
        assert proc.stdin is not None
        return _Worker(index, proc, proc.stdin)

    def _feed(self, workers: list[_Worker], out: queue.Queue[Any]) -> None:
        """Frame the file; send chunks of records, each after a marker, round robin."""
        try:
            pit = b""
            chunk = _Chunk(0, 0)
            parts: list[bytes] = []
            size = 0
            for rec in self._framer:
                if rec.is_peer_index:
                    chunk = self._send(chunk, parts, workers, pit)
                    parts, size = [], 0
                    pit = rec.data  # the latest table rules what follows
                    chunk.pit = pit
                    for w in workers:
                        _write(w, rec.data)
                    continue
                chunk.numbers.append(rec.number)
                chunk.offsets.append(rec.offset)
                parts.append(rec.data)
                size += len(rec.data)
                if size >= _CHUNK_BYTES:
                    chunk = self._send(chunk, parts, workers, pit)
                    parts, size = [], 0
            self._send(chunk, parts, workers, pit)
            for w in workers:
                _write(w, marker(_END))
        except BaseException as exc:  # handed to the consumer
            out.put(exc)
        finally:
            for w in workers:
                with contextlib.suppress(OSError):
                    w.stdin.close()
            out.put(None)

    def _send(
        self, chunk: _Chunk, parts: list[bytes], workers: list[_Worker], pit: bytes
    ) -> _Chunk:
        """Hand ``chunk`` to its worker (if it has records); return the next, empty one."""
        if not chunk.numbers:
            return chunk
        chunk.data = b"".join(parts)
        with self._lock:
            self._chunks[chunk.number] = chunk
        _write(workers[chunk.worker], marker(chunk.number) + chunk.data)
        n = chunk.number + 1
        return _Chunk(n, n % len(workers), pit=pit)

    def _stderr(self, w: _Worker) -> None:
        assert w.proc.stderr is not None
        for raw in w.proc.stderr:
            message = _warning(raw.decode("utf-8", "replace"))
            if message and len(w.stderr) < _STDERR_KEEP:
                w.stderr.append(message)

    def _drain(self, w: _Worker, out: queue.Queue[Any]) -> None:
        """Parse one bgpdump's output as it arrives; hand on the rows of closed chunks."""
        try:
            assert w.proc.stdout is not None

            def odd(row: Any) -> str:
                w.slow.append(row.text)
                return "skip"

            reader = pacsv.open_csv(
                w.proc.stdout,
                read_options=pacsv.ReadOptions(column_names=_NAMES, block_size=1 << 22),
                parse_options=pacsv.ParseOptions(
                    delimiter="|",
                    quote_char=False,
                    escape_char=False,
                    double_quote=False,
                    invalid_row_handler=odd,
                ),
                convert_options=pacsv.ConvertOptions(column_types=_TYPES),
            )
            for batch in reader:
                self._absorb(w, pa.Table.from_batches([batch]), out)
            self._absorb(w, None, out)
            rc = w.proc.wait()
            if rc != 0:
                raise InputError(
                    self.path, None, f"bgpdump exited with status {rc}: {'; '.join(w.stderr)}"
                )
        except BaseException as exc:  # handed to the consumer
            out.put(exc)
        finally:
            out.put(None)

    # ---- lines → routes -----------------------------------------------------------

    def _absorb(self, w: _Worker, fast: pa.Table | None, out: queue.Queue[Any]) -> None:
        """Take one parsed block (None at the end) plus the odd lines parsed with it."""
        slow, w.slow = w.slow, []
        if fast is not None and fast.num_rows:
            # blocks arrive in order, their odd lines maybe earlier: every line below the
            # highest -p of a block has been seen (markers above it may still come)
            w.horizon = max(w.horizon, int(pc.max(fast["p"]).as_py()))
            w.pending.append(_lines_table(fast, [], self.path))
        if slow:
            odd = _lines_table(None, slow, self.path)
            is_mark = pc.and_(
                pc.equal(odd["kind"], "STATE"), pc.equal(odd["peer_as"], MARKER_AS)
            ).to_numpy(zero_copy_only=False)
            p = odd["p"].to_numpy()[is_mark]
            chunks = pc.cast(odd["ts_text"], pa.int64()).to_numpy()[is_mark]
            for i in np.argsort(p):
                at = int(np.searchsorted(w.marks_p, p[i]))
                w.marks_p.insert(at, int(p[i]))
                w.marks_chunk.insert(at, int(chunks[i]))
            if not is_mark.all():
                w.pending_odd.append(odd.filter(~is_mark))
        if fast is None:
            w.horizon = np.iinfo(np.int64).max
        if w.marks_p:
            # lines before the latest marker belong to chunks whose extent is known
            last = w.marks_p[-1]
            keep: list[pa.Table] = []
            for t in w.pending:  # B/A lines are in -p order: a zero-copy cut
                cut = int(np.searchsorted(t["p"].to_numpy(), last))
                if cut:
                    self._emit(w, t.slice(0, cut), out)
                if cut < t.num_rows:
                    keep.append(t.slice(cut))
            w.pending = keep
            if w.pending_odd:
                odd = pa.concat_tables(w.pending_odd)
                closed = odd["p"].to_numpy() < last
                w.pending_odd = [odd.filter(~closed)] if not closed.all() else []
                if closed.any():
                    self._emit(w, odd.filter(closed), out)
        # release chunks whose every line has been seen (bounded memory)
        while w.freed + 1 < len(w.marks_p) and w.marks_p[w.freed + 1] <= w.horizon:
            with self._lock:
                self._chunks.pop(w.marks_chunk[w.freed], None)
            w.freed += 1

    def _emit(self, w: _Worker, rows: pa.Table, out: queue.Queue[Any]) -> None:
        batch = self._routes(w, rows)
        if batch.num_rows:
            out.put(batch)

    def _routes(self, w: _Worker, rows: pa.Table) -> pa.RecordBatch:
        p = rows["p"].to_numpy()
        marks = np.asarray(w.marks_p, dtype=np.int64)
        at = np.searchsorted(marks, p, side="right") - 1
        if (at < 0).any():
            raise InputError(self.path, None, "bgpdump printed a route before any marker")
        record = np.zeros(len(p), dtype=np.uint64)
        for m in np.unique(at):
            with self._lock:
                chunk = self._chunks.get(w.marks_chunk[m])
            if chunk is None or m + 1 >= len(marks):
                raise InputError(self.path, None, "bgpdump printed a route after the last marker")
            if chunk.decoded is None:
                numbers = chunk.numbers
                if marks[m + 1] - marks[m] - 1 != len(numbers):
                    numbers = self._locate(chunk)
                chunk.decoded = numbers
            sel = at == m
            idx = p[sel] - marks[m] - 1
            if len(chunk.decoded) == 0 or idx.max() >= len(chunk.decoded):
                raise InputError(
                    self.path,
                    f"record {chunk.numbers[0]}",
                    "bgpdump's output does not match the records it was given",
                )
            record[sel] = np.asarray(chunk.decoded, dtype=np.uint64)[idx]
        return _finish(rows, record, self.path)

    def _locate(self, chunk: _Chunk) -> list[int]:
        """The records of ``chunk`` bgpdump decodes; the others become problems."""
        records = split_records(chunk.data, chunk.numbers, chunk.offsets)
        parts = [chunk.pit]
        for i, rec in enumerate(records):
            parts += [marker(i), rec.data]
        parts.append(marker(len(records)))
        run = subprocess.run(
            self._command(), input=b"".join(parts), capture_output=True, timeout=300, env=_env()
        )
        marks: list[tuple[int, int]] = []
        for line in run.stdout.decode("utf-8", "replace").splitlines():
            f = line.split("|")
            if len(f) == 8 and f[3] == "STATE" and f[5] == str(MARKER_AS):
                marks.append((int(f[2]), int(f[1])))
        got = dict(marks)
        lines = run.stderr.decode("utf-8", "replace").splitlines()
        why = "; ".join(sorted({m for m in map(_warning, lines) if m})[:3])
        ok = []
        for i, rec in enumerate(records):
            if i in got and i + 1 in got and got[i + 1] - got[i] == 2:
                ok.append(rec.number)
            else:
                with self._lock:
                    self.problems.append(
                        InputError(
                            self.path,
                            f"record {rec.number} (byte {rec.offset})",
                            "bgpdump could not decode this record"
                            + (f" ({why})" if why else "")
                            + "; skipped",
                        )
                    )
        return ok


def _env() -> dict[str, str]:
    return {**os.environ, "TZ": "UTC", "LC_ALL": "C"}  # bgpdump formats times and numbers


def _warning(line: str) -> str:
    """bgpdump's message without its log prefix; "" for blank lines and [info] chatter."""
    line = line.strip()
    if not line or "[info]" in line:
        return ""
    return line.split("] ", 1)[-1]


def _write(w: _Worker, data: bytes) -> None:
    try:
        w.stdin.write(data)
    except BrokenPipeError:
        raise InputError(None, None, f"bgpdump stopped reading: {'; '.join(w.stderr)}") from None


def _problem_order(e: InputError) -> int:
    where = e.where or ""
    digits = where.split()[1] if where.startswith("record ") else ""
    return int(digits) if digits.isdigit() else 0


def read_mrt(
    path: str | os.PathLike[str], *, workers: int | None = None, bgpdump: str | None = None
) -> MrtReader:
    """Routes of an MRT file (plain, gzip, bzip2 or xz) as Arrow batches."""
    return MrtReader(Path(path), workers=workers, bgpdump=bgpdump)


# ---- text → columns (vectorised) ------------------------------------------------------


def _lines_table(fast: pa.Table | None, slow: list[str], path: Path) -> pa.Table:
    """bgpdump lines as one table of text columns (+ path_id and FSM states)."""
    cols: dict[str, list[Any]] = {n: [] for n in (*_NAMES, "path_id", "old", "new")}
    for text in slow:
        f = text.split("|")
        kind = f[3] if len(f) > 3 else ""
        ap = f[0].endswith("_AP")
        row: dict[str, str | None]
        if kind == "STATE" and len(f) == 8:
            row = {**dict(zip(_NAMES[:6], f[:6], strict=True)), "old": f[6], "new": f[7]}
        elif kind == "W" and len(f) == 7 + ap:
            row = {**dict(zip(_NAMES[:7], f[:7], strict=True)), "path_id": f[7] if ap else None}
        elif kind in ("A", "B") and ap and len(f) == 17:
            row = {**dict(zip(_NAMES[:7], f[:7], strict=True)), "path_id": f[7]}
            row.update(zip(_NAMES[7:], f[8:], strict=True))
        else:
            raise InputError(path, None, f"bgpdump printed a line of unknown shape: {text[:200]!r}")
        for k in cols:
            cols[k].append(row.get(k))
    slow_t = pa.table(
        {
            k: pa.array(v, pa.string())
            if k not in ("p", "peer_as")
            else pa.array([int(x) for x in v], pa.int64())
            for k, v in cols.items()
        }
    )
    if fast is None or fast.num_rows == 0:
        table = slow_t
    else:
        n = fast.num_rows
        nulls = pa.nulls(n, pa.string())
        fast = fast.append_column("path_id", nulls).append_column("old", nulls)
        table = pa.concat_tables([fast.append_column("new", nulls), slow_t])
    return table.rename_columns([c if c != "ts" else "ts_text" for c in table.column_names])


def _uint(col: pa.Array, dtype: pa.DataType) -> pa.Array:
    text = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    return pc.cast(pc.cast(text, pa.int64()), dtype)


def _per_value(col: pa.Array, fn: Any) -> Any:
    """``fn`` applied once per distinct value of ``col`` (a RIB repeats prefixes, paths,
    peers and times many times over), then spread back to every row."""
    enc = pc.dictionary_encode(col)
    out = fn(enc.dictionary)
    idx = enc.indices
    if isinstance(out, tuple):
        return tuple(pc.take(o, idx) for o in out)
    return pc.take(out, idx)


def _micros(ts: pa.Array) -> pa.Array:
    # BGP4MP_ET prints seconds.microseconds; float64 holds those to well under 1 µs
    return pc.cast(pc.round(pc.multiply(pc.cast(ts, pa.float64()), 1e6)), pa.int64())


def _finish(t: pa.Table, record: np.ndarray[Any, Any], path: Path) -> pa.RecordBatch:
    t = t.combine_chunks()
    col = {name: t[name].combine_chunks() for name in t.column_names}
    ts = _per_value(col["ts_text"], _micros)
    peer = _per_value(col["peer"], lambda v: _address(v, path))
    lo, hi, plen = _per_value(col["prefix"], lambda v: _prefixes(v, path))
    origin_asn, upstream = _per_value(col["path"], _path_ends)
    arrays = {
        "ts": pc.cast(ts, pa.timestamp("us", tz="UTC")),
        "record": pa.array(record, pa.uint64()),
        "mrt_type": col["mrt"],
        "kind": col["kind"],
        "peer_addr": peer,
        "peer_asn": pc.cast(col["peer_as"], pa.uint32()),
        "prefix": col["prefix"],
        "prefix_lo": lo,
        "prefix_hi": hi,
        "prefix_len": plen,
        "path_id": _uint(col["path_id"], pa.uint32()),
        "as_path": col["path"],
        "origin_asn": origin_asn,
        "upstream_asn": upstream,
        "origin": col["origin"],
        "next_hop": col["nh"],
        "local_pref": _per_value(col["lp"], lambda v: _uint(v, pa.uint32())),
        "med": _per_value(col["med"], lambda v: _uint(v, pa.uint32())),
        "communities": col["comm"],
        "atomic_aggregate": pc.equal(col["atomic"], "AG"),
        "aggregator": col["aggr"],
        "old_state": _uint(col["old"], pa.uint8()),
        "new_state": _uint(col["new"], pa.uint8()),
    }
    return pa.RecordBatch.from_arrays([arrays[f.name] for f in ROUTES], schema=ROUTES)


def _address(values: pa.Array, path: Path) -> pa.Array:
    parsed = addr.parse_or_first_bad(values)
    if isinstance(parsed, int):
        raise InputError(path, None, f"bgpdump printed a bad peer address {values[parsed]}")
    return parsed


def _prefixes(prefix: pa.Array, path: Path) -> tuple[pa.Array, pa.Array, pa.Array]:
    """CIDR text → (first, last address as 16 bytes, length as written); null stays null."""
    has = pc.is_valid(prefix).to_numpy(zero_copy_only=False)
    parts = pc.split_pattern(pc.fill_null(prefix, "::/0"), "/", max_splits=1)
    length = pc.cast(pc.list_element(parts, 1), pa.int64()).to_numpy()
    raw = _address(pc.list_element(parts, 0), path)
    m = addr.to_matrix(raw)
    v4 = addr.is_ipv4(raw)
    bad = (length < 0) | (length > np.where(v4, 32, 128))
    if bad.any():
        raise InputError(path, None, f"bgpdump printed a bad prefix {prefix[int(np.argmax(bad))]}")
    bits = np.where(v4, length + 96, length)
    keep = np.clip(bits[:, None] - 8 * np.arange(16)[None, :], 0, 8)
    netmask = (0xFF00 >> keep).astype(np.uint8)  # 'keep' leading ones in each byte
    lo = m & netmask
    hi = lo | ~netmask
    mask = pa.array(~has)
    none = pa.scalar(None, pa.binary(16))
    lo_a = pc.if_else(mask, none, addr.from_bytes_matrix(lo))
    hi_a = pc.if_else(mask, none, addr.from_bytes_matrix(hi))
    plen = pa.array(np.where(has, length, 0).astype(np.uint8), mask=~has)
    return lo_a, hi_a, plen


def _path_ends(path: pa.Array) -> tuple[pa.Array, pa.Array]:
    """(origin AS, the distinct AS before it) of each AS path, vectorised.

    Prepends are skipped (``3 7 7 7`` → origin 7, upstream 3). A path ending in an
    AS_SET of one member uses that member; a larger set has no single origin.
    """
    n = len(path)
    tokens = pc.split_pattern(pc.fill_null(path, ""), " ")
    offsets = tokens.offsets.to_numpy()
    values = pc.replace_substring_regex(tokens.values, r"^\{(\d+)\}$", r"\1")
    digits = pc.match_substring_regex(values, r"^\d{1,10}$")
    asn = pc.cast(pc.if_else(digits, values, "-1"), pa.int64()).to_numpy().copy()
    asn[asn > 0xFFFFFFFF] = -1
    lengths = np.diff(offsets)
    nonempty = lengths > 0
    origin = np.full(n, -1, dtype=np.int64)
    origin[nonempty] = asn[offsets[1:][nonempty] - 1]
    row = np.repeat(np.arange(n), lengths)
    differs = (asn != origin[row]) if len(asn) else np.zeros(0, dtype=bool)
    pos = np.where(differs, np.arange(len(asn)), -1)
    last = np.full(n, -1, dtype=np.int64)
    if len(asn):
        starts = np.minimum(offsets[:-1], len(asn) - 1)
        last = np.maximum.reduceat(pos, starts)
        last[~nonempty] = -1
        last[last < offsets[:-1]] = -1  # reduceat spilled into the next row's tokens
    up = np.where(last >= 0, asn[np.maximum(last, 0)] if len(asn) else -1, -1)
    up[origin < 0] = -1
    return (
        pa.array(origin.astype(np.uint32), mask=origin < 0),
        pa.array(up.astype(np.uint32), mask=up < 0),
    )
