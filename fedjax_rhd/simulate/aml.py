"""Simulated AML cohort calibrated on Beat AML 2.0 (generator ``aml-sim-1``).

Generative story, per patient (parameters in ``params/aml_beat.json``, fitted by
``experiments/simulation/fit_aml.py`` on the Beat AML 2.0 cohort, Bottomly D, et al.
Cancer Cell 2022;40:850-64; the real data are never read here):

1. A genetic *class* by ELN-like precedence: core-binding factor, KMT2A, rare adverse
   fusion, TP53/complex, NPM1, myelodysplasia-related, other, with Beat AML's shares.
2. The class's defining lesions as one of its observed patterns (so a TP53/complex
   patient has TP53 and/or a complex karyotype in Beat AML's proportions); every other
   karyotype flag, gene and de novo status Bernoulli with the class's frequency.
   Flags that define an earlier class are 0 (precedence). Normal karyotype is forced
   off when a karyotype lesion is drawn.
3. Age and labs jointly Gaussian on a modelling scale (log WBC / PLT / LDH, logit
   blasts): class means plus FLT3-ITD and de novo effects plus Beat AML's pooled
   within-class covariance; then back-transformed, rounded and clipped.
4. Layers Beat AML lacks, from published figures: FLT3-ITD allelic ratio (log-normal,
   median 0.5, the ELN 2017 cut-off that halves ITD-positive patients; Döhner H, et al.
   Blood 2017;129:424-47); TP53 VAF (Beta with median ~0.4, 90% at or above 10%;
   Grob T, et al. Blood 2022;139:2347-54); CEBPA in-frame bZIP in 60% of CEBPA-mutated
   AML (Taube F, et al. Blood 2022;139:87-103; an approximation); ZRSR2 1.5% (ELN 2022
   myelodysplasia-related gene, below Beat AML's 3% panel threshold; an assumption).
5. Ground-truth log-hazard from the complete covariates: an ELN-2022-like genetic
   signal plus what ELN ignores (age, which dominates AML survival; secondary AML;
   FLT3-ITD allelic ratio; TP53 VAF; WBC, LDH, platelets).
6. Weibull survival and censoring (``common.draw_outcome``), tuned to Beat AML's
   Kaplan-Meier median OS (1.4 years), 61% deaths and reverse-KM median follow-up 3.7 y.
7. Missingness from Beat AML: the karyotype (9%) and gene panel (6%) as blocks, labs
   at their own rates (LDH 57%, PB blasts 36%, Hb 34%, ...).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedjax_rhd.scores import eln
from fedjax_rhd.simulate.common import check_guide, draw_outcome, frame
from harmonize.guide import Guide

GENERATOR_VERSION = "aml-sim-1"
PARAMS_FILE = Path(__file__).with_name("params") / "aml_beat.json"

_BOUNDS: dict[str, tuple[float, float]] = {
    "age": (18.0, 90.0),
    "hb": (3.0, 16.0),
    "wbc": (0.2, 400.0),
    "plt": (2.0, 900.0),
    "bm_blasts": (0.0, 100.0),
    "pb_blasts": (0.0, 100.0),
    "ldh": (80.0, 8000.0),
    "FLT3_ITD_ar": (0.01, 10.0),
    "TP53_vaf": (0.02, 1.0),
}
_AR_MEDIAN, _AR_LOG_SD = 0.5, 0.8
_TP53_VAF_BETA = (2.2, 3.2)  # mean 0.41, P(VAF < 0.1) ~ 0.08
_CEBPA_FREQ = 0.055 * 0.6  # Beat AML CEBPA 5.5% x in-frame bZIP share
_ZRSR2_FREQ = 0.015
# Beat AML flags left out: CEBPA (replaced by CEBPA_bZIP), PDS5B (not in the project's
# HGNC table of myeloid panel genes, and of no known prognostic value).
_NOT_SIMULATED = ("CEBPA", "PDS5B")

# Ground-truth log-hazard. ELN-like genetics (log HR): favourable -0.8 (CBF, NPM1
# without high-AR ITD, bZIP CEBPA), adverse lesions +0.45, complex +0.35 more, TP53
# by VAF, MR genes +0.25 (first) +0.15 (each further, up to 3). Beyond ELN: age
# (Gompertz-like), secondary AML, ITD allelic ratio, WBC / LDH / PLT.
_BETA = {
    "cbf": -0.70,
    "npm1_fav": -0.55,
    "cebpa": -0.55,
    "adverse_cyto": 0.35,
    "complex": 0.30,
    "tp53": 0.45,
    "tp53_vaf": 1.30,
    "mr_first": 0.25,
    "mr_more": 0.15,
    "itd": 0.15,
    "itd_ar": 0.45,
    "secondary": 0.35,
    "age": 0.04,
    "age_old": 0.03,
    "wbc": 0.18,
    "ldh": 0.20,
    "plt": 0.15,
    "dnmt3a": 0.15,
    "runx1": 0.15,
}
# Tuned on n = 20,000, seed 0: oracle C 0.809, ELN 2022 C 0.656, KM median OS 1.47 y,
# 62% deaths, reverse-KM median follow-up 3.7 y (Beat AML: 1.38 y, 61%, 3.7 y).
_SIGNAL_SCALE = 1.3
_ETA_CENTRE = 0.868  # mean of the scaled signal, so oracle_risk averages about 0
_WEIBULL_SHAPE = 0.85
_WEIBULL_SCALE = 2.6
_FOLLOW_UP = (0.5, 9.0)
_LOSS_RATE = 0.06


@cache
def params() -> dict[str, Any]:
    """The fitted parameters (``params/aml_beat.json``)."""
    return json.loads(PARAMS_FILE.read_text())


def _needed() -> dict[str, str]:
    p = params()
    binary = [*p["targets"]["freq"]]
    binary = [b for b in binary if b not in _NOT_SIMULATED] + ["CEBPA_bZIP", "ZRSR2"]
    needed = {c: "continuous" for c in p["continuous"]}
    needed |= {b: "binary" for b in binary}
    needed |= {"FLT3_ITD_ar": "continuous", "TP53_vaf": "continuous"}
    return needed


def _inverse(name: str, z: np.ndarray) -> np.ndarray:
    from scipy.special import expit  # lazy: scipy costs ~0.1 s of every run's start-up

    if name in ("wbc", "plt", "ldh"):
        return np.exp(z)
    if name in ("bm_blasts", "pb_blasts"):
        return 100.0 * expit(z)
    return z


def _round(name: str, x: np.ndarray) -> np.ndarray:
    digits = {"age": 0, "hb": 1, "wbc": 2, "plt": 0, "bm_blasts": 0, "pb_blasts": 0, "ldh": 0}
    return np.round(x, digits.get(name, 3))


def _draw_covariates(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    p = params()
    classes = p["classes"]
    share = np.array([c["share"] for c in classes])
    cls = np.searchsorted(np.cumsum(share), rng.random(n) * share.sum())
    cls = np.minimum(cls, len(classes) - 1)
    flags = [b for b in p["targets"]["freq"]]
    cov: dict[str, np.ndarray] = {b: np.zeros(n, dtype=np.int8) for b in flags}
    for k, c in enumerate(classes):
        rows = np.flatnonzero(cls == k)
        if rows.size == 0:
            continue
        if c["defining"]:
            keys = list(c["patterns"])
            counts = np.array([c["patterns"][s] for s in keys], dtype=np.float64)
            pick = np.searchsorted(np.cumsum(counts), rng.random(rows.size) * counts.sum())
            bits = np.array([[int(ch) for ch in keys[i]] for i in pick], dtype=np.int8).reshape(rows.size, -1)
            for j, f in enumerate(c["defining"]):
                cov[f][rows] = bits[:, j]
        for f, q in c["freq"].items():
            cov[f][rows] = (rng.random(rows.size) < q).astype(np.int8)
    cyto_lesions = [
        f for f in eln.ELN2022_FAVOURABLE_CBF + eln.ELN2022_ADVERSE_CYTO + ("t_9_11",) if f in cov
    ]
    any_lesion = np.any([cov[f] == 1 for f in cyto_lesions], axis=0)
    cov["normal_karyotype"] = np.where(any_lesion, 0, cov["normal_karyotype"]).astype(np.int8)

    cont = p["continuous"]
    mean = np.array([classes[k]["lab_mean"] for k in range(len(classes))])[cls]
    mean = mean + np.outer(cov["FLT3_ITD"], p["lab_effects"]["FLT3_ITD"])
    mean = mean + np.outer(cov["de_novo"], p["lab_effects"]["de_novo"])
    chol = np.linalg.cholesky(np.asarray(p["lab_cov"]))
    z = mean + rng.standard_normal((n, len(cont))) @ chol.T
    for j, name in enumerate(cont):
        cov[name] = np.clip(_round(name, _inverse(name, z[:, j])), *_BOUNDS[name])

    ar = np.exp(np.log(_AR_MEDIAN) + _AR_LOG_SD * rng.standard_normal(n))
    ar = np.clip(np.round(ar, 2), *_BOUNDS["FLT3_ITD_ar"])
    cov["FLT3_ITD_ar"] = np.where(cov["FLT3_ITD"] == 1, ar, 0.0)
    vaf = rng.beta(*_TP53_VAF_BETA, n)
    cov["TP53_vaf"] = np.where(cov["TP53"] == 1, np.clip(np.round(vaf, 3), *_BOUNDS["TP53_vaf"]), 0.0)
    # Beat AML's CEBPA flag is any CEBPA mutation; bZIP in-frame AML is its own ELN
    # favourable class, so it is drawn in the MR / other classes at the overall rate.
    for name in _NOT_SIMULATED:
        del cov[name]
    late = cls >= len(classes) - 2
    cebpa_rate = _CEBPA_FREQ / max(float(share[-2:].sum() / share.sum()), 1e-9)
    cov["CEBPA_bZIP"] = (late & (rng.random(n) < cebpa_rate)).astype(np.int8)
    cov["ZRSR2"] = ((rng.random(n) < _ZRSR2_FREQ) & (cls >= 3)).astype(np.int8)
    return cov


def eln_flags(cov: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The ELN 2022 inputs from a (possibly incomplete) covariate table; TP53 only at VAF >= 10%."""
    flags = {k: np.asarray(cov[k], dtype=np.float64) for k in eln.ELN2022_INPUTS if k != "TP53"}
    tp53 = np.asarray(cov["TP53"], dtype=np.float64)
    vaf = np.asarray(cov["TP53_vaf"], dtype=np.float64)
    flags["TP53"] = np.where(tp53 == 1, np.where(np.isnan(vaf), np.nan, (vaf >= 0.10) * 1.0), tp53)
    return flags


