"""backend=flower in Flower's simulation engine equals the simulator, round by round."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

from fedjax_rhd.data import SplitSpec, build_federated_data
from fedjax_rhd.data.scenario import ScenarioSpec
from fedjax_rhd.federation.flower import protocol
from fedjax_rhd.federation.flower.backend import FlowerBackend, FlowerConfig
from fedjax_rhd.federation.loop import TrainSchedule, run_federation
from fedjax_rhd.federation.participation import RoundPolicy, Sampling
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig
from fedjax_rhd.strategies import DPConfig, ServerConfig
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
@pytest.mark.parametrize("algorithm", ["fedadam", "local", "dp-fedavg", "scaffold", "minibatch"])
def test_flower_simulation_equals_the_simulator_for_adaptive_and_personalised(data3, algorithm):
    """FedAdam (server optimiser state on the manager), local (one parameter set per node),
    DP-FedAvg (clipping and seeded noise in the shared aggregate: the same noise in both),
    SCAFFOLD (node inputs sent with the model) and minibatch local updates."""
    spec = spec_of(data3, "local" if algorithm == "local" else "fedavg")
    if algorithm == "fedadam":
        spec = dataclasses.replace(spec, server=ServerConfig(optimizer="adam", learning_rate=0.01))
    if algorithm == "dp-fedavg":
        spec = dataclasses.replace(spec, dp=DPConfig(clip=0.05, noise_multiplier=1.0))
    if algorithm == "minibatch":  # batches drawn from the node's key: the same batches on a Flower node
        spec = dataclasses.replace(
            spec, client=dataclasses.replace(spec.client, batch_size=32, local_steps=3)
        )
    if algorithm == "scaffold":  # per-node controls on the manager, each node's correction in its message
        client = dataclasses.replace(spec.client, optimizer="sgd", learning_rate=0.05)
        spec = dataclasses.replace(spec, algorithm="scaffold", client=client)
    schedule = TrainSchedule(rounds=3, patience=None, seed_init=1, seed_train=2)
    sim = run_federation(SimulatorBackend(SimulatorConfig(), data3, spec), schedule, progress=False)
    with FlowerBackend(FlowerConfig(), data3, spec) as flower:
        fl = run_federation(flower, schedule, progress=False)
    if algorithm == "minibatch":
        # The same batches (drawn from the node's key), but a gathered batch's matmul is laid out
        # differently vmapped than alone, so the backends agree to float32 rounding, like SAVAE's.
        np.testing.assert_allclose(
            [r["val_loss"] for r in fl.rounds], [r["val_loss"] for r in sim.rounds], rtol=1e-5
        )
        assert max_difference(fl.node_params, sim.node_params) < 1e-4
        return
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


@pytest.fixture(scope="module")
def mm3(tmp_path_factory):
    """300 simulated MM patients over three nodes, the 40 PET features reduced to 8 principal components;
    the smallest node has no PET at all."""
    from fedjax_rhd.sources import UseCase, load_use_case
    from harmonize.guide import load_guide

    use_case = UseCase(name="mm", guide="mm", n_patients=300, reduce={"pet": 8})
    cohort = load_use_case(
        use_case, seed_data=3, data_root=tmp_path_factory.mktemp("data"), real_data_root=None
    )
    return build_federated_data(
        cohort.table,
        load_guide("mm"),
        SplitSpec("three", (0.6, 0.3, 0.1), seed=2),
        scenario=ScenarioSpec(name="no_pet", missing_groups={"-1": ("pet",)}),
        reduce=use_case.reductions,
    )


@pytest.mark.slow
def test_flower_simulation_equals_the_simulator_with_a_reduced_feature_group(mm3):
    """The nodes fit the PCA with the manager (two rounds of statistics) and compute their own
    components: the same rounds and parameters, bit for bit."""
    spec = spec_of(mm3)
    schedule = TrainSchedule(rounds=2, patience=None, seed_init=1, seed_train=2)
    sim = run_federation(SimulatorBackend(SimulatorConfig(), mm3, spec), schedule, progress=False)
    with FlowerBackend(FlowerConfig(), mm3, spec) as flower:
        fl = run_federation(flower, schedule, progress=False)
        for k, folder in enumerate(flower.node_folders):  # the run gave each node the raw PET values
            with np.load(folder / protocol.RAW_ARRAYS) as raw:
                assert raw["train_values"].shape[1] == mm3.num_features - 8
                assert raw["train_group.pet"].shape == (mm3.n_train[k], 40)
            assert (folder / protocol.REDUCED_ARRAYS).is_file()  # its components, computed by itself
    assert [r["val_loss"] for r in fl.rounds] == [r["val_loss"] for r in sim.rounds]
    assert [r["train_loss"] for r in fl.rounds] == [r["train_loss"] for r in sim.rounds]
    assert max_difference(fl.node_params, sim.node_params) == 0.0
    assert max_difference(fl.global_params, sim.global_params) == 0.0


@pytest.mark.slow
def test_flower_local_with_each_nodes_own_preprocessing_equals_the_simulator(small_cohort, mds_guide):
    """strategy=local, worst scenario: each Flower node packs its rows with its own statistics (sent to
    it alone), so rounds, validation losses, models and their per-node test views match the simulator."""
    df, _ = small_cohort
    worst = ScenarioSpec(name="worst", missing_groups={"2": ("genomic",)}, extra_missing=0.1)
    data = build_federated_data(df, mds_guide, SplitSpec("three", (0.6, 0.3, 0.1), seed=2), scenario=worst,
                                isolated=True)  # fmt: skip
    spec = spec_of(data, "local")
    schedule = TrainSchedule(rounds=3, patience=None, seed_init=1, seed_train=2)
    sim_backend = SimulatorBackend(SimulatorConfig(), data, spec)
    sim = run_federation(sim_backend, schedule, progress=False)
    with FlowerBackend(FlowerConfig(), data, spec) as flower:
        fl = run_federation(flower, schedule, progress=False)
        np.testing.assert_array_equal(
            flower.test_risks(fl.node_params), sim_backend.test_risks(sim.node_params)
        )
    assert [r["val_loss"] for r in fl.rounds] == [r["val_loss"] for r in sim.rounds]
    assert max_difference(fl.node_params, sim.node_params) == 0.0
