"""Detection: can a classifier tell synthetic rows from real ones?

The classifier two-sample test (Lopez-Paz & Oquab 2017, "Revisiting classifier two-sample tests",
ICLR): label real rows 1 and synthetic rows 0, train a classifier and measure its cross-validated
ROC AUC. An AUC near 0.5 means the two tables are indistinguishable to that classifier; near 1,
every synthetic row gives itself away. The score follows SDMetrics' ``LogisticDetection``
(``1 - mean_folds(2 * max(AUC, 0.5) - 1)``, 1 = undetectable) so that the two can be read side by
side; SDMetrics shuffles its folds without a seed, ours are seeded.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from fedjax_rhd.metrics.synthetic._columns import EVENT, TIME, numeric_matrix
from harmonize.guide import Guide

Classifier = Literal["logistic", "boosting"]


def _with_outcome(table: pl.DataFrame, guide: Guide) -> np.ndarray:
    x, _ = numeric_matrix(table, guide.features)
    # The outcome is part of a synthetic patient: a generator that gets survival wrong must be detectable.
    t = table.get_column(TIME).cast(pl.Float64, strict=False).fill_nan(None).to_numpy().astype(float)
    e = table.get_column(EVENT).cast(pl.Float64, strict=False).fill_nan(None).to_numpy().astype(float)
    return np.column_stack([x, np.log1p(np.clip(t, 0.0, None)), e])


def _model(classifier: Classifier, seed: int) -> object:
    # scikit-learn is imported here, not with the module: every run imports this package (the
    # synthetic-data gate), only a generative run's validation fits a classifier.
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import RobustScaler

    if classifier == "logistic":
        # Missing values: mean-imputed plus an indicator per column with gaps, so that a
        # generator that misplaces missingness is detectable too. RobustScaler (SDMetrics' choice)
        # leaves a rare binary column unscaled (its IQR is 0); standardising would blow a 1%
        # gene up to a large scale, on which the classifier fits noise.
        return make_pipeline(
            SimpleImputer(add_indicator=True),
            RobustScaler(),
            # Newton steps on this convex problem: 2-3 iterations where L-BFGS took 50 (10x faster).
            LogisticRegression(solver="newton-cholesky", max_iter=100),
        )
    if classifier == "boosting":
        return HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    raise ValueError(f"unknown classifier {classifier!r}; expected 'logistic' or 'boosting'")


def detection_metrics(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    guide: Guide,
    *,
    classifier: Classifier = "logistic",
    n_splits: int = 5,
    seed: int = 0,
) -> dict[str, float | str]:
    """Cross-validated AUC of a classifier separating real (1) from synthetic (0) rows.

    Args:
        real: real rows in the guide's schema (with ``time`` and ``event``).
        synthetic: synthetic rows in the same schema.
        guide: the feature schema (features encoded as in :func:`numeric_matrix`).
        classifier: ``logistic`` (robust-scaled logistic regression, SDMetrics' choice) or
            ``boosting`` (histogram gradient boosting: catches non-linear differences).
        n_splits: stratified folds.
        seed: the folds' shuffle (and the booster's) seed.

    Returns:
        ``{"classifier", "auc"`` (mean over folds), ``"auc_folds_min"``, ``"auc_folds_max"``,
        ``"score"`` (``1 - mean(2 * max(AUC, 0.5) - 1)``, 1 = undetectable)``}``.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    x = np.vstack([_with_outcome(real, guide), _with_outcome(synthetic, guide)])
    y = np.concatenate([np.ones(real.height), np.zeros(synthetic.height)])
    # A column missing everywhere carries nothing and would be dropped by the imputer anyway.
    x = x[:, ~np.isnan(x).all(axis=0)]
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    aucs = []
    for train, test in folds.split(x, y):
        model = _model(classifier, seed)
        model.fit(x[train], y[train])
        aucs.append(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))
    aucs = np.asarray(aucs)
    return {
        "classifier": classifier,
        "auc": float(aucs.mean()),
        "auc_folds_min": float(aucs.min()),
        "auc_folds_max": float(aucs.max()),
        "score": float(1.0 - np.mean(2.0 * np.maximum(aucs, 0.5) - 1.0)),
    }
