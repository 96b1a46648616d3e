"""Record-level differential privacy inside each node: DP-SGD and its privacy accounting.

Abadi M, Chu A, Goodfellow I, McMahan HB, Mironov I, Talwar K, Zhang L. "Deep Learning
with Differential Privacy", ACM CCS 2016. Each local step of a node

1. samples its minibatch by **Poisson sampling**: every real row of the node joins
   independently with probability ``q = min(1, batch_size / n_k)`` (``n_k`` the node's
   training rows). The draw is a mask over the node's rows, so shapes stay static under
   ``jit`` and ``vmap``; the batch's size is random with mean ``q · n_k``;
2. computes one gradient per sampled row (``jax.vmap`` of ``jax.grad`` over the rows, each
   row's loss on its own), clips each to L2 norm ``clip``, sums them and adds Gaussian noise
   ``N(0, σ² clip²)`` per coordinate;
3. divides by the *expected* batch size ``q · n_k`` (not the drawn one, which would leak it).

Adding or removing one row of the node changes the clipped sum by at most ``clip``, so one
step is the sampled Gaussian mechanism; a node's released models compose ``steps × rounds``
of them. The accountant is the maintained ``dp-accounting`` library's RDP accountant
(Mironov 2017; Mironov, Talwar & Zhang 2019 for the sampled Gaussian) on
``SelfComposedDpEvent(PoissonSampledDpEvent(q, GaussianDpEvent(σ)), steps × rounds)``,
under the add-or-remove-one-row relation, per node (each node has its own ``q``).

Well defined only for losses that are sums over rows (SAVAE, VAE-BGM: reconstruction +
Weibull time likelihood + KL per row). The Cox partial likelihood is not: a row's term
holds the risk-set sum over every row still at risk, so one row changes the others' terms
and a per-row gradient does not bound its influence (``AlgorithmSpec`` refuses it).

Keys: a step's sampling mask comes from ``fold_in(step key, BATCH_STREAM)`` (the stream the
minibatch path uses), row ``i``'s dropout and reparameterisation key from
``fold_in(step key, i)`` folded once more with ``ROW_STREAM``, the noise from
``fold_in(step key, NOISE_STREAM)``: pure functions of (seed, round, node, step), so the
simulator and Flower's nodes draw the same batches and noise.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from fedjax_rhd.typing import NodeData, Params, PRNGKey

NOISE_STREAM = 0x6E6F  # "no": the step's DP-SGD noise
ROW_STREAM = 0x726F  # "ro": row i's loss key is fold_in(fold_in(step key, ROW_STREAM), i)


@dataclasses.dataclass(frozen=True)
class DPSGDConfig:
    """``strategy.client.dp_sgd``: record-level DP-SGD inside each node (hashable: part of the jit key).

    Attributes:
        clip: L2 bound ``C`` of each row's gradient; None = no DP-SGD (the default).
        noise_multiplier: σ; the summed gradient's noise has standard deviation σ · C.
        delta: the δ at which each node's ε is reported (below 1 / the node's rows).
    """

    clip: float | None = None
    noise_multiplier: float = 1.0
    delta: float = 1e-5

    def __post_init__(self) -> None:
        if self.clip is not None and not self.clip > 0:
            raise ValueError(f"strategy.client.dp_sgd.clip must be > 0 or null (off), got {self.clip}")
        if self.noise_multiplier < 0:
            raise ValueError(
                f"strategy.client.dp_sgd.noise_multiplier must be >= 0, got {self.noise_multiplier}"
            )
        if not 0 < self.delta < 1:
            raise ValueError(f"strategy.client.dp_sgd.delta must be in (0, 1), got {self.delta}")

    @property
    def enabled(self) -> bool:
        return self.clip is not None


def sampling_rate(batch_size: int, n_rows: jax.Array | int) -> jax.Array:
    """``q = min(1, batch_size / n_rows)``: each row's chance to join a step's batch."""
    return jnp.minimum(1.0, batch_size / jnp.maximum(jnp.asarray(n_rows, jnp.float32), 1.0))


def poisson_mask(node: NodeData, key: PRNGKey, batch_size: int) -> jax.Array:
    """f32[n] 1 for the rows of this step's Poisson-sampled batch, 0 otherwise (padding never)."""
    q = sampling_rate(batch_size, node.weight.sum())
    joins = jax.random.bernoulli(key, q, node.weight.shape)
    return jnp.where((node.weight > 0) & joins, 1.0, 0.0).astype(jnp.float32)


RowLoss = Callable[[Params, NodeData, Any], jax.Array]
"""``(params, one-row batch, key or None) -> f32[]``: a row's loss."""


def per_row_gradients(row_loss: RowLoss, params: Params, node: NodeData, key: PRNGKey | None) -> Params:
    """Each row's gradient, stacked on a leading [n] axis (``jax.vmap`` of ``jax.grad``).

    Row ``i`` sees a one-row batch and, with ``key`` set, its own key
    ``fold_in(fold_in(key, ROW_STREAM), i)``; ``key=None`` passes None (deterministic loss).
    """
    n = node.weight.shape[0]
    one_row = node._replace(risk_set_end=jnp.zeros_like(node.risk_set_end))  # no risk sets: rows stand alone

    def grad_one(row: NodeData, index: jax.Array) -> Params:
        batch = jax.tree.map(lambda leaf: leaf[None], row)
        row_key = None if key is None else jax.random.fold_in(jax.random.fold_in(key, ROW_STREAM), index)
        return jax.grad(row_loss)(params, batch, row_key)

    return jax.vmap(grad_one)(one_row, jnp.arange(n))


