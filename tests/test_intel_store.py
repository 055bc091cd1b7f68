"""The reference-data snapshot store: round trip, selection by date, safety of add."""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from rogueflow.errors import ConfigError, InputError, StoreError
from rogueflow.intel import kinds
from rogueflow.intel.kinds import Kind
from rogueflow.intel.snapshots import IntelStore, Snapshot, _as_snapshot, snapshot_id
from rogueflow.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
_DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)*[a-z0-9-]{1,63}$")
LOADS: list[Path] = []  # every call of the test loaders, to see when a cache answered


class DomainSet:
    """What the test loader builds: a set of names, maybe with a date from a header."""

    def __init__(self, names: list[str], valid_from: datetime | None = None) -> None:
        self.names = names
        self.valid_from = valid_from

    def __len__(self) -> int:
        return len(self.names)

    def summary(self) -> str:
        return f"{len(self.names)} domains"

    def to_npz(self, path: Path) -> None:
        with open(path, "wb") as fh:
            np.savez(fh, names=np.array(self.names, dtype=str))

    @classmethod
    def from_npz(cls, path: Path) -> DomainSet:
        with np.load(path, allow_pickle=False) as data:
            return cls([str(n) for n in data["names"]])


def load_test_domains(path: Path) -> DomainSet:
    """A small real loader: one domain per line, hosts format, ``#`` comments.

    ``# valid-after YYYY-MM-DD`` in the header dates the list (like a consensus).
    """
    LOADS.append(path)
    names: list[str] = []
    valid_from = None
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(path, f"byte {exc.start}", "not UTF-8 text") from None
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line.startswith("# valid-after "):
            valid_from = datetime.fromisoformat(line.split()[2]).replace(tzinfo=UTC)
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("0.0.0.0", "127.0.0.1"):
            parts = parts[1:]
        if len(parts) != 1 or not _DOMAIN.match(parts[0].lower()):
            raise InputError(path, f"line {n}", f"not a domain name: {line[:40]!r}")
        names.append(parts[0].lower())
    if not names:
        raise InputError(path, None, "no domains")
    return DomainSet(names, valid_from)


def load_test_dir(path: Path) -> DomainSet:
    """Directory format: every ``*.txt`` file below ``path``."""
    if not path.is_dir():
        raise InputError(path, None, "not a directory")
    names: list[str] = []
    for f in sorted(path.rglob("*.txt")):
        names.extend(load_test_domains(f).names)
    return DomainSet(names)


TEST_KIND = Kind(
    "test-domains",
    "domains (test loader)",
    {
        "domains": "tests.test_intel_store:load_test_domains",
        "dir": "tests.test_intel_store:load_test_dir",
    },
)


def register_test_kinds() -> None:
    """For subprocesses; tests use the fixture, which undoes it."""
    kinds.KINDS["test-domains"] = TEST_KIND


@pytest.fixture(autouse=True)
def test_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(kinds.KINDS, "test-domains", TEST_KIND)
    LOADS.clear()


@pytest.fixture
def store(workspace: Workspace) -> IntelStore:
    return IntelStore(workspace, builtins=list)


def _write(path: Path, *names: str, header: str = "") -> Path:
    path.write_text(header + "".join(f"{n}\n" for n in names))
    return path


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_round_trip(store: IntelStore, tmp_path: Path, workspace: Workspace) -> None:
    src = _write(tmp_path / "pools.txt", "# pools", "pool.example.com", "0.0.0.0 xmr.example.net")
    snap = store.add("test-domains", src, source="https://lists.example/pools.txt")
    assert snap.rows == 2 and snap.name == "pools" and snap.format == "domains"
    assert snap.id == snapshot_id("test-domains", "pools", snap.sha256)
    assert snap.path == workspace.intel_dir / "files" / f"{snap.sha256}.txt"
    assert snap.path.read_bytes() == src.read_bytes()
    assert snap.valid_from is None and snap.valid_to is None
    assert snap.source == "https://lists.example/pools.txt"

    reopened = IntelStore(workspace, builtins=list)
    assert reopened.list() == [snap]
    assert reopened.get(snap.id) == snap == reopened.get("pools") == reopened.get(snap.id[:20])
    loaded = reopened.load(snap)
    assert isinstance(loaded, DomainSet)
    assert loaded.names == ["pool.example.com", "xmr.example.net"]
    assert reopened.load(snap) is loaded  # cached in memory
    with pytest.raises(ConfigError, match="no snapshot"):
        reopened.get("nothing-like-this")


