"""CTGAN's conditional outcome draw (``model.outcome_draw="conditional"``, fedjax_rhd.models.outcome_model):
the outcome model's NLL by hand, a hand-set model whose drawn event and log time follow a generated
covariate row by row while the covariates stay the generator's, FedAvg averaging its parameters, the
default path untouched by it, and sampled tables in the guide's schema."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.models import CTGANConfig, ctgan
from fedjax_rhd.models.ctgan import sample_counted
from fedjax_rhd.models.outcome_model import outcome_model, row_inputs, weight_ridge
from fedjax_rhd.models.tabular import ColumnSpec
from fedjax_rhd.strategies import ClientConfig, ServerConfig, fedavg
from fedjax_rhd.typing import ClientResult, NodeData

# binary x[0], categorical (3 levels) x[1:4], continuous x[4]
SCHEMA = (
    ColumnSpec("b", "binary", 0, 1),
    ColumnSpec("c", "categorical", 1, 3, ("a", "b", "c")),
    ColumnSpec("v", "continuous", 4, 1, (), -10.0, 10.0),
)
SMALL = {"batch_size": 20, "pac": 10, "generator_dim": (8,), "critic_dim": (8,), "embedding_dim": 4}


def _layer(w: np.ndarray, b: np.ndarray) -> dict:
    return {"layer0": {"w": jnp.asarray(w, jnp.float32), "b": jnp.asarray(b, jnp.float32)}}


def test_the_outcome_models_nll_by_hand():
    """Linear, 2 inputs, centre 1 and scale 2 of log time. Row 1: u = (1, 0), heads (1, 0.5, 0, −1, 0), an
    event, log t = 1 (y = 0): softplus(1) − 1 + ½ log 2π + 0 + ½ (0 + 1)². Row 2: u = (0, 2), heads
    (0, 0, 1, 0, 0), no event, log t = 5 (y = 2): softplus(0) + ½ log 2π + s + ½ (2 e^−s)²,
    s = 3 tanh(1/3)."""
    w = np.array([[1.0, 0.5, 0.0, -1.0, 0.0], [0.0, 0.0, 0.5, 0.0, 0.0]])
    model = outcome_model(2, (), time_center=1.0, time_scale=2.0)
    got = model.nll(_layer(w, np.zeros(5)), jnp.array([[1.0, 0.0], [0.0, 2.0]]), jnp.array([1.0, 0.0]),
                    jnp.array([1.0, 5.0]))  # fmt: skip
    s = 3.0 * math.tanh(1.0 / 3.0)
    half_log_2pi = 0.5 * math.log(2 * math.pi)
    expected = [
        math.log1p(math.e) - 1.0 + half_log_2pi + 0.5,
        math.log(2.0) + half_log_2pi + s + 2 * math.exp(-2 * s),
    ]
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6)
    # the time term is the Gaussian NLL of standardised log time (scipy), the event term the Bernoulli's
    time_terms = [-stats.norm.logpdf(0.0, -1.0, 1.0), -stats.norm.logpdf(2.0, 0.0, math.exp(s))]
    event_terms = [-math.log(1 / (1 + math.exp(-1.0))), math.log(2.0)]
    np.testing.assert_allclose(np.asarray(got), np.add(time_terms, event_terms), rtol=1e-6)


def test_a_follow_up_at_the_floor_is_left_censored_there():
    """With ``log_time_floor`` f a row at log t ≤ f pays −log Φ(((f − c)/s − μ)/σ) (Tobin 1958) for its
    time (scipy's normal CDF), its event term unchanged; a row above the floor pays exactly as without."""
    w = np.array([[1.0, 0.5, 0.0, -1.0, 0.0], [0.0, 0.0, 0.5, 0.0, 0.0]])
    params, inputs = _layer(w, np.zeros(5)), jnp.array([[1.0, 0.0], [0.0, 2.0]])
    event, log_t = jnp.array([1.0, 0.0]), jnp.array([1.0, -3.0])
    point = outcome_model(2, (), time_center=1.0, time_scale=2.0).nll(params, inputs, event, log_t)
    floor = outcome_model(2, (), 1.0, 2.0, log_time_floor=-3.0).nll(params, inputs, event, log_t)
    assert float(floor[0]) == float(point[0])  # above the floor: the density, bit for bit
    s = 3.0 * math.tanh(1.0 / 3.0)  # row 2: no event, mean 0, log sd s; y_floor = (−3 − 1) / 2 = −2
    expected = math.log(2.0) - stats.norm.logcdf(-2.0, 0.0, math.exp(s))
    np.testing.assert_allclose(float(floor[1]), expected, rtol=1e-6)


def test_row_inputs_zero_what_is_not_observed():
    got = row_inputs(jnp.array([[2.0, 0.4], [-1.0, 3.0]]), jnp.array([[True, False], [True, True]]))
    np.testing.assert_array_equal(np.asarray(got), [[2.0, 0.0, 1.0, 0.0], [-1.0, 3.0, 1.0, 1.0]])


def test_the_config_refuses_an_unknown_draw_and_the_outcome_loss_beside_it():
    with pytest.raises(ValueError, match="model.outcome_draw must be one of"):
        CTGANConfig(outcome_draw="network")
    with pytest.raises(ValueError, match="set one of them"):
        CTGANConfig(outcome_draw="conditional", outcome_weight=1.0)


@pytest.mark.slow  # compiles two samplers (~8 s of CPU)
def test_a_hand_set_outcome_model_draws_event_and_log_time_from_the_generated_row():
    """Untrained generator, unfitted log-time mode N(0, 1) (centre 0, scale 1), a linear outcome model with
    event logit 40·b·o_b − 20 (event = b, 0 where b is missing), mean v·o_v given either event and log sd
    −3: row by row, event = b and log t = v (0 where v is missing) ± 5 e^−3. The covariates are the
    generator's: the same table as the default draw from the same generator and key, less time and event."""
    config = CTGANConfig(schema=SCHEMA, outcome_draw="conditional", outcome_dim=(), **SMALL)
    model = ctgan(config, 5)
    params = model.init(jax.random.key(0))
    assert set(params) == {"generator", "critic", "outcome"}
    w, b = np.zeros((10, 5)), np.array([-20.0, 0.0, -100.0, 0.0, -100.0])
    w[0, 0], w[4, 1], w[4, 3] = 40.0, 1.0, 1.0  # inputs: x ⊙ o (x[0] = b, x[4] = v), then the flags
    params["outcome"] = _layer(w, b)
    table = model.sample({"network": params}, jax.random.key(3), 400)
    event, log_t = table["event"].to_numpy(), np.log(table["time"].to_numpy())
    np.testing.assert_array_equal(event, table["b"].fill_null(0).to_numpy())
    v = table["v"].fill_null(0.0).to_numpy()
    assert np.abs(log_t - v).max() < 5 * math.exp(-3.0)
    assert table["b"].null_count() > 0 and table["v"].null_count() > 0 and 0 < event.mean() < 1
    default = ctgan(CTGANConfig(schema=SCHEMA, **SMALL), 5)
    gan = {k: params[k] for k in ("generator", "critic")}
    plain = default.sample({"network": gan}, jax.random.key(3), 400)
    assert table.drop("time", "event").equals(plain.drop("time", "event"))


def test_fedavg_averages_the_outcome_models_parameters():
    """Two nodes' results (different initialisations), weights 3 and 1: the global outcome model is the
    weighted mean (3a + b) / 4 of theirs, leaf by leaf, beside generator and critic."""
    config = CTGANConfig(schema=SCHEMA, outcome_draw="conditional", outcome_dim=(4,), **SMALL)
    model = ctgan(config, 5)
    a, b = model.init(jax.random.key(1)), model.init(jax.random.key(2))
    algo = fedavg(model, ClientConfig(), ServerConfig(learning_rate=1.0))
    stacked = jax.tree.map(lambda u, v: jnp.stack([u, v]), a, b)
    results = ClientResult(stacked, jnp.array([3.0, 1.0]), {})
    new = algo.aggregate(algo.init(model.init(jax.random.key(0)), 2), results, results.num_examples)
    assert set(new.params) == {"generator", "critic", "outcome"}
    for got, u, v in zip(*(jax.tree.leaves(p) for p in (new.params, a, b)), strict=True):
        expected = (3 * np.asarray(u) + np.asarray(v)) / 4
        np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def _same(a: dict, b: dict) -> bool:
    """Two pytrees of the same structure, bit for bit."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return jax.tree.structure(a) == jax.tree.structure(b) and all(np.array_equal(u, v) for u, v in pairs)


def _rows(n: int = 40) -> NodeData:
    rng = np.random.default_rng(0)
    x = np.zeros((n, 5), np.float32)
    x[:, 0], x[:, 4] = rng.integers(0, 2, n), rng.normal(size=n)
    x[np.arange(n), 1 + rng.integers(0, 3, n)] = 1.0
    observed = rng.random((n, 5)) > 0.1
    observed[:, 1:4] = observed[:, [1]]
    time = np.sort(rng.exponential(2.0, n))[::-1].astype(np.float32)
    event = rng.integers(0, 2, n).astype(np.float32)
    return NodeData(*map(jnp.asarray, (x, observed, time, event, np.ones(n, np.float32), np.arange(n))))


@pytest.mark.slow  # compiles two GAN steps (the penalty's double backward): tens of seconds under load
def test_a_gan_step_with_the_conditional_draw_moves_generator_and_critic_exactly_as_the_default():
    """The outcome model trains on its own key: generator and critic after a step are bit for bit the
    default path's; each outcome weight moves by at most lr (Adam's first step), about lr where its gradient
    is non-zero, and its NLL on the rows falls over 200 steps at lr 1e-2."""
    rows = _rows()
    base = {**SMALL, "schema": SCHEMA, "weight_decay": 0.0}
    default = ctgan(CTGANConfig(**base), 5)
    cond = ctgan(CTGANConfig(**base, outcome_draw="conditional", outcome_dim=(), outcome_lr=1e-2), 5)
    p0 = cond.init(jax.random.key(0))
    d0 = default.init(jax.random.key(0))
    assert _same({k: p0[k] for k in d0}, d0)
    step_c, step_d = jax.jit(cond.local_training.step), jax.jit(default.local_training.step)
    p1, s1, _ = step_c(p0, cond.local_training.init(p0), rows, jax.random.key(1))
    d1, _, _ = step_d(d0, default.local_training.init(d0), rows, jax.random.key(1))
    for key in ("generator", "critic"):
        assert _same(p1[key], d1[key])
    moved = np.abs(np.asarray(p1["outcome"]["layer0"]["w"]) - np.asarray(p0["outcome"]["layer0"]["w"]))
    assert moved.max() <= 1e-2 * (1 + 1e-4) and np.isclose(moved.max(), 1e-2, rtol=1e-3)
    outcome = outcome_model(10, (), 0.0, 1.0)  # the unfitted log-time mode: centre 0, scale 1
    log_t = jnp.log(rows.time)

    inputs = row_inputs(rows.x, rows.observed)

    def nll(p: dict) -> float:
        return float(jnp.mean(outcome.nll(p["outcome"], inputs, rows.event, log_t)))

    p, s = p1, s1
    for i in range(200):
        p, s, _ = step_c(p, s, rows, jax.random.key(i + 2))
    assert nll(p) < nll(p0) - 0.3


@pytest.mark.slow  # compiles the MDS-sized generator (~5 s of CPU)
def test_conditional_samples_are_in_the_guides_schema_with_wild_weights(mds_guide):
    """A wild outcome model (untrained weights × 50) and a wild scaling: every value in the schema, every
    time in (0, max_time], the times thrown out of range clipped and counted."""
    config = CTGANConfig(outcome_draw="conditional", outcome_dim=(), **SMALL).for_guide(mds_guide)
    d = sum(f.width for f in mds_guide.features)
    params = ctgan(config, d).init(jax.random.key(0))
    params["outcome"] = jax.tree.map(lambda a: 50.0 * a, params["outcome"])
    rng = np.random.default_rng(0)
    scaling = {"center": rng.normal(0, 50, d), "scale": np.full(d, 100.0), "max_time": np.asarray(12.0)}
    table, clipped = sample_counted(config, d, {"network": params, "scaling": scaling}, jax.random.key(0), 64)
    assert table.columns == ["patient_id", *mds_guide.feature_names, "time", "event"]
    assert impossible_values(table, mds_guide)["total"] == 0 and clipped["time"] > 0
    assert (table["time"] > 0).all() and (table["time"] <= 12.0).all()
    assert set(table["event"].unique().to_list()) <= {0, 1}


def test_the_ridge_sums_the_squared_weight_matrices_not_the_biases():
    params = {
        "layer0": {"w": jnp.array([[1.0, -2.0], [0.5, 0.0]]), "b": jnp.array([7.0, 7.0])},
        "layer1": {"w": jnp.array([[3.0], [-1.0]]), "b": jnp.array([9.0])},
    }
    assert float(weight_ridge(params)) == 1.0 + 4.0 + 0.25 + 9.0 + 1.0


@pytest.mark.slow  # compiles two GAN steps (the penalty's double backward): ~14 s
def test_the_outcome_models_ridge_pulls_its_weights_and_leaves_its_biases_and_the_gan_alone():
    """``outcome_l2`` adds l2/2·|W|² to the outcome model's mean NLL, weight matrices only. With a penalty
    far larger than the data's gradient, Adam's first step (lr·sign of the gradient) moves every weight by
    exactly −lr·sign(w); the biases, generator and critic move bit for bit as without the penalty."""
    rows = _rows()
    base = {**SMALL, "schema": SCHEMA, "weight_decay": 0.0, "outcome_draw": "conditional", "outcome_dim": ()}
    plain = ctgan(CTGANConfig(**base, outcome_lr=1e-2), 5)
    ridge = ctgan(CTGANConfig(**base, outcome_lr=1e-2, outcome_l2=1e6), 5)
    p0 = plain.init(jax.random.key(0))
    after = {
        name: jax.jit(m.local_training.step)(p0, m.local_training.init(p0), rows, jax.random.key(1))[0]
        for name, m in (("plain", plain), ("ridge", ridge))
    }
    for key in ("generator", "critic"):
        assert _same(after["ridge"][key], after["plain"][key])
    w0 = np.asarray(p0["outcome"]["layer0"]["w"])
    np.testing.assert_allclose(
        np.asarray(after["ridge"]["outcome"]["layer0"]["w"]), w0 - 1e-2 * np.sign(w0), atol=1e-7
    )
    assert np.array_equal(after["ridge"]["outcome"]["layer0"]["b"], after["plain"]["outcome"]["layer0"]["b"])
    with pytest.raises(ValueError, match="outcome_l2"):
        CTGANConfig(**base, outcome_l2=-1.0)
