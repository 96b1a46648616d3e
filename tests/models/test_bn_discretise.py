"""The BN's agreed discretisation: hand-computed cuts, federated = pooled histograms, values in bins."""

from __future__ import annotations

import numpy as np

from fedjax_rhd.models import bn_discretise as disc
from fedjax_rhd.typing import NodeData


def test_cuts_and_outer_edges_by_hand():
    # cum = [2, 2, 5, 6, 10]: the median (5 of 10) is reached in cell 2; 1 patient from either end
    cuts, low, high = disc.cut_cells(np.array([2, 0, 3, 1, 4]), bins=2, tail_count=1)
    assert cuts.tolist() == [2] and (low, high) == (0, 4)
    # tail 2: cum [1, 2, ...] reaches 2 in cell 1; from the top [1, 5, ...] reaches 2 in cell 4
    cuts, low, high = disc.cut_cells(np.array([1, 1, 1, 5, 5, 1]), bins=2, tail_count=2)
    assert (low, high) == (1, 4) and cuts.tolist() == [3]  # 7 of 14 is reached in cell 3
    # ties: every value in one cell leaves one bin
    cuts, low, high = disc.cut_cells(np.array([0, 9, 0]), bins=5, tail_count=1)
    assert cuts.tolist() == [] and (low, high) == (1, 1)


def _node(values: np.ndarray, observed: np.ndarray, time: np.ndarray) -> NodeData:
    n = len(values)
    return NodeData(
        x=values[:, None].astype(np.float32), observed=observed[:, None], time=time.astype(np.float32),
        event=np.ones(n, np.float32), weight=np.ones(n, np.float32), risk_set_end=np.zeros(n, np.int32),
    )  # fmt: skip


def test_federated_histograms_give_the_pooled_quantile_bins():
    rng = np.random.default_rng(0)
    var = disc.Variables(("lab", "time", "event"), ("continuous", "time", "event"), (0, -1, -1), (1, 1, 1))
    parts = [rng.normal(m, 1.0, n) for m, n in ((0.0, 300), (0.5, 120), (-1.0, 40))]
    times = [rng.exponential(3.0, len(p)) + 0.01 for p in parts]
    observed = [rng.random(len(p)) > 0.1 for p in parts]
    low, high = disc.grid_range(var, grid_sd=8.0, max_time=max(t.max() for t in times))
    nodes = [_node(v, o, t) for v, o, t in zip(parts, observed, times, strict=True)]
    margins = [disc.node_margins(nd, var, low, high, 1600) for nd in nodes]
    fed = disc.agree_bins(
        sum(m["histogram"] for m in margins),
        sum(m["missing"] for m in margins),
        var,
        low,
        high,
        bins=5,
        tail_count=5,
    )
    pooled_node = _node(np.concatenate(parts), np.concatenate(observed), np.concatenate(times))
    pooled = disc.node_margins(pooled_node, var, low, high, 1600)
    ref = disc.agree_bins(pooled["histogram"], pooled["missing"], var, low, high, bins=5, tail_count=5)
    for a, b in zip(fed.to_arrays().values(), ref.to_arrays().values(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert fed.has_na.tolist() == [True, False, False]
    # each cut is the pooled quantile to the grid's resolution: b/5 of the observed values lie at or below it
    x = np.concatenate(parts)[np.concatenate(observed)]
    width = 16.0 / 1600
    for b, cut in enumerate(fed.cuts[0][fed.cuts[0] < 1600], start=1):
        upper = -8.0 + (cut + 1) * width
        assert np.mean(x <= upper) >= b / 5 > np.mean(x <= upper - width)
        assert abs(upper - np.quantile(x, b / 5)) <= width + 1e-12
    # the states of every row, re-drawn within their bins, fall back into the same states
    codes = disc.codes(pooled_node, var, fed)
    assert codes[:, 0].max() == disc.n_states(var, fed)[0] - 1  # the NA state is the last
    values = disc.values_in_bins(codes, var, fed, np.random.default_rng(1))
    redrawn = _node(np.nan_to_num(values[:, 0]), ~np.isnan(values[:, 0]), np.expm1(values[:, 1]))
    np.testing.assert_array_equal(disc.codes(redrawn, var, fed)[:, :2], codes[:, :2])
    lower, upper = disc.bin_bounds(fed, 0)
    kept = ~np.isnan(values[:, 0])
    assert np.all(values[kept, 0] >= lower[0]) and np.all(values[kept, 0] <= upper[-1])


def test_the_hierarchy_must_name_network_variables(mds_guide):
    import pytest

    from fedjax_rhd.models import BNConfig

    assert len(BNConfig().for_guide(mds_guide).variables().names) == len(mds_guide.features) + 2
    with pytest.raises(ValueError, match="model.hierarchy names \\['tp53'\\]"):
        BNConfig(hierarchy=("time", "tp53")).for_guide(mds_guide)  # the gene is TP53
