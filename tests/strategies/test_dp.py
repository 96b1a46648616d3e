"""Client-level DP-FedAvg (strategies/dp.py): clipping and noise by hand, accounting against dp-accounting."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from fedjax_rhd.models import DeepSurvConfig
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, StrategyConfig, build_algorithm
from fedjax_rhd.strategies.dp import DPConfig, clip_update, epsilon, privacy_summary, private_mean_update
from fedjax_rhd.typing import ClientResult


def test_clip_scales_an_update_above_the_bound_and_leaves_one_below():
    big = {"a": jnp.array([3.0]), "b": jnp.array([[4.0]])}  # norm 5
    clipped = clip_update(big, 1.0)
    np.testing.assert_allclose(clipped["a"], [0.6], rtol=1e-6)
    np.testing.assert_allclose(clipped["b"], [[0.8]], rtol=1e-6)
    small = {"a": jnp.array([0.3]), "b": jnp.array([[0.4]])}  # norm 0.5
    np.testing.assert_array_equal(clip_update(small, 1.0)["a"], small["a"])


def test_mean_without_noise_is_the_clipped_sum_over_a_fixed_denominator():
    theta = {"w": jnp.zeros(2)}
    nodes = {"w": jnp.array([[3.0, 4.0], [0.1, 0.0], [9.0, 9.0]])}  # norms 5, 0.1, 12.7
    took_part = jnp.array([1.0, 1.0, 0.0])  # node 3 sat out: it adds nothing, K stays 3
    mean = private_mean_update(
        theta, nodes, took_part, DPConfig(clip=1.0, noise_multiplier=0.0), jax.random.key(0)
    )
    np.testing.assert_allclose(mean["w"], [(0.6 + 0.1) / 3, 0.8 / 3], rtol=1e-6)


def test_noise_has_standard_deviation_sigma_clip_over_k():
    theta = {"w": jnp.zeros(20_000)}
    nodes = {"w": jnp.zeros((4, 20_000))}
    config = DPConfig(clip=0.5, noise_multiplier=2.0)
    noise = np.asarray(private_mean_update(theta, nodes, jnp.ones(4), config, jax.random.key(1))["w"])
    expected = 2.0 * 0.5 / 4
    # sample variance of 20k normals: chi-square interval at 1e-6 either side
    n = noise.size
    low, high = stats.chi2.ppf([1e-6, 1 - 1e-6], n - 1) / (n - 1)
    assert low < noise.var(ddof=1) / expected**2 < high
    assert abs(noise.mean()) < 6 * expected / np.sqrt(n)
    again = private_mean_update(theta, nodes, jnp.ones(4), config, jax.random.key(1))["w"]
    np.testing.assert_array_equal(noise, again)  # seeded: both backends draw the same


def test_dp_fedavg_round_by_hand_and_plain_fedavg_unchanged():
    spec = AlgorithmSpec("fedavg", "deepsurv", DeepSurvConfig(hidden=(4,)), 3, client=ClientConfig())
    private = dataclasses.replace(spec, dp=DPConfig(clip=0.01, noise_multiplier=0.0))
    params = {"w": jnp.array([1.0, 1.0])}
    results = ClientResult(
        params={"w": jnp.array([[1.3, 1.4], [1.0, 1.0], [0.0, 1.0]])},  # updates (0.3,0.4), 0, (-1, 0)
        num_examples=jnp.array([100.0, 10.0, 1.0]),
        metrics={},
    )
    for s in (spec, private):
        algo = build_algorithm(s)
        state = algo.init(params, 3)
        new = algo.aggregate(state, results, results.num_examples, jax.random.key(0))
        if s is spec:  # patients-weighted mean, rng ignored
            expected = (100 * np.array([1.3, 1.4]) + 10 * np.array([1.0, 1.0]) + np.array([0.0, 1.0])) / 111
        else:  # equal weights, clipped updates (0.006, 0.008) and (-0.01, 0), fixed denominator 3
            expected = np.array([1.0 + (0.006 - 0.01) / 3, 1.0 + 0.008 / 3])
        np.testing.assert_allclose(new.params["w"], expected, rtol=1e-6)
    with pytest.raises(ValueError, match="needs the round's key"):
        algo.aggregate(state, results, results.num_examples)


def test_epsilon_equals_dp_accounting_for_the_known_configuration():
    # sigma 1, every node every round, 50 rounds, delta 1e-5: 57.3 (RDP), 54.4 (PLD)
    # (../shared/docs/synthetic_tuning_facts.md §6, measured with dp-accounting 0.6.0)
    import dp_accounting
    from dp_accounting import pld, rdp

    event = dp_accounting.SelfComposedDpEvent(dp_accounting.GaussianDpEvent(1.0), 50)
    relation = dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE
    ours = {
        "rdp": rdp.RdpAccountant(),
        "pld": pld.PLDAccountant(relation, value_discretization_interval=1e-2),
    }
    for name, accountant in ours.items():
        accountant.compose(event)
        assert epsilon(1.0, 50, 1e-5, name) == pytest.approx(accountant.get_epsilon(1e-5), rel=1e-12)
    fine = pld.PLDAccountant(relation)  # the library's default discretisation, 1e-4
    fine.compose(event)
    assert fine.get_epsilon(1e-5) <= epsilon(1.0, 50, 1e-5, "pld") < fine.get_epsilon(1e-5) * (1 + 1e-4)
    assert epsilon(1.0, 50, 1e-5, "rdp") == pytest.approx(57.3, abs=0.05)
    assert epsilon(1.0, 50, 1e-5, "pld") == pytest.approx(54.4, abs=0.05)
    assert epsilon(1.0, 0, 1e-5) == 0.0 and epsilon(0.0, 3, 1e-5) == float("inf")
    summary = privacy_summary(DPConfig(clip=0.1, noise_multiplier=1.0), rounds=3, num_nodes=5)
    assert summary["noise_std_of_mean"] == pytest.approx(0.02)
    assert summary["epsilon_rdp_per_round"][-1] == summary["epsilon_rdp"]
    assert np.all(np.diff(summary["epsilon_rdp_per_round"]) > 0)  # ε grows with every released round


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="strategy.dp.clip must be > 0"):
        DPConfig(clip=0.0)
    with pytest.raises(ValueError, match="strategy.dp.noise_multiplier must be >= 0"):
        DPConfig(clip=1.0, noise_multiplier=-1.0)
    with pytest.raises(ValueError, match="needs strategy.algorithm=fedavg"):
        StrategyConfig(algorithm="local", dp=DPConfig(clip=1.0))
