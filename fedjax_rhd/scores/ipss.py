"""IPSS-R, IPSS-RA and IPSS-M for myelodysplastic syndromes, as vectorised pure functions.

* IPSS-R: Greenberg PL, et al. Revised International Prognostic Scoring System for
  Myelodysplastic Syndromes. Blood 2012;120(12):2454-65.
* IPSS-M: Bernard E, et al. Molecular International Prognostic Scoring System for
  Myelodysplastic Syndromes. NEJM Evidence 2022;1(7):EVIDoa2200008.

Every function takes numpy arrays (one entry per patient) and returns arrays; missing
inputs are ``NaN``. IPSS-R is ``NaN`` where any input is missing (the authors define no
imputation); IPSS-M follows its authors' best / mean / worst scenarios for missing inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np

Scenario = Literal["mean", "best", "worst"]

# IPSS-R cytogenetic categories, Very Good 0 ... Very Poor 4 (Greenberg 2012, Table 2).
CYTO_LEVELS: tuple[str, ...] = ("very_good", "good", "intermediate", "poor", "very_poor")
IPSSR_CATEGORIES: tuple[str, ...] = ("Very Low", "Low", "Intermediate", "High", "Very High")
IPSSM_CATEGORIES: tuple[str, ...] = ("Very Low", "Low", "Moderate Low", "Moderate High", "High", "Very High")
IPSSM_CUTPOINTS: tuple[float, ...] = (-1.5, -0.5, 0.0, 0.5, 1.5)

# IPSS-M model: variable -> (beta, mean, best value, worst value) (Bernard 2022, Supplement
# Table S7). Best/worst are the values of least and greatest risk within the variable's range.
IPSSM_MODEL: dict[str, tuple[float, float, float, float]] = {
    "HB1": (-0.171, 9.87, 20.0, 4.0),
    "TRANSF_PLT100": (-0.222, 1.41, 2.5, 0.0),
    "BLAST5": (0.352, 0.922, 0.0, 4.0),
    "CYTOVEC": (0.287, 1.39, 0.0, 4.0),
    "TP53multi": (1.18, 0.071, 0.0, 1.0),
    "FLT3": (0.798, 0.0108, 0.0, 1.0),
    "MLL_PTD": (0.798, 0.0247, 0.0, 1.0),
    "SF3B1_5q": (0.504, 0.0166, 0.0, 1.0),
    "NPM1": (0.43, 0.0112, 0.0, 1.0),
    "RUNX1": (0.423, 0.126, 0.0, 1.0),
    "NRAS": (0.417, 0.0362, 0.0, 1.0),
    "ETV6": (0.391, 0.0216, 0.0, 1.0),
    "IDH2": (0.379, 0.0429, 0.0, 1.0),
    "CBL": (0.295, 0.0473, 0.0, 1.0),
    "EZH2": (0.27, 0.0588, 0.0, 1.0),
    "U2AF1": (0.247, 0.0866, 0.0, 1.0),
    "SRSF2": (0.239, 0.158, 0.0, 1.0),
    "DNMT3A": (0.221, 0.161, 0.0, 1.0),
    "ASXL1": (0.213, 0.252, 0.0, 1.0),
    "KRAS": (0.202, 0.0271, 0.0, 1.0),
    "SF3B1_alpha": (-0.0794, 0.186, 1.0, 0.0),
    "nRes2": (0.231, 0.388, 0.0, 2.0),
}
# Genes entering IPSS-M one by one (beyond the derived variables).
IPSSM_MAIN_GENES: tuple[str, ...] = (
    "MLL_PTD", "NPM1", "RUNX1", "NRAS", "ETV6", "IDH2", "CBL", "EZH2", "U2AF1", "SRSF2", "DNMT3A", "ASXL1",
    "KRAS",
)  # fmt: skip
# The 15 "residual" genes counted, capped at 2, in nRes2.
IPSSM_RESIDUAL_GENES: tuple[str, ...] = (
    "BCOR", "BCORL1", "CEBPA", "ETNK1", "GATA2", "GNB1", "IDH1", "NF1", "PHF6", "PPM1D", "PRPF8", "PTPN11",
    "SETBP1", "STAG2", "WT1",
)  # fmt: skip
IPSSM_GENES: tuple[str, ...] = tuple(
    dict.fromkeys(("TP53multi", "FLT3", "FLT3_ITD", "SF3B1", *IPSSM_MAIN_GENES, *IPSSM_RESIDUAL_GENES))
)


def _f(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def ipssr_score(
    hb: np.ndarray, plt: np.ndarray, anc: np.ndarray, bm_blasts: np.ndarray, cyto: np.ndarray
) -> np.ndarray:
    """IPSS-R score (Greenberg 2012, Table 3); ``NaN`` where any input is missing.

    Args:
        hb: haemoglobin, g/dL.
        plt: platelets, 10^9/L.
        anc: absolute neutrophil count, 10^9/L.
        bm_blasts: bone-marrow blasts, %.
        cyto: IPSS-R cytogenetic category as 0 (Very Good) ... 4 (Very Poor).

    Returns:
        f64[n] points in [0, 10].
    """
    hb, plt, anc, bm_blasts, cyto = map(_f, (hb, plt, anc, bm_blasts, cyto))
    blast_pts = np.select([bm_blasts <= 2, bm_blasts < 5, bm_blasts <= 10], [0.0, 1.0, 2.0], 3.0)
    hb_pts = np.select([hb >= 10, hb >= 8], [0.0, 1.0], 1.5)
    plt_pts = np.select([plt >= 100, plt >= 50], [0.0, 0.5], 1.0)
    anc_pts = np.where(anc < 0.8, 0.5, 0.0)
    score = cyto + blast_pts + hb_pts + plt_pts + anc_pts
    missing = np.isnan(hb) | np.isnan(plt) | np.isnan(anc) | np.isnan(bm_blasts) | np.isnan(cyto)
    return np.where(missing, np.nan, score)


def ipssr_category(score: np.ndarray) -> np.ndarray:
    """IPSS-R risk group index: ≤1.5 Very Low 0, ≤3 Low 1, ≤4.5 Intermediate 2, ≤6 High 3, else 4.

    ``-1`` where the score is missing; names are ``IPSSR_CATEGORIES[index]``.
    """
    score = _f(score)
    cat = np.searchsorted(np.array([1.5, 3.0, 4.5, 6.0]), score, side="left")
    return np.where(np.isnan(score), -1, cat)


def ipssra_score(ipssr: np.ndarray, age: np.ndarray) -> np.ndarray:
    """Age-adjusted IPSS-R: ``IPSS-R + (age − 70) × (0.05 − 0.005 × IPSS-R)`` (Greenberg 2012)."""
    ipssr, age = _f(ipssr), _f(age)
    return ipssr + (age - 70.0) * (0.05 - 0.005 * ipssr)


def _flag(x: np.ndarray | None, n: int) -> np.ndarray:
    return np.full(n, np.nan) if x is None else _f(x)


def nres2(residual: np.ndarray, nref: float = 0.388) -> dict[str, np.ndarray]:
    """Number of mutated residual genes capped at 2, per scenario (Bernard 2022, Supplement).

    Args:
        residual: f64[n, 15] 0/1 per residual gene, ``NaN`` where not sequenced.
        nref: the cohort mean of nRes2.

    Returns:
        ``{"best", "mean", "worst"}``: best counts no missing gene as mutated, worst
        counts every missing gene; mean moves the observed count towards ``nref`` in
        proportion to the share of missing genes (equal to the observed count when
        nothing is missing, to ``nref`` when every gene is missing).
    """
    residual = _f(residual)
    missing = np.isnan(residual).sum(axis=1)
    observed = np.nansum(residual, axis=1)
    share = missing / residual.shape[1]
    best = np.minimum(observed, 2.0)
    return {
        "best": best,
        "worst": np.minimum(observed + missing, 2.0),
        "mean": best + np.maximum((2.0 - observed) / 2.0 * share * nref, 0.0),
    }


def ipssm_variables(
    hb: np.ndarray,
    plt: np.ndarray,
    bm_blasts: np.ndarray,
    cyto: np.ndarray,
    genes: Mapping[str, np.ndarray],
    *,
    del5q: np.ndarray,
    del7_7q: np.ndarray,
    complex_karyotype: np.ndarray,
) -> dict[str, np.ndarray]:
    """Model variables of IPSS-M from clinical, cytogenetic and gene inputs (``NaN`` = missing).

    Args:
        hb, plt, bm_blasts: g/dL, 10^9/L, %.
        cyto: IPSS-R cytogenetic category 0..4.
        genes: 0/1 per gene in ``IPSSM_GENES`` (``TP53multi`` is ≥2 TP53 hits or one
            with loss of heterozygosity; ``FLT3`` and ``FLT3_ITD`` are merged). A gene
            absent from the mapping counts as not sequenced.
        del5q, del7_7q, complex_karyotype: 0/1 cytogenetic flags.

    Returns:
        One array per ``IPSSM_MODEL`` variable except ``nRes2``, which comes as
        ``nRes2_best``, ``nRes2_mean`` and ``nRes2_worst``. A derived variable is
        ``NaN`` when its inputs leave it undetermined.
    """
    n = len(np.atleast_1d(hb))
    g = {name: _flag(genes.get(name), n) for name in IPSSM_GENES}
    out = {
        "HB1": np.clip(_f(hb), 4.0, 20.0),
        "TRANSF_PLT100": np.minimum(_f(plt), 250.0) / 100.0,
        "BLAST5": np.minimum(_f(bm_blasts), 20.0) / 5.0,
        "CYTOVEC": _f(cyto),
        "TP53multi": g["TP53multi"],
        # FLT3 = any FLT3 mutation: mutated if either is; wild type only if both are.
        "FLT3": np.fmax(g["FLT3"], g["FLT3_ITD"]),
        **{name: g[name] for name in IPSSM_MAIN_GENES},
    }
    flt3_neither_known = np.isnan(g["FLT3"]) | np.isnan(g["FLT3_ITD"])
    out["FLT3"] = np.where((out["FLT3"] == 0) & flt3_neither_known, np.nan, out["FLT3"])
    sf3b1 = g["SF3B1"]
    d5, d7, cx = _f(del5q), _f(del7_7q), _f(complex_karyotype)
    # Three-valued logic: a conjunction is 0 if any factor is known false, 1 if all are
    # known true, else unknown.
    factors = np.stack([sf3b1, d5, 1.0 - d7, 1.0 - cx])
    out["SF3B1_5q"] = _and3(factors)
    others = np.stack([g[k] for k in ("SRSF2", "STAG2", "BCOR", "BCORL1", "RUNX1", "NRAS")])
    out["SF3B1_alpha"] = _and3(np.stack([sf3b1, 1.0 - out["SF3B1_5q"], *(1.0 - others)]))
    for scenario, value in nres2(np.stack([g[k] for k in IPSSM_RESIDUAL_GENES], axis=1)).items():
        out[f"nRes2_{scenario}"] = value
    return out


def _and3(factors: np.ndarray) -> np.ndarray:
    any_false = np.any(factors == 0, axis=0)
    all_true = np.all(factors == 1, axis=0)
    return np.where(any_false, 0.0, np.where(all_true, 1.0, np.nan))


def ipssm_score(
    variables: Mapping[str, np.ndarray], scenario: Scenario = "mean", *, rounding: int | None = 2
) -> np.ndarray:
    """IPSS-M raw score: ``Σ (value − mean) × beta / ln 2``, rounded to 2 decimals.

    Args:
        variables: output of :func:`ipssm_variables`.
        scenario: how missing values are filled: the cohort means (``mean``, the
            authors' point estimate), or the least/most risky values (``best``/``worst``).
        rounding: decimals (None: unrounded).

    Returns:
        f64[n]; never ``NaN`` (every missing value is filled by the scenario).
    """
    if scenario not in ("mean", "best", "worst"):
        raise ValueError(f"ipssm_score: scenario must be 'mean', 'best' or 'worst', got {scenario!r}")
    fill = {"mean": 1, "best": 2, "worst": 3}[scenario]
    total = 0.0
    for name, (beta, mean, *_) in IPSSM_MODEL.items():
        if name == "nRes2":
            value = _f(variables[f"nRes2_{scenario}"])
        else:
            value = _f(variables[name])
            value = np.where(np.isnan(value), IPSSM_MODEL[name][fill], value)
        total = total + (value - mean) * beta
    raw = total / np.log(2.0)
    return raw if rounding is None else np.round(raw, rounding)


def ipssm_category(score: np.ndarray) -> np.ndarray:
    """IPSS-M risk group index 0 (Very Low) ... 5 (Very High): cut-points −1.5, −0.5, 0, 0.5, 1.5.

    A score equal to a cut-point falls in the lower group (intervals closed on the
    right, as the authors' ``cut``); names are ``IPSSM_CATEGORIES[index]``.
    """
    return np.searchsorted(np.array(IPSSM_CUTPOINTS), _f(score), side="left")
