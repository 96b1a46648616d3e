"""Cox partial likelihood (Breslow ties) and the federated Breslow baseline hazard.

Everything that runs inside a training step is a pure, ``jit``/``vmap``-safe JAX
function over a :class:`~fedjax_rhd.typing.NodeData` whose rows are already
sorted by descending time (``fedjax_rhd.data.packing.make_node_data`` does that once, in numpy, when the
data is built), so no step ever sorts.

Conventions shared by every function here:

* ``risk`` is the log relative hazard (higher = worse prognosis).
* Ties use Breslow's approximation: every member of a tie group shares the risk
  set ``{j : time_j >= time_i}``; censored rows tied with an event are in it.
* Padding rows carry ``weight == 0`` and are masked *before* any ``exp`` (as
  ``-inf`` in log space), never multiplied by zero afterwards: ``0 * exp(r)`` is
  ``nan`` once ``exp(r)`` overflows, and padding ``x`` is arbitrary.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fedjax_rhd.executables import stored_jit
from fedjax_rhd.typing import NodeData


def _masked_log_weighted_risk(risk: jax.Array, weight: jax.Array) -> jax.Array:
    """``log(weight * exp(risk))`` with ``-inf`` on padding rows (``weight == 0``)."""
    real = weight > 0
    # ``log`` of a zero weight would be -inf with a nan gradient through the
    # unselected ``where`` branch, so feed it a harmless 1.0 there.
    safe_weight = jnp.where(real, weight, 1.0)
    return jnp.where(real, risk + jnp.log(safe_weight), -jnp.inf)


def cox_partial_log_likelihood(risk: jax.Array, batch: NodeData) -> jax.Array:
    """Weighted Breslow log partial likelihood of one node.

    ``sum_i w_i e_i (r_i - log sum_{j: t_j >= t_i} w_j exp(r_j))``, with rows
    pre-sorted by descending time so the risk set of row ``i`` is rows
    ``0..batch.risk_set_end[i]``.

    Args:
        risk: f32[n] log relative hazard per row (padding rows arbitrary).
        batch: the node's rows, sorted by descending time, padding last.

    Returns:
        f32[] the log partial likelihood (0 when the node has no events).
    """
    log_mass = _masked_log_weighted_risk(risk, batch.weight)
    # Running sum over the sorted rows: entry k is the total mass of rows 0..k.
    # A plain running sum would give each member of a tie group a different
    # (order-dependent) risk set; gathering at the group's last row gives all of
    # them the full Breslow risk set. The masses are shifted by the node's
    # largest (a constant without gradient: it cancels), so the largest is 1 and
    # nothing overflows; ``cumsum`` of ``exp`` is several times cheaper than
    # ``cumlogsumexp`` (a log-depth scan of ``logaddexp``) on a CPU.
    shift = jax.lax.stop_gradient(jnp.max(log_mass))
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)  # a node of padding only
    running = jnp.cumsum(jnp.exp(log_mass - shift))
    # A risk set whose every member lies more than ~87 nats (float32's range)
    # below the node's largest would sum to 0: floor it at the smallest normal
    # float, so the loss stays finite (such a set's rows then get no gradient
    # from it; only a model with hazard ratios past e^87 meets this).
    tiny = jnp.finfo(running.dtype).tiny
    log_risk_set = shift + jnp.log(jnp.maximum(jnp.take(running, batch.risk_set_end, axis=0), tiny))
    event_weight = batch.weight * batch.event
    has_event = event_weight > 0
    # Mask rather than multiply: on an all-padding node the risk-set term is
    # -inf and ``0 * -inf`` would be nan.
    terms = jnp.where(has_event, event_weight * (risk - jnp.where(has_event, log_risk_set, 0.0)), 0.0)
    return jnp.sum(terms)


def cox_loss(risk: jax.Array, batch: NodeData) -> jax.Array:
    """Negative Breslow log partial likelihood per (weighted) event.

    Dividing by the number of events keeps the loss scale, and so a learning
    rate, comparable between nodes of very different sizes.

    Args:
        risk: f32[n] log relative hazard per row.
        batch: the node's rows, sorted by descending time, padding last.

    Returns:
        f32[] the loss; exactly 0 (with a finite, zero gradient) when the node
        has no events.
    """
    num_events = jnp.sum(batch.weight * batch.event)
    has_events = num_events > 0
    log_lik = cox_partial_log_likelihood(risk, batch)
    return jnp.where(has_events, -log_lik / jnp.where(has_events, num_events, 1.0), 0.0)


def breslow_baseline_counts(risk: jax.Array, batch: NodeData, grid: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One node's contribution to a federated Breslow baseline hazard.

    With ``g_0 = -inf`` and bin ``b = (g_{b-1}, g_b]`` of the shared, strictly
    increasing ``grid``:

    * ``events[b] = sum_i w_i e_i [g_{b-1} < t_i <= g_b]``
    * ``at_risk[b] = sum_j w_j exp(r_j) [t_j >= g_b  or  (e_j = 1 and t_j > g_{b-1})]``

    Both are plain sums over rows, so summing them over nodes gives the pooled
    counts, and :func:`breslow_cumulative_hazard` of the sums is the Breslow
    estimator ``H0(g_b) = sum_{c <= b} events[c] / at_risk[c]`` of the pooled
    data. This is exactly Breslow's estimator of the *coarsened* data where each
    event time is rounded up to its bin's right edge ``g_b`` and each censoring
    time strictly inside a bin is rounded down to the left edge. Hence:

    * when the grid contains every distinct event time, no event moves and a
      censored row inside ``(g_{b-1}, g_b)`` is not at risk at ``g_b`` in the
      raw data either, so the result equals the exact Breslow estimator at the
      grid points;
    * on a coarse grid, all events of a bin share one risk set (everyone who
      reached the bin's end plus everyone who died in the bin), and patients
      censored inside the bin are dropped from it. That tends to overstate the
      hazard slightly (censoring is assumed to happen at the start of the bin);
      refine the grid where the risk set thins out.

    Events after the last grid point are ignored (``H0`` is only evaluated on
    the grid). The sums are of ``exp(risk)`` in float32, so keep risks well
    below ~80 (a common shift of all risks cancels in survival curves).

    Args:
        risk: f32[n] log relative hazard per row.
        batch: the node's rows (any order; padding has ``weight == 0``).
        grid: f32[g] strictly increasing time grid shared by every node.

    Returns:
        ``(events_per_bin f32[g], at_risk_sum f32[g])``.
    """
    num_bins = grid.shape[0]
    time = batch.time
    event_weight = batch.weight * batch.event
    # exp of the masked log mass: padding gives exp(-inf) = 0 before any sum.
    mass = jnp.exp(_masked_log_weighted_risk(risk, batch.weight))

    def bin_sum(values: jax.Array, index: jax.Array, valid: jax.Array) -> jax.Array:
        # Out-of-range rows go to an extra segment that is dropped, so no
        # negative index ever wraps around.
        index = jnp.where(valid & (index >= 0) & (index < num_bins), index, num_bins)
        return jax.ops.segment_sum(values, index, num_segments=num_bins + 1)[:num_bins]

    # Bin of each row: the b with g_{b-1} < t <= g_b.
    bin_index = jnp.searchsorted(grid, time, side="left")
    events = bin_sum(event_weight, bin_index, event_weight > 0)

    # [t_j >= g_b] holds for b <= last_reached_j (largest b with g_b <= t_j);
    # summing mass at that index then reverse-cumulating gives every b at once.
    last_reached = jnp.searchsorted(grid, time, side="right") - 1
    reached = jnp.flip(jnp.cumsum(jnp.flip(bin_sum(mass, last_reached, mass > 0))))
    # Events strictly inside their bin (t < g_b) are not in the set above but
    # were at risk when they died; add them to their own bin.
    inside = (event_weight > 0) & (bin_index < num_bins)
    inside = inside & (time < jnp.take(grid, jnp.minimum(bin_index, num_bins - 1)))
    died_inside = bin_sum(mass, bin_index, inside)
    return events, reached + died_inside


