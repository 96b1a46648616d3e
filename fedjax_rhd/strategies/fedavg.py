"""FedAvg with a server optimiser on the pseudo-gradient.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017; the server-optimiser view follows Reddi et
al., "Adaptive Federated Optimization", ICLR 2021: the server treats
``global - weighted_mean(client params)`` as a gradient and applies an optax
transform. ``optax.sgd(1.0)`` is plain FedAvg (equal to the weighted mean up to
float rounding); ``optax.sgd(lr, momentum)`` is FedAvgM (Hsu et al. 2019);
``adam``/``yogi``/``adagrad`` are Reddi et al.'s adaptive servers
(``server_opt.py``). FedProx (Li et al., MLSys 2020) is this algorithm with a
proximal client objective (``ClientConfig.proximal_mu``), nothing else.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from fedjax_rhd.strategies.client import ClientConfig, make_client_update
from fedjax_rhd.strategies.dp import DPConfig, private_mean_update
from fedjax_rhd.strategies.server_opt import SERVER_OPTIMIZERS, server_optimizer
from fedjax_rhd.typing import ClientResult, FederatedAlgorithm, Params, ServerState, SurvivalModel


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Server optimiser on the pseudo-gradient (hashable): ``strategy.server``."""

    optimizer: str = "sgd"  # sgd (FedAvg, FedAvgM) | adam | yogi | adagrad (Reddi et al. 2021)
    learning_rate: float = 1.0  # η; 1.0 with sgd and no momentum = plain FedAvg
    momentum: float = 0.0  # > 0 gives FedAvgM (Hsu et al. 2019); sgd only
    b1: float = 0.9  # adaptive servers: first-moment decay (Reddi et al.'s default)
    b2: float = 0.99  # adaptive servers: second-moment decay (Reddi et al.'s default)
    tau: float = 1e-3  # adaptivity τ: larger = closer to FedAvgM (Reddi et al. tuned 1e-3 .. 1e-1)

    def __post_init__(self) -> None:
        if self.optimizer not in SERVER_OPTIMIZERS:
            raise ValueError(
                f"server optimizer {self.optimizer!r}: expected one of {list(SERVER_OPTIMIZERS)}"
            )
        if self.learning_rate <= 0 or self.momentum < 0:
            raise ValueError("server learning_rate must be > 0 and momentum >= 0")
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"server momentum applies to the sgd optimizer, not {self.optimizer!r}")

    def transform(self) -> optax.GradientTransformation:
        return server_optimizer(self.optimizer, self.learning_rate, self.momentum, self.b1, self.b2, self.tau)


def weighted_mean(stacked: Params, weights: jax.Array) -> Params:
    """Mean over the leading (node) axis of every leaf, weighted by ``weights``."""
    w = weights / weights.sum()
    return jax.tree.map(lambda leaf: jnp.tensordot(w.astype(leaf.dtype), leaf, axes=1), stacked)


def fedavg(
    model: SurvivalModel, client: ClientConfig, server: ServerConfig, dp: DPConfig | None = None
) -> FederatedAlgorithm:
    """FedAvg: clients train locally, the manager averages weighted by patients.

    With ``dp.enabled`` the average is DP-FedAvg's (``strategies/dp.py``): clipped
    updates, equal node weights over a fixed denominator, Gaussian noise from the
    round's key.
    """
    server_opt = server.transform()
    dp = dp or DPConfig()

    def init(params: Params, num_nodes: int) -> ServerState:
        del num_nodes  # one global model whatever the federation's size
        return ServerState(params=params, opt_state=server_opt.init(params), round=jnp.zeros((), jnp.int32))

    def aggregate(
        state: ServerState, results: ClientResult, weights: jax.Array, rng: jax.Array | None = None
    ) -> ServerState:
        if dp.enabled:
            if rng is None:
                raise ValueError("DP-FedAvg's aggregate needs the round's key for its noise")
            took_part = (weights > 0).astype(jnp.float32)
            mean_update = private_mean_update(state.params, results.params, took_part, dp, rng)
            pseudo_gradient = jax.tree.map(jnp.negative, mean_update)
        else:
            average = weighted_mean(results.params, weights)
            pseudo_gradient = jax.tree.map(lambda g, a: g - a, state.params, average)
        updates, opt_state = server_opt.update(pseudo_gradient, state.opt_state, state.params)
        return ServerState(optax.apply_updates(state.params, updates), opt_state, state.round + 1)

    return FederatedAlgorithm(init=init, client_update=make_client_update(model, client), aggregate=aggregate)
