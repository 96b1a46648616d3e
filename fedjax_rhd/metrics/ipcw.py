"""Survival metrics beyond Harrell's C: Uno's IPCW C, time-dependent AUC, Brier score.

All three reweight test patients by the inverse probability of remaining
uncensored, ``1 / G(t)``, with ``G`` the Kaplan-Meier estimate of the
*censoring* distribution on TRAINING data (ARCHITECTURE §1.3). Under federation
no node may send its times, so ``G`` is built from counts every node sends on a
shared time grid (:func:`grid_counts`, summed by the manager) and turned into a
step function by :func:`censoring_from_counts`. When the grid holds every
distinct training time the result is exactly the reverse Kaplan-Meier estimate
of the pooled data (the convention of scikit-survival's
``CensoringDistributionEstimator``: deaths at ``t`` leave the risk set before
the censorings at ``t`` are counted); on a coarser grid every censoring is
moved to the right edge of its bin.

Each estimator is a ratio of sums over rows or pairs; ``uno_c_sums``,
``cumulative_dynamic_auc_sums`` and ``brier_sums`` return those sums, so a
centre can score its own test rows and the manager can add the sums up
(``federated.py``).

References:
    * Uno, Cai, Pencina, D'Agostino & Wei, "On the C-statistics for evaluating
      overall adequacy of risk prediction procedures with censored survival
      data", Statistics in Medicine 30(10):1105-17 (2011).
    * Uno, Cai, Tian & Wei, "Evaluating prediction rules for t-year survivors
      with censored regression models", JASA 102:527-37 (2007); Hung & Chiang,
      Canadian Journal of Statistics 38(1):8-26 (2010): cumulative/dynamic AUC.
    * Lambert & Chevret, Stat Methods Med Res (2014): its survival-weighted mean.
    * Graf, Schmoor, Sauerbrei & Schumacher, "Assessment and comparison of
      prognostic classification schemes for survival data", Statistics in
      Medicine 18:2529-45 (1999): IPCW Brier score and its integral.

Risks follow the project's convention (higher = worse prognosis); survival
curves are ``S[i, k] = P(T_i > times[k])``. Risks closer than ``TIED_TOL``
count as tied (half a concordant pair), as in scikit-survival.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

TIED_TOL = 1e-8
_CHUNK = 1024  # rows per block of the pairwise comparisons (memory: _CHUNK * n floats)


class GridCounts(NamedTuple):
    """What one node sends for the censoring distribution: counts per grid bin.

    Bin ``b`` is ``(g_{b-1}, g_b]`` with ``g_{-1} = -inf``. Plain counts, so the
    manager's sum over nodes equals the pooled counts.
    """

    events: np.ndarray  # f64[g] deaths in bin b
    censored: np.ndarray  # f64[g] censorings in bin b
    reaching: np.ndarray  # f64[g] rows with time > g_{b-1} (still followed when bin b opens)


class Censoring(NamedTuple):
    """Kaplan-Meier censoring survival ``G`` as a right-continuous step function."""

    grid: np.ndarray  # f64[g] strictly increasing
    survival: np.ndarray  # f64[g] G(g_b); G(t) = 1 before grid[0]


def time_grid(max_time: float, num_points: int = 512) -> np.ndarray:
    """Shared, evenly spaced grid ``(max_time / g, ..., max_time)``.

    Every node sends only its largest training time; the manager takes the
    maximum and builds this grid, so every node bins on the same points.
    """
    if not np.isfinite(max_time) or max_time <= 0:
        raise ValueError(f"max_time must be finite and > 0, got {max_time}")
    if num_points < 2:
        raise ValueError(f"num_points must be >= 2, got {num_points}")
    return np.linspace(max_time / num_points, max_time, num_points)


def _check_grid(grid: np.ndarray) -> np.ndarray:
    grid = np.asarray(grid, dtype=np.float64)
    if grid.ndim != 1 or len(grid) == 0 or np.any(np.diff(grid) <= 0):
        raise ValueError("grid must be a non-empty, strictly increasing 1-D array")
    return grid


def grid_counts(time: np.ndarray, event: np.ndarray, grid: np.ndarray) -> GridCounts:
    """One node's counts on the shared grid (rows past the last grid point only count as reaching)."""
    grid = _check_grid(grid)
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    if time.shape != event.shape or time.ndim != 1:
        raise ValueError(f"time and event must be 1-D of equal length, got {time.shape} and {event.shape}")
    g = len(grid)
    # Bin index b with g_{b-1} < t <= g_b; g means "after the last grid point".
    bins = np.searchsorted(grid, time, side="left")
    per_bin = np.bincount(bins, minlength=g + 1).astype(np.float64)
    reaching = np.cumsum(per_bin[::-1])[::-1][:g]
    events = np.bincount(bins[event], minlength=g + 1)[:g].astype(np.float64)
    censored = np.bincount(bins[~event], minlength=g + 1)[:g].astype(np.float64)
    return GridCounts(events, censored, reaching)


