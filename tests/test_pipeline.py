"""The DVC pipeline: params in sync with conf/, per-use-case branches, sweeps, curves, a tiny repro."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fedjax_rhd import pipeline
from fedjax_rhd.pipeline import ParamsError, StudySpec, UseCaseEntry

ROOT = Path(__file__).resolve().parents[1]

TINY_PARAMS = {
    "strategy": {
        "name": "fedavg",
        "rounds": 3,
        "patience": None,
        "client": {"optimizer": "adam", "learning_rate": 0.002, "local_epochs": 2},
        "server": {"learning_rate": 1.0, "momentum": 0.0},
    },
    "study": {
        "seeds": [0],
        "scenarios": ["best"],
        "baselines": ["centralized"],
        "bootstrap": 20,
        "n_boot": 20,
    },
    "launcher": {"n_jobs": 2},
    "use_cases": {
        "a": {"use_case": "mds", "n_patients": 300, "seed_data": 0, "model": "deepsurv", "split": "three"},
        "b": {"use_case": "mds", "n_patients": 300, "seed_data": 1, "model": "deepsurv", "split": "three"},
    },
}


def test_params_yaml_is_conf_pipeline_composed():
    """params.yaml (what `dvc repro` reads) must equal conf/pipeline.yaml composed by Hydra."""
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    composed = pipeline.compose("pipeline")
    assert committed == composed, "params.yaml drifted from conf/: run `python -m fedjax_rhd.pipeline params`"
    study, entries = pipeline.parse_params(committed)
    assert study.strategy["name"] == "fedavg"
    assert [e.key for e in entries] == ["mds", "cmml", "mds_wsi", "aml", "mm"]


def test_real_params_yaml_is_conf_pipeline_real_composed():
    committed = yaml.safe_load((ROOT / "real" / "params.yaml").read_text())
    assert committed == pipeline.compose("pipeline_real"), (
        "real/params.yaml drifted: run `python -m fedjax_rhd.pipeline --params real/params.yaml params "
        "--config pipeline_real`"
    )
    study, entries = pipeline.parse_params(committed)
    assert entries and all(not e.simulated for e in entries)
    fl, _ = pipeline.sweep_commands(study, entries[0], Path("o"), committed["strategy"])
    assert not any(a.startswith(("data_root=", "use_case.dataset=", "seed.data=")) for a in fl)


def _dvc_compose(tmp_path: Path, cases: dict[str, list[str]]) -> dict[str, str]:
    """Compose the way `dvc exp run -S ...` does, once per case, in one fresh process that never ran
    register_configs (the first case composes in that fresh state): case -> "ok" (its composed params
    in ``<case>.yaml``) or the error it raised."""
    code = (
        "import json, sys\n"
        "from dvc.utils.hydra import compose_and_dump\n"
        "out = {}\n"
        "for name, overrides in json.loads(sys.argv[1]).items():\n"
        "    try:\n"
        f"        compose_and_dump(name + '.yaml', {str(ROOT / 'conf')!r}, None, 'pipeline', {str(ROOT)!r}, "
        "overrides)\n"
        "        out[name] = 'ok'\n"
        "    except Exception as err:\n"
        "        out[name] = f'{type(err).__name__}: {err}'\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(cases)], capture_output=True, text=True, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_dvc_hydra_composition_swaps_the_strategy(tmp_path):
    """`dvc exp run -S strategy=local` composes conf/pipeline.yaml through DVC's Hydra integration."""
    out = _dvc_compose(
        tmp_path,
        {
            "local": ["strategy=local", "use_cases.mds.n_patients=500"],
            "bad": ["strategy=fedavgg"],
            "prox": ["strategy=fedprox"],  # the issue's own example: `dvc exp run -S strategy=fedprox`
        },
    )
    assert out["local"] == "ok", out["local"][-2000:]
    composed = yaml.safe_load((tmp_path / "local.yaml").read_text())
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert composed["strategy"]["name"] == "local"
    assert composed["use_cases"]["mds"]["n_patients"] == 500
    assert composed["study"] == committed["study"]
    assert out["bad"] != "ok" and "fedavgg" in out["bad"] and not (tmp_path / "bad.yaml").exists()
    assert out["prox"] == "ok", out["prox"][-2000:]
    composed = yaml.safe_load((tmp_path / "prox.yaml").read_text())
    assert composed["strategy"]["name"] == "fedprox" and composed["strategy"]["client"]["proximal_mu"] > 0


