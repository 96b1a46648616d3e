"""Continuous hyperparameters as traced inputs of the jitted functions: one compilation per shape.

The jitted functions over an ``AlgorithmSpec`` (the simulator's round, evaluation, a Flower
node's update) used to take the whole spec as a static argument, so every distinct learning
rate, L2 weight or dropout rate was a new compiled program: a 50-trial search spent most of its
time compiling. :func:`spec_jit` splits the spec before the call into

* a **skeleton**: the spec with the continuous knobs set to fixed placeholders. It is hashable
  and is the static argument, so it keys the compilation cache; two specs differing only in
  those knobs share one skeleton, hence one compiled program;
* **hyperparameters**: a small dict of 0-d arrays computed on the host, passed as a traced
  argument.

Inside the trace, :func:`bind` puts the traced values back into the spec's fields, so the
model and client factories read ``config.l2`` or ``client.learning_rate`` as before, now as
arrays. Each value is the same f32 the old program embedded as a constant (a Python float meets
f32 arrays as ``f32(value)``; here the host rounds it the same way), and the dropout rate travels
as the keep threshold and scale the host used to compute (``models/dropout.py``). With the
learning rate, step count, L2 and β traced, a run is bit-for-bit the run it was with them compiled in. A
traced dropout scale agrees to float32 rounding only (about 1e-7 relative on the losses, the same
C-indices): XLA simplified a compiled-in scale together with its neighbouring constants. A
program is the same whichever trial compiled it, so runs stay reproducible.

What is lifted: the client learning rate and local step count (``ClientConfig.steps``'s field:
``local_epochs``, or ``local_steps`` with minibatches; a traced count runs the steps as a loop
whose bound is an input, ``strategies/client.py``), except under SCAFFOLD, whose control update
divides by ``steps × lr`` computed on the host in float64; and each model's ``ModelEntry.traced``
fields (DeepSurv: dropout, l2; linear Cox: l2; SAVAE: dropout, beta). A dropout rate of 0 stays
static: it removes the masks from the program, a different program. Everything that sets shapes
(widths, depth, latent size, batch size) or control flow (optimiser names, FedProx's μ being
set, the activation) stays in the skeleton: a new value compiles once, and is then reused.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np

from fedjax_rhd import executables
from fedjax_rhd.models import MODELS
from fedjax_rhd.models.dropout import TracedRate, traced_rate

# Placeholders the skeleton holds instead of the lifted values: valid for every config's checks
# (learning rate > 0, l2 >= 0, beta >= 0, 0 < dropout < 1), never computed with.
_PLACEHOLDER = {"learning_rate": 1.0, "l2": 1.0, "beta": 1.0, "dropout": 0.5}  # and 1 local step
# SCAFFOLD divides by steps × lr, a product the host forms in float64 (strategies/scaffold.py):
# traced, it would be formed in f32, a different number.
_STATIC_CLIENT = ("scaffold",)
_BOUND = "_traced_bound"  # set on a spec whose fields hold tracers (inside a trace only)

HyperParams = dict[str, Any]
"""``{"client.learning_rate": f32[], "model.l2": f32[], "model.dropout": TracedRate, ...}``."""


def _unchecked_replace(obj: Any, **changes: Any) -> Any:
    """A copy of a frozen dataclass with ``changes``, without ``__post_init__``'s checks.

    The checks compare numbers (``l2 >= 0``), which a tracer cannot answer; the host values
    were checked when the spec was built.
    """
    new = copy.copy(obj)
    for name, value in changes.items():
        object.__setattr__(new, name, value)
    return new


def unchecked_replace(obj: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` for a config that may hold traced values (inside a bound trace)."""
    if is_bound_value(obj):
        return _unchecked_replace(obj, **changes)
    return dataclasses.replace(obj, **changes)


def is_bound_value(obj: Any) -> bool:
    """Whether any field of dataclass ``obj`` holds a traced value (a tracer or ``TracedRate``)."""
    return any(
        isinstance(getattr(obj, f.name), jax.core.Tracer | TracedRate) for f in dataclasses.fields(obj)
    )


def is_bound(spec: Any) -> bool:
    """Whether ``spec`` came from :func:`bind` (its knobs are traced values)."""
    return bool(getattr(spec, _BOUND, False))


def model_knobs(spec: Any) -> tuple[str, ...]:
    """The model config's fields lifted to traced values (a zero dropout rate stays static)."""
    fields = MODELS[spec.model_name].traced
    return tuple(f for f in fields if not (f == "dropout" and getattr(spec.model_config, f) == 0))


