"""A local Flower deployment: one SuperLink and one SuperNode per node, as OS processes on loopback.

``LocalDeployment`` starts ``flower-superlink`` and one ``flower-supernode`` per ``NodeLaunch`` (with,
if asked, the node's warm worker, ``node_worker``), each on its own free port of
127.0.0.1, writes the ``flwr`` CLI's connection into a private ``FLWR_HOME``, submits runs with
``flwr run`` and follows them with ``flwr ls`` (``flwr_cli``). Its one promise beyond
Flower's: no process it started outlives it (``guard``):

* every process started here gets its own session and dies with the thread that started it
  (``guard.die_with_parent_fn``), and a ``guard.Watchdog`` kills them all if this process is killed;
* ``stop`` (idempotent; registered with ``atexit`` and called by ``__exit__`` whatever ends the block,
  ``KeyboardInterrupt`` included) SIGTERMs the SuperNodes, then the SuperLink, each with its process
  group and every descendant seen (SuperExecs, ServerApp and ClientApp processes), SIGKILLs what is
  left after a grace period and waits until none of them runs.

Call ``start`` and ``restart_node`` from the main thread (or from a thread that lives as long as the
deployment): PDEATHSIG fires when the forking *thread* ends. Zombies (exited, unreaped) run nothing,
and ``pids`` leaves them out.

The same commands with SuperNodes on other hosts are in ``docs/deployment.md``; ``remote.RemoteSuperLink``
submits to such a SuperLink.

Example::

    nodes = [NodeLaunch(i, 2, run_dir / f"node{i}") for i in range(2)]
    app = write_app_dir(run_dir / "app", serverapp="m:server_app", clientapp="m:client_app",
                        config={"result-path": ""})
    with LocalDeployment(run_dir, nodes) as deployment:
        run_id = deployment.submit(app, {"result-path": str(run_dir / "result.json")})
        deployment.wait_run(run_id, timeout=300)
"""

from __future__ import annotations

import atexit
import collections
import dataclasses
import logging
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psutil

from fedjax_rhd.federation.flower import certificates, guard
from fedjax_rhd.federation.flower.flwr_cli import (
    CONNECTION,
    LOG_TAIL_CHARS,
    FlwrCli,
    cli_pairs,
    flower_env,
    write_connection,
)
from fedjax_rhd.federation.flower.guard import KILL_WAIT, STOP_GRACE
from fedjax_rhd.federation.flower.runs import SuperLinkRuns

LOCALHOST = "127.0.0.1"
# the SuperLink's log line for a SuperNode whose key is not registered (flower_1.42_facts.md §4)
ACTIVATED = "SuperNode ID:"  # a SuperNode's log line once the SuperLink has activated it
RESTART_PATIENCE = 150.0  # seconds restart_node keeps retrying a SuperNode the SuperLink refuses
REFUSED_KEY = re.compile(
    r"Attempted to register SuperNode with public key: b'(-----BEGIN PUBLIC KEY-----.*?)'"
)

log = logging.getLogger(__name__)


_recent_ports: collections.deque[int] = collections.deque(maxlen=256)


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (bound to port 0, read, closed).

    No port is handed out twice within the last 256 calls in this process, so the ports of one
    deployment are distinct. Another process may still take the port before it is used; a server
    that then cannot bind exits, which ``LocalDeployment.start`` reports.

    Returns:
        The port number.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOCALHOST, 0))
            port = sock.getsockname()[1]
        if port not in _recent_ports:
            _recent_ports.append(port)
            return port
    raise RuntimeError("the kernel kept handing out recently used ports; no free port found")


