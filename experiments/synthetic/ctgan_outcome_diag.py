"""Where CTGAN's train-on-synthetic gap comes from: the generated covariates or the outcome model.

For a finished CTGAN run with ``model.outcome_draw=conditional``, the run's own data layer is rebuilt
from its ``.hydra/overrides.yaml``, and its fitted outcome model (``params.npz``) draws an event and
a time for every **real** training row, ``--draws`` times with fresh keys. Each table of real
covariates and drawn outcomes goes through the same train-on-synthetic Cox as the run's validation
(``train_synthetic_test_real``). The run's own gap, with generated covariates, is printed beside it:

* gap with real covariates ≈ the run's gap: the outcome model accounts for it;
* gap with real covariates much smaller: the generated covariates account for the rest;
* the spread over draws is the noise of drawing one table of this many rows.

    python experiments/synthetic/ctgan_outcome_diag.py RUN_DIR [RUN_DIR ...] [--draws 10] [--columns K]

``--columns K`` adds, per run, the K covariates whose generated values cost the most (ctgan.md, session 16):
the Cox fitted on real covariates with model-drawn outcomes gets, one column at a time, the term of the
Cox fitted on the run's synthetic table in place of its own; the real holdout's C lost is that column's
cost, printed with its real and synthetic share (mean of the column: the share of a binary one).

A look for planning, not a claim: the draws reuse the run's training rows and holdout.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import yaml
from hydra import compose, initialize_config_dir

from fedjax_rhd import generative as gen
from fedjax_rhd.cli import CONF_DIR
from fedjax_rhd.config import run_config
from fedjax_rhd.experiment import run_data
from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.io import load_params
from fedjax_rhd.metrics.concordance import concordance_index
from fedjax_rhd.metrics.synthetic._columns import numeric_matrix
from fedjax_rhd.metrics.synthetic.survival import linear_cox_terms, train_synthetic_test_real
from fedjax_rhd.models import ctgan_transform as tf
from fedjax_rhd.models import outcome_model as om
from fedjax_rhd.models.ctgan import conditional_outcome_model
from fedjax_rhd.models.tabular import decode_table, table_schema
from harmonize.guide import Guide

RUN_FILES = (".hydra/overrides.yaml", "params.npz", "results.json", "synthetic.parquet")


class RunTables(NamedTuple):
    """A finished conditional-draw CTGAN run's tables, rebuilt from its overrides and parameters."""

    guide: Guide
    real_train: pl.DataFrame
    holdout: pl.DataFrame
    synthetic: pl.DataFrame
    draw: Callable[[int], pl.DataFrame]  # key -> the real training covariates with model-drawn outcomes
    own_gap: float  # the run's TSTR ΔC as its results.json writes it


