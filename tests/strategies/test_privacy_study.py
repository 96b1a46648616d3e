"""experiments/privacy/summarize.py: the privacy study's table from results.json files (smoke + decisions)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location(
        "privacy_summarize", ROOT / "experiments/privacy/summarize.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write(path: Path, *, algorithm: str, seed: int, c: float, nodes=(), dp=None) -> None:
    path.mkdir(parents=True)
    final = {
        "c_index_test": {"estimate": c},
        "nodes": [{"c_index_test": {"estimate": x}} for x in nodes],
    }
    if dp:
        final["dp"] = dp
    res = {
        "config": {
            "use_case": {"name": "mds"},
            "strategy": {"algorithm": algorithm},
            "seed": {"split": seed},
        },
        "final": final,
        "rounds": [{}] * 30,
    }
    (path / "results.json").write_text(json.dumps(res))


@pytest.mark.parametrize(
    ("low", "high", "decision"),
    [
        (0.01, 0.05, "beats every node alone"),
        (-0.05, -0.01, "does not beat the best node alone"),
        (-0.01, 0.02, "not shown either way"),
    ],
)
def test_decisions_rest_on_the_interval_bounds(low, high, decision):
    assert _module().decide(low, high) == decision


def test_table_from_runs_pairs_each_seed_with_its_best_node_alone(tmp_path):
    dp = {"noise_multiplier": 1.0, "epsilon_pld": 40.0, "epsilon_rdp": 42.0, "delta": 1e-5}
    fedavg = [0.70, 0.72, 0.71]
    alone = [(0.60, 0.65), (0.62, 0.66), (0.61, 0.64)]  # best per seed: 0.65, 0.66, 0.64
    private = [0.60, 0.66, 0.63]
    for s in range(3):
        _write(tmp_path / f"plain/{s}_fedavg", algorithm="fedavg", seed=s, c=fedavg[s])
        _write(tmp_path / f"plain/{s}_local", algorithm="local", seed=s, c=0.0, nodes=alone[s])
        _write(tmp_path / f"dp/{s}", algorithm="fedavg", seed=s, c=private[s], dp=dp)
    module = _module()
    assert module.main([str(tmp_path)]) == 0
    rows = {r["arm"]: r for r in module.summarize(module.load_runs(tmp_path))}
    diffs = np.array(fedavg) - [0.65, 0.66, 0.64]  # 0.05, 0.06, 0.07
    assert rows["FedAvg"]["diff"] == pytest.approx(diffs.mean())
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert rows["FedAvg"]["diff_low"] == pytest.approx(diffs.mean() - half)
    assert rows["FedAvg"]["decision"] == "beats every node alone"
    assert rows["DP-FedAvg σ=1"]["epsilon_pld"] == 40.0
    assert rows["DP-FedAvg σ=1"]["decision"] == "not shown either way"  # diffs -0.05, 0, -0.01
    assert (tmp_path / "privacy.md").is_file() and (tmp_path / "privacy.png").is_file()


def _local_updates():
    spec = importlib.util.spec_from_file_location(
        "local_updates", ROOT / "experiments/strategies/local_updates.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_local_updates_table_pairs_seeds_and_counts_rounds_to_99(tmp_path):
    """experiments/strategies/local_updates.py on hand-made runs: paired differences and rounds to 99%."""
    module = _local_updates()
    curves = [0.60, 0.70, 0.745, 0.76]  # final 0.75 (selected round): 99% = 0.7425, first reached at round 3
    for s, (full, mb) in enumerate([(0.75, 0.73), (0.76, 0.739), (0.74, 0.721)]):
        for name, c, batch in (("full", full, None), ("mb", mb, 64)):
            path = tmp_path / f"{name}{s}"
            path.mkdir()
            client = {"batch_size": batch, "local_steps": 20 if batch else None, "local_epochs": 5}
            res = {
                "config": {
                    "use_case": {"name": "mds"},
                    "scenario": {"name": "best"},
                    "strategy": {"name": "fedavg", "client": client},
                    "seed": {"split": s},
                },
                "final": {"c_index_test": {"estimate": c}, "best_round": 4},
                "rounds": [{"round": r + 1, "c_index_test_global": v} for r, v in enumerate(curves)],
            }
            (path / "results.json").write_text(json.dumps(res))
    assert module.main([str(tmp_path)]) == 0
    rows = {r["arm"]: r for r in module.summarize(module.load(tmp_path))}
    mb = rows["FedAvg (minibatch 64 x 20 steps)"]
    diffs = np.array([-0.02, -0.021, -0.019])
    assert mb["diff"] == pytest.approx(diffs.mean())
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof) x standard error
    assert mb["diff_high"] == pytest.approx(diffs.mean() + half) and mb["diff_high"] < 0
    assert mb["decision"] == "worse than full-batch FedAvg"  # the whole interval is below 0
    assert rows["FedAvg (full batch)"]["rounds_to_99_median"] == 3  # 0.745 >= 0.99 * 0.75
    assert module.rounds_to_99([{"round": 1, "c_index_test_global": 0.5}], 0.9) is None
