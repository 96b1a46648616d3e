"""One experiment run: sources → data → backend → results. The driver only wires the stages."""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from fedjax_rhd import executables
from fedjax_rhd import results as res
from fedjax_rhd.config import RunConfig
from fedjax_rhd.data import FederatedData, UnusableData, build_federated_data
from fedjax_rhd.data.given import with_role_column
from fedjax_rhd.federation.finetune import finetuned_results
from fedjax_rhd.federation.loop import run_federation
from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.federation.run_state import CHECKPOINT_NAME, run_identity
from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.jax_setup import enable_compilation_cache
from fedjax_rhd.models import MODELS, is_generative
from fedjax_rhd.score.state import write_scoring_state
from fedjax_rhd.sources import load_registered_dataset, load_use_case
from fedjax_rhd.tracking import final_metrics, make_tracker
from fedjax_rhd.typing import Tracker
from harmonize.datasets import load_reference
from harmonize.guide import Guide


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
    resolved = resolved_config or config.to_json()
    tracker = make_tracker(config.tracker, output_dir)
    try:
        results = _run(config, resolved, output_dir, tracker)
    except BaseException:
        tracker.finish(success=False)
        raise
    tracker.finish(success=True)
    # the compiled programs this run used, so that the next run of this configuration reads them ahead
    executables.remember_run_programs(resolved)
    return results


def run_data(
    config: RunConfig, guide: Guide
) -> tuple[FederatedData, pl.DataFrame, dict[str, Any], tuple[str, pl.DataFrame | None]]:
    """The run's federated data, as every path that needs it builds it (a run, Flower's node export).

    The use case's dataset; under ``split=given`` its role column (from the table or the dataset's
    ``reference.parquet``); under ``test.dataset`` the other registered dataset's rows as the test set;
    under ``split.holdout_centre`` one centre's rows (``fedjax_rhd.data.holdout``).

    Returns:
        ``(data, table, card, (score name, scores))``: the card carries ``test_dataset`` (the other
        dataset's card) under ``test.dataset``, the clinical score then the test dataset's; and
        ``holdout`` (``centre``, ``n_rows``, ``n_events``) under ``split.holdout_centre``.

    Raises:
        UnusableData: see :func:`fedjax_rhd.data.build_federated_data`, plus a ``test.dataset``
            holding the run's own rows.
    """
    uc = config.use_case
    table, card, score_name, score_table = load_use_case(
        uc, seed_data=config.seed.data, data_root=config.data_root, real_data_root=config.real_data_root,
        progress=config.progress,
    )  # fmt: skip
    test_rows = None
    if config.split.column is not None:  # split=given: the role column, from the table or its reference
        reference = load_reference(config.data_root, card["name"])
        table = with_role_column(table, reference, config.split.column, card["name"])
    if config.test.dataset is not None:  # external validation: another dataset's rows are the test set
        test_rows, test_card, score_name, score_table = load_registered_dataset(
            config.test.dataset, guide, data_root=config.data_root
        )
        if test_card["id"] == card["id"]:
            raise UnusableData(
                f"test.dataset={config.test.dataset} holds the same rows as the training dataset "
                f"{card['name']!r} (content id {card['id']}): every test row would also train"
            )
        card = {**card, "test_dataset": test_card}
    data = build_federated_data(
        table, guide, config.split, pooled=config.strategy.algorithm == "centralized",
        scenario=config.scenario, reduce=uc.reductions, dataset=card["name"], test_table=test_rows,
        min_cell_count=config.privacy.min_cell_count,
        isolated=isolated_nodes(config),
    )  # fmt: skip
    if data.holdout_centre is not None:  # leave one centre out: which centre, and its rows
        events = int(np.asarray(data.test.event).sum())
        held = {"centre": data.holdout_centre, "n_rows": len(data.test_patient_ids), "n_events": events}
        card = {**card, "holdout": held}
    return data, table, card, (score_name, score_table)


def isolated_nodes(config: RunConfig) -> bool:
    """Whether every node preprocesses alone: ``strategy=local`` with a survival model.

    A generative model (VAE-BGM, the Bayesian network) samples one synthetic table in the
    federation's units (``fedjax_rhd.generative``), so its runs keep the federation's statistics.
    """
    return config.strategy.algorithm == "local" and not is_generative(config.model.name)


