"""Exports: STIX 2.1 (stix2 + the OASIS validator), MISP (pymisp templates), Zeek intel.

Two documents: the real report of the small demo (whatever indicators and
samples today's analyses produce), and that report plus a finding built from
the demo's real mining-pool flows (sample flows straight from the store, their
pools and addresses as indicators) with wallets and an IPv6 flow added, so
every object type of every format is exercised.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import stix2
from click.testing import CliRunner
from pymisp import MISPEvent

from rogueflow import export
from rogueflow.addr import parse_one
from rogueflow.analyze.base import sample_flows
from rogueflow.analyze.context import load_profile, open_scope
from rogueflow.cli.main import cli
from rogueflow.errors import InputError
from rogueflow.export import misp, stix, zeekintel
from rogueflow.findings import (
    Confidence,
    Finding,
    Indicator,
    Metric,
    Provenance,
    Query,
    SampleFlow,
    document,
)
from rogueflow.flowkey import community_id
from rogueflow.workspace import Workspace
from tests.conftest import DemoRun

pytestmark = pytest.mark.slow  # builds the demo's report once (about half a minute)

XMR_WALLET = (
    "44AFFq5kSiGBoZ4NMDwYtN18obc8AemS33DBLWs3H7otXft3X"
    "jrpDtQGv7SqSsaBYBb98uNbr2VBBEt7f2wfn3RVGQBEP3A"
)
BTC_WALLET = "bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh"
LTC_WALLET = "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9"
# Ids of the findings this file adds; distinct from every real analysis's ids.
MINING, TUNNEL = "export_test.mining_wallets", "export_test.tunnel"
V6_SRC, V6_DST = "2001:db8:85a3::8a2e:370:7334", "175.45.176.9"


@pytest.fixture(scope="module")
def demo_ws(demo_reference: DemoRun) -> Workspace:
    """The session's small reference demo (ingested and reported once)."""
    return demo_reference.ws


@pytest.fixture(scope="module")
def real_doc(demo_reference: DemoRun) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((demo_reference.report_dir / "findings.json").read_text())
    return doc


@pytest.fixture(scope="module")
def rich_doc(demo_ws: Workspace, real_doc: dict[str, Any]) -> dict[str, Any]:
    """The real report plus a mining finding built from the store's pool flows."""
    scope = open_scope(demo_ws, load_profile("kp", None))
    try:
        samples = sample_flows(scope, "pool samples", "pool IS NOT NULL", 6)
        pools = scope.rows(
            "pools",
            "SELECT pool, min(ts_utc) AS first, max(ts_utc) AS last, count(*) AS n "
            "FROM territory_flows WHERE pool IS NOT NULL GROUP BY pool ORDER BY pool",
        )
    finally:
        scope.close()
    assert samples and pools, "the demo has mining-pool flows"
    prov = Provenance(
        real_doc["analysis_window"],
        real_doc["data_window"],
        {"code": "kp"},
        ("demo",),
        (),
        (Query("pools", "SELECT …"),),
        "0.1.0",
        real_doc["generated_at"],
    )
    v6 = SampleFlow(
        "2019-03-01T08:00:00.250000Z",
        "2019-03-01T08:00:02.000000Z",
        V6_SRC,
        V6_DST,
        17,
        5353,
        53,
        2,
        180,
        community_id(parse_one(V6_SRC), parse_one(V6_DST), 17, 5353, 53),
    )
    inds = [
        Indicator("domain-name", p["pool"], "mining pool", _z(p["first"]), _z(p["last"]), p["n"])
        for p in pools
    ]
    inds += [Indicator("ipv4-addr", s.dst, "pool server", s.ts_start, s.ts_end, 1) for s in samples]
    inds += [
        Indicator(
            "wallet", XMR_WALLET, "mining payout wallet", "2018-05-01T00:00:00Z", None, 9, "XMR"
        ),
        Indicator("wallet", BTC_WALLET, "payment wallet", "2018-06-01", None, 2, "btc"),
        Indicator("wallet", LTC_WALLET, "payment wallet", None, None, None, "LTC"),
    ]
    mining = Finding(
        MINING,
        "Monero mining",
        "We assess with moderate confidence that hosts in the territory mined Monero.",
        dict(real_doc["analysis_window"]),
        {"multiplier": Metric(4.2, 3.1, 5.5, "×", "ratio of means"), "flows": Metric(len(samples))},
        Confidence("moderate", ("pool flows on many days",)),
        (),
        (),
        prov,
        ("a research project",),
        ("multiplier",),
        tuple(inds),
        (*samples, v6),
        "high",
    )
    tunnel = Finding(
        TUNNEL,
        "Tunnel endpoint",
        "We assess with low confidence that one IPv6 peer is a tunnel endpoint.",
        dict(real_doc["analysis_window"]),
        {},
        Confidence("low", ("one flow",)),
        (),
        (),
        prov,
        indicators=(Indicator("ipv6-addr", V6_SRC, "tunnel endpoint"),),
        samples=(v6,),
    )
    extra = document([mining, tunnel], {})["findings"]
    return {**real_doc, "findings": [*real_doc["findings"], *extra]}


