"""Seconds JAX spent compiling (tracing, lowering, XLA) while a block ran: a search's compile share.

JAX reports each trace, lowering and backend compilation as a time span
(``jax.monitoring``'s ``/jax/core/compile/*`` events). A jit traced inside another jit reports a
span nested in its caller's, so the seconds are the length of the spans' union, never their sum.
A persistent-cache hit still reports its trace and lowering, and a short backend span.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

COMPILE_EVENTS = frozenset(
    {
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    }
)
_SPANS: list[tuple[float, float]] = []
_LISTENING: list[bool] = []


def _on_span(event: str, start: float, end: float, **_: object) -> None:
    if event in COMPILE_EVENTS:
        _SPANS.append((start, end))


def covered_seconds(spans: Sequence[tuple[float, float]]) -> float:
    """Length of the union of ``[start, end]`` intervals (nested and overlapping spans count once)."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return total


@contextlib.contextmanager
def compile_seconds() -> Iterator[list[float]]:
    """``with compile_seconds() as out:`` ... then ``out[0]`` holds the block's compile seconds."""
    import jax.monitoring

    if not _LISTENING:  # once per process: listeners cannot be listed by callback identity cheaply
        jax.monitoring.register_event_time_span_listener(_on_span)
        _LISTENING.append(True)
    first = len(_SPANS)
    out: list[float] = []
    try:
        yield out
    finally:
        out.append(covered_seconds(_SPANS[first:]))
        del _SPANS[first:]
