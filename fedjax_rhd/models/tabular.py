"""The guide's schema as a generative model sees it, and encoded rows mapped back to a table.

A generative model works in the encoded space of ``fedjax_rhd.data.preprocess.encode``
(continuous on log1p where the guide says ``log``, binary 0/1, categorical one-hot); its samples
must come back in the harmonised schema (docs/architecture.md §1.2): one column per guide feature
with the guide's kind, levels and valid range, ``time`` > 0 and ``event`` in {0, 1}, missing =
null. :func:`decode_table` is that inverse map; it clips and rounds, so whatever the decoder
emits, the table it returns holds only values a harmonised dataset could hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from harmonize.guide import Guide

KINDS = ("continuous", "binary", "categorical")


class ColumnSpec(NamedTuple):
    """One guide feature: where it sits in the encoded row and what values it may take (hashable)."""

    name: str
    kind: str  # continuous | binary | categorical
    start: int  # first encoded column
    width: int  # 1, or the number of levels
    levels: tuple[str, ...] = ()
    low: float = -np.inf  # valid range (continuous), in the guide's unit
    high: float = np.inf
    log: bool = False  # encoded as log1p(value)


def table_schema(guide: Guide) -> tuple[ColumnSpec, ...]:
    """The guide's features as :class:`ColumnSpec` in encoded-column order."""
    out, start = [], 0
    for f in guide.features:
        lo, hi = f.valid_range if f.valid_range is not None else (-np.inf, np.inf)
        out.append(
            ColumnSpec(f.name, f.kind, start, f.width, tuple(f.levels), float(lo), float(hi), bool(f.log))
        )
        start += f.width
    return tuple(out)


def check_schema(schema: Sequence[ColumnSpec], num_features: int) -> None:
    """Raise ``ValueError`` unless ``schema`` tiles exactly ``num_features`` encoded columns."""
    start = 0
    for c in schema:
        if (
            c.kind not in KINDS
            or c.start != start
            or c.width != (len(c.levels) if c.kind == "categorical" else 1)
        ):
            raise ValueError(f"bad schema entry for {c.name!r}: {c}")
        start += c.width
    if start != num_features:
        raise ValueError(f"schema covers {start} encoded columns, the data has {num_features}")


def decode_table(
    values: np.ndarray,
    present: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    schema: Sequence[ColumnSpec],
    *,
    time_bounds: tuple[float, float] = (0.0, np.inf),
    id_prefix: str | None = None,
    clipped: dict[str, int] | None = None,
) -> pl.DataFrame:
    """Encoded rows back in the guide's schema (the inverse of ``preprocess.encode``).

    Args:
        values: f64[n, d] encoded, *unstandardised* values (a categorical block may hold
            probabilities or one-hot; the largest wins).
        present: bool[n, F] per feature, or bool[n, d] per encoded column (the block's first
            column is read): False writes null.
        time: [n] follow-up; clipped into ``time_bounds`` (a low bound of 0 is moved to the
            smallest positive float: a time must be > 0).
        event: [n] rounded to 0/1.
        schema: from :func:`table_schema`.
        time_bounds: ``(low, high)`` allowed follow-up.
        id_prefix: if given, a ``patient_id`` column ``<prefix>000001`` ... comes first.
        clipped: if given, filled with the number of present continuous values per column, and of
            times (``"time"``), that were outside their range (or not finite) and were clipped.

    Returns:
        A polars table: continuous ``Float64`` (inverse log1p, clipped into the valid range), binary
        ``Int8`` (0/1), categorical ``String`` (one of the levels), ``time`` ``Float64``, ``event`` ``Int8``.
    """
    values = np.asarray(values, np.float64)
    present = np.asarray(present, bool)
    n = values.shape[0]
    if present.shape[1] != len(schema):  # per encoded column: a feature's block shares one flag
        present = present[:, [c.start for c in schema]]
    columns: dict[str, pl.Series] = {}
    if id_prefix is not None:
        columns["patient_id"] = pl.Series("patient_id", [f"{id_prefix}{i + 1:06d}" for i in range(n)])
    for j, c in enumerate(schema):
        mask = ~present[:, j]
        if c.kind == "continuous":
            v = values[:, c.start]
            if c.log:
                with np.errstate(over="ignore"):  # a wild draw overflows to inf; the clip below bounds it
                    v = np.expm1(v)
            if clipped is not None:
                outside = ~np.isfinite(v) | (v < c.low) | (v > c.high)
                clipped[c.name] = int(np.sum(outside & ~mask))
            v = np.clip(np.nan_to_num(v, nan=c.low if np.isfinite(c.low) else 0.0), c.low, c.high)
            columns[c.name] = pl.Series(c.name, v, pl.Float64).scatter(np.flatnonzero(mask), None)
        elif c.kind == "binary":
            v = (values[:, c.start] >= 0.5).astype(np.int8)
            columns[c.name] = pl.Series(c.name, v, pl.Int8).scatter(np.flatnonzero(mask), None)
        else:
            block = values[:, c.start : c.start + c.width]
            labels = np.asarray(c.levels, dtype=object)[np.argmax(block, axis=1)]
            labels[mask] = None
            columns[c.name] = pl.Series(c.name, labels.tolist(), pl.String)
    low, high = time_bounds
    low = max(low, np.nextafter(0.0, 1.0))
    t = np.asarray(time, np.float64)
    if clipped is not None:
        clipped["time"] = int(np.sum(~np.isfinite(t) | (t < low) | (t > high)))
    t = np.clip(np.nan_to_num(t, nan=low), low, high)
    columns["time"] = pl.Series("time", t, pl.Float64)
    columns["event"] = pl.Series("event", (np.asarray(event, np.float64) >= 0.5).astype(np.int8), pl.Int8)
    return pl.DataFrame(list(columns.values()))
