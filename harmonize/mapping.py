"""Declarative source mappings: any table plus a small YAML -> canonical patient records.

A mapping names, against a guide, which column holds each feature, the unit it
is reported in, how codes translate to the guide's vocabulary, where the
survival endpoint comes from (a time column with its unit, or two dates) and
where mutations are (a wide 0/1 matrix via a column prefix, or a long variant
list with gene, HGVS and VAF). Hospital dialects of the simulator
(:mod:`harmonize.dialects`) and user tables (source ``csv``) are both just
mappings; :class:`harmonize.mapped_source.MappedSource` is the one adapter behind them. Example
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
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harmonize import terminology as term
from harmonize.errors import InputError
from harmonize.guide import Guide
from harmonize.mapping_rules import (
    RULES,
    DerivedFlag,
    Sentinel,
    sentinel_hit,
)
from harmonize.sources import REFERENCE_PREFIXES, check_centre_name
from harmonize.tables import SourceError, table_format
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
