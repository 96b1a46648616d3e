"""Privacy of a synthetic table: distance to closest record, NNDR, a membership attack, the gate.

Distances are Gower's (Gower 1971, "A general coefficient of similarity and some of its
properties", Biometrics 27(4):857-71): the mean over columns (the guide's features plus ``time``
and ``event``) of a per-column distance in [0, 1]: ``|a - b| / range`` for a continuous column
(log1p first where the guide models it on a log scale; the range is the training table's,
differences beyond it count 1), 0/1 mismatch for a binary or categorical one; a missing value
equals another missing value and is at distance 1 from any observed one.

* DCR (distance to closest record; Park et al. 2018, "Data synthesis based on generative
  adversarial networks", PVLDB 11(10)): each synthetic row's distance to its nearest training
  row, against the same distance for real holdout rows (patients the generator never saw), the
  baseline of how close a genuinely new patient comes.
* NNDR (nearest-neighbour distance ratio; Zhao et al. 2021, "CTAB-GAN"): nearest over
  second-nearest training distance; near 0, a synthetic row sits on one patient in particular.
* Membership inference (distance-based, after Hayes et al. 2019 "LOGAN", PoPETs, and Chen et al.
  2020 "GAN-Leaks", CCS): an attacker holding the synthetic table scores a candidate patient by
  minus its distance to the nearest synthetic row; the AUC of that score separating training
  patients (members) from holdout patients (non-members). 0.5 = no membership signal.

SDMetrics (0.32) has DCR metrics of its own but no NNDR and no membership attack, and its DCR
takes minutes at a few thousand rows; these are vectorised numpy (one matrix product per chunk).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from fedjax_rhd.metrics.synthetic._columns import EVENT, TIME, codes, continuous, vocabulary
from harmonize.guide import Feature, Guide

_CHUNK = 1024  # rows of the query table per distance block (1024 x n_reference float64)


class GowerEncoder:
    """Gower's distance between rows of tables in one guide's schema, ranges from a reference table.

    Args:
        guide: the feature schema; ``time`` and ``event`` are compared too.
        reference: the table whose observed ranges scale the continuous columns (the training rows).
        *tables: the other tables to be compared, so that every label they hold gets a level.
        log_scale: compare log1p values where the guide models a feature on a log scale (and
            for ``time``): a platelet count of 20 against 40 then weighs like 200 against 400.
            With ``False`` the distance is SDMetrics' DCR distance
            (``sdmetrics.single_table.privacy.dcr_utils.calculate_dcr``).
    """

    def __init__(
        self, guide: Guide, reference: pl.DataFrame, *tables: pl.DataFrame, log_scale: bool = True
    ) -> None:
        self.continuous: list[tuple[str, bool, float]] = []  # (column, log1p?, range; 0 = constant)
        self.discrete: list[tuple[Feature, list[Any]]] = []
        outcome = (Feature(name=TIME, kind="continuous", group="clinical", log=True),)
        outcome += (Feature(name=EVENT, kind="binary", group="clinical"),)
        for f in guide.features + outcome:
            if f.kind == "continuous":
                x = self._values(reference, f.name, f.log and log_scale)
                span = float(np.nanmax(x) - np.nanmin(x)) if np.isfinite(x).any() else 0.0
                self.continuous.append((f.name, f.log and log_scale, span))
            else:
                self.discrete.append((f, vocabulary(f, reference, *tables)))
        self.n_columns = len(self.continuous) + len(self.discrete)

    @staticmethod
    def _values(table: pl.DataFrame, name: str, log: bool) -> np.ndarray:
        x = continuous(table, name)
        return np.log1p(np.clip(x, 0.0, None)) if log else x

    def encode(self, table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """(continuous values, NaN where missing; one-hot of every discrete column, missing a level)."""
        cols = [self._values(table, name, log) for name, log, _ in self.continuous]
        xc = np.column_stack(cols) if cols else np.zeros((table.height, 0))
        blocks = []
        for f, vocab in self.discrete:
            c = codes(table, f, vocab)
            c = np.where(c < 0, len(vocab) + 1, c)  # missing: its own level (len(vocab) is "unknown")
            blocks.append(np.eye(len(vocab) + 2)[c])
        xd = np.hstack(blocks) if blocks else np.zeros((table.height, 0))
        return xc, xd

    def nearest(self, query: pl.DataFrame, reference: pl.DataFrame, k: int = 1) -> np.ndarray:
        """The k smallest distances from each query row to the reference rows, ascending (n_query x k)."""
        if reference.height < k:
            raise ValueError(f"nearest: {k} neighbours asked of a reference with {reference.height} rows")
        qc, qd = self.encode(query)
        rc, rd = self.encode(reference)
        out = np.empty((query.height, k))
        for start in range(0, query.height, _CHUNK):
            sl = slice(start, start + _CHUNK)
            # Discrete mismatches: columns minus matching levels, one matrix product.
            d = len(self.discrete) - qd[sl] @ rd.T
            for j, (_, _, span) in enumerate(self.continuous):
                a, b = qc[sl, j][:, None], rc[:, j][None, :]
                na, nb = np.isnan(a), np.isnan(b)
                gap = np.abs(np.nan_to_num(a) - np.nan_to_num(b))
                # A column constant in the reference: any difference counts fully.
                diff = np.minimum(gap / span, 1.0) if span > 0 else (gap > 0).astype(float)
                d += np.where(na & nb, 0.0, np.where(na | nb, 1.0, diff))
            d /= self.n_columns
            part = np.partition(d, k - 1, axis=1)[:, :k] if d.shape[1] > k else d
            out[sl] = np.sort(part, axis=1)[:, :k]
        return np.maximum(out, 0.0)  # float rounding of the matrix product


def _auc(members: np.ndarray, non_members: np.ndarray) -> float:
    """ROC AUC of scores, members positive (Mann-Whitney U over n1 * n0; ties count half)."""
    from scipy.stats import rankdata  # here: the privacy gate, imported by every run, needs no scipy.stats

    ranks = rankdata(np.concatenate([members, non_members]))
    n1, n0 = members.size, non_members.size
    return float((ranks[:n1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _nndr(two: np.ndarray) -> np.ndarray:
    # A row at distance 0 is a copy whatever the second distance: ratio 0 (0/0 included).
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(two[:, 0] == 0, 0.0, two[:, 0] / two[:, 1])


def _sample(table: pl.DataFrame, n: int | None, rng: np.random.Generator) -> pl.DataFrame:
    if n is None or table.height <= n:
        return table
    return table[np.sort(rng.choice(table.height, size=n, replace=False))]


def privacy_metrics(
    real_train: pl.DataFrame,
    synthetic: pl.DataFrame,
    holdout: pl.DataFrame,
    guide: Guide,
    *,
    max_rows: int | None = None,
    seed: int = 0,
) -> dict[str, float | int | str]:
    """DCR, NNDR and the membership-inference AUC of a synthetic table (module docstring).

    Args:
        real_train: the rows the generator was trained on.
        synthetic: the generated rows.
        holdout: real rows of the same population the generator never saw.
        guide: the feature schema.
        max_rows: subsample each table to at most this many rows (seeded) to bound the cost,
            O(n_query x n_reference x columns).
        seed: the subsampling seed.

    Returns:
        ``exact_copy_share`` (synthetic rows at distance 0 from a training row) and its holdout
        baseline; DCR median and 5th percentile of synthetic and holdout rows to training;
        ``dcr_closer_to_train_share`` (synthetic rows nearer to training than to holdout, training
        subsampled to the holdout's size so that 0.5 is the no-overfitting value; ties half);
        NNDR median and 5th percentile with the holdout baseline; ``mia_auc``.
    """
    rng = np.random.default_rng(seed)
    train, syn, hold = (_sample(t, max_rows, rng) for t in (real_train, synthetic, holdout))
    enc = GowerEncoder(guide, train, syn, hold)
    syn_train = enc.nearest(syn, train, k=2)
    hold_train = enc.nearest(hold, train, k=2)
    syn_hold = enc.nearest(syn, hold, k=1)[:, 0]
    # Equal sizes, so that "nearer to training" is a coin flip for a generator that did not overfit.
    same = _sample(train, hold.height, rng)
    syn_same = enc.nearest(syn, same, k=1)[:, 0]
    closer = np.mean(np.where(syn_same < syn_hold, 1.0, np.where(syn_same == syn_hold, 0.5, 0.0)))
    member = enc.nearest(train, syn, k=1)[:, 0]
    non_member = enc.nearest(hold, syn, k=1)[:, 0]
    nndr, nndr_base = _nndr(syn_train), _nndr(hold_train)
    return {
        "distance": "gower",
        "n_train": train.height,
        "n_synthetic": syn.height,
        "n_holdout": hold.height,
        "exact_copy_share": float(np.mean(syn_train[:, 0] == 0)),
        "exact_copy_share_baseline": float(np.mean(hold_train[:, 0] == 0)),
        "dcr_median": float(np.median(syn_train[:, 0])),
        "dcr_p05": float(np.quantile(syn_train[:, 0], 0.05)),
        "dcr_baseline_median": float(np.median(hold_train[:, 0])),
        "dcr_baseline_p05": float(np.quantile(hold_train[:, 0], 0.05)),
        "dcr_holdout_median": float(np.median(syn_hold)),
        "dcr_closer_to_train_share": float(closer),
        "nndr_median": float(np.median(nndr)),
        "nndr_p05": float(np.quantile(nndr, 0.05)),
        "nndr_baseline_median": float(np.median(nndr_base)),
        "nndr_baseline_p05": float(np.quantile(nndr_base, 0.05)),
        # Nearer to the synthetic table = more likely a member: the score is minus the distance.
        "mia_auc": _auc(-member, -non_member),
    }


@dataclasses.dataclass(frozen=True)
class PrivacyThresholds:
    """Limits a synthetic table must meet before it may leave the federation.

    Each field is ``max_<metric>`` or ``min_<metric>`` on the report's ``privacy`` block;
    ``None`` switches a check off.
    """

    max_exact_copy_share: float | None = 0.0  # no training patient reproduced verbatim
    max_dcr_closer_to_train_share: float | None = 0.6  # 0.5 = as near to holdout as to training
    max_mia_auc: float | None = 0.6  # 0.5 = the attacker guesses
    min_nndr_p05: float | None = None  # compare with nndr_baseline_p05 of the data at hand


def privacy_gate(
    report: Mapping[str, Any], thresholds: PrivacyThresholds = PrivacyThresholds()
) -> tuple[bool, list[str]]:
    """Whether a validation report's privacy metrics meet the thresholds.

    Args:
        report: :func:`validation_report`'s dict (its ``privacy`` block), or the block itself.
        thresholds: the limits; a metric that is missing or not a finite number fails.

    Returns:
        ``(passed, failing)``: ``failing`` names each metric that broke its limit, in field order.
    """
    block = report.get("privacy", report)
    failing = []
    for field in dataclasses.fields(thresholds):
        limit = getattr(thresholds, field.name)
        if limit is None:
            continue
        bound, metric = field.name.split("_", 1)
        value = block.get(metric)
        ok = isinstance(value, int | float) and np.isfinite(value)
        if ok:
            ok = value <= limit if bound == "max" else value >= limit
        if not ok:
            failing.append(metric)
    return not failing, failing
