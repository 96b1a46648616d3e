"""Score CTGAN runs as experiments/synthetic/ctgan.md reports them (session 11).

Per run directory: sdmetrics' unified ``QualityReport`` on the federation's training rows and the run's
``synthetic.parquet`` (the SDMetrics snippet of ctgan.md), the validation's headline numbers (TSTR, CSF, GSF,
detection, MIA, impossible values) and the outcome/missingness diagnostics of the utility hunt, for the
synthetic and the real training rows. ``intervals`` prints means with 95 % t intervals over split seeds and
differences paired by split.

Usage (from the repository root)::

    python experiments/synthetic/ctgan_score.py score RUN_DIR ... --out scores.csv
    python experiments/synthetic/ctgan_score.py intervals scores.csv [--pair A:B ...] \
        [--extra experiments/synthetic/ctgan_outcome_loss.csv]

A run named ``<setting>_s<split>`` (e.g. ``A_s0``) is grouped by setting and paired by split.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fedjax_rhd.report.sweep import seed_t_interval

METRICS = (
    "tstr_difference", "tstr_deepsurv_difference", "sdmetrics_quality", "csf", "gsf", "mia_auc",
    "detection_auc", "corr_blast_logt", "event_share", "tp53_missing", "impossible_values",
    "rare_share_ratio", "rare_under_quarter", "any_missing",
)  # fmt: skip
# a binary covariate that this share of real training patients holds is "rare" (session 16)
RARE = (0.01, 0.03)


def diagnostics(df: pd.DataFrame, features: list[str]) -> dict[str, float]:
    """The utility hunt's checks: blast–log time correlation, event share, missingness, log time by event."""
    if "bm_blasts" not in df or "TP53" not in df:
        return {}
    seen = df["bm_blasts"].notna()
    log_t = np.log(df["time"].astype(float))
    return {
        "corr_blast_logt": float(np.corrcoef(df.loc[seen, "bm_blasts"].astype(float), log_t[seen])[0, 1]),
        "event_share": float(df["event"].mean()),
        "tp53_missing": float(df["TP53"].isna().mean()),
        "missing_share": float(df[features].isna().mean().mean()),
        "logt_no_event": float(log_t[df["event"] == 0].mean()),
        "logt_event": float(log_t[df["event"] == 1].mean()),
    }


def rare_levels(
    real: pd.DataFrame, syn: pd.DataFrame, binaries: list[str], features: list[str]
) -> dict[str, float]:
    """How the generator draws rare binary covariates (held by 1-3 % of real patients; ctgan.md, session 16).

    ``rare_share_ratio``: the median over those columns of synthetic share / real share (1 = as real);
    ``rare_under_quarter``: how many of them are drawn at under a quarter of their real share;
    ``any_missing``: the synthetic rows' share with any covariate missing (``real_any_missing`` beside it).
    """
    real_share = real[binaries].astype(float).mean()
    rare = [c for c in binaries if RARE[0] <= real_share[c] <= RARE[1]]
    ratio = syn[rare].astype(float).mean() / real_share[rare]
    return {
        "rare_columns": len(rare),
        "rare_share_ratio": float(np.median(ratio)) if rare else float("nan"),
        "rare_under_quarter": int(np.sum(ratio < 0.25)),
        "any_missing": float(syn[features].isna().any(axis=1).mean()),
    }


