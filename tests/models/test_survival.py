"""Tests for the Cox partial likelihood, node data layout and federated Breslow baseline."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.duration.hazard_regression import PHReg

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.models.cox import (
    breslow_baseline_counts,
    breslow_cumulative_hazard,
    cox_loss,
    cox_partial_log_likelihood,
    survival_curves,
)
from fedjax_rhd.typing import NodeData


def tied_cohort(seed: int, n: int = 80, d: int = 3):
    """Random cohort whose integer times 1..8 make many, large tie groups."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    time = rng.integers(1, 9, size=n).astype(float)
    event = (rng.random(n) < 0.6).astype(float)
    beta = rng.normal(scale=0.7, size=d)
    return x, time, event, beta


def statsmodels_loglike(x, time, event, beta) -> float:
    return float(PHReg(time, x, status=event, ties="breslow").loglike(beta))


def node(x, time, event, pad_to=None) -> NodeData:
    return make_node_data(x, np.ones_like(x, dtype=bool), time, event, pad_to=pad_to)


def linear_risk(batch: NodeData, beta) -> jax.Array:
    # Full float32 precision: GPUs may otherwise run f32 matmuls in TF32, which
    # would blur the 1e-4 comparison with statsmodels.
    return jnp.dot(jnp.asarray(batch.x), jnp.asarray(beta, jnp.float32), precision=jax.lax.Precision.HIGHEST)


def with_garbage_padding(batch: NodeData, n_real: int, seed: int = 0) -> NodeData:
    """Fill padding rows with huge features and times: the loss must not see them."""
    rng = np.random.default_rng(seed)
    x = batch.x.copy()
    time = batch.time.copy()
    x[n_real:] = rng.normal(scale=1e3, size=x[n_real:].shape)
    time[n_real:] = rng.uniform(0, 100, size=time[n_real:].shape)
    return batch._replace(x=x, time=time)


def numpy_breslow_loglike(risk, time, event, weight) -> float:
    """Direct O(n^2) weighted Breslow log partial likelihood."""
    total = 0.0
    for i in range(len(time)):
        if event[i] and weight[i] > 0:
            at_risk = (time >= time[i]) & (weight > 0)
            total += weight[i] * (risk[i] - np.log(np.sum(weight[at_risk] * np.exp(risk[at_risk]))))
    return total


