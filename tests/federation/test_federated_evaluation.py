"""Federated evaluation on real centres: each node scores its own test part, the manager adds up sums.

The simulator's ``federated_evaluation`` is checked against what the pure metric functions give on
each centre's test rows, found here from the table's ``centre`` column (not from ``test_node``),
and against the pooled benchmark path where the two must agree exactly (IBS, evaluation times).
"""

from __future__ import annotations

import jax
import numpy as np
import polars as pl
import pytest

from fedjax_rhd.data import SplitSpec, build_federated_data
from fedjax_rhd.data.federated import _test_nodes
from fedjax_rhd.federation.node_tasks import NODE_STATISTICS, NodeRows
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig
from fedjax_rhd.metrics import concordance_index, ipcw
from fedjax_rhd.metrics.concordance import concordance_summary
from fedjax_rhd.metrics.evaluation import GRID_POINTS, federated_evaluation, survival_metrics
from fedjax_rhd.metrics.federated import NodeTestSummary
from fedjax_rhd.models import MODELS, config_for_guide
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from fedjax_rhd.typing import NodeData

SIZES = {"A": 500, "B": 300, "C": 100}  # unequal centres, each with some test rows
NATURAL = SplitSpec(name="natural", fractions=(), natural=True, seed=3)


@pytest.fixture(scope="module")
def centred(mds_guide):
    """A table of four centres (random values in the MDS schema) and its natural split."""
    rng = np.random.default_rng(0)
    n = sum(SIZES.values())
    table = pl.DataFrame(
        {
            "patient_id": [f"p{i:04d}" for i in range(n)],
            "centre": np.repeat(list(SIZES), list(SIZES.values())),
            **{
                f.name: (
                    rng.choice(list(f.levels), n)
                    if f.kind == "categorical"
                    else rng.integers(0, 2, n).astype(float)
                    if f.kind == "binary"
                    else rng.uniform(*f.valid_range, n)
                )
                for f in mds_guide.features
            },
            "time": np.round(rng.exponential(2.0, n), 1) + 0.1,  # rounded: tied times
            "event": rng.integers(0, 2, n).astype(float),
        }
    )
    data = build_federated_data(
        table, mds_guide, SplitSpec(name="natural", fractions=(), natural=True, seed=3)
    )
    return table, data


def _centre_of_test_rows(table: pl.DataFrame, data) -> np.ndarray:
    centre = dict(zip(table["patient_id"], table["centre"], strict=True))
    return np.array([f"centre{centre[p]}" for p in data.test_patient_ids])


def test_natural_split_gives_each_node_its_centres_test_rows(centred, mds_guide):
    table, data = centred
    centre = _centre_of_test_rows(table, data)
    assert data.node_names == ("centreA", "centreB", "centreC")
    np.testing.assert_array_equal(np.asarray(data.node_names)[data.test_node], centre)
    counts = [int(np.sum(centre == name)) for name in data.node_names]
    assert min(counts) > 0 and sum(counts) == len(data.test_patient_ids)
    for k, name in enumerate(data.node_names):
        part = data.node_test(k)  # unpadded, as a Flower node packs it
        rows = centre == name
        assert len(part.weight) == counts[k] and np.all(part.weight == 1)
        for field in ("x", "observed", "time", "event"):  # the global test set's rows, in its order
            np.testing.assert_array_equal(getattr(part, field), np.asarray(getattr(data.test, field))[rows])
        assert np.all(np.diff(part.time) <= 0)  # time-sorted, descending
        # tie-group ends recomputed within the part: the last row with the same time
        last = [np.flatnonzero(part.time == v).max() for v in part.time]
        np.testing.assert_array_equal(part.risk_set_end, last)
    # simulated cohorts and the pooled (centralized) federation: the manager keeps the test set
    three = build_federated_data(table, mds_guide, SplitSpec("three", (0.6, 0.3, 0.1), seed=3))
    pooled = build_federated_data(table, mds_guide, NATURAL, pooled=True)
    assert three.test_node is None and three.node_test(0) is None and pooled.test_node is None
    # a test row whose centre has no training node (or no centre) belongs to no node
    frame = pl.DataFrame({"centre": ["A", "Z", None, "B"]})
    np.testing.assert_array_equal(_test_nodes(frame, ("centreB", "centreA")), [1, -1, -1, 0])


def _spec(data, model: str) -> AlgorithmSpec:
    return AlgorithmSpec(
        "fedavg", model, config_for_guide(MODELS[model].config(), data.guide), data.num_features
    )


def _random_params(spec: AlgorithmSpec):
    # The init's shapes filled with random numbers: an informative-looking model without
    # running (and compiling) the init eagerly, which costs seconds for SAVAE.
    rng = np.random.default_rng(1)
    shapes = jax.eval_shape(build_model(spec).init, jax.random.key(0))
    return jax.tree.map(lambda s: (0.3 * rng.normal(size=s.shape)).astype(s.dtype), shapes)


