"""Source dispatch for ``experiment.run``: simulated cohorts and real cohorts alike.

Every source yields the same four things: the ML-ready table, its dataset card, the
use case's clinical score name and a per-patient score table (``patient_id``,
``clinical_score``, optional ``score_*`` reference columns).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import numpy as np
import polars as pl

from fedjax_rhd.cohorts import Cohort, load_cohort
from fedjax_rhd.datasets import load_or_build_simulated
from fedjax_rhd.scores import cpss, ipss
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
    """The clinical score a simulated cohort supports, from its own (observed) features.

    The simulated MDS cohort (guide ``mds`` >= 0.3) carries IPSS-M's inputs and reports
    IPSS-M (raw score, the authors' mean handling of missing inputs); a table with only
    IPSS-R's inputs reports IPSS-R; the simulated CMML cohort reports CPSS-mol points.
    Simulated AML reports ELN 2022 and simulated myeloma R-ISS (:mod:`fedjax_rhd.simulate.scores`).
    """
    other = simulated_score(table, guide)
    if other is not None:
        return other
    names = set(guide.feature_names)

    def num(name: str) -> np.ndarray:
        return table[name].cast(pl.Float64).fill_null(np.nan).to_numpy()

    def codes(name: str) -> np.ndarray:
        code = {level: float(i) for i, level in enumerate(guide.feature(name).levels)}
        return np.array([np.nan if v is None else code[v] for v in table[name].to_list()])

    def framed(name: str, score: np.ndarray) -> tuple[str, pl.DataFrame]:
        frame = pl.DataFrame({"patient_id": table["patient_id"], "clinical_score": score})
        return name, frame.with_columns(pl.col("clinical_score").fill_nan(None))

    cpss_inputs = {
        "cpss_cyto",
        "ASXL1",
        "NRAS",
        "SETBP1",
        "RUNX1",
        "bm_blasts",
        "wbc",
        "transfusion_dependent",
    }
    if cpss_inputs <= names:
        genetic = cpss.cpss_genetic_risk(
            cpss.cpss_genetic_score(
                codes("cpss_cyto"), num("ASXL1"), num("NRAS"), num("SETBP1"), num("RUNX1")
            )
        )
        return framed(
            "CPSS-mol",
            cpss.cpss_mol_points(genetic, num("bm_blasts"), num("wbc"), num("transfusion_dependent")),
        )
    need = ("hb", "plt", "anc", "bm_blasts", "ipssr_cyto")
    if not all(n in names for n in need) or guide.feature("ipssr_cyto").levels != ipss.CYTO_LEVELS:
        return None
    cyto = codes("ipssr_cyto")
    if {"del5q", "del7_7q", "complex_karyotype", "TP53multi"} <= names:
        genes = {g: num(g) for g in ipss.IPSSM_GENES if g in names}
        variables = ipss.ipssm_variables(
            num("hb"),
            num("plt"),
            num("bm_blasts"),
            cyto,
            genes,
            del5q=num("del5q"),
            del7_7q=num("del7_7q"),
            complex_karyotype=num("complex_karyotype"),
        )
        return framed("IPSS-M", ipss.ipssm_score(variables, "mean"))
    return framed("IPSS-R", ipss.ipssr_score(num("hb"), num("plt"), num("anc"), num("bm_blasts"), cyto))


def load_harmonised(
    guide: Guide,
    spec: SourceSpec,
    *,
    use_case: str,
    guide_name: str,
    dataset: str | None,
    n_centres: int = 3,
    mapping: tuple[str, ...] = (),
    progress: bool = False,
    treatment: bool = False,
) -> Cohort:
    """Load a use case's registered dataset (source -> FHIR R5 -> table), building it on first use.

    Simulated sources score from their own features (:func:`simulated_scores`);
    real cohorts from the ``reference.parquet`` their source wrote beside the
    tables (the score name is in the card's provenance).
    """
    from harmonize.registry import load_or_build_dataset, load_reference, spec_for_run

    ds = spec_for_run(
        use_case=use_case,
        guide=guide_name,
        source=spec.source,
        dataset=dataset,
        n_patients=spec.n_patients,
        seed_data=spec.seed_data,
        n_centres=n_centres,
        mapping=mapping,
        treatment=treatment,
    )
    if spec.source in REAL_SOURCES and spec.real_data_root:
        ds = dataclasses.replace(ds, options=(("root", str(spec.real_data_root)),))
    df, card = load_or_build_dataset(ds, guide, spec.data_root, progress=progress)
    reference = load_reference(spec.data_root, ds.name)
    if reference is not None and "clinical_score" in reference.columns:
        scores = df.select("patient_id").join(reference, on="patient_id", how="left")
        return Cohort(df, card, str(card.get("provenance", {}).get("clinical_score", "")), scores)
    scored = simulated_scores(df, guide)
    name, scores = scored if scored is not None else ("", None)
    return Cohort(df, card, name, scores)


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
