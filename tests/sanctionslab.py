"""Small sanctions lists written by tests: OFAC advanced XML and legacy sdn.csv.

The XML follows the structure of the real list (the 2025-11-19 issue in
../shared/data/ofac-sdn): ReferenceValueSets with the id tables, a Locations section
(skipped by the parser), DistinctParties with profiles, names and digital-currency
features, and SanctionsEntries with the designation date and programmes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.sax.saxutils import escape

NS = "https://sanctionslistservice.ofac.treas.gov/api/PublicationPreview/exports/ADVANCED_XML"
ASSETS = ("XBT", "ETH", "XMR", "LTC", "ZEC", "DASH", "BCH", "USDT", "TRX", "XRP", "SOL")
FEATURE_ID = {a: 900 + i for i, a in enumerate(ASSETS)}


@dataclass
class ListedParty:
    id: int
    name: str  # "LAST, First" for individuals
    addresses: list[tuple[str, str]] = field(default_factory=list)  # (asset, address)
    programmes: tuple[str, ...] = ("DPRK3",)
    designated: tuple[int, int, int] = (2019, 9, 13)
    individual: bool = False
    false_address: tuple[str, str] | None = None  # a feature marked reliability "False"


def _name_parts(p: ListedParty) -> tuple[str, str]:
    """(DocumentedNamePart elements, NamePartGroup elements) of the primary name."""
    if p.individual and ", " in p.name:
        last, first = p.name.split(", ", 1)
        # first name written first on purpose: the parser orders by part type
        parts = [(p.id * 10 + 1, 1521, first), (p.id * 10, 1520, last)]
    else:
        parts = [(p.id * 10, 1525, p.name)]
    doc = "".join(
        f'<DocumentedNamePart><NamePartValue NamePartGroupID="{g}" ScriptID="215">'
        f"{escape(text)}</NamePartValue></DocumentedNamePart>"
        for g, _, text in parts
    )
    groups = "".join(
        f'<MasterNamePartGroup><NamePartGroup ID="{g}" NamePartTypeID="{t}" />'
        "</MasterNamePartGroup>"
        for g, t, _ in parts
    )
    return doc, groups


def _party(p: ListedParty) -> str:
    doc, groups = _name_parts(p)
    sub = 4 if p.individual else 3
    feats = []
    for n, (asset, address) in enumerate(p.addresses):
        feats.append(
            f'<Feature ID="{p.id * 100 + n}" FeatureTypeID="{FEATURE_ID[asset]}">'
            f'<FeatureVersion ID="{p.id * 100 + n}" ReliabilityID="1"><Comment />'
            f'<VersionDetail DetailTypeID="1432">{escape(address)}</VersionDetail>'
            f'</FeatureVersion><IdentityReference IdentityID="{p.id}" /></Feature>'
        )
    if p.false_address:
        asset, address = p.false_address
        feats.append(
            f'<Feature ID="{p.id * 100 + 99}" FeatureTypeID="{FEATURE_ID[asset]}">'
            f'<FeatureVersion ID="{p.id * 100 + 99}" ReliabilityID="1561"><Comment />'
            f'<VersionDetail DetailTypeID="1432">{escape(address)}</VersionDetail>'
            "</FeatureVersion></Feature>"
        )
    feats.append(  # a feature of another type, with no address in it
        f'<Feature ID="{p.id * 100 + 98}" FeatureTypeID="25"><FeatureVersion ID="1" '
        'ReliabilityID="1"><VersionLocation LocationID="25" /></FeatureVersion></Feature>'
    )
    return (
        f'<DistinctParty FixedRef="{p.id}"><Comment />'
        f'<Profile ID="{p.id}" PartySubTypeID="{sub}">'
        f'<Identity ID="{p.id}" FixedRef="{p.id}" Primary="true" False="false">'
        f'<Alias FixedRef="{p.id}" AliasTypeID="1400" Primary="false" LowQuality="true">'
        f'<DocumentedName ID="{p.id}9" DocNameStatusID="2"><DocumentedNamePart>'
        f'<NamePartValue NamePartGroupID="{p.id * 10 + 7}">AKA {escape(p.name)}</NamePartValue>'
        "</DocumentedNamePart></DocumentedName></Alias>"
        f'<Alias FixedRef="{p.id}" AliasTypeID="1403" Primary="true" LowQuality="false">'
        f'<DocumentedName ID="{p.id}" DocNameStatusID="1">{doc}</DocumentedName></Alias>'
        f"<NamePartGroups>{groups}</NamePartGroups></Identity>{''.join(feats)}"
        "</Profile></DistinctParty>"
    )


def _entry(p: ListedParty) -> str:
    y, m, d = p.designated
    progs = "".join(
        f'<SanctionsMeasure ID="{p.id}{i}" SanctionsTypeID="1"><Comment>{escape(c)}</Comment>'
        '<DatePeriod CalendarTypeID="1" /></SanctionsMeasure>'
        for i, c in enumerate(p.programmes)
    )
    return (
        f'<SanctionsEntry ID="{p.id}" ProfileID="{p.id}" ListID="1550">'
        f'<EntryEvent ID="{p.id}" EntryEventTypeID="1" LegalBasisID="1"><Comment />'
        f'<Date CalendarTypeID="1"><Year>{y}</Year><Month>{m}</Month><Day>{d}</Day></Date>'
        "</EntryEvent>"
        '<SanctionsMeasure ID="1" SanctionsTypeID="1705"><DatePeriod /></SanctionsMeasure>'
        f"{progs}</SanctionsEntry>"
    )


def advanced_xml(
    parties: list[ListedParty], issued: tuple[int, int, int] = (2025, 1, 2), ns: str = NS
) -> str:
    """An advanced-XML document for ``parties``, issued on ``issued``."""
    y, m, d = issued
    features = "".join(
        f'<FeatureType ID="{FEATURE_ID[a]}" FeatureTypeGroupID="1">'
        f"Digital Currency Address - {a}</FeatureType>"
        for a in ASSETS
    )
    xmlns = f' xmlns="{ns}"' if ns else ""
    return (
        '<?xml version="1.0" encoding="utf-8" standalone="yes"?>\n'
        f'<Sanctions{xmlns} Version="3">\n'
        f'<DateOfIssue CalendarTypeID="1"><Year>{y}</Year><Month>{m}</Month><Day>{d}</Day>'
        "</DateOfIssue>\n<ReferenceValueSets>\n"
        '<FeatureTypeValues><FeatureType ID="25" FeatureTypeGroupID="1">Location</FeatureType>'
        f"{features}</FeatureTypeValues>\n"
        '<NamePartTypeValues><NamePartType ID="1520">Last Name</NamePartType>'
        '<NamePartType ID="1521">First Name</NamePartType>'
        '<NamePartType ID="1525">Entity Name</NamePartType></NamePartTypeValues>\n'
        '<PartySubTypeValues><PartySubType ID="1" PartyTypeID="4">Vessel</PartySubType>'
        '<PartySubType ID="3" PartyTypeID="2">Unknown</PartySubType>'
        '<PartySubType ID="4" PartyTypeID="1">Unknown</PartySubType></PartySubTypeValues>\n'
        '<PartyTypeValues><PartyType ID="1">Individual</PartyType>'
        '<PartyType ID="2">Entity</PartyType><PartyType ID="4">Transport</PartyType>'
        "</PartyTypeValues>\n"
        '<ReliabilityValues><Reliability ID="1561">False</Reliability>'
        '<Reliability ID="1">Unknown</Reliability></ReliabilityValues>\n'
        '<SanctionsTypeValues><SanctionsType ID="1705">Block</SanctionsType>'
        '<SanctionsType ID="1">Program</SanctionsType></SanctionsTypeValues>\n'
        "</ReferenceValueSets>\n"
        '<Locations><Location ID="25"><LocationPart LocPartTypeID="1451">'
        "<LocationPartValue><Value>Pyongyang</Value></LocationPartValue></LocationPart>"
        "</Location></Locations>\n"
        "<DistinctParties>\n"
        + "\n".join(_party(p) for p in parties)
        + "\n</DistinctParties>\n<SanctionsEntries>\n"
        + "\n".join(_entry(p) for p in parties)
        + "\n</SanctionsEntries>\n</Sanctions>\n"
    )


def legacy_csv(parties: list[ListedParty]) -> str:
    """The legacy sdn.csv rows for ``parties`` (CRLF lines, the 0x1A end marker)."""
    rows = []
    for p in parties:
        remarks = "; alt. ".join(
            f"Digital Currency Address - {a} {addr}" for a, addr in p.addresses
        )
        remarks = (remarks + ".") if remarks else "-0- "
        kind = '"individual"' if p.individual else "-0- "
        prog = "] [".join(p.programmes)
        rows.append(
            f'{p.id},"{p.name}",{kind},"{prog}",-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,-0- ,"{remarks}"'
        )
    return "\r\n".join(rows) + "\r\n\x1a"
