"""Every script under ``experiments/`` (bench/ has its own tests) runs on tiny inputs, in process.

Each test calls the script's ``main(argv)`` on a fake sweep (:mod:`tests.experiments.fake_sweep`)
or on tiny sizes, so an import or interface change fails here, not on a results page. Scripts
that read the real cohorts in ``../shared/data`` are run on simulated inputs for their logic;
only the real-data read is skipped where that folder is absent.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from fedjax_rhd.cohorts import resolve_real_data_root
from fedjax_rhd.metrics.synthetic._columns import numeric_matrix
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
    assert text.count("Intervals resample:") >= 3  # the comparison table's and each personalised table's
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


def test_survival_table_run_on_a_tiny_params_file(tmp_path, monkeypatch):
    """The whole script with its sweeps run in process (one tiny use case, one seed, one baseline)."""
    import json

    import yaml

    from fedjax_rhd import pipeline
    from tests.conftest import run_in_process
    from tests.test_pipeline import TINY_PARAMS

    params = json.loads(json.dumps(TINY_PARAMS))
    params["use_cases"] = {"a": params["use_cases"]["a"]}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def sweeps_in_process(study, entry, out, data_root=None):
        default = pipeline.compose("config", [f"strategy={study.strategy['name']}"])["strategy"]
        for command in pipeline.sweep_commands(study, entry, out, default, data_root):
            overrides = [a for a in command[4:] if not a.startswith(("hydra", "data_root="))]
            sweep_dir = Path(next(a for a in command if a.startswith("hydra.sweep.dir=")).split("=", 1)[1])
            assert not any("," in a for a in overrides), "the tiny params have one value per key"
            run_in_process(overrides, sweep_dir / "0", data_root)

    monkeypatch.setattr(pipeline, "run_sweeps", sweeps_in_process)
    script("survival_table/run.py").main(
        ["--params", str(tmp_path / "params.yaml"), "--out", str(tmp_path / "st")]
    )
    report = tmp_path / "st" / "report"
    assert (report / "table.md").is_file() and (report / "report.html").is_file()
    info = json.loads((report / "timing.json").read_text())
    assert info["runs"] == 2 and info["produced_by"].startswith("Produced at commit")


def test_restructure_snapshot_runs_compose_and_compare_finds_differences(tmp_path, capsys):
    import json

    from fedjax_rhd.config import run_config
    from tests.conftest import compose

    mod = script("restructure/compare.py")
    # Every snapshot run is a valid command line today (each is composed and typed, not run:
    # running them is the snapshot itself, minutes per checkout).
    for name, overrides in mod.RUNS.items():
        extra = [f"use_case.mapping=[{mod._gbsg2_mapping(tmp_path)}]"] if name == "use_case_gbsg2_csv" else []
        run_config(compose([*overrides, *extra]))
    mod.main(["snapshot", str(tmp_path / "none"), "--only", "no_such_run"])
    assert json.loads((tmp_path / "none" / "snapshot.json").read_text()) == []
    # compare: two snapshots of one fake run, identical and then with one metric changed.
    for side in ("before", "after"):
        write_fake_run(tmp_path / side / "default", strategy="fedavg", seed=0)
    with pytest.raises(SystemExit) as same:
        mod.main(["compare", str(tmp_path / "before"), str(tmp_path / "after")])
    assert same.value.code == 0
    path = tmp_path / "after" / "default" / "results.json"
    res = json.loads(path.read_text())
    res["final"]["best_round"] = 3
    path.write_text(json.dumps(res))
    with pytest.raises(SystemExit) as changed:
        mod.main(["compare", str(tmp_path / "before"), str(tmp_path / "after")])
    assert changed.value.code == 1 and "default.final.best_round: 2 -> 3" in capsys.readouterr().out


def test_foundation_compare_writes_the_report(tmp_path, capsys):
    from tests.report.report_fixtures import swapped, write_run

    for seed in (0, 1):
        write_run(tmp_path / "sweep", "centralized", seed, {"pooled": swapped(seed)})
        nodes = {n: swapped(k) for k, n in enumerate(("node1", "node2", "node3"))}
        write_run(tmp_path / "sweep", "fedavg", seed, nodes, main=swapped(1), shares=(0.6, 0.3, 0.1))
    script("foundation/compare.py").main([str(tmp_path / "sweep"), "--n-boot", "50"])
    assert (tmp_path / "sweep" / "report" / "table.md").is_file()
    assert "4 runs, 1 table rows" in capsys.readouterr().out


SHARED = resolve_real_data_root()  # $FEDJAX_RHD_SHARED_DATA, else ../shared/data
needs_real = pytest.mark.skipif(
    not (SHARED / "mds_iwgpm").is_dir(), reason="the real-data read needs ../shared/data (absent here)"
)


def test_simulation_fit_pieces_on_synthetic_data():
    """fit.py's estimators on data with a known answer (the real-data read is the part skipped in CI)."""
    import numpy as np

    fit = script("simulation/fit.py")
    rng = np.random.default_rng(0)
    z = rng.multivariate_normal([0, 0], [[1, 0.6], [0.6, 1]], size=20_000)
    a, b = (z[:, 0] > 0.3).astype(float), (z[:, 1] > -0.2).astype(float)
    assert fit.tetrachoric(a, b) == pytest.approx(0.6, abs=0.03)
    r = np.array([[1.0, 0.9, -0.9], [0.9, 1.0, 0.9], [-0.9, 0.9, 1.0]])  # not positive definite
    near = fit.nearest_correlation(r)
    assert np.linalg.eigvalsh(near).min() > 0 and np.allclose(np.diag(near), 1.0)


@pytest.mark.slow  # about 100 s: latent correlations over every IWG-PM variable
@needs_real
def test_simulation_fit_on_the_real_cohort(tmp_path):
    fit = script("simulation/fit.py")
    fit.main(["--real-data", str(SHARED), "--out", str(tmp_path)])
    assert {p.name for p in tmp_path.iterdir()} == {"params_mds.json", "params_cmml.json"}


@pytest.mark.skipif(
    not (SHARED / "aml_beat2").is_dir(), reason="needs ../shared/data/aml_beat2 (absent here)"
)
def test_simulation_fit_aml_on_the_real_cohort(tmp_path):
    script("simulation/fit_aml.py").main(
        ["--real-data-root", str(SHARED), "--out", str(tmp_path / "aml.json")]
    )
    assert (tmp_path / "aml.json").stat().st_size > 1000


@pytest.mark.parametrize("use_case", ["mds", "cmml"])
def test_simulation_report_simulated_side_without_real_data(use_case, monkeypatch):
    """report.py's simulated measurements (C-indices, layer shares) run without ../shared/data."""
    rep = script("simulation/report.py")
    monkeypatch.setattr(rep, "LARGE_N", 400)
    c, sim = rep.c_indices(use_case, 0)
    assert sim.height == 400 and 0.6 < c["oracle"] < 0.95 and len(c) >= 2
    shares = rep.layer_shares(use_case, 0)
    assert all(0.0 < v < 1.0 for v in shares.values())


