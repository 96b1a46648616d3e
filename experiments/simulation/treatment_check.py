"""Measure the optional treatment layer on a large draw (numbers quoted in docs/treatment.md).

Run: ``PYTHONPATH=. python experiments/simulation/treatment_check.py [--n 30000] [--seed 5]``

Prints, per use case (MDS, CMML): treatment shares, response rates among HMA-treated
patients, a Cox fit (lifelines) recovering the configured log hazard ratios, and the
C-index on a held-out half of a Cox model from diagnosis (clinical score) against one that
also sees the treatment and response columns: the gain is information from after diagnosis.
"""

from __future__ import annotations

import argparse

import numpy as np
import polars as pl
from lifelines import CoxPHFitter

from fedjax_rhd.metrics.concordance import concordance_index
from fedjax_rhd.simulate import cmml, mds
from fedjax_rhd.simulate import treatment as tx
from harmonize.guide import load_guide

SCORES = {"mds": ("IPSS-M", mds.ipssm_linear), "cmml": ("CPSS-mol", cmml.cpss_mol)}
SIMULATE = {"mds": mds.simulate_mds, "cmml": cmml.simulate_cmml}


def _arrays(df: pl.DataFrame) -> dict[str, np.ndarray]:
    codes = {level: i for i, level in enumerate(tx.RESPONSE_LEVELS)}
    out = {c: df[c].to_numpy().astype(np.int64) for c in ("hma_azacitidine", "hma_decitabine")}
    out |= {c: df[c].to_numpy().astype(np.int64) for c in ("intensive_chemo", "allo_hsct")}
    out["hma_response"] = np.array([-1 if v is None else codes[v] for v in df["hma_response"].to_list()])
    return out


def _score(use_case: str, df: pl.DataFrame, guide_name: str) -> np.ndarray:
    """The clinical score on complete covariates (the frame's own features, nulls as NaN)."""
    guide = load_guide(guide_name)
    cov = {}
    for f in guide.features:
        if f.group == "treatment":
            continue
        if f.kind == "categorical":
            code = {lv: float(i) for i, lv in enumerate(f.levels)}
            cov[f.name] = np.array([np.nan if v is None else code[v] for v in df[f.name].to_list()])
        else:
            cov[f.name] = df[f.name].cast(pl.Float64).fill_null(np.nan).to_numpy()
    return SCORES[use_case][1](cov)


def measure(use_case: str, n: int, seed: int) -> None:
    guide_name = f"{use_case}+treatment"
    df = SIMULATE[use_case](load_guide(guide_name), n=n, seed=seed, with_treatment=True)
    params = tx.PARAMS[use_case]
    t = _arrays(df)
    hma = (t["hma_azacitidine"] + t["hma_decitabine"]) > 0
    print(f"\n## {use_case.upper()} (n = {n}, seed {seed})\n")
    print("| share of patients | % |\n|---|---|")
    for name in ("hma_azacitidine", "hma_decitabine", "intensive_chemo", "allo_hsct"):
        print(f"| {name} | {100 * t[name].mean():.1f} |")
    print(f"| supportive care only | {100 * np.mean(~hma & (t['intensive_chemo'] == 0)):.1f} |")
    counts = np.bincount(t["hma_response"][hma], minlength=len(tx.RESPONSE_LEVELS)) / hma.sum()
    print("\n| response among HMA-treated | simulated % | configured % |\n|---|---|---|")
    for level, got, want in zip(tx.RESPONSE_LEVELS, counts, params.response_rates, strict=True):
        print(f"| {level} | {100 * got:.1f} | {100 * want:.1f} |")
    print(
        f"| overall (CR+PR+HI) | {100 * counts[:3].sum():.1f} | {100 * sum(params.response_rates[:3]):.1f} |"
    )

    base = df["oracle_risk"].to_numpy() - tx.treatment_log_hazard(t, params)
    resp = t["hma_response"]
    dummies = {
        f"r_{lv}": (resp == i).astype(np.int64) for i, lv in enumerate(tx.RESPONSE_LEVELS) if lv != "sd"
    }
    x = pl.DataFrame(
        {
            "base": base,
            "aza": t["hma_azacitidine"],
            "dec": t["hma_decitabine"],
            "ic": t["intensive_chemo"],
            "hsct": t["allo_hsct"],
            **dummies,
            "time": df["time"].to_numpy(),
            "event": df["event"].to_numpy(),
        }
    ).to_pandas()
    fit = CoxPHFitter().fit(x, duration_col="time", event_col="event")
    c = params.centred_response_log_hr
    truth = {
        "base": 1.0,
        "aza": params.log_hr_azacitidine + c[3],
        "dec": params.log_hr_decitabine + c[3],
        "ic": params.log_hr_intensive,
        "hsct": params.log_hr_hsct,
        **{f"r_{lv}": c[i] - c[3] for i, lv in enumerate(tx.RESPONSE_LEVELS) if lv != "sd"},
    }
    print("\n| Cox term (SD reference) | configured log-HR | fitted | 95% CI |\n|---|---|---|---|")
    ci = fit.confidence_intervals_
    for name, value in truth.items():
        lo, hi = ci.loc[name]
        print(f"| {name} | {value:+.3f} | {fit.params_[name]:+.3f} | [{lo:+.3f}, {hi:+.3f}] |")

    # The leak: a Cox model from diagnosis against one that also sees treatment and response.
    score = np.nan_to_num(_score(use_case, df, guide_name), nan=0.0)
    rng = np.random.default_rng(seed)
    train = rng.random(n) < 0.5
    time, event = df["time"].to_numpy(), df["event"].to_numpy()
    cols = {"score": score, "aza": t["hma_azacitidine"], "dec": t["hma_decitabine"]}
    cols |= {"ic": t["intensive_chemo"], "hsct": t["allo_hsct"], **dummies}
    full = pl.DataFrame({**cols, "time": time, "event": event}).to_pandas()
    rows = [
        ("oracle, diagnosis part (no treatment)", base),
        ("oracle with treatment (oracle_risk)", df["oracle_risk"].to_numpy()),
        (SCORES[use_case][0] + " alone", score),
    ]
    model = CoxPHFitter().fit(full[train][["score", "time", "event"]], duration_col="time", event_col="event")
    rows.append(
        (f"Cox on {SCORES[use_case][0]}", model.predict_log_partial_hazard(full[["score"]]).to_numpy())
    )
    given = ["score", "aza", "dec", "ic", "hsct"]
    model = CoxPHFitter().fit(full[train][[*given, "time", "event"]], duration_col="time", event_col="event")
    rows.append(
        (
            f"Cox on {SCORES[use_case][0]} + treatment",
            model.predict_log_partial_hazard(full[given]).to_numpy(),
        )
    )
    model = CoxPHFitter().fit(full[train], duration_col="time", event_col="event")
    rows.append(
        (
            f"Cox on {SCORES[use_case][0]} + treatment + response",
            model.predict_log_partial_hazard(full.drop(columns=["time", "event"])).to_numpy(),
        )
    )
    print("\n| risk (held-out half) | C-index |\n|---|---|")
    for name, risk in rows:
        print(f"| {name} | {concordance_index(time[~train], event[~train], risk[~train]):.3f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30_000)
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    for use_case in ("mds", "cmml"):
        measure(use_case, args.n, args.seed)


if __name__ == "__main__":
    main()
