"""CTGAN in JAX: a conditional WGAN-GP over the mixed-type patient table, trained under any strategy.

Xu, Skoularidou, Cuesta-Infante and Veeramachaneni, "Modeling Tabular Data using Conditional
GAN" (NeurIPS 2019). Rows are represented as in ``ctgan_transform`` (mode-specific normalisation
of continuous columns and log time, one-hot discrete blocks with missingness as a level). As in
the paper: a conditional vector picks one discrete column uniformly and one of its levels with
probability ∝ log(1 + count) (training-by-sampling, over the node's own rows), the real batch is
drawn among rows holding that level, and the generator pays the cross-entropy between its
logits for that column and the condition; the critic sees ``pac`` rows at once (PacGAN, Lin et
al. 2018) and is trained with the Wasserstein loss plus the gradient penalty (Gulrajani et al.
2017, λ = 10); both networks use Adam (lr 2e-4, betas (0.5, 0.9), the package's weight decay
1e-6). Generator: residual blocks ``h ⊕ ReLU(Norm(FC(h)))``, then tanh for α and Gumbel-softmax
(τ = 0.2) for modes and discrete blocks. Differences from the package: LayerNorm in place of
BatchNorm (no running statistics to federate, a row's output does not depend on its batch mates),
real rows drawn for the same conditions as the fakes (the package permutes them), and
missingness drawn as data. Optional (``outcome_weight`` > 0; 0 = the paper's): CTAB-GAN's auxiliary loss
(Zhao, Kunar, Birke and Chen, ACML 2021) for the survival outcome: an auxiliary network learns the event
and log time from the covariates on real rows, and the generator pays its loss on the generated rows.
Optional (``outcome_draw="conditional"``; ``"generator"`` = the paper's): SurvivalGAN's outcome draw
(Norcliffe et al., AISTATS 2023): a conditional survival model p(e, log t | covariates)
(``outcome_model``), fitted by maximum likelihood on the node's real rows, replaces the generator's event
and time of every sampled row by a draw given the row's generated covariates. The generator's own event and
time columns are still trained (the critic judges whole rows and the event is a condition block); only
sampling discards them, so the GAN's training is the paper's bit for bit.

Federated training: one *GAN step* is ``critic_steps`` critic updates followed by one generator
update, each on a fresh conditional batch; a round runs ``strategy.client.local_epochs`` GAN steps
per node (Adam states start fresh each round, local to the node), then FedAvg averages both
networks' parameters (``{"generator", "critic"}``, and ``"auxiliary"`` or ``"outcome"`` when on) with
the strategy's weights, so the critic a node starts from is the federation's.
``GenerativeModel.local_training`` carries that step; the client's optimiser settings do not apply (this
file's config holds the paper's).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import polars as pl

from fedjax_rhd.models import ctgan_transform as tf
from fedjax_rhd.models import outcome_model as om
from fedjax_rhd.models.outcome_model import dense as _dense  # torch's nn.Linear initialisation
from fedjax_rhd.models.tabular import ColumnSpec, check_schema, decode_table, table_schema
from fedjax_rhd.typing import GenerativeModel, LocalTraining, NodeData, Params, PRNGKey
from harmonize.guide import Guide

OUTCOME_DRAWS = ("generator", "conditional")


@dataclasses.dataclass(frozen=True)
class CTGANConfig:
    """CTGAN hyperparameters (the paper's and the package's defaults; hashable); ``conf/model/ctgan.yaml``."""

    name: str = "ctgan"
    embedding_dim: int = 128  # noise z
    generator_dim: tuple[int, ...] = (256, 256)  # residual blocks
    critic_dim: tuple[int, ...] = (256, 256)
    pac: int = 10  # PacGAN: rows the critic judges together
    batch_size: int = 500  # rows per GAN step, drawn by training-by-sampling (a multiple of pac)
    critic_steps: int = 1  # critic updates per generator update (the package's discriminator_steps)
    gp_weight: float = 10.0  # λ of the gradient penalty
    generator_lr: float = 2e-4
    critic_lr: float = 2e-4
    beta1: float = 0.5
    beta2: float = 0.9
    weight_decay: float = 1e-6
    critic_dropout: float = 0.5
    tau: float = 0.2  # Gumbel-softmax temperature
    log_frequency: bool = True  # condition levels ∝ log(1 + count) in training (False: ∝ count)
    # with log_frequency: a block's "missing" level and the observed flags keep their count share, and only
    # the value levels share the rest ∝ log(1 + count). The paper's log frequency lifts rare levels (a
    # mutation in 1 % of patients) against mode dropping, but it also over-draws the few rows with a
    # missing value, which miss many at once (docs/ctgan.md §1); False = the paper's, every level by log
    missing_by_count: bool = False
    # with log_frequency: 0 = value levels ∝ log(1 + n), the paper's; p in (0, 1] = ∝ n^p (1: by count), a
    # milder lift of rare levels than the log's (session 16, experiments/synthetic/ctgan.md)
    frequency_power: float = 0.0
    time_floor: float = 1e-3  # follow-up below it is modelled as it (log time needs t > 0)
    reproduce_missingness: bool = True  # False: every synthetic value present
    # the mode-specific normaliser (ctgan_transform.fit_modes; rdt's ClusterBasedNormalizer settings)
    modes: int = 10
    mode_weight_prior: float = 1e-3
    mode_weight_threshold: float = 0.005
    mode_max_iter: int = 100
    mode_tol: float = 1e-4
    mode_min_count: float = 10.0  # a mode of fewer patients (summed) is left out
    mode_node_min_count: float = 10.0  # a node sends zeros for a mode it holds fewer patients of
    n_synthetic: int = 0  # rows to sample; 0 = as many as the federation's training patients
    # the outcome loss (CTAB-GAN's auxiliary loss, Zhao et al. 2021; 0 = the paper's CTGAN): an auxiliary
    # network predicts the event and log time from the covariates on real rows, and the generator pays
    # outcome_weight × its loss on the generated rows (covariates → the generated outcome)
    outcome_weight: float = 0.0
    outcome_dim: tuple[int, ...] = (128,)
    outcome_lr: float = 0.0  # the auxiliary's (or the outcome model's) Adam learning rate; 0 = generator_lr
    # where a sampled row's event and time come from: "generator" (its own columns, the paper's) or
    # "conditional" (SurvivalGAN's: a draw from p(e, log t | the generated covariates), a model of
    # outcome_dim ReLU layers, () = linear, fitted on real rows; docs/ctgan.md §2)
    outcome_draw: str = "generator"
    # > 0: rows are drawn from an exponential moving average of the generator's weights, updated
    # after every generator step with this decay (Yazici et al., ICLR 2019, "The unusual
    # effectiveness of averaging in GAN training"); 0 = the paper's last iterate. The average is a
    # parameter like the others, so FedAvg averages it too (linear: the average of the nodes'
    # averages is the average of the averaged trajectories)
    generator_ema: float = 0.0
    # ridge penalty of the conditional outcome model (outcome_draw="conditional"): l2/2 · |W|² on its
    # weight matrices (not its biases), added to the mean NLL per row; 0 = plain maximum likelihood
    outcome_l2: float = 0.0
    # the conditional outcome model's follow-ups at or below time_floor (IWG-PM: 45 of 2,811 patients with
    # follow-up 0, censored at diagnosis): False = a point at log(time_floor), as written; True = left-
    # censored there (a Tobit term, outcome_model.outcome_model's log_time_floor)
    outcome_floor_censored: bool = False
    # filled at the entry point, never in YAML: the guide's columns (for_guide), then the fitted
    # modes (C rows of K weights, means, sds) and each discrete level's federated count
    schema: tuple[Any, ...] = ()
    fitted_modes: tuple[Any, ...] = ()
    level_counts: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        for key in ("generator_dim", "critic_dim", "outcome_dim"):
            object.__setattr__(self, key, tuple(int(h) for h in getattr(self, key)))
        object.__setattr__(
            self, "schema", tuple(ColumnSpec(*c[:4], tuple(c[4]), *c[5:]) for c in self.schema)
        )
        object.__setattr__(
            self, "fitted_modes", tuple(tuple(tuple(map(float, r)) for r in m) for m in self.fitted_modes)
        )
        object.__setattr__(self, "level_counts", tuple(float(v) for v in self.level_counts))
        if self.name != "ctgan":
            raise ValueError(f"CTGANConfig is model 'ctgan', not {self.name!r}")
        checks = {
            "embedding_dim": self.embedding_dim >= 1, "pac": self.pac >= 1,
            "batch_size": self.batch_size >= self.pac and self.batch_size % self.pac == 0,
            "critic_steps": self.critic_steps >= 1, "gp_weight": self.gp_weight >= 0,
            "generator_lr": self.generator_lr > 0, "critic_lr": self.critic_lr > 0,
            "beta1": 0 <= self.beta1 < 1, "beta2": 0 <= self.beta2 < 1,
            "weight_decay": self.weight_decay >= 0, "critic_dropout": 0 <= self.critic_dropout < 1,
            "tau": self.tau > 0, "time_floor": self.time_floor > 0,
            "modes": self.modes >= 1, "mode_weight_prior": self.mode_weight_prior > 0,
            "mode_max_iter": self.mode_max_iter >= 1, "mode_tol": self.mode_tol > 0,
            "mode_min_count": self.mode_min_count >= 0, "mode_node_min_count": self.mode_node_min_count >= 0,
            "n_synthetic": self.n_synthetic >= 0, "outcome_weight": self.outcome_weight >= 0,
            "outcome_lr": self.outcome_lr >= 0, "generator_ema": 0 <= self.generator_ema < 1,
            "outcome_l2": self.outcome_l2 >= 0, "frequency_power": 0 <= self.frequency_power <= 1,
        }  # fmt: skip
        for key, ok in checks.items():
            if not ok:
                hint = " (a positive multiple of model.pac)" if key == "batch_size" else ""
                raise ValueError(f"model.{key}={getattr(self, key)!r} is out of range{hint}")
        if self.outcome_draw not in OUTCOME_DRAWS:
            raise ValueError(f"model.outcome_draw must be one of {OUTCOME_DRAWS}, got {self.outcome_draw!r}")
        if self.outcome_draw == "conditional" and self.outcome_weight:
            raise ValueError(
                "model.outcome_draw=conditional replaces the generator's outcome at sampling, so the outcome "
                "loss (model.outcome_weight > 0) that shapes it has nothing to act on: set one of them"
            )
        if self.frequency_power and not self.log_frequency:
            raise ValueError(
                "model.frequency_power replaces the log of model.log_frequency=true; with log_frequency=false"
                " every level is drawn by count: set log_frequency=true"
            )
        if self.missing_by_count and not self.log_frequency:
            raise ValueError(
                "model.missing_by_count=true keeps missingness at its count share under the log frequency; "
                "with model.log_frequency=false every level is already drawn by count: set log_frequency=true"
            )

    def for_guide(self, guide: Guide) -> CTGANConfig:
        """This config with ``guide``'s schema (column kinds, levels, valid ranges)."""
        return dataclasses.replace(self, schema=table_schema(guide))

    def with_fit(self, modes: tf.Modes, level_counts: np.ndarray) -> CTGANConfig:
        """This config with the federated normaliser and level counts (``fedjax_rhd.generative``)."""
        return dataclasses.replace(
            self, fitted_modes=tuple(np.asarray(a).tolist() for a in modes), level_counts=tuple(level_counts)
        )


