"""The report's synthetic section: generators' validation table and fidelity per round (Figure 3).

Reads generative runs (``final.kind == "generative"``; ``fedjax_rhd/generative.py``). One table
row per (use case, scenario, split, model) and *generator*: the federated strategy's global
model, the centralised (pooled) model, and under ``local`` every node's own model (each node
alone). Each number is the mean over split seeds with a 95% t-interval over those seeds
(``report.sweep.seed_t_interval``; the seeds' spread holds training and sampling noise, the
interval is not a test-row bootstrap). The table's metrics come from the final validation
(``final.generative.validation``: against the federation's training rows and the holdout);
the figure's come from ``rounds[*].synthetic_fidelity`` (``fidelity_every``: CSF and GSF
against the benchmark holdout, every generator with the same number of rows).
"""

from __future__ import annotations

import dataclasses
import html
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from fedjax_rhd.report.runs import CENTRALIZED, LOCAL, RowKey, Run  # noqa: E402
from fedjax_rhd.report.sweep import seed_t_interval  # noqa: E402

# (field of final.generative.validation, column header)
METRICS = (
    ("csf", "CSF"),
    ("gsf", "GSF"),
    ("quality_sdmetrics_style", "quality (SDMetrics-style)"),
    ("detection_auc", "detection AUC"),
    ("tstr_difference", "TSTR ΔC"),
    ("tstr_deepsurv_difference", "TSTR ΔC (DeepSurv)"),
    ("mia_auc", "MIA AUC"),
    ("dcr_closer_to_train_share", "closer to train"),
    ("exact_copy_share", "exact copies"),
    ("validity_total", "impossible values"),
)
CURVES = (("csf", "CSF"), ("gsf", "GSF"))
METHOD = (
    "Mean over split seeds [95% t-interval over the seeds]. Table: the final generator's validation "
    "(fidelity against the federation's training rows, privacy against the rows the generator saw, "
    "each generator sampling as many rows as its own training patients unless `model.n_synthetic` is "
    "set). Figure: CSF and GSF per round against the benchmark holdout the manager holds "
    "(`fidelity_every`), every generator sampling the same number of rows. Rounds are chosen by "
    "federated validation loss, never by these numbers."
)


@dataclasses.dataclass(frozen=True)
class Value:
    """A mean over split seeds with its t-interval (NaN bounds with one seed)."""

    mean: float
    low: float
    high: float
    n: int


@dataclasses.dataclass(frozen=True)
class SyntheticRow:
    """One generator of one table row: its metrics over split seeds."""

    key: RowKey
    generator: str  # e.g. "fedavg (global)", "centralised", "node2 alone"
    strategy: str
    trained_on: str  # global, pooled or a node's name
    seeds: tuple[int, ...]
    n_synthetic: float
    values: dict[str, Value | None]
    gate_passed: int  # seeds whose default privacy gate passed


def _label(strategy: str, trained_on: str, share: float | None) -> str:
    if strategy == CENTRALIZED:
        return "centralised"
    if strategy == LOCAL:
        return f"{trained_on} ({share:.0%}) alone" if share is not None else f"{trained_on} alone"
    if trained_on.startswith("sd_pool"):  # sd_sharing: the pooled gated rows, or a generator retrained on it
        return f"{strategy} ({trained_on})"
    return f"{strategy} (global)"


def _order(row: SyntheticRow) -> tuple:
    rank = 2 if row.strategy == LOCAL else 1 if row.strategy == CENTRALIZED else 0
    return (row.key.use_case, row.key.scenario, row.key.split, row.key.model, rank, row.generator)


def _value(values: list[float]) -> Value | None:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return None
    mean, low, high = seed_t_interval(finite)
    return Value(mean, low, high, len(finite))


def _blocks(run: Run) -> list[dict[str, Any]]:
    gen = run.results["final"]["generative"]
    return [gen, *gen.get("nodes", [])]


def _shares(run: Run) -> dict[str, float]:
    return {n["name"]: float(n["share"]) for n in run.results["final"]["nodes"]}


def synthetic_rows(runs: list[Run]) -> list[SyntheticRow]:
    """One row per (row key, generator) over the generative ``runs``; unvalidated blocks give None."""
    found: dict[tuple[RowKey, str, str], list[tuple[Run, dict[str, Any]]]] = defaultdict(list)
    for run in runs:
        for block in _blocks(run):
            found[(run.row, run.strategy, block["trained_on"])].append((run, block))
    rows = []
    for (key, strategy, trained_on), members in found.items():
        validated = [(r, b["validation"]) for r, b in members if b["validation"] is not None]
        share = _shares(members[0][0]).get(trained_on)
        rows.append(
            SyntheticRow(
                key=key,
                generator=_label(strategy, trained_on, share),
                strategy=strategy,
                trained_on=trained_on,
                seeds=tuple(sorted(r.seed for r, _ in members)),
                # sd_sharing with every node's rows refused: no table (synthetic null), 0 rows
                n_synthetic=float(np.mean([(b["synthetic"] or {"n": 0})["n"] for _, b in members])),
                values={m: _value([v.get(m) for _, v in validated]) for m, _ in METRICS},
                gate_passed=sum(bool(v["privacy_gate"]["passed"]) for _, v in validated),
            )
        )
    return sorted(rows, key=_order)


