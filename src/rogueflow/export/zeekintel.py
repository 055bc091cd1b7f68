"""Zeek intel file of the addresses and domains a findings document names.

The format is the one Zeek's intel framework loads through its ASCII input
reader (``redef Intel::read_files += { "intel.dat" };``): a ``#fields`` header,
then one tab-separated line per indicator, ``-`` for an unset field::

    #fields	indicator	indicator_type	meta.source	meta.desc	meta.url
    198.51.100.7	Intel::ADDR	rogueflow:kp	mining pool in crypto.mining.XMR …	-

* ``ipv4-addr`` / ``ipv6-addr`` → ``Intel::ADDR``; ``domain-name`` → ``Intel::DOMAIN``.
* Wallets are left out: Zeek has no wallet indicator type and never sees an
  address in the traffic it can match (``Intel::SOFTWARE`` would be a lie that
  never fires). They are in the STIX and MISP exports.
* Each indicator appears once (Zeek keeps one meta record per source, so a
  second line would replace the first); ``meta.desc`` names its role in every
  finding, the best confidence, and when it was seen. Low-confidence indicators
  are included — an intel hit only writes intel.log, which is what a lead is for
  — and their description says so.
"""

from __future__ import annotations

from typing import Any

from rogueflow.export.common import best_level, merged_indicators, read, roles, sighting

__all__ = ["FIELDS", "TYPES", "lines", "render"]

FIELDS = ("indicator", "indicator_type", "meta.source", "meta.desc", "meta.url")
TYPES = {"ipv4-addr": "Intel::ADDR", "ipv6-addr": "Intel::ADDR", "domain-name": "Intel::DOMAIN"}
SOURCE = "rogueflow"
UNSET = "-"  # Zeek's InputAscii::unset_field
EMPTY = "(empty)"  # Zeek's InputAscii::empty_field


def lines(doc: dict[str, Any], source: str | None = None) -> list[tuple[str, ...]]:
    """The intel rows (without the header), one per address or domain, document order."""
    r = read(doc, source)
    rows: list[tuple[str, ...]] = []
    for ind, fs in merged_indicators(r):
        if ind.kind not in TYPES:
            continue
        seen = sighting(ind)
        desc = f"{roles(ind, fs)}; {best_level(fs)} confidence" + (f"; seen {seen}" if seen else "")
        desc += (
            f"; {r.code} report {r.analysis_window.get('start')}..{r.analysis_window.get('end')}"
        )
        rows.append((ind.value, TYPES[ind.kind], f"{SOURCE}:{r.code}", _field(desc), UNSET))
    return rows


def render(doc: dict[str, Any], source: str | None = None) -> str:
    """The intel file's text: header and rows, tab-separated, newline-terminated."""
    out = ["#fields\t" + "\t".join(FIELDS)]
    out += ["\t".join(row) for row in lines(doc, source)]
    return "\n".join(out) + "\n"


def _field(text: str) -> str:
    """A string field Zeek reads back unchanged: no separators or line breaks, not a marker."""
    # Zeek unescapes \xHH in string fields, so a literal backslash is written escaped.
    text = " ".join(text.replace("\t", " ").split()).replace("\\", "\\x5c")
    if text == "":
        return EMPTY
    if text == UNSET:
        return "\\x2d"  # Zeek's ASCII escape for a literal "-"
    return text
