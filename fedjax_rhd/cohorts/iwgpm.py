"""IWG-PM cohort (Bernard et al., NEJM Evidence 2022): ``mds_iwgpm`` and ``cmml_iwgpm``.

Reads ``df_clinical.tsv``, ``df_mut.tsv`` and ``df_cna.tsv`` from
``<real data>/mds_iwgpm``. Patients without overall survival are dropped and
counted in the card's ``quality`` section. The cohort carries no centre
identifier: every row's ``centre`` is ``"iwgpm"`` and splits are random.

Clinical scores: ``mds_iwgpm`` reports IPSS-M (raw score, authors' mean scenario
for missing inputs), plus reference columns (stored IPSS-M, recomputed IPSS-R);
``cmml_iwgpm`` reports CPSS-mol points. Red-cell transfusion dependence, a
CPSS-mol input, is not in the data: it is scored as absent (0) for every
patient, so CPSS-mol here is a lower bound by at most one point.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedjax_rhd.cohorts import Cohort, require
from fedjax_rhd.cohorts.common import build_card, check_ranges, flag_columns
from fedjax_rhd.scores import cpss, ipss
from harmonize.guide import Guide

FOLDER = "mds_iwgpm"
CENTRE = "iwgpm"
CLINICAL_MAP = {
    "age": "AGE",
    "hb": "HB",
    "plt": "PLT",
    "anc": "ANC",
    "wbc": "WBC",
    "bm_blasts": "BM_BLAST",
    "pb_blasts": "PB_BLAST",
    "monocytes": "MONOCYTES",
}
CYTO_CODES = {"Very-Good": 0, "Good": 1, "Int": 2, "Poor": 3, "Very-Poor": 4}
CHR7_CNA_PREFIXES = ("del7", "plus7", "r_7_")  # any chromosome 7 loss, gain or rearrangement


def read_raw(root: Path) -> tuple[pl.DataFrame, dict[str, Path]]:
    """The three source files joined on ``ID`` (rows sorted by ``ID``), and their paths."""
    folder = require(root / FOLDER)
    paths = {name: require(folder / f"{name}.tsv") for name in ("df_clinical", "df_mut", "df_cna")}
    clinical = pl.read_csv(paths["df_clinical"], separator="\t", null_values=["NA"], infer_schema_length=None)
    mut = pl.read_csv(paths["df_mut"], separator="\t", infer_schema_length=None)
    cna = pl.read_csv(paths["df_cna"], separator="\t", infer_schema_length=None)
    for name, frame in (("df_mut", mut), ("df_cna", cna)):
        absent = set(clinical["ID"]) - set(frame["ID"])
        if absent:
            raise ValueError(f"{paths[name]}: no row for patient(s) {sorted(absent)[:5]} of df_clinical.tsv")
    mut = mut.rename({c: f"mut:{c}" for c in mut.columns if c != "ID"})
    cna = cna.rename({c: f"cna:{c}" for c in cna.columns if c != "ID"})
    raw = clinical.join(mut, on="ID", how="left").join(cna, on="ID", how="left").sort("ID")
    return raw, paths


def _with_outcome(raw: pl.DataFrame) -> tuple[pl.DataFrame, dict[str, int]]:
    no_os = raw["OS_YEARS"].is_null() | raw["OS_STATUS"].is_null()
    return raw.filter(~no_os), {"no overall survival (OS_YEARS/OS_STATUS missing)": int(no_os.sum())}


def _del7_7q(raw: pl.DataFrame) -> np.ndarray:
    return np.maximum(raw["cna:del7"].to_numpy(), raw["cna:del7q"].to_numpy()).astype(np.float64)


def _complex(raw: pl.DataFrame) -> np.ndarray:
    return (raw["complex"] == "complex").to_numpy().astype(np.float64)


def _num(raw: pl.DataFrame, col: str) -> np.ndarray:
    return raw[col].cast(pl.Float64).fill_null(np.nan).to_numpy()


def cyto_codes(raw: pl.DataFrame, path: Path) -> np.ndarray:
    """IPSS-R cytogenetic category 0..4 from ``CYTO_IPSSR`` (``NaN`` when missing)."""
    labels = raw["CYTO_IPSSR"].to_list()
    bad = [(i, v) for i, v in enumerate(labels) if v is not None and v not in CYTO_CODES]
    if bad:
        raise ValueError(
            f"{path}: row {bad[0][0]} field CYTO_IPSSR: {bad[0][1]!r} not in {sorted(CYTO_CODES)}"
        )
    return np.array([np.nan if v is None else CYTO_CODES[v] for v in labels], dtype=np.float64)


def ipssm_inputs(raw: pl.DataFrame, path: Path) -> dict[str, np.ndarray]:
    """IPSS-M model variables from the joined IWG-PM table (every gene was sequenced)."""
    genes = {g: raw[f"mut:{g}"].to_numpy().astype(np.float64) for g in ipss.IPSSM_GENES}
    return ipss.ipssm_variables(
        _num(raw, "HB"),
        _num(raw, "PLT"),
        _num(raw, "BM_BLAST"),
        cyto_codes(raw, path),
        genes,
        del5q=raw["cna:del5q"].to_numpy().astype(np.float64),
        del7_7q=_del7_7q(raw),
        complex_karyotype=_complex(raw),
    )


def ipssr_from_raw(raw: pl.DataFrame, path: Path) -> np.ndarray:
    """IPSS-R score recomputed from the IWG-PM inputs (``NaN`` where an input is missing)."""
    return ipss.ipssr_score(
        _num(raw, "HB"), _num(raw, "PLT"), _num(raw, "ANC"), _num(raw, "BM_BLAST"), cyto_codes(raw, path)
    )


def _clinical_columns(raw: pl.DataFrame, guide: Guide, path: Path) -> dict[str, Any]:
    sex = raw["SEX"].to_list()
    bad = [(i, v) for i, v in enumerate(sex) if v not in ("M", "F", None)]
    if bad:
        raise ValueError(f"{path}: row {bad[0][0]} field SEX: {bad[0][1]!r} is neither 'M' nor 'F'")
    cols: dict[str, Any] = {
        "patient_id": raw["ID"],
        "centre": pl.Series("centre", [CENTRE] * raw.height),
        "sex_male": pl.Series("sex_male", [None if v is None else float(v == "M") for v in sex]),
    }
    for feature, source in CLINICAL_MAP.items():
        if feature in guide.feature_names:
            cols[feature] = raw[source].cast(pl.Float64)
    return cols


def _finish(raw: pl.DataFrame, cols: dict[str, Any], guide: Guide, path: Path) -> pl.DataFrame:
    cols["time"] = raw["OS_YEARS"].cast(pl.Float64)
    cols["event"] = raw["OS_STATUS"].cast(pl.Float64)
    table = pl.DataFrame({name: pl.Series(name, value) for name, value in cols.items()})
    table = table.select("patient_id", "centre", *guide.feature_names, "time", "event")
    check_ranges(table, guide, path)
    return table


def load_mds(guide: Guide, root: Path) -> Cohort:
    """``mds_iwgpm``: every IWG-PM patient with overall survival; IPSS-M as the score."""
    raw, paths = read_raw(root)
    n_source = raw.height
    raw, dropped = _with_outcome(raw)
    path = paths["df_clinical"]
    cols = _clinical_columns(raw, guide, path)
    cyto = cyto_codes(raw, path)
    levels = guide.feature("ipssr_cyto").levels
    cols["ipssr_cyto"] = pl.Series(
        "ipssr_cyto", [None if np.isnan(c) else levels[int(c)] for c in cyto], dtype=pl.String
    )
    cols.update(flag_columns(raw, guide, {"genomic": "mut:", "cytogenetic": "cna:"}, skip={"ipssr_cyto"}))
    table = _finish(raw, cols, guide, path)
    variables = ipssm_inputs(raw, path)
    scores = pl.DataFrame(
        {
            "patient_id": raw["ID"],
            "clinical_score": ipss.ipssm_score(variables, "mean"),
            "score_ipssm_stored": _num(raw, "IPSSM_SCORE"),
            "score_ipssr": ipssr_from_raw(raw, path),
            "score_ipssr_stored": _num(raw, "IPSSR_SCORE"),
        }
    ).with_columns(pl.col(pl.Float64).fill_nan(None))
    card = build_card(table, guide, n_source=n_source, dropped=dropped, source_files=paths)
    return Cohort(table, card, "IPSS-M", scores)


def cpss_cyto_risk(raw: pl.DataFrame) -> np.ndarray:
    """CPSS cytogenetic risk 0/1/2 from the IWG-PM cytogenetic-alteration flags.

    Normal = no alteration flagged; −Y alone = ``delY`` the only flag; chromosome 7 =
    any flag on chromosome 7. Unknown (``NaN``) where the karyotype is missing
    (both ``CYTOGENETICS`` and ``CYTO_IPSSR`` absent).
    """
    cna_cols = [c for c in raw.columns if c.startswith("cna:")]
    flags = raw.select(cna_cols).to_numpy().astype(np.float64)
    n_abn = flags.sum(axis=1)
    chr7 = raw.select([c for c in cna_cols if c[4:].startswith(CHR7_CNA_PREFIXES)]).to_numpy().max(axis=1)
    normal = (n_abn == 0).astype(np.float64)
    minus_y = ((n_abn == 1) & (raw["cna:delY"].to_numpy() == 1)).astype(np.float64)
    risk = cpss.cpss_cytogenetic_risk(
        normal, minus_y, raw["cna:plus8"].to_numpy(), chr7, np.maximum(_complex(raw), n_abn >= 3)
    )
    unknown = (raw["CYTOGENETICS"].is_null() & raw["CYTO_IPSSR"].is_null()).to_numpy()
    return np.where(unknown, np.nan, risk)


def load_cmml(guide: Guide, root: Path) -> Cohort:
    """``cmml_iwgpm``: the WHO 2016 CMML patients with overall survival; CPSS-mol as the score."""
    raw, paths = read_raw(root)
    is_cmml = raw["WHO_2016"] == "CMML"
    n_source = int(is_cmml.sum())
    raw, dropped = _with_outcome(raw.filter(is_cmml))
    path = paths["df_clinical"]
    cols = _clinical_columns(raw, guide, path)
    risk = cpss_cyto_risk(raw)
    levels = guide.feature("cpss_cyto").levels
    cols["cpss_cyto"] = pl.Series(
        "cpss_cyto", [None if np.isnan(r) else levels[int(r)] for r in risk], dtype=pl.String
    )
    cols.update(flag_columns(raw, guide, {"genomic": "mut:"}, skip={"cpss_cyto"}))
    table = _finish(raw, cols, guide, path)
    mut = {g: raw[f"mut:{g}"].to_numpy() for g in ("ASXL1", "NRAS", "SETBP1", "RUNX1")}
    genetic = cpss.cpss_genetic_risk(
        cpss.cpss_genetic_score(risk, mut["ASXL1"], mut["NRAS"], mut["SETBP1"], mut["RUNX1"])
    )
    # Transfusion dependence is not in the data: scored as absent (see module docstring).
    points = cpss.cpss_mol_points(genetic, _num(raw, "BM_BLAST"), _num(raw, "WBC"), np.zeros(raw.height))
    scores = pl.DataFrame({"patient_id": raw["ID"], "clinical_score": points}).with_columns(
        pl.col(pl.Float64).fill_nan(None)
    )
    card = build_card(table, guide, n_source=n_source, dropped=dropped, source_files=paths)
    card["notes"] = ["red-cell transfusion dependence is absent from the data; CPSS-mol scores it as 0"]
    return Cohort(table, card, "CPSS-mol", scores)
