"""Source adapters: one centre's export in, canonical patient records out (ARCHITECTURE §1.1).

An adapter knows a source's dialect (file format, column names, units, codings)
and yields :class:`PatientRecord` objects in the guide's vocabulary: feature
names, numbers with the unit they were reported in, category labels from the
guide's levels. Everything after (FHIR, extraction, quality) is generic.

This module ships the *canonical export* adapter: one CSV per centre whose
columns are exactly ``patient_id, <guide features>, time, event`` in the
guide's canonical units, plus an ``export.json`` manifest. Simulated cohorts
are written in this form (:func:`write_canonical_export`), and any loader that
produces a canonical table can be wrapped the same way. Dialect adapters
(other column names, units, codings; a YAML mapping for user CSVs) implement
the same :class:`SourceAdapter` protocol.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import polars as pl

from harmonize.guide import Guide

MANIFEST = "export.json"
TRUTH_FILE = "truth.parquet"  # simulation ground truth (never a FHIR resource): patient_id + columns
# Per-patient values kept outside FHIR and outside the content id (a cohort's clinical score and
# the reference values it was checked against, a chosen specimen): columns with these prefixes.
REFERENCE_FILE = "reference.parquet"
REFERENCE_PREFIXES = ("clinical_score", "score_", "source_")
_CENTRE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class Issue(NamedTuple):
    """A problem an adapter found in one source row.

    Attributes:
        target: the guide feature whose value is rejected, or ``patient_id`` /
            ``time`` / ``event`` / ``record`` when the whole record must be quarantined.
        column: the source column (field) at fault.
        reason: what is wrong, in words.
        source: the file at fault when it is not the record's own (a variant list).
        row: the data row in ``source``.
    """

    target: str
    column: str
    reason: str
    source: str | None = None
    row: int | None = None


RECORD_TARGETS = frozenset({"patient_id", "time", "event", "record"})


@dataclasses.dataclass(frozen=True)
class PatientRecord:
    """One patient of one centre, in the guide's vocabulary.

    Attributes:
        patient_id: the source's patient identifier (unique over the dataset).
        centre: the centre (site) the record comes from.
        source: file the record was read from, for error messages.
        row: 1-based data row in ``source``.
        values: feature name -> value, ``None`` where not recorded. Continuous:
            a number in ``units[name]``; binary: 0/1; categorical: a level label.
        units: feature name -> UCUM unit of a continuous value as reported.
        time: survival time in the guide's time unit (years); ``None`` if absent.
        event: 1 = death observed, 0 = censored; ``None`` if absent.
        issues: problems the adapter found in the row (bad values it left out,
            endpoint fields it could not read); ingestion counts and lists them.
    """

    patient_id: str | None
    centre: str
    source: str
    row: int
    values: Mapping[str, Any]
    units: Mapping[str, str]
    time: float | None
    event: int | None
    issues: tuple[Issue, ...] = ()


class SourceAdapter(Protocol):
    """What the FHIR builder needs from a source.

    Optional methods, used where an adapter has them: ``notes(centre)`` (what the quality
    report says about a centre's source), ``n_records(centre)`` (sizes progress bars) and
    ``reference()`` (per-patient values kept outside FHIR, written beside the tables as
    ``reference.parquet``).
    """

    name: str

    def centres(self) -> tuple[str, ...]:
        """The centres of the source, in a fixed order."""
        ...

    def records(self, centre: str) -> Iterator[PatientRecord]:
        """Every row of one centre's export, including bad ones (the builder quarantines them)."""
        ...

    def provenance(self) -> dict[str, Any]:
        """``source``, ``licence``, ``citation`` (and anything else worth recording)."""
        ...

    def truth(self) -> pl.DataFrame | None:
        """Simulation ground truth keyed by ``patient_id`` (e.g. ``oracle_risk``), or ``None``."""
        ...


def check_centre_name(centre: str) -> str:
    """Centres name folders and files: letters, digits, ``_.-``; fail clearly otherwise."""
    if not isinstance(centre, str) or not _CENTRE_NAME.match(centre):
        raise ValueError(f"centre name {centre!r} must match {_CENTRE_NAME.pattern} (it names files)")
    return centre


def canonical_schema(guide: Guide) -> dict[str, pl.DataType]:
    """Polars dtypes of a canonical table (export CSV and extracted parquet)."""
    dtypes: dict[str, pl.DataType] = {"patient_id": pl.String()}
    for f in guide.features:
        dtypes[f.name] = {"continuous": pl.Float64(), "binary": pl.Int8(), "categorical": pl.String()}[f.kind]
    dtypes["time"] = pl.Float64()
    dtypes["event"] = pl.Int8()
    return dtypes


def write_canonical_export(
    df: pl.DataFrame, guide: Guide, folder: str | Path, provenance: Mapping[str, Any]
) -> Path:
    """Write a canonical table as one CSV per centre plus ``export.json`` (and ground truth).

    Args:
        df: ``patient_id, centre, <guide features>, time, event`` and optionally
            reference columns (names starting with :data:`REFERENCE_PREFIXES`), which go to
            ``reference.parquet``, and ground-truth columns (any other, e.g. ``oracle_risk``),
            which go to ``truth.parquet``.
        guide: the use case's guide (column order and canonical units).
        folder: the export folder (created).
        provenance: ``source``, ``licence``, ``citation``.

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    columns = list(canonical_schema(guide))
    missing = [c for c in [*columns, "centre"] if c not in df.columns]
    if missing:
        raise ValueError(
            f"write_canonical_export: table lacks column(s) {missing} of guide {guide.use_case!r}"
        )
    reference_cols = [c for c in df.columns if c not in columns and c.startswith(REFERENCE_PREFIXES)]
    truth_cols = [c for c in df.columns if c not in (*columns, "centre", *reference_cols)]
    centres = sorted(df["centre"].unique().to_list())
    for centre in centres:
        part = df.filter(pl.col("centre") == check_centre_name(centre)).sort("patient_id")
        part.select(columns).write_csv(folder / f"{centre}.csv")
    if truth_cols:
        df.select("patient_id", *truth_cols).sort("patient_id").write_parquet(folder / TRUTH_FILE)
    if reference_cols:
        df.select("patient_id", *reference_cols).sort("patient_id").write_parquet(folder / REFERENCE_FILE)
    manifest = {
        "format": "fedjax_rhd/canonical-export/v1",
        "use_case": guide.use_case,
        "guide_version": guide.version,
        "centres": centres,
        "units": {f.name: f.unit for f in guide.features if f.kind == "continuous"},
        "time_unit": guide.time_unit,
        "provenance": dict(provenance),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return folder


class CanonicalExportSource:
    """Adapter for a canonical export folder (see :func:`write_canonical_export`)."""

    name = "canonical"

    def __init__(self, folder: str | Path, guide: Guide) -> None:
        self.folder = Path(folder)
        self.guide = guide
        path = self.folder / MANIFEST
        try:
            self.manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise ValueError(f"canonical export {self.folder}: cannot read {path}: {err}") from err
        if self.manifest.get("use_case") != guide.use_case:
            raise ValueError(
                f"{path}: export is for use case {self.manifest.get('use_case')!r}, "
                f"guide is {guide.use_case!r}"
            )
        self._units = {f.name: str(f.unit) for f in guide.features if f.kind == "continuous"}
        self._units.update(self.manifest.get("units") or {})

    def centres(self) -> tuple[str, ...]:
        return tuple(check_centre_name(c) for c in self.manifest["centres"])

    def provenance(self) -> dict[str, Any]:
        return dict(self.manifest.get("provenance") or {})

    def truth(self) -> pl.DataFrame | None:
        path = self.folder / TRUTH_FILE
        return pl.read_parquet(path) if path.is_file() else None

    def reference(self) -> pl.DataFrame | None:
        """Per-patient values kept outside FHIR (``reference.parquet`` of the export), or ``None``."""
        path = self.folder / REFERENCE_FILE
        return pl.read_parquet(path) if path.is_file() else None

    def notes(self, centre: str) -> dict[str, Any]:
        """What the quality report should say about a centre's source (``provenance.centre_notes``)."""
        notes = (self.manifest.get("provenance") or {}).get("centre_notes") or {}
        return dict(notes.get(centre) or {})

    def n_records(self, centre: str) -> int:
        """Data rows of one centre's export (for progress bars)."""
        with open(self.folder / f"{centre}.csv", "rb") as fh:
            return max(sum(1 for line in fh if line.strip()) - 1, 0)

    def records(self, centre: str) -> Iterator[PatientRecord]:
        path = self.folder / f"{centre}.csv"
        schema = canonical_schema(self.guide)
        try:
            df = pl.read_csv(path, schema_overrides=schema, infer_schema_length=0)
        except (OSError, pl.exceptions.PolarsError) as err:
            raise ValueError(
                f"{path}: cannot read as the canonical export of {self.guide.use_case!r}: {err}"
            ) from err
        missing = [c for c in schema if c not in df.columns]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing} of guide {self.guide.use_case!r}")
        features = self.guide.feature_names
        for row, rec in enumerate(df.iter_rows(named=True), start=1):
            yield PatientRecord(
                patient_id=rec["patient_id"],
                centre=centre,
                source=str(path),
                row=row,
                values={name: rec[name] for name in features},
                units=self._units,
                time=rec["time"],
                event=rec["event"],
            )
