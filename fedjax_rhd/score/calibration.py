"""Calibration at stated horizons: predicted survival against Kaplan-Meier observed survival.

At a horizon ``h`` the rows are ordered by predicted ``S(h | x)`` and cut into equal-sized
groups; each group's mean prediction is set beside the Kaplan-Meier estimate of its observed
survival at ``h`` (the grouped calibration plot of survival models, Royston & Altman 2013,
"External validation of a Cox prognostic model: principles and methods", BMC Med Res
Methodol 13:33, §2.4; Steyerberg, *Clinical Prediction Models*, 2nd ed., ch. 15). The whole
cohort's pair is calibration-in-the-large. Kaplan-Meier is :func:`fedjax_rhd.metrics.ipcw.kaplan_meier`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedjax_rhd.metrics.ipcw import kaplan_meier


def calibration_at(
    time: np.ndarray, event: np.ndarray, predicted: np.ndarray, horizon: float, groups: int
) -> dict[str, Any]:
    """One horizon's calibration table.

    Args:
        time, event: the scored rows' follow-up and event indicator.
        predicted: f64[n] each row's predicted survival at ``horizon``.
        horizon: the time, in the guide's time unit.
        groups: equal-sized groups by predicted survival (fewer if there are fewer rows).

    Returns:
        ``{"horizon", "predicted", "observed", "n_at_risk", "groups": [{"n", "events",
        "n_at_risk", "predicted", "observed"}]}``: mean prediction and Kaplan-Meier survival at
        ``horizon``, overall and per group (lowest predicted survival first); ``n_at_risk``
        counts rows still followed at the horizon (0: the observed value is carried past the
        last follow-up, not observed).
    """
    time = np.asarray(time, np.float64)
    event = np.asarray(event).astype(bool)
    predicted = np.asarray(predicted, np.float64)
    order = np.argsort(predicted, kind="stable")
    rows = []
    for idx in np.array_split(order, min(groups, len(order))):
        rows.append(
            {
                "n": int(len(idx)),
                "events": int(event[idx].sum()),
                "n_at_risk": int(np.sum(time[idx] >= horizon)),
                "predicted": float(predicted[idx].mean()),
                "observed": float(kaplan_meier(time[idx], event[idx], np.array([horizon]))[0]),
            }
        )
    return {
        "horizon": float(horizon),
        "predicted": float(predicted.mean()),
        "observed": float(kaplan_meier(time, event, np.array([horizon]))[0]),
        "n_at_risk": int(np.sum(time >= horizon)),
        "groups": rows,
    }


def default_horizons(evaluation_times: Sequence[float]) -> list[float]:
    """The evaluation times at their first, second and third quarter (training deaths' spread)."""
    times = list(evaluation_times)
    picks = {times[round(q * (len(times) - 1))] for q in (0.25, 0.5, 0.75)}
    return sorted(float(t) for t in picks)


def plot_calibration(models: Sequence[tuple[str, Sequence[dict[str, Any]]]], title: str, time_unit: str,
                     path: Path) -> Path:  # fmt: skip
    """One row of panels per model, one panel per horizon: groups' mean predicted against observed survival.

    Args:
        models: ``(model name, its calibration tables)`` (horizons past the follow-up left out).
        title: the figure's title.
        time_unit: the guide's time unit, for the panel titles.
        path: the PNG to write.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    cols = max(len(tables) for _, tables in models)
    fig, axes = plt.subplots(len(models), cols, figsize=(3.2 * cols, 3.2 * len(models)), squeeze=False)
    for row, (name, tables) in zip(axes, models, strict=True):
        for ax in row[len(tables) :]:
            ax.set_visible(False)
        for ax, table in zip(row, tables, strict=False):
            ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="perfect")
            ax.plot([g["predicted"] for g in table["groups"]], [g["observed"] for g in table["groups"]], "o-",
                    label="groups by predicted survival")  # fmt: skip
            ax.plot([table["predicted"]], [table["observed"]], "s", color="black", label="all rows")
            ax.set(xlim=(0, 1), ylim=(0, 1), title=f"{name} · {table['horizon']:.3g} {time_unit}")
            ax.set_aspect("equal")
        row[0].set_ylabel("observed (Kaplan-Meier)")
    for ax in axes[-1]:
        ax.set_xlabel("predicted survival")
    axes[0][0].legend(loc="upper left", fontsize="x-small")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
