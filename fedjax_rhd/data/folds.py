"""K-fold cross-validation splits in the project's data layout (for public benchmarks).

Each fold's test rows are one stratified fifth (for k = 5); the other rows form
one pooled node, of which a stratified ``val_fraction`` is held out for early
stopping. Preprocessing (standardisation and median imputation) is fitted on
that fold's training part only, never on the validation or test rows, so
nothing about the test fold leaks into training or selection.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from fedjax_rhd.data.federated import FederatedData, _node_arrays, _padded, _rng, _stack, stratified_partition
from fedjax_rhd.data.preprocess import encode, fit_federated
from harmonize.guide import Guide

_STREAM_FOLDS, _STREAM_VAL = 10, 11  # distinct from data.py's split streams


def fold_assignment(df: pl.DataFrame, num_folds: int, seed: int) -> np.ndarray:
    """i64[n] fold of each row of ``df`` sorted by ``patient_id``, stratified by event."""
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2, got {num_folds}")
    event = df.sort("patient_id")["event"].to_numpy().astype(np.int64)
    return stratified_partition(event, (1.0 / num_folds,) * num_folds, _rng(seed, _STREAM_FOLDS))


def fold_data(
    df: pl.DataFrame, guide: Guide, *, fold: int, num_folds: int = 5, seed: int = 0, val_fraction: float = 0.2
) -> FederatedData:
    """The ``fold``-th split of a k-fold CV as one pooled node plus a test set.

    Args:
        df: ML-ready table (``patient_id``, guide features, ``time``, ``event``).
        guide: its feature schema.
        fold: which fold is the test set, ``0 <= fold < num_folds``.
        num_folds: k.
        seed: fold assignment and validation draws (one seed, two streams).
        val_fraction: share of the training folds held out for early stopping.

    Returns:
        FederatedData with the single node ``pooled``.
    """
    if not 0 <= fold < num_folds:
        raise ValueError(f"fold must be in [0, {num_folds}), got {fold}")
    df = df.sort("patient_id")
    is_test = fold_assignment(df, num_folds, seed) == fold
    test_df, rest = df.filter(pl.Series(is_test)), df.filter(pl.Series(~is_test))
    val_rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_VAL, fold]))
    rest_event = rest["event"].to_numpy().astype(np.int64)
    in_val = stratified_partition(rest_event, (1 - val_fraction, val_fraction), val_rng) == 1
    train_df, val_df = rest.filter(pl.Series(~in_val)), rest.filter(pl.Series(in_val))
    prep, moments = fit_federated(guide, [encode(train_df, guide)])
    train = _stack([_node_arrays(train_df, guide, prep, _padded(len(train_df)))[0]])
    val = _stack([_node_arrays(val_df, guide, prep, _padded(len(val_df)))[0]])
    test, test_sorted = _node_arrays(test_df, guide, prep, None)
    return FederatedData(
        guide=guide,
        node_names=("pooled",),
        train=train,
        val=val,
        test=test,
        n_train=(len(train_df),),
        n_val=(len(val_df),),
        test_patient_ids=tuple(test_sorted["patient_id"].to_list()),
        test_oracle_risk=None,
        preprocessor=prep,
        moments=moments,
    )
