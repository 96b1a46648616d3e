"""Export a synthetic table past the privacy gate, with a card like a harmonised dataset's.

A generative run (``fedjax_rhd/generative.py``) writes ``synthetic.parquet`` and, where the
manager holds real rows (a benchmark holdout), ``validation_report.json``. Synthetic rows may
leave the federation only if they pass the privacy thresholds (``PrivacyThresholds``, checked
by ``privacy_gate`` on the report's ``privacy`` block) and hold no impossible value.
:func:`export_run` checks both and then writes the export folder::

    <out>/synthetic.parquet        the table: patient_id, the guide's features, time, event
    <out>/validation_report.json   the report the gate read
    <out>/card.json                generator, run, metrics, gate verdict, seeds (written last)

built in a temporary folder and renamed into place, so a half export never exists. A refused
table writes nothing (:class:`GateRefused` names each failing metric with its value and limit).
The card's ``id`` is the table's content id (``harmonize.identity.dataset_id`` with every row
in centre ``synthetic``), also recorded at generation in ``final.generative.synthetic.id``, so a
table changed after its validation is refused. An export is registrable as a dataset through
the source ``synthetic`` (``fedjax_rhd/sources/synthetic.py``: export -> FHIR R5 -> table).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import polars as pl

from fedjax_rhd.metrics.synthetic import PrivacyThresholds, privacy_gate
from harmonize.guide import Guide
from harmonize.identity import atomic_write_text, dataset_id, features_card

FORMAT = "fedjax_rhd/synthetic-export/v1"
CARD = "card.json"
TABLE = "synthetic.parquet"
REPORT = "validation_report.json"
DEFAULT_THRESHOLDS = PrivacyThresholds()
CENTRE = "synthetic"  # every exported row's centre (the dataset id needs one)


class ExportError(ValueError):
    """A run folder that cannot be exported (not generative, not validated, changed); names the file."""


class GateRefused(ExportError):
    """The synthetic table broke a privacy threshold or holds impossible values; nothing was written.

    Attributes:
        failures: one ``(metric, value, limit)`` per failing check, in the gate's order.
    """

    def __init__(self, failures: list[tuple[str, Any, str]]) -> None:
        self.failures = failures
        detail = "; ".join(f"{metric} = {_fmt(value)} (limit: {limit})" for metric, value, limit in failures)
        super().__init__(f"privacy gate refused the export: {detail}")


def _fmt(value: Any) -> str:
    return "missing" if value is None else f"{value:.4g}" if isinstance(value, float) else str(value)


def table_id(table: pl.DataFrame, guide: Guide) -> str:
    """Content id of a synthetic table (``harmonize.identity.dataset_id``, centre ``synthetic``)."""
    return dataset_id(table.with_columns(pl.lit(CENTRE).alias("centre")), guide)


def gate_failures(report: dict[str, Any], thresholds: PrivacyThresholds) -> list[tuple[str, Any, str]]:
    """``(metric, value, limit)`` of every check the report fails: privacy thresholds, then validity.

    The privacy checks are ``privacy_gate``'s (a missing or null metric fails); validity needs
    ``validity.total == 0`` (no cell a harmonised dataset could not hold).
    """
    block = report.get("privacy") or {}
    _, failing = privacy_gate(report, thresholds)
    out = []
    for metric in failing:
        for bound in ("max", "min"):
            limit = getattr(thresholds, f"{bound}_{metric}", None)
            if limit is not None:
                out.append((metric, block.get(metric), f"{'<=' if bound == 'max' else '>='} {limit:g}"))
    total = (report.get("validity") or {}).get("total")
    if total != 0:
        out.append(("validity.total", total, "== 0 impossible values"))
    return out


def gate_values(report: dict[str, Any], thresholds: PrivacyThresholds) -> dict[str, Any]:
    """Each checked metric's value (what the card records beside the thresholds)."""
    block = report.get("privacy") or {}
    names = [f.name.split("_", 1)[1] for f in dataclasses.fields(thresholds)]
    return {n: block.get(n) for n in names if getattr(thresholds, f"max_{n}", None) is not None
            or getattr(thresholds, f"min_{n}", None) is not None}  # fmt: skip


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ExportError(f"{path}: missing") from None
    except (OSError, ValueError, RecursionError) as err:
        raise ExportError(f"{path}: not a readable JSON file ({err})") from None


def _block(final: dict[str, Any], generator: str | None, path: Path) -> dict[str, Any]:
    gen = final["generative"]
    blocks = [gen, *gen.get("nodes", [])]
    if generator is None:
        return gen
    for block in blocks:
        if block["trained_on"] == generator:
            return block
    known = ", ".join(b["trained_on"] for b in blocks)
    raise ExportError(f"{path}: no generator {generator!r} in this run (it has: {known})")


