"""Behaviour unchanged by a restructuring: snapshot runs on two checkouts and compare them.

``snapshot`` runs the command-line app (a real subprocess, so it works on any checkout
whatever its internal API) for the default run, one short run per use case, one per
strategy and model, and a fault-injection run; each run builds its dataset in a fresh
data root, so the dataset ids are rebuilt too. ``compare`` then checks that every
dataset id and every ``results.json`` metric is identical (timing, environment and
the resolved config excepted; config differences are listed, as they are deliberate),
that every registered dataset (``data/datasets/*/dataset.json``) has the same content id,
and, given the two survival tables (``table.csv``), that every cell is equal.

    python experiments/restructure/compare.py snapshot OUT [--checkout DIR]
    python experiments/restructure/compare.py compare BEFORE AFTER [--tables A.csv B.csv]

``--checkout DIR`` runs another checkout's code (e.g. a ``git worktree`` of the commit
before the change) with this interpreter: its folder goes first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

SHORT = ["strategy.rounds=3", "strategy.patience=null", "bootstrap=200", "progress=false"]

# name -> overrides. Real cohorts are skipped when ../shared/data is absent.
RUNS: dict[str, list[str]] = {
    "default": ["progress=false"],
    **{
        f"use_case_{u}": [f"use_case={u}", *SHORT]
        for u in ("mds", "cmml", "aml", "mm", "mds_dialects", "gbsg2_csv")
    },
    "use_case_mds_wsi": ["use_case=mds_wsi", "model=savae", *SHORT],
    "use_case_mds_treatment": ["use_case=mds", "use_case.treatment=true", "use_case.n_patients=900", *SHORT],
    **{
        f"real_{u}": [f"use_case={u}", "split=natural" if u == "aml_beat" else "split=five", *SHORT]
        for u in ("mds_iwgpm", "cmml_iwgpm", "aml_beat")
    },
    **{
        f"strategy_{s}": [f"strategy={s}", "split=five", *SHORT]
        for s in ("fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad", "centralized", "local")
    },
    "model_coxph": ["model=coxph", *SHORT],
    "model_savae": ["model=savae", *SHORT],
    "worst_scenario": ["scenario=worst", "split=five", *SHORT],
    "referral_case_mix": ["split=three_referral", *SHORT],
    "finetune": ["strategy.finetune_epochs=2", *SHORT],
}

# Keys of results.json that legitimately differ between two runs of the same computation.
VOLATILE = {"timing", "env", "config"}


def _run_one(name: str, overrides: list[str], out: Path, checkout: Path | None) -> dict[str, Any]:
    env = dict(os.environ)
    cwd = Path.cwd()
    if checkout is not None:
        env["PYTHONPATH"] = f"{checkout}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env["FEDJAX_RHD_CONF"] = str(checkout / "conf")
        cwd = checkout
    run_dir = out / name
    command = [
        sys.executable,
        "-m",
        "fedjax_rhd",
        *overrides,
        f"data_root={out / 'data'}",
        f"hydra.run.dir={run_dir}",
    ]
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    status = {"name": name, "overrides": overrides, "returncode": proc.returncode, "seconds": seconds}
    if proc.returncode != 0:
        status["stderr_tail"] = proc.stderr[-2000:]
    print(f"{name:28s} rc={proc.returncode} {seconds:6.1f}s", flush=True)
    return status


def _gbsg2_mapping(out: Path) -> Path:
    """The documented user-table example: lifelines' copy of GBSG2 beside the mapping (docs/user_csv.md)."""
    import shutil

    import lifelines

    folder = out / "gbsg2"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(lifelines.__file__).parent / "datasets" / "gbsg2.csv", folder / "gbsg2.csv")
    mapping = Path(__file__).resolve().parents[2] / "docs" / "examples" / "gbsg2.mapping.yaml"
    shutil.copy(mapping, folder / "gbsg2.mapping.yaml")
    return folder / "gbsg2.mapping.yaml"


