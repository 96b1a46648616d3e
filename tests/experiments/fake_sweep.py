"""Tiny fake sweeps for the experiment scripts' smoke tests: run folders as the CLI writes them.

A cohort of 40 patients; each split seed's test set is 24 of them (so seeds overlap, as real
split seeds do), the same for every strategy, model and scenario of that seed. Risks are
``-time`` plus noise drawn per (run, column), so C-indices are informative but not perfect.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from fedjax_rhd.metrics.concordance import concordance_index

N_POOL, N_TEST = 40, 24
_POOL = np.random.default_rng(0)
TIME = _POOL.exponential(size=N_POOL) + 0.01
EVENT = _POOL.random(N_POOL) < 0.7
IDS = np.array([f"P{i:03d}" for i in range(N_POOL)])


def test_rows(split_seed: int) -> np.ndarray:
    return np.sort(np.random.default_rng(100 + split_seed).choice(N_POOL, N_TEST, replace=False))


def _ci(estimate: float) -> dict:
    return {"estimate": estimate, "ci_low": estimate - 0.1, "ci_high": estimate + 0.1, "n_boot": 10}


def write_fake_run(
    folder: Path,
    *,
    strategy: str,
    seed: int,
    use_case: str = "mds",
    scenario: str = "best",
    split: str = "three",
    model: str = "deepsurv",
    init: int = 0,
    nodes: tuple[str, ...] = ("node1", "node2", "node3"),
    strategy_extra: dict | None = None,
    extra_columns: tuple[str, ...] = (),
    personalized: bool = False,
) -> Path:
    """One run folder (results.json + test_predictions.parquet) under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    personalized = personalized and strategy not in ("centralized", "local")  # only federated runs fine-tune
    rows = test_rows(seed)
    time, event = TIME[rows], EVENT[rows]
    salt = sum(map(ord, f"{strategy}{use_case}{scenario}{split}{model}"))
    rng = np.random.default_rng([seed, init, salt])

    def risk() -> np.ndarray:
        return -time + rng.normal(scale=0.8, size=len(rows))

    cols: dict[str, np.ndarray] = {"risk": risk(), "oracle_risk": -time}
    for n in nodes:
        cols[f"risk_{n}"] = risk()
        if personalized:
            cols[f"risk_{n}_finetuned"] = risk()
    score = -time + rng.normal(scale=1.0, size=len(rows))
    score[::5] = np.nan  # a clinical score that cannot score every patient
    cols["clinical_score"] = score
    for c in extra_columns:
        v = -time + rng.normal(scale=1.0, size=len(rows))
        v[1::6] = np.nan
        cols[c] = v
    c = {
        k: concordance_index(time[~np.isnan(v)], event[~np.isnan(v)], v[~np.isnan(v)])
        for k, v in cols.items()
    }
    shares = (1.0,) if strategy == "centralized" else tuple(np.round(np.linspace(0.5, 0.1, len(nodes)), 3))
    node_names = ("pooled",) if strategy == "centralized" else nodes
    if strategy == "centralized":
        cols["risk_pooled"] = cols["risk"]
        c["risk_pooled"] = c["risk"]
    fl = strategy not in ("centralized", "local")
    final = {
        "c_index_test": _ci(c["risk"]),
        "best_round": 2,
        "global_model": {"c_index_test": _ci(c["risk"])} if fl else None,
        "nodes": [
            {"name": n, "n_train": 10, "n_val": 2, "share": float(s), "c_index_test": _ci(c[f"risk_{n}"])}
            for n, s in zip(node_names, shares, strict=True)
        ],
        "oracle_c_index_test": _ci(c["oracle_risk"]),
        "clinical_score": {"name": "IPSS-M", "c_index_test": _ci(c["clinical_score"])},
        "uno_c_test": c["risk"] - 0.01,
        "td_auc_test": {"mean": c["risk"] + 0.01},
        "ibs_test": 0.2 - 0.1 * (c["risk"] - 0.5),
    }
    if personalized:
        final["personalized"] = {
            "epochs": 3,
            "nodes": [{"name": n, "c_index_test": _ci(c[f"risk_{n}_finetuned"])} for n in nodes],
        }
    strategy_cfg = {
        "name": strategy,
        "label": "",
        "client": {"proximal_mu": 0.0},
        "server": {"momentum": 0.0, "learning_rate": 1.0},
    }
    for group, values in (strategy_extra or {}).items():
        strategy_cfg[group] = {**strategy_cfg.get(group, {}), **values}
    results = {
        "dataset": {
            "id": "ds-0123456789abcdef",
            "name": f"{use_case}-fake",
            "n_rows": N_POOL,
            "n_events": 28,
        },
        "config": {
            "use_case": {"name": use_case},
            "scenario": {"name": scenario},
            "split": {"name": split},
            "model": {"name": model},
            "strategy": strategy_cfg,
            "seed": {"data": 0, "split": seed, "init": init, "train": init},
        },
        "rounds": [
            {
                "round": r,
                "val_loss_federated": 1.0 / r + 0.01 * seed,
                "c_index_test_nodes": [c["risk"] - 0.05 / r] * len(node_names),
                **({"c_index_test_global": c["risk"] - 0.05 / r} if fl else {}),
            }
            for r in (1, 2)
        ],
        "final": final,
    }
    (folder / "results.json").write_text(json.dumps(results))
    frame = {"patient_id": IDS[rows], "time": time, "event": event.astype(np.int64), **cols}
    # Stored scores are null where missing (as the cohort readers leave them); the rest NaN-free or NaN.
    pl.DataFrame(frame).with_columns(pl.col(list(extra_columns)).fill_nan(None)).write_parquet(
        folder / "test_predictions.parquet"
    )
    return folder
