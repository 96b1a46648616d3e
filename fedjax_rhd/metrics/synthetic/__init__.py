"""Validation of synthetic patients: fidelity, utility, privacy and impossible values.

Pure functions of (real training table, synthetic table, real holdout table, guide), tables in
the harmonised schema (polars; missing = null), one module per family: ``fidelity`` (marginals,
chi-square, pair trends, association matrices, CSF and GSF), ``detection`` (a classifier real vs
synthetic), ``genomics`` (gene frequencies, co-occurrence and mutual exclusivity), ``survival``
(Kaplan-Meier, log-rank, train-on-synthetic C-index), ``privacy`` (DCR, NNDR, membership
inference, the privacy gate), ``validity`` (impossible values) and ``report`` (all of them in one
JSON-able dict). docs/synthetic.md holds every formula.

The names are imported from their submodule on first use (PEP 562), not with the package: every
run imports the synthetic-data gate (``fedjax_rhd.synthetic_export``), only a generative run's
validation needs scipy.stats and scikit-learn (seconds of a process's start).
"""

from __future__ import annotations

import importlib
from typing import Any

_SUBMODULE = {
    "detection_metrics": "detection",
    "association_difference": "fidelity",
    "chi_square": "fidelity",
    "clinical_fidelity_score": "fidelity",
    "column_shape": "fidelity",
    "column_shapes": "fidelity",
    "cramers_v": "fidelity",
    "genomic_fidelity_score": "fidelity",
    "ks_statistic": "fidelity",
    "layer_fidelity": "fidelity",
    "missingness": "fidelity",
    "pair_details": "fidelity",
    "pair_trend": "fidelity",
    "pair_trends": "fidelity",
    "tv_distance": "fidelity",
    "co_mutation_agreement": "genomics",
    "co_mutation_pairs": "genomics",
    "gene_frequencies": "genomics",
    "GowerEncoder": "privacy",
    "PrivacyThresholds": "privacy",
    "privacy_gate": "privacy",
    "privacy_metrics": "privacy",
    "ValidationSettings": "report",
    "validation_report": "report",
    "fit_linear_cox": "survival",
    "kaplan_meier": "survival",
    "km_comparison": "survival",
    "logrank_test": "survival",
    "train_synthetic_test_real": "survival",
    "impossible_values": "validity",
}


def __getattr__(name: str) -> Any:
    try:
        module = _SUBMODULE[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_SUBMODULE])


__all__ = [
    "GowerEncoder",
    "PrivacyThresholds",
    "ValidationSettings",
    "association_difference",
    "chi_square",
    "clinical_fidelity_score",
    "co_mutation_agreement",
    "co_mutation_pairs",
    "column_shape",
    "column_shapes",
    "cramers_v",
    "detection_metrics",
    "fit_linear_cox",
    "gene_frequencies",
    "genomic_fidelity_score",
    "impossible_values",
    "kaplan_meier",
    "km_comparison",
    "ks_statistic",
    "layer_fidelity",
    "logrank_test",
    "missingness",
    "pair_details",
    "pair_trend",
    "pair_trends",
    "privacy_gate",
    "privacy_metrics",
    "train_synthetic_test_real",
    "tv_distance",
    "validation_report",
]
