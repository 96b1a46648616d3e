"""The report's words and files: one sentence per row, Markdown, CSV and a self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import html
import io
from collections import defaultdict
from pathlib import Path

from fedjax_rhd.report.decide import Outcome, decide
from fedjax_rhd.report.stats import Interval
from fedjax_rhd.report.table import Cell, Row

CSV_FIELDS = (
    "use_case", "scenario", "split", "model", "fl_strategy", "column", "label", "node", "share", "estimate",
    "ci_low", "ci_high", "n_seeds", "seeds", "sd_seeds", "n_boot", "approximate", "reason",
    "n_replicates", "covers", "rows_ci_low", "rows_ci_high",
)  # fmt: skip
METHOD = (
    "Each cell: Harrell's C-index on the global test set, mean over split seeds (and over the training "
    "replicates of a split seed, runs that differ only in seed.init / seed.train), with a 95% interval "
    "from a cluster bootstrap (Davison & Hinkley 1997, §3.8): split seeds drawn with replacement, every "
    "test patient drawn once per replicate across the seeds' overlapping test sets, training replicates "
    "drawn inside each split seed; every model is scored on the same draws, so differences are paired. "
    "The line under each table says which of these an interval covered. The CSV also keeps each cell's "
    "test-row interval (rows_ci_low, rows_ci_high: test rows only, given the trained models). The "
    "percentage is the node's share of the training rows. *Node k with FL* is the model node k holds at "
    "the end of federation (the selected global model after node k's last local update); *isolated* is "
    "that node's own `local` model. Rounds were chosen on federated validation loss, never on the test "
    "set. Every claim is decided on the interval's bounds (shown / not shown / shown otherwise). sd over "
    "seeds is in the CSV."
)


def fmt_interval(v: Interval, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f"{f.format(v.estimate)} [{f.format(v.ci_low)}, {f.format(v.ci_high)}]"


def fmt_cell(cell: Cell | None) -> str:
    if cell is None:
        return "n/a: no run of this row has this column"
    if cell.value is None:
        return f"n/a: {cell.reason}"
    text = (f"{cell.detail}: " if cell.detail else "") + fmt_interval(cell.value)
    if cell.share is not None:
        text += f" · {cell.share:.0%}"
    return text + (" ≈" if cell.approximate else "")


def _verdict(d: Interval, margin: float) -> str:
    """FL vs centralised, decided on the interval's bounds (``decide``): the margin claim, then the sign."""
    ci = f"difference {d.estimate:+.3f}, 95% CI {d.ci_low:+.3f} to {d.ci_high:+.3f}"
    match, sign = decide(d, "within", margin), decide(d, "above")
    if match.outcome is Outcome.SHOWN:
        text = f"matched centralised training within ±{margin:g} (shown: {ci}, inside the margin)"
    elif match.outcome is Outcome.SHOWN_OTHERWISE:
        side = "fell short of" if d.ci_high < 0 else "did better than"
        return (
            f"{side} centralised training by more than {margin:g} (shown: {ci}, wholly outside ±{margin:g})"
        )
    else:
        text = f"could not be shown to match centralised training within ±{margin:g} "
        text += f"(not shown: {ci} reaches past it)"
    # Inside or across the margin, the sign may still be decided: say so rather than hide it.
    if sign.outcome is Outcome.SHOWN:
        text += "; it did better than centralised training (interval wholly above 0)"
    elif sign.outcome is Outcome.SHOWN_OTHERWISE:
        text += "; it fell short of centralised training (interval wholly below 0)"
    return text


def _gain(label: str, d: Interval) -> str:
    outcome = decide(d, "above").outcome
    word = {Outcome.SHOWN: "gained", Outcome.SHOWN_OTHERWISE: "lost"}.get(outcome, "showed no clear change")
    return f"{label} {word} {d.estimate:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]"


