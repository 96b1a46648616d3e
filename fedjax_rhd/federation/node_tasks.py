"""What one node computes on its own rows: the node half of every backend.

The simulator vmaps the strategy's ``client_update`` over its stacked nodes
inside one jitted round; a backend whose nodes are processes (Flower) calls the
per-node functions below on each node. Both read the same packed ``NodeData``
(padding rows have weight 0), so they compute the same numbers.

``NODE_STATISTICS`` are the statistics the manager may ask a node for
(ARCHITECTURE §6, "what leaves a node"): each is a pure function
``(spec, params | None, rows: NodeRows, inputs) -> {name: array}`` whose outputs
are sums, counts or one scalar, never real rows (``sd_share`` sends synthetic rows that passed
the node's privacy gate: ``strategy=sd_sharing``, ``federation/sd_node_tasks.py``).
``docs/privacy.md`` lists them.
With ``privacy.min_cell_count = k`` the backends add ``inputs["min_cell_count"]``
and each statistic coarsens its small cells on the node (``data.small_cells``),
the same function under both backends.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rhd.data import small_cells
from fedjax_rhd.federation.bn_node_tasks import STATISTICS as BN_STATISTICS
from fedjax_rhd.federation.sd_node_tasks import STATISTICS as SD_STATISTICS
from fedjax_rhd.metrics import ipcw
from fedjax_rhd.metrics.federated import NodeTestSummary, node_test_summary
from fedjax_rhd.models import MODELS, bgm, ctgan_transform
from fedjax_rhd.models.cox import breslow_baseline_counts, survival_curves
from fedjax_rhd.strategies import AlgorithmSpec, build_algorithm, build_model
from fedjax_rhd.strategies.client import make_client_update
from fedjax_rhd.strategies.traced import spec_jit, unchecked_replace
from fedjax_rhd.typing import ClientResult, NodeData, Params


class NodeRows(NamedTuple):
    """One node's own rows, packed: training and validation parts, and its test part where it keeps one.

    ``test`` is set for real centres (``split=natural``), whose evaluation is federated;
    for simulated cohorts the test set is the manager's benchmark holdout and ``test`` is None.
    """

    train: NodeData
    val: NodeData
    test: NodeData | None = None


@spec_jit()
def node_update(
    spec: AlgorithmSpec, params: Params, train: NodeData, rng: jax.Array, node_input: Params | None = None
) -> ClientResult:
    """The strategy's ``client_update`` on one node (key: ``fold_in(round key, node index)``).

    ``node_input``: the node's slice of ``algorithm.node_inputs(state)`` (SCAFFOLD), else None.
    """
    algorithm = build_algorithm(spec)
    if algorithm.node_inputs is None:
        return algorithm.client_update(params, train, rng)
    return algorithm.client_update(params, train, rng, node_input)


def validation_loss(spec: AlgorithmSpec, params: Params, rows: NodeData) -> jax.Array:
    """f32[] what validation reads on ``rows`` (no dropout): the model's survival term alone.

    ``ModelEntry.selection`` names the ``loss`` aux term (Cox: the partial likelihood per event,
    without the L2 penalty; SAVAE: the Weibull time term, without reconstruction and KL); a model
    without one (generative) is validated on its whole loss. Both backends call this, so round
    selection, per-node early stopping and the tuner's objective agree everywhere.
    """
    loss, aux = build_model(spec).loss(params, rows, None)
    term = MODELS[spec.model_name].selection
    return loss if term is None else aux[term]


@spec_jit()
def node_val_loss(spec: AlgorithmSpec, params: Params, val: NodeData) -> jax.Array:
    """f32[] :func:`validation_loss` on one node's validation rows."""
    return validation_loss(spec, params, val)


@spec_jit(static_argnames=("epochs",))
def finetune_node(
    spec: AlgorithmSpec, params: Params, train: NodeData, rng: jax.Array, epochs: int
) -> Params:
    """``params`` after ``epochs`` full-batch local steps on one node, without a proximal term."""
    client = unchecked_replace(spec.client, local_epochs=epochs, proximal_mu=None)
    return make_client_update(build_model(spec), client)(params, train, rng).params


