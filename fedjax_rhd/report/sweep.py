"""The experiment scripts' one way to read a sweep and put an interval on a claim about methods.

Every study script under ``experiments/`` reads run folders (``results.json`` beside
``test_predictions.parquet``), groups them by what it compares, and reports C-indices
and paired differences. This module is the library those scripts share, so an interface
change breaks their smoke tests (``tests/experiments``) instead of a results page:

* :func:`load_sweep` reads every run under some folders; :func:`by_split_seed` groups
  runs by ``seed.split``, keeping the ``seed.init`` / ``seed.train`` replicates of one
  split seed together (sorted by those seeds, so two methods' replicates pair by position).
* :func:`cluster_interval` is the cluster bootstrap of :mod:`fedjax_rhd.report.cluster`
  (split seeds, patients shared between the seeds' test sets, training replicates) for one
  method's mean C-index or the paired difference of two, with ``Interval.covers`` saying
  what it resampled.
* :func:`provenance` is the line every results page starts with: the commit and command
  that produced it.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedjax_rhd.metrics.concordance import concordance_index
from fedjax_rhd.report.cluster import ClusterDesign, SeedTestRows
from fedjax_rhd.report.stats import Interval

# One model's risks on one split seed's test rows: its predictions and the column to read.
Scored = tuple[pl.DataFrame, str]


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One run folder: its results and test predictions."""

    path: Path  # the results.json file
    results: dict[str, Any] = dataclasses.field(repr=False)
    predictions: pl.DataFrame = dataclasses.field(repr=False)

    def config(self, dotted: str) -> Any:
        """A config value by dotted key, e.g. ``"strategy.name"``."""
        node: Any = self.results["config"]
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def split_seed(self) -> int:
        return int(self.config("seed.split"))

    @property
    def training_seeds(self) -> tuple[int, int]:
        seed = self.results["config"]["seed"]
        return int(seed.get("init", 0)), int(seed.get("train", 0))


def load_sweep(roots: Iterable[str | Path]) -> list[SweepRun]:
    """Every run below ``roots`` (folders searched recursively for ``results.json``).

    Raises:
        FileNotFoundError: a root that does not exist, or a run without its predictions.
    """
    runs = []
    for root in map(Path, roots):
        if not root.exists():
            raise FileNotFoundError(f"{root}: no such sweep folder")
        for path in sorted(root.rglob("results.json")):
            pred = path.parent / "test_predictions.parquet"
            if not pred.is_file():
                raise FileNotFoundError(f"{pred}: missing; every run writes it next to results.json")
            runs.append(SweepRun(path, json.loads(path.read_text()), pl.read_parquet(pred)))
    return runs


