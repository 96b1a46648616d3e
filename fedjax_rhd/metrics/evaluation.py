"""Survival curves and calibration-aware metrics of a trained model on the test set.

What crosses node boundaries here is only what ARCHITECTURE §1.3 allows: each
node's largest training time (for the shared grid), its censoring counts on
that grid (for the censoring Kaplan-Meier behind Uno's C, the time-dependent
AUC and the Brier score) and, for Cox-type models, its Breslow counts on the
same grid (for the baseline hazard). The manager sums the counts; the test set
is touched only to score.

Rows used per node: its training and validation parts (every non-test row of
the federation; validation rows only chose the stopping round). The censoring
distribution always comes from every node, so every strategy on one split is
scored against the same ``G``; the Breslow baseline comes from the nodes that
trained the model (all of them for a global model, node k alone for node k's
``local`` model).

Two places hold the test rows. For simulated cohorts the manager keeps the
global test set as the study's benchmark holdout (:func:`survival_metrics`).
For real centres each node keeps its own test part and scores it itself
(:func:`federated_evaluation`): it receives the shared grid, ``G``, the
evaluation times and the Breslow baseline, and sends back sums and counts
(``metrics.federated``); the manager adds them up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rhd.metrics import ipcw as sm
from fedjax_rhd.metrics.federated import NodeTestSummary, federated_test_block
from fedjax_rhd.models.cox import breslow_cumulative_hazard, survival_curves
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from fedjax_rhd.strategies.traced import spec_jit
from fedjax_rhd.typing import NodeData, Params

GRID_POINTS = 512  # shared time grid for censoring and Breslow counts
NUM_TIMES = 20  # evaluation times between the 10th and 90th percentile of training deaths


@spec_jit()
def _risk(spec: AlgorithmSpec, params: Params, x: jax.Array, observed: jax.Array) -> jax.Array:
    return build_model(spec).risk(params, x, observed)


@spec_jit()
def _parametric_survival(
    spec: AlgorithmSpec, params: Params, x: jax.Array, observed: jax.Array, times: jax.Array
) -> jax.Array:
    return build_model(spec).survival(params, x, observed, times)


class NodeStatistics(Protocol):
    """What evaluation asks of the nodes (a ``Backend``): a named statistic of each node's rows."""

    def node_statistic(
        self,
        name: str,
        inputs: dict[str, np.ndarray],
        params: Params | None = None,
        nodes: Sequence[int] | None = None,
    ) -> list[dict[str, np.ndarray]]: ...

    @property
    def node_names(self) -> tuple[str, ...]: ...


def shared_censoring(
    nodes: NodeStatistics, grid_points: int = GRID_POINTS
) -> tuple[np.ndarray, sm.GridCounts, sm.Censoring]:
    """The shared grid, the summed grid counts and the censoring distribution ``G``.

    Each node sends its largest training or validation time (one scalar); the
    manager builds the grid from the largest, then each node sends its counts
    on it (``node_tasks.max_time``, ``node_tasks.grid_counts``).
    """
    max_time = max(float(s["max_time"]) for s in nodes.node_statistic("max_time", {}))
    grid = sm.time_grid(max_time, grid_points)
    parts = nodes.node_statistic("grid_counts", {"grid": grid})
    counts = sm.sum_counts([sm.GridCounts(**{f: p[f] for f in sm.GridCounts._fields}) for p in parts])
    return grid, counts, sm.censoring_from_counts(counts, grid)


def baseline_hazard(
    nodes: NodeStatistics, params: Params, grid: np.ndarray, baseline_nodes: Sequence[int]
) -> jax.Array:
    """f32[g] Breslow cumulative baseline hazard of ``params`` on ``grid`` from ``baseline_nodes``' counts.

    Each node sends its per-bin deaths and summed ``exp(risk)`` (``node_tasks.breslow_counts``).
    """
    # host sums (f32, as on the device): eager device operations would each lower a program
    grid32 = np.asarray(grid, np.float32)
    events = np.zeros_like(grid32)
    at_risk = np.zeros_like(grid32)
    for counts in nodes.node_statistic(
        "breslow_counts", {"grid": np.asarray(grid)}, params, list(baseline_nodes)
    ):
        events = events + np.asarray(counts["events"], np.float32)
        at_risk = at_risk + np.asarray(counts["at_risk"], np.float32)
    return breslow_cumulative_hazard(events, at_risk, grid32)


def survival_on_test(
    spec: AlgorithmSpec,
    nodes: NodeStatistics,
    test: NodeData,
    params: Params,
    grid: np.ndarray,
    times: np.ndarray,
    baseline_nodes: Sequence[int],
) -> np.ndarray:
    """f64[n_test, len(times)] ``P(T > t | x)`` for the test rows.

    Parametric models give their own curves; Cox-type models use the Breslow
    baseline summed over ``baseline_nodes``' counts on ``grid`` (:func:`baseline_hazard`).
    """
    model = build_model(spec)
    if model.survival is not None:
        curves = _parametric_survival(spec, params, test.x, test.observed, jnp.asarray(times, jnp.float32))
        return np.asarray(curves, np.float64)
    grid32 = np.asarray(grid, np.float32)
    cum_hazard = baseline_hazard(nodes, params, grid, baseline_nodes)
    risk = _risk(spec, params, test.x, test.observed)
    return np.asarray(survival_curves(risk, cum_hazard, grid32, np.asarray(times, np.float32)), np.float64)


