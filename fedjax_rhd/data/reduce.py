"""Federated reduction of a feature group (e.g. a WSI embedding) to principal components.

A 1,536-dimensional slide embedding on a few hundred patients per node is far wider
than the data can support; the study reduced it before the survival model. Here each
node sends only aggregate statistics of its *training* rows, in two rounds:

1. per column: count of observed values and their sum (float64) -> global means;
2. the number of rows with any observed value in the group and the scatter matrix
   ``Xc^T Xc`` of its mean-centred rows (a missing component is set to the global
   mean, i.e. 0 after centring) -> the pooled covariance.

The manager takes the top-``k`` eigenvectors (Hotelling 1933; the one-shot federated
PCA of Liang Y, et al. NeurIPS 2014 with exact sufficient statistics) and every part,
test set included, is projected with them: the test set never enters a statistic.
A vector missing altogether stays missing. ``k = 0`` drops the group.

A scatter matrix is d x d (1,536^2 floats, 19 MB in float64 per node); it reveals the
node's second moments, not any patient's row.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from fedjax_rhd.data import small_cells
from harmonize.guide import Feature, Guide


class GroupReduction(NamedTuple):
    """What one reduced group became (for results and tests)."""

    group: str
    components: int
    columns: tuple[str, ...]  # the group's original columns
    mean: np.ndarray  # f64[d] federated column means
    basis: np.ndarray  # f64[d, k] eigenvectors, largest eigenvalue first
    eigenvalues: np.ndarray  # f64[k] the kept components' eigenvalues, descending
    n_rows: int  # training rows with any observed value in the group


def group_values(df: pl.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """``df``'s ``columns`` as f64[n, d], NaN where missing, in ``df``'s row order.

    What a node holds of the group and reduces itself under ``backend=flower``.
    """
    # one expression for every column: one per column cost 0.1 s per part of a 1,536-wide group
    return _canonical(df.select(pl.col(list(columns)).cast(pl.Float64).fill_null(np.nan)).to_numpy())


def _canonical(x: np.ndarray) -> np.ndarray:
    # Column-major, as polars hands the group: numpy sums a column-major axis pairwise and a
    # row-major one row by row, and BLAS packs the two layouts differently, so a node that
    # loaded its rows from a file in the other layout would send other bits than the data layer.
    return np.asarray(x, dtype=np.float64, order="F")


def released_group(x: np.ndarray, min_cell_count: int = 0) -> np.ndarray:
    """A node's group values as it releases them under ``privacy.min_cell_count = k`` (``data.small_cells``).

    A column observed in fewer than ``k`` of the node's training rows is treated as missing, and if
    fewer than ``k`` rows then hold any value the whole group is: a column sum, or a scatter matrix,
    over fewer than ``k`` rows would be close to those rows themselves. ``k <= 1`` returns ``x``.
    """
    if not small_cells.active(min_cell_count):
        return x
    x = _canonical(x).copy(order="F")
    x[:, (~np.isnan(x)).sum(axis=0) < min_cell_count] = np.nan
    if (~np.all(np.isnan(x), axis=1)).sum() < min_cell_count:
        x[:] = np.nan
    return x


def node_sums(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round 1 of one node: ``(count observed f64[d], sum f64[d])`` of its training rows ``x`` (f64[n, d])."""
    x = _canonical(x)
    observed = ~np.isnan(x)
    return observed.sum(axis=0).astype(np.float64), np.where(observed, x, 0.0).sum(axis=0)


