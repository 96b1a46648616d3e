"""What a node does with each message under ``backend=flower``, on plain ``wire.Content``.

Each handler runs the same pure function the simulator vmaps (the strategy's
``client_update``, the model's loss, fine-tuning, a node statistic) on this
node's own rows, jitted once per algorithm. The callers are the ClientApp (in a
Ray worker of Flower's simulation engine, or in the per-message
``flwr-clientapp`` process of a deployment) and the node's warm worker
(``node_worker``), so nothing lives in a closure: the node's rows and the
compiled functions sit in module-level caches, keyed by the node's folder (and
its packed file's modification time) and by the algorithm.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from fedjax_rhd.data import small_cells
from fedjax_rhd.data.preprocess import Preprocessor
from fedjax_rhd.federation.flower import protocol, wire
from fedjax_rhd.federation.flower.records import from_flat, to_flat, wrap_key
from fedjax_rhd.federation.flower.wire import ARRAYS, CONFIG, METRICS, Content, Part
from fedjax_rhd.federation.node_tasks import (
    NODE_STATISTICS,
    NodeRows,
    finetune_node,
    node_update,
    node_val_loss,
)
from fedjax_rhd.jax_setup import enable_compilation_cache
from fedjax_rhd.strategies import AlgorithmSpec, build_model

# A deployment without a warm worker starts a new process per message: without the persistent
# cache every message would compile the node's functions again.
enable_compilation_cache()


@functools.lru_cache(maxsize=8)
def _spec(text: str) -> AlgorithmSpec:
    return protocol.spec_from_json(text)


@functools.lru_cache(maxsize=8)
def _params_template(spec: AlgorithmSpec) -> Any:
    # shapes and dtypes only: nothing is initialised
    return jax.eval_shape(build_model(spec).init, jax.random.key(0))


def _node_rows(folder: Path) -> NodeRows:
    # keyed by the packed file's mtime: a worker that outlives one run never serves stale rows
    return _packed_rows(str(folder), (folder / protocol.NODE_ARRAYS).stat().st_mtime_ns)[1]


@functools.lru_cache(maxsize=4)
def _packed_rows(folder: str, mtime_ns: int) -> tuple[protocol.NodeMeta, NodeRows]:
    del mtime_ns
    return protocol.read_node_folder(Path(folder))


def _config(content: Content) -> dict[str, Any]:
    return content["config"].values


def _arrays(content: Content, name: str) -> dict[str, np.ndarray]:
    return content[name].values


def _params(content: Content, spec: AlgorithmSpec) -> Any:
    return from_flat(_arrays(content, "params"), _params_template(spec))


def _key(content: Content) -> jax.Array:
    return wrap_key(_arrays(content, "key")["key"])


def hello(folder: Path, content: Content) -> Content:
    """Name, partition and row counts of this node (the manager maps Flower's node ids with it)."""
    del content
    meta = protocol.read_meta(folder)
    return {"meta": Part(CONFIG, protocol.config_values(vars(meta)))}


def prepare_stats(folder: Path, content: Content) -> Content:
    """Moments and histograms of this node's encoded training rows (federated preprocessing)."""
    inputs = _arrays(content, "inputs")
    stats = protocol.node_preprocessing_statistics(
        folder, inputs["ranges"], small_cells.min_cell_count(inputs)
    )
    return {"outputs": Part(ARRAYS, stats)}


def prepare(folder: Path, content: Content) -> Content:
    """Pack this node's rows with the preprocessing sent (centre, scale, fill) and padding.

    The federation's preprocessing, or under ``strategy=local`` this node's own; its own test part
    (real centres) with ``test_*`` when sent: the main model's preprocessing and unseen columns.
    """
    inputs, config = _arrays(content, "inputs"), _config(content)
    prep = Preprocessor(columns=(), center=inputs["center"], scale=inputs["scale"], fill=inputs["fill"])
    test_prep, unseen = prep, None
    if "test_center" in inputs:
        test_prep = Preprocessor(
            columns=(), center=inputs["test_center"], scale=inputs["test_scale"], fill=inputs["test_fill"]
        )
        unseen = np.asarray(inputs["test_unseen"], dtype=bool)
    pads = {"train": int(config["pad_train"]), "val": int(config["pad_val"]), "test": None}
    rows = protocol.prepare_node_folder(folder, prep, pads, test_prep=test_prep, test_unseen=unseen)
    return {"metrics": Part(METRICS, {"rows": int(rows.train.x.shape[0])})}


def reduce_sums(folder: Path, content: Content) -> Content:
    """Round 1 of a feature group's federated PCA: per column, count and sum of its training values."""
    k = small_cells.min_cell_count(_arrays(content, "inputs"))
    stats = protocol.node_reduction_sums(folder, str(_config(content)["group"]), k)
    return {"outputs": Part(ARRAYS, stats)}


def reduce_scatter(folder: Path, content: Content) -> Content:
    """Round 2: the group's scatter matrix (d_g x d_g) of its training rows around the global mean."""
    inputs = _arrays(content, "inputs")
    group, k = str(_config(content)["group"]), small_cells.min_cell_count(inputs)
    return {"outputs": Part(ARRAYS, protocol.node_reduction_scatter(folder, group, inputs["mean"], k))}


def reduce_apply(folder: Path, content: Content) -> Content:
    """Project every part's raw group values on the fitted axes: the node's own component columns."""
    inputs = _arrays(content, "inputs")
    groups = {key.split(".", 1)[1] for key in inputs}
    fits = {g: (inputs[f"mean.{g}"], inputs[f"basis.{g}"]) for g in groups}
    parts = protocol.reduce_node_folder(folder, fits)
    return {"metrics": Part(METRICS, {"rows": sum(int(p.values.shape[0]) for p in parts.values())})}


def train(folder: Path, content: Content) -> Content:
    """One round of local training: the strategy's ``client_update`` on this node's rows."""
    config = _config(content)
    spec = _spec(str(config["spec"]))
    node_input = None  # SCAFFOLD's correction c - c_i, when the strategy sends one
    if "node_input" in content:
        node_input = from_flat(_arrays(content, "node_input"), _params_template(spec))
    result = node_update(spec, _params(content, spec), _node_rows(folder).train, _key(content), node_input)
    metrics = {"num_examples": float(result.num_examples), "train_loss": float(result.metrics["train_loss"])}
    time.sleep(float(config.get("delay", 0.0)))  # injected slowness (backend.delays)
    return {"params": Part(ARRAYS, to_flat(result.params)), "metrics": Part(METRICS, metrics)}


def finetune(folder: Path, content: Content) -> Content:
    """Fine-tune the final global model on this node's training rows (no proximal term)."""
    config = _config(content)
    spec = _spec(str(config["spec"]))
    rows = _node_rows(folder)
    tuned = finetune_node(spec, _params(content, spec), rows.train, _key(content), int(config["epochs"]))
    return {"params": Part(ARRAYS, to_flat(tuned))}


def val_loss(folder: Path, content: Content) -> Content:
    """This node's loss (no dropout) on its own validation rows: one float."""
    spec = _spec(str(_config(content)["spec"]))
    loss = float(node_val_loss(spec, _params(content, spec), _node_rows(folder).val))
    return {"metrics": Part(METRICS, {"val_loss": loss})}


def statistic(folder: Path, content: Content) -> Content:
    """A named statistic of this node's rows (``node_tasks.NODE_STATISTICS``): sums and counts only."""
    config = _config(content)
    spec = _spec(str(config["spec"]))
    params = _params(content, spec) if "params" in content else None
    compute = NODE_STATISTICS[str(config["statistic"])]
    outputs = compute(spec, params, _node_rows(folder), _arrays(content, "inputs"))
    return {"outputs": Part(ARRAYS, {k: np.asarray(v) for k, v in outputs.items()})}


HANDLERS: dict[str, Callable[[Path, Content], Content]] = {
    wire.HELLO: hello,
    wire.PREPARE_STATS: prepare_stats,
    wire.PREPARE: prepare,
    wire.REDUCE_SUMS: reduce_sums,
    wire.REDUCE_SCATTER: reduce_scatter,
    wire.REDUCE_APPLY: reduce_apply,
    wire.TRAIN: train,
    wire.FINETUNE: finetune,
    wire.VAL_LOSS: val_loss,
    wire.STATISTIC: statistic,
}


def handle(message_type: str, folder: Path, content: Content) -> Content:
    """Answer one message for the node whose folder is ``folder``.

    Args:
        message_type: One of ``wire.MESSAGE_TYPES``.
        folder: The node's own folder.
        content: The message's records (``wire.content_of``).

    Returns:
        The reply's records.

    Raises:
        ValueError: An unknown message type.
    """
    if message_type not in HANDLERS:
        raise ValueError(f"no handler for message type {message_type!r}; known: {sorted(HANDLERS)}")
    return HANDLERS[message_type](Path(folder), content)
