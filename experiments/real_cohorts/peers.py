"""Peer libraries tuned on the same validation rows, refitted on each split seed's training + validation rows.

The peer-library figures of ``../shared/data/README.md`` come from other random splits, so they
cannot be paired with ours. For every ``seed.split`` this script rebuilds the rows a run of the
given overrides trains on (``fedjax_rhd.experiment.run_data`` under ``strategy=centralized``: every
node's training and validation rows pooled, the data layer's preprocessing fitted on the training
rows), and for each peer

1. fits every point of a small grid on the training rows and scores it on the validation rows
   (Harrell's C; the rows FedAvg's early stopping and the Optuna search read, never the test rows),
2. refits the best point on training + validation rows,
3. writes its risk on the seed's test rows (the data layer's order, ``patient_id`` beside it).

Peers: penalised Cox (lifelines ``CoxPHFitter``, ridge or elastic net; Davidson-Pilon 2019, JOSS
4:1317), random survival forest (scikit-survival; Ishwaran et al. 2008, Ann Appl Stat 2:841-60) and
gradient-boosted Cox (scikit-survival, Cox partial likelihood loss; Ridgeway 1999, Comput Sci Stat
31:172-81; Pölsterl 2020, JMLR 21:1-6). The forest and boosting draw with ``--model-seed``.

Writes ``<out>/seed_<s>/peers.parquet`` and ``<out>/seed_<s>/peers.json`` (every grid point's
validation C, the choice, seconds); a rerun skips seeds already written. ``tuned.py`` pairs them
with the tuned FedAvg runs.

Usage:
    python experiments/real_cohorts/peers.py --out runs/peers/mds_iwgpm --seeds 0 1 2 3 4 \\
        -- use_case=mds_iwgpm split=five
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from fedjax_rhd.metrics.concordance import concordance_index  # noqa: E402


class Rows(NamedTuple):
    """One part of the pooled split: features, follow-up, event (padding removed)."""

    x: np.ndarray
    time: np.ndarray
    event: np.ndarray


# A peer: the grid's candidates with their validation risks, and a refit of one point.
Candidates = Callable[[Rows, Rows, int], Iterator[tuple[dict[str, Any], np.ndarray | None]]]
Refit = Callable[[Rows, dict[str, Any], int], Callable[[np.ndarray], np.ndarray]]

COX_GRID = tuple({"penalizer": p, "l1_ratio": r} for r in (0.0, 0.5) for p in (0.01, 0.03, 0.1, 0.3, 1.0))
RSF_GRID = tuple({"min_samples_leaf": leaf, "max_features": "sqrt"} for leaf in (3, 15))
RSF_TREES = 200
GB_DEPTHS = (2, 3)
GB_STAGES = (25, 50, 100, 200, 300)  # boosting iterations read off one fit's staged predictions
GB_RATE = 0.1


def _cox(rows: Rows, params: dict[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    from lifelines import CoxPHFitter

    # A column constant on the fitting rows (a flag no training patient carries) has no
    # coefficient and breaks lifelines' standardisation (0/0): left out of this fit.
    used = np.flatnonzero(rows.x.std(axis=0) > 0)
    cols = [f"x{j}" for j in used]
    df = pd.DataFrame(rows.x[:, used], columns=cols)
    df["time"], df["event"] = rows.time, rows.event
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on rare flags
        model = CoxPHFitter(**params).fit(df, duration_col="time", event_col="event")
    return lambda x: model.predict_log_partial_hazard(pd.DataFrame(x[:, used], columns=cols)).to_numpy()


def _surv(rows: Rows) -> np.ndarray:
    from sksurv.util import Surv

    return Surv.from_arrays(rows.event.astype(bool), rows.time)


def _rsf(rows: Rows, params: dict[str, Any], seed: int) -> Callable[[np.ndarray], np.ndarray]:
    from sksurv.ensemble import RandomSurvivalForest

    model = RandomSurvivalForest(
        n_estimators=RSF_TREES, n_jobs=1, random_state=seed, low_memory=True, **params
    ).fit(rows.x, _surv(rows))
    return model.predict


def _gb(rows: Rows, depth: int, stages: int, seed: int) -> Any:
    from sksurv.ensemble import GradientBoostingSurvivalAnalysis

    return GradientBoostingSurvivalAnalysis(
        loss="coxph", learning_rate=GB_RATE, max_depth=depth, n_estimators=stages, random_state=seed
    ).fit(rows.x, _surv(rows))


def cox_candidates(train: Rows, val: Rows, seed: int) -> Iterator[tuple[dict[str, Any], np.ndarray | None]]:
    from lifelines.exceptions import ConvergenceError

    for params in COX_GRID:
        try:
            yield params, _cox(train, params)(val.x)
        except ConvergenceError:  # a weak penalty on rare flags can diverge: recorded, never chosen
            yield params, None


def rsf_candidates(train: Rows, val: Rows, seed: int) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    for params in RSF_GRID:
        yield params, _rsf(train, params, seed)(val.x)


def gb_candidates(train: Rows, val: Rows, seed: int) -> Iterator[tuple[dict[str, Any], np.ndarray]]:
    # One fit per depth: the first k trees of a boosted model are the model boosted k times.
    for depth in GB_DEPTHS:
        staged = _gb(train, depth, max(GB_STAGES), seed).staged_predict(val.x)
        for k, risk in enumerate(staged, start=1):
            if k in GB_STAGES:
                yield {"max_depth": depth, "n_estimators": k}, risk


PEERS: dict[str, tuple[str, Candidates, Refit]] = {
    "cox": ("penalised Cox (lifelines)", cox_candidates, lambda rows, p, seed: _cox(rows, p)),
    "rsf": ("random survival forest (scikit-survival)", rsf_candidates, lambda rows, p, s: _rsf(rows, p, s)),
    "gbcox": (
        "gradient-boosted Cox (scikit-survival)",
        gb_candidates,
        lambda rows, p, seed: _gb(rows, p["max_depth"], p["n_estimators"], seed).predict,
    ),
}


def choose(scored: list[tuple[dict[str, Any], float]]) -> dict[str, Any]:
    """The grid point with the highest validation C (NaN: the fit failed); the earliest listed wins a tie."""
    finite = [i for i, (_, c) in enumerate(scored) if np.isfinite(c)]
    if not finite:
        raise ValueError(f"no grid point could be fitted: {[p for p, _ in scored]}")
    best = max(finite, key=lambda i: (scored[i][1], -i))
    return scored[best][0]


def fit_peer(name: str, train: Rows, val: Rows, test_x: np.ndarray, seed: int) -> tuple[np.ndarray, dict]:
    """One peer tuned on ``val`` (Harrell's C), refitted on ``train + val``, scored on ``test_x``."""
    _, candidates, refit = PEERS[name]
    started = time.perf_counter()
    scored = [
        (params, float("nan") if risk is None else concordance_index(val.time, val.event, risk))
        for params, risk in candidates(train, val, seed)
    ]
    best = choose(scored)
    both = Rows(*(np.concatenate([a, b]) for a, b in zip(train, val, strict=True)))
    risk = np.asarray(refit(both, best, seed)(test_x), dtype=np.float64)
    record = {
        "grid": [{"params": p, "validation_c": c} for p, c in scored],
        "chosen": best,
        "seconds": time.perf_counter() - started,
    }
    return risk, record


def pooled_rows(overrides: list[str]) -> tuple[Rows, Rows, np.ndarray, tuple[str, ...]]:
    """The training, validation and test rows a ``strategy=centralized`` run of ``overrides`` reads."""
    from hydra import compose, initialize_config_dir

    from fedjax_rhd.cli import CONF_DIR
    from fedjax_rhd.config import register_configs, run_config
    from fedjax_rhd.experiment import run_data
    from fedjax_rhd.guide_cache import cached_guide

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[*overrides, "strategy=centralized", "progress=false"])
    config = run_config(cfg)
    data, *_ = run_data(config, cached_guide(config.use_case.guide_name))

    def rows(part: Any) -> Rows:
        keep = np.asarray(part.weight[0]) > 0
        return Rows(*(np.asarray(a[0], dtype=np.float64)[keep] for a in (part.x, part.time, part.event)))

    return rows(data.train), rows(data.val), np.asarray(data.test.x, dtype=np.float64), data.test_patient_ids


