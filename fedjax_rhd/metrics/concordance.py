"""Discrimination metrics for survival models: Harrell's concordance index and bootstraps.

Harrell's C (Harrell, Lee & Mark 1996, "Multivariable prognostic models: issues in
developing models, evaluating assumptions and adequacy, and measuring and reducing
errors", Statistics in Medicine 15(4):361-87) is the fraction of comparable pairs of
patients whose predicted risks are ordered like their observed survival.

Conventions (identical to ``lifelines.utils.concordance_index(time, -risk, event)``):

* A HIGHER ``risk`` means a WORSE prognosis (shorter survival), as for a Cox
  model's linear predictor.
* A pair ``(i, j)`` is comparable when ``i`` has an event and either
  ``t_j > t_i`` (any status of ``j``) or ``t_j == t_i`` with ``j`` censored. Two
  events at the same time, and pairs of censored rows, are not comparable.
* A comparable pair is concordant when ``risk_i > risk_j``; tied risks count 0.5.

The pair counts are computed in O(n log n) time with vectorised numpy: every row
gets an "effective time" key ``(t, 1 - event)`` (a censored row at ``t`` outlives
the events at ``t``), rows are dense-ranked into groups ``g`` by descending key, so
that ``(i, j)`` is comparable exactly when ``i`` is an event and ``g_j < g_i``.
Counting, for every event row, the rows with smaller ``g`` and smaller risk rank
is a two-dimensional dominance count, done by a divide-and-conquer over the bits
of ``g``: a Python loop over ``ceil(log2(#groups))`` levels, each level a handful
of O(n) array operations (a stable partition computed with cumulative sums).
Three shortcuts give the same counts: when the (risk, group) grid is small (at most 8 cells
a row) the counts are cumulative sums over it, with no sort (a clinical category, a rounded
score); codes that fit 16 bits are ordered by stable radix sorts instead of comparison sorts;
and long arrays whose values repeat a lot (days, rounded scores) are dense-ranked through a hash
table and a sort of their distinct values only.

The bootstraps resample rows with replacement (Efron & Tibshirani 1993). Each resample is
a vector of multiplicities ``w`` and its pair counts are the quadratic forms
``w @ A @ w`` with the pair-indicator matrices ``A`` of the original rows. For moderate
``n`` ``A`` is a dense matrix and a whole batch of resamples is a single matrix product;
up to 500k rows :mod:`fedjax_rhd.metrics.weighted_pairs` evaluates the same quadratic forms
from one sort by time and one by risk, as block matrix products over a batch of resamples
(about 1,000 resamples of 100k rows in seconds, where scoring each expanded resample with
:func:`concordance_summary` took about 30 s); beyond that, where the block products' n**1.5
cost per resample loses, each expanded resample is scored. Every path gives the integer counts of the
expanded resamples, so all give the same numbers, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

__all__ = [
    "bootstrap_cindex",
    "bootstrap_cindices",
    "concordance_index",
    "concordance_summary",
    "paired_bootstrap_difference",
]

# Largest n for which the bootstraps build dense n x n pair matrices (two or three
# float64 matrices of n^2 entries: 32 MiB each at this size).
_DENSE_MAX_N = 2000
# Largest n for which the bootstraps use weighted_pairs' block products (whose cost per
# resample grows as n**1.5); above it each expanded resample is scored in O(n log n). Measured
# side by side on 2 CPU cores (experiments/bench/README.md, session 9): the block path 2.0x
# faster at 300k rows, 0.6x at 1M. Always below weighted_pairs.MAX_TOTAL_WEIGHT (2**24).
_BLOCKED_MAX_N = 500_000
# The pair counts use the dense (risk, time group) grid (_grid_pairs) when it has at most this many
# cells per row and at most _GRID_MAX_CELLS cells in all (four int64 grids of 32 MiB); else the
# sort-based path. The grid wins where a score has few levels (a clinical category, a rounded risk).
_GRID_ROWS_FACTOR = 8
# Codes (risk ranks, time groups) that fit 16 bits are ordered by radix sorts (_order_by).
_RADIX_MAX_CODES = 2**16
_GRID_MAX_CELLS = 2**22
# Dense ranks of values that repeat a lot (times in days, rounded or categorical scores) come from
# a hash table (pandas.factorize, O(n)) and a sort of the distinct values only, where a comparison sort
# of every row took 3-4x longer at 1M rows (experiments/bench/README.md, session 13). Chosen when the
# array has at least _HASH_RANK_MIN_N rows and a strided sample of _HASH_RANK_SAMPLE of them has at most
# _HASH_RANK_MAX_SHARE distinct values; nearly distinct values (a network's risks) keep the sort, where
# the hash table loses. The choice changes the time, never the ranks.
_HASH_RANK_MIN_N = 20_000
_HASH_RANK_SAMPLE = 65_536  # about d (1 - exp(-m / d)) distinct in a sample of m from d values
_HASH_RANK_MAX_SHARE = 0.5
# Indices drawn at once when resamples are drawn batch by batch (_drawn_weights).
_DRAW_ELEMENTS = 2**20
# Resamples per matrix product in the dense bootstrap path.
_BOOT_BATCH = 256


def _as_1d_numeric(name: str, values: Any) -> np.ndarray:
    """Converts ``values`` to a 1-D real numeric array and rejects NaNs."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-dimensional, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError(f"NaNs detected in {name}; drop or impute them first")
    return arr


