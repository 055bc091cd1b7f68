"""Territory profiles: a watched state is data (TOML), not code.

A profile names its space by explicit prefixes and ASNs with validity
intervals, by country code (resolved from the geolocation snapshot valid at
the flow's time, see the enrichment stage), or both; explicit entries win.
See ``docs/territories.md`` for the file format.
"""

from __future__ import annotations

import ipaddress
import tomllib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from rogueflow import addr
from rogueflow.errors import ConfigError

DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Interval:
    valid_from: datetime = EPOCH
    valid_to: datetime = FOREVER

    def contains(self, t: datetime) -> bool:
        return self.valid_from <= t < self.valid_to


@dataclass(frozen=True)
class PrefixEntry:
    cidr: str
    asn: int | None
    valid: Interval
    note: str = ""

    @property
    def range(self) -> tuple[bytes, bytes]:
        return addr.prefix_range(self.cidr)


@dataclass(frozen=True)
class AsnEntry:
    asn: int
    name: str
    valid: Interval
    reason: str = ""


@dataclass(frozen=True)
class Territory:
    code: str
    iso: str
    name: str
    timezone: str
    working_days: frozenset[int]
    business_hours: tuple[time, time]
    aliases: tuple[str, ...] = ()
    countries: tuple[str, ...] = ()
    prefixes: tuple[PrefixEntry, ...] = ()
    asns: tuple[AsnEntry, ...] = ()
    upstreams: tuple[AsnEntry, ...] = ()
    exclude: tuple[AsnEntry, ...] = ()
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def describe_space(self) -> str:
        parts = [p.cidr for p in self.prefixes]
        parts += [f"AS{a.asn}" for a in self.asns]
        parts += [f"country {c}" for c in self.countries]
        return ", ".join(parts) or "(empty)"


def _when(value: Any, where: str, *, end: bool = False) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{where}: {value!r} is not a date or ISO timestamp") from None
        return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
    raise ConfigError(f"{where}: expected a date, got {value!r}")


def _interval(entry: dict[str, Any], where: str) -> Interval:
    vf = _when(entry["valid_from"], f"{where}.valid_from") if "valid_from" in entry else EPOCH
    vt = _when(entry["valid_to"], f"{where}.valid_to") if "valid_to" in entry else FOREVER
    if vt <= vf:
        raise ConfigError(
            f"{where}: valid_to {vt.isoformat()} is not after valid_from {vf.isoformat()}"
        )
    return Interval(vf, vt)


def _hhmm(value: Any, where: str) -> time:
    try:
        return time.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not HH:MM") from None


def _asn_list(data: dict[str, Any], key: str, src: str) -> tuple[AsnEntry, ...]:
    out = []
    for i, e in enumerate(data.get(key, [])):
        where = f"{src}: {key}[{i}]"
        if not isinstance(e, dict) or "asn" not in e:
            raise ConfigError(f"{where}: each entry needs an 'asn'")
        try:
            asn = int(e["asn"])
        except (TypeError, ValueError):
            raise ConfigError(f"{where}.asn: {e['asn']!r} is not a number") from None
        if not 0 < asn < 2**32:
            raise ConfigError(f"{where}.asn: {asn} is out of range")
        out.append(
            AsnEntry(asn, str(e.get("name", "")), _interval(e, where), str(e.get("reason", "")))
        )
    return tuple(out)


_KNOWN_KEYS = {
    "code",
    "iso",
    "name",
    "aliases",
    "timezone",
    "working_days",
    "business_hours",
    "countries",
    "prefixes",
    "asns",
    "upstreams",
    "exclude",
}


