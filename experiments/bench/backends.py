"""Benchmark: seconds per round and start-up of the simulator, Flower simulation and a local deployment.

Five-node simulated MDS (conf/split/five.yaml), DeepSurv FedAvg with the
configs' defaults, the same rounds and local epochs everywhere, all in one run
on this machine, beside a bare Flower app of the same size
(``experiments/bench/bare_app``: five nodes, a jitted update of a vector as
long as DeepSurv's parameters, ``grid.send_and_receive`` FedAvg) run with one
message exchange per round and with two (train + evaluate, as the project's
backend does). Every measurement runs in a fresh Python process with its own
empty JAX compilation cache, so each start-up is cold and no compiled function
is carried over from the measurement before it.

Prints the machine, a table of absolute seconds (construction, first round,
steady seconds per round = mean of rounds 2..N, teardown), the ratios the
targets name with PASS/FAIL, and what one ``flwr-clientapp``-like process
spends on each part (``clientapp_probe.py``). Writes everything as JSON
(``--out``, default ``experiments/bench/backends_results.json``).

Run:  python experiments/bench/backends.py                         (about 8 min on 2 cores)
      python experiments/bench/backends.py --repeats 2              (interleaved repeats)
      python experiments/bench/backends.py --modes flower-deploy --superexec-poll 1.0 --out /tmp/x.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BENCH = Path(__file__).resolve().parent
# The repository first (this folder's harmonize.py would shadow the harmonize package), this folder
# last (bare_app, clientapp_parts).
sys.path[:] = [str(ROOT), *(p for p in sys.path if Path(p or ".").resolve() != BENCH), str(BENCH)]

MODES = {  # mode: (what it runs, message exchanges per round)
    "simulator": ("SimulatorBackend (in process, vmapped, jitted round)", 0),
    "flower-sim": ("FlowerBackend mode=simulation (Ray, 2 actors)", 2),
    "bare-sim-1": ("bare Flower app, simulation, train only", 1),
    "bare-sim-2": ("bare Flower app, simulation, train + evaluate", 2),
    "flower-deploy": ("FlowerBackend mode=deployment (LocalDeployment, a warm worker per node)", 2),
    "flower-deploy-cold": ("FlowerBackend mode=deployment, no workers (each ClientApp works)", 2),
    "bare-deploy-1": ("bare Flower app, deployment, train only", 1),
    "bare-deploy-2": ("bare Flower app, deployment, train + evaluate", 2),
}
TARGETS = (  # (name, numerator mode, denominator mode, bound, "min" or "max")
    ("simulator >= 20x faster per round than Flower simulation", "flower-sim", "simulator", 20.0, "min"),
    ("Flower simulation within 2x of the bare app (2 exchanges)", "flower-sim", "bare-sim-2", 2.0, "max"),
    ("deployment no slower than the bare app (2 exchanges)", "flower-deploy", "bare-deploy-2", 1.0, "max"),
)
INFO_RATIOS = (  # like TARGETS, reported without a verdict
    ("Flower simulation vs bare app, 1 exchange", "flower-sim", "bare-sim-1"),
    ("deployment vs bare app, 1 exchange", "flower-deploy", "bare-deploy-1"),
    ("deployment without node workers vs the bare app (2 exchanges)", "flower-deploy-cold", "bare-deploy-2"),
    ("deployment: node workers vs none", "flower-deploy", "flower-deploy-cold"),
)
TIMELINES = (("ours", "flower-deploy"), ("ours-cold", "flower-deploy-cold"), ("bare", "bare-deploy-2"))
EXTRAS = ("parts",)  # where the time goes: one ClientApp process's parts (clientapp_parts.py)
WORKER_TIMEOUT = 900.0


def _data_and_spec(args: argparse.Namespace) -> tuple[Any, Any]:
    """The five-node MDS federation and DeepSurv FedAvg spec (configs' defaults, ``--local-epochs``)."""
    from fedjax_rhd.data.federated import SplitSpec, build_federated_data
    from fedjax_rhd.models import DeepSurvConfig
    from fedjax_rhd.sources import UseCase, load_use_case
    from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig
    from harmonize.guide import load_guide

    cohort = load_use_case(
        UseCase(name="mds", n_patients=args.n_patients),
        seed_data=0,
        data_root=args.data_root,
        real_data_root=None,
        progress=False,
    )
    split = SplitSpec("five", (0.45, 0.2, 0.15, 0.1, 0.1), seed=0)  # conf/split/five.yaml
    data = build_federated_data(cohort.table, load_guide("mds"), split)
    client = ClientConfig(learning_rate=2e-3, local_epochs=args.local_epochs)  # conf/strategy/fedavg.yaml
    spec = AlgorithmSpec("fedavg", "deepsurv", DeepSurvConfig(), data.num_features, client=client)
    return data, spec


def num_params(spec: Any) -> int:
    """How many floats the model's parameter pytree holds (the bare app's vector length)."""
    import jax
    import numpy as np

    from fedjax_rhd.strategies import build_model

    shapes = jax.eval_shape(build_model(spec).init, jax.random.key(0))
    return int(sum(np.prod(s.shape) for s in jax.tree.leaves(shapes)))


# ---- one measurement (a worker process) -------------------------------------------------------


def _measure_ours(mode: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from fedjax_rhd.federation.loop import TrainSchedule, run_federation
    from fedjax_rhd.jax_setup import enable_compilation_cache

    enable_compilation_cache()  # as the command-line app does; the worker's own empty folder
    data, spec = _data_and_spec(args)
    schedule = TrainSchedule(args.rounds, None, 0, 0)
    start = time.perf_counter()
    if mode == "simulator":
        from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig

        backend: Any = SimulatorBackend(SimulatorConfig(), data, spec)
    else:
        from fedjax_rhd.federation.flower.backend import FlowerBackend, FlowerConfig

        config = FlowerConfig(
            mode="simulation" if mode == "flower-sim" else "deployment",
            poll_interval=args.poll_interval,
            superexec_poll=args.superexec_poll,
            node_workers=mode != "flower-deploy-cold",
            workdir=str(workdir),
        )
        backend = FlowerBackend(config, data, spec)
    construct = time.perf_counter() - start
    try:
        result = run_federation(backend, schedule, progress=False)
    finally:
        start = time.perf_counter()
        if hasattr(backend, "close"):
            backend.close()
        teardown = time.perf_counter() - start
    steady = result.round_seconds if args.rounds > 1 else []
    return {
        "construct": construct,
        "first_round": result.first_round_seconds,
        "rounds": [result.first_round_seconds, *steady],
        "teardown": teardown,
        "val_loss_federated": [r["val_loss_federated"] for r in result.rounds],
    }


def _measure_bare(mode: str, args: argparse.Namespace, params: int, workdir: Path) -> dict[str, Any]:
    from bare_app.run import run_deployment, run_simulation
    from bare_app.server_app import BareSettings

    settings = BareSettings(
        rounds=args.rounds, exchanges=int(mode[-1]), num_params=params, local_epochs=args.local_epochs
    )
    if mode.startswith("bare-sim"):
        out = run_simulation(settings)
    else:
        out = run_deployment(settings, workdir, superexec_poll=args.bare_superexec_poll)
    ends = [out["nodes_ready"], *out["round_ends"]]
    rounds = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return {
        "construct": out["nodes_ready"] - out["flower_start"],
        "first_round": rounds[0],
        "rounds": rounds,
        "teardown": out["teardown"],
        "eval_loss": out["eval_loss"],
    }


def worker(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """One measurement of ``mode`` in this (fresh) process.

    Deployments run with Flower's DEBUG logs (timestamped; a few lines a second more than INFO),
    which ``deploy_timeline`` turns into the phases of each message exchange.
    """
    deployment = "deploy" in mode
    if deployment:
        os.environ["FLWR_LOG_LEVEL"] = "DEBUG"  # Flower's processes inherit it
    with tempfile.TemporaryDirectory(prefix="bench_work_") as tmp:
        workdir = Path(tmp)
        if mode.startswith("bare"):
            result = _measure_bare(mode, args, args.num_params, workdir)
        else:
            result = _measure_ours(mode, args, workdir)
        if deployment:
            from deploy_timeline import exchanges, summarize

            logs = workdir / ("flower/flower_logs" if mode.startswith("bare") else "flower_logs")
            result["timeline"] = summarize(exchanges(logs), final_train=not mode.startswith("bare"))
            result["status_checks"] = _count_lines(logs / "superlink.log", "ControlServicer.ListRuns")
    return result


def _count_lines(path: Path, text: str) -> int:
    """Lines of ``path`` that contain ``text`` (``flwr ls`` calls in the SuperLink's log)."""
    return sum(text in line for line in path.read_text(errors="replace").splitlines())


# ---- the driver ------------------------------------------------------------------------------


def _forwarded(args: argparse.Namespace) -> list[str]:
    return [
        f"--rounds={args.rounds}",
        f"--local-epochs={args.local_epochs}",
        f"--n-patients={args.n_patients}",
        f"--data-root={args.data_root}",
        f"--poll-interval={args.poll_interval}",
        f"--superexec-poll={args.superexec_poll}",
        f"--bare-superexec-poll={args.bare_superexec_poll}",
        f"--num-params={args.num_params}",
    ]


def wait_quiet(max_busy: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until the CPUs are at most ``max_busy`` % busy over 2 s.

    Other people's jobs on a shared 2-core machine slow every Flower process; the busy share seen
    just before a measurement is stored with it. Returns the last sample.
    """
    import psutil

    deadline = time.monotonic() + max_wait
    busy = psutil.cpu_percent(interval=2.0)
    while busy > max_busy and time.monotonic() < deadline:
        busy = psutil.cpu_percent(interval=2.0)
    return busy


def run_worker(mode: str, args: argparse.Namespace) -> dict[str, Any]:
    """Run ``worker(mode)`` in a fresh Python process with an empty compilation cache."""
    busy = wait_quiet(args.quiet_cpu, args.quiet_wait)
    with tempfile.TemporaryDirectory(prefix="bench_backends_") as tmp:
        out = Path(tmp) / "result.json"
        env = dict(os.environ, FEDJAX_RHD_JAX_CACHE=str(Path(tmp) / "jax_cache"))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        cmd = [sys.executable, __file__, f"--worker={mode}", f"--worker-out={out}", *_forwarded(args)]
        start = time.perf_counter()
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT)
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"{mode} failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
        result = json.loads(out.read_text())
        result["wall"] = time.perf_counter() - start
    result["cpu_busy_before"] = busy
    result["load_after"] = os.getloadavg()[0]
    return result


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over repeats; steady = mean of rounds 2..N within a repeat."""
    steady = [statistics.mean(r["rounds"][1:]) for r in runs if len(r["rounds"]) > 1]
    every = [s for r in runs for s in r["rounds"][1:]]
    out = {key: statistics.median(r[key] for r in runs) for key in ("construct", "first_round", "teardown")}
    out["startup_plus_first"] = out["construct"] + out["first_round"]
    out["steady"] = statistics.median(steady) if steady else float("nan")
    out["steady_repeats"] = steady
    out["steady_min"], out["steady_max"] = (min(every), max(every)) if every else (float("nan"),) * 2
    return out


def machine() -> dict[str, Any]:
    """This machine and the versions that matter."""
    import flwr
    import jax

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "jax": jax.__version__,
        "jax_backend": jax.default_backend(),
        "flwr": flwr.__version__,
        "load_average_at_start": os.getloadavg(),
    }


def _fmt(x: float, digits: int = 3) -> str:
    return "-" if x != x else f"{x:.{digits}f}"


def print_table(summary: dict[str, dict[str, Any]]) -> None:
    header = (
        f"{'mode':<15}{'exch':>5}{'construct':>11}{'1st round':>11}{'start+1st':>11}"
        f"{'steady/round':>14}{'  (min-max)':<20}{'teardown':>9}"
    )
    print(header)
    print("-" * len(header))
    for mode, s in summary.items():
        spread = f"  ({_fmt(s['steady_min'])}-{_fmt(s['steady_max'])})"
        print(
            f"{mode:<15}{MODES[mode][1]:>5}{_fmt(s['construct'], 2):>11}{_fmt(s['first_round'], 2):>11}"
            f"{_fmt(s['startup_plus_first'], 2):>11}{_fmt(s['steady'], 4):>14}{spread:<20}"
            f"{_fmt(s['teardown'], 2):>9}"
        )


def ratios(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The targets' ratios of steady seconds per round, with a verdict; informative ratios after them."""
    out = []
    for name, num, den, bound, kind in TARGETS:
        if num in summary and den in summary:
            r = summary[num]["steady"] / summary[den]["steady"]
            ok = r >= bound if kind == "min" else r <= bound
            want = f"{'>=' if kind == 'min' else '<='} {bound:g}"
            out.append({"target": name, "ratio": r, "want": want, "verdict": "PASS" if ok else "FAIL"})
    for name, num, den in INFO_RATIOS:
        if num in summary and den in summary:
            r = summary[num]["steady"] / summary[den]["steady"]
            out.append({"target": name, "ratio": r, "want": "", "verdict": "info"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5, help="rounds per run (same for every mode)")
    parser.add_argument("--local-epochs", type=int, default=5, help="full-batch local steps per round")
    parser.add_argument("--n-patients", type=int, default=4427, help="simulated MDS cohort size")
    parser.add_argument("--modes", nargs="*", default=[*MODES, *EXTRAS], choices=[*MODES, *EXTRAS])
    parser.add_argument("--repeats", type=int, default=1, help="interleaved repeats of every mode")
    parser.add_argument("--data-root", default=os.environ.get("FEDJAX_RHD_DATA_ROOT", "data"))
    parser.add_argument("--poll-interval", type=float, default=0.05, help="FlowerConfig.poll_interval")
    parser.add_argument("--superexec-poll", type=float, default=0.25, help="FlowerConfig.superexec_poll")
    parser.add_argument(
        "--bare-superexec-poll", type=float, default=1.0, help="the bare app's (Flower's default: 1 s)"
    )
    parser.add_argument(
        "--quiet-cpu", type=float, default=30.0, help="wait until the CPUs are at most this %% busy"
    )
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="but at most this many seconds")
    parser.add_argument("--out", type=Path, default=BENCH / "backends_results.json")
    parser.add_argument("--worker", choices=list(MODES), help=argparse.SUPPRESS)
    parser.add_argument("--worker-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--num-params", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker is not None:
        args.worker_out.write_text(json.dumps(worker(args.worker, args)))
        return

    info = machine()
    print(
        f"machine: {info['platform']}, {info['cpus']} cpus, python {info['python']}, "
        f"jax {info['jax']} ({info['jax_backend']}), flwr {info['flwr']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in info['load_average_at_start'])}"
    )
    started = time.perf_counter()
    data, spec = _data_and_spec(args)  # builds the cohort once; the workers read it from data_root
    args.num_params = num_params(spec)
    print(
        f"five-node MDS: train rows {list(data.n_train)}, {data.num_features} features; DeepSurv "
        f"{args.num_params} parameters; FedAvg, {args.local_epochs} local epochs, {args.rounds} rounds"
    )
    modes = [m for m in args.modes if m in MODES]
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for repeat in range(args.repeats):
        for mode in modes:
            result = run_worker(mode, args)
            runs[mode].append(result)
            rounds = ", ".join(f"{s:.3f}" for s in result["rounds"])
            print(
                f"  [{repeat + 1}/{args.repeats}] {mode:<14} construct {result['construct']:.2f} s, "
                f"rounds {rounds} (CPUs {result['cpu_busy_before']:.0f}% busy before, "
                f"load {result['load_after']:.1f} after"
                + (f"; {result['status_checks']} flwr ls" if "status_checks" in result else "")
                + ")",
                flush=True,
            )
    summary = {m: summarize(r) for m, r in runs.items()}
    print(f"\nseconds (median of {args.repeats} repeat(s); steady = mean of rounds 2..{args.rounds}):")
    print_table(summary)
    verdicts = ratios(summary)
    if verdicts:
        print("\nratios of steady seconds per round:")
    for v in verdicts:
        print(f"  {v['target']:<60} {v['ratio']:8.2f}  {v['want']:<6} {v['verdict']}")
    timelines = {who: runs[mode][0]["timeline"] for who, mode in TIMELINES if runs.get(mode)}
    if timelines:
        from deploy_timeline import print_timeline

        print_timeline(timelines)
    parts = None
    if "parts" in args.modes:
        from clientapp_parts import measure_parts, print_parts

        parts = measure_parts(data, spec, args.num_params, args.local_epochs)
        print_parts(parts)
    payload = {
        "machine": info,
        "command": " ".join(["python", "experiments/bench/backends.py", *sys.argv[1:]]),
        "settings": {
            k: getattr(args, k)
            for k in ("rounds", "local_epochs", "n_patients", "repeats", "poll_interval", "superexec_poll")
        }
        | {"bare_superexec_poll": args.bare_superexec_poll, "num_params": args.num_params},
        "runs": runs,
        "summary": summary,
        "ratios": verdicts,
        "clientapp_parts": parts,
        "total_seconds": time.perf_counter() - started,
    }
    args.out.write_text(json.dumps(payload, indent=1) + "\n")
    print(f"\n{time.perf_counter() - started:.0f} s in all; results in {args.out}")


if __name__ == "__main__":
    main()