def _z(t: Any) -> str:
    return str(t.isoformat()) + "Z"


# --- STIX ---------------------------------------------------------------------------------


def _objects(text: str) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = json.loads(text)["objects"]
    return objs


def _validator(text: str, **options: Any) -> Any:
    from stix2validator import ValidationOptions, validate_string

    return validate_string(text, ValidationOptions(schema_dir=str(stix.SCHEMAS), **options))


# The OASIS validator's warnings we accept, each for a stated reason:
# 103 on cryptocurrency-wallet: the validator only knows the spec's SCO types and asks
#     a custom type for a UUIDv4; STIX 2.1 asks SCOs for UUIDv5, which we give.
# 301: a flow of a port-less protocol (GRE, ESP …) has no ports to give.
ACCEPTED = {("103", "cryptocurrency-wallet"), ("301", "network-traffic")}


def _warnings(result: Any) -> set[tuple[str, str]]:
    out = set()
    for w in result.warnings:
        m = re.match(r"\s*(?:([\w-]+)--[0-9a-f-]+: )?\{(\d+)\}", str(w))
        assert m, str(w)
        out.add((m.group(2), m.group(1) or ""))
    return out


@pytest.mark.parametrize("which", ["real_doc", "rich_doc"])
def test_stix_validates(which: str, request: pytest.FixtureRequest) -> None:
    doc = request.getfixturevalue(which)
    text = stix.render(doc)
    stix.check(text)  # strict parse, every reference resolves
    objs = _objects(text)
    by_type = Counter(o["type"] for o in objs)
    assert by_type["note"] == by_type["opinion"] == len(doc["findings"])
    assert by_type["report"] == by_type["identity"] == 1
    report = next(o for o in objs if o["type"] == "report")
    assert report["published"].startswith(doc["generated_at"][:19])
    assert set(report["object_refs"]) == {o["id"] for o in objs} - {report["id"]}
    assert len({o["id"] for o in objs}) == len(objs)  # no duplicates
    result = _validator(text)
    assert result.is_valid, [str(e) for e in result.errors]
    assert _warnings(result) <= ACCEPTED


