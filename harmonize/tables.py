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
import zipfile
from pathlib import Path
from typing import Any

from harmonize.errors import InputError

FORMATS = ("csv", "tsv", "xlsx", "parquet")
MAX_FILE_BYTES = 512 * 1024**2  # a table (XLSX: its unpacked XML) larger than this is refused, not read
MAX_FIELD_CHARS = 131_072  # one CSV field; longer is almost always a quote left open
MAX_CELLS = 20_000_000  # one sheet's used range (e.g. 100,000 rows x 200 columns)
ROW_NAMES = "(row names)"  # the unnamed first column R's write.csv/write.table adds
MAX_LISTED = 20  # anomalies listed one by one in the notes (all are counted)


class SourceError(InputError):
    """A source file cannot be read as its mapping says; names file, row and field."""


@dataclasses.dataclass(frozen=True)
class RawTable:
    """A table as text.

    Attributes:
        path: the file.
        header: column names, in file order.
        rows: data rows; each has ``len(header)`` cells or fewer (a ragged row).
        lines: for each data row, where a person finds it (``"line 4"``, ``"lines 4-6"`` for a
            record with quoted line breaks, ``"sheet row 6"``).
        cell_issues: ``(row index, column index, reason)`` of cells whose content is not a
            stored value (a formula without a cached result, an Excel error, a merged cell
            that cannot take its anchor's value); their text is ``None``.
        notes: what the reader did that the quality report must say (a byte-order mark removed,
            R row names recognised, merged ranges filled, records folded into one field, the
            count of physical lines and records).
    """

    path: str
    header: tuple[str, ...]
    rows: tuple[tuple[str | None, ...], ...]
    lines: tuple[str, ...]
    cell_issues: tuple[tuple[int, int, str], ...] = ()
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)


def table_format(path: Path, declared: str | None) -> str:
    """The format a mapping declares, else the file suffix's."""
    fmt = (declared or path.suffix.lstrip(".")).lower()
    fmt = {"txt": "tsv", "tab": "tsv", "xls": "xlsx", "pq": "parquet"}.get(fmt, fmt)
    if fmt not in FORMATS:
        raise SourceError(path, "-", "format", f"unknown table format {fmt!r}; expected one of {FORMATS}")
    return fmt