def test_parse_params_names_file_and_field():
    bad = json.loads(json.dumps(TINY_PARAMS))
    del bad["use_cases"]["b"]["seed_data"]
    with pytest.raises(ParamsError, match=r"p\.yaml: use_cases\.b: missing field 'seed_data'"):
        pipeline.parse_params(bad, "p.yaml")
    bad = json.loads(json.dumps(TINY_PARAMS))
    bad["use_cases"]["a"]["n_patients"] = True
    with pytest.raises(ParamsError, match=r"use_cases\.a\.n_patients: expected an integer"):
        pipeline.parse_params(bad, "p.yaml")
    study, entries = pipeline.parse_params(TINY_PARAMS)
    assert study.seeds == (0,) and study.n_jobs == 2
    assert entries[1] == UseCaseEntry("b", "mds", 300, 1, "deepsurv", "three", ())
    assert entries[1].dataset == "mds-sim-n300-seed1"


def test_strategy_edits_are_only_the_changed_keys():
    default = {
        "name": "fedavg",
        "rounds": 40,
        "patience": 10,
        "client": {"learning_rate": 0.002, "local_epochs": 5},
    }
    edited = {
        "name": "fedavg",
        "rounds": 60,
        "patience": 10,
        "client": {"learning_rate": 0.002, "local_epochs": 2},
    }
    assert pipeline.strategy_edits(edited, default) == {"rounds": 60, "client.local_epochs": 2}
    assert pipeline.strategy_edits(default, default) == {}
    # a key the group file lacks (a strategy's own knob) is an edit too
    assert pipeline.strategy_edits({**default, "mu": 0.1}, default) == {"mu": 0.1}


def _study(**strategy) -> StudySpec:
    return StudySpec(
        seeds=(0, 1),
        scenarios=("best", "worst"),
        baselines=("centralized", "local"),
        bootstrap=50,
        n_boot=100,
        strategy={"name": "fedavg", "rounds": 40, "server": {"momentum": 0.0}, **strategy},
        n_jobs=2,
    )


def test_sweep_commands_carry_edits_presets_and_the_grid():
    entry = UseCaseEntry("mds_wsi", "mds", 800, 2, "savae", "three", ("+experiment=savae",))
    default = {"name": "fedavg", "rounds": 40, "server": {"momentum": 0.0}}
    study = _study(rounds=7, server={"momentum": 0.9})
    fl, base = pipeline.sweep_commands(study, entry, Path("w/runs"), default)
    assert fl[:4] == [sys.executable, "-m", "fedjax_rhd", "-m"]
    for expected in [
        "use_case=mds", "use_case.n_patients=800", "seed.data=2", "use_case.dataset=mds-sim-n800-seed2",
        "data_root=pipeline/mds_wsi/data", "model=savae", "split=three", "+experiment=savae",
        "scenario=best,worst", "seed.split=0,1", "bootstrap=50", "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2", "strategy=fedavg", "strategy.rounds=7", "strategy.server.momentum=0.9",
        "hydra.sweep.dir=w/runs/fedavg",
    ]:  # fmt: skip
        assert expected in fl, expected
    # the baselines share the budget edit but not the FedAvg-only server momentum
    assert "strategy=centralized,local" in base and "strategy.rounds=7" in base
    assert not any(a.startswith("strategy.server") for a in base)
    assert base[-1] == "hydra.sweep.dir=w/runs/baselines"
    # the preset comes before the strategy edits, so an explicit params edit wins over it
    assert fl.index("+experiment=savae") < fl.index("strategy.rounds=7")
    # no edits: the preset's budget is left alone; a baseline equal to the FL strategy is dropped
    fl, base = pipeline.sweep_commands(_study(name="local"), entry, Path("r"), {**default, "name": "local"})
    assert not any(a.startswith("strategy.") for a in fl) and "strategy=centralized" in base


