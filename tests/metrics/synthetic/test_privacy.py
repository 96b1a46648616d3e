"""Privacy: Gower distances by hand, copied rows flagged by DCR / NNDR / membership AUC, the gate."""

from __future__ import annotations

import math

import polars as pl
import pytest

from fedjax_rhd.metrics.synthetic.privacy import (
    GowerEncoder,
    PrivacyThresholds,
    privacy_gate,
    privacy_metrics,
)
from tests.metrics.synthetic._toy import TOY_GUIDE, toy_table

TRAIN = toy_table(
    hb=[10.0, 12.0, 14.0],
    GENE_A=[0, 1, 0],
    GENE_B=[0, 0, 1],
    cyto=["good", "poor", None],
    time=[1.0, 2.0, 3.0],
    event=[1, 0, 1],
)


def test_gower_distances_by_hand():
    query = toy_table(hb=[11.0], GENE_A=[0], GENE_B=[0], cyto=["good"], time=[1.0], event=[1])
    enc = GowerEncoder(TOY_GUIDE, TRAIN, query)
    # Six columns (hb, GENE_A, GENE_B, cyto, time, event); hb's training range is 4; time is
    # compared on log1p, range log(4) - log(2) = log 2.
    row0 = 0.25 / 6
    row1 = (0.25 + 1 + 1 + math.log(3 / 2) / math.log(2) + 1) / 6
    row2 = (0.75 + 0 + 1 + 1 + 1 + 0) / 6  # cyto "good" vs missing counts 1; time log(4/2)/log 2 = 1
    assert enc.nearest(query, TRAIN, k=3)[0] == pytest.approx(sorted([row0, row1, row2]), abs=1e-12)


def test_missing_equals_missing_and_differs_from_observed():
    a = toy_table(hb=[None], GENE_A=[None], GENE_B=[0], cyto=[None], time=[1.0], event=[1])
    b = toy_table(hb=[None], GENE_A=[1], GENE_B=[0], cyto=[None], time=[1.0], event=[1])
    enc = GowerEncoder(TOY_GUIDE, TRAIN, a, b)
    assert enc.nearest(a, a)[0, 0] == 0.0
    assert enc.nearest(a, b)[0, 0] == pytest.approx(1 / 6)


def test_copied_training_rows_are_flagged_and_refused(mds_split, mds_guide):
    train, holdout, _ = mds_split
    res = privacy_metrics(train, train, holdout, mds_guide)
    assert res["exact_copy_share"] == 1.0 and res["exact_copy_share_baseline"] == 0.0
    assert res["dcr_median"] == 0.0 < res["dcr_baseline_p05"]
    assert res["nndr_p05"] == 0.0 < res["nndr_baseline_p05"]
    assert res["mia_auc"] == 1.0  # every member sits on a synthetic row, no non-member does
    passed, failing = privacy_gate({"privacy": res})
    assert not passed
    assert failing == ["exact_copy_share", "dcr_closer_to_train_share", "mia_auc"]


def test_a_generator_that_never_saw_the_training_rows_passes(mds_split, mds_guide):
    train, holdout, unseen = mds_split
    res = privacy_metrics(train, unseen, holdout, mds_guide)
    assert res["exact_copy_share"] == 0.0
    assert 0.35 < res["dcr_closer_to_train_share"] < 0.65
    assert 0.4 < res["mia_auc"] < 0.6
    # Its rows sit as far from the training rows as real holdout patients do.
    assert res["dcr_median"] == pytest.approx(res["dcr_baseline_median"], rel=0.2)
    assert privacy_gate(res) == (True, [])


def test_partial_copies_are_counted_exactly(mds_split, mds_guide):
    train, holdout, unseen = mds_split
    leaky = pl.concat([train[:30], unseen[30:]])
    res = privacy_metrics(train, leaky, holdout, mds_guide)
    assert res["exact_copy_share"] == pytest.approx(30 / 200)
    assert privacy_gate(res)[1] == ["exact_copy_share"]


def test_subsampling_bounds_the_rows_compared(mds_split, mds_guide):
    train, holdout, unseen = mds_split
    res = privacy_metrics(train, unseen, holdout, mds_guide, max_rows=150, seed=3)
    assert (res["n_train"], res["n_synthetic"], res["n_holdout"]) == (150, 150, 150)


def test_gate_rules():
    block = {"exact_copy_share": 0.0, "dcr_closer_to_train_share": 0.5, "mia_auc": 0.61, "nndr_p05": 0.2}
    assert privacy_gate(block) == (False, ["mia_auc"])
    assert privacy_gate(block, PrivacyThresholds(max_mia_auc=None)) == (True, [])
    assert privacy_gate(block, PrivacyThresholds(max_mia_auc=0.7, min_nndr_p05=0.3)) == (False, ["nndr_p05"])
    # A metric the report lacks, or a NaN written as None, fails: the gate never passes by default.
    assert privacy_gate({"mia_auc": None, "exact_copy_share": 0.0, "dcr_closer_to_train_share": 0.5}) == (
        False,
        ["mia_auc"],
    )
    assert privacy_gate({"privacy": {}})[1] == ["exact_copy_share", "dcr_closer_to_train_share", "mia_auc"]