def test_parsed_object_cache_survives_a_new_store(
    store: IntelStore, tmp_path: Path, workspace: Workspace
) -> None:
    snap = store.add("test-domains", _write(tmp_path / "a.txt", "a.example", "b.example"))
    LOADS.clear()
    first = store.load(snap)  # in memory since add: no parse
    assert LOADS == []
    fresh = IntelStore(workspace, builtins=list)
    assert isinstance(fresh.load(snap), DomainSet)
    assert LOADS == [], "the .npz cache should answer a new store"
    assert fresh.load(snap).names == first.names  # type: ignore[attr-defined]
    # a torn cache file is ignored and rebuilt from the snapshot itself
    for f in (workspace.intel_dir / "cache").iterdir():
        f.write_bytes(b"garbage")
    assert IntelStore(workspace, builtins=list).load(snap).names == first.names  # type: ignore[attr-defined]
    assert len(LOADS) == 1


def test_selection_by_date(store: IntelStore, tmp_path: Path) -> None:
    """Acceptance 3: a flow from 2018 gets the snapshot valid in 2018."""
    s2017 = store.add(
        "test-domains", _write(tmp_path / "l.txt", "a.example"), name="exits",
        valid_from=_utc("2017-01-01"), valid_to=_utc("2018-01-01"),
    )  # fmt: skip
    s2018 = store.add(
        "test-domains", _write(tmp_path / "l.txt", "b.example"), name="exits",
        valid_from=_utc("2018-01-01"), valid_to=_utc("2019-01-01"),
    )  # fmt: skip
    always = store.add("test-domains", _write(tmp_path / "l.txt", "c.example"), name="exits")
    assert store.at("test-domains", datetime(2018, 6, 1)) == s2018  # naive = UTC
    assert store.at("test-domains", _utc("2017-12-31T23:59:59")) == s2017
    assert store.at("test-domains", _utc("2018-01-01")) == s2018  # valid_to is exclusive
    assert store.at("test-domains", _utc("2020-05-01")) == always
    assert store.at("test-domains", _utc("2016-05-01")) == always
    # the most recent valid_from wins among intervals that contain the time
    late = store.add(
        "test-domains", _write(tmp_path / "l.txt", "d.example"), name="exits",
        valid_from=_utc("2018-06-01"),
    )  # fmt: skip
    assert store.at("test-domains", _utc("2018-07-01")) == late
    assert store.at("test-domains", _utc("2018-05-01")) == s2018
    assert store.at("test-domains", _utc("2018-05-01"), name="other") is None
    loaded = store.load(store.at("test-domains", _utc("2018-03-01")))  # type: ignore[arg-type]
    assert loaded.names == ["b.example"]  # type: ignore[attr-defined]


def test_builtin_loses_to_workspace_snapshot(workspace: Workspace, tmp_path: Path) -> None:
    packaged = _write(tmp_path / "embedded.txt", "embedded.example")
    builtin = Snapshot(
        id="test-domains:embedded:0123456789ab", kind="test-domains", name="embedded",
        format="domains", valid_from=None, valid_to=None, source="package:testpkg 1.0",
        retrieved_at=_utc("2025-01-01"), sha256="0123456789ab" * 5 + "abcd", path=packaged,
        rows=1,
    )  # fmt: skip
    store = IntelStore(workspace, builtins=lambda: [builtin])
    assert store.list() == [builtin] and builtin.builtin
    assert store.at("test-domains", _utc("2018-01-01")) == builtin
    assert store.load(builtin).names == ["embedded.example"]  # type: ignore[attr-defined]
    mine = store.add("test-domains", _write(tmp_path / "mine.txt", "mine.example"))
    assert store.at("test-domains", _utc("2018-01-01")) == mine
    with pytest.raises(ConfigError, match="built into the package"):
        store.remove(builtin.id)


def test_real_builtins_are_listed(workspace: Workspace) -> None:
    """The embedded default (from rogueflow.intel.geo) is listed in an empty workspace."""
    geo = _module_or_skip("rogueflow.intel.geo", "embedded_snapshots")
    # embedded_snapshots() may hand out Snapshot objects or plain dicts (both accepted)
    expected = {(s.kind, s.name) for s in map(_as_snapshot, geo.embedded_snapshots())}
    listed = IntelStore(workspace).list()
    assert expected <= {(s.kind, s.name) for s in listed}
    assert all(s.builtin and s.source.startswith("package:") for s in listed)