def _run(config: RunConfig, resolved: dict[str, Any], output_dir: Path, tracker: Tracker) -> dict[str, Any]:
    started = time.perf_counter()
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)  # no "libtpu not found" noise
    enable_compilation_cache()
    executables.start_run_programs(resolved)  # the last identical run's programs, on a thread
    uc, s = config.use_case, config.strategy
    guide = cached_guide(uc.guide_name)  # parsed once per multirun worker
    data, table, card, (score_name, score_table) = run_data(config, guide)
    spec = config.algorithm_spec(data.num_features, data.guide)
    generative = is_generative(spec.model_name)
    if generative:  # the generative rooms load only for generative runs (a survival run's imports stay light)
        from fedjax_rhd import generative as gen  # noqa: PLC0415

        # CTGAN's normaliser and level counts, fitted from node statistics before any backend starts
        spec = gen.fit_before_training(spec, data, config.seed.synthetic)
    tracker.log_config(resolved)
    # Flower's processes and threads end with the run, also on an error or Ctrl-C.
    with contextlib.closing(
        make_backend(config.backend, data, spec, seed_failure=config.seed.failure)
    ) as backend:
        if s.algorithm == "sd_sharing":  # nodes train alone and send gated synthetic rows
            return _run_sharing(
                config, resolved, output_dir, tracker, spec, backend, data, table, card, started
            )
        if MODELS[spec.model_name].from_counts:  # a Bayesian network: node statistics, no gradient rounds
            return _run_network(
                config, resolved, output_dir, tracker, spec, backend, data, table, card, started
            )
        on_round = res.round_callback(backend, data, config.curve_every, tracker, curves=not generative)
        if generative:  # generative runs import their metrics (scipy.stats, scikit-learn) here only
            from fedjax_rhd import synthetic_rounds

            # CSF / GSF per round against the benchmark holdout (the study's Figure 3)
            on_round = synthetic_rounds.with_fidelity(
                on_round, config.fidelity_every, backend=backend, spec=spec, data=data, table=table,
                seed=config.seed.synthetic,
            )  # fmt: skip
        fed = run_federation(
            backend, config.schedule(), s.policy, seed_sample=config.seed.sample, progress=config.progress,
            on_round=on_round,
            desc=f"{s.name} rounds",
            checkpoint=output_dir / CHECKPOINT_NAME, identity=run_identity(resolved, _data_identity(card)),
            resume=config.resume is not None, checkpoint_every=config.checkpoint_every,
        )  # fmt: skip
        if generative:  # no risks, C-index, Breslow or clinical score: fit the prior, sample, validate
            block = gen.generate_and_validate(
                output_dir, spec=spec, backend=backend, data=data, fed=fed, table=table,
                seed=config.seed.synthetic, benchmark_holdout=res.test_set_kind(data) == "benchmark_holdout",
            )  # fmt: skip
            final = gen.generative_final(data, fed, block, res.test_set_kind(data))
            if spec.client.dp_sgd.enabled:  # the network's local steps; the mixture fit is not covered
                final["dp_sgd"] = res.dp_sgd_summary(spec, data, len(fed.rounds))
            results = res.write_generative_run(
                output_dir, resolved=resolved, card=card, layers=guide.layers, data=data, fed=fed,
                final=final,
                checkpoint=gen.save_checkpoint(output_dir, fed), scenario=config.scenario.name,
                fractions=None if config.split.natural or spec.pooled else config.split.fractions,
                started=started,
            )  # fmt: skip
            tracker.log_final(gen.final_metrics(results["final"]), res.output_files(output_dir, results))
            gen.print_summary(results)
            return results
        node_risks, main_risk = res.model_test_risks(backend, fed)
        boot = dict(n_boot=config.bootstrap, seed=config.seed.split)
        tuned = finetuned_results(
            backend, s.finetune_epochs, config.seed.train, fed.global_params, data.test, boot
        )
        results = res.write_run(
            output_dir, resolved=resolved, card=card, layers=guide.layers, data=data, spec=spec,
            backend=backend, fed=fed, node_risks=node_risks, main_risk=main_risk,
            clinical=(score_name, score_table), tuned=tuned, **boot,
            fractions=None if config.split.natural or spec.pooled else config.split.fractions,
            scenario=config.scenario.name, started=started,
        )  # fmt: skip
        # what fedjax-rhd-score needs to apply these models to other patients (fedjax_rhd/score/)
        write_scoring_state(
            output_dir, guide_name=uc.guide_name, guide=guide, card=card, data=data, spec=spec,
            backend=backend, params=res.run_params(fed, tuned), score_name=score_name,
        )  # fmt: skip
    tracker.log_final(final_metrics(results["final"]), res.output_files(output_dir, results))
    res.print_summary(results)
    return results


