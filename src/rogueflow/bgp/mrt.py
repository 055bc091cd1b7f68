"""MRT archives read through bgpdump, parsed as columns.

bgpdump (RIPE NCC, Debian package ``bgpdump``) decodes every MRT record type that
collectors write: TABLE_DUMP, TABLE_DUMP_V2 with ADD-PATH and RIB_GENERIC, BGP4MP
and BGP4MP_ET updates with 2- and 4-byte ASNs. We do not decode BGP ourselves; we
frame the file (:mod:`rogueflow.bgp.frame`), hand chunks of records to a few
bgpdump processes in parallel and parse their one-line output with Arrow.

Each chunk is preceded by a marker record (a STATE_CHANGE from the reserved AS
4294967295 and a random per-reader IPv6 peer address, its timestamp the chunk number),
and bgpdump's ``-p`` counter numbers every record it decoded, also those that print
nothing (peer index tables, KEEPALIVE, OPEN, End-of-RIB). So every route line is tied
to its MRT record exactly, and a chunk is taken as clean only when its count of decoded
records is right, bgpdump warned about nothing while reading it (stderr goes to a file,
checked each time a chunk closes), and every line parses. Any other chunk is read again
carefully (:meth:`MrtReader._careful`): a marker before every record, bgpdump's output
line-buffered and merged with its warnings, so each warning, odd line, gap or crash
names its record. Such records become problems and give no routes (bgpdump prints
garbage such as ``! Error !`` for a corrupt AS path); every other record is kept. A
bgpdump that crashes or prints unreadable output is given up: its unfinished chunks and
all later ones of that worker are read carefully. Batches come out in no particular
order; ``record`` orders them as the file did.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import secrets
import shutil
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rogueflow.bgp.frame import HEADER, Framer, Record, split_records
from rogueflow.bgp.lines import NAMES, BadRows, finish, lines_table
from rogueflow.bgp.lines import ROUTES as ROUTES  # re-exported: the schema of our batches
from rogueflow.errors import InputError, MissingDependency

MARKER_AS = 0xFFFFFFFF  # reserved (RFC 7300); the random peer address makes it ours
_END = 0xFFFFFFFF  # chunk number of the marker that closes a worker's stream
_CHUNK_BYTES = 1 << 21
_SMALL_FILE = 1 << 18  # below this (compressed) size one bgpdump is quicker than two
_WHY_KEEP = 3  # messages quoted in one problem

# bgpdump -m -p lines as the fast path reads them: B and A lines (16 fields)
_TYPES = {n: pa.string() for n in NAMES} | {"p": pa.int64(), "peer_as": pa.int64()}
# bgpdump's warnings that say a record is damaged. Others say it skipped something it does
# not decode in a sound record (SAFI 128, ROUTE-REFRESH, ...): those only name a gap.
_DAMAGE = re.compile(
    r"truncat|error|invalid|incomplete|overflow|exceed|malformed|too (long|short|many)|assert",
    re.IGNORECASE,
)


def bgpdump_binary(override: str | None = None) -> str:
    found = shutil.which(override or "bgpdump")
    if found is None:
        raise MissingDependency("bgpdump (needed to read MRT files)", "apt-get install bgpdump")
    return found


class Marker:
    """Marker records: a BGP4MP STATE_CHANGE_AS4 from AS 4294967295 whose timestamp is a
    number and whose peer and local address is a random IPv6 address drawn per reader.
    A file may hold a STATE_CHANGE from that AS, but not (short of 2**-127) from that
    address. Its groups are 0x1000-0xffff so bgpdump prints them as plain hex."""

    def __init__(self) -> None:
        groups = [0x1000 + secrets.randbelow(0xF000) for _ in range(8)]
        self.peer = b"".join(g.to_bytes(2, "big") for g in groups)
        self.text = ":".join(f"{g:x}" for g in groups)

    def __call__(self, number: int) -> bytes:
        body = struct.pack(">IIHH16s16sHH", MARKER_AS, 0, 0, 2, self.peer, self.peer, 0, 0)
        return HEADER.pack(number, 16, 5, len(body)) + body

    def number(self, line: str) -> int | None:
        """The marker's number if ``line`` is one of ours."""
        f = line.split("|")
        ours = len(f) == 8 and f[3] == "STATE" and f[4] == self.text and f[5] == str(MARKER_AS)
        return int(f[2]) if ours else None


