"""SAVAE: a variational autoencoder with a Weibull survival head.

Apellániz, Parras & Zazo, "SAVAE: Leveraging the variational Bayes autoencoder
for survival analysis", arXiv:2312.14651; Scientific Reports (2024). An encoder
maps the covariates to a Gaussian latent ``q(z | x)``; from ``z`` one decoder
reconstructs every covariate with a likelihood of its kind (Gaussian for
continuous, Bernoulli for binary, categorical for one-hot blocks) and another
gives the Weibull scale and shape of the survival time. Right censoring enters
the time likelihood as ``h(t)^event * S(t)``. Training maximises the ELBO with
the reparameterisation trick; every random draw comes from a key passed in.

Reconstruction terms cover observed entries only: an imputed value is not data.
At evaluation (``rng=None``) ``z`` is the encoder mean, so validation losses,
risks and survival curves are deterministic.

The column layout (which encoded column is which kind) comes from the use
case's guide through :meth:`SAVAEConfig.for_guide`; without it every column is
treated as Gaussian.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from fedjax_rhd.models.dropout import TracedRate, active, dropout
from fedjax_rhd.typing import NodeData, Params, PRNGKey, SurvivalModel
from harmonize.guide import Guide

# Bounds on log-shape and log-sd (via tanh): keeps Weibull shapes in
# (e^-2, e^2) ~ (0.14, 7.4) and Gaussian sds in (e^-3, e^3), so no step can
# reach a degenerate likelihood that returns inf.
MAX_LOG_SHAPE = 2.0
MAX_LOG_SD = 3.0
_LOG_2PI = float(np.log(2 * np.pi))
_LOG_LOG_2 = float(np.log(np.log(2.0)))

_ACTIVATIONS = {"relu": jax.nn.relu, "selu": jax.nn.selu, "tanh": jnp.tanh, "gelu": jax.nn.gelu}
KINDS = ("gaussian", "bernoulli", "categorical")


@dataclasses.dataclass(frozen=True)
class SAVAEConfig:
    """SAVAE hyperparameters (hashable: part of the jit key)."""

    name: str = "savae"  # the registry key (fedjax_rhd.models.MODELS) and conf/model/savae.yaml

    # The paper's latent and hidden sizes are of this order; small, because a
    # rare-disease node holds tens to hundreds of patients.
    latent_dim: int = 5
    hidden: tuple[int, ...] = (50,)
    dropout: float = 0.1
    activation: str = "relu"
    # KL weight: 1 is the ELBO proper.
    beta: float = 1.0
    # Give the encoder the observed mask, as DeepSurv gets it.
    use_observed_mask: bool = True
    # (kind, first column, width) per feature; filled from the guide by
    # ``for_guide`` at the entry point, never written in YAML.
    layout: tuple[
        Any, ...
    ] = ()  # ((kind, start, width), ...) from for_guide; Any: OmegaConf has no nested tuples

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))  # OmegaConf hands lists
        object.__setattr__(self, "layout", tuple((str(a), int(b), int(c)) for a, b, c in self.layout))
        if self.name != "savae":
            raise ValueError(f"SAVAEConfig is model 'savae', not {self.name!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if self.latent_dim < 1 or not 0.0 <= self.dropout < 1.0 or self.beta < 0:
            raise ValueError("need latent_dim >= 1, dropout in [0, 1) and beta >= 0")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "layout", tuple((str(k), int(s), int(w)) for k, s, w in self.layout))
        for kind, _, width in self.layout:
            if kind not in KINDS or width < 1 or (kind != "categorical" and width != 1):
                raise ValueError(f"bad layout entry {(kind, width)}; kinds are {KINDS}")

    def for_guide(self, guide: Guide) -> SAVAEConfig:
        """This config with the column layout of ``guide``'s encoded features."""
        layout, start = [], 0
        for f in guide.features:
            kind = {"continuous": "gaussian", "binary": "bernoulli", "categorical": "categorical"}[f.kind]
            layout.append((kind, start, f.width))
            start += f.width
        return dataclasses.replace(self, layout=tuple(layout))


