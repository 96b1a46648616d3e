"""In-process federation: nodes stacked, ``client_update`` vmapped, round jitted.

The jitted functions are module-level with the hashable ``AlgorithmSpec`` as
their only static argument, so every job of a multirun with the same spec and
array shapes reuses one executable (a factory building a fresh closure per job
would recompile every job). ``TRACE_COUNTS`` counts traces, i.e. compilations
of the round, for the benchmark and the multirun check.

``SimulatorBackend`` is the ``Backend`` (``fedjax_rhd.federation.backend``)
over these functions: it holds every node's rows as stacked device arrays and
injects the configured faults (``fedjax_rhd.federation.faults``); the round
loop itself is ``fedjax_rhd.federation.loop.run_federation``.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rhd import executables
from fedjax_rhd.data import small_cells
from fedjax_rhd.data.buckets import NodeBuckets, bucket_nodes, plan_buckets
from fedjax_rhd.data.federated import FederatedData
from fedjax_rhd.executables import stored_jit
from fedjax_rhd.federation.backend import NodeDirectory, RoundOutput
from fedjax_rhd.federation.faults import Failures, Timing, failed_nodes, simulated_seconds
from fedjax_rhd.federation.node_tasks import NODE_STATISTICS, NodeRows, finetune_node, validation_loss
from fedjax_rhd.strategies import AlgorithmSpec, build_algorithm, build_model
from fedjax_rhd.strategies.client import rows_per_step
from fedjax_rhd.strategies.dp import NOISE_STREAM
from fedjax_rhd.strategies.traced import spec_jit
from fedjax_rhd.typing import ClientResult, NodeData, Params, ServerState

TRACE_COUNTS: collections.Counter[str] = collections.Counter()
# the programs holding a round: loading one from the store counts as the round's compilation
_ROUND_PROGRAMS = (f"{__name__}.federated_round", f"{__name__}.validated_round")


@spec_jit()
def federated_round(
    spec: AlgorithmSpec,
    state: ServerState,
    train: NodeData | NodeBuckets,
    rng: jax.Array,
    participation: jax.Array | None = None,
) -> tuple[ServerState, ClientResult]:
    """One round: every node updates from the server's parameters, then aggregate.

    Args:
        spec: static algorithm description (strategy, model, hyperparameters).
        state: server state; under a personalised strategy params carry a node axis.
        train: the nodes' rows, either stacked [K, n, ...] (one bucket, every node
            padded alike) or ``NodeBuckets`` (``fedjax_rhd.data.buckets``: one
            vmapped update per bucket of similar sizes, so padding stays small).
            A node's result does not depend on which other nodes share its bucket.
        rng: this round's key; node k uses ``fold_in(rng, k)``.
        participation: f32[K] 1 = the node's update is aggregated, 0 = it sat the
            round out (not sampled, failed, too slow); None = every node. A traced
            array, so sampling never recompiles. Every node still computes (vmap
            has one shape); the weight 0 keeps absent nodes out of the result.

    Returns:
        The new server state and every node's ``ClientResult`` stacked in node order.
    """
    TRACE_COUNTS["round"] += 1  # runs only while tracing: counts compilations
    algorithm = build_algorithm(spec)
    if isinstance(train, NodeData):
        k = train.x.shape[0]
        train = NodeBuckets((train,), (jnp.arange(k, dtype=jnp.int32),), jnp.arange(k, dtype=jnp.int32))
    inputs = None if algorithm.node_inputs is None else algorithm.node_inputs(state)  # stacked [K]
    bucket_results = []
    for part, nodes in zip(train.parts, train.nodes, strict=True):
        keys = jax.vmap(lambda k: jax.random.fold_in(rng, k))(nodes)
        params_axis = 0 if algorithm.personalized else None
        params = state.params
        if algorithm.personalized:
            params = jax.tree.map(lambda leaf, nodes=nodes: leaf[nodes], state.params)
        if inputs is None:
            update = jax.vmap(algorithm.client_update, in_axes=(params_axis, 0, 0))
            bucket_results.append(update(params, part, keys))
        else:
            mine = jax.tree.map(lambda leaf, nodes=nodes: leaf[nodes], inputs)
            update = jax.vmap(algorithm.client_update, in_axes=(params_axis, 0, 0, 0))
            bucket_results.append(update(params, part, keys, mine))
    if len(bucket_results) == 1:
        results = jax.tree.map(lambda leaf: leaf[train.order], bucket_results[0])
    else:
        results = jax.tree.map(lambda *leaves: jnp.concatenate(leaves)[train.order], *bucket_results)
    weights = results.num_examples if participation is None else results.num_examples * participation
    noise_key = jax.random.fold_in(rng, NOISE_STREAM)  # DP-FedAvg's noise (strategies/dp.py); else unused
    return algorithm.aggregate(state, results, weights, noise_key), results


@spec_jit()
def validated_round(
    spec: AlgorithmSpec,
    state: ServerState,
    train: NodeData | NodeBuckets,
    rng: jax.Array,
    participation: jax.Array,
    val: NodeData,
) -> tuple[ServerState, ClientResult, jax.Array]:
    """``federated_round`` then every node's validation loss of what it now holds, in one compiled call.

    The loop validates after every round; computing it inside the round saves a second dispatch
    and host round trip per round (what the simulator's per-round time is made of at the study's
    sizes). The losses are ``node_losses`` of the new state's parameters (the global model on
    every node, or each node's own slice under a personalised strategy).

    Returns:
        The new server state, the nodes' stacked ``ClientResult`` and f32[K] validation losses.
    """
    new_state, results = federated_round(spec, state, train, rng, participation)
    k = participation.shape[0]
    personalized = build_algorithm(spec).personalized
    held = new_state.params if personalized else broadcast(new_state.params, k)
    return new_state, results, node_losses(spec, held, val)


@spec_jit()
def node_losses(spec: AlgorithmSpec, stacked_params: Params, data: NodeData) -> jax.Array:
    """f32[K] each node's validation loss (``node_tasks.validation_loss``) of its own parameters."""
    TRACE_COUNTS["eval"] += 1
    return jax.vmap(lambda p, d: validation_loss(spec, p, d))(stacked_params, data)


