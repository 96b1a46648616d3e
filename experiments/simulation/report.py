"""Calibration report of the MDS and CMML simulators against the real IWG-PM cohort.

Writes ``experiments/simulation/README.md`` (tables, checks) and PNG figures in
``experiments/simulation/figures/``: gene frequencies, the 20 strongest
co-occurring and mutually exclusive gene pairs (log odds ratio, real beside
simulated), lab distributions, cytogenetic categories, Kaplan-Meier curves and
censoring fractions; and the oracle and clinical-score C-indices on a large draw.

Run from the repository root (needs ``../shared/data``; about a minute):
``python experiments/simulation/report.py [--real-data ../shared/data] [--seed 0]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402
from scipy.stats import fisher_exact  # noqa: E402
from statsmodels.stats.multitest import multipletests  # noqa: E402

from fedjax_rhd.cohorts.iwgpm import cpss_cyto_risk, read_raw  # noqa: E402
from fedjax_rhd.metrics.concordance import concordance_index  # noqa: E402
from fedjax_rhd.metrics.ipcw import kaplan_meier  # noqa: E402
from fedjax_rhd.report.sweep import provenance  # noqa: E402
from fedjax_rhd.scores import ipss  # noqa: E402
from fedjax_rhd.simulate import cmml, copula, mds  # noqa: E402
from harmonize.guide import load_guide  # noqa: E402

HERE = Path(__file__).resolve().parent
FIG = HERE / "figures"
STUDY_N = {"mds": 4427, "cmml": 1737}
LARGE_N = 50_000
MDS_LABS = {"age": "AGE", "hb": "HB", "plt": "PLT", "anc": "ANC", "bm_blasts": "BM_BLAST"}
CMML_LABS = {**MDS_LABS, "wbc": "WBC", "monocytes": "MONOCYTES", "pb_blasts": "PB_BLAST"}
IPSSR = ("Very-Good", "Good", "Int", "Poor", "Very-Poor")


def real_tables(root: Path) -> dict[str, pl.DataFrame]:
    raw, _ = read_raw(root)
    raw = raw.filter(pl.col("OS_YEARS").is_not_null() & pl.col("WHO_2016").is_not_null())
    return {"mds": raw.filter(pl.col("WHO_2016") != "CMML"), "cmml": raw.filter(pl.col("WHO_2016") == "CMML")}


def real_view(raw: pl.DataFrame, use_case: str, genes: list[str]) -> dict[str, np.ndarray]:
    labs = MDS_LABS if use_case == "mds" else CMML_LABS
    out = {k: raw[v].cast(pl.Float64).fill_null(np.nan).to_numpy() for k, v in labs.items()}
    out.update({g: raw[f"mut:{g}"].to_numpy().astype(float) for g in genes})
    if use_case == "mds":
        cyto = raw["CYTO_IPSSR"].to_list()
        out["cyto"] = np.array([np.nan if v is None else IPSSR.index(v) for v in cyto], float)
    else:
        out["cyto"] = cpss_cyto_risk(raw)
    out["time"] = raw["OS_YEARS"].to_numpy().astype(float)
    out["event"] = raw["OS_STATUS"].to_numpy().astype(float)
    return out


def sim_view(df: pl.DataFrame, use_case: str, genes: list[str]) -> dict[str, np.ndarray]:
    guide = load_guide(use_case)
    labs = MDS_LABS if use_case == "mds" else CMML_LABS
    out = {k: df[k].cast(pl.Float64).fill_null(np.nan).to_numpy() for k in labs}
    out.update({g: df[g].cast(pl.Float64).fill_null(np.nan).to_numpy() for g in genes})
    name = "ipssr_cyto" if use_case == "mds" else "cpss_cyto"
    levels = guide.feature(name).levels
    out["cyto"] = np.array([np.nan if v is None else levels.index(v) for v in df[name].to_list()], float)
    out["time"] = df["time"].to_numpy()
    out["event"] = df["event"].to_numpy().astype(float)
    return out


def log_or(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Haldane-corrected log odds ratio and Fisher's exact p of two 0/1 vectors."""
    ok = ~(np.isnan(a) | np.isnan(b))
    a, b = a[ok] == 1, b[ok] == 1
    t = np.array([[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]])
    lor = np.log((t[0, 0] + 0.5) * (t[1, 1] + 0.5) / ((t[0, 1] + 0.5) * (t[1, 0] + 0.5)))
    return float(lor), float(fisher_exact(t).pvalue)