def test_training_replicates_sweep_seed_init_with_seed_train_following_it():
    import dataclasses

    from fedjax_rhd.config import run_config
    from tests.conftest import compose

    entry = UseCaseEntry("a", "mds", 300, 0, "deepsurv", "three", ())
    default = {"name": "fedavg", "rounds": 40, "server": {"momentum": 0.0}}
    one = pipeline.sweep_commands(_study(), entry, Path("r"), default)
    assert not any(a.startswith(("seed.init", "seed.train")) for c in one for a in c)  # [0]: as before
    three = dataclasses.replace(_study(), replicates=(0, 1, 2))
    for command in pipeline.sweep_commands(three, entry, Path("r"), default):
        assert "seed.init=0,1,2" in command and "seed.train=${seed.init}" in command
    # The interpolation makes k replicates k runs (not k x k), each with seed.train = seed.init.
    assert run_config(compose(["seed.init=2", "seed.train=${seed.init}"])).seed.train == 2
    study, _ = pipeline.parse_params({**TINY_PARAMS, "study": {**TINY_PARAMS["study"], "replicates": [0, 1]}})
    assert study.replicates == (0, 1) and pipeline.parse_params(TINY_PARAMS)[0].replicates == (0,)


def test_round_curves_average_the_runs_that_reached_each_round():
    run1 = {"rounds": [
        {"round": 1, "c_index_test_nodes": [0.5, 0.6], "c_index_test_global": 0.55},
        {"round": 2, "c_index_test_nodes": [0.7, 0.8], "c_index_test_global": 0.75},
    ]}  # fmt: skip
    run2 = {"rounds": [{"round": 1, "c_index_test_nodes": [0.6, 0.4], "c_index_test_global": 0.65}]}
    rows = pipeline.round_curves([run1, run2])
    assert rows[0] == pytest.approx({"round": 1, "n_runs": 2, "global": 0.60, "node1": 0.55, "node2": 0.50})
    assert rows[1] == pytest.approx({"round": 2, "n_runs": 1, "global": 0.75, "node1": 0.70, "node2": 0.80})


def test_dvc_yaml_gives_each_use_case_its_own_params(tmp_path):
    """Every stage of branch `a` depends on `a`'s params only, so editing `b` cannot rerun it."""
    from dvc.repo import Repo

    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    repo = Repo.init(str(tmp_path), no_scm=True)
    try:
        stages = {s.name: s for s in repo.index.stages}
        kinds = ["export", "fhir", "dataset", "runs", "report"]
        assert set(stages) == {f"{k}@{key}" for k in kinds for key in ("a", "b")}
        for name, stage in stages.items():
            key = name.split("@")[1]
            params = [p for dep in stage.deps if hasattr(dep, "params") for p in dep.params]
            assert not any(
                p.startswith("use_cases.") and not p.startswith(f"use_cases.{key}") for p in params
            )
            assert all(out.def_path.startswith((f"pipeline/{key}/", f"reports/{key}/")) for out in stage.outs)
        assert "use_cases.a" in [
            p for dep in stages["runs@a"].deps if hasattr(dep, "params") for p in dep.params
        ]
    finally:
        repo.close()


def test_pipeline_dataset_equals_a_direct_build(tmp_path, monkeypatch):
    """export -> ingest -> dataset stage gives the registered dataset `harmonize build` gives (same id)."""
    from harmonize.cli import main as harmonize
    from harmonize.datasets import load_or_build_dataset
    from harmonize.guide import load_guide
    from harmonize.registry import spec_for_run

    monkeypatch.chdir(tmp_path)
    entry = UseCaseEntry("x", "mds", 150, 4, "deepsurv", "three")
    harmonize(
        ["export-simulated", "--use-case", "mds", "--n", "150", "--seed", "4", "--out", "ex", "--quiet"]
    )
    harmonize(["ingest", "--use-case", "mds", "--export", "ex", "--out", "fh", "--quiet"])
    card = pipeline.build_dataset(entry, Path("ex"), Path("fh"), Path("data"))
    spec = spec_for_run(use_case="mds", guide="mds", source="simulated", dataset=entry.dataset,
                        n_patients=150, seed_data=4)  # fmt: skip
    guide = load_guide("mds")
    direct_df, direct = load_or_build_dataset(spec, guide, tmp_path / "direct")
    assert card["id"] == direct["id"] and card["source"] == direct["source"]
    # and the run's loader accepts the pipeline's folder as that dataset (no rebuild, no error)
    df, reused = load_or_build_dataset(spec, guide, Path("data"))
    assert reused["id"] == card["id"] and df.equals(direct_df)
    assert "oracle_risk" in df.columns  # the simulator's truth came along beside the FHIR tables


