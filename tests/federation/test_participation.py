"""Client sampling (strategy), injected failures and time limits (simulator), the round policy."""

from __future__ import annotations

import dataclasses
import math
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedjax_rhd.federation.faults import (
    Failures,
    NodeDown,
    NodeSlowdown,
    Timing,
    failed_nodes,
    simulated_seconds,
)
from fedjax_rhd.federation.loop import TrainSchedule, run_federation
from fedjax_rhd.federation.participation import (
    RoundPlan,
    RoundPolicy,
    Sampling,
    TooFewNodes,
    check_policy,
    sample_nodes,
)
from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.federation.run_state import CHECKPOINT_NAME, read_identity
from fedjax_rhd.federation.simulator import SimulatorConfig, federated_round
from fedjax_rhd.strategies import build_algorithm, build_model
from tests.federation.conftest import spec_of

NAMES = ("node1", "node2", "node3", "node4", "node5")


@given(
    seed=st.integers(0, 2**31 - 1),
    round_index=st.integers(1, 500),
    k=st.integers(1, 20),
    fraction=st.floats(0.01, 1.0),
    min_nodes=st.integers(1, 25),
)
@settings(max_examples=200, deadline=None)
def test_sample_size_and_purity(seed, round_index, k, fraction, min_nodes):
    mask = sample_nodes(seed, round_index, k, fraction, min_nodes)
    assert mask.dtype == bool and mask.shape == (k,)
    assert mask.sum() == min(k, max(min_nodes, math.ceil(fraction * k - 1e-9)))
    np.testing.assert_array_equal(mask, sample_nodes(seed, round_index, k, fraction, min_nodes))


def test_fraction_one_is_every_node():
    for r in range(1, 20):
        assert sample_nodes(7, r, 5, 1.0).all()


def test_sampling_is_roughly_uniform_and_varies_by_round():
    counts = np.zeros(5)
    draws = [tuple(np.flatnonzero(sample_nodes(3, r, 5, 0.4))) for r in range(1, 2001)]
    for d in draws:
        counts[list(d)] += 1
    # each node is picked with probability 2/5: 800 of 2000 rounds, sd ~22
    assert np.all(np.abs(counts - 800) < 110), counts
    assert len(set(draws)) == 10  # all C(5, 2) pairs occur


