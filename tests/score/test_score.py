"""``fedjax-rhd-score``: a finished run's models applied to a dataset with the run's own statistics.

The report tests' tiny runs (FedAvg, centralised, local; ``tests/conftest.py::tiny_multirun``) are
scored on their own test rows, which must give their ``results.json`` numbers to the bit; refusals
(another guide or schema, a missing file) are checked on copies of a card and a run directory; the
report's external table reads the output. Nothing is written below the shared runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.metrics import concordance_index, ipcw
from fedjax_rhd.report import write_report
from fedjax_rhd.score.calibration import calibration_at
from fedjax_rhd.score.cli import main, score
from tests.conftest import TINY, run_in_process

DATASET = "mds-sim-n600-seed0"  # TINY's cohort


@pytest.fixture(scope="module")
def runs(tiny_multirun) -> dict[str, Path]:
    """Split three, seed 0 of the report tests' tiny multirun: FedAvg, centralised and local (read only)."""
    return {s: next(tiny_multirun.glob(f"*_{s}_three_s0")) for s in ("fedavg", "centralized", "local")}


@pytest.fixture(scope="module")
def scores_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("scores")


@pytest.fixture(scope="module")
def own_test(runs, tiny_data_root, scores_dir) -> dict[str, dict]:
    return {
        s: score(
            d, DATASET, data_root=tiny_data_root, rows="run-test", out=scores_dir / s, plots=s == "local"
        )
        for s, d in runs.items()
    }


def _final(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())["final"]


@pytest.mark.parametrize("strategy", ["fedavg", "centralized", "local"])
def test_own_test_rows_reproduce_results_json_exactly(runs, own_test, strategy):
    final, doc = _final(runs[strategy]), own_test[strategy]
    models = {m["name"]: m for m in doc["models"]}
    (main,) = [m for m in doc["models"] if m["main"]]
    assert (
        main["name"] == {"fedavg": "global", "centralized": "centralised", "local": "node1_local"}[strategy]
    )
    assert doc["censoring"] == "run" and doc["rows"]["n"] == final["n_test"]
    assert main["c_index"] == final["c_index_test"]
    for key in ("uno_c_test", "td_auc_test", "ibs_test", "survival_eval"):
        assert main[key] == final[key], key
    for node in final["nodes"]:  # each node's model (centralised: the pooled one)
        name = {"fedavg": node["name"], "centralized": "centralised", "local": f"{node['name']}_local"}[
            strategy
        ]
        assert models[name]["c_index"] == node["c_index_test"], name
    assert len(models) == {"fedavg": 4, "centralized": 1, "local": 3}[strategy]
    assert doc["clinical_score"] == final["clinical_score"]
    assert doc["oracle_c_index"] == final["oracle_c_index_test"]
    # local: each node's model read the rows through its own statistics, in the run and here
    manifest = json.loads((runs[strategy] / "scoring.json").read_text())
    per_node = "nodes" in json.loads((runs[strategy] / "results.json").read_text())["preprocessing"]
    assert per_node == (strategy == "local")
    assert manifest["preprocessing"] == ("per_node" if strategy == "local" else "federated")


def test_predictions_are_the_run_s_test_risks(runs, own_test, scores_dir):
    for strategy, pairs in {"fedavg": [("global", "risk"), ("node2", "risk_node2")],
                            "local": [("node3_local", "risk_node3")]}.items():  # fmt: skip
        ours = pl.read_parquet(scores_dir / strategy / "predictions.parquet")
        theirs = pl.read_parquet(runs[strategy] / "test_predictions.parquet")
        for model, column in pairs:
            rows = ours.filter(pl.col("model") == model)
            assert rows["patient_id"].to_list() == theirs["patient_id"].to_list()
            np.testing.assert_array_equal(rows["risk"].to_numpy(), theirs[column].cast(pl.Float64).to_numpy())
            np.testing.assert_array_equal(
                rows["clinical_score"].to_numpy(), theirs["clinical_score"].to_numpy()
            )
    # the paired difference is the difference of the two C-indices on the scored rows
    doc = own_test["fedavg"]
    d = doc["models"][0]["versus_clinical_score"]["difference"]["difference"]
    cs = doc["clinical_score"]
    assert d == pytest.approx(
        cs["model_c_index_test_scored_rows"]["estimate"] - cs["c_index_test"]["estimate"]
    )
    assert (
        doc["files"]["calibration"] is None and own_test["local"]["files"]["calibration"] == "calibration.png"
    )
    assert (scores_dir / "local" / "calibration.png").stat().st_size > 0


