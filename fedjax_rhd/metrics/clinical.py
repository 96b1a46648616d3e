"""The clinical score of a run, on exactly the model's test rows (ARCHITECTURE §5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import polars as pl

from fedjax_rhd.metrics.concordance import bootstrap_cindex


def scores_on_test(scores: pl.DataFrame, test_patient_ids: Sequence[str]) -> pl.DataFrame:
    """Score columns in the test set's (time-sorted) row order; ``null`` where not computable.

    Raises:
        ValueError: a test patient has no row in ``scores``.
    """
    order = pl.DataFrame({"patient_id": list(test_patient_ids)}).with_row_index("_row")
    joined = order.join(scores, on="patient_id", how="left")
    if joined.height != order.height:
        raise ValueError("clinical scores: duplicate patient_id in the score table")
    absent = set(test_patient_ids) - set(scores["patient_id"].to_list())
    if absent:
        raise ValueError(f"clinical scores: no score row for test patient(s) {sorted(absent)[:5]}")
    return joined.sort("_row").drop("_row")


def clinical_score_result(
    name: str,
    score: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    model_risk: np.ndarray,
    *,
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """``final.clinical_score``: the score's C-index on the test rows it can score.

    Args:
        name: e.g. ``"IPSS-M"``.
        score: f64[n] continuous score per test row (higher = worse), ``NaN`` where missing.
        time, event: the test rows' outcome, same order.
        model_risk: the run's main model risk on the same rows.
        n_boot, seed: bootstrap resamples and seed.

    Returns:
        ``{"name", "c_index_test", "n_scored", "model_c_index_test_scored_rows"}``; the
        last is the model on exactly the scored rows, so the two are comparable.
    """
    scored = ~np.isnan(score)
    t, e = time[scored], event[scored]
    return {
        "name": name,
        "c_index_test": bootstrap_cindex(t, e, score[scored], n_boot=n_boot, seed=seed),
        "n_scored": int(scored.sum()),
        "model_c_index_test_scored_rows": bootstrap_cindex(
            t, e, model_risk[scored], n_boot=n_boot, seed=seed
        ),
    }
