"""Shared fixtures: a small simulated cohort and composed configs."""

from __future__ import annotations

import itertools
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import settings

ROOT = Path(__file__).resolve().parents[1]
T = TypeVar("T")

# Overrides that shrink a CLI run to seconds (600 patients, 3 rounds): shared by the end-to-end tests.
TINY = [
    "use_case.n_patients=600",
    "strategy.rounds=3",
    "strategy.patience=null",
    "strategy.client.local_epochs=2",
    "bootstrap=50",
    "progress=false",
]
os.environ.setdefault("FEDJAX_RHD_JAX_CACHE", str(ROOT / ".jax_cache"))
# The `harmonize` command finds fedjax_rhd's sources through the `harmonize.sources` entry point;
# an editable install made before that entry point existed lacks it, so name the module too
# (test_layering checks the entry point itself).
os.environ.setdefault("HARMONIZE_SOURCES", "fedjax_rhd.sources")

# Property tests draw the same examples on every run (CI must not pass or fail by chance); a failure
# found while exploring becomes a named regression test. Explore with HYPOTHESIS_PROFILE=explore.
settings.register_profile("default", derandomize=True, print_blob=True)
settings.register_profile("explore", max_examples=500, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session")
def mds_guide():
    from harmonize.guide import load_guide

    return load_guide("mds")


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    """The simulated MDS cohort (n=800, seed 3) through the runs' own path (source -> FHIR -> table)."""
    from fedjax_rhd.sources import UseCase, load_use_case

    cohort = load_use_case(
        UseCase(name="mds", n_patients=800),
        seed_data=3,
        data_root=tmp_path_factory.mktemp("data"),
        real_data_root=None,
    )
    return cohort.table, cohort.card


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory) -> Path:
    """A data root shared by the end-to-end runs on TINY's cohort (mds, n=600, data seed 0).

    The first run that uses it builds the dataset (simulator -> FHIR -> table, a few seconds); the
    others read it from the dataset cache, as a second run on the same cohort does. Tests whose
    subject is the build itself (or a fresh process building it) keep their own data root.
    """
    return tmp_path_factory.mktemp("tiny_data")


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per core, at most 4 (each holds JAX and its caches)."""
    return max(1, min(4, os.cpu_count() or 1))


def shared_across_workers(tmp_path_factory, name: str, build: Callable[[Path], T]) -> T:
    """``build(folder)`` once per test session, also when pytest-xdist runs several worker processes.

    Without xdist: a fresh folder, built here. Under xdist: the first worker that asks builds into a
    folder every worker sees (beside the workers' own temporary roots) while holding a file lock; the
    others wait for the lock and read the pickled result. What is built must be read only.
    """
    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(tmp_path_factory.mktemp(name))
    root = tmp_path_factory.getbasetemp().parent / name
    with FileLock(f"{root}.lock"):
        done = root / ".built.pkl"
        if done.is_file():
            return pickle.loads(done.read_bytes())
        root.mkdir(exist_ok=True)
        value = build(root)
        done.write_bytes(pickle.dumps(value))
        return value


@pytest.fixture(scope="session")
def tiny_multirun(tmp_path_factory, tiny_data_root) -> Path:
    """The foundation's strategies and splits over 2 split seeds: 12 tiny runs, in process, one folder each
    as a multirun lays them out (the report reads any folder tree of runs). Shared by the report's and the
    score command's tests (read only: write nothing below it), built once even under xdist."""

    def build(root: Path) -> Path:
        jobs = itertools.product(("fedavg", "centralized", "local"), ("three", "five"), (0, 1))
        for i, (strategy, split, seed) in enumerate(jobs):
            overrides = [*TINY, f"strategy={strategy}", f"split={split}", f"seed.split={seed}"]
            run_in_process(overrides, root / "m" / f"{i}_{strategy}_{split}_s{seed}", tiny_data_root)
        return root / "m"

    return shared_across_workers(tmp_path_factory, "multirun", build)


def compose(overrides: list[str] | None = None):
    """Compose conf/ with Hydra's compose API (as the CLI would)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from fedjax_rhd.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=overrides or [], return_hydra_config=False)


def run_in_process(overrides: list[str], run_dir: Path, data_root: Path) -> dict:
    """What ``fedjax-rhd <overrides>`` does, without a new process: compose → typed config → run.

    End-to-end checks use this (Hydra's compose API, compiled rounds reused across tests);
    only a few tests start the real command line (process isolation, exit codes, multirun).
    """
    from fedjax_rhd.config import resolved, run_config
    from fedjax_rhd.experiment import run

    cfg = compose([*overrides, f"data_root={data_root}"])
    return run(run_config(cfg), run_dir, resolved(cfg))


def scramble_test_outcomes(monkeypatch, seed: int = 0) -> None:
    """Runs started after this call see their test rows' events permuted (nothing else changes).

    What a check that selection never reads a test row needs: the test C-index moves, anything chosen
    on validation rows must not.
    """
    import dataclasses

    import numpy as np

    import fedjax_rhd.experiment as experiment

    real_build = experiment.build_federated_data

    def scrambled(*args, **kwargs):
        data = real_build(*args, **kwargs)
        rng = np.random.default_rng(seed)
        test = data.test._replace(event=rng.permutation(np.asarray(data.test.event)))
        return dataclasses.replace(data, test=test)

    monkeypatch.setattr(experiment, "build_federated_data", scrambled)
