"""Tuned FedAvg DeepSurv against tuned peer libraries and the clinical score, on the same test rows.

Reads, for each cohort under ``ROOT`` (``mds_iwgpm``, ``aml_beat``):

* ``ROOT/<cohort>/seed_<s>/``: ``experiments/tuning/run.py``'s output (the search on seed ``s``'s
  training and validation rows, its best trial's run = the tuned FedAvg DeepSurv, and a run of the
  defaults);
* ``ROOT/peers/<cohort>/seed_<s>/peers.parquet``: ``peers.py``'s peers, tuned on the same validation
  rows and refitted on the same training + validation rows.

and writes ``ROOT/tuned.md``: per split seed, Harrell's C of tuned and default FedAvg, every peer and
the clinical score (IPSS-M recomputed on IWG-PM's test rows that have a stored IPSS-M, the rows
``compare.py`` and ``peer_cox.py`` use; ELN on the Beat AML rows it scores); the choices; and the
paired differences, mean over split seeds with the cluster bootstrap
(``fedjax_rhd.report.sweep.cluster_interval``), decided on the interval's bounds
(``fedjax_rhd.report.decide``). "Within 0.005 of the score" is decided as non-inferiority with a
0.005 margin: tuned − score > −0.005 on the whole interval.

Usage:  python experiments/real_cohorts/tuned.py ROOT [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout

from fedjax_rhd.report.decide import decide  # noqa: E402
from fedjax_rhd.report.sweep import c_index, cluster_interval, fmt, load_sweep, provenance  # noqa: E402

PEERS = {
    "risk_cox": "penalised Cox",
    "risk_rsf": "random survival forest",
    "risk_gbcox": "gradient-boosted Cox",
}
COHORTS = {  # cohort -> (score label, the rows kept: MDS on a stored IPSS-M, as compare.py)
    "mds_iwgpm": ("IPSS-M", "score_ipssm_stored"),
    "aml_beat": ("ELN 2022", None),
}
MARGIN = 0.005  # the target: tuned FedAvg within 0.005 of IPSS-M's in-sample C


def _seeds(folder: Path) -> list[int]:
    return sorted(int(p.name.split("_")[1]) for p in folder.glob("seed_*") if p.is_dir())


def seed_rows(tuning: Path, peers: Path, seed: int, keep: str | None) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One seed's test rows: tuned and default FedAvg risks, the peers' risks, the clinical score."""
    best = json.loads((tuning / f"seed_{seed}" / "search" / "search.json").read_text())["best"]
    (tuned,) = load_sweep([Path(best["run_dir"])])
    (default,) = load_sweep([tuning / f"seed_{seed}" / "default"])
    peer = pl.read_parquet(peers / f"seed_{seed}" / "peers.parquet")
    ids = tuned.predictions["patient_id"]
    for name, other in (("default run", default.predictions["patient_id"]), ("peers", peer["patient_id"])):
        if not other.equals(ids):
            raise ValueError(f"seed {seed}: the {name}' test rows differ from the tuned run's")
    rows = tuned.predictions.with_columns(
        default.predictions["risk"].alias("risk_default"), *(peer[c] for c in PEERS)
    )
    if keep is not None:
        rows = rows.filter(pl.col(keep).is_not_null())
    meta = json.loads((peers / f"seed_{seed}" / "peers.json").read_text())
    choice = {
        "best_trial": best["number"],
        "tuned_params": best["params"],
        "objective_tuned": best["value"],
        "objective_default": default.results["final"]["validation_objective"],
        "peers": {k: v["chosen"] for k, v in meta["peers"].items()},
    }
    return rows, choice


def _pair(rows: dict[int, pl.DataFrame], a: str, b: str, n_boot: int) -> Any:
    return cluster_interval({s: [(r, a)] for s, r in rows.items()}, {s: [(r, b)] for s, r in rows.items()},
                            n_boot=n_boot)  # fmt: skip


