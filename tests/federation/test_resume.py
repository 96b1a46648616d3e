"""Checkpoints through the real CLI: SIGKILL mid-run, resume, same parameters; Ctrl-C stops cleanly.

The runs that are stopped are real processes (a signal to the CLI); the slow cadence test resumes
through the CLI too. The uninterrupted reference runs and the other resumes run in process (Hydra's
compose API, the same ``run`` the CLI calls) to spare processes: the comparisons are bit for bit
across processes.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from fedjax_rhd.federation.run_state import CHECKPOINT_NAME
from tests.conftest import run_in_process

ARGS = [
    "use_case.n_patients=600",
    "strategy=fedadam",
    "strategy.rounds=12",
    "strategy.patience=4",  # early stopping state must survive the restart too
    "strategy.client.local_epochs=2",
    "strategy.sampling.fraction=0.67",  # sampled nodes so far must survive as well
    "bootstrap=20",
    "progress=false",
]


def _env(data_root: Path) -> dict[str, str]:
    return {**os.environ, "FEDJAX_RHD_DATA_ROOT": str(data_root), "HYDRA_FULL_ERROR": "1"}


def _run(args: list[str], tmp_path: Path, data_root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "fedjax_rhd", *args],
        env=_env(data_root),
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )


def _checkpoint_round(path: Path) -> int:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return int(json.loads(str(archive["meta"]))["round"])
    except (OSError, ValueError, KeyError):
        return -1  # not there yet


def _start_and_signal(
    run_dir: Path, tmp_path: Path, data_root: Path, sig: int, after_round: int
) -> tuple[int, str, int]:
    """Start a run, send ``sig`` once its checkpoint reaches ``after_round``; (rc, stderr, round)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedjax_rhd", *ARGS, f"hydra.run.dir={run_dir}"],
        env=_env(data_root),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 300
    while _checkpoint_round(run_dir / CHECKPOINT_NAME) < after_round:
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "run never reached the round"
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err, _checkpoint_round(run_dir / CHECKPOINT_NAME)


def _params(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "params.npz") as archive:
        return {k: archive[k] for k in archive.files}


def _assert_same_run(a: Path, b: Path) -> None:
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for key in pa:
        np.testing.assert_array_equal(pa[key], pb[key], err_msg=key)  # bit for bit
    ra, rb = (json.loads((d / "results.json").read_text()) for d in (a, b))
    assert ra["rounds"] == rb["rounds"]
    assert ra["final"] == rb["final"]


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_data_root) -> Path:
    """The uninterrupted run, in process (its cohort is TINY's: the shared data root)."""
    run_dir = tmp_path_factory.mktemp("straight") / "run"
    run_in_process(ARGS, run_dir, tiny_data_root)
    return run_dir


def _resume_in_process(args: list[str], run_dir: Path, data_root: Path, capsys) -> str:
    """``fedjax-rhd <args> resume=<run_dir>`` in process; what it printed."""
    capsys.readouterr()
    run_in_process([*args, f"resume={run_dir}"], run_dir, data_root)
    return capsys.readouterr().out


def test_sigkill_then_resume_gives_identical_parameters(straight, tmp_path, tiny_data_root, capsys):
    """A real process killed mid-run; the resume runs in process (the command line's resume path is
    the same ``run``; the Ctrl-C test below and the slow cadence test cover resumes end to end)."""
    rounds_run = len(json.loads((straight / "results.json").read_text())["rounds"])
    assert rounds_run >= 4
    killed = tmp_path / "killed"
    rc, _, at = _start_and_signal(killed, tmp_path, tiny_data_root, signal.SIGKILL, after_round=2)
    assert rc == -signal.SIGKILL
    assert 2 <= at < rounds_run, "the run must have been killed part-way"
    assert not (killed / "results.json").exists()
    out = _resume_in_process(ARGS, killed, tiny_data_root, capsys)
    assert f"after round {at}" in out  # continued, not restarted
    _assert_same_run(straight, killed)


def test_ctrl_c_stops_after_the_round_with_a_checkpoint(straight, tmp_path, tiny_data_root, capsys):
    stopped = tmp_path / "stopped"
    rc, err, at = _start_and_signal(stopped, tmp_path, tiny_data_root, signal.SIGINT, after_round=1)
    assert rc == 130, err[-3000:]
    assert "stopped by Ctrl-C after round" in err and f"resume={stopped}" in err
    assert at >= 1 and not (stopped / "results.json").exists()
    out = _resume_in_process(ARGS, stopped, tiny_data_root, capsys)
    assert f"after round {at}" in out
    _assert_same_run(straight, stopped)


def test_resume_refuses_another_config(straight, tmp_path, tiny_data_root):
    with pytest.raises(ValueError, match=re.escape("strategy.client.learning_rate: 0.002 -> 0.01")):
        run_in_process(
            [*ARGS, "strategy.client.learning_rate=0.01", f"resume={straight}"], straight, tiny_data_root
        )


# The same real-process path as the SIGKILL test (kill the CLI, resume to the same parameters); the
# default suite checks the cadence in tests/federation/test_loop.py::test_checkpoint_cadence and a
# resume from a checkpoint older than the last round in
# tests/federation/test_loop.py::test_refused_round_is_dropped_and_the_run_resumes.
@pytest.mark.slow
def test_checkpoint_every_k_rounds_resumes_to_the_same_run(straight, tmp_path, tiny_data_root, capsys):
    """checkpoint_every=3: the file is written at rounds 0, 3, 6, ... and at the end; a run killed
    part-way resumes from the last multiple of 3 to the same parameters and records as writing
    every round (round r's keys depend on r only). The uninterrupted sparse run is in process."""
    every3 = [*ARGS, "checkpoint_every=3"]
    sparse = tmp_path / "sparse"
    run_in_process(every3, sparse, tiny_data_root)
    _assert_same_run(straight, sparse)
    rounds_run = len(json.loads((sparse / "results.json").read_text())["rounds"])
    assert _checkpoint_round(sparse / CHECKPOINT_NAME) == rounds_run  # the end is always written

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fedjax_rhd", *every3, f"hydra.run.dir={killed}"],
        env=_env(tiny_data_root),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen = set()
    deadline = time.monotonic() + 300
    # One read per poll: reading twice raced with the run (the second read could already see round 3).
    while (now := _checkpoint_round(killed / CHECKPOINT_NAME)) < 3:
        seen.add(now)
        assert proc.poll() is None, proc.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "run never reached round 3"
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=300)
    at = _checkpoint_round(killed / CHECKPOINT_NAME)
    assert at % 3 == 0 and 3 <= at < rounds_run, at
    assert seen <= {-1, 0}  # rounds 1 and 2 were never written
    out = _resume_in_process(every3, killed, tiny_data_root, capsys)
    assert f"after round {at}" in out
    _assert_same_run(straight, killed)
