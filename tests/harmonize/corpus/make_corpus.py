"""Write the broken-export corpus (``tests/harmonize/corpus/cases/<case>/``); rerun after changing a case.

Each case folder holds a small export of the MDS guide (``data.*``, sometimes a
variant list), its ``mapping.yaml`` and ``expect.yaml``:

- ``status``: exit status of ``harmonize map --strict`` (1 = error, 3 = records
  quarantined or values rejected, 0 = clean; unmapped columns are reported, not failed);
- ``where``: ``message`` (the error text) or ``report`` (a quarantine/finding entry);
- ``file``, ``row``, ``field``: what the message or entry must name;
- ``rows``: rows that must still arrive (valid records beside the broken one).

Usage: ``python tests/harmonize/corpus/make_corpus.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent / "cases"
HEADER = [
    "PatientID",
    "Age",
    "Sex",
    "Hemoglobin",
    "Platelets",
    "Cyto",
    "mut_TP53",
    "mut_SF3B1",
    "OS_days",
    "Status",
]
ROWS = [
    ["P1", "71", "M", "97", "120", "Good", "0", "1", "400", "DEAD"],
    ["P2", "64", "F", "112", "250", "Intermediate", "1", "0", "1200", "ALIVE"],
    ["P3", "80", "M", "88", "45", "Poor", "0", "0", "95", "DEAD"],
    ["P4", "58", "F", "131", "310", "Very good", "0", "1", "2000", "ALIVE"],
    ["P5", "69", "M", "104", "180", "Good", "1", "1", "730", "DEAD"],
]
MAPPING: dict[str, Any] = {
    "file": "data.csv",
    "centre": "corpus",
    "patient_id": {"column": "PatientID"},
    "time": {"column": "OS_days", "unit": "d"},
    "event": {"column": "Status", "codes": {"DEAD": 1, "ALIVE": 0}},
    "features": {
        "age": {"column": "Age", "unit": "a"},
        "sex_male": {"column": "Sex", "codes": {"M": 1, "F": 0}},
        "hb": {"column": "Hemoglobin", "unit": "g/L"},
        "plt": {"column": "Platelets", "unit": "10*9/L"},
        "ipssr_cyto": {
            "column": "Cyto",
            "codes": {
                "Very good": "very_good",
                "Good": "good",
                "Intermediate": "intermediate",
                "Poor": "poor",
                "Very poor": "very_poor",
            },
        },
    },
    "genes": {"prefix": "mut_"},
}
VARIANTS = [["PatientID", "Gene", "HGVSp", "VAF"], ["P2", "TP53", "p.(Arg248Gln)", "0.41"]]
VARIANTS += [["P1", "SF3B1", "p.(Lys700Glu)", "0.33"], ["P4", "SF3B1", "p.(Lys700Glu)", "0.12"]]
VARIANTS += [["P5", "TP53", "p.(Arg273His)", "0.25"], ["P5", "SF3B1", "p.(Lys666Asn)", "0.3"]]


def _csv(header: list[str], rows: list[list[str]], sep: str = ",") -> str:
    return "\n".join(sep.join(r) for r in [header, *rows]) + "\n"


def _set(rows: list[list[str]], pid: str, column: str, value: str) -> list[list[str]]:
    out = [list(r) for r in rows]
    j = HEADER.index(column)
    for r in out:
        if r[0] == pid:
            r[j] = value
    return out


def _long_mapping() -> dict[str, Any]:
    m = {k: v for k, v in MAPPING.items() if k != "genes"}
    m["variants"] = {
        "file": "variants.tsv",
        "patient_id": "PatientID",
        "gene": "Gene",
        "hgvs": "HGVSp",
        "vaf": "VAF",
    }
    return m


def _long_data() -> str:
    header = [h for h in HEADER if not h.startswith("mut_")]
    keep = [HEADER.index(h) for h in header]
    return _csv(header, [[r[j] for j in keep] for r in ROWS])


def cases() -> dict[str, dict[str, Any]]:
    """name -> {files: {name: text|bytes}, mapping: dict|str, expect: dict}."""
    good = _csv(HEADER, ROWS)
    c: dict[str, dict[str, Any]] = {}

    def add(name: str, expect: dict[str, Any], data: Any = good, mapping: Any = None, **extra: Any) -> None:
        files = {"data.csv": data} if isinstance(data, str | bytes) else data
        files.update(extra)
        c[name] = {"files": files, "mapping": MAPPING if mapping is None else mapping, "expect": expect}

    err = {"status": 1, "where": "message", "rows": 0}
    quarantine = {"status": 3, "where": "report", "file": "data.csv", "rows": 4}
    finding = {"status": 3, "where": "report", "file": "data.csv", "rows": 5}

    add("valid", {"status": 0, "where": "none", "rows": 5})
    # Errors: the whole export cannot be read as mapped.
    missing = _csv(
        [h for h in HEADER if h != "Hemoglobin"],
        [[v for h, v in zip(HEADER, r, strict=True) if h != "Hemoglobin"] for r in ROWS],
    )
    add(
        "missing_required_column",
        {**err, "file": "data.csv", "row": "1 (header)", "field": "Hemoglobin"},
        missing,
    )
    add("empty_file", {**err, "file": "data.csv", "row": "0", "field": "(header)"}, "")
    add(
        "header_only",
        {**err, "status": 4, "file": "data.csv", "row": "1 (header)", "field": "(records)"},
        _csv(HEADER, []),
    )
    add(
        "non_utf8_bytes",
        {**err, "file": "data.csv", "row": "at line 3", "field": "(file encoding)"},
        good.replace("P2,64", "P2,6\xe94").encode("latin-1"),
    )
    add(
        "wrong_delimiter",
        {**err, "file": "data.csv", "row": "1 (header)", "field": "PatientID"},
        _csv(HEADER, ROWS, ";"),
    )
    add(
        "duplicate_column",
        {**err, "file": "data.csv", "row": "1 (header)", "field": "Age"},
        _csv([*HEADER, "Age"], [[*r, r[1]] for r in ROWS]),
    )
    add(
        "blank_column_name",
        {**err, "file": "data.csv", "row": "1 (header)", "field": "column 11"},
        _csv([*HEADER, ""], [[*r, "x"] for r in ROWS]),
    )
    add(
        "missing_file",
        {**err, "file": "absent.csv", "row": "0", "field": "(file)"},
        {},
        {**MAPPING, "file": "absent.csv"},
    )
    add(
        "unknown_format",
        {**err, "file": "data.json", "row": "-", "field": "format"},
        {"data.json": "{}"},
        {**MAPPING, "file": "data.json"},
    )
    add(
        "not_xlsx",
        {**err, "file": "data.xlsx", "row": "0", "field": "(file)"},
        {"data.xlsx": good},
        {**MAPPING, "file": "data.xlsx"},
    )
    add(
        "xlsx_extra_header_rows",
        {**err, "file": "data.xlsx", "row": "1 (header)", "field": "PatientID"},
        {"data.xlsx": ("xlsx", 2)},
        {**MAPPING, "file": "data.xlsx"},
    )
    add(
        "xlsx_extra_header_rows_mapped",
        {"status": 0, "where": "none", "rows": 5},
        {"data.xlsx": ("xlsx", 2)},
        {**MAPPING, "file": "data.xlsx", "header_row": 3},
    )
    mp = "mapping.yaml"
    add(
        "mapping_typo_key",
        {**err, "file": mp, "row": "15", "field": "featurs"},
        mapping={**{k: v for k, v in MAPPING.items() if k != "features"}, "featurs": MAPPING["features"]},
    )
    typo = {**MAPPING, "features": {**MAPPING["features"], "hgb": MAPPING["features"]["hb"]}}
    del typo["features"]["hb"]
    add(
        "mapping_feature_not_in_guide",
        {**err, "file": mp, "row": "33", "field": "features.hgb"},
        mapping=typo,
    )
    bad_unit = {
        **MAPPING,
        "features": {**MAPPING["features"], "hb": {"column": "Hemoglobin", "unit": "g/dl"}},
    }
    add("mapping_wrong_unit", {**err, "file": mp, "row": "24", "field": "features.hb.unit"}, mapping=bad_unit)
    no_unit = {**MAPPING, "features": {**MAPPING["features"], "hb": {"column": "Hemoglobin"}}}
    add(
        "mapping_missing_unit", {**err, "file": mp, "row": "22", "field": "features.hb.unit"}, mapping=no_unit
    )
    bad_level = {
        **MAPPING,
        "features": {**MAPPING["features"], "ipssr_cyto": {"column": "Cyto", "codes": {"Good": "great"}}},
    }
    add(
        "mapping_code_not_a_level",
        {**err, "file": mp, "row": "31", "field": "features.ipssr_cyto.codes.Good"},
        mapping=bad_level,
    )
    add(
        "mapping_not_yaml",
        {**err, "file": mp, "row": "3", "field": "(yaml)"},
        mapping="file: data.csv\nfeatures: [unclosed\n",
    )
    add(
        "mapping_missing_event",
        {**err, "file": mp, "row": "?", "field": "event"},
        mapping={k: v for k, v in MAPPING.items() if k != "event"},
    )
    long_bad = _long_mapping()
    add(
        "variant_list_missing_column",
        {**err, "file": "variants.tsv", "row": "1 (header)", "field": "VAF"},
        {
            "data.csv": _long_data(),
            "variants.tsv": _csv(["PatientID", "Gene", "HGVSp"], [r[:3] for r in VARIANTS[1:]], "\t"),
        },
        long_bad,
    )
    # Quarantined records: the rest arrives.
    add(
        "negative_survival_time",
        {**quarantine, "row": 3, "field": "OS_days"},
        _csv(HEADER, _set(ROWS, "P3", "OS_days", "-95")),
    )
    add(
        "zero_survival_time",
        {**quarantine, "row": 3, "field": "OS_days"},
        _csv(HEADER, _set(ROWS, "P3", "OS_days", "0")),
    )
    add(
        "survival_time_not_a_number",
        {**quarantine, "row": 2, "field": "OS_days"},
        _csv(HEADER, _set(ROWS, "P2", "OS_days", "12OO")),
    )
    add(
        "missing_survival_time",
        {**quarantine, "row": 2, "field": "OS_days"},
        _csv(HEADER, _set(ROWS, "P2", "OS_days", "")),
    )
    add(
        "event_not_0_1",
        {**quarantine, "row": 4, "field": "Status"},
        _csv(HEADER, _set(ROWS, "P4", "Status", "2")),
    )
    add(
        "missing_event",
        {**quarantine, "row": 4, "field": "Status"},
        _csv(HEADER, _set(ROWS, "P4", "Status", "NA")),
    )
    add(
        "missing_patient_id",
        {**quarantine, "row": 1, "field": "patient_id"},
        _csv(HEADER, _set(ROWS, "P1", "PatientID", "")),
    )
    dup = [*ROWS, list(ROWS[1])]
    add("duplicate_patient_id", {**quarantine, "row": 6, "field": "patient_id", "rows": 5}, _csv(HEADER, dup))
    conflict = [*ROWS, list(ROWS[1])]
    conflict[-1][3] = "140"
    add(
        "duplicate_patient_conflicting_values",
        {**quarantine, "row": 6, "field": "hb", "rows": 5},
        _csv(HEADER, conflict),
    )
    add("truncated_file", {**quarantine, "row": 5, "field": "Cyto"}, good[: good.rindex("\nP5") + 16])
    extra = [list(r) for r in ROWS]
    extra[2] = [*extra[2], "surplus"]
    add("row_with_extra_fields", {**quarantine, "row": 3, "field": "(row)"}, _csv(HEADER, extra))
    dates = {**MAPPING, "time": {"start": "Diagnosis", "end": "LastContact", "format": "%d.%m.%Y"}}
    dh = [h for h in HEADER if h != "OS_days"] + ["Diagnosis", "LastContact"]
    drows = [
        [v for h, v in zip(HEADER, r, strict=True) if h != "OS_days"] + ["01.03.2015", "01.03.2017"]
        for r in ROWS
    ]
    bad_dates = [list(r) for r in drows]
    bad_dates[1][-1] = "31.02.2016"
    add("malformed_date", {**quarantine, "row": 2, "field": "LastContact"}, _csv(dh, bad_dates), dates)
    before = [list(r) for r in drows]
    before[3][-1] = "01.03.2014"
    add("death_before_diagnosis", {**quarantine, "row": 4, "field": "LastContact"}, _csv(dh, before), dates)
    iso = [list(r) for r in drows]
    iso[0][-2] = "2015-03-01"
    add("date_in_another_format", {**quarantine, "row": 1, "field": "Diagnosis"}, _csv(dh, iso), dates)
    # Rejected values (set missing, listed with row and field); the record arrives.
    add(
        "out_of_range_value",
        {**finding, "row": 2, "field": "hb"},
        _csv(HEADER, _set(ROWS, "P2", "Hemoglobin", "450")),
    )
    add(
        "value_not_a_number",
        {**finding, "row": 3, "field": "Hemoglobin"},
        _csv(HEADER, _set(ROWS, "P3", "Hemoglobin", "8.8.1")),
    )
    add("sex_code_unknown", {**finding, "row": 1, "field": "Sex"}, _csv(HEADER, _set(ROWS, "P1", "Sex", "X")))
    add(
        "category_code_unknown",
        {**finding, "row": 5, "field": "Cyto"},
        _csv(HEADER, _set(ROWS, "P5", "Cyto", "Excellent")),
    )
    add(
        "gene_flag_not_0_1",
        {**finding, "row": 4, "field": "mut_TP53"},
        _csv(HEADER, _set(ROWS, "P4", "mut_TP53", "2")),
    )
    add(
        "unknown_column",
        {
            "status": 0,
            "where": "unmapped",
            "file": "data.csv",
            "row": "1 (header)",
            "field": "Comment",
            "rows": 5,
        },
        _csv([*HEADER, "Comment"], [[*r, "ok"] for r in ROWS]),
    )
    add(
        "gene_column_outside_guide",
        {
            "status": 0,
            "where": "unmapped",
            "file": "data.csv",
            "row": "1 (header)",
            "field": "mut_FOO1",
            "rows": 5,
        },
        _csv([*HEADER, "mut_FOO1"], [[*r, "0"] for r in ROWS]),
    )
    add(
        "variant_for_unknown_patient",
        {"status": 0, "where": "note", "file": "variants.tsv", "row": 6, "field": "PatientID", "rows": 5},
        {
            "data.csv": _long_data(),
            "variants.tsv": _csv(VARIANTS[0], [*VARIANTS[1:], ["P9", "TP53", "p.?", "0.2"]], "\t"),
        },
        _long_mapping(),
    )
    longv = [list(r) for r in VARIANTS]
    longv[2][1] = "SF3B1X"
    add(
        "gene_symbol_not_in_hgnc",
        {**finding, "file": "variants.tsv", "row": 2, "field": "Gene"},
        {"data.csv": _long_data(), "variants.tsv": _csv(longv[0], longv[1:], "\t")},
        _long_mapping(),
    )
    longv = [list(r) for r in VARIANTS]
    longv[1][3] = "41"
    add(
        "vaf_above_1",
        {**finding, "file": "variants.tsv", "row": 1, "field": "VAF"},
        {"data.csv": _long_data(), "variants.tsv": _csv(longv[0], longv[1:], "\t")},
        _long_mapping(),
    )
    longv = [list(r) for r in VARIANTS]
    longv[4][3] = "-0.1"
    add(
        "vaf_negative",
        {**finding, "file": "variants.tsv", "row": 4, "field": "VAF"},
        {"data.csv": _long_data(), "variants.tsv": _csv(longv[0], longv[1:], "\t")},
        _long_mapping(),
    )
    add(
        "long_variant_list_valid",
        {"status": 0, "where": "none", "rows": 5},
        {"data.csv": _long_data(), "variants.tsv": _csv(VARIANTS[0], VARIANTS[1:], "\t")},
        _long_mapping(),
    )
    _more_cases(add, good, err, quarantine, finding)
    return c


def _more_cases(add: Any, good: str, err: dict, quarantine: dict, finding: dict) -> None:
    """Issue 21's classes: readers, the bounded mapping parser, no usable rows."""
    mp = "mapping.yaml"
    add(
        "all_records_quarantined",
        {
            **err,
            "status": 4,
            "file": "data.csv",
            "row": "1-5",
            "field": "(records)",
            "says": ["event '2' is not 0/1 (nor a mapped code) (5)"],
        },
        _csv(HEADER, [[*r[:-1], "2"] for r in ROWS]),
    )
    add(
        "utf8_byte_order_mark",
        {"status": 0, "where": "none", "rows": 5, "says": ["byte-order mark"]},
        "\ufeff" + good,
    )
    add(
        "r_write_csv_row_names",
        {"status": 0, "where": "none", "rows": 5, "says": ["R row names"]},
        _csv(['""', *HEADER], [[f'"{i}"', *r] for i, r in enumerate(ROWS, 1)]),
    )
    add(
        "r_write_table_row_names",
        {"status": 0, "where": "none", "rows": 5, "says": ["R row names"]},
        _csv(HEADER, [[str(i), *r] for i, r in enumerate(ROWS, 1)], "\t"),
        {**MAPPING, "format": "tsv"},
    )
    # A legitimate quoted line break (a comment over two lines) moves every later record one
    # physical line down: the finding on record 3 must point at line 5, not 4.
    rows = [[*r, "ok"] for r in _set(ROWS, "P3", "Hemoglobin", "8.8.1")]
    rows[0][-1] = '"first line\nsecond line"'
    add(
        "quoted_line_break_moves_lines",
        {**finding, "row": 3, "field": "Hemoglobin", "line": "line 5"},
        _csv([*HEADER, "Comment"], rows),
        {**MAPPING, "ignore": ["Comment"]},
    )
    # A quote opened and never closed folds every later record into one field.
    folded = _csv(HEADER, ROWS).replace(",Intermediate,", ',"Intermediate,')
    add(
        "unbalanced_quote_folds_records",
        {
            **quarantine,
            "rows": 1,
            "row": 2,
            "field": "Cyto",
            "line": "lines 3-6",
            "says": ["3 line(s) folded", "quoting anomaly"],
        },
        folded,
    )
    text = yaml.safe_dump(MAPPING, sort_keys=False)
    add(
        "mapping_duplicate_key",
        {**err, "file": mp, "row": "25", "field": "hb", "says": ["key given twice (lines 22 and 25)"]},
        mapping=text.replace("  hb:\n", "  hb:\n    column: Hemoglobin\n    unit: g/L\n  hb:\n", 1),
    )
    laughs = "".join(f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]\n" for k in range(1, 9))
    add(
        "mapping_alias_bomb",
        {**err, "file": mp, "row": "43", "field": "(yaml)", "says": ["expands to more than"]},
        mapping=text + 'l0: &l0 "lol"\n' + laughs,
    )
    add(
        "mapping_nested_too_deep",
        {**err, "file": mp, "row": "38", "field": "(yaml)", "says": ["nested deeper than"]},
        mapping=text + "provenance: " + "[" * 40 + "]" * 40 + "\n",
    )
    add(
        "mapping_features_is_a_list",
        {**err, "file": mp, "row": "13", "field": "features", "says": ["got a list"]},
        mapping={**MAPPING, "features": ["hb", "age"]},
    )
    add(
        "mapping_unknown_encoding",
        {**err, "file": mp, "row": "38", "field": "encoding", "says": ["not a text encoding"]},
        mapping={**MAPPING, "encoding": "utf-9"},
    )
    add(
        "mapping_delimiter_two_characters",
        {**err, "file": mp, "row": "38", "field": "delimiter", "says": ["one character"]},
        mapping={**MAPPING, "delimiter": ";;"},
    )
    add(
        "mapping_header_row_not_a_number",
        {**err, "file": mp, "row": "38", "field": "header_row"},
        mapping={**MAPPING, "header_row": "three"},
    )
    # Found by the fuzz test (a flipped byte): a control character escaped as a traceback.
    add(
        "mapping_control_character",
        {**err, "file": mp, "row": "2", "field": "(yaml)", "says": ["special characters are not allowed"]},
        mapping=text.replace("centre: corpus", "centre: cor\x01pus"),
    )
    add(
        "mapping_date_format_unreadable",
        {**err, "file": mp, "row": "8", "field": "time.format", "says": ["not a date format"]},
        mapping={**MAPPING, "time": {"start": "Diagnosis", "end": "LastContact", "format": "%d.%Q.%Y"}},
    )
    add(
        "mapping_top_level_list",
        {**err, "file": mp, "row": "1", "field": "(yaml)", "says": ["expected a YAML mapping"]},
        mapping="- file: data.csv\n- centre: corpus\n",
    )
    # Unquoted yes/no are booleans in YAML 1.1: as codes they are kept as the text written.
    yes_no = [[*r[:-1], "yes" if r[-1] == "DEAD" else "no"] for r in ROWS]
    add(
        "mapping_unquoted_yes_no_codes",
        {"status": 0, "where": "none", "rows": 5, "says": ["is a boolean in YAML 1.1"]},
        _csv(HEADER, yes_no),
        mapping=text.replace("DEAD: 1", "yes: 1").replace("ALIVE: 0", "no: 0"),
    )
    add(
        "xlsx_merged_down_one_column",
        {"status": 0, "where": "none", "rows": 5, "says": []},
        {"data.xlsx": ("xlsx", 0, "merge_down")},
        {**MAPPING, "file": "data.xlsx"},
    )
    add(
        "xlsx_merged_across_columns",
        {**finding, "file": "data.xlsx", "row": 3, "field": "Sex", "line": "sheet row 4"},
        {"data.xlsx": ("xlsx", 0, "merge_across")},
        {**MAPPING, "file": "data.xlsx"},
    )
    add(
        "xlsx_formula_without_cached_value",
        {**finding, "file": "data.xlsx", "row": 4, "field": "Hemoglobin", "says": ["has no stored result"]},
        {"data.xlsx": ("xlsx", 0, "formula")},
        {**MAPPING, "file": "data.xlsx"},
    )
    add(
        "xlsx_error_cell",
        {**finding, "file": "data.xlsx", "row": 2, "field": "Platelets", "says": ["#DIV/0!"]},
        {"data.xlsx": ("xlsx", 0, "error")},
        {**MAPPING, "file": "data.xlsx"},
    )
    add(
        "parquet_valid",
        {"status": 0, "where": "none", "rows": 5},
        {"data.parquet": ("parquet", None)},
        {**MAPPING, "file": "data.parquet"},
    )
    add(
        "parquet_nested_column",
        {**err, "file": "data.parquet", "row": "1 (header)", "field": "Platelets", "says": ["flatten it"]},
        {"data.parquet": ("parquet", "nested")},
        {**MAPPING, "file": "data.parquet"},
    )
    add(
        "utf16_declared",
        {"status": 0, "where": "none", "rows": 5},
        good.encode("utf-16"),
        {**MAPPING, "encoding": "utf-16"},
    )
    # Issue 20: real exports. Events written 0.0/1.0 (R, pandas) are events, not quarantines.
    add(
        "event_written_as_floats",
        {"status": 0, "where": "none", "rows": 5},
        _csv(HEADER, [[*r[:-1], {"DEAD": "1.0", "ALIVE": "0.0"}[r[-1]]] for r in ROWS]),
        {**MAPPING, "event": {"column": "Status"}},
    )
    add(
        "missing_sentinel_counted",
        {
            "status": 0,
            "where": "none",
            "rows": 5,
            "says": ["sentinels set 2 cell(s) missing: Platelets '999' x2"],
        },
        _csv(HEADER, _set(_set(ROWS, "P2", "Platelets", "999"), "P4", "Platelets", "999.0")),
        {**MAPPING, "missing": [999]},
    )
    add(
        "centre_column_empty_cell",
        {**err, "file": "data.csv", "row": "3 (line 4)", "field": "Site", "says": ["no centre"]},
        _csv([*HEADER, "Site"], [[*r, "" if i == 2 else "corpus"] for i, r in enumerate(ROWS)]),
        {**MAPPING, "centre": {"column": "Site"}},
    )


