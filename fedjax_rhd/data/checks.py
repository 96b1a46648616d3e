"""Refuse data a run cannot use, before any statistic: no rows, no events, an empty node or part.

A 0-row dataset (every record quarantined and built with ``--allow-empty``), a centre whose
patients all fell into the test part, or a split too fine for a small cohort used to reach
preprocessing and fail there (an ``IndexError`` in ``merge_all_moments``, a C-index of no
comparable pair). Each check here raises :class:`UnusableData` naming the dataset, the node or
part, and the counts, so the command line can print one message and exit 1.

A node needs events in its training part: the Cox partial likelihood of a part without an
event has no term (Cox 1972), so such a node sends a zero update that FedAvg still weighs by
its patients; the test part needs events for Harrell's C to have a comparable pair.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl


class UnusableData(ValueError):
    """A dataset, node or split part without the rows or events a run needs (names which, counts)."""


def _events(df: pl.DataFrame) -> int:
    return int(df["event"].sum()) if df.height else 0


def require_rows(dataset: str, df: pl.DataFrame, *, what: str = "") -> None:
    """Refuse a table without rows or without a single event.

    Args:
        dataset: the dataset's name, for the message.
        df: the table (``event`` column).
        what: which part of it (``""`` the whole dataset, e.g. ``"test part"``).

    Raises:
        UnusableData: no rows, or no event among them.
    """
    where = f"dataset {dataset!r}" + (f": the {what}" if what else "")
    if df.height == 0:
        hint = "" if what else " (was every record quarantined? see the dataset's quality report)"
        raise UnusableData(f"{where} has no rows; nothing to train or test on{hint}")
    if _events(df) == 0:
        raise UnusableData(f"{where} has {df.height} rows and no event; a survival model needs events")


def check_nodes(
    dataset: str,
    split: str,
    names: Sequence[str],
    train: Sequence[pl.DataFrame],
    val: Sequence[pl.DataFrame],
) -> None:
    """Refuse a split that leaves a node's training part without rows or without events.

    Args:
        dataset: the dataset's name.
        split: the split's name (``split.name``).
        names: node names, in node order.
        train: each node's training part.
        val: each node's validation part (counted in the message).

    Raises:
        UnusableData: the first such node, with its rows and events per part.
    """
    if not names:
        raise UnusableData(f"dataset {dataset!r}, split {split!r}: the split leaves no training node")
    for name, t, v in zip(names, train, val, strict=True):
        if t.height == 0 or _events(t) == 0:
            raise UnusableData(
                f"dataset {dataset!r}, split {split!r}: node {name!r} has {t.height} training rows with "
                f"{_events(t)} events ({v.height} validation rows with {_events(v)} events); every node "
                "needs training rows with events (a smaller split.val_fraction, fewer nodes, or a "
                "larger cohort)"
            )
