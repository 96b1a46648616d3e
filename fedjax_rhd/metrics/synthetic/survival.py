"""Survival utility of a synthetic table: Kaplan-Meier curves, log-rank tests, train-on-synthetic C.

* Kaplan-Meier product-limit curves (Kaplan & Meier 1958, JASA 53:457-81) per level of a key
  group (TP53 status, the IPSS-R cytogenetic category), real vs synthetic: the largest vertical
  gap between the two curves inside the real follow-up, and the log-rank test (Mantel 1966;
  Peto & Peto 1972) of the group's effect in each table: does the synthetic cohort reach the
  same conclusion? (the study: single-node synthetic data changed survival p-values.)
* Train on synthetic, test on real (TSTR; Esteban et al. 2017, "Real-valued (medical) time
  series generation with recurrent conditional GANs"): a linear Cox model (Breslow ties, ridge
  penalty) fitted on the synthetic rows and on the real training rows, both scored by Harrell's
  C on the real holdout. Fitted here by Newton's method (numpy, a few iterations) so that the
  metrics room needs no survival package at run time; tests check it against scikit-survival.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from fedjax_rhd.metrics.concordance import concordance_index
from fedjax_rhd.metrics.synthetic._columns import EVENT, TIME, continuous, labels, numeric_matrix
from harmonize.guide import Guide


def _outcome(table: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return continuous(table, TIME), continuous(table, EVENT)


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Product-limit estimate: the distinct event times and S(t) just after each."""
    t, e = np.asarray(time, float), np.asarray(event, float)
    uniq, inv = np.unique(t, return_inverse=True)
    deaths = np.bincount(inv, weights=e, minlength=uniq.size)
    at_risk = np.cumsum(np.bincount(inv, minlength=uniq.size)[::-1])[::-1]
    keep = deaths > 0
    return uniq[keep], np.cumprod(1.0 - deaths[keep] / at_risk[keep])


def survival_at(curve: tuple[np.ndarray, np.ndarray], times: np.ndarray) -> np.ndarray:
    """A Kaplan-Meier step function evaluated at ``times`` (1 before the first event)."""
    steps, surv = curve
    idx = np.searchsorted(steps, times, side="right")
    return np.concatenate([[1.0], surv])[idx]


