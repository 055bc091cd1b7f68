"""The built-in service taxonomy: validity, known names, port rules, malformed TOML."""

from __future__ import annotations

import re
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from rogueflow.errors import InputError
from rogueflow.intel import indicators as ind
from rogueflow.intel.domains import entry_problem

CATALOG = ind.ServiceCatalog.builtin()
RAW = tomllib.loads(
    (resources.files("rogueflow.intel") / "data" / "services.toml").read_text("utf-8")
)


def test_builtin_taxonomy_is_valid() -> None:
    services = RAW["service"]
    assert len(services) == len(CATALOG) > 100
    domains: dict[str, str] = {}
    for s in services:
        assert s["category"] in ind.CATEGORIES
        assert s["ndpi"] in ind.NDPI_CATEGORIES
        for d in s.get("domains", []):
            assert entry_problem(d) is None and d == d.lower()
            assert domains.setdefault(d, s["name"]) == s["name"], f"{d} in two services"
        for rule in s.get("ports", []):
            proto, _, ports = rule.partition("/")
            lo, _, hi = ports.partition("-")
            assert proto in ind.PROTOCOLS and 1 <= int(lo) <= int(hi or lo) <= 65535
        if s["category"].startswith("social."):
            assert s["origin"] == s["category"].split(".")[1]
    used = {s["category"] for s in services}
    assert used | ind.DETECTOR_CATEGORIES == set(ind.CATEGORIES), (
        f"categories without a service: {set(ind.CATEGORIES) - used - ind.DETECTOR_CATEGORIES}"
    )


def test_required_coverage() -> None:
    names = {s.name for s in CATALOG.services}
    required = {
        "facebook", "instagram", "whatsapp", "twitter", "linkedin", "google", "gmail",
        "youtube", "itunes", "amazon", "microsoft", "baidu", "alibaba", "taobao", "alipay",
        "aliyun", "qq", "wechat", "weibo", "sohu", "sina", "netease-mail", "youku", "iqiyi",
        "bilibili", "steam", "wargaming", "blizzard", "xinhua", "peoples-daily", "nytimes",
        "bbc", "binance", "coinbase", "kraken", "bitfinex", "huobi", "okx", "poloniex",
        "bittrex", "kucoin", "bithumb", "upbit", "minexmr", "supportxmr", "nanopool",
        "moneroocean", "f2pool", "antpool", "braiins", "viabtc", "ethermine", "flypool",
        "dwarfpool", "2miners", "hashvault", "herominers", "google-doh", "cloudflare-doh",
        "quad9-doh", "opendns-doh", "tor", "nordvpn", "expressvpn", "protonvpn", "mullvad",
        "pia", "surfshark",
    }  # fmt: skip
    assert required <= names, required - names
    for s in CATALOG.services:
        if s.category == "crypto.mining":
            assert s.coins, f"{s.name} names no coin"


