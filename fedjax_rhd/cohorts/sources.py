"""Source dispatch for ``experiment.run``: simulated cohorts and real cohorts alike.

Every source yields the same four things: the ML-ready table, its dataset card, the
use case's clinical score name and a per-patient score table (``patient_id``,
``clinical_score``, optional ``score_*`` reference columns).
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from fedjax_rhd.cohorts import Cohort, load_cohort
from fedjax_rhd.datasets import load_or_build_simulated
from fedjax_rhd.scores import ipss
from fedjax_rhd.simulate.scores import simulated_score
from harmonize.guide import Guide

REAL_SOURCES: tuple[str, ...] = ("iwgpm", "beataml")


class SourceSpec(NamedTuple):
    """What ``use_case`` names (typed view of ``conf/use_case`` plus the data roots)."""

    source: str
    n_patients: int
    seed_data: int
    data_root: str
    real_data_root: str | None


def simulated_scores(table: pl.DataFrame, guide: Guide) -> tuple[str, pl.DataFrame] | None:
    """The clinical score a simulated cohort supports, from its own features.

    The simulated MDS cohort has IPSS-R's inputs (Hb, platelets, ANC, BM blasts,
    IPSS-R cytogenetic category) but not IPSS-M's (no del(5q), complex karyotype or
    TP53 allelic state), so it reports IPSS-R (so does ``mds_wsi``, which has the MDS
    layers); simulated AML reports ELN 2022 and simulated myeloma R-ISS
    (:mod:`fedjax_rhd.simulate.scores`).
    """
    other = simulated_score(table, guide)
    if other is not None:
        return other
    need = ("hb", "plt", "anc", "bm_blasts", "ipssr_cyto")
    if not all(n in guide.feature_names for n in need):
        return None
    levels = guide.feature("ipssr_cyto").levels
    if levels != ipss.CYTO_LEVELS:
        return None
    code = {level: float(i) for i, level in enumerate(levels)}
    cyto = np.array([np.nan if v is None else code[v] for v in table["ipssr_cyto"].to_list()])

    def num(name: str) -> np.ndarray:
        return table[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    score = ipss.ipssr_score(num("hb"), num("plt"), num("anc"), num("bm_blasts"), cyto)
    frame = pl.DataFrame({"patient_id": table["patient_id"], "clinical_score": score})
    return "IPSS-R", frame.with_columns(pl.col("clinical_score").fill_nan(None))


def load_source(guide: Guide, spec: SourceSpec) -> Cohort:
    """Load the table of a use case from its source (``simulated``, ``iwgpm``, ``beataml``).

    Raises:
        ValueError: an unknown source.
        fedjax_rhd.cohorts.RealDataMissing: a real source whose data folder is absent.
    """
    if spec.source == "simulated":
        table, card = load_or_build_simulated(
            guide, n=spec.n_patients, seed=spec.seed_data, data_root=spec.data_root
        )
        scored = simulated_scores(table, guide)
        name, scores = scored if scored is not None else ("", None)
        return Cohort(table, card, name, scores)
    if spec.source in REAL_SOURCES:
        return load_cohort(guide, Path(spec.real_data_root) if spec.real_data_root else None)
    raise ValueError(f"use_case.source={spec.source!r}: expected 'simulated' or one of {REAL_SOURCES}")
