"""Simulated MDS cohort calibrated on IWG-PM, with a documented ground-truth hazard (``mds-sim-3``).

Covariates come from the Gaussian copula of :mod:`fedjax_rhd.simulate.copula`,
fitted on the 2,494 IWG-PM patients with overall survival and a WHO 2016
diagnosis other than CMML (``params_mds.json``, written by
``experiments/simulation/fit.py``): age, sex, Hb, platelets, ANC, bone-marrow
blasts, the IPSS-R cytogenetic category, seven cytogenetic lesions (del(5q),
−7/del(7q), complex karyotype, +8, del(20q), −Y, del(17p)) and the 54 most
frequent mutated genes. TP53 multi-hit (an IPSS-M input) is drawn given TP53 and
complex karyotype at the real conditional rates.

Ground truth (``oracle_log_hazard``, complete covariates, before missingness):

* the clinical score's signal: the IPSS-M linear predictor (Bernard et al., NEJM
  Evidence 2022; HB, platelets, blasts, IPSS-R cytogenetics, TP53 multi-hit,
  FLT3, KMT2A-PTD, SF3B1 with del(5q), the main genes, SF3B1α, nRes2) times
  ``IPSSM_WEIGHT``;
* what IPSS-M misses, scaled together by ``MISSED_WEIGHT``: age (Gompertz-like,
  steeper after 80) and sex; non-linear lab effects (anaemia below 8.5 g/dL,
  severe thrombocytopenia below ~30, neutropenia below 0.5); TP53 multi-hit with
  complex karyotype; SF3B1 favourable only when isolated; DDX41 favourable, STAG2
  and BCOR beyond nRes2; 33 rarer genes with modest effects (``_OTHER_GENE_BETA``);
  and 28 interactions (``_PAIR_BETA``): 20 gene-gene or gene-lesion pairs
  (co-mutations such as TET2-ASXL1, STAG2-RUNX1 adverse, SF3B1-TET2 favourable)
  and 8 genes whose effect depends on a lab threshold (RUNX1 or SRSF2 with ≥5%
  blasts, ASXL1 or STAG2 with platelets <50, SF3B1 with Hb <8, DNMT3A with
  ANC <1, TP53 and TET2 from age 75).

Why this balance (``mds-sim-3``): the study's pattern needs signal that only
pooled data can learn. The interaction terms are strong (log-HR 0.7-1.3) on
pairs carried by 1-9% of patients: a node of ~300 training patients sees a
handful of carriers of each, the federation hundreds. The IPSS-M term is
weighted 0.25 and the age slope is a third of ``mds-sim-2``'s (easy main effects
that every node learns alone); the interactions carry IPSS-M genes, so IPSS-M
still ranks patients as on real data. Constraints met on a draw of 50,000
(``experiments/simulation/README.md``): oracle C 0.78-0.85, IPSS-M 0.70-0.76,
IPSS-R 0.66-0.72. The age effect is weaker than in real cohorts (about 0.14
log-HR per decade before 80), a known compromise.

Weibull baseline and censoring: see :func:`fedjax_rhd.simulate.copula.draw_outcome`;
shape and scale tuned by ``experiments/simulation/calibrate.py`` so the
simulated Kaplan-Meier curve and censoring fraction match IWG-PM's.
Calibration figures: ``experiments/simulation/README.md``.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from fedjax_rhd.scores import ipss
from fedjax_rhd.simulate import copula, treatment
from harmonize.guide import Guide

GENERATOR_VERSION = "mds-sim-3"

CYTO_LEVELS: tuple[str, ...] = ("very_good", "good", "intermediate", "poor", "very_poor")
LESIONS: tuple[str, ...] = ("del5q", "del7_7q", "complex_karyotype", "plus8", "del20q", "delY", "del17p")

IPSSM_WEIGHT = 0.25
MISSED_WEIGHT = 1.02
WEIBULL_SHAPE = 1.57
WEIBULL_SCALE = 3.99
ETA_CENTRE = 1.11

_SF3B1_SPOILERS: tuple[str, ...] = (
    "SRSF2", "U2AF1", "ZRSR2", "STAG2", "BCOR", "BCORL1", "RUNX1", "NRAS", "ASXL1", "EZH2", "TP53",
)  # fmt: skip


# Genes outside IPSS-M's individual terms (beyond its capped nRes2 count), each with a
# modest effect: rare and many, so they take many patients to learn (the ~1-4% genes of
# IWG-PM; signs follow the direction of their univariate association there).
_OTHER_GENE_BETA: dict[str, float] = {
    "CUX1": 0.42, "PHF6": 0.36, "SETBP1": 0.36, "NF1": 0.42, "IDH1": 0.36, "JAK2": -0.36, "MPL": -0.30,
    "CEBPA": 0.36, "KMT2C": 0.36, "PPM1D": 0.48, "SH2B3": 0.36, "BCORL1": 0.36, "CTCF": 0.42, "PTPN11": 0.42,
    "WT1": 0.54, "GATA2": 0.42, "EP300": 0.36, "ARID2": 0.36, "GNAS": 0.36, "KMT2D": 0.36, "SMC1A": 0.48,
    "ASXL2": 0.36, "CREBBP": 0.36, "MGA": 0.36, "IRF1": 0.36, "RAD21": 0.54, "SUZ12": 0.48, "KDM6A": 0.36,
    "RAD50": 0.30, "U2AF2": 0.48, "BRCC3": -0.30, "ETNK1": 0.42, "GNB1": 0.36,
}  # fmt: skip
# Interactions IPSS-M does not model (log-HR added when both flags are 1; lab flags from
# _lab_flags). Strong on purpose: they are what a small node cannot learn alone.
_PAIR_BETA: dict[tuple[str, str], float] = {
    ("DNMT3A", "IDH2"): 1.26,
    ("STAG2", "RUNX1"): 1.12,
    ("TET2", "SRSF2"): 0.98,
    ("NRAS", "CBL"): 1.12,
    ("EZH2", "RUNX1"): 1.12,
    ("TET2", "ZRSR2"): -0.98,
    ("TET2", "ASXL1"): 0.98,
    ("SF3B1", "TET2"): -0.84,
    ("TET2", "DNMT3A"): -0.84,
    ("STAG2", "ASXL1"): 0.98,
    ("U2AF1", "ASXL1"): 1.12,
    ("ASXL1", "EZH2"): 0.98,
    ("plus8", "ASXL1"): 1.12,
    ("BCOR", "RUNX1"): 1.12,
    ("del5q", "TP53"): 0.98,
    ("SF3B1", "DNMT3A"): -0.84,
    ("ASXL1", "SRSF2"): 0.84,
    ("IDH2", "SRSF2"): 0.98,
    ("BCOR", "ASXL1"): 0.98,
    ("delY", "TET2"): -0.84,
    # genes whose effect depends on a lab threshold (flags from _lab_flags)
    ("RUNX1", "blasts_ge5"): 0.98,
    ("SRSF2", "blasts_ge5"): 0.84,
    ("ASXL1", "plt_lt50"): 0.98,
    ("STAG2", "plt_lt50"): 0.84,
    ("SF3B1", "hb_lt8"): 0.98,
    ("DNMT3A", "anc_lt1"): 0.84,
    ("TP53", "age_ge75"): 0.84,
    ("TET2", "age_ge75"): -0.70,
}


def _lab_flags(cov: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Threshold flags of the labs that modify some genes' effects (``_PAIR_BETA``)."""
    num = {k: np.asarray(cov[k], dtype=np.float64) for k in ("bm_blasts", "plt", "hb", "anc", "age")}
    return {
        "blasts_ge5": (num["bm_blasts"] >= 5.0).astype(np.int8),
        "plt_lt50": (num["plt"] < 50.0).astype(np.int8),
        "hb_lt8": (num["hb"] < 8.0).astype(np.int8),
        "anc_lt1": (num["anc"] < 1.0).astype(np.int8),
        "age_ge75": (num["age"] >= 75.0).astype(np.int8),
    }


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def needed_features() -> dict[str, str]:
    """Feature name -> kind that the generator produces (the guide must match it exactly)."""
    params = copula.load_params("mds")
    needed = {name: m["kind"] for name, m in params.marginals.items()}
    needed = {k: ("categorical" if v == "ordinal" else v) for k, v in needed.items()}
    needed["TP53multi"] = "binary"
    return needed


