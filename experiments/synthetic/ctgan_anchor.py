"""The `ctgan` package as the anchor of issue 17: same rows, its defaults, our validation suite, wall time.

Three steps, two environments (the package brings torch, which the project keeps out of its install):

1. ``prepare`` (the project's environment): for each split seed, the rows a VAE-BGM run of the same
   configuration trained on (every node's training rows, ``generative.training_table``) and its
   benchmark holdout, written as ``seed<s>/train.parquet`` and ``holdout.parquet``, with ``meta.json``
   naming the discrete columns.
2. ``fit`` (an environment with the pinned anchor packages, ``anchor-requirements.txt``): CTGAN
   (Xu et al. 2019, the package's defaults: 300 epochs, batch 500, PacGAN 10) on ``train.parquet``,
   ``train.height`` rows sampled, ``synthetic.parquet`` and ``timing.json`` written. The package refuses
   missing values in continuous columns, so they are filled with the training median (counted in
   ``timing.json``); a missing discrete value is a level of its own and comes back as missing.
3. ``score`` (the project's environment): ``validation_report`` of every seed's table against the same
   training rows and holdout as the VAE-BGM runs, and of those runs' saved tables by the same call
   (their stored linear-Cox TSTR must come back unchanged), mean with a 95 % t-interval over seeds.

Usage::

    python experiments/synthetic/ctgan_anchor.py prepare --out DIR --seeds 0 1 2 3 4 -- use_case=mds_iwgpm ...
    ANCHOR_PY experiments/synthetic/ctgan_anchor.py fit DIR [--epochs 300]
    python experiments/synthetic/ctgan_anchor.py score DIR --runs RUNS_DIR --out results.md

Only the standard library is imported at module level, so ``fit`` runs where the project is not installed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MISSING_LEVEL = "__missing__"  # a discrete value the table does not hold, as the package sees it


# ---- 1. prepare (project environment) -----------------------------------------------------------


def prepare(out: Path, seeds: list[int], overrides: list[str]) -> list[Path]:
    """Write each seed's training rows, holdout and column kinds; returns the seed folders."""
    sys.path.insert(0, str(ROOT))
    from hydra import compose, initialize_config_dir

    from fedjax_rhd.config import register_configs, run_config
    from fedjax_rhd.experiment import run_data
    from fedjax_rhd.generative import holdout_table, training_table
    from fedjax_rhd.guide_cache import cached_guide

    register_configs()
    folders = []
    for seed in seeds:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose("config", [*overrides, f"seed.split={seed}", "progress=false"])
        config = run_config(cfg)
        guide = cached_guide(config.use_case.guide_name)
        data, table, card, _ = run_data(config, guide)
        folder = out / f"seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        training_table(data, None).write_parquet(folder / "train.parquet")
        holdout_table(table, data).write_parquet(folder / "holdout.parquet")
        discrete = [f.name for f in guide.features if f.kind in ("binary", "categorical")] + ["event"]
        meta = {
            "seed": seed,
            "overrides": overrides,
            "dataset": card.get("name"),
            "dataset_id": card.get("id"),
            "guide": config.use_case.guide_name,
            "discrete_columns": discrete,
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=2))
        folders.append(folder)
        print(f"seed {seed}: {data.num_nodes} nodes, {sum(data.n_train)} training rows -> {folder}")
    return folders


# ---- 2. fit (anchor environment: pandas, torch, ctgan) --------------------------------------------


