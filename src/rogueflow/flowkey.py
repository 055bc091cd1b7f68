"""Community ID v1 flow keys from stored 5-tuples.

The hashing itself is the reference implementation (the ``communityid``
package by Corelight); this module only adapts rogueflow's 16-byte addresses
and ICMP encoding (type*256+code in ``dst_port``) to it.

>>> from rogueflow.addr import parse_one
>>> community_id(parse_one("128.232.110.120"), parse_one("66.35.250.204"), 6, 34855, 80)
'1:LQU9qZlK+B5F3KDmev6m5PMibrg='
"""

from __future__ import annotations

from collections.abc import Sequence

import communityid

from rogueflow.addr import format_one

_ALGO = communityid.CommunityID(seed=0, use_base64=True)
ICMP, ICMP6 = 1, 58


def community_id(src: bytes, dst: bytes, proto: int, sport: int, dport: int) -> str:
    s, d = format_one(src), format_one(dst)
    if proto == ICMP:
        tpl = communityid.FlowTuple.make_icmp(s, d, dport >> 8, dport & 0xFF)
    elif proto == ICMP6:
        tpl = communityid.FlowTuple.make_icmp6(s, d, dport >> 8, dport & 0xFF)
    elif proto in (6, 17, 132):
        tpl = communityid.FlowTuple(proto, s, d, sport, dport)
    else:
        tpl = communityid.FlowTuple.make_ip(s, d, proto)
    return str(_ALGO.calc(tpl))


def community_ids(
    src: Sequence[bytes | None],
    dst: Sequence[bytes | None],
    proto: Sequence[int | None],
    sport: Sequence[int | None],
    dport: Sequence[int | None],
) -> list[str | None]:
    out: list[str | None] = []
    for s, d, p, sp, dp in zip(src, dst, proto, sport, dport, strict=True):
        if s is None or d is None or p is None:
            out.append(None)
        else:
            out.append(community_id(s, d, p, sp or 0, dp or 0))
    return out