@needs_real
def test_simulation_report_on_the_real_cohort(tmp_path):
    script("simulation/report.py").main(
        ["--real-data", str(SHARED), "--out", str(tmp_path), "--large-n", "2000"]
    )
    assert (tmp_path / "README.md").read_text().startswith("# Simulator calibration")
    assert (tmp_path / "figures" / "mds_genes.png").is_file()


@pytest.mark.parametrize(
    "sh", sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "experiments").glob("[!b]*/*.sh"))
)
def test_shell_scripts_parse_and_name_existing_scripts(sh):
    import re
    import subprocess

    text = (ROOT / sh).read_text()
    assert subprocess.run(["bash", "-n", str(ROOT / sh)], capture_output=True).returncode == 0
    for rel in re.findall(r"python (experiments/\S+\.py)", text):
        assert (ROOT / rel).is_file(), f"{sh} runs {rel}, which does not exist"


def test_every_experiment_script_has_a_smoke_test_here():
    """A new script under experiments/ (bench/ has its own tests) must be run by a test in this file."""
    import re

    scripts = {p.relative_to(ROOT / "experiments").as_posix() for p in (ROOT / "experiments").glob("*/*.py")}
    scripts = {s for s in scripts if not s.startswith("bench/")}
    tested = set(re.findall(r'script\("([^"]+)"\)', Path(__file__).read_text()))
    assert scripts - tested == set(), f"scripts without a smoke test: {sorted(scripts - tested)}"


def test_provenance_names_the_commit_and_the_command():
    import re

    from fedjax_rhd.report.sweep import provenance

    line = provenance("experiments/x.py", ["a", "--b", "1"])
    assert re.fullmatch(
        r"Produced at commit `([0-9a-f]{12}(\+dirty)?|unknown)` by `python experiments/x\.py a --b 1`\.", line
    )
    assert provenance("experiments/x.py", []).endswith("by `python experiments/x.py`.")


# --- privacy study, local updates (strategies), synthetic table ------------------------------------


def _privacy_run(path: Path, *, algorithm: str, seed: int, c: float, nodes=(), dp=None, dp_sgd=None) -> None:
    path.mkdir(parents=True)
    final = {
        "c_index_test": {"estimate": c},
        "nodes": [{"c_index_test": {"estimate": x}} for x in nodes],
    }
    if dp:
        final["dp"] = dp
    if dp_sgd:
        final["dp_sgd"] = dp_sgd
    res = {
        "config": {
            "use_case": {"name": "mds"},
            "strategy": {"algorithm": algorithm},
            "seed": {"split": seed},
        },
        "final": final,
        "rounds": [{}] * 30,
    }
    (path / "results.json").write_text(json.dumps(res))


@pytest.mark.parametrize(
    ("low", "high", "decision"),
    [
        (0.01, 0.05, "beats every node alone"),
        (-0.05, -0.01, "does not beat the best node alone"),
        (-0.01, 0.02, "not shown either way"),
    ],
)
def test_decisions_rest_on_the_interval_bounds(low, high, decision):
    assert script("privacy/summarize.py").decide(low, high) == decision


def test_table_from_runs_pairs_each_seed_with_its_best_node_alone(tmp_path):
    dp = {"noise_multiplier": 1.0, "epsilon_pld": 40.0, "epsilon_rdp": 42.0, "delta": 1e-5}
    fedavg = [0.70, 0.72, 0.71]
    alone = [(0.60, 0.65), (0.62, 0.66), (0.61, 0.64)]  # best per seed: 0.65, 0.66, 0.64
    private = [0.60, 0.66, 0.63]
    for s in range(3):
        _privacy_run(tmp_path / f"plain/{s}_fedavg", algorithm="fedavg", seed=s, c=fedavg[s])
        _privacy_run(tmp_path / f"plain/{s}_local", algorithm="local", seed=s, c=0.0, nodes=alone[s])
        _privacy_run(tmp_path / f"dp/{s}", algorithm="fedavg", seed=s, c=private[s], dp=dp)
    module = script("privacy/summarize.py")
    assert module.main([str(tmp_path)]) == 0
    rows = {r["arm"]: r for r in module.summarize(module.load_runs(tmp_path))}
    diffs = np.array(fedavg) - [0.65, 0.66, 0.64]  # 0.05, 0.06, 0.07
    assert rows["FedAvg"]["diff"] == pytest.approx(diffs.mean())
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof)
    assert rows["FedAvg"]["diff_low"] == pytest.approx(diffs.mean() - half)
    assert rows["FedAvg"]["decision"] == "beats every node alone"
    assert rows["DP-FedAvg σ=1"]["epsilon_pld"] == 40.0
    assert rows["DP-FedAvg σ=1"]["decision"] == "not shown either way"  # diffs -0.05, 0, -0.01
    assert (tmp_path / "privacy.md").is_file() and (tmp_path / "privacy.png").is_file()


def test_table_reads_record_level_dp_sgd_runs_with_their_worst_nodes_epsilon(tmp_path):
    dp_sgd = {"noise_multiplier": 2.0, "epsilon_rdp": 6.9, "delta": 1e-5}
    alone = [(0.60, 0.65), (0.62, 0.66), (0.61, 0.64)]  # best per seed: 0.65, 0.66, 0.64
    for s, c in enumerate([0.55, 0.57, 0.56]):  # every seed below its best node alone by 0.08-0.10
        _privacy_run(tmp_path / f"plain/{s}_local", algorithm="local", seed=s, c=0.0, nodes=alone[s])
        _privacy_run(tmp_path / f"sgd/{s}", algorithm="fedavg", seed=s, c=c, dp_sgd=dp_sgd)
    module = script("privacy/summarize.py")
    assert module.main([str(tmp_path)]) == 0
    row = {r["arm"]: r for r in module.summarize(module.load_runs(tmp_path))}["DP-SGD σ=2"]
    assert row["epsilon_rdp"] == 6.9 and row["epsilon_pld"] is None
    assert row["diff"] == pytest.approx(-0.09)
    assert row["decision"] == "does not beat the best node alone"
    assert "| mds | DP-SGD σ=2 | – | 6.9 |" in (tmp_path / "privacy.md").read_text()


