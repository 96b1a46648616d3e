"""A Bayesian Gaussian mixture fitted by federated variational EM: nodes send sums, never rows.

VAE-BGM (Apellániz et al., arXiv:2404.08434) replaces the VAE's N(0, I) prior by a Bayesian Gaussian
mixture fitted to the training patients' latent means. The latent means are patient-level, so here
they never leave their node. Variational EM (Bishop, PRML §10.2; the updates of scikit-learn's
``BayesianGaussianMixture`` with full covariances) only needs, per component k, the sums

    N_k = Σ_i r_ik,   S1_k = Σ_i r_ik z_i,   S2_k = Σ_i r_ik z_i z_iᵀ

over every node's rows, where ``r_ik`` are responsibilities computed under the broadcast
variational parameters. A node computes them on its own rows (:func:`node_sufficient_statistics`,
served as the node statistic ``latent_mixture``); the manager adds them up and applies the M-step
(:func:`m_step`). From the same state one federated step equals scikit-learn's pooled step up to
float rounding (``tests/models/test_bgm.py``; ``shared/docs/synthetic_tuning_facts.md`` §5, T7).

Everything the manager computes is float64 numpy; only a node's latent means come from the network.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np

WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")
_EPS = 10 * np.finfo(np.float64).eps  # sklearn adds 10·eps to N_k, once (at the manager)


class MixturePrior(NamedTuple):
    """The variational prior (scikit-learn's names); the defaults come from the global moments."""

    weight_concentration: float  # γ (DP) or α0 (Dirichlet); sklearn default 1/K
    mean: np.ndarray  # f64[d] m0: the federated mean of the latent means
    mean_precision: float  # β0
    degrees_of_freedom: float  # ν0 ≥ d
    covariance: np.ndarray  # f64[d, d] W0⁻¹: the federated covariance (ddof 1) of the latent means
    weight_type: str = "dirichlet_process"


class MixtureState(NamedTuple):
    """The variational posterior of a K-component mixture over d latent dimensions."""

    weight_concentration: np.ndarray  # f64[2, K] (DP: stick Beta parameters) or f64[K] (Dirichlet)
    mean_precision: np.ndarray  # f64[K] β_k
    means: np.ndarray  # f64[K, d] m_k
    degrees_of_freedom: np.ndarray  # f64[K] ν_k
    covariances: np.ndarray  # f64[K, d, d] W_k⁻¹ / ν_k (sklearn's ``covariances_``)
    precisions_cholesky: np.ndarray  # f64[K, d, d] upper factor U with U Uᵀ = covariances⁻¹


class SufficientStatistics(NamedTuple):
    """What one node sends per component (all sums over its rows); adding two nodes adds these."""

    count: np.ndarray  # f64[K] N_k
    first: np.ndarray  # f64[K, d] S1_k
    second: np.ndarray  # f64[K, d, d] S2_k


def add_statistics(parts: Sequence[SufficientStatistics]) -> SufficientStatistics:
    """The manager's sum over nodes (in node order)."""
    return SufficientStatistics(*(sum(p[i] for p in parts) for i in range(3)))


def precision_cholesky(covariances: np.ndarray) -> np.ndarray:
    """f64[K, d, d] ``solve(chol(Σ_k), I)ᵀ``: y = (z − m) U has identity covariance."""
    from scipy import linalg  # lazy: scipy costs ~0.1 s of every run's start-up

    d = covariances.shape[-1]
    out = np.empty_like(covariances)
    for k, cov in enumerate(covariances):
        chol = linalg.cholesky(cov, lower=True)
        out[k] = linalg.solve_triangular(chol, np.eye(d), lower=True).T
    return out


class EStepInputs(NamedTuple):
    """What the manager broadcasts for an E-step: r_ik ∝ exp(offset_k − ½‖(z_i − m_k) U_k‖²)."""

    means: np.ndarray  # f64[K, d]
    precisions_cholesky: np.ndarray  # f64[K, d, d]
    log_offsets: np.ndarray  # f64[K]: log weights, normalisers and the variational corrections


def node_sufficient_statistics(
    z: np.ndarray, weight: np.ndarray, inputs: EStepInputs, min_count: float = 0.0
) -> SufficientStatistics:
    """One node's E-step: responsibilities of its rows, summed per component.

    Args:
        z: f64[n, d] the node's latent means (they stay here).
        weight: f64[n] 1 for a patient, 0 for a padding row.
        inputs: the broadcast E-step parameters.
        min_count: a component whose responsibility sum at this node is below it is sent as
            zeros (suppressed), so no message carries a weighted mean of fewer patients. 0 keeps
            every component (exact equality with the pooled step).

    Returns:
        ``(N_k, S1_k, S2_k)`` in float64.
    """
    from scipy.special import logsumexp  # lazy: scipy costs ~0.1 s of every run's start-up

    z = np.asarray(z, np.float64)
    y = (
        np.einsum("nd,kde->kne", z, inputs.precisions_cholesky)
        - np.einsum("kd,kde->ke", inputs.means, inputs.precisions_cholesky)[:, None, :]
    )
    log_r = inputs.log_offsets[None, :] - 0.5 * np.sum(y * y, axis=2).T  # [n, K]
    resp = np.exp(log_r - logsumexp(log_r, axis=1, keepdims=True)) * np.asarray(weight, np.float64)[:, None]
    count = resp.sum(axis=0)
    first = resp.T @ z
    second = np.einsum("nk,nd,ne->kde", resp, z, z)
    keep = count >= min_count
    return SufficientStatistics(
        np.where(keep, count, 0.0),
        np.where(keep[:, None], first, 0.0),
        np.where(keep[:, None, None], second, 0.0),
    )


def expected_log_weights(state: MixtureState, weight_type: str) -> np.ndarray:
    """f64[K] E[log π_k]: stick-breaking (DP, order matters) or Dirichlet."""
    from scipy.special import digamma  # lazy: scipy costs ~0.1 s of every run's start-up

    wc = state.weight_concentration
    if weight_type == "dirichlet_process":
        total = digamma(wc[0] + wc[1])
        return digamma(wc[0]) - total + np.concatenate([[0.0], np.cumsum(digamma(wc[1]) - total)[:-1]])
    return digamma(wc) - digamma(np.sum(wc))


def e_step_inputs(state: MixtureState, weight_type: str) -> EStepInputs:
    """The broadcast for the next E-step (sklearn's ``_estimate_weighted_log_prob`` minus the row term)."""
    from scipy.special import digamma  # lazy: scipy costs ~0.1 s of every run's start-up

    d = state.means.shape[1]
    log_det = np.sum(np.log(np.diagonal(state.precisions_cholesky, axis1=1, axis2=2)), axis=1)
    nu = state.degrees_of_freedom
    log_lambda = d * np.log(2.0) + np.sum(digamma(0.5 * (nu[:, None] - np.arange(d)[None, :])), axis=1)
    offsets = (
        expected_log_weights(state, weight_type)
        + log_det
        - 0.5 * d * np.log(2 * np.pi)
        - 0.5 * d * np.log(nu)
        + 0.5 * (log_lambda - d / state.mean_precision)
    )
    return EStepInputs(state.means, state.precisions_cholesky, offsets)


def gaussian_inputs(means: np.ndarray, covariance: np.ndarray) -> EStepInputs:
    """E-step inputs of K equal-weight Gaussians sharing ``covariance`` (the initial assignment)."""
    k = len(means)
    chol = precision_cholesky(np.broadcast_to(covariance, (k, *covariance.shape)).copy())
    log_det = np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
    return EStepInputs(np.asarray(means, np.float64), chol, log_det - np.log(k))


def m_step(stats: SufficientStatistics, prior: MixturePrior, reg_covar: float = 1e-6) -> MixtureState:
    """The manager's M-step from summed statistics (sklearn's ``_m_step``, full covariances).

    ``10·eps`` and ``reg_covar`` are added once, here, as sklearn adds them to the pooled sums.
    """
    n = stats.count
    nk = n + _EPS
    xk = stats.first / nk[:, None]
    # Σ_i r_ik (z_i − x̄_k)(z_i − x̄_k)ᵀ expanded in the sums; divided by nk as sklearn does.
    outer = np.einsum("kd,ke->kde", stats.first, xk)
    scatter = (
        stats.second - outer - outer.transpose(0, 2, 1) + n[:, None, None] * np.einsum("kd,ke->kde", xk, xk)
    )
    d = xk.shape[1]
    sk = scatter / nk[:, None, None] + reg_covar * np.eye(d)
    if prior.weight_type == "dirichlet_process":
        tail = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
        wc = np.stack([1.0 + nk, prior.weight_concentration + tail])
    else:
        wc = prior.weight_concentration + nk
    beta = prior.mean_precision + nk
    means = (prior.mean_precision * prior.mean + nk[:, None] * xk) / beta[:, None]
    nu = prior.degrees_of_freedom + nk
    diff = xk - prior.mean
    cov = (
        prior.covariance
        + nk[:, None, None] * sk
        + (nk * prior.mean_precision / beta)[:, None, None] * np.einsum("kd,ke->kde", diff, diff)
    ) / nu[:, None, None]
    return MixtureState(wc, beta, means, nu, cov, precision_cholesky(cov))


def mixture_weights(state: MixtureState, weight_type: str) -> np.ndarray:
    """f64[K] the posterior-mean weights (sklearn's ``weights_``), summing to 1."""
    wc = state.weight_concentration
    if weight_type == "dirichlet_process":
        total = wc[0] + wc[1]
        w = wc[0] / total * np.concatenate([[1.0], np.cumprod(wc[1] / total)[:-1]])
    else:
        w = wc / np.sum(wc)
    return w / np.sum(w)


def select_components(state: MixtureState, keep: np.ndarray) -> MixtureState:
    """The state restricted to components ``keep`` (order kept: the DP's stick order stays global)."""
    idx = np.flatnonzero(keep)
    wc = (
        state.weight_concentration[:, idx]
        if state.weight_concentration.ndim == 2
        else state.weight_concentration[idx]
    )
    return MixtureState(wc, *(a[idx] for a in state[1:]))


class MixtureFit(NamedTuple):
    """A federated fit: the final state, its weights and how it got there."""

    state: MixtureState
    weights: np.ndarray  # f64[K'] after the minimum-count rule
    counts: np.ndarray  # f64[K'] summed N_k of the last E-step
    iterations: int
    dropped: int  # components removed by the minimum-count rule
    converged: bool


NodeStatistics = Callable[[EStepInputs], SufficientStatistics]
"""Ask every node for its sufficient statistics under these inputs; return their sum."""


def prior_from_moments(
    stats: SufficientStatistics,
    n_components: int,
    weight_type: str = "dirichlet_process",
    weight_concentration: float | None = None,
    mean_precision: float = 1.0,
    degrees_of_freedom: float | None = None,
) -> MixturePrior:
    """sklearn's default prior from one-component sums: mean, covariance (ddof 1), ν0 = d, γ = 1/K."""
    n = float(stats.count[0])
    if n < 2:
        raise ValueError(f"the mixture needs at least 2 patients' latent means, got {n}")
    mean = stats.first[0] / n
    cov = (stats.second[0] - n * np.outer(mean, mean)) / (n - 1)
    d = len(mean)
    return MixturePrior(
        1.0 / n_components if weight_concentration is None else weight_concentration,
        mean,
        mean_precision,
        float(d) if degrees_of_freedom is None else degrees_of_freedom,
        cov,
        weight_type,
    )


def fit_federated(
    ask_nodes: NodeStatistics,
    latent_dim: int,
    *,
    n_components: int,
    seed: int,
    max_iter: int = 100,
    tol: float = 1e-4,
    min_count: float = 10.0,
    weight_type: str = "dirichlet_process",
    reg_covar: float = 1e-6,
) -> tuple[MixtureFit, MixturePrior]:
    """Fit the mixture by federated variational EM; every round is one ``ask_nodes`` call.

    1. Moments: one component with r = 1 gives the summed count, sum and scatter; the prior is
       sklearn's default from them (T7 a: the defaults are pooled statistics, so they need this
       round).
    2. Initial means: K draws from N(mean, covariance) with ``seed`` (the manager's randomness;
       sklearn's k-means initialisation needs pooled rows). Nodes assign their rows to these
       equal-weight Gaussians; the sums give the first M-step.
    3. E/M steps until every mean moves less than ``tol`` (in prior standard deviations) and every
       weight less than ``tol``, or ``max_iter`` (no lower bound: it needs Σ r log r from every node).
    4. Minimum count: components whose summed N_k < ``min_count`` are dropped, the rest keep their
       order, and EM resumes, so their patients move to the remaining components (a merge into the
       nearest); repeated until every component holds ``min_count`` patients.

    Returns:
        The fit and the prior.
    """
    if weight_type not in WEIGHT_PRIORS:
        raise ValueError(f"weight_type must be one of {WEIGHT_PRIORS}, got {weight_type!r}")
    one = EStepInputs(np.zeros((1, latent_dim)), np.eye(latent_dim)[None], np.zeros(1))
    prior = prior_from_moments(ask_nodes(one), n_components, weight_type)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    means = rng.multivariate_normal(prior.mean, prior.covariance, size=n_components)
    state = m_step(ask_nodes(gaussian_inputs(means, prior.covariance)), prior, reg_covar)
    scale = np.sqrt(np.diag(prior.covariance))
    dropped, iterations, converged = 0, 1, False
    while True:
        stats = None
        for _ in range(max_iter):
            stats = ask_nodes(e_step_inputs(state, weight_type))
            new = m_step(stats, prior, reg_covar)
            iterations += 1
            moved = np.max(np.abs(new.means - state.means) / scale)
            reweighted = np.max(
                np.abs(mixture_weights(new, weight_type) - mixture_weights(state, weight_type))
            )
            state = new
            if moved < tol and reweighted < tol:
                converged = True
                break
        keep = stats.count >= min_count
        if keep.all():
            break
        if not keep.any():
            raise ValueError(
                f"no mixture component holds model.bgm_min_count={min_count} patients "
                f"(largest: {stats.count.max():.1f})"
            )
        dropped += int((~keep).sum())
        state, converged = select_components(state, keep), False
    return MixtureFit(
        state, mixture_weights(state, weight_type), stats.count, iterations, dropped, converged
    ), prior
