"""An Optuna search over runs composed with Hydra's compose API, stored in sqlite, resumable.

Each trial composes ``conf/`` with the preset's overrides, the user's and the trial's
parameters, runs in this process (so rounds compiled for one trial's shapes are reused by the
next) and is scored by :func:`fedjax_rhd.cli.objective`: the selected model's federated
validation loss, minimised. The test rows never reach the search: they reach only the
runs' own reports. A trial whose run fails or has no validation loss is told to Optuna as
failed (it does not steer the sampler).

Optuna (Akiba et al. 2019, "Optuna: a next-generation hyperparameter optimization framework",
KDD) with its TPE sampler (Bergstra et al. 2011), seeded by the preset.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedjax_rhd.tune.compile_time import compile_seconds
from fedjax_rhd.tune.space import SearchPreset, as_overrides, best_config_yaml, suggest

STORAGE_NAME = "search.db"
# conf/ at the project's top level (as fedjax_rhd.cli finds it): its folders are the config groups.
CONF_DIR = Path(os.environ.get("FEDJAX_RHD_CONF", Path(__file__).resolve().parents[2] / "conf"))


@dataclass(frozen=True)
class TrialRecord:
    """One finished trial, as ``trials.csv`` and ``search.json`` hold it."""

    number: int
    state: str  # COMPLETE | FAIL
    value: float | None
    params: dict[str, Any]
    run_dir: str
    seconds: float
    compile_seconds: float | None
    error: str = ""


@dataclass(frozen=True)
class SearchResult:
    """What the search found: every trial and the best one (``None`` when none completed)."""

    trials: tuple[TrialRecord, ...]
    best: TrialRecord | None
    sweep_dir: Path


RunTrial = Callable[[list[str], Path], dict[str, Any]]


def _sampler(preset: SearchPreset) -> Any:
    import optuna

    return optuna.samplers.TPESampler(seed=preset.seed, n_startup_trials=preset.n_startup_trials)


def open_study(preset: SearchPreset, sweep_dir: Path) -> Any:
    """The preset's study in ``<sweep_dir>/search.db`` (created, or loaded to resume)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    return optuna.create_study(
        study_name=preset.name,
        storage=f"sqlite:///{(sweep_dir / STORAGE_NAME).resolve()}",
        sampler=_sampler(preset),
        direction="minimize",
        load_if_exists=True,
    )


def _record(trial: Any, run_dir: Path) -> TrialRecord:
    attrs = trial.user_attrs
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        value=None if trial.value is None else float(trial.value),
        params=dict(trial.params),
        run_dir=str(run_dir),
        seconds=float(attrs.get("seconds", math.nan)),
        compile_seconds=attrs.get("compile_seconds"),
        error=str(attrs.get("error", "")),
    )


