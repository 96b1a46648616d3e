"""ELN 2022 genetic risk for acute myeloid leukaemia, as a vectorised pure function.

Döhner H, et al. Diagnosis and management of AML in adults: 2022 recommendations from
an international expert panel on behalf of the ELN. Blood 2022;140(12):1345-77 (Table 6).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

ELN_GROUPS: tuple[str, ...] = ("Favorable", "Intermediate", "Adverse")

# Flags the function reads (0/1, NaN unknown).
ELN2022_FAVOURABLE_CBF: tuple[str, ...] = ("t_8_21", "inv16")
ELN2022_ADVERSE_CYTO: tuple[str, ...] = (
    "t_6_9", "kmt2a_r", "t_9_22", "t_8_16", "inv3_mecom", "minus5_del5q", "minus7", "abn17p",
    "complex_or_monosomal",
)  # fmt: skip
# Myelodysplasia-related genes: adverse unless a favourable subtype is present.
ELN2022_MR_GENES: tuple[str, ...] = (
    "ASXL1",
    "BCOR",
    "EZH2",
    "RUNX1",
    "SF3B1",
    "SRSF2",
    "STAG2",
    "U2AF1",
    "ZRSR2",
)
ELN2022_INPUTS: tuple[str, ...] = (
    *ELN2022_FAVOURABLE_CBF, *ELN2022_ADVERSE_CYTO, "t_9_11", "NPM1", "FLT3_ITD", "CEBPA_bZIP",
    "TP53", *ELN2022_MR_GENES,
)  # fmt: skip


def eln2022_risk(flags: Mapping[str, np.ndarray]) -> np.ndarray:
    """ELN 2022 genetic risk group: 0 favourable, 1 intermediate, 2 adverse.

    Precedence, first match wins (Döhner 2022, Table 6 and its footnotes):
    1. t(8;21) or inv(16)/t(16;16): favourable (core-binding-factor AML, whatever co-occurs);
    2. an adverse cytogenetic or fusion lesion: adverse (NPM1-mutated AML with
       adverse cytogenetics is adverse);
    3. t(9;11): intermediate (it takes precedence over concurrent adverse mutations);
    4. NPM1 mutated without FLT3-ITD, or an in-frame bZIP CEBPA mutation: favourable
       (myelodysplasia-related mutations do not override a favourable subtype);
    5. TP53 mutated (VAF ≥ 10%) or a myelodysplasia-related gene mutated: adverse;
    6. otherwise (including NPM1 with FLT3-ITD, FLT3-ITD alone): intermediate.

    Args:
        flags: one 0/1 array per name in ``ELN2022_INPUTS`` (``TP53`` already filtered
            at VAF ≥ 10%); ``NaN`` marks an unknown flag.

    Returns:
        f64[n]; ``NaN`` exactly where the unknown flags leave the group undetermined.
        Flags that act alike are first merged with three-valued OR (core-binding factor,
        adverse cytogenetics, adverse mutations); the 2^7 completions of the seven merged
        inputs are then evaluated and a group is kept only where every completion agrees.
    """
    absent = [k for k in ELN2022_INPUTS if k not in flags]
    if absent:
        raise KeyError(f"eln2022_risk: missing input flag(s) {absent}")
    f = {k: np.atleast_1d(np.asarray(flags[k], dtype=np.float64)) for k in ELN2022_INPUTS}
    merged = np.stack(
        [
            _or3(np.stack([f[k] for k in ELN2022_FAVOURABLE_CBF])),
            _or3(np.stack([f[k] for k in ELN2022_ADVERSE_CYTO])),
            f["t_9_11"],
            f["NPM1"],
            f["FLT3_ITD"],
            f["CEBPA_bZIP"],
            _or3(np.stack([f[k] for k in ("TP53", *ELN2022_MR_GENES)])),
        ]
    )
    unknown = np.isnan(merged)
    results = []
    for bits in range(2 ** len(merged)):
        fill = np.array([(bits >> i) & 1 for i in range(len(merged))], dtype=np.float64)[:, None]
        results.append(_eln_known(*np.where(unknown, fill, merged)))
    results = np.stack(results)
    agree = np.all(results == results[0], axis=0)
    return np.where(agree, results[0], np.nan)


def _or3(x: np.ndarray) -> np.ndarray:
    """Three-valued OR over axis 0: 1 if any is 1, 0 if all are 0, else unknown (NaN)."""
    return np.where(np.any(x == 1, axis=0), 1.0, np.where(np.all(x == 0, axis=0), 0.0, np.nan))


def _eln_known(
    cbf: np.ndarray,
    adverse_cyto: np.ndarray,
    t911: np.ndarray,
    npm1: np.ndarray,
    flt3_itd: np.ndarray,
    cebpa: np.ndarray,
    adverse_mut: np.ndarray,
) -> np.ndarray:
    npm1_fav = (npm1 == 1) & (flt3_itd != 1)
    fav_mut = npm1_fav | (cebpa == 1)
    conditions = [cbf == 1, adverse_cyto == 1, t911 == 1, fav_mut, adverse_mut == 1]
    return np.select(conditions, [0.0, 2.0, 1.0, 0.0, 2.0], 1.0)
