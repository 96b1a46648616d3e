"""The round loop's keys, made without tracing anything in a new process.

``jax.random.key(seed)`` and an eager ``fold_in`` each trace and lower a small program the first
time a process calls them (five programs, 40-80 ms of a warm 0.7 s run, measured with
``JAX_LOG_COMPILES=1``). Here a seed's key is wrapped from its raw bits, and every round's key
comes from one stored program (``fedjax_rhd.executables``) that folds all round numbers at
once; the bits are those of ``fold_in(key(seed), r)`` (tested).
"""

from __future__ import annotations

import jax
import numpy as np

from fedjax_rhd.executables import stored_jit

_FAST_SEEDS = 2**31  # threefry's key of 0 <= seed < 2**31 is the two words [0, seed]


def seed_key(seed: int) -> jax.Array:
    """``jax.random.key(seed)``, the same bits; wrapped without a trace for threefry seeds below 2³¹."""
    if jax.config.jax_default_prng_impl != "threefry2x32" or not 0 <= int(seed) < _FAST_SEEDS:
        return jax.random.key(seed)
    return jax.random.wrap_key_data(np.array([0, int(seed)], np.uint32))


@stored_jit()
def _folded(key_data: jax.Array, data: jax.Array) -> jax.Array:
    """uint32[n, 2]: the key data of ``fold_in(key, d)`` for every ``d`` in ``data``."""
    key = jax.random.wrap_key_data(key_data)
    return jax.vmap(lambda d: jax.random.key_data(jax.random.fold_in(key, d)))(data)


class RoundKeys:
    """``keys(r)`` = ``fold_in(key, r)`` for r = 0 … ``last``, folded once in one stored program."""

    def __init__(self, key: jax.Array, last: int) -> None:
        if last < 0:
            raise ValueError(f"RoundKeys: last must be >= 0, got {last}")
        data = jax.random.key_data(key)
        self._table = np.asarray(_folded(data, np.arange(last + 1, dtype=np.int32)))
        self._impl = jax.random.key_impl(key)

    def __call__(self, r: int) -> jax.Array:
        if not 0 <= r < len(self._table):
            raise IndexError(f"round key {r} is outside 0..{len(self._table) - 1}")
        return jax.random.wrap_key_data(self._table[r], impl=self._impl)
