"""Federated PCA of a feature group: equals pooled PCA, never sees the test set, drops groups."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.data.federated import SplitSpec, build_federated_data
from fedjax_rhd.data.reduce import (
    component_names,
    fit_group,
    fit_group_from_statistics,
    merged_mean,
    node_scatter,
    node_sums,
    project,
    reduce_groups,
    transform,
)
from fedjax_rhd.simulate.mds_wsi import simulate_mds_wsi
from harmonize.guide import Feature, Guide


def _guide(d: int) -> Guide:
    feats = [Feature("age", "continuous", "clinical", "a", (0.0, 120.0))]
    feats += [Feature(f"e{j}", "continuous", "wsi", "1", (-100.0, 100.0)) for j in range(d)]
    feats += [Feature("male", "binary", "clinical")]
    return Guide("toy", "0", "", tuple(feats), "a", "toy.yaml")


def _parts(rng, d=6, sizes=(40, 25, 15), missing=0.0):
    w = rng.normal(size=(2, d)) * 3
    parts = []
    for n in sizes:
        x = rng.normal(size=(n, 2)) @ w + 0.3 * rng.normal(size=(n, d)) + 5.0
        x[rng.random((n, d)) < missing] = np.nan
        cols = {"age": rng.uniform(40, 80, n)} | {f"e{j}": x[:, j] for j in range(d)}
        cols["male"] = rng.integers(0, 2, n)
        parts.append(pl.DataFrame(cols).with_columns(pl.all().fill_nan(None)))
    return parts


def test_federated_pca_equals_pooled_pca():
    rng = np.random.default_rng(0)
    parts = _parts(rng)
    cols = [f"e{j}" for j in range(6)]
    red = fit_group(parts, cols, "wsi", 3)
    pooled = pl.concat(parts).select(cols).to_numpy()
    cov = np.cov(pooled, rowvar=False)  # numpy's pooled estimate, n - 1 denominator
    want_vals, want_vecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(red.mean, pooled.mean(0), rtol=1e-12)
    np.testing.assert_allclose(red.eigenvalues, want_vals[::-1][:3], rtol=1e-10, atol=1e-12)
    for j in range(3):  # same axes up to sign
        assert abs(abs(red.basis[:, j] @ want_vecs[:, -1 - j]) - 1.0) < 1e-10
    scores = transform(parts[0], red).select(component_names("wsi", 3)).to_numpy()
    np.testing.assert_allclose(scores, (parts[0].select(cols).to_numpy() - pooled.mean(0)) @ red.basis)


def test_the_two_rounds_by_hand():
    """Node 1 holds (1, 2), (3, ?) and an empty row; node 2 holds (5, 6)."""
    nan = np.nan
    x1, x2 = np.array([[1.0, 2.0], [3.0, nan], [nan, nan]]), np.array([[5.0, 6.0]])
    sums = [node_sums(x1), node_sums(x2)]
    np.testing.assert_array_equal(sums[0][0], [2.0, 1.0])
    np.testing.assert_array_equal(sums[0][1], [4.0, 2.0])
    mean = merged_mean(sums)
    np.testing.assert_array_equal(mean, [3.0, 4.0])  # (1 + 3 + 5) / 3, (2 + 6) / 2
    # centred rows: (-2, -2), (0, 0 for the missing value); (2, 2). The empty row is not counted.
    scatters = [node_scatter(x1, mean), node_scatter(x2, mean)]
    assert [s[0] for s in scatters] == [2, 1]
    np.testing.assert_array_equal(scatters[0][1], [[4.0, 4.0], [4.0, 4.0]])
    np.testing.assert_array_equal(scatters[1][1], [[4.0, 4.0], [4.0, 4.0]])
    red = fit_group_from_statistics(sums, scatters, ("a", "b"), "wsi", 1)
    # covariance [[8, 8], [8, 8]] / (3 - 1): eigenvalue 8 on (1, 1) / sqrt 2
    assert red.n_rows == 3
    np.testing.assert_allclose(red.eigenvalues, [8.0], rtol=1e-14)
    np.testing.assert_allclose(red.basis[:, 0], [2**-0.5, 2**-0.5], rtol=1e-14)
    scores = project(x1, red.mean, red.basis)[:, 0]
    np.testing.assert_allclose(scores[:2], [-4 * 2**-0.5, 0.0], rtol=1e-14)  # (3, ?) sits at the mean
    assert np.isnan(scores[2])


def test_a_rows_components_do_not_depend_on_the_rows_projected_with_it():
    """A node projects its own test rows; the data layer the whole test set at once: same bits."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(70, 40))
    mean, basis = rng.normal(size=40), np.linalg.qr(rng.normal(size=(40, 8)))[0]
    whole = project(x, mean, basis)
    for rows in (np.arange(1), np.arange(3, 40, 3), rng.permutation(70)[:37]):
        np.testing.assert_array_equal(project(x[rows], mean, basis), whole[rows])
    np.testing.assert_array_equal(project(x, mean, np.ascontiguousarray(basis)), whole)  # any layout


