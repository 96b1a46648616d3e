"""Pytrees through Flower records: exact round trips over nested pytrees and dtypes (flwr 1.42)."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest
from flwr.app import ArrayRecord, RecordDict
from flwr.supercore.inflatable.inflatable_object import get_all_nested_objects
from flwr.supercore.inflatable.inflatable_utils import inflate_object_from_contents
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fedjax_rhd.federation.flower.records import (
    from_record,
    key_data,
    to_record,
    wrap_key,
)
from fedjax_rhd.federation.flower.wire import arrays_record, record_arrays
from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies import AlgorithmSpec, ServerConfig, build_algorithm, build_model

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.uint32, np.bool_, ml_dtypes.bfloat16]


def over_the_wire(record: ArrayRecord) -> ArrayRecord:
    """Deflate every object of a RecordDict to bytes and inflate it back, as Flower's transport does."""
    content = RecordDict({"payload": record})
    contents = {oid: obj.deflate() for oid, obj in get_all_nested_objects(content).items()}
    rebuilt = inflate_object_from_contents(content.object_id, contents)
    assert isinstance(rebuilt, RecordDict)
    return rebuilt["payload"]


def assert_bit_equal(a: object, b: object) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        x, y = np.asarray(x), np.asarray(y)
        assert x.dtype == y.dtype and x.shape == y.shape
        assert x.tobytes() == y.tobytes()  # bit-exact, NaN payloads and -0.0 included


@st.composite
def leaves(draw: st.DrawFn) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if dtype == np.dtype(ml_dtypes.bfloat16):  # hypothesis has no bfloat16: draw its bits
        return draw(hnp.arrays(np.uint16, shape)).view(ml_dtypes.bfloat16)
    return draw(hnp.arrays(dtype, shape))


names = st.text(alphabet="abcdefgh_/.[]'0123456789", min_size=1, max_size=6)
pytrees = st.recursive(
    leaves(),
    lambda children: st.one_of(
        st.dictionaries(names, children, min_size=1, max_size=3),
        st.lists(children, min_size=1, max_size=3),
        st.tuples(children, children),
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(pytrees)
def test_pytree_round_trip_is_bit_exact_through_the_wire(tree: object) -> None:
    assert_bit_equal(from_record(over_the_wire(to_record(tree)), tree), tree)


def test_model_params_and_server_state_round_trip() -> None:
    # every model's parameters and the adaptive server's optimiser state (FedAdam), with random
    # values in their real structure (eval_shape: nothing is compiled)
    rng = np.random.default_rng(0)
    for name, entry in MODELS.items():
        if entry.from_counts:  # the Bayesian network has no parameters to send: its nodes send counts
            continue
        spec = AlgorithmSpec("fedavg", name, entry.config(), 6, server=ServerConfig(optimizer="adam"))
        params = jax.eval_shape(build_model(spec).init, jax.random.key(3))
        state = jax.eval_shape(lambda p, spec=spec: build_algorithm(spec).init(p, 3), params)
        values = jax.tree.map(lambda s: rng.standard_normal(s.shape).astype(s.dtype), state)
        assert_bit_equal(from_record(over_the_wire(to_record(values)), state), values)


def test_jax_arrays_and_zero_d_leaves_keep_their_shape() -> None:
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "s": np.float32(2.5), "n": jnp.int32(4)}
    back = from_record(to_record(tree), tree)
    assert back["s"].shape == () and back["n"].shape == () and back["w"].shape == (2, 3)


def test_mismatched_record_names_the_key() -> None:
    tree = {"a": np.zeros(3, np.float32), "b": np.ones(2, np.float32)}
    with pytest.raises(ValueError, match=r"missing keys \[\"\['b'\]\"\]"):
        from_record(to_record({"a": tree["a"]}), tree)
    with pytest.raises(ValueError, match=r"\['a'\]: got float64\[3\], expected float32\[3\]"):
        from_record(to_record({"a": np.zeros(3), "b": tree["b"]}), tree)


def test_flat_arrays_and_keys() -> None:
    arrays = {"grid": np.linspace(0, 1, 5), "counts": np.arange(4, dtype=np.int64)}
    back = record_arrays(over_the_wire(arrays_record(arrays)))
    assert set(back) == set(arrays)
    for k in arrays:
        np.testing.assert_array_equal(back[k], arrays[k])
    key = jax.random.fold_in(jax.random.key(7), 2)
    assert np.array_equal(jax.random.key_data(wrap_key(key_data(key))), jax.random.key_data(key))
    # the same key draws the same numbers
    assert jax.random.uniform(wrap_key(key_data(key))) == jax.random.uniform(key)


def test_frozen_dataclass_leaves_are_not_pytrees() -> None:
    # a config dataclass is not a pytree node: it is one (object) leaf and np.save would pickle it
    @dataclasses.dataclass(frozen=True)
    class Config:
        x: int = 1

    with pytest.raises((TypeError, ValueError)):
        to_record({"config": Config()})
