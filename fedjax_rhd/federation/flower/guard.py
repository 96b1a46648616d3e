"""No orphans: child processes that die with their starter, a watchdog for a killed parent, tree kills.

Why this is needed (flwr 1.42): ``flower-superlink`` and ``flower-supernode`` do not watch the process
that started them; only their own children do (``flower-superexec --parent-pid``, which starts
``flwr-serverapp`` and ``flwr-clientapp`` with ``--parent-pid`` in turn, each polling
``os.kill(parent, 0)`` every 0.2 s and exiting when it fails). The SuperLink's SuperExec even runs in a
session of its own. So a process started through this module

* gets its own session (``start_new_session=True``: its pid is its process group's id, so
  ``signal_groups`` reaches its whole group) and, on Linux, ``prctl(PR_SET_PDEATHSIG, SIGKILL)``
  (``die_with_parent_fn``), so it dies with the thread that started it, even when that process is
  SIGKILLed;
* is announced to a ``Watchdog``: Flower's grandchildren do leave by themselves once their parent is
  gone, but only after the dead parent has been *reaped* (their watch is ``os.kill(pid, 0)``, which a
  zombie passes): measured 2-12 s after a SIGKILLed parent here, and never under a PID 1 that does not
  reap. The watchdog process (own session, no PDEATHSIG) learns every pid and, every 0.25 s, their
  descendants; when its parent dies it SIGKILLs all their process groups (measured: everything gone
  within 0.1 s), and when it is stopped it exits.

PDEATHSIG fires when the *thread* that forked the child ends, not the process: start processes from
the main thread (or from a thread that lives as long as they should). Processes that have exited but
whose parent died before reaping them stay as zombies until PID 1 reaps them; they run nothing, and
every function here treats them as gone.

Example::

    with Watchdog(log_path=run_dir / "watchdog.log") as dog:
        popen = subprocess.Popen(args, start_new_session=True, preexec_fn=die_with_parent_fn())
        dog.tell(popen.pid)
        ...
        stop_tree([popen])
"""

from __future__ import annotations

import collections
import ctypes
import logging
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import psutil

STOP_GRACE = 10.0  # seconds SIGTERMed processes get before SIGKILL
KILL_WAIT = 5.0  # seconds to wait for SIGKILLed processes to disappear
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

log = logging.getLogger(__name__)


def _load_prctl() -> Callable[..., int] | None:
    """libc's ``prctl`` on Linux, None elsewhere (or where it cannot be found)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


# Resolved once here: a preexec_fn runs between fork and exec, where loading a library is unsafe.
PRCTL = _load_prctl()


def die_with_parent_fn() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child get SIGKILL when the forking thread ends.

    Returns:
        The function for ``subprocess.Popen(preexec_fn=...)``, or None off Linux (no PDEATHSIG there).
    """
    if PRCTL is None:
        return None
    parent_pid = os.getpid()
    prctl = PRCTL

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


