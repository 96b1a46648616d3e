"""The study's comparison (issue 18 item 5): every generator under every protocol, in one table.

Usage:
    python experiments/synthetic/comparison.py run --out <dir> [--use-cases mds mds_iwgpm]
        [--generators vae_bgm bn ctgan] [--protocols centralized federated sd_sharing local]
        [--seeds 0 1 2 3 4] [--jobs 2] [--fidelity-every 5] [--dry-run] [-- <extra overrides>]
    python experiments/synthetic/comparison.py table <dir> [--alpha 0.05]

``run`` launches one Hydra multirun per (use case, generator, protocol) cell over the split seeds, into
``<dir>/<use case>/<generator>/<protocol>``, running only the seeds without a ``results.json`` yet
(so an interrupted study resumes where it stopped). The protocols, per generator:

* ``centralized``: the pooled rows (the reference the federation is measured against);
* ``federated``: FedAvg for the gradient-trained generators (``vae_bgm``, ``ctgan``), the two-step
  protocol for the Bayesian network (``bn_two_step``);
* ``sd_sharing``: each node trains alone and sends the rows its own privacy gate passed; the pool is
  the synthetic table;
* ``local``: each node alone (every node's generator is validated).

Every generator of one use case samples the same number of rows, the federation's training patients
(read from the first finished centralised run), so that sample size does not confound the comparison;
VAE-BGM and CTGAN use their study budgets (``+experiment=vae_bgm``, ``+experiment=ctgan``) and the
iterative protocols score fidelity every ``--fidelity-every`` rounds for the per-round figure.

``table`` writes ``<dir>/report``: ``experiments/synthetic/figure3.py``'s table, figures and paired
comparisons over every cell, then ``comparison.md`` with what that table lacks: wall time per run, and
the study's log-rank check (for each key group of the validation report, ``TP53`` and
``ipssr_cyto``: does the synthetic table's log-rank test reach the same conclusion at ``alpha`` as the
real training rows'?), counted over split seeds.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

GENERATORS = {  # generator: (config overrides, its federated protocol)
    "vae_bgm": (["+experiment=vae_bgm"], "fedavg"),
    "ctgan": (["+experiment=ctgan"], "fedavg"),
    "bn": (["model=bn"], "bn_two_step"),
}
PROTOCOLS = ("centralized", "federated", "sd_sharing", "local")


def strategy_of(generator: str, protocol: str) -> str:
    """The ``strategy=`` a protocol means for ``generator``."""
    return GENERATORS[generator][1] if protocol == "federated" else protocol


def cell_overrides(
    generator: str, protocol: str, *, use_case: str, seeds: list[int], fidelity_every: int, n_synthetic: int
) -> list[str]:
    """The multirun's overrides for one cell (without the sweep folder)."""
    strategy = strategy_of(generator, protocol)
    out = [*GENERATORS[generator][0], f"strategy={strategy}", f"use_case={use_case}", "split=three"]
    out.append("seed.split=" + ",".join(str(s) for s in seeds))
    out.append(f"model.n_synthetic={n_synthetic}")
    # per-round fidelity: only where there are rounds, and not under sd_sharing (no generator reaches
    # the manager before the gate)
    iterative = generator != "bn" and strategy != "sd_sharing"
    out.append(f"fidelity_every={fidelity_every if iterative else 0}")
    return [*out, "progress=false"]


def missing_seeds(cell: Path, seeds: list[int]) -> list[int]:
    """The seeds of ``cell`` without a results.json yet (an interrupted study runs only these)."""
    done = set()
    for path in cell.rglob("results.json"):
        done.add(int(json.loads(path.read_text())["config"]["seed"]["split"]))
    return [s for s in seeds if s not in done]


def training_patients(out: Path, use_case: str) -> int | None:
    """The federation's training patients of ``use_case``: a finished centralised run's synthetic rows."""
    for path in sorted((out / use_case).glob("*/centralized/**/results.json")):
        res = json.loads(path.read_text())
        if res["config"]["model"]["n_synthetic"] == 0:
            return int(res["final"]["generative"]["synthetic"]["n"])
        return int(res["config"]["model"]["n_synthetic"])
    return None