def test_cohort_censoring_is_the_scored_rows_own(runs, own_test, tmp_path, tiny_data_root):
    doc = score(runs["fedavg"], DATASET, data_root=tiny_data_root, rows="run-test", censoring="cohort",
                out=tmp_path, n_boot=20, horizons=[1.0, 99.0], plots=False)  # fmt: skip
    glob = doc["models"][0]
    frame = pl.read_parquet(tmp_path / "predictions.parquet").filter(pl.col("model") == "global")
    t, e, risk = (frame[c].to_numpy() for c in ("time", "event", "risk"))
    assert glob["c_index"]["estimate"] == own_test["fedavg"]["models"][0]["c_index"]["estimate"]
    with np.load(runs["fedavg"] / "scoring.npz") as arrays:  # the run's grid: its nodes' largest time
        grid = ipcw.time_grid(float(arrays["nodes/max_time"].max()), int(arrays["grid_points"]))
    g = ipcw.censoring_from_counts(ipcw.grid_counts(t, e, grid), grid)
    tau = glob["survival_eval"]["tau"]
    assert glob["uno_c_test"] == pytest.approx(ipcw.uno_c_index(t, e, risk, g, tau=tau), abs=1e-6)
    cal = glob["calibration"]
    assert [c["horizon"] for c in cal] == [1.0, 99.0] and "past the last follow-up" in cal[1]["error"]
    assert sum(grp["n"] for grp in cal[0]["groups"]) == 60 and cal[0]["observed"] == pytest.approx(
        ipcw.kaplan_meier(t, e, np.array([1.0]))[0]
    )


@pytest.mark.slow
def test_all_rows_and_finetuned_models(tmp_path, tiny_data_root):
    """Fine-tuned models reproduce their results.json too; scoring every row keeps each test patient's risk
    (the run's own preprocessing, not statistics refitted on the scored rows)."""
    run_dir = tmp_path / "run"
    run_in_process([*TINY, "strategy.rounds=2", "strategy.finetune_epochs=1"], run_dir, tiny_data_root)
    own = score(run_dir, DATASET, data_root=tiny_data_root, rows="run-test", out=tmp_path / "own")
    models = {m["name"]: m for m in own["models"]}
    for node in _final(run_dir)["personalized"]["nodes"]:
        assert models[f"{node['name']}_finetuned"]["c_index"] == node["c_index_test"], node["name"]
    doc = score(run_dir, DATASET, data_root=tiny_data_root, out=tmp_path / "all", n_boot=20)
    assert (
        doc["rows"]["n"] == 600 and doc["censoring"] == "cohort" and doc["warnings"]
    )  # training rows inside
    frame = pl.read_parquet(tmp_path / "all" / "predictions.parquet").filter(pl.col("model") == "global")
    c = concordance_index(frame["time"].to_numpy(), frame["event"].to_numpy(), frame["risk"].to_numpy())
    assert doc["models"][0]["c_index"]["estimate"] == c
    test = pl.read_parquet(run_dir / "test_predictions.parquet").select("patient_id", "risk")
    joined = test.join(frame.select("patient_id", pl.col("risk").alias("here")), on="patient_id")
    assert joined.height == 60
    np.testing.assert_allclose(
        joined["here"], joined["risk"], rtol=1e-5, atol=1e-6
    )  # float32 matmul rounding


def _dataset_copy(tiny_data_root: Path, tmp_path: Path, edit) -> Path:
    folder = tmp_path / "datasets" / "edited"
    folder.mkdir(parents=True)
    card = json.loads((tiny_data_root / "datasets" / DATASET / "dataset.json").read_text())
    edit(card)
    (folder / "dataset.json").write_text(json.dumps(card))
    return folder


