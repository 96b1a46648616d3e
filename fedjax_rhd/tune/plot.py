"""The search's history as one figure: objective per trial with the best so far, and importances."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedjax_rhd.tune.space import SearchPreset  # noqa: E402


def param_importances(study: Any) -> dict[str, float]:
    """fANOVA importances (Hutter et al. 2014) over the complete trials, seeded; empty below 3 trials.

    With few trials they are noisy: read them as where to look, not as a measurement.
    """
    import optuna

    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    if len(complete) < 3:
        return {}
    try:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError):  # e.g. every trial has the same parameters
        return {}


def plot_search(study: Any, preset: SearchPreset, out: Path) -> Path:
    """``search.png``: objective per trial (failed trials marked), best so far; importances beside."""
    trials = [t for t in study.trials if t.state.is_finished()]
    numbers = np.array([t.number for t in trials])
    values = np.array([t.value if t.state.name == "COMPLETE" else np.nan for t in trials], dtype=float)
    importances = param_importances(study)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 4), gridspec_kw={"width_ratios": [3, 2]})
    ok = np.isfinite(values)
    ax.scatter(numbers[ok], values[ok], s=18, color="#1f4e79", label="trial")
    if ok.any():
        best = np.fmin.accumulate(np.where(ok, values, np.inf))
        ax.step(
            numbers,
            np.where(np.isfinite(best), best, np.nan),
            where="post",
            color="#c0504d",
            label="best so far",
        )
        low, high = np.nanmin(values), np.nanmax(values)
        for n in numbers[~ok]:
            ax.axvline(n, color="#999999", lw=0.6, ls=":")
        ax.set_ylim(low - 0.05 * (high - low + 1e-12), high + 0.05 * (high - low + 1e-12))
    ax.set_xlabel("trial")
    ax.set_ylabel("federated validation loss (minimised)")
    ax.set_title(f"search {preset.name}: {ok.sum()} complete, {(~ok).sum()} failed (dotted)")
    ax.legend(loc="best", fontsize=8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if importances:
        names = list(importances)[::-1]
        bx.barh(names, [importances[n] for n in names], color="#4f81bd")
        bx.set_xlabel("fANOVA importance (share of variance)")
        bx.set_title("parameter importances")
    else:
        bx.axis("off")
        bx.text(0.5, 0.5, "importances need >= 3 complete trials", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
