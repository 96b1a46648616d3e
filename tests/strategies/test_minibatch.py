"""Minibatch local updates (strategies/client.py): batches, Cox risk sets, keys, equality at full size."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.models import DeepSurvConfig
from fedjax_rhd.models.cox import cox_partial_log_likelihood
from fedjax_rhd.strategies import AlgorithmSpec, build_algorithm, build_model
from fedjax_rhd.strategies.client import BATCH_STREAM, ClientConfig, minibatch, rows_per_step

draw = jax.jit(minibatch, static_argnums=2)


def tied_node(n: int, pad_to: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    time = rng.integers(1, 15, n).astype(float)  # many ties
    return make_node_data(
        rng.normal(size=(n, 4)), rng.random((n, 4)) > 0.1, time, rng.random(n) < 0.6, pad_to=pad_to
    )


def breslow_direct(risk, time, event) -> float:
    """O(n^2) Breslow log partial likelihood of the given rows."""
    return sum(risk[i] - np.log(np.exp(risk[time >= time[i]]).sum()) for i in range(len(time)) if event[i])


def test_a_batch_is_drawn_without_replacement_in_time_order_with_its_own_risk_sets():
    node = tied_node(90, pad_to=128)
    batch = draw(node, jax.random.key(0), 40)
    assert batch.x.shape == (40, 4) and float(batch.weight.sum()) == 40  # only real rows: 90 >= 40
    time = np.asarray(batch.time)
    assert np.all(np.diff(time) <= 0)  # descending, as the Cox loss needs
    assert len({tuple(r) for r in np.asarray(batch.x)}) == 40  # no row twice
    # risk-set ends are the last batch row of each tie group
    ends = np.asarray(batch.risk_set_end)
    np.testing.assert_array_equal(ends, [np.flatnonzero(time == t).max() for t in time])
    # so the batch's partial likelihood is Breslow's on exactly these rows
    risk = np.asarray(batch.x[:, 0])
    ours = float(cox_partial_log_likelihood(jnp.asarray(risk), batch))
    np.testing.assert_allclose(ours, breslow_direct(risk, time, np.asarray(batch.event) > 0), rtol=1e-5)


def test_a_node_smaller_than_the_batch_trains_on_all_its_rows_plus_masked_padding():
    node = tied_node(30, pad_to=64)
    batch = draw(node, jax.random.key(1), 48)
    assert batch.x.shape[0] == 48 and float(batch.weight.sum()) == 30
    np.testing.assert_array_equal(np.asarray(batch.time[:30]), np.asarray(node.time[:30]))
    np.testing.assert_array_equal(np.asarray(batch.risk_set_end[30:]), np.arange(30, 48))  # padding: itself
    risk = jnp.asarray(node.x[:, 0])
    np.testing.assert_allclose(
        float(cox_partial_log_likelihood(risk[np.asarray(jnp.arange(48))], batch)),
        float(cox_partial_log_likelihood(risk, node)),
        rtol=1e-6,
    )


def test_every_row_is_drawn_with_probability_batch_over_rows():
    node = tied_node(50, pad_to=64)
    node = node._replace(x=_marked(node.x))
    keys = jax.random.split(jax.random.key(2), 4000)
    drawn = np.asarray(jax.jit(jax.vmap(lambda k: minibatch(node, k, 10).x[:, 0]))(keys)).astype(int)
    counts = np.bincount(drawn.ravel(), minlength=64)
    assert counts[50:].sum() == 0  # padding never drawn while real rows suffice
    assert np.all([len(set(row)) == 10 for row in drawn])  # without replacement
    p = 10 / 50
    assert np.all(np.abs(counts[:50] - 4000 * p) < 6 * np.sqrt(4000 * p * (1 - p)))


def _marked(x: np.ndarray) -> np.ndarray:
    x = np.array(x)
    x[:, 0] = np.arange(x.shape[0])  # each row's index, to count draws
    return x


def test_batches_are_pure_functions_of_the_step_key():
    node = tied_node(200, pad_to=256)
    spec = AlgorithmSpec(
        "fedavg", "deepsurv", DeepSurvConfig(hidden=(8,)), 4,
        client=ClientConfig(learning_rate=1e-2, batch_size=32, local_steps=6),
    )  # fmt: skip
    update = jax.jit(build_algorithm(spec).client_update)
    params = build_model(spec).init(jax.random.key(0))
    a, b = update(params, node, jax.random.key(9)), update(params, node, jax.random.key(9))
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
    c = update(params, node, jax.random.key(10))
    assert any(
        not np.array_equal(x, y)
        for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(c.params), strict=True)
    )
    # the batch of step s comes from fold_in(fold_in(rng, s), BATCH_STREAM)
    step_key = jax.random.fold_in(jax.random.key(9), 3)
    one = draw(node, jax.random.fold_in(step_key, BATCH_STREAM), 32)
    two = draw(node, jax.random.fold_in(step_key, BATCH_STREAM), 32)
    np.testing.assert_array_equal(one.time, two.time)


@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_a_batch_as_large_as_the_node_is_the_full_batch_step(dropout):
    node = tied_node(100, pad_to=128, seed=3)
    full = ClientConfig(learning_rate=1e-2, local_epochs=4)
    model = DeepSurvConfig(hidden=(8,), dropout=dropout)
    params = build_model(AlgorithmSpec("fedavg", "deepsurv", model, 4, client=full)).init(jax.random.key(0))
    results = {}
    for name, client in {
        "full": full,
        "padded size": dataclasses.replace(full, batch_size=128, local_steps=4),  # returns the node itself
        "real rows": dataclasses.replace(full, batch_size=100, local_steps=4),  # all real rows, no padding
    }.items():
        spec = AlgorithmSpec("fedavg", "deepsurv", model, 4, client=client)
        results[name] = jax.jit(build_algorithm(spec).client_update)(params, node, jax.random.key(4))
    for x, y in zip(
        jax.tree.leaves(results["padded size"].params), jax.tree.leaves(results["full"].params), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    if dropout == 0.0:  # with dropout, 100 rows draw other masks than 128
        for x, y in zip(
            jax.tree.leaves(results["real rows"].params), jax.tree.leaves(results["full"].params), strict=True
        ):
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def test_config_checks_and_rows_per_step():
    with pytest.raises(ValueError, match="batch_size must be >= 2"):
        ClientConfig(batch_size=1)
    with pytest.raises(
        ValueError, match="local_steps counts minibatch steps: set strategy.client.batch_size"
    ):
        ClientConfig(local_steps=3)
    assert ClientConfig(local_epochs=5).steps == 5
    assert ClientConfig(local_epochs=5, batch_size=64).steps == 5
    assert ClientConfig(local_epochs=5, batch_size=64, local_steps=20).steps == 20
    assert rows_per_step(ClientConfig(batch_size=64), [1000, 30]) == [64, 30]
    assert rows_per_step(ClientConfig(), [1000, 30]) == [1000, 30]
