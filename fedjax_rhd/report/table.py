"""The study's survival table (Table 2) from a set of runs, cell by cell.

Cells follow ARCHITECTURE §5: *Full dataset* is the ``centralized`` model, *node k with
FL* the model node k holds at the end of federation (beside the global model), the
*isolated biggest / smallest* node that node's ``local`` model, the *clinical score* the
use case's score on the same test rows; every one on the global test set. Each cell is
the mean over split seeds with a paired-bootstrap 95% interval (:mod:`.stats`) and the
node's share of the training data. A cell without runs carries the reason instead.

Every per-seed C-index is recomputed from ``test_predictions.parquet`` and must equal the
one in ``results.json``; a mismatch means the files do not belong together and is an error.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from fedjax_rhd.report.runs import CENTRALIZED, LOCAL, ReportInputError, RowKey, Run, config_differences
from fedjax_rhd.report.stats import Interval, SeedRows, combine_reported, mean_over_seeds, paired_difference

# Two C-indices on the same rows closer than this, computed from the same risks, are the same number
# up to float summation order (pair counts are exact integers; only the final division rounds).
_SAME_CINDEX = 1e-9


def strategy_label(runs: list[Run]) -> str:
    """How tables print a strategy: its preset's ``label`` (``strategy.label``), else its name."""
    if not runs:
        return "no federated run"
    strategy = runs[0].results["config"]["strategy"]
    return strategy.get("label") or strategy["name"]


@dataclasses.dataclass(frozen=True)
class Cell:
    """One table cell: a model's mean test C-index over split seeds, or why there is none."""

    column: str  # machine name: full, global, node:<name>, isolated_biggest, isolated_smallest, ...
    label: str  # column header
    value: Interval | None
    share: float | None  # the node's share of training rows (1.0 = all nodes)
    node: str | None = None
    per_seed: tuple[tuple[int, float, str], ...] = ()  # (seed, C-index in results.json, that file)
    sd_seeds: float | None = None  # spread of the per-seed C-indices (ddof=1)
    approximate: bool = False  # interval combined from per-run intervals, no per-row pairing
    detail: str | None = None  # shown before the value, e.g. the clinical score's name
    reason: str | None = None  # why the cell is empty


@dataclasses.dataclass(frozen=True)
class Comparison:
    label: str
    value: Interval | None
    reason: str | None = None


@dataclasses.dataclass(frozen=True)
class Row:
    key: RowKey
    fl_strategy: str | None
    node_names: tuple[str, ...]
    cells: tuple[Cell, ...]
    comparisons: dict[str, Comparison]  # "fl_minus_centralised", "gain:<node>", "fl_minus_oracle"
    notes: tuple[str, ...]
    fl_label: str = "no federated run"  # the federated strategy as tables print it


# What a model is, in one run: its results.json C-index field and its predictions column.
Source = tuple[str, str]  # (json path inside final, predictions column)


def _json_ci(results: dict, path: str) -> dict | None:
    node: object = results["final"]
    for part in path.split("."):
        if node is None:
            return None
        node = node[int(part)] if isinstance(node, list) else node.get(part)  # type: ignore[union-attr]
    return node  # type: ignore[return-value]


class _Scorer:
    """Per-seed C-indices and resample vectors of (run, column), checked against results.json."""

    def __init__(self, n_boot: int, boot_seed: int) -> None:
        self.n_boot, self.boot_seed = n_boot, boot_seed
        self._rows: dict[tuple[RowKey, int], tuple[SeedRows, list, Path]] = {}
        self._cache: dict[tuple[str, str], tuple[float, np.ndarray]] = {}
        self._predictions: dict[Path, pl.DataFrame] = {}

    def predictions(self, run: Run) -> pl.DataFrame:
        if run.path not in self._predictions:
            self._predictions[run.path] = run.predictions()
        return self._predictions[run.path]

    def rows_for(self, run: Run) -> SeedRows:
        key = (run.row, run.seed)
        pred = self.predictions(run)
        if key not in self._rows:
            rows = SeedRows(
                pred["time"].to_numpy(),
                pred["event"].to_numpy(),
                seed=run.seed,
                n_boot=self.n_boot,
                boot_seed=self.boot_seed,
            )
            self._rows[key] = (rows, pred["patient_id"].to_list(), run.path)
        rows, ids, first = self._rows[key]
        if pred["patient_id"].to_list() != ids:
            raise ReportInputError(
                f"{run.path.parent / 'test_predictions.parquet'}: its test patients differ from those of "
                f"{first.parent / 'test_predictions.parquet'} (same use case, split and "
                f"seed.split={run.seed}); the runs did not use the same data"
            )
        return rows

    def score(self, run: Run, json_path: str, column: str) -> tuple[float, np.ndarray] | None:
        ci = _json_ci(run.results, json_path)
        if ci is None:
            return None
        key = (str(run.path), column)
        if key not in self._cache:
            pred = self.predictions(run)
            if column not in pred.columns:
                raise ReportInputError(
                    f"{run.path.parent / 'test_predictions.parquet'}: no column {column!r} "
                    f"(results.json has final.{json_path})"
                )
            rows = self.rows_for(run)
            risk = pred[column].to_numpy()
            point = rows.cindex(risk)
            if abs(point - ci["estimate"]) > _SAME_CINDEX:
                raise ReportInputError(
                    f"{run.path}: final.{json_path}.estimate = {ci['estimate']!r} but column {column!r} "
                    f"of test_predictions.parquet gives {point!r}; the files do not belong together"
                )
            self._cache[key] = (float(ci["estimate"]), rows.boot(risk))
        return self._cache[key]