def snapshot(out: Path, checkout: Path | None, only: list[str] | None) -> None:
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    shared = (checkout or Path.cwd()).resolve().parent / "shared" / "data"
    statuses = []
    for name, overrides in RUNS.items():
        if only and name not in only:
            continue
        if name == "use_case_gbsg2_csv":
            overrides = [*overrides, f"use_case.mapping=[{_gbsg2_mapping(out)}]"]
        if name.startswith("real_") and not shared.is_dir() and "FEDJAX_RHD_SHARED_DATA" not in os.environ:
            print(f"{name:28s} skipped (no {shared})")
            continue
        statuses.append(_run_one(name, overrides, out, checkout))
    index = out / "snapshot.json"  # runs of earlier calls stay listed (``--only`` adds to a snapshot)
    done = {s["name"]: s for s in (json.loads(index.read_text()) if index.is_file() else [])}
    done.update({s["name"]: s for s in statuses})
    index.write_text(json.dumps(list(done.values()), indent=1) + "\n")


def _diff(a: Any, b: Any, path: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                out.append(f"{path}.{key}: only in {'after' if key not in a else 'before'}")
            else:
                _diff(a[key], b[key], f"{path}.{key}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: {len(a)} items before, {len(b)} after")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _diff(x, y, f"{path}[{i}]", out)
    elif isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return
    elif a != b:
        out.append(f"{path}: {a!r} -> {b!r}")


def _results(folder: Path) -> dict[str, dict[str, Any]]:
    return {
        p.parent.name: json.loads(p.read_text())
        for p in sorted(folder.glob("*/results.json"))
        if p.parent.name != "data"
    }


def _dataset_ids(folder: Path) -> dict[str, str]:
    """Every registered dataset of a snapshot: name -> the content id on its card."""
    cards = (folder / "data" / "datasets").glob("*/dataset.json")
    return {card.parent.name: json.loads(card.read_text())["id"] for card in cards}


def compare(before: Path, after: Path, tables: list[Path] | None) -> int:
    a, b = _results(before), _results(after)
    problems: list[str] = []
    config_changes: dict[str, list[str]] = {}
    for name in sorted(set(a) | set(b)):
        if name not in a or name not in b:
            problems.append(f"{name}: run only {'after' if name not in a else 'before'}")
            continue
        diffs: list[str] = []
        _diff(
            {k: v for k, v in a[name].items() if k not in VOLATILE},
            {k: v for k, v in b[name].items() if k not in VOLATILE},
            name,
            diffs,
        )
        # Per-round wall seconds are timing, not results.
        diffs = [d for d in diffs if "simulated_seconds" not in d or "rounds" not in d]
        problems.extend(diffs)
        cfg: list[str] = []
        _diff(a[name]["config"], b[name]["config"], "config", cfg)
        if cfg:
            config_changes[name] = cfg
        status = "identical" if not diffs else f"{len(diffs)} difference(s)"
        print(f"{name:28s} dataset {b[name]['dataset']['id']}  results {status}")
    for name, changes in config_changes.items():
        print(f"config of {name} (deliberate layout changes, not results):")
        for change in changes[:12]:
            print(f"    {change}")
    ids = [_dataset_ids(before), _dataset_ids(after)]
    for name in sorted(set(ids[0]) | set(ids[1])):
        a_id, b_id = ids[0].get(name), ids[1].get(name)
        print(f"dataset {name:32s} {a_id} -> {b_id}{'' if a_id == b_id else '  DIFFERS'}")
        if a_id != b_id:
            problems.append(f"dataset {name}: id {a_id} before, {b_id} after")
    if tables:
        rows = [list(csv.reader(t.open())) for t in tables]
        if rows[0] != rows[1]:
            problems.append(f"survival table: {tables[0]} and {tables[1]} differ")
            for i, (x, y) in enumerate(zip(rows[0], rows[1], strict=False)):
                if x != y:
                    problems.append(f"  row {i}: {x} -> {y}")
        else:
            print(f"survival table: {len(rows[0]) - 1} rows, every cell identical")
    for p in problems[:200]:
        print("DIFF", p)
    print(f"{len(a)} runs before, {len(b)} after; {len(problems)} difference(s) in results")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    snap = sub.add_parser("snapshot")
    snap.add_argument("out", type=Path)
    snap.add_argument("--checkout", type=Path, default=None)
    snap.add_argument("--only", nargs="*", default=None)
    comp = sub.add_parser("compare")
    comp.add_argument("before", type=Path)
    comp.add_argument("after", type=Path)
    comp.add_argument("--tables", nargs=2, type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "snapshot":
        snapshot(args.out, args.checkout.resolve() if args.checkout else None, args.only)
    else:
        sys.exit(compare(args.before, args.after, args.tables))


if __name__ == "__main__":
    main()
