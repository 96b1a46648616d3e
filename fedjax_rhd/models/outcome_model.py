"""A conditional survival model of a row's outcome given its covariates: p(e, log t | x).

SurvivalGAN (Norcliffe, Cebere, Imrie, Liò and van der Schaar, "SurvivalGAN: Generating Time-to-Event
Data for Survival Analysis", AISTATS 2023) generates the covariates with a GAN and draws the outcome of
each generated row from a separately trained conditional model given those covariates. Here that model is

    p(e, log t | x) = Bernoulli(e; σ(f_0(u))) · N(log t; c + s·μ_e(u), (s·σ_e(u))²),   u = [x ⊙ o, o],

one network f(u) with five outputs (the event logit; log time's mean and log sd given no event; given an
event), ``o`` the 0/1 observed flag of every encoded column (a missing value reads 0 whatever filled or
drew it, so imputed training rows and generated rows with drawn missingness look alike to it, as
VAE-BGM's row head), ``c`` and ``s`` a fixed centre and scale of log time (the network works on a unit
scale), log sds bounded to (−3, 3) by ``3·tanh(·/3)``. Log time is Gaussian given the event because
death and censoring times differ. It is fitted by maximum likelihood (BCE of the event plus the
Gaussian NLL of standardised log time) on real rows only; drawing is event first, then log time given
the event and the covariates. ``hidden=()`` is a linear model in ``u``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import jax.scipy.stats
import numpy as np

from fedjax_rhd.models.savae import MAX_LOG_SD
from fedjax_rhd.typing import Params, PRNGKey

_LOG_2PI = float(np.log(2 * np.pi))
FLOOR_TOLERANCE = 1e-5  # a float32 log of the floor itself reads as at the floor


class OutcomeModel(NamedTuple):
    """The conditional outcome model's pure functions over a plain-dict parameter pytree."""

    init: Callable[[PRNGKey], Params]
    # (params, inputs f32[n, n_in], event f32[n], log time f32[n]) -> per-row NLL f32[n]
    nll: Callable[[Params, jax.Array, jax.Array, jax.Array], jax.Array]
    # (params, inputs f32[n, n_in], key) -> (event f32[n] of 0/1, log time f32[n])
    draw: Callable[[Params, jax.Array, PRNGKey], tuple[jax.Array, jax.Array]]


def row_inputs(x: jax.Array, observed: jax.Array) -> jax.Array:
    """f32[n, 2d] the model's input ``[x ⊙ o, o]`` from encoded values and their 0/1 observed flags."""
    obs = jnp.asarray(observed, jnp.float32)
    return jnp.concatenate([jnp.asarray(x, jnp.float32) * obs, obs], axis=1)


def weight_ridge(params: Params) -> jax.Array:
    """Σ |W|² over the model's weight matrices, biases left out (the ridge of ``model.outcome_l2``)."""
    return sum((jnp.sum(layer["w"] ** 2) for layer in params.values()), jnp.zeros((), jnp.float32))


def dense(key: PRNGKey, n_in: int, n_out: int) -> dict[str, jax.Array]:
    """A dense layer ``{"w", "b"}`` with torch's ``nn.Linear`` initialisation (CTGAN's networks too)."""
    bound = 1.0 / np.sqrt(n_in)
    kw, kb = jax.random.split(key)
    return {
        "w": jax.random.uniform(kw, (n_in, n_out), jnp.float32, -bound, bound),
        "b": jax.random.uniform(kb, (n_out,), jnp.float32, -bound, bound),
    }


def outcome_model(
    n_in: int,
    hidden: tuple[int, ...],
    time_center: float,
    time_scale: float,
    log_time_floor: float | None = None,
) -> OutcomeModel:
    """The model of the module docstring on ``n_in`` inputs with ReLU layers ``hidden``.

    Args:
        n_in: input width (``row_inputs``: twice the encoded columns).
        hidden: hidden layer widths; ``()`` is linear.
        time_center: ``c``, log time's centre (e.g. the fitted time mixture's mean).
        time_scale: ``s`` > 0, log time's scale.
        log_time_floor: None (default): every log time is a point, as written. A float ``f``: a row
            whose log time is at most ``f`` (a follow-up at or below the recorded floor, e.g. a patient
            censored at diagnosis) is left-censored there: its time term is −log P(log t ≤ f) =
            −log Φ(((f − c)/s − μ_e)/σ_e) instead of the density at ``f`` (a Tobit likelihood,
            Tobin, Econometrica 1958), so a pile of such rows does not widen and drag the Gaussian
            fitted to everyone else.
    """
    if time_scale <= 0:
        raise ValueError(f"outcome model: time_scale must be > 0, got {time_scale}")
    dims = (n_in, *hidden, 5)

    def init(rng: PRNGKey) -> Params:
        keys = jax.random.split(rng, len(dims) - 1)
        return {f"layer{i}": dense(keys[i], dims[i], dims[i + 1]) for i in range(len(dims) - 1)}

    def forward(params: Params, inputs: jax.Array) -> jax.Array:
        """f32[n, 5] the network's outputs."""
        h = inputs
        for i in range(len(dims) - 1):
            layer = params[f"layer{i}"]
            h = h @ layer["w"] + layer["b"]
            if i < len(dims) - 2:
                h = jax.nn.relu(h)
        return h

    def heads(h: jax.Array, event: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(event logit, standardised log-time mean, bounded log sd), the time heads picked by ``event``."""
        dead = event > 0.5
        mean = jnp.where(dead, h[:, 3], h[:, 1])
        log_sd = MAX_LOG_SD * jnp.tanh(jnp.where(dead, h[:, 4], h[:, 2]) / MAX_LOG_SD)
        return h[:, 0], mean, log_sd

    def nll(params: Params, inputs: jax.Array, event: jax.Array, log_time: jax.Array) -> jax.Array:
        """Per row: softplus(l) − e·l + ½ log 2π + log σ_e + ½ ((y − μ_e) / σ_e)², y = (log t − c) / s."""
        logit, mean, log_sd = heads(forward(params, inputs), event)
        y = (log_time - time_center) / time_scale
        bce = jax.nn.softplus(logit) - event * logit
        time_nll = 0.5 * _LOG_2PI + log_sd + 0.5 * ((y - mean) * jnp.exp(-log_sd)) ** 2
        if log_time_floor is None:
            return bce + time_nll
        at_floor = log_time <= log_time_floor + FLOOR_TOLERANCE
        y_floor = (log_time_floor - time_center) / time_scale
        below = -jax.scipy.stats.norm.logcdf((y_floor - mean) * jnp.exp(-log_sd))
        return bce + jnp.where(at_floor, below, time_nll)

    def draw(params: Params, inputs: jax.Array, key: PRNGKey) -> tuple[jax.Array, jax.Array]:
        ke, kt = jax.random.split(key)
        h = forward(params, inputs)  # once: the event's draw picks which time heads are read
        event = jax.random.bernoulli(ke, jax.nn.sigmoid(h[:, 0])).astype(jnp.float32)
        _, mean, log_sd = heads(h, event)
        y = mean + jnp.exp(log_sd) * jax.random.normal(kt, mean.shape)
        return event, time_center + time_scale * y

    return OutcomeModel(init=init, nll=nll, draw=draw)