def run_search(
    preset: SearchPreset,
    base_overrides: list[str],
    sweep_dir: Path,
    run_trial: RunTrial,
    *,
    n_trials: int | None = None,
    progress: bool = True,
) -> SearchResult:
    """Run the preset's search until the study holds ``n_trials`` finished trials.

    Args:
        preset: the search (space, budget, sampler seed).
        base_overrides: the user's overrides (use case, split, seeds, ...), after the preset's.
        sweep_dir: where ``search.db``, ``trial_<k>/`` run folders and the summary files go.
        run_trial: ``run_trial(overrides, run_dir) -> results`` (a composed, typed, in-process run).
        n_trials: finished trials wanted in the study (default: the preset's); a rerun with the
            same ``sweep_dir`` resumes and only adds the missing ones.
        progress: show a progress bar with the best objective so far.

    Returns:
        Every finished trial and the best one; the summary files are written.
    """
    import optuna

    study = open_study(preset, sweep_dir)
    wanted = preset.n_trials if n_trials is None else int(n_trials)
    finished = [t for t in study.trials if t.state.is_finished()]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=wanted, initial=min(len(finished), wanted), desc=f"search {preset.name}", unit=" trial"
        )
    for _ in range(max(0, wanted - len(finished))):
        trial = study.ask()
        values = suggest(trial, preset.params)
        overrides = [*preset.overrides, *base_overrides, *as_overrides(values)]
        run_dir = sweep_dir / f"trial_{trial.number:03d}"
        started = time.perf_counter()
        try:
            with compile_seconds() as compiling:
                results = run_trial(overrides, run_dir)
        except Exception as err:  # noqa: BLE001 - a failed trial is recorded, the search goes on
            trial.set_user_attr("seconds", time.perf_counter() - started)
            trial.set_user_attr("compile_seconds", compiling[0])
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:500])
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            final = results["final"]
            value = final.get("validation_objective")
            trial.set_user_attr("seconds", time.perf_counter() - started)
            # every jitted function of the trial (round, evaluation, metrics), not only the round
            trial.set_user_attr("compile_seconds", compiling[0])
            trial.set_user_attr("context", list(base_overrides))
            if value is None or not math.isfinite(float(value)):
                trial.set_user_attr("error", "no finite federated validation objective")
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
            else:
                study.tell(trial, float(value))
        if bar is not None:
            best = _best_value(study)
            bar.set_postfix_str("best -" if best is None else f"best {best:.5g}")
            bar.update(1)
    if bar is not None:
        bar.close()
    return write_summary(preset, study, sweep_dir)


def _total(values: Any) -> float | None:
    """Sum of the finite values (trials recorded before compile seconds were kept have none)."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(finite) if finite else None


def _best_value(study: Any) -> float | None:
    done = [t.value for t in study.trials if t.state.name == "COMPLETE"]
    return min(done) if done else None


def write_summary(preset: SearchPreset, study: Any, sweep_dir: Path) -> SearchResult:
    """``trials.csv``, ``search.json``, ``best.yaml`` (the best trial as a config) and ``search.png``."""
    finished = [t for t in study.trials if t.state.is_finished()]
    records = tuple(_record(t, sweep_dir / f"trial_{t.number:03d}") for t in finished)
    complete = [r for r in records if r.state == "COMPLETE"]
    # Lowest objective; the earliest trial wins a tie (Optuna's own rule).
    best = min(complete, key=lambda r: (r.value, r.number)) if complete else None
    keys = [p.key for p in preset.params]
    with open(sweep_dir / "trials.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["trial", "state", "objective", *keys, "seconds", "compile_seconds", "error"])
        for r in records:
            writer.writerow(
                [
                    r.number,
                    r.state,
                    r.value,
                    *(r.params.get(k) for k in keys),
                    r.seconds,
                    r.compile_seconds,
                    r.error,
                ]
            )
    summary = {
        "preset": preset.name,
        "description": preset.description,
        "objective": "final.validation_objective (the selected round's federated validation loss), minimised",
        "sampler": {"name": "TPESampler", "seed": preset.seed, "n_startup_trials": preset.n_startup_trials},
        "n_trials": len(records),
        "n_complete": len(complete),
        "seconds_total": _total(r.seconds for r in records),
        "compile_seconds_total": _total(r.compile_seconds for r in records),
        "best": None if best is None else best.__dict__,
        "trials": [r.__dict__ for r in records],
    }
    (sweep_dir / "search.json").write_text(
        json.dumps(summary, indent=1, default=str) + "\n", encoding="utf-8"
    )
    if best is not None:
        context = study.trials[best.number].user_attrs.get("context", [])
        groups = {d.name for d in CONF_DIR.iterdir() if d.is_dir()} if CONF_DIR.is_dir() else set()
        (sweep_dir / "best.yaml").write_text(
            best_config_yaml(preset, best.params, best.value, best.number, context, groups), encoding="utf-8"
        )
    if complete:
        from fedjax_rhd.tune.plot import plot_search

        plot_search(study, preset, sweep_dir / "search.png")
    return SearchResult(trials=records, best=best, sweep_dir=sweep_dir)
