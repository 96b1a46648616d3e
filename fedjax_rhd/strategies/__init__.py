"""Federated strategies: factories returning pure ``FederatedAlgorithm``s."""

from __future__ import annotations

import dataclasses

from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies.client import ClientConfig
from fedjax_rhd.strategies.fedavg import ServerConfig, fedavg, weighted_mean
from fedjax_rhd.strategies.local import centralized, local
from fedjax_rhd.strategies.server_opt import reddi, scale_by_reddi, server_optimizer
from fedjax_rhd.typing import FederatedAlgorithm, SurvivalModel

# FedAvg's algorithm shape with another client objective or server optimiser:
# config of one algorithm, not new classes (ARCHITECTURE §3).
FEDAVG_FAMILY = ("fedavg", "fedprox", "fedavgm", "fedadam", "fedyogi", "fedadagrad")
STRATEGIES = (*FEDAVG_FAMILY, "centralized", "local")
# Named variants fix their server optimiser; plain fedavg accepts any.
NAMED_SERVER_OPTIMIZER = {"fedavgm": "sgd", "fedadam": "adam", "fedyogi": "yogi", "fedadagrad": "adagrad"}


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """Everything that defines a compiled round: hashable, so it is the jit key.

    Two jobs of a multirun with equal specs and equal array shapes reuse one
    compiled executable.
    """

    strategy: str
    model_name: str
    model_config: object  # a frozen model config dataclass, e.g. DeepSurvConfig
    num_features: int
    client: ClientConfig = ClientConfig()
    server: ServerConfig = ServerConfig()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if self.model_name not in MODELS:
            raise ValueError(f"unknown model {self.model_name!r}; expected one of {sorted(MODELS)}")
        if (self.strategy == "fedprox") != (self.client.proximal_mu is not None):
            raise ValueError(
                f"strategy={self.strategy}: client.proximal_mu is FedProx's μ; set it for fedprox only"
            )
        wanted = NAMED_SERVER_OPTIMIZER.get(self.strategy)
        if wanted is not None and self.server.optimizer_name != wanted:
            raise ValueError(
                f"strategy={self.strategy} uses server optimizer {wanted!r}, "
                f"not {self.server.optimizer_name!r} (use strategy=fedavg with server_optimizer to mix)"
            )
        if self.strategy == "fedavgm" and self.server.momentum <= 0:
            raise ValueError("strategy=fedavgm needs strategy.server.momentum > 0")

    @property
    def pooled(self) -> bool:
        return self.strategy == "centralized"


def build_model(spec: AlgorithmSpec) -> SurvivalModel:
    return MODELS[spec.model_name](spec.model_config, spec.num_features)


def build_algorithm(spec: AlgorithmSpec) -> FederatedAlgorithm:
    model = build_model(spec)
    if spec.strategy in FEDAVG_FAMILY:
        return fedavg(model, spec.client, spec.server)
    if spec.strategy == "centralized":
        return centralized(model, spec.client)
    return local(model, spec.client)


__all__ = [
    "FEDAVG_FAMILY",
    "STRATEGIES",
    "AlgorithmSpec",
    "ClientConfig",
    "ServerConfig",
    "build_algorithm",
    "build_model",
    "centralized",
    "fedavg",
    "local",
    "reddi",
    "scale_by_reddi",
    "server_optimizer",
    "weighted_mean",
]
