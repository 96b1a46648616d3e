"""Experiment trackers behind one interface, chosen by ``tracker=none|wandb|mlflow``.

Per-round metrics are always in ``results.json``, so reports never depend on a
tracker, and a tracker only ever receives copies of numbers the run has already
computed: it cannot change results. A tracker starts when the run starts (before any
data is built or any round trained), so a misconfigured tracker fails the run at once
with a message saying what to change, never after an hour of training.

The concrete trackers import their libraries lazily (``fedjax_rhd.trackers``); wandb
is a dependency, MLflow an optional extra.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from fedjax_rhd.typing import Tracker

# name -> "module:class", imported only when chosen.
TRACKERS = {
    "none": "fedjax_rhd.tracking:NoTracker",
    "wandb": "fedjax_rhd.trackers.wandb_tracker:WandbTracker",
    "mlflow": "fedjax_rhd.trackers.mlflow_tracker:MlflowTracker",
}


WANDB_MODES = ("offline", "online", "disabled")


class TrackerStartError(RuntimeError):
    """The chosen tracker could not start; raised before any training."""


@dataclasses.dataclass(frozen=True)
class TrackerSettings:
    """``conf/tracker/<name>.yaml`` (this class is the group's Hydra schema)."""

    name: str = "none"
    project: str = "fedjax_rhd"  # wandb project; MLflow experiment
    run_name: str | None = None  # None: the tracker's default (wandb: random; MLflow: random)
    mode: str | None = None  # wandb: offline | online | disabled; WANDB_MODE wins; None = offline
    tracking_uri: str | None = None  # MLflow store; None = MLFLOW_TRACKING_URI or sqlite:///mlflow.db
    registered_model: str | None = None  # MLflow registry name; None = "<use case>-<model>-<strategy>"

    def __post_init__(self) -> None:
        if self.name not in TRACKERS:
            raise ValueError(f"tracker {self.name!r} is not available; choose one of {sorted(TRACKERS)}")
        if self.mode not in (None, *WANDB_MODES):
            raise ValueError(f"tracker.mode={self.mode!r}: expected one of {WANDB_MODES} or null")


class NoTracker:
    """Logs nothing."""

    def __init__(self, settings: TrackerSettings | None = None, output_dir: Path | None = None) -> None:
        del settings, output_dir

    def log_config(self, config: dict[str, Any]) -> None:
        del config

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        del metrics, step

    def log_final(self, metrics: dict[str, float], files: dict[str, Path]) -> None:
        del metrics, files

    def finish(self, success: bool = True) -> None:
        del success


def make_tracker(settings: TrackerSettings | str, output_dir: Path) -> Tracker:
    """Build and start the tracker named by ``settings.name``.

    Raises:
        ValueError: an unknown tracker name.
        TrackerStartError: the tracker's library is missing or it could not start.
    """
    if isinstance(settings, str):
        settings = TrackerSettings(name=settings)
    if settings.name not in TRACKERS:
        raise ValueError(f"tracker {settings.name!r} is not available; choose one of {sorted(TRACKERS)}")
    module, cls = TRACKERS[settings.name].split(":")
    return getattr(importlib.import_module(module), cls)(settings, Path(output_dir))


def curve_round(round_: int, every: int) -> bool:
    """Whether round ``round_`` (from 1) gets the per-round test curves: round 1 and every ``every``-th."""
    return round_ == 1 or round_ % every == 0


def round_metrics(record: dict[str, Any], node_names: list[str]) -> dict[str, float]:
    """A round's record (as written to ``results.json`` ``rounds``) as flat tracker metrics.

    A node that sat the round out (not sampled, failed, too late) has no training loss;
    it is left out of that round's metrics rather than logged as a number.
    """
    out = {}
    if record["val_loss_federated"] is not None:  # None: no validation rows (split.val_fraction=0)
        out["loss/val_federated"] = float(record["val_loss_federated"])
    for i, name in enumerate(node_names):
        if record["train_loss"][i] is not None:
            out[f"loss/train/{name}"] = float(record["train_loss"][i])
        if record["val_loss"][i] is not None:
            out[f"loss/val/{name}"] = float(record["val_loss"][i])
        if "c_index_test_nodes" in record:  # absent between curve rounds (curve_every)
            out[f"c_index_test/{name}"] = float(record["c_index_test_nodes"][i])
    if record.get("c_index_test_global") is not None:
        out["c_index_test/global"] = float(record["c_index_test_global"])
    return out


def _ci(prefix: str, ci: dict[str, Any]) -> dict[str, float]:
    return {
        prefix: float(ci["estimate"]),
        f"{prefix}_ci_low": float(ci["ci_low"]),
        f"{prefix}_ci_high": float(ci["ci_high"]),
    }


def final_metrics(final: dict[str, Any]) -> dict[str, float]:
    """``results.json`` ``final`` as flat tracker metrics (C-indices with their intervals)."""
    out = {
        **_ci("final/c_index_test", final["c_index_test"]),
        "final/best_round": float(final["best_round"]),
        "final/rounds_run": float(final["rounds_run"]),
    }
    if final.get("global_model"):
        out.update(_ci("final/global/c_index_test", final["global_model"]["c_index_test"]))
    for node in final["nodes"]:
        out.update(_ci(f"final/{node['name']}/c_index_test", node["c_index_test"]))
    if final.get("oracle_c_index_test"):
        out.update(_ci("final/oracle/c_index_test", final["oracle_c_index_test"]))
    if final.get("clinical_score"):
        out.update(_ci("final/clinical_score/c_index_test", final["clinical_score"]["c_index_test"]))
    if final.get("ibs_test") is not None:
        out["final/ibs_test"] = float(final["ibs_test"])
    federated = final.get("federated_evaluation") or {}
    for key in ("c_index_test_stratified", "uno_c_test_stratified", "ibs_test"):
        if key in federated:
            out[f"final/federated/{key}"] = float(federated[key])
    return out
