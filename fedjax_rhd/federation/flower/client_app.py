"""The Flower ClientApp: one hospital's side of ``backend=flower``.

Each handler runs the same pure function the simulator vmaps (the strategy's
``client_update``, the model's loss, fine-tuning, a node statistic) on this
node's own rows, jitted once per algorithm. Flower's simulation engine pickles
the ClientApp with every message and a deployment starts a new process per
message (``shared/docs/flower_1.42_facts.md`` §2-3), so nothing lives in a
closure: the node's rows and the compiled functions sit in module-level caches
(one per worker process) keyed by the node's folder and the algorithm, and
``app`` is a plain module-level assignment, as Flower's component loader requires.

Where a node's rows are: its ``--node-config data-dir="..."`` in a deployment;
in simulation ``<nodes-root>/<partition-id>`` (``nodes-root`` travels in the
message because ``run_simulation`` gives nodes no other config).
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedjax_rhd.data.preprocess import Preprocessor
from fedjax_rhd.federation.flower import protocol
from fedjax_rhd.federation.flower.records import (
    arrays_record,
    from_record,
    record_arrays,
    to_record,
    wrap_key,
)
from fedjax_rhd.federation.node_tasks import (
    NODE_STATISTICS,
    NodeRows,
    finetune_node,
    node_update,
    node_val_loss,
)
from fedjax_rhd.jax_setup import enable_compilation_cache
from fedjax_rhd.strategies import AlgorithmSpec, build_model

# A deployment starts a new process per message: without the persistent cache every
# message would compile the node's functions again.
enable_compilation_cache()


@functools.lru_cache(maxsize=8)
def _spec(text: str) -> AlgorithmSpec:
    return protocol.spec_from_json(text)


@functools.lru_cache(maxsize=8)
def _params_template(spec: AlgorithmSpec) -> Any:
    # shapes and dtypes only: nothing is initialised
    return jax.eval_shape(build_model(spec).init, jax.random.key(0))


def _node_rows(folder: str) -> tuple[protocol.NodeMeta, NodeRows]:
    # keyed by the packed file's mtime: a worker that outlives one run never serves stale rows
    return _packed_rows(folder, (Path(folder) / protocol.NODE_ARRAYS).stat().st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _packed_rows(folder: str, mtime_ns: int) -> tuple[protocol.NodeMeta, NodeRows]:
    del mtime_ns
    return protocol.read_node_folder(Path(folder))


def _folder(msg: Message, context: Context) -> str:
    node_config = context.node_config
    if protocol.DATA_DIR_KEY in node_config:
        return str(node_config[protocol.DATA_DIR_KEY])
    config = msg.content["config"]
    if protocol.NODES_ROOT_KEY not in config or "partition-id" not in node_config:
        raise ValueError(
            f"this node has no {protocol.DATA_DIR_KEY!r} in its node config and the message names no "
            f"{protocol.NODES_ROOT_KEY!r}: start the SuperNode with "
            f"--node-config '{protocol.DATA_DIR_KEY}=\"...\"'"
        )
    return str(Path(str(config[protocol.NODES_ROOT_KEY])) / str(int(node_config["partition-id"])))


def _params(msg: Message, spec: AlgorithmSpec) -> Any:
    return from_record(msg.content["params"], _params_template(spec))


def _reply(msg: Message, **records: Any) -> Message:
    return Message(RecordDict(records), reply_to=msg)


app = ClientApp()


@app.query("hello")
def hello(msg: Message, context: Context) -> Message:
    """Name, partition and row counts of this node (the manager maps Flower's node ids with it)."""
    meta = protocol.read_meta(Path(_folder(msg, context)))
    return _reply(msg, meta=ConfigRecord(protocol.config_values(vars(meta))))


@app.query("prepare_stats")
def prepare_stats(msg: Message, context: Context) -> Message:
    """Moments and histograms of this node's encoded training rows (federated preprocessing)."""
    ranges = record_arrays(msg.content["inputs"])["ranges"]
    stats = protocol.node_preprocessing_statistics(Path(_folder(msg, context)), ranges)
    return _reply(msg, outputs=arrays_record(stats))


@app.query("prepare")
def prepare(msg: Message, context: Context) -> Message:
    """Pack this node's rows with the federation's preprocessing (centre, scale, fill) and padding."""
    inputs = record_arrays(msg.content["inputs"])
    config = msg.content["config"]
    prep = Preprocessor(columns=(), center=inputs["center"], scale=inputs["scale"], fill=inputs["fill"])
    pads = {"train": int(config["pad_train"]), "val": int(config["pad_val"]), "test": None}
    rows = protocol.prepare_node_folder(Path(_folder(msg, context)), prep, pads)
    return _reply(msg, metrics=MetricRecord({"rows": int(rows.train.x.shape[0])}))


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training: the strategy's ``client_update`` on this node's rows."""
    spec = _spec(str(msg.content["config"]["spec"]))
    _, rows = _node_rows(_folder(msg, context))
    key = wrap_key(record_arrays(msg.content["key"])["key"])
    result = node_update(spec, _params(msg, spec), rows.train, key)
    metrics = {"num_examples": float(result.num_examples), "train_loss": float(result.metrics["train_loss"])}
    time.sleep(float(msg.content["config"].get("delay", 0.0)))  # injected slowness (backend.delays)
    return _reply(msg, params=to_record(result.params), metrics=MetricRecord(metrics))


@app.train("finetune")
def finetune(msg: Message, context: Context) -> Message:
    """Fine-tune the final global model on this node's training rows (no proximal term)."""
    config = msg.content["config"]
    spec = _spec(str(config["spec"]))
    _, rows = _node_rows(_folder(msg, context))
    key = wrap_key(record_arrays(msg.content["key"])["key"])
    tuned = finetune_node(spec, _params(msg, spec), rows.train, key, int(config["epochs"]))
    return _reply(msg, params=to_record(tuned))


@app.evaluate("val_loss")
def val_loss(msg: Message, context: Context) -> Message:
    """This node's loss (no dropout) on its own validation rows: one float."""
    spec = _spec(str(msg.content["config"]["spec"]))
    _, rows = _node_rows(_folder(msg, context))
    loss = float(node_val_loss(spec, _params(msg, spec), rows.val))
    return _reply(msg, metrics=MetricRecord({"val_loss": loss}))


@app.query("statistic")
def statistic(msg: Message, context: Context) -> Message:
    """A named statistic of this node's rows (``node_tasks.NODE_STATISTICS``): sums and counts only."""
    config = msg.content["config"]
    spec = _spec(str(config["spec"]))
    _, rows = _node_rows(_folder(msg, context))
    inputs = record_arrays(msg.content["inputs"])
    params = _params(msg, spec) if "params" in msg.content else None
    outputs = NODE_STATISTICS[str(config["statistic"])](spec, params, rows, inputs)
    return _reply(msg, outputs=arrays_record({k: np.asarray(v) for k, v in outputs.items()}))
