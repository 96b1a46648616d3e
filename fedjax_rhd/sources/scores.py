"""Which clinical score a dataset reports, per patient: the one place that decides.

- A dataset whose source kept per-patient reference values outside FHIR (the real
  cohorts: ``reference.parquet``) reports the score its source computed from the raw
  files; the card's provenance names it (``provenance.clinical_score``).
- A mapped external AML cohort whose mapping kept ELN 2022 inputs that are not model
  features as reference columns (``score_CEBPA_bZIP``, ``score_TP53_vaf``, ``score_ZRSR2``:
  ``reference:`` in docs/user_csv.md) reports ELN 2022 computed from its features plus those.
- Otherwise the score comes from the table's own (observed) features: simulated AML
  reports ELN 2022 genetic risk (Döhner H, et al. Blood 2022;140:1345-77; TP53 at
  VAF >= 10%), simulated myeloma R-ISS (Palumbo A, et al. J Clin Oncol 2015;33:2863-9;
  LDH high above 250 U/L), a table with CPSS-mol's inputs CPSS-mol points, one with
  IPSS-M's inputs IPSS-M (raw score, the authors' mean handling of missing inputs),
  one with only IPSS-R's inputs IPSS-R. All are risk-oriented (higher = worse) and
  ``null`` where undeterminable.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import polars as pl

from fedjax_rhd.scores import cpss, eln, ipss
from fedjax_rhd.simulate.aml import eln_flags, eln_score
from fedjax_rhd.simulate.mm import riss_score
from harmonize.guide import Guide

USE_CASE_SCORES: dict[str, tuple[str, Callable[[pl.DataFrame], np.ndarray]]] = {
    "aml": ("ELN 2022", eln_score),
    "mm": ("R-ISS", riss_score),
}
"""Use case -> (score name, ``table -> f64[n]``): scores that need the use case, not only inputs."""

CPSS_INPUTS = frozenset(
    {"cpss_cyto", "ASXL1", "NRAS", "SETBP1", "RUNX1", "bm_blasts", "wbc", "transfusion_dependent"}
)
IPSSR_INPUTS = ("hb", "plt", "anc", "bm_blasts", "ipssr_cyto")
IPSSM_EXTRA_INPUTS = frozenset({"del5q", "del7_7q", "complex_karyotype", "TP53multi"})


def _framed(table: pl.DataFrame, name: str, score: np.ndarray) -> tuple[str, pl.DataFrame]:
    frame = pl.DataFrame({"patient_id": table["patient_id"], "clinical_score": score})
    return name, frame.with_columns(pl.col("clinical_score").fill_nan(None))


def _from_features(table: pl.DataFrame, guide: Guide) -> tuple[str, pl.DataFrame] | None:
    if guide.use_case in USE_CASE_SCORES:
        name, score = USE_CASE_SCORES[guide.use_case]
        return _framed(table, name, score(table))
    names = set(guide.feature_names)

    def num(name: str) -> np.ndarray:
        return table[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    def codes(name: str) -> np.ndarray:
        code = {level: float(i) for i, level in enumerate(guide.feature(name).levels)}
        return np.array([np.nan if v is None else code[v] for v in table[name].to_list()])

    if CPSS_INPUTS <= names:
        genetic = cpss.cpss_genetic_risk(
            cpss.cpss_genetic_score(
                codes("cpss_cyto"), num("ASXL1"), num("NRAS"), num("SETBP1"), num("RUNX1")
            )
        )
        points = cpss.cpss_mol_points(genetic, num("bm_blasts"), num("wbc"), num("transfusion_dependent"))
        return _framed(table, "CPSS-mol", points)
    if not all(n in names for n in IPSSR_INPUTS) or guide.feature("ipssr_cyto").levels != ipss.CYTO_LEVELS:
        return None
    cyto = codes("ipssr_cyto")
    if IPSSM_EXTRA_INPUTS <= names:
        genes = {g: num(g) for g in ipss.IPSSM_GENES if g in names}
        variables = ipss.ipssm_variables(
            num("hb"),
            num("plt"),
            num("bm_blasts"),
            cyto,
            genes,
            del5q=num("del5q"),
            del7_7q=num("del7_7q"),
            complex_karyotype=num("complex_karyotype"),
        )
        return _framed(table, "IPSS-M", ipss.ipssm_score(variables, "mean"))
    ipssr = ipss.ipssr_score(num("hb"), num("plt"), num("anc"), num("bm_blasts"), cyto)
    return _framed(table, "IPSS-R", ipssr)


def _eln_with_reference(table: pl.DataFrame, reference: pl.DataFrame) -> tuple[str, pl.DataFrame] | None:
    """ELN 2022 from the table's features, each input overridden by a ``score_<input>`` reference column.

    ``score_TP53_vaf`` (or a ``TP53_vaf`` feature) applies ELN 2022's TP53 criterion (VAF >= 10%;
    Döhner 2022); without it the TP53 flag counts as given. ``None`` unless some reference column
    is an ELN input and every input is found.
    """
    names = {f"score_{k}" for k in (*eln.ELN2022_INPUTS, "TP53_vaf")}
    if not names & set(reference.columns):
        return None
    ref = table.select("patient_id").join(reference, on="patient_id", how="left")

    def column(name: str) -> np.ndarray | None:
        source = ref if f"score_{name}" in ref.columns else table
        col = f"score_{name}" if source is ref else name
        if col not in source.columns:
            return None
        return source[col].cast(pl.Float64, strict=False).fill_null(np.nan).to_numpy()

    cov = {k: column(k) for k in (*eln.ELN2022_INPUTS, "TP53_vaf")}
    if any(cov[k] is None for k in eln.ELN2022_INPUTS):
        return None
    flags = eln_flags(cov) if cov["TP53_vaf"] is not None else cov
    return _framed(table, "ELN 2022", eln.eln2022_risk(flags))


def clinical_scores(
    table: pl.DataFrame,
    guide: Guide,
    *,
    card: Mapping[str, Any] | None = None,
    reference: pl.DataFrame | None = None,
) -> tuple[str, pl.DataFrame | None]:
    """The clinical score a dataset reports, per patient.

    Args:
        table: the ML-ready table (``patient_id`` and the guide's features).
        guide: its guide.
        card: the dataset card (its ``provenance.clinical_score`` names a reference score).
        reference: the dataset's ``reference.parquet`` (``patient_id``, ``clinical_score``,
            ``score_*``, ...), if it has one.

    Returns:
        ``(score name, patient_id + clinical_score [+ reference columns])``, one score row
        per table row in the table's order; ``("", None)`` when no score applies.
    """
    if reference is not None and "clinical_score" in reference.columns:
        scores = table.select("patient_id").join(reference, on="patient_id", how="left")
        return str((card or {}).get("provenance", {}).get("clinical_score", "")), scores
    scored = _eln_with_reference(table, reference) if reference is not None else None
    if scored is not None:
        return scored
    scored = _from_features(table, guide)
    return scored if scored is not None else ("", None)
