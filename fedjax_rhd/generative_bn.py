"""A Bayesian-network run: the protocol instead of the round loop, then sample, validate, write.

``model=bn`` is fitted from node statistics (``ModelEntry.from_counts``), so ``fedjax_rhd.experiment``
hands it here instead of to ``run_federation``:

* ``strategy=bn_two_step``: one network over every node (``federation.bn_protocol``: agreed bins,
  local structures -> consensus DAG, summed family counts); ``centralized``: the same protocol on
  the one pooled node; ``local``: each node alone (its own bins, structure and counts), node 1 first;
* each network's CPDs are **one posterior draw** (``seed.synthetic``), sampled into ``n`` rows;
* validation, files and ``results.json`` as a VAE-BGM run (``fedjax_rhd.generative``), with a
  ``network`` block (edges, each node's DAG and its distance to the consensus, bins, the
  hierarchical node diagnostic) where VAE-BGM has its ``mixture``.

``results.json`` ``rounds`` holds the protocol's two rounds (structure, counts) with every
node's participation; no training losses (null); the counts round carries each node's validation
negative log likelihood per patient under the finished network (``bn_log_likelihood``, a sum per
node) and their patients-weighted mean, which is also ``final.validation_objective``.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np
import polars as pl

from fedjax_rhd import generative as gen
from fedjax_rhd.data import FederatedData
from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.federation.bn_protocol import NetworkFit, fit_network
from fedjax_rhd.federation.loop import FederationResult
from fedjax_rhd.io import save_params
from fedjax_rhd.metrics.synthetic import privacy_metrics, validation_report
from fedjax_rhd.metrics.synthetic._columns import finite_or_none
from fedjax_rhd.models import bn_discretise as disc
from fedjax_rhd.models.bn_hierarchy import node_concentration
from fedjax_rhd.models.bn_params import concentration, draw_cpds, posterior_mean
from fedjax_rhd.models.bn_structure import edge_list, shd
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from harmonize.identity import atomic_write_text

NETWORK_FILE = "bn_network.npz"
_CPD_PURPOSE, _SAMPLE_PURPOSE = 3, 2  # fold_in tags: the posterior draw of the CPDs, the synthetic rows


def networks_to_fit(spec: AlgorithmSpec, node_names: tuple[str, ...]) -> list[tuple[list[int] | None, str]]:
    """``(nodes whose rows fit it (None: all), label)`` of every network: one global, or one per node."""
    if spec.algorithm == "bn_two_step":
        return [(None, "global")]
    return [([k], name) for k, name in enumerate(node_names)]


def fit_generator(
    backend: Backend, spec: AlgorithmSpec, data: FederatedData, nodes: list[int] | None, seed: int
) -> tuple[NetworkFit, dict[str, Any]]:
    """The protocol over ``nodes`` (None: all), then one posterior draw: what ``sample`` takes."""
    chosen = list(range(data.num_nodes)) if nodes is None else nodes
    max_time = gen.largest_follow_up(backend, chosen)
    fit = fit_network(backend, spec.model_config, nodes, max_time)
    generator = {
        "network": {
            "adjacency": fit.dag,
            "cpds": posterior_draw(fit, spec.model_config.ess, seed),
            "states": fit.states,
        },
        "bins": fit.bins,
        "scaling": {
            "center": data.preprocessor.center,
            "scale": data.preprocessor.scale,
            "max_time": max_time,
        },
    }
    return fit, generator


def posterior_draw(fit: NetworkFit, ess: float, seed: int) -> list[np.ndarray]:
    """One Dirichlet posterior draw of every CPD (the network a synthetic set is sampled from)."""
    rng = np.random.default_rng([seed, _CPD_PURPOSE])
    return draw_cpds(concentration(fit.counts, ess), rng)


def validation_nll(
    backend: Backend, fit: NetworkFit, ess: float, nodes: list[int], names: tuple[str, ...]
) -> dict[str, Any]:
    """Each node's validation rows under the posterior-mean network: negative log likelihood per patient.

    The federated value weighs nodes by their scored validation patients (the project's rule):
    Σ −log L / Σ n. None where no row was scored.
    """
    inputs = {**fit.bins.to_arrays(), "adjacency": fit.dag}
    for j, cpd in enumerate(posterior_mean(concentration(fit.counts, ess))):
        inputs[f"cpd_{j:04d}"] = cpd
    replies = backend.node_statistic("bn_log_likelihood", inputs, nodes=nodes)
    per_node = []
    for k, r in zip(nodes, replies, strict=True):
        n = int(r["n_scored"])
        nll = -float(r["log_likelihood"]) / n if n else None
        per_node.append({"node": names[k], "nll": nll, "n_scored": n, "n_unscored": int(r["n_unscored"])})
    total = sum(p["n_scored"] for p in per_node)
    federated = -sum(float(r["log_likelihood"]) for r in replies) / total if total else None
    return {"nll_per_patient": federated, "nodes": per_node}


def hierarchy_block(fit: NetworkFit, spec: AlgorithmSpec, seed: int) -> list[dict[str, Any]] | None:
    """numpyro's node-concentration diagnostic for the configured families (None: fewer than 2 nodes)."""
    config = spec.model_config
    names = config.variables().names
    if len(fit.node_counts) < 2 or not config.hierarchy:
        return None
    out = []
    for name in config.hierarchy:  # names checked by BNConfig.for_guide
        j = names.index(name)
        parents = [names[i] for i in np.flatnonzero(fit.dag[:, j])]
        stats = node_concentration(
            [c[j] for c in fit.node_counts], seed=seed,
            warmup=config.hierarchy_warmup, samples=config.hierarchy_samples,
        )  # fmt: skip
        out.append({"variable": name, "parents": parents, **stats})
    return out


def network_block(fit: NetworkFit, spec: AlgorithmSpec, node_labels: list[str], seed: int) -> dict[str, Any]:
    """``results.json``'s description of one fitted network."""
    var = spec.model_config.variables()
    binned = [j for j, k in enumerate(var.kinds) if disc.is_binned(k)]
    return {
        "variables": len(var.names),
        "edges": edge_list(fit.dag, var.names),
        "n_edges": int(fit.dag.sum()),
        "candidate_edges": int(fit.allowed.sum()),
        "roots": list(fit.roots),
        "states": {n: int(s) for n, s in zip(var.names, fit.states, strict=True)},
        # bin edges on the grid scale (standardised encoded features, log1p time)
        "bin_edges": {var.names[j]: disc.bin_edges(fit.bins, j).tolist() for j in binned},
        "node_structures": [
            {
                "node": label,
                "n_edges": int(d.sum()),
                "shd_to_consensus": shd(d, fit.dag),
                "edges": edge_list(d, var.names),  # what the node sent in round 1
            }  # fmt: skip
            for label, d in zip(node_labels, fit.node_dags, strict=True)
        ],
        "ess": spec.model_config.ess,
        "hierarchy": hierarchy_block(fit, spec, seed),
        "seconds": fit.seconds,
    }


def _validate(
    synthetic: pl.DataFrame, data: FederatedData, nodes: list[int] | None, label: str,
    reference: pl.DataFrame, holdout: pl.DataFrame, output_dir: Path, suffix: str,
) -> dict[str, Any]:  # fmt: skip
    """The validation block, exactly as ``generative`` writes VAE-BGM's."""
    report = validation_report(reference, synthetic, holdout, data.guide)
    own_rows = nodes is not None and data.num_nodes > 1
    if own_rows:  # privacy against the rows this generator saw
        privacy = privacy_metrics(gen.training_table(data, nodes), synthetic, holdout, data.guide, seed=0)
        report = finite_or_none({**report, "privacy": privacy})
    report_path = f"{Path(gen.REPORT_FILE).stem}{suffix}.json"
    atomic_write_text(output_dir / report_path, json.dumps(report, indent=1, allow_nan=False))
    return {
        "reference": "federation_training_rows",
        "privacy_members": label if own_rows else "federation_training_rows",
        "n_real_train": reference.height,
        "n_holdout": holdout.height,
        "report": report_path,
        **gen.headline(report),
    }


def run_network(
    output_dir: Path,
    *,
    spec: AlgorithmSpec,
    backend: Backend,
    data: FederatedData,
    table: pl.DataFrame,
    seed: int,
    benchmark_holdout: bool,
) -> tuple[FederationResult, dict[str, Any], Path]:
    """Fit, sample, validate and write every network of the run.

    Returns:
        (the protocol's rounds as a ``FederationResult``, ``final.generative``, the network file).
    """
    started = time.perf_counter()
    reference = holdout = None
    if benchmark_holdout:
        reference, holdout = gen.training_table(data, None), gen.holdout_table(table, data)
    blocks, saved = [], {}
    for i, (nodes, label) in enumerate(networks_to_fit(spec, data.node_names)):
        chosen = list(range(data.num_nodes)) if nodes is None else nodes
        fit, generator = fit_generator(backend, spec, data, nodes, seed)
        n = spec.model_config.n_synthetic or int(sum(data.n_train[k] for k in chosen))
        key = jax.random.fold_in(jax.random.key(seed), _SAMPLE_PURPOSE)
        synthetic = build_model(spec).sample(generator, key, n)
        suffix = "" if i == 0 else f"_{label}"
        path = f"{Path(gen.SYNTHETIC_FILE).stem}{suffix}.parquet"
        synthetic.write_parquet(output_dir / path)
        block: dict[str, Any] = {
            "trained_on": label,
            "synthetic": {"path": path, "n": n, "seed": seed},
            "network": network_block(fit, spec, [data.node_names[k] for k in chosen], seed),
            "validation": None,
        }
        block["network"]["validation_nll"] = validation_nll(
            backend, fit, spec.model_config.ess, chosen, data.node_names
        )
        saved[label] = {
            "adjacency": fit.dag, "states": fit.states, **fit.bins.to_arrays(),
            "counts": {f"family_{j:04d}": c for j, c in enumerate(fit.counts)},
        }  # fmt: skip
        if reference is None or holdout is None:
            block["validation_skipped"] = (
                "test_set=federated: each centre keeps its rows; validating needs real rows at the manager"
            )
        else:
            block["validation"] = _validate(
                synthetic, data, nodes, label, reference, holdout, output_dir, suffix
            )
        logging.getLogger(__name__).info("Bayesian network (%s): %s", label, block["validation"])
        blocks.append(block)
    main = {"model": spec.model_name, **blocks[0]}
    if len(blocks) > 1:
        main["nodes"] = blocks[1:]
    elapsed = time.perf_counter() - started
    val_loss, federated = validation_losses(blocks, data.node_names)
    fed = FederationResult(
        best_round=2, global_params=None, node_params={},
        rounds=protocol_rounds(data.node_names, val_loss, federated), round_seconds=[],
        first_round_seconds=elapsed, validation_objective=float("nan") if federated is None else federated,
    )  # fmt: skip
    return fed, main, save_params(output_dir / NETWORK_FILE, saved)


def validation_losses(
    blocks: list[dict[str, Any]], node_names: tuple[str, ...]
) -> tuple[list[float | None], float | None]:
    """Per node: the validation NLL of the network it holds (the global one, or its own under ``local``),
    and their patients-weighted mean (what a sweeper minimises; None when nothing was scored)."""
    by_node = {p["node"]: p for b in blocks for p in b["network"]["validation_nll"]["nodes"]}
    losses = [by_node[n]["nll"] if n in by_node else None for n in node_names]
    scored = [by_node[n] for n in node_names if n in by_node and by_node[n]["n_scored"]]
    total = sum(p["n_scored"] for p in scored)
    return losses, (sum(p["nll"] * p["n_scored"] for p in scored) / total if total else None)


def protocol_rounds(
    node_names: tuple[str, ...], val_loss: list[float | None], federated: float | None
) -> list[dict[str, Any]]:
    """``results.json`` ``rounds``: structure, then counts; every node takes part; no training losses.

    The counts round carries each node's validation NLL of the finished network and their weighted mean.
    """
    names, blank = list(node_names), [None] * len(node_names)
    steps = ((1, "structure", blank, None), (2, "counts", val_loss, federated))
    return [
        {
            "round": r,
            "step": step,
            "train_loss": blank,
            "val_loss": loss,
            "val_loss_federated": fed_loss,
            "participation": {"sampled": names, "failed": [], "timed_out": [], "aggregated": names},
        }
        for r, step, loss, fed_loss in steps
    ]


def print_summary(results: dict[str, Any]) -> None:
    """A short summary of a Bayesian-network run."""
    cfg, gen_block = results["config"], results["final"]["generative"]
    print(
        f"\n{cfg['use_case']['name']} | {cfg['strategy']['name']} | model=bn "
        f"seed.split={cfg['seed']['split']} | dataset {results['dataset']['id']}"
    )
    for block in [gen_block, *gen_block.get("nodes", [])]:
        net, val = block["network"], block["validation"]
        shds = [s["shd_to_consensus"] for s in net["node_structures"]]
        print(
            f"  {block['trained_on']}: {net['n_edges']} edges over {net['variables']} variables "
            f"(node structures' SHD to it: {shds}); "
            f"{block['synthetic']['n']} rows -> {block['synthetic']['path']}"
        )
        if val is not None:
            print(
                f"    CSF {val['csf']}  GSF {val['gsf']}  impossible values {val['validity_total']}  "
                f"privacy gate {'passed' if val['privacy_gate']['passed'] else 'failed'}"
            )
    print()
