"""Column access shared by the synthetic-data metrics: features by kind and layer, values as numpy.

Tables are polars DataFrames in the harmonised schema (``harmonize.guide``): one column per guide
feature plus ``time`` and ``event``; missing values are nulls. A synthetic table may carry other
dtypes than the real one (a binary column as Float64, say); these helpers read every column by
the guide's kind, so the metrics compare values, not dtypes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import polars as pl

from harmonize.guide import Feature, Guide

TIME, EVENT = "time", "event"
# Layers scored by the clinical fidelity score (CSF); the genomic score (GSF) takes "genomic".
CLINICAL_GROUPS: tuple[str, ...] = ("clinical", "cytogenetic")
GENOMIC_GROUPS: tuple[str, ...] = ("genomic",)


def features_in(guide: Guide, groups: Iterable[str] | None = None) -> tuple[Feature, ...]:
    """The guide's features, optionally restricted to some groups (guide order)."""
    if groups is None:
        return guide.features
    wanted = set(groups)
    return tuple(f for f in guide.features if f.group in wanted)


def is_discrete(feature: Feature) -> bool:
    """Binary and categorical features are compared as distributions over levels."""
    return feature.kind != "continuous"


def continuous(table: pl.DataFrame, name: str) -> np.ndarray:
    """A column as float64 with NaN where the value is missing (null or NaN)."""
    return table.get_column(name).cast(pl.Float64, strict=False).to_numpy().astype(np.float64, copy=False)


def labels(table: pl.DataFrame, feature: Feature) -> np.ndarray:
    """A discrete column as an object array of labels, None where missing.

    Binary values are read as numbers (1, 1.0 and True are one label: they compare and hash
    equal; so are 0, 0.0 and False); categorical values as strings. A value outside the guide's
    levels keeps its own label, so it counts against fidelity instead of disappearing.
    """
    col = table.get_column(feature.name)
    if feature.kind == "binary" and col.dtype != pl.String:
        x = continuous(table, feature.name)
        out = x.astype(object)
        out[np.isnan(x)] = None
        return out
    if feature.kind == "binary":
        # Text in a binary column: numbers where it parses ("1"), the text itself otherwise ("yes").
        nums = col.cast(pl.Float64, strict=False).to_list()
        return np.array(
            [r if v is None else v for v, r in zip(nums, col.to_list(), strict=True)], dtype=object
        )
    return np.array(col.cast(pl.String, strict=False).to_list(), dtype=object)


def codes(table: pl.DataFrame, feature: Feature, vocabulary: Sequence[Any]) -> np.ndarray:
    """Integer codes of a discrete column over ``vocabulary``: -1 if missing, len(vocabulary) if unknown."""
    index = {v: i for i, v in enumerate(vocabulary)}
    other = len(vocabulary)
    return np.array(
        [-1 if v is None else index.get(v, other) for v in labels(table, feature)], dtype=np.int64
    )


def vocabulary(feature: Feature, *tables: pl.DataFrame) -> list[Any]:
    """The guide's levels (0/1 for binary) followed by any other label seen in the tables."""
    base: list[Any] = [0, 1] if feature.kind == "binary" else list(feature.levels)
    seen = set(base)
    for table in tables:
        for v in labels(table, feature):
            if v is not None and v not in seen:
                seen.add(v)
                base.append(v)
    return base


def frequencies(values: np.ndarray, vocab: Sequence[Any]) -> np.ndarray:
    """Relative frequencies of the observed (non-missing) labels over ``vocab``."""
    observed = [v for v in values if v is not None]
    counts = np.array([sum(1 for v in observed if v == level) for level in vocab], dtype=np.float64)
    total = counts.sum()
    return counts / total if total > 0 else counts


def numeric_matrix(table: pl.DataFrame, feats: tuple[Feature, ...]) -> tuple[np.ndarray, list[str]]:
    """Numeric columns: continuous (log1p where the guide says so), binary 0/1, categorical one-hots.

    Returns the matrix (NaN where missing) and its column names (``name=level`` for one-hots).
    """
    cols, names = [], []
    for f in feats:
        if f.kind == "categorical":
            lab = labels(table, f)
            for level in f.levels:
                cols.append(np.array([np.nan if v is None else float(v == level) for v in lab]))
                names.append(f"{f.name}={level}")
        else:
            x = continuous(table, f.name)
            cols.append(np.log1p(x) if f.log else x)
            names.append(f.name)
    return np.column_stack(cols), names


def finite_or_none(value: Any) -> Any:
    """JSON-able numbers: numpy scalars become Python numbers; NaN and infinities become None."""
    if isinstance(value, dict):
        return {str(k): finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    if isinstance(value, np.ndarray):
        return [finite_or_none(v) for v in value.tolist()]
    if isinstance(value, np.bool_ | bool):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        v = float(value)
        return v if math.isfinite(v) else None
    return value
