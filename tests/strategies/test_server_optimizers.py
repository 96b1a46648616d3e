"""FedProx, FedAvgM and Reddi et al.'s adaptive servers against updates coded by hand here."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from fedjax_rhd.data.federated import SplitSpec, build_federated_data
from fedjax_rhd.federation.simulator import federated_round
from fedjax_rhd.models import DeepSurvConfig
from fedjax_rhd.strategies import (
    AlgorithmSpec,
    ClientConfig,
    ServerConfig,
    build_algorithm,
    build_model,
    fedavg,
    scale_by_reddi,
)
from fedjax_rhd.typing import ClientResult, NodeData
from tests.strategies.test_strategies import _quadratic_model

# A toy sequence of average client changes Δ_t (two parameters, five rounds):
# signs flip and magnitudes shrink, so Yogi's sign(v − Δ²) takes both values.
DELTAS = np.array([[0.5, -0.2], [0.3, 0.1], [-0.4, 0.05], [0.01, -0.3], [0.02, 0.001]])


def _reddi_by_hand(variant: str, x0: np.ndarray, eta: float, b1: float, b2: float, tau: float) -> np.ndarray:
    """Reddi et al. 2021, Algorithm 2, in float64, written out from the paper."""
    x, m, v = x0.astype(np.float64), np.zeros_like(x0, dtype=np.float64), np.full(x0.shape, tau**2)
    path = []
    for delta in DELTAS:
        m = b1 * m + (1 - b1) * delta
        d2 = delta**2
        if variant == "adagrad":
            v = v + d2
        elif variant == "adam":
            v = b2 * v + (1 - b2) * d2
        else:  # yogi
            v = v - (1 - b2) * d2 * np.sign(v - d2)
        x = x + eta * m / (np.sqrt(v) + tau)
        path.append(x.copy())
    return np.array(path)


@pytest.mark.parametrize("variant", ["adam", "yogi", "adagrad"])
def test_adaptive_server_equals_reddi_algorithm_2(variant):
    eta, b1, b2, tau = 0.1, 0.9, 0.99, 0.05
    server = ServerConfig(optimizer=variant, learning_rate=eta, b1=b1, b2=b2, tau=tau)
    algo = fedavg(_quadratic_model(), ClientConfig(), server)
    x0 = np.array([1.0, -2.0])
    state = algo.init({"w": jnp.asarray(x0, jnp.float32)}, 2)
    aggregate = jax.jit(algo.aggregate)
    expected = _reddi_by_hand(variant, x0, eta, b1, b2, tau)
    weights = jnp.array([3.0, 1.0])
    for t, delta in enumerate(DELTAS):
        # Two clients whose weighted mean change is Δ_t: 3·(Δ + s) + 1·(Δ − 3s) = 4Δ.
        spread = np.array([0.7, -0.1])
        clients = np.stack(
            [
                np.asarray(state.params["w"]) + delta + spread,
                np.asarray(state.params["w"]) + delta - 3 * spread,
            ]
        )
        results = ClientResult({"w": jnp.asarray(clients, jnp.float32)}, weights, {})
        state = aggregate(state, results, weights)
        np.testing.assert_allclose(
            state.params["w"], expected[t], rtol=2e-5, atol=2e-6, err_msg=f"round {t + 1}"
        )
    assert int(state.round) == len(DELTAS)


def test_fedadam_is_not_optax_adam():
    """Reddi's server has no bias correction and τ outside the root: optax.adam differs."""
    updates = {"w": jnp.array([0.3, -0.2])}
    params = {"w": jnp.zeros(2)}
    ours = scale_by_reddi("adam", 0.9, 0.99, 1e-3)
    theirs = optax.scale_by_adam(0.9, 0.99, eps=1e-3)
    a, _ = ours.update(updates, ours.init(params))
    b, _ = theirs.update(updates, theirs.init(params))
    # first step: ours = 0.1 g / (sqrt(0.99 τ² + 0.01 g²) + τ); adam = g / (|g| + τ) after bias correction
    g = np.array([0.3, -0.2])
    np.testing.assert_allclose(a["w"], 0.1 * g / (np.sqrt(0.99 * 1e-6 + 0.01 * g**2) + 1e-3), rtol=1e-5)
    assert not np.allclose(a["w"], b["w"], rtol=1e-2)


