"""A starter guide and mapping for any table: ``harmonize guide new --from TABLE``.

A research group's first act is to bring its own table. This module reads it
(through :func:`harmonize.tables.read_table`, so every reader rule applies), infers
each column's kind from its values (0/1 or TRUE/FALSE: binary; other numbers:
continuous with the observed range; a few distinct texts: categorical with those
levels), guesses the id, centre, survival time and event columns from their names,
and writes two YAML files for the user to edit: a guide (project codes where no
standard code applies, since only the user knows whether ``hb`` is LOINC 718-7) and a
mapping that reads the table as it is. Whatever cannot be read off the table (units,
valid ranges, what counts as positive) is marked ``TODO`` in the files; both load
as written, so ``harmonize map`` runs before any edit and the quality report shows
what the guesses did.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harmonize import terminology as term
from harmonize.errors import InputError
from harmonize.mapping import NA_TOKENS
from harmonize.mapping_rules import binary_word
from harmonize.sources import check_centre_name
from harmonize.tables import ROW_NAMES, read_table, table_format

MAX_LEVELS = 20  # more distinct texts than this: free text or an identifier, not a category
_RESERVED = ("patient_id", "centre", "time", "event", "oracle_risk")
_ID_NAMES = {"id", "patientid", "patient", "subject", "subjectid", "pid", "caseid", "sampleid", "recordid"}
_CENTRE_NAMES = {"centre", "center", "site", "hospital", "centreid", "centerid", "siteid", "institution"}
_TIME_NAMES = {
    "time", "futime", "ostime", "survtime", "survivaltime", "os", "osdays", "osmonths", "osyears",
    "followup", "followuptime", "rfstime", "lenfol", "stime", "pfstime", "efstime", "dfstime",
    "timetoevent", "overallsurvival", "survival", "days", "months", "years",
}  # fmt: skip
_EVENT_NAMES = {
    "event", "status", "dead", "death", "died", "vitalstatus", "osstatus", "fstat", "cens", "censor",
    "deceased", "osevent", "pfsstatus", "efsstatus", "dfsstatus", "rfsstatus", "vital",
}  # fmt: skip
_EVENT_YES = {"dead", "deceased", "died", "death", "yes", "y", "event", "relapse", "progression"}
_EVENT_NO = {"alive", "living", "censored", "no", "n", "none"}
_BINARY_WORDS = [({"yes", "y"}, {"no", "n"}), ({"positive", "pos", "+"}, {"negative", "neg", "-"})]
_BINARY_WORDS += [({"present", "mutated", "mut"}, {"absent", "wt", "wildtype", "wild-type"})]
_CYTO = re.compile(r"karyo|^t_?\d|inv\d|inv_|del\d|del_|^minus|^plus|monosom|trisom|complex|^abn|cyto")


@dataclasses.dataclass(frozen=True)
class Column:
    """What one column's values say about it."""

    name: str
    values: tuple[str, ...]  # non-missing cells, as written
    numbers: tuple[float, ...] | None  # the values as numbers, or None if any is not one

    @property
    def distinct(self) -> list[str]:
        return sorted(set(self.values))

    @property
    def key(self) -> str:
        """The name lower-cased with everything but letters and digits removed (``OS_months`` -> osmonths)."""
        return re.sub(r"[^a-z0-9]", "", self.name.lower())


@dataclasses.dataclass(frozen=True)
class Starter:
    """The guesses: endpoint, id and centre columns, features, columns left out."""

    table: Path
    use_case: str
    delimiter: str | None
    patient_id: str | None
    centre: str | None
    centre_values: tuple[str, ...]
    time: Column | None
    time_unit: str
    time_unit_guessed: bool
    event: Column | None
    event_codes: dict[str, int | None] | None
    features: tuple[dict[str, Any], ...]  # name, column, kind, group, ... (guide + mapping fields)
    left_out: tuple[tuple[str, str], ...]  # (column, why)


def profile(name: str, cells: Sequence[str | None]) -> Column:
    """A column's non-missing values, and their numbers when every one is a number."""
    values = tuple(c for c in cells if c is not None and c.strip().lower() not in NA_TOKENS)
    numbers: list[float] | None = []
    for v in values:
        try:
            x = float(v)
        except ValueError:
            numbers = None
            break
        if not math.isfinite(x):
            numbers = None
            break
        numbers.append(x)
    return Column(name, values, None if numbers is None else tuple(numbers))


