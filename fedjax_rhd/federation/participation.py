"""Who takes part in a round: client sampling, injected failures, time limits, policy.

Every decision is a pure function of (seed, round, node index, node count) drawn
with numpy's ``SeedSequence`` on the host, never from JAX's device RNG, so any
backend (the in-process simulator, Flower) reproduces the same sampled and
failed nodes bit for bit. The result is a participation mask; the jitted round
multiplies the aggregation weights by it (weight 0 = sat the round out), so
sampling and failures never trigger a recompilation.

Client sampling follows McMahan et al. 2017 (a fraction C of the clients per
round, drawn without replacement); the failure policy mirrors Flower's
``min_fit_clients`` / ``accept_failures``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

# Fixed stream identifiers: each purpose has its own stream of its own seed.
_STREAM_SAMPLE, _STREAM_FAIL, _STREAM_JITTER = 11, 12, 13


class RunStopped(RuntimeError):
    """The run stopped before its last round; a checkpoint was written."""


class TooFewNodes(RunStopped):
    """Fewer live nodes than the policy's minimum (or a failure under ``accept_failures=false``)."""


class RunInterrupted(RunStopped):
    """The user pressed Ctrl-C; the run stopped after the current round."""


@dataclasses.dataclass(frozen=True)
class ParticipationConfig:
    """Sampling, simulated faults and the round policy (typed view of the config; hashable).

    Attributes:
        sample_fraction: share of nodes asked to train each round (McMahan et al.'s C).
        sample_min_nodes: never sample fewer nodes than this.
        sample_seed: ``seed.sample``.
        fail_probability: chance that a sampled node fails in a round (independent per node, round).
        down: ``(node name, from round)``: that node is down from that round on.
        fail_seed: ``seed.failure``; also drives the simulated timing jitter.
        time_limit: seconds a round waits; nodes whose simulated time exceeds it are dropped.
        seconds_per_row: simulated compute seconds per training row and local epoch.
        jitter: log-normal sigma of the simulated per-round time of every node.
        slowdown: ``(node name, factor)``: multiplies that node's simulated time.
        min_nodes: fewest nodes that must return for the round to be aggregated.
        accept_failures: True = aggregate the nodes that returned; False = stop at any failure.
    """

    sample_fraction: float = 1.0
    sample_min_nodes: int = 1
    sample_seed: int = 0
    fail_probability: float = 0.0
    down: tuple[tuple[str, int], ...] = ()
    fail_seed: int = 0
    time_limit: float | None = None
    seconds_per_row: float = 1e-3
    jitter: float = 0.0
    slowdown: tuple[tuple[str, float], ...] = ()
    min_nodes: int = 1
    accept_failures: bool = True

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_fraction <= 1.0:
            raise ValueError(f"strategy.sampling.fraction must be in (0, 1], got {self.sample_fraction}")
        if self.sample_min_nodes < 1 or self.min_nodes < 1:
            raise ValueError("strategy.sampling.min_nodes and strategy.min_nodes must be >= 1")
        if not 0.0 <= self.fail_probability < 1.0:
            raise ValueError(f"backend.failures.probability must be in [0, 1), got {self.fail_probability}")
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"backend.time_limit must be > 0 seconds or null, got {self.time_limit}")
        if self.seconds_per_row <= 0 or self.jitter < 0:
            raise ValueError("backend.timing.seconds_per_row must be > 0 and jitter >= 0")
        for name, start in self.down:
            if start < 1:
                raise ValueError(f"backend.failures.down: node {name!r} from_round must be >= 1, got {start}")
        for name, factor in self.slowdown:
            if factor <= 0:
                raise ValueError(f"backend.timing.slowdown: node {name!r} factor must be > 0, got {factor}")

    def check_nodes(self, node_names: Sequence[str]) -> None:
        """Fail early, naming the key, when a config names a node the federation lacks."""
        for key, entries in (
            ("backend.failures.down", self.down),
            ("backend.timing.slowdown", self.slowdown),
        ):
            for name, _ in entries:
                if name not in node_names:
                    raise ValueError(f"{key}: no node named {name!r}; nodes are {list(node_names)}")


def sample_nodes(
    seed: int, round_index: int, num_nodes: int, fraction: float, min_nodes: int = 1
) -> np.ndarray:
    """bool[K]: the nodes asked to train in ``round_index`` (a pure function of its arguments).

    ``max(min_nodes, ceil(fraction·K))`` nodes (at most K) drawn without
    replacement; ``fraction == 1`` is every node.
    """
    count = min(num_nodes, max(min_nodes, math.ceil(fraction * num_nodes - 1e-9)))
    mask = np.zeros(num_nodes, dtype=bool)
    if count == num_nodes:
        mask[:] = True
        return mask
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_SAMPLE, round_index]))
    mask[rng.choice(num_nodes, size=count, replace=False)] = True
    return mask


