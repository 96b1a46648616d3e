"""Intervals for claims about methods: a cluster bootstrap over split seeds, patients and training seeds.

A claim such as "FedAvg matches centralised training on simulated MDS" is about the
methods, not about one trained model scored on one test set. Its estimate (the mean
over split seeds of the mean over training replicates of a C-index, or of a paired
difference of two) varies with three things, and the interval here resamples each:

1. **Split seeds** (``seed.split``: which patients train, validate and test, and so the
   trained model): the split seeds are clusters, drawn with replacement, the first stage
   of the two-stage bootstrap for hierarchical data (Davison & Hinkley 1997, *Bootstrap
   Methods and their Application*, §3.8).
2. **Patients**: the split seeds' test sets overlap (they are drawn from one cohort), so
   patients are not nested in seeds. Each patient id in the union of the test sets gets
   one Poisson(1) weight per replicate (the Poisson bootstrap, Hanley & MacGibbon 2006,
   Comput Methods Programs Biomed 83:57-62), and every seed's C-index is computed on its
   own rows with those weights: a patient shared by two seeds' test sets is drawn (or
   left out) in both at once. Identical test sets are therefore resampled as one set and
   disjoint ones as independent strata, exactly.
3. **Training seeds** (``seed.init`` / ``seed.train`` replicates of one split seed): the
   R models of a split seed are drawn with replacement, R of them, inside each drawn
   split seed (the second stage of Davison & Hinkley's scheme). Replicates are paired by
   position (the caller's order, sorted by training seeds), so two methods trained with
   the same seeds stay paired.

Every model of a replicate is scored with the same weights and draws, so a difference of
two methods is a paired bootstrap. Resampling every stage is conservative: the split
seeds' spread already contains patient and training noise, which the lower stages add
again (Davison & Hinkley §3.8 discuss exactly this trade-off for few clusters; with five
split seeds the cluster stage alone would understate the variance by a factor 4/5 and
give a coarse percentile interval). ``Interval.covers`` says, in words, which stages an
interval resampled; a stage with one unit (one split seed, one training replicate) is
reported as not covered.

The weighted C-index of a resample is Harrell's C on the rows repeated by their weights,
computed as quadratic forms of the weights with the pair matrices of the original rows
(the same identity :func:`fedjax_rhd.metrics.concordance._bootstrap_cindices` uses).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping, Sequence

import numpy as np

from fedjax_rhd.metrics.concordance import _DENSE_MAX_N, _blocked_cindices, _pair_matrices, _time_groups
from fedjax_rhd.report.stats import Interval

# The report's own random stream. Every other generator of a run is SeedSequence([seed, k]) with a
# small stream number k; a first word no seed takes keeps the report's draws from ever equalling them.
STREAM = 0x52455054  # "REPT"
_WEIGHTS, _SPLITS, _TRAINING = 0, 1, 2
_BATCH = 256  # resamples per matrix product


@dataclasses.dataclass(frozen=True)
class SeedTestRows:
    """One split seed's test rows, in the order its models' risks are given."""

    patient_id: np.ndarray  # any hashable ids, unique within the set
    time: np.ndarray
    event: np.ndarray


@dataclasses.dataclass(frozen=True)
class Scores:
    """One method's C-indices on a design: per split seed, per training replicate."""

    points: dict[int, np.ndarray]  # split seed -> f64[R] C-index on all (scored) rows
    boots: dict[int, np.ndarray]  # split seed -> f64[R, n_boot] C-index on each weighted resample