def test_sampled_nodes_are_reproducible_in_another_process():
    """Any backend reproduces the set from (seed, round, K) alone: here a fresh interpreter."""
    code = (
        "from fedjax_rhd.federation.participation import sample_nodes;"
        "print([sample_nodes(42, r, 5, 0.6).nonzero()[0].tolist() for r in range(1, 9)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    here = [sample_nodes(42, r, 5, 0.6).nonzero()[0].tolist() for r in range(1, 9)]
    assert out.strip() == str(here)


def _plan(failed: np.ndarray, timed_out: np.ndarray | None = None) -> RoundPlan:
    every = np.ones(len(NAMES), dtype=bool)
    timed_out = np.zeros(len(NAMES), dtype=bool) if timed_out is None else timed_out
    return RoundPlan(sampled=every, failed=failed, timed_out=timed_out, seconds=None)


def test_named_node_down_and_random_failures():
    failures = Failures(probability=0.3, down=(NodeDown("node3", 4),))
    failed = np.array([failed_nodes(failures, 5, r, NAMES) for r in range(1, 2001)])
    assert not failed[:3, 2].all() and failed[3:, 2].all()  # node3 down from round 4 on
    # probability 0.3 per node and round, independently: sd of the share ~0.01
    np.testing.assert_allclose(failed[:, [0, 1, 3, 4]].mean(axis=0), 0.3, atol=0.04)
    np.testing.assert_array_equal(
        failed, np.array([failed_nodes(failures, 5, r, NAMES) for r in range(1, 2001)])
    )
    # a failed node that was sampled is out of the round
    plan = _plan(failed_nodes(Failures(down=(NodeDown("node3", 4),)), 5, 5, NAMES))
    assert plan.record(NAMES)["failed"] == ["node3"] and "node3" not in plan.record(NAMES)["aggregated"]


def test_simulated_time_of_the_slow_node():
    timing = Timing(seconds_per_row=1e-3, slowdown=(NodeSlowdown("node2", 50.0),))
    seconds = simulated_seconds(timing, 0, 1, NAMES, [300, 100, 100, 50, 50], 2)
    np.testing.assert_allclose(seconds, [0.6, 10.0, 0.2, 0.1, 0.1])
    jittered = [simulated_seconds(Timing(jitter=0.5), 3, r, NAMES, [100] * 5, 1) for r in (1, 1, 2)]
    np.testing.assert_array_equal(jittered[0], jittered[1])  # a pure function of (seed, round)
    assert not np.array_equal(jittered[0], jittered[2])


def test_policy_min_nodes_and_accept_failures():
    down = np.array([False, False, False, True, True])
    check_policy(RoundPolicy(min_nodes=3), _plan(down), 1, NAMES)
    assert len(_plan(down).record(NAMES)["aggregated"]) == 3
    with pytest.raises(TooFewNodes, match=r"round 1: 3 node\(s\) returned .*node4, node5.*min_nodes=4"):
        check_policy(RoundPolicy(min_nodes=4), _plan(down), 1, NAMES)
    with pytest.raises(TooFewNodes, match="accept_failures=false"):
        check_policy(RoundPolicy(accept_failures=False), _plan(down), 1, NAMES)
    with pytest.raises(TooFewNodes, match="node2 failed or timed out and strategy.accept_failures=false"):
        check_policy(
            RoundPolicy(accept_failures=False), _plan(np.zeros(5, dtype=bool), np.arange(5) == 1), 1, NAMES
        )
    with pytest.raises(ValueError, match="no node named 'node9'"):
        SimulatorConfig(failures=Failures(down=(NodeDown("node9", 1),))).check_nodes(NAMES)


# --- through the simulator --------------------------------------------------------------------------


def test_fraction_one_equals_no_sampling_bit_for_bit(data3):
    spec = spec_of(data3)
    train = jax.tree.map(jnp.asarray, data3.train)
    s_none = s_mask = build_algorithm(spec).init(build_model(spec).init(jax.random.key(0)), 3)
    for r in range(1, 4):
        mask = jnp.asarray(sample_nodes(0, r, 3, 1.0), jnp.float32)
        s_none, _ = federated_round(spec, s_none, train, jax.random.key(r))
        s_mask, _ = federated_round(spec, s_mask, train, jax.random.key(r), mask)
    for a, b in zip(jax.tree.leaves(s_none), jax.tree.leaves(s_mask), strict=True):
        np.testing.assert_array_equal(a, b)


def test_absent_node_is_left_out_of_the_average(data3):
    """Weight 0 for node3 = FedAvg over nodes 1 and 2 alone (same keys for nodes 1, 2)."""
    spec = spec_of(data3)
    train3 = jax.tree.map(jnp.asarray, data3.train)
    train2 = jax.tree.map(lambda a: a[:2], train3)
    s3 = s2 = build_algorithm(spec).init(build_model(spec).init(jax.random.key(1)), 3)
    for r in range(1, 4):
        s3, _ = federated_round(spec, s3, train3, jax.random.key(r), jnp.array([1.0, 1.0, 0.0]))
        s2, _ = federated_round(spec, s2, train2, jax.random.key(r))
    for a, b in zip(jax.tree.leaves(s3.params), jax.tree.leaves(s2.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def _run(spec, data, schedule, policy=None, config=None, *, seed_sample=0, **kwargs):
    backend = make_backend(config or SimulatorConfig(), data, spec)
    return run_federation(backend, schedule, policy, seed_sample=seed_sample, progress=False, **kwargs)


def test_time_limit_drops_the_slow_node(data3):
    config = SimulatorConfig(time_limit=1.0, timing=Timing(slowdown=(NodeSlowdown("node2", 1e4),)))
    backend = make_backend(config, data3, spec_of(data3))
    failed, timed_out, seconds = backend.injected_faults(1, np.ones(3, dtype=bool))
    assert not failed.any() and timed_out.tolist() == [False, True, False]
    np.testing.assert_allclose(seconds, 1e-3 * np.array(data3.n_train) * 2 * [1, 1e4, 1])
    sim = _run(spec_of(data3), data3, TrainSchedule(rounds=1, patience=None), config=config)
    (record,) = sim.rounds
    assert record["participation"]["timed_out"] == ["node2"]
    assert record["participation"]["aggregated"] == ["node1", "node3"]
    assert record["participation"]["simulated_seconds"] == pytest.approx(seconds.tolist())


def test_node_failing_every_round_run_completes_and_records(data3, tmp_path):
    spec = spec_of(data3)
    schedule = TrainSchedule(rounds=3, patience=None)
    sim = _run(
        spec,
        data3,
        schedule,
        config=SimulatorConfig(failures=Failures(down=(NodeDown("node2", 1),))),
        checkpoint=tmp_path / CHECKPOINT_NAME,
    )
    assert len(sim.rounds) == 3
    for record in sim.rounds:
        assert record["participation"]["failed"] == ["node2"]
        assert record["participation"]["aggregated"] == ["node1", "node3"]
        assert record["train_loss"][1] is None and record["train_loss"][0] is not None


def test_too_few_nodes_stops_with_a_usable_checkpoint(data3, tmp_path):
    spec = spec_of(data3)
    schedule = TrainSchedule(rounds=4, patience=None)
    path = tmp_path / CHECKPOINT_NAME
    faults = SimulatorConfig(failures=Failures(down=(NodeDown("node2", 3), NodeDown("node3", 3))))
    failing = RoundPolicy(min_nodes=2)
    with pytest.raises(
        TooFewNodes, match=r"round 3: 1 node\(s\) returned .*min_nodes=2; checkpoint after round 2"
    ):
        _run(spec, data3, schedule, failing, faults, checkpoint=path, identity={"x": 1})
    assert read_identity(path) == {"x": 1}
    # The checkpoint resumes once the policy is relaxed, and ends where a run
    # with that policy from the start ends.
    relaxed = dataclasses.replace(failing, min_nodes=1)
    resumed = _run(spec, data3, schedule, relaxed, faults, checkpoint=path, resume=True)
    straight = _run(spec, data3, schedule, relaxed, faults)
    assert [r["participation"] for r in resumed.rounds] == [r["participation"] for r in straight.rounds]
    assert resumed.rounds[2]["participation"]["aggregated"] == ["node1"]
    for a, b in zip(
        jax.tree.leaves(resumed.global_params), jax.tree.leaves(straight.global_params), strict=True
    ):
        np.testing.assert_array_equal(a, b)


def test_local_strategy_keeps_an_absent_nodes_model(data3):
    spec = spec_of(data3, "local")
    train = jax.tree.map(jnp.asarray, data3.train)
    state = build_algorithm(spec).init(build_model(spec).init(jax.random.key(0)), 3)
    new, results = federated_round(spec, state, train, jax.random.key(1), jnp.array([1.0, 0.0, 1.0]))
    for old_leaf, new_leaf, res_leaf in zip(
        jax.tree.leaves(state.params),
        jax.tree.leaves(new.params),
        jax.tree.leaves(results.params),
        strict=True,
    ):
        np.testing.assert_array_equal(new_leaf[1], old_leaf[1])
        np.testing.assert_array_equal(new_leaf[0], res_leaf[0])


def test_simulator_trains_exactly_the_sampled_nodes(data3):
    spec = spec_of(data3)
    policy = RoundPolicy(sampling=Sampling(fraction=0.5))
    sim = _run(spec, data3, TrainSchedule(rounds=4, patience=None), policy, seed_sample=9)
    for record in sim.rounds:
        expected = [
            n for n, m in zip(data3.node_names, sample_nodes(9, record["round"], 3, 0.5), strict=True) if m
        ]
        assert record["participation"]["sampled"] == expected == record["participation"]["aggregated"]
        assert [t is not None for t in record["train_loss"]] == [n in expected for n in data3.node_names]
    assert len({tuple(r["participation"]["sampled"]) for r in sim.rounds}) > 1  # varies by round
