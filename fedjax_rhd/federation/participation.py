"""Who takes part in a round: the strategy's client sampling and round policy.

Sampling is a pure function of (``seed.sample``, round, node count) drawn with
numpy's ``SeedSequence`` on the host, never from JAX's device RNG, so any
backend (the in-process simulator, Flower) asks the same nodes bit for bit.
The backend reports which sampled nodes failed or ran past a time limit
(the simulator injects those faults: ``fedjax_rhd.federation.faults``); the
policy then decides whether the round counts. The jitted round multiplies the
aggregation weights by the resulting mask (weight 0 = sat the round out), so
sampling and failures never trigger a recompilation.

Client sampling follows McMahan et al. 2017 (a fraction C of the clients per
round, drawn without replacement); the policy mirrors Flower's
``min_fit_clients`` / ``accept_failures``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

# Fixed stream identifier: each purpose has its own stream of its own seed
# (faults.py holds the failure and jitter streams, 12 and 13).
_STREAM_SAMPLE = 11


class RunStopped(RuntimeError):
    """The run stopped before its last round; a checkpoint was written."""


class TooFewNodes(RunStopped):
    """Fewer live nodes than the policy's minimum (or a failure under ``accept_failures=false``)."""


class RunInterrupted(RunStopped):
    """The user pressed Ctrl-C; the run stopped after the current round."""


@dataclasses.dataclass(frozen=True)
class Sampling:
    """``strategy.sampling``: the nodes asked to train each round (hashable).

    Attributes:
        fraction: share of nodes asked to train each round (McMahan et al.'s C).
        min_nodes: never sample fewer nodes than this.
    """

    fraction: float = 1.0
    min_nodes: int = 1

    def __post_init__(self) -> None:
        if not 0.0 < self.fraction <= 1.0:
            raise ValueError(f"strategy.sampling.fraction must be in (0, 1], got {self.fraction}")
        if self.min_nodes < 1:
            raise ValueError(f"strategy.sampling.min_nodes must be >= 1, got {self.min_nodes}")


@dataclasses.dataclass(frozen=True)
class RoundPolicy:
    """The strategy's participation policy: ``strategy.{sampling, min_nodes, accept_failures}``.

    The sampling seed (``seed.sample``) is passed beside it, so one policy
    serves every seed of a sweep.

    Attributes:
        sampling: which nodes are asked to train.
        min_nodes: fewest nodes that must return for the round to be aggregated.
        accept_failures: True = aggregate the nodes that returned; False = stop at any failure.
    """

    sampling: Sampling = dataclasses.field(default_factory=Sampling)
    min_nodes: int = 1
    accept_failures: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.sampling, Mapping):  # a plain dict from a config
            object.__setattr__(self, "sampling", Sampling(**self.sampling))
        if self.min_nodes < 1:
            raise ValueError(f"strategy.min_nodes must be >= 1, got {self.min_nodes}")


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


@dataclasses.dataclass(frozen=True)
class RoundPlan:
    """What happened to each node in one round (all bool[K] but ``seconds``)."""

    sampled: np.ndarray
    failed: np.ndarray  # sampled and failed
    timed_out: np.ndarray  # sampled, alive, but past the time limit
    seconds: np.ndarray | None  # each node's time for the round when a time limit is set

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


def check_policy(policy: RoundPolicy, plan: RoundPlan, round_index: int, node_names: Sequence[str]) -> None:
    """Enforce the round policy on what the backend reported.

    Raises:
        TooFewNodes: fewer than ``min_nodes`` nodes returned, or a sampled node
            failed or timed out while ``accept_failures`` is False.
    """
    lost = [n for n, m in zip(node_names, plan.failed | plan.timed_out, strict=True) if m]
    live = int(plan.aggregated.sum())
    if live < policy.min_nodes:
        raise TooFewNodes(
            f"round {round_index}: {live} node(s) returned "
            f"({', '.join(lost) or 'none'} failed or timed out), "
            f"fewer than strategy.min_nodes={policy.min_nodes}"
        )
    if lost and not policy.accept_failures:
        raise TooFewNodes(
            f"round {round_index}: {', '.join(lost)} failed or timed out and strategy.accept_failures=false"
        )


def participation_summary(rounds: Sequence[dict], node_names: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per node: in how many rounds it was sampled, failed, timed out, was aggregated."""
    summary = {n: {"sampled": 0, "failed": 0, "timed_out": 0, "aggregated": 0} for n in node_names}
    for record in rounds:
        for what, names in record["participation"].items():
            if what in ("sampled", "failed", "timed_out", "aggregated"):
                for n in names:
                    summary[n][what] += 1
    return summary
