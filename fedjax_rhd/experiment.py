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

from fedjax_rhd.config import ExperimentSettings
from fedjax_rhd.data.federated import FederatedData, build_federated_data
from fedjax_rhd.federation.finetune import finetuned_results
from fedjax_rhd.federation.participation import participation_summary
from fedjax_rhd.federation.run_state import CHECKPOINT_NAME, check_resumable, read_identity, run_identity
from fedjax_rhd.federation.simulator import TRACE_COUNTS, run_simulation, stacked_risks
from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.io import save_params
from fedjax_rhd.jax_setup import enable_compilation_cache
from fedjax_rhd.metrics.clinical import clinical_score_result, scores_on_test
from fedjax_rhd.metrics.concordance import bootstrap_cindex, concordance_index
from fedjax_rhd.metrics.evaluation import survival_metrics
from fedjax_rhd.models import config_for_guide
from fedjax_rhd.sources import UseCase, load_use_case
from fedjax_rhd.tracking import curve_round, final_metrics, make_tracker, round_metrics
from fedjax_rhd.typing import Tracker

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


def _survival_block(spec: Any, data: FederatedData, sim: Any) -> dict[str, Any]:
    """Uno's C, td-AUC and IBS of the main model (the global one, else node 1's own)."""
    if sim.global_params is not None:
        params, nodes = sim.global_params, None
    else:
        params, nodes = jax.tree.map(lambda p: p[0], sim.node_params), [0]
    try:
        return survival_metrics(spec, data, params, baseline_nodes=nodes)
    except ValueError as err:  # e.g. too short a test follow-up: record why, keep the run
        logging.getLogger(__name__).warning("survival metrics not computed: %s", err)
        missing = {"uno_c_test": None, "td_auc_test": None, "ibs_test": None}
        return {**missing, "survival_eval": {"error": str(err)}}


def validate_results(results: dict[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` if ``results`` breaks the committed schema."""
    jsonschema.validate(results, json.loads(SCHEMA_PATH.read_text()))


def run(settings: ExperimentSettings, output_dir: str | Path) -> dict[str, Any]:
    """Run one experiment and write ``results.json`` into ``output_dir``.

    The tracker starts first, so one that cannot start fails the run before any work.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tracker = make_tracker(settings.tracker, output_dir)
    try:
        results = _run(settings, output_dir, tracker)
    except BaseException:
        tracker.finish(success=False)
        raise
    tracker.finish(success=True)
    return results


def _run(settings: ExperimentSettings, output_dir: Path, tracker: Tracker) -> dict[str, Any]:
    started = time.perf_counter()
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # no "libtpu not found" noise
    enable_compilation_cache()
    guide = cached_guide(settings.guide)  # parsed once per multirun worker
    # One data path for every source: source -> FHIR R5 -> ML-ready table, built once and cached.
    use_case = UseCase(
        name=settings.use_case,
        guide=settings.guide.removesuffix("+treatment"),  # settings carry the layered guide's name
        source=settings.source,
        n_patients=settings.n_patients,
        dataset=settings.dataset,
        n_centres=settings.n_centres,
        mapping=settings.mapping,
        reduce=dict(settings.reduce),
        treatment=settings.treatment,
    )
    df, card, score_name, score_table = load_use_case(
        use_case,
        seed_data=settings.seed_data,
        data_root=settings.data_root,
        real_data_root=settings.real_data_root,
        progress=settings.progress,
    )
    data = build_federated_data(
        df,
        guide,
        settings.split,
        pooled=settings.spec.pooled,
        scenario=settings.scenario,
        reduce=settings.reduce,
    )
    spec = dataclasses.replace(
        settings.spec,
        num_features=data.num_features,
        model_config=config_for_guide(settings.spec.model_config, data.guide),
    )
    settings = dataclasses.replace(settings, spec=spec)

    tracker.log_config(settings.resolved_config or {})
    traces_before = TRACE_COUNTS["round"]

    def on_round(record: dict[str, Any]) -> None:
        # Test C-index per round is reported for the curves, never used to select; at round 1
        # and every curve_every-th round (validation, which selects, runs every round).
        if not curve_round(record["round"], settings.curve_every):
            tracker.log_metrics(round_metrics(record, list(data.node_names)), step=record["round"])
            return
        node_risk = _test_risks(settings, record["client_params"], data)
        record["c_index_test_nodes"] = [_c_index(data, r) for r in node_risk]
        if record["server_params"] is not None:
            glob = _test_risks(settings, jax.tree.map(lambda p: p[None], record["server_params"]), data)[0]
            record["c_index_test_global"] = _c_index(data, glob)
        tracker.log_metrics(round_metrics(record, list(data.node_names)), step=record["round"])

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
        checkpoint_every=settings.checkpoint_every,
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
        "clinical_score": None,  # filled below on the same test rows
        "ibs_test": None,
        "n_test": int(len(time_np)),
        "n_test_events": int(event_np.sum()),
        "participation": participation_summary(sim.rounds, data.node_names),
    }
    test_scores = None if score_table is None else scores_on_test(score_table, data.test_patient_ids)
    if test_scores is not None:
        score = test_scores["clinical_score"].cast(pl.Float64).fill_null(np.nan).to_numpy()
        final["clinical_score"] = clinical_score_result(
            score_name, score, time_np, event_np, main_risk, **boot
        )
    final.update(_survival_block(spec, data, sim))
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
    if test_scores is not None:
        predictions = pl.concat([predictions, test_scores.drop("patient_id")], how="horizontal")
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
            "guide_version": card["guide_version"],
            "layers": list(guide.layers),  # optional guide layers, e.g. ["treatment"]
        },
        "nodes": [
            {"name": n, "n_train": a, "n_val": b, "fraction": f}
            for n, a, b, f in zip(
                data.node_names,
                data.n_train,
                data.n_val,
                data.shares() if settings.split.natural or spec.pooled else settings.split.fractions,
                strict=True,
            )
        ],
        "scenario": {"name": settings.scenario.name, "nodes": list(data.scenario)},
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
    files = {"results": output_dir / "results.json", "checkpoint": output_dir / checkpoint.name}
    tracker.log_final(final_metrics(final), files)
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
    if final["clinical_score"] is not None:
        cs = final["clinical_score"]
        rows.append((f"{cs['name']} ({cs['n_scored']} rows scored)", _fmt(cs["c_index_test"])))
    if final.get("uno_c_test") is not None:
        rows.append(("main model: Uno's C (IPCW)", f"{final['uno_c_test']:.3f}"))
        rows.append(("main model: mean td-AUC", f"{final['td_auc_test']['mean']:.3f}"))
        rows.append(("main model: integrated Brier", f"{final['ibs_test']:.3f}"))
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    print(
        f"  best round {final['best_round']} of {final['rounds_run']} | "
        f"total {timing['total_seconds']:.1f}s, "
        f"compile ~{timing['compile_seconds']:.1f}s, {timing['round_compilations']} round compilation(s)\n"
    )
