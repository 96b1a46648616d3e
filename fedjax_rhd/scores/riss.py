"""Revised International Staging System (R-ISS) for multiple myeloma, vectorised.

Palumbo A, et al. Revised International Staging System for Multiple Myeloma: a report
from International Myeloma Working Group. J Clin Oncol 2015;33(26):2863-9.
"""

from __future__ import annotations

import numpy as np


def _f(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def iss_stage(beta2m: np.ndarray, albumin: np.ndarray) -> np.ndarray:
    """ISS stage 1-3 (Greipp 2005): I β2M < 3.5 mg/L and albumin ≥ 3.5 g/dL; III β2M ≥ 5.5; II otherwise."""
    beta2m, albumin = _f(beta2m), _f(albumin)
    stage = np.where(beta2m >= 5.5, 3.0, np.where((beta2m < 3.5) & (albumin >= 3.5), 1.0, 2.0))
    # Stage III needs only β2M; stages I/II need albumin too.
    unknown = np.isnan(beta2m) | (np.isnan(albumin) & ~(beta2m >= 5.5))
    return np.where(unknown, np.nan, stage)


def riss_stage(
    beta2m: np.ndarray, albumin: np.ndarray, high_risk_cyto: np.ndarray, ldh_high: np.ndarray
) -> np.ndarray:
    """R-ISS stage 1-3.

    Args:
        beta2m: serum β2-microglobulin, mg/L.
        albumin: serum albumin, g/dL.
        high_risk_cyto: 0/1, del(17p) and/or t(4;14) and/or t(14;16) by iFISH.
        ldh_high: 0/1, serum LDH above the upper limit of normal.

    Returns:
        f64[n]: I = ISS I with standard-risk cytogenetics and normal LDH; III = ISS III
        with high-risk cytogenetics or high LDH; II otherwise. ``NaN`` where a missing
        input could change the stage.
    """
    iss = iss_stage(beta2m, albumin)
    hr, ldh = _f(high_risk_cyto), _f(ldh_high)
    stage1 = (iss == 1) & (hr == 0) & (ldh == 0)
    stage3 = (iss == 3) & ((hr == 1) | (ldh == 1))
    stage = np.where(stage1, 1.0, np.where(stage3, 3.0, 2.0))
    could_be1 = (iss == 1) & (hr != 1) & (ldh != 1) & (np.isnan(hr) | np.isnan(ldh))
    could_be3 = (iss == 3) & ~stage3 & (np.isnan(hr) | np.isnan(ldh))
    return np.where(np.isnan(iss) | could_be1 | could_be3, np.nan, stage)
