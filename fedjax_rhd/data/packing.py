"""One node's rows as a ``NodeData``: sorted by descending time, tie groups marked, padded.

Sorting happens once here, in numpy, when the data is built, so no training step
ever sorts (the Cox loss in :mod:`fedjax_rhd.models.cox` relies on that order).
"""

from __future__ import annotations

import numpy as np

from fedjax_rhd.typing import NodeData


def make_node_data(
    x: np.ndarray,
    observed: np.ndarray,
    time: np.ndarray,
    event: np.ndarray,
    *,
    pad_to: int | None = None,
) -> NodeData:
    """Sort one node's rows by descending time, mark tie groups and pad.

    The sort is stable, so rows with tied times keep their incoming order (the
    data layer passes them in ``patient_id`` order, which makes the layout
    deterministic). The Breslow loss itself does not depend on that order.

    Args:
        x: f[n, d] model input (standardised, imputed).
        observed: bool[n, d] True where ``x`` was measured.
        time: f[n] follow-up time.
        event: [n] 1/True = event observed, 0/False = censored.
        pad_to: total number of rows after padding; ``None`` means no padding.

    Returns:
        NodeData with float32 ``x``/``time``/``event``/``weight``, bool
        ``observed`` and int32 ``risk_set_end``; padding rows have ``x = 0``,
        ``observed = False``, ``time = 0``, ``event = 0``, ``weight = 0`` and
        ``risk_set_end`` pointing at themselves.

    Raises:
        ValueError: on inconsistent shapes, non-finite times, or ``pad_to < n``.
    """
    x = np.asarray(x, dtype=np.float32)
    observed = np.asarray(observed, dtype=bool)
    time = np.asarray(time, dtype=np.float32)
    event = np.asarray(event, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"x must be 2-D [n, d], got shape {x.shape}")
    n, d = x.shape
    if observed.shape != (n, d):
        raise ValueError(f"observed must have shape {(n, d)}, got {observed.shape}")
    if time.shape != (n,) or event.shape != (n,):
        raise ValueError(f"time and event must have shape {(n,)}, got {time.shape} and {event.shape}")
    if not np.all(np.isfinite(time)):
        raise ValueError("time must be finite")
    total = n if pad_to is None else int(pad_to)
    if total < n:
        raise ValueError(f"pad_to={pad_to} is smaller than the number of rows ({n})")

    # Negating keeps a stable ascending sort stable, so ties keep input order.
    order = np.argsort(-time, kind="stable")
    sorted_time = time[order]
    # ``-sorted_time`` is ascending; the right insertion point of each value
    # minus one is the last row with the same time, i.e. the tie group's end.
    ends = np.searchsorted(-sorted_time, -sorted_time, side="right") - 1

    pad = total - n
    return NodeData(
        x=np.concatenate([x[order], np.zeros((pad, d), np.float32)]),
        observed=np.concatenate([observed[order], np.zeros((pad, d), bool)]),
        time=np.concatenate([sorted_time, np.zeros(pad, np.float32)]),
        event=np.concatenate([event[order], np.zeros(pad, np.float32)]),
        weight=np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)]),
        risk_set_end=np.concatenate([ends, np.arange(n, total)]).astype(np.int32),
    )
