"""The bootstrap's block path (metrics/weighted_pairs.py) against hand counts, expanded rows, lifelines."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines.utils import concordance_index as lifelines_cindex

from fedjax_rhd.metrics import concordance as cc
from fedjax_rhd.metrics import weighted_pairs as wp
from fedjax_rhd.report.stats import SeedRows


def counts(time, event, risk, weights):
    """(concordant, tied, comparable) of every row of ``weights`` by the block path."""
    event = np.asarray(event, bool)
    g, n_groups = cc._time_groups(np.asarray(time, float), event)
    plan = wp.pair_plan(g, n_groups, cc._dense_rank(np.asarray(risk))[0], event)
    weights = np.asarray(weights, np.int64)
    bs = wp.batch_size(len(time), len(weights))
    batches = (weights[lo : lo + bs] for lo in range(0, len(weights), bs))
    ((conc, tied, comp),) = wp.weighted_pair_counts([plan], batches, len(weights))
    return list(zip(conc.tolist(), tied.tolist(), comp.tolist(), strict=True))


def tied_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Few distinct times and risks: ties of every kind, runs longer than a block."""
    rng = np.random.default_rng(seed)
    time = rng.integers(1, max(n // 6, 2) + 1, n).astype(float)
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n), 1)
    return time, event, risk


def test_hand_counted_weights():
    # Rows (time, event, risk): (1, 1, 3), (2, 1, 2), (2, 0, 2), (3, 0, 1), drawn 2, 1, 1, 0 times.
    # Comparable: row 0 with rows 1, 2, 3 -> 2 * (1 + 1 + 0) = 4; row 1 with row 2 (censored at
    # the same time) and row 3 -> 1 * (1 + 0) = 1; total 5. Concordant: row 0 outranks 1, 2, 3
    # -> 4; row 1 outranks row 3 -> 0. Tied: rows 1 and 2 share risk 2 -> 1 * 1 = 1.
    time, event, risk = [1.0, 2.0, 2.0, 3.0], [1, 1, 0, 0], [3.0, 2.0, 2.0, 1.0]
    # Eight copies of the resample: the compiled shape of the other small tests (one compile).
    assert counts(time, event, risk, [[2, 1, 1, 0]] * 8) == [(4, 1, 5)] * 8
    assert cc.concordance_summary([1.0, 1.0, 2.0, 2.0], [1, 1, 1, 0], [3.0, 3.0, 2.0, 2.0]) == (4, 1, 5)


@pytest.mark.parametrize("n", [1, 7, 300])
def test_counts_equal_the_expanded_rows(n):
    """Integer counts equal concordance_summary on the rows repeated by their weights."""
    time, event, risk = tied_data(n, seed=n)
    rng = np.random.default_rng(1)
    weights = rng.poisson(1.0, size=(9, n))
    weights[0] = 0  # an empty resample
    weights[1] = 1  # the data itself
    weights[2, rng.integers(0, n)] += 50  # one row drawn many times
    got = counts(time, event, risk, weights)
    for b, w in enumerate(weights):
        rows = np.repeat(np.arange(n), w)
        assert got[b] == cc.concordance_summary(time[rows], event[rows], risk[rows]), b


def test_block_path_equals_one_resample_at_a_time_bit_for_bit():
    time, event, risk = tied_data(300, seed=4)
    other = np.round(risk + np.random.default_rng(5).normal(size=300), 1)
    n_boot = 12  # batches of 8, a short last one included

    def weights(batch):
        return cc._drawn_weights(11, 300, n_boot, batch)

    blocked, valid = cc._blocked_cindices(time, event, [risk, other], weights, n_boot)
    loop, loop_valid = cc._per_resample_cindices(time, event, [risk, other], weights(7), n_boot)
    np.testing.assert_array_equal(valid, loop_valid)
    np.testing.assert_array_equal(blocked, loop)  # NaN-free here, and equal to the last bit


def test_one_resample_against_lifelines():
    time, event, risk = tied_data(300, seed=8)
    idx = cc._bootstrap_indices(np.random.default_rng(3), 300, 8)
    c, _ = cc._blocked_cindices(time, event, [risk], lambda b: cc._idx_weights(idx, 300, b), 8)
    for b in range(8):
        rows = idx[b]
        assert c[b, 0] == pytest.approx(lifelines_cindex(time[rows], -risk[rows], event[rows]), abs=1e-12)


def test_batches_drawn_one_at_a_time_are_the_whole_draw():
    idx = cc._bootstrap_indices(np.random.default_rng(6), 40, 10)
    whole = np.concatenate(list(cc._idx_weights(idx, 40, 10)))
    drawn = np.concatenate(list(cc._drawn_weights(6, 40, 10, 3)))
    np.testing.assert_array_equal(drawn, whole)
    assert (whole.sum(axis=1) == 40).all()


def test_bootstrap_cindex_through_the_block_path_equals_the_dense_path(monkeypatch):
    time, event, risk = tied_data(300, seed=9)
    dense = cc.bootstrap_cindex(time, event, risk, n_boot=12, seed=2)
    monkeypatch.setattr(cc, "_DENSE_MAX_N", 0)
    assert cc.bootstrap_cindex(time, event, risk, n_boot=12, seed=2) == dense
    monkeypatch.setattr(cc, "_BLOCKED_MAX_N", 0)  # past the crossover: one resample at a time
    assert cc.bootstrap_cindex(time, event, risk, n_boot=12, seed=2) == dense


def test_partly_scored_risk_keeps_the_resample():
    """SeedRows.boot of a score with NaNs equals Harrell's C of each resample's scored rows."""
    time, event, risk = tied_data(120, seed=10)
    risk[::5] = np.nan
    rows_boot = SeedRows(time, event, seed=1, n_boot=30, boot_seed=0)
    got = rows_boot.boot(risk)
    for b, rows in enumerate(rows_boot.idx):
        rows = rows[~np.isnan(risk[rows])]
        assert got[b] == cc.concordance_index(time[rows], event[rows], risk[rows])


def test_too_heavy_weights_are_refused():
    plan = wp.pair_plan(np.array([1, 0]), 2, np.array([0, 1]), np.array([True, False]))
    with pytest.raises(ValueError, match="too large"):
        wp.weighted_pair_counts([plan], [np.array([[wp.MAX_TOTAL_WEIGHT, 0]])], 1)


@pytest.mark.parametrize("levels", [0, 1, 2, 3])
def test_lower_triangular_product_equals_the_dense_product_bit_for_bit(levels):
    # a strictly lower-triangular 0/1 mask ([i, j], j < i) times integer weights: every halving skips
    # only zeros, and integer sums are exact in float32, so each level gives the dense product exactly
    import jax.numpy as jnp

    rng = np.random.default_rng(levels)
    s = 64
    mask = (np.tril(rng.random((s, s)) < 0.5, k=-1)).astype(np.float32)
    weights = rng.poisson(2.0, size=(s, 5)).astype(np.float32)
    got = np.asarray(wp._lower_dot(jnp.asarray(mask), jnp.asarray(weights), levels))
    np.testing.assert_array_equal(got, mask @ weights)
