"""Leave one centre out on Beat AML: FedAvg vs centralised vs each centre alone vs ELN 2022, held-out centre.

Internal-external validation (Steyerberg & Harrell 2016, J Clin Epidemiol 69:245-7): each real
centre of the cohort is held out in turn (``split=natural split.holdout_centre=<centre>``: every row
of that centre is the test set and reaches no node), the remaining centres are federated by centre,
and the models are scored on the held-out centre's rows by ``fedjax-rhd-score``'s own path
(``fedjax_rhd.score.cli.score``, ``--rows run-test``: the run's test patients, i.e. exactly the
held-out centre; censoring ``cohort``, the held-out centre's own follow-up). Compared on the same
rows: the FedAvg global model, centralised training on the pooled training centres, each training
centre's own model (``strategy=local``) and the use case's clinical score (ELN 2022 for Beat AML).

A *seed* sets ``seed.split``, ``seed.init`` and ``seed.train`` together: the held-out rows are fixed
by the centre, so what a seed changes is each node's validation draw, the initialisation and the
training keys (one replicate of the whole training). Intervals are the cluster bootstrap of
``fedjax_rhd.report.sweep.cluster_interval`` (seeds drawn with replacement, the held-out patients
drawn once per replicate), every claim decided on its interval's bounds
(``fedjax_rhd.report.decide``: shown, not shown, shown otherwise). Across centres, each held-out
centre weighs the same (the mean over centres and seeds); the centres' test rows are disjoint.

Every run is checked against its score: the score command's main-model risks must equal the run's
own test predictions and its Harrell C the run's ``results.json`` (else the script stops).

Writes ``<out>/runs/centre<c>/<strategy>/seed<s>/`` (runs, each with ``scores/<dataset>-run-test/``),
``<out>/loco.md`` and ``<out>/loco.json``. Rerunning skips finished runs and scores.

Usage (from the repository root; the real cohorts under ``../shared/data`` or
``$FEDJAX_RHD_SHARED_DATA``):

    python experiments/external_validation/run.py --out multirun/loco -- data_root=data
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
from fedjax_rhd.report.stats import Interval  # noqa: E402
from fedjax_rhd.report.sweep import cluster_interval, fmt, provenance  # noqa: E402
from fedjax_rhd.score.cli import score  # noqa: E402
from fedjax_rhd.tune.cli import compose_run  # noqa: E402

DEFAULT_OVERRIDES = ["use_case=aml_beat", "split=natural"]
STRATEGIES = ("fedavg", "centralized", "local")
MARGIN = 0.02  # FedAvg "matches" centralised: within ±0.02 of C (the simulation study's margin)
# (strategy, model name in score.json) -> the table's column; each centre alone is added per centre
MODELS = {"FedAvg": ("fedavg", "global"), "centralised": ("centralized", "centralised")}
SCORE = "clinical score"

Side = dict[int, list[tuple[pl.DataFrame, str]]]  # key -> (frame, column) per replicate


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", type=Path, required=True, help="output folder (runs, scores, tables)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--centres", nargs="+", help="centres to hold out (default: every centre of the dataset)")
    p.add_argument("--n-boot", type=int, default=1000, help="cluster-bootstrap replicates")
    p.add_argument("--score-boot", type=int, default=200, help="each score.json's own bootstrap replicates")
    p.add_argument(
        "overrides", nargs="*", help=f"Hydra overrides after {' '.join(DEFAULT_OVERRIDES)} (after --)"
    )
    return p


def dataset_centres(overrides: list[str]) -> list[str]:
    """The dataset's centres, largest first (as ``split=natural`` names its nodes)."""
    from hydra import compose, initialize_config_dir

    from fedjax_rhd.cli import CONF_DIR
    from fedjax_rhd.config import register_configs, run_config
    from fedjax_rhd.sources import load_use_case

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        config = run_config(compose(config_name="config", overrides=overrides))
    table = load_use_case(
        config.use_case, seed_data=config.seed.data, data_root=config.data_root,
        real_data_root=config.real_data_root, progress=False,
    ).table  # fmt: skip
    counts = dict(table["centre"].cast(pl.String).value_counts().iter_rows())
    return sorted(counts, key=lambda c: (-counts[c], c))


