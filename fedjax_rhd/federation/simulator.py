"""In-process federation: nodes stacked, ``client_update`` vmapped, round jitted.

The jitted functions are module-level with the hashable ``AlgorithmSpec`` as
their only static argument, so every job of a multirun with the same spec and
array shapes reuses one executable (a factory building a fresh closure per job
would recompile every job). ``TRACE_COUNTS`` counts traces, i.e. compilations
of the round, for the benchmark and the multirun check.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fedjax_rhd.data import FederatedData
from fedjax_rhd.strategies import AlgorithmSpec, build_algorithm, build_model
from fedjax_rhd.typing import ClientResult, NodeData, Params, ServerState

TRACE_COUNTS: collections.Counter[str] = collections.Counter()


@functools.partial(jax.jit, static_argnames=("spec",))
def federated_round(
    spec: AlgorithmSpec, state: ServerState, train: NodeData, rng: jax.Array
) -> tuple[ServerState, ClientResult]:
    """One round: every node updates from the server's parameters, then aggregate.

    Args:
        spec: static algorithm description (strategy, model, hyperparameters).
        state: server state; under a personalised strategy params carry a node axis.
        train: stacked node data [K, n, ...].
        rng: this round's key; node k uses ``fold_in(rng, k)``.
    """
    TRACE_COUNTS["round"] += 1  # runs only while tracing: counts compilations
    algorithm = build_algorithm(spec)
    num_nodes = train.x.shape[0]
    keys = jax.vmap(lambda k: jax.random.fold_in(rng, k))(jnp.arange(num_nodes))
    params_axis = 0 if algorithm.personalized else None
    results = jax.vmap(algorithm.client_update, in_axes=(params_axis, 0, 0))(state.params, train, keys)
    return algorithm.aggregate(state, results, results.num_examples), results


@functools.partial(jax.jit, static_argnames=("spec",))
def node_losses(spec: AlgorithmSpec, stacked_params: Params, data: NodeData) -> jax.Array:
    """f32[K] each node's evaluation loss (no dropout) of its own parameters."""
    TRACE_COUNTS["eval"] += 1
    model = build_model(spec)
    return jax.vmap(lambda p, d: model.loss(p, d, None)[0])(stacked_params, data)


@functools.partial(jax.jit, static_argnames=("spec",))
def stacked_risks(
    spec: AlgorithmSpec, stacked_params: Params, x: jax.Array, observed: jax.Array
) -> jax.Array:
    """f32[K, n] risk of every parameter set on the same rows."""
    TRACE_COUNTS["risk"] += 1
    model = build_model(spec)
    return jax.vmap(model.risk, in_axes=(0, None, None))(stacked_params, x, observed)


def broadcast(params: Params, num_nodes: int) -> Params:
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_nodes, *leaf.shape)), params)


@dataclasses.dataclass(frozen=True)
class TrainSchedule:
    """Rounds and early stopping (typed view of the strategy config)."""

    rounds: int = 30  # maximum communication rounds
    patience: int | None = 10  # stop after this many rounds without federated-validation gain
    seed_init: int = 0  # model initialisation
    seed_train: int = 0  # dropout keys: fold_in(seed, round, node, step)


@dataclasses.dataclass
class SimulationResult:
    """What the backend hands back to the experiment driver."""

    best_round: int
    global_params: Params | None  # None under personalised strategies
    node_params: Params  # stacked [K]: the model node k holds at the end
    rounds: list[dict]
    round_seconds: list[float]
    first_round_seconds: float


def _select(mask: np.ndarray, new: Params, old: Params) -> Params:
    def pick(n: jax.Array, o: jax.Array) -> jax.Array:
        m = mask.reshape((-1,) + (1,) * (n.ndim - 1))
        return jnp.where(m, n, o)

    return jax.tree.map(pick, new, old)


def run_simulation(
    spec: AlgorithmSpec,
    data: FederatedData,
    schedule: TrainSchedule,
    *,
    on_round: Callable[[dict], None] | None = None,
    progress: bool = True,
) -> SimulationResult:
    """Train ``spec`` over ``data``'s nodes; select rounds by federated validation.

    Validation loss per node is computed on the node's own validation part; the
    global model's federated validation loss is their mean weighted by
    validation patients. The test set is never consulted here.
    """
    algorithm = build_algorithm(spec)
    model = build_model(spec)
    k = data.num_nodes
    train = jax.tree.map(jnp.asarray, data.train)
    val = jax.tree.map(jnp.asarray, data.val)
    val_weights = np.asarray(data.n_val, dtype=np.float64)
    state = algorithm.init(model.init(jax.random.key(schedule.seed_init)), k)
    train_key = jax.random.key(schedule.seed_train)

    def holding(s: ServerState) -> Params:
        return s.params if algorithm.personalized else broadcast(s.params, k)

    best_score = np.full(k if algorithm.personalized else 1, np.inf)
    best_state = state
    best_round = 0
    since_best = 0
    rounds: list[dict] = []
    seconds: list[float] = []
    bar = tqdm(
        range(1, schedule.rounds + 1), desc=f"{spec.strategy} rounds", disable=not progress, leave=False
    )
    for r in bar:
        start = time.perf_counter()
        state, results = federated_round(spec, state, train, jax.random.fold_in(train_key, r))
        val_loss = np.asarray(node_losses(spec, holding(state), val), dtype=np.float64)
        seconds.append(time.perf_counter() - start)
        fed_val = float(np.dot(val_weights, val_loss) / val_weights.sum())
        record = {
            "round": r,
            "train_loss": np.asarray(results.metrics["train_loss"]).tolist(),
            "val_loss": val_loss.tolist(),
            "val_loss_federated": fed_val,
        }
        score = val_loss if algorithm.personalized else np.array([fed_val])
        improved = score < best_score
        if improved.any():
            best_score = np.where(improved, score, best_score)
            if algorithm.personalized:
                best_state = ServerState(_select(improved, state.params, best_state.params), (), state.round)
            else:
                best_state = state
            best_round, since_best = r, 0
        else:
            since_best += 1
        # Parameters go to the callback (per-round test curves) but not into JSON.
        record["client_params"] = results.params
        record["server_params"] = None if algorithm.personalized else state.params
        if on_round is not None:
            on_round(record)
        record.pop("client_params")
        record.pop("server_params")
        rounds.append(record)
        bar.set_postfix(val=f"{fed_val:.4f}")
        if schedule.patience is not None and since_best >= schedule.patience:
            break
    bar.close()

    if algorithm.personalized:
        global_params, node_params = None, best_state.params
    else:
        # Node k's model at the end of federation: the selected global model
        # after node k's last local update (ARCHITECTURE §5).
        global_params = best_state.params
        final_key = jax.random.fold_in(train_key, len(rounds) + 1)
        _, results = federated_round(spec, best_state, train, final_key)
        node_params = results.params
    return SimulationResult(
        best_round=best_round,
        global_params=global_params,
        node_params=node_params,
        rounds=rounds,
        round_seconds=seconds[1:] if len(seconds) > 1 else seconds,
        first_round_seconds=seconds[0],
    )
