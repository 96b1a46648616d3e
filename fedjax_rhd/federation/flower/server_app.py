"""The Flower ServerApp: the manager's side of ``backend=flower``.

``FlowerRounds`` sends Flower messages to the nodes, waits for their replies
(its own push/pull loop, not the grid's ``send_and_receive`` with its fixed 3 s
sleep), puts them in partition order (replies arrive in any order, and the
weighted mean must not depend on it) and aggregates with the strategy's own
``aggregate``, the function the simulator calls. Flower's node ids are random
on every run, so a first ``query.hello`` round maps them to partitions.

The driver (``fedjax_rhd.federation.flower.backend``) calls its methods through
``bridge``: in simulation through queues (``make_server_app``), in a deployment
through the loopback socket named in the run config (the module-level ``app``).
"""

from __future__ import annotations

import dataclasses
import time
from multiprocessing.connection import Client
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from fedjax_rhd.data import small_cells
from fedjax_rhd.federation.backend import RoundOutput
from fedjax_rhd.federation.flower import bridge, protocol
from fedjax_rhd.federation.flower.records import (
    from_record,
    key_data,
    to_record,
)
from fedjax_rhd.federation.flower.wire import arrays_record, record_arrays
from fedjax_rhd.strategies import AlgorithmSpec, build_algorithm, build_model
from fedjax_rhd.strategies.dp import NOISE_STREAM
from fedjax_rhd.strategies.traced import spec_jit
from fedjax_rhd.typing import ClientResult, Params, ServerState

BRIDGE_ADDRESS_KEY = "bridge-address"  # run-config keys of a deployment's ServerApp
BRIDGE_KEY_KEY = "bridge-key"
AGGREGATE_TRACES = {"count": 0}


@spec_jit()
def aggregate(
    spec: AlgorithmSpec, state: ServerState, results: ClientResult, weights: jax.Array, rng: jax.Array
) -> ServerState:
    """The strategy's ``aggregate`` (stacked results in partition order; weight 0 = not aggregated).

    ``rng`` is the round's key; DP-FedAvg draws its noise from ``fold_in(rng, NOISE_STREAM)``,
    exactly as the simulator's round does.
    """
    AGGREGATE_TRACES["count"] += 1
    return build_algorithm(spec).aggregate(state, results, weights, jax.random.fold_in(rng, NOISE_STREAM))


@dataclasses.dataclass(frozen=True)
class Setup:
    """What the driver tells the ServerApp once.

    Attributes:
        spec_json: the algorithm (``protocol.spec_to_json``), sent inside every message.
        num_nodes: nodes to wait for.
        nodes_root: simulation only: the folder of every node's folder (one host).
        time_limit: seconds a training round waits for replies (None: until every node
            answers or Flower reports it unavailable); also the messages' TTL.
        delays: injected slowness per partition (``backend.delays``), sent in its train messages.
        connect_timeout: seconds to wait for the nodes to register and answer ``query.hello``.
        poll_interval: seconds between pulls of replies.
    """

    spec_json: str
    num_nodes: int
    nodes_root: str | None = None
    time_limit: float | None = None
    delays: tuple[float, ...] = ()  # injected: seconds each partition sleeps per train message
    connect_timeout: float = 120.0
    poll_interval: float = 0.05


@dataclasses.dataclass(frozen=True)
class Exchange:
    """Replies of one message round, by partition, and who did not answer."""

    replies: dict[int, Message]
    failed: dict[int, str]  # partition -> Flower's error (crashed, unavailable)
    timed_out: tuple[int, ...]  # no reply within the time limit


