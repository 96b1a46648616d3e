"""CTGAN's wiring (fedjax_rhd.models.ctgan, ctgan_transform): a real row encoded for the critic decodes back
to the same patient through the slices sampling reads, and one GAN step moves the generator's output for
every part of the row the critic sees (the time column included) and never a mode a column does not have.

These are the checks of the utility hunt (experiments/synthetic/ctgan.md, "Is it wired right?"): a synthetic
outcome independent of the covariates could come from the critic seeing the time column in another layout
than the generator writes it, or from no gradient reaching it."""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.models import CTGANConfig, ctgan
from fedjax_rhd.models import ctgan_transform as tf
from fedjax_rhd.models.tabular import ColumnSpec
from fedjax_rhd.typing import NodeData

# binary x[0], categorical (3 levels) x[1:4], continuous x[4]: discrete blocks 3, 4, 2 (flag), 2 (event)
SCHEMA = (
    ColumnSpec("b", "binary", 0, 1),
    ColumnSpec("c", "categorical", 1, 3, ("a", "b", "c")),
    ColumnSpec("v", "continuous", 4, 1, (), -10.0, 10.0),
)


def _rows() -> NodeData:
    """Eight hand-written patients, every level and missingness pattern at least once, time descending."""
    b = [1, 0, 1, 0, 0, 1, 0, 1]
    b_obs = [1, 1, 1, 0, 1, 1, 1, 1]
    cat = [0, 1, 2, 0, 1, 2, 0, 1]
    c_obs = [1, 1, 1, 1, 0, 1, 1, 1]
    v = [0.3, -1.2, 2.0, 0.0, 0.7, -0.4, 1.1, -2.2]
    v_obs = [1, 1, 1, 1, 1, 0, 1, 1]
    x = np.zeros((8, 5), np.float32)
    x[:, 0], x[np.arange(8), 1 + np.asarray(cat)], x[:, 4] = b, 1.0, v
    observed = np.ones((8, 5), bool)
    observed[:, 0], observed[:, 1:4], observed[:, 4] = b_obs, np.asarray(c_obs, bool)[:, None], v_obs
    x[:, 0] = np.where(observed[:, 0], x[:, 0], 0.4)  # imputed with the fill: not a 0/1 level
    time = np.array([9.0, 7.5, 5.0, 3.2, 2.0, 1.1, 0.5, 0.2], np.float32)
    event = np.array([0, 1, 0, 1, 1, 0, 1, 1], np.float32)
    return NodeData(*map(jnp.asarray, (x, observed, time, event, np.ones(8, np.float32), np.arange(8))))


def test_a_real_row_decodes_back_through_the_slices_sampling_reads():
    """Encoded as the critic's real rows (α and drawn mode per continuous column, then the discrete blocks)
    and decoded by the functions ``sample`` uses: the same x where observed, presence, event and log time."""
    rows = _rows()
    layout = tf.make_layout(SCHEMA, 3)
    modes = tf.Modes(
        np.array([[0.5, 0.5, 0.0], [0.3, 0.3, 0.4]], np.float32),
        np.array([[-1.0, 1.0, 0.0], [-1.0, 0.5, 2.0]], np.float32),
        np.array([[1.0, 0.8, 1.0], [0.7, 0.5, 0.6]], np.float32),
    )

    @jax.jit  # one compilation instead of one per primitive (eager mode): keeps the test short
    def round_trip(rows: NodeData, modes: tf.Modes) -> tuple:
        values, _ = tf.continuous_values(rows, layout, 1e-3)
        encoded = [tf.encode_continuous(values, modes, jax.random.key(0)), tf.discrete_onehot(rows, layout)]
        real = jnp.concatenate(encoded, axis=1)
        cont = tf.decode_continuous(real[:, : layout.continuous_width], modes)
        decoded = tf.decode_discrete(real[:, layout.continuous_width :], layout, 5)
        return real, cont, decoded, tf.split_outcome(real, layout, modes)

    real, cont, out, (cov, event, log_time) = round_trip(rows, modes)
    assert real.shape == (8, layout.width)
    cont = np.asarray(cont)
    np.testing.assert_allclose(cont[:, 0], np.asarray(rows.x)[:, 4], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.exp(cont[:, 1]), np.asarray(rows.time), rtol=1e-5)
    observed = np.asarray(rows.observed)
    np.testing.assert_array_equal(np.asarray(out["present"]), observed)
    x, got = np.asarray(rows.x), np.asarray(out["x"])
    np.testing.assert_array_equal(got[:, :4][observed[:, :4]], x[:, :4][observed[:, :4]])
    np.testing.assert_array_equal(np.asarray(out["event"]), np.asarray(rows.event))
    # the outcome loss's split: the event, log time by its mode and α, and the covariates without them
    np.testing.assert_array_equal(np.asarray(event), np.asarray(rows.event))
    np.testing.assert_allclose(np.exp(np.asarray(log_time)), np.asarray(rows.time), rtol=1e-5)
    width = layout.width - 4 - 2  # less log time's α and 3 modes, less the event block
    real = np.asarray(real)
    expected = np.concatenate([real[:, :4], real[:, layout.continuous_width : -2]], axis=1)
    np.testing.assert_array_equal(np.asarray(cov), expected)
    assert cov.shape == (8, width)