def merged_mean(sums: Sequence[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The global column means f64[d] from every node's round-1 ``(count, sum)``, nodes in order."""
    count = sum(s[0] for s in sums)
    total = sum(s[1] for s in sums)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


def node_scatter(x: np.ndarray, mean: np.ndarray) -> tuple[int, np.ndarray]:
    """Round 2 of one node: ``(rows with any observed value, scatter f64[d, d])`` of ``x`` around ``mean``."""
    x = _canonical(x)
    any_obs = ~np.all(np.isnan(x), axis=1)
    xc = np.nan_to_num(x[any_obs] - mean, nan=0.0)
    return int(any_obs.sum()), xc.T @ xc


def fit_group_from_statistics(
    sums: Sequence[tuple[np.ndarray, np.ndarray]],
    scatters: Sequence[tuple[int, np.ndarray]],
    columns: Sequence[str],
    group: str,
    k: int,
) -> GroupReduction:
    """The manager's side: the top-``k`` principal axes from the nodes' two rounds of statistics.

    Both the data layer (:func:`fit_group`) and the Flower driver call this, so the fitted
    mean and basis are bit-identical when the nodes send the same statistics.

    Args:
        sums: each node's :func:`node_sums`, nodes in partition order.
        scatters: each node's :func:`node_scatter` around :func:`merged_mean` of ``sums``.
        columns: the group's columns (``d`` of them).
        group: the group's name.
        k: components kept, ``1..d``.

    Returns:
        The fitted reduction.

    Raises:
        ValueError: fewer than 2 training rows have a value in the group.
    """
    mean = merged_mean(sums)
    n = sum(int(s[0]) for s in scatters)
    if n < 2:
        raise ValueError(f"reduce: feature group {group!r} has {n} training rows with values; need >= 2")
    cov = sum(np.asarray(s[1], dtype=np.float64) for s in scatters) / (n - 1)
    # Only the top k pairs (LAPACK's subset driver): the full decomposition of a 1,536 x 1,536
    # covariance cost seconds per run, every run of a sweep; the kept axes are the same.
    d = cov.shape[0]
    import scipy.linalg  # lazy: scipy costs ~0.1 s of every run's start-up

    eigenvalues, vectors = scipy.linalg.eigh(cov, subset_by_index=[d - k, d - 1])
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = eigenvalues[order], vectors[:, order]
    # Eigenvectors have no sign; fix it (largest-magnitude loading positive) so runs agree.
    signs = np.sign(vectors[np.argmax(np.abs(vectors), axis=0), np.arange(vectors.shape[1])])
    return GroupReduction(group, k, tuple(columns), mean, vectors * signs, eigenvalues, n)


def fit_group(
    parts: Sequence[pl.DataFrame], columns: Sequence[str], group: str, k: int, min_cell_count: int = 0
) -> GroupReduction:
    """Federated PCA of ``columns`` from the nodes' training parts (statistics only; each node's values
    as :func:`released_group` releases them)."""
    values = [released_group(group_values(p, columns), min_cell_count) for p in parts]
    sums = [node_sums(x) for x in values]
    mean = merged_mean(sums)
    return fit_group_from_statistics(sums, [node_scatter(x, mean) for x in values], columns, group, k)


def project(x: np.ndarray, mean: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Component scores f64[n, k] of rows ``x`` (f64[n, d]); NaN for a row with no value in the group.

    A missing value counts as the federated mean (0 after centring), as in :func:`node_scatter`.
    Each row's scores are the same bits whichever rows it is projected with.
    """
    x = _canonical(x)
    basis = np.asarray(basis, dtype=np.float64, order="F")  # one layout, however it travelled
    centred = np.nan_to_num(x - mean, nan=0.0)
    # Row by row, each the same vector-matrix product: BLAS sums a block of rows in another order
    # than one row, so with one matrix product a row's scores would depend on which rows share its
    # batch, and a node projecting its own test rows would not match the whole test set projected
    # at once (measured: 1e-15 apart). 860 x 1,536 x 16 takes ~15 ms this way.
    scores = np.empty((x.shape[0], basis.shape[1]))
    for i in range(x.shape[0]):
        scores[i] = np.ascontiguousarray(centred[i]) @ basis
    scores[np.all(np.isnan(x), axis=1)] = np.nan
    return scores


def transform(df: pl.DataFrame, red: GroupReduction) -> pl.DataFrame:
    """Replace the group's columns of ``df`` by its ``k`` component scores (null if all missing)."""
    scores = project(group_values(df, red.columns), red.mean, red.basis)
    new = [
        pl.Series(name, scores[:, j], dtype=pl.Float64, nan_to_null=True)
        for j, name in enumerate(component_names(red.group, red.components))
    ]
    return df.drop(red.columns).with_columns(new)


def component_names(group: str, k: int) -> tuple[str, ...]:
    return tuple(f"{group}_pc{j:02d}" for j in range(1, k + 1))


def reduced_guide(guide: Guide, red: GroupReduction) -> Guide:
    """The guide with the group's features replaced by its components (at the group's place)."""
    members = [f for f in guide.features if f.group == red.group]
    sd = np.sqrt(np.maximum(red.eigenvalues[: red.components], 1e-12))
    components = [
        Feature(
            name=name,
            kind="continuous",
            group=red.group,
            unit="1",
            valid_range=(-20.0 * float(s), 20.0 * float(s)),
        )
        for name, s in zip(component_names(red.group, red.components), sd, strict=True)
    ]
    first = guide.features.index(members[0])
    kept = [f for f in guide.features if f.group != red.group]
    features = (*kept[:first], *components, *kept[first:])
    return dataclasses.replace(guide, features=tuple(features))


def reduce_groups(
    train: Sequence[pl.DataFrame],
    others: Sequence[pl.DataFrame],
    guide: Guide,
    reductions: Sequence[tuple[str, int]],
    min_cell_count: int = 0,
) -> tuple[list[pl.DataFrame], list[pl.DataFrame], Guide, list[GroupReduction]]:
    """Fit every reduction on the nodes' training parts and apply it to all parts.

    Args:
        train: each node's training rows (the only rows statistics come from).
        others: further tables to transform (validation parts, the test set).
        guide: the guide the tables follow.
        reductions: ``(group, k)`` pairs; ``k = 0`` drops the group.
        min_cell_count: ``privacy.min_cell_count`` (:func:`released_group`); 0: exact.

    Returns:
        ``(train, others, guide, fitted reductions)`` after every reduction.

    Raises:
        ValueError: an unknown group, a negative ``k`` or ``k`` above the group's width.
    """
    train, others = list(train), list(others)
    fitted: list[GroupReduction] = []
    for group, k in reductions:
        columns = [f.name for f in guide.features if f.group == group]
        if not columns:
            raise ValueError(f"reduce: guide {guide.use_case!r} has no features in group {group!r}")
        if any(f.kind != "continuous" for f in guide.features if f.group == group):
            raise ValueError(f"reduce: group {group!r} of guide {guide.use_case!r} is not all continuous")
        if not 0 <= k <= len(columns):
            raise ValueError(
                f"reduce: {group!r} has {len(columns)} columns; components must be 0..{len(columns)}, got {k}"
            )
        red = (
            fit_group(train, columns, group, k, min_cell_count)
            if k
            else GroupReduction(group, 0, tuple(columns), np.zeros(0), np.zeros((0, 0)), np.zeros(0), 0)
        )
        if k:
            train, others = [transform(p, red) for p in train], [transform(p, red) for p in others]
            guide = reduced_guide(guide, red)
        else:
            train, others = [p.drop(columns) for p in train], [p.drop(columns) for p in others]
            guide = dataclasses.replace(guide, features=tuple(f for f in guide.features if f.group != group))
        fitted.append(red)
    return train, others, guide, fitted