def _cell(
    scorer: _Scorer,
    runs: dict[int, Run],
    source: Source,
    *,
    column: str,
    label: str,
    share: float | None,
    node: str | None = None,
    missing: str,
) -> Cell:
    if not runs:
        return Cell(column, label, None, share, node, reason=missing)
    json_path, pred_col = source
    points, boots, per_seed = {}, {}, []
    for seed, run in sorted(runs.items()):
        scored = scorer.score(run, json_path, pred_col)
        if scored is None:
            field = json_path.removesuffix(".c_index_test")
            return Cell(column, label, None, share, node, reason=f"final.{field} is null in {run.path}")
        points[seed], boots[seed] = scored
        per_seed.append((seed, scored[0], str(run.path)))
    sd = float(np.std(list(points.values()), ddof=1)) if len(points) > 1 else None
    return Cell(column, label, mean_over_seeds(points, boots), share, node, tuple(per_seed), sd)


def _clinical_cell(scorer: _Scorer, runs: dict[int, Run]) -> Cell:
    label = "Clinical score"
    if not runs:
        return Cell("clinical", label, None, None, reason="no run of this row")
    scores = {s: r.results["final"].get("clinical_score") for s, r in runs.items()}
    if all(v is None for v in scores.values()):
        return Cell(
            "clinical",
            label,
            None,
            None,
            reason="no clinical score in these runs (final.clinical_score is null)",
        )
    missing = [str(runs[s].path) for s, v in scores.items() if v is None]
    if missing:
        return Cell(
            "clinical", label, None, None, reason=f"final.clinical_score is null in {', '.join(missing)}"
        )
    detail = "/".join(sorted({v["name"] for v in scores.values()}))
    if all("clinical_score" in scorer.predictions(r).columns for r in runs.values()):
        cell = _cell(
            scorer,
            runs,
            ("clinical_score.c_index_test", "clinical_score"),
            column="clinical",
            label=label,
            share=None,
            missing="",
        )
        return dataclasses.replace(cell, detail=detail)
    cis = {s: v["c_index_test"] for s, v in scores.items()}
    per_seed = tuple((s, float(cis[s]["estimate"]), str(runs[s].path)) for s in sorted(cis))
    sd = float(np.std([c["estimate"] for c in cis.values()], ddof=1)) if len(cis) > 1 else None
    return Cell(
        "clinical", label, combine_reported(cis), None, None, per_seed, sd, approximate=True, detail=detail
    )


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def build_rows(runs: list[Run], *, n_boot: int = 1000, boot_seed: int = 0) -> list[Row]:
    """The study table's rows: one per use case × scenario × split × model × federated strategy."""
    scorer = _Scorer(n_boot, boot_seed)
    by_row: dict[RowKey, dict[str, dict[int, Run]]] = defaultdict(lambda: defaultdict(dict))
    for run in runs:
        by_row[run.row][run.strategy][run.seed] = run
    rows = []
    for key in sorted(by_row, key=lambda k: (k.use_case, k.scenario, k.split, k.model)):
        strategies = by_row[key]
        fl_names = sorted(s for s in strategies if s not in (CENTRALIZED, LOCAL)) or [None]
        cen, loc = strategies.get(CENTRALIZED, {}), strategies.get(LOCAL, {})
        for fl_name in fl_names:
            fl = strategies.get(fl_name, {}) if fl_name else {}
            rows.append(_row(scorer, key, fl_name, fl, cen, loc))
    return rows


