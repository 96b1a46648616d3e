"""Simulated newly diagnosed multiple myeloma with PET radiomics (generator ``mm-sim-1``).

No real myeloma cohort is at hand, so every marginal comes from a published series
(approximate; the calibration report compares them, ``experiments/simulation/``):

- Kyle RA, et al. Review of 1027 patients with newly diagnosed multiple myeloma.
  Mayo Clin Proc 2003;78:21-33: median age 66, 59% male, haemoglobin < 12 g/dL in
  73%, creatinine >= 2 mg/dL in 19%, calcium >= 11 mg/dL in 13%.
- Greipp PR, et al. International staging system for multiple myeloma. J Clin Oncol
  2005;23:3412-20: ISS I / II / III about 29 / 38 / 34%.
- Palumbo A, et al. Revised International Staging System. J Clin Oncol 2015;33:2863-9
  (3,060 patients): high LDH about 11%, R-ISS I / II / III 28 / 62 / 10%,
  del(17p) about 9%, t(4;14) about 12%, t(14;16) about 3% by iFISH.
- Walker BA, et al. A high-risk, Double-Hit, group of newly diagnosed myeloma.
  Blood 2018 (Myeloma Genome Project): 1q gain about 35%, del(1p) about 10%;
  t(4;14) myeloma carries 1q gain in most cases.

Generative story: a latent tumour burden ``B`` drives beta-2 microglobulin, albumin,
haemoglobin, LDH, calcium and (with a renal-damage term) creatinine; a latent genomic
instability ``G`` links 1q gain, del(1p) and del(17p); t(4;14) raises the odds of 1q
gain. The PET radiomics (40 standardised features, one ``valueSampledData`` vector)
come from five factors: the burden ``B``, focal-lesion load ``F`` (related to ``G``),
extramedullary / high-SUV disease ``E`` (prognostic, not in any lab) and two nuisance
factors (scanner, body habitus), in blocks of correlated features (first-order,
volume, texture) as radiomic features are (Zwanenburg A, et al. Radiology 2020,
IBSI). The true log-hazard combines an R-ISS-like part (ISS labs, LDH, high-risk
iFISH) with age, 1q gain, del(1p), renal function and the PET factors ``F`` and
``E``, so PET carries part of the prognostic signal.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from fedjax_rhd.scores import riss
from fedjax_rhd.simulate.common import check_guide, draw_outcome, frame
from harmonize.guide import Guide

GENERATOR_VERSION = "mm-sim-1"
PET_FEATURES = 40
LDH_ULN = 250.0  # U/L, upper limit of normal for the R-ISS LDH criterion
_LOADINGS_SEED = 20150901  # fixed: the radiomic loadings are part of the generator, not of a draw

_BOUNDS: dict[str, tuple[float, float]] = {
    "age": (30.0, 92.0),
    "beta2m": (0.8, 40.0),
    "albumin": (1.5, 5.5),
    "ldh": (80.0, 2000.0),
    "creatinine": (0.4, 12.0),
    "calcium": (7.0, 16.0),
    "hb": (5.0, 17.0),
}
_CYTO = ("t_4_14", "t_14_16")
_CNV = ("del17p", "gain1q", "del1p")

# log HR of the truth.
_BETA = {
    "age": 0.035,
    "age_old": 0.03,
    "log_beta2m": 0.55,
    "albumin": -0.30,
    "ldh_high": 0.55,
    "del17p": 0.75,
    "t_4_14": 0.45,
    "t_14_16": 0.40,
    "gain1q": 0.35,
    "del1p": 0.40,
    "log_creatinine": 0.20,
    "pet_focal": 0.60,
    "pet_extramedullary": 0.60,
}
# Tuned on n = 20,000, seed 0: oracle C 0.815, R-ISS C 0.636, 5-year OS 61% (Palumbo
# 2015: 82 / 62 / 40% by R-ISS stage, about 63% overall), 34% deaths, median follow-up 4.1 y
# (Palumbo 2015: 46 months). The PET factors alone move the truth's C from ~0.73 to 0.815.
_SIGNAL_SCALE = 1.2
_ETA_CENTRE = 0.454  # mean of the scaled signal
_WEIBULL_SHAPE = 1.1
_WEIBULL_SCALE = 12.0
_FOLLOW_UP = (1.0, 8.0)
_LOSS_RATE = 0.03
_MISSING = {"beta2m": 0.03, "albumin": 0.02, "ldh": 0.08, "creatinine": 0.01, "calcium": 0.02, "hb": 0.01}
_MISSING_FISH = 0.10  # no informative iFISH (too few plasma cells)
_MISSING_PET = 0.06  # no baseline PET/CT


def pet_loadings() -> np.ndarray:
    """f64[40, 5] loadings of the radiomic features on (B, F, E, scanner, habitus).

    Blocks of 8: first-order SUV statistics (B, E), volume / lesion counts (F, B),
    texture heterogeneity (F, E), scanner-sensitive texture (scanner), shape and
    body-size features (habitus); small cross-loadings everywhere.
    """
    rng = np.random.default_rng(_LOADINGS_SEED)
    main = [(0, 2), (1, 0), (1, 2), (3, 1), (4, 0)]
    load = rng.normal(0.0, 0.12, (PET_FEATURES, 5))
    for block, (a, b) in enumerate(main):
        rows = slice(8 * block, 8 * block + 8)
        load[rows, a] += rng.uniform(0.55, 0.85, 8)
        load[rows, b] += rng.uniform(0.2, 0.45, 8) * rng.choice([-1.0, 1.0], 8)
    return load


def _needed() -> dict[str, str]:
    needed = {name: "continuous" for name in _BOUNDS}
    needed |= {"sex_male": "binary"} | {c: "binary" for c in (*_CYTO, *_CNV)}
    needed |= {f"pet_{j:02d}": "continuous" for j in range(1, PET_FEATURES + 1)}
    return needed


def _draw(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Complete covariates and the latent factors ``f64[n, 5]`` (B, F, E, scanner, habitus)."""
    from scipy.special import expit  # lazy: scipy costs ~0.1 s of every run's start-up

    cov: dict[str, np.ndarray] = {}
    cov["sex_male"] = (rng.random(n) < 0.59).astype(np.int8)
    cov["age"] = np.clip(np.round(66.0 + 10.0 * rng.standard_normal(n)), *_BOUNDS["age"])
    burden = rng.standard_normal(n)
    instability = rng.standard_normal(n)
    cov["t_4_14"] = (rng.random(n) < 0.12).astype(np.int8)
    cov["t_14_16"] = ((rng.random(n) < 0.035) & (cov["t_4_14"] == 0)).astype(np.int8)
    cov["gain1q"] = (rng.random(n) < expit(-0.95 + 0.9 * instability + 1.6 * cov["t_4_14"])).astype(np.int8)
    cov["del1p"] = (rng.random(n) < expit(-2.6 + 0.8 * instability)).astype(np.int8)
    cov["del17p"] = (rng.random(n) < expit(-2.6 + 0.6 * instability)).astype(np.int8)
    renal = rng.standard_normal(n)
    log_creat = 0.75 * np.maximum(renal, -0.8) + 0.15 * burden + 0.1 * rng.standard_normal(n)
    cov["creatinine"] = np.clip(np.round(np.exp(log_creat), 2), *_BOUNDS["creatinine"])
    log_b2m = np.log(3.6) + 0.55 * burden + 0.3 * log_creat + 0.3 * rng.standard_normal(n)
    cov["beta2m"] = np.clip(np.round(np.exp(log_b2m), 1), *_BOUNDS["beta2m"])
    albumin = 3.6 - 0.3 * burden + 0.5 * rng.standard_normal(n)
    cov["albumin"] = np.clip(np.round(albumin, 1), *_BOUNDS["albumin"])
    hb = 10.8 - 0.9 * burden - 0.4 * renal + 1.4 * rng.standard_normal(n)
    cov["hb"] = np.clip(np.round(hb, 1), *_BOUNDS["hb"])
    extramedullary = rng.standard_normal(n)
    log_ldh = np.log(172.0) + 0.15 * burden + 0.18 * extramedullary + 0.22 * rng.standard_normal(n)
    cov["ldh"] = np.clip(np.round(np.exp(log_ldh)), *_BOUNDS["ldh"])
    calcium = 9.9 + 0.45 * burden + 0.8 * rng.standard_normal(n)
    cov["calcium"] = np.clip(np.round(calcium, 1), *_BOUNDS["calcium"])
    focal = 0.5 * instability + np.sqrt(0.75) * rng.standard_normal(n)
    factors = np.column_stack([burden, focal, extramedullary, rng.standard_normal(n), rng.standard_normal(n)])
    pet = factors @ pet_loadings().T + 0.5 * rng.standard_normal((n, PET_FEATURES))
    for j in range(PET_FEATURES):
        cov[f"pet_{j + 1:02d}"] = np.round(pet[:, j], 4)
    return cov, factors


