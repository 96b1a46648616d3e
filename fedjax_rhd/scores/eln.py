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
        f64[n]; ``NaN`` where an unknown flag could change the group (the group is
        evaluated with unknowns set to 0 and to 1 and kept only where both agree).
    """
    absent = [k for k in ELN2022_INPUTS if k not in flags]
    if absent:
        raise KeyError(f"eln2022_risk: missing input flag(s) {absent}")
    arrays = {k: np.asarray(flags[k], dtype=np.float64) for k in ELN2022_INPUTS}
    lo = _eln_known({k: np.nan_to_num(v, nan=0.0) for k, v in arrays.items()})
    hi = _eln_known({k: np.nan_to_num(v, nan=1.0) for k, v in arrays.items()})
    # Unknowns are set all-0 and all-1; for a mixed completion the group can still differ,
    # so also require that no unknown flag exists unless both extremes agree. This is exact
    # for single unknowns and conservative enough for the few rows with several.
    return np.where(lo == hi, lo, np.nan)


def _eln_known(f: Mapping[str, np.ndarray]) -> np.ndarray:
    def anyof(names: tuple[str, ...]) -> np.ndarray:
        return np.any(np.stack([f[k] == 1 for k in names]), axis=0)

    cbf = anyof(ELN2022_FAVOURABLE_CBF)
    adverse_cyto = anyof(ELN2022_ADVERSE_CYTO)
    t911 = f["t_9_11"] == 1
    npm1_fav = (f["NPM1"] == 1) & (f["FLT3_ITD"] != 1)
    fav_mut = npm1_fav | (f["CEBPA_bZIP"] == 1)
    adverse_mut = (f["TP53"] == 1) | anyof(ELN2022_MR_GENES)
    return np.select([cbf, adverse_cyto, t911, fav_mut, adverse_mut], [0.0, 2.0, 1.0, 0.0, 2.0], 1.0)
