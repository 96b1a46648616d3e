"""The metrics room: pure functions of (time, event, risk) and of federated counts.

``concordance`` (Harrell's C and its bootstraps), ``ipcw`` (Uno's C, time-dependent
AUC, Brier score from the censoring Kaplan-Meier built on grid counts), ``evaluation``
(a trained model's survival curves and metrics on the test rows), ``federated`` (test
metrics for real centres: each scores its own test rows and sends sums; Harrell's and
Uno's C and the AUC stratified by centre, the pooled Brier score and IBS) and
``clinical`` (the use case's clinical score on exactly the model's test rows).
``synthetic`` (imported on its own: ``fedjax_rhd.metrics.synthetic``) validates synthetic tables:
fidelity, utility, privacy and impossible values (docs/synthetic.md).
"""

from fedjax_rhd.metrics.concordance import (
    bootstrap_cindex,
    concordance_index,
    concordance_summary,
    paired_bootstrap_difference,
)
from fedjax_rhd.metrics.federated import (
    ConcordanceCounts,
    NodeTestSummary,
    federated_test_block,
    node_concordance_counts,
    node_test_summary,
    stratified_c_index,
)

__all__ = [
    "ConcordanceCounts",
    "NodeTestSummary",
    "bootstrap_cindex",
    "concordance_index",
    "concordance_summary",
    "federated_test_block",
    "node_concordance_counts",
    "node_test_summary",
    "paired_bootstrap_difference",
    "stratified_c_index",
]