@dataclasses.dataclass(frozen=True)
class NodeLaunch:
    """What one SuperNode is started with; it reaches the ClientApp as ``context.node_config``.

    Attributes:
        partition_id: The node's index, ``0 <= partition_id < num_partitions`` (``partition-id``).
        num_partitions: How many nodes the federation has (``num-partitions``).
        data_dir: The node's own folder (``data-dir``, an absolute path string).
    """

    partition_id: int
    num_partitions: int
    data_dir: Path

    def __post_init__(self) -> None:
        for name in ("partition_id", "num_partitions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"NodeLaunch.{name} must be an int, got {value!r}")
        if self.num_partitions < 1:
            raise ValueError(f"NodeLaunch.num_partitions must be >= 1, got {self.num_partitions}")
        if not 0 <= self.partition_id < self.num_partitions:
            raise ValueError(
                f"NodeLaunch.partition_id must be in [0, {self.num_partitions}), got {self.partition_id}"
            )
        if not isinstance(self.data_dir, str | os.PathLike):
            raise TypeError(f"NodeLaunch.data_dir must be a path, got {self.data_dir!r}")
        object.__setattr__(self, "data_dir", Path(self.data_dir).resolve())

    def node_config(self) -> str:
        """The ``--node-config`` argument: TOML ``key=value`` pairs, the path TOML-quoted."""
        values = {
            "partition-id": self.partition_id,
            "num-partitions": self.num_partitions,
            "data-dir": str(self.data_dir),
        }
        return cli_pairs(values, what="node config")


@dataclasses.dataclass
class _Child:
    """One process this deployment started: the SuperLink or one incarnation of a SuperNode."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    port: int

    def running(self) -> bool:
        return self.popen.poll() is None  # poll() also reaps it once it has exited

    def log_tail(self) -> str:
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            return f"(log {self.log} unreadable: {err})"
        return text[-LOG_TAIL_CHARS:] or "(empty log)"


class LocalDeployment(SuperLinkRuns):
    """A SuperLink and one SuperNode per node on 127.0.0.1, started and stopped as one unit.

    Use it as a context manager (``with LocalDeployment(...) as d:``), or call ``start`` and ``stop``.
    Everything lands under ``run_dir``: ``flwr_home/`` (``FLWR_HOME``: the CLI connection, installed
    FABs) and, unless ``log_dir`` says otherwise, ``flower_logs/`` with one log per process
    (``superlink.log``, ``supernode-<i>.log``, ``supernode-<i>.restart<k>.log``, ``worker-<i>.log``,
    ``watchdog.log``).

    Attributes:
        run_dir: The deployment's folder.
        nodes: The nodes by partition id.
        flwr_home: ``run_dir/flwr_home``.
        log_dir: Where the process logs go.
        env: The environment of every process started (``flower_env``); change it before ``start``.
        connection: The SuperLink connection's name in ``FLWR_HOME/config.toml``.
        start_timeout: Seconds ``start`` may take before it gives up.
    """

    def __init__(
        self,
        run_dir: Path,
        nodes: Sequence[NodeLaunch],
        *,
        poll_interval: float = 0.25,
        start_timeout: float = 60.0,
        log_dir: Path | None = None,
        node_workers: bool = False,
        insecure: bool = False,
        node_auth: bool = True,
    ) -> None:
        """Describe a deployment; nothing starts before ``start``.

        Args:
            run_dir: The deployment's folder (created by ``start``).
            nodes: One ``NodeLaunch`` per SuperNode; partition ids must be distinct.
            poll_interval: Seconds between the SuperExecs' task polls (see ``flower_env``).
            start_timeout: Seconds ``start`` may take in all before it raises ``TimeoutError``.
            log_dir: Where the processes' logs go (default ``run_dir/flower_logs``).
            node_workers: Start a warm worker (``node_worker``) beside every SuperNode, which answers
                its ClientApp's messages; without one, every message's ClientApp process imports JAX,
                loads the compiled functions and reads the node's rows itself.
            insecure: Plaintext transport; by default the SuperLink serves TLS with a certificate of a
                CA made for this deployment (``run_dir/tls``), and SuperNodes and the CLI trust only it.
            node_auth: With TLS, register one key pair per node (``run_dir/node_keys``) and start the
                SuperLink with ``--enable-supernode-auth``: it accepts only those keys.

        Raises:
            ValueError: No nodes, repeated partition ids, or a bad timeout or poll interval.
            TypeError: A node is not a ``NodeLaunch``.
        """
        if insecure and node_auth:
            raise ValueError("SuperNode authentication needs TLS: node_auth=True with insecure=True")
        nodes = tuple(nodes)
        if not nodes:
            raise ValueError("a deployment needs at least one node")
        for node in nodes:
            if not isinstance(node, NodeLaunch):
                raise TypeError(f"nodes must be NodeLaunch instances, got {node!r}")
        ids = [node.partition_id for node in nodes]
        if len(set(ids)) != len(ids):
            raise ValueError(f"partition ids must be distinct, got {ids}")
        if isinstance(start_timeout, bool) or not isinstance(start_timeout, int | float):
            raise TypeError(f"start_timeout must be a number of seconds, got {start_timeout!r}")
        if not (math.isfinite(start_timeout) and start_timeout > 0):
            raise ValueError(f"start_timeout must be a positive number of seconds, got {start_timeout}")
        self.run_dir = Path(run_dir).resolve()
        self.nodes: dict[int, NodeLaunch] = {node.partition_id: node for node in nodes}
        self.flwr_home = self.run_dir / "flwr_home"
        self.log_dir = Path(log_dir).resolve() if log_dir is not None else self.run_dir / "flower_logs"
        self.env = flower_env(self.flwr_home, poll_interval=poll_interval)
        self.connection = CONNECTION
        self.start_timeout = float(start_timeout)
        self.node_workers = bool(node_workers)
        self.insecure, self.node_auth = bool(insecure), bool(node_auth)
        self.tls: certificates.TlsFiles | None = None
        self.node_keys: dict[int, tuple[Path, Path]] = {}  # partition -> (private, public) key files
        self.node_ids: dict[int, int] = {}  # partition -> the node id its key was registered with
        self._superlink: _Child | None = None
        self._supernodes: dict[int, _Child] = {}
        self._workers: dict[int, _Child] = {}
        self._children: list[_Child] = []  # every process ever started, restarts included
        self._descendants: set[psutil.Process] = set()  # every descendant ever seen
        self._restarts: collections.Counter[int] = collections.Counter()
        self._watchdog: guard.Watchdog | None = None
        self._state = "new"  # -> "started" -> "stopped"

    # ---- context manager ------------------------------------------------------------------------

    def __enter__(self) -> LocalDeployment:
        """Start the deployment (``start`` cleans up itself if it fails)."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the deployment, whatever ended the block (``KeyboardInterrupt`` included)."""
        self.stop()

    # ---- start and stop ------------------------------------------------------------------------

    @property
    def superlink_address(self) -> str:
        """``"127.0.0.1:<port>"`` of the SuperLink (Fleet, Control and Runtime APIs on one port)."""
        if self._superlink is None:
            raise RuntimeError("the deployment has not been started")
        return f"{LOCALHOST}:{self._superlink.port}"

    def start(self) -> None:
        """Start the SuperLink, wait until its port accepts, then start every SuperNode and wait likewise.

        Also writes ``FLWR_HOME/config.toml`` with the connection ``self.connection`` (the default).
        On any failure (``KeyboardInterrupt`` included) it stops what it started before raising.

        Raises:
            RuntimeError: The deployment was started before, or a process exited during start-up (the
                message names it and quotes the end of its log).
            TimeoutError: A port did not accept within ``start_timeout``.
            FileNotFoundError: A Flower command is not on ``PATH``.
        """
        if self._state != "new":
            raise RuntimeError(f"this deployment was already {self._state}; make a new LocalDeployment")
        self._state = "started"
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        try:
            for folder in (self.run_dir, self.flwr_home, self.log_dir):
                folder.mkdir(parents=True, exist_ok=True)
            self._watchdog = guard.Watchdog(
                log_path=self.log_dir / "watchdog.log", env=self.env, cwd=self.run_dir
            )
            self._watchdog.start()
            port = free_port()
            args = ["flower-superlink", *self._superlink_security(), "--host", LOCALHOST, "--port", str(port)]
            args.append("--disable-runtime-dependency-installation")
            self._superlink = self._spawn("superlink", args, port)
            self._wait_port(self._superlink, deadline)
            ca = None if self.tls is None else self.tls.ca
            address = self.superlink_address
            write_connection(self.flwr_home, address, connection=self.connection, root_certificates=ca)
            if self.node_auth:
                self._register_nodes()
            if self.node_workers:
                for partition_id in sorted(self.nodes):
                    self._spawn_worker(partition_id)
            for partition_id in sorted(self.nodes):
                self._spawn_node(partition_id)
            # workers first: no message may reach a node before its worker listens
            for child in [*self._workers.values(), *self._supernodes.values()]:
                self._wait_port(child, deadline)
            if self.node_auth:
                self._wait_online(deadline)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every process this deployment started and wait until none runs. Idempotent (and a no-op
        before ``start``).

        SuperNodes first (SIGTERM to each process group and to their descendants; a SIGTERMed SuperNode
        deregisters at the SuperLink), then the SuperLink likewise, each given up to ``STOP_GRACE``
        seconds; then SIGKILL to whatever is left, descendants in other sessions included (the
        SuperLink's SuperExec), and a wait of up to ``KILL_WAIT`` seconds. Survivors are logged.
        """
        if self._state == "new":
            return
        self._state = "stopped"
        try:
            nodes = [c for c in self._children if c is not self._superlink]
            for group in (nodes, [self._superlink] if self._superlink is not None else []):
                signalled = self._terminate(group, signal.SIGTERM)
                self._wait_children(group, signalled, STOP_GRACE)
            signalled = self._terminate(self._children, signal.SIGKILL)
            survivors = self._wait_children(self._children, signalled, KILL_WAIT)
            if survivors:
                log.warning("processes survived SIGKILL: %s", [p.pid for p in survivors])
        finally:
            if self._watchdog is not None:
                self._watchdog.stop()
            atexit.unregister(self.stop)

    # ---- faults ----------------------------------------------------------------------------------

    def kill_node(self, partition_id: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a SuperNode's process group (the SuperNode, its SuperExec, its ClientApps).

        For SIGKILL, SIGTERM and SIGINT it then waits (up to ``STOP_GRACE`` s in all) until the
        SuperNode and its descendants have exited; other signals (e.g. SIGSTOP, to make a node hang)
        return at once.

        Args:
            partition_id: The node.
            sig: The signal.

        Raises:
            KeyError: No such node.
            RuntimeError: Not started, or the SuperNode is not running.
            TimeoutError: It did not exit within ``STOP_GRACE`` s of SIGKILL/SIGTERM/SIGINT.
        """
        child = self._current_node(partition_id)
        if not child.running():
            raise RuntimeError(f"{child.name} is not running (exit code {child.popen.returncode})")
        self._remember_descendants()
        group = guard.with_descendants({psutil.Process(child.popen.pid)})
        os.killpg(child.popen.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            deadline = time.monotonic() + STOP_GRACE
            try:
                child.popen.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired as err:
                raise TimeoutError(f"{child.name} still runs {STOP_GRACE} s after signal {sig}") from err
            guard.wait_gone(group, max(0.0, deadline - time.monotonic()))

    def restart_node(self, partition_id: int) -> None:
        """Start a SuperNode again after ``kill_node``: same node config, new free port, new log.

        Without SuperNode authentication it registers with a new node id; with it, it keeps its
        registered id, but Flower refuses it until its killed session has missed its heartbeats
        (about 60 s after a SIGKILL), so this retries every 5 s for up to ``RESTART_PATIENCE`` s.
        Call it from the thread that started the deployment (see the module docstring on PDEATHSIG).

        Args:
            partition_id: The node.

        Raises:
            KeyError: No such node.
            RuntimeError: Not started, the node still runs, or it exited during start-up.
            TimeoutError: Its port did not accept within ``start_timeout``, or it was refused for
                ``RESTART_PATIENCE`` s.
        """
        child = self._current_node(partition_id)
        if child.running():
            raise RuntimeError(f"{child.name} still runs; kill_node({partition_id}) first")
        patience = time.monotonic() + RESTART_PATIENCE
        while True:
            self._restarts[partition_id] += 1
            new = self._spawn_node(partition_id)
            deadline = time.monotonic() + self.start_timeout
            if not self.node_auth:
                self._wait_port(new, deadline)
                return
            # With authentication Flower refuses the node's key while its killed session still
            # counts as online (about 60 s, two missed heartbeats), and the SuperNode exits: retry.
            if self._activated(new, deadline):
                return
            if time.monotonic() > patience:
                raise TimeoutError(
                    f"the SuperLink kept refusing {new.name} for {RESTART_PATIENCE} s; its log {new.log} "
                    f"ends:\n{new.log_tail()}"
                )
            log.info("%s was refused (its old session is still online); retrying in 5 s", new.name)
            time.sleep(5.0)

    def pids(self) -> list[int]:
        """Every live process this deployment started, with all their descendants (zombies left out).

        Returns:
            Sorted pids.
        """
        self._remember_descendants()
        own = [c.popen.pid for c in self._children if c.running()]
        if self._watchdog is not None and self._watchdog.pid is not None:
            own.append(self._watchdog.pid)
        return sorted({*own, *(p.pid for p in self._descendants if guard.alive(p))})

    # ---- internals -------------------------------------------------------------------------------

    def _require_started(self) -> None:
        if self._state != "started":
            raise RuntimeError(f"the deployment is {self._state}, not started")

    def _current_node(self, partition_id: int) -> _Child:
        self._require_started()
        if partition_id not in self.nodes:
            raise KeyError(f"no node with partition id {partition_id}; nodes: {sorted(self.nodes)}")
        return self._supernodes[partition_id]

    def _spawn(self, name: str, args: list[str], port: int) -> _Child:
        """Start ``args`` in a session of its own, dying with this thread, logging to ``<name>.log``."""
        if guard.PRCTL is not None and threading.current_thread() is not threading.main_thread():
            log.warning(
                "%s is started from thread %r: it dies when that thread ends",
                name,
                threading.current_thread().name,
            )
        exe = shutil.which(args[0], path=self.env["PATH"])
        if exe is None:
            raise FileNotFoundError(f"{args[0]} is not on PATH ({self.env['PATH']}); is flwr installed?")
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                [exe, *args[1:]],
                env=self.env,
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=guard.die_with_parent_fn(),
            )
        child = _Child(name, popen, log_path, port)
        self._children.append(child)
        if self._watchdog is not None:
            self._watchdog.tell(popen.pid)
        return child

    def _spawn_worker(self, partition_id: int) -> _Child:
        node = self.nodes[partition_id]
        node.data_dir.mkdir(parents=True, exist_ok=True)
        port = free_port()
        args = [sys.executable, "-m", "fedjax_rhd.federation.flower.node_worker"]
        args += ["--data-dir", str(node.data_dir), "--port", str(port), "--host", LOCALHOST]
        self._workers[partition_id] = child = self._spawn(f"worker-{partition_id}", args, port)
        return child

    def _spawn_node(self, partition_id: int) -> _Child:
        node = self.nodes[partition_id]
        node.data_dir.mkdir(parents=True, exist_ok=True)
        restarts = self._restarts[partition_id]
        name = f"supernode-{partition_id}" + (f".restart{restarts}" if restarts else "")
        port = free_port()
        child = self._spawn(
            name,
            [
                "flower-supernode",
                *self._supernode_security(partition_id),
                "--superlink",
                self.superlink_address,
                "--port",
                str(port),
                "--node-config",
                node.node_config(),
            ],
            port,
        )
        self._supernodes[partition_id] = child
        return child

    def _superlink_security(self) -> list[str]:
        """``--insecure``, or a CA and server certificate made now (and ``--enable-supernode-auth``)."""
        if self.insecure:
            return ["--insecure"]
        ca = certificates.make_ca(self.run_dir / "tls")
        self.tls = certificates.make_server_certificate(ca.parent, [LOCALHOST, "localhost"], ca.parent)
        args = ["--ssl-ca-certfile", str(self.tls.ca), "--ssl-certfile", str(self.tls.cert)]
        args += ["--ssl-keyfile", str(self.tls.key)]
        return [*args, "--enable-supernode-auth"] if self.node_auth else args

    def _supernode_security(self, partition_id: int) -> list[str]:
        if self.tls is None:
            return ["--insecure"]
        args = ["--root-certificates", str(self.tls.ca)]
        if self.node_auth:
            args += ["--auth-supernode-private-key", str(self.node_keys[partition_id][0])]
        return args

    def _register_nodes(self) -> None:
        """A key pair per node, each public key registered at the SuperLink (``flwr supernode register``)."""
        for partition_id in sorted(self.nodes):
            keys = certificates.make_node_key(self.run_dir / "node_keys" / str(partition_id))
            self.node_keys[partition_id] = keys
            self.node_ids[partition_id] = self._cli().register_node(keys[1], name=f"partition-{partition_id}")

    def refused_keys(self) -> list[str]:
        """Public keys (PEM) the SuperLink refused to activate, from its log, each named by the node whose
        registered key it is (``"<partition k>: PEM"``) or as unknown.

        Flower reports a refused SuperNode only in the SuperLink's log (``ApiError:2004``); the
        SuperNode itself just exits with code 305.
        """
        if self._superlink is None or not self._superlink.log.exists():
            return []
        text = self._superlink.log.read_text(encoding="utf-8", errors="replace")
        ours = {certificates.public_key_pem(pub).strip(): k for k, (_, pub) in self.node_keys.items()}
        out = []
        for match in REFUSED_KEY.finditer(text):
            pem = match.group(1).encode().decode("unicode_escape").strip()
            who = f"partition {ours[pem]}" if pem in ours else "an unregistered key"
            out.append(f"{who}: {pem}")
        return out

    def _wait_online(self, deadline: float) -> None:
        """Wait until every SuperNode is activated at the SuperLink; name the refused key if one exits."""
        for child in self._supernodes.values():
            if not self._activated(child, deadline):
                refused = "\n".join(self.refused_keys()) or "(no key refusal in the SuperLink's log)"
                raise RuntimeError(
                    f"{child.name} exited with code {child.popen.returncode} before it was activated; "
                    f"keys the SuperLink refused:\n{refused}\n"
                    f"its log {child.log} ends:\n{child.log_tail()}"
                )

    def _activated(self, child: _Child, deadline: float) -> bool:
        """True once ``child``'s log shows the id the SuperLink activated it with; False if it exited."""
        while True:
            if ACTIVATED in child.log.read_text(encoding="utf-8", errors="replace"):
                return True
            if not child.running():
                return False
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} was not activated within {self.start_timeout} s")
            time.sleep(0.2)

    def _wait_port(self, child: _Child, deadline: float) -> None:
        """Wait until ``child``'s port accepts a connection; fail fast if ``child`` exits."""
        while True:
            if not child.running():
                raise RuntimeError(
                    f"{child.name} exited with code {child.popen.returncode} during start-up; "
                    f"its log {child.log} ends:\n{child.log_tail()}"
                )
            try:
                socket.create_connection((LOCALHOST, child.port), timeout=0.5).close()
                return
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{child.name} did not accept connections on port {child.port} within "
                    f"{self.start_timeout} s; its log {child.log} ends:\n{child.log_tail()}"
                )
            time.sleep(0.1)

    def _remember_descendants(self) -> None:
        """Record every running descendant, so that it is still known once its parent is gone."""
        roots = set()
        for child in self._children:
            if child.running():
                try:
                    roots.add(psutil.Process(child.popen.pid))
                except psutil.Error:
                    pass
        self._descendants = guard.with_descendants(roots | self._descendants) - roots

    def _terminate(self, children: Sequence[_Child], sig: int) -> list[psutil.Process]:
        """Send ``sig`` to the process groups of ``children`` and to every known descendant of
        theirs that still runs; return those descendants."""
        self._remember_descendants()
        # by SIGKILL, everything ever seen is fair game
        known = self._descendants if sig == signal.SIGKILL else ()
        return guard.signal_groups([c.popen for c in children], sig, known)

    def _wait_children(
        self, children: Sequence[_Child], descendants: Sequence[psutil.Process], timeout: float
    ) -> list[psutil.Process]:
        """Wait (reaping) until ``children`` and ``descendants`` have exited, or ``timeout``.

        Returns the processes still running.
        """
        return guard.wait_exited([c.popen for c in children], descendants, timeout)

    def _cli(self) -> FlwrCli:
        """The ``flwr`` CLI with this deployment's environment and connection (refused unless started)."""
        return FlwrCli(self.env, self.run_dir, connection=self.connection, before_call=self._require_started)
