"""The study's survival table (Table 2) from a set of runs, cell by cell.

Cells follow ARCHITECTURE §5: *Full dataset* is the ``centralized`` model, *node k with
FL* the model node k holds at the end of federation (beside the global model), the
*isolated biggest / smallest* node that node's ``local`` model, the *clinical score* the
use case's score on the same test rows; every one on the global test set. Each cell is
the mean over split seeds (and over the training replicates of a split seed: runs that
differ only in ``seed.init`` / ``seed.train``) with two 95% intervals: the headline one
from the cluster bootstrap of :mod:`.cluster` (split seeds, patients shared between the
seeds' test sets drawn once, training replicates; ``Interval.covers`` says which), and
the test-row interval of :mod:`.stats` (test rows only, given the trained models), kept
and labelled as such. A cell without runs carries the reason instead.

Every per-seed C-index is recomputed from ``test_predictions.parquet`` and must equal the
one in ``results.json``; a mismatch means the files do not belong together and is an error.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from pathlib import Path

import numpy as np
import polars as pl

from fedjax_rhd.report.cluster import ClusterDesign, SeedTestRows
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
    value: Interval | None  # the cluster-bootstrap interval (value.covers says what it resampled)
    share: float | None  # the node's share of training rows (1.0 = all nodes)
    node: str | None = None
    per_seed: tuple[tuple[int, float, str], ...] = ()  # (seed, C-index in results.json, that file), per run
    sd_seeds: float | None = None  # spread of the per-seed C-indices (ddof=1)
    approximate: bool = False  # interval combined from per-run intervals, no per-row pairing
    detail: str | None = None  # shown before the value, e.g. the clinical score's name
    reason: str | None = None  # why the cell is empty
    rows_value: Interval | None = None  # the test-row interval (test rows only, given the models)
    n_replicates: int = 1  # fewest training replicates of any split seed


@dataclasses.dataclass(frozen=True)
class Comparison:
    label: str
    value: Interval | None  # paired difference, cluster bootstrap
    reason: str | None = None
    rows_value: Interval | None = None  # the same difference's test-row interval


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

    def risk(self, run: Run, column: str) -> np.ndarray:
        """f64[n] the column's risks on the run's test rows (NaN where a score does not score a row)."""
        return self.predictions(run)[column].cast(pl.Float64).fill_null(np.nan).to_numpy()

    def design(self, runs: list[Run]) -> ClusterDesign:
        """One cluster design per table row: every split seed's test rows, drawn together."""
        tests = {}
        for run in sorted(runs, key=lambda r: (r.seed, str(r.path))):
            if run.seed not in tests:
                pred = self.predictions(run)
                self.rows_for(run)  # the seed's runs must share test patients (checked there)
                tests[run.seed] = SeedTestRows(
                    pred["patient_id"].to_numpy(), pred["time"].to_numpy(), pred["event"].to_numpy()
                )
        return ClusterDesign(tests, n_boot=self.n_boot, boot_seed=self.boot_seed)

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


@dataclasses.dataclass(frozen=True)
class _Side:
    """One model of a row over its split seeds: per seed, one entry per training replicate."""

    points: dict[int, float]  # seed -> mean over replicates of the C-index
    boots: dict[int, np.ndarray]  # seed -> mean over replicates of the test-row resamples
    risks: dict[int, list[np.ndarray]]  # seed -> each replicate's risks
    per_seed: tuple[tuple[int, float, str], ...]


def _side(scorer: _Scorer, runs: dict[int, list[Run]], json_path: str, column: str) -> _Side | str:
    """The model's scores, or the reason (a results.json field that is null) it has none."""
    points, boots, risks, per_seed = {}, {}, {}, []
    for seed, reps in sorted(runs.items()):
        ps, bs = [], []
        for run in reps:
            scored = scorer.score(run, json_path, column)
            if scored is None:
                return f"final.{json_path.removesuffix('.c_index_test')} is null in {run.path}"
            ps.append(scored[0])
            bs.append(scored[1])
            per_seed.append((seed, scored[0], str(run.path)))
        points[seed], boots[seed] = float(np.mean(ps)), np.mean(bs, axis=0)
        risks[seed] = [scorer.risk(run, column) for run in reps]
    return _Side(points, boots, risks, tuple(per_seed))


