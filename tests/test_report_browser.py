"""report.html in a real headless Chromium (Debian ``chromium`` + ``chromium-driver``).

The demo workspace (``--scale small``) is built once per module and its report opened
from a ``file://`` URL. The page must raise no error, draw every chart findings.json
lists, fit the window (1280 px and 700 px wide), show the unclassified share beside
every category chart and make no network request. Chromium runs with every host name
unresolvable and a proxy on a loopback port that refuses connections, so a request
that slipped through would fail instead of leaving the machine; the performance log
(the DevTools Network events) records every request the page made.

The full-page screenshot is written to the module's tmp dir and copied to
``$ROGUEFLOW_SCREENSHOT_DIR/report.png`` when that is set (e.g. a CI artifact), else to
``.pytest_cache/d/report-browser/report.png``; ``-rP`` prints both paths.

A deliberately broken copy of the report checks that the harness sees each kind of
failure it asserts the absence of.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.wait import WebDriverWait

from rogueflow.report.html import is_category_chart
from tests.conftest import DemoRun, require_tool

pytestmark = [pytest.mark.slow, pytest.mark.needs_tool("chromium")]

WIDE, NARROW = 1280, 700
# seconds, for any one browser command (page load, script, screenshot): a page load takes
# 5-30 s on a busy 2-core machine (3.5 MB of plotly.js to parse, then every chart)
TIMEOUT = 120
LOCAL_SCHEMES = ("data:", "blob:", "about:")

# Recorded from the first line of the page on: errors and rejected promises that the
# browser log might word differently or drop.
CATCH_ERRORS = """
window.__errors = [];
window.addEventListener("error", function (e) {
  window.__errors.push(String(e.message || e.type) + " @ " + (e.filename || "") + ":" + e.lineno);
});
window.addEventListener("unhandledrejection", function (e) {
  window.__errors.push("unhandled rejection: " + String(e.reason));
});
"""

# Per chart container: is it a Plotly graph, how many traces and drawn marks, its
# title and whether the SVG fits the container and the container the window.
CHARTS_JS = """
var width = document.documentElement.clientWidth;
return Array.from(document.querySelectorAll("div.chart[data-chart]")).map(function (div) {
  var svg = div.querySelector("svg.main-svg");
  var box = div.getBoundingClientRect();
  var title = div.querySelector(".gtitle");
  var note = document.querySelector('[data-unclassified-for="' + div.dataset.chart + '"]');
  return {
    id: div.dataset.chart,
    plotly: div.classList.contains("js-plotly-plot"),
    svgs: div.querySelectorAll("svg.main-svg").length,
    traces: (div.data || []).length,
    trace_groups: div.querySelectorAll(".overplot .trace, .overplot .hm").length,
    marks: Array.from(div.querySelectorAll(".overplot .trace path")).filter(function (p) {
      var d = p.getAttribute("d"); return d && d !== "M0,0Z" && d.length > 4;
    }).length + Array.from(div.querySelectorAll(".overplot .hm image")).filter(function (i) {
      var src = i.getAttribute("href") || i.getAttribute("xlink:href") || "";
      return src.startsWith("data:image/");  // heatmaps are drawn into an inline image
    }).length,
    title: title ? title.textContent : null,
    svg_width: svg ? svg.getBoundingClientRect().width : null,
    width: box.width,
    height: box.height,
    right: box.right,
    window_width: width,
    note: note && note.closest("figure") === div.closest("figure") && note.offsetParent
      ? note.textContent : null
  };
});
"""


@dataclass
class Page:
    """What one page load did, as seen through the browser log and the DOM."""

    url: str
    log: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)
    drawn: int = -1
    failed_charts: int = -1
    charts: list[dict[str, Any]] = field(default_factory=list)
    scroll_width: int = 0
    client_width: int = 0

    def console_problems(self) -> list[str]:
        """SEVERE entries, and warnings the page's own scripts wrote."""
        return [
            f"{e['level']} {e.get('source', '')}: {e['message']}"
            for e in self.log
            if e["level"] == "SEVERE"
            or (e["level"] == "WARNING" and e.get("source") in ("console-api", "javascript"))
        ]

    def off_page_requests(self) -> list[str]:
        """Requests for anything but the report itself and inline data."""
        return [u for u in self.requests if u != self.url and not u.startswith(LOCAL_SCHEMES)]


