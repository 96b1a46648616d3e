"""``strategy=sd_sharing`` end to end (in process, as the CLI composes it): the combinations it refuses,
and tiny runs of both generators whose results validate, whose pool is the passing nodes' rows, and
which repeat bit for bit."""

from __future__ import annotations

import dataclasses

import polars as pl
import pytest

from fedjax_rhd.generative import SYNTHETIC_FILE
from fedjax_rhd.metrics.synthetic import PrivacyThresholds, impossible_values
from fedjax_rhd.results import validate_results
from fedjax_rhd.sd_sharing import POOL_FILE
from tests.conftest import compose, run_in_process
from tests.e2e.conftest import GENERATIVE

pytestmark = pytest.mark.e2e

BN = [
    "model=bn", "strategy=sd_sharing", "use_case.n_patients=600", "bootstrap=50", "progress=false",
    "model.candidates=3", "model.max_iter=20", "model.hierarchy=[]", "model.n_synthetic=300",
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model=deepsurv"], "needs a generative model"),
        (["model=vae_bgm", "backend=flower"], "backend=simulator"),
        (
            ["model=vae_bgm", "split.val_fraction=0", "strategy.selection=last", "strategy.patience=null"],
            "split.val_fraction > 0",
        ),  # fmt: skip
        (["model=vae_bgm", "fidelity_every=1"], "fidelity_every=0"),
        (["model=bn", "resume=somewhere"], "resume"),
    ],
)
def test_sd_sharing_refuses_what_it_cannot_run(overrides, message):
    from fedjax_rhd.config import run_config

    with pytest.raises(ValueError, match=message):
        run_config(compose(["strategy=sd_sharing", *overrides]))


def test_retrain_on_pool_belongs_to_sd_sharing():
    from fedjax_rhd.config import run_config

    with pytest.raises(ValueError, match="retrain_on_pool applies to strategy=sd_sharing"):
        run_config(compose(["model=vae_bgm", "strategy=local", "strategy.retrain_on_pool=true"]))
    s = run_config(compose(["model=bn", "strategy=sd_sharing", "strategy.retrain_on_pool=true"])).strategy
    assert s.retrain_on_pool and s.gate == PrivacyThresholds()


def _sharing(res):
    return res["final"]["generative"]["sharing"]


@pytest.mark.slow
def test_bn_sd_sharing_pools_the_passing_nodes_rows_reproducibly(tmp_path, tiny_data_root, mds_guide):
    first = run_in_process(BN, tmp_path / "a", tiny_data_root)
    second = run_in_process(BN, tmp_path / "b", tiny_data_root)
    validate_results(first)
    sharing, gen = _sharing(first), first["final"]["generative"]
    assert [n["node"] for n in sharing["nodes"]] == ["node1", "node2", "node3"]
    assert sum(n["n_sampled"] for n in sharing["nodes"]) == 300
    sent = [n["n_sent"] for n in sharing["nodes"]]
    assert sent == [n["n_sampled"] if n["passed"] else 0 for n in sharing["nodes"]]
    assert all(bool(n["failing"]) != n["passed"] for n in sharing["nodes"])
    assert sharing["n_pool"] == sum(sent) == gen["synthetic"]["n"]
    table = pl.read_parquet(tmp_path / "a" / SYNTHETIC_FILE)
    assert table.height == sum(sent) and impossible_values(table, mds_guide)["total"] == 0
    assert gen["trained_on"] == "sd_pool" and gen["validation"]["validity_total"] == 0
    # bit for bit: the same verdicts, metrics and rows
    assert _sharing(second) == sharing
    assert pl.read_parquet(tmp_path / "b" / SYNTHETIC_FILE).equals(table)
    assert second["final"]["generative"]["synthetic"]["id"] == gen["synthetic"]["id"]
    # the export card records what each node sent (gate opened: tiny data)
    from fedjax_rhd.synthetic_export import export_run

    loose = PrivacyThresholds(**{f.name: None for f in dataclasses.fields(PrivacyThresholds)})
    card = export_run(tmp_path / "a", tmp_path / "export", thresholds=loose)
    assert card["generator"]["sharing"]["n_pool"] == sharing["n_pool"]


@pytest.mark.slow
def test_vae_bgm_sd_sharing_retrains_on_the_pool(tmp_path, tiny_data_root, mds_guide):
    run_dir = tmp_path / "r"
    overrides = [
        *GENERATIVE,
        "strategy=sd_sharing",
        "strategy.retrain_on_pool=true",
        "strategy.gate.max_dcr_closer_to_train_share=null",
    ]
    res = run_in_process(overrides, run_dir, tiny_data_root)
    validate_results(res)
    gen, sharing = res["final"]["generative"], _sharing(res)
    assert gen["trained_on"] == "sd_pool_retrained" and sharing["retrain_on_pool"]
    pool = pl.read_parquet(run_dir / POOL_FILE)
    assert pool.height == sharing["n_pool"] == sharing["retrained"]["n_train"] + sharing["retrained"]["n_val"]
    table = pl.read_parquet(run_dir / SYNTHETIC_FILE)
    assert table.height == gen["synthetic"]["n"] == 150 and impossible_values(table, mds_guide)["total"] == 0
    assert [r["participation"]["aggregated"] for r in res["rounds"]][0] == ["node1", "node2", "node3"]