@dataclass
class _Chunk:
    number: int
    worker: int
    seq: int = 0  # its place among its worker's chunks (= its marker's)
    numbers: list[int] = field(default_factory=list)  # its records (no PIT), in order
    offsets: list[int] = field(default_factory=list)
    data: bytes = b""  # those records, back to back
    pit: Record | None = None  # the peer index table in force for it


@dataclass
class _Worker:
    index: int
    proc: subprocess.Popen[bytes]
    stdin: IO[bytes]
    err: IO[bytes]  # bgpdump's stderr: a file, so a poll sees every warning written so far
    err_seen: int = 0
    marks_p: list[int] = field(default_factory=list)  # -p of each marker seen, ascending
    marks_chunk: list[int] = field(default_factory=list)
    polled: int = 0  # markers seen at the last stderr poll
    slow: list[str] = field(default_factory=list)  # lines of other shapes, filled by the parser
    pending: list[pa.Table] = field(default_factory=list)  # B/A lines, in -p order
    pending_odd: list[pa.Table] = field(default_factory=list)  # other lines, any order
    horizon: int = -1  # every line with a smaller -p has been absorbed
    done: int = 0  # markers whose chunks are checked and handed on
    sent: int = 0  # chunks registered for it
    suspect: list[tuple[int, int]] = field(default_factory=list)  # (first, last) chunk seq
    bad_p: list[int] = field(default_factory=list)  # -p of lines that did not parse
    dead: bool = False  # given up: its chunks are read carefully
    todo: queue.Queue[_Chunk | None] = field(default_factory=lambda: queue.Queue(maxsize=2))


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
        self.marker = Marker()
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
                w.dead = True  # a feeder still running stops waiting on its queue
                with contextlib.suppress(queue.Empty):
                    w.todo.get_nowait()
                if w.proc.poll() is None:
                    w.proc.kill()
                w.proc.wait()
            for t in threads:
                t.join(timeout=5)
            for w in workers:
                w.err.close()
                if w.proc.stdout is not None:
                    w.proc.stdout.close()
        self.records = self._framer.records
        seen: set[str] = set()
        found = [p for p in self._framer.problems + self.problems if not _dup(p, seen)]
        self.problems = sorted(found, key=_problem_order)

    def _command(self) -> list[str]:
        """bgpdump reading stdin: one line per route (-m), -p numbering, warnings on stderr."""
        return [self.binary, "-m", "-p", "-v", "-"]

    def _spawn(self, index: int) -> _Worker:
        err = tempfile.TemporaryFile()  # noqa: SIM115 - closed by __iter__
        proc = subprocess.Popen(
            self._command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=_env()
        )
        assert proc.stdin is not None
        return _Worker(index, proc, proc.stdin, err)

    def _feed(self, workers: list[_Worker], out: queue.Queue[Any]) -> None:
        """Frame the file; send chunks of records, each after a marker, round robin."""
        try:
            pit: Record | None = None
            chunk = _Chunk(0, 0)
            parts: list[bytes] = []
            size = 0
            for rec in self._framer:
                if rec.is_peer_index:
                    chunk = self._send(chunk, parts, workers, pit)
                    parts, size = [], 0
                    pit = chunk.pit = rec  # the latest table rules what follows
                    for w in workers:  # bgpdump's -p does not count it
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
                _write(w, self.marker(_END))
        except BaseException as exc:  # handed to the consumer
            out.put(exc)
        finally:
            for w in workers:
                with contextlib.suppress(OSError):
                    w.stdin.close()
                w.todo.put(None)
            out.put(None)

    def _send(
        self, chunk: _Chunk, parts: list[bytes], workers: list[_Worker], pit: Record | None
    ) -> _Chunk:
        """Hand ``chunk`` to its worker (if it has records); return the next, empty one."""
        if not chunk.numbers:
            return chunk
        chunk.data = b"".join(parts)
        w = workers[chunk.worker]
        with self._lock:
            dead = w.dead
            if not dead:
                chunk.seq, w.sent = w.sent, w.sent + 1
                self._chunks[chunk.number] = chunk
        if dead:
            w.todo.put(chunk)  # read carefully by its worker's thread
        else:  # a worker dying now finds the chunk registered
            _write(w, self.marker(chunk.number) + chunk.data)
        n = chunk.number + 1
        return _Chunk(n, n % len(workers), pit=pit)

    def _drain(self, w: _Worker, out: queue.Queue[Any]) -> None:
        """Parse one bgpdump's output as it arrives; hand on the rows of checked chunks.
        A bgpdump that crashes or prints what Arrow cannot read is given up."""
        try:
            assert w.proc.stdout is not None

            def odd(row: Any) -> str:
                w.slow.append(row.text)
                return "skip"

            with contextlib.suppress(pa.ArrowInvalid):  # garbage output: given up below
                reader = pacsv.open_csv(
                    w.proc.stdout,
                    read_options=pacsv.ReadOptions(column_names=NAMES, block_size=1 << 22),
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
            if w.proc.poll() is None:
                w.proc.kill()
            w.proc.wait()
            self._absorb(w, None, out)
            with self._lock:
                w.dead = True
                left = sorted(
                    (c for c in self._chunks.values() if c.worker == w.index),
                    key=lambda c: c.number,
                )
                for c in left:
                    del self._chunks[c.number]
            for c in left:
                self._careful(c, out)
            while (c2 := w.todo.get()) is not None:
                self._careful(c2, out)
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
            w.pending.append(lines_table(fast, [])[0])
        if slow:
            odd, bad = lines_table(None, slow)
            for _i, line_p, _text in bad:
                if line_p is None:  # no -p to place it: every unchecked chunk is suspect
                    w.suspect.append((w.done, w.sent))
                else:
                    w.bad_p.append(line_p)
            is_mark = pc.and_(
                pc.and_(pc.equal(odd["kind"], "STATE"), pc.equal(odd["peer_as"], MARKER_AS)),
                pc.equal(odd["peer"], self.marker.text),
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
        self._poll(w)
        self._close(w, out)

    def _poll(self, w: _Worker) -> None:
        """New warnings in bgpdump's stderr make suspect every chunk it may have been
        reading since the last poll: from the one the latest marker seen then opened, to
        the one after the last sent (a peer index table written after a chunk warns
        before the next one's marker)."""
        size = os.fstat(w.err.fileno()).st_size
        if size > w.err_seen:
            text = os.pread(w.err.fileno(), size - w.err_seen, w.err_seen)
            w.err_seen = size
            found = [m for m in map(_warning, text.decode("utf-8", "replace").splitlines()) if m]
            if any(_DAMAGE.search(m) for m in found):
                w.suspect.append((max(w.polled - 1, 0), w.sent))
        w.polled = len(w.marks_p)

    def _close(self, w: _Worker, out: queue.Queue[Any]) -> None:
        """Check the chunks whose every line has been seen; hand on the clean ones' rows,
        read the others again carefully."""
        j = w.done
        while j + 1 < len(w.marks_p) and w.marks_p[j + 1] <= w.horizon:
            j += 1
        if j == w.done:
            return
        first, last = w.marks_p[w.done], w.marks_p[j]
        parts: list[pa.Table] = []
        keep: list[pa.Table] = []
        for t in w.pending:  # B/A lines are in -p order: a zero-copy cut
            cut = int(np.searchsorted(t["p"].to_numpy(), last))
            if cut:
                parts.append(t.slice(0, cut))
            if cut < t.num_rows:
                keep.append(t.slice(cut))
        w.pending = keep
        if w.pending_odd:
            odd = pa.concat_tables(w.pending_odd)
            closed = odd["p"].to_numpy() < last
            w.pending_odd = [odd.filter(~closed)] if not closed.all() else []
            if closed.any():
                parts.append(odd.filter(closed))
        bad_p = np.asarray(w.bad_p, dtype=np.int64)
        w.bad_p = [p for p in w.bad_p if p >= last]
        rows = pa.concat_tables(parts) if parts else None
        p = rows["p"].to_numpy() if rows is not None else np.zeros(0, np.int64)
        if (p < first).any():  # cannot happen: only a peer index table precedes a marker
            self._problem(None, f"bgpdump printed {int((p < first).sum())} lines before its "
                          "first chunk; dropped")  # fmt: skip
        record = np.zeros(len(p), dtype=np.uint64)
        good = np.zeros(len(p), dtype=bool)
        redo: list[_Chunk] = []
        clean: list[_Chunk] = []
        for m in range(w.done, j):
            lo, hi = w.marks_p[m], w.marks_p[m + 1]
            with self._lock:
                chunk = self._chunks.pop(w.marks_chunk[m], None)
            sel = (p > lo) & (p < hi)
            if chunk is None:  # lines after the closing marker: cannot happen either
                if sel.any():
                    self._problem(None, "bgpdump printed lines after its last chunk; dropped")
                continue
            ok_count = (
                hi - lo - 1 == len(chunk.numbers)
                and not any(a <= chunk.seq <= b for a, b in w.suspect)
                and not ((bad_p > lo) & (bad_p < hi)).any()
            )
            if not ok_count:
                redo.append(chunk)
                continue
            clean.append(chunk)
            record[sel] = np.asarray(chunk.numbers, np.uint64)[p[sel] - lo - 1]
            good |= sel
        w.done = j
        if rows is not None and good.any():
            if not good.all():  # a filter copies every column: only when needed
                rows, record = rows.filter(pa.array(good)), record[good]
            while rows.num_rows:
                try:
                    out.put(finish(rows, record))
                    break
                except BadRows as exc:  # rare: redo the chunks that printed them
                    hit = set(record[exc.mask].tolist())
                    hurt = [c for c in clean if hit.intersection(c.numbers)]
                    clean = [c for c in clean if c not in hurt]
                    redo += hurt
                    gone = np.asarray([n for c in hurt for n in c.numbers], np.uint64)
                    kept = ~np.isin(record, gone)
                    rows, record = rows.filter(pa.array(kept)), record[kept]
        for chunk in sorted(redo, key=lambda c: c.number):
            self._careful(chunk, out)

    def _careful(self, chunk: _Chunk, out: queue.Queue[Any]) -> None:
        """Read ``chunk`` with a marker before every record and bgpdump's output line-
        buffered and merged with its warnings, so each line and warning names its record.
        Records that bgpdump skips, warns about, crashes on or prints bad lines for become
        problems; the others' routes are handed on."""
        records = split_records(chunk.data, chunk.numbers, chunk.offsets)
        lines: list[str] = []
        owner: list[int] = []
        start = 0
        while start < len(records):
            start = self._careful_run(chunk, records, start, lines, owner)
        table, bad = lines_table(None, lines)
        ok = np.ones(len(lines), dtype=bool)
        dropped: set[int] = set()
        for i, _p, text in bad:
            ok[i] = False
            if owner[i] not in dropped:
                dropped.add(owner[i])
                why = f"bgpdump printed a line of unknown shape: {text[:120]!r}"
                self._record_problem(records, owner[i], why + "; its routes are dropped")
        numbers = np.asarray(owner, dtype=np.uint64)[ok]
        source = np.flatnonzero(ok)  # each row's line
        while table.num_rows:
            keep = ~np.isin(numbers, np.asarray(sorted(dropped), np.uint64))
            table, numbers, source = table.filter(pa.array(keep)), numbers[keep], source[keep]
            if not table.num_rows:
                break
            try:
                out.put(finish(table, numbers))
                break
            except BadRows as exc:
                for k in np.flatnonzero(exc.mask).tolist():
                    n = int(numbers[k])
                    if n not in dropped:
                        dropped.add(n)
                        why = (
                            f"bgpdump printed a route with unreadable values: {lines[source[k]]!r}"
                        )
                        self._record_problem(records, n, why[:300] + "; its routes are dropped")

    def _careful_run(
        self, chunk: _Chunk, records: list[Record], start: int, lines: list[str], owner: list[int]
    ) -> int:
        """One careful bgpdump run from ``records[start]``; returns where the next must start
        (past a record bgpdump crashed or stopped on)."""
        mark = self.marker
        parts = [chunk.pit.data if chunk.pit is not None else b""]
        for i in range(start, len(records)):
            parts += [mark(i), records[i].data]
        parts.append(mark(len(records)))
        stdbuf = shutil.which("stdbuf")
        if stdbuf is None:
            raise MissingDependency("stdbuf (to name the record bgpdump fails on)", "coreutils")
        run = subprocess.run(
            [stdbuf, "-oL", *self._command()],
            input=b"".join(parts),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=300,
            env=_env(),
            check=False,
        )
        marks: dict[int, int] = {}
        said: dict[int, list[str]] = {}
        printed: dict[int, list[str]] = {}
        at = start - 1  # before the first marker: the peer index table's
        for line in run.stdout.decode("utf-8", "replace").splitlines():
            number = mark.number(line)
            if number is not None:
                marks[number] = int(line.split("|", 2)[1])
                at = number
            elif _is_route_line(line):
                printed.setdefault(at, []).append(line)
            elif message := _warning(line):
                said.setdefault(at, []).append(message)
        if chunk.pit is not None and start not in marks:  # it crashed or stopped bgpdump
            why = _why(said.get(start - 1), "bgpdump stopped on this peer index table")
            self._record_problem([chunk.pit], chunk.pit.number, why + "; the entries after "
                                 "it are read without it")  # fmt: skip
            chunk.pit = None
            return start
        if chunk.pit is not None and any(_DAMAGE.search(m) for m in said.get(start - 1, [])):
            why = _why(said.get(start - 1), "bgpdump warned about this peer index table")
            self._record_problem([chunk.pit], chunk.pit.number, why)
        end = len(records)
        if len(records) not in marks:  # crashed or stopped inside the record after ``at``
            end = max(at, start)
            status = f"signal {-run.returncode}" if run.returncode < 0 else (
                f"exit status {run.returncode}")  # fmt: skip
            why = _why(said.get(end), f"bgpdump stopped ({status}) on this record")
            self._record_problem(records, records[end].number, why + "; skipped")
            printed.pop(end, None)
        for i in range(start, end):
            decoded = i in marks and marks.get(i + 1, -1) - marks[i] == 2
            if not decoded or any(_DAMAGE.search(m) for m in said.get(i, [])):
                why = "bgpdump warned" if decoded else "bgpdump could not decode this record"
                tail = "; its routes are dropped" if decoded else "; skipped"
                self._record_problem(records, records[i].number, _why(said.get(i), why) + tail)
                continue
            got = printed.get(i, [])
            lines.extend(got)
            owner.extend([records[i].number] * len(got))
        return end + 1 if end < len(records) else end

    def _record_problem(self, records: list[Record], number: int, text: str) -> None:
        rec = next(r for r in records if r.number == number)
        with self._lock:
            self.problems.append(_at(self.path, rec, text))

    def _problem(self, where: str | None, text: str) -> None:
        with self._lock:
            self.problems.append(InputError(self.path, where, text))


def _at(path: Path, rec: Record, text: str) -> InputError:
    return InputError(path, f"record {rec.number} (byte {rec.offset})", text)


def _why(messages: list[str] | None, text: str) -> str:
    """``text`` with the first of this record's own messages."""
    if not messages:
        return text
    return f"{text}: {'; '.join(dict.fromkeys(messages[:_WHY_KEEP]))}"


def _is_route_line(line: str) -> bool:
    """A bgpdump -m -p line (any shape) rather than a log message."""
    head, sep, rest = line.partition("|")
    return bool(sep) and head.replace("_", "").isalnum() and head.isupper() and (
        rest.split("|", 1)[0].isdigit())  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "TZ": "UTC", "LC_ALL": "C"}  # bgpdump formats times and numbers


def _warning(line: str) -> str:
    """bgpdump's message without its log prefix; "" for blank lines and [info] chatter."""
    line = line.strip()
    if not line or "[info]" in line:
        return ""
    return line.split("] ", 1)[-1]


def _write(w: _Worker, data: bytes) -> None:
    """Write to a worker; one that died is noticed (and its chunks redone) by its drain."""
    with contextlib.suppress(OSError):
        w.stdin.write(data)


def _dup(e: InputError, seen: set[str]) -> bool:
    """Whether ``e`` was reported already (a peer index table rules several chunks)."""
    key = f"{e.where}|{e.problem}"
    if key in seen:
        return True
    seen.add(key)
    return False


def _problem_order(e: InputError) -> int:
    where = e.where or ""
    digits = where.split()[1] if where.startswith("record ") else ""
    return int(digits) if digits.isdigit() else 0


def read_mrt(
    path: str | os.PathLike[str], *, workers: int | None = None, bgpdump: str | None = None
) -> MrtReader:
    """Routes of an MRT file (plain, gzip, bzip2 or xz) as Arrow batches."""
    return MrtReader(Path(path), workers=workers, bgpdump=bgpdump)
