"""VAE-BGM: a VAE over the mixed-type patient table whose prior is a Bayesian Gaussian mixture.

After Apellániz et al., arXiv:2404.08434 (VAE-BGM, the study's synthetic-data generator). A VAE
learns the table; a Bayesian Gaussian mixture fitted to the training patients' latent means
replaces its N(0, I) prior, so draws land where patients are; the decoder maps them back to rows.

Here every column has a likelihood of its kind (Gaussian for continuous, Bernoulli for binary,
categorical for a one-hot block), survival is two more columns (log time: Gaussian; event:
Bernoulli), and missingness is explicit: a Bernoulli head per feature models its ``observed``
flag, so synthetic rows reproduce the missingness pattern (whole blocks included, through z) when
``reproduce_missingness`` is on. Covariate terms cover observed entries only (an imputed value is
not data). The VAE trains under any strategy (FedAvg across nodes); the mixture is fitted
afterwards by federated variational EM (``fedjax_rhd.models.bgm``; ``fedjax_rhd.generative``)
from per-node sums, never from pooled latent means.

The outcome (``outcome_head``). By default (``"latent"``, the paper's) log time and event are two
more heads of the decoder, drawn independently given z: every covariate-outcome link must pass
through the 8-dimensional z, and the covariates' own decoder noise dilutes it (the synthetic
tables' train-on-synthetic Cox C fell 0.02-0.03 below train-on-real; experiments/synthetic/README.md,
"The outcome link"). ``"row"`` and ``"row_latent"`` instead decode the outcome from the *row*:
p(x, t, e | z) = p(x | z) p(e | x, z) p(log t | e, x, z), a conditional survival model on the
covariates as drawn (and on z for ``"row_latent"``), as SurvivalGAN generates the outcome of its
synthetic covariates with a conditional survival model (Norcliffe, Cebere, Imrie, Liò and van
der Schaar, AISTATS 2023). It is still the ELBO (the chain rule factorises the same likelihood);
log time is Gaussian given the event (death and censoring times differ), and the head sees each
covariate's value only where observed (value × flag, and the flags), so training rows (imputed)
and synthetic rows (drawn, with drawn missingness) look alike to it. ``outcome_weight`` scales
the outcome's two log-likelihood terms in the loss (1 = the ELBO), after CTAB-GAN's auxiliary
outcome loss (Zhao, Kunar, Birke and Chen, ACML 2021): it buys outcome information in z at the
cost of the other columns.

The time model (``time_model``, row heads only). ``"gaussian"`` (default): the event from a logistic
head, then log time Gaussian given the event and the row. ``"weibull"``: death and censoring are two
latent times T_d, T_c, independent given the row, each Weibull (log T = μ(row) + σ(row)·W, W standard
Gumbel-min, i.e. proportional hazards), and the observed pair is t = min(T_d, T_c), e = [T_d ≤ T_c];
the likelihood of a death is f_d(t) S_c(t), of a censored row S_d(t) f_c(t) (the competing-risks form
of the censored likelihood, Kalbfleisch and Prentice, *The Statistical Analysis of Failure Time
Data*, 2nd ed. 2002, §8.2). Both times are drawn and the smaller kept, so the synthetic outcome
is censored as the real one is, by a separate process, and a Cox model fitted on it is
well specified in the death time's linear predictor (SAVAE's time head is the same Weibull).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import polars as pl
from flax import nnx

from fedjax_rhd.models.bgm import WEIGHT_PRIORS
from fedjax_rhd.models.deepsurv import kernel_sum_of_squares
from fedjax_rhd.models.savae import _ACTIVATIONS, _MLP, MAX_LOG_SD
from fedjax_rhd.models.tabular import ColumnSpec, check_schema, decode_table, table_schema
from fedjax_rhd.typing import GenerativeModel, NodeData, Params, PRNGKey
from harmonize.guide import Guide

_LOG_2PI = float(np.log(2 * np.pi))
_MAX_W = 60.0  # cap on a Gumbel-min score (e^60 ≈ 1e26 < float32's 3e38)
OUTCOME_HEADS = ("latent", "row", "row_latent")
TIME_MODELS = ("gaussian", "weibull")


@dataclasses.dataclass(frozen=True)
class VAEBGMConfig:
    """VAE-BGM hyperparameters (hashable: part of the jit key); ``conf/model/vae_bgm.yaml``."""

    name: str = "vae_bgm"  # the registry key (fedjax_rhd.models.MODELS)
    # A small latent space and one hidden layer: nodes hold tens to thousands of patients.
    latent_dim: int = 8
    hidden: tuple[int, ...] = (64,)
    dropout: float = 0.0
    activation: str = "relu"
    beta: float = 1.0  # KL weight; 1 = the ELBO
    reproduce_missingness: bool = True  # sample each feature's observed flag from its head
    time_floor: float = 1e-3  # follow-up below it is modelled as it (log time needs t > 0)
    # Where time and event are decoded from (module docstring): "latent" (z only, the paper's),
    # "row" (the drawn covariates: p(e | x) p(log t | e, x)) or "row_latent" (the row and z).
    outcome_head: str = "latent"
    outcome_weight: float = 1.0  # scales the time and event terms of the loss; 1 = the ELBO
    # the outcome network's hidden layers (row heads only); () = linear in the row (and z)
    outcome_hidden: tuple[int, ...] = (64,)
    # log time given the row (row heads only; module docstring): "gaussian" given the drawn event,
    # or "weibull": competing Weibull death and censoring times, the smaller observed
    time_model: str = "gaussian"
    # ridge penalty ½·outcome_l2·Σ w² on the outcome network's kernels (row heads), a training term
    # only: validation (rng=None) reads the likelihood, as survival models' selection omits their L2
    outcome_l2: float = 0.0
    # The federated mixture over latent means (fedjax_rhd.models.bgm); sklearn's defaults.
    bgm_components: int = 10
    bgm_weight_prior: str = "dirichlet_process"
    bgm_max_iter: int = 100
    bgm_tol: float = 1e-4
    bgm_reg_covar: float = 1e-6
    # Components below this many patients (summed N_k) are dropped and EM resumes (their patients
    # move to the others); a node sends zeros for a component it holds fewer than
    # ``bgm_node_min_count`` patients of. Either way no mean of one patient's latent code leaves.
    bgm_min_count: float = 10.0
    bgm_node_min_count: float = 10.0
    n_synthetic: int = 0  # rows to sample; 0 = as many as the federation's training patients
    # per guide feature: ColumnSpec tuples, filled by ``for_guide`` at the entry point, never in YAML
    schema: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "outcome_hidden", tuple(int(h) for h in self.outcome_hidden))
        object.__setattr__(
            self, "schema", tuple(ColumnSpec(*c[:4], tuple(c[4]), *c[5:]) for c in self.schema)
        )
        if self.name != "vae_bgm":
            raise ValueError(f"VAEBGMConfig is model 'vae_bgm', not {self.name!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(
                f"model.activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}"
            )
        checks = {
            "latent_dim": self.latent_dim >= 1,
            "dropout": 0.0 <= self.dropout < 1.0,
            "beta": self.beta >= 0,
            "time_floor": self.time_floor > 0,
            "outcome_weight": self.outcome_weight > 0,
            "outcome_l2": self.outcome_l2 >= 0,
            "bgm_components": self.bgm_components >= 1,
            "bgm_max_iter": self.bgm_max_iter >= 1,
            "bgm_tol": self.bgm_tol > 0,
            "bgm_reg_covar": self.bgm_reg_covar >= 0,
            "bgm_min_count": self.bgm_min_count >= 0,
            "bgm_node_min_count": self.bgm_node_min_count >= 0,
            "n_synthetic": self.n_synthetic >= 0,
        }
        for key, ok in checks.items():
            if not ok:
                raise ValueError(f"model.{key}={getattr(self, key)!r} is out of range")
        if self.outcome_head not in OUTCOME_HEADS:
            raise ValueError(f"model.outcome_head must be one of {OUTCOME_HEADS}, got {self.outcome_head!r}")
        if self.time_model not in TIME_MODELS:
            raise ValueError(f"model.time_model must be one of {TIME_MODELS}, got {self.time_model!r}")
        if self.time_model != "gaussian" and self.outcome_head == "latent":
            raise ValueError(
                f"model.time_model={self.time_model!r} needs an outcome network: set model.outcome_head to "
                "'row' or 'row_latent' (the latent head decodes a Gaussian log time from z)"
            )
        if self.bgm_weight_prior not in WEIGHT_PRIORS:
            raise ValueError(
                f"model.bgm_weight_prior must be one of {WEIGHT_PRIORS}, got {self.bgm_weight_prior!r}"
            )

    def for_guide(self, guide: Guide) -> VAEBGMConfig:
        """This config with ``guide``'s schema (column kinds, levels, valid ranges)."""
        return dataclasses.replace(self, schema=table_schema(guide))


