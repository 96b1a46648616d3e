"""``fedjax-rhd-score RUN_DIR DATASET``: a finished run's models scored on a registered dataset.

Writes ``score.json``, ``predictions.parquet`` (``patient_id``, ``model``, ``risk``, ``time``,
``event``, ``clinical_score``) and ``calibration.png`` (a row of panels per model) into ``--out`` (default
``RUN_DIR/scores/<dataset>``). Exit codes: 0 done; 1 refused (another guide, version or
feature schema, a run's file missing, a stale dataset), with one message; 2 bad arguments.

Usage::

    fedjax-rhd-score outputs/2026-12-07/03-00-00 aml-external --data-root data
    python -m fedjax_rhd.score RUN_DIR path/to/datasets/my-cohort --horizons 1,2,5
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedjax_rhd.metrics.concordance import bootstrap_cindex
from fedjax_rhd.score.apply import clinical_comparison, encode_for_run, model_risks, score_model
from fedjax_rhd.score.calibration import plot_calibration
from fedjax_rhd.score.compat import dataset_location, load_scored_dataset, trained_guide
from fedjax_rhd.score.load_run import ScoreError, TrainedRun, load_run
from harmonize.identity import atomic_write_text

SCORE_FILE = "score.json"
PREDICTIONS_FILE = "predictions.parquet"
CALIBRATION_FIGURE = "calibration.png"
FORMAT = "fedjax_rhd/score/v1"


def score(
    run_dir: str | Path,
    dataset: str,
    *,
    data_root: str | Path | None = None,
    out: str | Path | None = None,
    rows: str = "all",
    censoring: str = "auto",
    horizons: list[float] | None = None,
    groups: int = 5,
    n_boot: int | None = None,
    seed: int | None = None,
    plots: bool = True,
) -> dict[str, Any]:
    """Score every model of the run in ``run_dir`` on ``dataset``; write and return ``score.json``.

    Args:
        run_dir: a finished run's directory.
        dataset: a dataset folder, or a registered dataset's name under ``data_root``.
        data_root: the dataset cache (default: the run's ``data_root``).
        out: where to write (default ``run_dir/scores/<dataset name>``, ``-run-test`` appended).
        rows: ``all`` the dataset's rows, or ``run-test`` the run's own test patients (the
            run's dataset only; reproduces its ``results.json``).
        censoring: ``G`` for Uno's C, td-AUC and IBS: ``run`` (the training nodes'), ``cohort``
            (the scored rows' own Kaplan-Meier), ``auto`` (``run`` for ``run-test``, else ``cohort``).
        horizons: calibration times in the guide's time unit (default: the evaluation times'
            quartiles).
        groups: calibration groups per horizon.
        n_boot, seed: bootstrap resamples and seed (default: the run's ``bootstrap`` and ``seed.split``).
        plots: write the calibration plots.

    Raises:
        ScoreError: the refusal, in words.
    """
    run = load_run(run_dir)
    guide = trained_guide(run)
    folder = dataset_location(dataset, run.config.data_root if data_root is None else data_root)
    table, card, score_name, scores = load_scored_dataset(run, folder, guide)
    table = _select_rows(table, card, run, rows)
    own_censoring = {"auto": rows != "run-test", "cohort": True, "run": False}[censoring]
    boot = {"n_boot": run.config.bootstrap if n_boot is None else n_boot,
            "seed": run.config.seed.split if seed is None else seed}  # fmt: skip
    scored = encode_for_run(table, guide, run)
    spec = run.config.algorithm_spec(scored.rows.x.shape[-1], scored.guide)
    risks = model_risks(spec, run, scored)
    main = next(m.name for m in run.models if m.main)
    block, versus, per_row = clinical_comparison(score_name, scores, scored, risks, main, boot)
    models = [
        {**score_model(spec, run, m, scored.rows_of(m), risks[m.name], own_censoring=own_censoring,
                       horizons=horizons, groups=groups, boot=boot),
         "versus_clinical_score": versus.get(m.name)}
        for m in run.models
    ]  # fmt: skip
    suffix = "-run-test" if rows == "run-test" else ""
    out = Path(out) if out else run.path / "scores" / (card["name"] + suffix)
    out.mkdir(parents=True, exist_ok=True)
    _predictions(scored, risks, per_row).write_parquet(out / PREDICTIONS_FILE)
    panels = [(m["name"], [c for c in m["calibration"] if "error" not in c]) for m in models]
    panels = [p for p in panels if p[1]]
    figure = None
    if plots and panels:
        cfg = run.results["config"]
        title = f"{cfg['use_case']['name']} {cfg['strategy']['name']} on {card['name']} ({rows} rows)"
        figure = plot_calibration(panels, title, guide.time_unit, out / CALIBRATION_FIGURE).name
    t, e = np.asarray(scored.rows.time), np.asarray(scored.rows.event)
    oracle = None if scored.oracle_risk is None else bootstrap_cindex(t, e, scored.oracle_risk, **boot)
    document = {
        **_header(run, card, folder, rows, own_censoring, t, e),
        "bootstrap": boot, "calibration_groups": groups, "time_unit": guide.time_unit,
        "clinical_score": block, "oracle_c_index": oracle, "models": models,
        "files": {"predictions": PREDICTIONS_FILE, "calibration": figure},
    }  # fmt: skip
    atomic_write_text(out / SCORE_FILE, json.dumps(document, indent=1))
    return document


def _select_rows(table: pl.DataFrame, card: dict[str, Any], run: TrainedRun, rows: str) -> pl.DataFrame:
    """``all`` rows, or the run's own test patients (``run-test``, its own dataset only)."""
    if rows == "run-test":
        if card["id"] != run.dataset_id:
            raise ScoreError(
                f"--rows run-test needs the run's own dataset {run.dataset_id}, not {card['id']}"
            )
        table = table.filter(pl.col("patient_id").is_in(run.test_patient_ids()))
    elif rows != "all":
        raise ScoreError(f"--rows must be all or run-test, not {rows!r}")
    if table.height == 0 or not table["event"].cast(pl.Float64).sum():
        raise ScoreError(
            f"dataset {card['name']!r}: {table.height} row(s) to score, none with an event: "
            "nothing to discriminate or calibrate against"
        )
    return table


def _header(
    run: TrainedRun, card: dict[str, Any], folder: Path, rows: str, own: bool, t: np.ndarray, e: np.ndarray
) -> dict[str, Any]:
    """``score.json``'s format, run, dataset, rows, censoring and warnings."""
    cfg, same = run.results["config"], card["id"] == run.dataset_id
    return {
        "format": FORMAT,
        "run": {
            "dir": str(run.path), "use_case": cfg["use_case"]["name"], "strategy": cfg["strategy"]["name"],
            "model": cfg["model"]["name"], "seed_split": cfg["seed"]["split"], "dataset_id": run.dataset_id,
            "dataset_name": run.manifest["dataset"]["name"], "guide": run.manifest["guide"]["name"],
            "guide_version": run.manifest["guide"]["version"],
        },
        "dataset": {"name": card["name"], "id": card["id"], "folder": str(folder), "n_rows": card["n_rows"],
                    "n_events": card["n_events"], "same_as_run": same},
        "rows": {"selection": rows, "n": int(len(t)), "n_events": int(e.sum())},
        "censoring": "cohort" if own else "run",
        "warnings": (["the run's training and validation rows are among the scored rows: optimistic"]
                     if same and rows == "all" else []),
    }  # fmt: skip


def _predictions(scored: Any, risks: dict[str, np.ndarray], score: np.ndarray | None) -> pl.DataFrame:
    n = len(scored.patient_ids)
    clinical = pl.Series("clinical_score", np.full(n, np.nan) if score is None else score, nan_to_null=True)
    frames = [
        pl.DataFrame({
            "patient_id": list(scored.patient_ids), "model": [name] * n, "risk": np.asarray(r, np.float64),
            "time": np.asarray(scored.rows.time, np.float64), "event": np.asarray(scored.rows.event, np.int8),
        }).with_columns(clinical)
        for name, r in risks.items()
    ]  # fmt: skip
    return pl.concat(frames)


def _ci(c: dict[str, Any]) -> str:
    return f"{c['estimate']:.3f} [{c['ci_low']:.3f}, {c['ci_high']:.3f}]"


def _summary(doc: dict[str, Any]) -> str:
    rows = doc["rows"]
    lines = [
        f"{doc['run']['use_case']} {doc['run']['strategy']} -> {doc['dataset']['name']} "
        f"({rows['n']} rows, {rows['n_events']} events; censoring: {doc['censoring']})"
    ]
    for m in doc["models"]:
        c = m["c_index"]
        text = f"  {m['name']:<24} Harrell C {_ci(c) if 'estimate' in c else c['error']}"
        if m.get("uno_c_test") is not None:
            text += f"  Uno C {m['uno_c_test']:.3f}  IBS {m['ibs_test']:.3f}"
        if m.get("versus_clinical_score"):
            d = m["versus_clinical_score"]["difference"]
            text += f"  vs score {d['difference']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}]"
        lines.append(text)
    cs = doc["clinical_score"]
    if cs and cs.get("c_index_test"):
        c = cs["c_index_test"]
        lines.append(f"  {cs['name']} ({cs['n_scored']} rows) Harrell C {_ci(c)}")
    return "\n".join(lines + [*(f"warning: {w}" for w in doc["warnings"])])


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    parser = argparse.ArgumentParser(prog="fedjax-rhd-score", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished run's directory")
    parser.add_argument("dataset", help="a dataset folder, or a registered dataset's name under --data-root")
    parser.add_argument("--data-root", type=Path, help="dataset cache (default: the run's data_root)")
    parser.add_argument("--out", type=Path, help="output folder (default RUN_DIR/scores/<dataset>)")
    parser.add_argument("--rows", choices=("all", "run-test"), default="all", help="rows to score")
    parser.add_argument("--censoring", choices=("auto", "run", "cohort"), default="auto",
                        help="censoring distribution of the IPCW metrics")  # fmt: skip
    parser.add_argument("--horizons", help="calibration times, comma-separated, in the guide's time unit")
    parser.add_argument("--groups", type=int, default=5, help="calibration groups per horizon")
    parser.add_argument("--n-boot", type=int, help="bootstrap resamples (default: the run's)")
    parser.add_argument("--seed", type=int, help="bootstrap seed (default: the run's seed.split)")
    parser.add_argument("--no-plots", action="store_true", help="skip the calibration plots")
    args = parser.parse_args(argv)
    try:
        horizons = None if args.horizons is None else [float(h) for h in args.horizons.split(",")]
    except ValueError:
        parser.error(f"--horizons: numbers separated by commas, got {args.horizons!r}")
    if args.groups < 1:
        parser.error("--groups must be >= 1")
    try:
        doc = score(
            args.run_dir, args.dataset, data_root=args.data_root, out=args.out, rows=args.rows,
            censoring=args.censoring, horizons=horizons, groups=args.groups, n_boot=args.n_boot,
            seed=args.seed, plots=not args.no_plots,
        )  # fmt: skip
    except ScoreError as err:
        sys.exit(f"fedjax-rhd-score: {err}")
    print(_summary(doc))
