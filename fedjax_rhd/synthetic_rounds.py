"""Synthetic fidelity per round (the study's Figure 3): each current generator's CSF and GSF.

With ``fidelity_every=k`` (> 0) a generative run evaluates, at round 1 and every k-th round,
every generator the strategy holds at that round: FedAvg's global model, ``centralized``'s
pooled model, or under ``local`` every node's own model (each node alone). For each one:

1. its latent mixture is fitted by federated variational EM over the nodes whose rows trained
   it (``generative.draw_synthetic``: per-component sums and the ``max_time`` statistic, no
   row leaves a node);
2. ``n`` synthetic rows are drawn (``model.n_synthetic``, else the federation's training
   patients: the same ``n`` for every generator and strategy, so sample size does not
   confound the curves) with the key ``fold_in(fold_in(key(seed.synthetic), 3), round)``;
3. CSF and GSF (docs/synthetic.md) are computed against the **benchmark holdout**, the global
   test rows the manager itself holds on a simulated cohort (``final.test_set =
   benchmark_holdout``), never against node rows. With real centres (``test_set =
   federated``) the manager holds no real row, so nothing is evaluated per round.

The numbers go into the round's record (``results.json`` ``rounds[*].synthetic_fidelity``);
they are read by the report's synthetic section, never used to choose a round (rounds are
chosen by federated validation loss).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
import polars as pl

from fedjax_rhd import generative as gen
from fedjax_rhd.data import FederatedData
from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.metrics.synthetic import clinical_fidelity_score, genomic_fidelity_score
from fedjax_rhd.strategies import AlgorithmSpec

ROUND_PURPOSE = 3  # fold_in tag of the per-round draws (1: mixture means, 2: the final draws)
REFERENCE = "benchmark_holdout"


def fidelity_round(round_index: int, every: int) -> bool:
    """Whether round ``round_index`` (from 1) is evaluated: round 1 and every ``every``-th; 0 = never."""
    return every > 0 and (round_index == 1 or round_index % every == 0)


def round_generators(
    record: dict[str, Any], node_names: tuple[str, ...]
) -> list[tuple[Any, list[int] | None, str]]:
    """``(params, nodes whose rows trained them, label)`` of the generators a round's record holds.

    The global model when the strategy has one; else (``local``, ``centralized``) each node's own.
    """
    if record["server_params"] is not None:
        return [(record["server_params"], None, "global")]
    stacked = record["client_params"]
    return [(jax.tree.map(lambda p, k=k: p[k], stacked), [k], name) for k, name in enumerate(node_names)]


def _score(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def round_fidelity(
    record: dict[str, Any],
    *,
    backend: Backend,
    spec: AlgorithmSpec,
    data: FederatedData,
    holdout: pl.DataFrame,
    seed: int,
    n: int,
) -> dict[str, Any]:
    """``rounds[*].synthetic_fidelity`` of one round: CSF and GSF of each generator vs the holdout.

    A generator whose mixture cannot be fitted yet (e.g. no component reaches the minimum count
    in an early round) records ``csf``/``gsf`` null and the ``error``; the run goes on.
    """
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), ROUND_PURPOSE), record["round"])
    generators: dict[str, dict[str, Any]] = {}
    for params, nodes, label in round_generators(record, data.node_names):
        try:
            synthetic, fit = gen.draw_synthetic(backend, spec, data, params, nodes, seed=seed, n=n, key=key)
        except ValueError as err:  # bgm: too few patients in every component, or in a node
            generators[label] = {"csf": None, "gsf": None, "error": str(err)}
            continue
        generators[label] = {
            "csf": _score(clinical_fidelity_score(holdout, synthetic, data.guide)),
            "gsf": _score(genomic_fidelity_score(holdout, synthetic, data.guide)),
            "components": None if fit is None else len(fit.weights),  # CTGAN: no latent mixture
        }
    return {"reference": REFERENCE, "n_reference": holdout.height, "n_synthetic": n, "generators": generators}


def with_fidelity(
    on_round: Callable[[dict[str, Any]], None],
    every: int,
    *,
    backend: Backend,
    spec: AlgorithmSpec,
    data: FederatedData,
    table: pl.DataFrame,
    seed: int,
) -> Callable[[dict[str, Any]], None]:
    """``on_round`` preceded by the per-round fidelity at the rounds :func:`fidelity_round` picks.

    Only on a benchmark holdout (``data.test_node is None``); otherwise ``on_round`` unchanged
    and a warning saying why.
    """
    if every <= 0:
        return on_round
    if data.test_node is not None:
        logging.getLogger(__name__).warning(
            "fidelity_every=%d ignored: test_set=federated, the manager holds no real rows to compare with",
            every,
        )
        return on_round
    holdout = gen.holdout_table(table, data)
    n = spec.model_config.n_synthetic or int(sum(data.n_train))

    def callback(record: dict[str, Any]) -> None:
        if fidelity_round(record["round"], every):
            record["synthetic_fidelity"] = round_fidelity(
                record, backend=backend, spec=spec, data=data, holdout=holdout, seed=seed, n=n
            )
        on_round(record)

    return callback
