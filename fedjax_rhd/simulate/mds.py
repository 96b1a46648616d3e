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
* what IPSS-M misses: age (Gompertz-like, steeper after 80) and sex;
  non-linear lab effects (anaemia below 8.5 g/dL, severe thrombocytopenia
  below ~30, neutropenia below 0.5); gene-gene interactions (TP53 multi-hit
  with complex karyotype; SF3B1 favourable only when isolated; ASXL1 with
  RUNX1; six more pairs in ``_PAIR_BETA``); genes outside IPSS-M's individual
  terms (DDX41 favourable, STAG2 and BCOR beyond nRes2, 33 rarer genes with
  modest effects in ``_OTHER_GENE_BETA``, which take many patients to learn);
  scaled together by ``MISSED_WEIGHT``.

Weibull baseline and censoring: see :func:`fedjax_rhd.simulate.copula.draw_outcome`;
shape and scale tuned by ``experiments/simulation/calibrate.py`` so the
simulated Kaplan-Meier curve and censoring fraction match IWG-PM's.
Calibration figures: ``experiments/simulation/README.md``.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.special import expit

from fedjax_rhd.scores import ipss
from fedjax_rhd.simulate import copula
from harmonize.guide import Guide

GENERATOR_VERSION = "mds-sim-3"

CYTO_LEVELS: tuple[str, ...] = ("very_good", "good", "intermediate", "poor", "very_poor")
LESIONS: tuple[str, ...] = ("del5q", "del7_7q", "complex_karyotype", "plus8", "del20q", "delY", "del17p")

IPSSM_WEIGHT = 0.7
MISSED_WEIGHT = 1.7
WEIBULL_SHAPE = 1.56
WEIBULL_SCALE = 4.47
ETA_CENTRE = 0.82

_SF3B1_SPOILERS: tuple[str, ...] = (
    "SRSF2", "U2AF1", "ZRSR2", "STAG2", "BCOR", "BCORL1", "RUNX1", "NRAS", "ASXL1", "EZH2", "TP53",
)  # fmt: skip


# Genes outside IPSS-M's individual terms (beyond its capped nRes2 count), each with a
# modest effect: rare and many, so they take many patients to learn (the ~1-4% genes of
# IWG-PM; signs follow the direction of their univariate association there).
_OTHER_GENE_BETA: dict[str, float] = {
    "CUX1": 0.35, "PHF6": 0.30, "SETBP1": 0.30, "NF1": 0.35, "IDH1": 0.30, "JAK2": -0.30, "MPL": -0.25,
    "CEBPA": 0.30, "KMT2C": 0.30, "PPM1D": 0.40, "SH2B3": 0.30, "BCORL1": 0.30, "CTCF": 0.35, "PTPN11": 0.35,
    "WT1": 0.45, "GATA2": 0.35, "EP300": 0.30, "ARID2": 0.30, "GNAS": 0.30, "KMT2D": 0.30, "SMC1A": 0.40,
    "ASXL2": 0.30, "CREBBP": 0.30, "MGA": 0.30, "IRF1": 0.30, "RAD21": 0.45, "SUZ12": 0.40, "KDM6A": 0.30,
    "RAD50": 0.25, "U2AF2": 0.40, "BRCC3": -0.25, "ETNK1": 0.35, "GNB1": 0.30,
}  # fmt: skip
# Gene-gene interactions IPSS-M does not model (log-HR added when both are mutated).
_PAIR_BETA: dict[tuple[str, str], float] = {
    ("DNMT3A", "IDH2"): 0.45,
    ("STAG2", "RUNX1"): 0.40,
    ("TET2", "SRSF2"): 0.35,
    ("NRAS", "CBL"): 0.40,
    ("EZH2", "RUNX1"): 0.40,
    ("TET2", "ZRSR2"): -0.35,
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
    age, hb, plt, anc = (np.asarray(cov[k], dtype=np.float64) for k in ("age", "hb", "plt", "anc"))
    eta = 0.045 * (age - 72.0) + 0.04 * np.maximum(age - 80.0, 0.0) + 0.15 * cov["sex_male"]
    eta = eta + 0.30 * _softplus(8.5 - hb)
    eta = eta + 0.35 * _softplus(np.log(30.0 / np.maximum(plt, 1.0)) / 0.4)
    eta = eta + 0.35 * expit((0.5 - anc) / 0.08)
    eta = eta + 0.50 * cov["TP53multi"] * cov["complex_karyotype"]
    isolated = ~np.any([cov[g] == 1 for g in _SF3B1_SPOILERS], axis=0)
    eta = eta - 0.40 * cov["SF3B1"] * isolated
    eta = eta + 0.35 * cov["ASXL1"] * cov["RUNX1"]
    eta = eta - 0.40 * cov["DDX41"] + 0.25 * cov["STAG2"] + 0.15 * cov["BCOR"]
    for gene, beta in _OTHER_GENE_BETA.items():
        eta = eta + beta * cov[gene]
    for (a, b), beta in _PAIR_BETA.items():
        eta = eta + beta * cov[a] * cov[b]
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


def simulate_mds(guide: Guide, n: int = 4427, seed: int = 0) -> pl.DataFrame:
    """Simulate an MDS cohort in the guide's schema with a known true log-hazard.

    Args:
        guide: the MDS implementation guide (``load_guide("mds")``); its features
            must be exactly those the generator models.
        n: number of patients.
        seed: seed of ``numpy.random.default_rng``; same seed, same frame.

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
    copula.check_guide(guide, f"simulate_mds ({GENERATOR_VERSION})", needed_features())
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
    )