@pytest.mark.parametrize(
    ("name", "service", "category", "confidence", "evidence"),
    [
        ("www.facebook.com", "facebook", "social.western", 0.90, "domain facebook.com (suffix)"),
        ("api.weibo.cn", "weibo", "social.chinese", 0.90, "domain weibo.cn (suffix)"),
        ("pool.minexmr.com", "minexmr", "crypto.mining", 0.90, "domain minexmr.com (suffix)"),
        ("dns.google", "google-doh", "anonymizer.doh", 0.95, "domain dns.google (exact)"),
        ("DNS.Google.", "google-doh", "anonymizer.doh", 0.95, "domain dns.google (exact)"),
        ("mozilla.cloudflare-dns.com", "cloudflare-doh", "anonymizer.doh", 0.95,
         "domain mozilla.cloudflare-dns.com (exact)"),
        ("mail.google.com", "gmail", "email", 0.95, "domain mail.google.com (exact)"),
        ("www.google.com", "google", "search", 0.90, "domain google.com (suffix)"),
        ("mail.163.com", "netease-mail", "email", 0.90, "domain 163.com (suffix)"),
        ("weixin.qq.com", "wechat", "social.chinese", 0.95, "domain weixin.qq.com (exact)"),
        ("eu1-zcash.flypool.org", "flypool", "crypto.mining", 0.90, "domain flypool.org (suffix)"),
        ("eth-eu1.nanopool.org", "nanopool", "crypto.mining", 0.90,
         "domain nanopool.org (suffix)"),
        ("www.binance.com", "binance", "crypto.exchange", 0.90, "domain binance.com (suffix)"),
        ("www.torproject.org", "tor", "anonymizer.tor", 0.90, "domain torproject.org (suffix)"),
        ("api.worldoftanks.eu", "wargaming", "gaming", 0.90, "domain worldoftanks.eu (suffix)"),
        ("www.moe.gov.cn", "government", "government", 0.90, "domain gov.cn (suffix)"),
        ("cs.mit.edu", "education", "education", 0.90, "domain edu (suffix)"),
    ],
)  # fmt: skip
def test_known_names(
    name: str, service: str, category: str, confidence: float, evidence: str
) -> None:
    m = CATALOG.by_name(pa.array([name]))
    assert CATALOG.services[m.service[0]].name == service
    assert m.category.to_pylist() == [category]
    assert m.confidence[0] == pytest.approx(confidence)
    assert m.evidence.to_pylist() == [evidence]


def test_unmatched_names_and_vectorised_shape() -> None:
    names = pa.chunked_array([["notfacebook.com", None], ["facebook.com.evil.net", "x.fb.com"]])
    m = CATALOG.by_name(names)
    assert m.service.tolist()[:3] == [-1, -1, -1]
    assert m.category.to_pylist() == [None, None, None, "social.western"]
    assert m.confidence.dtype == np.float32 and m.confidence.tolist()[:3] == [0, 0, 0]
    assert m.evidence.null_count == 3


def test_coins() -> None:
    assert CATALOG.service("minexmr").coins == ("XMR",)
    assert CATALOG.coin_of("pool.minexmr.com") == "XMR"
    assert CATALOG.coin_of("xmr-eu1.nanopool.org") == "XMR"
    assert CATALOG.coin_of("eth-eu1.nanopool.org") == "ETH"
    assert CATALOG.coin_of("eu1-zcash.flypool.org") == "ZEC"
    assert CATALOG.coin_of("www.nanopool.org") is None  # multi-coin pool, no coin label
    assert CATALOG.coin_of("example.org") is None


def test_port_rules() -> None:
    proto = pa.array([6, 17, 6, 6, 6, 6, 17, 6, 17, 17, 17, 6, 1, None], pa.uint8())
    port = pa.array(
        [8333, 6885, 9333, 18080, 30303, 8233, 1194, 9001, 51820, 4500, 53, 853, 8333, 8333],
        pa.uint16(),
    )
    m = CATALOG.by_port(proto, port)
    got = [CATALOG.services[i].name if i >= 0 else None for i in m.service]
    assert got == [
        "bitcoin-p2p", "bittorrent", "litecoin-p2p", "monero-p2p", "ethereum-p2p",
        "zcash-p2p", "openvpn", "tor", "wireguard", "ipsec", "dns", "dns-over-tls", None, None,
    ]  # fmt: skip
    assert m.confidence[0] == pytest.approx(ind.CONFIDENCE["port-rule"])
    assert m.evidence.to_pylist()[:2] == ["port tcp/8333", "port udp/6881-6889"]
    assert m.category.to_pylist()[0] == "crypto.p2p"
    # numpy input, ports out of range never index past the table
    m2 = CATALOG.by_port(np.array([6, 6]), np.array([70000, -1]))
    assert m2.service.tolist() == [-1, -1]


def test_confidence_scale_orders_evidence() -> None:
    c = ind.CONFIDENCE
    assert 1 > c["domain-exact"] > c["domain-suffix"] > c["address-list"] > c["port-rule"] > 0


