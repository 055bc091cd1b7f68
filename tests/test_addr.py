"""16-byte addresses: round trips, prefix ranges, ordering, vectorised parsing."""

from __future__ import annotations

import ipaddress

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.errors import InputError
from tests.strategies import ip_addresses, ipv4, ipv4_text, ipv6, prefixes


@given(ipv4)
def test_ipv4_round_trip(ip: ipaddress.IPv4Address) -> None:
    raw = addr.parse_one(str(ip))
    assert len(raw) == 16
    assert raw == addr.V4_MAPPED_PREFIX + ip.packed
    assert addr.format_one(raw) == str(ip)


@given(ipv6)
def test_ipv6_round_trip(ip: ipaddress.IPv6Address) -> None:
    raw = addr.parse_one(str(ip))
    assert raw == ip.packed
    text = addr.format_one(raw)
    # IPv4-mapped IPv6 addresses are how rogueflow stores IPv4: they print as IPv4.
    if ip.ipv4_mapped is not None:
        assert text == str(ip.ipv4_mapped)
    else:
        assert text == str(ip)
    assert addr.parse_one(text) == raw


@given(ip_addresses)
def test_exploded_forms_parse_the_same(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert addr.parse_one(ip.exploded) == addr.parse_one(str(ip))
    assert addr.parse_one(f"  {ip}\t") == addr.parse_one(str(ip))


def test_format_rejects_wrong_width() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        addr.format_one(b"\x01\x02\x03\x04")


@pytest.mark.parametrize("text", ["", "1.2.3", "1.2.3.256", "1.2.3.4.5", "::g", "1::2::3", "abc"])
def test_parse_one_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        addr.parse_one(text)


def test_docstring_examples() -> None:
    assert addr.parse_one("175.45.176.1").hex() == "00000000000000000000ffffaf2db001"
    assert addr.prefix_range("175.45.176.0/22")[1].hex() == "00000000000000000000ffffaf2db3ff"


@given(prefixes())
def test_prefix_range_matches_ipaddress(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> None:
    lo, hi = addr.prefix_range(str(net))
    assert lo == addr.parse_one(str(net.network_address))
    assert hi == addr.parse_one(str(net.broadcast_address))
    assert lo <= hi


@given(prefixes(), ip_addresses)
def test_prefix_membership_is_a_byte_range(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    lo, hi = addr.prefix_range(str(net))
    raw = addr.parse_one(str(ip))
    # One 128-bit space: IPv4 lives in ::ffff:0:0/96, so an IPv6 prefix covering it
    # (::/0, ::ffff:0:0/96 …) contains IPv4 addresses too.
    first, last = _numeric_key(net.network_address), _numeric_key(net.broadcast_address)
    assert (lo <= raw <= hi) == (first <= _numeric_key(ip) <= last)
    if ip.version == net.version:
        assert (lo <= raw <= hi) == (ip in net)


@given(prefixes(version=4), st.integers(0, 2**32 - 1))
def test_prefix_members_fall_inside(net: ipaddress.IPv4Network, k: int) -> None:
    member = net.network_address + (k % net.num_addresses)
    lo, hi = addr.prefix_range(str(net))
    assert lo <= addr.parse_one(str(member)) <= hi


def test_prefix_range_is_lenient_about_host_bits() -> None:
    assert addr.prefix_range("10.1.2.3/8") == addr.prefix_range("10.0.0.0/8")


def _numeric_key(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    # the numeric value in the shared 128-bit space (IPv4 mapped into ::ffff:0:0/96)
    return int(ip) + (0xFFFF << 32) if ip.version == 4 else int(ip)


@given(st.lists(ip_addresses, max_size=50))
def test_byte_order_is_numeric_order(
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    by_bytes = sorted(ips, key=lambda ip: addr.parse_one(str(ip)))
    by_number = sorted(ips, key=_numeric_key)
    assert [_numeric_key(i) for i in by_bytes] == [_numeric_key(i) for i in by_number]


@given(st.lists(ipv4, max_size=50))
def test_ipv4_byte_order_is_ipaddress_order(ips: list[ipaddress.IPv4Address]) -> None:
    assert sorted(addr.parse_one(str(i)) for i in ips) == [
        addr.parse_one(str(i)) for i in sorted(ips)
    ]


@given(st.lists(ipv6, max_size=50))
def test_ipv6_byte_order_is_ipaddress_order(ips: list[ipaddress.IPv6Address]) -> None:
    assert sorted(i.packed for i in ips) == [i.packed for i in sorted(ips)]


@given(st.lists(ip_addresses, max_size=60))
def test_parse_array_matches_parse_one(
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address],
) -> None:
    texts = [str(i) for i in ips]
    arr = addr.parse_array(texts)
    assert arr.type == addr.ADDR_TYPE
    assert arr.to_pylist() == [addr.parse_one(t) for t in texts]
    assert addr.format_array(arr) == [addr.format_one(addr.parse_one(t)) for t in texts]


# Text that is sometimes an address and often nearly one: digits, dots, colons, hex.
_address_like = st.text(alphabet="0123456789.:abcdefABCDEF x", max_size=20)
_nearly_ipv4 = st.one_of(
    ipv4_text,
    st.lists(st.integers(0, 999).map(str), min_size=3, max_size=5).map(".".join),
    st.lists(st.text("0123456789", min_size=1, max_size=4), min_size=4, max_size=4).map(".".join),
    _address_like,
)


@given(st.lists(_nearly_ipv4, min_size=1, max_size=30), st.integers(0, 10_000))
@example(["01.2.3.4"], 0)
@example(["1.2.3.4", "1.2.3.0400"], 7)
@example(["١.2.3.4"], 0)
def test_vectorised_path_equals_per_row_path(texts: list[str], offset: int) -> None:
    """The Arrow-kernel IPv4 path accepts exactly what ipaddress accepts, value for value."""
    expected: list[bytes] = []
    first_bad: int | None = None
    for i, t in enumerate(texts):
        try:
            expected.append(addr.parse_one(t))
        except ValueError:
            first_bad = i
            break
    if first_bad is None:
        assert (
            addr.parse_array(texts, path="f.csv", column="sa", row_offset=offset).to_pylist()
            == expected
        )
        return
    with pytest.raises(InputError) as info:
        addr.parse_array(texts, path="f.csv", column="sa", row_offset=offset)
    # The IPv4 rows are checked before the IPv6 rows, so the reported row is a bad
    # one, not necessarily the first.
    row = int(info.value.where.split()[-1]) - offset - 1  # type: ignore[union-attr]
    with pytest.raises(ValueError):
        addr.parse_one(texts[row])


def test_parse_array_error_names_file_row_and_column() -> None:
    with pytest.raises(InputError) as info:
        addr.parse_array(
            ["10.0.0.1", "10.0.0.2", "10.0.0.300"], path="flows.csv", column="sa", row_offset=41
        )
    err = info.value
    assert err.path == "flows.csv"
    assert err.where == "row 44"
    assert "sa" in err.problem and "10.0.0.300" in err.problem
    assert str(err).startswith("flows.csv, row 44: ")


def test_parse_array_error_for_bad_ipv6_row() -> None:
    with pytest.raises(InputError) as info:
        addr.parse_array(["::1", "1.2.3.4", "fe80::1::2"], path="x.parquet", column="dst")
    assert info.value.where == "row 3"
    assert "dst" in info.value.problem


def test_parse_array_empty_value() -> None:
    with pytest.raises(InputError) as info:
        addr.parse_array(["1.2.3.4", None], path="x.csv", column="da", row_label="line")
    assert info.value.where == "line 2"
    assert "da is empty" in info.value.problem


def test_parse_array_chunked_and_empty() -> None:
    chunked = pa.chunked_array([["1.1.1.1"], ["::2", "3.3.3.3"]])
    assert addr.format_array(addr.parse_array(chunked)) == ["1.1.1.1", "::2", "3.3.3.3"]
    assert len(addr.parse_array([])) == 0


def test_from_ipv4_uint32_and_helpers() -> None:
    arr = addr.from_ipv4_uint32(np.array([0xAF2DB001, 0, 0xFFFFFFFF], dtype=np.uint32))
    assert addr.format_array(arr) == ["175.45.176.1", "0.0.0.0", "255.255.255.255"]
    assert addr.is_ipv4(arr).tolist() == [True, True, True]
    mixed = addr.parse_array(["1.2.3.4", "2001:db8::1"])
    assert addr.is_ipv4(mixed).tolist() == [True, False]
    hi, lo = addr.to_u64_pair(mixed)
    assert int(hi[1]) == 0x20010DB800000000 and int(lo[1]) == 1
    assert int(lo[0]) == 0x0000FFFF01020304
    assert addr.to_matrix(addr.from_bytes_matrix(addr.to_matrix(mixed))).tobytes() == b"".join(
        mixed.to_pylist()
    )


def test_to_matrix_honours_slices_and_nulls() -> None:
    arr = addr.parse_array(["1.1.1.1", "2.2.2.2", "3.3.3.3"]).slice(1, 2)
    assert addr.format_array(addr.from_bytes_matrix(addr.to_matrix(arr))) == ["2.2.2.2", "3.3.3.3"]
    with_null = pa.array([addr.parse_one("9.9.9.9"), None], addr.ADDR_TYPE)
    assert addr.to_matrix(with_null)[1].tolist() == [0] * 16
    assert addr.format_array(with_null) == ["9.9.9.9", None]


# --- the vectorised IPv6 parser against ipaddress ------------------------------------


@st.composite
def _ipv6_with_zero_runs(draw: st.DrawFn) -> ipaddress.IPv6Address:
    """IPv6 addresses with runs of zero groups, so that "::" appears in many places."""
    groups = draw(st.lists(st.integers(0, 0xFFFF), min_size=8, max_size=8))
    start = draw(st.integers(0, 8))
    for i in range(start, min(8, start + draw(st.integers(0, 8)))):
        groups[i] = 0
    return ipaddress.IPv6Address(b"".join(g.to_bytes(2, "big") for g in groups))


def _spellings(ip: ipaddress.IPv6Address) -> st.SearchStrategy[str]:
    """Ways to write one address: compressed, exploded, upper case, leading zeros kept."""
    return st.sampled_from(
        [
            str(ip),
            ip.exploded,
            str(ip).upper(),
            ip.exploded.upper().replace("0000", "0"),
            ":".join(f"{int(g, 16):x}" for g in ip.exploded.split(":")),
        ]
    )


@st.composite
def _ipv6_like(draw: st.DrawFn) -> str:
    """Colon-separated hex that is often almost, and sometimes exactly, an IPv6 address."""
    groups = draw(st.lists(st.text("0123456789abcdefABCDEF", max_size=5), max_size=10))
    text = ":".join(groups)
    if draw(st.booleans()):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(st.sampled_from(["::", ":", ":::"])) + text[at:]
    tail = draw(st.sampled_from(["", "", "", "%eth0", "%", "%a%b", ":1.2.3.4", ".5", "/64", "g"]))
    return text + tail


_ipv6_forms = st.one_of(
    ipv6.flatmap(_spellings),
    _ipv6_with_zero_runs().flatmap(_spellings),
    _ipv6_like(),
    st.text(alphabet="0123456789abcdefABCDEF:.%", max_size=45),
)

_IPV6_EDGES = [
    "::", ":::", "::1", "1::", "1:2:3:4:5:6:7::", "::2:3:4:5:6:7:8", "1::2:3:4:5:6:7:8",
    "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9", ":1:2:3:4:5:6:7", "1:2:3:4:5:6:7:", ":1::",
    "::1:", "1:2:3:4:5:6:7:8::", "::1:2:3:4:5:6:7:8", "12345::", "0000:0000::", "00000::",
    "1::2::3", "g::", "fe80::1%eth0", "fe80::1%", "fe80::1%%", "::ffff:1.2.3.4",
    "::ffff:1.2.3.04", "1.2.3.4::", "::FFFF:abcd", "0:0:0:0:0:0:0:0", "1:2", "a:b:",
    "::1/128", "\u0661::1", "fe80:0000:0000:0000:0204:61ff:fe9d:f156",
]  # fmt: skip


def _expected(texts: list[str]) -> tuple[list[bytes], int | None]:
    out: list[bytes] = []
    for i, t in enumerate(texts):
        try:
            out.append(addr.parse_one(t))
        except ValueError:
            return out, i
    return out, None


@pytest.mark.parametrize("text", _IPV6_EDGES)
def test_ipv6_edge_cases_match_ipaddress(text: str) -> None:
    expected, bad = _expected([text])
    if bad is None:
        assert addr.parse_array([text]).to_pylist() == expected
    else:
        with pytest.raises(InputError):
            addr.parse_array([text])


@given(st.lists(st.one_of(_ipv6_forms, _nearly_ipv4), min_size=1, max_size=40), st.integers(0, 99))
@example(["1::2::3", "1.2.3.4", "10.0.0.300"], 0)
@example(["10.0.0.300", "fe80::1::2"], 5)
@example(_IPV6_EDGES, 0)
def test_vectorised_ipv6_equals_ipaddress(texts: list[str], offset: int) -> None:
    """Every value parses to ipaddress's bytes, and the first bad row is the one named."""
    expected, first_bad = _expected(texts)
    if first_bad is None:
        assert addr.parse_array(texts, row_offset=offset).to_pylist() == expected
        return
    with pytest.raises(InputError) as info:
        addr.parse_array(texts, path="f.csv", column="sa", row_offset=offset)
    assert info.value.where == f"row {offset + first_bad + 1}"
    assert repr(texts[first_bad].strip()) in info.value.problem


def test_repeated_and_distinct_values_take_both_paths() -> None:
    distinct = [f"2001:db8::{i:x}" for i in range(300)] + [f"10.0.{i}.1" for i in range(200)]
    repeated = distinct * 3
    for texts in (distinct, repeated, list(reversed(repeated))):
        assert addr.parse_array(texts).to_pylist() == [addr.parse_one(t) for t in texts]
    sliced = pa.array(["x", *repeated, "y"]).slice(1, len(repeated))
    assert addr.parse_array(sliced).to_pylist() == [addr.parse_one(t) for t in repeated]
    large = pa.array(repeated, pa.large_string())
    assert addr.parse_array(large).to_pylist() == [addr.parse_one(t) for t in repeated]
