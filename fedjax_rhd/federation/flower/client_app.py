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

import logging
from pathlib import Path

from flwr.app import Context, Message
from flwr.clientapp import ClientApp

from fedjax_rhd.federation.flower import node_worker, wire
from fedjax_rhd.federation.flower.capture import capture_mod

_log = logging.getLogger(__name__)


class NodeConfigError(ValueError):
    """The node was started without what it needs (its message holds no data value: it may cross)."""


class NodeFailure(RuntimeError):
    """What the manager learns of a failure on a node: the message type and the exception's class.

    Flower sends an exception's text in its error reply, and an exception raised while reading or
    scoring rows may quote a value; the node's own log keeps the full text and traceback.
    """


def _folder(msg: Message, context: Context) -> Path:
    node_config = context.node_config
    if wire.DATA_DIR_KEY in node_config:
        return Path(str(node_config[wire.DATA_DIR_KEY]))
    config = msg.content["config"] if "config" in msg.content else {}
    if wire.NODES_ROOT_KEY not in config or "partition-id" not in node_config:
        raise NodeConfigError(
            f"this node has no {wire.DATA_DIR_KEY!r} in its node config and the message names no "
            f"{wire.NODES_ROOT_KEY!r}: start the SuperNode with "
            f"--node-config '{wire.DATA_DIR_KEY}=\"...\"'"
        )
    return Path(str(config[wire.NODES_ROOT_KEY])) / str(int(node_config["partition-id"]))


def _answer(msg: Message, context: Context) -> Message:
    """The reply to ``msg``: from the node's worker if it runs one, else computed here.

    A failure leaves the node as :class:`NodeFailure` (message type and exception class only);
    the full exception goes to the node's log.
    """
    folder = _folder(msg, context)
    message_type = msg.metadata.message_type
    try:
        content = wire.content_of(msg.content)
        reply = node_worker.call(folder, message_type, content)
        if reply is None:
            from fedjax_rhd.federation.flower import node_handlers  # JAX and the models, only when needed

            reply = node_handlers.handle(message_type, folder, content)
        return Message(wire.records_of(reply), reply_to=msg)
    except Exception as err:
        _log.exception("%s failed on this node (%s)", message_type, folder)
        raise NodeFailure(
            f"{message_type} failed on this node ({type(err).__name__}); the node's log has the details"
        ) from None


# capture_mod records what leaves the node when $FEDJAX_RHD_CAPTURE_DIR is set (privacy tests).
app = ClientApp(mods=[capture_mod])

# Every message type has the same handler: the work and its docs are in node_handlers.HANDLERS.
for _message_type in wire.MESSAGE_TYPES:
    _category, _, _action = _message_type.partition(".")
    _register = getattr(app, _category)  # app.train, app.evaluate or app.query
    (_register(_action) if _action else _register())(_answer)
