"""``fedjax-rhd-report``: the study's survival table and per-round figures from any runs.

Reads run and multirun directories (their ``results.json`` and ``test_predictions.parquet``),
and writes into ``--out``: ``table.md``, ``table.csv``, ``comparisons.csv``, a
self-contained ``report.html`` and ``figures/*.png`` (ARCHITECTURE §5). Generative runs
(synthetic patients) get their own section (``fedjax_rhd.report.synthetic``):
``synthetic.md``, ``synthetic.csv``, ``figures/fidelity_*.png`` (the study's Figure 3) and
the same section in ``report.html``. With ``score.json`` files of ``fedjax-rhd-score`` below
the dirs, also ``external_validation.{md,csv}`` (``fedjax_rhd.report.external``; a dir of score
outputs alone gives only those). Runs of one cell
that differ only in ``seed.init`` / ``seed.train`` are training replicates: the cell
averages them and its interval resamples them (``fedjax_rhd.report.cluster``).

Usage::

    fedjax-rhd-report multirun/foundation --out reports/foundation
    python -m fedjax_rhd.report outputs/ multirun/ --out reports/all --n-boot 2000
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys
from pathlib import Path

from fedjax_rhd.report import synthetic as syn
from fedjax_rhd.report.external import find_scores, write_external
from fedjax_rhd.report.figures import plot_row
from fedjax_rhd.report.render import csv_text, html_page, interval_fields, markdown, row_fields, sentence
from fedjax_rhd.report.runs import ReportInputError, Run, find_runs
from fedjax_rhd.report.synthetic import SyntheticRow
from fedjax_rhd.report.table import Row, build_rows

__all__ = ["Report", "ReportInputError", "build_rows", "find_runs", "main", "sentence", "write_report"]


@dataclasses.dataclass(frozen=True)
class Report:
    """What ``write_report`` wrote, for callers and tests."""

    runs: list[Run]
    rows: list[Row]
    # "markdown", "csv", "comparisons", "html", "synthetic_*", "figure:<name>", and with score.json files
    # below the roots "external_markdown", "external_csv" (report.external)
    files: dict[str, Path]
    synthetic: list[SyntheticRow] = dataclasses.field(default_factory=list)  # generative runs' rows


def _comparisons_csv(rows: list[Row], path: Path) -> None:
    fields = ["use_case", "scenario", "split", "model", "fl_strategy", "comparison", "label", "difference",
              "ci_low", "ci_high", "n_seeds", "seeds", "n_boot", "reason", "covers", "rows_ci_low",
              "rows_ci_high"]  # fmt: skip
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            for name, comp in row.comparisons.items():
                label = f"{row.fl_label} {comp.label}" if name.startswith("fl_") else comp.label
                writer.writerow(
                    {
                        **row_fields(row),
                        "comparison": name,
                        "label": label,
                        **interval_fields(comp.value, "difference"),
                        "reason": comp.reason or "",
                        "covers": comp.value.covers if comp.value is not None else "",
                        "rows_ci_low": "" if comp.rows_value is None else repr(comp.rows_value.ci_low),
                        "rows_ci_high": "" if comp.rows_value is None else repr(comp.rows_value.ci_high),
                    }
                )


def write_report(
    roots: list[str | Path], out: str | Path, *, n_boot: int = 1000, boot_seed: int = 0, margin: float = 0.02
) -> Report:
    """Read every run under ``roots`` and write the table, figures and HTML page into ``out``.

    Args:
        roots: run directories, multirun directories or results.json files.
        out: output directory (created).
        n_boot: bootstrap resamples per split seed.
        boot_seed: seed of the resamples (one generator per split seed derives from it).
        margin: |FL − centralised| below which, with its whole interval, FL "matched" centralised.
    """
    out = Path(out)
    scores = find_scores(roots)
    # a folder of score outputs alone (no results.json below it) feeds only the external table
    run_roots = [
        r for r in roots if not (Path(r).is_dir() and scores and not any(Path(r).rglob("results.json")))
    ]
    if not run_roots and scores:
        return Report([], [], write_external(scores, out))
    runs = find_runs(run_roots)
    survival = [r for r in runs if not r.generative]
    generative = [r for r in runs if r.generative]
    rows = build_rows(survival, n_boot=n_boot, boot_seed=boot_seed)
    out.mkdir(parents=True, exist_ok=True)
    figures = [plot_row(row, survival, out / "figures") for row in rows]
    files = {
        "markdown": out / "table.md",
        "csv": out / "table.csv",
        "comparisons": out / "comparisons.csv",
        "html": out / "report.html",
    }
    page = html_page(rows, figures, margin)
    files["markdown"].write_text(markdown(rows, figures, out, margin))
    files["csv"].write_text(csv_text(rows))
    _comparisons_csv(rows, files["comparisons"])
    files.update({f"figure:{p.name}": p for p in figures if p is not None})
    synthetic_rows: list[SyntheticRow] = []
    if generative:  # the synthetic section: validation table and fidelity per round (Figure 3)
        synthetic_rows = syn.synthetic_rows(generative)
        keys = dict.fromkeys(r.key for r in synthetic_rows)
        fig3 = {k: syn.plot_fidelity(k, generative, out / "figures") for k in keys}
        files["synthetic_markdown"] = out / "synthetic.md"
        files["synthetic_csv"] = out / "synthetic.csv"
        files["synthetic_markdown"].write_text(syn.markdown_section(synthetic_rows, fig3, out))
        files["synthetic_csv"].write_text(syn.csv_text(synthetic_rows))
        files.update({f"figure:{p.name}": p for p in fig3.values() if p is not None})
        page = page.replace("</body></html>", syn.html_section(synthetic_rows, fig3) + "</body></html>")
    files["html"].write_text(page)
    files.update(write_external(scores, out))
    return Report(runs, rows, files, synthetic_rows)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    parser = argparse.ArgumentParser(prog="fedjax-rhd-report", description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run or multirun directories")
    parser.add_argument("--out", type=Path, required=True, help="directory to write the report into")
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples per split seed")
    parser.add_argument("--boot-seed", type=int, default=0, help="seed of the bootstrap resamples")
    parser.add_argument("--margin", type=float, default=0.02, help="equivalence margin for FL vs centralised")
    args = parser.parse_args(argv)
    try:
        report = write_report(
            args.dirs, args.out, n_boot=args.n_boot, boot_seed=args.boot_seed, margin=args.margin
        )
    except ReportInputError as err:
        sys.exit(f"fedjax-rhd-report: {err}")
    print(f"{len(report.runs)} runs, {len(report.rows)} table rows")  # (0, 0): score outputs only
    for row in report.rows:
        print(f"- {sentence(row, args.margin)}")
    for row in report.synthetic:
        k = row.key
        print(
            f"- synthetic {k.use_case}/{k.scenario}/{k.split}, {row.generator}: "
            f"CSF {syn.fmt_value(row.values['csf'])}, GSF {syn.fmt_value(row.values['gsf'])}"
        )
    for name, path in report.files.items():
        print(f"{name}: {path}")
