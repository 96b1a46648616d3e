"""``sd_sharing`` through the simulator backend: a node whose synthetic rows fail its gate sends none
(its failure recorded), the pool is exactly the passing nodes' rows, and each node's gate reads that
node's rows only. Generators are stand-ins honouring the contract (``sample(generator, key, n)``):
a table of rows to hand out, so no model trains here (the end-to-end runs are in tests/e2e)."""

from __future__ import annotations

import types

import numpy as np
import polars as pl
import pytest

from fedjax_rhd import generative as gen
from fedjax_rhd import sd_sharing as sd
from fedjax_rhd.federation import sd_node_tasks
from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.metrics.synthetic import PrivacyThresholds
from fedjax_rhd.models import VAEBGMConfig
from fedjax_rhd.strategies import AlgorithmSpec

# The copying generator must fail on the verbatim copy itself; the other checks are switched off so
# the fresh rows' verdict does not hang on the noise of a few hundred rows.
STRICT_COPY = PrivacyThresholds(
    max_exact_copy_share=0.0, max_dcr_closer_to_train_share=None, max_mia_auc=None
)


@pytest.fixture(scope="module")
def federation(data3, small_cohort):
    spec = AlgorithmSpec("sd_sharing", "vae_bgm", VAEBGMConfig().for_guide(data3.guide), data3.num_features)
    backend = make_backend("simulator", data3, spec)
    return spec, backend, gen.holdout_table(small_cohort[0], data3)


@pytest.fixture
def table_sampler(monkeypatch):
    """Generators are tables: ``sample`` hands out their first ``n`` rows, whatever the key."""
    model = types.SimpleNamespace(sample=lambda generator, key, n: generator.head(n))
    monkeypatch.setattr(sd_node_tasks, "build_model", lambda spec: model)


def _own_rows(backend, data, k):
    rows = backend.node_rows(k).train
    return sd_node_tasks.node_table(rows, data.preprocessor.center, data.preprocessor.scale, data.guide)


def test_a_node_that_copies_its_rows_sends_none_and_the_pool_is_the_others(data3, federation, table_sampler):
    spec, backend, holdout = federation
    copier = _own_rows(backend, data3, 1)  # node2 "generates" its own training patients verbatim
    fresh = [holdout.slice(0, 40), holdout.slice(40, 30)]
    generators = [fresh[0], copier, fresh[1]]
    sizes = [40, 25, 30]
    shares = sd.share_rows(backend, spec, data3, generators, sizes, seed=0, thresholds=STRICT_COPY)
    assert [s.passed for s in shares] == [True, False, True]
    copy = shares[1]
    assert copy.rows is None and copy.n_sampled == 25
    assert [f[0] for f in copy.failing] == ["exact_copy_share"] and copy.failing[0][1] == 1.0
    assert copy.metrics["exact_copy_share"] == 1.0
    pool = sd.pool_rows(shares)
    assert pool.height == 40 + 30  # the passing nodes' rows, nothing else
    assert not pool["patient_id"].str.starts_with("sd-node2-").any()
    # what node1 and node3 sent arrives exactly as they gated it (column arrays invert exactly)
    for k, name in ((0, "node1"), (2, "node3")):
        got = pool.filter(pl.col("patient_id").str.starts_with(f"sd-{name}-")).drop("patient_id")
        assert got.equals(generators[k].head(sizes[k]).select(got.columns).cast(got.schema))
    block = sd.sharing_block(shares, STRICT_COPY, data3.n_train)
    assert block["n_pool"] == 70 and [n["n_sent"] for n in block["nodes"]] == [40, 0, 30]
    assert block["nodes"][1]["failing"] == [{"metric": "exact_copy_share", "value": 1.0, "limit": "<= 0"}]


def test_a_failing_gate_keeps_every_row_home(data3, federation, table_sampler, monkeypatch):
    """Whatever metric fails, the node's reply carries no row column and the pool lacks its rows."""
    spec, backend, holdout = federation
    real = sd_node_tasks.gate_report

    def leaky_node3(synthetic, members, non_members, guide):
        report = real(synthetic, members, non_members, guide)
        if members.height == data3.n_train[2]:  # node3's gate sees a membership signal
            report["privacy"]["mia_auc"] = 0.95
        return report

    monkeypatch.setattr(sd_node_tasks, "gate_report", leaky_node3)
    generators = [holdout.slice(30 * k, 30) for k in range(3)]
    inputs = {
        "guide": np.asarray(str(data3.guide.path)), "n": np.asarray(30), "seed": np.asarray(0),
        "stream": np.asarray(2), "center": data3.preprocessor.center, "scale": data3.preprocessor.scale,
        **sd_node_tasks.thresholds_inputs(PrivacyThresholds()),
    }  # fmt: skip
    reply = backend.node_statistic("sd_share", inputs, params=generators[2], nodes=[2])[0]
    assert not reply["passed"] and not any(k.startswith(sd_node_tasks.COLUMN) for k in reply)
    shares = sd.share_rows(
        backend, spec, data3, generators, [30, 30, 30], seed=0, thresholds=PrivacyThresholds()
    )
    assert shares[2].rows is None and ("mia_auc", 0.95, "<= 0.6") in shares[2].failing
    passed = [s for s in shares if s.passed]
    assert sd.pool_rows(shares).height == sum(s.rows.height for s in passed)


def test_each_nodes_gate_reads_that_nodes_rows_only(data3, federation, table_sampler, monkeypatch):
    spec, backend, holdout = federation
    seen = []

    def spy(members, synthetic, non_members, guide, **kwargs):
        seen.append((np.sort(members["time"].to_numpy()), np.sort(non_members["time"].to_numpy())))
        return {"exact_copy_share": 0.0, "dcr_closer_to_train_share": 0.5, "mia_auc": 0.5}

    monkeypatch.setattr(sd_node_tasks, "privacy_metrics", spy)
    generators = [holdout.slice(0, 20)] * 3
    sd.share_rows(backend, spec, data3, generators, [20, 20, 20], seed=0, thresholds=PrivacyThresholds())
    assert len(seen) == 3
    for k, (members, non_members) in enumerate(seen):
        train, val = data3.encoded[k]  # node k's own rows as the data layer holds them (float64)
        np.testing.assert_allclose(members, np.sort(train.time), rtol=1e-6)
        np.testing.assert_allclose(non_members, np.sort(val.time), rtol=1e-6)


def test_column_arrays_invert_exactly(data3, federation):
    _, backend, _ = federation
    table = _own_rows(backend, data3, 0)  # nulls, a categorical, binaries and log-scaled labs
    assert table.null_count().sum_horizontal().item() > 0
    back = sd_node_tasks.arrays_table(sd_node_tasks.table_arrays(table, data3.guide), data3.guide, "x")
    assert back.drop("patient_id").equals(table) and back["patient_id"][0] == "x000001"


def test_node_sizes_by_largest_remainder():
    assert sd.node_sizes((5, 3, 2), 0) == [5, 3, 2]
    # shares 3.5, 2.1, 1.4 -> floors 3, 2, 1 (6); the one row left goes to the largest remainder (0.5)
    assert sd.node_sizes((5, 3, 2), 7) == [4, 2, 1]
    assert sum(sd.node_sizes((700, 300, 99), 1000)) == 1000


def test_thresholds_travel_with_off_checks():
    limits = PrivacyThresholds(max_exact_copy_share=0.0, max_mia_auc=None, min_nndr_p05=0.3)
    assert sd_node_tasks.thresholds_from(sd_node_tasks.thresholds_inputs(limits)) == limits
