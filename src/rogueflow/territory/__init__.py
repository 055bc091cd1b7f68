"""Watched territories: profiles, their address space over time, their clocks."""

from rogueflow.territory.profile import (
    AsnEntry,
    Interval,
    PrefixEntry,
    Territory,
    builtin_codes,
    load_builtin,
    load_file,
    parse_profile,
    resolve,
    utc_offsets,
)

__all__ = [
    "AsnEntry",
    "Interval",
    "PrefixEntry",
    "Territory",
    "builtin_codes",
    "load_builtin",
    "load_file",
    "parse_profile",
    "resolve",
    "utc_offsets",
]
