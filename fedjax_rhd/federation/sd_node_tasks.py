"""The node half of ``sd_sharing``: sample from the node's own generator, gate the rows on the node.

Synthetic-data sharing (``strategy=sd_sharing``; the manager half is ``fedjax_rhd.sd_sharing``) is
the one protocol in which rows leave a node by design, and only synthetic ones. Its node step,
``sd_share``, is a ``node_tasks.NODE_STATISTICS`` entry, so it runs through ``Backend.node_statistic``:

1. the node draws ``n`` rows from the generator it trained on its own rows (``params``: whatever the
   model's ``GenerativeModel.sample`` takes) with the key ``fold_in(fold_in(key(seed), 2), stream)``;
2. it runs the privacy gate (``synthetic_export.gate_failures``: ``PrivacyThresholds`` on
   ``metrics.synthetic.privacy_metrics``, plus no impossible value) against its **own** rows only:
   members = its training part (the rows its generator was fitted on), non-members = its validation
   part (never in a gradient step or a family count; it only chose the round);
3. it sends the gate's scalar metrics and verdict, and the rows **only if the gate passed**: a
   failed set never crosses the wire.

The rows travel as one array per column (``table_arrays``; continuous and binary values as f64 with
NaN = missing, categorical levels as their index, -1 = missing), so the manager rebuilds exactly the
table the node gated (``arrays_table``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
import polars as pl

from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.metrics.synthetic import PrivacyThresholds, impossible_values, privacy_metrics
from fedjax_rhd.models.tabular import decode_table, table_schema
from fedjax_rhd.strategies import build_model
from harmonize.guide import Guide

if TYPE_CHECKING:
    from fedjax_rhd.federation.node_tasks import NodeRows
    from fedjax_rhd.strategies import AlgorithmSpec
    from fedjax_rhd.typing import NodeData

SAMPLE_PURPOSE = 2  # fold_in tag of synthetic draws (as fedjax_rhd.generative's)
COLUMN = "col:"  # prefix of a row column in the reply (the rest are the gate's scalars)
METRIC = "metric:"  # prefix of a gate metric in the reply


def node_table(part: NodeData, center: np.ndarray, scale: np.ndarray, guide: Guide) -> pl.DataFrame:
    """A node's packed rows (``NodeRows.train`` or ``.val``) back in the guide's schema.

    Unstandardised with the federation's ``center`` and ``scale`` (what every node received);
    unobserved entries become null and padding rows (weight 0) are dropped.
    """
    real = np.asarray(part.weight) > 0
    values = np.asarray(part.x, np.float64)[real] * np.asarray(scale) + np.asarray(center)
    return decode_table(
        values, np.asarray(part.observed, bool)[real], np.asarray(part.time, np.float64)[real],
        np.asarray(part.event, np.float64)[real], table_schema(guide),
    )  # fmt: skip


def table_arrays(table: pl.DataFrame, guide: Guide) -> dict[str, np.ndarray]:
    """One array per column of ``table`` (the guide's features, ``time``, ``event``), exactly invertible."""
    out = {}
    for f in guide.features:
        col = table.get_column(f.name)
        if f.kind == "categorical":
            labels = col.cast(pl.String).to_list()
            index = {level: i for i, level in enumerate(f.levels)}
            out[COLUMN + f.name] = np.asarray([-1 if v is None else index[v] for v in labels], np.int64)
        else:
            out[COLUMN + f.name] = col.cast(pl.Float64).fill_null(np.nan).to_numpy().astype(np.float64)
    out[COLUMN + "time"] = table.get_column("time").cast(pl.Float64).to_numpy().astype(np.float64)
    out[COLUMN + "event"] = table.get_column("event").cast(pl.Int8).to_numpy().astype(np.int64)
    return out


def arrays_table(arrays: Mapping[str, np.ndarray], guide: Guide, id_prefix: str) -> pl.DataFrame:
    """The inverse of :func:`table_arrays`, with a ``patient_id`` ``<id_prefix>000001`` ... first."""
    n = len(arrays[COLUMN + "time"])
    columns = [pl.Series("patient_id", [f"{id_prefix}{i + 1:06d}" for i in range(n)], pl.String)]
    for f in guide.features:
        a = np.asarray(arrays[COLUMN + f.name])
        if f.kind == "categorical":
            labels = [None if i < 0 else f.levels[i] for i in a.tolist()]
            columns.append(pl.Series(f.name, labels, pl.String))
        else:
            s = pl.Series(f.name, a, pl.Float64).fill_nan(None)
            columns.append(s if f.kind == "continuous" else s.cast(pl.Int8))
    columns.append(pl.Series("time", np.asarray(arrays[COLUMN + "time"], np.float64), pl.Float64))
    columns.append(pl.Series("event", np.asarray(arrays[COLUMN + "event"]), pl.Int8))
    return pl.DataFrame(columns)


def thresholds_inputs(thresholds: PrivacyThresholds) -> dict[str, np.ndarray]:
    """The gate's limits as message inputs (``gate:<field>``; NaN = check off)."""
    return {
        f"gate:{name}": np.asarray(np.nan if value is None else value, np.float64)
        for name, value in vars(thresholds).items()
    }


def thresholds_from(inputs: Mapping[str, Any]) -> PrivacyThresholds:
    """The limits :func:`thresholds_inputs` sent."""
    values = {}
    for name in vars(PrivacyThresholds()):
        v = float(inputs[f"gate:{name}"])
        values[name] = None if np.isnan(v) else v
    return PrivacyThresholds(**values)


def gate_report(
    synthetic: pl.DataFrame, members: pl.DataFrame, non_members: pl.DataFrame, guide: Guide
) -> dict[str, Any]:
    """What the node's gate reads: privacy against its own rows, and the impossible values."""
    return {
        "privacy": privacy_metrics(members, synthetic, non_members, guide, seed=0),
        "validity": impossible_values(synthetic, guide),
    }


def sd_share(
    spec: AlgorithmSpec, params: Any, rows: NodeRows, inputs: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """Sample ``n`` rows from the node's generator ``params``, gate them here, send them only if passed.

    Inputs: ``guide`` (the use case's guide: its name or file, which every node holds), ``n``,
    ``seed``, ``stream`` (the node's draw stream), ``center`` and ``scale`` (the federation's
    preprocessing), ``gate:<threshold>`` (:func:`thresholds_inputs`).

    Returns:
        ``passed`` (bool[]), ``n_sampled``, ``n_members``, ``n_non_members``, ``validity_total``,
        ``metric:<name>`` for every numeric privacy metric; and, only when ``passed``, the rows as
        ``col:<column>`` arrays (:func:`table_arrays`).
    """
    from fedjax_rhd.synthetic_export import gate_failures  # imports the metrics room (no cycle at import)

    if params is None:
        raise ValueError("sd_share needs the node's generator")
    guide = cached_guide(str(np.asarray(inputs["guide"])))
    n = int(inputs["n"])
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(int(inputs["seed"])), SAMPLE_PURPOSE),
                             int(inputs["stream"]))  # fmt: skip
    synthetic = build_model(spec).sample(params, key, n)
    center, scale = np.asarray(inputs["center"], np.float64), np.asarray(inputs["scale"], np.float64)
    members = node_table(rows.train, center, scale, guide)
    non_members = node_table(rows.val, center, scale, guide)
    out: dict[str, np.ndarray] = {
        "n_sampled": np.asarray(synthetic.height, np.int64),
        "n_members": np.asarray(members.height, np.int64),
        "n_non_members": np.asarray(non_members.height, np.int64),
    }
    if non_members.height == 0:  # no non-member baseline: the gate cannot judge, so nothing is sent
        return {**out, "passed": np.asarray(False), "validity_total": np.asarray(-1, np.int64)}
    report = gate_report(synthetic, members, non_members, guide)
    passed = not gate_failures(report, thresholds_from(inputs))
    for name, value in report["privacy"].items():
        if isinstance(value, int | float):
            out[METRIC + name] = np.asarray(value, np.float64)
    out["validity_total"] = np.asarray(report["validity"]["total"], np.int64)
    out["passed"] = np.asarray(passed)
    if passed:
        out.update(table_arrays(synthetic, guide))
    return out


STATISTICS = {"sd_share": sd_share}
