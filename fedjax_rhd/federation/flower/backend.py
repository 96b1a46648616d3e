"""``backend=flower``: the driver's side of the Flower backend (a ``Backend`` over Flower messages).

The round loop, trackers, checkpoints and ``results.json`` stay in the
``fedjax-rhd`` process exactly as with the simulator; every call that needs a
node's rows goes through the ServerApp (``server_app.FlowerRounds``) to the
nodes as Flower messages. The run first writes each node's packed rows into
the node's own folder (``protocol.write_node_folder``); a node reads its
folder and nothing else. ``mode=simulation`` runs the ServerApp and ClientApps
in Flower's simulation engine (Ray actors on this machine);
``mode=deployment`` starts a SuperLink and one SuperNode per node as separate
processes on loopback (``processes.LocalDeployment``) and submits the app with
``flwr run``; with ``superlink=host:port`` it uses SuperNodes started
elsewhere (``docs/deployment.md``).

The benchmark holdout (the global test set of a simulated cohort) stays with
the manager: ``test_risks`` scores it in this process. Real centres
(``split=natural``) also keep their own test part in their folder and score it
themselves (the ``test_summary`` statistic: federated evaluation).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Listener
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fedjax_rhd.data import small_cells
from fedjax_rhd.data.buckets import plan_buckets
from fedjax_rhd.data.federated import FederatedData
from fedjax_rhd.data.isolated import alone
from fedjax_rhd.data.preprocess import Moments, Preprocessor, column_ranges, fit_from_statistics
from fedjax_rhd.data.reduce import GroupReduction, fit_group_from_statistics, merged_mean
from fedjax_rhd.federation.backend import NodeDirectory, RoundOutput
from fedjax_rhd.federation.faults import failed_nodes
from fedjax_rhd.federation.flower import bridge, protocol
from fedjax_rhd.federation.flower.config import MODES, FlowerConfig, NodeDelay  # noqa: F401  (re-exported)
from fedjax_rhd.federation.simulator import manager_test_set, score_test_set
from fedjax_rhd.strategies import AlgorithmSpec
from fedjax_rhd.typing import NodeData, Params, ServerState

# Seconds between checks of a deployment's run status while the driver waits. Each check is a `flwr ls`
# process (Python start and flwr import: about 1.5 s of CPU); checked at every 0.5 s wait they took
# a large share of the cores from the nodes' ClientApp processes. A ServerApp process that dies is
# seen at once anyway: its socket to the driver closes.
STATUS_EVERY = 10.0


def _node_slice(stacked: NodeData, k: int) -> NodeData:
    return NodeData(*(np.asarray(leaf[k]) for leaf in stacked))


def write_node_folders(root: Path, data: FederatedData) -> list[Path]:
    """Each node's encoded training and validation rows into ``root/<k>`` (the only copy a node reads).

    The rows are not standardised: preprocessing is fitted from the nodes' statistics
    (``query.prepare_stats``) and each node packs its own rows (``query.prepare``).
    A real centre (``split=natural``) also gets its own test part (``FederatedData.encoded_test``),
    which it packs the same way and scores itself (federated evaluation, ``test_summary``).
    When the use case reduces a feature group, every part holds that group's raw values in place of
    its components (``FederatedData.group_values``): the node computes them (``federated_reduction``).
    """
    reduced = {r.group: r for r in data.reductions if r.components}
    layout = tuple(
        protocol.GroupLayout(group, reduced[group].columns, tuple(int(j) for j in index))
        for group, index in data.component_columns().items()
    )
    folders = []
    for k, name in enumerate(data.node_names):
        meta = protocol.NodeMeta(name, k, data.n_train[k], data.n_val[k])
        train, val = data.encoded[k]
        parts = {"train": train, "val": val}
        if data.encoded_test:
            parts["test"] = data.encoded_test[k]
        groups = data.group_values[k] if layout else None
        folders.append(protocol.write_node_folder(root / str(k), meta, parts, groups, layout))
    return folders


def federated_reduction(driver: bridge.DriverEnd, data: FederatedData) -> tuple[GroupReduction, ...]:
    """Fit each reduced group's principal axes from the nodes' statistics, have every node compute its
    components, and check the fit.

    Two rounds per group (``query.reduce_sums``, then ``query.reduce_scatter`` around the merged
    mean), merged by the data layer's own ``fit_group_from_statistics`` (nodes in partition order), so
    the fit equals the one the simulator's data was built with; then one ``query.reduce_apply`` with
    every group's mean and basis. A difference from the data layer's fit is an error, never a silently
    different run. Runs before ``federated_preprocessing``, whose statistics cover the components.

    Returns:
        The reductions the nodes applied (groups dropped with ``components = 0`` need no message).

    Raises:
        RuntimeError: a node did not answer, or the nodes' fit differs from the data layer's.
    """
    fitted = []
    for red in data.reductions:
        if not red.components:
            continue
        k = data.min_cell_count
        sums = [(s["count"], s["sum"]) for s in driver.call("reduction_sums", red.group, k)]
        mean = merged_mean(sums)
        scatters = [
            (int(s["rows"]), s["scatter"]) for s in driver.call("reduction_scatters", red.group, mean, k)
        ]
        ours = fit_group_from_statistics(sums, scatters, red.columns, red.group, red.components)
        if ours.n_rows != red.n_rows:
            raise RuntimeError(
                f"federated reduction of {red.group!r}: the nodes hold {ours.n_rows} training rows with "
                f"values, the data layer {red.n_rows}"
            )
        for field in ("mean", "eigenvalues", "basis"):
            a, b = getattr(ours, field), getattr(red, field)
            # bit-equal when the nodes are the data layer's (tests/federation/flower); a pooled node
            # (centralized) sends one node's sums where the data layer merged K, equal to rounding
            if not np.allclose(a, b, rtol=1e-12, atol=1e-12):
                worst = float(np.max(np.abs(a - b)))
                raise RuntimeError(
                    f"federated reduction of {red.group!r}: the nodes' {field} differs from the data "
                    f"layer's by {worst}"
                )
        fitted.append(ours)
    if fitted:
        fits = {f"{kind}.{r.group}": v for r in fitted for kind, v in (("mean", r.mean), ("basis", r.basis))}
        driver.call("reduce", fits)
    return tuple(fitted)


def federated_preprocessing(driver: bridge.DriverEnd, data: FederatedData) -> Preprocessor:
    """Fit preprocessing from the nodes' statistics, have every node pack its rows, and check the result.

    The merge is the data layer's own (``fit_from_statistics``, nodes in partition order), so the
    preprocessor equals the one the simulator's data was built with; a difference is an error,
    never a silently different run. Under ``strategy=local`` (``data.isolated``) node k's own
    preprocessing is fitted from node k's statistics alone and sent to node k alone; its own test
    part (real centres) is packed as the main model (node 1's own) reads rows.
    """
    stats = driver.call("preprocessing_statistics", column_ranges(data.guide), data.min_cell_count)
    moments = [Moments(s["count"], s["mean"], s["m2"]) for s in stats]
    prep, _ = fit_from_statistics(data.guide, moments, [s["histogram"] for s in stats])
    _check_fit(prep, data.preprocessor, "federated preprocessing")
    if data.isolated:
        preps = []
        for k, (m, s) in enumerate(zip(moments, stats, strict=True)):
            own = alone(*fit_from_statistics(data.guide, [m], [s["histogram"]]))
            _check_fit(own, data.node_preprocessors[k], f"{data.node_names[k]}'s own preprocessing")
            preps.append(own)
    else:
        preps = [prep] * len(data.node_names)
    sent = [{"center": p.center, "scale": p.scale, "fill": p.fill} for p in preps]
    test_prep, unseen = data.main_test_packing()
    if data.isolated and data.test_node is not None:  # each node's own test part, read by node 1's model
        test = {"test_center": test_prep.center, "test_scale": test_prep.scale, "test_fill": test_prep.fill}
        test["test_unseen"] = np.asarray(unseen, dtype=np.uint8)
        sent = [{**s, **test} for s in sent]
    plan = plan_buckets(data.n_train)  # each node packs its rows as its simulator bucket does
    pads = [plan.pad_of(k) for k in range(len(data.n_train))]
    driver.call("prepare", sent, pads, data.val.x.shape[1])
    return prep


def _check_fit(ours: Preprocessor, theirs: Preprocessor, what: str) -> None:
    """Refuse a fit from the nodes' statistics that differs from the data layer's."""
    for field in ("center", "scale", "fill"):
        a, b = getattr(ours, field), getattr(theirs, field)
        # bit-equal when the nodes are the data layer's; a pooled node (centralized) merges
        # one node's moments instead of K, equal to rounding
        if not np.allclose(a, b, rtol=1e-12, atol=1e-12):
            worst = float(np.max(np.abs(a - b)))
            raise RuntimeError(f"{what}: the nodes' {field} differs from the data layer's by {worst}")


class FlowerBackend(NodeDirectory):
    """A ``Backend`` whose nodes are Flower ClientApps; see the module docstring."""

    def __init__(
        self, config: FlowerConfig, data: FederatedData, spec: AlgorithmSpec, *, seed_failure: int = 0
    ) -> None:
        """Write the nodes' folders and start Flower (simulation engine or deployment).

        Raises:
            ValueError: the config names a node the federation lacks.
            bridge.ServerAppFailed: Flower did not start, the nodes did not answer, or they hold other rows.
        """
        config.check_nodes(data.node_names)
        super().__init__(data.node_names, data.n_train, data.n_val, spec, data.n_val_events)
        self._min_cell_count = data.min_cell_count
        self.config, self.seed_failure = config, seed_failure
        self._test = manager_test_set(data)
        self._own_workdir = config.workdir is None
        self.workdir = Path(config.workdir or tempfile.mkdtemp(prefix="fedjax_rhd_flower_"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        # With a remote SuperLink each site already holds its own folder (docs/deployment.md).
        remote_nodes = config.superlink is not None
        self.node_folders = [] if remote_nodes else write_node_folders(self.workdir / "nodes", data)
        self._closed = False
        self._thread: threading.Thread | None = None
        self.deployment: Any = None
        self._listener: Listener | None = None
        started = time.perf_counter()
        try:
            if config.mode == "simulation":
                self._driver = self._start_simulation()
                nodes_root: str | None = str(self.workdir / "nodes")
            else:
                self._driver = self._start_deployment()
                nodes_root = None
            setup = _setup(spec, self._names, nodes_root, config)
            # Ray or the SuperLink may never start the ServerApp: bounded, never a hang
            metas = self._driver.call("setup", setup, timeout=config.connect_timeout + 60)
            held = tuple((m.name, m.n_train, m.n_val) for m in metas)
            expected = tuple(zip(self._names, self._n_train, self._n_val, strict=True))
            if held != expected:  # e.g. a site's folder exported from another split or cohort
                raise bridge.ServerAppFailed(
                    f"the Flower nodes hold (name, n_train, n_val) {held}; the run expects {expected}"
                )
            federated_reduction(self._driver, data)
            federated_preprocessing(self._driver, data)
        except TimeoutError as err:  # Flower never started the ServerApp, or the nodes never answered
            self.close()
            raise bridge.ServerAppFailed(str(err)) from err
        except BaseException:
            self.close()
            raise
        self.startup_seconds = time.perf_counter() - started

    # --- start and stop ---------------------------------------------------------------------

    def _start_simulation(self) -> bridge.DriverEnd:
        from flwr.simulation import run_simulation

        from fedjax_rhd.federation.flower import client_app, server_app

        errors: list[BaseException] = []
        holder: dict[str, threading.Thread] = {}
        driver, recv, send = bridge.queue_pair(lambda: bridge.thread_alive(holder["thread"], errors)())
        backend_config = {
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
            "init_args": {
                "num_cpus": self.config.actors,
                "include_dashboard": False,
                "logging_level": logging.ERROR,
            },
        }

        def target() -> None:
            try:
                run_simulation(
                    server_app=server_app.make_server_app(recv, send),
                    client_app=client_app.app,
                    num_supernodes=len(self._names),
                    backend_config=backend_config,  # type: ignore[arg-type]
                )
            except BaseException as err:  # reported by the driver's next call
                errors.append(err)

        holder["thread"] = self._thread = threading.Thread(
            target=target, name="flower-simulation", daemon=True
        )
        self._thread.start()
        return driver

    def _start_deployment(self) -> bridge.DriverEnd:
        from fedjax_rhd.federation.flower import flwr_cli, processes, remote, server_app

        if self.config.superlink is not None:
            # SuperNodes started at the sites; the SuperLink, and so the ServerApp that connects back
            # to this process's loopback Listener, runs on this host (docs/deployment.md).
            ca = None if self.config.insecure else Path(str(self.config.root_certificates))
            self.deployment = remote.RemoteSuperLink(
                self.config.superlink, self.workdir, root_certificates=ca
            )
        else:
            n = len(self._names)
            nodes = [processes.NodeLaunch(k, n, folder) for k, folder in enumerate(self.node_folders)]
            self.deployment = processes.LocalDeployment(
                self.workdir,
                nodes,
                poll_interval=self.config.superexec_poll,
                node_workers=self.config.node_workers,
                insecure=self.config.insecure,
                node_auth=self.config.node_auth,
            )
        authkey = secrets.token_bytes(32)
        self._listener = Listener(("127.0.0.1", 0), authkey=authkey)
        host, port = self._listener.address
        app_dir = flwr_cli.write_app_dir(
            self.workdir / "app",
            serverapp="fedjax_rhd.federation.flower.server_app:app",
            clientapp="fedjax_rhd.federation.flower.client_app:app",
            config={server_app.BRIDGE_ADDRESS_KEY: "", server_app.BRIDGE_KEY_KEY: ""},
        )
        self.deployment.start()
        self.run_id = self.deployment.submit(
            app_dir,
            {server_app.BRIDGE_ADDRESS_KEY: f"{host}:{port}", server_app.BRIDGE_KEY_KEY: authkey.hex()},
        )
        conn = _accept(
            self._listener, self.config.connect_timeout, lambda: self.deployment.run_status(self.run_id)
        )

        def alive() -> str | None:
            status = self.deployment.run_status(self.run_id)
            return None if status.startswith(("running", "starting", "pending")) else f"Flower run {status}"

        return bridge.connection_driver(conn, _at_most_every(STATUS_EVERY, alive))

    def close(self) -> None:
        """Stop the ServerApp and Flower's processes (idempotent); remove a temporary workdir."""
        if self._closed:
            return
        self._closed = True
        driver = getattr(self, "_driver", None)
        if driver is not None:
            try:
                driver.call(bridge.STOP, timeout=30)
            except Exception:  # already gone: nothing left to stop on that side
                pass
        if self._thread is not None:
            self._thread.join(timeout=60)
        if self.deployment is not None:
            self.deployment.stop()
        if self._listener is not None:
            self._listener.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> FlowerBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- Backend ----------------------------------------------------------------------------

    def run_round(
        self, state: ServerState, round_index: int, rng: jax.Array, sampled: np.ndarray
    ) -> RoundOutput:
        """One round over Flower; nodes drawn as failed (``backend.failures``) are not sent a message."""
        injected = failed_nodes(self.config.failures, self.seed_failure, round_index, self._names)
        out: RoundOutput = self._driver.call(
            "run_round", state, round_index, jax.random.key_data(rng), np.asarray(sampled & ~injected)
        )
        return dataclasses.replace(out, failed=np.asarray(out.failed) | (sampled & injected))

    def validation_losses(self, params: Params) -> np.ndarray:
        return np.asarray(self._driver.call("validation_losses", params), dtype=np.float64)

    def final_node_models(self, state: ServerState, rng: jax.Array) -> Params:
        return self._driver.call("final_node_models", state, jax.random.key_data(rng))

    def finetune(self, params: Params, rng: jax.Array, epochs: int) -> Params:
        return self._driver.call("finetune", params, jax.random.key_data(rng), epochs)

    def node_statistic(
        self,
        name: str,
        inputs: dict[str, np.ndarray],
        params: Params | None = None,
        nodes: list[int] | None = None,
    ) -> list[dict[str, np.ndarray]]:
        partitions = list(range(len(self._names))) if nodes is None else list(nodes)
        inputs = small_cells.with_min_cell_count(inputs, self._min_cell_count)
        return self._driver.call("statistic", name, inputs, params, partitions)

    def test_risks(self, stacked_params: Params) -> np.ndarray:
        """f32[M, n_test] on the benchmark holdout, which the manager holds (no message)."""
        return score_test_set(self.spec, stacked_params, self._test)

    def compilations(self) -> int:
        return int(self._driver.call("compilations"))


def _setup(
    spec: AlgorithmSpec, node_names: tuple[str, ...], nodes_root: str | None, config: FlowerConfig
) -> Any:
    from fedjax_rhd.federation.flower.server_app import Setup

    num_nodes = len(node_names)
    by_name = {d.node: d.seconds for d in config.delays}
    return Setup(
        spec_json=protocol.spec_to_json(spec),
        num_nodes=num_nodes,
        nodes_root=nodes_root,
        time_limit=config.time_limit,
        delays=tuple(float(by_name.get(name, 0.0)) for name in node_names),
        connect_timeout=config.connect_timeout,
        poll_interval=config.poll_interval,
    )


def _at_most_every(seconds: float, check: Callable[[], str | None]) -> Callable[[], str | None]:
    """``check``, run at most once every ``seconds`` (None, "still alive", in between)."""
    last = [-math.inf]

    def throttled() -> str | None:
        now = time.monotonic()
        if now - last[0] < seconds:
            return None
        last[0] = now
        return check()

    return throttled


def _accept(listener: Listener, timeout: float, status: Any) -> Any:
    """Accept the ServerApp's connection, failing after ``timeout`` s or when the Flower run ended
    (its status is checked every ``STATUS_EVERY`` s)."""
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.setdefault("conn", listener.accept()), daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout

    def ended() -> str | None:
        state = status()
        return state if state.startswith("finished") else None

    check = _at_most_every(STATUS_EVERY, ended)
    while thread.is_alive() and time.monotonic() < deadline:
        thread.join(1.0)
        state = check() if thread.is_alive() else None
        if state is not None:
            raise bridge.ServerAppFailed(f"the Flower run ended before its ServerApp connected: {state}")
    if "conn" not in box:
        raise TimeoutError(f"the Flower ServerApp did not connect within {timeout:.0f} s")
    return box["conn"]