def fit(folder: Path, epochs: int) -> dict[str, Any]:
    """CTGAN on ``folder/train.parquet``; writes ``synthetic.parquet`` and ``timing.json``."""
    import pandas as pd
    import torch
    from ctgan import CTGAN

    meta = json.loads((folder / "meta.json").read_text())
    real = pd.read_parquet(folder / "train.parquet")
    discrete = [c for c in meta["discrete_columns"] if c in real.columns]
    continuous = [c for c in real.columns if c not in discrete]
    frame = real.copy()
    filled = {c: int(frame[c].isna().sum()) for c in continuous if frame[c].isna().any()}
    for c in continuous:  # the package refuses NaN here: the training median, counted
        frame[c] = frame[c].astype(float).fillna(float(real[c].median()))
    for c in discrete:  # every discrete value as a string level; missing is a level of its own
        frame[c] = frame[c].map(lambda v: MISSING_LEVEL if pd.isna(v) else str(v))
    torch.manual_seed(meta["seed"])
    torch.set_num_threads(1)
    model = CTGAN(epochs=epochs, enable_gpu=False)
    start, cpu = time.perf_counter(), time.process_time()
    model.fit(frame, discrete_columns=discrete)
    fit_seconds, fit_cpu = time.perf_counter() - start, time.process_time() - cpu
    start = time.perf_counter()
    sample = model.sample(len(real))
    sample_seconds = time.perf_counter() - start
    for c in discrete:  # back to the table's types; the missing level back to missing
        values = sample[c].astype(str).where(sample[c].astype(str) != MISSING_LEVEL)
        sample[c] = _restore(values, real[c])
    sample[list(real.columns)].to_parquet(folder / "synthetic.parquet", index=False)
    timing = {
        "epochs": epochs,
        "fit_seconds": fit_seconds,
        "fit_cpu_seconds": fit_cpu,  # what a loaded machine does not inflate as much as wall time
        "sample_seconds": sample_seconds,
        "n_train": len(real),
        "median_filled": filled,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (folder / "timing.json").write_text(json.dumps(timing, indent=2))
    print(f"{folder.name}: {epochs} epochs in {fit_seconds:.1f} s, {len(real)} rows sampled")
    return timing


def _restore(values: Any, like: Any) -> Any:
    """String levels back to ``like``'s dtype (numbers stay numbers, strings stay strings)."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(like):
        return values.map(lambda v: None if pd.isna(v) else v == "True").astype("boolean")
    if pd.api.types.is_numeric_dtype(like):
        return pd.to_numeric(values).astype(like.dtype if not like.isna().any() else "float64")
    return values


# ---- 3. score (project environment) --------------------------------------------------------------

# (key in a validation headline, label, decimals)
COLUMNS = (
    ("quality_sdmetrics_style", "quality (SDMetrics-style)", 3),
    ("csf", "CSF", 3),
    ("gsf", "GSF", 3),
    ("detection_auc", "detection AUC", 3),
    ("tstr_difference", "TSTR ΔC", 3),
    ("tstr_deepsurv_difference", "TSTR ΔC (DeepSurv)", 3),
    ("mia_auc", "MIA AUC", 3),
    ("exact_copy_share", "exact copies", 3),
    ("validity_total", "impossible values", 0),
)


def score_seed(folder: Path, synthetic_path: Path | None = None) -> dict[str, Any]:
    """Our validation suite on one seed's table (the same call a VAE-BGM run makes).

    ``synthetic_path``: another generator's table for the same seed (a VAE-BGM run's
    ``synthetic.parquet``), scored against the same rows; default: the anchor's own.
    """
    sys.path.insert(0, str(ROOT))
    import polars as pl

    from fedjax_rhd.generative import headline
    from fedjax_rhd.guide_cache import cached_guide
    from fedjax_rhd.metrics.synthetic import validation_report

    meta = json.loads((folder / "meta.json").read_text())
    guide = cached_guide(meta["guide"])
    train = pl.read_parquet(folder / "train.parquet")
    path = synthetic_path or folder / "synthetic.parquet"
    synthetic = pl.read_parquet(path).select(train.columns).cast(train.schema)
    report = validation_report(train, synthetic, pl.read_parquet(folder / "holdout.parquet"), guide)
    if synthetic_path is None:
        (folder / "validation_report.json").write_text(json.dumps(report, indent=1, default=str))
    timing = json.loads((folder / "timing.json").read_text()) if (folder / "timing.json").is_file() else {}
    return {
        **headline(report),
        "seconds": timing.get("fit_seconds"),
        "cpu_seconds": timing.get("fit_cpu_seconds"),
        "seed": meta["seed"],
    }


def ours(runs: Path, root: Path) -> dict[str, list[dict[str, Any]]]:
    """The VAE-BGM runs' saved tables rescored here against the same rows, by strategy.

    Each run's ``synthetic.parquet`` (FedAvg's global generator, the centralised one) goes through
    the same ``validation_report`` call as the anchor's table; the run's own stored linear-Cox
    TSTR must come back unchanged (a check that both read the same rows). Wall seconds: the run's.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(runs.rglob("results.json")):
        res = json.loads(path.read_text())
        final = res.get("final", {})
        strategy = res["config"]["strategy"]["name"]
        table = path.parent / "synthetic.parquet"
        if final.get("kind") != "generative" or strategy == "local" or not table.is_file():
            continue
        seed = res["config"]["seed"]["split"]
        row = {**score_seed(root / f"seed{seed}", table), "seconds": res["timing"]["total_seconds"]}
        row["cpu_seconds"] = None  # runs record wall time only
        stored = final["generative"]["validation"]["tstr_difference"]
        if abs(row["tstr_difference"] - stored) > 1e-9:
            raise ValueError(f"{path}: rescored TSTR {row['tstr_difference']} != stored {stored}")
        model = {"vae_bgm": "VAE-BGM", "ctgan": "CTGAN (ours, JAX)"}.get(res["config"]["model"]["name"])
        found.setdefault(f"{model or res['config']['model']['name']}, {strategy}", []).append(row)
    return found


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95 % t-interval over seeds (the interval collapses to the mean for one seed)."""
    import numpy as np
    from scipy import stats

    v = np.asarray(values, dtype=float)
    mean = float(v.mean())
    if len(v) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return mean, mean - half, mean + half


def table(groups: dict[str, list[dict[str, Any]]]) -> str:
    """Markdown: one row per generator, mean [95 % t-interval] over seeds, wall seconds' range."""
    labels = [label for _, label, _ in COLUMNS]
    head = ["generator", "seeds", *labels, "gate passed", "wall s (min-max)", "CPU s (min-max)"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, rows in groups.items():
        cells = [name, str(len(rows))]
        for key, _, decimals in COLUMNS:
            values = [r[key] for r in rows if r.get(key) is not None]
            if not values:
                cells.append("n/a")
                continue
            mean, lo, hi = interval(values)
            cells.append(f"{mean:.{decimals}f} [{lo:.{decimals}f}, {hi:.{decimals}f}]")
        gates = [r["privacy_gate"]["passed"] for r in rows if r.get("privacy_gate")]
        cells.append(f"{sum(gates)}/{len(gates)}")
        seconds = [r["seconds"] for r in rows if r.get("seconds") is not None]
        cells.append(f"{min(seconds):.0f}-{max(seconds):.0f}" if seconds else "n/a")
        cpu = [r["cpu_seconds"] for r in rows if r.get("cpu_seconds") is not None]
        cells.append(f"{min(cpu):.0f}-{max(cpu):.0f}" if cpu else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def score(root: Path, runs: list[Path] | None) -> str:
    """The anchor's rows (every ``seed*`` folder with a synthetic table) and, with ``runs``, ours."""
    anchor = [score_seed(f) for f in sorted(root.glob("seed*")) if (f / "synthetic.parquet").is_file()]
    groups = {"ctgan package (defaults)": anchor}
    for folder in runs or []:
        groups.update(ours(folder, root))
    return table(groups)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("prepare", help="write each seed's training rows and holdout")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("overrides", nargs="*", help="Hydra overrides after --, as for a VAE-BGM run")
    f = sub.add_parser("fit", help="fit the ctgan package on each seed folder (anchor environment)")
    f.add_argument("root", type=Path)
    f.add_argument("--epochs", type=int, default=300, help="the package's default")
    f.add_argument("--seeds", type=int, nargs="*", help="only these seed folders (default: all)")
    s = sub.add_parser("score", help="our validation suite on the anchor's tables, beside our runs")
    s.add_argument("root", type=Path)
    s.add_argument("--runs", type=Path, nargs="*", help="folders of runs (VAE-BGM, CTGAN): same data, seeds")
    s.add_argument("--out", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    if args.step == "prepare":
        prepare(args.out, args.seeds, args.overrides)
    elif args.step == "fit":
        for folder in sorted(args.root.glob("seed*")):
            if args.seeds is None or int(folder.name.removeprefix("seed")) in args.seeds:
                fit(folder, args.epochs)
    else:
        text = score(args.root, args.runs)
        print(text)
        if args.out is not None:
            args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
