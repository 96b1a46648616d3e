"""Bad data stops with a message naming the dataset, node and counts, never a traceback from inside.

Each case is one that used to fail deep in preprocessing or evaluation (an ``IndexError`` in
``preprocess.merge_all_moments`` for a 0-row dataset, a node whose Cox likelihood has no term).
"""

from __future__ import annotations

import polars as pl
import pytest

from fedjax_rhd.data import SplitSpec, UnusableData, build_federated_data

THREE = SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), seed=0)
NATURAL = SplitSpec(name="natural", natural=True, fractions=(), seed=0)


@pytest.fixture(scope="module")
def cohort(small_cohort):
    return small_cohort[0]


def test_a_dataset_without_rows(cohort, mds_guide):
    with pytest.raises(UnusableData, match=r"dataset 'empty' has no rows.*quarantined"):
        build_federated_data(cohort.head(0), mds_guide, THREE, dataset="empty")


def test_a_dataset_without_events(cohort, mds_guide):
    censored = cohort.head(50).with_columns(pl.lit(0).cast(cohort["event"].dtype).alias("event"))
    with pytest.raises(UnusableData, match="dataset 'censored' has 50 rows and no event"):
        build_federated_data(censored, mds_guide, THREE, dataset="censored")


def test_a_split_that_leaves_the_test_part_empty(cohort, mds_guide):
    # 5 rows, 10% test: largest remainders give every row to training
    with pytest.raises(UnusableData, match="dataset 'five rows': the test part has no rows"):
        build_federated_data(cohort.head(5), mds_guide, THREE, dataset="five rows")


def test_a_node_without_events(cohort, mds_guide):
    # centre "small": 6 censored patients (never all in the test part: its 10% takes at most 1 of them)
    small = cohort.head(6).with_columns(pl.lit(0).cast(cohort["event"].dtype).alias("event"))
    rest = cohort.slice(6)
    table = pl.concat([small.with_columns(pl.lit("small").alias("centre")), rest])
    with pytest.raises(UnusableData) as err:
        build_federated_data(table, mds_guide, NATURAL, dataset="two centres")
    message = str(err.value)
    assert "dataset 'two centres', split 'natural': node 'centresmall' has" in message
    n_train = int(message.split("has ")[1].split(" training rows")[0])
    assert 1 <= n_train <= 6 and "with 0 events" in message


def test_given_roles_that_leave_a_node_without_events_or_any_node(cohort, mds_guide):
    # centre a: 20 train and 10 test patients; centre b: 10 train patients, none with an event
    row = pl.int_range(pl.len())
    table = cohort.head(40).with_columns(
        pl.when(row < 30).then(pl.lit("a")).otherwise(pl.lit("b")).alias("centre"),
        pl.when((row >= 20) & (row < 30)).then(pl.lit("test")).otherwise(pl.lit("train")).alias("role"),
        pl.when(row >= 30).then(0).otherwise(pl.col("event")).cast(cohort["event"].dtype).alias("event"),
    )
    given = SplitSpec(name="given", natural=True, fractions=(), test_fraction=0.0, column="role")
    with pytest.raises(
        UnusableData, match=r"node 'centreb' has 8 training rows with 0 events \(2 validation"
    ):
        build_federated_data(table, mds_guide, given, dataset="given")
    every_row_tests = table.with_columns(pl.lit("test").alias("role"))
    with pytest.raises(
        UnusableData, match=r"dataset 'given': the training part \(every node's rows\) has no"
    ):
        build_federated_data(every_row_tests, mds_guide, given, dataset="given")


def test_a_node_with_no_training_rows_is_named(mds_guide, cohort):
    from fedjax_rhd.data.checks import check_nodes

    # 12 rows over 60/30/10%: 11 train, largest remainders leave node 3 nothing
    with pytest.raises(UnusableData, match=r"node 'node3' has 0 training rows with 0 events \(0 validation"):
        build_federated_data(cohort.head(12), mds_guide, THREE, dataset="twelve")
    with pytest.raises(UnusableData, match="dataset 'eleven': the test part has 1 rows and no event"):
        build_federated_data(cohort.head(11), mds_guide, THREE, dataset="eleven")
    empty = cohort.head(0)
    with pytest.raises(UnusableData, match="node 'node3' has 0 training rows with 0 events"):
        check_nodes("d", "three", ("node1", "node2", "node3"), [cohort, cohort, empty], [empty] * 3)
    with pytest.raises(UnusableData, match="leaves no training node"):
        check_nodes("d", "natural", (), [], [])


def test_the_cli_turns_unusable_data_into_exit_1_with_the_message(tmp_path, tiny_data_root, capsys):
    """`fedjax-rhd split=given split.column=role` on a dataset without that column: one message, exit 1.

    Run alone it builds TINY's cohort in the shared ``tiny_data_root`` (~10 s), which the e2e runs reuse.
    """
    from fedjax_rhd.cli import run_or_exit, typed_config
    from fedjax_rhd.config import resolved
    from tests.conftest import TINY, compose

    cfg = compose([*TINY, "split=given", "split.column=role", f"data_root={tiny_data_root}"])
    with pytest.raises(SystemExit) as stop:  # what the command's _app does with the composed config
        run_or_exit(typed_config(cfg), tmp_path, resolved(cfg))
    assert str(stop.value.code).startswith(
        "fedjax-rhd: split=given: dataset 'mds-sim-n600-seed0' has no column 'role' (split.column): "
        "not in its table (patient_id, centre,"
    )
    assert "Traceback" not in capsys.readouterr().err


def test_a_registered_dataset_whose_every_record_was_quarantined(tmp_path):
    """`harmonize map --allow-empty` writes a 0-row dataset; using it is refused, naming it."""
    from fedjax_rhd.sources import load_registered_dataset
    from harmonize.datasets import build_dataset
    from harmonize.guide import load_guide
    from harmonize.registry import DatasetSpec, dataset_folder

    (tmp_path / "t.csv").write_text("id,age,days,dead\np1,50,100,yes\np2,60,200,no\n")  # codes 1/0 expected
    (tmp_path / "m.yaml").write_text(
        "file: t.csv\ncentre: one\npatient_id: {column: id}\ntime: {column: days, unit: d}\n"
        'event: {column: dead, codes: {"1": 1, "0": 0}}\nfeatures:\n  age: {column: age, unit: a}\n'
    )
    guide = load_guide("gbsg2")
    spec = DatasetSpec("empty", "gbsg2", "csv", (("mapping", [str(tmp_path / "m.yaml")]),))
    card = build_dataset(spec, guide, dataset_folder(tmp_path, "empty"), allow_empty=True)
    assert card["n_rows"] == 0 and card["centres"][0]["quarantined"] == 2
    with pytest.raises(UnusableData, match=r"dataset 'empty' has no rows; .*quarantined"):
        load_registered_dataset("empty", guide, data_root=tmp_path)
