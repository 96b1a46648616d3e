"""The manager half of ``bn_two_step``: a Bayesian network from node statistics, no gradient rounds.

Every step is one ``Backend.node_statistic`` call (``federation.bn_node_tasks``), so the protocol
runs unchanged under the simulator and Flower:

0. *discretisation*: ``bn_margins`` (grid histograms, missing counts) -> agreed bins;
   ``bn_pairs`` (pairwise state counts) -> mutual information -> candidate edges;
1. *structure* (round 1): ``bn_structure``: each node's own BIC hill-climbing DAG (edges only)
   -> the consensus DAG (``models.bn_structure.consensus_dag``);
2. *parameters* (round 2): ``bn_family_counts`` for the consensus DAG -> summed counts -> the
   Dirichlet posterior (``models.bn_params``).

With one node (``centralized``, or a node alone under ``local``) the consensus is that node's DAG.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.models import bn_discretise as disc
from fedjax_rhd.models import bn_structure as st
from fedjax_rhd.models.bn import BNConfig
from fedjax_rhd.models.bn_params import sum_counts


class NetworkFit(NamedTuple):
    """What the protocol leaves at the manager (no row among it).

    Attributes:
        bins: the agreed discretisation.
        states: i64[V] states per variable.
        allowed: bool[V, V] candidate edges (clinical rules applied).
        roots: the root variables the rules used.
        node_dags: i8[K, V, V] each node's own DAG (round 1).
        dag: i8[V, V] the consensus DAG.
        support: f64[V, V] each edge's patients-weighted support among the nodes.
        counts: the summed f64[r_j, q_j] family counts (round 2).
        node_counts: per node, its family counts (the hierarchical diagnostic reads them).
        seconds: wall seconds of the discretisation, structure and counts steps.
    """

    bins: disc.Bins
    states: np.ndarray
    allowed: np.ndarray
    roots: tuple[str, ...]
    node_dags: np.ndarray
    dag: np.ndarray
    support: np.ndarray
    counts: list[np.ndarray]
    node_counts: list[list[np.ndarray]]
    seconds: dict[str, float]


def fit_network(
    backend: Backend, config: BNConfig, nodes: Sequence[int] | None, max_time: float
) -> NetworkFit:
    """Run the protocol over ``nodes`` (None: all of ``backend``'s nodes)."""
    chosen = list(range(len(backend.node_names))) if nodes is None else list(nodes)
    var = config.variables()
    started = time.perf_counter()
    low, high = disc.grid_range(var, config.grid_sd, max_time)
    grid = {"grid_low": low, "grid_high": high, "grid_cells": np.asarray(config.grid_cells, np.int64)}
    margins = backend.node_statistic("bn_margins", grid, nodes=chosen)
    bins = disc.agree_bins(
        np.sum([m["histogram"] for m in margins], axis=0), np.sum([m["missing"] for m in margins], axis=0),
        var, low, high, bins=config.bins, tail_count=config.tail_count,
    )  # fmt: skip
    broadcast = bins.to_arrays()
    pairs = np.sum([r["pairs"] for r in backend.node_statistic("bn_pairs", broadcast, nodes=chosen)], axis=0)
    roots = tuple(r for r in config.roots if r in var.names)
    allowed = st.candidate_edges(
        st.mutual_information(pairs), config.candidates, st.forbidden(var.names, roots)
    )
    t_disc = time.perf_counter()
    replies = backend.node_statistic("bn_structure", {**broadcast, "allowed": allowed}, nodes=chosen)
    node_dags = np.stack([np.asarray(r["adjacency"], np.int8) for r in replies])
    weights = np.asarray([backend.n_train[k] for k in chosen], np.float64)
    dag, support = st.consensus_dag(node_dags, weights, config.max_indegree)
    t_structure = time.perf_counter()
    replies = backend.node_statistic("bn_family_counts", {**broadcast, "adjacency": dag}, nodes=chosen)
    node_counts = [
        [np.asarray(r[f"family_{j:04d}"], np.float64) for j in range(len(var.names))] for r in replies
    ]
    counts = sum_counts(node_counts)
    done = time.perf_counter()
    return NetworkFit(
        bins, disc.n_states(var, bins), allowed, roots, node_dags, dag, support, counts, node_counts,
        {"discretisation": t_disc - started, "structure": t_structure - t_disc, "counts": done - t_structure},
    )  # fmt: skip