def logrank_test(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> dict[str, float]:
    """The k-group log-rank test: statistic, degrees of freedom, p-value (chi-square, k - 1 df).

    ``(O - E)' V^- (O - E)`` over the first k - 1 groups, with observed and expected deaths per
    group and the hypergeometric covariance ``V`` summed over distinct event times; equals
    ``lifelines.statistics.multivariate_logrank_test`` (``logrank_test`` for two groups).
    """
    t, e = np.asarray(time, float), np.asarray(event, float)
    levels, g = np.unique(np.asarray(group), return_inverse=True)
    k = levels.size
    if k < 2:
        return {"statistic": 0.0, "dof": 0.0, "p_value": 1.0}
    uniq, inv = np.unique(t, return_inverse=True)
    # Per (time, group): deaths and rows leaving; at risk = rows with time >= t, a reverse cumsum.
    d = np.zeros((uniq.size, k))
    c = np.zeros((uniq.size, k))
    np.add.at(d, (inv, g), e)
    np.add.at(c, (inv, g), 1.0)
    n = np.cumsum(c[::-1], axis=0)[::-1]
    d_tot, n_tot = d.sum(axis=1), n.sum(axis=1)
    keep = d_tot > 0
    d, n, d_tot, n_tot = d[keep], n[keep], d_tot[keep], n_tot[keep]
    expected = n * (d_tot / n_tot)[:, None]
    o_minus_e = (d - expected).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(n_tot > 1, d_tot * (n_tot - d_tot) / (n_tot - 1), 0.0) / n_tot
    share = n / n_tot[:, None]
    v = np.einsum("t,ti,ij->ij", scale, n, np.eye(k)) - np.einsum("t,ti,tj->ij", scale, n, share)
    stat = float(o_minus_e[:-1] @ np.linalg.pinv(v[:-1, :-1]) @ o_minus_e[:-1])
    return {"statistic": stat, "dof": float(k - 1), "p_value": float(stats.chi2.sf(stat, k - 1))}


def _level_name(level: object) -> str:
    # Binary labels are read as floats: write 1.0 as "1".
    return str(int(level)) if isinstance(level, float) and level.is_integer() else str(level)


def km_comparison(
    real: pl.DataFrame, synthetic: pl.DataFrame, guide: Guide, group: str, *, alpha: float = 0.05
) -> dict[str, object]:
    """Kaplan-Meier curves and the log-rank test by one discrete feature, real vs synthetic.

    Rows missing the group are left out. ``max_gap`` is ``sup_t |S_real(t) - S_syn(t)|`` over the
    real table's distinct times per level (NaN for a level absent from the synthetic table);
    ``same_conclusion``: both p-values on the same side of ``alpha``.
    """
    feature = guide.feature(group)
    out: dict[str, object] = {"group": group, "levels": {}}
    p = {}
    for name, table in (("real", real), ("synthetic", synthetic)):
        t, e = _outcome(table)
        lab = labels(table, feature)
        keep = np.array([v is not None for v in lab]) & np.isfinite(t) & np.isfinite(e)
        res = logrank_test(t[keep], e[keep], lab[keep].astype(str))
        out[f"logrank_{name}"] = res
        p[name] = res["p_value"]
    t_r, e_r = _outcome(real)
    t_s, e_s = _outcome(synthetic)
    lab_r, lab_s = labels(real, feature), labels(synthetic, feature)
    grid = np.unique(t_r[np.isfinite(t_r)])
    for level in sorted({v for v in lab_r if v is not None}, key=str):
        mr = (lab_r == level) & np.isfinite(t_r) & np.isfinite(e_r)
        ms = (lab_s == level) & np.isfinite(t_s) & np.isfinite(e_s)
        gap = float("nan")
        if ms.any():
            sr = survival_at(kaplan_meier(t_r[mr], e_r[mr]), grid)
            ss = survival_at(kaplan_meier(t_s[ms], e_s[ms]), grid)
            gap = float(np.max(np.abs(sr - ss)))
        out["levels"][_level_name(level)] = {
            "n_real": int(mr.sum()),
            "n_synthetic": int(ms.sum()),
            "max_gap": gap,
        }
    out["same_conclusion"] = bool((p["real"] < alpha) == (p["synthetic"] < alpha))
    return out


def fit_linear_cox(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, *, l2: float = 1.0, iterations: int = 50
) -> np.ndarray:
    """Coefficients of a ridge-penalised linear Cox model (Breslow ties) by Newton's method.

    Maximises ``sum_{i: event} [x_i b - log sum_{j: t_j >= t_i} exp(x_j b)] - l2 / 2 * |b|^2``
    (scikit-survival's ``CoxPHSurvivalAnalysis(alpha=l2, ties="breslow")``'s objective).
    """
    order = np.argsort(-time, kind="stable")
    x, t, e = x[order], time[order], event[order].astype(bool)
    # Rows sorted by descending time: row i's risk set is rows 0..end[i], end of i's tie group.
    end = np.searchsorted(-t, -t, side="right") - 1
    ev_end = end[e]

    def objective(b: np.ndarray) -> float:
        eta = x @ b
        # log of each risk set's sum of exp(eta): a running log-sum-exp, stable at any scale.
        return float(np.sum(eta[e] - np.logaddexp.accumulate(eta)[ev_end]) - 0.5 * l2 * b @ b)

    beta = np.zeros(x.shape[1])
    value = objective(beta)
    for _ in range(iterations):
        eta = x @ beta
        w = np.exp(eta - eta.max())
        s0 = np.cumsum(w)[ev_end]
        s1 = np.cumsum(w[:, None] * x, axis=0)[ev_end]
        m = s1 / s0[:, None]
        grad = (x[e] - m).sum(axis=0) - l2 * beta
        # sum over events of S2/S0 = X' diag(w c) X with c_j = sum of 1/S0 over events whose risk set holds j.
        inv = np.zeros(x.shape[0])
        np.add.at(inv, ev_end, 1.0 / s0)
        c = np.cumsum(inv[::-1])[::-1]
        hess = (x * (w * c)[:, None]).T @ x - m.T @ m + l2 * np.eye(x.shape[1])
        step = np.linalg.solve(hess, grad)
        # The penalised objective is concave: halve the Newton step until it does not decrease.
        for _halving in range(30):
            new_value = objective(beta + step)
            if new_value >= value - 1e-12 * abs(value):
                break
            step = step / 2
        beta, value = beta + step, new_value
        if np.max(np.abs(step)) < 1e-9:
            break
    return beta


class _Design:
    """Features for the Cox model, standardised on the training table; missing -> the mean (0)."""

    def __init__(self, guide: Guide, train: pl.DataFrame) -> None:
        self.guide = guide
        x, _ = numeric_matrix(train, guide.features)
        self.mean = np.nanmean(np.where(np.isnan(x).all(axis=0), 0.0, x), axis=0)
        sd = np.nanstd(np.where(np.isnan(x).all(axis=0), 0.0, x), axis=0)
        self.keep = sd > 0  # a constant column carries nothing and makes the Hessian singular
        self.sd = np.where(self.keep, sd, 1.0)

    def __call__(self, table: pl.DataFrame) -> np.ndarray:
        x, _ = numeric_matrix(table, self.guide.features)
        z = (x - self.mean) / self.sd
        return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)[:, self.keep]


