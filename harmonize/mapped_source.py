"""The ``csv`` source adapter: a parsed mapping applied to its table, row by row.

:mod:`harmonize.mapping` parses and checks a mapping YAML against a guide; this module
reads the table it names and yields one :class:`~harmonize.sources.PatientRecord` per row
(per centre: one mapping, or one table split by a centre column), with every bad cell as an
``Issue`` and what the rules did (sentinels hit, derived flags, columns nobody mapped, guide
features left out) in the centre's notes for the quality report. The cell rules themselves are
the pure functions of :mod:`harmonize.mapping_rules`.
"""

from __future__ import annotations

import datetime as dt
import difflib
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harmonize import terminology as term
from harmonize.errors import NoUsableRows
from harmonize.guide import Guide
from harmonize.mapping import (
    ROW_ID,
    ColumnMap,
    MappingError,
    SourceMapping,
    _coded,
    _is_na,
    _number,
    load_mapping,
)
from harmonize.mapping_rules import DerivedFlag, Sentinel, binary_word, combine, match_values, sentinel_hit
from harmonize.mapping_rules import label as sentinel_label
from harmonize.sources import Issue, PatientRecord, check_centre_name
from harmonize.tables import ROW_NAMES, RawTable, SourceError, read_table


def _gene_features(guide: Guide) -> list[str]:
    """Guide features that are gene mutation flags (Genomics variants or binary genomic features)."""
    return [
        f.name
        for f in guide.features
        if (f.fhir is not None and f.fhir.gene is not None) or (f.group == "genomic" and f.kind == "binary")
    ]


def _read_mapped(m: SourceMapping) -> RawTable:
    """The table a mapping names, read with the mapping's format options."""
    return read_table(
        m.file,
        fmt=m.fmt,
        delimiter=m.delimiter,
        encoding=m.encoding,
        sheet=m.sheet,
        header_row=m.header_row,
    )


def _shown(text: str | None) -> str:
    return "empty" if text is None else repr(text)


def _row_centre(m: SourceMapping, row: _Row) -> str | None:
    """The centre a row belongs to, read from the mapping's centre column (``None`` if empty)."""
    text = row.get(m.centre_column.column)
    if _is_na(text):
        return None
    ok, coded = _coded(text.strip(), m.centre_column.codes)
    if not ok:
        return text.strip()  # `codes:` rename some centres; the others keep the name they have
    return None if coded is None else str(coded).strip()


def _symbol(f: Any) -> str:
    return f.fhir.gene if f.fhir is not None and f.fhir.gene is not None else f.name


class _Row:
    """Cell access by column name for one data row, reporting where each value came from."""

    def __init__(self, table: RawTable, index: dict[str, int], k: int) -> None:
        self.cells = table.rows[k]
        self.index = index
        self.row = k + 1
        self.where = table.lines[k]

    def get(self, column: str) -> str | None:
        j = self.index[column]
        return self.cells[j] if j < len(self.cells) else None

    def present(self, column: str) -> bool:
        return self.index[column] < len(self.cells)