class VAEBGMNet(nnx.Module):
    """Encoder q(z | x, observed, log t, event), one decoder for the row's heads and, unless the
    outcome is decoded from z (``outcome_head="latent"``), an outcome network p(t, e | row[, z])."""

    def __init__(
        self, in_features: int, out_features: int, config: VAEBGMConfig, *, rngs: nnx.Rngs,
        outcome_in: int = 0,
    ):  # fmt: skip
        self.encoder = _MLP(
            (in_features, *config.hidden), 2 * config.latent_dim, config.activation, rngs=rngs
        )
        self.decoder = _MLP((config.latent_dim, *config.hidden), out_features, config.activation, rngs=rngs)
        if outcome_in:  # gaussian: event logit; log-time mean and log sd given no event, given an
            # event. weibull: log-time location and log scale of the death time, of the censoring time
            n_out = 4 if config.time_model == "weibull" else 5
            self.outcome = _MLP((outcome_in, *config.outcome_hidden), n_out, config.activation, rngs=rngs)


def _schema(config: VAEBGMConfig, num_features: int) -> tuple[ColumnSpec, ...]:
    schema = config.schema or tuple(ColumnSpec(f"x{j}", "continuous", j, 1) for j in range(num_features))
    check_schema(schema, num_features)
    return schema


