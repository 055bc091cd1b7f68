"""The demo scenario as data: the watched space, its counterparts, behaviours, dates and rates.

Nothing here is a result: the simulator draws flows from these rates and the
ground truth is measured from the drawn rows (:mod:`rogueflow.demo.truth`).

Rates are in "units": one unit is roughly the mean number of flows per day the
watched space exchanged with the world in early 2017. The simulator scales the
whole grid to the requested number of flows, and calibrates the 2019 volume
step so that 2019's flows per day come out near ``GROWTH_TARGET`` × 2017's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

START = date(2017, 1, 1)  # first local day simulated
END = date(2019, 11, 30)  # last local day simulated (inclusive)
ZONE = "Asia/Pyongyang"
KP_PREFIXES = ("175.45.176.0/22", "210.52.109.0/24", "77.94.35.0/24")
GROWTH_TARGET = 4.0  # "+300 %" from 2017 to 2019
#: flows in the whole simulation (kp activity + unrelated noise) per scale
SCALE_FLOWS = {"small": 90_000, "full": 30_000_000}
NOISE_SHARE = 0.2  # share of all flows that touch no watched address

Knots = tuple[tuple[date, float], ...]
"""A piecewise-linear curve over local dates; a step is two knots one day apart."""


@dataclass(frozen=True)
class Net:
    """A counterpart network with the country its RIR allocated it to."""

    cidr: str
    country: str  # ISO 3166 alpha-2
    org: str
    kind: str  # service, university, government, news, hosting, isp, access, military, tor, vpn


# Counterpart networks. Countries are the RIR delegation of each block as listed by
# herrbischoff/country-ip-blocks (RIR delegated-stats, commit b46ce3c, 2025-09);
# tests/test_demo.py checks every row against that list when ../shared/data is present.
# Orgs are the block's well-known holder; where a holder is only illustrative
# (a typical block of that kind in that country) the org says so.
NETS: tuple[Net, ...] = (
    # Western services (ARIN)
    Net("157.240.0.0/17", "US", "Facebook", "service"),
    Net("157.240.128.0/17", "US", "Facebook (Instagram edge)", "service"),
    Net("172.217.0.0/16", "US", "Google", "service"),
    Net("216.58.192.0/19", "US", "Google", "service"),
    Net("74.125.0.0/16", "US", "Google (Gmail)", "service"),
    Net("208.65.152.0/22", "US", "YouTube", "service"),
    Net("104.244.40.0/21", "US", "Twitter", "service"),
    Net("108.174.0.0/20", "US", "LinkedIn", "service"),
    Net("205.251.192.0/19", "US", "Amazon", "service"),
    Net("17.0.0.0/8", "US", "Apple (incl. iTunes)", "service"),
    Net("208.64.200.0/22", "US", "Valve (Steam)", "service"),
    Net("151.101.0.0/16", "US", "Fastly (nytimes.com)", "news"),
    Net("128.31.0.0/16", "US", "MIT (Tor relay moria1 and others)", "tor"),
    Net("199.58.80.0/22", "CA", "Tor relay longclaw hosting", "tor"),
    Net("159.203.0.0/16", "US", "DigitalOcean", "hosting"),
    Net("45.33.0.0/17", "US", "Linode", "hosting"),
    # Europe and Russia
    Net("86.59.21.0/24", "AT", "Tor relay tor26 hosting", "tor"),
    Net("131.188.0.0/16", "DE", "FAU Erlangen (Tor relay gabelmoo)", "tor"),
    Net("193.23.244.0/24", "DE", "Tor relay dannenberg hosting", "tor"),
    Net("171.25.193.0/24", "SE", "DFRI (Tor relays)", "tor"),
    Net("88.99.0.0/16", "DE", "Hetzner Online", "hosting"),
    Net("5.9.0.0/16", "DE", "Hetzner Online", "hosting"),
    Net("51.15.0.0/16", "FR", "Scaleway (Online SAS)", "hosting"),
    Net("5.79.64.0/18", "NL", "LeaseWeb", "hosting"),
    Net("185.65.134.0/24", "SE", "VPN provider (illustrative commercial VPN range)", "vpn"),
    Net("87.250.224.0/19", "RU", "Yandex", "service"),
    Net("94.100.176.0/20", "RU", "Mail.Ru", "service"),
    Net("92.223.16.0/20", "LU", "Wargaming.net / G-Core (World of Tanks)", "service"),
    # China (non-Unicom hosting; Unicom is the access provider and is excluded)
    Net("220.181.0.0/16", "CN", "Baidu (China Telecom Beijing IDC)", "service"),
    Net("180.76.0.0/16", "CN", "Baidu Cloud", "service"),
    Net("140.205.0.0/16", "CN", "Alibaba (taobao.com)", "service"),
    Net("106.11.0.0/16", "CN", "Alibaba (incl. Youku)", "service"),
    Net("182.254.0.0/16", "CN", "Tencent (qq.com)", "service"),
    Net("180.149.128.0/19", "CN", "Sina (weibo.com)", "service"),
    Net("123.58.160.0/19", "CN", "NetEase (163.com)", "service"),
    Net("101.227.0.0/16", "CN", "China Telecom Shanghai IDC (news sites)", "news"),
    Net("219.158.0.0/17", "CN", "China Unicom backbone (AS4837): access provider", "access"),
    # India ≈ 1/5 of activity: research network, government, news
    Net("14.139.0.0/16", "IN", "ERNET India (universities and research institutes)", "university"),
    Net("164.100.0.0/16", "IN", "National Informatics Centre (Government of India)", "government"),
    Net("203.199.0.0/16", "IN", "Tata Communications (news and institutional hosting)", "news"),
    # Presence abroad
    Net("202.188.0.0/17", "MY", "TM Net (Telekom Malaysia)", "isp"),
    Net("1.9.0.0/16", "MY", "TM Net (Malaysian institutions, illustrative)", "government"),
    Net("202.70.64.0/20", "NP", "WorldLink Nepal (illustrative)", "isp"),
    Net("27.34.0.0/17", "NP", "Nepal institutional range (illustrative)", "government"),
    Net("41.89.0.0/16", "KE", "KENET (Kenya Education Network)", "university"),
    Net("41.90.0.0/16", "KE", "Kenyan access network (illustrative)", "isp"),
    Net("41.94.0.0/16", "MZ", "Mozambique institutional range (illustrative)", "government"),
    Net("41.220.160.0/20", "MZ", "Mozambique access network (illustrative)", "isp"),
    Net("36.64.0.0/11", "ID", "Telkom Indonesia", "isp"),
    Net("130.216.0.0/16", "NZ", "University of Auckland", "university"),
    Net("27.252.0.0/16", "NZ", "NZ access network (BitTorrent peers, illustrative)", "isp"),
    Net(
        "131.203.0.0/16",
        "NZ",
        "New Zealand government network (illustrative defence-like source)",
        "military",
    ),
    Net("1.20.0.0/16", "TH", "Thai access network (illustrative)", "isp"),
    Net("202.28.0.0/16", "TH", "UniNet Thailand (universities)", "university"),
    Net("27.147.128.0/17", "BD", "Bangladeshi access network (illustrative)", "isp"),
    Net("103.10.124.0/23", "HK", "Valve (Steam, Asia)", "service"),
    Net("14.100.0.0/16", "SG", "Singapore access network (illustrative)", "isp"),
)

#: the probing source and the DNS-tunnel endpoint, named once
PROBE_SOURCE = "131.203.44.17"
TUNNEL_DOMAIN = "d8x2k4.info"
TUNNEL_ENDPOINT = "45.33.41.17"
TOR_RELAYS = (  # directory authorities: long-lived relays with stable addresses
    ("86.59.21.38", 443),
    ("131.188.40.189", 443),
    ("193.23.244.244", 443),
    ("171.25.193.9", 443),
    ("199.58.81.140", 443),
    ("128.31.0.34", 9001),
    ("128.31.0.39", 9001),
)


@dataclass(frozen=True)
class Service:
    """One kind of counterpart: where it lives, how it talks, what names it shows."""

    name: str
    category: str
    nets: tuple[str, ...]  # cidrs of NETS
    ports: tuple[int, ...]
    proto: str = "tcp"  # tcp or udp
    names: tuple[str, ...] = ()  # SNI (tls) or DNS query names
    tls: bool = False
    zeek_service: str = "-"
    servers: int = 6  # distinct addresses drawn per net
    bytes_out: float = 2_000.0  # median payload bytes, originator
    bytes_in: float = 40_000.0  # median payload bytes, responder
    group: str = ""  # western / chinese (social comparison)
    fixed: tuple[tuple[str, int], ...] = ()  # explicit (address, port) endpoints


def _web(
    name: str,
    cat: str,
    nets: tuple[str, ...],
    names: tuple[str, ...],
    group: str = "",
    bytes_in: float = 60_000.0,
    servers: int = 6,
) -> Service:
    return Service(
        name, cat, nets, (443,), "tcp", names, True, "ssl", servers, 2_500.0, bytes_in, group
    )


SERVICES: tuple[Service, ...] = (
    _web(
        "facebook",
        "social",
        ("157.240.0.0/17",),
        ("www.facebook.com", "facebook.com", "static.xx.fbcdn.net"),
        "western",
    ),
    _web(
        "instagram",
        "social",
        ("157.240.128.0/17",),
        ("www.instagram.com", "scontent.cdninstagram.com"),
        "western",
    ),
    _web(
        "google",
        "search",
        ("172.217.0.0/16", "216.58.192.0/19"),
        ("www.google.com", "google.com", "www.gstatic.com"),
        "western",
    ),
    _web("twitter", "social", ("104.244.40.0/21",), ("twitter.com", "abs.twimg.com"), "western"),
    _web("linkedin", "social", ("108.174.0.0/20",), ("www.linkedin.com",), "western"),
    _web("amazon", "shopping", ("205.251.192.0/19",), ("www.amazon.com",), "western"),
    _web("apple", "social", ("17.0.0.0/8",), ("www.apple.com",), "western"),
    _web(
        "baidu",
        "search",
        ("220.181.0.0/16", "180.76.0.0/16"),
        ("www.baidu.com", "baidu.com"),
        "chinese",
    ),
    _web(
        "alibaba",
        "shopping",
        ("140.205.0.0/16",),
        ("www.taobao.com", "www.alibaba.com", "world.taobao.com"),
        "chinese",
    ),
    _web(
        "tencent",
        "social",
        ("182.254.0.0/16",),
        ("www.qq.com", "mail.qq.com", "im.qq.com"),
        "chinese",
    ),
    _web("weibo", "social", ("180.149.128.0/19",), ("weibo.com", "www.weibo.com"), "chinese"),
    _web(
        "youku",
        "streaming",
        ("106.11.0.0/16",),
        ("www.youku.com", "v.youku.com"),
        bytes_in=3_000_000.0,
    ),
    _web(
        "youtube",
        "streaming",
        ("208.65.152.0/22",),
        ("www.youtube.com", "r4---sn-a5mekn7s.googlevideo.com"),
        bytes_in=4_000_000.0,
    ),
    _web("itunes", "streaming", ("17.0.0.0/8",), ("itunes.apple.com",), bytes_in=3_000_000.0),
    Service(
        "worldoftanks",
        "gaming",
        ("92.223.16.0/20",),
        (20014, 20015, 32801),
        "udp",
        servers=8,
        bytes_out=60_000.0,
        bytes_in=400_000.0,
    ),
    _web(
        "worldoftanks-web",
        "gaming",
        ("92.223.16.0/20",),
        ("worldoftanks.asia", "wgcw.wargaming.net"),
    ),
    Service(
        "steam",
        "gaming",
        ("208.64.200.0/22", "103.10.124.0/23"),
        (27015, 27017, 27036),
        "udp",
        servers=8,
        bytes_out=40_000.0,
        bytes_in=300_000.0,
    ),
    _web(
        "steam-web",
        "gaming",
        ("208.64.200.0/22",),
        ("store.steampowered.com", "steamcommunity.com"),
        bytes_in=900_000.0,
    ),
    Service(
        "bittorrent",
        "filesharing",
        ("27.252.0.0/16", "130.216.0.0/16", "14.100.0.0/16"),
        tuple(range(6881, 6890)),
        "udp",
        servers=120,
        bytes_out=300_000.0,
        bytes_in=2_000_000.0,
    ),
    _web("gmail", "email", ("74.125.0.0/16",), ("mail.google.com", "imap.gmail.com")),
    Service(
        "mail-163",
        "email",
        ("123.58.160.0/19",),
        (993, 465),
        "tcp",
        ("imap.163.com", "smtp.163.com"),
        True,
        "ssl",
    ),
    Service(
        "mail-my", "email", ("202.188.0.0/17",), (993, 587, 143), "tcp", (), False, "-", servers=3
    ),
    _web("xinhua", "news", ("101.227.0.0/16",), ("www.xinhuanet.com",)),
    _web("people", "news", ("101.227.0.0/16",), ("www.people.com.cn", "en.people.cn")),
    _web("nytimes", "news", ("151.101.0.0/16",), ("www.nytimes.com",)),
    _web("yandex", "search", ("87.250.224.0/19",), ("yandex.ru", "www.yandex.com")),
    # presence abroad: local resources (universities, government, news)
    _web(
        "in-univ",
        "abroad",
        ("14.139.0.0/16",),
        (
            "www.iitd.ac.in",
            "www.jnu.ac.in",
            "www.du.ac.in",
            "www.iisc.ac.in",
            "www.amity.edu",
            "www.uohyd.ac.in",
            "www.iitb.ac.in",
        ),
        servers=24,
        bytes_in=120_000.0,
    ),
    _web(
        "in-gov",
        "abroad",
        ("164.100.0.0/16",),
        ("www.nrsc.gov.in", "nmlindia.org", "www.india.gov.in", "mea.gov.in"),
        servers=12,
    ),
    _web(
        "in-news",
        "abroad",
        ("203.199.0.0/16",),
        ("timesofindia.indiatimes.com", "www.thehindu.com"),
        servers=10,
    ),
    _web(
        "my-local",
        "abroad",
        ("1.9.0.0/16", "202.188.0.0/17"),
        ("www.malaysia.gov.my", "www.thestar.com.my", "www.um.edu.my"),
    ),
    _web(
        "np-local",
        "abroad",
        ("27.34.0.0/17", "202.70.64.0/20"),
        ("www.nepal.gov.np", "kathmandupost.com"),
    ),
    _web(
        "ke-local",
        "abroad",
        ("41.89.0.0/16", "41.90.0.0/16"),
        ("www.uonbi.ac.ke", "www.nation.co.ke"),
    ),
    _web(
        "mz-local",
        "abroad",
        ("41.94.0.0/16", "41.220.160.0/20"),
        ("www.portaldogoverno.gov.mz", "www.uem.mz"),
    ),
    _web("id-local", "abroad", ("36.64.0.0/11",), ("www.ui.ac.id", "www.kompas.com")),
    _web("nz-local", "abroad", ("130.216.0.0/16",), ("www.auckland.ac.nz", "www.stuff.co.nz")),
    _web(
        "th-local",
        "abroad",
        ("202.28.0.0/16", "1.20.0.0/16"),
        ("www.chula.ac.th", "www.bangkokpost.com"),
    ),
    _web("bd-local", "abroad", ("27.147.128.0/17",), ("www.du.ac.bd", "www.thedailystar.net")),
    # crypto
    Service(
        "bitcoin",
        "crypto",
        ("159.203.0.0/16", "45.33.0.0/17", "88.99.0.0/16", "5.79.64.0/18", "51.15.0.0/16"),
        (8333,),
        "tcp",
        servers=400,
        bytes_out=30_000.0,
        bytes_in=200_000.0,
    ),
    Service(
        "monero-stratum",
        "crypto",
        ("88.99.0.0/16", "51.15.0.0/16"),
        (3333, 5555, 7777, 14444),
        "tcp",
        servers=4,
        bytes_out=6_000.0,
        bytes_in=9_000.0,
    ),
    Service(
        "monero-stratum-tls",
        "crypto",
        ("5.9.0.0/16",),
        (14433, 9000),
        "tcp",
        ("xmr-eu1.nanopool.org", "gulf.moneroocean.stream", "pool.minexmr.com"),
        True,
        "ssl",
        servers=3,
        bytes_out=6_000.0,
        bytes_in=9_000.0,
    ),
    Service(
        "monero-p2p",
        "crypto",
        ("88.99.0.0/16", "159.203.0.0/16", "5.79.64.0/18"),
        (18080,),
        "tcp",
        servers=60,
        bytes_out=50_000.0,
        bytes_in=400_000.0,
    ),
    Service(
        "monero-dns",
        "crypto",
        ("219.158.0.0/17",),
        (53,),
        "udp",
        ("pool.minexmr.com", "xmr.nanopool.org", "moneroocean.stream"),
        False,
        "dns",
        servers=2,
        bytes_out=40.0,
        bytes_in=90.0,
    ),
    Service(
        "litecoin",
        "crypto",
        ("159.203.0.0/16", "88.99.0.0/16"),
        (9333,),
        "tcp",
        servers=40,
        bytes_out=20_000.0,
        bytes_in=100_000.0,
    ),
    # obfuscation
    Service(
        "openvpn",
        "obfuscation",
        ("185.65.134.0/24", "51.15.0.0/16"),
        (1194,),
        "udp",
        servers=6,
        bytes_out=400_000.0,
        bytes_in=3_000_000.0,
    ),
    Service(
        "wireguard",
        "obfuscation",
        ("185.65.134.0/24",),
        (51820,),
        "udp",
        servers=4,
        bytes_out=400_000.0,
        bytes_in=3_000_000.0,
    ),
    Service(
        "ipsec",
        "obfuscation",
        ("5.79.64.0/18",),
        (500, 4500),
        "udp",
        servers=3,
        bytes_out=200_000.0,
        bytes_in=1_500_000.0,
    ),
    Service(
        "tor",
        "obfuscation",
        (),
        (),
        "tcp",
        bytes_out=80_000.0,
        bytes_in=900_000.0,
        fixed=TOR_RELAYS,
    ),
    Service(
        "dns-tunnel",
        "obfuscation",
        (),
        (),
        "udp",
        (TUNNEL_DOMAIN,),
        False,
        "dns",
        bytes_out=180.0,
        bytes_in=220.0,
        fixed=((TUNNEL_ENDPOINT, 53),),
    ),
    # infrastructure: resolvers at the access provider, servers inside the watched space
    Service(
        "resolver",
        "infrastructure",
        ("219.158.0.0/17",),
        (53,),
        "udp",
        (),
        False,
        "dns",
        servers=2,
        bytes_out=40.0,
        bytes_in=110.0,
    ),
    Service(
        "mail-server",
        "infrastructure",
        ("51.15.0.0/16", "5.79.64.0/18", "106.11.0.0/16"),
        (25, 587),
        "tcp",
        (),
        False,
        "smtp",
        servers=30,
        bytes_out=30_000.0,
        bytes_in=600.0,
    ),
    Service(
        "ftp-server",
        "infrastructure",
        ("88.99.0.0/16", "182.254.0.0/16"),
        (21,),
        "tcp",
        (),
        False,
        "ftp",
        servers=10,
        bytes_out=800.0,
        bytes_in=3_000.0,
    ),
    Service(
        "dns-server",
        "infrastructure",
        ("219.158.0.0/17", "87.250.224.0/19", "88.99.0.0/16"),
        (53,),
        "udp",
        ("star-co.net.kp", "kcna.kp", "naenara.com.kp", "rodong.rep.kp", "mfa.gov.kp"),
        False,
        "dns",
        servers=20,
        bytes_out=45.0,
        bytes_in=160.0,
    ),
    Service(
        "probe",
        "probing",
        (),
        (22, 23, 80, 443, 3389, 8080, 445, 21, 25),
        "tcp",
        bytes_out=0.0,
        bytes_in=0.0,
        fixed=((PROBE_SOURCE, 0),),
    ),
)


@dataclass(frozen=True)
class Member:
    service: str
    rate: Knots  # units per day (× the volume curve when the behaviour is volume-scaled)


@dataclass(frozen=True)
class Behaviour:
    """A way the watched space uses the network: members, pattern, hosts, direction."""

    name: str
    members: tuple[Member, ...]
    hosts: str  # host pool in HOST_POOLS
    work_share: Knots = ((START, 0.0),)  # share on the weekday business-hours profile
    flat: bool = False  # round the clock (machines, not people)
    scaled: bool = True  # multiplied by VOLUME
    inbound: bool = False  # counterpart originates
    onset: bool = False  # at least one flow on the first day of the rate (it did start then)
    obfuscated: bool = False
    probe: bool = False  # failed short attempts (S0/REJ)
    coin: str = ""
    tags: tuple[str, ...] = field(default=())


D = date


def _k(*pts: tuple[date, float]) -> Knots:
    return tuple(pts)


#: the general volume curve: TransTelecom step on 2017-10-01, growth in 2018, step in 2019
#: (the 2019 knots are multiplied by the calibrated factor, see simulate.calibrate)
VOLUME: Knots = _k(
    (D(2017, 1, 1), 0.92),
    (D(2017, 9, 30), 1.08),
    (D(2017, 10, 1), 1.75),
    (D(2018, 12, 31), 2.5),
    (D(2019, 3, 31), 2.6),
)
VOLUME_2019: Knots = _k((D(2019, 4, 1), 3.6), (D(2019, 11, 30), 3.9))
CALIBRATED_FROM = D(2019, 4, 1)

# people's use moves from evenings/weekends (2017) to weekday office hours (2019)
WORK_PEOPLE = _k(
    (D(2017, 1, 1), 0.08),
    (D(2017, 9, 30), 0.12),
    (D(2018, 6, 30), 0.5),
    (D(2019, 1, 31), 0.86),
    (D(2019, 11, 30), 0.9),
)
WORK_LEISURE = _k((D(2017, 1, 1), 0.03), (D(2018, 6, 30), 0.1), (D(2019, 11, 30), 0.18))
FLAT = _k((START, 0.0), (END, 0.0))

# Facebook > 2× its Chinese peers until autumn 2017, then barely visible; Chinese rise
FB = _k((D(2017, 1, 1), 0.065), (D(2017, 10, 15), 0.07), (D(2018, 2, 15), 0.0025), (END, 0.002))
WESTERN_FADE = _k(
    (D(2017, 1, 1), 0.012), (D(2017, 10, 15), 0.012), (D(2018, 2, 15), 0.002), (END, 0.0015)
)
CN_RISE = _k((D(2017, 1, 1), 0.007), (D(2017, 10, 31), 0.007), (D(2018, 2, 28), 0.03), (END, 0.032))
OBF = _k(
    (D(2017, 1, 1), 0.0019),
    (D(2017, 7, 31), 0.0019),
    (D(2017, 11, 15), 0.036),
    (D(2018, 3, 31), 0.033),
    (D(2018, 12, 31), 0.012),
    (D(2019, 11, 30), 0.008),
)


def _c(v: float) -> Knots:
    return ((START, v), (END, v))


BEHAVIOURS: tuple[Behaviour, ...] = (
    Behaviour(
        "social",
        (
            Member("facebook", FB),
            Member("instagram", WESTERN_FADE),
            Member("twitter", WESTERN_FADE),
            Member("google", _c(0.03)),
            Member("linkedin", _c(0.006)),
            Member("amazon", _c(0.006)),
            Member("apple", _c(0.006)),
            Member("baidu", CN_RISE),
            Member("alibaba", CN_RISE),
            Member("tencent", CN_RISE),
            Member(
                "weibo",
                _k((START, 0.003), (D(2017, 10, 31), 0.003), (D(2018, 2, 28), 0.012), (END, 0.012)),
            ),
        ),
        "people",
        WORK_PEOPLE,
    ),
    Behaviour(
        "leisure",
        (
            Member("worldoftanks", _k((START, 0.16), (D(2018, 6, 30), 0.1), (END, 0.06))),
            Member("worldoftanks-web", _c(0.02)),
            Member("steam", _k((START, 0.1), (D(2018, 6, 30), 0.07), (END, 0.05))),
            Member("steam-web", _c(0.015)),
            Member("youku", _k((START, 0.06), (END, 0.05))),
            Member("youtube", _k((START, 0.05), (D(2018, 1, 31), 0.02), (END, 0.015))),
            Member("itunes", _k((START, 0.025), (END, 0.015))),
            Member("bittorrent", _k((START, 0.05), (END, 0.03))),
        ),
        "people",
        WORK_LEISURE,
    ),
    Behaviour(
        "work",
        (
            Member("gmail", _c(0.025)),
            Member("mail-163", _k((START, 0.01), (END, 0.02))),
            Member("mail-my", _c(0.01)),
            Member("xinhua", _c(0.012)),
            Member("people", _c(0.01)),
            Member("nytimes", _c(0.01)),
            Member("yandex", _k((START, 0.003), (END, 0.012))),
            Member("in-univ", _c(0.12)),
            Member("in-gov", _c(0.045)),
            Member("in-news", _c(0.035)),
            Member("my-local", _c(0.025)),
            Member("np-local", _c(0.014)),
            Member("ke-local", _c(0.013)),
            Member("mz-local", _c(0.01)),
            Member("id-local", _c(0.016)),
            Member("nz-local", _c(0.012)),
            Member("th-local", _c(0.013)),
            Member("bd-local", _c(0.012)),
        ),
        "people",
        WORK_PEOPLE,
    ),
    Behaviour("resolver", (Member("resolver", _c(0.09)),), "people", WORK_PEOPLE),
    Behaviour(
        "vpn-tor",
        (
            Member("openvpn", OBF),
            Member(
                "wireguard",
                _k((START, 0.0), (D(2018, 3, 1), 0.0), (D(2018, 6, 1), 0.004), (END, 0.004)),
            ),
            Member("ipsec", _k((START, 0.0005), (END, 0.001))),
            Member("tor", OBF),
        ),
        "people",
        WORK_PEOPLE,
        obfuscated=True,
    ),
    Behaviour(
        "dns-tunnel",
        (
            Member(
                "dns-tunnel",
                _k((START, 0.0), (D(2019, 2, 10), 0.0), (D(2019, 2, 11), 0.006), (END, 0.008)),
            ),
        ),
        "tunnel",
        WORK_PEOPLE,
        obfuscated=True,
        onset=True,
    ),
    Behaviour(
        "bitcoin",
        (
            Member(
                "bitcoin",
                _k((START, 0.0), (D(2017, 5, 16), 0.0), (D(2017, 5, 17), 0.035), (END, 0.03)),
            ),
        ),
        "btc",
        FLAT,
        flat=True,
        scaled=False,
        onset=True,
        coin="BTC",
    ),
    Behaviour(
        "litecoin",
        (
            Member(
                "litecoin",
                _k((START, 0.0), (D(2018, 2, 28), 0.0), (D(2018, 3, 1), 0.004), (END, 0.004)),
            ),
        ),
        "ltc",
        FLAT,
        flat=True,
        scaled=False,
        onset=True,
        coin="LTC",
    ),
    Behaviour(
        "monero",
        tuple(
            Member(
                s,
                _k(
                    (START, 0.0),
                    (D(2018, 9, 30), 0.0),
                    (D(2018, 10, 1), 0.008 * w),
                    (D(2019, 4, 30), 0.009 * w),
                    (D(2019, 5, 1), 0.05 * w),
                    (D(2019, 6, 15), 0.15 * w),
                    (END, 0.17 * w),
                ),
            )
            for s, w in (
                ("monero-stratum", 0.55),
                ("monero-stratum-tls", 0.15),
                ("monero-p2p", 0.25),
                ("monero-dns", 0.05),
            )
        ),
        "xmr",
        FLAT,
        flat=True,
        scaled=False,
        onset=True,
        coin="XMR",
    ),
    Behaviour(
        "mail-server",
        (
            Member(
                "mail-server",
                _k((START, 0.0), (D(2019, 3, 10), 0.0), (D(2019, 3, 11), 0.02), (END, 0.03)),
            ),
        ),
        "srv-mail",
        FLAT,
        flat=True,
        scaled=False,
        inbound=True,
        onset=True,
    ),
    Behaviour(
        "ftp-server",
        (
            Member(
                "ftp-server",
                _k((START, 0.0), (D(2019, 5, 21), 0.0), (D(2019, 5, 22), 0.008), (END, 0.01)),
            ),
        ),
        "srv-ftp",
        WORK_PEOPLE,
        scaled=False,
        inbound=True,
        onset=True,
    ),
    Behaviour(
        "dns-server",
        (
            Member(
                "dns-server",
                _k((START, 0.0), (D(2019, 6, 30), 0.0), (D(2019, 7, 1), 0.02), (END, 0.025)),
            ),
        ),
        "srv-dns",
        FLAT,
        flat=True,
        scaled=False,
        inbound=True,
        onset=True,
    ),
    Behaviour(
        "probe",
        (
            Member(
                "probe",
                _k(
                    (START, 0.0),
                    (D(2018, 1, 7), 0.0),
                    (D(2018, 1, 8), 0.3),
                    (D(2018, 1, 10), 0.3),
                    (D(2018, 1, 11), 0.0),
                    (END, 0.0),
                ),
            ),
        ),
        "probe-targets",
        FLAT,
        flat=True,
        scaled=False,
        inbound=True,
        probe=True,
    ),
)

PROBE_DAYS = (D(2018, 1, 8), D(2018, 1, 9), D(2018, 1, 10))
#: minimum probe attempts per day at any scale, so a small demo still shows the burst
PROBE_MIN_PER_DAY = 40


@dataclass(frozen=True)
class HostPool:
    """Addresses inside the watched space and the local day each first becomes active."""

    hosts: tuple[tuple[str, date], ...]


def _general_hosts() -> HostPool:
    # a few dozen hosts in 2017, more after the new link, more again in 2019
    out: list[tuple[str, date]] = []
    for i in range(24):
        out.append((f"175.45.176.{10 + 3 * i}", START))
    for i in range(6):
        out.append((f"210.52.109.{20 + 5 * i}", START))
    for i in range(3):
        out.append((f"77.94.35.{40 + 7 * i}", START))
    for i in range(14):
        out.append((f"175.45.177.{100 + 4 * i}", D(2017, 10, 1)))
    for i in range(20):
        out.append((f"175.45.179.{30 + 5 * i}", D(2019, 2, 1)))
    return HostPool(tuple(out))


HOST_POOLS: dict[str, HostPool] = {
    "people": _general_hosts(),
    "btc": HostPool((("175.45.178.21", START), ("175.45.178.22", START), ("175.45.178.23", START))),
    "ltc": HostPool((("175.45.178.22", START),)),
    "xmr": HostPool((("175.45.178.129", START),)),  # the NAT front of the mining operation
    "tunnel": HostPool((("175.45.179.201", START),)),
    "srv-mail": HostPool((("175.45.177.25", START),)),
    "srv-ftp": HostPool((("175.45.177.21", START),)),
    "srv-dns": HostPool((("175.45.177.53", START),)),
    "probe-targets": HostPool(tuple((f"175.45.176.{10 + 3 * i}", START) for i in range(8))),
}

#: noise: flows the sensor sees that touch no watched address (incl. neighbouring blocks)
NOISE_NETS: tuple[str, ...] = (
    "172.217.0.0/16",
    "220.181.0.0/16",
    "87.250.224.0/19",
    "88.99.0.0/16",
    "14.139.0.0/16",
    "106.11.0.0/16",
    "202.188.0.0/17",
    "36.64.0.0/11",
    "159.203.0.0/16",
    "27.252.0.0/16",
)
#: neighbours of the watched blocks, so a sloppy prefix test shows up
NOISE_NEIGHBOURS: tuple[str, ...] = ("175.45.180.0/24", "210.52.108.0/24", "77.94.34.0/24")

#: 2017 missile tests (event overlay; the simulation puts no change before them)
EVENTS: tuple[tuple[date, str], ...] = tuple(
    (D(2017, m, d), label)
    for m, d, label in (
        (4, 5, "KN-15 launch"),
        (4, 16, "KN-15 launch (failed)"),
        (4, 29, "KN-17 launch (failed)"),
        (5, 14, "Hwasong-12 launch"),
        (5, 21, "Pukguksong-2 launch"),
        (5, 29, "KN-18 launch"),
        (6, 8, "cruise missile launches"),
        (7, 4, "Hwasong-14 ICBM launch"),
        (7, 28, "Hwasong-14 ICBM launch"),
        (8, 29, "Hwasong-12 over Japan"),
        (9, 15, "Hwasong-12 over Japan"),
        (11, 29, "Hwasong-15 ICBM launch"),
    )
)

#: collection gaps: UTC days the sensor recorded nothing (drawn per seed, this many per year)
GAPS_PER_YEAR = 5

#: periods of the obfuscation comparison (local dates, inclusive)
OBF_PERIODS: tuple[tuple[str, date, date], ...] = (
    ("2017-04..2017-07", D(2017, 4, 1), D(2017, 7, 31)),
    ("2017-12..2018-03", D(2017, 12, 1), D(2018, 3, 31)),
    ("2018-04..2018-09", D(2018, 4, 1), D(2018, 9, 30)),
    ("2018-10..2019-03", D(2018, 10, 1), D(2019, 3, 31)),
    ("2019-04..2019-11", D(2019, 4, 1), D(2019, 11, 30)),
)
XMR_BASELINE = (D(2018, 10, 1), D(2019, 4, 30))
XMR_AFTER = (D(2019, 6, 1), D(2019, 11, 30))


@dataclass(frozen=True)
class Scenario:
    """One simulated world: the volume curve, behaviours, hosts and probing days.

    ``reference`` is the reference case; ``control`` is the same network, the same
    services and counterparts' kinds, with none of the behaviours a finding asserts:
    flat volume, a fixed weekday/hour pattern, no crypto, no social shift, a steady low
    VPN/Tor share, no tunnel, no new servers, no probing, no presence networks abroad
    and no change of upstream (see :mod:`rogueflow.demo.routing`). The report run on
    it must not assert any of the reference findings with moderate or high confidence.
    """

    name: str
    volume: Knots
    volume_late: Knots  # multiplied by the calibration factor from CALIBRATED_FROM on
    growth_target: float
    behaviours: tuple[Behaviour, ...]
    host_pools: dict[str, HostPool]
    probe_days: tuple[date, ...]


_CONTROL_DROP = frozenset(
    {
        # presence networks abroad: universities, ministries, local ISPs
        *("in-univ", "in-gov", "in-news"),
        *(f"{c}-local" for c in ("my", "np", "ke", "mz", "id", "nz", "th", "bd")),
    }
)
_CONTROL_KEEP = ("social", "leisure", "work", "resolver", "vpn-tor")


def _steady(k: Knots) -> Knots:
    """A curve held at its first value."""
    return _c(k[0][1])


def _control_behaviours() -> tuple[Behaviour, ...]:
    out = []
    for b in BEHAVIOURS:
        if b.name not in _CONTROL_KEEP:
            continue
        members = tuple(
            Member(m.service, _steady(m.rate)) for m in b.members if m.service not in _CONTROL_DROP
        )
        # the whole world keeps one mix of office and evening use
        work = _c(0.3) if not b.flat else b.work_share
        out.append(
            Behaviour(
                b.name,
                members,
                b.hosts,
                work,
                b.flat,
                b.scaled,
                b.inbound,
                b.onset,
                b.obfuscated,
                b.probe,
                b.coin,
                b.tags,
            )
        )
    return tuple(out)


REFERENCE = Scenario(
    "reference", VOLUME, VOLUME_2019, GROWTH_TARGET, BEHAVIOURS, HOST_POOLS, PROBE_DAYS
)
CONTROL = Scenario(
    "control",
    _c(1.0),
    ((CALIBRATED_FROM, 1.0), (END, 1.0)),
    1.0,
    _control_behaviours(),
    # the 2017 hosts only: no new hosts joining
    {"people": HostPool(tuple((a, d) for a, d in HOST_POOLS["people"].hosts if d == START))},
    (),
)
SCENARIOS: dict[str, Scenario] = {s.name: s for s in (REFERENCE, CONTROL)}
