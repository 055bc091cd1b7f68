"""OFAC's "advanced" SDN XML (``sdn_advanced.xml``), streamed through defusedxml.

The full list is ~120 MB unpacked; it is read with :func:`defusedxml.ElementTree.iterparse`
and every record (a ``DistinctParty``, a ``SanctionsEntry``, a ``Location`` …) is
dropped from the tree as soon as it is read, so memory stays bounded by what is kept:
one small tuple per party plus the digital-currency addresses.

What is read:

- ``DateOfIssue`` → the list date;
- ``ReferenceValueSets`` → the id tables (feature types such as
  ``Digital Currency Address - XBT``, party types, list names, name-part types);
- ``DistinctParties`` → each profile's primary name, kind, and its digital-currency
  address features (a feature version marked reliability "False" is left out and
  counted in :attr:`SanctionsList.problems`);
- ``SanctionsEntries`` → each profile's programmes (the measures of type
  "Program", e.g. ``DPRK3``) and designation date (the earliest entry event).

Refused with :class:`~rogueflow.errors.InputError` naming the file: a DTD (and with it
every entity declaration, internal or external: billion laughs, XXE), malformed or
truncated XML, a truncated or corrupt bz2/gzip stream, and a document that is not an
OFAC advanced list. Input may be plain, bz2 or gzip (detected by magic bytes).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)
from defusedxml import ElementTree as SafeET

from rogueflow.errors import InputError
from rogueflow.sanctions.model import (
    Listing,
    Party,
    SanctionsList,
    make_listing,
    merge_programmes,
    open_bytes,
)

FORMAT = "ofac-advanced-xml"
DCA_PREFIX = "Digital Currency Address - "
_SECTIONS = ("ReferenceValueSets", "DistinctParties", "SanctionsEntries")
_NAME_ORDER = (
    "Last Name",
    "First Name",
    "Middle Name",
    "Patronymic",
    "Matronymic",
    "Maiden Name",
    "Nickname",
)


def _local(tag: str) -> str:
    """The tag without its namespace (OFAC has changed the namespace between issues)."""
    return tag.rpartition("}")[2]


def looks_like_xml(path: Path) -> bool:
    """True when the (decompressed) file starts like an XML document."""
    try:
        with open_bytes(path) as fh:
            head = fh.read(64)
    except (OSError, EOFError, zlib.error):
        return False
    return head.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"<")


class _Reader:
    """Accumulates what the stream yields, record by record."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.list_date: date | None = None
        self.tables: dict[str, dict[str, str]] = {}
        self.subtypes: dict[str, tuple[str, str]] = {}  # PartySubTypeID -> (type id, name)
        self.party_type: dict[str, str] = {}  # PartySubTypeID -> kind
        self.parties: dict[str, tuple[str, str]] = {}  # profile id -> (name, kind)
        self.listings: list[Listing] = []
        self.entries: dict[str, tuple[list[str], str | None]] = {}
        self.problems: list[str] = []
        self.sections: set[str] = set()

    # ---- reference tables -------------------------------------------------------------

    def reference(self, elem: Element) -> None:
        """A ``<…Values>`` table: ID attribute -> text of each child."""
        name = _local(elem.tag)
        table = {c.get("ID", ""): (c.text or "").strip() for c in elem}
        self.tables[name] = table
        if name == "PartySubTypeValues":
            self.subtypes = {
                c.get("ID", ""): (c.get("PartyTypeID", ""), table[c.get("ID", "")]) for c in elem
            }

    def _kinds(self) -> dict[str, str]:
        """PartySubTypeID -> kind; built once both tables (in either order) are read."""
        if not self.party_type:
            types = self.tables.get("PartyTypeValues", {})
            for sid, (tid, sub) in self.subtypes.items():
                # transport subtypes (vessel, aircraft) say more than their type
                kind = sub if sub and sub != "Unknown" else types.get(tid, "")
                self.party_type[sid] = kind.lower()
        return self.party_type

    # ---- parties ----------------------------------------------------------------------

    def party(self, elem: Element) -> None:
        features = self.tables.get("FeatureTypeValues")
        if features is None:
            raise InputError(
                self.path,
                None,
                "DistinctParties before the FeatureType table "
                "(ReferenceValueSets); not an OFAC advanced list",
            )
        for profile in elem:
            if _local(profile.tag) != "Profile":
                continue
            pid = profile.get("ID") or elem.get("FixedRef") or ""
            kind = self._kinds().get(profile.get("PartySubTypeID", ""), "")
            self.parties[pid] = (self._name(profile), kind)
            for feature in profile:
                if _local(feature.tag) != "Feature":
                    continue
                ftype = features.get(feature.get("FeatureTypeID", ""), "")
                if ftype.startswith(DCA_PREFIX):
                    self._feature(pid, ftype[len(DCA_PREFIX) :].strip(), feature)

    def _feature(self, pid: str, asset: str, feature: Element) -> None:
        reliability = self.tables.get("ReliabilityValues", {})
        for version in feature:
            if _local(version.tag) != "FeatureVersion":
                continue
            texts = [
                (d.text or "").strip() for d in version.iter() if _local(d.tag) == "VersionDetail"
            ]
            if reliability.get(version.get("ReliabilityID", ""), "") == "False":
                self.problems.append(f"profile {pid}: {asset} address marked False, left out")
                continue
            for text in texts:
                if text:
                    self.listings.append(make_listing(asset.upper(), text, pid))

    def _name(self, profile: Element) -> str:
        """The primary alias's primary (Latin) documented name, last name first."""
        identity = next(
            (i for i in profile if _local(i.tag) == "Identity" and i.get("Primary") == "true"),
            next((i for i in profile if _local(i.tag) == "Identity"), None),
        )
        if identity is None:
            return ""
        part_types = self.tables.get("NamePartTypeValues", {})
        group_type = {
            g.get("ID", ""): part_types.get(g.get("NamePartTypeID", ""), "")
            for g in identity.iter()
            if _local(g.tag) == "NamePartGroup"
        }
        aliases = [a for a in identity if _local(a.tag) == "Alias"]
        alias = next(
            (a for a in aliases if a.get("Primary") == "true"), aliases[0] if aliases else None
        )
        if alias is None:
            return ""
        names = [d for d in alias if _local(d.tag) == "DocumentedName"]
        doc = next(
            (d for d in names if d.get("DocNameStatusID") == "1"), names[0] if names else None
        )
        if doc is None:
            return ""
        parts = [
            (group_type.get(v.get("NamePartGroupID", ""), ""), (v.text or "").strip())
            for v in doc.iter()
            if _local(v.tag) == "NamePartValue"
        ]
        last = [t for k, t in parts if k == "Last Name"]
        rest = sorted(
            ((k, t) for k, t in parts if k != "Last Name"),
            key=lambda kt: _NAME_ORDER.index(kt[0]) if kt[0] in _NAME_ORDER else len(_NAME_ORDER),
        )
        if last and rest:
            return f"{' '.join(last)}, {' '.join(t for _, t in rest)}"
        return " ".join(t for _, t in parts)

    # ---- sanctions entries --------------------------------------------------------------

    def entry(self, elem: Element) -> None:
        pid = elem.get("ProfileID", "")
        types = self.tables.get("SanctionsTypeValues", {})
        programmes: list[str] = []
        dates: list[str] = []
        for child in elem:
            tag = _local(child.tag)
            if (
                tag == "SanctionsMeasure"
                and types.get(child.get("SanctionsTypeID", "")) == "Program"
            ):
                programmes.extend(
                    (c.text or "").strip() for c in child if _local(c.tag) == "Comment"
                )
            elif tag == "EntryEvent":
                for d in child:
                    if _local(d.tag) == "Date":
                        when = _ymd(d, self.path)
                        if when:
                            dates.append(when.isoformat())
        old_prog, old_date = self.entries.get(pid, ([], None))
        first = min([*dates, *([old_date] if old_date else [])], default=None)
        self.entries[pid] = (list(merge_programmes([old_prog, programmes])), first)

    def result(self) -> SanctionsList:
        missing = [s for s in _SECTIONS if s not in self.sections]
        if missing or self.list_date is None:
            what = ", ".join(missing + ([] if self.list_date else ["DateOfIssue"]))
            raise InputError(self.path, None, f"not an OFAC advanced SDN list (no {what})")
        parties = {}
        for pid, (name, kind) in self.parties.items():
            programmes, designated = self.entries.get(pid, ([], None))
            parties[pid] = Party(pid, name, kind, tuple(programmes), designated)
        return SanctionsList(
            str(self.path), FORMAT, self.list_date, parties, self.listings, self.problems
        )


