"""The study's survival table (its Table 1) on the simulated cohorts, in one command.

For every ``use_cases`` entry of the params file (default ``params.yaml``, i.e.
``conf/pipeline.yaml`` composed): build the registered dataset once (simulated export ->
FHIR R5 -> tables), run the federated strategy and the baselines over both scenarios and
every split seed as Hydra multiruns with the joblib launcher, then write one report over
all use cases (table.md / table.csv / report.html / figures) and the wall time.

    python experiments/survival_table/run.py                       # -> multirun/survival_table
    python experiments/survival_table/run.py --jobs 2 --out multirun/st --only mds

It runs the same functions as ``dvc repro`` (fedjax_rhd/pipeline.py), without DVC.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

from fedjax_rhd import pipeline
from fedjax_rhd.report import sentence, write_report
from fedjax_rhd.report.sweep import git_commit, provenance


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path(pipeline.PARAMS_FILE))
    parser.add_argument("--out", type=Path, default=Path("multirun/survival_table"))
    parser.add_argument("--jobs", type=int, default=None, help="parallel runs (default: launcher.n_jobs)")
    parser.add_argument("--only", nargs="*", default=None, help="use_cases entries to run (default: all)")
    args = parser.parse_args(argv)

    study, entries = pipeline.load_params(args.params)
    if args.jobs is not None:
        study = dataclasses.replace(study, n_jobs=args.jobs)
    if args.only:
        entries = [e for e in entries if e.key in args.only]
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    for entry in entries:
        t = time.perf_counter()
        data_root = args.out / "data"
        if entry.simulated:
            # Built once here, before the parallel jobs, which then all reuse it.
            from harmonize.datasets import load_or_build_dataset
            from harmonize.guide import load_guide

            load_or_build_dataset(entry.dataset_spec(), load_guide(entry.use_case), data_root)
        timing[f"{entry.key}_dataset_s"] = time.perf_counter() - t
        t = time.perf_counter()
        pipeline.run_sweeps(study, entry, args.out / entry.key, data_root)
        timing[f"{entry.key}_runs_s"] = time.perf_counter() - t
    t = time.perf_counter()
    report = write_report([args.out / e.key for e in entries], args.out / "report", n_boot=study.n_boot)
    timing["report_s"] = time.perf_counter() - t
    timing["total_s"] = time.perf_counter() - t0
    for row in report.rows:
        print(f"- {sentence(row, 0.02)}")
    info = {
        "produced_by": provenance("experiments/survival_table/run.py", argv),
        "commit": git_commit(),
        "timing": timing,
        "n_jobs": study.n_jobs,
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "runs": len(report.runs),
        "use_cases": [e.key for e in entries],
    }
    (args.out / "report" / "timing.json").write_text(json.dumps(info, indent=2) + "\n")
    print(f"{len(report.runs)} runs in {timing['total_s']:.0f} s; report in {args.out / 'report'}")


if __name__ == "__main__":
    main()
