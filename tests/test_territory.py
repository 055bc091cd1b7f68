"""Territory profiles, their clocks (tz history) and their space, in SQL and numpy."""

from __future__ import annotations

import ipaddress
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from rogueflow import addr, territory
from rogueflow.cli.main import cli
from rogueflow.enrich.territory import (
    SIDE_IN,
    SIDE_INTERNAL,
    SIDE_OUT,
    TerritoryIndex,
    builtin_index,
    fingerprint,
    indexed,
    local_time_sql,
    local_times,
    member_sql,
    side_sql,
    sides,
)
from rogueflow.errors import ConfigError
from rogueflow.territory import Territory, load_builtin, parse_profile, utc_offsets
from tests.strategies import addr_bytes, to_us

BUILTIN = ("kp", "ir", "sy", "ve", "cu")
KP = load_builtin("kp")


@pytest.mark.parametrize("code", BUILTIN)
def test_builtin_profiles_load(code: str) -> None:
    t = load_builtin(code)
    assert t.code == code and t.iso == code.upper()
    assert t.name and t.source == f"built-in:{code}.toml"
    ZoneInfo(t.timezone)
    assert t.working_days and t.business_hours[0] < t.business_hours[1]
    assert t.prefixes or t.asns or t.countries, "a profile must name some space"
    assert load_builtin(code.upper()) == t


def test_builtin_codes_and_unknown() -> None:
    assert set(BUILTIN) <= set(territory.builtin_codes())
    with pytest.raises(ConfigError, match=r"no built-in territory 'zz'.*--territory-file"):
        load_builtin("zz")
    with pytest.raises(ConfigError, match="no territory given"):
        territory.resolve(None)


def test_kp_profile_contents() -> None:
    assert KP.timezone == "Asia/Pyongyang"
    assert "175.45.176.0/22" in [p.cidr for p in KP.prefixes]
    ttk = next(u for u in KP.upstreams if u.asn == 20485)
    assert ttk.valid.valid_from == datetime(2017, 10, 1, 9, 7, 51, tzinfo=UTC)
    assert {a.asn for a in KP.exclude} == {4837, 20485}


# --- clocks ---------------------------------------------------------------------

PYONGYANG_830_FROM = datetime(2015, 8, 14, 15, 0, tzinfo=UTC)  # 2015-08-15 00:00 local
PYONGYANG_900_FROM = datetime(2018, 5, 4, 15, 0, tzinfo=UTC)  # 2018-05-04 23:30 local


def test_pyongyang_offsets() -> None:
    start, end = datetime(2015, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, tzinfo=UTC)
    assert utc_offsets("Asia/Pyongyang", start, end) == [
        (start, 9 * 3600),
        (PYONGYANG_830_FROM, 8 * 3600 + 1800),
        (PYONGYANG_900_FROM, 9 * 3600),
    ]
    # a window inside one era has one step
    inside = datetime(2016, 1, 1, tzinfo=UTC)
    assert utc_offsets("Asia/Pyongyang", inside, inside + timedelta(days=400)) == [(inside, 30600)]


def test_dst_zone_offsets_alternate() -> None:
    steps = utc_offsets(
        "Asia/Tehran", datetime(2017, 1, 1, tzinfo=UTC), datetime(2018, 1, 1, tzinfo=UTC)
    )
    assert [o for _, o in steps] == [12600, 16200, 12600]
    tehran = ZoneInfo("Asia/Tehran")
    for when, off in steps[1:]:
        # each step starts exactly on the switch: the second before has the old offset
        assert tehran.utcoffset(when.astimezone(tehran)) == timedelta(seconds=off)
        before = (when - timedelta(seconds=1)).astimezone(tehran)
        assert tehran.utcoffset(before) != timedelta(seconds=off)


def _wall_us(t: datetime, zone: str) -> int:
    local = t.astimezone(ZoneInfo(zone)).replace(tzinfo=UTC)
    return to_us(local)


_around_switch = st.sampled_from([PYONGYANG_830_FROM, PYONGYANG_900_FROM]).flatmap(
    lambda b: st.integers(-5_000_000, 5_000_000).map(lambda d: b + timedelta(microseconds=d))
)
_ts_2015_2020 = st.one_of(
    st.datetimes(datetime(2015, 1, 1), datetime(2020, 12, 31), timezones=st.just(UTC)),
    _around_switch,
)


