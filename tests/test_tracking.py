"""Trackers: a recording fake checks every call and value; one smoke test per real tracker."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from fedjax_rhd import tracking
from fedjax_rhd.config import run_config
from fedjax_rhd.tracking import TrackerSettings, TrackerStartError, final_metrics, make_tracker, round_metrics
from tests.conftest import TINY, compose

CALLS: list[tuple] = []  # every call of every RecordingTracker, in order


class RecordingTracker:
    """A fake tracker that records each call with deep copies of its arguments."""

    fail_at: str | None = None  # method name that raises, to test failure handling

    def __init__(self, settings: TrackerSettings, output_dir: Path) -> None:
        if self.fail_at == "__init__":
            raise TrackerStartError("recording tracker refused to start")
        CALLS.append(("__init__", settings, output_dir))

    def log_config(self, config):
        CALLS.append(("log_config", json.loads(json.dumps(config))))

    def log_metrics(self, metrics, step):
        if self.fail_at == "log_metrics" and step == 2:
            raise RuntimeError("tracker broke in round 2")
        CALLS.append(("log_metrics", dict(metrics), step))

    def log_final(self, metrics, files):
        CALLS.append(("log_final", dict(metrics), dict(files)))

    def finish(self, success=True):
        CALLS.append(("finish", success))


@pytest.fixture
def recording(monkeypatch):
    CALLS.clear()
    monkeypatch.setitem(tracking.TRACKERS, "recording", "tests.test_tracking:RecordingTracker")
    monkeypatch.setattr(RecordingTracker, "fail_at", None)
    return CALLS


def _settings(data_root: Path, tracker: str, extra: list[str] | None = None):
    cfg = compose([*TINY, f"data_root={data_root}", *(extra or [])])
    return dataclasses.replace(run_config(cfg), tracker=TrackerSettings(name=tracker))


def _run(settings, out: Path) -> dict:
    from fedjax_rhd.experiment import run

    return run(settings, out)


def test_round_metrics_hand_record():
    record = {
        "round": 2,
        "train_loss": [1.5, 2.5],
        "val_loss": [1.0, 3.0],
        "val_loss_federated": 1.8,
        "c_index_test_nodes": [0.7, 0.6],
        "c_index_test_global": 0.75,
    }
    assert round_metrics(record, ["a", "b"]) == {
        "loss/val_federated": 1.8,
        "loss/train/a": 1.5,
        "loss/train/b": 2.5,
        "loss/val/a": 1.0,
        "loss/val/b": 3.0,
        "c_index_test/a": 0.7,
        "c_index_test/b": 0.6,
        "c_index_test/global": 0.75,
    }
    del record["c_index_test_global"]  # personalised strategies have no global model
    assert "c_index_test/global" not in round_metrics(record, ["a", "b"])


def test_unknown_tracker_fails_naming_the_choices(tmp_path):
    with pytest.raises(ValueError, match=r"'nope'.*\['mlflow', 'none', 'wandb'\]"):
        make_tracker(TrackerSettings(name="nope"), tmp_path)


def test_recording_tracker_sees_every_call_and_value(tmp_path, tiny_data_root, recording):
    res = _run(_settings(tiny_data_root, "recording"), tmp_path / "run")
    names = [c[0] for c in recording]
    rounds = len(res["rounds"])
    assert names == ["__init__", "log_config", *["log_metrics"] * rounds, "log_final", "finish"]
    assert recording[1][1] == res["config"]  # the resolved config, once
    node_names = [n["name"] for n in res["nodes"]]
    for call, record in zip(recording[2 : 2 + rounds], res["rounds"], strict=True):
        _, metrics, step = call
        assert step == record["round"]
        assert metrics == round_metrics(record, node_names)
        # spelled out once, independently of round_metrics:
        assert metrics["c_index_test/node3"] == record["c_index_test_nodes"][2]
        assert metrics["loss/train/node1"] == record["train_loss"][0]
        assert metrics["c_index_test/global"] == record["c_index_test_global"]
    _, final, files = recording[-2]
    assert final == final_metrics(res["final"])
    assert final["final/c_index_test"] == res["final"]["c_index_test"]["estimate"]
    assert final["final/node2/c_index_test_ci_low"] == res["final"]["nodes"][1]["c_index_test"]["ci_low"]
    assert final["final/oracle/c_index_test"] == res["final"]["oracle_c_index_test"]["estimate"]
    assert files["results"] == tmp_path / "run" / "results.json" and files["checkpoint"].is_file()
    assert recording[-1] == ("finish", True)


def test_tracker_does_not_change_results(tmp_path, tiny_data_root, recording):
    tracked = _run(_settings(tiny_data_root, "recording"), tmp_path / "a")
    plain = _run(_settings(tiny_data_root, "none"), tmp_path / "b")
    for key in ("rounds", "final", "dataset", "nodes"):
        assert tracked[key] == plain[key]  # bit-identical floats
    assert tracked["config"]["tracker"]["name"] == "recording"  # the config the library was given


def test_tracker_that_cannot_start_fails_before_any_work(tmp_path, recording, monkeypatch):
    monkeypatch.setattr(RecordingTracker, "fail_at", "__init__")
    with pytest.raises(TrackerStartError, match="refused to start"):
        _run(_settings(tmp_path / "data", "recording"), tmp_path / "run")  # its own data root
    assert not (tmp_path / "data").exists()  # no cohort simulated, nothing trained
    assert not (tmp_path / "run" / "results.json").exists()


def test_failing_run_finishes_the_tracker_as_failed(tmp_path, tiny_data_root, recording, monkeypatch):
    monkeypatch.setattr(RecordingTracker, "fail_at", "log_metrics")
    with pytest.raises(RuntimeError, match="round 2"):
        _run(_settings(tiny_data_root, "recording"), tmp_path / "run")
    assert recording[-1] == ("finish", False)


def _exercise(tracker, tmp_path: Path) -> dict:
    """Drive a real tracker through one fake run's calls; return what was sent."""
    config = {"use_case": {"name": "mds"}, "model": {"name": "deepsurv"}, "strategy": {"name": "fedavg"},
              "split": {"fractions": [0.6, 0.4]}}  # fmt: skip
    tracker.log_config(config)
    rounds = [{"c_index_test/node1": 0.6 + 0.01 * r, "loss/val_federated": 2.0 - 0.1 * r} for r in (1, 2, 3)]
    for r, m in enumerate(rounds, start=1):
        tracker.log_metrics(m, step=r)
    (tmp_path / "params.npz").write_bytes(b"not really a checkpoint, but bytes to round-trip")
    (tmp_path / "results.json").write_text("{}")
    final = {"final/c_index_test": 0.71, "final/c_index_test_ci_low": 0.65, "final/rounds_run": 3.0}
    tracker.log_final(final, {"checkpoint": tmp_path / "params.npz", "results": tmp_path / "results.json"})
    tracker.finish()
    return {"config": config, "rounds": rounds, "final": final}


