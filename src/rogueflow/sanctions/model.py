"""A sanctions list as rogueflow holds it: parties, their listed addresses, screening.

Both OFAC formats (:mod:`.ofac_xml`, :mod:`.ofac_csv`) parse into a
:class:`SanctionsList`; snapshots store its JSON form (:meth:`SanctionsList.to_json`)
beside the original file. Screening (:meth:`SanctionsList.screen`) validates the
address first (:func:`rogueflow.sanctions.addresses.check`), so an invalid address is
reported invalid, never "no match".
"""

from __future__ import annotations

import bz2
import functools
import gzip
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Any, cast

from rogueflow.errors import InputError
from rogueflow.sanctions.addresses import Checked, asset_code, candidate_keys, check

JSON_FORMAT = "rogueflow.sanctions/1"


@dataclass(frozen=True)
class Party:
    """A designated party. ``id`` is OFAC's profile id (the legacy CSV's ``ent_num``)."""

    id: str
    name: str
    kind: str = ""  # individual, entity, vessel, aircraft ("" when the list does not say)
    programmes: tuple[str, ...] = ()  # e.g. ("DPRK3", "CYBER2")
    designated: str | None = None  # ISO date of the entry ("Created" event), when listed

    @property
    def programme(self) -> str:
        return ", ".join(self.programmes)


@dataclass(frozen=True)
class Listing:
    """One address as the list names it, with its validation."""

    asset: str  # OFAC's code: XBT, ETH, USDT …
    address: str  # the listed spelling
    party_id: str
    key: str  # the spelling matching compares
    valid: bool | None
    check: str


@dataclass(frozen=True)
class Match:
    listing: Listing
    party: Party

    def to_json(self) -> dict[str, Any]:
        return {
            "listed_asset": self.listing.asset,
            "listed_address": self.listing.address,
            "party_id": self.party.id,
            "party": self.party.name,
            "programme": self.party.programme,
            "designated": self.party.designated,
        }


@dataclass(frozen=True)
class ScreenResult:
    """The answer for one screened address. ``match`` is None when validity is unknown
    and nothing is listed under its exact spelling, or when it is invalid."""

    checked: Checked
    match: bool | None
    matches: tuple[Match, ...]
    list_date: str | None
    snapshot: str | None = None

    def to_json(self) -> dict[str, Any]:
        first = self.matches[0] if self.matches else None
        out: dict[str, Any] = {
            "address": self.checked.text,
            "asset": first.listing.asset if first else self.checked.asset,
            "valid": self.checked.valid,
            "check": self.checked.check or None,
            "match": self.match,
            "party": first.party.name if first else None,
            "programme": first.party.programme if first else None,
            "list_date": self.list_date,
            "designated": first.party.designated if first else None,
            "snapshot": self.snapshot,
        }
        if len(self.matches) > 1:
            out["matches"] = [m.to_json() for m in self.matches]
        if self.checked.reason:
            out["reason"] = self.checked.reason
        return out