def nice_ceiling(x: float) -> float:
    """The smallest of 1, 2, 5 x 10^k at or above ``x`` (a round upper bound for a range)."""
    if x <= 0:
        return 1.0
    k = math.floor(math.log10(x))
    for m in (1, 2, 5, 10):
        bound = m * 10.0**k
        if bound >= x * (1 - 1e-12):
            return float(bound)
    return 10.0 ** (k + 1)


def feature_name(column: str, taken: set[str]) -> str:
    """A feature name for a column: letters, digits and ``_``; unique; never a reserved name."""
    name = re.sub(r"\W+", "_", column).strip("_") or "column"
    if name[0].isdigit():
        name = f"x_{name}"
    if name in _RESERVED:
        name = f"{name}_value"
    base, k = name, 2
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


def _binary_codes(col: Column) -> dict[str, int] | None:
    """``{text: 1, text: 0}`` for a two-valued yes/no-like column, else ``None``."""
    distinct = col.distinct
    if len(distinct) != 2:
        return None
    low = [d.strip().lower() for d in distinct]
    for yes, no in _BINARY_WORDS:
        if low[0] in yes and low[1] in no:
            return {distinct[0]: 1, distinct[1]: 0}
        if low[1] in yes and low[0] in no:
            return {distinct[1]: 1, distinct[0]: 0}
    return None


def _event_codes(col: Column) -> dict[str, int | None] | None:
    """``None`` when the cells already read as 0/1; else the guessed codes (``None`` = TODO)."""
    if all(binary_word(v) is not None for v in col.values):
        return None
    codes: dict[str, int | None] = {}
    for v in col.distinct:
        w = v.strip().lower()
        codes[v] = 1 if w in _EVENT_YES else 0 if w in _EVENT_NO else None
    return codes


