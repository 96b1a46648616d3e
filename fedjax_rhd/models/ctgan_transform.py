"""CTGAN's data representation: mode-specific normalisation and the discrete blocks, fitted from node sums.

Xu et al., "Modeling Tabular Data using Conditional GAN" (NeurIPS 2019), §4.2. Each continuous
column c gets a variational Gaussian mixture with modes (μ_k, σ_k, w_k); a value v is represented
by a mode k drawn with probability ∝ w_k N(v; μ_k, σ_k) (one-hot β) and the scalar
α = (v − μ_k) / (4 σ_k) within it, so v = μ_k + 4 σ_k α comes back exactly (no clipping here).

The mixtures are fitted by federated variational EM with ``fedjax_rhd.models.bgm``'s updates
(1-d, sklearn's ``BayesianGaussianMixture``; the package's rdt settings: 10 modes, a
Dirichlet-process prior with concentration 1e-3, modes with weight ≤ 0.005 left out): every
round the manager broadcasts each column's E-step inputs and every node sends per-mode sums
(node statistic ``column_modes``), never a value. All columns iterate in lockstep (one message
round serves every column still moving). Columns, in this order: each continuous guide feature
(standardised by the federated preprocessing, observed entries only) and log follow-up time
(kept positive by construction: synthetic times are ``exp`` of a finite number).

The discrete blocks, in this order (each one-hot; the conditional vector spans them all): each
binary feature as (0, 1, missing), each categorical feature as (its levels…, missing), each
continuous feature's observed flag as (missing, observed), and the event as (0, 1). Missingness
is thus data: the generator draws it, so synthetic rows reproduce the missingness pattern.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fedjax_rhd.models import bgm
from fedjax_rhd.models.tabular import ColumnSpec
from fedjax_rhd.typing import NodeData


class Layout(NamedTuple):
    """Where every part of a CTGAN row sits (static, from the guide's schema and the mode count)."""

    continuous: tuple[int, ...]  # encoded x index of each continuous feature (log time comes after them)
    modes: int  # K, the mode one-hot's width for every continuous column
    binary: tuple[int, ...]  # encoded x index of each binary feature
    categorical: tuple[tuple[int, int], ...]  # (x start, levels) of each categorical feature

    @property
    def n_continuous(self) -> int:
        """Continuous columns including log time."""
        return len(self.continuous) + 1

    @property
    def continuous_width(self) -> int:
        return self.n_continuous * (1 + self.modes)

    @property
    def discrete_widths(self) -> tuple[int, ...]:
        """Blocks: binary (0, 1, missing), categorical (levels, missing), flags (missing, observed), event."""
        cats = tuple(levels + 1 for _, levels in self.categorical)
        return (3,) * len(self.binary) + cats + (2,) * len(self.continuous) + (2,)

    @property
    def cond_width(self) -> int:
        return sum(self.discrete_widths)

    @property
    def width(self) -> int:
        return self.continuous_width + self.cond_width


def make_layout(schema: Sequence[ColumnSpec], modes: int) -> Layout:
    """The row layout of ``schema`` with ``modes`` modes per continuous column."""
    return Layout(
        tuple(c.start for c in schema if c.kind == "continuous"),
        modes,
        tuple(c.start for c in schema if c.kind == "binary"),
        tuple((c.start, c.width) for c in schema if c.kind == "categorical"),
    )


def runs(widths: Sequence[int]) -> list[tuple[int, int, int]]:
    """``(offset, blocks, width)`` of each run of consecutive equal-width blocks.

    Blocks of one run are reshaped to ``[n, blocks, width]`` and handled at once: a few array
    operations per run instead of one per block (hundreds on MDS), which keeps compilation short.
    """
    out, offset = [], 0
    for w in widths:
        if out and out[-1][2] == w:
            o, b, _ = out[-1]
            out[-1] = (o, b + 1, w)
        else:
            out.append((offset, 1, w))
        offset += w
    return out


def block_apply(fn: Callable[[jax.Array], jax.Array], values: jax.Array, widths: Sequence[int]) -> jax.Array:
    """``fn`` over the last axis of every block of ``values`` f32[n, Σ widths] (e.g. a softmax)."""
    parts = []
    for offset, blocks, w in runs(widths):
        chunk = values[:, offset : offset + blocks * w].reshape(values.shape[0], blocks, w)
        parts.append(fn(chunk).reshape(values.shape[0], -1))
    return jnp.concatenate(parts, axis=1)


def block_reduce(fn: Callable[[jax.Array], jax.Array], values: jax.Array, widths: Sequence[int]) -> jax.Array:
    """f[n, blocks]: ``fn`` reducing the last axis of every block (e.g. a sum or an argmax)."""
    parts = []
    for offset, blocks, w in runs(widths):
        parts.append(fn(values[:, offset : offset + blocks * w].reshape(values.shape[0], blocks, w)))
    return jnp.concatenate(parts, axis=1)


class Modes(NamedTuple):
    """Fitted modes per continuous column (arrays [C, K]; invalid modes have weight 0)."""

    weights: np.ndarray  # f32[C, K], each row sums to 1 over its valid modes
    means: np.ndarray  # f32[C, K]
    stds: np.ndarray  # f32[C, K]


def default_modes(layout: Layout) -> Modes:
    """One N(0, 1) mode per column: the unfitted representation (shapes only, tests)."""
    c, k = layout.n_continuous, layout.modes
    weights = np.zeros((c, k), np.float32)
    weights[:, 0] = 1.0
    return Modes(weights, np.zeros((c, k), np.float32), np.ones((c, k), np.float32))


def continuous_values(batch: NodeData, layout: Layout, time_floor: float) -> tuple[jax.Array, jax.Array]:
    """f32[n, C] the continuous columns (standardised features, log time) and f32[n, C] their fit weights.

    A weight is the row's weight times the feature's observed flag (time is always observed).
    """
    idx = np.asarray(layout.continuous, np.int32)
    x = jnp.asarray(batch.x, jnp.float32)
    w = jnp.asarray(batch.weight, jnp.float32)[:, None]
    log_t = jnp.log(jnp.maximum(jnp.asarray(batch.time, jnp.float32), time_floor))
    values = jnp.concatenate([x[:, idx], log_t[:, None]], axis=1)
    obs = jnp.concatenate([jnp.asarray(batch.observed, jnp.float32)[:, idx], jnp.ones_like(w)], axis=1)
    return values, w * obs


def discrete_onehot(batch: NodeData, layout: Layout) -> jax.Array:
    """f32[n, cond_width] every discrete block of every row, one-hot (missing as its own level)."""
    x = jnp.asarray(batch.x, jnp.float32)
    obs = jnp.asarray(batch.observed, jnp.float32)
    n = x.shape[0]
    b = np.asarray(layout.binary, np.int32)
    v, p = jnp.round(x[:, b]), obs[:, b]
    parts = [jnp.stack([(1.0 - v) * p, v * p, 1.0 - p], axis=2).reshape(n, -1)]
    for start, levels in layout.categorical:
        q = obs[:, start : start + 1]
        parts.append(jnp.concatenate([x[:, start : start + levels] * q, 1.0 - q], axis=1))
    f = obs[:, np.asarray(layout.continuous, np.int32)]
    parts.append(jnp.stack([1.0 - f, f], axis=2).reshape(n, -1))
    e = jnp.asarray(batch.event, jnp.float32)[:, None]
    parts.append(jnp.concatenate([1.0 - e, e], axis=1))
    return jnp.concatenate(parts, axis=1)


def split_outcome(row: jax.Array, layout: Layout, modes: Modes) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(covariates f32[n, width − (1+K) − 2], event probability f32[n], log time f32[n]) of CTGAN rows.

    Covariates are every part of the row but log time's α and modes and the event block. Log time is
    Σ_k m_k (μ_k + 4 σ_k α) over its mode scores m: the value itself for an encoded row (m one-hot),
    differentiable in α and m for a generated one (Gumbel-softmax scores).
    """
    start, end = (layout.n_continuous - 1) * (1 + layout.modes), layout.continuous_width
    cov = jnp.concatenate([row[:, :start], row[:, end:-2]], axis=1)
    alpha, m = row[:, start : start + 1], row[:, start + 1 : end]
    log_time = jnp.sum(m * (modes.means[-1][None] + 4.0 * modes.stds[-1][None] * alpha), axis=1)
    return cov, row[:, -1], log_time


def mode_log_posterior(values: jax.Array, modes: Modes) -> jax.Array:
    """f32[n, C, K] log w_k N(v; μ_k, σ_k) up to a per-value constant; -inf for invalid modes."""
    z = (values[:, :, None] - modes.means[None]) / modes.stds[None]
    logp = jnp.log(modes.weights)[None] - jnp.log(modes.stds)[None] - 0.5 * z**2
    return jnp.where(modes.weights[None] > 0, logp, -jnp.inf)


def encode_continuous(values: jax.Array, modes: Modes, key: jax.Array) -> jax.Array:
    """f32[n, C·(1+K)]: per column α then the one-hot of a mode drawn from its posterior."""
    k = jax.random.categorical(key, mode_log_posterior(values, modes), axis=-1)  # [n, C]
    mu = jnp.take_along_axis(modes.means[None], k[..., None], axis=2)[..., 0]
    sd = jnp.take_along_axis(modes.stds[None], k[..., None], axis=2)[..., 0]
    alpha = (values - mu) / (4.0 * sd)
    onehot = jax.nn.one_hot(k, modes.means.shape[1])
    return jnp.concatenate([alpha[..., None], onehot], axis=2).reshape(values.shape[0], -1)


def decode_continuous(block: jax.Array, modes: Modes) -> jax.Array:
    """f32[n, C] values from α and the mode scores (argmax over valid modes): μ_k + 4 σ_k α."""
    n, c, k = block.shape[0], modes.means.shape[0], modes.means.shape[1]
    block = block.reshape(n, c, 1 + k)
    mode = jnp.argmax(jnp.where(modes.weights[None] > 0, block[..., 1:], -jnp.inf), axis=2)
    mu = jnp.take_along_axis(modes.means[None], mode[..., None], axis=2)[..., 0]
    sd = jnp.take_along_axis(modes.stds[None], mode[..., None], axis=2)[..., 0]
    return mu + 4.0 * sd * block[..., 0]


def decode_discrete(block: jax.Array, layout: Layout, num_features: int) -> dict[str, jax.Array]:
    """Discrete blocks (largest score wins) back to encoded x, presence per x column and event."""
    n = block.shape[0]
    level = block_reduce(lambda c: jnp.argmax(c, axis=-1), block, layout.discrete_widths)  # [n, blocks]
    nb, nc = len(layout.binary), len(layout.categorical)
    b, c = np.asarray(layout.binary, np.int32), np.asarray(layout.continuous, np.int32)
    x = jnp.zeros((n, num_features), jnp.float32).at[:, b].set((level[:, :nb] == 1).astype(jnp.float32))
    present = jnp.ones((n, num_features), bool).at[:, b].set(level[:, :nb] != 2)
    for i, (start, levels) in enumerate(layout.categorical):
        chosen = level[:, nb + i]
        x = x.at[:, start : start + levels].set(jax.nn.one_hot(chosen, levels))
        present = present.at[:, start : start + levels].set((chosen != levels)[:, None])
    present = present.at[:, c].set(level[:, nb + nc : -1] == 1)
    return {"x": x, "present": present, "event": level[:, -1].astype(jnp.float32)}


# ---- the federated fit (manager side, float64 numpy) ----

AskNodes = Callable[[Sequence[int], Sequence[bgm.EStepInputs]], list[bgm.SufficientStatistics]]
"""Ask every node for the 1-d sums of columns ``cols`` under their E-step inputs; return the sums."""


class ModeFit(NamedTuple):
    modes: Modes
    iterations: int  # message rounds, moments and initial assignment included
    converged: tuple[bool, ...]  # per column
    counts: np.ndarray  # f64[C, K] summed N_k of the last E-step


def fit_modes(
    ask_nodes: AskNodes,
    n_columns: int,
    *,
    n_modes: int,
    seed: int,
    max_iter: int = 100,
    tol: float = 1e-4,
    weight_concentration: float = 1e-3,
    weight_threshold: float = 0.005,
    min_count: float = 10.0,
    reg_covar: float = 1e-6,
) -> ModeFit:
    """Fit every column's 1-d mixture by federated variational EM, all columns in lockstep.

    Per column the steps of ``bgm.fit_federated`` (moments → prior, K initial means drawn with
    ``seed`` from N(mean, var), E/M until means move < ``tol`` prior sds and weights < ``tol``),
    without the refit after dropping: as the package, modes with weight ≤ ``weight_threshold`` (or
    summed N_k < ``min_count``, so no mode is one patient's mean) are only left out of the
    representation. A converged column is not asked again.
    """
    cols = list(range(n_columns))
    one = bgm.EStepInputs(np.zeros((1, 1)), np.eye(1)[None], np.zeros(1))
    moments = ask_nodes(cols, [one] * n_columns)
    priors = []
    for j, m in enumerate(moments):
        try:
            priors.append(bgm.prior_from_moments(m, n_modes, weight_concentration=weight_concentration))
        except ValueError as err:
            raise ValueError(f"ctgan's mode-specific normaliser, continuous column {j}: {err}") from err
    starts = []
    for j, p in enumerate(priors):
        rng = np.random.default_rng(np.random.SeedSequence([seed, 4, j]))
        means = rng.normal(p.mean[0], np.sqrt(p.covariance[0, 0]), size=(n_modes, 1))
        starts.append(bgm.gaussian_inputs(means, p.covariance))
    states = [bgm.m_step(s, p, reg_covar) for s, p in zip(ask_nodes(cols, starts), priors, strict=True)]
    counts = [np.zeros(n_modes)] * n_columns
    converged, iterations = [False] * n_columns, 2
    for _ in range(max_iter):
        active = [j for j in cols if not converged[j]]
        if not active:
            break
        stats = ask_nodes(active, [bgm.e_step_inputs(states[j], "dirichlet_process") for j in active])
        iterations += 1
        for j, s in zip(active, stats, strict=True):
            new = bgm.m_step(s, priors[j], reg_covar)
            scale = np.sqrt(priors[j].covariance[0, 0])
            moved = np.max(np.abs(new.means - states[j].means)) / scale
            shift = np.max(
                np.abs(
                    bgm.mixture_weights(new, "dirichlet_process")
                    - bgm.mixture_weights(states[j], "dirichlet_process")
                )
            )
            states[j], counts[j] = new, s.count
            converged[j] = bool(moved < tol and shift < tol)
    weights, means, stds = [], [], []
    for j, state in enumerate(states):
        w = bgm.mixture_weights(state, "dirichlet_process")
        valid = (w > weight_threshold) & (counts[j] >= min_count)
        if not valid.any():  # keep the heaviest mode: a column always has one
            valid = w == w.max()
        weights.append(np.where(valid, w, 0.0) / np.sum(w[valid]))
        means.append(state.means[:, 0])
        stds.append(np.sqrt(state.covariances[:, 0, 0]))
    modes = Modes(*(np.asarray(a, np.float32) for a in (weights, means, stds)))
    return ModeFit(modes, iterations, tuple(converged), np.asarray(counts))


def node_column_statistics(
    values: np.ndarray,
    weights: np.ndarray,
    columns: Sequence[int],
    inputs: Sequence[bgm.EStepInputs],
    min_count: float,
) -> dict[str, np.ndarray]:
    """One node's E-step sums for ``columns`` (``bgm.node_sufficient_statistics`` on each, 1-d)."""
    parts = [
        bgm.node_sufficient_statistics(values[:, [j]], weights[:, j], e, min_count)
        for j, e in zip(columns, inputs, strict=True)
    ]
    return {name: np.stack([p[i] for p in parts]) for i, name in enumerate(bgm.SufficientStatistics._fields)}
