"""Text columns as Arrow strings: what the fast paths of reading and checking work on.

pandas holds a user's text either as Python objects (``object``, ``string[python]``) or as Arrow
strings (``pd.ArrowDtype(pa.large_string())``, how landing files are read). Arrow's compute kernels
(casts, RE2 regular expressions, hashing) handle a million values in milliseconds, so the
reading and checking code hands them text through this one conversion.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa


def arrow_text(series: pd.Series) -> pa.ChunkedArray | None:
    """The values as Arrow strings or large strings (no copy when they already are), or None if
    not all text. Arrow's kernels take either."""
    dtype = series.dtype
    if isinstance(series.array, pd.arrays.ArrowExtensionArray):  # ArrowDtype, string[pyarrow]
        # The Arrow interchange protocol (``__arrow_array__``): pandas hands over its own
        # chunked array, no copy.
        arrow = pa.array(series.array)
        if isinstance(arrow, pa.Array):
            arrow = pa.chunked_array([arrow])
        return arrow if pa.types.is_string(arrow.type) or pa.types.is_large_string(arrow.type) else None
    if isinstance(dtype, pd.StringDtype) or (
        pd.api.types.is_object_dtype(dtype)
        and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")
    ):
        values = series.to_numpy(dtype=object, na_value=None)
        return pa.chunked_array([pa.array(values, type=pa.string(), from_pandas=True)])
    return None
