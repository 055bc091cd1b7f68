"""Geolocation and origin-AS reference data: loaders for every format, and the embedded default.

Each loader has the signature ``(path) -> GeoTable`` (the ``rogueflow.intel.kinds``
registry names them) and raises :class:`~rogueflow.errors.InputError` naming the file
and the line or record for bad content; a loader never returns a partial table.

Values: country tables map to ISO 3166 codes (``"KP"``), ASN tables to
``(asn, organisation)`` pairs (``asn`` is ``None`` when the source has names only),
anonymizer tables to sorted tuples of flag names (``("is_anonymous", "is_tor_exit_node")``).
Nested ranges resolve to the most specific (see :mod:`rogueflow.intel.ranges`).
"""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from rogueflow import addr
from rogueflow.errors import InputError, MissingDependency
from rogueflow.intel.ranges import Range, RangeTable

GeoKind = Literal["country", "asn", "anonymous"]

# host-bit masks by number of host bits (0..128), split into high and low 64-bit halves
_HOST_HI = np.array([(1 << max(h - 64, 0)) - 1 for h in range(129)], dtype=np.uint64)
_HOST_LO = np.array([(1 << min(h, 64)) - 1 for h in range(129)], dtype=np.uint64)
_CC = re.compile(r"[A-Za-z]{2}")


@dataclass
class GeoTable:
    """A loaded geolocation / ASN / anonymizer table: ranges plus where they came from."""

    kind: GeoKind
    table: RangeTable
    source: str
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def values(self) -> list[Any]:
        return self.table.values

    @property
    def rows(self) -> int:
        return len(self.table)

    def lookup(self, addrs: pa.Array | pa.ChunkedArray | npt.NDArray[np.uint8]) -> Any:
        """Value index per address (``-1``: unknown); see :meth:`RangeTable.lookup`."""
        return self.table.lookup(addrs)

    def get(self, text: str) -> Any:
        return self.table.get(text)

    def describe(self) -> str:
        when = f", valid from {self.valid_from:%Y-%m-%d}" if self.valid_from else ""
        extra = "".join(
            f", {k} {len(v) if isinstance(v, list) else v}" for k, v in sorted(self.meta.items())
        )
        return (
            f"{self.kind} table from {self.source}: {self.rows} ranges, "
            f"{len(self.values)} distinct values{when}{extra}"
        )

    def _with_source(self, source: str) -> GeoTable:
        self.source = source
        return self

    def to_npz(self, path: str | Path) -> None:
        meta = dict(self.meta, kind=self.kind, source=self.source)
        meta["valid_from"] = self.valid_from.isoformat() if self.valid_from else None
        meta["valid_to"] = self.valid_to.isoformat() if self.valid_to else None
        self.table.to_npz(path, meta)

    @classmethod
    def from_npz(cls, path: str | Path) -> GeoTable:
        table, meta = RangeTable.load_npz(path)
        kind = meta.pop("kind", None)
        if kind not in ("country", "asn", "anonymous"):
            raise InputError(path, None, f"not a geo table (kind {kind!r})")
        vf, vt = meta.pop("valid_from", None), meta.pop("valid_to", None)
        return cls(
            kind,
            table,
            str(meta.pop("source", path)),
            datetime.fromisoformat(vf) if vf else None,
            datetime.fromisoformat(vt) if vt else None,
            meta,
        )


# ---- text input ----------------------------------------------------------------------


def _open_text(path: Path) -> io.TextIOBase:
    """A text stream over a plain, gzip or bzip2 file (by magic bytes, not by name)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(3)
        raw: Any
        if magic[:2] == b"\x1f\x8b":
            raw = gzip.open(path, "rb")  # noqa: SIM115 (closed with the wrapper)
        elif magic == b"BZh":
            raw = bz2.open(path, "rb")  # noqa: SIM115
        else:
            raw = open(path, "rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(path, None, f"cannot read: {exc.strerror or exc}") from None
    return io.TextIOWrapper(raw, encoding="utf-8", newline="")


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of each line; a truncated or non-text file fails at its line."""
    n = 0
    with _open_text(path) as fh:
        try:
            for n, line in enumerate(fh, 1):
                yield n, line.rstrip("\r\n")
        except (EOFError, OSError, UnicodeDecodeError, ValueError) as exc:
            problem = "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)
            raise InputError(
                path, f"line {n + 1}", f"{problem} (file damaged or cut short?)"
            ) from None


