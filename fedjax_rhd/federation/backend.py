"""The seam between the round loop and a federation's transport.

``fedjax_rhd.federation.loop.run_federation`` owns everything that is the
same under every backend: participation plan, round policy, federated
validation, round selection and patience, checkpoints, Ctrl-C and callbacks.
A ``Backend`` owns the nodes: their rows never leave it, and it hands the loop
only server states, per-node scalars and parameter pytrees. The in-process
simulator (``fedjax_rhd.federation.simulator.SimulatorBackend``) implements
it over stacked arrays; a backend whose nodes run in other processes
(Flower) implements it over messages, which is why every method below says
what crosses the wire.

Shapes: K = number of nodes, M = number of parameter sets, n_test = rows of
the benchmark test set the manager holds. ``ServerState`` and ``Params`` are
the strategy's pytrees (``fedjax_rhd.typing``); the loop stores them in the
checkpoint and selects between them, but never looks inside ``opt_state``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import jax
import numpy as np

from fedjax_rhd.typing import Params, ServerState

if TYPE_CHECKING:
    from fedjax_rhd.data.federated import FederatedData
    from fedjax_rhd.strategies import AlgorithmSpec


@dataclasses.dataclass(frozen=True)
class RoundOutput:
    """What a backend reports after one round.

    Attributes:
        state: the server state after aggregating the nodes that returned (those
            sampled, not failed, not timed out); the loop keeps it only if the
            round policy accepts the round.
        train_loss: f64[K] each node's training loss (nodes that did not return: any value).
        client_params: stacked [K] parameters the nodes sent back, for per-round
            test curves only (rows of nodes that did not return are backend-defined;
            the simulator's are what they would have sent).
        failed: bool[K] sampled nodes that did not return (crashed, down).
        timed_out: bool[K] sampled nodes that returned, but after the time limit.
        seconds: f64[K] each node's time for the round when a time limit applies, else None
            (stored as ``participation.simulated_seconds``).
        val_loss: f64[K] each node's validation loss of what it holds after this round, when the
            backend computed it with the round (the simulator: one compiled call, no second
            dispatch); None: the loop asks ``validation_losses`` (a remote backend's second exchange).
    """

    state: ServerState
    train_loss: np.ndarray
    client_params: Params
    failed: np.ndarray
    timed_out: np.ndarray
    seconds: np.ndarray | None = None
    val_loss: np.ndarray | None = None


@runtime_checkable
class Backend(Protocol):
    """A federation transport: runs rounds on its nodes and evaluates what they hold.

    Node metadata (``node_names``, ``n_train``, ``n_val``) is what the manager
    knows of each node: names and row counts, never rows. ``personalized`` is
    the strategy's flag: the server state's params then carry a node axis.
    """

    @property
    def node_names(self) -> tuple[str, ...]:
        """The K node names, in federation order (every per-node array follows it)."""
        ...

    @property
    def n_train(self) -> tuple[int, ...]:
        """Training patients per node."""
        ...

    @property
    def n_val(self) -> tuple[int, ...]:
        """Validation patients per node (the weights of the federated validation loss)."""
        ...

    @property
    def n_val_events(self) -> tuple[int, ...] | None:
        """Events in each node's validation part (``strategy.validation_weights=events``), None if unknown."""
        ...

    @property
    def personalized(self) -> bool:
        """True when the server state keeps one parameter set per node (``local``, ``centralized``)."""
        ...

    def init_state(self, rng: jax.Array) -> ServerState:
        """The server state before round 1, initialised on the manager from ``rng`` (``seed.init``).

        Also the template a checkpoint is restored onto, so it must be the same
        pytree structure and shapes on every call.
        """
        ...

    def run_round(
        self, state: ServerState, round_index: int, rng: jax.Array, sampled: np.ndarray
    ) -> RoundOutput:
        """Run round ``round_index`` on the sampled nodes and aggregate those that return.

        Wire: the manager sends each sampled node the params it holds (the
        global params, or its own slice under a personalised strategy) and the
        node's key ``fold_in(rng, k)``; each node sends back its update
        (a ``ClientResult``: params, number of examples, scalar metrics), or
        nothing when it fails.

        Args:
            state: the server state after the previous round.
            round_index: 1-based round number (the backend's own fault draws use it).
            rng: this round's key, ``fold_in(key(seed.train), round_index)``.
            sampled: bool[K] nodes the strategy asks to train (``participation.sample_nodes``).
        """
        ...

    def validation_losses(self, params: Params) -> np.ndarray:
        """f64[K]: each node's loss (no dropout) on its own validation rows.

        Wire: node k receives the params it holds after the round (``params``
        itself, or ``params``' slice k when ``personalized``) and returns one
        float.

        Args:
            params: the server state's params (stacked [K] when ``personalized``).
        """
        ...

    def final_node_models(self, state: ServerState, rng: jax.Array) -> Params:
        """Stacked [K] parameters: the model each node holds at the end of federation.

        Under a personalised strategy node k's own slice of ``state.params``;
        otherwise the selected global model after one more local update by every
        node with key ``rng`` (ARCHITECTURE §5). Wire: as ``run_round`` with every
        node taking part, nothing aggregated.
        """
        ...

    def test_risks(self, stacked_params: Params) -> np.ndarray:
        """f32[M, n_test]: the risk of each of M stacked parameter sets on the benchmark test set.

        The test set is held by the manager (the benchmark's holdout), not by a node:
        nothing crosses the wire. Under ``strategy=local`` (``FederatedData.test_views``) parameter
        set k is node k's own model and reads node k's view of the rows (its own preprocessing, its
        missing layers unobserved), so M must be K (``simulator.score_test_set``).
        """
        ...

    def finetune(self, params: Params, rng: jax.Array, epochs: int) -> Params:
        """Stacked [K]: ``params`` after ``epochs`` local steps by each node on its training rows.

        Wire: node k receives ``params``, ``fold_in(rng, k)`` and ``epochs``; it sends back its
        fine-tuned parameters.
        """
        ...

    def node_statistic(
        self,
        name: str,
        inputs: dict[str, np.ndarray],
        params: Params | None = None,
        nodes: Sequence[int] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """``node_tasks.NODE_STATISTICS[name]`` computed by each of ``nodes`` (default all) on its rows.

        Wire: each node receives ``inputs`` (e.g. the shared time grid) and ``params`` when given;
        it sends back the statistic's arrays: sums and counts, never rows (``docs/privacy.md``).
        """
        ...

    def compilations(self) -> int:
        """Round compilations in this process so far (a running count; 0 where nothing compiles)."""
        ...

    def close(self) -> None:
        """Release what the backend started (processes, threads, temporary folders); idempotent."""
        ...


class NodeDirectory:
    """What every backend knows of its nodes on the manager: names, counts, the algorithm.

    The ``Backend`` properties and ``init_state`` over these, shared by the backends.
    """

    def __init__(
        self,
        node_names: Sequence[str],
        n_train: Sequence[int],
        n_val: Sequence[int],
        spec: AlgorithmSpec,
        n_val_events: Sequence[int] | None = None,
    ):
        from fedjax_rhd.strategies import build_algorithm

        self.spec = spec
        self._names = tuple(node_names)
        self._n_train, self._n_val = tuple(n_train), tuple(n_val)
        self._n_val_events = None if n_val_events is None else tuple(n_val_events)
        self._personalized = build_algorithm(spec).personalized

    @property
    def node_names(self) -> tuple[str, ...]:
        return self._names

    @property
    def n_train(self) -> tuple[int, ...]:
        return self._n_train

    @property
    def n_val(self) -> tuple[int, ...]:
        return self._n_val

    @property
    def n_val_events(self) -> tuple[int, ...] | None:
        """Events in each node's validation part (a count, like ``n_val``), if known."""
        return self._n_val_events

    @property
    def personalized(self) -> bool:
        return self._personalized

    def init_state(self, rng: jax.Array) -> ServerState:
        """The strategy's initial state on the model initialised from ``rng``, on the manager."""
        from fedjax_rhd.strategies import initial_state

        return initial_state(self.spec, rng, len(self._names))


class BackendConfig(Protocol):
    """A backend's frozen config dataclass; ``name`` is its key in ``BACKENDS``."""

    @property
    def name(self) -> str: ...


class BackendFactory(Protocol):
    """Builds a backend from its config, the nodes' data, the algorithm and the fault seed."""

    def __call__(
        self, config: BackendConfig, data: FederatedData, spec: AlgorithmSpec, *, seed_failure: int
    ) -> Backend: ...


@dataclasses.dataclass(frozen=True)
class BackendEntry:
    """One registered backend.

    Attributes:
        config: the backend's frozen config dataclass; also its Hydra schema
            (``conf/backend/<name>.yaml``), so its fields are the config keys.
        factory: builds the backend (``make_backend`` calls it).
    """

    config: type
    factory: BackendFactory
