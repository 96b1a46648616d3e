"""Fit the MDS and CMML simulators' parameters on the real IWG-PM cohort.

Writes ``fedjax_rhd/simulate/params_mds.json`` and ``params_cmml.json``: the only
thing the simulators know about the real data (they never read it at run time).
What is fitted (the generative story is in ``fedjax_rhd/simulate/copula.py``):

* a Gaussian copula (latent multivariate normal, a multivariate probit for the
  discrete variables) over age, sex, labs, cytogenetic category and lesions and
  the gene panel: marginals = empirical quantiles (continuous), prevalences
  (binary) and level probabilities (ordinal); latent correlations = tetrachoric
  (binary pairs, exact by quadrature), normal-score Pearson (continuous pairs),
  biserial / polyserial corrections of the Pearson correlation (mixed pairs),
  projected to the nearest positive-definite correlation matrix;
* missingness rates per feature (a failed karyotype blanks every cytogenetic feature);
* TP53 multi-hit given TP53 and complex karyotype;
* the censoring distribution: administrative end of follow-up ``U(a, b)`` years
  times random loss ``Exp(rate)``, least squares on the reverse Kaplan-Meier curve;
* the Kaplan-Meier curve of overall survival (the Weibull baseline is tuned
  against it in ``experiments/simulation/calibrate.py``).

CMML (262 patients with survival) is too small for 54 genes: the prevalences of
genes mutated in fewer than ``CMML_RARE`` CMML patients are Beta-shrunk towards
the MDS ones (prior weight ``CMML_PRIOR`` patients) and its
latent correlations averaged with the MDS ones (weight n / (n + ``CMML_PRIOR_R``)).

Run from the repository root: ``python experiments/simulation/fit.py [--real-data ../shared/data]``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import minimize
from scipy.special import roots_legendre
from scipy.stats import norm

from fedjax_rhd.cohorts.iwgpm import cpss_cyto_risk, read_raw
from fedjax_rhd.metrics.ipcw import kaplan_meier

OUT = Path(__file__).resolve().parents[2] / "fedjax_rhd" / "simulate"
N_GENES = 54
# Genes whose HGNC id could not be verified offline: left out of the panel (their
# place goes to the next most frequent gene).
UNVERIFIED_GENES = ("CSNK1A1", "ZBTB33", "PRPF8", "NFE2", "DDX54", "LUC7L2")
DERIVED = ("TP53mono", "TP53multi", "TET2bi", "TET2other", "MLL", "FLT3_ITD")
MDS_LABS = {"age": "AGE", "hb": "HB", "plt": "PLT", "anc": "ANC", "bm_blasts": "BM_BLAST"}
CMML_LABS = {**MDS_LABS, "wbc": "WBC", "monocytes": "MONOCYTES", "pb_blasts": "PB_BLAST"}
MDS_LESIONS = ("del5q", "del7_7q", "complex_karyotype", "plus8", "del20q", "delY", "del17p")
IPSSR_LEVELS = ("Very-Good", "Good", "Int", "Poor", "Very-Poor")
CMML_PRIOR = 30.0
CMML_RARE = 10  # CMML genes seen in fewer patients are shrunk towards MDS
CMML_PRIOR_R = 300.0
QUANTILES = np.linspace(0.0, 1.0, 201)
PAIR_SHRINK = 3.0  # pseudo-count of the tetrachoric shrinkage


def _normal_scores(x: np.ndarray) -> np.ndarray:
    """Van der Waerden scores Φ⁻¹(rank / (n + 1)) with mid-ranks for ties; NaN stays NaN."""
    out = np.full(x.shape, np.nan)
    ok = ~np.isnan(x)
    from scipy.stats import rankdata

    out[ok] = norm.ppf(rankdata(x[ok]) / (ok.sum() + 1.0))
    return out


_GL_X, _GL_W = roots_legendre(40)


def _phi2_upper(h: np.ndarray, k: np.ndarray, rho: np.ndarray) -> np.ndarray:
    """P(Z1 > h, Z2 > k) for a standard bivariate normal with correlation rho (vectorised).

    Uses ``∂Φ2/∂ρ = φ2(h, k; ρ)`` integrated from 0 by 40-point Gauss-Legendre.
    """
    r = 0.5 * rho[..., None] * (_GL_X + 1.0)
    dens = np.exp(
        -(h[..., None] ** 2 - 2 * r * h[..., None] * k[..., None] + k[..., None] ** 2) / (2 * (1 - r**2))
    )
    dens = dens / (2 * np.pi * np.sqrt(1 - r**2))
    return norm.sf(h) * norm.sf(k) + 0.5 * rho * np.sum(_GL_W * dens, axis=-1)


def tetrachoric(a: np.ndarray, b: np.ndarray) -> float:
    """Tetrachoric correlation of two 0/1 vectors (Haldane +0.5 per cell), by bisection."""
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok], b[ok]
    n11 = np.sum((a == 1) & (b == 1)) + 0.5
    n10 = np.sum((a == 1) & (b == 0)) + 0.5
    n01 = np.sum((a == 0) & (b == 1)) + 0.5
    n00 = np.sum((a == 0) & (b == 0)) + 0.5
    n = n11 + n10 + n01 + n00
    h, k = norm.isf((n11 + n10) / n), norm.isf((n11 + n01) / n)
    target = n11 / n
    lo, hi = -0.99, 0.99
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        if _phi2_upper(np.array(h), np.array(k), np.array(mid)) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def latent_correlation(columns: dict[str, np.ndarray], kinds: dict[str, str]) -> np.ndarray:
    """Latent correlation matrix of mixed continuous / binary / ordinal columns (NaN = missing)."""
    names = list(columns)
    codes, factor = {}, {}
    for name in names:
        x = columns[name]
        if kinds[name] == "continuous":
            codes[name], factor[name] = _normal_scores(x), 1.0
        else:
            ok = x[~np.isnan(x)]
            levels = np.arange(int(np.nanmax(x)) + 1)
            p = np.array([np.mean(ok == v) for v in levels])
            tau = norm.ppf(np.cumsum(p)[:-1].clip(1e-6, 1 - 1e-6))
            # Polyserial / biserial: latent r = observed r × σ(codes) / Σ φ(τ_j).
            codes[name], factor[name] = x, np.std(ok) / max(np.sum(norm.pdf(tau)), 1e-9)
    d = len(names)
    r = np.eye(d)
    for i in range(d):
        for j in range(i + 1, d):
            a, b = codes[names[i]], codes[names[j]]
            if kinds[names[i]] == "binary" and kinds[names[j]] == "binary":
                # Shrink towards 0 by the expected number of co-mutated patients under
                # independence: rare pairs carry little information and, unshrunk, their
                # noise forces large changes on every pair in the projection below.
                expected = np.nanmean(a) * np.nanmean(b) * np.sum(~(np.isnan(a) | np.isnan(b)))
                rho = tetrachoric(a, b) * expected / (expected + PAIR_SHRINK)
            else:
                ok = ~(np.isnan(a) | np.isnan(b))
                if np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
                    rho = 0.0
                else:
                    rho = np.corrcoef(a[ok], b[ok])[0, 1] * factor[names[i]] * factor[names[j]]
            r[i, j] = r[j, i] = float(np.clip(rho, -0.95, 0.95))
    return nearest_correlation(r)


def nearest_correlation(r: np.ndarray, floor: float = 1e-4, iterations: int = 200) -> np.ndarray:
    """Nearest correlation matrix with eigenvalues >= ``floor`` (Higham, IMA J Numer Anal 2002).

    Alternating projections with Dykstra's correction between the positive
    semi-definite cone and the unit-diagonal matrices; a final eigenvalue clip
    and rescale guarantee positive definiteness. Pairwise estimates are not
    jointly consistent; this changes them as little as possible (Frobenius norm),
    far less than one global eigenvalue clip.
    """
    y, ds = r.copy(), np.zeros_like(r)
    for _ in range(iterations):
        rk = y - ds
        w, v = np.linalg.eigh(rk)
        x = (v * np.maximum(w, floor)) @ v.T
        ds = x - rk
        y = x.copy()
        np.fill_diagonal(y, 1.0)
    w, v = np.linalg.eigh(y)
    y = (v * np.maximum(w, floor)) @ v.T
    s = np.sqrt(np.diag(y))
    return y / np.outer(s, s)


def censoring_fit(time: np.ndarray, event: np.ndarray) -> dict[str, float]:
    """Admin ``U(a, b)`` × loss ``Exp(rate)`` fitted to the reverse Kaplan-Meier curve."""
    grid = np.linspace(0.1, np.quantile(time, 0.95), 40)
    target = kaplan_meier(time, 1.0 - event, grid)

    def model(theta: np.ndarray) -> np.ndarray:
        a, width, rate = np.abs(theta)
        admin = np.clip((a + width - grid) / max(width, 1e-6), 0.0, 1.0)
        return admin * np.exp(-rate * grid)

    res = minimize(lambda th: np.sum((model(th) - target) ** 2), [1.0, 8.0, 0.05], method="Nelder-Mead")
    a, width, rate = np.abs(res.x)
    return {"admin_low": float(a), "admin_high": float(a + width), "loss_rate": float(rate)}


def km_curve(time: np.ndarray, event: np.ndarray) -> dict[str, list[float]]:
    grid = np.round(np.linspace(0.0, 10.0, 41), 3)
    s = np.where(grid <= time.max(), kaplan_meier(time, event, grid), np.nan)
    return {"t": grid.tolist(), "s": [None if np.isnan(v) else float(v) for v in s]}


def _cohorts(root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    raw, _ = read_raw(root)
    raw = raw.filter(pl.col("OS_YEARS").is_not_null() & pl.col("OS_STATUS").is_not_null())
    raw = raw.filter(pl.col("WHO_2016").is_not_null())
    return raw.filter(pl.col("WHO_2016") != "CMML"), raw.filter(pl.col("WHO_2016") == "CMML")


def panel(mds: pl.DataFrame, hgnc: set[str]) -> list[str]:
    """The N_GENES most frequent genes with an HGNC id we ship (MLL_PTD = KMT2A's PTD)."""
    genes = [c[4:] for c in mds.columns if c.startswith("mut:") and c[4:] not in DERIVED]
    usable = [g for g in genes if (g if g != "MLL_PTD" else "KMT2A") in hgnc and g not in UNVERIFIED_GENES]
    count = {g: int(mds[f"mut:{g}"].sum()) for g in usable}
    ipssm = {"FLT3", "TP53", "SF3B1", "MLL_PTD", "NPM1", "RUNX1", "NRAS", "ETV6", "IDH2", "CBL", "EZH2"}
    return sorted(usable, key=lambda g: (-count[g], g not in ipssm, g))[:N_GENES]


def _lesions(raw: pl.DataFrame) -> dict[str, np.ndarray]:
    failed = raw["CYTO_IPSSR"].is_null().to_numpy()

    def col(name: str) -> np.ndarray:
        return raw[f"cna:{name}"].to_numpy().astype(np.float64)

    out = {
        "del5q": col("del5q"),
        "del7_7q": np.maximum(col("del7"), col("del7q")),
        "complex_karyotype": (raw["complex"] == "complex").to_numpy().astype(np.float64),
        "plus8": col("plus8"),
        "del20q": col("del20q"),
        "delY": col("delY"),
        "del17p": col("del17p"),
    }
    return {k: np.where(failed, np.nan, v) for k, v in out.items()}


def fit_one(raw: pl.DataFrame, labs: dict[str, str], genes: list[str], cmml: bool) -> dict:
    cols: dict[str, np.ndarray] = {}
    kinds: dict[str, str] = {}
    for name, src in labs.items():
        cols[name], kinds[name] = raw[src].cast(pl.Float64).fill_null(np.nan).to_numpy(), "continuous"
    cols["sex_male"], kinds["sex_male"] = (raw["SEX"] == "M").to_numpy().astype(np.float64), "binary"
    if cmml:
        cols["cpss_cyto"], kinds["cpss_cyto"] = cpss_cyto_risk(raw), "ordinal"
    else:
        cyto = raw["CYTO_IPSSR"].to_list()
        cols["ipssr_cyto"] = np.array([np.nan if v is None else IPSSR_LEVELS.index(v) for v in cyto], float)
        kinds["ipssr_cyto"] = "ordinal"
        for name, value in _lesions(raw).items():
            cols[name], kinds[name] = value, "binary"
    for g in genes:
        cols[g], kinds[g] = raw[f"mut:{g}"].to_numpy().astype(np.float64), "binary"
    marginals = {}
    for name, x in cols.items():
        ok = x[~np.isnan(x)]
        m: dict = {"kind": kinds[name], "missing": float(np.mean(np.isnan(x)))}
        if kinds[name] == "continuous":
            m["quantiles"] = np.quantile(ok, QUANTILES).tolist()
            m["decimals"] = int(max(_decimals(v) for v in ok[:500]))
        elif kinds[name] == "binary":
            m["p"], m["count"] = float(ok.mean()), int(ok.sum())
        else:
            m["p"] = [float(np.mean(ok == v)) for v in range(int(ok.max()) + 1)]
        marginals[name] = m
    r = latent_correlation(cols, {k: ("binary" if v == "binary" else v) for k, v in kinds.items()})
    time = raw["OS_YEARS"].to_numpy().astype(np.float64)
    event = raw["OS_STATUS"].to_numpy().astype(np.float64)
    out = {
        "n": raw.height,
        "variables": list(cols),
        "marginals": marginals,
        "correlation": np.round(r, 5).tolist(),
        "censoring": censoring_fit(time, event),
        "km": km_curve(time, event),
        "event_fraction": float(event.mean()),
        "median_time": float(np.median(time)),
    }
    if not cmml:
        tp53, cx = raw["mut:TP53"].to_numpy(), (raw["complex"] == "complex").to_numpy()
        multi = raw["mut:TP53multi"].to_numpy()
        out["tp53multi_given_tp53"] = {
            "complex": float(multi[(tp53 == 1) & cx].mean()),
            "not_complex": float(multi[(tp53 == 1) & ~cx].mean()),
        }
    return out


def _decimals(v: float) -> int:
    for d in range(4):
        if abs(round(v, d) - v) < 1e-9:
            return d
    return 3


def shrink_cmml(cmml: dict, mds: dict) -> dict:
    """Beta-shrink CMML gene prevalences to MDS's and average the latent correlations."""
    n = cmml["n"]
    for name, m in cmml["marginals"].items():
        rare = m.get("count", 0) < CMML_RARE
        if m["kind"] == "binary" and name in mds["marginals"] and name != "sex_male" and rare:
            m["p_observed"] = m["p"]
            m["p"] = (m["count"] + CMML_PRIOR * mds["marginals"][name]["p"]) / (n + CMML_PRIOR)
    idx = {v: i for i, v in enumerate(mds["variables"])}
    r = np.array(cmml["correlation"])
    r_mds = np.array(mds["correlation"])
    w = n / (n + CMML_PRIOR_R)
    names = cmml["variables"]
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j and a in idx and b in idx:
                r[i, j] = w * r[i, j] + (1 - w) * r_mds[idx[a], idx[b]]
    cmml["correlation"] = np.round(nearest_correlation(r), 5).tolist()
    cmml["shrinkage"] = {"prior_patients": CMML_PRIOR, "rare_below": CMML_RARE, "correlation_weight_cmml": w}
    return cmml


SPLICING = ("SF3B1", "SRSF2", "U2AF1", "ZRSR2")


def exclusive_group(raw: pl.DataFrame, params: dict, use_case: str) -> dict:
    """Splicing-factor exclusivity: the real share of carriers with two or more, and ``p_latent``.

    ``p_latent`` (the copula's cut before thinning) and ``keep_multiple`` are found
    by a fixed-point iteration on a seeded draw of 200,000 so that the thinned
    prevalences equal ``p`` and the share of carriers with two or more equals the real one.
    """
    from fedjax_rhd.simulate import copula

    flags = np.stack([raw[f"mut:{g}"].to_numpy() for g in SPLICING], axis=1)
    carriers = flags.sum(axis=1) >= 1
    keep = float(np.mean(flags[carriers].sum(axis=1) > 1))
    group = {"genes": list(SPLICING), "keep_multiple": keep}
    params["exclusive_groups"] = [group]
    adjusted = list(SPLICING)
    if use_case == "mds":
        # IPSS-R very poor = complex karyotype (> 3 abnormalities): IWG-PM 201 of 202.
        params["implications"] = [{"if": "ipssr_cyto", "level": 4, "then": "complex_karyotype"}]
        adjusted.append("complex_karyotype")
    for g in adjusted:
        params["marginals"][g]["p_latent"] = params["marginals"][g]["p"]
    r = np.array(params["correlation"])
    for _ in range(12):
        cp = copula.CopulaParams(
            tuple(params["variables"]), params["marginals"], np.linalg.cholesky(r), (), {}, params
        )
        rng = np.random.default_rng(0)
        cov = copula.to_marginals(copula.draw_latent(rng, cp, 200_000), cp, rng)
        for g in adjusted:
            m = params["marginals"][g]
            m["p_latent"] = float(min(m["p_latent"] * m["p"] / max(cov[g].mean(), 1e-6), 0.9))
        drawn = np.stack([cov[g] for g in SPLICING], axis=1)
        share = np.mean(drawn[drawn.sum(axis=1) >= 1].sum(axis=1) > 1)
        group["keep_multiple"] = float(min(group["keep_multiple"] * keep / max(share, 1e-6), 1.0))
    group["share_multiple_real"] = keep
    return group


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-data", default="../shared/data")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for params_{mds,cmml}.json")
    args = parser.parse_args(argv)
    from harmonize.terminology import hgnc_table

    mds_raw, cmml_raw = _cohorts(Path(args.real_data))
    genes = panel(mds_raw, set(hgnc_table()))
    source = "IWG-PM (Bernard et al., NEJM Evidence 2022), ../shared/data/mds_iwgpm"
    mds = fit_one(mds_raw, MDS_LABS, genes, cmml=False)
    cmml = shrink_cmml(fit_one(cmml_raw, CMML_LABS, genes, cmml=True), mds)
    exclusive_group(mds_raw, mds, "mds")
    exclusive_group(cmml_raw, cmml, "cmml")
    for name, params in (("mds", mds), ("cmml", cmml)):
        params["source"] = source
        params["genes"] = genes
        path = args.out / f"params_{name}.json"
        path.write_text(json.dumps(params, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path} ({params['n']} patients, {len(params['variables'])} variables)")


if __name__ == "__main__":
    main()