@pytest.mark.needs_shared
def test_ndpi_categories_match_ndpi_output(shared: Path) -> None:
    """The category names nDPI printed for the shared captures are names we accept."""
    seen = set()
    for out in (shared / "ndpi" / "pcap").glob("*.ndpiReader.out"):
        seen |= set(re.findall(r"\[cat: ([A-Za-z_]+)/\d+\]", out.read_text(errors="replace")))
    assert seen and seen <= ind.NDPI_CATEGORIES


SERVICE = '[[service]]\nname = "x"\ncategory = "news"\nndpi = "News"\ndomains = ["x.org"]\n'


@pytest.mark.parametrize(
    ("text", "where", "problem"),
    [
        ("version = 1\n[[service]\n", "line 2", "bad TOML"),
        ("version = 2\n" + SERVICE, None, "version"),
        ("version = 1\n", None, "no \\[\\[service\\]\\]"),
        ("version = 1\n" + SERVICE.replace("news", "blogs"), "service 'x'", "category 'blogs'"),
        ("version = 1\n" + SERVICE.replace('"News"', '"Newz"'), "service 'x'", "nDPI"),
        ("version = 1\n" + SERVICE.replace("news", "social.chinese"), "service 'x'", "origin"),
        ("version = 1\n" + SERVICE + SERVICE, "service 'x'", "duplicate service"),
        ("version = 1\n" + SERVICE + SERVICE.replace('"x"', '"y"'), "service 'y'", "also x's"),
        ("version = 1\n" + SERVICE.replace("x.org", "X.org"), "service 'x'", "lower-case"),
        ("version = 1\n" + SERVICE.replace("x.org", "a..b"), "service 'x'", "empty label"),
        ("version = 1\n" + SERVICE + 'ports = ["tcp/0"]\n', "service 'x'", "out of range"),
        ("version = 1\n" + SERVICE + 'ports = ["tcp/9-8"]\n', "service 'x'", "inverted"),
        ("version = 1\n" + SERVICE + 'ports = ["icmp/8"]\n', "service 'x'", "proto/port"),
        ("version = 1\n" + SERVICE + 'colour = "red"\n', "service 'x'", "unknown keys"),
        ("version = 1\n" + SERVICE + 'coins = ["monero"]\n', "service 'x'", "ticker"),
        ('version = 1\n[[service]]\nname = "x"\ncategory = "news"\n', "service 'x'", "domains or"),
        (
            "version = 1\n" + SERVICE + 'ports = ["tcp/80-90"]\n'
            + SERVICE.replace('"x"', '"y"').replace("x.org", "y.org") + 'ports = ["tcp/85"]\n',
            "service 'y'", "x's",
        ),
    ],
)  # fmt: skip
def test_malformed_taxonomy(tmp_path: Path, text: str, where: str | None, problem: str) -> None:
    p = tmp_path / "services.toml"
    p.write_text(text)
    with pytest.raises(InputError, match=problem) as exc:
        ind.load_services(p)
    assert exc.value.where == where and exc.value.path == str(p)


def test_user_taxonomy_loads(tmp_path: Path) -> None:
    p = tmp_path / "mine.toml"
    p.write_text("version = 1\n" + SERVICE + 'ports = ["udp/9999"]\n')
    cat = ind.load_services(p)
    assert cat.rows == 1 and cat.by_name(["a.x.org"]).service.tolist() == [0]
    assert cat.by_port([17], [9999]).evidence.to_pylist() == ["port udp/9999"]


def test_docs_page_names_every_category_and_rule() -> None:
    text = (Path(__file__).resolve().parent.parent / "docs" / "indicators.md").read_text()
    for cat in ind.CATEGORIES:
        assert f"`{cat}`" in text, f"docs/indicators.md: category {cat}"
    for key, value in ind.CONFIDENCE.items():
        assert f"`{key}` | {value:.2f}" in text, f"docs/indicators.md: confidence {key}"
    for origin in ind.ORIGINS:
        assert f"`{origin}`" in text
