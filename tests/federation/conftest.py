"""Shared by the federation tests: three simulated nodes and a small DeepSurv spec."""

from __future__ import annotations

import pytest

from fedjax_rhd.data import SplitSpec, build_federated_data
from fedjax_rhd.models import DeepSurvConfig
from fedjax_rhd.strategies import AlgorithmSpec, ClientConfig


@pytest.fixture(scope="module")
def data3(small_cohort, mds_guide):
    """The shared 800-patient cohort over three nodes (60/30/10, seed.split 2)."""
    df, _ = small_cohort
    return build_federated_data(df, mds_guide, SplitSpec("three", (0.6, 0.3, 0.1), seed=2))


def spec_of(data, algorithm: str = "fedavg") -> AlgorithmSpec:
    """DeepSurv under ``algorithm`` with two local steps, sized for ``data``."""
    return AlgorithmSpec(
        algorithm, "deepsurv", DeepSurvConfig(), data.num_features, client=ClientConfig(local_epochs=2)
    )
