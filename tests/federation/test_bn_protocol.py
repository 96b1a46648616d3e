"""``bn_two_step`` through the simulator backend: the agreed bins are the pooled ones, the summed
family counts of a shared DAG are the pooled counts (checked against pgmpy's own counting), and
the sampled table is in the guide's schema with every value inside its bin's outer edges."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd
import pytest

from fedjax_rhd.federation.bn_protocol import fit_network
from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.models import BNConfig
from fedjax_rhd.models import bn_discretise as disc
from fedjax_rhd.models.bn_params import concentration, draw_cpds, family_counts, parents_of, sum_counts
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from fedjax_rhd.typing import NodeData


def _pooled_train(data, part: str = "train") -> NodeData:
    stacked = getattr(data, part)
    parts = [jax.tree.map(lambda a, k=k: np.asarray(a)[k], stacked) for k in range(data.num_nodes)]
    return NodeData(*(np.concatenate(leaves) for leaves in zip(*parts, strict=True)))


def _setup(data, **settings):
    config = BNConfig(hierarchy=(), **settings).for_guide(data.guide)
    spec = AlgorithmSpec("bn_two_step", "bn", config, data.num_features)
    backend = make_backend("simulator", data, spec)
    max_time = max(float(r["max_time"]) for r in backend.node_statistic("max_time", {}))
    return config, spec, backend, max_time


def _pooled_bins(data, config, max_time) -> disc.Bins:
    var = config.variables()
    low, high = disc.grid_range(var, config.grid_sd, max_time)
    margins = disc.node_margins(_pooled_train(data), var, low, high, config.grid_cells)
    return disc.agree_bins(
        margins["histogram"],
        margins["missing"],
        var,
        low,
        high,
        bins=config.bins,
        tail_count=config.tail_count,
    )


def _assert_pooled_counts(data, config, bins, dag, counts):
    """The summed counts are pgmpy's state counts of the pooled rows, family by family."""
    from pgmpy.utils.tabular import get_state_counts

    var = config.variables()
    states = disc.n_states(var, bins)
    codes = disc.codes(_pooled_train(data), var, bins)
    frame = pd.DataFrame(
        {n: pd.Categorical(codes[:, j], categories=range(states[j])) for j, n in enumerate(var.names)}
    )
    state_names = {n: list(range(states[j])) for j, n in enumerate(var.names)}
    for j, name in enumerate(var.names):
        parents = [var.names[i] for i in parents_of(dag, j)]  # increasing index: the counts' order
        want = get_state_counts(frame, state_names, name, parents).to_numpy()
        np.testing.assert_array_equal(counts[j], want, err_msg=name)


def test_federated_bins_and_counts_are_the_pooled_ones_and_samples_stay_in_bins(data3, mds_guide):
    config, spec, backend, max_time = _setup(data3)
    var = config.variables()
    low, high = disc.grid_range(var, config.grid_sd, max_time)
    grid = {"grid_low": low, "grid_high": high, "grid_cells": np.asarray(config.grid_cells)}
    margins = backend.node_statistic("bn_margins", grid)
    bins = disc.agree_bins(
        sum(m["histogram"] for m in margins), sum(m["missing"] for m in margins), var, low, high,
        bins=config.bins, tail_count=config.tail_count,
    )  # fmt: skip
    for a, b in zip(
        bins.to_arrays().values(), _pooled_bins(data3, config, max_time).to_arrays().values(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    # a shared DAG with families of 0 to 3 parents, the outcome last
    index = {n: j for j, n in enumerate(var.names)}
    dag = np.zeros((len(var.names),) * 2, np.int8)
    edges = [
        ("age", "hb"), ("sex_male", "hb"), ("TP53", "TP53multi"), ("complex_karyotype", "ipssr_cyto"),
        ("TP53multi", "time"), ("age", "time"), ("bm_blasts", "time"), ("time", "event"), ("TP53", "event"),
    ]  # fmt: skip
    for parent, child in edges:
        dag[index[parent], index[child]] = 1
    replies = backend.node_statistic("bn_family_counts", {**bins.to_arrays(), "adjacency": dag})
    counts = sum_counts([[r[f"family_{j:04d}"] for j in range(len(var.names))] for r in replies])
    _assert_pooled_counts(data3, config, bins, dag, counts)
    # the nodes' validation log likelihoods add up to pgmpy's log-likelihood score of the pooled
    # validation rows, for the CPDs that maximise it (their own relative frequencies)
    from pgmpy.models import DiscreteBayesianNetwork
    from pgmpy.structure_score import LogLikelihood

    states = disc.n_states(var, bins)
    val_codes = disc.codes(_pooled_train(data3, "val"), var, bins)
    inputs = {**bins.to_arrays(), "adjacency": dag}
    for j, c in enumerate(family_counts(val_codes, states, dag)):
        inputs[f"cpd_{j:04d}"] = np.where(c.sum(0) > 0, c / np.maximum(c.sum(0), 1), 1.0 / c.shape[0])
    replies = backend.node_statistic("bn_log_likelihood", inputs)
    backend.close()
    assert [int(r["n_scored"]) for r in replies] == list(data3.n_val) and all(
        int(r["n_unscored"]) == 0 for r in replies
    )
    frame = pd.DataFrame(
        {n: pd.Categorical(val_codes[:, j], categories=range(states[j])) for j, n in enumerate(var.names)}
    )
    model = DiscreteBayesianNetwork(
        [(var.names[i], var.names[j]) for i, j in zip(*np.nonzero(dag), strict=True)]
    )
    model.add_nodes_from(var.names)
    want = LogLikelihood(
        frame, state_names={n: list(range(states[j])) for j, n in enumerate(var.names)}
    ).score(model)
    assert sum(float(r["log_likelihood"]) for r in replies) == pytest.approx(want, rel=1e-12)
    # samples: the guide's schema, no impossible value, continuous values inside the outer bin edges
    cpds = draw_cpds(concentration(counts, config.ess), np.random.default_rng(0))
    scaling = {"center": data3.preprocessor.center, "scale": data3.preprocessor.scale, "max_time": max_time}
    generator = {
        "network": {"adjacency": dag, "cpds": cpds, "states": states},
        "bins": bins,
        "scaling": scaling,
    }
    synthetic = build_model(spec).sample(generator, jax.random.key(0), 500)
    assert synthetic.columns == ["patient_id", *mds_guide.feature_names, "time", "event"]
    assert impossible_values(synthetic, mds_guide)["total"] == 0 and synthetic["time"].min() > 0
    for j, c in enumerate(config.schema):
        if c.kind != "continuous":
            continue
        lower, upper = disc.bin_bounds(bins, j)
        values = synthetic[c.name].drop_nulls().to_numpy()
        z = (
            (np.log1p(values) if c.log else values) - data3.preprocessor.center[c.start]
        ) / data3.preprocessor.scale[c.start]
        inside = (z >= lower[0] - 1e-9) & (z <= upper[-1] + 1e-9)
        assert np.all(inside | (values == c.low) | (values == c.high)), (
            c.name
        )  # or clipped into the valid range


@pytest.mark.slow
def test_the_whole_protocol_gives_the_pooled_counts_of_its_consensus_dag(data3):
    config, _, backend, max_time = _setup(data3, candidates=2, max_iter=5)
    fit = fit_network(backend, config, None, max_time)
    backend.close()
    assert fit.node_dags.shape[0] == 3 and fit.dag.sum() > 0
    for a, b in zip(
        fit.bins.to_arrays().values(), _pooled_bins(data3, config, max_time).to_arrays().values(), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    _assert_pooled_counts(data3, config, fit.bins, fit.dag, fit.counts)
