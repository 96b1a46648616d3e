"""Clinical scores of the simulated AML and myeloma cohorts, from their own features.

AML: ELN 2022 genetic risk (Döhner H, et al. Blood 2022;140:1345-77), TP53 counted at
VAF >= 10%. Myeloma: R-ISS (Palumbo A, et al. J Clin Oncol 2015;33:2863-9), LDH high
above 250 U/L. Both are risk-oriented (higher = worse), ``null`` where undeterminable.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import polars as pl

from fedjax_rhd.simulate.aml import eln_score
from fedjax_rhd.simulate.mm import riss_score
from harmonize.guide import Guide

SIMULATED_SCORES: dict[str, tuple[str, Callable[[pl.DataFrame], np.ndarray]]] = {
    "aml": ("ELN 2022", eln_score),
    "mm": ("R-ISS", riss_score),
}
"""Use case -> (score name, ``table -> f64[n]``)."""


def simulated_score(table: pl.DataFrame, guide: Guide) -> tuple[str, pl.DataFrame] | None:
    """``(name, patient_id + clinical_score)`` for a simulated AML or MM table, else ``None``."""
    if guide.use_case not in SIMULATED_SCORES:
        return None
    name, score = SIMULATED_SCORES[guide.use_case]
    frame = pl.DataFrame({"patient_id": table["patient_id"], "clinical_score": score(table)})
    return name, frame.with_columns(pl.col("clinical_score").fill_nan(None))
