"""Local training on one node: the client half shared by every gradient strategy.

A node runs ``local_epochs`` full-batch optimiser steps on its own rows. Cox
risk sets need the node's whole (time-sorted) data, so a full batch is the
natural unit; each step draws its dropout key from ``fold_in(rng, step)``.

FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys
2020) only changes this objective: ``loss(w) + μ/2 ‖w − w_global‖²`` keeps
each node near the round's global model. ``proximal_mu=None`` leaves the term
out (FedAvg); a number, even 0, puts it in (FedProx).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import optax

from fedjax_rhd.typing import ClientResult, NodeData, Params, PRNGKey, SurvivalModel

CLIENT_OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd, "adamw": optax.adamw}


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Hyperparameters of local training (hashable: part of the jit cache key)."""

    optimizer: str = "adam"  # Adam as in DeepSurv (Katzman et al. 2018)
    learning_rate: float = 1e-3  # small: nodes must not drift far within a round
    local_epochs: int = 5  # full-batch steps per round; FedAvg's E
    proximal_mu: float | None = None  # FedProx's μ; None = no proximal term (FedAvg)

    def __post_init__(self) -> None:
        if self.optimizer not in CLIENT_OPTIMIZERS:
            raise ValueError(
                f"client optimizer {self.optimizer!r}: expected one of {sorted(CLIENT_OPTIMIZERS)}"
            )
        if self.local_epochs < 1 or self.learning_rate <= 0:
            raise ValueError("client local_epochs must be >= 1 and learning_rate > 0")
        if self.proximal_mu is not None and self.proximal_mu < 0:
            raise ValueError(f"FedProx proximal_mu must be >= 0, got {self.proximal_mu}")


def proximal_term(params: Params, anchor: Params) -> jax.Array:
    """``‖params − anchor‖²`` summed over every leaf."""
    leaves = jax.tree.leaves(jax.tree.map(lambda p, a: jnp.sum((p - a) ** 2), params, anchor))
    return sum(leaves[1:], leaves[0])


def make_client_update(model: SurvivalModel, config: ClientConfig):  # noqa: ANN201 - returns a pure function
    """Return ``client_update(params, node, rng) -> ClientResult``.

    The optimiser state starts fresh every round (it is local to the node and
    never aggregated), as in McMahan et al. 2017.
    """
    optimizer = CLIENT_OPTIMIZERS[config.optimizer](config.learning_rate)
    mu = config.proximal_mu

    def objective(p: Params, anchor: Params, node: NodeData, rng: PRNGKey) -> tuple[jax.Array, jax.Array]:
        loss, _ = model.loss(p, node, rng)
        if mu is None:
            return loss, loss
        # The reported loss stays the model's own, comparable across strategies.
        return loss + 0.5 * mu * proximal_term(p, anchor), loss

    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def client_update(params: Params, node: NodeData, rng: PRNGKey) -> ClientResult:
        def step(carry: tuple, step_index: jax.Array) -> tuple:
            p, opt_state = carry
            (_, loss), grads = grad_fn(p, params, node, jax.random.fold_in(rng, step_index))
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), loss

        (new_params, _), losses = jax.lax.scan(
            step, (params, optimizer.init(params)), jnp.arange(config.local_epochs)
        )
        return ClientResult(
            params=new_params,
            num_examples=node.weight.sum(),
            metrics={"train_loss": losses[-1]},
        )

    return client_update
