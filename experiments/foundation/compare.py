"""Compare FedAvg, centralised and local DeepSurv over several split seeds.

Reads the run directories of a sweep such as

    fedjax-rhd -m strategy=fedavg,centralized,local seed.split=0,1,2,3,4 \
        hydra.sweep.dir=multirun/foundation

and prints (and writes as Markdown next to the sweep) a table of test C-indices
per split seed and their mean, plus paired-bootstrap differences on the same
test rows: FedAvg − centralised, FedAvg − oracle, local smallest node − FedAvg.
The bootstrap resamples each seed's test rows independently and averages the
per-seed differences, so the interval is for the mean over seeds.

Usage:  python experiments/foundation/compare.py multirun/foundation [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fedjax_rhd.metrics import concordance_index  # noqa: E402


def load_runs(roots: list[Path]) -> dict[tuple[str, str, int], tuple[dict, pl.DataFrame]]:
    """(split name, strategy, split seed) -> (results, test predictions)."""
    runs = {}
    for root in roots:
        for path in sorted(root.rglob("results.json")):
            res = json.loads(path.read_text())
            cfg = res["config"]
            key = (cfg["split"]["name"], cfg["strategy"]["name"], int(cfg["seed"]["split"]))
            runs[key] = (res, pl.read_parquet(path.parent / "test_predictions.parquet"))
    return runs


def c_index(pred: pl.DataFrame, column: str, rows: np.ndarray | None = None) -> float:
    t, e, r = pred["time"].to_numpy(), pred["event"].to_numpy(), pred[column].to_numpy()
    if rows is not None:
        t, e, r = t[rows], e[rows], r[rows]
    return concordance_index(t, e, r)


def paired_mean_difference(
    pairs: list[tuple[pl.DataFrame, str, pl.DataFrame, str]], n_boot: int, seed: int = 0
) -> dict[str, float]:
    """Mean over seeds of C(a) − C(b) on the same rows, with a stratified bootstrap CI."""
    rng = np.random.default_rng(seed)
    for pa, _, pb, _ in pairs:
        if pa["patient_id"].to_list() != pb["patient_id"].to_list():
            raise ValueError("paired runs do not share the same test rows")
    point = float(np.mean([c_index(pa, ca) - c_index(pb, cb) for pa, ca, pb, cb in pairs]))
    boots = np.empty(n_boot)
    for b in range(n_boot):
        diffs = []
        for pa, ca, pb, cb in pairs:
            rows = rng.integers(0, len(pa), len(pa))
            diffs.append(c_index(pa, ca, rows) - c_index(pb, cb, rows))
        boots[b] = np.mean(diffs)
    low, high = np.quantile(boots, [0.025, 0.975])
    return {"difference": point, "ci_low": float(low), "ci_high": float(high)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    runs = load_runs(args.roots)
    by_split: dict[str, dict[str, dict]] = defaultdict(lambda: defaultdict(dict))
    for (split, strategy, seed), run in runs.items():
        by_split[split][strategy][seed] = run

    lines: list[str] = []
    for split, strategies in sorted(by_split.items()):
        seeds = sorted(set.intersection(*(set(s) for s in strategies.values())))
        if not {"fedavg", "centralized", "local"} <= set(strategies) or not seeds:
            print(f"split {split}: need fedavg, centralized and local runs on common seeds; skipping")
            continue
        node_names = [n["name"] for n in strategies["fedavg"][seeds[0]][0]["final"]["nodes"]]
        shares = [n["share"] for n in strategies["fedavg"][seeds[0]][0]["final"]["nodes"]]
        header = (
            ["seed.split", "centralised", "FedAvg global"]
            + [f"{n} with FL" for n in node_names]
            + [f"{n} alone ({s:.0%})" for n, s in zip(node_names, shares, strict=True)]
            + ["oracle"]
        )
        rows = []
        for seed in seeds:
            p_fed, p_cen, p_loc = (strategies[s][seed][1] for s in ("fedavg", "centralized", "local"))
            rows.append(
                [
                    seed,
                    c_index(p_cen, "risk"),
                    c_index(p_fed, "risk"),
                    *[c_index(p_fed, f"risk_{n}") for n in node_names],
                    *[c_index(p_loc, f"risk_{n}") for n in node_names],
                    c_index(p_fed, "oracle_risk"),
                ]
            )
        values = np.array([r[1:] for r in rows])
        lines.append(f"### split={split}, {len(seeds)} split seeds, DeepSurv, test C-index (Harrell)\n")
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for r in rows:
            lines.append("| " + " | ".join([str(r[0]), *[f"{v:.3f}" for v in r[1:]]]) + " |")
        mean = values.mean(axis=0)
        sd = values.std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros_like(mean)
        cells = [f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, sd, strict=True)]
        lines.append("| mean ± sd | " + " | ".join(cells) + " |")
        smallest = node_names[-1]
        fed, cen, loc = strategies["fedavg"], strategies["centralized"], strategies["local"]
        comparisons = {
            "FedAvg global − centralised": [(fed[s][1], "risk", cen[s][1], "risk") for s in seeds],
            "FedAvg global − oracle": [(fed[s][1], "risk", fed[s][1], "oracle_risk") for s in seeds],
            f"{smallest} alone − FedAvg global": [
                (loc[s][1], f"risk_{smallest}", fed[s][1], "risk") for s in seeds
            ],
            f"{smallest} with FL − {smallest} alone": [
                (fed[s][1], f"risk_{smallest}", loc[s][1], f"risk_{smallest}") for s in seeds
            ],
        }
        lines.append("\nPaired bootstrap on the same test rows (mean over seeds, 95% CI):\n")
        for label, pairs in comparisons.items():
            d = paired_mean_difference(pairs, args.n_boot)
            lines.append(f"- {label}: {d['difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")
        lines.append("")
    text = "\n".join(lines)
    print(text)
    (args.roots[0] / "comparison.md").write_text(text)


if __name__ == "__main__":
    main()
