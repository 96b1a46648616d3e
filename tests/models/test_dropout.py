"""Dropout masks from 16-bit halves: rate, expectation, vmap invariance, layout (models/dropout.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.models.dropout import dropout, keep_threshold, mask_bits, mask_halves


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


def test_hash_bits_are_uniform_and_independent_of_neighbours_and_keys():
    # The masks come from a counter hash, not threefry: check what dropout relies on.
    n = 1 << 16
    keys = jax.random.split(jax.random.key(11), 8)
    words = np.stack([np.asarray(mask_bits(k, n)) for k in keys])  # u32[8, n]
    halves = words.view(np.uint16).astype(np.int64)  # the per-element 16-bit draws
    # 1. uniform halves: chi-square over 256 equal bins of the top 8 bits (255 dof; the 1e-6 tail is ~370)
    counts = np.bincount((halves >> 8).ravel(), minlength=256)
    expected = halves.size / 256
    assert ((counts - expected) ** 2 / expected).sum() < 370
    # 2. every bit position is set half the time (binomial, 6 sd)
    bits = (words[..., None] >> np.arange(32, dtype=np.uint32)) & 1
    share = bits.reshape(-1, 32).mean(axis=0)
    assert np.all(np.abs(share - 0.5) < 6 * np.sqrt(0.25 / (8 * n)))
    # 3. no correlation between neighbouring elements, between the two halves of a word,
    #    or between two keys' masks at the same positions (|r| < 6 / sqrt(n) each)
    u = halves / 65536.0
    limit = 6 / np.sqrt(u[0].size)
    for a, b in ((u[0, :-1], u[0, 1:]), (u[1, 0::2], u[1, 1::2]), (u[2], u[3]), (u[4, :-64], u[4, 64:])):
        assert abs(np.corrcoef(a, b)[0, 1]) < limit * np.sqrt(u[0].size / a.size)
    # 4. keep decisions of neighbours are independent: P(both kept) = p^2 (binomial, 6 sd)
    p = keep_threshold(0.1) / 65536
    kept = halves[0] < keep_threshold(0.1)
    both = (kept[:-1] & kept[1:]).sum()
    m = kept.size - 1
    assert abs(both - m * p * p) < 6 * np.sqrt(m * p * p * (1 - p * p))


def test_an_element_pair_shares_a_word_across_the_half_width_and_stays_independent():
    # Layout: along a last axis of width m, element j < ceil(m/2) takes word j's low half and
    # element j >= ceil(m/2) word j - ceil(m/2)'s high half; every other axis indexes words row-major.
    key = jax.random.key(5)
    for shape in ((4, 7), (3, 32), (5,), ()):
        width = shape[-1] if shape else 1
        h = (width + 1) // 2
        words = np.asarray(mask_bits(key, (*shape[:-1], h) if shape else (1,))).astype(np.int64)
        expected = np.concatenate([words & 0xFFFF, words >> 16], axis=-1)[..., :width].reshape(shape)
        np.testing.assert_array_equal(np.asarray(mask_halves(key, shape)), expected)
    # word positions are row-major over the word array: the same words as a flat draw
    np.testing.assert_array_equal(np.asarray(mask_bits(key, (6, 16))).ravel(), np.asarray(mask_bits(key, 96)))
    # the two halves of every word sit m/2 apart in a row: their keep decisions are independent
    halves = np.asarray(mask_halves(jax.random.key(9), (4096, 32))).astype(np.int64)
    lo, hi = halves[:, :16].ravel() / 65536.0, halves[:, 16:].ravel() / 65536.0
    assert abs(np.corrcoef(lo, hi)[0, 1]) < 6 / np.sqrt(lo.size)
    p = keep_threshold(0.1) / 65536
    both = ((halves[:, :16] < keep_threshold(0.1)) & (halves[:, 16:] < keep_threshold(0.1))).sum()
    m = lo.size
    assert abs(both - m * p * p) < 6 * np.sqrt(m * p * p * (1 - p * p))
