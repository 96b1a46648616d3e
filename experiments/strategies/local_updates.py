"""Local updates compared: full-batch FedAvg against FedProx, SCAFFOLD and minibatch FedAvg/FedProx.

Reads the sweeps ``README.md`` names (``<out>/<use case>/{full,minibatch}``) and prints, per use case,
scenario and strategy, over the split seeds:

* the test C-index of the selected global model, mean with a t-interval over seeds;
* the paired difference against full-batch FedAvg of the same seed, its t-interval and a decision on
  the interval's bounds (better / worse / not shown either way);
* the rounds each run needed to first reach 99% of its final test C-index (median over seeds, from
  the per-round test curves ``c_index_test_global``): a reading of speed, never used for selection.

Writes ``<out>/local_updates.md`` and ``.csv``.

Usage: python experiments/strategies/local_updates.py multirun/local_updates
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

BASELINE = "FedAvg (full batch)"


def arm_of(config: dict[str, Any]) -> str:
    """A run's strategy label, with its local-update kind."""
    strategy = config["strategy"]
    client = strategy["client"]
    name = {"fedavg": "FedAvg", "fedprox": "FedProx", "scaffold": "SCAFFOLD"}.get(
        strategy["name"], strategy["name"]
    )
    if client.get("batch_size"):
        steps = client.get("local_steps") or client["local_epochs"]
        return f"{name} (minibatch {client['batch_size']} x {steps} steps)"
    return f"{name} (full batch)"


def rounds_to_99(rounds: list[dict[str, Any]], final: float) -> int | None:
    """First round whose global test C-index reaches 99% of ``final`` (None without curves)."""
    for record in rounds:
        value = record.get("c_index_test_global")
        if value is not None and value >= 0.99 * final:
            return int(record["round"])
    return None


def load(root: Path) -> list[dict[str, Any]]:
    runs = []
    for path in sorted(root.rglob("results.json")):
        res = json.loads(path.read_text())
        cfg, final = res["config"], res["final"]
        c = final["c_index_test"]["estimate"]
        runs.append(
            {
                "use_case": cfg["use_case"]["name"],
                "scenario": cfg["scenario"]["name"],
                "arm": arm_of(cfg),
                "seed": cfg["seed"]["split"],
                "c_index": c,
                "best_round": final["best_round"],
                "rounds_to_99": rounds_to_99(res["rounds"], c),
            }
        )
    return runs


def t_interval(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, low, high) of a 95% t-interval over the seeds (``report.sweep.seed_t_interval``)."""
    return seed_t_interval(values)


OUTCOMES = {
    "shown": "better than full-batch FedAvg",
    "shown otherwise": "worse than full-batch FedAvg",
    "not shown": "not shown either way",
}


def decide(low: float, high: float) -> str:
    """The report's three-outcome rule (``report.decide``, "above 0") in this table's words."""
    return OUTCOMES[decide_claim((low, high), "above").outcome.value]


def summarize(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], dict[str, dict[int, dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for run in runs:
        groups[(run["use_case"], run["scenario"])][run["arm"]][run["seed"]] = run
    rows = []
    for (case, scenario), arms in sorted(groups.items()):
        base = arms.get(BASELINE, {})
        for arm in sorted(arms, key=lambda a: (a != BASELINE, a)):
            seeds = arms[arm]
            keys = sorted(seeds)
            mean, low, high = t_interval(np.array([seeds[s]["c_index"] for s in keys]))
            reached = [seeds[s]["rounds_to_99"] for s in keys if seeds[s]["rounds_to_99"] is not None]
            row = {
                "use_case": case,
                "scenario": scenario,
                "arm": arm,
                "seeds": len(keys),
                "c_index": mean,
                "c_low": low,
                "c_high": high,
                "rounds_to_99_median": float(np.median(reached)) if reached else None,
                "best_round_median": float(np.median([seeds[s]["best_round"] for s in keys])),
            }
            paired = [s for s in keys if s in base]
            if arm != BASELINE and len(paired) >= 2:
                diff = np.array([seeds[s]["c_index"] - base[s]["c_index"] for s in paired])
                d, d_low, d_high = t_interval(diff)
                row |= {"diff": d, "diff_low": d_low, "diff_high": d_high, "decision": decide(d_low, d_high)}
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| use case | scenario | strategy | seeds | C-index [95% t over seeds] | − full-batch FedAvg [95% t] "
        "| decision | rounds to 99% (median) | selected round (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        diff = "–" if "diff" not in r else f"{r['diff']:+.4f} [{r['diff_low']:+.4f}, {r['diff_high']:+.4f}]"
        r99 = "–" if r["rounds_to_99_median"] is None else f"{r['rounds_to_99_median']:g}"
        lines.append(
            f"| {r['use_case']} | {r['scenario']} | {r['arm']} | {r['seeds']} | {r['c_index']:.3f} "
            f"[{r['c_low']:.3f}, {r['c_high']:.3f}] | {diff} | {r.get('decision', '–')} | {r99} "
            f"| {r['best_round_median']:g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path)
    args = parser.parse_args(argv)
    runs = load(args.root)
    if not runs:
        print(f"no results.json under {args.root}", file=sys.stderr)
        return 1
    rows = summarize(runs)
    table = markdown(rows)
    (args.root / "local_updates.md").write_text(table)
    with open(args.root / "local_updates.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
        writer.writeheader()
        writer.writerows(rows)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