def _xlsx_edit(ws: Any, edit: str | None) -> None:
    """Spreadsheet damage of the kinds hand-kept sheets carry (data rows start at sheet row 2)."""
    if edit == "merge_down":  # Cyto of P4 and P5 as one merged cell: both rows take the anchor's value
        ws.merge_cells("F5:F6")
    elif edit == "merge_across":  # Age and Sex of P3 merged into one cell
        ws.merge_cells("B4:C4")
    elif edit == "formula":  # written without a cached result, as scripts do
        ws["D5"] = "=100+31"
    elif edit == "error":
        ws["E3"] = "#DIV/0!"


def _xlsx(path: Path, title_rows: int, edit: str | None = None) -> None:
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    for k in range(title_rows):
        ws.append([f"Hospital export, title line {k + 1}"])
    ws.append(HEADER)
    for r in ROWS:
        ws.append(
            [float(v) if v.replace(".", "").isdigit() and j not in (0,) else v for j, v in enumerate(r)]
        )
    _xlsx_edit(ws, edit)
    book.save(path)


def _parquet(path: Path, kind: str | None) -> None:
    import polars as pl

    df = pl.DataFrame({h: [r[j] for r in ROWS] for j, h in enumerate(HEADER)})
    if kind == "nested":  # a list column, as pandas/arrow exports of repeated measurements give
        df = df.with_columns(
            pl.col("Platelets").map_elements(lambda v: [v, v], return_dtype=pl.List(pl.String))
        )
    df.write_parquet(path)


def main() -> None:
    if HERE.exists():
        shutil.rmtree(HERE)
    for name, case in cases().items():
        folder = HERE / name
        folder.mkdir(parents=True)
        for fname, content in case["files"].items():
            if isinstance(content, tuple) and content[0] == "parquet":
                _parquet(folder / fname, content[1])
            elif isinstance(content, tuple):
                _xlsx(folder / fname, *content[1:])
            elif isinstance(content, bytes):
                (folder / fname).write_bytes(content)
            else:
                (folder / fname).write_text(content, encoding="utf-8")
        mapping = case["mapping"]
        text = mapping if isinstance(mapping, str) else yaml.safe_dump(mapping, sort_keys=False)
        (folder / "mapping.yaml").write_text(text, encoding="utf-8")
        (folder / "expect.yaml").write_text(yaml.safe_dump(case["expect"], sort_keys=False), encoding="utf-8")
    print(f"wrote {len(cases())} cases to {HERE}")


if __name__ == "__main__":
    main()
