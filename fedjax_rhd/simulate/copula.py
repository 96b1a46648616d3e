"""Shared engine of the calibrated simulators: a Gaussian copula fitted on a real cohort.

Generative story (the fit is ``experiments/simulation/fit.py``; its output, a
small JSON file per use case, is the only thing the simulators know about the
real data):

1. A latent vector ``z ~ N(0, R)`` per patient over every covariate (age, sex,
   labs, cytogenetic category and lesions, the gene panel). ``R`` is the latent
   correlation of the real cohort (tetrachoric for gene pairs, so co-occurrence
   and mutual exclusivity carry over; normal-score and polyserial correlations
   for the labs), i.e. a multivariate probit for the discrete variables.
2. Marginals: a continuous variable is the real cohort's empirical quantile
   function at ``Φ(z)`` (skewed, bounded, rounded like real reports); a binary
   one is ``z > Φ⁻¹(1 − p)``; an ordinal one cuts ``z`` at the real level
   frequencies; the discrete cuts are taken at within-draw quantiles, so every
   draw carries the fitted prevalences exactly (no sampling noise at the
   study's size). Both marginals and pairwise structure match the real cohort by
   construction, up to the copula's approximation of higher-order structure.
   Two rules fix what a copula cannot express: splicing factors are thinned to
   near-exclusivity (:func:`exclusive`), and IPSS-R "very poor" implies a complex
   karyotype; the latent cuts of the genes concerned (``p_latent``) are set by the
   fit so that prevalences after the rules equal the real ones.
3. Overall survival: Weibull death times given the use case's ground-truth
   log-hazard (``oracle_risk``, defined in ``mds.py`` / ``cmml.py``), administrative
   censoring ``U(a, b)`` years and random loss to follow-up ``Exp(rate)``, both
   fitted to the real reverse Kaplan-Meier curve. Whole days (ties), at least one.
4. Missingness after the oracle, at the real per-feature rates; a failed
   karyotype blanks every cytogenetic feature together; ``NO_PANEL`` of the
   patients have no gene panel at all.

References: Nelsen RB. An Introduction to Copulas, 2nd ed. Springer 2006;
Olsson U. Maximum likelihood estimation of the polychoric correlation
coefficient. Psychometrika 1979;44:443-60.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import polars as pl
from scipy.stats import norm

from fedjax_rhd.simulate.common import frame
from harmonize.guide import Feature, Guide

PARAMS_DIR = Path(__file__).resolve().parent
QUANTILE_LEVELS = np.linspace(0.0, 1.0, 201)
# Share of patients without any gene panel. IWG-PM sequenced everyone (it was selected
# for sequencing); the study's registries did not, and "not tested" must stay distinct
# from wild type downstream (FHIR panel resource, observed mask).
NO_PANEL = 0.03


class CopulaParams(NamedTuple):
    """Fitted parameters of one use case (see ``experiments/simulation/fit.py``)."""

    variables: tuple[str, ...]
    marginals: dict[str, dict[str, Any]]
    chol: np.ndarray
    genes: tuple[str, ...]
    censoring: dict[str, float]
    raw: dict[str, Any]


@functools.cache
def load_params(use_case: str) -> CopulaParams:
    """Read ``params_<use_case>.json`` shipped with the package (cached)."""
    path = PARAMS_DIR / f"params_{use_case}.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    r = np.asarray(raw["correlation"], dtype=np.float64)
    if r.shape != (len(raw["variables"]),) * 2:
        raise ValueError(f"{path}: correlation is {r.shape}, expected {len(raw['variables'])} square")
    return CopulaParams(
        tuple(raw["variables"]),
        raw["marginals"],
        np.linalg.cholesky(r),
        tuple(raw["genes"]),
        raw["censoring"],
        raw,
    )


def draw_latent(rng: np.random.Generator, params: CopulaParams, n: int) -> np.ndarray:
    """``f64[n, d]`` latent normals with the fitted correlation."""
    return rng.standard_normal((n, len(params.variables))) @ params.chol.T


def exact_flags(z: np.ndarray, p: float) -> tuple[np.ndarray, float]:
    """0/1 flags for the ``round(p · n)`` largest latent values, and the within-draw cut.

    A rank cut instead of the fixed ``z > Φ⁻¹(1 − p)``: the count of carriers is
    exactly the fitted prevalence times ``n`` (no binomial noise, which at the
    study's CMML size is up to 1.2 points for a 40-60% gene), while which patients
    carry the flag is still decided by their latent values, so the copula's
    co-occurrence and exclusivity are kept. The cut returned is the smallest
    carrier's latent value (``+inf`` when nobody carries it).
    """
    n = z.shape[0]
    k = int(np.clip(np.round(p * n), 0, n))
    flags = np.zeros(n, dtype=np.int8)
    if k == 0:
        return flags, np.inf
    top = np.argpartition(-z, k - 1)[:k]
    flags[top] = 1
    return flags, float(z[top].min())


def exact_levels(z: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Ordinal codes with exactly ``round(cumsum(p) · n)`` patients at or below each level, by latent rank."""
    n = z.shape[0]
    bounds = np.round(np.cumsum(p)[:-1] * n)
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(z, kind="stable")] = np.arange(n)
    return np.searchsorted(bounds, rank, side="right").astype(np.int64)


