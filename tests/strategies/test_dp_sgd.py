"""Record-level DP-SGD inside each node (strategies/dp_sgd.py, strategies/client.py).

Abadi et al., "Deep Learning with Differential Privacy", CCS 2016: per-row clipping, Gaussian
noise N(0, σ²C²) on the sum, the expected batch size as divisor, Poisson sampling; ε by
dp-accounting's RDP accountant.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.models import SAVAEConfig, VAEBGMConfig
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig, StrategyConfig, build_algorithm, build_model
from fedjax_rhd.strategies.dp import global_norm
from fedjax_rhd.strategies.dp_sgd import (
    DPSGDConfig,
    epsilon,
    poisson_mask,
    privacy_summary,
    private_gradient,
)

SAVAE = SAVAEConfig(latent_dim=2, hidden=(8,), dropout=0.0)
HUGE = 1e30  # a clip no gradient reaches


def node_rows(n: int, pad_to: int, seed: int = 0, outlier: bool = False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    if outlier:
        x[0] = 25.0  # row 0's gradient dwarfs the others'
    time = rng.uniform(0.1, 5.0, n)
    return make_node_data(x, np.ones((n, 3), bool), time, rng.random(n) < 0.6, pad_to=pad_to)


@pytest.fixture(scope="module")
def savae_setup():
    model = build_model(AlgorithmSpec("fedavg", "savae", SAVAE, 3))
    params = model.init(jax.random.key(0))

    def row_loss(p, row, key):
        return model.loss(p, row, key)[0]

    return model, params, row_loss


class Knobs(NamedTuple):  # DPSGDConfig's two numbers as traced values: one compilation per test module
    clip: float
    noise_multiplier: float


@functools.partial(jax.jit, static_argnames=("row_loss",))
def _dp_grad(row_loss, params, node, mask, knobs, expected, noise_seed):
    return private_gradient(row_loss, params, node, mask, None, jax.random.key(noise_seed), knobs, expected)


def dp_grad(row_loss, params, node, mask, config, expected, noise_seed=0):
    knobs = Knobs(jnp.float32(config.clip), jnp.float32(config.noise_multiplier))
    return _dp_grad(row_loss, params, node, mask, knobs, jnp.float32(expected), noise_seed)


def test_clipping_bounds_one_rows_influence_on_the_update(savae_setup):
    _, params, row_loss = savae_setup
    node = node_rows(12, pad_to=24, outlier=True)
    clip = 0.1
    config = DPSGDConfig(clip=clip, noise_multiplier=0.0)
    with_row = jnp.where(node.weight > 0, 1.0, 0.0)
    without = with_row.at[0].set(0.0)
    expected = 6.0
    g_with = dp_grad(row_loss, params, node, with_row, config, expected)
    g_without = dp_grad(row_loss, params, node, without, config, expected)
    influence = float(global_norm(jax.tree.map(jnp.subtract, g_with, g_without))) * expected
    # the unclipped row gradient is far above the bound, so the test can fail
    unclipped = DPSGDConfig(clip=HUGE, noise_multiplier=0.0)
    raw = dp_grad(row_loss, params, node, with_row - without, unclipped, 1.0)
    assert float(global_norm(raw)) > 100 * clip  # row 0 alone, unclipped
    assert influence <= clip * (1 + 1e-5)
    assert influence == pytest.approx(clip, rel=1e-4)  # clipped to exactly C, not dropped


# vae_bgm compiles its own model (~6 s on 2 busy cores): in the slow suite
@pytest.mark.parametrize("name", ["savae", pytest.param("vae_bgm", marks=pytest.mark.slow)])
def test_without_noise_or_clipping_it_is_the_plain_gradient_on_the_sampled_rows(savae_setup, name):
    model, params, row_loss = savae_setup
    if name == "vae_bgm":  # the generative model's loss is row-separable too
        model = build_model(AlgorithmSpec("fedavg", "vae_bgm", VAEBGMConfig(latent_dim=2, hidden=(8,)), 3))
        params = model.init(jax.random.key(0))

        def row_loss(p, row, key):
            return model.loss(p, row, key)[0]

    node = node_rows(20, pad_to=24)
    mask = jax.jit(poisson_mask, static_argnums=2)(node, jax.random.key(3), 8)
    m = float(mask.sum())
    assert 0 < m < 20 and float(mask[20:].sum()) == 0  # a proper subset, never padding
    ours = dp_grad(row_loss, params, node, mask, DPSGDConfig(clip=HUGE, noise_multiplier=0.0), 8.0)
    # the model's own batched loss on the sampled rows (a mean over m rows), rescaled to the divisor 8
    plain = jax.jit(jax.grad(lambda p, w: model.loss(p, node._replace(weight=w), None)[0]))(params, mask)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(plain), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b) * m / 8.0, rtol=2e-4, atol=1e-6)


def test_poisson_sampling_rate_is_batch_over_node_rows():
    node = node_rows(200, pad_to=256)
    masks = jax.vmap(lambda k: poisson_mask(node, k, 20))(jax.random.split(jax.random.key(0), 400))
    rate = float(masks[:, :200].mean())
    assert rate == pytest.approx(0.1, abs=0.005)  # sd of the mean ≈ 0.0011
    assert float(masks[:, 200:].sum()) == 0


def test_noise_has_sd_sigma_clip_over_divisor_and_is_seeded(savae_setup):
    _, params, row_loss = savae_setup
    node = node_rows(6, pad_to=24)
    none = jnp.zeros(24)
    config = DPSGDConfig(clip=2.0, noise_multiplier=1.5)
    a = dp_grad(row_loss, params, node, none, config, 4.0, noise_seed=1)
    again = dp_grad(row_loss, params, node, none, config, 4.0, noise_seed=1)
    other = dp_grad(row_loss, params, node, none, config, 4.0, noise_seed=2)
    flat = np.concatenate([np.ravel(v) for v in jax.tree.leaves(a)])
    np.testing.assert_array_equal(flat, np.concatenate([np.ravel(v) for v in jax.tree.leaves(again)]))
    assert not np.allclose(flat, np.concatenate([np.ravel(v) for v in jax.tree.leaves(other)]))
    assert flat.size > 200
    assert np.std(flat) == pytest.approx(1.5 * 2.0 / 4.0, rel=0.15)  # 3 sd of the estimate


def savae_spec(dp_sgd, batch_size=8, algorithm="fedavg", model="savae", model_config=SAVAE):
    client = ClientConfig(
        optimizer="sgd", learning_rate=0.05, batch_size=batch_size, local_steps=1, dp_sgd=dp_sgd
    )
    return AlgorithmSpec(algorithm, model, model_config, 3, client)


# compiles a whole DP-SGD local update (~5 s on 2 busy cores); the noise test covers seeding
@pytest.mark.slow
def test_client_update_is_reproducible_per_key_and_noise_changes_with_it():
    spec = savae_spec(DPSGDConfig(clip=1.0, noise_multiplier=1.0))
    algo = build_algorithm(spec)
    params = build_model(spec).init(jax.random.key(0))
    node = node_rows(20, pad_to=24)
    update = jax.jit(algo.client_update)
    first = update(params, node, jax.random.key(5)).params
    same = update(params, node, jax.random.key(5)).params
    other = update(params, node, jax.random.key(6)).params
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(same), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert float(global_norm(jax.tree.map(jnp.subtract, first, other))) > 1e-3


def test_epsilon_equals_dp_accounting_for_a_known_configuration():
    import dp_accounting
    from dp_accounting import rdp

    # σ 1.1, q = 32/400, 3 steps × 40 rounds, δ 1e-5 (a node of 400 rows, batch 32)
    acc = rdp.RdpAccountant(neighboring_relation=dp_accounting.NeighboringRelation.ADD_OR_REMOVE_ONE)
    event = dp_accounting.PoissonSampledDpEvent(0.08, dp_accounting.GaussianDpEvent(1.1))
    acc.compose(event, 120)
    reference = acc.get_epsilon(1e-5)
    assert epsilon(1.1, 0.08, 120, 1e-5) == pytest.approx(reference, rel=1e-6)  # one event ×120 vs 120 events
    # amplification by sampling: far below the same steps of the unsampled Gaussian
    assert 1 < reference < 0.2 * epsilon(1.1, 1.0, 120, 1e-5)
    summary = privacy_summary(DPSGDConfig(1.0, 1.1, 1e-5), 32, 3, 40, [("big", 400), ("small", 100)])
    small = summary["nodes"][1]
    assert small["sampling_rate"] == pytest.approx(0.32)
    assert summary["epsilon_rdp"] == small["epsilon_rdp"] > summary["nodes"][0]["epsilon_rdp"]
    assert summary["nodes"][0]["epsilon_rdp"] == pytest.approx(reference, rel=1e-6)


@pytest.mark.parametrize("model", ["deepsurv", "coxph"])
def test_cox_models_are_refused_naming_their_risk_sets(model):
    from fedjax_rhd.models import MODELS

    config = MODELS[model].config()
    with pytest.raises(ValueError, match="risk sets couple rows"):
        savae_spec(DPSGDConfig(clip=1.0), model=model, model_config=config)
    savae_spec(DPSGDConfig(), model=model, model_config=config)  # clip null: DP-SGD off, the model trains


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="strategy.client.batch_size"):
        ClientConfig(dp_sgd=DPSGDConfig(clip=1.0))
    with pytest.raises(ValueError, match="dp_sgd.clip"):
        DPSGDConfig(clip=0.0)
    with pytest.raises(ValueError, match="finetune_epochs"):
        StrategyConfig(client=ClientConfig(batch_size=8, dp_sgd=DPSGDConfig(clip=1.0)), finetune_epochs=2)
    # the JSON a Flower node receives rebuilds the nested config
    assert ClientConfig(batch_size=8, dp_sgd=dataclasses.asdict(DPSGDConfig(clip=0.3))).dp_sgd.clip == 0.3


def test_summary_block_matches_the_results_schema_and_survives_the_flower_spec_message():
    import jsonschema

    from fedjax_rhd.federation.flower.protocol import spec_from_json, spec_to_json
    from fedjax_rhd.results import SCHEMA_PATH

    summary = privacy_summary(DPSGDConfig(1.0, 0.9, 1e-5), 16, 2, 5, [("a", 40), ("b", 10)])
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.validate(summary, {**schema["$defs"]["dp_sgd"], "$defs": schema["$defs"]})
    assert summary["nodes"][1]["sampling_rate"] == 1.0  # a node smaller than the batch: every row, every step
    no_noise = privacy_summary(DPSGDConfig(1.0, 0.0, 1e-5), 16, 2, 5, [("a", 40)])
    assert no_noise["epsilon_rdp"] is None  # σ = 0: no guarantee (JSON has no infinity)
    spec = savae_spec(DPSGDConfig(clip=0.7, noise_multiplier=1.3, delta=1e-6))
    assert spec_from_json(spec_to_json(spec)) == spec  # a Flower node runs the same DP-SGD


# Both backends run DP-SGD in the shared client update; this checks the two call paths give the same bits:
# the simulator's vmapped round over stacked nodes, and a Flower node's own spec-jitted ``node_update``.
@pytest.mark.slow
def test_simulator_round_and_a_flower_nodes_update_draw_the_same_noise_and_clipping():
    from fedjax_rhd.federation.node_tasks import node_update
    from fedjax_rhd.federation.simulator import federated_round

    spec = savae_spec(DPSGDConfig(clip=1.0, noise_multiplier=1.0))
    algorithm = build_algorithm(spec)
    params = build_model(spec).init(jax.random.key(0))
    nodes = [node_rows(20, pad_to=32, seed=1), node_rows(28, pad_to=32, seed=2)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *nodes)
    key = jax.random.key(11)
    _, results = federated_round(spec, algorithm.init(params, 2), stacked, key)
    for k, node in enumerate(nodes):
        mine = node_update(spec, params, node, jax.random.fold_in(key, k))  # what node k's ClientApp runs
        theirs = jax.tree.map(lambda leaf, k=k: leaf[k], results.params)
        for a, b in zip(jax.tree.leaves(mine.params), jax.tree.leaves(theirs), strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