@dataclass
class SanctionsList:
    """One issue of a sanctions list."""

    source: str
    format: str  # "ofac-advanced-xml" | "ofac-sdn-csv"
    list_date: date | None
    parties: dict[str, Party]
    listings: list[Listing]
    problems: list[str] = field(default_factory=list)

    # ---- per-asset address sets ---------------------------------------------------------

    def assets(self) -> dict[str, int]:
        """Distinct addresses per asset (distinct by matching key)."""
        out: dict[str, set[str]] = {}
        for item in self.listings:
            out.setdefault(item.asset, set()).add(item.key)
        return {a: len(keys) for a, keys in sorted(out.items())}

    def addresses(self, asset: str | None = None) -> list[str]:
        """Listed spellings, one per matching key, sorted (code-point order)."""
        code = asset_code(asset)
        seen: dict[tuple[str, str], str] = {}
        for item in self.listings:
            if code is None or item.asset == code:
                seen.setdefault((item.asset, item.key), item.address)
        return sorted(set(seen.values()))

    def parties_with_addresses(self) -> set[str]:
        return {item.party_id for item in self.listings}

    # ---- screening ------------------------------------------------------------------

    @functools.cached_property
    def _index(self) -> dict[str, list[Listing]]:
        index: dict[str, list[Listing]] = {}
        for item in self.listings:
            index.setdefault(item.key, []).append(item)
            if item.valid is None:  # unknown formats also match case-insensitively
                index.setdefault(item.key.lower(), []).append(item)
        return index

    def lookup(self, key: str) -> list[Listing]:
        return list(self._index.get(key, ()))

    def screen(
        self, address: str, asset: str | None = None, snapshot: str | None = None
    ) -> ScreenResult:
        """Validate ``address`` and look it up; see :class:`ScreenResult`."""
        checked = check(address, asset)
        if checked.valid is False and asset is None:
            # a format inference cannot know (e.g. Solana): let the list say what it is
            for key in candidate_keys(checked.text):
                listed = self.lookup(key)
                if listed:
                    checked = check(address, listed[0].asset)
                    break
        lst = self.list_date.isoformat() if self.list_date else None
        if checked.valid is False:
            return ScreenResult(checked, None, (), lst, snapshot)
        keys = (checked.key,) if checked.valid else candidate_keys(checked.text)
        found: dict[tuple[str, str, str], Listing] = {}
        for key in keys:
            for item in self.lookup(key):
                found.setdefault((item.asset, item.address, item.party_id), item)
        matches = tuple(
            Match(item, self.parties.get(item.party_id) or Party(item.party_id, "(unknown party)"))
            for item in sorted(found.values(), key=lambda i: (i.party_id, i.asset, i.address))
        )
        if matches:
            return ScreenResult(checked, True, matches, lst, snapshot)
        return ScreenResult(checked, False if checked.valid else None, (), lst, snapshot)

    # ---- JSON (the parsed form a snapshot keeps) -------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": JSON_FORMAT,
            "source": self.source,
            "list_format": self.format,
            "list_date": self.list_date.isoformat() if self.list_date else None,
            "parties": [
                [p.id, p.name, p.kind, list(p.programmes), p.designated]
                for p in self.parties.values()
            ],
            "listings": [
                [i.asset, i.address, i.party_id, i.key, i.valid, i.check] for i in self.listings
            ],
            "problems": list(self.problems),
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str | Path | None = None) -> SanctionsList:
        if not isinstance(doc, dict) or doc.get("format") != JSON_FORMAT:
            raise InputError(where, None, f"not a {JSON_FORMAT} document")
        try:
            parties = {
                str(p[0]): Party(str(p[0]), str(p[1]), str(p[2]), tuple(p[3]), p[4])
                for p in doc["parties"]
            }
            listings = [
                Listing(str(i[0]), str(i[1]), str(i[2]), str(i[3]), i[4], str(i[5]))
                for i in doc["listings"]
            ]
            when = doc["list_date"]
            return cls(
                source=str(doc["source"]),
                format=str(doc["list_format"]),
                list_date=date.fromisoformat(when) if when else None,
                parties=parties,
                listings=listings,
                problems=[str(p) for p in doc.get("problems", [])],
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise InputError(where, None, f"damaged sanctions document ({exc})") from None


@contextmanager
def open_bytes(path: Path) -> Iterator[IO[bytes]]:
    """The file's bytes, decompressed when it starts with a bz2 or gzip magic."""
    with open(path, "rb") as raw:
        magic = raw.read(3)
        raw.seek(0)
        if magic == b"BZh":
            with bz2.BZ2File(raw) as fh:
                yield fh
        elif magic[:2] == b"\x1f\x8b":
            with gzip.GzipFile(fileobj=raw) as gz:
                yield cast(IO[bytes], gz)
        else:
            yield raw


def make_listing(asset: str, address: str, party_id: str) -> Listing:
    """Validate one listed address under its listed asset."""
    c = check(address, asset)
    return Listing(c.asset or asset, c.text, party_id, c.key, c.valid, c.check or c.reason)


def read_list(path: str | Path, list_date: date | None = None) -> SanctionsList:
    """Parse an OFAC list file, either format (compressed or not), detected by content."""
    from rogueflow.sanctions import ofac_csv, ofac_xml

    p = Path(path)
    if ofac_xml.looks_like_xml(p):
        return ofac_xml.parse(p)
    return ofac_csv.parse(p, list_date=list_date)


def merge_programmes(groups: Iterable[Iterable[str]]) -> tuple[str, ...]:
    """Programme codes in first-seen order, without repeats or blanks."""
    out: dict[str, None] = {}
    for group in groups:
        for code in group:
            if code.strip():
                out[code.strip()] = None
    return tuple(out)
