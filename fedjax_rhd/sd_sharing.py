"""Synthetic-data sharing (``strategy=sd_sharing``): nodes send gated synthetic rows, the manager pools.

The study's second federation protocol (issue 18 item 4; the first is FedAvg, or ``bn_two_step``):

1. **each node trains its generator on its own rows only**: a gradient-trained model runs the
   ``local`` algorithm's rounds (every node alone; ``strategies/local.py``) and is completed by its
   model's generator step over that node alone (:data:`GENERATORS`; VAE-BGM: the latent mixture by
   EM over the node's own rows; CTGAN: its networks, whose mode-specific normaliser and level counts
   were fitted before training from every node's per-mode sums and level counts, as under ``local``);
   a model fitted from counts (``bn``) runs its protocol over the node alone
   (``generative_bn.fit_generator``; its own bins, structure and counts);
2. **each node samples and gates locally** (``federation/sd_node_tasks.py``, the ``sd_share`` node
   statistic): it draws its rows (its training patients' number, or its share of
   ``model.n_synthetic``), checks them against its own training part (members) and validation
   part (non-members) with ``strategy.gate`` (``PrivacyThresholds``) and no impossible value, and
   sends the rows only if they pass; a node that fails sends none, and its failing metrics are
   recorded;
3. **the manager pools** the received rows (node order); with ``strategy.retrain_on_pool`` it
   trains the same model once more, centrally, on the pool (``centralized`` on one node holding the
   pooled rows; preprocessing, and CTGAN's normaliser, fitted on them) and samples the final table
   from it;
4. the final table is validated as every generator's (``metrics.synthetic.validation_report``
   against the federation's training rows and the benchmark holdout).

The protocol is generic over the generative contract (``GenerativeModel.sample``): a new
gradient-trained generator needs its completion step in :data:`GENERATORS`. It runs through the
backend seam (``Backend.node_statistic``); only the simulator is supported (:func:`check_supported`):
under Flower a node statistic's ``params`` are restored onto the model's own parameter template, and
a generator (network plus mixture, or a network's CPDs and bins) is not that tree.

What leaves a node (``docs/privacy.md``): what ``strategy=local`` sends (the node's parameters
between its rounds, or its own network statistics), the gate's scalar metrics and verdict, and the
synthetic rows that passed its gate.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
import polars as pl

from fedjax_rhd import generative as gen
from fedjax_rhd import generative_bn
from fedjax_rhd.data import FederatedData, SplitSpec, build_federated_data
from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.federation.loop import FederationResult, TrainSchedule, run_federation
from fedjax_rhd.federation.participation import RoundPolicy
from fedjax_rhd.federation.sd_node_tasks import METRIC, arrays_table, thresholds_inputs
from fedjax_rhd.io import save_params
from fedjax_rhd.metrics.synthetic import PrivacyThresholds, validation_report
from fedjax_rhd.metrics.synthetic._columns import finite_or_none
from fedjax_rhd.models import MODELS
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from fedjax_rhd.synthetic_export import gate_failures, table_id
from harmonize.identity import atomic_write_text

POOL_FILE = "synthetic_pool.parquet"  # the pooled rows, when the final table is a retrained generator's
SUPPORTED_BACKENDS = ("simulator",)
_RETRAIN_PURPOSE = 4  # fold_in tag of the retrained generator's draws (2: the nodes' draws)

# (backend, spec, data, params, nodes, seed) -> (what ``sample`` takes, the latent mixture's fit or None)
GeneratorStep = Callable[[Backend, AlgorithmSpec, FederatedData, Any, list[int] | None, int], tuple[Any, Any]]

# VAE-BGM: its latent mixture by federated EM over the nodes' rows. CTGAN: no latent prior; its
# mode-specific normaliser and level counts are in the spec (fitted before training from the nodes'
# sums, as under ``local``).
GENERATORS: dict[str, GeneratorStep] = {"vae_bgm": gen.trained_generator, "ctgan": gen.trained_generator}
"""Gradient-trained model -> what turns its trained parameters over some nodes into ``sample``'s generator."""


