"""Optional case-mix shift per node: a referral centre sees higher-risk patients.

The study's splits were random, so the default is no shift. A shift is declared
by node rank (1 = largest node, -1 = smallest, as scenarios are) with a strength
``s``: that node draws its rows without replacement with probability
proportional to ``exp(s · z)``, ``z`` the standardised true log-hazard
(``oracle_risk``, so only simulated cohorts can be shifted), by the
Efraimidis-Spirakis weighted-sampling keys ``u^(1/w)`` (Inf Process Lett
2006;97:181-5). Shifted nodes draw first, in rank order; the other nodes share
the remaining rows by the usual event-stratified random partition. Node sizes
are exactly those of the split's fractions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def case_mix_partition(
    event: np.ndarray,
    risk: np.ndarray,
    fractions: Sequence[float],
    shifts: Sequence[tuple[int, float]],
    rng: np.random.Generator,
    allocate: Callable[[int, Sequence[float]], np.ndarray],
    stratified: Callable[[np.ndarray, Sequence[float], np.random.Generator], np.ndarray],
) -> np.ndarray:
    """Node index per row with the declared nodes shifted towards higher (``s > 0``) risk.

    Args:
        event: i64[n] 0/1, rows in deterministic order.
        risk: f64[n] true log-hazard of the same rows.
        fractions: training share per node, largest first.
        shifts: ``((rank, strength), ...)``; rank 1 largest, -1 smallest; ranks
            beyond the number of nodes are ignored.
        rng: the node-partition stream.
        allocate: integer node sizes from ``n`` and fractions (largest remainder).
        stratified: the default event-stratified partition for unshifted nodes.

    Returns:
        i64[n] node index per row.

    Raises:
        ValueError: a rank of 0, a repeated node, or non-finite risks.
    """
    k_nodes = len(fractions)
    if not np.all(np.isfinite(risk)):
        raise ValueError("case_mix: oracle_risk has missing or non-finite values")
    by_node: dict[int, float] = {}
    for rank, strength in shifts:
        if rank == 0:
            raise ValueError("case_mix: node ranks start at 1 (largest) or -1 (smallest), got 0")
        index = rank - 1 if rank > 0 else k_nodes + rank
        if not 0 <= index < k_nodes:
            continue
        if index in by_node:
            raise ValueError(f"case_mix: node rank {rank} is shifted twice")
        by_node[index] = float(strength)
    n = len(event)
    counts = allocate(n, fractions)
    part = np.full(n, -1, dtype=np.int64)
    z = (risk - risk.mean()) / max(float(risk.std()), 1e-12)
    for index in sorted(by_node):
        free = np.flatnonzero(part < 0)
        weight = np.exp(by_node[index] * z[free])
        keys = np.log(rng.random(len(free))) / weight  # log of u^(1/w): larger is more likely kept
        chosen = free[np.argsort(-keys, kind="stable")[: counts[index]]]
        part[chosen] = index
    rest = [k for k in range(k_nodes) if k not in by_node]
    free = np.flatnonzero(part < 0)
    if rest:
        shares = np.asarray([counts[k] for k in rest], dtype=np.float64)
        sub = stratified(event[free], shares / shares.sum(), rng)
        part[free] = np.asarray(rest)[sub]
    return part
