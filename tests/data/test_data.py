"""Splits, node partition, sorting, tie groups and padding of the data layer."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rhd.data.federated import PAD_MULTIPLE, SplitSpec, build_federated_data, stratified_partition


@pytest.fixture(scope="module")
def fed(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), seed=1))


def test_split_sizes_and_disjointness(fed, small_cohort):
    df, _ = small_cohort
    n_test = len(fed.test_patient_ids)
    assert n_test == pytest.approx(0.1 * len(df), abs=2)
    assert sum(fed.n_train) + sum(fed.n_val) + n_test == len(df)
    shares = np.array(fed.shares())
    np.testing.assert_allclose(shares, [0.6, 0.3, 0.1], atol=0.01)
    for k in range(3):
        assert fed.train.weight[k].sum() == fed.n_train[k]
        assert fed.val.weight[k].sum() == fed.n_val[k]
    assert fed.train.x.shape[1] % PAD_MULTIPLE == 0


def test_stratified_partition_keeps_event_rate():
    event = (np.arange(1000) % 4 == 0).astype(int)  # 25% events
    part = stratified_partition(event, (0.6, 0.3, 0.1), np.random.default_rng(0))
    for k, frac in enumerate((0.6, 0.3, 0.1)):
        assert (part == k).sum() == pytest.approx(1000 * frac, abs=1)
        assert event[part == k].mean() == pytest.approx(0.25, abs=0.01)


def test_rows_sorted_by_descending_time_with_tie_ends(fed):
    for k in range(fed.num_nodes):
        n = fed.n_train[k]
        t = fed.train.time[k, :n]
        assert np.all(np.diff(t) <= 0)
        end = fed.train.risk_set_end[k, :n]
        for i in range(0, n, 37):
            # risk set of row i = every row with time >= t_i
            assert end[i] == np.flatnonzero(t >= t[i]).max()
        assert np.all(fed.train.weight[k, n:] == 0) and np.all(fed.train.event[k, n:] == 0)


def test_split_is_deterministic_and_seed_dependent(small_cohort, mds_guide):
    df, _ = small_cohort
    a = build_federated_data(
        df, mds_guide, SplitSpec(name="five", fractions=(0.45, 0.2, 0.15, 0.1, 0.1), seed=2)
    )
    b = build_federated_data(
        df.sample(fraction=1.0, shuffle=True, seed=9),
        mds_guide,
        SplitSpec(name="five", fractions=(0.45, 0.2, 0.15, 0.1, 0.1), seed=2),
    )
    c = build_federated_data(
        df, mds_guide, SplitSpec(name="five", fractions=(0.45, 0.2, 0.15, 0.1, 0.1), seed=3)
    )
    assert a.test_patient_ids == b.test_patient_ids  # input row order does not matter
    np.testing.assert_array_equal(a.train.x, b.train.x)
    assert a.test_patient_ids != c.test_patient_ids


def test_pooled_holds_every_training_row(small_cohort, mds_guide, fed):
    df, _ = small_cohort
    pooled = build_federated_data(
        df, mds_guide, SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), seed=1), pooled=True
    )
    assert pooled.num_nodes == 1
    assert pooled.n_train == (sum(fed.n_train),)
    assert pooled.test_patient_ids == fed.test_patient_ids
    np.testing.assert_array_equal(pooled.preprocessor.center, fed.preprocessor.center)