def curve(runs: list[Run], generator: str, metric: str) -> tuple[np.ndarray, list[Value]]:
    """(rounds, per-round mean over split seeds with its t-interval) of one generator's metric."""
    by_round: dict[int, list[float]] = defaultdict(list)
    for run in runs:
        for record in run.results["rounds"]:
            scores = (record.get("synthetic_fidelity") or {}).get("generators", {}).get(generator)
            if scores is not None and scores.get(metric) is not None:
                by_round[int(record["round"])].append(float(scores[metric]))
    rounds = np.array(sorted(by_round), dtype=int)
    return rounds, [_value(by_round[r]) for r in rounds]


def curve_seeds(runs: list[Run], generator: str) -> int:
    """How many of ``runs`` recorded per-round fidelity for ``generator`` (a run with
    ``fidelity_every=0`` trains the same final model but draws no curve)."""
    return sum(
        any(
            ((r.get("synthetic_fidelity") or {}).get("generators") or {}).get(generator)
            for r in run.results["rounds"]
        )
        for run in runs
    )


def shares_of(runs: list[Run]) -> dict[str, float]:
    """Node name -> share of the first run (the nodes' order)."""
    return _shares(runs[0])


def fidelity_file(key: RowKey) -> str:
    return f"fidelity_{key.use_case}_{key.scenario}_{key.split}_{key.model}.png"


