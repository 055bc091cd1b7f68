"""MISP event of a findings document, built with pymisp and checked against its templates.

* The event: ``info`` = report title (territory and window), ``date`` = the
  document's generation day, ``distribution`` 0 (this organisation only: sharing
  is the analyst's decision), ``analysis`` 2 (completed), a threat level from the
  findings (below) and tags ``rogueflow`` and ``rogueflow:territory="<code>"``.
* One event report per finding: statement, metrics, confidence with reasons,
  alternatives (MISP event reports are Markdown).
* One ``netflow`` object per sample flow (ip-src, ip-dst, ports, protocol,
  first/last packet seen, byte/packet count, community-id), commented with the
  findings citing it; its attributes are evidence, so ``to_ids`` is off.
* One ``coin-address`` object per wallet (``address`` for Bitcoin, ``address-xmr``
  for Monero when the value has that coin's format, ``address-crypto`` otherwise,
  plus ``symbol`` and first/last seen).
* One ``ip-dst``/``ip-src``/``domain`` attribute per address or domain named by a
  finding (pools, fronting hosts, servers), commented with its role in each.
  ``to_ids`` is set when the best finding naming it has moderate or high
  confidence, and every indicator carries the MISP ``estimative-language`` tag of
  that confidence.

Uuids are hashes of the report run and the content (see
:func:`rogueflow.export.common.stable_uuid`), so the same findings.json gives the
same event.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pymisp import MISPEvent, MISPObject

from rogueflow.export.common import (
    Finding,
    Indicator,
    Report,
    Sample,
    best_level,
    iso,
    merged_indicators,
    merged_samples,
    metric_lines,
    read,
    roles,
    sighting,
)

__all__ = ["check", "event", "render"]

# MISP threat levels: 1 high, 2 medium, 3 low, 4 undefined. A finding marked
# priority "high" (e.g. a sanctioned wallet) makes the event high; a finding that
# names indicators or sample flows at moderate or high confidence makes it medium;
# otherwise it is low (descriptive findings only, or only low-confidence leads).
THREAT_HIGH, THREAT_MEDIUM, THREAT_LOW = 1, 2, 3

_PROTOCOL = {6: "TCP", 17: "UDP", 1: "ICMP", 58: "ICMP"}  # the template's values_list; else "IP"
_PORTED = (6, 17, 132)

# MISP checks only that btc/xmr values are alphanumeric; a wallet goes into the
# coin's own relation when it also has that coin's address shape (base58 or bech32
# Bitcoin, 95-character Monero), else into address-crypto (text), so a malformed or
# mislabelled value is never filed as a Bitcoin or Monero address.
_BTC = re.compile(r"^([13][a-km-zA-HJ-NP-Z1-9]{25,34}|bc1[02-9ac-hj-np-z]{11,71})$")
_XMR = re.compile(r"^[48][0-9AB][1-9A-HJ-NP-Za-km-z]{93}$")

_CONFIDENCE_TAG = 'estimative-language:confidence-in-analytic-judgment="{}"'


def event(doc: dict[str, Any], source: str | None = None) -> MISPEvent:
    """The MISP event of a findings document (``source`` names it in errors)."""
    r = read(doc, source)
    e = MISPEvent()
    e.uuid = r.uuid("misp", "event")
    e.info = r.title
    e.set_date(r.generated_at.date())
    e.distribution = 0
    e.analysis = 2
    e.threat_level_id = _threat_level(r)
    e.published = False
    e.add_tag("rogueflow")
    e.add_tag(f'rogueflow:territory="{r.code}"')
    for f in r.findings:
        e.add_event_report(
            f"{f.id}: {f.title}", _report_markdown(f), uuid=r.uuid("misp", "report", f.id, f.index)
        )
    for s, fs in merged_samples(r):
        e.add_object(_netflow(r, s, fs))
    for ind, fs in merged_indicators(r):
        if ind.kind == "wallet":
            e.add_object(_coin_address(r, ind, fs))
        else:
            e.add_attribute(**_attribute(r, ind, fs))
    return e


def render(doc: dict[str, Any], source: str | None = None) -> str:
    """``{"Event": …}`` as MISP imports it, sorted keys, with a final newline."""
    body = json.loads(event(doc, source).to_json(sort_keys=True))
    return json.dumps({"Event": body}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def check(text: str) -> MISPEvent:
    """Load an event with pymisp and check every object against its MISP template.

    Raises ``ValueError`` naming the object and attribute at fault.
    """
    e = MISPEvent()
    e.load(text)
    types = e.describe_types
    for a in e.attributes:
        if a.type not in types["types"]:
            raise ValueError(f"attribute {a.uuid}: unknown MISP type {a.type!r}")
        if a.type not in types["category_type_mappings"].get(a.category, []):
            raise ValueError(f"attribute {a.uuid}: type {a.type} not allowed in {a.category!r}")
    for o in e.objects:
        template = MISPObject(o.name, strict=True)._definition
        if template is None:
            raise ValueError(f"object {o.uuid}: no MISP template named {o.name!r}")
        if str(o.template_uuid) != template["uuid"]:
            raise ValueError(f"object {o.uuid}: template_uuid is not {o.name}'s")
        for a in o.attributes:
            spec = template["attributes"].get(a.object_relation)
            if spec is None:
                raise ValueError(f"object {o.name} {o.uuid}: no relation {a.object_relation!r}")
            if a.type != spec["misp-attribute"]:
                raise ValueError(
                    f"object {o.name} {o.uuid}: {a.object_relation} has type {a.type}, "
                    f"the template says {spec['misp-attribute']}"
                )
            allowed = spec.get("values_list")
            if allowed and str(a.value) not in allowed:
                raise ValueError(
                    f"object {o.name} {o.uuid}: {a.object_relation} {a.value!r} not in {allowed}"
                )
        o._validate()  # required / requiredOneOf / multiple, by pymisp
    return e


def _threat_level(r: Report) -> int:
    if any(f.priority == "high" for f in r.findings):
        return THREAT_HIGH
    if any(f.level != "low" and (f.indicators or f.samples) for f in r.findings):
        return THREAT_MEDIUM
    return THREAT_LOW


def _report_markdown(f: Finding) -> str:
    lines = [f"# {f.title}", "", f.statement, ""]
    metrics = metric_lines(f.metrics)
    if metrics:
        lines += ["## Metrics", "", *(f"- {m}" for m in metrics), ""]
    lines += [f"**Confidence:** {f.level}", ""]
    if f.reasons:
        lines += [*(f"- {reason}" for reason in f.reasons), ""]
    if f.period:
        lines += [f"**Period:** {f.period.get('start')} to {f.period.get('end')}"]
    if f.alternatives:
        lines += ["", "## Alternative explanations", "", *(f"- {a}" for a in f.alternatives)]
    if f.indicators or f.samples:
        lines += [
            "",
            f"{len(f.indicators)} indicator(s) and {len(f.samples)} sample flow(s) "
            "are attached to this event.",
        ]
    lines += ["", f"rogueflow finding id: `{f.id}`"]
    return "\n".join(lines).rstrip() + "\n"


def _netflow(r: Report, s: Sample, fs: list[Finding]) -> MISPObject:
    o = MISPObject("netflow", strict=True)
    o.uuid = r.uuid("misp", "netflow", s.key)
    label = ", ".join(x for x in (s.service, s.category) if x)
    o.comment = f"sample flow of {', '.join(f.id for f in fs)}" + (f" ({label})" if label else "")
    values: list[tuple[str, Any]] = [
        ("ip-src", s.src),
        ("ip-dst", s.dst),
        ("ip_version", 6 if ":" in s.src else 4),
        ("protocol", _PROTOCOL.get(s.proto, "IP")),
        ("ip-protocol-number", s.proto),
        ("first-packet-seen", iso(s.ts_start)),
        ("last-packet-seen", iso(s.ts_end)),
        ("byte-count", s.bytes),
        ("packet-count", s.packets),
        ("community-id", s.community_id),
    ]
    if s.proto in _PORTED:
        # MISP's port type is 1–65535: a port 0 (seen in some flow sources) is left out.
        ports = [("src-port", s.src_port), ("dst-port", s.dst_port)]
        values[2:2] = [(rel, port) for rel, port in ports if port > 0]
    for relation, value in values:
        o.add_attribute(
            relation,
            value=value,
            uuid=r.uuid("misp", "netflow", s.key, relation),
            to_ids=False,  # evidence of what was seen, not a detection rule
        )
    return o


def _coin_address(r: Report, ind: Indicator, fs: list[Finding]) -> MISPObject:
    o = MISPObject("coin-address", strict=True)
    o.uuid = r.uuid("misp", "coin-address", ind.value)
    o.comment = roles(ind, fs)
    level = best_level(fs)
    if ind.coin == "BTC" and _BTC.match(ind.value):
        relation = "address"
    elif ind.coin == "XMR" and _XMR.match(ind.value):
        relation = "address-xmr"
    else:
        relation = "address-crypto"
    a = o.add_attribute(
        relation,
        value=ind.value,
        uuid=r.uuid("misp", "coin-address", ind.value, relation),
        to_ids=level != "low",
        comment=roles(ind, fs),
    )
    if a is not None:
        a.add_tag(_CONFIDENCE_TAG.format(level))
    extra: list[tuple[str, str]] = []
    if ind.coin:
        extra.append(("symbol", ind.coin))
    if ind.first_seen:
        extra.append(("first-seen", iso(ind.first_seen)))
    if ind.last_seen:
        extra.append(("last-seen", iso(ind.last_seen)))
    for relation, value in extra:
        o.add_attribute(
            relation, value=value, uuid=r.uuid("misp", "coin-address", ind.value, relation)
        )
    return o


def _attribute(r: Report, ind: Indicator, fs: list[Finding]) -> dict[str, Any]:
    level = best_level(fs)
    if ind.kind == "domain-name":
        kind = "domain"
    else:
        # ip-src when the findings' sample flows only ever show it as a source (a
        # prober reaching in); ip-dst for what the territory reaches out to.
        ends = {
            "src" if s.src == ind.value else "dst"
            for f in fs
            for s in f.samples
            if ind.value in (s.src, s.dst)
        }
        kind = "ip-src" if ends == {"src"} else "ip-dst"
    seen = sighting(ind)
    attr: dict[str, Any] = {
        "type": kind,
        "value": ind.value,
        "category": "Network activity",
        "to_ids": level != "low",
        "comment": roles(ind, fs) + (f" (seen: {seen})" if seen else ""),
        "uuid": r.uuid("misp", "attribute", ind.kind, ind.value),
        "Tag": [{"name": _CONFIDENCE_TAG.format(level)}],
    }
    if ind.first_seen:
        attr["first_seen"] = ind.first_seen
    if ind.last_seen:
        attr["last_seen"] = ind.last_seen
    return attr
