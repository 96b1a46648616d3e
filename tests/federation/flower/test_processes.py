"""Local Flower deployments (processes, flwr_cli, guard): ports, environment, app dirs, a real run, and no
process left behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import psutil
import pytest
from flwr.cli.config_utils import load_and_validate
from flwr.common.config import parse_config_args

import fedjax_rhd
from fedjax_rhd.federation.flower import certificates, flwr_cli
from fedjax_rhd.federation.flower.flwr_cli import FlwrCli, flower_env, write_app_dir
from fedjax_rhd.federation.flower.processes import LocalDeployment, NodeLaunch, free_port

TRIVIAL_APP = Path(__file__).with_name("trivial_app.py")
# the fake Flower commands speak neither TLS nor the CLI's node registration
FAKE = {"insecure": True, "node_auth": False}
ORPHAN_LIMIT_S = 15.0  # a killed parent's processes must all be gone within this


def _name(proc: psutil.Process) -> str:
    """The Flower command a process runs (its comm is cut to 15 characters), else its name."""
    for arg in proc.cmdline()[:2]:
        if Path(arg).name.startswith(("flower-", "flwr-")):
            return Path(arg).name
    return proc.name()


def _running(pids: list[int]) -> list[tuple[int, str]]:
    """The pids of ``pids`` that still run (zombies have exited: they only await reaping)."""
    out = []
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            if proc.status() != psutil.STATUS_ZOMBIE:
                out.append((pid, _name(proc)))
        except psutil.NoSuchProcess:
            pass
    return out


def _wait_not_running(pids: list[int], timeout: float) -> list[tuple[int, str]]:
    deadline = time.monotonic() + timeout
    while (left := _running(pids)) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _trivial_app(app_dir: Path) -> Path:
    """The trivial app's Flower app dir: its module travels in the FAB."""
    write_app_dir(
        app_dir,
        serverapp="trivial_app:server_app",
        clientapp="trivial_app:client_app",
        config={"result-path": "", "num-nodes": 2, "wait-s": 60.0},
    )
    shutil.copy(TRIVIAL_APP, app_dir / "trivial_app.py")
    return app_dir


def _nodes(run_dir: Path, n: int) -> list[NodeLaunch]:
    nodes = []
    for i in range(n):
        data_dir = run_dir / f"node {i}"  # a space: the path must survive TOML quoting
        data_dir.mkdir(parents=True)
        (data_dir / "hello.txt").write_text(f"rows of node {i}", encoding="utf-8")
        nodes.append(NodeLaunch(i, n, data_dir))
    return nodes


# ---- units ------------------------------------------------------------------------------------------


def test_free_port_gives_distinct_bindable_ports():
    ports = [free_port() for _ in range(20)]
    assert len(set(ports)) == 20
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


def test_node_config_reaches_flower_as_typed_values(tmp_path):
    for name in ["a dir", 'a "dir" \\ with spaces', "it's a dir"]:
        node = NodeLaunch(1, 3, tmp_path / name)
        assert parse_config_args([node.node_config()]) == {
            "partition-id": 1,
            "num-partitions": 3,
            "data-dir": str((tmp_path / name).resolve()),
        }
    assert NodeLaunch(0, 1, str(tmp_path)).data_dir == tmp_path.resolve()
    with pytest.raises(ValueError, match="both kinds of quote"):
        NodeLaunch(0, 1, tmp_path / 'it\'s a "dir"').node_config()


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((2, 2), ValueError),
        ((-1, 2), ValueError),
        ((0, 0), ValueError),
        ((True, 2), TypeError),
        ((0.0, 2), TypeError),
    ],
)
def test_node_launch_rejects_bad_ids(tmp_path, args, error):
    with pytest.raises(error, match="NodeLaunch"):
        NodeLaunch(*args, tmp_path)


def test_run_config_pairs_round_trip_through_flowers_parser():
    values = {
        "path": "/a b/c",
        "quoted": 'say "hi"',
        "apostrophe": "it's",
        "backslash": "a\\b",
        "n": 3,
        "x": 0.25,
        "tiny": 1e-7,
        "flag": False,
        "nested.key": "v",
    }
    assert parse_config_args([flwr_cli.cli_pairs(values, what="run config")]) == values
    with pytest.raises(ValueError, match="both kinds of quote"):
        flwr_cli.cli_pairs({"s": 'it\'s "both"'}, what="run config")
    with pytest.raises(ValueError, match="not a bare TOML key"):
        flwr_cli.cli_pairs({"a key": 1}, what="run config")
    with pytest.raises(TypeError, match="must be str, int, float or bool"):
        flwr_cli.cli_pairs({"a": None}, what="run config")


