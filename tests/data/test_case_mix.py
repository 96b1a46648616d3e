"""Optional case-mix shift per node (a referral centre with higher-risk patients)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fedjax_rhd.config import run_config
from fedjax_rhd.data.case_mix import case_mix_partition
from fedjax_rhd.data.federated import SplitSpec, _allocate, build_federated_data, stratified_partition
from fedjax_rhd.simulate import simulate_mds
from tests.conftest import compose


def _part(risk, event, shifts, seed=0, fractions=(0.6, 0.3, 0.1)):
    rng = np.random.default_rng(seed)
    return case_mix_partition(event, risk, fractions, shifts, rng, _allocate, stratified_partition)


def test_shifted_node_gets_higher_risk_and_sizes_are_kept():
    rng = np.random.default_rng(1)
    risk = rng.standard_normal(3000)
    event = (rng.random(3000) < 0.5).astype(np.int64)
    part = _part(risk, event, ((-1, 1.5),))
    assert np.bincount(part, minlength=3).tolist() == _allocate(3000, (0.6, 0.3, 0.1)).tolist()
    smallest, others = risk[part == 2].mean(), risk[part != 2].mean()
    # exp(1.5 z) tilting of a standard normal moves its mean by about 1.5 (less without replacement)
    assert smallest > others + 0.8
    neutral = _part(risk, event, ((-1, 0.0),))
    assert abs(risk[neutral == 2].mean() - risk.mean()) < 0.15
    lower = _part(risk, event, ((1, -0.5),))
    assert risk[lower == 0].mean() < risk[lower != 0].mean()
    np.testing.assert_array_equal(part, _part(risk, event, ((-1, 1.5),)))  # same seed, same partition


def test_bad_shifts_fail_clearly():
    risk, event = np.zeros(10), np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match="start at 1"):
        _part(risk, event, ((0, 1.0),))
    with pytest.raises(ValueError, match="shifted twice"):
        _part(risk, event, ((3, 1.0), (-1, 1.0)))
    with pytest.raises(ValueError, match="non-finite"):
        _part(np.full(10, np.nan), event, ((1, 1.0),))
    assert _part(risk, event, ((7, 1.0),)).min() >= 0  # a rank beyond the split is ignored


def test_case_mix_in_the_data_layer_and_config(mds_guide):
    df = simulate_mds(mds_guide, n=1500, seed=2)
    base = SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), seed=0)
    plain = build_federated_data(df, mds_guide, base)
    shifted = build_federated_data(df, mds_guide, dataclasses.replace(base, case_mix=((-1, 1.5),)))
    assert shifted.test_patient_ids == plain.test_patient_ids
    # Shifted node sizes are exact (largest remainder over all rows); the plain split rounds
    # each event class separately, so its node sizes may differ by up to 2 rows.
    assert sum(shifted.n_train) + sum(shifted.n_val) == sum(plain.n_train) + sum(plain.n_val)
    assert max(abs(a - b) for a, b in zip(shifted.n_train, plain.n_train, strict=True)) <= 2
    # the referral (smallest) node has more deaths in its training rows
    ev = lambda fd, k: float(np.asarray(fd.train.event)[k][: fd.n_train[k]].mean())  # noqa: E731
    assert ev(shifted, 2) > ev(plain, 2) + 0.1
    with pytest.raises(ValueError, match="only simulated"):
        build_federated_data(
            df.drop("oracle_risk"), mds_guide, dataclasses.replace(base, case_mix=((1, 1.0),))
        )
    split = run_config(compose(["split=three_referral"])).split
    assert split.case_mix == {"-1": 1.0} and split.shifts == ((-1, 1.0),)
    assert split.fractions == (0.6, 0.3, 0.1)
    assert run_config(compose()).split.case_mix == {}
