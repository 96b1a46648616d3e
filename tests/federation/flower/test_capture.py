"""What leaves a node: every reply captured; no array with a patient-row dimension, no id or date.

Issue 16 item 3. The whole-run captures start Flower (Ray, or a SuperLink and SuperNodes) and run in
the slow suite; the default suite checks the capture itself and the error sanitising on the ClientApp.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from flwr.app import ArrayRecord, ConfigRecord, MetricRecord, RecordDict

from fedjax_rhd.federation.flower import capture, client_app, wire
from tests.conftest import TINY, run_in_process


def _fake_reply(records: RecordDict, error: str | None = None):
    meta = types.SimpleNamespace(**{k: 0 for k in capture.METADATA_FIELDS})
    return types.SimpleNamespace(
        metadata=meta,
        content=records,
        has_content=lambda: error is None,
        has_error=lambda: error is not None,
        error=types.SimpleNamespace(code=2, reason=error),
    )


def test_describe_keeps_shapes_and_values_not_arrays():
    records = wire.records_of(
        {
            "params": wire.Part(wire.ARRAYS, {"['w']": np.zeros((146, 32), np.float32)}),
            "config": wire.Part(wire.CONFIG, {"n_train": 412, "note": "ok", "names": ["a", "b"]}),
            "metrics": wire.Part(wire.METRICS, {"train_loss": 2.5}),
        }
    )
    entries = capture.describe(records)
    assert {"record": "params", "key": "['w']", "shape": [146, 32], "dtype": "float32"} in entries
    assert {"record": "config", "key": "n_train", "value": 412} in entries
    assert {"record": "config", "key": "names", "value": {"list": 2, "items": ["a", "b"]}} in entries
    assert {"record": "metrics", "key": "train_loss", "value": 2.5} in entries


def test_the_mod_writes_one_line_per_reply_and_the_error_text(tmp_path, monkeypatch):
    msg = types.SimpleNamespace(metadata=types.SimpleNamespace(message_type="train"))
    records = RecordDict({"metrics": MetricRecord({"train_loss": 1.0}), "c": ConfigRecord({"x": "y"})})
    # unset: no file, the reply untouched
    reply = _fake_reply(records)
    assert capture.capture_mod(msg, None, lambda m, c: reply) is reply
    assert not list(tmp_path.iterdir())
    monkeypatch.setenv(capture.CAPTURE_ENV, str(tmp_path))
    assert capture.capture_mod(msg, None, lambda m, c: reply) is reply

    def boom(m, c):
        raise RuntimeError("train failed on this node (ValueError)")

    with pytest.raises(RuntimeError):
        capture.capture_mod(msg, None, boom)
    lines = capture.read_captures(tmp_path)
    assert [line["message_type"] for line in lines] == ["train", "train"]
    assert lines[0]["metadata"] == {k: "int" for k in capture.METADATA_FIELDS}
    assert lines[0]["content"][0] == {"record": "metrics", "key": "train_loss", "value": 1.0}
    assert lines[1]["error"] == {"reason": "train failed on this node (ValueError)"}


def test_checks_flag_ids_dates_and_row_dimensions():
    lines = [
        {"message_type": "query.statistic", "content": [{"record": "s", "key": "grid", "shape": [16]}]},
        {"message_type": "train", "content": [{"record": "p", "key": "w", "shape": [412, 3]}]},
        {
            "message_type": "query.hello",
            "content": [{"record": "c", "key": "first", "value": "MDS-SIM-000007"}],
        },
        {
            "message_type": "query.hello",
            "content": [{"record": "c", "key": "when", "value": "seen 2024-03-01"}],
        },
        {"message_type": "train", "error": {"reason": "ValueError: bad id MDS-SIM-000009"}},
    ]
    assert capture.row_dimensions(lines, [412, 200]) == ["train p/w shape [412, 3]"]
    leaks = capture.leaked_strings(lines, ["MDS-SIM-000007", "MDS-SIM-000009"])
    assert len(leaks) == 3 and "patient id 'MDS-SIM-000007'" in leaks[0] and "a date" in leaks[1]
    assert capture.array_shapes(lines[:2]) == {
        ("query.statistic", "s", "grid", (16,)),
        ("train", "p", "w", (412, 3)),
    }


def test_a_node_failure_leaves_the_node_without_its_data_values(tmp_path, monkeypatch, caplog):
    from fedjax_rhd.federation.flower import node_handlers

    def failing(message_type, folder, content):
        raise ValueError("value 3.1415 of patient MDS-SIM-000042 at row 17 is out of range")

    monkeypatch.setattr(node_handlers, "handle", failing)
    msg = types.SimpleNamespace(
        metadata=types.SimpleNamespace(message_type="train"), content=RecordDict({"x": ArrayRecord()})
    )
    context = types.SimpleNamespace(node_config={wire.DATA_DIR_KEY: str(tmp_path)})
    with pytest.raises(client_app.NodeFailure) as err:
        client_app._answer(msg, context)
    text = str(err.value)
    assert text == "train failed on this node (ValueError); the node's log has the details"
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "MDS-SIM-000042" in caplog.text  # the node's own log keeps it
    # a node started without its folder says so: that message holds no data and crosses as is
    bare = types.SimpleNamespace(node_config={})
    with pytest.raises(client_app.NodeConfigError, match="has no 'data-dir'"):
        client_app._answer(msg, bare)


def _patient_ids(data_root: Path) -> list[str]:
    ids = []
    for path in data_root.rglob("*.parquet"):
        frame = pl.read_parquet(path)
        if "patient_id" in frame.columns:
            ids += frame["patient_id"].cast(pl.String).to_list()
    return ids


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["simulation", "deployment"])
def test_no_reply_of_a_whole_run_has_a_row_dimension_an_id_or_a_date(tmp_path, monkeypatch, mode):
    """Two cohorts of different sizes, the same run: every array crossing has the same shape in both
    (so none has a patient-row dimension); no string holds a patient id or a date."""
    base = [
        *TINY,
        "strategy.rounds=2",
        "strategy.finetune_epochs=1",
        "backend=flower",
        f"backend.mode={mode}",
    ]
    captured = {}
    for n in (600, 900):
        folder = tmp_path / f"capture_{n}"
        monkeypatch.setenv(capture.CAPTURE_ENV, str(folder))
        extra = [f"backend.workdir={tmp_path / f'work_{n}'}"] if mode == "deployment" else []
        run_in_process([*base, f"use_case.n_patients={n}", *extra], tmp_path / f"run_{n}", tmp_path / "data")
        captured[n] = capture.read_captures(folder)
    for lines in captured.values():
        types_seen = {line["message_type"] for line in lines}
        assert {wire.HELLO, wire.TRAIN, wire.VAL_LOSS, wire.STATISTIC, wire.FINETUNE} <= types_seen, (
            types_seen
        )
        assert not [line for line in lines if "error" in line]
        assert capture.leaked_strings(lines, _patient_ids(tmp_path / "data")) == []
    assert capture.array_shapes(captured[600]) == capture.array_shapes(captured[900])
