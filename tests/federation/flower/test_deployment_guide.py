"""docs/deployment.md followed on one machine: the guide's own commands give the simulator's results.

The commands are read from the guide's blocks marked ``<!-- guide-test: NAME -->`` and run by ``sh`` as
written, with the guide's shell variables set by the test: each "host" is a folder used as its ``HOME``
(so each has its own ``FLWR_HOME``), every port is a free one on 127.0.0.1, and a hospital's folder is a
copy of the one the export wrote. Two departures, both about where this checkout is: ``VENV`` is the venv of
the Python running the tests (the guide derives it from ``$PWD``), and ``PYTHONPATH`` starts with this
checkout (the shared venv's editable install may point at another one). ``fedjax-rhd`` itself runs in process
through Hydra's compose API, with the arguments the guide's command line expands to plus ``backend.workdir``
(kept, to check that the manager wrote no node folder).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from flwr.common.config import parse_config_args

from fedjax_rhd.federation.flower import guard
from fedjax_rhd.federation.flower.flwr_cli import FlwrCli, flower_env
from fedjax_rhd.federation.flower.processes import free_port
from tests.conftest import ROOT, TINY, run_in_process

GUIDE = ROOT / "docs" / "deployment.md"
BLOCKS = ("env", "export", "certs", "superlink", "nodekey", "register", "worker", "supernode", "run")
NUM_NODES = 3  # TINY's split=three
START_TIMEOUT = 60.0  # seconds for a Flower process's port to accept


def guide_blocks() -> dict[str, str]:
    """The guide's ``guide-test`` blocks by name (the shell text inside each fence)."""
    text = GUIDE.read_text(encoding="utf-8")
    found = re.findall(r"<!-- guide-test: (\w+) -->\n```bash\n(.*?)```", text, flags=re.S)
    return dict(found)


def env_block(blocks: dict[str, str]) -> str:
    """The guide's environment block, without its ``VENV`` line (the test sets ``VENV``)."""
    return "\n".join(line for line in blocks["env"].splitlines() if not line.startswith("export VENV="))


def expand_args(command: str, env: dict[str, str], program: str) -> list[str]:
    """The arguments ``sh`` passes to ``program`` in ``command`` (run with ``printf`` in its place)."""
    assert command.lstrip().startswith(program + " "), command
    script = command.replace(program, "printf '%s\\0'", 1)
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    return out.split("\0")[:-1]


def test_the_guide_has_its_commands_and_they_expand_as_flower_expects():
    blocks = guide_blocks()
    missing = set(BLOCKS) - set(blocks)
    assert not missing, f"docs/deployment.md lacks guide-test blocks {missing}"
    for name in BLOCKS:
        subprocess.run(["sh", "-n", "-c", blocks[name]], check=True)  # parses as shell
    for line in ("FLWR_TELEMETRY_ENABLED=0", "FLWR_DISABLE_UPDATE_CHECK=1", "FLWR_HOME=", 'PATH="$VENV/bin:'):
        assert line in blocks["env"]
    env = {"PATH": os.environ["PATH"], "SUPERLINK_PORT": "9091", "FLEET_ADDRESS": "m.example.org:9092"}
    env |= {"NODE_PORT": "9094", "PARTITION_ID": "1", "NUM_PARTITIONS": "3", "NODE_DIR": "/srv/my node"}
    env |= {"HOME": "/home/m", "CA_CERT": "/srv/ca.crt"}
    superlink = expand_args(blocks["superlink"], env, "flower-superlink")
    tls = "/home/m/fedjax-rhd/tls"
    assert superlink == [
        "--ssl-ca-certfile", f"{tls}/ca.crt", "--ssl-certfile", f"{tls}/server.pem", "--ssl-keyfile",
        f"{tls}/server.key", "--enable-supernode-auth",
        "--host", "127.0.0.1", "--port", "9091", "--disable-runtime-dependency-installation",
    ]  # fmt: skip
    worker = expand_args(blocks["worker"], env | {"WORKER_PORT": "9300"}, "python")
    assert worker == [
        "-m",
        "fedjax_rhd.federation.flower.node_worker",
        "--data-dir",
        "/srv/my node",
        "--port",
        "9300",
    ]
    supernode = expand_args(blocks["supernode"], env, "flower-supernode")
    key = "/home/m/fedjax-rhd/key/node.key"
    assert supernode[:4] == ["--root-certificates", "/srv/ca.crt", "--auth-supernode-private-key", key]
    assert supernode[4:8] == ["--superlink", "m.example.org:9092", "--port", "9094"]
    assert supernode[8] == "--node-config"
    assert parse_config_args([supernode[9]]) == {
        "partition-id": 1,
        "num-partitions": 3,
        "data-dir": "/srv/my node",
    }
    run = expand_args(blocks["run"], env | {"OVERRIDES": "split=five seed.split=2"}, "fedjax-rhd")
    assert run == [
        "split=five", "seed.split=2", "backend=flower", "backend.mode=deployment",
        "backend.superlink=127.0.0.1:9091", f"backend.root_certificates={tls}/ca.crt",
    ]  # fmt: skip


