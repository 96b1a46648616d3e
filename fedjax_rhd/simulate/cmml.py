"""Simulated CMML cohort calibrated on IWG-PM's CMML patients, with a ground-truth hazard (``cmml-sim-2``).

Covariates come from the Gaussian copula of :mod:`fedjax_rhd.simulate.copula`
fitted on the 262 WHO 2016 CMML patients of IWG-PM with overall survival
(``params_cmml.json``): age, sex, Hb, platelets, ANC, WBC, monocytes, bone-marrow
and peripheral blasts, the CPSS cytogenetic risk (Such et al., Blood 2013) and
the same 54 genes as the MDS simulator. 262 patients are too few for 54 genes:
prevalences of genes seen in fewer than 10 CMML patients are Beta-shrunk towards
the MDS ones (30 pseudo-patients) and the latent correlations averaged with
MDS's (CMML weight 262 / 562); common CMML genes keep their own frequencies
(TET2 60%, SRSF2 34%, ASXL1 32%).

Red-cell transfusion dependence is not in IWG-PM: it is drawn given Hb,
``P = expit(−0.6 + 1.2 (9 − Hb))``, about a fifth of patients (IWG-PM CMML Hb median
10.4 g/dL; Such et al., Blood 2013, report RBC transfusion dependence in a
minority at diagnosis).

Ground truth (``oracle_log_hazard``): CPSS-mol's ingredients at their published
effect sizes (``cpss_ingredients``: CPSS cytogenetic risk, Such et al., Blood 2013;
ASXL1, NRAS, RUNX1, SETBP1, Elena et al., Blood 2016), plus the CPSS-mol points
times ``CPSS_WEIGHT`` (0 in ``cmml-sim-2``: the score's signal is its ingredients), plus
what CPSS-mol misses (continuous, saturating blasts and WBC instead of cut-offs;
age; anaemia and thrombocytopenia; TP53, EZH2, CBL and KRAS; TET2 favourable
without ASXL1), times ``MISSED_WEIGHT``.

``cmml-sim-1`` weighted the CPSS-mol points by 0.15 only, so cytogenetics and the
four CPSS genes carried almost none of the hazard and a node without them lost
nothing (the worst scenario could not move CMML; ``experiments/simulation/STUDY.md``).
With the published effects the genomic layer carries about 0.09 of the oracle's
C-index and cytogenetics about 0.02 (``experiments/simulation/README.md``); the blasts
term was halved so that CPSS-mol's C-index stays in its published range.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from fedjax_rhd.scores import cpss
from fedjax_rhd.simulate import copula, treatment
from harmonize.guide import Guide

GENERATOR_VERSION = "cmml-sim-2"

CPSS_CYTO_LEVELS: tuple[str, ...] = ("low", "intermediate", "high")
CPSS_WEIGHT = 0.0
MISSED_WEIGHT = 1.6
WEIBULL_SHAPE = 1.62
WEIBULL_SCALE = 4.39
ETA_CENTRE = 1.40


# CPSS-mol's ingredients at (rounded, approximate) published multivariable effect sizes for
# overall survival: CPSS cytogenetic risk intermediate / high HR about 1.6 / 2.8 (Such et al.,
# Blood 2013;121:3005-15); ASXL1, NRAS, RUNX1, SETBP1 HR about 1.5 / 1.6 / 1.8 / 1.7 (Elena
# et al., Blood 2016;128:1408-17). CPSS-mol only counts them in points.
CPSS_CYTO_BETA: tuple[float, ...] = (0.0, 0.47, 1.03)
CPSS_GENE_BETA: dict[str, float] = {"ASXL1": 0.40, "NRAS": 0.47, "RUNX1": 0.59, "SETBP1": 0.53}


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def needed_features() -> dict[str, str]:
    """Feature name -> kind that the generator produces (the guide must match it exactly)."""
    params = copula.load_params("cmml")
    needed = {
        name: ("categorical" if m["kind"] == "ordinal" else m["kind"]) for name, m in params.marginals.items()
    }
    needed["transfusion_dependent"] = "binary"
    return needed


def cpss_mol(cov: dict[str, np.ndarray], missing: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """CPSS-mol points 0..6 (``NaN`` where an input is missing)."""

    def f(name: str) -> np.ndarray:
        v = np.asarray(cov[name], dtype=np.float64)
        return v if missing is None else np.where(missing[name], np.nan, v)

    genetic = cpss.cpss_genetic_risk(
        cpss.cpss_genetic_score(f("cpss_cyto"), f("ASXL1"), f("NRAS"), f("SETBP1"), f("RUNX1"))
    )
    return cpss.cpss_mol_points(genetic, f("bm_blasts"), f("wbc"), f("transfusion_dependent"))


def missed_effects(cov: dict[str, np.ndarray]) -> np.ndarray:
    """Log-hazard terms CPSS-mol does not model (see the module docstring)."""
    age, hb, plt = (np.asarray(cov[k], dtype=np.float64) for k in ("age", "hb", "plt"))
    blasts, wbc = np.asarray(cov["bm_blasts"], np.float64), np.asarray(cov["wbc"], np.float64)
    eta = 0.05 * (age - 72.0) + 0.03 * np.maximum(age - 80.0, 0.0) + 0.15 * cov["sex_male"]
    eta = eta + 0.4 * np.tanh(blasts / 8.0) + 0.5 * np.tanh(np.log(np.maximum(wbc, 0.5) / 8.0))
    eta = eta + 0.35 * _softplus(9.0 - hb) + 0.4 * _softplus(np.log(60.0 / np.maximum(plt, 1.0)) / 0.5)
    eta = eta + 1.0 * cov["TP53"] + 0.45 * cov["EZH2"] + 0.3 * cov["CBL"] + 0.3 * cov["KRAS"]
    eta = eta - 0.4 * cov["TET2"] * (1 - cov["ASXL1"])
    return eta


def cpss_ingredients(cov: dict[str, np.ndarray]) -> np.ndarray:
    """Log-hazard of CPSS-mol's cytogenetic and gene ingredients at their published effect sizes."""
    eta = np.asarray(CPSS_CYTO_BETA, dtype=np.float64)[np.asarray(cov["cpss_cyto"], dtype=np.int64)]
    for gene, beta in CPSS_GENE_BETA.items():
        eta = eta + beta * cov[gene]
    return eta


