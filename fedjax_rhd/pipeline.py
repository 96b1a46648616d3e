"""The reproducible study as DVC stages: simulated export → FHIR → dataset → runs → report.

``dvc.yaml`` calls this module once per stage and use case (its ``foreach`` branches,
keyed by the entries of ``use_cases`` in ``params.yaml``); ``experiments/survival_table``
calls the same functions for every entry at once. The parameters come from
``params.yaml``, which is ``conf/pipeline.yaml`` composed by Hydra (``params`` writes it;
DVC's Hydra integration rewrites it on ``dvc exp run -S ...``). Every run goes through the
``fedjax-rhd`` entry point as a Hydra multirun, so a pipeline run is the same run a user
types, and its ``results.json`` records the resolved config.

Usage::

    python -m fedjax_rhd.pipeline params                 # conf/pipeline.yaml -> params.yaml
    python -m fedjax_rhd.pipeline dataset mds            # export + FHIR -> registered dataset
    python -m fedjax_rhd.pipeline runs mds               # the use case's sweep (joblib launcher)
    python -m fedjax_rhd.pipeline report mds             # table, figures, metrics, curves
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PARAMS_FILE = "params.yaml"
PIPELINE_CONFIG = "pipeline"  # conf/pipeline.yaml
WORK_DIR = "pipeline"  # pipeline/<key>/{export,fhir,data,runs}
REPORT_DIR = "reports"  # reports/<key>/
# The strategy keys every strategy's schema shares: a budget edit of the federated column
# (`-S strategy.rounds=60`) applies to the baselines too, so the columns stay comparable.
_SHARED_STRATEGY_KEYS = ("rounds", "patience", "client.")


class ParamsError(ValueError):
    """params.yaml lacks a field or has a bad value (the message names file and field)."""


@dataclasses.dataclass(frozen=True)
class UseCaseEntry:
    """One row group of the study's table (one ``use_cases`` entry; one DVC branch)."""

    key: str  # the branch name (export@KEY, ...) and folder name
    use_case: str  # conf/use_case/<use_case>.yaml
    n_patients: int | None  # simulated cohort size; None for a real cohort (it has the patients it has)
    seed_data: int | None  # simulated cohort draw; None for a real cohort
    model: str  # conf/model/<model>.yaml
    split: str  # conf/split/<split>.yaml
    overrides: tuple[str, ...] = ()  # extra Hydra overrides (training-budget presets)

    @property
    def simulated(self) -> bool:
        return self.n_patients is not None

    @property
    def dataset(self) -> str:
        """The registered simulated dataset this entry's runs train on."""
        if not self.simulated:
            raise ParamsError(f"use_cases.{self.key}: a real cohort has no simulated dataset")
        return self.dataset_spec().name

    def dataset_spec(self) -> Any:
        """The entry's simulated dataset: a ``harmonize.registry.DatasetSpec`` (name, source, options)."""
        # Imported here: the pipeline's light stages (params) need neither polars nor the simulators.
        from fedjax_rhd.sources import UseCase, dataset_spec

        use_case = UseCase(name=self.use_case, guide=self.use_case, n_patients=int(self.n_patients or 0))
        return dataset_spec(use_case, seed_data=int(self.seed_data or 0))


@dataclasses.dataclass(frozen=True)
class StudySpec:
    """What every use case's sweep shares."""

    seeds: tuple[int, ...]
    scenarios: tuple[str, ...]
    baselines: tuple[str, ...]
    bootstrap: int
    n_boot: int
    strategy: Mapping[str, Any]  # the composed federated strategy node (name + hyperparameters)
    n_jobs: int = 1
    # Training replicates per split seed: seed.init = seed.train = k for each k (the report averages
    # them and its cluster bootstrap resamples them; one replicate leaves training variance uncovered).
    replicates: tuple[int, ...] = (0,)


def _field(mapping: Mapping[str, Any], name: str, where: str, kind: type) -> Any:
    if not isinstance(mapping, Mapping) or name not in mapping:
        raise ParamsError(f"{where}: missing field {name!r}")
    value = mapping[name]
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ParamsError(f"{where}.{name}: expected an integer, got {value!r}")
    if kind is list and not isinstance(value, list):
        raise ParamsError(f"{where}.{name}: expected a list, got {value!r}")
    if kind is str and not (isinstance(value, str) and value):
        raise ParamsError(f"{where}.{name}: expected a non-empty string, got {value!r}")
    return value


