"""DeepSurv train-on-synthetic / test-on-real: learns real risk, learns nothing from broken outcomes."""

from __future__ import annotations

import numpy as np
import polars as pl

from fedjax_rhd.metrics.synthetic.tstr_deepsurv import DeepSurvTSTR, train_synthetic_test_real_deepsurv


def test_outcomes_detached_from_the_features_teach_nothing(mds_split, mds_guide):
    train, holdout, _ = mds_split
    rng = np.random.default_rng(0)
    order = rng.permutation(train.height)
    # every row keeps its features but gets another patient's (time, event): no feature predicts risk
    detached = train.with_columns(
        pl.Series("time", train["time"].to_numpy()[order]),
        pl.Series("event", train["event"].to_numpy()[order]),
    )
    out = train_synthetic_test_real_deepsurv(train, detached, holdout, mds_guide, DeepSurvTSTR(max_steps=200))
    assert out["c_index_train_real"] > 0.62  # the simulated MDS risk is learnable from 400 rows
    assert abs(out["c_index_train_synthetic"] - 0.5) < 0.08
    assert out["difference"] == out["c_index_train_synthetic"] - out["c_index_train_real"] < -0.1
