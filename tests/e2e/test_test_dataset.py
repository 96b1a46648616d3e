"""test.dataset: train on one registered dataset, test on another, in one run.

The run must equal training and then scoring: its reported test C-index is recomputed here by
applying the saved final model, with the run's own preprocessing statistics, to the other
dataset's rows (``encode`` -> ``Preprocessor.transform`` -> the model's ``risk`` -> Harrell's C).
"""

from __future__ import annotations

import jax
import numpy as np
import polars as pl
import pytest

from fedjax_rhd.config import run_config
from fedjax_rhd.data import UnusableData, build_federated_data
from fedjax_rhd.data.preprocess import Preprocessor, encode
from fedjax_rhd.io import flatten_params
from fedjax_rhd.metrics import concordance_index
from fedjax_rhd.sources import UseCase, load_registered_dataset, load_use_case
from fedjax_rhd.strategies import build_model
from harmonize.guide import load_guide
from harmonize.identity import DatasetCacheError
from tests.conftest import TINY, compose, run_in_process

pytestmark = pytest.mark.e2e

EXTERNAL = "mds-external"


@pytest.fixture(scope="module")
def external(tiny_data_root):
    """Another registered MDS dataset (150 patients, another data seed) beside TINY's cohort."""
    return load_use_case(
        UseCase(name="mds", n_patients=150, dataset=EXTERNAL), seed_data=7, data_root=tiny_data_root,
        real_data_root=None,
    )  # fmt: skip


def _saved(params_file, like):
    """The saved global parameters in the model's own pytree structure."""
    with np.load(params_file) as archive:
        leaves = [archive[f"global/{key}"] for key in flatten_params(like)]
    return jax.tree.unflatten(jax.tree.structure(like), leaves)


@pytest.mark.slow  # ~25 s: a whole run plus its compilation (the data-level check below is the fast one)
def test_test_dataset_equals_training_then_scoring(tmp_path, tiny_data_root, external):
    overrides = [*TINY, f"test.dataset={EXTERNAL}"]
    results = run_in_process(overrides, tmp_path, tiny_data_root)
    own = load_use_case(UseCase(name="mds", n_patients=600), seed_data=0, data_root=tiny_data_root,
                        real_data_root=None)  # fmt: skip
    # every row of the run's own dataset went to the nodes; the test rows are the other dataset's
    assert sum(n["n_train"] + n["n_val"] for n in results["nodes"]) == own.table.height
    assert results["dataset"]["id"] == own.card["id"]
    assert results["dataset"]["test"] == {
        k: external.card[k] for k in ("id", "name", "n_rows", "n_events", "guide_version")
    }
    assert results["config"]["test"] == {"dataset": EXTERNAL}
    assert results["final"]["test_set"] == "benchmark_holdout"
    predictions = pl.read_parquet(tmp_path / "test_predictions.parquet")
    assert sorted(predictions["patient_id"]) == sorted(external.table["patient_id"])

    # scoring by hand: the final global model, the run's preprocessing, the other dataset's rows
    guide = load_guide("mds")
    config = run_config(compose([*overrides, f"data_root={tiny_data_root}"]))
    prep = Preprocessor(
        columns=tuple(results["preprocessing"]["columns"]),
        **{k: np.asarray(results["preprocessing"][k]) for k in ("center", "scale", "fill")},
    )
    rows = external.table.sort("patient_id")
    values, observed = encode(rows, guide)
    x = prep.transform(values, observed)
    model = build_model(config.algorithm_spec(x.shape[1], guide))
    params = _saved(tmp_path / results["checkpoint"], model.init(jax.random.key(0)))
    risk = np.asarray(model.risk(params, x, observed), dtype=np.float64)
    by_id = dict(zip(predictions["patient_id"], predictions["risk"], strict=True))
    np.testing.assert_allclose([by_id[p] for p in rows["patient_id"]], risk, rtol=1e-5, atol=1e-6)
    c = concordance_index(rows["time"].to_numpy(), rows["event"].to_numpy(), risk)
    assert results["final"]["c_index_test"]["estimate"] == pytest.approx(c, abs=1e-12)


def test_every_own_row_trains_and_the_test_rows_are_the_other_dataset(small_cohort, external, mds_guide):
    """The data layer's half of test.dataset: the nodes hold every row, the test set is the other's."""
    own = small_cohort[0]
    split = run_config(compose(["split=natural", "split.test_fraction=0", f"test.dataset={EXTERNAL}"])).split
    own_table = own.with_columns(pl.Series("centre", np.arange(own.height) % 2).cast(pl.String))
    data = build_federated_data(own_table, mds_guide, split, dataset="own", test_table=external.table)
    assert sum(data.n_train) + sum(data.n_val) == own.height
    assert data.test_node is None  # the other dataset's rows live at no node: the manager keeps them
    # the test set is the other dataset's rows, time-sorted, encoded with the nodes' preprocessing
    rows = external.table.sort("patient_id").sort("time", descending=True, maintain_order=True)
    assert data.test_patient_ids == tuple(rows["patient_id"])
    values, observed = encode(rows, mds_guide)
    np.testing.assert_array_equal(data.test.x, data.preprocessor.transform(values, observed))
    np.testing.assert_array_equal(data.test.event, rows["event"].to_numpy().astype(np.float32))
    alone = build_federated_data(
        own_table, mds_guide, split, dataset="own", test_table=external.table.head(50)
    )
    np.testing.assert_array_equal(
        alone.preprocessor.center, data.preprocessor.center
    )  # test rows fit nothing


def test_test_dataset_refusals(tiny_data_root, external, mds_guide):
    import dataclasses

    with pytest.raises(DatasetCacheError, match="no registered dataset 'nowhere'"):
        load_registered_dataset("nowhere", mds_guide, data_root=tiny_data_root)
    # another schema: the features that differ are named
    feature = mds_guide.features[0]
    renamed = dataclasses.replace(feature, name="age_at_dx")
    other = dataclasses.replace(mds_guide, features=(renamed, *mds_guide.features[1:]))
    with pytest.raises(UnusableData) as err:
        load_registered_dataset(EXTERNAL, other, data_root=tiny_data_root)
    assert f"{feature.name}: not in guide 'mds'" in str(err.value)
    assert f"age_at_dx: not in dataset {EXTERNAL!r}" in str(err.value)
    older = dataclasses.replace(mds_guide, version="0.0.1")
    with pytest.raises(UnusableData, match="version '0.0.1'"):
        load_registered_dataset(EXTERNAL, older, data_root=tiny_data_root)
    # the run's own dataset as its test set: every test row would also train
    own = "mds-sim-n600-seed0"
    with pytest.raises(UnusableData, match="holds the same rows as the training dataset"):
        run_in_process([*TINY, f"test.dataset={own}"], tiny_data_root / "refused", tiny_data_root)
    with pytest.raises(ValueError, match="both name the test rows"):
        run_config(compose(["split=given", "split.column=role", f"test.dataset={EXTERNAL}"]))