def test_algorithm_spec_refuses_a_proximal_term_outside_fedavg_and_bad_server_settings():
    cfg = DeepSurvConfig()
    with pytest.raises(ValueError, match="proximal_mu"):
        AlgorithmSpec("local", "deepsurv", cfg, 4, client=ClientConfig(proximal_mu=0.1))
    with pytest.raises(ValueError, match="unknown algorithm 'fedprox'"):
        AlgorithmSpec("fedprox", "deepsurv", cfg, 4)  # FedProx is fedavg with client.proximal_mu
    with pytest.raises(ValueError, match="momentum"):
        ServerConfig(optimizer="adam", momentum=0.9)
    # fedavg accepts any server optimiser and a proximal term: its presets are config
    AlgorithmSpec("fedavg", "deepsurv", cfg, 4, client=ClientConfig(proximal_mu=0.1))
    AlgorithmSpec("fedavg", "deepsurv", cfg, 4, server=ServerConfig(optimizer="adagrad", learning_rate=0.1))


def _nodes(x: np.ndarray) -> NodeData:
    k, n, d = x.shape
    ones = jnp.ones((k, n))
    return NodeData(jnp.asarray(x), jnp.ones((k, n, d), bool), ones, ones, ones, jnp.zeros((k, n), jnp.int32))


def test_fedprox_client_step_by_hand():
    mu, lr, epochs = 0.5, 0.1, 7
    algo = fedavg(
        _quadratic_model(),
        ClientConfig(optimizer="sgd", learning_rate=lr, local_epochs=epochs, proximal_mu=mu),
        ServerConfig(),
    )
    w0 = np.array([1.0, -1.0])
    node = jax.tree.map(lambda a: a[0], _nodes(np.array([[[2.0, 0.0], [4.0, 2.0]]])))
    out = algo.client_update({"w": jnp.asarray(w0, jnp.float32)}, node, jax.random.key(0))
    target, w = np.array([3.0, 1.0]), w0.copy()
    for _ in range(epochs):  # gradient of |w − t|² + μ/2 |w − w0|²
        w = w - lr * (2 * (w - target) + mu * (w - w0))
    np.testing.assert_allclose(out.params["w"], w, rtol=1e-5)
    # the reported loss is the model's own, without the proximal term
    w_before_last = w0.copy()
    for _ in range(epochs - 1):
        w_before_last = w_before_last - lr * (2 * (w_before_last - target) + mu * (w_before_last - w0))
    np.testing.assert_allclose(out.metrics["train_loss"], np.sum((w_before_last - target) ** 2), rtol=1e-5)


@pytest.fixture(scope="module")
def small_data(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, SplitSpec("three", (0.6, 0.3, 0.1), seed=1))


def test_fedprox_mu_zero_equals_fedavg(small_data):
    """Three DeepSurv rounds: μ = 0 gives FedAvg's parameters.

    Not bit for bit: the proximal term (times 0) is still in the traced program
    and XLA fuses the two programs differently, so float32 roundings differ in
    the last bits (observed ~1e-5 relative after three rounds).
    """
    base = AlgorithmSpec("fedavg", "deepsurv", DeepSurvConfig(), small_data.num_features)
    prox = AlgorithmSpec(
        "fedavg", "deepsurv", DeepSurvConfig(), small_data.num_features, client=ClientConfig(proximal_mu=0.0)
    )
    prox_on = AlgorithmSpec(
        "fedavg", "deepsurv", DeepSurvConfig(), small_data.num_features, client=ClientConfig(proximal_mu=1.0)
    )
    train = jax.tree.map(jnp.asarray, small_data.train)
    init = build_model(base).init(jax.random.key(0))
    states = {str(s.client.proximal_mu): build_algorithm(s).init(init, 3) for s in (base, prox, prox_on)}
    specs = {"None": base, "0.0": prox, "1.0": prox_on}
    for r in range(1, 4):
        for name, spec in specs.items():
            states[name], _ = federated_round(spec, states[name], train, jax.random.key(r))
    for a, b in zip(jax.tree.leaves(states["None"]), jax.tree.leaves(states["0.0"]), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    # and the term is really there: μ = 1 moves the model elsewhere
    differs = [
        not np.allclose(a, b, rtol=1e-2, atol=1e-4)
        for a, b in zip(
            jax.tree.leaves(states["None"].params),
            jax.tree.leaves(states["1.0"].params),
            strict=True,
        )
    ]
    assert any(differs)


def test_fedavgm_two_rounds_heavy_ball_by_hand():
    algo = fedavg(_quadratic_model(), ClientConfig(), ServerConfig(learning_rate=0.8, momentum=0.5))
    state = algo.init({"w": jnp.array([0.0, 0.0])}, 1)
    x, trace = np.zeros(2), np.zeros(2)
    for delta in DELTAS[:3]:
        results = ClientResult(
            {"w": jnp.asarray((np.asarray(state.params["w"]) + delta)[None], jnp.float32)}, jnp.ones(1), {}
        )
        state = algo.aggregate(state, results, jnp.ones(1))
        trace = 0.5 * trace + (-delta)  # optax's trace of the pseudo-gradient g = −Δ
        x = x - 0.8 * trace
    np.testing.assert_allclose(state.params["w"], x, rtol=1e-5, atol=1e-7)
