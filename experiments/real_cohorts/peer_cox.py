"""A peer library on the SAME test rows: lifelines' penalised Cox against FedAvg DeepSurv.

The peer-library figures of ``../shared/data/README.md`` come from other random splits,
so they cannot be paired with ours. This script refits one of them, penalised Cox
(lifelines ``CoxPHFitter``, ridge), centralised on exactly the training and
validation rows of each ``seed.split`` of the ``mds_iwgpm`` sweep (the data layer's
pooled split, the same preprocessing), chooses the penalty on the validation rows
(C-index; never the test rows), refits on training + validation, and scores the
test rows that have a stored IPSS-M. It pairs the result with the sweep's FedAvg
predictions on the same rows (mean over split seeds of the paired difference, with the
cluster bootstrap of ``fedjax_rhd.report.cluster``; FedAvg's training replicates, if the
sweep has several per split seed, are averaged and resampled).

Usage:  python experiments/real_cohorts/peer_cox.py multirun/real_cohorts [--n-boot 1000]
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from lifelines import CoxPHFitter

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from fedjax_rhd.cohorts import iwgpm, require, resolve_real_data_root  # noqa: E402
from fedjax_rhd.data.federated import SplitSpec, build_federated_data  # noqa: E402
from fedjax_rhd.metrics.concordance import concordance_index  # noqa: E402
from fedjax_rhd.report import sweep  # noqa: E402
from fedjax_rhd.report.decide import decide  # noqa: E402
from harmonize.guide import load_guide  # noqa: E402

PENALIZERS = (0.01, 0.03, 0.1, 0.3, 1.0)
FIVE = (0.45, 0.2, 0.15, 0.1, 0.1)


def _frame(x: np.ndarray, time: np.ndarray, event: np.ndarray, weight: np.ndarray) -> pd.DataFrame:
    keep = weight > 0
    df = pd.DataFrame(np.asarray(x)[keep], columns=[f"x{j}" for j in range(x.shape[1])])
    df["time"], df["event"] = np.asarray(time)[keep], np.asarray(event)[keep]
    return df


def _fit(df: pd.DataFrame, penalizer: float) -> CoxPHFitter:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on rare flags
        return CoxPHFitter(penalizer=penalizer).fit(df, duration_col="time", event_col="event")


def cox_test_risk(table: pl.DataFrame, guide, seed: int) -> tuple[np.ndarray, tuple[str, ...], float]:
    """Penalised-Cox risk on one seed's test rows (time-sorted order) and the chosen penalty."""
    fed = build_federated_data(table, guide, SplitSpec(name="five", fractions=FIVE, seed=seed), pooled=True)
    tr, va = fed.train, fed.val
    train = _frame(tr.x[0], tr.time[0], tr.event[0], tr.weight[0])
    val = _frame(va.x[0], va.time[0], va.event[0], va.weight[0])
    cols = [c for c in train.columns if c not in ("time", "event")]

    def val_c(penalizer: float) -> float:
        risk = _fit(train, penalizer).predict_log_partial_hazard(val[cols]).to_numpy()
        return concordance_index(val["time"].to_numpy(), val["event"].to_numpy(), risk)

    best = max(PENALIZERS, key=val_c)
    model = _fit(pd.concat([train, val], ignore_index=True), best)
    test = pd.DataFrame(np.asarray(fed.test.x), columns=cols)
    return model.predict_log_partial_hazard(test).to_numpy(), fed.test_patient_ids, best


def compare(
    fedavg: dict[int, list[sweep.SweepRun]],
    cox: Callable[[int], tuple[np.ndarray, tuple, float]],
    n_boot: int,
) -> str:
    """The table and the paired difference, given FedAvg's runs per split seed and a Cox fit per seed."""
    lines = [
        "| seed.split | penaliser (by validation C) | penalised Cox | FedAvg DeepSurv | n rows |",
        "|---|---|---|---|---|",
    ]
    fed_side, cox_side, cox_c, fed_c = {}, {}, [], []
    for seed in sorted(fedavg):
        risk, ids, penalizer = cox(seed)
        preds = []
        for run in fedavg[seed]:
            if tuple(run.predictions["patient_id"].to_list()) != tuple(ids):
                raise ValueError(f"seed {seed}: the sweep's test rows differ from the data layer's")
            preds.append(
                run.predictions.with_columns(pl.Series("risk_cox", risk)).filter(
                    pl.col("score_ipssm_stored").is_not_null()
                )
            )
        fed_side[seed], cox_side[seed] = [(p, "risk") for p in preds], [(preds[0], "risk_cox")]
        cox_c.append(sweep.c_index(preds[0], "risk_cox"))
        fed_c.append(float(np.mean([sweep.c_index(p, "risk") for p in preds])))
        lines.append(f"| {seed} | {penalizer} | {cox_c[-1]:.3f} | {fed_c[-1]:.3f} | {preds[0].height} |")
    sd = (lambda v: np.std(v, ddof=1)) if len(cox_c) > 1 else (lambda v: 0.0)
    lines.append(
        f"| mean ± sd | | {np.mean(cox_c):.3f} ± {sd(cox_c):.3f} | {np.mean(fed_c):.3f} ± {sd(fed_c):.3f} | |"
    )
    d = sweep.cluster_interval(fed_side, cox_side, n_boot=n_boot)
    lines.append(
        f"\nFedAvg DeepSurv − penalised Cox (same rows, mean over split seeds): {sweep.fmt(d, True, 4)}; "
        f"{decide(d, 'above').text}. The interval resamples {d.covers}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path)
    parser.add_argument("--n-boot", type=int, default=1000)
    args = parser.parse_args(argv)
    guide = load_guide("mds_iwgpm")
    # The reader's parsed table: value for value the registered dataset the runs trained on.
    table = iwgpm.load_mds(guide, require(resolve_real_data_root())).table
    grouped = sweep.by_split_seed(sweep.load_sweep([args.root / "mds_iwgpm"]), "strategy.name")
    body = compare(grouped[("fedavg",)], lambda seed: cox_test_risk(table, guide, seed), args.n_boot)
    text = sweep.provenance("experiments/real_cohorts/peer_cox.py", argv) + "\n\n" + body
    print(text)
    (args.root / "peer_cox.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