def parse_params(
    params: Mapping[str, Any], source: str = PARAMS_FILE
) -> tuple[StudySpec, list[UseCaseEntry]]:
    """Typed study and use-case entries from a params mapping, failing on the first bad field."""
    study = _field(params, "study", source, dict)
    where = f"{source}: study"
    strategy = _field(params, "strategy", source, dict)
    _field(strategy, "name", f"{source}: strategy", str)
    launcher = params.get("launcher") or {}
    spec = StudySpec(
        seeds=tuple(int(s) for s in _field(study, "seeds", where, list)),
        scenarios=tuple(str(s) for s in _field(study, "scenarios", where, list)),
        baselines=tuple(str(s) for s in _field(study, "baselines", where, list)),
        bootstrap=_field(study, "bootstrap", where, int),
        n_boot=_field(study, "n_boot", where, int),
        strategy=strategy,
        n_jobs=int(launcher.get("n_jobs", 1)),
        replicates=tuple(int(k) for k in (study["replicates"] if "replicates" in study else [0])),
    )
    if not spec.seeds or not spec.scenarios or not spec.replicates:
        raise ParamsError(f"{where}: seeds, scenarios and replicates must not be empty")
    use_cases = _field(params, "use_cases", source, dict)
    if not use_cases:
        raise ParamsError(f"{source}: use_cases is empty")
    entries = []
    for key, item in use_cases.items():
        w = f"{source}: use_cases.{key}"
        overrides = item.get("overrides") or [] if isinstance(item, Mapping) else []
        # A real cohort (real/params.yaml) names neither size nor draw; a simulated one needs both.
        real = isinstance(item, Mapping) and item.get("n_patients") is None and item.get("seed_data") is None
        entries.append(
            UseCaseEntry(
                key=str(key),
                use_case=_field(item, "use_case", w, str),
                n_patients=None if real else _field(item, "n_patients", w, int),
                seed_data=None if real else _field(item, "seed_data", w, int),
                model=_field(item, "model", w, str),
                split=_field(item, "split", w, str),
                overrides=tuple(str(o) for o in overrides),
            )
        )
    return spec, entries


def load_params(path: str | Path = PARAMS_FILE) -> tuple[StudySpec, list[UseCaseEntry]]:
    """Read and parse ``params.yaml``."""
    path = Path(path)
    if not path.is_file():
        raise ParamsError(
            f"{path}: no such params file (write it with `python -m fedjax_rhd.pipeline params`)"
        )
    return parse_params(yaml.safe_load(path.read_text()), str(path))


