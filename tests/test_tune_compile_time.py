"""The search's compile share: the union of JAX's compile spans, nested spans counted once."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from fedjax_rhd.tune.compile_time import compile_seconds, covered_seconds


@pytest.mark.parametrize(
    ("spans", "expected"),
    [
        ([], 0.0),
        ([(0.0, 2.0), (0.5, 1.0)], 2.0),  # a jit traced inside another: counted once
        ([(0.0, 1.0), (3.0, 4.5)], 2.5),  # apart: both
        ([(2.0, 4.0), (0.0, 3.0)], 4.0),  # overlapping, out of order: [0, 4]
    ],
)
def test_covered_seconds_is_the_length_of_the_spans_union(spans, expected):
    assert covered_seconds(spans) == pytest.approx(expected)


def test_a_new_program_counts_compile_time_and_a_cached_one_almost_none():
    def f(x):
        return jnp.sin(x) * 3.0 + jnp.cos(x[::-1]) ** 2

    fn = jax.jit(f)
    x = jnp.arange(37.0)
    with compile_seconds() as first:
        fn(x).block_until_ready()
    with compile_seconds() as again:
        fn(x).block_until_ready()
    assert first[0] > 0.0
    assert again[0] == 0.0  # the executable is reused: nothing traced, lowered or compiled