def weibull_log_likelihood(
    time: jax.Array, event: jax.Array, log_scale: jax.Array, log_shape: jax.Array
) -> jax.Array:
    """Censored Weibull log-likelihood per row: ``event * log h(t) + log S(t)``.

    With scale ``lam`` and shape ``k``: ``log h(t) = log k - log lam +
    (k - 1) (log t - log lam)`` and ``log S(t) = -(t / lam)^k``; for a death
    the sum is ``log f(t)``, for a censored row ``log S(t)``.

    Args:
        time: f32[n] strictly positive times.
        event: f32[n] 1 = death, 0 = censored.
        log_scale, log_shape: f32[n] per-row Weibull parameters.

    Returns:
        f32[n].
    """
    log_ratio = jnp.log(time) - log_scale
    shape = jnp.exp(log_shape)
    log_hazard = log_shape - log_scale + (shape - 1.0) * log_ratio
    return event * log_hazard - jnp.exp(shape * log_ratio)


class _MLP(nnx.Module):
    """Hidden layers with dropout, then a linear output."""

    def __init__(self, widths: tuple[int, ...], out: int, activation: str, *, rngs: nnx.Rngs):
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in pairs])
        self.out = nnx.Linear(widths[-1], out, rngs=rngs)
        self.activation = activation

    def __call__(self, x: jax.Array, key: jax.Array | None, rate: float | TracedRate = 0.0) -> jax.Array:
        # the rate is an argument (maybe traced: fedjax_rhd.strategies.traced), not module state
        for i, layer in enumerate(self.layers):
            x = _ACTIVATIONS[self.activation](layer(x))
            if key is not None and active(rate):
                x = dropout(x, jax.random.fold_in(key, i), rate)
        return self.out(x)


class SAVAENet(nnx.Module):
    """Encoder, covariate decoder and Weibull time decoder."""

    def __init__(self, in_features: int, cov_out: int, config: SAVAEConfig, *, rngs: nnx.Rngs):
        h, z = config.hidden, config.latent_dim
        self.encoder = _MLP((in_features, *h), 2 * z, config.activation, rngs=rngs)
        self.cov_decoder = _MLP((z, *h), cov_out, config.activation, rngs=rngs)
        self.time_decoder = _MLP((z, *h), 2, config.activation, rngs=rngs)


def _layout(config: SAVAEConfig, num_features: int) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int]]]:
    layout = config.layout or tuple(("gaussian", j, 1) for j in range(num_features))
    if sum(w for _, _, w in layout) != num_features:
        raise ValueError(f"layout covers {sum(w for _, _, w in layout)} columns, data has {num_features}")
    gauss = np.array([s for k, s, _ in layout if k == "gaussian"], np.int32)
    bern = np.array([s for k, s, _ in layout if k == "bernoulli"], np.int32)
    cats = [(s, w) for k, s, w in layout if k == "categorical"]
    return gauss, bern, cats


