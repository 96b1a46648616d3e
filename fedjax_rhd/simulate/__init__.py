"""Cohort simulators with a known ground-truth hazard, one per use case.

The re-exported names are imported on first use (PEP 562): the clinical scores of
``fedjax_rhd.sources.scores`` live in ``aml`` and ``mm``, and every run imports them, while only
a cohort build needs the copula simulators (and scipy.stats, seconds of a process's start).
"""

from __future__ import annotations

import importlib
from typing import Any

_FROM = {"GENERATOR_VERSION": "mds", "simulate_mds": "mds", "simulate_cmml": "cmml"}

__all__ = ["GENERATOR_VERSION", "simulate_cmml", "simulate_mds"]


def __getattr__(name: str) -> Any:
    if name not in _FROM:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_FROM[name]}"), name)
