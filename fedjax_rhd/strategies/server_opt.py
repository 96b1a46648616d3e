"""Server optimisers on the pseudo-gradient: FedAvg(M) and Reddi et al.'s adaptive family.

Reddi, Charles, Zaheer, Garrett, Rush, Konečný, Kumar, McMahan, "Adaptive
Federated Optimization", ICLR 2021 (arXiv:2003.00295), Algorithm 2. With
``Δ_t`` the (weighted) average client change ``mean(client params) − x_t``:

    m_t = β1 m_{t−1} + (1 − β1) Δ_t
    v_t = v_{t−1} + Δ_t²                                  (FedAdagrad)
    v_t = β2 v_{t−1} + (1 − β2) Δ_t²                      (FedAdam)
    v_t = v_{t−1} − (1 − β2) Δ_t² sign(v_{t−1} − Δ_t²)    (FedYogi)
    x_{t+1} = x_t + η m_t / (√v_t + τ)

with ``v_{−1} = τ²`` (the paper asks for ``v_{−1} ≥ τ²``) and, unlike
``optax.adam``, no bias correction and τ outside the square root. The
strategies hand the server optimiser the pseudo-gradient ``g = x_t − mean =
−Δ_t``; ``g²`` equals ``Δ_t²`` and the first moment of ``g`` is ``−m_t``, so
``x_t − η m(g) / (√v + τ)`` is exactly the update above.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

ADAPTIVE = ("adam", "yogi", "adagrad")
SERVER_OPTIMIZERS = ("sgd", *ADAPTIVE)


class ScaleByReddiState(NamedTuple):
    """Moments of the pseudo-gradient (both shaped like the parameters)."""

    mu: optax.Updates  # first moment m_t of g = −Δ (starts at 0)
    nu: optax.Updates  # second moment v_t (starts at τ²)


def _second_moment(variant: str, b2: float):  # noqa: ANN202 - small private helper
    if variant == "adam":
        return lambda v, g2: b2 * v + (1.0 - b2) * g2
    if variant == "yogi":
        # Yogi (Zaheer et al., NeurIPS 2018): additive, sign-controlled change of v.
        return lambda v, g2: v - (1.0 - b2) * g2 * jnp.sign(v - g2)
    if variant == "adagrad":
        return lambda v, g2: v + g2
    raise ValueError(f"unknown adaptive server optimizer {variant!r}; expected one of {ADAPTIVE}")


def scale_by_reddi(
    variant: str, b1: float = 0.9, b2: float = 0.99, tau: float = 1e-3
) -> optax.GradientTransformation:
    """Rescale the pseudo-gradient to ``m_t / (√v_t + τ)`` (Reddi et al. 2021, Algorithm 2).

    Args:
        variant: ``"adam"``, ``"yogi"`` or ``"adagrad"``: how ``v_t`` is updated.
        b1: first-moment decay β1.
        b2: second-moment decay β2 (unused by ``"adagrad"``).
        tau: adaptivity τ; also the initial ``√v``.
    """
    if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0 and tau > 0.0):
        raise ValueError(f"server optimizer needs 0 <= b1, b2 < 1 and tau > 0; got {b1=}, {b2=}, {tau=}")
    second = _second_moment(variant, b2)

    def init_fn(params: optax.Params) -> ScaleByReddiState:
        return ScaleByReddiState(
            mu=jax.tree.map(jnp.zeros_like, params),
            nu=jax.tree.map(lambda p: jnp.full_like(p, tau * tau), params),
        )

    def update_fn(
        updates: optax.Updates, state: ScaleByReddiState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, ScaleByReddiState]:
        del params
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: second(v, g * g), state.nu, updates)
        scaled = jax.tree.map(lambda m, v: m / (jnp.sqrt(v) + tau), mu, nu)
        return scaled, ScaleByReddiState(mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def reddi(
    variant: str, learning_rate: float, b1: float = 0.9, b2: float = 0.99, tau: float = 1e-3
) -> optax.GradientTransformation:
    """FedAdam / FedYogi / FedAdagrad's server step as one optax transform."""
    return optax.chain(scale_by_reddi(variant, b1, b2, tau), optax.scale(-learning_rate))


def server_optimizer(
    name: str,
    learning_rate: float,
    momentum: float = 0.0,
    b1: float = 0.9,
    b2: float = 0.99,
    tau: float = 1e-3,
) -> optax.GradientTransformation:
    """The server optimiser by name: ``sgd`` (FedAvg, FedAvgM with momentum) or an adaptive one."""
    if name == "sgd":
        return optax.sgd(learning_rate, momentum=momentum or None)
    if name in ADAPTIVE:
        return reddi(name, learning_rate, b1, b2, tau)
    raise ValueError(f"unknown server optimizer {name!r}; expected one of {SERVER_OPTIMIZERS}")