def test_stix_covers_every_object_type(rich_doc: dict[str, Any]) -> None:
    objs = _objects(stix.render(rich_doc))
    types = {o["type"] for o in objs}
    assert types >= {
        "identity", "extension-definition", "report", "note", "opinion", "observed-data",
        "network-traffic", "ipv4-addr", "ipv6-addr", "domain-name", "cryptocurrency-wallet",
        "indicator", "relationship",
    }  # fmt: skip
    ids = {o["id"]: o for o in objs}
    findings = {f["id"]: f for f in rich_doc["findings"]}
    # confidence and opinion follow the documented mapping
    for note in (o for o in objs if o["type"] == "note"):
        level = findings[note["external_references"][0]["external_id"]]["confidence"]["level"]
        assert note["confidence"] == {"low": 15, "moderate": 50, "high": 85}[level]
        assert (
            findings[note["external_references"][0]["external_id"]]["statement"] in note["content"]
        )
    for op in (o for o in objs if o["type"] == "opinion"):
        note = ids[op["object_refs"][0]]
        level = {15: "low", 50: "moderate", 85: "high"}[note["confidence"]]
        assert (
            op["opinion"]
            == {"low": "neutral", "moderate": "agree", "high": "strongly-agree"}[level]
        )
    # one indicator per distinct indicator, with its pattern and valid_from
    patterns = {o["pattern"]: o for o in objs if o["type"] == "indicator"}
    first_seen: dict[tuple[str, str], list[str]] = {}
    for i in (i for f in rich_doc["findings"] for i in f["indicators"]):
        value = i["value"].lower() if i["kind"] == "domain-name" else i["value"]
        seen = first_seen.setdefault((i["kind"], value), [])
        seen += [_stix_time(i["first_seen"])[:19]] if i["first_seen"] else []
    assert len(patterns) == len(first_seen)
    for (kind, value), seen in first_seen.items():
        stix_kind = "cryptocurrency-wallet" if kind == "wallet" else kind
        o = patterns[f"[{stix_kind}:value = '{value}']"]
        if seen:  # the earliest sighting over every finding naming it
            assert o["valid_from"][:19] == min(seen)
    wallets = {o["value"]: o for o in objs if o["type"] == "cryptocurrency-wallet"}
    assert wallets[XMR_WALLET]["symbol"] == "XMR" and wallets[BTC_WALLET]["symbol"] == "BTC"
    assert all(stix.WALLET_EXT_ID in w["extensions"] for w in wallets.values())
    # every sample flow once, with its community id, ends, times and ports
    samples = {
        (s["community_id"], s["ts_start"]): s for f in rich_doc["findings"] for s in f["samples"]
    }
    traffic = [o for o in objs if o["type"] == "network-traffic"]
    assert len(traffic) == len(samples)
    for t in traffic:
        ext = t["extensions"][stix.FLOW_EXT_ID]
        s = samples[(ext["community_id"], _stix_time(t["start"]))]
        assert (ids[t["src_ref"]]["value"], ids[t["dst_ref"]]["value"]) == (s["src"], s["dst"])
        assert (ext["bytes"], ext["packets"]) == (s["bytes"], s["packets"])
        if s["proto"] in (6, 17):
            assert (t["src_port"], t["dst_port"]) == (s["src_port"], s["dst_port"])
        assert t["protocols"][0] == ("ipv6" if ":" in s["src"] else "ipv4")
    observed = [o for o in objs if o["type"] == "observed-data"]
    assert {ids[r]["type"] for o in observed for r in o["object_refs"]} >= {
        "network-traffic",
        "ipv4-addr",
        "ipv6-addr",
    }
    # based-on links an address indicator to the flows that show it
    rels = [o for o in objs if o["type"] == "relationship"]
    assert rels and all(
        ids[r["source_ref"]]["type"] == "indicator"
        and ids[r["target_ref"]]["type"] == "observed-data"
        for r in rels
    )


def _stix_time(t: str) -> str:
    """A STIX timestamp back in the findings' sample format (microseconds, Z)."""
    d = datetime.fromisoformat(t).astimezone(UTC).replace(tzinfo=None)
    return d.isoformat(timespec="microseconds") + "Z"


def test_stix_parses_without_our_registrations(rich_doc: dict[str, Any], tmp_path: Path) -> None:
    """A consumer that only has stix2 reads the bundle with allow_custom=True."""
    path = tmp_path / "b.json"
    path.write_text(stix.render(rich_doc))
    code = (
        "import stix2, sys\n"
        "b = stix2.parse(open(sys.argv[1]).read(), allow_custom=True)\n"
        "print(len(b.objects))\n"
    )
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert int(run.stdout) == len(_objects(path.read_text()))


