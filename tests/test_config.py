"""Every config group composes into the library's own typed objects; bad keys and values fail by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from fedjax_rhd.config import RunConfig, run_config
from fedjax_rhd.data import ScenarioSpec, SplitSpec
from fedjax_rhd.models import MODELS
from fedjax_rhd.sources import UseCase
from fedjax_rhd.strategies import ALGORITHMS, StrategyConfig
from fedjax_rhd.tracking import TrackerSettings
from tests.conftest import ROOT, compose


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(ROOT) / "conf" / group).glob("*.yaml"))


def typed(overrides: list[str] | None = None) -> RunConfig:
    return run_config(compose(overrides))


@pytest.mark.parametrize(
    "group", ["use_case", "split", "scenario", "model", "strategy", "backend", "tracker"]
)
def test_every_group_option_composes_into_library_objects(group):
    options = _options(group)
    assert options, f"conf/{group} has no options"
    # the Bayesian network and its protocol go together (tests/e2e/test_bn_end_to_end.py)
    partner = {
        ("model", "bn"): ["strategy=bn_two_step"],
        ("strategy", "bn_two_step"): ["model=bn"],
        ("strategy", "sd_sharing"): ["model=vae_bgm"],  # synthetic rows need a generative model
    }
    for option in options:
        c = typed([f"{group}={option}", *partner.get((group, option), [])])
        assert isinstance(c.use_case, UseCase) and isinstance(c.split, SplitSpec)
        assert isinstance(c.scenario, ScenarioSpec) and isinstance(c.strategy, StrategyConfig)
        assert isinstance(c.tracker, TrackerSettings)
        assert isinstance(c.model, MODELS[c.model.name].config)
        assert c.use_case.name == (option if group == "use_case" else "mds")
        assert c.strategy.algorithm in ALGORITHMS
        hash(c.model)  # part of the jit key


def test_defaults_are_fedavg_deepsurv_mds_three_nodes():
    c = typed()
    assert (c.strategy.name, c.strategy.algorithm, c.model.name, c.use_case.name, c.split.name) == (
        "fedavg",
        "fedavg",
        "deepsurv",
        "mds",
        "three",
    )
    assert c.split.fractions == (0.6, 0.3, 0.1) and c.split.test_fraction == 0.1
    assert c.strategy.server.learning_rate == 1.0 and c.model.hidden == (32, 32)


def test_split_five_fractions():
    assert typed(["split=five"]).split.fractions == (0.45, 0.2, 0.15, 0.1, 0.1)


def test_seeds_one_per_purpose_and_the_split_follows_seed_split():
    c = typed(["seed.data=1", "seed.split=2", "seed.init=3", "seed.train=4"])
    assert (c.seed.data, c.seed.split, c.split.seed, c.seed.init, c.seed.train) == (1, 2, 2, 3, 4)
    with pytest.raises(ValueError, match="set seed.split only"):
        typed(["split.seed=5"])


@pytest.mark.parametrize("override", ["model.hiden=[8]", "strategy.client.learnig_rate=0.1", "seed.splitt=1"])
def test_misspelt_key_fails_naming_it(override):
    bad = override.split("=")[0].split(".")[-1]
    with pytest.raises(ConfigCompositionException) as err:
        compose([override])
    assert bad in str(err.value)


@pytest.mark.parametrize(
    "override, name",
    [
        ("strategy.algorithm=fedavgg", "fedavgg"),
        ("model.activation=sigmoidx", "sigmoidx"),
        ("strategy.server.optimizer=adamx", "adamx"),
        ("tracker.name=tensorboardx", "tensorboardx"),
        ("seed.split=abc", "abc"),
    ],
)
def test_bad_value_fails_naming_it(override, name):
    with pytest.raises(Exception) as err:
        typed([override])
    assert name in str(err.value)


def test_bad_fractions_fail_at_conversion():
    with pytest.raises(Exception, match="sum to"):
        typed(["split.fractions=[0.5,0.2]"])
    with pytest.raises(ConfigCompositionException, match="split.test_fraction") as err:
        compose(["split.test_fraction=abc"])
    assert isinstance(err.value.__cause__, ValidationError)


def test_use_case_is_one_typed_value():
    c = typed(["use_case=mds_wsi"])
    assert c.use_case.reduce == {"wsi": 16} and c.use_case.reductions == (("wsi", 16),)
    c = typed(["use_case=gbsg2_csv"])
    assert c.use_case.mapping == ("docs/examples/gbsg2.mapping.yaml",)
    assert typed(["use_case.treatment=true"]).use_case.guide_name == "mds+treatment"
    with pytest.raises(Exception, match="needs use_case.source=simulated"):
        typed(["use_case=aml_beat", "use_case.treatment=true"])


def test_savae_preset_sets_the_chosen_budget_and_cadences():
    """+experiment=savae: the budget chosen by federated validation, and the curve/checkpoint cadence."""
    c = typed(["+experiment=savae"])
    assert c.model.name == "savae"
    assert (c.strategy.rounds, c.strategy.patience) == (200, 20)
    assert (c.strategy.client.learning_rate, c.strategy.client.local_epochs) == (3e-3, 5)
    assert (c.curve_every, c.checkpoint_every) == (5, 10)
    plain = typed()
    assert (plain.curve_every, plain.checkpoint_every) == (1, 1)  # every round unless asked
    with pytest.raises(Exception, match="checkpoint_every must be >= 1"):
        typed(["checkpoint_every=0"])
    assert plain.fidelity_every == 0 and typed(["fidelity_every=10"]).fidelity_every == 10  # off by default
    with pytest.raises(Exception, match="fidelity_every must be >= 0"):
        typed(["fidelity_every=-1"])


def test_resume_key():
    assert typed().resume is None
    assert typed(["resume=/some/run"]).resume == "/some/run"


def test_the_cli_refuses_a_bad_value_or_resume_dir_with_status_2_and_no_traceback(tmp_path, capsys):
    from fedjax_rhd.cli import typed_config

    for overrides, message in [
        (["strategy.algorithm=fedavgg"], "fedjax-rhd: bad config: strategy.algorithm='fedavgg'"),
        ([f"resume={tmp_path}"], f"fedjax-rhd: resume={tmp_path}: no checkpoint.npz in that directory"),
    ]:
        with pytest.raises(SystemExit) as stop:
            typed_config(compose(overrides))
        assert stop.value.code == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err


def test_minibatch_local_updates_from_the_command_line():
    client = typed(["strategy.client.batch_size=64", "strategy.client.local_steps=20"]).strategy.client
    assert (client.batch_size, client.local_steps, client.steps) == (64, 20, 20)
    assert typed().strategy.client.batch_size is None  # full batch stays the default
    with pytest.raises(Exception, match="local_steps counts minibatch steps"):
        typed(["strategy.client.local_steps=20"])


def test_vae_bgm_survival_preset_is_the_study_budget_with_the_confirmed_outcome_settings():
    """+experiment=vae_bgm_survival: +experiment=vae_bgm's budget plus the four confirmed settings."""
    c, base = typed(["+experiment=vae_bgm_survival"]), typed(["+experiment=vae_bgm"])
    assert (c.strategy.rounds, c.strategy.patience, c.strategy.client.learning_rate) == (200, 20, 3e-3)
    assert (c.model.outcome_head, c.model.outcome_hidden, c.model.time_model) == ("row", (), "weibull")
    assert (c.model.hidden, c.model.outcome_l2) == ((64,), 0.01)  # the default width
    default = (base.model.outcome_head, base.model.time_model, base.model.hidden)
    assert default == ("latent", "gaussian", (64,))


