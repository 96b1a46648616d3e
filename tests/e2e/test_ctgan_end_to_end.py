"""CTGAN end to end (in process, as the CLI composes it): the normaliser fitted from node sums, FedAvg
training of generator and critic, a synthetic table in the guide's schema, bit-for-bit reproducible."""

from __future__ import annotations

import polars as pl
import pytest

from fedjax_rhd.generative import SYNTHETIC_FILE
from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.results import validate_results
from fedjax_rhd.sd_sharing import POOL_FILE
from tests.conftest import TINY, run_in_process

pytestmark = [pytest.mark.e2e, pytest.mark.slow]  # two GAN rounds compile for tens of seconds

# 600 patients, 2 rounds of 2 GAN steps per node, small networks, a 25-round normaliser fit
CTGAN = [
    "model=ctgan", *TINY, "strategy.rounds=2", "strategy.selection=last", "model.n_synthetic=150",
    "model.batch_size=50", "model.generator_dim=[32]", "model.critic_dim=[32]", "model.embedding_dim=16",
    "model.mode_max_iter=25",
]  # fmt: skip


def test_a_tiny_federated_ctgan_run_writes_a_reproducible_synthetic_table(
    tmp_path, tiny_data_root, mds_guide
):
    a = run_in_process(CTGAN, tmp_path / "a", tiny_data_root)
    validate_results(a)
    gen = a["final"]["generative"]
    assert gen["model"] == "ctgan" and gen["trained_on"] == "global" and "mixture" not in gen
    columns = gen["transform"]["columns"]
    assert list(columns) == [f.name for f in mds_guide.features if f.kind == "continuous"] + ["log_time"]
    for fitted in columns.values():
        assert 1 <= len(fitted["weights"]) <= 10 and abs(sum(fitted["weights"]) - 1) < 1e-5
    synthetic = pl.read_parquet(tmp_path / "a" / SYNTHETIC_FILE)
    assert synthetic.height == 150 and impossible_values(synthetic, mds_guide)["total"] == 0
    assert (synthetic["time"] > 0).all()
    assert gen["validation"]["validity_total"] == 0
    assert set(gen["transform"]["clipped"]) == {*columns} - {"log_time"} | {"time"}
    b = run_in_process(CTGAN, tmp_path / "b", tiny_data_root)
    assert synthetic.equals(pl.read_parquet(tmp_path / "b" / SYNTHETIC_FILE))
    assert a["final"]["generative"] == b["final"]["generative"]
    assert [r["train_loss"] for r in a["rounds"]] == [r["train_loss"] for r in b["rounds"]]


def test_ctgan_sd_sharing_pools_gated_rows_and_retrains_on_them(tmp_path, tiny_data_root, mds_guide):
    """Issue 18 item 4 for CTGAN: nodes train alone, send only rows their gate passed, the manager
    retrains (normaliser refitted on the pool) and samples the final table."""
    overrides = [
        *CTGAN, "strategy=sd_sharing", "strategy.selection=validation", "strategy.retrain_on_pool=true",
        "strategy.gate.max_dcr_closer_to_train_share=null", "strategy.gate.max_mia_auc=null",
    ]  # fmt: skip
    res = run_in_process(overrides, tmp_path / "r", tiny_data_root)
    validate_results(res)
    gen, sharing = res["final"]["generative"], res["final"]["generative"]["sharing"]
    assert gen["model"] == "ctgan" and gen["trained_on"] == "sd_pool_retrained"
    # every round trained each node alone: three separate losses, no aggregate
    assert all(len(r["train_loss"]) == 3 for r in res["rounds"])
    sent = [n["n_sent"] for n in sharing["nodes"]]
    assert sent == [n["n_sampled"] if n["passed"] else 0 for n in sharing["nodes"]]
    pool = pl.read_parquet(tmp_path / "r" / POOL_FILE)
    assert pool.height == sharing["n_pool"] == sum(sent) > 0
    assert sharing["retrained"]["n_train"] + sharing["retrained"]["n_val"] == pool.height
    table = pl.read_parquet(tmp_path / "r" / SYNTHETIC_FILE)
    assert table.height == gen["synthetic"]["n"] == 150 and impossible_values(table, mds_guide)["total"] == 0
    assert (table["time"] > 0).all() and gen["validation"]["validity_total"] == 0


def test_a_federated_ctgan_with_the_conditional_outcome_draw_runs_end_to_end(
    tmp_path, tiny_data_root, mds_guide
):
    """``model.outcome_draw=conditional`` through the CLI's composition: the outcome model trained by FedAvg
    with the GAN, the table in the guide's schema, times positive and within the federation's follow-up."""
    overrides = [*CTGAN, "model.outcome_draw=conditional", "model.outcome_dim=[]"]
    res = run_in_process(overrides, tmp_path, tiny_data_root)
    validate_results(res)
    gen = res["final"]["generative"]
    table = pl.read_parquet(tmp_path / SYNTHETIC_FILE)
    assert table.height == 150 and impossible_values(table, mds_guide)["total"] == 0
    assert (table["time"] > 0).all() and gen["validation"]["validity_total"] == 0
    assert "time" in gen["transform"]["clipped"]
