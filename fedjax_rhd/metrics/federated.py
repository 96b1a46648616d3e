"""Federated evaluation for real centres: each centre scores its own test rows and sends sums.

On real centres no test row may leave its node, so there is no pooled test set.
Every centre scores its own test part with the global model and sends one
:class:`NodeTestSummary` (counts and sums, never a row); the manager adds them up.

* **Harrell's C stratified by centre** (Harrell, Lee & Mark 1996, Statistics in
  Medicine 15(4):361-87; stratified as ``survival::concordance(y ~ x + strata(centre))``
  in R): ``(sum concordant + sum tied / 2) / sum comparable`` over the pairs
  WITHIN each centre, with the pair rules of ``concordance.py`` (tied risks are
  exactly equal). Exact; on one centre it is ``concordance_index``.
* **Uno's C stratified by centre** (Uno et al. 2011): the same sums of IPCW
  weights over within-centre pairs, truncated at ``tau``. Exact; on one centre
  it is ``ipcw.uno_c_index``.
* **Cumulative/dynamic AUC stratified by centre** (Uno et al. 2007; Hung & Chiang
  2010): per time, the weighted (case, control) pairs within each centre. The
  pooled AUC also counts (case, control) pairs across centres, which no centre
  can form, so the two differ unless the centres are alike; on one centre they
  agree. The mean over times uses Lambert & Chevret's weights, the drops of the
  pooled test Kaplan-Meier ``S``, built from every centre's test counts on the
  shared grid: exactly the test Kaplan-Meier when the grid holds every distinct
  test time, otherwise deaths and censorings move to the right edge of their bin.
* **Brier score and IBS** (Graf et al. 1999) are means over rows, so the sums of
  the centres' IPCW squared errors over the total row count are EXACTLY the
  pooled ``ipcw.brier_scores`` / ``integrated_brier_score`` of all centres' test
  rows (up to float rounding in the order of the additions).

Every centre uses the same censoring distribution ``G`` (built from every node's
training and validation grid counts, as in ``evaluation.py``), the same shared
grid, the same evaluation ``times`` and the same ``tau``; the manager picks
``times`` inside the pooled test follow-up (``ipcw.evaluation_times`` needs only
the smallest and largest test time over the centres).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from fedjax_rhd.metrics import ipcw
from fedjax_rhd.metrics.concordance import concordance_summary

__all__ = [
    "ConcordanceCounts",
    "NodeTestSummary",
    "federated_test_block",
    "node_concordance_counts",
    "node_test_summary",
    "pooled_brier_scores",
    "pooled_integrated_brier_score",
    "stratified_c_index",
    "stratified_td_auc",
    "stratified_uno_c",
]


class ConcordanceCounts(NamedTuple):
    """One centre's pair counts for Harrell's C (the rules of ``concordance.py``)."""

    concordant: int  # comparable pairs where the earlier death has the strictly higher risk
    tied: int  # comparable pairs with exactly equal risks (half concordant)
    comparable: int


def node_concordance_counts(time: Any, event: Any, risk: Any) -> ConcordanceCounts:
    """Counts concordant, tied and comparable pairs among one centre's rows.

    Args:
        time: f[n] observed times of the centre's test rows.
        event: n event indicators (1 = death, 0 = censored).
        risk: f[n] predicted risks, higher = worse prognosis.

    Returns:
        The centre's :class:`ConcordanceCounts`.
    """
    return ConcordanceCounts(*concordance_summary(time, event, risk))


def stratified_c_index(counts: Sequence[ConcordanceCounts]) -> float:
    """Harrell's C stratified by centre: pairs only within centres (Harrell et al. 1996).

    ``(sum concordant + sum tied / 2) / sum comparable``, i.e. each centre weighted
    by its number of comparable pairs. On one centre it is ``concordance_index``.

    Args:
        counts: one :class:`ConcordanceCounts` per centre.

    Returns:
        The stratified C-index in [0, 1].

    Raises:
        ValueError: if no centre has a comparable pair.
    """
    concordant = sum(int(c.concordant) for c in counts)
    tied = sum(int(c.tied) for c in counts)
    comparable = sum(int(c.comparable) for c in counts)
    if comparable == 0:
        raise ValueError("no comparable pairs in any centre")
    return (concordant + tied / 2) / comparable


class NodeTestSummary(NamedTuple):
    """What one centre sends after scoring its own test rows: counts and sums, never a row.

    ``k`` is the number of evaluation times, ``g`` the size of the shared grid.
    """

    n_test: int  # test rows
    n_events: int  # test deaths
    concordant: int  # Harrell pair counts (see ConcordanceCounts)
    tied: int
    comparable: int
    uno_numerator: float  # sum over comparable pairs of G(t_i)^-2 * score (ipcw.uno_c_sums)
    uno_denominator: float  # sum over comparable pairs of G(t_i)^-2
    auc_numerator: np.ndarray  # f64[k] ipcw.cumulative_dynamic_auc_sums
    auc_denominator: np.ndarray  # f64[k]
    brier_sum: np.ndarray  # f64[k] sum over rows of IPCW squared errors (ipcw.brier_sums)
    km_events: np.ndarray  # f64[g] test deaths per bin of the shared grid (ipcw.grid_counts)
    km_reaching: np.ndarray  # f64[g] test rows still followed when each bin opens

    @classmethod
    def empty(cls, num_times: int, grid_points: int) -> NodeTestSummary:
        """The summary of a centre without test rows: every count and sum 0 (adds nothing)."""
        k, g = np.zeros(num_times), np.zeros(grid_points)
        return cls(0, 0, 0, 0, 0, 0.0, 0.0, k, k.copy(), k.copy(), g, g.copy())

    @property
    def concordance(self) -> ConcordanceCounts:
        """The Harrell pair counts as :class:`ConcordanceCounts`."""
        return ConcordanceCounts(self.concordant, self.tied, self.comparable)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Field name -> numpy array (0-d for scalars: int64 counts, float64 sums), for a message."""
        return {
            name: np.asarray(value, dtype=np.int64 if name in _INT_FIELDS else np.float64)
            for name, value in zip(self._fields, self, strict=True)
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> NodeTestSummary:
        """Inverse of :meth:`to_arrays`; integer counts may arrive as integral floats.

        Raises:
            ValueError: on missing or unknown fields, or a count that is not an integer.
        """
        if set(arrays) != set(cls._fields):
            raise ValueError(f"expected fields {sorted(cls._fields)}, got {sorted(arrays)}")
        values: dict[str, Any] = {}
        for name in cls._fields:
            value = np.asarray(arrays[name])
            if name in _INT_FIELDS:
                if value.ndim != 0 or value != np.round(value):
                    raise ValueError(f"{name} must be an integer scalar, got {value!r}")
                values[name] = int(value)
            elif name in _FLOAT_FIELDS:
                values[name] = float(value)
            else:
                values[name] = np.asarray(value, dtype=np.float64)
        return cls(**values)


_INT_FIELDS = frozenset({"n_test", "n_events", "concordant", "tied", "comparable"})
_FLOAT_FIELDS = frozenset({"uno_numerator", "uno_denominator"})


def node_test_summary(
    time: Any,
    event: Any,
    risk: Any,
    survival_at_times: Any,
    censoring: ipcw.Censoring,
    times: Any,
    tau: float | None,
    *,
    td_risk: Any | None = None,
) -> NodeTestSummary:
    """One centre's sums over its own test rows; runs on the node.

    Args:
        time: f[n] observed times of the centre's test rows.
        event: n event indicators (1 = death, 0 = censored).
        risk: f[n] predicted risks, higher = worse prognosis.
        survival_at_times: f[n, k] predicted ``P(T_i > times[j])``.
        censoring: the shared censoring distribution ``G``; its grid is the shared grid.
        times: f[k] the shared evaluation times.
        tau: Uno's C truncation (deaths at or after ``tau`` carry no weight); None: none.
        td_risk: the AUC's risk, f[n] or f[n, k]; default ``risk`` (right for Cox
            models; models whose curves cross pass ``1 - survival_at_times``).

    Returns:
        The :class:`NodeTestSummary` to send.
    """
    conc = node_concordance_counts(time, event, risk)  # validates: 1-D, equal lengths, 0/1 events
    time = np.asarray(time, dtype=np.float64)
    event = np.asarray(event).astype(bool)
    times = np.asarray(times, dtype=np.float64)
    uno_num, uno_den = ipcw.uno_c_sums(time, event, risk, censoring, tau)
    auc_num, auc_den = ipcw.cumulative_dynamic_auc_sums(
        time, event, risk if td_risk is None else td_risk, times, censoring
    )
    km = ipcw.grid_counts(time, event, censoring.grid)
    return NodeTestSummary(
        n_test=len(time),
        n_events=int(event.sum()),
        concordant=conc.concordant,
        tied=conc.tied,
        comparable=conc.comparable,
        uno_numerator=uno_num,
        uno_denominator=uno_den,
        auc_numerator=auc_num,
        auc_denominator=auc_den,
        brier_sum=ipcw.brier_sums(time, event, survival_at_times, times, censoring),
        km_events=km.events,
        km_reaching=km.reaching,
    )


def stratified_uno_c(summaries: Sequence[NodeTestSummary]) -> float:
    """Uno's C stratified by centre: IPCW-weighted pairs only within centres (Uno et al. 2011).

    Raises:
        ValueError: if no centre has a comparable pair with positive weight.
    """
    denominator = sum(s.uno_denominator for s in summaries)
    if denominator == 0:
        raise ValueError("no comparable pairs with positive weight in any centre")
    return sum(s.uno_numerator for s in summaries) / denominator


def pooled_brier_scores(summaries: Sequence[NodeTestSummary]) -> np.ndarray:
    """Graf's IPCW Brier score at each time over ALL centres' test rows (exact, Graf et al. 1999).

    Returns:
        f64[k], equal to ``ipcw.brier_scores`` on the concatenated rows.
    """
    n = sum(s.n_test for s in summaries)
    if n == 0:
        raise ValueError("no test rows in any centre")
    return np.sum([s.brier_sum for s in summaries], axis=0) / n


def pooled_integrated_brier_score(summaries: Sequence[NodeTestSummary], times: Any) -> float:
    """Integrated Brier score over ALL centres' test rows (exact): ``ipcw.integrated_brier_score``."""
    times = np.asarray(times, dtype=np.float64)
    if len(times) < 2:
        raise ValueError("the integrated Brier score needs at least two times")
    return ipcw.integrate_over_times(pooled_brier_scores(summaries), times)


def _pooled_test_km(summaries: Sequence[NodeTestSummary], times: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Kaplan-Meier of all centres' test rows at ``times``, from their grid counts."""
    events = np.sum([s.km_events for s in summaries], axis=0)
    reaching = np.sum([s.km_reaching for s in summaries], axis=0)
    has = events > 0
    surv = np.cumprod(np.where(has, 1.0 - events / np.where(has, reaching, 1.0), 1.0))
    idx = np.searchsorted(grid, times, side="right") - 1
    return np.where(idx >= 0, surv[np.maximum(idx, 0)], 1.0)


def stratified_td_auc(
    summaries: Sequence[NodeTestSummary], times: Any, grid: Any
) -> tuple[np.ndarray, float]:
    """Cumulative/dynamic AUC stratified by centre and its survival-weighted mean.

    ``AUC_strat(t) = sum_c numerator_c(t) / sum_c denominator_c(t)``: (case,
    control) pairs within centres only, so it differs from the pooled AUC, which
    also counts pairs across centres. The mean weights ``AUC(t_k)`` by the drops
    of the pooled test Kaplan-Meier on ``grid`` (Lambert & Chevret 2014).

    Args:
        summaries: one :class:`NodeTestSummary` per centre.
        times: f[k] the evaluation times the centres used.
        grid: f[g] the shared grid the centres binned their test rows on.

    Returns:
        ``(auc f64[k], mean_auc)``.

    Raises:
        ValueError: if some time has no (case, control) pair in any centre.
    """
    times = np.asarray(times, dtype=np.float64)
    numerator = np.sum([s.auc_numerator for s in summaries], axis=0)
    denominator = np.sum([s.auc_denominator for s in summaries], axis=0)
    if np.any(denominator == 0):
        raise ValueError(f"no within-centre (case, control) pair at t={times[denominator == 0].tolist()}")
    auc = numerator / denominator
    km = _pooled_test_km(summaries, times, np.asarray(grid, dtype=np.float64))
    return auc, ipcw.survival_weighted_mean(auc, km)


def federated_test_block(
    node_summaries: Mapping[str, NodeTestSummary], times: Any, grid: Any, tau: float | None
) -> dict[str, Any]:
    """The manager's test metrics from the centres' summaries, as a JSON-able dict.

    Args:
        node_summaries: centre name -> its :class:`NodeTestSummary`, in report order.
        times: f[k] the shared evaluation times.
        grid: f[g] the shared grid.
        tau: the Uno's C truncation the centres used (recorded only).

    Returns:
        ``{"nodes": [{"name", "n_test", "n_events", "c_index"}], "n_test", "n_events",
        "c_index_test_stratified", "uno_c_test_stratified", "td_auc_test_stratified":
        {"mean", "times", "auc"}, "ibs_test", "brier_test", "survival_eval": {"tau",
        "grid_points", "times"}}``. A centre's ``c_index`` is None without comparable
        pairs; ``ibs_test`` and ``brier_test`` are exact pooled values over all test rows.

    Raises:
        ValueError: on no centre, summaries whose shapes do not match ``times`` and
            ``grid``, or a metric without pairs (see the functions above).
    """
    if not node_summaries:
        raise ValueError("need at least one centre's summary")
    times = np.asarray(times, dtype=np.float64)
    grid = np.asarray(grid, dtype=np.float64)
    for name, s in node_summaries.items():
        shapes = {f: np.shape(getattr(s, f)) for f in ("auc_numerator", "auc_denominator", "brier_sum")}
        if set(shapes.values()) != {times.shape} or np.shape(s.km_events) != grid.shape:
            raise ValueError(
                f"centre {name!r}: summary shapes do not match times {times.shape}, grid {grid.shape}"
            )
    summaries = list(node_summaries.values())
    auc, mean_auc = stratified_td_auc(summaries, times, grid)
    nodes = [
        {
            "name": name,
            "n_test": int(s.n_test),
            "n_events": int(s.n_events),
            "c_index": stratified_c_index([s.concordance]) if s.comparable > 0 else None,
        }
        for name, s in node_summaries.items()
    ]
    return {
        "nodes": nodes,
        "n_test": sum(n["n_test"] for n in nodes),
        "n_events": sum(n["n_events"] for n in nodes),
        "c_index_test_stratified": stratified_c_index([s.concordance for s in summaries]),
        "uno_c_test_stratified": stratified_uno_c(summaries),
        "td_auc_test_stratified": {"mean": mean_auc, "times": times.tolist(), "auc": auc.tolist()},
        "ibs_test": pooled_integrated_brier_score(summaries, times),
        "brier_test": pooled_brier_scores(summaries).tolist(),
        "survival_eval": {
            "tau": None if tau is None else float(tau),
            "grid_points": len(grid),
            "times": times.tolist(),
        },
    }