def compose(
    config_name: str = PIPELINE_CONFIG, overrides: Sequence[str] = (), conf_dir: Path | None = None
) -> dict:
    """Compose ``conf/<config_name>.yaml`` to a plain, resolved dict (what DVC writes to params.yaml)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from fedjax_rhd.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir or ROOT / "conf"), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=list(overrides))
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)  # type: ignore[return-value]


def _flatten(node: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in node.items():
        if isinstance(v, Mapping):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _hydra_value(value: Any) -> str:
    return "null" if value is None else json.dumps(value) if isinstance(value, list | str) else str(value)


def strategy_edits(strategy: Mapping[str, Any], default: Mapping[str, Any]) -> dict[str, Any]:
    """The keys of ``strategy`` that differ from its group file's ``default`` (dotted, flat).

    Only edits are passed on to the runs, so a model's training-budget preset (e.g.
    ``+experiment=savae``) keeps its rounds unless the study's params change them.
    """
    mine, base = _flatten(strategy), _flatten(default)
    return {k: v for k, v in mine.items() if k != "name" and base.get(k, object()) != v}


def sweep_commands(
    study: StudySpec, entry: UseCaseEntry, out: Path, default_strategy: Mapping, data_root: Path | None = None
) -> list[list[str]]:
    """The Hydra multirun command lines of one use case: the federated column, then the baselines.

    ``data_root`` holds the simulated cohort's registered dataset (default ``pipeline/KEY/data``).
    """
    edits = strategy_edits(study.strategy, default_strategy)
    cohort = []
    if entry.simulated:
        cohort = [
            f"use_case.n_patients={entry.n_patients}",
            f"seed.data={entry.seed_data}",
            f"use_case.dataset={entry.dataset}",
            f"data_root={data_root or Path(WORK_DIR) / entry.key / 'data'}",
        ]
    common = [
        f"use_case={entry.use_case}",
        *cohort,
        f"model={entry.model}",
        f"split={entry.split}",
        *entry.overrides,
        "scenario=" + ",".join(study.scenarios),
        "seed.split=" + ",".join(str(s) for s in study.seeds),
        # seed.train follows seed.init, so k replicates are k runs per split seed, not k x k.
        *(
            ["seed.init=" + ",".join(str(k) for k in study.replicates), "seed.train=${seed.init}"]
            if study.replicates != (0,)
            else []
        ),
        f"bootstrap={study.bootstrap}",
        "progress=false",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={study.n_jobs}",
    ]
    fl_name = str(study.strategy["name"])
    fl = [f"strategy={fl_name}", *(f"strategy.{k}={_hydra_value(v)}" for k, v in edits.items())]
    commands = [[*common, *fl, f"hydra.sweep.dir={out / fl_name}"]]
    baselines = [b for b in study.baselines if b != fl_name]  # `-S strategy=local` would duplicate cells
    if baselines:
        shared = {k: v for k, v in edits.items() if k.startswith(_SHARED_STRATEGY_KEYS)}
        base = [
            "strategy=" + ",".join(baselines),
            *(f"strategy.{k}={_hydra_value(v)}" for k, v in shared.items()),
        ]
        commands.append([*common, *base, f"hydra.sweep.dir={out / 'baselines'}"])
    return [[sys.executable, "-m", "fedjax_rhd", "-m", *c] for c in commands]


def build_dataset(entry: UseCaseEntry, export: Path, fhir: Path, data_root: Path) -> dict[str, Any]:
    """Extract the FHIR folder into the registered dataset the runs load (``data_root/datasets/NAME``).

    The card records the simulated source and options, exactly as ``harmonize build`` would,
    so ``fedjax-rhd`` reuses it instead of rebuilding (its content id equals a direct build's).
    """
    import polars as pl

    from harmonize.datasets import extract_dataset
    from harmonize.fhir import SOURCE_MANIFEST
    from harmonize.guide import load_guide
    from harmonize.registry import dataset_folder, source_card
    from harmonize.sources import TRUTH_FILE

    guide = load_guide(entry.use_case)
    spec = entry.dataset_spec()
    manifest = json.loads((fhir / SOURCE_MANIFEST).read_text())
    truth = pl.read_parquet(export / TRUTH_FILE) if (export / TRUTH_FILE).is_file() else None
    return extract_dataset(
        fhir,
        dataset_folder(data_root, spec.name),
        guide,
        name=spec.name,
        source_card=source_card(spec, guide),
        provenance=manifest.get("provenance", {}),
        truth=truth,
        centres=manifest.get("centres"),
    )


def run_sweeps(
    study: StudySpec,
    entry: UseCaseEntry,
    out: Path,
    data_root: Path | None = None,
    *,
    in_process: bool = True,
) -> None:
    """Run one use case's sweeps (the federated column, then the baselines) into ``out``.

    ``in_process`` (default): each multirun is the ``fedjax-rhd -m ...`` command line parsed by
    Hydra in this process (:func:`multirun_in_process`), so every sweep of a study shares one
    pool of joblib workers, which import the project, parse guides, load datasets and compile
    rounds once for all their jobs. False: each multirun in its own ``python -m fedjax_rhd``
    process (its own workers).
    """
    default = compose("config", [f"strategy={study.strategy['name']}"])["strategy"]
    for command in sweep_commands(study, entry, out, default, data_root):
        print("+", " ".join(command[1:]), flush=True)
        if in_process:
            multirun_in_process(command[3:])
        else:
            subprocess.run(command, check=True)


def multirun_in_process(args: Sequence[str]) -> None:
    """``fedjax-rhd <args>`` run by Hydra in this process (the same command line, parsed the same way).

    The joblib launcher's loky workers outlive the call (loky reuses an executor of the same
    size), so the next multirun of this process finds them warm: imports done, guides and
    datasets cached (``fedjax_rhd.guide_cache``, ``harmonize.datasets``), jitted rounds compiled.
    A job runs in a worker exactly as in a fresh one (nothing it computes depends on what the
    worker ran before), so the results are bit-identical to separate processes.

    Raises:
        SystemExit: a job failed (Hydra reports it and exits non-zero, as the command would).
    """
    from hydra.core.global_hydra import GlobalHydra

    from fedjax_rhd import cli

    saved = sys.argv
    sys.argv = ["fedjax-rhd", *args]
    GlobalHydra.instance().clear()  # a compose() before this one leaves Hydra initialised
    try:
        cli.main()
    finally:
        sys.argv = saved
        GlobalHydra.instance().clear()


def round_curves(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per-round test C-index of the global model and every node, averaged over runs (split seeds).

    Runs stop at different rounds (patience), so round r averages the runs that reached it
    and ``n_runs`` says how many did.
    """
    by_round: dict[int, list[Mapping[str, Any]]] = {}
    for res in results:
        for rnd in res["rounds"]:
            by_round.setdefault(int(rnd["round"]), []).append(rnd)
    rows = []
    for r in sorted(by_round):
        # Rounds without curves (config curve_every) are left out, not averaged as gaps.
        rounds = [x for x in by_round[r] if "c_index_test_nodes" in x]
        if not rounds:
            continue
        row: dict[str, Any] = {"round": r, "n_runs": len(rounds)}
        glob = [x["c_index_test_global"] for x in rounds if x.get("c_index_test_global") is not None]
        row["global"] = sum(glob) / len(glob) if glob else ""
        k_max = max(len(x["c_index_test_nodes"]) for x in rounds)
        for k in range(k_max):
            vals = [x["c_index_test_nodes"][k] for x in rounds if len(x["c_index_test_nodes"]) > k]
            row[f"node{k + 1}"] = sum(vals) / len(vals)
        rows.append(row)
    return rows


