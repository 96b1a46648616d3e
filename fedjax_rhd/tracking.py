"""Experiment trackers behind one interface; ``none`` by default.

Per-round metrics are always in ``results.json``, so reports never depend on a
tracker. wandb and MLflow arrive with the reports issue.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fedjax_rhd.typing import Tracker


class NoTracker:
    """Logs nothing."""

    def log_config(self, config: dict[str, Any]) -> None:
        del config

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        del metrics, step

    def finish(self) -> None:
        pass


TRACKERS = {"none": NoTracker}


def make_tracker(name: str, output_dir: Path) -> Tracker:
    """Build the tracker named by ``tracker.name``; fails early on an unknown name."""
    del output_dir  # where file-based trackers will write
    if name not in TRACKERS:
        raise ValueError(f"tracker {name!r} is not available; choose one of {sorted(TRACKERS)}")
    return TRACKERS[name]()
