"""Several risks bootstrapped in one pass (metrics/concordance.py::bootstrap_cindices)."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rhd.metrics.concordance import bootstrap_cindex, bootstrap_cindices


@pytest.mark.parametrize(("n", "n_boot"), [(150, 200), (2100, 5)])  # dense pair matrices, and per resample
def test_several_risks_in_one_pass_equal_one_call_each(n, n_boot):
    """What results.json uses equals one bootstrap_cindex call per risk, bit for bit."""
    rng = np.random.default_rng(3)
    time = np.ceil(rng.exponential(5.0, n))
    event = rng.random(n) < 0.6
    risks = [np.round(rng.normal(size=n), 1) for _ in range(3)]
    together = bootstrap_cindices(time, event, risks, n_boot=n_boot, seed=7)
    alone = [bootstrap_cindex(time, event, r, n_boot=n_boot, seed=7) for r in risks]
    assert together == alone
