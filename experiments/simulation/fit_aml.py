"""Fit the AML simulator's parameters on Beat AML 2.0 and write them as a small JSON file.

Run once (needs ``../shared/data/aml_beat2``; the simulator never reads real data):

    PYTHONPATH=. python experiments/simulation/fit_aml.py [--real-data-root ../shared/data]

It loads the cohort through ``fedjax_rhd.cohorts`` (one record per patient, 773
patients after the loader's documented exclusions) and writes
``fedjax_rhd/simulate/params/aml_beat.json``:

- ``classes``: genetic classes by ELN-like precedence (CBF, KMT2A, rare adverse
  fusions, TP53/complex, NPM1, myelodysplasia-related, other), fitted on the rows with
  a complete karyotype and gene panel: class shares; per class the empirical patterns
  of its defining flags; every other binary flag's frequency (add-half smoothing);
  the class means of the transformed labs and age.
- ``lab_effects``: pooled OLS effects of FLT3-ITD and de novo status on the transformed
  labs (with class dummies), so FLT3-ITD AML has its high WBC and blast counts.
- ``lab_cov``: pooled within-class residual covariance (pairwise complete, clipped PSD).
- ``missing``: per-feature missing rates, with the karyotype and gene panel as blocks.
- ``targets``: what the calibration report compares against (marginals, associations,
  Kaplan-Meier median OS, death share, reverse-KM median follow-up).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import polars as pl
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from fedjax_rhd.cohorts import beataml, require
from harmonize.guide import load_guide

OUT = Path(__file__).resolve().parents[2] / "fedjax_rhd" / "simulate" / "params" / "aml_beat.json"
CONTINUOUS = ("age", "hb", "wbc", "plt", "bm_blasts", "pb_blasts", "ldh")
OTHER_MISSING = ("sex_male", "de_novo", "FLT3_ITD", "NPM1")
CLASSES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("CBF", ("t_8_21", "inv16")),
    ("KMT2A", ("t_9_11", "kmt2a_r")),
    ("rare_adverse", ("t_6_9", "t_9_22", "t_8_16", "inv3_mecom")),
    ("TP53_complex", ("TP53", "complex_or_monosomal", "abn17p")),
    ("NPM1", ("NPM1",)),
    (
        "MR",
        ("ASXL1", "BCOR", "EZH2", "RUNX1", "SF3B1", "SRSF2", "STAG2", "U2AF1", "minus5_del5q", "minus7"),
    ),
    ("other", ()),
)


def transform(name: str, x: np.ndarray) -> np.ndarray:
    """The modelling scale of a continuous feature (inverse in ``simulate/aml.py``)."""
    if name in ("wbc", "plt", "ldh"):
        return np.log(np.maximum(x, 0.1))
    if name in ("bm_blasts", "pb_blasts"):
        p = np.clip(x / 100.0, 0.005, 0.995)
        return np.log(p / (1 - p))
    return x


def assign_class(df: pl.DataFrame) -> np.ndarray:
    out = np.full(df.height, len(CLASSES) - 1)
    for k in range(len(CLASSES) - 2, -1, -1):
        flags = CLASSES[k][1]
        hit = np.any([df[f].fill_null(0).to_numpy() == 1 for f in flags], axis=0)
        out = np.where(hit, k, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_root = Path(__file__).resolve().parents[3] / "shared" / "data"
    parser.add_argument("--real-data-root", default=str(default_root))
    parser.add_argument("--out", type=Path, default=OUT, help="the params file to write")
    args = parser.parse_args(argv)
    guide = load_guide("aml_beat")
    cohort = beataml.load_aml(guide, require(Path(args.real_data_root)))  # the reader's parsed table
    df = cohort[0].sort("patient_id")
    scored = df.join(cohort[3], on="patient_id").filter(pl.col("clinical_score").is_not_null())
    eln_c = concordance_index(
        scored["time"].to_numpy(), -scored["clinical_score"].to_numpy(), scored["event"].to_numpy()
    )
    binary = [f.name for f in guide.features if f.kind == "binary"]
    cyto = [f.name for f in guide.features if f.group == "cytogenetic"]
    genes = [f.name for f in guide.features if f.group == "genomic" and f.name not in ("FLT3_ITD", "NPM1")]
    complete = df.filter(pl.all_horizontal(pl.col([*binary]).is_not_null()))
    cls = assign_class(complete)

    # Transformed continuous matrix (NaN where missing) for all complete-genetics rows.
    cont = np.column_stack(
        [transform(c, complete[c].cast(pl.Float64).fill_null(np.nan).to_numpy()) for c in CONTINUOUS]
    )
    flt3 = complete["FLT3_ITD"].to_numpy()
    denovo = complete["de_novo"].to_numpy()
    class_dummies = np.eye(len(CLASSES))[cls]
    design = np.column_stack([class_dummies, flt3, denovo])
    coef = np.zeros((design.shape[1], len(CONTINUOUS)))
    resid = np.full_like(cont, np.nan)
    for j in range(len(CONTINUOUS)):
        ok = ~np.isnan(cont[:, j])
        coef[:, j] = np.linalg.lstsq(design[ok], cont[ok, j], rcond=None)[0]
        resid[ok, j] = cont[ok, j] - design[ok] @ coef[:, j]
    cov = np.zeros((len(CONTINUOUS), len(CONTINUOUS)))
    for a in range(len(CONTINUOUS)):
        for b in range(len(CONTINUOUS)):
            ok = ~np.isnan(resid[:, a]) & ~np.isnan(resid[:, b])
            cov[a, b] = np.mean(resid[ok, a] * resid[ok, b])
    w, v = np.linalg.eigh(cov)
    cov = (v * np.maximum(w, 1e-3)) @ v.T

    classes = []
    for k, (name, defining) in enumerate(CLASSES):
        rows = complete.filter(pl.Series(cls == k))
        earlier = {f for _, d in CLASSES[:k] for f in d}
        patterns: dict[str, int] = {}
        if defining:
            for r in rows.select(list(defining)).iter_rows():
                key = "".join(str(int(v)) for v in r)
                patterns[key] = patterns.get(key, 0) + 1
        freq = {}
        for f in binary:
            if f in defining:
                continue
            freq[f] = 0.0 if f in earlier else (float(rows[f].sum()) + 0.5) / (rows.height + 1.0)
        classes.append(
            {
                "name": name,
                "share": rows.height / complete.height,
                "n": rows.height,
                "defining": list(defining),
                "patterns": dict(sorted(patterns.items())),
                "freq": freq,
                "lab_mean": coef[k].tolist(),
            }
        )

    kmf = KaplanMeierFitter().fit(df["time"].to_numpy(), df["event"].to_numpy())
    rev = KaplanMeierFitter().fit(df["time"].to_numpy(), 1 - df["event"].to_numpy())
    labs = {
        c: np.nanquantile(df[c].cast(pl.Float64).fill_null(np.nan).to_numpy(), [0.25, 0.5, 0.75]).tolist()
        for c in CONTINUOUS
    }

    def cond(a: str, b: str) -> list[float]:
        t = complete.filter(pl.col(b) == 1)[a].mean()
        f = complete.filter(pl.col(b) == 0)[a].mean()
        return [float(t), float(f)]

    params = {
        "source": "Beat AML 2.0 (Bottomly et al., Cancer Cell 2022), fedjax_rhd.cohorts loader",
        "n_patients": df.height,
        "n_complete_genetics": complete.height,
        "continuous": list(CONTINUOUS),
        "classes": classes,
        "lab_effects": {"FLT3_ITD": coef[-2].tolist(), "de_novo": coef[-1].tolist()},
        "lab_cov": cov.tolist(),
        "missing": {
            "cytogenetic_block": float(df[cyto[0]].is_null().mean()),
            "gene_block": float(df[genes[0]].is_null().mean()),
            **{c: float(df[c].is_null().mean()) for c in (*CONTINUOUS, *OTHER_MISSING)},
        },
        "targets": {
            "freq": {f: float(df[f].mean()) for f in binary},
            "lab_quartiles": labs,
            "associations": {
                "FLT3_ITD|NPM1": cond("FLT3_ITD", "NPM1"),
                "normal_karyotype|NPM1": cond("normal_karyotype", "NPM1"),
                "complex_or_monosomal|TP53": cond("complex_or_monosomal", "TP53"),
                "SRSF2|de_novo": cond("SRSF2", "de_novo"),
                "DNMT3A|NPM1": cond("DNMT3A", "NPM1"),
            },
            "eln_c_index": float(eln_c),
            "eln_n_scored": scored.height,
            "median_os_years": float(kmf.median_survival_time_),
            "death_share": float(df["event"].mean()),
            "median_follow_up_years": float(rev.median_survival_time_),
            "max_time_years": float(df["time"].max()),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(params, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
