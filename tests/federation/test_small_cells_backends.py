"""privacy.min_cell_count: the simulator and a Flower node release the same coarsened statistics.

No Flower process: a Flower node's handlers (``node_handlers``, what its ClientApp or worker runs)
answer from node folders written by ``write_node_folders`` (driven by the Flower backend's own
``federated_preprocessing`` through ``InProcessNodes``), and the simulator answers from its stacked
arrays; both must give the same bits, and ``k = 5`` must change what they send.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from fedjax_rhd.data import SplitSpec, build_federated_data, small_cells
from fedjax_rhd.data.preprocess import column_ranges
from fedjax_rhd.federation.flower import node_handlers, protocol, wire
from fedjax_rhd.federation.flower.backend import federated_preprocessing, write_node_folders
from fedjax_rhd.federation.flower.records import to_flat
from fedjax_rhd.federation.flower.wire import ARRAYS, CONFIG, Part
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig
from fedjax_rhd.metrics import ipcw
from fedjax_rhd.strategies import build_model
from tests.federation.conftest import spec_of
from tests.federation.flower.test_reduction import InProcessNodes

K = 5


@pytest.fixture(scope="module")
def data_k(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, SplitSpec("three", (0.6, 0.3, 0.1), seed=2), min_cell_count=K)


def test_default_off_leaves_the_fit_identical(data3, data_k):
    assert data3.min_cell_count == 0
    # k = 5 coarsens the medians' histograms (and rare one-hot levels), so the fill differs ...
    assert not np.array_equal(data3.preprocessor.fill, data_k.preprocessor.fill)
    # ... while the means and scales of columns every node observes often are sums over many rows
    np.testing.assert_array_equal(data3.preprocessor.center, data_k.preprocessor.center)


def test_simulator_and_flower_node_release_the_same_coarsened_statistics(data_k, tmp_path):
    spec = spec_of(data_k)
    folders = write_node_folders(tmp_path / "nodes", data_k)
    # preprocessing: the Flower backend's own merge of what the nodes' handlers send (strict check
    # against the data layer's fit inside), then each node packs its rows (query.prepare)
    nodes = InProcessNodes(folders)
    prep = federated_preprocessing(nodes, data_k)
    np.testing.assert_array_equal(prep.fill, data_k.preprocessor.fill)
    for reply in nodes.preprocessing_statistics(column_ranges(data_k.guide), K):  # cells hold 0 or >= k
        assert np.all((reply["histogram"] == 0) | (reply["histogram"] >= K))
    simulator = SimulatorBackend(SimulatorConfig(), data_k, spec)
    params = build_model(spec).init(jax.random.key(0))
    grid = ipcw.time_grid(float(simulator.node_statistic("max_time", {})[0]["max_time"]), 64)
    for name, with_params in [("max_time", False), ("grid_counts", False), ("breslow_counts", True)]:
        ours = simulator.node_statistic(name, {"grid": grid}, params if with_params else None)
        content = {
            "config": Part(CONFIG, {"spec": protocol.spec_to_json(spec), "statistic": name}),
            "inputs": Part(ARRAYS, small_cells.with_min_cell_count({"grid": grid}, K)),
        }
        if with_params:
            content["params"] = Part(ARRAYS, to_flat(params))
        for k, f in enumerate(folders):
            theirs = node_handlers.handle(wire.STATISTIC, f, content)["outputs"].values
            assert theirs.keys() == ours[k].keys()
            for key in theirs:
                np.testing.assert_array_equal(theirs[key], ours[k][key], err_msg=f"{name}.{key} node {k}")
    # and k = 5 changed what the nodes send: the smallest node's deaths per bin, coarsened
    exact = SimulatorBackend(SimulatorConfig(), dataclasses.replace(data_k, min_cell_count=0), spec)
    coarse, plain = (b.node_statistic("grid_counts", {"grid": grid})[2] for b in (simulator, exact))
    assert not np.array_equal(coarse["events"], plain["events"])
    assert coarse["events"].sum() == plain["events"].sum()  # the node's total deaths are unchanged
    assert np.all((coarse["events"] == 0) | (coarse["events"] >= K))
    assert np.count_nonzero((plain["events"] > 0) & (plain["events"] < K)) > 0
