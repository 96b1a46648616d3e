"""Pick each strategy's server (or proximal) hyperparameter by federated validation loss.

Reads the run directories of tuning sweeps (see README.md next to this file) and,
per strategy and hyperparameter setting, averages over split seeds the federated
validation loss of the selected round (the patients-weighted mean of the nodes'
validation losses, the same criterion that picks the round). The test set is
not read. Prints a table and the best setting per strategy.

Usage:  python experiments/strategies/tune.py multirun/tune [more roots]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

KNOBS = {
    "fedprox": ("client", "proximal_mu"),
    "fedavgm": ("server", "momentum"),
    "fedadam": ("server", "learning_rate"),
    "fedyogi": ("server", "learning_rate"),
    "fedadagrad": ("server", "learning_rate"),
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    args = parser.parse_args(argv)
    losses: dict[tuple[str, str, float], dict[int, float]] = defaultdict(dict)
    for root in args.roots:
        for path in sorted(root.rglob("results.json")):
            res = json.loads(path.read_text())
            s = res["config"]["strategy"]
            if s["name"] not in KNOBS:
                continue
            group, key = KNOBS[s["name"]]
            best = res["final"]["best_round"]
            val = next(r["val_loss_federated"] for r in res["rounds"] if r["round"] == best)
            losses[(s["name"], f"{group}.{key}", float(s[group][key]))][
                int(res["config"]["seed"]["split"])
            ] = val
    print("| strategy | knob | value | federated val loss at the selected round, mean over seeds | seeds |")
    print("|---|---|---|---|---|")
    best: dict[str, tuple[float, float]] = {}
    for (name, knob, value), per_seed in sorted(losses.items()):
        mean = float(np.mean(list(per_seed.values())))
        print(f"| {name} | {knob} | {value:g} | {mean:.5f} | {len(per_seed)} |")
        if name not in best or mean < best[name][1]:
            best[name] = (value, mean)
    print()
    for name, (value, mean) in best.items():
        print(f"{name}: {'.'.join(KNOBS[name])} = {value:g} (val loss {mean:.5f})")


if __name__ == "__main__":
    main()
