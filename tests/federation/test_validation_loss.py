"""What validation reads (round selection, per-node early stopping, the tuner's objective): the survival
term alone (issue 24 item 6), the same in both backends.

Invariants: a Cox model's validation loss does not move with its L2 weight and equals its whole loss at
L2 = 0; SAVAE's is the Weibull time term, untouched by beta (the KL weight); a generative model's is
its whole loss. The simulator's stacked ``node_losses`` equals a Flower node's ``node_val_loss``.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest

from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.federation.node_tasks import node_val_loss, validation_loss
from fedjax_rhd.federation.simulator import node_losses
from fedjax_rhd.models import CoxPHConfig, DeepSurvConfig, SAVAEConfig
from fedjax_rhd.strategies import AlgorithmSpec, build_model

D = 6


def _rows(seed: int, n: int = 40):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    observed = rng.random((n, D)) > 0.1
    time = rng.exponential(2.0, n).astype(np.float32) + 0.01
    event = (rng.random(n) < 0.6).astype(np.float32)
    return make_node_data(np.where(observed, x, 0.0), observed, time, event)


def _nonzero(params):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(9), len(leaves))
    return jax.tree.unflatten(
        tree, [x + 0.3 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys, strict=True)]
    )


def _spec(model: str, config) -> AlgorithmSpec:
    return AlgorithmSpec("fedavg", model, config, D)


@pytest.mark.parametrize(
    ("model", "penalised", "plain"),
    [
        ("coxph", CoxPHConfig(l2=0.5), CoxPHConfig(l2=0.0)),
        ("deepsurv", DeepSurvConfig(hidden=(8,), dropout=0.0, l2=0.5),
         DeepSurvConfig(hidden=(8,), dropout=0.0, l2=0.0)),
    ],
)  # fmt: skip
def test_a_cox_models_validation_loss_leaves_out_the_l2_penalty(model, penalised, plain):
    rows = _rows(0)
    spec, spec0 = _spec(model, penalised), _spec(model, plain)
    params = _nonzero(build_model(spec).init(jax.random.key(1)))  # linear Cox starts at 0: no penalty
    whole, aux = build_model(spec).loss(params, rows, None)
    assert float(whole) > float(aux["cox"]) + 1e-4  # the penalty is there in training
    ours = float(validation_loss(spec, params, rows))
    assert ours == float(aux["cox"]) == float(validation_loss(spec0, params, rows))
    assert ours == pytest.approx(float(build_model(spec0).loss(params, rows, None)[0]), rel=1e-6)


def test_savae_is_validated_on_its_time_term_alone():
    rows = _rows(1)
    spec = _spec("savae", SAVAEConfig(latent_dim=3, hidden=(8,), beta=1.0))
    params = build_model(spec).init(jax.random.key(2))
    whole, terms = build_model(spec).loss(params, rows, None)
    ours = float(validation_loss(spec, params, rows))
    assert ours == float(terms["time"]) and ours != pytest.approx(float(whole))
    other_beta = _spec("savae", SAVAEConfig(latent_dim=3, hidden=(8,), beta=0.1))
    assert float(validation_loss(other_beta, params, rows)) == ours


def test_the_simulator_and_a_flower_node_read_the_same_loss():
    spec = _spec("coxph", CoxPHConfig(l2=0.3))
    params = build_model(spec).init(jax.random.key(3))
    parts = [_rows(s) for s in (4, 5)]
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *parts)
    held = jax.tree.map(lambda leaf: np.stack([leaf, leaf + 0.1]), params)
    sim = np.asarray(node_losses(spec, held, stacked))
    flower = [
        float(node_val_loss(spec, jax.tree.map(lambda leaf, k=k: leaf[k], held), parts[k])) for k in (0, 1)
    ]
    np.testing.assert_array_equal(sim, np.asarray(flower, dtype=np.float32))