@spec_jit()
def _breslow(
    spec: AlgorithmSpec, params: Params, node: NodeData, grid: jax.Array
) -> tuple[jax.Array, jax.Array]:
    risk = build_model(spec).risk(params, node.x, node.observed)
    return breslow_baseline_counts(risk, node, grid)


def _with_times(node: NodeData, real_times: np.ndarray) -> NodeData:
    """``node`` with its real rows' times replaced (padding rows keep theirs; they weigh 0)."""
    real = np.asarray(node.weight) > 0
    time = np.asarray(node.time).copy()
    time[real] = real_times
    return node._replace(time=jnp.asarray(time, node.time.dtype))


def _real_rows(node: NodeData) -> tuple[np.ndarray, np.ndarray]:
    real = np.asarray(node.weight) > 0
    return np.asarray(node.time, np.float64)[real], np.asarray(node.event)[real].astype(bool)


def max_time(
    spec: AlgorithmSpec, params: Params | None, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The node's largest follow-up time over its training and validation rows (one scalar).

    The manager builds the shared evaluation grid from the largest of these. With
    ``min_cell_count = k`` the node sends its ``k``-th largest time instead (0 with fewer
    than ``k`` rows), a time that ``k`` of its patients reach.
    """
    del spec, params
    k = small_cells.min_cell_count(inputs)
    times = np.concatenate([_real_rows(rows.train)[0], _real_rows(rows.val)[0]])
    if not small_cells.active(k):
        return {"max_time": np.array(float(times.max()) if len(times) else 0.0)}
    kth = small_cells.kth_largest(times, k)
    return {"max_time": np.array(0.0 if kth is None else kth)}


def grid_counts(
    spec: AlgorithmSpec, params: Params | None, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Deaths, censorings and rows still followed per bin of the shared grid (``inputs["grid"]``).

    Summed over the node's training and validation parts: the censoring
    distribution behind Uno's C, the td-AUC and the Brier score. With
    ``min_cell_count = k``, of the node's times rounded into runs of ``k``
    (:func:`_released_times`).
    """
    del spec, params
    parts = [
        ipcw.grid_counts(time, event, inputs["grid"])
        for time, event in _released_times((rows.train, rows.val), inputs)
    ]
    return dict(ipcw.sum_counts(parts)._asdict())


def _released_times(
    parts: tuple[NodeData, ...], inputs: Mapping[str, Any]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each part's real ``(time, event)``; with ``min_cell_count = k`` the times rounded up to the end
    of their run on the shared grid (``small_cells.round_times``), the runs taken over all the parts
    together, since the node sends their sum."""
    real = [_real_rows(part) for part in parts]
    k = small_cells.min_cell_count(inputs)
    if not small_cells.active(k):
        return real
    time = np.concatenate([t for t, _ in real])
    event = np.concatenate([e for _, e in real])
    rounded = small_cells.round_times(time, event, np.asarray(inputs["grid"], np.float64), k)
    cuts = np.cumsum([len(t) for t, _ in real])[:-1]
    return [(t, e) for t, (_, e) in zip(np.split(rounded, cuts), real, strict=True)]


def breslow_counts(
    spec: AlgorithmSpec, params: Params | None, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Breslow's per-bin deaths and summed ``exp(risk)`` of those at risk, on the grid, for ``params``.

    With ``min_cell_count = k``, of the node's times rounded into runs of ``k`` (every risk set
    then holds at least ``k`` of the node's patients where patients leave it).
    """
    # host sums (f32, as on the device): eager device additions would each lower a program
    grid = np.asarray(inputs["grid"], np.float32)
    events = np.zeros_like(grid)
    at_risk = np.zeros_like(grid)
    parts = (rows.train, rows.val)
    if small_cells.active(small_cells.min_cell_count(inputs)):
        released = _released_times(parts, inputs)
        parts = tuple(_with_times(part, time) for part, (time, _) in zip(parts, released, strict=True))
    for part in parts:
        e, a = _breslow(spec, params, part, grid)
        events, at_risk = events + np.asarray(e), at_risk + np.asarray(a)
    return {"events": events, "at_risk": at_risk}


def own_test_range(
    spec: AlgorithmSpec, params: Params | None, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The node's test rows: their number and the smallest and largest test time (three scalars).

    The manager keeps the evaluation times inside the pooled test follow-up, as
    ``ipcw.evaluation_times`` needs. A node without a test part sends ``n_test = 0``
    and an empty range (``+inf``, ``-inf``). With ``min_cell_count = k`` the range is from the
    ``k``-th smallest to the ``k``-th largest test time (empty with fewer than ``k`` test rows).
    """
    del spec, params
    time = _real_rows(rows.test)[0] if rows.test is not None else np.zeros(0)
    k = small_cells.min_cell_count(inputs)
    if not small_cells.active(k):
        low, high = (time.min(), time.max()) if len(time) else (np.inf, -np.inf)
    else:
        low, high = small_cells.kth_smallest(time, k), small_cells.kth_largest(time, k)
        low, high = (np.inf, -np.inf) if low is None or high is None else (low, high)
    return {
        "n_test": np.array(len(time), dtype=np.int64),
        "min_time": np.array(low),
        "max_time": np.array(high),
    }


@spec_jit()
def _test_scores(
    spec: AlgorithmSpec,
    params: Params,
    node: NodeData,
    times: jax.Array,
    grid: jax.Array,
    cum_hazard: jax.Array | None,
) -> tuple[jax.Array, jax.Array]:
    """f32[n] risks and f32[n, k] survival at ``times`` of the node's rows (padding included)."""
    model = build_model(spec)
    risk = model.risk(params, node.x, node.observed)
    if model.survival is not None:
        return risk, model.survival(params, node.x, node.observed, times)
    return risk, survival_curves(risk, cum_hazard, grid, times)


def own_test_summary(
    spec: AlgorithmSpec, params: Params | None, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The node scores its own test part with ``params``: ``NodeTestSummary.to_arrays()``.

    Inputs (all shared by every node): ``grid`` f64[g], ``censoring`` f64[g] the
    censoring survival ``G`` on the grid (``ipcw.censoring_from_counts``), ``times``
    f64[k] evaluation times, ``tau`` f64[] Uno's C truncation, and for Cox-type models
    ``cum_hazard`` f32[g] the Breslow baseline on the grid (parametric models give their
    own curves). Cox curves are monotone in the risk, so the risk ranks them at every
    time (the td-AUC's estimate); parametric curves may cross, so theirs is
    ``1 - S(t | x)``, as in ``metrics.evaluation.survival_metrics``.

    A node without test rows sends the zero summary (every count and sum 0), which
    adds nothing to the manager's sums and is listed with ``n_test = 0``.
    """
    grid = np.asarray(inputs["grid"], np.float64)
    times = np.asarray(inputs["times"], np.float64)
    if rows.test is None or not np.any(np.asarray(rows.test.weight) > 0):
        return NodeTestSummary.empty(len(times), len(grid)).to_arrays()
    if params is None:
        raise ValueError("test_summary needs the parameters to score with")
    real = np.asarray(rows.test.weight) > 0
    cum_hazard = inputs.get("cum_hazard")
    risk, surv = _test_scores(
        spec,
        params,
        rows.test,
        jnp.asarray(times, jnp.float32),
        jnp.asarray(grid, jnp.float32),
        None if cum_hazard is None else jnp.asarray(cum_hazard, jnp.float32),
    )
    risk = np.asarray(risk, np.float64)[real]
    surv = np.asarray(surv, np.float64)[real]
    time, event = _real_rows(rows.test)
    censoring = ipcw.Censoring(grid, np.asarray(inputs["censoring"], np.float64))
    summary = node_test_summary(
        time,
        event,
        risk,
        surv,
        censoring,
        times,
        float(inputs["tau"]),
        td_risk=risk if build_model(spec).survival is None else 1.0 - surv,
    )
    k = small_cells.min_cell_count(inputs)
    if small_cells.active(k):  # the per-bin test deaths and rows followed, of times rounded into runs of k
        km = ipcw.grid_counts(small_cells.round_times(time, event, grid, k), event, grid)
        summary = summary._replace(km_events=km.events, km_reaching=km.reaching)
    return summary.to_arrays()


@spec_jit()
def _latent_means(spec: AlgorithmSpec, params: Params, node: NodeData) -> jax.Array:
    return build_model(spec).latent(params, node)


def latent_mixture(
    spec: AlgorithmSpec, params: Params | None, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """A generative model's mixture E-step on the node's training rows: per-component sums.

    The node encodes its own training rows to latent means with ``params`` (they stay here),
    computes responsibilities under the broadcast ``means`` f64[K, z], ``precisions_cholesky``
    f64[K, z, z] and ``log_offsets`` f64[K], and sends per component the responsibility sum,
    first and second moments (``models.bgm.node_sufficient_statistics``); a component it holds
    fewer than ``min_count`` patients of is sent as zeros.
    """
    if params is None:
        raise ValueError("latent_mixture needs the generative model's parameters")
    z = np.asarray(_latent_means(spec, params, rows.train), np.float64)
    e_step = bgm.EStepInputs(
        *(np.asarray(inputs[k], np.float64) for k in ("means", "precisions_cholesky", "log_offsets"))
    )
    # privacy.min_cell_count raises the node's own floor (model.bgm_node_min_count) where it is larger
    floor = max(float(inputs["min_count"]), float(small_cells.min_cell_count(inputs)))
    stats = bgm.node_sufficient_statistics(z, np.asarray(rows.train.weight), e_step, floor)
    return stats._asdict()


def _ctgan_layout(spec: AlgorithmSpec) -> ctgan_transform.Layout:
    config = spec.model_config
    if spec.model_name != "ctgan":
        raise ValueError(f"this statistic serves model=ctgan, not {spec.model_name}")
    return ctgan_transform.make_layout(config.schema, config.modes)


def column_modes(
    spec: AlgorithmSpec, params: Params | None, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """CTGAN's mode-specific normaliser, one E-step on the node's training rows: per-mode sums.

    For each asked continuous column j (``columns`` i64[A]; the continuous features, standardised,
    on their observed entries, then log follow-up time) under the broadcast 1-d mixture
    ``means`` f64[A, K, 1], ``precisions_cholesky`` f64[A, K, 1, 1], ``log_offsets`` f64[A, K]:
    the responsibility sum, first and second moments per mode (``models.bgm``); a mode the node
    holds fewer than ``min_count`` patients of is sent as zeros.
    """
    del params
    layout = _ctgan_layout(spec)
    values, weights = ctgan_transform.continuous_values(rows.train, layout, spec.model_config.time_floor)
    e_steps = [
        bgm.EStepInputs(
            *(np.asarray(inputs[k][a], np.float64) for k in ("means", "precisions_cholesky", "log_offsets"))
        )
        for a in range(len(inputs["columns"]))
    ]
    floor = max(float(inputs["min_count"]), float(small_cells.min_cell_count(inputs)))
    return ctgan_transform.node_column_statistics(
        np.asarray(values, np.float64), np.asarray(weights, np.float64),
        [int(j) for j in inputs["columns"]], e_steps, floor,
    )  # fmt: skip


def level_counts(
    spec: AlgorithmSpec, params: Params | None, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """CTGAN's discrete levels (binary, categorical, observed flags, event; missing a level): counts.

    Cells of 1 to k-1 patients are sent as 0 under ``privacy.min_cell_count`` (suppression).
    """
    del params
    onehot = np.asarray(ctgan_transform.discrete_onehot(rows.train, _ctgan_layout(spec)), np.float64)
    counts = np.round(onehot[np.asarray(rows.train.weight) > 0].sum(axis=0))
    return {"counts": small_cells.suppress_cells(counts, small_cells.min_cell_count(inputs))}


NodeStatistic = Callable[[AlgorithmSpec, Any, NodeRows, Mapping[str, Any]], dict[str, np.ndarray]]

NODE_STATISTICS: dict[str, NodeStatistic] = {
    "max_time": max_time,
    "grid_counts": grid_counts,
    "breslow_counts": breslow_counts,
    "test_follow_up": own_test_range,
    "test_summary": own_test_summary,
    "latent_mixture": latent_mixture,
    "column_modes": column_modes,  # CTGAN's mode-specific normaliser (models/ctgan_transform.py)
    "level_counts": level_counts,
    **BN_STATISTICS,  # the Bayesian network's protocol (federation/bn_node_tasks.py)
    **SD_STATISTICS,  # sd_sharing: gated synthetic rows, the one reply holding rows (sd_node_tasks.py)
}
"""Statistic name -> node function. A new statistic is a function here and a line in docs/privacy.md."""
