"""The embedded default: country and ASN tables from data shipped in PyPI packages (offline).

* country: geoip2fast (MIT code; data built from MaxMind GeoLite2 Country, CC BY-SA 4.0).
  Its file is a pickle; we never hand it to ``pickle.load``: :class:`_SafeUnpickler`
  refuses every global, so only lists, dicts, strings, numbers and booleans can come out
  of it (no code can run), and the structure is validated before use.
* ASN: plevin-db-network (origin AS by majority of RIPE RIS peers, holders from the RIR
  databases, operator names from CAIDA AS-Org and PeeringDB), decoded with the plevin
  reader (Apache-2.0). Its file is LZMA blocks behind a JSON header: data only.

Each table is built once and cached as ``.npz`` keyed by package version and data sha256.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.metadata
import importlib.util
import lzma
import os
import pickle
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from rogueflow.errors import InputError, MissingDependency
from rogueflow.intel.geo import _CC, _HOST_HI, _HOST_LO, GeoTable, _build, _day

Kind = Literal["country", "asn"]
_MASK = 2**64 - 1
_CACHE_FORMAT = 2  # bump when the conversion below changes: old caches are then ignored


@dataclass(frozen=True)
class _Source:
    dist: str  # distribution name (pip install ...)
    module: str  # import name of the package holding the data file
    file: str  # data file relative to the package directory
    install: str


SOURCES: dict[Kind, _Source] = {
    "country": _Source("geoip2fast", "geoip2fast", "geoip2fast-asn-ipv6.dat.gz", "geoip2fast"),
    "asn": _Source(
        "plevin-db-network",
        "plevin_db_network",
        "data/plevin.network.plv",
        "plevin plevin-db-network",
    ),
}


def embedded_data_file(kind: Kind) -> tuple[Path, str]:
    """The data file behind ``kind`` and its package version; MissingDependency when absent."""
    src = SOURCES[kind]
    try:
        version = importlib.metadata.version(src.dist)
        spec = importlib.util.find_spec(src.module)
    except (importlib.metadata.PackageNotFoundError, ImportError, ValueError):
        spec = None
    if spec is None or spec.origin is None:
        raise MissingDependency(f"the embedded {kind} table", f"pip install {src.install}")
    path = Path(spec.origin).parent / src.file
    if not path.is_file():
        raise MissingDependency(f"{path.name} of {src.dist}", f"pip install {src.install}")
    return path, version


def _check_record(kind: Kind, path: Path, sha: str) -> None:
    """The installed wheel's RECORD names the data file's sha256: refuse a modified file."""
    src = SOURCES[kind]
    try:
        files = importlib.metadata.files(src.dist) or []
    except importlib.metadata.PackageNotFoundError:
        return
    for entry in files:
        if entry.hash is None or entry.hash.mode != "sha256":
            continue
        if Path(str(entry.locate())).resolve() == path.resolve():
            want = base64.urlsafe_b64decode(entry.hash.value + "==").hex()
            if want != sha:
                raise InputError(
                    path, None, f"sha256 {sha[:16]}… is not the one {src.dist} shipped"
                )
            return


# ---- country: geoip2fast -------------------------------------------------------------

_RESERVED_IDS = 16  # geoip2fast country ids below this are private/reserved ranges


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")


def _decode_geoip2fast(path: Path) -> tuple[str, list[Any]]:
    try:
        with gzip.open(path, "rb") as fh:
            header = _SafeUnpickler(fh).load()
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as exc:
        raise InputError(path, None, f"not a geoip2fast data file: {exc}") from None
    try:
        version, info, _total, db = header
        if version != 120 or not (info["country"] and info["asn"]) or len(db) != 10:
            raise ValueError(f"version {version}, layout {sorted(info)}")
        return str(info["info"]), list(db)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputError(path, None, f"unexpected geoip2fast layout: {exc}") from None


def _geoip2fast_ranges(
    path: Path, firsts: list[list[int]], lengths: list[list[int]], ids: list[list[int]]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """First address + prefix length per network -> (n, 2) start/end halves and ids."""
    first = [x for chunk in firsts for x in chunk]
    nl = np.fromiter((x for chunk in lengths for x in chunk), np.int64)
    code = np.fromiter((x for chunk in ids for x in chunk), np.int64)
    if not (len(first) == len(nl) == len(code)) or not all(type(x) is int for x in first[:1]):
        raise InputError(path, None, "geoip2fast lists of different lengths")
    hi = np.fromiter(((x >> 64) & _MASK for x in first), np.uint64, len(first))
    lo = np.fromiter((x & _MASK for x in first), np.uint64, len(first))
    # IPv4 networks are plain 32-bit integers there; move them into ::ffff:0:0/96
    is4 = (hi == 0) & (lo < np.uint64(2**32)) & (nl <= 32)
    lo = np.where(is4, lo | np.uint64(0xFFFF_0000_0000), lo)
    host = np.where(is4, 32, 128) - nl
    if (host < 0).any() or (nl < 0).any():
        raise InputError(path, None, "geoip2fast prefix length out of range")
    start = np.stack([hi & ~_HOST_HI[host], lo & ~_HOST_LO[host]], axis=1)
    end = np.stack([start[:, 0] | _HOST_HI[host], start[:, 1] | _HOST_LO[host]], axis=1)
    return start, end, code


def _country_table(path: Path, version: str) -> GeoTable:
    info, db = _decode_geoip2fast(path)
    _, _, names_cc, _, fip, _, id_cc, _, nl, _ = db
    s, e, ids = _geoip2fast_ranges(path, fip, nl, id_cc)
    names = [str(x).split(":")[0] for x in names_cc]
    if (ids < 0).any() or (ids >= len(names)).any():
        raise InputError(path, None, "geoip2fast ids point outside its name list")
    keep = ids >= _RESERVED_IDS
    keep &= np.array([_CC.fullmatch(names[i]) is not None for i in ids.tolist()], dtype=bool)
    built = re.search(r"(\d{8})$", info)
    return _build(
        "country",
        path,
        s[keep],
        e[keep],
        [names[i].upper() for i in ids[keep].tolist()],
        [f"network {i + 1}" for i in np.flatnonzero(keep).tolist()],
        meta={"data": info, "built": built.group(1) if built else ""},
    )._with_source(f"package:geoip2fast {version}")


# ---- ASN: plevin-db-network ----------------------------------------------------------

# sections of a plevin "network" file that the ASN table needs (plevin builder README,
# "File format"): the address spines, their links into the network rows, and the names
_NEEDED = (
    "spine.v4", "spine.v6", "spine.v4.network", "spine.v6.network", "col.network.asn",
    "col.network.handle", "link.network.operator", "col.operator.company", "strings",
)  # fmt: skip
_DECODE_ERRORS = (
    OSError, EOFError, ValueError, KeyError, IndexError, TypeError, OverflowError,
    struct.error, lzma.LZMAError,
)  # fmt: skip
_V4_BASE = 0xFFFF_0000_0000  # IPv4 goes into ::ffff:0:0/96, as rogueflow.addr stores it


def _plevin_file(path: Path) -> Any:
    try:
        from plevin.reader import File
    except ImportError:
        raise MissingDependency("the plevin reader", "pip install plevin") from None
    try:
        plv = File(path)
    except _DECODE_ERRORS as exc:
        raise InputError(path, "header", f"not a plevin database: {exc}") from None
    if not all(isinstance(plv.head.get(k), str) for k in ("built", "selection")):
        raise InputError(path, "header", "no 'built' / 'selection' in the plevin header")
    missing = [name for name in _NEEDED if name not in plv.sections]
    if missing:
        raise InputError(path, "header", f"no section {missing[0]} (not a network database)")
    return plv


def _column(path: Path, plv: Any, name: str) -> npt.NDArray[np.int64]:
    """One whole section as integers: ``count`` values, checked against the header."""
    section = plv.sections[name]
    try:
        if plv.head["sections"][name]["encoding"] == "index":  # addresses: group by group
            groups = -(-section.count // section.per_group)
            values: list[int] = [x for g in range(groups) for x in section.values(g)]
        else:
            values = [x for b in range(section.blocks) for x in section.whole(b)]
        if len(values) != section.count:
            raise ValueError(f"{len(values)} values, header says {section.count}")
        if name == "spine.v6":  # 128-bit starts: kept as Python ints in an object array
            return np.array(values, dtype=object)
        return np.array(values, dtype=np.int64)
    except _DECODE_ERRORS as exc:
        raise InputError(path, f"section {name}", f"cannot decode: {exc}") from None


def _checked_links(path: Path, name: str, links: npt.NDArray[np.int64], rows: int) -> None:
    bad = np.flatnonzero((links < 0) | (links > rows))
    if len(bad):
        where = f"section {name}, row {int(bad[0])}"
        raise InputError(path, where, f"link {int(links[bad[0]])} outside 0..{rows}")


def _network_values(path: Path, plv: Any) -> list[tuple[int | None, str]]:
    """``(asn, name)`` per network row: name = operator company, else the registry handle."""
    asn = _column(path, plv, "col.network.asn")
    handle = _column(path, plv, "col.network.handle")
    operator = _column(path, plv, "link.network.operator")
    company = _column(path, plv, "col.operator.company")
    strings = plv.sections["strings"]
    if not (len(asn) == len(handle) == len(operator)) or (asn < 0).any():
        raise InputError(path, "section col.network.asn", "network columns disagree")
    _checked_links(path, "link.network.operator", operator, len(company))
    for name, ids in (("col.network.handle", handle), ("col.operator.company", company)):
        _checked_links(path, name, ids, strings.count)
    try:
        text = functools.lru_cache(maxsize=None)(lambda i: str(strings[i]).strip())
        names = [
            text(int(company[o - 1])) if o and company[o - 1] else "" for o in operator.tolist()
        ]
        names = [n or text(h) for n, h in zip(names, handle.tolist(), strict=True)]
    except _DECODE_ERRORS as exc:
        raise InputError(path, "section strings", f"cannot decode: {exc}") from None
    return [(int(a) or None, n) for a, n in zip(asn.tolist(), names, strict=True)]


def _spine(
    path: Path, plv: Any, family: int
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """A spine's segments (each boundary runs to the next) as (n, 2) halves + network links."""
    starts = _column(path, plv, f"spine.v{family}")
    links = _column(path, plv, f"spine.v{family}.network")
    name = f"spine.v{family}"
    if len(starts) != len(links):
        raise InputError(path, f"section {name}.network", "length differs from its spine")
    top = (1 << (32 if family == 4 else 128)) - 1
    bounds = [int(x) for x in starts.tolist()]
    if bounds and (bounds[0] < 0 or bounds[-1] > top):
        raise InputError(path, f"section {name}", "address out of range")
    rising = [k for k in range(1, len(bounds)) if bounds[k] <= bounds[k - 1]][:1]
    if rising:
        raise InputError(path, f"section {name}, row {rising[0]}", "addresses not increasing")
    ends = [b - 1 for b in bounds[1:]] + [top]
    if family == 4:
        s4 = np.array(bounds, dtype=np.uint64) | np.uint64(_V4_BASE)
        e4 = np.array(ends, dtype=np.uint64) | np.uint64(_V4_BASE)
        zero = np.zeros(len(bounds), dtype=np.uint64)
        return np.stack([zero, s4], axis=1), np.stack([zero, e4], axis=1), links
    s = np.array([[b >> 64, b & _MASK] for b in bounds], dtype=np.uint64).reshape(-1, 2)
    e = np.array([[b >> 64, b & _MASK] for b in ends], dtype=np.uint64).reshape(-1, 2)
    # ::ffff:0:0/96 belongs to IPv4 (rogueflow.addr); the v6 spine marks it reserved anyway
    first, last = np.uint64(_V4_BASE), np.uint64(_V4_BASE | 0xFFFF_FFFF)
    mapped = (s[:, 0] == 0) & (s[:, 1] <= last) & ((e[:, 0] > 0) | (e[:, 1] >= first))
    return s, e, np.where(mapped, 0, links)