def _time_unit(col: Column) -> tuple[str, bool]:
    """The unit a time column's name states (``d``, ``wk``, ``mo``, ``a``), else a guess from its values."""
    n = col.name.lower()
    for unit, words in (("d", ("day", "_d")), ("wk", ("week", "wk")), ("mo", ("month", "_mo", "mon")),
                        ("a", ("year", "_y", "yr"))):  # fmt: skip
        if any(w in n for w in words) or n.endswith(words[-1].lstrip("_")):
            return unit, False
    numbers = sorted(col.numbers or (0.0,))
    median = numbers[len(numbers) // 2]
    # Survival in days runs to hundreds or thousands, in months to tens, in years to units.
    return ("d" if median > 200 else "mo" if median > 15 else "a"), True


def _pick(columns: list[Column], names: set[str], words: tuple[str, ...], ok: Any) -> Column | None:
    for c in columns:
        if c.key in names and ok(c):
            return c
    for c in columns:
        if any(w in c.key for w in words) and ok(c):
            return c
    return None


def _feature(col: Column, name: str, use_case: str, source: str, has_gender: bool) -> dict[str, Any] | str:
    """The guide and mapping fields of one column's feature, or why it is left out."""
    if not col.values:
        return "no value in any row"
    code = f"{use_case}-{re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')}"
    fhir: dict[str, Any] = {
        "resource": "Observation",
        "system": term.PROJECT,
        "code": code,
        "display": col.name,
    }
    out: dict[str, Any] = {"name": name, "column": col.name, "fhir": fhir, "todo": []}
    symbol = re.sub(r"^(mut_?)|(_?mut)$", "", col.name, flags=re.IGNORECASE).upper()
    if all(binary_word(v) is not None for v in col.values):
        out |= {"kind": "binary", "group": "clinical"}
        out["definition"] = f"1 = the value 1 (or TRUE) in column '{col.name}' of {source}"
        out["todo"].append("say what counts as positive (which call, which threshold)")
    elif (codes := _binary_codes(col)) is not None:
        pos = next(k for k, v in codes.items() if v == 1)
        out |= {"kind": "binary", "group": "clinical", "codes": codes}
        out["definition"] = f"1 = '{pos}' in column '{col.name}' of {source}"
        out["todo"].append("say what counts as positive (which call, which threshold)")
    elif not has_gender and col.key in ("sex", "gender") and {d.lower() for d in col.distinct} <= {
        "m", "f", "male", "female"
    }:  # fmt: skip
        codes = {d: int(d.lower().startswith("m")) for d in col.distinct}
        out |= {"kind": "binary", "group": "clinical", "codes": codes}
        out["fhir"] = {"resource": "Patient", "element": "gender", "positive": "male"}
        out["definition"] = f"1 = male (column '{col.name}' of {source})"
    elif col.numbers is not None:
        low, high = min(col.numbers), max(col.numbers)
        lo = 0.0 if low >= 0 else -nice_ceiling(-low)
        out |= {"kind": "continuous", "group": "clinical", "range": [lo, nice_ceiling(high)]}
        out["definition"] = f"column '{col.name}' of {source} (observed {low:g} to {high:g})"
        if col.key == "age":
            out |= {"unit": "a"}
            out["fhir"] = {"resource": "Condition", "element": "onsetAge"}
            out["definition"] = f"age at diagnosis in years (column '{col.name}' of {source})"
        else:
            out["unit"] = "1"
            out["todo"].append("its UCUM unit (here '1', dimensionless) and the valid range")
        return out
    elif len(col.distinct) == len(col.values) >= 3:
        return "every value differs: free text or an identifier"
    elif len(col.distinct) <= MAX_LEVELS:
        out |= {"kind": "categorical", "group": "clinical", "levels": col.distinct}
        out["definition"] = f"column '{col.name}' of {source} as written ({len(col.distinct)} levels)"
        out["todo"].append("the levels' order (first = reference) and what each means")
    else:
        return f"{len(col.distinct)} distinct texts: free text or an identifier"
    if out["kind"] == "binary" and out["fhir"]["resource"] == "Observation":
        hgnc = term.hgnc_table()
        if symbol in hgnc:
            out["group"] = "genomic"
            out["fhir"] = {"resource": "Observation", "gene": symbol, "hgnc": hgnc[symbol]}
        elif re.split(r"[_\-. ]", symbol)[0] in hgnc:  # FLT3_ITD: an allelic state, a project code
            out["group"] = "genomic"
        elif _CYTO.search(col.key if not col.name.startswith("t(") else "t_" + col.key):
            out["group"] = "cytogenetic"
    return out


def infer(path: str | Path, *, use_case: str | None = None, delimiter: str | None = None) -> Starter:
    """Read a table and guess its guide and mapping (see the module docstring).

    Raises:
        SourceError: the table cannot be read (names file, row, field).
    """
    path = Path(path)
    fmt = table_format(path, None)
    if fmt in ("csv", "tsv") and delimiter is None:
        delimiter = sniff_delimiter(path, "\t" if fmt == "tsv" else ",")
    table = read_table(path, delimiter=delimiter)
    columns = [
        profile(name, [row[j] if j < len(row) else None for row in table.rows])
        for j, name in enumerate(table.header)
        if name != ROW_NAMES
    ]
    n = len(table.rows)
    pid = _pick(columns, _ID_NAMES, ("patientid", "subjectid"), lambda c: len(set(c.values)) == n and n > 0)
    centre = _pick(columns, _CENTRE_NAMES, ("centre", "center", "site"), lambda c: 0 < len(c.distinct) <= 100)
    time = _pick(
        columns,
        _TIME_NAMES,
        ("time", "surv", "follow"),
        lambda c: c.numbers is not None and bool(c.numbers) and min(c.numbers) >= 0,
    )
    event = _pick(columns, _EVENT_NAMES, ("status", "event", "death", "dead"), lambda c: len(c.distinct) == 2)
    taken: set[str] = set()
    name = use_case or feature_name(path.stem.lower(), set())
    features, left_out = [], []
    used = {c.name for c in (pid, centre, time, event) if c is not None}
    has_gender = False
    for col in columns:
        if col.name in used:
            continue
        f = _feature(col, feature_name(col.name, taken), name, path.name, has_gender)
        if isinstance(f, str):
            left_out.append((col.name, f))
            continue
        has_gender = has_gender or f["fhir"].get("element") == "gender"
        features.append(f)
    unit, guessed = _time_unit(time) if time is not None else ("a", True)
    return Starter(
        table=path,
        use_case=name,
        delimiter=None if delimiter == {"csv": ",", "tsv": "\t"}.get(fmt) else delimiter,
        patient_id=None if pid is None else pid.name,
        centre=None if centre is None else centre.name,
        centre_values=() if centre is None else tuple(centre.distinct),
        time=time,
        time_unit=unit,
        time_unit_guessed=guessed,
        event=event,
        event_codes=None if event is None else _event_codes(event),
        features=tuple(features),
        left_out=tuple(left_out),
    )


def sniff_delimiter(path: Path, default: str) -> str:
    """The delimiter of a text table's header line: the most frequent of ``, ; tab |``."""
    try:
        with path.open("rb") as fh:
            head = fh.read(65536).decode("utf-8", errors="replace")
    except OSError:
        return default  # read_table names the problem
    first = head.lstrip("\ufeff").splitlines()[0] if head.strip() else ""
    counts = {d: first.count(d) for d in (",", ";", "\t", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] > 0 else default


def _centre_ok(name: str) -> bool:
    try:
        check_centre_name(name)
    except ValueError:
        return False
    return True


def _q(value: Any) -> str:
    """A YAML flow scalar: JSON's double-quoted strings and numbers are valid YAML."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return json.dumps(value, ensure_ascii=False)


def _flow(d: dict[str, Any]) -> str:
    parts = []
    for key, v in d.items():
        # Field names stay bare; anything else (codes' source texts: `yes`, `M`) is quoted text.
        k = (
            key
            if re.fullmatch(r"[a-z_]+", str(key)) and key not in ("yes", "no", "on", "off", "y", "n")
            else _q(str(key))
        )
        if isinstance(v, dict):
            parts.append(f"{k}: {_flow(v)}")
        elif isinstance(v, list):
            parts.append(f"{k}: [{', '.join(_q(x) for x in v)}]")
        else:
            parts.append(f"{k}: {_q(v)}")
    return "{" + ", ".join(parts) + "}"


def guide_yaml(s: Starter) -> str:
    """The starter guide's text (comments say what to check)."""
    zero = s.time is not None and any(x == 0 for x in s.time.numbers or ())
    diagnosis = {"system": term.PROJECT, "code": f"{s.use_case}-diagnosis", "display": "TODO"}
    lines = [
        f"# Starter guide written by `harmonize guide new --from {s.table.name}`.",
        "# Edit it: every TODO below is something the table cannot say. The guide reference",
        "# (docs/guide_reference.md) explains each field. It loads as written.",
        f"use_case: {_q(s.use_case)}",
        'version: "0.1.0"',
        f"description: {_q(f'TODO: the cohort, the disease and the endpoint of {s.table.name}')}",
        "fhir:",
        '  # TODO: the diagnosis, e.g. {system: "http://hl7.org/fhir/sid/icd-10", code: C92.0, display: ...}',
        f"  condition: {_flow(diagnosis)}",
        "endpoint:",
        "  time:",
        "    unit: a  # always years; the mapping converts the table's unit",
    ]
    if zero:
        lines.append(
            "    zero_allowed: true  # the table has survival times of 0; false would quarantine them"
        )
    lines.append("features:")
    for f in s.features:
        for todo in f["todo"]:
            lines.append(f"  # TODO {f['name']}: {todo}")
        guide_f = {k: f[k] for k in ("name", "kind", "group", "unit", "range", "levels") if k in f}
        guide_f |= {"definition": f["definition"], "fhir": f["fhir"]}
        lines.append(f"  - {_flow(guide_f)}")
    return "\n".join(lines) + "\n"


def mapping_yaml(s: Starter, mapping_dir: Path) -> str:
    """The starter mapping's text, reading the table as it is."""
    rel = os.path.relpath(s.table.resolve(), mapping_dir.resolve())
    lines = [
        f"# Starter mapping written by `harmonize guide new --from {s.table.name}` (docs/user_csv.md).",
        f"file: {_q(rel)}",
    ]
    if s.delimiter is not None:
        lines.append(f"delimiter: {_q(s.delimiter)}")
    if s.centre is not None:
        # Centres name files: values that cannot are renamed by codes (the report keeps the column).
        renames = {v: feature_name(v, set()) for v in s.centre_values if not _centre_ok(v)}
        centre = {"column": s.centre} | ({"codes": renames} if renames else {})
        lines.append(f"centre: {_flow(centre)}  # one centre per value of this column")
    else:
        lines.append(f"centre: {_q(s.use_case)}  # or {{column: SITE}}: one centre per value of a column")
    if s.patient_id is not None:
        lines.append(f"patient_id: {_flow({'column': s.patient_id})}")
    else:
        lines.append('patient_id: "@row"  # no unique id column found: ids <centre>-<row>')
    if s.time is not None:
        todo = "  # TODO: unit guessed from the values; d | wk | mo | a" if s.time_unit_guessed else ""
        lines.append(f"time: {_flow({'column': s.time.name, 'unit': s.time_unit})}{todo}")
    else:
        lines.append('time: {column: "TODO", unit: d}  # TODO: the survival time column and its unit')
    if s.event is None:
        lines.append('event: {column: "TODO"}  # TODO: the event column (1 = event, 0 = censored)')
    else:
        ev: dict[str, Any] = {"column": s.event.name}
        if s.event_codes is not None:
            ev["codes"] = s.event_codes
        todo = ""
        if s.event_codes is not None and None in s.event_codes.values():
            todo = "  # TODO: which value is the event (1) and which is censored (0)"
            if set(s.event_codes) == {"1", "2"}:
                todo += "; R's survival package writes 1 = censored, 2 = event"
        elif "cens" in s.event.key:
            todo = "  # TODO: check that 1 is the event, not censoring"
        lines.append(f"event: {_flow(ev)}{todo}")
    lines.append(
        '# missing: ["NA", ".", 999]  # values that mean "not recorded" (all columns; per column too)'
    )
    lines.append("features:")
    for f in s.features:
        m: dict[str, Any] = {"column": f["column"]}
        if f["kind"] == "continuous":
            m["unit"] = f["unit"]
        if "codes" in f:
            m["codes"] = f["codes"]
        lines.append(f"  {f['name']}: {_flow(m)}")
    if s.left_out:
        lines.append("ignore:  # columns left out of the guide, with why")
        lines += [f"  - {_q(c)}  # {why}" for c, why in s.left_out]
    return "\n".join(lines) + "\n"


def write_starter(
    table: str | Path,
    *,
    guide_out: str | Path | None = None,
    mapping_out: str | Path | None = None,
    use_case: str | None = None,
    delimiter: str | None = None,
    force: bool = False,
) -> tuple[Path, Path, list[str]]:
    """Write the starter guide and mapping for ``table``; return their paths and a summary.

    Raises:
        SourceError: the table cannot be read.
        InputError: an output file exists (and not ``force``).
    """
    table = Path(table)
    guide_path = Path(guide_out) if guide_out else table.with_name(f"{table.stem}.guide.yaml")
    mapping_path = Path(mapping_out) if mapping_out else guide_path.with_name(f"{table.stem}.mapping.yaml")
    for p in (guide_path, mapping_path):
        if p.exists() and not force:
            raise InputError(p, 0, "(file)", "exists; pass --force to overwrite it or choose another -o")
    s = infer(table, use_case=use_case, delimiter=delimiter)
    if not s.features:
        keys = [c for c in (s.patient_id, s.centre, s.time and s.time.name, s.event and s.event.name) if c]
        raise InputError(
            table,
            "1 (header)",
            "(columns)",
            f"no column is left for a feature (id, centre, time and event: {keys}; left out: "
            f"{[c for c, _ in s.left_out]}); a guide needs at least one feature",
        )
    guide_path.parent.mkdir(parents=True, exist_ok=True)
    mapping_path.parent.mkdir(parents=True, exist_ok=True)
    guide_path.write_text(guide_yaml(s), encoding="utf-8")
    mapping_path.write_text(mapping_yaml(s, mapping_path.parent), encoding="utf-8")
    kinds = {k: sum(f["kind"] == k for f in s.features) for k in ("continuous", "binary", "categorical")}
    summary = [
        f"{table}: {len(s.features)} features ({', '.join(f'{v} {k}' for k, v in kinds.items())}); "
        f"id {s.patient_id or '@row'}, centre {s.centre or s.use_case}, "
        f"time {s.time.name if s.time else 'TODO'}, event {s.event.name if s.event else 'TODO'}",
    ]
    summary += [f"  left out {c}: {why}" for c, why in s.left_out]
    return guide_path, mapping_path, summary
