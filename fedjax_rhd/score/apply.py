"""A run's models applied to a table: encode with the run's own statistics, then score every model.

Rows go the way the run's test rows went (``fedjax_rhd.data.federated``): the run's feature
reductions (its federated means and axes, ``data.reduce.transform``), encoding, the run's
standardisation and imputation (``Preprocessor.transform``; under ``strategy=local`` once per node
with that node's own, its unseen layers unobserved), packed in descending time with
``patient_id`` order inside ties. Risks come from the same jitted function the simulator
scores test rows with, per parameter stack as the run stacked them, and the metrics from the
project's own evaluation code: Harrell's C with its bootstrap (``metrics.concordance``),
Uno's C, td-AUC and IBS (``metrics.evaluation.survival_metrics`` over the node statistics
the run recorded), the clinical score (``metrics.clinical``) and its paired difference.
So a run's own test rows score to exactly its ``results.json`` numbers.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl

from fedjax_rhd.data.federated import encode_rows, masked, pack_rows
from fedjax_rhd.data.reduce import reduced_guide, transform
from fedjax_rhd.federation.simulator import own_risks, stacked_risks
from fedjax_rhd.metrics import ipcw
from fedjax_rhd.metrics.clinical import clinical_score_result, scores_on_test
from fedjax_rhd.metrics.concordance import bootstrap_cindex, paired_bootstrap_difference
from fedjax_rhd.metrics.evaluation import survival_metrics, survival_on_test
from fedjax_rhd.score.calibration import calibration_at, default_horizons
from fedjax_rhd.score.load_run import ScoreError, TrainedRun
from fedjax_rhd.score.state import (
    ModelEntry,
    RecordedNodes,
    model_params,
    node_preprocessors,
    preprocessor,
    reductions,
)
from fedjax_rhd.strategies import AlgorithmSpec
from fedjax_rhd.typing import NodeData
from harmonize.guide import Guide


@dataclasses.dataclass(frozen=True)
class ScoredRows:
    """The rows a run scores, packed as its test rows were."""

    rows: NodeData  # unpadded, descending time, patient_id order inside ties
    patient_ids: tuple[str, ...]  # same order
    guide: Guide  # the guide after the run's reductions (what the model reads)
    oracle_risk: np.ndarray | None  # simulated cohorts' true risk, same order
    # strategy=local: the same rows as node k's own model reads them (its own statistics, its unseen
    # layers unobserved); () when every model reads ``rows``
    node_rows: tuple[NodeData, ...] = ()

    def rows_of(self, model: ModelEntry) -> NodeData:
        """The rows as ``model`` reads them: a node's own model its node's view, else ``rows``."""
        if self.node_rows and model.params.startswith("nodes/"):
            return self.node_rows[int(model.params.split("/")[1])]
        return self.rows


def encode_for_run(table: pl.DataFrame, guide: Guide, run: TrainedRun) -> ScoredRows:
    """``table``'s rows encoded with the run's reductions and preprocessing.

    Raises:
        ScoreError: the encoded columns differ from the run's (a schema check missed something).
    """
    df = table
    for red in reductions(run.manifest, run.arrays):  # as data.reduce.reduce_groups treats the test set
        if red.components:
            df, guide = transform(df, red), reduced_guide(guide, red)
        else:
            df = df.drop(red.columns)
            guide = dataclasses.replace(
                guide, features=tuple(f for f in guide.features if f.group != red.group)
            )
    prep = preprocessor(run.manifest, run.arrays)
    if tuple(guide.encoded_names) != prep.columns:
        raise ScoreError(
            f"encoded columns {list(guide.encoded_names)} differ from the run's {list(prep.columns)}"
        )
    try:
        encoded = encode_rows(df, guide)
    except (KeyError, ValueError) as err:  # an unknown level, a missing column
        raise ScoreError(f"the dataset's rows cannot be encoded for the run's model: {err}") from err
    rows = pack_rows(encoded, prep, None)
    sorted_df = df.sort("patient_id")
    order = np.argsort(-np.asarray(encoded.time), kind="stable")  # pack_rows' order
    ids = tuple(sorted_df["patient_id"].to_list()[i] for i in order)
    oracle = sorted_df["oracle_risk"].to_numpy()[order] if "oracle_risk" in df.columns else None
    own = node_preprocessors(run.manifest, run.arrays)
    node_rows = tuple(pack_rows(masked(encoded, unseen), p, None) for p, unseen in own)
    return ScoredRows(rows, ids, guide, oracle, node_rows)


def model_risks(spec: AlgorithmSpec, run: TrainedRun, scored: ScoredRows) -> dict[str, np.ndarray]:
    """f32[n] risk of every model, computed per parameter stack as the run computed its test risks.

    Under ``strategy=local`` each node's model reads its own view (``ScoredRows.node_rows``), all
    of them in one call, as the run scored its test set (``simulator.own_risks``).
    """
    x, observed = jnp.asarray(scored.rows.x), jnp.asarray(scored.rows.observed)
    stacks: dict[str, np.ndarray] = {}
    for m in run.models:
        stack = m.params.split("/")[0]
        if stack not in stacks:
            tree = run.params[stack]
            if stack == "global":
                tree = jax.tree.map(lambda p: p[None], tree)
            if stack == "nodes" and scored.node_rows:
                views = [jnp.stack([getattr(r, f) for r in scored.node_rows]) for f in ("x", "observed")]
                stacks[stack] = np.asarray(own_risks(spec, tree, *views))
            else:
                stacks[stack] = np.asarray(stacked_risks(spec, tree, x, observed))
    return {m.name: stacks[m.params.split("/")[0]][int(m.params.split("/")[1]) if "/" in m.params else 0]
            for m in run.models}  # fmt: skip


def cohort_censoring(rows: NodeData, nodes: RecordedNodes) -> ipcw.Censoring:
    """The scored rows' own censoring Kaplan-Meier on the run's grid (an external cohort's ``G``)."""
    grid = nodes.grid()
    counts = ipcw.grid_counts(np.asarray(rows.time, np.float64), np.asarray(rows.event), grid)
    return ipcw.censoring_from_counts(counts, grid)


def score_model(
    spec: AlgorithmSpec,
    run: TrainedRun,
    model: ModelEntry,
    rows: NodeData,
    risk: np.ndarray,
    *,
    own_censoring: bool,
    horizons: list[float] | None,
    groups: int,
    boot: dict[str, int],
) -> dict[str, Any]:
    """One model's metrics on the scored rows (``score.json`` ``models[]``)."""
    t, e = np.asarray(rows.time), np.asarray(rows.event)
    nodes = RecordedNodes(run.manifest["nodes"], run.arrays, model.name)
    params = model_params(run.params, model.params)
    ev = run.manifest["evaluation"]
    out: dict[str, Any] = {
        "name": model.name, "description": model.description, "main": model.main,
        "c_index": _harrell(t, e, risk, boot),
    }  # fmt: skip
    try:
        out.update(
            survival_metrics(
                spec,
                nodes,
                rows,
                params,
                baseline_nodes=list(model.baseline_nodes),
                grid_points=ev["grid_points"],
                num_times=ev["num_times"],
                censoring=cohort_censoring(rows, nodes) if own_censoring else None,
            )  # fmt: skip
        )
    except ValueError as err:  # too short a follow-up, no comparable pair: say why, keep the rest
        logging.getLogger(__name__).warning("%s: survival metrics not computed: %s", model.name, err)
        out.update(
            {"uno_c_test": None, "td_auc_test": None, "ibs_test": None, "survival_eval": {"error": str(err)}}
        )
    if horizons is None:
        times = (out.get("survival_eval") or {}).get("times")
        horizons = default_horizons(times) if times else None
    out["calibration"] = calibration(spec, nodes, rows, params, model, horizons or [], groups)
    return out


def _harrell(t: np.ndarray, e: np.ndarray, risk: np.ndarray, boot: dict[str, int]) -> dict[str, Any]:
    try:
        return bootstrap_cindex(t, e, risk, **boot)
    except ValueError as err:  # no comparable pair (e.g. every death at the last time): say so
        return {"error": str(err)}


def calibration(
    spec: AlgorithmSpec,
    nodes: RecordedNodes,
    rows: NodeData,
    params: Any,
    model: ModelEntry,
    horizons: list[float],
    groups: int,
) -> list[dict[str, Any]]:
    """Calibration tables at ``horizons`` inside the scored follow-up (those past it are listed as such)."""
    t, e = np.asarray(rows.time, np.float64), np.asarray(rows.event)
    inside = [h for h in sorted(horizons) if h < t.max()]
    tables: list[dict[str, Any]] = [{"horizon": h, "error": f"past the last follow-up ({t.max():g})"}
                                    for h in horizons if h >= t.max()]  # fmt: skip
    if inside:
        surv = survival_on_test(
            spec, nodes, rows, params, nodes.grid(), np.asarray(inside), list(model.baseline_nodes)
        )
        tables += [calibration_at(t, e, surv[:, j], h, groups) for j, h in enumerate(inside)]
    return sorted(tables, key=lambda c: c["horizon"])


def clinical_comparison(
    score_name: str,
    scores: pl.DataFrame | None,
    scored: ScoredRows,
    risks: dict[str, np.ndarray],
    main: str,
    boot: dict[str, int],
) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]], np.ndarray | None]:
    """The clinical score on the scored rows, and each model against it on the rows it scores.

    Returns:
        ``(block, per model {"model_c_index_scored_rows", "difference"}, per-row score)``: ``block``
        is ``metrics.clinical.clinical_score_result`` of the main model (``results.json``'s
        ``final.clinical_score`` on a run's own test rows); ``difference`` is C(model) - C(score)
        with a paired bootstrap interval (``concordance.paired_bootstrap_difference``).
    """
    if scores is None:
        return None, {}, None
    t, e = np.asarray(scored.rows.time), np.asarray(scored.rows.event)
    per_row = scores_on_test(scores, scored.patient_ids)
    score = per_row["clinical_score"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    has = ~np.isnan(score)
    try:
        block = clinical_score_result(score_name, score, t, e, risks[main], **boot)
        versus = {
            name: {
                "model_c_index_scored_rows": bootstrap_cindex(t[has], e[has], r[has], **boot),
                "difference": paired_bootstrap_difference(t[has], e[has], r[has], score[has], **boot),
            }
            for name, r in risks.items()
        }
    except ValueError as err:  # no scored row, or no comparable pair among them: say so, keep the rest
        return (
            {"name": score_name, "n_scored": int(has.sum()), "c_index_test": None, "error": str(err)},
            {},
            score,
        )
    return block, versus, score