def sum_counts(parts: Sequence[GridCounts]) -> GridCounts:
    """The manager's merge: element-wise sums over nodes."""
    if not parts:
        raise ValueError("need at least one node's counts")
    return GridCounts(*(np.sum([getattr(p, f) for p in parts], axis=0) for f in GridCounts._fields))


def censoring_from_counts(counts: GridCounts, grid: np.ndarray) -> Censoring:
    """Reverse Kaplan-Meier on the grid: ``G(g_b) = prod_{c<=b} (1 - cens_c / (reach_c - deaths_c))``.

    Deaths in a bin leave the risk set before that bin's censorings are
    counted, so a death and a censoring at the same time never compete.
    """
    grid = _check_grid(grid)
    at_risk = counts.reaching - counts.events
    has = counts.censored > 0
    factor = np.where(has, 1.0 - counts.censored / np.where(has, at_risk, 1.0), 1.0)
    return Censoring(grid, np.cumprod(factor))


def censoring_at(censoring: Censoring, times: np.ndarray) -> np.ndarray:
    """``G(t)``: the value at the largest grid point ``<= t`` (1 before the grid, last value past it)."""
    idx = np.searchsorted(censoring.grid, np.asarray(times, dtype=np.float64), side="right") - 1
    return np.where(idx >= 0, censoring.survival[np.maximum(idx, 0)], 1.0)


def _as_arrays(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event)
    if time.ndim != 1 or time.shape != event.shape:
        raise ValueError(f"time and event must be 1-D of equal length, got {time.shape} and {event.shape}")
    if not np.all(np.isfinite(time)):
        raise ValueError("time must be finite")
    if not np.isin(event, (0, 1)).all():
        raise ValueError("event must contain only 0/1 (or False/True)")
    return time, event.astype(bool)


def _check_times(times: np.ndarray, test_time: np.ndarray) -> np.ndarray:
    times = np.asarray(times, dtype=np.float64)
    if times.ndim != 1 or len(times) == 0 or np.any(np.diff(times) <= 0):
        raise ValueError("times must be a non-empty, strictly increasing 1-D array")
    if times[0] < test_time.min() or times[-1] >= test_time.max():
        raise ValueError(
            f"evaluation times must lie in the test follow-up [{test_time.min()}, {test_time.max()}), "
            f"got [{times[0]}, {times[-1]}]"
        )
    return times


def _inverse(g: np.ndarray) -> np.ndarray:
    """``1 / G`` with 0 where ``G == 0`` (those rows carry no weight: nothing is known past G = 0)."""
    return np.divide(1.0, g, out=np.zeros_like(g), where=g > 0)


def uno_c_sums(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, censoring: Censoring, tau: float | None = None
) -> tuple[float, float]:
    """Numerator and denominator of :func:`uno_c_index`: sums over the comparable pairs of these rows.

    Plain sums over pairs, so a centre's sums over its own pairs add up across
    centres to the sums over all within-centre pairs (Uno's C stratified by
    centre). Both are 0 when no death before ``tau`` has a comparable row.

    Raises:
        ValueError: on bad inputs or ``G(t_i) = 0`` at a weighted death.
    """
    time, event = _as_arrays(time, event)
    risk = np.asarray(risk, dtype=np.float64)
    if risk.shape != time.shape:
        raise ValueError(f"risk must have shape {time.shape}, got {risk.shape}")
    weighted = event & (time < tau) if tau is not None else event
    g = censoring_at(censoring, time[weighted])
    if np.any(g == 0):
        raise ValueError("censoring survival G is zero at a test death before tau; lower tau")
    weight = np.zeros_like(time)
    weight[weighted] = g**-2.0
    numerator = denominator = 0.0
    rows = np.flatnonzero(event)
    for lo in range(0, len(rows), _CHUNK):
        i = rows[lo : lo + _CHUNK]
        ti, ri = time[i, None], risk[i, None]
        comparable = (time[None, :] > ti) | ((time[None, :] == ti) & ~event[None, :])
        tied = np.abs(risk[None, :] - ri) <= TIED_TOL
        score = np.where(tied, 0.5, (risk[None, :] < ri).astype(np.float64)) * comparable
        numerator += float(weight[i] @ score.sum(axis=1))
        denominator += float(weight[i] @ comparable.sum(axis=1))
    return numerator, denominator


