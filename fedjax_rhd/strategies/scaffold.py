"""SCAFFOLD: FedAvg with control variates that correct the nodes' client drift.

Karimireddy SP, Kale S, Mohri M, Reddi SJ, Stich SU, Suresh AT. "SCAFFOLD:
Stochastic Controlled Averaging for Federated Learning", ICML 2020 (Algorithm 1,
option II). The manager keeps a server control ``c`` and one control ``c_i`` per
node (node-axis state that persists across rounds, like ``local``'s models; it
is checkpointed with the server state). Node i starts from the global model
``x`` and takes ``S`` local SGD steps ``y ← y − η_l (g_i(y) − c_i + c)``; then,
with option II, ``c_i⁺ = c_i − c + (x − y_i) / (S η_l)`` (the node's mean
gradient over the round). The manager sets ``x ← x + η_g · mean(y_i − x)`` and
``c ← c + (1/N) Σ_{i in S} (c_i⁺ − c_i)``, N the number of nodes.

Because option II's ``c_i⁺`` is a function of (x, y_i, c, c_i), all of which the
manager already holds, the manager computes it itself: a node receives its
correction ``c − c_i`` with the model and returns only its model, so SCAFFOLD
sends nothing FedAvg does not (``docs/privacy.md``). A node that sat the round
out (not sampled, failed, late) keeps its ``c_i`` and changes neither average.
The model step is weighted by patients, as FedAvg's is here; the paper's uniform
mean is the special case of equal node sizes. Option II needs plain local SGD
(``strategy.client.optimizer=sgd``): the update ``(x − y_i) / (S η_l)`` is the
mean corrected gradient only for SGD steps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from fedjax_rhd.strategies.client import ClientConfig, make_client_update
from fedjax_rhd.strategies.fedavg import ServerConfig, weighted_mean
from fedjax_rhd.typing import ClientResult, FederatedAlgorithm, Params, ServerState, SurvivalModel


class ScaffoldControls(NamedTuple):
    """SCAFFOLD's part of ``ServerState.opt_state``.

    Attributes:
        server: ``c``, a pytree like the model's parameters.
        nodes: every ``c_i``, the same pytree stacked [K].
    """

    server: Params
    nodes: Params


def scaffold(model: SurvivalModel, client: ClientConfig, server: ServerConfig) -> FederatedAlgorithm:
    """SCAFFOLD with option II control updates (``server.learning_rate`` is η_g)."""
    if client.optimizer != "sgd":
        raise ValueError(
            f"SCAFFOLD's option II control update assumes local SGD: set strategy.client.optimizer=sgd "
            f"(got {client.optimizer!r})"
        )
    if client.proximal_mu is not None:
        raise ValueError(
            "SCAFFOLD corrects drift with control variates: leave strategy.client.proximal_mu null"
        )
    local_update = make_client_update(model, client)
    steps, local_lr, global_lr = client.steps, client.learning_rate, server.learning_rate

    def init(params: Params, num_nodes: int) -> ServerState:
        zeros = jax.tree.map(jnp.zeros_like, params)
        stacked = jax.tree.map(lambda leaf: jnp.zeros((num_nodes, *leaf.shape), leaf.dtype), params)
        return ServerState(params, ScaffoldControls(zeros, stacked), jnp.zeros((), jnp.int32))

    def node_inputs(state: ServerState) -> Params:
        """Node i's gradient correction ``c − c_i``, stacked [K]."""
        controls = state.opt_state
        return jax.tree.map(lambda c_i, c: c - c_i, controls.nodes, controls.server)

    def client_update(params: Params, node, rng, correction: Params) -> ClientResult:  # noqa: ANN001
        return local_update(params, node, rng, correction)

    def aggregate(
        state: ServerState, results: ClientResult, weights: jax.Array, rng: jax.Array | None = None
    ) -> ServerState:
        del rng  # deterministic
        x, controls = state.params, state.opt_state
        num_nodes = weights.shape[0]
        took_part = weights > 0
        average = weighted_mean(results.params, weights)
        new_x = jax.tree.map(lambda g, a: g + global_lr * (a - g), x, average)

        def node_control(c_i: jax.Array, c: jax.Array, y_i: jax.Array, x_leaf: jax.Array) -> jax.Array:
            updated = c_i - c + (x_leaf - y_i) / (steps * local_lr)
            mask = took_part.reshape((-1,) + (1,) * (c_i.ndim - 1))
            return jnp.where(mask, updated, c_i)

        new_nodes = jax.tree.map(node_control, controls.nodes, controls.server, results.params, x)
        new_server = jax.tree.map(
            lambda c, new, old: c + jnp.sum(new - old, axis=0) / num_nodes,
            controls.server,
            new_nodes,
            controls.nodes,
        )
        return ServerState(new_x, ScaffoldControls(new_server, new_nodes), state.round + 1)

    return FederatedAlgorithm(
        init=init, client_update=client_update, aggregate=aggregate, node_inputs=node_inputs
    )