def check_supported(model: str, backend: str, *, val_fraction: float, fidelity_every: int) -> None:
    """Refuse the combinations ``sd_sharing`` cannot run, naming the setting to change."""
    entry = MODELS[model]
    if not entry.generative:
        raise ValueError(
            f"strategy=sd_sharing shares synthetic rows: it needs a generative model (model=vae_bgm, bn, "
            f"...), not model={model}"
        )
    if not entry.from_counts and model not in GENERATORS:
        raise ValueError(
            f"strategy=sd_sharing has no generator step for model={model}: add one to "
            "fedjax_rhd.sd_sharing.GENERATORS"
        )
    if backend not in SUPPORTED_BACKENDS:
        raise ValueError(
            f"strategy=sd_sharing runs under backend={' or '.join(SUPPORTED_BACKENDS)}, not {backend}: a "
            "node's generator travels as a node statistic's params, which a Flower node restores onto the "
            "model's own parameter template"
        )
    if val_fraction <= 0:
        raise ValueError(
            "strategy=sd_sharing gates each node's rows against its validation part (the non-members): "
            "set split.val_fraction > 0"
        )
    if fidelity_every:
        raise ValueError(
            "fidelity_every samples every node's generator at the manager each round; under "
            "strategy=sd_sharing only gated rows leave a node: set fidelity_every=0"
        )


class NodeShare(NamedTuple):
    """One node's answer: the gate's verdict and metrics, and its rows if it passed.

    Attributes:
        node: the node's name.
        n_sampled: rows it drew.
        passed: the gate's verdict on the node.
        failing: ``(metric, value, limit)`` of every failed check (``synthetic_export.gate_failures``).
        metrics: the privacy metrics the node sent (scalars) and ``validity_total``.
        rows: the rows it sent (None when it failed: nothing was sent).
    """

    node: str
    n_sampled: int
    passed: bool
    failing: list[tuple[str, Any, str]]
    metrics: dict[str, float]
    rows: pl.DataFrame | None


def node_sizes(n_train: tuple[int, ...], n_synthetic: int) -> list[int]:
    """Rows each node draws: its training patients, or its share of ``n_synthetic`` (largest remainder)."""
    if n_synthetic == 0:
        return list(n_train)
    share = np.asarray(n_train, np.float64) / sum(n_train) * n_synthetic
    sizes = np.floor(share).astype(int)
    order = np.argsort(-(share - sizes), kind="stable")
    sizes[order[: n_synthetic - sizes.sum()]] += 1
    return sizes.tolist()


def share_rows(
    backend: Backend,
    spec: AlgorithmSpec,
    data: FederatedData,
    generators: list[Any],
    sizes: list[int],
    *,
    seed: int,
    thresholds: PrivacyThresholds,
) -> list[NodeShare]:
    """Ask every node to sample from its own generator and gate the rows (``sd_share``), node by node."""
    shares = []
    for k, (generator, n) in enumerate(zip(generators, sizes, strict=True)):
        inputs = {
            "guide": np.asarray(str(data.guide.path)), "n": np.asarray(n, np.int64),
            "seed": np.asarray(seed, np.int64), "stream": np.asarray(k, np.int64),
            "center": data.preprocessor.center, "scale": data.preprocessor.scale,
            **thresholds_inputs(thresholds),
        }  # fmt: skip
        reply = backend.node_statistic("sd_share", inputs, params=generator, nodes=[k])[0]
        metrics = {key[len(METRIC) :]: float(v) for key, v in reply.items() if key.startswith(METRIC)}
        validity = int(reply["validity_total"])
        passed = bool(reply["passed"])
        if validity < 0:  # the node had no validation rows: the gate could not run
            failing = [("n_non_members", 0, "> 0 validation rows on the node")]
        else:  # the manager restates the verdict from the values sent (one rule: gate_failures)
            failing = gate_failures({"privacy": metrics, "validity": {"total": validity}}, thresholds)
        if passed == bool(failing):
            raise RuntimeError(f"{data.node_names[k]}: its gate verdict disagrees with the metrics it sent")
        rows = arrays_table(reply, data.guide, f"sd-{data.node_names[k]}-") if passed else None
        metrics["validity_total"] = validity
        shares.append(NodeShare(data.node_names[k], int(reply["n_sampled"]), passed, failing, metrics, rows))
    return shares


def pool_rows(shares: list[NodeShare]) -> pl.DataFrame | None:
    """The rows every passing node sent, in node order (None: no node passed)."""
    sent = [s.rows for s in shares if s.rows is not None]
    return pl.concat(sent) if sent else None


