"""What a run reports: final metrics, test predictions, ``results.json`` and the printed summary.

Everything here reads what training produced (the federation's outcome, the data's test
rows, the clinical scores) and writes it down once: each bootstrap interval is computed
once and reused wherever it appears. ``results.json`` is validated against the committed
schema ``schemas/results.schema.json`` before it is written.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import subprocess
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import jsonschema
import numpy as np
import polars as pl

from fedjax_rhd.data import FederatedData
from fedjax_rhd.executables import stored_jit
from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.federation.loop import FederationResult
from fedjax_rhd.federation.participation import participation_summary
from fedjax_rhd.io import save_params
from fedjax_rhd.metrics import concordance_index
from fedjax_rhd.metrics.clinical import clinical_score_result, scores_on_test
from fedjax_rhd.metrics.concordance import bootstrap_cindices
from fedjax_rhd.metrics.evaluation import federated_evaluation, survival_metrics
from fedjax_rhd.strategies import AlgorithmSpec
from fedjax_rhd.strategies.dp import privacy_summary
from fedjax_rhd.strategies.dp_sgd import privacy_summary as dp_sgd_privacy_summary
from fedjax_rhd.strategies.dp_sgd import summary_row as dp_sgd_summary_row
from fedjax_rhd.tracking import curve_round, round_metrics
from fedjax_rhd.typing import Tracker
from harmonize.identity import atomic_write_text

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "results.schema.json"
RESULTS_FILE = "results.json"
PARAMS_FILE = "params.npz"
PREDICTIONS_FILE = "test_predictions.parquet"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "polars", "hydra-core", "omegaconf")


def environment() -> dict[str, Any]:
    """Where the run ran: git sha, JAX backend and devices, Python, machine, package versions."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parent,
            check=False,
        ).stdout.strip()
    except OSError:
        sha = ""
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "git_sha": sha or None,
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "packages": versions,
    }


def test_c_index(data: FederatedData, risk: np.ndarray) -> float:
    """Harrell's C of ``risk`` on the benchmark holdout (the global test rows)."""
    t = data.test
    return concordance_index(np.asarray(t.time), np.asarray(t.event), np.asarray(risk, dtype=np.float64))


def add_round_curves(
    record: dict[str, Any], node_risks: np.ndarray, global_risk: np.ndarray | None, data: FederatedData
) -> None:
    """Per-round test C-index of every node's model (and the global one) for the curves (Figure 2).

    Reported, never used to select (validation, which selects, runs every round).
    """
    record["c_index_test_nodes"] = [test_c_index(data, r) for r in node_risks]
    if global_risk is not None:
        record["c_index_test_global"] = test_c_index(data, global_risk)


def round_callback(
    backend: Backend, data: FederatedData, curve_every: int, tracker: Tracker, *, curves: bool = True
) -> Callable[[dict[str, Any]], None]:
    """The loop's per-round callback: test curves every ``curve_every``-th round, then the tracker.

    ``curves=False`` (generative models: no risk to score) logs the losses only.
    """

    def on_round(record: dict[str, Any]) -> None:
        if curves and curve_round(record["round"], curve_every):
            server = record["server_params"]
            glob = None if server is None else backend.test_risks(jax.tree.map(lambda p: p[None], server))[0]
            add_round_curves(record, backend.test_risks(record["client_params"]), glob, data)
        tracker.log_metrics(round_metrics(record, list(data.node_names)), step=record["round"])

    return on_round


def model_test_risks(backend: Backend, fed: FederationResult) -> tuple[np.ndarray, np.ndarray]:
    """f32[K, n_test] each node's final model, and the main model's risks (global, else node 1's own).

    Under ``centralized`` node 1 is the pooled model; under ``local`` the biggest node's own.
    """
    node_risks = backend.test_risks(fed.node_params)
    if fed.global_params is None:
        return node_risks, node_risks[0]
    return node_risks, backend.test_risks(jax.tree.map(lambda p: p[None], fed.global_params))[0]