def failed_nodes(config: ParticipationConfig, round_index: int, node_names: Sequence[str]) -> np.ndarray:
    """bool[K]: nodes that fail this round (random failures or named nodes down)."""
    k = len(node_names)
    failed = np.zeros(k, dtype=bool)
    if config.fail_probability > 0:
        rng = np.random.default_rng(np.random.SeedSequence([config.fail_seed, _STREAM_FAIL, round_index]))
        failed |= rng.random(k) < config.fail_probability
    for name, start in config.down:
        if round_index >= start:
            failed[list(node_names).index(name)] = True
    return failed


def simulated_seconds(
    config: ParticipationConfig,
    round_index: int,
    node_names: Sequence[str],
    n_train: Sequence[int],
    local_epochs: int,
) -> np.ndarray:
    """f64[K]: each node's simulated time for this round's local training.

    Deterministic (rows × epochs × seconds per row × slowdown × log-normal
    jitter): wall-clock time inside one process says nothing about a
    hospital's server, and using it would break reproducibility.
    """
    seconds = config.seconds_per_row * np.asarray(n_train, dtype=np.float64) * local_epochs
    factors = dict(config.slowdown)
    seconds *= np.array([factors.get(name, 1.0) for name in node_names])
    if config.jitter > 0:
        rng = np.random.default_rng(np.random.SeedSequence([config.fail_seed, _STREAM_JITTER, round_index]))
        seconds *= np.exp(config.jitter * rng.standard_normal(len(node_names)))
    return seconds


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """What happens to each node in one round (all bool[K] but ``seconds``)."""

    sampled: np.ndarray
    failed: np.ndarray  # sampled and failed
    timed_out: np.ndarray  # sampled, alive, but past the time limit
    seconds: np.ndarray | None  # simulated seconds per node when a time limit is set

    @property
    def aggregated(self) -> np.ndarray:
        return self.sampled & ~self.failed & ~self.timed_out

    def record(self, node_names: Sequence[str]) -> dict:
        """The round's ``participation`` entry for ``results.json``."""

        def names(mask: np.ndarray) -> list[str]:
            return [n for n, m in zip(node_names, mask, strict=True) if m]

        out = {
            "sampled": names(self.sampled),
            "failed": names(self.failed),
            "timed_out": names(self.timed_out),
            "aggregated": names(self.aggregated),
        }
        if self.seconds is not None:
            out["simulated_seconds"] = [float(s) for s in self.seconds]
        return out


def plan_round(
    config: ParticipationConfig,
    round_index: int,
    node_names: Sequence[str],
    n_train: Sequence[int],
    local_epochs: int,
) -> RoundPlan:
    """Decide the round's participants and enforce the policy.

    Raises:
        TooFewNodes: fewer than ``min_nodes`` nodes return, or any sampled node
            fails while ``accept_failures`` is False.
    """
    k = len(node_names)
    sampled = sample_nodes(
        config.sample_seed, round_index, k, config.sample_fraction, config.sample_min_nodes
    )
    failed = sampled & failed_nodes(config, round_index, node_names)
    seconds = None
    timed_out = np.zeros(k, dtype=bool)
    if config.time_limit is not None:
        seconds = simulated_seconds(config, round_index, node_names, n_train, local_epochs)
        timed_out = sampled & ~failed & (seconds > config.time_limit)
    plan = RoundPlan(sampled=sampled, failed=failed, timed_out=timed_out, seconds=seconds)
    lost = [n for n, m in zip(node_names, failed | timed_out, strict=True) if m]
    live = int(plan.aggregated.sum())
    if live < config.min_nodes:
        raise TooFewNodes(
            f"round {round_index}: {live} node(s) returned "
            f"({', '.join(lost) or 'none'} failed or timed out), "
            f"fewer than strategy.min_nodes={config.min_nodes}"
        )
    if lost and not config.accept_failures:
        raise TooFewNodes(
            f"round {round_index}: {', '.join(lost)} failed or timed out and strategy.accept_failures=false"
        )
    return plan


def participation_summary(rounds: Sequence[dict], node_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per node: in how many rounds it was sampled, failed, timed out, was aggregated."""
    summary = {n: {"sampled": 0, "failed": 0, "timed_out": 0, "aggregated": 0} for n in node_names}
    for record in rounds:
        for what, names in record["participation"].items():
            if what in ("sampled", "failed", "timed_out", "aggregated"):
                for n in names:
                    summary[n][what] += 1
    return summary
