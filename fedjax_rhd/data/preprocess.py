"""Federated preprocessing: encoding, standardisation and median imputation.

Every statistic here is computed per node on that node's training rows and
merged by the manager, so no patient-level value leaves its node and no test
row influences preprocessing (ARCHITECTURE §1.3):

* moments (count observed, mean, M2) in float64, merged with the parallel
  formula of Chan, Golub & LeVeque, "Algorithms for computing the sample
  variance" (1979/1983). Float32 sums of squares lose much of the variance of a
  feature whose mean is large against its spread; Chan's update does not.
* medians from per-node histograms on a shared grid over the guide's valid
  range (summed counts, then linear interpolation inside the median bin).

With ``privacy.min_cell_count = k`` a node releases them through
:func:`node_statistics`, which coarsens small cells first
(``data.small_cells``); ``k = 0`` (the default) releases them exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from fedjax_rhd.data import small_cells
from harmonize.guide import Guide

HISTOGRAM_BINS = 4096  # resolution of the federated median: range / 4096


class Moments(NamedTuple):
    """Per-column sufficient statistics a node sends (float64)."""

    count: np.ndarray  # f64[d] observed values
    mean: np.ndarray  # f64[d]
    m2: np.ndarray  # f64[d] sum of squared deviations from the mean


@dataclasses.dataclass(frozen=True)
class Preprocessor:
    """Fitted, federated preprocessing of the encoded feature matrix.

    Attributes:
        columns: encoded column names (categoricals one-hot, ``name=level``).
        center: f64[d] subtracted before scaling (mean for continuous, 0 otherwise).
        scale: f64[d] divisor (standard deviation for continuous, 1 otherwise).
        fill: f64[d] imputation value in the encoded (pre-standardised) space.
    """

    columns: tuple[str, ...]
    center: np.ndarray
    scale: np.ndarray
    fill: np.ndarray

    def transform(self, values: np.ndarray, observed: np.ndarray) -> np.ndarray:
        """Impute unobserved entries with ``fill`` and standardise; returns f32."""
        filled = np.where(observed, values, self.fill[None, :])
        return ((filled - self.center) / self.scale).astype(np.float32)

    def to_json(self) -> dict[str, list[float] | list[str]]:
        return {
            "columns": list(self.columns),
            "center": self.center.tolist(),
            "scale": self.scale.tolist(),
            "fill": self.fill.tolist(),
        }


def encode(df: pl.DataFrame, guide: Guide) -> tuple[np.ndarray, np.ndarray]:
    """Encode a table in the guide's schema to a float64 matrix and observed mask.

    Continuous features with ``log: true`` become ``log1p(value)``; categoricals
    become one-hot blocks whose every column is unobserved when the value is
    missing. Unknown category labels are an error naming the feature and row.

    The table is read in three polars selections (null masks, numbers, labels), not
    two or three per feature: a run encodes a dozen parts of its table, and per-column
    calls cost more than the arithmetic (milliseconds each on 69 features).
    """
    columns = set(df.columns)
    for feature in guide.features:
        if feature.name not in columns:
            raise KeyError(f"table lacks guide feature {feature.name!r} (guide {guide.path})")
    n = len(df)
    numeric = [f for f in guide.features if f.kind != "categorical"]
    labelled = [f for f in guide.features if f.kind == "categorical"]
    present_all = _columns(df, [pl.col(f.name).is_not_null() for f in guide.features], n, bool)
    as_numbers = [pl.col(f.name).cast(pl.Float64).fill_null(np.nan) for f in numeric]
    numbers = _columns(df, as_numbers, n, np.float64)
    labels_all = _columns(df, [pl.col(f.name).cast(pl.String) for f in labelled], n, object)
    # each feature's first encoded column (categoricals take one per level)
    starts = np.cumsum([0, *(f.width for f in guide.features)])
    values = np.zeros((n, int(starts[-1])))
    observed = np.zeros((n, int(starts[-1])), dtype=bool)
    kinds = np.array([f.kind == "categorical" for f in guide.features], dtype=bool)
    at = starts[:-1][~kinds]  # numeric features: one column each, in guide order
    for j, f in enumerate(numeric):
        if f.log:  # a contiguous column, as a Series gives it: numpy's vectorised loops round alike
            numbers[:, j] = np.log1p(np.ascontiguousarray(numbers[:, j]))
    present = present_all[:, ~kinds]
    values[:, at] = np.where(present, numbers, 0.0)
    observed[:, at] = present
    for j, (i, feature) in enumerate(zip(np.flatnonzero(kinds), labelled, strict=True)):
        labels = labels_all[:, j]
        block = slice(int(starts[i]), int(starts[i + 1]))
        onehot = values[:, block]
        for k, level in enumerate(feature.levels):
            onehot[:, k] = labels == level
        bad = present_all[:, i] & (onehot.sum(axis=1) == 0)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"feature {feature.name!r}, row {row}: label {labels[row]!r} is not one of "
                f"{feature.levels} (guide {guide.path})"
            )
        observed[:, block] = present_all[:, i][:, None]
    return values, observed


def _columns(df: pl.DataFrame, exprs: list[pl.Expr], n: int, dtype: type) -> np.ndarray:
    """``df.select(exprs)`` as an [n, len(exprs)] array (columns contiguous); [n, 0] for no expression."""
    if not exprs:
        return np.empty((n, 0), dtype=dtype)
    out = df.select(exprs).to_numpy(order="fortran")
    return out if out.flags.writeable else out.copy(order="F")  # polars may hand out a read-only view


def node_moments(values: np.ndarray, observed: np.ndarray) -> Moments:
    """One node's (count, mean, M2) per column over observed entries, float64."""
    values = np.asarray(values, dtype=np.float64)
    count = observed.sum(axis=0).astype(np.float64)
    total = np.where(observed, values, 0.0).sum(axis=0)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    dev = np.where(observed, values - mean, 0.0)
    return Moments(count, mean, (dev * dev).sum(axis=0))