def uno_c_index(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, censoring: Censoring, tau: float | None = None
) -> float:
    """Uno's IPCW concordance index, truncated at ``tau``.

    ``sum_i w_i sum_{j comparable to i} [r_i > r_j] + [r_i ~ r_j] / 2`` over
    ``sum_i w_i #{j comparable to i}``, with ``w_i = G(t_i)^-2`` for deaths
    with ``t_i < tau`` (0 otherwise); ``j`` is comparable to death ``i`` when
    ``t_j > t_i`` or ``t_j == t_i`` and ``j`` is censored.

    Raises:
        ValueError: on bad inputs, ``G(t_i) = 0`` at a weighted death, or no comparable pair.
    """
    numerator, denominator = uno_c_sums(time, event, risk, censoring, tau)
    if denominator == 0:
        raise ValueError("no comparable pairs with positive weight")
    return numerator / denominator


def kaplan_meier(time: np.ndarray, event: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Kaplan-Meier survival of ``(time, event)`` evaluated at ``times`` (right-continuous)."""
    time, event = _as_arrays(time, event)
    uniq = np.unique(time)
    deaths = np.array([np.sum(event & (time == u)) for u in uniq], dtype=np.float64)
    at_risk = np.array([np.sum(time >= u) for u in uniq], dtype=np.float64)
    surv = np.cumprod(1.0 - deaths / at_risk)
    idx = np.searchsorted(uniq, np.asarray(times, dtype=np.float64), side="right") - 1
    return np.where(idx >= 0, surv[np.maximum(idx, 0)], 1.0)


def cumulative_dynamic_auc_sums(
    time: np.ndarray, event: np.ndarray, estimate: np.ndarray, times: np.ndarray, censoring: Censoring
) -> tuple[np.ndarray, np.ndarray]:
    """Numerator and denominator of :func:`cumulative_dynamic_auc` at each time, sums over pairs.

    ``numerator[k] = sum_{case i} sum_{control j} score_ij / G(t_i)`` and
    ``denominator[k] = sum_{case i} 1 / G(t_i) * #controls``, with cases and
    controls at ``times[k]`` as in :func:`cumulative_dynamic_auc`. No check
    that ``times`` lie in these rows' follow-up: a time without cases or
    controls here gives 0 / 0, which adds nothing to a sum over centres.

    Returns:
        ``(numerator f64[len(times)], denominator f64[len(times)])``.
    """
    time, event = _as_arrays(time, event)
    times = np.asarray(times, dtype=np.float64)
    estimate = np.asarray(estimate, dtype=np.float64)
    if estimate.ndim == 1:
        estimate = np.repeat(estimate[:, None], len(times), axis=1)
    if estimate.shape != (len(time), len(times)):
        raise ValueError(f"estimate must have shape {(len(time),)} or {(len(time), len(times))}")
    inv_g = _inverse(censoring_at(censoring, time))
    numerator = np.zeros(len(times))
    denominator = np.zeros(len(times))
    for k, t in enumerate(times):
        case = event & (time <= t)
        control = time > t
        rc, rn = estimate[case, k][:, None], estimate[control, k][None, :]
        tied = np.abs(rc - rn) <= TIED_TOL
        score = np.where(tied, 0.5, (rc > rn).astype(np.float64)).sum(axis=1)
        numerator[k] = float(inv_g[case] @ score)
        denominator[k] = inv_g[case].sum() * control.sum()
    return numerator, denominator


def cumulative_dynamic_auc(
    time: np.ndarray, event: np.ndarray, estimate: np.ndarray, times: np.ndarray, censoring: Censoring
) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC at each of ``times`` and its survival-weighted mean.

    Cases at ``t`` are deaths with ``t_i <= t``, weighted ``1 / G(t_i)``;
    controls are rows with ``t_j > t``. ``AUC(t)`` is the weighted fraction of
    (case, control) pairs where the case has the higher risk (ties: 1/2). The
    mean is ``sum_k AUC(t_k) (S(t_{k-1}) - S(t_k)) / (1 - S(t_last))`` with the
    test set's Kaplan-Meier ``S`` and ``S(t_0) = 1``.

    Args:
        time, event: test follow-up.
        estimate: f[n] risk, or f[n, len(times)] a time-dependent risk such as
            ``1 - S(t | x)`` (must be a risk, never a survival probability).
        times: strictly increasing evaluation times inside the test follow-up.
        censoring: the training censoring distribution.

    Returns:
        ``(auc f64[len(times)], mean_auc)``.
    """
    time, event = _as_arrays(time, event)
    times = _check_times(times, time)
    for t in times:
        if not (event & (time <= t)).any() or not (time > t).any():
            raise ValueError(f"no cases or no controls at t={t}")
    numerator, denominator = cumulative_dynamic_auc_sums(time, event, estimate, times, censoring)
    auc = numerator / denominator
    return auc, survival_weighted_mean(auc, kaplan_meier(time, event, times))


def survival_weighted_mean(values: np.ndarray, survival: np.ndarray) -> float:
    """``sum_k v_k (S(t_{k-1}) - S(t_k)) / (1 - S(t_last))`` with ``S(t_0) = 1`` (Lambert & Chevret).

    A single time gives its value.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) == 1:
        return float(values[0])
    drop = -np.diff(np.concatenate([[1.0], np.asarray(survival, dtype=np.float64)]))
    return float((values * drop).sum() / (1.0 - survival[-1]))


def brier_sums(
    time: np.ndarray, event: np.ndarray, survival: np.ndarray, times: np.ndarray, censoring: Censoring
) -> np.ndarray:
    """Sum over these rows of Graf's IPCW squared errors at each time (:func:`brier_scores` times ``n``).

    A sum over rows, so centres' sums add up to the pooled sum. No check that
    ``times`` lie in these rows' follow-up (a centre's rows need not span them).

    Args:
        survival: f[n, len(times)] predicted ``P(T_i > times[k])``.

    Returns:
        f64[len(times)].
    """
    time, event = _as_arrays(time, event)
    times = np.asarray(times, dtype=np.float64)
    survival = np.asarray(survival, dtype=np.float64)
    if survival.shape != (len(time), len(times)):
        raise ValueError(f"survival must have shape {(len(time), len(times))}, got {survival.shape}")
    inv_g_row = _inverse(censoring_at(censoring, time))[:, None]
    inv_g_t = _inverse(censoring_at(censoring, times))[None, :]
    case = (event[:, None] & (time[:, None] <= times[None, :])).astype(np.float64)
    control = (time[:, None] > times[None, :]).astype(np.float64)
    terms = survival**2 * case * inv_g_row + (1.0 - survival) ** 2 * control * inv_g_t
    return terms.sum(axis=0)


def brier_scores(
    time: np.ndarray, event: np.ndarray, survival: np.ndarray, times: np.ndarray, censoring: Censoring
) -> np.ndarray:
    """Graf's IPCW Brier score at each time.

    ``BS(t) = mean_i S_i(t)^2 [t_i <= t, death] / G(t_i) + (1 - S_i(t))^2 [t_i > t] / G(t)``.

    Args:
        survival: f[n, len(times)] predicted ``P(T_i > times[k])``.
    """
    time, event = _as_arrays(time, event)
    times = _check_times(times, time)
    return brier_sums(time, event, survival, times, censoring) / len(time)


def integrated_brier_score(
    time: np.ndarray, event: np.ndarray, survival: np.ndarray, times: np.ndarray, censoring: Censoring
) -> float:
    """Trapezoidal integral of :func:`brier_scores` over ``times``, divided by their span."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) < 2:
        raise ValueError("the integrated Brier score needs at least two times")
    return integrate_over_times(brier_scores(time, event, survival, times, censoring), times)


