"""Cohort simulators with a known ground-truth hazard, one per use case."""

from __future__ import annotations

from fedjax_rhd.simulate.cmml import simulate_cmml
from fedjax_rhd.simulate.mds import GENERATOR_VERSION, simulate_mds

__all__ = ["GENERATOR_VERSION", "simulate_cmml", "simulate_mds"]
