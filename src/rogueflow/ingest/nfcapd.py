"""nfcapd binary flow files (nfdump 1.6 and 1.7 layouts), read through the nfdump binary.

nfdump prints each record on one line in a format of ours (``FORMAT``); Arrow parses
that stream as it arrives, so memory stays bounded whatever the file size. nfdump
reports a bad file on stderr and may still exit 0, so both are checked.

Counters are as nfcapd stored them: nfcapd already multiplies packets and bytes by
the sampling rate the exporter announced, so records count as unsampled (1) unless
the user says otherwise.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from rogueflow import addr
from rogueflow.errors import ConfigError, InputError, MissingDependency
from rogueflow.ingest.base import NoCompanions, ReadOptions
from rogueflow.ingest.mapping import PROTO_NAMES
from rogueflow.schema import TIMESTAMP

#: nfdump's file magic, little-endian uint16 at offset 0, followed by the layout version
MAGIC = 0xA50C
LAYOUTS = (1, 2)  # 1: nfdump 1.6 (file_header_s), 2: nfdump 1.7 (fileHeaderV2_s)

# %ter of nfdump 1.7.1 drops the hundreds digit of the milliseconds (.915 prints as .015),
# so the end is %tsr + %td. %dp prints ICMP as "type.code"; %it/%ic give them as numbers.
COLUMNS: dict[str, pa.DataType] = {
    "tsr": pa.float64(), "td": pa.float64(), "pr": pa.string(),
    "sa": pa.string(), "da": pa.string(), "sp": pa.int64(), "dp": pa.string(),
    "flg": pa.string(), "ipkt": pa.int64(), "ibyt": pa.int64(),
    "opkt": pa.int64(), "obyt": pa.int64(), "ra": pa.string(),
    "it": pa.int64(), "ic": pa.int64(),
}  # fmt: skip
FORMAT = "fmt:" + ",".join(f"%{c}" for c in COLUMNS)
_NO_FLOWS = "No matching flows"
_NO_EXPORTER = ("0.0.0.0", "::", "0:0:0:0:0:0:0:0")
_STDERR_KEEP, _STDERR_LIMIT = 4096, 1 << 18
_MAX_MS = 2.0**33 * 1000  # beyond year 2242: garbage, and microseconds would overflow


def nfdump_binary(options: ReadOptions) -> str:
    """The nfdump to run (``--option nfdump=PATH`` overrides PATH lookup)."""
    found = shutil.which(options.extra.get("nfdump", "nfdump"))
    if found is None:
        raise MissingDependency("nfdump (needed to read nfcapd files)", "apt-get install nfdump")
    return found


def is_nfcapd(head: bytes) -> bool:
    if len(head) < 4:
        return False
    magic, layout = struct.unpack_from("<HH", head)
    return magic == MAGIC and layout in LAYOUTS


def tcp_flags(flg: pa.Array, path: Path, record0: int) -> np.ndarray[Any, Any]:
    """nfdump flag strings ("...AP.S.", or "CEUAPRSF"; 1.6 prints six) to bits, vectorised."""
    text = pc.utf8_trim_whitespace(pc.fill_null(flg, ""))
    ok = pc.match_substring_regex(text, r"^[.CEUAPRSF]{0,8}$").to_numpy(zero_copy_only=False)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise InputError(path, f"record {record0 + i + 1}", f"TCP flags {text[i].as_py()!r}")
    padded = pc.utf8_lpad(text, 8, ".")  # right-aligned: the last letter is always FIN
    out = np.zeros(len(flg), dtype=np.uint8)
    for pos in range(8):
        letter = pc.utf8_slice_codeunits(padded, pos, pos + 1)
        seen = pc.not_equal(letter, ".").to_numpy(zero_copy_only=False)
        out |= np.where(seen, 0x80 >> pos, 0).astype(np.uint8)
    return out


def _protocols(pr: pa.Array, path: Path, record0: int) -> np.ndarray[Any, Any]:
    text = pc.utf8_lower(pc.utf8_trim_whitespace(pr))
    names = pa.array(list(PROTO_NAMES))
    numbers = pa.array(list(PROTO_NAMES.values()), pa.int64())
    named = pc.take(numbers, pc.index_in(text, value_set=names))
    digits = pc.match_substring_regex(text, r"^[0-9]{1,3}$")
    numeric = pc.cast(pc.if_else(digits, text, "0"), pa.int64())
    proto = pc.coalesce(named, pc.if_else(digits, numeric, pa.scalar(None, pa.int64())))
    v = pc.fill_null(proto, -1).to_numpy()
    bad = (v < 0) | (v > 255)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"record {record0 + i + 1}", f"protocol {pr[i].as_py()!r}")
    return np.asarray(v, dtype=np.int64)


def records_table(t: pa.Table, path: Path, record0: int, options: ReadOptions) -> pa.Table:
    """nfdump's printed columns → canonical measured columns."""
    t = t.combine_chunks()
    where = f"record {record0 + 1}"
    nulls = [c for c in COLUMNS if c not in ("flg", "ra") and t.column(c).null_count]
    if nulls:
        col = t.column(nulls[0])
        i = int(np.flatnonzero(pc.is_null(col).to_numpy(zero_copy_only=False))[0])
        raise InputError(path, f"record {record0 + i + 1}", f"nfdump printed no {nulls[0]}")
    tsr = t.column("tsr").to_numpy()
    td = t.column("td").to_numpy()
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(tsr + td) | (tsr < 0) | (td < 0) | ((tsr + td) * 1000 > _MAX_MS)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(path, f"record {record0 + i + 1}", f"time {tsr[i]!r}+{td[i]!r}")
    start_ms = np.round(tsr * 1000).astype(np.int64)
    end_ms = start_ms + np.round(td * 1000).astype(np.int64)
    proto = _protocols(t.column("pr").chunk(0), path, record0)
    icmp = (proto == 1) | (proto == 58)
    dp_text = pc.if_else(pa.array(icmp), "0", pc.utf8_trim_whitespace(t.column("dp")))
    try:
        dport = pc.cast(dp_text, pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        raise InputError(path, where, "a destination port is not a number") from None
    icmp_port = t.column("it").to_numpy() * 256 + t.column("ic").to_numpy()
    dport = np.where(icmp, icmp_port, dport)
    sport = np.where(icmp, 0, t.column("sp").to_numpy())
    for name, v in (("source port", sport), ("destination port", dport)):
        out = (v < 0) | (v > 65535)
        if out.any():
            i = int(np.flatnonzero(out)[0])
            raise InputError(path, f"record {record0 + i + 1}", f"{name} {int(v[i])}")
    counters = {}
    for canon, col in (("packets", "ipkt"), ("bytes", "ibyt"), ("rev_packets", "opkt"),
                       ("rev_bytes", "obyt")):  # fmt: skip
        v = t.column(col).to_numpy()
        if (v < 0).any():
            i = int(np.flatnonzero(v < 0)[0])
            raise InputError(path, f"record {record0 + i + 1}", f"{col} {int(v[i])} is negative")
        counters[canon] = pa.array(v)
    ra = pc.utf8_trim_whitespace(pc.fill_null(t.column("ra"), ""))
    unset = pc.is_in(ra, value_set=pa.array(["", *_NO_EXPORTER]))
    exporter = pc.if_else(unset, pa.scalar(options.exporter, pa.string()), ra)
    return pa.table(
        {
            "ts_start": pa.array(start_ms * 1000).cast(TIMESTAMP),
            "ts_end": pa.array(end_ms * 1000).cast(TIMESTAMP),
            "src_addr": addr.parse_array(t.column("sa"), path=str(path), column="source address",
                                         row_offset=record0, row_label="record"),
            "dst_addr": addr.parse_array(t.column("da"), path=str(path),
                                         column="destination address", row_offset=record0,
                                         row_label="record"),
            "src_port": pa.array(sport.astype(np.uint16)),
            "dst_port": pa.array(dport.astype(np.uint16)),
            "proto": pa.array(proto.astype(np.uint8)),
            "tcp_flags": pa.array(tcp_flags(t.column("flg").chunk(0), path, record0)),
            **counters,
            "sampling_rate": pa.array(np.full(t.num_rows, options.sampling_rate or 1, np.uint32)),
            "exporter": exporter,
        }
    )  # fmt: skip


class NfdumpRun(io.RawIOBase):
    """nfdump as a child process whose stdout Arrow reads; it is killed when it stalls
    (no output for ``stall`` seconds while we wait) or floods stderr, as nfdump 1.7.1
    does on some corrupt files."""

    def __init__(self, cmd: list[str], stall: float) -> None:
        super().__init__()
        env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}  # '.' decimals; times are epoch anyway
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)  # fmt: skip
        self.stall, self.waiting_since, self.why = stall, 0.0, ""
        self.stderr = bytearray()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=f, daemon=True) for f in (self._drain, self._watch)]
        for t in self.threads:
            t.start()

    def readable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        out = bytearray()
        want = size if size and size > 0 else 1 << 20
        stdout = cast(io.BufferedReader, self.proc.stdout)
        while len(out) < want:
            self.waiting_since = time.monotonic()
            chunk = stdout.read1(want - len(out))
            self.waiting_since = 0.0
            if not chunk:
                break
            out += chunk
        return bytes(out)

    def _drain(self) -> None:
        stderr, total = cast(io.BufferedReader, self.proc.stderr), 0
        while chunk := stderr.read1(65536):
            if len(self.stderr) < _STDERR_KEEP:
                self.stderr += chunk[: _STDERR_KEEP - len(self.stderr)]
            total += len(chunk)
            if total > _STDERR_LIMIT and not self.why:
                self.why = "nfdump kept printing errors"
                self.proc.kill()

    def _watch(self) -> None:
        while not self.done.wait(0.2) and self.proc.poll() is None:
            since = self.waiting_since
            if since and time.monotonic() - since > self.stall and not self.why:
                self.why = f"nfdump made no progress for {self.stall:g} s"
                self.proc.kill()

    def finish(self, *, kill: bool) -> str | None:
        """Stop nfdump (at once when ``kill``); what went wrong, if anything."""
        if kill and self.proc.poll() is None:
            self.proc.kill()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()  # a writer still running ends by SIGPIPE
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        self.done.set()
        for t in self.threads:
            t.join()
        self.proc.stderr.close()
        lines = [ln for ln in self.stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
        message = "; ".join(lines[:2]) or "no message"
        if self.why:
            return f"{self.why} ({message})"
        if code or lines:
            return f"nfdump failed (exit {code}): {message}"
        return None


class NfcapdReader(NoCompanions):
    name = "nfcapd"
    description = "nfcapd binary flow files (nfdump 1.6/1.7), read with the nfdump binary"

    def sniff(self, path: Path, head: bytes) -> bool:
        return is_nfcapd(head)

    def read(self, path: Path, options: ReadOptions) -> Iterator[pa.Table]:
        binary = nfdump_binary(options)
        if not path.is_file():
            raise InputError(path, None, "no such file")
        try:
            stall = float(options.extra.get("nfdump_stall_seconds", 60))
        except ValueError:
            raise ConfigError("--option nfdump_stall_seconds takes a number of seconds") from None
        problems: list[str] = []

        def on_invalid(row: Any) -> str:
            text = (row.text or "").strip()
            if text == _NO_FLOWS or not text:
                return "skip"
            problems.append(f"record {row.number}: nfdump printed {text[:100]!r}")
            return "error"

        records, failed = 0, True
        run = NfdumpRun([binary, "-r", str(path), "-q", "-N", "-6", "-o", FORMAT], stall)
        try:
            reader = pacsv.open_csv(
                run,
                read_options=pacsv.ReadOptions(
                    column_names=list(COLUMNS), use_threads=False,
                    block_size=min(max(options.batch_rows * 120, 1 << 16), 1 << 24),
                ),
                parse_options=pacsv.ParseOptions(
                    quote_char=False, escape_char=False, invalid_row_handler=on_invalid
                ),
                convert_options=pacsv.ConvertOptions(column_types=COLUMNS),
            )  # fmt: skip
            for batch in reader:
                for s in range(0, batch.num_rows, options.batch_rows):
                    part = pa.Table.from_batches([batch.slice(s, options.batch_rows)])
                    yield records_table(part, path, records, options)
                    records += part.num_rows
            failed = False
        except (pa.ArrowInvalid, OSError) as exc:
            # a broken file usually explains itself on stderr; prefer that to Arrow's view
            problem = run.finish(kill=True) or (problems[0] if problems else str(exc))
            raise InputError(path, f"after record {records}", problem) from None
        finally:
            outcome = run.finish(kill=failed)  # again after the except above: harmless
        if outcome:
            raise InputError(path, f"after record {records}", outcome)