def _ymd(elem: Element, path: Path) -> date | None:
    parts = {_local(c.tag): (c.text or "").strip() for c in elem}
    if not parts.get("Year"):
        return None
    try:
        return date(int(parts["Year"]), int(parts.get("Month") or 1), int(parts.get("Day") or 1))
    except ValueError:
        raise InputError(path, None, f"bad date {parts}") from None


def parse(path: str | Path) -> SanctionsList:
    """Stream ``path`` (plain, .bz2 or .gz) into a :class:`SanctionsList`."""
    p = Path(path)
    reader = _Reader(p)
    stack: list[Element] = []
    try:
        with open_bytes(p) as fh:
            events: Iterator[tuple[str, Any]] = SafeET.iterparse(
                fh, events=("start", "end"), forbid_dtd=True
            )
            for event, elem in events:
                if event == "start":
                    stack.append(elem)
                    continue
                stack.pop()
                _handle(reader, stack, elem)
    except DTDForbidden:
        raise InputError(
            p,
            None,
            "refused: the document has a DTD (<!DOCTYPE>); OFAC lists "
            "have none, and a DTD can declare entities",
        ) from None
    except EntitiesForbidden as exc:
        raise InputError(
            p,
            None,
            f"refused: entity declaration {exc.name!r} (entity expansion is never performed)",
        ) from None
    except ExternalReferenceForbidden as exc:
        raise InputError(
            p, None, f"refused: external reference {exc.sysid!r} (nothing outside the file is read)"
        ) from None
    except DefusedXmlException as exc:
        raise InputError(p, None, f"refused: {exc}") from None
    except ParseError as exc:
        line, col = getattr(exc, "position", (0, 0))
        raise InputError(p, f"line {line}, column {col}", _xml_problem(exc)) from None
    except EOFError:
        raise InputError(p, None, "truncated: the compressed stream ends early") from None
    except (LookupError, UnicodeError) as exc:  # e.g. encoding="foo" in the declaration
        raise InputError(p, None, f"unreadable text encoding ({exc})") from None
    except (OSError, zlib.error) as exc:
        raise InputError(p, None, f"cannot read: {exc}") from None
    except RecursionError:
        raise InputError(p, None, "elements nested too deeply") from None
    return reader.result()


