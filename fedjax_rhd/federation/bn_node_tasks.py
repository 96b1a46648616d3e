"""The node half of the Bayesian network's protocol: four statistics of a node's training rows.

Registered in ``node_tasks.NODE_STATISTICS`` (so both backends run them through
``Backend.node_statistic``); the manager half is ``federation.bn_protocol``. What leaves the node:
histogram and state counts, a DAG's edges, family counts and a validation log likelihood (one sum),
never rows (``docs/privacy.md``). With ``privacy.min_cell_count = k`` (``inputs["min_cell_count"]``)
the margins' small bins are pooled into runs and every pair or family cell below ``k`` is sent as 0
(``data.small_cells``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from fedjax_rhd.data import small_cells
from fedjax_rhd.models import bn_discretise as disc
from fedjax_rhd.models.bn_params import family_counts, log_likelihood
from fedjax_rhd.models.bn_structure import learn_structure, pair_counts

if TYPE_CHECKING:
    from fedjax_rhd.federation.node_tasks import NodeRows
    from fedjax_rhd.strategies import AlgorithmSpec


def _variables(spec: AlgorithmSpec) -> disc.Variables:
    if spec.model_name != "bn":
        raise ValueError(f"the Bayesian network's statistics need model=bn, not {spec.model_name!r}")
    return spec.model_config.variables()


def _codes(spec: AlgorithmSpec, rows: NodeRows, inputs: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    var = _variables(spec)
    bins = disc.Bins.from_arrays(dict(inputs))
    return disc.codes(rows.train, var, bins), disc.n_states(var, bins)


def bn_margins(
    spec: AlgorithmSpec, params: Any, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Round 0a: i64[V, cells] histograms on the shared grid and i64[V] missing counts.

    With ``min_cell_count = k`` each histogram's small cells are pooled into runs of ``k``
    (``small_cells.pool_histogram``); the missing counts are node totals and leave as they are.
    """
    del params
    margins = disc.node_margins(
        rows.train, _variables(spec), np.asarray(inputs["grid_low"], np.float64),
        np.asarray(inputs["grid_high"], np.float64), int(inputs["grid_cells"]),
    )  # fmt: skip
    k = small_cells.min_cell_count(inputs)
    if small_cells.active(k):
        margins = {**margins, "histogram": small_cells.pool_histogram(margins["histogram"], k)}
    return margins


def bn_pairs(
    spec: AlgorithmSpec, params: Any, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Round 0b: i64[V, V, S, S] joint state counts of every pair (mutual information at the manager)."""
    del params
    codes, states = _codes(spec, rows, inputs)
    return {
        "pairs": small_cells.suppress_cells(pair_counts(codes, states), small_cells.min_cell_count(inputs))
    }


def bn_structure(
    spec: AlgorithmSpec, params: Any, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Round 1: i8[V, V] the node's own BIC hill-climbing DAG over the candidate edges ``allowed``."""
    del params
    codes, states = _codes(spec, rows, inputs)
    config = spec.model_config
    adjacency = learn_structure(
        codes, states, _variables(spec).names, np.asarray(inputs["allowed"], bool),
        max_indegree=config.max_indegree, max_iter=config.max_iter,
    )  # fmt: skip
    return {"adjacency": adjacency}


def bn_family_counts(
    spec: AlgorithmSpec, params: Any, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Round 2: ``family_<j>`` i64[r_j, q_j] counts of every family of the broadcast DAG ``adjacency``."""
    del params
    codes, states = _codes(spec, rows, inputs)
    counts = family_counts(codes, states, np.asarray(inputs["adjacency"]))
    k = small_cells.min_cell_count(inputs)
    return {f"family_{j:04d}": small_cells.suppress_cells(c, k) for j, c in enumerate(counts)}


def bn_log_likelihood(
    spec: AlgorithmSpec, params: Any, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The node's validation rows under the broadcast network (``adjacency``, ``cpd_<j>``): summed log
    likelihood and the rows scored; a row with a missing value of a variable that has no ``NA``
    state (none was missing in training) is not scored and is counted in ``n_unscored``."""
    del params
    var = _variables(spec)
    bins = disc.Bins.from_arrays(dict(inputs))
    codes, unstated = disc.codes_and_unstated(rows.val, var, bins)
    scored = ~unstated.any(axis=1)
    cpds = [np.asarray(inputs[f"cpd_{j:04d}"], np.float64) for j in range(len(var.names))]
    ll = log_likelihood(codes[scored], np.asarray(inputs["adjacency"]), cpds, disc.n_states(var, bins))
    return {
        "log_likelihood": np.asarray(ll.sum(), np.float64),
        "n_scored": np.asarray(int(scored.sum()), np.int64),
        "n_unscored": np.asarray(int((~scored).sum()), np.int64),
    }


STATISTICS = {
    "bn_margins": bn_margins,
    "bn_pairs": bn_pairs,
    "bn_structure": bn_structure,
    "bn_family_counts": bn_family_counts,
    "bn_log_likelihood": bn_log_likelihood,
}