def plot_fidelity(key: RowKey, runs: list[Run], out_dir: Path) -> Path | None:
    """Figure 3 for one row key: CSF and GSF per round, FL vs centralised vs each node alone.

    Solid black: the federated global model(s); grey dash-dot: centralised; dashed colours:
    each node alone. Shaded: the 95% t-interval over split seeds where two or more seeds ran
    that round. Returns None when no run recorded per-round fidelity.
    """
    mine = [r for r in runs if r.row == key]
    series: list[tuple[str, list[Run], str, dict[str, Any]]] = []
    colours = plt.get_cmap("tab10")
    for strategy in sorted({r.strategy for r in mine}, key=lambda s: (s in (CENTRALIZED, LOCAL), s)):
        group = [r for r in mine if r.strategy == strategy]
        if strategy == LOCAL:
            shares = _shares(group[0])
            for i, name in enumerate(shares):
                style = {"color": colours(i), "ls": "--", "lw": 1.3}
                series.append((_label(LOCAL, name, shares[name]), group, name, style))
        elif strategy == CENTRALIZED:
            series.append(("centralised", group, "pooled", {"color": "0.45", "ls": "-.", "lw": 2.0}))
        else:
            series.append((_label(strategy, "global", None), group, "global", {"color": "black", "lw": 2.2}))
    if not any(len(curve(g, gen, "csf")[0]) for _, g, gen, _ in series):
        return None
    fig, axes = plt.subplots(1, len(CURVES), figsize=(11, 5.0), dpi=120, sharex=True)
    first_stop = min(len(r.results["rounds"]) for r in mine)
    for ax, (metric, title) in zip(axes, CURVES, strict=True):
        later: list[float] = []  # means after round 1, which set the y range (round 1 is untrained)
        first: list[str] = []
        for label, group, gen, style in series:
            x, values = curve(group, gen, metric)
            if not len(x):
                continue
            mean = np.array([v.mean for v in values])
            n_seeds = curve_seeds(group, gen)  # seeds with a curve, not every run of the strategy
            ax.plot(x, mean, marker="o", ms=2.5, label=f"{label} ({n_seeds} seeds)", **style)
            band = np.array([v.n >= 2 for v in values])
            if band.any():
                low = np.array([v.low for v in values])
                high = np.array([v.high for v in values])
                if gen in ("global", "pooled"):  # shaded for FL and centralised
                    ax.fill_between(x[band], low[band], high[band], color=style["color"], alpha=0.15, lw=0)
                else:  # error bars for the nodes alone, so the bands stay readable
                    err = np.vstack([mean[band] - low[band], high[band] - mean[band]])
                    dx = 0.6 * (list(shares_of(group)).index(gen) - 1)  # side by side, not on top
                    ax.errorbar(x[band] + dx, mean[band], yerr=err, fmt="none", ecolor=style["color"], lw=0.8,
                                alpha=0.6, capsize=2)  # fmt: skip
            later += mean[x > 1].tolist()
            if x[0] == 1:
                first.append(f"{mean[0]:.2f}")
        if later:  # zoom on the trained rounds; round 1's values are written, not plotted in range
            ax.set_ylim(max(min(later) - 0.03, 0.0), min(max(later) + 0.02, 1.005))
            ax.text(
                0.02, 0.03, f"round 1 (untrained): {', '.join(first)}", transform=ax.transAxes, fontsize=7
            )
        if first_stop < max(len(r.results["rounds"]) for r in mine):
            ax.axvline(first_stop + 0.5, color="0.6", lw=0.8, ls=":")
        ax.set_title(f"{title} against the benchmark holdout")
        ax.set_xlabel("round")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("score (1 = same as the real holdout)")
    axes[0].plot([], [], color="0.6", lw=0.8, ls=":", label="first early stop (fewer seeds to the right)")
    fig.legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="lower center", ncol=3, frameon=False)
    fig.suptitle(
        f"{key.use_case} · {key.scenario} · split {key.split} · {key.model}: fidelity per round, "
        "mean over the split seeds in the legend, 95% t-interval over the seeds (shaded / bars)",
        fontsize=9,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / fidelity_file(key)
    fig.savefig(path)
    plt.close(fig)
    return path


def fmt_value(v: Value | None, digits: int = 3) -> str:
    """``mean [low, high]``, ``mean`` with one seed, ``n/a`` without a value."""
    if v is None:
        return "n/a"
    f = f"{{:.{digits}f}}"
    if v.n < 2:
        return f.format(v.mean)
    return f"{f.format(v.mean)} [{f.format(v.low)}, {f.format(v.high)}]"


def _groups(rows: list[SyntheticRow]) -> dict[RowKey, list[SyntheticRow]]:
    out: dict[RowKey, list[SyntheticRow]] = defaultdict(list)
    for row in rows:
        out[row.key].append(row)
    return out


def _cells(row: SyntheticRow) -> list[str]:
    gate = f"{row.gate_passed}/{row.values['csf'].n if row.values['csf'] else 0}"
    return [row.generator, str(len(row.seeds)), f"{row.n_synthetic:.0f}",
            *(fmt_value(row.values[m]) for m, _ in METRICS), gate]  # fmt: skip


HEADER = ["generator", "seeds", "n synthetic", *(h for _, h in METRICS), "gate passed"]


def markdown_section(rows: list[SyntheticRow], figures: dict[RowKey, Path | None], out_dir: Path) -> str:
    """The synthetic section in Markdown: one table (and Figure 3) per row key."""
    lines = ["# Synthetic patients (generative runs)", "", METHOD, ""]
    for key, group in _groups(rows).items():
        lines += [f"## {key.use_case}, {key.scenario}, split {key.split}, model {key.model}", ""]
        lines += ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
        lines += ["| " + " | ".join(_cells(row)) + " |" for row in group]
        lines.append("")
        if figures.get(key) is not None:
            lines += [f"![fidelity per round]({figures[key].relative_to(out_dir).as_posix()})", ""]
    return "\n".join(lines) + "\n"


def html_section(rows: list[SyntheticRow], figures: dict[RowKey, Path | None]) -> str:
    """The synthetic section as HTML (figures as data URIs), for the report's page."""
    import base64

    e = html.escape
    parts = [
        "<h1>Synthetic patients (generative runs)</h1>",
        f'<p class="method">{e(METHOD.replace("`", ""))}</p>',
    ]
    for key, group in _groups(rows).items():
        parts.append(
            f"<h2>{e(key.use_case)}, {e(key.scenario)}, split {e(key.split)}, model {e(key.model)}</h2>"
        )
        parts.append('<div class="scroll"><table class="survival"><thead><tr>')
        parts.append("".join(f"<th>{e(h)}</th>" for h in HEADER) + "</tr></thead><tbody>")
        for row in group:
            parts.append("<tr>" + "".join(f"<td>{e(c)}</td>" for c in _cells(row)) + "</tr>")
        parts.append("</tbody></table></div>")
        if figures.get(key) is not None:
            data = base64.b64encode(figures[key].read_bytes()).decode("ascii")
            parts.append(f'<p><img alt="fidelity per round" src="data:image/png;base64,{data}"></p>')
    return "\n".join(parts) + "\n"


def csv_text(rows: list[SyntheticRow]) -> str:
    """``synthetic.csv``: one line per generator, each metric's mean, bounds and seed count."""
    head = [
        "use_case",
        "scenario",
        "split",
        "model",
        "strategy",
        "trained_on",
        "generator",
        "seeds",
        "n_synthetic",
    ]
    head += [f"{m}_{p}" for m, _ in METRICS for p in ("mean", "ci_low", "ci_high", "n")] + ["gate_passed"]
    out = [",".join(head)]
    for row in rows:
        k = row.key
        cells = [k.use_case, k.scenario, k.split, k.model, row.strategy, row.trained_on, f'"{row.generator}"',
                 " ".join(map(str, row.seeds)), f"{row.n_synthetic:g}"]  # fmt: skip
        for m, _ in METRICS:
            v = row.values[m]
            cells += ["", "", "", "0"] if v is None else [repr(v.mean), repr(v.low), repr(v.high), str(v.n)]
        out.append(",".join([*cells, str(row.gate_passed)]))
    return "\n".join(out) + "\n"
