"""Small-cell control (``privacy.min_cell_count = k``): what a node does to a statistic before it leaves.

A *cell* is a count of a node's patients that falls in one part of a partition of the value
space: a bin of a histogram or of the shared time grid, a cell of a contingency table. A cell
holding one patient says that one patient at this node has that value (to within the bin),
which is the residual risk ``docs/privacy.md`` lists for every binned statistic. Statistical
disclosure control handles such cells by *coarsening* (merging a small cell into its
neighbours) or *suppression* (releasing 0 in its place); see Hundepool et al., *Statistical
Disclosure Control* (Wiley 2012), ch. 5 on frequency tables, and the "rule of k" (threshold
rule) used by statistical offices. Node totals (rows, deaths, observed values of a column) are
not cells: they are released as before.

The rules, each a pure function of one node's own counts, run on the node, inside the node
functions both backends call (``federation.node_tasks.NODE_STATISTICS``, which read ``k`` from
their inputs' ``min_cell_count`` entry, and ``data.preprocess.node_statistics``):

* **ordered bins** (a histogram, the time grid): adjacent bins are merged into *runs*, left to
  right, until every count channel of the run (deaths and censorings for the time grid) holds
  0 or at least ``k`` (:func:`merge_runs`); a remainder that cannot reach ``k`` joins the runs
  before it. A run's count is then placed in one bin of the run (:func:`pool_histogram`: its
  middle bin; for the time grid the node rounds its follow-up times up to the run's last grid
  point, :func:`round_times`, so every survival statistic stays an exact statistic of coarsened
  times). If even the whole axis cannot reach ``k`` the axis is one run: only its totals leave.
* **unordered tables** (the Bayesian network's pair and family counts): a cell below ``k`` is
  released as 0 (:func:`suppress_cells`), so table totals shrink.
* **order statistics** (a node's largest follow-up time): the ``k``-th largest instead
  (:func:`kth_largest`), a value that ``k`` of its patients reach.

``k <= 1`` changes nothing (the default, ``min_cell_count = 0``): the coarsening functions return
their input itself, bit for bit, and :func:`kth_largest` is the maximum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

KEY = "min_cell_count"  # the entry of a node statistic's inputs that carries k (absent: 0)


def min_cell_count(inputs: Mapping[str, Any]) -> int:
    """``k`` as a node statistic's inputs carry it (0 when the manager sent none)."""
    return int(np.asarray(inputs.get(KEY, 0)))


def with_min_cell_count(inputs: Mapping[str, Any], k: int) -> dict[str, Any]:
    """``inputs`` with ``k`` added when it asks for anything (so a default run's messages are unchanged)."""
    return {**inputs, KEY: np.asarray(int(k), np.int64)} if active(k) else dict(inputs)


def active(k: int) -> bool:
    """Whether ``k`` asks for anything (``k >= 2``; 0 and 1 release every cell as it is)."""
    return int(k) >= 2


def _valid(totals: np.ndarray, k: int) -> bool:
    return bool(totals.any() and np.all((totals == 0) | (totals >= k)))


def merge_runs(channels: np.ndarray, k: int) -> np.ndarray:
    """The runs of adjacent bins a node releases: i64[B] the last bin of each bin's run.

    Args:
        channels: f64[C, B] (or f64[B], one channel) counts per bin; a run is closed as soon as
            it holds something and every channel's total over it is 0 or ``>= k``.
        k: the minimum cell count (``>= 2``; below that every bin is its own run).

    Returns:
        ``end`` with ``end[b]`` the last bin of ``b``'s run. Empty bins after the last
        non-empty one form a run of their own (they hold nothing). A remainder that cannot be
        closed is merged backwards into the runs before it until the merged run is valid, or
        the whole axis is one run (then only the axis totals are released).

    Example (k = 3, one channel): counts ``[1, 1, 1, 0, 2, 0, 5]`` give the runs ``[0..2]`` (3)
    and ``[3..6]`` (7), so ``end = [2, 2, 2, 6, 6, 6, 6]``.
    """
    counts = np.atleast_2d(np.asarray(channels, np.float64))
    n_bins = counts.shape[1]
    end = np.arange(n_bins)
    if not active(k) or n_bins == 0:
        return end
    runs: list[list[int]] = []  # [start, stop] inclusive
    start = 0
    totals = np.zeros(counts.shape[0])
    # only bins holding something can close a run: skip the empty ones (most of a fine grid)
    for b in np.flatnonzero(counts.any(axis=0)):
        totals = totals + counts[:, b]
        if _valid(totals, k):
            runs.append([start, int(b)])
            start, totals = int(b) + 1, np.zeros(counts.shape[0])
    if start < n_bins:
        if not totals.any():
            runs.append([start, n_bins - 1])  # trailing empty bins: nothing to hide
        else:
            # the remainder joins the runs before it until the union holds k (or it is the axis)
            while runs and not _valid(totals, k):
                previous = runs.pop()
                totals = totals + counts[:, previous[0] : previous[1] + 1].sum(axis=1)
                start = previous[0]
            runs.append([start, n_bins - 1])
    for first, last in runs:
        end[first : last + 1] = last
    return end