class MappedSource:
    """Source adapter for one or more mapped tables.

    One mapping is one centre, or, with ``centre: {column: X}``, one centre per value of
    ``X`` (the table is then read once and split by that column).

    Args:
        mappings: parsed mappings; centre names must be unique over all of them.
        guide: the guide they map to.
        provenance: ``source``, ``licence``, ``citation`` (merged over each mapping's own).
        name: the adapter's name (``csv``, ``simulated_dialects``...).
        truth: simulation ground truth keyed by ``patient_id`` (never FHIR), or ``None``.
    """

    def __init__(
        self,
        mappings: list[SourceMapping],
        guide: Guide,
        *,
        provenance: Mapping[str, Any] | None = None,
        name: str = "csv",
        truth: Any = None,
    ) -> None:
        self.name = name
        self._truth = truth
        self.guide = guide
        self.by_centre: dict[str, SourceMapping] = {}
        self._tables: dict[Path, RawTable] = {}  # a table with a centre column is read once
        for m in mappings:
            for centre in self._centres_of(m):
                if centre in self.by_centre:
                    raise MappingError(
                        m.path,
                        "?",
                        "centre",
                        f"centre {centre!r} is also mapped by {self.by_centre[centre].path}",
                    )
                self.by_centre[centre] = m
        self._provenance = dict(provenance or {})
        self._unmapped: dict[str, list[str]] = {}
        self._notes: dict[str, dict[str, Any]] = {}
        self._reference: dict[str, list[dict[str, Any]]] = {}

    def _table(self, m: SourceMapping) -> RawTable:
        if m.centre_column is None:
            return _read_mapped(m)
        if m.path not in self._tables:
            self._tables[m.path] = _read_mapped(m)
        return self._tables[m.path]

    def _centres_of(self, m: SourceMapping) -> list[str]:
        """The centres one mapping yields: its own, or every value of its centre column (sorted)."""
        if m.centre_column is None:
            return [m.centre]
        table = self._table(m)
        cm = m.centre_column
        if cm.column not in table.header:
            raise SourceError(
                m.file,
                f"{m.header_row} (header)",
                cm.column,
                f"column for 'centre' (mapping {m.path}) not found",
            )
        if not table.rows:  # no row, no centre: there is nothing to write even with --allow-empty
            raise NoUsableRows(
                m.file,
                f"{m.header_row} (header)",
                "(records)",
                f"the file has a header but no data rows, so its centre column {cm.column!r} names no centre",
            )
        index = {c: j for j, c in enumerate(table.header)}
        found: set[str] = set()
        for k in range(len(table.rows)):
            row = _Row(table, index, k)
            centre = _row_centre(m, row)
            if centre is None:
                # A row that belongs to no centre cannot be placed: refuse rather than drop it.
                raise SourceError(
                    m.file,
                    f"{row.row} ({row.where})",
                    cm.column,
                    "no centre: the mapping takes each row's centre from this column and this row's "
                    + (
                        f"cell is {_shown(row.get(cm.column))}; fill it"
                        if row.present(cm.column)
                        else f"has {len(row.cells)} of {len(table.header)} fields (truncated?)"
                    ),
                )
            try:
                check_centre_name(centre)
            except ValueError as err:
                raise SourceError(m.file, f"{row.row} ({row.where})", cm.column, str(err)) from None
            found.add(centre)
        return sorted(found)

    def centres(self) -> tuple[str, ...]:
        return tuple(self.by_centre)

    def provenance(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for m in self.by_centre.values():
            out.update(dict(m.provenance))
        out.update(self._provenance)
        out["mappings"] = {c: str(m.path) for c, m in self.by_centre.items()}
        if self._unmapped:
            out["unmapped_columns"] = dict(self._unmapped)
        return out

    def truth(self) -> Any:
        """Ground truth of a simulated source (``patient_id`` + columns), else ``None``."""
        return self._truth

    def notes(self, centre: str) -> dict[str, Any]:
        """What the quality report should say about the source beyond its records."""
        m = self.by_centre[centre]
        out: dict[str, Any] = {
            "file": str(m.file),
            "mapping": str(m.path),
            "unmapped_columns": self._unmapped.get(centre, []),
        }
        if m.centre_column is not None:
            out["centre_from_column"] = m.centre_column.column
        out.update(self._notes.get(centre, {}))
        return out

    def reference(self) -> Any:
        """The mapping's ``reference:`` columns per patient (``reference.parquet``), or ``None``."""
        rows = [r for c in self.by_centre for r in self._reference.get(c, [])]
        if not rows:
            return None
        import polars as pl

        names = [n for n, _ in next(iter(self.by_centre.values())).reference]
        cols: dict[str, Any] = {"patient_id": pl.Series([r["patient_id"] for r in rows], dtype=pl.String)}
        for n in {n for r in rows for n in r} - {"patient_id"} - set(names):
            names.append(n)  # another centre's mapping named more columns
        for n in names:
            values = [r.get(n) for r in rows]
            if all(v is None or isinstance(v, float) for v in values):
                cols[n] = pl.Series(values, dtype=pl.Float64)
            else:  # one text cell makes the column text (numbers as the source wrote them, roughly)
                cols[n] = pl.Series(
                    [None if v is None else f"{v:g}" if isinstance(v, float) else v for v in values]
                )
        return pl.DataFrame(cols)

    def unmapped_columns(self, centre: str) -> list[str]:
        """Columns of a centre's table that the mapping neither uses nor lists under ``ignore``."""
        m = self.by_centre[centre]
        table = self._table(m)
        return self._used(m, table)[1]

    def _used(self, m: SourceMapping, table: RawTable) -> tuple[dict[str, str], list[str]]:
        """``feature -> column`` of the wide gene matrix, and the unmapped columns."""
        used = {m.patient_id, m.event.column, *(cm.column for _, cm in m.features), *m.ignore, ROW_NAMES}
        used |= {m.time.column} if m.time is not None else {m.dates[0], m.dates[1]}
        used |= {c for _, d in m.derived for c in d.columns} | {cm.column for _, cm in m.reference}
        used |= {m.centre_column.column} if m.centre_column is not None else set()
        genes: dict[str, str] = {}
        if m.gene_prefix is not None:
            for name in _gene_features(self.guide):
                if m.gene_prefix + name in table.header:
                    genes[name] = m.gene_prefix + name
            used |= set(genes.values())  # prefixed columns of genes outside the guide stay unmapped
        return genes, [c for c in table.header if c not in used]

    def records(self, centre: str) -> Iterator[PatientRecord]:
        m = self.by_centre[centre]
        table = self._table(m)
        index = {c: j for j, c in enumerate(table.header)}
        required = [("patient_id", m.patient_id)] if m.patient_id != ROW_ID else []
        required += [("event", m.event.column)]
        required += (
            [("time", m.time.column)] if m.time is not None else [("time", m.dates[0]), ("time", m.dates[1])]
        )
        required += [(name, cm.column) for name, cm in m.features]
        required += [(name, c) for name, d in m.derived for c in d.columns]
        required += [(name, cm.column) for name, cm in m.reference]
        for target, column in required:
            if column not in index:
                close = difflib.get_close_matches(column, table.header, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                raise SourceError(
                    m.file,
                    f"{m.header_row} (header)",
                    column,
                    f"column for {target!r} (mapping {m.path}) not found{hint}; "
                    f"columns: {list(table.header)}",
                )
        genes, unmapped = self._used(m, table)
        self._unmapped[centre] = unmapped
        gene_features = _gene_features(self.guide)
        notes: dict[str, Any] = {"table": table.notes} if table.notes else {}
        if m.warnings:
            notes["mapping_warnings"] = list(m.warnings)
        # Cells that hold no stored value (formulas without a result, Excel errors, merges over
        # several columns) are findings of the feature that reads them, or quarantine the record.
        targets: dict[str, str] = {column: name for name, column in genes.items()}
        targets |= {c: name for name, d in m.derived for c in d.columns}
        targets |= {cm.column: name for name, cm in m.features}
        targets |= {m.patient_id: "patient_id", m.event.column: "event"}
        targets |= {m.time.column: "time"} if m.time is not None else {m.dates[0]: "time", m.dates[1]: "time"}
        cell_issues: dict[int, list[Issue]] = {}
        for k, j, reason in table.cell_issues:
            column = table.header[j] if j < len(table.header) else f"column {j + 1}"
            target = "record" if reason.startswith("quoting anomaly") else targets.get(column)
            if target is None:
                target = "(unmapped column)"  # counted and listed, though no feature reads it
            cell_issues.setdefault(k, []).append(Issue(target, column, reason))
        from_columns = {name for name, _ in m.features} | {name for name, _ in m.derived}
        if m.gene_prefix is not None:
            # A gene flag mapped under `features:` (FLT3_ITD from a clinical call) has its column.
            notes["guide_genes_without_a_column"] = [
                g for g in gene_features if g not in genes and g not in from_columns
            ]
        mapped = from_columns | set(genes) | (set(gene_features) if m.variants is not None else set())
        # Guide features this mapping leaves out are missing for every patient of the centre.
        notes["guide_features_not_mapped"] = [f for f in self.guide.feature_names if f not in mapped]
        variants = self._variants(m) if m.variants is not None else None
        if variants is not None:
            ids = {row[index[m.patient_id]] for row in table.rows if index[m.patient_id] < len(row)}
            orphans = sorted(set(variants) - ids)
            # Variant rows whose patient is not in the table cannot reach any record: say so.
            notes["variant_patients_not_in_table"] = {
                "count": len(orphans),
                "first": [
                    {
                        "source": str(m.variants.file),
                        "row": self._variant_rows[p],
                        "field": m.variants.patient_id,
                        "patient_id": p,
                    }
                    for p in orphans[:20]
                ],
            }
        self._notes[centre] = notes
        units = {name: cm.unit for name, cm in m.features if cm.unit is not None}
        self._hits: Counter[tuple[str, str, str]] = Counter()  # (target, column, sentinel) -> cells
        derived_counts = {name: Counter() for name, _ in m.derived}
        self._reference[centre] = []
        for k in range(len(table.rows)):
            row = _Row(table, index, k)
            if m.centre_column is not None and _row_centre(m, row) != centre:
                continue  # another centre's row of the same table
            issues: list[Issue] = list(cell_issues.get(k, ()))
            if len(row.cells) < len(table.header):
                missing = table.header[len(row.cells)]
                issues.append(
                    Issue(
                        "record",
                        missing,
                        f"row has {len(row.cells)} of {len(table.header)} fields (truncated?)",
                    )
                )
            elif len(row.cells) > len(table.header):
                issues.append(
                    Issue(
                        "record", "(row)", f"row has {len(row.cells)} fields, header has {len(table.header)}"
                    )
                )
            pid = f"{centre}-{row.row:06d}" if m.patient_id == ROW_ID else row.get(m.patient_id)
            values: dict[str, Any] = {}
            for name, cm in m.features:
                values[name] = self._value(m, name, cm, row, issues)
            for name, column in genes.items():
                values[name] = self._value(m, name, ColumnMap(column, codes=m.gene_codes), row, issues)
            for name, d in m.derived:
                values[name] = self._derived(m, name, d, row, issues)
                derived_counts[name][values[name]] += 1
            if m.reference and pid is not None:
                self._reference[centre].append(
                    {"patient_id": pid} | {n: self._reference_value(m, n, cm, row) for n, cm in m.reference}
                )
            if variants is not None and pid is not None:
                found, bad = variants.get(pid, ({}, {}))
                for name in gene_features:
                    if name in from_columns:
                        continue  # a column of the table speaks for it: its missing value stays missing
                    if name in bad:
                        values[name] = None
                        issues.extend(i for i in bad[name] if i not in issues)
                    elif name not in values or values[name] is None:
                        values[name] = int(name in found)
            time, event = self._endpoint(m, row, issues)
            yield PatientRecord(
                patient_id=pid,
                centre=centre,
                source=f"{m.file} ({row.where})",
                row=row.row,
                values=values,
                units=units,
                time=time,
                event=event,
                issues=tuple(issues),
            )
        self._count_rules(centre, m, derived_counts)  # runs once the reader has taken every record

    def _count_rules(self, centre: str, m: SourceMapping, derived_counts: dict[str, Counter]) -> None:
        """Keep the centre's notes on sentinels and derived flags current (read after the records)."""
        notes = self._notes[centre]
        if m.missing or self._hits:
            notes["missing_sentinels"] = {
                "global": [sentinel_label(v) for v in m.missing],
                "set_missing": [
                    {"feature": target, "column": column, "sentinel": hit, "cells": n}
                    for (target, column, hit), n in sorted(self._hits.items())
                ],
            }
        if m.derived:
            notes["derived_features"] = {
                name: {
                    "rule": d.describe(),
                    "positive": derived_counts[name][1],
                    "negative": derived_counts[name][0],
                    "undetermined": derived_counts[name][None],
                }
                for name, d in m.derived
            }

    def _cell(
        self, m: SourceMapping, row: _Row, column: str, extra: tuple[Sentinel, ...], target: str
    ) -> Any:
        """A cell's text, ``None`` where empty, NA or a declared sentinel (counted)."""
        text = row.get(column)
        if text is None:
            return None
        sentinels = (*extra, *m.missing)
        hit = sentinel_hit(text, sentinels, m.decimal) if sentinels else None
        if hit is not None:  # before the built-in NA words: a declared sentinel is always counted
            self._hits[(target, column, hit)] += 1
            return None
        return None if _is_na(text) else text

    def _derived(
        self, m: SourceMapping, name: str, d: DerivedFlag, row: _Row, issues: list[Issue]
    ) -> int | None:
        if d.values:  # the values form: one column's text against the listed values
            text = self._cell(m, row, d.columns[0], d.missing, name)
            return None if text is None else match_values(d.rule, text, d.values, d.separator)
        flags = []
        for column in d.columns:
            cm = ColumnMap(column, codes=d.codes, missing=d.missing)
            flags.append(self._value(m, name, cm, row, issues))
        return combine(d.rule, flags)

    def _reference_value(self, m: SourceMapping, name: str, cm: ColumnMap, row: _Row) -> Any:
        """A reference cell: its code's value, else its number, else its text (``None`` if missing)."""
        text = self._cell(m, row, cm.column, cm.missing, name)
        if text is None:
            return None
        ok, coded = _coded(text, cm.codes)
        if not ok or coded is None:
            return None
        try:
            return _number(str(coded), m.decimal)
        except ValueError:
            return str(coded)

    def _value(self, m: SourceMapping, name: str, cm: ColumnMap, row: _Row, issues: list[Issue]) -> Any:
        text = self._cell(m, row, cm.column, cm.missing, name)
        if text is None:
            return None
        decimal = m.decimal
        f = self.guide.feature(name)
        ok, coded = _coded(text, cm.codes)
        if not ok:
            issues.append(
                Issue(name, cm.column, f"code {text!r} not in the mapping's codes {[c for c, _ in cm.codes]}")
            )
            return None
        if coded is None:
            return None
        if f.kind == "continuous":
            try:
                return _number(str(coded), decimal)
            except ValueError:
                issues.append(Issue(name, cm.column, f"{text!r} is not a number"))
                return None
        if f.kind == "binary":
            if isinstance(coded, int) and coded in (0, 1):
                return coded
            v = binary_word(str(coded))  # 0/1, 0.0/1.0, TRUE/FALSE
            if v is None:
                issues.append(Issue(name, cm.column, f"{text!r} is not 0/1"))
            return v
        if str(coded) not in f.levels:
            issues.append(Issue(name, cm.column, f"{text!r} is not one of the levels {list(f.levels)}"))
            return None
        return str(coded)

    def _endpoint(self, m: SourceMapping, row: _Row, issues: list[Issue]) -> tuple[float | None, int | None]:
        time: float | None = None
        if m.time is not None:
            text = self._cell(m, row, m.time.column, m.time.missing, "time")
            if text is None:
                issues.append(Issue("time", m.time.column, "survival time is missing"))
            else:
                try:
                    mul, div = term.conversion(str(m.time.unit), self.guide.time_unit)
                    time = _number(text, m.decimal) * mul / div
                except ValueError:
                    issues.append(Issue("time", m.time.column, f"survival time {text!r} is not a number"))
                else:
                    if time < 0 or (time == 0 and not self.guide.time_zero_allowed):
                        issues.append(Issue("time", m.time.column, f"survival time {text!r} is not positive"))
        else:
            start_col, end_col, fmt = m.dates
            parsed = []
            for column in (start_col, end_col):
                text = row.get(column)
                try:
                    parsed.append(dt.datetime.strptime(str(text), fmt).date())
                except ValueError:
                    what = "missing" if _is_na(text) else f"{text!r} does not match the format {fmt!r}"
                    issues.append(Issue("time", column, f"date {what}"))
            if len(parsed) == 2:
                days = (parsed[1] - parsed[0]).days
                if days < 0 or (days == 0 and not self.guide.time_zero_allowed):
                    issues.append(
                        Issue("time", end_col, f"{end_col} {parsed[1]} is not after {start_col} {parsed[0]}")
                    )
                time = days / 365.25
        event: int | None = None
        text = self._cell(m, row, m.event.column, m.event.missing, "event")
        ok, coded = _coded(text or "", m.event.codes)
        # R and pandas write a 0/1 column as 0.0/1.0 or TRUE/FALSE; both are events, not errors.
        flag = None if not ok or coded is None else binary_word(str(coded))
        if text is None:
            issues.append(Issue("event", m.event.column, "event is missing"))
        elif flag is None:
            issues.append(Issue("event", m.event.column, f"event {text!r} is not 0/1 (nor a mapped code)"))
        else:
            event = flag
        return time, event

    def _variants(self, m: SourceMapping) -> dict[str, tuple[dict[str, str], dict[str, list[Issue]]]]:
        """patient id -> (found gene features -> HGVS, gene features with a bad variant row -> issues)."""
        v = m.variants
        table = read_table(v.file, fmt=v.fmt, delimiter=v.delimiter, sheet=v.sheet)
        index = {c: j for j, c in enumerate(table.header)}
        for column in (v.patient_id, v.gene, v.vaf, v.hgvs):
            if column is not None and column not in index:
                raise SourceError(
                    v.file, "1 (header)", column, f"variant list column (mapping {m.path}) not found"
                )
        genes = {_symbol(self.guide.feature(name)): name for name in _gene_features(self.guide)}
        hgnc = term.hgnc_table()
        out: dict[str, tuple[dict[str, str], dict[str, list[Issue]]]] = {}
        self._variant_rows: dict[str, int] = {}
        for k in range(len(table.rows)):
            row = _Row(table, index, k)
            where = f"{v.file} ({row.where})"
            at = {"source": where, "row": row.row}
            pid, gene = row.get(v.patient_id), row.get(v.gene)
            if pid is not None:
                self._variant_rows.setdefault(pid, row.row)
            if pid is None:
                raise SourceError(
                    v.file, f"{row.row} ({row.where})", v.patient_id, "variant without a patient id"
                )
            found, bad = out.setdefault(pid, ({}, {}))
            if gene is None or gene not in hgnc:
                # Not an approved symbol: we cannot tell which gene it is, so every
                # guide gene of this patient is unknown rather than wild type.
                issue = Issue("variants", v.gene, f"gene symbol {gene!r} is not in the HGNC table", **at)
                for name in genes.values():
                    bad.setdefault(name, []).append(issue)
                continue
            if gene not in genes:
                continue  # an approved gene outside the guide's panel
            name = genes[gene]
            if v.not_tested is not None and v.hgvs is not None and row.get(v.hgvs) == v.not_tested:
                bad.setdefault(name, [])  # untested: unknown, not wild type (and not an error)
                continue
            if v.vaf is not None:
                text = row.get(v.vaf)
                try:
                    vaf = _number(str(text))
                    if not 0.0 <= vaf <= 1.0:
                        raise ValueError(text)
                except ValueError:
                    bad.setdefault(name, []).append(
                        Issue(name, v.vaf, f"VAF {text!r} is not in [0, 1]", **at)
                    )
                    continue
                if vaf < v.min_vaf:
                    continue
            found[name] = row.get(v.hgvs) if v.hgvs is not None else ""
        return out


def mapped_source(
    guide: Guide, mappings: str | Path | list[str | Path], *, provenance: Mapping[str, Any] | None = None
) -> MappedSource:
    """The ``csv`` source: one mapping YAML per centre (each naming its table)."""
    paths = [mappings] if isinstance(mappings, str | Path) else list(mappings)
    return MappedSource([load_mapping(p, guide) for p in paths], guide, provenance=provenance)
