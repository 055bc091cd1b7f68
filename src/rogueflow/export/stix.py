"""STIX 2.1 bundle of a findings document, built and checked with the ``stix2`` library.

What goes in (docs/exports.md has the full mapping):

* an ``identity`` for rogueflow (the ``created_by_ref`` of everything) and two
  ``extension-definition`` objects of ours: a ``cryptocurrency-wallet`` SCO (STIX 2.1
  has no wallet object; the type name and its ``value`` property follow the
  community wallet SCOs, e.g. OpenCTI's) and a property extension carrying a flow's
  Community ID and two-way totals on ``network-traffic``;
* per finding a ``note`` (statement, metrics, confidence, alternatives) and an
  ``opinion`` giving rogueflow's graded confidence in that note;
* per sample flow an ``observed-data`` over a ``network-traffic`` SCO with its
  ``ipv4-addr``/``ipv6-addr`` ends;
* per indicator an ``indicator`` with a STIX pattern (``[ipv4-addr:value = '…']``,
  ``[domain-name:value = '…']``, ``[cryptocurrency-wallet:value = '…']``), the SCO
  it names, and ``based-on`` relationships to the observed flows that show it;
* a ``report`` (published = the document's ``generated_at``) referring to all of it.

Ids are hashes of the report run and the object's content, shaped as UUIDv4 for
domain and relationship objects (as STIX asks) while observables keep STIX's own
UUIDv5 ids, so the same ``findings.json`` always gives the same bundle.
Both custom parts are registered with ``stix2``, so the bundle parses with
``allow_custom=False``; a consumer without our registrations parses it with
``allow_custom=True``.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import stix2
from stix2.base import SCO_DET_ID_NAMESPACE
from stix2.confidence.scales import none_low_med_high_to_value
from stix2.exceptions import DuplicateRegistrationError
from stix2.properties import IntegerProperty, StringProperty

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
    stable_uuid,
)

__all__ = ["bundle", "check", "render"]


def _fixed_id(kind: str, name: str) -> str:
    return f"{kind}--{stable_uuid(name)}"


# Objects that are the same in every bundle: fixed ids and a fixed creation time
# (the day rogueflow's export format was defined), so they never change between runs.
IDENTITY_ID = _fixed_id("identity", "stix:identity:rogueflow")
WALLET_EXT_ID = _fixed_id("extension-definition", "stix:extension:cryptocurrency-wallet:1")
FLOW_EXT_ID = _fixed_id("extension-definition", "stix:extension:flow-evidence:1")
FIXED_CREATED = datetime(2026, 11, 22, tzinfo=UTC)
# JSON Schemas of both extensions, one file per extension-definition id (the layout
# the OASIS validator's --schemas option reads).
SCHEMAS = Path(__file__).parent / "schemas"

# Confidence. rogueflow grades low / moderate / high; the `confidence` property uses
# STIX 2.1 Appendix A's None/Low/Med/High scale (Low → 15, Med → 50, High → 85, via
# stix2.confidence.scales), so a consumer maps the number back to the same word.
CONFIDENCE = {
    "low": none_low_med_high_to_value("Low"),
    "moderate": none_low_med_high_to_value("Med"),
    "high": none_low_med_high_to_value("High"),
}
# The opinion enum says how far the producer agrees with the object it refers to
# (here: our own note). High confidence → strongly-agree, moderate → agree, low →
# neutral: a low-confidence judgment is published but not endorsed. rogueflow never
# publishes a finding it disputes, so the disagree values are unused.
OPINION = {"low": "neutral", "moderate": "agree", "high": "strongly-agree"}

# Words of a role or finding id that describe hiding traffic rather than whose it is.
_ANONYMIZATION = re.compile(r"\b(tunnel\w*|vpn|tor|proxy|doh|obfuscation|opsec)\b")

# Layer-4 names for `protocols`: STIX wants names from IANA's Service Name registry,
# which has these; other IP protocols (GRE, AH, …) are written as the address family
# alone plus the IPFIX protocolIdentifier. ICMPv6 is "icmp" under "ipv6".
_PROTOCOLS = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmp", 132: "sctp"}
_PORTED = (6, 17, 132)  # protocols whose flows have real ports

_WALLET_SCHEMA = (
    "New SCO `cryptocurrency-wallet` (id contributing property: value). Properties: "
    "`value` (string, required): the wallet address as it appears on the chain; "
    "`symbol` (string, optional): the coin's ticker in upper case, e.g. XMR, BTC. "
    "Written by rogueflow for wallets named in its findings. JSON Schema: "
    "rogueflow/export/schemas/<this id>.json in the rogueflow package; docs/exports.md."
)
_FLOW_SCHEMA = (
    "Property extension of `network-traffic`. Properties: `community_id` (string, "
    "required): Community ID v1 of the flow's 5-tuple; `bytes`, `packets` (integer >= 0): "
    "both directions together as the flow source reported them; `service`, `category`, "
    "`evidence` (string): rogueflow's classification of the flow and why. JSON Schema: "
    "rogueflow/export/schemas/<this id>.json in the rogueflow package; docs/exports.md."
)


def _register() -> tuple[Any, bool]:
    """Register our SCO and property extension with stix2 (once per process).

    Returns the wallet class (or None when another library already owns the type
    name, in which case wallets are written as plain dicts) and whether our flow
    extension is registered.
    """
    wallet: Any = None
    try:

        @stix2.v21.CustomObservable(
            "cryptocurrency-wallet",
            [("value", StringProperty(required=True)), ("symbol", StringProperty())],
            id_contrib_props=["value"],
            extension_name=WALLET_EXT_ID,
        )
        class CryptocurrencyWallet:
            pass

        wallet = CryptocurrencyWallet
    except DuplicateRegistrationError:
        wallet = None
    try:

        @stix2.v21.CustomExtension(
            type=FLOW_EXT_ID,
            properties=[
                ("community_id", StringProperty(required=True)),
                ("bytes", IntegerProperty(min=0)),
                ("packets", IntegerProperty(min=0)),
                ("service", StringProperty()),
                ("category", StringProperty()),
                ("evidence", StringProperty()),
            ],
        )
        class FlowEvidence:
            extension_type = "property-extension"

        flow = True
    except DuplicateRegistrationError:
        flow = False
    return wallet, flow


_WALLET_CLASS, _FLOW_REGISTERED = _register()


def bundle(doc: dict[str, Any], source: str | None = None) -> stix2.Bundle:
    """The STIX 2.1 bundle of a findings document (``source`` names it in errors)."""
    return _Builder(read(doc, source)).build()


def render(doc: dict[str, Any], source: str | None = None) -> str:
    """The bundle as indented JSON text with a final newline.

    Properties keep stix2's spec order; stix2's own ``pretty=True`` reorders them
    in quadratic time (seconds for a few hundred objects), so it is not used.
    """
    compact = bundle(doc, source).serialize(ensure_ascii=False)
    return json.dumps(json.loads(compact), indent=2, ensure_ascii=False) + "\n"


def check(text: str) -> stix2.Bundle:
    """Parse a bundle strictly and check that every reference resolves inside it.

    Raises ``ValueError`` (stix2's parse errors are ValueErrors too) naming the
    object and property at fault.
    """
    parsed = stix2.parse(text, allow_custom=False)
    ids = {o["id"] for o in parsed.objects}
    for o in parsed.objects:
        for name, value in o.items():
            refs = value if name.endswith("_refs") else [value] if name.endswith("_ref") else []
            for ref in refs:
                if ref not in ids:
                    raise ValueError(f"{o['id']}: {name} refers to {ref}, not in the bundle")
    return parsed


class _Builder:
    def __init__(self, report: Report) -> None:
        self.r = report
        self.when = report.generated_at
        self.objects: dict[str, Any] = {}
        self.report_id = f"report--{report.uuid('stix', 'report')}"
        # per finding index: the observed-data and indicators it cites
        self.refs: dict[int, list[str]] = {f.index: [] for f in report.findings}

    def add(self, obj: Any) -> str:
        self.objects.setdefault(obj["id"], obj)
        return str(obj["id"])

    def sdo(self, cls: Any, *parts: object, **props: Any) -> str:
        """Add a domain object made by rogueflow now, id from the report run + ``parts``."""
        kind = cls._type
        return self.add(
            cls(
                id=f"{kind}--{self.r.uuid('stix', kind, *parts)}",
                created_by_ref=IDENTITY_ID,
                created=self.when,
                modified=self.when,
                **props,
            )
        )

    def build(self) -> stix2.Bundle:
        for obj in _fixed_objects():
            self.add(obj)
        observed = {s.key: self.observed(s, fs) for s, fs in merged_samples(self.r)}
        for ind, fs in merged_indicators(self.r):
            self.indicator(ind, fs, observed)
        for f in self.r.findings:
            self.note_and_opinion(f)
        self.add(
            stix2.Report(
                id=self.report_id,
                created_by_ref=IDENTITY_ID,
                created=self.when,
                modified=self.when,
                name=self.r.title,
                description=self.description(),
                published=self.when,
                report_types=["threat-report"],
                object_refs=list(self.objects),
                external_references=[
                    {"source_name": "rogueflow", "external_id": f"territory:{self.r.code}"}
                ],
            )
        )
        return stix2.Bundle(
            id=f"bundle--{self.r.uuid('stix', 'bundle')}",
            objects=list(self.objects.values()),
            allow_custom=_WALLET_CLASS is None or not _FLOW_REGISTERED,
        )

    def description(self) -> str:
        t, r = self.r.territory, self.r
        return (
            f"rogueflow {r.version} findings for {t.get('name')} ({r.code}; "
            f"address space {t.get('space', '—')}). Analysis window "
            f"{r.analysis_window.get('start')} to {r.analysis_window.get('end')}; data "
            f"{r.data_window.get('start')} to {r.data_window.get('end')}. "
            f"{len(r.findings)} findings; generated {iso(r.generated_at)}."
        )

    def observed(self, s: Sample, fs: list[Finding]) -> str:
        """observed-data over one flow's network-traffic SCO and its two addresses."""
        src, dst = _address(s.src), _address(s.dst)
        self.add(src)
        self.add(dst)
        family = "ipv6" if ":" in s.src else "ipv4"
        props: dict[str, Any] = {
            "start": s.ts_start,
            "end": s.ts_end,
            "is_active": False,  # a finished flow record (stix2 wants it explicit with `end`)
            "src_ref": src["id"],
            "dst_ref": dst["id"],
            "protocols": [family, _PROTOCOLS[s.proto]] if s.proto in _PROTOCOLS else [family],
        }
        if s.proto not in _PROTOCOLS:
            props["ipfix"] = {"protocolIdentifier": s.proto}
        if s.proto in _PORTED:
            props["src_port"], props["dst_port"] = s.src_port, s.dst_port
        ext: dict[str, Any] = {
            "extension_type": "property-extension",
            "community_id": s.community_id,
        }
        ext |= {"bytes": s.bytes, "packets": s.packets}
        ext |= {k: v for k, v in (("service", s.service), ("category", s.category)) if v}
        if s.evidence:
            ext["evidence"] = s.evidence
        traffic = stix2.NetworkTraffic(
            extensions={FLOW_EXT_ID: ext}, allow_custom=not _FLOW_REGISTERED, **props
        )
        self.add(traffic)
        oid = self.sdo(
            stix2.ObservedData,
            "observed",
            s.key,
            first_observed=s.ts_start,
            last_observed=s.ts_end,
            number_observed=1,
            object_refs=[traffic.id, src["id"], dst["id"]],
            external_references=[_ref(f) for f in fs],
        )
        for f in fs:
            self.refs[f.index].append(oid)
        return oid

    def indicator(self, ind: Indicator, fs: list[Finding], observed: dict[str, str]) -> None:
        self.add(_sco(ind))
        level = best_level(fs)
        valid_from = ind.first_seen or _period_start(fs) or self.when
        coin = f" ({ind.coin})" if ind.coin else ""
        desc = f"{_kind_word(ind.kind)}{coin} named by rogueflow: {roles(ind, fs)}."
        if sighting(ind):
            desc += f" Seen: {sighting(ind)}."
        iid = self.sdo(
            stix2.Indicator,
            "indicator",
            ind.kind,
            ind.value,
            name=f"{ind.role}: {ind.value}",
            description=desc,
            indicator_types=[_indicator_type(ind, fs)],
            pattern=_pattern(ind),
            pattern_type="stix",
            pattern_version="2.1",
            valid_from=valid_from,
            confidence=CONFIDENCE[level],
            labels=sorted({x.role for f in fs for x in f.indicators if x.value == ind.value}),
            external_references=[_ref(f) for f in fs],
        )
        for f in fs:
            self.refs[f.index].append(iid)
            if ind.kind not in ("ipv4-addr", "ipv6-addr"):
                continue
            for s in f.samples:
                if ind.value in (s.src, s.dst):
                    rid = self.sdo(
                        stix2.Relationship,
                        "based-on",
                        iid,
                        observed[s.key],
                        relationship_type="based-on",
                        source_ref=iid,
                        target_ref=observed[s.key],
                    )
                    self.refs[f.index].append(rid)

    def note_and_opinion(self, f: Finding) -> None:
        lines = [f.statement, ""]
        metrics = metric_lines(f.metrics)
        if metrics:
            lines += ["Metrics:", *(f"- {m}" for m in metrics), ""]
        lines.append(f"Confidence: {f.level}" + (f" ({'; '.join(f.reasons)})" if f.reasons else ""))
        if f.period:
            lines.append(f"Period: {f.period.get('start')} to {f.period.get('end')}")
        if f.alternatives:
            lines += ["", "Alternative explanations:", *(f"- {a}" for a in f.alternatives)]
        note_id = self.sdo(
            stix2.Note,
            "note",
            f.id,
            f.index,
            abstract=f.title,
            content="\n".join(lines),
            authors=["rogueflow"],
            object_refs=[self.report_id, *dict.fromkeys(self.refs[f.index])],
            confidence=CONFIDENCE[f.level],
            labels=[f"priority-{f.priority}"] if f.priority != "normal" else None,
            external_references=[_ref(f)],
        )
        self.sdo(
            stix2.Opinion,
            "opinion",
            f.id,
            f.index,
            opinion=OPINION[f.level],
            explanation=f"rogueflow grades this judgment {f.level} confidence"
            + (": " + "; ".join(f.reasons) if f.reasons else "."),
            authors=["rogueflow"],
            object_refs=[note_id],
            external_references=[_ref(f)],
        )


def _fixed_objects() -> list[Any]:
    common = {"created_by_ref": IDENTITY_ID, "created": FIXED_CREATED, "modified": FIXED_CREATED}
    return [
        stix2.Identity(
            id=IDENTITY_ID,
            created=FIXED_CREATED,
            modified=FIXED_CREATED,
            name="rogueflow",
            identity_class="system",
            description="rogueflow: network telemetry to sanctions-evasion intelligence.",
        ),
        stix2.v21.ExtensionDefinition(
            id=WALLET_EXT_ID,
            name="rogueflow cryptocurrency-wallet",
            description="A cryptocurrency wallet address as a cyber observable.",
            schema=_WALLET_SCHEMA,
            version="1.0.0",
            extension_types=["new-sco"],
            **common,
        ),
        stix2.v21.ExtensionDefinition(
            id=FLOW_EXT_ID,
            name="rogueflow flow evidence",
            description="Community ID and two-way totals of a flow record.",
            schema=_FLOW_SCHEMA,
            version="1.0.0",
            extension_types=["property-extension"],
            **common,
        ),
    ]


def _address(value: str) -> Any:
    return stix2.IPv6Address(value=value) if ":" in value else stix2.IPv4Address(value=value)


def _sco(ind: Indicator) -> Any:
    if ind.kind == "ipv4-addr":
        return stix2.IPv4Address(value=ind.value)
    if ind.kind == "ipv6-addr":
        return stix2.IPv6Address(value=ind.value)
    if ind.kind == "domain-name":
        return stix2.DomainName(value=ind.value)
    props = {"value": ind.value} | ({"symbol": ind.coin} if ind.coin else {})
    if _WALLET_CLASS is not None:
        return _WALLET_CLASS(**props)
    # Another library owns the type name: write ours as a dict with our extension.
    return {
        "type": "cryptocurrency-wallet",
        "spec_version": "2.1",
        # STIX's deterministic SCO id: uuid5 over the canonical JSON of the id property
        "id": "cryptocurrency-wallet--"
        + str(
            uuid.uuid5(
                SCO_DET_ID_NAMESPACE,
                json.dumps({"value": ind.value}, separators=(",", ":"), ensure_ascii=False),
            )
        ),
        **props,
        "extensions": {WALLET_EXT_ID: {"extension_type": "new-sco"}},
    }


def _pattern(ind: Indicator) -> str:
    kind = "cryptocurrency-wallet" if ind.kind == "wallet" else ind.kind
    quoted = ind.value.replace("\\", "\\\\").replace("'", "\\'")
    return f"[{kind}:value = '{quoted}']"


def _indicator_type(ind: Indicator, fs: list[Finding]) -> str:
    """`anonymization` for tunnel/VPN/Tor/proxy endpoints, else `attribution`.

    The indicators name infrastructure used by the territory's networks (pools,
    fronting hosts, servers): they point to who is behind traffic, not to malware.
    """
    words = re.sub(r"[._-]", " ", " ".join([ind.role, *(f.id for f in fs)]).lower())
    return "anonymization" if _ANONYMIZATION.search(words) else "attribution"


def _kind_word(kind: str) -> str:
    return {
        "ipv4-addr": "IPv4 address",
        "ipv6-addr": "IPv6 address",
        "domain-name": "Domain",
        "wallet": "Wallet",
    }[kind]


def _ref(f: Finding) -> dict[str, str]:
    return {"source_name": "rogueflow", "external_id": f.id, "description": f.title}


def _period_start(fs: list[Finding]) -> datetime | None:
    starts = []
    for f in fs:
        try:
            starts.append(datetime.fromisoformat(f.period["start"]).replace(tzinfo=UTC))
        except (KeyError, ValueError):
            continue
    return min(starts, default=None)
