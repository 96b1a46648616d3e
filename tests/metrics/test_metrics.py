"""Tests for fedjax_rhd.metrics.concordance: Harrell's C against lifelines, brute force and hand values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index as lifelines_cindex

from fedjax_rhd.metrics import concordance as metrics
from fedjax_rhd.metrics.concordance import (
    bootstrap_cindex,
    concordance_index,
    concordance_summary,
    paired_bootstrap_difference,
)


def brute_force_summary(time, event, risk) -> tuple[int, int, int]:
    """O(n^2) reference with the documented pair rules (higher risk = worse prognosis)."""
    concordant = tied = comparable = 0
    n = len(time)
    for i in range(n):
        if not event[i]:
            continue
        for j in range(n):
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                comparable += 1
                if risk[i] > risk[j]:
                    concordant += 1
                elif risk[i] == risk[j]:
                    tied += 1
    return concordant, tied, comparable


def tied_data(seed: int, n: int, n_times: int = 8, n_risks: int = 5, p_event: float = 0.6):
    """Integer-valued times and risks, so that tied times and tied risks are frequent."""
    rng = np.random.default_rng(seed)
    time = rng.integers(0, n_times, n).astype(float)
    event = (rng.random(n) < p_event).astype(int)
    risk = rng.integers(0, n_risks, n).astype(float)
    return time, event, risk


def test_hand_computed_toy():
    # Patient: time, event, risk
    #   A: 1, event,    4
    #   B: 2, censored, 3
    #   C: 3, event,    1
    #   D: 4, event,    2
    # Comparable pairs (the earlier one has the event): A-B, A-C, A-D, C-D -> 4.
    # Concordant (earlier one has the higher risk): A-B (4>3), A-C (4>1), A-D (4>2) -> 3;
    # C-D is discordant (1<2). C = 3 / 4.
    time = [1, 2, 3, 4]
    event = [1, 0, 1, 1]
    risk = [4, 3, 1, 2]
    assert concordance_summary(time, event, risk) == (3, 0, 4)
    assert concordance_index(time, event, risk) == 0.75


def test_hand_computed_toy_with_ties():
    # Patient: time, event, risk
    #   1: 1, event,    4
    #   2: 2, censored, 3
    #   3: 3, event,    1
    #   4: 3, event,    2
    #   5: 3, censored, 1
    #   6: 4, event,    2
    # i=1: comparable with 2, 3, 4, 5, 6 (all later), all risks < 4 -> 5 concordant.
    # i=3: 3-4 NOT comparable (two events at t=3); 3-5 comparable (5 censored at t=3), risks
    #      tied (1 = 1); 3-6 comparable, discordant (1 < 2).
    # i=4: 4-5 comparable, concordant (2 > 1); 4-6 comparable, tied (2 = 2).
    # i=6: nothing later. Total: 9 comparable, 6 concordant, 2 tied -> C = (6 + 2/2) / 9 = 7/9.
    time = [1, 2, 3, 3, 3, 4]
    event = [1, 0, 1, 1, 0, 1]
    risk = [4, 3, 1, 2, 1, 2]
    assert concordance_summary(time, event, risk) == (6, 2, 9)
    assert concordance_index(time, event, risk) == pytest.approx(7 / 9, abs=1e-15)
    assert concordance_index(time, event, risk) == pytest.approx(
        lifelines_cindex(time, -np.asarray(risk), event), abs=1e-12
    )


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("n", [2, 7, 50, 400])
def test_matches_lifelines_with_ties(seed, n):
    time, event, risk = tied_data(seed, n, n_times=3 + seed, n_risks=2 + seed)
    try:
        expected = lifelines_cindex(time, -risk, event)
    except ZeroDivisionError:
        with pytest.raises(ValueError, match="no comparable pairs"):
            concordance_index(time, event, risk)
        return
    assert concordance_index(time, event, risk) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_matches_lifelines_larger_mixed(seed):
    rng = np.random.default_rng(100 + seed)
    n = 20_000
    time = np.round(rng.exponential(5.0, n), 1)  # rounded: many tied times
    event = rng.random(n) < 0.5
    risk = np.round(-np.log(time + 0.1) + rng.normal(0, 1, n), 1)  # rounded: many tied risks
    expected = lifelines_cindex(time, -risk, event)
    assert concordance_index(time, event, risk) == pytest.approx(expected, abs=1e-12)


def test_matches_lifelines_continuous():
    rng = np.random.default_rng(7)
    n = 5000
    time = rng.exponential(size=n)
    event = rng.random(n) < 0.7
    risk = rng.normal(size=n) - time
    expected = lifelines_cindex(time, -risk, event)
    assert concordance_index(time, event, risk) == pytest.approx(expected, abs=1e-12)


small_data = st.integers(min_value=0, max_value=25).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 4), min_size=n, max_size=n),
        st.lists(st.booleans(), min_size=n, max_size=n),
        st.lists(st.integers(-2, 2), min_size=n, max_size=n),
    )
)


@settings(max_examples=300, deadline=None)
@given(small_data)
def test_matches_brute_force(data):
    time, event, risk = data
    expected = brute_force_summary(time, event, risk)
    assert concordance_summary(time, event, risk) == expected
    conc, tied, comp = expected
    if comp == 0:
        with pytest.raises(ValueError, match="no comparable pairs"):
            concordance_index(time, event, risk)
    else:
        assert concordance_index(time, event, risk) == pytest.approx((conc + tied / 2) / comp, abs=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(0, 10, allow_nan=False, width=32), st.booleans(), st.floats(-5, 5, allow_nan=False)
        ),
        min_size=2,
        max_size=40,
    )
)
def test_matches_brute_force_float_inputs(rows):
    time, event, risk = (list(col) for col in zip(*rows, strict=True))
    assert concordance_summary(time, event, risk) == brute_force_summary(time, event, risk)


def test_symmetry_without_tied_risks():
    rng = np.random.default_rng(3)
    time, event, _ = tied_data(3, 300)
    risk = rng.permutation(300).astype(float)  # distinct risks
    total = concordance_index(time, event, risk) + concordance_index(time, event, -risk)
    assert total == pytest.approx(1.0, abs=1e-12)


def test_perfect_and_reversed_ranking():
    rng = np.random.default_rng(4)
    time = rng.permutation(200).astype(float) + 1.0  # distinct times
    event = rng.random(200) < 0.6
    assert concordance_index(time, event, -time) == 1.0
    assert concordance_index(time, event, 1.0 / time) == 1.0
    assert concordance_index(time, event, time) == 0.0


def test_constant_risk_is_one_half():
    time, event, _ = tied_data(5, 100)
    assert concordance_index(time, event, np.zeros(100)) == 0.5


def test_invariant_to_monotone_transform_and_permutation():
    time, event, risk = tied_data(11, 500, n_times=20, n_risks=9)
    base = concordance_index(time, event, risk)
    assert concordance_index(time, event, np.exp(risk)) == base
    assert concordance_index(time, event, 3.0 * risk - 7.0) == base
    assert concordance_index(time, event, np.arctan(risk)) == base
    assert concordance_index(np.log1p(time), event, risk) == base  # monotone in time too
    perm = np.random.default_rng(0).permutation(500)
    assert concordance_index(time[perm], event[perm], risk[perm]) == base


def test_accepts_bool_int_and_list_inputs():
    time, event, risk = tied_data(2, 60)
    base = concordance_index(time, event, risk)
    assert concordance_index(time.astype(int), event.astype(bool), risk.astype(int)) == base
    assert concordance_index(list(time), list(event), list(risk)) == base
    assert concordance_index(time, event.astype(float), risk) == base


@pytest.mark.parametrize(
    "time, event",
    [
        ([1.0, 2.0, 3.0], [0, 0, 0]),  # no events
        ([2.0, 2.0, 2.0], [1, 1, 1]),  # all events at the same time
        ([1.0, 2.0, 3.0], [0, 0, 1]),  # only the last time has an event
        ([5.0], [1]),  # a single row
        ([], []),  # no rows
    ],
)
def test_no_comparable_pairs_raises(time, event):
    risk = np.arange(len(time), dtype=float)
    assert concordance_summary(time, event, risk)[2] == 0
    with pytest.raises(ValueError, match="no comparable pairs"):
        concordance_index(time, event, risk)


def test_invalid_inputs_raise():
    with pytest.raises(ValueError, match="same length"):
        concordance_index([1.0, 2.0], [1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="same length"):
        concordance_index([1.0, 2.0, 3.0], [1, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        concordance_index([1.0, np.nan, 3.0], [1, 0, 1], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        concordance_index([1.0, 2.0, 3.0], [1, 0, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="NaN"):
        concordance_index([1.0, 2.0, 3.0], [1.0, np.nan, 1.0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0/1"):
        concordance_index([1.0, 2.0, 3.0], [1, 2, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="1-dimensional"):
        concordance_index(np.ones((3, 2)), np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ValueError, match="numeric"):
        concordance_index(["a", "b"], [1, 0], [0.1, 0.2])


def survival_data(seed: int = 0, n: int = 450):
    """Risk informative about time, with a noisier second risk and ties."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    time = np.round(rng.exponential(np.exp(-x)), 2)
    event = rng.random(n) < 0.6
    risk_good = x + rng.normal(0, 0.5, n)
    risk_bad = np.round(x + rng.normal(0, 3.0, n), 1)
    return time, event, risk_good, risk_bad


