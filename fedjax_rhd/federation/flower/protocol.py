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

A node's rows live in its own folder: ``raw.npz``, its rows encoded but not
standardised (``write_node_folder``). Preprocessing is federated: each node sends
``query.prepare_stats`` (per-column moments and histograms of its training rows),
the manager merges them (``data.preprocess.fit_from_statistics``) and sends the
fitted centre, scale and fill with ``query.prepare``; the node then packs its own
rows into ``node.npz`` exactly as the simulator packs them (same padding, same
order), so both backends run the same arrays. A real centre (``split=natural``)
also holds its own test part (unpadded), which it scores itself
(``query.statistic`` ``test_summary``: federated evaluation).

==========================  =====================================  ==========================================
``query.prepare_stats``     ``ranges`` (the guide's column ranges)  ``count``, ``mean``, ``m2`` (f64[d]),
                                                                   ``histogram`` (f64[d, 4096])
``query.prepare``           ``center``, ``scale``, ``fill``, pads   ``metrics``: rows packed
==========================  =====================================  ==========================================
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from fedjax_rhd.data.federated import EncodedRows, pack_rows
from fedjax_rhd.data.preprocess import Preprocessor, node_histogram, node_moments
from fedjax_rhd.federation.flower.wire import (  # noqa: F401  (the message names live in wire)
    DATA_DIR_KEY,
    FINETUNE,
    HELLO,
    NODES_ROOT_KEY,
    PREPARE,
    PREPARE_STATS,
    STATISTIC,
    TRAIN,
    VAL_LOSS,
)
from fedjax_rhd.federation.node_tasks import NodeRows
from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, ServerConfig
from fedjax_rhd.typing import NodeData

NODE_ARRAYS = "node.npz"  # packed by the node itself (query.prepare)
RAW_ARRAYS = "raw.npz"  # encoded, not standardised: what the run gives the node
NODE_META = "node.json"


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


def write_node_folder(folder: Path, meta: NodeMeta, parts: dict[str, EncodedRows]) -> Path:
    """Write one node's encoded rows (``train``, ``val``, optionally ``test``) and metadata into ``folder``.

    The node reads nothing else; it packs these rows itself once preprocessing is fitted.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {f"{part}_{k}": np.asarray(v) for part, rows in parts.items() for k, v in rows._asdict().items()}
    np.savez(folder / RAW_ARRAYS, **arrays)
    (folder / NODE_META).write_text(json.dumps(dataclasses.asdict(meta)))
    (folder / NODE_ARRAYS).unlink(missing_ok=True)  # packed by the node, after federated preprocessing
    return folder


def read_meta(folder: Path) -> NodeMeta:
    """The node's name, partition and row counts.

    Raises:
        FileNotFoundError: the folder has no ``node.json`` (named in the message).
    """
    path = Path(folder) / NODE_META
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the node's metadata is missing (was its folder written?)")
    return NodeMeta(**json.loads(path.read_text()))


def read_encoded(folder: Path) -> dict[str, EncodedRows]:
    """The node's encoded parts by name (``train``, ``val`` and ``test`` where present)."""
    path = Path(folder) / RAW_ARRAYS
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the node's rows are missing (was its folder written?)")
    with np.load(path) as npz:
        names = sorted({name.split("_", 1)[0] for name in npz.files})
        return {part: EncodedRows(**{k: npz[f"{part}_{k}"] for k in EncodedRows._fields}) for part in names}


def prepare_node_folder(folder: Path, prep: Preprocessor, pads: dict[str, int | None]) -> NodeRows:
    """Standardise, impute and pack the node's parts into ``node.npz`` (``pads``: rows per part or None)."""
    parts = read_encoded(folder)
    packed = {name: pack_rows(rows, prep, pads.get(name)) for name, rows in parts.items()}
    arrays = {
        f"{part}_{k}": np.asarray(v) for part, data in packed.items() for k, v in data._asdict().items()
    }
    tmp = Path(folder) / f".{NODE_ARRAYS}.tmp"
    with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **arrays)
    tmp.replace(Path(folder) / NODE_ARRAYS)  # atomic: a concurrent reader sees the old file or the new
    return NodeRows(packed["train"], packed["val"], packed.get("test"))


def read_node_folder(folder: Path) -> tuple[NodeMeta, NodeRows]:
    """``(meta, rows)`` of the node whose folder this is, as packed by ``query.prepare``.

    Raises:
        FileNotFoundError: the folder lacks ``node.json`` or the packed ``node.npz`` (named).
    """
    folder = Path(folder)
    meta = read_meta(folder)
    if not (folder / NODE_ARRAYS).is_file():
        raise FileNotFoundError(f"{folder / NODE_ARRAYS}: the node's rows are not packed yet (query.prepare)")
    with np.load(folder / NODE_ARRAYS) as npz:
        parts = {
            part: NodeData(**{k: npz[f"{part}_{k}"] for k in NodeData._fields})
            if f"{part}_x" in npz.files
            else None
            for part in ("train", "val", "test")
        }
    return meta, NodeRows(**parts)


def node_preprocessing_statistics(folder: Path, ranges: np.ndarray) -> dict[str, np.ndarray]:
    """What a node sends for federated preprocessing: moments and histogram of its training rows."""
    train = read_encoded(folder)["train"]
    moments = node_moments(train.values, train.observed)
    return {**moments._asdict(), "histogram": node_histogram(train.values, train.observed, ranges)}


def config_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with numpy scalars as Python scalars (ConfigRecord and MetricRecord refuse numpy types)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
