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

Per-seed cells are means over training replicates (``seed.init``/``seed.train``) when a
sweep has several. Differences are means over split seeds of paired differences on the
same test rows, with the cluster bootstrap of ``fedjax_rhd.report.cluster`` (split seeds,
patients shared between seeds' test sets drawn once, training replicates); each line says
what its interval covers.

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

from fedjax_rhd.report.decide import decide  # noqa: E402
from fedjax_rhd.report.sweep import by_split_seed, cluster_interval, load_sweep, provenance  # noqa: E402
from fedjax_rhd.report.sweep import c_index as cidx  # noqa: E402

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


def _c(reps: list[pl.DataFrame], column: str) -> float:
    """Mean over training replicates of one split seed."""
    return float(np.mean([cidx(p, column) for p in reps]))


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


def _diffs(comparisons: dict[str, dict[int, tuple[list, list]]], n_boot: int, lines: list[str]) -> None:
    lines.append(
        "\nPaired differences on the same test rows (mean over split seeds, 95% cluster bootstrap):\n"
    )
    covers = set()
    for label, by_seed in comparisons.items():
        d = cluster_interval({s: a for s, (a, _) in by_seed.items()}, {s: b for s, (_, b) in by_seed.items()},
                             n_boot=n_boot)  # fmt: skip
        covers.add(d.covers)
        lines.append(f"- {label}: {d.estimate:+.4f}; {decide(d, 'above').text}")
    lines += ["", *(f"Intervals resample: {c}." for c in sorted(covers))]


def mds_section(runs: dict, n_boot: int, lines: list[str]) -> None:
    seeds = sorted(set.intersection(*(set(r) for r in runs.values())))
    fed0 = runs["fedavg"][seeds[0]][0].results
    nodes = [n["name"] for n in fed0["final"]["nodes"]]
    shares = [n["share"] for n in fed0["final"]["nodes"]]
    header = ["seed.split", "n rows", "centralised", "FedAvg global"]
    header += [f"{n} alone ({s:.0%})" for n, s in zip(nodes, shares, strict=True)]
    header += ["IPSS-M (recomputed)", "IPSS-R"]
    rows, pairs = [], defaultdict(dict)
    for seed in seeds:
        keep = runs["fedavg"][seed][0].predictions["score_ipssm_stored"].is_not_null()
        fed, cen, loc = (
            [r.predictions.filter(keep) for r in runs[s][seed]] for s in ("fedavg", "centralized", "local")
        )
        rows.append(
            [seed, fed[0].height, _c(cen, "risk"), _c(fed, "risk")]
            + [_c(loc, f"risk_{n}") for n in nodes]
            + [_c(fed, "clinical_score"), _c(fed, "score_ipssr")]
        )
        pairs["FedAvg global − centralised"][seed] = ([(f, "risk") for f in fed], [(f, "risk") for f in cen])
        pairs["FedAvg global − IPSS-M"][seed] = ([(f, "risk") for f in fed], [(fed[0], "clinical_score")])
        pairs["centralised − IPSS-M"][seed] = ([(f, "risk") for f in cen], [(cen[0], "clinical_score")])
        pairs[f"{nodes[-1]} alone − FedAvg global"][seed] = (
            [(f, f"risk_{nodes[-1]}") for f in loc],
            [(f, "risk") for f in fed],
        )
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
    nodes = [n["name"] for n in runs["fedavg"][seeds[0]][0].results["final"]["nodes"]]
    header = ["seed.split", "centralised", "FedAvg global"]
    header += [f"{n} with FL" for n in nodes] + [f"{n} alone" for n in nodes]
    header += ["ELN (scored rows)", "FedAvg (same rows)"]
    rows, pairs = [], defaultdict(dict)
    for seed in seeds:
        fed, cen, loc = ([r.predictions for r in runs[s][seed]] for s in ("fedavg", "centralized", "local"))
        scored = [f.filter(pl.col("clinical_score").is_not_null()) for f in fed]
        rows.append(
            [seed, _c(cen, "risk"), _c(fed, "risk")]
            + [_c(fed, f"risk_{n}") for n in nodes]
            + [_c(loc, f"risk_{n}") for n in nodes]
            + [_c(scored, "clinical_score"), _c(scored, "risk")]
        )
        pairs["FedAvg global − centralised"][seed] = ([(f, "risk") for f in fed], [(f, "risk") for f in cen])
        pairs["FedAvg global − ELN (scored rows)"][seed] = (
            [(f, "risk") for f in scored],
            [(scored[0], "clinical_score")],
        )
        for n in nodes[-2:]:
            pairs[f"{n} with FL − {n} alone"][seed] = (
                [(f, f"risk_{n}") for f in fed],
                [(f, f"risk_{n}") for f in loc],
            )
        pairs[f"{nodes[0]} alone − FedAvg global"][seed] = (
            [(f, f"risk_{nodes[0]}") for f in loc],
            [(f, "risk") for f in fed],
        )
    res0 = runs["fedavg"][seeds[0]][0].results
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
    lines: list[str] = [provenance("experiments/real_cohorts/compare.py", argv), ""]
    for use_case, section in (("mds_iwgpm", mds_section), ("aml_beat", aml_section)):
        folder = args.root / use_case
        if not folder.is_dir():
            print(f"{folder}: no sweep; skipping {use_case}")
            continue
        by_strategy = {k[0]: v for k, v in by_split_seed(load_sweep([folder]), "strategy.name").items()}
        section(by_strategy, args.n_boot, lines)
    text = "\n".join(lines)
    print(text)
    (args.root / "comparison.md").write_text(text)


if __name__ == "__main__":
    main()