# --- Cox partial likelihood ---------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_loglike_matches_statsmodels_breslow_with_ties(seed):
    x, time, event, beta = tied_cohort(seed)
    batch = node(x, time, event)
    ours = float(cox_partial_log_likelihood(linear_risk(batch, beta), batch))
    np.testing.assert_allclose(ours, statsmodels_loglike(x, time, event, beta), rtol=1e-4)
    # The loss is the same quantity per event, negated.
    loss = float(cox_loss(linear_risk(batch, beta), batch))
    np.testing.assert_allclose(loss, -statsmodels_loglike(x, time, event, beta) / event.sum(), rtol=1e-4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_padding_is_invisible_and_vmapped_nodes_match_statsmodels(seed):
    x1, t1, e1, beta = tied_cohort(seed, n=50)
    x2, t2, e2, _ = tied_cohort(seed + 100, n=31)
    ref1 = statsmodels_loglike(x1, t1, e1, beta)
    ref2 = statsmodels_loglike(x2, t2, e2, beta)

    padded = with_garbage_padding(node(x1, t1, e1, pad_to=67), 50)
    np.testing.assert_allclose(
        float(cox_partial_log_likelihood(linear_risk(padded, beta), padded)), ref1, rtol=1e-4
    )

    # Two nodes with different amounts of padding, stacked to one shape.
    nodes = [
        with_garbage_padding(node(x1, t1, e1, pad_to=64), 50),
        with_garbage_padding(node(x2, t2, e2, pad_to=64), 31),
    ]
    stacked = jax.tree.map(lambda *a: jnp.stack(a), *nodes)

    @jax.jit
    @jax.vmap
    def per_node(batch):
        return cox_partial_log_likelihood(linear_risk(batch, beta), batch)

    np.testing.assert_allclose(np.asarray(per_node(stacked)), [ref1, ref2], rtol=1e-4)


@pytest.mark.parametrize("spread", [1.0, 30.0, 80.0])
def test_wide_risk_ranges_match_the_float64_formula(spread):
    # risk sets are sums of exp(risk - max): exact in float32 while masses stay above float32's range
    x, time, event, _ = tied_cohort(11, n=200)
    batch = node(x, time, event)
    risk = np.linspace(-spread, spread, 200)[np.random.default_rng(1).permutation(200)].astype(np.float32)
    ref = numpy_breslow_loglike(
        risk.astype(np.float64), np.asarray(batch.time), np.asarray(batch.event), np.asarray(batch.weight)
    )
    ours = float(cox_partial_log_likelihood(jnp.asarray(risk), batch))
    np.testing.assert_allclose(ours, ref, rtol=2e-5)


def test_a_risk_set_past_float32s_range_stays_finite():
    # the latest patient's risk set (itself alone) lies 200 nats below the node's largest risk:
    # its mass underflows, is floored at float32's smallest normal, and loss and gradient stay finite
    time = np.array([10.0, 5.0, 3.0, 1.0])
    event = np.array([1.0, 1.0, 0.0, 1.0])
    batch = make_node_data(np.zeros((4, 1)), np.ones((4, 1), bool), time, event)
    risk = jnp.array([-200.0, 0.0, 0.5, 1.0])
    value, grad = jax.value_and_grad(lambda r: cox_partial_log_likelihood(r, batch))(risk)
    assert np.isfinite(value) and np.all(np.isfinite(grad))
    # the other events' sets hold the large masses and are exact; the lone set's exact term is
    # -200 - (-200) = 0, ours -200 - (1.0 + log(tiny)) with 1.0 the node's largest risk
    exact = numpy_breslow_loglike(np.asarray(risk, np.float64), time, event, np.ones(4))
    floored = -200.0 - (1.0 + np.log(np.finfo(np.float32).tiny))
    np.testing.assert_allclose(float(value), exact + floored, rtol=1e-5)


def test_invariant_to_order_inside_tie_groups():
    x, time, event, beta = tied_cohort(7)
    batch = node(x, time, event)
    rng = np.random.default_rng(0)
    # Shuffle rows within each tie group only: risk_set_end stays valid.
    order = np.arange(len(time))
    for end in np.unique(batch.risk_set_end):
        members = np.flatnonzero(batch.risk_set_end == end)
        order[members] = rng.permutation(members)
    shuffled = batch._replace(x=batch.x[order], observed=batch.observed[order], event=batch.event[order])
    a = float(cox_partial_log_likelihood(linear_risk(batch, beta), batch))
    b = float(cox_partial_log_likelihood(linear_risk(shuffled, beta), shuffled))
    np.testing.assert_allclose(a, b, rtol=1e-6)


def test_hand_computed_three_patients_with_one_tie():
    # P1: time 3, event, risk 0.   P2: time 2, event, risk 1.   P3: time 2, censored, risk -1.
    # Breslow risk sets: at t=3 {P1}; at t=2 {P1, P2, P3} (P3 is tied with P2, so
    # it is at risk even though it comes after P2 in the sorted rows).
    #   P1 term: 0 - log(e^0)                     = 0
    #   P2 term: 1 - log(e^0 + e^1 + e^-1) = 1 - log(4.0861613) = 1 - 1.4076060 = -0.4076060
    #   log partial likelihood = -0.4076060; loss = 0.4076060 / 2 events = 0.2038030
    # A plain running log-sum-exp would give P2 the set {P1, P2} and be wrong.
    x = np.array([[0.0], [1.0], [-1.0]])
    batch = node(x, time=np.array([3.0, 2.0, 2.0]), event=np.array([1.0, 1.0, 0.0]))
    np.testing.assert_array_equal(batch.risk_set_end, [0, 2, 2])
    risk = jnp.asarray(batch.x[:, 0])
    np.testing.assert_allclose(
        float(cox_partial_log_likelihood(risk, batch)), 1 - np.log(1 + np.e + np.exp(-1)), rtol=1e-6
    )
    np.testing.assert_allclose(float(cox_loss(risk, batch)), 0.2038030, rtol=1e-6)


@pytest.mark.parametrize("n_real", [6, 0])
def test_no_events_gives_zero_loss_and_finite_gradient(n_real):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n_real, 2))
    batch = with_garbage_padding(
        node(x, rng.integers(1, 4, n_real).astype(float), np.zeros(n_real), pad_to=9), n_real
    )
    beta = jnp.array([0.3, -0.2])
    loss, grad = jax.jit(jax.value_and_grad(lambda b, nd: cox_loss(jnp.asarray(nd.x) @ b, nd)))(beta, batch)
    assert float(loss) == 0.0
    assert np.all(np.isfinite(np.asarray(grad)))


