"""The table readers: every record read back, at the physical line a person finds it."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harmonize.cli import main
from harmonize.tables import MAX_FIELD_CHARS, ROW_NAMES, SourceError, read_table

# Cell text as exports hold it: quotes, line breaks, other delimiters, accents; no commas
# (the delimiter) so that no embedded line can pass for a folded record.
TEXT = st.text(st.characters(codec="utf-8", exclude_characters=",\r\x00"), max_size=12)


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.lists(TEXT, min_size=3, max_size=3), min_size=1, max_size=8))
def test_csv_records_and_their_physical_lines_survive_any_quoting(rows, tmp_path_factory):
    """Whatever csv.writer writes (quoted line breaks, doubled quotes) reads back cell for cell,
    and each record's ``lines`` is the span the writer gave it."""
    rows = [r for r in rows if any(c.strip() for c in r)]  # an all-blank record is a blank line
    header = ["a", "b", "c"]
    buf, spans, line = io.StringIO(), [], 2
    csv.writer(buf, lineterminator="\n").writerow(header)
    for r in rows:
        one = io.StringIO()
        csv.writer(one, lineterminator="\n").writerow(r)
        n = one.getvalue().count("\n")
        spans.append(f"line {line}" if n == 1 else f"lines {line}-{line + n - 1}")
        line += n
        buf.write(one.getvalue())
    path = tmp_path_factory.mktemp("t") / "x.csv"
    path.write_text(buf.getvalue(), encoding="utf-8", newline="")
    table = read_table(path)
    assert table.rows == tuple(tuple(c.strip() or None for c in r) for r in rows)
    assert table.lines == tuple(spans)
    assert table.cell_issues == ()
    counts = table.notes["records"]
    assert counts["records"] == len(rows) and counts["physical_lines"] == line - 1
    assert counts["records_folded_into_a_field"]["count"] == 0


def test_a_quote_left_open_folds_records_and_they_are_counted(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('id,x,y\n1,"a,b\n2,c,d\n3,e,f\n', encoding="utf-8")
    table = read_table(path)
    assert len(table.rows) == 1 and table.lines == ("lines 2-4",)
    [(row, column, reason)] = table.cell_issues
    assert (row, column) == (0, 1) and "2 line(s) that look like whole records (lines 3-4)" in reason
    assert table.notes["records"]["records_folded_into_a_field"]["count"] == 2


def test_a_field_over_the_limit_is_an_error_naming_the_line(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text('id,x\n1,2\n2,"' + "y" * (MAX_FIELD_CHARS + 1) + '"\n', encoding="utf-8")
    with pytest.raises(
        SourceError, match=r"row at line 3 \(data row 2\), field '\(record\)'.*quote left open"
    ):
        read_table(path)


@pytest.mark.parametrize(
    ("text", "header"),
    [
        ('"","id","x"\n"1","a","2"\n"2","b","3"\n', (ROW_NAMES, "id", "x")),  # write.csv
        ("id,x\n1,a,2\n2,b,3\n", (ROW_NAMES, "id", "x")),  # write.table: no name for the row names
    ],
)
def test_r_row_names_are_recognised(tmp_path, text, header):
    path = tmp_path / "x.csv"
    path.write_text(text, encoding="utf-8")
    table = read_table(path)
    assert table.header == header and table.rows[1] == ("2", "b", "3") and "row_names" in table.notes


def test_a_utf8_byte_order_mark_is_removed_and_said(tmp_path):
    path = tmp_path / "x.csv"
    path.write_bytes(b"\xef\xbb\xbfid,x\n1,2\n")
    table = read_table(path)
    assert table.header == ("id", "x") and "byte_order_mark" in table.notes


def test_an_internal_error_says_so_and_shows_the_traceback_only_with_debug(monkeypatch, tmp_path, capsys):
    import harmonize.cli

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(harmonize.cli, "_cmd_guide", broken)
    monkeypatch.setattr("harmonize.registry.load_source_plugins", lambda: None)  # no JAX import here
    runs = [
        (["guide", "mds"], False),
        (["--debug", "guide", "mds"], True),
        (["guide", "mds", "--debug"], True),
    ]
    for argv, traceback in runs:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 70
        assert "internal error (a bug, not your input's fault): RuntimeError: boom" in err
        assert ("Traceback" in err) == traceback, err


def test_a_stray_cell_far_from_the_table_does_not_make_a_huge_grid(tmp_path):
    """One value at XFD1048576 would make the sheet's dimension 17e9 cells: refused, not read."""
    import openpyxl

    book = openpyxl.Workbook()
    book.active.append(["id", "x"])
    book.active.append(["a", 1])
    book.active["XFD1048576"] = "stray"
    book.save(tmp_path / "x.xlsx")
    with pytest.raises(SourceError, match=r"used range A1:XFD1048576 spans \d+ cells, over the"):
        read_table(tmp_path / "x.xlsx")
    del book.active["XFD1048576"]  # an empty but formatted far cell is not counted
    book.active["Z90000"].number_format = "0.00"
    book.save(tmp_path / "y.xlsx")
    assert read_table(tmp_path / "y.xlsx").rows == (("a", "1"),)