def sentence(row: Row, margin: float = 0.02) -> str:
    """One plain sentence: did FL match centralised, and what each node gained over itself alone."""
    k = row.key
    head = f"{k.use_case} ({k.scenario} scenario, split {k.split}, {k.model})"
    fl = row.comparisons["fl_minus_centralised"]
    if row.fl_strategy is None or fl.value is None:
        return f"{head}: no comparison of federated and centralised training ({fl.reason})."
    seeds = fl.value.seeds
    text = f"{head}, over {len(seeds)} split seed(s): the {row.fl_label} global model "
    text += _verdict(fl.value, margin)
    gains = []
    for name in row.node_names:
        share = next((c.share for c in row.cells if c.node == name and c.share is not None), None)
        g = row.comparisons[f"gain:{name}"]
        tag = f"{name} ({share:.0%} of the data)" if share is not None else name
        gains.append(_gain(tag, g.value) if g.value is not None else f"{tag}: {g.reason}")
    if gains:
        text += "; against itself alone, " + ", ".join(gains)
    score = row.comparisons.get("fl_minus_score")
    if score is not None and score.value is not None:
        text += "; " + _gain("against the clinical score on the rows it scores, it", score.value)
    text += "."
    if len(seeds) < 2:
        text += " One split seed is not evidence: run several."
    return text


_HEADERS = {"global": "Global model (FL)", "clinical": "Clinical score", "oracle": "Oracle (true risk)"}


def _columns(group: list[Row]) -> list[tuple[str, str]]:
    """(column, header) in order, the union over the table's rows (one may lack node columns)."""
    cols: dict[str, str] = {}
    for row in group:
        for c in row.cells:
            if c.column not in cols or (c.value is not None and c.column.startswith("isolated")):
                cols[c.column] = _HEADERS.get(c.column, c.label)
    return list(cols.items())


def _cells(row: Row, columns: list[tuple[str, str]]) -> list[Cell | None]:
    by_column = {c.column: c for c in row.cells}
    return [by_column.get(col) for col, _ in columns]


def _covers(group: list[Row]) -> list[str]:
    """What the table's cluster intervals resampled (one line per distinct design)."""
    found = {c.value.covers for r in group for c in r.cells if c.value is not None and not c.approximate}
    return sorted(found)