def _asn_table(path: Path, version: str) -> GeoTable:
    plv = _plevin_file(path)
    values = _network_values(path, plv)
    parts = [_spine(path, plv, 4), _spine(path, plv, 6)]
    for family, (_, _, links) in zip((4, 6), parts, strict=True):
        _checked_links(path, f"spine.v{family}.network", links, len(values))
    # segment -> network row; rows without an AS number and without a name say nothing
    known = np.array([False] + [v[0] is not None or bool(v[1]) for v in values], dtype=bool)
    s, e, wheres = [], [], []
    row_values: list[tuple[int | None, str]] = []
    for family, (starts, ends, links) in zip((4, 6), parts, strict=True):
        keep = np.flatnonzero(known[links])  # link 0: no network (reserved space)
        s.append(starts[keep])
        e.append(ends[keep])
        row_values += [values[i - 1] for i in links[keep].tolist()]
        wheres += [f"spine.v{family} row {k}" for k in keep.tolist()]
    table = _build(
        "asn",
        path,
        np.concatenate(s),
        np.concatenate(e),
        row_values,
        wheres,
        meta={"data": f"plevin {plv.selection} {plv.built}", "built": plv.built.replace("-", "")},
    )
    reader = importlib.metadata.version("plevin")
    table.meta["reader"] = f"plevin {reader}"
    return table._with_source(f"package:{SOURCES['asn'].dist} {version}")


