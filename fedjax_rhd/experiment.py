"""One experiment run: data → federation → metrics → ``results.json``.

Called by the Hydra entry point with typed settings; writes ``results.json``
(validated against ``schemas/results.schema.json``) and a parameter checkpoint
into the run directory, and prints a summary table.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import jsonschema
import numpy as np
import polars as pl

from fedjax_rhd.checkpoint import save_params
from fedjax_rhd.config import ExperimentSettings
from fedjax_rhd.data import FederatedData, build_federated_data
from fedjax_rhd.datasets import load_or_build_simulated
from fedjax_rhd.federation.finetune import finetuned_results
from fedjax_rhd.federation.participation import participation_summary
from fedjax_rhd.federation.run_state import CHECKPOINT_NAME, check_resumable, read_identity, run_identity
from fedjax_rhd.federation.simulator import TRACE_COUNTS, run_simulation, stacked_risks
from fedjax_rhd.jax_setup import enable_compilation_cache
from fedjax_rhd.metrics import bootstrap_cindex, concordance_index
from fedjax_rhd.tracking import make_tracker
from harmonize.guide import load_guide

SCHEMA_PATH = Path(__file__).resolve().parent / "schemas" / "results.schema.json"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "numpy", "polars", "hydra-core", "omegaconf")


def _env() -> dict[str, Any]:
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


def _c_index(data: FederatedData, risk: np.ndarray) -> float:
    t = data.test
    return concordance_index(np.asarray(t.time), np.asarray(t.event), np.asarray(risk, dtype=np.float64))


def _test_risks(settings: ExperimentSettings, stacked_params: Any, data: FederatedData) -> np.ndarray:
    return np.asarray(
        stacked_risks(settings.spec, stacked_params, jnp.asarray(data.test.x), data.test.observed)
    )


def validate_results(results: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``results`` breaks the committed schema."""
    jsonschema.validate(results, json.loads(SCHEMA_PATH.read_text()))


