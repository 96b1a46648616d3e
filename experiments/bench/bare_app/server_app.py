"""The bare app's ServerApp: FedAvg over ``grid.send_and_receive``, timed round by round.

``run_rounds`` waits for the nodes, then runs ``rounds`` rounds of one
``train`` exchange (and, with ``exchanges=2``, one ``evaluate`` exchange),
each through Flower's own ``send_and_receive``, and returns wall-clock
timestamps (``time.time()``, comparable with the process that started Flower).
In simulation the benchmark builds the ServerApp with ``make_server_app``; in a
deployment Flower loads ``app``, which reads the run config and writes the
timings as JSON to ``result-path``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp


@dataclasses.dataclass(frozen=True)
class BareSettings:
    """What one bare run does (the run config's keys in a deployment)."""

    rounds: int = 5
    exchanges: int = 1  # 1: train only; 2: train then evaluate, like the project's backend
    num_nodes: int = 5
    num_params: int = 5792  # DeepSurv's parameter count on the five-node MDS features
    local_epochs: int = 5
    connect_timeout: float = 180.0


RUN_CONFIG = {
    "rounds": "rounds",
    "exchanges": "exchanges",
    "num-nodes": "num_nodes",
    "num-params": "num_params",
    "local-epochs": "local_epochs",
}
RESULT_PATH_KEY = "result-path"


def _exchange(
    grid: Grid, node_ids: list[int], message_type: str, content: RecordDict, round_index: int
) -> list:
    messages = [
        Message(content, dst_node_id=i, message_type=message_type, group_id=str(round_index))
        for i in node_ids
    ]
    replies = list(grid.send_and_receive(messages))
    errors = [r.error.reason for r in replies if r.has_error()]
    if errors or len(replies) != len(node_ids):
        raise RuntimeError(f"{message_type}: {len(replies)} of {len(node_ids)} replies, errors {errors}")
    return replies


def run_rounds(grid: Grid, settings: BareSettings) -> dict[str, Any]:
    """Wait for the nodes, run the rounds; wall-clock timestamps of each step."""
    main_start = time.time()
    deadline = time.monotonic() + settings.connect_timeout
    while len(node_ids := sorted(grid.get_node_ids())) < settings.num_nodes:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{len(node_ids)} of {settings.num_nodes} nodes within {settings.connect_timeout} s"
            )
        time.sleep(0.1)
    nodes_ready = time.time()
    params = np.zeros(settings.num_params, np.float32)
    round_ends, losses = [], []
    for r in range(1, settings.rounds + 1):
        content = RecordDict(
            {
                "arrays": ArrayRecord({"params": Array(params)}),
                "config": ConfigRecord({"local-epochs": settings.local_epochs}),
            }
        )
        replies = _exchange(grid, node_ids, "train", content, r)
        weights = np.array([float(m.content["metrics"]["num-examples"]) for m in replies])
        vectors = np.stack([m.content["arrays"]["params"].numpy() for m in replies])
        params = (weights @ vectors / weights.sum()).astype(np.float32)
        if settings.exchanges == 2:
            content = RecordDict({"arrays": ArrayRecord({"params": Array(params)})})
            replies = _exchange(grid, node_ids, "evaluate", content, r)
            losses.append(float(np.mean([m.content["metrics"]["loss"] for m in replies])))
        round_ends.append(time.time())
    return {
        "main_start": main_start,
        "nodes_ready": nodes_ready,
        "round_ends": round_ends,
        "eval_loss": losses,
        "param_mean": float(params.mean()),
    }


def make_server_app(settings: BareSettings, out: dict[str, Any]) -> ServerApp:
    """Simulation: a ServerApp that runs ``run_rounds`` and puts the timings into ``out``."""
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        del context
        out.update(run_rounds(grid, settings))
        out["main_end"] = time.time()

    return server_app


app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Deployment: settings from the run config; timings to ``result-path`` (written atomically)."""
    config = context.run_config
    settings = BareSettings(**{field: int(config[key]) for key, field in RUN_CONFIG.items()})
    out = run_rounds(grid, settings)
    out["main_end"] = time.time()
    path = Path(str(config[RESULT_PATH_KEY]))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(out))
    os.replace(tmp, path)
