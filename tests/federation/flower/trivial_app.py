"""A trivial Flower app for the deployment tests: one ``query.hello`` round, result to a JSON file.

``test_processes`` copies this file into a Flower app dir (the FAB ships it and Flower puts the app
dir first on ``sys.path``, so the components are ``trivial_app:server_app`` and
``trivial_app:client_app``). Run config: ``result-path`` (where the ServerApp writes its JSON),
``num-nodes`` (how many nodes to wait for) and ``wait-s`` (how long to wait for them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

DATA_FILE = "hello.txt"  # what each node reads from its data-dir

server_app = ServerApp()
client_app = ClientApp()


@server_app.main()
def main(grid: Grid, context: Context) -> None:
    """Wait for the nodes, say hello to each, write their answers to ``result-path``."""
    want = int(context.run_config["num-nodes"])
    deadline = time.monotonic() + float(context.run_config["wait-s"])
    node_ids = list(grid.get_node_ids())  # 0 at start: nodes are attached after main starts
    while len(node_ids) < want:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {len(node_ids)} of {want} nodes showed up")
        time.sleep(0.2)
        node_ids = list(grid.get_node_ids())
    messages = [
        Message(RecordDict({"q": ConfigRecord({"hello": "world"})}), node_id, "query.hello")
        for node_id in node_ids
    ]
    replies = []
    for reply in grid.send_and_receive(messages, timeout=120):
        if reply.has_error():
            raise RuntimeError(f"node {reply.metadata.src_node_id} failed: {reply.error.reason}")
        answer = reply.content["a"]
        replies.append(
            {
                "node-id": reply.metadata.src_node_id,
                "partition-id": int(answer["partition-id"]),
                "data": str(answer["data"]),
                "echo": str(answer["echo"]),
            }
        )
    result = {"nodes": sorted(replies, key=lambda r: r["partition-id"])}
    Path(str(context.run_config["result-path"])).write_text(json.dumps(result), encoding="utf-8")


@client_app.query("hello")
def hello(message: Message, context: Context) -> Message:
    """Answer with this node's partition id and the content of its data file."""
    data = (Path(str(context.node_config["data-dir"])) / DATA_FILE).read_text(encoding="utf-8")
    answer = ConfigRecord(
        {
            "partition-id": int(context.node_config["partition-id"]),
            "data": data,
            "echo": str(message.content["q"]["hello"]),
        }
    )
    return Message(RecordDict({"a": answer}), reply_to=message)
