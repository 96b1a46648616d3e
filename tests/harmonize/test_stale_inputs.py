"""A cached dataset records the digests of its guide, mapping and source files; an edit makes it stale.

Before, a mapping or guide fixed in place was answered with the old tables by the next run.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from harmonize.datasets import load_or_build_dataset
from harmonize.guide import GUIDES_DIR, load_guide
from harmonize.identity import DatasetCacheError
from harmonize.inputs import changed_inputs, file_digest
from harmonize.registry import DatasetSpec, dataset_folder

MAPPING = """\
file: table.csv
centre: one
patient_id: {column: id}
time: {column: days, unit: d}
event: {column: dead, codes: {"1": 1, "0": 0}}
features:
  age: {column: age, unit: a}
  tsize: {column: tsize, unit: mm}
"""


def _table(n: int = 24) -> str:
    rows = [f"p{i:02d},{40 + i},{10 + 3 * i},{100 + 37 * i},{i % 3 == 0:d}" for i in range(n)]
    return "\n".join(["id,age,tsize,days,dead", *rows]) + "\n"


@pytest.fixture
def project(tmp_path):
    """A user's folder: a table, its mapping and a copy of a guide, and a dataset built from them."""
    (tmp_path / "table.csv").write_text(_table())
    (tmp_path / "m.yaml").write_text(MAPPING)
    shutil.copy(GUIDES_DIR / "gbsg2.yaml", tmp_path / "guide.yaml")
    spec = DatasetSpec(
        "mine", str(tmp_path / "guide.yaml"), "csv", (("mapping", [str(tmp_path / "m.yaml")]),)
    )
    df, card = load_or_build_dataset(spec, load_guide(tmp_path / "guide.yaml"), tmp_path / "data")
    assert df.height == 24
    return tmp_path, spec, card


def _reuse(folder: Path, spec: DatasetSpec):
    return load_or_build_dataset(spec, load_guide(folder / "guide.yaml"), folder / "data")


def test_the_card_records_each_input_digest(project):
    folder, spec, card = project
    inputs = card["source"]["inputs"]
    sha = {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in ("m.yaml", "table.csv")}
    assert inputs == {
        "guide gbsg2": hashlib.sha256((folder / "guide.yaml").read_bytes()).hexdigest(),
        f"mapping {folder / 'm.yaml'}": sha["m.yaml"],
        f"source {folder / 'table.csv'}": sha["table.csv"],
    }
    again, reused = _reuse(folder, spec)  # unchanged inputs: the cache is used as it is
    assert reused == card and again.height == 24


@pytest.mark.parametrize(
    ("file", "edit", "label"),
    [
        ("table.csv", lambda text: text.replace("p03,43", "p03,44"), "source {}"),
        ("m.yaml", lambda text: text.replace("unit: d}", "unit: wk}"), "mapping {}"),
        ("guide.yaml", lambda text: text + "# a comment is an edit too\n", "guide gbsg2"),
    ],
)
def test_an_edited_input_makes_the_cache_stale_naming_it(project, file, edit, label):
    folder, spec, _ = project
    path = folder / file
    before = file_digest(path)
    path.write_text(edit(path.read_text()))
    name = label.format(path)
    with pytest.raises(DatasetCacheError) as err:
        _reuse(folder, spec)
    message = str(err.value)
    assert f"stale dataset {dataset_folder(folder / 'data', 'mine')}" in message
    assert f"{name} changed (sha256 {before[:12]} -> {file_digest(path)[:12]})" in message
    assert message.count(" changed (sha256") == 1  # only the edited file is named
    assert f"delete {dataset_folder(folder / 'data', 'mine')} to rebuild it" in message


def test_a_missing_source_file_and_a_card_without_digests_are_stale(project):
    folder, spec, _ = project
    (folder / "table.csv").unlink()
    with pytest.raises(DatasetCacheError, match=r"source .*table.csv is missing \(was sha256"):
        _reuse(folder, spec)
    (folder / "table.csv").write_text(_table())
    card_path = dataset_folder(folder / "data", "mine") / "dataset.json"
    card = json.loads(card_path.read_text())
    del card["source"]["inputs"]  # a dataset built before cards recorded their inputs
    card_path.write_text(json.dumps(card))
    with pytest.raises(DatasetCacheError, match="built before datasets recorded the digests"):
        _reuse(folder, spec)


def test_changed_inputs_names_each_kind_of_change():
    assert changed_inputs({"a": "1" * 64, "b": "2" * 64}, {"a": "1" * 64, "c": "3" * 64}) == [
        "b is no longer an input",
        "c is new since the build",
    ]