def _refused(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main([*map(str, argv)])
    assert exit_info.value.code not in (0, None)
    return str(exit_info.value.code) + capsys.readouterr().err


def test_another_schema_or_guide_is_refused_naming_the_features(runs, tiny_data_root, tmp_path, capsys):
    run_dir = runs["fedavg"]

    def edit(card):
        card["features"] = [f for f in card["features"] if f["name"] != "TP53"]  # dropped
        hb = next(f for f in card["features"] if f["name"] == "hb")
        hb["unit"] = "g/L"  # another unit
        card["features"].append({**hb, "name": "LDH"})  # one the model never saw

    message = _refused(capsys, run_dir, _dataset_copy(tiny_data_root, tmp_path / "a", edit))
    assert "incompatible" in message and "'TP53'" in message and "'LDH'" in message
    assert "feature 'hb': unit 'g/L', trained on 'g/dL'" in message
    assert "Traceback" not in message

    def other_guide(card):
        card["use_case"], card["guide_version"] = "cmml", "9.9.9"

    message = _refused(capsys, run_dir, _dataset_copy(tiny_data_root, tmp_path / "b", other_guide))
    assert "guide 'cmml', the model was trained on guide 'mds'" in message and "version '9.9.9'" in message


def test_a_guide_changed_since_training_is_refused(runs, tmp_path, capsys, tiny_data_root):
    copy = tmp_path / "run"
    shutil.copytree(runs["fedavg"], copy)
    manifest = json.loads((copy / "scoring.json").read_text())
    next(f for f in manifest["guide"]["features"] if f["name"] == "ipssr_cyto")["levels"] = ["good", "poor"]
    (copy / "scoring.json").write_text(json.dumps(manifest))
    message = _refused(capsys, copy, DATASET, "--data-root", tiny_data_root)
    assert "as installed now is incompatible" in message and "feature 'ipssr_cyto': levels" in message


@pytest.mark.parametrize("missing", ["scoring.npz", "params.npz", "scoring.json", "results.json"])
def test_a_missing_artefact_is_refused_naming_the_file(runs, tmp_path, capsys, missing, tiny_data_root):
    copy = tmp_path / "run"
    shutil.copytree(runs["fedavg"], copy, ignore=shutil.ignore_patterns(missing))
    message = _refused(capsys, copy, DATASET, "--data-root", tiny_data_root)
    assert f"{copy / missing}: missing" in message and "Traceback" not in message


def test_report_external_table_reads_score_json(own_test, scores_dir, tmp_path):
    report = write_report([scores_dir / "fedavg"], tmp_path)  # score outputs alone: only the external table
    assert report.runs == [] and set(report.files) == {"external_markdown", "external_csv"}
    rows = pl.read_csv(report.files["external_csv"])
    assert rows.height == len(own_test["fedavg"]["models"])
    glob = rows.filter(pl.col("scored_model") == "global").row(0, named=True)
    c = own_test["fedavg"]["models"][0]["c_index"]
    assert (glob["c_index"], glob["ci_low"], glob["ci_high"]) == (c["estimate"], c["ci_low"], c["ci_high"])
    assert glob["clinical_score"] == "IPSS-M" and glob["rows"] == "run-test" and glob["n"] == 60
    assert "| **global** |" in report.files["external_markdown"].read_text()


def test_calibration_by_hand():
    # groups by predicted survival: {t=1 death, t=2 censored} and {t=3, t=4 deaths}; Kaplan-Meier at 2.5:
    # first group 1 - 1/2 = 0.5; second 1 (nobody died before 2.5); all rows 1 - 1/4 = 0.75
    table = calibration_at(
        np.array([1.0, 2.0, 3.0, 4.0]), np.array([1, 0, 1, 1]), np.array([0.2, 0.4, 0.6, 0.8]), 2.5, 2
    )
    assert table["observed"] == 0.75 and table["predicted"] == pytest.approx(0.5) and table["n_at_risk"] == 2
    assert [(g["n"], g["events"], g["n_at_risk"]) for g in table["groups"]] == [(2, 1, 0), (2, 2, 2)]
    assert [g["observed"] for g in table["groups"]] == [0.5, 1.0]
    assert [g["predicted"] for g in table["groups"]] == pytest.approx([0.3, 0.7])