def run_tables(run: Path) -> RunTables:
    """Rebuild ``run``'s data layer and outcome model.

    Raises:
        SystemExit: ``run`` lacks one of ``RUN_FILES``, or is not a conditional-draw CTGAN run.
    """
    missing = [name for name in RUN_FILES if not (run / name).is_file()]
    if missing:
        raise SystemExit(f"{run}: not a finished run directory (no {', '.join(missing)})")
    overrides = [
        o
        for o in yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
        if not o.startswith("hydra.")
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = run_config(compose("config", overrides=overrides))
    data, table, _, _ = run_data(config, cached_guide(config.use_case.guide_name))
    spec = gen.fit_before_training(
        config.algorithm_spec(data.num_features, data.guide), data, config.seed.synthetic
    )
    model_config = spec.model_config
    if config.model.name != "ctgan" or model_config.outcome_draw != "conditional":
        raise SystemExit(f"{run}: not a CTGAN run with model.outcome_draw=conditional")
    modes = tf.Modes(*(np.asarray(a, np.float32) for a in model_config.fitted_modes))
    outcome = conditional_outcome_model(model_config, data.num_features, modes)
    stored = load_params(run / "params.npz")
    if "global" in stored:
        params = stored["global"]["outcome"]
    elif data.num_nodes == 1:  # centralised: the one pooled node's model
        params = jax.tree.map(lambda leaf: leaf[0], stored["nodes"]["outcome"])
    else:
        raise SystemExit(f"{run}: no global model (strategy=local); pass a centralised or FedAvg run")
    parts = [data.encoded[k][0] for k in range(data.num_nodes)]
    values = np.concatenate([p.values for p in parts])
    observed = np.concatenate([p.observed for p in parts])
    longest = float(np.max(np.concatenate([p.time for p in parts])))
    center, scale = np.asarray(data.preprocessor.center), np.asarray(data.preprocessor.scale)
    x = jnp.asarray(np.where(observed, (values - center) / scale, 0.0), jnp.float32)
    inputs = om.row_inputs(x, jnp.asarray(observed))

    def draw(key: int) -> pl.DataFrame:
        event, log_time = outcome.draw(params, inputs, jax.random.key(key))
        time = np.clip(np.exp(np.asarray(log_time, np.float64)), model_config.time_floor, longest)
        return decode_table(values, observed, time, np.asarray(event), table_schema(data.guide))

    own = json.loads((run / "results.json").read_text())["final"]["generative"]["validation"][
        "tstr_difference"
    ]
    return RunTables(
        data.guide, gen.training_table(data, None), gen.holdout_table(table, data),
        pl.read_parquet(run / "synthetic.parquet"), draw, float(own),
    )  # fmt: skip


def real_covariate_gaps(run: Path, draws: int) -> tuple[np.ndarray, float]:
    """(ΔC per draw with real covariates and model-drawn outcomes, the run's own ΔC).

    Raises:
        SystemExit: as :func:`run_tables`.
    """
    tables = run_tables(run)
    return covariate_gaps(tables, draws), tables.own_gap


def covariate_gaps(tables: RunTables, draws: int) -> np.ndarray:
    """ΔC per draw (keys 100, 101, ...) with real covariates and model-drawn outcomes."""
    return np.asarray(
        [
            train_synthetic_test_real(tables.real_train, tables.draw(100 + d), tables.holdout, tables.guide)[
                "difference"
            ]
            for d in range(draws)
        ]
    )


def column_costs(tables: RunTables) -> list[tuple[float, str, float, float]]:
    """Per covariate column, sorted costliest first: (C lost on the holdout when the synthetic-table Cox's
    term replaces the real-covariate Cox's, name, real share, synthetic share). The real-covariate Cox is
    fitted on the first draw (key 100) of :func:`real_covariate_gaps`."""
    time, event = tables.holdout["time"].to_numpy(), tables.holdout["event"].to_numpy().astype(int)
    own, names = linear_cox_terms(tables.draw(100), tables.holdout, tables.guide)
    synthetic, _ = linear_cox_terms(tables.synthetic, tables.holdout, tables.guide)
    score = own.sum(axis=1)
    base = concordance_index(time, event, score)
    real_x, _ = numeric_matrix(tables.real_train, tables.guide.features)
    syn_x, _ = numeric_matrix(tables.synthetic, tables.guide.features)
    costs = []
    for j, name in enumerate(names):
        swapped = concordance_index(time, event, score - own[:, j] + synthetic[:, j])
        real_share = float(np.nanmean(real_x[:, j])) if np.isfinite(real_x[:, j]).any() else float("nan")
        syn_share = float(np.nanmean(syn_x[:, j])) if np.isfinite(syn_x[:, j]).any() else float("nan")
        costs.append((swapped - base, name, real_share, syn_share))
    return sorted(costs, key=lambda row: row[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument(
        "--columns", type=int, default=0, help="also the K costliest covariate columns per run"
    )
    args = parser.parse_args()
    print("run | ΔC real covariates, mean (sd; min, max over draws) | the run's ΔC (generated covariates)")
    for run in args.runs:
        tables = run_tables(run)  # the data layer rebuilt once per run, for the gaps and the columns
        gaps, own = covariate_gaps(tables, args.draws), tables.own_gap
        print(
            f"{run.name} | {gaps.mean():+.4f} ({gaps.std(ddof=1):.4f}; {gaps.min():+.4f}, {gaps.max():+.4f})"
            f" | {own:+.4f}"
        )
        if args.columns:
            for cost, name, real_share, syn_share in column_costs(tables)[: args.columns]:
                print(f"  {name}: C lost {cost:+.4f}; mean real {real_share:.4f}, synthetic {syn_share:.4f}")


if __name__ == "__main__":
    main()
