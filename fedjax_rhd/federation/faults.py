"""Injected faults of the in-process simulator: nodes down, random failures, simulated time.

A real federation loses nodes on its own; the simulator draws those losses so
that a study can measure their effect. Every draw is a pure function of
(``seed.failure``, round, node index, node count) drawn with numpy's
``SeedSequence`` on the host, so a rerun (or a resumed run) fails the same
nodes in the same rounds. These dataclasses are the pieces of
``SimulatorConfig`` (``backend.failures`` and ``backend.timing``); they are
frozen and hashable, and accept the lists and dicts OmegaConf's ``to_object``
hands over.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# Fixed stream identifiers of seed.failure (participation.py's sampling uses 11).
_STREAM_FAIL, _STREAM_JITTER = 12, 13


def _entries(cls: type, values: Iterable[Any], key: str) -> tuple[Any, ...]:
    """``values`` as a tuple of ``cls``: config lists arrive as lists, their items as dicts."""
    out = []
    for value in values:
        if isinstance(value, Mapping):
            value = cls(**value)
        if not isinstance(value, cls):
            raise TypeError(f"{key}: expected {cls.__name__} entries, got {value!r}")
        out.append(value)
    return tuple(out)


@dataclasses.dataclass(frozen=True)
class NodeDown:
    """``backend.failures.down`` entry: ``node`` is down from round ``from_round`` on."""

    node: str
    from_round: int = 1

    def __post_init__(self) -> None:
        if self.from_round < 1:
            raise ValueError(
                f"backend.failures.down: node {self.node!r} from_round must be >= 1, got {self.from_round}"
            )


@dataclasses.dataclass(frozen=True)
class Failures:
    """``backend.failures``: random failures and named nodes down.

    Attributes:
        probability: chance that a sampled node fails in a round (independent per node and round).
        down: nodes down from a given round on.
    """

    probability: float = 0.0
    down: tuple[NodeDown, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "down", _entries(NodeDown, self.down, "backend.failures.down"))
        if not 0.0 <= self.probability < 1.0:
            raise ValueError(f"backend.failures.probability must be in [0, 1), got {self.probability}")


@dataclasses.dataclass(frozen=True)
class NodeSlowdown:
    """``backend.timing.slowdown`` entry: multiplies ``node``'s simulated time by ``factor``."""

    node: str
    factor: float = 1.0

    def __post_init__(self) -> None:
        if self.factor <= 0:
            raise ValueError(
                f"backend.timing.slowdown: node {self.node!r} factor must be > 0, got {self.factor}"
            )


@dataclasses.dataclass(frozen=True)
class Timing:
    """``backend.timing``: each node's simulated compute time, checked against ``backend.time_limit``.

    Attributes:
        seconds_per_row: simulated compute seconds per training row and local epoch.
        jitter: log-normal sigma of every node's simulated time per round.
        slowdown: per-node factors on the simulated time.
    """

    seconds_per_row: float = 1e-3
    jitter: float = 0.0
    slowdown: tuple[NodeSlowdown, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "slowdown", _entries(NodeSlowdown, self.slowdown, "backend.timing.slowdown"))
        if self.seconds_per_row <= 0 or self.jitter < 0:
            raise ValueError("backend.timing.seconds_per_row must be > 0 and jitter >= 0")


def failed_nodes(failures: Failures, seed: int, round_index: int, node_names: Sequence[str]) -> np.ndarray:
    """bool[K]: nodes that fail this round (random failures or named nodes down).

    Args:
        failures: the injected failures.
        seed: ``seed.failure``.
        round_index: the round (1-based).
        node_names: every node, in federation order.
    """
    k = len(node_names)
    failed = np.zeros(k, dtype=bool)
    if failures.probability > 0:
        rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_FAIL, round_index]))
        failed |= rng.random(k) < failures.probability
    for entry in failures.down:
        if round_index >= entry.from_round:
            failed[list(node_names).index(entry.node)] = True
    return failed


def simulated_seconds(
    timing: Timing,
    seed: int,
    round_index: int,
    node_names: Sequence[str],
    n_train: Sequence[int],
    local_epochs: int,
) -> np.ndarray:
    """f64[K]: each node's simulated time for this round's local training.

    ``n_train``: rows per local step (a node's rows, or its minibatch), ``local_epochs``: steps.
    Deterministic (rows × steps × seconds per row × slowdown × log-normal
    jitter drawn from ``seed``, i.e. ``seed.failure``): wall-clock time inside
    one process says nothing about a hospital's server, and using it would
    break reproducibility.
    """
    seconds = timing.seconds_per_row * np.asarray(n_train, dtype=np.float64) * local_epochs
    factors = {entry.node: entry.factor for entry in timing.slowdown}
    seconds *= np.array([factors.get(name, 1.0) for name in node_names])
    if timing.jitter > 0:
        rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_JITTER, round_index]))
        seconds *= np.exp(timing.jitter * rng.standard_normal(len(node_names)))
    return seconds