def pool_histogram(counts: np.ndarray, k: int) -> np.ndarray:
    """One histogram (``[..., B]``, last axis the bins) with each run's count in its middle bin.

    Every non-zero bin of the result holds ``>= k`` (or the axis total, when that is below
    ``k``); totals are unchanged and the dtype is kept. A value moves by at most the width of
    its run, which is what makes a median from these counts approximate.
    """
    counts = np.asarray(counts)
    if not active(k):
        return counts
    out = np.zeros_like(counts)
    flat_in = counts.reshape(-1, counts.shape[-1])
    flat_out = out.reshape(-1, counts.shape[-1])
    for row, target in zip(flat_in, flat_out, strict=True):
        end = merge_runs(row, k)
        first = 0
        for last in np.unique(end):
            target[(first + last) // 2] = row[first : last + 1].sum()
            first = last + 1
    return out


def suppress_cells(counts: np.ndarray, k: int) -> np.ndarray:
    """A contingency table with every cell holding ``1..k-1`` released as 0 (dtype kept)."""
    counts = np.asarray(counts)
    if not active(k):
        return counts
    return np.where((counts > 0) & (counts < k), np.zeros_like(counts), counts)


def kth_largest(values: np.ndarray, k: int) -> float | None:
    """The ``k``-th largest of ``values`` (the largest when ``k <= 1``); None with fewer than ``k``."""
    values = np.sort(np.asarray(values, np.float64))
    rank = max(int(k), 1)
    return float(values[-rank]) if len(values) >= rank else None


def kth_smallest(values: np.ndarray, k: int) -> float | None:
    """The ``k``-th smallest of ``values`` (the smallest when ``k <= 1``); None with fewer than ``k``."""
    values = np.sort(np.asarray(values, np.float64))
    rank = max(int(k), 1)
    return float(values[rank - 1]) if len(values) >= rank else None


def round_times(time: np.ndarray, event: np.ndarray, grid: np.ndarray, k: int) -> np.ndarray:
    """Follow-up times rounded up to the last grid point of their run (times past the grid unchanged).

    Bin ``b`` of the shared, increasing ``grid`` is ``(g_{b-1}, g_b]`` (``ipcw.grid_counts``); the
    runs are :func:`merge_runs` of the node's deaths and censorings per bin, so after rounding
    every grid point where patients leave follow-up holds ``0`` or ``>= k`` deaths and ``0`` or
    ``>= k`` censorings (or the node's totals when those are below ``k``). A death moves later by
    at most its run's width and a censoring likewise, so the node's statistics are exact
    statistics of these coarsened times: Kaplan-Meier and Breslow estimates computed from them
    are valid estimates for coarsened data, not the exact ones.

    Args:
        time: f64[n] the node's follow-up times (real rows only).
        event: bool[n] death (True) or censoring.
        grid: f64[G] the shared evaluation grid.
        k: the minimum cell count.
    """
    time = np.asarray(time, np.float64)
    if not active(k) or len(time) == 0:
        return time
    grid = np.asarray(grid, np.float64)
    event = np.asarray(event).astype(bool)
    bins = np.searchsorted(grid, time, side="left")  # len(grid): past the last grid point
    inside = bins < len(grid)
    deaths = np.bincount(bins[inside & event], minlength=len(grid))
    censorings = np.bincount(bins[inside & ~event], minlength=len(grid))
    end = merge_runs(np.stack([deaths, censorings]).astype(np.float64), k)
    return np.where(inside, grid[end[np.minimum(bins, len(grid) - 1)]], time)
