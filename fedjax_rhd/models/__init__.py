"""Survival and generative models as pure functions over plain-dict parameters.

``MODELS`` maps a model name to its factory and its frozen config class. The config
class is also the Hydra schema of ``conf/model/<name>.yaml`` (registered as
``<name>_schema`` by :func:`fedjax_rhd.config.register_configs`), so a new survival
model is its file, one line here and one YAML. A config class that needs the use
case's feature schema (SAVAE's per-column likelihoods) has a ``for_guide(guide)``
method; :func:`config_for_guide` applies it.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

from fedjax_rhd.models.coxph import CoxPHConfig, coxph
from fedjax_rhd.models.deepsurv import DeepSurvConfig, deepsurv
from fedjax_rhd.models.savae import SAVAEConfig, savae
from fedjax_rhd.typing import SurvivalModel


class ModelEntry(NamedTuple):
    """A registered model: ``factory(config, num_features) -> SurvivalModel`` and its config class."""

    factory: Callable[[Any, int], SurvivalModel]
    config: type


MODELS: dict[str, ModelEntry] = {
    "deepsurv": ModelEntry(deepsurv, DeepSurvConfig),
    "coxph": ModelEntry(coxph, CoxPHConfig),
    "savae": ModelEntry(savae, SAVAEConfig),
}


def config_for_guide(config: Any, guide: Any) -> Any:
    """``config.for_guide(guide)`` where the model needs the feature schema, else ``config``."""
    return config.for_guide(guide) if hasattr(config, "for_guide") else config


__all__ = [
    "MODELS",
    "CoxPHConfig",
    "DeepSurvConfig",
    "ModelEntry",
    "SAVAEConfig",
    "config_for_guide",
    "coxph",
    "deepsurv",
    "savae",
]
