"""Inverted dropout with cheap masks: a counter-based hash of a per-mask seed instead of threefry.

``jax.random.bernoulli`` draws one 32-bit threefry word per element (about 20
rounds of mixing per pair of words); on a CPU the masks of DeepSurv's two
hidden layers took half of a five-node federated round, and still a third
after drawing 16 bits per element (``experiments/bench/round.py``). Here one
threefry draw gives the mask its 64-bit seed, and element pairs take their bits
from MurmurHash3's 32-bit finaliser (Appleby 2008; a bijection with full
avalanche) applied twice to the word counter mixed with the seed: about ten
integer operations per pair of elements, which XLA fuses into the layer. Each
32-bit word gives two 16-bit halves: along the last axis of width ``m``, with
``h = ceil(m / 2)`` words per row, element ``j < h`` takes word ``j``'s low half
and element ``j >= h`` word ``j - h``'s high half. Splitting a word by a
concatenation keeps the hash, the split and the layer in one loop; splitting it
by a bitcast to 16-bit halves did not fuse and cost as much as hashing every
element (1.0 ms of a 9.5 ms round, ``experiments/bench/round.py``). The keep
probability is ``1 - rate`` rounded to a multiple of 2^-16 (within 7.7e-6 of
it), and survivors are scaled by that exact probability so the layer's
expectation is unchanged (Srivastava N, et al. Dropout. JMLR 2014). The bits
depend only on the key and the element's position, so a node's masks are the
same vmapped over nodes (the simulator) and alone (a Flower node).
``tests/models/test_dropout.py`` checks the keep rate, independence between
neighbouring elements, the two halves of a word, layers and keys, and
uniformity of the halves.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

_LEVELS = 1 << 16  # a 16-bit half-word has this many values


class TracedRate(NamedTuple):
    """A dropout rate as the program uses it, for a rate passed as a traced value.

    Computed on the host (:func:`traced_rate`) exactly as :func:`dropout` computes it from a
    Python rate, so a traced rate and a compiled-in one give the same masks and scale
    (``fedjax_rhd.strategies.traced``).
    """

    threshold: jax.Array  # i32[]: halves below it are kept
    scale: jax.Array  # f32[]: survivors' factor, f32(2^16 / threshold)


def traced_rate(rate: float) -> TracedRate:
    """``rate``'s keep threshold and survivor scale as 0-d host arrays."""
    threshold = keep_threshold(rate)
    return TracedRate(np.int32(threshold), np.float32(_LEVELS / threshold))


def active(rate: float | TracedRate) -> bool:
    """Whether a layer draws masks: a traced rate always does (a zero rate is never traced)."""
    return isinstance(rate, TracedRate) or rate > 0


def keep_threshold(rate: float) -> int:
    """Halves below this are kept: ``round((1 - rate) * 2^16)``; ``2^16`` keeps everything."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"dropout rate must be in [0, 1), got {rate}")
    return max(1, min(_LEVELS, round((1.0 - rate) * _LEVELS)))


def dropout(x: jax.Array, key: jax.Array, rate: float | TracedRate) -> jax.Array:
    """``x`` with each element zeroed with probability ~``rate``, survivors scaled by ``1 / keep``.

    Args:
        x: any shape (under ``vmap``: one example's shape).
        key: a typed PRNG key; the same key gives the same mask.
        rate: drop probability, static; or a :class:`TracedRate` (traced threshold and scale).

    Returns:
        An array like ``x``.
    """
    if isinstance(rate, TracedRate):
        threshold, scale = rate
    else:
        threshold = keep_threshold(rate)
        if threshold == _LEVELS:
            return x
        scale = _LEVELS / threshold
    keep = mask_halves(key, x.shape) < threshold
    return jnp.where(keep, x * scale, jnp.zeros((), x.dtype)).astype(x.dtype)


def mask_halves(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """i32[shape] uniform draws in ``[0, 2^16)``, two per hash word (layout in the module docstring)."""
    if not shape:
        return mask_halves(key, (1,)).reshape(())
    width = shape[-1]
    words = mask_bits(key, (*shape[:-1], (width + 1) // 2))
    halves = jnp.concatenate([words & jnp.uint32(0xFFFF), words >> 16], axis=-1)
    return halves[..., :width].astype(jnp.int32)


def _fmix32(h: jax.Array) -> jax.Array:
    """MurmurHash3's 32-bit finaliser: a bijection of uint32 in which every input bit flips every output bit
    with probability ~1/2."""
    h = h ^ (h >> 16)
    h = h * jnp.uint32(0x85EBCA6B)
    h = h ^ (h >> 13)
    h = h * jnp.uint32(0xC2B2AE35)
    return h ^ (h >> 16)


def mask_bits(key: jax.Array, shape: int | tuple[int, ...]) -> jax.Array:
    """u32[shape] hash bits for one mask: word i = fmix32(fmix32(i·φ + s0) ^ s1), (s0, s1) drawn from ``key``.

    ``i`` is the word's row-major position in ``shape``. φ = 0x9E3779B9 (the
    golden ratio's 32-bit fraction) spreads consecutive counters over the whole
    word before the first finaliser; the second seed word, mixed in between the
    finalisers, makes masks of different keys differ in every word even when
    their first seed words collide.
    """
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    seed = jax.random.bits(key, (2,), jnp.uint32)
    counter = jnp.zeros(shape, jnp.uint32)
    stride = 1
    for axis in reversed(range(len(shape))):  # the row-major position, built from per-axis iotas (fusable)
        counter = counter + jax.lax.broadcasted_iota(jnp.uint32, shape, axis) * jnp.uint32(stride)
        stride *= shape[axis]
    return _fmix32(_fmix32(counter * jnp.uint32(0x9E3779B9) + seed[0]) ^ seed[1])
