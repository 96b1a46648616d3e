"""One warm command-line run, timed: with and without the executable store, side by side.

Issue 19's "a warm centralised DeepSurv run on real IWG-PM MDS no slower than pycox's fit (0.6 s)
inside the run, and under 3 s of wall time with process start". Each repeat launches
``python -m fedjax_rhd use_case=<u> strategy=centralized progress=false`` as a user would, in a
fresh process, and reads ``timing.total_seconds`` (inside the run) from its ``results.json``; the
wall time is the process's, start-up and exit included. Modes, interleaved per repeat so that the
machine's drift hits both alike:

* ``store``: the default (JAX's persistent cache and ``fedjax_rhd.executables``' stored programs);
* ``cache-only``: ``FEDJAX_RHD_EXECUTABLE_STORE=0``, JAX's persistent cache alone;
* ``baseline`` (with ``--baseline-tree``): the same command run by another checkout's code, with
  its own caches (e.g. the commit before a change, from ``git archive``).

Both caches are warmed by one unrecorded run of each mode first (dataset built, programs
compiled). Writes ``warm_run.csv`` and ``warm_run.png`` into ``--out``; prints the table, the
machine, and the target lines.

    python experiments/bench/warm_run.py --out /tmp/warm --repeats 5 -- data_root=<built data>
    python experiments/bench/warm_run.py --use-case mds --out /tmp/warm   # no shared data needed
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cindex import cpu_name  # noqa: E402  (the machine's name, as the other benchmarks print it)

MODES = {"store": {}, "cache-only": {"FEDJAX_RHD_EXECUTABLE_STORE": "0"}}
RUN_TIMEOUT_S = 600  # a warm run takes seconds; a hung one must not hang the benchmark
PYCOX_FIT_SECONDS = 0.6  # the figure (pycox is not installed here: it needs PyTorch)


def one_run(
    use_case: str, extra: list[str], env: dict[str, str], out: Path, tree: Path = ROOT
) -> tuple[float, float]:
    """(wall seconds of the process, the run's own ``timing.total_seconds``), the code of ``tree``."""
    command = [
        sys.executable, "-m", "fedjax_rhd", f"use_case={use_case}", "strategy=centralized",
        "progress=false", f"hydra.run.dir={out}", *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    try:
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, cwd=tree, timeout=RUN_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        raise SystemExit(f"run did not finish in {RUN_TIMEOUT_S} s: {' '.join(command)}") from None
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"run failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
    inside = json.loads((out / "results.json").read_text())["timing"]["total_seconds"]
    return wall, inside


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--use-case", default="mds_iwgpm")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--jax-cache", type=Path, help="the caches' folder (default: a fresh one under --out)"
    )
    parser.add_argument(
        "--baseline-tree", type=Path, help="a checkout of other code (e.g. `git archive` of an older commit)"
    )
    parser.add_argument("overrides", nargs="*", help="after --: more Hydra overrides, e.g. data_root=...")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.jax_cache or Path(tempfile.mkdtemp(prefix="jaxcache_", dir=args.out))
    base = {**os.environ, "FEDJAX_RHD_JAX_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    envs = {mode: ({**base, **changes}, ROOT) for mode, changes in MODES.items()}
    if args.baseline_tree:  # its own caches: the two codes never share a program
        tree = args.baseline_tree.resolve()
        baseline_cache = Path(tempfile.mkdtemp(prefix="jaxcache_baseline_", dir=args.out))
        baseline_env = {**base, "FEDJAX_RHD_JAX_CACHE": str(baseline_cache), "PYTHONPATH": str(tree)}
        envs["baseline"] = (baseline_env, tree)
    for mode, (env, tree) in envs.items():  # warm: dataset, compiled programs, stored programs
        one_run(args.use_case, args.overrides, env, args.out / f"warm_{mode}", tree)
    rows = []
    for repeat in range(args.repeats):
        for mode, (env, tree) in envs.items():
            wall, inside = one_run(args.use_case, args.overrides, env, args.out / f"{mode}_{repeat}", tree)
            rows.append({"mode": mode, "repeat": repeat, "wall_s": wall, "inside_s": inside})
            print(f"  {mode:<11} repeat {repeat}: wall {wall:.2f} s, inside {inside:.3f} s", flush=True)
    with (args.out / "warm_run.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    machine = f"{cpu_name()}, {os.cpu_count()} cores, {platform.platform()}"
    print(f"\nmachine: {machine}, python {platform.python_version()}")
    print(f"use case {args.use_case}, strategy=centralized, {args.repeats} repeats per mode, interleaved")
    print(f"{'mode':<12}{'wall median':>13}{'wall min-max':>16}{'inside median':>15}{'inside min-max':>18}")
    medians = {}
    for mode in envs:
        walls = [r["wall_s"] for r in rows if r["mode"] == mode]
        insides = [r["inside_s"] for r in rows if r["mode"] == mode]
        medians[mode] = (statistics.median(walls), statistics.median(insides))
        print(
            f"{mode:<12}{medians[mode][0]:>12.2f}s{min(walls):>8.2f}-{max(walls):.2f}s"
            f"{medians[mode][1]:>14.3f}s{min(insides):>9.3f}-{max(insides):.3f}s"
        )
    wall, inside = medians["store"]
    slow_wall, slow_inside = medians["cache-only"]
    print(f"cache-only / store: wall {slow_wall / wall:.2f}x, inside {slow_inside / inside:.2f}x")
    if "baseline" in medians:
        base_wall, base_inside = medians["baseline"]
        print(f"baseline / store: wall {base_wall / wall:.2f}x, inside {base_inside / inside:.2f}x")
    verdict = "met" if inside <= PYCOX_FIT_SECONDS else "not met"
    print(f"inside the run (median) {inside:.3f} s vs pycox's fit {PYCOX_FIT_SECONDS} s: {verdict}")
    print(f"wall with process start (median) {wall:.2f} s vs 3 s: {'met' if wall < 3.0 else 'not met'}")
    plot(rows, list(envs), args.out / "warm_run.png")


def plot(rows: list[dict], modes: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(8, 3.2))
    for ax, key, target, title in (
        (axes[0], "wall_s", 3.0, "wall, process start included"),
        (axes[1], "inside_s", PYCOX_FIT_SECONDS, "inside the run"),
    ):
        for i, mode in enumerate(modes):
            values = [r[key] for r in rows if r["mode"] == mode]
            ax.scatter([i] * len(values), values, alpha=0.7)
        ax.axhline(target, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(modes)), modes)
        ax.set_ylabel("seconds")
        ax.set_title(title)
        ax.set_ylim(bottom=0)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
