"""Tiny end-to-end runs: the real CLI (one multirun: valid results, reproducible across processes,
compiled once) and in-process runs through Hydra's compose API for the rest."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fedjax_rhd.results import validate_results
from tests.conftest import TINY, run_in_process, scramble_test_outcomes

pytestmark = pytest.mark.e2e


def _cli(args: list[str], cwd: Path, data_root: Path, hashseed: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONHASHSEED": hashseed,
        "FEDJAX_RHD_DATA_ROOT": str(data_root),
        "HYDRA_FULL_ERROR": "1",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "fedjax_rhd", *args], env=env, capture_output=True, text=True, cwd=cwd
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _results(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("results.json"))]


def _metrics(res: dict) -> dict:
    return {"rounds": res["rounds"], "final": res["final"], "dataset": res["dataset"]}


@pytest.fixture(scope="module")
def multirun(tmp_path_factory, tiny_data_root) -> dict[tuple[str, int], tuple[Path, dict]]:
    """One real multirun (fedavg and local, split seeds 0 and 1) in a fresh process with
    PYTHONHASHSEED=12345: (run directory, results) by (strategy, seed.split). (First in the suite to use
    the shared data root, it builds TINY's cohort there.)"""
    tmp = tmp_path_factory.mktemp("multirun")
    sweep = ["-m", *TINY, "strategy=fedavg,local", "seed.split=0,1", f"hydra.sweep.dir={tmp / 'm'}"]
    _cli(sweep, tmp, tiny_data_root, hashseed="12345")
    runs = [(p.parent, json.loads(p.read_text())) for p in sorted((tmp / "m").rglob("results.json"))]
    assert len(runs) == 4
    return {(r["config"]["strategy"]["name"], r["config"]["seed"]["split"]): (d, r) for d, r in runs}


def test_cli_writes_valid_results_identical_across_processes(tmp_path, tiny_data_root, multirun):
    """The real command line (the multirun's FedAvg job, split seed 1) writes a valid results.json with
    the checkpoint beside it, and its metrics are bit-identical to the same run in this process (another
    process, another hash seed; the job's round was compiled by the job before it)."""
    run_dir, a = multirun[("fedavg", 1)]
    run_in_process([*TINY, "seed.split=1"], tmp_path / "here", tiny_data_root)
    (here,) = _results(tmp_path / "here")
    assert _metrics(a) == _metrics(here)  # bit-identical floats, not approximately equal
    validate_results(a)
    assert a["final"]["test_set"] == "benchmark_holdout" and "federated_evaluation" not in a["final"]
    assert (run_dir / a["checkpoint"]).is_file()
    assert len(a["rounds"]) == 3
    assert [n["name"] for n in a["final"]["nodes"]] == ["node1", "node2", "node3"]
    assert a["final"]["global_model"] is not None
    assert 0.5 < a["final"]["oracle_c_index_test"]["estimate"] < 1
    card = json.loads((tiny_data_root / "datasets" / a["dataset"]["name"] / "dataset.json").read_text())
    assert card["id"] == a["dataset"]["id"]


def test_multirun_reuses_the_compiled_round(multirun):
    timing = {key: res["timing"] for key, (_, res) in multirun.items()}
    # One compile per distinct (algorithm, shape); the second seed reuses it in-process.
    assert timing[("fedavg", 0)]["round_compilations"] == 1
    assert timing[("fedavg", 1)]["round_compilations"] == 0
    assert timing[("local", 0)]["round_compilations"] == 1
    assert timing[("local", 1)]["round_compilations"] == 0
    assert multirun[("local", 0)][1]["final"]["global_model"] is None


def test_worst_scenario_runs_and_records_what_it_removed(tmp_path, tiny_data_root):
    res = run_in_process([*TINY, "scenario=worst"], tmp_path / "w", tiny_data_root)
    assert res["scenario"]["name"] == "worst"
    assert res["scenario"]["nodes"][1]["missing_groups"] == ["genomic"]
    assert res["scenario"]["nodes"][2]["missing_groups"] == ["cytogenetic"]


def test_clinical_score_on_the_model_test_rows(tmp_path, tiny_data_root):
    import numpy as np
    import polars as pl

    from fedjax_rhd.metrics.concordance import concordance_index

    res = run_in_process(TINY, tmp_path / "run", tiny_data_root)
    cs = res["final"]["clinical_score"]
    assert cs["name"] == "IPSS-M"
    pred = pl.read_parquet(tmp_path / "run" / "test_predictions.parquet")
    assert pred.height == res["final"]["n_test"]
    # The score column is IPSS-M (mean scenario) recomputed from the cohort's own rows.
    dataset = tiny_data_root / "datasets" / res["dataset"]["name"]
    table = pl.read_parquet(next(dataset.rglob("simulated.parquet")))
    rows = pred.join(table, on="patient_id", how="left", suffix="_table").filter(
        pl.col("clinical_score").is_not_null()
    )
    assert rows.height == cs["n_scored"] == pred.height  # IPSS-M fills missing inputs
    cyto = rows["ipssr_cyto"].replace_strict(
        {"very_good": 0.0, "good": 1.0, "intermediate": 2.0, "poor": 3.0, "very_poor": 4.0}
    )
    from fedjax_rhd.scores import ipss

    num = lambda c: rows[c].cast(pl.Float64).fill_null(np.nan).to_numpy()  # noqa: E731
    variables = ipss.ipssm_variables(
        num("hb"),
        num("plt"),
        num("bm_blasts"),
        cyto.cast(pl.Float64).fill_null(np.nan).to_numpy(),
        {g: num(g) for g in ipss.IPSSM_GENES if g in rows.columns},
        del5q=num("del5q"),
        del7_7q=num("del7_7q"),
        complex_karyotype=num("complex_karyotype"),
    )
    expected = ipss.ipssm_score(variables, "mean")
    np.testing.assert_array_equal(rows["clinical_score"].to_numpy(), expected)
    c = concordance_index(
        rows["time"].to_numpy(), rows["event"].to_numpy(), rows["clinical_score"].to_numpy()
    )
    assert cs["c_index_test"]["estimate"] == c


@pytest.mark.slow  # the same numbers are checked per node in tests/federation/test_federated_evaluation.py
def test_natural_split_evaluates_each_centre_on_its_own_test_part(tmp_path):
    """Three simulated hospitals (mds_dialects) as real centres: results.json says the test set is
    federated, and each centre's C-index is Harrell's C on its own rows of test_predictions.parquet."""
    import numpy as np
    import polars as pl

    from fedjax_rhd.config import run_config
    from fedjax_rhd.metrics import concordance_index
    from fedjax_rhd.metrics.concordance import concordance_summary
    from fedjax_rhd.sources import load_use_case
    from tests.conftest import compose

    args = [
        "use_case=mds_dialects",
        "use_case.n_patients=600",
        "split=natural",
        *TINY[1:],
        "strategy.rounds=2",
    ]
    res = run_in_process(args, tmp_path / "run", tmp_path / "data")
    validate_results(res)
    final = res["final"]
    assert final["test_set"] == "federated"
    fe = final["federated_evaluation"]
    assert [n["name"] for n in fe["nodes"]] == [n["name"] for n in final["nodes"]]
    assert sorted(n["name"] for n in fe["nodes"]) == ["centreA", "centreB", "centreC"]
    assert fe["n_test"] == final["n_test"] and fe["n_test_without_node"] == 0

    # the centre of each test patient, from the table (the cached dataset the run built)
    config = run_config(compose([*args, f"data_root={tmp_path / 'data'}"]))
    table = load_use_case(
        config.use_case, seed_data=config.seed.data, data_root=config.data_root, real_data_root=None
    ).table
    centre = dict(zip(table["patient_id"], table["centre"], strict=True))
    pred = pl.read_parquet(tmp_path / "run" / "test_predictions.parquet")
    pred = pred.with_columns(pl.Series("node", [f"centre{centre[p]}" for p in pred["patient_id"]]))
    pairs = np.zeros(3, dtype=np.int64)
    for node in fe["nodes"]:
        rows = pred.filter(pl.col("node") == node["name"])
        time, event, risk = (rows[c].to_numpy().astype(np.float64) for c in ("time", "event", "risk"))
        assert (node["n_test"], node["n_events"]) == (rows.height, int(event.sum()))
        assert node["c_index"] == concordance_index(time, event, risk)  # exactly
        pairs += concordance_summary(time, event, risk)  # (concordant, tied, comparable)
    assert fe["c_index_test_stratified"] == (pairs[0] + pairs[1] / 2) / pairs[2]
    # the pooled benchmark metrics stay beside it (same rows here, so the same evaluation times)
    assert fe["survival_eval"]["times"] == final["survival_eval"]["times"]
    assert fe["ibs_test"] == pytest.approx(final["ibs_test"], rel=1e-6)


def test_aml_beat_natural_split_runs(tmp_path):
    from fedjax_rhd.cohorts import resolve_real_data_root

    if not (resolve_real_data_root() / "aml_beat2").is_dir():
        pytest.skip("real cohort data absent")
    args = ["use_case=aml_beat", "split=natural", *TINY[1:]]
    res = run_in_process(args, tmp_path / "run", tmp_path / "data")
    nodes = res["final"]["nodes"]
    assert len(nodes) == 8 and all(n["name"].startswith("centre") for n in nodes)
    assert [n["n_train"] for n in nodes] == sorted((n["n_train"] for n in nodes), reverse=True)
    assert res["final"]["clinical_score"]["name"] == "ELN 2022"
    assert 0 < res["final"]["clinical_score"]["n_scored"] <= res["final"]["n_test"]


def test_dp_fedavg_run_records_its_epsilon(tmp_path, tiny_data_root):
    """strategy.dp from the command line: results.json carries the mechanism and ε from dp-accounting."""
    from fedjax_rhd.strategies.dp import epsilon

    overrides = [*TINY, "strategy.dp.clip=0.1", "strategy.dp.noise_multiplier=2.0"]
    res = run_in_process(overrides, tmp_path / "dp", tiny_data_root)
    validate_results(res)
    dp = res["final"]["dp"]
    rounds = len(res["rounds"])
    assert dp["rounds_accounted"] == rounds and dp["clip"] == 0.1 and dp["noise_multiplier"] == 2.0
    assert dp["epsilon_rdp"] == epsilon(2.0, rounds, 1e-5, "rdp")
    assert dp["epsilon_pld"] <= dp["epsilon_rdp"]  # PLD is the tighter accountant here
    assert len(dp["epsilon_rdp_per_round"]) == rounds


def test_a_fixed_budget_trains_on_every_node_row(tmp_path, tiny_data_root):
    """split.val_fraction=0 with strategy.selection=last: no validation part, the last round is kept."""
    overrides = [*TINY, "split.val_fraction=0", "strategy.selection=last", "strategy.patience=null"]
    res = run_in_process(overrides, tmp_path / "fixed", tiny_data_root)
    validate_results(res)
    assert all(node["n_val"] == 0 for node in res["nodes"])
    assert res["final"]["best_round"] == len(res["rounds"]) == res["config"]["strategy"]["rounds"]
    assert all(r["val_loss_federated"] is None for r in res["rounds"])


def test_the_objective_a_search_minimises_never_sees_a_test_row(tmp_path, tiny_data_root, monkeypatch):
    """The task function's value is the selected round's federated validation loss; scrambling every
    test row's outcome changes the test C-index and leaves the objective bit-identical."""
    overrides = [*TINY, "strategy.patience=2"]
    plain = run_in_process(overrides, tmp_path / "plain", tiny_data_root)
    final = plain["final"]
    assert final["validation_objective"] == plain["rounds"][final["best_round"] - 1]["val_loss_federated"]

    scramble_test_outcomes(monkeypatch, seed=0)
    other = run_in_process(overrides, tmp_path / "scrambled", tiny_data_root)
    assert other["final"]["validation_objective"] == final["validation_objective"]

    def training(res):  # the per-round test curves (c_index_test_*) do see the scrambled rows
        return [{k: r[k] for k in ("train_loss", "val_loss", "val_loss_federated")} for r in res["rounds"]]

    assert training(other) == training(plain)
    assert other["final"]["c_index_test"]["estimate"] != final["c_index_test"]["estimate"]