def test_missing_components_use_the_federated_mean_and_empty_vectors_stay_missing():
    rng = np.random.default_rng(1)
    parts = _parts(rng, missing=0.1)
    parts[0] = (
        parts[0].with_columns([pl.lit(None, pl.Float64).alias(f"e{j}") for j in range(6)]).vstack(parts[0])
    )
    cols = [f"e{j}" for j in range(6)]
    red = fit_group(parts, cols, "wsi", 2)
    np.testing.assert_allclose(red.mean, np.nanmean(pl.concat(parts).select(cols).to_numpy(), axis=0))
    out = transform(parts[0], red)
    n_empty = parts[0].height // 2
    assert out["wsi_pc01"][:n_empty].null_count() == n_empty
    assert out["wsi_pc01"][n_empty:].null_count() == 0
    assert red.n_rows == sum(p.height for p in parts) - n_empty


def test_reduce_groups_replaces_or_drops_a_group_and_ignores_other_tables():
    rng = np.random.default_rng(2)
    guide = _guide(6)
    train = _parts(rng)
    test = _parts(rng, sizes=(30,))[0]
    outliers = test.with_columns(pl.col("e0") * 1000)
    tr, others, g, fitted = reduce_groups(train, [test], guide, [("wsi", 2)])
    _, _, _, fitted_outliers = reduce_groups(train, [outliers], guide, [("wsi", 2)])
    np.testing.assert_array_equal(fitted[0].basis, fitted_outliers[0].basis)  # test rows never fit
    assert g.feature_names == ("age", "wsi_pc01", "wsi_pc02", "male")
    assert tr[0].columns == ["age", "male", "wsi_pc01", "wsi_pc02"] and others[0].height == 30
    _, _, dropped, _ = reduce_groups(train, [test], guide, [("wsi", 0)])
    assert dropped.feature_names == ("age", "male")
    with pytest.raises(ValueError, match="no features in group 'pet'"):
        reduce_groups(train, [test], guide, [("pet", 2)])
    with pytest.raises(ValueError, match="components must be 0..6"):
        reduce_groups(train, [test], guide, [("wsi", 7)])


def test_build_federated_data_with_a_reduced_embedding():
    from fedjax_rhd.guide_cache import cached_guide

    guide = cached_guide("mds_wsi")  # parsed once per process (tests/simulate use it too)
    df = simulate_mds_wsi(guide, n=300, seed=0)
    split = SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), test_fraction=0.1, val_fraction=0.2, seed=0)
    data = build_federated_data(df, guide, split, reduce=[("wsi", 8)])
    plain = build_federated_data(df, guide, split, reduce=[("wsi", 0)])
    n_clinical = sum(f.width for f in guide.features if f.group != "wsi")
    assert data.num_features == n_clinical + 8 and plain.num_features == n_clinical
    assert data.test_patient_ids == plain.test_patient_ids
    assert [f.name for f in data.guide.features if f.group == "wsi"] == list(component_names("wsi", 8))


def test_config_reduce_reaches_the_settings():
    from fedjax_rhd.config import run_config
    from tests.conftest import compose

    assert run_config(compose(["use_case=mds_wsi"])).use_case.reductions == (("wsi", 16),)
    assert run_config(compose(["use_case=mds_wsi", "use_case.reduce.wsi=0"])).use_case.reductions == (
        ("wsi", 0),
    )
    assert run_config(compose(["use_case=mm", "use_case.reduce.pet=0"])).use_case.reductions == (("pet", 0),)
    assert run_config(compose(["use_case=mm"])).use_case.reductions == (("pet", 8),)
    assert run_config(compose(["use_case=aml"])).use_case.reductions == ()
