"""Impossible values, counted exactly on a hand-made table."""

from __future__ import annotations

import dataclasses
import math

import polars as pl

from fedjax_rhd.metrics.synthetic.validity import impossible_values
from tests.metrics.synthetic._toy import TOY_GUIDE

BAD = pl.DataFrame(
    {
        # hb range [3, 20]: 2 and 25 outside; NaN and inf are not missing values but non-finite.
        "hb": pl.Series([2.0, 25.0, None, math.nan, math.inf, 10.0], dtype=pl.Float64),
        # a generator's binary head as floats: 0.5 and 2 are no 0/1 value.
        "GENE_A": pl.Series([0.0, 1.0, 0.5, None, 2.0, 1.0], dtype=pl.Float64),
        "GENE_B": pl.Series([0, 1, 0, 0, 1, None], dtype=pl.Int8),
        "cyto": ["good", "bad", None, "poor", "GOOD", "poor"],
        "time": pl.Series([0.0, -1.0, None, 2.0, 3.0, math.inf], dtype=pl.Float64),
        "event": pl.Series([1, 0, 2, None, 1, 0], dtype=pl.Int8),
    }
)


def test_impossible_values_are_counted_exactly():
    res = impossible_values(BAD, TOY_GUIDE)
    assert res["out_of_range"] == {"hb": 2}
    assert res["non_finite"] == {"hb": 2, "time": 1}
    assert res["not_binary"] == {"GENE_A": 2}
    assert res["unknown_level"] == {"cyto": 2}  # labels are case-sensitive: "GOOD" is not "good"
    assert (res["time_not_positive"], res["time_missing"], res["event_invalid"]) == (2, 1, 2)
    assert res["missing_columns"] == []
    assert res["total"] == 2 + 2 + 1 + 2 + 2 + 2 + 1 + 2


def test_a_missing_column_and_zero_times_where_the_guide_allows_them():
    res = impossible_values(BAD.drop("GENE_B"), dataclasses.replace(TOY_GUIDE, time_zero_allowed=True))
    assert res["missing_columns"] == ["GENE_B"]
    assert res["time_not_positive"] == 1  # -1 only: a time of 0 is data under this guide
    assert res["total"] == 14 - 1 + 1


def test_a_harmonised_table_has_no_impossible_value(mds_split, mds_guide):
    train, _, _ = mds_split
    assert impossible_values(train, mds_guide)["total"] == 0
    shifted = train.with_columns(pl.col("time") - 1.0)  # a generator that forgets time > 0
    res = impossible_values(shifted, mds_guide)
    assert res["time_not_positive"] == int((train["time"] <= 1.0).sum()) > 0