def _apply(layer: dict[str, jax.Array], h: jax.Array) -> jax.Array:
    return h @ layer["w"] + layer["b"]


def gradient_penalty(critic: Any, real: jax.Array, fake: jax.Array, key: PRNGKey, pac: int) -> jax.Array:
    """WGAN-GP's E[(‖∇D(x̂)‖ − 1)²] at x̂ = u·real + (1 − u)·fake, one u ~ U(0, 1) per pac group.

    ``critic`` maps f32[m, pac·d] to f32[m]; the gradient norm is over each pac group's inputs.
    """
    m, d = real.shape[0] // pac, real.shape[1]
    u = jnp.repeat(jax.random.uniform(key, (m, 1)), pac * d, axis=1).reshape(m * pac, d)
    mixed = (u * real + (1.0 - u) * fake).reshape(m, pac * d)
    grads = jax.grad(lambda h: jnp.sum(critic(h)))(mixed)
    return jnp.mean((jnp.sqrt(jnp.sum(grads**2, axis=1) + 1e-12) - 1.0) ** 2)


def missing_positions(layout: tf.Layout) -> np.ndarray:
    """bool[cond_width]: the condition positions of missingness (each binary and categorical block's
    "missing" level, both levels of every observed flag); the value levels and the event are False."""
    parts = [np.array([False, False, True])] * len(layout.binary)
    parts += [np.r_[np.zeros(levels, bool), True] for _, levels in layout.categorical]
    parts += [np.array([True, True])] * len(layout.continuous)
    return np.concatenate([*parts, np.array([False, False])])


