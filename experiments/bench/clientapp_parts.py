"""Where a deployment's round goes: one ``flwr-clientapp``-like process, part by part.

In a deployment every message to a node starts a new ``flwr-clientapp``
process (``shared/docs/flower_1.42_facts.md`` §3). ``measure_parts`` starts
``clientapp_probe.py`` (the same imports, node data read and local update,
without Flower's HTTP calls) for the project's ClientApp and for the bare app:
once alone with an empty JAX compilation cache, then alone with the cache the
first run filled, then five at once (one exchange's worth on this machine's
cores). ``FLOWER_LATENCIES`` lists the fixed sleeps and polls of flwr 1.42
that sit between those processes (read from its source).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parents[1]
PROBE = BENCH / "clientapp_probe.py"
PARTS = (  # (label, from mark, to mark)
    ("python start", "launch", "python_started"),
    ("import flwr (flwr-clientapp module)", "python_started", "flwr_imported"),
    ("import jax + numpy", "flwr_imported", "jax_imported"),
    ("import the app module", "jax_imported", "app_imported"),
    ("read the node's folder", "app_imported", "data_loaded"),
    ("first update (compile or cache load)", "data_loaded", "first_update"),
    ("steady update", "first_update", "second_update"),
    ("process total to the first reply", "launch", "first_update"),
)
FLOWER_LATENCIES = (  # (where, seconds, configurable?) in flwr 1.42, per message exchange
    ("SuperNode idle loop: sleep between pulls when no message waits", "3 (pick-up 0-3)", "no"),
    ("SuperExec task poll (SuperNode and SuperLink)", "1.0 default", "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"),
    ("SuperNode waits for the ClientApp's reply in steps of", "0.5", "no"),
    ("HttpGrid.send_and_receive sleeps between pulls", "3", "no (own push/pull loop avoids it)"),
    ("object pull retry back-off", "1 to 10", "no"),
)


def _launch(args: list[str], env: dict[str, str]) -> tuple[float, subprocess.Popen[str]]:
    launch = time.time()
    proc = subprocess.Popen(
        [sys.executable, str(PROBE), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return launch, proc


def _collect(launch: float, proc: subprocess.Popen[str]) -> dict[str, float]:
    out, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"clientapp_probe.py failed:\n{err[-3000:]}")
    marks = json.loads(out.strip().splitlines()[-1])
    marks["launch"] = launch
    return {label: marks[b] - marks[a] for label, a, b in PARTS}


def _probe(args: list[str], env: dict[str, str], parallel: int = 1) -> list[dict[str, float]]:
    started = [_launch(args, env) for _ in range(parallel)]
    return [_collect(launch, proc) for launch, proc in started]


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {label: statistics.mean(r[label] for r in rows) for label, _, _ in PARTS}


def measure_parts(data: Any, spec: Any, num_params: int, local_epochs: int, nodes: int = 5) -> dict[str, Any]:
    """Time the parts of one ClientApp process, ours and the bare app's.

    Args:
        data: the federation (``FederatedData``); node 0's folder is written for the probe.
        spec: the algorithm (``AlgorithmSpec``).
        num_params: the bare app's vector length.
        local_epochs: the bare app's local steps.
        nodes: how many probes run at once for the parallel measurement.

    Returns:
        ``{"python_bare_start": s, "ours": {case: parts}, "bare": {case: parts}, "flower": [...]}``, where a
        case is ``cold`` (empty cache), ``warm`` (cache filled by ``cold``) or ``parallel`` (``nodes`` warm
        probes at once: each part's mean and ``wall``, launch to the last first reply).
    """
    from fedjax_rhd.federation.flower import node_handlers, protocol, wire
    from fedjax_rhd.federation.flower.backend import write_node_folders
    from fedjax_rhd.federation.flower.wire import ARRAYS, CONFIG, Part

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    starts = []
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True, env=env)
        starts.append(time.perf_counter() - t)
    out: dict[str, Any] = {"python_bare_start": min(starts), "flower": FLOWER_LATENCIES}
    with tempfile.TemporaryDirectory(prefix="bench_parts_") as tmp:
        folder = write_node_folders(Path(tmp) / "nodes", data)[0]
        # the node packs its rows with the federation's preprocessing (query.prepare), as in a run
        prep, pads = data.preprocessor, {"pad_train": data.train.x.shape[1], "pad_val": data.val.x.shape[1]}
        inputs = {"center": prep.center, "scale": prep.scale, "fill": prep.fill}
        node_handlers.handle(
            wire.PREPARE, folder, {"inputs": Part(ARRAYS, inputs), "config": Part(CONFIG, pads)}
        )
        spec_file = Path(tmp) / "spec.json"
        spec_file.write_text(protocol.spec_to_json(spec))
        env["FEDJAX_RHD_JAX_CACHE"] = str(Path(tmp) / "jax_cache")
        cases = {
            "ours": ["ours", str(folder), str(spec_file)],
            "bare": ["bare", str(num_params), str(local_epochs)],
        }
        for name, args in cases.items():
            cold = _probe(args, env)[0]
            warm = _mean(_probe(args, env) + _probe(args, env))
            rows = _probe(args, env, parallel=nodes)
            parallel = _mean(rows) | {"wall": max(r["process total to the first reply"] for r in rows)}
            out[name] = {"cold": cold, "warm": warm, "parallel": parallel}
    return out


def print_parts(parts: dict[str, Any]) -> None:
    """The parts as a table: ours and the bare app, cold / warm cache / five at once."""
    print(
        "\none flwr-clientapp-like process (clientapp_probe.py), seconds; "
        f"bare `python -c pass`: {parts['python_bare_start']:.3f} s"
    )
    cols = [("ours", "cold"), ("ours", "warm"), ("ours", "parallel"), ("bare", "cold"), ("bare", "parallel")]
    heads = ["ours cold", "ours warm", "ours 5 at once", "bare", "bare 5 at once"]
    print(f"{'part':<40}" + "".join(f"{h:>15}" for h in heads))
    for label, _, _ in PARTS:
        print(f"{label:<40}" + "".join(f"{parts[a][c][label]:>15.3f}" for a, c in cols))
    print(
        f"{'wall, launch to the last of 5 replies':<40}{'':>30}{parts['ours']['parallel']['wall']:>15.3f}"
        f"{'':>15}{parts['bare']['parallel']['wall']:>15.3f}"
    )
    print("Flower 1.42's fixed latencies per exchange (source):")
    for where, seconds, setting in parts["flower"]:
        print(f"  {where:<66} {seconds:>16} s  configurable: {setting}")
