"""Nodes grouped by size so a vmapped round pads each node only to its bucket, not to the largest node.

Stacking every node's rows to the largest node's size made padding most of the
work of a round: on the five-node MDS split only 43% of the stacked rows were
patients (``experiments/bench/round.py``). Here each node's row count maps to a
*size class* (:func:`size_class`: a multiple of 64 up to 2,048 rows, then 16
classes per doubling, so padding stays under 64 rows or 6.25%), nodes of the
same class share one vmapped bucket, and a round is one compiled program with a
vmapped update per bucket.

The class depends only on the node's own row count, so a Flower node pads
exactly as its simulator bucket does. When a federation has more distinct
classes than ``max_buckets`` (hundreds of nodes of scattered sizes), adjacent
classes are merged where merging adds the fewest padding rows, which bounds the
program's size (and compile time) at the cost of some padding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from fedjax_rhd.typing import NodeData

ROW_MULTIPLE = 64  # small classes: multiples of this many rows
FINE_LIMIT = 2048  # above this, classes grow geometrically
CLASSES_PER_DOUBLING = 16  # above FINE_LIMIT: padding under 1/16 of the rows
MAX_BUCKETS = 16  # default bound on distinct padded sizes in one round


def size_class(n: int) -> int:
    """Rows a node with ``n`` rows is padded to (at least ``ROW_MULTIPLE``).

    >>> [size_class(n) for n in (1, 64, 65, 1434, 2048, 2049, 5000)]
    [64, 64, 128, 1472, 2048, 2176, 5120]
    """
    if n < 0:
        raise ValueError(f"a node cannot have {n} rows")
    if n <= FINE_LIMIT:
        return max(ROW_MULTIPLE, -(-n // ROW_MULTIPLE) * ROW_MULTIPLE)
    # in [2^j, 2^(j+1)) the step is 2^j / CLASSES_PER_DOUBLING (a power of two)
    octave = (n - 1).bit_length() - 1
    step = 1 << (octave - (CLASSES_PER_DOUBLING.bit_length() - 1))
    return -(-n // step) * step


class BucketPlan(NamedTuple):
    """Which nodes share a padded size.

    Attributes:
        nodes: per bucket, the node indices in it (ascending), largest bucket size first.
        pads: per bucket, the rows every node in it is padded to.
    """

    nodes: tuple[tuple[int, ...], ...]
    pads: tuple[int, ...]

    def pad_of(self, node: int) -> int:
        """Rows node ``node`` is padded to."""
        for members, pad in zip(self.nodes, self.pads, strict=True):
            if node in members:
                return pad
        raise KeyError(f"node {node} is in no bucket")

    def padded_rows(self) -> int:
        """Total rows of the bucketed stack (patients plus padding)."""
        return sum(len(m) * p for m, p in zip(self.nodes, self.pads, strict=True))


def plan_buckets(rows: Sequence[int], max_buckets: int = MAX_BUCKETS) -> BucketPlan:
    """Group nodes by :func:`size_class` of their row counts, merging classes past ``max_buckets``.

    Merging is greedy and deterministic: while there are too many buckets, the
    two adjacent (by size) buckets whose merge adds the fewest padding rows are
    merged into the larger one's size.

    Args:
        rows: each node's number of real rows.
        max_buckets: the most distinct padded sizes (>= 1).

    Returns:
        The plan; every node is in exactly one bucket and padded to at least its rows.
    """
    if max_buckets < 1:
        raise ValueError(f"max_buckets must be >= 1, got {max_buckets}")
    classes = [size_class(int(n)) for n in rows]
    buckets: dict[int, list[int]] = {}
    for node, pad in enumerate(classes):
        buckets.setdefault(pad, []).append(node)
    sizes = sorted(buckets, reverse=True)
    members = [buckets[s] for s in sizes]
    while len(sizes) > max_buckets:
        # merging bucket i+1 (smaller) into bucket i pads its nodes up to sizes[i]
        cost = [len(members[i + 1]) * (sizes[i] - sizes[i + 1]) for i in range(len(sizes) - 1)]
        i = int(np.argmin(cost))
        members[i] = sorted(members[i] + members.pop(i + 1))
        sizes.pop(i + 1)
    return BucketPlan(tuple(tuple(m) for m in members), tuple(sizes))


class NodeBuckets(NamedTuple):
    """Training rows of every node, stacked per bucket (a pytree the jitted round takes).

    Attributes:
        parts: per bucket, ``NodeData`` stacked over its nodes [K_b, pad_b, ...].
        nodes: per bucket, i32[K_b] the node indices (for keys and personalised parameters).
        order: i32[K] position of node k in the buckets' concatenation (results back in node order).
    """

    parts: tuple[NodeData, ...]
    nodes: tuple[np.ndarray, ...]
    order: np.ndarray


def bucket_nodes(stacked: NodeData, rows: Sequence[int], plan: BucketPlan) -> NodeBuckets:
    """Cut a stack padded to the largest node into the plan's buckets.

    Rows are sorted with padding last and a padding row's risk-set end points at
    itself, so keeping the first ``pad`` rows of a node keeps every real row and
    its risk set unchanged.

    Args:
        stacked: [K, n_max, ...] every node padded to the same size.
        rows: each node's number of real rows.
        plan: from :func:`plan_buckets` over the same ``rows``.
    """
    nodes = [NodeData(*(np.asarray(leaf[k])[: rows[k]] for leaf in stacked)) for k in range(len(rows))]
    return stack_buckets(nodes, plan)


def stack_buckets(nodes: Sequence[NodeData], plan: BucketPlan) -> NodeBuckets:
    """Pad each node's rows (sorted, from ``make_node_data``) to its bucket's size and stack per bucket.

    Memory is the bucketed rows only (under 6.25% or 64 rows of padding per
    node), never nodes x the largest node: what lets hundreds of nodes and a
    million patients share one round.

    Args:
        nodes: each node's ``NodeData`` (padded or not: rows past its weight are dropped first).
        plan: from :func:`plan_buckets` over the nodes' real row counts.
    """
    parts, members_arrays = [], []
    for members, pad in zip(plan.nodes, plan.pads, strict=True):
        padded = [_pad_node(nodes[k], pad) for k in members]
        parts.append(NodeData(*(np.stack(leaves) for leaves in zip(*padded, strict=True))))
        members_arrays.append(np.asarray(members, dtype=np.int32))
    flat = np.concatenate(members_arrays)
    return NodeBuckets(tuple(parts), tuple(members_arrays), np.argsort(flat, kind="stable").astype(np.int32))


def _pad_node(node: NodeData, pad: int) -> NodeData:
    """One node's real rows padded to ``pad`` (padding as ``make_node_data`` writes it)."""
    n = int(np.count_nonzero(np.asarray(node.weight)))
    if n > pad:
        raise ValueError(f"a bucket of {pad} rows cannot hold a node with {n} rows")
    extra = pad - n

    def grow(leaf: np.ndarray) -> np.ndarray:
        leaf = np.asarray(leaf)[:n]
        return np.pad(leaf, [(0, extra)] + [(0, 0)] * (leaf.ndim - 1))

    padded = NodeData(*(grow(leaf) for leaf in node))
    # a padding row's risk set is itself (it has weight 0, so it never counts)
    ends = np.concatenate([np.asarray(node.risk_set_end)[:n], np.arange(n, pad)]).astype(np.int32)
    return padded._replace(risk_set_end=ends)
