"""Real-cohort table: centralised, FedAvg and local DeepSurv against the clinical scores.

Reads the sweeps written by ``experiments/real_cohorts/run.sh`` (one folder per use
case, runs of ``strategy=centralized,fedavg,local`` over several ``seed.split``) and
writes ``comparison.md`` next to them:

* ``mds_iwgpm``: on each seed's test rows that have a stored IPSS-M (the rows the
  peer-library figures use), Harrell's C of centralised and FedAvg DeepSurv, every
  node's own (``local``) model, IPSS-M (recomputed, authors' mean scenario) and
  IPSS-R, beside the peer-library figures measured on the same cohort
  (``../shared/data/README.md``; centralised, 5 random 90/10 splits).
* ``aml_beat`` (natural split): centralised, FedAvg, each centre with FL and alone,
  and ELN on the rows it scores.

Differences are paired bootstraps on the same test rows, averaged over seeds.

Usage:  python experiments/real_cohorts/compare.py multirun/real_cohorts [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from experiments.foundation.compare import load_runs, paired_mean_difference  # noqa: E402
from fedjax_rhd.metrics.concordance import concordance_index  # noqa: E402

# ../shared/data/README.md: centralised libraries on IWG-PM, 5 random 90/10 splits,
# Harrell's C on test rows with a stored IPSS-M.
PEER_LIBRARIES = {
    "random survival forest (scikit-survival)": 0.742,
    "penalised Cox (lifelines)": 0.739,
    "gradient-boosted Cox (scikit-survival)": 0.735,
    "DeepSurv (pycox)": 0.732,
    "stored IPSS-M (in-sample)": 0.752,
    "IPSS-R": 0.705,
}


def cidx(pred: pl.DataFrame, column: str) -> float:
    return concordance_index(pred["time"].to_numpy(), pred["event"].to_numpy(), pred[column].to_numpy())


def _table(header: list[str], rows: list[list], lines: list[str]) -> None:
    values = np.array([[np.nan if v is None else v for v in r[1:]] for r in rows], dtype=float)
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "---|" * len(header))
    for r in rows:
        lines.append(
            "| " + " | ".join([str(r[0]), *["n/a" if v is None else f"{v:.3f}" for v in r[1:]]]) + " |"
        )
    mean = np.nanmean(values, axis=0)
    sd = np.nanstd(values, axis=0, ddof=1) if len(rows) > 1 else np.zeros_like(mean)
    lines.append(
        "| mean ± sd | " + " | ".join(f"{m:.3f} ± {s:.3f}" for m, s in zip(mean, sd, strict=True)) + " |"
    )


def _diffs(comparisons: dict[str, list], n_boot: int, lines: list[str]) -> None:
    lines.append("\nPaired bootstrap on the same test rows (mean over seeds, 95% CI):\n")
    for label, pairs in comparisons.items():
        d = paired_mean_difference(pairs, n_boot)
        lines.append(f"- {label}: {d['difference']:+.4f} [{d['ci_low']:+.4f}, {d['ci_high']:+.4f}]")


def mds_section(runs: dict, n_boot: int, lines: list[str]) -> None:
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    fed0 = runs["fedavg"][seeds[0]][0]
    nodes = [n["name"] for n in fed0["final"]["nodes"]]
    shares = [n["share"] for n in fed0["final"]["nodes"]]
    header = ["seed.split", "n rows", "centralised", "FedAvg global"]
    header += [f"{n} alone ({s:.0%})" for n, s in zip(nodes, shares, strict=True)]
    header += ["IPSS-M (recomputed)", "IPSS-R"]
    rows, pairs = [], defaultdict(list)
    for seed in seeds:
        keep = runs["fedavg"][seed][1]["score_ipssm_stored"].is_not_null()
        fed, cen, loc = (runs[s][seed][1].filter(keep) for s in ("fedavg", "centralized", "local"))
        ipssr_rows = fed.filter(pl.col("score_ipssr").is_not_null())
        rows.append(
            [seed, fed.height, cidx(cen, "risk"), cidx(fed, "risk")]
            + [cidx(loc, f"risk_{n}") for n in nodes]
            + [cidx(fed, "clinical_score"), cidx(ipssr_rows, "score_ipssr")]
        )
        pairs["FedAvg global − centralised"].append((fed, "risk", cen, "risk"))
        pairs["FedAvg global − IPSS-M"].append((fed, "risk", fed, "clinical_score"))
        pairs["centralised − IPSS-M"].append((cen, "risk", cen, "clinical_score"))
        pairs[f"{nodes[-1]} alone − FedAvg global"].append((loc, f"risk_{nodes[-1]}", fed, "risk"))
    lines.append(f"### mds_iwgpm, split=five, {len(seeds)} split seeds, test rows with a stored IPSS-M\n")
    table_rows = [[r[0], *r[2:]] for r in rows]
    _table([header[0], *header[2:]], table_rows, lines)
    lines.append(f"\nTest rows with a stored IPSS-M per seed: {[r[1] for r in rows]}.")
    _diffs(pairs, n_boot, lines)
    lines.append(
        "\nPeer libraries on this cohort (../shared/data/README.md; centralised, 5 random 90/10 splits):\n"
    )
    for name, value in PEER_LIBRARIES.items():
        lines.append(f"- {name}: {value:.3f}")
    lines.append("")


def aml_section(runs: dict, n_boot: int, lines: list[str]) -> None:
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    # Centres largest first, as the data layer orders nodes (names are stable across seeds).
    nodes = [n["name"] for n in runs["fedavg"][seeds[0]][0]["final"]["nodes"]]
    header = ["seed.split", "centralised", "FedAvg global"]
    header += [f"{n} with FL" for n in nodes] + [f"{n} alone" for n in nodes]
    header += ["ELN (scored rows)", "FedAvg (same rows)"]
    rows, pairs = [], defaultdict(list)
    for seed in seeds:
        fed, cen, loc = (runs[s][seed][1] for s in ("fedavg", "centralized", "local"))
        scored = fed.filter(pl.col("clinical_score").is_not_null())
        rows.append(
            [seed, cidx(cen, "risk"), cidx(fed, "risk")]
            + [cidx(fed, f"risk_{n}") for n in nodes]
            + [cidx(loc, f"risk_{n}") for n in nodes]
            + [cidx(scored, "clinical_score"), cidx(scored, "risk")]
        )
        pairs["FedAvg global − centralised"].append((fed, "risk", cen, "risk"))
        pairs["FedAvg global − ELN (scored rows)"].append((scored, "risk", scored, "clinical_score"))
        for n in nodes[-2:]:
            pairs[f"{n} with FL − {n} alone"].append((fed, f"risk_{n}", loc, f"risk_{n}"))
        pairs[f"{nodes[0]} alone − FedAvg global"].append((loc, f"risk_{nodes[0]}", fed, "risk"))
    res0 = runs["fedavg"][seeds[0]][0]
    sizes = ", ".join(f"{n['name']} {n['n_train']}+{n['n_val']}" for n in res0["final"]["nodes"])
    lines.append(f"### aml_beat, split=natural, {len(seeds)} split seeds, all test rows\n")
    lines.append(f"Training + validation patients per centre (seed {seeds[0]}): {sizes}.\n")
    _table(header, rows, lines)
    _diffs(pairs, n_boot, lines)
    lines.append("")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    lines: list[str] = []
    for use_case, section in (("mds_iwgpm", mds_section), ("aml_beat", aml_section)):
        folder = args.root / use_case
        if not folder.is_dir():
            print(f"{folder}: no sweep; skipping {use_case}")
            continue
        by_strategy: dict[str, dict] = defaultdict(dict)
        for (_, strategy, seed), run in load_runs([folder]).items():
            by_strategy[strategy][seed] = run
        section(by_strategy, args.n_boot, lines)
    text = "\n".join(lines)
    print(text)
    (args.root / "comparison.md").write_text(text)


if __name__ == "__main__":
    main()
