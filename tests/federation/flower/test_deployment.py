"""A local deployment (SuperLink and SuperNodes as processes) equals the simulator: FedAdam and local."""

from __future__ import annotations

import dataclasses

import pytest

from fedjax_rhd.federation.flower.backend import FlowerBackend, FlowerConfig
from fedjax_rhd.federation.loop import TrainSchedule, run_federation
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig
from fedjax_rhd.strategies import ServerConfig
from tests.federation.conftest import spec_of
from tests.federation.flower.test_simulation import max_difference

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.mark.parametrize("algorithm", ["fedadam", "local"])
def test_deployment_equals_the_simulator(data3, algorithm, tmp_path):
    spec = spec_of(data3, "local" if algorithm == "local" else "fedavg")
    if algorithm == "fedadam":
        spec = dataclasses.replace(spec, server=ServerConfig(optimizer="adam", learning_rate=0.01))
    schedule = TrainSchedule(rounds=3, patience=None, seed_init=1, seed_train=2)
    sim = run_federation(SimulatorBackend(SimulatorConfig(), data3, spec), schedule, progress=False)
    config = FlowerConfig(mode="deployment", workdir=str(tmp_path / "work"))
    with FlowerBackend(config, data3, spec) as flower:
        fl = run_federation(flower, schedule, progress=False)
    assert [r["val_loss"] for r in fl.rounds] == [r["val_loss"] for r in sim.rounds]
    assert [r["train_loss"] for r in fl.rounds] == [r["train_loss"] for r in sim.rounds]
    assert max_difference(fl.node_params, sim.node_params) == 0.0
    if algorithm == "fedadam":
        assert max_difference(fl.global_params, sim.global_params) == 0.0
