"""The report's synthetic section on hand-made generative runs: means and t-intervals over split
seeds by hand, Figure 3 written, survival and generative runs side by side."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from fedjax_rhd.report import find_runs, write_report
from fedjax_rhd.report.synthetic import curve, curve_seeds, synthetic_rows
from tests.report.report_fixtures import PERFECT, swapped, write_generative_run, write_run


@pytest.fixture
def sweep(tmp_path):
    """FedAvg, centralised and local over two split seeds, with hand-set CSF / GSF."""
    root = tmp_path / "runs"
    for seed, d in ((0, 0.0), (1, 0.02)):
        write_generative_run(
            root, "fedavg", seed, {"global": (0.90 + d, 0.80)}, {"global": [0.5, 0.7 + d, 0.9]}
        )
        write_generative_run(
            root, "centralized", seed, {"pooled": (0.91 + d, 0.81)}, {"pooled": [0.6, 0.8 + d]}
        )
        final = {"node1": (0.88 + d, 0.7), "node2": (0.85, 0.7), "node3": (0.80 - d, 0.7)}
        curves = {"node1": [0.4, 0.6], "node2": [0.3, 0.5], "node3": [0.2, 0.4 + d]}
        write_generative_run(root, "local", seed, final, curves)
    return root


def _t(values):
    x = np.asarray(values)
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return x.mean(), x.mean() - half, x.mean() + half


def test_rows_are_means_over_seeds_with_t_intervals_by_hand(sweep):
    rows = {r.generator: r for r in synthetic_rows(find_runs([sweep]))}
    assert list(rows) == ["fedavg (global)", "centralised", "node1 (60%) alone", "node2 (30%) alone",
                          "node3 (10%) alone"]  # fmt: skip
    csf = rows["fedavg (global)"].values["csf"]
    assert (csf.mean, csf.low, csf.high, csf.n) == pytest.approx((*_t([0.90, 0.92]), 2))
    node3 = rows["node3 (10%) alone"].values["csf"]
    assert (node3.mean, node3.low, node3.high) == pytest.approx(_t([0.80, 0.78]))
    assert rows["node2 (30%) alone"].values["csf"].low == pytest.approx(0.85)  # no spread: a point
    assert rows["centralised"].gate_passed == 2 and rows["centralised"].seeds == (0, 1)


def test_per_round_curves_average_the_seeds_that_ran_the_round(sweep):
    runs = [r for r in find_runs([sweep]) if r.strategy == "fedavg"]
    rounds, values = curve(runs, "global", "csf")
    assert rounds.tolist() == [1, 2, 3]
    assert [v.mean for v in values] == pytest.approx([0.5, 0.71, 0.9])
    assert (values[1].low, values[1].high) == pytest.approx(_t([0.7, 0.72])[1:])
    gsf = curve(runs, "global", "gsf")[1]
    assert [v.mean for v in gsf] == pytest.approx([0.4, 0.61, 0.8])


def test_curve_seeds_counts_only_runs_that_drew_a_curve(sweep):
    """A run with fidelity_every=0 (no per-round records) trains the same final model: it joins the
    table but not the curve, so the figure's legend must not count it."""
    write_generative_run(sweep, "fedavg", 2, {"global": (0.9, 0.8)}, {})  # no synthetic_fidelity records
    runs = [r for r in find_runs([sweep]) if r.strategy == "fedavg"]
    assert len(runs) == 3 and curve_seeds(runs, "global") == 2
    local = [r for r in find_runs([sweep]) if r.strategy == "local"]
    assert curve_seeds(local, "node3") == 2 and curve_seeds(local, "node9") == 0
    assert len(curve(runs, "global", "csf")[0]) == 3  # the curve itself is unchanged by the run without one


def test_the_report_writes_the_section_and_figure_beside_the_survival_table(sweep, tmp_path):
    write_run(sweep, "fedavg", 0, {"node1": PERFECT, "node2": swapped(1), "node3": swapped(2)})
    report = write_report([sweep], tmp_path / "out", n_boot=20)
    assert len(report.rows) == 1 and len(report.synthetic) == 5  # survival row + five generators
    section = report.files["synthetic_markdown"].read_text()
    assert "| fedavg (global) | 2 | 30 | 0.910 [" in section
    assert "![fidelity per round](figures/fidelity_mds_best_three_vae_bgm.png)" in section
    assert report.files["figure:fidelity_mds_best_three_vae_bgm.png"].stat().st_size > 10_000
    csv = report.files["synthetic_csv"].read_text().splitlines()
    assert csv[0].startswith("use_case,scenario,split,model,strategy,trained_on") and len(csv) == 6
    html = report.files["html"].read_text()
    assert "Survival table" in html and "Synthetic patients" in html
