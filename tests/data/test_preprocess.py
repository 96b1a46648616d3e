"""Federated preprocessing equals pooled statistics and never sees test rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.data.federated import SplitSpec, build_federated_data
from fedjax_rhd.data.preprocess import (
    HISTOGRAM_BINS,
    histogram_median,
    merge_all_moments,
    node_histogram,
    node_moments,
)


def test_chan_merge_equals_pooled_on_large_mean_small_spread():
    rng = np.random.default_rng(0)
    # Large mean against the spread: naive float32 sums of squares lose most of this variance.
    sizes = [1234, 17, 400, 3, 2000]
    parts = [1e6 + rng.normal(0.0, 0.01, size=(n, 1)) for n in sizes]
    merged = merge_all_moments([node_moments(p, np.ones_like(p, bool)) for p in parts])
    pooled = np.concatenate(parts)
    assert merged.count[0] == pooled.size
    assert merged.mean[0] == pytest.approx(pooled.mean(), rel=1e-12)
    assert merged.m2[0] / (merged.count[0] - 1) == pytest.approx(pooled.var(ddof=1), rel=1e-9)
    # The trap the design warns about: one-pass float32 sums of squares are far off.
    p32 = pooled.astype(np.float32)
    naive = (np.sum(p32 * p32, dtype=np.float32) - np.sum(p32, dtype=np.float32) ** 2 / p32.size) / (
        p32.size - 1
    )
    assert abs(naive - pooled.var(ddof=1)) / pooled.var(ddof=1) > 0.5


def test_moments_respect_observed_mask():
    values = np.array([[1.0, 5.0], [3.0, 999.0], [5.0, 7.0]])
    observed = np.array([[True, True], [True, False], [True, True]])
    m = node_moments(values, observed)
    np.testing.assert_allclose(m.count, [3, 2])
    np.testing.assert_allclose(m.mean, [3.0, 6.0])
    np.testing.assert_allclose(m.m2, [8.0, 2.0])  # (1-3)^2+(3-3)^2+(5-3)^2 ; (5-6)^2+(7-6)^2


def test_histogram_median_within_a_bin_of_pooled_median():
    rng = np.random.default_rng(1)
    ranges = np.array([[0.0, 20.0], [0.0, 1.0]])
    nodes = []
    for n in (300, 51, 800):
        v = np.column_stack([rng.gamma(2.0, 2.0, n).clip(0, 20), rng.random(n) < 0.3])
        nodes.append(v)
    counts = sum(node_histogram(v, np.ones_like(v, bool), ranges) for v in nodes)
    med = histogram_median(counts, ranges)
    pooled = np.concatenate(nodes)
    assert abs(med[0] - np.median(pooled[:, 0])) <= 20.0 / HISTOGRAM_BINS * 2
    assert med[1] == 0.0  # binary column: the majority value


def test_no_test_row_influences_standardisation(small_cohort, mds_guide):
    df, _ = small_cohort
    split = SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), seed=4)
    base = build_federated_data(df, mds_guide, split)
    test_ids = set(base.test_patient_ids)
    # Wild values on every test row; the split depends only on ids and events.
    poisoned = df.with_columns(
        pl.when(pl.col("patient_id").is_in(list(test_ids)))
        .then(pl.lit(99.0))
        .otherwise(pl.col("age"))
        .alias("age"),
        pl.when(pl.col("patient_id").is_in(list(test_ids)))
        .then(pl.lit(19.9))
        .otherwise(pl.col("hb"))
        .alias("hb"),
    )
    other = build_federated_data(poisoned, mds_guide, split)
    assert set(other.test_patient_ids) == test_ids
    np.testing.assert_array_equal(base.preprocessor.center, other.preprocessor.center)
    np.testing.assert_array_equal(base.preprocessor.scale, other.preprocessor.scale)
    np.testing.assert_array_equal(base.preprocessor.fill, other.preprocessor.fill)
    np.testing.assert_array_equal(base.train.x, other.train.x)


def test_encode_by_hand_on_three_features_of_the_mds_guide(mds_guide):
    """Values and masks of a log-scaled number, a categorical and a plain number, computed by hand."""
    import dataclasses

    from fedjax_rhd.data.preprocess import encode

    keep = ("age", "plt", "ipssr_cyto")
    guide = dataclasses.replace(mds_guide, features=tuple(f for f in mds_guide.features if f.name in keep))
    df = pl.DataFrame(
        {
            "age": [70.0, None, 55.5],
            "plt": [99.0, 0.0, None],
            "ipssr_cyto": ["poor", None, "very_good"],
        }
    )
    values, observed = encode(df, guide)
    order = [f.name for f in guide.features]  # the guide's order, whatever the table's
    col = {name: i for i, name in enumerate(order)}
    assert order == ["age", "plt", "ipssr_cyto"]
    # age | log1p(plt) | very_good good intermediate poor very_poor
    expected = np.array(
        [
            [70.0, np.log(100.0), 0, 0, 0, 1, 0],
            [0.0, 0.0, 0, 0, 0, 0, 0],
            [55.5, 0.0, 1, 0, 0, 0, 0],
        ]
    )
    np.testing.assert_allclose(values, expected, rtol=1e-15)
    assert values[0, col["plt"]] == np.log1p(99.0)
    assert observed.tolist() == [
        [True, True, True, True, True, True, True],
        [False, True, False, False, False, False, False],
        [True, False, True, True, True, True, True],
    ]
    with pytest.raises(ValueError, match=r"feature 'ipssr_cyto', row 1: label 'awful' is not one of"):
        encode(df.with_columns(pl.Series("ipssr_cyto", ["poor", "awful", None])), guide)
    with pytest.raises(KeyError, match="table lacks guide feature 'plt'"):
        encode(df.drop("plt"), guide)


def test_encode_of_a_table_equals_its_features_encoded_one_by_one_and_its_rows_in_any_subset(small_cohort):
    """The batched encoding (one polars selection per kind) against each feature alone, bit for bit."""
    import dataclasses

    from fedjax_rhd.data.preprocess import encode
    from harmonize.guide import load_guide

    table, _ = small_cohort
    guide = load_guide("mds")
    values, observed = encode(table, guide)
    blocks = [encode(table, dataclasses.replace(guide, features=(f,))) for f in guide.features]
    assert values.tobytes() == np.concatenate([b[0] for b in blocks], axis=1).tobytes()
    assert np.array_equal(observed, np.concatenate([b[1] for b in blocks], axis=1))
    rows = np.random.default_rng(0).choice(table.height, 57, replace=False)
    part_values, part_observed = encode(table[rows.tolist()], guide)
    assert part_values.tobytes() == values[rows].tobytes() and np.array_equal(part_observed, observed[rows])
    empty_values, empty_observed = encode(table.head(0), guide)
    assert empty_values.shape == (0, values.shape[1]) and empty_observed.shape == (0, values.shape[1])