@spec_jit()
def stacked_risks(
    spec: AlgorithmSpec, stacked_params: Params, x: jax.Array, observed: jax.Array
) -> jax.Array:
    """f32[K, n] risk of every parameter set on the same rows."""
    TRACE_COUNTS["risk"] += 1
    model = build_model(spec)
    return jax.vmap(model.risk, in_axes=(0, None, None))(stacked_params, x, observed)


@spec_jit()
def own_risks(spec: AlgorithmSpec, stacked_params: Params, x: jax.Array, observed: jax.Array) -> jax.Array:
    """f32[K, n] risk of node k's parameters on node k's own view of the rows (``x`` f32[K, n, d]).

    ``strategy=local``: each node's model reads the rows through its own preprocessing, with the
    layers it never measured unobserved (``fedjax_rhd.data.isolated``); one executable for every K.
    """
    TRACE_COUNTS["risk"] += 1
    model = build_model(spec)
    return jax.vmap(model.risk)(stacked_params, x, observed)


class ManagerTestSet(NamedTuple):
    """The benchmark test set as the manager scores it.

    ``x`` / ``observed`` are [n, d] for one encoding shared by every model, or [K, n, d] when each
    node's model has its own view (``per_node``: ``FederatedData.test_views``, ``strategy=local``).
    """

    x: jax.Array
    observed: jax.Array
    per_node: bool


def manager_test_set(data: FederatedData) -> ManagerTestSet:
    """``data``'s benchmark test set on the device: each node's own view under ``strategy=local``."""
    if data.test_views is None:
        return ManagerTestSet(jax.device_put(data.test.x), jax.device_put(data.test.observed), False)
    return ManagerTestSet(jax.device_put(data.test_views.x), jax.device_put(data.test_views.observed), True)


def score_test_set(spec: AlgorithmSpec, stacked_params: Params, test: ManagerTestSet) -> np.ndarray:
    """f32[M, n_test] risks of M stacked parameter sets (M = K, node order, when ``test.per_node``).

    Raises:
        ValueError: per-node views but not one parameter set per node (a global model has no
            node's view to read the rows through).
    """
    if not test.per_node:
        return np.asarray(stacked_risks(spec, stacked_params, test.x, test.observed))
    given = {int(leaf.shape[0]) for leaf in jax.tree.leaves(stacked_params)}
    if given != {int(test.x.shape[0])}:
        raise ValueError(
            f"each node's model reads the test set through its own preprocessing (strategy=local): "
            f"expected {int(test.x.shape[0])} stacked parameter sets, one per node, got {sorted(given)}"
        )
    return np.asarray(own_risks(spec, stacked_params, test.x, test.observed))