def test_stix_extension_schemas_are_enforced(rich_doc: dict[str, Any]) -> None:
    """The shipped JSON Schemas are the ones the validator applies, and they bite."""
    for ext in (stix.WALLET_EXT_ID, stix.FLOW_EXT_ID):
        assert (stix.SCHEMAS / f"{ext}.json").is_file()
    bundle = json.loads(stix.render(rich_doc))
    for o in bundle["objects"]:
        if o["type"] == "cryptocurrency-wallet":
            o["symbol"] = "xmr"
        if o["type"] == "network-traffic":
            o["extensions"][stix.FLOW_EXT_ID]["community_id"] = "not-a-community-id"
    result = _validator(json.dumps(bundle))
    assert not result.is_valid
    errors = " ".join(str(e) for e in result.errors)
    assert "'xmr' does not match" in errors and "'not-a-community-id' does not match" in errors


def test_docs_name_the_extensions() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "exports.md").read_text()
    assert stix.WALLET_EXT_ID in text and stix.FLOW_EXT_ID in text


def test_stix_strict_parse_rejects_unknown_custom_content(rich_doc: dict[str, Any]) -> None:
    bundle = json.loads(stix.render(rich_doc))
    bundle["objects"][-1]["x_unexpected"] = 1
    with pytest.raises(stix2.exceptions.STIXError):
        stix.check(json.dumps(bundle))
    bundle = json.loads(stix.render(rich_doc))
    note = next(o for o in bundle["objects"] if o["type"] == "note")
    note["object_refs"].append("indicator--7b0c8d4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e")
    with pytest.raises(ValueError, match="not in the bundle"):
        stix.check(json.dumps(bundle))


def test_stix_ids_follow_the_report_run(rich_doc: dict[str, Any]) -> None:
    again = {**rich_doc, "generated_at": "2030-01-01T00:00:00+00:00"}
    a, b = _objects(stix.render(rich_doc)), _objects(stix.render(again))
    sco = {"ipv4-addr", "ipv6-addr", "domain-name", "network-traffic", "cryptocurrency-wallet"}
    fixed = {"identity", "extension-definition"}
    ids_a = {o["id"] for o in a}
    for o in b:
        if o["type"] in sco | fixed:
            assert o["id"] in ids_a  # observables and our own objects keep their ids
        else:
            assert o["id"] not in ids_a  # a new run's judgments are new objects


# --- MISP ---------------------------------------------------------------------------------


def test_misp_loads_and_matches_templates(rich_doc: dict[str, Any]) -> None:
    text = misp.render(rich_doc)
    e = misp.check(text)  # pymisp load + every object against its template
    again = MISPEvent()
    again.load(json.loads(text))
    assert again.info == e.info and "North Korea" in e.info
    assert int(e.threat_level_id) == misp.THREAT_HIGH  # the mining finding has priority high
    assert int(e.distribution) == 0 and str(e.date) == rich_doc["generated_at"][:10]
    assert {t.name for t in e.tags} == {"rogueflow", 'rogueflow:territory="kp"'}
    assert [r.name.split(":")[0] for r in e.event_reports] == [
        f["id"] for f in rich_doc["findings"]
    ]
    samples = {s["community_id"]: s for f in rich_doc["findings"] for s in f["samples"]}
    netflows = [o for o in e.objects if o.name == "netflow"]
    assert len(netflows) == len(samples)
    for o in netflows:
        got = {a.object_relation: str(a.value) for a in o.attributes}
        s = samples[got["community-id"]]
        assert (got["ip-src"], got["ip-dst"]) == (s["src"], s["dst"])
        assert got["byte-count"] == str(s["bytes"]) and got["packet-count"] == str(s["packets"])
        assert got["protocol"] == {6: "TCP", 17: "UDP"}.get(s["proto"], got["protocol"])
        assert not any(a.to_ids for a in o.attributes)
        citing = [f["id"] for f in rich_doc["findings"] if s in f["samples"]]
        assert o.comment.startswith(f"sample flow of {', '.join(citing)}")
    coins = {
        a.value: (a.object_relation, {x.object_relation: x.value for x in o.attributes})
        for o in e.objects
        if o.name == "coin-address"
        for a in o.attributes
        if a.object_relation.startswith("address")
    }
    assert coins[XMR_WALLET][0] == "address-xmr" and coins[XMR_WALLET][1]["symbol"] == "XMR"
    assert coins[BTC_WALLET][0] == "address" and coins[BTC_WALLET][1]["symbol"] == "BTC"
    assert coins[LTC_WALLET][0] == "address-crypto"
    attrs = {a.value: a for a in e.attributes}
    mining = next(f for f in rich_doc["findings"] if f["id"] == MINING)
    for ind in mining["indicators"]:
        if ind["kind"] == "wallet":
            continue
        a = attrs[ind["value"].lower() if ind["kind"] == "domain-name" else ind["value"]]
        assert a.type == ("domain" if ind["kind"] == "domain-name" else "ip-dst")
        assert MINING in a.comment and a.to_ids  # moderate confidence
    tunnel = attrs[V6_SRC]
    assert tunnel.type == "ip-src" and not tunnel.to_ids  # low confidence: not for IDS
    assert [t.name for t in tunnel.tags] == [
        'estimative-language:confidence-in-analytic-judgment="low"'
    ]