def _data_identity(card: dict[str, Any]) -> str:
    """The content ids a checkpoint is bound to: the dataset's, and ``test.dataset``'s when set."""
    test = card.get("test_dataset")
    return card["id"] if test is None else f"{card['id']}+test:{test['id']}"


def _run_network(
    config: RunConfig, resolved: dict[str, Any], output_dir: Path, tracker: Tracker, spec: Any,
    backend: Any, data: Any, table: Any, card: dict[str, Any], started: float,
) -> dict[str, Any]:  # fmt: skip
    """``model=bn``: the protocol (``fedjax_rhd.generative_bn``), sampled, validated, written."""
    from fedjax_rhd import generative as gen
    from fedjax_rhd import generative_bn

    fed, block, network = generative_bn.run_network(
        output_dir, spec=spec, backend=backend, data=data, table=table, seed=config.seed.synthetic,
        benchmark_holdout=res.test_set_kind(data) == "benchmark_holdout",
    )  # fmt: skip
    results = res.write_generative_run(
        output_dir, resolved=resolved, card=card, layers=data.guide.layers, data=data, fed=fed,
        final=gen.generative_final(data, fed, block, res.test_set_kind(data)), checkpoint=network,
        scenario=config.scenario.name,
        fractions=None if config.split.natural or spec.pooled else config.split.fractions, started=started,
    )  # fmt: skip
    tracker.log_final(gen.final_metrics(results["final"]), res.output_files(output_dir, results))
    generative_bn.print_summary(results)
    return results


def _run_sharing(
    config: RunConfig, resolved: dict[str, Any], output_dir: Path, tracker: Tracker, spec: Any,
    backend: Any, data: Any, table: Any, card: dict[str, Any], started: float,
) -> dict[str, Any]:  # fmt: skip
    """``strategy=sd_sharing`` (``fedjax_rhd.sd_sharing``): node-alone generators, gated rows, the pool."""
    from fedjax_rhd import generative as gen  # generative runs import their metrics here only
    from fedjax_rhd import sd_sharing

    s, seed = config.strategy, config.seed.synthetic
    fed = None
    if not MODELS[spec.model_name].from_counts:  # every node trains alone (local's rounds)
        fed = run_federation(
            backend, config.schedule(), s.policy, seed_sample=config.seed.sample, progress=config.progress,
            desc="sd_sharing: node-alone rounds",
        )  # fmt: skip
    generators, fits = sd_sharing.node_generators(backend, spec, data, fed, seed)
    if fits is not None:
        fed = sd_sharing.network_rounds(backend, spec, data, fits, started)
    retraining = None
    if s.retrain_on_pool:
        retraining = sd_sharing.Retraining(
            config.split, config.schedule(), s.policy, config.seed.sample, progress=config.progress
        )
    block = sd_sharing.share_and_validate(
        output_dir, spec=spec, backend=backend, data=data, table=table, generators=generators,
        thresholds=s.gate, retraining=retraining, seed=seed,
        benchmark_holdout=res.test_set_kind(data) == "benchmark_holdout",
    )  # fmt: skip
    results = res.write_generative_run(
        output_dir, resolved=resolved, card=card, layers=data.guide.layers, data=data, fed=fed,
        final=gen.generative_final(data, fed, block, res.test_set_kind(data)),
        checkpoint=sd_sharing.save_checkpoint(output_dir, block["sharing"]), scenario=config.scenario.name,
        fractions=None if config.split.natural or spec.pooled else config.split.fractions, started=started,
    )  # fmt: skip
    tracker.log_final(gen.final_metrics(results["final"]), res.output_files(output_dir, results))
    sd_sharing.print_summary(results)
    return results
