"""Statistical fidelity of a synthetic table: marginals, pairs, association matrices, CSF and GSF.

Pure functions of (real table, synthetic table, guide). Marginals follow SDMetrics' column shapes
(Patki et al. 2016, "The Synthetic Data Vault", IEEE DSAA; ``sdmetrics==0.32.0``): a continuous
feature scores ``1 - KS`` (the two-sample Kolmogorov-Smirnov statistic on the observed values), a
binary or categorical one ``1 - TV`` (the total variation distance between the observed level
frequencies). Pairs follow SDMetrics' column pair trends: ``1 - |r_real - r_syn| / 2`` for two
continuous features (Pearson r on rows observing both), ``1 - TV`` of the joint distribution
otherwise (a continuous feature binned on the real data's 10 equal-width bins, missing as a
level of its own). The clinical and genomic fidelity scores (CSF, GSF) are this project's
definitions after Apellániz et al. (arXiv 2404.08434) and the study's Figure 3; docs/synthetic.md
states them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import numpy as np
import polars as pl
from scipy import stats

from fedjax_rhd.metrics.synthetic._columns import (
    CLINICAL_GROUPS,
    GENOMIC_GROUPS,
    codes,
    continuous,
    features_in,
    frequencies,
    is_discrete,
    labels,
    numeric_matrix,
    vocabulary,
)
from harmonize.guide import Feature, Guide

# SDMetrics' QualityReport defaults from 0.27 on: only pairs whose real |Pearson r| or Cramér's V
# exceed these count in its Column Pair Trends (docs/synthetic.md; synthetic_tuning_facts T5).
SDMETRICS_VERSION = "0.32.0"  # the release these thresholds and the equality tests refer to
SDMETRICS_CORRELATION_THRESHOLD = 0.5
SDMETRICS_ASSOCIATION_THRESHOLD = 0.3
NUM_BINS = 10


def ks_statistic(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic ``sup_x |F_real(x) - F_syn(x)|`` over observed values.

    Equals ``scipy.stats.ks_2samp(...).statistic`` (NaNs dropped first, as SDMetrics does).
    """
    a = np.sort(real[~np.isnan(real)])
    b = np.sort(synthetic[~np.isnan(synthetic)])
    if a.size == 0 or b.size == 0:
        return float("nan")
    # Both empirical CDFs jump only at data points, so the supremum is attained on the pooled sample.
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / a.size
    fb = np.searchsorted(b, grid, side="right") / b.size
    return float(np.max(np.abs(fa - fb)))


