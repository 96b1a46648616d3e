"""Hand-made run directories for the report tests: valid results.json + test_predictions.parquet."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from fedjax_rhd.metrics.concordance import concordance_index

# Eight test patients, all deaths at distinct times: 28 comparable pairs, so Harrell's C of
# a risk is (concordant pairs) / 28 and the numbers below are exact fractions.
TIME = np.arange(1.0, 9.0)
EVENT = np.ones(8)
PERFECT = -TIME  # higher risk dies earlier: C = 28/28
REVERSED = TIME.copy()  # C = 0/28


def swapped(k: int) -> np.ndarray:
    """PERFECT with the first k adjacent pairs (0,1), (2,3), ... swapped: C = (28 - k) / 28."""
    r = PERFECT.copy()
    for i in range(k):
        r[2 * i], r[2 * i + 1] = r[2 * i + 1], r[2 * i]
    return r


def _ci(risk: np.ndarray | None) -> dict | None:
    if risk is None:
        return None
    c = concordance_index(TIME, EVENT, risk)
    return {"estimate": c, "ci_low": max(c - 0.1, 0.0), "ci_high": min(c + 0.1, 1.0), "n_boot": 10}


def write_run(
    root: Path,
    strategy: str,
    seed: int,
    risks: dict[str, np.ndarray],
    *,
    main: np.ndarray | None = None,
    shares: tuple[float, ...] | None = None,
    oracle: np.ndarray | None = PERFECT,
    clinical: np.ndarray | None = None,
    clinical_in_predictions: bool = True,
    use_case: str = "mds",
    split: str = "three",
    extra_config: dict | None = None,
) -> Path:
    """Write one run directory; ``risks`` maps node name -> that node's test risks."""
    out = root / f"{use_case}_{split}_{strategy}_s{seed}"
    out.mkdir(parents=True)
    names = list(risks)
    shares = shares or ((1.0,) if len(names) == 1 else (0.6, 0.3, 0.1))
    if main is None:
        main = risks[names[0]]
    config = {
        "use_case": {"name": use_case},
        "split": {"name": split},
        "scenario": {"name": "best"},
        "model": {"name": "deepsurv", "hidden": [8]},
        "strategy": {"name": strategy, "label": {"fedavg": "FedAvg"}.get(strategy, ""), "rounds": 2},
        "backend": {"name": "simulator"},
        "tracker": {"name": "none"},
        "seed": {"data": 0, "split": seed, "init": 0, "train": 0},
        **(extra_config or {}),
    }
    fl = strategy not in ("local", "centralized")
    final = {
        "c_index_test": _ci(main),
        "best_round": 2,
        "rounds_run": 2,
        "global_model": {"c_index_test": _ci(main)} if fl else None,
        "nodes": [
            {"name": n, "n_train": 10, "n_val": 2, "share": s, "c_index_test": _ci(risks[n])}
            for n, s in zip(names, shares, strict=True)
        ],
        "oracle_c_index_test": _ci(oracle),
        "clinical_score": None if clinical is None else {"name": "IPSS-M", "c_index_test": _ci(clinical)},
        "ibs_test": None,
    }
    rounds = [
        {
            "round": r,
            "train_loss": [1.0] * len(names),
            "val_loss": [1.0] * len(names),
            "val_loss_federated": 1.0,
            "c_index_test_nodes": [0.5 + 0.1 * r + 0.01 * i for i in range(len(names))],
            **({"c_index_test_global": 0.55 + 0.1 * r} if fl else {}),
        }
        for r in (1, 2)
    ]
    results = {
        "config": config,
        "dataset": {"id": "ds-0123456789abcdef", "name": "sim", "n_rows": 100, "n_events": 50},
        "nodes": [
            {"name": n, "n_train": 10, "n_val": 2, "fraction": s} for n, s in zip(names, shares, strict=True)
        ],
        "rounds": rounds,
        "final": final,
        "timing": {
            "total_seconds": 1.0,
            "compile_seconds": 0.5,
            "round_seconds": [0.1, 0.1],
            "round_compilations": 1,
        },
        "env": {"git_sha": None, "jax_backend": "cpu", "packages": {}},
        "checkpoint": "params.npz",
    }
    (out / "results.json").write_text(json.dumps(results))
    columns = {
        "patient_id": [f"p{i}" for i in range(len(TIME))],
        "time": TIME,
        "event": EVENT,
        "risk": main,
        **{f"risk_{n}": risks[n] for n in names},
    }
    if oracle is not None:
        columns["oracle_risk"] = oracle
    if clinical is not None and clinical_in_predictions:
        columns["clinical_score"] = clinical
    pl.DataFrame(columns).write_parquet(out / "test_predictions.parquet")
    return out