def merge_moments(a: Moments, b: Moments) -> Moments:
    """Chan et al.'s pairwise merge: exact in exact arithmetic, stable in float64."""
    count = a.count + b.count
    delta = b.mean - a.mean
    safe = np.where(count > 0, count, 1.0)
    mean = a.mean + delta * b.count / safe
    m2 = a.m2 + b.m2 + delta * delta * a.count * b.count / safe
    return Moments(count, np.where(count > 0, mean, 0.0), m2)


def merge_all_moments(parts: Sequence[Moments]) -> Moments:
    """Every node's moments merged in node order.

    Raises:
        ValueError: no node (the data layer refuses a split without one first, naming the dataset).
    """
    if not parts:
        raise ValueError("merge_all_moments: no node sent moments")
    merged = parts[0]
    for part in parts[1:]:
        merged = merge_moments(merged, part)
    return merged


def column_ranges(guide: Guide) -> np.ndarray:
    """f64[d, 2] value range of every encoded column (log1p applied where declared)."""
    ranges: list[tuple[float, float]] = []
    for feature in guide.features:
        if feature.kind == "continuous":
            lo, hi = feature.valid_range  # type: ignore[misc]
            ranges.append((np.log1p(lo), np.log1p(hi)) if feature.log else (lo, hi))
        else:
            ranges.extend([(0.0, 1.0)] * feature.width)
    return np.asarray(ranges, dtype=np.float64)


