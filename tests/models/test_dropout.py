"""Dropout masks from 16-bit halves: the rate, the expectation, vmap invariance (models/dropout.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.models.dropout import dropout, keep_threshold


@pytest.mark.parametrize(("rate", "threshold"), [(0.0, 65536), (0.1, 58982), (0.5, 32768), (0.999999, 1)])
def test_keep_threshold_rounds_the_keep_probability_to_2_to_the_minus_16(rate, threshold):
    # 0.9 * 65536 = 58982.4 -> 58982; a tiny keep probability still keeps something
    assert keep_threshold(rate) == threshold
    with pytest.raises(ValueError, match=r"dropout rate must be in \[0, 1\), got 1.0"):
        keep_threshold(1.0)


def test_rate_and_scale_match_the_binomial_and_keep_the_mean():
    x = jnp.ones((2000, 33), jnp.float32)  # an odd element count: the last word's second half unused
    out = np.asarray(dropout(x, jax.random.key(3), 0.1))
    kept = out != 0
    n = kept.size
    p = keep_threshold(0.1) / 65536
    # 6 binomial standard deviations: fails only if the masks are not Bernoulli(p)
    assert abs(kept.sum() - n * p) < 6 * np.sqrt(n * p * (1 - p))
    np.testing.assert_allclose(out[kept], 65536 / 58982, rtol=1e-7)  # survivors scaled by 1 / p exactly
    assert out.dtype == np.float32


def test_rate_zero_is_the_identity_and_masks_differ_between_keys():
    x = jax.random.normal(jax.random.key(0), (64, 32))
    assert dropout(x, jax.random.key(1), 0.0) is x
    a, b = dropout(x, jax.random.key(1), 0.5), dropout(x, jax.random.key(2), 0.5)
    np.testing.assert_array_equal(a, dropout(x, jax.random.key(1), 0.5))  # same key, same mask
    assert not np.array_equal(np.asarray(a) == 0, np.asarray(b) == 0)


def test_a_node_gets_the_same_mask_alone_and_vmapped():
    # the simulator vmaps nodes, a Flower node runs alone: the bits must not depend on the batch
    keys = jax.random.split(jax.random.key(7), 5)
    x = jax.random.normal(jax.random.key(8), (5, 97, 32))
    batched = jax.jit(jax.vmap(lambda xi, k: dropout(xi, k, 0.1)))(x, keys)
    for i in range(5):
        np.testing.assert_array_equal(batched[i], jax.jit(lambda xi, k: dropout(xi, k, 0.1))(x[i], keys[i]))