def test_misp_real_report(real_doc: dict[str, Any]) -> None:
    e = misp.check(misp.render(real_doc))
    fs = real_doc["findings"]
    assert len(e.event_reports) == len(fs)
    if any(f["priority"] == "high" for f in fs):
        want = misp.THREAT_HIGH
    elif any(f["confidence"]["level"] != "low" and (f["indicators"] or f["samples"]) for f in fs):
        want = misp.THREAT_MEDIUM
    else:
        want = misp.THREAT_LOW
    assert int(e.threat_level_id) == want
    samples = {s["community_id"] for f in fs for s in f["samples"]}
    assert len([o for o in e.objects if o.name == "netflow"]) == len(samples)
    values = {i["value"] for f in fs for i in f["indicators"] if i["kind"] != "wallet"}
    assert {a.value for a in e.attributes} == values


def test_misp_check_catches_template_violations(rich_doc: dict[str, Any]) -> None:
    event = json.loads(misp.render(rich_doc))
    flow = next(o for o in event["Event"]["Object"] if o["name"] == "netflow")
    proto = next(a for a in flow["Attribute"] if a["object_relation"] == "protocol")
    proto["value"] = "QUIC"
    with pytest.raises(ValueError, match="not in"):
        misp.check(json.dumps(event))


# --- Zeek intel ---------------------------------------------------------------------------

ZEEK_TYPES = {
    "Intel::ADDR", "Intel::SUBNET", "Intel::URL", "Intel::SOFTWARE", "Intel::EMAIL",
    "Intel::DOMAIN", "Intel::USER_NAME", "Intel::CERT_HASH", "Intel::PUBKEY_HASH",
    "Intel::FILE_HASH", "Intel::FILE_NAME",
}  # fmt: skip


_HEADER = "#fields\tindicator\tindicator_type\tmeta.source\tmeta.desc\tmeta.url\n"


