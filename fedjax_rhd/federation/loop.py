"""The round loop, the same under every backend.

Per round: the strategy samples nodes (a pure host function of ``seed.sample``)
→ the backend runs the round on them and reports who returned → the round
policy accepts or stops the run → the backend's nodes report their
validation losses → federated validation (their mean weighted by validation
patients) → round selection and patience → checkpoint cadence → Ctrl-C →
callbacks. The loop sees only what a ``Backend`` returns (server states,
parameter pytrees, per-node losses and counts), never a node's rows, so a
backend whose nodes live in other processes runs the very same loop.

Round r's keys are ``fold_in(key(seed.train), r)``; the loop owns them, so a
resumed run reproduces the run it continues.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
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

from fedjax_rhd.executables import stored_jit
from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.federation.participation import (
    RoundPlan,
    RoundPolicy,
    RunInterrupted,
    RunStopped,
    check_policy,
    sample_nodes,
)
from fedjax_rhd.federation.round_keys import RoundKeys, seed_key
from fedjax_rhd.federation.run_state import (
    LoopState,
    check_resumable,
    load_loop_state,
    read_identity,
    save_loop_state,
)
from fedjax_rhd.typing import Params

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class TrainSchedule:
    """Rounds and early stopping (typed view of the strategy config)."""

    rounds: int = 30  # maximum communication rounds
    patience: int | None = 10  # stop after this many rounds without federated-validation gain
    seed_init: int = 0  # model initialisation
    seed_train: int = 0  # dropout keys: fold_in(seed, round, node, step)
    selection: str = "validation"  # "validation": the best federated validation loss; "last": fixed budget
    validation_weights: str = "patients"  # federated validation: nodes weighted by "patients" or "events"

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"strategy.selection={self.selection!r}: expected one of {SELECTIONS}")
        if self.validation_weights not in VALIDATION_WEIGHTS:
            raise ValueError(
                f"strategy.validation_weights={self.validation_weights!r}: "
                f"expected one of {VALIDATION_WEIGHTS}"
            )
        if self.selection == "last" and self.patience is not None:
            raise ValueError("strategy.selection=last trains a fixed budget: set strategy.patience=null")


SELECTIONS = ("validation", "last")
VALIDATION_WEIGHTS = ("patients", "events")
MIN_VALIDATION_EVENTS = 5  # fewer events in a node's validation part: a noisy vote, warned about


@dataclasses.dataclass
class FederationResult:
    """What the loop hands back to the experiment driver.

    Attributes:
        best_round: the round selected by federated validation (0: none improved on the start).
        global_params: the selected global model; None under personalised strategies.
        node_params: stacked [K]: the model node k holds at the end.
        rounds: the per-round ``results.json`` records (without parameters).
        round_seconds: wall seconds of every round after the first (the first alone when one ran).
        validation_objective: the federated validation loss of the selected model(s): the selected
            round's, or under a personalised strategy the weighted mean of each node's own best (the
            same weights); NaN when nothing was validated (``strategy.selection=last`` without
            validation rows). What a hyperparameter search minimises: it never sees a test row.
        first_round_seconds: wall seconds of the first round (compilation included).
        round_compilations: round compilations during this run (0: an executable was reused).
    """

    best_round: int
    global_params: Params | None
    node_params: Params
    rounds: list[dict]
    round_seconds: list[float]
    first_round_seconds: float
    round_compilations: int = 0
    validation_objective: float = float("nan")
    node_best_rounds: list[int] | None = None  # personalised: each node's own selected round


@stored_jit()
def _select(mask: np.ndarray, new: Params, old: Params) -> Params:
    """Per node: ``new``'s slice where ``mask``, else ``old``'s (personalised best models)."""

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


def _validation_weights(backend: Backend, schedule: TrainSchedule, names: tuple[str, ...]) -> np.ndarray:
    """Each node's weight in the federated validation loss; warns about nodes with few validation events.

    ``patients`` weighs a node's per-event loss by its validation patients (the study's rule);
    ``events`` by its validation events, which makes the federated loss the pooled partial
    likelihood per event (every node's log-likelihood terms summed, divided by all events), so a
    node with 0-1 validation events cannot swing the choice of round.
    """
    events = backend.n_val_events
    if schedule.selection == "validation" and events is not None:
        few = [f"{n} ({e})" for n, e in zip(names, events, strict=True) if e < MIN_VALIDATION_EVENTS]
        if few:
            logger.warning(
                "validation parts with fewer than %d events (node (events)): %s; their losses are noisy "
                "votes in the choice of round (strategy.validation_weights=events weighs nodes by events, "
                "strategy.selection=last trains a fixed budget)",
                MIN_VALIDATION_EVENTS,
                ", ".join(few),
            )
    if schedule.validation_weights == "events":
        if events is None:
            raise ValueError(
                "strategy.validation_weights=events: this backend does not know its nodes' events"
            )
        return np.asarray(events, dtype=np.float64)
    return np.asarray(backend.n_val, dtype=np.float64)


def run_federation(
    backend: Backend,
    schedule: TrainSchedule,
    policy: RoundPolicy | None = None,
    *,
    seed_sample: int = 0,
    on_round: Callable[[dict], None] | None = None,
    progress: bool = True,
    desc: str = "rounds",
    checkpoint: str | Path | None = None,
    identity: dict[str, Any] | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
) -> FederationResult:
    """Train on ``backend``'s nodes; select rounds by federated validation.

    Each node's validation loss is computed by the node on its own validation
    part; the global model's federated validation loss is their mean weighted by
    validation patients. Under a personalised strategy each node keeps its own
    best round. The test set is never consulted here.

    Args:
        backend: the nodes and their transport (``registry.make_backend``).
        schedule: rounds, patience and the ``seed.init`` / ``seed.train`` seeds.
        policy: sampling, minimum nodes and failure policy (default: every node, every round).
        seed_sample: ``seed.sample``: which nodes are sampled each round.
        on_round: called with each round's record before it is stored; the record
            then also holds ``client_params`` (stacked [K]) and ``server_params``
            (None under personalised strategies), removed afterwards.
        progress: show a progress bar (labelled ``desc``).
        desc: the progress bar's label.
        checkpoint: write the loop state here before round 1, after every ``checkpoint_every``-th
            round and when the loop ends or stops. Round r's keys are ``fold_in(seed, r)``, so a
            resume from an earlier round reproduces the same run; k > 1 only saves the file writes.
        identity: JSON-able run identity stored in the checkpoint (config, dataset id).
        resume: continue from ``checkpoint`` instead of starting afresh; refused (``ValueError``, naming
            every differing key) when the checkpoint's identity differs from ``identity``.
        checkpoint_every: k, the checkpoint cadence in rounds.

    Raises:
        TooFewNodes: the policy stopped the run; the last checkpoint is usable.
        RunInterrupted: Ctrl-C; the run stopped after a round and checkpointed it.
    """
    policy = policy or RoundPolicy()
    if checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be >= 1, got {checkpoint_every}")
    compilations_before = backend.compilations()
    names = tuple(backend.node_names)
    k = len(names)
    personalized = backend.personalized
    val_weights = _validation_weights(backend, schedule, names)
    validate = sum(backend.n_val) > 0  # split.val_fraction=0: nothing to validate on (selection=last)
    if not validate and schedule.selection == "validation":
        raise ValueError("no node has validation rows (split.val_fraction=0): set strategy.selection=last")
    initial = backend.init_state(seed_key(schedule.seed_init))
    train_key = seed_key(schedule.seed_train)
    # rounds 1..R and the final key R+1 (below), folded at once: no eager fold_in traced per process
    round_key = RoundKeys(train_key, schedule.rounds + 1)
    if resume:
        if checkpoint is None:
            raise ValueError("resume needs a checkpoint path")
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"resume={Path(checkpoint).parent}: no {Path(checkpoint).name} in that directory"
            )
        # The same config (less the keys a resumed run may change) and the same dataset, or a clear refusal.
        check_resumable(read_identity(checkpoint), identity or {}, checkpoint)
        loop = load_loop_state(checkpoint, initial, train_key)
        print(f"resuming from {checkpoint} after round {loop.round}", flush=True)
    else:
        loop = LoopState(initial, initial, np.full(k if personalized else 1, np.inf))
    if personalized and loop.node_since_best is None:  # each node stops on its own validation loss
        loop.node_best_round, loop.node_since_best = [0] * k, [0] * k

    def save() -> None:
        if checkpoint is not None:
            save_loop_state(checkpoint, loop, train_key, identity or {})

    if not resume:
        save()  # round 0: even a run that fails in round 1 leaves a usable checkpoint
    bar = tqdm(total=schedule.rounds, initial=loop.round, desc=desc, disable=not progress, leave=False)
    with _stop_after_round() as stop:
        for r in range(loop.round + 1, schedule.rounds + 1):
            stopped = _stopped(loop, schedule, personalized, k)
            if stopped.all():
                break
            sampling = policy.sampling
            # a node that stopped early keeps its model: it is not asked to train again
            sampled = sample_nodes(seed_sample, r, k, sampling.fraction, sampling.min_nodes) & ~stopped
            start = time.perf_counter()
            out = backend.run_round(loop.state, r, round_key(r), sampled)
            plan = RoundPlan(
                sampled=sampled,
                failed=sampled & np.asarray(out.failed, dtype=bool),
                timed_out=sampled & np.asarray(out.timed_out, dtype=bool),
                seconds=out.seconds,
            )
            try:
                # After the round: a remote backend learns who failed only by waiting for them.
                # A refused round's state is dropped; the checkpoint holds the previous round.
                check_policy(policy, plan, r, names)
            except RunStopped as err:
                bar.close()
                save()
                where = f"; checkpoint after round {loop.round}: {checkpoint}" if checkpoint else ""
                raise type(err)(f"{err}{where}") from None
            state = out.state
            if validate and out.val_loss is not None:  # computed inside the round (the simulator)
                val_loss = np.asarray(out.val_loss, dtype=np.float64)
            elif validate:
                val_loss = np.asarray(backend.validation_losses(state.params), dtype=np.float64)
            else:
                val_loss = np.full(k, np.nan)
            loop.seconds.append(time.perf_counter() - start)
            # A node that did not answer (a remote backend's NaN) is left out of the weighted mean.
            answered = np.isfinite(val_loss)
            weights = np.where(answered, val_weights, 0.0)
            fed_val = (
                float(np.dot(weights, np.where(answered, val_loss, 0.0)) / weights.sum())
                if weights.sum() > 0
                else np.inf
            )
            train_loss = np.asarray(out.train_loss).tolist()
            record = {
                "round": r,
                # a node that sat the round out trained nothing the server used
                "train_loss": [t if a else None for t, a in zip(train_loss, plan.aggregated, strict=True)],
                "val_loss": val_loss.tolist() if validate else [None] * k,
                "val_loss_federated": fed_val if validate else None,
                "participation": plan.record(names),
            }
            if personalized and stopped.any():
                record["stopped"] = [n for n, s in zip(names, stopped, strict=True) if s]
            score = val_loss if personalized else np.array([fed_val])
            improved = score < loop.best_score
            if personalized:
                improved &= ~stopped
            if schedule.selection == "last":  # a fixed budget: every round replaces the last
                improved = np.ones_like(loop.best_score, dtype=bool)
                score = np.zeros_like(loop.best_score)
            loop.state = state
            if improved.any():
                loop.best_score = np.where(improved, score, loop.best_score)
                if personalized:
                    best_params = _select(improved, state.params, loop.best_state.params)
                    loop.best_state = state._replace(params=best_params)
                else:
                    loop.best_state = state
                loop.best_round, loop.since_best = r, 0
            else:
                loop.since_best += 1
            if personalized:
                for i in range(k):
                    if improved[i]:
                        loop.node_best_round[i], loop.node_since_best[i] = r, 0
                    elif not stopped[i]:
                        loop.node_since_best[i] += 1
            # Parameters go to the callback (per-round test curves) but not into JSON.
            record["client_params"] = out.client_params
            record["server_params"] = None if personalized else state.params
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
    # Node k's model at the end of federation (ARCHITECTURE §5): its own best slice, or the
    # selected global model after node k's last local update with the next round's key.
    final_key = round_key(len(loop.rounds) + 1)
    node_params = backend.final_node_models(best_state, final_key)
    seconds = loop.seconds or [0.0]
    return FederationResult(
        best_round=loop.best_round,
        global_params=None if personalized else best_state.params,
        node_params=node_params,
        rounds=loop.rounds,
        round_seconds=seconds[1:] if len(seconds) > 1 else seconds,
        first_round_seconds=seconds[0],
        round_compilations=backend.compilations() - compilations_before,
        validation_objective=_objective(loop, val_weights, schedule),
        node_best_rounds=None if loop.node_best_round is None else list(loop.node_best_round),
    )


def _stopped(loop: LoopState, schedule: TrainSchedule, personalized: bool, k: int) -> np.ndarray:
    """bool[K]: nodes whose patience ran out (all of them at once for a shared model)."""
    if schedule.patience is None:
        return np.zeros(k, dtype=bool)
    if personalized:
        return np.asarray(loop.node_since_best) >= schedule.patience
    return np.full(k, loop.since_best >= schedule.patience)


def _objective(loop: LoopState, val_weights: np.ndarray, schedule: TrainSchedule) -> float:
    """The selected model's federated validation loss (see ``FederationResult.validation_objective``)."""
    if schedule.selection == "last":  # the kept round's validation loss, if there was any
        last = loop.rounds[-1]["val_loss_federated"] if loop.rounds else None
        if last is None:
            return float("nan")
        if len(loop.best_score) == 1:
            return float(last)
        losses = np.asarray(loop.rounds[-1]["val_loss"], dtype=np.float64)
        return float(np.dot(val_weights, losses) / val_weights.sum())
    best = np.asarray(loop.best_score, dtype=np.float64)
    if len(best) == 1:
        return float(best[0])
    return float(np.dot(val_weights, best) / val_weights.sum())
