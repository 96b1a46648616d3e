"""Data-availability scenarios: which node lacks which feature layers.

The study's ``best`` scenario gives every node every feature; ``worst`` has
nodes that never measured whole layers (no gene panel, no cytogenetics) plus
extra random missingness. Scenarios are declared by node *rank* (1 = largest
node, -1 = smallest) so one declaration applies to any split. Missingness is
applied to a node's own training and validation rows before any statistic is
computed, and only ever surfaces as ``observed == False``: nothing is imputed
from other nodes' rows (imputation uses the federated medians).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import polars as pl

from harmonize.guide import GROUPS, Guide


@dataclasses.dataclass(frozen=True)
class ScenarioSpec:
    """A scenario: ``conf/scenario/<name>.yaml`` (this class is the group's Hydra schema).

    Attributes:
        name: ``best`` or ``worst`` (or a user's own name).
        missing_groups: node rank -> feature groups that node never measured; rank
            ``"1"`` is the largest node, ``"-1"`` the smallest; a rank beyond the split's
            size is ignored. Pairs ``((rank, (group, ...)), ...)`` are accepted too.
        extra_missing: probability that any single feature value of a node row
            is additionally unobserved (ignored by ``best``-like scenarios at 0).
    """

    name: str = "best"
    missing_groups: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    extra_missing: float = 0.0

    def __post_init__(self) -> None:
        given = self.missing_groups
        pairs = given.items() if isinstance(given, dict) else given
        object.__setattr__(
            self, "missing_groups", {str(int(rank)): tuple(str(g) for g in groups) for rank, groups in pairs}
        )
        if not 0.0 <= self.extra_missing < 1.0:
            raise ValueError(
                f"scenario {self.name!r}: extra_missing must be in [0, 1), got {self.extra_missing}"
            )
        for rank, groups in self.missing_groups.items():
            if int(rank) == 0:
                raise ValueError(
                    f"scenario {self.name!r}: node ranks start at 1 (largest) or -1 (smallest), got 0"
                )
            unknown = set(groups) - set(GROUPS)
            if unknown:
                raise ValueError(
                    f"scenario {self.name!r}: unknown feature group(s) {sorted(unknown)}; known {GROUPS}"
                )

    def groups_missing_at(self, node_index: int, num_nodes: int) -> tuple[str, ...]:
        """Groups node ``node_index`` (0 = largest) lacks in a split of ``num_nodes``."""
        missing: list[str] = []
        for key, groups in self.missing_groups.items():
            rank = int(key)
            index = rank - 1 if rank > 0 else num_nodes + rank
            if index == node_index and 0 <= index < num_nodes:
                missing.extend(groups)
        return tuple(dict.fromkeys(missing))


def apply_scenario(
    frames: Sequence[pl.DataFrame], guide: Guide, scenario: ScenarioSpec, rng: np.random.Generator
) -> tuple[list[pl.DataFrame], list[dict]]:
    """Blank out the scenario's missing layers and extra missingness per node.

    Args:
        frames: one frame per node (training and validation rows together), largest first.
        guide: the use case's guide (feature groups).
        scenario: what to remove.
        rng: the scenario's own random stream.

    Returns:
        The degraded frames and, per node, a record of what was removed (for results.json).
    """
    out: list[pl.DataFrame] = []
    records: list[dict] = []
    for k, frame in enumerate(frames):
        groups = scenario.groups_missing_at(k, len(frames))
        dropped = [f.name for f in guide.features if f.group in groups]
        frame = frame.with_columns([pl.lit(None, dtype=frame.schema[name]).alias(name) for name in dropped])
        blanked = 0
        if scenario.extra_missing > 0:
            keep = [f.name for f in guide.features if f.name not in dropped]
            masks = rng.random((len(frame), len(keep))) < scenario.extra_missing
            blanked = int((masks & frame.select(keep).with_columns(pl.all().is_not_null()).to_numpy()).sum())
            frame = frame.with_columns(
                [
                    pl.when(pl.Series(masks[:, j])).then(None).otherwise(pl.col(name)).alias(name)
                    for j, name in enumerate(keep)
                ]
            )
        out.append(frame)
        records.append(
            {"missing_groups": list(groups), "features_removed": dropped, "values_blanked": blanked}
        )
    return out, records


BEST = ScenarioSpec()  # every node has every feature
