"""Size buckets for the simulator's round (data/buckets.py): the plan, the cut, and equal results."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fedjax_rhd.data.buckets import (
    CLASSES_PER_DOUBLING,
    FINE_LIMIT,
    ROW_MULTIPLE,
    bucket_nodes,
    plan_buckets,
    size_class,
)
from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.federation.node_tasks import node_update
from fedjax_rhd.federation.simulator import federated_round
from fedjax_rhd.models import DeepSurvConfig
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, build_algorithm, build_model
from fedjax_rhd.typing import NodeData


@pytest.mark.parametrize(
    ("n", "padded"),
    # multiples of 64 up to 2,048; then 16 classes per doubling (steps of 128 in [2048, 4096), 256 above)
    [
        (0, 64),
        (1, 64),
        (64, 64),
        (65, 128),
        (1434, 1472),
        (2048, 2048),
        (2049, 2176),
        (4096, 4096),
        (4097, 4352),
    ],
)
def test_size_class_by_hand(n, padded):
    assert size_class(n) == padded


@given(st.integers(0, 5_000_000))
def test_size_class_bounds_padding(n):
    pad = size_class(n)
    assert pad >= max(n, ROW_MULTIPLE)
    if n > FINE_LIMIT:
        assert pad - n < n / CLASSES_PER_DOUBLING  # under 6.25% padding
    else:
        assert pad - n < ROW_MULTIPLE or n == 0


def test_plan_of_the_five_node_mds_split():
    # node sizes of the five-node MDS split: the two 32x-row nodes share a bucket
    plan = plan_buckets([1434, 636, 478, 320, 319])
    assert plan.nodes == ((0,), (1,), (2,), (3, 4))
    assert plan.pads == (1472, 640, 512, 320)
    assert plan.padded_rows() == 1472 + 640 + 512 + 2 * 320
    assert [plan.pad_of(k) for k in range(5)] == [1472, 640, 512, 320, 320]


@given(st.lists(st.integers(1, 20_000), min_size=1, max_size=60), st.integers(1, 8))
def test_plan_holds_every_node_once_and_merges_by_least_padding(rows, max_buckets):
    plan = plan_buckets(rows, max_buckets)
    assert sorted(k for members in plan.nodes for k in members) == list(range(len(rows)))
    assert len(plan.pads) <= max_buckets and list(plan.pads) == sorted(set(plan.pads), reverse=True)
    for members, pad in zip(plan.nodes, plan.pads, strict=True):
        assert all(size_class(rows[k]) <= pad for k in members)
    if len({size_class(n) for n in rows}) <= max_buckets:  # nothing to merge: one bucket per class
        assert plan.pads == tuple(sorted({size_class(n) for n in rows}, reverse=True))


def test_merge_picks_the_cheapest_neighbours():
    # classes 1024 (1 node), 960 (1 node), 128 (3 nodes); one merge allowed:
    # 960 -> 1024 costs 64 rows, 128 -> 960 costs 3 * 832: the first is chosen
    plan = plan_buckets([1000, 950, 100, 110, 120], max_buckets=2)
    assert plan.nodes == ((0, 1), (2, 3, 4)) and plan.pads == (1024, 128)


def _stack(rows: list[int], width: int, d: int = 3, seed: int = 0) -> NodeData:
    rng = np.random.default_rng(seed)
    nodes = []
    for n in rows:
        time = rng.integers(1, 30, n).astype(float)  # ties on purpose
        nodes.append(
            make_node_data(
                rng.normal(size=(n, d)), rng.random((n, d)) > 0.2, time, rng.random(n) < 0.6, pad_to=width
            )
        )
    return NodeData(*(np.stack(leaves) for leaves in zip(*nodes, strict=True)))


def test_bucket_cut_keeps_every_real_row_and_its_risk_set():
    rows = [300, 70, 65, 2100]
    stacked = _stack(rows, width=2112)  # the data layer pads to a multiple of 64 of the largest
    plan = plan_buckets(rows)
    buckets = bucket_nodes(stacked, rows, plan)
    assert [part.x.shape[:2] for part in buckets.parts] == [(1, 2176), (1, 320), (2, 128)]
    flat = np.concatenate(buckets.nodes)
    np.testing.assert_array_equal(flat[buckets.order], np.arange(4))
    for part, members in zip(buckets.parts, buckets.nodes, strict=True):
        for i, k in enumerate(members):
            n = rows[k]
            for field in NodeData._fields:
                np.testing.assert_array_equal(getattr(part, field)[i, :n], getattr(stacked, field)[k, :n])
            assert part.weight[i, n:].sum() == 0
            ends = part.risk_set_end[i]
            np.testing.assert_array_equal(ends[n:], np.arange(n, ends.size))  # padding points at itself
            assert np.all(ends[:n] < n)


def test_bucketed_round_equals_the_single_stack_to_float_tolerance_and_keeps_node_order():
    rows = [400, 130, 120, 60]
    stacked = _stack(rows, width=448, d=6, seed=1)
    spec = AlgorithmSpec(
        "fedavg",
        "deepsurv",
        DeepSurvConfig(hidden=(8,), dropout=0.0),
        6,
        client=ClientConfig(optimizer="sgd", learning_rate=0.05, local_epochs=3),
    )
    state = build_algorithm(spec).init(build_model(spec).init(jax.random.key(0)), 4)
    key = jax.random.key(3)
    buckets = jax.tree.map(jnp.asarray, bucket_nodes(stacked, rows, plan_buckets(rows)))
    a_state, a = federated_round(spec, state, jax.tree.map(jnp.asarray, stacked), key)
    b_state, b = federated_round(spec, state, buckets, key)
    np.testing.assert_array_equal(a.num_examples, rows)
    np.testing.assert_array_equal(b.num_examples, rows)  # results come back in node order
    np.testing.assert_allclose(b.metrics["train_loss"], a.metrics["train_loss"], rtol=1e-5)
    for x, y in zip(jax.tree.leaves(b_state.params), jax.tree.leaves(a_state.params), strict=True):
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_a_nodes_result_does_not_depend_on_its_bucket_mates():
    # node 2 alone (as a Flower node computes it) and vmapped with node 1 in one bucket: same bits
    rows = [400, 130, 120]
    stacked = _stack(rows, width=448, d=6, seed=2)
    spec = AlgorithmSpec(
        "fedavg", "deepsurv", DeepSurvConfig(hidden=(8,)), 6, client=ClientConfig(local_epochs=2)
    )
    algorithm = build_algorithm(spec)
    params = build_model(spec).init(jax.random.key(0))
    key = jax.random.key(5)
    buckets = jax.tree.map(jnp.asarray, bucket_nodes(stacked, rows, plan_buckets(rows)))
    _, results = federated_round(spec, algorithm.init(params, 3), buckets, key)
    alone = NodeData(*(jnp.asarray(leaf[2, :128]) for leaf in stacked))
    # what a Flower node runs: the same spec-jitted update (hyperparameters traced as in the round)
    mine = node_update(spec, params, alone, jax.random.fold_in(key, 2))
    for x, y in zip(
        jax.tree.leaves(mine.params),
        jax.tree.leaves(jax.tree.map(lambda leaf: leaf[2], results.params)),
        strict=True,
    ):
        np.testing.assert_array_equal(x, y)
