"""A Flower message's content as plain Python, and the names both ends agree on; imports no JAX.

The ClientApp module imports only this (and Flower): a deployment starts a new
``flwr-clientapp`` process for every message (``shared/docs/flower_1.42_facts.md``
§3), so every import there is paid per message. The work itself runs in
``node_handlers`` on plain ``Content``: in that process, in a Ray worker of the
simulation engine, or in the node's warm worker (``node_worker``), which receives
``Content`` over a local socket. Array leaves stay as they arrived (an extension
dtype's raw bits under ``<key path>::<dtype>``, see ``records``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, MetricRecord, RecordDict

HELLO = "query.hello"
TRAIN = "train"
FINETUNE = "train.finetune"
VAL_LOSS = "evaluate.val_loss"
STATISTIC = "query.statistic"
PREPARE_STATS = "query.prepare_stats"
PREPARE = "query.prepare"
REDUCE_SUMS = "query.reduce_sums"  # federated PCA of a feature group, round 1 (data/reduce.py)
REDUCE_SCATTER = "query.reduce_scatter"  # round 2
REDUCE_APPLY = "query.reduce_apply"  # the node computes its components
MESSAGE_TYPES = (
    HELLO, TRAIN, FINETUNE, VAL_LOSS, STATISTIC,
    PREPARE_STATS, PREPARE, REDUCE_SUMS, REDUCE_SCATTER, REDUCE_APPLY,
)  # fmt: skip

DATA_DIR_KEY = "data-dir"  # SuperNode --node-config key of the node's own folder (deployment)
NODES_ROOT_KEY = "nodes-root"  # simulation only: the folder of every node's folder (one host)

ARRAYS, CONFIG, METRICS = "arrays", "config", "metrics"


class Part(NamedTuple):
    """One record of a message as plain Python.

    Attributes:
        kind: ``"arrays"`` (name -> ``np.ndarray``), ``"config"`` (name -> scalar, string or list)
            or ``"metrics"`` (name -> number).
        values: The record's entries.
    """

    kind: str
    values: dict[str, Any]


Content = dict[str, Part]  # record name -> part, e.g. {"params": Part("arrays", {...})}


def arrays_record(arrays: Mapping[str, Any]) -> ArrayRecord:
    """A flat name -> array mapping as an ArrayRecord (keys kept as given)."""
    record = ArrayRecord()
    for name, value in arrays.items():
        value = np.asarray(value)
        record[name] = Array(value if value.flags.c_contiguous else value.copy())
    return record


def record_arrays(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Inverse of :func:`arrays_record`."""
    return {name: array.numpy() for name, array in record.items()}


def content_of(records: RecordDict) -> Content:
    """A message's records as plain ``Content`` (arrays as numpy, configs and metrics as dicts)."""
    content: Content = {}
    for name, record in records.items():
        if isinstance(record, ArrayRecord):
            content[name] = Part(ARRAYS, record_arrays(record))
        elif isinstance(record, ConfigRecord):
            content[name] = Part(CONFIG, dict(record))
        elif isinstance(record, MetricRecord):
            content[name] = Part(METRICS, dict(record))
        else:
            raise TypeError(f"record {name!r} is a {type(record).__name__}, which no handler reads")
    return content


def records_of(content: Content) -> RecordDict:
    """Inverse of :func:`content_of`."""
    makers = {ARRAYS: arrays_record, CONFIG: ConfigRecord, METRICS: MetricRecord}
    out = {}
    for name, part in content.items():
        if part.kind not in makers:
            raise ValueError(f"record {name!r} has kind {part.kind!r}; expected one of {sorted(makers)}")
        out[name] = makers[part.kind](part.values)
    return RecordDict(out)
