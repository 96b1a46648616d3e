"""Validation of synthetic patients: fidelity, utility, privacy and impossible values.

Pure functions of (real training table, synthetic table, real holdout table, guide), tables in
the harmonised schema (polars; missing = null), one module per family: ``fidelity`` (marginals,
chi-square, pair trends, association matrices, CSF and GSF), ``detection`` (a classifier real vs
synthetic), ``genomics`` (gene frequencies, co-occurrence and mutual exclusivity), ``survival``
(Kaplan-Meier, log-rank, train-on-synthetic C-index), ``privacy`` (DCR, NNDR, membership
inference, the privacy gate), ``validity`` (impossible values) and ``report`` (all of them in one
JSON-able dict). docs/synthetic.md holds every formula.
"""

from fedjax_rhd.metrics.synthetic.detection import detection_metrics
from fedjax_rhd.metrics.synthetic.fidelity import (
    association_difference,
    chi_square,
    clinical_fidelity_score,
    column_shape,
    column_shapes,
    cramers_v,
    genomic_fidelity_score,
    ks_statistic,
    layer_fidelity,
    missingness,
    pair_details,
    pair_trend,
    pair_trends,
    tv_distance,
)
from fedjax_rhd.metrics.synthetic.genomics import co_mutation_agreement, co_mutation_pairs, gene_frequencies
from fedjax_rhd.metrics.synthetic.privacy import (
    GowerEncoder,
    PrivacyThresholds,
    privacy_gate,
    privacy_metrics,
)
from fedjax_rhd.metrics.synthetic.report import ValidationSettings, validation_report
from fedjax_rhd.metrics.synthetic.survival import (
    fit_linear_cox,
    kaplan_meier,
    km_comparison,
    logrank_test,
    train_synthetic_test_real,
)
from fedjax_rhd.metrics.synthetic.validity import impossible_values

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
