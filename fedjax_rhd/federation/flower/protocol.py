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

When the use case reduces a feature group (``use_case.reduce``, ``data/reduce.py``), the folder
holds that group's raw values instead of its components (``{part}_group.<group>``, f64[n, d_g],
NaN = missing) and ``reduce.json`` says which encoded columns the components fill. Before
preprocessing, the node answers the two rounds of the federated PCA and then computes its
components itself (``encoded.npz``, read from then on in place of ``raw.npz``'s rows):

==========================  =====================================  ==========================================
``query.reduce_sums``       ``group``                              ``count``, ``sum`` (f64[d_g])
``query.reduce_scatter``    ``group``, ``mean`` (f64[d_g])         ``rows`` (f64 scalar), ``scatter``
                                                                   (f64[d_g, d_g])
``query.reduce_apply``      ``mean.<group>``, ``basis.<group>``    ``metrics``: rows reduced
                            (f64[d_g, k]) for every kept group
==========================  =====================================  ==========================================
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from fedjax_rhd.data import reduce
from fedjax_rhd.data.federated import EncodedRows, masked, pack_rows
from fedjax_rhd.data.preprocess import Preprocessor, node_statistics
from fedjax_rhd.federation.flower.wire import (  # noqa: F401  (the message names live in wire)
    DATA_DIR_KEY,
    FINETUNE,
    HELLO,
    NODES_ROOT_KEY,
    PREPARE,
    PREPARE_STATS,
    REDUCE_APPLY,
    REDUCE_SCATTER,
    REDUCE_SUMS,
    STATISTIC,
    TRAIN,
    VAL_LOSS,
)
from fedjax_rhd.federation.node_tasks import NodeRows
from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, DPConfig, ServerConfig
from fedjax_rhd.typing import NodeData

NODE_ARRAYS = "node.npz"  # packed by the node itself (query.prepare)
RAW_ARRAYS = "raw.npz"  # encoded, not standardised: what the run gives the node
NODE_META = "node.json"
REDUCE_LAYOUT = "reduce.json"  # with use_case.reduce: the groups the node reduces and where they go
REDUCED_ARRAYS = "encoded.npz"  # raw.npz's rows with the components the node computed (query.reduce_apply)
GROUP_KEY = "group."  # raw.npz key of a part's raw group values: ``<part>_group.<group>``


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
        dp=DPConfig(**raw.get("dp", {})),
    )


@dataclasses.dataclass(frozen=True)
class NodeMeta:
    """What the manager may know of a node: its name, partition and row counts (``query.hello``)."""

    name: str
    partition_id: int
    n_train: int
    n_val: int


class GroupLayout(NamedTuple):
    """A feature group the node reduces itself (``reduce.json``).

    Attributes:
        group: the group's name (``wsi``, ``pet``).
        columns: the group's raw columns, in the order of its stored values (d_g).
        index: the encoded columns its components fill, first component first (k).
    """

    group: str
    columns: tuple[str, ...]
    index: tuple[int, ...]


