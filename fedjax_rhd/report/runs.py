"""Finding and checking the runs a report reads: ``results.json`` + ``test_predictions.parquet``.

A report reads any mix of single-run and multirun directories. Every run is keyed by
what the study table's rows and columns need (use case, scenario, split, model,
strategy, split seed); two runs with the same key would make a cell ambiguous, so
they are an error that names both files, never a silent pick.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import polars as pl

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "results.schema.json"
PREDICTIONS = "test_predictions.parquet"
# Strategies that are the study's reference columns; every other strategy is federated.
CENTRALIZED, LOCAL = "centralized", "local"
# Config keys that may differ between the runs of one table row without changing what
# the row compares (per-column strategy settings, the seed that indexes the cells, and
# settings that do not touch the numbers).
# seed.init / seed.train are the training replicates a cell averages over (report.cluster); split.seed
# follows seed.split (RunConfig checks they are equal), so it differs across a row's seeds by design.
_IGNORED_CONFIG = (
    "strategy.", "seed.split", "split.seed", "seed.init", "seed.train", "tracker.", "progress", "bootstrap",
    "data_root",
)  # fmt: skip


class ReportInputError(ValueError):
    """A run directory the report cannot use; the message names the file and field."""


@dataclasses.dataclass(frozen=True)
class RowKey:
    """One row of the study table (and one figure)."""

    use_case: str
    scenario: str
    split: str
    model: str


@dataclasses.dataclass(frozen=True)
class Run:
    """One run directory's results, with its predictions read on demand."""

    path: Path  # the results.json file
    results: dict[str, Any] = dataclasses.field(repr=False, compare=False)

    @property
    def row(self) -> RowKey:
        cfg = self.results["config"]
        split = cfg["split"]["name"]
        held = cfg["split"].get("holdout_centre")
        if held is not None:  # leave one centre out: each held-out centre is its own test set, its own row
            split = f"{split}-holdout-{held}"
        return RowKey(cfg["use_case"]["name"], cfg["scenario"]["name"], split, cfg["model"]["name"])

    @property
    def strategy(self) -> str:
        return self.results["config"]["strategy"]["name"]

    @property
    def seed(self) -> int:
        return int(self.results["config"]["seed"]["split"])

    @property
    def training_seeds(self) -> tuple[int, int]:
        """(``seed.init``, ``seed.train``): runs of one cell that differ only here are training replicates."""
        seed = self.results["config"]["seed"]
        return int(seed.get("init", 0)), int(seed.get("train", 0))

    @property
    def generative(self) -> bool:
        """A generative model's run (the report's synthetic section; no risks to pair)."""
        return self.results["final"].get("kind") == "generative"

    @property
    def node_names(self) -> list[str]:
        return [n["name"] for n in self.results["final"]["nodes"]]

    @property
    def shares(self) -> list[float]:
        return [float(n["share"]) for n in self.results["final"]["nodes"]]

    def predictions(self) -> pl.DataFrame:
        path = self.path.parent / PREDICTIONS
        if not path.is_file():
            raise ReportInputError(f"{path}: missing; every run writes it next to {self.path.name}")
        try:
            return pl.read_parquet(path)
        except Exception as err:  # polars' own errors and OSError: a damaged or foreign file
            raise ReportInputError(
                f"{path}: not a readable parquet file ({type(err).__name__}: {err})"
            ) from err


def _load(path: Path, validator: Any) -> Run:
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ReportInputError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno})") from err
    except (OSError, UnicodeDecodeError) as err:  # unreadable, or not UTF-8 text
        raise ReportInputError(f"{path}: cannot be read as UTF-8 JSON ({err})") from err
    except RecursionError as err:  # nested beyond Python's stack: not a results.json
        raise ReportInputError(f"{path}: nested too deeply to be a results.json") from err
    # the error jsonschema.validate would raise: the best match among all of them
    err = jsonschema.exceptions.best_match(validator.iter_errors(results))
    if err is not None:
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise ReportInputError(f"{path}: field {where}: {err.message}")
    return Run(path=path, results=results)


def find_runs(roots: Iterable[str | Path]) -> list[Run]:
    """Every run under ``roots`` (run directories, multirun directories, or results.json files).

    Raises:
        ReportInputError: a root that does not exist or holds no run, a results.json that is
            not valid JSON or breaks the schema (file and field named), or two runs for the
            same cell.
    """
    schema = json.loads(SCHEMA_PATH.read_text())
    # The schema checked once here, not once per run (jsonschema.validate re-checks it every call:
    # ten times the cost of validating a run; a study's report reads 150).
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    validator = cls(schema)
    paths: list[Path] = []
    for root in map(Path, roots):
        if root.is_file() and root.name == "results.json":
            found = [root]
        elif root.is_dir():
            found = sorted(root.rglob("results.json"))
        else:
            raise ReportInputError(f"{root}: no such run directory")
        if not found:
            raise ReportInputError(f"{root}: no results.json below it")
        paths.extend(found)
    runs = [_load(p, validator) for p in dict.fromkeys(p.resolve() for p in paths)]
    seen: dict[tuple, Path] = {}
    for run in runs:
        # Runs that differ only in seed.init / seed.train are replicates of one cell; the same
        # training seeds twice would count one replicate twice.
        key = (run.row, run.strategy, run.seed, run.training_seeds)
        if key in seen:
            init, train = run.training_seeds
            raise ReportInputError(
                f"two runs for the same cell ({run.row.use_case}, {run.row.scenario}, split={run.row.split}, "
                f"model={run.row.model}, strategy={run.strategy}, seed.split={run.seed}, seed.init={init}, "
                f"seed.train={train}): {seen[key]} and {run.path}; pass only one of them"
            )
        seen[key] = run.path
    return runs


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: json.dumps(tree)}


def config_differences(runs: list[Run]) -> list[str]:
    """Config keys (outside strategy settings and the split seed) on which ``runs`` disagree.

    A table row compares strategies on the same data and model; a difference here (say,
    ``model.hidden``) means the row mixes experiments, which the report states under the table.
    """
    flat = [_flatten(r.results["config"]) for r in runs]
    keys = sorted(set().union(*flat))
    return [
        k for k in keys if not k.startswith(_IGNORED_CONFIG) and len({f.get(k, "<absent>") for f in flat}) > 1
    ]