def _tables(rows: list[Row]) -> dict[tuple[str, str], list[int]]:
    """Row indices per table: one table per (split, model), since the node columns differ."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[(row.key.split, row.key.model)].append(i)
    return groups


def markdown(rows: list[Row], figures: list[Path | None], out_dir: Path, margin: float) -> str:
    lines = ["# Survival table (C-index on the test set)", "", METHOD, ""]
    for (split, model), members in _tables(rows).items():
        group = [rows[i] for i in members]
        lines += [f"## split {split}, model {model}", ""]
        columns = _columns(group)
        header = ["use case", "scenario", "federated strategy", *(h for _, h in columns)]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in group:
            cells = [row.key.use_case, row.key.scenario, row.fl_label]
            cells += [fmt_cell(c) for c in _cells(row, columns)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        lines += [f"Intervals resample: {c}." for c in _covers(group)] + [""]
        for row in group:
            lines.append(f"- {sentence(row, margin)}")
            for note in row.notes:
                lines.append(f"  - note: {note}")
        lines.append("")
        for i in members:
            if figures[i] is not None:
                lines.append(f"![per-round curves]({figures[i].relative_to(out_dir).as_posix()})")
        lines.append("")
    if any(c.approximate for r in rows for c in r.cells):
        lines.append("≈ interval combined from the runs' own intervals (no per-row scores to pair).")
    return "\n".join(lines) + "\n"


def interval_fields(v: Interval | None, name: str = "estimate") -> dict[str, object]:
    """CSV fields of an interval (empty strings when there is none); floats at full precision."""
    if v is None:
        return {name: "", "ci_low": "", "ci_high": "", "n_seeds": "", "seeds": "", "n_boot": ""}
    return {
        name: repr(v.estimate),
        "ci_low": repr(v.ci_low),
        "ci_high": repr(v.ci_high),
        "n_seeds": len(v.seeds),
        "seeds": " ".join(map(str, v.seeds)),
        "n_boot": v.n_boot,
    }


def row_fields(row: Row) -> dict[str, str]:
    k = row.key
    return {"use_case": k.use_case, "scenario": k.scenario, "split": k.split, "model": k.model,
            "fl_strategy": row.fl_strategy or ""}  # fmt: skip


def csv_text(rows: list[Row]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        for c in row.cells:
            writer.writerow(
                {
                    **row_fields(row),
                    "column": c.column,
                    "label": c.label,
                    "node": c.node or "",
                    "share": "" if c.share is None else repr(c.share),
                    **interval_fields(c.value),
                    "sd_seeds": "" if c.sd_seeds is None else repr(c.sd_seeds),
                    "approximate": c.approximate,
                    "reason": c.reason or "",
                    "n_replicates": c.n_replicates if c.value is not None else "",
                    "covers": c.value.covers if c.value is not None else "",
                    "rows_ci_low": "" if c.rows_value is None else repr(c.rows_value.ci_low),
                    "rows_ci_high": "" if c.rows_value is None else repr(c.rows_value.ci_high),
                }
            )
    return buf.getvalue()


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #1b1b1b; max-width: 90em; }
table.survival { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
table.survival th { background: #1f4e79; color: #ffffff; padding: 0.4em 0.6em; text-align: left; }
table.survival td { border: 1px solid #b7c4d1; padding: 0.35em 0.6em; white-space: nowrap; }
table.survival td.na { color: #7a7a7a; font-style: italic; white-space: normal; max-width: 14em; }
div.scroll { overflow-x: auto; } p.method { max-width: 60em; color: #333; }
img { max-width: 100%; border: 1px solid #ddd; }
"""


def html_page(rows: list[Row], figures: list[Path | None], margin: float) -> str:
    """A single file (CSS inline, figures as data URIs) that opens anywhere without network."""
    e = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>fedjax_rhd survival table</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>Survival table (C-index on the test set)</h1>",
        f'<p class="method">{e(METHOD.replace("*", "").replace("`", ""))}</p>',
    ]
    for (split, model), members in _tables(rows).items():
        group = [rows[i] for i in members]
        parts.append(f"<h2>split {e(split)}, model {e(model)}</h2>")
        columns = _columns(group)
        header = ["use case", "scenario", "federated strategy", *(h for _, h in columns)]
        parts.append('<div class="scroll"><table class="survival"><thead><tr>')
        parts.append("".join(f"<th>{e(h)}</th>" for h in header))
        parts.append("</tr></thead><tbody>")
        for row in group:
            cells = [f"<td>{e(t)}</td>" for t in (row.key.use_case, row.key.scenario, row.fl_label)]
            cells += [
                f'<td class="{"na" if c is None or c.value is None else "v"}">{e(fmt_cell(c))}</td>'
                for c in _cells(row, columns)
            ]
            parts.append("<tr>" + "".join(cells) + "</tr>")
        parts.append("</tbody></table></div>")
        parts += [f'<p class="method">Intervals resample: {e(c)}.</p>' for c in _covers(group)]
        parts.append("<ul>")
        for row in group:
            parts.append(
                f"<li>{e(sentence(row, margin))}" + "".join(f"<br><em>note: {e(n)}</em>" for n in row.notes)
            )
        parts.append("</ul>")
        for i in members:
            if figures[i] is not None:
                data = base64.b64encode(figures[i].read_bytes()).decode("ascii")
                alt = f"per-round curves {e(figures[i].name)}"
                parts.append(f'<p><img alt="{alt}" src="data:image/png;base64,{data}"></p>')
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
