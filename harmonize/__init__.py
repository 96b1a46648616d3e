"""Harmonisation: implementation guides, source adapters, FHIR R5 and ML-ready extraction.

The path (ARCHITECTURE §1.1-1.2): a source adapter (:mod:`harmonize.sources`)
yields canonical patient records; :mod:`harmonize.fhir` turns them into FHIR R5
resources validated with ``fhir.resources`` (one NDJSON per resource type per
centre); :mod:`harmonize.extract` reads them back into one parquet per centre
in canonical units; :mod:`harmonize.quality` writes the quality reports and
:mod:`harmonize.registry` registers sources and datasets (card with a content
id, :mod:`harmonize.identity`) and builds missing ones on first use.
``harmonize`` (:mod:`harmonize.cli`) runs the steps from the command line.

This package sits below ``fedjax_rhd`` and imports nothing of it: the simulators
and real cohorts register themselves as sources (``fedjax_rhd.sources``).
"""

from harmonize.guide import Coding, Feature, FhirMapping, Guide, GuideError, load_guide, require_fhir

__all__ = ["Coding", "Feature", "FhirMapping", "Guide", "GuideError", "load_guide", "require_fhir"]