def cohort_section(name: str, tuning: Path, peers: Path, n_boot: int) -> tuple[list[str], dict[str, Any]]:
    """The cohort's table, choices and decided differences (Markdown lines) and a JSON summary."""
    score, keep = COHORTS[name]
    seeds = sorted(set(_seeds(tuning)) & set(_seeds(peers)))
    rows, choices = {}, {}
    for s in seeds:
        rows[s], choices[s] = seed_rows(tuning, peers, s, keep)
    columns = {"risk": "tuned FedAvg DeepSurv", "risk_default": "default FedAvg DeepSurv", **PEERS}
    where = "test rows with a stored IPSS-M" if keep else "all test rows (the score on the rows it scores)"
    lines = [
        f"### {name}, {len(seeds)} split seeds, {where}",
        "",
        "| seed.split | n rows | " + " | ".join(columns.values()) + f" | {score} |",
        "|" + "---|" * (len(columns) + 3),
    ]
    table = []
    for s in seeds:
        cs = [c_index(rows[s], c) for c in columns] + [c_index(rows[s], "clinical_score")]
        table.append(cs)
        lines.append(f"| {s} | {rows[s].height} | " + " | ".join(f"{c:.3f}" for c in cs) + " |")
    values = np.array(table)
    sd = values.std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros(values.shape[1])
    lines.append(
        "| mean ± sd | | "
        + " | ".join(f"{m:.3f} ± {d:.3f}" for m, d in zip(values.mean(0), sd, strict=True))
        + " |"
    )
    lines += ["", "Choices (each made on the seed's validation rows before any test C-index):", ""]
    lines += [
        "| seed.split | DeepSurv (best trial; validation loss tuned / default) | peers |",
        "|---|---|---|",
    ]
    for s in seeds:
        c = choices[s]
        params = ", ".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in c["tuned_params"].items())
        peer = "; ".join(
            f"{k}: " + ", ".join(f"{a}={_short(b)}" for a, b in v.items()) for k, v in c["peers"].items()
        )
        lines.append(
            f"| {s} | trial {c['best_trial']}: {params} ({c['objective_tuned']:.4f} / "
            f"{c['objective_default']:.4f}) | {peer} |"
        )
    lines += ["", "Paired differences on the same rows (mean over split seeds, 95% cluster bootstrap):", ""]
    summary: dict[str, Any] = {
        "seeds": seeds,
        "c_index_mean": dict(zip([*columns, score], values.mean(0).tolist(), strict=True)),
    }
    claims = [(f"tuned FedAvg − {label}", "risk", col, "above", 0.0) for col, label in PEERS.items()]
    claims += [("tuned FedAvg − default FedAvg", "risk", "risk_default", "above", 0.0)]
    claims += [(f"tuned FedAvg − {score}", "risk", "clinical_score", "above", 0.0)]
    covers = set()
    for label, a, b, claim, threshold in claims:
        d = _pair(rows, a, b, n_boot)
        covers.add(d.covers)
        lines.append(f"- {label}: {fmt(d, True, 4)}; {decide(d, claim, threshold).text}")
        summary[label] = {"estimate": d.estimate, "low": d.ci_low, "high": d.ci_high}
    d = _pair(rows, "risk", "clinical_score", n_boot)
    near = decide((d.ci_low + MARGIN, d.ci_high + MARGIN), "above")
    lines.append(
        f"- tuned FedAvg no more than {MARGIN} below {score} (tuned − {score} > −{MARGIN}): "
        f"{near.outcome.value} (95% CI {d.ci_low:+.3f} to {d.ci_high:+.3f}; point gap {d.estimate:+.4f})"
    )
    summary["within_margin_of_score"] = near.outcome.value
    lines += ["", *(f"Intervals resample: {c}." for c in sorted(covers)), ""]
    return lines, summary


def _short(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Write ``ROOT/tuned.md`` and ``ROOT/tuned.json`` for every cohort found under ``ROOT``."""
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("root", type=Path)
    p.add_argument("--n-boot", type=int, default=1000)
    args = p.parse_args(argv)
    lines = [provenance("experiments/real_cohorts/tuned.py", argv if argv is not None else sys.argv[1:]), ""]
    summary = {}
    for name in COHORTS:
        tuning, peers = args.root / name, args.root / "peers" / name
        if not (tuning.is_dir() and peers.is_dir()):
            print(f"{tuning} or {peers}: missing; skipping {name}")
            continue
        section, summary[name] = cohort_section(name, tuning, peers, args.n_boot)
        lines += section
    text = "\n".join(lines)
    (args.root / "tuned.md").write_text(text + "\n")
    (args.root / "tuned.json").write_text(json.dumps(summary, indent=1) + "\n")
    print(text)
    return summary


if __name__ == "__main__":
    main()
