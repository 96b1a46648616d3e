"""Uno's C, time-dependent AUC and (integrated) Brier score against scikit-survival."""

from __future__ import annotations

import numpy as np
import pytest
from sksurv.metrics import (
    brier_score,
    concordance_index_ipcw,
    cumulative_dynamic_auc,
    integrated_brier_score,
)
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv

from fedjax_rhd.metrics import ipcw as sm


def _cohort(rng: np.random.Generator, n: int, rounding: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    # Rounded times force ties between deaths, censorings and both.
    t = np.round(rng.exponential(5.0, n) / rounding) * rounding + rounding
    c = np.round(rng.exponential(8.0, n) / rounding) * rounding + rounding
    return np.minimum(t, c), t <= c


def _censoring(train_time, train_event, grid, nodes: int = 3) -> sm.Censoring:
    # Nodes send counts on the shared grid; the manager sums them.
    parts = np.array_split(np.arange(len(train_time)), nodes)
    counts = sm.sum_counts([sm.grid_counts(train_time[p], train_event[p], grid) for p in parts])
    return sm.censoring_from_counts(counts, grid)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    tr_t, tr_e = _cohort(rng, 300)
    te_t, te_e = _cohort(rng, 120)
    keep = te_t <= tr_t.max()  # sksurv refuses test times past the training follow-up
    te_t, te_e = te_t[keep], te_e[keep]
    risk = rng.normal(size=len(te_t)) - 0.1 * te_t  # informative, with noise
    risk[:10] = risk[10:20]  # exact ties in risk
    grid = np.unique(tr_t)  # every distinct training time: exact reverse KM
    censoring = _censoring(tr_t, tr_e, grid)
    return tr_t, tr_e, te_t, te_e, risk, censoring


def test_censoring_km_by_hand():
    # times 1(d) 2(c) 2(d) 3(c) 4(d): at t=2 the death leaves first, so the
    # censoring at 2 sees 3 at risk; at t=3 one row (3c) of 2 at risk is censored.
    t = np.array([1.0, 2.0, 2.0, 3.0, 4.0])
    e = np.array([1, 0, 1, 0, 1])
    grid = np.array([1.0, 2.0, 3.0, 4.0])
    g = sm.censoring_from_counts(sm.grid_counts(t, e, grid), grid)
    np.testing.assert_allclose(g.survival, [1.0, 2 / 3, 2 / 3 * 1 / 2, 1 / 3])
    np.testing.assert_allclose(sm.censoring_at(g, [0.5, 2.5, 9.0]), [1.0, 2 / 3, 1 / 3])


def test_censoring_equals_sksurv(data):
    tr_t, tr_e, te_t, _, _, censoring = data
    ref = CensoringDistributionEstimator().fit(Surv.from_arrays(tr_e, tr_t))
    np.testing.assert_allclose(sm.censoring_at(censoring, te_t), ref.predict_proba(te_t), rtol=1e-12)


def test_node_counts_sum_to_pooled(data):
    tr_t, tr_e, *_ = data
    grid = sm.time_grid(tr_t.max(), 37)
    pooled = sm.grid_counts(tr_t, tr_e, grid)
    parts = np.array_split(np.random.default_rng(1).permutation(len(tr_t)), 4)
    summed = sm.sum_counts([sm.grid_counts(tr_t[p], tr_e[p], grid) for p in parts])
    for a, b in zip(pooled, summed, strict=True):
        np.testing.assert_array_equal(a, b)
    assert pooled.events.sum() == tr_e.sum() and pooled.reaching[0] == len(tr_t)


@pytest.mark.parametrize("tau", [None, 6.0])
def test_uno_c_equals_sksurv(data, tau):
    tr_t, tr_e, te_t, te_e, risk, censoring = data
    ours = sm.uno_c_index(te_t, te_e, risk, censoring, tau=tau)
    ref = concordance_index_ipcw(Surv.from_arrays(tr_e, tr_t), Surv.from_arrays(te_e, te_t), risk, tau=tau)[0]
    assert ours == pytest.approx(ref, rel=1e-12)


def test_td_auc_equals_sksurv(data):
    tr_t, tr_e, te_t, te_e, risk, censoring = data
    times = np.linspace(np.quantile(te_t, 0.1), np.quantile(te_t, 0.8), 9)
    y_tr, y_te = Surv.from_arrays(tr_e, tr_t), Surv.from_arrays(te_e, te_t)
    auc, mean = sm.cumulative_dynamic_auc(te_t, te_e, risk, times, censoring)
    ref_auc, ref_mean = cumulative_dynamic_auc(y_tr, y_te, risk, times)
    np.testing.assert_allclose(auc, ref_auc, rtol=1e-12)
    assert mean == pytest.approx(ref_mean, rel=1e-12)
    # Time-dependent risks (crossing curves), as SAVAE's Weibull heads give.
    risk_2d = risk[:, None] * np.cos(times / 3.0)[None, :]
    auc2, mean2 = sm.cumulative_dynamic_auc(te_t, te_e, risk_2d, times, censoring)
    ref_auc2, ref_mean2 = cumulative_dynamic_auc(y_tr, y_te, risk_2d, times)
    np.testing.assert_allclose(auc2, ref_auc2, rtol=1e-12)
    assert mean2 == pytest.approx(ref_mean2, rel=1e-12)


def test_brier_and_ibs_equal_sksurv(data):
    tr_t, tr_e, te_t, te_e, risk, censoring = data
    times = np.linspace(np.quantile(te_t, 0.1), np.quantile(te_t, 0.8), 9)
    surv = np.exp(-np.exp(risk)[:, None] * times[None, :] / 5.0)
    y_tr, y_te = Surv.from_arrays(tr_e, tr_t), Surv.from_arrays(te_e, te_t)
    ours = sm.brier_scores(te_t, te_e, surv, times, censoring)
    np.testing.assert_allclose(ours, brier_score(y_tr, y_te, surv, times)[1], rtol=1e-12)
    ibs = sm.integrated_brier_score(te_t, te_e, surv, times, censoring)
    assert ibs == pytest.approx(integrated_brier_score(y_tr, y_te, surv, times), rel=1e-12)


def test_brier_by_hand():
    # Two test rows, no censoring in training (G = 1): BS(t=2) = mean(S_1^2, (1 - S_2)^2).
    censoring = sm.Censoring(np.array([1.0, 5.0]), np.array([1.0, 1.0]))
    bs = sm.brier_scores(np.array([1.5, 3.0]), np.array([1, 1]), np.array([[0.3], [0.8]]), [2.0], censoring)
    assert bs[0] == pytest.approx((0.3**2 + 0.2**2) / 2)


def test_coarse_grid_is_close(data):
    # A coarse shared grid moves censorings to bin edges: close to, not equal to, the exact estimate.
    tr_t, tr_e, te_t, te_e, risk, censoring = data
    coarse = _censoring(tr_t, tr_e, sm.time_grid(tr_t.max(), 256))
    exact = sm.uno_c_index(te_t, te_e, risk, censoring)
    assert sm.uno_c_index(te_t, te_e, risk, coarse) == pytest.approx(exact, abs=0.01)


def test_evaluation_times_inside_test_follow_up(data):
    tr_t, tr_e, te_t, *_ = data
    grid = sm.time_grid(tr_t.max(), 128)
    times = sm.evaluation_times(sm.grid_counts(tr_t, tr_e, grid), grid, te_t)
    assert times[0] >= te_t.min() and times[-1] < te_t.max() and np.all(np.diff(times) > 0)


def test_bad_times_raise(data):
    _, _, te_t, te_e, risk, censoring = data
    with pytest.raises(ValueError, match="test follow-up"):
        sm.cumulative_dynamic_auc(te_t, te_e, risk, [te_t.max() + 1.0], censoring)
