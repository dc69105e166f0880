"""`arrow_text`: pandas text as Arrow strings, through the public Arrow interchange protocol."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from fraud_assets.core.text import arrow_text


def _data_address(chunked: pa.ChunkedArray) -> int:
    return chunked.chunk(0).buffers()[2].address  # the characters' buffer


def test_arrow_backed_text_is_handed_over_without_a_copy():
    values = ["CARD0001", None, "CARD0002"]
    for dtype in (pd.ArrowDtype(pa.large_string()), pd.ArrowDtype(pa.string()), "string[pyarrow]"):
        series = pd.Series(values, dtype=dtype)
        text = arrow_text(series)
        assert isinstance(text, pa.ChunkedArray) and text.to_pylist() == values
        # pandas' own buffer, not a copy: the fast paths rely on it for million-row columns.
        assert _data_address(text) == _data_address(series.array.__arrow_array__())


def test_python_text_is_converted_and_anything_else_is_not_text():
    for series in (
        pd.Series(["a", None, "b"], dtype=object),
        pd.Series(["a", None, "b"], dtype="string[python]"),
    ):
        text = arrow_text(series)
        assert text.type == pa.string() and text.to_pylist() == ["a", None, "b"]
    assert arrow_text(pd.Series([], dtype=object)).to_pylist() == []
    assert arrow_text(pd.Series([1, 2], dtype=pd.ArrowDtype(pa.int64()))) is None
    assert arrow_text(pd.Series(["a", 1], dtype=object)) is None
    assert arrow_text(pd.Series(np.arange(3.0))) is None
