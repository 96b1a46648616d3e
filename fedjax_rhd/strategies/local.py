"""``local`` and ``centralized``: the study's reference columns as strategies.

``local`` keeps one model per node and never aggregates (each node alone, the
"isolated" cells of the study's Table 2). ``centralized`` is the same
algorithm run on a single node holding every training row (the data layer
pools them), so both columns come from the same sweep machinery.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rhd.strategies.client import ClientConfig, make_client_update
from fedjax_rhd.typing import ClientResult, FederatedAlgorithm, Params, ServerState, SurvivalModel


def local(model: SurvivalModel, client: ClientConfig) -> FederatedAlgorithm:
    """Every node trains alone from the same initial parameters."""

    def init(params: Params, num_nodes: int) -> ServerState:
        stacked = jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_nodes, *leaf.shape)), params)
        return ServerState(params=stacked, opt_state=(), round=jnp.zeros((), jnp.int32))

    def aggregate(
        state: ServerState, results: ClientResult, weights: jax.Array, rng: jax.Array | None = None
    ) -> ServerState:
        del rng  # nothing is drawn: no aggregation, no noise

        # Nothing is shared; a node that sat the round out (weight 0: not
        # sampled, failed, too slow) keeps the model it had.
        def keep_if_absent(new: jax.Array, old: jax.Array) -> jax.Array:
            took_part = (weights > 0).reshape((-1,) + (1,) * (new.ndim - 1))
            return jnp.where(took_part, new, old)

        params = jax.tree.map(keep_if_absent, results.params, state.params)
        return ServerState(params, state.opt_state, state.round + 1)

    return FederatedAlgorithm(
        init=init, client_update=make_client_update(model, client), aggregate=aggregate, personalized=True
    )


centralized = local  # on pooled data (one node) local training *is* centralised training
