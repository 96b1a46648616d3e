"""The channel between the experiment driver and the Flower ServerApp.

The round loop, trackers, checkpoints and ``results.json`` stay in the
``fedjax-rhd`` process (the loop is backend-neutral); the ServerApp owns the
grid: it sends the messages, puts the replies in partition order and
aggregates. The driver calls the ServerApp's ``FlowerRounds`` methods through
this channel: ``call(method, *args) -> result``. In simulation the ServerApp is
a thread of the driver's process (two queues); in a deployment it is Flower's
``flwr-serverapp`` process on the manager host, reached over a loopback socket
authenticated with a per-run key (``multiprocessing.connection``). Either way
the traffic is the manager's own: server states, parameters and per-node
scalars, never a node's rows.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import jax

STOP = "stop"


class ServerAppFailed(RuntimeError):
    """The ServerApp raised or went away; the message says what it reported."""


def host_values(value: Any) -> Any:
    """``value`` with JAX arrays as numpy (what crosses a process boundary pickles cheaply)."""
    return jax.device_get(value)


class DriverEnd:
    """The driver's end: blocking calls that fail, instead of hanging, when the ServerApp is gone."""

    def __init__(
        self,
        send: Callable[[Any], None],
        poll: Callable[[float], Any],
        alive: Callable[[], str | None],
    ) -> None:
        """Args:
        send: puts one request on the channel.
        poll: waits up to the given seconds for one reply; returns it or ``_EMPTY``.
        alive: None while the ServerApp side lives, else why it is gone.
        """
        self._send, self._poll, self._alive = send, poll, alive

    def call(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """Run ``method(*args)`` on the ServerApp's ``FlowerRounds`` and return its result.

        Raises:
            ServerAppFailed: the ServerApp raised, or stopped before answering.
            TimeoutError: no answer within ``timeout`` seconds (None: no limit; the ServerApp's
                own waits are bounded by the time limit and Flower's node-death detection).
        """
        self._send((method, host_values(args)))
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            reply = self._poll(0.5)
            if reply is not _EMPTY:
                break
            gone = self._alive()
            if gone is not None:
                raise ServerAppFailed(f"the Flower ServerApp stopped during {method!r}: {gone}")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the Flower ServerApp did not answer {method!r} within {timeout:.0f} s")
        status, value = reply
        if status == "error":
            raise ServerAppFailed(f"the Flower ServerApp failed in {method!r}: {value}")
        return value


class _Empty:
    pass


_EMPTY = _Empty()


def queue_pair(alive: Callable[[], str | None]) -> tuple[DriverEnd, Callable[[], Any], Callable[[Any], None]]:
    """In-process channel (simulation): the driver end, and the ServerApp's ``recv`` and ``send``."""
    requests: queue.Queue[Any] = queue.Queue()
    replies: queue.Queue[Any] = queue.Queue()

    def poll(seconds: float) -> Any:
        try:
            return replies.get(timeout=seconds)
        except queue.Empty:
            return _EMPTY

    return DriverEnd(requests.put, poll, alive), requests.get, replies.put


def connection_driver(conn: Connection, alive: Callable[[], str | None]) -> DriverEnd:
    """The driver end over an accepted ``multiprocessing.connection`` (deployment)."""

    def poll(seconds: float) -> Any:
        try:
            return conn.recv() if conn.poll(seconds) else _EMPTY
        except (EOFError, OSError) as err:
            return ("error", f"connection to the ServerApp lost ({type(err).__name__})")

    return DriverEnd(conn.send, poll, alive)


def serve(recv: Callable[[], Any], send: Callable[[Any], None], target: Any) -> None:
    """The ServerApp's loop: answer each ``(method, args)`` with ``("ok", result)`` or ``("error", text)``.

    Returns on ``stop`` or when the driver's end closes.
    """
    while True:
        try:
            method, args = recv()
        except (EOFError, OSError):
            return
        if method == STOP:
            send(("ok", None))
            return
        try:
            send(("ok", host_values(getattr(target, method)(*args))))
        except Exception as err:  # the driver raises it as ServerAppFailed with this text
            send(("error", f"{type(err).__name__}: {err}"))


def thread_alive(thread: threading.Thread, errors: list[BaseException]) -> Callable[[], str | None]:
    """``alive`` for a ServerApp running in ``thread`` (simulation): its exception, if it raised."""

    def alive() -> str | None:
        if thread.is_alive():
            return None
        time.sleep(0.1)
        return repr(errors[0]) if errors else "the simulation ended"

    return alive