def run(args: argparse.Namespace) -> None:
    for use_case in args.use_cases:
        # centralised first: its run says how many rows every generator of this use case samples
        for generator in args.generators:
            for protocol in sorted(args.protocols, key=lambda p: p != "centralized"):
                cell = args.out / use_case / generator / protocol
                seeds = missing_seeds(cell, args.seeds)
                if not seeds:
                    print(f"done     {cell}")
                    continue
                n = training_patients(args.out, use_case) if protocol != "centralized" else 0
                if n is None:
                    n = 0  # no centralised run yet: each generator samples its own training patients
                overrides = cell_overrides(
                    generator, protocol, use_case=use_case, seeds=seeds,
                    fidelity_every=args.fidelity_every, n_synthetic=n,
                )  # fmt: skip
                command = [
                    sys.executable, "-m", "fedjax_rhd", "-m", *overrides, *args.extra,
                    f"hydra.sweep.dir={cell}", "hydra/launcher=joblib", f"hydra.launcher.n_jobs={args.jobs}",
                ]  # fmt: skip
                print(("dry-run  " if args.dry_run else "run      ") + " ".join(command[2:]), flush=True)
                if not args.dry_run and subprocess.run(command, cwd=ROOT).returncode != 0:
                    # the finished seeds stay; the same command resumes from the first missing one
                    raise SystemExit(f"comparison.py: the cell {cell} failed (log above); rerun to resume")


def log_rank_and_time(root: Path, alpha: float) -> list[str]:
    """Markdown table: per (use case, generator, protocol, trained on) wall time and log-rank agreement."""
    cells: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(root.rglob("results.json")):
        res = json.loads(path.read_text())
        final = res.get("final", {})
        if final.get("kind") != "generative":
            continue
        cfg = res["config"]
        gen = final["generative"]
        for block in [gen, *gen.get("nodes", [])]:
            names = (cfg["use_case"]["name"], cfg["model"]["name"], cfg["strategy"]["name"])
            key = (*names, block["trained_on"])
            cells[key]["seconds"].append(res["timing"]["total_seconds"])
            val = block.get("validation")
            if not val:
                continue
            report_path = path.parent / val["report"]
            if not report_path.is_file():
                raise SystemExit(f"comparison.py: {path} names {val['report']}, which is not beside it")
            report = json.loads(report_path.read_text())
            for group, km in report["utility"]["kaplan_meier"].items():
                p_real, p_syn = km["logrank_real"]["p_value"], km["logrank_synthetic"]["p_value"]
                cells[key][group].append((p_real < alpha) == (p_syn < alpha))
    groups = sorted({g for c in cells.values() for g in c if g != "seconds"})
    lines = [
        "| use case | generator | protocol | trained on | run s (min-max) | "
        + " | ".join(f"log-rank by {g}: same conclusion" for g in groups)
        + " |",
        "|---" * (5 + len(groups)) + "|",
    ]
    for key in sorted(cells):
        cell = cells[key]
        seconds = np.asarray(cell["seconds"])
        agree = [f"{sum(cell[g])}/{len(cell[g])}" if cell[g] else "–" for g in groups]
        timing = f"{seconds.mean():.0f} ({seconds.min():.0f}-{seconds.max():.0f})"
        lines.append("| " + " | ".join([*key, timing, *agree]) + " |")
    return lines


def table(args: argparse.Namespace) -> None:
    import figure3  # noqa: PLC0415  (this folder's script)

    out = args.dir / "report"
    figure3.main([str(args.dir), "--out", str(out)])
    text = [
        "# The study's comparison: wall time and the log-rank check",
        "",
        f"`python experiments/synthetic/comparison.py table {args.dir}`. A run's wall time covers",
        "training, the generator's fit, sampling and validation. Log-rank: seeds (and, under `local`, nodes)",
        "whose synthetic table's log-rank test by the group reaches the same conclusion at alpha",
        f"{args.alpha} as the real training rows'.",
        "",
        *log_rank_and_time(args.dir, args.alpha),
        "",
    ]
    (out / "comparison.md").write_text("\n".join(text))
    print("\n".join(text))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="launch the study's multiruns (skips finished cells)")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--use-cases", nargs="+", default=["mds", "mds_iwgpm"])
    r.add_argument("--generators", nargs="+", choices=sorted(GENERATORS), default=["vae_bgm", "bn", "ctgan"])
    r.add_argument("--protocols", nargs="+", choices=PROTOCOLS, default=list(PROTOCOLS))
    r.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    r.add_argument("--jobs", type=int, default=2, help="joblib workers per multirun")
    r.add_argument("--fidelity-every", type=int, default=5)
    r.add_argument("--dry-run", action="store_true")
    r.add_argument("extra", nargs="*", help="more Hydra overrides for every cell (after --)")
    t = sub.add_parser("table", help="the table, figures and the log-rank check of a finished study")
    t.add_argument("dir", type=Path)
    t.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args(argv)
    (run if args.command == "run" else table)(args)


if __name__ == "__main__":
    main()