@settings(max_examples=60)
@given(st.lists(_ts_2015_2020, min_size=1, max_size=40), st.sampled_from(["kp", "ir", "cu"]))
def test_local_time_sql_numpy_and_zoneinfo_agree(stamps: list[datetime], code: str) -> None:
    t = KP if code == "kp" else load_builtin(code)
    ts_us = np.array([to_us(s) for s in stamps], dtype=np.int64)
    expected = [_wall_us(s, t.timezone) for s in stamps]
    assert local_times(t, ts_us).tolist() == expected

    sql = local_time_sql(
        t, "ts", datetime(2015, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC)
    )
    tbl = pa.table(
        {
            "i": range(len(stamps)),
            "ts": pa.array(ts_us, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
        }
    )
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("t", tbl)
        got = [r[0] for r in con.execute(f"SELECT epoch_us({sql}) FROM t ORDER BY i").fetchall()]
    finally:
        con.close()
    assert got == expected


def test_local_times_empty() -> None:
    assert local_times(KP, np.array([], dtype=np.int64)).tolist() == []


# --- space ----------------------------------------------------------------------

PROFILE = """
code = "zz"
iso = "ZZ"
name = "Testland"
timezone = "Asia/Pyongyang"
working_days = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
business_hours = ["08:30", "17:30"]

[[prefixes]]
cidr = "175.45.176.0/22"
valid_from = 2009-12-21

[[prefixes]]
cidr = "10.20.0.0/16"
valid_from = "2015-01-01"
valid_to = "2017-06-01"

[[prefixes]]
cidr = "2001:db8:100::/40"
valid_from = "2016-03-01T12:00:00Z"
valid_to = "2019-01-01T00:00:00.500000Z"

[[prefixes]]
cidr = "77.94.35.0/24"
valid_to = 2018-05-04T15:00:00Z

[[asns]]
asn = 131279
name = "Star JV"
"""
ZZ = parse_profile(PROFILE, "zz.toml")


def _oracle_member(t: Territory, raw: bytes, when: datetime) -> bool:
    text = addr.format_one(raw)
    ip = ipaddress.ip_address(text)
    return any(
        ip.version == ipaddress.ip_network(p.cidr).version
        and ip in ipaddress.ip_network(p.cidr)
        and p.valid.contains(when)
        for p in t.prefixes
    )


def _near_prefix(t: Territory) -> st.SearchStrategy[bytes]:
    def pick(args: tuple[int, int]) -> bytes:
        i, k = args
        lo, hi = t.prefixes[i % len(t.prefixes)].range
        lo_i, hi_i = int.from_bytes(lo, "big"), int.from_bytes(hi, "big")
        candidates = [lo_i, hi_i, lo_i - 1, hi_i + 1, lo_i + k % (hi_i - lo_i + 1)]
        return candidates[k % len(candidates)].to_bytes(16, "big")

    return st.tuples(st.integers(0, 100), st.integers(0, 2**64)).map(pick)


def _near_boundary(t: Territory) -> st.SearchStrategy[datetime]:
    edges = sorted(
        {
            e
            for p in t.prefixes
            for e in (p.valid.valid_from, p.valid.valid_to)
            if e.year < 2100 and e.year > 1990
        }
    )
    return st.one_of(
        st.datetimes(datetime(2010, 1, 1), datetime(2030, 12, 31), timezones=st.just(UTC)),
        st.sampled_from(edges).flatmap(
            lambda e: st.integers(-2_000_000, 2_000_000).map(
                lambda d: e + timedelta(microseconds=d)
            )
        ),
    )


_addr = st.one_of(_near_prefix(ZZ), addr_bytes)
_flow = st.tuples(_addr, _addr, _near_boundary(ZZ))


@settings(max_examples=80)
@given(st.lists(_flow, min_size=1, max_size=50))
def test_side_sql_and_numpy_agree(flows: list[tuple[bytes, bytes, datetime]]) -> None:
    tbl = pa.table(
        {
            "i": pa.array(range(len(flows)), pa.int64()),
            "src_addr": pa.array([f[0] for f in flows], addr.ADDR_TYPE),
            "dst_addr": pa.array([f[1] for f in flows], addr.ADDR_TYPE),
            "ts_start": pa.array([f[2] for f in flows], pa.timestamp("us", tz="UTC")),
        }
    )
    expected = []
    for s, d, when in flows:
        s_in, d_in = _oracle_member(ZZ, s, when), _oracle_member(ZZ, d, when)
        expected.append(
            SIDE_INTERNAL if s_in and d_in else SIDE_OUT if s_in else SIDE_IN if d_in else None
        )
    assert sides(ZZ, tbl).to_pylist() == expected
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("flows", tbl)
        got = [r[0] for r in con.execute(f"SELECT {side_sql(ZZ)} FROM flows ORDER BY i").fetchall()]
    finally:
        con.close()
    assert got == expected


# a second territory beside ZZ (disjoint from it), and one overlapping ZZ's 10.20/16 only
# after ZZ's prefix there expired (so it is indexed), and one overlapping ZZ (so not)
YY = parse_profile(
    PROFILE.replace('code = "zz"', 'code = "yy"')
    .replace("175.45.176.0/22", "10.21.0.0/16")
    .replace("10.20.0.0/16", "10.20.128.0/17")
    .replace('valid_from = "2015-01-01"', 'valid_from = "2017-06-01"')
    .replace('valid_to = "2017-06-01"', 'valid_to = "2030-01-01"')
    .replace("2001:db8:100::/40", "2001:db8:200::/40")
    .replace("77.94.35.0/24", "77.94.36.0/24"),
    "yy.toml",
)
XX = parse_profile(PROFILE.replace('code = "zz"', 'code = "xx"'), "xx.toml")
_flow2 = st.tuples(
    st.one_of(_near_prefix(ZZ), _near_prefix(YY), addr_bytes), _addr, _near_boundary(YY)
)


def test_index_keeps_territories_that_do_not_overlap() -> None:
    index = TerritoryIndex.of([ZZ, YY, XX, load_builtin("ir")])
    # XX is ZZ again; ir names no prefixes (its space is by country)
    assert [t.code for t in index.territories] == ["zz", "yy"]
    assert index.claim == {"zz": fingerprint(ZZ), "yy": fingerprint(YY)}
    assert fingerprint(ZZ) != fingerprint(XX)  # the code is part of it
    assert [t.code for t in builtin_index().territories] == ["kp"]


@settings(max_examples=80)
@given(st.lists(st.one_of(_flow, _flow2), min_size=1, max_size=60))
def test_index_columns_equal_membership(flows: list[tuple[bytes, bytes, datetime]]) -> None:
    """Each end's column names the indexed territory that held it, exactly as the prefix
    tests (the oracle: ipaddress) say, validity bounds included."""
    tbl = pa.table(
        {
            "src_addr": pa.array([f[0] for f in flows], addr.ADDR_TYPE),
            "dst_addr": pa.array([f[1] for f in flows], addr.ADDR_TYPE),
            "ts_start": pa.array([f[2] for f in flows], pa.timestamp("us", tz="UTC")),
        }
    )
    index = TerritoryIndex.of([ZZ, YY])
    got = index.columns(tbl)
    for k, end in enumerate((0, 1)):
        expected = []
        for f in flows:
            inside = [t.code for t in (ZZ, YY) if _oracle_member(t, f[end], f[2])]
            assert len(inside) <= 1
            expected.append(inside[0] if inside else None)
        assert got[k].cast(pa.string()).to_pylist() == expected


def test_indexed_needs_every_file_and_the_current_profile() -> None:
    now = {"zz": fingerprint(ZZ)}
    assert indexed(ZZ, [now, now])
    assert not indexed(ZZ, [now, {}])  # a file written before the index
    assert not indexed(ZZ, [])  # nothing to read: no claim either
    changed = parse_profile(PROFILE.replace("77.94.35.0/24", "77.94.34.0/23"), "zz.toml")
    assert not indexed(changed, [now])
    assert not indexed(YY, [now])


def test_member_sql_of_empty_profile_is_false() -> None:
    empty = parse_profile(
        'code = "e"\nname = "E"\ntimezone = "UTC"\ncountries = ["KP"]\n', "e.toml"
    )
    assert member_sql(empty, "src_addr") == "FALSE"


# --- bad profiles -----------------------------------------------------------------

GOOD_HEAD = 'code = "zz"\nname = "Z"\ntimezone = "UTC"\n'


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ('name = "Z"\ntimezone = "UTC"\n', ["missing required key 'code'"]),
        ('code = "zz"\ntimezone = "UTC"\n', ["missing required key 'name'"]),
        ('code = "zz"\nname = "Z"\n', ["missing required key 'timezone'"]),
        ('code = "zz"\nname = "Z"\ntimezone = "Asia/Atlantis"\n', ["timezone", "Asia/Atlantis"]),
        (GOOD_HEAD + 'zone = "x"\n', ["unknown key(s) zone"]),
        (GOOD_HEAD + '[[prefixes]]\ncidr = "10.0.0.1/8"\n', ["prefixes[0].cidr", "host bits"]),
        (GOOD_HEAD + '[[prefixes]]\ncidr = "300.0.0.0/8"\n', ["prefixes[0].cidr"]),
        (GOOD_HEAD + "[[prefixes]]\nasn = 1\n", ["prefixes[0]", "'cidr'"]),
        (
            GOOD_HEAD + '[[prefixes]]\ncidr = "10.0.0.0/8"\n[[prefixes]]\ncidr = "10.1.0.0/16"\n'
            'valid_from = "2019-01-01"\nvalid_to = "2018-01-01"\n',
            ["prefixes[1]", "valid_to", "not after valid_from"],
        ),
        (
            GOOD_HEAD + '[[prefixes]]\ncidr = "10.0.0.0/8"\nvalid_from = "soon"\n',
            ["prefixes[0].valid_from", "soon"],
        ),
        (GOOD_HEAD + '[[upstreams]]\nname = "x"\n', ["upstreams[0]", "'asn'"]),
        (GOOD_HEAD + '[[asns]]\nasn = "AS12"\n', ["asns[0].asn", "AS12"]),
        (GOOD_HEAD + "[[exclude]]\nasn = 0\n", ["exclude[0].asn", "out of range"]),
        (GOOD_HEAD + 'working_days = ["Mon", "Funday"]\n', ["working_days"]),
        (GOOD_HEAD + 'business_hours = ["18:00", "09:00"]\n', ["business_hours"]),
        (GOOD_HEAD + 'business_hours = ["9am", "5pm"]\n', ["business_hours[0]", "9am"]),
        (GOOD_HEAD + 'countries = ["KPR"]\n', ["countries", "KPR"]),
        (GOOD_HEAD + 'code = "again"\n', ["my.toml"]),
    ],
)
def test_bad_profiles_name_file_and_key(text: str, needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_profile(text, "my.toml")
    msg = str(info.value)
    assert msg.startswith("my.toml")
    for n in needles:
        assert n in msg


def test_territory_file(tmp_path: Path) -> None:
    path = tmp_path / "testland.toml"
    path.write_text(PROFILE)
    t = territory.resolve(None, path)
    assert t == ZZ.__class__(**{**ZZ.__dict__, "source": str(path)})
    assert territory.resolve("ZZ", path).code == "zz"
    with pytest.raises(ConfigError, match="differs from --territory 'kp'"):
        territory.resolve("kp", path)
    with pytest.raises(ConfigError, match="cannot read territory file"):
        territory.load_file(tmp_path / "missing.toml")

    result = CliRunner().invoke(
        cli, ["-w", str(tmp_path / "ws"), "territories", "--territory-file", str(path), "--json"]
    )
    assert result.exit_code == 0, result.output
    (doc,) = json.loads(result.stdout)
    assert (doc["code"], doc["name"], doc["timezone"]) == ("zz", "Testland", "Asia/Pyongyang")
    assert [p["cidr"] for p in doc["prefixes"]][:2] == ["175.45.176.0/22", "10.20.0.0/16"]
    assert doc["working_days"] == [0, 1, 2, 3, 4, 5]
    assert doc["business_hours"] == ["08:30", "17:30"]

    bad = tmp_path / "bad.toml"
    bad.write_text(GOOD_HEAD + "[[prefixes]]\ncidr = 'nope'\n")
    result = CliRunner().invoke(
        cli, ["-w", str(tmp_path / "ws"), "territories", "--territory-file", str(bad)]
    )
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "prefixes[0].cidr" in result.stderr
