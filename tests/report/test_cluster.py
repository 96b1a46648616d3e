"""The cluster bootstrap on constructed designs with known overlap, checked against brute-force loops."""

from __future__ import annotations

import numpy as np
import pytest

import fedjax_rhd.report.cluster as cluster
from fedjax_rhd.metrics.concordance import concordance_index
from fedjax_rhd.report.cluster import ClusterDesign, SeedTestRows, weighted_cindices
from fedjax_rhd.report.stats import SeedRows, mean_over_seeds


def cohort(n: int, seed: int, decimals: int | None = 2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Times rounded to ``decimals``: ties exercise the tie rules; None: no ties, so -time is perfect."""
    rng = np.random.default_rng(seed)
    time = rng.exponential(size=n)
    time = time if decimals is None else time.round(decimals)
    event = rng.random(n) < 0.6
    risk = -time + rng.normal(scale=0.8, size=n)
    return time, event, risk


def width(iv) -> float:
    return iv.ci_high - iv.ci_low


def repeated_c(time, event, risk, w) -> float:
    w = np.asarray(w, np.int64)
    return concordance_index(np.repeat(time, w), np.repeat(event, w), np.repeat(risk, w))


@pytest.mark.parametrize("dense", [True, False])
def test_weighted_c_is_harrell_on_the_repeated_rows(dense, monkeypatch):
    if not dense:  # the large-n path, forced on a small set
        monkeypatch.setattr(cluster, "_DENSE_MAX_N", 0)
    time, event, risk = cohort(80, 1)
    risk[::7] = risk[1::7][: len(risk[::7])]  # tied risks
    w = np.random.default_rng(2).poisson(1.0, size=(6, 80))
    got = weighted_cindices(time, event, risk, w)
    np.testing.assert_allclose(got, [repeated_c(time, event, risk, wb) for wb in w], rtol=0, atol=1e-12)


def test_identical_test_sets_give_the_single_set_interval():
    # Four split seeds with the same test patients and the same model: the mean over seeds is one
    # set's C-index on every replicate, so the interval is the single-set interval, bound for bound.
    time, event, risk = cohort(150, 3)
    ids = np.arange(150)
    one = ClusterDesign({0: SeedTestRows(ids, time, event)}, n_boot=400)
    four = ClusterDesign({s: SeedTestRows(ids, time, event) for s in range(4)}, n_boot=400)
    single = one.mean(one.score({0: [risk]}))
    pooled = four.mean(four.score({s: [risk] for s in range(4)}))
    assert (pooled.estimate, pooled.ci_low, pooled.ci_high) == pytest.approx(
        (single.estimate, single.ci_low, single.ci_high), abs=1e-12
    )
    # The stratified test-row bootstrap treats the copies as independent and is about half as wide.
    boots = {s: SeedRows(time, event, seed=s, n_boot=400, boot_seed=0) for s in range(4)}
    strat = mean_over_seeds(
        {s: boots[s].cindex(risk) for s in range(4)}, {s: boots[s].boot(risk) for s in range(4)}
    )
    assert 0.35 < width(strat) / width(pooled) < 0.65


def test_disjoint_test_sets_give_the_stratified_interval():
    # Four seeds with disjoint patients: linked resampling has nothing to link, so its width is the
    # stratified bootstrap's (Poisson vs multinomial draws: equal up to Monte Carlo error).
    sets, risks = {}, {}
    for s in range(4):
        time, event, risk = cohort(150, 10 + s)
        sets[s], risks[s] = SeedTestRows(np.arange(150) + 1000 * s, time, event), risk
    design = ClusterDesign(sets, n_boot=2000, resample_splits=False)
    linked = design.mean(design.score({s: [risks[s]] for s in range(4)}))
    rows = {s: SeedRows(sets[s].time, sets[s].event, seed=s, n_boot=2000, boot_seed=0) for s in range(4)}
    strat = mean_over_seeds(
        {s: rows[s].cindex(risks[s]) for s in range(4)}, {s: rows[s].boot(risks[s]) for s in range(4)}
    )
    assert linked.estimate == pytest.approx(strat.estimate, abs=1e-12)
    assert width(linked) == pytest.approx(width(strat), rel=0.1)
    # ... and the seeds' weights are independent draws: no correlation between two seeds' row weights.
    w0, w1 = design.weights[:, design.position[0]].sum(1), design.weights[:, design.position[1]].sum(1)
    assert abs(np.corrcoef(w0, w1)[0, 1]) < 0.1


def test_partly_shared_patients_match_a_brute_force_loop_by_patient_id():
    # Three seeds drawn from one 120-patient cohort, 50 test patients each, in shuffled order.
    time, event, risk_all = cohort(120, 7)
    rng = np.random.default_rng(8)
    sets, risks, members = {}, {}, {}
    for s in range(3):
        members[s] = rng.choice(120, size=50, replace=False)
        sets[s] = SeedTestRows(
            np.array([f"p{i:03d}" for i in members[s]]), time[members[s]], event[members[s]]
        )
        risks[s] = [risk_all[members[s]] + 0.1 * r for r in range(2)]  # two training replicates
    design = ClusterDesign(sets, n_boot=60, resample_splits=False, resample_training=False)
    got = design._replicates(design.score(risks), (0, 1, 2))
    weight_of = [dict(zip(design.pool, wb, strict=True)) for wb in design.weights]
    for b in range(60):
        per_seed = []
        for s in range(3):
            w = np.array([weight_of[b][p] for p in sets[s].patient_id])
            per_seed.append(np.mean([repeated_c(sets[s].time, sets[s].event, r, w) for r in risks[s]]))
        assert got[b] == pytest.approx(np.mean(per_seed), abs=1e-12)
    # A patient in two test sets carries one weight: its rows are drawn together.
    shared = np.intersect1d(sets[0].patient_id, sets[1].patient_id)
    assert len(shared) > 0
    col = {p: j for j, p in enumerate(design.pool)}
    for p in shared:
        i0 = int(np.flatnonzero(sets[0].patient_id == p)[0])
        i1 = int(np.flatnonzero(sets[1].patient_id == p)[0])
        assert design.position[0][i0] == design.position[1][i1] == col[p]


def test_split_seed_stage_by_hand():
    # Seed 0's model is perfect (C = 1 on every resample), seed 1's reversed (C = 0): the patient
    # stage adds nothing, and the statistic is the mean of two seeds drawn with replacement, i.e.
    # 0, 1/2 or 1 with probabilities 1/4, 1/2, 1/4.
    time, event, _ = cohort(60, 4, None)
    sets = {s: SeedTestRows(np.arange(60), time, event) for s in (0, 1)}
    design = ClusterDesign(sets, n_boot=4000)
    scores = design.score({0: [-time], 1: [time]})
    reps = design._replicates(scores, (0, 1))
    for value, p in ((0.0, 0.25), (0.5, 0.5), (1.0, 0.25)):
        assert np.mean(reps == value) == pytest.approx(p, abs=0.03)
    iv = design.mean(scores)
    assert (iv.estimate, iv.ci_low, iv.ci_high) == (0.5, 0.0, 1.0)
    assert "split seeds (2, drawn with replacement)" in iv.covers
    fixed = ClusterDesign(sets, n_boot=100, resample_splits=False)
    iv = fixed.mean(fixed.score({0: [-time], 1: [time]}))
    assert (iv.ci_low, iv.ci_high) == (0.5, 0.5) and "not split seeds" in iv.covers


def test_training_seed_stage_by_hand():
    # One split seed, two training replicates: perfect and reversed. Drawing two of them with
    # replacement gives 0, 1/2, 1 with probabilities 1/4, 1/2, 1/4; averaging them gives 1/2.
    time, event, _ = cohort(60, 5, None)
    sets = {0: SeedTestRows(np.arange(60), time, event)}
    design = ClusterDesign(sets, n_boot=4000)
    scores = design.score({0: [-time, time]})
    reps = design._replicates(scores, (0,))
    for value, p in ((0.0, 0.25), (0.5, 0.5), (1.0, 0.25)):
        assert np.mean(reps == value) == pytest.approx(p, abs=0.03)
    assert "training seeds (2-2 per split seed" in design.mean(scores).covers
    averaged = ClusterDesign(sets, n_boot=100, resample_training=False)
    iv = averaged.mean(averaged.score({0: [-time, time]}))
    assert (iv.ci_low, iv.ci_high) == (0.5, 0.5) and "not training seeds" in iv.covers


def test_differences_are_paired_and_over_common_seeds():
    time, event, risk = cohort(100, 6, None)
    sets = {s: SeedTestRows(np.arange(100), time, event) for s in range(3)}
    design = ClusterDesign(sets, n_boot=300)
    a = design.score({s: [risk, risk + 0.3 * np.sin(np.arange(100))] for s in range(3)})
    same = design.difference(a, a)
    assert (same.estimate, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0)
    b = design.score({1: [-time], 2: [-time]})
    d = design.difference(a, b)
    assert d.seeds == (1, 2)
    expected = np.mean(
        [
            np.mean([concordance_index(time, event, r) for r in (risk, risk + 0.3 * np.sin(np.arange(100)))])
            - 1.0
        ]
        * 2
    )
    assert d.estimate == pytest.approx(expected, abs=1e-12)
    assert design.difference(design.score({0: [risk]}), b) is None


def test_unscored_rows_are_left_out_and_restrict_a_paired_comparison():
    time, event, risk = cohort(90, 9)
    score = -time + np.random.default_rng(1).normal(size=90)
    score[::4] = np.nan  # a clinical score that cannot score every fourth patient
    design = ClusterDesign({0: SeedTestRows(np.arange(90), time, event)}, n_boot=200)
    s = design.score({0: [score]})
    kept = ~np.isnan(score)
    assert s.points[0][0] == pytest.approx(concordance_index(time[kept], event[kept], score[kept]), abs=1e-12)
    model_on_score_rows = design.score({0: [risk]}, rows={0: kept})
    assert model_on_score_rows.points[0][0] == pytest.approx(
        concordance_index(time[kept], event[kept], risk[kept]), abs=1e-12
    )
    for b in range(5):
        w = design.weights[b] * kept
        assert s.boots[0][0, b] == pytest.approx(repeated_c(time, event, np.nan_to_num(score), w), abs=1e-12)


def test_bad_designs_are_refused():
    with pytest.raises(ValueError, match="at least one split seed"):
        ClusterDesign({})
    with pytest.raises(ValueError, match="repeat"):
        ClusterDesign({0: SeedTestRows(np.array([1, 1]), np.ones(2), np.ones(2))})
    design = ClusterDesign({0: SeedTestRows(np.arange(3), np.arange(3.0), np.ones(3))}, n_boot=5)
    with pytest.raises(ValueError, match="not in this design"):
        design.score({1: [np.zeros(3)]})
    with pytest.raises(ValueError, match="3 test rows"):
        design.score({0: [np.zeros(4)]})
