"""Beat AML 2.0, waves 1-4 (Bottomly et al., Cancer Cell 2022): the ``aml_beat`` use case.

Reads ``beataml_wv1to4_clinical.xlsx`` (one row per specimen) and the WES calls
``beataml_wes_wv1to4_mutations_dbgap.txt`` from ``<real data>/aml_beat2``.

One record per patient (``dbgap_subject_id``): the diagnosis specimen, chosen by,
in order, disease stage "Initial Diagnosis" first, earliest collection relative to
inclusion, a specimen with exome sequencing, bone-marrow aspirate over blood, then
the sequencing sample id. Patients with vital status "Unknown" or a negative
survival time are dropped and counted in the card's quality section. ``centre`` is
``centerID`` (the natural split). Survival: ``overallSurvival`` days / 365.25.

Cytogenetic flags come from the ISCN karyotype and the consensus fusion calls
(:func:`karyotype_flags`); gene flags from the WES calls of the chosen specimen
(``null`` when it was not sequenced), FLT3-ITD and NPM1 from the clinical calls.

Score: ELN 2022 genetic risk (0 favourable, 1 intermediate, 2 adverse) where the
karyotype and the exome make it derivable, else the given ``ELN2017``
(FavorableOrIntermediate 0.5, IntermediateOrAdverse 1.5, other labels missing).
In-frame bZIP CEBPA is approximated by ``CEBPA_Biallelic == "bi"`` (the release
has no CEBPA domain annotation).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import polars as pl

from fedjax_rhd.cohorts import Cohort, read_workbook, require
from fedjax_rhd.cohorts.common import build_card, check_ranges
from fedjax_rhd.scores import eln
from harmonize.guide import Guide

FOLDER = "aml_beat2"
CLINICAL_FILE = "beataml_wv1to4_clinical.xlsx"
WES_FILE = "beataml_wes_wv1to4_mutations_dbgap.txt"
DAYS_PER_YEAR = 365.25
TP53_MIN_VAF = 0.10  # ELN 2022: TP53 mutation with VAF >= 10%
ELN2017_VALUES = {"Favorable": 0.0, "FavorableOrIntermediate": 0.5, "Intermediate": 1.0}
ELN2017_VALUES |= {"IntermediateOrAdverse": 1.5, "Adverse": 2.0}
NUMERIC = {
    "age": "ageAtDiagnosis",
    "wbc": "wbcCount",
    "hb": "hemoglobin",
    "plt": "plateletCount",
    "bm_blasts": "%.Blasts.in.BM",
    "pb_blasts": "%.Blasts.in.PB",
    "ldh": "LDH",
}
# Cytogenetic flags: (karyotype pattern, consensus fusion labels).
CYTO_PATTERNS: dict[str, tuple[str, tuple[str, ...]]] = {
    "t_8_21": (r"t\(8;21\)", ("RUNX1-RUNX1T1",)),
    "inv16": (r"inv\(16\)|t\(16;16\)", ("CBFB-MYH11",)),
    "t_9_11": (r"t\(9;11\)", ("MLLT3-KMT2A",)),
    "t_6_9": (r"t\(6;9\)", ("DEK-NUP214",)),
    # KMT2A rearranged *other than* t(9;11)(p21.3;q23.3)/MLLT3::KMT2A, which ELN 2022 (Döhner 2022,
    # Table 6) classes as intermediate while the other KMT2A rearrangements are adverse.
    "kmt2a_r": (r"t\((?!9;11\))(?:\d+|X);11\)\([^)]*;q23|t\(11;\d+\)\(q23", ("KMT2A_re",)),
    "t_9_22": (r"t\(9;22\)", ("BCR-ABL1",)),
    "t_8_16": (r"t\(8;16\)", ()),
    "inv3_mecom": (r"inv\(3\)\(q21|t\(3;3\)\(q21", ("GATA2-MECOM",)),
    "minus5_del5q": (r"(?:^|,)-5(?=[,\[\s]|$)|del\(5\)\(q", ()),
    "minus7": (r"(?:^|,)-7(?=[,\[\s]|$)", ()),
    "abn17p": (r"(?:^|,)-17(?=[,\[\s]|$)|del\(17\)\(p|i\(17\)\(q10\)|add\(17\)\(p", ()),
}
_TOKEN_SKIP = re.compile(r"^(\d+(~\d+)?(<\dn>)?|x+y*|x|xx|xy|xxy|xyy|idem|sl|sdl\d*|)$", re.IGNORECASE)
_MONOSOMY = re.compile(r"^-(\d+)$")


def _clone_tokens(karyotype: str) -> list[list[str]]:
    clones = []
    for clone in karyotype.split("/"):
        clone = re.sub(r"\[[^\]]*\]|\.ish.*$|\s+", "", clone)
        tokens = [t for t in clone.split(",") if not _TOKEN_SKIP.match(t)]
        clones.append([t for t in tokens if not re.match(r"^[+-]?[XY]$", t, re.IGNORECASE)])
    return clones


def karyotype_flags(karyotype: str | None, fusion: str | None) -> dict[str, float]:
    """ELN 2022 cytogenetic flags from an ISCN karyotype string and a fusion call.

    Complex: ≥3 distinct abnormalities over all clones (sex-chromosome changes aside);
    monosomal: ≥2 autosomal monosomies, or one plus a structural abnormality
    (Breems DA, et al. J Clin Oncol 2008). Every flag is ``NaN`` when the karyotype
    is missing, except those a fusion call makes 1.
    """
    fusions = {fusion} if fusion else set()
    if karyotype is None or not karyotype.strip():
        return {k: (1.0 if fusions & set(f) else np.nan) for k, (_, f) in CYTO_PATTERNS.items()} | {
            "complex_or_monosomal": np.nan,
            "normal_karyotype": np.nan,
        }
    text = re.sub(r"\s+", "", karyotype)
    out = {
        k: float(bool(re.search(p, text)) or bool(fusions & set(f))) for k, (p, f) in CYTO_PATTERNS.items()
    }
    abnormalities = {t for clone in _clone_tokens(karyotype) for t in clone}
    monosomies = {t for t in abnormalities if _MONOSOMY.match(t)}
    structural = {t for t in abnormalities if "(" in t}
    monosomal = len(monosomies) >= 2 or (len(monosomies) == 1 and len(structural) >= 1)
    out["complex_or_monosomal"] = float(len(abnormalities) >= 3 or monosomal)
    out["normal_karyotype"] = float(not abnormalities)
    return out


def _number(value: str | None) -> float:
    """Blast percentages are text: '>90' -> 90, '<1' -> 0.5 (half the bound), 'N/A' -> NaN."""
    if value is None:
        return np.nan
    v = value.strip()
    if v.startswith(">"):
        return float(v[1:])
    if v.startswith("<"):
        return float(v[1:]) / 2.0
    try:
        return float(v)
    except ValueError:
        return np.nan


def choose_specimens(clinical: pl.DataFrame) -> pl.DataFrame:
    """One specimen per patient by the order in the module docstring."""
    ranked = clinical.with_columns(
        (pl.col("diseaseStageAtSpecimenCollection") != "Initial Diagnosis").fill_null(True).alias("_not_dx"),
        pl.col("dbgap_dnaseq_sample").is_null().alias("_no_wes"),
        (pl.col("specimenType") != "Bone Marrow Aspirate").alias("_not_bm"),
        pl.col("dbgap_dnaseq_sample").fill_null("").alias("_dna"),
        pl.col("dbgap_rnaseq_sample").fill_null("").alias("_rna"),
    ).sort(
        ["dbgap_subject_id", "_not_dx", "timeOfSampleCollectionRelativeToInclusion", "_no_wes", "_not_bm"]
        + ["_dna", "_rna"]
    )
    return (
        ranked.group_by("dbgap_subject_id", maintain_order=True).first().drop(pl.selectors.starts_with("_"))
    )


def _wes_flags(chosen: pl.DataFrame, wes: pl.DataFrame, genes: list[str]) -> dict[str, np.ndarray]:
    sample = chosen["dbgap_dnaseq_sample"].to_list()
    sequenced = set(wes["dbgap_sample_id"].unique().to_list())
    by_gene = {g: set(wes.filter(pl.col("symbol") == g)["dbgap_sample_id"].to_list()) for g in genes}
    tp53 = set(
        wes.filter((pl.col("symbol") == "TP53") & (pl.col("t_vaf") >= TP53_MIN_VAF))["dbgap_sample_id"]
    )
    out = {}
    for g in [*genes, "TP53_vaf10"]:
        hit = tp53 if g == "TP53_vaf10" else by_gene[g]
        out[g] = np.array([np.nan if s not in sequenced else float(s in hit) for s in sample])
    return out


def load_aml(guide: Guide, root: Path) -> Cohort:
    """``aml_beat``: one diagnosis record per patient, ELN 2022 (else ELN2017) as the score."""
    folder = require(root / FOLDER)
    paths = {"clinical": require(folder / CLINICAL_FILE), "wes": require(folder / WES_FILE)}
    clinical = read_workbook(paths["clinical"])
    wes = pl.read_csv(paths["wes"], separator="\t", infer_schema_length=None)
    n_specimens = clinical.height
    chosen = choose_specimens(clinical)
    n_patients = chosen.height
    unknown = chosen["vitalStatus"] == "Unknown"
    negative = (chosen["overallSurvival"] < 0).fill_null(True) & ~unknown
    dropped = {
        "vitalStatus Unknown": int(unknown.sum()),
        "negative or missing overallSurvival": int(negative.sum()),
    }
    chosen = chosen.filter(~unknown & ~negative).sort("dbgap_subject_id")
    stage = chosen["diseaseStageAtSpecimenCollection"].fill_null("missing").value_counts()
    genes = [f.name for f in guide.features if f.group == "genomic" and f.name not in ("FLT3_ITD", "NPM1")]
    need = sorted(set(genes) | set(eln.ELN2022_MR_GENES) | {"CEBPA"})
    wes_flags = _wes_flags(chosen, wes, need)
    cyto = [
        karyotype_flags(k, f) for k, f in zip(chosen["karyotype"], chosen["consensusAMLFusions"], strict=True)
    ]
    cols: dict[str, pl.Series] = {
        "patient_id": pl.Series([f"beataml-{s}" for s in chosen["dbgap_subject_id"]]),
        "centre": chosen["centerID"].cast(pl.String),
        "sex_male": pl.Series([{"Male": 1.0, "Female": 0.0}.get(s) for s in chosen["consensus_sex"]]),
        "de_novo": pl.Series([{"TRUE": 1.0, "FALSE": 0.0}.get(s) for s in chosen["isDenovo"]]),
        "FLT3_ITD": pl.Series([{"positive": 1.0, "negative": 0.0}.get(s) for s in chosen["FLT3-ITD"]]),
        "NPM1": pl.Series([{"positive": 1.0, "negative": 0.0}.get(s) for s in chosen["NPM1"]]),
    }
    for feature, source in NUMERIC.items():
        col = chosen[source]
        values = [_number(v) for v in col.cast(pl.String)] if col.dtype == pl.String else col.cast(pl.Float64)
        cols[feature] = pl.Series(values, dtype=pl.Float64).fill_nan(None)
    for f in guide.features:
        if f.group == "cytogenetic":
            cols[f.name] = pl.Series([c[f.name] for c in cyto], dtype=pl.Float64).fill_nan(None)
    for g in genes:
        cols[g] = pl.Series(wes_flags[g]).fill_nan(None)
    cols["time"] = chosen["overallSurvival"].cast(pl.Float64) / DAYS_PER_YEAR
    cols["event"] = (chosen["vitalStatus"] == "Dead").cast(pl.Float64)
    table = pl.DataFrame({k: v.alias(k) for k, v in cols.items()})
    table = table.select("patient_id", "centre", *guide.feature_names, "time", "event")
    check_ranges(table, guide, paths["clinical"])

    flags = {k: np.array([c[k] for c in cyto]) for k in CYTO_PATTERNS} | {
        "complex_or_monosomal": np.array([c["complex_or_monosomal"] for c in cyto]),
        "NPM1": cols["NPM1"].fill_null(np.nan).to_numpy(),
        "FLT3_ITD": cols["FLT3_ITD"].fill_null(np.nan).to_numpy(),
        "CEBPA_bZIP": (chosen["CEBPA_Biallelic"] == "bi").fill_null(False).cast(pl.Float64).to_numpy(),
        "TP53": wes_flags["TP53_vaf10"],
        **{g: wes_flags[g] for g in eln.ELN2022_MR_GENES},
    }
    eln2022 = eln.eln2022_risk(flags)
    eln2017 = np.array([ELN2017_VALUES.get(v, np.nan) for v in chosen["ELN2017"]])
    score = np.where(np.isnan(eln2022), eln2017, eln2022)
    scores = pl.DataFrame(
        {
            "patient_id": cols["patient_id"],
            "clinical_score": score,
            "score_eln2022": eln2022,
            "score_eln2017": eln2017,
        }
    ).with_columns(pl.col(pl.Float64).fill_nan(None))
    quality = {
        "n_specimens": n_specimens,
        "n_patients": n_patients,
        "specimen_stage_chosen": {str(s): int(c) for s, c in stage.iter_rows()},
        "eln2022_derived": int((~np.isnan(eln2022)).sum()),
        "eln2017_fallback": int((np.isnan(eln2022) & ~np.isnan(eln2017)).sum()),
        "no_eln": int(np.isnan(score).sum()),
    }
    card = build_card(
        table, guide, n_source=n_patients, dropped=dropped, source_files=paths, extra_quality=quality
    )
    return Cohort(table, card, "ELN 2022", scores)
