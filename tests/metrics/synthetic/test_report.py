"""validation_report: JSON-able, perfect on identical tables, counts impossible values; the gate reads it."""

from __future__ import annotations

import json

import polars as pl

from fedjax_rhd.metrics.synthetic import (
    PrivacyThresholds,
    ValidationSettings,
    privacy_gate,
    validation_report,
)


def test_report_on_an_ideal_and_a_copying_generator(mds_split, mds_guide):
    train, holdout, unseen = mds_split
    settings = ValidationSettings(seed=1)
    # Real patients the generator never saw, but 7 of them with a negative survival time.
    flawed = unseen.with_columns(
        pl.when(pl.int_range(pl.len()) < 7).then(-pl.col("time")).otherwise(pl.col("time")).alias("time")
    )
    good = validation_report(train, flawed, holdout, mds_guide, settings)
    json.dumps(good, allow_nan=False)  # every number finite or None
    assert set(good) == {"n", "fidelity", "utility", "privacy", "validity", "settings", "versions"}
    assert good["n"] == {"real_train": 400, "synthetic": 200, "holdout": 200}
    assert 0.85 < good["fidelity"]["csf"] < 1.0 and 0.85 < good["fidelity"]["gsf"] < 1.0
    assert good["fidelity"]["pair_trends_sdmetrics_thresholds"]["thresholds"] == {
        "correlation": 0.5,
        "association": 0.3,
    }
    assert set(good["utility"]["kaplan_meier"]) == {"TP53", "ipssr_cyto"}
    assert set(good["utility"]["kaplan_meier"]["TP53"]["levels"]) == {"0", "1"}
    assert good["validity"]["time_not_positive"] == good["validity"]["total"] == 7
    assert privacy_gate(good) == (True, [])

    copy = validation_report(train, train, holdout, mds_guide, settings)
    assert copy["fidelity"]["csf"] == copy["fidelity"]["gsf"] == 1.0
    assert copy["fidelity"]["column_shapes"]["score"] == copy["fidelity"]["pair_trends"]["score"] == 1.0
    assert copy["utility"]["tstr"]["difference"] == 0.0
    # the same rows, the same seed: the same DeepSurv fit, to the bit
    assert copy["utility"]["tstr_deepsurv"]["difference"] == 0.0
    assert 0.6 < good["utility"]["tstr_deepsurv"]["c_index_train_real"] < 1.0
    assert copy["utility"]["co_mutation"]["jaccard"] == 1.0
    # Perfect fidelity is exactly what the gate must refuse.
    assert privacy_gate(copy, PrivacyThresholds())[0] is False