def write_node_folder(
    folder: Path,
    meta: NodeMeta,
    parts: dict[str, EncodedRows],
    groups: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    layout: Sequence[GroupLayout] = (),
) -> Path:
    """Write one node's encoded rows (``train``, ``val``, optionally ``test``) and metadata into ``folder``.

    The node reads nothing else; it packs these rows itself once preprocessing is fitted.

    Args:
        folder: the node's folder (created).
        meta: its name, partition and row counts.
        parts: each part's encoded rows, in ``patient_id`` order.
        groups: with reductions, per part the raw values of each group in ``layout`` (f64[n, d_g]).
        layout: the reduced groups; their component columns are left out of the stored rows, since
            the node computes them from ``groups`` (``query.reduce_apply``).

    Raises:
        ValueError: ``layout`` without ``groups``.
    """
    if layout and groups is None:
        raise ValueError(f"{folder}: the reduced groups {[g.group for g in layout]} need their raw values")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    keep = None
    if layout:
        width = next(iter(parts.values())).values.shape[1]
        keep = np.ones(width, dtype=bool)
        keep[[j for g in layout for j in g.index]] = False
    arrays: dict[str, np.ndarray] = {}
    for part, rows in parts.items():
        for k, v in rows._asdict().items():
            v = np.asarray(v)
            arrays[f"{part}_{k}"] = v[:, keep] if keep is not None and v.ndim == 2 else v
        for g in layout:
            arrays[f"{part}_{GROUP_KEY}{g.group}"] = np.asarray(groups[part][g.group], dtype=np.float64)
    np.savez(folder / RAW_ARRAYS, **arrays)
    (folder / NODE_META).write_text(json.dumps(dataclasses.asdict(meta)))
    if layout:
        (folder / REDUCE_LAYOUT).write_text(json.dumps([g._asdict() for g in layout]))
    else:
        (folder / REDUCE_LAYOUT).unlink(missing_ok=True)
    # computed by the node: its components (query.reduce_apply), its packed rows (query.prepare)
    (folder / REDUCED_ARRAYS).unlink(missing_ok=True)
    (folder / NODE_ARRAYS).unlink(missing_ok=True)
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
    """The node's encoded parts by name (``train``, ``val`` and ``test`` where present).

    With reduced groups, the rows completed with the node's own components (``query.reduce_apply``).

    Raises:
        FileNotFoundError: the rows are missing, or the node has not computed its components yet.
    """
    folder = Path(folder)
    if read_layout(folder):
        path = folder / REDUCED_ARRAYS
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: the node has not computed its reduced groups' components yet (query.reduce_apply)"
            )
    else:
        path = folder / RAW_ARRAYS
    return _read_rows(path)


def _read_rows(path: Path) -> dict[str, EncodedRows]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the node's rows are missing (was its folder written?)")
    with np.load(path) as npz:
        names = sorted({name.split("_", 1)[0] for name in npz.files})
        return {part: EncodedRows(**{k: npz[f"{part}_{k}"] for k in EncodedRows._fields}) for part in names}


def read_layout(folder: Path) -> tuple[GroupLayout, ...]:
    """The feature groups this node reduces itself (none without ``reduce.json``)."""
    path = Path(folder) / REDUCE_LAYOUT
    if not path.is_file():
        return ()
    return tuple(
        GroupLayout(g["group"], tuple(g["columns"]), tuple(int(j) for j in g["index"]))
        for g in json.loads(path.read_text())
    )


def read_group(folder: Path, group: str) -> dict[str, np.ndarray]:
    """The node's raw values of ``group`` per part (f64[n, d_g], NaN = missing, patient_id order).

    Raises:
        KeyError: the folder holds no such group (e.g. written for a run without the reduction).
    """
    path = Path(folder) / RAW_ARRAYS
    if group not in {g.group for g in read_layout(folder)}:
        raise KeyError(f"{path}: this node's folder holds no raw values of feature group {group!r}")
    suffix = f"_{GROUP_KEY}{group}"
    with np.load(path) as npz:
        return {name[: -len(suffix)]: npz[name] for name in npz.files if name.endswith(suffix)}


def node_reduction_sums(folder: Path, group: str, min_cell_count: int = 0) -> dict[str, np.ndarray]:
    """Round 1 of the federated PCA: per column of ``group``, the count and sum of its training values
    (as ``reduce.released_group`` releases them)."""
    count, total = reduce.node_sums(reduce.released_group(read_group(folder, group)["train"], min_cell_count))
    return {"count": count, "sum": total}


def node_reduction_scatter(
    folder: Path, group: str, mean: np.ndarray, min_cell_count: int = 0
) -> dict[str, np.ndarray]:
    """Round 2: the training rows with any value in ``group`` and their scatter matrix around ``mean``."""
    values = reduce.released_group(read_group(folder, group)["train"], min_cell_count)
    rows, scatter = reduce.node_scatter(values, mean)
    return {"rows": np.float64(rows), "scatter": scatter}