@dataclass
class Browser:
    driver: webdriver.Chrome

    def open(self, path: Path, width: int = WIDE) -> Page:
        d = self.driver
        d.get_log("browser")  # drop what an earlier page left
        d.get_log("performance")
        d.set_window_size(width, 900)
        page = Page(path.resolve().as_uri())
        d.get(page.url)
        # on a timeout drawn stays -1 below, and the log says why
        with contextlib.suppress(TimeoutException):
            WebDriverWait(d, TIMEOUT).until(
                lambda drv: (
                    drv.execute_script("return document.body.dataset.chartsDrawn") is not None
                )
            )
        self._inspect(page)
        return page

    def resize(self, page: Page, width: int) -> Page:
        """The same page in a window ``width`` wide, once the charts have followed."""
        self.driver.set_window_size(width, 900)
        with contextlib.suppress(TimeoutException):  # an overflow shows in the widths below
            WebDriverWait(self.driver, 10).until(
                lambda drv: all(
                    c["svg_width"] is not None and c["svg_width"] <= c["width"] + 1
                    for c in drv.execute_script(CHARTS_JS)
                )
            )
        again = Page(page.url)
        self._inspect(again)
        return again

    def _inspect(self, page: Page) -> None:
        d = self.driver
        page.log += d.get_log("browser")
        for entry in d.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            params = msg.get("params", {})
            if msg["method"] == "Network.requestWillBeSent":
                page.requests.append(params["request"]["url"])
            elif msg["method"] == "Network.loadingFailed":
                page.failed.append(f"{params.get('errorText')} ({params.get('type')})")
        page.errors += d.execute_script("return window.__errors || ['error hook missing']")
        page.resources = d.execute_script(
            "return performance.getEntriesByType('resource').map(function (e) { return e.name; })"
        )
        drawn = d.execute_script("return document.body.dataset.chartsDrawn")
        failed = d.execute_script("return document.body.dataset.chartsFailed")
        page.drawn = -1 if drawn is None else int(drawn)
        page.failed_charts = -1 if failed is None else int(failed)
        page.charts = d.execute_script(CHARTS_JS)
        page.scroll_width, page.client_width = d.execute_script(
            "var e = document.documentElement; return [e.scrollWidth, e.clientWidth];"
        )

    def screenshot(self) -> bytes:
        """The whole page, not just the window."""
        d = self.driver
        w, h = d.execute_script(
            "var e = document.documentElement; return [e.scrollWidth, e.scrollHeight];"
        )
        shot = d.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": w, "height": h, "scale": 1},
            },
        )
        return base64.b64decode(shot["data"])


def _refusing_port() -> socket.socket:
    """A loopback port that is bound but never listens: connections to it are refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    return s


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    chromium = require_tool("chromium", "chromium chromium-driver")
    chromedriver = require_tool("chromedriver", "chromium chromium-driver")
    profile = tmp_path_factory.mktemp("chromium-profile")
    blackhole = _refusing_port()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
        "--disable-dev-shm-usage",  # container /dev/shm is small
        "--disable-gpu",
        f"--user-data-dir={profile}",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--hide-scrollbars",  # the screenshot shows the page, not a scrollbar
        # offline: no name resolves, and everything else goes to a port that refuses
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--proxy-server=http://127.0.0.1:{blackhole.getsockname()[1]}",
        "--proxy-bypass-list=<-loopback>",
    ):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # its own process group, so the browser it starts can be ended with it, by id
    service = Service(
        chromedriver, log_output=subprocess.DEVNULL, popen_kw={"start_new_session": True}
    )
    driver = None
    try:
        driver = webdriver.Chrome(service=service, options=opts)
        driver.command_executor.client_config.timeout = TIMEOUT
        driver.set_page_load_timeout(TIMEOUT)
        driver.set_script_timeout(TIMEOUT)
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": CATCH_ERRORS})
        yield Browser(driver)
    finally:
        try:
            if driver is not None:
                driver.quit()
        finally:
            process = getattr(service, "process", None)
            if process is not None:
                # quit() normally ends both; this catches a browser left behind. The group
                # id stays reserved while any member lives, so it names only our processes.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            blackhole.close()


@pytest.fixture(scope="module")
def report(demo_reference: DemoRun) -> Path:
    """The demo report (small scale, shared with the other demo tests): every analysis
    the reference scenario triggers."""
    return demo_reference.report_dir / "report.html"


@pytest.fixture(scope="module")
def shot_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser", numbered=True)


class _Charts(HTMLParser):
    """The chart containers the HTML declares."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "div" and "chart" in (a.get("class") or "").split() and a.get("data-chart"):
            self.ids.append(a["data-chart"] or "")


def declared_charts(html: Path) -> list[str]:
    p = _Charts()
    p.feed(html.read_text(encoding="utf-8"))
    return p.ids


def _stable_dir(request: pytest.FixtureRequest) -> Path | None:
    """Where the screenshot outlives pytest's rotation of its tmp dirs (it keeps three, and
    parallel sessions rotate them too): $ROGUEFLOW_SCREENSHOT_DIR, else .pytest_cache/d/."""
    env = os.environ.get("ROGUEFLOW_SCREENSHOT_DIR")
    if env:
        Path(env).mkdir(parents=True, exist_ok=True)
        return Path(env)
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    return None if cache is None else Path(cache.mkdir("report-browser"))


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from the IHDR chunk; asserts a complete PNG."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    assert data[12:16] == b"IHDR"
    assert data[-8:-4] == b"IEND", "PNG without its end chunk"
    w, h = struct.unpack(">II", data[16:24])
    return int(w), int(h)