def oracle_log_hazard(cov: dict[str, np.ndarray], factors: np.ndarray) -> np.ndarray:
    """Ground-truth log relative hazard (higher = worse) from complete covariates and PET factors."""
    c = {k: np.asarray(v, dtype=np.float64) for k, v in cov.items()}
    b = _BETA
    eta = b["age"] * (c["age"] - 66.0) + b["age_old"] * np.maximum(c["age"] - 75.0, 0.0)
    eta += b["log_beta2m"] * np.log(c["beta2m"] / 3.5) + b["albumin"] * (c["albumin"] - 3.5)
    eta += b["ldh_high"] * (c["ldh"] > LDH_ULN)
    eta += sum(b[k] * c[k] for k in (*_CYTO, *_CNV))
    eta += b["log_creatinine"] * np.log(c["creatinine"])
    eta += b["pet_focal"] * factors[:, 1] + b["pet_extramedullary"] * factors[:, 2]
    return _SIGNAL_SCALE * eta - _ETA_CENTRE


def _missingness(rng: np.random.Generator, guide: Guide, n: int) -> dict[str, np.ndarray]:
    out = {f.name: np.zeros(n, dtype=bool) for f in guide.features}
    for name, rate in _MISSING.items():
        out[name] = rng.random(n) < rate
    no_fish, no_pet = rng.random(n) < _MISSING_FISH, rng.random(n) < _MISSING_PET
    for f in guide.features:
        if f.group in ("cytogenetic", "cnv"):
            out[f.name] = no_fish.copy()
        elif f.group == "pet":
            out[f.name] = no_pet.copy()
    return out


