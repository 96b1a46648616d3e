"""Real cohorts as registry sources: raw files -> canonical export -> FHIR R5 -> ML-ready table.

The ``iwgpm`` and ``beataml`` sources of :data:`harmonize.registry.TABLE_SOURCES`.
They parse the public files with the cohort readers of this package (the
same parsing the former direct path used, so the tables are equal row for row
and value for value) and hand the registry:

- every source record, including the ones the model cannot use (no overall
  survival; Beat AML vital status "Unknown"), with their endpoint as the
  source has it, so the FHIR builder quarantines them and the quality report
  counts them: ``n_records`` equals the cohort's source rows;
- ``reference`` columns outside FHIR (the clinical score and its stored
  reference values, the chosen Beat AML specimen), written by the registry to
  ``reference.parquet`` beside the tables, like the simulator's ``truth.parquet``;
- provenance with the cohort's file digests, its record-selection rule and,
  per centre, notes for the quality report (Beat AML: specimens per patient and
  the disease stage of the specimen chosen).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from fedjax_rhd.cohorts import load_cohort, require, resolve_real_data_root
from harmonize.guide import Guide

REFERENCE_PREFIXES = ("clinical_score", "score_", "source_")


def _canonical(table: pl.DataFrame, guide: Guide) -> pl.DataFrame:
    """Cast a loader table to the canonical dtypes (binary Int8, event Int8)."""
    casts = [pl.col(f.name).cast(pl.Int8) for f in guide.features if f.kind == "binary"]
    return table.with_columns(*casts, pl.col("event").cast(pl.Int8))


def _unusable_iwgpm(guide: Guide, root: Path) -> pl.DataFrame:
    from fedjax_rhd.cohorts.iwgpm import read_raw

    raw, _ = read_raw(root)
    if guide.use_case == "cmml_iwgpm":
        raw = raw.filter(pl.col("WHO_2016") == "CMML")
    bad = raw.filter(pl.col("OS_YEARS").is_null() | pl.col("OS_STATUS").is_null())
    return pl.DataFrame(
        {
            "patient_id": bad["ID"].cast(pl.String),
            "centre": ["iwgpm"] * bad.height,
            "time": bad["OS_YEARS"].cast(pl.Float64),
            "event": bad["OS_STATUS"].cast(pl.Int8),
        }
    )


def _iwgpm_notes(guide: Guide, root: Path, table: pl.DataFrame) -> dict[str, Any]:
    """Cross-check the gene matrix (df_mut.tsv, the source of the flags) against the variant list.

    ``maf.tsv`` lists each variant with its VAF; the published flags count only the
    variants the authors kept, so disagreement is expected and reported, not fixed.
    """
    maf = pl.read_csv(require(root / "mds_iwgpm" / "maf.tsv"), separator="\t", infer_schema_length=None)
    ids = set(table["patient_id"].to_list())
    maf = maf.filter(pl.col("ID").is_in(ids))
    called = {(i, g) for i, g in maf.select("ID", "GENE").iter_rows()}
    genes = [f.name for f in guide.features if f.fhir is not None and f.fhir.gene is not None]
    both = matrix_only = list_only = 0
    for g in genes:
        for pid, flag in table.select("patient_id", g).iter_rows():
            in_list = (pid, g) in called
            if flag == 1 and in_list:
                both += 1
            elif flag == 1:
                matrix_only += 1
            elif flag == 0 and in_list:
                list_only += 1
    vaf = maf["VAF"].cast(pl.Float64, strict=False)
    return {
        "gene_flags_from": "df_mut.tsv (gene matrix)",
        "variant_list": "maf.tsv",
        "variants_of_these_patients": maf.height,
        "vaf_outside_0_1": int(((vaf < 0) | (vaf > 1)).fill_null(False).sum()),
        "genes_checked": len(genes),
        "flag_1_and_listed": both,
        "flag_1_not_listed": matrix_only,
        "flag_0_but_listed": list_only,
    }


def _beataml_selection(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(chosen specimen per patient, all specimens) of the clinical workbook."""
    from fedjax_rhd.cohorts.beataml import CLINICAL_FILE, FOLDER, choose_specimens

    clinical = pl.read_excel(
        require(root / FOLDER / CLINICAL_FILE), engine="openpyxl", infer_schema_length=None
    )
    return choose_specimens(clinical), clinical


