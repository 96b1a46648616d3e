"""What ``conf/use_case/<name>.yaml`` names: one typed value, also its Hydra schema."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class UseCase:
    """A use case: its guide, where its dataset comes from, and data-side options.

    Registered as the ``use_case`` group's Hydra schema (``use_case_schema``), so a
    misspelt key fails at composition; OmegaConf hands lists, which become tuples here.

    Attributes:
        name: the use case (``mds``, ``aml_beat``, ...).
        guide: ``harmonize/guides/<guide>.yaml``: the one feature schema.
        source: a registered source (``simulated``, ``simulated_dialects``, ``csv``,
            ``iwgpm``, ``beataml``, ...).
        n_patients: simulated sources: patients drawn (real tables have the rows they have).
        dataset: registered dataset name; ``None`` derives it from the use case.
        n_centres: ``simulated_dialects``: centres, each exporting in its own hospital dialect.
        mapping: ``csv``: mapping YAMLs, one per centre.
        reduce: feature group -> principal components kept, fitted federatedly
            (``fedjax_rhd/data/reduce.py``); 0 drops the group.
        treatment: the optional treatment/response layer (MDS, CMML; simulated source).
            Measured after diagnosis, it leaks outcome information into prognostic
            models, so it is off (docs/treatment.md).
    """

    name: str = "mds"
    guide: str = "mds"
    source: str = "simulated"
    n_patients: int = 4427
    dataset: str | None = None
    n_centres: int = 3
    mapping: tuple[str, ...] = ()
    reduce: dict[str, int] = dataclasses.field(default_factory=dict)
    treatment: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "mapping", tuple(str(m) for m in self.mapping))
        object.__setattr__(self, "reduce", {str(g): int(k) for g, k in dict(self.reduce).items()})
        if self.n_patients < 0:
            raise ValueError(f"use_case.n_patients must be >= 0, got {self.n_patients}")
        if self.n_centres < 1:
            raise ValueError(f"use_case.n_centres must be >= 1, got {self.n_centres}")
        for group, k in self.reduce.items():
            if k < 0:
                raise ValueError(f"use_case.reduce.{group} must be >= 0 components, got {k}")

    @property
    def guide_name(self) -> str:
        """The guide to load: ``<guide>+treatment`` when the treatment layer is on."""
        return f"{self.guide}+treatment" if self.treatment else self.guide

    @property
    def reductions(self) -> tuple[tuple[str, int], ...]:
        """``reduce`` as ordered ``(group, components)`` pairs (the data layer's argument)."""
        return tuple(self.reduce.items())

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