def node_generators(
    backend: Backend, spec: AlgorithmSpec, data: FederatedData, fed: FederationResult | None, seed: int
) -> tuple[list[Any], list[generative_bn.NetworkFit] | None]:
    """Every node's own generator: trained parameters completed over its rows alone, or its own network."""
    if MODELS[spec.model_name].from_counts:
        fits = [generative_bn.fit_generator(backend, spec, data, [k], seed) for k in range(data.num_nodes)]
        return [g for _, g in fits], [f for f, _ in fits]
    if fed is None:
        raise ValueError(f"model={spec.model_name} is trained by rounds: pass their FederationResult")
    step = GENERATORS[spec.model_name]
    return [
        step(backend, spec, data, params, nodes, seed)[0]
        for params, nodes, _ in gen.generators_to_sample(fed, data.node_names)
    ], None


def network_rounds(
    backend: Backend,
    spec: AlgorithmSpec,
    data: FederatedData,
    fits: list[generative_bn.NetworkFit],
    started: float,
) -> FederationResult:
    """``bn``: the node-alone protocol as ``results.json`` rounds, each node's NLL under its own network."""
    per_node = [
        generative_bn.validation_nll(backend, fit, spec.model_config.ess, [k], data.node_names)
        for k, fit in enumerate(fits)
    ]
    blocks = [{"network": {"validation_nll": v}} for v in per_node]
    val_loss, federated = generative_bn.validation_losses(blocks, data.node_names)
    return FederationResult(
        best_round=2, global_params=None, node_params={},
        rounds=generative_bn.protocol_rounds(data.node_names, val_loss, federated), round_seconds=[],
        first_round_seconds=time.perf_counter() - started,
        validation_objective=float("nan") if federated is None else federated,
    )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Retraining:
    """What training a generator on the pool needs: the run's split and budget (the real run's)."""

    split: SplitSpec
    schedule: TrainSchedule
    policy: RoundPolicy
    seed_sample: int
    progress: bool = False


def retrain_on_pool(
    pool: pl.DataFrame, spec: AlgorithmSpec, data: FederatedData, retraining: Retraining, seed: int
) -> tuple[Any, dict[str, Any]]:
    """Train ``spec``'s model centrally on the pooled synthetic rows; its generator and a summary.

    The pool becomes one node (``centralized``; preprocessing fitted on the pooled rows, which the
    manager holds); ``split.val_fraction`` of it chooses the round. The pool stands in as the test
    part the data object needs; no generative step reads it.
    """
    from fedjax_rhd.federation.registry import make_backend  # the registry imports every backend

    table = pool.with_columns(pl.lit("pool").alias("centre"))
    pooled = build_federated_data(table, data.guide, retraining.split, pooled=True, dataset="sd_pool",
                                  test_table=table)  # fmt: skip
    central = dataclasses.replace(spec, algorithm="centralized")
    # CTGAN: its normaliser and level counts refitted on the pool, which the manager now holds
    central = gen.fit_before_training(central, pooled, seed)
    backend = make_backend("simulator", pooled, central)
    try:
        if MODELS[spec.model_name].from_counts:
            _, generator = generative_bn.fit_generator(backend, central, pooled, None, seed)
            rounds = 2
        else:
            fed = run_federation(
                backend, retraining.schedule, retraining.policy, seed_sample=retraining.seed_sample,
                progress=retraining.progress, desc="retrain on the pool",
            )  # fmt: skip
            params = gen.generators_to_sample(fed, pooled.node_names)[0][0]
            generator = GENERATORS[spec.model_name](backend, central, pooled, params, None, seed)[0]
            rounds = len(fed.rounds)
    finally:
        backend.close()
    return generator, {"n_train": pooled.n_train[0], "n_val": pooled.n_val[0], "rounds_run": rounds}


def sharing_block(shares: list[NodeShare], thresholds: PrivacyThresholds, n_train: tuple[int, ...]) -> dict:
    """``results.json``'s record of who sent what: per node its verdict, failing metrics and rows sent."""
    return {
        "gate": dataclasses.asdict(thresholds),
        "gate_rows": {"members": "the node's training part", "non_members": "the node's validation part"},
        "nodes": [
            {
                "node": s.node,
                "n_train": n,
                "n_sampled": s.n_sampled,
                "passed": s.passed,
                "n_sent": 0 if s.rows is None else s.rows.height,
                # a metric that is not a finite number (too few rows) is recorded as null
                "failing": [
                    {"metric": m, "value": finite_or_none(v), "limit": lim} for m, v, lim in s.failing
                ],
                "metrics": finite_or_none(s.metrics),
            }
            for s, n in zip(shares, n_train, strict=True)
        ],
        "n_pool": sum(0 if s.rows is None else s.rows.height for s in shares),
    }


