"""A local Flower deployment: one SuperLink and one SuperNode per node, as OS processes on loopback.

``LocalDeployment`` starts ``flower-superlink`` and one ``flower-supernode`` per ``NodeLaunch``, each on
its own free port of 127.0.0.1, writes the ``flwr`` CLI's connection into a private ``FLWR_HOME``,
submits runs with ``flwr run`` and follows them with ``flwr ls``. Its one promise beyond Flower's: no
process it started outlives it.

Why that needs work (flwr 1.42): the SuperLink and the SuperNodes do not watch the process that started
them; only their own children do (``flower-superexec --parent-pid``, which starts ``flwr-serverapp`` and
``flwr-clientapp`` with ``--parent-pid`` in turn, each polling ``os.kill(parent, 0)`` every 0.2 s and
exiting when it fails). The SuperLink's SuperExec even runs in a session of its own. So:

* every process started here gets its own session (``stop`` signals whole process groups) and, on
  Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so it dies with the thread that started it, even when
  that process is SIGKILLed;
* ``stop`` (idempotent; registered with ``atexit`` and called by ``__exit__`` whatever ends the block,
  ``KeyboardInterrupt`` included) SIGTERMs the SuperNodes, then the SuperLink, each with its process
  group and every descendant seen (SuperExecs, ServerApp and ClientApp processes), SIGKILLs what is
  left after a grace period and waits until none of them runs;
* Flower's grandchildren do leave by themselves once their parent is gone, but only after the dead
  parent has been *reaped* (their watch is ``os.kill(pid, 0)``, which a zombie passes): measured
  2-12 s after a SIGKILLed parent here, and never under a PID 1 that does not reap. So a small
  ``watchdog`` process (own session, no PDEATHSIG) learns every pid and, every 0.25 s, their
  descendants; when its parent dies it SIGKILLs all their process groups (measured: everything gone
  within 0.1 s), and when ``stop`` ends it exits.

PDEATHSIG fires when the *thread* that forked the child ends, not the process: call ``start`` and
``restart_node`` from the main thread (or from a thread that lives as long as the deployment), or the
processes die with that thread. Processes that have exited but whose parent died before reaping them
stay as zombies until PID 1 reaps them; they run nothing, and ``pids`` leaves them out.

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
import ctypes
import dataclasses
import json
import logging
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

import fedjax_rhd

ConfigValue = str | int | float | bool

LOCALHOST = "127.0.0.1"
CONNECTION = "fedjax"  # the SuperLink connection's name in FLWR_HOME/config.toml
CLI_TIMEOUT = 120.0  # seconds one `flwr` CLI call may take (it needs about 1.5 s to import flwr)
STOP_GRACE = 10.0  # seconds SIGTERMed processes get before SIGKILL
KILL_WAIT = 5.0  # seconds to wait for SIGKILLed processes to disappear
_LOG_TAIL_CHARS = 3000  # how much of a log an error message quotes
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Orphan guard


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux, None elsewhere (or where it cannot be found)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Resolved once here: a preexec_fn runs between fork and exec, where loading a library is unsafe.
_PRCTL = _load_prctl()


def _die_with_parent_fn() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the forking thread ends (None off Linux)."""
    if _PRCTL is None:
        return None
    parent_pid = os.getpid()
    prctl = _PRCTL

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def _alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` still runs (a zombie does not: it has exited and only awaits reaping)."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(procs: Sequence[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of ``procs`` runs or ``timeout`` passes; return those still running."""
    deadline = time.monotonic() + timeout
    left = [p for p in procs if _alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if _alive(p)]
    return left


def _with_descendants(procs: set[psutil.Process]) -> set[psutil.Process]:
    """The running ones of ``procs`` and all their running descendants, from one scan of the
    process table (``Process.children`` scans it once per call)."""
    by_parent: dict[int, list[psutil.Process]] = collections.defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        by_parent[proc.info["ppid"]].append(proc)
    found = {p for p in procs if _alive(p)}
    todo = list(found)
    while todo:
        for child in by_parent.get(todo.pop().pid, []):
            if child not in found and _alive(child):
                found.add(child)
                todo.append(child)
    return found


def watchdog(parent_pid: int, *, tick: float = 0.25) -> None:
    """Body of a deployment's watchdog process: kill the deployment's processes once its parent is gone.

    It reads pids, one per line, from stdin (``LocalDeployment`` writes each process it starts) and
    every ``tick`` seconds records their descendants. When stdin closes (the parent died, or ``stop``
    finished) or it has been re-parented (the parent died), it SIGKILLs every process group and every
    process it knows that still runs, then returns. It makes the cleanup after a killed parent quick
    and independent of PID 1: Flower's own ``--parent-pid`` watch only fires once the dead parent
    has been reaped, which took 2-12 s here and never happens under an init that does not reap.

    Args:
        parent_pid: The pid of the process that owns the deployment.
        tick: Seconds between looks at stdin, the parent and the descendants.
    """
    known: set[psutil.Process] = set()
    pending = b""
    while True:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], tick)
        closed = False
        if ready:
            chunk = os.read(sys.stdin.fileno(), 65536)
            closed = not chunk
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                try:
                    known.add(psutil.Process(int(line)))
                except (ValueError, psutil.Error):
                    pass
        known = _with_descendants(known)
        if closed or os.getppid() != parent_pid:
            break
    # A group with a live member still exists, so its pgid cannot have been reused; killing it also
    # reaches processes started after the last look (a new flwr-clientapp, say).
    groups = set()
    for proc in known:
        if _alive(proc):
            try:
                groups.add(os.getpgid(proc.pid))
            except OSError:
                pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    for proc in known:
        if _alive(proc):
            try:
                proc.kill()
            except psutil.Error:
                pass


# --------------------------------------------------------------------------------------------------
# Ports, environment, app dirs


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
        return _cli_pairs(values, what="node config")


def _check_poll_interval(poll_interval: float) -> float:
    """Flower's SuperExec accepts 0.01-60 s and exits on anything else; say so here instead."""
    if isinstance(poll_interval, bool) or not isinstance(poll_interval, int | float):
        raise TypeError(f"poll_interval must be a number of seconds, got {poll_interval!r}")
    if not (math.isfinite(poll_interval) and 0.01 <= poll_interval <= 60.0):
        raise ValueError(f"poll_interval must be between 0.01 and 60 seconds, got {poll_interval}")
    return float(poll_interval)


def _prepend_path(first: str, rest: str | None) -> str:
    """``first`` then the entries of the path list ``rest`` (without ``first`` and empty entries)."""
    entries = [p for p in (rest or "").split(os.pathsep) if p and p != first]
    return os.pathsep.join([first, *entries])


def flower_env(flwr_home: Path, *, poll_interval: float = 0.25) -> dict[str, str]:
    """The environment every Flower process of a deployment (and the ``flwr`` CLI) runs with.

    Args:
        flwr_home: ``FLWR_HOME``: where the CLI's ``config.toml`` lives and FABs are installed.
        poll_interval: Seconds between the SuperExecs' task polls
            (``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``, Flower's only latency setting; default 1 s).

    Returns:
        A copy of ``os.environ`` whose ``PATH`` starts with this Python's ``bin`` folder (Flower starts
        ``flower-superexec``, ``flwr-serverapp`` and ``flwr-clientapp`` by bare name), whose
        ``PYTHONPATH`` starts with the folder holding ``fedjax_rhd`` (so app modules in
        ``fedjax_rhd`` import in every Flower process), with ``FLWR_HOME`` set, telemetry, the update
        check and runtime dependency installation (``uv sync``, needs the network) off.

    Raises:
        ValueError: ``poll_interval`` is outside Flower's 0.01-60 s.
    """
    poll_interval = _check_poll_interval(poll_interval)
    env = dict(os.environ)
    env["PATH"] = _prepend_path(str(Path(sys.executable).parent), env.get("PATH"))
    env["PYTHONPATH"] = _prepend_path(
        str(Path(fedjax_rhd.__file__).resolve().parents[1]), env.get("PYTHONPATH")
    )
    env["FLWR_HOME"] = str(Path(flwr_home).resolve())
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_UPDATE_CHECK"] = "1"
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"] = repr(poll_interval)
    return env


_KEY = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\Z")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_OBJECT_REF = re.compile(rf"{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*\Z")
_PROJECT_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?\Z")


def _toml_key(key: object) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise ValueError(
            f"config key {key!r} is not a bare TOML key (letters, digits, '_' and '-', dot-separated)"
        )
    return key


def _toml_basic_string(text: str) -> str:
    """``text`` as a TOML basic string (backslash, quote and control characters escaped)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(key: str, value: object, *, cli: bool = False) -> str:
    """``value`` as a TOML value; ``cli`` for Flower's ``k=v`` parser, which cannot take a ``\\"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(float(value))
    if isinstance(value, str):
        if not cli or '"' not in value:
            return _toml_basic_string(value)
        # Flower splits `k=v` pairs with a regex that ends a double-quoted value at the first '"',
        # escaped or not; a literal string carries the quote as long as there is no "'" as well.
        if "'" not in value and all(ch >= " " and ch != "\x7f" for ch in value):
            return f"'{value}'"
        raise ValueError(
            f"config value of {key!r} holds both kinds of quote (or a control character and a '\"'); "
            f"Flower's command line cannot carry it: {value!r}"
        )
    raise TypeError(f"config value of {key!r} must be str, int, float or bool, got {type(value).__name__}")


def _cli_pairs(values: Mapping[str, ConfigValue], *, what: str) -> str:
    """``values`` as the space-separated ``key=value`` pairs of ``--run-config``/``--node-config``."""
    if not isinstance(values, Mapping):
        raise TypeError(f"the {what} must be a mapping of str to str/int/float/bool, got {values!r}")
    return " ".join(f"{_toml_key(k)}={_toml_value(k, v, cli=True)}" for k, v in values.items())


def write_app_dir(
    path: Path,
    *,
    serverapp: str,
    clientapp: str,
    config: Mapping[str, ConfigValue],
    name: str = "fedjax-rhd-app",
) -> Path:
    """Write a Flower app dir's ``pyproject.toml`` (the only file a FAB of installed components needs).

    Args:
        path: The app dir; created if missing. Files already in it are left alone, and every ``*.py``,
            ``*.toml``, ``*.json``, ... under it travels in the FAB (10 MB cap), with the dir first on
            the apps' ``sys.path``.
        serverapp: ``"module:attr"`` of the ``ServerApp`` (a plain module-level assignment).
        clientapp: ``"module:attr"`` of the ``ClientApp``.
        config: Run-config defaults (``[tool.flwr.app.config]``). ``LocalDeployment.submit`` can only
            override keys declared here.
        name: The ``[project]`` name, which ``flwr ls`` shows.

    Returns:
        ``path``.

    Raises:
        ValueError: A component reference, the name or a config key is malformed.
        TypeError: A config value is not str, int, float or bool.
    """
    for role, ref in (("serverapp", serverapp), ("clientapp", clientapp)):
        if not isinstance(ref, str) or not _OBJECT_REF.match(ref):
            raise ValueError(f"{role} must be 'module:attribute', got {ref!r}")
    if not isinstance(name, str) or not _PROJECT_NAME.match(name):
        raise ValueError(f"name must be a project name (letters, digits, '.', '_', '-'), got {name!r}")
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of str to str/int/float/bool, got {config!r}")
    lines = [
        "# Written by fedjax_rhd.federation.flower.processes.write_app_dir.",
        "[project]",
        f"name = {_toml_basic_string(name)}",
        'version = "1.0.0"',
        'description = "A fedjax_rhd Flower app"',
        'license = "Apache-2.0"',
        "dependencies = []",
        "",
        "[tool.flwr.app]",
        'publisher = "fedjax-rhd"',
        "",
        "[tool.flwr.app.components]",
        f"serverapp = {_toml_basic_string(serverapp)}",
        f"clientapp = {_toml_basic_string(clientapp)}",
        "",
        "[tool.flwr.app.config]",
        *(f"{_toml_key(k)} = {_toml_value(k, v)}" for k, v in config.items()),
    ]
    text = "\n".join(lines) + "\n"
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:  # e.g. both "a" and "a.b" as keys
        raise ValueError(f"config does not form a valid TOML table: {err}") from err
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    (path / "pyproject.toml").write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------
# The deployment


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
        return text[-_LOG_TAIL_CHARS:] or "(empty log)"


def _declared_config_keys(pyproject: Path) -> set[str]:
    """The run-config keys an app declares (``[tool.flwr.app.config]``, nested tables dot-joined)."""
    with pyproject.open("rb") as file:
        table = tomllib.load(file).get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})

    def keys(node: Mapping[str, Any], prefix: str) -> set[str]:
        out = set()
        for key, value in node.items():
            out |= keys(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {prefix + key}
        return out

    return keys(table, "")


def _parse_cli_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in a ``flwr ... --format json`` output (None if there is none)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            obj, _ = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        if isinstance(obj, dict):
            return obj
        start = text.find("{", start + 1)
    return None


class LocalDeployment:
    """A SuperLink and one SuperNode per node on 127.0.0.1, started and stopped as one unit.

    Use it as a context manager (``with LocalDeployment(...) as d:``), or call ``start`` and ``stop``.
    Everything lands under ``run_dir``: ``flwr_home/`` (``FLWR_HOME``: the CLI connection, installed
    FABs) and, unless ``log_dir`` says otherwise, ``flower_logs/`` with one log per process
    (``superlink.log``, ``supernode-<i>.log``, ``supernode-<i>.restart<k>.log``, ``watchdog.log``).

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
    ) -> None:
        """Describe a deployment; nothing starts before ``start``.

        Args:
            run_dir: The deployment's folder (created by ``start``).
            nodes: One ``NodeLaunch`` per SuperNode; partition ids must be distinct.
            poll_interval: Seconds between the SuperExecs' task polls (see ``flower_env``).
            start_timeout: Seconds ``start`` may take in all before it raises ``TimeoutError``.
            log_dir: Where the processes' logs go (default ``run_dir/flower_logs``).

        Raises:
            ValueError: No nodes, repeated partition ids, or a bad timeout or poll interval.
            TypeError: A node is not a ``NodeLaunch``.
        """
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
        self._superlink: _Child | None = None
        self._supernodes: dict[int, _Child] = {}
        self._children: list[_Child] = []  # every process ever started, restarts included
        self._descendants: set[psutil.Process] = set()  # every descendant ever seen
        self._restarts: collections.Counter[int] = collections.Counter()
        self._watchdog: subprocess.Popen[bytes] | None = None
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
            self._start_watchdog()
            port = free_port()
            self._superlink = self._spawn(
                "superlink",
                [
                    "flower-superlink",
                    "--insecure",
                    "--host",
                    LOCALHOST,
                    "--port",
                    str(port),
                    "--disable-runtime-dependency-installation",
                ],
                port,
            )
            self._wait_port(self._superlink, deadline)
            self._write_connection()
            for partition_id in sorted(self.nodes):
                self._spawn_node(partition_id)
            for partition_id in sorted(self.nodes):
                self._wait_port(self._supernodes[partition_id], deadline)
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
            self._stop_watchdog()
            atexit.unregister(self.stop)

    # ---- runs ------------------------------------------------------------------------------------

    def submit(self, app_dir: Path, run_config: Mapping[str, ConfigValue]) -> int:
        """Start a run of the app in ``app_dir`` (``flwr run``) and return its run id.

        Args:
            app_dir: A Flower app dir (``write_app_dir``).
            run_config: Overrides of the app's run config; every key must be declared in the app's
                ``[tool.flwr.app.config]``. Strings are TOML-quoted.

        Returns:
            The run id.

        Raises:
            FileNotFoundError: ``app_dir`` has no ``pyproject.toml``.
            RuntimeError: Not started, or ``flwr run`` failed (the message quotes Flower's reason).
            TimeoutError: ``flwr run`` did not answer within ``CLI_TIMEOUT``.
            ValueError: A run-config key is not declared in the app, or a value cannot be written.
        """
        app_dir = Path(app_dir).resolve()
        if not (app_dir / "pyproject.toml").is_file():
            raise FileNotFoundError(f"{app_dir} is not a Flower app dir: it has no pyproject.toml")
        if not isinstance(run_config, Mapping):
            raise TypeError(f"run_config must be a mapping of str to str/int/float/bool, got {run_config!r}")
        declared = _declared_config_keys(app_dir / "pyproject.toml")
        unknown = sorted(set(run_config) - declared)
        if unknown:  # Flower itself only answers "Invalid run configuration."
            raise ValueError(
                f"run config keys {unknown} are not declared in {app_dir / 'pyproject.toml'} "
                f"[tool.flwr.app.config] (declared: {sorted(declared)})"
            )
        args = ["run", str(app_dir), self.connection]
        if run_config:
            args += ["--run-config", _cli_pairs(run_config, what="run config")]
        payload = self._flwr(args, what=f"submitting the app in {app_dir}")
        try:
            return int(payload["run-id"])
        except (KeyError, TypeError, ValueError) as err:
            raise RuntimeError(f"`flwr run` answered without a run id: {payload}") from err

    def run_status(self, run_id: int) -> str:
        """The run's status from ``flwr ls``: ``"pending"``, ``"starting"``, ``"running"`` or
        ``"finished:completed"``, ``"finished:failed"``, ``"finished:stopped"``.

        Args:
            run_id: A run id from ``submit``.

        Returns:
            The status.

        Raises:
            RuntimeError: Not started, or the SuperLink does not know the run.
        """
        payload = self._flwr(
            ["ls", self.connection, "--run-id", str(int(run_id))], what=f"run {run_id}'s status"
        )
        for run in payload.get("runs", []):
            if str(run.get("run-id")) == str(run_id):
                return str(run["status"])
        raise RuntimeError(f"the SuperLink does not list run {run_id}: {payload}")

    def wait_run(self, run_id: int, timeout: float, *, poll: float = 1.0) -> str:
        """Wait until the run has finished and return its final status (``"finished:..."``).

        Args:
            run_id: A run id from ``submit``.
            timeout: Seconds to wait in all.
            poll: Seconds between status queries (each also costs a ``flwr`` CLI start, ~1.5 s).

        Returns:
            The final status, e.g. ``"finished:completed"`` or ``"finished:failed"``.

        Raises:
            TimeoutError: The run has not finished within ``timeout``.
            ValueError: ``timeout`` or ``poll`` is not positive.
        """
        if not (timeout > 0 and poll > 0):
            raise ValueError(f"timeout and poll must be positive, got {timeout} and {poll}")
        deadline = time.monotonic() + timeout
        while True:
            status = self.run_status(run_id)
            if status.startswith("finished"):
                return status
            if time.monotonic() + poll > deadline:
                raise TimeoutError(f"run {run_id} is still {status!r} after {timeout} s")
            time.sleep(poll)

    def stop_run(self, run_id: int) -> None:
        """Stop a run (``flwr stop``); it then ends as ``"finished:stopped"``.

        Args:
            run_id: A run id from ``submit``.

        Raises:
            RuntimeError: Not started, or Flower could not stop the run (e.g. it has finished).
        """
        self._flwr(["stop", str(int(run_id)), self.connection], what=f"stopping run {run_id}")

    def online_nodes(self) -> list[int]:
        """Node ids the SuperLink lists as online (``flwr supernode ls``).

        A SuperNode gets a new node id on every start. A SIGKILLed one stays listed as online until
        the SuperLink's heartbeat patience (2 x 30 s) runs out.

        Returns:
            The node ids, in registration order.
        """
        payload = self._flwr(["supernode", "ls", self.connection], what="listing the SuperNodes")
        return [int(n["node-id"]) for n in payload.get("nodes", []) if n.get("status") == "online"]

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
        group = _with_descendants({psutil.Process(child.popen.pid)})
        os.killpg(child.popen.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT):
            deadline = time.monotonic() + STOP_GRACE
            try:
                child.popen.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired as err:
                raise TimeoutError(f"{child.name} still runs {STOP_GRACE} s after signal {sig}") from err
            _wait_gone(list(group), max(0.0, deadline - time.monotonic()))

    def restart_node(self, partition_id: int) -> None:
        """Start a SuperNode again after ``kill_node``: same node config, new free port, new log.

        It registers with a new node id (no SuperNode auth here). Call it from the thread that
        started the deployment (see the module docstring on PDEATHSIG).

        Args:
            partition_id: The node.

        Raises:
            KeyError: No such node.
            RuntimeError: Not started, the node still runs, or it exited during start-up.
            TimeoutError: Its port did not accept within ``start_timeout``.
        """
        child = self._current_node(partition_id)
        if child.running():
            raise RuntimeError(f"{child.name} still runs; kill_node({partition_id}) first")
        self._restarts[partition_id] += 1
        new = self._spawn_node(partition_id)
        self._wait_port(new, time.monotonic() + self.start_timeout)

    def pids(self) -> list[int]:
        """Every live process this deployment started, with all their descendants (zombies left out).

        Returns:
            Sorted pids.
        """
        self._remember_descendants()
        own = [c.popen.pid for c in self._children if c.running()]
        if self._watchdog is not None and self._watchdog.poll() is None:
            own.append(self._watchdog.pid)
        return sorted({*own, *(p.pid for p in self._descendants if _alive(p))})

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
        if _PRCTL is not None and threading.current_thread() is not threading.main_thread():
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
                preexec_fn=_die_with_parent_fn(),
            )
        child = _Child(name, popen, log_path, port)
        self._children.append(child)
        self._tell_watchdog(popen.pid)
        return child

    def _start_watchdog(self) -> None:
        """Start the ``watchdog`` process: own session, no PDEATHSIG (it must outlive this process)."""
        code = f"from {__name__} import watchdog; watchdog({os.getpid()})"
        with (self.log_dir / "watchdog.log").open("ab") as log_file:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-c", code],
                env=self.env,
                cwd=self.run_dir,
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def _tell_watchdog(self, pid: int) -> None:
        watchdog = self._watchdog
        if watchdog is None or watchdog.stdin is None or watchdog.stdin.closed:
            return
        try:
            watchdog.stdin.write(f"{pid}\n".encode())
            watchdog.stdin.flush()
        except OSError:
            log.warning("the deployment's watchdog is gone; only PDEATHSIG guards against orphans")

    def _stop_watchdog(self) -> None:
        """Close the watchdog's stdin (it then kills what is left, nothing by now) and reap it."""
        watchdog = self._watchdog
        if watchdog is None:
            return
        if watchdog.stdin is not None and not watchdog.stdin.closed:
            try:
                watchdog.stdin.close()
            except OSError:
                pass
        try:
            watchdog.wait(timeout=KILL_WAIT)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait(timeout=KILL_WAIT)

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
                "--insecure",
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

    def _write_connection(self) -> None:
        text = (
            "# Written by fedjax_rhd.federation.flower.processes.LocalDeployment.\n"
            "[superlink]\n"
            f"default = {_toml_basic_string(self.connection)}\n\n"
            f"[superlink.{self.connection}]\n"
            f"address = {_toml_basic_string(self.superlink_address)}\n"
            "insecure = true\n"
        )
        (self.flwr_home / "config.toml").write_text(text, encoding="utf-8")

    def _remember_descendants(self) -> None:
        """Record every running descendant, so that it is still known once its parent is gone."""
        roots = set()
        for child in self._children:
            if child.running():
                try:
                    roots.add(psutil.Process(child.popen.pid))
                except psutil.Error:
                    pass
        self._descendants = _with_descendants(roots | self._descendants) - roots

    def _terminate(self, children: Sequence[_Child], sig: int) -> list[psutil.Process]:
        """Send ``sig`` to the process groups of ``children`` and to every known descendant of
        theirs that still runs; return those descendants."""
        self._remember_descendants()
        targets = []
        for child in children:
            if child.running():
                try:
                    targets += psutil.Process(child.popen.pid).children(recursive=True)
                except psutil.Error:
                    pass
                try:
                    os.killpg(child.popen.pid, sig)  # a session leader: its pgid is its pid
                except ProcessLookupError:
                    pass
        if sig == signal.SIGKILL:  # by now, everything ever seen is fair game
            targets += self._descendants
        left = []
        for proc in set(targets):
            if _alive(proc):
                try:
                    proc.send_signal(sig)
                    left.append(proc)
                except psutil.Error:
                    pass
        return left

    def _wait_children(
        self, children: Sequence[_Child], descendants: Sequence[psutil.Process], timeout: float
    ) -> list[psutil.Process]:
        """Wait (reaping) until ``children`` and ``descendants`` have exited, or ``timeout``.

        Returns the processes still running.
        """
        deadline = time.monotonic() + timeout
        for child in children:
            try:
                child.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        left = _wait_gone(descendants, max(0.0, deadline - time.monotonic()))
        for child in children:
            if child.running():
                try:
                    left.append(psutil.Process(child.popen.pid))
                except psutil.Error:
                    pass
        return left

    def _flwr(self, args: list[str], *, what: str) -> dict[str, Any]:
        """Run ``flwr <args> --format json`` and return its JSON answer; raise if it failed."""
        self._require_started()
        exe = shutil.which("flwr", path=self.env["PATH"])
        if exe is None:
            raise FileNotFoundError(f"flwr is not on PATH ({self.env['PATH']}); is flwr installed?")
        cmd = [exe, *args, "--format", "json"]
        try:
            done = subprocess.run(
                cmd,
                env=self.env,
                cwd=self.run_dir,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT,
                preexec_fn=_die_with_parent_fn(),
            )
        except subprocess.TimeoutExpired as err:
            raise TimeoutError(f"{what}: `flwr {' '.join(args)}` took over {CLI_TIMEOUT} s") from err
        payload = _parse_cli_json(done.stdout)
        if done.returncode != 0 or payload is None or payload.get("success") is not True:
            reason = (payload or {}).get("error-message") or (done.stdout + done.stderr)[-_LOG_TAIL_CHARS:]
            raise RuntimeError(
                f"{what} failed: `flwr {' '.join(args)}` exited with code {done.returncode}: "
                f"{str(reason).strip()}"
            )
        return payload
