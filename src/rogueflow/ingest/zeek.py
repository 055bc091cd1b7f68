"""Zeek conn.log, TSV or JSON lines, plain or compressed, joined with dns/ssl/http logs on uid.

Mapping: ``ts`` → ts_start, ``ts + duration`` → ts_end, ``id.orig_h:id.orig_p`` → source,
``id.resp_h:id.resp_p`` → destination, ``orig_pkts``/``orig_ip_bytes`` → packets/bytes
(layer 3; ``orig_bytes``, the payload, only when the IP byte count is absent),
``resp_*`` → rev_*, ``service`` → app_label, ``_node_name``/``peer`` → exporter,
``history`` → tcp_flags (approximate). dns.log ``query`` → dns_query, ssl.log
``server_name`` (else http.log ``host``) → server_name; the first value per uid wins.
A flow left without a name gets, as dns_query, the name its client last resolved to its
responder address (dns.log ``answers``, within the answer's TTL and a day): see PassiveDns.

>>> [p.name for p in companion_paths(Path("/nowhere/conn.00:00:00-01:00:00.log.gz"))]
[]
"""

from __future__ import annotations

import bz2
import codecs
import contextlib
import gzip
import io
import json
import lzma
import queue
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar, cast

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.json as pajson

from rogueflow import addr
from rogueflow.arrays import masked
from rogueflow.errors import InputError
from rogueflow.ingest.base import ReadOptions, compression_of, text_head
from rogueflow.schema import TIMESTAMP

if TYPE_CHECKING:  # the detector reads captures through pcapdns, which imports this module
    from rogueflow.detect.dnstunnel import TunnelDetector

#: What decompressors and Arrow raise for bytes they cannot read (ArrowInvalid is a ValueError).
READ_ERRORS = (pa.ArrowException, OSError, EOFError, zlib.error, lzma.LZMAError, ValueError)

#: conn.log fields the reader uses and the Arrow type each is parsed as.
CONN_TYPES: dict[str, pa.DataType] = {
    "ts": pa.float64(), "uid": pa.string(),
    "id.orig_h": pa.string(), "id.orig_p": pa.int64(),
    "id.resp_h": pa.string(), "id.resp_p": pa.int64(),
    "proto": pa.string(), "ip_proto": pa.int64(), "service": pa.string(),
    "duration": pa.float64(), "history": pa.string(),
    "orig_bytes": pa.int64(), "resp_bytes": pa.int64(),
    "orig_pkts": pa.int64(), "orig_ip_bytes": pa.int64(),
    "resp_pkts": pa.int64(), "resp_ip_bytes": pa.int64(),
    "_node_name": pa.string(), "peer": pa.string(),
}  # fmt: skip
REQUIRED = ("ts", "id.orig_h", "id.orig_p", "id.resp_h", "id.resp_p", "proto")
#: a conn.log has one of these at least (a dns.log has every REQUIRED field too)
COUNTERS = ("orig_pkts", "orig_ip_bytes", "orig_bytes")
#: companion log, its field, the canonical column it fills (the earlier wins on server_name)
COMPANIONS = (("dns", "query", "dns_query"), ("ssl", "server_name", "server_name"),
              ("http", "host", "server_name"))  # fmt: skip

# Zeek's transports; without ip_proto an unknown one becomes 255 (IANA: reserved)
_PROTO_NAMES = pa.array(["tcp", "udp", "icmp", "unknown_transport"])
_PROTO_NUMBERS = pa.array([6, 17, 1, 255], pa.int64())
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
# Approximate: history letters say what Zeek saw, not every flag bit (a FIN+ACK segment
# shows as 'F' only; 'D' is payload, which real stacks send with PSH|ACK).
_HISTORY_FLAGS = (("s", SYN), ("h", SYN | ACK), ("f", FIN), ("r", RST), ("d", PSH | ACK),
                  ("a", ACK))  # fmt: skip
#: dns.log fields of passive-DNS attribution (answers: addresses and CNAME/other names)
ANSWER_TYPES: dict[str, pa.DataType] = {
    "ts": pa.float64(), "id.orig_h": pa.string(), "answers": pa.list_(pa.string()),
    "TTLs": pa.list_(pa.float64()),
}  # fmt: skip
DAY_US = 86_400 * 10**6  # the longest an answer attributes a flow, whatever its TTL
_MAX_TS = 2.0**33  # epoch seconds past year 2242 are garbage, and overflow microseconds
_MAX_HEADER_LINE = 1 << 16
_CSV_ERROR = re.compile(r"In CSV column #(\d+): Row #(\d+): (.*)", re.S)
_BAD_VALUE = re.compile(r"CSV conversion error to \w+: invalid value '(.*)'", re.S)

Locate = Callable[[int], str]
I64 = npt.NDArray[np.int64]
T = TypeVar("T")


