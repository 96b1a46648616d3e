"""The Bayesian network's structure: candidate parents, hill climbing at a node, the consensus DAG.

* **Clinical rules** (:func:`forbidden`): nothing points into a *root* (the demographics, age and
  sex: nothing in the table causes them), and the outcome (time, event) has no children among the
  features (a covariate measured at diagnosis is not caused by the later follow-up); time and event
  may point either way between themselves. Synthetic rows are so drawn features first, outcome last.
* **Candidate parents** (:func:`candidate_edges`): pgmpy's hill climbing scores every allowed
  family on every step, so its cost grows with the candidate edges (``shared/docs/
  synthetic_tuning_facts.md`` §1, T2). From the nodes' summed pairwise state counts the manager
  computes each pair's mutual information; a pair is a candidate when either variable is among the
  other's ``k`` partners of highest mutual information; both directions are allowed unless a
  clinical rule forbids one.
* **Local structure** (:func:`learn_structure`): pgmpy 1.1.2's ``HillClimbSearch`` with the BIC
  score for discrete data (``'bic-d'``; Schwarz 1978), the candidate edges as its search space and
  ``max_indegree``; the node sends its DAG's edges only.
* **Consensus** (:func:`consensus_dag`): edge support = the patients-weighted share of nodes whose
  DAG has the edge; a pair of variables is joined when its support in either direction exceeds
  one half (a weighted majority of patients), oriented the way more support points (ties: from
  the lower variable index); a variable with more than ``max_indegree`` parents keeps the best
  supported ones; while a directed cycle remains, its least-supported edge is removed (ties: the
  first in (parent, child) index order).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from fedjax_rhd.models.bn_discretise import EVENT, TIME


def pair_counts(codes: np.ndarray, states: np.ndarray) -> np.ndarray:
    """A node's i64[V, V, S, S] joint state counts of every pair (S = the most states; i < j filled)."""
    n_vars = codes.shape[1]
    s = int(states.max())
    out = np.zeros((n_vars, n_vars, s, s), np.int64)
    for i in range(n_vars):
        for j in range(i + 1, n_vars):
            flat = np.bincount(codes[:, i] * s + codes[:, j], minlength=s * s)
            out[i, j] = flat.reshape(s, s)
    return out


def mutual_information(pairs: np.ndarray) -> np.ndarray:
    """f64[V, V] symmetric mutual information (nats) of every pair from summed pair counts."""
    n_vars = pairs.shape[0]
    mi = np.zeros((n_vars, n_vars))
    for i in range(n_vars):
        for j in range(i + 1, n_vars):
            joint = pairs[i, j].astype(np.float64)
            total = joint.sum()
            if total == 0:
                continue
            p = joint / total
            outer = p.sum(1, keepdims=True) * p.sum(0, keepdims=True)
            nz = p > 0
            mi[i, j] = mi[j, i] = float(np.sum(p[nz] * np.log(p[nz] / outer[nz])))
    return mi


def forbidden(names: Sequence[str], roots: Sequence[str]) -> np.ndarray:
    """bool[V, V]: ``[i, j]`` True when the edge i -> j breaks a clinical rule (module docstring)."""
    names = list(names)
    out = np.zeros((len(names), len(names)), bool)
    for j, child in enumerate(names):
        out[:, j] |= child in roots
    outcomes = [k for k, n in enumerate(names) if n in (TIME, EVENT)]
    features = [k for k, n in enumerate(names) if n not in (TIME, EVENT)]
    out[np.ix_(outcomes, features)] = True
    np.fill_diagonal(out, True)
    return out


def candidate_edges(mi: np.ndarray, k: int, banned: np.ndarray) -> np.ndarray:
    """bool[V, V] allowed edges: pairs where either is among the other's top-``k`` MI partners.

    Ties in mutual information go to the lower variable index (a stable sort), so the set is
    the same on every run.
    """
    n_vars = mi.shape[0]
    pair = np.zeros((n_vars, n_vars), bool)
    for i in range(n_vars):
        scores = mi[i].copy()
        scores[i] = -np.inf
        top = np.argsort(-scores, kind="stable")[: min(k, n_vars - 1)]
        pair[i, top] = True
    pair |= pair.T
    return pair & ~banned


