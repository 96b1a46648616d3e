"""Tables for the synthetic-data metrics: simulated MDS cohorts in the harmonised schema."""

from __future__ import annotations

import pytest

from fedjax_rhd.simulate import simulate_mds


@pytest.fixture(scope="session")
def mds_split(mds_guide):
    """Three independent simulated MDS cohorts: (train 400, holdout 200, unseen 200).

    ``unseen`` stands for an ideal generator: patients drawn like the training rows but never
    shown to it, so every metric should call it faithful and private. The simulator is called
    directly (0.05 s) rather than through ``small_cohort``'s FHIR round trip (about 14 s): these
    metrics only need tables in the guide's schema, which both give.
    """
    return (
        simulate_mds(mds_guide, n=400, seed=11),
        simulate_mds(mds_guide, n=200, seed=12),
        simulate_mds(mds_guide, n=200, seed=13),
    )