def _validation(csf: float, gsf: float) -> dict:
    return {
        "reference": "federation_training_rows", "privacy_members": "federation_training_rows",
        "n_real_train": 30, "n_holdout": 10, "report": "validation_report.json", "csf": csf, "gsf": gsf,
        "quality_sdmetrics_style": 0.9, "detection_auc": 0.6, "detection_score": 0.8,
        "tstr_difference": -0.01, "exact_copy_share": 0.0, "dcr_closer_to_train_share": 0.5,
        "nndr_p05": 0.3, "mia_auc": 0.5, "validity_total": 0,
        "privacy_gate": {"passed": True, "failing": []},
    }  # fmt: skip


def _block(trained_on: str, csf: float, gsf: float) -> dict:
    mixture = {"components": 2, "dropped": 0, "iterations": 5, "converged": True, "weights": [0.5, 0.5],
               "counts": [15.0, 15.0], "min_count": 10, "node_min_count": 10}  # fmt: skip
    return {
        "trained_on": trained_on,
        "synthetic": {"path": "synthetic.parquet", "n": 30, "seed": 0},
        "mixture": mixture,
        "validation": _validation(csf, gsf),
    }


def write_generative_run(
    root: Path,
    strategy: str,
    seed: int,
    final: dict[str, tuple[float, float]],
    curves: dict[str, list[float]],
    model: str = "vae_bgm",
) -> Path:
    """A generative run (model vae_bgm by default) with hand-set numbers.

    ``final`` maps each generator (global, pooled or node names) to its final (CSF, GSF);
    ``curves`` maps it to its CSF at rounds 1, 2, ... (GSF = CSF - 0.1), one
    ``synthetic_fidelity`` record per round; empty ``curves``: two rounds without one (as the
    Bayesian network's two protocol steps).
    """
    out = root / f"gen_{model}_{strategy}_s{seed}"
    out.mkdir(parents=True)
    names = ["pooled"] if strategy == "centralized" else ["node1", "node2", "node3"]
    shares = (1.0,) if strategy == "centralized" else (0.6, 0.3, 0.1)
    blocks = [_block(g, *v) for g, v in final.items()]
    n_rounds = max(len(c) for c in curves.values()) if curves else 2
    rounds = []
    for r in range(1, n_rounds + 1):
        gens = {g: {"csf": c[r - 1], "gsf": c[r - 1] - 0.1} for g, c in curves.items() if len(c) >= r}
        fid = {"reference": "benchmark_holdout", "n_reference": 10, "n_synthetic": 30, "generators": gens}
        record = {"round": r, "train_loss": [1.0] * len(names), "val_loss": [1.0] * len(names),
                  "val_loss_federated": 1.0}  # fmt: skip
        rounds.append({**record, "synthetic_fidelity": fid} if curves else record)
    config = {
        "use_case": {"name": "mds"}, "split": {"name": "three"}, "scenario": {"name": "best"},
        "model": {"name": model}, "strategy": {"name": strategy, "label": "", "rounds": n_rounds},
        "backend": {"name": "simulator"}, "tracker": {"name": "none"},
        "seed": {"data": 0, "split": seed, "init": 0, "train": 0, "synthetic": 0},
    }  # fmt: skip
    nodes = [{"name": n, "n_train": 10, "n_val": 2, "share": s} for n, s in zip(names, shares, strict=True)]
    results = {
        "config": config,
        "dataset": {"id": "ds-0123456789abcdef", "name": "sim", "n_rows": 100, "n_events": 50},
        "nodes": [{"name": n["name"], "n_train": 10, "n_val": 2, "fraction": n["share"]} for n in nodes],
        "rounds": rounds,
        "final": {
            "kind": "generative",
            "best_round": n_rounds,
            "rounds_run": n_rounds,
            "nodes": nodes,
            "test_set": "benchmark_holdout",
            "generative": {
                "model": model,
                **blocks[0],
                **({"nodes": blocks[1:]} if len(blocks) > 1 else {}),
            },
        },  # fmt: skip
        "timing": {
            "total_seconds": 1.0,
            "compile_seconds": 0.5,
            "round_seconds": [0.1],
            "round_compilations": 1,
        },
        "env": {"git_sha": None, "jax_backend": "cpu", "packages": {}},
        "checkpoint": "params.npz",
    }
    (out / "results.json").write_text(json.dumps(results))
    return out
