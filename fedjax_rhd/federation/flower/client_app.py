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


@app.query("hello")
def hello(msg: Message, context: Context) -> Message:
    """Name, partition and row counts of this node (the manager maps Flower's node ids with it)."""
    return _answer(msg, context)


@app.query("prepare_stats")
def prepare_stats(msg: Message, context: Context) -> Message:
    """Moments and histograms of this node's encoded training rows (federated preprocessing)."""
    return _answer(msg, context)


@app.query("prepare")
def prepare(msg: Message, context: Context) -> Message:
    """Pack this node's rows with the federation's preprocessing (centre, scale, fill) and padding."""
    return _answer(msg, context)


@app.query("reduce_sums")
def reduce_sums(msg: Message, context: Context) -> Message:
    """Round 1 of a feature group's federated PCA: per column, count and sum of its training values."""
    return _answer(msg, context)


@app.query("reduce_scatter")
def reduce_scatter(msg: Message, context: Context) -> Message:
    """Round 2: the group's scatter matrix (d_g x d_g) of its training rows around the global mean."""
    return _answer(msg, context)


@app.query("reduce_apply")
def reduce_apply(msg: Message, context: Context) -> Message:
    """Project every part's raw group values on the fitted axes: the node's own component columns."""
    return _answer(msg, context)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """One round of local training: the strategy's ``client_update`` on this node's rows."""
    return _answer(msg, context)


@app.train("finetune")
def finetune(msg: Message, context: Context) -> Message:
    """Fine-tune the final global model on this node's training rows (no proximal term)."""
    return _answer(msg, context)


@app.evaluate("val_loss")
def val_loss(msg: Message, context: Context) -> Message:
    """This node's loss (no dropout) on its own validation rows: one float."""
    return _answer(msg, context)


@app.query("statistic")
def statistic(msg: Message, context: Context) -> Message:
    """A named statistic of this node's rows (``node_tasks.NODE_STATISTICS``): sums and counts only."""
    return _answer(msg, context)
