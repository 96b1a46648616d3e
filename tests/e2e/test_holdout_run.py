"""A leave-one-centre-out run end to end: the held-out centre is the test set, and the score command
scoring the run's test rows (``--rows run-test``) reproduces the run's own numbers.

The data-level checks (exact rows, refusals, results.json's block) are fast: tests/data/test_holdout.py.
"""

from __future__ import annotations

import polars as pl
import pytest

from fedjax_rhd.config import run_config
from fedjax_rhd.score.cli import score
from fedjax_rhd.sources import load_use_case
from tests.conftest import TINY, compose, run_in_process

pytestmark = pytest.mark.e2e

DIALECTS = ["use_case=mds_dialects", "use_case.n_patients=600", "split=natural"]


@pytest.mark.slow  # ~50 s: a three-centre cohort through its dialect exports, one run, one score
def test_loco_run_tests_on_the_held_out_centre_and_the_score_command_reproduces_it(tmp_path):
    data_root = tmp_path / "data"
    run_dir = tmp_path / "run"
    results = run_in_process([*TINY, *DIALECTS, "split.holdout_centre=centreB"], run_dir, data_root)
    use_case = run_config(compose(DIALECTS)).use_case
    cohort = load_use_case(use_case, seed_data=0, data_root=data_root, real_data_root=None, progress=False)
    held = cohort.table.filter(pl.col("centre") == "B")
    assert results["dataset"]["holdout"] == {
        "centre": "B", "n_rows": held.height, "n_events": int(held["event"].sum())
    }  # fmt: skip
    assert results["config"]["split"]["holdout_centre"] == "centreB"
    assert results["final"]["test_set"] == "benchmark_holdout"
    assert sorted(n["name"] for n in results["nodes"]) == ["centreA", "centreC"]
    assert sum(n["n_train"] + n["n_val"] for n in results["nodes"]) == cohort.table.height - held.height
    predictions = pl.read_parquet(run_dir / "test_predictions.parquet")
    assert sorted(predictions["patient_id"]) == sorted(held["patient_id"])

    doc = score(run_dir, results["dataset"]["name"], data_root=data_root, rows="run-test", plots=False)
    main = next(m for m in doc["models"] if m["main"])
    assert main["name"] == "global" and doc["rows"]["n"] == held.height
    assert main["c_index"] == results["final"]["c_index_test"]  # estimate and interval, exactly
