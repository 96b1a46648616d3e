"""Local training on one node: the client half shared by every gradient strategy.

By default a node runs ``local_epochs`` full-batch optimiser steps on its own
rows: Cox risk sets need the node's whole (time-sorted) data, so a full batch is
the exact partial likelihood. With ``batch_size`` set it runs ``local_steps``
minibatch steps instead (McMahan et al. 2017's local SGD), each on
``batch_size`` of the node's rows drawn **without replacement** within the step
(independently between steps): a batch never repeats a patient, so its Cox risk
sets are genuine subsets of the node's, and a node smaller than the batch
trains on all its rows plus masked padding (weight 0), so every node has the
batch's shape and the round stays one compiled, vmapped program. The rows keep
the node's time order, so a batch's Breslow risk set of row i is the batch rows
with time >= t_i (the usual DeepSurv practice, Katzman et al. 2018). That
minibatch partial likelihood is a *biased* estimate of the node's: the log of a
subsampled risk-set sum is not the log of the full one scaled, so the bias
(towards the risk sets' small-sample log-sum) shrinks as ``batch_size`` grows
and vanishes at the node's size, where a step equals the full-batch step.
Step ``s`` draws its dropout key as ``fold_in(rng, s)`` and its batch from
``fold_in(fold_in(rng, s), BATCH_STREAM)``: pure functions of (seed, round,
node, step), so every backend trains on the same batches.

With ``dp_sgd.clip`` set (record-level DP, ``strategies/dp_sgd.py``) a step
instead Poisson-samples its batch (each real row with probability
``batch_size / n_k``: a mask over the node's rows from the same batch key, so
shapes stay static), clips each row's gradient, adds seeded Gaussian noise and
divides by the expected batch size. FedProx's term and SCAFFOLD's correction,
which read no rows, are added after the noise.

FedProx (Li et al., "Federated Optimization in Heterogeneous Networks", MLSys
2020) only changes this objective: ``loss(w) + μ/2 ‖w − w_global‖²`` keeps
each node near the round's global model. ``proximal_mu=None`` leaves the term
out (FedAvg); a number, even 0, puts it in (FedProx).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import optax

from fedjax_rhd.strategies.dp_sgd import NOISE_STREAM, DPSGDConfig, poisson_mask, private_gradient
from fedjax_rhd.typing import ClientResult, NodeData, Params, PRNGKey, SurvivalModel

CLIENT_OPTIMIZERS = {"adam": optax.adam, "sgd": optax.sgd, "adamw": optax.adamw}


@dataclasses.dataclass(frozen=True)
class ClientConfig:
    """Hyperparameters of local training (hashable; the learning rate and step count are traced, not part of
    the jit key: ``strategies/traced.py``)."""

    optimizer: str = "adam"  # Adam as in DeepSurv (Katzman et al. 2018)
    learning_rate: float = 1e-3  # small: nodes must not drift far within a round
    local_epochs: int = 5  # full-batch steps per round (batch_size None); FedAvg's E
    proximal_mu: float | None = None  # FedProx's μ; None = no proximal term (FedAvg)
    batch_size: int | None = None  # rows per local step; None = the node's full batch (exact Cox likelihood)
    local_steps: int | None = None  # minibatch steps per round (batch_size set); None = local_epochs
    # record-level DP-SGD (Poisson batches of expected size batch_size, strategies/dp_sgd.py); clip null = off
    dp_sgd: DPSGDConfig = DPSGDConfig()

    def __post_init__(self) -> None:
        if isinstance(self.dp_sgd, dict):  # from JSON (Flower's spec message)
            object.__setattr__(self, "dp_sgd", DPSGDConfig(**self.dp_sgd))
        if self.optimizer not in CLIENT_OPTIMIZERS:
            raise ValueError(
                f"client optimizer {self.optimizer!r}: expected one of {sorted(CLIENT_OPTIMIZERS)}"
            )
        if self.local_epochs < 1 or self.learning_rate <= 0:
            raise ValueError("client local_epochs must be >= 1 and learning_rate > 0")
        if self.proximal_mu is not None and self.proximal_mu < 0:
            raise ValueError(f"FedProx proximal_mu must be >= 0, got {self.proximal_mu}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ValueError(f"strategy.client.batch_size must be >= 2 rows or null, got {self.batch_size}")
        if self.local_steps is not None and self.local_steps < 1:
            raise ValueError(f"strategy.client.local_steps must be >= 1 or null, got {self.local_steps}")
        if self.local_steps is not None and self.batch_size is None:
            raise ValueError(
                "strategy.client.local_steps counts minibatch steps: set strategy.client.batch_size too "
                "(full-batch training takes strategy.client.local_epochs)"
            )
        if self.dp_sgd.enabled and self.batch_size is None:
            raise ValueError(
                "strategy.client.dp_sgd samples Poisson minibatches of expected size "
                "strategy.client.batch_size: set it (full-batch steps get no sampling amplification)"
            )

    @property
    def steps(self) -> int:
        """Optimiser steps per round: ``local_steps`` with minibatches (default ``local_epochs``)."""
        if self.batch_size is not None and self.local_steps is not None:
            return self.local_steps
        return self.local_epochs


# Folded into a step's key for its batch ("ba"); the dropout key stays fold_in(rng, step).
BATCH_STREAM = 0x6261


def rows_per_step(config: ClientConfig, n_train: Sequence[int]) -> list[int]:
    """Rows each node trains on per local step: its rows, or at most ``batch_size`` of them."""
    if config.batch_size is None:
        return [int(n) for n in n_train]
    return [min(int(n), config.batch_size) for n in n_train]


def minibatch(node: NodeData, key: PRNGKey, batch_size: int) -> NodeData:
    """``batch_size`` of the node's real rows without replacement, in the node's time order.

    Padding rows (weight 0) are drawn only when the node has fewer real rows than
    ``batch_size``; they stay masked. Risk-set ends are re-indexed into the batch:
    the last batch row whose node row is in the same tie group.

    Args:
        node: one node's rows, sorted by descending time, padding last.
        key: the step's batch key.
        batch_size: rows per batch (static); at least the node's padded size returns ``node``.
    """
    n = node.x.shape[0]
    if batch_size >= n:
        return node
    # Random keys for real rows, +inf for padding: the smallest batch_size are a uniform
    # draw without replacement of the real rows (all of them, then padding, for a small node).
    scores = jnp.where(node.weight > 0, jax.random.uniform(key, (n,)), jnp.inf)
    _, chosen = jax.lax.top_k(-scores, batch_size)
    rows = jnp.sort(chosen)  # node order = descending time: the batch keeps the Cox layout
    batch = jax.tree.map(lambda leaf: jnp.take(leaf, rows, axis=0), node)
    group_end = jnp.take(node.risk_set_end, rows)
    ends = jnp.searchsorted(rows, group_end, side="right").astype(jnp.int32) - 1
    return batch._replace(risk_set_end=ends)


def proximal_term(params: Params, anchor: Params) -> jax.Array:
    """``‖params − anchor‖²`` summed over every leaf."""
    leaves = jax.tree.leaves(jax.tree.map(lambda p, a: jnp.sum((p - a) ** 2), params, anchor))
    return sum(leaves[1:], leaves[0])


def make_client_update(model: SurvivalModel, config: ClientConfig):  # noqa: ANN201 - returns a pure function
    """Return ``client_update(params, node, rng, correction=None) -> ClientResult``.

    The optimiser state starts fresh every round (it is local to the node and
    never aggregated), as in McMahan et al. 2017. ``correction`` (a pytree like
    ``params``) is added to every step's gradient: SCAFFOLD's ``c − c_i``
    (``strategies/scaffold.py``); None adds nothing.

    A model with its own local step (``GenerativeModel.local_training``: CTGAN's critic +
    generator pair) runs that step instead of the optimiser on ``grad(loss)``, on the same
    batches and keys; FedProx, DP-SGD and SCAFFOLD, which change that gradient, are refused.
    """
    optimizer = CLIENT_OPTIMIZERS[config.optimizer](config.learning_rate)
    mu = config.proximal_mu
    batch_size = config.batch_size
    own = getattr(model, "local_training", None)
    if own is not None and (mu is not None or config.dp_sgd.enabled):
        raise ValueError(
            "this model trains with its own local step (a GAN's critic and generator updates): "
            "strategy.client.proximal_mu (FedProx) and strategy.client.dp_sgd do not apply"
        )

    def objective(p: Params, anchor: Params, node: NodeData, rng: PRNGKey) -> tuple[jax.Array, jax.Array]:
        loss, _ = model.loss(p, node, rng)
        if mu is None:
            return loss, loss
        # The reported loss stays the model's own, comparable across strategies.
        return loss + 0.5 * mu * proximal_term(p, anchor), loss

    grad_fn = jax.value_and_grad(objective, has_aux=True)
    dp_sgd = config.dp_sgd

    def row_loss(p: Params, row: NodeData, key: PRNGKey | None) -> jax.Array:
        return model.loss(p, row, key)[0]

    def private_step(
        p: Params, anchor: Params, node: NodeData, step_key: PRNGKey
    ) -> tuple[jax.Array, Params]:
        """DP-SGD's gradient of the model's loss (plus the row-free proximal term) and the batch's loss."""
        mask = poisson_mask(node, jax.random.fold_in(step_key, BATCH_STREAM), batch_size)
        expected = jnp.minimum(float(batch_size), node.weight.sum())  # q · n_k
        grads = private_gradient(
            row_loss, p, node, mask, step_key, jax.random.fold_in(step_key, NOISE_STREAM), dp_sgd, expected
        )
        if mu is not None:
            grads = jax.tree.map(lambda g, a, b: g + mu * (a - b), grads, p, anchor)
        loss, _ = model.loss(p, node._replace(weight=mask), step_key)  # reported only, never differentiated
        return loss, grads

    def client_update(
        params: Params, node: NodeData, rng: PRNGKey, correction: Params | None = None
    ) -> ClientResult:
        def step(carry: tuple, step_index: jax.Array) -> tuple:
            p, opt_state = carry
            step_key = jax.random.fold_in(rng, step_index)
            if own is not None:
                if correction is not None:
                    raise ValueError(
                        "SCAFFOLD's gradient correction does not apply to a model's own local step"
                    )
                batch = node
                if batch_size is not None:
                    batch = minibatch(node, jax.random.fold_in(step_key, BATCH_STREAM), batch_size)
                p, opt_state, loss = own.step(p, opt_state, batch, step_key)
                return (p, opt_state), loss
            if dp_sgd.enabled:
                loss, grads = private_step(p, params, node, step_key)
            else:
                batch = node
                if batch_size is not None:
                    batch = minibatch(node, jax.random.fold_in(step_key, BATCH_STREAM), batch_size)
                (_, loss), grads = grad_fn(p, params, batch, step_key)
            if correction is not None:
                grads = jax.tree.map(jnp.add, grads, correction)
            updates, opt_state = optimizer.update(grads, opt_state, p)
            return (optax.apply_updates(p, updates), opt_state), loss

        steps = config.steps
        init_opt = optimizer.init if own is None else own.init
        if isinstance(steps, int):  # a compiled-in count
            (new_params, _), losses = jax.lax.scan(step, (params, init_opt(params)), jnp.arange(steps))
            last_loss = losses[-1]
        else:  # a traced count (strategies/traced.py): a loop whose bound is an input, the last loss carried

            def body(index: jax.Array, carry: tuple) -> tuple:
                state, loss = step(carry[:2], index)
                return (*state, loss)

            start = (params, init_opt(params), jnp.zeros((), jnp.float32))
            new_params, _, last_loss = jax.lax.fori_loop(0, steps, body, start)
        return ClientResult(
            params=new_params,
            num_examples=node.weight.sum(),
            metrics={"train_loss": last_loss},
        )

    return client_update
