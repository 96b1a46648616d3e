"""Compare FedAvg's variants with centralised training over several split seeds.

Reads the run directories of a sweep such as

    fedjax-rhd -m strategy=fedavg,fedprox,fedavgm,fedadam,fedyogi,fedadagrad,centralized \
        split=five seed.split=0,1,2,3,4 progress=false hydra.sweep.dir=multirun/strategies

and prints (and writes as Markdown next to the sweep) per strategy: the test
C-index of the selected global model (mean ± sd over split seeds), the paired
bootstrap difference to FedAvg and to centralised on the same test rows, and
the rounds needed to reach 99% of the final C-index (the first round whose
global-model test C-index is at least 0.99 × the selected model's). The test
curve is only read here, after the fact; rounds were selected by federated
validation loss during training. Differences are means over split seeds with the cluster
bootstrap of ``fedjax_rhd.report.cluster`` (split seeds, patients shared between the seeds'
test sets drawn once, training replicates when a sweep has several per split seed), and
each is decided on its interval (shown above 0 / below 0 / not shown).

Usage:  python experiments/strategies/compare.py multirun/strategies [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from fedjax_rhd.report import sweep  # noqa: E402
from fedjax_rhd.report.decide import decide  # noqa: E402

ORDER = ("centralized", "fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
LABEL = {
    "centralized": "centralised",
    "fedavg": "FedAvg",
    "fedprox": "FedProx",
    "fedavgm": "FedAvgM",
    "fedadam": "FedAdam",
    "fedyogi": "FedYogi",
    "fedadagrad": "FedAdagrad",
}


def curve(results: dict) -> list[float]:
    """Test C-index per round of the model the strategy would deliver at that round."""
    return [r.get("c_index_test_global", r["c_index_test_nodes"][0]) for r in results["rounds"]]


def rounds_to_fraction(results: dict, fraction: float = 0.99) -> int | None:
    """First round whose test C-index reaches ``fraction`` × the final (selected) model's."""
    target = fraction * results["final"]["c_index_test"]["estimate"]
    for r, c in zip((x["round"] for x in results["rounds"]), curve(results), strict=True):
        if c >= target:
            return int(r)
    return None


def _cell(d) -> str:
    return f"{sweep.fmt(d, True, 4)} ({decide(d, 'above').short})"


def _mean_c(reps: list[sweep.SweepRun], column: str) -> float:
    return float(np.mean([sweep.c_index(r.predictions, column) for r in reps]))


def personalised_section(strategies: dict[str, dict], seeds: list[int], n_boot: int) -> list[str]:
    """Fine-tuned node models (``strategy.finetune_epochs``) against the same node with FL."""
    out: list[str] = []
    for s in ORDER:
        runs = strategies.get(s, {})
        if not seeds or any(
            k not in runs or "personalized" not in runs[k][0].results["final"] for k in seeds
        ):
            continue
        epochs = runs[seeds[0]][0].results["final"]["personalized"]["epochs"]
        names = [n["name"] for n in runs[seeds[0]][0].results["final"]["nodes"]]
        out.append(
            f"Personalised {LABEL[s]}: each node fine-tunes the final global model for {epochs} steps\n"
        )
        out.append("| node | with FL | fine-tuned | fine-tuned − with FL [95% CI] |")
        out.append("|---|---|---|---|")
        for n in names:
            fl = np.mean([_mean_c(runs[k], f"risk_{n}") for k in seeds])
            ft = np.mean([_mean_c(runs[k], f"risk_{n}_finetuned") for k in seeds])
            d = sweep.cluster_interval(
                {k: [(r.predictions, f"risk_{n}_finetuned") for r in runs[k]] for k in seeds},
                {k: [(r.predictions, f"risk_{n}") for r in runs[k]] for k in seeds},
                n_boot=n_boot,
            )
            out.append(f"| {n} | {fl:.4f} | {ft:.4f} | {_cell(d)} |")
        out += ["", f"Intervals resample: {d.covers}.", ""]
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    by_split: dict[str, dict[str, dict]] = defaultdict(dict)
    for (split, strategy), seeds in sweep.by_split_seed(
        sweep.load_sweep(args.roots), "split.name", "strategy.name"
    ).items():
        by_split[split][strategy] = seeds

    lines: list[str] = [sweep.provenance("experiments/strategies/compare.py", argv), ""]
    covers: set[str] = set()
    for split, strategies in sorted(by_split.items()):
        present = [s for s in ORDER if s in strategies]
        seeds = sorted(set.intersection(*(set(strategies[s]) for s in present)))
        if "fedavg" not in present or not seeds:
            print(f"split {split}: no FedAvg runs on common seeds; skipping")
            continue
        lines.append(
            f"### split={split}, {len(seeds)} split seeds ({', '.join(map(str, seeds))}), DeepSurv\n"
        )
        header = [
            "strategy",
            "test C-index, mean ± sd",
            "− FedAvg [95% CI]",
            "− centralised [95% CI]",
            "rounds to 99% of final (per seed)",
            "mean",
            "best round (mean)",
            "rounds run (mean)",
        ]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "---|" * len(header))
        for s in present:
            cs = np.array([_mean_c(strategies[s][k], "risk") for k in seeds])
            cells = [LABEL[s], f"{cs.mean():.4f} ± {cs.std(ddof=1) if len(seeds) > 1 else 0.0:.4f}"]
            for ref in ("fedavg", "centralized"):
                if ref == s or ref not in strategies:
                    cells.append("—")
                    continue
                d = sweep.cluster_interval(
                    {k: [(r.predictions, "risk") for r in strategies[s][k]] for k in seeds},
                    {k: [(r.predictions, "risk") for r in strategies[ref][k]] for k in seeds},
                    n_boot=args.n_boot,
                )
                covers.add(d.covers)
                cells.append(_cell(d))
            first = {k: strategies[s][k][0].results for k in seeds}  # rounds: the first training replicate
            reach = [rounds_to_fraction(first[k]) for k in seeds]
            shown = [str(r) if r is not None else "never" for r in reach]
            reached = [r for r in reach if r is not None]
            cells.append(", ".join(shown))
            cells.append(f"{np.mean(reached):.1f}" if reached else "—")
            cells.append(f"{np.mean([first[k]['final']['best_round'] for k in seeds]):.1f}")
            cells.append(f"{np.mean([len(first[k]['rounds']) for k in seeds]):.1f}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines.extend(personalised_section(strategies, seeds, args.n_boot))
    lines += [f"Intervals resample: {c}." for c in sorted(covers)]
    text = "\n".join(lines)
    print(text)
    (args.roots[0] / "strategies.md").write_text(text)


if __name__ == "__main__":
    main()