@stored_jit()
def breslow_cumulative_hazard(events: jax.Array, at_risk: jax.Array, grid: jax.Array) -> jax.Array:
    """Breslow cumulative baseline hazard on the grid from (summed) counts.

    Args:
        events: f32[g] weighted events per bin, summed over nodes.
        at_risk: f32[g] risk-set mass per bin, summed over nodes.
        grid: f32[g] the grid the counts were built on (shape check only).

    Returns:
        f32[g] ``H0(g_b) = sum_{c <= b} events[c] / at_risk[c]``; bins without
        events add nothing.
    """
    if events.shape != grid.shape or at_risk.shape != grid.shape:
        raise ValueError(f"events {events.shape} and at_risk {at_risk.shape} must match grid {grid.shape}")
    has_events = events > 0
    increments = jnp.where(has_events, events / jnp.where(has_events, at_risk, 1.0), 0.0)
    return jnp.cumsum(increments)


@stored_jit()  # one program: its eager operations were a dozen lowerings in each new process
def survival_curves(risk: jax.Array, cum_hazard: jax.Array, grid: jax.Array, times: jax.Array) -> jax.Array:
    """Cox survival curves ``S(t | x) = exp(-H0(t) exp(risk))``.

    ``H0`` is a right-continuous step function: at ``t`` it takes the value at
    the largest grid point ``<= t``, and 0 before the first grid point.

    Args:
        risk: f32[n] log relative hazard per patient.
        cum_hazard: f32[g] cumulative baseline hazard at the grid points.
        grid: f32[g] strictly increasing grid of ``cum_hazard``.
        times: f32[t] times at which to evaluate the curves.

    Returns:
        f32[n, t] survival probabilities.
    """
    index = jnp.searchsorted(grid, times, side="right") - 1
    baseline = jnp.where(index >= 0, jnp.take(cum_hazard, jnp.maximum(index, 0)), 0.0)
    return jnp.exp(-baseline[None, :] * jnp.exp(risk)[:, None])
