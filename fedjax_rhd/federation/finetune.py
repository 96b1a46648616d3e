"""Local fine-tuning of the final global model on each node (personalisation).

After federation each node may continue training the global model on its own
training rows for a few full-batch steps, the simple personalisation baseline
of Wang et al., "Federated Evaluation of On-device Personalization" (2019) and
Yu et al., "Salvaging Federated Learning by Local Adaptation" (2020). The result
is a personalised model per node, scored on the global test set beside the
global model. No proximal term: the point is to move towards the node's data.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rhd.data.federated import FederatedData
from fedjax_rhd.federation.simulator import stacked_risks
from fedjax_rhd.metrics.concordance import bootstrap_cindex
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from fedjax_rhd.strategies.client import make_client_update
from fedjax_rhd.typing import NodeData, Params

# fold_in stream of seed.train for fine-tuning; rounds use 1..rounds+1.
FINETUNE_STREAM = 2**31 - 1


@functools.partial(jax.jit, static_argnames=("spec", "epochs"))
def finetune_nodes(
    spec: AlgorithmSpec, params: Params, train: NodeData, rng: jax.Array, epochs: int
) -> Params:
    """Stacked [K] parameters: ``params`` after ``epochs`` local steps on each node.

    Args:
        spec: the run's algorithm (model and client optimiser are reused).
        params: the final global parameters (no node axis).
        train: stacked node training data [K, n, ...].
        rng: fine-tuning key; node k uses ``fold_in(rng, k)``.
        epochs: full-batch local steps.
    """
    client = dataclasses.replace(spec.client, local_epochs=epochs, proximal_mu=None)
    update = make_client_update(build_model(spec), client)
    keys = jax.vmap(lambda k: jax.random.fold_in(rng, k))(jnp.arange(train.x.shape[0]))
    return jax.vmap(update, in_axes=(None, 0, 0))(params, train, keys).params


def finetune_key(seed_train: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed_train), FINETUNE_STREAM)


def finetuned_results(
    spec: AlgorithmSpec,
    epochs: int,
    seed_train: int,
    global_params: Params | None,
    data: FederatedData,
    boot: dict[str, Any],
) -> dict[str, Any] | None:
    """Fine-tune and score on the global test set: ``final.personalized`` and prediction columns.

    Returns None when ``epochs`` is 0. Raises ``ValueError`` for strategies
    without a global model (``local`` and ``centralized`` are already per node).
    """
    if epochs == 0:
        return None
    if global_params is None:
        raise ValueError(f"strategy.finetune_epochs applies to federated strategies, not {spec.algorithm}")
    train = jax.tree.map(jnp.asarray, data.train)
    tuned = finetune_nodes(spec, global_params, train, finetune_key(seed_train), epochs)
    risks = np.asarray(stacked_risks(spec, tuned, jnp.asarray(data.test.x), data.test.observed))
    time_np, event_np = np.asarray(data.test.time), np.asarray(data.test.event)
    nodes = [
        {"name": name, "c_index_test": bootstrap_cindex(time_np, event_np, risk, **boot)}
        for name, risk in zip(data.node_names, risks, strict=True)
    ]
    columns = {f"risk_{name}_finetuned": risk for name, risk in zip(data.node_names, risks, strict=True)}
    return {"final": {"epochs": epochs, "nodes": nodes}, "columns": columns}
