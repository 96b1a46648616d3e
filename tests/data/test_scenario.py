"""Scenarios remove whole layers per node rank and extra values; test rows stay whole."""

from __future__ import annotations

import numpy as np
import pytest

from fedjax_rhd.data.federated import SplitSpec, build_federated_data
from fedjax_rhd.data.preprocess import encode
from fedjax_rhd.data.scenario import BEST, ScenarioSpec

WORST = ScenarioSpec(
    name="worst", missing_groups=((2, ("genomic",)), (-1, ("cytogenetic",))), extra_missing=0.1
)
THREE = SplitSpec(name="three", fractions=(0.6, 0.3, 0.1), seed=5)
FIVE = SplitSpec(name="five", fractions=(0.45, 0.2, 0.15, 0.1, 0.1), seed=5)


def test_ranks_resolve_for_any_split():
    assert WORST.groups_missing_at(1, 3) == ("genomic",)
    assert WORST.groups_missing_at(2, 3) == ("cytogenetic",)
    assert WORST.groups_missing_at(0, 3) == ()
    assert WORST.groups_missing_at(4, 5) == ("cytogenetic",)
    assert WORST.groups_missing_at(1, 5) == ("genomic",)
    assert ScenarioSpec(missing_groups=((7, ("genomic",)),)).groups_missing_at(2, 3) == ()
    with pytest.raises(ValueError, match="unknown feature group"):
        ScenarioSpec(missing_groups=((1, ("genomics",)),))
    with pytest.raises(ValueError, match="ranks start at 1"):
        ScenarioSpec(missing_groups=((0, ("genomic",)),))


def _columns(guide, group):
    names = guide.encoded_names
    return [j for j, n in enumerate(names) if guide.feature(n.split("=")[0]).group == group]


@pytest.mark.parametrize("split", [THREE, FIVE])
def test_worst_removes_layers_only_on_their_nodes(small_cohort, mds_guide, split):
    df, _ = small_cohort
    fed = build_federated_data(df, mds_guide, split, scenario=WORST)
    genomic, cyto = _columns(mds_guide, "genomic"), _columns(mds_guide, "cytogenetic")
    k = fed.num_nodes
    for node in range(k):
        n = fed.n_train[node]
        obs = fed.train.observed[node, :n]
        assert obs[:, genomic].any() == (node != 1)
        assert obs[:, cyto].any() == (node != k - 1)
        # extra missingness everywhere else: roughly 10% more values unobserved
        assert fed.scenario[node]["values_blanked"] > 0
    assert fed.scenario[1]["missing_groups"] == ["genomic"]
    assert set(fed.scenario[1]["features_removed"]) == {
        f.name for f in mds_guide.features if f.group == "genomic"
    }


def test_test_set_and_counts_untouched(small_cohort, mds_guide):
    df, _ = small_cohort
    best = build_federated_data(df, mds_guide, THREE, scenario=BEST)
    worst = build_federated_data(df, mds_guide, THREE, scenario=WORST)
    assert best.test_patient_ids == worst.test_patient_ids
    np.testing.assert_array_equal(best.test.observed, worst.test.observed)
    assert best.n_train == worst.n_train and best.n_val == worst.n_val
    # Federated counts: the node without a gene panel contributes nothing to gene columns.
    genomic = _columns(mds_guide, "genomic")
    assert np.all(worst.moments.count[genomic] < best.moments.count[genomic])


def test_extra_missing_rate_and_record(small_cohort, mds_guide):
    df, _ = small_cohort
    only_extra = ScenarioSpec(name="noisy", extra_missing=0.25)
    best = build_federated_data(df, mds_guide, THREE)
    noisy = build_federated_data(df, mds_guide, THREE, scenario=only_extra)
    lost = 0
    present = 0
    for node in range(3):
        n = best.n_train[node]
        b, w = best.train.observed[node, :n], noisy.train.observed[node, :n]
        assert not np.any(w & ~b)  # never un-blanks a value
        lost += int((b & ~w).sum())
        present += int(b.sum())
    # one-hot blocks blank together, so measure the rate on encoded columns loosely
    assert 0.2 < lost / present < 0.3
    again = build_federated_data(df, mds_guide, THREE, scenario=only_extra)
    np.testing.assert_array_equal(noisy.train.observed, again.train.observed)


def test_encode_sees_nulls_as_unobserved(small_cohort, mds_guide):
    df, _ = small_cohort
    _, observed = encode(df.head(50), mds_guide)
    assert observed.dtype == bool and observed.shape[1] == len(mds_guide.encoded_names)
