"""The study's pattern on the calibrated simulators, from the sweep of ``run_study.sh``.

For each use case and scenario, over the split seeds: centralised DeepSurv, the FedAvg
global model, the smallest node's own ``local`` model and the clinical score, each the
mean C-index over seeds with a paired bootstrap (every model of a seed scored on the
same resampled test rows, ``fedjax_rhd.report.stats``); then the paired differences
the study claims (centralised − score, FedAvg − centralised, smallest alone − FedAvg,
worst − best for FedAvg and centralised, and per column: each node with FL (the selected
global model after the node's last local update) and each node alone; a scenario changes
node rows only, so the test rows of a seed are the same in both). Writes ``<out>/study.md``.

Run from the repository root: ``python experiments/simulation/study.py multirun/simulation_study``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl

from fedjax_rhd.report.stats import Interval, SeedRows, mean_over_seeds, paired_difference

N_BOOT = 1000


def collect(root: Path) -> dict[tuple[str, str, str, int], pl.DataFrame]:
    """(use case, scenario, strategy, split seed) -> test predictions."""
    out = {}
    for res in sorted(root.glob("*/*/results.json")):
        cfg = json.loads(res.read_text())["config"]
        key = (
            cfg["use_case"]["name"],
            cfg["scenario"]["name"],
            cfg["strategy"]["name"],
            cfg["seed"]["split"],
        )
        out[key] = pl.read_parquet(res.parent / "test_predictions.parquet")
    return out


def fmt(iv: Interval | None, signed: bool = False) -> str:
    if iv is None:
        return "n/a"
    s = "+" if signed else ""
    return f"{iv.estimate:{s}.3f} [{iv.ci_low:{s}.3f}, {iv.ci_high:{s}.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root")
    parser.add_argument("--out", default=None, help="Markdown file (default <root>/study.md)")
    args = parser.parse_args()
    root = Path(args.root)
    runs = collect(root)
    lines = [
        "# Study pattern on the calibrated simulators",
        "",
        "DeepSurv, centralised vs FedAvg vs the smallest node alone vs the clinical score (IPSS-M on",
        "simulated MDS over five nodes 45/20/15/10/10, CPSS-mol on simulated CMML over three nodes",
        "60/30/10), best and worst scenarios, split seeds 0-4. Each cell: mean Harrell C over seeds on",
        "the global test set (about 443 MDS / 174 CMML patients per seed) with a 95% bootstrap interval;",
        "every model of a seed is scored on the same resampled rows, so differences are paired.",
        "Regenerate: `bash experiments/simulation/run_study.sh multirun/simulation_study` then",
        "`python experiments/simulation/study.py multirun/simulation_study "
        "--out experiments/simulation/STUDY.md`.",
        "",
    ]
    lines += [
        "| use case | scenario | seeds | centralised | FedAvg global | smallest node alone | clinical score |"
        " oracle |",
        "|---|---|---|---|---|---|---|---|",
    ]
    diffs: list[str] = []
    columns: list[str] = []
    per_node: list[str] = []
    for use_case in sorted({k[0] for k in runs}):
        cells: dict[str, dict[str, tuple[dict[int, float], dict[int, np.ndarray]]]] = {}
        for scenario in ("best", "worst"):
            seeds = sorted(
                s
                for (u, sc, st, s) in runs
                if (u, sc, st) == (use_case, scenario, "fedavg")
                and all((use_case, scenario, x, s) in runs for x in ("centralized", "local"))
            )
            if not seeds:
                continue
            models: dict[str, tuple[dict[int, float], dict[int, np.ndarray]]] = {
                m: ({}, {}) for m in ("centralised", "fedavg", "smallest", "score", "oracle")
            }
            for s in seeds:
                fed = runs[(use_case, scenario, "fedavg", s)]
                cen = runs[(use_case, scenario, "centralized", s)]
                loc = runs[(use_case, scenario, "local", s)]
                for other in (cen, loc):
                    if not other["patient_id"].equals(fed["patient_id"]):
                        raise ValueError(f"{use_case} {scenario} seed {s}: test rows differ between runs")
                rows = SeedRows(
                    fed["time"].to_numpy(), fed["event"].to_numpy(), seed=s, n_boot=N_BOOT, boot_seed=0
                )
                node_cols = sorted(
                    (c for c in loc.columns if c.startswith("risk_node")), key=lambda c: int(c[9:])
                )
                risks = {
                    "centralised": cen["risk"],
                    "fedavg": fed["risk"],
                    "smallest": loc[node_cols[-1]],
                    "score": fed["clinical_score"],
                    "oracle": fed["oracle_risk"],
                }
                # every node's column: the node's model in the federation, and the node alone
                risks.update({f"fedavg {c[5:]}": fed[c] for c in node_cols if c in fed.columns})
                risks.update({f"alone {c[5:]}": loc[c] for c in node_cols})
                for m, r in risks.items():
                    r = r.cast(pl.Float64).fill_null(np.nan).to_numpy()
                    models.setdefault(m, ({}, {}))
                    models[m][0][s], models[m][1][s] = rows.cindex(r), rows.boot(r)
            cells[scenario] = models
            iv = {m: mean_over_seeds(*models[m]) for m in models}
            lines.append(
                f"| {use_case} | {scenario} | {len(seeds)} | {fmt(iv['centralised'])} | "
                f"{fmt(iv['fedavg'])} | {fmt(iv['smallest'])} | {fmt(iv['score'])} | {fmt(iv['oracle'])} |"
            )
            m = models
            d1 = paired_difference(m["centralised"], m["score"])
            d2 = paired_difference(m["fedavg"], m["centralised"])
            d3 = paired_difference(m["smallest"], m["fedavg"])
            diffs += [
                f"- {use_case} {scenario}: centralised − clinical score {fmt(d1, True)} "
                f"({'above' if d1.ci_low > 0 else 'NOT clearly above'}); "
                f"FedAvg − centralised {fmt(d2, True)} "
                f"({'within' if abs(d2.estimate) <= 0.02 else 'NOT within'} 0.02); "
                f"smallest node alone − FedAvg {fmt(d3, True)} "
                f"({'at least 0.03 below' if d3.estimate <= -0.03 else 'NOT 0.03 below'})."
            ]
        if "best" in cells and "worst" in cells:
            for m, label in (("fedavg", "FedAvg"), ("centralised", "centralised")):
                d = paired_difference(cells["worst"][m], cells["best"][m])
                verdict = "below" if d is not None and d.ci_high < 0 else "NOT clearly below"
                diffs.append(f"- {use_case}: worst − best, {label}: {fmt(d, True)} ({verdict}).")
            columns.append(
                f"| {use_case} | "
                + " | ".join(
                    fmt(paired_difference(cells["worst"][m], cells["best"][m]), True)
                    for m in ("centralised", "fedavg")
                    if m in cells["best"]
                )
            )
            nodes = [m for m in cells["best"] if m.startswith(("fedavg node", "alone node"))]
            for label, prefix in (("each node with FL", "fedavg"), ("each node alone", "alone")):
                gaps = (
                    fmt(paired_difference(cells["worst"][m], cells["best"][m]), True)
                    for m in nodes
                    if m.startswith(prefix)
                )
                per_node.append(f"| {use_case} | {label} | " + " | ".join(gaps) + " |")
    lines += ["", "Paired differences (mean over seeds, 95% paired-bootstrap interval):", "", *diffs, ""]
    lines += [
        "Worst − best per column (same test rows in both scenarios, so paired; nodes largest first;",
        "the worst scenario removes the gene panel from node 2 and cytogenetics from the smallest node,",
        "and blanks 10% of every node's other values):",
        "",
        "| use case | centralised | FedAvg global |",
        "|---|---|---|",
        *[c + " |" for c in columns],
        "",
        "| use case | column | node 1 | node 2 | node 3 | node 4 | node 5 |",
        "|---|---|---|---|---|---|---|",
        *per_node,
        "",
    ]
    out = Path(args.out) if args.out else root / "study.md"
    out.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