@pytest.mark.slow  # compiles a GAN step (the penalty's double backward): tens of seconds under load
@pytest.mark.parametrize(("outcome_weight", "outcome_lr"), [(0.0, 0.0), (1.0, 0.0), (1.0, 1e-2)])
def test_one_gan_step_moves_every_generator_output_the_critic_reads_and_no_absent_mode(
    outcome_weight, outcome_lr
):
    """Adam turns any non-zero gradient into a step of ~lr, and a zero one into none (weight decay off):
    after one GAN step each column of the generator's output layer moved iff the critic or the conditional
    loss sees it. Log time's α and modes move; the modes a column does not have (masked to -1e9) do not.
    The auxiliary steps by ``outcome_lr`` (0: the generator's 2e-4), the generator by its own lr."""
    layout = tf.make_layout(SCHEMA, 3)
    weights = np.array([[0.5, 0.5, 0.0], [0.3, 0.3, 0.4]], np.float32)  # v has 2 modes, log time 3
    fitted = (weights, np.array([[-1.0, 1.0, 0.0], [-1.0, 0.5, 2.0]]), np.ones((2, 3)))
    config = CTGANConfig(
        schema=SCHEMA, batch_size=20, pac=10, generator_dim=(8,), critic_dim=(8,), embedding_dim=4, modes=3,
        weight_decay=0.0, critic_dropout=0.0, outcome_weight=outcome_weight, outcome_dim=(8,),
        outcome_lr=outcome_lr,
    ).with_fit(tf.Modes(*fitted), np.ones(layout.cond_width))  # fmt: skip
    model = ctgan(config, 5)
    params = jax.jit(model.init)(jax.random.key(0))
    new, _, _ = jax.jit(model.local_training.step)(
        params, model.local_training.init(params), _rows(), jax.random.key(1)
    )
    moved = np.any(np.asarray(new["generator"]["out"]["w"]) != np.asarray(params["generator"]["out"]["w"]), 0)
    assert moved.shape == (layout.width,)
    cont = moved[: layout.continuous_width].reshape(2, 4)  # per column: α, then 3 mode logits
    assert cont[1].all()  # log time: α and its three modes
    assert cont[0, :3].all() and not cont[0, 3]  # v: α and two modes; its third mode is absent
    assert moved[layout.continuous_width :].all()  # every discrete block
    if outcome_weight:  # the auxiliary learnt from real rows in the same step
        assert set(new) == {"generator", "critic", "auxiliary"}
        pairs = zip(jax.tree.leaves(params["auxiliary"]), jax.tree.leaves(new["auxiliary"]), strict=True)
        steps = [np.abs(np.asarray(b) - np.asarray(a)) for a, b in pairs]
        assert all(np.any(s > 0) for s in steps)
        # Adam's first step is lr · g / (|g| + 1e-8) per weight: at most lr, ≈ lr where |g| ≫ 1e-8
        lr = outcome_lr or config.generator_lr
        np.testing.assert_allclose(max(s.max() for s in steps), lr, rtol=1e-3)
        w0, w1 = (np.asarray(p["generator"]["out"]["w"]) for p in (params, new))
        np.testing.assert_allclose(np.abs(w1 - w0).max(), config.generator_lr, rtol=1e-3)
    else:
        assert set(new) == {"generator", "critic"}