def learn_structure(
    codes: np.ndarray,
    states: np.ndarray,
    names: Sequence[str],
    allowed: np.ndarray,
    *,
    max_indegree: int,
    max_iter: int,
) -> np.ndarray:
    """i8[V, V] adjacency (``[i, j]``: i -> j) of pgmpy's BIC hill climbing on one node's states.

    Columns are ``pd.Categorical`` with every agreed state (pgmpy otherwise treats integers as
    numeric and picks a Gaussian score), so all nodes score the same state spaces. Their names
    hash by variable index (:class:`_Name`): pgmpy iterates its candidate operations over a Python
    ``set`` and keeps the first of equally scored ones (BIC scores a -> b and b -> a alike), and a
    set of plain strings is ordered by the process's hash seed, so the DAG would differ between
    processes (a Flower node, a rerun). Integer names would hash alike too, but pandas reads a list
    of integers as level numbers when pgmpy unstacks several parents.
    """
    import pandas as pd  # here, not at import: only a Bayesian-network run needs pandas
    from pgmpy.causal_discovery import ExpertKnowledge, HillClimbSearch

    n_vars = len(names)
    adjacency = np.zeros((n_vars, n_vars), np.int8)
    edges = [(int(i), int(j)) for i, j in zip(*np.nonzero(allowed), strict=True)]
    if not edges or codes.shape[0] == 0:  # an empty search space would mean "no restriction" to pgmpy
        return adjacency
    logging.getLogger("pgmpy").setLevel(logging.WARNING)  # not a line per fit on the inferred dtypes
    labels = [_Name(f"v{j}", j) for j in range(n_vars)]
    edges = [(labels[i], labels[j]) for i, j in edges]
    columns = [pd.Categorical(codes[:, j], categories=list(range(int(states[j])))) for j in range(n_vars)]
    frame = pd.DataFrame(dict(zip(labels, columns, strict=True)))
    search = HillClimbSearch(
        scoring_method="bic-d", max_indegree=max_indegree, return_type="dag", max_iter=max_iter,
        expert_knowledge=ExpertKnowledge(search_space=edges), show_progress=False,
    ).fit(frame)  # fmt: skip
    index = {label: j for j, label in enumerate(labels)}
    for parent, child in search.causal_graph_.edges():
        adjacency[index[parent], index[child]] = 1
    return adjacency


class _Name(str):
    """A variable's column name whose hash is its index, the same in every process."""

    index: int

    def __new__(cls, text: str, index: int) -> _Name:
        name = super().__new__(cls, text)
        name.index = index
        return name

    def __hash__(self) -> int:
        return self.index

    def __eq__(self, other: object) -> bool:
        return str.__eq__(self, other)


def consensus_dag(
    adjacencies: np.ndarray, weights: np.ndarray, max_indegree: int
) -> tuple[np.ndarray, np.ndarray]:
    """The manager's consensus of the nodes' DAGs (rule: module docstring).

    Args:
        adjacencies: [K, V, V] each node's DAG (``[k, i, j]`` = 1: i -> j).
        weights: [K] the nodes' training patients.
        max_indegree: most parents a variable keeps.

    Returns:
        (i8[V, V] the consensus DAG, f64[V, V] each directed edge's support in [0, 1]).
    """
    w = np.asarray(weights, np.float64)
    support = np.tensordot(w / w.sum(), np.asarray(adjacencies, np.float64), axes=1)
    n_vars = support.shape[0]
    upper = np.triu(np.ones((n_vars, n_vars), bool), 1)
    joined = (support + support.T > 0.5) & upper  # strictly more than half of the patients
    forward = support >= support.T  # ties: from the lower index (the upper triangle's i -> j)
    dag = np.zeros((n_vars, n_vars), np.int8)
    for i, j in zip(*np.nonzero(joined), strict=True):
        if forward[i, j]:
            dag[i, j] = 1
        else:
            dag[j, i] = 1
    for j in range(n_vars):
        parents = np.flatnonzero(dag[:, j])
        if len(parents) > max_indegree:
            ranked = sorted(parents, key=lambda i, j=j: (-support[i, j], i))
            dag[ranked[max_indegree:], j] = 0
    import networkx as nx  # here, not at import: only a Bayesian-network run needs it

    graph = nx.DiGraph([(int(i), int(j)) for i, j in zip(*np.nonzero(dag), strict=True)])
    while True:
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            break
        i, j = min(((a, b) for a, b in cycle), key=lambda e: (support[e], e))
        graph.remove_edge(i, j)
        dag[i, j] = 0
    return dag, support


def shd(a: np.ndarray, b: np.ndarray) -> int:
    """Structural Hamming distance: variable pairs whose edge is missing, extra or reversed (each 1)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    n_vars = a.shape[0]
    count = 0
    for i in range(n_vars):
        for j in range(i + 1, n_vars):
            count += (a[i, j], a[j, i]) != (b[i, j], b[j, i])
    return count


def shd_of_edges(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> int:
    """:func:`shd` of two ``[[parent, child], ...]`` lists (e.g. two runs' ``results.json`` edges)."""
    names = sorted({v for edge in [*a, *b] for v in edge})
    index = {n: i for i, n in enumerate(names)}

    def matrix(edges: Sequence[Sequence[str]]) -> np.ndarray:
        m = np.zeros((len(names), len(names)), bool)
        for parent, child in edges:
            m[index[parent], index[child]] = True
        return m

    return shd(matrix(a), matrix(b))


def edge_list(adjacency: np.ndarray, names: Sequence[str]) -> list[list[str]]:
    """``[[parent, child], ...]`` in index order (what results.json records)."""
    return [[names[i], names[j]] for i, j in zip(*np.nonzero(adjacency), strict=True)]