def private_gradient(
    row_loss: RowLoss,
    params: Params,
    node: NodeData,
    mask: jax.Array,
    key: PRNGKey | None,
    noise_key: PRNGKey,
    config: DPSGDConfig,
    expected_batch: jax.Array,
) -> Params:
    """``(Σ_i mask_i · clip(∇ℓ_i) + N(0, σ² C²)) / expected_batch``, Abadi et al. 2016's step.

    Args:
        row_loss: a row's loss (see :data:`RowLoss`).
        params: where the gradients are taken.
        node: the node's rows (padding carries weight 0).
        mask: f32[n] the sampled rows (:func:`poisson_mask`).
        key: the rows' loss keys come from it; None = deterministic losses.
        noise_key: the Gaussian noise's key.
        config: clip and noise multiplier.
        expected_batch: the divisor ``q · n_k``.
    """
    grads = per_row_gradients(row_loss, params, node, key)
    leaves, treedef = jax.tree.flatten(grads)
    norms = jnp.sqrt(sum(jnp.sum(jnp.square(g).reshape(g.shape[0], -1), axis=1) for g in leaves))
    scale = jnp.where(mask > 0, jnp.minimum(1.0, config.clip / jnp.maximum(norms, 1e-12)), 0.0)

    def weighted_sum(g: jax.Array) -> jax.Array:
        # an unsampled row's gradient is never read: 0 · nan would still be nan
        rows = jnp.where((mask > 0).reshape(-1, *([1] * (g.ndim - 1))), g, 0.0)
        return jnp.tensordot(scale.astype(g.dtype), rows, axes=1)

    summed = [weighted_sum(g) for g in leaves]
    keys = jax.random.split(noise_key, len(summed))
    std = config.noise_multiplier * config.clip
    noisy = [
        (s + (std * jax.random.normal(k, s.shape, jnp.float32)).astype(s.dtype)) / expected_batch
        for s, k in zip(summed, keys, strict=True)
    ]
    return jax.tree.unflatten(treedef, noisy)


def epsilon(noise_multiplier: float, q: float, steps: int, delta: float) -> float:
    """ε of ``steps`` Poisson-sampled Gaussian mechanisms (rate ``q``, σ) at ``delta``, RDP accountant.

    ``dp-accounting``'s RDP accountant under add-or-remove-one-row; σ = 0 is no privacy (∞).
    """
    import dp_accounting
    from dp_accounting import rdp

    if steps == 0:
        return 0.0
    if noise_multiplier == 0:
        return float("inf")
    acc = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    event = dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(noise_multiplier))
    # The accountant warns for each Rényi order below ~2 whose series does not converge and leaves it
    # out; ε is the minimum over the remaining orders, still a valid bound: keep the log quiet.
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)
    try:
        acc.compose(dp_accounting.SelfComposedDpEvent(event, steps))
        return float(acc.get_epsilon(delta))
    finally:
        absl_log.setLevel(level)


def _finite(value: float) -> float | None:
    return value if value != float("inf") else None


def privacy_summary(
    config: DPSGDConfig, batch_size: int, steps_per_round: int, rounds: int, nodes: Sequence[tuple[str, int]]
) -> dict[str, Any]:
    """What ``results.json`` records under ``final.dp_sgd``: each node's q and ε, and the worst ε.

    Args:
        config: the DP-SGD settings.
        batch_size: the expected batch size asked for (``strategy.client.batch_size``).
        steps_per_round: local steps a node runs per round.
        rounds: rounds accounted (every round run, whether or not the node was asked: an upper bound).
        nodes: ``(name, training rows)`` per node.
    """
    import importlib.metadata

    steps = steps_per_round * rounds
    per_node = []
    for name, n in nodes:
        q = min(1.0, batch_size / max(int(n), 1))  # exact on the host; the step draws with its f32 value
        eps = epsilon(config.noise_multiplier, q, steps, config.delta)
        # σ = 0: no guarantee; JSON has no infinity, so null
        per_node.append({"name": name, "n_train": int(n), "sampling_rate": q, "epsilon_rdp": _finite(eps)})
    finite = [node["epsilon_rdp"] for node in per_node]
    return {
        "level": "record (one patient row of a node)",
        "neighbouring_relation": "add or remove one row of one node",
        "sampling": "Poisson, rate min(1, batch_size / node rows), per local step",
        "clip": config.clip,
        "noise_multiplier": config.noise_multiplier,
        "delta": config.delta,
        "batch_size": batch_size,
        "steps_per_round": steps_per_round,
        "rounds_accounted": rounds,
        "epsilon_rdp": None if None in finite else max(finite),
        "nodes": per_node,
        "accountant": f"dp-accounting {importlib.metadata.version('dp-accounting')} (RDP)",
    }


def summary_row(dp: dict[str, Any]) -> tuple[str, str]:
    """The run summary's line for ``final.dp_sgd``: the worst node's ε, its q, the steps accounted."""
    if dp["epsilon_rdp"] is None:
        eps = "ε = ∞ (noise multiplier 0: no guarantee)"
    else:
        worst = max(dp["nodes"], key=lambda node: node["epsilon_rdp"])
        eps = f"ε = {dp['epsilon_rdp']:.2f} (RDP, worst node {worst['name']}, q={worst['sampling_rate']:.3f})"
    return (
        f"record-level DP-SGD (σ={dp['noise_multiplier']}, clip={dp['clip']}, δ={dp['delta']:g})",
        f"{eps}, {dp['steps_per_round']} steps × {dp['rounds_accounted']} rounds",
    )
