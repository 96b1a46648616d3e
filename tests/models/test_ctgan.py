"""CTGAN (fedjax_rhd.models.ctgan, ctgan_transform): the mode-specific normaliser round-trips values and
its federated fit equals the pooled one, condition levels are drawn with the hand-computed
log-frequencies, the gradient penalty by hand on tiny critics, samples always in the guide's schema,
and the configuration refuses what does not apply."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.models import MODELS, CTGANConfig, bgm, ctgan
from fedjax_rhd.models import ctgan_transform as tf
from fedjax_rhd.models.ctgan import (
    condition_probabilities,
    gradient_penalty,
    missing_positions,
    sample_conditions,
    sample_counted,
)
from fedjax_rhd.models.tabular import ColumnSpec

# jitted: one compilation each instead of one per primitive (eager mode), which keeps these tests short
encode, decode = jax.jit(tf.encode_continuous), jax.jit(tf.decode_continuous)
draw_conditions = jax.jit(sample_conditions, static_argnums=(1, 3))
penalty = jax.jit(gradient_penalty, static_argnums=(0, 4))

# one binary, one categorical (3 levels) and one continuous feature: discrete blocks of widths
# 3 (0, 1, missing), 4 (a, b, c, missing), 2 (flag: missing, observed), 2 (event)
SCHEMA = (
    ColumnSpec("b", "binary", 0, 1),
    ColumnSpec("c", "categorical", 1, 3, ("a", "b", "c")),
    ColumnSpec("v", "continuous", 4, 1, (), 0.0, 100.0),
)


def test_layout_of_a_small_schema():
    layout = tf.make_layout(SCHEMA, 4)
    assert layout.discrete_widths == (3, 4, 2, 2) and layout.cond_width == 11
    assert layout.n_continuous == 2 and layout.continuous_width == 2 * 5  # v and log time
    assert tf.runs([3, 3, 4, 2, 2, 2]) == [(0, 2, 3), (6, 1, 4), (10, 3, 2)]


def test_the_normaliser_round_trips_values():
    # two columns: three valid modes and one left out (weight 0), and one valid mode
    modes = tf.Modes(
        np.array([[0.5, 0.3, 0.2, 0.0], [1.0, 0.0, 0.0, 0.0]], np.float32),
        np.array([[-4.0, 0.0, 6.0, 50.0], [1.5, 0.0, 0.0, 0.0]], np.float32),
        np.array([[1.0, 0.5, 2.0, 1.0], [0.25, 1.0, 1.0, 1.0]], np.float32),
    )
    values = jnp.asarray(np.random.default_rng(0).normal(0, 5, (500, 2)), jnp.float32)
    encoded = encode(values, modes, jax.random.key(3))
    assert encoded.shape == (500, 2 * 5)
    block = np.asarray(encoded).reshape(500, 2, 5)
    assert np.all(block[..., 1:].sum(-1) == 1) and np.all(block[:, 0, 4] == 0)  # never the left-out mode
    assert np.all(block[:, 1, 1] == 1)  # the only mode of column 2
    # α = (v − μ_k) / (4 σ_k) for column 2's single mode, by hand
    np.testing.assert_allclose(block[:, 1, 0], (np.asarray(values[:, 1]) - 1.5) / 1.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(decode(encoded, modes)), values, rtol=1e-5, atol=1e-5)


def test_the_mode_is_drawn_from_its_posterior():
    # one value exactly between two equal modes: each drawn half of the time; a third far away never
    modes = tf.Modes(
        np.array([[0.5, 0.5, 0.0]], np.float32),
        np.array([[-1.0, 1.0, 0.0]], np.float32),
        np.ones((1, 3), np.float32),
    )
    values = jnp.zeros((20000, 1))
    block = np.asarray(encode(values, modes, jax.random.key(0))).reshape(-1, 4)
    share = block[:, 1].mean()
    assert abs(share - 0.5) < 4 * np.sqrt(0.25 / 20000) and block[:, 3].sum() == 0


def _federated_fit(nodes, **kw):
    def ask(columns, inputs):
        replies = [tf.node_column_statistics(v, w, columns, inputs, 0.0) for v, w in nodes]
        total = [sum(r[k] for r in replies) for k in bgm.SufficientStatistics._fields]
        return [bgm.SufficientStatistics(*(t[a] for t in total)) for a in range(len(columns))]

    return tf.fit_modes(ask, 2, n_modes=5, seed=0, min_count=0.0, **kw)


def test_the_federated_fit_equals_the_pooled_one_and_finds_the_modes():
    rng = np.random.default_rng(1)
    col1 = np.concatenate([rng.normal(-5, 0.5, 300), rng.normal(4, 1.0, 200)])
    col2 = rng.normal(2.0, 0.3, 500)
    values = np.stack([col1, col2], axis=1)
    weights = np.ones((500, 2))
    weights[::7, 0] = 0  # missing entries of column 1 do not count
    parts = np.array_split(rng.permutation(500), 3)
    fed = _federated_fit([(values[p], weights[p]) for p in parts])
    pooled = _federated_fit([(values, weights)])
    assert fed.iterations == pooled.iterations
    for a, b in zip(fed.modes, pooled.modes, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)  # sums in another order: float rounding
    w, m = fed.modes.weights[0], fed.modes.means[0]
    heavy = m[w > 0.05]
    assert np.any(np.abs(heavy + 5) < 0.5) and np.any(np.abs(heavy - 4) < 0.5)
    np.testing.assert_allclose(np.sum(fed.modes.weights, axis=1), 1.0, rtol=1e-6)


def test_condition_levels_follow_log_frequencies_by_hand():
    layout = tf.make_layout(SCHEMA, 4)
    # binary (9, 99, 0 missing): ln 10 : ln 100 = 1 : 2; categorical (0, 3, 15, 0): ln 4 : ln 16 = 1 : 2;
    # flag (0, 7): all observed; event (e - 1, e² - 1) so ln(1 + n) gives 1 : 2
    e = float(np.e)
    counts = jnp.array([9, 99, 0, 0, 3, 15, 0, 0, 7, e - 1, e**2 - 1], jnp.float32)
    probabilities = jax.jit(condition_probabilities, static_argnums=(1, 2))
    probs = np.asarray(probabilities(counts, layout, True))
    third = 1 / 3
    expected = [third, 2 * third, 0, 0, third, 2 * third, 0, 0, 1, third, 2 * third]
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    raw = np.asarray(probabilities(counts, layout, False))
    np.testing.assert_allclose(raw[:3], [9 / 108, 99 / 108, 0], rtol=1e-6)
    # drawn: a block uniformly (1/4 each), then its level with those probabilities
    n = 40000
    cond, mask, level = draw_conditions(jnp.asarray(probs), layout, jax.random.key(0), n)
    cond, mask = np.asarray(cond), np.asarray(mask)
    assert np.all(cond.sum(1) == 1) and np.all(mask.sum(1) == 1)
    np.testing.assert_array_equal(np.argmax(cond, 1), np.asarray(level))
    block_share = mask.mean(0)
    assert np.all(np.abs(block_share - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n))
    level_share = cond.sum(0) / n
    se = np.sqrt(np.asarray(expected) / 4 * (1 - np.asarray(expected) / 4) / n)
    assert np.all(np.abs(level_share - np.asarray(expected) / 4) <= 4 * se + 1e-12)


def test_missing_by_count_keeps_missingness_at_its_share_by_hand():
    # blocks: binary b0 (3), binary b1 (3), categorical (a, b, c, missing), flag (missing, observed), event
    layout = tf.Layout(continuous=(4,), modes=4, binary=(0, 5), categorical=((1, 3),))
    assert layout.discrete_widths == (3, 3, 4, 2, 2)
    np.testing.assert_array_equal(missing_positions(layout), [0, 0, 1, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0, 0])
    e = float(np.e)
    counts = jnp.array(
        # b0: 9, 99, 12 missing (N = 120); b1: no row; categorical: e − 1, 0, e² − 1, 2 missing;
        # flag: 3 missing, 7 observed; event: e − 1, e² − 1
        [9, 99, 12, 0, 0, 0, e - 1, 0, e**2 - 1, 2, 3, 7, e - 1, e**2 - 1],
        jnp.float32,
    )
    probs = np.asarray(jax.jit(condition_probabilities, static_argnums=(1, 2, 3))(counts, layout, True, True))
    n_cat = e - 1 + e**2 - 1 + 2
    expected = [
        0.9 / 3,
        0.9 * 2 / 3,
        0.1,  # missing at 12 / 120; the values' 0.9 split ln 10 : ln 100 = 1 : 2
        1 / 3,
        1 / 3,
        1 / 3,  # no row: equal, as without the option
        (1 - 2 / n_cat) / 3,
        0.0,
        (1 - 2 / n_cat) * 2 / 3,
        2 / n_cat,  # a level no row holds: never
        0.3,
        0.7,  # the flag by count, not ln 4 : ln 8
        1 / 3,
        2 / 3,  # the event is a value block: ln e : ln e² as the paper's
    ]
    np.testing.assert_allclose(probs, expected, rtol=1e-6)
    # power 1/2 for the log: b0 (9, 81, 10 missing): missing 0.1, the values' 0.9 split √9 : √81 = 3 : 9
    sqrt_counts = counts.at[:3].set(jnp.array([9.0, 81.0, 10.0]))
    sqrt = np.asarray(
        jax.jit(condition_probabilities, static_argnums=(1, 2, 3, 4))(sqrt_counts, layout, True, True, 0.5)
    )
    np.testing.assert_allclose(sqrt[:3], [0.9 * 3 / 12, 0.9 * 9 / 12, 0.1], rtol=1e-6)
    np.testing.assert_allclose(sqrt[10:12], [0.3, 0.7], rtol=1e-6)  # flags by count still
    cat = np.sqrt([e - 1, 0.0, e**2 - 1])
    np.testing.assert_allclose(sqrt[6:10], [*((1 - 2 / n_cat) * cat / cat.sum()), 2 / n_cat], rtol=1e-6)
    # the option changes nothing by itself: ∝ count, or the paper's log frequency, stay as they were
    for log_frequency in (False, True):
        plain = condition_probabilities(counts, layout, log_frequency)
        np.testing.assert_array_equal(condition_probabilities(counts, layout, log_frequency, False), plain)
    np.testing.assert_array_equal(
        condition_probabilities(counts, layout, False, True), condition_probabilities(counts, layout, False)
    )


def test_gradient_penalty_by_hand():
    pac, d = 2, 2
    real = jnp.arange(8.0).reshape(4, d)
    fake = -jnp.ones((4, d))
    # a linear critic: ∇ = w for every input, so the penalty is (‖w‖ − 1)² = (3 − 1)² = 4
    w = jnp.array([1.0, 2.0, 2.0, 0.0])

    def linear(h):
        return h @ w

    assert float(penalty(linear, real, fake, jax.random.key(0), pac)) == pytest.approx(4.0)
    # a quadratic critic ½‖h‖²: ∇ = x̂, the pac group's interpolate, one u per group
    key = jax.random.key(5)
    u = np.asarray(jax.random.uniform(key, (2, 1)))
    mixed = u * np.asarray(real).reshape(2, 4) + (1 - u) * np.asarray(fake).reshape(2, 4)
    expected = np.mean((np.linalg.norm(mixed, axis=1) - 1) ** 2)

    def quadratic(h):
        return 0.5 * jnp.sum(h**2, axis=1)

    got = float(penalty(quadratic, real, fake, key, pac))
    assert got == pytest.approx(expected, rel=1e-5)


def test_config_refuses_a_batch_that_pac_does_not_divide():
    with pytest.raises(ValueError, match=r"model.batch_size=55 .*multiple of model.pac"):
        CTGANConfig(batch_size=55, pac=10)
    with pytest.raises(ValueError, match="missing_by_count=true .* set log_frequency=true"):
        CTGANConfig(log_frequency=False, missing_by_count=True)
    with pytest.raises(ValueError, match="frequency_power replaces the log"):
        CTGANConfig(log_frequency=False, frequency_power=0.5)
    with pytest.raises(ValueError, match="model.frequency_power=1.5 is out of range"):
        CTGANConfig(frequency_power=1.5)


def test_strategies_that_change_one_losss_gradient_are_refused():
    from fedjax_rhd.strategies import AlgorithmSpec
    from fedjax_rhd.strategies.client import ClientConfig

    assert MODELS["ctgan"].own_step and not MODELS["ctgan"].row_separable
    for algorithm, client in (("scaffold", ClientConfig()), ("fedavg", ClientConfig(proximal_mu=0.1))):
        with pytest.raises(ValueError, match="own local step"):
            AlgorithmSpec(algorithm, "ctgan", CTGANConfig(), 8, client)


@pytest.fixture(scope="module")
def tiny(mds_guide):
    config = CTGANConfig(batch_size=20, pac=10, generator_dim=(16,), critic_dim=(16,), embedding_dim=8)
    d = sum(f.width for f in mds_guide.features)
    config = config.for_guide(mds_guide)
    model = ctgan(config, d)
    return model, jax.jit(model.init)(jax.random.key(0)), d, config


@pytest.mark.slow  # compiles the generator (~5 s of CPU)
@pytest.mark.parametrize("seed", [0, 1])
def test_samples_are_always_in_the_guides_schema(tiny, mds_guide, seed):
    """Untrained weights and a wild scaling: every value in the schema, every time > 0 and ≤ max_time."""
    model, params, d, config = tiny
    rng = np.random.default_rng(seed)
    scaling = {"center": rng.normal(0, 50, d), "scale": np.full(d, 100.0), "max_time": np.asarray(12.0)}
    table, clipped = sample_counted(
        config, d, {"network": params, "scaling": scaling}, jax.random.key(seed), 64
    )
    assert set(clipped) == {f.name for f in mds_guide.features if f.kind == "continuous"} | {"time"}
    assert sum(clipped.values()) > 0  # a scale of 100 throws values out of range: clipped and counted
    assert table.columns == ["patient_id", *mds_guide.feature_names, "time", "event"]
    assert impossible_values(table, mds_guide)["total"] == 0
    assert (table["time"] > 0).all() and (table["time"] <= 12.0).all()
    same = model.sample({"network": params, "scaling": scaling}, jax.random.key(seed), 64)
    assert table.equals(same)  # bit for bit from the key
