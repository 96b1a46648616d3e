"""Paired comparison of two generative sweeps by split seed: each sweep's means and the paired differences.

Usage: python experiments/synthetic/paired.py <sweep A>[,...] [<sweep B>[,...]] [--label-a A --label-b B]

Reads the global (or pooled) generator's final validation in every ``results.json`` under each
sweep folder (a comma-separated list is one arm), keyed by ``seed.split``. Prints, per headline
metric, A's mean with its 95 % t-interval over seeds, B's, and the paired A − B (per seed, then
its t-interval). Issue 17's target "train-on-synthetic C within 0.03 of train-on-real" is decided
on the lower bound of A's ``tstr_difference`` interval (``report.decide``: ΔC + 0.03 above 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from fedjax_rhd.report.decide import decide  # noqa: E402
from fedjax_rhd.report.sweep import seed_t_interval  # noqa: E402

METRICS = (
    ("tstr_difference", "TSTR ΔC (linear Cox)"),
    ("tstr_deepsurv_difference", "TSTR ΔC (DeepSurv)"),
    ("csf", "CSF"),
    ("gsf", "GSF"),
    ("quality_sdmetrics_style", "quality (SDMetrics-style)"),
    ("detection_auc", "detection AUC"),
    ("mia_auc", "MIA AUC"),
    ("dcr_closer_to_train_share", "closer to train"),
    ("nndr_p05", "NNDR p5"),
    ("validity_total", "impossible values"),
)


def by_seed(roots: str) -> dict[int, dict]:
    out = {}
    paths = [p for root in roots.split(",") for p in sorted(Path(root).rglob("results.json"))]
    for path in paths:
        res = json.loads(path.read_text())
        if res["final"].get("kind") != "generative":
            continue
        seed = int(res["config"]["seed"]["split"])
        if seed in out:
            raise SystemExit(f"{roots}: two runs of split seed {seed}")
        val = res["final"]["generative"]["validation"]
        out[seed] = {**val, "gate": float(val["privacy_gate"]["passed"])}
    return out


def _iv(values: list[float], signed: bool = False) -> str:
    mean, low, high = seed_t_interval(values)
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b", nargs="?")
    parser.add_argument("--label-a", default="A")
    parser.add_argument("--label-b", default="B")
    args = parser.parse_args(argv)
    a = by_seed(args.a)
    b = by_seed(args.b) if args.b else {}
    seeds = sorted(set(a) & set(b)) if b else sorted(a)
    head = f"| metric | {args.label_a} ({len(a)} seeds) |"
    if b:
        paired = f"paired {args.label_a} − {args.label_b} ({len(seeds)} seeds)"
        head += f" {args.label_b} ({len(b)} seeds) | {paired} | per seed |"
    print(head)
    print("|---" * (head.count("|") - 1) + "|")
    for key, label in (*METRICS, ("gate", "gate passed (share)")):
        va = [a[s][key] for s in sorted(a) if a[s].get(key) is not None]
        row = f"| {label} | {_iv(va)} |"
        if b:
            vb = [b[s][key] for s in sorted(b) if b[s].get(key) is not None]
            d = [
                a[s][key] - b[s][key]
                for s in seeds
                if a[s].get(key) is not None and b[s].get(key) is not None
            ]
            row += f" {_iv(vb)} | {_iv(d, signed=True)} | {', '.join(f'{x:+.3f}' for x in d)} |"
        print(row)
    tstr = [a[s]["tstr_difference"] for s in sorted(a)]
    _, low, high = seed_t_interval(tstr)
    verdict = decide((low + 0.03, high + 0.03), "above", 0.0)
    print(
        f"\n{args.label_a}: TSTR ΔC within 0.03 of train-on-real (lower bound > −0.03): "
        f"{verdict.outcome.value}"
        f" (95% CI {low:+.3f} to {high:+.3f}; seeds {sorted(a)})"
    )


if __name__ == "__main__":
    main()
