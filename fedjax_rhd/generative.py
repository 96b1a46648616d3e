"""What a generative run does after training: fit the latent prior, sample, validate, write.

The strategy and backend train a ``GenerativeModel`` exactly as a survival model (init, loss,
rounds, federated validation). Then, in the driver (``fedjax_rhd.experiment``):

1. each model to sample (the global one; under ``local`` every node's own, node 1 first; under
   ``centralized`` the pooled node's) gets its latent prior by federated variational EM: every
   round is one ``backend.node_statistic("latent_mixture", ...)`` call over the nodes whose rows
   trained it, and only per-component sums come back (``fedjax_rhd.models.bgm``);
2. the generator (network, mixture, the federated preprocessing's centre and scale, the largest
   follow-up from the ``max_time`` statistic) samples ``n`` rows with ``seed.synthetic``; the table
   is written to ``synthetic.parquet``;
3. on a benchmark holdout (simulated cohorts: the manager keeps the global test set, and the run
   itself partitioned the cohort), the synthetic table is validated against the training rows
   and the holdout (``fedjax_rhd.metrics.synthetic.validation_report``); the full report goes to
   ``validation_report.json`` and its headline numbers to ``results.json``. With real centres
   (``final.test_set == "federated"``) no rows may reach the manager, so nothing is validated here.

CTGAN (``model=ctgan``) has no latent prior: before training, :func:`fit_before_training` fits its
mode-specific normaliser (per continuous column, federated variational EM over the node
statistic ``column_modes``) and the discrete levels' counts (``level_counts``) into its config, and
the generator after training is the networks plus the federated scaling.

Survival-only results (C-index, Breslow baselines, the clinical score) do not apply and are absent.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np
import polars as pl

from fedjax_rhd.data import FederatedData
from fedjax_rhd.federation.backend import Backend
from fedjax_rhd.federation.loop import FederationResult
from fedjax_rhd.federation.participation import participation_summary
from fedjax_rhd.io import save_params
from fedjax_rhd.metrics.synthetic import privacy_gate, privacy_metrics, validation_report
from fedjax_rhd.metrics.synthetic._columns import finite_or_none
from fedjax_rhd.models import bgm, ctgan_transform
from fedjax_rhd.models.ctgan import sample_counted
from fedjax_rhd.models.tabular import decode_table, table_schema
from fedjax_rhd.strategies import AlgorithmSpec, build_model
from fedjax_rhd.strategies.dp_sgd import summary_row as dp_sgd_summary_row
from fedjax_rhd.synthetic_export import table_id
from harmonize.identity import atomic_write_text

SYNTHETIC_FILE = "synthetic.parquet"
REPORT_FILE = "validation_report.json"
_SAMPLE_PURPOSE = 2  # fold_in tag of the synthetic draws (1: the mixture's initial means, in bgm)


def generators_to_sample(
    fed: FederationResult, node_names: tuple[str, ...]
) -> list[tuple[Any, list[int] | None, str]]:
    """``(params, nodes whose rows trained them (None: all), label)`` of every model to sample.

    The global model when there is one; under a personalised strategy every node's own model
    (``local``: each node alone, the study's Figure 3; ``centralized``: the one pooled node), node 1 first.
    """
    if fed.global_params is not None:
        return [(fed.global_params, None, "global")]
    return [
        (jax.tree.map(lambda p, k=k: p[k], fed.node_params), [k], name) for k, name in enumerate(node_names)
    ]


def fit_latent_mixture(
    backend: Backend, spec: AlgorithmSpec, params: Any, nodes: list[int] | None, seed: int
) -> bgm.MixtureFit:
    """The federated variational EM of ``models.bgm.fit_federated`` over ``backend``'s nodes."""
    config = spec.model_config

    def ask_nodes(inputs: bgm.EStepInputs) -> bgm.SufficientStatistics:
        message = {**inputs._asdict(), "min_count": np.asarray(config.bgm_node_min_count, np.float64)}
        replies = backend.node_statistic("latent_mixture", message, params=params, nodes=nodes)
        return bgm.add_statistics(
            [bgm.SufficientStatistics(r["count"], r["first"], r["second"]) for r in replies]
        )

    fit, _ = bgm.fit_federated(
        ask_nodes, config.latent_dim, n_components=config.bgm_components, seed=seed,
        max_iter=config.bgm_max_iter, tol=config.bgm_tol, min_count=config.bgm_min_count,
        weight_type=config.bgm_weight_prior, reg_covar=config.bgm_reg_covar,
    )  # fmt: skip
    return fit


def fit_before_training(spec: AlgorithmSpec, data: FederatedData, seed: int) -> AlgorithmSpec:
    """``spec`` with what its model fits from node statistics before training (CTGAN), else itself.

    CTGAN's mode-specific normaliser (``ctgan_transform.fit_modes``: federated variational EM,
    each round one ``column_modes`` statistic of every node) and its discrete levels' counts
    (``level_counts``, summed) go into the model config, so every backend's spec carries them.
    The statistics are asked of an in-process simulator over the run's partition (the rows the
    driver already holds, as for the data layer's federated preprocessing); the nodes send only
    per-mode sums and per-level counts.
    """
    config = spec.model_config
    if not hasattr(config, "with_fit"):
        return spec
    from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig  # noqa: PLC0415

    nodes = SimulatorBackend(SimulatorConfig(), data, spec)

    def ask_nodes(columns: list[int], inputs: list[bgm.EStepInputs]) -> list[bgm.SufficientStatistics]:
        message = {
            "columns": np.asarray(columns, np.int64),
            **{k: np.stack([getattr(e, k) for e in inputs]) for k in bgm.EStepInputs._fields},
            "min_count": np.asarray(config.mode_node_min_count, np.float64),
        }
        replies = nodes.node_statistic("column_modes", message)
        total = [sum(r[k] for r in replies) for k in bgm.SufficientStatistics._fields]
        return [bgm.SufficientStatistics(*(t[a] for t in total)) for a in range(len(columns))]

    layout = ctgan_transform.make_layout(config.schema, config.modes)
    fit = ctgan_transform.fit_modes(
        ask_nodes, layout.n_continuous, n_modes=config.modes, seed=seed, max_iter=config.mode_max_iter,
        tol=config.mode_tol, weight_concentration=config.mode_weight_prior,
        weight_threshold=config.mode_weight_threshold, min_count=config.mode_min_count,
    )  # fmt: skip
    counts = sum(r["counts"] for r in nodes.node_statistic("level_counts", {}))
    return dataclasses.replace(spec, model_config=config.with_fit(fit.modes, counts))


def transform_block(spec: AlgorithmSpec) -> dict[str, Any]:
    """``final.generative.transform`` (CTGAN): the fitted modes per continuous column, level counts."""
    config = spec.model_config
    weights, means, stds = (np.asarray(a) for a in config.fitted_modes)
    names = [c.name for c in config.schema if c.kind == "continuous"] + ["log_time"]
    return {
        "columns": {
            name: {"weights": w[w > 0].tolist(), "means": m[w > 0].tolist(), "sds": s[w > 0].tolist()}
            for name, w, m, s in zip(names, weights, means, stds, strict=True)
        },
        "levels_counted": int(np.sum(config.level_counts)),
        "node_min_count": config.mode_node_min_count,
        "min_count": config.mode_min_count,
    }


def clipped_values(
    backend: Backend, spec: AlgorithmSpec, data: FederatedData, params: Any, nodes: list[int] | None,
    key: jax.Array, n: int,
) -> dict[str, int]:  # fmt: skip
    """CTGAN: per continuous column and ``time``, how many of the ``n`` draws with ``key`` were clipped.

    The same generator and key as :func:`draw_synthetic`, so the counts are those of the written table.
    """
    gen = generator(params, None, data, largest_follow_up(backend, nodes))
    return sample_counted(spec.model_config, spec.num_features, gen, key, n)[1]


def generator(
    params: Any, fit: bgm.MixtureFit | None, data: FederatedData, max_time: float
) -> dict[str, Any]:
    """What ``GenerativeModel.sample`` takes: network, mixture (none: CTGAN) and the federated scaling."""
    prior = None
    if fit is not None:
        chol = np.stack([np.linalg.cholesky(c) for c in fit.state.covariances])
        prior = {
            "weights": np.asarray(fit.weights, np.float32),
            "means": np.asarray(fit.state.means, np.float32),
            "cholesky": np.asarray(chol, np.float32),
        }
    return {
        "network": params,
        "prior": prior,
        "scaling": {
            "center": data.preprocessor.center,
            "scale": data.preprocessor.scale,
            "max_time": np.asarray(max_time),
        },
    }


def training_table(data: FederatedData, nodes: list[int] | None) -> pl.DataFrame:
    """The training rows of ``nodes`` (None: all) in the guide's schema, as the nodes hold them."""
    schema = table_schema(data.guide)
    chosen = range(data.num_nodes) if nodes is None else nodes
    parts = [data.encoded[k][0] for k in chosen]
    return decode_table(
        np.concatenate([p.values for p in parts]), np.concatenate([p.observed for p in parts]),
        np.concatenate([p.time for p in parts]), np.concatenate([p.event for p in parts]), schema,
    )  # fmt: skip


def draw_synthetic(
    backend: Backend,
    spec: AlgorithmSpec,
    data: FederatedData,
    params: Any,
    nodes: list[int] | None,
    *,
    seed: int,
    n: int,
    key: jax.Array,
) -> tuple[pl.DataFrame, bgm.MixtureFit | None]:
    """Fit ``params``' latent mixture over ``nodes`` (federated EM) and draw ``n`` rows with ``key``.

    A model without a latent space (CTGAN) has no mixture to fit: the fit is None.

    Every real row stays on its node: the mixture comes from per-component sums and the time
    bound from the ``max_time`` statistic.
    """
    sampler, fit = trained_generator(backend, spec, data, params, nodes, seed)
    return build_model(spec).sample(sampler, key, n), fit


def largest_follow_up(backend: Backend, nodes: list[int] | None) -> float:
    """The longest follow-up over ``nodes`` (None: all): the ``max_time`` statistic, no row leaves a node."""
    return max(float(r["max_time"]) for r in backend.node_statistic("max_time", {}, nodes=nodes))


def trained_generator(
    backend: Backend,
    spec: AlgorithmSpec,
    data: FederatedData,
    params: Any,
    nodes: list[int] | None,
    seed: int,
) -> tuple[dict[str, Any], bgm.MixtureFit | None]:
    """What ``sample`` takes for network ``params`` trained over ``nodes``, and the latent mixture's fit.

    A model with a latent space (VAE-BGM) gets its mixture by federated EM over ``nodes``; one
    without (CTGAN) has none (fit None).
    """
    fit = None if build_model(spec).latent is None else fit_latent_mixture(backend, spec, params, nodes, seed)
    return generator(params, fit, data, largest_follow_up(backend, nodes)), fit


def holdout_table(table: pl.DataFrame, data: FederatedData) -> pl.DataFrame:
    """The benchmark holdout (the global test rows) in the guide's schema."""
    test = table.filter(pl.col("patient_id").is_in(list(data.test_patient_ids)))
    return test.select([*data.guide.feature_names, "time", "event"])


def headline(report: dict[str, Any]) -> dict[str, Any]:
    """The numbers ``results.json`` keeps from a validation report (the rest is in its file)."""
    fid, priv = report["fidelity"], report["privacy"]
    passed, failing = privacy_gate(report)
    return {
        "csf": fid["csf"],
        "gsf": fid["gsf"],
        "quality_sdmetrics_style": fid["quality_sdmetrics_style"],
        "detection_auc": fid["detection"]["auc"],
        "detection_score": fid["detection"]["score"],
        "tstr_difference": report["utility"]["tstr"]["difference"],
        "tstr_deepsurv_difference": report["utility"].get("tstr_deepsurv", {}).get("difference"),
        "exact_copy_share": priv["exact_copy_share"],
        "dcr_closer_to_train_share": priv["dcr_closer_to_train_share"],
        "nndr_p05": priv["nndr_p05"],
        "mia_auc": priv["mia_auc"],
        "validity_total": report["validity"]["total"],
        "privacy_gate": {"passed": bool(passed), "failing": list(failing)},
    }


def generate_and_validate(
    output_dir: Path,
    *,
    spec: AlgorithmSpec,
    backend: Backend,
    data: FederatedData,
    fed: FederationResult,
    table: pl.DataFrame,
    seed: int,
    benchmark_holdout: bool,
) -> dict[str, Any]:
    """Fit each model's mixture, sample, write the tables (and reports); ``final.generative``.

    The main block is the global model's (else node 1's); under a personalised strategy with more
    than one node, ``nodes`` holds every other node's own generator, sampled and validated alike
    (files ``synthetic_<node>.parquet``, ``validation_report_<node>.json``).
    """
    reference = holdout = None
    if benchmark_holdout:  # the rows the manager legitimately holds (simulated cohorts)
        reference, holdout = training_table(data, None), holdout_table(table, data)
    blocks = []
    for i, (params, nodes, label) in enumerate(generators_to_sample(fed, data.node_names)):
        suffix = "" if i == 0 else f"_{label}"
        blocks.append(
            _generate_one(
                output_dir,
                suffix,
                spec=spec,
                backend=backend,
                data=data,
                params=params,
                nodes=nodes,
                label=label,
                seed=seed,
                reference=reference,
                holdout=holdout,
            )  # fmt: skip
        )
    main = {"model": spec.model_name, **blocks[0]}
    if len(blocks) > 1:
        main["nodes"] = blocks[1:]
    return main


def _generate_one(
    output_dir: Path,
    suffix: str,
    *,
    spec: AlgorithmSpec,
    backend: Backend,
    data: FederatedData,
    params: Any,
    nodes: list[int] | None,
    label: str,
    seed: int,
    reference: pl.DataFrame | None,
    holdout: pl.DataFrame | None,
) -> dict[str, Any]:
    config = spec.model_config
    n = config.n_synthetic or int(sum(data.n_train[k] for k in (nodes or range(data.num_nodes))))
    key = jax.random.fold_in(jax.random.key(seed), _SAMPLE_PURPOSE)
    synthetic, fit = draw_synthetic(backend, spec, data, params, nodes, seed=seed, n=n, key=key)
    path = f"{Path(SYNTHETIC_FILE).stem}{suffix}.parquet"
    synthetic.write_parquet(output_dir / path)
    block: dict[str, Any] = {
        "trained_on": label,
        # the content id the export checks: a table changed after validation is refused
        "synthetic": {"path": path, "n": n, "seed": seed, "id": table_id(synthetic, data.guide)},
    }
    if fit is None:  # CTGAN: the normaliser fitted before training; the same draws counted for clipping
        block["transform"] = {
            **transform_block(spec),
            "clipped": clipped_values(backend, spec, data, params, nodes, key, n),
        }
    else:
        block["mixture"] = {
            "components": len(fit.weights),
            "dropped": fit.dropped,
            "iterations": fit.iterations,
            "converged": fit.converged,
            "weights": fit.weights.tolist(),
            "counts": fit.counts.tolist(),
            "min_count": config.bgm_min_count,
            "node_min_count": config.bgm_node_min_count,
        }
    block["validation"] = None
    if reference is None or holdout is None:
        block["validation_skipped"] = (
            "test_set=federated: each centre keeps its rows; validating needs real rows at the manager"
        )
        return block
    report = validation_report(reference, synthetic, holdout, data.guide)
    own_rows = nodes is not None and data.num_nodes > 1
    if own_rows:  # privacy against the rows this generator saw
        privacy = privacy_metrics(training_table(data, nodes), synthetic, holdout, data.guide, seed=0)
        report = finite_or_none({**report, "privacy": privacy})
    report_path = f"{Path(REPORT_FILE).stem}{suffix}.json"
    atomic_write_text(output_dir / report_path, json.dumps(report, indent=1, allow_nan=False))
    block["validation"] = {
        "reference": "federation_training_rows",
        "privacy_members": label if own_rows else "federation_training_rows",
        "n_real_train": reference.height,
        "n_holdout": holdout.height,
        "report": report_path,
        **headline(report),
    }
    logging.getLogger(__name__).info("synthetic table (%s): %s", label, block["validation"])
    return block


def generative_final(
    data: FederatedData, fed: FederationResult, block: dict[str, Any], test_set: str
) -> dict[str, Any]:
    """``results.json`` ``final`` of a generative run: training, nodes and the ``generative`` block."""
    return {
        "kind": "generative",
        "best_round": fed.best_round,
        "rounds_run": len(fed.rounds),
        # what a sweeper minimises: the selected model's federated validation loss (never the holdout)
        "validation_objective": None
        if fed.validation_objective != fed.validation_objective
        else float(fed.validation_objective),
        "nodes": [
            {"name": name, "n_train": n_tr, "n_val": n_va, "share": share}
            for name, n_tr, n_va, share in zip(
                data.node_names, data.n_train, data.n_val, data.shares(), strict=True
            )
        ],
        "test_set": test_set,
        "participation": participation_summary(fed.rounds, data.node_names),
        "generative": block,
    }


def save_checkpoint(output_dir: Path, fed: FederationResult) -> Path:
    """``params.npz``: the global and node parameters by tree path, as a survival run writes them."""
    params = {"nodes": fed.node_params}
    if fed.global_params is not None:
        params = {"global": fed.global_params, **params}
    return save_params(output_dir / "params.npz", params)


def print_summary(results: dict[str, Any]) -> None:
    """A short summary of a generative run."""
    cfg, final = results["config"], results["final"]
    gen = final["generative"]
    print(
        f"\n{cfg['use_case']['name']} | {cfg['strategy']['name']} | model={gen['model']} "
        f"seed.split={cfg['seed']['split']} | dataset {results['dataset']['id']}"
    )
    if "mixture" in gen:
        mix = gen["mixture"]
        fitted = (
            f"mixture {mix['components']} components ({mix['dropped']} dropped), "
            f"{mix['iterations']} EM rounds"
        )
    else:
        modes = [len(c["weights"]) for c in gen["transform"]["columns"].values()]
        fitted = f"modes per continuous column {modes}"
    print(f"  {gen['synthetic']['n']} synthetic rows -> {gen['synthetic']['path']}; {fitted}")

    def f(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    for block in [gen, *gen.get("nodes", [])]:
        val = block["validation"]
        if val is None:
            print(f"  {block['trained_on']}: not validated: {block.get('validation_skipped')}")
            continue
        print(
            f"  {block['trained_on']}: CSF {f(val['csf'])}  GSF {f(val['gsf'])}  "
            f"detection AUC {f(val['detection_auc'])}  MIA AUC {f(val['mia_auc'])}  "
            f"impossible values {val['validity_total']}  "
            f"privacy gate {'passed' if val['privacy_gate']['passed'] else 'failed'}"
        )
    if final.get("dp_sgd"):  # the network's training only: the mixture and synthetic draws are not covered
        name, value = dp_sgd_summary_row(final["dp_sgd"])
        print(f"  {name} (network weights only): {value}")
    print(f"  best round {final['best_round']} of {final['rounds_run']}\n")


def final_metrics(final: dict[str, Any]) -> dict[str, float]:
    """A generative ``final`` as flat tracker metrics (the validation's headline numbers)."""
    out = {"final/best_round": float(final["best_round"]), "final/rounds_run": float(final["rounds_run"])}
    val = final["generative"]["validation"] or {}
    for key in (
        "csf",
        "gsf",
        "quality_sdmetrics_style",
        "detection_auc",
        "tstr_difference",
        "mia_auc",
        "validity_total",
    ):
        if val.get(key) is not None:
            out[f"final/synthetic/{key}"] = float(val[key])
    return out
