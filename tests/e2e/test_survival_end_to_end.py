"""SAVAE and linear Cox end to end (in process, as the CLI composes them): survival metrics land in a
valid results.json."""

from __future__ import annotations

import pytest

from fedjax_rhd.results import validate_results
from tests.conftest import TINY, run_in_process

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("preset", ["savae", "coxph"])
def test_models_write_survival_metrics(tmp_path, tiny_data_root, preset):
    overrides = [f"+experiment={preset}", *TINY, "strategy.rounds=2"]
    res = run_in_process(overrides, tmp_path / "r", tiny_data_root)
    validate_results(res)
    final = res["final"]
    assert res["config"]["model"]["name"] == preset
    assert 0.0 <= final["uno_c_test"] <= 1.0 and 0.0 <= final["ibs_test"] <= 1.0
    td = final["td_auc_test"]
    assert len(td["auc"]) == len(td["times"]) == len(final["survival_eval"]["times"]) >= 2
    assert final["survival_eval"]["tau"] == td["times"][-1]
