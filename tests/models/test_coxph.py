"""Linear Cox: the project's optimiser reaches statsmodels' Breslow maximum partial likelihood."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from statsmodels.duration.hazard_regression import PHReg

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.models import CoxPHConfig, coxph


def _data(seed: int = 0, n: int = 200, d: int = 3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    beta = np.array([0.8, -0.5, 0.0])[:d]
    t = np.round(rng.exponential(np.exp(-x @ beta)) * 4) / 4 + 0.25  # rounded: ties
    c = rng.exponential(2.0, n)
    return x, np.minimum(t, c), (t <= c).astype(float)


def test_coxph_matches_statsmodels_breslow():
    x, time, event = _data()
    model = coxph(CoxPHConfig(l2=0.0), x.shape[1])
    batch = make_node_data(x, np.ones_like(x, bool), time, event, pad_to=256)  # padding must not matter
    params = model.init(jax.random.key(0))
    opt = optax.adam(0.05)
    grad = jax.jit(jax.grad(lambda p: model.loss(p, batch, None)[0]))

    def step(carry, _):
        p, s = carry
        u, s = opt.update(grad(p), s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=1500)
    ref = PHReg(time, x, status=event, ties="breslow").fit().params
    np.testing.assert_allclose(np.asarray(params["kernel"]), ref, atol=2e-3)


def test_coxph_init_risk_loss_shapes():
    x, time, event = _data(n=50)
    model = coxph(CoxPHConfig(use_observed_mask=True), x.shape[1])
    params = model.init(jax.random.key(1))
    assert params["kernel"].shape == (2 * x.shape[1],)
    assert model.risk(params, jnp.asarray(x, jnp.float32), np.ones_like(x, bool)).shape == (50,)
    loss, aux = model.loss(params, make_node_data(x, np.ones_like(x, bool), time, event), None)
    assert np.isfinite(float(loss)) and set(aux) == {"cox"}
    assert model.survival is None  # curves come from the federated Breslow baseline


def test_coxph_rejects_negative_l2():
    with pytest.raises(ValueError, match="l2"):
        CoxPHConfig(l2=-1.0)