# ---- building once, caching -------------------------------------------------------------

_BUILDERS = {"country": _country_table, "asn": _asn_table}


def _cache_path(cache_dir: Path | None, kind: Kind, sha: str, version: str) -> Path:
    root = cache_dir if cache_dir is not None else Path.home() / ".cache" / "rogueflow"
    dist = SOURCES[kind].dist
    return root / f"embedded-v{_CACHE_FORMAT}-{dist}-{version}-{sha[:16]}-{kind}.npz"


@functools.lru_cache(maxsize=8)
def _sha256(path: Path, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_LOADED: dict[tuple[str, str, str], GeoTable] = {}


def _cached(path: Path, kind: Kind, cache_dir: Path | None) -> GeoTable:
    path = Path(path)
    sha = _sha256(path, path.stat().st_mtime_ns)
    version = importlib.metadata.version(SOURCES[kind].dist)
    key = (sha, kind, str(cache_dir))
    if key in _LOADED:
        return _LOADED[key]
    _check_record(kind, path, sha)
    cached = _cache_path(cache_dir, kind, sha, version)
    table: GeoTable | None = None
    if cached.is_file():
        try:
            table = GeoTable.from_npz(cached)
        except InputError:
            table = None  # a torn or stale cache is rebuilt below
    if table is None or table.kind != kind:
        table = _BUILDERS[kind](path, version)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            tmp = cached.with_name(f".{cached.name}.{os.getpid()}.tmp.npz")
            table.to_npz(tmp)
            os.replace(tmp, cached)
        except OSError:
            pass  # a read-only home: the cache is an optimisation only
    _LOADED[key] = table
    return table


def load_embedded_country(path: Path) -> GeoTable:
    """The embedded country data file (as named by :func:`embedded_snapshots`)."""
    return _cached(Path(path), "country", None)


def load_embedded_asn(path: Path) -> GeoTable:
    """The embedded ASN data file (as named by :func:`embedded_snapshots`)."""
    return _cached(Path(path), "asn", None)


def embedded_country(cache_dir: Path | None = None) -> GeoTable:
    """Country ranges from the package-embedded default (offline), cached as .npz."""
    return _cached(embedded_data_file("country")[0], "country", cache_dir)


def embedded_asn(cache_dir: Path | None = None) -> GeoTable:
    """``(asn, name)`` ranges from the package-embedded default (offline), cached as .npz."""
    return _cached(embedded_data_file("asn")[0], "asn", cache_dir)


def embedded_snapshots(cache_dir: Path | None = None) -> list[dict[str, Any]]:
    """Snapshot metadata of the embedded defaults whose packages are installed."""
    out = []
    loaders: Sequence[tuple[str, Kind]] = (("geo-country", "country"), ("geo-asn", "asn"))
    for snapshot_kind, kind in loaders:
        try:
            path, version = embedded_data_file(kind)
            table = _cached(path, kind, cache_dir)
        except MissingDependency:
            continue
        sha = _sha256(path, path.stat().st_mtime_ns)
        built = str(table.meta.get("built") or "")
        retrieved = (
            _day(built)
            if re.fullmatch(r"\d{8}", built)
            else datetime.fromtimestamp(path.stat().st_mtime, UTC)
        )
        out.append(
            {
                "id": f"{snapshot_kind}:embedded:{sha[:12]}",
                "kind": snapshot_kind,
                "name": "embedded",
                "format": "embedded",
                "valid_from": None,
                "valid_to": None,
                "source": f"package:{SOURCES[kind].dist} {version}",
                "retrieved_at": retrieved,
                "sha256": sha,
                "path": path,
                "rows": table.rows,
            }
        )
    return out
