"""Where a deployment's message exchange goes, read from Flower's own DEBUG logs.

With ``FLWR_LOG_LEVEL=DEBUG`` every Flower process logs with timestamps, and
the ``flwr-clientapp`` processes log into their SuperNode's log. So one
message's life on a node can be followed line by line:

* ``Runtime.PushMessages`` in the SuperLink's log: the ServerApp pushed the exchange;
* ``Receiving: <type> message``: the SuperNode pulled it (its idle loop sleeps 3 s between pulls);
* ``DEBUG logs enabled``: the new ``flwr-clientapp`` process has started and begun importing flwr
  (after the SuperExec's task poll and the process launch);
* ``Start `flwr-clientapp` process``: flwr is imported;
* ``Loading ClientApp``: task input pulled and the FAB installed; now the app module is imported
  and the handler runs (imports, node data, compilation, the update);
* ``Runtime.PushMessages`` in the node's log: the reply is pushed to the SuperNode;
* ``Sending: <type> message``: the SuperNode pushes it to the SuperLink (it checks for a reply
  every 0.5 s).

``backends.py`` runs its deployments with those logs on; ``summarize`` gives the
mean of every phase over the steady rounds (round 1, which compiles, and
``query.hello`` left out).
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_LINE = re.compile(r"^\w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}):\s*(.*)$")
MARKS = (  # (mark, what the line starts with); in this order within one message
    ("received", "Receiving: "),
    ("process_started", "DEBUG logs enabled"),
    ("flwr_imported", "Start `flwr-clientapp` process"),
    ("app_loading", "Loading ClientApp"),
    ("reply_pushed", "Runtime.PushMessages"),
    ("sent", "Sending: "),
)
PHASES = (  # (label, from mark, to mark)
    ("ServerApp push -> SuperNode pulls it (3 s idle loop)", "push", "received"),
    ("object pull, SuperExec poll, process launch", "received", "process_started"),
    ("flwr imports in the flwr-clientapp process", "process_started", "flwr_imported"),
    ("task input pull + FAB install", "flwr_imported", "app_loading"),
    ("the app: imports, node data, jit, update", "app_loading", "reply_pushed"),
    ("reply -> SuperNode (0.5 s wait) -> SuperLink", "reply_pushed", "sent"),
)


def read_log(path: Path) -> list[tuple[float, str]]:
    """``(epoch seconds, message)`` of every timestamped line of a Flower log."""
    out = []
    for raw in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        match = _LINE.match(_ANSI.sub("", raw).strip())
        if match:
            stamp, millis, text = match.groups()
            out.append((time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1e3, text))
    return out


def node_messages(lines: list[tuple[float, str]]) -> list[dict[str, Any]]:
    """One record per message a SuperNode handled: its type and the time of each mark."""
    messages: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for t, text in lines:
        if text.startswith("Receiving: "):
            current = {"type": text.split()[1], "received": t}
            continue
        if current is None:
            continue
        for mark, prefix in MARKS[1:]:
            if mark not in current and text.startswith(prefix):
                current[mark] = t
                break
        if "sent" in current:
            messages.append(current)
            current = None
    return messages


def exchanges(log_dir: Path) -> list[dict[str, Any]]:
    """The ServerApp's pushes (SuperLink log) with the node messages each one started."""
    pushes = [t for t, text in read_log(log_dir / "superlink.log") if text.startswith("Runtime.PushMessages")]
    out = [{"push": t, "next_push": n, "nodes": []} for t, n in zip(pushes, [*pushes[1:], None], strict=True)]
    for log in sorted(log_dir.glob("supernode-*.log")):
        for message in node_messages(read_log(log)):
            before = [e for e in out if e["push"] <= message["received"]]
            if before:
                before[-1]["nodes"].append(message)
    for e in out:
        e["type"] = e["nodes"][0]["type"] if e["nodes"] else None
    return [e for e in out if e["type"] is not None]


def summarize(found: list[dict[str, Any]], *, final_train: bool) -> dict[str, dict[str, float]]:
    """Per message type: each phase's mean over nodes and steady exchanges, and the exchange's cycle.

    ``cycle``: push to the ServerApp's next push (the next exchange waits for the last reply, the
    ServerApp's pull and the aggregation). ``last_reply``: push to the last node's reply at the SuperLink.
    ``final_train``: the last ``train`` exchange is not a round (``run_federation``'s final node models).
    """
    by_type: dict[str, list[dict[str, Any]]] = {}
    for e in found:
        by_type.setdefault(e["type"], []).append(e)
    out = {}
    for kind, items in by_type.items():
        if kind.startswith("query"):
            continue
        steady = items[1:-1] if kind == "train" and final_train else items[1:]  # not round 1
        steady = steady or items
        rows = [{"push": e["push"], **m} for e in steady for m in e["nodes"]]
        summary = {label: statistics.mean(r[b] - r[a] for r in rows) for label, a, b in PHASES}
        summary["last_reply"] = statistics.mean(
            max(m["sent"] for m in e["nodes"]) - e["push"] for e in steady
        )
        cycles = [e["next_push"] - e["push"] for e in steady if e["next_push"] is not None]
        summary["cycle"] = statistics.mean(cycles) if cycles else float("nan")
        summary["exchanges"] = len(steady)
        out[kind] = summary
    return out


def print_timeline(timelines: dict[str, dict[str, dict[str, float]]]) -> None:
    """The phases side by side: ours and the bare app, per exchange type."""
    cols = [(who, kind) for who, found in timelines.items() for kind in found]
    print(
        "\none message exchange in a deployment, from Flower's DEBUG logs (seconds; mean over nodes "
        "and rounds 2..N)"
    )
    print(f"{'phase':<54}" + "".join(f"{who + ' ' + kind:>24}" for who, kind in cols))
    for label, _, _ in PHASES:
        print(f"{label:<54}" + "".join(f"{timelines[w][k][label]:>24.2f}" for w, k in cols))
    print(
        f"{'push -> the last reply at the SuperLink':<54}"
        + "".join(f"{timelines[w][k]['last_reply']:>24.2f}" for w, k in cols)
    )
    print(
        f"{'push -> the ServerApp next push (exchange cycle)':<54}"
        + "".join(f"{timelines[w][k]['cycle']:>24.2f}" for w, k in cols)
    )
