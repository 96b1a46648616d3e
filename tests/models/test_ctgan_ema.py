"""CTGAN's averaged generator (``model.generator_ema``; Yazici et al., ICLR 2019): the average follows
its recurrence by hand, generator and critic train exactly as without it, rows are drawn from the
average, and FedAvg averages it like any parameter."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.models import CTGANConfig, ctgan
from fedjax_rhd.strategies import ClientConfig, ServerConfig, fedavg
from fedjax_rhd.typing import ClientResult
from tests.models.test_ctgan_outcome import SCHEMA, SMALL, _rows, _same

DECAY = 0.9


def test_the_config_refuses_a_decay_outside_zero_one():
    for decay in (-0.1, 1.0):
        with pytest.raises(ValueError, match="generator_ema"):
            CTGANConfig(schema=SCHEMA, generator_ema=decay, **SMALL)


def test_the_average_starts_at_the_initial_generator_and_is_the_only_new_parameter():
    plain = ctgan(CTGANConfig(schema=SCHEMA, **SMALL), 5).init(jax.random.key(0))
    averaged = ctgan(CTGANConfig(schema=SCHEMA, generator_ema=DECAY, **SMALL), 5).init(jax.random.key(0))
    assert set(averaged) == {*plain, "generator_ema"}
    assert _same({k: averaged[k] for k in plain}, plain)
    assert _same(averaged["generator_ema"], plain["generator"])


@pytest.mark.slow  # compiles two GAN steps (the penalty's double backward)
def test_three_steps_move_generator_and_critic_as_without_it_and_the_average_by_its_recurrence():
    rows = _rows()
    base = {**SMALL, "schema": SCHEMA}
    plain, averaged = ctgan(CTGANConfig(**base), 5), ctgan(CTGANConfig(**base, generator_ema=DECAY), 5)
    p, q = plain.init(jax.random.key(0)), averaged.init(jax.random.key(0))
    sp, sq = plain.local_training.init(p), averaged.local_training.init(q)
    step_p, step_q = jax.jit(plain.local_training.step), jax.jit(averaged.local_training.step)
    expected = jax.tree.map(np.asarray, q["generator_ema"])
    for i in range(3):
        p, sp, _ = step_p(p, sp, rows, jax.random.key(i + 1))
        q, sq, _ = step_q(q, sq, rows, jax.random.key(i + 1))
        assert _same(p["generator"], q["generator"]) and _same(p["critic"], q["critic"])
        # by hand: avg_i = d avg_{i-1} + (1 - d) generator_i, in float32
        expected = jax.tree.map(
            lambda a, g: np.float32(DECAY) * a + np.float32(1 - DECAY) * np.asarray(g),
            expected,
            q["generator"],
        )
        for got, want in zip(jax.tree.leaves(q["generator_ema"]), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(np.asarray(got), want, rtol=1e-6, atol=1e-7)
    assert not _same(q["generator_ema"], q["generator"])


@pytest.mark.slow  # compiles two samplers
def test_rows_are_drawn_from_the_average_not_the_last_iterate():
    """A network whose average holds other weights draws exactly the rows the plain model draws
    from those weights."""
    base = {**SMALL, "schema": SCHEMA}
    plain, averaged = ctgan(CTGANConfig(**base), 5), ctgan(CTGANConfig(**base, generator_ema=DECAY), 5)
    p = plain.init(jax.random.key(0))
    other = plain.init(jax.random.key(7))["generator"]
    with_average = {**averaged.init(jax.random.key(0)), "generator_ema": other}
    drawn = averaged.sample({"network": with_average}, jax.random.key(3), 30)
    assert drawn.equals(plain.sample({"network": {**p, "generator": other}}, jax.random.key(3), 30))
    assert not drawn.equals(plain.sample({"network": p}, jax.random.key(3), 30))


def test_fedavg_averages_the_average_like_any_parameter():
    """Weights 3 and 1: the global average generator is (3a + b) / 4 of the nodes', leaf by leaf."""
    model = ctgan(CTGANConfig(schema=SCHEMA, generator_ema=DECAY, **SMALL), 5)
    a, b = model.init(jax.random.key(1)), model.init(jax.random.key(2))
    algo = fedavg(model, ClientConfig(), ServerConfig(learning_rate=1.0))
    stacked = jax.tree.map(lambda u, v: jnp.stack([u, v]), a, b)
    results = ClientResult(stacked, jnp.array([3.0, 1.0]), {})
    new = algo.aggregate(algo.init(model.init(jax.random.key(0)), 2), results, results.num_examples)
    leaves = zip(*(jax.tree.leaves(p["generator_ema"]) for p in (new.params, a, b)), strict=True)
    for got, u, v in leaves:
        np.testing.assert_allclose(
            np.asarray(got), (3 * np.asarray(u) + np.asarray(v)) / 4, rtol=1e-5, atol=1e-6
        )