def _unusable_beataml(chosen: pl.DataFrame) -> pl.DataFrame:
    from fedjax_rhd.cohorts.beataml import DAYS_PER_YEAR

    unknown = chosen["vitalStatus"] == "Unknown"
    negative = (chosen["overallSurvival"] < 0).fill_null(True) & ~unknown
    bad = chosen.filter(unknown | negative)
    return pl.DataFrame(
        {
            "patient_id": [f"beataml-{s}" for s in bad["dbgap_subject_id"]],
            "centre": bad["centerID"].cast(pl.String),
            "time": bad["overallSurvival"].cast(pl.Float64) / DAYS_PER_YEAR,
            # "Unknown" has no 0/1: the record is quarantined as "missing event".
            "event": [{"Dead": 1, "Alive": 0}.get(v) for v in bad["vitalStatus"]],
        },
        schema_overrides={"event": pl.Int8},
    )


def _beataml_notes(chosen: pl.DataFrame, clinical: pl.DataFrame) -> dict[str, dict[str, Any]]:
    notes: dict[str, dict[str, Any]] = {}
    for centre in sorted(chosen["centerID"].cast(pl.String).unique().to_list()):
        part = chosen.filter(pl.col("centerID").cast(pl.String) == centre)
        specimens = clinical.filter(pl.col("centerID").cast(pl.String) == centre)
        stages = part["diseaseStageAtSpecimenCollection"].fill_null("missing").value_counts(sort=True)
        notes[centre] = {
            "record_selection": "one record per patient (dbgap_subject_id): the specimen at 'Initial "
            "Diagnosis' first, then earliest collection, with exome sequencing, bone marrow over blood, "
            "then the sequencing sample id",
            "specimens": specimens.height,
            "patients": part.height,
            "specimen_stage_chosen": {str(s): int(n) for s, n in stages.iter_rows()},
        }
    return notes


def real_source(source: str, guide: Guide, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """A real cohort as a registry table source.

    Args:
        source: ``iwgpm`` or ``beataml``.
        guide: the use case's guide (``mds_iwgpm``, ``cmml_iwgpm`` or ``aml_beat``).
        options: ``root`` (optional): the real-data folder (else the env var or ``../shared/data``).

    Returns:
        ``(table, provenance)``: the canonical table of every source record (usable
        or not) with ``reference`` columns (see module docstring), and provenance.

    Raises:
        fedjax_rhd.cohorts.RealDataMissing: the data folder or a file is absent.
        ValueError: the source does not serve this use case.
    """
    expected = {"iwgpm": ("mds_iwgpm", "cmml_iwgpm"), "beataml": ("aml_beat",)}[source]
    if guide.use_case not in expected:
        raise ValueError(f"source {source!r} serves use cases {expected}, not {guide.use_case!r}")
    root = resolve_real_data_root(options.get("root"))
    cohort = load_cohort(guide, root)
    table = _canonical(cohort.table, guide)
    reference = cohort.scores
    centre_notes: dict[str, dict[str, Any]] = {}
    if source == "iwgpm":
        unusable = _unusable_iwgpm(guide, root)
        centre_notes = {"iwgpm": _iwgpm_notes(guide, root, table)}
    else:
        chosen, clinical = _beataml_selection(root)
        unusable = _unusable_beataml(chosen)
        centre_notes = _beataml_notes(chosen, clinical)
        mapping = pl.read_excel(
            require(root / "aml_beat2" / "beataml_waves1to4_sample_mapping.xlsx"), engine="openpyxl"
        )
        known = set(mapping["dbgap_dnaseq_sample"].drop_nulls().to_list())
        for centre, note in centre_notes.items():
            part = chosen.filter(pl.col("centerID").cast(pl.String) == centre)["dbgap_dnaseq_sample"]
            note["chosen_with_exome"] = int(part.is_not_null().sum())
            note["chosen_exome_in_sample_mapping"] = int(part.is_in(list(known)).sum())
        specimen = pl.DataFrame(
            {
                "patient_id": [f"beataml-{s}" for s in chosen["dbgap_subject_id"]],
                "source_specimen": chosen["dbgap_dnaseq_sample"].cast(pl.String),
            }
        )
        reference = reference.join(specimen, on="patient_id", how="left")
    table = pl.concat([table, unusable], how="diagonal_relaxed").join(reference, on="patient_id", how="left")
    card = cohort.card
    provenance = {
        **card["provenance"],
        "clinical_score": cohort.score_name,
        "source_quality": card["quality"],
        "centre_notes": centre_notes,
    }
    if card.get("notes"):
        provenance["notes"] = card["notes"]
    return table.sort("patient_id"), provenance