def _write_curves(rows: list[dict[str, Any]], path: Path) -> None:
    """Long format (round, series, c_index, n_runs): DVC's template colours lines by ``series``."""
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["round", "series", "c_index", "n_runs"])
        for row in rows:
            for series, value in row.items():
                if series not in ("round", "n_runs") and value != "":
                    writer.writerow([row["round"], series, repr(value), row["n_runs"]])


def write_outputs(study: StudySpec, entry: UseCaseEntry, runs_dir: Path, out: Path) -> dict[str, Any]:
    """The report (table, figures, HTML) plus DVC's metrics and per-round curves for one use case.

    Writes ``out/metrics.json`` (per scenario and table column: mean test C-index over split
    seeds, its interval and the number of seeds) and ``out/curves_<scenario>.csv`` (the
    federated strategy's per-round curves of the global model and every node, for ``dvc plots``).
    """
    from fedjax_rhd.report import write_report

    report = write_report([runs_dir], out, n_boot=study.n_boot)
    metrics: dict[str, Any] = {}
    with (out / "table.csv").open() as f:
        for row in csv.DictReader(f):
            if row["estimate"]:
                metrics.setdefault(row["scenario"], {})[row["column"]] = {
                    "c_index": float(row["estimate"]),
                    "ci_low": float(row["ci_low"]),
                    "ci_high": float(row["ci_high"]),
                    "n_seeds": int(row["n_seeds"]),
                }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    fl = str(study.strategy["name"])
    # dvc.yaml declares a curves file per scenario of the table; one a study leaves out is
    # written with its header only, so the stage's outputs do not depend on the params.
    for scenario in dict.fromkeys(("best", "worst", *study.scenarios)):
        results = [
            json.loads(run.path.read_text())
            for run in report.runs
            if run.strategy == fl and run.row.scenario == scenario
        ]
        _write_curves(round_curves(results), out / f"curves_{scenario}.csv")
    return metrics


def write_params(
    path: Path = Path(PARAMS_FILE), overrides: Sequence[str] = (), config_name: str = PIPELINE_CONFIG
) -> dict:
    """Compose ``conf/<config_name>.yaml`` (plus overrides) and write it as the params file."""
    params = compose(config_name, overrides)
    header = (
        f"# Composed from conf/{config_name}.yaml by `python -m fedjax_rhd.pipeline --params {path} params "
        f"--config {config_name}`; do not edit by hand.\n"
    )
    path.write_text(header + yaml.safe_dump(params, sort_keys=False))
    return params


def _entry(entries: list[UseCaseEntry], key: str) -> UseCaseEntry:
    for entry in entries:
        if entry.key == key:
            return entry
    raise ParamsError(f"{PARAMS_FILE}: no use_cases.{key} (entries: {[e.key for e in entries]})")


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point of the DVC stages."""
    parser = argparse.ArgumentParser(
        prog="python -m fedjax_rhd.pipeline", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--params", type=Path, default=Path(PARAMS_FILE), help="params file (default params.yaml)"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("params", help="compose conf/pipeline.yaml into the params file")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. strategy=local")
    p.add_argument("--config", default=PIPELINE_CONFIG, help="conf/CONFIG.yaml (default pipeline)")
    for name, text in [
        ("dataset", "FHIR -> the registered dataset the runs load"),
        ("runs", "the use case's sweep"),
        ("report", "table, figures, metrics.json, per-round curves"),
    ]:
        s = sub.add_parser(name, help=text)
        s.add_argument("key", help="a use_cases entry of the params file")
    args = parser.parse_args(argv)
    from fedjax_rhd.report import ReportInputError

    try:
        if args.command == "params":
            write_params(args.params, args.overrides, args.config)
            print(f"wrote {args.params}")
            return
        study, entries = load_params(args.params)
        entry = _entry(entries, args.key)
        work = Path(WORK_DIR) / entry.key
        if args.command == "dataset":
            card = build_dataset(entry, work / "export", work / "fhir", work / "data")
            print(f"{card['name']}: id {card['id']}, {card['n_rows']} rows")
        elif args.command == "runs":
            run_sweeps(study, entry, work / "runs")
        else:
            write_outputs(study, entry, work / "runs", Path(REPORT_DIR) / entry.key)
    except (ParamsError, ReportInputError) as err:
        sys.exit(f"fedjax_rhd.pipeline: {err}")


if __name__ == "__main__":
    main()