def _cell(
    scorer: _Scorer,
    design: ClusterDesign,
    runs: dict[int, list[Run]],
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
    side = _side(scorer, runs, json_path, pred_col)
    if isinstance(side, str):
        return Cell(column, label, None, share, node, reason=side)
    sd = float(np.std(list(side.points.values()), ddof=1)) if len(side.points) > 1 else None
    value = design.mean(design.score(side.risks))
    rows_value = mean_over_seeds(side.points, side.boots)
    reps = min(len(r) for r in runs.values())
    return Cell(
        column, label, value, share, node, side.per_seed, sd, rows_value=rows_value, n_replicates=reps
    )


def _clinical_cell(scorer: _Scorer, design: ClusterDesign, runs: dict[int, Run]) -> Cell:
    """The score is a function of the patient, not of training: one run per seed is enough."""
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
            design,
            {s: [r] for s, r in runs.items()},
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
    approx = combine_reported(cis)
    return Cell(
        "clinical",
        label,
        approx,
        None,
        None,
        per_seed,
        sd,
        approximate=True,
        detail=detail,
        rows_value=approx,
    )


def _mean(values: list[float]) -> float:
    return float(np.mean(values))


def build_rows(runs: list[Run], *, n_boot: int = 1000, boot_seed: int = 0) -> list[Row]:
    """The study table's rows: one per use case × scenario × split × model × federated strategy."""
    scorer = _Scorer(n_boot, boot_seed)
    by_row: dict[RowKey, dict[str, dict[int, list[Run]]]] = defaultdict(lambda: defaultdict(dict))
    for run in sorted(runs, key=lambda r: r.training_seeds):  # replicates pair by position
        by_row[run.row][run.strategy].setdefault(run.seed, []).append(run)
    rows = []
    for key in sorted(by_row, key=lambda k: (k.use_case, k.scenario, k.split, k.model)):
        strategies = by_row[key]
        fl_names = sorted(s for s in strategies if s not in (CENTRALIZED, LOCAL)) or [None]
        cen, loc = strategies.get(CENTRALIZED, {}), strategies.get(LOCAL, {})
        design = scorer.design(
            [r for by_seed in strategies.values() for reps in by_seed.values() for r in reps]
        )
        for fl_name in fl_names:
            fl = strategies.get(fl_name, {}) if fl_name else {}
            rows.append(_row(scorer, design, key, fl_name, fl, cen, loc))
    return rows


def _row(
    scorer: _Scorer,
    design: ClusterDesign,
    key: RowKey,
    fl_name: str | None,
    fl: dict[int, list[Run]],
    cen: dict[int, list[Run]],
    loc: dict[int, list[Run]],
) -> Row:
    notes = []
    members = [r for part in (fl, cen, loc) for reps in part.values() for r in reps]
    diff = config_differences(members)
    if diff:
        notes.append(f"the runs of this row differ in {', '.join(diff)}: they are not one experiment")
    if len({r.results["dataset"]["id"] for r in members}) > 1:
        notes.append("the runs of this row were trained on different datasets (dataset.id differs)")
    fl_loc = [r for part in (fl, loc) for reps in part.values() for r in reps]
    ref = fl_loc[0] if fl_loc else None
    names = tuple(ref.node_names) if ref else ()
    for run in fl_loc:
        if tuple(run.node_names) != names:
            raise ReportInputError(
                f"{run.path}: nodes {run.node_names} differ from {list(names)} in {ref.path}"
            )
    shares = {n: _mean([r.shares[i] for r in fl_loc]) for i, n in enumerate(names)}
    label = strategy_label([r for reps in fl.values() for r in reps])
    no_fl = f"no federated run for this row (strategies other than {CENTRALIZED}/{LOCAL})"
    cells = [
        _cell(
            scorer,
            design,
            cen,
            ("nodes.0.c_index_test", "risk"),
            column="full",
            label="Full dataset (centralised)",
            share=1.0,
            missing=f"no {CENTRALIZED} run for this row",
        ),
        _cell(
            scorer,
            design,
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
                design,
                fl,
                (f"nodes.{i}.c_index_test", f"risk_{n}"),
                column=f"node:{n}",
                label=f"{n} with FL",
                share=shares[n],
                node=n,
                missing=no_fl,
            )
        )
    if any(r.results["final"].get("personalized") for reps in fl.values() for r in reps):
        # Issue 9's personalised column: the final global model fine-tuned on node k.
        for i, n in enumerate(names):
            cells.append(
                _cell(
                    scorer,
                    design,
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
                    design,
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
    # Every seed, preferring the federated run's files; the score and the oracle are functions of the
    # patient, so one run per seed (its first replicate) is enough.
    any_runs = {s: reps[0] for s, reps in {**loc, **cen, **fl}.items()}
    cells.append(_clinical_cell(scorer, design, any_runs))
    cells.append(
        _cell(
            scorer,
            design,
            {s: [r] for s, r in any_runs.items()},
            ("oracle_c_index_test", "oracle_risk"),
            column="oracle",
            label="Oracle (true risk)",
            share=None,
            missing="no run of this row",
        )
    )
    comparisons = _comparisons(scorer, design, fl, cen, loc, any_runs, names)
    return Row(key, fl_name, names, tuple(cells), comparisons, tuple(notes), label)


def _scores(scorer: _Scorer, runs: dict[int, list[Run]], json_path: str, column: str) -> _Side:
    """The model on the seeds where every replicate has it (a null field drops that seed)."""
    kept = {s: reps for s, reps in runs.items() if all(_json_ci(r.results, json_path) for r in reps)}
    side = _side(scorer, kept, json_path, column)
    assert not isinstance(side, str)  # the null fields were dropped above
    return side


def _compare(
    design: ClusterDesign, label: str, a: _Side, b: _Side, why: str, rows: dict | None = None
) -> Comparison:
    seeds = sorted(set(a.points) & set(b.points))
    if not seeds:
        return Comparison(label, None, why)
    if rows is None:
        value = design.difference(design.score(a.risks), design.score(b.risks))
        rows_value = paired_difference((a.points, a.boots), (b.points, b.boots))
    else:  # on the rows ``rows[seed]`` only, both sides (a clinical score's rows)
        value = design.difference(design.score(a.risks, rows), design.score(b.risks, rows))
        rows_value = None
    return Comparison(label, value, None, rows_value)


def _comparisons(
    scorer: _Scorer,
    design: ClusterDesign,
    fl: dict[int, list[Run]],
    cen: dict[int, list[Run]],
    loc: dict[int, list[Run]],
    any_runs: dict[int, Run],
    names: tuple[str, ...],
) -> dict[str, Comparison]:
    glob = _scores(scorer, fl, "global_model.c_index_test", "risk")
    full = _scores(scorer, cen, "nodes.0.c_index_test", "risk")
    out = {
        "fl_minus_centralised": _compare(
            design,
            "global model − centralised",
            glob,
            full,
            "needs a federated and a centralized run on a common split seed",
        ),
        "fl_minus_oracle": _compare(
            design,
            "global model − oracle",
            glob,
            _scores(scorer, {s: reps[:1] for s, reps in fl.items()}, "oracle_c_index_test", "oracle_risk"),
            "needs a federated run on a simulated cohort",
        ),
    }
    for i, n in enumerate(names):
        out[f"gain:{n}"] = _compare(
            design,
            f"{n} with FL − {n} alone",
            _scores(scorer, fl, f"nodes.{i}.c_index_test", f"risk_{n}"),
            _scores(scorer, loc, f"nodes.{i}.c_index_test", f"risk_{n}"),
            "needs a federated and a local run on a common split seed",
        )
    # Model − clinical score, paired on the rows the score covers (the score's cell covers only those).
    with_score = {
        s: r
        for s, r in any_runs.items()
        if r.results["final"].get("clinical_score") and "clinical_score" in scorer.predictions(r).columns
    }
    score = _scores(
        scorer, {s: [r] for s, r in with_score.items()}, "clinical_score.c_index_test", "clinical_score"
    )
    rows = {s: ~np.isnan(v[0]) for s, v in score.risks.items()}
    why = "needs per-row clinical scores (a clinical_score column) on a common split seed"
    for key, label, side in (("fl_minus_score", "global model − clinical score", glob),
                             ("centralised_minus_score", "centralised − clinical score", full)):  # fmt: skip
        common = {s: v for s, v in side.risks.items() if s in rows}
        kept = _Side({s: side.points[s] for s in common}, {}, common, ())
        out[key] = _compare(design, f"{label} (on the score's rows)", kept, score, why, rows)
    return out