def oracle_log_hazard(cov: dict[str, np.ndarray]) -> np.ndarray:
    """Ground-truth log relative hazard from complete covariates (higher = worse)."""
    c = {k: np.asarray(v, dtype=np.float64) for k, v in cov.items()}
    b = _BETA
    adverse = np.max([c[f] for f in eln.ELN2022_ADVERSE_CYTO], axis=0)
    cbf = np.maximum(c["t_8_21"], c["inv16"])
    high_ar = c["FLT3_ITD_ar"] >= 0.5
    npm1_fav = c["NPM1"] * (1 - high_ar) * (1 - adverse)
    favourable = cbf + (1 - cbf) * np.maximum(npm1_fav, c["CEBPA_bZIP"] * (1 - adverse))
    mr = np.sum([c[g] for g in eln.ELN2022_MR_GENES], axis=0)
    eta = b["cbf"] * cbf + b["npm1_fav"] * (1 - cbf) * npm1_fav
    eta += b["cebpa"] * (1 - cbf) * (1 - npm1_fav) * c["CEBPA_bZIP"] * (1 - adverse)
    eta += (1 - cbf) * (b["adverse_cyto"] * adverse + b["complex"] * c["complex_or_monosomal"])
    eta += c["TP53"] * (b["tp53"] + b["tp53_vaf"] * c["TP53_vaf"])
    eta += (1 - favourable.clip(0, 1)) * (b["mr_first"] * (mr >= 1) + b["mr_more"] * np.clip(mr - 1, 0, 2))
    eta += c["FLT3_ITD"] * (b["itd"] + b["itd_ar"] * np.minimum(c["FLT3_ITD_ar"], 2.0))
    eta += b["secondary"] * (1 - c["de_novo"])
    eta += b["age"] * (c["age"] - 60.0) + b["age_old"] * np.maximum(c["age"] - 70.0, 0.0)
    eta += b["wbc"] * np.maximum(np.log(c["wbc"] / 20.0), 0.0)
    eta += b["ldh"] * np.log(c["ldh"] / 400.0)
    eta += b["plt"] * np.maximum(np.log(40.0 / c["plt"]), 0.0)
    eta += b["dnmt3a"] * c["DNMT3A"] + b["runx1"] * c["RUNX1"]
    return _SIGNAL_SCALE * eta - _ETA_CENTRE


