"""Files a run writes: parameter pytrees to and from flat ``.npz`` files, keyed by their tree path,
always written atomically (``harmonize.identity.atomic_write``, the project's one atomic write).

The same flattening (key path → numpy leaf) is what a Flower ``ArrayRecord``
needs later: it takes neither JAX arrays nor nested dicts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import numpy as np

from harmonize.identity import atomic_write

SEP = "/"


def flatten_params(tree: Any) -> dict[str, np.ndarray]:
    """Nested dict pytree → ``{"a/b/kernel": ndarray}`` (keys must be str or int)."""
    flat: dict[str, np.ndarray] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        parts = []
        for entry in path:
            key = getattr(entry, "key", getattr(entry, "idx", None))
            if key is None or SEP in str(key):
                raise ValueError(f"cannot flatten tree path {path!r}")
            parts.append(str(key))
        flat[SEP.join(parts)] = np.asarray(leaf)
    return flat


def unflatten_params(flat: dict[str, np.ndarray]) -> dict[str, Any]:
    """Inverse of :func:`flatten_params` for nested dicts (integer keys restored)."""
    tree: dict[Any, Any] = {}
    for name, leaf in flat.items():
        node = tree
        *parents, last = [int(p) if p.isdigit() else p for p in name.split(SEP)]
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = leaf
    return tree


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` atomically: a crash (even SIGKILL) leaves the old file or the new one."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:  # a file object: ``np.savez`` would append ".npz" to a name
            np.savez(f, **arrays)

    atomic_write(path, write)
    return Path(path)


def save_params(path: str | Path, tree: Any) -> Path:
    """Write a parameter pytree by tree path, atomically."""
    return save_npz(path, flatten_params(tree))


def load_params(path: str | Path) -> dict[str, Any]:
    with np.load(path) as archive:
        return unflatten_params({k: archive[k] for k in archive.files})
