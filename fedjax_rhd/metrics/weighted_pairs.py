"""Harrell's C pair counts of many weighted resamples at once, as block matrix products.

A bootstrap resample (Efron & Tibshirani 1993, ch. 6) is a vector of multiplicities ``w``:
row ``i`` of the original data drawn ``w_i`` times. Harrell's C (Harrell, Lee & Mark 1996)
of the rows repeated by ``w`` has pair counts that are quadratic forms in ``w``, with ``g``
and ``r`` the time groups and risk ranks of :mod:`fedjax_rhd.metrics.concordance`
(``(i, j)`` comparable when ``i`` is an event and ``g_j < g_i``)::

    comparable(w) = sum_{i event} w_i  sum_{j: g_j < g_i} w_j
    concordant(w) = sum_{i event} w_i  sum_{j: g_j < g_i, r_j < r_i} w_j
    tied(w)       = sum_{i event} w_i  sum_{j: g_j < g_i, r_j = r_i} w_j

Copies of one row share its time group, so they never pair with each other: these are
exactly the counts :func:`~fedjax_rhd.metrics.concordance.concordance_summary` gives on the
expanded rows, and the C-index is ``(concordant + tied / 2) / comparable`` as there.

The ties are folded into two strict orders of the rows, computed once: ``x`` sorts by
``(g asc, r desc, row asc)`` and ``y`` by ``(r asc, g desc, row desc)``. A pair with
``i`` an event is concordant exactly when ``x_j < x_i`` and ``y_j < y_i`` (equal times are
split by risk against the pair, equal risks by time against it, equal both by the row
number in opposite directions), so concordance is a weighted two-dimensional dominance
count over one permutation. Both orders are cut into ``K`` blocks of ``s`` positions and
every dominating pair falls in exactly one of three parts:

* the same ``x`` block: per block, ``W_k @ M_k`` with the ``s x s`` mask
  ``M_k[j, i] = [j < i][y_j < y_i]``;
* an earlier ``x`` block and an earlier ``y`` block: a running sum over ``x`` blocks of
  ``W_k @ S_k`` with ``S_k[j, b] = [y block of j < b]`` (weights below each ``y`` block);
* an earlier ``x`` block and the same ``y`` block: per ``y`` block, the mask
  ``[j < i][x block of j < x block of i]``.

That is ``2 n (2 s + K)`` multiply-adds per resample (``s`` near ``sqrt(2 n)``: :func:`block_size`; the
cost grows as ``n**1.5``), done as matrix products for a batch of resamples at a time under
``jax.jit`` on JAX's default device, position-major (``[positions, resamples]``).
``comparable`` is each event's weight before its time group's first ``x`` position and
``tied``, seen from the later row, the event weight of its risk run before its (risk, time
group) cell along ``y``: exclusive cumulative sums, also as small triangular products.

Exactness: the matrix products are float32 with integer operands whose partial sums never
exceed a resample's total weight, exact below ``2**24``; the per-row products and their sums
are float64 (exact below ``2**53``, i.e. below about 9e7 rows), so the counts equal the
integer counts of the expanded rows bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PairPlan", "block_size", "pair_plan", "weighted_pair_counts", "batch_size"]

# Elements of one (resamples x rows) float32 array of a batch (128 MiB); the kernel holds about
# eight such arrays, so a batch takes about 1 GiB whatever n is (peak RSS 1.8 GiB at 100k rows).
_BATCH_ELEMENTS = 2**25
# Block of the cumulative sums' triangular products.
_CUMSUM_BLOCK = 32
# Total weight per resample below which float32 sums of integers are exact.
MAX_TOTAL_WEIGHT = 2**24


class PairPlan(NamedTuple):
    """The fixed orders and block layout of one (time, event, risk) data set; i32 arrays of n_pad."""

    n: int  # rows; padding positions hold row n, whose weight is always 0
    s: int  # block size; n_pad = K * s
    x_rows: np.ndarray  # row at each x position
    y_rows: np.ndarray  # row at each y position
    x_y: np.ndarray  # y position of the row at each x position
    x_event: np.ndarray  # f32 event flag at each x position
    y_xblock: np.ndarray  # x block of the row at each y position
    y_event: np.ndarray  # f32 event flag at each y position
    x_group_start: np.ndarray  # first x position of the row's time group
    y_risk_start: np.ndarray  # first y position with the row's risk
    y_cell_start: np.ndarray  # first y position with the row's (risk, time group)


def block_size(n: int) -> int:
    """The power of two nearest ``sqrt(2 n)`` (at least 8).

    ``sqrt(n / 2)`` minimises the multiply-adds ``2 s + n / s``, but larger blocks make larger, more
    efficient matrix products: measured side by side on the 2-core CPU (1,000 resamples at 100k rows,
    64 at 300k; session 9), blocks of 512 instead of 256 took 4.8-5.2 s instead of 5.6 s at 100k, and
    1,024 instead of 512 took 2.5 s instead of 4.0 s at 300k (identical intervals: the counts are exact).
    """
    return max(8, 1 << int(round(np.log2(max(np.sqrt(2 * n), 1.0)))))


def batch_size(n: int, n_boot: int) -> int:
    """Resamples per kernel call: a power of two, bounded by memory and by ``n_boot``."""
    by_memory = max(1, _BATCH_ELEMENTS // max(n, 1))
    return 1 << int(np.log2(min(by_memory, max(int(n_boot), 1))))


def pair_plan(g: np.ndarray, n_groups: int, r: np.ndarray, event: np.ndarray) -> PairPlan:
    """Builds the orders of the module docstring from time groups, risk ranks and event flags."""
    n = len(g)
    s = block_size(n)
    n_pad = -(-max(n, 1) // s) * s
    rows = np.arange(n)
    x_order = np.lexsort((rows, -r, g))  # g asc, r desc, row asc
    y_order = np.lexsort((-rows, -g, r))  # r asc, g desc, row desc
    x_pos = np.empty(n, np.int64)
    x_pos[x_order] = rows
    y_pos = np.empty(n, np.int64)
    y_pos[y_order] = rows
    pad = np.arange(n, n_pad)  # padding rows sit at the end of both orders

    g_x = g[x_order]
    r_y = r[y_order]
    cell_y = r_y * n_groups + (n_groups - 1 - g[y_order])  # ascending along y
    i32 = np.int32

    def padded(values: np.ndarray, fill: np.ndarray | int) -> np.ndarray:
        return np.concatenate([values, np.broadcast_to(fill, len(pad))]).astype(i32)

    return PairPlan(
        n=n,
        s=s,
        x_rows=padded(x_order, n),
        y_rows=padded(y_order, n),
        x_y=padded(y_pos[x_order], pad),
        x_event=np.concatenate([event[x_order], np.zeros(len(pad), bool)]).astype(np.float32),
        y_xblock=padded(x_pos[y_order] // s, pad // s),
        y_event=np.concatenate([event[y_order], np.zeros(len(pad), bool)]).astype(np.float32),
        x_group_start=padded(np.searchsorted(g_x, g_x, side="left"), pad),
        y_risk_start=padded(np.searchsorted(r_y, r_y, side="left"), pad),
        y_cell_start=padded(np.searchsorted(cell_y, cell_y, side="left"), pad),
    )


def _coldot(a: jax.Array, b: jax.Array) -> jax.Array:
    """Exact sum over the first axis of a * b for float32 arrays of integers, in float64.

    Integers below ``2**53`` are exact in float64; XLA's integer arithmetic on CPU is
    several times slower than this.
    """
    return (a.astype(jnp.float64) * b.astype(jnp.float64)).sum(axis=0)


_HI = jax.lax.Precision.HIGHEST  # no reduced-precision inputs (TF32 on GPUs): keep integers exact
# Levels of halving in the products with a block's strictly lower-triangular mask (_lower_dot).
TRIANGLE_LEVELS = 1


def _lower_dot(mask: jax.Array, w: jax.Array, levels: int) -> jax.Array:
    """``mask @ w`` for an [s, s] mask that is 0 on and above the diagonal ([i, j], j >= i).

    The product's upper triangle is zeros, so each level of halving skips a quarter of what is left:
    the top half of the rows reads only the first half of ``w``, the bottom half's left block is
    dense and its right block lower-triangular again. ``levels`` halvings do
    ``½ (1 + 2**-levels) s²`` multiply-adds per column instead of ``s²``; the sums are of the same
    integers, so the result is the same, bit for bit.
    """
    s = mask.shape[0]
    if levels == 0 or s < 16:
        return jnp.dot(mask, w, precision=_HI)
    h = s // 2
    top = _lower_dot(mask[:h, :h], w[:h], levels - 1)
    bottom = jnp.dot(mask[h:, :h], w[:h], precision=_HI) + _lower_dot(mask[h:, h:], w[h:], levels - 1)
    return jnp.concatenate([top, bottom], axis=0)


def _x_scan(wx: jax.Array, x_event: jax.Array, x_y: jax.Array, s: int) -> jax.Array:
    """Concordant pairs whose earlier row is in an earlier x block or the same one.

    Args:
        wx: f32[K * s, B] weights in x order; the other arrays are i32 / f32 [K * s].

    Returns:
        f64[B].
    """
    n_pad, n_boot = wx.shape
    n_blocks = n_pad // s
    local = jnp.arange(s, dtype=jnp.int32)
    after = local[:, None] > local[None, :]  # [i, j]: j precedes i in the block
    y_block_ids = jnp.arange(n_blocks, dtype=jnp.int32)

    def step(carry: tuple[jax.Array, jax.Array], xs: tuple[jax.Array, ...]) -> tuple[tuple, None]:
        below, conc = carry  # below[c]: weight of earlier x blocks in y blocks < c
        wk, ek, yk = xs
        yblock = yk // s
        mask = (after & (yk[None, :] < yk[:, None])).astype(jnp.float32)  # [i, j]: j before i in x, y
        steps = (yblock[None, :] < y_block_ids[:, None]).astype(jnp.float32)  # [c, j]: j below y block c
        within = _lower_dot(mask, wk, TRIANGLE_LEVELS)
        conc = conc + _coldot(wk * ek[:, None], within + jnp.take(below, yblock, axis=0, mode="clip"))
        return (below + jnp.dot(steps, wk, precision=_HI), conc), None

    init = (jnp.zeros((n_blocks, n_boot), jnp.float32), jnp.zeros(n_boot, jnp.float64))
    xs = tuple(a.reshape(n_blocks, s, *a.shape[1:]) for a in (wx, x_event, x_y))
    (_, conc), _ = jax.lax.scan(step, init, xs)
    return conc


def _y_scan(wy: jax.Array, y_event: jax.Array, y_xblock: jax.Array, s: int) -> jax.Array:
    """Concordant pairs whose earlier row is in an earlier x block and the same y block.

    Returns:
        f64[B].
    """
    n_pad, n_boot = wy.shape
    n_blocks = n_pad // s
    local = jnp.arange(s, dtype=jnp.int32)
    after = local[:, None] > local[None, :]  # [i, j]: j precedes i in the block

    def step(conc: jax.Array, xs: tuple[jax.Array, ...]) -> tuple[jax.Array, None]:
        wk, ek, xb = xs
        mask = (after & (xb[None, :] < xb[:, None])).astype(jnp.float32)  # [i, j]
        return conc + _coldot(wk * ek[:, None], _lower_dot(mask, wk, TRIANGLE_LEVELS)), None

    xs = tuple(a.reshape(n_blocks, s, *a.shape[1:]) for a in (wy, y_event, y_xblock))
    conc, _ = jax.lax.scan(step, jnp.zeros(n_boot, jnp.float64), xs)
    return conc


def _exclusive_cumsum(w: jax.Array) -> jax.Array:
    """[0, w_0, w_0 + w_1, ...] along the first axis (one row longer), as small matrix products.

    XLA's own cumulative sum on CPU is a reduce-window many times slower than this: within
    blocks of ``_CUMSUM_BLOCK`` rows it is ``U @ w_k`` (U strictly triangular), and the
    blocks' totals are summed the same way, recursively. Integer sums below ``2**24`` are exact.
    """
    m, n_boot = w.shape
    c = _CUMSUM_BLOCK
    m_pad = -(-m // c) * c
    wb = jnp.pad(w, ((0, m_pad - m), (0, 0))).reshape(m_pad // c, c, n_boot)
    before = (jnp.arange(c)[None, :] < jnp.arange(c)[:, None]).astype(w.dtype)  # [i, j]: j before i
    # A batched product with the triangle broadcast over blocks: a plain einsum here makes XLA
    # transpose the whole array around the product.
    within = jnp.matmul(jnp.broadcast_to(before, (m_pad // c, c, c)), wb, precision=_HI)
    totals = wb.sum(axis=1)
    if m_pad == c:
        offsets, grand = jnp.zeros_like(totals), totals
    else:
        block_prefix = _exclusive_cumsum(totals)
        offsets, grand = block_prefix[:-1], block_prefix[-1:]
    excl = (within + offsets[:, None, :]).reshape(m_pad, n_boot)[:m]
    return jnp.concatenate([excl, grand], axis=0)


@functools.partial(jax.jit, static_argnames=("rows",))
def _position_major(w: jax.Array, rows: int) -> jax.Array:
    """[B, n] multiplicities (any real dtype) -> f32[rows, B], zero from row n on (padding reads row n).

    A jitted call of its own: inside the kernel XLA would fuse this transpose into the
    gathers, which would then read columns of [resamples, positions], several times slower
    on CPU than this copy followed by row gathers.
    """
    return jnp.pad(w.T.astype(jnp.float32), ((0, rows - w.shape[1]), (0, 0)))


@functools.partial(jax.jit, static_argnames=("s",))
def _counts_kernel(w: jax.Array, plan: tuple[jax.Array, ...], s: int) -> tuple[jax.Array, ...]:
    """(concordant, tied, comparable) f64[B] for f32[n_pad + 1, B] weights (rows from n on 0).

    Works position-major ([positions, resamples], from :func:`_position_major`): gathering
    whole rows of resamples is a copy of contiguous memory.
    """
    x_rows, y_rows, x_y, x_event, y_xblock, y_event, x_gstart, y_rstart, y_cstart = plan
    wx = jnp.take(w, x_rows, axis=0, mode="clip")  # indices are in range by construction
    wy = jnp.take(w, y_rows, axis=0, mode="clip")
    wex = wx * x_event[:, None]
    wey = wy * y_event[:, None]
    # Comparable: every event row pairs with the weight before its time group's first x row.
    comp = _coldot(wex, jnp.take(_exclusive_cumsum(wx), x_gstart, axis=0, mode="clip"))
    # Tied, seen from the later row j: the events of its risk run that precede its (risk,
    # time group) cell along y, i.e. the same risk and a later time group.
    ce = _exclusive_cumsum(wey)
    between = jnp.take(ce, y_cstart, axis=0, mode="clip") - jnp.take(ce, y_rstart, axis=0, mode="clip")
    tied = _coldot(wy, between)
    conc = _x_scan(wx, x_event, x_y, s) + _y_scan(wy, y_event, y_xblock, s)
    return conc, tied, comp


def weighted_pair_counts(
    plans: list[PairPlan], weights: Iterable[np.ndarray], n_boot: int
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Pair counts of every weighted resample for each plan (risks of the same rows).

    Args:
        plans: :func:`pair_plan` of the same rows, one per risk.
        weights: batches of integer multiplicities [b, n], b at most
            ``batch_size(n, n_boot)`` (a short batch is padded with empty resamples),
            ``n_boot`` rows in all; each batch is scored for every plan.
        n_boot: total resamples, which fixes the batch size (one compiled shape per call).

    Returns:
        Per plan ``(concordant, tied, comparable)``: i64[n_boot] each.

    Raises:
        ValueError: if a resample's weights are too large for exact float32 sums.
    """
    n = plans[0].n
    bs = batch_size(n, n_boot)
    arrays = [tuple(jnp.asarray(a) for a in plan[2:]) for plan in plans]
    pending: list[tuple[int, list[tuple[jax.Array, ...]]]] = []
    with jax.enable_x64(True):
        for batch in weights:
            batch = np.asarray(batch)
            if len(batch) > bs:
                raise ValueError(f"a batch of {len(batch)} resamples exceeds the batch size {bs}")
            total = int(batch.sum(axis=1).max(initial=0))
            if total >= MAX_TOTAL_WEIGHT:
                raise ValueError(f"resample weights too large for exact float32 sums (total {total})")
            size = len(batch)
            if size < bs:  # a short batch: empty resamples fill it (one compiled shape)
                batch = np.concatenate([batch, np.zeros((bs - size, n), batch.dtype)])
            # Integer multiplicities go in as they are; the float32 conversion happens inside the
            # transposing copy (one pass, no host-side copy of the batch).
            w_dev = _position_major(jnp.asarray(batch), len(plans[0].x_rows) + 1)
            # Dispatch is asynchronous: the host draws the next batch while this one runs.
            runs = [_counts_kernel(w_dev, arr, plan.s) for plan, arr in zip(plans, arrays, strict=True)]
            pending.append((size, runs))
        out = []
        for k in range(len(plans)):
            parts = [tuple(np.asarray(c)[:size].astype(np.int64) for c in res[k]) for size, res in pending]
            if not parts:
                parts = [(np.zeros(0, np.int64),) * 3]
            conc, tied, comp = (np.concatenate(p) for p in zip(*parts, strict=True))
            out.append((conc, tied, comp))
    return out