def simulate_mm(guide: Guide, n: int = 1005, seed: int = 0) -> pl.DataFrame:
    """Simulate a myeloma cohort in the guide's schema with a known true log-hazard.

    Args:
        guide: the MM guide (``load_guide("mm")``).
        n: number of patients (the study's MM size, 1,005).
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``patient_id`` (``MM-SIM-...``), ``centre``, the features in guide order,
        ``time``, ``event``, ``oracle_risk``.
    """
    if n < 1:
        raise ValueError(f"simulate_mm: n must be >= 1, got {n}")
    check_guide(guide, _needed(), _BOUNDS, f"simulate_mm ({GENERATOR_VERSION})")
    rng = np.random.default_rng(seed)
    cov, factors = _draw(rng, n)
    eta = oracle_log_hazard(cov, factors)
    time, event = draw_outcome(
        rng, eta, shape=_WEIBULL_SHAPE, scale=_WEIBULL_SCALE, follow_up=_FOLLOW_UP, loss_rate=_LOSS_RATE
    )
    return frame("MM-SIM", guide, cov, _missingness(rng, guide, n), time, event, eta)


def riss_score(table: pl.DataFrame) -> np.ndarray:
    """R-ISS stage 1-3 (``NaN`` where undetermined) of a simulated MM table."""

    def num(name: str) -> np.ndarray:
        return table[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    hr = np.stack([num(k) for k in ("del17p", "t_4_14", "t_14_16")])
    high_risk = np.where(np.any(hr == 1, axis=0), 1.0, np.where(np.all(hr == 0, axis=0), 0.0, np.nan))
    ldh = num("ldh")
    ldh_high = np.where(np.isnan(ldh), np.nan, (ldh > LDH_ULN) * 1.0)
    return riss.riss_stage(num("beta2m"), num("albumin"), high_risk, ldh_high)
