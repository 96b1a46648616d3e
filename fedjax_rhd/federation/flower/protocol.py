"""What the manager and the nodes say to each other under ``backend=flower``, and what a node holds.

Message types (``shared/docs/flower_1.42_facts.md`` §1: ``train``, ``evaluate``
or ``query``, optionally ``.<identifier>``). Every request carries a
``ConfigRecord`` ``config`` with the run's algorithm as JSON (``spec``), so the
run's configuration reaches a node inside the messages, never as a file path:

==========================  =====================================  ==========================================
type                        manager sends                          node replies
==========================  =====================================  ==========================================
``query.hello``             nothing                                ``meta``: its name, n_train, n_val
``train``                   ``params`` (its params), ``key``       ``params`` (updated), ``metrics``:
                                                                   num_examples, train_loss
``train.finetune``          ``params``, ``key``, ``epochs``        ``params`` (fine-tuned)
``evaluate.val_loss``       ``params``                             ``metrics``: val_loss
``query.statistic``         ``inputs`` (arrays), statistic name    ``outputs`` (arrays: sums and counts)
==========================  =====================================  ==========================================

None of these replies is a patient row: parameters, counts, sums and scalar
losses (``docs/privacy.md`` lists each statistic's shape).

A node's rows live in its own folder (``write_node_folder``): the node's
training and validation ``NodeData``, already packed as the simulator packs them
(same padding, same order), so both backends run the same arrays.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from fedjax_rhd.federation.node_tasks import NodeRows
from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, ServerConfig
from fedjax_rhd.typing import NodeData

HELLO = "query.hello"
TRAIN = "train"
FINETUNE = "train.finetune"
VAL_LOSS = "evaluate.val_loss"
STATISTIC = "query.statistic"

NODE_ARRAYS = "node.npz"
NODE_META = "node.json"
DATA_DIR_KEY = "data-dir"  # SuperNode --node-config key of the node's own folder (deployment)
NODES_ROOT_KEY = "nodes-root"  # simulation only: the folder of every node's folder (one host)


def spec_to_json(spec: AlgorithmSpec) -> str:
    """The algorithm as JSON: what a node needs to rebuild the model and its local training."""
    return json.dumps(dataclasses.asdict(spec), sort_keys=True)


def spec_from_json(text: str) -> AlgorithmSpec:
    """Inverse of :func:`spec_to_json` (the configs' own checks run again on the node)."""
    raw = json.loads(text)
    model_config = MODELS[raw["model_name"]].config(**raw["model_config"])
    return AlgorithmSpec(
        algorithm=raw["algorithm"],
        model_name=raw["model_name"],
        model_config=model_config,
        num_features=int(raw["num_features"]),
        client=ClientConfig(**raw["client"]),
        server=ServerConfig(**raw["server"]),
    )


@dataclasses.dataclass(frozen=True)
class NodeMeta:
    """What the manager may know of a node: its name, partition and row counts (``query.hello``)."""

    name: str
    partition_id: int
    n_train: int
    n_val: int


def write_node_folder(folder: Path, meta: NodeMeta, rows: NodeRows) -> Path:
    """Write one node's packed rows and metadata into ``folder`` (created); the node reads nothing else."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for part in ("train", "val", "test"):
        data = getattr(rows, part)
        if data is not None:
            arrays |= {f"{part}_{k}": np.asarray(v) for k, v in data._asdict().items()}
    np.savez(folder / NODE_ARRAYS, **arrays)
    (folder / NODE_META).write_text(json.dumps(dataclasses.asdict(meta)))
    return folder


def read_node_folder(folder: Path) -> tuple[NodeMeta, NodeRows]:
    """``(meta, rows)`` of the node whose folder this is.

    Raises:
        FileNotFoundError: the folder lacks ``node.npz`` or ``node.json`` (named in the message).
    """
    folder = Path(folder)
    for name in (NODE_ARRAYS, NODE_META):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name}: the node's data is missing (was the folder written?)")
    meta = NodeMeta(**json.loads((folder / NODE_META).read_text()))
    with np.load(folder / NODE_ARRAYS) as npz:
        parts = {
            part: NodeData(**{k: npz[f"{part}_{k}"] for k in NodeData._fields})
            if f"{part}_x" in npz.files
            else None
            for part in ("train", "val", "test")
        }
    return meta, NodeRows(**parts)


def config_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with numpy scalars as Python scalars (ConfigRecord and MetricRecord refuse numpy types)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