def test_local_updates_table_pairs_seeds_and_counts_rounds_to_99(tmp_path):
    """experiments/strategies/local_updates.py on hand-made runs: paired differences and rounds to 99%."""
    module = script("strategies/local_updates.py")
    curves = [0.60, 0.70, 0.745, 0.76]  # final 0.75 (selected round): 99% = 0.7425, first reached at round 3
    for s, (full, mb) in enumerate([(0.75, 0.73), (0.76, 0.739), (0.74, 0.721)]):
        for name, c, batch in (("full", full, None), ("mb", mb, 64)):
            path = tmp_path / f"{name}{s}"
            path.mkdir()
            client = {"batch_size": batch, "local_steps": 20 if batch else None, "local_epochs": 5}
            res = {
                "config": {
                    "use_case": {"name": "mds"},
                    "scenario": {"name": "best"},
                    "strategy": {"name": "fedavg", "client": client},
                    "seed": {"split": s},
                },
                "final": {"c_index_test": {"estimate": c}, "best_round": 4},
                "rounds": [{"round": r + 1, "c_index_test_global": v} for r, v in enumerate(curves)],
            }
            (path / "results.json").write_text(json.dumps(res))
    assert module.main([str(tmp_path)]) == 0
    rows = {r["arm"]: r for r in module.summarize(module.load(tmp_path))}
    mb = rows["FedAvg (minibatch 64 x 20 steps)"]
    diffs = np.array([-0.02, -0.021, -0.019])
    assert mb["diff"] == pytest.approx(diffs.mean())
    half = 4.302652729911275 * diffs.std(ddof=1) / np.sqrt(3)  # t(0.975, 2 dof) x standard error
    assert mb["diff_high"] == pytest.approx(diffs.mean() + half) and mb["diff_high"] < 0
    assert mb["decision"] == "worse than full-batch FedAvg"  # the whole interval is below 0
    assert rows["FedAvg (full batch)"]["rounds_to_99_median"] == 3  # 0.745 >= 0.99 * 0.75
    assert module.rounds_to_99([{"round": 1, "c_index_test_global": 0.5}], 0.9) is None


def test_synthetic_table_prints_one_row_per_generator(tmp_path, capsys):
    """experiments/synthetic/table.py on two hand-made generative runs (FedAvg and a node alone)."""
    validation = {key: 0.5 for key, _ in script("synthetic/table.py").COLUMNS}
    for seed, strategy, nodes in ((0, "fedavg", []), (0, "local", [{"trained_on": "node1"}])):
        run = tmp_path / f"{strategy}{seed}"
        run.mkdir()
        gen = {
            "trained_on": "global" if strategy == "fedavg" else "node0",
            "validation": validation,
            "synthetic": {"n": 100},
        }
        gen["nodes"] = [{**n, "validation": validation, "synthetic": {"n": 50}} for n in nodes]
        res = {
            "final": {"kind": "generative", "generative": gen},
            "config": {"strategy": {"name": strategy}},
            "timing": {"total_seconds": 3.0},
        }
        (run / "results.json").write_text(json.dumps(res))
    script("synthetic/table.py").main(str(tmp_path))
    out = capsys.readouterr().out
    assert "| fedavg | 1 | 100 |" in out and "| local node1 | 1 | 50 |" in out


def test_synthetic_paired_pairs_two_sweeps_by_split_seed(tmp_path, capsys):
    """experiments/synthetic/paired.py on hand-made runs: means, paired differences, TSTR verdict by hand."""
    keys = [k for k, _ in script("synthetic/paired.py").METRICS]
    arms = {"a": (-0.01, -0.02, -0.03), "b": (-0.04, -0.04, -0.05)}  # TSTR ΔC per split seed 0, 1, 2
    for arm, tstr in arms.items():
        for seed, value in enumerate(tstr):
            run = tmp_path / arm / f"s{seed}"
            run.mkdir(parents=True)
            val = {**{k: 0.5 for k in keys}, "tstr_difference": value, "privacy_gate": {"passed": True}}
            res = {
                "final": {"kind": "generative", "generative": {"trained_on": "global", "validation": val}},
                "config": {"seed": {"split": seed}},
            }
            (run / "results.json").write_text(json.dumps(res))
    script("synthetic/paired.py").main([str(tmp_path / "a"), str(tmp_path / "b")])
    out = capsys.readouterr().out
    t = 4.302652729911275  # t(0.975, 2 dof)
    half_a = t * np.std(arms["a"], ddof=1) / np.sqrt(3)
    diffs = np.subtract(arms["a"], arms["b"])  # +0.03, +0.02, +0.02
    half_d = t * np.std(diffs, ddof=1) / np.sqrt(3)
    row = next(line for line in out.splitlines() if line.startswith("| TSTR ΔC (linear Cox) |"))
    assert f"-0.020 [{-0.02 - half_a:.3f}, {-0.02 + half_a:.3f}]" in row
    assert f"{diffs.mean():+.3f} [{diffs.mean() - half_d:+.3f}, {diffs.mean() + half_d:+.3f}]" in row
    assert row.endswith("| +0.030, +0.020, +0.020 |")
    assert "| gate passed (share) | 1.000 [1.000, 1.000] |" in out
    # the lower bound -0.045 is below -0.03: the target is not shown
    assert "(lower bound > −0.03): not shown" in out


@pytest.mark.slow  # a tiny VAE-BGM run, then seven Cox fits
def test_vae_tstr_diagnosis_rebuilds_the_runs_rows(tmp_path, tiny_data_root):
    """experiments/synthetic/vae_tstr_diagnosis.py on a tiny FedAvg run: its train-on-real C is the run's own
    (the same training rows and holdout rebuilt from results.json), every C in [0, 1]."""
    from tests.conftest import run_in_process
    from tests.e2e.conftest import GENERATIVE

    run_dir = tmp_path / "run"
    run_in_process([*GENERATIVE, "fidelity_every=0"], run_dir, tiny_data_root)
    c = script("synthetic/vae_tstr_diagnosis.py").diagnose(run_dir)
    report = json.loads((run_dir / "validation_report.json").read_text())
    assert c["real"] == pytest.approx(report["utility"]["tstr"]["c_index_train_real"], abs=1e-12)
    assert all(0.0 <= v <= 1.0 for k, v in c.items() if not k.startswith("R2"))


