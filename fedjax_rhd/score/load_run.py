"""A finished run read back for scoring: its results, parameters, preprocessing and recorded node statistics.

Every file is checked before anything is computed; a missing or unreadable one is a
:class:`ScoreError` naming the file (``fedjax-rhd-score`` prints it and exits 1).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from fedjax_rhd.config import RunConfig, run_config_from_json
from fedjax_rhd.io import load_params
from fedjax_rhd.results import PARAMS_FILE, PREDICTIONS_FILE, RESULTS_FILE
from fedjax_rhd.score.state import ARRAYS_FILE, FORMAT, MANIFEST_FILE, ModelEntry


class ScoreError(ValueError):
    """Scoring refused: the message names the file, guide or features at fault."""


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """What a run directory holds for scoring (:func:`load_run`)."""

    path: Path
    results: dict[str, Any] = dataclasses.field(repr=False)
    manifest: dict[str, Any] = dataclasses.field(repr=False)  # scoring.json
    arrays: dict[str, np.ndarray] = dataclasses.field(repr=False)  # scoring.npz
    params: dict[str, Any] = dataclasses.field(repr=False)  # params.npz as a tree
    config: RunConfig = dataclasses.field(repr=False)
    models: tuple[ModelEntry, ...] = ()

    @property
    def dataset_id(self) -> str:
        return self.manifest["dataset"]["id"]

    def test_patient_ids(self) -> list[str]:
        """The run's own test patients (``test_predictions.parquet``), for ``--rows run-test``."""
        import polars as pl

        path = self.path / PREDICTIONS_FILE
        if not path.is_file():
            raise ScoreError(f"{path}: missing; --rows run-test reads the run's test patients from it")
        return pl.read_parquet(path, columns=["patient_id"])["patient_id"].to_list()


def _require(run_dir: Path, name: str, why: str) -> Path:
    path = run_dir / name
    if not path.is_file():
        raise ScoreError(f"{path}: missing; {why}")
    return path


def _json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ScoreError(f"{path}: not readable JSON ({err})") from err


def _npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path) as archive:
            return {k: archive[k] for k in archive.files}
    except (OSError, ValueError) as err:  # truncated or not an npz archive
        raise ScoreError(f"{path}: not a readable .npz archive ({err})") from err


def load_run(run_dir: str | Path) -> TrainedRun:
    """Read ``results.json``, ``params.npz``, ``scoring.json`` and ``scoring.npz`` of a finished run.

    Raises:
        ScoreError: a file missing or unreadable (named), a generative run, or a run written
            before runs recorded their scoring state.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ScoreError(f"{run_dir}: no such run directory")
    results = _json(_require(run_dir, RESULTS_FILE, "is this a finished run's directory?"))
    if results.get("final", {}).get("kind") == "generative":
        raise ScoreError(f"{run_dir}: a generative model's run has no risk to score")
    manifest = _json(
        _require(
            run_dir,
            MANIFEST_FILE,
            "runs write it at their end (a run older than fedjax-rhd-score, or one that stopped early, "
            "cannot be scored; rerun it)",
        )  # fmt: skip
    )
    if manifest.get("format") != FORMAT:
        raise ScoreError(f"{run_dir / MANIFEST_FILE}: format {manifest.get('format')!r}, expected {FORMAT!r}")
    arrays = _npz(_require(run_dir, manifest.get("arrays", ARRAYS_FILE), "written with scoring.json"))
    params_path = _require(run_dir, PARAMS_FILE, "the run's trained parameters")
    try:
        params = load_params(params_path)
    except (OSError, ValueError) as err:
        raise ScoreError(f"{params_path}: not a readable .npz archive ({err})") from err
    models = tuple(
        ModelEntry(m["name"], m["description"], m["params"], tuple(m["baseline_nodes"]), bool(m["main"]))
        for m in manifest["models"]
    )
    for m in models:
        stack = m.params.split("/")[0]
        if stack not in params:
            raise ScoreError(f"{params_path}: holds no {stack!r} parameters for model {m.name!r}")
    try:
        config = run_config_from_json(results["config"])
    except (KeyError, ValueError, TypeError) as err:
        raise ScoreError(f"{run_dir / RESULTS_FILE}: its config cannot be read back ({err})") from err
    return TrainedRun(run_dir, results, manifest, arrays, params, config, models)
