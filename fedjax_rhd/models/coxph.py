"""Linear Cox proportional hazards model: the classical baseline.

Cox, "Regression models and life-tables", JRSS B 34(2):187-220 (1972), fitted
by maximising the Breslow partial likelihood (Breslow, "Covariance analysis of
censored survival data", Biometrics 30:89-99, 1974) with the same optimisers,
strategies and federated machinery as DeepSurv, so the comparison isolates the
model. Under FedAvg each node's partial likelihood uses its own risk sets (a
Cox model stratified by node, ARCHITECTURE §1.3).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp

from fedjax_rhd.models.cox import cox_loss
from fedjax_rhd.typing import NodeData, Params, PRNGKey, SurvivalModel


@dataclasses.dataclass(frozen=True)
class CoxPHConfig:
    """Linear Cox hyperparameters (hashable: part of the jit key)."""

    name: str = "coxph"  # the registry key (fedjax_rhd.models.MODELS) and conf/model/coxph.yaml

    # A small ridge penalty keeps coefficients finite under (quasi-)separation,
    # which rare binary mutations in small nodes produce easily; 0 gives the
    # plain maximum partial likelihood estimate.
    l2: float = 1e-3
    # Off by default: the classical model sees imputed values only. On, the
    # mask enters as extra linear terms (a missing-indicator Cox model).
    use_observed_mask: bool = False

    def __post_init__(self) -> None:
        if self.name != "coxph":
            raise ValueError(f"CoxPHConfig is model 'coxph', not {self.name!r}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")


@functools.cache
def coxph(config: CoxPHConfig, num_features: int) -> SurvivalModel:
    """Build the linear Cox model as pure functions.

    Args:
        config: hyperparameters.
        num_features: columns of ``x``.

    Returns:
        ``SurvivalModel`` with params ``{"kernel": f32[d]}`` (zeros at init, the
        usual starting point of Newton-Raphson for Cox models); ``risk`` is the
        linear predictor ``x @ kernel`` (no intercept: the baseline hazard
        absorbs it); ``loss`` is the per-event Breslow loss plus
        ``l2 * |kernel|^2``.
    """
    in_features = num_features * (2 if config.use_observed_mask else 1)

    def inputs(x: jax.Array, observed: jax.Array) -> jax.Array:
        x = jnp.asarray(x, jnp.float32)
        if config.use_observed_mask:
            return jnp.concatenate([x, jnp.asarray(observed, jnp.float32)], axis=-1)
        return x

    def init(rng: PRNGKey) -> Params:
        del rng  # deterministic start; the partial likelihood is concave
        return {"kernel": jnp.zeros((in_features,), jnp.float32)}

    def risk(params: Params, x: jax.Array, observed: jax.Array) -> jax.Array:
        # HIGHEST: GPUs would otherwise run this f32 product in TF32.
        return jnp.dot(inputs(x, observed), params["kernel"], precision=jax.lax.Precision.HIGHEST)

    def loss(params: Params, batch: NodeData, rng: PRNGKey | None) -> tuple[jax.Array, dict[str, Any]]:
        del rng  # nothing random in a linear model
        cox = cox_loss(risk(params, batch.x, batch.observed), batch)
        return cox + config.l2 * jnp.sum(jnp.square(params["kernel"])), {"cox": cox}

    return SurvivalModel(init=init, loss=loss, risk=risk)