def _clone(dst: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("pipeline/", "reports/")):
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)


def _dvc(clone: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(clone), "FEDJAX_RHD_JAX_CACHE": str(ROOT / ".jax_cache")}
    proc = subprocess.run(["dvc", *args], cwd=clone, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.slow
def test_dvc_repro_tiny_pipeline(tmp_path):
    """Fresh clone: repro writes the reports, a second repro does nothing, editing b reruns only b."""
    clone = tmp_path / "clone"
    clone.mkdir()
    _clone(clone)
    (clone / "params.yaml").write_text(yaml.safe_dump(TINY_PARAMS))
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=clone, check=True)
    subprocess.run([*git[:5], "add", "-A"], cwd=clone, check=True)
    subprocess.run([*git, "commit", "-qm", "clone"], cwd=clone, check=True)

    _dvc(clone, "repro")
    for key in ("a", "b"):
        report = clone / "reports" / key
        for name in ("table.md", "table.csv", "report.html", "metrics.json", "curves_best.csv"):
            assert (report / name).is_file(), f"{key}: {name}"
        metrics = json.loads((report / "metrics.json").read_text())
        assert {"full", "global", "node:node1", "oracle"} <= set(metrics["best"])
    a_report = clone / "reports" / "a" / "table.md"
    a_mtime = a_report.stat().st_mtime_ns

    second = _dvc(clone, "repro")
    assert "Running stage" not in second and "up to date" in second

    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["use_cases"]["b"]["n_patients"] = 320
    (clone / "params.yaml").write_text(yaml.safe_dump(params))
    third = _dvc(clone, "repro")
    ran = {line.split("'")[1] for line in third.splitlines() if line.startswith("Running stage")}
    assert ran == {f"{k}@b" for k in ("export", "fhir", "dataset", "runs", "report")}
    assert a_report.stat().st_mtime_ns == a_mtime
    card = json.loads((clone / "pipeline/b/data/datasets/mds-sim-n320-seed1/dataset.json").read_text())
    assert card["n_rows"] == 320


def test_write_outputs_metrics_and_curves_from_hand_made_runs(tmp_path):
    """metrics.json carries the table's numbers; curves average the runs' per-round C-indices."""
    from tests.report.report_fixtures import PERFECT, swapped, write_run

    runs = tmp_path / "runs"
    for seed in (0, 1):
        nodes = {"node1": PERFECT, "node2": swapped(2), "node3": swapped(3)}
        write_run(runs, "fedavg", seed, nodes, main=swapped(1))
        write_run(runs, "centralized", seed, {"pooled": swapped(2)}, shares=(1.0,))
    study = StudySpec((0, 1), ("best",), ("centralized",), 10, 50, {"name": "fedavg"})
    metrics = pipeline.write_outputs(
        study, UseCaseEntry("x", "mds", 8, 0, "deepsurv", "three"), runs, tmp_path / "r"
    )
    assert json.loads((tmp_path / "r" / "metrics.json").read_text()) == metrics
    best = metrics["best"]
    assert best["full"]["c_index"] == pytest.approx(26 / 28) and best["full"]["n_seeds"] == 2
    assert best["global"]["c_index"] == pytest.approx(27 / 28)
    assert best["node:node3"]["c_index"] == pytest.approx(25 / 28)
    assert best["oracle"]["c_index"] == pytest.approx(1.0)
    lines = (tmp_path / "r" / "curves_best.csv").read_text().splitlines()
    assert lines[0] == "round,series,c_index,n_runs" and len(lines) == 1 + 2 * 4
    # write_run's rounds: node i at round r has 0.5 + 0.1 r + 0.01 i, the global model 0.55 + 0.1 r
    got = {tuple(v.split(",")[:2]): float(v.split(",")[2]) for v in lines[1:]}
    assert got[("2", "global")] == pytest.approx(0.75) and got[("2", "node3")] == pytest.approx(0.72)
    assert got[("1", "node1")] == pytest.approx(0.60)
    assert (tmp_path / "r" / "curves_worst.csv").read_text() == "round,series,c_index,n_runs\n"
    assert (tmp_path / "r" / "table.md").is_file() and (tmp_path / "r" / "report.html").is_file()


