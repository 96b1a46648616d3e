"""``bn_two_step`` through the simulator backend: the agreed bins are the pooled ones, the summed
family counts of the consensus DAG are the pooled counts (checked against pgmpy's own counting),
and the sampled table is in the guide's schema with every value inside its bin's outer edges."""

from __future__ import annotations

import jax
import numpy as np
import pandas as pd

from fedjax_rhd.federation.bn_protocol import fit_network
from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.models import BNConfig
from fedjax_rhd.models import bn_discretise as disc
from fedjax_rhd.models.bn_params import concentration, draw_cpds, parents_of
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from fedjax_rhd.typing import NodeData


def _pooled_train(data) -> NodeData:
    parts = [jax.tree.map(lambda a, k=k: np.asarray(a)[k], data.train) for k in range(data.num_nodes)]
    return NodeData(*(np.concatenate(leaves) for leaves in zip(*parts, strict=True)))


def test_two_step_counts_are_the_pooled_counts_and_samples_stay_in_bins(data3, mds_guide):
    config = BNConfig(candidates=2, max_iter=5, hierarchy=()).for_guide(data3.guide)
    spec = AlgorithmSpec("bn_two_step", "bn", config, data3.num_features)
    backend = make_backend("simulator", data3, spec)
    max_time = max(float(r["max_time"]) for r in backend.node_statistic("max_time", {}))
    fit = fit_network(backend, config, None, max_time)
    backend.close()
    var = config.variables()
    pooled = _pooled_train(data3)
    # the bins agreed from the nodes' histograms are those of the pooled histogram
    low, high = disc.grid_range(var, config.grid_sd, max_time)
    margins = disc.node_margins(pooled, var, low, high, config.grid_cells)
    ref = disc.agree_bins(
        margins["histogram"],
        margins["missing"],
        var,
        low,
        high,
        bins=config.bins,
        tail_count=config.tail_count,
    )
    for a, b in zip(fit.bins.to_arrays().values(), ref.to_arrays().values(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert fit.node_dags.shape == (3, len(var.names), len(var.names)) and fit.dag.sum() > 0
    # round 2: the summed counts are pgmpy's state counts of the pooled rows, family by family
    from pgmpy.utils.tabular import get_state_counts

    codes = disc.codes(pooled, var, fit.bins)
    frame = pd.DataFrame(
        {n: pd.Categorical(codes[:, j], categories=range(fit.states[j])) for j, n in enumerate(var.names)}
    )
    state_names = {n: list(range(fit.states[j])) for j, n in enumerate(var.names)}
    for j, name in enumerate(var.names):
        parents = [var.names[i] for i in parents_of(fit.dag, j)]  # increasing index: the counts' order
        want = get_state_counts(frame, state_names, name, parents).to_numpy()
        np.testing.assert_array_equal(fit.counts[j], want, err_msg=name)
    # samples: the guide's schema, no impossible value, continuous values inside the outer bin edges
    generator = {
        "network": {
            "adjacency": fit.dag,
            "cpds": draw_cpds(concentration(fit.counts, config.ess), np.random.default_rng(0)),
            "states": fit.states,
        },
        "bins": fit.bins,
        "scaling": {
            "center": data3.preprocessor.center,
            "scale": data3.preprocessor.scale,
            "max_time": max_time,
        },
    }
    synthetic = build_model(spec).sample(generator, jax.random.key(0), 500)
    assert synthetic.columns == ["patient_id", *mds_guide.feature_names, "time", "event"]
    assert impossible_values(synthetic, mds_guide)["total"] == 0 and synthetic["time"].min() > 0
    for j, c in enumerate(config.schema):
        if c.kind != "continuous":
            continue
        lower, upper = disc.bin_bounds(fit.bins, j)
        encoded = synthetic[c.name].drop_nulls().to_numpy()
        encoded = (np.log1p(encoded) if c.log else encoded) - data3.preprocessor.center[c.start]
        z = encoded / data3.preprocessor.scale[c.start]
        inside = (z >= lower[0] - 1e-9) & (z <= upper[-1] + 1e-9)
        clipped = (synthetic[c.name].drop_nulls().to_numpy() == c.low) | (
            synthetic[c.name].drop_nulls().to_numpy() == c.high
        )
        assert np.all(inside | clipped), c.name
