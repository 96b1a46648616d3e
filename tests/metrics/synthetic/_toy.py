"""A hand-sized guide and tables in its schema, for hand-computed metric values."""

from __future__ import annotations

import polars as pl

from harmonize.guide import Feature, Guide

TOY_GUIDE = Guide(
    use_case="toy",
    version="0",
    description="toy",
    features=(
        Feature(name="hb", kind="continuous", group="clinical", unit="g/dL", valid_range=(3.0, 20.0)),
        Feature(name="GENE_A", kind="binary", group="genomic"),
        Feature(name="GENE_B", kind="binary", group="genomic"),
        Feature(name="cyto", kind="categorical", group="cytogenetic", levels=("good", "poor")),
    ),
    time_unit="a",
    path="<toy>",
)
_DTYPES = {"hb": pl.Float64, "GENE_A": pl.Int8, "GENE_B": pl.Int8, "cyto": pl.String}
_DTYPES |= {"time": pl.Float64, "event": pl.Int8}


def toy_table(**columns) -> pl.DataFrame:
    """A toy table with the harmonised dtypes (Float64 labs and times, Int8 binaries, String levels)."""
    return pl.DataFrame([pl.Series(k, v, dtype=_DTYPES.get(k)) for k, v in columns.items()])