# ---- the whole guide --------------------------------------------------------------------------------


def sh(script: str, env: dict[str, str], cwd: Path) -> str:
    """Run a guide block with ``sh``; fail with its output unless it exits 0; return its stdout."""
    done = subprocess.run(
        ["sh", "-c", script], env=env, cwd=cwd, capture_output=True, text=True, timeout=300,
        preexec_fn=guard.die_with_parent_fn(),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _running(procs: set[psutil.Process]) -> list[str]:
    return sorted(f"{p.pid} {' '.join(p.cmdline()[:3])}" for p in procs if guard.alive(p))


class _Hosts:
    """The Flower processes the guide's commands start, each under the guard, and their logs."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.dog = guard.Watchdog(log_path=tmp_path / "logs" / "watchdog.log")
        self.popens: dict[str, subprocess.Popen[bytes]] = {}
        self.seen: set[psutil.Process] = set()

    def start(self, name: str, script: str, env: dict[str, str], cwd: Path, port: int) -> None:
        """Run ``script`` (its last command ``exec``-ed) and wait until ``port`` accepts."""
        log_path = self.tmp_path / "logs" / f"{name}.log"
        with log_path.open("ab") as log_file:
            popen = subprocess.Popen(
                ["sh", "-c", script],
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=guard.die_with_parent_fn(),
            )
        self.popens[name] = popen
        self.dog.tell(popen.pid)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert popen.poll() is None, f"{name} exited with {popen.returncode}:\n{self.log(name)}"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            except OSError:
                assert time.monotonic() < deadline, f"{name} did not open port {port}:\n{self.log(name)}"
                time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.tmp_path / "logs" / f"{name}.log"
        return path.read_text(encoding="utf-8", errors="replace")[-3000:] if path.exists() else "(no log)"

    def remember(self) -> None:
        self.seen |= guard.with_descendants({psutil.Process(p.pid) for p in self.popens.values()})


@pytest.mark.slow
@pytest.mark.e2e
def test_following_the_guide_on_loopback_gives_the_simulators_results(tmp_path):
    blocks = guide_blocks()
    data_root = tmp_path / "data"
    overrides = " ".join([*TINY, f"data_root={data_root}"])
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    base = dict(os.environ)
    base["VENV"] = str(Path(sys.executable).parent.parent)
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    homes = {name: tmp_path / name for name in ["manager", *(f"site{k}" for k in range(NUM_NODES))]}
    for home in homes.values():
        home.mkdir()
    (tmp_path / "logs").mkdir()
    setup = env_block(blocks)
    port = free_port()
    manager = base | {"HOME": str(homes["manager"]), "OVERRIDES": overrides, "SUPERLINK_PORT": str(port)}
    manager["MANAGER_NAME"] = "localhost"  # the name the "hospitals" connect to, on loopback

    # Step 4: the manager writes the node folders; each "hospital" gets a copy of its own.
    started = time.perf_counter()
    done = subprocess.run(
        ["sh", "-c", f"{setup}\n{blocks['export']}"],
        env=manager,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        preexec_fn=guard.die_with_parent_fn(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    exported = homes["manager"] / "fedjax-rhd" / "nodes"
    assert sorted(p.name for p in exported.iterdir()) == [str(k) for k in range(NUM_NODES)]
    assert f"{exported / '0'}  ->  site of node1 (partition-id 0 of {NUM_NODES}" in done.stdout
    node_dirs = [shutil.copytree(exported / str(k), homes[f"site{k}"] / "my node") for k in range(NUM_NODES)]
    export_s = time.perf_counter() - started

    hosts = _Hosts(tmp_path)
    hosts.dog.start()
    try:
        # Step 5: certificates and the SuperLink on the manager.
        sh(f"{setup}\n{blocks['certs']}", manager, ROOT)
        hosts.start("superlink", f"{setup}\nexec {blocks['superlink']}", manager, ROOT, port)
        # Step 7: each hospital's key, registered by the manager; then its worker and SuperNode.
        for k, node_dir in enumerate(node_dirs):
            site = base | {
                "HOME": str(homes[f"site{k}"]),
                "FLEET_ADDRESS": f"127.0.0.1:{port}",  # no proxy on loopback
                "NODE_PORT": str(free_port()),
                "PARTITION_ID": str(k),
                "NUM_PARTITIONS": str(NUM_NODES),
                "NODE_DIR": str(node_dir),
                "WORKER_PORT": str(free_port()),
                "CA_CERT": str(
                    shutil.copy(homes["manager"] / "fedjax-rhd" / "tls" / "ca.crt", homes[f"site{k}"])
                ),
            }
            sh(f"{setup}\n{blocks['nodekey']}", site, homes[f"site{k}"])
            public = homes[f"site{k}"] / "fedjax-rhd" / "key" / "node.key.pub"
            registered = sh(
                f"{setup}\n{blocks['register']}",
                manager | {"SITE_PUBLIC_KEY": str(public), "SITE_NAME": f"site{k}"},
                ROOT,
            )
            assert f"as 'site{k}': node id" in registered
            worker = f"{setup}\nexec {blocks['worker']}"
            hosts.start(f"worker-{k}", worker, site, homes[f"site{k}"], int(site["WORKER_PORT"]))
            script = f"{setup}\nexec {blocks['supernode']}"
            hosts.start(f"supernode-{k}", script, site, homes[f"site{k}"], int(site["NODE_PORT"]))
        hosts.remember()

        # Step 8: the run, with the arguments the guide's command line expands to (and a kept workdir).
        args = expand_args(blocks["run"], manager, "fedjax-rhd")
        workdir = tmp_path / "workdir"
        started = time.perf_counter()
        flower = run_in_process([*args, f"backend.workdir={workdir}"], tmp_path / "flower_run", data_root)
        flower_s = time.perf_counter() - started
        hosts.remember()

        # The run it submitted has ended by itself, and the SuperLink and SuperNodes still run.
        cli = FlwrCli(flower_env(tmp_path / "cli_home"), tmp_path)
        cli.write_connection(f"127.0.0.1:{port}", homes["manager"] / "fedjax-rhd" / "tls" / "ca.crt")
        runs = cli.call(["ls", cli.connection], what="listing runs")["runs"]
        assert [r["status"] for r in runs] == ["finished:completed"], runs
        assert all(p.poll() is None for p in hosts.popens.values())
    finally:
        hosts.remember()
        survivors = guard.stop_tree(list(hosts.popens.values()))
        hosts.dog.stop()
    assert survivors == []
    for k in range(NUM_NODES):  # each site's worker answered its ClientApps' training messages
        assert "answered train in" in (tmp_path / "logs" / f"worker-{k}.log").read_text()
    assert _running(hosts.seen) == []
    left = {p for p in psutil.Process().children(recursive=True) if p.pid not in before}
    assert _running(left) == []
    # The manager wrote no node folder of its own: the SuperNodes read the copies at the "sites".
    assert not (workdir / "nodes").exists()
    assert (workdir / "flwr_home" / "config.toml").is_file()

    started = time.perf_counter()
    simulator = run_in_process([*TINY], tmp_path / "simulator_run", data_root)
    simulator_s = time.perf_counter() - started
    assert [r["val_loss"] for r in flower["rounds"]] == [r["val_loss"] for r in simulator["rounds"]]
    assert flower["final"]["c_index_test"]["estimate"] == simulator["final"]["c_index_test"]["estimate"]
    # ... and everything else too: every round's entry and every final metric (timings aside).
    assert flower["rounds"] == simulator["rounds"]
    assert flower["final"] == simulator["final"]
    on_disk = json.loads((tmp_path / "flower_run" / "results.json").read_text(encoding="utf-8"))
    assert on_disk["config"]["backend"]["superlink"] == f"127.0.0.1:{port}"
    print(f"\nexport {export_s:.1f} s, deployment run {flower_s:.1f} s, simulator run {simulator_s:.1f} s")
