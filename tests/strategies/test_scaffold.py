"""SCAFFOLD (strategies/scaffold.py): control updates by hand, one node = local SGD, absent nodes, resume."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.data import SplitSpec, build_federated_data
from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.federation.loop import TrainSchedule, run_federation
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig
from fedjax_rhd.models import DeepSurvConfig
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, ServerConfig, build_algorithm, build_model
from fedjax_rhd.strategies.scaffold import ScaffoldControls
from fedjax_rhd.typing import ClientResult, ServerState

SGD = ClientConfig(optimizer="sgd", learning_rate=0.05, local_epochs=2)


def _spec(num_features: int, client: ClientConfig = SGD, server: ServerConfig | None = None) -> AlgorithmSpec:
    server = server or ServerConfig()
    return AlgorithmSpec(
        "scaffold", "deepsurv", DeepSurvConfig(hidden=(4,), dropout=0.0), num_features, client, server
    )


def test_control_update_by_hand():
    # S = 2 steps of eta_l = 0.05; eta_g = 0.5; node 3 sat out
    spec = _spec(3, server=ServerConfig(learning_rate=0.5))
    algo = build_algorithm(spec)
    x = {"w": jnp.array([1.0, 2.0])}
    c = {"w": jnp.array([0.1, -0.1])}
    c_nodes = {"w": jnp.array([[0.0, 0.0], [0.2, 0.2], [5.0, 5.0]])}
    state = ServerState(x, ScaffoldControls(c, c_nodes), jnp.zeros((), jnp.int32))
    np.testing.assert_allclose(
        algo.node_inputs(state)["w"], [[0.1, -0.1], [-0.1, -0.3], [-4.9, -5.1]], rtol=1e-6
    )
    y = {"w": jnp.array([[0.9, 2.1], [1.2, 1.8], [7.0, 7.0]])}
    weights = jnp.array([30.0, 10.0, 0.0])
    new = algo.aggregate(state, ClientResult(y, weights, {}), weights)
    # model: x + 0.5 * (patients-weighted mean of y over nodes 1-2 - x)
    mean_y = (30 * np.array([0.9, 2.1]) + 10 * np.array([1.2, 1.8])) / 40
    np.testing.assert_allclose(new.params["w"], np.array([1.0, 2.0]) + 0.5 * (mean_y - [1.0, 2.0]), rtol=1e-6)
    # option II: c_i+ = c_i - c + (x - y_i) / (S * eta_l) = c_i - c + (x - y_i) * 10
    c1 = np.array([0.0, 0.0]) - [0.1, -0.1] + (np.array([1.0, 2.0]) - [0.9, 2.1]) * 10
    c2 = np.array([0.2, 0.2]) - [0.1, -0.1] + (np.array([1.0, 2.0]) - [1.2, 1.8]) * 10
    np.testing.assert_allclose(
        new.opt_state.nodes["w"], [c1, c2, [5.0, 5.0]], rtol=1e-5
    )  # node 3 keeps its c_i
    # c += (1/N) * sum of the changes, N = 3 nodes
    expected_c = np.array([0.1, -0.1]) + ((c1 - [0.0, 0.0]) + (c2 - [0.2, 0.2])) / 3
    np.testing.assert_allclose(new.opt_state.server["w"], expected_c, rtol=1e-5)


def test_the_client_step_adds_the_correction_to_every_gradient():
    # a zero correction is plain SGD; a correction of 1 moves each parameter by an extra -eta_l per step
    one_step = dataclasses.replace(SGD, local_epochs=1)
    spec = dataclasses.replace(
        _spec(2, one_step), model_config=DeepSurvConfig(hidden=(), dropout=0.0, l2=0.0)
    )
    algo = build_algorithm(spec)
    rng = np.random.default_rng(0)
    node = make_node_data(
        rng.normal(size=(40, 2)), np.ones((40, 2), bool), rng.exponential(size=40), rng.random(40) < 0.7
    )
    params = _zeros(spec)
    zero = jax.tree.map(jnp.zeros_like, params)
    plain = build_algorithm(dataclasses.replace(spec, algorithm="local")).client_update(
        params, node, jax.random.key(0)
    )
    mine = algo.client_update(params, node, jax.random.key(0), zero)
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(mine.params), strict=True):
        np.testing.assert_array_equal(a, b)
    shifted = algo.client_update(params, node, jax.random.key(0), jax.tree.map(lambda p: p + 1.0, zero))
    for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(shifted.params), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a) - 0.05, rtol=1e-5, atol=1e-6)


def _zeros(spec: AlgorithmSpec):
    return jax.tree.map(jnp.zeros_like, build_model(spec).init(jax.random.key(0)))


@pytest.fixture(scope="module")
def one_node(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df.head(300), mds_guide, SplitSpec("one", (1.0,), seed=0))


def test_one_node_with_full_participation_is_plain_local_sgd(one_node):
    # c = c_1 after every round, so the correction is 0: SCAFFOLD = the node alone with the same SGD steps
    schedule = TrainSchedule(rounds=4, patience=None, seed_init=0, seed_train=1)
    spec = _spec(one_node.num_features)
    ours = run_federation(SimulatorBackend(SimulatorConfig(), one_node, spec), schedule, progress=False)
    alone = run_federation(
        SimulatorBackend(SimulatorConfig(), one_node, dataclasses.replace(spec, algorithm="local")),
        schedule,
        progress=False,
    )
    np.testing.assert_allclose(
        [r["val_loss"] for r in ours.rounds], [r["val_loss"] for r in alone.rounds], rtol=1e-5
    )
    for a, b in zip(jax.tree.leaves(ours.global_params), jax.tree.leaves(alone.node_params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b)[0], rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def data3(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df.head(400), mds_guide, SplitSpec("three", (0.6, 0.3, 0.1), seed=2))


def test_resume_mid_run_keeps_the_controls(data3, tmp_path):
    """4 rounds straight = 2 rounds, checkpoint, resume to 4 (the controls travel in the checkpoint)."""
    spec = _spec(data3.num_features)
    straight = run_federation(
        SimulatorBackend(SimulatorConfig(), data3, spec),
        TrainSchedule(rounds=4, patience=None, seed_init=0, seed_train=1),
        progress=False,
    )
    path = tmp_path / "checkpoint.npz"
    run_federation(
        SimulatorBackend(SimulatorConfig(), data3, spec),
        TrainSchedule(rounds=2, patience=None, seed_init=0, seed_train=1),
        progress=False,
        checkpoint=path,
    )
    resumed = run_federation(
        SimulatorBackend(SimulatorConfig(), data3, spec),
        TrainSchedule(rounds=4, patience=None, seed_init=0, seed_train=1),
        progress=False,
        checkpoint=path,
        resume=True,
    )
    assert [r["val_loss"] for r in resumed.rounds] == [r["val_loss"] for r in straight.rounds]
    for a, b in zip(
        jax.tree.leaves(resumed.global_params), jax.tree.leaves(straight.global_params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_scaffold_refuses_adam_and_a_proximal_term():
    with pytest.raises(ValueError, match="set strategy.client.optimizer=sgd"):
        build_algorithm(_spec(3, client=ClientConfig()))
    with pytest.raises(ValueError, match="proximal_mu is FedProx's μ .algorithm fedavg., not for scaffold"):
        _spec(3, client=dataclasses.replace(SGD, proximal_mu=0.1))


def test_control_variates_by_hand_on_a_quadratic():
    """Two nodes with losses 0.5 * (w - a_k)^2, local SGD (2 steps of 0.1) from w = 0 and zero controls:
    node k moves to y_k = 0.19 a_k, and option II sets c_k to its mean gradient over the steps,
    (g(0) + g(0.1 a_k)) / 2 = -0.95 a_k; the server control is their mean over N = 2 nodes."""
    from fedjax_rhd.strategies.scaffold import scaffold
    from fedjax_rhd.typing import SurvivalModel

    def loss(params, batch, rng):
        del rng
        target = jnp.sum(batch.x[:, 0] * batch.weight) / jnp.sum(batch.weight)  # a_k: the node's mean x
        return 0.5 * jnp.sum((params["w"] - target) ** 2), {}

    toy = SurvivalModel(init=lambda rng: {"w": jnp.zeros(())}, loss=loss, risk=None)
    algo = scaffold(toy, ClientConfig(optimizer="sgd", learning_rate=0.1, local_epochs=2), ServerConfig())
    a = np.array([1.0, 3.0])
    nodes = [
        make_node_data(np.full((4, 1), ak), np.ones((4, 1), bool), np.arange(1.0, 5.0), np.ones(4))
        for ak in a
    ]
    state = algo.init({"w": jnp.zeros(())}, 2)
    results = [algo.client_update(state.params, n, jax.random.key(0), {"w": jnp.zeros(())}) for n in nodes]
    y = np.array([float(r.params["w"]) for r in results])
    np.testing.assert_allclose(y, 0.19 * a, rtol=1e-6)
    stacked = ClientResult({"w": jnp.asarray(y)}, jnp.array([4.0, 4.0]), {})
    new = algo.aggregate(state, stacked, stacked.num_examples)
    np.testing.assert_allclose(new.opt_state.nodes["w"], -0.95 * a, rtol=1e-5)
    np.testing.assert_allclose(new.opt_state.server["w"], -0.95 * a.mean(), rtol=1e-5)
    np.testing.assert_allclose(new.params["w"], 0.19 * a.mean(), rtol=1e-6)  # equal node sizes
    # next round, node k's correction c - c_k pulls its steps towards the other node's drift
    np.testing.assert_allclose(algo.node_inputs(new)["w"], -0.95 * a.mean() + 0.95 * a, rtol=1e-5)