def test_write_app_dir_writes_a_valid_flower_app(tmp_path):
    config = {"result-path": "/tmp/x y.json", "rounds": 3, "lr": 0.5, "dp": True, "model.width": 8}
    app = write_app_dir(
        tmp_path / "app", serverapp="pkg.mod:server_app", clientapp="pkg.mod:client_app", config=config
    )
    assert app == tmp_path / "app"
    assert [p.name for p in app.iterdir()] == ["pyproject.toml"]
    doc = tomllib.loads((app / "pyproject.toml").read_text(encoding="utf-8"))
    flwr = doc["tool"]["flwr"]
    assert flwr["app"]["components"] == {"serverapp": "pkg.mod:server_app", "clientapp": "pkg.mod:client_app"}
    assert flwr["app"]["config"] == {
        "result-path": "/tmp/x y.json",
        "rounds": 3,
        "lr": 0.5,
        "dp": True,
        "model": {"width": 8},
    }
    assert "federations" not in flwr  # flwr run would rewrite the file
    # Flower's own validation (without importing the components) finds neither errors nor warnings.
    _, warnings = load_and_validate(app / "pyproject.toml", check_module=False)
    assert warnings == []
    assert flwr_cli.declared_config_keys(app / "pyproject.toml") == {
        "result-path",
        "rounds",
        "lr",
        "dp",
        "model.width",
    }


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"serverapp": "mod"}, ValueError, "serverapp must be 'module:attribute'"),
        ({"clientapp": "mod:"}, ValueError, "clientapp must be 'module:attribute'"),
        ({"config": {"a": [1]}}, TypeError, "must be str, int, float or bool"),
        ({"config": {"a": 1, "a.b": 2}}, ValueError, "valid TOML"),
        ({"config": {"bad key": 1}}, ValueError, "bare TOML key"),
        ({"name": "no spaces allowed"}, ValueError, "project name"),
    ],
)
def test_write_app_dir_rejects_bad_input(tmp_path, kwargs, error, match):
    args = {"serverapp": "m:s", "clientapp": "m:c", "config": {}} | kwargs
    with pytest.raises(error, match=match):
        write_app_dir(tmp_path / "app", **args)
    assert not (tmp_path / "app").exists()


def test_flower_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    before = dict(os.environ)
    env = flower_env(tmp_path / "home", poll_interval=0.5)
    assert dict(os.environ) == before  # a copy
    assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert shutil.which("flower-superlink", path=env["PATH"]) is not None
    root = str(Path(fedjax_rhd.__file__).resolve().parents[1])
    assert env["PYTHONPATH"].split(os.pathsep) == [root, "/elsewhere"]
    assert env["FLWR_HOME"] == str((tmp_path / "home").resolve())
    assert env["FLWR_TELEMETRY_ENABLED"] == "0"
    assert env["FLWR_DISABLE_UPDATE_CHECK"] == "1"
    assert env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] == "1"
    assert float(env["FLWR_SUPEREXEC_TASK_POLL_INTERVAL"]) == 0.5
    for bad in (0.001, 61, float("nan")):
        with pytest.raises(ValueError, match="between 0.01 and 60"):
            flower_env(tmp_path, poll_interval=bad)


def test_deployment_rejects_bad_arguments(tmp_path):
    node = NodeLaunch(0, 2, tmp_path / "n0")
    with pytest.raises(ValueError, match="at least one node"):
        LocalDeployment(tmp_path, [])
    with pytest.raises(ValueError, match="distinct"):
        LocalDeployment(tmp_path, [node, node])
    with pytest.raises(TypeError, match="NodeLaunch"):
        LocalDeployment(tmp_path, [(0, 2, tmp_path)])
    with pytest.raises(ValueError, match="start_timeout"):
        LocalDeployment(tmp_path, [node], start_timeout=0)
    deployment = LocalDeployment(tmp_path, [node])
    with pytest.raises(RuntimeError, match="not been started"):
        deployment.superlink_address  # noqa: B018
    with pytest.raises(RuntimeError, match="not started"):
        deployment.run_status(1)
    app = _trivial_app(tmp_path / "app")
    with pytest.raises(ValueError, match=r"\['rounds'\] are not declared"):
        deployment.submit(app, {"rounds": 3})
    with pytest.raises(FileNotFoundError, match="no pyproject.toml"):
        deployment.submit(tmp_path / "nowhere", {})
    assert deployment.pids() == []


