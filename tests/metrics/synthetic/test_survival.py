"""Survival utility: Kaplan-Meier and log-rank against lifelines, the Cox fit against scikit-survival."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from lifelines import KaplanMeierFitter
from lifelines.statistics import logrank_test as lifelines_logrank
from lifelines.statistics import multivariate_logrank_test
from sksurv.linear_model import CoxPHSurvivalAnalysis
from sksurv.util import Surv

from fedjax_rhd.metrics.synthetic import survival as sv


def _cohort(seed: int, n: int = 150):
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 3, n)
    t = np.round(rng.exponential(1.0 / (1.0 + 0.5 * group)) * 4) / 4 + 0.25  # rounded: tied times
    c = np.round(rng.exponential(2.0, n) * 4) / 4 + 0.25
    return np.minimum(t, c), (t <= c).astype(float), group


def test_kaplan_meier_by_hand_and_against_lifelines():
    steps, surv = sv.kaplan_meier(np.array([1.0, 2, 2, 3, 4]), np.array([1, 1, 0, 1, 0]))
    # 5 at risk at t=1 (1 death), 4 at t=2 (1 death, 1 censored), 2 at t=3 (1 death).
    assert steps.tolist() == [1.0, 2.0, 3.0]
    assert surv == pytest.approx([4 / 5, 4 / 5 * 3 / 4, 4 / 5 * 3 / 4 * 1 / 2])
    t, e, _ = _cohort(0)
    steps, surv = sv.kaplan_meier(t, e)
    km = KaplanMeierFitter().fit(t, e)
    assert surv == pytest.approx(km.survival_function_at_times(steps).to_numpy(), abs=1e-12)


def test_logrank_equals_lifelines():
    t, e, g = _cohort(1)
    two = g < 2
    ours = sv.logrank_test(t[two], e[two], g[two])
    ref = lifelines_logrank(t[two & (g == 0)], t[two & (g == 1)], e[two & (g == 0)], e[two & (g == 1)])
    assert ours["statistic"] == pytest.approx(ref.test_statistic, rel=1e-10)
    assert ours["p_value"] == pytest.approx(ref.p_value, rel=1e-10)
    ours3 = sv.logrank_test(t, e, g)
    ref3 = multivariate_logrank_test(t, g, e)
    assert ours3["dof"] == 2
    assert ours3["p_value"] == pytest.approx(ref3.p_value, rel=1e-10)


def test_linear_cox_equals_scikit_survival():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 4))
    t = np.round(rng.exponential(np.exp(-x @ [0.8, -0.5, 0.0, 0.3])) * 10) / 10 + 0.1
    e = rng.random(200) < 0.7
    ours = sv.fit_linear_cox(x, t, e.astype(float), l2=0.5)
    ref = CoxPHSurvivalAnalysis(alpha=0.5, ties="breslow").fit(x, Surv.from_arrays(e, t))
    assert ours == pytest.approx(ref.coef_, abs=1e-6)


def test_km_comparison_and_tstr(mds_split, mds_guide):
    train, holdout, unseen = mds_split
    same = sv.km_comparison(train, train, mds_guide, "TP53")
    assert same["same_conclusion"] and same["logrank_real"] == same["logrank_synthetic"]
    assert all(v["max_gap"] == 0.0 for v in same["levels"].values())
    assert same["logrank_real"]["p_value"] < 0.05  # TP53 carries prognosis in the simulator
    tstr = sv.train_synthetic_test_real(train, train, holdout, mds_guide)
    assert tstr["difference"] == 0.0 and tstr["c_index_train_real"] > 0.65
    # Outcomes shuffled across patients: the features no longer predict anything on real rows.
    perm = np.random.default_rng(0).permutation(unseen.height)
    broken = unseen.with_columns(
        pl.Series("time", unseen["time"].to_numpy()[perm]),
        pl.Series("event", unseen["event"].to_numpy()[perm]),
    )
    bad = sv.train_synthetic_test_real(train, broken, holdout, mds_guide)
    assert abs(bad["c_index_train_synthetic"] - 0.5) < 0.1 and bad["difference"] < -0.1
    gap = sv.km_comparison(train, broken, mds_guide, "TP53")
    assert not gap["same_conclusion"] and max(v["max_gap"] for v in gap["levels"].values()) > 0.1


def test_linear_cox_terms_sum_to_the_tstr_risk_score(mds_split, mds_guide):
    """Per-column terms of the TSTR Cox: summed, the same C as train_synthetic_test_real; a column constant
    on the training table gets 0 on every test row; the names are numeric_matrix's."""
    from fedjax_rhd.metrics.concordance import concordance_index
    from fedjax_rhd.metrics.synthetic._columns import numeric_matrix

    train, holdout, _ = mds_split
    terms, names = sv.linear_cox_terms(train, holdout, mds_guide)
    assert (
        terms.shape == (holdout.height, len(names))
        and names == numeric_matrix(holdout, mds_guide.features)[1]
    )
    t, e = holdout["time"].to_numpy(), holdout["event"].to_numpy().astype(int)
    c = concordance_index(t, e, terms.sum(axis=1))
    assert c == pytest.approx(
        sv.train_synthetic_test_real(train, train, holdout, mds_guide)["c_index_train_real"]
    )
    flat = train.with_columns(pl.lit(1.0).alias("TP53"))  # constant: carries nothing, its term is 0
    terms_flat, _ = sv.linear_cox_terms(flat, holdout, mds_guide)
    assert np.all(terms_flat[:, names.index("TP53")] == 0.0) and np.any(terms_flat != 0.0)
