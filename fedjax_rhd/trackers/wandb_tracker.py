"""Weights & Biases tracker, offline unless the user configures a server.

Mode: ``WANDB_MODE`` if set (wandb's own switch, respected as users expect), else
``tracker.mode``, else ``offline``: the run is written under the run directory
(``wandb/offline-run-*``) and needs no network; ``wandb sync <dir>`` uploads it later.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fedjax_rhd.tracking import TrackerSettings, TrackerStartError


def resolve_mode(settings: TrackerSettings) -> str:
    return os.environ.get("WANDB_MODE") or settings.mode or "offline"


class WandbTracker:
    """Logs the resolved config once, metrics per round, final metrics as the run summary."""

    def __init__(self, settings: TrackerSettings, output_dir: Path) -> None:
        mode = resolve_mode(settings)
        try:
            import wandb
        except ImportError as err:
            raise TrackerStartError(
                "tracker=wandb: the wandb package is not installed (pip install -c constraints.txt wandb), "
                "or choose tracker=none"
            ) from err
        try:
            self._run = wandb.init(
                project=settings.project,
                name=settings.run_name,
                dir=str(output_dir),
                mode=mode,
                settings=wandb.Settings(console="off", silent=True),
            )
        except Exception as err:  # wandb raises many types (UsageError, CommError, timeouts)
            raise TrackerStartError(
                f"tracker=wandb could not start in mode {mode!r}: {err}. For a run without network use "
                "WANDB_MODE=offline (the default), or choose tracker=none"
            ) from err

    def log_config(self, config: dict[str, Any]) -> None:
        self._run.config.update(config)

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(metrics, step=step)

    def log_final(self, metrics: dict[str, float], files: dict[str, Path]) -> None:
        del files  # the run directory keeps them; the summary carries the numbers
        self._run.summary.update(metrics)

    def finish(self, success: bool = True) -> None:
        self._run.finish(exit_code=0 if success else 1)