def alive(proc: psutil.Process) -> bool:
    """Whether ``proc`` still runs (a zombie does not: it has exited and only awaits reaping).

    Args:
        proc: The process.

    Returns:
        True while it runs.
    """
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def wait_gone(procs: Iterable[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until none of ``procs`` runs or ``timeout`` seconds pass.

    Args:
        procs: The processes.
        timeout: Seconds to wait at most.

    Returns:
        Those still running.
    """
    deadline = time.monotonic() + timeout
    left = [p for p in procs if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def with_descendants(procs: Iterable[psutil.Process]) -> set[psutil.Process]:
    """The running ones of ``procs`` and all their running descendants.

    One scan of the process table (``Process.children`` scans it once per call).

    Args:
        procs: The roots.

    Returns:
        The running roots and descendants.
    """
    by_parent: dict[int, list[psutil.Process]] = collections.defaultdict(list)
    for proc in psutil.process_iter(["ppid"]):
        by_parent[proc.info["ppid"]].append(proc)
    found = {p for p in procs if alive(p)}
    todo = list(found)
    while todo:
        for child in by_parent.get(todo.pop().pid, []):
            if child not in found and alive(child):
                found.add(child)
                todo.append(child)
    return found


def signal_groups(
    popens: Sequence[subprocess.Popen[bytes]], sig: int, known: Iterable[psutil.Process] = ()
) -> list[psutil.Process]:
    """Send ``sig`` to the process group of each running ``popen`` and to every running descendant.

    Each ``popen`` must lead its own session (``start_new_session=True``), so its pgid is its pid.
    Descendants in other sessions (the SuperLink's SuperExec) are reached one by one.

    Args:
        popens: Session leaders started by this process.
        sig: The signal.
        known: More processes to signal if they still run (descendants seen earlier, whose parent may
            be gone by now).

    Returns:
        The descendants and ``known`` processes signalled (not the leaders themselves).
    """
    targets = list(known)
    for popen in popens:
        if popen.poll() is None:  # poll() also reaps it once it has exited
            try:
                targets += psutil.Process(popen.pid).children(recursive=True)
            except psutil.Error:
                pass
            try:
                os.killpg(popen.pid, sig)
            except ProcessLookupError:
                pass
    signalled = []
    for proc in set(targets):
        if alive(proc):
            try:
                proc.send_signal(sig)
                signalled.append(proc)
            except psutil.Error:
                pass
    return signalled


def wait_exited(
    popens: Sequence[subprocess.Popen[bytes]], others: Iterable[psutil.Process], timeout: float
) -> list[psutil.Process]:
    """Wait (reaping ``popens``) until ``popens`` and ``others`` have exited, or ``timeout`` seconds.

    Args:
        popens: Children of this process.
        others: Other processes (descendants).
        timeout: Seconds to wait at most.

    Returns:
        The processes still running.
    """
    deadline = time.monotonic() + timeout
    for popen in popens:
        try:
            popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    left = wait_gone(others, max(0.0, deadline - time.monotonic()))
    for popen in popens:
        if popen.poll() is None:
            try:
                left.append(psutil.Process(popen.pid))
            except psutil.Error:
                pass
    return left


def stop_tree(
    popens: Sequence[subprocess.Popen[bytes]], *, grace: float = STOP_GRACE, kill_wait: float = KILL_WAIT
) -> list[psutil.Process]:
    """SIGTERM session leaders with their groups and descendants, then SIGKILL whatever is left.

    Args:
        popens: Session leaders started by this process (``start_new_session=True``).
        grace: Seconds SIGTERMed processes get before SIGKILL.
        kill_wait: Seconds to wait for SIGKILLed processes to disappear.

    Returns:
        The processes that survived SIGKILL (logged too); normally none.
    """
    seen = with_descendants({psutil.Process(p.pid) for p in popens if p.poll() is None})
    wait_exited(popens, signal_groups(popens, signal.SIGTERM), grace)
    survivors = wait_exited(popens, signal_groups(popens, signal.SIGKILL, seen), kill_wait)
    if survivors:
        log.warning("processes survived SIGKILL: %s", [p.pid for p in survivors])
    return survivors


def watchdog(parent_pid: int, *, tick: float = 0.25) -> None:
    """Body of a watchdog process: kill the processes it was told about once its parent is gone.

    It reads pids, one per line, from stdin (``Watchdog.tell``) and every ``tick`` seconds records
    their descendants. When stdin closes (the parent died, or ``Watchdog.stop``) or it has been
    re-parented (the parent died), it SIGKILLs every process group and every process it knows that
    still runs, then returns. It makes the cleanup after a killed parent quick and independent of
    PID 1: Flower's own ``--parent-pid`` watch only fires once the dead parent has been reaped, which
    took 2-12 s here and never happens under an init that does not reap.

    Args:
        parent_pid: The pid of the process that owns the watched processes.
        tick: Seconds between looks at stdin, the parent and the descendants.
    """
    known: set[psutil.Process] = set()
    pending = b""
    while True:
        ready, _, _ = select.select([sys.stdin.fileno()], [], [], tick)
        closed = False
        if ready:
            chunk = os.read(sys.stdin.fileno(), 65536)
            closed = not chunk
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                try:
                    known.add(psutil.Process(int(line)))
                except (ValueError, psutil.Error):
                    pass
        known = with_descendants(known)
        if closed or os.getppid() != parent_pid:
            break
    # A group with a live member still exists, so its pgid cannot have been reused; killing it also
    # reaches processes started after the last look (a new flwr-clientapp, say).
    groups = set()
    for proc in known:
        if alive(proc):
            try:
                groups.add(os.getpgid(proc.pid))
            except OSError:
                pass
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    for proc in known:
        if alive(proc):
            try:
                proc.kill()
            except psutil.Error:
                pass


class Watchdog:
    """A ``watchdog`` process of this process: ``tell`` it every pid it must kill if this process dies.

    It runs in its own session and without PDEATHSIG, so it outlives a SIGKILLed parent. Use it as a
    context manager or call ``start`` and ``stop``; ``stop`` makes it kill what it knows that still
    runs (nothing, once the caller has stopped its processes) and reaps it.
    """

    def __init__(
        self, *, log_path: Path, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        """Describe the watchdog; nothing starts before ``start``.

        Args:
            log_path: Where its output goes (appended).
            env: Its environment (default: this process's); its Python must import ``fedjax_rhd``.
            cwd: Its working directory (default: this process's).
        """
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Watchdog:
        """Start the watchdog."""
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Stop the watchdog."""
        self.stop()

    @property
    def pid(self) -> int | None:
        """Its pid while it runs, else None."""
        return self.popen.pid if self.popen is not None and self.popen.poll() is None else None

    def start(self) -> None:
        """Start the watchdog process (its own session, no PDEATHSIG: it must outlive this process).

        Raises:
            RuntimeError: It was started before.
        """
        if self.popen is not None:
            raise RuntimeError("this watchdog was already started")
        code = f"from {__name__} import watchdog; watchdog({os.getpid()})"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self.popen = subprocess.Popen(
                [sys.executable, "-c", code],
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.PIPE,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def tell(self, pid: int) -> None:
        """Add ``pid`` (and, from now on, its descendants) to what the watchdog kills.

        Args:
            pid: A process this process started.
        """
        popen = self.popen
        if popen is None or popen.stdin is None or popen.stdin.closed:
            return
        try:
            popen.stdin.write(f"{pid}\n".encode())
            popen.stdin.flush()
        except OSError:
            log.warning("the watchdog is gone; only PDEATHSIG guards against orphans")

    def stop(self) -> None:
        """Close its stdin (it then kills what is left, nothing by now) and reap it. Idempotent."""
        popen = self.popen
        if popen is None:
            return
        if popen.stdin is not None and not popen.stdin.closed:
            try:
                popen.stdin.close()
            except OSError:
                pass
        try:
            popen.wait(timeout=KILL_WAIT)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait(timeout=KILL_WAIT)