def test_wandb_offline_writes_its_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = make_tracker(TrackerSettings(name="wandb", mode="online"), tmp_path)  # WANDB_MODE wins
    sent = _exercise(tracker, tmp_path)
    import wandb

    wandb.teardown()  # finish() returns before wandb's service has flushed the record log
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (log,) = run_dir.glob("run-*.wandb")
    # wandb 0.31 ships no Python reader for its record log; the records hold the keys and
    # JSON-encoded values verbatim (small files: no block boundary splits them).
    data = log.read_bytes()
    assert b'{"fractions":[0.6,0.4]}' in data  # the config
    assert data.count(b"c_index_test/node1") >= len(sent["rounds"])  # one history record per round
    assert b"final/c_index_test" in data and b"0.71" in data  # the summary


def test_wandb_mode_resolution(monkeypatch):
    from fedjax_rhd.trackers.wandb_tracker import resolve_mode

    monkeypatch.delenv("WANDB_MODE", raising=False)
    assert resolve_mode(TrackerSettings(name="wandb")) == "offline"
    assert resolve_mode(TrackerSettings(name="wandb", mode="online")) == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode(TrackerSettings(name="wandb", mode="online")) == "disabled"


def test_mlflow_logs_run_and_registered_model_to_a_local_store(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    tracker = make_tracker(TrackerSettings(name="mlflow", tracking_uri=uri, run_name="smoke"), tmp_path)
    sent = _exercise(tracker, tmp_path)

    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(tracker.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "smoke"
    assert run.data.params["split.fractions"] == "[0.6, 0.4]"
    history = client.get_metric_history(tracker.run_id, "c_index_test/node1")
    assert [(m.step, m.value) for m in history] == [
        (r, sent["rounds"][r - 1]["c_index_test/node1"]) for r in (1, 2, 3)
    ]
    assert run.data.metrics["final/c_index_test"] == 0.71
    (version,) = client.search_model_versions("name='mds-deepsurv-fedavg'")
    assert version.run_id == tracker.run_id and version.tags["final.c_index_test"] == "0.71"
    local = Path(client.download_artifacts(tracker.run_id, "model", str(tmp_path / "back")))
    assert (local / "params.npz").read_bytes() == (tmp_path / "params.npz").read_bytes()
    config = Path(client.download_artifacts(tracker.run_id, "config.json", str(tmp_path / "c")))
    assert json.loads(config.read_text()) == sent["config"]


def test_mlflow_with_an_unusable_store_fails_at_start(tmp_path):
    pytest.importorskip("mlflow")
    with pytest.raises(
        TrackerStartError, match="tracker=mlflow could not start with tracking URI 'bogus://x'"
    ):
        make_tracker(TrackerSettings(name="mlflow", tracking_uri="bogus://x"), tmp_path)


def test_tracker_config_reaches_typed_settings(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    s = run_config(compose(["tracker=mlflow", f"tracker.tracking_uri={uri}", "tracker.run_name=r1"]))
    assert s.tracker == TrackerSettings(name="mlflow", tracking_uri=uri, run_name="r1")
    s = run_config(compose(["tracker=wandb"]))
    assert (s.tracker.name, s.tracker.mode, s.tracker.project) == ("wandb", "offline", "fedjax_rhd")
    assert run_config(compose()).tracker == TrackerSettings()  # none by default


def test_misspelt_wandb_mode_fails_naming_it():
    with pytest.raises(Exception, match="ofline"):
        run_config(compose(["tracker=wandb", "tracker.mode=ofline"]))


def test_round_metrics_skip_nodes_that_sat_the_round_out():
    from fedjax_rhd.tracking import round_metrics

    record = {
        "val_loss_federated": 1.5,
        "train_loss": [2.0, None],
        "val_loss": [1.0, 2.0],
        "c_index_test_nodes": [0.7, 0.6],
        "c_index_test_global": 0.71,
    }
    out = round_metrics(record, ["node1", "node2"])
    assert out["loss/train/node1"] == 2.0 and "loss/train/node2" not in out
    assert out["loss/val/node2"] == 2.0 and out["c_index_test/global"] == 0.71


def test_curve_every_thins_only_the_test_curves(tmp_path, tiny_data_root, recording):
    """curve_every=3: the test curves at rounds 1, 3, 6 equal the every-round run's at those rounds;
    validation (which selects the round), training and every final number are unchanged."""
    extra = ["strategy.rounds=7"]
    every = _run(_settings(tiny_data_root, "none", extra), tmp_path / "every")
    recording.clear()
    thin_settings = _settings(tiny_data_root, "recording", [*extra, "curve_every=3"])
    assert thin_settings.curve_every == 3
    thin = _run(thin_settings, tmp_path / "thin")
    assert thin["config"]["curve_every"] == 3 and every["config"]["curve_every"] == 1
    curve_keys = ("c_index_test_nodes", "c_index_test_global")
    for a, b in zip(every["rounds"], thin["rounds"], strict=True):
        assert {k: v for k, v in a.items() if k not in curve_keys} == {
            k: v for k, v in b.items() if k not in curve_keys
        }
        if b["round"] in (1, 3, 6):
            assert all(b[k] == a[k] for k in curve_keys)  # bit-identical where evaluated
        else:
            assert not any(k in b for k in curve_keys)
    assert thin["final"] == every["final"]
    logged = {step: m for name, *rest in recording if name == "log_metrics" for m, step in [rest]}
    assert sorted(logged) == list(range(1, 8))  # losses still logged every round
    assert "c_index_test/global" in logged[3] and "c_index_test/global" not in logged[2]
    assert logged[2]["loss/val_federated"] == every["rounds"][1]["val_loss_federated"]


def test_curve_round_and_bad_curve_every(tmp_path):
    assert [r for r in range(1, 11) if tracking.curve_round(r, 4)] == [1, 4, 8]
    assert all(tracking.curve_round(r, 1) for r in range(1, 5))
    with pytest.raises(ValueError, match="curve_every must be >= 1"):
        _settings(tmp_path / "data", "none", ["curve_every=0"])
