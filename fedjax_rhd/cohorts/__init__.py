"""Real public cohorts: the readers that parse ``../shared/data`` (IWG-PM, Beat AML).

Each reader (:func:`fedjax_rhd.cohorts.iwgpm.load_mds`, ``load_cmml``,
:func:`fedjax_rhd.cohorts.beataml.load_aml`) parses one cohort's files into its
guide's schema (``patient_id, centre, <guide features>, time, event``), a card with
a quality section (every dropped record counted with its reason) and the use case's
clinical score per patient. Runs never use these tables directly: the cohort's
registry source (``fedjax_rhd/sources/iwgpm.py``, ``beataml.py``) hands them to
``harmonize``, which routes them through FHIR R5 (``fedjax_rhd.sources.load_use_case``).

The data folder is the config's ``real_data_root`` when set, else
``$FEDJAX_RHD_SHARED_DATA``, else ``<project root>/../shared/data``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

PROJECT_ROOT = Path(__file__).resolve().parents[2]
ENV_VAR = "FEDJAX_RHD_SHARED_DATA"


class RealDataMissing(FileNotFoundError):
    """The shared real-data folder (or one of its files) is absent."""


class Cohort(NamedTuple):
    """A use case's data: what a reader parsed, or what ``fedjax_rhd.sources.load_use_case`` loads.

    Attributes:
        table: ML-ready table in the guide's schema, rows sorted by ``patient_id``
            (a registered dataset adds its ground-truth columns, e.g. ``oracle_risk``).
        card: dataset card (``id``, ``name``, ``centres``, ``provenance``, ...).
        score_name: the use case's clinical score (e.g. ``"IPSS-M"``; ``""`` when none).
        scores: ``patient_id``, ``clinical_score`` (the continuous value ARCHITECTURE
            §5 names; ``null`` where it cannot be computed) and optional reference
            columns (``score_*``), one row per table row; ``None`` when no score applies.
    """

    table: pl.DataFrame
    card: dict[str, Any]
    score_name: str
    scores: pl.DataFrame | None


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


@functools.lru_cache(maxsize=4)
def _read_workbook(path: str, size: int, mtime_ns: int) -> pl.DataFrame:
    del size, mtime_ns  # part of the cache key only: an edited file is read again
    return pl.read_excel(path, engine="openpyxl", infer_schema_length=None)


def read_workbook(path: Path) -> pl.DataFrame:
    """A cohort's ``.xlsx`` sheet, parsed once per process while the file is unchanged.

    openpyxl takes seconds on Beat AML's workbooks and one dataset build reads the clinical
    workbook twice (the reader and the record-selection notes); polars frames are immutable,
    so sharing one is safe. The key holds the file's size and modification time.
    """
    stat = path.stat()
    return _read_workbook(str(path.resolve()), stat.st_size, stat.st_mtime_ns)
