"""Several risks bootstrapped in one pass; pair counts split over either coordinate (concordance.py)."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rhd.metrics import concordance as cc
from fedjax_rhd.metrics.concordance import bootstrap_cindex, bootstrap_cindices


@pytest.mark.parametrize(("n", "n_boot"), [(150, 200), (2100, 5)])  # dense pair matrices, and per resample
def test_several_risks_in_one_pass_equal_one_call_each(n, n_boot):
    """What results.json uses equals one bootstrap_cindex call per risk, bit for bit."""
    rng = np.random.default_rng(3)
    time = np.ceil(rng.exponential(5.0, n))
    event = rng.random(n) < 0.6
    risks = [np.round(rng.normal(size=n), 1) for _ in range(3)]
    together = bootstrap_cindices(time, event, risks, n_boot=n_boot, seed=7)
    alone = [bootstrap_cindex(time, event, r, n_boot=n_boot, seed=7) for r in risks]
    assert together == alone


@pytest.mark.parametrize("seed", range(4))
def test_dominance_count_is_the_same_split_over_either_coordinate(seed):
    # The concordant count recurses over the bits of whichever coordinate has fewer levels
    # (concordance._dominance_pairs): both orientations must equal the brute-force count.
    rng = np.random.default_rng(seed)
    n = 300
    p = rng.integers(0, 5 + 40 * seed, n)
    s = rng.integers(0, 3 + 7 * seed, n)
    event = rng.random(n) < 0.6
    brute = int(((p[:, None] < p[None, :]) & (s[:, None] < s[None, :]) & event[None, :]).sum())
    n_p, n_s = int(p.max()) + 1, int(s.max()) + 1
    assert cc._dominance_pairs(p, n_p, s, event, None) == brute
    assert cc._dominance_pairs(s, n_s, p, event, None) == brute


@pytest.mark.parametrize("seed", range(4))
def test_grid_and_sort_paths_give_the_same_pair_counts(seed, monkeypatch):
    # Few distinct times and risks go through the (risk, time group) grid; forcing the grid off
    # (a zero cell budget) sends the same data through the sort-based path. Both must equal the
    # brute-force counts of the module docstring's definition.
    rng = np.random.default_rng(seed)
    n = 400
    time = rng.integers(1, 4 + 30 * seed, n).astype(float)
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n), seed)  # 0 decimals: a handful of levels; 3: nearly distinct
    later = (time[None, :] > time[:, None]) | ((time[None, :] == time[:, None]) & ~event[None, :])
    comparable = event[:, None] & later  # [i, j]: i an event, j outlives it
    brute = (
        int((comparable & (risk[:, None] > risk[None, :])).sum()),
        int((comparable & (risk[:, None] == risk[None, :])).sum()),
        int(comparable.sum()),
    )
    grid = cc.concordance_summary(time, event, risk)
    monkeypatch.setattr(cc, "_GRID_ROWS_FACTOR", 0)
    assert cc.concordance_summary(time, event, risk) == grid == brute


@pytest.mark.parametrize("decimals", [0, 2, 6])
def test_radix_and_comparison_orders_give_the_same_pair_counts(decimals, monkeypatch):
    # Ranks that fit 16 bits are ordered by two stable radix sorts (concordance._order_by); a zero
    # code budget forces the int64 comparison sort. Grid off, so both go through the sort path; both
    # must equal lifelines' C on the same rows (ties of every kind at 0 decimals, none at 6).
    from lifelines.utils import concordance_index as lifelines_cindex

    rng = np.random.default_rng(decimals)
    n = 3000
    time = np.round(rng.exponential(3.0, n), decimals)
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n) - 0.3 * time, decimals)
    monkeypatch.setattr(cc, "_GRID_ROWS_FACTOR", 0)
    radix = cc.concordance_summary(time, event, risk)
    monkeypatch.setattr(cc, "_RADIX_MAX_CODES", 0)
    assert cc.concordance_summary(time, event, risk) == radix
    c = (radix[0] + radix[1] / 2) / radix[2]
    assert c == pytest.approx(lifelines_cindex(time, -risk, event), abs=1e-12)


@pytest.mark.parametrize(
    "values",
    [
        np.round(np.random.default_rng(0).normal(size=30_000), 2),  # ~600 levels, negative and positive
        np.ceil(np.random.default_rng(1).exponential(300.0, 30_000)),  # days, ~2k levels
        np.random.default_rng(2).integers(-3, 4, 30_000).astype(np.int8),  # a small integer code
        np.random.default_rng(3).random(30_000) < 0.3,  # bool
        np.tile(np.array([0.0, -0.0, np.inf, -np.inf, 1.5], np.float32), 6000),  # signed zeros, infinities
        np.random.default_rng(4).integers(0, 70_000, 300_000).astype(float),  # > 2**16 distinct values
    ],
)
def test_hashed_and_sorted_dense_ranks_are_equal(values):
    # Values that repeat a lot are dense-ranked through pandas.factorize (concordance._dense_rank_hashed);
    # the ranks and their count must equal the comparison sort's, and each path's order must sort the values.
    hashed, sorted_ = cc._dense_rank_hashed(values), cc._dense_rank_sorted(values)
    np.testing.assert_array_equal(hashed[0], sorted_[0])
    assert hashed[1] == sorted_[1] == len(np.unique(values))
    for _, _, order in (hashed, sorted_):
        ordered = values[order]
        assert (ordered[1:] >= ordered[:-1]).all()


def test_hash_rank_choice_follows_the_sample_and_leaves_the_c_index_unchanged(monkeypatch):
    # Repeating values take the hash path, nearly distinct ones the sort; forcing either path on the
    # same tied data gives the same counts, equal to lifelines' C.
    from lifelines.utils import concordance_index as lifelines_cindex

    rng = np.random.default_rng(5)
    n = 50_000
    time = np.ceil(rng.exponential(200.0, n))
    event = rng.random(n) < 0.6
    risk = np.round(rng.normal(size=n) - 0.002 * time, 2)
    assert cc._repeats_a_lot(time) and cc._repeats_a_lot(risk)
    assert not cc._repeats_a_lot(rng.normal(size=n)) and not cc._repeats_a_lot(time[:1000])
    hashed = cc.concordance_summary(time, event, risk)
    monkeypatch.setattr(cc, "_HASH_RANK_MIN_N", 10**12)
    assert cc.concordance_summary(time, event, risk) == hashed
    c = (hashed[0] + hashed[1] / 2) / hashed[2]
    assert c == pytest.approx(lifelines_cindex(time, -risk, event), abs=1e-12)
