"""The privacy study's table and figure: C-index against ε for client-level DP-FedAvg and record-level DP-SGD.

Reads every ``results.json`` under a sweep folder (``run.sh`` writes ``<out>/<use case>/{plain,dp}``) and,
per use case and arm (FedAvg, each node alone, DP-FedAvg at each noise multiplier σ):

* ε at the run's δ over its rounds by dp-accounting (PLD; the runs record both accountants); for DP-SGD
  runs (``final.dp_sgd``) the worst node's record-level ε by RDP;
* the test C-index of the main model, mean over split seeds with a t-interval over seeds (the
  variance that matters for a claim about methods: split and training randomness together);
* the paired difference against the best node alone *of the same seed* (the strongest isolated
  baseline), with its t-interval over seeds, and a decision on the interval's bounds: "beats every
  node alone" only when the lower bound is above 0, "does not beat" when the upper bound is below 0,
  otherwise "not shown either way".

Writes ``<out>/privacy.md``, ``<out>/privacy.csv`` and ``<out>/privacy.png``.

Usage: python experiments/privacy/summarize.py multirun/privacy
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from fedjax_rhd.report.decide import decide as decide_claim  # noqa: E402
from fedjax_rhd.report.sweep import seed_t_interval  # noqa: E402


def load_runs(root: Path) -> list[dict[str, Any]]:
    """Every run's results.json under ``root``, reduced to what the table needs."""
    runs = []
    for path in sorted(root.rglob("results.json")):
        res = json.loads(path.read_text())
        cfg, final = res["config"], res["final"]
        strategy = cfg["strategy"]
        dp = final.get("dp")
        dp_sgd = final.get("dp_sgd")  # record-level DP-SGD inside each node (strategy.client.dp_sgd)
        if strategy["algorithm"] == "local":
            arm, c_index = "node alone (best)", max(n["c_index_test"]["estimate"] for n in final["nodes"])
        elif dp:
            arm, c_index = f"DP-FedAvg σ={dp['noise_multiplier']:g}", final["c_index_test"]["estimate"]
        elif dp_sgd:
            arm, c_index = f"DP-SGD σ={dp_sgd['noise_multiplier']:g}", final["c_index_test"]["estimate"]
        else:
            arm, c_index = "FedAvg", final["c_index_test"]["estimate"]
        runs.append(
            {
                "use_case": cfg["use_case"]["name"],
                "arm": arm,
                "seed": cfg["seed"]["split"],
                "c_index": c_index,
                "epsilon": None if not dp else dp["epsilon_pld"],
                # DP-SGD: the worst node's ε (RDP; record level, not comparable with DP-FedAvg's node level)
                "epsilon_rdp": dp["epsilon_rdp"] if dp else (dp_sgd["epsilon_rdp"] if dp_sgd else None),
                "delta": dp["delta"] if dp else (dp_sgd["delta"] if dp_sgd else None),
                "rounds": len(res["rounds"]),
            }
        )
    return runs


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% t-interval over the seeds (``report.sweep.seed_t_interval``)."""
    return seed_t_interval(values)


OUTCOMES = {
    "shown": "beats every node alone",
    "shown otherwise": "does not beat the best node alone",
    "not shown": "not shown either way",
}


def decide(low: float, high: float) -> str:
    """The report's three-outcome rule (``report.decide``, "above 0") in this table's words."""
    return OUTCOMES[decide_claim((low, high), "above").outcome.value]


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (use case, arm)."""
    by_case: dict[str, dict[str, dict[int, dict[str, Any]]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        by_case[run["use_case"]][run["arm"]][run["seed"]] = run
    rows = []
    for case, arms in sorted(by_case.items()):
        alone = arms.get("node alone (best)", {})
        for arm, seeds in sorted(arms.items(), key=lambda kv: _order(kv[0])):
            keys = sorted(seeds)
            c = np.array([seeds[s]["c_index"] for s in keys])
            mean, low, high = t_interval(c)
            paired = [s for s in keys if s in alone]
            row = {
                "use_case": case,
                "arm": arm,
                "seeds": len(keys),
                "epsilon_pld": seeds[keys[0]]["epsilon"],
                "epsilon_rdp": seeds[keys[0]]["epsilon_rdp"],
                "c_index": mean,
                "c_low": low,
                "c_high": high,
            }
            if arm != "node alone (best)" and paired:
                diff = np.array([seeds[s]["c_index"] - alone[s]["c_index"] for s in paired])
                d_mean, d_low, d_high = t_interval(diff)
                row.update(diff=d_mean, diff_low=d_low, diff_high=d_high, decision=decide(d_low, d_high))
            rows.append(row)
    return rows


def _order(arm: str) -> tuple[int, float]:
    if arm == "FedAvg":
        return (0, 0.0)
    if arm.startswith("DP-FedAvg"):
        return (1, float(arm.split("=")[1]))
    if arm.startswith("DP-SGD"):
        return (2, float(arm.split("=")[1]))
    return (3, 0.0)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "–" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| use case | arm | ε (PLD) | ε (RDP) | C-index [95% t-interval over seeds] "
        "| − best node alone [95% CI] | decision |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "–"
        if "diff" in r:
            diff = f"{r['diff']:+.3f} [{r['diff_low']:+.3f}, {r['diff_high']:+.3f}]"
        no_dp = r["epsilon_pld"] is None and r["epsilon_rdp"] is None
        eps = "∞ (no DP)" if no_dp else _fmt(r["epsilon_pld"], 1)
        eps_rdp = "" if r["epsilon_rdp"] is None else _fmt(r["epsilon_rdp"], 1)
        lines.append(
            f"| {r['use_case']} | {r['arm']} | {eps} | {eps_rdp} | {_fmt(r['c_index'])} "
            f"[{_fmt(r['c_low'])}, {_fmt(r['c_high'])}] | {diff} | {r.get('decision', '–')} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = sorted({r["use_case"] for r in rows})
    fig, axes = plt.subplots(1, len(cases), figsize=(5 * len(cases), 3.6), squeeze=False)
    for ax, case in zip(axes[0], cases, strict=True):
        mine = [r for r in rows if r["use_case"] == case]
        dp = sorted((r for r in mine if r["epsilon_pld"] is not None), key=lambda r: r["epsilon_pld"])
        if dp:
            eps = [r["epsilon_pld"] for r in dp]
            ax.errorbar(
                eps,
                [r["c_index"] for r in dp],
                yerr=[[r["c_index"] - r["c_low"] for r in dp], [r["c_high"] - r["c_index"] for r in dp]],
                fmt="o-",
                label="DP-FedAvg",
            )
            ax.set_xscale("log")
        sgd = sorted((r for r in mine if r["arm"].startswith("DP-SGD")), key=lambda r: r["epsilon_rdp"])
        if sgd:  # record level: the worst node's ε by RDP
            ax.errorbar(
                [r["epsilon_rdp"] for r in sgd],
                [r["c_index"] for r in sgd],
                yerr=[[r["c_index"] - r["c_low"] for r in sgd], [r["c_high"] - r["c_index"] for r in sgd]],
                fmt="s-",
                label="DP-SGD (record level, worst node, RDP)",
            )
            ax.set_xscale("log")
        for r in mine:
            if r["epsilon_pld"] is None and r["epsilon_rdp"] is None:
                style = "k-" if r["arm"] == "FedAvg" else "r--"
                ax.axhline(r["c_index"], ls=style[1:], color=style[0], label=f"{r['arm']} (no DP)")
        xlabel = "ε at δ=1e-5 (PLD, node level, 30 rounds)" if dp else "ε at δ=1e-5"
        if sgd:
            xlabel += " (DP-SGD: RDP, record level, worst node)" if dp else " (RDP, record level, worst node)"
        ax.set(title=case, xlabel=xlabel, ylabel="test C-index (mean over seeds)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, help="the sweep folder run.sh wrote")
    args = parser.parse_args(argv)
    runs = load_runs(args.root)
    if not runs:
        print(f"no results.json under {args.root}", file=sys.stderr)
        return 1
    rows = summarize(runs)
    table = markdown(rows)
    (args.root / "privacy.md").write_text(table)
    with open(args.root / "privacy.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, args.root / "privacy.png")
    print(table)
    print(f"wrote {args.root / 'privacy.md'}, privacy.csv and privacy.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