def test_gradient_ignores_padding_rows():
    x, time, event, beta = tied_cohort(3, n=40)
    batch = with_garbage_padding(node(x, time, event, pad_to=48), 40)
    grad = jax.jit(jax.grad(cox_loss))(linear_risk(batch, beta), batch)
    assert np.all(np.isfinite(np.asarray(grad)))
    np.testing.assert_array_equal(np.asarray(grad[40:]), 0.0)


_jit_loglike = jax.jit(cox_partial_log_likelihood)


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 25), seed=st.integers(0, 2**31 - 1))
def test_weighted_loglike_matches_direct_formula(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 1))
    time = rng.integers(1, 5, n).astype(float)
    event = (rng.random(n) < 0.5).astype(float)
    # One padded size for every example: a single compilation, varying padding.
    batch = node(x, time, event, pad_to=30)
    # Non-integer weights on real rows exercise the weighted form.
    weight = batch.weight * rng.uniform(0.2, 3.0, size=30).astype(np.float32)
    batch = batch._replace(weight=weight)
    risk = jnp.asarray(batch.x[:, 0]) * 0.8
    expected = numpy_breslow_loglike(np.asarray(risk, float), batch.time, batch.event, batch.weight)
    np.testing.assert_allclose(float(_jit_loglike(risk, batch)), expected, rtol=1e-4, atol=1e-4)


# --- make_node_data -------------------------------------------------------------------------------


