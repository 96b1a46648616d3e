"""INTERIM (replaced when the backend seam lands): the simulator's config as a frozen schema."""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple


@dataclasses.dataclass(frozen=True)
class NodeDown:
    node: str = ""
    from_round: int = 1


@dataclasses.dataclass(frozen=True)
class Failures:
    probability: float = 0.0
    down: list[NodeDown] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "down", tuple(d if isinstance(d, NodeDown) else NodeDown(**d) for d in self.down)
        )


@dataclasses.dataclass(frozen=True)
class NodeSlowdown:
    node: str = ""
    factor: float = 1.0


@dataclasses.dataclass(frozen=True)
class Timing:
    seconds_per_row: float = 1e-3
    jitter: float = 0.0
    slowdown: list[NodeSlowdown] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "slowdown",
            tuple(d if isinstance(d, NodeSlowdown) else NodeSlowdown(**d) for d in self.slowdown),
        )


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    name: str = "simulator"
    failures: Failures = dataclasses.field(default_factory=Failures)
    time_limit: float | None = None
    timing: Timing = dataclasses.field(default_factory=Timing)


class BackendEntry(NamedTuple):
    config: type
    build: Any = None


BACKENDS = {"simulator": BackendEntry(SimulatorConfig)}
