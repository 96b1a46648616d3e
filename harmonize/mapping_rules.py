"""What a mapping does to cells beyond one column -> one feature: sentinels, derived flags, 0/1.

Real exports write "not recorded" in their own way (``89`` for an unknown count, ``.``
in SAS exports, ``NA``), and often hold a clinical flag only implicitly: "normal
karyotype" is the absence of every listed lesion; "KMT2A-rearranged" is any of several
fusion calls. A mapping says so declaratively::

    missing: ["NA", ".", 89]                       # every mapped column (and per column)
    features:
      normal_karyotype: {none_of: [t_8_21, inv16, minus7]}     # several 0/1 columns
      kmt2a_r: {column: Fusions, any_of: ["KMT2A::AFF1", "KMT2A::MLLT10"], separator: ","}

The rules here are pure functions over the cell text; :class:`harmonize.mapped_source.MappedSource`
applies them per row and counts what they did (sentinels hit per column, derived flags
positive / negative / undetermined) for the quality report.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Literal

RULES: tuple[str, ...] = ("any_of", "none_of", "all_of")
Rule = Literal["any_of", "none_of", "all_of"]
# Cells read as 1/0 without a `codes:` block: the 0/1 digits a spreadsheet or R writes
# (also 0.0/1.0) and the logical values R, Excel and pandas write.
TRUE_WORDS = frozenset({"true"})
FALSE_WORDS = frozenset({"false"})
Sentinel = str | float


@dataclasses.dataclass(frozen=True)
class DerivedFlag:
    """A binary feature computed from several 0/1 columns, or from the values of one column.

    Attributes:
        rule: ``any_of`` (1 when any input is positive), ``none_of`` (1 when none is),
            ``all_of`` (1 when every one is).
        columns: the 0/1 source columns (several-columns form), or the one column whose
            values are matched (``values`` form).
        values: the listed values of the one column (empty in the several-columns form);
            matched case-insensitively, against each part of the cell when ``separator`` is set.
        separator: splits a cell holding several calls (``"t(8;21), del(7q)"``).
        codes: how the input columns' cells translate to 0/1 (several-columns form).
        missing: sentinels of the input columns, on top of the mapping's global ones.
    """

    rule: Rule
    columns: tuple[str, ...]
    values: tuple[str, ...] = ()
    separator: str | None = None
    codes: tuple[tuple[str, object], ...] | None = None
    missing: tuple[Sentinel, ...] = ()

    def describe(self) -> str:
        """The rule in words, as the quality report shows it."""
        if self.values:
            sep = f", cell split at {self.separator!r}" if self.separator else ""
            return f"{self.rule} {list(self.values)} in column {self.columns[0]!r}{sep}"
        return f"{self.rule} of the 0/1 columns {list(self.columns)}"


def combine(rule: Rule, flags: Sequence[int | None]) -> int | None:
    """Three-valued any/none/all over 0/1 flags (``None`` unknown).

    ``any_of`` is 1 as soon as one flag is 1 and 0 only when every flag is 0; ``all_of``
    is 0 as soon as one flag is 0 and 1 only when every flag is 1; ``none_of`` is
    ``1 - any_of``. An unknown flag that could change the answer leaves it unknown
    (Kleene's strong three-valued logic), so a missing lesion call never reads as absent.

    >>> combine("none_of", [0, None]), combine("none_of", [1, None]), combine("all_of", [0, None])
    (None, 0, 0)
    """
    if rule == "all_of":
        if any(f == 0 for f in flags):
            return 0
        return 1 if all(f == 1 for f in flags) else None
    if any(f == 1 for f in flags):
        hit: int | None = 1
    elif all(f == 0 for f in flags):
        hit = 0
    else:
        hit = None
    if rule == "none_of" and hit is not None:
        return 1 - hit
    return hit


def match_values(rule: Rule, cell: str, values: Sequence[str], separator: str | None) -> int:
    """The values form: does the cell (or its parts) hold any / none / all of ``values``?"""
    parts = [cell] if separator is None else cell.split(separator)
    found = {p.strip().lower() for p in parts if p.strip()}
    wanted = [v.strip().lower() for v in values]
    if rule == "all_of":
        return int(all(v in found for v in wanted))
    hit = any(v in found for v in wanted)
    return int(not hit) if rule == "none_of" else int(hit)


def sentinel_hit(text: str, sentinels: Sequence[Sentinel], decimal: str = ".") -> str | None:
    """The sentinel a cell holds (as the mapping wrote it), or ``None``.

    A text sentinel matches the cell's text exactly (surrounding spaces aside); a number
    sentinel matches any cell that reads as that number (``89`` matches ``89`` and
    ``89.0``; with ``decimal: ","`` also ``89,0``).
    """
    stripped = text.strip()
    number: float | None = None
    for s in sentinels:
        if isinstance(s, str):
            if stripped == s.strip():
                return s
            continue
        if number is None:
            try:
                number = float(stripped.replace(",", ".") if decimal == "," else stripped)
            except ValueError:
                number = math.nan
        if number == s:
            return label(s)
    return None


def label(s: Sentinel) -> str:
    """A sentinel as the quality report names it (``89``, not ``89.0``)."""
    return s if isinstance(s, str) else (str(int(s)) if float(s).is_integer() else str(s))


def binary_word(text: str) -> int | None:
    """``TRUE``/``FALSE`` (any case) and ``0``/``1``/``0.0``/``1.0`` as 1/0; ``None`` otherwise."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return 1
    if word in FALSE_WORDS:
        return 0
    try:
        v = float(word)
    except ValueError:
        return None
    return int(v) if v in (0.0, 1.0) else None