def _validate(time: Any, event: Any, *risks: Any) -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
    """Validates survival inputs and returns (time, event as bool, risks)."""
    t = _as_1d_numeric("time", time)
    e = _as_1d_numeric("event", event)
    rs = [_as_1d_numeric("risk" if len(risks) == 1 else f"risk_{k}", r) for k, r in enumerate(risks)]
    lengths = {len(t), len(e), *(len(r) for r in rs)}
    if len(lengths) != 1:
        raise ValueError(
            "time, event and risk must have the same length, got "
            f"{len(t)}, {len(e)} and {', '.join(str(len(r)) for r in rs)}"
        )
    if e.dtype != bool:
        if not np.isin(e, (0, 1)).all():
            raise ValueError("event must contain only 0/1 (or False/True) values")
        e = e.astype(bool)
    return t, e, rs


def _dense_rank(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ranks (0 = smallest, ties share a rank) and the number of distinct values."""
    if _repeats_a_lot(values):
        return _hashed_ranks(values)  # no order: callers of this one do not need it
    ranks, n_distinct, _ = _dense_rank_sorted(values)
    return ranks, n_distinct


def _dense_rank_and_order(values: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """Dense ranks, the number of distinct values, and an order that sorts ``values`` (ties in any order).

    The order is kept so that a later sort by (rank, something) can start from it: an array sorted
    but for runs of ties is sorted by a stable (run-detecting) sort in about linear time.
    """
    if _repeats_a_lot(values):
        return _dense_rank_hashed(values)
    return _dense_rank_sorted(values)


def _repeats_a_lot(values: np.ndarray) -> bool:
    """Whether ``values`` is long and a strided sample of it has few distinct values (see _HASH_RANK_*)."""
    n = len(values)
    if n < _HASH_RANK_MIN_N or values.dtype == np.float16:  # pandas hashes no float16
        return False
    import pandas as pd  # only here: its import costs a run's start-up ~0.3 s

    sample = values[:: max(1, n // _HASH_RANK_SAMPLE)]
    return len(pd.unique(sample)) <= _HASH_RANK_MAX_SHARE * len(sample)


def _dense_rank_hashed(values: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`_dense_rank_and_order` through a hash table: codes per distinct value, then their ranks.

    ``pandas.factorize`` gives each row the code of its value in first-seen order (equal floats, -0.0
    and 0.0 included, share a code); sorting the distinct values maps codes to dense ranks, and the
    ranks' order comes from a stable radix sort when they fit 16 bits.
    """
    ranks, n_distinct = _hashed_ranks(values)
    if n_distinct <= _RADIX_MAX_CODES:
        order = np.argsort(ranks.astype(np.uint16), kind="stable")
    else:
        order = np.argsort(ranks)
    return ranks, n_distinct, order


def _hashed_ranks(values: np.ndarray) -> tuple[np.ndarray, int]:
    """Dense ranks and their count from ``pandas.factorize`` and a sort of the distinct values."""
    import pandas as pd

    codes, distinct = pd.factorize(values)
    rank_of_code = np.empty(len(distinct), np.int64)
    rank_of_code[np.argsort(distinct)] = np.arange(len(distinct))
    return rank_of_code[codes], len(distinct)


def _dense_rank_sorted(values: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """:func:`_dense_rank_and_order` by a comparison sort of every row."""
    n = len(values)
    order = np.argsort(values)
    if n == 0:
        return np.zeros(0, np.int64), 0, order
    ordered = values[order]
    new = np.empty(n, bool)
    new[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=new[1:])
    rank_in_order = np.cumsum(new, dtype=np.int64) - 1
    ranks = np.empty(n, np.int64)
    ranks[order] = rank_in_order
    return ranks, int(rank_in_order[-1]) + 1, order


def _time_groups(time: np.ndarray, event: np.ndarray) -> tuple[np.ndarray, int]:
    """Groups ``g`` by descending effective time ``(t, 1 - event)``; ``g = 0`` is the latest.

    Row ``j`` outlives event row ``i`` (the pair is comparable) exactly when ``g_j < g_i``.
    """
    t_rank, n_times = _dense_rank(time)
    key = 2 * t_rank + (~event).astype(np.int64)  # censored sorts after events at the same time
    present = np.bincount(key, minlength=2 * n_times) > 0
    k_rank = np.cumsum(present) - 1  # dense rank of each key value, O(n) without a second sort
    n_groups = int(k_rank[-1]) + 1 if len(key) else 0
    return (n_groups - 1) - k_rank[key], n_groups


def _summary_from_ranks(
    g: np.ndarray, n_groups: int, r: np.ndarray, event: np.ndarray, r_order: np.ndarray | None = None
) -> tuple[int, int, int]:
    """Pair counts from time groups ``g`` (0 = latest), risk ranks ``r`` and event flags.

    For every event row ``i``, counts rows ``j`` with ``g_j < g_i`` (comparable), and among
    those ``r_j < r_i`` (concordant) and ``r_j == r_i`` (tied). ``r_order``, an order sorting
    ``r`` when the caller has one, saves a full sort.
    """
    n = len(g)
    if n == 0 or not event.any():
        return 0, 0, 0

    # Comparable: rows in strictly earlier (later-time) groups.
    per_group = np.bincount(g, minlength=n_groups)
    before = np.cumsum(per_group) - per_group
    comparable = int(before[g[event]].sum())
    if comparable == 0:
        return 0, 0, 0

    n_risks = int(r.max()) + 1
    if n_risks * n_groups <= min(_GRID_ROWS_FACTOR * n, _GRID_MAX_CELLS):
        concordant, tied = _grid_pairs(g, n_groups, r, n_risks, event)
        return concordant, tied, comparable

    # Order rows by (risk rank ascending, group descending). Within one risk value, rows
    # with larger g (earlier times) come first, which makes the strict "r_j < r_i" count
    # below exact in the presence of tied risks.
    key = r * n_groups + (n_groups - 1 - g)
    if max(n_risks, n_groups) <= _RADIX_MAX_CODES:
        order = _order_by(r, g, n_groups)
    elif r_order is None:
        order = np.argsort(key)
    else:  # sorted by r already: a stable sort only reorders runs of tied risks (near-linear)
        order = r_order[np.argsort(key[r_order], kind="stable")]
    skey = key[order]

    # Tied: rows with the same risk and a smaller g are the ones after row i within its
    # risk run, past the end of its own (risk, g) run. Counted per (risk, g) run: its events
    # times the rows between its end and the end of its risk run (O(n), no binary searches).
    run_start = np.flatnonzero(np.concatenate([[True], skey[1:] != skey[:-1]]))
    run_end = np.append(run_start[1:], n)
    events_in_run = np.add.reduceat(event[order].astype(np.int64), run_start)
    run_risk = skey[run_start] // n_groups
    new_risk = np.concatenate([[True], run_risk[1:] != run_risk[:-1]])  # per run
    risk_start = np.flatnonzero(new_risk)  # run index where each risk value begins
    risk_of_run = np.cumsum(new_risk) - 1
    risk_end = run_end[np.append(risk_start[1:], len(run_start)) - 1][risk_of_run]
    tied = int(events_in_run @ (risk_end - run_end))

    # Concordant: pairs below in both coordinates. The divide and conquer runs over the bits
    # of whichever coordinate has fewer distinct values (one level per bit): scores with few
    # levels (a clinical category, a rounded risk) need fewer levels than the time groups.
    if n_risks < n_groups:
        concordant = _dominance_pairs(r, n_risks, g, event, None)
    else:
        concordant = _dominance_pairs(g, n_groups, r, event, order)
    return concordant, tied, comparable


def _order_by(major: np.ndarray, minor: np.ndarray, n_minor: int) -> np.ndarray:
    """An order sorting rows by (``major`` ascending, ``minor`` descending), codes below ``_RADIX_MAX_CODES``.

    Two stable sorts of 16-bit codes, minor key first (least significant digit first): NumPy sorts
    integers of 16 bits or less stably by radix sort, in linear time, where an int64 key takes a
    comparison sort. Rows equal in both keys may come in any order (callers do not depend on it).
    """
    by_minor = np.argsort((n_minor - 1 - minor).astype(np.uint16), kind="stable")
    return by_minor[np.argsort(major[by_minor].astype(np.uint16), kind="stable")]


def _grid_pairs(
    g: np.ndarray, n_groups: int, r: np.ndarray, n_risks: int, event: np.ndarray
) -> tuple[int, int]:
    """(concordant, tied) from the (risk rank, time group) grid, for data with few distinct values.

    ``H[a, b]`` counts the rows with risk rank ``a`` and time group ``b`` (``E`` the events). An
    event in cell ``(a, b)`` is concordant with every row in cells ``(a' < a, b' < b)`` (a 2-D
    exclusive cumulative sum of ``H``) and tied with every row in ``(a, b' < b)`` (a cumulative sum
    along the row): ``O(n + n_risks * n_groups)`` integer work, no sort.
    """
    cell = r * n_groups + g
    rows = np.bincount(cell, minlength=n_risks * n_groups).reshape(n_risks, n_groups)
    events = np.bincount(cell[event], minlength=n_risks * n_groups).reshape(n_risks, n_groups)
    along = np.cumsum(rows, axis=1) - rows  # same risk, earlier group (later time)
    tied = int(np.sum(events * along))
    below = np.cumsum(along, axis=0) - along  # lower risk and earlier group
    concordant = int(np.sum(events * below))
    return concordant, tied


def _dominance_pairs(
    p: np.ndarray, n_p: int, s: np.ndarray, event: np.ndarray, order: np.ndarray | None
) -> int:
    """Pairs ``(j, i)`` with ``event_i``, ``p_j < p_i`` and ``s_j < s_i``, for integer codes ``p, s >= 0``.

    Args:
        p: i64[n] the coordinate whose bits the recursion splits (< ``n_p``).
        s: i64[n] the other coordinate.
        event: bool[n], which rows count as ``i``.
        order: ``argsort(s * n_p + (n_p - 1 - p))`` when the caller has it, else None.
    """
    n = len(p)
    if order is None:
        if max(n_p, int(s.max(initial=0)) + 1) <= _RADIX_MAX_CODES:
            order = _order_by(s, p, n_p)
        else:
            order = np.argsort(s * n_p + (n_p - 1 - p))
    # Divide and conquer over the bits of g = p (r = s below), from the highest bit down. At
    # level L the current order is sorted by (block = g >> (L + 1), r asc, g desc); a pair
    # (j, i) with g_j < g_i is counted at the level of the highest bit where g_j and g_i
    # differ, where j is in the "left" half (bit L of g is 0) and i in the "right" half
    # (bit L is 1) of the same block. The left rows that precede a right row i within its
    # block are exactly those with r_j < r_i (tied risks put right rows first). A stable
    # partition of every block by bit L then yields the order of level L - 1. Block sizes
    # and offsets come from the per-group counts (tables of size #groups), so each level
    # costs a handful of O(n) array operations.
    idx_t = np.int32 if n < 2**30 else np.int64  # codes reach 2n + 1, positions 2n
    code = ((p[order] << 1) | event[order]).astype(idx_t)  # (g, event) in the current order
    positions = np.arange(n, dtype=idx_t)
    n_bits = int(n_p - 1).bit_length()
    rows_per_group = np.zeros(1 << n_bits, dtype=np.int64)
    rows_per_group[:n_p] = np.bincount(p, minlength=n_p)
    events_per_group = np.zeros(1 << n_bits, dtype=np.int64)
    events_per_group[:n_p] = np.bincount(p[event], minlength=n_p)
    # Every per-row array of the loop lives in one of these buffers, written with ``out=``,
    # instead of about ten fresh n-row arrays per level.
    half, right, left, left_before, new_pos, scratch, code_next = (np.empty_like(code) for _ in range(7))
    concordant = 0
    for level in range(n_bits - 1, -1, -1):
        # Per block: rows in the left / right half, right-half events, offsets.
        halves = rows_per_group.reshape(-1, 2, 1 << level).sum(axis=2)
        right_events = events_per_group.reshape(-1, 2, 1 << level)[:, 1].sum(axis=1)
        n_left = halves[:, 0]
        block_size = halves.sum(axis=1)
        block_start = np.cumsum(block_size) - block_size
        left_before_block = np.cumsum(n_left) - n_left  # left rows in earlier blocks
        # Indexed by half-block h = g >> L = 2 * block + bit: the offset of the new position.
        offset = np.stack([block_start - left_before_block, n_left + left_before_block], axis=1)
        offset = offset.ravel().astype(idx_t)

        np.right_shift(code, level + 1, out=half)
        np.bitwise_and(half, 1, out=right)
        np.subtract(1, right, out=left)
        np.cumsum(left, out=left_before)
        left_before -= left  # left rows before each position, over all blocks
        # Left rows before a right event row within its block = left_before - left_before_block.
        np.bitwise_and(right, code, out=scratch)  # 1 = a right-half event row
        scratch *= left_before
        concordant += int(scratch.sum(dtype=np.int64))
        concordant -= int(left_before_block @ right_events)
        # Stable partition of every block, left rows first: a left row moves to
        # block_start + (left rows before it in the block), a right row to
        # block_start + n_left + (right rows before it in the block).
        np.take(offset, half, out=new_pos)
        new_pos += left_before
        np.multiply(left_before, -2, out=scratch)
        scratch += positions
        scratch *= right
        new_pos += scratch
        code_next[new_pos] = code
        code, code_next = code_next, code

    return concordant


def concordance_summary(time: Any, event: Any, risk: Any) -> tuple[int, int, int]:
    """Counts concordant, tied-risk and comparable pairs for Harrell's C.

    Args:
        time: Length-n observed times (event or censoring), any real dtype.
        event: Length-n event indicators, 1/True = event observed, 0/False = censored.
        risk: Length-n predicted risks; higher means worse prognosis (shorter survival).

    Returns:
        ``(concordant, tied, comparable)`` as Python ints: comparable pairs (see the module
        docstring), those where the earlier-failing row has the strictly higher risk, and
        those with equal risks. Runs in O(n log n) time.

    Raises:
        ValueError: If the inputs are not 1-D, differ in length, contain NaNs, or ``event``
            holds values other than 0/1.
    """
    t, e, (rk,) = _validate(time, event, risk)
    g, n_groups = _time_groups(t, e)
    r, _, r_order = _dense_rank_and_order(rk)
    return _summary_from_ranks(g, n_groups, r, e, r_order)


def _ratio(concordant: int, tied: int, comparable: int) -> float:
    if comparable == 0:
        raise ValueError(
            "no comparable pairs: Harrell's C needs at least one event followed by a later "
            "(or same-time censored) observation"
        )
    return (concordant + tied / 2) / comparable


def concordance_index(time: Any, event: Any, risk: Any) -> float:
    """Harrell's concordance index, higher risk = worse prognosis.

    Equals ``lifelines.utils.concordance_index(time, -risk, event)`` (same tie rules:
    two events at the same time are not comparable, an event and a censored row at the
    same time are, tied risks count 0.5), computed in O(n log n) time.

    Args:
        time: Length-n observed times (event or censoring).
        event: Length-n event indicators, 1/True = event observed, 0/False = censored.
        risk: Length-n predicted risks (e.g. a Cox linear predictor); higher = shorter survival.

    Returns:
        The C-index in [0, 1]; 0.5 is random ranking, 1.0 perfect.

    Raises:
        ValueError: If there are no comparable pairs, or the inputs are not 1-D, differ in
            length, contain NaNs, or ``event`` holds values other than 0/1.
    """
    return _ratio(*concordance_summary(time, event, risk))


def _bootstrap_indices(rng: np.random.Generator, n: int, n_boot: int) -> np.ndarray:
    """Row indices of all resamples, i64[n_boot, n]."""
    return rng.integers(0, n, size=(n_boot, n), dtype=np.int64)


def _pair_matrices(
    g: np.ndarray, event: np.ndarray, risks: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Dense comparable matrix M and score matrices S (1 concordant, 0.5 tied) per risk."""
    comparable = event[:, None] & (g[None, :] < g[:, None])
    scores = []
    for rk in risks:
        score = np.where(rk[None, :] < rk[:, None], 1.0, np.where(rk[None, :] == rk[:, None], 0.5, 0.0))
        scores.append(score * comparable)
    return comparable.astype(np.float64), scores


def _count_into(out: np.ndarray, idx: np.ndarray, n: int) -> None:
    """Row b of ``out`` (i32[b, n]) = multiplicities of the row indices ``idx[b]``.

    One bincount per resample: its counts (n values) stay in cache, where one bincount over a
    whole batch with offsets scatters across the batch's array (several times slower). Written
    straight into the batch: stacking 256 int64 rows of 100k (200 MB) took most of a 100k-row
    bootstrap.
    """
    for b, rows in enumerate(idx):
        out[b] = np.bincount(rows, minlength=n)


def _idx_weights(idx: np.ndarray, n: int, batch: int) -> Iterator[np.ndarray]:
    """Multiplicities i32[b, n] of the resamples ``idx`` (row indices), ``batch`` at a time."""
    for lo in range(0, len(idx), batch):
        rows_of = idx[lo : lo + batch]
        out = np.empty((len(rows_of), n), np.int32)  # a count never exceeds n < 2**31
        _count_into(out, rows_of, n)
        yield out


def _drawn_weights(seed: int, n: int, n_boot: int, batch: int) -> Iterator[np.ndarray]:
    """:func:`_idx_weights` of ``_bootstrap_indices(default_rng(seed), n, n_boot)``, drawn a batch at a time.

    numpy's Generator gives the same integers whether drawn at once or in consecutive
    chunks, and for int32 as for int64 below 2**32 (one 32-bit bounded stream), so the
    resamples are those of the whole draw, without holding all of it, at half the memory.
    """
    rng = np.random.default_rng(seed)
    dtype = np.int32 if n < 2**31 else np.int64
    # Drawn a few resamples at a time (about 4 MB of indices): the allocator reuses that memory,
    # where a whole batch of indices (100 MB at 100k rows) is fresh memory each time, whose page
    # faults cost more than drawing it on this machine's virtual CPUs.
    chunk = max(1, _DRAW_ELEMENTS // max(n, 1))
    for lo in range(0, n_boot, batch):
        size = min(batch, n_boot - lo)
        out = np.empty((size, n), np.int32)
        for start in range(0, size, chunk):
            idx = rng.integers(0, n, size=(min(chunk, size - start), n), dtype=dtype)
            _count_into(out[start : start + len(idx)], idx, n)
        yield out


def _weighted_cindices(
    time: np.ndarray,
    event: np.ndarray,
    risks: list[np.ndarray],
    weights: Callable[[int], Iterable[np.ndarray]],
    n_boot: int,
) -> tuple[np.ndarray, np.ndarray]:
    """C-index of each risk on each resample given as row multiplicities, and a validity mask.

    Args:
        weights: ``weights(batch)`` yields integer [b, n] multiplicities, ``batch`` rows at a time
            (the last batch may be shorter), ``n_boot`` rows in all.

    Returns:
        ``(c, valid)``: f64[n_boot, len(risks)] (NaN where invalid) and bool[n_boot], False
        for resamples without comparable pairs. Every path computes the integer pair counts
        of the rows repeated by their multiplicities and divides as :func:`concordance_index`,
        so the values equal Harrell's C of each expanded resample bit for bit.
    """
    n = len(time)
    out = np.full((n_boot, len(risks)), np.nan)
    if n <= _DENSE_MAX_N:
        g, _ = _time_groups(time, event)
        m_mat, s_mats = _pair_matrices(g, event, risks)
        comp = np.empty(n_boot)
        lo = 0
        for w in weights(_BOOT_BATCH):
            w = w.astype(np.float64)
            b = len(w)
            # Every entry is an integer or half-integer far below 2**52: the sums are exact.
            comp[lo : lo + b] = np.einsum("bi,bi->b", w @ m_mat, w)
            for k, s_mat in enumerate(s_mats):
                out[lo : lo + b, k] = np.einsum("bi,bi->b", w @ s_mat, w)
            lo += b
        valid = comp > 0
        out[valid] /= comp[valid, None]
        out[~valid] = np.nan
        return out, valid
    return _blocked_cindices(time, event, risks, weights, n_boot)


def _blocked_cindices(
    time: np.ndarray,
    event: np.ndarray,
    risks: list[np.ndarray],
    weights: Callable[[int], Iterable[np.ndarray]],
    n_boot: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The large-n path of :func:`_weighted_cindices`: :mod:`~fedjax_rhd.metrics.weighted_pairs`."""
    from fedjax_rhd.metrics import weighted_pairs  # JAX, imported only where n needs it

    n = len(time)
    if n > _BLOCKED_MAX_N:  # beyond the measured crossover: one resample at a time is faster
        return _per_resample_cindices(time, event, risks, weights(_BOOT_BATCH), n_boot)
    g, n_groups = _time_groups(time, event)
    plans = [weighted_pairs.pair_plan(g, n_groups, _dense_rank(rk)[0], event) for rk in risks]
    counts = weighted_pairs.weighted_pair_counts(plans, weights(weighted_pairs.batch_size(n, n_boot)), n_boot)
    out = np.full((n_boot, len(risks)), np.nan)
    valid = counts[0][2] > 0
    for k, (conc, tied, comp) in enumerate(counts):
        # (conc + tied / 2) / comp in float64 from exact integer counts, as _ratio on ints.
        out[valid, k] = (conc[valid] + tied[valid] / 2) / comp[valid]
    return out, valid


def _per_resample_cindices(
    time: np.ndarray, event: np.ndarray, risks: list[np.ndarray], weights: Iterable[np.ndarray], n_boot: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_weighted_cindices` one expanded resample at a time (the reference; O(n log n) each)."""
    g, n_groups = _time_groups(time, event)
    ranks = [_dense_rank(rk)[0] for rk in risks]
    out = np.full((n_boot, len(risks)), np.nan)
    valid = np.zeros(n_boot, dtype=bool)
    b = 0
    for batch in weights:
        for w in batch:
            rows = np.repeat(np.arange(len(time)), w)
            for k, r in enumerate(ranks):
                conc, tied, comp = _summary_from_ranks(g[rows], n_groups, r[rows], event[rows])
                if comp == 0:
                    break
                out[b, k] = _ratio(conc, tied, comp)
            else:
                valid[b] = True
            b += 1
    out[~valid] = np.nan
    return out, valid


def _bootstrap_cindices(
    time: np.ndarray, event: np.ndarray, risks: list[np.ndarray], idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """C-index of each risk on each resample (rows ``idx``, i64[n_boot, n]), and a validity mask.

    Returns:
        ``(c, valid)``: f64[n_boot, len(risks)] (NaN where invalid) and bool[n_boot], False
        for resamples without comparable pairs.
    """
    n = len(time)
    return _weighted_cindices(time, event, risks, lambda batch: _idx_weights(idx, n, batch), len(idx))


def _check_boot_args(n_boot: int, alpha: float) -> None:
    if int(n_boot) != n_boot or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def bootstrap_cindex(
    time: Any,
    event: Any,
    risk: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """Harrell's C with a percentile bootstrap confidence interval.

    Rows are resampled with replacement ``n_boot`` times (``np.random.default_rng(seed)``);
    resamples without comparable pairs are skipped and counted.

    Args:
        time: Length-n observed times.
        event: Length-n event indicators (1 = event, 0 = censored).
        risk: Length-n predicted risks; higher = worse prognosis.
        n_boot: Number of bootstrap resamples drawn.
        seed: Seed of the numpy Generator; the result is deterministic given it.
        alpha: The interval is the ``alpha/2`` and ``1 - alpha/2`` percentiles.

    Returns:
        ``{"estimate", "ci_low", "ci_high", "n_boot", "n", "n_skipped"}``: the C-index on all
        rows, the percentile interval over the valid resamples, the number of resamples
        drawn, the number of rows and the number of skipped resamples.

    Raises:
        ValueError: On invalid inputs (see :func:`concordance_index`), no comparable pairs in
            the data, or no valid resample.
    """
    return bootstrap_cindices(time, event, [risk], n_boot=n_boot, seed=seed, alpha=alpha)[0]


def bootstrap_cindices(
    time: Any,
    event: Any,
    risks: list[Any],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> list[dict[str, float | int]]:
    """:func:`bootstrap_cindex` of several risks on the same rows, in one pass.

    Every risk is scored on the same resamples (``np.random.default_rng(seed)``, as each
    separate call would draw them), so the results equal ``[bootstrap_cindex(time, event, r,
    n_boot=n_boot, seed=seed, alpha=alpha) for r in risks]`` exactly, while the resamples'
    multiplicities and the comparable-pair matrix are built once instead of once per risk.

    Raises:
        ValueError: as :func:`bootstrap_cindex`.
    """
    _check_boot_args(n_boot, alpha)
    t, e, rks = _validate(time, event, *risks)
    estimates = [concordance_index(t, e, rk) for rk in rks]
    c, valid = _weighted_cindices(
        t, e, rks, lambda batch: _drawn_weights(seed, len(t), int(n_boot), batch), int(n_boot)
    )
    if not valid.any():
        raise ValueError("no bootstrap resample has comparable pairs")
    out = []
    for k, estimate in enumerate(estimates):
        low, high = np.quantile(c[valid, k], [alpha / 2, 1 - alpha / 2])
        out.append(
            {
                "estimate": float(estimate),
                "ci_low": float(low),
                "ci_high": float(high),
                "n_boot": int(n_boot),
                "n": len(t),
                "n_skipped": int((~valid).sum()),
            }
        )
    return out


def paired_bootstrap_difference(
    time: Any,
    event: Any,
    risk_a: Any,
    risk_b: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, float | int]:
    """Paired bootstrap of the difference C(risk_a) - C(risk_b) on the same rows.

    Both C-indices are computed on the same resampled rows each time, so the interval
    accounts for the correlation between the two scores. Resamples without comparable pairs
    (which depend only on ``time`` and ``event``) are skipped.

    Args:
        time: Length-n observed times.
        event: Length-n event indicators (1 = event, 0 = censored).
        risk_a: Length-n risks of the first model; higher = worse prognosis.
        risk_b: Length-n risks of the second model.
        n_boot: Number of bootstrap resamples drawn.
        seed: Seed of the numpy Generator; the result is deterministic given it.
        alpha: The interval is the ``alpha/2`` and ``1 - alpha/2`` percentiles.

    Returns:
        ``{"difference", "ci_low", "ci_high", "p_value", "n_boot", "n", "n_skipped"}``. The
        two-sided ``p_value`` is twice the fraction of bootstrap differences on the other side
        of 0 from the observed difference (0 itself counts as the other side), capped at 1;
        it is 1 when the observed difference is 0.

    Raises:
        ValueError: On invalid inputs (see :func:`concordance_index`), no comparable pairs in
            the data, or no valid resample.
    """
    _check_boot_args(n_boot, alpha)
    t, e, (ra, rb) = _validate(time, event, risk_a, risk_b)
    difference = concordance_index(t, e, ra) - concordance_index(t, e, rb)
    c, valid = _weighted_cindices(
        t, e, [ra, rb], lambda batch: _drawn_weights(seed, len(t), int(n_boot), batch), int(n_boot)
    )
    if not valid.any():
        raise ValueError("no bootstrap resample has comparable pairs")
    diffs = c[valid, 0] - c[valid, 1]
    low, high = np.quantile(diffs, [alpha / 2, 1 - alpha / 2])
    if difference > 0:
        p_value = min(1.0, 2.0 * float(np.mean(diffs <= 0)))
    elif difference < 0:
        p_value = min(1.0, 2.0 * float(np.mean(diffs >= 0)))
    else:
        p_value = 1.0
    return {
        "difference": float(difference),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": p_value,
        "n_boot": int(n_boot),
        "n": len(t),
        "n_skipped": int((~valid).sum()),
    }
