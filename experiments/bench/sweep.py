"""The survival study's sweep, timed side by side: this checkout, a baseline checkout, one run per process.

Issue 19's sweep benchmark. Three ways of running the same jobs (``experiments/survival_table``'s
study, or a subset of it: ``--only`` use cases, ``--seeds`` split seeds), one after the other in
this one invocation, each with its own empty JAX compilation cache:

* ``current``: ``experiments/survival_table/run.py`` of this checkout (datasets, every sweep with
  the joblib launcher, the report);
* ``baseline``: the same script of another checkout (``--baseline-tree``, e.g. a ``git worktree``
  at the commit before a change), with its own data folder, so its datasets are built afresh too;
* ``cold``: every job of ``current`` again, each in its own ``python -m fedjax_rhd`` process with
  the same overrides (``.hydra/overrides.yaml``), one after the other: the runs launched one by
  one (a fresh process each; the compilation cache starts empty and fills as they go).

It prints, per way: wall time, runs per minute, the runs' summed compile and round seconds, the
per-run overhead (worker-seconds outside the training rounds per run), the machine's cores and
load average before and after; then the ratios and whether every run's ``final`` block and rounds
are bit-identical across the ways. Writes ``sweep.csv``, ``sweep.json`` and ``sweep.png`` into ``--out``.

    python experiments/bench/sweep.py --baseline-tree /tmp/base --only mds mm --seeds 0 --out /tmp/sw
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
STUDY = "experiments/survival_table/run.py"


def subset_params(params: Path, out: Path, only: Sequence[str] | None, seeds: Sequence[int] | None) -> Path:
    """``params`` with only the ``only`` use cases and the ``seeds`` split seeds (None: all), into ``out``."""
    doc = yaml.safe_load(params.read_text())
    if only:
        unknown = sorted(set(only) - set(doc["use_cases"]))
        if unknown:
            raise SystemExit(f"--only: no use case {unknown} in {params}; it has {sorted(doc['use_cases'])}")
        doc["use_cases"] = {k: v for k, v in doc["use_cases"].items() if k in only}
    if seeds is not None:
        doc["study"]["seeds"] = [int(s) for s in seeds]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def _env(tree: Path, jax_cache: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree), "FEDJAX_RHD_JAX_CACHE": str(jax_cache)}


def run_study(tree: Path, params: Path, out: Path, jax_cache: Path | None = None) -> float:
    """``tree``'s survival-table script on ``params`` into ``out``; returns wall seconds.

    ``jax_cache``: the compilation cache to use (default: an empty one, ``out/jax_cache``).
    """
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, STUDY, "--params", str(params), "--out", str(out)],
        cwd=tree, env=_env(tree, jax_cache or out / "jax_cache"), check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    return time.perf_counter() - started


def run_one_by_one(tree: Path, runs_from: Path, out: Path) -> float:
    """Every job under ``runs_from`` again, each in its own process (same overrides); returns wall seconds."""
    started = time.perf_counter()
    for overrides_file in sorted(runs_from.rglob(".hydra/overrides.yaml")):
        job = overrides_file.parent.parent
        overrides = yaml.safe_load(overrides_file.read_text())
        run_dir = out / job.relative_to(runs_from)
        subprocess.run(
            [sys.executable, "-m", "fedjax_rhd", *overrides, f"hydra.run.dir={run_dir}"],
            cwd=tree, env=_env(tree, out / "jax_cache"), check=True, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
    return time.perf_counter() - started


def run_times(folder: Path) -> dict[str, dict[str, Any]]:
    """Each run's ``timing`` and what it computed, keyed by its folder relative to ``folder``."""
    out = {}
    for path in sorted(folder.rglob("results.json")):
        if "report" in path.relative_to(folder).parts:
            continue
        doc = json.loads(path.read_text())
        rel = path.parent.relative_to(folder).as_posix()
        out[rel] = {
            "timing": doc["timing"],
            "computed": json.dumps([doc["final"], doc["rounds"]], sort_keys=True),
        }
    return out


def summarise(
    name: str, wall: float, runs_wall: float, workers: int, runs: dict[str, dict[str, Any]]
) -> dict:
    """One way's figures: wall, runs per minute, compile and round seconds, per-run overhead.

    Args:
        wall: the whole command's seconds; ``runs_wall``: the part spent running jobs.
        workers: jobs at once (the joblib launcher's ``n_jobs``; 1 for one process per run).
    """
    n = len(runs)
    compile_s = sum(r["timing"]["compile_seconds"] for r in runs.values())
    rounds_s = sum(sum(r["timing"]["round_seconds"]) for r in runs.values())
    inside_s = sum(r["timing"]["total_seconds"] for r in runs.values())
    training_s = rounds_s - compile_s  # the rounds' own work; the first round's compile is overhead
    return {
        "way": name,
        "runs": n,
        "wall_s": wall,
        "runs_wall_s": runs_wall,
        "runs_per_min": 60.0 * n / runs_wall if runs_wall else float("nan"),
        "sum_inside_runs_s": inside_s,
        "sum_compile_s": compile_s,
        "compile_share": compile_s / (runs_wall * workers) if runs_wall else float("nan"),
        "sum_training_s": training_s,
        "overhead_per_run_s": (runs_wall * workers - training_s) / n if n else float("nan"),
        "inside_overhead_per_run_s": (inside_s - training_s) / n if n else float("nan"),
    }


def _study_runs_wall(folder: Path) -> float:
    timing = json.loads((folder / "report" / "timing.json").read_text())["timing"]
    return sum(v for k, v in timing.items() if k.endswith("_runs_s"))


