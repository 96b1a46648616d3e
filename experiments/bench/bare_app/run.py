"""Run the bare app in Flower's simulation engine or in a local deployment and time it.

Both return the ServerApp's timestamps (``server_app.run_rounds``) plus the
wall-clock time at which Flower was started and the seconds it took to stop,
so the benchmark computes start-up, first round and steady rounds the same way
for every app.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from bare_app import client_app, server_app
from bare_app.server_app import RESULT_PATH_KEY, RUN_CONFIG, BareSettings
from fedjax_rhd.federation.flower import flwr_cli, processes

PACKAGE = Path(__file__).resolve().parent


def run_simulation(settings: BareSettings, actors: int = 2) -> dict[str, Any]:
    """The bare app in Flower's simulation engine, Ray actors of one CPU each (as ``backend=flower``)."""
    from flwr.simulation import run_simulation as flower_run_simulation

    out: dict[str, Any] = {}
    backend_config = {
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {"num_cpus": actors, "include_dashboard": False, "logging_level": logging.ERROR},
    }
    out["flower_start"] = time.time()
    flower_run_simulation(
        server_app=server_app.make_server_app(settings, out),
        client_app=client_app.app,
        num_supernodes=settings.num_nodes,
        backend_config=backend_config,  # type: ignore[arg-type]
    )
    out["teardown"] = time.time() - out["main_end"]
    return out


def run_deployment(
    settings: BareSettings, workdir: Path, *, superexec_poll: float = 1.0, timeout: float = 900.0
) -> dict[str, Any]:
    """The bare app on a ``LocalDeployment`` (SuperLink + one SuperNode per node on loopback).

    The app dir ships the ``bare_app`` package in its FAB, as a plain Flower app does;
    ``superexec_poll`` defaults to Flower's own 1 s.
    """
    workdir = Path(workdir)
    app_dir = workdir / "app"
    shutil.copytree(PACKAGE, app_dir / "bare_app", ignore=shutil.ignore_patterns("__pycache__", "run.py"))
    flwr_cli.write_app_dir(
        app_dir,
        serverapp="bare_app.server_app:app",
        clientapp="bare_app.client_app:app",
        config={**{key: 0 for key in RUN_CONFIG}, RESULT_PATH_KEY: ""},
        name="bare-app",
    )
    result = workdir / "bare_result.json"
    nodes = [
        processes.NodeLaunch(k, settings.num_nodes, workdir / f"node{k}") for k in range(settings.num_nodes)
    ]
    run_config: dict[str, flwr_cli.ConfigValue] = {
        key: getattr(settings, field) for key, field in RUN_CONFIG.items()
    }
    run_config[RESULT_PATH_KEY] = str(result)
    deployment = processes.LocalDeployment(workdir / "flower", nodes, poll_interval=superexec_poll)
    flower_start = time.time()
    deployment.start()
    try:
        run_id = deployment.submit(app_dir, run_config)
        deadline = time.monotonic() + timeout
        next_status = time.monotonic() + 30.0
        while not result.exists():  # a file check, not `flwr ls`: a CLI start costs ~1.5 s of CPU
            if time.monotonic() > deadline:
                raise TimeoutError(f"the bare app did not finish within {timeout} s")
            if time.monotonic() > next_status:
                status = deployment.run_status(run_id)
                if status.startswith("finished"):
                    raise RuntimeError(f"the bare app ended without results: {status}")
                next_status = time.monotonic() + 30.0
            time.sleep(0.2)
        out = json.loads(result.read_text())
    finally:
        stop_start = time.time()
        deployment.stop()
    out["flower_start"] = flower_start
    out["teardown"] = time.time() - stop_start
    return out
