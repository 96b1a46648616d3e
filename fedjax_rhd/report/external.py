"""The report's external-validation table: every ``score.json`` (``fedjax-rhd-score``) under the given dirs.

One row per scored model: the run (use case, strategy, model), the dataset it was scored on and
which rows, Harrell's C with its bootstrap interval, Uno's C, mean td-AUC, IBS, the clinical score
on the same rows and the paired difference model - score. Numbers are copied from ``score.json``,
never recomputed, so the table says what the score command measured.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fedjax_rhd.report.runs import ReportInputError

SCORE_FILE = "score.json"
SCORE_FORMAT = "fedjax_rhd/score/v1"
FIELDS = (
    "use_case", "strategy", "model", "seed_split", "scored_model", "main", "dataset", "rows", "n", "n_events",
    "censoring", "c_index", "ci_low", "ci_high", "uno_c", "td_auc_mean", "ibs", "clinical_score",
    "clinical_c_index", "model_minus_score", "diff_ci_low", "diff_ci_high", "n_scored", "warnings", "file",
)  # fmt: skip


def find_scores(roots: Iterable[str | Path]) -> list[Path]:
    """Every ``score.json`` under ``roots`` (directories or the files themselves), sorted, once each."""
    found: list[Path] = []
    for root in map(Path, roots):
        if root.is_file():
            found += [root] if root.name == SCORE_FILE else []
        elif root.is_dir():
            found += sorted(root.rglob(SCORE_FILE))
    return list(dict.fromkeys(p.resolve() for p in found))


def _load(path: Path) -> dict[str, Any]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportInputError(f"{path}: not readable JSON ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != SCORE_FORMAT:
        raise ReportInputError(f"{path}: not a fedjax-rhd-score output (format {SCORE_FORMAT!r})")
    return doc


def external_rows(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """The table's rows (:data:`FIELDS`), one per model of every ``score.json``.

    Raises:
        ReportInputError: a file that is not a ``score.json`` (named).
    """
    rows = []
    for path in paths:
        doc = _load(path)
        run, cs, scored = doc["run"], doc.get("clinical_score") or {}, doc["rows"]
        for m in doc["models"]:
            c, versus = m["c_index"], m.get("versus_clinical_score") or {}
            diff = versus.get("difference") or {}
            rows.append(
                {
                    "use_case": run["use_case"], "strategy": run["strategy"], "model": run["model"],
                    "seed_split": run["seed_split"], "scored_model": m["name"], "main": m["main"],
                    "dataset": doc["dataset"]["name"], "rows": scored["selection"], "n": scored["n"],
                    "n_events": scored["n_events"], "censoring": doc["censoring"],
                    "c_index": c.get("estimate"), "ci_low": c.get("ci_low"), "ci_high": c.get("ci_high"),
                    "uno_c": m.get("uno_c_test"), "td_auc_mean": (m.get("td_auc_test") or {}).get("mean"),
                    "ibs": m.get("ibs_test"), "clinical_score": cs.get("name"),
                    "clinical_c_index": (cs.get("c_index_test") or {}).get("estimate"),
                    "model_minus_score": diff.get("difference"), "diff_ci_low": diff.get("ci_low"),
                    "diff_ci_high": diff.get("ci_high"), "n_scored": cs.get("n_scored"),
                    "warnings": "; ".join(doc.get("warnings", [])), "file": str(path),
                }
            )  # fmt: skip
    return rows


def _f(v: Any, signed: bool = False) -> str:
    return "n/a" if v is None else (f"{v:+.3f}" if signed else f"{v:.3f}")


def external_markdown(rows: list[dict[str, Any]]) -> str:
    """The table in Markdown, with what its numbers are."""
    lines = [
        "# External validation (fedjax-rhd-score)",
        "",
        "Each row: one model of a finished run applied, with the run's own preprocessing and feature "
        "reduction, to the rows of a dataset on the same guide. Harrell's C with a percentile bootstrap "
        "95% interval over the scored rows; Uno's C, td-AUC and IBS weighted by the censoring named "
        "(*cohort*: the scored rows' own Kaplan-Meier; *run*: the training nodes'); the clinical score's C "
        "and model − score (paired bootstrap) on the rows the score covers. Rows `run-test` are the run's "
        "own test patients; a dataset marked ⚠ includes the run's training rows (optimistic).",
        "",
        "| run | scored model | dataset (rows) | n (events) | Harrell C [95% CI] | Uno C | td-AUC | IBS "
        "| clinical score C | model − score [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        run = f"{r['use_case']} · {r['strategy']} · {r['model']} · seed {r['seed_split']}"
        model = f"**{r['scored_model']}**" if r["main"] else r["scored_model"]
        data = f"{r['dataset']} ({r['rows']}, censoring {r['censoring']})" + (" ⚠" if r["warnings"] else "")
        c = f"{_f(r['c_index'])} [{_f(r['ci_low'])}, {_f(r['ci_high'])}]"
        score = (
            "n/a" if r["clinical_c_index"] is None else f"{r['clinical_score']} {_f(r['clinical_c_index'])}"
        )
        d = [_f(r[k], True) for k in ("model_minus_score", "diff_ci_low", "diff_ci_high")]
        diff = "n/a" if r["model_minus_score"] is None else f"{d[0]} [{d[1]}, {d[2]}]"
        lines.append(
            f"| {run} | {model} | {data} | {r['n']} ({r['n_events']}) | {c} | {_f(r['uno_c'])} "
            f"| {_f(r['td_auc_mean'])} | {_f(r['ibs'])} | {score} | {diff} |"
        )
    return "\n".join(lines) + "\n"


def external_csv(rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    return buf.getvalue()


def write_external(paths: list[Path], out: Path) -> dict[str, Path]:
    """Write ``external_validation.md`` and ``.csv`` into ``out``; ``{}`` when there is no score file."""
    if not paths:
        return {}
    rows = external_rows(paths)
    files = {
        "external_markdown": out / "external_validation.md",
        "external_csv": out / "external_validation.csv",
    }
    out.mkdir(parents=True, exist_ok=True)
    files["external_markdown"].write_text(external_markdown(rows))
    files["external_csv"].write_text(external_csv(rows))
    return files