def test_report_renders_in_chromium(
    report: Path,
    browser: Browser,
    shot_dir: Path,
    record_property: Any,
    request: pytest.FixtureRequest,
) -> None:
    doc = json.loads((report.parent / "findings.json").read_text(encoding="utf-8"))
    t0 = time.perf_counter()
    page = browser.open(report)
    load_s = time.perf_counter() - t0

    assert page.console_problems() == []
    assert page.errors == []
    # offline: the report itself and inline data, nothing else, and nothing failed
    assert page.requests and page.requests[0] == page.url
    assert page.off_page_requests() == []
    assert page.failed == []
    assert [r for r in page.resources if not r.startswith((page.url, *LOCAL_SCHEMES))] == []

    # every chart of findings.json is declared once, drawn and visible
    declared = declared_charts(report)
    assert sorted(declared) == sorted(doc["charts"]), "charts in findings.json vs report.html"
    assert len(set(declared)) == len(declared)
    assert (page.drawn, page.failed_charts) == (len(doc["charts"]), 0)
    assert [c["id"] for c in page.charts] == declared
    for c in page.charts:
        spec = doc["charts"][c["id"]]
        assert c["plotly"] and c["svgs"] >= 1, c
        assert c["traces"] >= 1 and c["trace_groups"] >= 1 and c["marks"] >= 1, c
        assert c["title"] == spec["title"], c
        assert c["height"] >= 300 and c["width"] >= 600, c
        # the chart fits its container and the container the window
        assert c["svg_width"] <= c["width"] + 1 and c["right"] <= c["window_width"] + 1, c

    # the unclassified share beside every category chart (REFERENCE-CASE caveat 3)
    category = {cid for cid, chart in doc["charts"].items() if is_category_chart(chart)}
    assert "counterparts.categories" in category
    for c in page.charts:
        if c["id"] in category:
            assert c["note"] and "Unclassified share" in c["note"] and "%" in c["note"], c
        else:
            assert c["note"] is None, c

    # no horizontal scrolling: wide tables scroll inside their own box
    assert page.scroll_width <= page.client_width

    png = browser.screenshot()
    w, h = png_size(png)
    height = browser.driver.execute_script("return document.documentElement.scrollHeight")
    assert (w, h) == (page.client_width, height)
    # a blank page this size compresses to ~0.005 byte per pixel, the demo report to ~0.15
    assert len(png) > 0.02 * w * h, f"screenshot of {len(png)} bytes for {w}×{h} px"
    kept = shot_dir / "report.png"
    kept.write_bytes(png)
    stable = _stable_dir(request)
    if stable is not None:
        shutil.copyfile(kept, stable / "report.png")
    record_property("screenshot", str(stable / "report.png" if stable else kept))
    print(f"screenshot: {kept} ({w}×{h} px), copy in {stable}; page drawn in {load_s:.1f} s")

    # a narrow window: still no horizontal scrolling and every chart refits
    narrow = browser.resize(page, NARROW)
    assert narrow.scroll_width <= narrow.client_width, "page wider than a 700 px window"
    for c in narrow.charts:
        assert c["svg_width"] <= c["width"] + 1 and c["right"] <= c["window_width"] + 1, c
    assert narrow.console_problems() == [] and narrow.errors == []


def test_harness_sees_failures(report: Path, browser: Browser, tmp_path: Path) -> None:
    """A broken copy: bad chart JSON, a thrown error and an outside image are all caught."""
    html = report.read_text(encoding="utf-8")
    first = declared_charts(report)[0]
    marker = f'<script type="application/json" id="spec-{first}">'
    assert html.count(marker) == 1
    html = html.replace(marker, marker + "not json ")
    html = html.replace(
        "</main>",
        '<img src="http://rogueflow-test.invalid/pixel.png" alt="">'
        '<script>throw new Error("deliberate");</script></main>',
    )
    broken = tmp_path / "broken.html"
    broken.write_text(html, encoding="utf-8")

    page = browser.open(broken)
    problems = "\n".join(page.console_problems())
    assert f"chart {first}: SyntaxError" in problems
    assert "deliberate" in problems
    assert any("deliberate" in e for e in page.errors)
    assert page.off_page_requests() == ["http://rogueflow-test.invalid/pixel.png"]
    assert page.failed  # refused by the loopback proxy, never sent anywhere else
    assert page.failed_charts == 1 and page.drawn == len(declared_charts(report)) - 1
    bad = next(c for c in page.charts if c["id"] == first)
    assert not bad["plotly"] and bad["svgs"] == 0
