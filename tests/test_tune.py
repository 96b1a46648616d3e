"""fedjax-rhd-tune: presets compose, the objective is the run's validation loss, test rows never steer it."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import optuna
import pytest
import yaml
from omegaconf import OmegaConf

from fedjax_rhd.tune.cli import compose_run, main
from fedjax_rhd.tune.search import run_search
from fedjax_rhd.tune.space import (
    SEARCH_DIR,
    Param,
    SearchPreset,
    SearchSpecError,
    as_overrides,
    load_preset,
    suggest,
)
from tests.conftest import TINY, compose, scramble_test_outcomes

PRESETS = sorted(p.stem for p in SEARCH_DIR.glob("*.yaml"))


def test_the_shipped_presets_are_deepsurv_savae_and_coxph():
    assert PRESETS == ["coxph", "deepsurv", "savae"]


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("corner", ["low", "high"])
def test_every_preset_composes_at_its_corners_and_sets_what_it_samples(name, corner):
    from fedjax_rhd.config import run_config

    preset = load_preset(name)
    fixed = {}
    for p in preset.params:
        if p.choices:
            fixed[p.key] = p.choices[0 if corner == "low" else -1]
        else:
            value = p.low if corner == "low" else p.high
            fixed[p.key] = int(value) if p.integer else value
    values = suggest(optuna.trial.FixedTrial(fixed), preset.params)
    cfg = compose([*preset.overrides, *as_overrides(values)])
    run_config(cfg)  # the typed objects accept every corner
    for key, value in values.items():
        got = (
            OmegaConf.to_object(OmegaConf.select(cfg, key))
            if key == "model.hidden"
            else OmegaConf.select(cfg, key)
        )
        expected = yaml.safe_load(value) if isinstance(value, str) else value
        assert got == expected, key
    assert preset.seed == 0 and preset.n_trials >= 20


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("params: {model.l2: {low: 1, high: 0.1}}", r"model.l2: low 1.0 must be finite and <= high 0.1"),
        ("params: {model.l2: {low: 0, high: 1, log: true}}", r"model.l2: a log range needs low > 0"),
        ("params: {model.l2: {low: 0.1}}", r"model.l2: a range needs low and high"),
        ("params: {model.l2: {low: 0.1, high: 1, step: 2}}", r"unknown keys \['step'\]"),
        ("params: {}", r"the search space \(params\) is empty"),
        ("overrides: [model.l2=1]\nparams: {model.l2: {low: 0.1, high: 1}}", r"both searched and fixed"),
        ("n_trails: 3\nparams: {model.l2: {low: 0.1, high: 1}}", r"unknown keys \['n_trails'\]"),
        ("params: [", r"not readable YAML"),
    ],
)
def test_a_malformed_preset_is_refused_naming_file_and_key(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(SearchSpecError, match=message) as err:
        load_preset(path)
    assert str(path) in str(err.value)


def test_cli_refuses_an_unknown_preset_and_a_bad_override_with_exit_2(capsys):
    assert main(["nope"]) == 2
    assert "no search preset 'nope'" in capsys.readouterr().err
    assert main(["coxph", "strategy.no_such_key=1"]) == 2
    assert "bad override" in capsys.readouterr().err


@pytest.mark.parametrize("damage", ["not a database", "changed space"])
def test_an_unusable_sweep_folder_is_refused_in_words(tmp_path, capsys, damage):
    sweep = tmp_path / "s"
    sweep.mkdir()
    if damage == "not a database":
        (sweep / "search.db").write_bytes(b"this is not sqlite" * 100)
    else:  # the same preset name, its parameter now a choice where the study holds a float range
        from fedjax_rhd.tune.search import open_study

        study = open_study(load_preset("coxph"), sweep)
        study.tell(study.ask({"model.l2": optuna.distributions.FloatDistribution(1e-5, 1.0, log=True)}), 1.0)
        (tmp_path / "coxph.yaml").write_text(
            "overrides: [model=coxph]\nparams: {model.l2: {choices: [0.1, 1]}}\n"
        )
    preset = str(tmp_path / "coxph.yaml") if damage == "changed space" else "coxph"
    assert main([preset, "--sweep-dir", str(sweep), "--trials", "2", "--no-progress"]) == 1
    assert "fedjax-rhd-tune: cannot run the search in" in capsys.readouterr().err


def test_floats_are_written_exactly():
    values = {"a": 0.1 + 0.2, "b": 3, "c": "[32,32]", "d": True}
    assert as_overrides(values) == ["a=0.30000000000000004", "b=3", "c=[32,32]", "d=true"]


# The searched key changes no compiled program (every trial reuses TINY's DeepSurv round, compiled
# once per process): the test is about the search's bookkeeping, not about what a seed does.
SEARCH = SearchPreset(
    name="tiny_init",
    params=(Param("seed.init", low=0, high=10**6, integer=True),),
    overrides=("model=deepsurv",),
    n_trials=3,
    seed=0,
    n_startup_trials=2,
)


@pytest.mark.e2e
def test_search_objective_resume_best_config_and_blindness_to_test_rows(
    tmp_path, tiny_data_root, monkeypatch
):
    base = [*TINY, "strategy.patience=2", f"data_root={tiny_data_root}"]
    calls = []

    def counted(overrides, run_dir):
        calls.append(run_dir)
        return compose_run(overrides, run_dir)

    result = run_search(SEARCH, base, tmp_path / "a", counted, progress=False)
    assert len(calls) == 3 and [r.state for r in result.trials] == ["COMPLETE"] * 3
    # Each trial's objective is its run's selected validation loss, read back from results.json.
    for r in result.trials:
        final = json.loads((Path(r.run_dir) / "results.json").read_text())["final"]
        assert r.value == final["validation_objective"]
        cfg = json.loads((Path(r.run_dir) / "results.json").read_text())["config"]
        assert cfg["seed"]["init"] == r.params["seed.init"] and cfg["model"]["name"] == "deepsurv"
    assert result.best.value == min(r.value for r in result.trials)
    rows = list(csv.DictReader(open(tmp_path / "a" / "trials.csv")))
    assert [int(row["seed.init"]) for row in rows] == [r.params["seed.init"] for r in result.trials]
    assert len({r.value for r in result.trials}) == 3  # the initialisations differ
    best = yaml.safe_load((tmp_path / "a" / "best.yaml").read_text())
    assert best["seed"]["init"] == result.best.params["seed.init"]
    assert best["defaults"] == [{"override /model": "deepsurv"}] and "data_root" not in best
    assert (tmp_path / "a" / "search.png").stat().st_size > 10_000
    # best.yaml is a working +experiment file from a user's own config folder.
    (tmp_path / "extra" / "experiment").mkdir(parents=True)
    (tmp_path / "extra" / "experiment" / "tuned.yaml").write_text((tmp_path / "a" / "best.yaml").read_text())
    tuned = compose([f"hydra.searchpath=[file://{tmp_path / 'extra'}]", "+experiment=tuned"])
    assert tuned.seed.init == result.best.params["seed.init"] and tuned.model.name == "deepsurv"

    # Resume: the same sweep folder with one more trial runs only that one.
    more = run_search(SEARCH, base, tmp_path / "a", counted, n_trials=4, progress=False)
    assert len(calls) == 4 and len(more.trials) == 4
    assert [r.params for r in more.trials[:3]] == [r.params for r in result.trials]

    # Scrambling every test row's outcome leaves the search's trials and choice bit-identical.
    scramble_test_outcomes(monkeypatch, seed=1)
    blind = run_search(SEARCH, base, tmp_path / "b", compose_run, progress=False)
    assert [(r.params, r.value) for r in blind.trials] == [(r.params, r.value) for r in result.trials]
    assert blind.best.number == result.best.number
    c_a = json.loads((Path(result.trials[0].run_dir) / "results.json").read_text())["final"]["c_index_test"]
    c_b = json.loads((Path(blind.trials[0].run_dir) / "results.json").read_text())["final"]["c_index_test"]
    assert c_a["estimate"] != c_b["estimate"]  # the test rows did change


@pytest.mark.e2e
def test_a_failing_trial_is_recorded_and_the_search_goes_on(tmp_path):
    def flaky(overrides, run_dir):
        if len(list(tmp_path.glob("**/seen"))) == 0:
            (tmp_path / "seen").write_text("")
            raise RuntimeError("node3 did not answer")
        return {"final": {"validation_objective": 1.5}, "timing": {"compile_seconds": 0.1}}

    result = run_search(SEARCH, [], tmp_path / "s", flaky, progress=False)
    assert [r.state for r in result.trials] == ["FAIL", "COMPLETE", "COMPLETE"]
    assert result.trials[0].error == "RuntimeError: node3 did not answer"
    assert result.best.number == 1 and result.best.value == 1.5
