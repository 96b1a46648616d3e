"""One experiment run: sources → data → backend → results. The driver only wires the stages."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rhd import results as res
from fedjax_rhd.cohorts.sources import SourceSpec, load_harmonised, load_source
from fedjax_rhd.config import RunConfig
from fedjax_rhd.data import build_federated_data
from fedjax_rhd.federation.finetune import finetuned_results
from fedjax_rhd.federation.participation import ParticipationConfig
from fedjax_rhd.federation.run_state import CHECKPOINT_NAME, check_resumable, read_identity, run_identity
from fedjax_rhd.federation.simulator import TRACE_COUNTS, TrainSchedule, run_simulation, stacked_risks
from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.io import save_params
from fedjax_rhd.jax_setup import enable_compilation_cache
from fedjax_rhd.strategies import AlgorithmSpec
from fedjax_rhd.tracking import final_metrics, make_tracker, round_metrics
from fedjax_rhd.typing import Tracker
from harmonize.registry import EXPORT_SOURCES, TABLE_SOURCES


def run(
    config: RunConfig, output_dir: str | Path, resolved_config: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run one experiment and write ``results.json`` into ``output_dir``.

    The tracker starts first, so one that cannot start fails the run before any work.
    ``resolved_config`` is the composed config as plain containers (recorded as is; default:
    ``config.to_json()``).
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    tracker = make_tracker(config.tracker, output_dir)
    try:
        results = _run(config, resolved_config or config.to_json(), output_dir, tracker)
    except BaseException:
        tracker.finish(success=False)
        raise
    tracker.finish(success=True)
    return results


def _run(config: RunConfig, resolved: dict[str, Any], output_dir: Path, tracker: Tracker) -> dict[str, Any]:
    started = time.perf_counter()
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # no "libtpu not found" noise
    enable_compilation_cache()
    uc, seed = config.use_case, config.seed
    guide = cached_guide(uc.guide_name)  # parsed once per multirun worker
    table, card, score_name, score_table = _load(config)
    data = build_federated_data(
        table, guide, config.split, pooled=config.strategy.algorithm == "centralized",
        scenario=config.scenario, reduce=uc.reductions,
    )  # fmt: skip
    spec, s = config.algorithm_spec(data.num_features, data.guide), config.strategy
    tracker.log_config(resolved)
    fed = _federate(config, spec, data, resolved, card["id"], output_dir, tracker)
    boot = dict(n_boot=config.bootstrap, seed=seed.split)
    final = res.final_metrics(
        data, main_risk=fed["main_risk"], node_risks=fed["node_risks"], has_global=fed["global"] is not None,
        best_round=fed["sim"].best_round, rounds=fed["sim"].rounds, **boot,
    )  # fmt: skip
    final["clinical_score"], test_scores = res.clinical_score_on_test(
        score_name, score_table, data, fed["main_risk"], **boot
    )
    final.update(res.survival_block(spec, data, fed["global"], fed["sim"].node_params))
    tuned = finetuned_results(spec, s.finetune_epochs, seed.train, fed["global"], data, boot)
    if tuned is not None:
        final["personalized"] = tuned["final"]
    params = {"nodes": fed["sim"].node_params}
    checkpoint = save_params(
        output_dir / "params.npz", params if fed["global"] is None else {"global": fed["global"], **params}
    )
    res.predictions(
        data, fed["main_risk"], fed["node_risks"], tuned and tuned["columns"], test_scores
    ).write_parquet(output_dir / res.PREDICTIONS_FILE)
    sim = fed["sim"]
    steady = float(np.median(sim.round_seconds)) if sim.round_seconds else 0.0
    results: dict[str, Any] = {
        "config": resolved,
        "dataset": res.dataset_block(card, guide.layers),
        "nodes": res.nodes_block(
            data, None if config.split.natural or spec.pooled else config.split.fractions
        ),
        "scenario": {"name": config.scenario.name, "nodes": list(data.scenario)},
        "preprocessing": data.preprocessor.to_json(),
        "rounds": sim.rounds,
        "final": final,
        "timing": {
            "total_seconds": time.perf_counter() - started,
            "compile_seconds": max(sim.first_round_seconds - steady, 0.0),
            "round_seconds": [sim.first_round_seconds, *sim.round_seconds],
            "round_compilations": fed["compilations"],
        },
        "env": res.environment(),
        "checkpoint": checkpoint.name,
    }
    path = res.write_results(results, output_dir)
    tracker.log_final(final_metrics(final), {"results": path, "checkpoint": output_dir / checkpoint.name})
    res.print_summary(results)
    return results


def _load(config: RunConfig) -> Any:
    uc = config.use_case
    guide = cached_guide(uc.guide_name)
    source = SourceSpec(uc.source, uc.n_patients, config.seed.data, config.data_root, config.real_data_root)
    if uc.source in (*TABLE_SOURCES, *EXPORT_SOURCES, "csv"):
        return load_harmonised(
            guide, source, use_case=uc.name, guide_name=uc.guide_name, dataset=uc.dataset,
            n_centres=uc.n_centres, mapping=uc.mapping, progress=config.progress, treatment=uc.treatment,
        )  # fmt: skip
    return load_source(guide, source)


def _risks(spec: AlgorithmSpec, stacked_params: Any, data: Any) -> np.ndarray:
    return np.asarray(stacked_risks(spec, stacked_params, jnp.asarray(data.test.x), data.test.observed))


def _federate(config, spec, data, resolved, dataset_id, output_dir, tracker) -> dict[str, Any]:  # INTERIM
    s, seed, b = config.strategy, config.seed, config.backend
    participation = ParticipationConfig(
        sample_fraction=s.sampling.fraction, sample_min_nodes=s.sampling.min_nodes, sample_seed=seed.sample,
        fail_probability=b.failures.probability, down=tuple((d.node, d.from_round) for d in b.failures.down),
        fail_seed=seed.failure, time_limit=b.time_limit, seconds_per_row=b.timing.seconds_per_row,
        jitter=b.timing.jitter, slowdown=tuple((d.node, d.factor) for d in b.timing.slowdown),
        min_nodes=s.min_nodes, accept_failures=s.accept_failures,
    )  # fmt: skip

    def on_round(record: dict[str, Any]) -> None:
        from fedjax_rhd.tracking import curve_round

        if curve_round(record["round"], config.curve_every):
            node_risk = _risks(spec, record["client_params"], data)
            glob = None
            if record["server_params"] is not None:
                glob = _risks(spec, jax.tree.map(lambda p: p[None], record["server_params"]), data)[0]
            res.add_round_curves(record, node_risk, glob, data, config.curve_every)
        tracker.log_metrics(round_metrics(record, list(data.node_names)), step=record["round"])

    checkpoint_path = output_dir / CHECKPOINT_NAME
    identity = run_identity(resolved, dataset_id)
    if config.resume is not None:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"resume={config.resume}: no {CHECKPOINT_NAME} in that directory")
        check_resumable(read_identity(checkpoint_path), identity, checkpoint_path)
    before = TRACE_COUNTS["round"]
    schedule = TrainSchedule(s.rounds, s.patience, seed.init, seed.train)
    sim = run_simulation(
        spec, data, schedule, on_round=on_round, progress=config.progress, participation=participation,
        checkpoint=checkpoint_path, identity=identity, resume=config.resume is not None,
        checkpoint_every=config.checkpoint_every,
    )  # fmt: skip
    compilations = TRACE_COUNTS["round"] - before
    node_risks = _risks(spec, sim.node_params, data)
    if sim.global_params is not None:
        main_risk = _risks(spec, jax.tree.map(lambda p: p[None], sim.global_params), data)[0]
    else:
        main_risk = node_risks[0]  # centralized: the pooled model; local: the biggest node's own model
    return {"sim": sim, "global": sim.global_params, "node_risks": node_risks, "main_risk": main_risk,
            "compilations": compilations}  # fmt: skip