@pytest.mark.parametrize("model", ["coxph", "savae"])  # Cox baseline vs the model's own curves
def test_simulator_equals_the_metrics_on_each_centres_rows(centred, model):
    table, data = centred
    spec = _spec(data, model)
    backend = SimulatorBackend(SimulatorConfig(), data, spec)
    params = _random_params(spec)
    block = federated_evaluation(spec, backend, params)

    test = data.test
    time, event = np.asarray(test.time, np.float64), np.asarray(test.event)
    # the risks test_predictions.parquet records: the manager's pass over the whole test set
    risk = backend.test_risks(jax.tree.map(lambda p: p[None], params))[0].astype(np.float64)
    centre = _centre_of_test_rows(table, data)
    pairs = np.zeros(3, dtype=np.int64)
    for node, name in zip(block["nodes"], data.node_names, strict=True):
        rows = centre == name
        assert node == {
            "name": name,
            "n_test": int(rows.sum()),
            "n_events": int(event[rows].sum()),
            "c_index": concordance_index(time[rows], event[rows], risk[rows]),  # exactly
        }
        pairs += concordance_summary(time[rows], event[rows], risk[rows])
    assert block["n_test"] == len(time)
    assert block["c_index_test_stratified"] == (pairs[0] + pairs[1] / 2) / pairs[2]
    assert block["c_index_test_stratified"] != concordance_index(time, event, risk)  # pooled pairs differ

    # The shared G, rebuilt here from every training and validation row on the same grid.
    real = [np.asarray(p.weight) > 0 for p in (data.train, data.val)]
    rows_t = np.concatenate(
        [np.asarray(p.time)[m] for p, m in zip((data.train, data.val), real, strict=True)]
    )
    rows_e = np.concatenate(
        [np.asarray(p.event)[m] for p, m in zip((data.train, data.val), real, strict=True)]
    )
    grid = ipcw.time_grid(float(rows_t.max()), GRID_POINTS)
    censoring = ipcw.censoring_from_counts(ipcw.grid_counts(rows_t, rows_e, grid), grid)
    times = np.asarray(block["survival_eval"]["times"])
    tau = block["survival_eval"]["tau"]
    assert tau == times[-1] and times[0] >= time.min() and times[-1] < time.max()
    num = den = 0.0
    for name in data.node_names:
        rows = centre == name
        n, d = ipcw.uno_c_sums(time[rows], event[rows], risk[rows], censoring, tau)
        num, den = num + n, den + d
    assert block["uno_c_test_stratified"] == pytest.approx(num / den, rel=1e-12)

    # Every test row has a node, so the pooled benchmark path must give the same times and IBS.
    pooled = survival_metrics(spec, backend, test, params)
    assert pooled["survival_eval"]["times"] == block["survival_eval"]["times"]
    assert block["ibs_test"] == pytest.approx(pooled["ibs_test"], rel=1e-6)  # float32 curves, own batch


def test_a_node_without_test_rows_sends_the_zero_summary(centred):
    _, data = centred
    spec = _spec(data, "coxph")
    rows = SimulatorBackend(SimulatorConfig(), data, spec).node_rows(0)
    assert rows.test is not None  # the simulator hands each node its own test part
    no_rows = NodeData(*(np.asarray(leaf)[:0] for leaf in rows.test))  # a centre with no test row
    inputs = {"grid": np.linspace(1, 10, 10), "censoring": np.ones(10), "times": np.array([2.0, 3.0, 5.0])}
    for bare in (NodeRows(rows.train, rows.val), NodeRows(rows.train, rows.val, no_rows)):
        assert int(NODE_STATISTICS["test_follow_up"](spec, None, bare, {})["n_test"]) == 0
        arrays = NODE_STATISTICS["test_summary"](spec, None, bare, {**inputs, "tau": np.asarray(5.0)})
        _assert_zero(NodeTestSummary.from_arrays(arrays))


def _assert_zero(out: NodeTestSummary) -> None:
    assert (out.n_test, out.n_events, out.concordant, out.tied, out.comparable) == (0, 0, 0, 0, 0)
    assert out.uno_numerator == out.uno_denominator == 0.0
    for field, size in (("auc_numerator", 3), ("auc_denominator", 3), ("brier_sum", 3), ("km_events", 10)):
        np.testing.assert_array_equal(getattr(out, field), np.zeros(size))
    np.testing.assert_array_equal(out.km_reaching, np.zeros(10))


def test_min_cell_count_coarsens_only_the_test_kaplan_meier_and_the_range(centred):
    """privacy.min_cell_count = k: a centre's test deaths per grid bin are those of its times rounded into
    runs of k (``small_cells.round_times``), its test range runs from the k-th smallest to the k-th
    largest time, and its pair counts and IPCW sums are unchanged; the evaluation still runs."""
    from fedjax_rhd.data import small_cells

    _, data = centred
    spec = _spec(data, "coxph")
    params = build_model(spec).init(jax.random.key(0))
    rows = SimulatorBackend(SimulatorConfig(), data, spec).node_rows(2)  # the smallest centre
    grid = np.linspace(0.2, 8.0, 40)
    inputs = {"grid": grid, "censoring": np.linspace(1.0, 0.5, 40), "times": np.array([1.0, 2.0, 4.0])}
    inputs.update(tau=np.asarray(4.0), cum_hazard=np.linspace(0.01, 1.0, 40))
    exact = NodeTestSummary.from_arrays(NODE_STATISTICS["test_summary"](spec, params, rows, inputs))
    coarse = NodeTestSummary.from_arrays(
        NODE_STATISTICS["test_summary"](spec, params, rows, {**inputs, small_cells.KEY: np.asarray(5)})
    )
    real = np.asarray(rows.test.weight) > 0
    time, event = np.asarray(rows.test.time, np.float64)[real], np.asarray(rows.test.event)[real] > 0
    expected = ipcw.grid_counts(small_cells.round_times(time, event, grid, 5), event, grid)
    np.testing.assert_array_equal(coarse.km_events, expected.events)
    assert not np.array_equal(coarse.km_events, exact.km_events)
    assert np.all((coarse.km_events == 0) | (coarse.km_events >= 5))
    for field in ("n_test", "n_events", "concordant", "comparable", "uno_numerator", "brier_sum"):
        np.testing.assert_array_equal(getattr(coarse, field), getattr(exact, field))
    span = NODE_STATISTICS["test_follow_up"](spec, None, rows, {small_cells.KEY: np.asarray(5)})
    assert float(span["min_time"]) == np.sort(time)[4] and float(span["max_time"]) == np.sort(time)[-5]
