"""privacy.min_cell_count: hand-computed coarsening and suppression, exactness when off.

The rules are those of ``fedjax_rhd/data/small_cells.py`` (threshold rule of statistical
disclosure control, Hundepool et al., *Statistical Disclosure Control*, Wiley 2012, ch. 5):
every number below is worked out by hand in the comment beside it.
"""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rhd.data import reduce
from fedjax_rhd.data import small_cells as sc
from fedjax_rhd.data.preprocess import node_histogram, node_moments, node_statistics
from fedjax_rhd.federation import node_tasks
from fedjax_rhd.federation.node_tasks import NodeRows
from fedjax_rhd.metrics import ipcw
from fedjax_rhd.typing import NodeData


def test_runs_close_when_every_channel_holds_zero_or_k():
    # k = 3: [1,1,1] reaches 3 at bin 2; [0,2,0,5] reaches 7 at bin 6
    np.testing.assert_array_equal(sc.merge_runs([1, 1, 1, 0, 2, 0, 5], 3), [2, 2, 2, 6, 6, 6, 6])
    # two channels: bins 0..2 hold (3 deaths, 3 censorings); bin 3 (0, 1) cannot close, so it joins
    np.testing.assert_array_equal(sc.merge_runs([[1, 0, 2, 0], [0, 3, 0, 1]], 3), [3, 3, 3, 3])
    # a remainder below k joins the run before it: [5] then [0,1,0] -> one run of 6
    np.testing.assert_array_equal(sc.merge_runs([5, 0, 1, 0], 3), [3, 3, 3, 3])
    # trailing empty bins are a run of their own
    np.testing.assert_array_equal(sc.merge_runs([3, 0, 0], 3), [0, 2, 2])


def test_pooled_histogram_keeps_totals_and_only_cells_of_k():
    counts = np.array([1, 1, 1, 0, 2, 0, 5])
    pooled = sc.pool_histogram(counts, 3)
    # run [0..2] (3) in its middle bin 1; run [3..6] (7) in bin (3+6)//2 = 4
    np.testing.assert_array_equal(pooled, [0, 3, 0, 0, 7, 0, 0])
    assert pooled.dtype == counts.dtype
    # an axis holding fewer than k in all: one run, only the total leaves (middle bin of 4 -> 1)
    np.testing.assert_array_equal(sc.pool_histogram(np.array([[1.0, 0, 0, 0]]), 3), [[0, 1.0, 0, 0]])
    rng = np.random.default_rng(0)
    many = rng.poisson(0.7, size=(5, 200))
    out = sc.pool_histogram(many, 4)
    np.testing.assert_array_equal(out.sum(axis=1), many.sum(axis=1))
    assert np.all((out == 0) | (out >= 4))


def test_suppression_and_order_statistics():
    table = np.array([[0, 1, 2], [3, 7, 4]])
    np.testing.assert_array_equal(sc.suppress_cells(table, 3), [[0, 0, 0], [3, 7, 4]])
    assert sc.kth_largest(np.array([5.0, 1.0, 9.0, 7.0]), 2) == 7.0
    assert sc.kth_smallest(np.array([5.0, 1.0, 9.0, 7.0]), 3) == 7.0
    assert sc.kth_largest(np.array([5.0]), 2) is None


@pytest.mark.parametrize("k", [0, 1])
def test_k_below_two_changes_nothing(k):
    counts = np.array([[1, 0, 2], [0, 1, 0]])
    assert sc.pool_histogram(counts, k) is counts
    assert sc.suppress_cells(counts, k) is counts
    np.testing.assert_array_equal(sc.merge_runs(counts, k), [0, 1, 2])
    time = np.array([0.5, 1.5])
    assert sc.round_times(time, np.array([True, False]), np.array([1.0, 2.0]), k) is time
    assert sc.with_min_cell_count({"grid": time}, k).keys() == {"grid"}


def test_times_round_up_to_the_end_of_their_run():
    grid = np.array([1.0, 2.0, 3.0])
    time = np.array([0.5, 0.7, 1.5, 1.6, 2.2, 2.5, 2.6, 7.0])
    event = np.array([1, 1, 1, 1, 1, 0, 0, 1], bool)
    # per bin (g_{b-1}, g_b]: deaths [2, 2, 1], censorings [0, 0, 2]; 7.0 is past the grid.
    # k = 2: bin 0 (2, 0) closes; bin 1 (2, 0) closes; bin 2 (1, 2) cannot, joins bin 1: (3, 2).
    rounded = sc.round_times(time, event, grid, 2)
    np.testing.assert_array_equal(rounded, [1.0, 1.0, 3.0, 3.0, 3.0, 3.0, 3.0, 7.0])


