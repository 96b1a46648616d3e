"""Shared types: the data that flows between the data layer, models and strategies.

Parameters are plain pytrees (nested dicts of arrays) everywhere; these
containers are NamedTuples so they are pytrees too and pass through ``jit`` and
``vmap`` unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple, Protocol

import jax
import numpy as np

Params = Any  # a pytree of arrays (nested dict), as produced by ``nnx.split``
PRNGKey = jax.Array
Array = jax.Array | np.ndarray


class NodeData(NamedTuple):
    """One node's survival data, ready for a Cox loss without sorting.

    Rows are sorted by descending ``time``; ties keep ``patient_id`` order.
    Padding rows (``weight == 0``) come last so nodes stack to one shape.

    Attributes:
        x: f32[n, d] standardised, imputed features (model input).
        observed: bool[n, d] True where ``x`` holds a measured value.
        time: f32[n] follow-up time in years.
        event: f32[n] 1.0 = death observed, 0.0 = censored (0 on padding).
        weight: f32[n] 1.0 for patients, 0.0 for padding rows.
        risk_set_end: i32[n] index of the last row of this row's tie group; with
            rows sorted by descending time, rows ``0..risk_set_end[i]`` are exactly
            those with ``time >= time[i]`` (Breslow's risk set).
    """

    x: Array
    observed: Array
    time: Array
    event: Array
    weight: Array
    risk_set_end: Array

    @property
    def num_rows(self) -> int:
        return int(self.x.shape[-2])


class ClientResult(NamedTuple):
    """What a node sends back after a round: never patient-level rows."""

    params: Params  # updated parameters (or a strategy's payload)
    num_examples: Array  # f32[] patients that trained (padding excluded)
    metrics: dict[str, Array]  # scalars, e.g. {"loss": f32[]}


class ServerState(NamedTuple):
    """Manager state between rounds."""

    params: Params  # global parameters (stacked per node for ``local``)
    opt_state: Any  # server optimiser state (optax)
    round: Array  # i32[] rounds completed


class SurvivalModel(NamedTuple):
    """A survival model as pure functions over a parameter pytree.

    ``loss`` is the per-node training objective (risk sets stay inside the node);
    ``risk`` is higher for worse prognosis. ``survival`` is ``None`` for Cox-type
    models, whose curves need the federated Breslow baseline
    (``fedjax_rhd.models.cox``); parametric models (SAVAE) give their own.
    """

    init: Any  # (rng) -> Params; the factory already knows the feature count
    loss: Any  # (params, batch: NodeData, rng | None) -> (f32[], aux dict); None = no dropout
    risk: Any  # (params, x: f32[n, d], observed: bool[n, d]) -> f32[n]
    survival: Any = None  # (params, x, observed, times f32[t]) -> f32[n, t] P(T > t), or None


class LocalTraining(NamedTuple):
    """A model's own local step, for objectives one gradient step of one loss cannot express.

    A GAN updates its critic and then its generator, each with its own optimiser
    (``fedjax_rhd.models.ctgan``); the client runs ``step`` in place of
    ``optimizer.update(grad(loss))`` for each of its local steps, with a fresh ``init`` state
    each round (local to the node, never aggregated). The strategy's client optimiser settings
    then do not apply.
    """

    init: Any  # (params) -> optimiser state
    step: Any  # (params, opt_state, batch: NodeData, rng) -> (params, opt_state, f32[] loss to report)


class GenerativeModel(NamedTuple):
    """A generative model of the patient table as pure functions (docs/architecture.md §6).

    ``init`` and ``loss`` are what strategies and backends use, exactly as for a
    ``SurvivalModel``, so FedAvg, ``centralized`` and ``local`` train it unchanged. ``sample``
    turns a *generator* into synthetic patients: a polars table in the guide's schema (one column
    per guide feature with its kind, levels, unit and valid range, plus ``time`` > 0 and ``event``
    in {0, 1}; missing = null). The generator is the trained parameters completed by whatever the
    model fits after training (VAE-BGM: ``{"network", "prior", "scaling"}``, the federated mixture
    and the federated preprocessing's centre and scale); ``latent`` (optional) gives the encoder's
    latent means a node computes for such a fit; they never leave the node.
    """

    init: Any  # (rng) -> Params
    # (params, batch: NodeData, rng | None) -> (f32[], aux dict); rng None = evaluation. The attribute is
    # None for a model fitted from node statistics, not gradients (``ModelEntry.from_counts``: bn)
    loss: Any
    sample: Any  # (generator, rng, n: int) -> polars.DataFrame in the guide's schema
    latent: Any = None  # (params, batch: NodeData) -> f32[n, latent_dim], or None
    local_training: LocalTraining | None = None  # its own local step (CTGAN's critic + generator pair)


class FederatedAlgorithm(NamedTuple):
    """A strategy: pure functions, no state on any object (ARCHITECTURE §3).

    ``personalized`` marks algorithms whose server state keeps one parameter
    set per node (``local``); the backend then hands node k its own slice.
    ``node_inputs`` (SCAFFOLD): ``(state) -> pytree stacked [K]``; the backend
    hands node k its slice as ``client_update``'s fourth argument (under Flower,
    a ``node_input`` record of the training message).
    """

    init: Any  # (params, num_nodes) -> ServerState
    client_update: Any  # (params, node: NodeData, rng[, node_input]) -> ClientResult
    # (state, results: stacked ClientResult, weights f32[K], rng=None) -> ServerState; rng: the round's
    # server key (DP-FedAvg's noise), which both backends pass
    aggregate: Any
    personalized: bool = False
    node_inputs: Any = None  # (state) -> per-node inputs stacked [K], or None


class Tracker(Protocol):
    """Experiment tracker interface (no-op by default; ``fedjax_rhd.tracking``).

    Started when the run starts (a tracker that cannot start fails the run then);
    ``log_config`` once, ``log_metrics`` once per round, ``log_final`` once with the
    final metrics and the run's files (``results``, ``checkpoint``), ``finish`` last,
    with ``success=False`` when the run raised.
    """

    def log_config(self, config: dict[str, Any]) -> None: ...

    def log_metrics(self, metrics: dict[str, float], step: int) -> None: ...

    def log_final(self, metrics: dict[str, float], files: dict[str, Path]) -> None: ...

    def finish(self, success: bool = True) -> None: ...