@functools.cache
def savae(config: SAVAEConfig, num_features: int) -> SurvivalModel:
    """Build SAVAE as pure functions over a plain-dict parameter pytree.

    Returns:
        ``SurvivalModel(init, loss, risk, survival)``:

        * ``loss(params, batch, rng)``: the negative ELBO per patient,
          ``recon + time + beta * KL`` averaged over real rows (aux holds the
          three terms); ``rng=None`` uses ``z = mu`` and no dropout;
        * ``risk(params, x, observed)``: minus the log median survival time of
          the Weibull at ``z = mu`` (higher = worse prognosis);
        * ``survival(params, x, observed, times) -> f32[n, t]``: ``exp(-(t/lam)^k)``.
    """
    gauss, bern, cats = _layout(config, num_features)
    cov_out = 2 * len(gauss) + len(bern) + sum(w for _, w in cats)
    in_features = num_features * (2 if config.use_observed_mask else 1)

    def build(rng: PRNGKey) -> SAVAENet:
        return SAVAENet(in_features, cov_out, config, rngs=nnx.Rngs(params=rng))

    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: build(jax.random.key(0))), nnx.Param)

    def to_module(params: Params) -> SAVAENet:
        state = jax.tree.map(lambda v: v, abstract_state)  # never fill the shared template
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)

    def init(rng: PRNGKey) -> Params:
        return nnx.to_pure_dict(nnx.split(build(rng), nnx.Param)[1])

    def encode(
        net: SAVAENet, x: jax.Array, observed: jax.Array, key: jax.Array | None
    ) -> tuple[jax.Array, jax.Array]:
        inp = jnp.asarray(x, jnp.float32)
        if config.use_observed_mask:
            inp = jnp.concatenate([inp, jnp.asarray(observed, jnp.float32)], axis=-1)
        out = net.encoder(inp, key, config.dropout)
        return out[..., : config.latent_dim], out[..., config.latent_dim :]

    def weibull(net: SAVAENet, z: jax.Array, key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        out = net.time_decoder(z, key, config.dropout)
        return out[..., 0], MAX_LOG_SHAPE * jnp.tanh(out[..., 1] / MAX_LOG_SHAPE)

    def reconstruction_nll(out: jax.Array, x: jax.Array, observed: jax.Array) -> jax.Array:
        """f32[n] negative log-likelihood of the observed covariates."""
        obs = jnp.asarray(observed, jnp.float32)
        g = len(gauss)
        mean, log_sd = out[:, :g], MAX_LOG_SD * jnp.tanh(out[:, g : 2 * g] / MAX_LOG_SD)
        z_score = (x[:, gauss] - mean) * jnp.exp(-log_sd)
        nll = jnp.sum(obs[:, gauss] * (0.5 * _LOG_2PI + log_sd + 0.5 * z_score**2), axis=1)
        logits = out[:, 2 * g : 2 * g + len(bern)]
        nll += jnp.sum(obs[:, bern] * (jax.nn.softplus(logits) - x[:, bern] * logits), axis=1)
        offset = 2 * g + len(bern)
        for start, width in cats:
            log_p = jax.nn.log_softmax(out[:, offset : offset + width], axis=1)
            nll -= obs[:, start] * jnp.sum(x[:, start : start + width] * log_p, axis=1)
            offset += width
        return nll

    def loss(params: Params, batch: NodeData, rng: PRNGKey | None) -> tuple[jax.Array, dict[str, Any]]:
        net = to_module(params)
        keys = [None] * 4 if rng is None else [jax.random.fold_in(rng, i) for i in range(4)]
        x = jnp.asarray(batch.x, jnp.float32)
        mu, log_var = encode(net, x, batch.observed, keys[0])
        if rng is None:
            z = mu
        else:  # reparameterisation: z = mu + sigma * eps keeps the draw differentiable
            z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(keys[1], mu.shape)
        recon = reconstruction_nll(net.cov_decoder(z, keys[2], config.dropout), x, batch.observed)
        log_scale, log_shape = weibull(net, z, keys[3])
        real = batch.weight > 0
        # Padding rows have time 0; give them a harmless time before the log
        # (a masked -inf would still send nan through the gradient).
        safe_time = jnp.where(real, jnp.maximum(batch.time, 1e-6), 1.0)
        time_nll = -weibull_log_likelihood(safe_time, batch.event, log_scale, log_shape)
        kl = 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1.0 - log_var, axis=1)
        n = jnp.maximum(jnp.sum(batch.weight), 1.0)

        def mean(v: jax.Array) -> jax.Array:
            return jnp.sum(jnp.where(real, batch.weight * v, 0.0)) / n

        terms = {"reconstruction": mean(recon), "time": mean(time_nll), "kl": mean(kl)}
        return terms["reconstruction"] + terms["time"] + config.beta * terms["kl"], terms

    def weibull_at_mean(params: Params, x: jax.Array, observed: jax.Array) -> tuple[jax.Array, jax.Array]:
        net = to_module(params)
        mu, _ = encode(net, x, observed, None)
        return weibull(net, mu, None)

    def risk(params: Params, x: jax.Array, observed: jax.Array) -> jax.Array:
        log_scale, log_shape = weibull_at_mean(params, x, observed)
        # Weibull median: lam * (log 2)^(1/k).
        return -(log_scale + _LOG_LOG_2 * jnp.exp(-log_shape))

    def survival(params: Params, x: jax.Array, observed: jax.Array, times: jax.Array) -> jax.Array:
        log_scale, log_shape = weibull_at_mean(params, x, observed)
        times = jnp.asarray(times, jnp.float32)
        log_t = jnp.log(jnp.maximum(times, 1e-12))[None, :]
        cum_hazard = jnp.exp(jnp.exp(log_shape)[:, None] * (log_t - log_scale[:, None]))
        return jnp.where(times[None, :] > 0, jnp.exp(-cum_hazard), 1.0)

    return SurvivalModel(init=init, loss=loss, risk=risk, survival=survival)
