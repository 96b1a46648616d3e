"""The Bayesian network's parameters: family counts, their Dirichlet posterior, and ancestral sampling.

Each variable's conditional distribution given its parents is one categorical per parent
configuration (a CPD column). With the BDeu prior (Heckerman, Geiger & Chickering 1995;
equivalent sample size ``ess``: α = ess / (r · q) per cell, r states, q parent configurations)
the posterior of a column is Dirichlet(counts + α). A node sends its family counts for the
shared DAG; the manager sums them and adds the prior **once**, so the federated posterior is the
pooled one exactly, given the same states everywhere (``shared/docs/synthetic_tuning_facts.md`` T3).

Counts follow pgmpy's ``TabularCPD`` layout: f64[r, q], parent configurations in C order over the
parents in increasing variable index (the last parent varies fastest).

A synthetic set uses **one posterior draw** of every column (:func:`draw_cpds`), so the parameter
uncertainty of small families reaches the synthetic data; Dirichlet draws are normalised Gamma
draws, taken on the log scale (log Γ(α) = log Γ(α + 1) + log U / α, Marsaglia & Tsang 2000) because
Gamma(α) with α ≈ 1e-3 underflows to 0 in float64 about half the time.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def parents_of(adjacency: np.ndarray, j: int) -> np.ndarray:
    """i64 the parents of variable j in increasing index."""
    return np.flatnonzero(np.asarray(adjacency)[:, j])


def parent_config(codes: np.ndarray, parents: np.ndarray, states: np.ndarray) -> np.ndarray:
    """i64[n] each row's parent configuration (C order; 0 when there are no parents)."""
    if len(parents) == 0:
        return np.zeros(codes.shape[0], np.int64)
    return np.ravel_multi_index(tuple(codes[:, p] for p in parents), tuple(int(states[p]) for p in parents))


def family_counts(codes: np.ndarray, states: np.ndarray, adjacency: np.ndarray) -> list[np.ndarray]:
    """A node's i64[r_j, q_j] counts of every variable's family under ``adjacency``."""
    out = []
    for j in range(codes.shape[1]):
        parents = parents_of(adjacency, j)
        q = int(np.prod([states[p] for p in parents])) if len(parents) else 1
        cfg = parent_config(codes, parents, states)
        flat = np.bincount(codes[:, j] * q + cfg, minlength=int(states[j]) * q)
        out.append(flat.reshape(int(states[j]), q).astype(np.int64))
    return out


def sum_counts(per_node: Sequence[Sequence[np.ndarray]]) -> list[np.ndarray]:
    """The manager's element-wise sum of the nodes' family counts."""
    return [np.sum([node[j] for node in per_node], axis=0) for j in range(len(per_node[0]))]


def concentration(counts: Sequence[np.ndarray], ess: float) -> list[np.ndarray]:
    """f64[r, q] Dirichlet posterior concentrations: counts plus the BDeu prior, added once."""
    return [c + ess / c.size for c in (np.asarray(c, np.float64) for c in counts)]


def posterior_mean(conc: Sequence[np.ndarray]) -> list[np.ndarray]:
    """f64[r, q] the posterior mean CPDs (pgmpy's BDeu estimate)."""
    return [c / c.sum(axis=0, keepdims=True) for c in conc]


def draw_cpds(conc: Sequence[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """One Dirichlet draw of every CPD column (log-scale Gamma draws; module docstring)."""
    out = []
    for alpha in conc:
        log_g = np.log(rng.standard_gamma(alpha + 1.0)) + np.log(rng.random(alpha.shape)) / alpha
        log_g -= log_g.max(axis=0, keepdims=True)
        g = np.exp(log_g)
        out.append(g / g.sum(axis=0, keepdims=True))
    return out


def log_likelihood(
    codes: np.ndarray, adjacency: np.ndarray, cpds: Sequence[np.ndarray], states: np.ndarray
) -> np.ndarray:
    """f64[n] each row's log probability under the network: the sum of its families' log CPD entries."""
    out = np.zeros(codes.shape[0])
    for j, cpd in enumerate(cpds):
        cfg = parent_config(codes, parents_of(adjacency, j), states)
        out += np.log(np.asarray(cpd, np.float64)[codes[:, j], cfg])
    return out


def topological_order(adjacency: np.ndarray) -> list[int]:
    """Variables parents-first (ties: lower index first), as ancestral sampling visits them."""
    import networkx as nx  # here, not at import: only a Bayesian-network run needs it

    graph = nx.DiGraph()
    graph.add_nodes_from(range(adjacency.shape[0]))
    graph.add_edges_from((int(i), int(j)) for i, j in zip(*np.nonzero(adjacency), strict=True))
    return list(nx.lexicographical_topological_sort(graph))


def ancestral_sample(
    adjacency: np.ndarray, cpds: Sequence[np.ndarray], states: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """i64[n, V] states drawn parents first, each from its CPD column (inverse CDF)."""
    codes = np.zeros((n, adjacency.shape[0]), np.int64)
    for j in topological_order(adjacency):
        cfg = parent_config(codes, parents_of(adjacency, j), states)
        cdf = np.cumsum(cpds[j], axis=0)[:, cfg]  # [r, n]
        u = rng.random(n) * cdf[-1]
        codes[:, j] = np.minimum(np.sum(u[None, :] >= cdf, axis=0), int(states[j]) - 1)
    return codes