def to_marginals(z: np.ndarray, params: CopulaParams, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Complete covariates from latent normals: continuous values, 0/1 flags, ordinal codes.

    Discrete marginals are exact within the draw (:func:`exact_flags`,
    :func:`exact_levels`): cutting each latent at its within-draw quantile reproduces
    the fitted prevalences without sampling noise and keeps the dependence, which
    lives in the ranks. Continuous marginals stay the quantile function at ``Φ(z)``.
    Binary variables of an exclusive group (the splicing factors) are cut at
    ``p_latent`` (above the target prevalence) and then thinned by
    :func:`exclusive`, so that their prevalences after thinning match the real ones.
    """
    out: dict[str, np.ndarray] = {}
    cuts: dict[str, float] = {}
    for j, name in enumerate(params.variables):
        m = params.marginals[name]
        if m["kind"] == "continuous":
            q = np.asarray(m["quantiles"], dtype=np.float64)
            out[name] = np.round(np.interp(norm.cdf(z[:, j]), QUANTILE_LEVELS, q), m["decimals"])
        elif m["kind"] == "binary":
            out[name], cuts[name] = exact_flags(z[:, j], m.get("p_latent", m["p"]))
        else:
            out[name] = exact_levels(z[:, j], np.asarray(m["p"], dtype=np.float64))
    for rule in params.raw.get("implications", []):
        # Logical rules a copula only approximates: IPSS-R "very poor" means a complex
        # karyotype with more than three abnormalities.
        hit = out[rule["if"]] == rule["level"]
        out[rule["then"]] = np.where(hit, 1, out[rule["then"]]).astype(np.int8)
    for group in params.raw.get("exclusive_groups", []):
        exclusive(out, z, params, group["genes"], group["keep_multiple"], rng, cuts)
    return out


def exclusive(
    cov: dict[str, np.ndarray],
    z: np.ndarray,
    params: CopulaParams,
    genes: list[str],
    keep_multiple: float,
    rng: np.random.Generator,
    cuts: dict[str, float],
) -> None:
    """Mutual exclusivity a Gaussian copula cannot express (in place).

    Splicing-factor mutations are nearly mutually exclusive (IWG-PM: 2-3% of
    carriers have two); the probit's pairwise correlations cannot all be that
    negative at once (a positive-definite matrix limits them to about −1/3 for
    four genes). Of the ``m`` patients drawn with several, ``round(keep_multiple · m)``
    chosen at random keep them all (an exact share, like the marginals); the others
    keep only the gene whose latent value lies furthest above its within-draw cut
    (``cuts``, from :func:`exact_flags`).
    """
    idx = [params.variables.index(g) for g in genes]
    flags = np.stack([cov[g] for g in genes], axis=1).astype(bool)
    margin = np.stack([z[:, j] - cuts[g] for g, j in zip(genes, idx, strict=True)], axis=1)
    multiple = flags.sum(axis=1) > 1
    order = rng.random(flags.shape[0])
    rows = np.flatnonzero(multiple)
    keep = rows[np.argsort(order[rows], kind="stable")[: int(np.round(keep_multiple * rows.size))]]
    thin = multiple.copy()
    thin[keep] = False
    best = np.argmax(np.where(flags, margin, -np.inf), axis=1)
    for k, g in enumerate(genes):
        cov[g] = np.where(thin, (best == k).astype(np.int8), cov[g]).astype(np.int8)


def draw_outcome(
    rng: np.random.Generator,
    eta: np.ndarray,
    shape: float,
    scale: float,
    censoring: dict[str, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Weibull death times given the log-hazard; administrative and random censoring; whole days.

    ``h(t | x) = (k / λ) (t / λ)^(k − 1) exp(η)``; censoring ``min(U(a, b), Exp(rate))``.
    """
    n = eta.shape[0]
    death = scale * (rng.standard_exponential(n) * np.exp(-eta)) ** (1.0 / shape)
    admin = rng.uniform(censoring["admin_low"], censoring["admin_high"], n)
    loss = rng.standard_exponential(n) / censoring["loss_rate"]
    censor = np.minimum(admin, loss)
    event = (death <= censor).astype(np.int8)
    days = np.maximum(np.round(np.minimum(death, censor) * 365.25), 1.0)
    return days / 365.25, event


def missing_masks(
    rng: np.random.Generator, params: CopulaParams, guide: Guide, n: int
) -> dict[str, np.ndarray]:
    """Per-feature missing masks at the real rates; a failed karyotype blanks the cytogenetic group."""
    masks = {f.name: np.zeros(n, dtype=bool) for f in guide.features}
    cyto = [f.name for f in guide.features if f.group == "cytogenetic"]
    cyto_rate = max((params.marginals[c]["missing"] for c in cyto if c in params.marginals), default=0.0)
    failed = rng.random(n) < cyto_rate
    no_panel = rng.random(n) < NO_PANEL
    for f in guide.features:
        if f.group == "cytogenetic":
            masks[f.name] = failed.copy()
        elif f.group == "genomic":
            masks[f.name] = no_panel.copy()
        elif f.name in params.marginals:
            masks[f.name] = rng.random(n) < params.marginals[f.name]["missing"]
    return masks


def column(f: Feature, values: np.ndarray, missing: np.ndarray) -> pl.Series:
    """One guide column: continuous Float64 clipped to the guide's range, binary Int8, categorical String."""
    if f.kind == "continuous":
        v = values.astype(np.float64)
        if f.valid_range is not None:
            v = np.clip(v, *f.valid_range)
        return pl.Series(f.name, np.where(missing, np.nan, v), dtype=pl.Float64, nan_to_null=True)
    if f.kind == "binary":
        return pl.Series(f.name, values.astype(np.int8), dtype=pl.Int8).set(pl.Series(missing), None)
    labels = np.asarray(f.levels, dtype=object)[values]
    labels[missing] = None
    return pl.Series(f.name, labels.tolist(), dtype=pl.String)


def check_guide(guide: Guide, generator: str, needed: dict[str, str]) -> None:
    """Fail clearly if the guide lacks, retypes or adds a feature this generator models."""
    by_name = {f.name: f for f in guide.features}
    missing = sorted(set(needed) - set(by_name))
    if missing:
        raise ValueError(
            f"{generator}: guide {guide.use_case!r} v{guide.version} ({guide.path}) lacks feature(s) "
            f"{missing} that the generator needs"
        )
    for name, kind in needed.items():
        if by_name[name].kind != kind:
            raise ValueError(f"{generator}: guide feature {name!r} is {by_name[name].kind}, expected {kind}")
    unknown = sorted(set(by_name) - set(needed))
    if unknown:
        raise ValueError(
            f"{generator}: guide {guide.use_case!r} v{guide.version} has feature(s) {unknown} with no "
            "generative model"
        )


def assemble(
    guide: Guide,
    prefix: str,
    cov: dict[str, np.ndarray],
    missing: dict[str, np.ndarray],
    time: np.ndarray,
    event: np.ndarray,
    eta: np.ndarray,
) -> pl.DataFrame:
    """The simulated table: ``patient_id, centre, <guide features>, time, event, oracle_risk``."""
    return frame(prefix, guide, cov, missing, time, event, eta, column=column)


def simulate_cohort(
    guide: Guide,
    n: int,
    seed: int,
    *,
    key: str,
    prefix: str,
    draw_covariates: Any,
    oracle_log_hazard: Any,
    weibull: tuple[float, float],
    layer: Any = None,
) -> pl.DataFrame:
    """The shared draw of a copula simulator: covariates, true hazard, outcome, missingness, table.

    The random stream is consumed in one fixed order (covariates, outcome, missingness),
    so a seed gives the same table whichever simulator calls it. ``layer`` (optional,
    e.g. :func:`fedjax_rhd.simulate.treatment.layer`) adds columns and log-hazard terms
    after the covariates, from its own stream: ``(cov, eta) -> (cov, eta, absent masks)``.
    """
    params = load_params(key)
    rng = np.random.default_rng(seed)
    cov = draw_covariates(rng, n)
    eta = oracle_log_hazard(cov)
    absent: dict[str, np.ndarray] = {}
    if layer is not None:
        cov, eta, absent = layer(cov, eta)
    time, event = draw_outcome(rng, eta, weibull[0], weibull[1], params.censoring)
    missing = missing_masks(rng, params, guide, n)
    for name, mask in absent.items():
        missing[name] = missing[name] | mask
    return assemble(guide, prefix, cov, missing, time, event, eta)
