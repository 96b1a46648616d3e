"""What a finished run keeps so that its models can score other patients: ``scoring.json`` + ``scoring.npz``.

A trained model is more than its parameters: new rows must be encoded with the run's own
feature reduction (``use_case.reduce``: each group's federated mean and principal axes) and
preprocessing (the federated centre, scale and imputation value of every encoded column),
and a Cox-type model's survival curves need its Breslow baseline, built from the nodes'
counts. The run writes all of it once, at its end, next to ``params.npz``:

* ``scoring.json``: the guide the model was trained on (name, use case, version, layers and
  its feature schema, :func:`harmonize.identity.features_card`), the training dataset, the
  reductions' groups and columns, the encoded columns, the node names, and every model with
  a plain name, what it is, where its parameters are in ``params.npz`` and which nodes'
  rows build its baseline.
* ``scoring.npz``: the arrays: preprocessing (``prep/center``, ``prep/scale``, ``prep/fill``; under
  ``strategy=local`` also each node's own, ``prep/nodes/<k>/center`` ... and ``unseen``, the
  columns of the layers it never measured, and ``scoring.json`` says ``"preprocessing": "per_node"``),
  each reduction (``reduce/<i>/mean``, ``basis``, ``eigenvalues``) and what evaluation asked of
  the nodes (``nodes/max_time``, ``nodes/grid_counts/<field>``, one row per node; for Cox-type
  models ``breslow/<model>/events`` and ``at_risk``, one row per node of its baseline, listed in
  ``breslow/<model>/nodes``).

Nothing here is a patient row: the node statistics are the ones the manager already receives
during evaluation (``docs/privacy.md``). They are recorded by wrapping the backend
(:class:`Recorder`) while the evaluation functions themselves ask for them, and replayed at
scoring time (:class:`RecordedNodes`), so a run's own test rows score to the same bits.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from fedjax_rhd.data import FederatedData
from fedjax_rhd.data.preprocess import Preprocessor
from fedjax_rhd.data.reduce import GroupReduction
from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.io import save_npz
from fedjax_rhd.metrics import ipcw
from fedjax_rhd.metrics.evaluation import GRID_POINTS, NUM_TIMES, baseline_hazard, shared_censoring
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from harmonize.guide import Guide
from harmonize.identity import atomic_write_text, features_card

MANIFEST_FILE = "scoring.json"
ARRAYS_FILE = "scoring.npz"
FORMAT = "fedjax_rhd/scoring/v1"


class ModelEntry(NamedTuple):
    """One model a run can score with."""

    name: str  # plain name: "global", "centralised", "node1", "node1_local", "node1_finetuned"
    description: str  # what it is, in words
    params: str  # "global", "nodes/<k>" or "finetuned/<k>" in params.npz
    baseline_nodes: tuple[int, ...]  # nodes whose rows build its Breslow baseline
    main: bool  # the model results.json's headline metrics score

    def to_json(self) -> dict[str, Any]:
        return {**self._asdict(), "baseline_nodes": list(self.baseline_nodes)}


def run_models(
    algorithm: str, node_names: Sequence[str], has_global: bool, finetuned: bool
) -> list[ModelEntry]:
    """Every model a run holds, named plainly (the main one first, as ``results.json`` scores it).

    The baselines follow ``results.py``: the global model's from every node; a node's model
    from that node's rows (the rows it last trained on); the pooled model's from its one node.
    """
    all_nodes = tuple(range(len(node_names)))
    if algorithm == "centralized":
        return [
            ModelEntry(
                "centralised", "the centralised model (every node's rows pooled)", "nodes/0", (0,), True
            )
        ]
    if algorithm == "local" or not has_global:
        return [
            ModelEntry(
                f"{n}_local", f"{n}'s own model (trained on {n}'s rows alone)", f"nodes/{k}", (k,), k == 0
            )
            for k, n in enumerate(node_names)
        ]
    models = [ModelEntry("global", "the final global model of the federation", "global", all_nodes, True)]
    models += [
        ModelEntry(n, f"{n}'s model at the end of federation (the global model after its last local update)",
                   f"nodes/{k}", (k,), False)
        for k, n in enumerate(node_names)
    ]  # fmt: skip
    if finetuned:
        models += [
            ModelEntry(
                f"{n}_finetuned", f"the global model fine-tuned on {n}'s rows", f"finetuned/{k}", (k,), False
            )
            for k, n in enumerate(node_names)
        ]
    return models


class Recorder:
    """A backend's ``node_statistic`` passed through and written down (what evaluation asked for)."""

    def __init__(self, backend: Backend) -> None:
        self._backend = backend
        self.answers: dict[str, list[dict[str, np.ndarray]]] = {}

    @property
    def node_names(self) -> tuple[str, ...]:
        return self._backend.node_names

    def node_statistic(
        self, name: str, inputs: dict[str, np.ndarray], params: Any = None, nodes: Sequence[int] | None = None
    ) -> list[dict[str, np.ndarray]]:
        answer = self._backend.node_statistic(name, inputs, params, nodes)
        self.answers[name] = [{k: np.asarray(v) for k, v in a.items()} for a in answer]
        return answer


