"""split=given: each patient's role read from a column, honoured exactly; refusals name what is wrong."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.data import SplitSpec, UnusableData, build_federated_data
from fedjax_rhd.data.given import given_test_rows, with_role_column
from tests.conftest import compose

GIVEN = SplitSpec(name="given", natural=True, fractions=(), test_fraction=0.0, column="role", seed=4)


@pytest.fixture(scope="module")
def benchmark(small_cohort):
    """The small cohort as a benchmark: three centres of unequal size and a fixed role per patient."""
    df, _ = small_cohort
    rng = np.random.default_rng(11)
    n = df.height
    centre = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    role = np.where(rng.random(n) < 0.25, "test", "train")
    role[:3] = [" Test", "TRAIN", "train "]  # case and blanks do not matter
    return df.with_columns(pl.Series("centre", centre), pl.Series("role", role))


def _times(values) -> list[float]:
    return sorted(float(t) for t in values)


def test_every_assignment_is_honoured(benchmark, mds_guide):
    data = build_federated_data(benchmark, mds_guide, GIVEN, dataset="bench")
    role = benchmark["role"].str.strip_chars().str.to_lowercase()
    test_ids = set(benchmark.filter(role == "test")["patient_id"])
    assert set(data.test_patient_ids) == test_ids and len(data.test_patient_ids) == len(test_ids)
    # nodes are the centres, largest first; each node holds exactly its centre's train rows
    train = benchmark.filter(role == "train")
    sizes = train["centre"].value_counts().sort("count", descending=True)
    assert data.node_names == tuple(f"centre{c}" for c in sizes["centre"])
    for k, centre in enumerate(sizes["centre"]):
        mine = train.filter(pl.col("centre") == centre)
        assert data.n_train[k] + data.n_val[k] == mine.height
        node_times = [*data.encoded[k][0].time, *data.encoded[k][1].time]
        assert _times(node_times) == _times(mine["time"])  # the very rows (times are continuous)
    # each test row stays at its own centre's node (federated evaluation)
    centre_of = dict(zip(benchmark["patient_id"], benchmark["centre"], strict=True))
    names = list(data.node_names)
    assert [names[k] for k in data.test_node] == [f"centre{centre_of[p]}" for p in data.test_patient_ids]
    # validation is drawn from each node's train rows with seed.split: another seed, other parts
    other = build_federated_data(benchmark, mds_guide, dataclasses.replace(GIVEN, seed=5))
    assert other.test_patient_ids == data.test_patient_ids and other.n_val == data.n_val
    assert not np.array_equal(other.val.time, data.val.time)


def test_given_test_rows_refuses_other_values_with_counts():
    df = pl.DataFrame({"role": ["train", "test", "val", "val", None, "Train", "validation"]})
    with pytest.raises(UnusableData) as err:
        given_test_rows(df, "role", "bench")
    message = str(err.value)
    assert "dataset 'bench', column 'role'" in message
    assert "'val' (2)" in message and "'<missing>' (1)" in message and "'validation' (1)" in message
    assert "of 7 rows" in message and "Train" not in message
    with pytest.raises(UnusableData, match="dataset 'bench' has no column 'split'"):
        given_test_rows(df, "split", "bench")


def test_role_column_from_the_reference_table(benchmark):
    table = benchmark.drop("role")
    reference = benchmark.select("patient_id", pl.col("role").alias("source_role")).reverse()
    joined = with_role_column(table, reference, "role", "bench")
    assert joined["role"].to_list() == benchmark["role"].to_list()  # joined by patient, not by order
    with pytest.raises(UnusableData, match="not in its table .* nor in its reference.parquet .*source_role"):
        with_role_column(table, reference, "fold", "bench")
    with pytest.raises(UnusableData, match="1 patients have no row in reference.parquet"):
        with_role_column(table, reference.slice(1), "role", "bench")


def test_config_split_given():
    from fedjax_rhd.config import run_config

    config = run_config(compose(["split=given", "split.column=role", "seed.split=3"]))
    assert (config.split.column, config.split.natural, config.split.test_fraction) == ("role", True, 0.0)
    assert config.split.seed == 3
    assert run_config(compose(["split=given"])).split.column == "role"  # the default role column
    with pytest.raises(ValueError, match="split.column=<column>"):
        run_config(compose(["split=given", "split.column=null"]))  # no column: no test rows
    with pytest.raises(ValueError, match="needs natural: true"):
        SplitSpec(name="three", column="role", test_fraction=0.0)
    with pytest.raises(ValueError, match="test_fraction: 0"):
        SplitSpec(name="given", natural=True, fractions=(), column="role", test_fraction=0.1)
