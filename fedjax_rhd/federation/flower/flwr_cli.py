"""The ``flwr`` command line and what it reads: environment, app dirs, run configs, ``FLWR_HOME``.

Everything a manager needs to talk to a SuperLink through Flower's own CLI (flwr 1.42), whoever
started the SuperLink: ``flower_env`` (the environment every Flower process and the CLI run with),
``write_app_dir`` (an app dir holding only a ``pyproject.toml`` whose components live in the installed
``fedjax_rhd``), TOML quoting for ``--run-config`` and ``--node-config`` (``cli_pairs``),
``write_connection`` (``FLWR_HOME/config.toml``) and ``FlwrCli`` (``flwr run``, ``flwr ls``,
``flwr stop``, ``flwr supernode ls`` with their JSON answers). A subprocess call to ``flwr`` is the
stable way to submit: the in-process route goes through Flower's internal APIs
(``shared/docs/flower_1.42_facts.md`` §3).

Example::

    app = write_app_dir(run_dir / "app", serverapp="m:server_app", clientapp="m:client_app",
                        config={"result-path": ""})
    cli = FlwrCli(flower_env(run_dir / "flwr_home"), cwd=run_dir)
    cli.write_connection("127.0.0.1:9093")
    run_id = cli.submit(app, {"result-path": str(run_dir / "result.json")})
    cli.wait_run(run_id, timeout=300)
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import fedjax_rhd
from fedjax_rhd.federation.flower.guard import die_with_parent_fn

ConfigValue = str | int | float | bool

CONNECTION = "fedjax"  # the SuperLink connection's name in FLWR_HOME/config.toml
CLI_TIMEOUT = 120.0  # seconds one `flwr` CLI call may take (it needs about 1.5 s to import flwr)
LOG_TAIL_CHARS = 3000  # how much of a log or of a command's output an error message quotes


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


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string (backslash, quote and control characters escaped).

    Args:
        text: Any string.

    Returns:
        The quoted string, e.g. ``"a \\"b\\""`` for ``a "b"``.
    """
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
            return toml_string(value)
        # Flower splits `k=v` pairs with a regex that ends a double-quoted value at the first '"',
        # escaped or not; a literal string carries the quote as long as there is no "'" as well.
        if "'" not in value and all(ch >= " " and ch != "\x7f" for ch in value):
            return f"'{value}'"
        raise ValueError(
            f"config value of {key!r} holds both kinds of quote (or a control character and a '\"'); "
            f"Flower's command line cannot carry it: {value!r}"
        )
    raise TypeError(f"config value of {key!r} must be str, int, float or bool, got {type(value).__name__}")


def cli_pairs(values: Mapping[str, ConfigValue], *, what: str) -> str:
    """``values`` as the space-separated ``key=value`` pairs of ``--run-config``/``--node-config``.

    Strings are TOML-quoted (Flower parses each value as TOML: an unquoted path is refused).

    Args:
        values: Flat keys (letters, digits, ``_``, ``-``, dot-separated) to str, int, float or bool.
        what: What the pairs are, for error messages.

    Returns:
        E.g. ``partition-id=0 data-dir="/srv/node 0"``.

    Raises:
        TypeError: ``values`` is not a mapping, or a value has another type.
        ValueError: A key is not a bare TOML key, or a string holds both kinds of quote.
    """
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
        config: Run-config defaults (``[tool.flwr.app.config]``). ``FlwrCli.submit`` can only
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
        "# Written by fedjax_rhd.federation.flower.flwr_cli.write_app_dir.",
        "[project]",
        f"name = {toml_string(name)}",
        'version = "1.0.0"',
        'description = "A fedjax_rhd Flower app"',
        'license = "Apache-2.0"',
        "dependencies = []",
        "",
        "[tool.flwr.app]",
        'publisher = "fedjax-rhd"',
        "",
        "[tool.flwr.app.components]",
        f"serverapp = {toml_string(serverapp)}",
        f"clientapp = {toml_string(clientapp)}",
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


def declared_config_keys(pyproject: Path) -> set[str]:
    """The run-config keys an app declares (``[tool.flwr.app.config]``, nested tables dot-joined).

    Args:
        pyproject: The app dir's ``pyproject.toml``.

    Returns:
        The keys; ``flwr run --run-config`` may override only these.
    """
    with pyproject.open("rb") as file:
        table = tomllib.load(file).get("tool", {}).get("flwr", {}).get("app", {}).get("config", {})

    def keys(node: Mapping[str, Any], prefix: str) -> set[str]:
        out = set()
        for key, value in node.items():
            out |= keys(value, f"{prefix}{key}.") if isinstance(value, Mapping) else {prefix + key}
        return out

    return keys(table, "")


