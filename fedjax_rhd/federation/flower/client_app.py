"""The Flower ClientApp: one hospital's side of ``backend=flower``, light enough to start per message.

A deployment starts a new ``flwr-clientapp`` process for every message
(``shared/docs/flower_1.42_facts.md`` §3), so this module imports only Flower,
numpy and ``wire``. Each handler turns the message into plain ``wire.Content``
and has it answered where the node's rows and compiled functions already are:
by the node's warm worker (``node_worker``) when the node runs one, else by
``node_handlers`` in this process (Flower's simulation engine, whose Ray workers
keep that module's caches between messages, or a deployment without workers).
Both paths run the same functions, so the reply is the same.

Where a node's rows are: its ``--node-config data-dir="..."`` in a deployment;
in simulation ``<nodes-root>/<partition-id>`` (``nodes-root`` travels in the
message because ``run_simulation`` gives nodes no other config). ``app`` is a
plain module-level assignment, as Flower's component loader requires.
"""

from __future__ import annotations

from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedjax_rhd.federation.flower import node_worker, wire


def _folder(msg: Message, context: Context) -> Path:
    node_config = context.node_config
    if wire.DATA_DIR_KEY in node_config:
        return Path(str(node_config[wire.DATA_DIR_KEY]))
    config = msg.content["config"] if "config" in msg.content else {}
    if wire.NODES_ROOT_KEY not in config or "partition-id" not in node_config:
        raise ValueError(
            f"this node has no {wire.DATA_DIR_KEY!r} in its node config and the message names no "
            f"{wire.NODES_ROOT_KEY!r}: start the SuperNode with "
            f"--node-config '{wire.DATA_DIR_KEY}=\"...\"'"
        )
    return Path(str(config[wire.NODES_ROOT_KEY])) / str(int(node_config["partition-id"]))


def _answer(msg: Message, context: Context) -> Message:
    """The reply to ``msg``: from the node's worker if it runs one, else computed here."""
    folder = _folder(msg, context)
    content = wire.content_of(msg.content)
    reply = node_worker.call(folder, msg.metadata.message_type, content)
    if reply is None:
        from fedjax_rhd.federation.flower import node_handlers  # JAX and the models, only when needed

        reply = node_handlers.handle(msg.metadata.message_type, folder, content)
    return Message(wire.records_of(reply), reply_to=msg)


app = ClientApp()

# Every message type has the same handler: the work and its docs are in node_handlers.HANDLERS.
for _message_type in wire.MESSAGE_TYPES:
    _category, _, _action = _message_type.partition(".")
    _register = getattr(app, _category)  # app.train, app.evaluate or app.query
    (_register(_action) if _action else _register())(_answer)