def test_tuning_run_searches_each_seed_then_compares_on_its_test_rows(tmp_path, capsys):
    """The protocol's bookkeeping on fake runs: one search per split seed, the best trial against the
    default run on the same test rows, a paired interval and a decision (runs: tests/test_tune.py)."""
    mod = script("tuning/run.py")
    made = []

    def fake_run(overrides, run_dir):
        seed = int(next(o for o in overrides if o.startswith("seed.split=")).split("=")[1])
        l2 = next((float(o.split("=")[1]) for o in overrides if o.startswith("model.l2=")), None)
        write_fake_run(run_dir, strategy="fedavg", seed=seed, model="coxph", init=len(made))
        results = json.loads((run_dir / "results.json").read_text())
        # a validation loss with its minimum at l2 = 0.01, as a real search would find one
        results["final"]["validation_objective"] = 1.0 if l2 is None else 1.0 + (np.log10(l2) + 2) ** 2 / 10
        (run_dir / "results.json").write_text(json.dumps(results))
        made.append(run_dir)
        return results

    mod.compose_run = fake_run
    out = tmp_path / "tuning"
    summary = mod.main(
        ["--preset", "coxph", "--seeds", "0", "1", "--trials", "3", "--out", str(out), "--n-boot", "50"]
    )
    assert len(made) == 2 * (3 + 1)  # three trials and one default run per seed
    assert [row["seed"] for row in summary["seeds"]] == [0, 1]
    for row in summary["seeds"]:
        assert row["difference"] == row["c_tuned"] - row["c_default"]
        assert row["objective_default"] == 1.0
    text = (out / "tuning.md").read_text()
    assert "| split seed | best trial |" in text and "Tuning helps (difference above 0):" in text
    # rerunning resumes: nothing is run again
    mod.main(["--preset", "coxph", "--seeds", "0", "1", "--trials", "3", "--out", str(out), "--n-boot", "50"])
    assert len(made) == 8
    capsys.readouterr()


def test_synthetic_figure3_pairs_fedavg_with_centralised_and_each_node_by_seed(tmp_path, capsys):
    """experiments/synthetic/figure3.py on hand-made generative runs: paired differences by hand."""
    from tests.report.report_fixtures import write_generative_run

    runs = tmp_path / "runs"
    for seed, d in ((0, 0.0), (1, 0.01), (2, 0.02)):
        write_generative_run(runs, "fedavg", seed, {"global": (0.90 + d, 0.8)}, {"global": [0.5, 0.9]})
        write_generative_run(runs, "centralized", seed, {"pooled": (0.90, 0.8)}, {"pooled": [0.6, 0.9]})
        final = {"node1": (0.85, 0.8), "node2": (0.95, 0.8), "node3": (0.80 + d, 0.8)}
        write_generative_run(runs, "local", seed, final, {"node1": [0.4, 0.8]})
    script("synthetic/figure3.py").main([str(runs), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "figure3.md").read_text()
    assert text.startswith("Produced at commit") and "| fedavg (global) | 3 |" in text
    half = 4.302652729911275 * 0.01 / np.sqrt(3)  # t(0.975, 2 dof) x sd 0.01 / sqrt 3
    assert "CSF FedAvg − centralised: +0.010 over 3 seeds (per seed +0.000, +0.010, +0.020); " in text
    assert f"95% CI {0.01 - half:+.3f} to {0.01 + half:+.3f}" in text
    assert "CSF FedAvg − node1 alone: +0.060 over 3 seeds" in text and "shown: above 0" in text
    assert "CSF FedAvg − node2 alone: -0.040" in text and "shown otherwise: below 0" in text
    assert "CSF FedAvg − node3 alone: +0.100" in text  # constant difference: a zero-width interval
    assert (tmp_path / "out" / "figures" / "fidelity_mds_best_three_vae_bgm.png").stat().st_size > 10_000


def test_synthetic_figure3_pairs_the_bayesian_network_apart_from_fedavg_without_a_figure(tmp_path, capsys):
    """figure3.py with Bayesian-network runs (no per-round fidelity) beside VAE-BGM runs: each model its
    own table, bn_two_step paired by hand with its own centralised and node-alone networks, no BN figure."""
    from tests.report.report_fixtures import write_generative_run

    runs = tmp_path / "runs"
    for seed, d in ((0, 0.0), (1, 0.02)):
        write_generative_run(runs, "bn_two_step", seed, {"global": (0.94, 0.99 - d)}, {}, model="bn")
        write_generative_run(runs, "centralized", seed, {"pooled": (0.93, 0.99)}, {}, model="bn")
        final = {"node1": (0.95, 0.99), "node2": (0.90 + d, 0.98), "node3": (0.88, 0.97)}
        write_generative_run(runs, "local", seed, final, {}, model="bn")
        write_generative_run(runs, "fedavg", seed, {"global": (0.96, 0.99)}, {"global": [0.5, 0.9]})
        write_generative_run(runs, "centralized", seed, {"pooled": (0.95, 0.99)}, {"pooled": [0.6, 0.9]})
    script("synthetic/figure3.py").main([str(runs), "--out", str(tmp_path / "out")])
    text = (tmp_path / "out" / "figure3.md").read_text()
    paired = text[text.index("## Paired by split seed") :]
    vae_at = paired.index("### mds, best, split three, model vae_bgm")
    bn, vae = paired[:vae_at], paired[vae_at:]
    assert "| bn_two_step (global) | 2 |" in text and "| node3 (10%) alone | 2 |" in text
    assert "CSF bn_two_step − centralised: +0.010 over 2 seeds (per seed +0.010, +0.010)" in bn
    assert "GSF bn_two_step − centralised: -0.010 over 2 seeds (per seed +0.000, -0.020)" in bn
    assert "CSF bn_two_step − node1 alone: -0.010" in bn and "CSF bn_two_step − node3 alone: +0.060" in bn
    assert "CSF bn_two_step − node2 alone: +0.030 over 2 seeds (per seed +0.040, +0.020)" in bn
    assert "CSF FedAvg − centralised: +0.010 over 2 seeds" in vae and "bn_two_step" not in vae
    assert "alone" not in vae  # no VAE-BGM local runs here: no node pairs, nothing borrowed from the BN's
    figures = sorted(p.name for p in (tmp_path / "out" / "figures").iterdir())
    assert figures == ["fidelity_mds_best_three_vae_bgm.png"]


def test_synthetic_comparison_runs_every_cell_and_counts_log_rank_agreement(tmp_path, capsys):
    """experiments/synthetic/comparison.py (issue 18 item 5): one multirun per cell, centralised first,
    no per-round fidelity where no generator reaches the manager; its table pairs sd_sharing's pool with
    the centralised network and counts, per group, the seeds whose log-rank decision matches the real one."""
    from tests.report.report_fixtures import write_generative_run

    cmp = script("synthetic/comparison.py")
    assert cmp.strategy_of("bn", "federated") == "bn_two_step"
    assert cmp.strategy_of("ctgan", "federated") == "fedavg"
    kw = {"use_case": "mds", "seeds": [0, 1], "fidelity_every": 5, "n_synthetic": 300}
    shared = cmp.cell_overrides("vae_bgm", "sd_sharing", **kw)
    assert {"strategy=sd_sharing", "fidelity_every=0", "seed.split=0,1", "model.n_synthetic=300"} <= {*shared}
    assert "fidelity_every=5" in cmp.cell_overrides("vae_bgm", "local", **kw)
    assert "fidelity_every=0" in cmp.cell_overrides("bn", "centralized", **kw)
    argv = ["run", "--out", str(tmp_path / "s"), "--use-cases", "mds", "--generators", "bn", "--seeds", "0"]
    cmp.main([*argv, "--dry-run"])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("strategy=")[1].split()[0] for line in lines] == [
        "centralized", "bn_two_step", "sd_sharing", "local"
    ]  # fmt: skip

    root = tmp_path / "study"
    finals = {
        "centralized": {"pooled": (0.93, 0.99)},
        "bn_two_step": {"global": (0.94, 0.98)},
        "sd_sharing": {"sd_pool": (0.92, 0.97)},
        "local": {"node1": (0.91, 0.98), "node2": (0.90, 0.97), "node3": (0.85, 0.95)},
    }
    for seed in (0, 1):
        for strategy, final in finals.items():
            run = write_generative_run(root / "mds" / "bn" / strategy, strategy, seed, final, {}, model="bn")
            p_synthetic = 0.2 if (strategy, seed) == ("sd_sharing", 1) else 0.03  # real: 0.01
            km = {"logrank_real": {"p_value": 0.01}, "logrank_synthetic": {"p_value": p_synthetic}}
            report = {"utility": {"kaplan_meier": {"TP53": km}}}
            (run / "validation_report.json").write_text(json.dumps(report))
    assert cmp.missing_seeds(root / "mds" / "bn" / "local", [0, 1, 2]) == [2]  # a resumed study runs only 2
    cmp.main(["table", str(root)])
    text = (root / "report" / "comparison.md").read_text()
    assert "| mds | bn | sd_sharing | sd_pool | 1 (1-1) | 1/2 |" in text
    assert "| mds | bn | bn_two_step | global | 1 (1-1) | 2/2 |" in text
    assert "| mds | bn | local | node3 | 1 (1-1) | 2/2 |" in text
    figure = (root / "report" / "figure3.md").read_text()
    assert "CSF sd_sharing − centralised: -0.010 over 2 seeds (per seed -0.010, -0.010)" in figure
    assert "CSF bn_two_step − node3 alone: +0.090 over 2 seeds" in figure


