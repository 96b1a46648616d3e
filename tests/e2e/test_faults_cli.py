"""Faults end to end: what happened is in results.json; too few nodes stops the CLI clearly."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fedjax_rhd.federation.run_state import CHECKPOINT_NAME
from fedjax_rhd.results import validate_results
from tests.conftest import TINY, run_in_process
from tests.e2e.test_end_to_end import _results

pytestmark = pytest.mark.e2e


def test_failures_time_limit_and_finetuning_are_recorded(tmp_path, tiny_data_root):
    overrides = [
        *TINY,
        "backend.failures.down=[{node: node3, from_round: 1}]",  # fails every round
        "backend.time_limit=2.0",
        "backend.timing.seconds_per_row=1e-3",
        "backend.timing.slowdown=[{node: node2, factor: 50}]",
        "strategy.finetune_epochs=3",
    ]
    res = run_in_process(overrides, tmp_path / "run", tiny_data_root)
    validate_results(res)
    for record in res["rounds"]:
        p = record["participation"]
        assert p["failed"] == ["node3"] and p["timed_out"] == ["node2"] and p["aggregated"] == ["node1"]
        assert record["train_loss"][0] is not None and record["train_loss"][1:] == [None, None]
        # node2: rows × 2 epochs × 1e-3 s × 50 is far over the 2 s limit
        assert p["simulated_seconds"][1] > 2.0 > p["simulated_seconds"][0]
    assert res["final"]["participation"]["node3"] == {
        "sampled": 3,
        "failed": 3,
        "timed_out": 0,
        "aggregated": 0,
    }
    tuned = res["final"]["personalized"]
    assert tuned["epochs"] == 3 and [n["name"] for n in tuned["nodes"]] == ["node1", "node2", "node3"]


def test_too_few_nodes_stops_with_message_and_checkpoint(tmp_path, tiny_data_root):
    import subprocess
    import sys

    env_args = [*TINY, "strategy.min_nodes=3", "backend.failures.down=[{node: node2, from_round: 2}]"]
    proc = subprocess.run(
        [sys.executable, "-m", "fedjax_rhd", *env_args, f"hydra.run.dir={tmp_path / 'run'}"],
        env={**__import__("os").environ, "FEDJAX_RHD_DATA_ROOT": str(tiny_data_root)},
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    assert (
        "round 2: 2 node(s) returned (node2 failed or timed out), fewer than strategy.min_nodes=3"
        in proc.stderr
    )
    assert f"resume={tmp_path / 'run'}" in proc.stderr
    with np.load(tmp_path / "run" / CHECKPOINT_NAME) as archive:
        assert json.loads(str(archive["meta"]))["round"] == 1
    assert not (tmp_path / "run" / "results.json").exists()
    # usable: resuming with a relaxed policy finishes the run
    resume = [*env_args, "strategy.min_nodes=2", f"resume={tmp_path / 'run'}"]
    run_in_process(resume, tmp_path / "run", tiny_data_root)
    (res,) = _results(tmp_path / "run")
    assert [r["participation"]["aggregated"] for r in res["rounds"]] == [
        ["node1", "node2", "node3"],
        ["node1", "node3"],
        ["node1", "node3"],
    ]
