"""Shared Hypothesis strategies: addresses, prefixes, ports, protocols, flow records.

One module so every parser and store test draws from the same distributions
(ibis ``tests/strategies.py``).
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.schema import FIELD_BY_NAME, MEASURED

# Wall-clock deadlines flake on a loaded 2-core CI box and on the first call into
# Arrow's kernels; correctness, not speed, is what these properties check.

TS_MIN = datetime(2010, 1, 1, tzinfo=UTC)
TS_MAX = datetime(2030, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)

#: Protocols that matter to flow analysis, plus any other number now and then.
COMMON_PROTOCOLS = (1, 6, 17, 47, 50, 58, 132)

ipv4 = st.builds(ipaddress.IPv4Address, st.integers(0, 2**32 - 1))
ipv6 = st.builds(ipaddress.IPv6Address, st.integers(0, 2**128 - 1))
ip_addresses = st.one_of(ipv4, ipv6)

ipv4_text = ipv4.map(str)
ipv6_text = ipv6.map(str)
ip_text = ip_addresses.map(str)

#: Addresses in rogueflow's 16-byte form (IPv4 mapped into ::ffff:0:0/96).
addr_bytes = ip_text.map(addr.parse_one)

ports = st.integers(0, 65535)
protocols = st.one_of(st.sampled_from(COMMON_PROTOCOLS), st.integers(0, 255))
tcp_flags = st.integers(0, 255)
counters = st.integers(0, 2**40)


@st.composite
def prefixes(
    draw: st.DrawFn, version: int | None = None
) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """A network in canonical (strict) form, IPv4 or IPv6."""
    v = version or draw(st.sampled_from((4, 6)))
    if v == 4:
        length = draw(st.integers(0, 32))
        base: ipaddress.IPv4Address | ipaddress.IPv6Address = draw(ipv4)
        return ipaddress.ip_network(f"{base}/{length}", strict=False)
    length = draw(st.integers(0, 128))
    base = draw(ipv6)
    return ipaddress.ip_network(f"{base}/{length}", strict=False)


timestamps = st.datetimes(
    min_value=TS_MIN.replace(tzinfo=None),
    max_value=TS_MAX.replace(tzinfo=None),
    timezones=st.just(UTC),
)


def to_us(t: datetime) -> int:
    """A UTC datetime as integer microseconds since the epoch (exact, no float)."""
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@st.composite
def flow_records(
    draw: st.DrawFn, start: datetime = TS_MIN, end: datetime = TS_MAX
) -> dict[str, Any]:
    """One flow with every measured column, as Python values of the canonical types."""
    t0 = draw(
        st.datetimes(
            min_value=start.replace(tzinfo=None),
            max_value=end.replace(tzinfo=None),
            timezones=st.just(UTC),
        )
    )
    duration = draw(st.integers(0, 3_600_000_000))
    proto = draw(protocols)
    has_ports = proto in (6, 17, 132)
    return {
        "ts_start": t0,
        "ts_end": t0 + timedelta(microseconds=duration),
        "src_addr": draw(addr_bytes),
        "dst_addr": draw(addr_bytes),
        "src_port": draw(ports) if has_ports else 0,
        "dst_port": draw(ports),
        "proto": proto,
        "tcp_flags": draw(tcp_flags) if proto == 6 else 0,
        "packets": draw(st.integers(1, 2**32)),
        "bytes": draw(counters),
        "rev_packets": draw(st.integers(0, 2**20)),
        "rev_bytes": draw(st.integers(0, 2**30)),
        "sampling_rate": draw(st.sampled_from((1, 1, 1, 100, 1000, 2**32 - 1))),
    }


MEASURED_SCHEMA = pa.schema([pa.field(n, FIELD_BY_NAME[n].type, nullable=False) for n in MEASURED])


def records_to_table(records: list[dict[str, Any]]) -> pa.Table:
    """Records of :func:`flow_records` to an Arrow table of the measured columns."""
    return pa.Table.from_pylist(records, schema=MEASURED_SCHEMA)


def flow_tables(
    min_rows: int = 0, max_rows: int = 40, **kwargs: Any
) -> st.SearchStrategy[pa.Table]:
    """Arrow tables with the measured columns of ``FLOW_SCHEMA``, in its types."""
    return st.lists(flow_records(**kwargs), min_size=min_rows, max_size=max_rows).map(
        records_to_table
    )
