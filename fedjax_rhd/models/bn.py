"""BN: a discrete Bayesian network over the patient table, survival time and event included.

The study's second synthetic-data generator (a Bayesian network; Koller & Friedman 2009, ch. 17-18
for parameter and structure learning). Every guide feature, the follow-up time and the event are
variables with finite states agreed across nodes (``models.bn_discretise``); the structure comes
from pgmpy's hill climbing with the BIC score under clinical rules and candidate parents
(``models.bn_structure``); the parameters are Dirichlet posteriors of summed family counts, one
posterior draw per synthetic set (``models.bn_params``). A BN is fitted from node statistics,
not gradients: its runs take the ``bn_two_step`` protocol (or ``centralized`` / ``local``),
driven by ``fedjax_rhd.federation.bn_protocol``.

``GenerativeModel.init`` gives an empty parameter tree and ``loss`` is None: there is nothing
to train by gradient. ``sample`` draws states from a fitted network, values within bins, and
returns the guide's schema (``models.tabular.decode_table``).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np
import polars as pl

from fedjax_rhd.models import bn_discretise as disc
from fedjax_rhd.models.bn_params import ancestral_sample
from fedjax_rhd.models.tabular import ColumnSpec, check_schema, decode_table, table_schema
from fedjax_rhd.typing import GenerativeModel, PRNGKey
from harmonize.guide import Guide


@dataclasses.dataclass(frozen=True)
class BNConfig:
    """BN hyperparameters (hashable); ``conf/model/bn.yaml``.

    Attributes:
        bins: quantile bins per continuous variable (fewer where values tie).
        grid_cells: cells of the shared histogram grid every node counts on.
        grid_sd: the grid spans ±``grid_sd`` on a feature's standardised scale.
        tail_count: patients needed below (above) the lower (upper) outer bin edge.
        candidates: k, each variable's top-k mutual-information partners (candidate parents).
        max_indegree: most parents per variable (hill climbing and consensus).
        max_iter: hill-climbing steps at most.
        ess: BDeu equivalent sample size of the Dirichlet prior.
        roots: variables nothing points into (names absent from the guide are skipped).
        hierarchy: variables whose family gets numpyro's hierarchical node model ([]: none).
        hierarchy_warmup, hierarchy_samples: NUTS warm-up and kept draws.
        n_synthetic: rows to sample; 0 = as many as the training patients.
    """

    name: str = "bn"
    bins: int = 5
    grid_cells: int = 1600
    grid_sd: float = 8.0
    tail_count: int = 5
    candidates: int = 8
    max_indegree: int = 3
    max_iter: int = 1000
    ess: float = 5.0
    roots: tuple[str, ...] = ("age", "sex_male", "sex")
    hierarchy: tuple[str, ...] = ("time", "event")
    hierarchy_warmup: int = 300
    hierarchy_samples: int = 300
    n_synthetic: int = 0
    schema: tuple[Any, ...] = ()  # ColumnSpec tuples, filled by ``for_guide`` at the entry point

    def __post_init__(self) -> None:
        object.__setattr__(self, "roots", tuple(self.roots))
        object.__setattr__(self, "hierarchy", tuple(self.hierarchy))
        object.__setattr__(
            self, "schema", tuple(ColumnSpec(*c[:4], tuple(c[4]), *c[5:]) for c in self.schema)
        )
        if self.name != "bn":
            raise ValueError(f"BNConfig is model 'bn', not {self.name!r}")
        checks = {
            "bins": self.bins >= 1, "grid_cells": self.grid_cells >= self.bins, "grid_sd": self.grid_sd > 0,
            "tail_count": self.tail_count >= 1, "candidates": self.candidates >= 1,
            "max_indegree": self.max_indegree >= 1, "max_iter": self.max_iter >= 1, "ess": self.ess > 0,
            "hierarchy_warmup": self.hierarchy_warmup >= 1, "hierarchy_samples": self.hierarchy_samples >= 1,
            "n_synthetic": self.n_synthetic >= 0,
        }  # fmt: skip
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"model.{key}={getattr(self, key)!r} is out of range")

    def for_guide(self, guide: Guide) -> BNConfig:
        """This config with ``guide``'s schema (column kinds, levels, valid ranges).

        Raises:
            ValueError: ``hierarchy`` names a variable the network lacks.
        """
        filled = dataclasses.replace(self, schema=table_schema(guide))
        unknown = [n for n in self.hierarchy if n not in filled.variables().names]
        if unknown:
            raise ValueError(
                f"model.hierarchy names {unknown}, not variables of the network (guide {guide.path} "
                "features, time, event)"
            )
        return filled

    def variables(self) -> disc.Variables:
        """The network's variables: the schema's features, time and event."""
        return disc.variables(self.schema)


def encoded_rows(values: np.ndarray, var: disc.Variables, num_features: int) -> dict[str, np.ndarray]:
    """Values per variable (:func:`bn_discretise.values_in_bins`) as encoded rows, time and event."""
    n = values.shape[0]
    x = np.zeros((n, num_features))
    present = np.ones((n, num_features), bool)
    for j, (kind, start, width) in enumerate(zip(var.kinds, var.starts, var.widths, strict=True)):
        if kind in (disc.TIME, disc.EVENT):
            continue
        missing = np.isnan(values[:, j])
        present[:, start : start + width] = ~missing[:, None]
        v = np.nan_to_num(values[:, j])
        if kind == "categorical":
            x[np.arange(n), start + v.astype(np.int64)] = 1.0
        else:
            x[:, start] = v
    time = np.expm1(values[:, var.names.index(disc.TIME)])
    return {"x": x, "present": present, "time": time, "event": values[:, var.names.index(disc.EVENT)]}


@functools.cache
def bn(config: BNConfig, num_features: int) -> GenerativeModel:
    """Build the BN as a ``GenerativeModel`` (no gradient parameters).

    ``sample(generator, rng, n)`` takes ``generator = {"network": {"adjacency": i8[V, V],
    "cpds": [f64[r_j, q_j]], "states": i64[V]}, "bins": bn_discretise.Bins, "scaling": {"center",
    "scale", "max_time"}}`` (one posterior draw of the CPDs: ``bn_params.draw_cpds``); ``rng`` is a
    JAX key whose data seeds the draw of states and of values within bins.
    """
    if not config.schema:
        raise ValueError("model=bn needs the guide's schema (BNConfig.for_guide)")
    check_schema(config.schema, num_features)
    var = config.variables()

    def init(rng: PRNGKey) -> dict[str, Any]:
        del rng
        return {}

    def sample(generator: dict[str, Any], rng: PRNGKey, n: int) -> pl.DataFrame:
        seed = np.asarray(jax.random.key_data(rng)).astype(np.uint32).tolist()
        draws = np.random.default_rng(seed)
        net = generator["network"]
        states = np.asarray(net["states"], np.int64)
        codes = ancestral_sample(np.asarray(net["adjacency"]), net["cpds"], states, n, draws)
        rows = encoded_rows(disc.values_in_bins(codes, var, generator["bins"], draws), var, num_features)
        scaling = generator.get("scaling") or {}
        center = np.asarray(scaling.get("center", np.zeros(num_features)), np.float64)
        scale = np.asarray(scaling.get("scale", np.ones(num_features)), np.float64)
        return decode_table(
            rows["x"] * scale + center, rows["present"], rows["time"], rows["event"], config.schema,
            time_bounds=(0.0, float(scaling.get("max_time", np.inf))), id_prefix="synthetic",
        )  # fmt: skip

    return GenerativeModel(init=init, loss=None, sample=sample)