def score(run: Path) -> dict[str, Any]:
    """One run directory's row (its own Hydra overrides rebuild the training rows it validated against)."""
    import polars as pl
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf
    from sdmetrics.reports import QualityReport

    from fedjax_rhd.config import register_configs, run_config
    from fedjax_rhd.experiment import run_data
    from fedjax_rhd.generative import training_table
    from fedjax_rhd.guide_cache import cached_guide

    register_configs()
    overrides = list(OmegaConf.load(run / ".hydra" / "overrides.yaml"))
    with initialize_config_dir(config_dir=str(Path("conf").resolve()), version_base="1.3"):
        config = run_config(compose("config", overrides=overrides))
    guide = cached_guide(config.use_case.guide_name)
    real = training_table(run_data(config, guide)[0], None).to_pandas()
    syn = pl.read_parquet(run / "synthetic.parquet").drop("patient_id").to_pandas()
    kinds = {"continuous": "numerical", "binary": "categorical", "categorical": "categorical"}
    cols = {f.name: {"sdtype": kinds[f.kind]} for f in guide.features}
    cols |= {"time": {"sdtype": "numerical"}, "event": {"sdtype": "categorical"}}
    for df in (real, syn):
        for f in guide.features:
            if f.kind == "binary":
                df[f.name] = df[f.name].astype("float")
        df["event"] = df["event"].astype("float")
    report = QualityReport()
    metadata = {"tables": {"mds": {"columns": cols}}}
    report.generate({"mds": real[list(cols)]}, {"mds": syn[list(cols)]}, metadata, verbose=False)
    props = report.get_properties().set_index("Property")["Score"]
    utility = json.loads((run / "validation_report.json").read_text())["utility"]
    head = json.loads((run / "results.json").read_text())["final"]["generative"]["validation"]
    features = [f.name for f in guide.features]
    binaries = [f.name for f in guide.features if f.kind == "binary"]
    return {
        "run": run.name,
        "tstr_c_synthetic": utility["tstr"]["c_index_train_synthetic"],
        "tstr_c_real": utility["tstr"]["c_index_train_real"],
        "tstr_difference": utility["tstr"]["difference"],
        "tstr_deepsurv_difference": utility.get("tstr_deepsurv", {}).get("difference"),
        "sdmetrics_quality": report.get_score(),
        "sdmetrics_shapes": props["Column Shapes"],
        "sdmetrics_pairs": props["Column Pair Trends"],
        **{k: head[k] for k in ("csf", "gsf", "detection_auc", "mia_auc")},
        "impossible_values": head["validity_total"],
        **diagnostics(syn, features),
        **{f"real_{k}": v for k, v in diagnostics(real, features).items()},
        **rare_levels(real, syn, binaries, features),
        "real_any_missing": float(real[features].isna().any(axis=1).mean()),
    }


def interval(x: pd.Series) -> str:
    """Mean [95 % t interval] over the values (the seeds)."""
    mean, low, high = seed_t_interval(np.asarray(x, float))
    return f"{mean:+.3f} [{low:+.3f}, {high:+.3f}]"


def intervals(table: pd.DataFrame, pairs: list[str]) -> None:
    """Per setting the mean and interval of each metric; per ``A:B`` the paired differences A − B."""
    table = table.assign(
        setting=table["run"].str.rsplit("_s", n=1).str[0], split=table["run"].str.rsplit("_s", n=1).str[1]
    )
    for name, group in table.groupby("setting"):
        shown = {m: interval(group[m]) for m in METRICS if m in group and group[m].notna().all()}
        print(name, "splits", sorted(group["split"]), shown)
    for pair in pairs:
        a, b = (table[table["setting"] == s].set_index("split") for s in pair.split(":"))
        common = sorted(set(a.index) & set(b.index))
        diffs = {m: interval(a.loc[common, m] - b.loc[common, m]) for m in METRICS[:6]}
        print(f"{pair.replace(':', ' - ')} on splits {common}:", diffs)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("score")
    s.add_argument("runs", nargs="+", type=Path)
    s.add_argument("--out", type=Path, required=True)
    i = sub.add_parser("intervals")
    i.add_argument("scores", type=Path)
    i.add_argument("--pair", action="append", default=[])
    i.add_argument(
        "--extra", type=Path, help="ctgan_outcome_loss.csv: its outcome_weight=1 rows as S10_s<split>"
    )
    args = parser.parse_args(argv)
    if args.command == "score":
        for run in args.runs:
            row = score(run)
            print(json.dumps(row))
            new = not args.out.exists()
            with args.out.open("a") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(row))
                if new:
                    writer.writeheader()
                writer.writerow({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        return
    table = pd.read_csv(args.scores).drop_duplicates("run", keep="last")
    if args.extra is not None:
        s10 = pd.read_csv(args.extra)
        s10 = s10[s10["outcome_weight"] == 1.0]
        table = pd.concat([table, s10.assign(run="S10_s" + s10["split"].astype(str))], ignore_index=True)
    intervals(table, args.pair)


if __name__ == "__main__":
    main()
