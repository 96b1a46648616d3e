"""Real public cohorts: direct loaders from ``../shared/data`` to ML-ready tables.

Each loader reads one cohort's files, builds the table in its guide's schema
(``patient_id, centre, <guide features>, time, event``), a dataset card with a
quality section (every dropped record counted with its reason) and the use
case's clinical score per patient. A later issue routes the same sources through
FHIR; the tables must not change when it does.

The data folder is the config's ``real_data_root`` when set, else
``$FEDJAX_RHD_SHARED_DATA``, else ``<project root>/../shared/data``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from harmonize.guide import Guide

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "FEDJAX_RHD_SHARED_DATA"


class RealDataMissing(FileNotFoundError):
    """The shared real-data folder (or one of its files) is absent."""


class Cohort(NamedTuple):
    """A loaded real cohort.

    Attributes:
        table: ML-ready table in the guide's schema, rows sorted by ``patient_id``.
        card: dataset card (``id``, ``name``, ``centres``, ``quality``, ``provenance``, ...).
        score_name: the use case's clinical score (e.g. ``"IPSS-M"``).
        scores: ``patient_id``, ``clinical_score`` (the continuous value ARCHITECTURE
            §5 names; ``null`` where it cannot be computed) and optional reference
            columns (``score_*``), one row per table row.
    """

    table: pl.DataFrame
    card: dict[str, Any]
    score_name: str
    scores: pl.DataFrame


def resolve_real_data_root(configured: str | Path | None = None) -> Path:
    """Where the real cohorts live: the configured path, then the env var, then ``../shared/data``."""
    if configured:
        return Path(configured)
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    return PROJECT_ROOT.parent / "shared" / "data"


def require(path: Path) -> Path:
    """Return ``path`` if it exists, else raise naming it and how to point elsewhere."""
    if not path.exists():
        raise RealDataMissing(
            f"real cohort data not found: {path} does not exist. The real use cases read the public "
            f"cohorts from ../shared/data (see its README); set {ENV_VAR} or real_data_root to their folder."
        )
    return path


Loader = Callable[[Guide, Path], Cohort]


def _loaders() -> dict[str, Loader]:
    from fedjax_rhd.cohorts import beataml, iwgpm

    return {"mds_iwgpm": iwgpm.load_mds, "cmml_iwgpm": iwgpm.load_cmml, "aml_beat": beataml.load_aml}


REAL_USE_CASES: tuple[str, ...] = ("mds_iwgpm", "cmml_iwgpm", "aml_beat")


def load_cohort(guide: Guide, real_data_root: str | Path | None = None) -> Cohort:
    """Load the real cohort of ``guide.use_case``.

    Raises:
        KeyError: no real cohort for this use case.
        RealDataMissing: the data folder or a file is absent (message names the path).
    """
    loaders = _loaders()
    if guide.use_case not in loaders:
        raise KeyError(f"no real cohort for use case {guide.use_case!r}; real cohorts: {sorted(loaders)}")
    return loaders[guide.use_case](guide, require(resolve_real_data_root(real_data_root)))