def broadcast(params: Params, num_nodes: int) -> Params:
    """``params`` repeated along a new leading node axis of size ``num_nodes``."""
    return jax.tree.map(lambda leaf: jnp.broadcast_to(leaf, (num_nodes, *leaf.shape)), params)


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """``backend=simulator`` (conf/backend/simulator.yaml): injected faults and time limit.

    Frozen and hashable; also the backend's Hydra schema (``BACKENDS["simulator"]``).
    OmegaConf's ``to_object`` hands lists for the tuple fields and may hand dicts
    for the nested ones: both are converted here.

    Attributes:
        name: the registry key, always ``"simulator"``.
        failures: random failures (``seed.failure``) and named nodes down.
        time_limit: seconds a round waits; nodes whose simulated time exceeds it are dropped.
        timing: each node's simulated time (checked only when ``time_limit`` is set).
    """

    name: str = "simulator"
    failures: Failures = dataclasses.field(default_factory=Failures)
    time_limit: float | None = None
    timing: Timing = dataclasses.field(default_factory=Timing)

    def __post_init__(self) -> None:
        if self.name != "simulator":
            raise ValueError(f"backend.name must be 'simulator' for SimulatorConfig, got {self.name!r}")
        for key, cls in (("failures", Failures), ("timing", Timing)):
            value = getattr(self, key)
            if isinstance(value, Mapping):
                object.__setattr__(self, key, cls(**value))
        if self.time_limit is not None and self.time_limit <= 0:
            raise ValueError(f"backend.time_limit must be > 0 seconds or null, got {self.time_limit}")

    def check_nodes(self, node_names: Sequence[str]) -> None:
        """Fail early, naming the key, when the config names a node the federation lacks."""
        for key, entries in (
            ("backend.failures.down", self.failures.down),
            ("backend.timing.slowdown", self.timing.slowdown),
        ):
            for entry in entries:
                if entry.node not in node_names:
                    raise ValueError(f"{key}: no node named {entry.node!r}; nodes are {list(node_names)}")