def run(settings: ExperimentSettings, output_dir: str | Path) -> dict[str, Any]:
    """Run one experiment and write ``results.json`` into ``output_dir``."""
    started = time.perf_counter()
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # no "libtpu not found" noise
    enable_compilation_cache()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if settings.source != "simulated":
        raise ValueError(f"use_case.source={settings.source!r}: only 'simulated' exists so far")

    guide = load_guide(settings.guide)
    df, card = load_or_build_simulated(
        guide, n=settings.n_patients, seed=settings.seed_data, data_root=settings.data_root
    )
    data = build_federated_data(df, guide, settings.split, pooled=settings.spec.pooled)
    spec = dataclasses.replace(settings.spec, num_features=data.num_features)
    settings = dataclasses.replace(settings, spec=spec)

    tracker = make_tracker(settings.tracker, output_dir)
    tracker.log_config(settings.resolved_config or {})
    traces_before = TRACE_COUNTS["round"]

    def on_round(record: dict[str, Any]) -> None:
        # Test C-index per round is reported for the curves, never used to select.
        node_risk = _test_risks(settings, record["client_params"], data)
        record["c_index_test_nodes"] = [_c_index(data, r) for r in node_risk]
        if record["server_params"] is not None:
            glob = _test_risks(settings, jax.tree.map(lambda p: p[None], record["server_params"]), data)[0]
            record["c_index_test_global"] = _c_index(data, glob)
        tracker.log_metrics(
            {
                "val_loss_federated": record["val_loss_federated"],
                **{
                    f"c_index_test/{n}": c
                    for n, c in zip(data.node_names, record["c_index_test_nodes"], strict=True)
                },
                **(
                    {"c_index_test/global": record["c_index_test_global"]}
                    if "c_index_test_global" in record
                    else {}
                ),
            },
            step=record["round"],
        )

    checkpoint_path = output_dir / CHECKPOINT_NAME
    identity = run_identity(settings.resolved_config, card["id"])
    if settings.resume is not None:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"resume={settings.resume}: no {CHECKPOINT_NAME} in that directory")
        check_resumable(read_identity(checkpoint_path), identity, checkpoint_path)
    sim = run_simulation(
        spec,
        data,
        settings.schedule,
        on_round=on_round,
        progress=settings.progress,
        participation=settings.participation,
        checkpoint=checkpoint_path,
        identity=identity,
        resume=settings.resume is not None,
    )
    compilations = TRACE_COUNTS["round"] - traces_before

    t = data.test
    time_np, event_np = np.asarray(t.time), np.asarray(t.event)
    node_risks = _test_risks(settings, sim.node_params, data)
    if sim.global_params is not None:
        main_risk = _test_risks(settings, jax.tree.map(lambda p: p[None], sim.global_params), data)[0]
    else:
        # centralized: the pooled model; local: the biggest node's own model.
        main_risk = node_risks[0]
    boot = dict(n_boot=settings.bootstrap, seed=settings.split.seed)
    final: dict[str, Any] = {
        "c_index_test": bootstrap_cindex(time_np, event_np, main_risk, **boot),
        "best_round": sim.best_round,
        "rounds_run": len(sim.rounds),
        "global_model": None
        if sim.global_params is None
        else {"c_index_test": bootstrap_cindex(time_np, event_np, main_risk, **boot)},
        "nodes": [
            {
                "name": name,
                "n_train": n_tr,
                "n_val": n_va,
                "share": share,
                "c_index_test": bootstrap_cindex(time_np, event_np, risk, **boot),
            }
            for name, n_tr, n_va, share, risk in zip(
                data.node_names, data.n_train, data.n_val, data.shares(), node_risks, strict=True
            )
        ],
        "oracle_c_index_test": None
        if data.test_oracle_risk is None
        else bootstrap_cindex(time_np, event_np, data.test_oracle_risk, **boot),
        "clinical_score": None,
        "ibs_test": None,
        "n_test": int(len(time_np)),
        "n_test_events": int(event_np.sum()),
        "participation": participation_summary(sim.rounds, data.node_names),
    }
    personalized = finetuned_results(
        spec, settings.finetune_epochs, settings.schedule.seed_train, sim.global_params, data, boot
    )
    if personalized is not None:
        final["personalized"] = personalized["final"]
    checkpoint = save_params(
        output_dir / "params.npz",
        {"global": sim.global_params, "nodes": sim.node_params}
        if sim.global_params is not None
        else {"nodes": sim.node_params},
    )
    # Test-set predictions, so reports can pair methods on the same rows (paired bootstrap).
    predictions = pl.DataFrame(
        {
            "patient_id": list(data.test_patient_ids),
            "time": time_np,
            "event": event_np,
            "risk": main_risk,
            **{f"risk_{name}": risk for name, risk in zip(data.node_names, node_risks, strict=True)},
            **({} if data.test_oracle_risk is None else {"oracle_risk": data.test_oracle_risk}),
            **({} if personalized is None else personalized["columns"]),
        }
    )
    predictions.write_parquet(output_dir / "test_predictions.parquet")
    per_round = [sim.first_round_seconds, *sim.round_seconds]
    steady = float(np.median(sim.round_seconds)) if sim.round_seconds else 0.0
    results: dict[str, Any] = {
        "config": settings.resolved_config,
        "dataset": {
            "id": card["id"],
            "name": card["name"],
            "n_rows": card["n_rows"],
            "n_events": card["n_events"],
        },
        "nodes": [
            {"name": n, "n_train": a, "n_val": b, "fraction": f}
            for n, a, b, f in zip(
                data.node_names,
                data.n_train,
                data.n_val,
                settings.split.fractions if not spec.pooled else (1.0,),
                strict=True,
            )
        ],
        "preprocessing": data.preprocessor.to_json(),
        "rounds": sim.rounds,
        "final": final,
        "timing": {
            "total_seconds": time.perf_counter() - started,
            "compile_seconds": max(sim.first_round_seconds - steady, 0.0),
            "round_seconds": per_round,
            "round_compilations": compilations,
        },
        "env": _env(),
        "checkpoint": checkpoint.name,
    }
    validate_results(results)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1))
    tracker.log_metrics({"final/c_index_test": final["c_index_test"]["estimate"]}, step=len(sim.rounds))
    tracker.finish()
    print_summary(results)
    return results


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
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(
        f"  best round {final['best_round']} of {final['rounds_run']} | "
        f"total {timing['total_seconds']:.1f}s, "
        f"compile ~{timing['compile_seconds']:.1f}s, {timing['round_compilations']} round compilation(s)\n"
    )