def identical(ways: dict[str, dict[str, dict[str, Any]]], reference: str) -> dict[str, bool]:
    """Whether each way's runs computed exactly what ``reference``'s did (same runs, same bits)."""
    ref = {k: v["computed"] for k, v in ways[reference].items()}
    return {
        name: {k: v["computed"] for k, v in runs.items()} == ref
        for name, runs in ways.items()
        if name != reference
    }


def _children_cpu() -> float:
    """CPU seconds (user + system) of every finished child process so far: the cost a busy machine's
    wall time hides (waiting for a core is not work)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(
    argv: list[str] | None = None, *, study: Callable = run_study, one_by_one: Callable = run_one_by_one
) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--only", nargs="*", default=None, help="use_cases entries (default: all)")
    parser.add_argument(
        "--seeds", nargs="*", type=int, default=None, help="split seeds (default: the study's)"
    )
    parser.add_argument("--baseline-tree", type=Path, default=None, help="a checkout to compare against")
    parser.add_argument("--no-cold", action="store_true", help="skip the one-process-per-run way")
    parser.add_argument(
        "--warm-from", type=Path, default=None,
        help="an earlier --out: each way reuses that run's compilation cache (<dir>/<way>/jax_cache)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("multirun/bench_sweep"))
    args = parser.parse_args(argv)

    params = subset_params(args.params, args.out / "params.yaml", args.only, args.seeds)
    workers = int(yaml.safe_load(params.read_text()).get("launcher", {}).get("n_jobs", 1))
    plan = [("current", ROOT)] + ([("baseline", args.baseline_tree.resolve())] if args.baseline_tree else [])
    rows, ways, loads = [], {}, {}
    for name, tree in plan:
        load_before, cpu = os.getloadavg(), _children_cpu()
        cache = args.warm_from / name / "jax_cache" if args.warm_from else None
        wall = study(tree, params, args.out / name, cache)
        loads[name] = (load_before, os.getloadavg(), _children_cpu() - cpu)
        ways[name] = run_times(args.out / name)
        rows.append(summarise(name, wall, _study_runs_wall(args.out / name), workers, ways[name]))
    if not args.no_cold:
        load_before, cpu = os.getloadavg(), _children_cpu()
        wall = one_by_one(ROOT, args.out / "current", args.out / "cold")
        loads["cold"] = (load_before, os.getloadavg(), _children_cpu() - cpu)
        ways["cold"] = run_times(args.out / "cold")
        rows.append(summarise("cold", wall, wall, 1, ways["cold"]))
    for row in rows:
        before, after, cpu = loads[row["way"]]
        row["cpu_s"], row["load_before"], row["load_after"] = cpu, round(before[0], 2), round(after[0], 2)
    by = {r["way"]: r for r in rows}
    ratios = {}
    if "baseline" in by:
        ratios["baseline wall / current wall"] = by["baseline"]["wall_s"] / by["current"]["wall_s"]
        ratios["baseline runs / current runs"] = by["baseline"]["runs_wall_s"] / by["current"]["runs_wall_s"]
        if by["current"]["cpu_s"] > 0:
            ratios["baseline CPU / current CPU"] = by["baseline"]["cpu_s"] / by["current"]["cpu_s"]
    if "cold" in by:
        ratios["one-by-one runs / current runs"] = by["cold"]["runs_wall_s"] / by["current"]["runs_wall_s"]
    same = identical(ways, "current")
    _print(rows, ratios, same, workers)
    with (args.out / "sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.out / "sweep.png")
    info = {"rows": rows, "ratios": ratios, "identical": same, "cpus": os.cpu_count(), "workers": workers}
    (args.out / "sweep.json").write_text(json.dumps(info, indent=1) + "\n")
    return info


def plot(rows: list[dict], path: Path) -> None:
    """Wall and CPU seconds per way, side by side, with each way's load average in its label."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    x = range(len(rows))
    ax.bar([i - 0.2 for i in x], [r["wall_s"] for r in rows], width=0.4, label="wall s")
    ax.bar([i + 0.2 for i in x], [r["cpu_s"] for r in rows], width=0.4, label="CPU s (user + sys)")
    ax.set_xticks(list(x), [f"{r['way']}\n{r['runs']} runs, load {r['load_before']}" for r in rows])
    ax.set_ylabel("seconds")
    ax.set_title(f"The study's sweep, {os.cpu_count()} cores")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _print(rows: list[dict], ratios: dict[str, float], same: dict[str, bool], workers: int) -> None:
    print(f"machine: {os.cpu_count()} cores; joblib workers {workers}; load average = 1-minute, before/after")
    head = ("way", "runs", "wall s", "CPU s", "runs s", "runs/min", "compile s", "compile %", "training s",
            "overhead/run s", "in-run overhead/run s", "load")  # fmt: skip
    print(" | ".join(head))
    for r in rows:
        cells = [r["way"], str(r["runs"])]
        cells += [f"{r[k]:.1f}" for k in ("wall_s", "cpu_s", "runs_wall_s", "runs_per_min", "sum_compile_s")]
        cells += [f"{100 * r['compile_share']:.1f}", f"{r['sum_training_s']:.1f}"]
        cells += [f"{r['overhead_per_run_s']:.2f}", f"{r['inside_overhead_per_run_s']:.2f}"]
        print(" | ".join([*cells, f"{r['load_before']}/{r['load_after']}"]))
    for name, value in ratios.items():
        print(f"{name}: {value:.2f}x")
    for name, ok in same.items():
        print(f"{name}: every run's final block and rounds {'identical' if ok else 'DIFFER'} to current's")


if __name__ == "__main__":
    main()
