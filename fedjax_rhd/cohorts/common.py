"""Helpers shared by the real-cohort readers: flag columns, range checks, cards, registry tables."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from fedjax_rhd.cohorts import Cohort
from harmonize.guide import Guide
from harmonize.identity import dataset_id, features_card


def flag_columns(
    raw: pl.DataFrame, guide: Guide, prefixes: dict[str, str], skip: frozenset[str] | set[str] = frozenset()
) -> dict[str, pl.Series]:
    """Binary guide features read from prefixed source columns (``mut:TP53`` -> ``TP53``).

    Args:
        raw: the joined source table.
        guide: the use case's guide.
        prefixes: feature group -> prefix of its source columns.
        skip: features filled elsewhere.

    Raises:
        KeyError: a binary guide feature has no source column (names both).
    """
    out = {}
    for f in guide.features:
        if f.name in skip or f.kind != "binary" or f.group not in prefixes:
            continue
        source = prefixes[f.group] + f.name
        if source not in raw.columns:
            raise KeyError(f"guide {guide.path}: feature {f.name!r} has no source column {source!r}")
        out[f.name] = raw[source].cast(pl.Float64)
    return out


def check_ranges(table: pl.DataFrame, guide: Guide, path: Path) -> None:
    """Raise naming file, row and field when a value lies outside the guide's valid range."""
    for f in guide.features:
        col = table[f.name]
        if f.kind == "continuous" and f.valid_range is not None:
            low, high = f.valid_range
            bad = (col < low) | (col > high)
        elif f.kind == "binary":
            bad = ~col.is_in([0.0, 1.0])
        else:
            continue
        bad = bad.fill_null(False)
        if bad.any():
            row = int(bad.arg_true()[0])
            raise ValueError(
                f"{path}: patient {table['patient_id'][row]!r} (row {row}) field {f.name!r}: "
                f"{col[row]!r} outside the guide's valid values ({guide.path})"
            )
    for name in ("time", "event"):
        if table[name].null_count():
            raise ValueError(f"{path}: field {name!r} has missing values after filtering")
    if (table["time"] < 0).any():
        row = int((table["time"] < 0).arg_true()[0])
        raise ValueError(f"{path}: patient {table['patient_id'][row]!r} field time: negative survival time")


def file_digests(paths: dict[str, Path]) -> dict[str, dict[str, str]]:
    """sha256 of each source file, checked against ``SHA256SUMS`` in the data root when present.

    Raises:
        ValueError: a file's digest differs from the one ``SHA256SUMS`` records (names both).
    """
    out = {}
    for name, path in paths.items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        sums = path.parent.parent / "SHA256SUMS"
        if sums.is_file():
            relative = f"{path.parent.name}/{path.name}"
            recorded = {
                line.split()[1]: line.split()[0]
                for line in sums.read_text().splitlines()
                if len(line.split()) == 2
            }
            if relative in recorded and recorded[relative] != digest:
                raise ValueError(
                    f"{path}: sha256 {digest} differs from {recorded[relative]} recorded in {sums}"
                )
        out[name] = {"path": str(path), "sha256": digest}
    return out


def build_card(
    table: pl.DataFrame,
    guide: Guide,
    *,
    n_source: int,
    dropped: dict[str, int],
    source_files: dict[str, Path],
    extra_quality: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Dataset card of a real cohort, with a quality section counting every dropped record."""
    provenance = yaml.safe_load(Path(guide.path).read_text()).get("provenance", {})
    centres = table.group_by("centre").agg(pl.len().alias("n_rows"), pl.col("event").sum().alias("n_events"))
    completeness = {
        f.name: round(1.0 - table[f.name].null_count() / max(table.height, 1), 4) for f in guide.features
    }
    return {
        "id": dataset_id(table, guide),
        "name": f"{guide.use_case}-real",
        "use_case": guide.use_case,
        "guide_version": guide.version,
        "centres": [
            {"name": str(c), "n_rows": int(r), "n_events": int(e)}
            for c, r, e in sorted(centres.iter_rows(), key=lambda row: (-row[1], str(row[0])))
        ],
        "features": features_card(guide),
        "n_rows": table.height,
        "n_events": int(table["event"].sum()),
        "quality": {
            "n_source_records": n_source,
            "dropped": dropped,
            "completeness": completeness,
            **(extra_quality or {}),
        },
        "provenance": {**provenance, "files": file_digests(source_files)},
    }


def canonical_table(table: pl.DataFrame, guide: Guide) -> pl.DataFrame:
    """Cast a reader's table to the canonical dtypes of an export (binary Int8, event Int8)."""
    casts = [pl.col(f.name).cast(pl.Int8) for f in guide.features if f.kind == "binary"]
    return table.with_columns(*casts, pl.col("event").cast(pl.Int8))


def source_table(
    cohort: Cohort,
    table: pl.DataFrame,
    unusable: pl.DataFrame,
    reference: pl.DataFrame,
    centre_notes: dict[str, dict[str, Any]],
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A real cohort as a registry table source's ``(table, provenance)``.

    The registry must see every source record, the ones the model cannot use too
    (no overall survival, vital status unknown), with their endpoint as the source
    has it: the FHIR builder quarantines them and the quality report counts them.

    Args:
        cohort: what the cohort's reader parsed (its card carries provenance and quality).
        table: the reader's table in canonical dtypes (:func:`canonical_table`).
        unusable: the records the reader dropped: ``patient_id, centre, time, event``.
        reference: per-patient values outside FHIR (``clinical_score``, ``score_*``,
            ``source_*``), written by the registry to ``reference.parquet``.
        centre_notes: per centre, what its quality report says about the source.

    Returns:
        ``(every record with its reference columns, sorted by patient_id; provenance)``.
    """
    out = pl.concat([table, unusable], how="diagonal_relaxed").join(reference, on="patient_id", how="left")
    card = cohort.card
    provenance = {
        **card["provenance"],
        "clinical_score": cohort.score_name,
        "source_quality": card["quality"],
        "centre_notes": centre_notes,
    }
    if card.get("notes"):
        provenance["notes"] = card["notes"]
    return out.sort("patient_id"), provenance
