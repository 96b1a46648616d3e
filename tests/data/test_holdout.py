"""split.holdout_centre: one centre's rows are exactly the test set and reach no node; refusals named."""

from __future__ import annotations

import dataclasses

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.data import SplitSpec, UnusableData, build_federated_data
from tests.conftest import compose

NATURAL = SplitSpec(name="natural", natural=True, fractions=(), seed=2)


@pytest.fixture(scope="module")
def centres(small_cohort):
    """The small cohort over four centres of unequal size (a largest, d smallest)."""
    df, _ = small_cohort
    centre = np.random.default_rng(5).choice(["a", "b", "c", "d"], size=df.height, p=[0.4, 0.3, 0.2, 0.1])
    return df.with_columns(pl.Series("centre", centre))


def _times(values) -> list[float]:
    return sorted(float(t) for t in values)


@pytest.mark.parametrize("name", ["c", "centrec"])  # the centre's value, or its node name
def test_the_held_out_centre_is_exactly_the_test_set_and_in_no_node(centres, mds_guide, name):
    held = centres.filter(pl.col("centre") == "c")
    rest = centres.filter(pl.col("centre") != "c")
    split = dataclasses.replace(NATURAL, holdout_centre=name)
    data = build_federated_data(centres, mds_guide, split, dataset="loco")
    assert data.holdout_centre == "c"
    assert sorted(data.test_patient_ids) == sorted(held["patient_id"])
    assert data.test_node is None  # the manager keeps the held-out rows, as test.dataset's
    # the nodes are the other centres, largest first, each holding exactly its centre's rows (so no
    # held-out row: the nodes' row count is the other centres')
    assert data.node_names == ("centrea", "centreb", "centred")
    assert sum(data.n_train) + sum(data.n_val) == rest.height
    for k, centre in enumerate(("a", "b", "d")):
        node_times = [*data.encoded[k][0].time, *data.encoded[k][1].time]
        assert _times(node_times) == _times(rest.filter(pl.col("centre") == centre)["time"])
    # the same run as training on the other centres and testing on the held-out rows (test_table):
    # the held-out rows fit nothing (preprocessing, validation draws, nodes are those of `rest`)
    same = build_federated_data(rest, mds_guide, NATURAL, dataset="loco", test_table=held)
    np.testing.assert_array_equal(same.preprocessor.center, data.preprocessor.center)
    np.testing.assert_array_equal(same.train.x, data.train.x)
    np.testing.assert_array_equal(same.test.x, data.test.x)
    assert same.test_patient_ids == data.test_patient_ids


def test_unknown_centre_and_too_few_centres_refused(centres, mds_guide):
    with pytest.raises(UnusableData) as err:
        build_federated_data(
            centres, mds_guide, dataclasses.replace(NATURAL, holdout_centre="z"), dataset="loco"
        )
    assert "split.holdout_centre='z': dataset 'loco' has no such centre; its centres: a, b, c, d" in str(
        err.value
    )
    two = centres.filter(pl.col("centre").is_in(["a", "b"]))
    with pytest.raises(
        UnusableData, match="holding out centre 'a' of dataset 'loco' leaves 1 centre \\(b\\)"
    ):
        build_federated_data(two, mds_guide, dataclasses.replace(NATURAL, holdout_centre="a"), dataset="loco")
    no_event = centres.with_columns(
        pl.when(pl.col("centre") == "d").then(0).otherwise(pl.col("event")).alias("event")
    )
    with pytest.raises(UnusableData, match="held-out centre 'd' .* no event"):
        build_federated_data(
            no_event, mds_guide, dataclasses.replace(NATURAL, holdout_centre="d"), dataset="loco"
        )


def test_config_holdout_centre():
    from fedjax_rhd.config import run_config

    config = run_config(compose(["split=natural", "split.holdout_centre=3"]))
    assert config.split.holdout_centre == "3"  # a number on the command line is a centre's name
    # no test draw is needed: the held-out centre is the test set
    assert run_config(compose(["split=natural", "split.holdout_centre=3", "split.test_fraction=0"]))
    with pytest.raises(ValueError, match="needs split=natural"):
        SplitSpec(name="three", holdout_centre="3")
    with pytest.raises(ValueError, match="needs split=natural"):
        SplitSpec(
            name="given", natural=True, fractions=(), test_fraction=0.0, column="role", holdout_centre="3"
        )
    with pytest.raises(ValueError, match="both name the test rows"):
        run_config(compose(["split=natural", "split.holdout_centre=3", "test.dataset=other"]))
    with pytest.raises(ValueError, match="applies to survival models"):
        run_config(compose(["split=natural", "split.holdout_centre=3", "model=vae_bgm"]))


def test_results_json_records_the_held_out_centre(centres, mds_guide, monkeypatch):
    """run_data puts the centre and its counts on the card; results.json's dataset block carries it."""
    from fedjax_rhd import experiment
    from fedjax_rhd.config import run_config
    from fedjax_rhd.results import dataset_block
    from fedjax_rhd.sources import Cohort

    card = {"id": "ds-0123456789abcdef", "name": "loco", "n_rows": centres.height,
            "n_events": int(centres["event"].sum()), "guide_version": mds_guide.version}  # fmt: skip
    cohort = Cohort(centres, card, "IPSS-M", None)
    monkeypatch.setattr(experiment, "load_use_case", lambda *a, **k: cohort)
    config = run_config(compose(["split=natural", "split.holdout_centre=centreb", "seed.split=0"]))
    data, _, run_card, _ = experiment.run_data(config, mds_guide)
    b = centres.filter(pl.col("centre") == "b")
    expected = {"centre": "b", "n_rows": b.height, "n_events": int(b["event"].sum())}
    assert run_card["holdout"] == expected and len(data.test_patient_ids) == b.height
    block = dataset_block(run_card, ())
    assert block["holdout"] == expected and "test" not in block
    # the committed schema's dataset block takes it, and refuses it incomplete
    import json

    import jsonschema

    from fedjax_rhd.results import SCHEMA_PATH

    schema = json.loads(SCHEMA_PATH.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema["properties"]["dataset"])
    validator.validate(block)
    with pytest.raises(jsonschema.ValidationError, match="'n_events' is a required property"):
        validator.validate({**block, "holdout": {"centre": "b", "n_rows": 3}})