def condition_probabilities(
    counts: jax.Array,
    layout: tf.Layout,
    log_frequency: bool,
    missing_by_count: bool = False,
    power: float = 0.0,
) -> jax.Array:
    """f32[cond_width] per discrete block, its levels' sampling probabilities (∝ log(1 + n) or n).

    ``power`` > 0 (with ``log_frequency``): ∝ n^power in place of log(1 + n).

    ``missing_by_count`` (with ``log_frequency``): the positions of :func:`missing_positions` get their
    count share n / N of the block, and the value levels share the rest (∝ log(1 + n), or n^power). A
    block without any count (no row) gets equal probabilities.
    """
    if not log_frequency:
        freq = counts
    else:
        freq = jnp.power(counts, power) if power else jnp.log1p(counts)

    def normalise(block: jax.Array) -> jax.Array:
        total = jnp.sum(block, axis=-1, keepdims=True)
        return jnp.where(total > 0, block / jnp.where(total > 0, total, 1.0), 1.0 / block.shape[-1])

    probs = tf.block_apply(normalise, freq[None], layout.discrete_widths)[0]
    if not (log_frequency and missing_by_count):
        return probs
    missing = missing_positions(layout)
    share = tf.block_apply(normalise, counts[None], layout.discrete_widths)[0]  # n / N
    value_freq = tf.block_apply(normalise, jnp.where(missing, 0.0, freq)[None], layout.discrete_widths)[0]

    def block_sum(values: jax.Array) -> jax.Array:  # each position: the sum over its block
        return tf.block_apply(
            lambda b: jnp.broadcast_to(jnp.sum(b, -1, keepdims=True), b.shape),
            values[None],
            layout.discrete_widths,
        )[0]

    # the mass the block's value levels hold by count: 1 − Σ over its missing positions of n / N
    missing_mass = block_sum(jnp.where(missing, share, 0.0))
    mixed = jnp.where(missing, share, (1.0 - missing_mass) * value_freq)
    return jnp.where(block_sum(counts) > 0, mixed, probs)  # a block no row holds: equal, as without