def tv_distance(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation distance ``0.5 * sum |p - q|`` between two distributions on the same levels."""
    return float(0.5 * np.abs(np.asarray(p) - np.asarray(q)).sum())


def column_shape(real: pl.DataFrame, synthetic: pl.DataFrame, feature: Feature) -> dict[str, float | str]:
    """One feature's marginal distance: KS (continuous) or TV (discrete), and its score ``1 - distance``."""
    if is_discrete(feature):
        vocab = vocabulary(feature, real, synthetic)
        dist = tv_distance(
            frequencies(labels(real, feature), vocab), frequencies(labels(synthetic, feature), vocab)
        )
        metric = "tv"
    else:
        dist = ks_statistic(continuous(real, feature.name), continuous(synthetic, feature.name))
        metric = "ks"
    return {"metric": metric, "distance": dist, "score": 1.0 - dist}


def column_shapes(
    real: pl.DataFrame, synthetic: pl.DataFrame, guide: Guide, groups: Iterable[str] | None = None
) -> dict[str, dict[str, float | str]]:
    """:func:`column_shape` for every feature (of ``groups``, if given), keyed by name."""
    return {f.name: column_shape(real, synthetic, f) for f in features_in(guide, groups)}


def chi_square(real: pl.DataFrame, synthetic: pl.DataFrame, feature: Feature) -> dict[str, float]:
    """Pearson's chi-square test of homogeneity of one discrete feature's levels, real vs synthetic.

    The 2 x K table of observed counts (levels absent from both tables dropped), without Yates'
    continuity correction; a small p-value says the two samples' level frequencies differ.
    """
    vocab = vocabulary(feature, real, synthetic)
    table = np.array(
        [[np.sum(labels(t, feature) == level) for level in vocab] for t in (real, synthetic)], dtype=float
    )
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return {"statistic": 0.0, "p_value": 1.0, "dof": 0.0}
    res = stats.chi2_contingency(table, correction=False)
    return {"statistic": float(res.statistic), "p_value": float(res.pvalue), "dof": float(res.dof)}


def missingness(real: pl.DataFrame, synthetic: pl.DataFrame, feature: Feature) -> dict[str, float]:
    """Shares of missing values and their agreement ``1 - |share_real - share_syn|``."""
    if is_discrete(feature):
        r = float(np.mean([v is None for v in labels(real, feature)]))
        s = float(np.mean([v is None for v in labels(synthetic, feature)]))
    else:
        r = float(np.isnan(continuous(real, feature.name)).mean())
        s = float(np.isnan(continuous(synthetic, feature.name)).mean())
    return {"real": r, "synthetic": s, "score": 1.0 - abs(r - s)}


def _discrete_codes(real: pl.DataFrame, synthetic: pl.DataFrame, f: Feature) -> tuple[np.ndarray, np.ndarray]:
    """Codes with missing as a level of its own (the last), as SDMetrics' contingency tables keep it."""
    vocab = vocabulary(f, real, synthetic)  # every label of both tables: no code means "unknown"
    out = []
    for t in (real, synthetic):
        c = codes(t, f, vocab)
        out.append(np.where(c < 0, len(vocab) + 1, c))
    return out[0], out[1]


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _pair_inputs(real: pl.DataFrame, synthetic: pl.DataFrame, f: Feature) -> tuple[np.ndarray, np.ndarray]:
    """A feature's real and synthetic columns as pair trends read them: values or level codes."""
    if not is_discrete(f):
        return continuous(real, f.name), continuous(synthetic, f.name)
    return _discrete_codes(real, synthetic, f)


def _binned(real: np.ndarray, synthetic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A continuous feature binned on the real data's equal-width bins; open outer bins; missing apart."""
    observed = real[~np.isnan(real)]
    edges = np.histogram_bin_edges(observed if observed.size else np.zeros(1), bins=NUM_BINS)
    edges[0], edges[-1] = -np.inf, np.inf
    # np.digitize sends NaN past the last edge: a level of its own, as in sdmetrics.utils.discretize_column.
    return np.digitize(real, edges), np.digitize(synthetic, edges)


def _pair_from_arrays(
    d1: bool, x1: tuple[np.ndarray, np.ndarray], d2: bool, x2: tuple[np.ndarray, np.ndarray]
) -> dict[str, float | str]:
    if not d1 and not d2:
        rr, rs = _pearson(x1[0], x2[0]), _pearson(x1[1], x2[1])
        return {"metric": "correlation", "score": 1.0 - abs(rr - rs) / 2.0, "real_r": rr, "synthetic_r": rs}
    ra, sa = x1 if d1 else _binned(*x1)
    rb, sb = x2 if d2 else _binned(*x2)
    width = int(max(rb.max(initial=0), sb.max(initial=0))) + 1
    size = (int(max(ra.max(initial=0), sa.max(initial=0))) + 1) * width
    counts = np.bincount(ra * width + rb, minlength=size)
    ps = np.bincount(sa * width + sb, minlength=size) / sa.size
    table = counts.reshape(-1, width)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    return {
        "metric": "contingency",
        "score": 1.0 - tv_distance(counts / ra.size, ps),
        "real_cramers_v": cramers_v(table),
    }


def cramers_v(table: np.ndarray) -> float:
    """Cramér's V of a contingency table: ``sqrt(chi2 / n / (min(r, c) - 1))``, chi2 without correction.

    Equals ``scipy.stats.contingency.association(table, method="cramer")``; NaN for a table with
    fewer than two non-empty rows or columns (SDMetrics then leaves the pair out of a thresholded score).
    """
    table = np.asarray(table, dtype=np.float64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return float("nan")
    n = table.sum()
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / n / (min(table.shape) - 1)))


def pair_trend(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    f1: Feature,
    f2: Feature,
) -> dict[str, float | str]:
    """One pair's trend similarity (SDMetrics' CorrelationSimilarity or ContingencySimilarity).

    Returns the metric, the score in [0, 1] (NaN when a continuous column is constant), the real
    and synthetic Pearson r (continuous pairs) and the real Cramér's V (other pairs), which the
    report's thresholds compare against.
    """
    return _pair_from_arrays(
        is_discrete(f1), _pair_inputs(real, synthetic, f1), is_discrete(f2), _pair_inputs(real, synthetic, f2)
    )


def pair_details(
    real: pl.DataFrame, synthetic: pl.DataFrame, guide: Guide, groups: Iterable[str] | None = None
) -> dict[str, dict[str, float | str]]:
    """:func:`pair_trend` for every pair of features (of ``groups``), keyed ``"a|b"`` in guide order."""
    feats = features_in(guide, groups)
    # Each column is read once; the pairs then work on arrays (71 features make 2,485 pairs).
    cols = {f.name: _pair_inputs(real, synthetic, f) for f in feats}
    return {
        f"{f1.name}|{f2.name}": _pair_from_arrays(
            is_discrete(f1), cols[f1.name], is_discrete(f2), cols[f2.name]
        )
        for f1, f2 in itertools.combinations(feats, 2)
    }


def pair_trends(
    details: dict[str, dict[str, float | str]],
    *,
    real_correlation_threshold: float = 0.0,
    real_association_threshold: float = 0.0,
    features: Iterable[str] | None = None,
) -> dict[str, object]:
    """Mean pair-trend score over the pairs of :func:`pair_details`, with SDMetrics' thresholds.

    With a threshold above 0 only the pairs whose REAL association exceeds it count (|r| for two
    continuous features, Cramér's V otherwise), as in SDMetrics' QualityReport from 0.27 on (its
    defaults are :data:`SDMETRICS_CORRELATION_THRESHOLD` and :data:`SDMETRICS_ASSOCIATION_THRESHOLD`).

    Args:
        details: per-pair results from :func:`pair_details`.
        real_correlation_threshold: minimum real |r| of a continuous pair (0 = every pair).
        real_association_threshold: minimum real Cramér's V of another pair (0 = every pair).
        features: count only pairs of these features (e.g. one layer's).

    Returns:
        ``{"score", "n_pairs", "n_counted", "thresholds"}``; ``score`` is NaN when no pair counts.
    """
    keep = None if features is None else set(features)
    counted: list[float] = []
    n_pairs = 0
    for key, res in details.items():
        if keep is not None and not set(key.split("|")) <= keep:
            continue
        n_pairs += 1
        if res["metric"] == "correlation":
            ok = real_correlation_threshold <= 0 or abs(res["real_r"]) > real_correlation_threshold
        else:
            ok = real_association_threshold <= 0 or res["real_cramers_v"] > real_association_threshold
        if ok and np.isfinite(res["score"]):
            counted.append(float(res["score"]))
    return {
        "score": float(np.mean(counted)) if counted else float("nan"),
        "n_pairs": n_pairs,
        "n_counted": len(counted),
        "thresholds": {"correlation": real_correlation_threshold, "association": real_association_threshold},
    }


def pairwise_correlation(x: np.ndarray) -> np.ndarray:
    """Pearson correlation matrix of the columns of ``x``, each pair on the rows observing both (NaN)."""
    m = (~np.isnan(x)).astype(np.float64)
    z = np.where(m > 0, x, 0.0)
    n = m.T @ m
    with np.errstate(invalid="ignore", divide="ignore"):
        si = (z.T @ m) / n  # [i, j]: mean of column i over rows observing j
        sii = ((z * z).T @ m) / n
        sij = (z.T @ z) / n
        cov = sij - si * si.T
        var = sii - si * si
        corr = cov / np.sqrt(var * var.T)
    corr[~np.isfinite(corr)] = np.nan
    return corr


def association_difference(
    real: pl.DataFrame, synthetic: pl.DataFrame, guide: Guide, groups: Iterable[str] | None = None
) -> dict[str, float]:
    """Mean and largest absolute difference between the real and synthetic correlation matrices.

    Over the encoded features (categoricals one-hot), upper triangle, pairs defined in both.
    """
    feats = features_in(guide, groups)
    cr, _ = numeric_matrix(real, feats)
    cs, _ = numeric_matrix(synthetic, feats)
    iu = np.triu_indices(cr.shape[1], k=1)
    d = np.abs(pairwise_correlation(cr)[iu] - pairwise_correlation(cs)[iu])
    d = d[np.isfinite(d)]
    if d.size == 0:
        return {"mean_abs_diff": float("nan"), "max_abs_diff": float("nan"), "n_pairs": 0}
    return {"mean_abs_diff": float(d.mean()), "max_abs_diff": float(d.max()), "n_pairs": int(d.size)}


def layer_fidelity(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    guide: Guide,
    groups: Iterable[str],
    details: dict[str, dict[str, float | str]] | None = None,
) -> float:
    """Half the mean column-shape score plus half the pair-trend score (every pair), over a layer.

    This is SDMetrics' quality score (mean of Column Shapes and Column Pair Trends) restricted to
    the layer's features with both pair thresholds at 0. In [0, 1]; 1 for identical tables.
    ``details`` (:func:`pair_details` over a superset of the layer) saves recomputing the pairs.
    """
    groups = tuple(groups)
    names = [f.name for f in features_in(guide, groups)]
    shapes = [v["score"] for v in column_shapes(real, synthetic, guide, groups).values()]
    shapes = [s for s in shapes if np.isfinite(s)]
    if not shapes:
        return float("nan")
    if details is None:
        details = pair_details(real, synthetic, guide, groups)
    pairs = pair_trends(details, features=names)["score"]
    return float(np.mean(shapes)) if not np.isfinite(pairs) else 0.5 * float(np.mean(shapes)) + 0.5 * pairs


def clinical_fidelity_score(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    guide: Guide,
    details: dict[str, dict[str, float | str]] | None = None,
) -> float:
    """CSF: :func:`layer_fidelity` over the clinical and cytogenetic features."""
    return layer_fidelity(real, synthetic, guide, CLINICAL_GROUPS, details)


def genomic_fidelity_score(
    real: pl.DataFrame,
    synthetic: pl.DataFrame,
    guide: Guide,
    details: dict[str, dict[str, float | str]] | None = None,
) -> float:
    """GSF: :func:`layer_fidelity` over the genomic features."""
    return layer_fidelity(real, synthetic, guide, GENOMIC_GROUPS, details)
