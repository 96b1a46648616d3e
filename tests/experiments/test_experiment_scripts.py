"""Every script under ``experiments/`` (bench/ has its own tests) runs on tiny inputs, in process.

Each test calls the script's ``main(argv)`` on a fake sweep (:mod:`tests.experiments.fake_sweep`)
or on tiny sizes, so an import or interface change fails here, not on a results page. Scripts
that read the real cohorts in ``../shared/data`` are run on simulated inputs for their logic;
only the real-data read is skipped where that folder is absent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.experiments.fake_sweep import write_fake_run

ROOT = Path(__file__).resolve().parents[2]


def script(rel: str) -> ModuleType:
    """Import ``experiments/<rel>`` as a module (scripts are not a package)."""
    path = ROOT / "experiments" / rel
    name = "exp_" + rel.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def three_strategies(root: Path, seeds=(0, 1), **kw) -> Path:
    for strategy in ("fedavg", "centralized", "local"):
        for s in seeds:
            write_fake_run(root / f"{strategy}_s{s}", strategy=strategy, seed=s, **kw)
    return root


def test_real_cohorts_compare(tmp_path, capsys):
    three_strategies(
        tmp_path / "mds_iwgpm", use_case="mds_iwgpm", extra_columns=("score_ipssm_stored", "score_ipssr")
    )
    three_strategies(tmp_path / "aml_beat", use_case="aml_beat", nodes=("c1", "c2", "c3", "c4"))
    script("real_cohorts/compare.py").main([str(tmp_path), "--n-boot", "50"])
    text = (tmp_path / "comparison.md").read_text()
    assert text.startswith("Produced at commit")
    assert "### mds_iwgpm" in text and "### aml_beat" in text
    assert "FedAvg global − ELN (scored rows)" in text and "Intervals resample: patients" in text


def test_real_cohorts_peer_cox_on_the_simulated_cohort(small_cohort, mds_guide):
    # The real-data read (IWG-PM) is the only part not run here; the Cox fit runs on the
    # simulated MDS cohort through the same data layer, and the pairing on FedAvg's rows.
    import numpy as np
    import polars as pl

    from fedjax_rhd.report.sweep import SweepRun

    peer = script("real_cohorts/peer_cox.py")
    table = small_cohort[0]
    fits = {s: peer.cox_test_risk(table, mds_guide, s) for s in (0, 1)}
    by_id = table.select("patient_id", "time", "event")
    fedavg = {}
    for s, (risk, ids, penalizer) in fits.items():
        assert penalizer in peer.PENALIZERS and len(risk) == len(ids)
        rows = pl.DataFrame({"patient_id": list(ids)}).join(
            by_id, on="patient_id", how="left", maintain_order="left"
        )
        noise = np.random.default_rng(s).normal(scale=0.5, size=len(ids))
        stored = [None if i % 4 == 0 else 1.0 for i in range(len(ids))]
        pred = rows.with_columns(
            pl.Series("risk", risk + noise), pl.Series("score_ipssm_stored", stored, pl.Float64)
        )
        fedavg[s] = [SweepRun(Path(f"s{s}/results.json"), {"config": {"seed": {"split": s}}}, pred)]
    text = peer.compare(fedavg, fits.__getitem__, n_boot=50)
    assert "| mean ± sd |" in text and "FedAvg DeepSurv − penalised Cox" in text
    assert "patients (" in text


def test_strategies_compare_with_training_replicates(tmp_path):
    for strategy in ("centralized", "fedavg", "fedprox"):
        for s in (0, 1):
            for init in (0, 1):  # two training replicates per split seed
                write_fake_run(
                    tmp_path / f"{strategy}_s{s}_i{init}",
                    strategy=strategy,
                    seed=s,
                    init=init,
                    personalized=True,
                )
    script("strategies/compare.py").main([str(tmp_path), "--n-boot", "50"])
    text = (tmp_path / "strategies.md").read_text()
    assert "| FedProx |" in text and "Personalised FedAvg" in text
    assert "training seeds (2-2 per split seed, drawn with replacement)" in text


def test_strategies_tune(tmp_path, capsys):
    for mu in (0.01, 0.1):
        for s in (0, 1):
            write_fake_run(
                tmp_path / f"mu{mu}_s{s}",
                strategy="fedprox",
                seed=s,
                strategy_extra={"client": {"proximal_mu": mu}},
            )
    script("strategies/tune.py").main([str(tmp_path)])
    out = capsys.readouterr().out
    assert "| fedprox | client.proximal_mu | 0.01 |" in out and "fedprox: client.proximal_mu = " in out


@pytest.mark.parametrize("use_case", ["mds", "mds_iwgpm"])
def test_savae_mds_compare_names_the_cohort_it_read(tmp_path, use_case):
    for model in ("savae", "deepsurv"):
        for strategy in ("centralized", "fedavg"):
            for s in (0, 1):
                write_fake_run(tmp_path / model / f"{strategy}_s{s}", strategy=strategy, seed=s, model=model,
                               use_case=use_case)  # fmt: skip
    out = tmp_path / "results.md"
    script("savae_mds/compare.py").main([str(tmp_path), "--out", str(out), "--n-boot", "50"])
    text = out.read_text()
    # The page's title comes from the runs: the real IWG-PM page is no longer "Simulated MDS (4,427 ...)".
    assert f"### {use_case} (40 patients, split=three), 2 split seeds" in text
    assert "Simulated MDS" not in text and "4,427" not in text
    assert "Paired differences, SAVAE − DeepSurv" in text and "The Δ Harrell C intervals resample" in text


def test_simulation_study_decides_every_claim_on_its_interval(tmp_path):
    nodes = ("node1", "node2", "node3")
    for use_case in ("mds", "cmml"):
        for scenario in ("best", "worst"):
            three_strategies(
                tmp_path / f"{use_case}_{scenario}", use_case=use_case, scenario=scenario, nodes=nodes
            )
    out = tmp_path / "study.md"
    script("simulation/study.py").main([str(tmp_path), "--out", str(out), "--n-boot", "50"])
    text = out.read_text()
    assert "| mds | worst | 2 |" in text and "| cmml | best | 2 |" in text
    for claim in ("within ±0.02", "more than 0.03 below", "above 0", "below 0"):
        assert claim in text, claim
    # Three outcome words only, never a verdict from the point estimate.
    assert "NOT" not in text and "(within 0.02)" not in text
    assert "Every interval on this page resamples: patients" in text


def test_simulation_compare_layers(tmp_path, capsys):
    for arm, salt in (("with", "best"), ("without", "best")):
        for s in (0, 1):
            write_fake_run(tmp_path / arm / f"fedavg_s{s}", strategy="fedavg", seed=s, scenario=salt,
                           model="deepsurv" if arm == "with" else "savae")  # fmt: skip
    script("simulation/compare_layers.py").main(
        [str(tmp_path / "with"), str(tmp_path / "without"), "--n-boot", "50"]
    )
    out = capsys.readouterr().out
    assert "| fedavg | 0,1 |" in out and "Intervals resample: patients" in out


@pytest.mark.parametrize("use_case", ["mds", "cmml"])
def test_simulation_calibrate(use_case, capsys):
    script("simulation/calibrate.py").main([use_case, "--n", "400"])
    out = capsys.readouterr().out
    assert "ETA_CENTRE = " in out and "WEIBULL_SHAPE = " in out


def test_simulation_calibrate_aml_mm_wsi(tmp_path):
    mod = script("simulation/calibrate_aml_mm_wsi.py")
    mod.main(["--out", str(tmp_path), "--large", "300"])
    for name in ("aml", "mm", "mds_wsi"):
        text = (tmp_path / f"calibration_{name}.md").read_text()
        assert "300" in text and "20000" not in text, name


def test_simulation_treatment_check(capsys):
    script("simulation/treatment_check.py").main(["--n", "1500"])
    out = capsys.readouterr().out
    assert "## MDS (n = 1500" in out and "## CMML (n = 1500" in out


def test_savae_benchmark_two_tiny_folds(tmp_path):
    # One model keeps it to seconds: the script's path (folds, training, metrics, summary) is what
    # rots; every model's training is covered by tests/test_contract.py.
    tiny = ["strategy.rounds=2", "strategy.patience=null", "strategy.client.local_epochs=1"]
    script("savae_benchmark/run.py").main(
        [
            "--out",
            str(tmp_path),
            "--datasets",
            "gbsg2",
            "--models",
            "coxph",
            "--folds",
            "2",
            "--override",
            *tiny,
        ]
    )
    summary = (tmp_path / "summary.md").read_text()
    assert summary.startswith("Produced at commit") and "| gbsg2 | coxph |" in summary
    assert len((tmp_path / "folds.csv").read_text().splitlines()) == 1 + 2