def node_histogram(values: np.ndarray, observed: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """f64[d, bins] counts of observed values on the shared per-column grid."""
    d = values.shape[1]
    counts = np.zeros((d, HISTOGRAM_BINS))
    for j in range(d):
        lo, hi = ranges[j]
        v = values[observed[:, j], j]
        idx = np.clip(((v - lo) / (hi - lo) * HISTOGRAM_BINS).astype(np.int64), 0, HISTOGRAM_BINS - 1)
        counts[j] = np.bincount(idx, minlength=HISTOGRAM_BINS)
    return counts


def _indicator_columns(values: np.ndarray, observed: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """bool[d]: columns on [0, 1] whose observed values are all 0 or 1 (one-hot levels, binary features)."""
    unit = (ranges[:, 0] == 0.0) & (ranges[:, 1] == 1.0)
    binary = np.all(~observed | (values == 0.0) | (values == 1.0), axis=0)
    return unit & binary


def node_statistics(
    values: np.ndarray, observed: np.ndarray, ranges: np.ndarray, min_cell_count: int = 0
) -> tuple[Moments, np.ndarray]:
    """What one node releases for federated preprocessing: :func:`node_moments` and :func:`node_histogram`.

    With ``min_cell_count = k >= 2`` (``data.small_cells``) small cells are coarsened on the
    node before anything is computed:

    * a column observed in fewer than ``k`` of the node's rows is released as unobserved (its
      count, mean, M2 and histogram are 0: the node adds nothing to that column's fit);
    * an indicator column (a one-hot level or a binary feature) whose rarer value holds fewer
      than ``k`` rows reads as its commoner value (ties: 0), so neither its mean nor its
      histogram counts the rare rows (the median, which for these columns is the majority
      value, is unchanged unless the rare rows decide the pooled majority);
    * every other column's histogram has its small bins pooled into runs
      (``small_cells.pool_histogram``), so the median is computed from coarsened counts.

    Args:
        values: f64[n, d] encoded training values (anything where unobserved).
        observed: bool[n, d].
        ranges: f64[d, 2] :func:`column_ranges`.
        min_cell_count: ``k``; 0 or 1 releases the exact statistics.
    """
    values, observed = np.asarray(values, np.float64), np.asarray(observed, bool)
    k = int(min_cell_count)
    if not small_cells.active(k):
        return node_moments(values, observed), node_histogram(values, observed, ranges)
    observed = observed & (observed.sum(axis=0) >= k)[None, :]
    indicator = _indicator_columns(values, observed, ranges)
    ones = (observed & (values == 1.0)).sum(axis=0)
    zeros = observed.sum(axis=0) - ones
    rare = indicator & (np.minimum(ones, zeros) > 0) & (np.minimum(ones, zeros) < k)
    majority = (ones > zeros).astype(np.float64)
    values = np.where(rare[None, :] & observed, majority[None, :], values)
    histogram = node_histogram(values, observed, ranges)
    histogram[~indicator] = small_cells.pool_histogram(histogram[~indicator], k)
    return node_moments(values, observed), histogram


def histogram_median(counts: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Median per column from summed histograms, interpolated inside the bin.

    Binary and one-hot columns (range [0, 1]) get an exact 0/1 answer: the
    majority value, which is what median imputation means for them.
    """
    d = counts.shape[0]
    medians = np.zeros(d)
    for j in range(d):
        total = counts[j].sum()
        lo, hi = ranges[j]
        if total == 0:
            medians[j] = (lo + hi) / 2
            continue
        if (lo, hi) == (0.0, 1.0) and counts[j, 1:-1].sum() == 0:
            medians[j] = float(counts[j, -1] > counts[j, 0])
            continue
        cum = np.cumsum(counts[j])
        b = int(np.searchsorted(cum, total / 2))
        before = cum[b - 1] if b > 0 else 0.0
        frac = (total / 2 - before) / counts[j, b]
        width = (hi - lo) / HISTOGRAM_BINS
        medians[j] = lo + (b + frac) * width
    return medians


def fit_federated(
    guide: Guide, node_parts: Sequence[tuple[np.ndarray, np.ndarray]], min_cell_count: int = 0
) -> tuple[Preprocessor, Moments]:
    """Fit preprocessing from per-node statistics only.

    Args:
        guide: the use case's guide (column kinds and valid ranges).
        node_parts: per node, its encoded training ``(values, observed)``. Only
            moments and histograms computed from each part are combined.
        min_cell_count: ``privacy.min_cell_count``: each node's statistics as
            :func:`node_statistics` releases them (0: exact).

    Returns:
        The preprocessor and the merged moments (for reporting and tests).
    """
    ranges = column_ranges(guide)
    released = [node_statistics(v, o, ranges, min_cell_count) for v, o in node_parts]
    return fit_from_statistics(guide, [m for m, _ in released], [h for _, h in released])


def fit_from_statistics(
    guide: Guide, moments: Sequence[Moments], histograms: Sequence[np.ndarray]
) -> tuple[Preprocessor, Moments]:
    """The manager's half of :func:`fit_federated`: merge what each node sent, in node order.

    Args:
        guide: the use case's guide.
        moments: per node, :func:`node_moments` of its encoded training part.
        histograms: per node, :func:`node_histogram` on :func:`column_ranges` of the guide.
    """
    ranges = column_ranges(guide)
    merged = merge_all_moments(list(moments))
    counts = sum(histograms)
    fill = histogram_median(counts, ranges)
    continuous = np.concatenate([np.full(f.width, f.kind == "continuous") for f in guide.features])
    std = np.sqrt(np.divide(merged.m2, merged.count - 1, out=np.ones_like(merged.m2), where=merged.count > 1))
    center = np.where(continuous, merged.mean, 0.0)
    scale = np.where(continuous & (std > 0), std, 1.0)
    prep = Preprocessor(columns=guide.encoded_names, center=center, scale=scale, fill=fill)
    return prep, merged
