"""Declarative source mappings: any table plus a small YAML -> canonical patient records.

A mapping names, against a guide, which column holds each feature, the unit it
is reported in, how codes translate to the guide's vocabulary, where the
survival endpoint comes from (a time column with its unit, or two dates) and
where mutations are (a wide 0/1 matrix via a column prefix, or a long variant
list with gene, HGVS and VAF). Hospital dialects of the simulator
(:mod:`harmonize.dialects`) and user tables (source ``csv``) are both just
mappings; :class:`MappedSource` is the one adapter behind them. Example
(``docs/user_csv.md`` has the full walk-through)::

    file: gbsg2.csv
    centre: gbsg
    patient_id: {column: id}
    time: {column: rfstime, unit: d}
    event: {column: status, codes: {"1": 1, "0": 0}}
    features:
      age: {column: age, unit: a}
      tsize: {column: tsize, unit: mm}

A broken mapping fails with :class:`MappingError` naming the file and the key
(with a did-you-mean for typos); a broken source row becomes a quarantined
record or a rejected value, each listed with file, row and field in the
quality report (:mod:`harmonize.fhir`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import difflib
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from harmonize import terminology as term
from harmonize.guide import Guide
from harmonize.sources import Issue, PatientRecord, check_centre_name
from harmonize.tables import RawTable, SourceError, read_table

ROW_ID = "@row"  # patient_id for tables without one: "<centre>-<data row>"
NA_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none", ".", "-", "?", "missing"})
_TOP_KEYS = (
    "file",
    "format",
    "delimiter",
    "decimal",
    "encoding",
    "sheet",
    "header_row",
    "centre",
    "patient_id",
    "time",
    "event",
    "features",
    "genes",
    "variants",
    "ignore",
    "provenance",
)
_FEATURE_KEYS = ("column", "unit", "codes")
_TIME_KEYS = ("column", "unit", "start", "end", "format")
_EVENT_KEYS = ("column", "codes")
_GENES_KEYS = ("prefix", "codes")
_VARIANT_KEYS = (
    "file",
    "format",
    "delimiter",
    "sheet",
    "patient_id",
    "gene",
    "vaf",
    "hgvs",
    "min_vaf",
    "not_tested",
)


class MappingError(ValueError):
    """A mapping file is malformed; the message names the file and the key."""


@dataclasses.dataclass(frozen=True)
class ColumnMap:
    """One guide feature read from one column."""

    column: str
    unit: str | None = None
    codes: tuple[tuple[str, Any], ...] | None = None  # source text -> guide value


@dataclasses.dataclass(frozen=True)
class VariantList:
    """A long variant list: one row per found variant."""

    file: Path
    fmt: str | None
    delimiter: str | None
    sheet: str | None
    patient_id: str
    gene: str
    vaf: str | None
    hgvs: str | None
    min_vaf: float
    not_tested: str | None = None  # an HGVS value that marks the gene as not tested for the patient


@dataclasses.dataclass(frozen=True)
class SourceMapping:
    """A parsed mapping (see the module docstring for the YAML)."""

    path: Path
    file: Path
    fmt: str | None
    delimiter: str | None
    encoding: str
    sheet: str | None
    header_row: int
    decimal: str
    centre: str
    patient_id: str
    time: ColumnMap | None
    dates: tuple[str, str, str] | None  # (start column, end column, strptime format)
    event: ColumnMap
    features: tuple[tuple[str, ColumnMap], ...]
    gene_prefix: str | None
    gene_codes: tuple[tuple[str, Any], ...] | None
    variants: VariantList | None
    ignore: tuple[str, ...]
    provenance: tuple[tuple[str, Any], ...]


def _line_of(path: Path, key: str) -> str:
    """The mapping line of a dotted key, following its parts block by block.

    A part that is absent (a missing ``unit``) points at its parent's line;
    ``?`` when not even the first part is in the file.
    """
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return "?"
    found, start, indent = None, 0, -1
    for part in key.split("."):
        heads = (f"{part}:", f'"{part}":', f"'{part}':", f"- {part}:")
        for n in range(start, len(lines)):
            text = lines[n].strip()
            level = len(lines[n]) - len(lines[n].lstrip())
            if text and level <= indent:
                break  # left the parent's block
            if text.startswith(heads) or f"{{{part}:" in text or f", {part}:" in text:
                found, start, indent = n + 1, n + 1, level
                break
        else:
            break
        if found != start:
            break
    return "?" if found is None else str(found)


def _fail(path: Path, key: str, msg: str) -> MappingError:
    return MappingError(f"mapping {path}: row {_line_of(path, key)} (line), field {key!r}: {msg}")


def _check_keys(raw: Mapping[str, Any], allowed: tuple[str, ...], path: Path, where: str) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {list(allowed)}"
            raise _fail(path, f"{where}{key}", f"unknown key{hint}")


def _column_map(raw: Any, path: Path, where: str, allowed: tuple[str, ...] = _FEATURE_KEYS) -> ColumnMap:
    if isinstance(raw, str):
        return ColumnMap(column=raw)
    if not isinstance(raw, dict) or "column" not in raw:
        raise _fail(path, where, "expected a column name or {column: ..., unit: ..., codes: {...}}")
    _check_keys(raw, allowed, path, f"{where}.")
    codes = raw.get("codes")
    if codes is not None and not isinstance(codes, dict):
        raise _fail(path, f"{where}.codes", "expected a mapping source code -> guide value")
    return ColumnMap(
        column=str(raw["column"]),
        unit=None if raw.get("unit") is None else str(raw["unit"]),
        codes=None if codes is None else tuple((str(k), v) for k, v in codes.items()),
    )


def _check_codes(cm: ColumnMap, allowed: tuple[Any, ...], path: Path, where: str) -> None:
    for src, value in cm.codes or ():
        if value is not None and value not in allowed:
            raise _fail(path, f"{where}.codes.{src}", f"value {value!r} is not one of {list(allowed)}")


def load_mapping(path: str | Path, guide: Guide, *, file: str | Path | None = None) -> SourceMapping:
    """Parse and check a mapping YAML against a guide.

    Args:
        path: the mapping file.
        guide: the guide its features refer to.
        file: the table (overrides the mapping's ``file``; relative paths in the
            mapping are relative to the mapping's folder).

    Raises:
        MappingError: naming the file and the key (unknown keys, feature names not in
            the guide, units without a conversion, codes outside the guide's levels).
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        line = "?" if mark is None else mark.line + 1
        msg = " ".join(str(err).split())
        raise MappingError(
            f"mapping {path}: row {line} (line), field '(yaml)': not valid YAML: {msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise MappingError(f"mapping {path}: row 0, field '(file)': cannot read it: {err}") from None
    if not isinstance(raw, dict):
        raise MappingError(f"mapping {path}: expected a YAML mapping at the top level")
    return parse_mapping(raw, guide, path, file=file)


def parse_mapping(
    raw: Mapping[str, Any], guide: Guide, path: Path, *, file: str | Path | None = None
) -> SourceMapping:
    """:func:`load_mapping` on an already-parsed dict (``path`` names it in messages)."""
    _check_keys(raw, _TOP_KEYS, path, "")
    for key in ("patient_id", "time", "event"):
        if key not in raw:
            raise _fail(path, key, "required key is missing")  # row "?": there is no line to point at
    table = Path(file) if file is not None else raw.get("file")
    if table is None:
        raise _fail(path, "file", "no table named (give `file:` or pass the table)")
    table = Path(table) if Path(table).is_absolute() else path.parent / table
    features: list[tuple[str, ColumnMap]] = []
    for name, spec in (raw.get("features") or {}).items():
        if name not in guide.feature_names:
            close = difflib.get_close_matches(str(name), guide.feature_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _fail(path, f"features.{name}", f"not a feature of guide {guide.use_case!r}{hint}")
        f = guide.feature(name)
        cm = _column_map(spec, path, f"features.{name}")
        if f.kind == "continuous":
            if cm.unit is None:
                raise _fail(
                    path, f"features.{name}.unit", f"continuous feature needs its unit (guide: {f.unit})"
                )
            if (
                term.conversion(
                    cm.unit, str(f.unit), f.fhir.coding.code if f.fhir and f.fhir.coding else None
                )
                is None
            ):
                raise _fail(path, f"features.{name}.unit", f"no conversion from {cm.unit!r} to {f.unit!r}")
        elif f.kind == "binary":
            _check_codes(cm, (0, 1), path, f"features.{name}")
        else:
            _check_codes(cm, f.levels, path, f"features.{name}")
        features.append((name, cm))
    t = raw["time"]
    if not isinstance(t, dict):
        raise _fail(path, "time", "expected {column, unit} or {start, end, format}")
    _check_keys(t, _TIME_KEYS, path, "time.")
    time_map, dates = None, None
    if "column" in t:
        time_map = ColumnMap(column=str(t["column"]), unit=str(t.get("unit", guide.time_unit)))
        if term.conversion(time_map.unit, guide.time_unit) is None:
            raise _fail(path, "time.unit", f"no conversion from {time_map.unit!r} to {guide.time_unit!r}")
    elif "start" in t and "end" in t:
        dates = (str(t["start"]), str(t["end"]), str(t.get("format", "%Y-%m-%d")))
    else:
        raise _fail(path, "time", "give `column` (+ `unit`) or `start` and `end` date columns")
    event = _column_map(raw["event"], path, "event", _EVENT_KEYS)
    _check_codes(event, (0, 1), path, "event")
    genes = raw.get("genes") or {}
    if genes:
        if not isinstance(genes, dict):
            raise _fail(path, "genes", "expected {prefix: ..., codes: {...}}")
        _check_keys(genes, _GENES_KEYS, path, "genes.")
    variants = None
    if raw.get("variants"):
        v = raw["variants"]
        if not isinstance(v, dict):
            raise _fail(path, "variants", "expected {file, patient_id, gene, vaf, hgvs}")
        _check_keys(v, _VARIANT_KEYS, path, "variants.")
        for key in ("file", "patient_id", "gene"):
            if key not in v:
                raise _fail(path, f"variants.{key}", "required key is missing")
        vfile = Path(v["file"]) if Path(v["file"]).is_absolute() else table.parent / v["file"]
        variants = VariantList(
            vfile,
            v.get("format"),
            v.get("delimiter"),
            v.get("sheet"),
            str(v["patient_id"]),
            str(v["gene"]),
            v.get("vaf"),
            v.get("hgvs"),
            float(v.get("min_vaf", 0.0)),
            None if v.get("not_tested") is None else str(v["not_tested"]),
        )
    centre = str(raw.get("centre") or table.stem)
    try:
        check_centre_name(centre)
    except ValueError as err:
        raise _fail(path, "centre", str(err)) from None
    decimal = str(raw.get("decimal", "."))
    if decimal not in (".", ","):
        raise _fail(path, "decimal", f"expected '.' or ',', got {decimal!r}")
    header_row = raw.get("header_row", 1)
    if not isinstance(header_row, int) or header_row < 1:
        raise _fail(path, "header_row", f"expected a positive integer, got {header_row!r}")
    pid = raw["patient_id"]
    return SourceMapping(
        path=path,
        file=table,
        fmt=raw.get("format"),
        delimiter=raw.get("delimiter"),
        encoding=str(raw.get("encoding", "utf-8")),
        decimal=decimal,
        sheet=raw.get("sheet"),
        header_row=header_row,
        centre=centre,
        patient_id=str(pid["column"] if isinstance(pid, dict) else pid),
        time=time_map,
        dates=dates,
        event=event,
        features=tuple(features),
        gene_prefix=genes.get("prefix"),
        gene_codes=None
        if genes.get("codes") is None
        else tuple((str(k), c) for k, c in genes["codes"].items()),
        variants=variants,
        ignore=tuple(str(c) for c in raw.get("ignore") or ()),
        provenance=tuple((raw.get("provenance") or {}).items()),
    )


def _is_na(text: str | None) -> bool:
    return text is None or text.strip().lower() in NA_TOKENS


def _number(text: str, decimal: str = ".") -> float:
    """A number as the source writes it; a comma only as the declared decimal mark.

    ``1,500`` is an error unless the mapping says ``decimal: ","`` (then it is 1.5):
    guessing would read a thousands separator as a decimal comma.
    """
    if decimal == ",":
        if "." in text:
            raise ValueError(text)
        text = text.replace(",", ".")
    v = float(text)
    if not math.isfinite(v):
        raise ValueError(text)
    return v


def _coded(text: str, codes: tuple[tuple[str, Any], ...] | None) -> tuple[bool, Any]:
    if codes is None:
        return True, text
    for src, value in codes:
        if text == src or text.lower() == src.lower():
            return True, value
    return False, None


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
    """Source adapter for one or more mapped tables (one mapping = one centre).

    Args:
        mappings: parsed mappings; centre names must be unique.
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
        for m in mappings:
            if m.centre in self.by_centre:
                raise MappingError(
                    f"mapping {m.path}: centre {m.centre!r} is also mapped by {self.by_centre[m.centre].path}"
                )
            self.by_centre[m.centre] = m
        self._provenance = dict(provenance or {})
        self._unmapped: dict[str, list[str]] = {}
        self._notes: dict[str, dict[str, Any]] = {}

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
        out = {
            "file": str(m.file),
            "mapping": str(m.path),
            "unmapped_columns": self._unmapped.get(centre, []),
        }
        out.update(self._notes.get(centre, {}))
        return out

    def unmapped_columns(self, centre: str) -> list[str]:
        """Columns of a centre's table that the mapping neither uses nor lists under ``ignore``."""
        m = self.by_centre[centre]
        table = _read_mapped(m)
        return self._used(m, table)[1]

    def _used(self, m: SourceMapping, table: RawTable) -> tuple[dict[str, str], list[str]]:
        """``feature -> column`` of the wide gene matrix, and the unmapped columns."""
        used = {m.patient_id, m.event.column, *(cm.column for _, cm in m.features), *m.ignore}
        used |= {m.time.column} if m.time is not None else {m.dates[0], m.dates[1]}
        genes: dict[str, str] = {}
        if m.gene_prefix is not None:
            for name in _gene_features(self.guide):
                if m.gene_prefix + name in table.header:
                    genes[name] = m.gene_prefix + name
            used |= set(genes.values())  # prefixed columns of genes outside the guide stay unmapped
        return genes, [c for c in table.header if c not in used]

    def records(self, centre: str) -> Iterator[PatientRecord]:
        m = self.by_centre[centre]
        table = _read_mapped(m)
        index = {c: j for j, c in enumerate(table.header)}
        required = [("patient_id", m.patient_id)] if m.patient_id != ROW_ID else []
        required += [("event", m.event.column)]
        required += (
            [("time", m.time.column)] if m.time is not None else [("time", m.dates[0]), ("time", m.dates[1])]
        )
        required += [(name, cm.column) for name, cm in m.features]
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
        notes: dict[str, Any] = {}
        if m.gene_prefix is not None:
            notes["guide_genes_without_a_column"] = [g for g in gene_features if g not in genes]
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
        from_columns = {name for name, _ in m.features}
        for k in range(len(table.rows)):
            row = _Row(table, index, k)
            issues: list[Issue] = []
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
                values[name] = self._value(name, cm, row, issues, m.decimal)
            for name, column in genes.items():
                values[name] = self._value(name, ColumnMap(column, codes=m.gene_codes), row, issues)
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

    def _value(self, name: str, cm: ColumnMap, row: _Row, issues: list[Issue], decimal: str = ".") -> Any:
        text = row.get(cm.column)
        if _is_na(text):
            return None
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
            try:
                v = _number(str(coded))
            except ValueError:
                v = math.nan
            if v not in (0.0, 1.0):
                issues.append(Issue(name, cm.column, f"{text!r} is not 0/1"))
                return None
            return int(v)
        if str(coded) not in f.levels:
            issues.append(Issue(name, cm.column, f"{text!r} is not one of the levels {list(f.levels)}"))
            return None
        return str(coded)

    def _endpoint(self, m: SourceMapping, row: _Row, issues: list[Issue]) -> tuple[float | None, int | None]:
        time: float | None = None
        if m.time is not None:
            text = row.get(m.time.column)
            if _is_na(text):
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
        text = row.get(m.event.column)
        ok, coded = _coded(text or "", m.event.codes)
        if _is_na(text):
            issues.append(Issue("event", m.event.column, "event is missing"))
        elif not ok or str(coded) not in ("0", "1"):
            issues.append(Issue("event", m.event.column, f"event {text!r} is not 0/1 (nor a mapped code)"))
        else:
            event = int(coded)
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
