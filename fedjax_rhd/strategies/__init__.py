"""Federated strategies: factories returning pure ``FederatedAlgorithm``s."""

from __future__ import annotations

import dataclasses

from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies.client import ClientConfig
from fedjax_rhd.strategies.fedavg import ServerConfig, fedavg, weighted_mean
from fedjax_rhd.strategies.local import centralized, local
from fedjax_rhd.typing import FederatedAlgorithm, SurvivalModel

STRATEGIES = ("fedavg", "centralized", "local")


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

    @property
    def pooled(self) -> bool:
        return self.strategy == "centralized"


def build_model(spec: AlgorithmSpec) -> SurvivalModel:
    return MODELS[spec.model_name](spec.model_config, spec.num_features)


def build_algorithm(spec: AlgorithmSpec) -> FederatedAlgorithm:
    model = build_model(spec)
    if spec.strategy == "fedavg":
        return fedavg(model, spec.client, spec.server)
    if spec.strategy == "centralized":
        return centralized(model, spec.client)
    return local(model, spec.client)


__all__ = [
    "AlgorithmSpec",
    "ClientConfig",
    "ServerConfig",
    "build_algorithm",
    "build_model",
    "centralized",
    "fedavg",
    "local",
    "weighted_mean",
]
