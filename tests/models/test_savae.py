"""SAVAE: censored Weibull likelihood by hand, the ELBO falls with training, masks and padding."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.stats import weibull_min

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.models import SAVAEConfig, config_for_guide, savae
from fedjax_rhd.models.savae import weibull_log_likelihood
from fedjax_rhd.typing import NodeData

LAYOUT = (("gaussian", 0, 1), ("gaussian", 1, 1), ("bernoulli", 2, 1), ("categorical", 3, 3))


def test_weibull_log_likelihood_by_hand():
    t, lam, k = 2.0, 1.5, 1.3
    log_s = -((t / lam) ** k)
    log_h = math.log(k / lam) + (k - 1) * math.log(t / lam)
    args = (jnp.array([t, t]), jnp.array([1.0, 0.0]), jnp.full(2, math.log(lam)), jnp.full(2, math.log(k)))
    death, censored = np.asarray(weibull_log_likelihood(*args), np.float64)
    assert death == pytest.approx(log_h + log_s, rel=1e-6)
    assert censored == pytest.approx(log_s, rel=1e-6)
    # A death contributes the density, a censored row the survival function.
    assert death == pytest.approx(weibull_min.logpdf(t, k, scale=lam), rel=1e-6)
    assert censored == pytest.approx(weibull_min.logsf(t, k, scale=lam), rel=1e-6)


def _toy(seed: int = 0, n: int = 160, pad_to: int | None = None) -> NodeData:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=n)
    x = np.zeros((n, 6))
    x[:, 0] = z + 0.3 * rng.normal(size=n)
    x[:, 1] = rng.normal(size=n)
    x[:, 2] = (z + rng.normal(size=n) > 0).astype(float)
    x[np.arange(n), 3 + rng.integers(0, 3, n)] = 1.0
    t = rng.weibull(1.5, n) * np.exp(-0.7 * z)
    c = rng.exponential(2.0, n)
    observed = rng.random((n, 6)) > 0.1
    observed[:, 4:6] = observed[:, 3:4]  # a categorical block is observed as a whole
    return make_node_data(x, observed, np.minimum(t, c), (t <= c).astype(float), pad_to=pad_to)


def _mean_neg_elbo(loss, params, keys) -> float:
    return float(np.mean([loss(params, k) for k in keys]))


def test_elbo_decreases_on_toy_set():
    batch = _toy()
    model = savae(SAVAEConfig(layout=LAYOUT, hidden=(16,), latent_dim=2, dropout=0.0), 6)
    params = model.init(jax.random.key(0))
    keys = [jax.random.key(100 + i) for i in range(8)]  # fixed evaluation draws
    loss = jax.jit(lambda p, k: model.loss(p, batch, k)[0])  # compiled once, not run op by op
    before = _mean_neg_elbo(loss, params, keys)
    opt = optax.adam(1e-2)
    grad = jax.jit(jax.grad(lambda p, k: model.loss(p, batch, k)[0]))

    def step(carry, i):
        p, s = carry
        u, s = opt.update(grad(p, jax.random.fold_in(jax.random.key(1), i)), s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), jnp.arange(400))
    after = _mean_neg_elbo(loss, params, keys)
    assert np.isfinite(after) and after < before - 1.0
    # The time head learned the direction of the latent driver: risk tracks x0.
    risk = np.asarray(model.risk(params, jnp.asarray(batch.x), batch.observed))
    assert np.corrcoef(risk, np.asarray(batch.x)[:, 0])[0, 1] > 0.3


def test_padding_rows_do_not_matter():
    model = savae(SAVAEConfig(layout=LAYOUT), 6)
    params = model.init(jax.random.key(3))
    plain, padded = _toy(1), _toy(1, pad_to=256)
    loss = jax.jit(lambda p, d: model.loss(p, d, None)[0])
    a, b = loss(params, plain), loss(params, padded)
    assert float(a) == pytest.approx(float(b), rel=1e-5)
    # Gradients through padding rows stay finite.
    g = jax.jit(jax.grad(lambda p: model.loss(p, padded, jax.random.key(0))[0]))(params)
    assert all(np.all(np.isfinite(leaf)) for leaf in jax.tree.leaves(g))


def test_reconstruction_ignores_unobserved_targets():
    # With use_observed_mask the encoder input is (x, mask); zero the encoder's
    # dependence on x by comparing two rows that differ only where unobserved
    # AND feeding the same encoder input: the decoder terms must be identical.
    model = savae(SAVAEConfig(layout=LAYOUT, use_observed_mask=True), 6)
    params = model.init(jax.random.key(4))
    params["encoder"]["layers"][0]["kernel"] = params["encoder"]["layers"][0]["kernel"].at[:6].set(0.0)
    batch = _toy(2)
    x = np.asarray(batch.x).copy()
    x[~np.asarray(batch.observed)] = 7.0
    _, aux_a = model.loss(params, batch, None)
    _, aux_b = model.loss(params, batch._replace(x=x), None)
    assert float(aux_a["reconstruction"]) == pytest.approx(float(aux_b["reconstruction"]), rel=1e-6)


def test_survival_curves_and_risk_agree():
    model = savae(SAVAEConfig(layout=LAYOUT), 6)
    params = model.init(jax.random.key(5))
    batch = _toy(3, n=40)
    x, obs = jnp.asarray(batch.x), batch.observed
    times = jnp.array([0.0, 0.5, 1.0, 2.0, 4.0])
    s = np.asarray(model.survival(params, x, obs, times))
    assert s.shape == (40, 5) and np.all(s[:, 0] == 1.0) and np.all(np.diff(s, axis=1) <= 0)
    # risk = -log(median): S(median) = 1/2 for every patient.
    median = np.exp(-np.asarray(model.risk(params, x, obs)))
    at_median = np.diag(np.asarray(model.survival(params, x, obs, jnp.asarray(median))))
    np.testing.assert_allclose(at_median, 0.5, rtol=1e-4)


def test_layout_from_guide(mds_guide):
    cfg = config_for_guide(SAVAEConfig(), mds_guide)
    assert sum(w for _, _, w in cfg.layout) == len(mds_guide.encoded_names)
    assert ("categorical", mds_guide.encoded_names.index("ipssr_cyto=very_good"), 5) in cfg.layout
    assert hash(cfg) == hash(config_for_guide(SAVAEConfig(), mds_guide))  # usable as a jit key
    with pytest.raises(ValueError, match="layout covers"):
        savae(cfg, len(mds_guide.encoded_names) + 1)


def test_vmapped_loss_over_stacked_nodes():
    model = savae(SAVAEConfig(layout=LAYOUT), 6)
    params = model.init(jax.random.key(6))
    nodes = [_toy(s, n=n, pad_to=128) for s, n in [(0, 100), (1, 60)]]
    stacked = NodeData(*(np.stack(leaves) for leaves in zip(*nodes, strict=True)))
    keys = jax.random.split(jax.random.key(0), 2)
    losses = jax.jit(jax.vmap(lambda d, k: model.loss(params, d, k)[0]))(stacked, keys)
    assert losses.shape == (2,) and np.all(np.isfinite(losses))