def share_and_validate(
    output_dir: Path,
    *,
    spec: AlgorithmSpec,
    backend: Backend,
    data: FederatedData,
    table: pl.DataFrame,
    generators: list[Any],
    thresholds: PrivacyThresholds,
    retraining: Retraining | None,
    seed: int,
    benchmark_holdout: bool,
) -> dict[str, Any]:
    """Steps 2-4: gated rows from every node, the pool (or its retrained generator's table), validation.

    Returns:
        ``final.generative``: ``trained_on`` ``sd_pool`` (or ``sd_pool_retrained``), ``synthetic``
        (None when no node passed), ``sharing`` (:func:`sharing_block`) and ``validation``.
    """
    sizes = node_sizes(data.n_train, spec.model_config.n_synthetic)
    shares = share_rows(backend, spec, data, generators, sizes, seed=seed, thresholds=thresholds)
    sharing = {**sharing_block(shares, thresholds, data.n_train), "retrain_on_pool": retraining is not None}
    block: dict[str, Any] = {"model": spec.model_name, "trained_on": "sd_pool", "sharing": sharing}
    pool = pool_rows(shares)
    if pool is None:
        reason = "no node's synthetic rows passed its privacy gate: nothing was shared"
        return {**block, "synthetic": None, "validation": None, "validation_skipped": reason}
    final = pool
    if retraining is not None:
        pool.write_parquet(output_dir / POOL_FILE)
        generator, sharing["retrained"] = retrain_on_pool(pool, spec, data, retraining, seed)
        key = jax.random.fold_in(jax.random.key(seed), _RETRAIN_PURPOSE)
        n = spec.model_config.n_synthetic or int(sum(data.n_train))
        final = build_model(spec).sample(generator, key, n)
        sharing["pool_path"], block["trained_on"] = POOL_FILE, "sd_pool_retrained"
    final.write_parquet(output_dir / gen.SYNTHETIC_FILE)
    block["synthetic"] = {"path": gen.SYNTHETIC_FILE, "n": final.height, "seed": seed,
                          "id": table_id(final, data.guide)}  # fmt: skip
    if not benchmark_holdout:
        why = "test_set=federated: each centre keeps its rows; validating needs real rows at the manager"
        return {**block, "validation": None, "validation_skipped": why}
    reference, holdout = gen.training_table(data, None), gen.holdout_table(table, data)
    report = validation_report(reference, final, holdout, data.guide)
    atomic_write_text(output_dir / gen.REPORT_FILE, json.dumps(report, indent=1, allow_nan=False))
    block["validation"] = {
        "reference": "federation_training_rows",
        "privacy_members": "federation_training_rows",
        "n_real_train": reference.height,
        "n_holdout": holdout.height,
        "report": gen.REPORT_FILE,
        **gen.headline(report),
    }
    logging.getLogger(__name__).info("sd_sharing pool: %s", block["validation"])
    return block


def save_checkpoint(output_dir: Path, shares_block: dict[str, Any]) -> Path:
    """``params.npz``: no node's generator is kept at the manager, only the rows each node sent."""
    sent = np.asarray([n["n_sent"] for n in shares_block["nodes"]], np.int64)
    return save_params(output_dir / "params.npz", {"n_sent": sent})


def print_summary(results: dict[str, Any]) -> None:
    """A short summary of an ``sd_sharing`` run: each node's verdict, the pool, its validation."""
    cfg, block = results["config"], results["final"]["generative"]
    print(
        f"\n{cfg['use_case']['name']} | sd_sharing | model={block['model']} "
        f"seed.split={cfg['seed']['split']} | dataset {results['dataset']['id']}"
    )
    for node in block["sharing"]["nodes"]:
        why = ", ".join(f"{f['metric']}={f['value']} ({f['limit']})" for f in node["failing"])
        verdict = f"sent {node['n_sent']} rows" if node["passed"] else f"sent nothing: gate failed on {why}"
        print(f"  {node['node']}: sampled {node['n_sampled']}, {verdict}")
    print(f"  pool: {block['sharing']['n_pool']} rows; final table: {block['trained_on']}")
    val = block["validation"]
    if val is not None:
        print(
            f"  CSF {val['csf']:.3f}  GSF {val['gsf']:.3f}  MIA AUC {val['mia_auc']:.3f}  "
            f"impossible values {val['validity_total']}  "
            f"privacy gate {'passed' if val['privacy_gate']['passed'] else 'failed'}\n"
        )
