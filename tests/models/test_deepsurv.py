"""Tests for the DeepSurv model's pure functions."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from lifelines.utils import concordance_index

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.models import MODELS, DeepSurvConfig, deepsurv
from fedjax_rhd.models.cox import cox_loss
from fedjax_rhd.typing import NodeData

NUM_FEATURES = 5


def toy_node(seed: int, n: int = 200, pad_to: int | None = None, missing: float = 0.0) -> NodeData:
    """Exponential survival times with a strong linear log-hazard, ~30% censored."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, NUM_FEATURES))
    log_hazard = x @ np.array([1.5, -1.0, 0.5, 0.0, 0.0])
    event_time = rng.exponential(1.0 / np.exp(log_hazard))
    censor_time = rng.exponential(2.0, size=n)
    time = np.minimum(event_time, censor_time)
    event = (event_time <= censor_time).astype(float)
    observed = rng.random((n, NUM_FEATURES)) >= missing
    x = np.where(observed, x, 0.0)  # mean imputation after standardisation
    return make_node_data(x, observed, time, event, pad_to=pad_to)


def stack(nodes):
    return jax.tree.map(lambda *a: jnp.stack(a), *nodes)


def test_registry_and_config_are_hashable_static_args():
    assert MODELS["deepsurv"].factory is deepsurv and MODELS["deepsurv"].config is DeepSurvConfig
    config = DeepSurvConfig(hidden=[16, 8])  # lists (e.g. from Hydra) become tuples
    assert config.hidden == (16, 8)
    assert hash(config) == hash(DeepSurvConfig(hidden=(16, 8)))
    # Same config -> the very same functions (keeps jit caches warm across jobs).
    assert deepsurv(config, 3) is deepsurv(DeepSurvConfig(hidden=(16, 8)), 3)

    # The config is hashable, so it can be a static argument.
    width = jax.jit(lambda cfg, v: v * cfg.hidden[0], static_argnums=0)
    assert float(width(config, 2.0)) == 32.0
    with pytest.raises(ValueError, match="activation"):
        DeepSurvConfig(activation="swish")
    with pytest.raises(ValueError, match="dropout"):
        DeepSurvConfig(dropout=1.0)


@pytest.mark.parametrize("use_mask", [True, False])
def test_init_shapes_finite_and_plain_dict(use_mask):
    config = DeepSurvConfig(hidden=(32, 16), use_observed_mask=use_mask)
    params = deepsurv(config, NUM_FEATURES).init(jax.random.key(0))
    in_features = NUM_FEATURES * (2 if use_mask else 1)
    shapes = jax.tree.map(lambda a: a.shape, params)
    assert shapes == {
        "hidden": {0: {"kernel": (in_features, 32), "bias": (32,)}, 1: {"kernel": (32, 16), "bias": (16,)}},
        "out": {"kernel": (16, 1)},  # no bias: Cox has no intercept
    }

    def check_plain(tree):
        assert type(tree) is dict
        for value in tree.values():
            if isinstance(value, dict):
                check_plain(value)
            else:
                assert isinstance(value, jax.Array) and value.dtype == jnp.float32
                assert np.all(np.isfinite(np.asarray(value)))

    check_plain(params)
    # Round-trips through plain pytree tooling unchanged.
    leaves, treedef = jax.tree.flatten(params)
    assert jax.tree.unflatten(treedef, leaves).keys() == params.keys()


def test_training_reduces_loss_and_ranks_patients():
    model = deepsurv(DeepSurvConfig(), NUM_FEATURES)
    batch = toy_node(0)
    params = model.init(jax.random.key(0))
    optimiser = optax.adam(1e-2)
    opt_state = optimiser.init(params)

    @jax.jit
    def step(params, opt_state, key):
        grads = jax.grad(lambda p: model.loss(p, batch, key)[0])(params)
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    initial = float(model.loss(params, batch, None)[0])
    for i in range(200):
        params, opt_state = step(params, opt_state, jax.random.fold_in(jax.random.key(1), i))
    final = float(model.loss(params, batch, None)[0])
    assert np.isfinite(final) and final < initial - 0.2

    risk = np.asarray(model.risk(params, batch.x, batch.observed))
    # lifelines expects a score that grows with survival time, hence -risk.
    assert concordance_index(batch.time, -risk, batch.event) > 0.7


