"""Simulated MDS cohort with a known ground-truth hazard (generator ``mds-sim-1``).

Generative story, per patient:

1. Sex (60% male) and age (median 72, long left tail), as in the IWG-PM cohort
   (Bernard et al., NEJM Evidence 2022; 2,957 patients: 60% male, age quartiles
   63 / 72 / 78).
2. A latent *subtype*: the splicing-factor class (SF3B1, SRSF2, U2AF1, ZRSR2,
   mutually exclusive by construction as in vivo), a TP53/complex-karyotype
   class, or "other"; sex shifts the class (SRSF2/U2AF1/ZRSR2 are male-biased,
   ZRSR2 is X-linked and almost male-only).
3. A latent *severity* factor ``S ~ N(mu_subtype, 1)``. Co-mutations are drawn
   given subtype, severity, sex and age (a logistic model per gene), with ASXL1
   drawn first and raising the odds of RUNX1 / EZH2 / STAG2 / BCOR, so the
   co-occurrence and exclusivity pairs of the real cohort emerge.
4. IPSS-R cytogenetic category: TP53 class mostly very poor (complex
   karyotype); otherwise an ordered-probit of severity.
5. Labs from severity, subtype and a few genes: Hb Gaussian (g/dL), PLT and
   ANC log-normal sharing a marrow-output noise term, blasts a scaled logistic
   bounded below 20% (MDS definition). Rounded like real reports.
6. Ground-truth log-hazard ``oracle_risk`` from the COMPLETE covariates: an
   IPSS-R-like signal (cytogenetics, blasts, Hb, PLT, ANC, age) with
   non-linear shapes (saturation, thresholds) plus effects IPSS-R misses
   (genes, TP53 x very-poor karyotype, SF3B1 favourable only when isolated,
   mutation burden).
7. Weibull survival given ``oracle_risk``; administrative censoring (patients
   recruited evenly over the 7 years before the centre's follow-up end, so
   potential follow-up ~ U(3, 10) years) and random loss to follow-up.
   Times are whole days (ties), at least one day.
8. Missingness, after the oracle: a few % per lab (partly whole-blood-count
   missing), ~3% failed karyotype (more often in severe disease), ~5% of
   patients with no gene panel at all (every gene null).

Calibration targets (checked in ``tests/test_simulate.py``; numbers measured on
the IWG-PM files in ``../shared/data/mds_iwgpm`` while writing this module, the
data are never read at runtime): Hb median 9.7 g/dL (IQR 8.5-11.2), PLT median
130 (IQR 69-236, 95th pct 441), ANC median 1.9 (IQR 1.0-3.3), blasts median 3%
(IQR 1-6.5, 95th pct 15, max 19.5); IPSS-R cytogenetics very good / good /
intermediate / poor / very poor about 4 / 70 / 15 / 6 / 5% (Greenberg et al.,
Blood 2012: 4 / 72 / 13 / 4 / 7%); gene frequencies SF3B1 24%, TET2 31%, ASXL1
25%, SRSF2 16%, DNMT3A 16%, RUNX1 13%, TP53 11%, U2AF1 9%, STAG2 9%, EZH2 6%,
ZRSR2 6%, BCOR 5%, CBL 5%, IDH2 4%, NRAS 4%, ETV6 2% (IWG-PM; the simulator aims
a little lower for TP53, 8-10%, as in unselected registries); KM median OS 3.5
years with 48% deaths. The hazard strength is set so the oracle C-index is
about 0.80 and IPSS-R's about 0.70 on a large draw (IWG-PM: IPSS-R 0.70, IPSS-M 0.75;
the best published models on it ~0.74). Measured on n = 20,000, seed 0: oracle C
0.805, IPSS-R C 0.699, 52% deaths, KM median OS 4.2 years, median follow-up
(reverse KM) 5.2 years.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy.special import expit, logit
from scipy.stats import norm

from harmonize.guide import Feature, Guide

GENERATOR_VERSION = "mds-sim-1"

CYTO_LEVELS: tuple[str, ...] = ("very_good", "good", "intermediate", "poor", "very_poor")

# Latent classes: one per splicing factor (mutually exclusive), TP53/complex, other.
_SUBTYPES: tuple[str, ...] = ("SF3B1", "SRSF2", "U2AF1", "ZRSR2", "TP53", "other")
_SF_GENES: tuple[str, ...] = ("SF3B1", "SRSF2", "U2AF1", "ZRSR2")
# P(subtype | sex); marginal (60% male) about SF3B1 22%, SRSF2 13%, U2AF1 8.5%,
# ZRSR2 5%, TP53 7.5% (IWG-PM: SF3B1 24%, SRSF2 16%, U2AF1 9%, ZRSR2 6%, 97% of
# ZRSR2 and 72-77% of SRSF2/U2AF1 carriers male).
_SUBTYPE_P_FEMALE = np.array([0.26, 0.085, 0.050, 0.004, 0.085, 0.516])
_SUBTYPE_P_MALE = np.array([0.195, 0.160, 0.105, 0.085, 0.070, 0.385])
# Mean of the severity factor per subtype (SF3B1 indolent, TP53 aggressive).
_SEVERITY_MEAN = np.array([-0.55, 0.35, 0.25, 0.05, 0.90, 0.0])
_SF_LEAK = 0.01  # chance of a second splicing factor (IWG-PM: 2.3% carry two)
_TP53_OUTSIDE_CLASS = 0.015  # TP53 mutation outside the TP53 class (monoallelic, good karyotype)

# Co-mutations: P(mutated | subtype) at severity 0 (order of _SUBTYPES), and
# logit-scale effects of severity, male sex, age per decade above 72 and ASXL1.
# Targets: IWG-PM marginals and pairs, e.g. P(RUNX1 | ASXL1) 0.28 vs 0.08
# without, P(STAG2 | ASXL1) 0.24 vs 0.04, P(EZH2 | ASXL1) 0.16 vs 0.025,
# P(TET2 | SRSF2) 0.53, P(DNMT3A | SF3B1) 0.25; TET2 older (median 75 vs 70).
_COMUTATIONS: dict[str, dict[str, object]] = {
    #           SF3B1  SRSF2  U2AF1  ZRSR2  TP53   other
    "ASXL1": {"p": (0.09, 0.42, 0.33, 0.28, 0.06, 0.18), "sev": 0.2, "male": 0.5},
    "TET2": {"p": (0.34, 0.52, 0.20, 0.52, 0.09, 0.21), "male": 0.15, "age": 0.35},
    "DNMT3A": {"p": (0.28, 0.08, 0.13, 0.10, 0.12, 0.16), "male": -0.35, "age": 0.15},
    "RUNX1": {"p": (0.02, 0.13, 0.09, 0.08, 0.02, 0.07), "sev": 0.35, "male": 0.25, "asxl1": 1.2},
    "EZH2": {"p": (0.012, 0.03, 0.02, 0.035, 0.006, 0.022), "sev": 0.2, "male": 0.4, "asxl1": 1.6},
    "STAG2": {"p": (0.012, 0.08, 0.04, 0.03, 0.01, 0.035), "sev": 0.3, "male": 0.4, "asxl1": 1.4},
    "BCOR": {"p": (0.02, 0.055, 0.045, 0.045, 0.01, 0.04), "sev": 0.3, "asxl1": 0.8},
    "NRAS": {"p": (0.015, 0.06, 0.045, 0.03, 0.01, 0.035), "sev": 0.35},
    "CBL": {"p": (0.03, 0.08, 0.05, 0.05, 0.01, 0.04), "sev": 0.15},
    "IDH2": {"p": (0.008, 0.12, 0.025, 0.025, 0.008, 0.025), "sev": 0.25, "male": 0.4},
    "ETV6": {"p": (0.012, 0.03, 0.025, 0.025, 0.012, 0.022), "sev": 0.25},
}
# Genes that raise the odds of the ones after them (drawn first).
_COMUTATION_ORDER: tuple[str, ...] = tuple(_COMUTATIONS)

# Cytogenetics. TP53 class: mostly complex karyotype (IWG-PM, TP53-mutated:
# very poor 54%, poor 7%, intermediate 8%, good 28%, the good share largely
# monoallelic TP53 which here lives outside the class). Other classes: ordered
# probit L = shift + 0.4 S + N(0, 1) with cut-points giving about
# 4.3 / 75 / 14.5 / 5 / 1% so that the whole cohort has 4 / 71 / 14 / 5.5 / 5.5%.
_CYTO_P_TP53 = np.array([0.0, 0.20, 0.10, 0.12, 0.58])
_CYTO_SHIFT = np.array([-0.15, 0.10, 0.05, 0.0, 0.0, 0.0])
_CYTO_CUTS = np.array([-1.92, 0.86, 1.66, 2.50])
_CYTO_SEVERITY = 0.4

# Lab shifts per subtype (order of _SUBTYPES), on the lab's modelling scale.
# SF3B1: ring-sideroblast anaemia with high platelets (IWG-PM: PLT median 249
# vs 107, Hb 9.4 vs 9.9); SRSF2: cytopenic neutrophils (ANC 1.4 vs 2.0).
_HB_SHIFT = np.array([-0.75, 0.30, -0.10, 0.10, -0.30, 0.0])
_LOGPLT_SHIFT = np.array([0.50, -0.20, -0.10, 0.0, -0.35, 0.0])
_LOGANC_SHIFT = np.array([0.25, -0.30, 0.0, -0.20, -0.20, 0.0])
_BLAST_SHIFT = np.array([-0.55, 0.0, 0.0, 0.0, 0.0, 0.0])
# Genes with their own lab effects (IWG-PM medians: blasts 6-7% with RUNX1,
# STAG2, NRAS, BCOR, IDH2 vs 3% overall; ANC 1.05 with STAG2).
_BLAST_GENE = {"RUNX1": 0.35, "STAG2": 0.35, "NRAS": 0.45, "BCOR": 0.30, "IDH2": 0.30}
_LOGANC_GENE = {"STAG2": -0.35, "RUNX1": -0.15, "BCOR": -0.20}

# Physiological bounds of the generated values (each must lie inside the
# guide's valid range); the real cohort spans Hb 4-16.6, PLT 2-1451,
# ANC 0-11.9, blasts 0-19.5, age 12-100.
_BOUNDS: dict[str, tuple[float, float]] = {
    "age": (20.0, 96.0),
    "hb": (4.0, 17.5),
    "plt": (2.0, 1500.0),
    "anc": (0.0, 15.0),
    "bm_blasts": (0.0, 19.5),
}

# Ground-truth log-hazard (log HR). IPSS-R-like part: cytogenetic category
# (very good ... very poor), saturating blasts, Hb and PLT effects that grow
# below thresholds, a neutropenia step, age (Gompertz-like, steeper after 80).
# Missed by IPSS-R: genes (IPSS-M-like sizes: TP53 large, RUNX1 / NRAS / ETV6 /
# IDH2 moderate), TP53 with very poor karyotype (multi-hit), SF3B1 favourable
# only without adverse co-mutations (IPSS-M's SF3B1-alpha), mutation burden.
_BETA_CYTO = np.array([-0.35, 0.0, 0.30, 0.60, 0.90])
_BETA_GENE: dict[str, float] = {
    "TP53": 1.30,
    "ASXL1": 0.50,
    "RUNX1": 0.70,
    "EZH2": 0.50,
    "STAG2": 0.50,
    "BCOR": 0.45,
    "NRAS": 0.75,
    "CBL": 0.45,
    "IDH2": 0.60,
    "ETV6": 0.70,
    "SRSF2": 0.35,
    "U2AF1": 0.55,
    "DNMT3A": 0.25,
    "ZRSR2": 0.20,
}
_BETA_BLASTS = 0.90  # x tanh(blasts / 7): steep to ~10%, saturating beyond
_BETA_HB = 0.35  # x softplus(10.5 - Hb): ~0 above 11 g/dL, ~0.35 per g/dL below 9
_BETA_PLT = 0.40  # x softplus(log(80 / PLT) / 0.5): severe thrombocytopenia
_BETA_ANC = 0.30  # x sigmoid((0.8 - ANC) / 0.1): neutropenia below IPSS-R's 0.8 cut
_BETA_AGE = 0.05  # per year above 72
_BETA_AGE_OLD = 0.04  # extra per year above 80
_BETA_TP53_VERY_POOR = 0.40
_BETA_SF3B1_ALONE = -0.50
_BETA_SF3B1_COMUTATED = 0.10
_SF3B1_SPOILERS: tuple[str, ...] = (
    "SRSF2",
    "U2AF1",
    "ZRSR2",
    "STAG2",
    "BCOR",
    "RUNX1",
    "NRAS",
    "ASXL1",
    "EZH2",
    "TP53",
)
_BURDEN_GENES: tuple[str, ...] = ("ASXL1", "RUNX1", "EZH2", "STAG2", "BCOR", "NRAS", "CBL", "IDH2", "ETV6")
_BETA_BURDEN = 0.20  # per adverse mutation beyond the second
_BETA_MALE = 0.15
_ETA_CENTRE = 1.88  # constant subtracted so oracle_risk averages about 0

# Weibull baseline: h(t | x) = (k / lam) (t / lam)^(k - 1) exp(oracle_risk);
# gives a Kaplan-Meier median OS of about 4.2 years under the censoring below
# (IWG-PM: 3.5 years with 48% deaths, median follow-up 3.8 years).
_WEIBULL_SHAPE = 0.9
_WEIBULL_SCALE = 6.5
# Censoring: centre follow-up end U(3, 10) years after diagnosis, plus loss
# to follow-up at 6% per year.
_ADMIN_FOLLOW_UP = (3.0, 10.0)
_LOSS_RATE = 0.06

# Missingness (IWG-PM: Hb 3.6%, PLT 4.0%, ANC 6.1%, blasts 3.5%, age 0.7%,
# cytogenetics 4.6% missing). A whole blood count is missing for some patients.
_MISSING_BLOOD_COUNT = 0.015
_MISSING_RATE: dict[str, float] = {"age": 0.007, "hb": 0.02, "plt": 0.025, "anc": 0.045, "bm_blasts": 0.035}
_MISSING_CYTO = 0.03  # at severity 0; more often missing when severe (failed karyotype)
_MISSING_PANEL = 0.05  # no gene panel at all


def _softplus(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def _check_guide(guide: Guide) -> None:
    """Fail clearly if the guide lacks (or retypes) a feature this generator needs."""
    needed: dict[str, str] = {name: "continuous" for name in _BOUNDS}
    needed["sex_male"] = "binary"
    needed["ipssr_cyto"] = "categorical"
    needed.update({gene: "binary" for gene in (*_SF_GENES, "TP53", *_COMUTATIONS)})
    by_name = {f.name: f for f in guide.features}
    missing = sorted(set(needed) - set(by_name))
    if missing:
        raise ValueError(
            f"simulate_mds ({GENERATOR_VERSION}): guide {guide.use_case!r} v{guide.version} ({guide.path}) "
            f"lacks feature(s) {missing} that the generator needs"
        )
    for name, kind in needed.items():
        f = by_name[name]
        if f.kind != kind:
            raise ValueError(f"simulate_mds: guide feature {name!r} is {f.kind}, the generator needs {kind}")
    if by_name["ipssr_cyto"].levels != CYTO_LEVELS:
        raise ValueError(
            f"simulate_mds: guide feature 'ipssr_cyto' has levels {by_name['ipssr_cyto'].levels}, "
            f"the generator needs the ordered IPSS-R categories {CYTO_LEVELS}"
        )
    for name, (low, high) in _BOUNDS.items():
        lo_g, hi_g = by_name[name].valid_range or (-np.inf, np.inf)
        if low < lo_g or high > hi_g:
            raise ValueError(
                f"simulate_mds: generated {name!r} spans [{low}, {high}], outside the guide's valid range "
                f"[{lo_g}, {hi_g}]"
            )
    unknown = sorted(set(by_name) - set(needed))
    if unknown:
        raise ValueError(
            f"simulate_mds ({GENERATOR_VERSION}): guide {guide.use_case!r} v{guide.version} has feature(s) "
            f"{unknown} with no generative model; add them to fedjax_rhd/simulate/mds.py"
        )


def _draw_age(rng: np.random.Generator, n: int) -> np.ndarray:
    """Age = 96 - X, X log-normal truncated to (0, 76): median 72, quartiles ~ 64 / 79."""
    mu, sigma = np.log(24.0), 0.47
    top = norm.cdf((np.log(96.0 - _BOUNDS["age"][0]) - mu) / sigma)
    x = np.exp(mu + sigma * norm.ppf(rng.uniform(0.0, top, n)))
    return np.clip(np.round(96.0 - x), *_BOUNDS["age"])


def _draw_covariates(rng: np.random.Generator, n: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Complete covariates (no missingness) and the latent severity."""
    male = (rng.random(n) < 0.6).astype(np.int8)
    age = _draw_age(rng, n)
    cum_f, cum_m = np.cumsum(_SUBTYPE_P_FEMALE), np.cumsum(_SUBTYPE_P_MALE)
    u = rng.random(n)
    subtype = np.where(
        male == 1, np.searchsorted(cum_m, u * cum_m[-1]), np.searchsorted(cum_f, u * cum_f[-1])
    )
    severity = _SEVERITY_MEAN[subtype] + rng.standard_normal(n)

    genes: dict[str, np.ndarray] = {}
    for j, gene in enumerate(_SF_GENES):
        own = subtype == j
        leak = (subtype < len(_SF_GENES)) & ~own & (rng.random(n) < _SF_LEAK)
        genes[gene] = (own | leak).astype(np.int8)
    tp53_class = subtype == _SUBTYPES.index("TP53")
    genes["TP53"] = (tp53_class | (rng.random(n) < _TP53_OUTSIDE_CLASS)).astype(np.int8)
    for gene in _COMUTATION_ORDER:
        spec = _COMUTATIONS[gene]
        z = logit(np.asarray(spec["p"]))[subtype]
        z = z + float(spec.get("sev", 0.0)) * severity + float(spec.get("male", 0.0)) * male
        z = z + float(spec.get("age", 0.0)) * (age - 72.0) / 10.0
        if "asxl1" in spec:
            z = z + float(spec["asxl1"]) * genes["ASXL1"]
        genes[gene] = (rng.random(n) < expit(z)).astype(np.int8)

    latent = _CYTO_SHIFT[subtype] + _CYTO_SEVERITY * severity + rng.standard_normal(n)
    cyto = np.searchsorted(_CYTO_CUTS, latent).astype(np.int64)
    cyto_tp53 = np.searchsorted(np.cumsum(_CYTO_P_TP53), rng.random(n) * _CYTO_P_TP53.sum())
    cyto = np.where(tp53_class, np.minimum(cyto_tp53, len(CYTO_LEVELS) - 1), cyto)

    def gene_sum(weights: dict[str, float]) -> np.ndarray:
        return sum((w * genes[g] for g, w in weights.items()), np.zeros(n))

    hb = 9.70 - 0.40 * severity + _HB_SHIFT[subtype] + 0.3 * male + 1.8 * rng.standard_normal(n)
    marrow = rng.standard_normal(n)  # shared platelet / neutrophil output noise
    log_plt = np.log(128.0) - 0.30 * severity + _LOGPLT_SHIFT[subtype] + 0.22 * marrow
    log_plt = log_plt + 0.62 * rng.standard_normal(n)
    log_anc = np.log(1.9) - 0.25 * severity + _LOGANC_SHIFT[subtype] + gene_sum(_LOGANC_GENE) + 0.22 * marrow
    log_anc = log_anc + 0.66 * rng.standard_normal(n)
    blast_z = -1.80 + 0.85 * severity + _BLAST_SHIFT[subtype] + gene_sum(_BLAST_GENE)
    blast_z = blast_z + 1.25 * rng.standard_normal(n)

    cov: dict[str, np.ndarray] = {
        "age": age,
        "sex_male": male,
        "hb": np.clip(np.round(hb, 1), *_BOUNDS["hb"]),
        "plt": np.clip(np.round(np.exp(log_plt)), *_BOUNDS["plt"]),
        "anc": np.clip(np.round(np.exp(log_anc), 2), *_BOUNDS["anc"]),
        "bm_blasts": np.clip(np.round(2.0 * 19.8 * expit(blast_z)) / 2.0, *_BOUNDS["bm_blasts"]),
        "ipssr_cyto": cyto,
        **genes,
    }
    return cov, severity