def parse_zeek_intel(text: str) -> list[dict[str, str | None]]:
    """Zeek's ASCII input reader, strictly: what intel.dat must look like to load cleanly.

    Lines starting with '#' other than the '#fields' header are comments; the header
    names the columns, separated by one tab; every data line has exactly as many
    tab-separated fields; '-' is unset and '(empty)' the empty string; the intel
    framework needs indicator, indicator_type (an Intel::Type) and meta.source set,
    and an Intel::ADDR indicator must be an address.
    """
    assert text.endswith("\n") and "\r" not in text, "lines end with LF, the last one too"
    lines = [line for line in text.split("\n")[:-1]]
    header = [line for line in lines if line.startswith("#")]
    assert header and header[0].startswith("#fields\t"), "the first # line is the #fields header"
    fields = header[0].split("\t")[1:]
    assert fields == list(zeekintel.FIELDS)
    rows = []
    for n, line in enumerate(lines, 1):
        if line.startswith("#"):
            continue
        assert line, f"line {n}: empty line"
        values = line.split("\t")
        assert len(values) == len(fields), f"line {n}: {len(values)} fields"
        row: dict[str, str | None] = {}
        for name, v in zip(fields, values, strict=True):
            assert v == v.strip() and v != "", f"line {n}: {name} {v!r}"
            row[name] = None if v == "-" else "" if v == "(empty)" else v
        for name in ("indicator", "indicator_type", "meta.source"):
            assert row[name], f"line {n}: {name} must be set"
        assert row["indicator_type"] in ZEEK_TYPES, f"line {n}: {row['indicator_type']}"
        if row["indicator_type"] == "Intel::ADDR":
            ipaddress.ip_address(str(row["indicator"]))
        if row["indicator_type"] == "Intel::DOMAIN":
            assert re.fullmatch(
                r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9-]+)+", str(row["indicator"])
            )
        rows.append(row)
    keys = [(r["indicator"], r["indicator_type"], r["meta.source"]) for r in rows]
    assert len(keys) == len(set(keys)), "one line per indicator and source"
    return rows


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("1.2.3.4\tIntel::ADDR\trogueflow\t-\t-\n", "#fields header"),
        (_HEADER + "1.2.3.4\tIntel::ADDR\trogueflow\t-\n", "4 fields"),
        (_HEADER + "1.2.3.4\tIntel::WALLET\trogueflow\t-\t-\n", "Intel::WALLET"),
        (_HEADER + "1.2.3.4\tIntel::ADDR\t-\t-\t-\n", "meta.source must be set"),
        (_HEADER + "1.2.3\tIntel::ADDR\trogueflow\t-\t-\n", "does not appear to be an IPv4"),
        (_HEADER + "a.org\tIntel::DOMAIN\trogueflow\t\t-\n", "meta.desc ''"),
        (_HEADER + "a.org\tIntel::DOMAIN\tr\t-\t-\n" * 2, "one line per indicator"),
        (_HEADER + "a.org\tIntel::DOMAIN\tr\t-\t-", "the last one too"),
    ],
    ids=["no-header", "short-line", "bad-type", "no-source", "bad-addr", "empty", "dup", "no-lf"],
)
def test_zeek_parser_is_strict(text: str, problem: str) -> None:
    with pytest.raises((AssertionError, ValueError), match=re.escape(problem)):
        parse_zeek_intel(text)


def test_zeek_intel_format(rich_doc: dict[str, Any]) -> None:
    rows = parse_zeek_intel(zeekintel.render(rich_doc))
    got = {(r["indicator"], r["indicator_type"]) for r in rows}
    want = {
        (
            i["value"].lower() if i["kind"] == "domain-name" else i["value"],
            "Intel::DOMAIN" if i["kind"] == "domain-name" else "Intel::ADDR",
        )
        for f in rich_doc["findings"]
        for i in f["indicators"]
        if i["kind"] != "wallet"  # Zeek has no wallet type
    }
    assert got == want
    assert not {XMR_WALLET, BTC_WALLET, LTC_WALLET} & {r["indicator"] for r in rows}
    by = {r["indicator"]: r for r in rows}
    assert f"tunnel endpoint in {TUNNEL}; low confidence" in str(by[V6_SRC]["meta.desc"])
    assert all(r["meta.source"] == "rogueflow:kp" and r["meta.url"] is None for r in rows)


def test_zeek_intel_real_report(real_doc: dict[str, Any]) -> None:
    rows = parse_zeek_intel(zeekintel.render(real_doc))
    n = {i["value"] for f in real_doc["findings"] for i in f["indicators"] if i["kind"] != "wallet"}
    assert len(rows) == len(n)


def test_zeek_desc_cannot_break_the_line(rich_doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(rich_doc))
    ind = next(i for f in doc["findings"] for i in f["indicators"] if i["kind"] == "domain-name")
    ind["role"] = "pool\twith\ttabs\nand a newline \\x41"
    rows = parse_zeek_intel(zeekintel.render(doc))
    desc = next(str(r["meta.desc"]) for r in rows if r["indicator"] == ind["value"].lower())
    assert desc.startswith("pool with tabs and a newline \\x5cx41")


