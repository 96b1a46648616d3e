"""In-process federation: nodes stacked, ``client_update`` vmapped, round jitted.

The jitted functions are module-level with the hashable ``AlgorithmSpec`` as
their only static argument, so every job of a multirun with the same spec and
array shapes reuses one executable (a factory building a fresh closure per job
would recompile every job). ``TRACE_COUNTS`` counts traces, i.e. compilations
of the round, for the benchmark and the multirun check.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from fedjax_rhd.data.federated import FederatedData
from fedjax_rhd.federation.participation import (
    ParticipationConfig,
    RunInterrupted,
    RunStopped,
    plan_round,
)
from fedjax_rhd.federation.run_state import LoopState, load_loop_state, save_loop_state
from fedjax_rhd.strategies import AlgorithmSpec, build_algorithm, build_model
from fedjax_rhd.typing import ClientResult, NodeData, Params, ServerState

TRACE_COUNTS: collections.Counter[str] = collections.Counter()


@functools.partial(jax.jit, static_argnames=("spec",))
def federated_round(
    spec: AlgorithmSpec,
    state: ServerState,
    train: NodeData,
    rng: jax.Array,
    participation: jax.Array | None = None,
) -> tuple[ServerState, ClientResult]:
    """One round: every node updates from the server's parameters, then aggregate.

    Args:
        spec: static algorithm description (strategy, model, hyperparameters).
        state: server state; under a personalised strategy params carry a node axis.
        train: stacked node data [K, n, ...].
        rng: this round's key; node k uses ``fold_in(rng, k)``.
        participation: f32[K] 1 = the node's update is aggregated, 0 = it sat the
            round out (not sampled, failed, too slow); None = every node. A traced
            array, so sampling never recompiles. Every node still computes (vmap
            has one shape); the weight 0 keeps absent nodes out of the result.
    """
    TRACE_COUNTS["round"] += 1  # runs only while tracing: counts compilations
    algorithm = build_algorithm(spec)
    num_nodes = train.x.shape[0]
    keys = jax.vmap(lambda k: jax.random.fold_in(rng, k))(jnp.arange(num_nodes))
    params_axis = 0 if algorithm.personalized else None
    results = jax.vmap(algorithm.client_update, in_axes=(params_axis, 0, 0))(state.params, train, keys)
    weights = results.num_examples if participation is None else results.num_examples * participation
    return algorithm.aggregate(state, results, weights), results


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


@contextlib.contextmanager
def _stop_after_round() -> Iterator[dict[str, bool]]:
    """Turn the first Ctrl-C into a request to stop after the current round.

    A second Ctrl-C interrupts at once (the previous handler is restored).
    """
    flag = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        del signum, frame
        flag["stop"] = True
        signal.signal(signal.SIGINT, previous)
        print("\nCtrl-C: stopping after this round (press again to abort at once)", flush=True)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def run_simulation(
    spec: AlgorithmSpec,
    data: FederatedData,
    schedule: TrainSchedule,
    *,
    on_round: Callable[[dict], None] | None = None,
    progress: bool = True,
    participation: ParticipationConfig | None = None,
    checkpoint: str | Path | None = None,
    identity: dict[str, Any] | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
) -> SimulationResult:
    """Train ``spec`` over ``data``'s nodes; select rounds by federated validation.

    Validation loss per node is computed on the node's own validation part; the
    global model's federated validation loss is their mean weighted by
    validation patients. The test set is never consulted here.

    Args:
        spec, data, schedule: what to train, on which nodes, for how many rounds.
        on_round: called with each round's record (and its parameters) before it is stored.
        progress: show a progress bar.
        participation: sampling, simulated failures/time limits and the round policy.
        checkpoint: write the loop state here before round 1, after every ``checkpoint_every``-th
            round and when the loop ends or stops. Round r's keys are ``fold_in(seed, r)``, so a
            resume from an earlier round reproduces the same run; k > 1 only saves the file writes.
        identity: JSON-able run identity stored in the checkpoint (config, dataset id).
        resume: continue from ``checkpoint`` instead of starting afresh.

    Raises:
        TooFewNodes: the policy stopped the run; the last checkpoint is usable.
        RunInterrupted: Ctrl-C; the run stopped after a round and checkpointed it.
    """
    participation = participation or ParticipationConfig()
    participation.check_nodes(data.node_names)
    algorithm = build_algorithm(spec)
    model = build_model(spec)
    k = data.num_nodes
    train = jax.tree.map(jnp.asarray, data.train)
    val = jax.tree.map(jnp.asarray, data.val)
    val_weights = np.asarray(data.n_val, dtype=np.float64)
    initial = algorithm.init(model.init(jax.random.key(schedule.seed_init)), k)
    train_key = jax.random.key(schedule.seed_train)
    if resume:
        if checkpoint is None:
            raise ValueError("resume needs a checkpoint path")
        loop = load_loop_state(checkpoint, initial, train_key)
        print(f"resuming from {checkpoint} after round {loop.round}", flush=True)
    else:
        loop = LoopState(initial, initial, np.full(k if algorithm.personalized else 1, np.inf))

    def save() -> None:
        if checkpoint is not None:
            save_loop_state(checkpoint, loop, train_key, identity or {})

    def holding(s: ServerState) -> Params:
        return s.params if algorithm.personalized else broadcast(s.params, k)

    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    if not resume:
        save()  # round 0: even a run that fails in round 1 leaves a usable checkpoint
    bar = tqdm(
        total=schedule.rounds,
        initial=loop.round,
        desc=f"{spec.algorithm} rounds",
        disable=not progress,
        leave=False,
    )
    with _stop_after_round() as stop:
        for r in range(loop.round + 1, schedule.rounds + 1):
            if schedule.patience is not None and loop.since_best >= schedule.patience:
                break
            try:
                plan = plan_round(participation, r, data.node_names, data.n_train, spec.client.local_epochs)
            except RunStopped as err:
                bar.close()
                save()
                where = f"; checkpoint after round {loop.round}: {checkpoint}" if checkpoint else ""
                raise type(err)(f"{err}{where}") from None
            start = time.perf_counter()
            mask = jnp.asarray(plan.aggregated, dtype=jnp.float32)
            state, results = federated_round(spec, loop.state, train, jax.random.fold_in(train_key, r), mask)
            val_loss = np.asarray(node_losses(spec, holding(state), val), dtype=np.float64)
            loop.seconds.append(time.perf_counter() - start)
            fed_val = float(np.dot(val_weights, val_loss) / val_weights.sum())
            train_loss = np.asarray(results.metrics["train_loss"]).tolist()
            record = {
                "round": r,
                # a node that sat the round out trained nothing the server used
                "train_loss": [t if a else None for t, a in zip(train_loss, plan.aggregated, strict=True)],
                "val_loss": val_loss.tolist(),
                "val_loss_federated": fed_val,
                "participation": plan.record(data.node_names),
            }
            score = val_loss if algorithm.personalized else np.array([fed_val])
            improved = score < loop.best_score
            loop.state = state
            if improved.any():
                loop.best_score = np.where(improved, score, loop.best_score)
                if algorithm.personalized:
                    loop.best_state = ServerState(
                        _select(improved, state.params, loop.best_state.params), (), state.round
                    )
                else:
                    loop.best_state = state
                loop.best_round, loop.since_best = r, 0
            else:
                loop.since_best += 1
            # Parameters go to the callback (per-round test curves) but not into JSON.
            record["client_params"] = results.params
            record["server_params"] = None if algorithm.personalized else state.params
            if on_round is not None:
                on_round(record)
            record.pop("client_params")
            record.pop("server_params")
            loop.rounds.append(record)
            if r % checkpoint_every == 0:
                save()
            bar.update(1)
            bar.set_postfix(val=f"{fed_val:.4f}")
            if stop["stop"]:
                bar.close()
                save()
                raise RunInterrupted(
                    f"stopped by Ctrl-C after round {r}; checkpoint: {checkpoint}"
                    if checkpoint
                    else f"stopped by Ctrl-C after round {r}"
                )
    bar.close()
    save()  # the finished loop (rewrites the same state when the last round was just saved)

    best_state = loop.best_state
    if algorithm.personalized:
        global_params, node_params = None, best_state.params
    else:
        # Node k's model at the end of federation: the selected global model
        # after node k's last local update (ARCHITECTURE §5), every node taking part.
        global_params = best_state.params
        final_key = jax.random.fold_in(train_key, len(loop.rounds) + 1)
        _, results = federated_round(spec, best_state, train, final_key, jnp.ones(k, jnp.float32))
        node_params = results.params
    seconds = loop.seconds or [0.0]
    return SimulationResult(
        best_round=loop.best_round,
        global_params=global_params,
        node_params=node_params,
        rounds=loop.rounds,
        round_seconds=seconds[1:] if len(seconds) > 1 else seconds,
        first_round_seconds=seconds[0],
    )
