"""Survival and generative models as pure functions over plain-dict parameters.

``MODELS`` maps a config name to ``(factory, config class)``: the entry point
builds the frozen config class from ``conf/model/<name>.yaml`` (minus ``name``)
and the factory turns it into a ``SurvivalModel``.
"""

from fedjax_rhd.models.deepsurv import DeepSurvConfig, deepsurv

MODELS = {"deepsurv": deepsurv}
MODEL_CONFIGS = {"deepsurv": DeepSurvConfig}

__all__ = ["MODELS", "MODEL_CONFIGS", "DeepSurvConfig", "deepsurv"]