@dataclass
class Header:
    """The ``#`` lines of a Zeek TSV log."""

    separator: str = "\t"
    set_separator: str = ","
    unset: str = "-"
    empty: str = "(empty)"
    fields: list[str] = field(default_factory=list)
    fields_line: int = 0
    lines: int = 0


def open_log(path: Path) -> IO[bytes]:
    """The log, decompressed; closing it closes the file (``base.open_maybe_compressed``'s
    wrappers leave the underlying file open)."""
    with open(path, "rb") as fh:
        kind = compression_of(fh.read(6))
    openers: dict[str, Callable[..., Any]] = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}
    opener = openers.get(kind or "", open)
    return cast(IO[bytes], opener(path, "rb"))


class Utf8Guard(io.RawIOBase):
    """Passes bytes through, stopping at the first invalid UTF-8 with its line number:
    Arrow decodes a bad row for the invalid-row handler, and fails beyond our reach
    when that row is not UTF-8."""

    def __init__(self, inner: IO[bytes], path: Path, line0: int) -> None:
        super().__init__()
        self.inner, self.path, self.line = inner, path, line0
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.error: InputError | None = None

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        chunk = self.inner.read(-1 if size is None else size)
        if not chunk.isascii() or not chunk or self.decoder.getstate()[0]:
            try:
                self.decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as exc:
                at = max(exc.start - len(self.decoder.getstate()[0]), 0)
                line = self.line + chunk[:at].count(b"\n") + 1
                self.error = InputError(self.path, f"line {line}", "not UTF-8 text")
                raise self.error from None
        self.line += chunk.count(b"\n")
        return chunk


def _unescape(text: str) -> str:
    return re.sub(r"\\x([0-9a-fA-F]{2})", lambda m: chr(int(m[1], 16)), text)


def read_header(fh: IO[bytes], path: Path) -> Header:
    """Consume the leading ``#`` lines; the stream is left at the first record."""
    h = Header()
    while fh.peek(1)[:1] == b"#":  # type: ignore[attr-defined]
        raw = fh.readline(_MAX_HEADER_LINE)
        h.lines += 1
        try:
            if len(raw) >= _MAX_HEADER_LINE:
                raise ValueError("too long")
            line = raw.decode("utf-8").rstrip("\r\n")
        except ValueError as exc:
            raise InputError(path, f"line {h.lines}", f"bad header line ({exc})") from None
        if line.startswith("#separator"):
            sep = _unescape(line[10:].strip())
            if len(sep) != 1 or sep in "\r\n":
                raise InputError(path, f"line {h.lines}", f"#separator {sep!r} is not one byte")
            h.separator = sep
            continue
        key, _, rest = line.partition(h.separator)
        values = rest.split(h.separator)
        if key == "#fields":
            h.fields, h.fields_line = values, h.lines
        elif key == "#set_separator":
            h.set_separator = _unescape(values[0])
        elif key == "#unset_field":
            h.unset = values[0]
        elif key == "#empty_field":
            h.empty = values[0]
    return h


def check_fields(path: Path, where: str, fields: Sequence[str], required: Sequence[str],
                 any_of: Sequence[str], log: str) -> None:  # fmt: skip
    missing = [f for f in required if f not in fields]
    if any_of and not any(f in fields for f in any_of):
        missing.append(" or ".join(any_of))
    if missing:
        raise InputError(path, where, f"not a Zeek {log}: no {', '.join(missing)} field "
                         f"(has: {', '.join(fields[:24])})")  # fmt: skip


def _tsv_error(exc: Exception, path: Path, h: Header, problem: tuple[int | None, str] | None,
               rows_done: int) -> InputError:  # fmt: skip
    if problem:
        number, msg = problem
        where = f"line {h.lines + number}" if number else f"after line {h.lines + rows_done}"
        return InputError(path, where, msg)
    text = str(exc) or type(exc).__name__
    m = _CSV_ERROR.search(text)
    if not m:
        return InputError(path, f"after line {h.lines + rows_done}", f"unreadable ({text})")
    col, where, detail = h.fields[int(m[1])], f"line {h.lines + int(m[2])}", m[3].splitlines()[0]
    value = _BAD_VALUE.search(detail)
    if not value:
        return InputError(path, where, f"{col}: {detail}")
    what = "a number"
    if col == "ts":
        what = "a time in epoch seconds"
        if "XXXX" in value[1]:
            what += " (Zeek's test baselines mask times like this; use a real log)"
    return InputError(path, where, f"{col} {value[1][:60]!r} is not {what}")


