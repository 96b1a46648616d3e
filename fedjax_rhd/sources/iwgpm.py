"""The IWG-PM cohort as the registry source ``iwgpm`` (use cases ``mds_iwgpm``, ``cmml_iwgpm``).

The reader (:mod:`fedjax_rhd.cohorts.iwgpm`) parses the public files; this adapter
hands the registry every source record, including the patients without overall
survival (their endpoint as the source has it, so the FHIR builder quarantines them
and the quality report counts them: ``n_records`` equals the cohort's source rows),
the clinical score and its stored reference values as ``reference`` columns
(outside FHIR, written beside the tables), and provenance with the file digests and
a per-centre note cross-checking the gene matrix against the variant list.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import polars as pl

from fedjax_rhd.cohorts import Cohort, require, resolve_real_data_root
from fedjax_rhd.cohorts import iwgpm as reader
from fedjax_rhd.cohorts.common import canonical_table, source_table
from fedjax_rhd.sources.code_fingerprint import code_fingerprint, cohort_inputs
from harmonize.guide import Guide
from harmonize.registry import register_source, table_source

SOURCE = "iwgpm"
READERS: dict[str, Callable[[Guide, Path], Cohort]] = {
    "mds_iwgpm": reader.load_mds,
    "cmml_iwgpm": reader.load_cmml,
}
"""Use case -> the reader that parses its patients."""


def _unusable(guide: Guide, root: Path) -> pl.DataFrame:
    """The source records without overall survival, as the source has them."""
    raw, _ = reader.read_raw(root)
    if guide.use_case == "cmml_iwgpm":
        raw = raw.filter(pl.col("WHO_2016") == "CMML")
    bad = raw.filter(pl.col("OS_YEARS").is_null() | pl.col("OS_STATUS").is_null())
    return pl.DataFrame(
        {
            "patient_id": bad["ID"].cast(pl.String),
            "centre": [reader.CENTRE] * bad.height,
            "time": bad["OS_YEARS"].cast(pl.Float64),
            "event": bad["OS_STATUS"].cast(pl.Int8),
        }
    )


def _notes(guide: Guide, root: Path, table: pl.DataFrame) -> dict[str, Any]:
    """Cross-check the gene matrix (df_mut.tsv, the source of the flags) against the variant list.

    ``maf.tsv`` lists each variant with its VAF; the published flags count only the
    variants the authors kept, so disagreement is expected and reported, not fixed.
    """
    maf = pl.read_csv(require(root / reader.FOLDER / "maf.tsv"), separator="\t", infer_schema_length=None)
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


def iwgpm_table(guide: Guide, options: Mapping[str, Any]) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The IWG-PM cohort of ``guide.use_case`` as a registry table source.

    Args:
        guide: the ``mds_iwgpm`` or ``cmml_iwgpm`` guide.
        options: ``root`` (optional): the real-data folder (else the env var or ``../shared/data``).

    Returns:
        ``(table, provenance)``: every source record (usable or not) with ``reference``
        columns (``clinical_score``, ``score_*``), and the provenance.

    Raises:
        fedjax_rhd.cohorts.RealDataMissing: the data folder or a file is absent.
        ValueError: the guide is not one of this cohort's use cases.
    """
    if guide.use_case not in READERS:
        raise ValueError(f"source {SOURCE!r} serves use cases {tuple(READERS)}, not {guide.use_case!r}")
    root = require(resolve_real_data_root(options.get("root")))
    cohort = READERS[guide.use_case](guide, root)
    table = canonical_table(cohort.table, guide)
    notes = {reader.CENTRE: _notes(guide, root, table)}
    return source_table(cohort, table, _unusable(guide, root), cohort.scores, notes)


register_source(
    SOURCE,
    table_source(iwgpm_table),
    run_options=("root",),
    fingerprint=code_fingerprint(reader, sys.modules[__name__]),  # a parsing fix makes caches stale
    inputs=cohort_inputs(reader.FOLDER),  # so does a changed public file
)
