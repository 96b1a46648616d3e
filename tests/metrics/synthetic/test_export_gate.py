"""The export's gate: one copied training row sits at distance 0 (DCR) with NNDR 0 and is refused."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.metrics.synthetic import impossible_values, privacy_metrics
from fedjax_rhd.metrics.synthetic.privacy import GowerEncoder, PrivacyThresholds, _nndr
from fedjax_rhd.synthetic_export import GateRefused, gate_failures


def _report(train, synthetic, holdout, guide):
    return {
        "privacy": privacy_metrics(train, synthetic, holdout, guide),
        "validity": impossible_values(synthetic, guide),
    }


def test_one_copied_training_row_is_flagged_by_dcr_and_nndr_and_refused(mds_split, mds_guide):
    train, holdout, unseen = mds_split
    leaky = pl.concat([unseen[:57], train[7:8], unseen[58:]])  # row 57 is training patient 7
    nearest = GowerEncoder(mds_guide, train, leaky).nearest(leaky, train, k=2)
    nndr = _nndr(nearest)
    # That row, and only that row, sits on a training patient: DCR 0 and NNDR 0.
    assert nearest[57, 0] == 0.0 and nndr[57] == 0.0
    assert (nearest[np.arange(200) != 57, 0] > 0).all() and (nndr[np.arange(200) != 57] > 0).all()
    report = _report(train, leaky, holdout, mds_guide)
    assert report["privacy"]["exact_copy_share"] == pytest.approx(1 / 200)
    failures = gate_failures(report, PrivacyThresholds())
    assert failures == [("exact_copy_share", pytest.approx(0.005), "<= 0")]
    assert (
        str(GateRefused(failures))
        == "privacy gate refused the export: exact_copy_share = 0.005 (limit: <= 0)"
    )


def test_patients_the_generator_never_saw_pass_and_impossible_values_do_not(mds_split, mds_guide):
    train, holdout, unseen = mds_split
    assert gate_failures(_report(train, unseen, holdout, mds_guide), PrivacyThresholds()) == []
    broken = unseen.with_columns(
        pl.when(pl.int_range(pl.len()) < 2).then(-1.0).otherwise(pl.col("time")).alias("time")
    )
    assert gate_failures(_report(train, broken, holdout, mds_guide), PrivacyThresholds()) == [
        ("validity.total", 2, "== 0 impossible values")
    ]


def test_a_missing_metric_or_a_minimum_fails_with_its_limit():
    report = {"privacy": {"exact_copy_share": 0.0, "dcr_closer_to_train_share": 0.5, "nndr_p05": 0.1}}
    report["validity"] = {"total": 0}
    strict = PrivacyThresholds(min_nndr_p05=0.2)
    assert gate_failures(report, strict) == [("mia_auc", None, "<= 0.6"), ("nndr_p05", 0.1, ">= 0.2")]
    assert "mia_auc = missing (limit: <= 0.6); nndr_p05 = 0.1 (limit: >= 0.2)" in str(
        GateRefused(gate_failures(report, strict))
    )