def run_dir(out: Path, centre: str, strategy: str, seed: int) -> Path:
    return out / "runs" / f"centre{centre}" / strategy / f"seed{seed}"


def ensure_run(overrides: list[str], folder: Path) -> dict[str, Any]:
    """The run's ``results.json``, running it first unless it finished before."""
    done = folder / "results.json"
    if done.is_file():
        return json.loads(done.read_text())
    return compose_run(overrides, folder)


def ensure_score(folder: Path, results: dict[str, Any], n_boot: int) -> Path:
    """The held-out centre scored by the score command (``--rows run-test``); its output folder."""
    name = results["dataset"]["name"]
    out = folder / "scores" / f"{name}-run-test"
    if not (out / "score.json").is_file():
        score(folder, name, out=out, rows="run-test", censoring="cohort", n_boot=n_boot, plots=False)
    return out


def scored_frame(folder: Path, out: Path, results: dict[str, Any]) -> pl.DataFrame:
    """One row per held-out patient (``patient_id`` order): ``time``, ``event``, ``clinical_score``
    and a ``risk:<model>`` column per scored model, after checking the score against the run.

    Raises:
        ValueError: the score command's main-model risks or Harrell C differ from the run's own.
    """
    doc = json.loads((out / "score.json").read_text())
    pred = pl.read_parquet(out / "predictions.parquet")
    wide = pred.pivot(on="model", index=["patient_id", "time", "event", "clinical_score"], values="risk")
    wide = wide.rename({m: f"risk:{m}" for m in pred["model"].unique()}).sort("patient_id")
    own = pl.read_parquet(folder / "test_predictions.parquet").select("patient_id", "risk").sort("patient_id")
    main = next(m["name"] for m in doc["models"] if m["main"])
    if not own["patient_id"].equals(wide["patient_id"]):
        raise ValueError(f"{out}: the scored rows are not the run's test rows")
    if not np.allclose(wide[f"risk:{main}"].to_numpy(), own["risk"].to_numpy(), rtol=1e-5, atol=1e-6):
        raise ValueError(f"{out}: model {main!r} scores differently from the run's own test predictions")
    c_run = results["final"]["c_index_test"]["estimate"]
    c_score = next(m["c_index"]["estimate"] for m in doc["models"] if m["main"])
    if abs(c_run - c_score) > 1e-9:
        raise ValueError(f"{out}: Harrell C {c_score} differs from the run's results.json {c_run}")
    return wide


def collect(out: Path, centres: list[str], seeds: list[int]) -> dict[str, dict[str, Any]]:
    """Per held-out centre: its rows and every compared model's side (seed -> [(frame, column)])."""
    table: dict[str, dict[str, Any]] = {}
    for centre in centres:
        frames = {}
        for strategy in STRATEGIES:
            for seed in seeds:
                folder = run_dir(out, centre, strategy, seed)
                results = json.loads((folder / "results.json").read_text())
                frames[strategy, seed] = scored_frame(
                    folder, folder / "scores" / _score_dir(results), results
                )
        sides: dict[str, Side] = {
            label: {s: [(frames[strategy, s], f"risk:{model}")] for s in seeds}
            for label, (strategy, model) in MODELS.items()
        }
        sides[SCORE] = {s: [(frames["fedavg", s], "clinical_score")] for s in seeds}
        alone = [c.removeprefix("risk:").removesuffix("_local") for c in frames["local", seeds[0]].columns
                 if c.endswith("_local")]  # fmt: skip
        for node in alone:
            sides[f"{node} alone"] = {s: [(frames["local", s], f"risk:{node}_local")] for s in seeds}
        first = frames["fedavg", seeds[0]]
        results = json.loads((run_dir(out, centre, "fedavg", seeds[0]) / "results.json").read_text())
        table[centre] = {
            "n": first.height, "events": int(first["event"].sum()),
            "scored": int(first["clinical_score"].is_not_null().sum()), "sides": sides,
            "nodes": [n["name"] for n in results["nodes"]], "score_name": _score_name(results),
        }  # fmt: skip
    return table


def _score_dir(results: dict[str, Any]) -> str:
    return f"{results['dataset']['name']}-run-test"


