"""``bn_two_step``: the Bayesian network's two-round protocol, a strategy without gradient rounds.

Round 1: every node learns a structure on its own rows and sends its edges; the manager forms a
consensus DAG. Round 2: every node sends its family counts for that DAG; the manager sums them
into the Dirichlet posterior (``fedjax_rhd.federation.bn_protocol``, ``docs/synthetic.md``). Its
rounds are node statistics, not parameter updates, so the ``FederatedAlgorithm`` below only gives
the round loop's shape (a global model, an empty parameter tree) and refuses a gradient round:
``fedjax_rhd.experiment`` hands a model fitted from counts (``ModelEntry.from_counts``) to the
protocol instead of the round loop.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from fedjax_rhd.typing import FederatedAlgorithm, Params, ServerState


def _no_gradient_round(*args: Any, **kwargs: Any) -> Any:
    del args, kwargs
    raise ValueError(
        "strategy bn_two_step has no gradient rounds: its rounds are node statistics "
        "(fedjax_rhd.federation.bn_protocol), run by fedjax_rhd.experiment for model=bn"
    )


def bn_two_step() -> FederatedAlgorithm:
    """The protocol's place in the algorithm registry (nothing personalised, nothing to aggregate)."""

    def init(params: Params, num_nodes: int) -> ServerState:
        del num_nodes
        return ServerState(params=params, opt_state=(), round=jnp.zeros((), jnp.int32))

    return FederatedAlgorithm(init=init, client_update=_no_gradient_round, aggregate=_no_gradient_round)
