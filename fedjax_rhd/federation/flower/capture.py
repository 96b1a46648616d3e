"""What leaves a node, recorded: a ClientApp mod that describes every reply, and the checks on it.

Issue 16 asks for proof that no patient row leaves a node. Every reply a node sends passes
through :func:`capture_mod` (installed on the ClientApp). With ``FEDJAX_RHD_CAPTURE_DIR`` set it
appends one JSON line per reply to ``<dir>/<pid>.jsonl`` (mods run in Ray workers and in
per-message ``flwr-clientapp`` processes, so files, not memory): the message type, the metadata
fields and their types, an error's code and reason, and for every record entry its shape and
dtype (arrays) or its value (config and metric entries: scalars, strings, short lists). Unset, the
mod costs one environment lookup and changes nothing.

:func:`array_shapes` and :func:`leaked_strings` are the checks ``tests/federation/flower/
test_capture.py`` runs on captures of whole runs: array shapes must not depend on how many
patients a node holds (two cohorts of different sizes give the same shapes), and no string
crossing the wire may hold a patient identifier or a date. ``docs/privacy.md`` lists the
message types. Imports no JAX (the ClientApp module's rule).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict

CAPTURE_ENV = "FEDJAX_RHD_CAPTURE_DIR"
# An ISO-like calendar date (2024-03-01, 2024/03/01) or a time of day: neither may cross.
_DATE = re.compile(r"\b(19|20)\d\d[-/](0[1-9]|1[0-2])[-/](0[1-9]|[12]\d|3[01])\b|\b\d\d:\d\d:\d\d\b")
_MAX_STRING = 400
# Flower 1.42's Metadata: ids (run, message, reply-to, group, source/destination node and task), the
# message type, creation and delivery timestamps and the time-to-live. docs/privacy.md says why each is
# acceptable: none is derived from a patient row.
METADATA_FIELDS = (
    "run_id", "message_id", "src_node_id", "dst_node_id", "src_task_id", "dst_task_id",
    "reply_to_message_id", "group_id", "message_type", "created_at", "delivered_at", "ttl",
)  # fmt: skip


def _value(value: Any) -> Any:
    if isinstance(value, (bool, int, float)) or value is None:
        return value
    if isinstance(value, str):
        return value[:_MAX_STRING]
    if isinstance(value, bytes):
        return {"bytes": len(value)}
    if isinstance(value, (list, tuple)):
        return {"list": len(value), "items": [_value(v) for v in list(value)[:64]]}
    return {"type": type(value).__name__}


def describe(records: RecordDict) -> list[dict[str, Any]]:
    """Every record entry of a message: arrays by shape and dtype, config and metric entries by value."""
    out = []
    for name, record in records.items():
        if isinstance(record, ArrayRecord):
            for key, array in record.items():
                out.append(
                    {"record": name, "key": key, "shape": list(array.shape), "dtype": str(array.dtype)}
                )
        elif isinstance(record, (ConfigRecord, MetricRecord)):
            for key, value in record.items():
                out.append({"record": name, "key": key, "value": _value(value)})
        else:
            out.append({"record": name, "type": type(record).__name__})
    return out


def describe_reply(reply: Message, message_type: str) -> dict[str, Any]:
    """One capture line: type, metadata field types, error, and the content's entries."""
    meta = reply.metadata
    fields = {k: type(getattr(meta, k)).__name__ for k in METADATA_FIELDS}
    line: dict[str, Any] = {"message_type": message_type, "metadata": fields, "pid": os.getpid()}
    if reply.has_error():
        line["error"] = {"code": int(reply.error.code), "reason": str(reply.error.reason)[:_MAX_STRING]}
    if reply.has_content():
        line["content"] = describe(reply.content)
    return line


def capture_mod(msg: Message, context: Context, call_next: Callable[[Message, Context], Message]) -> Message:
    """A Flower mod: the reply unchanged, described in ``$FEDJAX_RHD_CAPTURE_DIR`` when that is set."""
    folder = os.environ.get(CAPTURE_ENV)
    if not folder:
        return call_next(msg, context)
    message_type = msg.metadata.message_type
    try:
        reply = call_next(msg, context)
    except Exception as err:  # Flower turns it into an error reply carrying str(err): record that text
        _write(folder, {"message_type": message_type, "pid": os.getpid(), "error": {"reason": str(err)}})
        raise
    _write(folder, describe_reply(reply, message_type))
    return reply


def _write(folder: str, line: dict[str, Any]) -> None:
    path = Path(folder) / f"{os.getpid()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line) + "\n")


def read_captures(folder: Path) -> list[dict[str, Any]]:
    """Every captured reply under ``folder`` (all processes)."""
    lines = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        lines += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return lines


def array_shapes(lines: Iterable[dict[str, Any]]) -> set[tuple[str, str, str, tuple[int, ...]]]:
    """``(message type, record, key, shape)`` of every array that crossed: compare across cohort sizes."""
    return {
        (line["message_type"], entry["record"], entry["key"], tuple(entry["shape"]))
        for line in lines
        for entry in line.get("content", [])
        if "shape" in entry
    }


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def leaked_strings(lines: Iterable[dict[str, Any]], identifiers: Iterable[str]) -> list[str]:
    """Strings that crossed holding a patient identifier or a date (empty when none did).

    Args:
        lines: captured replies.
        identifiers: every patient id of the federation's nodes.
    """
    ids = {str(i) for i in identifiers if str(i)}
    problems = []
    for line in lines:
        texts = list(_strings(line.get("content", []))) + list(_strings(line.get("error", {})))
        for text in texts:
            hit = next((i for i in ids if i in text), None)
            if hit is not None:
                problems.append(f"{line['message_type']}: patient id {hit!r} in {text[:80]!r}")
            elif _DATE.search(text):
                problems.append(f"{line['message_type']}: a date or time in {text[:80]!r}")
    return problems


def row_dimensions(lines: Iterable[dict[str, Any]], node_rows: Iterable[int]) -> list[str]:
    """Arrays with a dimension equal to a node's row count (a weaker check than comparing sizes)."""
    rows = {int(n) for n in node_rows if int(n) > 1}
    return [
        f"{line['message_type']} {entry['record']}/{entry['key']} shape {entry['shape']}"
        for line in lines
        for entry in line.get("content", [])
        if "shape" in entry and rows & set(entry["shape"])
    ]
