"""DomainTable: exact and suffix matching of host names, checked against a brute force."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rogueflow.errors import InputError
from rogueflow.intel.domains import DomainTable


def brute(entries: list[str], name: str | None) -> tuple[int, bool]:
    """Index of the longest entry equal to or a label-boundary suffix of ``name``."""
    if name is None:
        return -1, False
    n = name.lower()
    n = n[:-1] if n.endswith(".") else n
    best, exact = -1, False
    for i, e in enumerate(entries):
        if (n == e or n.endswith("." + e)) and (best < 0 or len(e) > len(entries[best])):
            best, exact = i, n == e
    return best, exact


def test_label_boundary_and_longest_suffix() -> None:
    t = DomainTable.from_domains(["example.com", "pool.example.com", "com.cn"])
    names = [
        "example.com", "a.example.com", "x.pool.example.com", "pool.example.com",
        "notexample.com", "example.com.evil.net", "xample.com", "com", "sina.com.cn", "",
    ]  # fmt: skip
    assert t.match(names).tolist() == [0, 0, 1, 1, -1, -1, -1, -1, 2, -1]


def test_case_trailing_dot_and_nulls() -> None:
    t = DomainTable.from_domains(["Example.COM."])
    got = t.match(pa.array(["WWW.EXAMPLE.com.", "example.com", None, "example.com.."]))
    assert got.tolist() == [0, 0, -1, -1]
    assert t.entries == ["example.com"]


def test_idna_names_match_as_given() -> None:
    t = DomainTable.from_domains(["xn--mnchen-3ya.de", "bücher.de"])
    assert t.match(["www.xn--mnchen-3ya.de", "münchen.de", "shop.BÜCHER.de"]).tolist() == [
        0,
        -1,
        1,
    ]


def test_exact_flag() -> None:
    t = DomainTable.from_domains(["google.com", "mail.google.com"])
    codes, exact = t.match_detail(["mail.google.com", "x.mail.google.com", "google.com", "a.b"])
    assert codes.tolist() == [1, 1, 0, -1]
    assert exact.tolist() == [True, False, True, False]


def test_chunked_dictionary_and_large_string_inputs() -> None:
    t = DomainTable.from_domains(["a.org", "b.org"], ["A", "B"])
    chunked = pa.chunked_array([["x.a.org", None], [], ["b.org", "c.org", "x.a.org"]])
    assert t.match(chunked).tolist() == [0, -1, 1, -1, 0]
    dict_arr = pa.array(["b.org", "x.b.org", None, "a.org"]).dictionary_encode()
    assert t.match(dict_arr).tolist() == [1, 1, -1, 0]
    large = pa.array(["q.a.org", "zz"], pa.large_string())
    assert t.match(large).tolist() == [0, -1]
    assert t.values == ["A", "B"]
    assert t.match(pa.chunked_array([], pa.string())).dtype == np.int32


def test_values_shared_and_conflicts() -> None:
    t = DomainTable.from_domains(["a.org", "b.org", "a.org"], ["x", "y", "x"])
    assert len(t) == 2 and t.values == ["x", "y"]
    with pytest.raises(InputError, match=r"entry 2: a\.org is listed as 'x' and as 'y'"):
        DomainTable.from_domains(["a.org", "a.org"], ["x", "y"], source="list.txt")
    first = DomainTable.from_domains(["a.org", "a.org"], ["x", "y"], on_conflict="first")
    assert first.values[first.match(["a.org"])[0]] == "x"


@pytest.mark.parametrize("bad", ["", "a..b", "a b.com", "-" * 64 + ".com", "a/b.com"])
def test_invalid_entries(bad: str) -> None:
    with pytest.raises(InputError, match="entry 1"):
        DomainTable.from_domains([bad])


def test_overlong_name_matches_nothing() -> None:
    t = DomainTable.from_domains(["example.com"])
    assert t.match(["a." * 600 + "example.com"]).tolist() == [-1]


LABELS = st.sampled_from(["a", "b", "ab", "ba", "com", "net", "xn--p1ai", "é"])
DOMAINS = st.lists(LABELS, min_size=1, max_size=4).map(".".join)
NAMES = st.one_of(
    st.none(),
    st.tuples(DOMAINS, st.sampled_from(["", "."]), st.booleans()).map(
        lambda t: (t[0].upper() if t[2] else t[0]) + t[1]
    ),
    st.text(alphabet="abé.-", max_size=12),
)


@given(st.lists(DOMAINS, min_size=1, max_size=12, unique=True), st.lists(NAMES, max_size=40))
def test_matches_brute_force(entries: list[str], names: list[str | None]) -> None:
    t = DomainTable.from_domains(entries)
    codes, exact = t.match_detail(pa.array(names, pa.string()))
    expected = [brute(entries, n) for n in names]
    assert codes.tolist() == [e[0] for e in expected]
    assert exact.tolist() == [e[1] for e in expected]
    assert [t.match_one(n)[0] for n in names] == codes.tolist()
