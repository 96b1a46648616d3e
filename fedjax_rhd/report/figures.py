"""Per-round test C-index curves (the study's Figure 2), one PNG per table row.

Each node's model under federation (solid), the same node's isolated model (dashed,
same colour), the global model (black) and the centralised model (grey), all on the
global test set, averaged over split seeds at every round (a seed that stopped early
drops out of the later rounds' means, so the number of seeds is printed per curve).
The curves are read from ``results.json`` ``rounds``; they are for reading how training
went, never for choosing a round (rounds are chosen on federated validation loss).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed (CI, SSH)

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedjax_rhd.report.runs import CENTRALIZED, LOCAL, Run  # noqa: E402
from fedjax_rhd.report.table import Row  # noqa: E402


def mean_curve(runs: list[Run], field: str, index: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rounds, mean over runs) of ``rounds[*][field]`` (element ``index`` if a list).

    Rounds where no run has the field are left out; a run that stopped early contributes
    to the rounds it ran.
    """
    by_round: dict[int, list[float]] = {}
    for run in runs:
        for record in run.results["rounds"]:
            value = record.get(field)
            if value is None:
                continue
            by_round.setdefault(int(record["round"]), []).append(
                float(value if index is None else value[index])
            )
    rounds = np.array(sorted(by_round), dtype=int)
    return rounds, np.array([np.mean(by_round[r]) for r in rounds])


def file_name(row: Row) -> str:
    k = row.key
    return f"curves_{k.use_case}_{k.scenario}_{k.split}_{k.model}_{row.fl_strategy or 'none'}.png"


def plot_row(row: Row, runs: list[Run], out_dir: Path) -> Path | None:
    """Write the row's curves to ``out_dir`` and return the file, or None without per-round data."""
    mine = [r for r in runs if r.row == row.key]
    fl = [r for r in mine if r.strategy == row.fl_strategy]
    loc = [r for r in mine if r.strategy == LOCAL]
    cen = [r for r in mine if r.strategy == CENTRALIZED]
    if not (fl or loc or cen):
        return None
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    colours = plt.get_cmap("tab10")
    label = row.fl_label
    for i, name in enumerate(row.node_names):
        share = next((c.share for c in row.cells if c.node == name and c.share is not None), None)
        tag = f"{name} ({share:.0%})" if share is not None else name
        if fl:
            x, y = mean_curve(fl, "c_index_test_nodes", i)
            ax.plot(x, y, color=colours(i), lw=1.6, label=f"{tag} with {label}")
        if loc:
            x, y = mean_curve(loc, "c_index_test_nodes", i)
            ax.plot(x, y, color=colours(i), lw=1.2, ls="--", label=f"{tag} alone")
    if fl:
        x, y = mean_curve(fl, "c_index_test_global")
        if len(x):
            ax.plot(x, y, color="black", lw=2.2, label=f"{label} global model")
    if cen:
        x, y = mean_curve(cen, "c_index_test_nodes", 0)
        ax.plot(x, y, color="0.45", lw=2.0, ls="-.", label="centralised (full dataset)")
    lasts = [len(r.results["rounds"]) for r in mine]
    if min(lasts) < max(lasts):
        # Past this round the means lose the seeds that stopped early: steps there are not training.
        ax.axvline(
            min(lasts) + 0.5, color="0.6", lw=0.8, ls=":", label="first early stop (fewer seeds to the right)"
        )
    seeds = sorted({r.seed for r in mine})
    reps = len({(r.seed, r.training_seeds) for r in mine}) // max(len(seeds), 1)
    k = row.key
    over = f"{len(seeds)} split seed(s)" + (f" × {reps} training replicates" if reps > 1 else "")
    ax.set_title(f"{k.use_case} · {k.scenario} · split {k.split} · {k.model} — mean over {over}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("round")
    ax.set_ylabel("C-index on the test set")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / file_name(row)
    fig.savefig(path)
    plt.close(fig)
    return path
