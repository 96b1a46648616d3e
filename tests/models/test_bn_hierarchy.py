"""numpyro's hierarchical node model: alike nodes give a large concentration κ, unlike nodes a small one."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rhd.models.bn_hierarchy import node_concentration


@pytest.mark.slow  # three NUTS runs (compiling each): minutes on a shared 2-core machine
def test_kappa_separates_alike_from_unlike_nodes():
    rng = np.random.default_rng(0)
    shared = np.array([[0.7, 0.2], [0.2, 0.3], [0.1, 0.5]])  # f64[r=3, q=2] CPD columns
    alike = [np.stack([rng.multinomial(300, shared[:, c]) for c in range(2)], axis=1) for _ in range(3)]
    unlike = []
    for _ in range(3):  # each node's columns drawn far from the shared ones
        own = rng.dirichlet(np.ones(3) * 0.5, size=2).T
        unlike.append(np.stack([rng.multinomial(300, own[:, c]) for c in range(2)], axis=1))
    a = node_concentration(alike, seed=0, warmup=200, samples=200)
    u = node_concentration(unlike, seed=0, warmup=200, samples=200)
    assert a["columns"] == u["columns"] == 2
    assert a["kappa_median"] > 100 > 10 > u["kappa_median"]
    assert a["node_weight_median"] < 0.75 and u["node_weight_median"] > 0.9
    empty = node_concentration([np.zeros((3, 2))] * 2, seed=0, warmup=5, samples=5)
    assert empty["columns"] == 0 and empty["kappa_median"] is None
