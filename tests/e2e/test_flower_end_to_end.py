"""``backend=flower`` through the experiment driver: the same results.json as the simulator."""

from __future__ import annotations

import numpy as np
import psutil
import pytest

from tests.conftest import TINY, run_in_process

# Flower's start-up (Ray, or a SuperLink and SuperNodes) costs tens of seconds on 2 cores: these
# run in the slow suite; the default suite keeps the backend-level simulation check and one
# deployment start/stop test (tests/federation/flower).
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def comparable(results: dict) -> dict:
    """What must not depend on the backend: every round, every final metric, the preprocessing."""
    return {key: results[key] for key in ("rounds", "final", "preprocessing", "nodes", "dataset")}


def flower_processes() -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(
            name in cmdline
            for name in ("flower-superlink", "flower-supernode", "flwr-clientapp", "flwr-serverapp")
        ):
            found.append(proc)
    return found


def test_flower_simulation_run_equals_the_simulator(tmp_path):
    """Sampling, fine-tuning and the survival metrics' node counts included: bit-identical results."""
    overrides = [*TINY, "strategy.sampling.fraction=0.67", "strategy.finetune_epochs=2"]
    sim = run_in_process([*overrides, "backend=simulator"], tmp_path / "sim", tmp_path / "data")
    flower = run_in_process([*overrides, "backend=flower"], tmp_path / "flower", tmp_path / "data")
    assert comparable(flower) == comparable(sim)
    assert flower["config"]["backend"]["name"] == "flower"
    assert flower["final"]["personalized"]["epochs"] == 2
    # what fedjax-rhd-score replays (the nodes' evaluation statistics) is the same under both backends
    with np.load(tmp_path / "sim" / "scoring.npz") as a, np.load(tmp_path / "flower" / "scoring.npz") as b:
        assert a.files == b.files and "breslow/node2_finetuned/events" in a.files
        for key in a.files:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_flower_deployment_run_equals_the_simulator_and_leaves_no_process(tmp_path):
    """SuperLink and SuperNodes as processes on loopback, each node reading only its own folder."""
    before = {p.pid for p in flower_processes()}
    overrides = [*TINY, "strategy.rounds=2", "model=coxph"]
    sim = run_in_process([*overrides, "backend=simulator"], tmp_path / "sim", tmp_path / "data")
    flower = run_in_process(
        [
            *overrides,
            "backend=flower",
            "backend.mode=deployment",
            f"backend.workdir={tmp_path / 'flower_work'}",
        ],
        tmp_path / "flower",
        tmp_path / "data",
    )
    assert comparable(flower) == comparable(sim)
    # each node's folder holds its own rows only: the run wrote one folder per node
    folders = sorted(p.name for p in (tmp_path / "flower_work" / "nodes").iterdir())
    assert folders == ["0", "1", "2"]
    assert {p.pid for p in flower_processes()} - before == set()


def test_resume_on_flower_equals_an_uninterrupted_simulator_run(tmp_path):
    """A Flower run stopped after 2 rounds and resumed to 3 ends where a 3-round simulator run ends."""
    sim = run_in_process([*TINY, "backend=simulator"], tmp_path / "sim", tmp_path / "data")
    short = [*TINY, "strategy.rounds=2", "backend=flower"]
    run_in_process(short, tmp_path / "flower", tmp_path / "data")
    resumed = run_in_process(
        [*TINY, "backend=flower", f"resume={tmp_path / 'flower'}"], tmp_path / "flower", tmp_path / "data"
    )
    assert resumed["rounds"] == sim["rounds"]
    assert resumed["final"] == sim["final"]


def largest_relative_difference(a: object, b: object) -> float:
    """Max |a - b| / max(|a|, 1e-12) over every float of two JSON trees of the same structure (else inf)."""
    if isinstance(a, dict) and isinstance(b, dict) and a.keys() == b.keys():
        return max((largest_relative_difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return max((largest_relative_difference(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) / max(abs(a), 1e-12)
    return 0.0 if a == b else float("inf")


def test_flower_runs_savae_on_the_worst_scenario_with_a_reduced_feature_group(tmp_path):
    """SAVAE, the worst scenario (nodes lack whole layers) and the WSI embedding reduced to principal
    components under Flower's simulation engine. SAVAE's loss compiles differently for one node than
    vmapped over three (XLA fuses its reductions differently), so it agrees to float32 rounding rather
    than bit for bit: measured 1.1e-7 relative at most."""
    overrides = [*TINY, "use_case=mds_wsi", "model=savae", "scenario=worst"]
    sim = run_in_process([*overrides, "backend=simulator"], tmp_path / "sim", tmp_path / "data")
    flower = run_in_process([*overrides, "backend=flower"], tmp_path / "flower", tmp_path / "data")
    assert largest_relative_difference(comparable(sim), comparable(flower)) < 1e-5
    assert flower["final"]["c_index_test"] == sim["final"]["c_index_test"]
    assert flower["scenario"]["name"] == "worst"
