"""Federated strategies: factories returning pure ``FederatedAlgorithm``s."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax

from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies.bn_two_step import bn_two_step
from fedjax_rhd.strategies.client import ClientConfig
from fedjax_rhd.strategies.config import StrategyConfig
from fedjax_rhd.strategies.dp import DPConfig
from fedjax_rhd.strategies.fedavg import ServerConfig, fedavg, weighted_mean
from fedjax_rhd.strategies.local import centralized, local
from fedjax_rhd.strategies.scaffold import ScaffoldControls, scaffold
from fedjax_rhd.strategies.server_opt import reddi, scale_by_reddi, server_optimizer
from fedjax_rhd.strategies.traced import spec_jit
from fedjax_rhd.typing import FederatedAlgorithm, ServerState, SurvivalModel

ALGORITHMS: dict[str, Callable[..., FederatedAlgorithm]] = {
    "fedavg": fedavg,  # and every FedAvg preset: FedProx, FedAvgM, FedAdam, FedYogi, FedAdagrad, DP-FedAvg
    "centralized": lambda model, client, server, dp: centralized(model, client),
    "local": lambda model, client, server, dp: local(model, client),
    "scaffold": lambda model, client, server, dp: scaffold(model, client, server),
    "bn_two_step": lambda model, client, server, dp: bn_two_step(),  # node statistics, no gradients
    # synthetic-data sharing: each node trains alone (local's rounds), then sends gated synthetic rows
    # (fedjax_rhd/sd_sharing.py)
    "sd_sharing": lambda model, client, server, dp: local(model, client),
}
"""Algorithm name -> factory. A new algorithm is its file plus one line here."""

COUNT_ALGORITHMS = ("bn_two_step", "centralized", "local", "sd_sharing")
"""What a model fitted from node counts (``ModelEntry.from_counts``) runs under."""


@dataclasses.dataclass(frozen=True)
class AlgorithmSpec:
    """Everything that defines a run's algorithm: hashable; its skeleton is the jit key.

    The jitted functions (``strategies/traced.py``'s ``spec_jit``) take the spec's
    continuous knobs (client learning rate, the model's ``ModelEntry.traced`` fields)
    as traced values and the rest as the static key, so two jobs or search trials
    differing only in those knobs, with equal array shapes, reuse one compiled executable.
    """

    algorithm: str
    model_name: str
    model_config: object  # a frozen model config dataclass, e.g. DeepSurvConfig
    num_features: int
    client: ClientConfig = ClientConfig()
    server: ServerConfig = ServerConfig()
    dp: DPConfig = DPConfig()

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unknown algorithm {self.algorithm!r}; expected one of {sorted(ALGORITHMS)}")
        if self.model_name not in MODELS:
            raise ValueError(f"unknown model {self.model_name!r}; expected one of {sorted(MODELS)}")
        if self.algorithm != "fedavg" and self.client.proximal_mu is not None:
            raise ValueError(
                f"client.proximal_mu is FedProx's μ (algorithm fedavg), not for {self.algorithm}"
            )
        from_counts = MODELS[self.model_name].from_counts
        if from_counts and self.algorithm not in COUNT_ALGORITHMS:
            raise ValueError(
                f"model={self.model_name} is fitted from node counts, not gradients: use strategy "
                f"bn_two_step, centralized, local or sd_sharing (algorithm one of {COUNT_ALGORITHMS}), "
                f"not {self.algorithm!r}"
            )
        if self.algorithm == "bn_two_step" and not from_counts:
            raise ValueError(
                f"strategy bn_two_step fits a Bayesian network: use model=bn, not {self.model_name!r}"
            )
        if self.algorithm != "fedavg" and self.dp.enabled:
            raise ValueError(
                f"strategy.dp is client-level DP-FedAvg (algorithm fedavg); {self.algorithm} shares no "
                "aggregate to protect"
            )
        if MODELS[self.model_name].own_step and (
            self.algorithm == "scaffold" or self.client.proximal_mu is not None or self.client.dp_sgd.enabled
        ):
            raise ValueError(
                f"model={self.model_name} trains with its own local step (a GAN's critic and generator "
                "updates): FedProx's proximal term, SCAFFOLD's correction and DP-SGD change the gradient "
                "of one loss and do not apply; use strategy fedavg (or a server-optimiser preset), "
                "centralized or local"
            )
        check_dp_sgd(self.model_name, self.client)

    @property
    def pooled(self) -> bool:
        return self.algorithm == "centralized"


def check_dp_sgd(model_name: str, client: ClientConfig) -> None:
    """Refuse record-level DP-SGD (``client.dp_sgd``) for a model whose loss is not a sum over rows.

    Raises:
        ValueError: naming the key and why (the Cox partial likelihood's risk sets couple rows).
    """
    if client.dp_sgd.enabled and not MODELS[model_name].row_separable:
        raise ValueError(
            f"strategy.client.dp_sgd (record-level DP-SGD) needs a loss that is a sum over rows; "
            f"model={model_name}'s Cox partial likelihood is not: each row's term sums over its "
            "risk set, the other rows still at risk, so risk sets couple rows and one row's gradient "
            "does not bound its influence (use model=savae or vae_bgm, or client-level strategy.dp)"
        )


def build_model(spec: AlgorithmSpec) -> SurvivalModel:
    """The spec's model (its pure functions). A spec bound to traced values
    (``strategies/traced.py``) builds it afresh: a tracer cannot key the factory's cache."""
    factory = MODELS[spec.model_name].factory
    if getattr(spec, "_traced_bound", False):
        factory = getattr(factory, "__wrapped__", factory)
    return factory(spec.model_config, spec.num_features)


def build_algorithm(spec: AlgorithmSpec) -> FederatedAlgorithm:
    return ALGORITHMS[spec.algorithm](build_model(spec), spec.client, spec.server, spec.dp)


def initial_state(spec: AlgorithmSpec, rng: jax.Array, num_nodes: int) -> ServerState:
    """The strategy's initial state on the model initialised from ``rng``.

    Gradient models build it as one compiled (and stored) program: eagerly, a network's
    initialisers were about a dozen separate lowerings in every new process. Models fitted from
    counts build theirs on the host.
    """
    if MODELS[spec.model_name].from_counts:
        return build_algorithm(spec).init(build_model(spec).init(rng), num_nodes)
    return _initial_state(spec, rng, num_nodes)


@spec_jit(static_argnames=("num_nodes",))
def _initial_state(spec: AlgorithmSpec, rng: jax.Array, num_nodes: int) -> ServerState:
    return build_algorithm(spec).init(build_model(spec).init(rng), num_nodes)


__all__ = [
    "ALGORITHMS",
    "StrategyConfig",
    "AlgorithmSpec",
    "ClientConfig",
    "DPConfig",
    "check_dp_sgd",
    "ServerConfig",
    "build_algorithm",
    "build_model",
    "initial_state",
    "centralized",
    "fedavg",
    "local",
    "reddi",
    "scaffold",
    "ScaffoldControls",
    "scale_by_reddi",
    "server_optimizer",
    "weighted_mean",
]
