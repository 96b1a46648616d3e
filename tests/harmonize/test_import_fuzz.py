"""Fuzzing the import path: damaged exports of every format never crash, hang or lose a record.

Each example damages a valid export (the corpus's ``valid`` case) as hospital files get
damaged: bytes flipped, truncated, re-encoded, quotes and delimiters broken (CSV/TSV),
cells of the wrong type, formulas, error values and merges (XLSX), columns of the wrong or
nested type (parquet), and the mapping YAML itself edited by hand. Then ``harmonize map``
runs in-process and the invariant is checked on every example:

- no traceback and no internal error: the exit status is 0, 1 (bad input, one message naming
  the file, row and field), 3 (records quarantined or values rejected) or 4 (no usable row);
- no hang: each run finishes within :data:`LIMIT_S` (an alarm interrupts it otherwise);
- nothing lost: the quality report's ``n_records`` equals the records the table reader
  yields, and ``n_records = rows + quarantined``; every rejected value is listed or counted
  as a finding; every physical line of a delimited file belongs to the header, a blank line
  or exactly one record.

Derandomized with few examples by default (the suite must stay fast); run
``HYPOTHESIS_PROFILE=explore pytest tests/harmonize/test_import_fuzz.py`` to explore (500 examples
per test, or ``FUZZ_EXAMPLES``; each failure found becomes a case in ``tests/harmonize/corpus/``).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import signal
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from harmonize.cli import main
from harmonize.mapping import MappingError, load_mapping
from harmonize.tables import RawTable, read_table

VALID = Path(__file__).resolve().parent / "corpus" / "cases" / "valid"
LIMIT_S = 60  # generous: a run takes ~0.2 s; only a hang (or a pathological slowdown) gets near it
EXPLORE = os.environ.get("HYPOTHESIS_PROFILE") == "explore"


def _examples(default: int) -> int:
    """Few examples in the default (CI) profile; when exploring, $FUZZ_EXAMPLES or the profile's count."""
    return int(os.environ.get("FUZZ_EXAMPLES", settings().max_examples)) if EXPLORE else default


