"""Local fine-tuning of the final global model on each node (personalisation).

After federation each node may continue training the global model on its own
training rows for a few full-batch steps, the simple personalisation baseline
of Wang et al., "Federated Evaluation of On-device Personalization" (2019) and
Yu et al., "Salvaging Federated Learning by Local Adaptation" (2020). The result
is a personalised model per node, scored on the global test set beside the
global model. No proximal term: the point is to move towards the node's data.
The nodes fine-tune where their rows are (``Backend.finetune``: vmapped in the
simulator, a ``train.finetune`` message under Flower).
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.metrics.concordance import bootstrap_cindex
from fedjax_rhd.typing import NodeData, Params

# fold_in stream of seed.train for fine-tuning; rounds use 1..rounds+1.
FINETUNE_STREAM = 2**31 - 1


def finetune_key(seed_train: int) -> jax.Array:
    return jax.random.fold_in(jax.random.key(seed_train), FINETUNE_STREAM)


def finetuned_results(
    backend: Backend,
    epochs: int,
    seed_train: int,
    global_params: Params | None,
    test: NodeData,
    boot: dict[str, Any],
) -> dict[str, Any] | None:
    """Fine-tune on every node and score on the global test set: ``final.personalized``, columns, params.

    ``params`` is the fine-tuned models stacked over nodes (kept in ``params.npz`` as ``finetuned``).

    Returns None when ``epochs`` is 0. Raises ``ValueError`` for strategies
    without a global model (``local`` and ``centralized`` are already per node).
    """
    if epochs == 0:
        return None
    if global_params is None:
        raise ValueError("strategy.finetune_epochs applies to federated strategies, not local or centralized")
    tuned = backend.finetune(global_params, finetune_key(seed_train), epochs)
    risks = backend.test_risks(tuned)
    time_np, event_np = np.asarray(test.time), np.asarray(test.event)
    names = backend.node_names
    nodes = [
        {"name": name, "c_index_test": bootstrap_cindex(time_np, event_np, risk, **boot)}
        for name, risk in zip(names, risks, strict=True)
    ]
    columns = {f"risk_{name}_finetuned": risk for name, risk in zip(names, risks, strict=True)}
    return {"final": {"epochs": epochs, "nodes": nodes}, "columns": columns, "params": tuned}
