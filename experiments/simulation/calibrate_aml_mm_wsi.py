"""Calibration reports of the simulated AML, MM and MDS-with-slides cohorts (Markdown).

    PYTHONPATH=. python experiments/simulation/calibrate_aml_mm_wsi.py [--out experiments/simulation]

Needs no real data: the Beat AML targets are in ``fedjax_rhd/simulate/params/aml_beat.json``
(written by ``fit_aml.py``); the myeloma targets are the published figures cited in
``fedjax_rhd/simulate/mm.py``. Each report compares one draw at the study's size
(seed 0) and a large draw (n = 20,000, seed 0) with the targets, and gives the ground
truth's and the clinical score's C-index (Harrell, lifelines) and the censoring.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import polars as pl
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from fedjax_rhd.report.sweep import provenance
from fedjax_rhd.scores import riss
from fedjax_rhd.simulate import aml, mds_wsi, mm
from fedjax_rhd.simulate.mds import simulate_mds
from fedjax_rhd.sources.scores import clinical_scores
from harmonize.guide import load_guide

LARGE = 20000


def _c(df: pl.DataFrame, risk: np.ndarray) -> float:
    ok = ~np.isnan(risk)
    return float(concordance_index(df["time"].to_numpy()[ok], -risk[ok], df["event"].to_numpy()[ok]))


def _survival(df: pl.DataFrame) -> dict[str, float]:
    t, e = df["time"].to_numpy(), df["event"].to_numpy()
    km = KaplanMeierFitter().fit(t, e)
    rev = KaplanMeierFitter().fit(t, 1 - e)
    return {
        "median OS (KM, y)": float(km.median_survival_time_),
        "5-year OS": float(km.predict(5.0)),
        "deaths": float(e.mean()),
        "median follow-up (reverse KM, y)": float(rev.median_survival_time_),
    }


def _score(df: pl.DataFrame, use_case: str) -> np.ndarray:
    _, table = clinical_scores(df, load_guide(use_case))
    return table["clinical_score"].cast(pl.Float64).fill_null(np.nan).to_numpy()


def _row(*cells: object) -> str:
    return "| " + " | ".join(f"{c:.3f}" if isinstance(c, float) else str(c) for c in cells) + " |"


def aml_report() -> str:
    guide = load_guide("aml")
    small, large = aml.simulate_aml(guide, seed=0), aml.simulate_aml(guide, n=LARGE, seed=0)
    t = aml.params()["targets"]
    out = [
        "# Simulated AML (`aml`, generator aml-sim-1) against Beat AML 2.0",
        "",
        "Targets: Beat AML 2.0 (773 patients after the loader's exclusions), measured by",
        "`experiments/simulation/fit_aml.py`. Columns: Beat AML, the study-size draw (n = 1,547,",
        f"seed 0), a large draw (n = {LARGE:,}, seed 0).",
        "",
        "## Karyotype lesions and genes (share mutated / present among those tested)",
        "",
        f"| feature | Beat AML | sim n=1547 | sim n={LARGE} |",
        "|---|---|---|---|",
    ]
    for f, beat in t["freq"].items():
        if f in ("CEBPA", "PDS5B"):
            continue
        out.append(_row(f, beat, float(small[f].mean()), float(large[f].mean())))
    for f in ("CEBPA_bZIP", "ZRSR2"):
        out.append(_row(f + " (published, see module)", "-", float(small[f].mean()), float(large[f].mean())))
    out += ["", "## Associations: P(A | B) and P(A | not B)", "", f"| A given B | Beat AML | sim n={LARGE} |"]
    out.append("|---|---|---|")
    for key, (given, not_given) in t["associations"].items():
        a, b = key.split("|")
        sg = float(large.filter(pl.col(b) == 1)[a].mean())
        sn = float(large.filter(pl.col(b) == 0)[a].mean())
        out.append(_row(f"{a} given {b}", f"{given:.3f} / {not_given:.3f}", f"{sg:.3f} / {sn:.3f}"))
    out += ["", "## Age and labs: quartiles", "", f"| feature | Beat AML | sim n={LARGE} |", "|---|---|---|"]
    for lab, q in t["lab_quartiles"].items():
        sq = np.nanquantile(large[lab].cast(pl.Float64).fill_null(np.nan).to_numpy(), [0.25, 0.5, 0.75])
        out.append(_row(lab, " / ".join(f"{v:.1f}" for v in q), " / ".join(f"{v:.1f}" for v in sq)))
    out += ["", "## Missingness", "", f"| feature | Beat AML | sim n={LARGE} |", "|---|---|---|"]
    miss = aml.params()["missing"]
    out.append(_row("karyotype (block)", miss["cytogenetic_block"], float(large["t_8_21"].is_null().mean())))
    out.append(_row("gene panel (block)", miss["gene_block"], float(large["TP53"].is_null().mean())))
    for lab in ("hb", "wbc", "plt", "bm_blasts", "pb_blasts", "ldh"):
        out.append(_row(lab, miss[lab], float(large[lab].is_null().mean())))
    out += _truth_section(
        small,
        large,
        "aml",
        "ELN 2022",
        {
            "median OS (KM, y)": t["median_os_years"],
            "deaths": t["death_share"],
            "median follow-up (reverse KM, y)": t["median_follow_up_years"],
        },
        f"Beat AML: ELN 2022 C = {t['eln_c_index']:.3f} on its {t['eln_n_scored']} scored patients.",
    )
    return "\n".join(out) + "\n"


def _truth_section(small, large, use_case, score, targets, note) -> list[str]:
    out = ["", "## Survival and ground truth", "", f"| quantity | target | sim n=study | sim n={LARGE} |"]
    out.append("|---|---|---|---|")
    s_small, s_large = _survival(small), _survival(large)
    for k in s_small:
        out.append(_row(k, targets.get(k, "-"), s_small[k], s_large[k]))
    out.append(_row("oracle C (true log-hazard)", "0.78-0.85", _c(small, small["oracle_risk"].to_numpy()),
                    _c(large, large["oracle_risk"].to_numpy())))  # fmt: skip
    out.append(_row(f"{score} C", "0.58-0.68", _c(small, _score(small, use_case)),
                    _c(large, _score(large, use_case))))  # fmt: skip
    out += ["", note]
    return out


def mm_report() -> str:
    guide = load_guide("mm")
    small, large = mm.simulate_mm(guide, seed=0), mm.simulate_mm(guide, n=LARGE, seed=0)
    rows = [
        ("male", "sex_male", None, 0.59, "Kyle 2003"),
        ("age, median", "age", "median", 66.0, "Kyle 2003"),
        ("Hb < 12 g/dL", "hb", ("<", 12.0), 0.73, "Kyle 2003"),
        ("creatinine >= 2 mg/dL", "creatinine", (">=", 2.0), 0.19, "Kyle 2003"),
        ("calcium >= 11 mg/dL", "calcium", (">=", 11.0), 0.13, "Kyle 2003"),
        ("LDH > 250 U/L (ULN)", "ldh", (">", mm.LDH_ULN), 0.11, "Palumbo 2015 (approx.)"),
        ("del(17p)", "del17p", None, 0.09, "Palumbo 2015 (approx.)"),
        ("t(4;14)", "t_4_14", None, 0.12, "Palumbo 2015 (approx.)"),
        ("t(14;16)", "t_14_16", None, 0.03, "Palumbo 2015 (approx.)"),
        ("1q gain", "gain1q", None, 0.35, "Walker 2018 (approx.)"),
        ("del(1p)", "del1p", None, 0.10, "Walker 2018 (approx.)"),
    ]

    def value(df, col, how):
        x = df[col].cast(pl.Float64).drop_nulls()
        if how is None:
            return float(x.mean())
        if how == "median":
            return float(x.median())
        op, cut = how
        return float({"<": x < cut, ">=": x >= cut, ">": x > cut}[op].mean())

    out = [
        "# Simulated multiple myeloma (`mm`, generator mm-sim-1) against published figures",
        "",
        "No real myeloma cohort is at hand: targets are the published figures cited in",
        "`fedjax_rhd/simulate/mm.py` (approximate where marked). Shares among patients with the value.",
        "",
        f"| feature | target | source | sim n=1005 | sim n={LARGE} |",
        "|---|---|---|---|---|",
    ]
    for label, col, how, target, src in rows:
        out.append(_row(label, target, src, value(small, col, how), value(large, col, how)))

    def iss(d: pl.DataFrame) -> np.ndarray:
        return riss.iss_stage(
            d["beta2m"].fill_null(np.nan).to_numpy(), d["albumin"].fill_null(np.nan).to_numpy()
        )

    for name, stage_fn, target in (
        ("ISS", iss, "29 / 38 / 34 (Greipp 2005)"),
        ("R-ISS", mm.riss_score, "28 / 62 / 10 (Palumbo 2015)"),
    ):
        cells = []
        for d in (small, large):
            st = stage_fn(d)
            st = st[~np.isnan(st)]
            cells.append(" / ".join(f"{100 * np.mean(st == s):.0f}" for s in (1, 2, 3)))
        out.append(_row(f"{name} I / II / III (%)", target, "", *cells))
    t414 = float(large.filter(pl.col("t_4_14") == 1)["gain1q"].mean())
    out.append(_row("1q gain given t(4;14)", "most", "Walker 2018", "-", t414))
    pet = large.select([f.name for f in guide.features if f.group == "pet"]).drop_nulls().to_numpy()
    corr = np.corrcoef(pet, rowvar=False)
    block = np.arange(mm.PET_FEATURES) // 8
    off = ~np.eye(mm.PET_FEATURES, dtype=bool)
    same = np.abs(corr[(block[:, None] == block[None, :]) & off]).mean()
    other = np.abs(corr[block[:, None] != block[None, :]]).mean()
    eig = np.linalg.eigvalsh(np.cov(pet, rowvar=False))[::-1]
    out += [
        "",
        "## PET radiomics",
        "",
        f"40 features in 5 blocks of 8: mean |correlation| within a block {same:.2f}, between blocks "
        f"{other:.2f}; covariance eigenvalues {', '.join(f'{v:.1f}' for v in eig[:7])}, ... (5 factors "
        "above the noise floor 0.25).",
    ]
    out += _truth_section(
        small,
        large,
        "mm",
        "R-ISS",
        {"5-year OS": 0.63, "median follow-up (reverse KM, y)": 46 / 12},
        "Targets: 5-year OS about 63% overall (Palumbo 2015: 82 / 62 / 40% by R-ISS stage), median "
        "follow-up 46 months (Palumbo 2015).",
    )
    return "\n".join(out) + "\n"


def wsi_report() -> str:
    guide, mds_guide = load_guide("mds_wsi"), load_guide("mds")
    small, large = mds_wsi.simulate_mds_wsi(guide, seed=0), mds_wsi.simulate_mds_wsi(guide, n=LARGE, seed=0)
    clinical_truth = simulate_mds(mds_guide, n=LARGE, seed=0)["oracle_risk"].to_numpy()
    x = large.select(mds_wsi.wsi_names()).drop_nulls().to_numpy()
    eig = np.linalg.svd(x - x.mean(0), compute_uv=False) ** 2 / (len(x) - 1)
    out = [
        "# Simulated MDS with whole-slide-image embeddings (`mds_wsi`, generator mds-wsi-sim-1)",
        "",
        "The clinical and genomic layers are `simulate_mds` itself (its calibration report covers",
        "them); this report covers the embedding and the redrawn outcome.",
        "",
        f"- Embedding: {mds_wsi.EMBEDDING_DIM} dimensions; covariance eigenvalues "
        f"{', '.join(f'{v:.1f}' for v in eig[:14])}, ...: rank 12 (4 clinically driven, 3 hidden, "
        "5 nuisance factors) above a noise floor of 0.25.",
        f"- Slides missing: {float(large['wsi_0001'].is_null().mean()):.3f} (whole vectors).",
        f"- Oracle C with the slide's hidden factors: {_c(large, large['oracle_risk'].to_numpy()):.3f}; "
        f"the MDS truth alone (everything the clinical layers can explain): {_c(large, clinical_truth):.3f}; "
        f"IPSS-R: {_c(large, _score(large, 'mds_wsi')):.3f} (n = {LARGE:,}, seed 0).",
        f"- Study-size draw (n = 860, seed 0): oracle C {_c(small, small['oracle_risk'].to_numpy()):.3f}, "
        f"IPSS-R C {_c(small, _score(small, 'mds_wsi')):.3f}.",
    ]
    s = _survival(large)
    out.append(f"- Survival (n = {LARGE:,}): " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()) + ".")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> None:
    global LARGE  # the report functions read the module-level size; --large sets it
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    parser.add_argument(
        "--large", type=int, default=LARGE, help="the large draw's size (smoke tests: a few hundred)"
    )
    parser.add_argument(
        "--only", nargs="*", default=None, help="reports to write (aml, mm, mds_wsi; default all)"
    )
    args = parser.parse_args(argv)
    out = Path(args.out)
    LARGE = args.large
    for name, report in (("aml", aml_report), ("mm", mm_report), ("mds_wsi", wsi_report)):
        if args.only and name not in args.only:
            continue
        path = out / f"calibration_{name}.md"
        text = report()
        title, rest = text.split("\n", 1)  # the provenance line goes under the page's title
        line = provenance("experiments/simulation/calibrate_aml_mm_wsi.py", argv)
        path.write_text(f"{title}\n\n{line}\n{rest}", encoding="utf-8")
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
