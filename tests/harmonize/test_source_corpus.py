"""The broken-export corpus: each case fails clearly or is quarantined and counted, never a traceback.

Cases live in ``tests/harmonize/corpus/cases`` (written by ``tests/harmonize/corpus/make_corpus.py``);
each names what the error message or the quality-report entry must say.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harmonize.cli import main

CASES = Path(__file__).resolve().parent / "corpus" / "cases"
NAMES = sorted(p.name for p in CASES.iterdir() if (p / "expect.yaml").is_file())


def test_corpus_is_big_enough():
    broken = [n for n in NAMES if yaml.safe_load((CASES / n / "expect.yaml").read_text())["status"] != 0]
    assert len(broken) >= 30, broken


@pytest.mark.parametrize("name", NAMES)
def test_corpus_case(name, tmp_path, capsys):
    folder = CASES / name
    expect = yaml.safe_load((folder / "expect.yaml").read_text())
    out = tmp_path / "ds"
    argv = ["map", "--use-case", "mds", "--mapping", str(folder / "mapping.yaml"), "--out", str(out)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--quiet", "--strict"])
        raise SystemExit(0)
    captured = capsys.readouterr()
    assert exc.value.code == expect["status"], captured.err + captured.out
    assert "Traceback" not in captured.err and "internal error" not in captured.err
    for words in expect.get("says", []):  # what the message, a note or a warning must also say
        assert words in captured.err + captured.out, captured.err + captured.out
    if expect["where"] == "message":
        msg = captured.err
        assert f"{expect['file']}" in msg and f"row {expect['row']}" in msg, msg
        assert repr(expect["field"]) in msg, msg
        return
    card = json.loads((out / "dataset.json").read_text())
    assert card["n_rows"] == expect["rows"]
    report = json.loads((out / "quality" / "corpus.json").read_text())
    counts = report["counts"]
    # Every source record is accounted for: rows + quarantined.
    assert (
        counts["n_records"]
        == counts["n_rows"] + counts["quarantined_at_ingest"] + counts["quarantined_at_extraction"]
    )
    entries = report["quarantined"]["ingest"]["rows"] + report["findings"]["rows"]
    if expect["where"] == "none":
        assert entries == [] and report["source"]["unmapped_columns"] == []
        return
    if expect["where"] == "note":  # rows that reach no record are listed in the source notes
        [entry] = report["source"]["variant_patients_not_in_table"]["first"]
        assert entry["source"].endswith(expect["file"]) and entry["row"] == expect["row"]
        assert entry["field"] == expect["field"]
        return
    if expect["where"] == "unmapped":
        assert report["source"]["unmapped_columns"] == [expect["field"]]
        assert report["source"]["file"].endswith(expect["file"])
        assert f"Unmapped columns (1): {expect['field']}" in (out / "quality" / "corpus.md").read_text()
        return
    hits = [
        e
        for e in entries
        if expect["file"] in e["source"] and e["row"] == expect["row"] and expect["field"] in e["field"]
    ]
    assert hits, entries
    if "line" in expect:  # the physical line (or sheet row), right even after quoted line breaks
        assert any(e["source"].endswith(f"({expect['line']})") for e in hits), hits
    assert f"row {expect['row']}, field {expect['field']!r}" in captured.out or any(
        f"row {expect['row']}, field {e['field']!r}" in captured.out for e in hits
    ), captured.out
