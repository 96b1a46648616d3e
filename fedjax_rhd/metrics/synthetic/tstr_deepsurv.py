"""Train on synthetic, test on real with DeepSurv: does a non-linear model learn the same risks?

The linear Cox TSTR (:mod:`fedjax_rhd.metrics.synthetic.survival`) checks the main effects a
synthetic table carries; DeepSurv (Katzman et al. 2018, BMC Med Res Methodol 18:24) can also
pick up interactions, so a generator that reproduces marginals and main effects but scrambles
interactions scores lower here. The issue asks for both (issue 17, item 3: "train-on-synthetic /
test-on-real C-index with DeepSurv and linear Cox").

Protocol, the same for the synthetic and the real training table (only the table differs):

* features: the guide's features standardised on the table the model trains on, missing -> 0,
  with the observed mask as a second input (the project's DeepSurv input, ``use_observed_mask``);
* the training table is split once (``seed``) into 80 % fitting rows and 20 % stopping rows;
  full-batch Adam on the Cox partial likelihood (``models.deepsurv`` with its defaults), at most
  ``max_steps`` steps, the parameters with the lowest stopping-rows loss kept (checked every
  ``check_every`` steps, patience ``patience`` checks). The real holdout is never seen before the
  final score: it only receives Harrell's C.

Both fits are jitted once per table shape; a synthetic table of the training table's size (as the
study runs draw) reuses the real fit's compiled step.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.metrics.concordance import concordance_index
from fedjax_rhd.metrics.synthetic._columns import numeric_matrix
from fedjax_rhd.metrics.synthetic.survival import _outcome
from fedjax_rhd.models.deepsurv import DeepSurvConfig, deepsurv
from fedjax_rhd.typing import NodeData
from harmonize.guide import Guide


@dataclasses.dataclass(frozen=True)
class DeepSurvTSTR:
    """The fit's knobs (defaults: the project's DeepSurv and client learning rate)."""

    seed: int = 0  # stopping split, initialisation and dropout
    learning_rate: float = 2e-3
    max_steps: int = 400
    check_every: int = 10
    patience: int = 5  # checks without a lower stopping loss
    stop_fraction: float = 0.2


class _Design:
    """Standardisation fitted on one table; missing -> 0 with an observed mask."""

    def __init__(self, guide: Guide, train: pl.DataFrame) -> None:
        self.features = guide.features
        x, _ = numeric_matrix(train, guide.features)
        empty = np.isnan(x).all(axis=0)
        self.mean = np.where(empty, 0.0, np.nanmean(np.where(empty, 0.0, x), axis=0))
        sd = np.nanstd(np.where(empty, 0.0, x), axis=0)
        self.sd = np.where(sd > 0, sd, 1.0)

    def __call__(self, table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        x, _ = numeric_matrix(table, self.features)
        observed = np.isfinite(x)
        z = np.where(observed, (x - self.mean) / self.sd, 0.0)
        return z.astype(np.float32), observed


@functools.partial(jax.jit, static_argnames=("config", "num_features", "learning_rate", "steps"))
def _train_chunk(
    params: dict,
    opt_state: optax.OptState,
    fit: NodeData,
    stop: NodeData,
    key: jax.Array,
    *,
    config: DeepSurvConfig,
    num_features: int,
    learning_rate: float,
    steps: int,
) -> tuple[dict, optax.OptState, jax.Array]:
    """``steps`` full-batch Adam steps, then the stopping rows' loss (no dropout)."""
    model = deepsurv(config, num_features)
    optimiser = optax.adam(learning_rate)

    def step(carry: tuple, step_key: jax.Array) -> tuple[tuple, None]:
        p, s = carry
        grads = jax.grad(lambda q: model.loss(q, fit, step_key)[0])(p)
        updates, s = optimiser.update(grads, s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, opt_state), _ = jax.lax.scan(step, (params, opt_state), jax.random.split(key, steps))
    return params, opt_state, model.loss(params, stop, None)[1]["cox"]


def deepsurv_c(train: pl.DataFrame, test: pl.DataFrame, guide: Guide, settings: DeepSurvTSTR) -> float:
    """Harrell's C on ``test`` of DeepSurv fitted on ``train`` (stopping rows drawn from ``train``)."""
    design = _Design(guide, train)
    x, observed = design(train)
    t, e = _outcome(train)
    ok = np.isfinite(t) & np.isfinite(e)
    x, observed, t, e = x[ok], observed[ok], t[ok], e[ok]
    rng = np.random.default_rng(settings.seed)
    is_stop = np.zeros(len(t), dtype=bool)
    is_stop[rng.permutation(len(t))[: max(1, int(round(settings.stop_fraction * len(t))))]] = True
    fit = make_node_data(x[~is_stop], observed[~is_stop], t[~is_stop], e[~is_stop])
    stop = make_node_data(x[is_stop], observed[is_stop], t[is_stop], e[is_stop])
    config = DeepSurvConfig()
    model = deepsurv(config, x.shape[1])
    key = jax.random.key(settings.seed)
    params = model.init(jax.random.fold_in(key, 0))
    opt_state = optax.adam(settings.learning_rate).init(params)
    best, best_loss, since = params, np.inf, 0
    for check in range(settings.max_steps // settings.check_every):
        params, opt_state, loss = _train_chunk(
            params, opt_state, fit, stop, jax.random.fold_in(key, check + 1),
            config=config, num_features=x.shape[1], learning_rate=settings.learning_rate,
            steps=settings.check_every,
        )  # fmt: skip
        loss = float(loss)
        if loss < best_loss:
            best, best_loss, since = params, loss, 0
        else:
            since += 1
            if since >= settings.patience:
                break
    tx, tobs = design(test)
    tt, et = _outcome(test)
    risk = np.asarray(model.risk(best, jnp.asarray(tx), jnp.asarray(tobs)))
    return concordance_index(tt, et.astype(int), risk)


def train_synthetic_test_real_deepsurv(
    real_train: pl.DataFrame,
    synthetic: pl.DataFrame,
    holdout: pl.DataFrame,
    guide: Guide,
    settings: DeepSurvTSTR = DeepSurvTSTR(),
) -> dict[str, float]:
    """Harrell's C on the real holdout of DeepSurv fitted on synthetic vs on real training rows.

    Returns ``{"c_index_train_real", "c_index_train_synthetic", "difference"}`` (synthetic minus real).
    """
    c_real = deepsurv_c(real_train, holdout, guide, settings)
    c_syn = deepsurv_c(synthetic, holdout, guide, settings)
    return {"c_index_train_real": c_real, "c_index_train_synthetic": c_syn, "difference": c_syn - c_real}
