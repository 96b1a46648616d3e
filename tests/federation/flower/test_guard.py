"""guard: tree stops that reach descendants in other sessions, and the Watchdog process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import psutil

from fedjax_rhd.federation.flower import guard

# A session leader with a child in its group and a grandchild in a session of its own (as the
# SuperLink's SuperExec), which ignores SIGTERM.
_TREE = (
    "import subprocess, sys, time; "
    'subprocess.Popen(["sleep", "60"]); '
    "subprocess.Popen([sys.executable, '-c', "
    "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'], "
    "start_new_session=True); time.sleep(60)"
)


def _tree() -> tuple[subprocess.Popen[bytes], list[psutil.Process]]:
    leader = subprocess.Popen(
        [sys.executable, "-c", _TREE], start_new_session=True, preexec_fn=guard.die_with_parent_fn()
    )
    deadline = time.monotonic() + 10
    while len(kids := psutil.Process(leader.pid).children()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(kids) == 2
    time.sleep(0.3)  # let the grandchild install its SIGTERM handler
    return leader, kids


def test_stop_tree_reaches_other_sessions_and_sigkills_what_ignores_sigterm():
    leader, kids = _tree()
    assert all(guard.alive(p) for p in kids)
    assert len(guard.with_descendants({psutil.Process(leader.pid)})) == 3
    t0 = time.monotonic()
    assert guard.stop_tree([leader], grace=1.0, kill_wait=5.0) == []
    assert time.monotonic() - t0 < 6
    assert leader.returncode == -signal.SIGTERM
    assert guard.wait_gone(kids, 2.0) == []


def test_watchdog_kills_what_it_was_told_when_stopped(tmp_path):
    leader, kids = _tree()
    try:
        with guard.Watchdog(log_path=tmp_path / "watchdog.log") as dog:
            assert dog.pid is not None
            dog.tell(leader.pid)
            time.sleep(0.6)  # a tick or two: it records the descendants
            assert guard.alive(psutil.Process(leader.pid))  # told, parent alive: nothing happens
        assert dog.pid is None
        assert leader.wait(timeout=5) == -signal.SIGKILL
        assert guard.wait_gone(kids, 2.0) == []
    finally:
        guard.stop_tree([leader], grace=0.5)
