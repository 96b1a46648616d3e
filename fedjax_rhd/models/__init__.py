"""Survival and generative models as pure functions over plain-dict parameters.

``MODELS`` maps a model name to its factory and its frozen config class. The config
class is also the Hydra schema of ``conf/model/<name>.yaml`` (registered as
``<name>_schema`` by :func:`fedjax_rhd.config.register_configs`), so a new survival
model is its file, one line here and one YAML. A config class that needs the use
case's feature schema (SAVAE's per-column likelihoods) has a ``for_guide(guide)``
method; :func:`config_for_guide` applies it. A generative model (``ModelEntry.generative``,
:func:`is_generative`; VAE-BGM) returns a ``GenerativeModel`` and its runs sample a synthetic
table instead of scoring risks (``fedjax_rhd.generative``); one fitted from node counts instead of
gradients (``ModelEntry.from_counts``; the Bayesian network) runs its own protocol
(``fedjax_rhd.generative_bn``); CTGAN brings its own local step (``GenerativeModel.local_training``).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from fedjax_rhd.models.bn import BNConfig, bn
from fedjax_rhd.models.coxph import CoxPHConfig, coxph
from fedjax_rhd.models.ctgan import CTGANConfig, ctgan
from fedjax_rhd.models.deepsurv import DeepSurvConfig, deepsurv
from fedjax_rhd.models.savae import SAVAEConfig, savae
from fedjax_rhd.models.vae_bgm import VAEBGMConfig, vae_bgm
from fedjax_rhd.typing import GenerativeModel, SurvivalModel


class ModelEntry(NamedTuple):
    """A registered model: ``factory(config, num_features) -> SurvivalModel | GenerativeModel``, config."""

    factory: Callable[[Any, int], SurvivalModel | GenerativeModel]
    config: type
    generative: bool = False  # a GenerativeModel: its runs sample a synthetic table (fedjax_rhd.generative)
    # fitted from node statistics, not gradients (BN): run by fedjax_rhd.generative_bn, not the round loop
    from_counts: bool = False
    # config fields passed to the jitted functions as traced values, not compiled in
    # (fedjax_rhd.strategies.traced): continuous knobs that change no shape or control flow
    traced: tuple[str, ...] = ()
    # the ``loss`` aux term that validation (round selection, early stopping, the tuner's objective)
    # reads: the survival term alone, without the L2 penalty or SAVAE's reconstruction and KL, which
    # would pull selection toward small weights or good covariate reconstructions (issue 24 item 6);
    # None = the whole loss (generative models: the ELBO is what they fit)
    selection: str | None = None
    # the loss is a sum of independent per-row terms, so a row's gradient is its whole influence and
    # record-level DP-SGD (strategies/dp_sgd.py) is well defined; False for Cox losses (risk sets couple rows)
    row_separable: bool = False
    # brings its own local step (``GenerativeModel.local_training``: CTGAN's critic + generator pair);
    # FedProx, SCAFFOLD and DP-SGD, which change one loss's gradient, are refused for it
    own_step: bool = False


MODELS: dict[str, ModelEntry] = {
    "deepsurv": ModelEntry(deepsurv, DeepSurvConfig, traced=("dropout", "l2"), selection="cox"),
    "coxph": ModelEntry(coxph, CoxPHConfig, traced=("l2",), selection="cox"),
    "savae": ModelEntry(savae, SAVAEConfig, traced=("dropout", "beta"), selection="time", row_separable=True),
    "vae_bgm": ModelEntry(vae_bgm, VAEBGMConfig, generative=True, row_separable=True),
    "bn": ModelEntry(bn, BNConfig, generative=True, from_counts=True),
    "ctgan": ModelEntry(ctgan, CTGANConfig, generative=True, own_step=True),
}


def is_generative(name: str) -> bool:
    """Whether model ``name`` is a generative model (its runs sample a synthetic table)."""
    return MODELS[name].generative


def config_for_guide(config: Any, guide: Any) -> Any:
    """``config.for_guide(guide)`` where the model needs the feature schema, else ``config``."""
    return config.for_guide(guide) if hasattr(config, "for_guide") else config


__all__ = [
    "MODELS",
    "BNConfig",
    "CTGANConfig",
    "CoxPHConfig",
    "DeepSurvConfig",
    "ModelEntry",
    "SAVAEConfig",
    "VAEBGMConfig",
    "bn",
    "config_for_guide",
    "coxph",
    "ctgan",
    "deepsurv",
    "is_generative",
    "savae",
    "vae_bgm",
]
