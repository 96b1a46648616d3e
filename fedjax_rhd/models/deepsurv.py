"""DeepSurv: an MLP log-risk trained with the Cox partial likelihood.

Katzman et al., "DeepSurv: personalized treatment recommender system using a Cox
proportional hazards deep neural network", BMC Med Res Methodol 18:24 (2018).

The network is a Flax NNX module, but nothing outside this file sees it: the
factory :func:`deepsurv` returns pure functions over a plain nested ``dict`` of
arrays, so strategies, ``jit`` and ``vmap`` only ever handle pytrees. Dropout
masks come from a key passed into every call (no RNG state in the module), so
each node and step gets its own mask under ``vmap``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from fedjax_rhd.models.cox import cox_loss
from fedjax_rhd.models.dropout import TracedRate, active, dropout
from fedjax_rhd.typing import NodeData, Params, PRNGKey, SurvivalModel

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": jax.nn.relu,
    "selu": jax.nn.selu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
}


@dataclasses.dataclass(frozen=True)
class DeepSurvConfig:
    """DeepSurv hyperparameters; frozen and hashable so it can be a ``jit`` static arg."""

    name: str = "deepsurv"  # the registry key (fedjax_rhd.models.MODELS) and conf/model/deepsurv.yaml

    # Two small layers: rare-disease nodes hold tens to hundreds of patients, so
    # a wide or deep network would only memorise; DeepSurv's tuned networks on
    # its clinical datasets were similarly shallow.
    hidden: tuple[int, ...] = (32, 32)
    # Mild dropout: enough to regularise small cohorts without starving the
    # partial likelihood of signal (the paper tuned it within [0, 0.5]).
    dropout: float = 0.1
    # SELU self-normalises without batch norm, whose per-node batch statistics
    # would differ between federated nodes; the paper's search included it.
    activation: str = "selu"
    # Weak L2 on the kernels, the weight penalty in DeepSurv's objective; small
    # because the per-event Cox loss is O(1).
    l2: float = 1e-4
    # Feed the observed mask as extra inputs: with "worst"-scenario nodes
    # missing whole feature groups, missingness itself carries signal and the
    # network must be able to tell an imputed mean from a measured one.
    use_observed_mask: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))  # OmegaConf hands lists
        if self.name != "deepsurv":
            raise ValueError(f"DeepSurvConfig is model 'deepsurv', not {self.name!r}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be >= 0, got {self.l2}")
        # Accept lists from Hydra/OmegaConf but store a tuple so the config stays hashable.
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))


class MLP(nnx.Module):
    """Dense -> activation -> dropout per hidden layer, then a bias-free linear head."""

    def __init__(
        self,
        in_features: int,
        hidden: tuple[int, ...],
        *,
        activation: str = "selu",
        rngs: nnx.Rngs,
    ) -> None:
        """Build the layers.

        Args:
            in_features: input width.
            hidden: width of each hidden layer.
            activation: one of relu/selu/tanh/gelu.
            rngs: initialisation randomness only (never kept for dropout).
        """
        widths = (in_features, *hidden)
        self.hidden = nnx.List(
            [nnx.Linear(w_in, w_out, rngs=rngs) for w_in, w_out in zip(widths[:-1], widths[1:], strict=True)]
        )
        # No bias: the Cox partial likelihood is invariant to a constant shift
        # of the risk (the baseline hazard absorbs it), so a bias would be an
        # unidentified parameter.
        self.out = nnx.Linear(widths[-1], 1, use_bias=False, rngs=rngs)
        self.activation = activation

    def __call__(
        self, x: jax.Array, *, dropout_key: jax.Array | None, rate: float | TracedRate = 0.0
    ) -> jax.Array:
        """Log-risk per row.

        Args:
            x: f32[n, in_features].
            dropout_key: key for the dropout masks; ``None`` = eval mode.
            rate: drop probability after each hidden layer, or its traced form. An argument,
                not a module attribute, so a traced rate never enters the module's static graph.

        Returns:
            f32[n].
        """
        act = _ACTIVATIONS[self.activation]
        for i, layer in enumerate(self.hidden):
            x = act(layer(x))
            if dropout_key is not None and active(rate):
                # One key per layer via fold_in, so layers never share a mask. Inverted
                # dropout: scaled at train time, so eval needs no rescaling.
                x = dropout(x, jax.random.fold_in(dropout_key, i), rate)
        return self.out(x)[..., 0]


def _network_input(config: DeepSurvConfig, x: jax.Array, observed: jax.Array) -> jax.Array:
    x = jnp.asarray(x, jnp.float32)
    if config.use_observed_mask:
        return jnp.concatenate([x, jnp.asarray(observed, jnp.float32)], axis=-1)
    return x


def kernel_sum_of_squares(params: Params) -> jax.Array:
    """Sum of squared kernel entries (biases excluded: they do not set the function's scale)."""
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    squares = [
        jnp.sum(jnp.square(leaf))
        for path, leaf in leaves
        if isinstance(path[-1], jax.tree_util.DictKey) and path[-1].key == "kernel"
    ]
    return sum(squares, jnp.zeros((), jnp.float32))


@functools.cache
def _template(in_features: int, hidden: tuple[int, ...], activation: str) -> tuple[Any, Any]:
    """The network's graph and abstract parameter state (shapes only, no arrays allocated).

    Shared by every config of this architecture: a traced config (``strategies.traced``) is not
    hashable, so the factory below runs again on every trace, and building the template there
    took ~60 ms each time (nine times in one run).
    """
    module = nnx.eval_shape(
        lambda: MLP(in_features, hidden, activation=activation, rngs=nnx.Rngs(params=jax.random.key(0)))
    )
    return nnx.split(module, nnx.Param)


# Cached so the same (config, num_features) returns the very same functions:
# jitted callers that close over them then hit the compilation cache instead
# of recompiling per job.
@functools.cache
def deepsurv(config: DeepSurvConfig, num_features: int) -> SurvivalModel:
    """Build DeepSurv as pure functions over a plain-dict parameter pytree.

    Args:
        config: hyperparameters.
        num_features: number of columns of ``x`` (the mask doubles the input
            width when ``config.use_observed_mask``).

    Returns:
        ``SurvivalModel(init, loss, risk)`` with

        * ``init(rng) -> params``: a nested ``dict`` of f32 arrays;
        * ``loss(params, batch: NodeData, rng) -> (f32[], {"cox": f32[]})``:
          per-event Cox loss on the dropout (training-mode) risk plus
          ``config.l2 * sum(kernel ** 2)``; ``rng=None`` disables dropout;
        * ``risk(params, x, observed) -> f32[n]``: eval-mode log-risk.
    """
    in_features = num_features * (2 if config.use_observed_mask else 1)

    def build(rng: PRNGKey) -> MLP:
        return MLP(
            in_features,
            config.hidden,
            activation=config.activation,
            rngs=nnx.Rngs(params=rng),
        )

    def to_module(params: Params) -> MLP:
        # The template is built on first use (a trace), not with the model: a run whose programs
        # all come from the executable store never traces, and skips it (~0.1 s).
        graphdef, abstract_state = _template(in_features, config.hidden, config.activation)
        # Copy the template first: replace_by_pure_dict fills the State in
        # place, and the shared template must never hold a tracer.
        state = jax.tree.map(lambda v: v, abstract_state)
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(graphdef, state)

    def init(rng: PRNGKey) -> Params:
        _, state = nnx.split(build(rng), nnx.Param)
        return nnx.to_pure_dict(state)

    def risk(params: Params, x: jax.Array, observed: jax.Array) -> jax.Array:
        return to_module(params)(_network_input(config, x, observed), dropout_key=None)

    def loss(params: Params, batch: NodeData, rng: PRNGKey | None) -> tuple[jax.Array, dict[str, Any]]:
        train_risk = to_module(params)(
            _network_input(config, batch.x, batch.observed), dropout_key=rng, rate=config.dropout
        )
        cox = cox_loss(train_risk, batch)
        return cox + config.l2 * kernel_sum_of_squares(params), {"cox": cox}

    return SurvivalModel(init=init, loss=loss, risk=risk)