def test_external_validation_loco_scores_each_held_out_centre_and_decides_claims(tmp_path, capsys):
    """experiments/external_validation/run.py's bookkeeping on fake runs and fake scores: one run per
    held-out centre, strategy and seed; the score checked against its run; table cells by hand
    (the real path, holdout run -> score command, is tests/e2e/test_holdout_run.py)."""
    import polars as pl

    from fedjax_rhd.metrics.concordance import concordance_index

    mod = script("external_validation/run.py")
    centres = {"a": 30, "b": 20, "c": 12}  # rows per centre; nodes are named largest first
    rng = np.random.default_rng(0)
    rows = {
        c: pl.DataFrame({"patient_id": [f"{c}{i:02d}" for i in range(n)],
                         "time": rng.exponential(size=n) + 0.01,
                         "event": (rng.random(n) < 0.7).astype(np.int64)})
        for c, n in centres.items()
    }  # fmt: skip
    made = []

    def models(strategy, held):
        others = [f"centre{c}" for c in centres if c != held]
        return {"fedavg": ["global", *others], "centralized": ["centralised"],
                "local": [f"{n}_local" for n in others]}[strategy]  # fmt: skip

    def risk(held, strategy, seed, model):
        t = rows[held]["time"].to_numpy()
        noise = 0.2 if model in ("global", "centralised") else 2.0  # the federation sees more patients
        salt = sum(map(ord, f"{held}{strategy}{model}"))
        return -t + np.random.default_rng([seed, salt]).normal(scale=noise, size=len(t))

    def fake_run(overrides, folder):
        get = {o.split("=")[0]: o.split("=", 1)[1] for o in overrides}
        held, strategy, seed = get["split.holdout_centre"], get["strategy"], int(get["seed.split"])
        assert get["seed.init"] == get["seed.train"] == str(seed) and "use_case=aml_beat" in overrides
        main = models(strategy, held)[0]
        r, df = risk(held, strategy, seed, main), rows[held]
        folder.mkdir(parents=True)
        c = concordance_index(df["time"].to_numpy(), df["event"].to_numpy(), r)
        nodes = [{"name": f"centre{x}"} for x in centres if x != held]
        final = {"c_index_test": {"estimate": c}, "clinical_score": {"name": "ELN 2022"}}
        results = {"dataset": {"name": "aml_beat"}, "nodes": nodes, "final": final}
        (folder / "results.json").write_text(json.dumps(results))
        df.select("patient_id").with_columns(pl.Series("risk", r)).write_parquet(
            folder / "test_predictions.parquet"
        )
        made.append(folder)
        return results

    def fake_score(folder, name, *, out, **options):
        assert options == {"rows": "run-test", "censoring": "cohort", "n_boot": 200, "plots": False}
        assert name == "aml_beat"
        results = json.loads((folder / "results.json").read_text())
        cfg = folder.relative_to(tmp_path / "loco" / "runs").parts  # centre<c>/<strategy>/seed<s>
        held, strategy, seed = cfg[0].removeprefix("centre"), cfg[1], int(cfg[2].removeprefix("seed"))
        df = rows[held]
        eln = np.where(np.arange(df.height) % 4 == 0, np.nan, -df["time"].to_numpy())  # ELN: not every row
        frames = [df.with_columns(pl.lit(m).alias("model"), pl.Series("risk", risk(held, strategy, seed, m)),
                                  pl.Series("clinical_score", eln, nan_to_null=True))
                  for m in models(strategy, held)]  # fmt: skip
        out.mkdir(parents=True)
        pl.concat(frames).write_parquet(out / "predictions.parquet")
        doc = {"models": [{"name": m, "main": i == 0, "c_index": results["final"]["c_index_test"]}
                          for i, m in enumerate(models(strategy, held))]}  # fmt: skip
        (out / "score.json").write_text(json.dumps(doc))

    mod.compose_run, mod.score = fake_run, fake_score
    argv = [
        "--out",
        str(tmp_path / "loco"),
        "--centres",
        "a",
        "b",
        "c",
        "--seeds",
        "0",
        "1",
        "--n-boot",
        "50",
    ]
    numbers = mod.main(argv)
    assert len(made) == 3 * 3 * 2  # centres x strategies x seeds
    text = (tmp_path / "loco" / "loco.md").read_text()
    assert text.startswith("Produced at commit") and "| centrea | 30 (" in text
    df = rows["b"]
    t, e = df["time"].to_numpy(), df["event"].to_numpy()
    by_hand = np.mean([concordance_index(t, e, risk("b", "fedavg", s, "global")) for s in (0, 1)])
    assert numbers["centres"]["b"]["c_index"]["FedAvg"]["estimate"] == pytest.approx(by_hand, abs=1e-12)
    assert numbers["centres"]["b"]["score_rows"] == 15  # ELN scores 15 of centre b's 20 rows
    assert set(numbers["centres"]["c"]["fedavg_minus"]) == {
        "centralised",
        "ELN 2022",
        "centrea alone",
        "centreb alone",
    }
    assert "FedAvg − ELN 2022" in text and "FedAvg − largest training centre alone" in text
    assert "Intervals resample: patients" in text
    for line in (x for x in text.splitlines() if x.startswith("- FedAvg")):
        assert any(w in line for w in ("; shown: ", "; not shown: ", "; shown otherwise: "))
    # rerunning runs and scores nothing again
    mod.main(argv)
    assert len(made) == 18
    # a score that is not its run's is refused
    out = tmp_path / "loco" / "runs" / "centrea" / "fedavg" / "seed0" / "scores" / "aml_beat-run-test"
    pred = pl.read_parquet(out / "predictions.parquet")
    pred.with_columns(pl.col("risk") * 2).write_parquet(out / "predictions.parquet")
    with pytest.raises(ValueError, match="scores differently from the run's own test predictions"):
        mod.main(argv)
    capsys.readouterr()


