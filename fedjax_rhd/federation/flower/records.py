"""JAX pytrees to Flower records and back: the one pair of helpers every Flower message uses.

A Flower ``ArrayRecord`` is a flat ``str -> Array`` mapping that takes only real
``np.ndarray`` values (no ``jax.Array``, no numpy scalars, no nested dicts) and
stores them with ``np.save(allow_pickle=False)``, so float16/32/64, int32/64,
uint32 and bool round-trip bit-exactly but bfloat16 (``ml_dtypes``) is refused
(``shared/docs/flower_1.42_facts.md`` §1). A pytree is therefore carried as one
ArrayRecord whose keys are its key paths (``jax.tree_util.keystr``); a leaf of
an extension dtype travels as its raw bits (an unsigned integer of the same
width) under ``<key path>::<dtype name>``. The receiver restores the tree onto a
template of the same structure (it builds the same model from the same spec),
and every key, shape and dtype is checked, so a mismatched message fails with
the key that differs instead of training on the wrong leaf.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from flwr.app import ArrayRecord

from fedjax_rhd.federation.flower.wire import arrays_record, record_arrays

# dtypes np.save round-trips natively; anything else (bfloat16, float8 ...) travels as raw bits.
_NATIVE_KINDS = frozenset("biuf")
_DTYPE_SEP = "::"


def _raw_bits(leaf: np.ndarray) -> tuple[np.ndarray, str]:
    """``leaf`` itself when np.save keeps its dtype, else its bits as a same-width unsigned int."""
    if leaf.dtype.kind in _NATIVE_KINDS and leaf.dtype.type.__module__ == "numpy":
        return leaf, ""
    return leaf.view(np.dtype(f"u{leaf.dtype.itemsize}")), leaf.dtype.name


def _leaves(tree: Any) -> list[tuple[str, np.ndarray]]:
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        value = np.asarray(leaf)  # ascontiguousarray would turn a 0-d leaf into shape (1,)
        out.append((jax.tree_util.keystr(path), value if value.flags.c_contiguous else value.copy()))
    return out


def to_flat(tree: Any) -> dict[str, np.ndarray]:
    """Every leaf of ``tree`` as numpy under its key path (extension dtypes as raw bits)."""
    flat = {}
    for key, leaf in _leaves(tree):
        if _DTYPE_SEP in key:
            raise ValueError(f"pytree key path {key!r} contains {_DTYPE_SEP!r}, which marks a dtype")
        raw, dtype = _raw_bits(leaf)
        flat[f"{key}{_DTYPE_SEP}{dtype}" if dtype else key] = raw
    return flat


def to_record(tree: Any) -> ArrayRecord:
    """One ArrayRecord holding every leaf of ``tree`` under its key path (JAX arrays become numpy)."""
    return arrays_record(to_flat(tree))


def _decoded(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in flat.items():
        key, _, dtype = name.partition(_DTYPE_SEP)
        out[key] = value.view(np.dtype(dtype)) if dtype else value
    return out


def _expected(template: Any) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """Key path, shape and dtype of every template leaf (arrays or ``jax.ShapeDtypeStruct``)."""
    out = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(template)[0]:
        if not hasattr(leaf, "shape") or not hasattr(leaf, "dtype"):
            leaf = np.asarray(leaf)
        out.append((jax.tree_util.keystr(path), tuple(leaf.shape), np.dtype(leaf.dtype)))
    return out


def from_record(record: ArrayRecord, template: Any) -> Any:
    """The pytree ``to_record`` encoded, rebuilt on ``template``'s structure (see :func:`from_flat`)."""
    return from_flat(record_arrays(record), template)


def from_flat(flat: Mapping[str, np.ndarray], template: Any) -> Any:
    """The pytree ``to_flat`` encoded, rebuilt on ``template``'s structure (numpy leaves).

    Args:
        flat: what ``to_flat`` produced (possibly after a trip through Flower).
        template: a pytree of the same structure; its leaves (arrays, or the
            ``jax.ShapeDtypeStruct`` of ``jax.eval_shape``) give the expected shapes and dtypes.

    Raises:
        ValueError: a key is missing or extra, or a leaf's shape or dtype differs from the template's.
    """
    values = _decoded(flat)
    expected = _expected(template)
    missing = [k for k, _, _ in expected if k not in values]
    extra = sorted(set(values) - {k for k, _, _ in expected})
    if missing or extra:
        raise ValueError(f"record does not match the pytree: missing keys {missing}, unexpected keys {extra}")
    leaves = []
    for key, shape, dtype in expected:
        value = values[key]
        if value.shape != shape or value.dtype != dtype:
            raise ValueError(
                f"record key {key}: got {value.dtype}{list(value.shape)}, expected {dtype}{list(shape)}"
            )
        leaves.append(value)
    return jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(template), leaves)


def key_data(key: jax.Array) -> np.ndarray:
    """A typed PRNG key as the raw uint32 words a message can carry."""
    return np.asarray(jax.random.key_data(key))


def wrap_key(data: np.ndarray) -> jax.Array:
    """Inverse of :func:`key_data` (the default key implementation)."""
    return jax.random.wrap_key_data(np.asarray(data, dtype=np.uint32))
