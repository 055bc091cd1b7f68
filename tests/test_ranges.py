"""RangeTable: every lookup equals a brute-force ``ipaddress`` answer; building rules; npz."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow import addr
from rogueflow.errors import InputError
from rogueflow.intel import ranges
from rogueflow.intel.ranges import RangeTable, lookup_many

Net = ipaddress.IPv4Network | ipaddress.IPv6Network


def _raw(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bytes:
    return addr.parse_one(str(ip))


def _brute(nets: list[tuple[Net, int]], ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> int:
    """The value of the most specific containing network, or -1."""
    best: tuple[int, int] | None = None
    for net, value in nets:
        if net.version == ip.version and ip in net and (best is None or net.prefixlen > best[0]):
            best = (net.prefixlen, value)
    return -1 if best is None else best[1]


@st.composite
def nested_tables(draw: st.DrawFn, version: int) -> list[tuple[Net, int]]:
    """Prefixes sharing a few base addresses, so many nest; one value per distinct network."""
    bits = 32 if version == 4 else 128
    bases = draw(st.lists(st.integers(0, 2**bits - 1), min_size=1, max_size=4))
    out: dict[Net, int] = {}
    for _ in range(draw(st.integers(1, 14))):
        base = draw(st.sampled_from(bases))
        length = draw(st.integers(max(0, bits - 40) if version == 6 else 0, bits))
        text = f"{ipaddress.ip_address(base) if version == 4 else ipaddress.IPv6Address(base)}"
        net = ipaddress.ip_network(f"{text}/{length}", strict=False)
        out.setdefault(net, draw(st.integers(0, 5)))
    return list(out.items())


def _probes(
    nets: list[tuple[Net, int]], extra: list[int], version: int
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    bits = 32 if version == 4 else 128
    points = set(extra)
    for net, _ in nets:
        lo, hi = int(net.network_address), int(net.broadcast_address)
        points.update({lo, hi, max(lo - 1, 0), min(hi + 1, 2**bits - 1), (lo + hi) // 2})
    if version == 4:
        return [ipaddress.IPv4Address(p) for p in sorted(points)]
    return [ipaddress.IPv6Address(p) for p in sorted(points)]


@pytest.mark.parametrize("version", [4, 6])
@settings(max_examples=150)
@given(data=st.data())
def test_lookup_equals_brute_force(version: int, data: st.DataObject) -> None:
    nets = data.draw(nested_tables(version))
    bits = 32 if version == 4 else 128
    extra = data.draw(st.lists(st.integers(0, 2**bits - 1), max_size=20))
    table = RangeTable.from_cidrs([(str(n), v) for n, v in nets], source="prop")
    probes = _probes(nets, extra, version)
    got = table.lookup(addr.parse_array([str(p) for p in probes]))
    expected = [_brute(nets, p) for p in probes]
    assert [-1 if c < 0 else table.values[c] for c in got] == expected


@settings(max_examples=60)
@given(data=st.data())
def test_mixed_v4_v6_table_and_queries(data: st.DataObject) -> None:
    nets = data.draw(nested_tables(4)) + [(n, v + 10) for n, v in data.draw(nested_tables(6))]
    table = RangeTable.from_cidrs([(str(n), v) for n, v in nets], source="prop")
    probes = _probes([x for x in nets if x[0].version == 4], [], 4)
    probes += _probes([x for x in nets if x[0].version == 6], [], 6)
    order = data.draw(st.permutations(range(len(probes))))
    probes = [probes[i] for i in order]
    got = table.lookup(addr.parse_array([str(p) for p in probes]))
    assert [-1 if c < 0 else table.values[c] for c in got] == [_brute(nets, p) for p in probes]


def test_nested_flattened_most_specific_wins() -> None:
    t = RangeTable.from_cidrs(
        [("10.0.0.0/16", "A"), ("10.0.1.0/24", "B"), ("10.0.1.128/25", "C")], source="s"
    )
    assert [t.get(x) for x in ("10.0.0.1", "10.0.1.1", "10.0.1.200", "10.0.2.0", "10.1.0.0")] == [
        "A",
        "B",
        "C",
        "A",
        None,
    ]
    assert len(t) == 4  # A, B, C, A


def test_adjacent_same_value_merged() -> None:
    t = RangeTable.from_cidrs([("10.0.0.0/25", "A"), ("10.0.0.128/25", "A")], source="s")
    assert len(t) == 1
    lo, hi, v = next(iter(t.ranges()))
    assert (addr.format_one(lo), addr.format_one(hi), v) == ("10.0.0.0", "10.0.0.255", "A")


def _r(lo: str, hi: str, v: object, where: str) -> tuple[bytes, bytes, object, str]:
    return addr.parse_one(lo), addr.parse_one(hi), v, where


def test_partial_overlap_names_source_and_both_ranges() -> None:
    with pytest.raises(InputError) as exc:
        RangeTable.from_ranges(
            [
                _r("10.0.0.0", "10.0.0.200", "A", "line 3"),
                _r("10.0.0.100", "10.0.1.0", "B", "line 9"),
            ],
            source="feed.csv",
        )
    msg = str(exc.value)
    assert msg.startswith("feed.csv, line 9: ranges overlap partially")
    assert "10.0.0.0 - 10.0.0.200 (line 3)" in msg and "10.0.0.100 - 10.0.1.0 (line 9)" in msg


def test_inverted_and_conflicting_and_nested_error_mode() -> None:
    with pytest.raises(InputError, match=r"x.csv, line 2: inverted range 10.0.0.9 - 10.0.0.1"):
        RangeTable.from_ranges([_r("10.0.0.9", "10.0.0.1", "A", "line 2")], source="x.csv")
    with pytest.raises(InputError, match="one range has two values"):
        RangeTable.from_ranges(
            [_r("10.0.0.0", "10.0.0.9", "A", "line 1"), _r("10.0.0.0", "10.0.0.9", "B", "line 2")],
            source="x.csv",
        )
    dup = RangeTable.from_ranges(
        [_r("10.0.0.0", "10.0.0.9", "A", "line 1"), _r("10.0.0.0", "10.0.0.9", "A", "line 2")],
        source="x.csv",
    )
    assert len(dup) == 1
    with pytest.raises(InputError, match="ranges are nested"):
        RangeTable.from_cidrs(
            [("10.0.0.0/8", "A"), ("10.1.0.0/16", "B")], source="x", on_overlap="error"
        )


def test_many_host_routes_in_one_slash64() -> None:
    """The bounded binary search on low halves inside a run of equal high halves."""
    nets = [(f"2001:db8::{i:x}/128", i % 7) for i in range(0, 4000, 3)] + [("2001:db8::/64", 99)]
    t = RangeTable.from_cidrs(nets, source="s")
    probes = [f"2001:db8::{i:x}" for i in range(0, 4005)]
    got = t.lookup(addr.parse_array(probes))
    want = [(i % 7) if i % 3 == 0 and i < 4000 else 99 for i in range(0, 4005)]
    assert [t.values[c] for c in got] == want


def test_whole_space_and_edges() -> None:
    t = RangeTable.from_cidrs(
        [("::/0", "all"), ("0.0.0.0/0", "v4"), ("ffff::/16", "top")], source="s"
    )
    probes = [
        "::",
        "0.0.0.0",
        "255.255.255.255",
        "::fffe:ffff:ffff",
        "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        "::ffff:1:0:0",
    ]
    assert [t.get(p) for p in probes] == ["all", "v4", "v4", "all", "top", "all"]
    assert RangeTable.empty().lookup(addr.parse_array(["1.2.3.4", "::1"])).tolist() == [-1, -1]


def test_npz_round_trip_and_damage(tmp_path: Path) -> None:
    t = RangeTable.from_cidrs(
        [("10.0.0.0/8", (64500, "Org")), ("2001:db8::/32", (64501, "Org6"))], source="s"
    )
    t.to_npz(tmp_path / "t.npz", {"k": 1})
    back, meta = RangeTable.load_npz(tmp_path / "t.npz")
    assert meta == {"k": 1} and back.values == [(64500, "Org"), (64501, "Org6")]
    assert back.get("10.9.9.9") == (64500, "Org") and back.get("2001:db8::1") == (64501, "Org6")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputError, match=r"bad\.npz"):
        RangeTable.from_npz(tmp_path / "bad.npz")


def test_chunked_threaded_lookup_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    nets = [
        (f"{a >> 24}.{(a >> 16) & 255}.{(a >> 8) & 255}.0/24", int(a % 5))
        for a in rng.integers(1 << 24, 2**32, 3000).tolist()
    ]
    nets += [
        (f"{a >> 24}.{(a >> 16) & 255}.0.0/16", 9)
        for a in rng.integers(1 << 24, 2**32, 300).tolist()
    ]
    nets += [("2001:db8::/32", 7), ("2001:db8:1::/48", 8)]
    t = RangeTable.from_cidrs(dict(nets).items(), source="s")
    m = np.zeros((50_000, 16), dtype=np.uint8)
    m[:, 10:12] = 0xFF
    m[:, 12:] = rng.integers(0, 256, (len(m), 4), dtype=np.uint8)
    m[::20] = np.frombuffer(addr.parse_one("2001:db8:1::5"), dtype=np.uint8)
    whole = t.lookup(m)
    monkeypatch.setattr(ranges, "_CHUNK", 4096)
    arrow = pa.chunked_array(
        [addr.from_bytes_matrix(m[:10_000]), addr.from_bytes_matrix(m[10_000:])]
    )
    a, b = lookup_many([t, t], arrow)
    assert (a == whole).all() and (b == whole).all()
    assert (whole[::20] == t.values.index(8)).all()
