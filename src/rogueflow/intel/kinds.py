"""Kinds of reference data, assembled in one visible list.

A kind names what a snapshot means (``geo-country``: address → ISO country)
and which loaders read which file formats. Loaders are ``module:function``
strings, imported on use, with the signature ``(path: Path) -> object``; they
raise :class:`rogueflow.errors.InputError` naming the file and line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rogueflow.errors import ConfigError


@dataclass(frozen=True)
class Kind:
    name: str
    description: str
    #: format name -> "module:function"; the first is the default
    formats: dict[str, str]

    def loader(self, fmt: str | None = None) -> Callable[[Path], object]:
        fmt = fmt or next(iter(self.formats))
        if fmt not in self.formats:
            raise ConfigError(
                f"kind {self.name!r} has no format {fmt!r}; formats: {', '.join(self.formats)}"
            )
        module, func = self.formats[fmt].split(":")
        loaded: Callable[[Path], object] = getattr(importlib.import_module(module), func)
        return loaded


_GEO = "rogueflow.intel.geo"
_IND = "rogueflow.intel.indicators"

KINDS: dict[str, Kind] = {
    k.name: k
    for k in (
        Kind(
            "geo-country",
            "address range -> ISO 3166 country code",
            {
                "mmdb": f"{_GEO}:load_country_mmdb",
                "csv": f"{_GEO}:load_country_csv",
                "rir-delegated": f"{_GEO}:load_rir_delegated",
                "cidr-dir": f"{_GEO}:load_country_cidr_dir",
                "embedded": f"{_GEO}:load_embedded_country",
            },
        ),
        Kind(
            "geo-asn",
            "address range -> origin AS number and organisation",
            {
                "mmdb": f"{_GEO}:load_asn_mmdb",
                "csv": f"{_GEO}:load_asn_csv",
                "pfx2as": f"{_GEO}:load_pfx2as",
                "embedded": f"{_GEO}:load_embedded_asn",
            },
        ),
        Kind(
            "anonymizer-mmdb",
            "address range -> anonymous/VPN/hosting/Tor flags (GeoIP2 Anonymous IP)",
            {
                "mmdb": f"{_GEO}:load_anonymous_mmdb",
            },
        ),
        Kind(
            "mining-pools",
            "mining pool domains and addresses -> pool, coin",
            {
                "domains": f"{_IND}:load_mining_domains",
                "ips": f"{_IND}:load_mining_ips",
            },
        ),
        Kind(
            "crypto-sites",
            "cryptocurrency sites and exchanges (domains) -> service",
            {
                "domains": f"{_IND}:load_crypto_domains",
            },
        ),
        Kind(
            "cryptojacking",
            "browser-mining hosts (domains)",
            {
                "domains": f"{_IND}:load_cryptojacking_domains",
            },
        ),
        Kind(
            "tor-relays",
            "Tor relays and exits as of a consensus date",
            {
                "consensus": f"{_IND}:load_tor_consensus",
                "exit-list": f"{_IND}:load_tor_exit_list",
            },
        ),
        Kind(
            "vpn-ranges",
            "VPN provider address ranges -> provider",
            {
                "cidr": f"{_IND}:load_vpn_cidrs",
            },
        ),
        Kind(
            "hosting-ranges",
            "datacenter / hosting address ranges",
            {
                "cidr": f"{_IND}:load_hosting_cidrs",
            },
        ),
        Kind(
            "vpn-domains",
            "VPN provider domains",
            {
                "domains": f"{_IND}:load_vpn_domains",
            },
        ),
        Kind(
            "doh-resolvers",
            "DNS-over-HTTPS resolver domains",
            {
                "domains": f"{_IND}:load_doh_domains",
            },
        ),
        Kind(
            "dns-resolutions",
            "addresses of indicator domains, resolved at intel update",
            {"csv": "rogueflow.intel.resolve:load_resolutions"},
        ),
        Kind(
            "services",
            "service/category taxonomy: domains, ranges and ports -> service, category",
            {
                "toml": f"{_IND}:load_services",
            },
        ),
    )
}


def kind(name: str) -> Kind:
    if name not in KINDS:
        raise ConfigError(f"unknown reference-data kind {name!r}; kinds: {', '.join(KINDS)}")
    return KINDS[name]