def survival_metrics(
    spec: AlgorithmSpec,
    nodes: NodeStatistics,
    test: NodeData,
    params: Params,
    *,
    baseline_nodes: Sequence[int] | None = None,
    grid_points: int = GRID_POINTS,
    num_times: int = NUM_TIMES,
    censoring: sm.Censoring | None = None,
) -> dict[str, Any]:
    """Uno's C, time-dependent AUC and integrated Brier score on the test set.

    Args:
        spec: the algorithm spec (model and hyperparameters) that trained ``params``.
        nodes: the federation's nodes (a ``Backend``): they compute their own counts.
        test: the benchmark test set the manager holds.
        params: ONE parameter set (not stacked).
        baseline_nodes: nodes whose rows build the Breslow baseline (default all).
        grid_points: resolution of the shared time grid.
        num_times: evaluation times for the AUC and Brier curves.
        censoring: the ``G`` to weight by; default the nodes' (:func:`shared_censoring`). An
            external cohort is weighted by its own censoring (``fedjax_rhd.score``); the grid,
            evaluation times and baseline still come from the nodes.

    Returns:
        ``{"uno_c_test", "td_auc_test": {"mean", "times", "auc"}, "ibs_test",
        "survival_eval": {"tau", "grid_points", "times"}}``; Uno's C is
        truncated at ``tau``, the last evaluation time.
    """
    grid, counts, shared = shared_censoring(nodes, grid_points)
    censoring = shared if censoring is None else censoring
    test_time = np.asarray(test.time, np.float64)
    test_event = np.asarray(test.event).astype(bool)
    times = sm.evaluation_times(counts, grid, test_time, num=num_times)
    chosen = list(range(len(nodes.node_names)) if baseline_nodes is None else baseline_nodes)
    surv = survival_on_test(spec, nodes, test, params, grid, times, chosen)
    risk = np.asarray(_risk(spec, params, test.x, test.observed), np.float64)
    # Cox curves are monotone in the risk, so the risk itself ranks them at
    # every t without float32 saturation of S near 0 or 1; parametric curves
    # can cross, so their risk at t is 1 - S(t | x).
    td_risk = risk if build_model(spec).survival is None else 1.0 - surv
    auc, mean_auc = sm.cumulative_dynamic_auc(test_time, test_event, td_risk, times, censoring)
    return {
        "uno_c_test": sm.uno_c_index(test_time, test_event, risk, censoring, tau=float(times[-1])),
        "td_auc_test": {"mean": mean_auc, "times": times.tolist(), "auc": auc.tolist()},
        "ibs_test": sm.integrated_brier_score(test_time, test_event, surv, times, censoring),
        "survival_eval": {"tau": float(times[-1]), "grid_points": grid_points, "times": times.tolist()},
    }


def federated_evaluation(
    spec: AlgorithmSpec,
    nodes: NodeStatistics,
    params: Params,
    *,
    baseline_nodes: Sequence[int] | None = None,
    grid_points: int = GRID_POINTS,
    num_times: int = NUM_TIMES,
) -> dict[str, Any]:
    """Every node scores its own test part; the manager adds up their sums (real centres).

    The manager sends each node what every node shares: the grid and ``G``
    (:func:`shared_censoring`), the evaluation times (training deaths' quantiles as in
    :func:`survival_metrics`, kept inside the pooled test follow-up that the nodes'
    ``test_follow_up`` statistics span), ``tau`` (the last time) and, for Cox-type
    models, the Breslow baseline (:func:`baseline_hazard`). Each node answers with its
    ``node_tasks.own_test_summary`` (counts and sums); nodes without test rows answer
    zeros and are listed with ``n_test = 0``. No test row leaves its node.

    Args:
        spec: the algorithm spec that trained ``params``.
        nodes: the federation's nodes (a ``Backend``) whose rows include test parts.
        params: ONE parameter set, sent to every node.
        baseline_nodes: nodes whose rows build the Breslow baseline (default all).
        grid_points: resolution of the shared time grid.
        num_times: evaluation times for the AUC and Brier curves.

    Returns:
        ``metrics.federated.federated_test_block`` of the nodes' summaries, keyed by node name.

    Raises:
        ValueError: no node holds a test row, too short a follow-up, or no comparable pair.
    """
    grid, counts, censoring = shared_censoring(nodes, grid_points)
    # a node with fewer test rows than privacy.min_cell_count sends an empty range (+inf, -inf)
    ranges = [
        r
        for r in nodes.node_statistic("test_follow_up", {})
        if int(r["n_test"]) > 0 and float(r["min_time"]) <= float(r["max_time"])
    ]
    if not ranges:
        raise ValueError(
            "no node holds test rows (or, with privacy.min_cell_count, enough of them): "
            "nothing to evaluate federatedly"
        )
    span = np.array([min(float(r["min_time"]) for r in ranges), max(float(r["max_time"]) for r in ranges)])
    times = sm.evaluation_times(counts, grid, span, num=num_times)
    tau = float(times[-1])
    inputs = {"grid": grid, "censoring": censoring.survival, "times": times, "tau": np.asarray(tau)}
    if build_model(spec).survival is None:
        chosen = list(range(len(nodes.node_names)) if baseline_nodes is None else baseline_nodes)
        inputs["cum_hazard"] = np.asarray(baseline_hazard(nodes, params, grid, chosen))
    summaries = nodes.node_statistic("test_summary", inputs, params)
    return federated_test_block(
        {name: NodeTestSummary.from_arrays(s) for name, s in zip(nodes.node_names, summaries, strict=True)},
        times,
        grid,
        tau,
    )