def test_duplicate_add_returns_existing(store: IntelStore, tmp_path: Path) -> None:
    src = _write(tmp_path / "x.txt", "x.example")
    first = store.add("test-domains", src)
    again = store.add("test-domains", src, valid_from=_utc("2019-01-01"))
    assert again == first and len(store.list()) == 1
    # same bytes under another name: a second snapshot sharing one stored file
    other = store.add("test-domains", src, name="copy")
    assert other.id != first.id and other.path == first.path
    files = list((store.files_dir).iterdir())
    assert files == [first.path]
    store.remove(first.id)
    assert first.path.exists(), "still used by the other snapshot"
    store.remove(other.id)
    assert not first.path.exists() and store.list() == []


def test_bad_file_records_nothing(store: IntelStore, tmp_path: Path) -> None:
    bad = _write(tmp_path / "bad.txt", "good.example", "good2.example", "not a domain at all")
    with pytest.raises(InputError) as err:
        store.add("test-domains", bad)
    assert err.value.path == str(bad) and err.value.where == "line 3"
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"ok.example\n\xff\xfe\x00junk")
    with pytest.raises(InputError, match="not UTF-8"):
        store.add("test-domains", binary)
    assert store.list() == []
    assert list(store.files_dir.iterdir()) == [] and list(store.tmp_dir.iterdir()) == []
    with pytest.raises(InputError, match="no such file"):
        store.add("test-domains", tmp_path / "missing.txt")
    with pytest.raises(ConfigError, match="unknown reference-data kind"):
        store.add("no-such-kind", bad)
    with pytest.raises(ConfigError, match="no format"):
        store.add("test-domains", bad, fmt="mmdb")
    with pytest.raises(ConfigError, match="not after"):
        store.add("test-domains", bad, valid_from=_utc("2019-01-01"), valid_to=_utc("2018-01-01"))
    with pytest.raises(ConfigError, match="snapshot name"):
        store.add("test-domains", bad, name="has:colon")


def test_validity_from_the_file(store: IntelStore, tmp_path: Path) -> None:
    dated = _write(tmp_path / "consensus.txt", "relay.example", header="# valid-after 2018-06-01\n")
    snap = store.add("test-domains", dated)
    assert snap.valid_from == _utc("2018-06-01") and snap.valid_to is None
    flagged = store.add("test-domains", dated, name="flagged", valid_from=_utc("2017-01-01"))
    assert flagged.valid_from == _utc("2017-01-01")
    moved = store.set_validity(snap.id, _utc("2018-06-01"), _utc("2018-07-01"))
    assert moved.valid_to == _utc("2018-07-01") and store.get(snap.id) == moved


def test_directory_snapshot(store: IntelStore, tmp_path: Path) -> None:
    d = tmp_path / "lists"
    (d / "sub").mkdir(parents=True)
    _write(d / "a.txt", "a.example")
    _write(d / "sub" / "b.txt", "b.example")
    snap = store.add("test-domains", d, fmt="dir")
    assert snap.rows == 2 and snap.path.is_dir() and snap.path.name.endswith(".d")
    assert (snap.path / "sub" / "b.txt").read_text() == "b.example\n"
    # renaming a file changes the content hash (names are part of a directory's content)
    (d / "a.txt").rename(d / "c.txt")
    assert store.add("test-domains", d, fmt="dir").sha256 != snap.sha256


def test_missing_file_is_reported_not_guessed(store: IntelStore, tmp_path: Path) -> None:
    snap = store.add("test-domains", _write(tmp_path / "m.txt", "m.example"))
    snap.path.unlink()
    fresh = IntelStore(store.ws, builtins=list)
    for f in (store.root / "cache").iterdir():
        f.unlink()
    with pytest.raises(StoreError, match="missing"):
        fresh.load(snap)


