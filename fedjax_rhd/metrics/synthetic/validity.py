"""Impossible values: what no patient can have, counted cell by cell (a valid generator scores 0).

A synthetic table is in the guide's schema only if every value is one a harmonised dataset could
hold (``harmonize/extract.py`` sets anything else missing and counts it): survival times > 0 (or
>= 0 where the guide's endpoint allows a time of zero), events 0/1, continuous values inside the
guide's valid range, binary values 0/1 and categories among the levels. The study's anchor, the
``ctgan`` package, produced non-positive survival times in hundreds of rows (issue 17), so these
counts are part of every validation report.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from fedjax_rhd.metrics.synthetic._columns import EVENT, TIME, continuous, labels
from harmonize.guide import Guide


def impossible_values(table: pl.DataFrame, guide: Guide) -> dict[str, object]:
    """Counts of impossible values in a table that claims the guide's schema.

    Missing values (nulls) are allowed in features and count nowhere; a NaN in a continuous
    column is not a missing value (the schema writes missing as null) and counts as non-finite.

    Args:
        table: a (synthetic) table with the guide's feature columns, ``time`` and ``event``.
        guide: the feature schema with kinds, valid ranges and levels.

    Returns:
        ``{"total": int, "missing_columns": [...], "time_not_positive", "time_missing",
        "event_invalid", "out_of_range": {feature: n}, "not_binary": {feature: n},
        "unknown_level": {feature: n}, "non_finite": {column: n}}``; the per-feature dicts list
        only features with a non-zero count. A missing column counts once in ``total``.
    """
    present = set(table.columns)
    missing_columns = [c for c in (*guide.feature_names, TIME, EVENT) if c not in present]
    out_of_range: dict[str, int] = {}
    not_binary: dict[str, int] = {}
    unknown_level: dict[str, int] = {}
    non_finite: dict[str, int] = {}

    def nan_or_inf(name: str) -> np.ndarray:
        raw = table.get_column(name).cast(pl.Float64, strict=False).to_numpy()
        bad = np.isinf(raw) | (np.isnan(raw) & table.get_column(name).is_not_null().to_numpy())
        if bad.any():
            non_finite[name] = int(bad.sum())
        return bad

    for f in guide.features:
        if f.name not in present:
            continue
        if f.kind == "continuous":
            nan_or_inf(f.name)
            x = continuous(table, f.name)
            x = x[np.isfinite(x)]
            lo, hi = f.valid_range
            n = int(np.sum((x < lo) | (x > hi)))
        elif f.kind == "binary":
            nan_or_inf(f.name)
            n = sum(1 for v in labels(table, f) if v is not None and v not in (0, 1))
        else:
            n = sum(1 for v in labels(table, f) if v is not None and v not in f.levels)
        target = {"continuous": out_of_range, "binary": not_binary, "categorical": unknown_level}[f.kind]
        if n:
            target[f.name] = int(n)

    time_not_positive = time_missing = event_invalid = 0
    if TIME in present:
        bad_time = nan_or_inf(TIME)
        t = continuous(table, TIME)
        time_missing = int(np.sum(np.isnan(t) & ~bad_time))
        t = t[np.isfinite(t)]
        time_not_positive = int(np.sum(t < 0) if guide.time_zero_allowed else np.sum(t <= 0))
    if EVENT in present:
        e = continuous(table, EVENT)
        # An event indicator is never missing: the endpoint is required for every patient.
        event_invalid = int(np.sum(np.isnan(e) | ~np.isin(e, (0.0, 1.0))))
    total = (
        len(missing_columns)
        + time_not_positive
        + time_missing
        + event_invalid
        + sum(out_of_range.values())
        + sum(not_binary.values())
        + sum(unknown_level.values())
        + sum(non_finite.values())
    )
    return {
        "total": int(total),
        "missing_columns": missing_columns,
        "time_not_positive": time_not_positive,
        "time_missing": time_missing,
        "event_invalid": event_invalid,
        "out_of_range": out_of_range,
        "not_binary": not_binary,
        "unknown_level": unknown_level,
        "non_finite": non_finite,
    }