def _fit_cox(train: pl.DataFrame, guide: Guide, l2: float) -> tuple[_Design, np.ndarray]:
    """The train-on-X Cox: its design (standardised on ``train``) and coefficients on the kept columns."""
    design = _Design(guide, train)
    t, e = _outcome(train)
    ok = np.isfinite(t) & np.isfinite(e)
    return design, fit_linear_cox(design(train)[ok], t[ok], e[ok], l2=l2)


def _cox_c(train: pl.DataFrame, test: pl.DataFrame, guide: Guide, l2: float) -> float:
    design, beta = _fit_cox(train, guide, l2)
    tt, et = _outcome(test)
    return concordance_index(tt, et.astype(int), design(test) @ beta)


def linear_cox_terms(
    train: pl.DataFrame, test: pl.DataFrame, guide: Guide, *, l2: float = 1.0
) -> tuple[np.ndarray, list[str]]:
    """Each feature column's term b_j · z_j of a linear Cox fitted on ``train``, on ``test``'s rows.

    The same fit as :func:`train_synthetic_test_real` (standardised on ``train``, missing at the mean); a
    column constant on ``train`` gets 0. Returns (f64[n_test, n_columns], the column names of
    ``numeric_matrix``): summed over columns it is the risk score whose C that function reports.
    """
    design, kept = _fit_cox(train, guide, l2)
    beta = np.zeros(design.keep.size)
    beta[design.keep] = kept
    z = np.zeros((test.height, design.keep.size))
    z[:, design.keep] = design(test)
    return z * beta, numeric_matrix(test, guide.features)[1]


def train_synthetic_test_real(
    real_train: pl.DataFrame, synthetic: pl.DataFrame, holdout: pl.DataFrame, guide: Guide, *, l2: float = 1.0
) -> dict[str, float]:
    """Harrell's C on the real holdout of a linear Cox fitted on synthetic vs on real training rows.

    Returns ``{"c_index_train_real", "c_index_train_synthetic", "difference"}`` (synthetic minus
    real; the issue's target is within 0.03).
    """
    c_real = _cox_c(real_train, holdout, guide, l2)
    c_syn = _cox_c(synthetic, holdout, guide, l2)
    return {"c_index_train_real": c_real, "c_index_train_synthetic": c_syn, "difference": c_syn - c_real}
