"""A node's warm worker: one long-lived process per node that answers its ClientApp's messages.

Flower 1.42 starts a new ``flwr-clientapp`` process for every message a SuperNode
receives (``shared/docs/flower_1.42_facts.md`` §3), and that process would import
JAX, load the compiled functions and read the node's rows again each time: 4-7 s
of a deployment round on two cores (``experiments/bench/README.md``). The worker
does that once. It runs beside the SuperNode, on the node's host, as the node's
user, holds the node's rows and compiled functions (``node_handlers``), and
listens on a loopback port; the per-message ClientApp process, which then imports
only Flower and numpy, hands it the message's records and returns its answer.
Nothing reaches the worker but what reached the ClientApp, and nothing leaves it
but the reply the ClientApp would have sent itself (``docs/privacy.md``).

The worker writes ``<data-dir>/worker.json`` (host, port, pid and a random
authentication key, readable only by its owner) once it listens and removes it
when it stops; a ClientApp that finds no such file, or a worker that does not
answer the connection, does the work in its own process (same result, slower).

Run it on a hospital host (``docs/deployment.md``)::

    python -m fedjax_rhd.federation.flower.node_worker --data-dir /srv/fedjax/node --port 9300
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from multiprocessing.connection import AuthenticationError, Client, Connection, Listener
from pathlib import Path
from typing import Any

from fedjax_rhd.federation.flower.wire import Content

WORKER_FILE = "worker.json"
LOCALHOST = "127.0.0.1"

log = logging.getLogger(__name__)

Handler = Callable[[str, Path, Content], Content]


class NodeWorkerError(RuntimeError):
    """The worker received the message but its handler failed (the message quotes the worker's error)."""


def _write_private(path: Path, values: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the key is the owner's alone
    with os.fdopen(fd, "w") as f:
        json.dump(values, f)
    tmp.replace(path)


def _answer(conn: Connection, handle: Handler, folder: Path) -> None:
    """Read one request from ``conn`` and send ``("ok", reply)`` or ``("error", reason)``."""
    try:
        message_type, content = conn.recv()
    except (EOFError, OSError):
        return  # the ClientApp went away (e.g. its SuperNode was killed)
    start = time.perf_counter()
    try:
        reply: tuple[str, Any] = ("ok", handle(message_type, folder, content))
        log.info("answered %s in %.3f s", message_type, time.perf_counter() - start)
    except Exception as err:  # noqa: BLE001 -- any handler error goes back to the message's sender
        log.exception("%s failed", message_type)
        reply = ("error", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=-3)}")
    try:
        conn.send(reply)
    except OSError:
        log.warning("the ClientApp left before the reply to %s", message_type)


def serve(folder: Path, port: int, host: str = LOCALHOST, handle: Handler | None = None) -> None:
    """Answer requests for the node whose folder is ``folder`` until SIGTERM or SIGINT.

    Args:
        folder: The node's own folder (the SuperNode's ``data-dir``); ``worker.json`` goes there.
        port: The TCP port to listen on (``host`` only).
        host: The address to listen on; keep it a loopback address (the ClientApp runs on this host).
        handle: Who answers a request (default ``node_handlers.handle``; tests pass their own).

    Raises:
        OSError: The port cannot be bound.
    """
    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if handle is None:
        from fedjax_rhd.federation.flower import node_handlers  # JAX and the models: once, here

        handle = node_handlers.handle
    authkey = secrets.token_bytes(32)
    info = folder / WORKER_FILE
    with Listener((host, port), authkey=authkey) as listener:
        _write_private(info, {"host": host, "port": port, "pid": os.getpid(), "authkey": authkey.hex()})
        log.info("node worker for %s listens on %s:%d", folder, host, port)
        try:
            while True:
                try:
                    conn = listener.accept()
                except AuthenticationError as err:
                    log.warning("refused a connection with a wrong key: %s", err)
                    continue
                except (EOFError, OSError) as err:
                    log.info("a connection closed before it authenticated (a port probe?): %r", err)
                    continue
                with conn:
                    _answer(conn, handle, folder)
        finally:
            if _owner(info) == os.getpid():
                info.unlink(missing_ok=True)


def _read_info(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((Path(folder) / WORKER_FILE).read_text())
    except (OSError, ValueError):
        return None


def _owner(info: Path) -> int | None:
    values = _read_info(info.parent)
    return None if values is None else values.get("pid")


def call(folder: Path, message_type: str, content: Content) -> Content | None:
    """Have the node's worker answer a message; ``None`` when the node runs no reachable worker.

    Args:
        folder: The node's own folder.
        message_type: The Flower message type.
        content: The message's records.

    Returns:
        The reply's records, or ``None`` (no ``worker.json``, or nothing accepts on its port): the
        caller then answers the message itself.

    Raises:
        NodeWorkerError: The worker's handler failed, or the worker died while answering.
    """
    info = _read_info(folder)
    if info is None:
        return None
    try:
        conn = Client((info["host"], int(info["port"])), authkey=bytes.fromhex(info["authkey"]))
    except (OSError, EOFError, AuthenticationError, KeyError, ValueError) as err:
        log.warning("the node worker in %s does not answer (%s); answering in this process", folder, err)
        return None
    with conn:
        try:
            conn.send((message_type, content))
            status, payload = conn.recv()
        except (EOFError, OSError) as err:
            pid = info.get("pid")
            raise NodeWorkerError(f"the node worker (pid {pid}) died answering {message_type}") from err
    if status != "ok":
        raise NodeWorkerError(f"the node worker failed on {message_type}: {payload}")
    return payload


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m fedjax_rhd.federation.flower.node_worker --data-dir DIR --port P``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, type=Path, help="the node's own folder")
    parser.add_argument("--port", required=True, type=int, help="TCP port to listen on")
    parser.add_argument("--host", default=LOCALHOST, help="address to listen on (default: loopback)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def stop(signum: int, frame: object) -> None:
        del frame
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)  # so that `finally` removes worker.json
    try:
        serve(args.data_dir, args.port, args.host)
    except OSError as err:
        print(f"node worker: cannot listen on {args.host}:{args.port}: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