def by_split_seed(runs: Iterable[SweepRun], *keys: str) -> dict[tuple, dict[int, list[SweepRun]]]:
    """Runs grouped by the config values ``keys``, then split seed; replicates sorted by training seeds.

    Two runs of one group, split seed and training seeds would make a replicate ambiguous: an error.
    """
    out: dict[tuple, dict[int, list[SweepRun]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        out[tuple(run.config(k) for k in keys)][run.split_seed].append(run)
    for group, seeds in out.items():
        for seed, reps in seeds.items():
            reps.sort(key=lambda r: r.training_seeds)
            pairs = [r.training_seeds for r in reps]
            if len(set(pairs)) != len(pairs):
                raise ValueError(
                    f"{group}, seed.split={seed}: two runs with the same seed.init/seed.train: "
                    + ", ".join(str(r.path) for r in reps)
                )
    return {g: dict(s) for g, s in out.items()}


def c_index(pred: pl.DataFrame, column: str) -> float:
    """Harrell's C of ``column`` on the rows where it is set (neither null nor NaN)."""
    risk = _risk(pred, column)
    keep = ~np.isnan(risk)
    return concordance_index(pred["time"].to_numpy()[keep], pred["event"].to_numpy()[keep], risk[keep])


def _risk(pred: pl.DataFrame, column: str) -> np.ndarray:
    return pred[column].cast(pl.Float64).fill_null(np.nan).to_numpy()


def cluster_interval(
    a: Mapping[int, Sequence[Scored]],
    b: Mapping[int, Sequence[Scored]] | None = None,
    *,
    n_boot: int = 1000,
    boot_seed: int = 0,
    resample_splits: bool = True,
    alpha: float = 0.05,
) -> Interval | None:
    """Mean C-index of ``a`` (or the paired difference a - b) with the cluster bootstrap.

    Args:
        a: split seed -> one (predictions, column) per training replicate. Every frame of a seed
            must list the same patients in the same order (they are scored on the same rows).
        b: the method subtracted, on the same split seeds' rows; None for a's mean alone.
        n_boot: bootstrap replicates.
        boot_seed: seed of the resamples.
        resample_splits: resample split seeds (a claim about the method); False fixes them.
        alpha: the interval is the alpha/2 and 1 - alpha/2 percentiles.

    Returns:
        The interval (``covers`` says what it resampled); None when ``b`` shares no seed with ``a``.
        Rows where a column is null are left out of that column's C-index (a clinical score that
        scores fewer rows); a paired difference is computed on the rows where every compared column
        is set, so "model − score" compares both on the score's rows.

    Raises:
        ValueError: frames of one split seed that do not list the same patients.
    """
    seeds = sorted(set(a) & set(b)) if b is not None else sorted(a)
    if not seeds:
        return None
    test: dict[int, SeedTestRows] = {}
    for s in seeds:
        frames = [f for f, _ in a[s]] + ([f for f, _ in b[s]] if b is not None else [])
        ref = frames[0]
        for f in frames[1:]:
            if not f["patient_id"].equals(ref["patient_id"]):
                raise ValueError(f"seed.split={s}: the compared runs do not list the same test patients")
        test[s] = SeedTestRows(ref["patient_id"].to_numpy(), ref["time"].to_numpy(), ref["event"].to_numpy())
    design = ClusterDesign(test, n_boot=n_boot, boot_seed=boot_seed, resample_splits=resample_splits)
    ra = {s: [_risk(f, c) for f, c in a[s]] for s in seeds}
    if b is None:
        return design.mean(design.score(ra), alpha)
    rb = {s: [_risk(f, c) for f, c in b[s]] for s in seeds}
    # A paired difference is on the rows both sides score (a clinical score may not score every patient).
    rows = {s: ~np.isnan(np.vstack([*ra[s], *rb[s]])).any(axis=0) for s in seeds}
    return design.difference(design.score(ra, rows), design.score(rb, rows), alpha)


def seed_t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): a t-interval over one value per split seed (n - 1 degrees of freedom).

    What a study script reports when each seed gives one number (a run's C-index, or a paired
    difference on the seed's own test rows); NaN bounds for fewer than two seeds.
    """
    from scipy import stats

    x = np.asarray(values, dtype=np.float64)
    mean = float(np.mean(x))
    if len(x) < 2:
        return mean, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * np.std(x, ddof=1) / np.sqrt(len(x)))
    return mean, mean - half, mean + half


def fmt(iv: Interval | None, signed: bool = False, digits: int = 3) -> str:
    """``estimate [low, high]`` (``n/a`` for None)."""
    if iv is None:
        return "n/a"
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    return f"{f.format(iv.estimate)} [{f.format(iv.ci_low)}, {f.format(iv.ci_high)}]"


# What produces numbers: a change here (uncommitted) makes a page's commit not the whole story. Results pages
# themselves (Markdown, figures) are left out, or regenerating one page would mark the next one dirty.
_CODE = (
    "fedjax_rhd",
    "harmonize",
    "conf",
    "hydra_plugins",
    ":(glob)experiments/**/*.py",
    ":(glob)experiments/**/*.sh",
)


def git_commit(root: Path | None = None) -> str:
    """The checkout's commit (``+dirty`` when its code has uncommitted changes), or ``unknown``."""
    cwd = root or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *_CODE],
            cwd=cwd,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def provenance(script: str, argv: Sequence[str] | None = None) -> str:
    """The results page's first line: the commit and the exact command that produced it."""
    args = list(sys.argv[1:] if argv is None else argv)
    command = " ".join(["python", script, *args])
    return f"Produced at commit `{git_commit()}` by `{command}`."