def test_metric_lines() -> None:
    from rogueflow.export.common import metric_lines

    assert metric_lines(
        {
            "appeared": {"value": 1506848871.0, "unit": "unix time"},
            "share": {"value": 0.4123, "low": 0.4, "high": 0.43, "unit": "share", "method": "w"},
            "flows": {"value": 1234567, "unit": "flows"},
            "missing": {"value": None},
        }
    ) == [
        "appeared = 2017-10-01T09:07:51Z",
        "share = 0.4123 share (41.2%) [0.4 – 0.43] (w)",
        "flows = 1,234,567 flows",
        "missing = —",
    ]


# --- the package, the CLI, determinism ----------------------------------------------------


def test_write_exports(rich_doc: dict[str, Any], tmp_path: Path) -> None:
    paths = export.write_exports(rich_doc, tmp_path / "out")
    assert [p.name for p in paths] == ["report.stix.json", "report.misp.json", "intel.dat"]
    for fmt, p in zip(export.FORMATS, paths, strict=True):
        assert p.read_text() == export.render(rich_doc, fmt.name)
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_exports_are_deterministic(rich_doc: dict[str, Any], tmp_path: Path) -> None:
    """Same document, another process and hash seed: byte-identical files."""
    path = tmp_path / "findings.json"
    path.write_text(json.dumps(rich_doc))
    here = {f.name: export.render(rich_doc, f.name) for f in export.FORMATS}
    assert here == {f.name: export.render(rich_doc, f.name) for f in export.FORMATS}
    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from rogueflow import export\n"
        "doc = export.load_findings(Path(sys.argv[1]))\n"
        "print(json.dumps({f.name: export.render(doc, f.name) for f in export.FORMATS}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    assert json.loads(run.stdout) == here


@pytest.mark.parametrize("fmt", [f.name for f in export.FORMATS])
def test_cli_export(fmt: str, rich_doc: dict[str, Any], tmp_path: Path) -> None:
    findings = tmp_path / "findings.json"
    findings.write_text(json.dumps(rich_doc))
    out = tmp_path / "sub" / "x.out"
    args = ["-w", str(tmp_path / "ws"), "export", "--format", fmt, "--findings", str(findings)]
    result = CliRunner().invoke(cli, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text() == export.render(rich_doc, fmt)
    default = CliRunner().invoke(cli, args)
    assert default.exit_code == 0, default.output
    assert (tmp_path / export.by_name(fmt).filename).read_text() == out.read_text()
    stdout = CliRunner().invoke(cli, [*args, "--out", "-"])
    assert stdout.exit_code == 0 and stdout.stdout == out.read_text()


def test_cli_export_errors(tmp_path: Path) -> None:
    bad = tmp_path / "findings.json"
    bad.write_text(json.dumps({"format": "something/else", "findings": []}))
    args = ["-w", str(tmp_path / "ws"), "export", "--format", "stix", "--findings"]
    result = CliRunner().invoke(cli, [*args, str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "rogueflow.findings/1" in result.stderr
    bad.write_text("{not json")
    result = CliRunner().invoke(cli, [*args, str(bad)])
    assert result.exit_code == 2 and "line 1 column 2" in result.stderr
    result = CliRunner().invoke(cli, [*args, str(tmp_path / "missing.json")])
    assert result.exit_code == 2 and "missing.json" in result.stderr


def test_bad_fields_are_named(rich_doc: dict[str, Any]) -> None:
    doc = json.loads(json.dumps(rich_doc))
    last = len(doc["findings"]) - 1
    doc["findings"][last]["samples"][0]["src"] = "not-an-address"
    with pytest.raises(InputError, match=rf"findings\[{last}\]\.samples\[0\]\.src"):
        export.render(doc, "stix", "f.json")
    doc = json.loads(json.dumps(rich_doc))
    doc["findings"][last]["indicators"][0] = {"kind": "ipv4-addr", "value": "2001:db8::1"}
    with pytest.raises(InputError, match=r"indicators\[0\]\.value: '2001:db8::1' is not an ipv4"):
        export.render(doc, "misp")
    doc["findings"][last]["indicators"][0] = {"kind": "email", "value": "a@b"}
    with pytest.raises(InputError, match=r"indicators\[0\]\.kind"):
        export.render(doc, "zeek-intel")
    with pytest.raises(Exception, match="unknown export format 'csv'"):
        export.by_name("csv")