def test_bench_sweep_compares_the_ways_and_checks_their_runs_are_identical(tmp_path, capsys):
    """The sweep benchmark's bookkeeping on fake studies: figures per way, ratios, the identity check."""
    import yaml

    bench = script("bench/sweep.py")

    def fake_run(folder: Path, rounds: list[float], compile_s: float, c_index: float) -> None:
        folder.mkdir(parents=True)
        timing = {"total_seconds": sum(rounds) + 1.0, "compile_seconds": compile_s, "round_seconds": rounds}
        doc = {"timing": timing, "final": {"c_index_test": c_index}, "rounds": [{"round": 1}]}
        (folder / "results.json").write_text(json.dumps(doc))
        (folder / ".hydra").mkdir()
        (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["seed.split=0"]))

    def study(tree, params, out, jax_cache):  # two runs; the baseline's take longer, compute the same
        assert jax_cache is None  # no --warm-from: each way starts with an empty cache
        slow = 2.0 if tree != bench.ROOT else 1.0
        fake_run(out / "mds" / "fedavg" / "0", [3.0 * slow, 1.0], 2.0 * slow, 0.7)
        fake_run(out / "mds" / "baselines" / "0", [2.0 * slow, 1.0], 1.0 * slow, 0.6)
        (out / "report").mkdir()
        timing = {"mds_dataset_s": 1.0, "mds_runs_s": 6.0 * slow, "report_s": 1.0}
        (out / "report" / "timing.json").write_text(json.dumps({"timing": timing}))
        return 8.0 * slow

    def one_by_one(tree, runs_from, out):  # the second run computes something else
        fake_run(out / "mds" / "fedavg" / "0", [3.0, 1.0], 2.0, 0.7)
        fake_run(out / "mds" / "baselines" / "0", [2.0, 1.0], 1.0, 0.61)
        return 24.0

    info = bench.main(
        [
            "--baseline-tree",
            str(tmp_path / "base"),
            "--only",
            "mds",
            "--seeds",
            "0",
            "--out",
            str(tmp_path / "o"),
        ],
        study=study,
        one_by_one=one_by_one,
    )
    assert yaml.safe_load((tmp_path / "o" / "params.yaml").read_text())["study"]["seeds"] == [0]
    rows = {r["way"]: r for r in info["rows"]}
    current = rows["current"]
    # 2 runs in 6 s of sweeps on 2 workers: 20 runs a minute; training = rounds (7 s) minus compiles (3 s)
    assert current["runs"] == 2 and current["runs_per_min"] == pytest.approx(20.0)
    assert current["sum_compile_s"] == 3.0 and current["sum_training_s"] == pytest.approx(4.0)
    assert current["overhead_per_run_s"] == pytest.approx((6.0 * 2 - 4.0) / 2)
    assert current["inside_overhead_per_run_s"] == pytest.approx((9.0 - 4.0) / 2)
    assert info["ratios"]["baseline wall / current wall"] == pytest.approx(2.0)
    assert info["ratios"]["one-by-one runs / current runs"] == pytest.approx(4.0)
    assert info["identical"] == {"baseline": True, "cold": False}
    out = capsys.readouterr().out
    assert (
        "cold: every run's final block and rounds DIFFER" in out and (tmp_path / "o" / "sweep.csv").is_file()
    )


def test_ctgan_score_diagnostics_and_paired_intervals(tmp_path, capsys):
    """The utility hunt's diagnostics on a hand-made table, and a paired interval computed by hand."""
    import pandas as pd

    mod = script("synthetic/ctgan_score.py")
    blasts = [1.0, 2.0, 3.0, None]
    table = pd.DataFrame(
        {"bm_blasts": blasts, "TP53": [1.0, None, 0.0, 0.0], "time": np.exp([-1.0, -2.0, -3.0, 5.0]),
         "event": [0.0, 1.0, 0.0, 1.0]}
    )  # fmt: skip
    got = mod.diagnostics(table, ["bm_blasts", "TP53"])
    assert got["corr_blast_logt"] == pytest.approx(-1.0)  # log t = −blasts where blasts are seen
    assert got["event_share"] == 0.5 and got["tp53_missing"] == 0.25
    assert got["missing_share"] == 0.25  # one of four values missing in each feature
    assert got["logt_no_event"] == pytest.approx(-2.0) and got["logt_event"] == pytest.approx(1.5)
    assert mod.diagnostics(table.drop(columns="TP53"), ["bm_blasts"]) == {}
    # rare binaries: 200 real rows; r1 held by 2 (1 %) and r2 by 4 (2 %) are rare, common by 100 (50 %) is not
    real = pd.DataFrame({"r1": [1.0] * 2 + [0.0] * 198, "r2": [1.0] * 4 + [0.0] * 196,
                         "common": [1.0, 0.0] * 100, "v": [1.0] * 200})  # fmt: skip
    syn = pd.DataFrame({"r1": [0.0] * 100, "r2": [1.0] * 3 + [0.0] * 96 + [None],
                        "common": [1.0] * 100, "v": [None] * 10 + [2.0] * 90})  # fmt: skip
    rare = mod.rare_levels(real, syn, ["r1", "r2", "common"], ["r1", "r2", "common", "v"])
    # r1: 0 / 1 % = 0; r2: (3 of its 99 seen rows) / 2 % (the missing row left out of the share); the median
    assert rare["rare_columns"] == 2 and rare["rare_share_ratio"] == pytest.approx((0 + 3 / 99 / 0.02) / 2)
    assert rare["rare_under_quarter"] == 1  # r1
    assert rare["any_missing"] == pytest.approx(0.11)  # 10 rows miss v, one more misses r2
    runs = pd.DataFrame(
        {"run": ["A_s0", "A_s1", "B_s0", "B_s1"], **{m: [0.0] * 4 for m in mod.METRICS}}
    ).assign(tstr_difference=[0.1, 0.4, 0.0, 0.1])
    runs.to_csv(tmp_path / "scores.csv", index=False)
    mod.main(["intervals", str(tmp_path / "scores.csv"), "--pair", "A:B"])
    out = capsys.readouterr().out
    # A − B per split: 0.1, 0.3; mean 0.2, sd 0.1414, half-width t(0.975, 1) · 0.1414 / √2 = 12.706 · 0.1
    assert "'tstr_difference': '+0.200 [-1.071, +1.471]'" in out.splitlines()[-1]


