"""With vs without a data layer (slides on ``mds_wsi``, PET on ``mm``), paired on the same test rows.

    PYTHONPATH=. python experiments/simulation/compare_layers.py WITH_DIR WITHOUT_DIR [--label NAME]

Both multiruns use the same split seeds, so every (strategy, seed) pair has the same
test patients in the same order (checked). Per strategy: Harrell's C of each arm (mean over
split seeds and training replicates) and the mean difference with a 95% interval from the
cluster bootstrap of ``fedjax_rhd.report.cluster`` (split seeds drawn with replacement, every
test patient drawn once per replicate for both arms and all seeds, training replicates drawn
inside each seed), decided on its bounds (above 0 shown / not shown / shown otherwise).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fedjax_rhd.report import sweep  # noqa: E402
from fedjax_rhd.report.decide import decide  # noqa: E402


def _runs(root: Path) -> dict[str, dict[int, list[sweep.SweepRun]]]:
    """strategy -> split seed -> training replicates, best scenario only."""
    best = [r for r in sweep.load_sweep([root]) if r.config("scenario.name") == "best"]
    return {k[0]: v for k, v in sweep.by_split_seed(best, "strategy.name").items()}


def compare(with_dir: Path, without_dir: Path, n_boot: int = 1000, seed: int = 0) -> list[str]:
    a, b = _runs(with_dir), _runs(without_dir)
    lines = [
        "| strategy | seeds | C with | C without | mean diff [95% cluster bootstrap] | with > without? "
        "| seeds with > without |",
        "|---|---|---|---|---|---|---|",
    ]
    covers = set()
    for strategy in sorted(set(a) & set(b)):
        seeds = sorted(set(a[strategy]) & set(b[strategy]))
        if not seeds:
            continue
        side_a = {s: [(r.predictions, "risk") for r in a[strategy][s]] for s in seeds}
        side_b = {s: [(r.predictions, "risk") for r in b[strategy][s]] for s in seeds}
        ca = np.array([np.mean([sweep.c_index(p, c) for p, c in side_a[s]]) for s in seeds])
        cb = np.array([np.mean([sweep.c_index(p, c) for p, c in side_b[s]]) for s in seeds])
        d = sweep.cluster_interval(side_a, side_b, n_boot=n_boot, boot_seed=seed)
        covers.add(d.covers)
        lines.append(
            f"| {strategy} | {','.join(map(str, seeds))} | {ca.mean():.3f} | {cb.mean():.3f} | "
            f"{sweep.fmt(d, True)} | {decide(d, 'above').short} | {int((ca > cb).sum())}/{len(seeds)} |"
        )
    return [*lines, "", *(f"Intervals resample: {c}." for c in sorted(covers))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("with_dir", type=Path)
    parser.add_argument("without_dir", type=Path)
    parser.add_argument("--label", default="")
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    print(sweep.provenance("experiments/simulation/compare_layers.py", argv) + "\n")
    if args.label:
        print(f"### {args.label}\n")
    print("\n".join(compare(args.with_dir, args.without_dir, args.n_boot)))


if __name__ == "__main__":
    main()
