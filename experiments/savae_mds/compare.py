"""SAVAE beside DeepSurv on the simulated MDS cohort: centralised and FedAvg, several split seeds.

Reads the run directories of the two sweeps

    fedjax-rhd -m +experiment=savae strategy=centralized,fedavg seed.split=0,1,2,3,4 \
        hydra.sweep.dir=multirun/savae_mds/savae
    fedjax-rhd -m model=deepsurv strategy=centralized,fedavg seed.split=0,1,2,3,4 \
        hydra.sweep.dir=multirun/savae_mds/deepsurv

and writes a Markdown table (per seed, then mean ± sd over seeds) of the main
model's Harrell C, Uno's C, mean time-dependent AUC and integrated Brier score,
plus paired differences SAVAE − DeepSurv per strategy: Harrell's C with the
cluster bootstrap of ``fedjax_rhd.report.cluster`` (split seeds, patients shared
between the seeds' test sets drawn once, training replicates when the sweeps have
several per split seed), decided on its interval; IBS as mean ± sd of per-seed
differences. The title names the cohort the runs were trained on (``results.json``
``dataset``), so the same script labels a simulated and a real (IWG-PM) page correctly.

Usage:  python experiments/savae_mds/compare.py multirun/savae_mds [--out experiments/savae_mds/results.md]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fedjax_rhd.report import sweep  # noqa: E402
from fedjax_rhd.report.decide import decide  # noqa: E402

METRICS = ("harrell_c", "uno_c", "td_auc", "ibs")


def cohort_title(results: list[dict]) -> str:
    """The cohort the runs trained on, from their results.json (never a fixed label)."""
    names = sorted({f"{r['config']['use_case']['name']}" for r in results})
    sizes = sorted({int(r["dataset"]["n_rows"]) for r in results})
    splits = sorted({r["config"]["split"]["name"] for r in results})
    size = " / ".join(f"{n:,}" for n in sizes)
    return f"{', '.join(names)} ({size} patients, split={', '.join(splits)})"


def load(root: Path) -> dict[tuple[str, str, int], tuple[dict, pl.DataFrame]]:
    """(model, strategy, split seed) -> (metrics, test predictions); metrics["results"]: results.json."""
    runs = {}
    for path in sorted(root.rglob("results.json")):
        res = json.loads(path.read_text())
        cfg, final = res["config"], res["final"]
        key = (cfg["model"]["name"], cfg["strategy"]["name"], int(cfg["seed"]["split"]))
        metrics = {
            "harrell_c": final["c_index_test"]["estimate"],
            "uno_c": final.get("uno_c_test"),
            "td_auc": (final.get("td_auc_test") or {}).get("mean"),
            "ibs": final.get("ibs_test"),
            "best_round": final["best_round"],
            "oracle_c": (final.get("oracle_c_index_test") or {}).get("estimate", float("nan")),
            "results": res,
        }
        runs[key] = (metrics, pl.read_parquet(path.parent / "test_predictions.parquet"))
    return runs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    runs = load(args.root)
    models = sorted({m for m, _, _ in runs}, reverse=True)  # savae first
    strategies = sorted({s for _, s, _ in runs})
    seeds = sorted({s for _, _, s in runs})
    title = cohort_title([m["results"] for m, _ in runs.values()])
    lines = [
        sweep.provenance("experiments/savae_mds/compare.py", argv),
        "",
        f"### {title}, {len(seeds)} split seeds: main model on the test set\n",
    ]
    header = ["model", "strategy", "seed.split", "Harrell C", "Uno C", "mean td-AUC", "IBS", "best round"]
    header.append("oracle Harrell C")
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summary = []
    for model in models:
        for strategy in strategies:
            present = [s for s in seeds if (model, strategy, s) in runs]
            rows = [runs[(model, strategy, s)][0] for s in present]
            for seed, r in zip(present, rows, strict=True):
                cells = [f"{r[m]:.3f}" for m in METRICS]
                tail = f" | {r['best_round']} | {r['oracle_c']:.3f} |"
                lines.append(f"| {model} | {strategy} | {seed} | " + " | ".join(cells) + tail)
            values = np.array([[r[m] for m in METRICS] for r in rows], dtype=float)
            ddof = 1 if len(rows) > 1 else 0
            mean, sd = values.mean(axis=0), values.std(axis=0, ddof=ddof)
            cells = [f"**{m:.3f} ± {s:.3f}**" for m, s in zip(mean, sd, strict=True)]
            oracle = np.array([r["oracle_c"] for r in rows])
            tail = f" | | {oracle.mean():.3f} ± {oracle.std(ddof=ddof):.3f} |"
            summary.append(f"| {model} | {strategy} | mean ± sd ({len(rows)}) | " + " | ".join(cells) + tail)
    lines += summary
    if {"savae", "deepsurv"} <= set(models):
        lines.append("\n### Paired differences, SAVAE − DeepSurv (same split seeds, same test rows)\n")
        lines.append(
            "| strategy | Δ Harrell C [95% cluster-bootstrap CI] | Δ Harrell C above 0? "
            "| Δ IBS mean ± sd over seeds | seeds SAVAE IBS lower |"
        )
        lines.append("|---|---|---|---|---|")
        covers = set()
        for strategy in strategies:
            common = [
                s for s in seeds if ("savae", strategy, s) in runs and ("deepsurv", strategy, s) in runs
            ]
            d = sweep.cluster_interval(
                {s: [(runs[("savae", strategy, s)][1], "risk")] for s in common},
                {s: [(runs[("deepsurv", strategy, s)][1], "risk")] for s in common},
                n_boot=args.n_boot,
            )
            covers.add(d.covers)
            d_ibs = np.array(
                [
                    runs[("savae", strategy, s)][0]["ibs"] - runs[("deepsurv", strategy, s)][0]["ibs"]
                    for s in common
                ]
            )
            sd = d_ibs.std(ddof=1) if len(common) > 1 else 0.0
            lines.append(
                f"| {strategy} | {sweep.fmt(d, True)} | {decide(d, 'above').short} | "
                f"{d_ibs.mean():+.4f} ± {sd:.4f} | {int((d_ibs < 0).sum())}/{len(common)} |"
            )
        lines += ["", *(f"The Δ Harrell C intervals resample: {c}." for c in sorted(covers))]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out is not None:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
