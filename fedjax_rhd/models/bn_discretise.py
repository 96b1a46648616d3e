"""The Bayesian network's variables: every guide feature, survival time and event as discrete states.

A discrete Bayesian network needs one finite state set per variable, *the same at every node*
(otherwise summed family counts are not the pooled ones; ``shared/docs/synthetic_tuning_facts.md``
T3a). The states come from a federated agreement, never from pooled rows:

1. every node counts its training values of each continuous variable on a **shared grid**
   (``grid_cells`` equal cells; continuous features on their standardised encoded scale from
   ``-grid_sd`` to ``+grid_sd``, time on ``log1p(time)`` from 0 to ``log1p(max follow-up)``;
   values outside fall in the end cells) and its missing values per variable (:func:`node_margins`);
2. the manager sums the histograms and cuts each variable at the cell boundaries nearest its
   pooled quantiles ``1/B, ..., (B-1)/B`` (:func:`agree_bins`; ties merge bins). The outer edges
   sit where ``tail_count`` patients are reached from either end, so no released edge marks fewer
   than ``tail_count`` patients' values;
3. a variable gets a ``NA`` state (its last) exactly when some node holds a missing value of it.

States: a continuous variable's bins in increasing order; a binary feature 0, 1; a categorical
feature its guide levels in order; the event 0, 1; then ``NA`` where present. Sampling back
(:func:`values_in_bins`): a bin's value is drawn **uniformly within the bin on the grid's scale**
(standardised, ``log1p`` for the guide's log features, ``log1p`` for time), then mapped back by
``models.tabular.decode_table``; ``NA`` writes null. Values below the lower outer edge (or above
the upper) were counted in the first (last) bin, so synthetic values stay inside the outer edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fedjax_rhd.models.tabular import ColumnSpec
from fedjax_rhd.typing import NodeData

TIME, EVENT = "time", "event"


class Variables(NamedTuple):
    """The network's variables in order: the guide's features, then time and event (hashable)."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]  # continuous | binary | categorical | time | event
    starts: tuple[int, ...]  # first encoded column (-1 for time and event)
    widths: tuple[int, ...]  # encoded columns (categorical: its levels)


