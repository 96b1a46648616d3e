"""The ``latent_mixture`` node statistic through the simulator backend: each node's reply is its own
rows' sums (padding excluded), and the nodes' sum equals the E-step on the pooled latent means."""

from __future__ import annotations

import jax
import numpy as np

from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.models import VAEBGMConfig, bgm
from fedjax_rhd.strategies import AlgorithmSpec, build_model


def test_nodes_sums_equal_the_pooled_e_step(data3):
    config = VAEBGMConfig(latent_dim=3, hidden=(8,)).for_guide(data3.guide)
    spec = AlgorithmSpec("fedavg", "vae_bgm", config, data3.num_features)
    model = build_model(spec)
    params = model.init(jax.random.key(0))
    rng = np.random.default_rng(0)
    inputs = bgm.gaussian_inputs(rng.normal(size=(4, 3)), np.eye(3) * 0.5)
    message = {**inputs._asdict(), "min_count": np.asarray(0.0)}
    backend = make_backend("simulator", data3, spec)
    replies = backend.node_statistic("latent_mixture", message, params=params)
    backend.close()
    assert len(replies) == data3.num_nodes
    for k, reply in enumerate(replies):  # a node's soft counts add up to its patients
        np.testing.assert_allclose(reply["count"].sum(), data3.n_train[k], rtol=1e-10)
    total = bgm.add_statistics(
        [bgm.SufficientStatistics(r["count"], r["first"], r["second"]) for r in replies]
    )
    pooled = []
    for k in range(data3.num_nodes):  # the latent means, computed here only to check (they never move)
        node = jax.tree.map(lambda a, k=k: np.asarray(a)[k], data3.train)
        pooled.append(
            np.asarray(jax.jit(model.latent)(params, node), np.float64)[np.asarray(node.weight) > 0]
        )
    z = np.concatenate(pooled)
    expected = bgm.node_sufficient_statistics(z, np.ones(len(z)), inputs)
    for got, want in zip(total, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