def test_bootstrap_cindex_contains_estimate_and_is_deterministic():
    time, event, risk, _ = survival_data()
    res = bootstrap_cindex(time, event, risk, n_boot=500, seed=1)
    assert set(res) >= {"estimate", "ci_low", "ci_high", "n_boot", "n", "n_skipped"}
    assert res["estimate"] == concordance_index(time, event, risk)
    assert res["ci_low"] < res["estimate"] < res["ci_high"]
    assert res["n_boot"] == 500 and res["n"] == 450 and res["n_skipped"] == 0
    assert bootstrap_cindex(time, event, risk, n_boot=500, seed=1) == res
    assert bootstrap_cindex(time, event, risk, n_boot=500, seed=2) != res
    narrow = bootstrap_cindex(time, event, risk, n_boot=500, seed=1, alpha=0.5)
    assert res["ci_low"] < narrow["ci_low"] <= narrow["ci_high"] < res["ci_high"]


def test_bootstrap_replicates_equal_resampled_cindex():
    # The dense path (quadratic forms of pair matrices) must reproduce the C-index of the
    # explicitly resampled rows, duplicated rows included.
    time, event, risk_a, risk_b = survival_data(seed=5, n=120)
    idx = np.random.default_rng(9).integers(0, 120, size=(40, 120))
    c_dense, valid = metrics._bootstrap_cindices(time, event, [risk_a, risk_b], idx)
    assert valid.all()
    for b in range(40):
        rows = idx[b]
        assert c_dense[b, 0] == pytest.approx(
            concordance_index(time[rows], event[rows], risk_a[rows]), abs=1e-12
        )
        assert c_dense[b, 1] == pytest.approx(
            concordance_index(time[rows], event[rows], risk_b[rows]), abs=1e-12
        )