def gene_pairs(real: dict, sim: dict, genes: list[str]) -> pl.DataFrame:
    rows = []
    for i, a in enumerate(genes):
        for b in genes[i + 1 :]:
            lr, p = log_or(real[a], real[b])
            ls, _ = log_or(sim[a], sim[b])
            rows.append((f"{a}-{b}", lr, p, ls))
    df = pl.DataFrame(rows, schema=["pair", "log_or_real", "p_real", "log_or_sim"], orient="row")
    q = multipletests(df["p_real"].to_numpy(), alpha=0.05, method="fdr_bh")[1]
    return df.with_columns(pl.Series("q_real", q))


def c_indices(use_case: str, seed: int) -> tuple[dict[str, float], pl.DataFrame]:
    """Oracle and clinical-score C-indices on a large draw (scores on their scorable rows)."""
    guide = load_guide(use_case)
    sim = (mds.simulate_mds if use_case == "mds" else cmml.simulate_cmml)(guide, n=LARGE_N, seed=seed + 1)
    from fedjax_rhd.sources.scores import clinical_scores

    t, e = sim["time"].to_numpy(), sim["event"].to_numpy()
    out = {"oracle": concordance_index(t, e, sim["oracle_risk"].to_numpy())}
    name, scores = clinical_scores(sim, guide)
    s = scores["clinical_score"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    ok = ~np.isnan(s)
    out[name] = concordance_index(t[ok], e[ok], s[ok])
    if use_case == "mds":

        def num(k: str) -> np.ndarray:
            return sim[k].cast(pl.Float64).fill_null(np.nan).to_numpy()

        levels = guide.feature("ipssr_cyto").levels
        cyto = np.array([np.nan if v is None else levels.index(v) for v in sim["ipssr_cyto"].to_list()])
        r = ipss.ipssr_score(num("hb"), num("plt"), num("anc"), num("bm_blasts"), cyto)
        ok = ~np.isnan(r)
        out["IPSS-R"] = concordance_index(t[ok], e[ok], r[ok])
    return out, sim


def layer_shares(use_case: str, seed: int) -> dict[str, float]:
    """Oracle C-index on a large draw, whole and with each guide layer's link to survival broken.

    A layer's values are permuted across patients (every feature of the group by the same
    permutation, so the layer's own structure stays), the true hazard recomputed, and scored
    against the outcomes drawn from the intact hazard: the drop is what that layer carries,
    i.e. what a node missing it cannot learn from its own rows.
    """
    module = mds if use_case == "mds" else cmml
    guide = load_guide(use_case)
    rng = np.random.default_rng(seed + 2)
    cov = module.draw_covariates(rng, LARGE_N)
    eta = module.oracle_log_hazard(cov)
    time, event = copula.draw_outcome(
        rng, eta, module.WEIBULL_SHAPE, module.WEIBULL_SCALE, copula.load_params(use_case).censoring
    )
    out = {"all layers": concordance_index(time, event, eta)}
    for group in dict.fromkeys(f.group for f in guide.features):
        perm = rng.permutation(LARGE_N)
        broken = dict(cov)
        for f in guide.features:
            if f.group == group:
                broken[f.name] = np.asarray(cov[f.name])[perm]
        out[f"without {group}"] = concordance_index(time, event, module.oracle_log_hazard(broken))
    return out


def figures(
    use_case: str, real: dict, sim: dict, genes: list[str], pairs: pl.DataFrame, labs: list[str]
) -> None:
    FIG.mkdir(parents=True, exist_ok=True)
    freq_r = [np.nanmean(real[g]) * 100 for g in genes]
    freq_s = [np.nanmean(sim[g]) * 100 for g in genes]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(freq_r, freq_s, s=12)
    top = max(max(freq_r), max(freq_s)) * 1.05
    ax.plot([0, top], [0, top], "k--", lw=0.8)
    for g, x, y in zip(genes[:12], freq_r, freq_s, strict=False):
        ax.annotate(g, (x, y), fontsize=7)
    ax.set(xlabel="IWG-PM frequency (%)", ylabel="simulated frequency (%)", title=f"{use_case}: 54 genes")
    fig.tight_layout()
    fig.savefig(FIG / f"{use_case}_genes.png", dpi=120)
    plt.close(fig)

    sig = pairs.filter(pl.col("q_real") < 0.05)
    co = sig.sort("log_or_real", descending=True).head(20)
    ex = sig.sort("log_or_real").head(20)
    fig, axes = plt.subplots(1, 2, figsize=(10, 6))
    for ax, part, title in ((axes[0], co, "co-occurring"), (axes[1], ex, "mutually exclusive")):
        y = np.arange(part.height)
        ax.barh(y - 0.2, part["log_or_real"], 0.4, label="IWG-PM")
        ax.barh(y + 0.2, part["log_or_sim"], 0.4, label="simulated")
        ax.set_yticks(y, part["pair"].to_list(), fontsize=7)
        ax.axvline(0, color="k", lw=0.6)
        ax.set(xlabel="log odds ratio", title=f"{use_case}: 20 strongest {title} pairs (FDR 5%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIG / f"{use_case}_pairs.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(labs), figsize=(3 * len(labs), 3))
    for ax, lab in zip(axes, labs, strict=True):
        r, s = real[lab][~np.isnan(real[lab])], sim[lab][~np.isnan(sim[lab])]
        log = lab in ("plt", "anc", "wbc", "monocytes")
        f = (lambda v: np.log10(v + 0.01)) if log else (lambda v: v)
        bins = np.linspace(f(min(r.min(), s.min())), f(max(r.max(), s.max())), 30)
        ax.hist(f(r), bins, density=True, alpha=0.5, label="IWG-PM")
        ax.hist(f(s), bins, density=True, alpha=0.5, label="simulated")
        ax.set_title(("log10 " if log else "") + lab, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIG / f"{use_case}_labs.png", dpi=120)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    levels = int(np.nanmax(real["cyto"])) + 1
    x = np.arange(levels)
    axes[0].bar(x - 0.2, [np.nanmean(real["cyto"] == k) for k in x], 0.4, label="IWG-PM")
    axes[0].bar(x + 0.2, [np.nanmean(sim["cyto"][~np.isnan(sim["cyto"])] == k) for k in x], 0.4, label="sim")
    axes[0].set(title=f"{use_case}: cytogenetic category", xlabel="category code")
    axes[0].legend(fontsize=7)
    grid = np.linspace(0, 10, 101)
    axes[1].step(grid, kaplan_meier(real["time"], real["event"] == 1, grid), where="post", label="IWG-PM")
    axes[1].step(grid, kaplan_meier(sim["time"], sim["event"] == 1, grid), where="post", label="simulated")
    axes[1].set(title="overall survival (Kaplan-Meier)", xlabel="years", ylim=(0, 1))
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(FIG / f"{use_case}_cyto_km.png", dpi=120)
    plt.close(fig)


def section(use_case: str, raw: pl.DataFrame, seed: int) -> tuple[list[str], dict[str, bool]]:
    params = copula.load_params(use_case)
    genes = list(params.genes)
    guide = load_guide(use_case)
    df = (mds.simulate_mds if use_case == "mds" else cmml.simulate_cmml)(
        guide, n=STUDY_N[use_case], seed=seed
    )
    real, sim = real_view(raw, use_case, genes), sim_view(df, use_case, genes)
    labs = list(MDS_LABS if use_case == "mds" else CMML_LABS)
    pairs = gene_pairs(real, sim, genes)
    figures(use_case, real, sim, genes, pairs, labs)
    lines = [f"## {use_case.upper()} (simulated n = {df.height}, seed {seed}; IWG-PM n = {raw.height})", ""]
    freq = sorted(genes, key=lambda g: -np.nanmean(real[g]))[:20]
    diffs = [abs(np.nanmean(real[g]) - np.nanmean(sim[g])) * 100 for g in freq]
    lines += ["| gene | IWG-PM % | simulated % |", "|---|---|---|"]
    lines += [f"| {g} | {np.nanmean(real[g]) * 100:.1f} | {np.nanmean(sim[g]) * 100:.1f} |" for g in freq]
    checks = {"top-20 gene frequencies within 2 points": max(diffs) <= 2.0}
    simulate = mds.simulate_mds if use_case == "mds" else cmml.simulate_cmml
    gaps = []
    for other in range(seed, seed + 5):
        d = simulate(guide, n=STUDY_N[use_case], seed=other) if other != seed else df
        gaps.append(max(abs(np.nanmean(real[g]) - d[g].cast(pl.Float64).mean()) * 100 for g in freq))
    lines += [
        "",
        f"Largest top-20 gene-frequency gap: {max(diffs):.2f} points (seeds {seed}-{seed + 4}: "
        f"{', '.join(f'{v:.2f}' for v in gaps)}; at this size one binomial SD is up to "
        f"{np.sqrt(0.25 / STUDY_N[use_case]) * 100:.1f} points).",
        "",
    ]
    sig = pairs.filter(pl.col("q_real") < 0.05)
    same = (
        float(np.mean(np.sign(sig["log_or_real"].to_numpy()) == np.sign(sig["log_or_sim"].to_numpy())))
        if sig.height
        else np.nan
    )
    checks["significant pairs with the same sign >= 80%"] = bool(same >= 0.8)
    lines += [
        f"Gene pairs significant in IWG-PM (Fisher, BH FDR 5%): {sig.height}; same sign in the simulation: "
        f"{same * 100:.0f}%. Figure: `figures/{use_case}_pairs.png` (20 strongest each way).",
        "",
        "| lab | IWG-PM q25 / median / q75 | simulated q25 / median / q75 | worst relative gap |",
        "|---|---|---|---|",
    ]
    worst_lab = 0.0
    for lab in labs:
        qr = np.nanquantile(real[lab], [0.25, 0.5, 0.75])
        qs = np.nanquantile(sim[lab], [0.25, 0.5, 0.75])
        gap = float(np.max(np.abs(qs - qr) / np.maximum(np.abs(qr), 1e-9)))
        worst_lab = max(worst_lab, gap)
        lines.append(
            f"| {lab} | {' / '.join(f'{v:.3g}' for v in qr)} | {' / '.join(f'{v:.3g}' for v in qs)} | "
            f"{gap * 100:.1f}% |"
        )
    checks["lab quartiles within 10%"] = worst_lab <= 0.10
    cens_r, cens_s = 1 - real["event"].mean(), 1 - sim["event"].mean()
    checks["censoring fraction within 5 points"] = abs(cens_r - cens_s) <= 0.05
    grid = np.array([1.0, 2.0, 3.0, 5.0])
    km_r = kaplan_meier(real["time"], real["event"] == 1, grid)
    km_s = kaplan_meier(sim["time"], sim["event"] == 1, grid)
    levels = int(np.nanmax(real["cyto"])) + 1
    cyto_r = [np.nanmean(real["cyto"][~np.isnan(real["cyto"])] == k) * 100 for k in range(levels)]
    cyto_s = [np.nanmean(sim["cyto"][~np.isnan(sim["cyto"])] == k) * 100 for k in range(levels)]
    cyto_name = "IPSS-R very good … very poor" if use_case == "mds" else "CPSS low / int / high"
    lines += [
        "",
        f"Cytogenetic categories (%, {cyto_name}): IWG-PM {' / '.join(f'{v:.1f}' for v in cyto_r)}; "
        f"simulated {' / '.join(f'{v:.1f}' for v in cyto_s)}.",
        "",
        f"Censored: IWG-PM {cens_r * 100:.1f}%, simulated {cens_s * 100:.1f}%. Kaplan-Meier OS at 1/2/3/5 "
        f"years: IWG-PM {' / '.join(f'{v:.2f}' for v in km_r)}; "
        f"simulated {' / '.join(f'{v:.2f}' for v in km_s)}.",
        "",
    ]
    cidx, big = c_indices(use_case, seed)
    big_gap = max(abs(np.nanmean(real[g]) - big[g].cast(pl.Float64).mean()) * 100 for g in freq)
    lines += [f"Largest top-20 gene-frequency gap on the draw of {LARGE_N:,}: {big_gap:.2f} points.", ""]
    lines.append(
        f"C-index on a draw of {LARGE_N:,} (seed {seed + 1}): "
        + ", ".join(f"{k} {v:.3f}" for k, v in cidx.items())
        + " (scores on the rows they can score)."
    )
    shares = layer_shares(use_case, seed)
    lines += [
        "",
        f"What each layer carries (oracle C on a draw of {LARGE_N:,}, the layer's link to survival "
        "broken by permuting it): " + ", ".join(f"{k} {v:.3f}" for k, v in shares.items()) + ".",
    ]
    checks["oracle C in [0.78, 0.85]"] = 0.78 <= cidx["oracle"] <= 0.85
    if use_case == "mds":
        checks["IPSS-M C in [0.70, 0.76]"] = 0.70 <= cidx["IPSS-M"] <= 0.76
        checks["IPSS-R C in [0.66, 0.72]"] = 0.66 <= cidx["IPSS-R"] <= 0.72
    else:
        checks["CPSS-mol C in [0.60, 0.70]"] = 0.60 <= cidx["CPSS-mol"] <= 0.70
    lines += [
        "",
        "Figures: "
        + ", ".join(f"`figures/{use_case}_{k}.png`" for k in ("genes", "pairs", "labs", "cyto_km")),
    ]
    lines += ["", "| check | passed |", "|---|---|"] + [
        f"| {k} | {'yes' if v else 'NO'} |" for k, v in checks.items()
    ]
    return lines + [""], checks


HEADER = """# Simulator calibration: MDS and CMML against IWG-PM

Regenerate: `python experiments/simulation/fit.py` (fits `fedjax_rhd/simulate/params_{mds,cmml}.json`
on the real cohort) then `python experiments/simulation/report.py` (this page and `figures/`).
Both need `../shared/data/mds_iwgpm`; the simulators themselves never read it.
The study's pattern on these simulators (centralised vs FedAvg vs the smallest node alone vs the
clinical score, best and worst scenarios, 5 split seeds) is in [STUDY.md](STUDY.md).

Generative story: a Gaussian copula (multivariate probit for the discrete variables) over age,
sex, labs, cytogenetics and 54 genes, fitted on IWG-PM (`fedjax_rhd/simulate/copula.py`);
ground-truth hazard = the clinical score's signal (IPSS-M for MDS, CPSS-mol for CMML) plus
effects the score misses (non-linear labs, gene-gene interactions, age, genes outside the
score) (`fedjax_rhd/simulate/mds.py`, `cmml.py`); Weibull baseline and administrative +
random censoring fitted to the real Kaplan-Meier and reverse Kaplan-Meier curves.
The CMML calibration cohort is small (262 patients with survival): gene prevalences are
shrunk towards MDS's and correlations averaged with MDS's, so rare CMML genes follow MDS.
IWG-PM's CMML patients all have WBC < 13 (dysplastic CMML): the simulated CMML cohort
inherits that, so CPSS-mol's WBC point is never scored (a known limitation).
Rare-gene pairs (a handful of co-mutated patients) are attenuated on purpose: their tetrachoric
correlations are shrunk towards 0 in proportion to the information they carry (`fit.py`,
`PAIR_SHRINK`), so the strongest co-occurrences by odds ratio, mostly between rare genes
(e.g. NPM1-FLT3, WT1-NPM1), are weaker in the simulation than in IWG-PM; signs agree.
The copula's pairwise structure cannot make the splicing factors exclusive: a thinning rule
does (`copula.exclusive`), as does a rule making IPSS-R "very poor" imply complex karyotype.
3% of simulated patients have no gene panel (IWG-PM sequenced everyone).
Discrete marginals are exact within each draw (`copula.exact_flags` / `exact_levels`: each
latent is cut at its within-draw quantile), so a draw of the study's size carries the fitted
gene frequencies without binomial noise; what remains of the gap comes from the splicing
factors' thinning and the 3% without a panel.

Ground truth (mds-sim-3, cmml-sim-2). MDS: IPSS-M's signal (weight 0.25) plus what it
misses: age, non-linear labs, 33 rarer genes, and 28 strong interactions (gene-gene,
gene-lesion and gene-lab-threshold pairs carried by 1-9% of patients) that only pooled data
can learn; the age slope is weaker than in real cohorts (a compromise to keep IPSS-M and
IPSS-R in their published ranges while the interactions carry the federated signal).
CMML: CPSS-mol's ingredients at published effect sizes (cytogenetic risk, Such et al. 2013;
ASXL1, NRAS, RUNX1, SETBP1, Elena et al. 2016) plus what CPSS-mol misses. Details and
reasons in the docstrings of `fedjax_rhd/simulate/mds.py` and `cmml.py`. "What each layer
carries" below is the oracle's C-index when one layer's link to survival is broken: what a
node without that layer cannot learn from its own rows.
"""


def main(argv: list[str] | None = None) -> None:
    global FIG, LARGE_N  # the section and figure functions read these module-level settings
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real-data", default="../shared/data")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for README.md and figures/")
    parser.add_argument("--large-n", type=int, default=LARGE_N, help="the large draw (smoke tests: small)")
    args = parser.parse_args(argv)
    FIG, LARGE_N = args.out / "figures", args.large_n
    tables = real_tables(Path(args.real_data))
    title, rest = HEADER.split("\n", 1)
    lines = [title, "", provenance("experiments/simulation/report.py", argv), rest]
    for use_case in ("mds", "cmml"):
        part, checks = section(use_case, tables[use_case], args.seed)
        lines += part
        print(use_case, checks)
    (args.out / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
