"""The training loop's whole state, checkpointed after every round and resumed from disk.

One ``checkpoint.npz`` per run directory holds everything the next round
needs: the server state (parameters, server-optimiser state, round counter),
the best state kept for early stopping, the training key, and as JSON the
per-round records (participation included, so the nodes sampled so far), the
early-stopping counters and the run's identity (config, dataset id). It is one
file written to a temporary name and renamed, so a crash (even SIGKILL)
leaves either the previous checkpoint or the new one, never half of one.

Pytrees are stored as their leaves in order and rebuilt on the treedef of a
freshly initialised state, which also checks that the checkpoint belongs to
the same algorithm and model shapes.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rhd.io import save_npz
from fedjax_rhd.typing import ServerState

CHECKPOINT_NAME = "checkpoint.npz"
FORMAT_VERSION = 1


class ResumeRefused(ValueError):
    """The checkpoint belongs to another config or dataset; the message names every differing key."""


@dataclasses.dataclass
class LoopState:
    """Everything ``loop.run_federation`` carries from one round to the next."""

    state: ServerState
    best_state: ServerState
    best_score: np.ndarray  # f64[K or 1] best validation loss so far
    best_round: int = 0
    since_best: int = 0
    # personalised strategies: each node's own early stopping (node k alone means alone)
    node_best_round: list[int] | None = None
    node_since_best: list[int] | None = None
    rounds: list[dict] = dataclasses.field(default_factory=list)  # results.json records so far
    seconds: list[float] = dataclasses.field(default_factory=list)  # wall seconds per round

    @property
    def round(self) -> int:
        return len(self.rounds)


def save_loop_state(
    path: str | Path, loop: LoopState, train_key: jax.Array, identity: dict[str, Any]
) -> Path:
    """Write ``loop`` atomically (``fedjax_rhd.io.save_npz``)."""
    path = Path(path)
    leaves = jax.tree.leaves((loop.state, loop.best_state))
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    meta = {
        "format": FORMAT_VERSION,
        "round": loop.round,
        "best_round": loop.best_round,
        "since_best": loop.since_best,
        "node_best_round": loop.node_best_round,
        "node_since_best": loop.node_since_best,
        "rounds": loop.rounds,
        "seconds": loop.seconds,
        "num_leaves": len(leaves),
        "identity": identity,
    }
    arrays["best_score"] = np.asarray(loop.best_score, dtype=np.float64)
    arrays["train_key"] = np.asarray(jax.random.key_data(train_key))
    arrays["meta"] = np.array(json.dumps(meta))
    return save_npz(path, arrays)


def _read_archive(path: Path, *, leaves: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The checkpoint's meta and arrays; a truncated or edited file is refused naming it.

    Raises:
        ResumeRefused: the file is not a checkpoint this code wrote (no zip, no meta, a leaf missing).
    """
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            if not isinstance(meta, dict) or not isinstance(meta.get("identity"), dict):
                raise KeyError("meta.identity")
            arrays = {}
            if leaves:
                names = [f"leaf_{i:05d}" for i in range(int(meta["num_leaves"]))]
                arrays = {k: archive[k] for k in [*names, "best_score", "train_key"]}
    except (OSError, EOFError, ValueError, KeyError, TypeError, zipfile.BadZipFile) as err:
        raise ResumeRefused(
            f"{path}: not a readable checkpoint ({type(err).__name__}: {err}); it was truncated or edited. "
            "Start the run afresh (without resume=) or restore the file"
        ) from None
    return meta, arrays


def read_identity(path: str | Path) -> dict[str, Any]:
    """The identity a checkpoint was written with (to compare configs before loading).

    Raises:
        ResumeRefused: the file is not a readable checkpoint.
    """
    return _read_archive(Path(path), leaves=False)[0]["identity"]


def load_loop_state(path: str | Path, template: ServerState, train_key: jax.Array) -> LoopState:
    """Rebuild a ``LoopState`` on ``template``'s structure.

    Raises:
        ValueError: the checkpoint does not fit ``template`` (another model or
            strategy) or was trained with another key.
    """
    path = Path(path)
    meta, arrays = _read_archive(path, leaves=True)
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {meta.get('format')}, expected {FORMAT_VERSION}")
    leaves = [arrays[f"leaf_{i:05d}"] for i in range(int(meta["num_leaves"]))]
    best_score = arrays["best_score"]
    key_data = arrays["train_key"]
    if not np.array_equal(key_data, np.asarray(jax.random.key_data(train_key))):
        raise ValueError(f"{path}: the checkpoint was trained with another seed.train")
    template_leaves, treedef = jax.tree.flatten((template, template))
    if len(leaves) != len(template_leaves):
        raise ValueError(
            f"{path}: {len(leaves)} arrays in the checkpoint, {len(template_leaves)} in this run's state "
            "(another strategy or model?)"
        )
    restored = []
    for i, (leaf, like) in enumerate(zip(leaves, template_leaves, strict=True)):
        if leaf.shape != like.shape or leaf.dtype != like.dtype:
            raise ValueError(
                f"{path}: array {i} is {leaf.dtype}{list(leaf.shape)}, this run expects "
                f"{like.dtype}{list(like.shape)} (another strategy or model?)"
            )
        restored.append(jnp.asarray(leaf))
    state, best_state = jax.tree.unflatten(treedef, restored)
    return LoopState(
        state=state,
        best_state=best_state,
        best_score=best_score,
        best_round=int(meta["best_round"]),
        since_best=int(meta["since_best"]),
        node_best_round=meta.get("node_best_round"),
        node_since_best=meta.get("node_since_best"),
        rounds=meta["rounds"],
        seconds=[float(s) for s in meta["seconds"]],
    )


# Keys a resumed run may change: how it is shown, how long it goes on, and the
# injected faults and policy (a user intervening in a stopped run).
MAY_CHANGE_ON_RESUME = (
    "resume",
    "progress",
    "checkpoint_every",  # how often the file is written, not what the run computes
    "bootstrap",
    "tracker",
    "data_root",
    "backend",
    "strategy.rounds",
    "strategy.patience",
    "strategy.min_nodes",
    "strategy.accept_failures",
    "strategy.finetune_epochs",
)


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def run_identity(config: dict[str, Any] | None, dataset_id: str) -> dict[str, Any]:
    """What must match for a checkpoint to be resumed: the config (less the mutable keys) and data."""
    flat = {
        k: v
        for k, v in _flat(config or {}).items()
        if not any(k == m or k.startswith(m + ".") for m in MAY_CHANGE_ON_RESUME)
    }
    return {"config": flat, "dataset_id": dataset_id}


def check_resumable(stored: dict[str, Any], current: dict[str, Any], path: str | Path) -> None:
    """Raise ``ResumeRefused`` (a ``ValueError``) naming every key that differs from the checkpoint's."""
    if stored.get("dataset_id") != current.get("dataset_id"):
        raise ResumeRefused(
            f"{path}: checkpoint is for dataset {stored.get('dataset_id')}, "
            f"this run's is {current.get('dataset_id')}"
        )
    a, b = stored.get("config", {}), current.get("config", {})
    diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if diff:
        shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in diff[:8])
        raise ResumeRefused(
            f"{path}: cannot resume, the config differs from the checkpoint's ({shown}); "
            "pass the same overrides as the original run"
        )
