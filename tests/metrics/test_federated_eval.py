"""Federated test metrics from per-centre sums: hand values, brute force, lifelines and scikit-survival."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines.utils import concordance_index as lifelines_cindex
from sksurv.metrics import brier_score, concordance_index_ipcw, cumulative_dynamic_auc, integrated_brier_score
from sksurv.nonparametric import CensoringDistributionEstimator
from sksurv.util import Surv

from fedjax_rhd.metrics import ipcw
from fedjax_rhd.metrics.concordance import concordance_index, concordance_summary
from fedjax_rhd.metrics.federated import (
    ConcordanceCounts,
    NodeTestSummary,
    federated_test_block,
    node_concordance_counts,
    node_test_summary,
    pooled_brier_scores,
    pooled_integrated_brier_score,
    stratified_c_index,
    stratified_td_auc,
    stratified_uno_c,
)

SIZES = (25, 60, 35)  # unequal centres: a mean of per-centre means would not be the pooled mean


def _within_centre_pairs(time, event, risk, centre, *, across: bool = False) -> tuple[int, int, int]:
    """O(n^2) Harrell pair counts over pairs in the same centre (or, with ``across``, in different ones)."""
    concordant = tied = comparable = 0
    for i in range(len(time)):
        if not event[i]:
            continue
        for j in range(len(time)):
            if (centre[i] != centre[j]) != across:
                continue
            if time[j] > time[i] or (time[j] == time[i] and not event[j]):
                comparable += 1
                concordant += int(risk[i] > risk[j])
                tied += int(risk[i] == risk[j])
    return concordant, tied, comparable


def _cohort(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Times rounded to 0.5 force ties between deaths, censorings and both.
    t = np.round(rng.exponential(5.0, n) * 2) / 2 + 0.5
    c = np.round(rng.exponential(8.0, n) * 2) / 2 + 0.5
    return np.minimum(t, c), t <= c


@pytest.fixture(scope="module")
def fed():
    rng = np.random.default_rng(11)
    tr_t, tr_e = _cohort(rng, 400)
    te_t, te_e = _cohort(rng, sum(SIZES))
    te_t = np.minimum(te_t, tr_t.max())  # scikit-survival refuses test times past the training follow-up
    centre = np.repeat(np.arange(len(SIZES)), SIZES)
    risk = rng.normal(size=len(te_t)) - 0.15 * te_t + 0.3 * centre  # informative, centre-shifted
    risk[:8] = risk[30:38]  # exact ties in risk, within and across centres
    # A grid holding every distinct training AND test time: G is exactly the training reverse
    # Kaplan-Meier (extra points carry no counts) and the test Kaplan-Meier from grid counts is exact.
    grid = np.union1d(tr_t, te_t)
    parts = np.array_split(np.arange(len(tr_t)), 3)
    counts = ipcw.sum_counts([ipcw.grid_counts(tr_t[p], tr_e[p], grid) for p in parts])
    censoring = ipcw.censoring_from_counts(counts, grid)
    times = np.linspace(np.quantile(te_t, 0.1), np.quantile(te_t, 0.7), 8)
    surv = np.exp(-np.exp(risk)[:, None] * times[None, :] / 5.0)
    tau = float(times[-1])
    summaries = {
        f"centre_{c}": node_test_summary(
            te_t[centre == c], te_e[centre == c], risk[centre == c], surv[centre == c], censoring, times, tau
        )
        for c in range(len(SIZES))
    }
    return dict(
        tr_t=tr_t, tr_e=tr_e, t=te_t, e=te_e, risk=risk, centre=centre, surv=surv, grid=grid,
        censoring=censoring, times=times, tau=tau, summaries=summaries,
    )  # fmt: skip


def _g_sksurv(f, at):
    # scikit-survival's own reverse Kaplan-Meier: an independent G for the brute-force references.
    return CensoringDistributionEstimator().fit(Surv.from_arrays(f["tr_e"], f["tr_t"])).predict_proba(at)


# ---------------------------------------------------------------- Harrell's C, stratified


def test_one_centre_equals_concordance_index_and_lifelines():
    rng = np.random.default_rng(0)
    time = rng.integers(0, 8, 200).astype(float)
    event = rng.random(200) < 0.6
    risk = rng.integers(0, 5, 200).astype(float)  # many tied risks
    c = stratified_c_index([node_concordance_counts(time, event, risk)])
    assert c == concordance_index(time, event, risk)
    assert c == pytest.approx(lifelines_cindex(time, -risk, event), abs=1e-12)  # lifelines: higher = longer


def test_two_centres_by_hand():
    # Centre A (time, event, risk): a1 (1, d, 3), a2 (2, c, 1), a3 (3, d, 2)
    #   a1-a2 concordant (3 > 1), a1-a3 concordant (3 > 2); a3 has no later row -> (2, 0, 2).
    # Centre B: b1 (2, d, 1), b2 (2, c, 1), b3 (4, d, 0), b4 (5, c, 2)
    #   b1-b2 comparable (censored at the same time), tied (1 = 1); b1-b3 concordant (1 > 0);
    #   b1-b4 discordant (1 < 2); b3-b4 discordant (0 < 2) -> (1, 1, 4).
    # Stratified: (2 + 1 + 1/2) / (2 + 4) = 7/12.
    a = node_concordance_counts([1, 2, 3], [1, 0, 1], [3, 1, 2])
    b = node_concordance_counts([2, 2, 4, 5], [1, 0, 1, 0], [1, 1, 0, 2])
    assert a == ConcordanceCounts(2, 0, 2) and b == ConcordanceCounts(1, 1, 4)
    assert stratified_c_index([a, b]) == pytest.approx(7 / 12, abs=1e-15)
    # Pooling adds the cross-centre pairs: a1 with b1..b4 (4 concordant); a3-b3 concordant, a3-b4 tied;
    # b1-a3 discordant (1 < 2), b1-a2 tied -> (5, 2, 8). Pooled C = (8 + 3/2) / 14 = 19/28, not 7/12.
    pooled = concordance_summary([1, 2, 3, 2, 2, 4, 5], [1, 0, 1, 1, 0, 1, 0], [3, 1, 2, 1, 1, 0, 2])
    assert pooled == (8, 3, 14)
    assert concordance_index([1, 2, 3, 2, 2, 4, 5], [1, 0, 1, 1, 0, 1, 0], [3, 1, 2, 1, 1, 0, 2]) == 19 / 28


def test_equals_brute_force_within_centres(fed):
    t, e, r, centre = fed["t"], fed["e"], fed["risk"], fed["centre"]
    conc, tied, comp = _within_centre_pairs(t, e, r, centre)
    counts = [node_concordance_counts(t[centre == c], e[centre == c], r[centre == c]) for c in range(3)]
    assert tuple(map(sum, zip(*counts, strict=True))) == (conc, tied, comp)
    assert stratified_c_index(counts) == pytest.approx((conc + tied / 2) / comp, abs=1e-15)
    assert stratified_c_index([s.concordance for s in fed["summaries"].values()]) == stratified_c_index(
        counts
    )


_rows = st.integers(2, 30).flatmap(
    lambda n: st.tuples(
        st.lists(st.integers(0, 5), min_size=n, max_size=n),  # times
        st.lists(st.booleans(), min_size=n, max_size=n),  # events
        st.lists(st.integers(-2, 2), min_size=n, max_size=n),  # risks
        st.lists(st.integers(0, 1), min_size=n, max_size=n),  # centre
        st.permutations(range(n)),
    )
)


@settings(max_examples=150, deadline=None)
@given(_rows)
def test_counts_are_additive_and_order_free(rows):
    time, event, risk, centre, perm = (np.asarray(x) for x in rows)
    parts = [
        node_concordance_counts(time[centre == c], event[centre == c], risk[centre == c]) for c in (0, 1)
    ]
    # The pooled pair set is the disjoint union of the two within-centre sets and the cross pairs.
    cross = _within_centre_pairs(time, event, risk, centre, across=True)
    pooled = concordance_summary(time, event, risk)
    assert tuple(a + b + x for a, b, x in zip(*parts, cross, strict=True)) == pooled
    # Row order within a centre and the order of the centres change nothing.
    shuffled = [
        node_concordance_counts(
            time[perm][centre[perm] == c], event[perm][centre[perm] == c], risk[perm][centre[perm] == c]
        )
        for c in (0, 1)
    ]
    assert shuffled == parts
    if parts[0].comparable + parts[1].comparable > 0:
        assert stratified_c_index(parts) == stratified_c_index(parts[::-1])
    else:
        with pytest.raises(ValueError, match="no comparable pairs"):
            stratified_c_index(parts)


# ---------------------------------------------------------------- IPCW metrics from sums


def test_uno_one_centre_equals_ipcw_and_sksurv(fed):
    t, e, r, c = fed["t"], fed["e"], fed["risk"], fed["centre"] == 1
    s = node_test_summary(t[c], e[c], r[c], fed["surv"][c], fed["censoring"], fed["times"], fed["tau"])
    ours = stratified_uno_c([s])
    assert ours == ipcw.uno_c_index(t[c], e[c], r[c], fed["censoring"], tau=fed["tau"])
    y_tr = Surv.from_arrays(fed["tr_e"], fed["tr_t"])
    ref = concordance_index_ipcw(y_tr, Surv.from_arrays(e[c], t[c]), r[c], tau=fed["tau"])[0]
    assert ours == pytest.approx(ref, rel=1e-12)


def test_uno_stratified_equals_brute_force_with_sksurv_weights(fed):
    t, e, r, centre, tau = fed["t"], fed["e"], fed["risk"], fed["centre"], fed["tau"]
    w = _g_sksurv(fed, t) ** -2.0
    num = den = 0.0
    for i in np.flatnonzero(e & (t < tau)):
        for j in np.flatnonzero(centre == centre[i]):
            if t[j] > t[i] or (t[j] == t[i] and not e[j]):
                den += w[i]
                num += w[i] * (0.5 if abs(r[i] - r[j]) <= ipcw.TIED_TOL else float(r[i] > r[j]))
    assert stratified_uno_c(list(fed["summaries"].values())) == pytest.approx(num / den, rel=1e-12)


def test_pooled_brier_and_ibs_equal_concatenated_rows(fed):
    t, e, surv, times, censoring = fed["t"], fed["e"], fed["surv"], fed["times"], fed["censoring"]
    summaries = list(fed["summaries"].values())
    pooled = ipcw.brier_scores(t, e, surv, times, censoring)
    np.testing.assert_allclose(pooled_brier_scores(summaries), pooled, rtol=1e-12)
    ibs = pooled_integrated_brier_score(summaries, times)
    assert ibs == pytest.approx(ipcw.integrated_brier_score(t, e, surv, times, censoring), rel=1e-12)
    y_tr, y_te = Surv.from_arrays(fed["tr_e"], fed["tr_t"]), Surv.from_arrays(e, t)
    np.testing.assert_allclose(
        pooled_brier_scores(summaries), brier_score(y_tr, y_te, surv, times)[1], rtol=1e-12
    )
    assert ibs == pytest.approx(integrated_brier_score(y_tr, y_te, surv, times), rel=1e-12)
    # The plain mean of the centres' Brier scores weights rows unequally: not the pooled value.
    per_centre = np.mean([s.brier_sum / s.n_test for s in summaries], axis=0)
    assert not np.allclose(per_centre, pooled, rtol=1e-6)


def test_td_auc_one_centre_equals_ipcw_and_sksurv(fed):
    t, e, r, c, times = fed["t"], fed["e"], fed["risk"], fed["centre"] == 1, fed["times"]
    s = node_test_summary(t[c], e[c], r[c], fed["surv"][c], fed["censoring"], times, fed["tau"])
    auc, mean = stratified_td_auc([s], times, fed["grid"])
    ref_auc, ref_mean = ipcw.cumulative_dynamic_auc(t[c], e[c], r[c], times, fed["censoring"])
    np.testing.assert_array_equal(auc, ref_auc)
    assert mean == pytest.approx(ref_mean, rel=1e-12)  # the grid holds every test time: exact KM weights
    sk_auc, sk_mean = cumulative_dynamic_auc(
        Surv.from_arrays(fed["tr_e"], fed["tr_t"]), Surv.from_arrays(e[c], t[c]), r[c], times
    )
    np.testing.assert_allclose(auc, sk_auc, rtol=1e-12)
    assert mean == pytest.approx(sk_mean, rel=1e-12)


def test_td_auc_stratified_equals_brute_force_and_differs_from_pooled(fed):
    t, e, r, centre, times = fed["t"], fed["e"], fed["risk"], fed["centre"], fed["times"]
    inv_g = 1.0 / _g_sksurv(fed, t)
    expected = []
    for tk in times:
        num = den = 0.0
        for i in np.flatnonzero(e & (t <= tk)):
            for j in np.flatnonzero((centre == centre[i]) & (t > tk)):
                den += inv_g[i]
                num += inv_g[i] * (0.5 if abs(r[i] - r[j]) <= ipcw.TIED_TOL else float(r[i] > r[j]))
        expected.append(num / den)
    summaries = list(fed["summaries"].values())
    auc, mean = stratified_td_auc(summaries, times, fed["grid"])
    np.testing.assert_allclose(auc, expected, rtol=1e-12)
    km = ipcw.kaplan_meier(t, e, times)  # weights: the pooled test Kaplan-Meier, from grid counts
    assert mean == pytest.approx(ipcw.survival_weighted_mean(np.asarray(expected), km), rel=1e-12)
    # Risks shift by centre, so the cross-centre pairs the pooled AUC adds change it.
    pooled_auc, _ = ipcw.cumulative_dynamic_auc(t, e, r, times, fed["censoring"])
    assert np.max(np.abs(auc - pooled_auc)) > 1e-3


# ---------------------------------------------------------------- transport and the results block


def test_summary_round_trips_through_arrays(fed):
    s = fed["summaries"]["centre_0"]
    arrays = s.to_arrays()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    assert arrays["comparable"].dtype == np.int64 and arrays["brier_sum"].dtype == np.float64
    back = NodeTestSummary.from_arrays(arrays)
    for a, b in zip(back, s, strict=True):
        np.testing.assert_array_equal(a, b)
    assert type(back.comparable) is int and type(back.uno_numerator) is float
    as_float = {k: v.astype(np.float64) for k, v in arrays.items()}  # a transport that only carries floats
    assert NodeTestSummary.from_arrays(as_float).comparable == s.comparable
    with pytest.raises(ValueError, match="expected fields"):
        NodeTestSummary.from_arrays({k: v for k, v in arrays.items() if k != "tied"})
    with pytest.raises(ValueError, match="integer"):
        NodeTestSummary.from_arrays({**arrays, "tied": np.array(1.5)})


def test_federated_test_block(fed):
    t, e, r, centre = fed["t"], fed["e"], fed["risk"], fed["centre"]
    summaries = {k: NodeTestSummary.from_arrays(s.to_arrays()) for k, s in fed["summaries"].items()}
    block = json.loads(json.dumps(federated_test_block(summaries, fed["times"], fed["grid"], fed["tau"])))
    for c, node in enumerate(block["nodes"]):
        rows = centre == c
        assert node == {
            "name": f"centre_{c}",
            "n_test": SIZES[c],
            "n_events": int(e[rows].sum()),
            "c_index": concordance_index(t[rows], e[rows], r[rows]),
        }
    assert block["n_test"] == len(t) and block["n_events"] == int(e.sum())
    conc, tied, comp = _within_centre_pairs(t, e, r, centre)
    assert block["c_index_test_stratified"] == pytest.approx((conc + tied / 2) / comp, abs=1e-15)
    values = list(summaries.values())
    assert block["uno_c_test_stratified"] == stratified_uno_c(values)
    auc, mean = stratified_td_auc(values, fed["times"], fed["grid"])
    assert block["td_auc_test_stratified"] == {
        "mean": mean,
        "times": fed["times"].tolist(),
        "auc": auc.tolist(),
    }
    assert block["ibs_test"] == pytest.approx(
        ipcw.integrated_brier_score(t, e, fed["surv"], fed["times"], fed["censoring"]), rel=1e-12
    )
    assert block["survival_eval"] == {
        "tau": fed["tau"],
        "grid_points": len(fed["grid"]),
        "times": fed["times"].tolist(),
    }


def test_block_centre_without_pairs_and_bad_shapes(fed):
    times, grid, censoring = fed["times"], fed["grid"], fed["censoring"]
    lone = node_test_summary(
        [1.0, 30.0], [0, 0], [0.1, 0.2], np.full((2, len(times)), 0.5), censoring, times, None
    )
    block = federated_test_block({**fed["summaries"], "tiny": lone}, times, grid, fed["tau"])
    assert block["nodes"][-1] == {"name": "tiny", "n_test": 2, "n_events": 0, "c_index": None}
    assert (
        block["c_index_test_stratified"]
        == federated_test_block(fed["summaries"], times, grid, fed["tau"])["c_index_test_stratified"]
    )  # no pairs: adds nothing
    with pytest.raises(ValueError, match="shapes"):
        federated_test_block(fed["summaries"], times[:-1], grid, fed["tau"])
    with pytest.raises(ValueError, match="at least one"):
        federated_test_block({}, times, grid, fed["tau"])