class RecordedNodes:
    """The nodes as a run recorded them: ``node_statistic`` answers from ``scoring.npz``.

    Implements ``metrics.evaluation.NodeStatistics`` for one model (its Breslow counts), so
    ``survival_metrics`` computes on a scorer's rows what it computed on the run's nodes.
    """

    def __init__(self, node_names: Sequence[str], arrays: dict[str, np.ndarray], model: str) -> None:
        self._names = tuple(node_names)
        self._arrays = arrays
        self._model = model

    @property
    def node_names(self) -> tuple[str, ...]:
        return self._names

    def node_statistic(
        self, name: str, inputs: dict[str, np.ndarray], params: Any = None, nodes: Sequence[int] | None = None
    ) -> list[dict[str, np.ndarray]]:
        del params  # the recorded counts belong to this object's model
        chosen = range(len(self._names)) if nodes is None else nodes
        a = self._arrays
        if name == "max_time":
            return [{"max_time": a["nodes/max_time"][k]} for k in chosen]
        if "grid" in inputs and not np.array_equal(np.asarray(inputs["grid"]), self.grid()):
            raise ValueError("the evaluation grid differs from the one the run recorded")
        if name == "grid_counts":
            return [{f: a[f"nodes/grid_counts/{f}"][k] for f in ipcw.GridCounts._fields} for k in chosen]
        if name == "breslow_counts":
            key = f"breslow/{self._model}"
            recorded = [int(k) for k in a.get(f"{key}/nodes", [])]
            if any(k not in recorded for k in chosen):
                raise ValueError(
                    f"the run recorded {self._model!r}'s Breslow counts on nodes {recorded} only"
                )
            at = [recorded.index(k) for k in chosen]
            return [{"events": a[f"{key}/events"][i], "at_risk": a[f"{key}/at_risk"][i]} for i in at]
        raise ValueError(f"a scorer has no node statistic {name!r}: only what the run recorded")

    def grid(self) -> np.ndarray:
        return ipcw.time_grid(float(np.max(self._arrays["nodes/max_time"])), int(self._arrays["grid_points"]))


def _stack(answers: list[dict[str, np.ndarray]], field: str) -> np.ndarray:
    return np.stack([np.asarray(a[field]) for a in answers])


def evaluation_arrays(
    spec: AlgorithmSpec, backend: Backend, models: Sequence[ModelEntry], params: dict[str, Any]
) -> dict[str, np.ndarray]:
    """The node statistics evaluation asks for, asked once more and recorded (see module doc).

    Args:
        spec: the run's algorithm spec.
        backend: the federation's nodes.
        models: :func:`run_models`.
        params: ``params.npz``'s tree (``global``, ``nodes``, ``finetuned``), stacked over nodes.
    """
    rec = Recorder(backend)
    grid, _, _ = shared_censoring(rec, GRID_POINTS)
    arrays = {
        "grid_points": np.asarray(GRID_POINTS),
        "nodes/max_time": _stack(rec.answers["max_time"], "max_time"),
    }
    arrays.update(
        {f"nodes/grid_counts/{f}": _stack(rec.answers["grid_counts"], f) for f in ipcw.GridCounts._fields}
    )
    if build_model(spec).survival is None:  # Cox-type: each model's baseline counts from its baseline nodes
        for m in models:
            baseline_hazard(rec, model_params(params, m.params), grid, m.baseline_nodes)
            arrays[f"breslow/{m.name}/nodes"] = np.asarray(m.baseline_nodes, dtype=np.int64)
            arrays[f"breslow/{m.name}/events"] = _stack(rec.answers["breslow_counts"], "events")
            arrays[f"breslow/{m.name}/at_risk"] = _stack(rec.answers["breslow_counts"], "at_risk")
    return arrays


