"""The survival table from hand-made runs: hand-computed cells, paired bootstraps, reasons, errors."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from fedjax_rhd.metrics.concordance import concordance_index
from fedjax_rhd.report import ReportInputError, build_rows, find_runs, write_report
from fedjax_rhd.report.render import _verdict, sentence
from fedjax_rhd.report.stats import (
    ROWS_STREAM,
    TEST_ROWS,
    Interval,
    SeedRows,
    combine_reported,
    mean_over_seeds,
    paired_difference,
)
from tests.report.report_fixtures import EVENT, PERFECT, REVERSED, TIME, swapped, write_run


def study(root: Path, *, strategies=("fedavg", "centralized", "local"), **kw) -> Path:
    """Two split seeds of the three strategies; C-indices are multiples of 1/28 (see report_fixtures)."""
    plan = {
        0: {
            "centralized": {"pooled": swapped(0)},
            "fedavg": {"node1": swapped(1), "node2": swapped(2), "node3": swapped(3)},
            "local": {"node1": swapped(2), "node2": swapped(3), "node3": REVERSED},
        },
        1: {
            "centralized": {"pooled": swapped(2)},
            "fedavg": {"node1": swapped(0), "node2": swapped(1), "node3": swapped(2)},
            "local": {"node1": swapped(1), "node2": swapped(4), "node3": REVERSED},
        },
    }
    for seed, runs in plan.items():
        for strategy in strategies:
            shares = (1.0,) if strategy == "centralized" else (0.6, 0.3, 0.1)
            main = swapped(1) if strategy == "fedavg" else None
            write_run(root, strategy, seed, runs[strategy], main=main, shares=shares, **kw)
    return root


def cells(row) -> dict:
    return {c.column: c for c in row.cells}


def test_fixture_c_indices_are_the_fractions_they_claim():
    for k in range(5):
        assert Fraction(concordance_index(TIME, EVENT, swapped(k))).limit_denominator(100) == Fraction(
            28 - k, 28
        )
    assert concordance_index(TIME, EVENT, REVERSED) == 0.0


def test_cells_are_means_over_seeds_of_hand_computed_c_indices(tmp_path):
    (row,) = build_rows(find_runs([study(tmp_path)]), n_boot=200)
    c = cells(row)
    expected = {
        "full": (28 + 26) / 56,
        "global": 27 / 28,
        "node:node1": (27 + 28) / 56,
        "node:node2": (26 + 27) / 56,
        "node:node3": (25 + 26) / 56,
        "isolated_biggest": (26 + 27) / 56,
        "isolated_smallest": 0.0,
        "oracle": 1.0,
    }
    for column, value in expected.items():
        assert c[column].value.estimate == pytest.approx(value, abs=1e-12), column
        assert c[column].value.seeds == (0, 1)
        assert c[column].value.ci_low <= c[column].value.estimate + 1e-12 <= c[column].value.ci_high + 2e-12
    assert (c["node:node1"].share, c["node:node3"].share, c["full"].share) == (0.6, 0.1, 1.0)
    assert c["isolated_biggest"].node == "node1" and c["isolated_smallest"].node == "node3"
    assert c["clinical"].value is None and "final.clinical_score is null" in c["clinical"].reason
    gain = row.comparisons["gain:node3"].value
    assert gain.estimate == pytest.approx((25 + 26) / 56 - 0.0, abs=1e-12)
    fl = row.comparisons["fl_minus_centralised"].value
    assert fl.estimate == pytest.approx(27 / 28 - 54 / 56, abs=1e-12)


def test_seed_rows_bootstrap_equals_a_brute_force_loop():
    rng = np.random.default_rng(5)
    time, event, risk = rng.exponential(size=40), rng.integers(0, 2, 40), rng.normal(size=40)
    rows = SeedRows(time, event, seed=3, n_boot=60, boot_seed=7)
    idx = np.random.default_rng(np.random.SeedSequence([ROWS_STREAM, 7, 3])).integers(0, 40, size=(60, 40))
    np.testing.assert_array_equal(rows.idx, idx)
    brute = [concordance_index(time[i], event[i], risk[i]) for i in idx]
    np.testing.assert_allclose(rows.boot(risk), brute, rtol=0, atol=1e-12)


def test_paired_difference_is_exact_for_fixed_orderings():
    rows = SeedRows(TIME, EVENT, seed=0, n_boot=300, boot_seed=0)
    perfect, reversed_ = rows.boot(PERFECT), rows.boot(REVERSED)
    valid = ~np.isnan(perfect)
    assert valid.sum() > 290  # only resamples of a single distinct patient lack comparable pairs
    a = ({0: 1.0}, {0: perfect})
    b = ({0: 0.0}, {0: reversed_})
    d = paired_difference(a, b)
    assert (d.estimate, d.ci_low, d.ci_high) == (1.0, 1.0, 1.0)  # every resample orders both perfectly
    same = paired_difference(a, a)
    assert (same.estimate, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    assert paired_difference(a, ({1: 0.0}, {1: reversed_})) is None  # no common seed


def test_mean_over_seeds_averages_resamples_seed_by_seed():
    boots = {0: np.array([0.5, 0.7, 0.9]), 1: np.array([0.7, 0.9, 1.1])}
    iv = mean_over_seeds({0: 0.7, 1: 0.9}, boots, alpha=0.5)  # 25th..75th percentile of [0.6, 0.8, 1.0]
    assert iv.estimate == pytest.approx(0.8) and (iv.ci_low, iv.ci_high) == pytest.approx((0.7, 0.9))


def test_combine_reported_is_the_normal_approximation_by_hand():
    z = 1.959963984540054
    cis = {0: {"estimate": 0.7, "ci_low": 0.7 - z * 0.02, "ci_high": 0.7 + z * 0.02},
           1: {"estimate": 0.8, "ci_low": 0.8 - z * 0.04, "ci_high": 0.8 + z * 0.04}}  # fmt: skip
    iv = combine_reported(cis)
    se = np.sqrt(0.02**2 + 0.04**2) / 2
    assert iv.estimate == pytest.approx(0.75)
    assert (iv.ci_low, iv.ci_high) == pytest.approx((0.75 - z * se, 0.75 + z * se))


def test_clinical_score_from_per_row_scores_is_paired_and_exact(tmp_path):
    (row,) = build_rows(find_runs([study(tmp_path, clinical=swapped(4))]), n_boot=100)
    cell = cells(row)["clinical"]
    assert cell.value.estimate == pytest.approx(24 / 28) and not cell.approximate and cell.detail == "IPSS-M"


def test_clinical_score_without_per_row_scores_is_flagged_approximate(tmp_path):
    (row,) = build_rows(
        find_runs([study(tmp_path, clinical=swapped(4), clinical_in_predictions=False)]), n_boot=50
    )
    cell = cells(row)["clinical"]
    assert cell.approximate and cell.value.estimate == pytest.approx(24 / 28) and cell.value.n_boot == 0


def test_missing_strategies_leave_cells_that_say_why(tmp_path):
    (row,) = build_rows(find_runs([study(tmp_path, strategies=("fedavg",))]), n_boot=50)
    c = cells(row)
    assert c["full"].value is None and c["full"].reason == "no centralized run for this row"
    assert c["isolated_smallest"].reason == "no local run for this row"
    assert c["node:node2"].value is not None
    assert row.comparisons["fl_minus_centralised"].value is None
    assert "no comparison of federated and centralised training" in sentence(row)
    (row,) = build_rows(find_runs([study(tmp_path / "b", strategies=("centralized",))]), n_boot=50)
    assert row.fl_strategy is None and cells(row)["global"].reason.startswith("no federated run")


def test_verdicts_follow_the_interval_and_margin():
    def iv(lo, hi):
        return Interval((lo + hi) / 2, lo, hi, (0, 1), 100)

    inside = _verdict(iv(-0.01, 0.015), 0.02)
    assert inside.startswith("matched centralised training within ±0.02 (shown:") and ";" not in inside
    assert _verdict(iv(-0.05, -0.03), 0.02).startswith("fell short of centralised training by more than 0.02")
    assert _verdict(iv(0.03, 0.05), 0.02).startswith("did better than centralised training by more than 0.02")
    across = _verdict(iv(0.01, 0.03), 0.02)  # not shown to match, but shown above 0
    assert across.startswith("could not be shown to match centralised training within ±0.02 (not shown:")
    assert across.endswith("; it did better than centralised training (interval wholly above 0)")
    assert ";" not in _verdict(iv(-0.03, 0.01), 0.02)
    # The case: -0.006 [-0.011, -0.002] matches within 0.02 AND is shown below 0; both are said.
    both = _verdict(Interval(-0.006, -0.011, -0.002, (0, 1), 100), 0.02)
    assert both.startswith("matched centralised") and both.endswith("it fell short of centralised training "
                                                                    "(interval wholly below 0)")  # fmt: skip


def test_sentence_names_every_node_gain(tmp_path):
    (row,) = build_rows(find_runs([study(tmp_path)]), n_boot=200)
    text = sentence(row)
    assert text.startswith(
        "mds (best scenario, split three, deepsurv), over 2 split seed(s): the FedAvg global"
    )
    assert "node3 (10% of the data) gained +0.911" in text  # 51/56 over a node that ranks backwards alone


def test_one_seed_is_not_evidence(tmp_path):
    write_run(tmp_path, "fedavg", 0, {"node1": PERFECT, "node2": PERFECT, "node3": PERFECT})
    write_run(tmp_path, "centralized", 0, {"pooled": PERFECT}, shares=(1.0,))
    (row,) = build_rows(find_runs([tmp_path]), n_boot=50)
    assert sentence(row).endswith("One split seed is not evidence: run several.")


def test_rows_mixing_experiments_get_a_note(tmp_path):
    study(tmp_path, strategies=("fedavg", "local"))
    write_run(tmp_path, "centralized", 0, {"pooled": PERFECT}, shares=(1.0,), extra_config={"bootstrap": 9})
    write_run(tmp_path, "centralized", 1, {"pooled": PERFECT}, shares=(1.0,), extra_config={"data_root": "x"})
    (row,) = build_rows(find_runs([tmp_path]), n_boot=20)
    assert row.notes == ()  # bootstrap and data_root do not change what a row compares
    other = tmp_path / "other"
    write_run(other, "centralized", 2, {"pooled": PERFECT}, shares=(1.0,),
              extra_config={"model": {"name": "deepsurv", "hidden": [64]}})  # fmt: skip
    (row,) = build_rows(find_runs([tmp_path]), n_boot=20)
    assert "model.hidden" in row.notes[0]


# --- bad input: a clear error naming the file and the field ---


def test_invalid_json_names_the_file(tmp_path):
    run = write_run(tmp_path, "fedavg", 0, {"node1": PERFECT})
    (run / "results.json").write_text('{"config": ')
    with pytest.raises(ReportInputError, match=rf"{run / 'results.json'}: not valid JSON \(line 1"):
        find_runs([tmp_path])


def test_schema_violation_names_the_field(tmp_path):
    run = write_run(tmp_path, "fedavg", 0, {"node1": PERFECT})
    res = json.loads((run / "results.json").read_text())
    res["final"]["nodes"][0]["c_index_test"]["estimate"] = 1.5
    (run / "results.json").write_text(json.dumps(res))
    with pytest.raises(ReportInputError, match=r"field final/nodes/0/c_index_test/estimate: 1.5 is greater"):
        find_runs([tmp_path])


def test_predictions_that_disagree_with_results_are_an_error(tmp_path):
    run = write_run(tmp_path, "fedavg", 0, {"node1": PERFECT})
    res = json.loads((run / "results.json").read_text())
    res["final"]["nodes"][0]["c_index_test"]["estimate"] = 0.9
    (run / "results.json").write_text(json.dumps(res))
    with pytest.raises(
        ReportInputError, match=r"final.nodes.0.c_index_test.estimate = 0.9 but column 'risk_node1'"
    ):
        build_rows(find_runs([tmp_path]), n_boot=10)


def test_two_runs_for_one_cell_are_an_error(tmp_path):
    a = write_run(tmp_path / "a", "fedavg", 0, {"node1": PERFECT})
    b = write_run(tmp_path / "b", "fedavg", 0, {"node1": PERFECT})
    name = json.loads((a / "results.json").read_text())["config"]["split"]["name"]
    with pytest.raises(ReportInputError, match="two runs for the same cell") as err:
        find_runs([tmp_path])
    assert str(a / "results.json") in str(err.value) and str(b / "results.json") in str(err.value)
    # leave one centre out: runs that hold out different centres are different rows, not one cell twice
    for folder, centre in ((a, "3"), (b, "centre5")):
        res = json.loads((folder / "results.json").read_text())
        res["config"]["split"]["holdout_centre"] = centre
        (folder / "results.json").write_text(json.dumps(res))
    rows = sorted(r.row.split for r in find_runs([tmp_path]))
    assert rows == [f"{name}-holdout-3", f"{name}-holdout-centre5"]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b'{"config": "\xe9"}', "cannot be read as UTF-8 JSON"),
        (b"[" * 200_000 + b"]" * 200_000, "nested too deeply"),
    ],
)
def test_results_json_not_text_or_too_deep_names_the_file(tmp_path, content, says):
    run = write_run(tmp_path, "fedavg", 0, {"node1": PERFECT})
    (run / "results.json").write_bytes(content)
    with pytest.raises(ReportInputError, match=rf"{run / 'results.json'}: {says}"):
        find_runs([tmp_path])


def test_damaged_predictions_name_the_file(tmp_path):
    run = write_run(tmp_path, "fedavg", 0, {"node1": PERFECT})
    data = (run / "test_predictions.parquet").read_bytes()
    (run / "test_predictions.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ReportInputError, match="test_predictions.parquet: not a readable parquet file"):
        build_rows(find_runs([tmp_path]), n_boot=10)


def test_missing_predictions_and_empty_dirs_are_errors(tmp_path):
    run = write_run(tmp_path, "fedavg", 0, {"node1": PERFECT})
    (run / "test_predictions.parquet").unlink()
    with pytest.raises(ReportInputError, match="test_predictions.parquet: missing"):
        build_rows(find_runs([tmp_path]), n_boot=10)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReportInputError, match="no results.json below it"):
        find_runs([tmp_path / "empty"])
    with pytest.raises(ReportInputError, match="no such run directory"):
        find_runs([tmp_path / "absent"])


def test_different_test_patients_for_one_seed_are_an_error(tmp_path):
    import polars as pl

    write_run(tmp_path, "fedavg", 0, {"node1": PERFECT})
    run = write_run(tmp_path, "local", 0, {"node1": PERFECT})
    pred = pl.read_parquet(run / "test_predictions.parquet")
    pred.with_columns(pl.Series("patient_id", [f"q{i}" for i in range(8)])).write_parquet(
        run / "test_predictions.parquet"
    )
    with pytest.raises(ReportInputError, match="test patients differ"):
        build_rows(find_runs([tmp_path]), n_boot=10)


def test_write_report_files_from_hand_made_runs(tmp_path):
    report = write_report([study(tmp_path / "runs")], tmp_path / "out", n_boot=50)
    md = report.files["markdown"].read_text()
    assert "| mds | best | FedAvg | 0.964 [" in md  # 54/56 = 0.9643
    assert "n/a: no clinical score in these runs" in md
    assert (tmp_path / "out" / "figures" / "curves_mds_best_three_deepsurv_fedavg.png").is_file()
    lines = report.files["csv"].read_text().splitlines()
    assert len(lines) == 1 + 9  # header + full, global, 3 nodes, 2 isolated, clinical, oracle


def test_seed_rows_leave_unscored_rows_out_of_point_and_resamples():
    from fedjax_rhd.metrics.concordance import concordance_index
    from fedjax_rhd.report.stats import SeedRows

    rng = np.random.default_rng(0)
    n = 120
    time = rng.integers(1, 30, n).astype(float)
    event = rng.random(n) < 0.6
    score = rng.integers(0, 5, n).astype(float)
    score[::7] = np.nan  # a clinical score that cannot score every row
    rows = SeedRows(time, event, seed=0, n_boot=40, boot_seed=1)
    kept = ~np.isnan(score)
    assert rows.cindex(score) == concordance_index(time[kept], event[kept], score[kept])
    boots = rows.boot(score)
    for b in (0, 17, 39):  # each replicate: the seed's own resample, unscored rows dropped
        r = rows.idx[b][kept[rows.idx[b]]]
        assert boots[b] == concordance_index(time[r], event[r], score[r])


def test_training_replicates_are_averaged_and_resampled(tmp_path):
    # Two split seeds x two training replicates (seed.init 0 and 1): FedAvg's global model is
    # swapped(1) then swapped(3) (27/28 and 25/28), centralised swapped(0) then swapped(2).
    for init, (k_fed, k_cen) in enumerate(((1, 0), (3, 2))):
        seeds = {"seed": {"data": 0, "split": None, "init": init, "train": init}}
        for s in (0, 1):
            cfg = {"seed": {**seeds["seed"], "split": s}, "split": {"name": "three", "seed": s}}
            nodes = {"node1": swapped(k_fed), "node2": swapped(1), "node3": swapped(2)}
            write_run(tmp_path / f"i{init}", "fedavg", s, nodes, main=swapped(k_fed), extra_config=cfg)
            write_run(
                tmp_path / f"i{init}",
                "centralized",
                s,
                {"pooled": swapped(k_cen)},
                shares=(1.0,),
                extra_config=cfg,
            )
    (row,) = build_rows(find_runs([tmp_path]), n_boot=200)
    c = cells(row)
    assert c["global"].value.estimate == pytest.approx(26 / 28, abs=1e-12)
    assert c["full"].value.estimate == pytest.approx(27 / 28, abs=1e-12)
    assert c["global"].n_replicates == 2 and len(c["global"].per_seed) == 4
    assert "training seeds (2-2 per split seed, drawn with replacement)" in c["global"].value.covers
    # The test-row interval is kept beside it, labelled as what it is.
    assert c["global"].rows_value.covers == TEST_ROWS
    fl = row.comparisons["fl_minus_centralised"]
    assert (
        fl.value.estimate == pytest.approx(-1 / 28, abs=1e-12) and fl.rows_value.estimate == fl.value.estimate
    )
    assert not row.notes  # replicates (and split.seed, which follows seed.split) are one experiment


def test_model_minus_score_is_paired_on_the_rows_the_score_covers(tmp_path):
    import polars as pl

    study(tmp_path, clinical=PERFECT)
    for pred in tmp_path.rglob("test_predictions.parquet"):
        frame = pl.read_parquet(pred)
        score = [None, None, *frame["clinical_score"].to_list()[2:]]  # rows 0 and 1 unscored
        frame.with_columns(pl.Series("clinical_score", score, pl.Float64)).write_parquet(pred)
    (row,) = build_rows(find_runs([tmp_path]), n_boot=100)
    d = row.comparisons["fl_minus_score"].value
    # FedAvg's global model is swapped(1): it swaps rows 0 and 1 only, so on rows 2-7 it is perfect
    # like the score: the paired difference on the score's rows is exactly 0 (on all rows it would be -1/28).
    assert (d.estimate, d.ci_low, d.ci_high) == (0.0, 0.0, 0.0)
    assert "on the score's rows" in row.comparisons["fl_minus_score"].label
    cen = row.comparisons[
        "centralised_minus_score"
    ].value  # swapped(0) and swapped(2): 1 and 14/15 on rows 2-7
    assert cen.estimate == pytest.approx((0 + (14 / 15 - 1)) / 2, abs=1e-12)


def test_report_streams_never_equal_the_data_layers_streams():
    """Issue 24 item 6: an untagged default_rng([0, s]) was the test-split stream SeedSequence([0, 0])."""
    from fedjax_rhd.report.cluster import STREAM, ClusterDesign, SeedTestRows

    def first(entropy) -> np.ndarray:
        return np.random.default_rng(np.random.SeedSequence(entropy)).integers(0, 2**62, size=4)

    data_streams = [first([s, k]) for s in range(6) for k in range(6)] + [first(s) for s in range(6)]
    rows = SeedRows(TIME, EVENT, seed=0, n_boot=4, boot_seed=0)
    assert not any(np.array_equal(first([ROWS_STREAM, 0, 0]), d) for d in data_streams)
    tagged = np.random.default_rng(np.random.SeedSequence([ROWS_STREAM, 0, 0]))
    np.testing.assert_array_equal(rows.idx, tagged.integers(0, 8, size=(4, 8)))
    design = ClusterDesign({0: SeedTestRows(np.arange(8), TIME, EVENT)}, n_boot=3)
    assert not any(np.array_equal(first([STREAM, 0, 0]), d) for d in data_streams)
    expected = np.random.default_rng(np.random.SeedSequence([STREAM, 0, 0])).poisson(1.0, size=(3, 8))
    np.testing.assert_array_equal(design.weights, expected)
