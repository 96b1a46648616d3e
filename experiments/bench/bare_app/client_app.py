"""The bare app's ClientApp: a jitted local update of one parameter vector, nothing else.

Node ``i`` pulls the vector towards the constant ``i`` with ``local-epochs``
gradient steps on a quadratic loss; it claims ``100 * (i + 1)`` examples, so
the ServerApp's weighted mean is easy to check. Like any plain JAX ClientApp it
imports jax at module level and jits at first use (no persistent compilation
cache: a bare app does not set one).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flwr.app import Array, ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

LEARNING_RATE = 0.1


def _loss(params: jax.Array, target: jax.Array) -> jax.Array:
    return 0.5 * jnp.sum((params - target) ** 2)


@functools.partial(jax.jit, static_argnames=("steps",))
def local_update(params: jax.Array, target: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
    """``steps`` gradient steps on the quadratic loss; returns the new vector and its loss."""

    def step(p: jax.Array, _: None) -> tuple[jax.Array, None]:
        return p - LEARNING_RATE * jax.grad(_loss)(p, target), None

    params, _ = jax.lax.scan(step, params, None, length=steps)
    return params, _loss(params, target)


eval_loss = jax.jit(_loss)


def _partition(context: Context) -> int:
    return int(context.node_config["partition-id"])


def _vector(msg: Message) -> np.ndarray:
    return msg.content["arrays"]["params"].numpy()


app = ClientApp()


@app.train()
def train(msg: Message, context: Context) -> Message:
    """``local-epochs`` jitted steps from the vector the server sent."""
    k = _partition(context)
    steps = int(msg.content["config"]["local-epochs"])
    params, loss = local_update(jnp.asarray(_vector(msg)), jnp.float32(k), steps)
    arrays = ArrayRecord({"params": Array(np.asarray(params))})
    metrics = MetricRecord({"num-examples": 100 * (k + 1), "train-loss": float(loss)})
    return Message(RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The loss of the vector the server sent (one float)."""
    loss = eval_loss(jnp.asarray(_vector(msg)), jnp.float32(_partition(context)))
    metrics = MetricRecord({"num-examples": 100 * (_partition(context) + 1), "loss": float(loss)})
    return Message(RecordDict({"metrics": metrics}), reply_to=msg)