def reduce_node_folder(
    folder: Path, fits: Mapping[str, tuple[np.ndarray, np.ndarray]]
) -> dict[str, EncodedRows]:
    """Project every part's raw group values on the fitted axes and write the completed rows.

    The components go where ``reduce.json`` says, encoded as ``preprocess.encode`` encodes a
    continuous column (0 and unobserved where a row has no value in the group), so the rows
    equal the data layer's ``FederatedData.encoded``.

    Args:
        folder: the node's folder.
        fits: group -> ``(mean f64[d_g], basis f64[d_g, k])``, for every group the node reduces.

    Returns:
        The completed parts (also written to ``encoded.npz``).

    Raises:
        ValueError: ``fits`` names other groups than the folder's, or a basis of the wrong shape.
    """
    folder = Path(folder)
    layout = read_layout(folder)
    if set(fits) != {g.group for g in layout}:
        raise ValueError(
            f"{folder}: the node reduces groups {sorted(g.group for g in layout)}, got {sorted(fits)}"
        )
    raw = _read_rows(folder / RAW_ARRAYS)
    width = next(iter(raw.values())).values.shape[1] + sum(len(g.index) for g in layout)
    keep = np.ones(width, dtype=bool)
    keep[[j for g in layout for j in g.index]] = False
    groups = {g.group: read_group(folder, g.group) for g in layout}
    out = {}
    for part, rows in raw.items():
        values = np.zeros((rows.values.shape[0], width))
        observed = np.zeros((rows.values.shape[0], width), dtype=bool)
        values[:, keep], observed[:, keep] = rows.values, rows.observed
        for g in layout:
            mean, basis = fits[g.group]
            if np.shape(basis) != (len(g.columns), len(g.index)):
                raise ValueError(
                    f"{folder}: group {g.group!r} needs a basis of shape {(len(g.columns), len(g.index))}, "
                    f"got {np.shape(basis)}"
                )
            scores = reduce.project(groups[g.group][part], mean, basis)
            present = ~np.isnan(scores)
            values[:, list(g.index)], observed[:, list(g.index)] = np.where(present, scores, 0.0), present
        out[part] = rows._replace(values=values, observed=observed)
    arrays = {f"{part}_{k}": np.asarray(v) for part, rows in out.items() for k, v in rows._asdict().items()}
    _write_atomic(folder / REDUCED_ARRAYS, arrays)
    return out


def _write_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to a name
        np.savez(f, **arrays)
    tmp.replace(path)  # atomic: a concurrent reader sees the old file or the new


def prepare_node_folder(
    folder: Path,
    prep: Preprocessor,
    pads: dict[str, int | None],
    *,
    test_prep: Preprocessor | None = None,
    test_unseen: np.ndarray | None = None,
) -> NodeRows:
    """Standardise, impute and pack the node's parts into ``node.npz`` (``pads``: rows per part or None).

    The test part (real centres) is packed with ``test_prep`` (default ``prep``) and the columns
    ``test_unseen`` unobserved: how the model it scores (the main one) reads rows
    (``FederatedData.main_test_packing``).
    """
    parts = read_encoded(folder)
    packed = {
        name: pack_rows(rows, prep, pads.get(name))
        if name != "test"
        else pack_rows(masked(rows, test_unseen), test_prep or prep, pads.get(name))
        for name, rows in parts.items()
    }
    arrays = {
        f"{part}_{k}": np.asarray(v) for part, data in packed.items() for k, v in data._asdict().items()
    }
    _write_atomic(Path(folder) / NODE_ARRAYS, arrays)
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


def node_preprocessing_statistics(
    folder: Path, ranges: np.ndarray, min_cell_count: int = 0
) -> dict[str, np.ndarray]:
    """What a node sends for federated preprocessing: moments and histogram of its training rows,
    released by the data layer's own ``node_statistics`` (small cells coarsened below ``min_cell_count``)."""
    train = read_encoded(folder)["train"]
    moments, histogram = node_statistics(train.values, train.observed, ranges, min_cell_count)
    return {**moments._asdict(), "histogram": histogram}


def config_values(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with numpy scalars as Python scalars (ConfigRecord and MetricRecord refuse numpy types)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out
