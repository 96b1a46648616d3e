"""Scoring a finished run's models on other patients (external validation): ``fedjax-rhd-score``.

``state`` is what a run records for it (``scoring.json``, ``scoring.npz``); ``load_run`` reads a
run back; ``compat`` refuses a dataset on another guide, version or feature schema; ``apply``
encodes rows with the run's own statistics and scores every model with the project's metrics;
``calibration`` compares predicted with Kaplan-Meier survival at stated horizons; ``cli`` writes
``score.json`` and the predictions. The CLI is imported lazily (``main``), so a run importing
``state`` does not load it.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> None:
    """``fedjax-rhd-score``: see :mod:`fedjax_rhd.score.cli`."""
    from fedjax_rhd.score.cli import main as cli_main

    cli_main(argv)