def _main_model(global_params: Any, node_params: Any) -> tuple[Any, list[int] | None]:
    """The main model's parameters and the nodes of its Breslow baseline (None: all)."""
    if global_params is not None:
        return global_params, None
    return _first_node(node_params), [0]


@stored_jit()
def _first_node(stacked: Any) -> Any:
    """Node 0's slice of stacked [K] parameters (one program, not one eager slice per leaf)."""
    return jax.tree.map(lambda p: p[0], stacked)


def survival_block(
    spec: AlgorithmSpec, backend: Backend, data: FederatedData, global_params: Any, node_params: Any
) -> dict[str, Any]:
    """Uno's C, td-AUC and IBS of the main model (the global one, else node 1's own).

    Node 1's own model reads the test rows as node 1 does (``FederatedData.test_view``: its own
    preprocessing and missing layers under ``strategy=local``).
    """
    params, nodes = _main_model(global_params, node_params)
    test = data.test if global_params is not None else data.test_view(0)
    try:
        return survival_metrics(spec, backend, test, params, baseline_nodes=nodes)
    except ValueError as err:  # e.g. too short a test follow-up: record why, keep the run
        logging.getLogger(__name__).warning("survival metrics not computed: %s", err)
        missing = {"uno_c_test": None, "td_auc_test": None, "ibs_test": None}
        return {**missing, "survival_eval": {"error": str(err)}}


def test_set_kind(data: FederatedData) -> str:
    """``final.test_set``: ``"federated"`` when each node keeps its own test part (real centres),
    else ``"benchmark_holdout"`` (the manager keeps the global test set)."""
    return "benchmark_holdout" if data.test_node is None else "federated"


def federated_block(
    spec: AlgorithmSpec, backend: Backend, data: FederatedData, global_params: Any, node_params: Any
) -> dict[str, Any]:
    """``final.federated_evaluation``: the main model scored by every node on its own test part.

    Stratified Harrell and Uno C, stratified td-AUC and the pooled IBS from the nodes' sums
    (``metrics.evaluation.federated_evaluation``); ``n_test_without_node`` counts test rows whose
    centre has no training node (left out). A metric without pairs records ``{"error"}`` instead.
    """
    params, nodes = _main_model(global_params, node_params)
    try:
        block = federated_evaluation(spec, backend, params, baseline_nodes=nodes)
    except ValueError as err:  # e.g. a node set without test deaths: record why, keep the run
        logging.getLogger(__name__).warning("federated evaluation not computed: %s", err)
        return {"error": str(err)}
    return {**block, "n_test_without_node": int(np.sum(data.test_node < 0))}


def final_metrics(
    data: FederatedData,
    *,
    main_risk: np.ndarray,
    node_risks: np.ndarray,
    has_global: bool,
    best_round: int,
    rounds: list[dict[str, Any]],
    n_boot: int,
    seed: int,
) -> dict[str, Any]:
    """``results.json`` ``final``: C-index with bootstrap CIs of the main, global and node models.

    ``clinical_score``, the survival block and fine-tuning are filled in by the caller.
    """
    t = data.test
    time_np, event_np = np.asarray(t.time), np.asarray(t.event)
    # every model on the same resamples in one pass (equal to one bootstrap_cindex call each)
    risks = [main_risk, *node_risks] + ([] if data.test_oracle_risk is None else [data.test_oracle_risk])
    cis = bootstrap_cindices(time_np, event_np, risks, n_boot=n_boot, seed=seed)
    main, node_cis = cis[0], cis[1 : 1 + len(node_risks)]
    return {
        "c_index_test": main,
        "best_round": best_round,
        "rounds_run": len(rounds),
        # the main model is the global one when there is one: the same interval, computed once
        "global_model": {"c_index_test": main} if has_global else None,
        "nodes": [
            {
                "name": name,
                "n_train": n_tr,
                "n_val": n_va,
                "share": share,
                "c_index_test": ci,
            }
            for name, n_tr, n_va, share, ci in zip(
                data.node_names, data.n_train, data.n_val, data.shares(), node_cis, strict=True
            )
        ],
        "oracle_c_index_test": None if data.test_oracle_risk is None else cis[-1],
        "clinical_score": None,
        "ibs_test": None,
        "n_test": int(len(time_np)),
        "n_test_events": int(event_np.sum()),
        "participation": participation_summary(rounds, data.node_names),
    }


