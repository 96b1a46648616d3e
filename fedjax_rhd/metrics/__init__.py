"""The metrics room: pure functions of (time, event, risk) and of federated counts.

``concordance`` (Harrell's C and its bootstraps), ``ipcw`` (Uno's C, time-dependent
AUC, Brier score from the censoring Kaplan-Meier built on grid counts), ``evaluation``
(a trained model's survival curves and metrics on the test rows) and ``clinical``
(the use case's clinical score on exactly the model's test rows).
"""

from fedjax_rhd.metrics.concordance import (
    bootstrap_cindex,
    concordance_index,
    concordance_summary,
    paired_bootstrap_difference,
)

__all__ = ["bootstrap_cindex", "concordance_index", "concordance_summary", "paired_bootstrap_difference"]
