"""Is a dataset one a run's models can score? Same guide, same version, same feature schema.

A model reads its inputs by position after encoding, so a feature renamed, added, dropped,
re-levelled or given another unit or range would silently feed it the wrong numbers. Both
the guide installed now and the dataset's card are compared with the schema the run
recorded (``scoring.json``), and every difference is named.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.score.load_run import ScoreError, TrainedRun
from fedjax_rhd.sources.scores import clinical_scores
from harmonize.datasets import load_dataset
from harmonize.guide import Guide, GuideError
from harmonize.identity import CARD_FILE, DatasetCacheError, feature_differences, features_card, read_card
from harmonize.registry import dataset_folder
from harmonize.sources import REFERENCE_FILE

_FIELDS = ("kind", "levels", "unit", "range", "group")


def schema_differences(trained: Sequence[dict[str, Any]], other: Sequence[dict[str, Any]]) -> list[str]:
    """Every way ``other``'s features (``features_card`` entries) differ from ``trained``'s, in words."""
    missing, extra, changed = feature_differences(list(trained), list(other), _FIELDS)
    out = []
    if missing:
        out.append(f"missing feature(s) {missing}")
    if extra:
        out.append(f"feature(s) the model was not trained on {extra}")
    out += [
        f"feature {name!r}: {field} {theirs!r}, trained on {ours!r}" for name, field, ours, theirs in changed
    ]
    if not out and [f["name"] for f in trained] != [f["name"] for f in other]:
        out.append("the features are in another order")
    return sorted(out)


def _compare(run: TrainedRun, use_case: str, version: str, features: list[dict[str, Any]], what: str) -> None:
    g = run.manifest["guide"]
    problems = []
    if use_case != g["use_case"]:
        problems.append(f"guide {use_case!r}, the model was trained on guide {g['use_case']!r}")
    if version != g["version"]:
        problems.append(f"guide version {version!r}, the model was trained on version {g['version']!r}")
    problems += schema_differences(g["features"], features)
    if problems:
        raise ScoreError(f"{what} is incompatible with the run's model: " + "; ".join(problems))


def trained_guide(run: TrainedRun) -> Guide:
    """The guide the run was trained on, as installed now; refused if it changed since.

    Raises:
        ScoreError: the guide cannot be loaded, or its version or feature schema changed.
    """
    name = run.manifest["guide"]["name"]
    try:
        guide = cached_guide(name)
    except (OSError, GuideError, ValueError) as err:
        raise ScoreError(f"guide {name!r} of run {run.path} cannot be loaded: {err}") from err
    _compare(run, guide.use_case, guide.version, features_card(guide), f"guide {name!r} as installed now")
    return guide


def dataset_location(dataset: str, data_root: str | Path) -> Path:
    """A dataset folder (holding ``dataset.json``) given as a path, or a registered name in ``data_root``."""
    path = Path(dataset)
    if (path / CARD_FILE).is_file():
        return path
    folder = dataset_folder(data_root, dataset)
    if (folder / CARD_FILE).is_file():
        return folder
    raise ScoreError(
        f"dataset {dataset!r}: neither a dataset folder nor a registered dataset under "
        f"{Path(data_root) / 'datasets'} (no {CARD_FILE}); build it first "
        "(a run, or harmonize) or pass --data-root"
    )


def load_scored_dataset(
    run: TrainedRun, folder: Path, guide: Guide
) -> tuple[pl.DataFrame, dict[str, Any], str, pl.DataFrame | None]:
    """A compatible dataset's table, card and clinical score (name, per-patient table).

    Raises:
        ScoreError: another guide, version or schema (features named); a stale or corrupted dataset.
    """
    try:
        card = read_card(folder)
    except (OSError, ValueError, DatasetCacheError) as err:
        raise ScoreError(f"{folder / CARD_FILE}: cannot be read ({err})") from err
    _compare(
        run, str(card.get("use_case")), str(card.get("guide_version")), card.get("features") or [],
        f"dataset {card.get('name', folder.name)!r} ({folder})",
    )  # fmt: skip
    try:
        table, card = load_dataset(folder, guide)
    except DatasetCacheError as err:
        raise ScoreError(str(err)) from err
    reference_path = folder / REFERENCE_FILE
    reference = pl.read_parquet(reference_path) if reference_path.is_file() else None
    score_name, scores = clinical_scores(table, guide, card=card, reference=reference)
    return table, card, score_name, scores
