"""FedAvg's variants are presets of one algorithm: each YAML maps to the right typed settings."""

from __future__ import annotations

import pytest

from fedjax_rhd.config import run_config
from tests.conftest import ROOT, compose


@pytest.mark.parametrize(
    ("strategy", "label", "server", "mu"),
    [
        ("fedavg", "FedAvg", "sgd", None),
        ("fedprox", "FedProx", "sgd", 0.01),
        ("fedavgm", "FedAvgM", "sgd", None),
        ("fedadam", "FedAdam", "adam", None),
        ("fedyogi", "FedYogi", "yogi", None),
        ("fedadagrad", "FedAdagrad", "adagrad", None),
    ],
)
def test_fedavg_presets(strategy, label, server, mu):
    s = run_config(compose([f"strategy={strategy}"])).strategy
    assert (s.name, s.label, s.algorithm) == (strategy, label, "fedavg")
    assert s.server.optimizer == server
    assert s.client.proximal_mu == mu
    if strategy == "fedavgm":
        assert s.server.momentum > 0


def test_every_strategy_file_names_a_label_and_a_registered_algorithm():
    for path in sorted((ROOT / "conf" / "strategy").glob("*.yaml")):
        # the Bayesian network's own protocol; synthetic-data sharing needs a generative model
        model = {"bn_two_step": ["model=bn"], "sd_sharing": ["model=vae_bgm"]}.get(path.stem, [])
        s = run_config(compose([f"strategy={path.stem}", *model])).strategy
        assert s.name == path.stem and s.label and s.display_name == s.label


def test_a_variant_is_config_not_code():
    """Any server optimiser or a proximal term on plain fedavg: the same algorithm, other settings."""
    s = run_config(compose(["strategy.server.optimizer=yogi", "strategy.server.learning_rate=0.01"])).strategy
    assert (s.algorithm, s.server.optimizer, s.server.learning_rate) == ("fedavg", "yogi", 0.01)
    s = run_config(compose(["strategy.client.proximal_mu=0.5"])).strategy
    assert (s.algorithm, s.client.proximal_mu) == ("fedavg", 0.5)
    with pytest.raises(ValueError, match="proximal_mu is FedProx"):
        run_config(compose(["strategy=local", "strategy.client.proximal_mu=0.5"])).algorithm_spec(4)
    with pytest.raises(Exception, match="momentum applies to the sgd optimizer"):
        run_config(compose(["strategy=fedadam", "strategy.server.momentum=0.9"]))


def test_sampling_policy_from_config():
    c = run_config(
        compose(
            [
                "split=five",
                "strategy.sampling.fraction=0.4",
                "strategy.sampling.min_nodes=2",
                "strategy.min_nodes=2",
                "strategy.accept_failures=false",
                "seed.sample=7",
            ]
        )
    )
    s = c.strategy
    assert (s.sampling.fraction, s.sampling.min_nodes, s.min_nodes, s.accept_failures) == (0.4, 2, 2, False)
    assert c.seed.sample == 7
    with pytest.raises(Exception, match="fraction must be in"):
        run_config(compose(["strategy.sampling.fraction=0"]))


def test_fault_injection_from_config():
    c = run_config(
        compose(
            [
                "seed.failure=8",
                "backend.failures.probability=0.05",
                "backend.failures.down=[{node: node3, from_round: 4}]",
                "backend.time_limit=2.5",
                "backend.timing.slowdown=[{node: node2, factor: 10.0}]",
            ]
        )
    )
    b = c.backend
    assert b.failures.probability == 0.05 and c.seed.failure == 8
    assert [(d.node, d.from_round) for d in b.failures.down] == [("node3", 4)]
    assert b.time_limit == 2.5 and [(d.node, d.factor) for d in b.timing.slowdown] == [("node2", 10.0)]