def parse_cli_json(text: str) -> dict[str, Any] | None:
    """The first JSON object in a ``flwr ... --format json`` output.

    Args:
        text: The command's stdout (Flower may print other lines around the JSON).

    Returns:
        The object, or None if there is none.
    """
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


def write_connection(
    flwr_home: Path, address: str, *, connection: str = CONNECTION, root_certificates: Path | None = None
) -> Path:
    """Write ``FLWR_HOME/config.toml`` with one SuperLink connection, the default one.

    Args:
        flwr_home: The CLI's ``FLWR_HOME`` (created if missing). A ``config.toml`` in it is replaced.
        address: ``host:port`` of the SuperLink (its one port serves Fleet, Control and Runtime APIs).
        connection: The connection's name, what ``flwr run <app> <connection>`` names.
        root_certificates: The CA certificate the SuperLink's TLS certificate must chain to; None
            writes a plaintext connection (``insecure = true``).

    Returns:
        The ``config.toml`` written.

    Raises:
        ValueError: ``connection`` is not a bare TOML key, or ``address`` is not a string.
    """
    if not isinstance(address, str) or not address:
        raise ValueError(f"the SuperLink address must be a 'host:port' string, got {address!r}")
    # TLS: `root-certificates = "<ca.crt>"` instead of `insecure = true` (flower_1.42_facts.md §3-4)
    transport = (
        "insecure = true\n"
        if root_certificates is None
        else f"root-certificates = {toml_string(str(Path(root_certificates).resolve()))}\n"
    )
    text = (
        "# Written by fedjax_rhd.federation.flower.flwr_cli.write_connection.\n"
        "[superlink]\n"
        f"default = {toml_string(_toml_key(connection))}\n\n"
        f"[superlink.{connection}]\n"
        f"address = {toml_string(address)}\n" + transport
    )
    flwr_home = Path(flwr_home)
    flwr_home.mkdir(parents=True, exist_ok=True)
    path = flwr_home / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