def test_dropout_is_keyed_and_absent_without_key():
    config = DeepSurvConfig(dropout=0.3)
    model = deepsurv(config, NUM_FEATURES)
    batch = toy_node(1, n=60)
    params = model.init(jax.random.key(0))
    loss_a = float(model.loss(params, batch, jax.random.key(1))[0])
    loss_a_again = float(model.loss(params, batch, jax.random.key(1))[0])
    loss_b = float(model.loss(params, batch, jax.random.key(2))[0])
    assert loss_a == loss_a_again
    assert loss_a != loss_b

    # rng=None is eval mode: the loss is the Cox loss of ``risk`` plus the penalty.
    no_dropout, aux = model.loss(params, batch, None)
    eval_cox = cox_loss(model.risk(params, batch.x, batch.observed), batch)
    np.testing.assert_allclose(float(aux["cox"]), float(eval_cox), rtol=1e-6)
    kernels = [params["hidden"][0]["kernel"], params["hidden"][1]["kernel"], params["out"]["kernel"]]
    penalty = config.l2 * sum(float(jnp.sum(k**2)) for k in kernels)
    np.testing.assert_allclose(float(no_dropout), float(eval_cox) + penalty, rtol=1e-6)

    # Without dropout in the config a key changes nothing.
    plain = deepsurv(dataclasses.replace(config, dropout=0.0), NUM_FEATURES)
    assert float(plain.loss(params, batch, jax.random.key(1))[0]) == float(plain.loss(params, batch, None)[0])


def test_observed_mask_is_an_input_only_when_enabled():
    batch = toy_node(2, n=30, missing=0.3)
    flipped = ~np.asarray(batch.observed)
    for use_mask, differs in [(True, True), (False, False)]:
        model = deepsurv(DeepSurvConfig(use_observed_mask=use_mask), NUM_FEATURES)
        params = model.init(jax.random.key(0))
        a = np.asarray(model.risk(params, batch.x, batch.observed))
        b = np.asarray(model.risk(params, batch.x, flipped))
        assert (not np.allclose(a, b)) == differs


@pytest.mark.parametrize("use_key", [True, False])
def test_jit_vmap_over_nodes_matches_unbatched(use_key):
    model = deepsurv(DeepSurvConfig(), NUM_FEATURES)
    nodes = [toy_node(10, n=40, pad_to=64), toy_node(11, n=64, pad_to=64), toy_node(12, n=17, pad_to=64)]
    params = [model.init(jax.random.key(k)) for k in range(3)]
    keys = jax.random.split(jax.random.key(5), 3)

    if use_key:
        batched = jax.jit(jax.vmap(model.loss))(stack(params), stack(nodes), keys)
        single = [model.loss(p, b, k) for p, b, k in zip(params, nodes, keys, strict=True)]
    else:
        batched = jax.jit(jax.vmap(lambda p, b: model.loss(p, b, None)))(stack(params), stack(nodes))
        single = [model.loss(p, b, None) for p, b in zip(params, nodes, strict=True)]
    np.testing.assert_allclose(np.asarray(batched[0]), [float(s[0]) for s in single], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(batched[1]["cox"]), [float(s[1]["cox"]) for s in single], rtol=1e-5)

    # Stacked init and risk vmap the same way.
    stacked_params = jax.jit(jax.vmap(model.init))(jax.random.split(jax.random.key(0), 3))
    assert stacked_params["hidden"][0]["kernel"].shape == (3, 2 * NUM_FEATURES, 32)
    risks = jax.jit(jax.vmap(model.risk))(stack(params), stack(nodes).x, stack(nodes).observed)
    for k in range(3):
        np.testing.assert_allclose(
            np.asarray(risks[k]),
            np.asarray(model.risk(params[k], nodes[k].x, nodes[k].observed)),
            rtol=1e-5,
            atol=1e-6,
        )


def test_gradient_finite_on_node_without_events():
    model = deepsurv(DeepSurvConfig(), NUM_FEATURES)
    batch = toy_node(3, n=20, pad_to=24)
    batch = batch._replace(event=np.zeros_like(batch.event))
    params = model.init(jax.random.key(0))
    (loss, aux), grads = jax.jit(jax.value_and_grad(model.loss, has_aux=True))(
        params, batch, jax.random.key(1)
    )
    assert float(aux["cox"]) == 0.0 and np.isfinite(float(loss))
    assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree.leaves(grads))