@pytest.mark.slow  # 600 GAN steps on a toy table: about two minutes on a loaded machine
def test_the_outcome_loss_reproduces_a_deterministic_covariate_outcome_link():
    """log t = −v exactly, v ~ N(0, 1), the event and a binary covariate independent: the trained generator's
    rows keep the link (correlation of v and log t −1 in the data; the paper's CTGAN reached −0.2 after
    1,000 steps of this toy, experiments/synthetic/ctgan.md) and the event's share."""
    rng = np.random.default_rng(0)
    n = 1000
    v = rng.normal(0, 1, n).astype(np.float32)
    order = np.argsort(v)  # descending time = ascending v
    x = np.stack([rng.binomial(1, 0.5, n), v], axis=1).astype(np.float32)[order]
    time, event = np.exp(-x[:, 1]), rng.binomial(1, 0.5, n).astype(np.float32)
    rows = NodeData(*map(jnp.asarray, (x, np.ones_like(x, bool), time, event, np.ones(n), np.arange(n))))
    schema = (ColumnSpec("b", "binary", 0, 1), ColumnSpec("v", "continuous", 1, 1, (), -10.0, 10.0))
    config = CTGANConfig(
        schema=schema, batch_size=100, generator_dim=(64, 64), critic_dim=(64, 64), embedding_dim=16, modes=1,
        outcome_weight=1.0, outcome_dim=(32,),
    )  # fmt: skip
    model = ctgan(config, 2)
    params = jax.jit(model.init)(jax.random.key(0))
    state, step = model.local_training.init(params), jax.jit(model.local_training.step)
    for i in range(600):
        params, state, _ = step(params, state, rows, jax.random.key(i + 1))
    table = model.sample({"network": params}, jax.random.key(99), 2000)
    v_syn, log_t = table["v"].to_numpy(), np.log(table["time"].to_numpy())
    assert np.corrcoef(v_syn, log_t)[0, 1] < -0.6
    assert abs(table["event"].mean() - 0.5) < 0.1  # the independent event's share kept


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"log_frequency": False},
        {"missing_by_count": True},
        {"missing_by_count": True, "frequency_power": 0.5},
    ],
)
def test_the_training_step_draws_conditions_as_configured(monkeypatch, options):
    """Training-by-sampling's level probabilities get every option of the config (session 16 ran a design
    whose ``frequency_power`` never reached the step: this would have caught it)."""
    module = importlib.import_module("fedjax_rhd.models.ctgan")  # the package's ``ctgan`` is the factory
    seen = []
    original = module.condition_probabilities

    def recording(counts, layout, *args):
        seen.append(args)
        return original(counts, layout, *args)

    monkeypatch.setattr(module, "condition_probabilities", recording)
    config = CTGANConfig(
        schema=SCHEMA, batch_size=10, pac=2, generator_dim=(8,), critic_dim=(8,), embedding_dim=4, modes=3,
        **options,
    )  # fmt: skip
    model = ctgan(config, 5)
    params = model.init(jax.random.key(0))
    jax.jit(model.local_training.step)(params, model.local_training.init(params), _rows(), jax.random.key(1))
    expected = (config.log_frequency, config.missing_by_count, config.frequency_power)
    assert seen and all(args == expected for args in seen)