def tsv_batches(
    fh: IO[bytes], path: Path, h: Header, types: Mapping[str, pa.DataType], block_size: int
) -> Iterator[tuple[pa.RecordBatch, Locate]]:
    """Record batches of the ``types`` columns, each with its row → "line N" map."""
    use = [f for f in h.fields if f in types]
    # sets and vectors are text joined by #set_separator; Arrow's CSV reader reads them as such
    lists = [f for f in use if pa.types.is_list(types[f])]
    skipped: list[int] = []  # stream rows of '#' lines (#close, concatenated logs)
    problems: list[tuple[int | None, str]] = []

    def on_invalid(row: Any) -> str:
        text: str = row.text or ""
        if text.startswith("#fields") and text.split(h.separator)[1:] != h.fields:
            problems.append((row.number, "a second #fields header with other fields"))
            return "error"
        if text.startswith("#") or not text.strip():
            if row.number is not None:
                skipped.append(row.number)
            return "skip"
        kind = "truncated line" if row.actual_columns < row.expected_columns else "bad line"
        problems.append((row.number, f"{kind}: expected {row.expected_columns} fields, "
                         f"found {row.actual_columns}: {text[:80]!r}"))  # fmt: skip
        return "error"

    def locate_in(base: int) -> Locate:
        def locate(k: int) -> str:
            n = base + k + 1
            for s in skipped:
                n += s <= n
            return f"line {h.lines + n}"

        return locate

    rows_done = 0
    guard = Utf8Guard(fh, path, h.lines)
    try:
        reader = pacsv.open_csv(
            guard,
            # single-threaded: Arrow then numbers rows across blocks, so errors name lines
            read_options=pacsv.ReadOptions(column_names=h.fields, use_threads=False,
                                           block_size=block_size),
            parse_options=pacsv.ParseOptions(delimiter=h.separator, quote_char=False,
                                             escape_char=False, ignore_empty_lines=False,
                                             invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(include_columns=use,
                                                 column_types={f: pa.string() if f in lists
                                                               else types[f] for f in use},
                                                 null_values=[h.unset, h.empty],
                                                 strings_can_be_null=True),
        )  # fmt: skip
        for batch in reader:
            if lists:
                batch = _split_sets(batch, lists, types, h.set_separator, path,
                                    locate_in(rows_done))  # fmt: skip
            yield batch, locate_in(rows_done)
            rows_done += batch.num_rows
    except READ_ERRORS as exc:
        if guard.error is not None:
            raise guard.error from None
        raise _tsv_error(exc, path, h, problems[0] if problems else None, rows_done) from None


def _split_sets(batch: pa.RecordBatch, lists: Sequence[str], types: Mapping[str, pa.DataType],
                sep: str, path: Path, locate: Locate) -> pa.RecordBatch:  # fmt: skip
    """Set/vector columns, read as text, to Arrow lists of their element type."""
    for name in lists:
        i = batch.schema.get_field_index(name)
        split = pc.split_pattern(batch.column(i), sep)
        try:
            split = pc.cast(split, types[name])
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            element = types[name].value_type
            for k, value in enumerate(split.to_pylist()):  # error path: find the row
                try:
                    pc.cast(pa.array(value or [], pa.string()), element)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    problem = f"{name} {sep.join(value)[:60]!r} is not a list of {element}"
                    raise InputError(path, locate(k), problem) from None
            raise
        batch = batch.set_column(i, name, split)
    return batch


def _json_fits(v: Any, typ: pa.DataType) -> bool:
    if v is None:
        return True
    if pa.types.is_string(typ):
        return isinstance(v, str)
    if pa.types.is_list(typ):
        return isinstance(v, list) and all(_json_fits(x, typ.value_type) for x in v)
    number = isinstance(v, int | float) and not isinstance(v, bool)
    if pa.types.is_floating(typ):
        return number
    return pa.types.is_integer(typ) and number and isinstance(v, int) and abs(v) < 2**63


def _json_problem(obj: Any, types: Mapping[str, pa.DataType]) -> str | None:
    if not isinstance(obj, dict):
        return "not a JSON object"
    for name, typ in types.items():
        v = obj.get(name)
        if not _json_fits(v, typ):
            return f"{name} {v!r} is not {typ}"
    return None


def locate_json_error(path: Path, types: Mapping[str, pa.DataType]) -> tuple[int, str] | None:
    """Re-read a JSON log in Python to name the line Arrow refused (error path only)."""
    with open_log(path) as fh:
        for lineno, raw in enumerate(iter(lambda: fh.readline(1 << 24), b""), start=1):
            if raw.strip():
                try:
                    problem = _json_problem(json.loads(raw), types)
                except ValueError as exc:
                    problem = f"not a JSON object ({exc})"
                if problem:
                    return lineno, problem
    return None


def json_batches(
    fh: IO[bytes], path: Path, types: Mapping[str, pa.DataType], block_size: int
) -> Iterator[tuple[pa.RecordBatch, Locate]]:
    """Record batches of a JSON-lines log (one object per line), with row → line maps."""
    rows_done = 0
    try:
        reader = pajson.open_json(
            fh, read_options=pajson.ReadOptions(use_threads=False, block_size=block_size),
            parse_options=pajson.ParseOptions(explicit_schema=pa.schema(list(types.items())),
                                              unexpected_field_behavior="ignore"),
        )  # fmt: skip
        for batch in reader:
            batch.validate(full=True)  # Arrow's JSON parser lets invalid UTF-8 through
            yield batch, lambda k, base=rows_done: f"line {base + k + 1}"  # type: ignore[misc]
            rows_done += batch.num_rows
    except READ_ERRORS as exc:
        found = None
        with contextlib.suppress(*READ_ERRORS):
            found = locate_json_error(path, types)
        if found:
            raise InputError(path, f"line {found[0]}", found[1]) from None
        detail = (str(exc) or type(exc).__name__).splitlines()[0]
        raise InputError(path, f"after line {rows_done}", f"unreadable JSON ({detail})") from None


def log_batches(path: Path, types: Mapping[str, pa.DataType], required: Sequence[str],
                any_of: Sequence[str], log: str, block_size: int,
                ) -> Iterator[tuple[pa.RecordBatch, Locate]]:  # fmt: skip
    """Typed batches of any Zeek log, TSV or JSON, once it is known to hold what is needed."""
    try:
        fh = open_log(path)
    except OSError as exc:
        raise InputError(path, None, f"cannot open ({exc})") from None
    with fh:
        header, obj = None, None
        try:
            first = fh.peek(1)[:1]  # type: ignore[attr-defined]
            if first == b"{":
                with open_log(path) as again:  # the first record, without consuming it
                    obj = json.loads(again.readline(1 << 20))
            elif first == b"#":
                header = read_header(fh, path)
        except READ_ERRORS as exc:
            raise InputError(path, "line 1", f"unreadable ({exc})") from None
        if isinstance(obj, dict):
            # Zeek's JSON leaves unset fields out, so the first line lists the certain ones
            check_fields(path, "line 1", list(obj), required, any_of, log)
            typed = dict(types)
            if isinstance(obj.get("ts"), str):  # LogAscii::json_timestamps = ISO8601
                typed["ts"] = pa.string()
            yield from json_batches(fh, path, typed, block_size)
        elif header is not None and header.fields:
            check_fields(path, f"line {header.fields_line}", header.fields, required, any_of, log)
            yield from tsv_batches(fh, path, header, types, block_size)
        else:
            raise InputError(path, f"line {header.lines + 1 if header else 1}",
                             f"not a Zeek {log}: expected a #separator/#fields header or "
                             "JSON lines")  # fmt: skip


# --- record conversion -----------------------------------------------------------------


def _first(mask: Any) -> int:
    return int(np.flatnonzero(np.asarray(mask))[0])


def _ints(t: pa.Table, name: str, path: Path, locate: Locate, hi: int) -> I64:
    """A required integer column, range-checked."""
    col = t.column(name)
    if col.null_count:
        raise InputError(path, locate(_first(pc.is_null(col))), f"{name} is unset")
    v = np.asarray(col.to_numpy(), dtype=np.int64)
    bad = (v < 0) | (v > hi)
    if bad.any():
        i = _first(bad)
        raise InputError(path, locate(i), f"{name} {int(v[i])} is out of range 0..{hi}")
    return v


def _timestamps(col: pa.ChunkedArray, path: Path, locate: Locate) -> I64:
    """Epoch-seconds floats or ISO-8601 text to int64 microseconds."""
    if col.null_count:
        raise InputError(path, locate(_first(pc.is_null(col))), "ts is unset")
    if pa.types.is_string(col.type):
        zoned = pc.match_substring_regex(col, r"(Z|[+-]\d\d:?\d\d)$")
        text = pc.if_else(zoned, col, pc.binary_join_element_wise(col, "Z", ""))
        try:
            return np.asarray(pc.cast(pc.cast(text, TIMESTAMP), pa.int64()), np.int64)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            for i, value in enumerate(text.to_pylist()):  # error path: find the row
                try:
                    pc.cast(pa.array([value]), TIMESTAMP)
                except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    problem = f"ts {value!r} is not an ISO-8601 time"
                    raise InputError(path, locate(i), problem) from None
            raise
    v = np.asarray(col.to_numpy(), dtype=np.float64)
    bad = ~np.isfinite(v) | (v < 0) | (v > _MAX_TS)
    if bad.any():
        i = _first(bad)
        raise InputError(path, locate(i), f"ts {v[i]!r} is not a plausible epoch time")
    return np.round(v * 1e6).astype(np.int64)


def _address_column(col: pa.ChunkedArray, name: str) -> pa.Array | tuple[int, str]:
    """16-byte addresses, or the first bad row and what is wrong with it."""
    col = col.combine_chunks()
    if col.null_count:
        return _first(pc.is_null(col)), f"{name} is unset"
    parsed = addr.parse_or_first_bad(col)
    if isinstance(parsed, int):
        return parsed, f"{name} {col[parsed].as_py()!r} is not an IP address"
    return parsed


def _addresses(t: pa.Table, path: Path, locate: Locate) -> tuple[pa.Array, pa.Array]:
    src = _address_column(t.column("id.orig_h"), "id.orig_h")
    dst = _address_column(t.column("id.resp_h"), "id.resp_h")
    bad = [x for x in (src, dst) if isinstance(x, tuple)]
    if bad:
        row, problem = min(bad)
        raise InputError(path, locate(row), problem)
    return cast(pa.Array, src), cast(pa.Array, dst)


def _protocols(t: pa.Table, src: pa.Array, path: Path, locate: Locate) -> I64:
    idx = pc.index_in(pc.utf8_lower(t.column("proto")), value_set=_PROTO_NAMES)
    if idx.null_count:
        i = _first(pc.is_null(idx))
        raise InputError(path, locate(i), f"proto {t['proto'][i].as_py()!r} is not a transport")
    proto = np.array(pc.take(_PROTO_NUMBERS, idx).to_numpy(), dtype=np.int64)  # writable
    # Zeek writes "icmp" for ICMPv6 too; the address family tells them apart
    icmp = np.flatnonzero(proto == 1)
    if len(icmp):
        proto[icmp[~addr.is_ipv4(src.take(pa.array(icmp)))]] = 58
    if "ip_proto" in t.column_names and t["ip_proto"].null_count < t.num_rows:
        given = np.asarray(pc.fill_null(t["ip_proto"], -1).to_numpy(), dtype=np.int64)
        if (given > 255).any() or (given < -1).any():
            i = _first((given > 255) | (given < -1))
            raise InputError(path, locate(i), f"ip_proto {int(given[i])} is out of range")
        proto = np.where(given >= 0, given, proto)
    return proto


def _tcp_flags(t: pa.Table, proto: I64) -> npt.NDArray[np.uint8]:
    flags = np.zeros(t.num_rows, dtype=np.uint8)
    if "history" in t.column_names:
        hist = pc.fill_null(pc.utf8_lower(t.column("history")), "")
        for letter, bits in _HISTORY_FLAGS:
            flags |= np.where(np.asarray(pc.match_substring(hist, letter)), bits, 0).astype(
                np.uint8
            )
        flags[proto != 6] = 0
    return flags


def _text(t: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
    """A text column with "" (JSON's empty value) as null."""
    if name not in t.column_names:
        return pa.nulls(t.num_rows, pa.string())
    return pc.if_else(pc.equal(t[name], ""), pa.scalar(None, pa.string()), t[name])


@dataclass
class Lookup:
    """The first value per uid in a companion log."""

    column: str
    uids: pa.Array
    values: pa.Array


def _pair_keys(a: pa.Array, b: pa.Array) -> pa.Array:
    """Two 16-byte address columns → one 32-byte key per row, for Arrow's hash lookups."""
    m = np.ascontiguousarray(np.hstack([addr.to_matrix(a), addr.to_matrix(b)]))
    return pa.Array.from_buffers(pa.binary(32), len(m), [None, pa.py_buffer(m.tobytes())])


def _concat(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
    return np.concatenate(parts) if parts else np.zeros(0, dtype)


class PassiveDns:
    """Which name each client last resolved to each address, from dns.log ``answers``.

    Held in memory like the uid lookups: per address answer of the dns.log a 32-byte
    (client, address) key, two times and a name index, never anything per conn.log row.
    ``add`` every dns.log batch, ``finish`` once, then ``names`` for each conn batch.
    """

    def __init__(self) -> None:
        self._keys: list[pa.Array] = []
        self._ts: list[I64] = []
        self._until: list[I64] = []
        self._row: list[I64] = []
        self._queries: list[pa.Array] = []
        self._n_queries = 0
        self.unique: pa.Array = pa.array([], pa.binary(32))
        self.times: I64 = np.zeros(0, np.int64)
        self.order_key: I64 = np.zeros(0, np.int64)
        self.until: I64 = np.zeros(0, np.int64)
        self.row: I64 = np.zeros(0, np.int64)
        self.queries: pa.Array = pa.array([], pa.string())

    def add(self, batch: pa.RecordBatch, path: Path, locate: Locate) -> None:
        """Collect the address answers of one dns.log batch."""
        if not {"ts", "id.orig_h", "query", "answers"} <= set(batch.schema.names):
            return
        keep = pc.and_(pc.is_valid(batch["id.orig_h"]), pc.is_valid(batch["ts"]))
        keep = pc.and_(keep, pc.and_(pc.is_valid(batch["query"]),
                                     pc.not_equal(batch["query"], "")))  # fmt: skip
        lengths = pc.fill_null(pc.list_value_length(batch["answers"]), 0)
        rows = np.flatnonzero(np.asarray(pc.and_(keep, pc.greater(lengths, 0))))
        if not len(rows):
            return
        t = batch.take(pa.array(rows))

        def loc(k: int) -> str:
            return locate(int(rows[k]))

        ts = _timestamps(pa.chunked_array([t["ts"]]), path, loc)
        client = _address_column(pa.chunked_array([t["id.orig_h"]]), "id.orig_h")
        if isinstance(client, tuple):
            raise InputError(path, loc(client[0]), client[1])
        answers = t["answers"]
        n_ans = np.asarray(pc.list_value_length(answers), dtype=np.int64)
        parent = np.repeat(np.arange(len(t)), n_ans)
        pos = np.arange(len(parent)) - (np.cumsum(n_ans) - n_ans)[parent]  # index in its list
        flat = pc.utf8_trim_whitespace(pc.fill_null(pc.list_flatten(answers), ""))
        # CNAME targets, MX/TXT/PTR texts are not addresses: keep only what parses as one
        enc = pc.dictionary_encode(flat)
        parsed, valid = addr._parse_texts(enc.dictionary)
        codes = np.asarray(enc.indices, dtype=np.int64)
        ttl = np.full(len(flat), DAY_US, dtype=np.int64)
        if "TTLs" in t.schema.names:
            ttls = t["TTLs"]
            n_ttl = np.asarray(pc.fill_null(pc.list_value_length(ttls), 0), dtype=np.int64)
            values = np.asarray(pc.fill_null(pc.list_flatten(ttls), np.nan), dtype=np.float64)
            aligned = (n_ttl == n_ans)[parent]  # Zeek writes one TTL per answer
            v = values[(np.cumsum(n_ttl) - n_ttl)[parent[aligned]] + pos[aligned]]
            usable = np.isfinite(v) & (v >= 0)
            ttl[aligned] = np.where(usable, np.round(np.minimum(v, 86_400) * 1e6), DAY_US)
        hit = np.flatnonzero(valid[codes])
        if not len(hit):
            return
        owner = parent[hit]
        ip = addr.from_bytes_matrix(parsed[codes[hit]])
        self._keys.append(_pair_keys(client.take(pa.array(owner)), ip))
        self._ts.append(ts[owner])
        self._until.append(ts[owner] + ttl[hit])
        self._row.append(owner + self._n_queries)
        self._queries.append(t["query"])
        self._n_queries += len(t)

    def finish(self) -> None:
        """Sort the answers by (client, address, time) for as-of lookups."""
        keys = pa.concat_arrays([pa.array([], pa.binary(32)), *self._keys])
        ts, until = _concat(self._ts, np.int64), _concat(self._until, np.int64)
        row = _concat(self._row, np.int64)
        self.queries = pa.concat_arrays([pa.array([], pa.string()), *self._queries])
        self._keys, self._ts, self._until, self._row, self._queries = [], [], [], [], []
        self.unique = pc.unique(keys)
        key_id = np.asarray(pc.index_in(keys, value_set=self.unique), dtype=np.int64)
        # time ranks keep key*width + rank within int64 (raw microseconds would not)
        self.times = np.unique(ts)
        sort_key = key_id * (len(self.times) + 1) + np.searchsorted(self.times, ts) + 1
        order = np.argsort(sort_key, kind="stable")  # equal keys: the later line wins
        self.order_key, self.until, self.row = sort_key[order], until[order], row[order]

    def names(self, src: pa.Array, dst: pa.Array, start: I64,
              wanted: npt.NDArray[np.bool_]) -> pa.Array:  # fmt: skip
        """Per flow, the query whose latest answer to its client (src) named its responder
        (dst) at or before ``start`` and is still within its TTL; null otherwise."""
        pick = np.full(len(start), -1, dtype=np.int64)
        rows = np.flatnonzero(wanted)
        if len(rows) and len(self.order_key):
            found = pc.index_in(_pair_keys(src.take(pa.array(rows)), dst.take(pa.array(rows))),
                                value_set=self.unique)  # fmt: skip
            known = np.asarray(pc.is_valid(found))
            rows = rows[known]
            key_id = np.asarray(pc.fill_null(found, 0), dtype=np.int64)[known]
            width = len(self.times) + 1
            at = start[rows]
            probe = key_id * width + np.searchsorted(self.times, at, side="right")
            j = np.searchsorted(self.order_key, probe, side="right") - 1
            jj = np.maximum(j, 0)
            ok = (j >= 0) & (self.order_key[jj] // width == key_id) & (at <= self.until[jj])
            pick[rows[ok]] = self.row[jj[ok]]
        return self.queries.take(masked(pick, pick < 0, pa.int64()))


def conn_table(t: pa.Table, *, path: Path, locate: Locate, options: ReadOptions,
               lookups: Sequence[Lookup], passive: PassiveDns | None = None,
               ) -> pa.Table:  # fmt: skip
    """Typed conn.log columns → canonical measured columns."""
    n = t.num_rows
    start = _timestamps(t.column("ts"), path, locate)
    dur = np.zeros(n)
    if "duration" in t.column_names:
        dur = np.asarray(pc.fill_null(t["duration"], 0.0).to_numpy(), dtype=np.float64)
        bad = ~np.isfinite(dur) | (dur < 0) | (dur > _MAX_TS)
        if bad.any():
            i = _first(bad)
            raise InputError(path, locate(i), f"duration {dur[i]!r} is not plausible")
    src, dst = _addresses(t, path, locate)
    proto = _protocols(t, src, path, locate)
    sport = _ints(t, "id.orig_p", path, locate, 65535)
    dport = _ints(t, "id.resp_p", path, locate, 65535)
    icmp = (proto == 1) | (proto == 58)
    if icmp.any():
        # Zeek puts the ICMP type in orig_p and the code in resp_p; canonical is type*256+code
        bad = icmp & ((sport > 255) | (dport > 255))
        if bad.any():
            i = _first(bad)
            raise InputError(path, locate(i), f"ICMP type/code {sport[i]}/{dport[i]} too big")
        sport, dport = np.where(icmp, 0, sport), np.where(icmp, sport * 256 + dport, dport)
    cols: dict[str, Any] = {
        "ts_start": pa.array(start).cast(TIMESTAMP),
        "ts_end": pa.array(start + np.round(dur * 1e6).astype(np.int64)).cast(TIMESTAMP),
        "src_addr": src, "dst_addr": dst,
        "src_port": pa.array(sport.astype(np.uint16)),
        "dst_port": pa.array(dport.astype(np.uint16)),
        "proto": pa.array(proto.astype(np.uint8)),
        "tcp_flags": pa.array(_tcp_flags(t, proto)),
    }  # fmt: skip
    for canon, names in (("packets", ("orig_pkts",)), ("bytes", ("orig_ip_bytes", "orig_bytes")),
                         ("rev_packets", ("resp_pkts",)),
                         ("rev_bytes", ("resp_ip_bytes", "resp_bytes"))):  # fmt: skip
        present = [t[c] for c in names if c in t.column_names]
        v = np.asarray(pc.coalesce(*present, 0).to_numpy() if present else np.zeros(n), np.int64)
        if (v < 0).any():
            raise InputError(path, locate(_first(v < 0)), f"{names[0]} is negative")
        cols[canon] = pa.array(v)
    cols["sampling_rate"] = pa.array(np.full(n, options.sampling_rate or 1, dtype=np.uint32))
    cols["exporter"] = pc.coalesce(_text(t, "_node_name"), _text(t, "peer"),
                                   pa.scalar(options.exporter, pa.string()))  # fmt: skip
    cols["app_label"] = _text(t, "service")
    cols["server_name"] = cols["dns_query"] = pa.nulls(n, pa.string())
    for lk in lookups if "uid" in t.column_names else []:
        value = lk.values.take(pc.index_in(t["uid"], value_set=lk.uids))
        cols[lk.column] = pc.coalesce(cols[lk.column], value)
    if passive is not None:
        # only flows with no name of their own: a name seen in the flow is better evidence
        unnamed = pc.and_(pc.is_null(cols["server_name"]), pc.is_null(cols["dns_query"]))
        found = passive.names(src, dst, start, np.asarray(unnamed, dtype=np.bool_))
        cols["dns_query"] = pc.coalesce(cols["dns_query"], found)
    return pa.table(cols)


def companion_lookup(path: Path, value_field: str, column: str, block_size: int,
                     passive: PassiveDns | None = None,
                     tunnels: TunnelDetector | None = None) -> Lookup:  # fmt: skip
    """uid → first non-empty ``value_field`` of a companion log (held in memory: two
    short strings per row of the companion, never the conn.log); a dns.log's address
    answers go to ``passive`` and its every query to ``tunnels`` from the same pass."""
    types = {"uid": pa.string(), value_field: pa.string()}
    if passive is not None:
        types |= ANSWER_TYPES
    if tunnels is not None:
        types |= {"ts": pa.float64(), "id.orig_h": pa.string(), "qtype": pa.int64()}
    uids: list[pa.Array] = [pa.array([], pa.string())]
    values: list[pa.Array] = [pa.array([], pa.string())]
    for batch, locate in log_batches(path, types, ["uid"], [], path.name, block_size):
        if passive is not None:
            passive.add(batch, path, locate)
        if tunnels is not None:
            tunnels.add_dns_log(_dns_queries(batch, path, locate))
        if value_field not in batch.schema.names:
            if passive is None:
                break
            continue
        keep = pc.and_(pc.is_valid(batch["uid"]), pc.is_valid(batch[value_field]))
        keep = pc.and_(keep, pc.not_equal(batch[value_field], ""))
        uids.append(batch["uid"].filter(keep))
        values.append(batch[value_field].filter(keep))
    all_uids = pa.concat_arrays(uids)
    unique = pc.unique(all_uids)
    first = pc.index_in(unique, value_set=all_uids)  # index_in finds each uid's first row
    return Lookup(column, unique, pa.concat_arrays(values).take(first))


def _dns_queries(batch: pa.RecordBatch, path: Path, locate: Locate) -> pa.Table:
    """A dns.log batch as the tunnel detector reads it: ``ts`` in epoch seconds (TSV and
    JSON, epoch or ISO times alike), the client, the query and its numeric ``qtype``."""
    names = batch.schema.names
    if not {"ts", "id.orig_h", "query"} <= set(names):
        return pa.table({})
    keep = pc.is_valid(batch["ts"])
    rows = np.flatnonzero(np.asarray(keep))
    t = pa.Table.from_batches([batch]).take(pa.array(rows))
    us = _timestamps(t["ts"], path, lambda k: locate(int(rows[k])))
    cols = {
        "ts": pa.array(us / 1e6, pa.float64()),
        "id.orig_h": t["id.orig_h"],
        "query": t["query"],
    }
    if "qtype" in names:
        cols["qtype"] = t["qtype"]
    return pa.table(cols)


def companion_paths(path: Path) -> list[Path]:
    """dns/ssl/http logs beside ``path`` with the same rotation suffix, when they exist."""
    parts = path.name.split(".")
    if "conn" not in parts:
        return []
    i = parts.index("conn")
    names = [".".join([*parts[:i], kind, *parts[i + 1 :]]) for kind, _, _ in COMPANIONS]
    return [path.with_name(n) for n in names if path.with_name(n).is_file()]


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Run ``items`` ahead on a thread, so Arrow parses the next block (without the GIL)
    while this one is converted; at most ``depth`` items wait in memory."""
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(kind: str, value: Any) -> bool:
        while not stop.is_set():
            with contextlib.suppress(queue.Full):
                slots.put((kind, value), timeout=0.05)
                return True
        return False

    def work() -> None:
        try:
            for item in items:
                if not put("item", item):
                    break
            else:
                put("end", None)
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put("error", exc)
        finally:
            cast(Any, items).close()

    worker = threading.Thread(target=work, name="zeek-prefetch", daemon=True)
    worker.start()
    try:
        while (got := slots.get())[0] == "item":
            yield got[1]
        if got[0] == "error":
            raise got[1]
    finally:
        stop.set()
        worker.join()


class ZeekConnReader:
    name = "zeek-conn"
    description = "Zeek conn.log (TSV or JSON, plain or gzip) with dns/ssl/http logs joined on uid"

    def sniff(self, path: Path, head: bytes) -> bool:
        lines = text_head(head).splitlines()
        first = next((ln for ln in lines if ln.strip()), "")
        if first.lstrip().startswith("{"):
            try:
                obj = json.loads(first)
            except ValueError:
                return False
            keys = obj if isinstance(obj, dict) else {}
            return {"uid", "id.orig_h"} <= set(keys) and any(c in keys for c in COUNTERS)
        header = [ln for ln in lines[:32] if ln.startswith("#")]
        if not any(ln.startswith("#separator") for ln in header):
            return False
        for ln in header:
            if ln.startswith("#path"):
                return ln.split()[1:2] == ["conn"]
        fields = next((ln.split() for ln in header if ln.startswith("#fields")), [])
        return "id.orig_h" in fields and "conn_state" in fields

    def companions(self, path: Path) -> list[Path]:
        return companion_paths(path)

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        # a conn.log line is 150-250 bytes: an Arrow block of ~one output batch, ≤ 16 MiB
        block = min(max(options.batch_rows * 200, 1 << 16), 1 << 24)
        kinds = {kind: (fld, col) for kind, fld, col in COMPANIONS}
        at = path.name.split(".").index("conn") if self.companions(path) else 0
        from rogueflow.detect.dnstunnel import TunnelDetector, label_table

        answers = PassiveDns()
        tunnels = TunnelDetector()
        lookups = []
        for p in self.companions(path):
            kind = p.name.split(".")[at]
            dns = kind == "dns"
            lookups.append(companion_lookup(p, *kinds[kind], block, answers if dns else None,
                                            tunnels if dns else None))  # fmt: skip
        answers.finish()
        passive = answers if len(answers.order_key) else None
        # conn rows of a client's queries to a domain its dns.log shows tunnelling through
        label = tunnels if tunnels.flagged() else None
        # uid is only needed to join companion logs (and is costly to parse)
        types = CONN_TYPES if lookups else {k: v for k, v in CONN_TYPES.items() if k != "uid"}
        batches = prefetch(log_batches(path, types, REQUIRED, COUNTERS, "conn.log", block))
        for batch, locate in batches:
            for s in range(0, batch.num_rows, options.batch_rows):
                part = pa.Table.from_batches([batch.slice(s, options.batch_rows)])
                table = conn_table(part, path=path, locate=lambda k, s=s, f=locate: f(s + k),  # type: ignore[misc]
                                   options=options, lookups=lookups, passive=passive)  # fmt: skip
                yield table if label is None else label_table(label, table)
