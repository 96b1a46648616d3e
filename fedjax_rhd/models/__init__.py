"""Survival and generative models as pure functions over plain-dict parameters.

``MODELS`` maps a config name to ``(factory, config class)``: the entry point
builds the frozen config class from ``conf/model/<name>.yaml`` (minus ``name``)
and the factory turns it into a ``SurvivalModel``. A config class that needs
the use case's feature schema (SAVAE's per-column likelihoods) has a
``for_guide(guide)`` method; :func:`config_for_guide` applies it.
"""

from typing import Any

from fedjax_rhd.models.coxph import CoxPHConfig, coxph
from fedjax_rhd.models.deepsurv import DeepSurvConfig, deepsurv
from fedjax_rhd.models.savae import SAVAEConfig, savae

MODELS = {"deepsurv": deepsurv, "coxph": coxph, "savae": savae}
MODEL_CONFIGS = {"deepsurv": DeepSurvConfig, "coxph": CoxPHConfig, "savae": SAVAEConfig}


def config_for_guide(config: Any, guide: Any) -> Any:
    """``config.for_guide(guide)`` where the model needs the feature schema, else ``config``."""
    return config.for_guide(guide) if hasattr(config, "for_guide") else config


__all__ = [
    "MODELS",
    "MODEL_CONFIGS",
    "CoxPHConfig",
    "DeepSurvConfig",
    "SAVAEConfig",
    "config_for_guide",
    "coxph",
    "deepsurv",
    "savae",
]
