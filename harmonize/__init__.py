"""Harmonisation: implementation guides, sources, FHIR and ML-ready extraction."""

from harmonize.guide import Feature, Guide, GuideError, load_guide

__all__ = ["Feature", "Guide", "GuideError", "load_guide"]
