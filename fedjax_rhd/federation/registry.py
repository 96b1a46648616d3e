"""``backend=<name>``: the registered backends, their config schemas and factories.

``BACKENDS`` maps each name to a ``BackendEntry``: the backend's frozen config
dataclass (also its Hydra schema, registered by the config layer) and the
factory ``make_backend`` calls. A new backend (Flower) adds one entry here.
"""

from __future__ import annotations

from fedjax_rhd.data.federated import FederatedData
from fedjax_rhd.federation.backend import Backend, BackendConfig, BackendEntry
from fedjax_rhd.federation.flower.config import FlowerConfig
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig
from fedjax_rhd.strategies import AlgorithmSpec


def _flower_backend(
    config: FlowerConfig, data: FederatedData, spec: AlgorithmSpec, *, seed_failure: int = 0
) -> Backend:
    """``FlowerBackend(...)``, its module (and so flwr) imported only when a run asks for Flower."""
    from fedjax_rhd.federation.flower.backend import FlowerBackend

    return FlowerBackend(config, data, spec, seed_failure=seed_failure)


BACKENDS: dict[str, BackendEntry] = {
    "simulator": BackendEntry(config=SimulatorConfig, factory=SimulatorBackend),
    # flwr (and Ray, in simulation) are imported when a FlowerBackend is made, not here
    "flower": BackendEntry(config=FlowerConfig, factory=_flower_backend),
}


def backend_entry(name: str) -> BackendEntry:
    """The entry registered as ``name``.

    Raises:
        ValueError: no backend of that name; the message lists the known ones.
    """
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"backend={name!r}: unknown backend; known backends: {sorted(BACKENDS)}") from None


def make_backend(
    config: str | BackendConfig, data: FederatedData, spec: AlgorithmSpec, *, seed_failure: int = 0
) -> Backend:
    """Build the backend that ``config`` (or a bare name, with its default config) names.

    Args:
        config: a registered backend's config (e.g. ``SimulatorConfig``) or its name.
        data: the federation's nodes and the benchmark test set.
        spec: the algorithm (``num_features`` filled in).
        seed_failure: ``seed.failure``: the backend's injected faults (ignored by backends without).

    Raises:
        ValueError: unknown backend name, or a node named in the config that the federation lacks.
        TypeError: ``config`` is not the config type registered under its name.
    """
    name = config if isinstance(config, str) else config.name
    entry = backend_entry(name)
    if isinstance(config, str):
        config = entry.config()
    elif not isinstance(config, entry.config):
        raise TypeError(f"backend={name!r} takes a {entry.config.__name__}, got a {type(config).__name__}")
    return entry.factory(config, data, spec, seed_failure=seed_failure)
