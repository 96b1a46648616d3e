"""The Bayesian network end to end (in process, as the CLI composes it): the two-step protocol, a
synthetic table in the guide's schema, a results.json whose generative ``final`` validates; under
Flower's simulation engine the same network as under the simulator."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from fedjax_rhd.cli import objective
from fedjax_rhd.generative import SYNTHETIC_FILE
from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.results import validate_results
from tests.conftest import compose, run_in_process

pytestmark = pytest.mark.e2e

BN = [
    "model=bn", "strategy=bn_two_step", "use_case.n_patients=600", "bootstrap=50", "progress=false",
    "model.candidates=3", "model.max_iter=20", "model.hierarchy=[event]", "model.hierarchy_warmup=30",
    "model.hierarchy_samples=30", "model.n_synthetic=300",
]  # fmt: skip


@pytest.mark.parametrize(("model", "strategy"), [("bn", "fedavg"), ("vae_bgm", "bn_two_step")])
def test_bn_and_bn_two_step_go_together(model, strategy):
    from fedjax_rhd.config import run_config

    with pytest.raises(ValueError, match="bn_two_step"):
        run_config(compose([f"model={model}", f"strategy={strategy}"]))


def test_bn_composes_with_its_protocol_and_the_reference_columns():
    from fedjax_rhd.config import run_config

    for strategy in ("bn_two_step", "local"):
        cfg = run_config(compose(["model=bn", f"strategy={strategy}", "split=five", "scenario=worst"]))
        assert cfg.model.name == "bn" and cfg.strategy.name == strategy and cfg.split.name == "five"


@pytest.mark.slow
def test_bn_two_step_run_writes_a_valid_synthetic_table(tmp_path, tiny_data_root, mds_guide):
    run_dir = tmp_path / "r"
    res = run_in_process(BN, run_dir, tiny_data_root)
    validate_results(res)
    final = res["final"]
    assert final["kind"] == "generative" and final["rounds_run"] == 2
    assert [r["step"] for r in res["rounds"]] == ["structure", "counts"]
    # what a sweeper gets: the federated validation NLL of the finished network (never the holdout)
    nll = res["final"]["generative"]["network"]["validation_nll"]
    assert objective(final) == final["validation_objective"] == res["rounds"][1]["val_loss_federated"]
    assert (
        final["validation_objective"] == pytest.approx(nll["nll_per_patient"]) and nll["nll_per_patient"] > 0
    )
    assert [p["n_scored"] + p["n_unscored"] for p in nll["nodes"]] == [n["n_val"] for n in res["nodes"]]
    gen = final["generative"]
    assert gen["model"] == "bn" and gen["trained_on"] == "global" and gen["synthetic"]["n"] == 300
    net = gen["network"]
    assert net["variables"] == len(mds_guide.features) + 2 and net["n_edges"] == len(net["edges"])
    assert not any(child in ("age", "sex_male") for _, child in net["edges"])
    assert not any(p in ("time", "event") and c not in ("time", "event") for p, c in net["edges"])
    assert [s["node"] for s in net["node_structures"]] == ["node1", "node2", "node3"]
    assert net["hierarchy"][0]["variable"] == "event" and net["hierarchy"][0]["kappa_median"] > 0
    synthetic = pl.read_parquet(run_dir / SYNTHETIC_FILE)
    assert synthetic.height == 300 and impossible_values(synthetic, mds_guide)["total"] == 0
    assert gen["validation"]["validity_total"] == 0 and 0 <= gen["validation"]["csf"] <= 1
    assert (run_dir / res["checkpoint"]).exists()
    # the export records the network where VAE-BGM records its mixture (gate opened: tiny data)
    from fedjax_rhd.metrics.synthetic import PrivacyThresholds
    from fedjax_rhd.synthetic_export import export_run

    loose = PrivacyThresholds(**{f.name: None for f in dataclasses.fields(PrivacyThresholds)})
    card = export_run(run_dir, tmp_path / "export", thresholds=loose)
    assert card["generator"]["network"]["edges"] == net["edges"] and "mixture" not in card["generator"]


@pytest.mark.slow
def test_local_fits_every_nodes_own_network(tmp_path, tiny_data_root):
    res = run_in_process([*BN, "strategy=local"], tmp_path / "r", tiny_data_root)
    validate_results(res)
    gen = res["final"]["generative"]
    assert [gen["trained_on"], *(b["trained_on"] for b in gen["nodes"])] == ["node1", "node2", "node3"]
    for block in [gen, *gen["nodes"]]:
        assert block["network"]["hierarchy"] is None  # one node: nothing to compare
        assert block["network"]["node_structures"][0]["shd_to_consensus"] == 0
        assert block["validation"]["privacy_members"] == block["trained_on"]
        assert [p["node"] for p in block["network"]["validation_nll"]["nodes"]] == [block["trained_on"]]
    assert all(v is not None for v in res["rounds"][1]["val_loss"])  # each node's own network


@pytest.mark.slow
def test_flower_simulation_fits_the_simulators_network(tmp_path, tiny_data_root):
    a = run_in_process(BN, tmp_path / "sim", tiny_data_root)
    b = run_in_process([*BN, "backend=flower"], tmp_path / "flower", tiny_data_root)
    for key in ("edges", "states", "bin_edges", "node_structures", "validation_nll"):
        assert a["final"]["generative"]["network"][key] == b["final"]["generative"]["network"][key]
    assert pl.read_parquet(tmp_path / "sim" / SYNTHETIC_FILE).equals(
        pl.read_parquet(tmp_path / "flower" / SYNTHETIC_FILE)
    )
