"""backend=flower in Flower's simulation engine equals the simulator, round by round."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from fedjax_rhd.federation.flower.backend import FlowerBackend, FlowerConfig
from fedjax_rhd.federation.loop import TrainSchedule, run_federation
from fedjax_rhd.federation.participation import RoundPolicy, Sampling
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig
from fedjax_rhd.strategies import ServerConfig
from tests.federation.conftest import spec_of


def max_difference(a: object, b: object) -> float:
    return max(
        float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


@pytest.mark.slow  # Ray's start-up alone is 10-20 s on 2 cores; the default suite keeps one deployment test
def test_flower_simulation_equals_the_simulator(data3):
    """FedAvg, 3 rounds, half the nodes sampled: the same sampled nodes, losses and parameters."""
    spec = spec_of(data3)
    schedule = TrainSchedule(rounds=3, patience=None, seed_init=1, seed_train=2)
    policy = RoundPolicy(sampling=Sampling(fraction=0.5, min_nodes=2))
    sim_backend = SimulatorBackend(SimulatorConfig(), data3, spec)
    sim = run_federation(sim_backend, schedule, policy, seed_sample=4, progress=False)
    with FlowerBackend(FlowerConfig(), data3, spec) as flower:
        fl = run_federation(flower, schedule, policy, seed_sample=4, progress=False)
        assert (
            max_difference(
                flower.finetune(fl.global_params, jax.random.key(5), 2),
                sim_backend.finetune(sim.global_params, jax.random.key(5), 2),
            )
            == 0.0
        )
        grid = np.linspace(0.5, 10.0, 16)
        for name, params in (("max_time", None), ("grid_counts", None), ("breslow_counts", fl.global_params)):
            ours = flower.node_statistic(name, {"grid": grid}, params)
            theirs = sim_backend.node_statistic(name, {"grid": grid}, params)
            for a, b in zip(ours, theirs, strict=True):
                assert a.keys() == b.keys()
                for key in a:
                    np.testing.assert_array_equal(a[key], b[key])
    assert [r["participation"] for r in fl.rounds] == [r["participation"] for r in sim.rounds]
    assert [r["val_loss"] for r in fl.rounds] == [r["val_loss"] for r in sim.rounds]
    assert [r["train_loss"] for r in fl.rounds] == [r["train_loss"] for r in sim.rounds]
    assert fl.best_round == sim.best_round
    assert max_difference(fl.node_params, sim.node_params) == 0.0
    assert max_difference(fl.global_params, sim.global_params) == 0.0


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["fedadam", "local"])
def test_flower_simulation_equals_the_simulator_for_adaptive_and_personalised(data3, algorithm):
    """FedAdam (server optimiser state on the manager) and local (one parameter set per node)."""
    spec = spec_of(data3, "local" if algorithm == "local" else "fedavg")
    if algorithm == "fedadam":
        spec = dataclasses.replace(spec, server=ServerConfig(optimizer="adam", learning_rate=0.01))
    schedule = TrainSchedule(rounds=3, patience=None, seed_init=1, seed_train=2)
    sim = run_federation(SimulatorBackend(SimulatorConfig(), data3, spec), schedule, progress=False)
    with FlowerBackend(FlowerConfig(), data3, spec) as flower:
        fl = run_federation(flower, schedule, progress=False)
    assert [r["val_loss"] for r in fl.rounds] == [r["val_loss"] for r in sim.rounds]
    assert max_difference(fl.node_params, sim.node_params) == 0.0


@pytest.mark.slow
def test_a_node_slower_than_the_time_limit_is_left_out(data3):
    """node3 sleeps past ``time_limit`` in every training round: recorded as timed out, not aggregated,
    and left out of federated validation; the run goes on with the others."""
    spec = spec_of(data3)
    config = FlowerConfig(time_limit=6.0, delays=({"node": "node3", "seconds": 12.0},))
    with FlowerBackend(config, data3, spec) as flower:
        fed = run_federation(flower, TrainSchedule(rounds=2, patience=None), progress=False)
    for record in fed.rounds:
        assert record["participation"]["timed_out"] == ["node3"]
        assert record["participation"]["aggregated"] == ["node1", "node2"]
        assert record["train_loss"][2] is None
        assert np.isfinite(record["val_loss_federated"])