def sample_conditions(
    probs: jax.Array, layout: tf.Layout, key: PRNGKey, n: int
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """A block uniformly, then a level of it by ``probs``: (cond f32[n, W], mask f32[n, B], level i32[n]).

    ``mask`` is the chosen block one-hot; ``level`` the chosen level's position in the vector.
    """
    widths = np.asarray(layout.discrete_widths)
    block_of = np.repeat(np.arange(len(widths)), widths)  # the block each cond position belongs to
    kb, kl = jax.random.split(key)
    block = jax.random.randint(kb, (n,), 0, len(widths))
    logits = jnp.where(block[:, None] == block_of[None], jnp.log(probs)[None], -jnp.inf)
    level = jax.random.categorical(kl, logits, axis=1)
    return jax.nn.one_hot(level, layout.cond_width), jax.nn.one_hot(block, len(widths)), level


def ctgan(config: CTGANConfig, num_features: int) -> GenerativeModel:
    """CTGAN's pure functions (:func:`_build`)."""
    return _build(config, num_features)[0]


def sample_counted(
    config: CTGANConfig, num_features: int, generator: dict[str, Any], rng: PRNGKey, n: int
) -> tuple[pl.DataFrame, dict[str, int]]:
    """``sample(generator, rng, n)`` and how many values per column were clipped into the guide's range."""
    return _build(config, num_features)[1](generator, rng, n)


def log_time_scale(modes: tf.Modes) -> tuple[float, float]:
    """(mean, sd) of log time under its fitted mode mixture (the last continuous column)."""
    weights, means, sds = modes.weights[-1], modes.means[-1], modes.stds[-1]
    mean = float(np.sum(weights * means))
    return mean, float(np.sqrt(max(np.sum(weights * (sds**2 + means**2)) - mean**2, 1e-6)))


def conditional_outcome_model(
    config: CTGANConfig, num_features: int, modes: tf.Modes
) -> om.OutcomeModel | None:
    """The outcome model of ``outcome_draw="conditional"`` (None otherwise), on log time's fitted scale."""
    if config.outcome_draw != "conditional":
        return None
    floor = float(np.log(np.float32(config.time_floor))) if config.outcome_floor_censored else None
    return om.outcome_model(2 * num_features, config.outcome_dim, *log_time_scale(modes), floor)


@functools.cache
def _build(config: CTGANConfig, num_features: int) -> tuple[GenerativeModel, Any]:
    """Build CTGAN as pure functions over ``{"generator", "critic"}`` parameter dicts.

    Returns:
        ``GenerativeModel(init, loss, sample, local_training=LocalTraining(init, step))``:
        ``loss(params, batch, rng)`` is the critic's Wasserstein estimate E[D(real)] − E[D(fake)]
        on a training-by-sampling batch of ``batch``'s rows (aux: it, the gradient penalty and the
        conditional cross-entropy; ``rng=None``: a fixed key, no dropout), what validation
        records (a fixed budget: ``strategy.selection=last``); ``sample(generator, rng, n)``
        with ``generator = {"network": params, "scaling": {"center", "scale", "max_time"}}``.
    """
    schema = config.schema or tuple(ColumnSpec(f"x{j}", "continuous", j, 1) for j in range(num_features))
    check_schema(schema, num_features)
    layout = tf.make_layout(schema, config.modes)
    fitted = config.fitted_modes or tf.default_modes(layout)
    modes = tf.Modes(*(np.asarray(a, np.float32) for a in fitted))  # numpy: a constant in every trace
    mode_ok = np.ones((layout.n_continuous, 1 + config.modes), bool)
    mode_ok[:, 1:] = modes.weights > 0
    # logits of modes a column does not have are pushed to -1e9 (never drawn); discrete blocks all kept
    allowed = np.concatenate([mode_ok.reshape(-1), np.ones(layout.cond_width, bool)])
    level_counts = np.asarray(config.level_counts or np.ones(layout.cond_width), np.float32)
    pac, width, cond_w = config.pac, layout.width, layout.cond_width
    # the outcome loss: covariates = the row less log time (the last continuous column) and the event block
    n_covariates = layout.width - (1 + config.modes) - 2
    lt_mean, lt_sd = log_time_scale(modes)
    # outcome_draw="conditional": p(e, log t | a row's values and flags as written), log time on that scale
    outcome = conditional_outcome_model(config, num_features, modes)

    def init(rng: PRNGKey) -> Params:
        keys = iter(jax.random.split(rng, 16))
        gen, h = {}, config.embedding_dim + cond_w
        for i, out in enumerate(config.generator_dim):
            gen[f"block{i}"] = {**_dense(next(keys), h, out), "scale": jnp.ones(out), "bias": jnp.zeros(out)}
            h += out  # residual blocks concatenate their input
        gen["out"] = _dense(next(keys), h, width)
        crit, h = {}, pac * (width + cond_w)
        for i, out in enumerate(config.critic_dim):
            crit[f"layer{i}"] = _dense(next(keys), h, out)
            h = out
        crit["out"] = _dense(next(keys), h, 1)
        if outcome is not None:  # its own key: generator and critic start as without it
            params = {"generator": gen, "critic": crit, "outcome": outcome.init(jax.random.fold_in(rng, 1))}
        elif not config.outcome_weight:
            params = {"generator": gen, "critic": crit}
        else:
            aux, h = {}, n_covariates
            for i, out in enumerate(config.outcome_dim):
                aux[f"layer{i}"] = _dense(next(keys), h, out)
                h = out
            aux["out"] = _dense(next(keys), h, 2)
            params = {"generator": gen, "critic": crit, "auxiliary": aux}
        if config.generator_ema:  # the average starts at the initial generator
            params["generator_ema"] = gen
        return params

    def generate(gen: Params, z: jax.Array, cond: jax.Array, key: PRNGKey) -> tuple[jax.Array, jax.Array]:
        """(activated row f32[n, width], raw logits): tanh for α, Gumbel-softmax for one-hot blocks."""
        h = jnp.concatenate([z, cond], axis=1)
        for i in range(len(config.generator_dim)):
            block = gen[f"block{i}"]
            a = _apply(block, h)
            a = (a - a.mean(1, keepdims=True)) / jnp.sqrt(a.var(1, keepdims=True) + 1e-5)
            h = jnp.concatenate([jax.nn.relu(a * block["scale"] + block["bias"]), h], axis=1)
        raw = _apply(gen["out"], h)
        raw = jnp.where(allowed[None], raw, -1e9)
        gumbel = -jnp.log(-jnp.log(jax.random.uniform(key, raw.shape, minval=1e-10, maxval=1.0)))
        n, cw, c = raw.shape[0], layout.continuous_width, layout.n_continuous
        cont = raw[:, :cw].reshape(n, c, 1 + config.modes)
        mode = jax.nn.softmax(
            (cont[..., 1:] + gumbel[:, :cw].reshape(n, c, -1)[..., 1:]) / config.tau, axis=-1
        )
        soft = tf.block_apply(
            lambda b: jax.nn.softmax(b / config.tau, axis=-1),
            raw[:, cw:] + gumbel[:, cw:],
            layout.discrete_widths,
        )
        row = jnp.concatenate(
            [jnp.concatenate([jnp.tanh(cont[..., :1]), mode], axis=2).reshape(n, cw), soft], 1
        )
        return row, raw

    def critic_fn(crit: Params, h: jax.Array, key: PRNGKey | None) -> jax.Array:
        for i in range(len(config.critic_dim)):
            h = jax.nn.leaky_relu(_apply(crit[f"layer{i}"], h), 0.2)
            if key is not None and config.critic_dropout > 0:
                keep = jax.random.bernoulli(jax.random.fold_in(key, i), 1.0 - config.critic_dropout, h.shape)
                h = jnp.where(keep, h / (1.0 - config.critic_dropout), 0.0)
        return _apply(crit["out"], h)[:, 0]

    def packed(rows: jax.Array, cond: jax.Array) -> jax.Array:
        return jnp.concatenate([rows, cond], axis=1)

    def conditional_batch(batch: NodeData, key: PRNGKey) -> tuple[jax.Array, jax.Array, jax.Array]:
        """Training-by-sampling on ``batch``'s rows: (cond, column mask, real rows encoded)."""
        onehot = tf.discrete_onehot(batch, layout) * (batch.weight > 0)[:, None]
        probs = condition_probabilities(
            onehot.sum(0), layout, config.log_frequency, config.missing_by_count, config.frequency_power
        )
        kc, kr, km = jax.random.split(key, 3)
        cond, mask, level = sample_conditions(probs, layout, kc, config.batch_size)
        holds = jnp.take(onehot, level, axis=1).T  # [B, n]: 1 where a row holds the condition's level
        rows = jax.random.categorical(kr, jnp.where(holds > 0, 0.0, -jnp.inf), axis=1)
        values, _ = tf.continuous_values(jax.tree.map(lambda a: a[rows], batch), layout, config.time_floor)
        real = jnp.concatenate([tf.encode_continuous(values, modes, km), onehot[rows]], axis=1)
        return cond, mask, real

    def cond_cross_entropy(raw: jax.Array, cond: jax.Array, mask: jax.Array) -> jax.Array:
        """The package's ``_cond_loss``: per row, the CE of the chosen block's logits vs its condition."""
        logp = tf.block_apply(
            lambda c: jax.nn.log_softmax(c, axis=-1),
            raw[:, layout.continuous_width :],
            layout.discrete_widths,
        )
        terms = tf.block_reduce(lambda c: jnp.sum(c, axis=-1), -cond * logp, layout.discrete_widths)
        return jnp.sum(terms * mask) / raw.shape[0]

    def critic_loss(
        crit: Params, gen: Params, batch: NodeData, key: PRNGKey, train: bool
    ) -> tuple[jax.Array, dict]:
        ks = jax.random.split(key, 6)
        cond, mask, real = conditional_batch(batch, ks[0])
        z = jax.random.normal(ks[1], (config.batch_size, config.embedding_dim))
        fake, raw = generate(gen, z, cond, ks[2])
        real_in, fake_in = packed(real, cond), packed(jax.lax.stop_gradient(fake), cond)
        drop = ks[3] if train else None
        d_real = critic_fn(crit, real_in.reshape(-1, pac * real_in.shape[1]), drop)
        d_fake = critic_fn(crit, fake_in.reshape(-1, pac * fake_in.shape[1]), drop)
        wasserstein = jnp.mean(d_real) - jnp.mean(d_fake)
        gp = gradient_penalty(lambda h: critic_fn(crit, h, drop), real_in, fake_in, ks[4], pac)
        aux = {
            "wasserstein": wasserstein,
            "gradient_penalty": gp,
            "conditional_ce": cond_cross_entropy(raw, cond, mask),
        }
        return -wasserstein + config.gp_weight * gp, aux

    def generator_loss(
        gen: Params, crit: Params, aux: Params | None, batch: NodeData, key: PRNGKey
    ) -> jax.Array:
        ks = jax.random.split(key, 4)
        cond, mask, _ = conditional_batch(batch, ks[0])  # the real rows are not needed here
        fake, raw = generate(
            gen, jax.random.normal(ks[1], (config.batch_size, config.embedding_dim)), cond, ks[2]
        )
        fake_in = packed(fake, cond)
        d_fake = critic_fn(crit, fake_in.reshape(-1, pac * fake_in.shape[1]), ks[3])
        total = -jnp.mean(d_fake) + cond_cross_entropy(raw, cond, mask)
        if aux is not None:
            total = total + config.outcome_weight * outcome_loss(aux, fake)
        return total

    def outcome_loss(aux: Params, row: jax.Array) -> jax.Array:
        """Mean over rows of BCE(event) + ½ (log time − prediction)², both predicted from the covariates."""
        cov, event, log_time = tf.split_outcome(row, layout, modes)
        log_time = (log_time - lt_mean) / lt_sd  # the mixture's mean and sd: a unit-scale target
        h = cov
        for i in range(len(config.outcome_dim)):
            h = jax.nn.relu(_apply(aux[f"layer{i}"], h))
        out = _apply(aux["out"], h)
        bce = optax.sigmoid_binary_cross_entropy(out[:, 0], event)
        return jnp.mean(bce + 0.5 * (out[:, 1] - log_time) ** 2)

    def uniform_rows(batch: NodeData, key: PRNGKey) -> jax.Array:
        """``batch_size`` real rows drawn uniformly (not by condition: a drawn event level would bias the
        outcome given the covariates), encoded."""
        kr, km = jax.random.split(key)
        rows = jax.random.categorical(
            kr, jnp.where(batch.weight > 0, 0.0, -jnp.inf), shape=(config.batch_size,)
        )
        picked = jax.tree.map(lambda a: a[rows], batch)
        values, _ = tf.continuous_values(picked, layout, config.time_floor)
        return jnp.concatenate(
            [tf.encode_continuous(values, modes, km), tf.discrete_onehot(picked, layout)], 1
        )

    def outcome_nll(params: Params, batch: NodeData, key: PRNGKey) -> jax.Array:
        """The outcome model's mean NLL on ``batch_size`` real rows drawn uniformly (as ``uniform_rows``)."""
        rows = jax.random.categorical(
            key, jnp.where(batch.weight > 0, 0.0, -jnp.inf), shape=(config.batch_size,)
        )
        picked = jax.tree.map(lambda a: a[rows], batch)
        log_t = jnp.log(jnp.maximum(jnp.asarray(picked.time, jnp.float32), config.time_floor))
        inputs = om.row_inputs(picked.x, picked.observed)
        nll = jnp.mean(outcome.nll(params, inputs, jnp.asarray(picked.event, jnp.float32), log_t))
        if not config.outcome_l2:  # the paper's maximum likelihood, the program unchanged
            return nll
        return nll + 0.5 * config.outcome_l2 * om.weight_ridge(params)

    def adam(lr: float) -> optax.GradientTransformation:
        # torch's Adam(weight_decay=wd) adds wd·p to the gradient before the moments, as here
        return optax.chain(
            optax.add_decayed_weights(config.weight_decay),
            optax.scale_by_adam(config.beta1, config.beta2),
            optax.scale(-lr),
        )

    opt_g, opt_c = adam(config.generator_lr), adam(config.critic_lr)
    opt_a = adam(config.outcome_lr or config.generator_lr)
    opts = {"generator": opt_g, "critic": opt_c, "auxiliary": opt_a, "outcome": opt_a}

    def init_optimizers(params: Params) -> Any:
        return {name: opts[name].init(p) for name, p in params.items() if name in opts}

    def step(params: Params, opt_state: Any, batch: NodeData, rng: PRNGKey) -> tuple[Params, Any, jax.Array]:
        """One GAN step: ``critic_steps`` critic updates, then one generator update (and one step of the
        auxiliary or the outcome model, each on uniformly drawn real rows)."""
        gen, crit, s_g, s_c = (
            params["generator"],
            params["critic"],
            opt_state["generator"],
            opt_state["critic"],
        )
        loss = jnp.zeros(())
        for i in range(config.critic_steps):
            (loss, _), g = jax.value_and_grad(critic_loss, has_aux=True)(
                crit, gen, batch, jax.random.fold_in(rng, i), True
            )
            upd, s_c = opt_c.update(g, s_c, crit)
            crit = optax.apply_updates(crit, upd)
        aux = params.get("auxiliary")
        new_params, new_state = {"critic": crit}, {"critic": s_c}
        if aux is not None:  # the auxiliary learns the outcome on real rows before the generator pays it
            real = uniform_rows(batch, jax.random.fold_in(rng, config.critic_steps + 1))
            upd, new_state["auxiliary"] = opt_a.update(
                jax.grad(outcome_loss)(aux, real), opt_state["auxiliary"], aux
            )
            aux = new_params["auxiliary"] = optax.apply_updates(aux, upd)
        if outcome is not None:  # one maximum-likelihood step on real rows, with its own key
            key = jax.random.fold_in(rng, config.critic_steps + 2)
            g = jax.grad(outcome_nll)(params["outcome"], batch, key)
            upd, new_state["outcome"] = opt_a.update(g, opt_state["outcome"], params["outcome"])
            new_params["outcome"] = optax.apply_updates(params["outcome"], upd)
        g = jax.grad(generator_loss)(gen, crit, aux, batch, jax.random.fold_in(rng, config.critic_steps))
        upd, new_state["generator"] = opt_g.update(g, s_g, gen)
        new_params["generator"] = optax.apply_updates(gen, upd)
        if "generator_ema" in params:
            decay = config.generator_ema
            new_params["generator_ema"] = jax.tree.map(
                lambda avg, now: decay * avg + (1.0 - decay) * now,
                params["generator_ema"],
                new_params["generator"],
            )
        return new_params, new_state, loss

    def loss(params: Params, batch: NodeData, rng: PRNGKey | None) -> tuple[jax.Array, dict[str, Any]]:
        key = jax.random.key(0) if rng is None else rng  # evaluation: the same draws every time
        _, aux = critic_loss(params["critic"], params["generator"], batch, key, rng is not None)
        return aux["wasserstein"], aux

    @functools.partial(jax.jit, static_argnames=("n",))
    def draw(network: Params, rng: PRNGKey, n: int) -> dict[str, jax.Array]:
        """n rows: conditions by the federated level counts (∝ count), noise, the generator, decoded."""
        kc, kz, kg = jax.random.split(rng, 3)
        cond, _, _ = sample_conditions(condition_probabilities(level_counts, layout, False), layout, kc, n)
        weights = network.get("generator_ema", network["generator"])
        row, _ = generate(weights, jax.random.normal(kz, (n, config.embedding_dim)), cond, kg)
        cont = tf.decode_continuous(row[:, : layout.continuous_width], modes)
        out = tf.decode_discrete(row[:, layout.continuous_width :], layout, num_features)
        x = out["x"].at[:, np.asarray(layout.continuous, np.int32)].set(cont[:, :-1])
        event, log_time = out["event"], cont[:, -1]
        if outcome is not None:  # SurvivalGAN: event, then log time, given the covariates as written
            shown = out["present"] if config.reproduce_missingness else jnp.ones_like(out["present"])
            inputs = om.row_inputs(x, shown)
            event, log_time = outcome.draw(network["outcome"], inputs, jax.random.fold_in(rng, 3))
        return {"x": x, "present": out["present"], "log_time": log_time, "event": event}

    def counted(generator: dict[str, Any], rng: PRNGKey, n: int) -> tuple[pl.DataFrame, dict[str, int]]:
        drawn = jax.tree.map(np.asarray, draw(generator["network"], rng, n))
        scaling = generator.get("scaling") or {}
        center = np.asarray(scaling.get("center", np.zeros(num_features)), np.float64)
        scale = np.asarray(scaling.get("scale", np.ones(num_features)), np.float64)
        values = drawn["x"].astype(np.float64) * scale + center
        present = drawn["present"] if config.reproduce_missingness else np.ones_like(drawn["present"])
        with np.errstate(over="ignore"):  # exp of a wild draw: inf, then bounded by max_time below
            time = np.exp(drawn["log_time"].astype(np.float64))
        clipped: dict[str, int] = {}
        table = decode_table(
            values, present, time, drawn["event"], schema,
            time_bounds=(config.time_floor, float(scaling.get("max_time", np.inf))), id_prefix="synthetic",
            clipped=clipped,
        )  # fmt: skip
        return table, clipped

    def sample(generator: dict[str, Any], rng: PRNGKey, n: int) -> pl.DataFrame:
        return counted(generator, rng, n)[0]

    training = LocalTraining(init_optimizers, step)
    return GenerativeModel(init=init, loss=loss, sample=sample, local_training=training), counted
