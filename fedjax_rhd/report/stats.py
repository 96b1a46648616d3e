"""C-indices over split seeds with bootstrap intervals that pair models on the same rows.

A cell of the study table is the mean over split seeds of a model's test C-index. Its
95% interval comes from a stratified bootstrap: each seed's test rows are resampled
with replacement (the seed's own resample indices, shared by every model scored on
those rows) and the per-seed C-indices of a resample are averaged. Because every model
of a seed sees the same resamples, differences between two cells are paired bootstraps
on the same test rows (the design of ``experiments/foundation``, ARCHITECTURE §5). The
interval reflects test-set sampling given the trained models (``Interval.covers`` says
so); the spread of models across split seeds is reported beside it (``sd_seeds``). For a
claim about methods use :mod:`fedjax_rhd.report.cluster`, which also resamples split
seeds and training seeds, and links patients shared between the seeds' test sets.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from fedjax_rhd.metrics.concordance import _idx_weights, _weighted_cindices, concordance_index

ROWS_STREAM = 0x524F5753  # "ROWS": the test-row bootstrap's stream tag (no seed takes this value)
TEST_ROWS = (
    "test rows only: each split seed's test rows resampled independently, given the trained models "
    "(not split seeds, not training seeds, shared patients not linked)"
)


@dataclasses.dataclass(frozen=True)
class Interval:
    """A mean over split seeds with its bootstrap interval."""

    estimate: float
    ci_low: float
    ci_high: float
    seeds: tuple[int, ...]
    n_boot: int  # resamples used (those with comparable pairs in every seed)
    # What the interval resampled, in words (the report prints it): the default is this module's
    # test-row interval; fedjax_rhd.report.cluster's intervals name split seeds and training seeds too.
    covers: str = TEST_ROWS


class SeedRows:
    """One split seed's test rows and bootstrap resamples, shared by every model scored on them."""

    def __init__(
        self, time: np.ndarray, event: np.ndarray, *, seed: int, n_boot: int, boot_seed: int
    ) -> None:
        self.time = np.asarray(time, dtype=np.float64)
        self.event = np.asarray(event).astype(bool)
        # One generator per (report seed, split seed): adding a seed or a model to a report
        # leaves every other seed's resamples unchanged. The first word tags the stream: the data
        # layer draws from SeedSequence([seed.split, k]) with small k, and an untagged [boot_seed, seed]
        # equalled one of those (boot_seed 0, split seed 0: the test-split stream of split seed 0).
        rng = np.random.default_rng(np.random.SeedSequence([ROWS_STREAM, boot_seed, seed]))
        self.idx = rng.integers(0, len(self.time), size=(n_boot, len(self.time)), dtype=np.int64)

    def cindex(self, risk: np.ndarray) -> float:
        """C-index on the rows where ``risk`` is defined (a clinical score may not score every row)."""
        risk = np.asarray(risk, dtype=np.float64)
        scored = ~np.isnan(risk)
        return concordance_index(self.time[scored], self.event[scored], risk[scored])

    def boot(self, risk: np.ndarray) -> np.ndarray:
        """f64[n_boot] the C-index on every resample (NaN where a resample has no comparable pair).

        Rows where ``risk`` is NaN (unscored) are left out of each resample, which keeps
        the resample itself, so differences with other models stay paired.
        """
        risk = np.asarray(risk, dtype=np.float64)
        scored = ~np.isnan(risk)
        n = len(self.time)

        def weights(batch: int):
            # A resample restricted to the scored rows: the multiplicities of those rows.
            return (w[:, scored] for w in _idx_weights(self.idx, n, batch))

        t, e = self.time[scored], self.event[scored]
        c, _ = _weighted_cindices(t, e, [risk[scored]], weights, len(self.idx))
        return c[:, 0]


def _interval(point: float, boots: np.ndarray, seeds: tuple[int, ...], alpha: float) -> Interval:
    valid = ~np.isnan(boots)
    if not valid.any():
        raise ValueError("no bootstrap resample has comparable pairs in every seed")
    low, high = np.quantile(boots[valid], [alpha / 2, 1 - alpha / 2])
    return Interval(float(point), float(low), float(high), seeds, int(valid.sum()))


def mean_over_seeds(points: dict[int, float], boots: dict[int, np.ndarray], alpha: float = 0.05) -> Interval:
    """Mean of per-seed C-indices and the percentile interval of the mean over resamples.

    Args:
        points: seed -> C-index on all of that seed's test rows.
        boots: seed -> f64[n_boot] C-index on each of that seed's resamples.
        alpha: the interval is the alpha/2 and 1 - alpha/2 percentiles.
    """
    seeds = tuple(sorted(points))
    mean_boot = np.mean([boots[s] for s in seeds], axis=0)
    return _interval(float(np.mean([points[s] for s in seeds])), mean_boot, seeds, alpha)


def paired_difference(
    a: tuple[dict[int, float], dict[int, np.ndarray]],
    b: tuple[dict[int, float], dict[int, np.ndarray]],
    alpha: float = 0.05,
) -> Interval | None:
    """Mean over common seeds of C(a) - C(b), bootstrapped on the same resampled rows.

    Returns None when the two share no seed.
    """
    seeds = tuple(sorted(set(a[0]) & set(b[0])))
    if not seeds:
        return None
    point = float(np.mean([a[0][s] - b[0][s] for s in seeds]))
    boots = np.mean([a[1][s] - b[1][s] for s in seeds], axis=0)
    return _interval(point, boots, seeds, alpha)


def combine_reported(cis: dict[int, dict[str, float]], alpha: float = 0.05) -> Interval:
    """Mean over seeds from per-run intervals alone (when no per-row predictions exist).

    Each run's percentile interval is read as a normal one (half-width / z gives its
    standard error); seeds are independent test sets, so the mean's standard error is
    sqrt(sum se^2) / n. An approximation, flagged as such wherever it is shown.
    """
    from scipy.stats import norm

    seeds = tuple(sorted(cis))
    z = float(norm.ppf(1 - alpha / 2))
    est = float(np.mean([cis[s]["estimate"] for s in seeds]))
    se = float(
        np.sqrt(sum(((cis[s]["ci_high"] - cis[s]["ci_low"]) / (2 * z)) ** 2 for s in seeds)) / len(seeds)
    )
    return Interval(est, est - z * se, est + z * se, seeds, 0)
