"""VAE-BGM (fedjax_rhd.models.vae_bgm): samples always in the guide's schema, the decoding map,
the loss on padded nodes and config errors that name the key."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedjax_rhd.data.federated import encode_rows
from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.models import VAEBGMConfig, vae_bgm
from fedjax_rhd.models.tabular import decode_table, table_schema
from fedjax_rhd.typing import NodeData


@pytest.fixture(scope="module")
def model_and_params(mds_guide):
    config = VAEBGMConfig(latent_dim=3, hidden=(16,)).for_guide(mds_guide)
    d = sum(f.width for f in mds_guide.features)
    model = vae_bgm(config, d)
    return model, model.init(jax.random.key(0)), d


def _wild_generator(params, d, spread: float, seed: int) -> dict:
    """A mixture far from anything trained and a scaling that throws values out of range."""
    rng = np.random.default_rng(seed)
    return {
        "network": params,
        "prior": {
            "weights": np.array([0.5, 0.3, 0.2], np.float32),
            "means": rng.normal(0, spread, (3, 3)).astype(np.float32),
            "cholesky": np.broadcast_to(np.eye(3, dtype=np.float32) * spread, (3, 3, 3)).copy(),
        },
        "scaling": {"center": rng.normal(0, 50, d), "scale": np.full(d, 100.0), "max_time": np.asarray(12.0)},
    }


@settings(max_examples=5, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([1, 64]), spread=st.sampled_from([1.0, 30.0]))
def test_samples_are_always_in_the_guides_schema(model_and_params, mds_guide, seed, n, spread):
    model, params, d = model_and_params
    table = model.sample(_wild_generator(params, d, spread, seed), jax.random.key(seed), n)
    assert table.height == n
    assert table.columns == ["patient_id", *mds_guide.feature_names, "time", "event"]
    report = impossible_values(table, mds_guide)
    assert report["total"] == 0, report
    assert (table["time"] > 0).all() and (table["time"] <= 12.0).all()
    for f in mds_guide.features:
        col = table[f.name]
        expected = {"continuous": pl.Float64, "binary": pl.Int8, "categorical": pl.String}[f.kind]
        assert col.dtype == expected, f.name


def test_sampling_is_reproducible_and_draws_missingness(model_and_params, mds_guide):
    model, params, d = model_and_params
    gen = _wild_generator(params, d, 1.0, 0)
    a = model.sample(gen, jax.random.key(5), 64)  # n = 64: the executable the property test compiled
    assert a.equals(model.sample(gen, jax.random.key(5), 64))
    assert not a.equals(model.sample(gen, jax.random.key(6), 64))
    assert a.select(pl.col(mds_guide.feature_names).null_count()).sum_horizontal().item() > 0


@pytest.mark.slow
def test_without_missingness_every_value_is_present(model_and_params, mds_guide):
    _, params, d = model_and_params
    config = VAEBGMConfig(latent_dim=3, hidden=(16,), reproduce_missingness=False).for_guide(mds_guide)
    full = vae_bgm(config, d).sample(_wild_generator(params, d, 1.0, 0), jax.random.key(5), 64)
    assert full.select(pl.col(mds_guide.feature_names).null_count()).sum_horizontal().item() == 0


def test_decode_table_inverts_encode(small_cohort, mds_guide):
    df, _ = small_cohort
    df = df.head(200).sort("patient_id")
    rows = encode_rows(df, mds_guide)
    back = decode_table(rows.values, rows.observed, rows.time, rows.event, table_schema(mds_guide))
    for f in mds_guide.features:
        a, b = df[f.name], back[f.name]
        assert a.null_count() == b.null_count() and (a.is_null() == b.is_null()).all(), f.name
        if f.kind == "continuous":
            np.testing.assert_allclose(a.drop_nulls().to_numpy(), b.drop_nulls().to_numpy(), rtol=1e-12)
        else:
            assert a.cast(pl.String).to_list() == b.cast(pl.String).to_list(), f.name
    np.testing.assert_array_equal(back["time"].to_numpy(), df["time"].to_numpy())
    np.testing.assert_array_equal(back["event"].to_numpy(), df["event"].to_numpy())


def test_loss_is_finite_and_padding_rows_change_nothing(model_and_params):
    model, params, d = model_and_params
    rng = np.random.default_rng(0)
    n = 24
    x = rng.normal(size=(n, d)).astype(np.float32)
    observed = rng.random((n, d)) > 0.2
    time = np.sort(rng.exponential(2.0, n))[::-1].astype(np.float32)
    event = (rng.random(n) > 0.5).astype(np.float32)
    batch = NodeData(x, observed, time, event, np.ones(n, np.float32), np.arange(n, dtype=np.int32))
    pad = 8
    padded = NodeData(
        np.concatenate([x, np.zeros((pad, d), np.float32)]),
        np.concatenate([observed, np.zeros((pad, d), bool)]),
        np.concatenate([time, np.zeros(pad, np.float32)]),
        np.concatenate([event, np.zeros(pad, np.float32)]),
        np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]),
        np.arange(n + pad, dtype=np.int32),
    )
    evaluate = jax.jit(lambda p, b: model.loss(p, b, None))  # eager dispatch op by op is slow
    loss, terms = evaluate(params, batch)
    assert np.isfinite(float(loss)) and set(terms) == {"reconstruction", "missingness", "time", "event", "kl"}
    np.testing.assert_allclose(float(evaluate(params, padded)[0]), float(loss), rtol=1e-6)
    grads = jax.jit(jax.grad(lambda p: model.loss(p, padded, jax.random.key(1))[0]))(params)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
    assert model.latent(params, batch).shape == (n, 3)


@pytest.mark.parametrize(
    ("override", "key"),
    [({"latent_dim": 0}, "latent_dim"), ({"bgm_min_count": -1}, "bgm_min_count"),
     ({"bgm_weight_prior": "stick"}, "bgm_weight_prior"), ({"time_floor": 0.0}, "time_floor"),
     ({"outcome_head": "decoder"}, "outcome_head"), ({"outcome_weight": 0.0}, "outcome_weight"),
     ({"time_model": "lognormal"}, "time_model"), ({"time_model": "weibull"}, "time_model")],
)  # fmt: skip
def test_bad_config_names_the_key(override, key):
    with pytest.raises(ValueError, match=f"model.{key}"):
        VAEBGMConfig(**override)


def _toy_batch(d: int, n: int = 12, seed: int = 0) -> NodeData:
    rng = np.random.default_rng(seed)
    time = np.sort(rng.exponential(2.0, n))[::-1].astype(np.float32)
    return NodeData(
        rng.normal(size=(n, d)).astype(np.float32), rng.random((n, d)) > 0.3, time,
        (rng.random(n) > 0.5).astype(np.float32), np.ones(n, np.float32), np.arange(n, dtype=np.int32),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("head", "time_model"),
    [("latent", "gaussian"), ("row", "gaussian"), ("row_latent", "gaussian"), ("row", "weibull")],
)
def test_outcome_weight_scales_only_the_outcome_terms(head, time_model):
    # weight 1 is exactly the ELBO (the terms' sum plus beta * KL); weight w adds (w - 1) * (time + event)
    d, batch = 5, _toy_batch(5)
    base = VAEBGMConfig(latent_dim=2, hidden=(8,), outcome_head=head, beta=0.5, time_model=time_model)
    params = vae_bgm(base, d).init(jax.random.key(0))
    total, terms = vae_bgm(base, d).loss(params, batch, None)
    t = {k: float(v) for k, v in terms.items()}
    elbo = t["reconstruction"] + t["missingness"] + t["time"] + t["event"] + 0.5 * t["kl"]
    np.testing.assert_allclose(float(total), elbo, rtol=1e-6)
    heavy = dataclasses.replace(base, outcome_weight=4.0)
    total4, terms4 = vae_bgm(heavy, d).loss(params, batch, None)
    assert {k: float(v) for k, v in terms4.items()} == t
    np.testing.assert_allclose(float(total4) - float(total), 3.0 * (t["time"] + t["event"]), rtol=1e-5)


def test_the_default_outcome_heads_are_the_decoders_and_the_parameters_unchanged():
    # outcome_head="latent" keeps the paper's network: no outcome network, time and event from the decoder
    config = VAEBGMConfig(latent_dim=2, hidden=(8,))
    params = vae_bgm(config, 5).init(jax.random.key(0))
    assert set(params) == {"encoder", "decoder"}
    row_config = dataclasses.replace(config, outcome_head="row", outcome_hidden=(6,))
    row = vae_bgm(row_config, 5).init(jax.random.key(0))
    assert set(row) == {"encoder", "decoder", "outcome"}
    # the decoder then drops its three outcome outputs; the outcome network reads value x flag and flags
    assert row["decoder"]["out"]["kernel"].shape[1] == params["decoder"]["out"]["kernel"].shape[1] - 3
    assert row["outcome"]["layers"][0]["kernel"].shape == (2 * 5, 6)
    # row_latent also reads z; outcome_hidden=() is linear
    linear = dataclasses.replace(config, outcome_head="row_latent", outcome_hidden=())
    assert vae_bgm(linear, 5).init(jax.random.key(0))["outcome"]["out"]["kernel"].shape == (2 * 5 + 2, 5)


def _set_outcome(params: dict, bias: list[float], reads_first: float = 0.0) -> dict:
    """Hand-set outcome outputs: ``bias``, plus relu(x0 * flag0) * ``reads_first`` on both log-time means."""
    out = jax.tree.map(np.zeros_like, params["outcome"])
    hidden = np.array(out["layers"][0]["kernel"])
    hidden[0, 0] = 1.0  # hidden unit 0 = relu(value of column 0 x its flag)
    kernel = np.array(out["out"]["kernel"])
    kernel[0, [1, 3]] = reads_first  # both log-time means read it
    out["layers"][0]["kernel"] = hidden
    out["out"]["kernel"] = kernel
    out["out"]["bias"] = np.asarray(bias, np.float32)
    return {**params, "outcome": out}


def test_row_head_likelihood_by_hand():
    # outputs (event logit 0; no event: mean 0.5, log sd 0; event: mean -1, log sd 0.2) for every row
    d, batch = 4, _toy_batch(4, n=6, seed=3)
    config = VAEBGMConfig(latent_dim=2, hidden=(8,), outcome_head="row")
    model = vae_bgm(config, d)
    params = _set_outcome(model.init(jax.random.key(1)), [0.0, 0.5, 0.0, -1.0, 0.2])
    _, terms = model.loss(params, batch, None)
    log_t, e = np.log(batch.time.astype(np.float64)), batch.event.astype(np.float64)
    sd = 3.0 * np.tanh(np.where(e > 0, 0.2, 0.0) / 3.0)  # the bounded log sd
    mean = np.where(e > 0, -1.0, 0.5)
    time = 0.5 * np.log(2 * np.pi) + sd + 0.5 * ((log_t - mean) / np.exp(sd)) ** 2
    np.testing.assert_allclose(float(terms["time"]), time.mean(), rtol=1e-5)
    np.testing.assert_allclose(float(terms["event"]), np.log(2.0), rtol=1e-6)


def test_row_head_draws_the_outcome_from_the_drawn_row():
    # log time = relu(drawn x0) (0 where x0 is not drawn as observed), sd e^-3: the synthetic time
    # follows the synthetic covariate row by row; the event (logit +8) is almost always 1
    d = 3
    config = VAEBGMConfig(latent_dim=2, hidden=(8,), outcome_head="row")
    model = vae_bgm(config, d)
    params = _set_outcome(model.init(jax.random.key(2)), [8.0, 0.0, -30.0, 0.0, -30.0], reads_first=1.0)
    table = model.sample({"network": params}, jax.random.key(4), 400)
    x0 = table["x0"].to_numpy()  # NaN where drawn missing
    expected = np.exp(np.maximum(np.nan_to_num(x0, nan=0.0), 0.0))
    np.testing.assert_allclose(table["time"].to_numpy(), expected, rtol=0.25)
    assert table["event"].mean() > 0.95
    assert np.isnan(x0).any() and not np.isnan(x0).all()  # both branches of the flag were drawn


def test_weibull_time_model_likelihood_equals_scipys_competing_risks_likelihood():
    # death and censoring times Weibull given the row (hand-set, the same for every row):
    # death: log scale 0.7, log sigma 0.3 (shape e^-0.3); censoring: log scale 1.2, log sigma -0.2.
    # A death's likelihood is f_d(t) S_c(t), a censored row's S_d(t) f_c(t), on the log-time scale
    # (density of log t = t * density of t); scipy.stats.weibull_min is the reference.
    from scipy.stats import weibull_min

    d, batch = 4, _toy_batch(4, n=10, seed=5)
    config = VAEBGMConfig(latent_dim=2, hidden=(8,), outcome_head="row", time_model="weibull")
    model = vae_bgm(config, d)
    params = model.init(jax.random.key(1))
    out = jax.tree.map(np.zeros_like, params["outcome"])
    out["out"]["bias"] = np.asarray([0.7, 0.3, 1.2, -0.2], np.float32)
    _, terms = model.loss({**params, "outcome": out}, batch, None)
    t, e = batch.time.astype(np.float64), batch.event.astype(np.float64)
    log_sd = 3.0 * np.tanh(np.array([0.3, -0.2]) / 3.0)  # the bounded log sigmas
    death = weibull_min(c=np.exp(-log_sd[0]), scale=np.exp(0.7))
    censor = weibull_min(c=np.exp(-log_sd[1]), scale=np.exp(1.2))
    joint = np.where(e > 0, death.logpdf(t) + censor.logsf(t), death.logsf(t) + censor.logpdf(t)) + np.log(t)
    np.testing.assert_allclose(float(terms["time"]), -joint.mean(), rtol=1e-5)
    assert float(terms["event"]) == 0.0  # the joint term holds the event


def test_weibull_time_model_draws_the_first_of_two_weibull_times():
    # equal shapes k: min(T_d, T_c) is Weibull(k, (l_d^-k + l_c^-k)^(-1/k)) and the death comes first
    # with probability l_d^-k / (l_d^-k + l_c^-k) (proportional hazards); scales e^0.5 and e^1.0, k = e^0.4
    from scipy.stats import kstest, weibull_min

    config = VAEBGMConfig(latent_dim=2, hidden=(8,), outcome_head="row", time_model="weibull")
    model = vae_bgm(config, 3)
    params = model.init(jax.random.key(2))
    out = jax.tree.map(np.zeros_like, params["outcome"])
    log_sd = -0.4
    raw_log_sd = 3.0 * np.arctanh(log_sd / 3.0)  # the head's output whose bounded value is -0.4
    out["out"]["bias"] = np.asarray([0.5, raw_log_sd, 1.0, raw_log_sd], np.float32)
    n = 20_000
    table = model.sample({"network": {**params, "outcome": out}}, jax.random.key(7), n)
    k = np.exp(0.4)
    rate_d, rate_c = np.exp(0.5) ** -k, np.exp(1.0) ** -k
    share = rate_d / (rate_d + rate_c)
    assert abs(table["event"].mean() - share) < 4 * np.sqrt(share * (1 - share) / n)
    first = weibull_min(c=k, scale=(rate_d + rate_c) ** (-1 / k))
    assert kstest(table["time"].to_numpy(), first.cdf).pvalue > 1e-3
    # given the death came first its time has the same law (equal shapes): the event carries no time
    dead = table.filter(pl.col("event") == 1)["time"].to_numpy()
    assert kstest(dead, first.cdf).pvalue > 1e-3


def test_outcome_l2_penalises_the_outcome_kernels_in_training_only():
    # training loss (an rng) gains ½·λ·Σ kernel² of the outcome network, biases excluded; validation
    # (rng=None) reads the likelihood alone, as the survival models' selection omits their L2
    d, batch = 5, _toy_batch(5)
    base = VAEBGMConfig(
        latent_dim=2, hidden=(8,), outcome_head="row", outcome_hidden=(4,), time_model="weibull"
    )
    params = vae_bgm(base, d).init(jax.random.key(0))
    params["outcome"]["out"]["bias"] = np.full(4, 0.5, np.float32)  # a bias must not count
    ridge = vae_bgm(dataclasses.replace(base, outcome_l2=0.3), d)
    key = jax.random.key(1)
    out = params["outcome"]
    squares = float(np.sum(np.square(out["layers"][0]["kernel"])) + np.sum(np.square(out["out"]["kernel"])))
    gained = float(ridge.loss(params, batch, key)[0] - vae_bgm(base, d).loss(params, batch, key)[0])
    np.testing.assert_allclose(gained, 0.15 * squares, rtol=1e-4)
    assert float(ridge.loss(params, batch, None)[0]) == float(vae_bgm(base, d).loss(params, batch, None)[0])
    with pytest.raises(ValueError, match="model.outcome_l2"):
        VAEBGMConfig(outcome_l2=-1.0)
