"""Gene frequencies and co-mutation pairs: Fisher and Benjamini-Hochberg against references, by hand."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from fedjax_rhd.metrics.synthetic import genomics as gx
from tests.metrics.synthetic._toy import TOY_GUIDE, toy_table


def test_vectorised_fisher_equals_scipy():
    rng = np.random.default_rng(0)
    tables = rng.integers(0, 30, size=(300, 4))
    tables[:20, 0] = 0  # zero cells
    tables[20:25] = [5, 0, 0, 400]  # extreme co-occurrence
    ours = gx.fisher_exact_two_sided(*tables.T)
    ref = [stats.fisher_exact([[a, b], [c, d]]).pvalue for a, b, c, d in tables]
    assert ours == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_benjamini_hochberg_equals_statsmodels():
    p = np.random.default_rng(1).random(40) ** 3
    assert gx.benjamini_hochberg(p) == pytest.approx(multipletests(p, method="fdr_bh")[1], abs=1e-15)


def test_gene_frequencies_by_hand():
    real = toy_table(GENE_A=[1, 0, 0, None], GENE_B=[1, 1, 0, 0])
    syn = toy_table(GENE_A=[1, 1, 0, 0], GENE_B=[0, 0, 0, 0])
    res = gx.gene_frequencies(real, syn, TOY_GUIDE)
    assert res["genes"]["GENE_A"] == {"real": pytest.approx(1 / 3), "synthetic": 0.5}  # missing left out
    assert res["max_abs_diff"] == 0.5 and res["mean_abs_diff"] == pytest.approx((1 / 6 + 1 / 2) / 2)


def test_signed_pairs_on_a_hand_made_cohort():
    # A and B never together (mutual exclusivity), 40 carriers each in 200 rows.
    a = np.r_[np.ones(40), np.zeros(160)].astype(int)
    b = np.r_[np.zeros(40), np.ones(40), np.zeros(120)].astype(int)
    table = toy_table(GENE_A=a, GENE_B=b)
    assert gx.co_mutation_pairs(table, ["GENE_A", "GENE_B"]) == {("GENE_A", "GENE_B"): -1}
    together = toy_table(GENE_A=a, GENE_B=a)
    assert gx.co_mutation_pairs(together, ["GENE_A", "GENE_B"]) == {("GENE_A", "GENE_B"): 1}


def test_agreement_identical_and_shuffled(mds_split, mds_guide):
    train, _, _ = mds_split
    same = gx.co_mutation_agreement(train, train, mds_guide)
    assert same["significant_real"] > 0
    assert (same["recall"], same["precision"], same["jaccard"], same["sign_flips"]) == (1.0, 1.0, 1.0, 0)
    # Every gene shuffled on its own: frequencies kept, every co-mutation pattern gone.
    rng = np.random.default_rng(0)
    genes = [f.name for f in mds_guide.features if f.group == "genomic"]
    shuffled = train.with_columns(
        [pl.Series(g, train[g].to_numpy()[rng.permutation(train.height)]) for g in genes]
    )
    assert gx.gene_frequencies(train, shuffled, mds_guide)["max_abs_diff"] == pytest.approx(0.0, abs=0.02)
    broken = gx.co_mutation_agreement(train, shuffled, mds_guide)
    assert broken["recall"] < 0.5