def test_round_curves_skip_rounds_without_curves():
    """A run with curve_every > 1 has rounds without test curves: they are not averaged as gaps."""
    run1 = {"rounds": [
        {"round": 1, "c_index_test_nodes": [0.5], "c_index_test_global": 0.55},
        {"round": 2},
        {"round": 3, "c_index_test_nodes": [0.7], "c_index_test_global": 0.75},
    ]}  # fmt: skip
    run2 = {"rounds": [{"round": 1, "c_index_test_nodes": [0.7]}, {"round": 2, "c_index_test_nodes": [0.9]}]}
    rows = pipeline.round_curves([run1, run2])
    assert [r["round"] for r in rows] == [1, 2, 3]
    assert rows[0] == pytest.approx({"round": 1, "n_runs": 2, "global": 0.55, "node1": 0.6})
    assert rows[1] == pytest.approx({"round": 2, "n_runs": 1, "global": "", "node1": 0.9})
    assert rows[2] == pytest.approx({"round": 3, "n_runs": 1, "global": 0.75, "node1": 0.7})


@pytest.mark.slow  # three Hydra multiruns with the CLI's imports: seconds, over the default suite's budget
def test_a_multirun_in_process_runs_every_job_of_the_command_line_and_leaves_hydra_clean(
    tmp_path, monkeypatch
):
    """run_sweeps's default: the command line parsed by Hydra here, its jobs run, twice in a row."""
    from hydra.core.global_hydra import GlobalHydra

    import fedjax_rhd.experiment as experiment

    calls = []

    def fake_run(config, output_dir, resolved_config):
        calls.append((config.seed.split, config.scenario.name, Path(output_dir).name))
        if config.seed.split == 7:
            raise RuntimeError("job failed")
        return {"final": {"validation_objective": 0.5}}

    monkeypatch.setattr(experiment, "run", fake_run)
    argv = list(sys.argv)
    for sweep, seed in (("a", 0), ("b", 2)):  # a second multirun in the same process
        sweep_dir = f"hydra.sweep.dir={tmp_path / sweep}"
        pipeline.multirun_in_process(
            ["-m", "hydra/launcher=basic", f"seed.split={seed}", "scenario=best", sweep_dir]
        )
    # the jobs' folders as the command names them (conf/hydra: <job>_<strategy>_<split>_s<seed>)
    assert calls == [(0, "best", "0_fedavg_three_s0"), (2, "best", "0_fedavg_three_s2")]
    assert sys.argv == argv and not GlobalHydra.instance().is_initialized()
    with pytest.raises(SystemExit):  # a failed job fails the sweep, as the command's exit status would
        pipeline.multirun_in_process(
            ["-m", "hydra/launcher=basic", "seed.split=7", f"hydra.sweep.dir={tmp_path}/c"]
        )
    assert sys.argv == argv and not GlobalHydra.instance().is_initialized()


def test_run_sweeps_runs_its_multiruns_in_process_unless_asked_for_processes(monkeypatch):
    entry = UseCaseEntry("a", "mds", 300, 0, "deepsurv", "three", ())
    here, spawned = [], []
    monkeypatch.setattr(pipeline, "multirun_in_process", here.append)
    monkeypatch.setattr(pipeline.subprocess, "run", lambda command, check: spawned.append(command))
    pipeline.run_sweeps(_study(), entry, Path("r"), Path("d"))
    commands = pipeline.sweep_commands(
        _study(), entry, Path("r"), pipeline.compose("config", ["strategy=fedavg"])["strategy"], Path("d")
    )
    assert here == [c[3:] for c in commands] and not spawned and here[0][0] == "-m"
    pipeline.run_sweeps(_study(), entry, Path("r"), Path("d"), in_process=False)
    assert spawned == commands
