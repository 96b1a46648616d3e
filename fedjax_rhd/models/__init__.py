"""Survival and generative models as pure functions over plain-dict parameters."""

from fedjax_rhd.models.deepsurv import DeepSurvConfig, deepsurv

# Name -> factory, so configs pick a model by string.
MODELS = {"deepsurv": deepsurv}

__all__ = ["MODELS", "DeepSurvConfig", "deepsurv"]