def test_make_node_data_sorts_stably_marks_ties_and_pads():
    x = np.arange(10, dtype=float).reshape(5, 2)
    observed = np.array([[1, 0], [1, 1], [0, 1], [1, 1], [1, 1]], bool)
    time = np.array([2.0, 5.0, 2.0, 1.0, 5.0])
    event = np.array([1, 0, 0, 1, True])
    batch = make_node_data(x, observed, time, event, pad_to=7)
    # Descending time; ties (5: rows 1, 4; 2: rows 0, 2) keep input order.
    np.testing.assert_array_equal(batch.x[:5, 0], [2.0, 8.0, 0.0, 4.0, 6.0])
    np.testing.assert_array_equal(batch.time, [5, 5, 2, 2, 1, 0, 0])
    np.testing.assert_array_equal(batch.event, [0, 1, 1, 0, 1, 0, 0])
    np.testing.assert_array_equal(batch.weight, [1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(batch.risk_set_end, [1, 1, 3, 3, 4, 5, 6])
    np.testing.assert_array_equal(batch.observed[:5], observed[[1, 4, 0, 2, 3]])
    assert not batch.observed[5:].any() and not batch.x[5:].any()
    assert batch.x.dtype == np.float32 and batch.time.dtype == np.float32 and batch.event.dtype == np.float32
    assert (
        batch.weight.dtype == np.float32
        and batch.observed.dtype == bool
        and batch.risk_set_end.dtype == np.int32
    )


def test_make_node_data_rejects_too_small_padding():
    with pytest.raises(ValueError, match="pad_to"):
        make_node_data(np.zeros((3, 1)), np.ones((3, 1), bool), np.ones(3), np.ones(3), pad_to=2)


# --- Breslow baseline -----------------------------------------------------------------------------


def numpy_breslow_hazard(risk, time, event, at):
    """Direct Breslow estimator: H0(t) = sum over event times s <= t of d(s) / sum_{t_j >= s} exp(r_j)."""
    hazard = np.zeros(len(at))
    for s in np.unique(time[event > 0]):
        step = np.sum(event[time == s]) / np.sum(np.exp(risk[time >= s]))
        hazard += np.where(at >= s, step, 0.0)
    return hazard


def counts_for(risk, batch, grid):
    return breslow_baseline_counts(jnp.asarray(risk, jnp.float32), batch, jnp.asarray(grid, jnp.float32))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_breslow_on_event_time_grid_is_exact(seed):
    x, time, event, beta = tied_cohort(seed, n=60)
    time = time + np.random.default_rng(seed).choice([0.0, 0.5], size=60)  # censoring between event times
    batch = with_garbage_padding(node(x, time, event, pad_to=70), 60)
    risk = linear_risk(batch, beta)
    grid = np.unique(time[event > 0])
    h = breslow_cumulative_hazard(*counts_for(risk, batch, grid), jnp.asarray(grid, jnp.float32))
    expected = numpy_breslow_hazard(np.asarray(risk[:60], float), batch.time[:60], batch.event[:60], grid)
    np.testing.assert_allclose(np.asarray(h), expected, rtol=1e-5)
    # Extra grid points (every distinct time, censored ones too) change nothing.
    fine = np.unique(np.concatenate([time, [0.1, 20.0]]))
    h_fine = breslow_cumulative_hazard(*counts_for(risk, batch, fine), jnp.asarray(fine, jnp.float32))
    expected_fine = numpy_breslow_hazard(
        np.asarray(risk[:60], float), batch.time[:60], batch.event[:60], fine
    )
    np.testing.assert_allclose(np.asarray(h_fine), expected_fine, rtol=1e-5)


def test_node_counts_sum_to_pooled_breslow():
    # Identity under test: the counts are sums over rows, so
    #   counts(node A) + counts(node B) == counts(A and B pooled),
    # and the hazard from the summed counts is the (unstratified) Breslow
    # estimator of the pooled rows under one shared risk model.
    x, time, event, beta = tied_cohort(11, n=90)
    a, b = np.arange(0, 55), np.arange(55, 90)
    grid = np.unique(time[event > 0])
    node_a = with_garbage_padding(node(x[a], time[a], event[a], pad_to=60), 55)
    node_b = with_garbage_padding(node(x[b], time[b], event[b], pad_to=60), 35)
    stacked = jax.tree.map(lambda *v: jnp.stack(v), node_a, node_b)
    per_node = jax.vmap(lambda batch: counts_for(linear_risk(batch, beta), batch, grid))(stacked)
    events, at_risk = (np.asarray(c).sum(axis=0) for c in per_node)

    pooled = node(x, time, event)
    pooled_events, pooled_at_risk = counts_for(linear_risk(pooled, beta), pooled, grid)
    np.testing.assert_allclose(events, np.asarray(pooled_events), rtol=1e-6)
    np.testing.assert_allclose(at_risk, np.asarray(pooled_at_risk), rtol=1e-5)

    h = breslow_cumulative_hazard(jnp.asarray(events), jnp.asarray(at_risk), jnp.asarray(grid, jnp.float32))
    expected = numpy_breslow_hazard(x @ beta, time, event, grid)
    np.testing.assert_allclose(np.asarray(h), expected, rtol=1e-5)


def test_coarse_grid_is_breslow_of_coarsened_times():
    # Documented approximation: events rounded up to their bin's right edge,
    # censoring strictly inside a bin rounded down to its left edge.
    rng = np.random.default_rng(5)
    n = 70
    time = rng.uniform(0.1, 10.0, n)
    event = (rng.random(n) < 0.6).astype(float)
    risk = rng.normal(size=n)
    grid = np.array([2.0, 4.0, 6.0, 8.0])
    batch = node(risk[:, None], time, event)
    h = breslow_cumulative_hazard(*counts_for(batch.x[:, 0], batch, grid), jnp.asarray(grid, jnp.float32))

    edges = np.concatenate([[-np.inf], grid])
    b = np.searchsorted(grid, time, side="left")  # bin (g_{b-1}, g_b]
    coarse = time.copy()
    inside = b < len(grid)
    on_edge = np.zeros(n, bool)
    on_edge[inside] = time[inside] == grid[b[inside]]
    coarse[(event > 0) & inside] = grid[b[(event > 0) & inside]]
    cens = (event == 0) & inside & ~on_edge
    coarse[cens] = edges[b[cens]]
    coarse[(event > 0) & ~inside] = np.inf  # beyond the grid: irrelevant on it
    expected = numpy_breslow_hazard(risk, coarse, event, grid)
    np.testing.assert_allclose(np.asarray(h), expected, rtol=1e-5)


def test_survival_curves_step_interpolation():
    grid = jnp.array([1.0, 2.0, 4.0])
    cum_hazard = jnp.array([0.1, 0.3, 0.6])
    risk = jnp.array([0.0, np.log(2.0)])
    times = jnp.array([0.5, 1.0, 1.5, 2.0, 3.9, 4.0, 10.0])
    s = np.asarray(survival_curves(risk, cum_hazard, grid, times))
    h = np.array([0.0, 0.1, 0.1, 0.3, 0.3, 0.6, 0.6])
    np.testing.assert_allclose(s, np.exp(-np.outer([1.0, 2.0], h)), rtol=1e-6)
    assert s.shape == (2, 7)
