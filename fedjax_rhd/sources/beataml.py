"""Beat AML 2.0 as the registry source ``beataml`` (use case ``aml_beat``).

The reader (:mod:`fedjax_rhd.cohorts.beataml`) parses the clinical workbook and the
exome calls and chooses one specimen per patient; this adapter hands the registry
every patient, including those it cannot use (vital status "Unknown", negative
survival; the FHIR builder quarantines them and the quality report counts them),
the ELN score, its ELN 2022 / 2017 values and the chosen specimen as ``reference``
columns (outside FHIR), and per centre a note on the record selection: specimens per
patient, the disease stage of the specimen chosen, its exome in the sample mapping.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from fedjax_rhd.cohorts import beataml as reader
from fedjax_rhd.cohorts import read_workbook, require, resolve_real_data_root
from fedjax_rhd.cohorts.common import canonical_table, source_table
from fedjax_rhd.sources.code_fingerprint import code_fingerprint, cohort_inputs
from harmonize.guide import Guide
from harmonize.registry import register_source, table_source

SOURCE = "beataml"
USE_CASES = ("aml_beat",)
SAMPLE_MAPPING_FILE = "beataml_waves1to4_sample_mapping.xlsx"


def _selection(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(chosen specimen per patient, all specimens) of the clinical workbook."""
    clinical = read_workbook(require(root / reader.FOLDER / reader.CLINICAL_FILE))
    return reader.choose_specimens(clinical), clinical


def _unusable(chosen: pl.DataFrame) -> pl.DataFrame:
    """The patients the reader drops (vital status unknown, negative survival), as the source has them."""
    unknown = chosen["vitalStatus"] == "Unknown"
    negative = (chosen["overallSurvival"] < 0).fill_null(True) & ~unknown
    bad = chosen.filter(unknown | negative)
    return pl.DataFrame(
        {
            "patient_id": [f"beataml-{s}" for s in bad["dbgap_subject_id"]],
            "centre": bad["centerID"].cast(pl.String),
            "time": bad["overallSurvival"].cast(pl.Float64) / reader.DAYS_PER_YEAR,
            # "Unknown" has no 0/1: the record is quarantined as "missing event".
            "event": [{"Dead": 1, "Alive": 0}.get(v) for v in bad["vitalStatus"]],
        },
        schema_overrides={"event": pl.Int8},
    )


def _notes(root: Path, chosen: pl.DataFrame, clinical: pl.DataFrame) -> dict[str, dict[str, Any]]:
    """Per centre: the record-selection rule, specimens and patients, stages and exomes chosen."""
    mapping = read_workbook(require(root / reader.FOLDER / SAMPLE_MAPPING_FILE))
    known = set(mapping["dbgap_dnaseq_sample"].drop_nulls().to_list())
    notes: dict[str, dict[str, Any]] = {}
    for centre in sorted(chosen["centerID"].cast(pl.String).unique().to_list()):
        part = chosen.filter(pl.col("centerID").cast(pl.String) == centre)
        specimens = clinical.filter(pl.col("centerID").cast(pl.String) == centre)
        stages = part["diseaseStageAtSpecimenCollection"].fill_null("missing").value_counts(sort=True)
        exomes = part["dbgap_dnaseq_sample"]
        notes[centre] = {
            "record_selection": "one record per patient (dbgap_subject_id): the specimen at 'Initial "
            "Diagnosis' first, then earliest collection, with exome sequencing, bone marrow over blood, "
            "then the sequencing sample id",
            "specimens": specimens.height,
            "patients": part.height,
            "specimen_stage_chosen": {str(s): int(n) for s, n in stages.iter_rows()},
            "chosen_with_exome": int(exomes.is_not_null().sum()),
            "chosen_exome_in_sample_mapping": int(exomes.is_in(list(known)).sum()),
        }
    return notes


def beataml_table(guide: Guide, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Beat AML as a registry table source.

    Args:
        guide: the ``aml_beat`` guide.
        options: ``root`` (optional): the real-data folder (else the env var or ``../shared/data``).

    Returns:
        ``(table, provenance)``: every patient (usable or not) with ``reference`` columns
        (``clinical_score``, ``score_eln2022``, ``score_eln2017``, ``source_specimen``),
        and the provenance.

    Raises:
        fedjax_rhd.cohorts.RealDataMissing: the data folder or a file is absent.
        ValueError: the guide is not this cohort's use case.
    """
    if guide.use_case not in USE_CASES:
        raise ValueError(f"source {SOURCE!r} serves use cases {USE_CASES}, not {guide.use_case!r}")
    root = require(resolve_real_data_root(options.get("root")))
    cohort = reader.load_aml(guide, root)
    table = canonical_table(cohort.table, guide)
    chosen, clinical = _selection(root)
    specimen = pl.DataFrame(
        {
            "patient_id": [f"beataml-{s}" for s in chosen["dbgap_subject_id"]],
            "source_specimen": chosen["dbgap_dnaseq_sample"].cast(pl.String),
        }
    )
    reference = cohort.scores.join(specimen, on="patient_id", how="left")
    return source_table(cohort, table, _unusable(chosen), reference, _notes(root, chosen, clinical))


register_source(
    SOURCE,
    table_source(beataml_table),
    run_options=("root",),
    fingerprint=code_fingerprint(reader, sys.modules[__name__]),  # a parsing fix makes caches stale
    inputs=cohort_inputs(reader.FOLDER),  # so does a changed public file
)