def clinical_score_on_test(
    score_name: str,
    score_table: pl.DataFrame | None,
    data: FederatedData,
    main_risk: np.ndarray,
    n_boot: int,
    seed: int,
) -> tuple[dict[str, Any] | None, pl.DataFrame | None]:
    """The use case's clinical score on exactly the model's test rows, and its per-row table."""
    if score_table is None:
        return None, None
    test_scores = scores_on_test(score_table, data.test_patient_ids)
    score = test_scores["clinical_score"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    t = data.test
    result = clinical_score_result(
        score_name, score, np.asarray(t.time), np.asarray(t.event), main_risk, n_boot=n_boot, seed=seed
    )
    return result, test_scores


def predictions(
    data: FederatedData,
    main_risk: np.ndarray,
    node_risks: np.ndarray,
    extra_columns: dict[str, Any] | None,
    test_scores: pl.DataFrame | None,
) -> pl.DataFrame:
    """Test-row risks of every model, so reports pair methods on the same rows."""
    t = data.test
    frame = pl.DataFrame(
        {
            "patient_id": list(data.test_patient_ids),
            "time": np.asarray(t.time),
            "event": np.asarray(t.event),
            "risk": main_risk,
            **{f"risk_{name}": risk for name, risk in zip(data.node_names, node_risks, strict=True)},
            **({} if data.test_oracle_risk is None else {"oracle_risk": data.test_oracle_risk}),
            **(extra_columns or {}),
        }
    )
    if test_scores is not None:
        frame = pl.concat([frame, test_scores.drop("patient_id")], how="horizontal")
    return frame


def dataset_block(card: dict[str, Any], layers: tuple[str, ...]) -> dict[str, Any]:
    """``dataset``; ``dataset.test`` names the dataset the test rows came from (``test.dataset``),
    ``dataset.holdout`` the centre held out as the test set (``split.holdout_centre``)."""
    block = {
        "id": card["id"],
        "name": card["name"],
        "n_rows": card["n_rows"],
        "n_events": card["n_events"],
        "guide_version": card["guide_version"],
        "layers": list(layers),  # optional guide layers, e.g. ["treatment"]
    }
    test = card.get("test_dataset")
    if test is not None:
        block["test"] = {k: test[k] for k in ("id", "name", "n_rows", "n_events", "guide_version")}
    if card.get("holdout") is not None:  # split.holdout_centre: the centre whose rows are the test set
        block["holdout"] = dict(card["holdout"])
    return block


def nodes_block(data: FederatedData, fractions: tuple[float, ...] | None) -> list[dict[str, Any]]:
    """``nodes``: sizes and each node's configured fraction (its actual share when ``None``)."""
    shares = data.shares() if fractions is None else fractions
    return [
        {"name": n, "n_train": a, "n_val": b, "fraction": f}
        for n, a, b, f in zip(data.node_names, data.n_train, data.n_val, shares, strict=True)
    ]


def write_run(
    output_dir: Path,
    *,
    resolved: dict[str, Any],
    card: dict[str, Any],
    layers: tuple[str, ...],
    data: FederatedData,
    spec: AlgorithmSpec,
    backend: Backend,
    fed: FederationResult,
    node_risks: np.ndarray,
    main_risk: np.ndarray,
    clinical: tuple[str, pl.DataFrame | None],
    tuned: dict[str, Any] | None,
    n_boot: int,
    seed: int,
    fractions: tuple[float, ...] | None,
    scenario: str,
    started: float,
) -> dict[str, Any]:
    """Compute the final metrics and write ``params.npz``, the test predictions and ``results.json``.

    Args:
        fed: the federation's outcome; ``node_risks`` / ``main_risk`` its models' test risks.
        clinical: ``(score name, per-patient score table or None)`` of the use case.
        tuned: ``finetune.finetuned_results`` (``final`` and prediction ``columns``) or None.
        n_boot, seed: bootstrap resamples and their seed (``seed.split``).
        fractions: the split's node fractions; None records each node's actual share.
        started: ``time.perf_counter()`` at the start of the run.
    """
    final = final_metrics(
        data, main_risk=main_risk, node_risks=node_risks, has_global=fed.global_params is not None,
        best_round=fed.best_round, rounds=fed.rounds, n_boot=n_boot, seed=seed,
    )  # fmt: skip
    final["clinical_score"], test_scores = clinical_score_on_test(*clinical, data, main_risk, n_boot, seed)
    final.update(survival_block(spec, backend, data, fed.global_params, fed.node_params))
    final["test_set"] = test_set_kind(data)
    if data.test_node is not None:
        final["federated_evaluation"] = federated_block(
            spec, backend, data, fed.global_params, fed.node_params
        )
    if tuned is not None:
        final["personalized"] = tuned["final"]
    if fed.node_best_rounds is not None:  # personalised: each node's own selected round
        for node, best in zip(final["nodes"], fed.node_best_rounds, strict=True):
            node["best_round"] = best
    objective = fed.validation_objective  # what a search minimises (never a test metric)
    final["validation_objective"] = None if np.isnan(objective) else float(objective)
    if spec.dp.enabled:  # every released global model is one Gaussian mechanism
        final["dp"] = privacy_summary(spec.dp, len(fed.rounds), data.num_nodes)
    if spec.client.dp_sgd.enabled:  # each node's released models: steps × rounds sampled Gaussians
        final["dp_sgd"] = dp_sgd_summary(spec, data, len(fed.rounds))
    checkpoint = save_params(output_dir / PARAMS_FILE, run_params(fed, tuned))
    frame = predictions(data, main_risk, node_risks, tuned and tuned["columns"], test_scores)
    frame.write_parquet(output_dir / PREDICTIONS_FILE)
    results = results_document(
        resolved, card, layers, data, fed, final, checkpoint, scenario, fractions, started
    )
    write_results(results, output_dir)
    return results


def dp_sgd_summary(spec: AlgorithmSpec, data: FederatedData, rounds: int) -> dict[str, Any]:
    """``final.dp_sgd``: record-level DP-SGD's ε per node (pooled rows for ``centralized``)."""
    nodes = list(zip(data.node_names, data.n_train, strict=True))
    if spec.pooled:
        nodes = [("pooled", sum(data.n_train))]
    client = spec.client
    return dp_sgd_privacy_summary(client.dp_sgd, client.batch_size, client.steps, rounds, nodes)


def run_params(fed: FederationResult, tuned: dict[str, Any] | None) -> dict[str, Any]:
    """``params.npz``'s tree: ``global`` (if any), ``nodes`` and ``finetuned`` (if any), stacked on nodes."""
    params = {"nodes": fed.node_params}
    if fed.global_params is not None:
        params = {"global": fed.global_params, **params}
    if tuned is not None:
        params["finetuned"] = tuned["params"]
    return params


def preprocessing_block(data: FederatedData) -> dict[str, Any]:
    """``preprocessing``: the federation's fit; under ``strategy=local`` also ``nodes``, each node's own.

    Each node's entry adds ``unseen_columns``: the encoded columns it never measured (unobserved
    in its view of the test set too).
    """
    block: dict[str, Any] = data.preprocessor.to_json()
    if data.isolated:
        block["nodes"] = [
            {
                "name": name,
                **{k: v for k, v in prep.to_json().items() if k != "columns"},
                "unseen_columns": [c for c, u in zip(prep.columns, unseen, strict=True) if u],
            }
            for name, prep, unseen in zip(
                data.node_names, data.node_preprocessors, data.node_unseen, strict=True
            )
        ]
    return block


def results_document(
    resolved: dict[str, Any],
    card: dict[str, Any],
    layers: tuple[str, ...],
    data: FederatedData,
    fed: FederationResult,
    final: dict[str, Any],
    checkpoint: Path,
    scenario: str,
    fractions: tuple[float, ...] | None,
    started: float,
) -> dict[str, Any]:
    """``results.json`` around a run's ``final`` block (survival and generative runs alike)."""
    return {
        "config": resolved,
        "dataset": dataset_block(card, layers),
        "nodes": nodes_block(data, fractions),
        "scenario": {"name": scenario, "nodes": list(data.scenario)},
        "preprocessing": preprocessing_block(data),
        "privacy": privacy_block(data.min_cell_count),
        "rounds": fed.rounds,
        "final": final,
        "timing": timing_block(fed, started),
        "env": environment(),
        "checkpoint": checkpoint.name,
    }


def privacy_block(min_cell_count: int) -> dict[str, Any]:
    """``results.json`` ``privacy``: the small-cell rule the nodes applied and whether statistics were exact.

    ``coarsened`` names what a node released coarsened (``docs/privacy.md``, "Small cells"); empty
    when ``min_cell_count`` is 0 or 1.
    """
    active = min_cell_count > 1
    coarsened = [
        "query.prepare_stats (histograms, rare indicator levels, columns observed < k)",
        "query.reduce_sums / query.reduce_scatter (group columns and nodes with < k rows left out)",
        "max_time / test_follow_up (k-th largest / smallest)",
        "grid_counts, breslow_counts, test_summary km arrays (times rounded into runs of k)",
        "latent_mixture (component floor max(model.bgm_node_min_count, k))",
        "bn_margins (runs), bn_pairs and bn_family_counts (cells < k sent as 0)",
    ]
    return {
        "min_cell_count": int(min_cell_count),
        "exact": not active,
        "coarsened": coarsened if active else [],
    }


def write_generative_run(
    output_dir: Path,
    *,
    resolved: dict[str, Any],
    card: dict[str, Any],
    layers: tuple[str, ...],
    data: FederatedData,
    fed: FederationResult,
    final: dict[str, Any],
    checkpoint: Path,
    scenario: str,
    fractions: tuple[float, ...] | None,
    started: float,
) -> dict[str, Any]:
    """``results.json`` of a generative run: the same blocks as a survival run, its own ``final``.

    ``final`` is ``fedjax_rhd.generative.generative_final`` (``kind: generative``; the schema's
    generative branch); the parameters are already in ``checkpoint``.
    """
    results = results_document(
        resolved, card, layers, data, fed, final, checkpoint, scenario, fractions, started
    )
    write_results(results, output_dir)
    return results


def timing_block(fed: FederationResult, started: float) -> dict[str, Any]:
    """``results.json`` ``timing``: total, compilation (first round minus a steady one) and per round."""
    steady = float(np.median(fed.round_seconds)) if fed.round_seconds else 0.0
    return {
        "total_seconds": time.perf_counter() - started,
        "compile_seconds": max(fed.first_round_seconds - steady, 0.0),
        "round_seconds": [fed.first_round_seconds, *fed.round_seconds],
        "round_compilations": fed.round_compilations,
    }


def output_files(output_dir: Path, results: dict[str, Any]) -> dict[str, Path]:
    """The files a tracker keeps: ``results.json`` and the parameter checkpoint."""
    return {"results": output_dir / RESULTS_FILE, "checkpoint": output_dir / results["checkpoint"]}


def validate_results(results: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``results`` breaks the committed schema."""
    _results_validator().validate(results)


@functools.lru_cache(maxsize=1)
def _results_validator() -> Any:
    """The schema's validator, built once per process, not per run.

    The committed schema is not checked against its meta-schema here: that check alone took most
    of a fresh process's validation (seconds on a busy machine) and cannot fail at run time for a
    file the tests check (``tests/test_contract.py``).
    """
    schema = json.loads(SCHEMA_PATH.read_text())
    return jsonschema.validators.validator_for(schema)(schema)


def write_results(results: dict[str, Any], output_dir: Path) -> Path:
    """Validate and write ``results.json``; return its path."""
    validate_results(results)
    path = output_dir / RESULTS_FILE
    atomic_write_text(path, json.dumps(results, indent=1))
    return path


def _fmt(ci: dict[str, float] | None) -> str:
    if ci is None:
        return "n/a"
    return f"{ci['estimate']:.3f} [{ci['ci_low']:.3f}, {ci['ci_high']:.3f}]"


def print_summary(results: dict[str, Any]) -> None:
    """A short table of what the run measured (C-index on the global test set)."""
    cfg, final, timing = results["config"], results["final"], results["timing"]
    print(
        f"\n{cfg['use_case']['name']} | {cfg['strategy']['name']} | split={cfg['split']['name']} "
        f"seed.split={cfg['seed']['split']} | dataset {results['dataset']['id']}"
    )
    rows = [("model", "C-index test [95% CI]")]
    if final["global_model"] is not None:
        rows.append(("global model", _fmt(final["global_model"]["c_index_test"])))
    for node in final["nodes"]:
        rows.append((f"{node['name']} ({node['share']:.0%} of data)", _fmt(node["c_index_test"])))
    for node in (final.get("personalized") or {}).get("nodes", []):
        rows.append((f"{node['name']} fine-tuned", _fmt(node["c_index_test"])))
    rows.append(("oracle (true risk)", _fmt(final["oracle_c_index_test"])))
    if final["clinical_score"] is not None:
        cs = final["clinical_score"]
        rows.append((f"{cs['name']} ({cs['n_scored']} rows scored)", _fmt(cs["c_index_test"])))
    if final.get("uno_c_test") is not None:
        rows.append(("main model: Uno's C (IPCW)", f"{final['uno_c_test']:.3f}"))
        rows.append(("main model: mean td-AUC", f"{final['td_auc_test']['mean']:.3f}"))
        rows.append(("main model: integrated Brier", f"{final['ibs_test']:.3f}"))
    fe = final.get("federated_evaluation") or {}
    if "c_index_test_stratified" in fe:
        for node in fe["nodes"]:
            c = "n/a" if node["c_index"] is None else f"{node['c_index']:.3f}"
            rows.append((f"{node['name']} own test part ({node['n_test']} rows)", c))
        rows.append(("main model: Harrell C stratified by centre", f"{fe['c_index_test_stratified']:.3f}"))
    if final.get("dp"):
        dp = final["dp"]
        rows.append(
            (
                f"client-level DP (σ={dp['noise_multiplier']}, clip={dp['clip']}, δ={dp['delta']:g})",
                f"ε = {dp['epsilon_pld']:.2f} (PLD), {dp['epsilon_rdp']:.2f} (RDP), "
                f"{dp['rounds_accounted']} rounds",
            )
        )
    if final.get("dp_sgd"):
        rows.append(dp_sgd_summary_row(final["dp_sgd"]))
    privacy = results.get("privacy") or {}
    if privacy.get("min_cell_count", 0) > 1:  # the survival metrics above came from coarsened counts
        rows.append(
            (
                f"small cells (privacy.min_cell_count={privacy['min_cell_count']})",
                "node bins and cells < k coarsened: fill values and IPCW metrics approximate",
            )
        )
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(
        f"  best round {final['best_round']} of {final['rounds_run']} | "
        f"total {timing['total_seconds']:.1f}s, "
        f"compile ~{timing['compile_seconds']:.1f}s, {timing['round_compilations']} round compilation(s)\n"
    )