def oracle_log_hazard(cov: dict[str, np.ndarray]) -> np.ndarray:
    """Ground-truth log relative hazard from complete covariates (higher = worse).

    Args:
        cov: complete covariates by feature name; ``ipssr_cyto`` as integer codes
            0 (very good) ... 4 (very poor), genes and sex as 0/1.

    Returns:
        f64[n] log-hazard, centred to average about 0 in the simulated cohort.
    """
    blasts, hb, plt, anc, age = (
        np.asarray(cov[k], dtype=np.float64) for k in ("bm_blasts", "hb", "plt", "anc", "age")
    )
    eta = _BETA_CYTO[np.asarray(cov["ipssr_cyto"])]
    eta = eta + _BETA_BLASTS * np.tanh(blasts / 7.0)
    eta = eta + _BETA_HB * _softplus(10.5 - hb)
    eta = eta + _BETA_PLT * _softplus((np.log(80.0) - np.log(plt)) / 0.5)
    eta = eta + _BETA_ANC * expit((0.8 - anc) / 0.1)
    eta = eta + _BETA_AGE * (age - 72.0) + _BETA_AGE_OLD * np.maximum(age - 80.0, 0.0)
    eta = eta + _BETA_MALE * cov["sex_male"]
    for gene, beta in _BETA_GENE.items():
        eta = eta + beta * cov[gene]
    eta = eta + _BETA_TP53_VERY_POOR * cov["TP53"] * (np.asarray(cov["ipssr_cyto"]) == 4)
    spoiled = np.any([cov[g] == 1 for g in _SF3B1_SPOILERS], axis=0)
    eta = eta + cov["SF3B1"] * np.where(spoiled, _BETA_SF3B1_COMUTATED, _BETA_SF3B1_ALONE)
    burden = np.sum([cov[g] for g in _BURDEN_GENES], axis=0)
    eta = eta + _BETA_BURDEN * np.maximum(burden - 2, 0)
    return eta - _ETA_CENTRE


