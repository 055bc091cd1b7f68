"""``intel update`` against a local HTTP server serving the real lists of ../shared/data.

Acceptance 4: good, corrupt, oversized and hostile feeds; the previous snapshot
survives every failure. Only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import gzip
import io
import re
import threading
import time
import zipfile
import zlib
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from rogueflow.errors import ConfigError, InputError
from rogueflow.intel import kinds
from rogueflow.intel.feeds import BUILTIN_FEEDS, load_feeds, update
from rogueflow.intel.fetch import fetch
from rogueflow.intel.snapshots import IntelStore
from rogueflow.workspace import Workspace
from tests.test_intel_store import TEST_KIND, _module_or_skip

MB = 1 << 20
Handler = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """A loopback HTTP server whose routes a test sets: bytes, or a handler function."""

    def __init__(self) -> None:
        self.routes: dict[str, bytes | Handler] = {}
        self.stop = threading.Event()
        routes, stop = self.routes, self.stop

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                route = routes.get(self.path)
                try:
                    if route is None:
                        self.send_error(404, "Not Found")
                    elif isinstance(route, bytes):
                        self.send_response(200)
                        self.send_header("Content-Length", str(len(route)))
                        self.end_headers()
                        self.wfile.write(route)
                    else:
                        route(self)
                except OSError:
                    pass  # the client gave up (timeouts, caps): expected here

            def log_message(self, *args: object) -> None:
                pass

        H.stop = stop  # type: ignore[attr-defined]
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.httpd.daemon_threads = True
        self.httpd.block_on_close = False  # type: ignore[attr-defined]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setitem(kinds.KINDS, "test-domains", TEST_KIND)
    s = Server()
    yield s
    s.close()


def _feeds(ws: Workspace, server: Server, *feeds: dict[str, object], **top: object) -> None:
    """Write feeds.toml: no built-in feeds (never the internet in tests)."""
    lines = ["builtin_feeds = false"] + [f"{k} = {_toml(v)}" for k, v in top.items()]
    for f in feeds:
        lines.append("[[feed]]")
        for k, v in {"kind": "test-domains", "format": "domains", **f}.items():
            v = server.url(str(v)) if k == "url" else v
            lines.append(f"{k} = {_toml(v)}")
    (ws.root / "feeds.toml").write_text("\n".join(lines) + "\n")


def _toml(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, int | float) else f'"{v}"'


def _lines(data: bytes) -> int:
    return sum(1 for ln in data.decode().splitlines() if ln.strip() and not ln.startswith("#"))


@pytest.mark.needs_shared
def test_update_stores_real_lists_and_keeps_them_on_failure(
    shared: Path, server: Server, workspace: Workspace
) -> None:
    nocoin = (shared / "mining-lists/nocoin/hosts.txt").read_bytes()
    vpn = (shared / "ut1-categories/vpn.domains").read_bytes()
    server.routes["/nocoin.txt"] = nocoin
    server.routes["/vpn.domains.gz"] = gzip.compress(vpn)
    _feeds(workspace, server, {"name": "nocoin", "url": "/nocoin.txt"},
           {"name": "ut1-vpn", "url": "/vpn.domains.gz"})  # fmt: skip
    results = update(workspace)
    assert [r.ok for r in results] == [True, True], [r.line() for r in results]
    store = IntelStore(workspace, builtins=list)
    by_name = {s.name: s for s in store.list("test-domains")}
    assert by_name["nocoin"].rows == _lines(nocoin) == 313
    assert by_name["ut1-vpn"].rows == _lines(vpn) == 6039
    assert by_name["ut1-vpn"].path.read_bytes() == vpn  # stored decompressed
    assert by_name["nocoin"].source == server.url("/nocoin.txt")
    assert by_name["nocoin"].valid_from is None  # an undated kind applies to all dates

    # same content again: nothing new
    again = update(workspace, ["nocoin"])
    assert again[0].ok and again[0].unchanged and again[0].snapshot == by_name["nocoin"]

    # the feed turns corrupt: validation fails with the line, the old snapshot stays
    server.routes["/nocoin.txt"] = nocoin + b"0.0.0.0 \xff\xfe bad entry\n"
    failed = update(workspace, ["nocoin"])[0]
    assert not failed.ok and failed.previous == by_name["nocoin"]
    assert server.url("/nocoin.txt") in (failed.error or "")
    server.routes["/nocoin.txt"] = nocoin.replace(b"0.0.0.0 ad-miner.com", b"ad miner com")
    failed = update(workspace, ["nocoin"])[0]
    line = nocoin.splitlines().index(b"0.0.0.0 ad-miner.com") + 1
    assert not failed.ok and f"nocoin.txt, line {line}: not a domain" in (failed.error or "")
    assert IntelStore(workspace, builtins=list).list("test-domains") == list(by_name.values())


@pytest.mark.needs_shared
def test_oversized_feed_is_refused(shared: Path, server: Server, workspace: Workspace) -> None:
    big = (shared / "vpn-datacenter-lists/output_datacenter_ipv4.txt").read_bytes()  # 665 KB

    def chunked(h: BaseHTTPRequestHandler) -> None:  # no Content-Length: caught while streaming
        h.send_response(200)
        h.end_headers()
        for i in range(0, len(big), 8192):
            h.wfile.write(big[i : i + 8192])

    server.routes["/announced.txt"] = big
    server.routes["/streamed.txt"] = chunked  # type: ignore[assignment]
    _feeds(workspace, server, {"name": "announced", "url": "/announced.txt"},
           {"name": "streamed", "url": "/streamed.txt"}, max_bytes=256 * 1024)  # fmt: skip
    results = {r.feed.name: r for r in update(workspace)}
    assert "Content-Length" in (results["announced"].error or "")
    assert "over the cap" in (results["announced"].error or "")
    assert "more than the cap of 262,144 bytes" in (results["streamed"].error or "")
    assert IntelStore(workspace, builtins=list).list() == []
    assert list((workspace.intel_dir / "downloads").iterdir()) == []


def _bomb(size: int) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * MB
    return b"".join([*(comp.compress(block) for _ in range(size // MB)), comp.flush()])


def test_decompression_bombs_are_refused(server: Server, workspace: Workspace) -> None:
    bomb = _bomb(64 * MB)
    assert len(bomb) < 100_000
    server.routes["/bomb.gz"] = bomb
    xz = io.BytesIO()
    import lzma

    xz.write(lzma.compress(b"a" * (32 * MB), preset=6))
    server.routes["/bomb.xz"] = xz.getvalue()
    _feeds(workspace, server,
           {"name": "ratio", "url": "/bomb.gz", "max_bytes": 512 * MB},
           {"name": "size", "url": "/bomb.gz", "max_bytes": 2 * MB, "max_ratio": 1e9},
           {"name": "xz", "url": "/bomb.xz", "max_bytes": 512 * MB})  # fmt: skip
    started = time.monotonic()
    results = {r.feed.name: r for r in update(workspace)}
    assert time.monotonic() - started < 10
    assert "decompression bomb refused" in (results["ratio"].error or "")
    assert "expands past the cap of 2,097,152 bytes" in (results["size"].error or "")
    assert "decompression bomb refused" in (results["xz"].error or "")
    assert IntelStore(workspace, builtins=list).list() == []


def test_hostile_servers(server: Server, workspace: Workspace) -> None:
    def loop(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()

    def chain(h: BaseHTTPRequestHandler) -> None:  # /chain/N -> /chain/N+1, never ends
        n = int(h.path.rsplit("/", 1)[1])
        server.routes[f"/chain/{n + 1}"] = chain
        h.send_response(301)
        h.send_header("Location", f"/chain/{n + 1}")
        h.send_header("Content-Length", "0")
        h.end_headers()

    def to_file(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", "file:///etc/passwd")
        h.send_header("Content-Length", "0")
        h.end_headers()

    def slow(h: BaseHTTPRequestHandler) -> None:
        h.stop.wait(3)  # type: ignore[attr-defined]

    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        for _ in range(40):
            if h.stop.is_set():  # type: ignore[attr-defined]
                return
            h.wfile.write(b"a.example\n")
            h.wfile.flush()
            time.sleep(0.1)

    server.routes.update({"/loop": loop, "/chain/0": chain, "/file": to_file,
                          "/slow": slow, "/trickle": trickle})  # fmt: skip
    _feeds(workspace, server,
           {"name": "loop", "url": "/loop"}, {"name": "chain", "url": "/chain/0"},
           {"name": "file", "url": "/file"}, {"name": "missing", "url": "/missing"},
           {"name": "slow", "url": "/slow", "timeout": 0.5},
           {"name": "trickle", "url": "/trickle", "timeout": 1.0})  # fmt: skip
    started = time.monotonic()
    results = {r.feed.name: r for r in update(workspace)}
    assert time.monotonic() - started < 8
    assert not any(r.ok for r in results.values())
    assert "redirect" in (results["loop"].error or "")
    assert "too many redirects" in (results["chain"].error or "")
    assert "redirect to file: refused" in (results["file"].error or "")
    assert "HTTP 404" in (results["missing"].error or "")
    assert "timed out" in (results["slow"].error or "")
    assert "not complete after 1 s" in (results["trickle"].error or "")
    assert all(r.previous is None for r in results.values())
    assert IntelStore(workspace, builtins=list).list() == []


def test_zip_archives(server: Server, workspace: Workspace) -> None:
    def zipped(members: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return buf.getvalue()

    server.routes["/one.zip"] = zipped({"lists/pools.txt": b"pool.example\nxmr.example\n"})
    server.routes["/two.zip"] = zipped({"a.txt": b"a.example\n", "b.txt": b"b.example\n"})
    server.routes["/bomb.zip"] = zipped({"big.txt": b"\0" * (16 * MB)})
    server.routes["/torn.zip"] = zipped({"a.txt": b"a.example\n" * 1000})[:-40]
    _feeds(workspace, server, {"name": "one", "url": "/one.zip"},
           {"name": "two", "url": "/two.zip"}, {"name": "bomb", "url": "/bomb.zip"},
           {"name": "torn", "url": "/torn.zip"})  # fmt: skip
    results = {r.feed.name: r for r in update(workspace)}
    assert results["one"].ok and results["one"].snapshot.rows == 2  # type: ignore[union-attr]
    assert "2 files refused" in (results["two"].error or "")
    assert "decompression bomb refused" in (results["bomb"].error or "")
    assert "corrupt zip" in (results["torn"].error or "")


def test_dated_feed_closes_the_previous_snapshot(server: Server, workspace: Workspace) -> None:
    server.routes["/exits"] = b"exit1.example\n"
    _feeds(workspace, server,
           {"name": "exits", "url": "/exits", "dated": True, "valid_for_days": 2})  # fmt: skip
    first = update(workspace)[0].snapshot
    assert first is not None and first.valid_from is not None and first.valid_to is not None
    assert first.valid_to - first.valid_from == timedelta(days=2)
    # the next list is dated by its own header, inside the first one's validity
    dated = first.valid_from + timedelta(hours=1)
    server.routes["/exits"] = f"# valid-after {dated.isoformat()}\nexit2.example\n".encode()
    second = update(workspace)[0].snapshot
    store = IntelStore(workspace, builtins=list)
    assert second is not None and second.valid_from == dated
    closed = store.get(first.id)
    assert closed.valid_to == second.valid_from and closed.valid_from == first.valid_from
    assert store.at("test-domains", first.valid_from + timedelta(minutes=30)) == closed
    assert store.at("test-domains", dated + timedelta(days=1)) == second
    assert second.valid_to == dated + timedelta(days=2)
    # a failure later keeps the second snapshot current
    server.routes["/exits"] = b"not valid\n"
    result = update(workspace)[0]
    assert not result.ok and result.previous == store.get(second.id)


def test_cli_update_exit_codes(server: Server, workspace: Workspace) -> None:
    from rogueflow.cli.intel import intel
    from rogueflow.cli.main import Ctx

    server.routes["/good"] = b"good.example\n"
    _feeds(workspace, server, {"name": "good", "url": "/good"}, {"name": "gone", "url": "/gone"},
           {"name": "off", "url": "/good", "enabled": False})  # fmt: skip

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(intel, list(args), obj=Ctx(str(workspace.root), False))
        return result.exit_code, result.stdout, result.stderr

    code, out, err = run("update", "good")
    assert code == 0 and out.startswith("ok good: new test-domains:good:")
    assert "fetching good" in err and "1 feed(s): 1 new, 0 unchanged, 0 failed" in err
    code, out, err = run("update")  # every enabled feed: good and gone, not off
    assert code == 1 and "ok good: unchanged" in out and "FAILED gone:" in out
    assert "HTTP 404" in out and "no previous snapshot" in out and "off" not in out
    code, _, err = run("update", "nope")
    assert code == 2 and "unknown feed(s) nope" in err
    code, out, _ = run("list", "--feeds")
    assert code == 0 and "good" in out and "[disabled]" in out and "never fetched" in out


def test_feed_configuration(workspace: Workspace, server: Server) -> None:
    feeds = {f.name: f for f in load_feeds(workspace)}
    assert set(feeds) == {f.name for f in BUILTIN_FEEDS}
    for f in BUILTIN_FEEDS:
        assert f.format in kinds.KINDS[f.kind].formats, f.name
        assert f.url.startswith(("https://", "http://")), f.name
    assert feeds["tor-exit-list"].is_dated and not feeds["nocoin"].is_dated
    assert not feeds["rir-apnic"].enabled
    # a workspace feed overrides only what it sets, and adds its own
    (workspace.root / "feeds.toml").write_text(
        'timeout = 5\n[[feed]]\nname = "nocoin"\nenabled = false\n'
        '[[feed]]\nname = "mine"\nkind = "test-domains"\nformat = "domains"\n'
        'url = "https://example.org/x"\nvalid_for_days = 0.5\n'
    )
    feeds = {f.name: f for f in load_feeds(workspace)}
    assert not feeds["nocoin"].enabled and feeds["nocoin"].url == BUILTIN_FEEDS[5].url
    assert feeds["mine"].timeout == 5 and feeds["tor-exit-list"].timeout == 5
    assert feeds["mine"].valid_for_days == 0.5
    for text, message in [
        ("[[feed]]\nname = 'x'\nkind = 'nope'\nformat = 'a'\nurl = 'http://a'\n", "unknown kind"),
        ("[[feed]]\nname = 'x'\nkind = 'test-domains'\nformat = 'mmdb'\nurl = 'http://a'\n",
         "no format"),
        ("[[feed]]\nname = 'x'\nkind = 'test-domains'\nformat = 'domains'\nurl = 'ftp://a'\n",
         "http"),
        ("[[feed]]\nname = 'x'\nkind = 'test-domains'\n", "lacks format, url"),
        ("[[feed]]\nname = 'x'\ncolour = 'red'\n", "unknown key(s) colour"),
        ("max_bytes = -1\n", "positive"),
        ("max_bytes = 'big'\n", "number"),
        ("surprise = 1\n", "unknown key"),
        ("[[feed]\n", "feeds.toml"),
    ]:  # fmt: skip
        (workspace.root / "feeds.toml").write_text(text)
        with pytest.raises(ConfigError, match=re.escape(message)):
            load_feeds(workspace)


def test_fetch_refuses_other_schemes(tmp_path: Path) -> None:
    for url in ("file:///etc/passwd", "ftp://127.0.0.1/x", "http://"):
        with pytest.raises(InputError, match="only http"):
            fetch(url, tmp_path, max_bytes=MB, timeout=1, max_ratio=100)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.needs_shared
@pytest.mark.parametrize(
    ("kind", "fmt", "rel", "func"),
    [
        ("cryptojacking", "domains", "mining-lists/nocoin/hosts.txt", "load_cryptojacking_domains"),
        ("doh-resolvers", "domains", "ut1-categories/doh.domains", "load_doh_domains"),
        ("mining-pools", "domains", "mining-lists/coinblockerlists-2018/list.txt",
         "load_mining_domains"),
        ("hosting-ranges", "cidr", "vpn-datacenter-lists/output_datacenter_ipv6.txt",
         "load_hosting_cidrs"),
    ],
)  # fmt: skip
def test_update_with_the_real_loaders(
    shared: Path, server: Server, workspace: Workspace, kind: str, fmt: str, rel: str, func: str
) -> None:
    _module_or_skip("rogueflow.intel.indicators", func)
    data = (shared / rel).read_bytes()
    server.routes["/list"] = data
    server.routes["/corrupt"] = data[: len(data) // 2] + b"\n\x00\x01garbage\xff line\n"
    _feeds(workspace, server, {"name": "real", "kind": kind, "format": fmt, "url": "/list"})
    result = update(workspace)[0]
    assert result.ok and result.snapshot is not None and result.snapshot.rows > 0, result.line()
    _feeds(workspace, server, {"name": "real", "kind": kind, "format": fmt, "url": "/corrupt"})
    failed = update(workspace)[0]
    assert not failed.ok and failed.previous == result.snapshot
    assert IntelStore(workspace, builtins=list).list(kind) == [result.snapshot]


def test_fetch_decompresses_every_supported_format(server: Server, tmp_path: Path) -> None:
    import bz2
    import lzma

    text = b"".join(b"host%d.example\n" % i for i in range(50_000))  # ~900 KB, compresses ~10x
    server.routes["/l.txt.gz"] = gzip.compress(text[:1000]) + gzip.compress(text[1000:])
    server.routes["/l.txt.bz2"] = bz2.compress(text)
    server.routes["/l.txt.xz"] = lzma.compress(text)
    server.routes["/torn.gz"] = gzip.compress(text)[:-100]
    server.routes["/junk.gz"] = gzip.compress(text) + b"trailing junk"
    for ext in ("gz", "bz2", "xz"):
        out = fetch(server.url(f"/l.txt.{ext}"), tmp_path / ext, max_bytes=2 * MB, timeout=5,
                    max_ratio=100)  # fmt: skip
        assert out.name == "l.txt" and out.read_bytes() == text
        assert [p.name for p in out.parent.iterdir()] == ["l.txt"]  # no temporary left
    with pytest.raises(InputError, match="truncated"):
        fetch(server.url("/torn.gz"), tmp_path / "t", max_bytes=2 * MB, timeout=5, max_ratio=100)
    with pytest.raises(InputError, match="corrupt"):
        fetch(server.url("/junk.gz"), tmp_path / "j", max_bytes=2 * MB, timeout=5, max_ratio=100)
    assert list((tmp_path / "t").iterdir()) == list((tmp_path / "j").iterdir()) == []
