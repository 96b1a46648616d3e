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
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from harmonize import terminology as term
from harmonize.errors import InputError
from harmonize.guide import Guide
from harmonize.mapping_rules import (
    RULES,
    DerivedFlag,
    Sentinel,
    binary_word,
    combine,
    match_values,
    sentinel_hit,
)
from harmonize.mapping_rules import label as sentinel_label
from harmonize.sources import REFERENCE_PREFIXES, Issue, PatientRecord, check_centre_name
from harmonize.tables import ROW_NAMES, RawTable, SourceError, read_table, table_format
from harmonize.yamlsafe import LoadedYaml, load_yaml

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
    "missing",
    "reference",
)
_FEATURE_KEYS = ("column", "unit", "codes", "missing")
_DERIVED_KEYS = (*RULES, "column", "separator", "codes", "missing")
_TIME_KEYS = ("column", "unit", "start", "end", "format", "missing")
_EVENT_KEYS = ("column", "codes", "missing")
_CENTRE_KEYS = ("column", "codes")
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


class MappingError(InputError):
    """A mapping file is malformed; the message names the file, the line and the key."""

    def __init__(self, path: str | Path, row: str | int, field: str, message: str) -> None:
        super().__init__(f"mapping {path}", row, field, message)
        self.path = str(path)


@dataclasses.dataclass(frozen=True)
class ColumnMap:
    """One guide feature read from one column."""

    column: str
    unit: str | None = None
    codes: tuple[tuple[str, Any], ...] | None = None  # source text -> guide value
    missing: tuple[Sentinel, ...] = ()  # this column's "not recorded" values (beside the global ones)


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
    warnings: tuple[str, ...] = ()  # parse-time warnings (unquoted YAML booleans among codes)
    missing: tuple[Sentinel, ...] = ()  # "not recorded" values of every mapped column
    derived: tuple[tuple[str, DerivedFlag], ...] = ()  # binary features computed by a rule
    centre_column: ColumnMap | None = None  # one table, several centres: the centre from a column
    reference: tuple[tuple[str, ColumnMap], ...] = ()  # values kept outside FHIR (score inputs)


Key = tuple[str, ...]


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list", bool: "boolean", type(None): "nothing"}.get(
        type(value), type(value).__name__
    )


