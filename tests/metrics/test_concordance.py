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