def test_ctgan_survival_preset_is_the_package_budget_with_the_confirmed_settings():
    """+experiment=ctgan_survival: +experiment=ctgan's budget plus the settings confirmed in session 16."""
    c, base = typed(["+experiment=ctgan_survival"]), typed(["+experiment=ctgan"])
    assert (c.strategy.rounds, c.strategy.selection, c.strategy.client.local_epochs) == (90, "last", 10)
    assert (c.model.outcome_draw, c.model.outcome_lr, c.model.outcome_dim) == ("conditional", 1e-3, ())
    assert (c.model.log_frequency, c.model.missing_by_count, c.model.frequency_power) == (True, True, 0.5)
    assert c.model.generator_ema == 0.995
    assert (base.model.outcome_draw, base.model.log_frequency, base.model.missing_by_count) == (
        "generator",
        True,
        False,
    )
    assert (base.model.frequency_power, base.model.generator_ema) == (0.0, 0.0)
    # session 12's setting, as the preset's comment writes it, composes and validates
    old = typed(["+experiment=ctgan_survival", "model.generator_ema=0", "model.log_frequency=false",
                 "model.missing_by_count=false", "model.frequency_power=0"])  # fmt: skip
    assert (old.model.log_frequency, old.model.generator_ema) == (False, 0.0)
