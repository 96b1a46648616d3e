"""The loop's keys made without a trace are the bits of ``jax.random.key`` and ``fold_in``."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from fedjax_rhd.federation.round_keys import RoundKeys, seed_key


@pytest.mark.parametrize("seed", [0, 1, 7, 12345, 2**31 - 1, 2**31, 2**32 + 5])
def test_seed_key_has_the_bits_of_jax_random_key(seed):
    got, want = seed_key(seed), jax.random.key(seed)
    assert jax.random.key_impl(got) == jax.random.key_impl(want)
    assert np.array_equal(jax.random.key_data(got), jax.random.key_data(want))


@pytest.mark.parametrize("seed", [0, 3, 2**31 - 1])
def test_round_keys_are_fold_in_of_every_round(seed):
    key = jax.random.key(seed)
    keys = RoundKeys(seed_key(seed), 40)
    for r in range(41):
        assert np.array_equal(jax.random.key_data(keys(r)), jax.random.key_data(jax.random.fold_in(key, r)))
    # the keys drive the same draws as the eager ones
    assert np.array_equal(
        jax.random.normal(keys(5), (3,)), jax.random.normal(jax.random.fold_in(key, 5), (3,))
    )
    with pytest.raises(IndexError, match="outside 0..40"):
        keys(41)