def _check_size(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise SourceError(
            path, 0, "(file)", f"{size} bytes is over the {MAX_FILE_BYTES}-byte limit for one table; split it"
        )


def _text(path: Path, encoding: str) -> tuple[str, bool]:
    """The file's text and whether a byte-order mark was removed."""
    _check_size(path)
    data = path.read_bytes()
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise SourceError(
            path,
            f"at line {line}",
            "(file encoding)",
            f"byte {data[err.start : err.start + 1]!r} at offset {err.start} is not valid {encoding}; "
            "re-save the file as UTF-8 or set `encoding:` in the mapping (e.g. latin-1)",
        ) from None
    except LookupError:
        raise SourceError(
            path, 0, "encoding", f"{encoding!r} is not a text encoding Python knows (e.g. utf-8, latin-1)"
        ) from None
    if text.startswith("\ufeff"):  # Excel's "CSV UTF-8" writes one; it would stick to the first name
        return text[1:], True
    return text, False


def _folded(field: str, delimiter: str, width: int) -> list[int]:
    """Offsets (1-based, within the field) of the field's lines that look like whole records.

    A quote left open makes the reader swallow the following records into one field up to
    the next quote; each swallowed line still carries about a record's worth of delimiters.
    """
    need = max(2, width - 1)
    return [k for k, part in enumerate(field.split("\n")[1:], start=1) if part.count(delimiter) >= need]


def _read_delimited(path: Path, delimiter: str, encoding: str, header_row: int) -> RawTable:
    if len(delimiter) != 1 or delimiter in '\r\n"':
        raise SourceError(path, 0, "delimiter", f"{delimiter!r} cannot separate fields; give one character")
    text, bom = _text(path, encoding)
    if not text.strip():
        raise SourceError(path, 0, "(header)", "the file is empty")
    csv.field_size_limit(MAX_FIELD_CHARS)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records: list[list[str]] = []
    spans: list[tuple[int, int]] = []  # physical lines of each record: quoted line breaks span several
    end = 0
    while True:
        try:
            rec = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            why = str(err)
            hint = (
                "a field runs past the limit: a quote left open swallows the rest of the file"
                if "field limit" in why
                else "NUL bytes: not a text export (UTF-16? set `encoding:`)"
                if "NUL" in why
                else why
            )
            raise SourceError(
                path,
                f"at line {end + 1} (data row {k})"
                if (k := len(records) + 1 - header_row) > 0
                else "(header)",
                "(record)",
                f"cannot be split into fields: {hint} (fields hold at most {MAX_FIELD_CHARS} characters)",
            ) from None
        records.append(rec)
        spans.append((end + 1, reader.line_num))
        end = reader.line_num
    if header_row > len(records):
        raise SourceError(path, 0, "(header)", f"header_row {header_row} is past the end of the file")
    header = [c.strip() for c in records[header_row - 1]]
    body_records = [(r, s) for r, s in zip(records[header_row:], spans[header_row:], strict=True)]
    data = [(r, s) for r, s in body_records if any(c.strip() for c in r)]
    notes: dict[str, Any] = {}
    if bom:
        notes["byte_order_mark"] = "a UTF-8 byte-order mark at the start of the file was removed"
    # R's write.csv names its row-name column "" and write.table leaves it out of the header.
    if len(header) > 1 and header[0] == "" and all(h for h in header[1:]) and data:
        if all(r[0].strip() for r, _ in data):
            header[0] = ROW_NAMES
            notes["row_names"] = "the unnamed first column holds R row names; it is not mapped"
    elif data and all(h for h in header) and all(len(r) == len(header) + 1 for r, _ in data):
        header.insert(0, ROW_NAMES)
        notes["row_names"] = "every row has one field more than the header: R row names, not mapped"
    body, where, issues = [], [], []
    folded, n_folded = [], 0
    for rec, (first, last) in data:
        k = len(body)
        body.append(tuple(c.strip() or None for c in rec))
        where.append(f"line {first}" if first == last else f"lines {first}-{last}")
        if last == first:
            continue
        for j, cell in enumerate(rec):
            hits = _folded(cell, delimiter, len(header))
            if hits:
                n_folded += len(hits)
                column = header[j] if j < len(header) else f"column {j + 1}"
                before = sum(c.count("\n") for c in rec[:j])  # line breaks in earlier fields
                lines = [first + before + h for h in hits]
                if len(folded) < MAX_LISTED:
                    folded.append({"line": first, "field": column, "folded_lines": lines})
                issues.append(
                    (
                        k,
                        j,
                        f"quoting anomaly: this field holds {len(hits)} line(s) that look like whole records "
                        f"(lines {lines[0]}-{lines[-1]}); a quote opened at line {first} "
                        "is not closed where it should be",
                    )
                )
    blank = sum(last - first + 1 for rec, (first, last) in body_records if not any(c.strip() for c in rec))
    notes["records"] = {
        "physical_lines": end,
        "lines_above_data": spans[header_row - 1][1],
        "blank_lines": blank,
        "records": len(body),
        "multi_line_records": sum(1 for _, (a, b) in data if b > a),
        "records_folded_into_a_field": {"count": n_folded, "first": folded},
    }
    return RawTable(str(path), tuple(header), tuple(body), tuple(where), tuple(issues), notes)


def _xlsx_cell(v: object) -> str | None:
    if v is None:
        return None
    if isinstance(v, bool):  # before int: TRUE/FALSE cells are the 1/0 of a binary column
        return "1" if v else "0"
    if isinstance(v, dt.datetime):
        # Excel stores dates as datetimes: a midnight one is a date.
        return v.date().isoformat() if v.time() == dt.time(0) else v.isoformat()
    if isinstance(v, dt.date | dt.time):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    s = str(v).strip()
    return s or None


def _load_books(path: Path) -> tuple[Any, Any]:
    """The workbook twice: cached values, and the cells as written (formulas)."""
    import openpyxl

    try:
        with zipfile.ZipFile(path) as z:
            unpacked = sum(i.file_size for i in z.infolist())
        if unpacked > MAX_FILE_BYTES:
            raise SourceError(
                path, 0, "(file)", f"unpacks to {unpacked} bytes, over the {MAX_FILE_BYTES}-byte limit"
            )
        values = openpyxl.load_workbook(path, data_only=True)
        written = openpyxl.load_workbook(path, data_only=False)
    except SourceError:
        raise
    except Exception as err:  # zipfile, KeyError, XML and InvalidFileException errors alike
        raise SourceError(
            path, 0, "(file)", f"not a readable XLSX workbook: {type(err).__name__}: {err}"
        ) from None
    return values, written


def _read_xlsx(path: Path, sheet: str | None, header_row: int) -> RawTable:
    _check_size(path)
    book, formulas = _load_books(path)
    if sheet is not None and sheet not in book.sheetnames:
        raise SourceError(path, 0, "sheet", f"no sheet {sheet!r}; sheets: {book.sheetnames}")
    try:
        ws = book[sheet] if sheet is not None else book.worksheets[0]
        wf = formulas[ws.title]
        # The sheet's own dimension counts formatted empty cells (one stray cell at XFD1048576
        # makes it 17e9 cells): size the grid by the cells that hold something, and bound it.
        used = [key for key, cell in {**ws._cells, **wf._cells}.items() if cell.value is not None]
        n_rows = max((r for r, _ in used), default=0)
        n_cols = max((c for _, c in used), default=0)
        if n_rows * n_cols > MAX_CELLS:
            raise SourceError(
                path,
                0,
                "(file)",
                f"the sheet's used range A1:{_a1(n_cols, n_rows)} spans {n_rows * n_cols} cells, over the "
                f"{MAX_CELLS}-cell limit; delete stray cells far from the table or export it as CSV",
            )
        bounds = {"min_row": 1, "max_row": max(n_rows, 1), "min_col": 1, "max_col": max(n_cols, 1)}
        grid = [list(r) for r in ws.iter_rows(**bounds, values_only=True)] if used else []
        written = [list(r) for r in wf.iter_rows(**bounds, values_only=True)] if used else []
        merged = [tuple(r.bounds) for r in ws.merged_cells.ranges]  # (min_col, min_row, max_col, max_row)
    except SourceError:
        raise
    except Exception as err:  # a damaged sheet part: say so rather than crash
        raise SourceError(path, 0, "(file)", f"sheet cannot be read: {type(err).__name__}: {err}") from None
    if len(grid) < header_row:
        raise SourceError(path, 0, "(header)", "the sheet is empty" if not grid else "no header row")
    notes: dict[str, Any] = {}
    problems: dict[tuple[int, int], str] = {}  # (sheet row 1-based, column 0-based) -> reason
    filled, listed = 0, []
    for c0, r0, c1, r1 in merged:
        if r1 <= header_row:
            continue  # title and header merges hold no data
        anchor = grid[r0 - 1][c0 - 1] if r0 - 1 < len(grid) and c0 - 1 < len(grid[r0 - 1]) else None
        for r in range(max(r0, header_row + 1), min(r1, len(grid)) + 1):
            for c in range(c0, min(c1, len(grid[r - 1])) + 1):  # cells beyond the data hold nothing
                if (r, c) == (r0, c0) or c - 1 >= len(grid[r - 1]):
                    continue
                if c0 == c1:  # merged down one column: the anchor's value is meant for every row
                    grid[r - 1][c - 1] = anchor
                    filled += 1
                else:
                    problems[(r, c - 1)] = f"merged cell (range {_a1(c0, r0)}:{_a1(c1, r1)}) spans columns"
        if len(listed) < MAX_LISTED:
            listed.append(f"{_a1(c0, r0)}:{_a1(c1, r1)}")
    if merged:
        notes["merged_cells"] = {
            "ranges": len(merged),
            "first": listed,
            "filled_from_anchor": filled,
            "note": "a range merged down one column gives each row the anchor's value; "
            "a range over several columns leaves its other cells missing (listed as findings)",
        }
    from openpyxl.worksheet.formula import ArrayFormula, DataTableFormula

    for r, row in enumerate(written, start=1):
        for c, w in enumerate(row):
            formula = isinstance(w, ArrayFormula | DataTableFormula) or (isinstance(w, str) and w[:1] == "=")
            v = grid[r - 1][c] if r - 1 < len(grid) and c < len(grid[r - 1]) else None
            if formula and v is None:
                text = w if isinstance(w, str) else "(array formula)"
                problems[(r, c)] = (
                    f"formula {text[:60]} has no stored result (written by a program that does not "
                    "compute formulas); open and re-save the file in a spreadsheet program"
                )
            elif isinstance(v, str) and v in _EXCEL_ERRORS:
                problems[(r, c)] = f"the spreadsheet shows the error {v}"
                grid[r - 1][c] = None
    header = tuple("" if v is None else str(v).strip() for v in grid[header_row - 1])
    while header and header[-1] == "":
        header = header[:-1]
    body, where, issues = [], [], []
    for i, rec in enumerate(grid[header_row:], start=header_row + 1):
        cells = [_xlsx_cell(v) for v in rec]
        while len(cells) > len(header) and cells[-1] is None:
            cells.pop()  # empty cells right of the table; a value there is reported as an extra field
        bad = [(i, c) for c in range(len(cells)) if (i, c) in problems]
        if all(c is None for c in cells) and not bad:
            continue
        for _, c in bad:
            issues.append((len(body), c, problems[(i, c)]))
            cells[c] = None
        body.append(tuple(cells))
        where.append(f"sheet row {i}")
    notes["records"] = {"sheet_rows": len(grid), "header_row": header_row, "records": len(body)}
    return RawTable(str(path), header, tuple(body), tuple(where), tuple(issues), notes)


_EXCEL_ERRORS = frozenset(
    {"#NULL!", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#N/A", "#GETTING_DATA"}
)


def _a1(col: int, row: int) -> str:
    from openpyxl.utils import get_column_letter

    return f"{get_column_letter(col)}{row}"


def _read_parquet(path: Path) -> RawTable:
    import polars as pl

    _check_size(path)
    try:
        df = pl.read_parquet(path)
    except BaseException as err:  # polars raises its own errors, OSError, and (Rust panics) BaseException
        if isinstance(err, KeyboardInterrupt | SystemExit | MemoryError):
            raise
        raise SourceError(
            path, 0, "(file)", f"not a readable parquet file: {type(err).__name__}: {err}"
        ) from None
    for name, dtype in df.schema.items():
        if dtype.is_nested() or dtype == pl.Object:
            raise SourceError(
                path,
                "1 (header)",
                name,
                f"column of type {dtype} holds lists or records, not one value per cell; flatten it",
            )
    cols = []
    for name in df.columns:
        try:
            cols.append(df[name].cast(pl.String))
        except Exception as err:  # e.g. binary that is not UTF-8
            raise SourceError(
                path, "1 (header)", name, f"values cannot be read as text ({df.schema[name]}): {err}"
            ) from None
    rows = tuple(
        tuple(None if v is None or not v.strip() else v.strip() for v in r)
        for r in pl.DataFrame(cols).iter_rows()
    )
    notes = {"records": {"records": len(rows)}}
    return RawTable(
        str(path), tuple(df.columns), rows, tuple(f"record {i}" for i in range(1, len(rows) + 1)), (), notes
    )


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
    try:
        if fmt in ("csv", "tsv"):
            table = _read_delimited(path, delimiter or ("\t" if fmt == "tsv" else ","), encoding, header_row)
        elif fmt == "xlsx":
            table = _read_xlsx(path, sheet, header_row)
        else:
            table = _read_parquet(path)
    except OSError as err:  # permissions, a file that vanished, a disk error
        raise SourceError(path, 0, "(file)", f"cannot read it: {err.strerror or err}") from None
    seen: set[str] = set()
    for j, name in enumerate(table.header):
        if not name:
            raise SourceError(path, f"{header_row} (header)", f"column {j + 1}", "blank column name")
        if name in seen:
            raise SourceError(path, f"{header_row} (header)", name, "column name appears twice")
        seen.add(name)
    return table
