"""The strategy family and fault settings from config: names map to the right typed objects."""

from __future__ import annotations

import pytest

from fedjax_rhd.config import settings_from_config
from fedjax_rhd.federation.faults import Failures, NodeDown, NodeSlowdown
from fedjax_rhd.federation.participation import Sampling
from tests.conftest import compose


@pytest.mark.parametrize(
    ("strategy", "server", "mu"),
    [
        ("fedavg", "sgd", None),
        ("fedprox", "sgd", 0.01),
        ("fedavgm", "sgd", None),
        ("fedadam", "adam", None),
        ("fedyogi", "yogi", None),
        ("fedadagrad", "adagrad", None),
    ],
)
def test_named_strategies(strategy, server, mu):
    s = settings_from_config(compose([f"strategy={strategy}"]))
    assert s.spec.strategy == strategy
    assert s.spec.server.optimizer_name == server
    assert s.spec.client.proximal_mu == mu
    if strategy == "fedavgm":
        assert s.spec.server.momentum > 0


def test_server_optimizer_override_and_mismatch():
    s = settings_from_config(
        compose(["strategy.server_optimizer=yogi", "strategy.server.learning_rate=0.01"])
    )
    assert (s.spec.strategy, s.spec.server.optimizer_name) == ("fedavg", "yogi")
    with pytest.raises(ValueError, match="fedadam uses server optimizer 'adam', not 'yogi'"):
        settings_from_config(compose(["strategy=fedadam", "strategy.server_optimizer=yogi"]))
    with pytest.raises(ValueError, match="proximal_mu=0.5 applies to strategy=fedprox"):
        settings_from_config(compose(["strategy.client.proximal_mu=0.5"]))


def test_participation_and_faults_from_config():
    s = settings_from_config(
        compose(
            [
                "split=five",
                "strategy.sampling.fraction=0.4",
                "strategy.sampling.min_nodes=2",
                "strategy.min_nodes=2",
                "strategy.accept_failures=false",
                "seed.sample=7",
                "seed.failure=8",
                "backend.failures.probability=0.05",
                "backend.failures.down=[{node: node3, from_round: 4}]",
                "backend.time_limit=2.5",
                "backend.timing.slowdown=[{node: node2, factor: 10.0}]",
            ]
        )
    )
    p, b = s.policy, s.backend
    assert (p.sampling, p.min_nodes, p.accept_failures, s.seed_sample) == (Sampling(0.4, 2), 2, False, 7)
    assert (b.failures, s.seed_failure) == (Failures(0.05, (NodeDown("node3", 4),)), 8)
    assert (b.name, b.time_limit, b.timing.slowdown) == ("simulator", 2.5, (NodeSlowdown("node2", 10.0),))
    hash(s)  # settings stay hashable library objects
    with pytest.raises(ValueError, match="fraction must be in"):
        settings_from_config(compose(["strategy.sampling.fraction=0"]))


def test_resume_key():
    assert settings_from_config(compose()).resume is None
    assert settings_from_config(compose(["resume=/some/run"])).resume == "/some/run"
