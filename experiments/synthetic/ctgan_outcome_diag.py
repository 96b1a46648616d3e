"""Where CTGAN's train-on-synthetic gap comes from: the generated covariates or the outcome model.

For a finished CTGAN run with ``model.outcome_draw=conditional``, the run's own data layer is rebuilt
from its ``.hydra/overrides.yaml``, and its fitted outcome model (``params.npz``) draws an event and
a time for every **real** training row, ``--draws`` times with fresh keys. Each table of real
covariates and drawn outcomes goes through the same train-on-synthetic Cox as the run's validation
(``train_synthetic_test_real``). The run's own gap, with generated covariates, is printed beside it:

* gap with real covariates ≈ the run's gap: the outcome model accounts for it;
* gap with real covariates much smaller: the generated covariates account for the rest;
* the spread over draws is the noise of drawing one table of this many rows.

    python experiments/synthetic/ctgan_outcome_diag.py RUN_DIR [RUN_DIR ...] [--draws 10]

A look for planning, not a claim: the draws reuse the run's training rows and holdout.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from hydra import compose, initialize_config_dir

from fedjax_rhd import generative as gen
from fedjax_rhd.cli import CONF_DIR
from fedjax_rhd.config import run_config
from fedjax_rhd.experiment import run_data
from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.io import load_params
from fedjax_rhd.metrics.synthetic.survival import train_synthetic_test_real
from fedjax_rhd.models import ctgan_transform as tf
from fedjax_rhd.models import outcome_model as om
from fedjax_rhd.models.ctgan import conditional_outcome_model
from fedjax_rhd.models.tabular import decode_table, table_schema

RUN_FILES = (".hydra/overrides.yaml", "params.npz", "results.json")


def real_covariate_gaps(run: Path, draws: int) -> tuple[np.ndarray, float]:
    """(ΔC per draw with real covariates and model-drawn outcomes, the run's own ΔC).

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
    real_train, holdout = gen.training_table(data, None), gen.holdout_table(table, data)
    gaps = []
    for draw in range(draws):
        event, log_time = outcome.draw(params, inputs, jax.random.key(100 + draw))
        time = np.clip(np.exp(np.asarray(log_time, np.float64)), model_config.time_floor, longest)
        drawn = decode_table(values, observed, time, np.asarray(event), table_schema(data.guide))
        gaps.append(train_synthetic_test_real(real_train, drawn, holdout, data.guide)["difference"])
    own = json.loads((run / "results.json").read_text())["final"]["generative"]["validation"][
        "tstr_difference"
    ]
    return np.asarray(gaps), float(own)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()
    print("run | ΔC real covariates, mean (sd; min, max over draws) | the run's ΔC (generated covariates)")
    for run in args.runs:
        gaps, own = real_covariate_gaps(run, args.draws)
        print(
            f"{run.name} | {gaps.mean():+.4f} ({gaps.std(ddof=1):.4f}; {gaps.min():+.4f}, {gaps.max():+.4f})"
            f" | {own:+.4f}"
        )


if __name__ == "__main__":
    main()
