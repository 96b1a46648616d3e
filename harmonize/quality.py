"""Quality report per centre: JSON for machines, Markdown for people (ARCHITECTURE §1.2).

Merges what ingestion (source -> FHIR) and extraction (FHIR -> table) counted:
completeness per feature, unit conversions applied, out-of-range values set
missing, values rejected, records quarantined with reasons, resources that
mapped to no feature. Every record of the source is accounted for:
``n_records = n_rows + quarantined at ingest + quarantined at extraction``.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from harmonize.guide import Guide

REPORT_FORMAT = "fedjax_rhd/quality-report/v1"
MAX_LISTED = 50  # quarantined rows listed individually in a report (all are counted)


def completeness(table: pl.DataFrame, guide: Guide) -> list[dict[str, Any]]:
    """Observed count and share per feature (in guide order), with the guide's definition."""
    n = table.height
    out = []
    for f in guide.features:
        observed = n - table[f.name].null_count()
        out.append(
            {
                "feature": f.name,
                "group": f.group,
                "observed": observed,
                "missing": n - observed,
                "completeness": observed / n if n else 0.0,
                "definition": f.definition,
            }
        )
    return out


def quality_report(
    table: pl.DataFrame, guide: Guide, ingest: dict[str, Any], extract: dict[str, Any]
) -> dict[str, Any]:
    """One centre's quality report as a JSON-ready dict.

    Args:
        table: the centre's extracted table.
        guide: the use case's guide.
        ingest: the centre's ``ingest.json`` content.
        extract: :meth:`ExtractStats.to_json` of the centre.
    """
    q_ingest = sum(ingest.get("quarantined", {}).values())
    q_extract = sum(extract.get("quarantined", {}).values())
    rejected: dict[str, dict[str, int]] = {}
    for part in (ingest.get("rejected_values", {}), extract.get("rejected_values", {})):
        for feature, reasons in part.items():
            for reason, n in reasons.items():
                rejected.setdefault(feature, {})[reason] = rejected.get(feature, {}).get(reason, 0) + n
    return {
        "format": REPORT_FORMAT,
        "use_case": guide.use_case,
        "guide_version": guide.version,
        "centre": extract["centre"],
        "counts": {
            "n_records": ingest.get("n_records", table.height + q_ingest + q_extract),
            "n_rows": table.height,
            "n_events": int(table["event"].sum()) if table.height else 0,
            "quarantined_at_ingest": q_ingest,
            "quarantined_at_extraction": q_extract,
            "resources_written": ingest.get("resources", {}),
            "resources_read": extract.get("n_resources", 0),
        },
        "completeness": completeness(table, guide),
        "features_without_definition": [f.name for f in guide.features if not f.definition],
        "conversions": extract.get("conversions", {}),
        "out_of_range": extract.get("out_of_range", {}),
        "rejected_values": rejected,
        "quarantined": {
            "ingest": {"reasons": ingest.get("quarantined", {}), "rows": ingest.get("quarantined_rows", [])},
            "extraction": {
                "reasons": extract.get("quarantined", {}),
                "patients": extract.get("quarantined_patients", []),
            },
        },
        "findings": {"count": ingest.get("n_findings", 0), "rows": ingest.get("findings", [])},
        "source": ingest.get("notes", {}),
        "unmapped_resources": extract.get("unmapped_resources", {}),
        "inferred": extract.get("inferred", {}),
        "timing": {"ingest": ingest.get("timing", {}), "extract_seconds": extract.get("seconds", 0.0)},
    }


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def report_markdown(report: dict[str, Any]) -> str:
    """Render a quality report for people."""
    c = report["counts"]
    lines = [
        f"# Quality report: {report['use_case']} / centre {report['centre']}",
        "",
        f"Guide version {report['guide_version']}. {c['n_records']} source records -> {c['n_rows']} rows "
        f"({c['n_events']} events); quarantined {c['quarantined_at_ingest']} at ingest, "
        f"{c['quarantined_at_extraction']} at extraction.",
        "",
        "Resources written: "
        + (", ".join(f"{k} {v}" for k, v in c["resources_written"].items()) or "none")
        + f"; read back: {c['resources_read']}.",
        "",
        "## Completeness per feature",
        "",
    ]
    lines += _table(
        ["feature", "group", "observed", "missing", "completeness", "definition (guide)"],
        [
            [
                r["feature"],
                r["group"],
                r["observed"],
                r["missing"],
                f"{r['completeness']:.1%}",
                _cell(r.get("definition") or "(none in the guide)"),
            ]
            for r in report["completeness"]
        ],
    )
    undefined = report.get("features_without_definition", [])
    if undefined:
        lines += [
            "",
            f"{len(undefined)} feature(s) have no definition in the guide (what counts as positive, "
            f"which source call): {', '.join(undefined)}.",
        ]
    sections = [
        (
            "Unit conversions applied",
            ["conversion", "values"],
            [[k, v] for k, v in report["conversions"].items()],
        ),
        (
            "Out-of-range values (set missing)",
            ["feature", "valid range", "values", "examples"],
            [
                [
                    k,
                    v["range"],
                    v["count"],
                    ", ".join(f"{e['patient_id']}={e['value']}" for e in v["examples"]),
                ]
                for k, v in report["out_of_range"].items()
            ],
        ),
        (
            "Rejected values (set missing)",
            ["feature", "reason", "values"],
            [[f, r, n] for f, reasons in report["rejected_values"].items() for r, n in reasons.items()],
        ),
        (
            "Quarantined records",
            ["stage", "reason", "records"],
            [
                [stage, r, n]
                for stage in ("ingest", "extraction")
                for r, n in report["quarantined"][stage]["reasons"].items()
            ],
        ),
        ("Values inferred", ["how", "values"], [[k, v] for k, v in report["inferred"].items()]),
        (
            "Resources mapped to no feature",
            ["resource", "count"],
            [[k, v] for k, v in report["unmapped_resources"].items()],
        ),
    ]
    for title, header, rows in sections:
        lines += ["", f"## {title}", ""]
        lines += _table(header, rows) if rows else ["None."]
    listed = report["quarantined"]["ingest"]["rows"]
    if listed:
        lines += ["", "Quarantined at ingest (first rows):", ""]
        lines += _table(
            ["source", "row", "patient_id", "field", "reason"],
            [
                [r.get("source", ""), r["row"], r["patient_id"], r.get("field", ""), r["reason"]]
                for r in listed
            ],
        )
    findings = report.get("findings", {})
    if findings.get("count"):
        lines += [
            "",
            f"## Row-level findings ({findings['count']}; first {len(findings['rows'])} listed)",
            "",
        ]
        lines += _table(
            ["source", "row", "patient_id", "field", "reason", "action"],
            [
                [r["source"], r["row"], r["patient_id"], r["field"], r["reason"], r["action"]]
                for r in findings["rows"]
            ],
        )
    notes = dict(report.get("source", {}))
    if notes:
        lines += ["", "## Source", ""]
        if "mapping" in notes:
            unmapped = notes.pop("unmapped_columns", [])
            lines += [f"File {notes.pop('file', '?')} read with mapping {notes.pop('mapping')}.", ""]
            lines += [f"Unmapped columns ({len(unmapped)}): " + (", ".join(unmapped) or "none") + ".", ""]
        if "guide_features_not_mapped" in notes:
            left = notes.pop("guide_features_not_mapped")
            lines += [
                f"Guide features the mapping leaves out (missing for every patient) ({len(left)}): "
                + (", ".join(left) or "none")
                + ".",
                "",
            ]
        lines += _mapping_rules(notes.pop("missing_sentinels", None), notes.pop("derived_features", None))
        lines += [f"- {k}: {v}" for k, v in notes.items()]
    return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def _mapping_rules(sentinels: dict[str, Any] | None, derived: dict[str, Any] | None) -> list[str]:
    """The mapping's missing-value sentinels hit and derived flags, as tables."""
    lines: list[str] = []
    if sentinels is not None:
        glob = ", ".join(repr(s) for s in sentinels.get("global", [])) or "none"
        lines += [f"### Missing-value sentinels (set missing; global: {glob})", ""]
        rows = [
            [e["feature"], e["column"], e["sentinel"], e["cells"]] for e in sentinels.get("set_missing", [])
        ]
        lines += (_table(["feature", "column", "sentinel", "cells"], rows) if rows else ["None hit."]) + [""]
    if derived:
        lines += ["### Derived features", ""]
        lines += _table(
            ["feature", "rule", "positive", "negative", "undetermined"],
            [
                [name, _cell(d["rule"]), d["positive"], d["negative"], d["undetermined"]]
                for name, d in derived.items()
            ],
        )
        lines += [""]
    return lines