def ipssm_linear(cov: dict[str, np.ndarray], missing: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """IPSS-M raw score (mean scenario, unrounded) from covariates; ``missing`` blanks inputs."""
    n = cov["hb"].shape[0]

    def f(name: str) -> np.ndarray:
        v = np.asarray(cov[name], dtype=np.float64) if name in cov else np.full(n, np.nan)
        return v if missing is None or name not in missing else np.where(missing[name], np.nan, v)

    genes = {g: f(g) for g in ipss.IPSSM_GENES if g in cov}
    variables = ipss.ipssm_variables(
        f("hb"),
        f("plt"),
        f("bm_blasts"),
        f("ipssr_cyto"),
        genes,
        del5q=f("del5q"),
        del7_7q=f("del7_7q"),
        complex_karyotype=f("complex_karyotype"),
    )
    return ipss.ipssm_score(variables, "mean", rounding=None)


def missed_effects(cov: dict[str, np.ndarray]) -> np.ndarray:
    """Log-hazard terms IPSS-M does not model (see the module docstring)."""
    from scipy.special import expit  # lazy: scipy costs ~0.1 s of every run's start-up

    age, hb, plt, anc = (np.asarray(cov[k], dtype=np.float64) for k in ("age", "hb", "plt", "anc"))
    eta = 0.0135 * (age - 72.0) + 0.012 * np.maximum(age - 80.0, 0.0) + 0.15 * cov["sex_male"]
    eta = eta + 0.30 * _softplus(8.5 - hb)
    eta = eta + 0.35 * _softplus(np.log(30.0 / np.maximum(plt, 1.0)) / 0.4)
    eta = eta + 0.35 * expit((0.5 - anc) / 0.08)
    eta = eta + 0.80 * cov["TP53multi"] * cov["complex_karyotype"]
    isolated = ~np.any([cov[g] == 1 for g in _SF3B1_SPOILERS], axis=0)
    eta = eta - 0.40 * cov["SF3B1"] * isolated
    eta = eta + 0.35 * cov["ASXL1"] * cov["RUNX1"]
    eta = eta - 0.40 * cov["DDX41"] + 0.25 * cov["STAG2"] + 0.15 * cov["BCOR"]
    for gene, beta in _OTHER_GENE_BETA.items():
        eta = eta + beta * cov[gene]
    flags = {**cov, **_lab_flags(cov)}
    for (a, b), beta in _PAIR_BETA.items():
        eta = eta + beta * flags[a] * flags[b]
    return eta


def oracle_log_hazard(cov: dict[str, np.ndarray]) -> np.ndarray:
    """Ground-truth log relative hazard from complete covariates (higher = worse).

    Args:
        cov: complete covariates by feature name (``ipssr_cyto`` as codes 0..4,
            flags 0/1).

    Returns:
        f64[n]: ``IPSSM_WEIGHT · ln 2 · IPSS-M + MISSED_WEIGHT · missed − ETA_CENTRE``.
    """
    return IPSSM_WEIGHT * np.log(2.0) * ipssm_linear(cov) + MISSED_WEIGHT * missed_effects(cov) - ETA_CENTRE


def draw_covariates(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Complete covariates (no missingness)."""
    params = copula.load_params("mds")
    cov = copula.to_marginals(copula.draw_latent(rng, params, n), params, rng)
    p_multi = params.raw["tp53multi_given_tp53"]
    p = np.where(cov["complex_karyotype"] == 1, p_multi["complex"], p_multi["not_complex"])
    cov["TP53multi"] = ((cov["TP53"] == 1) & (rng.random(n) < p)).astype(np.int8)
    return cov


def simulate_mds(guide: Guide, n: int = 4427, seed: int = 0, *, with_treatment: bool = False) -> pl.DataFrame:
    """Simulate an MDS cohort in the guide's schema with a known true log-hazard.

    Args:
        guide: the MDS implementation guide (``load_guide("mds")``); its features
            must be exactly those the generator models.
        n: number of patients.
        seed: seed of ``numpy.random.default_rng``; same seed, same frame.
        with_treatment: add the optional treatment layer (:mod:`fedjax_rhd.simulate.treatment`;
            the guide must then carry it, ``load_guide("mds+treatment")``).

    Returns:
        One row per patient, sorted by ``patient_id``: ``patient_id``, ``centre``
        ("simulated"), the guide's features in guide order (continuous Float64,
        binary Int8, categorical String; nulls where missing), ``time`` (years,
        whole days), ``event`` (Int8) and ``oracle_risk`` (Float64).

    Raises:
        ValueError: the guide does not match the generator, or ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"simulate_mds: n must be >= 1, got {n}")
    needed = needed_features() | (treatment.FEATURES if with_treatment else {})
    copula.check_guide(guide, f"simulate_mds ({GENERATOR_VERSION})", needed)
    if guide.feature("ipssr_cyto").levels != CYTO_LEVELS:
        raise ValueError(f"simulate_mds: 'ipssr_cyto' must have the ordered IPSS-R levels {CYTO_LEVELS}")
    return copula.simulate_cohort(
        guide,
        n,
        seed,
        key="mds",
        prefix="MDS-SIM",
        draw_covariates=draw_covariates,
        oracle_log_hazard=oracle_log_hazard,
        weibull=(WEIBULL_SHAPE, WEIBULL_SCALE),
        layer=treatment.layer("mds", seed, lambda c: ipssm_linear(c) > 0.0) if with_treatment else None,
    )