def _draw_outcome(rng: np.random.Generator, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weibull death time given the log-hazard, administrative + random censoring, whole days."""
    n = eta.shape[0]
    death = _WEIBULL_SCALE * (rng.standard_exponential(n) * np.exp(-eta)) ** (1.0 / _WEIBULL_SHAPE)
    admin = rng.uniform(*_ADMIN_FOLLOW_UP, n)
    loss = rng.standard_exponential(n) / _LOSS_RATE
    censor = np.minimum(admin, loss)
    event = (death <= censor).astype(np.int8)
    days = np.maximum(np.round(np.minimum(death, censor) * 365.25), 1.0)
    return days / 365.25, event


def _apply_missingness(
    rng: np.random.Generator, cov: dict[str, np.ndarray], severity: np.ndarray, guide: Guide
) -> dict[str, np.ndarray]:
    """Boolean 'missing' mask per feature (nothing is removed from ``cov``)."""
    n = severity.shape[0]
    missing = {f.name: np.zeros(n, dtype=bool) for f in guide.features}
    no_blood_count = rng.random(n) < _MISSING_BLOOD_COUNT
    for name, rate in _MISSING_RATE.items():
        missing[name] = rng.random(n) < rate
        if name in ("hb", "plt", "anc"):
            missing[name] |= no_blood_count
    missing["ipssr_cyto"] = rng.random(n) < expit(logit(_MISSING_CYTO) + 0.3 * severity)
    no_panel = rng.random(n) < _MISSING_PANEL
    for f in guide.features:
        if f.group == "genomic":
            missing[f.name] = no_panel.copy()
    return missing


def _column(f: Feature, values: np.ndarray, missing: np.ndarray) -> pl.Series:
    if f.kind == "continuous":
        out = np.where(missing, np.nan, values.astype(np.float64))
        return pl.Series(f.name, out, dtype=pl.Float64, nan_to_null=True)
    if f.kind == "binary":
        return pl.Series(f.name, values.astype(np.int8), dtype=pl.Int8).set(pl.Series(missing), None)
    labels = np.asarray(f.levels, dtype=object)[values]
    labels[missing] = None
    return pl.Series(f.name, labels.tolist(), dtype=pl.String)


def simulate_mds(guide: Guide, n: int = 4427, seed: int = 0) -> pl.DataFrame:
    """Simulate an MDS cohort in the guide's schema with a known true log-hazard.

    Args:
        guide: the MDS implementation guide (``load_guide("mds")``); every one of
            its features must have a generative model here.
        n: number of patients.
        seed: seed of ``numpy.random.default_rng``; same seed, same frame.

    Returns:
        One row per patient, sorted by ``patient_id``: ``patient_id``,
        ``centre`` ("simulated"), the guide's features in guide order
        (continuous Float64, binary Int8, categorical String; nulls where
        missing), ``time`` (years, whole days), ``event`` (Int8) and
        ``oracle_risk`` (Float64 true log-hazard from the complete covariates).

    Raises:
        ValueError: if the guide lacks or retypes a feature the generator needs,
            has a feature without a generative model, or ``n < 1``.
    """
    if n < 1:
        raise ValueError(f"simulate_mds: n must be >= 1, got {n}")
    _check_guide(guide)
    rng = np.random.default_rng(seed)
    cov, severity = _draw_covariates(rng, n)
    eta = oracle_log_hazard(cov)
    time, event = _draw_outcome(rng, eta)
    missing = _apply_missingness(rng, cov, severity, guide)

    width = max(6, len(str(n)))
    columns = [
        pl.Series("patient_id", [f"MDS-SIM-{i:0{width}d}" for i in range(1, n + 1)], dtype=pl.String),
        pl.Series("centre", ["simulated"] * n, dtype=pl.String),
    ]
    columns += [_column(f, cov[f.name], missing[f.name]) for f in guide.features]
    columns += [
        pl.Series("time", time, dtype=pl.Float64),
        pl.Series("event", event, dtype=pl.Int8),
        pl.Series("oracle_risk", eta, dtype=pl.Float64),
    ]
    return pl.DataFrame(columns)