def _missingness(rng: np.random.Generator, guide: Guide, n: int) -> dict[str, np.ndarray]:
    miss = params()["missing"]
    out = {f.name: np.zeros(n, dtype=bool) for f in guide.features}
    no_karyotype = rng.random(n) < miss["cytogenetic_block"]
    no_panel = rng.random(n) < miss["gene_block"]
    for f in guide.features:
        if f.group == "cytogenetic":
            out[f.name] = no_karyotype.copy()
        elif f.group == "genomic" and f.name not in ("FLT3_ITD", "FLT3_ITD_ar", "NPM1"):
            out[f.name] = no_panel.copy()
        elif f.name in miss:
            out[f.name] = rng.random(n) < miss[f.name]
    out["FLT3_ITD_ar"] = out["FLT3_ITD"].copy()
    return out


def simulate_aml(guide: Guide, n: int = 1547, seed: int = 0) -> pl.DataFrame:
    """Simulate an AML cohort in the guide's schema with a known true log-hazard.

    Args:
        guide: the AML guide (``load_guide("aml")``).
        n: number of patients (the study's AML size, 1,547).
        seed: seed of ``numpy.random.default_rng``; same seed, same frame.

    Returns:
        ``patient_id`` (``AML-SIM-...``), ``centre``, the guide's features in guide
        order, ``time`` (years, whole days), ``event`` and ``oracle_risk``.

    Raises:
        ValueError: the guide and the generator disagree, or ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"simulate_aml: n must be >= 1, got {n}")
    check_guide(guide, _needed(), _BOUNDS, f"simulate_aml ({GENERATOR_VERSION})")
    rng = np.random.default_rng(seed)
    cov = _draw_covariates(rng, n)
    eta = oracle_log_hazard(cov)
    time, event = draw_outcome(
        rng, eta, shape=_WEIBULL_SHAPE, scale=_WEIBULL_SCALE, follow_up=_FOLLOW_UP, loss_rate=_LOSS_RATE
    )
    missing = _missingness(rng, guide, n)
    return frame("AML-SIM", guide, cov, missing, time, event, eta)


def eln_score(table: pl.DataFrame) -> np.ndarray:
    """ELN 2022 group (0/1/2, ``NaN`` where undetermined) of a simulated AML table."""
    cov = {
        k: table[k].cast(pl.Float64).fill_null(np.nan).to_numpy()
        for k in (*[i for i in eln.ELN2022_INPUTS], "TP53_vaf")
    }
    return eln.eln2022_risk(eln_flags(cov))
