"""Continuous knobs are traced inputs: runs differing only in them share one compiled round.

``fedjax_rhd.strategies.traced``: the learning rate, L2 weight, dropout rate (and SAVAE's β)
travel as arrays; widths, depth and local steps stay in the static key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd import executables
from fedjax_rhd.data import SplitSpec, build_federated_data
from fedjax_rhd.federation.simulator import TRACE_COUNTS, federated_round
from fedjax_rhd.models import CoxPHConfig, DeepSurvConfig, SAVAEConfig
from fedjax_rhd.models.dropout import traced_rate
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, build_algorithm, build_model
from fedjax_rhd.strategies.traced import lift


@pytest.fixture(scope="module")
def data3(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, SplitSpec("three", (0.6, 0.3, 0.1), seed=2))


def _deepsurv(lr: float = 1e-3, l2: float = 1e-4, dropout: float = 0.1, **model) -> AlgorithmSpec:
    config = DeepSurvConfig(dropout=dropout, l2=l2, **model)
    return AlgorithmSpec("fedavg", "deepsurv", config, 7, client=ClientConfig(learning_rate=lr))


def test_specs_differing_only_in_continuous_knobs_share_one_skeleton():
    a, b = _deepsurv(1e-3, 1e-4, 0.1), _deepsurv(5e-3, 2e-2, 0.35)
    (skel_a, hp_a), (skel_b, hp_b) = lift(a), lift(b)
    assert skel_a == skel_b and hash(skel_a) == hash(skel_b)
    assert hp_a["client.learning_rate"] == np.float32(1e-3) and hp_b["model.l2"] == np.float32(2e-2)
    # keep threshold round(0.9 * 2^16) = round(58982.4) = 58982 and scale 2^16 / 58982, as dropout() computes
    assert int(hp_a["model.dropout"].threshold) == 58982
    assert hp_a["model.dropout"].scale == np.float32(65536 / 58982)
    assert sorted(hp_a) == ["client.learning_rate", "client.local_epochs", "model.dropout", "model.l2"]
    # the local step count too: the steps run as a loop whose bound is an input
    more_steps = AlgorithmSpec("fedavg", "deepsurv", a.model_config, 7, client=ClientConfig(local_epochs=9))
    assert lift(more_steps)[0] == skel_a and lift(more_steps)[1]["client.local_epochs"] == 9
    minibatch = ClientConfig(batch_size=32, local_steps=4)
    skeleton, hp = lift(AlgorithmSpec("fedavg", "deepsurv", a.model_config, 7, client=minibatch))
    assert hp["client.local_steps"] == 4 and skeleton.client.batch_size == 32


@pytest.mark.parametrize(
    "other",
    [
        _deepsurv(hidden=(16,)),  # width and depth set shapes (so does a minibatch, next)
        AlgorithmSpec("fedavg", "deepsurv", DeepSurvConfig(), 7, client=ClientConfig(batch_size=16)),
        _deepsurv(dropout=0.0),  # no masks at all: another program
        _deepsurv(activation="relu"),
    ],
)
def test_shape_and_structure_knobs_stay_in_the_static_key(other):
    assert lift(other)[0] != lift(_deepsurv())[0]


def test_scaffold_keeps_its_learning_rate_static_and_savae_traces_beta():
    scaffold = AlgorithmSpec(
        "scaffold", "coxph", CoxPHConfig(), 7, client=ClientConfig(optimizer="sgd", learning_rate=0.05)
    )
    skeleton, hp = lift(scaffold)
    assert "client.learning_rate" not in hp and skeleton.client.learning_rate == 0.05
    assert "client.local_epochs" not in hp and skeleton.client.local_epochs == 5
    _, hp = lift(AlgorithmSpec("fedavg", "savae", SAVAEConfig(beta=0.7), 7))
    assert hp["model.beta"] == np.float32(0.7) and hp["model.dropout"] == traced_rate(0.1)


def _compiled_in(spec: AlgorithmSpec, state, train, rng):
    """The round as it was compiled before: the whole spec static, knobs as constants."""
    return jax.jit(federated_round.__wrapped__, static_argnames=("spec",))(spec, state, train, rng)


def _two_rounds(round_fn, spec, train, init):
    state = build_algorithm(spec).init(init, 3)
    for r in range(2):
        state, _ = round_fn(spec, state, train, jax.random.key(r))
    return state


def _equal(a, b) -> bool:
    return all(
        bool(jnp.array_equal(x, y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def test_two_learning_rates_reuse_one_compiled_round_and_equal_compiled_in_runs(data3):
    """Linear Cox; learning rate, L2, local steps varied: one trace, the old program's numbers exactly."""
    train = jax.tree.map(jnp.asarray, data3.train)
    specs = [
        AlgorithmSpec(
            "fedavg",
            "coxph",
            CoxPHConfig(l2=l2),
            data3.num_features,
            ClientConfig(learning_rate=lr, local_epochs=epochs),
        )
        for lr, l2, epochs in ((1e-3, 1e-3, 2), (7e-3, 0.05, 3))
    ]
    init = build_model(specs[0]).init(jax.random.key(0))
    first = _two_rounds(federated_round, specs[0], train, init)
    traces = TRACE_COUNTS["round"]
    second = _two_rounds(federated_round, specs[1], train, init)
    assert TRACE_COUNTS["round"] == traces  # the second trial traced nothing
    assert not _equal(first.params, second.params)  # the learning rate did reach the program
    # the reused program's numbers are those of the second spec compiled on its own, knobs as constants
    reference = _two_rounds(lambda s, st, tr, rng: _compiled_in(s, st, tr, rng), specs[1], train, init)
    assert _equal(second, reference)


@pytest.mark.slow  # three DeepSurv compilations, ~20 s on two cores
def test_deepsurv_dropout_rates_share_one_round_and_a_reused_round_equals_a_fresh_one(data3):
    """Dropout traced: one compilation for two rates; the reused program gives a fresh program's numbers.

    Against the old compiled-in program the numbers agree to float32 rounding, not bit for bit:
    XLA simplifies a compiled-in scale with its neighbouring constants (measured: ~1e-7 relative).
    """
    train = jax.tree.map(jnp.asarray, data3.train)
    specs = [
        AlgorithmSpec(
            "fedavg",
            "deepsurv",
            DeepSurvConfig(hidden=(8,), dropout=rate, l2=l2),
            data3.num_features,
            ClientConfig(learning_rate=lr, local_epochs=2),
        )
        for rate, l2, lr in ((0.1, 1e-4, 1e-3), (0.4, 1e-2, 5e-3))
    ]
    init = build_model(specs[0]).init(jax.random.key(0))
    _two_rounds(federated_round, specs[0], train, init)
    traces = TRACE_COUNTS["round"]
    reused = _two_rounds(federated_round, specs[1], train, init)
    assert TRACE_COUNTS["round"] == traces
    store = executables.store()  # a fresh trace: neither this process's program nor a stored one
    executables.disable_store()
    try:
        federated_round.clear_cache()
        fresh = _two_rounds(federated_round, specs[1], train, init)
    finally:
        if store is not None:
            executables.enable_store(store)
    assert TRACE_COUNTS["round"] == traces + 1 and _equal(reused, fresh)
    old = _two_rounds(lambda s, st, tr, rng: _compiled_in(s, st, tr, rng), specs[1], train, init)
    for a, b in zip(jax.tree.leaves(reused.params), jax.tree.leaves(old.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