def model_params(params: dict[str, Any], where: str) -> Any:
    """One model's parameters from ``params.npz``'s tree: ``"global"`` or ``"<stack>/<k>"``."""
    if "/" not in where:
        return params[where]
    stack, k = where.split("/")
    return jax.tree.map(lambda p: np.asarray(p)[int(k)], params[stack])  # host: no eager slice programs


def write_scoring_state(
    output_dir: Path,
    *,
    guide_name: str,
    guide: Guide,
    card: dict[str, Any],
    data: FederatedData,
    spec: AlgorithmSpec,
    backend: Backend,
    params: dict[str, Any],
    score_name: str,
) -> Path:
    """Write ``scoring.json`` and ``scoring.npz`` (module doc) into ``output_dir``; return the manifest.

    Args:
        guide_name: what the run loaded (``use_case.guide_name``, a layer included).
        guide: that guide, before any reduction (the schema a scored dataset must match).
        card: the training dataset's card.
        data: the run's federated data (its preprocessing and reductions).
        params: the tree ``params.npz`` holds.
        score_name: the use case's clinical score on the training dataset ("" for none).
    """
    models = run_models(spec.algorithm, data.node_names, "global" in params, "finetuned" in params)
    arrays = evaluation_arrays(spec, backend, models, params)
    prep = data.preprocessor
    arrays.update({"prep/center": prep.center, "prep/scale": prep.scale, "prep/fill": prep.fill})
    for k, (own, unseen) in enumerate(zip(data.node_preprocessors, data.node_unseen, strict=True)):
        # strategy=local: node k's model reads rows through node k's own statistics and layers
        arrays.update({f"prep/nodes/{k}/{f}": getattr(own, f) for f in ("center", "scale", "fill")})
        arrays[f"prep/nodes/{k}/unseen"] = np.asarray(unseen, dtype=np.uint8)
    for i, r in enumerate(data.reductions):
        arrays.update(
            {
                f"reduce/{i}/mean": r.mean,
                f"reduce/{i}/basis": r.basis,
                f"reduce/{i}/eigenvalues": r.eigenvalues,
            }
        )
    save_npz(output_dir / ARRAYS_FILE, arrays)
    manifest = {
        "format": FORMAT,
        "guide": {
            "name": guide_name,
            "use_case": guide.use_case,
            "version": guide.version,
            "layers": list(guide.layers),
            "features": features_card(guide),
        },
        "dataset": {"id": card["id"], "name": card["name"]},
        "reductions": [
            {"group": r.group, "components": r.components, "columns": list(r.columns), "n_rows": r.n_rows}
            for r in data.reductions
        ],
        "encoded_columns": list(prep.columns),
        "preprocessing": "per_node" if data.isolated else "federated",
        "nodes": list(data.node_names),
        "models": [m.to_json() for m in models],
        "evaluation": {"grid_points": GRID_POINTS, "num_times": NUM_TIMES},
        "clinical_score": score_name,
        "arrays": ARRAYS_FILE,
    }
    path = output_dir / MANIFEST_FILE
    atomic_write_text(path, json.dumps(manifest, indent=1))
    return path


def preprocessor(manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> Preprocessor:
    """The run's fitted preprocessing, bit for bit."""
    return Preprocessor(
        columns=tuple(manifest["encoded_columns"]),
        center=arrays["prep/center"],
        scale=arrays["prep/scale"],
        fill=arrays["prep/fill"],
    )


def node_preprocessors(
    manifest: dict[str, Any], arrays: dict[str, np.ndarray]
) -> tuple[tuple[Preprocessor, np.ndarray], ...]:
    """Per node, its own preprocessing and bool[d] unseen columns (``strategy=local``); () otherwise."""
    if manifest.get("preprocessing", "federated") != "per_node":
        return ()
    columns = tuple(manifest["encoded_columns"])
    return tuple(
        (
            Preprocessor(columns, *(arrays[f"prep/nodes/{k}/{f}"] for f in ("center", "scale", "fill"))),
            arrays[f"prep/nodes/{k}/unseen"].astype(bool),
        )
        for k in range(len(manifest["nodes"]))
    )


def reductions(manifest: dict[str, Any], arrays: dict[str, np.ndarray]) -> tuple[GroupReduction, ...]:
    """The run's fitted feature-group reductions, in the order they were applied."""
    return tuple(
        GroupReduction(
            r["group"],
            int(r["components"]),
            tuple(r["columns"]),
            arrays[f"reduce/{i}/mean"],
            arrays[f"reduce/{i}/basis"],
            arrays[f"reduce/{i}/eigenvalues"],
            int(r["n_rows"]),
        )  # fmt: skip
        for i, r in enumerate(manifest["reductions"])
    )