def _anchor_folder(tmp_path, tiny_data_root):
    mod = script("synthetic/ctgan_anchor.py")
    overrides = ["model=vae_bgm", "use_case.n_patients=600", f"data_root={tiny_data_root}"]
    (folder,) = mod.prepare(tmp_path / "anchor", [0], overrides)
    return mod, folder


def test_ctgan_anchor_prepares_the_runs_rows_and_tabulates(tmp_path, tiny_data_root):
    """experiments/synthetic/ctgan_anchor.py without the package (it needs torch): ``prepare`` writes the
    VAE-BGM run's training rows and holdout; the table's intervals by hand; the missing level round-trips."""
    import pandas as pd
    import polars as pl

    mod, folder = _anchor_folder(tmp_path, tiny_data_root)
    train, holdout = pl.read_parquet(folder / "train.parquet"), pl.read_parquet(folder / "holdout.parquet")
    meta = json.loads((folder / "meta.json").read_text())
    assert train.height + holdout.height < 600 and holdout.height == 60  # validation rows are in neither
    assert meta["discrete_columns"][-1] == "event" and "time" not in meta["discrete_columns"]
    row = {"quality_sdmetrics_style": 0.9, "privacy_gate": {"passed": True}, "seconds": 2.0}
    text = mod.table({"g": [row, {**row, "quality_sdmetrics_style": 0.8, "seconds": 4.0}]})
    half = 12.706 * np.std([0.9, 0.8], ddof=1) / np.sqrt(2)
    assert f"| g | 2 | 0.850 [{0.85 - half:.3f}, {0.85 + half:.3f}] | n/a |" in text
    assert text.rstrip().endswith("| 2/2 | 2-4 | n/a |")
    levels = pd.Series(["1.0", mod.MISSING_LEVEL, "0.0"])
    levels = levels.where(levels != mod.MISSING_LEVEL)
    back = mod._restore(levels, pd.Series([1.0, None, 0.0]))
    assert back.tolist()[0] == 1.0 and pd.isna(back.tolist()[1]) and back.tolist()[2] == 0.0


@pytest.mark.slow  # the whole validation suite (TSTR fits, detection, privacy) on one table
def test_ctgan_anchor_scores_a_copied_table_as_copies(tmp_path, tiny_data_root):
    mod, folder = _anchor_folder(tmp_path, tiny_data_root)
    import polars as pl

    pl.read_parquet(folder / "train.parquet").write_parquet(folder / "synthetic.parquet")
    (folder / "timing.json").write_text(json.dumps({"fit_seconds": 2.0}))
    row = mod.score_seed(folder)
    assert row["exact_copy_share"] == 1.0 and not row["privacy_gate"]["passed"]
    assert row["validity_total"] == 0 and row["seconds"] == 2.0


def _survival_rows(rng: np.random.Generator, n: int, d: int = 5):
    """Rows whose hazard grows with x0 - x1 (a last column constant, as a flag nobody carries)."""
    x = rng.normal(size=(n, d))
    x[:, -1] = 0.0
    time = rng.exponential(np.exp(-(x[:, 0] - x[:, 1])))
    censor = rng.exponential(2.0, size=n)
    return x, np.minimum(time, censor), (time <= censor).astype(np.float64)


def test_real_cohorts_peers_tune_on_validation_and_refit_on_training_plus_validation(tmp_path, monkeypatch):
    import pandas as pd
    import polars as pl
    from lifelines import CoxPHFitter

    from fedjax_rhd.metrics.concordance import concordance_index

    mod = script("real_cohorts/peers.py")
    monkeypatch.setattr(mod, "RSF_TREES", 10)
    monkeypatch.setattr(mod, "RSF_GRID", ({"min_samples_leaf": 5, "max_features": "sqrt"},))
    monkeypatch.setattr(mod, "GB_STAGES", (3, 10))
    monkeypatch.setattr(
        mod, "COX_GRID", ({"penalizer": 0.1, "l1_ratio": 0.0}, {"penalizer": 0.3, "l1_ratio": 0.5})
    )
    # ties go to the earliest grid point; a failed fit (NaN) is never chosen
    assert mod.choose([("a", 0.6), ("b", float("nan")), ("c", 0.7), ("d", 0.7)]) == "c"
    with pytest.raises(ValueError, match="no grid point"):
        mod.choose([("a", float("nan"))])
    rng = np.random.default_rng(0)
    train, val = (mod.Rows(*_survival_rows(rng, n)) for n in (150, 60))
    test_x, test_t, test_e = _survival_rows(rng, 80)
    fits = {name: mod.fit_peer(name, train, val, test_x, seed=0) for name in mod.PEERS}
    for name, (risk, record) in fits.items():
        scored = [(g["params"], g["validation_c"]) for g in record["grid"]]
        assert record["chosen"] == mod.choose(scored)
        assert concordance_index(test_t, test_e, risk) > 0.65, name
    # the Cox refit is lifelines' own fit of the chosen point on training + validation rows,
    # the constant last column left out
    risk, record = fits["cox"]
    both = mod.Rows(*(np.concatenate([a, b]) for a, b in zip(train, val, strict=True)))
    cols = [f"x{j}" for j in range(4)]
    frame = pd.DataFrame(both.x[:, :-1], columns=cols).assign(time=both.time, event=both.event)
    ref = CoxPHFitter(**record["chosen"]).fit(frame, duration_col="time", event_col="event")
    expected = ref.predict_log_partial_hazard(pd.DataFrame(test_x[:, :-1], columns=cols)).to_numpy()
    np.testing.assert_allclose(risk, expected, rtol=1e-8)
    # main: one folder per seed, rerun skips seeds already written
    calls = []

    def fake_rows(overrides):
        calls.append(overrides)
        return train, val, test_x, tuple(f"P{i}" for i in range(len(test_x)))

    monkeypatch.setattr(mod, "pooled_rows", fake_rows)
    monkeypatch.setattr(
        mod, "fit_peer", lambda name, tr, va, x, seed: (x[:, 0], {"chosen": {}, "seconds": 0.0})
    )
    argv = ["--out", str(tmp_path), "--seeds", "0", "1", "--peers", "cox", "--", "use_case=mds"]
    mod.main(argv)
    mod.main(argv)
    assert [c[-1] for c in calls] == ["seed.split=0", "seed.split=1"]
    written = pl.read_parquet(tmp_path / "seed_1" / "peers.parquet")
    assert written.columns == ["patient_id", "risk_cox"] and written.height == 80


