"""VAE-BGM end to end (in process, as the CLI composes it): FedAvg training, the federated mixture,
a synthetic table in the guide's schema and a results.json whose generative ``final`` validates."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.cli import objective
from fedjax_rhd.generative import REPORT_FILE, SYNTHETIC_FILE
from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.report import write_report
from fedjax_rhd.results import validate_results
from tests.conftest import run_in_process
from tests.e2e.conftest import GENERATIVE

pytestmark = pytest.mark.e2e


def test_vae_bgm_run_writes_a_valid_synthetic_table(fedavg_run, mds_guide, tmp_path):
    run_dir, res = fedavg_run
    validate_results(res)
    final = res["final"]
    assert final["kind"] == "generative" and "c_index_test" not in final and "clinical_score" not in final
    gen = final["generative"]
    assert gen["trained_on"] == "global" and gen["synthetic"]["n"] == 150
    mixture = gen["mixture"]
    assert len(mixture["weights"]) == mixture["components"] == 10 - mixture["dropped"]
    assert min(mixture["counts"]) >= mixture["min_count"]
    synthetic = pl.read_parquet(run_dir / gen["synthetic"]["path"])
    assert (run_dir / SYNTHETIC_FILE).exists() and synthetic.height == 150
    assert impossible_values(synthetic, mds_guide)["total"] == 0
    val = gen["validation"]  # simulated cohort: the manager keeps the benchmark holdout
    assert val["validity_total"] == 0 and val["n_holdout"] == res["dataset"]["n_rows"] - val[
        "n_real_train"
    ] - sum(n["n_val"] for n in res["nodes"])
    assert 0 <= val["csf"] <= 1 and 0 <= val["gsf"] <= 1 and (run_dir / REPORT_FILE).exists()
    assert (run_dir / res["checkpoint"]).exists()
    # what the CLI hands a sweeper: the federated validation loss, never the holdout-based CSF
    assert (
        objective(final)
        == final["validation_objective"]
        == res["rounds"][final["best_round"] - 1]["val_loss_federated"]
    )
    # the report's synthetic section reads it: its validation row and Figure 3 from its rounds
    report = write_report([run_dir], tmp_path / "report", n_boot=10)
    assert report.rows == [] and [r.generator for r in report.synthetic] == ["fedavg (global)"]
    assert report.synthetic[0].values["csf"].mean == gen["validation"]["csf"]
    assert report.files["figure:fidelity_mds_best_three_vae_bgm.png"].exists()


@pytest.mark.slow
def test_local_samples_every_nodes_own_generator(tmp_path, tiny_data_root):
    res = run_in_process([*GENERATIVE, "strategy=local", "fidelity_every=2"], tmp_path / "r", tiny_data_root)
    validate_results(res)
    gen = res["final"]["generative"]
    # per round (1 and 2): each node's own generator, every one drawing the same 150 rows
    for record in res["rounds"]:
        fid = record["synthetic_fidelity"]
        assert list(fid["generators"]) == ["node1", "node2", "node3"] and fid["n_synthetic"] == 150
    assert [gen["trained_on"], *(b["trained_on"] for b in gen["nodes"])] == ["node1", "node2", "node3"]
    for block in [gen, *gen["nodes"]]:
        assert (tmp_path / "r" / block["synthetic"]["path"]).exists()
        assert block["validation"]["privacy_members"] == block["trained_on"]
        assert block["validation"]["validity_total"] == 0


@pytest.mark.slow
def test_a_generative_run_is_reproducible_bit_for_bit(tmp_path, tiny_data_root):
    a = run_in_process(GENERATIVE, tmp_path / "a", tiny_data_root)
    b = run_in_process(GENERATIVE, tmp_path / "b", tiny_data_root)
    assert pl.read_parquet(tmp_path / "a" / SYNTHETIC_FILE).equals(
        pl.read_parquet(tmp_path / "b" / SYNTHETIC_FILE)
    )
    assert a["final"]["generative"] == b["final"]["generative"]
    run_in_process([*GENERATIVE, "seed.synthetic=1"], tmp_path / "c", tiny_data_root)
    assert not pl.read_parquet(tmp_path / "c" / SYNTHETIC_FILE).equals(
        pl.read_parquet(tmp_path / "a" / SYNTHETIC_FILE)
    )


@pytest.mark.slow
def test_real_centres_keep_their_rows_so_nothing_is_validated(tmp_path, tiny_data_root, mds_guide):
    overrides = [*GENERATIVE, "split=natural", "scenario=worst", "fidelity_every=1"]
    res = run_in_process(overrides, tmp_path / "r", tiny_data_root)
    validate_results(res)
    assert not any("synthetic_fidelity" in r for r in res["rounds"])  # no real rows at the manager
    gen = res["final"]["generative"]
    assert res["final"]["test_set"] == "federated" and gen["validation"] is None
    assert "test_set=federated" in gen["validation_skipped"]
    synthetic = pl.read_parquet(tmp_path / "r" / SYNTHETIC_FILE)
    assert impossible_values(synthetic, mds_guide)["total"] == 0
    assert not (tmp_path / "r" / REPORT_FILE).exists()


def test_a_generative_model_refuses_a_reduced_use_case():
    from fedjax_rhd.config import run_config
    from tests.conftest import compose

    with pytest.raises(ValueError, match="use_case.reduce"):
        run_config(compose(["model=vae_bgm", "use_case=mm"]))


@pytest.mark.slow  # an optional head; the default head's run above keeps the default suite's end-to-end check
def test_the_row_outcome_head_runs_end_to_end(tmp_path, tiny_data_root, mds_guide):
    """``model.outcome_head=row model.outcome_hidden=[]`` composes from the command line, trains under FedAvg,
    checkpoints its outcome network and samples a valid, validated table."""
    overrides = [*GENERATIVE, "fidelity_every=0", "model.outcome_head=row", "model.outcome_hidden=[]"]
    res = run_in_process(overrides, tmp_path / "r", tiny_data_root)
    validate_results(res)
    assert res["config"]["model"]["outcome_head"] == "row" and res["config"]["model"]["outcome_hidden"] == []
    gen = res["final"]["generative"]
    synthetic = pl.read_parquet(tmp_path / "r" / gen["synthetic"]["path"])
    assert synthetic.height == 150 and impossible_values(synthetic, mds_guide)["total"] == 0
    assert (synthetic["time"] > 0).all() and gen["validation"]["tstr_difference"] is not None
    with np.load(tmp_path / "r" / res["checkpoint"]) as ckpt:
        assert any("outcome" in k for k in ckpt.files)
