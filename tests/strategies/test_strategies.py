"""FedAvg aggregation against hand-computed numbers; local and centralized semantics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_rhd.strategies import ClientConfig, ServerConfig, fedavg, local, weighted_mean
from fedjax_rhd.typing import ClientResult, SurvivalModel


def _quadratic_model() -> SurvivalModel:
    """A toy 'model' whose loss pulls w towards the node's mean x (for client steps)."""

    def init(rng):
        del rng
        return {"w": jnp.zeros(2)}

    def loss(params, batch, rng):
        del rng
        target = (batch.x * batch.weight[:, None]).sum(0) / batch.weight.sum()
        return jnp.sum((params["w"] - target) ** 2), {}

    def risk(params, x, observed):
        del observed
        return x @ params["w"]

    return SurvivalModel(init, loss, risk)


def _toy_results():
    params = {"w": jnp.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]), "b": jnp.array([[0.5], [1.5], [-2.0]])}
    return ClientResult(params=params, num_examples=jnp.array([10.0, 20.0, 30.0]), metrics={})


def test_weighted_mean_hand_computed():
    res = _toy_results()
    mean = weighted_mean(res.params, res.num_examples)
    # w: (10*[1,2] + 20*[3,4] + 30*[5,6]) / 60 = [220/60, 280/60]
    np.testing.assert_allclose(mean["w"], [220 / 60, 280 / 60], rtol=1e-6)
    # b: (10*0.5 + 20*1.5 - 30*2) / 60 = -25/60
    np.testing.assert_allclose(mean["b"], [-25 / 60], rtol=1e-6)


def test_fedavg_server_sgd_one_equals_weighted_mean():
    algo = fedavg(_quadratic_model(), ClientConfig(), ServerConfig(learning_rate=1.0))
    global_params = {"w": jnp.array([-7.0, 0.25]), "b": jnp.array([3.0])}
    state = algo.init(global_params, 3)
    res = _toy_results()
    new = jax.jit(algo.aggregate)(state, res, res.num_examples)
    expected = {"w": np.array([220 / 60, 280 / 60]), "b": np.array([-25 / 60])}
    for key in expected:
        # equal up to float32 rounding of global - (global - mean), not bit for bit
        np.testing.assert_allclose(new.params[key], expected[key], rtol=1e-6, atol=1e-6)
    assert int(new.round) == 1


def test_fedavg_server_momentum_matches_optax_by_hand():
    algo = fedavg(_quadratic_model(), ClientConfig(), ServerConfig(learning_rate=0.5, momentum=0.9))
    g0 = {"w": jnp.array([1.0, 1.0]), "b": jnp.array([0.0])}
    state = algo.init(g0, 3)
    res = _toy_results()
    s1 = algo.aggregate(state, res, res.num_examples)
    s2 = algo.aggregate(s1, res, res.num_examples)
    mean_w = np.array([220 / 60, 280 / 60])
    # heavy ball: v1 = d1, x1 = x0 - lr*v1; v2 = 0.9*v1 + d2, x2 = x1 - lr*v2, d = x - mean
    d1 = np.array([1.0, 1.0]) - mean_w
    x1 = np.array([1.0, 1.0]) - 0.5 * d1
    d2 = x1 - mean_w
    x2 = x1 - 0.5 * (0.9 * d1 + d2)
    np.testing.assert_allclose(s2.params["w"], x2, rtol=1e-5)


def test_zero_weight_node_is_ignored():
    res = _toy_results()
    mean = weighted_mean(res.params, jnp.array([1.0, 0.0, 1.0]))
    np.testing.assert_allclose(mean["w"], [3.0, 4.0])


def test_local_keeps_each_node_model_and_client_update_descends():
    from fedjax_rhd.typing import NodeData

    model = _quadratic_model()
    algo = local(model, ClientConfig(optimizer="sgd", learning_rate=0.1, local_epochs=20))
    state = algo.init(model.init(None), 2)
    assert state.params["w"].shape == (2, 2)
    x = jnp.array([[[1.0, 1.0], [3.0, 3.0]], [[-2.0, 0.0], [-2.0, 0.0]]])
    ones = jnp.ones((2, 2))
    nodes = NodeData(
        x, ones.astype(bool)[..., None].repeat(2, -1), ones, ones, ones, jnp.zeros((2, 2), jnp.int32)
    )
    keys = jax.random.split(jax.random.key(0), 2)
    results = jax.vmap(algo.client_update)(state.params, nodes, keys)
    new = algo.aggregate(state, results, results.num_examples)
    # gradient descent on |w - target|^2 with lr 0.1 for 20 steps: w = target * (1 - 0.8^20)
    shrink = 1 - 0.8**20
    np.testing.assert_allclose(new.params["w"], np.array([[2.0, 2.0], [-2.0, 0.0]]) * shrink, rtol=1e-5)
    np.testing.assert_array_equal(new.params["w"], results.params["w"])  # no aggregation


def test_optax_sgd_one_is_the_server_default():
    assert ServerConfig().learning_rate == 1.0 and ServerConfig().momentum == 0.0
    opt = ServerConfig().transform()
    p = {"w": jnp.array([2.0])}
    upd, _ = opt.update({"w": jnp.array([0.5])}, opt.init(p), p)
    assert float(optax.apply_updates(p, upd)["w"][0]) == pytest.approx(1.5)