def weighted_cindices(
    time: np.ndarray, event: np.ndarray, risk: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Harrell's C on the rows repeated ``weights[b]`` times, for every row ``b`` of ``weights``.

    Args:
        time: f64[n] observed times.
        event: bool[n] event indicators.
        risk: f64[n] risks (higher = worse prognosis), no NaN.
        weights: f64[B, n] non-negative integer multiplicities.

    Returns:
        f64[B]: the C-index per resample, NaN where it has no comparable pair.
    """
    time, event = np.asarray(time, np.float64), np.asarray(event).astype(bool)
    risk, weights = np.asarray(risk, np.float64), np.asarray(weights, np.float64)
    g, n_groups = _time_groups(time, event)
    out = np.full(len(weights), np.nan)
    if len(time) <= _DENSE_MAX_N:
        comparable, (score,) = _pair_matrices(g, event, [risk])
        for lo in range(0, len(weights), _BATCH):
            w = weights[lo : lo + _BATCH]
            # A patient never pairs with its own copies (same group), so w M w counts exactly the
            # comparable pairs of the repeated rows; integer sums far below 2**52 are exact.
            comp = np.einsum("bi,bi->b", w @ comparable, w)
            conc = np.einsum("bi,bi->b", w @ score, w)
            ok = comp > 0
            out[lo : lo + _BATCH][ok] = conc[ok] / comp[ok]
        return out
    # Large n: the same integer counts from one sort by time and one by risk (weighted_pairs).
    w = weights.astype(np.int64)
    c, _ = _blocked_cindices(
        time, event, [risk], lambda batch: (w[lo : lo + batch] for lo in range(0, len(w), batch)), len(w)
    )
    return c[:, 0]


class ClusterDesign:
    """The split seeds' test sets of one comparison and the resamples every method shares.

    Args:
        test_sets: split seed -> its test rows.
        n_boot: bootstrap replicates.
        boot_seed: seed of every draw (patient weights, split-seed and training draws).
        resample_splits: draw split seeds with replacement (stage 1); False keeps each seed once,
            which is what a claim about *these* splits needs (and what the overlap tests check).
        resample_training: draw training replicates with replacement inside each split seed.
    """

    def __init__(
        self,
        test_sets: Mapping[int, SeedTestRows],
        *,
        n_boot: int = 1000,
        boot_seed: int = 0,
        resample_splits: bool = True,
        resample_training: bool = True,
    ) -> None:
        if not test_sets:
            raise ValueError("a design needs at least one split seed")
        self.test_sets = {int(s): test_sets[s] for s in sorted(test_sets)}
        self.n_boot, self.boot_seed = int(n_boot), int(boot_seed)
        self.resample_splits, self.resample_training = resample_splits, resample_training
        ids = [np.asarray(t.patient_id) for t in self.test_sets.values()]
        for s, i in zip(self.test_sets, ids, strict=True):
            if len(np.unique(i)) != len(i):
                raise ValueError(f"split seed {s}: patient ids repeat within its test set")
        pool, inverse = np.unique(np.concatenate(ids), return_inverse=True)
        cuts = np.cumsum([len(i) for i in ids])[:-1]
        self.position = dict(zip(self.test_sets, np.split(inverse.ravel(), cuts), strict=True))
        rng = self._rng(_WEIGHTS)
        # One weight per patient id per replicate, shared by every seed whose test set holds it.
        self.weights = rng.poisson(1.0, size=(self.n_boot, len(pool))).astype(np.float64)
        self._cache: dict[bytes, tuple[float, np.ndarray]] = {}
        self.pool = pool  # the distinct patient ids; column j of weights belongs to pool[j]
        self.n_patients = len(pool)

    def _rng(self, *words: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([STREAM, self.boot_seed, *words]))

    def score(
        self, risks: Mapping[int, Sequence[np.ndarray]], rows: Mapping[int, np.ndarray] | None = None
    ) -> Scores:
        """C-indices of one method: ``risks[seed]`` holds one risk vector per training replicate.

        Rows where a risk is NaN (a clinical score that does not score a patient), and rows outside
        ``rows[seed]`` (a boolean mask, e.g. the rows a score covers), get weight 0 in every resample
        and are left out of the point estimate.
        """
        points, boots = {}, {}
        for s, reps in risks.items():
            if s not in self.test_sets:
                raise ValueError(f"split seed {s} is not in this design")
            t = self.test_sets[s]
            w_all = self.weights[:, self.position[s]]
            p, bt = [], []
            for risk in reps:
                risk = np.asarray(risk, np.float64)
                if risk.shape != t.time.shape:
                    raise ValueError(f"split seed {s}: {risk.shape[0]} risks for {len(t.time)} test rows")
                keep = ~np.isnan(risk) if rows is None else ~np.isnan(risk) & np.asarray(rows[s], bool)
                # A report scores one model in several cells and comparisons: compute each once.
                key = hashlib.sha1(np.concatenate([[s], np.where(keep, risk, np.inf)]).tobytes()).digest()
                if key not in self._cache:
                    clean = np.where(keep, risk, 0.0)
                    point = weighted_cindices(t.time, t.event, clean, keep[None, :].astype(np.float64))[0]
                    self._cache[key] = (point, weighted_cindices(t.time, t.event, clean, w_all * keep))
                p.append(self._cache[key][0])
                bt.append(self._cache[key][1])
            points[int(s)], boots[int(s)] = np.asarray(p), np.asarray(bt)
        return Scores(points, boots)

    def _replicates(self, scores: Scores, seeds: tuple[int, ...]) -> np.ndarray:
        """f64[n_boot] the statistic on every replicate: mean over drawn seeds of mean over drawn models."""
        n_seeds = len(seeds)
        if self.resample_splits and n_seeds > 1:
            slots = self._rng(_SPLITS, *seeds).integers(0, n_seeds, size=(self.n_boot, n_seeds))
        else:
            slots = np.broadcast_to(np.arange(n_seeds), (self.n_boot, n_seeds))
        r_max = max(len(scores.points[s]) for s in seeds)
        u = self._rng(_TRAINING, *seeds).random(size=(self.n_boot, n_seeds, r_max))
        b_idx = np.arange(self.n_boot)
        # per_slot[j, k, b]: seed j's replicate mean when it fills slot k (its training draws are the slot's).
        per_slot = np.empty((n_seeds, n_seeds, self.n_boot))
        for j, s in enumerate(seeds):
            c = scores.boots[s]  # [R, B]
            r = len(c)
            for k in range(n_seeds):
                if self.resample_training and r > 1:
                    pick = np.floor(u[:, k, :r] * r).astype(np.int64)  # [B, R]
                    per_slot[j, k] = c[pick, b_idx[:, None]].mean(axis=1)
                else:
                    per_slot[j, k] = c.mean(axis=0)
        return per_slot[slots, np.arange(n_seeds)[None, :], b_idx[:, None]].mean(axis=1)

    def covers(self, seeds: tuple[int, ...], replicates: Sequence[int]) -> str:
        """In words, what an interval over ``seeds`` with these replicate counts resampled."""
        parts = [f"patients ({self.n_patients} distinct test patients, each drawn once per replicate)"]
        if self.resample_splits and len(seeds) > 1:
            parts.append(f"split seeds ({len(seeds)}, drawn with replacement)")
        else:
            parts.append(f"not split seeds ({len(seeds)} fixed)")
        lo = min(replicates)
        if self.resample_training and lo > 1:
            parts.append(f"training seeds ({lo}-{max(replicates)} per split seed, drawn with replacement)")
        else:
            parts.append("not training seeds (one model per split seed)" if max(replicates) == 1 else
                         "not training seeds (replicates averaged, not resampled)")  # fmt: skip
        return "; ".join(parts)

    def _interval(
        self, point: float, boots: np.ndarray, seeds: tuple[int, ...], reps: list[int], alpha: float
    ):
        valid = ~np.isnan(boots)
        if not valid.any():
            raise ValueError("no bootstrap replicate has comparable pairs in every seed")
        low, high = np.quantile(boots[valid], [alpha / 2, 1 - alpha / 2])
        covers = self.covers(seeds, reps)
        return Interval(float(point), float(low), float(high), seeds, int(valid.sum()), covers)

    def mean(self, scores: Scores, alpha: float = 0.05) -> Interval:
        """Mean over split seeds of the mean over training replicates of the C-index, with its interval."""
        seeds = tuple(sorted(scores.points))
        point = float(np.mean([scores.points[s].mean() for s in seeds]))
        reps = [len(scores.points[s]) for s in seeds]
        return self._interval(point, self._replicates(scores, seeds), seeds, reps, alpha)

    def difference(self, a: Scores, b: Scores, alpha: float = 0.05) -> Interval | None:
        """Paired difference a - b over the split seeds both have (None when they share none)."""
        seeds = tuple(sorted(set(a.points) & set(b.points)))
        if not seeds:
            return None
        point = float(np.mean([a.points[s].mean() - b.points[s].mean() for s in seeds]))
        boots = self._replicates(a, seeds) - self._replicates(b, seeds)
        reps = [min(len(a.points[s]), len(b.points[s])) for s in seeds]
        return self._interval(point, boots, seeds, reps, alpha)
