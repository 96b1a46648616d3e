"""The study's Figure 3 and its table: synthetic fidelity, FL vs centralised vs each node alone.

Usage: python experiments/synthetic/figure3.py <sweep dir>... --out <dir> [--margin 0.02]

Reads the generative runs under the sweep folders (``fedjax-rhd -m +experiment=vae_bgm
strategy=fedavg,centralized,local seed.split=... fidelity_every=k``) and writes into ``--out``:
``figure3.md`` (the report's synthetic table, then paired comparisons per split seed) and
``figures/fidelity_*.png`` (CSF and GSF per round, mean over split seeds with a 95% t-interval;
``fedjax_rhd.report.synthetic``). The comparisons pair each split seed's federated generator
(every strategy other than centralised and local: FedAvg, or the Bayesian network's
``bn_two_step``) with that seed's centralised and node-alone generators on the final
validation's CSF and GSF; each claim is decided on its t-interval over the seeds
(``report.decide``): the federated generator within ``margin`` of centralised, above each node
alone. A model without rounds to plot (``model=bn``) gets the table and comparisons, no figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedjax_rhd.report.decide import decide
from fedjax_rhd.report.runs import CENTRALIZED, LOCAL, ReportInputError, Run, find_runs
from fedjax_rhd.report.sweep import provenance, seed_t_interval
from fedjax_rhd.report.synthetic import markdown_section, plot_fidelity, synthetic_rows


def _final(run: Run, trained_on: str | None, metric: str) -> float | None:
    """``metric`` of the run's generator trained on ``trained_on`` (None: the run's main generator)."""
    gen = run.results["final"]["generative"]
    for block in [gen, *gen.get("nodes", [])]:
        if trained_on in (None, block["trained_on"]) and block["validation"] is not None:
            return block["validation"][metric]
    return None


def _name(strategy: str) -> str:
    return {"fedavg": "FedAvg"}.get(strategy, strategy)


def comparisons(runs: list[Run], margin: float) -> list[str]:
    """One line per (row key, federated strategy, metric, comparison): mean paired difference, decision."""
    lines = []
    for key in dict.fromkeys(r.row for r in runs):
        mine = [r for r in runs if r.row == key]
        cen = {r.seed: r for r in mine if r.strategy == CENTRALIZED}
        loc = {r.seed: r for r in mine if r.strategy == LOCAL}
        nodes = [n["name"] for n in next(iter(loc.values())).results["final"]["nodes"]] if loc else []
        pairs = [("centralised", cen, "pooled", "within", margin)]
        pairs += [(f"{n} alone", loc, n, "above", 0.0) for n in nodes]
        lines.append(f"### {key.use_case}, {key.scenario}, split {key.split}, model {key.model}")
        lines.append("")
        federated = sorted({r.strategy for r in mine} - {CENTRALIZED, LOCAL})
        for strategy in federated:  # each federated generator paired on its own (e.g. fedavg, sd_sharing)
            fl = {r.seed: r for r in mine if r.strategy == strategy}
            for metric in ("csf", "gsf"):
                for name, other, trained_on, claim, threshold in pairs:
                    label = f"{metric.upper()} {_name(strategy)} − {name}"
                    seeds = sorted(set(fl) & set(other))
                    # the federated run's main generator: FedAvg's global model, the two-step network or
                    # sd_sharing's pool; a seed whose pool was not validated (every node refused) is left out
                    pairs_found = [
                        (_final(fl[s], None, metric), _final(other[s], trained_on, metric)) for s in seeds
                    ]
                    diffs = [a - b for a, b in pairs_found if a is not None and b is not None]
                    if len(diffs) < 2:
                        lines.append(f"- {label}: fewer than two paired seeds")
                        continue
                    mean, low, high = seed_t_interval(diffs)
                    verdict = decide((low, high), claim, threshold).text
                    per_seed = ", ".join(f"{d:+.3f}" for d in diffs)
                    lines.append(
                        f"- {label}: {mean:+.3f} over {len(diffs)} seeds (per seed {per_seed}); {verdict}"
                    )
        lines.append("")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--margin", type=float, default=0.02, help="FedAvg vs centralised equivalence margin")
    args = parser.parse_args(argv)
    try:
        runs = [r for r in find_runs(args.dirs) if r.generative]
    except ReportInputError as err:
        raise SystemExit(f"figure3.py: {err}") from None
    if not runs:
        raise SystemExit(f"no generative runs under {', '.join(map(str, args.dirs))}")
    rows = synthetic_rows(runs)
    args.out.mkdir(parents=True, exist_ok=True)
    figures = {k: plot_fidelity(k, runs, args.out / "figures") for k in dict.fromkeys(r.key for r in rows)}
    text = [
        provenance("experiments/synthetic/figure3.py", argv),
        "",
        markdown_section(rows, figures, args.out),
    ]
    text += ["## Paired by split seed (final validation)", "", *comparisons(runs, args.margin)]
    (args.out / "figure3.md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


if __name__ == "__main__":
    main()