def _node(time, event):
    n = len(time)
    return NodeData(
        x=np.zeros((n, 1), np.float32), time=np.asarray(time, np.float32),
        event=np.asarray(event, np.float32), weight=np.ones(n, np.float32),
        observed=np.ones((n, 1), bool), risk_set_end=np.zeros(n, np.int32),
    )  # fmt: skip


def test_node_grid_counts_and_max_time_under_k():
    train = _node([0.5, 0.7, 1.5, 1.6, 2.2], [1, 1, 1, 1, 1])
    val = _node([2.5, 2.6, 7.0], [0, 0, 1])
    rows = NodeRows(train, val)
    grid = np.array([1.0, 2.0, 3.0])
    exact = node_tasks.grid_counts(None, None, rows, {"grid": grid})
    np.testing.assert_array_equal(exact["events"], [2, 2, 1])
    np.testing.assert_array_equal(exact["censored"], [0, 0, 2])
    # the runs are taken over train and val together (the node sends their sum): as above
    coarse = node_tasks.grid_counts(None, None, rows, {"grid": grid, sc.KEY: np.asarray(2)})
    np.testing.assert_array_equal(coarse["events"], [2, 0, 3])
    np.testing.assert_array_equal(coarse["censored"], [0, 0, 2])
    np.testing.assert_array_equal(coarse["reaching"], [8, 6, 6])  # 6 rows reach bin 1 and bin 2
    # and the counts are grid_counts of the rounded times, so the reverse KM stays a KM
    expected = ipcw.grid_counts(np.array([1.0, 1, 3, 3, 3, 3, 3, 7]), np.r_[np.ones(5), 0, 0, 1], grid)
    np.testing.assert_array_equal(coarse["reaching"], expected.reaching)
    assert float(node_tasks.max_time(None, None, rows, {})["max_time"]) == 7.0
    assert float(node_tasks.max_time(None, None, rows, {sc.KEY: np.asarray(3)})["max_time"]) == 2.5
    assert float(node_tasks.max_time(None, None, rows, {sc.KEY: np.asarray(9)})["max_time"]) == 0.0


def test_preprocessing_statistics_under_k():
    ranges = np.array([[0.0, 10.0], [0.0, 1.0], [0.0, 10.0]])
    values = np.array(
        [[1.0, 0, 5], [2.0, 0, 0], [3.0, 0, 0], [9.0, 1, 0], [2.5, 0, 0]]
    )  # col 0: 5 values; col 1: indicator with one 1; col 2: observed in 1 row
    observed = np.ones_like(values, bool)
    observed[1:, 2] = False
    exact_m, exact_h = node_statistics(values, observed, ranges, 0)
    np.testing.assert_array_equal(exact_h, node_histogram(values, observed, ranges))
    for a, b in zip(exact_m, node_moments(values, observed), strict=True):
        np.testing.assert_array_equal(a, b)
    moments, hist = node_statistics(values, observed, ranges, 3)
    # col 2: observed once < 3 -> unobserved: nothing leaves for it
    assert moments.count[2] == 0 and moments.m2[2] == 0 and hist[2].sum() == 0
    # col 1: the single 1 reads as the majority 0: mean 0, all five at bin 0
    assert moments.count[1] == 5 and moments.mean[1] == 0.0 and hist[1, 0] == 5 and hist[1].sum() == 5
    # col 0: moments exact (a sum over 5 rows); histogram bins at 409, 819, 1024, 1228, 3686 of 4096;
    # k = 3 runs: [0..1024] (3) and [1025..4095] (2 joins back -> one run [0..4095] of 5)
    assert moments.mean[0] == pytest.approx(17.5 / 5)
    assert np.count_nonzero(hist[0]) == 1 and hist[0, 4095 // 2] == 5


def test_a_reduced_group_releases_only_columns_and_nodes_of_k():
    nan = np.nan
    x = np.array([[1.0, nan, 3.0], [2.0, nan, nan], [4.0, 5.0, nan]])
    # k = 2: column 1 (one value) and column 2 (one value) are treated as missing; column 0 stays
    released = reduce.released_group(x, 2)
    np.testing.assert_array_equal(np.isnan(released), [[0, 1, 1], [0, 1, 1], [0, 1, 1]])
    np.testing.assert_array_equal(reduce.node_sums(released)[0], [3.0, 0.0, 0.0])
    # k = 4: fewer than 4 rows hold a value: the node sends nothing for the group
    assert reduce.node_scatter(reduce.released_group(x, 4), np.zeros(3))[0] == 0
    assert reduce.released_group(x, 0) is x
