"""A tiny VAE-BGM run end to end after training: per-round fidelity, the export past the privacy
gate (``fedjax-rhd-synth export``) and the exported set registered as a dataset (through FHIR)."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pytest

from fedjax_rhd.sources import UseCase, load_use_case
from fedjax_rhd.synth import main as synth_main
from fedjax_rhd.synthetic_export import CARD, REPORT, TABLE, export_run
from fedjax_rhd.synthetic_rounds import fidelity_round

pytestmark = pytest.mark.e2e


def test_fidelity_rounds():
    assert [r for r in range(1, 12) if fidelity_round(r, 5)] == [1, 5, 10]
    assert [r for r in range(1, 4) if fidelity_round(r, 1)] == [1, 2, 3]
    assert not any(fidelity_round(r, 0) for r in range(1, 4))


def test_every_round_records_the_global_generators_fidelity_against_the_holdout(fedavg_run):
    _, res = fedavg_run
    val = res["final"]["generative"]["validation"]
    for record in res["rounds"]:
        fid = record["synthetic_fidelity"]
        assert fid["reference"] == "benchmark_holdout" and fid["n_synthetic"] == 150
        assert fid["n_reference"] == val["n_holdout"]  # the manager's holdout, not node rows
        assert list(fid["generators"]) == ["global"]
        scores = fid["generators"]["global"]
        assert 0 < scores["csf"] <= 1 and 0 < scores["gsf"] <= 1 and scores["components"] >= 1


def test_a_passing_table_is_exported_with_its_card(fedavg_run, tmp_path):
    run_dir, res = fedavg_run
    gen = res["final"]["generative"]
    card = export_run(run_dir, tmp_path / "export")
    assert sorted(p.name for p in (tmp_path / "export").iterdir()) == sorted([CARD, TABLE, REPORT])
    assert json.loads((tmp_path / "export" / CARD).read_text()) == card
    assert card["id"] == gen["synthetic"]["id"] and card["n_rows"] == 150
    assert card["gate"]["passed"] and card["gate"]["values"]["mia_auc"] == gen["validation"]["mia_auc"]
    assert card["gate"]["table_id_recorded_at_validation"]
    assert card["generator"]["strategy"] == "fedavg" and card["generator"]["trained_on"] == "global"
    assert card["run"]["dataset"]["id"] == res["dataset"]["id"]
    assert card["seeds"]["synthetic"] == card["seeds"]["synthetic_draws"] == 0
    assert card["metrics"]["csf"] == gen["validation"]["csf"]
    table = pl.read_parquet(tmp_path / "export" / TABLE)
    assert table.equals(pl.read_parquet(run_dir / gen["synthetic"]["path"]))


@pytest.mark.slow  # the FHIR round trip of the export: ~5-10 s on the shared 2 cores
def test_an_export_registers_as_a_dataset_through_fhir(fedavg_run, tmp_path):
    run_dir, _ = fedavg_run
    card = export_run(run_dir, tmp_path / "export")
    table = pl.read_parquet(tmp_path / "export" / TABLE)
    # The export as a dataset: source -> FHIR R5 -> table, like any registered dataset.
    cohort = load_use_case(
        UseCase(name="mds", source="synthetic"), seed_data=0, data_root=tmp_path / "data",
        real_data_root=tmp_path / "export",
    )  # fmt: skip
    assert cohort.card["name"] == "mds-synthetic" and cohort.card["source"]["generator"] == card["id"]
    assert cohort.table["patient_id"].to_list() == table["patient_id"].to_list()
    assert cohort.table["event"].to_list() == table["event"].to_list()
    # Through FHIR and back, the registered dataset holds exactly the exported table: same content id.
    assert cohort.card["id"] == card["id"]


def test_the_gate_refuses_with_the_failing_metric_and_writes_nothing(fedavg_run, tmp_path, capsys):
    run_dir, res = fedavg_run
    out = tmp_path / "export"
    with pytest.raises(SystemExit) as exit_:
        synth_main(["export", str(run_dir), "--out", str(out), "--max-mia-auc", "0.0"])
    assert exit_.value.code == 3 and not out.exists()
    mia = res["final"]["generative"]["validation"]["mia_auc"]
    err = capsys.readouterr().err
    assert f"mia_auc = {mia:.4g} (limit: <= 0)" in err and "Traceback" not in err
    synth_main(["export", str(run_dir), "--out", str(out), "--max-mia-auc", "none"])  # check off: passes
    assert json.loads((out / CARD).read_text())["gate"]["thresholds"]["max_mia_auc"] is None


def test_a_table_changed_after_validation_is_refused(fedavg_run, tmp_path, capsys):
    run_dir, res = fedavg_run
    copy = tmp_path / "r"
    shutil.copytree(run_dir, copy)
    path = copy / res["final"]["generative"]["synthetic"]["path"]
    table = pl.read_parquet(path)
    table.with_columns(pl.col("time") * 1.5).write_parquet(path)
    with pytest.raises(SystemExit) as exit_:
        synth_main(["export", str(copy), "--out", str(tmp_path / "export")])
    assert exit_.value.code == 1 and "differs from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        synth_main(["export", str(copy), "--generator", "node7", "--out", str(tmp_path / "export")])
    assert exit_.value.code == 1 and "no generator 'node7'" in capsys.readouterr().err
