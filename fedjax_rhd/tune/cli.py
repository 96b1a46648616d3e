"""``fedjax-rhd-tune PRESET [OVERRIDES...]``: an Optuna search on the federated validation objective.

Examples::

    fedjax-rhd-tune deepsurv use_case=mds split=five --sweep-dir outputs/tune_mds
    fedjax-rhd-tune deepsurv use_case=mds --sweep-dir outputs/tune_mds --trials 80   # resumes, adds 30
    fedjax-rhd-tune my_search.yaml strategy=fedprox

The search composes ``conf/`` per trial (Hydra's compose API), runs each trial in this process
and minimises ``final.validation_objective``; it writes ``search.db`` (Optuna's sqlite
storage: rerun the same command to resume), ``trial_<k>/`` (each trial's ordinary run folder),
``trials.csv``, ``search.json``, ``best.yaml`` (the best trial as a ``+experiment=`` file) and
``search.png``. Exit codes: 0 done, 1 no trial completed or the sweep folder unusable (unwritable, a
damaged ``search.db``, a study whose space the preset has changed), 2 a bad preset or override, 130
interrupted (rerun to resume).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from fedjax_rhd.tune.space import SearchSpecError, load_preset


def compose_run(overrides: list[str], run_dir: Path) -> dict[str, Any]:
    """What ``fedjax-rhd <overrides>`` runs, in this process: compose, type, run into ``run_dir``."""
    from hydra import compose, initialize_config_dir

    from fedjax_rhd.cli import CONF_DIR
    from fedjax_rhd.config import register_configs, resolved, run_config
    from fedjax_rhd.experiment import run

    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    return run(run_config(cfg), run_dir, resolved(cfg))


def _check_overrides(overrides: list[str]) -> None:
    """Compose once before the search starts, so a misspelt key fails in a second, not at trial 1."""
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from fedjax_rhd.cli import CONF_DIR
    from fedjax_rhd.config import register_configs, run_config

    register_configs()
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            run_config(compose(config_name="config", overrides=overrides))
    except (HydraException, OmegaConfBaseException, ValueError, TypeError) as err:
        raise SearchSpecError(f"bad override: {err}") from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fedjax-rhd-tune",
        description="Optuna search over fedjax-rhd runs on the federated validation objective "
        "(never a test metric).",
    )
    p.add_argument("preset", help="a preset in conf/hparams_search/ (deepsurv, savae, coxph) or a .yaml path")
    p.add_argument(
        "overrides", nargs="*", help="Hydra overrides for every trial, e.g. use_case=mds seed.split=1"
    )
    p.add_argument(
        "--sweep-dir", type=Path, default=None, help="output folder (default outputs/tune/<preset>-<time>)"
    )
    p.add_argument("--trials", type=int, default=None, help="finished trials wanted (default: the preset's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point; returns the exit code."""
    args = _parser().parse_args(argv)
    try:
        preset = load_preset(args.preset)
        _check_overrides([*preset.overrides, *args.overrides])
    except SearchSpecError as err:
        print(f"fedjax-rhd-tune: {err}", file=sys.stderr)
        return 2
    from fedjax_rhd.tune.search import run_search

    sweep_dir = args.sweep_dir or Path("outputs") / "tune" / f"{preset.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    # The search's bar replaces the runs' own (each trial's folder keeps its results and log).
    quiet = [] if any(o.startswith("progress=") for o in args.overrides) else ["progress=false"]
    overrides = [*args.overrides, *quiet]
    import optuna
    from sqlalchemy.exc import SQLAlchemyError

    try:
        result = run_search(
            preset, overrides, sweep_dir, compose_run, n_trials=args.trials, progress=not args.no_progress
        )
    except KeyboardInterrupt:
        print(
            f"fedjax-rhd-tune: interrupted; rerun the same command to resume ({sweep_dir})", file=sys.stderr
        )
        return 130
    except (OSError, SQLAlchemyError, optuna.exceptions.OptunaError, ValueError) as err:
        # an unwritable folder, a damaged search.db, or a study whose space the preset has since changed
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        print(f"fedjax-rhd-tune: cannot run the search in {sweep_dir}: {reason}", file=sys.stderr)
        return 1
    n_failed = sum(r.state != "COMPLETE" for r in result.trials)
    if result.best is None:
        errors = sorted({r.error for r in result.trials if r.error})
        print(f"fedjax-rhd-tune: no trial completed ({n_failed} failed): {errors[:3]}", file=sys.stderr)
        return 1
    best = result.best
    print(f"search {preset.name}: {len(result.trials)} trials ({n_failed} failed) in {sweep_dir}")
    seconds = sum(r.seconds for r in result.trials if r.seconds == r.seconds)
    compiling = sum(r.compile_seconds or 0.0 for r in result.trials)
    if seconds > 0:  # a resumed search counts the trials of every session
        share = compiling / seconds
        print(f"trials took {seconds:.0f} s, of which JAX compiling {compiling:.0f} s ({share:.0%})")
    print(f"best trial {best.number}: validation objective {best.value:.6g}")
    for key, value in best.params.items():
        print(f"  {key} = {value}")
    print(f"reusable config: {sweep_dir / 'best.yaml'}; history: {sweep_dir / 'search.png'}")
    return 0


def entry() -> None:
    """``fedjax-rhd-tune``."""
    sys.exit(main())
