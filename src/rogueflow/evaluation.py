"""Scoring the detectors on a labelled corpus: ``rogueflow eval CORPUS``.

A corpus is a directory holding ``labels.toml`` (or the path of such a file). It
names the captures and flow files to ingest, the reference data to load first,
the categories under evaluation, and rules that label flows::

    root = "../data"                   # where paths resolve, relative to this file
    categories = ["crypto.mining", "crypto.p2p", "anonymizer.tor"]

    [[intel]]                          # loaded into the evaluation workspace first
    kind = "mining-pools"
    format = "ips"
    path = "lists/pool-ips.txt"
    valid_from = "2017-01-01"

    [[file]]                           # a file, or a directory ingested as one run
    path = "pcap/mining.pcapng"
    [[file.flow]]                      # first matching rule wins
    match = "tcp 192.168.2.92:55190 178.32.196.217:9050"   # either direction
    category = "crypto.mining"
    coin = "XMR"                       # optional: service, coin, pool, wallet
    wallet = "4BCe…"

    [minimum."crypto.mining"]          # `eval` fails (exit 1) below these
    precision = 1.0
    recall = 0.9

A ``match`` is ``PROTO A B`` with ``A``/``B`` as ``ADDR``, ``ADDR:PORT`` or ``*``
(``[v6]:port`` for IPv6), ``host ADDR`` (any flow touching it) or ``any``. Flows
no rule matches are expected to be ``default`` (``other``: outside every evaluated
category). A predicted category outside ``categories`` counts as ``other`` too, so
a web capture labelled ``search`` is a correct negative, not a false positive.

Scores are per flow record as stored (a NetFlow session split into ten records
counts ten times), which is how an analyst counts what the tool labelled.
"""

from __future__ import annotations

import ipaddress
import tempfile
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rogueflow.errors import ConfigError, InputError
from rogueflow.workspace import Workspace

OTHER = "other"
#: label fields a rule may state besides the category, compared exactly
FIELDS = ("service", "coin", "pool", "wallet")
_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58, "*": None}


@dataclass(frozen=True)
class Endpoint:
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    port: int | None

    def accepts(self, ip: str, port: int) -> bool:
        if self.addr is not None and ipaddress.ip_address(ip) != self.addr:
            return False
        return self.port is None or self.port == port


@dataclass(frozen=True)
class Rule:
    text: str
    proto: int | None
    ends: tuple[Endpoint, Endpoint] | None  # None: any flow
    host: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    category: str
    expect: dict[str, str]

    def matches(self, flow: dict[str, Any]) -> bool:
        if self.proto is not None and flow["proto"] != self.proto:
            return False
        src, dst = flow["src_ip"], flow["dst_ip"]
        if self.host is not None:
            return self.host in (ipaddress.ip_address(src), ipaddress.ip_address(dst))
        if self.ends is None:
            return True
        a, b = self.ends
        sp, dp = flow["src_port"], flow["dst_port"]
        return (a.accepts(src, sp) and b.accepts(dst, dp)) or (
            a.accepts(dst, dp) and b.accepts(src, sp)
        )


@dataclass(frozen=True)
class CorpusFile:
    path: Path
    fmt: str | None
    rules: tuple[Rule, ...]
    default: str


@dataclass(frozen=True)
class IntelEntry:
    kind: str
    path: Path
    fmt: str | None
    valid_from: datetime | None
    valid_to: datetime | None


@dataclass(frozen=True)
class Corpus:
    source: Path
    categories: tuple[str, ...]
    files: tuple[CorpusFile, ...]
    intel: tuple[IntelEntry, ...]
    minimum: dict[str, dict[str, float]]


@dataclass
class Score:
    category: str
    tp: int = 0
    fp: int = 0
    fn: int = 0

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None


@dataclass
class FieldScore:
    name: str
    expected: int = 0
    correct: int = 0
    wrong: list[str] = field(default_factory=list)


