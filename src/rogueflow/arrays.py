"""numpy to Arrow on the ingest's hot paths.

``pa.array(values, type, mask=nulls)`` converts the boolean mask to a validity bitmap
one element at a time: 5 ms for 262k rows when no row is null, 40x what packing the
bits with numpy costs. Enrichment builds a dozen such columns per batch.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pyarrow as pa


def masked(
    values: npt.NDArray[np.generic], nulls: npt.NDArray[np.bool_], type: pa.DataType
) -> pa.Array:
    """``values`` as an Arrow array of the fixed-width ``type``, null where ``nulls``.

    >>> masked(np.array([1, 2, 3]), np.array([False, True, False]), pa.uint32()).to_pylist()
    [1, None, 3]
    """
    data = np.ascontiguousarray(values, dtype=type.to_pandas_dtype())
    count = int(np.count_nonzero(nulls))
    bitmap = pa.py_buffer(np.packbits(~nulls, bitorder="little")) if count else None
    return pa.Array.from_buffers(type, len(data), [bitmap, pa.py_buffer(data)], null_count=count)