@dataclasses.dataclass(frozen=True)
class _Ctx:
    """Where a mapping came from, to name the line of any key in an error."""

    path: Path
    loaded: LoadedYaml | None

    def fail(self, key: Key, msg: str) -> MappingError:
        key = tuple(str(k) for k in key)  # a dict built in code may have non-text keys
        line = self.loaded.line(key) if self.loaded is not None else None
        return MappingError(self.path, f"{'?' if line is None else line} (line)", ".".join(key), msg)

    def text(self, key: Key, value: Any) -> str:
        """A column name, unit or other word: text, or an integer written bare (``column: 2019``)."""
        if isinstance(value, bool):
            raise self.fail(
                key, f"{value} is YAML's reading of an unquoted yes/no/true/false/on/off; quote it"
            )
        if isinstance(value, str) and value.strip():
            return value
        if isinstance(value, int):
            return str(value)
        if value is None or isinstance(value, str):
            raise self.fail(key, "is empty")
        raise self.fail(
            key, f"expected text, got a {_kind(value)} ({str(value)[:40]}); quote it if it is text"
        )

    def optional_text(self, raw: Mapping[str, Any], key: Key) -> str | None:
        return None if raw.get(key[-1]) is None else self.text(key, raw[key[-1]])

    def mapping(self, key: Key, value: Any, what: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(key, f"expected {what}, got a {_kind(value)}")
        return value

    def codes(self, key: Key, value: Any) -> tuple[tuple[str, Any], ...] | None:
        if value is None:
            return None
        raw = self.mapping(key, value, "a mapping source code -> guide value")
        for code, target in raw.items():
            if isinstance(target, dict | list):
                raise self.fail((*key, code), f"expected one guide value, got a {_kind(target)}")
        # Keys are the text as written (the bounded loader keeps `yes:` as "yes"); a boolean
        # value (`M: yes`) is the 1/0 it stands for, and _bool_warnings says so.
        return tuple((str(k), int(v) if isinstance(v, bool) else v) for k, v in raw.items())

    def sentinels(self, key: Key, value: Any) -> tuple[Sentinel, ...]:
        """``missing:``: one value or a list of texts and numbers that mean "not recorded"."""
        if value is None:
            return ()
        items = value if isinstance(value, list) else [value]
        out: list[Sentinel] = []
        for i, v in enumerate(items):
            if isinstance(v, bool) or v is None or isinstance(v, dict | list):
                raise self.fail(
                    (*key, str(i)),
                    f"expected a text or a number marking a missing value, got a {_kind(v)}; quote it",
                )
            out.append(v if isinstance(v, str) else float(v))
        return tuple(out)


def _check_keys(raw: Mapping[str, Any], allowed: tuple[str, ...], ctx: _Ctx, where: Key) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; allowed: {list(allowed)}"
            raise ctx.fail((*where, key), f"unknown key{hint}")


def _column_map(raw: Any, ctx: _Ctx, where: Key, allowed: tuple[str, ...] = _FEATURE_KEYS) -> ColumnMap:
    if isinstance(raw, str | int) and not isinstance(raw, bool):
        return ColumnMap(column=ctx.text(where, raw))
    if not isinstance(raw, dict) or "column" not in raw:
        raise ctx.fail(where, "expected a column name or {column: ..., unit: ..., codes: {...}}")
    _check_keys(raw, allowed, ctx, where)
    cm = ColumnMap(
        column=ctx.text((*where, "column"), raw["column"]),
        unit=ctx.optional_text(raw, (*where, "unit")),
        codes=ctx.codes((*where, "codes"), raw.get("codes")),
        missing=ctx.sentinels((*where, "missing"), raw.get("missing")),
    )
    _check_sentinels_vs_codes(cm.missing, cm.codes, ctx, where)
    return cm


def _check_sentinels_vs_codes(
    missing: tuple[Sentinel, ...], codes: tuple[tuple[str, Any], ...] | None, ctx: _Ctx, where: Key
) -> None:
    """A cell cannot both mean "not recorded" and a value: refuse the ambiguity."""
    for src, value in codes or ():
        if value is not None and sentinel_hit(src, missing) is not None:
            raise ctx.fail(
                (*where, "codes", src),
                f"{src!r} is also a missing-value sentinel; drop one (a code may map to null instead)",
            )


def _derived(raw: dict[str, Any], ctx: _Ctx, where: Key) -> DerivedFlag:
    """``{any_of|none_of|all_of: [0/1 columns]}`` or ``{column: X, any_of: [values], separator: ","}``."""
    _check_keys(raw, _DERIVED_KEYS, ctx, where)
    rules = [r for r in RULES if r in raw]
    if len(rules) != 1:
        raise ctx.fail(where, f"give exactly one of {list(RULES)}, got {rules}")
    rule = rules[0]
    listed = raw[rule]
    if not isinstance(listed, list) or not listed:
        raise ctx.fail((*where, rule), f"expected a non-empty list, got a {_kind(listed)}")
    items = tuple(ctx.text((*where, rule, str(i)), v) for i, v in enumerate(listed))
    separator = ctx.optional_text(raw, (*where, "separator"))
    codes = ctx.codes((*where, "codes"), raw.get("codes"))
    missing = ctx.sentinels((*where, "missing"), raw.get("missing"))
    if "column" in raw:  # the values form: one column, the listed values of it
        if codes is not None:
            raise ctx.fail((*where, "codes"), "the values form matches the column's text; drop codes")
        return DerivedFlag(
            rule, (ctx.text((*where, "column"), raw["column"]),), items, separator, None, missing
        )
    if separator is not None:
        raise ctx.fail((*where, "separator"), "applies to the values form ({column: ..., any_of: [values]})")
    if codes is not None:
        _check_codes(ColumnMap("", codes=codes), (0, 1), ctx, where)
    _check_sentinels_vs_codes(missing, codes, ctx, where)
    return DerivedFlag(rule, items, (), None, codes, missing)


def _check_codes(cm: ColumnMap, allowed: tuple[Any, ...], ctx: _Ctx, where: Key) -> None:
    for src, value in cm.codes or ():
        if value is not None and value not in allowed:
            raise ctx.fail((*where, "codes", src), f"value {value!r} is not one of {list(allowed)}")


def _bool_warnings(loaded: LoadedYaml) -> tuple[str, ...]:
    """Unquoted YAML 1.1 booleans among codes: the text is kept as a code, the reader is told."""
    out = []
    for key, line in sorted(loaded.bool_scalars.items(), key=lambda kv: kv[1]):
        if "codes" not in key[:-1]:
            continue
        side = (
            f"the code {key[-1]!r} is matched as that text"
            if key in loaded.lines
            else "the value is read as the boolean true/false (1/0)"
        )
        out.append(
            f"line {line}, field {'.'.join(key)!r}: unquoted yes/no/on/off/true/false is a boolean in "
            f"YAML 1.1; {side}; quote it to say which you mean"
        )
    return tuple(out)


def load_mapping(path: str | Path, guide: Guide, *, file: str | Path | None = None) -> SourceMapping:
    """Parse and check a mapping YAML against a guide.

    The YAML is read by :func:`harmonize.yamlsafe.load_yaml` (bounded size, nesting and
    alias expansion; a key given twice is refused naming both lines), so every error
    below names the line of the key at fault.

    Args:
        path: the mapping file.
        guide: the guide its features refer to.
        file: the table (overrides the mapping's ``file``; relative paths in the
            mapping are relative to the mapping's folder).

    Raises:
        MappingError: naming the file, the line and the key (not YAML, over a limit, a
            duplicate key, unknown keys, wrong types, feature names not in the guide,
            units without a conversion, codes outside the guide's levels).
    """
    path = Path(path)
    loaded = load_yaml(path, MappingError)
    if not isinstance(loaded.data, dict):
        raise MappingError(
            path,
            "1 (line)",
            "(yaml)",
            f"expected a YAML mapping (key: value lines), got a {_kind(loaded.data)}",
        )
    return parse_mapping(loaded.data, guide, path, file=file, loaded=loaded)


def parse_mapping(
    raw: Mapping[str, Any],
    guide: Guide,
    path: Path,
    *,
    file: str | Path | None = None,
    loaded: LoadedYaml | None = None,
) -> SourceMapping:
    """:func:`load_mapping` on an already-parsed dict (``path`` names it in messages).

    Args:
        raw: the parsed YAML.
        guide: the guide its features refer to.
        path: the mapping file, for messages and relative paths.
        file: the table (overrides ``raw["file"]``).
        loaded: the parse with key lines (from :func:`harmonize.yamlsafe.load_yaml`); without
            it errors give the line as ``?``.

    Raises:
        MappingError: see :func:`load_mapping`.
    """
    ctx = _Ctx(Path(path), loaded)
    _check_keys(raw, _TOP_KEYS, ctx, ())
    for key in ("patient_id", "time", "event"):
        if key not in raw:
            raise ctx.fail((key,), "required key is missing")  # row "?": there is no line to point at
    if file is not None:
        table = Path(file)
    elif raw.get("file") is None:
        raise ctx.fail(("file",), "no table named (give `file:` or pass the table)")
    else:
        table = Path(ctx.text(("file",), raw["file"]))
    table = table if table.is_absolute() else ctx.path.parent / table
    features: list[tuple[str, ColumnMap]] = []
    derived: list[tuple[str, DerivedFlag]] = []
    for name, spec in ctx.mapping(("features",), raw.get("features"), "feature: column lines").items():
        if name not in guide.feature_names:
            close = difflib.get_close_matches(str(name), guide.feature_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ctx.fail(("features", name), f"not a feature of guide {guide.use_case!r}{hint}")
        f = guide.feature(name)
        where = ("features", name)
        if isinstance(spec, dict) and any(r in spec for r in RULES):
            if f.kind != "binary":
                raise ctx.fail(where, f"any_of/none_of/all_of make a 0/1 flag; {name!r} is {f.kind}")
            derived.append((name, _derived(spec, ctx, where)))
            continue
        cm = _column_map(spec, ctx, where)
        if f.kind == "continuous":
            if cm.unit is None:
                raise ctx.fail((*where, "unit"), f"continuous feature needs its unit (guide: {f.unit})")
            code = f.fhir.coding.code if f.fhir and f.fhir.coding else None
            if term.conversion(cm.unit, str(f.unit), code) is None:
                raise ctx.fail((*where, "unit"), f"no conversion from {cm.unit!r} to {f.unit!r}")
        elif f.kind == "binary":
            _check_codes(cm, (0, 1), ctx, where)
        else:
            _check_codes(cm, f.levels, ctx, where)
        features.append((name, cm))
    t = raw["time"]
    if not isinstance(t, dict):
        raise ctx.fail(("time",), "expected {column, unit} or {start, end, format}")
    _check_keys(t, _TIME_KEYS, ctx, ("time",))
    time_map, dates = None, None
    if "column" in t:
        unit = ctx.optional_text(t, ("time", "unit")) or guide.time_unit
        time_map = ColumnMap(
            column=ctx.text(("time", "column"), t["column"]),
            unit=unit,
            missing=ctx.sentinels(("time", "missing"), t.get("missing")),
        )
        if term.conversion(unit, guide.time_unit) is None:
            raise ctx.fail(("time", "unit"), f"no conversion from {unit!r} to {guide.time_unit!r}")
    elif "start" in t and "end" in t:
        if "missing" in t:
            raise ctx.fail(("time", "missing"), "applies to a time column; for dates use the global missing:")
        fmt = ctx.optional_text(t, ("time", "format")) or "%Y-%m-%d"
        try:  # a format that cannot read back a date it wrote would reject every record
            ok = "%" in fmt and bool(dt.datetime.strptime(dt.date(2001, 2, 3).strftime(fmt), fmt))
        except ValueError:  # a bad directive (%Q), or one strptime cannot read back
            ok = False
        if not ok:
            raise ctx.fail(
                ("time", "format"), f"{fmt!r} is not a date format strptime can read (e.g. %d.%m.%Y)"
            )
        dates = (ctx.text(("time", "start"), t["start"]), ctx.text(("time", "end"), t["end"]), fmt)
    else:
        raise ctx.fail(("time",), "give `column` (+ `unit`) or `start` and `end` date columns")
    event = _column_map(raw["event"], ctx, ("event",), _EVENT_KEYS)
    _check_codes(event, (0, 1), ctx, ("event",))
    genes = ctx.mapping(("genes",), raw.get("genes") or None, "{prefix: ..., codes: {...}}")
    _check_keys(genes, _GENES_KEYS, ctx, ("genes",))
    variants = None
    if raw.get("variants"):
        v = ctx.mapping(("variants",), raw["variants"], "{file, patient_id, gene, vaf, hgvs}")
        _check_keys(v, _VARIANT_KEYS, ctx, ("variants",))
        for key in ("file", "patient_id", "gene"):
            if key not in v:
                raise ctx.fail(("variants", key), "required key is missing")
        vname = Path(ctx.text(("variants", "file"), v["file"]))
        min_vaf = v.get("min_vaf", 0.0)
        if isinstance(min_vaf, bool) or not isinstance(min_vaf, int | float) or not 0 <= min_vaf <= 1:
            raise ctx.fail(("variants", "min_vaf"), f"expected a number in [0, 1], got {min_vaf!r}")
        variants = VariantList(
            vname if vname.is_absolute() else table.parent / vname,
            _format(ctx, v, ("variants", "format")),
            _delimiter(ctx, v, ("variants", "delimiter")),
            ctx.optional_text(v, ("variants", "sheet")),
            ctx.text(("variants", "patient_id"), v["patient_id"]),
            ctx.text(("variants", "gene"), v["gene"]),
            ctx.optional_text(v, ("variants", "vaf")),
            ctx.optional_text(v, ("variants", "hgvs")),
            float(min_vaf),
            ctx.optional_text(v, ("variants", "not_tested")),
        )
    centre_column = None
    if isinstance(raw.get("centre"), dict):  # one table, several centres
        centre_column = _column_map(raw["centre"], ctx, ("centre",), _CENTRE_KEYS)
        centre = table.stem  # stands for the mapping in messages; the centres come from the column
        for src, value in centre_column.codes or ():
            try:
                check_centre_name(str(value))
            except ValueError as err:
                raise ctx.fail(("centre", "codes", src), str(err)) from None
    else:
        centre = ctx.optional_text(raw, ("centre",)) or table.stem
        try:
            check_centre_name(centre)
        except ValueError as err:
            raise ctx.fail(("centre",), str(err)) from None
    reference: list[tuple[str, ColumnMap]] = []
    for name, spec in ctx.mapping(("reference",), raw.get("reference"), "name: column lines").items():
        if not str(name).startswith(REFERENCE_PREFIXES):
            raise ctx.fail(
                ("reference", name),
                f"reference columns are named {' / '.join(p + '...' for p in REFERENCE_PREFIXES)} "
                "(kept outside FHIR, e.g. score_tp53_vaf, source_eln2022, clinical_score)",
            )
        reference.append(
            (str(name), _column_map(spec, ctx, ("reference", name), ("column", "codes", "missing")))
        )
    global_missing = ctx.sentinels(("missing",), raw.get("missing"))
    coded: list[tuple[Key, ColumnMap]] = [(("features", n), cm) for n, cm in features]
    coded += [(("event",), event)] + [(("reference", n), cm) for n, cm in reference]
    for where, cm in coded:
        _check_sentinels_vs_codes(global_missing, cm.codes, ctx, where)
    decimal = raw.get("decimal", ".")
    if decimal not in (".", ","):
        raise ctx.fail(("decimal",), f"expected '.' or ',', got {decimal!r}")
    header_row = raw.get("header_row", 1)
    if isinstance(header_row, bool) or not isinstance(header_row, int) or not 1 <= header_row <= 10_000:
        raise ctx.fail(("header_row",), f"expected a whole number from 1 to 10000, got {header_row!r}")
    encoding = ctx.optional_text(raw, ("encoding",)) or "utf-8"
    try:
        "x".encode(encoding)  # LookupError for unknown names and for codecs that are not text (rot13)
    except UnicodeError:
        pass  # a real text encoding that cannot write "x" (none common); reading will tell
    except LookupError:
        raise ctx.fail(
            ("encoding",), f"{encoding!r} is not a text encoding (e.g. utf-8, latin-1, cp1252)"
        ) from None
    pid = raw["patient_id"]
    pid_key: Key = ("patient_id", "column") if isinstance(pid, dict) else ("patient_id",)
    if isinstance(pid, dict):
        _check_keys(pid, ("column",), ctx, ("patient_id",))
        pid = pid.get("column")
    ignore = raw.get("ignore") or []
    ignore = [ignore] if isinstance(ignore, str) else ignore
    if not isinstance(ignore, list):
        raise ctx.fail(("ignore",), f"expected a list of column names, got a {_kind(ignore)}")
    provenance = ctx.mapping(
        ("provenance",), raw.get("provenance"), "{source: ..., licence: ..., citation: ...}"
    )
    for key, value in provenance.items():
        if isinstance(value, dict | list):
            raise ctx.fail(("provenance", key), f"expected text, got a {_kind(value)}")
    return SourceMapping(
        path=ctx.path,
        file=table,
        fmt=_format(ctx, raw, ("format",)),
        delimiter=_delimiter(ctx, raw, ("delimiter",)),
        encoding=encoding,
        decimal=decimal,
        sheet=ctx.optional_text(raw, ("sheet",)),
        header_row=header_row,
        centre=centre,
        patient_id=ctx.text(pid_key, pid),
        time=time_map,
        dates=dates,
        event=event,
        features=tuple(features),
        gene_prefix=ctx.optional_text(genes, ("genes", "prefix")),
        gene_codes=ctx.codes(("genes", "codes"), genes.get("codes")),
        variants=variants,
        ignore=tuple(ctx.text(("ignore", str(i)), c) for i, c in enumerate(ignore)),
        provenance=tuple(provenance.items()),
        warnings=_bool_warnings(loaded) if loaded is not None else (),
        missing=global_missing,
        derived=tuple(derived),
        centre_column=centre_column,
        reference=tuple(reference),
    )


def _format(ctx: _Ctx, raw: Mapping[str, Any], key: Key) -> str | None:
    fmt = ctx.optional_text(raw, key)
    if fmt is not None:
        try:
            table_format(Path("x"), fmt)
        except SourceError as err:
            raise ctx.fail(key, str(err).split(": ", 2)[-1]) from None
    return fmt


def _delimiter(ctx: _Ctx, raw: Mapping[str, Any], key: Key) -> str | None:
    d = raw.get(key[-1])
    if d is None:
        return None
    d = {"tab": "\t", "\\t": "\t", "space": " "}.get(d, d) if isinstance(d, str) else d
    if not isinstance(d, str) or len(d) != 1 or d in '\r\n"':
        raise ctx.fail(key, f"expected one character (or `tab`), got {d!r}")
    return d


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