def _row(
    scorer: _Scorer,
    key: RowKey,
    fl_name: str | None,
    fl: dict[int, Run],
    cen: dict[int, Run],
    loc: dict[int, Run],
) -> Row:
    notes = []
    members = [*fl.values(), *cen.values(), *loc.values()]
    diff = config_differences(members)
    if diff:
        notes.append(f"the runs of this row differ in {', '.join(diff)}: they are not one experiment")
    if len({r.results["dataset"]["id"] for r in members}) > 1:
        notes.append("the runs of this row were trained on different datasets (dataset.id differs)")
    ref = next(iter(fl.values()), None) or next(iter(loc.values()), None)
    names = tuple(ref.node_names) if ref else ()
    for run in [*fl.values(), *loc.values()]:
        if tuple(run.node_names) != names:
            raise ReportInputError(
                f"{run.path}: nodes {run.node_names} differ from {list(names)} in {ref.path}"
            )
    shares = {n: _mean([r.shares[i] for r in [*fl.values(), *loc.values()]]) for i, n in enumerate(names)}
    label = strategy_label(list(fl.values()))
    no_fl = f"no federated run for this row (strategies other than {CENTRALIZED}/{LOCAL})"
    cells = [
        _cell(
            scorer,
            cen,
            ("nodes.0.c_index_test", "risk"),
            column="full",
            label="Full dataset (centralised)",
            share=1.0,
            missing=f"no {CENTRALIZED} run for this row",
        ),
        _cell(
            scorer,
            fl,
            ("global_model.c_index_test", "risk"),
            column="global",
            label=f"{label} global model",
            share=1.0,
            missing=no_fl,
        ),
    ]
    for i, n in enumerate(names):
        cells.append(
            _cell(
                scorer,
                fl,
                (f"nodes.{i}.c_index_test", f"risk_{n}"),
                column=f"node:{n}",
                label=f"{n} with FL",
                share=shares[n],
                node=n,
                missing=no_fl,
            )
        )
    if any(r.results["final"].get("personalized") for r in fl.values()):
        # Issue 9's personalised column: the final global model fine-tuned on node k.
        for i, n in enumerate(names):
            cells.append(
                _cell(
                    scorer,
                    fl,
                    (f"personalized.nodes.{i}.c_index_test", f"risk_{n}_finetuned"),
                    column=f"finetuned:{n}",
                    label=f"{n} fine-tuned",
                    share=shares[n],
                    node=n,
                    missing=no_fl,
                )
            )
    if names:
        order = sorted(range(len(names)), key=lambda i: (-shares[names[i]], i))
        for column, i in (("isolated_biggest", order[0]), ("isolated_smallest", order[-1])):
            n = names[i]
            cells.append(
                _cell(
                    scorer,
                    loc,
                    (f"nodes.{i}.c_index_test", f"risk_{n}"),
                    column=column,
                    label=f"Isolated {column.split('_')[1]} ({n})",
                    share=shares[n],
                    node=n,
                    missing=f"no {LOCAL} run for this row",
                )
            )
    else:
        for column in ("isolated_biggest", "isolated_smallest"):
            cells.append(
                Cell(
                    column,
                    f"Isolated {column.split('_')[1]}",
                    None,
                    None,
                    reason=f"no {LOCAL} or federated run names the nodes",
                )
            )
    any_runs = {**loc, **cen, **fl}  # every seed, preferring the federated run's files
    cells.append(_clinical_cell(scorer, any_runs))
    cells.append(
        _cell(
            scorer,
            any_runs,
            ("oracle_c_index_test", "oracle_risk"),
            column="oracle",
            label="Oracle (true risk)",
            share=None,
            missing="no run of this row",
        )
    )
    comparisons = _comparisons(scorer, fl, cen, loc, names)
    return Row(key, fl_name, names, tuple(cells), comparisons, tuple(notes), label)


def _scores(scorer: _Scorer, runs: dict[int, Run], json_path: str, column: str) -> tuple[dict, dict]:
    points, boots = {}, {}
    for seed, run in runs.items():
        scored = scorer.score(run, json_path, column)
        if scored is not None:
            points[seed], boots[seed] = scored
    return points, boots


def _compare(label: str, a: tuple[dict, dict], b: tuple[dict, dict], why: str) -> Comparison:
    value = paired_difference(a, b)
    return Comparison(label, value, None if value is not None else why)


def _comparisons(
    scorer: _Scorer, fl: dict[int, Run], cen: dict[int, Run], loc: dict[int, Run], names: tuple[str, ...]
) -> dict[str, Comparison]:
    glob = _scores(scorer, fl, "global_model.c_index_test", "risk")
    out = {
        "fl_minus_centralised": _compare(
            "global model − centralised",
            glob,
            _scores(scorer, cen, "nodes.0.c_index_test", "risk"),
            "needs a federated and a centralized run on a common split seed",
        ),
        "fl_minus_oracle": _compare(
            "global model − oracle",
            glob,
            _scores(scorer, fl, "oracle_c_index_test", "oracle_risk"),
            "needs a federated run on a simulated cohort",
        ),
    }
    for i, n in enumerate(names):
        out[f"gain:{n}"] = _compare(
            f"{n} with FL − {n} alone",
            _scores(scorer, fl, f"nodes.{i}.c_index_test", f"risk_{n}"),
            _scores(scorer, loc, f"nodes.{i}.c_index_test", f"risk_{n}"),
            "needs a federated and a local run on a common split seed",
        )
    return out
