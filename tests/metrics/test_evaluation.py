"""Test-set survival metrics from federated counts equal the pooled computation; CV folds are honest."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fedjax_rhd.data.federated import SplitSpec, build_federated_data
from fedjax_rhd.data.folds import fold_data
from fedjax_rhd.data.packing import make_node_data
from fedjax_rhd.federation.simulator import SimulatorBackend, SimulatorConfig
from fedjax_rhd.metrics import ipcw as sm
from fedjax_rhd.metrics.evaluation import survival_metrics, survival_on_test
from fedjax_rhd.models import CoxPHConfig, SAVAEConfig, config_for_guide
from fedjax_rhd.models.cox import (
    breslow_baseline_counts,
    breslow_cumulative_hazard,
    survival_curves,
)
from fedjax_rhd.strategies import AlgorithmSpec, build_model


@pytest.fixture(scope="module")
def fed(small_cohort, mds_guide):
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), seed=2))


def _pooled_rows(fed):
    parts = [(part, k) for k in range(fed.num_nodes) for part in (fed.train, fed.val)]
    real = [np.asarray(p.weight[k]) > 0 for p, k in parts]
    cat = {
        f: np.concatenate([np.asarray(getattr(p, f)[k])[r] for (p, k), r in zip(parts, real, strict=True)])
        for f in ("x", "observed", "time", "event")
    }
    return cat


def test_federated_breslow_and_censoring_equal_pooled(fed):
    spec = AlgorithmSpec("fedavg", "coxph", CoxPHConfig(), fed.num_features)
    model = build_model(spec)
    params = {"kernel": jax.random.normal(jax.random.key(0), (fed.num_features,)) * 0.3}
    rows = _pooled_rows(fed)
    pooled = make_node_data(rows["x"], rows["observed"], rows["time"], rows["event"])
    grid = sm.time_grid(float(rows["time"].max()), 64)
    times = np.linspace(0.5, 3.0, 6)
    # Pooled reference: one Breslow estimate on every non-test row.
    events, at_risk = breslow_baseline_counts(
        model.risk(params, pooled.x, pooled.observed), pooled, jnp.asarray(grid)
    )
    h0 = breslow_cumulative_hazard(events, at_risk, jnp.asarray(grid))
    ref = survival_curves(
        model.risk(params, fed.test.x, fed.test.observed), h0, jnp.asarray(grid), jnp.asarray(times)
    )
    nodes = SimulatorBackend(SimulatorConfig(), fed, spec)  # each node computes its own counts
    ours = survival_on_test(spec, nodes, fed.test, params, grid, times, baseline_nodes=[0, 1, 2])
    np.testing.assert_allclose(ours, np.asarray(ref), rtol=2e-5)
    # The metrics use the censoring KM of the pooled non-test rows.
    out = survival_metrics(spec, nodes, fed.test, params)
    grid = sm.time_grid(float(rows["time"].max()), 512)
    censoring = sm.censoring_from_counts(sm.grid_counts(rows["time"], rows["event"], grid), grid)
    risk = np.asarray(model.risk(params, fed.test.x, fed.test.observed), np.float64)
    tau = out["survival_eval"]["tau"]
    expected = sm.uno_c_index(np.asarray(fed.test.time), np.asarray(fed.test.event), risk, censoring, tau=tau)
    assert out["uno_c_test"] == pytest.approx(expected, rel=1e-12)
    assert 0.0 < out["ibs_test"] < 0.5 and 0.0 < out["td_auc_test"]["mean"] < 1.0


def test_savae_metrics_use_its_own_curves(fed, mds_guide):
    cfg = config_for_guide(SAVAEConfig(), mds_guide)
    spec = AlgorithmSpec("centralized", "savae", cfg, fed.num_features)
    params = build_model(spec).init(jax.random.key(1))
    nodes = SimulatorBackend(SimulatorConfig(), fed, spec)
    out = survival_metrics(spec, nodes, fed.test, params)
    times = np.asarray(out["survival_eval"]["times"])
    surv = survival_on_test(spec, nodes, fed.test, params, np.array([1.0, 2.0]), times, baseline_nodes=[])
    expected = build_model(spec).survival(
        params, fed.test.x, fed.test.observed, jnp.asarray(times, jnp.float32)
    )
    np.testing.assert_allclose(surv, np.asarray(expected), rtol=1e-6)
    assert np.isfinite(out["ibs_test"]) and len(out["td_auc_test"]["auc"]) == len(times)


def test_folds_partition_rows_and_fit_preprocessing_on_training_only(small_cohort, mds_guide):
    df, _ = small_cohort
    folds = [fold_data(df, mds_guide, fold=f, num_folds=5, seed=0) for f in range(5)]
    test_ids = [set(d.test_patient_ids) for d in folds]
    assert set().union(*test_ids) == set(df["patient_id"].to_list())
    assert sum(len(t) for t in test_ids) == len(df)  # disjoint
    d0 = folds[0]
    assert d0.n_train[0] + d0.n_val[0] + len(test_ids[0]) == len(df)
    # Preprocessing means come from the training part alone (not val, not test).
    assert d0.moments.count.max() <= d0.n_train[0]
    real = np.asarray(d0.train.weight[0]) > 0
    age = list(mds_guide.encoded_names).index("age")
    measured = np.asarray(d0.train.observed[0])[real, age]
    # Measured ages of exactly these rows are centred (imputed ones sit at the median).
    assert abs(np.asarray(d0.train.x[0])[real, age][measured].mean()) < 1e-4
