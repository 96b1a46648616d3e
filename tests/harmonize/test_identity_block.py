"""The dataset id's number columns hashed from one frame-wide conversion give the column-by-column bytes."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from harmonize.identity import _canonical_number_block, _canonical_numbers


def test_the_block_gives_each_columns_bytes_with_nulls_negative_zero_and_nan():
    df = pl.DataFrame(
        {
            "f": [1.5, -0.0, None, float("nan"), 2.0],
            "i": pl.Series([3, None, -1, 0, 7], dtype=pl.Int8),
            "b": [True, False, None, True, False],
            "u": pl.Series([0, 1, 2, 3, 4], dtype=pl.UInt32),
        }
    )
    block = _canonical_number_block(df, list(df.columns))
    for name in df.columns:
        assert block[name] == _canonical_numbers(name, df[name])
    null, values = block["f"]
    assert null == bytes([0, 0, 1, 0, 0])
    f = np.frombuffer(values, "<f8")
    assert f[1] == 0.0 and not np.signbit(f[1]) and np.isnan(f[3]) and f[2] == 0.0


def test_a_string_column_among_numbers_is_refused_by_name():
    df = pl.DataFrame({"x": [1.0], "s": ["a"]})
    with pytest.raises(TypeError, match="'s' must be numeric"):
        _canonical_number_block(df, ["x", "s"])