class FlowerRounds:
    """The ServerApp's half of the Flower backend: messages out, replies in partition order, aggregate."""

    def __init__(self, grid: Grid, setup: Setup) -> None:
        self.grid, self.setup = grid, setup
        self.spec = protocol.spec_from_json(setup.spec_json)
        self.algorithm = build_algorithm(self.spec)
        self.template = jax.eval_shape(build_model(self.spec).init, jax.random.key(0))
        self.node_ids: dict[int, int] = {}
        self.metas: list[protocol.NodeMeta] = []

    # --- connection -------------------------------------------------------------------------

    def connect(self) -> list[protocol.NodeMeta]:
        """Wait for ``num_nodes`` nodes, then map Flower's node ids to partitions with ``query.hello``."""
        deadline = time.monotonic() + self.setup.connect_timeout
        ids: list[int] = []
        while time.monotonic() < deadline:
            ids = sorted(self.grid.get_node_ids())  # 0 when main starts: nodes register after it
            if len(ids) >= self.setup.num_nodes:
                break
            time.sleep(0.1)
        else:
            raise TimeoutError(
                f"{len(ids)} of {self.setup.num_nodes} Flower nodes registered within "
                f"{self.setup.connect_timeout:.0f} s (are all SuperNodes started and pointed at this "
                "SuperLink?)"
            )
        by_id = {node_id: node_id for node_id in ids}
        hello = {i: RecordDict({"config": self._config()}) for i in by_id}
        exchange = self._exchange(protocol.HELLO, hello, by_id, max(deadline - time.monotonic(), 5.0))
        metas = {}
        for node_id, reply in exchange.replies.items():
            meta = protocol.NodeMeta(**dict(reply.content["meta"]))
            if meta.partition_id in metas:
                raise ValueError(f"two Flower nodes both hold partition {meta.partition_id}")
            metas[meta.partition_id] = meta
            self.node_ids[meta.partition_id] = node_id
        missing = sorted(set(range(self.setup.num_nodes)) - set(metas))
        if missing or exchange.failed:
            raise RuntimeError(f"no node answered for partitions {missing}; errors: {exchange.failed}")
        self.metas = [metas[k] for k in range(self.setup.num_nodes)]
        return self.metas

    def reconnect(self, online: set[int]) -> None:
        """Map nodes Flower lists but we do not know (a restarted SuperNode gets a new id without auth)."""
        known = set(self.node_ids.values())
        new = {i: i for i in online if i not in known}
        if not new:
            return
        hello = {i: RecordDict({"config": self._config()}) for i in new}
        exchange = self._exchange(protocol.HELLO, hello, new, 30.0)
        for node_id, reply in exchange.replies.items():
            self.node_ids[int(reply.content["meta"]["partition_id"])] = node_id

    # --- messages ---------------------------------------------------------------------------

    def _config(self, **extra: Any) -> ConfigRecord:
        values: dict[str, Any] = {"spec": self.setup.spec_json, **extra}
        if self.setup.nodes_root is not None:
            values[protocol.NODES_ROOT_KEY] = self.setup.nodes_root
        return ConfigRecord(protocol.config_values(values))

    def _exchange(
        self,
        message_type: str,
        contents: dict[int, RecordDict],
        node_ids: dict[int, int],
        timeout: float | None,
    ) -> Exchange:
        """Send ``contents[k]`` to node ``node_ids[k]``; collect replies until all came or ``timeout``."""
        ttl = None if timeout is None else max(timeout, 1.0)
        sent: dict[str, int] = {}
        replies: dict[int, Message] = {}
        # a partition whose node Flower no longer lists (it died and was detected) fails at once
        failed: dict[int, str] = {k: "node unavailable" for k in contents if k not in node_ids}
        targets = [k for k in contents if k in node_ids]
        messages = [
            Message(contents[k], node_ids[k], message_type, ttl=ttl, group_id=message_type) for k in targets
        ]
        for k, message_id in zip(targets, self.grid.push_messages(messages) if messages else [], strict=True):
            sent[message_id] = k
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = set(sent)
        while pending and (deadline is None or time.monotonic() < deadline):
            for reply in self.grid.pull_messages(list(pending)):
                # A dead node's error comes from the SuperLink (src_node_id 1): map by reply_to.
                message_id = reply.metadata.reply_to_message_id
                if message_id not in pending:
                    continue
                pending.discard(message_id)
                k = sent[message_id]
                if reply.has_error():
                    failed[k] = f"code {reply.error.code}: {reply.error.reason}"
                else:
                    replies[k] = reply
            if pending:
                time.sleep(self.setup.poll_interval)
        return Exchange(replies, failed, tuple(sorted(sent[m] for m in pending)))

    def _to_nodes(self, partitions: list[int]) -> dict[int, int]:
        """Flower ids of the partitions' nodes that Flower lists as online (a restarted node is re-mapped)."""
        online = set(self.grid.get_node_ids())
        if any(self.node_ids.get(k) not in online for k in partitions):
            self.reconnect(online)
        return {k: self.node_ids[k] for k in partitions if self.node_ids.get(k) in online}

    def _params_for(self, params: Params, k: int) -> Params:
        return jax.tree.map(lambda p: p[k], params) if self.algorithm.personalized else params

    def _train_all(
        self, state: ServerState, rng: jax.Array, partitions: list[int], timeout: float | None
    ) -> tuple[Exchange, list[ClientResult | None]]:
        params = state.params
        # SCAFFOLD: node k's correction c - c_i travels with the model (node_input)
        inputs = None if self.algorithm.node_inputs is None else self.algorithm.node_inputs(state)
        contents = {}
        for k in partitions:
            records = {
                "params": to_record(self._params_for(params, k)),
                "key": arrays_record({"key": key_data(jax.random.fold_in(rng, k))}),
                "config": self._config(delay=self.setup.delays[k] if self.setup.delays else 0.0),
            }
            if inputs is not None:
                records["node_input"] = to_record(jax.tree.map(lambda leaf, k=k: leaf[k], inputs))
            contents[k] = RecordDict(records)
        exchange = self._exchange(protocol.TRAIN, contents, self._to_nodes(partitions), timeout)
        results: list[ClientResult | None] = [None] * self.setup.num_nodes
        for k, reply in exchange.replies.items():
            metrics = reply.content["metrics"]
            results[k] = ClientResult(
                params=from_record(reply.content["params"], self.template),
                num_examples=np.float32(metrics["num_examples"]),
                metrics={"train_loss": np.float32(metrics["train_loss"])},
            )
        return exchange, results

    def _stacked(self, params: Params, results: list[ClientResult | None]) -> ClientResult:
        """Results in partition order; a node that did not answer holds the params it was sent, 0 examples."""
        filled = [
            r
            if r is not None
            else ClientResult(
                jax.tree.map(np.asarray, self._params_for(params, k)),
                np.float32(0.0),
                {"train_loss": np.float32(np.nan)},
            )
            for k, r in enumerate(results)
        ]
        return jax.tree.map(lambda *leaves: np.stack(leaves), *filled)

    # --- the Backend methods the driver calls -----------------------------------------------

    def run_round(
        self, state: ServerState, round_index: int, rng_data: np.ndarray, sampled: np.ndarray
    ) -> RoundOutput:
        """Train the sampled nodes, aggregate those that answered in time (partition order)."""
        del round_index
        rng = jax.random.wrap_key_data(rng_data)
        partitions = [k for k in range(self.setup.num_nodes) if sampled[k]]
        exchange, results = self._train_all(state, rng, partitions, self.setup.time_limit)
        stacked = self._stacked(state.params, results)
        answered = np.array([r is not None for r in results], dtype=np.float32)
        weights = jnp.asarray(stacked.num_examples * answered)
        new_state = aggregate(self.spec, state, stacked, weights, rng) if answered.any() else state
        failed = np.zeros(self.setup.num_nodes, dtype=bool)
        failed[list(exchange.failed)] = True
        timed_out = np.zeros(self.setup.num_nodes, dtype=bool)
        timed_out[list(exchange.timed_out)] = True
        return RoundOutput(
            state=jax.device_get(new_state),
            train_loss=np.asarray(stacked.metrics["train_loss"], dtype=np.float64),
            client_params=stacked.params,
            failed=failed,
            timed_out=timed_out,
            seconds=None,
        )

    def validation_losses(self, params: Params) -> np.ndarray:
        """f64[K] each node's validation loss; NaN for a node that did not answer."""
        partitions = list(range(self.setup.num_nodes))
        contents = {
            k: RecordDict({"params": to_record(self._params_for(params, k)), "config": self._config()})
            for k in partitions
        }
        exchange = self._exchange(
            protocol.VAL_LOSS, contents, self._to_nodes(partitions), self.setup.time_limit
        )
        losses = np.full(self.setup.num_nodes, np.nan)
        for k, reply in exchange.replies.items():
            losses[k] = float(reply.content["metrics"]["val_loss"])
        return losses

    def final_node_models(self, state: ServerState, rng_data: np.ndarray) -> Params:
        """Stacked [K]: own slices (personalised), else the global model after one more local update."""
        if self.algorithm.personalized:
            return state.params
        rng = jax.random.wrap_key_data(rng_data)
        _, results = self._train_all(state, rng, list(range(self.setup.num_nodes)), self.setup.time_limit)
        return self._stacked(state.params, results).params

    def finetune(self, params: Params, rng_data: np.ndarray, epochs: int) -> Params:
        """Stacked [K]: ``params`` fine-tuned by every node on its training rows (``train.finetune``)."""
        rng = jax.random.wrap_key_data(rng_data)
        partitions = list(range(self.setup.num_nodes))
        contents = {
            k: RecordDict(
                {
                    "params": to_record(params),
                    "key": arrays_record({"key": key_data(jax.random.fold_in(rng, k))}),
                    "config": self._config(epochs=int(epochs)),
                }
            )
            for k in partitions
        }
        exchange = self._exchange(
            protocol.FINETUNE, contents, self._to_nodes(partitions), self.setup.time_limit
        )
        missing = sorted(set(partitions) - set(exchange.replies))
        if missing:
            raise RuntimeError(f"fine-tuning: nodes {missing} did not answer ({exchange.failed})")
        tuned = [from_record(exchange.replies[k].content["params"], self.template) for k in partitions]
        return jax.tree.map(lambda *leaves: np.stack(leaves), *tuned)

    def statistic(
        self, name: str, inputs: dict[str, np.ndarray], params: Params | None, partitions: list[int]
    ) -> list[dict[str, np.ndarray]]:
        """``node_tasks.NODE_STATISTICS[name]`` from each of ``partitions`` (``query.statistic``)."""
        contents = {}
        for k in partitions:
            records: dict[str, Any] = {
                "inputs": arrays_record(inputs),
                "config": self._config(statistic=name),
            }
            if params is not None:
                records["params"] = to_record(params)
            contents[k] = RecordDict(records)
        exchange = self._exchange(
            protocol.STATISTIC, contents, self._to_nodes(partitions), self.setup.time_limit
        )
        missing = sorted(set(partitions) - set(exchange.replies))
        if missing:
            raise RuntimeError(f"statistic {name!r}: nodes {missing} did not answer ({exchange.failed})")
        return [record_arrays(exchange.replies[k].content["outputs"]) for k in partitions]

    def preprocessing_statistics(
        self, ranges: np.ndarray, min_cell_count: int = 0
    ) -> list[dict[str, np.ndarray]]:
        """Each node's moments and histograms of its encoded training rows, in partition order
        (cells below ``min_cell_count`` coarsened on the node, ``preprocess.node_statistics``)."""
        inputs = small_cells.with_min_cell_count({"ranges": ranges}, min_cell_count)
        return self._ask_all(protocol.PREPARE_STATS, inputs, "outputs")

    def prepare(self, preps: list[dict[str, np.ndarray]], pad_train: list[int], pad_val: int) -> None:
        """Every node packs its rows with the fitted preprocessing and its padding.

        ``preps[k]``: what node k packs with: ``center``, ``scale``, ``fill`` (the federation's, the
        same for every node, or under ``strategy=local`` node k's own), optionally ``test_center``,
        ``test_scale``, ``test_fill`` and ``test_unseen`` for its own test part (the main model's
        packing, ``FederatedData.main_test_packing``). ``pad_train[k]``: node k's training rows
        after padding (its simulator size bucket, ``fedjax_rhd.data.buckets``), so a node computes
        with the simulator's shapes.
        """
        self._ask_all(
            protocol.PREPARE, {}, None, per_node=[{"pad_train": int(p)} for p in pad_train],
            per_node_inputs=preps, pad_val=int(pad_val),
        )  # fmt: skip

    def reduction_sums(self, group: str, min_cell_count: int = 0) -> list[dict[str, np.ndarray]]:
        """Round 1 of ``group``'s federated PCA: each node's column counts and sums, in partition order."""
        inputs = small_cells.with_min_cell_count({}, min_cell_count)
        return self._ask_all(protocol.REDUCE_SUMS, inputs, "outputs", group=group)

    def reduction_scatters(
        self, group: str, mean: np.ndarray, min_cell_count: int = 0
    ) -> list[dict[str, np.ndarray]]:
        """Round 2: each node's rows with values and scatter matrix around ``mean``, in partition order."""
        inputs = small_cells.with_min_cell_count({"mean": mean}, min_cell_count)
        return self._ask_all(protocol.REDUCE_SCATTER, inputs, "outputs", group=group)

    def reduce(self, fits: dict[str, np.ndarray]) -> None:
        """Every node computes its components (``fits``: ``mean.<group>``, ``basis.<group>``)."""
        self._ask_all(protocol.REDUCE_APPLY, fits, None)

    def _ask_all(
        self,
        message_type: str,
        inputs: dict[str, np.ndarray],
        reply_key: str | None,
        per_node: list[dict[str, Any]] | None = None,
        per_node_inputs: list[dict[str, np.ndarray]] | None = None,
        **config: Any,
    ) -> list:
        partitions = list(range(self.setup.num_nodes))
        own = per_node or [{} for _ in partitions]
        # arrays for one node only (its own preprocessing under strategy=local): sent to it alone
        own_inputs = per_node_inputs or [{} for _ in partitions]
        contents = {
            k: RecordDict(
                {
                    "inputs": arrays_record({**inputs, **own_inputs[k]}),
                    "config": self._config(**config, **own[k]),
                }
            )
            for k in partitions
        }
        exchange = self._exchange(message_type, contents, self._to_nodes(partitions), self.setup.time_limit)
        missing = sorted(set(partitions) - set(exchange.replies))
        if missing:
            raise RuntimeError(f"{message_type}: nodes {missing} did not answer ({exchange.failed})")
        return [
            None if reply_key is None else record_arrays(exchange.replies[k].content[reply_key])
            for k in partitions
        ]

    def compilations(self) -> int:
        return AGGREGATE_TRACES["count"]


def _session(grid: Grid, recv: Any, send: Any) -> None:
    """One run: setup (connect to the nodes), then serve the driver's calls until ``stop``."""
    method, (setup,) = recv()
    if method != "setup":
        raise RuntimeError(f"the driver's first call must be 'setup', got {method!r}")
    try:
        rounds = FlowerRounds(grid, setup)
        send(("ok", rounds.connect()))
    except Exception as err:
        send(("error", f"{type(err).__name__}: {err}"))
        return
    bridge.serve(recv, send, rounds)


def make_server_app(recv: Any, send: Any) -> ServerApp:
    """A ServerApp serving an in-process channel (simulation: the ServerApp is a thread of the driver)."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        del context
        _session(grid, recv, send)

    return server_app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Deployment: connect back to the driver named in the run config, then serve it."""
    address = str(context.run_config[BRIDGE_ADDRESS_KEY])
    host, _, port = address.rpartition(":")
    conn = Client((host, int(port)), authkey=bytes.fromhex(str(context.run_config[BRIDGE_KEY_KEY])))
    try:
        _session(grid, conn.recv, conn.send)
    finally:
        conn.close()
