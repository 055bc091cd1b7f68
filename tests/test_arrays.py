"""numpy to Arrow with a null mask: the same arrays ``pa.array(mask=...)`` makes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rogueflow.arrays import masked, prefer_jemalloc

TYPES = [pa.int32(), pa.int64(), pa.uint32(), pa.uint16(), pa.float32()]


@given(
    st.lists(st.tuples(st.integers(0, 60_000), st.booleans()), max_size=70),
    st.sampled_from(TYPES),
)
def test_masked_equals_pa_array(rows: list[tuple[int, bool]], type: pa.DataType) -> None:
    values = np.array([v for v, _ in rows], dtype=np.int64)
    nulls = np.array([n for _, n in rows], dtype=bool)
    got = masked(values, nulls, type)
    got.validate(full=True)
    want = pa.array(values.astype(type.to_pandas_dtype()), type, mask=nulls)
    assert got.equals(want)
    assert got.null_count == int(nulls.sum())


@pytest.mark.parametrize("fill", [True, False])
def test_masked_all_or_none_null(fill: bool) -> None:
    got = masked(np.arange(1000), np.full(1000, fill), pa.int32())
    assert got.null_count == (1000 if fill else 0)
    assert got.to_pylist() == ([None] * 1000 if fill else list(range(1000)))


def test_prefer_jemalloc_sets_the_default_pool() -> None:
    before = pa.default_memory_pool()
    try:
        prefer_jemalloc()
        prefer_jemalloc()  # idempotent
        try:
            has = pa.jemalloc_memory_pool() is not None
        except NotImplementedError:
            has = False
        want = "jemalloc" if has else before.backend_name
        assert pa.default_memory_pool().backend_name == want
    finally:
        pa.set_memory_pool(before)