# A stand-in for a Flower server: listens on the port it is given and has a child, like a SuperExec.
_LISTENER = (
    "import socket, subprocess, sys, time; s = socket.socket(); "
    's.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(); '
    'subprocess.Popen(["sleep", "60"]); time.sleep(60)'
)


def _fake_flower_path(tmp_path: Path, superlink: str | None = None) -> str:
    """A PATH whose ``flower-superlink`` runs the shell script ``superlink`` (default: a listener on
    its ``--port``) and whose ``flower-supernode`` is a listener on its ``--port``."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    listen = f"exec '{sys.executable}' -c '{_LISTENER}'"
    scripts = {
        "flower-superlink": superlink or f'{listen} "$5"\n',  # --insecure --host H --port P
        "flower-supernode": f'{listen} "$5"\n',  # --insecure --superlink A --port Q
    }
    for name, script in scripts.items():
        exe = bin_dir / name
        exe.write_text("#!/bin/sh\n" + script, encoding="utf-8")
        exe.chmod(0o755)
    return os.pathsep.join([str(bin_dir), os.environ["PATH"]])


def test_start_reports_a_process_that_exits_and_cleans_up(tmp_path):
    deployment = LocalDeployment(tmp_path / "run", [NodeLaunch(0, 1, tmp_path / "n0")], **FAKE)
    deployment.env["PATH"] = _fake_flower_path(tmp_path, 'echo "boom: no port today" >&2\nexit 3\n')
    with pytest.raises(RuntimeError, match=r"superlink exited with code 3(.|\n)*boom: no port today"):
        deployment.start()
    assert deployment.pids() == []
    with pytest.raises(RuntimeError, match="already stopped"):
        deployment.start()


def test_start_times_out_and_kills_what_it_started(tmp_path):
    deployment = LocalDeployment(
        tmp_path / "run", [NodeLaunch(0, 1, tmp_path / "n0")], start_timeout=1.0, **FAKE
    )
    deployment.env["PATH"] = _fake_flower_path(tmp_path, "echo hanging\nsleep 60\n")
    seen: list[int] = []
    spawn = deployment._spawn

    def spawn_and_record(*args, **kwargs):
        child = spawn(*args, **kwargs)
        time.sleep(0.3)  # let sh start its sleep
        seen.extend(deployment.pids())
        return child

    deployment._spawn = spawn_and_record
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"superlink did not accept connections(.|\n)*hanging"):
        deployment.start()
    assert time.monotonic() - t0 < 15
    assert len(seen) >= 3  # watchdog, sh, sleep
    assert _running(seen) == []
    assert deployment.pids() == []


def test_keyboard_interrupt_in_the_block_stops_everything(tmp_path):
    deployment = LocalDeployment(
        tmp_path / "run", [NodeLaunch(i, 2, tmp_path / f"n{i}") for i in range(2)], **FAKE
    )
    deployment.env["PATH"] = _fake_flower_path(tmp_path)
    with pytest.raises(KeyboardInterrupt), deployment:
        deadline = time.monotonic() + 10
        while len(pids := deployment.pids()) < 7 and time.monotonic() < deadline:
            time.sleep(0.05)
        raise KeyboardInterrupt
    assert len(pids) == 7  # the watchdog; SuperLink and SuperNodes, each with a child
    assert _running(pids) == []
    assert deployment.pids() == []


def test_kill_node_and_restart_node(tmp_path):
    nodes = [NodeLaunch(i, 2, tmp_path / f"n{i}") for i in range(2)]
    deployment = LocalDeployment(tmp_path / "run", nodes, **FAKE)
    deployment.env["PATH"] = _fake_flower_path(tmp_path)  # restarts use it too
    with deployment:
        old = deployment._supernodes[0]
        deadline = time.monotonic() + 10
        while not (group := psutil.Process(old.popen.pid).children()) and time.monotonic() < deadline:
            time.sleep(0.05)
        group_pids = [old.popen.pid, *(p.pid for p in group)]
        other = deployment._supernodes[1].popen.pid

        deployment.kill_node(0)
        assert _running(group_pids) == []  # the whole process group, at once
        assert other in deployment.pids()
        with pytest.raises(RuntimeError, match="supernode-0 is not running"):
            deployment.kill_node(0)
        with pytest.raises(KeyError, match="no node with partition id 7"):
            deployment.kill_node(7)

        deployment.restart_node(0)
        new = deployment._supernodes[0]
        assert new.popen.pid != old.popen.pid and new.popen.pid in deployment.pids()
        assert new.log.name == "supernode-0.restart1.log"
        socket.create_connection(("127.0.0.1", new.port), timeout=2).close()
        with pytest.raises(RuntimeError, match="still runs; kill_node"):
            deployment.restart_node(0)
        pids = deployment.pids()
    assert _running(pids) == []


def test_watchdog_kills_what_it_was_told_about_when_its_stdin_closes():
    target = subprocess.Popen(["sleep", "60"], start_new_session=True)
    code = f"from fedjax_rhd.federation.flower.guard import watchdog; watchdog({os.getpid()}, tick=0.05)"
    env = flower_env(Path("/nonexistent"))
    dog = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, env=env)
    try:
        dog.stdin.write(f"{target.pid}\n".encode())
        dog.stdin.flush()
        time.sleep(0.5)
        assert target.poll() is None  # told, but the parent lives: nothing happens
        dog.stdin.close()
        assert dog.wait(timeout=10) == 0
        assert target.wait(timeout=5) == -signal.SIGKILL
    finally:
        for proc in (target, dog):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


# ---- end to end -------------------------------------------------------------------------------------


def test_two_node_run_end_to_end_then_nothing_left(tmp_path):
    """A real SuperLink, two SuperNodes and a one-round app; then stop() leaves no process running."""
    nodes = _nodes(tmp_path, 2)
    app = _trivial_app(tmp_path / "app")
    result_path = tmp_path / "result.json"
    deployment = LocalDeployment(tmp_path / "run", nodes)
    seen: set[int] = set()
    with deployment:
        host, port = deployment.superlink_address.split(":")
        assert host == "127.0.0.1"
        socket.create_connection((host, int(port)), timeout=2).close()
        config = tomllib.loads((deployment.flwr_home / "config.toml").read_text(encoding="utf-8"))
        assert config["superlink"]["default"] == deployment.connection
        assert config["superlink"][deployment.connection] == {  # TLS by default, trusting our CA only
            "address": deployment.superlink_address,
            "root-certificates": str(deployment.tls.ca),
        }
        plaintext = FlwrCli(flower_env(tmp_path / "plain_home"), tmp_path)
        plaintext.write_connection(deployment.superlink_address)
        with pytest.raises(RuntimeError):  # a plaintext client gets nothing from a TLS SuperLink
            plaintext.online_nodes()
        run_id = deployment.submit(app, {"result-path": str(result_path)})
        seen.update(deployment.pids())
        status = deployment.wait_run(run_id, timeout=120, poll=0.5)
        seen.update(deployment.pids())
        assert status == "finished:completed"
        with pytest.raises(RuntimeError, match="Run ID not found"):
            deployment.run_status(run_id + 1)
        names = {name for _, name in _running(deployment.pids())}
        assert {"flower-superlink", "flower-supernode", "flower-superexec"} <= names
    result = json.loads(result_path.read_text(encoding="utf-8"))
    assert [(r["partition-id"], r["data"], r["echo"]) for r in result["nodes"]] == [
        (0, "rows of node 0", "world"),
        (1, "rows of node 1", "world"),
    ]
    # each SuperNode connected with the key registered for it, under the id registration gave it
    assert {r["node-id"] for r in result["nodes"]} == set(deployment.node_ids.values())
    assert len(set(deployment.node_ids.values())) == 2
    assert deployment.pids() == []
    assert _running(sorted(seen)) == []
    logs = sorted(p.name for p in (tmp_path / "run" / "flower_logs").iterdir())
    assert logs == ["superlink.log", "supernode-0.log", "supernode-1.log", "watchdog.log"]
    deployment.stop()  # idempotent


# Slow: a second deployment (about 10 s) beside the default suite's one (issue 15: one in the default suite).
@pytest.mark.slow
def test_an_unregistered_supernode_is_refused_and_its_key_named(tmp_path):
    """SuperNode authentication: a key the manager did not register is refused; the refusal (which
    Flower logs only at the SuperLink) is reported with the refused key."""
    deployment = LocalDeployment(tmp_path / "run", _nodes(tmp_path, 1))
    with deployment:
        intruder_key, intruder_pub = certificates.make_node_key(tmp_path / "intruder")
        intruder = subprocess.Popen(
            [shutil.which("flower-supernode", path=deployment.env["PATH"]), "--superlink",
             deployment.superlink_address, "--port", str(free_port()), "--root-certificates",
             str(deployment.tls.ca), "--auth-supernode-private-key", str(intruder_key)],
            env=deployment.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            assert intruder.wait(timeout=60) != 0  # Flower's SuperNode exits (305) when refused
        finally:
            if intruder.poll() is None:
                intruder.kill()
        refused = deployment.refused_keys()
        assert refused == [f"an unregistered key: {certificates.public_key_pem(intruder_pub).strip()}"]
        assert deployment.online_nodes() == list(deployment.node_ids.values())  # ours still serves


# ---- slow: killed parent, node faults ---------------------------------------------------------------

_PARENT = textwrap.dedent(
    """
    import json, shutil, sys, time
    from pathlib import Path
    from fedjax_rhd.federation.flower.flwr_cli import write_app_dir
    from fedjax_rhd.federation.flower.processes import LocalDeployment, NodeLaunch

    run_dir, app_src = Path(sys.argv[1]), sys.argv[2]
    nodes = [NodeLaunch(i, 2, run_dir / f"node{i}") for i in range(2)]
    app = write_app_dir(run_dir / "app", serverapp="trivial_app:server_app",
                        clientapp="trivial_app:client_app",
                        config={"result-path": "", "num-nodes": 3, "wait-s": 600.0})
    shutil.copy(app_src, app / "trivial_app.py")
    deployment = LocalDeployment(run_dir, nodes)
    deployment.start()
    # A run that waits for a third node forever keeps a flwr-serverapp process alive.
    deployment.submit(app, {"result-path": str(run_dir / "never.json")})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(deployment.pids()) < 8:
        time.sleep(0.2)
    print(json.dumps(deployment.pids()), flush=True)
    time.sleep(600)
    """
)


@pytest.mark.slow
def test_killed_parent_leaves_no_orphans(tmp_path):
    parent = subprocess.Popen(
        [sys.executable, "-c", _PARENT, str(tmp_path), str(TRIVIAL_APP)],
        stdout=subprocess.PIPE,
        text=True,
        env=flower_env(tmp_path / "unused"),
    )
    try:
        line = parent.stdout.readline()  # the parent's own timeouts bound this wait
        assert line, f"the parent exited ({parent.wait(timeout=10)}) before printing its pids"
        pids = json.loads(line)
        # Everything below the parent now, whatever it reported (descendants included).
        pids = sorted({*pids, *(p.pid for p in psutil.Process(parent.pid).children(recursive=True))})
        names = {name for _, name in _running(pids)}
        assert {"flower-superlink", "flower-supernode", "flower-superexec", "flwr-serverapp"} <= names
        parent.kill()
        parent.wait(timeout=10)
        left = _wait_not_running(pids, ORPHAN_LIMIT_S)
        assert left == [], f"orphans {ORPHAN_LIMIT_S} s after the parent was SIGKILLed: {left}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


@pytest.mark.slow
def test_kill_and_restart_a_node(tmp_path):
    nodes = _nodes(tmp_path, 2)
    with LocalDeployment(tmp_path / "run", nodes) as deployment:
        deadline = time.monotonic() + 60
        while len(online := deployment.online_nodes()) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
        assert len(online) == 2
        old_pid = deployment._supernodes[0].popen.pid
        node_group = [p.pid for p in psutil.Process(old_pid).children(recursive=True)] + [old_pid]

        deployment.kill_node(0)
        assert _wait_not_running(node_group, 5) == []
        assert old_pid not in deployment.pids()
        with pytest.raises(RuntimeError, match="not running"):
            deployment.kill_node(0)

        deployment.restart_node(0)
        new = deployment._supernodes[0]
        assert new.popen.pid != old_pid and new.popen.pid in deployment.pids()
        socket.create_connection(("127.0.0.1", new.port), timeout=2).close()
        # one log per attempt: Flower refuses the key until the killed session's heartbeats lapse (~60 s)
        attempts = sorted((tmp_path / "run" / "flower_logs").glob("supernode-0.restart*.log"))
        assert new.log == attempts[-1] and new.log.name == f"supernode-0.restart{len(attempts)}.log"
        with pytest.raises(RuntimeError, match="still runs"):
            deployment.restart_node(0)
        # With SuperNode auth the restarted node is accepted (after Flower's ~60 s of refusals) under the
        # id its key was registered with.
        assert f"SuperNode ID: {deployment.node_ids[0]}" in new.log.read_text()
        assert sorted(deployment.online_nodes()) == sorted(deployment.node_ids.values())
        pids = deployment.pids()
    assert _running(pids) == []
