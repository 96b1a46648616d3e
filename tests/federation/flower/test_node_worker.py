"""The node's warm worker answers exactly as the node would itself, and fails over cleanly.

A deployment's ClientApp hands each message to the node's worker when one runs
(``node_worker``), else answers it in its own process (``node_handlers``): the
two must give the same bits, and every way the worker can be missing must fall
back or fail with a named reason, never hang.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from flwr.app import ConfigRecord, MetricRecord, RecordDict

from fedjax_rhd.federation.flower import node_handlers, node_worker, protocol, wire
from fedjax_rhd.federation.flower.backend import write_node_folders
from fedjax_rhd.federation.flower.processes import free_port
from fedjax_rhd.federation.flower.records import key_data, to_flat
from fedjax_rhd.federation.flower.wire import ARRAYS, CONFIG, Part
from fedjax_rhd.strategies import build_model
from tests.federation.conftest import spec_of


def wait_for(path: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout} s"
        time.sleep(0.05)


def thread_worker(folder: Path, handle) -> None:
    """A worker in a daemon thread of this process (its own handler: no JAX needed)."""
    port = free_port()
    threading.Thread(target=node_worker.serve, args=(folder, port, "127.0.0.1", handle), daemon=True).start()
    wait_for(folder / node_worker.WORKER_FILE)


def echo(message_type, folder, content):
    if message_type == "query.boom":
        raise ValueError("boom at row 3")
    return {"echo": Part(CONFIG, {"type": message_type, "folder": str(folder), "n": len(content)})}


def test_content_round_trips_through_records():
    content = {
        "params": Part(ARRAYS, {"['w']": np.arange(6, dtype=np.float32).reshape(2, 3)}),
        "config": Part(CONFIG, {"spec": "{}", "delay": 0.5, "names": ["a", "b"]}),
        "metrics": Part("metrics", {"val_loss": 1.25}),
    }
    back = wire.content_of(wire.records_of(content))
    assert back.keys() == content.keys()
    assert [back[k].kind for k in back] == [content[k].kind for k in content]
    np.testing.assert_array_equal(back["params"].values["['w']"], content["params"].values["['w']"])
    assert back["config"].values == content["config"].values
    assert back["metrics"].values == {"val_loss": 1.25}
    assert isinstance(wire.records_of(content)["metrics"], MetricRecord)
    with pytest.raises(ValueError, match="record 'x' has kind 'rows'"):
        wire.records_of({"x": Part("rows", {})})


def test_the_client_app_imports_no_jax():
    # a deployment pays every import of the ClientApp module once per message
    code = "import sys, fedjax_rhd.federation.flower.client_app; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_replies_errors_and_refusals(tmp_path, caplog):
    folder = tmp_path / "node"
    folder.mkdir()
    assert node_worker.call(folder, "train", {}) is None  # no worker: the caller answers
    thread_worker(folder, echo)
    info = folder / node_worker.WORKER_FILE
    assert stat.S_IMODE(info.stat().st_mode) == 0o600  # the key is the owner's alone
    reply = node_worker.call(folder, "train", {"a": Part(CONFIG, {}), "b": Part(CONFIG, {})})
    assert reply == {"echo": Part(CONFIG, {"type": "train", "folder": str(folder.resolve()), "n": 2})}
    with pytest.raises(node_worker.NodeWorkerError, match="query.boom: ValueError: boom at row 3"):
        node_worker.call(folder, "query.boom", {})
    good = json.loads(info.read_text())
    info.write_text(json.dumps({**good, "authkey": "00" * 32}))
    with caplog.at_level(logging.WARNING, logger=node_worker.log.name):
        assert node_worker.call(folder, "train", {}) is None  # wrong key: refused, answered here
    assert "does not answer" in caplog.text
    info.write_text(json.dumps(good))
    assert node_worker.call(folder, "hello", {})["echo"].values["type"] == "hello"  # still serving
    info.write_text(json.dumps({**good, "port": free_port()}))  # a dead worker's stale file
    assert node_worker.call(folder, "train", {}) is None
    info.write_text("{not json")
    assert node_worker.call(folder, "train", {}) is None


def test_a_real_worker_answers_bit_for_bit_as_the_node_itself(data3, tmp_path):
    spec = spec_of(data3)
    folder = write_node_folders(tmp_path / "nodes", data3)[1]
    prep = data3.preprocessor
    inputs = {"center": prep.center, "scale": prep.scale, "fill": prep.fill}
    pads = {"pad_train": int(data3.train.x.shape[1]), "pad_val": int(data3.val.x.shape[1])}
    node_handlers.handle(wire.PREPARE, folder, {"inputs": Part(ARRAYS, inputs), "config": Part(CONFIG, pads)})
    params = build_model(spec).init(jax.random.key(0))
    train = {
        "config": Part(CONFIG, {"spec": protocol.spec_to_json(spec)}),
        "params": Part(ARRAYS, to_flat(params)),
        "key": Part(ARRAYS, {"key": key_data(jax.random.key(7))}),
    }
    port = free_port()
    log_path = tmp_path / "worker.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, "-m", "fedjax_rhd.federation.flower.node_worker"]
            + ["--data-dir", str(folder), "--port", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for(folder / node_worker.WORKER_FILE)
        theirs = node_worker.call(folder, wire.TRAIN, train)
        ours = node_handlers.handle(wire.TRAIN, folder, train)
        assert theirs["metrics"] == ours["metrics"]
        assert theirs["params"].values.keys() == ours["params"].values.keys()
        for key, value in ours["params"].values.items():
            np.testing.assert_array_equal(theirs["params"].values[key], value)
        hello = wire.records_of(node_worker.call(folder, wire.HELLO, {}))
        assert isinstance(hello["meta"], ConfigRecord) and hello["meta"]["partition_id"] == 1
        assert isinstance(RecordDict(dict(hello)), RecordDict)
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=30) == 128 + signal.SIGTERM
    assert not (folder / node_worker.WORKER_FILE).exists()  # removed on SIGTERM
    assert "answered train" in log_path.read_text()
    assert os.path.exists(folder / protocol.NODE_ARRAYS)


def test_every_message_type_has_a_handler_and_a_client_app_entry():
    from fedjax_rhd.federation.flower import client_app

    assert set(wire.MESSAGE_TYPES) == set(node_handlers.HANDLERS)
    registered = {t if "." in t else f"{t}.default" for t in wire.MESSAGE_TYPES}  # Flower's name for "train"
    assert set(client_app.app._registered_funcs) == registered
