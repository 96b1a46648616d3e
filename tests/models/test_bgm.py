"""The federated Bayesian Gaussian mixture (fedjax_rhd.models.bgm): per-node sums equal pooled VB-EM.

One step from the same state is checked against scikit-learn's own pooled step
(``BayesianGaussianMixture(warm_start=True, max_iter=1)``, full covariances; its priors passed
explicitly, as shared/docs/synthetic_tuning_facts.md T7 a asks), and a whole federated fit against
the same fit on the pooled rows. Nodes are uneven on purpose.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.mixture import BayesianGaussianMixture

from fedjax_rhd.models import bgm


def _toy(seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    x = np.concatenate(
        [
            rng.normal(0.0, 1.0, (150, 4)),
            rng.normal(3.0, 0.5, (100, 4)) + [0, 1, 2, 3],
            rng.normal(-4, 0.3, (40, 4)),
        ]
    )
    order = rng.permutation(len(x))
    return x, [x[order[:160]], x[order[160:250]], x[order[250:]]]  # 160 / 90 / 40 rows


def _federated(parts: list[np.ndarray], min_count: float = 0.0):
    def ask(inputs: bgm.EStepInputs) -> bgm.SufficientStatistics:
        return bgm.add_statistics(
            [bgm.node_sufficient_statistics(p, np.ones(len(p)), inputs, min_count) for p in parts]
        )

    return ask


@pytest.mark.parametrize("weight_type", bgm.WEIGHT_PRIORS)
def test_one_federated_step_equals_sklearns_pooled_step(weight_type):
    x, parts = _toy()
    sk = BayesianGaussianMixture(
        n_components=6, weight_concentration_prior_type=weight_type, max_iter=2, random_state=0,
        mean_prior=x.mean(0), covariance_prior=np.cov(x.T), warm_start=True,
    )  # fmt: skip
    with warnings.catch_warnings():  # ConvergenceWarning: max_iter is meant to stop it
        warnings.simplefilter("ignore")
        sk.fit(x)
    prior = bgm.MixturePrior(
        sk.weight_concentration_prior_, sk.mean_prior_, sk.mean_precision_prior_,
        sk.degrees_of_freedom_prior_, sk.covariance_prior_, weight_type,
    )  # fmt: skip
    state = bgm.MixtureState(
        np.asarray(sk.weight_concentration_), sk.mean_precision_, sk.means_, sk.degrees_of_freedom_,
        sk.covariances_, sk.precisions_cholesky_,
    )  # fmt: skip
    inputs = bgm.e_step_inputs(state, weight_type)
    # the broadcast offsets reproduce sklearn's responsibilities row by row (private: to verify only)
    y = (
        np.einsum("nd,kde->kne", x, inputs.precisions_cholesky)
        - np.einsum("kd,kde->ke", inputs.means, inputs.precisions_cholesky)[:, None, :]
    )
    log_r = inputs.log_offsets[None, :] - 0.5 * np.sum(y * y, axis=2).T
    log_r -= np.log(np.exp(log_r).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(log_r, sk._estimate_log_prob_resp(x)[1], rtol=0, atol=1e-9)
    stats = _federated(parts)(inputs)
    ours = bgm.m_step(stats, prior, sk.reg_covar)
    sk.set_params(max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(x)  # warm start: one E-step and one M-step from the same state, on the pooled rows
    tol = dict(rtol=0, atol=1e-10)
    np.testing.assert_allclose(ours.weight_concentration, np.asarray(sk.weight_concentration_), **tol)
    np.testing.assert_allclose(ours.mean_precision, sk.mean_precision_, **tol)
    np.testing.assert_allclose(ours.means, sk.means_, **tol)
    np.testing.assert_allclose(ours.degrees_of_freedom, sk.degrees_of_freedom_, **tol)
    np.testing.assert_allclose(ours.covariances, sk.covariances_, **tol)
    np.testing.assert_allclose(ours.precisions_cholesky, sk.precisions_cholesky_, **tol)
    np.testing.assert_allclose(bgm.mixture_weights(ours, weight_type), sk.weights_, **tol)


def test_a_federated_fit_equals_the_pooled_fit():
    x, parts = _toy()
    kwargs = dict(n_components=6, seed=3, min_count=0.0)
    fed, prior_fed = bgm.fit_federated(_federated(parts), 4, **kwargs)
    pooled, prior_pooled = bgm.fit_federated(_federated([x]), 4, **kwargs)
    np.testing.assert_allclose(prior_fed.covariance, prior_pooled.covariance, rtol=0, atol=1e-12)
    assert fed.iterations == pooled.iterations
    np.testing.assert_allclose(fed.weights, pooled.weights, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fed.state.means, pooled.state.means, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fed.state.covariances, pooled.state.covariances, rtol=0, atol=1e-9)


@pytest.mark.parametrize("node_min_count", [0.0, 10.0])
def test_min_count_leaves_no_component_below_it_and_finds_the_clusters(node_min_count):
    x, parts = _toy()
    fit, _ = bgm.fit_federated(
        _federated(parts, min_count=node_min_count), 4, n_components=10, seed=0, min_count=30.0
    )
    assert np.all(fit.counts >= 30.0) and fit.dropped == 10 - len(fit.weights)
    assert len(fit.weights) == 3  # three clusters of 150, 100 and 40 points
    np.testing.assert_allclose(fit.weights.sum(), 1.0)
    counts = np.sort(fit.counts)
    if node_min_count == 0:
        np.testing.assert_allclose(counts, [40, 100, 150], atol=0.1)
    else:  # a node holding fewer than 10 of the small cluster sends zeros for it: the count drops
        assert 30 <= counts[0] < 40 and np.allclose(counts[1:], [100, 150], atol=0.1)


def test_a_node_suppresses_a_component_it_holds_few_patients_of():
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(0, 1, (30, 2)), [[50.0, 50.0]]])  # one patient far away
    inputs = bgm.gaussian_inputs(np.array([[0.0, 0.0], [50.0, 50.0]]), np.eye(2))
    full = bgm.node_sufficient_statistics(z, np.ones(len(z)), inputs)
    np.testing.assert_allclose(full.first[1], [50.0, 50.0])  # what an unsuppressed reply would give away
    safe = bgm.node_sufficient_statistics(z, np.ones(len(z)), inputs, min_count=5.0)
    assert safe.count[1] == 0 and not safe.first[1].any() and not safe.second[1].any()
    np.testing.assert_array_equal(safe.first[0], full.first[0])


def test_padding_rows_add_nothing():
    x, _ = _toy()
    inputs = bgm.gaussian_inputs(x[:3], np.eye(4))
    padded = np.concatenate([x[:50], np.zeros((14, 4))])
    a = bgm.node_sufficient_statistics(x[:50], np.ones(50), inputs)
    b = bgm.node_sufficient_statistics(padded, np.r_[np.ones(50), np.zeros(14)], inputs)
    for u, v in zip(a, b, strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-13, atol=1e-13)


def test_no_component_reaching_min_count_is_an_error_naming_the_key():
    _, parts = _toy()
    with pytest.raises(ValueError, match="bgm_min_count"):
        bgm.fit_federated(_federated(parts), 4, n_components=3, seed=0, min_count=1e6)