def test_bootstrap_dense_and_loop_paths_agree(monkeypatch):
    time, event, risk_a, risk_b = survival_data(seed=6, n=200)
    dense = bootstrap_cindex(time, event, risk_a, n_boot=100, seed=3)
    dense_paired = paired_bootstrap_difference(time, event, risk_a, risk_b, n_boot=100, seed=3)
    monkeypatch.setattr(metrics, "_DENSE_MAX_N", 0)
    loop = bootstrap_cindex(time, event, risk_a, n_boot=100, seed=3)
    loop_paired = paired_bootstrap_difference(time, event, risk_a, risk_b, n_boot=100, seed=3)
    assert loop == pytest.approx(dense, abs=1e-12)
    assert loop_paired == pytest.approx(dense_paired, abs=1e-12)


def test_bootstrap_skips_resamples_without_comparable_pairs():
    time = [1.0, 2.0, 3.0, 4.0, 5.0]
    event = [1, 0, 0, 0, 0]  # only resamples that contain row 0 and a later row are usable
    risk = [0.9, 0.1, 0.5, 0.3, 0.2]
    res = bootstrap_cindex(time, event, risk, n_boot=200, seed=0)
    assert 0 < res["n_skipped"] < 200
    assert res["estimate"] == 1.0 and res["ci_low"] == res["ci_high"] == 1.0
    with pytest.raises(ValueError, match="no comparable pairs"):
        bootstrap_cindex([1.0, 2.0], [0, 0], [0.1, 0.2], n_boot=10)


def test_paired_difference_with_itself_is_zero():
    time, event, risk, _ = survival_data()
    res = paired_bootstrap_difference(time, event, risk, risk.copy(), n_boot=300, seed=0)
    assert res["difference"] == 0.0
    assert res["ci_low"] == 0.0 and res["ci_high"] == 0.0
    assert res["p_value"] == 1.0
    assert res["n_boot"] == 300


def test_paired_difference_detects_better_model():
    time, event, good, bad = survival_data()
    res = paired_bootstrap_difference(time, event, good, bad, n_boot=500, seed=0)
    expected = concordance_index(time, event, good) - concordance_index(time, event, bad)
    assert res["difference"] == pytest.approx(expected, abs=1e-15)
    assert 0 < res["ci_low"] < res["difference"] < res["ci_high"]
    assert res["p_value"] < 0.01
    flipped = paired_bootstrap_difference(time, event, bad, good, n_boot=500, seed=0)
    assert flipped["difference"] == pytest.approx(-res["difference"], abs=1e-15)
    assert flipped["p_value"] == res["p_value"]
    assert paired_bootstrap_difference(time, event, good, bad, n_boot=500, seed=0) == res


def test_bootstrap_argument_checks():
    time, event, risk, _ = survival_data(n=50)
    with pytest.raises(ValueError, match="n_boot"):
        bootstrap_cindex(time, event, risk, n_boot=0)
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_cindex(time, event, risk, alpha=1.5)
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap_difference(time, event, risk, risk[:-1])
