"""The generative end-to-end tests' one shared training run."""

from __future__ import annotations

import pytest

from tests.conftest import TINY, run_in_process, shared_across_workers

# A tiny VAE-BGM run: 600 patients, 2 rounds, a 25-round mixture fit, 150 synthetic rows.
GENERATIVE = ["model=vae_bgm", *TINY, "strategy.rounds=2", "model.bgm_max_iter=25", "model.n_synthetic=150"]


@pytest.fixture(scope="session")
def fedavg_run(tmp_path_factory, tiny_data_root):
    """One tiny FedAvg VAE-BGM run with fidelity at every round: (run folder, results).

    Shared by test_generative_end_to_end (the run and its results) and test_synthetic_export
    (per-round fidelity, the export), so the default suite trains it once.
    """

    def build(root):
        run_dir = root / "r"
        return run_dir, run_in_process([*GENERATIVE, "fidelity_every=1"], run_dir, tiny_data_root)

    return shared_across_workers(tmp_path_factory, "vae_bgm", build)
