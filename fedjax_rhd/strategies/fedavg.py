"""FedAvg with a server optimiser on the pseudo-gradient.

McMahan et al., "Communication-Efficient Learning of Deep Networks from
Decentralized Data", AISTATS 2017; the server-optimiser view follows Reddi et
al., "Adaptive Federated Optimization", ICLR 2021: the server treats
``global - weighted_mean(client params)`` as a gradient and applies an optax
transform. ``optax.sgd(1.0)`` is plain FedAvg (equal to the weighted mean up to
float rounding); ``optax.sgd(lr, momentum)`` is FedAvgM.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from fedjax_rhd.strategies.client import ClientConfig, make_client_update
from fedjax_rhd.typing import ClientResult, FederatedAlgorithm, Params, ServerState, SurvivalModel


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """Server optimiser on the pseudo-gradient (hashable)."""

    learning_rate: float = 1.0  # 1.0 with no momentum = plain FedAvg
    momentum: float = 0.0  # > 0 gives FedAvgM (Hsu et al. 2019)

    def optimizer(self) -> optax.GradientTransformation:
        return optax.sgd(self.learning_rate, momentum=self.momentum or None)


def weighted_mean(stacked: Params, weights: jax.Array) -> Params:
    """Mean over the leading (node) axis of every leaf, weighted by ``weights``."""
    w = weights / weights.sum()
    return jax.tree.map(lambda leaf: jnp.tensordot(w.astype(leaf.dtype), leaf, axes=1), stacked)


def fedavg(model: SurvivalModel, client: ClientConfig, server: ServerConfig) -> FederatedAlgorithm:
    """FedAvg: clients train locally, the manager averages weighted by patients."""
    server_opt = server.optimizer()

    def init(params: Params, num_nodes: int) -> ServerState:
        del num_nodes  # one global model whatever the federation's size
        return ServerState(params=params, opt_state=server_opt.init(params), round=jnp.zeros((), jnp.int32))

    def aggregate(state: ServerState, results: ClientResult, weights: jax.Array) -> ServerState:
        average = weighted_mean(results.params, weights)
        pseudo_gradient = jax.tree.map(lambda g, a: g - a, state.params, average)
        updates, opt_state = server_opt.update(pseudo_gradient, state.opt_state, state.params)
        return ServerState(optax.apply_updates(state.params, updates), opt_state, state.round + 1)

    return FederatedAlgorithm(init=init, client_update=make_client_update(model, client), aggregate=aggregate)