def _cidr_bounds(
    texts: list[str], path: Path, wheres: list[str]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """CIDR texts (``a.b.c.d/len``, ``x::/len`` or bare addresses) to (n, 2) start/end halves."""
    prefix, lengths = [], np.empty(len(texts), dtype=np.int64)
    for i, t in enumerate(texts):
        a, slash, ln = t.partition("/")
        prefix.append(a)
        if not slash:
            lengths[i] = -1
        elif ln.isdigit() and len(ln) <= 3:
            lengths[i] = int(ln)
        else:
            raise InputError(path, wheres[i], f"{t!r} is not a prefix")
    try:
        m = addr.to_matrix(addr.parse_array(prefix, path=str(path)))
    except InputError as exc:
        k = int((exc.where or "row 1").split()[-1]) - 1
        raise InputError(path, wheres[k], f"{texts[k]!r} is not a prefix") from None
    halves = m.view(">u8").reshape(-1, 2).astype(np.uint64)
    is4 = np.all(m[:, :12] == np.frombuffer(addr.V4_MAPPED_PREFIX, dtype=np.uint8), axis=1)
    width = np.where(is4, 32, 128)
    lengths = np.where(lengths < 0, width, lengths)
    bad = np.flatnonzero(lengths > width)
    if len(bad):
        k = int(bad[0])
        raise InputError(path, wheres[k], f"{texts[k]!r}: prefix length over {width[k]}")
    host = width - lengths
    start = halves.copy()
    start[:, 0] &= ~_HOST_HI[host]
    start[:, 1] &= ~_HOST_LO[host]
    end = start.copy()
    end[:, 0] |= _HOST_HI[host]
    end[:, 1] |= _HOST_LO[host]
    return start, end


def _build(
    kind: GeoKind,
    path: Path,
    starts: npt.NDArray[np.uint64],
    ends: npt.NDArray[np.uint64],
    values: list[Any],
    wheres: list[str],
    *,
    valid_from: datetime | None = None,
    meta: dict[str, Any] | None = None,
) -> GeoTable:
    if not values:
        raise InputError(path, None, f"no {kind} records found")
    index: dict[Any, int] = {}
    codes = np.fromiter((index.setdefault(v, len(index)) for v in values), np.int32, len(values))
    table = RangeTable.from_bounds(
        starts, ends, codes, list(index), source=str(path), wheres=wheres
    )
    return GeoTable(kind, table, str(path), valid_from, None, dict(meta or {}, records=len(values)))


def _country(text: str, path: Path, where: str) -> str | None:
    t = text.strip().strip('"')
    if t in ("", "-", "--"):
        return None  # unknown / unassigned in ip2location and RIR exports
    if not _CC.fullmatch(t):
        raise InputError(path, where, f"{text!r} is not a two-letter country code")
    return t.upper()


def _asn(text: str, path: Path, where: str) -> int:
    t = text.strip().strip('"')
    t = t[2:] if t[:2].upper() == "AS" else t
    if not t.isdigit() or int(t) >= 2**32:
        raise InputError(path, where, f"{text!r} is not an AS number")
    return int(t)


# ---- MaxMind DB ----------------------------------------------------------------------


def _mmdb_records(path: Path, meta: dict[str, Any]) -> Iterator[tuple[bytes, bytes, str, Any]]:
    try:
        import maxminddb
        from maxminddb.errors import InvalidDatabaseError
    except ImportError:
        raise MissingDependency("reading .mmdb files", "pip install maxminddb") from None
    try:
        reader = maxminddb.open_database(str(path))
    except (InvalidDatabaseError, OSError, ValueError, TypeError) as exc:
        raise InputError(path, None, f"not a MaxMind DB: {exc}") from None
    n = 0
    with reader:
        meta["database_type"] = str(reader.metadata().database_type)
        try:
            for n, (net, record) in enumerate(reader, 1):
                lo, hi = addr.prefix_range(str(net))
                yield lo, hi, f"record {n} ({net})", record
        except (InvalidDatabaseError, ValueError, KeyError, TypeError) as exc:
            raise InputError(path, f"record {n + 1}", f"damaged MaxMind DB: {exc}") from None


def _load_mmdb(path: Path, kind: GeoKind) -> GeoTable:
    starts: list[bytes] = []
    ends: list[bytes] = []
    values: list[Any] = []
    wheres: list[str] = []
    meta: dict[str, Any] = {"skipped": 0}
    for lo, hi, where, record in _mmdb_records(path, meta):
        if not isinstance(record, dict):
            raise InputError(path, where, f"record is {type(record).__name__}, not a map")
        value = _mmdb_value(kind, record, path, where)
        if value is None:
            meta["skipped"] += 1
            continue
        starts.append(lo)
        ends.append(hi)
        values.append(value)
        wheres.append(where)
    if not values:
        db = meta.get("database_type") or "MaxMind"
        raise InputError(path, None, f"no {kind} records in this {db} database")
    s = np.frombuffer(b"".join(starts), ">u8").reshape(-1, 2).astype(np.uint64)
    e = np.frombuffer(b"".join(ends), ">u8").reshape(-1, 2).astype(np.uint64)
    return _build(kind, path, s, e, values, wheres, meta=meta)


def _mmdb_value(kind: GeoKind, record: dict[str, Any], path: Path, where: str) -> Any:
    if kind == "country":
        for key in ("country", "registered_country"):
            sub = record.get(key)
            if isinstance(sub, dict) and sub.get("iso_code"):
                return _country(str(sub["iso_code"]), path, where)
        return None
    if kind == "asn":
        number = record.get("autonomous_system_number")
        if number is None:
            return None
        if not isinstance(number, int) or not 0 <= number < 2**32:
            raise InputError(
                path, where, f"autonomous_system_number {number!r} is not an AS number"
            )
        return (number, str(record.get("autonomous_system_organization") or ""))
    flags = tuple(sorted(k for k, v in record.items() if k.startswith("is_") and v is True))
    return flags or None


def load_country_mmdb(path: Path) -> GeoTable:
    """GeoLite2/GeoIP2 Country or City: ``country.iso_code``, else ``registered_country``."""
    return _load_mmdb(Path(path), "country")


def load_asn_mmdb(path: Path) -> GeoTable:
    """GeoLite2/GeoIP2 ASN (or ISP): ``(autonomous_system_number, organization)``."""
    return _load_mmdb(Path(path), "asn")


def load_anonymous_mmdb(path: Path) -> GeoTable:
    """GeoIP2 Anonymous IP: the ``is_*`` flags that are true, as a sorted tuple."""
    return _load_mmdb(Path(path), "anonymous")


# ---- CSV range tables ----------------------------------------------------------------

_START = {"start", "first", "ip_from", "range_start", "start_ip", "from", "first_ip", "ip_start"}
_END = {"end", "last", "ip_to", "range_end", "end_ip", "to", "last_ip", "ip_end"}
_NET = {"network", "cidr", "prefix", "net", "subnet", "ip_range"}
_CC_COLS = {"country", "cc", "iso_code", "country_code", "country_iso_code", "code"}
_ASN_COLS = {"asn", "autonomous_system_number", "as_number", "as_num", "origin"}
_ORG_COLS = {"org", "as", "autonomous_system_organization", "as_name", "organization", "name"}


def _is_address(text: str) -> bool:
    t = text.strip().strip('"')
    if t.isdigit():
        return True
    try:
        addr.prefix_range(t)
    except ValueError:
        return False
    return True


def _int_address(text: str, path: Path, where: str) -> bytes:
    """ip2location-style integers: IPv4 as 0..2**32-1, IPv6 (incl. ::ffff:a.b.c.d) as 128-bit."""
    n = int(text)
    if n >= 2**128:
        raise InputError(path, where, f"{text} is too large for an address")
    if n < 2**32:
        return addr.V4_MAPPED_PREFIX + n.to_bytes(4, "big")
    return n.to_bytes(16, "big")


def _load_csv(path: Path, kind: GeoKind) -> GeoTable:
    path = Path(path)
    texts: list[str] = []  # CIDR rows
    cidr_values: list[Any] = []
    cidr_wheres: list[str] = []
    range_items: list[Range] = []
    columns: dict[str, int] | None = None
    with _open_text(path) as fh:
        try:
            rows = list(enumerate(csv.reader(fh), 1))
        except (csv.Error, UnicodeDecodeError, EOFError, OSError, ValueError) as exc:
            raise InputError(path, None, f"not a CSV range table: {exc}") from None
    for n, row in rows:
        where = f"line {n}"
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if columns is None:
            columns = _columns(row, kind, path, where)
            if columns.get("header"):
                continue
        value = _csv_value(row, columns, kind, path, where)
        if "net" in columns:
            if value is not None:
                texts.append(_cell(row, columns["net"], path, where))
                cidr_values.append(value)
                cidr_wheres.append(where)
            continue
        lo_t = _cell(row, columns["start"], path, where)
        hi_t = _cell(row, columns["end"], path, where)
        try:
            lo = _int_address(lo_t, path, where) if lo_t.isdigit() else addr.parse_one(lo_t)
            hi = _int_address(hi_t, path, where) if hi_t.isdigit() else addr.parse_one(hi_t)
        except ValueError:
            raise InputError(path, where, f"{lo_t!r} - {hi_t!r} is not an address range") from None
        if value is not None:
            range_items.append((lo, hi, value, where))
    if texts:
        s, e = _cidr_bounds(texts, path, cidr_wheres)
    else:
        s = e = np.zeros((0, 2), dtype=np.uint64)
    values = cidr_values + [r[2] for r in range_items]
    wheres = cidr_wheres + [str(r[3]) for r in range_items]  # type: ignore[misc]
    if range_items:
        rs = np.frombuffer(b"".join(r[0] for r in range_items), ">u8").reshape(-1, 2)
        re_ = np.frombuffer(b"".join(r[1] for r in range_items), ">u8").reshape(-1, 2)
        s = np.concatenate([s, rs.astype(np.uint64)])
        e = np.concatenate([e, re_.astype(np.uint64)])
    return _build(kind, path, s, e, values, wheres)


def _cell(row: list[str], k: int, path: Path, where: str) -> str:
    if k >= len(row):
        raise InputError(path, where, f"expected at least {k + 1} fields, got {len(row)}")
    return row[k].strip()


def _columns(row: list[str], kind: GeoKind, path: Path, where: str) -> dict[str, int]:
    """Column positions from a header row, or the positional layout of a data row."""
    names = [c.strip().strip('"').lower() for c in row]
    if not _is_address(row[0]):
        found: dict[str, int] = {"header": 1}
        for key, aliases in (
            ("start", _START),
            ("end", _END),
            ("net", _NET),
            ("value", _CC_COLS if kind == "country" else _ASN_COLS),
            ("org", _ORG_COLS),
        ):
            hits = [i for i, nm in enumerate(names) if nm in aliases]
            if hits:
                found[key] = hits[0]
        if "start" in found and "end" in found:
            found.pop("net", None)  # ip2location ASN: ip_from, ip_to, cidr, asn, as
        if "value" not in found or not ("net" in found or ("start" in found and "end" in found)):
            raise InputError(
                path,
                where,
                f"header {row!r} names no {'country' if kind == 'country' else 'asn'} column "
                "and start/end or network columns",
            )
        return found
    if "/" in row[0]:
        return {"net": 0, "value": 1, "org": 2}
    return {"start": 0, "end": 1, "value": 2, "org": 3}


def _csv_value(
    row: list[str], columns: dict[str, int], kind: GeoKind, path: Path, where: str
) -> Any:
    text = _cell(row, columns["value"], path, where)
    if kind == "country":
        return _country(text, path, where)
    if text.strip('"') in ("", "-", "0"):
        return None  # ip2location and GeoLite2 CSVs mark unrouted space with 0 or -
    org_k = columns.get("org")
    org = row[org_k].strip() if org_k is not None and org_k < len(row) else ""
    return (_asn(text, path, where), org)


def load_country_csv(path: Path) -> GeoTable:
    """``start,end,cc`` (addresses or integers) or ``network,cc``; a header is detected."""
    return _load_csv(Path(path), "country")


def load_asn_csv(path: Path) -> GeoTable:
    """``start,end,asn[,org]`` or ``network,asn[,org]``; ``AS15169`` and ``15169`` both read."""
    return _load_csv(Path(path), "asn")


# ---- RIR delegated statistics ----------------------------------------------------------

_RIRS = {"apnic", "arin", "ripencc", "lacnic", "afrinic", "iana"}


def load_rir_delegated(path: Path) -> GeoTable:
    """RIR ``delegated-*[-extended]`` files: ``registry|cc|type|start|value|date|status[|id]``.

    IPv4 ``value`` is an address count (not always a power of two: the range is exact);
    IPv6 ``value`` is a prefix length. Only ``allocated`` and ``assigned`` records count.
    """
    path = Path(path)
    texts: list[str] = []
    v4: list[tuple[bytes, bytes]] = []
    values6: list[str] = []
    wheres6: list[str] = []
    values4: list[str] = []
    wheres4: list[str] = []
    file_date: datetime | None = None
    for n, line in _lines(path):
        where = f"line {n}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        f = line.split("|")
        if f[0].strip().isdigit() or f[0].strip().startswith("2."):
            # version line: version|registry|serial|records|startdate|enddate|UTCoffset
            if len(f) >= 6 and re.fullmatch(r"\d{8}", f[5]):
                file_date = max(file_date or _day(f[5]), _day(f[5]))
            continue
        if len(f) >= 6 and f[5].strip() == "summary":
            continue
        if len(f) < 7 or f[0].strip().lower() not in _RIRS:
            raise InputError(path, where, "expected registry|cc|type|start|value|date|status")
        if f[6].strip().lower() not in ("allocated", "assigned") or f[2] == "asn":
            continue
        cc = _country(f[1], path, where)
        if cc is None:
            continue
        if f[2] == "ipv4":
            try:
                start = int.from_bytes(addr.parse_one(f[3])[12:], "big")
                count = int(f[4])
            except ValueError:
                raise InputError(path, where, f"bad ipv4 record {f[3]!r} count {f[4]!r}") from None
            if count < 1 or start + count > 2**32 or ":" in f[3]:
                raise InputError(path, where, f"ipv4 {f[3]} + {count} addresses is not a range")
            v4.append(
                (
                    addr.V4_MAPPED_PREFIX + start.to_bytes(4, "big"),
                    addr.V4_MAPPED_PREFIX + (start + count - 1).to_bytes(4, "big"),
                )
            )
            values4.append(cc)
            wheres4.append(where)
        elif f[2] == "ipv6":
            if ":" not in f[3] or not f[4].isdigit() or int(f[4]) > 128:
                raise InputError(path, where, f"bad ipv6 record {f[3]!r}/{f[4]!r}")
            texts.append(f"{f[3]}/{f[4]}")
            values6.append(cc)
            wheres6.append(where)
        else:
            raise InputError(path, where, f"unknown record type {f[2]!r}")
    s6, e6 = _cidr_bounds(texts, path, wheres6) if texts else (np.zeros((0, 2), np.uint64),) * 2
    s4 = np.frombuffer(b"".join(a for a, _ in v4), ">u8").reshape(-1, 2).astype(np.uint64)
    e4 = np.frombuffer(b"".join(b for _, b in v4), ">u8").reshape(-1, 2).astype(np.uint64)
    return _build(
        "country",
        path,
        np.concatenate([s4, s6]),
        np.concatenate([e4, e6]),
        values4 + values6,
        wheres4 + wheres6,
        valid_from=file_date,
    )


def _day(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%d").replace(tzinfo=UTC)


# ---- country CIDR lists ----------------------------------------------------------------


def load_country_cidr_dir(path: Path) -> GeoTable:
    """A directory of ``<cc>.cidr`` files (recursively: ``ipv4/``, ``ipv6/``), or one file."""
    path = Path(path)
    files = sorted(path.rglob("*.cidr")) if path.is_dir() else [path]
    if not files:
        raise InputError(path, None, "no <cc>.cidr files in this directory")
    texts: list[str] = []
    values: list[str] = []
    wheres: list[str] = []
    for f in files:
        cc = _country(f.name.split(".")[0], f, "file name")
        start = len(texts)
        for n, line in _lines(f):
            t = line.split("#", 1)[0].strip()
            if t:
                texts.append(t)
                wheres.append(f"{f.name} line {n}")
        if cc is None:
            del texts[start:], wheres[start:]
        values.extend([cc] * (len(texts) - start))  # type: ignore[list-item]
    try:
        s, e = _cidr_bounds(texts, path, wheres)
    except InputError as exc:
        name, _, line = (exc.where or "").partition(" ")
        raise InputError(path / name if path.is_dir() else path, line, exc.problem) from None
    keep, conflicts = _resolve_duplicates(s, e, values, wheres)
    return _build(
        "country",
        path,
        s[keep],
        e[keep],
        [values[i] for i in np.flatnonzero(keep)],
        [wheres[i] for i in np.flatnonzero(keep)],
        meta={"conflicts": conflicts} if conflicts else None,
    )


_PSEUDO_CC = {"AP", "EU", "ZZ"}  # RIR region codes and "unknown", not countries


def _resolve_duplicates(
    s: npt.NDArray[np.uint64], e: npt.NDArray[np.uint64], values: list[str], wheres: list[str]
) -> tuple[npt.NDArray[np.bool_], list[str]]:
    """One prefix listed under several countries (per-country lists merged from RIR data).

    A real country beats a region code (AP, EU) or ZZ; two real countries leave the
    prefix unknown (never a guess) and the conflict is reported in ``describe()``.
    """
    keep = np.ones(len(values), dtype=bool)
    _, inverse, counts = np.unique(
        np.concatenate([s, e], axis=1), axis=0, return_inverse=True, return_counts=True
    )
    conflicts: list[str] = []
    for g in np.flatnonzero(counts > 1).tolist():
        members = np.flatnonzero(inverse.ravel() == g).tolist()
        real = {values[i] for i in members} - _PSEUDO_CC
        chosen = real or {values[i] for i in members}
        winner = next(iter(chosen)) if len(chosen) == 1 else None
        for i in members:
            keep[i] = values[i] == winner and i == min(k for k in members if values[k] == winner)
        if winner is None:
            labels = ", ".join(f"{values[i]} ({wheres[i]})" for i in members)
            conflicts.append(f"{_text(s[members[0]])}-{_text(e[members[0]])}: {labels}")
    return keep, conflicts


def _text(half: npt.NDArray[np.uint64]) -> str:
    return addr.format_one(((int(half[0]) << 64) | int(half[1])).to_bytes(16, "big"))


# ---- prefix -> origin AS ---------------------------------------------------------------


def load_pfx2as(path: Path) -> GeoTable:
    """pyasn ``ipasn`` files (``prefix<TAB>asn``, ``;`` comments) and CAIDA ``ip len asn``.

    Multi-origin entries (CAIDA ``a_b``, AS sets ``a,b``) keep the first origin.
    Plain, gzip or bzip2. A file cut short fails at its last line, never loads partially.
    """
    path = Path(path)
    texts: list[str] = []
    asns: list[int] = []
    wheres: list[str] = []
    for n, line in _lines(path):
        where = f"line {n}"
        t = line.strip()
        if not t or t[0] in ";#":
            continue
        f = t.split()
        if len(f) == 3 and f[1].isdigit():
            prefix, origin = f"{f[0]}/{f[1]}", f[2]
        elif len(f) == 2 and "/" in f[0]:
            prefix, origin = f[0], f[1]
        else:
            raise InputError(path, where, f"expected 'prefix<TAB>asn', got {t[:60]!r}")
        first = re.split(r"[_,{}]", origin.strip("{}"))[0]
        asns.append(_asn(first, path, where))
        texts.append(prefix)
        wheres.append(where)
    if not texts:
        raise InputError(path, None, "no prefix -> AS lines")
    s, e = _cidr_bounds(texts, path, wheres)
    return _build("asn", path, s, e, [(a, "") for a in asns], wheres)


def table_from_ranges(kind: GeoKind, ranges: Iterable[Range], source: str) -> GeoTable:
    """A GeoTable from ``(lo, hi, value[, where])`` ranges (tests, analyst overrides)."""
    return GeoTable(kind, RangeTable.from_ranges(ranges, source=source), source)


# ---- the embedded default ----------------------------------------------------------------
#
# Built in rogueflow.intel.embedded (country: geoip2fast; ASN: plevin-db-network), which
# imports this module; these typed forwarders keep the names here for the kinds registry
# and callers without an import cycle at load time.


def load_embedded_country(path: Path) -> GeoTable:
    """The embedded country data file (as named by ``embedded_snapshots()``)."""
    from rogueflow.intel import embedded

    return embedded.load_embedded_country(path)


def load_embedded_asn(path: Path) -> GeoTable:
    """The embedded ASN data file (as named by ``embedded_snapshots()``)."""
    from rogueflow.intel import embedded

    return embedded.load_embedded_asn(path)


def embedded_country(cache_dir: Path | None = None) -> GeoTable:
    """Country ranges from the package-embedded default (offline), cached as .npz."""
    from rogueflow.intel import embedded

    return embedded.embedded_country(cache_dir)


def embedded_asn(cache_dir: Path | None = None) -> GeoTable:
    """``(asn, name)`` ranges from the package-embedded default (offline), cached as .npz."""
    from rogueflow.intel import embedded

    return embedded.embedded_asn(cache_dir)


def embedded_snapshots(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Snapshot metadata of the embedded defaults (``[]`` when no package is installed)."""
    from rogueflow.intel import embedded

    return embedded.embedded_snapshots(cache_dir)