def oracle_log_hazard(cov: dict[str, np.ndarray]) -> np.ndarray:
    """Ground-truth log relative hazard from complete covariates (higher = worse)."""
    score = CPSS_WEIGHT * cpss_mol(cov) + cpss_ingredients(cov)
    return score + MISSED_WEIGHT * missed_effects(cov) - ETA_CENTRE


def draw_covariates(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Complete covariates (no missingness)."""
    from scipy.special import expit  # lazy: scipy costs ~0.1 s of every run's start-up

    params = copula.load_params("cmml")
    cov = copula.to_marginals(copula.draw_latent(rng, params, n), params, rng)
    p_td = expit(-0.6 + 1.2 * (9.0 - cov["hb"]))
    cov["transfusion_dependent"] = (rng.random(n) < p_td).astype(np.int8)
    return cov


def simulate_cmml(
    guide: Guide, n: int = 1737, seed: int = 0, *, with_treatment: bool = False
) -> pl.DataFrame:
    """Simulate a CMML cohort in the guide's schema with a known true log-hazard.

    Args:
        guide: the CMML guide (``load_guide("cmml")``).
        n: number of patients (the study's CMML cohort had 1,737).
        seed: seed of ``numpy.random.default_rng``; same seed, same frame.
        with_treatment: add the optional treatment layer (:mod:`fedjax_rhd.simulate.treatment`;
            the guide must then carry it, ``load_guide("cmml+treatment")``).

    Returns:
        As :func:`fedjax_rhd.simulate.mds.simulate_mds` (ids ``CMML-SIM-…``).

    Raises:
        ValueError: the guide does not match the generator, or ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"simulate_cmml: n must be >= 1, got {n}")
    needed = needed_features() | (treatment.FEATURES if with_treatment else {})
    copula.check_guide(guide, f"simulate_cmml ({GENERATOR_VERSION})", needed)
    if guide.feature("cpss_cyto").levels != CPSS_CYTO_LEVELS:
        raise ValueError(f"simulate_cmml: 'cpss_cyto' must have the ordered levels {CPSS_CYTO_LEVELS}")
    return copula.simulate_cohort(
        guide,
        n,
        seed,
        key="cmml",
        prefix="CMML-SIM",
        draw_covariates=draw_covariates,
        oracle_log_hazard=oracle_log_hazard,
        weibull=(WEIBULL_SHAPE, WEIBULL_SCALE),
        layer=treatment.layer("cmml", seed, lambda c: cpss_mol(c) >= 2) if with_treatment else None,
    )