def run_seed(overrides: list[str], seed: int, folder: Path, peers: list[str], model_seed: int) -> None:
    """Every peer for one split seed; ``peers.parquet`` and ``peers.json`` in ``folder``."""
    train, val, test_x, ids = pooled_rows([*overrides, f"seed.split={seed}"])
    risks, records = {"patient_id": list(ids)}, {}
    for name in peers:
        risks[f"risk_{name}"], records[name] = fit_peer(name, train, val, test_x, model_seed)
        print(f"seed.split={seed} {name}: {records[name]['chosen']} ({records[name]['seconds']:.0f} s)")
    folder.mkdir(parents=True, exist_ok=True)
    meta = {
        "overrides": overrides,
        "seed_split": seed,
        "model_seed": model_seed,
        "n_train": len(train.time),
        "n_val": len(val.time),
        "n_test": len(ids),
        "peers": records,
    }
    (folder / "peers.json").write_text(json.dumps(meta, indent=1, default=str) + "\n")
    pl.DataFrame(risks).write_parquet(folder / "peers.parquet")  # written last: its presence means done


def main(argv: list[str] | None = None) -> None:
    """Fit (or skip, when already written) every peer for every split seed."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    p.add_argument("--model-seed", type=int, default=0, help="the forest's and the boosting's random state")
    p.add_argument("overrides", nargs="*", help="Hydra overrides naming the rows (after --)")
    args = p.parse_args(argv)
    for seed in args.seeds:
        folder = args.out / f"seed_{seed}"
        if (folder / "peers.parquet").is_file():
            continue
        run_seed(args.overrides, seed, folder, args.peers, args.model_seed)


if __name__ == "__main__":
    main()