class Bins(NamedTuple):
    """The agreed discretisation, as the manager broadcasts it (arrays: the wire format).

    Attributes:
        low, high: f64[V] the grid's range per variable (on its grid scale; unused for discrete ones).
        cells: the grid's number of cells (one for every variable).
        cuts: i64[V, M] per variable, the grid cells after which a new bin starts (ascending), padded
            with ``cells`` (never reached); a value in cell c is in bin ``#{cuts < c}`` (:func:`codes`).
        edge_low, edge_high: i64[V] the outer edges as cell indices: the lower edge is cell
            ``edge_low``'s lower boundary, the upper edge cell ``edge_high``'s upper boundary.
        has_na: bool[V] whether the variable has a ``NA`` state.
    """

    low: np.ndarray
    high: np.ndarray
    cells: int
    cuts: np.ndarray
    edge_low: np.ndarray
    edge_high: np.ndarray
    has_na: np.ndarray

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The wire form (a node statistic's inputs)."""
        return {
            "grid_low": self.low, "grid_high": self.high, "grid_cells": np.asarray(self.cells, np.int64),
            "cuts": self.cuts, "edge_low": self.edge_low, "edge_high": self.edge_high,
            "has_na": self.has_na,
        }  # fmt: skip

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Bins:
        """Inverse of :meth:`to_arrays`."""
        return cls(
            np.asarray(a["grid_low"], np.float64), np.asarray(a["grid_high"], np.float64),
            int(a["grid_cells"]), np.asarray(a["cuts"], np.int64), np.asarray(a["edge_low"], np.int64),
            np.asarray(a["edge_high"], np.int64), np.asarray(a["has_na"], bool),
        )  # fmt: skip


def variables(schema: Sequence[ColumnSpec]) -> Variables:
    """The guide's features in schema order, then ``time`` and ``event``."""
    return Variables(
        tuple(c.name for c in schema) + (TIME, EVENT),
        tuple(c.kind for c in schema) + (TIME, EVENT),
        tuple(c.start for c in schema) + (-1, -1),
        tuple(c.width for c in schema) + (1, 1),
    )


def is_binned(kind: str) -> bool:
    """Whether a variable of ``kind`` is discretised on the grid (continuous features and time)."""
    return kind in ("continuous", TIME)


def grid_range(var: Variables, grid_sd: float, max_time: float) -> tuple[np.ndarray, np.ndarray]:
    """f64[V] low and high of the shared grid (standardised features: ±grid_sd; time: log1p)."""
    low = np.zeros(len(var.names))
    high = np.ones(len(var.names))
    for j, kind in enumerate(var.kinds):
        if kind == "continuous":
            low[j], high[j] = -grid_sd, grid_sd
        elif kind == TIME:
            high[j] = np.log1p(max(max_time, 1e-12))
    return low, high


def _real(node: NodeData) -> np.ndarray:
    return np.asarray(node.weight) > 0


def raw_columns(node: NodeData, var: Variables) -> tuple[np.ndarray, np.ndarray]:
    """f64[n, V] each variable on its grid scale (discrete: its level index) and bool[n, V] observed.

    Only the node's real rows (padding has weight 0). Categorical blocks give the hot level.
    """
    real = _real(node)
    x = np.asarray(node.x, np.float64)[real]
    obs = np.asarray(node.observed, bool)[real]
    n = x.shape[0]
    values = np.zeros((n, len(var.names)))
    present = np.ones((n, len(var.names)), bool)
    for j, (kind, start, width) in enumerate(zip(var.kinds, var.starts, var.widths, strict=True)):
        if kind == TIME:
            values[:, j] = np.log1p(np.asarray(node.time, np.float64)[real])
        elif kind == EVENT:
            values[:, j] = np.asarray(node.event, np.float64)[real]
        elif kind == "categorical":
            values[:, j] = np.argmax(x[:, start : start + width], axis=1)
            present[:, j] = obs[:, start]
        elif kind == "binary":
            values[:, j] = x[:, start] >= 0.5
            present[:, j] = obs[:, start]
        else:
            values[:, j] = x[:, start]
            present[:, j] = obs[:, start]
    return values, present


def grid_cell(values: np.ndarray, low: np.ndarray, high: np.ndarray, cells: int) -> np.ndarray:
    """i64 the grid cell of each value (out-of-range values in the end cells)."""
    with np.errstate(invalid="ignore"):
        cell = np.floor((values - low) / (high - low) * cells)
    return np.clip(np.nan_to_num(cell, nan=0.0), 0, cells - 1).astype(np.int64)


def node_margins(
    node: NodeData, var: Variables, low: np.ndarray, high: np.ndarray, cells: int
) -> dict[str, np.ndarray]:
    """A node's round-0 statistic: i64[V, cells] grid histograms (binned variables) and i64[V] missing."""
    values, present = raw_columns(node, var)
    hist = np.zeros((len(var.names), cells), np.int64)
    for j, kind in enumerate(var.kinds):
        if is_binned(kind):
            cell = grid_cell(values[present[:, j], j], low[j], high[j], cells)
            hist[j] = np.bincount(cell, minlength=cells)
    return {"histogram": hist, "missing": np.sum(~present, axis=0).astype(np.int64)}


def cut_cells(histogram: np.ndarray, bins: int, tail_count: int) -> tuple[np.ndarray, int, int]:
    """The quantile cuts of one pooled grid histogram, and its outer edges as cell indices.

    Bin b (0-based) holds the cells ``(cut[b-1], cut[b]]``: cut b is the first cell whose
    cumulative count reaches ``(b + 1) · N / bins``. The lower outer edge is the first cell at which
    the count from below reaches ``tail_count`` (the upper: from above); cuts outside
    ``[edge_low, edge_high)`` and repeated cuts (ties) are dropped.

    Returns:
        (i64[m] ascending cut cells, edge_low, edge_high); an empty histogram gives no cuts and the full grid.
    """
    cells = len(histogram)
    total = int(histogram.sum())
    if total == 0:
        return np.zeros(0, np.int64), 0, cells - 1
    cum = np.cumsum(histogram)
    tail = min(max(tail_count, 1), total)
    edge_low = int(np.searchsorted(cum, tail, side="left"))
    edge_high = int(cells - 1 - np.searchsorted(np.cumsum(histogram[::-1]), tail, side="left"))
    edge_high = max(edge_high, edge_low)
    targets = np.arange(1, bins) * total / bins
    cuts = np.unique(np.searchsorted(cum, targets, side="left"))
    cuts = cuts[(cuts >= edge_low) & (cuts < edge_high)]
    return cuts.astype(np.int64), edge_low, edge_high


def agree_bins(
    histogram: np.ndarray,
    missing: np.ndarray,
    var: Variables,
    low: np.ndarray,
    high: np.ndarray,
    *,
    bins: int,
    tail_count: int,
) -> Bins:
    """The manager's discretisation from the nodes' *summed* histograms and missing counts."""
    cells = histogram.shape[1]
    per_var = [
        cut_cells(histogram[j], bins, tail_count) if is_binned(k) else (np.zeros(0, np.int64), 0, cells - 1)
        for j, k in enumerate(var.kinds)
    ]
    width = max([1, *(len(c) for c, _, _ in per_var)])
    cuts = np.full((len(var.names), width), cells, np.int64)
    for j, (c, _, _) in enumerate(per_var):
        cuts[j, : len(c)] = c
    return Bins(
        low, high, cells, cuts,
        np.array([e for _, e, _ in per_var], np.int64), np.array([e for _, _, e in per_var], np.int64),
        np.asarray(missing) > 0,
    )  # fmt: skip


def n_states(var: Variables, bins: Bins) -> np.ndarray:
    """i64[V] states per variable (bins or levels, plus ``NA`` where present)."""
    out = []
    for j, (kind, width) in enumerate(zip(var.kinds, var.widths, strict=True)):
        if is_binned(kind):
            r = int(np.sum(bins.cuts[j] < bins.cells)) + 1
        elif kind == "categorical":
            r = width
        else:
            r = 2
        out.append(r + int(bins.has_na[j]))
    return np.asarray(out, np.int64)


def codes(node: NodeData, var: Variables, bins: Bins) -> np.ndarray:
    """i64[n, V] each real row's state per variable (``NA``: the last state).

    Raises:
        ValueError: a missing value of a variable without a ``NA`` state (the agreed states come from
            these rows' own missing counts, so it means the bins belong to other rows).
    """
    out, unstated = codes_and_unstated(node, var, bins)
    if unstated.any():
        j = int(np.flatnonzero(unstated.any(axis=0))[0])
        raise ValueError(f"variable {var.names[j]!r} has missing values but no NA state was agreed")
    return out


def codes_and_unstated(node: NodeData, var: Variables, bins: Bins) -> tuple[np.ndarray, np.ndarray]:
    """:func:`codes`, and bool[n, V] where a value is missing but its variable has no ``NA`` state.

    Rows that were not part of the agreement (validation rows) may hold such values; their code is
    meaningless and the caller leaves the row out, counting it.
    """
    values, present = raw_columns(node, var)
    out = np.zeros(values.shape, np.int64)
    states = n_states(var, bins)
    for j, kind in enumerate(var.kinds):
        if is_binned(kind):
            cell = grid_cell(values[:, j], bins.low[j], bins.high[j], bins.cells)
            # bin = number of cuts strictly below the cell: cells (cut[b-1], cut[b]] share bin b
            out[:, j] = np.searchsorted(bins.cuts[j], cell, side="left")
        else:
            out[:, j] = values[:, j].astype(np.int64)
        if bins.has_na[j]:
            out[~present[:, j], j] = states[j] - 1
    return np.clip(out, 0, states - 1), ~present & ~bins.has_na[None, :]


def bin_bounds(bins: Bins, j: int) -> tuple[np.ndarray, np.ndarray]:
    """f64[B] lower and upper bounds of binned variable j's bins on its grid scale."""
    cuts = bins.cuts[j][bins.cuts[j] < bins.cells]
    width = (bins.high[j] - bins.low[j]) / bins.cells
    # cut c closes its bin at cell c's upper boundary; outer edges: edge_low's lower, edge_high's upper
    inner = bins.low[j] + (cuts + 1) * width
    lower = np.concatenate([[bins.low[j] + bins.edge_low[j] * width], inner])
    upper = np.concatenate([inner, [bins.low[j] + (bins.edge_high[j] + 1) * width]])
    return lower, upper


def bin_edges(bins: Bins, j: int) -> np.ndarray:
    """f64[B + 1] binned variable j's bin edges on its grid scale."""
    lower, upper = bin_bounds(bins, j)
    return np.concatenate([lower, upper[-1:]])


def values_in_bins(codes_: np.ndarray, var: Variables, bins: Bins, rng: np.random.Generator) -> np.ndarray:
    """f64[n, V] values for sampled states: uniform within a bin (grid scale), level index otherwise.

    ``NA`` gives NaN (the caller writes null).
    """
    out = np.asarray(codes_, np.float64).copy()
    states = n_states(var, bins)
    for j, kind in enumerate(var.kinds):
        na = bins.has_na[j] & (codes_[:, j] == states[j] - 1)
        if is_binned(kind):
            lower, upper = bin_bounds(bins, j)
            b = np.minimum(codes_[:, j], len(lower) - 1)
            out[:, j] = lower[b] + rng.random(len(b)) * (upper[b] - lower[b])
        out[na, j] = np.nan
    return out