class SimulatorBackend(NodeDirectory):
    """Every node in this process: stacked, padded rows; one jitted, vmapped round.

    Every node computes every round (vmap has one shape); nodes that were not
    sampled, failed or timed out get aggregation weight 0.
    """

    def __init__(
        self, config: SimulatorConfig, data: FederatedData, spec: AlgorithmSpec, *, seed_failure: int = 0
    ) -> None:
        """Move the nodes' rows to the device.

        Args:
            config: injected faults and time limit.
            data: the federation's nodes and the benchmark test set.
            spec: the algorithm (``num_features`` filled in).
            seed_failure: ``seed.failure``: random failures and timing jitter.

        Raises:
            ValueError: the config names a node the federation lacks.
        """
        config.check_nodes(data.node_names)
        super().__init__(data.node_names, data.n_train, data.n_val, spec, data.n_val_events)
        self.config = config
        self.seed_failure = seed_failure
        # the round's layout: each node padded to its size class, not to the largest node
        self.buckets = plan_buckets(data.n_train)
        # device_put, not jnp.asarray: an eager asarray lowers a program per array in a new process
        self._train_buckets = jax.device_put(bucket_nodes(data.train, data.n_train, self.buckets))
        self._val = jax.device_put(data.val)
        self._validate = sum(data.n_val) > 0  # else the loop validates nothing (selection=last)
        self._test = manager_test_set(data)
        # each node's own test part (real centres: federated evaluation); None: the manager keeps the test set
        self._node_test = (
            None if data.test_node is None else tuple(data.node_test(k) for k in range(len(self._names)))
        )
        # node k's rows, sliced once: a federated EM fit asks every node hundreds of times
        self._rows: dict[int, NodeRows] = {}
        self._min_cell_count = data.min_cell_count

    def injected_faults(
        self, round_index: int, sampled: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """(failed, timed_out, seconds) of the sampled nodes in ``round_index`` (pure host draws)."""
        failed = sampled & failed_nodes(self.config.failures, self.seed_failure, round_index, self._names)
        seconds = None
        timed_out = np.zeros(len(self._names), dtype=bool)
        if self.config.time_limit is not None:
            seconds = simulated_seconds(
                self.config.timing,
                self.seed_failure,
                round_index,
                self._names,
                rows_per_step(self.spec.client, self._n_train),
                self.spec.client.steps,
            )
            timed_out = sampled & ~failed & (seconds > self.config.time_limit)
        return failed, timed_out, seconds

    def run_round(
        self, state: ServerState, round_index: int, rng: jax.Array, sampled: np.ndarray
    ) -> RoundOutput:
        """One jitted round; weight 1 for the sampled nodes that neither failed nor timed out."""
        failed, timed_out, seconds = self.injected_faults(round_index, sampled)
        # a host array: jit copies it in, cheaper than an eager ``jnp.asarray`` dispatch
        mask = (sampled & ~failed & ~timed_out).astype(np.float32)
        val_loss = None
        if self._validate:
            new_state, results, val = validated_round(
                self.spec, state, self._train_buckets, rng, mask, self._val
            )
            train_loss, val_loss = jax.device_get((results.metrics["train_loss"], val))  # one sync
        else:
            new_state, results = federated_round(self.spec, state, self._train_buckets, rng, mask)
            train_loss = jax.device_get(results.metrics["train_loss"])
        return RoundOutput(
            state=new_state,
            train_loss=np.asarray(train_loss, dtype=np.float64),
            client_params=results.params,
            failed=failed,
            timed_out=timed_out,
            seconds=seconds,
            val_loss=None if val_loss is None else np.asarray(val_loss, dtype=np.float64),
        )

    def validation_losses(self, params: Params) -> np.ndarray:
        """f64[K] validation loss of the params each node holds."""
        held = params if self._personalized else broadcast(params, len(self._names))
        return np.asarray(node_losses(self.spec, held, self._val), dtype=np.float64)

    def final_node_models(self, state: ServerState, rng: jax.Array) -> Params:
        """Stacked [K]: own slices (personalised) or one more local update of the global model."""
        if self._personalized:
            return state.params
        everyone = jnp.ones(len(self._names), jnp.float32)
        if self._validate:  # the executable the rounds ran (its validation losses unused): no new compile
            _, results, _ = validated_round(self.spec, state, self._train_buckets, rng, everyone, self._val)
        else:
            _, results = federated_round(self.spec, state, self._train_buckets, rng, everyone)
        return results.params

    def test_risks(self, stacked_params: Params) -> np.ndarray:
        """f32[M, n_test] risks of M stacked parameter sets on the test set."""
        return score_test_set(self.spec, stacked_params, self._test)

    def finetune(self, params: Params, rng: jax.Array, epochs: int) -> Params:
        """Stacked [K]: ``params`` after ``epochs`` local steps on each node (vmapped ``finetune_node``)."""
        return finetune_nodes(self.spec, params, self._train_buckets, rng, epochs)

    def node_statistic(
        self,
        name: str,
        inputs: dict[str, np.ndarray],
        params: Params | None = None,
        nodes: Sequence[int] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        """``NODE_STATISTICS[name]`` computed on each node's own rows, node by node.

        With ``privacy.min_cell_count`` the inputs carry it, as a Flower node receives them.
        """
        statistic = NODE_STATISTICS[name]
        chosen = range(len(self._names)) if nodes is None else nodes
        inputs = small_cells.with_min_cell_count(inputs, self._min_cell_count)
        return [statistic(self.spec, params, self.node_rows(k), inputs) for k in chosen]

    def node_rows(self, k: int) -> NodeRows:
        """Node k's own rows (what a Flower node reads from its folder)."""
        if k not in self._rows:
            test = None if self._node_test is None else self._node_test[k]
            bucket = next(b for b, members in enumerate(self.buckets.nodes) if k in members)
            train = _node_slice(self._train_buckets.parts[bucket], self.buckets.nodes[bucket].index(k))
            self._rows[k] = NodeRows(train, _node_slice(self._val, k), test)
        return self._rows[k]

    def compilations(self) -> int:
        """Round programs built in this process: traced, or loaded from the executable store."""
        return TRACE_COUNTS["round"] + sum(executables.LOADS[name] for name in _ROUND_PROGRAMS)

    def close(self) -> None:
        """Nothing to stop: every node lives in this process."""


@spec_jit(static_argnames=("epochs",))
def finetune_nodes(
    spec: AlgorithmSpec, params: Params, train: NodeBuckets, rng: jax.Array, epochs: int
) -> Params:
    """Stacked [K] parameters: ``params`` after ``epochs`` local steps on each node.

    Args:
        spec: the run's algorithm (model and client optimiser are reused).
        params: the final global parameters (no node axis).
        train: the nodes' training rows in their size buckets.
        rng: fine-tuning key; node k uses ``fold_in(rng, k)``.
        epochs: full-batch local steps.
    """
    one_node = finetune_node.__wrapped__  # the per-node function a Flower node jits on its own

    def tune(node: NodeData, key: jax.Array) -> Params:
        return one_node(spec, params, node, key, epochs)

    tuned = [
        jax.vmap(tune)(part, jax.vmap(lambda k: jax.random.fold_in(rng, k))(nodes))
        for part, nodes in zip(train.parts, train.nodes, strict=True)
    ]
    return jax.tree.map(lambda *leaves: jnp.concatenate(leaves)[train.order], *tuned)


@stored_jit()
def _node_slice(stacked: NodeData, k: jax.Array | int) -> NodeData:
    """Node ``k``'s rows of a stacked ``NodeData`` (one program for every leaf and every k)."""
    return jax.tree.map(lambda leaf: jax.lax.dynamic_index_in_dim(leaf, k, keepdims=False), stacked)