FUZZ = settings(
    max_examples=_examples(4),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(autouse=True, scope="module")
def _no_plugins():
    """`harmonize map` needs only the generic csv source: skip importing the simulators (and JAX)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("harmonize.registry.load_source_plugins", lambda: None)
        yield


class Hang(BaseException):
    """Raised by the alarm; a BaseException so that no ``except Exception`` can swallow it."""


@contextlib.contextmanager
def _time_bound(seconds: float):
    def alarm(signum, frame):
        raise Hang(f"no result after {seconds} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---- damage -------------------------------------------------------------------------------------

TOKENS = [
    b'"',
    b",",
    b";",
    b"\t",
    b"\n",
    b"\r\n",
    b"\r",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xe9",
    b"'",
    b'""',
    b'"\n"',
    b"NA",
    b"-1",
    b"1e309",
    b"nan",
    b"1,5",
    b"x" * 300,
]
YAML_TOKENS = [
    b"&a ",
    b"*a",
    b": ",
    b"- ",
    b"[",
    b"]",
    b"{",
    b"}",
    b"\t",
    b"  ",
    b"\n",
    b"#",
    b"'",
    b'"',
    b"~",
    b"? ",
    b"yes",
    b"!!python/object:os.system ",
    b"!!binary ",
    b"<<: *a\n",
    b"2016-02-30",
    b"1e309",
]


def _ops(tokens: list[bytes]) -> st.SearchStrategy:
    pos = st.integers(0, 10**6)
    return st.lists(
        st.one_of(
            st.tuples(st.just("flip"), pos, st.integers(1, 255)),
            st.tuples(st.just("truncate"), pos),
            st.tuples(st.just("insert"), pos, st.sampled_from(tokens)),
            st.tuples(st.just("delete"), pos, st.integers(1, 40)),
            st.tuples(st.just("dupline"), pos),
        ),
        min_size=1,
        max_size=4,
    )


def _damage(data: bytes, ops: list[tuple]) -> bytes:
    for op in ops:
        at = op[1] % (len(data) + 1)
        if op[0] == "flip" and data:
            at = op[1] % len(data)
            data = data[:at] + bytes([data[at] ^ op[2]]) + data[at + 1 :]
        elif op[0] == "truncate":
            data = data[:at]
        elif op[0] == "insert":
            data = data[:at] + op[2] + data[at:]
        elif op[0] == "delete":
            data = data[:at] + data[at + op[2] :]
        elif op[0] == "dupline":  # a line given twice: a duplicate record, a duplicate mapping key
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            end = len(data) if end < 0 else end + 1
            data = data[:end] + data[start:end] + data[end:]
    return data


# ---- the invariant ------------------------------------------------------------------------------


def _run(folder: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["map", "--use-case", "mds", "--mapping", str(folder / "mapping.yaml")]
    argv += ["--out", str(folder / "ds"), "--quiet", "--strict"]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), _time_bound(LIMIT_S):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def _span(where: str) -> int:
    """Physical lines a record spans, from its ``line 4`` / ``lines 4-6``."""
    nums = [int(n) for n in re.findall(r"\d+", where)]
    return 1 if len(nums) == 1 else nums[1] - nums[0] + 1


def _check_lines(table: RawTable) -> None:
    counts = table.notes.get("records", {})
    if "physical_lines" not in counts:
        return
    spans = sum(_span(w) for w in table.lines)
    assert counts["lines_above_data"] + counts["blank_lines"] + spans == counts["physical_lines"], counts


def check_invariant(folder: Path) -> tuple[int, str]:
    """Run ``harmonize map`` on a case folder and assert the import invariant; return (status, text)."""
    code, out, err = _run(folder)
    text = err + out
    assert "Traceback" not in text and "internal error" not in text, text
    assert code in (0, 1, 3, 4), (code, text)
    event(f"exit {code}")  # the statistics show how often each outcome was reached
    if code in (1, 4):
        # One message naming the file (the table or the mapping), the row and the field.
        named = re.search(r"error: (?:mapping )?(.+?): row ", err)
        assert named, err
        # The mapping, or a file in the case's folder (the one a damaged mapping names, perhaps).
        path = Path(named.group(1))
        assert path.name == "mapping.yaml" or folder in path.parents, err
        assert re.search(r" row \S+.*, field ['\"]", err), err  # repr() quotes a key holding ' with "
        return code, text
    # The centre is "corpus" unless the damage renamed it: take the card's word.
    [centre] = [c["name"] for c in json.loads((folder / "ds" / "dataset.json").read_text())["centres"]]
    report = json.loads((folder / "ds" / "quality" / f"{centre}.json").read_text())
    counts = report["counts"]
    assert (
        counts["n_records"]
        == counts["n_rows"] + counts["quarantined_at_ingest"] + counts["quarantined_at_extraction"]
    ), counts
    # An independent read of the same table: every record it yields reached the report.
    from harmonize.guide import load_guide

    m = load_mapping(folder / "mapping.yaml", load_guide("mds"))
    table = read_table(
        m.file, fmt=m.fmt, delimiter=m.delimiter, encoding=m.encoding, sheet=m.sheet, header_row=m.header_row
    )
    assert counts["n_records"] == len(table.rows), (counts, len(table.rows))
    _check_lines(table)
    ingest = json.loads((folder / "ds" / "fhir" / centre / "ingest.json").read_text())
    rejected = sum(n for reasons in ingest["rejected_values"].values() for n in reasons.values())
    assert report["findings"]["count"] >= rejected, (report["findings"]["count"], rejected)
    assert bool(report["findings"]["rows"]) == bool(report["findings"]["count"]), report["findings"]
    if code == 0:
        assert counts["n_rows"] == counts["n_records"] and not report["findings"]["count"], counts
    return code, text


@contextlib.contextmanager
def _case(files: dict[str, bytes], mapping: dict | bytes):
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        for name, data in files.items():
            (folder / name).write_bytes(data)
        text = mapping if isinstance(mapping, bytes) else yaml.safe_dump(mapping, sort_keys=False).encode()
        (folder / "mapping.yaml").write_bytes(text)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


MAPPING = yaml.safe_load((VALID / "mapping.yaml").read_text())
GOOD_CSV = (VALID / "data.csv").read_text()
HEADER = GOOD_CSV.splitlines()[0].split(",")
ROWS = [line.split(",") for line in GOOD_CSV.splitlines()[1:]]


# ---- delimited text -----------------------------------------------------------------------------


@FUZZ
@given(
    sep=st.sampled_from([",", ";", "\t", "|"]),
    # Mostly declared as written (so that damage reaches the records), sometimes not.
    declared=st.sampled_from(["as written"] * 4 + [None, ",", ";", "\t"]),
    encoding=st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16", "cp1252"]),
    declared_encoding=st.sampled_from(["as written"] * 4 + [None, "utf-8", "latin-1", "utf-16"]),
    quote_all=st.booleans(),
    ops=_ops(TOKENS),
)
def test_damaged_delimited_text_is_read_or_refused_cleanly(
    sep, declared, encoding, declared_encoding, quote_all, ops
):
    q = '"' if quote_all else ""
    text = "\n".join(sep.join(f"{q}{c}{q}" for c in r) for r in [HEADER, *ROWS]) + "\n"
    text = text.replace("Very good", "Très bon") if encoding != "utf-8" else text  # a byte that differs
    mapping = {**MAPPING, "file": "data.csv", "features": {**MAPPING["features"]}}
    mapping["features"]["ipssr_cyto"] = {
        "column": "Cyto",
        "codes": {**MAPPING["features"]["ipssr_cyto"]["codes"], "Très bon": "very_good"},
    }
    declared = sep if declared == "as written" else declared
    declared_encoding = encoding if declared_encoding == "as written" else declared_encoding
    if declared is not None:
        mapping["delimiter"] = declared
    if declared_encoding is not None:
        mapping["encoding"] = declared_encoding
    with _case({"data.csv": _damage(text.encode(encoding), ops)}, mapping) as folder:
        check_invariant(folder)


LONG = VALID.parent / "long_variant_list_valid"


@settings(FUZZ, max_examples=_examples(3))
@given(ops=_ops(TOKENS))
def test_damaged_variant_list_is_read_or_refused_cleanly(ops):
    """The long variant list (one row per variant) a mapping names beside the table."""
    files = {"data.csv": (LONG / "data.csv").read_bytes()}
    files["variants.tsv"] = _damage((LONG / "variants.tsv").read_bytes(), ops)
    with _case(files, (LONG / "mapping.yaml").read_bytes()) as folder:
        check_invariant(folder)


# ---- spreadsheets -------------------------------------------------------------------------------

CELLS = st.one_of(
    st.none(),
    st.integers(-(10**12), 10**12),
    st.floats(-1e12, 1e12, allow_nan=False),
    st.booleans(),
    st.text(st.characters(blacklist_categories=("Cs", "Cc")), max_size=12),
    st.dates(),
    st.sampled_from(["=1/0", "=A1+1", "=SUM(B2:B6)", "#N/A", "#DIV/0!", "#REF!", "NA", " ", "1,5"]),
)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(
            # In the table, or a stray cell below or right of it (kept near: openpyxl takes seconds
            # per million cells; test_tables checks a stray cell at XFD1048576 is refused).
            st.integers(1, 7) | st.sampled_from([40, 500]),
            st.integers(1, 11) | st.just(60),
            CELLS,
        ),
        max_size=6,
    ),
    merges=st.lists(
        st.tuples(st.integers(1, 7), st.integers(1, 11), st.integers(0, 2), st.integers(0, 2)), max_size=2
    ),
    ops=st.one_of(st.just([]), _ops([b"\x00", b"PK", b"<"])),
)
def test_damaged_spreadsheet_is_read_or_refused_cleanly(edits, merges, ops):
    import openpyxl

    book = openpyxl.Workbook()
    ws = book.active
    ws.append(HEADER)
    for r in ROWS:
        ws.append([float(v) if v.isdigit() and j else v for j, v in enumerate(r)])
    for row, col, value in edits:
        ws.cell(row=row, column=col, value=value)
    for row, col, down, right in merges:
        if down or right:
            with contextlib.suppress(ValueError):  # overlapping merges are refused by openpyxl
                ws.merge_cells(start_row=row, start_column=col, end_row=row + down, end_column=col + right)
    buf = io.BytesIO()
    book.save(buf)
    with _case({"data.xlsx": _damage(buf.getvalue(), ops)}, {**MAPPING, "file": "data.xlsx"}) as folder:
        check_invariant(folder)


# ---- parquet ------------------------------------------------------------------------------------

KINDS = ["str", "int", "float", "bool", "null", "date", "list", "struct", "binary", "categorical"]


def _parquet(kinds: dict[str, str]) -> bytes:
    import datetime as dt

    import polars as pl

    cols = {}
    for j, h in enumerate(HEADER):
        values = [r[j] for r in ROWS]
        kind = kinds.get(h, "str")
        if kind == "int":
            cols[h] = pl.Series(h, [int(v) if v.isdigit() else None for v in values], pl.Int64)
        elif kind == "float":
            cols[h] = pl.Series(h, [float(v) if v.isdigit() else float("nan") for v in values])
        elif kind == "bool":
            cols[h] = pl.Series(h, [v in ("1", "M", "DEAD") for v in values])
        elif kind == "null":
            cols[h] = pl.Series(h, [None] * len(values), pl.Null)
        elif kind == "date":
            cols[h] = pl.Series(h, [dt.date(2000, 1, 1 + k) for k in range(len(values))])
        elif kind == "list":
            cols[h] = pl.Series(h, [[v, v] for v in values])
        elif kind == "struct":
            cols[h] = pl.Series(h, [{"v": v} for v in values])
        elif kind == "binary":
            cols[h] = pl.Series(h, [v.encode("utf-16") for v in values], pl.Binary)
        elif kind == "categorical":
            cols[h] = pl.Series(h, values, pl.Categorical)
        else:
            cols[h] = pl.Series(h, values)
    buf = io.BytesIO()
    pl.DataFrame(cols).write_parquet(buf)
    return buf.getvalue()


@FUZZ
@given(
    kinds=st.dictionaries(st.sampled_from(HEADER), st.sampled_from(KINDS), max_size=3),
    ops=st.one_of(st.just([]), _ops([b"\x00", b"PAR1", b"\xff" * 8])),
)
def test_damaged_parquet_is_read_or_refused_cleanly(kinds, ops):
    data = _damage(_parquet(kinds), ops)
    with _case({"data.parquet": data}, {**MAPPING, "file": "data.parquet"}) as folder:
        check_invariant(folder)


# ---- the mapping YAML ---------------------------------------------------------------------------


@settings(max_examples=_examples(25), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=_ops(YAML_TOKENS))
def test_hand_edited_mapping_parses_or_fails_naming_file_line_and_key(ops, mds_guide):
    """The parser alone (cheap, so more examples): a MappingError naming file, line and key, or a mapping."""
    text = _damage((VALID / "mapping.yaml").read_bytes(), ops)
    folder = Path(tempfile.mkdtemp(prefix="fuzz-"))
    try:
        (folder / "mapping.yaml").write_bytes(text)
        with _time_bound(LIMIT_S):
            try:
                load_mapping(folder / "mapping.yaml", mds_guide)
            except MappingError as err:
                event("MappingError")
                assert re.match(r"mapping .*mapping\.yaml: row \S+( \(line\))?, field ['\"]", str(err)), err
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@FUZZ
@given(ops=_ops(YAML_TOKENS))
def test_hand_edited_mapping_through_the_command(ops):
    text = _damage((VALID / "mapping.yaml").read_bytes(), ops)
    with _case({"data.csv": GOOD_CSV.encode()}, text) as folder:
        check_invariant(folder)


@pytest.mark.parametrize("bomb", ["aliases", "depth"])
def test_yaml_bombs_are_refused_quickly(bomb, tmp_path, mds_guide):
    if bomb == "aliases":  # 9^12 nodes once expanded
        text = 'l0: &l0 "lol"\n' + "".join(
            f"l{k}: &l{k} [{', '.join([f'*l{k - 1}'] * 9)}]\n" for k in range(1, 13)
        )
    else:
        text = "a: " + "[" * 100_000 + "]" * 100_000 + "\n"
    (tmp_path / "m.yaml").write_text(text)
    with _time_bound(10), pytest.raises(MappingError, match="expands to more than|nested deeper than"):
        load_mapping(tmp_path / "m.yaml", mds_guide)