def _tuned_layout(root: Path, seeds=(0, 1)) -> None:
    """experiments/tuning/run.py's and peers.py's folders, on fake runs (tests.experiments.fake_sweep)."""
    import polars as pl

    for cohort, extra in (("mds_iwgpm", ("score_ipssm_stored",)), ("aml_beat", ())):
        for s in seeds:
            base = root / cohort / f"seed_{s}"
            runs = {}
            for name, init in (("search/trial_003", 1), ("default", 2)):
                write_fake_run(
                    base / name, strategy="fedavg", seed=s, use_case=cohort, init=init, extra_columns=extra
                )
                results = json.loads((base / name / "results.json").read_text())
                results["final"]["validation_objective"] = 3.0 + init
                (base / name / "results.json").write_text(json.dumps(results))
                runs[name] = pl.read_parquet(base / name / "test_predictions.parquet")
            best = {
                "number": 3,
                "value": 4.0,
                "params": {"model.l2": 1e-5},
                "run_dir": str(base / "search/trial_003"),
            }
            (base / "search" / "search.json").write_text(json.dumps({"best": best}))
            pred = runs["default"]
            rng = np.random.default_rng(s)
            peers = pl.DataFrame(
                {"patient_id": pred["patient_id"]}
                | {
                    c: -pred["time"].to_numpy() + rng.normal(size=pred.height)
                    for c in ("risk_cox", "risk_rsf", "risk_gbcox")
                }
            )
            folder = root / "peers" / cohort / f"seed_{s}"
            folder.mkdir(parents=True)
            peers.write_parquet(folder / "peers.parquet")
            chosen = {"cox": {"penalizer": 0.1}, "rsf": {"min_samples_leaf": 3}, "gbcox": {"max_depth": 2}}
            (folder / "peers.json").write_text(
                json.dumps({"peers": {k: {"chosen": v} for k, v in chosen.items()}})
            )


def test_real_cohorts_tuned_pairs_tuned_fedavg_with_peers_and_the_score(tmp_path, capsys):
    import polars as pl

    from fedjax_rhd.metrics.concordance import concordance_index

    _tuned_layout(tmp_path)
    mod = script("real_cohorts/tuned.py")
    summary = mod.main([str(tmp_path), "--n-boot", "50"])
    text = (tmp_path / "tuned.md").read_text()
    assert text.startswith("Produced at commit") and "### mds_iwgpm" in text and "### aml_beat" in text
    # the MDS table is on the rows with a stored IPSS-M: gbcox's mean C by hand
    by_hand = []
    for s in (0, 1):
        rows = pl.read_parquet(tmp_path / "mds_iwgpm" / f"seed_{s}" / "default" / "test_predictions.parquet")
        peers = pl.read_parquet(tmp_path / "peers" / "mds_iwgpm" / f"seed_{s}" / "peers.parquet")
        keep = rows["score_ipssm_stored"].is_not_null().to_numpy()
        by_hand.append(concordance_index(rows["time"].to_numpy()[keep], rows["event"].to_numpy()[keep],
                                         peers["risk_gbcox"].to_numpy()[keep]))  # fmt: skip
    assert summary["mds_iwgpm"]["c_index_mean"]["risk_gbcox"] == pytest.approx(np.mean(by_hand), abs=1e-12)
    for line in (x for x in text.splitlines() if x.startswith("- tuned FedAvg −")):
        assert any(w in line for w in ("; shown: ", "; not shown: ", "; shown otherwise: "))
    assert "no more than 0.005 below IPSS-M" in text and "no more than 0.005 below ELN 2022" in text
    # peers written on other rows are refused
    path = tmp_path / "peers" / "aml_beat" / "seed_1" / "peers.parquet"
    pl.read_parquet(path).reverse().write_parquet(path)
    with pytest.raises(ValueError, match="peers' test rows differ"):
        mod.main([str(tmp_path), "--n-boot", "50"])
    capsys.readouterr()


@pytest.mark.slow  # about 15 s: two compilations, lifelines, matplotlib
def test_bench_bootstrap_tiny(tmp_path, capsys):
    """The C-index / bootstrap benchmark on tiny sizes: values asserted equal inside, CSV and PNG written."""
    script("bench/bootstrap.py").main(
        ["--sizes", "500", "--boot-sizes", "2500", "--n-boot", "8", "--old-resamples", "4", "--repeats", "1"]
        + ["--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert "old / new" in out and "cpus=" in out and "load average" in out
    rows = (tmp_path / "bootstrap.csv").read_text().splitlines()
    assert len(rows) == 3 and (tmp_path / "bootstrap.png").stat().st_size > 0


@pytest.mark.slow  # a tiny CTGAN run compiles for ~20 s
def test_the_outcome_diagnostic_redraws_outcomes_for_the_real_rows_of_a_run(tmp_path, tiny_data_root):
    """experiments/synthetic/ctgan_outcome_diag.py on a tiny centralised run with the conditional draw: it
    rebuilds the run from its overrides, draws outcomes for the real training rows with the run's outcome
    model, and reports the run's own gap as written in results.json."""
    import yaml

    from tests.conftest import run_in_process
    from tests.e2e.test_ctgan_end_to_end import CTGAN

    overrides = [
        *CTGAN, "strategy=centralized", "model.outcome_draw=conditional", "model.outcome_dim=[]",
        "model.outcome_floor_censored=true",
    ]  # fmt: skip
    res = run_in_process(overrides, tmp_path / "run", tiny_data_root)
    (tmp_path / "run" / ".hydra").mkdir()
    (tmp_path / "run" / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([*overrides, f"data_root={tiny_data_root}", "hydra.run.dir=x"])
    )
    gaps, own = script("synthetic/ctgan_outcome_diag.py").real_covariate_gaps(tmp_path / "run", draws=2)
    assert own == res["final"]["generative"]["validation"]["tstr_difference"]
    assert gaps.shape == (2,) and np.all(np.abs(gaps) < 1) and gaps[0] != gaps[1]  # two different draws
    # the column costs: one per numeric column, costliest first, each a change of C; shares are column means
    mod = script("synthetic/ctgan_outcome_diag.py")
    tables = mod.run_tables(tmp_path / "run")
    costs = mod.column_costs(tables)
    names = [name for _, name, _, _ in costs]
    assert sorted(names) == sorted(numeric_matrix(tables.real_train, tables.guide.features)[1])
    assert [c for c, *_ in costs] == sorted(c for c, *_ in costs) and all(abs(c) <= 1 for c, *_ in costs)