def _card(
    *,
    guide: Guide,
    table: pl.DataFrame,
    tid: str,
    name: str,
    results: dict[str, Any],
    results_path: Path,
    block: dict[str, Any],
    report: dict[str, Any],
    thresholds: PrivacyThresholds,
) -> dict[str, Any]:
    cfg = results["config"]
    card_model = results["final"]["generative"]["model"]
    validation = {k: v for k, v in block["validation"].items() if k not in ("report", "privacy_gate")}
    return {
        "format": FORMAT,
        "id": tid,
        "name": name,
        "kind": "synthetic",
        "use_case": guide.use_case,
        "guide_version": guide.version,
        "n_rows": table.height,
        "n_events": int(table["event"].sum()),
        "features": features_card(guide),
        "files": {"table": TABLE, "validation_report": REPORT},
        "generator": {
            "model": results["final"]["generative"]["model"],
            "trained_on": block["trained_on"],
            "strategy": cfg["strategy"]["name"],
            "model_config": cfg["model"],
            # VAE-BGM's latent mixture, the Bayesian network's structure (model=bn), or what each
            # node sent under strategy=sd_sharing
            **{key: block[key] for key in ("mixture", "network", "sharing") if key in block},
            "missingness_reproduced": bool(cfg["model"].get("reproduce_missingness", False)),
        },
        "run": {
            "results": str(results_path.resolve()),
            "dataset": {k: results["dataset"][k] for k in ("id", "name")},
            "split": cfg["split"]["name"],
            "scenario": cfg["scenario"]["name"],
            "best_round": results["final"]["best_round"],
            "rounds_run": results["final"]["rounds_run"],
            "git_sha": results["env"].get("git_sha"),
        },
        "seeds": {**cfg["seed"], "synthetic_draws": block["synthetic"]["seed"]},
        "metrics": validation,
        "gate": {
            "passed": True,
            "thresholds": dataclasses.asdict(thresholds),
            "values": gate_values(report, thresholds),
            "validity_total": report["validity"]["total"],
            "checked_on": REPORT,
            # runs before content ids were recorded: only the row count ties the table to its report
            "table_id_recorded_at_validation": block["synthetic"].get("id") is not None,
        },
        "provenance": {
            "source": f"synthetic patients sampled from a {card_model} generator",
            "licence": "as the training data's licence permits; no row is a real patient's",
            "citation": "Apellániz et al., arXiv:2404.08434 (VAE-BGM)",
        },
    }


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    thresholds: PrivacyThresholds = DEFAULT_THRESHOLDS,
    generator: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Check a generative run's synthetic table against the gate and write the export folder.

    Args:
        run_dir: the run folder (``results.json`` of a generative model's run).
        out: the export folder to create (must not exist).
        thresholds: the privacy limits.
        generator: which generator's table (``global``, ``pooled`` or a node's name; default the
            main one, ``final.generative.trained_on``).
        name: the export's name (default ``<use case>-synth-<id digits>``).

    Returns:
        The card.

    Raises:
        ExportError: the run cannot be exported (named file and reason).
        GateRefused: a threshold broken or an impossible value; nothing was written.
    """
    from fedjax_rhd.guide_cache import cached_guide

    run_dir, out = Path(run_dir), Path(out)
    results_path = run_dir / "results.json"
    results = _read_json(results_path)
    final = results.get("final") or {}
    if final.get("kind") != "generative":
        raise ExportError(f"{results_path}: not a generative model's run (nothing synthetic to export)")
    block = _block(final, generator, results_path)
    if block.get("validation") is None:
        why = block.get("validation_skipped", "no validation report")
        raise ExportError(f"{results_path}: the {block['trained_on']} table was not validated ({why})")
    report = _read_json(run_dir / block["validation"]["report"])
    table_path = run_dir / block["synthetic"]["path"]
    try:
        table = pl.read_parquet(table_path)
    except FileNotFoundError:
        raise ExportError(f"{table_path}: missing") from None
    except Exception as err:  # polars errors and Rust panics: a damaged or foreign file
        raise ExportError(f"{table_path}: not a readable parquet file ({type(err).__name__})") from None
    guide = cached_guide(results["config"]["use_case"]["guide"])
    try:
        tid = table_id(table, guide)
    except (ValueError, TypeError) as err:
        raise ExportError(f"{table_path}: not a table in guide {guide.use_case!r}'s schema ({err})") from None
    recorded = block["synthetic"].get("id")
    if recorded is None and table.height != (report.get("n") or {}).get("synthetic"):
        raise ExportError(
            f"{table_path}: {table.height} rows, its report {block['validation']['report']} validated "
            f"{(report.get('n') or {}).get('synthetic')}; the table changed since"
        )
    if recorded is not None and recorded != tid:
        raise ExportError(
            f"{table_path}: content id {tid} differs from {recorded} recorded when it was validated "
            f"({results_path}); the table changed since, so its report no longer describes it"
        )
    failures = gate_failures(report, thresholds)
    if failures:
        raise GateRefused(failures)
    if out.exists():
        raise ExportError(f"{out}: already exists; choose another --out or delete it")
    name = name or f"{guide.use_case}-synth-{tid[3:11]}"
    card = _card(
        guide=guide, table=table, tid=tid, name=name, results=results, results_path=results_path,
        block=block, report=report, thresholds=thresholds,
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        shutil.copyfile(table_path, tmp / TABLE)
        atomic_write_text(tmp / REPORT, json.dumps(report, indent=1, allow_nan=False))
        atomic_write_text(tmp / CARD, json.dumps(card, indent=2) + "\n")  # last: a card = a whole export
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


def read_export(folder: str | Path, guide: Guide) -> tuple[pl.DataFrame, dict[str, Any]]:
    """An export's table and card, checked: format, gate passed, content id equal to the card's.

    Raises:
        ExportError: no card, another format, a refused gate, or a table changed since export.
    """
    folder = Path(folder)
    card = _read_json(folder / CARD)
    if card.get("format") != FORMAT:
        raise ExportError(f"{folder / CARD}: not a synthetic export card (format {card.get('format')!r})")
    if not (card.get("gate") or {}).get("passed"):
        raise ExportError(f"{folder / CARD}: the privacy gate did not pass; this table may not be used")
    if card.get("use_case") != guide.use_case:
        raise ExportError(
            f"{folder / CARD}: exported for use case {card.get('use_case')!r}, not {guide.use_case!r}"
        )
    table = pl.read_parquet(folder / TABLE)
    tid = table_id(table, guide)
    if tid != card.get("id"):
        raise ExportError(f"{folder / TABLE}: content id {tid} differs from {card.get('id')} in its card")
    return table, card
