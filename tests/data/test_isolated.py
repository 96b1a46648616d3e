"""``strategy=local`` is node k alone: its own preprocessing, and the test set as node k sees it.

Hand checks: each node's centre, scale and imputation value are recomputed here with numpy from
that node's own training rows alone; in the ``worst`` scenario a node's view of the test set has
the layer it never measured unobserved, and a model that reads only that layer cannot rank the
test patients (Harrell's C exactly 0.5), while the same model fed the other nodes' values can.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest

from fedjax_rhd.data.federated import SplitSpec, build_federated_data, pack_rows
from fedjax_rhd.data.preprocess import HISTOGRAM_BINS, column_ranges, encode
from fedjax_rhd.data.scenario import ScenarioSpec
from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.federation.simulator import stacked_risks
from fedjax_rhd.metrics.concordance import concordance_index
from fedjax_rhd.models import CoxPHConfig
from fedjax_rhd.results import preprocessing_block
from fedjax_rhd.strategies import AlgorithmSpec

THREE = SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), seed=5)
# node 2 (rank 2) never measured the gene panel; no extra missingness, so the layer is the only gap
NO_GENES_AT_2 = ScenarioSpec(name="worst", missing_groups={"2": ("genomic",)})


@pytest.fixture(scope="module")
def alone(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, THREE, isolated=True)


@pytest.fixture(scope="module")
def shared(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, THREE)


@pytest.fixture(scope="module")
def worst(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, THREE, scenario=NO_GENES_AT_2, isolated=True)


def _test_encoded(table: pl.DataFrame, data) -> tuple[np.ndarray, np.ndarray]:
    """``data``'s test rows of ``table`` encoded (before any preprocessing), in the test set's order."""
    ids = {pid: i for i, pid in enumerate(data.test_patient_ids)}
    df = table.filter(pl.col("patient_id").is_in(list(ids)))
    df = df.with_columns(pl.col("patient_id").replace_strict(ids, return_dtype=pl.Int64).alias("_at"))
    return encode(df.sort("_at"), data.guide)


def _continuous(guide) -> np.ndarray:
    return np.concatenate([np.full(f.width, f.kind == "continuous") for f in guide.features])


def test_each_nodes_preprocessing_is_fitted_on_its_own_rows_alone(alone, shared, small_cohort, mds_guide):
    continuous = _continuous(mds_guide)
    ranges = column_ranges(mds_guide)
    assert alone.isolated and not shared.isolated
    for k in range(alone.num_nodes):
        rows = alone.encoded[k][0]  # node k's training rows, encoded, nobody else's
        prep = alone.node_preprocessors[k]
        for j in range(len(prep.columns)):
            v = rows.values[rows.observed[:, j], j]
            if continuous[j]:
                assert prep.center[j] == pytest.approx(v.mean(), rel=1e-12, abs=1e-12)
                assert prep.scale[j] == pytest.approx(v.std(ddof=1), rel=1e-12)
                width = (ranges[j, 1] - ranges[j, 0]) / HISTOGRAM_BINS
                # the histogram median: between the two middle values, to a bin of the shared grid
                middle = np.sort(v)[[(len(v) - 1) // 2, len(v) // 2]]
                assert middle[0] - 2 * width <= prep.fill[j] <= middle[1] + 2 * width
            else:  # one-hot and binary: not standardised, imputed with the node's own majority
                assert (prep.center[j], prep.scale[j]) == (0.0, 1.0)
                assert prep.fill[j] == float((v == 1).sum() > (v == 0).sum())
        # the node's packed rows are its own encoding: ((value or own fill) - own mean) / own sd
        n = alone.n_train[k]
        order = np.argsort(-rows.time, kind="stable")
        filled = np.where(rows.observed, rows.values, prep.fill)[order]
        np.testing.assert_allclose(alone.train.x[k, :n], (filled - prep.center) / prep.scale, atol=1e-5)
        np.testing.assert_array_equal(
            alone.val.x[k], pack_rows(alone.encoded[k][1], prep, alone.val.x.shape[1]).x
        )
        # ... and not the federation's: the merged statistics move every node's rows
        assert np.abs(alone.train.x[k, :n] - shared.train.x[k, :n]).max() > 1e-2
        # the view of the test set is the node's too (no layer missing here: nothing masked)
        view = alone.test_view(k)
        np.testing.assert_array_equal(view.observed, shared.test.observed)
        np.testing.assert_array_equal(view.time, shared.test.time)
        np.testing.assert_allclose(view.x, prep.transform(*_test_encoded(small_cohort[0], shared)), atol=0)
    # the federation's fit is still made and recorded (results.json preprocessing), unchanged
    for field in ("center", "scale", "fill"):
        np.testing.assert_array_equal(getattr(alone.preprocessor, field), getattr(shared.preprocessor, field))
    block = preprocessing_block(alone)
    assert [n["name"] for n in block["nodes"]] == list(alone.node_names)
    assert block["nodes"][2]["center"] == alone.node_preprocessors[2].center.tolist()
    assert "nodes" not in preprocessing_block(shared)


def test_other_strategies_keep_the_federations_preprocessing(shared, small_cohort, mds_guide):
    assert shared.test_views is None and shared.test_view(1) is shared.test
    df, _ = small_cohort
    # centralized pools the nodes: one node, nothing to isolate (the flag is ignored)
    pooled = build_federated_data(df, mds_guide, THREE, pooled=True, isolated=True)
    assert not pooled.isolated
    np.testing.assert_array_equal(
        pooled.train.x, build_federated_data(df, mds_guide, THREE, pooled=True).train.x
    )


def test_a_node_without_a_layer_sees_the_test_set_without_it(worst, small_cohort, mds_guide):
    genomic = np.concatenate([np.full(f.width, f.group == "genomic") for f in mds_guide.features])
    assert worst.scenario[1]["missing_groups"] == ["genomic"]
    np.testing.assert_array_equal(worst.node_unseen[1], genomic)
    assert not worst.node_unseen[0].any() and not worst.node_unseen[2].any()
    assert worst.test.observed[:, genomic].any()  # the test rows themselves hold gene values
    view = worst.test_view(1)
    prep = worst.node_preprocessors[1]
    assert not view.observed[:, genomic].any()
    # the unseen columns read the node's own imputation value, as in every one of its training rows;
    # no gene value was observed there, so that value is its centre: input 0 (``isolated.alone``)
    np.testing.assert_array_equal(prep.fill[genomic], prep.center[genomic])
    assert not view.x[:, genomic].any()
    n = worst.n_train[1]
    assert not worst.train.x[1, :n][:, genomic].any()
    # the other columns are the node's own encoding of the real test values
    values, observed = _test_encoded(small_cohort[0], worst)
    np.testing.assert_array_equal(view.observed, observed & ~genomic)
    np.testing.assert_array_equal(view.x, prep.transform(values, observed & ~genomic))
    np.testing.assert_array_equal(worst.test_view(0).observed, observed)


def test_the_isolated_node_is_scored_with_its_missing_layer_missing(worst, mds_guide):
    """A Cox model reading only the gene panel: node 2 never saw one, so it cannot rank anyone
    (C = 0.5, every risk tied); filled from the test rows' (other sites') values it would."""
    genomic = worst.node_unseen[1]
    spec = AlgorithmSpec("local", "coxph", CoxPHConfig(), worst.num_features)
    backend = make_backend("simulator", worst, spec)
    kernel = jnp.asarray(np.where(genomic, 1.0, 0.0), jnp.float32)
    stacked = {"kernel": jnp.broadcast_to(kernel, (worst.num_nodes, worst.num_features))}
    risks = backend.test_risks(stacked)
    t, e = np.asarray(worst.test.time), np.asarray(worst.test.event)
    assert np.ptp(risks[1]) == 0.0 and concordance_index(t, e, risks[1]) == 0.5
    assert concordance_index(t, e, risks[0]) != 0.5  # node 1 measured genes: its view ranks
    # node 2's model fed the test rows' gene values (what the shared encoding would do) ranks too
    leaked = stacked_risks(spec, jax.tree.map(lambda p: p[1:2], stacked), worst.test.x, worst.test.observed)
    assert concordance_index(t, e, np.asarray(leaked[0])) != 0.5
    # a global model has no node's view to read the rows through: refused, not scored wrongly
    with pytest.raises(ValueError, match="one per node"):
        backend.test_risks({"kernel": kernel[None]})


def test_isolated_data_is_bit_for_bit_reproducible(worst, small_cohort, mds_guide):
    df, _ = small_cohort
    again = build_federated_data(df, mds_guide, THREE, scenario=NO_GENES_AT_2, isolated=True)
    for field in ("train", "val", "test", "test_views"):
        for a, b in zip(getattr(worst, field), getattr(again, field), strict=True):
            np.testing.assert_array_equal(a, b, strict=True)
    for a, b in zip(worst.node_preprocessors, again.node_preprocessors, strict=True):
        for field in ("center", "scale", "fill"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), strict=True)
