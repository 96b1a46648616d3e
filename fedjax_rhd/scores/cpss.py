"""CPSS-mol for chronic myelomonocytic leukaemia, as vectorised pure functions.

Elena C, et al. Integrating clinical features and genetic lesions in the risk
assessment of patients with chronic myelomonocytic leukemia. Blood 2016;128(10):1408-17.
Inputs are numpy arrays, one entry per patient; ``NaN`` marks a missing input and
makes the result ``NaN`` (the authors define no imputation).
"""

from __future__ import annotations

import numpy as np

CPSS_CYTO_LEVELS: tuple[str, ...] = ("low", "intermediate", "high")
GENETIC_RISK_GROUPS: tuple[str, ...] = ("Low", "Intermediate-1", "Intermediate-2", "High")
CPSS_MOL_GROUPS: tuple[str, ...] = ("Low", "Intermediate-1", "Intermediate-2", "High")


def _f(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def cpss_cytogenetic_risk(
    normal: np.ndarray,
    minus_y_alone: np.ndarray,
    trisomy8: np.ndarray,
    chr7: np.ndarray,
    complex_: np.ndarray,
) -> np.ndarray:
    """CPSS cytogenetic risk (Such E, et al. Blood 2013;121:3005-15): 0 low, 1 intermediate, 2 high.

    Low: normal karyotype or −Y alone. High: +8, any chromosome 7 abnormality, or a
    complex karyotype (≥3 abnormalities). Intermediate: all others.

    Args:
        normal, minus_y_alone, trisomy8, chr7, complex_: 0/1 flags (``NaN`` unknown).
    """
    normal, minus_y, tri8, chr7, cx = map(_f, (normal, minus_y_alone, trisomy8, chr7, complex_))
    high = (tri8 == 1) | (chr7 == 1) | (cx == 1)
    low = (normal == 1) | (minus_y == 1)
    risk = np.where(high, 2.0, np.where(low, 0.0, 1.0))
    unknown = np.isnan(normal) | np.isnan(minus_y) | np.isnan(tri8) | np.isnan(chr7) | np.isnan(cx)
    return np.where(unknown, np.nan, risk)


def cpss_genetic_score(
    cyto_risk: np.ndarray, asxl1: np.ndarray, nras: np.ndarray, setbp1: np.ndarray, runx1: np.ndarray
) -> np.ndarray:
    """Genetic score: cytogenetic risk 0/1/2 + ASXL1 1 + NRAS 1 + SETBP1 1 + RUNX1 2 (Elena 2016)."""
    cyto_risk, asxl1, nras, setbp1, runx1 = map(_f, (cyto_risk, asxl1, nras, setbp1, runx1))
    return cyto_risk + asxl1 + nras + setbp1 + 2.0 * runx1


def cpss_genetic_risk(genetic_score: np.ndarray) -> np.ndarray:
    """Genetic risk group: 0 low, 1 intermediate-1, 2 intermediate-2, ≥3 high (→ 3)."""
    return np.minimum(_f(genetic_score), 3.0)


def cpss_mol_points(
    genetic_risk: np.ndarray, bm_blasts: np.ndarray, wbc: np.ndarray, transfusion_dependent: np.ndarray
) -> np.ndarray:
    """CPSS-mol points: genetic risk 0-3 + BM blasts ≥5% 1 + WBC ≥13×10^9/L 1 + RBC transfusion dependence 1.

    Args:
        genetic_risk: 0..3 from :func:`cpss_genetic_risk`.
        bm_blasts: bone-marrow blasts, %.
        wbc: white blood cells, 10^9/L.
        transfusion_dependent: 0/1 red-cell transfusion dependence.

    Returns:
        f64[n] points 0..6; ``NaN`` where an input is missing.
    """
    genetic_risk, bm_blasts, wbc, td = map(_f, (genetic_risk, bm_blasts, wbc, transfusion_dependent))
    pts = genetic_risk + (bm_blasts >= 5) + (wbc >= 13) + td
    missing = np.isnan(genetic_risk) | np.isnan(bm_blasts) | np.isnan(wbc) | np.isnan(td)
    return np.where(missing, np.nan, pts)


def cpss_mol_group(points: np.ndarray) -> np.ndarray:
    """CPSS-mol group index: 0 low, 1 intermediate-1, 2-3 intermediate-2, ≥4 high; ``-1`` if missing."""
    points = _f(points)
    group = np.select([points <= 0, points <= 1, points <= 3], [0, 1, 2], 3)
    return np.where(np.isnan(points), -1, group)
