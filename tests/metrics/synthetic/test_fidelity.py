"""Statistical fidelity: hand-computed KS / TV / chi-square, identical tables, a shuffled column."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats
from scipy.stats.contingency import association

from fedjax_rhd.metrics.synthetic import fidelity as fid
from tests.metrics.synthetic._toy import TOY_GUIDE, toy_table

REAL = toy_table(
    hb=[1.0, 2.0, 3.0, 4.0], GENE_A=[0, 0, 1, 1], GENE_B=[0, 1, 0, 1], cyto=["good", "good", "poor", None]
)
SYN = toy_table(
    hb=[3.0, 4.0, 5.0, 6.0], GENE_A=[1, 1, 1, 0], GENE_B=[1, 1, 0, 0], cyto=["good", "poor", "poor", "bad"]
)


def test_ks_by_hand_ignores_missing_and_equals_scipy():
    # F_real - F_syn reaches 1/2 at x = 2 (2/4 vs 0/4) and stays there to x = 4 (4/4 vs 2/4).
    assert fid.ks_statistic(np.array([1.0, 2, 3, 4]), np.array([3.0, 4, 5, 6, np.nan])) == 0.5
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=57).round(1), rng.normal(0.3, size=43).round(1)  # ties across samples
    assert fid.ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic, abs=1e-15)


def test_column_shapes_by_hand():
    shapes = fid.column_shapes(REAL, SYN, TOY_GUIDE)
    assert shapes["hb"] == {"metric": "ks", "distance": 0.5, "score": 0.5}
    # GENE_A: real (1/2, 1/2), synthetic (1/4, 3/4) -> TV 1/4.
    assert shapes["GENE_A"]["distance"] == pytest.approx(0.25)
    # cyto, observed values only: real good 2/3, poor 1/3; synthetic good 1/4, poor 1/2 and an
    # impossible "bad" 1/4 -> TV = (5/12 + 2/12 + 3/12) / 2 = 5/12.
    assert shapes["cyto"]["metric"] == "tv"
    assert shapes["cyto"]["distance"] == pytest.approx(5 / 12)


def test_chi_square_by_hand():
    # GENE_A counts real (2, 2), synthetic (1, 3); expected (1.5, 2.5) per row -> chi2 = 8/15.
    res = fid.chi_square(REAL, SYN, TOY_GUIDE.feature("GENE_A"))
    assert res["statistic"] == pytest.approx(8 / 15)
    assert res["dof"] == 1
    assert res["p_value"] == pytest.approx(stats.chi2.sf(8 / 15, 1))


def test_pair_trend_by_hand():
    # Real (A, B) cells 1/4 each; synthetic (1,1) 1/2, (1,0) 1/4, (0,0) 1/4 -> TV 1/4.
    res = fid.pair_trend(REAL, SYN, TOY_GUIDE.feature("GENE_A"), TOY_GUIDE.feature("GENE_B"))
    assert res["metric"] == "contingency"
    assert res["score"] == pytest.approx(0.75)
    assert res["real_cramers_v"] == pytest.approx(0.0)  # independent cells in the real table


def test_missingness_by_hand():
    res = fid.missingness(REAL, SYN, TOY_GUIDE.feature("cyto"))
    assert res == {"real": 0.25, "synthetic": 0.0, "score": 0.75}


def test_cramers_v_and_pairwise_correlation_equal_references():
    rng = np.random.default_rng(1)
    table = rng.integers(0, 30, size=(3, 4))
    assert fid.cramers_v(table) == pytest.approx(association(table, method="cramer"), abs=1e-12)
    x = rng.normal(size=(50, 3))
    x[:, 1] += x[:, 0]
    x[rng.random((50, 3)) < 0.2] = np.nan
    corr = fid.pairwise_correlation(x)
    both = ~np.isnan(x[:, 0]) & ~np.isnan(x[:, 1])
    assert corr[0, 1] == pytest.approx(np.corrcoef(x[both, 0], x[both, 1])[0, 1], abs=1e-12)


def test_identical_tables_have_perfect_fidelity(mds_split, mds_guide):
    train, _, _ = mds_split
    shapes = fid.column_shapes(train, train, mds_guide)
    assert all(v["score"] == 1.0 for v in shapes.values())
    details = fid.pair_details(train, train, mds_guide)
    assert fid.pair_trends(details)["score"] == 1.0
    assert fid.clinical_fidelity_score(train, train, mds_guide, details) == 1.0
    assert fid.genomic_fidelity_score(train, train, mds_guide, details) == 1.0
    assert fid.association_difference(train, train, mds_guide)["max_abs_diff"] == 0.0
    assert fid.chi_square(train, train, mds_guide.feature("ipssr_cyto"))["p_value"] == pytest.approx(1.0)


def test_shuffling_a_column_breaks_its_pairs_not_its_marginal(mds_split, mds_guide):
    train, _, _ = mds_split
    perm = np.random.default_rng(0).permutation(train.height)
    shuffled = train.with_columns(pl.Series("TP53", train["TP53"].to_numpy()[perm]))
    assert fid.column_shape(train, shuffled, mds_guide.feature("TP53"))["score"] == 1.0
    details = fid.pair_details(train, shuffled, mds_guide)
    tp53 = [v["score"] for k, v in details.items() if "TP53" in k.split("|")]
    others = [v["score"] for k, v in details.items() if "TP53" not in k.split("|")]
    assert others == [1.0] * len(others)  # nothing else moved
    assert max(tp53) <= 1.0 and np.mean(tp53) < 1.0
    # TP53 multi-hit implies TP53: the strongest pair of the table loses most.
    assert details["TP53|TP53multi"]["score"] < 0.95
    assert fid.association_difference(train, shuffled, mds_guide)["max_abs_diff"] > 0.3
    # TP53 is genomic: the genomic score drops, the clinical one does not.
    assert fid.clinical_fidelity_score(train, shuffled, mds_guide, details) == 1.0
    assert fid.genomic_fidelity_score(train, shuffled, mds_guide, details) < 1.0
    thresholded = fid.pair_trends(details, real_correlation_threshold=0.5, real_association_threshold=0.3)
    assert thresholded["score"] < fid.pair_trends(details)["score"] < 1.0