def _score_name(results: dict[str, Any]) -> str:
    block = results["final"].get("clinical_score") or {}
    return block.get("name") or SCORE


def pooled(table: dict[str, dict[str, Any]], label: Any) -> Side:
    """One side over every held-out centre: keys (centre rank, seed) flattened to ints.

    ``label`` is a side name, or a function of the centre's entry giving one (e.g. its largest
    training centre); the held-out centres' rows are disjoint, so the cluster bootstrap resamples
    them as independent strata of patients and the (centre, seed) pairs as clusters.
    """
    side: Side = {}
    for rank, entry in enumerate(table.values()):
        name = label(entry) if callable(label) else label
        for seed, reps in entry["sides"][name].items():
            side[rank * 1000 + seed] = reps
    return side


def _largest(entry: dict[str, Any]) -> str:
    return f"{entry['nodes'][0]} alone"


def _smallest(entry: dict[str, Any]) -> str:
    return f"{entry['nodes'][-1]} alone"


def _claim(label: str, iv: Interval | None, claim: str, threshold: float = 0.0) -> str:
    if iv is None:
        return f"- {label}: n/a"
    return f"- {label}: {iv.estimate:+.4f}; {decide(iv, claim, threshold).text}"  # type: ignore[arg-type]


def study(
    table: dict[str, dict[str, Any]], seeds: list[int], n_boot: int, argv: list[str]
) -> tuple[str, dict]:
    """The results page (Markdown) and its numbers (JSON)."""
    covers: set[str] = set()
    numbers: dict[str, Any] = {"seeds": seeds, "centres": {}}

    def iv(a: Side, b: Side | None = None) -> Interval | None:
        out = cluster_interval(a, b, n_boot=n_boot)
        if out is not None:
            covers.add(out.covers)
        return out

    score_name = next(iter(table.values()))["score_name"]
    lines = [
        provenance("experiments/external_validation/run.py", argv),
        "",
        f"Leave one centre out: each centre's rows are the test set; the other centres train, federated by "
        f"centre. Harrell's C on the held-out centre (mean over {len(seeds)} seeds, 95% cluster-bootstrap "
        f"interval); {score_name} on the rows it scores. *Largest alone* / *smallest alone*: the largest "
        "and smallest training centre's own model (`local`).",
        "",
        "A seed sets `seed.split`, `seed.init` and `seed.train` together (the held-out rows are fixed by the "
        "centre; a seed changes the nodes' validation draws, the initialisation and the training keys), so "
        "resampling the seeds resamples whole training replicates: the intervals do cover training variance, "
        "although their last line says *not training seeds* (that names replicates *within* one seed, of "
        "which there is one). Over centres, the (centre, seed) pairs are the clusters and each centre's "
        "patients a separate stratum.",
        "",
        f"| held-out centre | rows (events) | {score_name} rows | centralised | FedAvg | largest alone | "
        f"smallest alone | {score_name} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    claims: list[str] = []
    for centre, entry in table.items():
        sides = entry["sides"]
        cells = {k: iv(sides[k]) for k in ("centralised", "FedAvg", SCORE)}
        cells["largest"], cells["smallest"] = iv(sides[_largest(entry)]), iv(sides[_smallest(entry)])
        lines.append(
            f"| centre{centre} | {entry['n']} ({entry['events']}) | {entry['scored']} | "
            + " | ".join(fmt(cells[k]) for k in ("centralised", "FedAvg", "largest", "smallest", SCORE))
            + " |"
        )
        d_cen, d_score = iv(sides["FedAvg"], sides["centralised"]), iv(sides["FedAvg"], sides[SCORE])
        alone = {n: iv(sides["FedAvg"], sides[f"{n} alone"]) for n in entry["nodes"]}
        claims.append(
            f"- centre{centre} held out: FedAvg − centralised {fmt(d_cen, True)}: "
            f"{decide(d_cen, 'within', MARGIN).short}; FedAvg − {score_name} {fmt(d_score, True)}: "
            f"{decide(d_score, 'above').short}; FedAvg − each centre alone: "
            + "; ".join(f"{n} {fmt(d, True)} {decide(d, 'above').short}" for n, d in alone.items())
            + "."
        )
        numbers["centres"][centre] = {
            "n": entry["n"], "events": entry["events"], "score_rows": entry["scored"],
            "c_index": {k: None if v is None else v.__dict__ for k, v in cells.items()},
            "fedavg_minus": {"centralised": _as_dict(d_cen), score_name: _as_dict(d_score),
                             **{f"{n} alone": _as_dict(d) for n, d in alone.items()}},
        }  # fmt: skip
    lines += ["", "Each centre alone (Harrell C on the held-out centre, mean over seeds):", ""]
    every = sorted({n for e in table.values() for n in e["nodes"]}, key=lambda n: n.removeprefix("centre"))
    lines += [
        "| held-out centre | " + " | ".join(f"{n} alone" for n in every) + " |",
        "|---|" + "---|" * len(every),
    ]
    for centre, entry in table.items():
        cells = []
        for n in every:
            side = entry["sides"].get(f"{n} alone")
            cells.append("—" if side is None else f"{_mean_c(side):.3f}")
        lines.append(f"| centre{centre} | " + " | ".join(cells) + " |")
    fed, cen, score_side = pooled(table, "FedAvg"), pooled(table, "centralised"), pooled(table, SCORE)
    overall = [
        ("FedAvg − centralised", iv(fed, cen), "within", MARGIN),
        (f"FedAvg − {score_name}", iv(fed, score_side), "above", 0.0),
        (f"centralised − {score_name}", iv(cen, score_side), "above", 0.0),
        ("FedAvg − largest training centre alone", iv(fed, pooled(table, _largest)), "above", 0.0),
        ("FedAvg − smallest training centre alone", iv(fed, pooled(table, _smallest)), "above", 0.0),
    ]  # fmt: skip
    means = {k: iv(pooled(table, k)) for k in ("centralised", "FedAvg", SCORE)}
    means["largest alone"], means["smallest alone"] = (
        iv(pooled(table, _largest)),
        iv(pooled(table, _smallest)),
    )
    numbers["over_centres"] = {
        "c_index": {k: _as_dict(v) for k, v in means.items()},
        "differences": {label: _as_dict(d) for label, d, _, _ in overall},
    }
    lines += [
        "",
        f"Over the {len(table)} held-out centres (each centre weighs the same): "
        + ", ".join(f"{score_name if k == SCORE else k} {fmt(v)}" for k, v in means.items())
        + ".",
        "",
        "Paired differences on the same held-out rows (mean over seeds, and over centres in this first "
        "block; 95% cluster bootstrap), each claim decided on its interval's bounds:",
        "",
        *(_claim(label, d, claim, t) for label, d, claim, t in overall),
        "",
        "Per held-out centre:",
        "",
        *claims,
        "",
        *(f"Intervals resample: {c}." for c in sorted(covers)),
    ]
    return "\n".join(lines) + "\n", numbers


def _as_dict(iv: Interval | None) -> dict[str, Any] | None:
    return None if iv is None else {**iv.__dict__, "seeds": list(iv.seeds)}


def _mean_c(side: Side) -> float:
    from fedjax_rhd.report.sweep import c_index

    return float(np.mean([c_index(f, col) for reps in side.values() for f, col in reps]))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv)
    base = [*DEFAULT_OVERRIDES, *args.overrides, "progress=false"]
    centres = [str(c) for c in args.centres] if args.centres else dataset_centres(base)
    for centre in centres:
        for strategy in STRATEGIES:
            for seed in args.seeds:
                folder = run_dir(args.out, centre, strategy, seed)
                overrides = [*base, f"split.holdout_centre={centre}", f"strategy={strategy}",
                             f"seed.split={seed}", f"seed.init={seed}", f"seed.train={seed}"]  # fmt: skip
                results = ensure_run(overrides, folder)
                ensure_score(folder, results, args.score_boot)
                c = results["final"]["c_index_test"]["estimate"]
                print(f"centre{centre} {strategy} seed {seed}: Harrell C {c:.3f}", flush=True)
    table = collect(args.out, centres, args.seeds)
    text, numbers = study(table, args.seeds, args.n_boot, argv)
    (args.out / "loco.md").write_text(text, encoding="utf-8")
    (args.out / "loco.json").write_text(json.dumps(numbers, indent=1), encoding="utf-8")
    print(text)
    return numbers


if __name__ == "__main__":
    main()