def integrate_over_times(values: np.ndarray, times: np.ndarray) -> float:
    """Trapezoidal integral of ``values`` over ``times``, divided by their span."""
    times = np.asarray(times, dtype=np.float64)
    return float(np.trapezoid(values, times) / (times[-1] - times[0]))


def evaluation_times(
    counts: GridCounts,
    grid: np.ndarray,
    test_time: np.ndarray,
    *,
    quantiles: tuple[float, float] = (0.1, 0.9),
    num: int = 20,
) -> np.ndarray:
    """Times for the AUC and Brier curves, from the TRAINING deaths' distribution.

    The grid points where the pooled training death counts first reach the
    ``quantiles``, then ``num`` evenly spaced times between them, kept inside
    the test follow-up ``[min, max)`` that the IPCW estimators require.
    """
    grid = _check_grid(grid)
    cum = np.cumsum(counts.events)
    if cum[-1] <= 0:
        raise ValueError("no training deaths on the grid")
    lo, hi = (grid[min(np.searchsorted(cum, q * cum[-1]), len(grid) - 1)] for q in quantiles)
    test_time = np.asarray(test_time, dtype=np.float64)
    times = np.linspace(lo, hi, num)
    times = times[(times >= test_time.min()) & (times < test_time.max())]
    if len(times) < 2:
        raise ValueError(f"fewer than two evaluation times in [{lo}, {hi}] inside the test follow-up")
    return times