_CRASH = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from rogueflow.intel import snapshots
    from rogueflow.workspace import Workspace
    from tests.test_intel_store import register_test_kinds

    register_test_kinds()
    where = sys.argv[3]
    def die(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGKILL)
    if where == "record":      # after the file is in files/, before the manifest row
        snapshots.IntelStore._record = die
    else:                      # after the staged copy, during validation
        import tests.test_intel_store as t
        t.load_test_domains = die
    store = snapshots.IntelStore(Workspace(sys.argv[1]), builtins=list)
    store.add("test-domains", sys.argv[2])
    """
)


@pytest.mark.parametrize("where", ["record", "validate"])
def test_crash_during_add_leaves_no_trace(tmp_path: Path, where: str) -> None:
    ws_dir = tmp_path / "ws"
    src = _write(tmp_path / "crash.txt", "crash.example")
    ws = Workspace(ws_dir)
    IntelStore(ws, builtins=list).add("test-domains", _write(tmp_path / "k.txt", "keep.example"))
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH, str(ws_dir), str(src), where],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    files = ws.intel_dir / "files"
    leftovers = list(files.iterdir()) + list((ws.intel_dir / "tmp").iterdir())
    assert len(leftovers) == 2, "the crash should have left a file behind"
    store = IntelStore(ws, builtins=list)
    snaps = store.list()
    assert [s.name for s in snaps] == ["k"]
    assert all(s.path.exists() for s in snaps), "the manifest names a missing file"
    assert sorted(files.iterdir()) == [snaps[0].path], "leftovers not swept"
    assert list((ws.intel_dir / "tmp").iterdir()) == []
    assert store.add("test-domains", src).rows == 1  # and the store still works


def test_cli_add_list_show_remove(workspace: Workspace, tmp_path: Path) -> None:
    from rogueflow.cli.intel import intel
    from rogueflow.cli.main import Ctx

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(intel, list(args), obj=Ctx(str(workspace.root), False))
        return result.exit_code, result.stdout, result.stderr

    src = _write(tmp_path / "feed.txt", "one.example", "two.example")
    code, out, _ = run(
        "add", "test-domains", str(src), "--name", "feed", "--valid-from", "2018-01-01",
        "--valid-to", "2019-01-01", "--source", "https://example.org/feed.txt",
    )  # fmt: skip
    assert code == 0 and out.startswith("added: test-domains:feed:") and "2 rows" in out
    code, out, _ = run("add", "test-domains", str(src), "--name", "feed")
    assert code == 0 and out.startswith("already stored")
    code, out, _ = run("list", "--kind", "test-domains", "--json")
    listed = json.loads(out)
    workspace_snaps = [s for s in listed if not s["builtin"]]
    assert code == 0 and len(workspace_snaps) == 1
    assert workspace_snaps[0]["valid_from"] == "2018-01-01T00:00:00+00:00"
    code, out, _ = run("list")
    assert code == 0 and "test-domains:feed:" in out and "2018-01-01..2019-01-01" in out
    code, out, _ = run("show", "feed", "--json")
    info = json.loads(out)
    assert info["content"] == "2 domains" and info["rows"] == 2
    code, out, _ = run("show", "feed")
    assert code == 0 and "https://example.org/feed.txt" in out
    bad = _write(tmp_path / "bad.txt", "ok.example", "bad line here")
    code, _, err = run("add", "test-domains", str(bad))
    assert code == 2 and f"{bad}, line 2" in err
    code, _, err = run("list", "--kind", "nope")
    assert code == 2 and "unknown reference-data kind" in err
    code, out, _ = run("remove", workspace_snaps[0]["id"])
    assert code == 0 and out.startswith("removed:")
    code, _, err = run("show", "feed")
    assert code == 2 and "no snapshot" in err


def _module_or_skip(module: str, func: str):  # type: ignore[no-untyped-def]
    """The real loaders are written in parallel; skip only while they do not exist."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError:
        pytest.skip(f"{module} not written yet")
    if not hasattr(mod, func):
        pytest.skip(f"{module}.{func} not written yet")
    return mod


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    ("kind", "fmt", "rel", "func"),
    [
        ("cryptojacking", "domains", "mining-lists/nocoin/hosts.txt", "load_cryptojacking_domains"),
        ("crypto-sites", "domains", "ut1-categories/bitcoin.domains", "load_crypto_domains"),
        ("mining-pools", "ips", "mining-lists/coinblockerlists-2018/MiningServerIPList.txt",
         "load_mining_ips"),
        ("vpn-ranges", "cidr", "vpn-datacenter-lists/output_vpn_ipv4.txt", "load_vpn_cidrs"),
    ],
)  # fmt: skip
def test_real_loaders_through_the_store(
    shared: Path, workspace: Workspace, kind: str, fmt: str, rel: str, func: str
) -> None:
    _module_or_skip("rogueflow.intel.indicators", func)
    store = IntelStore(workspace, builtins=list)
    snap = store.add(kind, shared / rel, fmt=fmt, valid_from=_utc("2018-01-01"))
    assert snap.rows > 0
    assert store.at(kind, _utc("2018-06-01")) == snap
    assert store.at(kind, _utc("2017-06-01")) is None
    assert store.load(snap) is not None
