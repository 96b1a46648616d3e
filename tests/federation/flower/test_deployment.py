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


# FedAdam through the nodes' warm workers; local with a ClientApp process doing each message's work
@pytest.mark.parametrize(("algorithm", "node_workers"), [("fedadam", True), ("local", False)])
def test_deployment_equals_the_simulator(data3, algorithm, node_workers, tmp_path):
    spec = spec_of(data3, "local" if algorithm == "local" else "fedavg")
    if algorithm == "fedadam":
        spec = dataclasses.replace(spec, server=ServerConfig(optimizer="adam", learning_rate=0.01))
    schedule = TrainSchedule(rounds=3, patience=None, seed_init=1, seed_train=2)
    sim = run_federation(SimulatorBackend(SimulatorConfig(), data3, spec), schedule, progress=False)
    config = FlowerConfig(mode="deployment", workdir=str(tmp_path / "work"), node_workers=node_workers)
    with FlowerBackend(config, data3, spec) as flower:
        fl = run_federation(flower, schedule, progress=False)
    assert [r["val_loss"] for r in fl.rounds] == [r["val_loss"] for r in sim.rounds]
    assert [r["train_loss"] for r in fl.rounds] == [r["train_loss"] for r in sim.rounds]
    assert max_difference(fl.node_params, sim.node_params) == 0.0
    if algorithm == "fedadam":
        assert max_difference(fl.global_params, sim.global_params) == 0.0
    worker_logs = sorted((tmp_path / "work" / "flower_logs").glob("worker-*.log"))
    if node_workers:  # every node's worker answered every training message
        assert len(worker_logs) == data3.num_nodes
        # 3 rounds, then the final node models (one more local update of the selected model)
        assert all(log.read_text().count("answered train in") == 4 for log in worker_logs)
    else:
        assert worker_logs == []
