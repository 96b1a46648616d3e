"""The BN's parameters: summed node counts = pooled counts = pgmpy's; posterior draws; ancestral sampling."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedjax_rhd.models import bn_params as bp

NAMES = ["a", "b", "c", "d"]
STATES = np.array([3, 2, 4, 2])  # c's last state is its NA state


def _codes(n: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.integers(0, 3, n)
    b = (a + (rng.random(n) < 0.3)) % 2
    c = np.where(rng.random(n) < 0.1, 3, (a + b + rng.integers(0, 2, n)) % 3)
    d = ((c == 0) ^ (rng.random(n) < 0.2)).astype(np.int64)
    return np.stack([a, b, c, d], axis=1)


def test_summed_node_counts_are_pooled_and_pgmpy_s_bdeu_posterior():
    from pgmpy.models import DiscreteBayesianNetwork
    from pgmpy.parameter_estimator import DiscreteBayesianEstimator

    rng = np.random.default_rng(0)
    nodes = [_codes(n, rng) for n in (200, 90, 7)]  # the smallest node lacks some states
    dag = np.zeros((4, 4), np.int8)
    dag[0, 1] = dag[0, 2] = dag[1, 2] = dag[2, 3] = 1
    summed = bp.sum_counts([bp.family_counts(c, STATES, dag) for c in nodes])
    pooled = np.concatenate(nodes)
    for got, want in zip(summed, bp.family_counts(pooled, STATES, dag), strict=True):
        np.testing.assert_array_equal(got, want)
    assert summed[2].shape == (4, 6)  # c | a, b: 3 x 2 parent configurations

    frame = pd.DataFrame(
        {n: pd.Categorical(pooled[:, j], categories=range(STATES[j])) for j, n in enumerate(NAMES)}
    )
    model = DiscreteBayesianNetwork([("a", "b"), ("a", "c"), ("b", "c"), ("c", "d")])
    model.fit(frame, estimator=DiscreteBayesianEstimator(prior_type="BDeu", equivalent_sample_size=5))
    mean = bp.posterior_mean(bp.concentration(summed, 5.0))
    for j, name in enumerate(NAMES):
        cpd = model.get_cpds(name)
        parents = [NAMES[i] for i in bp.parents_of(dag, j)]
        if parents:
            cpd.reorder_parents(parents)
        assert cpd.state_names[name] == list(range(STATES[j]))
        np.testing.assert_allclose(cpd.get_values(), mean[j], rtol=0, atol=1e-12)


def test_posterior_draws_are_distributions_around_the_posterior_mean():
    counts = [np.array([[30.0, 0.0], [10.0, 0.0], [0.0, 0.0]])]
    conc = bp.concentration(counts, 0.006)  # α = 0.001: plain Gamma draws would underflow
    rng = np.random.default_rng(0)
    draws = np.stack([bp.draw_cpds(conc, rng)[0] for _ in range(4000)])
    assert np.all(np.isfinite(draws)) and np.allclose(draws.sum(axis=1), 1.0)
    np.testing.assert_allclose(draws[:, :, 0].mean(0), bp.posterior_mean(conc)[0][:, 0], atol=0.01)


def test_ancestral_sampling_follows_the_cpds():
    dag = np.zeros((2, 2), np.int8)
    dag[0, 1] = 1
    cpds = [np.array([[0.2], [0.8]]), np.array([[0.9, 0.3], [0.1, 0.7]])]
    codes = bp.ancestral_sample(dag, cpds, np.array([2, 2]), 40000, np.random.default_rng(0))
    assert codes[:, 0].mean() == pytest.approx(0.8, abs=0.01)
    assert codes[codes[:, 0] == 0, 1].mean() == pytest.approx(0.1, abs=0.015)
    assert codes[codes[:, 0] == 1, 1].mean() == pytest.approx(0.7, abs=0.01)
    assert bp.topological_order(np.array([[0, 0], [1, 0]])) == [1, 0]