@functools.cache
def vae_bgm(config: VAEBGMConfig, num_features: int) -> GenerativeModel:
    """Build VAE-BGM as pure functions over a plain-dict parameter pytree.

    Returns:
        ``GenerativeModel(init, loss, sample, latent)``:

        * ``loss(params, batch, rng)``: the negative ELBO per patient (covariates on observed
          entries, observed flags, log time, event, ``beta`` · KL), averaged over real rows;
          ``rng=None``: z = the encoder mean, no dropout;
        * ``latent(params, batch) -> f32[n, latent_dim]``: encoder means (never leave the node);
        * ``sample(generator, rng, n) -> polars table`` in the guide's schema, where
          ``generator = {"network": params, "prior": {"weights", "means", "cholesky"} (optional;
          default N(0, I)), "scaling": {"center", "scale", "max_time"} (optional; default identity)}``.
    """
    schema = _schema(config, num_features)
    gauss = np.array([c.start for c in schema if c.kind == "continuous"], np.int32)
    bern = np.array([c.start for c in schema if c.kind == "binary"], np.int32)
    cats = [(c.start, c.width) for c in schema if c.kind == "categorical"]
    first = np.array([c.start for c in schema], np.int32)  # a feature's observed flag
    # each encoded column's feature: a feature's drawn flag covers its whole one-hot block
    feature_of = np.repeat(np.arange(len(schema)), [c.width for c in schema])
    g, b, f = len(gauss), len(bern), len(schema)
    ncat = sum(w for _, w in cats)
    from_row = config.outcome_head != "latent"
    weibull = config.time_model == "weibull"
    # decoder outputs, in order: Gaussian means and log sds | Bernoulli logits | categorical logits |
    # observed-flag logits | (outcome_head="latent" only:) log-time mean and log sd | event logit
    off_cat, off_obs = 2 * g + b, 2 * g + b + ncat
    off_time = off_obs + f
    out_features = off_time if from_row else off_time + 3
    in_features = 2 * num_features + 2
    # the outcome network's input: value x flag and the flags per encoded column (and z)
    outcome_in = 0
    if from_row:
        outcome_in = 2 * num_features + (config.latent_dim if config.outcome_head == "row_latent" else 0)

    def build(rng: PRNGKey) -> VAEBGMNet:
        return VAEBGMNet(in_features, out_features, config, rngs=nnx.Rngs(params=rng), outcome_in=outcome_in)

    graphdef, abstract_state = nnx.split(nnx.eval_shape(lambda: build(jax.random.key(0))), nnx.Param)

    def to_module(params: Params) -> VAEBGMNet:
        state = jax.tree.map(lambda v: v, abstract_state)  # never fill the shared template
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)

    def init(rng: PRNGKey) -> Params:
        return nnx.to_pure_dict(nnx.split(build(rng), nnx.Param)[1])

    def log_time(batch: NodeData) -> jax.Array:
        # Padding rows have time 0: the floor keeps the log finite (their weight is 0 anyway).
        return jnp.log(jnp.maximum(jnp.asarray(batch.time, jnp.float32), config.time_floor))

    def encode(net: VAEBGMNet, batch: NodeData, key: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        inp = jnp.concatenate(
            [
                jnp.asarray(batch.x, jnp.float32),
                jnp.asarray(batch.observed, jnp.float32),
                log_time(batch)[:, None],
                jnp.asarray(batch.event, jnp.float32)[:, None],
            ],
            axis=-1,
        )
        out = net.encoder(inp, key, config.dropout)
        return out[..., : config.latent_dim], out[..., config.latent_dim :]

    def bounded(log_sd: jax.Array) -> jax.Array:
        return MAX_LOG_SD * jnp.tanh(log_sd / MAX_LOG_SD)  # sds in (e^-3, e^3): no degenerate step

    def outcome_raw(
        net: VAEBGMNet, x: jax.Array, obs_cols: jax.Array, z: jax.Array, key: jax.Array | None
    ) -> jax.Array:
        """The outcome network's 5 outputs for rows ``x`` with per-column flags ``obs_cols`` (0/1)."""
        parts = [x * obs_cols, obs_cols]  # an unobserved value reads 0, whatever filled or drew it
        if config.outcome_head == "row_latent":
            parts.append(z)
        return net.outcome(jnp.concatenate(parts, axis=-1), key, config.dropout)

    def outcome_heads(raw: jax.Array, event: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(event logit, log-time mean, bounded log sd) of each row; ``event`` picks the row-head's time."""
        if not from_row:  # the decoder's last three outputs
            return raw[:, 2], raw[:, 0], bounded(raw[:, 1])
        dead = event > 0.5
        return (
            raw[:, 0],
            jnp.where(dead, raw[:, 3], raw[:, 1]),
            bounded(jnp.where(dead, raw[:, 4], raw[:, 2])),
        )

    def competing_weibull_log_likelihood(log_t: jax.Array, event: jax.Array, raw: jax.Array) -> jax.Array:
        """Per row, log f_d(y) + log S_c(y) for a death, log S_d(y) + log f_c(y) for a censored row.

        On the log-time scale y = log t, each time is y = μ + σ·W with W standard Gumbel-min:
        log f(y) = w − e^w − log σ and log S(y) = −e^w, w = (y − μ) / σ (module docstring).
        """
        log_sd_d, log_sd_c = bounded(raw[:, 1]), bounded(raw[:, 3])
        # w is capped so that e^w stays finite in float32 on any row, padding included: a where()
        # over an inf would turn the gradient into NaN
        w_d = jnp.minimum((log_t - raw[:, 0]) * jnp.exp(-log_sd_d), _MAX_W)
        w_c = jnp.minimum((log_t - raw[:, 2]) * jnp.exp(-log_sd_c), _MAX_W)
        death = w_d - jnp.exp(w_d) - log_sd_d - jnp.exp(w_c)
        censored = -jnp.exp(w_d) + w_c - jnp.exp(w_c) - log_sd_c
        return jnp.where(event > 0.5, death, censored)

    def nll(out: jax.Array, raw: jax.Array, batch: NodeData) -> dict[str, jax.Array]:
        """Per-row negative log-likelihoods of covariates, observed flags, log time and event.

        ``out``: the decoder's outputs; ``raw``: the outcome heads' (the decoder's last three, or
        the outcome network's five).
        """
        x = jnp.asarray(batch.x, jnp.float32)
        obs = jnp.asarray(batch.observed, jnp.float32)
        mean, log_sd = out[:, :g], bounded(out[:, g : 2 * g])
        z_score = (x[:, gauss] - mean) * jnp.exp(-log_sd)
        cov = jnp.sum(obs[:, gauss] * (0.5 * _LOG_2PI + log_sd + 0.5 * z_score**2), axis=1)
        logits = out[:, 2 * g : 2 * g + b]
        cov += jnp.sum(obs[:, bern] * (jax.nn.softplus(logits) - x[:, bern] * logits), axis=1)
        offset = off_cat
        for start, width in cats:
            log_p = jax.nn.log_softmax(out[:, offset : offset + width], axis=1)
            cov -= obs[:, start] * jnp.sum(x[:, start : start + width] * log_p, axis=1)
            offset += width
        flags = out[:, off_obs:off_time]
        missing = jnp.sum(jax.nn.softplus(flags) - obs[:, first] * flags, axis=1)
        observed_event = jnp.asarray(batch.event, jnp.float32)
        if weibull:  # one joint term for (t, e): the event is which of the two times came first
            time = -competing_weibull_log_likelihood(log_time(batch), observed_event, raw)
            event = jnp.zeros_like(time)
            return {"reconstruction": cov, "missingness": missing, "time": time, "event": event}
        e_logit, t_mean, t_log_sd = outcome_heads(raw, observed_event)
        t_z = (log_time(batch) - t_mean) * jnp.exp(-t_log_sd)
        time = 0.5 * _LOG_2PI + t_log_sd + 0.5 * t_z**2
        event = jax.nn.softplus(e_logit) - observed_event * e_logit
        return {"reconstruction": cov, "missingness": missing, "time": time, "event": event}

    def loss(params: Params, batch: NodeData, rng: PRNGKey | None) -> tuple[jax.Array, dict[str, Any]]:
        net = to_module(params)
        keys = [None] * 4 if rng is None else [jax.random.fold_in(rng, i) for i in range(4)]
        mu, log_var = encode(net, batch, keys[0])
        if rng is None:
            z = mu
        else:  # reparameterisation: z = mu + sigma * eps keeps the draw differentiable
            z = mu + jnp.exp(0.5 * log_var) * jax.random.normal(keys[1], mu.shape)
        out = net.decoder(z, keys[2], config.dropout)
        if from_row:  # p(t, e | the real row [, z]): the row as the model would have drawn it
            obs_cols = jnp.asarray(batch.observed, jnp.float32)
            raw = outcome_raw(net, jnp.asarray(batch.x, jnp.float32), obs_cols, z, keys[3])
        else:
            raw = out[:, off_time:]
        terms = nll(out, raw, batch)
        terms["kl"] = 0.5 * jnp.sum(mu**2 + jnp.exp(log_var) - 1.0 - log_var, axis=1)
        real = batch.weight > 0
        n = jnp.maximum(jnp.sum(batch.weight), 1.0)
        means = {k: jnp.sum(jnp.where(real, batch.weight * v, 0.0)) / n for k, v in terms.items()}
        # the outcome weight multiplies the time and event terms (1.0: exactly the ELBO)
        scale = {"time": config.outcome_weight, "event": config.outcome_weight}
        total = sum(scale.get(k, 1.0) * v for k, v in means.items() if k != "kl") + config.beta * means["kl"]
        if from_row and config.outcome_l2 and rng is not None:
            total = total + 0.5 * config.outcome_l2 * kernel_sum_of_squares(params["outcome"])
        return total, means

    def latent(params: Params, batch: NodeData) -> jax.Array:
        return encode(to_module(params), batch, None)[0]

    @functools.partial(jax.jit, static_argnames=("n",))
    def draw(generator: dict[str, Any], rng: PRNGKey, n: int) -> dict[str, jax.Array]:
        """Latent draws through the decoder: encoded values, flags, time and event per row."""
        keys = jax.random.split(rng, 7)
        prior = generator.get("prior")
        eps = jax.random.normal(keys[0], (n, config.latent_dim))
        if prior is None:
            z = eps
        else:
            comp = jax.random.categorical(keys[1], jnp.log(prior["weights"]), shape=(n,))
            z = prior["means"][comp] + jnp.einsum("nde,ne->nd", prior["cholesky"][comp], eps)
        net = to_module(generator["network"])
        z = z.astype(jnp.float32)
        out = net.decoder(z, None)
        x = jnp.zeros((n, num_features), jnp.float32)
        noise = jax.random.normal(keys[2], (n, g))
        x = x.at[:, gauss].set(out[:, :g] + jnp.exp(bounded(out[:, g : 2 * g])) * noise)
        x = x.at[:, bern].set(jax.random.bernoulli(keys[3], jax.nn.sigmoid(out[:, 2 * g : 2 * g + b])))
        offset = off_cat
        for i, (start, width) in enumerate(cats):
            level = jax.random.categorical(jax.random.fold_in(keys[4], i), out[:, offset : offset + width])
            x = x.at[:, start : start + width].set(jax.nn.one_hot(level, width))
            offset += width
        present = jax.random.bernoulli(keys[5], jax.nn.sigmoid(out[:, off_obs:off_time]))
        if not config.reproduce_missingness:
            present = jnp.ones_like(present)
        t_keys = jax.random.split(keys[6])
        if from_row:  # the event given the drawn row, then log time given the event and the row
            raw = outcome_raw(net, x, present[:, feature_of].astype(jnp.float32), z, None)
            if weibull:  # both latent times drawn (W = −Gumbel-max), the first one observed
                y_d = raw[:, 0] - jnp.exp(bounded(raw[:, 1])) * jax.random.gumbel(t_keys[0], (n,))
                y_c = raw[:, 2] - jnp.exp(bounded(raw[:, 3])) * jax.random.gumbel(t_keys[1], (n,))
                log_t = jnp.minimum(y_d, y_c)
                return {"x": x, "present": present, "log_time": log_t, "event": y_d <= y_c}
            event = jax.random.bernoulli(t_keys[1], jax.nn.sigmoid(raw[:, 0]))
            _, t_mean, t_log_sd = outcome_heads(raw, event.astype(jnp.float32))
            log_t = t_mean + jnp.exp(t_log_sd) * jax.random.normal(t_keys[0], (n,))
            return {"x": x, "present": present, "log_time": log_t, "event": event}
        log_t = out[:, off_time] + jnp.exp(bounded(out[:, off_time + 1])) * jax.random.normal(t_keys[0], (n,))
        event = jax.random.bernoulli(t_keys[1], jax.nn.sigmoid(out[:, off_time + 2]))
        return {"x": x, "present": present, "log_time": log_t, "event": event}

    def sample(generator: dict[str, Any], rng: PRNGKey, n: int) -> pl.DataFrame:
        drawn = jax.tree.map(np.asarray, draw(generator, rng, n))
        scaling = generator.get("scaling") or {}
        center = np.asarray(scaling.get("center", np.zeros(num_features)), np.float64)
        scale = np.asarray(scaling.get("scale", np.ones(num_features)), np.float64)
        values = drawn["x"].astype(np.float64) * scale + center  # back from the standardised space
        max_time = float(scaling.get("max_time", np.inf))
        return decode_table(
            values, drawn["present"], np.exp(drawn["log_time"].astype(np.float64)), drawn["event"], schema,
            time_bounds=(config.time_floor, max_time), id_prefix="synthetic",
        )  # fmt: skip

    return GenerativeModel(init=init, loss=loss, sample=sample, latent=latent)