def lift(spec: Any) -> tuple[Any, HyperParams]:
    """Split ``spec`` into its hashable skeleton (the jit key) and its traced hyperparameters.

    Args:
        spec: an ``AlgorithmSpec`` with host (Python) values.

    Returns:
        ``(skeleton, hyperparameters)``; ``bind(skeleton, hyperparameters)`` inside a trace
        computes what ``spec`` computed.
    """
    hp: HyperParams = {}
    client = spec.client
    if spec.algorithm not in _STATIC_CLIENT:
        hp["client.learning_rate"] = np.float32(client.learning_rate)
        # the field ClientConfig.steps reads: minibatch steps, else full-batch epochs
        steps_field = (
            "local_steps" if client.batch_size is not None and client.local_steps else "local_epochs"
        )
        hp[f"client.{steps_field}"] = np.int32(getattr(client, steps_field))
        client = dataclasses.replace(client, learning_rate=_PLACEHOLDER["learning_rate"], **{steps_field: 1})
    knobs = model_knobs(spec)
    placeholders = {}
    for name in knobs:
        value = getattr(spec.model_config, name)
        hp[f"model.{name}"] = traced_rate(value) if name == "dropout" else np.float32(value)
        placeholders[name] = _PLACEHOLDER[name]
    model_config = spec.model_config
    if placeholders:
        model_config = dataclasses.replace(model_config, **placeholders)
    return dataclasses.replace(spec, client=client, model_config=model_config), hp


@functools.lru_cache(maxsize=256)
def _lifted_on_device(spec: Any) -> tuple[Any, HyperParams]:
    """:func:`lift` once per spec, its hyperparameters already on the device.

    A round would otherwise copy five host scalars in on every call; a sweep's specs are few.
    """
    skeleton, hp = lift(spec)
    return skeleton, jax.device_put(hp)


def bind(skeleton: Any, hp: HyperParams) -> Any:
    """The skeleton with its lifted fields set to the traced ``hp`` values (no checks, not hashable)."""
    client_changes = {k.split(".", 1)[1]: v for k, v in hp.items() if k.startswith("client.")}
    model_changes = {k.split(".", 1)[1]: v for k, v in hp.items() if k.startswith("model.")}
    spec = _unchecked_replace(
        skeleton,
        client=_unchecked_replace(skeleton.client, **client_changes),
        model_config=_unchecked_replace(skeleton.model_config, **model_changes),
    )
    object.__setattr__(spec, _BOUND, True)
    return spec


F = TypeVar("F", bound=Callable[..., Any])


def spec_jit(*, static_argnames: tuple[str, ...] = ()) -> Callable[[F], F]:
    """``jax.jit`` for a function whose first argument is an ``AlgorithmSpec``, keyed on its skeleton.

    The spec's continuous knobs are traced (see the module docstring); ``static_argnames`` names
    the function's other static arguments. The wrapped function keeps ``__wrapped__`` (the plain
    function, to call inside another trace) and ``jitted`` (the ``jax.jit`` object). Called with
    an already bound spec (inside another spec-jitted trace), it runs inline.
    """

    def decorate(fn: F) -> F:
        signature = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"
        source_file = inspect.getsourcefile(fn) or ""

        @functools.partial(jax.jit, static_argnames=("skeleton", *static_argnames))
        def jitted(skeleton: Any, hp: HyperParams, **arguments: Any) -> Any:
            return fn(bind(skeleton, hp), **arguments)

        @functools.wraps(fn)
        def call(spec: Any, *args: Any, **kwargs: Any) -> Any:
            if is_bound(spec):
                return fn(spec, *args, **kwargs)
            # by name, so static_argnames apply whether the caller passed them by position or name
            arguments = signature.bind(spec, *args, **kwargs).arguments
            arguments.pop(next(iter(signature.parameters)))
            skeleton, hp = _lifted_on_device(spec)
            static = {key: arguments.pop(key) for key in static_argnames if key in arguments}
            return executables.call(
                name, jitted, {"skeleton": skeleton, **static}, {"hp": hp, **arguments}, source_file
            )

        def clear_cache() -> None:
            jitted.clear_cache()
            executables.forget(jitted)

        call.jitted = jitted  # type: ignore[attr-defined]
        call.clear_cache = clear_cache  # type: ignore[attr-defined]
        return call  # type: ignore[return-value]

    return decorate
