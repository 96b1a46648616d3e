"""The model and strategy contracts, for every registered model × every strategy preset.

A new model (its file + a ``MODELS`` line + ``conf/model/<name>.yaml``), a new algorithm
(an ``ALGORITHMS`` line) or a new strategy preset (``conf/strategy/<name>.yaml``) is covered
here without writing a test: one jitted round on a two-node toy federation, then shapes,
finiteness and the personalised axis. Every model runs under every algorithm; the FedAvg
presets (other server optimisers, a proximal term) run with the linear Cox model, as each
compiled round costs seconds; they and the ``centralized`` cases run in the slow suite (``-m slow``).
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.config import run_config
from fedjax_rhd.data import SplitSpec, build_federated_data
from fedjax_rhd.metrics.synthetic import impossible_values
from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies import ALGORITHMS, build_algorithm, build_model
from fedjax_rhd.typing import GenerativeModel
from tests.conftest import ROOT, compose

PRESETS = sorted(p.stem for p in (Path(ROOT) / "conf" / "strategy").glob("*.yaml"))
# One preset file per algorithm (its name), every model; the other presets (they change only the
# server optimiser or the client objective) with the linear Cox model, the cheapest round to compile,
# in the slow suite: the default suite runs their algorithm's round here (the fedavg cases), checks
# each preset's settings (tests/strategies/test_strategy_configs.py) and each server optimiser and the
# proximal step by hand, jitted (tests/strategies/test_server_optimizers.py).
# ``centralized`` is ``local`` on one pooled node (fedjax_rhd/strategies/local.py): its cases are slow too;
# the default suite runs every model under ``local`` here and DeepSurv ``centralized`` end to end
# (tests/report/test_report_end_to_end.py).
# A generative model's round compiles for ~20 s: its default-suite case is the end-to-end FedAvg run
# (tests/e2e/test_generative_end_to_end.py, which samples and validates too); here it runs in the slow suite.
# A model fitted from node counts (the Bayesian network) has no gradient round, and ``bn_two_step``
# is its protocol, not a round: their contract is tests/federation/test_bn_protocol.py and
# tests/e2e/test_bn_end_to_end.py.
# SAVAE's round compiles for ~10-20 s per algorithm: the default suite runs it under FedAvg (and its
# Flower/simulator equality and end-to-end cases elsewhere); its other algorithms run in the slow suite,
# as every algorithm runs here with DeepSurv and the linear Cox model.
_SLOW_MODEL_ALGORITHMS = {("savae", "local"), ("savae", "scaffold")}


def _slow(model: str, algorithm: str) -> bool:
    return (
        algorithm == "centralized" or MODELS[model].generative or (model, algorithm) in _SLOW_MODEL_ALGORITHMS
    )


CASES = [
    pytest.param(m, a, marks=pytest.mark.slow) if _slow(m, a) else (m, a)
    for m in sorted(MODELS)
    if not MODELS[m].from_counts
    for a in sorted(ALGORITHMS)
    if not (MODELS[m].own_step and a == "scaffold")  # refused at configuration (its own local step)
    if a not in ("bn_two_step", "sd_sharing")  # sd_sharing trains with local's round (its cases here)
] + [pytest.param("coxph", p, marks=pytest.mark.slow) for p in PRESETS if p not in ALGORITHMS]


@pytest.fixture(scope="module")
def toy(small_cohort, mds_guide):
    """Two nodes (70/30) of 800 simulated patients; a third of them kept to stay quick."""
    df, _ = small_cohort
    split = SplitSpec(name="toy", fractions=(0.7, 0.3), seed=0)
    return {
        algorithm: build_federated_data(df.head(300), mds_guide, split, pooled=algorithm == "centralized")
        for algorithm in ("fedavg", "centralized", "local", "scaffold")
    }


@jax.jit
def _finite(tree: object) -> jax.Array:
    return jnp.all(jnp.array([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _round(spec, data):
    algorithm, model = build_algorithm(spec), build_model(spec)
    train = jax.tree.map(jnp.asarray, data.train)
    num_nodes = train.x.shape[0]
    init = model.init(jax.random.key(0))
    state = algorithm.init(init, num_nodes)

    @jax.jit
    def one_round(state, train, rng):
        keys = jax.random.split(rng, num_nodes)
        axis = 0 if algorithm.personalized else None
        if algorithm.node_inputs is None:  # the backends hand node k its slice of node_inputs
            results = jax.vmap(algorithm.client_update, in_axes=(axis, 0, 0))(state.params, train, keys)
        else:
            inputs = algorithm.node_inputs(state)
            update = jax.vmap(algorithm.client_update, in_axes=(axis, 0, 0, 0))
            results = update(state.params, train, keys, inputs)
        return algorithm.aggregate(state, results, results.num_examples, jax.random.key(2)), results

    new_state, results = one_round(state, train, jax.random.key(1))
    return init, state, new_state, results, model


def test_every_algorithm_has_a_preset_of_its_name():
    assert set(ALGORITHMS) <= set(PRESETS)


@pytest.mark.parametrize(("model_name", "strategy"), CASES)
def test_one_jitted_round_keeps_the_contract(toy, model_name, strategy):
    overrides = [f"model={model_name}", f"strategy={strategy}"]
    if (model_name, strategy) == ("savae", "scaffold"):
        # plain SGD's step is scale-dependent: SAVAE's ELBO has ~100x DeepSurv's gradient norm
        overrides.append("strategy.client.learning_rate=0.001")
    config = run_config(compose(overrides))
    data = toy[config.strategy.algorithm]
    spec = config.algorithm_spec(data.num_features, data.guide)
    init, state, new_state, results, model = _round(spec, data)
    k = data.num_nodes
    assert k == (1 if spec.pooled else 2)
    personalized = build_algorithm(spec).personalized
    assert personalized == (
        config.strategy.algorithm in ("local", "centralized")
    )  # centralized: local on one pooled node

    # Server parameters: the model's shapes, with a leading node axis when personalised.
    def expected(leaf):
        return (k, *leaf.shape) if personalized else leaf.shape

    assert jax.tree.structure(new_state.params) == jax.tree.structure(state.params)
    for leaf, new in zip(jax.tree.leaves(init), jax.tree.leaves(new_state.params), strict=True):
        assert new.shape == expected(leaf) and new.dtype == leaf.dtype
    # Client results: one parameter set per node, patients per node, a finite training loss.
    for leaf, client in zip(jax.tree.leaves(init), jax.tree.leaves(results.params), strict=True):
        assert client.shape == (k, *leaf.shape)
    np.testing.assert_array_equal(np.asarray(results.num_examples), np.asarray(data.n_train, np.float32))
    assert np.asarray(results.metrics["train_loss"]).shape == (k,)
    assert bool(_finite((new_state.params, results.params, results.metrics)))
    assert int(new_state.round) == int(state.round) + 1
    # The round moved the parameters (a strategy that returns its input is broken).
    assert any(
        not np.array_equal(np.asarray(a), np.asarray(b))
        for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(new_state.params), strict=True)
    )
    # The model's functions on the trained parameters: a finite evaluation loss; then a survival
    # model's risk per row, or a generative model's samples in the guide's schema (§6).
    params = jax.tree.map(lambda p: p[0], new_state.params) if personalized else new_state.params
    node = jax.tree.map(lambda a: jnp.asarray(a)[0], data.val)
    loss, _ = model.loss(params, node, None)
    assert loss.shape == () and bool(jnp.isfinite(loss))
    if isinstance(model, GenerativeModel):
        table = model.sample({"network": params}, jax.random.key(2), 16)  # the VAE's own N(0, I) prior
        assert table.height == 16 and impossible_values(table, data.guide)["total"] == 0
        return
    risk = model.risk(params, jnp.asarray(data.test.x), jnp.asarray(data.test.observed))
    assert risk.shape == (data.test.x.shape[0],) and bool(jnp.all(jnp.isfinite(risk)))
    if model.survival is not None:
        times = jnp.array([0.5, 1.0, 2.0], jnp.float32)
        surv = model.survival(params, jnp.asarray(data.test.x), jnp.asarray(data.test.observed), times)
        assert surv.shape == (data.test.x.shape[0], 3)
        assert bool(jnp.all((surv >= 0) & (surv <= 1))) and bool(jnp.all(jnp.diff(surv, axis=1) <= 1e-6))


def test_the_results_schema_is_a_valid_json_schema_and_its_validator_refuses_a_bad_run():
    """Runs validate against the committed schema without re-checking it (fedjax_rhd.results): here it is."""
    import json

    import jsonschema

    from fedjax_rhd.results import SCHEMA_PATH, validate_results

    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validators.validator_for(schema).check_schema(schema)  # raises SchemaError on a broken schema
    with pytest.raises(jsonschema.ValidationError):
        validate_results({"config": {}})  # misses every other required block