def _xml_problem(exc: ParseError) -> str:
    text = str(exc).split(":", 1)[0]
    if text.startswith(("no element found", "unclosed token")):
        return f"truncated or malformed XML ({text})"
    return f"malformed XML ({text})"


def _handle(reader: _Reader, stack: list[Element], elem: Element) -> None:
    """Process a finished element and drop it (records at depth 2, sections at depth 1)."""
    depth = len(stack)
    if depth == 0:
        if _local(elem.tag) != "Sanctions":
            raise InputError(
                reader.path,
                None,
                f"root element <{_local(elem.tag)}>, expected "
                "<Sanctions>; not an OFAC advanced list",
            )
        return
    if depth == 1:
        name = _local(elem.tag)
        reader.sections.add(name)
        if name == "DateOfIssue":
            reader.list_date = _ymd(elem, reader.path)
        stack[0].remove(elem)
        return
    if depth == 2:
        section = _local(stack[1].tag)
        if section == "DateOfIssue":
            return  # Year/Month/Day: read when DateOfIssue ends
        if section == "ReferenceValueSets":
            reader.reference(elem)
        elif section == "DistinctParties" and _local(elem.tag) == "DistinctParty":
            reader.party(elem)
        elif section == "SanctionsEntries" and _local(elem.tag) == "SanctionsEntry":
            reader.entry(elem)
        stack[1].remove(elem)  # every record, read or not, leaves the tree