def parse_profile(text: str, source: str) -> Territory:
    """Parse and validate a profile; errors name the file and key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    for key in ("code", "name", "timezone"):
        if key not in data:
            raise ConfigError(f"{source}: missing required key {key!r}")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(unknown)}")
    code = str(data["code"]).lower()
    try:
        ZoneInfo(str(data["timezone"]))
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{source}: timezone {data['timezone']!r} is not an IANA zone") from None
    days = data.get("working_days", ["Mon", "Tue", "Wed", "Thu", "Fri"])
    try:
        working = frozenset(DAY_NAMES.index(str(d)[:3].title()) for d in days)
    except ValueError:
        raise ConfigError(
            f"{source}: working_days must be day names like 'Mon', got {days!r}"
        ) from None
    hours = data.get("business_hours", ["09:00", "18:00"])
    if not isinstance(hours, list) or len(hours) != 2:
        raise ConfigError(f"{source}: business_hours must be [start, end], got {hours!r}")
    bh = (
        _hhmm(hours[0], f"{source}: business_hours[0]"),
        _hhmm(hours[1], f"{source}: business_hours[1]"),
    )
    if bh[1] <= bh[0]:
        raise ConfigError(f"{source}: business_hours end {bh[1]} is not after start {bh[0]}")
    prefixes = []
    for i, e in enumerate(data.get("prefixes", [])):
        where = f"{source}: prefixes[{i}]"
        if not isinstance(e, dict) or "cidr" not in e:
            raise ConfigError(f"{where}: each prefix needs a 'cidr'")
        try:
            net = ipaddress.ip_network(str(e["cidr"]), strict=True)
        except ValueError as exc:
            raise ConfigError(f"{where}.cidr: {exc}") from None
        asn = int(e["asn"]) if "asn" in e else None
        prefixes.append(PrefixEntry(str(net), asn, _interval(e, where), str(e.get("note", ""))))
    countries = tuple(str(c).upper() for c in data.get("countries", []))
    for c in countries:
        if len(c) != 2 or not c.isalpha():
            raise ConfigError(f"{source}: countries: {c!r} is not an ISO 3166 alpha-2 code")
    return Territory(
        code=code,
        iso=str(data.get("iso", code)).upper(),
        name=str(data["name"]),
        timezone=str(data["timezone"]),
        working_days=working,
        business_hours=bh,
        aliases=tuple(str(a) for a in data.get("aliases", [])),
        countries=countries,
        prefixes=tuple(prefixes),
        asns=_asn_list(data, "asns", source),
        upstreams=_asn_list(data, "upstreams", source),
        exclude=_asn_list(data, "exclude", source),
        source=source,
    )


def builtin_codes() -> list[str]:
    root = resources.files("rogueflow.territory") / "profiles"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".toml"))


def load_builtin(code: str) -> Territory:
    root = resources.files("rogueflow.territory") / "profiles"
    res = root / f"{code.lower()}.toml"
    if not res.is_file():
        raise ConfigError(
            f"no built-in territory {code!r}; built in: {', '.join(builtin_codes())} "
            "(or pass --territory-file FILE)"
        )
    return parse_profile(res.read_text(), f"built-in:{code.lower()}.toml")


def load_file(path: str | Path) -> Territory:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read territory file ({exc.strerror})") from None
    return parse_profile(text, str(p))


def resolve(code: str | None, territory_file: str | Path | None = None) -> Territory:
    """A profile from ``--territory-file`` if given, else the built-in ``code``."""
    if territory_file is not None:
        t = load_file(territory_file)
        if code and t.code != code.lower():
            raise ConfigError(
                f"{territory_file}: profile code {t.code!r} differs from --territory {code!r}"
            )
        return t
    if not code:
        raise ConfigError("no territory given: pass --territory CODE or --territory-file FILE")
    return load_builtin(code)


def utc_offsets(zone: str, start: datetime, end: datetime) -> list[tuple[datetime, int]]:
    """The zone's UTC offset (seconds) as steps: [(from_utc, offset), ...] covering [start, end).

    Found by scanning in 6-hour steps and bisecting each change to the second.
    """
    tz = ZoneInfo(zone)

    def off(t: datetime) -> int:
        u = t.astimezone(tz).utcoffset()
        assert u is not None
        return int(u.total_seconds())

    steps = [(start, off(start))]
    t = start
    step = timedelta(hours=6)
    while t < end:
        nxt = min(t + step, end)
        if off(nxt) != steps[-1][1]:
            lo, hi = t, nxt
            while hi - lo > timedelta(seconds=1):
                mid = lo + (hi - lo) / 2
                if off(mid) == steps[-1][1]:
                    lo = mid
                else:
                    hi = mid
            hi = hi.replace(microsecond=0)
            steps.append((hi, off(hi)))
        t = nxt
    return steps