class FlwrCli:
    """The ``flwr`` command line, run with one environment and one SuperLink connection.

    Every command runs as ``flwr <args> --format json`` in a subprocess that dies with the calling
    thread (``guard.die_with_parent_fn``) and whose JSON answer is checked; a failure raises with
    Flower's own reason.

    Attributes:
        env: The environment of every call (``flower_env``); its ``FLWR_HOME`` holds the connection.
        cwd: The working directory of every call.
        connection: The connection's name in ``FLWR_HOME/config.toml``.
        timeout: Seconds one call may take.
    """

    def __init__(
        self,
        env: dict[str, str],
        cwd: Path,
        *,
        connection: str = CONNECTION,
        timeout: float = CLI_TIMEOUT,
        before_call: Callable[[], None] | None = None,
    ) -> None:
        """Describe the CLI; nothing runs yet.

        Args:
            env: The calls' environment; it must set ``FLWR_HOME`` (``flower_env`` does).
            cwd: The calls' working directory.
            connection: The connection's name in ``FLWR_HOME/config.toml``.
            timeout: Seconds one call may take.
            before_call: Called before each command (e.g. to refuse when a deployment is not started).

        Raises:
            ValueError: ``env`` has no ``FLWR_HOME`` (the CLI would use ``~/.flwr``, whose default
                connection starts a SuperLink of its own).
        """
        if "FLWR_HOME" not in env:
            raise ValueError("the flwr CLI's environment must set FLWR_HOME (use flower_env)")
        self.env, self.cwd, self.connection, self.timeout = env, Path(cwd), connection, timeout
        self._before_call = before_call

    @property
    def flwr_home(self) -> Path:
        """``FLWR_HOME`` of the calls."""
        return Path(self.env["FLWR_HOME"])

    def write_connection(self, address: str, root_certificates: Path | None = None) -> Path:
        """Point ``self.connection`` at ``address`` (``write_connection`` in ``FLWR_HOME``).

        Args:
            address: ``host:port`` of the SuperLink.
            root_certificates: Its CA certificate (TLS), or None for plaintext.

        Returns:
            The ``config.toml`` written.
        """
        return write_connection(
            self.flwr_home, address, connection=self.connection, root_certificates=root_certificates
        )

    def register_node(self, public_key: Path, name: str) -> int:
        """Register a SuperNode's public key (``flwr supernode register``) and return its node id.

        Only a registered key may connect to a SuperLink started with ``--enable-supernode-auth``;
        the node keeps this id whenever it connects.

        Args:
            public_key: An OpenSSH-format EC public key (``certificates.make_node_key``).
            name: A name for the node in ``flwr supernode ls``.

        Raises:
            RuntimeError: Flower refused the key (e.g. registered before, or not OpenSSH EC).
        """
        args = ["supernode", "register", str(Path(public_key).resolve()), self.connection, "--name", name]
        payload = self.call(args, what=f"registering the SuperNode key {public_key}")
        try:
            return int(payload["node-id"])
        except (KeyError, TypeError, ValueError) as err:
            raise RuntimeError(f"`flwr supernode register` answered without a node id: {payload}") from err

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
            RuntimeError: ``flwr run`` failed (the message quotes Flower's reason).
            TimeoutError: ``flwr run`` did not answer within ``timeout``.
            ValueError: A run-config key is not declared in the app, or a value cannot be written.
        """
        app_dir = Path(app_dir).resolve()
        if not (app_dir / "pyproject.toml").is_file():
            raise FileNotFoundError(f"{app_dir} is not a Flower app dir: it has no pyproject.toml")
        if not isinstance(run_config, Mapping):
            raise TypeError(f"run_config must be a mapping of str to str/int/float/bool, got {run_config!r}")
        declared = declared_config_keys(app_dir / "pyproject.toml")
        unknown = sorted(set(run_config) - declared)
        if unknown:  # Flower itself only answers "Invalid run configuration."
            raise ValueError(
                f"run config keys {unknown} are not declared in {app_dir / 'pyproject.toml'} "
                f"[tool.flwr.app.config] (declared: {sorted(declared)})"
            )
        args = ["run", str(app_dir), self.connection]
        if run_config:
            args += ["--run-config", cli_pairs(run_config, what="run config")]
        payload = self.call(args, what=f"submitting the app in {app_dir}")
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
            RuntimeError: The SuperLink does not know the run (or ``flwr ls`` failed).
        """
        payload = self.call(
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
            RuntimeError: Flower could not stop the run (e.g. it has finished).
        """
        self.call(["stop", str(int(run_id)), self.connection], what=f"stopping run {run_id}")

    def online_nodes(self) -> list[int]:
        """Node ids the SuperLink lists as online (``flwr supernode ls``).

        A SuperNode gets a new node id on every start. A SIGKILLed one stays listed as online until
        the SuperLink's heartbeat patience (2 x 30 s) runs out.

        Returns:
            The node ids, in registration order.
        """
        payload = self.call(["supernode", "ls", self.connection], what="listing the SuperNodes")
        return [int(n["node-id"]) for n in payload.get("nodes", []) if n.get("status") == "online"]

    def call(self, args: list[str], *, what: str) -> dict[str, Any]:
        """Run ``flwr <args> --format json`` and return its JSON answer.

        Args:
            args: The command's arguments after ``flwr``.
            what: What the call does, for error messages.

        Returns:
            The parsed JSON answer (``success`` is true).

        Raises:
            FileNotFoundError: ``flwr`` is not on the environment's ``PATH``.
            RuntimeError: The command failed; the message quotes Flower's reason.
            TimeoutError: It did not answer within ``timeout``.
        """
        if self._before_call is not None:
            self._before_call()
        exe = shutil.which("flwr", path=self.env.get("PATH"))
        if exe is None:
            raise FileNotFoundError(f"flwr is not on PATH ({self.env.get('PATH')}); is flwr installed?")
        cmd = [exe, *args, "--format", "json"]
        try:
            done = subprocess.run(
                cmd,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=self.timeout,
                preexec_fn=die_with_parent_fn(),
            )
        except subprocess.TimeoutExpired as err:
            raise TimeoutError(f"{what}: `flwr {' '.join(args)}` took over {self.timeout} s") from err
        payload = parse_cli_json(done.stdout)
        if done.returncode != 0 or payload is None or payload.get("success") is not True:
            reason = (payload or {}).get("error-message") or (done.stdout + done.stderr)[-LOG_TAIL_CHARS:]
            raise RuntimeError(
                f"{what} failed: `flwr {' '.join(args)}` exited with code {done.returncode}: "
                f"{str(reason).strip()}"
            )
        return payload
