"""Every config group composes and converts to typed settings; bad keys fail by name."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf.errors import ValidationError

from fedjax_rhd.config import settings_from_config
from tests.conftest import ROOT, compose


def _options(group: str) -> list[str]:
    return sorted(p.stem for p in (Path(ROOT) / "conf" / group).glob("*.yaml"))


@pytest.mark.parametrize(
    "group", ["use_case", "split", "scenario", "model", "strategy", "backend", "tracker"]
)
def test_every_group_option_composes_and_instantiates(group):
    options = _options(group)
    assert options, f"conf/{group} has no options"
    for option in options:
        settings = settings_from_config(compose([f"{group}={option}"]))
        assert settings.use_case == (option if group == "use_case" else "mds")


def test_defaults_are_fedavg_deepsurv_mds_three_nodes():
    s = settings_from_config(compose())
    assert (s.spec.strategy, s.spec.model_name, s.use_case, s.split.name) == (
        "fedavg",
        "deepsurv",
        "mds",
        "three",
    )
    assert s.split.fractions == (0.6, 0.3, 0.1) and s.split.test_fraction == 0.1
    assert s.spec.server.learning_rate == 1.0


def test_split_five_fractions():
    s = settings_from_config(compose(["split=five"]))
    assert s.split.fractions == (0.45, 0.2, 0.15, 0.1, 0.1)


def test_seeds_one_per_purpose():
    s = settings_from_config(compose(["seed.data=1", "seed.split=2", "seed.init=3", "seed.train=4"]))
    assert (s.seed_data, s.split.seed, s.schedule.seed_init, s.schedule.seed_train) == (1, 2, 3, 4)


@pytest.mark.parametrize("override", ["model.hiden=[8]", "strategy.client.learnig_rate=0.1", "seed.splitt=1"])
def test_misspelt_key_fails_naming_it(override):
    bad = override.split("=")[0].split(".")[-1]
    with pytest.raises(ConfigCompositionException) as err:
        compose([override])
    assert bad in str(err.value)


@pytest.mark.parametrize(
    "override, name",
    [
        ("strategy.name=fedavgg", "fedavgg"),
        ("model.activation=sigmoidx", "sigmoidx"),
        ("seed.split=abc", "abc"),
    ],
)
def test_bad_value_fails_naming_it(override, name):
    with pytest.raises(Exception) as err:
        compose([override])
    assert name in str(err.value)


def test_bad_fractions_fail_at_conversion():
    with pytest.raises(ValueError, match="sum to"):
        settings_from_config(compose(["split.fractions=[0.5,0.2]"]))
    with pytest.raises(ConfigCompositionException, match="split.test_fraction") as err:
        compose(["split.test_fraction=abc"])
    assert isinstance(err.value.__cause__, ValidationError)


def test_savae_preset_sets_the_chosen_budget_and_cadences():
    """+experiment=savae: the budget chosen by federated validation, and the curve/checkpoint cadence."""
    s = settings_from_config(compose(["+experiment=savae"]))
    assert s.spec.model_name == "savae"
    assert (s.schedule.rounds, s.schedule.patience) == (200, 20)
    assert (s.spec.client.learning_rate, s.spec.client.local_epochs) == (3e-3, 5)
    assert (s.curve_every, s.checkpoint_every) == (5, 10)
    plain = settings_from_config(compose([]))
    assert (plain.curve_every, plain.checkpoint_every) == (1, 1)  # every round unless asked
    with pytest.raises(ValueError, match="checkpoint_every must be >= 1"):
        settings_from_config(compose(["checkpoint_every=0"]))
