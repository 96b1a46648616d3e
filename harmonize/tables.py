"""Read a source table (CSV, TSV, XLSX, parquet) as strings, failing with file, row and field.

Every value comes back as the text the source holds (``None`` for an empty
cell), so that parsing numbers, codes and dates happens in one place
(:mod:`harmonize.mapping`) and every failure can name the row and column. Rows
are numbered as data rows (the first row under the header is row 1); messages
also give the line (CSV) or sheet row (XLSX) a person would look at.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import io
from pathlib import Path

FORMATS = ("csv", "tsv", "xlsx", "parquet")


class SourceError(ValueError):
    """A source file cannot be read as its mapping says; names file, row and field."""

    def __init__(self, path: str | Path, row: str | int, field: str, message: str) -> None:
        self.path, self.row, self.field = str(path), row, field
        super().__init__(f"{path}: row {row}, field {field!r}: {message}")


@dataclasses.dataclass(frozen=True)
class RawTable:
    """A table as text.

    Attributes:
        path: the file.
        header: column names, in file order.
        rows: data rows; each has ``len(header)`` cells or fewer (a ragged row).
        lines: for each data row, where a person finds it (``"line 4"``, ``"sheet row 6"``).
    """

    path: str
    header: tuple[str, ...]
    rows: tuple[tuple[str | None, ...], ...]
    lines: tuple[str, ...]


def table_format(path: Path, declared: str | None) -> str:
    """The format a mapping declares, else the file suffix's."""
    fmt = (declared or path.suffix.lstrip(".")).lower()
    fmt = {"txt": "tsv", "tab": "tsv", "xls": "xlsx", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise SourceError(path, "-", "format", f"unknown table format {fmt!r}; expected one of {FORMATS}")
    return fmt


def _text(path: Path, encoding: str) -> str:
    data = path.read_bytes()
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise SourceError(
            path,
            f"at line {line}",
            "(file encoding)",
            f"byte {data[err.start : err.start + 1]!r} at offset {err.start} is not valid {encoding}; "
            "re-save the file as UTF-8 or set `encoding:` in the mapping (e.g. latin-1)",
        ) from None


def _read_delimited(path: Path, delimiter: str, encoding: str, header_row: int) -> RawTable:
    text = _text(path, encoding)
    if not text.strip():
        raise SourceError(path, 0, "(header)", "the file is empty")
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records = list(reader)
    lines = list(range(1, len(records) + 1))  # csv.reader yields one record per line here
    if header_row > len(records):
        raise SourceError(path, 0, "(header)", f"header_row {header_row} is past the end of the file")
    header = tuple(c.strip() for c in records[header_row - 1])
    body, where = [], []
    for rec, line in zip(records[header_row:], lines[header_row:], strict=True):
        if not any(c.strip() for c in rec):
            continue  # blank line (e.g. a trailing newline) holds no record
        body.append(tuple(c.strip() or None for c in rec))
        where.append(f"line {line}")
    return RawTable(str(path), header, tuple(body), tuple(where))


def _read_xlsx(path: Path, sheet: str | None, header_row: int) -> RawTable:
    import openpyxl

    try:
        book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as err:  # openpyxl raises zipfile, KeyError, InvalidFileException...
        raise SourceError(
            path, 0, "(file)", f"not a readable XLSX workbook: {type(err).__name__}: {err}"
        ) from None
    try:
        if sheet is not None and sheet not in book.sheetnames:
            raise SourceError(path, 0, "sheet", f"no sheet {sheet!r}; sheets: {book.sheetnames}")
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        values = [tuple(r) for r in ws.iter_rows(values_only=True)]
    finally:
        book.close()
    if len(values) < header_row:
        raise SourceError(path, 0, "(header)", "the sheet is empty" if not values else "no header row")

    def cell(v: object) -> str | None:
        if v is None:
            return None
        if isinstance(v, dt.datetime):
            # Excel stores dates as datetimes: a midnight one is a date.
            return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat()
        if isinstance(v, dt.date | dt.time):
            return v.isoformat()
        if isinstance(v, float) and v.is_integer():
            return str(int(v))
        s = str(v).strip()
        return s or None

    header = tuple("" if v is None else str(v).strip() for v in values[header_row - 1])
    while header and header[-1] == "":
        header = header[:-1]
    body, where = [], []
    for i, rec in enumerate(values[header_row:], start=header_row + 1):
        cells = tuple(cell(v) for v in rec[: len(header)])
        if all(c is None for c in cells):
            continue
        body.append(cells)
        where.append(f"sheet row {i}")
    return RawTable(str(path), header, tuple(body), tuple(where))


def _read_parquet(path: Path) -> RawTable:
    import polars as pl

    try:
        df = pl.read_parquet(path)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise SourceError(path, 0, "(file)", f"not a readable parquet file: {err}") from None
    df = df.with_columns(pl.all().cast(pl.String))
    rows = tuple(tuple(None if v is None or not v.strip() else v.strip() for v in r) for r in df.iter_rows())
    return RawTable(str(path), tuple(df.columns), rows, tuple(f"record {i}" for i in range(1, len(rows) + 1)))


def read_table(
    path: str | Path,
    *,
    fmt: str | None = None,
    delimiter: str | None = None,
    encoding: str = "utf-8",
    sheet: str | None = None,
    header_row: int = 1,
) -> RawTable:
    """Read a table as text.

    Args:
        path: the file.
        fmt: ``csv``, ``tsv``, ``xlsx`` or ``parquet`` (default: from the suffix).
        delimiter: field separator of delimited text (default ``,`` for csv, tab for tsv).
        encoding: text encoding of delimited files.
        sheet: XLSX sheet (default the first).
        header_row: 1-based row holding the column names (XLSX files often carry
            title rows above it).

    Raises:
        SourceError: missing, empty, undecodable or unreadable file; duplicate or blank column names.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(path, 0, "(file)", "no such file")
    fmt = table_format(path, fmt)
    if fmt in ("csv", "tsv"):
        table = _read_delimited(path, delimiter or ("\t" if fmt == "tsv" else ","), encoding, header_row)
    elif fmt == "xlsx":
        table = _read_xlsx(path, sheet, header_row)
    else:
        table = _read_parquet(path)
    seen: set[str] = set()
    for j, name in enumerate(table.header):
        if not name:
            raise SourceError(path, f"{header_row} (header)", f"column {j + 1}", "blank column name")
        if name in seen:
            raise SourceError(path, f"{header_row} (header)", name, "column name appears twice")
        seen.add(name)
    return table
