"""The generative end-to-end tests' one shared training run."""

from __future__ import annotations

import pytest

from tests.conftest import TINY, run_in_process

# A tiny VAE-BGM run: 600 patients, 2 rounds, a 25-round mixture fit, 150 synthetic rows.
GENERATIVE = ["model=vae_bgm", *TINY, "strategy.rounds=2", "model.bgm_max_iter=25", "model.n_synthetic=150"]


@pytest.fixture(scope="session")
def fedavg_run(tmp_path_factory, tiny_data_root):
    """One tiny FedAvg VAE-BGM run with fidelity at every round: (run folder, results).

    Shared by test_generative_end_to_end (the run and its results) and test_synthetic_export
    (per-round fidelity, the export), so the default suite trains it once.
    """
    run_dir = tmp_path_factory.mktemp("vae_bgm") / "r"
    return run_dir, run_in_process([*GENERATIVE, "fidelity_every=1"], run_dir, tiny_data_root)