@dataclass
class Evaluation:
    corpus: Path
    flows: int
    scores: dict[str, Score]
    fields: dict[str, FieldScore]
    failures: list[str]
    #: (file, flow text, expected, predicted, evidence) of every wrong flow
    mistakes: list[tuple[str, str, str, str, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "corpus": str(self.corpus),
            "flows": self.flows,
            "categories": {
                c: {
                    "tp": s.tp,
                    "fp": s.fp,
                    "fn": s.fn,
                    "precision": s.precision,
                    "recall": s.recall,
                }
                for c, s in self.scores.items()
            },
            "fields": {
                f: {"expected": s.expected, "correct": s.correct, "wrong": s.wrong}
                for f, s in self.fields.items()
            },
            "failures": self.failures,
            "mistakes": [
                dict(zip(("file", "flow", "expected", "predicted", "evidence"), m, strict=True))
                for m in self.mistakes
            ],
        }


# --- reading the corpus -------------------------------------------------------------


def load_corpus(path: str | Path, root: str | Path | None = None) -> Corpus:
    """Read ``labels.toml`` (``path`` or ``path/labels.toml``); errors name the entry."""
    p = Path(path)
    src = p / "labels.toml" if p.is_dir() else p
    try:
        doc = tomllib.loads(src.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(src, None, f"cannot read the corpus labels: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise InputError(src, None, f"not valid TOML: {exc}") from None
    base = Path(root) if root is not None else src.parent / str(doc.get("root", "."))
    categories = tuple(_strings(doc.get("categories"), src, "categories"))
    if not categories:
        raise InputError(src, "categories", "name the categories under evaluation")
    files: list[CorpusFile] = []
    for i, entry in enumerate(_tables(doc.get("file"), src, "file"), 1):
        where = f"file #{i}"
        rel = _required(entry, "path", src, where)
        rules = tuple(
            _rule(r, src, f"{where} ({rel}) flow #{k}")
            for k, r in enumerate(_tables(entry.get("flow"), src, f"{where} flow"), 1)
        )
        files.append(
            CorpusFile(base / rel, entry.get("format"), rules, str(entry.get("default", OTHER)))
        )
    intel = tuple(
        IntelEntry(
            str(_required(e, "kind", src, f"intel #{i}")),
            base / str(_required(e, "path", src, f"intel #{i}")),
            e.get("format"),
            _date(e.get("valid_from"), src, f"intel #{i} valid_from"),
            _date(e.get("valid_to"), src, f"intel #{i} valid_to"),
        )
        for i, e in enumerate(_tables(doc.get("intel"), src, "intel"), 1)
    )
    minimum: dict[str, dict[str, float]] = {}
    for cat, bounds in (doc.get("minimum") or {}).items():
        if not isinstance(bounds, dict) or set(bounds) - {"precision", "recall"}:
            raise InputError(src, f"minimum.{cat}", "give precision and/or recall (0–1)")
        minimum[cat] = {k: float(v) for k, v in bounds.items()}
    return Corpus(src, categories, tuple(files), intel, minimum)


def _tables(value: object, src: Path, where: str) -> list[dict[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise InputError(src, where, "expected an array of tables ([[...]])")
    return value


def _strings(value: object, src: Path, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(src, where, "expected a list of strings")
    return value


def _required(entry: dict[str, Any], key: str, src: Path, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value:
        raise InputError(src, where, f"missing {key!r}")
    return value


def _date(value: object, src: Path, where: str) -> datetime | None:
    if value is None:
        return None
    try:
        got = datetime.fromisoformat(str(value))
    except ValueError:
        raise InputError(src, where, f"not a date: {value!r}") from None
    return got if got.tzinfo else got.replace(tzinfo=UTC)


def _rule(entry: dict[str, Any], src: Path, where: str) -> Rule:
    text = _required(entry, "match", src, where)
    category = _required(entry, "category", src, where)
    expect = {k: str(entry[k]) for k in FIELDS if entry.get(k) is not None}
    try:
        proto, ends, host = parse_match(text)
    except ValueError as exc:
        raise InputError(src, where, f"bad match {text!r}: {exc}") from None
    return Rule(text, proto, ends, host, category, expect)


def parse_match(
    text: str,
) -> tuple[int | None, tuple[Endpoint, Endpoint] | None, Any]:
    """``"tcp 10.0.0.1:5 10.0.0.2:3333"`` → (6, endpoints, None); see the module doc."""
    words = text.split()
    if words == ["any"]:
        return None, None, None
    if len(words) == 2 and words[0] == "host":
        return None, None, ipaddress.ip_address(words[1])
    if len(words) != 3 or words[0].lower() not in _PROTOS:
        raise ValueError("expected 'PROTO A B', 'host ADDR' or 'any'")
    return _PROTOS[words[0].lower()], (_endpoint(words[1]), _endpoint(words[2])), None


def _endpoint(word: str) -> Endpoint:
    if word == "*":
        return Endpoint(None, None)
    host, port = word, None
    if word.startswith("["):
        host, _, rest = word[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else None
    elif word.count(":") == 1:
        host, _, p = word.partition(":")
        port = None if p == "*" else int(p)
    return Endpoint(None if host == "*" else ipaddress.ip_address(host), port)


# --- running ------------------------------------------------------------------------


def evaluate(
    corpus: Corpus, *, use_intel: bool = True, workspace: Path | None = None
) -> Evaluation:
    """Ingest the corpus into a fresh workspace and score the labels it gets."""
    if workspace is not None:
        return _evaluate(corpus, Workspace(workspace), use_intel)
    with tempfile.TemporaryDirectory(prefix="rogueflow-eval-") as tmp:
        return _evaluate(corpus, Workspace(Path(tmp) / "ws"), use_intel)


def _evaluate(corpus: Corpus, ws: Workspace, use_intel: bool) -> Evaluation:
    from rogueflow.analyze.engine import DuckDBEngine
    from rogueflow.intel.snapshots import IntelStore
    from rogueflow.ops import ingest_paths

    if use_intel:
        store = IntelStore(ws)
        for e in corpus.intel:
            store.add(e.kind, e.path, fmt=e.fmt, valid_from=e.valid_from, valid_to=e.valid_to)
    sources: list[tuple[CorpusFile, list[str]]] = []
    for f in corpus.files:
        if not f.path.exists():
            raise ConfigError(f"{corpus.source}: corpus file {f.path} does not exist")
        results = ingest_paths(ws, [f.path], fmt=f.fmt)
        sources.append((f, [r.source_id for r in results]))
    wanted = set(corpus.categories)
    scores = {c: Score(c) for c in corpus.categories}
    fields = {k: FieldScore(k) for k in FIELDS}
    mistakes: list[tuple[str, str, str, str, str]] = []
    flows = 0
    eng = DuckDBEngine(ws)
    try:
        for f, ids in sources:
            for flow in _flows(eng, ids):
                flows += 1
                rule = next((r for r in f.rules if r.matches(flow)), None)
                expected = rule.category if rule is not None else f.default
                predicted = flow["category"] if flow["category"] in wanted else OTHER
                _count(scores, expected, predicted)
                text = _flow_text(flow)
                if expected != predicted:
                    mistakes.append(
                        (f.path.name, text, expected, predicted, flow["evidence"] or "")
                    )
                if rule is not None and expected == predicted:
                    for key, want in rule.expect.items():
                        fs = fields[key]
                        fs.expected += 1
                        if flow[key] == want:
                            fs.correct += 1
                        else:
                            fs.wrong.append(f"{f.path.name} {text}: {flow[key]!r} != {want!r}")
    finally:
        eng.close()
    failures = _below_minimum(corpus, scores)
    return Evaluation(corpus.source, flows, scores, fields, failures, mistakes)


def _flows(eng: Any, source_ids: Iterable[str]) -> list[dict[str, Any]]:
    ids = list(source_ids)
    if not ids:
        return []
    table = eng.arrow(
        "SELECT src_ip, dst_ip, src_port, dst_port, proto, category, service, coin, pool, "
        "wallet, evidence FROM flows WHERE list_contains(?, source_id) "
        "ORDER BY ts_start, src_ip, dst_ip, src_port, dst_port",
        [ids],
    )
    rows: list[dict[str, Any]] = table.to_pylist()
    return rows


def _count(scores: dict[str, Score], expected: str, predicted: str) -> None:
    if expected == predicted:
        if expected in scores:
            scores[expected].tp += 1
        return
    if predicted in scores:
        scores[predicted].fp += 1
    if expected in scores:
        scores[expected].fn += 1


def _flow_text(flow: dict[str, Any]) -> str:
    proto = {6: "tcp", 17: "udp"}.get(flow["proto"], str(flow["proto"]))
    return f"{proto} {flow['src_ip']}:{flow['src_port']} > {flow['dst_ip']}:{flow['dst_port']}"


def _below_minimum(corpus: Corpus, scores: dict[str, Score]) -> list[str]:
    out: list[str] = []
    for cat, bounds in corpus.minimum.items():
        s = scores.get(cat)
        for metric, low in bounds.items():
            got = None if s is None else getattr(s, metric)
            if got is None or got < low:
                shown = "n/a" if got is None else f"{got:.3f}"
                out.append(f"{cat} {metric} {shown} < {low:.3f}")
    return out


def render(ev: Evaluation) -> str:
    """The per-category table (and field checks, failures) as plain text."""
    lines = [
        f"corpus {ev.corpus}: {ev.flows:,} flows",
        "",
        f"{'category':<22} {'TP':>6} {'FP':>6} {'FN':>6} {'precision':>10} {'recall':>8}",
    ]
    for c, s in ev.scores.items():
        p = "-" if s.precision is None else f"{s.precision:.3f}"
        r = "-" if s.recall is None else f"{s.recall:.3f}"
        lines.append(f"{c:<22} {s.tp:>6} {s.fp:>6} {s.fn:>6} {p:>10} {r:>8}")
    checked = [f for f in ev.fields.values() if f.expected]
    if checked:
        lines += ["", f"{'field':<22} {'correct':>8} / expected"]
        lines += [f"{f.name:<22} {f.correct:>8} / {f.expected}" for f in checked]
    if ev.mistakes:
        lines += ["", "wrong flows:"]
        lines += [f"  {m[0]} {m[1]}: expected {m[2]}, got {m[3]} ({m[4]})" for m in ev.mistakes]
    if ev.failures:
        lines += ["", "below the corpus minimums:"] + [f"  {x}" for x in ev.failures]
    return "\n".join(lines)


__all__ = ["Corpus", "Evaluation", "evaluate", "load_corpus", "parse_match", "render"]
