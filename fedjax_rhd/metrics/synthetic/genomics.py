"""Genomic utility: mutation frequencies and pairwise co-occurrence / mutual exclusivity.

MDS biology lives in which genes are mutated together (SF3B1 rarely with SRSF2: the splicing
factors are mutually exclusive; TET2 with SRSF2 often). A useful synthetic cohort reproduces the
frequency of each gene and the significant gene pairs with their direction. Each pair is tested
on the rows observing both genes with Fisher's exact test (two-sided) on the 2 x 2 table;
p-values are corrected over all tested pairs by Benjamini & Hochberg (1995, JRSS B 57:289-300)
at FDR ``q``; a pair's sign is that of ``n11 * n00 - n10 * n01`` (+ co-occurrence, - mutual
exclusivity), as in the MDS co-mutation maps of Papaemmanuil et al. (2013, Blood 122:3616-27).
"""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
from scipy import special

from fedjax_rhd.metrics.synthetic._columns import GENOMIC_GROUPS, continuous, features_in
from harmonize.guide import Guide


def _genes(guide: Guide) -> list[str]:
    return [f.name for f in features_in(guide, GENOMIC_GROUPS) if f.kind == "binary"]


def gene_frequencies(real: pl.DataFrame, synthetic: pl.DataFrame, guide: Guide) -> dict[str, object]:
    """Mutation frequency of each genomic binary feature among the rows observing it.

    Returns per gene ``{"real", "synthetic"}`` and the mean and largest absolute difference.
    """
    per_gene, diffs = {}, []
    for g in _genes(guide):
        xr, xs = continuous(real, g), continuous(synthetic, g)
        fr = float(np.nanmean(xr)) if np.isfinite(xr).any() else float("nan")
        fs = float(np.nanmean(xs)) if np.isfinite(xs).any() else float("nan")
        per_gene[g] = {"real": fr, "synthetic": fs}
        if np.isfinite(fr) and np.isfinite(fs):
            diffs.append(abs(fr - fs))
    return {
        "genes": per_gene,
        "mean_abs_diff": float(np.mean(diffs)) if diffs else float("nan"),
        "max_abs_diff": float(np.max(diffs)) if diffs else float("nan"),
    }


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (step-up, monotone, capped at 1)."""
    p = np.asarray(p, float)
    n = p.size
    if n == 0:
        return p
    order = np.argsort(p)
    adj = p[order] * n / np.arange(1, n + 1)
    adj = np.minimum.accumulate(adj[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(adj, 1.0)
    return out


def fisher_exact_two_sided(n11: np.ndarray, n10: np.ndarray, n01: np.ndarray, n00: np.ndarray) -> np.ndarray:
    """Two-sided Fisher exact p-values of many 2 x 2 tables at once.

    Under fixed margins ``n11`` is hypergeometric; the p-value sums the probabilities of every
    table no more likely than the observed one (relative tolerance 1e-7, as
    ``scipy.stats.fisher_exact``, which this equals).
    """
    n11, n10, n01, n00 = (np.asarray(v, dtype=np.int64) for v in (n11, n10, n01, n00))
    r1, c1, n = n11 + n10, n11 + n01, n11 + n10 + n01 + n00
    lo = np.maximum(0, r1 + c1 - n)
    hi = np.minimum(r1, c1)
    k = lo[:, None] + np.arange(int((hi - lo).max(initial=0)) + 1)[None, :]
    valid = k <= hi[:, None]
    k = np.where(valid, k, lo[:, None])

    def log_pmf(x: np.ndarray) -> np.ndarray:
        r1_, c1_, n_ = (v[:, None] if x.ndim == 2 else v for v in (r1, c1, n))
        return (
            special.gammaln(c1_ + 1)
            - special.gammaln(x + 1)
            - special.gammaln(c1_ - x + 1)
            + special.gammaln(n_ - c1_ + 1)
            - special.gammaln(r1_ - x + 1)
            - special.gammaln(n_ - c1_ - r1_ + x + 1)
            - special.gammaln(n_ + 1)
            + special.gammaln(r1_ + 1)
            + special.gammaln(n_ - r1_ + 1)
        )

    pk = np.exp(log_pmf(k)) * valid
    p_obs = np.exp(log_pmf(n11))
    p = np.where(pk <= p_obs[:, None] * (1 + 1e-7), pk, 0.0).sum(axis=1)
    return np.minimum(p, 1.0)


def co_mutation_pairs(
    table: pl.DataFrame, genes: list[str], *, q: float = 0.05
) -> dict[tuple[str, str], int]:
    """The significant gene pairs of one table and their sign (+1 co-occurrence, -1 exclusivity).

    Fisher's exact test per pair on rows observing both, Benjamini-Hochberg over the pairs.
    """
    pairs = list(itertools.combinations(genes, 2))
    if not pairs:
        return {}
    x = np.column_stack([continuous(table, g) for g in genes])
    seen = np.isfinite(x).astype(np.int64)
    mut = (np.nan_to_num(x) > 0.5).astype(np.int64)
    wild = seen - mut
    # All pairs' 2 x 2 counts (rows observing both genes) as four matrix products.
    ia, ib = (np.array(v) for v in zip(*[(genes.index(a), genes.index(b)) for a, b in pairs], strict=True))
    n11, n10 = (mut.T @ mut)[ia, ib], (mut.T @ wild)[ia, ib]
    n01, n00 = (wild.T @ mut)[ia, ib], (wild.T @ wild)[ia, ib]
    signs = np.sign(n11 * n00 - n10 * n01).astype(int)
    adj = benjamini_hochberg(fisher_exact_two_sided(n11, n10, n01, n00))
    return {pair: s for pair, s, pa in zip(pairs, signs, adj, strict=True) if pa < q and s != 0}


def co_mutation_agreement(
    real: pl.DataFrame, synthetic: pl.DataFrame, guide: Guide, *, q: float = 0.05, min_carriers: int = 5
) -> dict[str, object]:
    """Do the synthetic rows show the real rows' significant co-mutation pairs, with the same sign?

    Genes with fewer than ``min_carriers`` mutated real rows are left out (no pair of theirs can
    be significant; testing them only dilutes the correction).

    Returns:
        counts of significant pairs in each table, ``shared_same_sign``, ``sign_flips``,
        ``recall`` (shared / real), ``precision`` (shared / synthetic) and ``jaccard``
        (shared / union of the two signed sets); empty sets give recall / precision 1.
    """
    genes = [g for g in _genes(guide) if np.nansum(continuous(real, g)) >= min_carriers]
    sig_r = co_mutation_pairs(real, genes, q=q)
    sig_s = co_mutation_pairs(synthetic, genes, q=q)
    shared = sum(1 for p, s in sig_r.items() if sig_s.get(p) == s)
    flips = sum(1 for p, s in sig_r.items() if p in sig_s and sig_s[p] != s)
    union = len(sig_r) + len(sig_s) - shared
    return {
        "q": q,
        "correction": "benjamini-hochberg",
        "genes_tested": len(genes),
        "significant_real": len(sig_r),
        "significant_synthetic": len(sig_s),
        "shared_same_sign": shared,
        "sign_flips": flips,
        "recall": shared / len(sig_r) if sig_r else 1.0,
        "precision": shared / len(sig_s) if sig_s else 1.0,
        "jaccard": shared / union if union else 1.0,
    }
