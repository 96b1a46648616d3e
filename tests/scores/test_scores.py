"""Clinical scores: hand-worked cases from each paper's definition, and property tests."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedjax_rhd.scores import cpss, eln, ipss, riss

# --- IPSS-R (Greenberg 2012) ------------------------------------------------------------


def test_ipssr_hand_cases():
    # Good cytogenetics 1 + blasts 3% -> 1 + Hb 9 -> 1 + PLT 120 -> 0 + ANC 1.0 -> 0 = 3 (Low).
    # Very poor 4 + blasts 12% -> 3 + Hb 7 -> 1.5 + PLT 40 -> 1 + ANC 0.5 -> 0.5 = 10 (Very High).
    # Very good 0 + blasts 2% -> 0 (boundary "<=2") + Hb 10 -> 0 + PLT 100 -> 0 + ANC 0.8 -> 0 = 0.
    # Intermediate 2 + blasts 5% -> 2 (boundary "5-10") + Hb 8 -> 1 + PLT 50 -> 0.5 + ANC 0.79 -> 0.5 = 6.
    score = ipss.ipssr_score(
        hb=np.array([9, 7, 10, 8]),
        plt=np.array([120, 40, 100, 50]),
        anc=np.array([1.0, 0.5, 0.8, 0.79]),
        bm_blasts=np.array([3, 12, 2, 5]),
        cyto=np.array([1, 4, 0, 2]),
    )
    np.testing.assert_array_equal(score, [3.0, 10.0, 0.0, 6.0])
    np.testing.assert_array_equal(ipss.ipssr_category(score), [1, 4, 0, 3])
    # Category cut-points are inclusive on the right: 1.5 Very Low, 4.5 Intermediate, 6 High.
    np.testing.assert_array_equal(
        ipss.ipssr_category(np.array([1.5, 2.0, 4.5, 6.0, 6.5, np.nan])), [0, 1, 2, 3, 4, -1]
    )


def test_ipssr_missing_input_is_missing():
    score = ipss.ipssr_score(
        np.array([9.0]), np.array([np.nan]), np.array([1.0]), np.array([3.0]), np.array([1.0])
    )
    assert np.isnan(score[0])


def test_ipssra_hand_case():
    # IPSS-R 3 at age 80: 3 + 10 * (0.05 - 0.015) = 3.35; at 70 unchanged.
    np.testing.assert_allclose(ipss.ipssra_score(np.array([3.0, 3.0]), np.array([80.0, 70.0])), [3.35, 3.0])


@settings(max_examples=200, deadline=None)
@given(
    hb=st.floats(3, 18),
    plt=st.floats(1, 800),
    anc=st.floats(0, 10),
    blasts=st.floats(0, 19),
    cyto=st.integers(0, 4),
    dhb=st.floats(0, 5),
    dplt=st.floats(0, 300),
    dblasts=st.floats(0, 10),
)
def test_ipssr_monotone_in_each_risk_factor(hb, plt, anc, blasts, cyto, dhb, dplt, dblasts):
    def s(**kw):
        base = dict(hb=hb, plt=plt, anc=anc, bm_blasts=blasts, cyto=cyto) | kw
        return ipss.ipssr_score(*(np.array([base[k]]) for k in ("hb", "plt", "anc", "bm_blasts", "cyto")))[0]

    ref = s()
    assert s(hb=hb - dhb) >= ref  # lower Hb never lowers risk
    assert s(plt=max(plt - dplt, 0)) >= ref
    assert s(bm_blasts=blasts + dblasts) >= ref
    assert s(cyto=min(cyto + 1, 4)) >= ref
    assert s(anc=anc / 2) >= ref


# --- IPSS-M (Bernard 2022) --------------------------------------------------------------


def _ipssm_vars(n=1, **overrides):
    genes = {g: np.zeros(n) for g in ipss.IPSSM_GENES}
    genes.update({k: np.asarray(v, dtype=float) for k, v in overrides.pop("genes", {}).items()})
    base = dict(hb=np.full(n, 9.87), plt=np.full(n, 141.0), bm_blasts=np.full(n, 4.61), cyto=np.full(n, 1.0))
    base.update({k: np.asarray(v, dtype=float) for k, v in overrides.items() if k in base})
    cyto_flags = {
        k: np.asarray(overrides.get(k, np.zeros(n)), dtype=float) for k in ("del5q", "del7_7q", "complex")
    }
    return ipss.ipssm_variables(
        base["hb"],
        base["plt"],
        base["bm_blasts"],
        base["cyto"],
        genes,
        del5q=cyto_flags["del5q"],
        del7_7q=cyto_flags["del7_7q"],
        complex_karyotype=cyto_flags["complex"],
    )


def test_ipssm_hand_case_tp53multi():
    # A patient at the clinical means with cyto Good (1) and only TP53multi mutated:
    # sum = (1 - 1.39) * 0.287 + (1 - 0.071) * 1.18 + sum over the other binaries of (0 - mean) * beta
    #       + (0.922 - 0.922) * 0.352 [blasts 4.61% -> 0.922] + 0 (Hb, PLT at means).
    v = _ipssm_vars(genes={"TP53multi": [1.0]})
    expected = (1 - 1.39) * 0.287 + (1 - 0.071) * 1.18
    for name, (beta, mean, *_) in ipss.IPSSM_MODEL.items():
        if name not in ("HB1", "TRANSF_PLT100", "BLAST5", "CYTOVEC", "TP53multi"):
            expected += (0 - mean) * beta
    expected += (4.61 / 5 - 0.922) * 0.352
    assert ipss.ipssm_score(v, rounding=None)[0] == pytest.approx(expected / np.log(2), abs=1e-12)
    assert ipss.ipssm_score(v)[0] == pytest.approx(round(expected / np.log(2), 2))


def test_ipssm_derived_variables():
    # SF3B1 + del(5q): SF3B1_5q; with -7 it is not; SF3B1 alone with SRSF2: not alpha.
    v = _ipssm_vars(
        n=4,
        genes={"SF3B1": [1, 1, 1, 1], "SRSF2": [0, 0, 1, 0], "FLT3_ITD": [0, 0, 0, 1]},
        del5q=[1, 1, 0, 0],
        del7_7q=[0, 1, 0, 0],
    )
    np.testing.assert_array_equal(v["SF3B1_5q"], [1, 0, 0, 0])
    np.testing.assert_array_equal(v["SF3B1_alpha"], [0, 1, 0, 1])
    np.testing.assert_array_equal(v["FLT3"], [0, 0, 0, 1])


def test_nres2_scenarios_hand_cases():
    res = np.zeros((3, 15))
    res[0, 0] = 1  # one mutated, none missing: 1 in every scenario
    res[1, 0], res[1, 1:3] = 1, np.nan  # one mutated, two missing
    res[2, :] = np.nan  # nothing sequenced: mean scenario is the cohort mean 0.388
    out = ipss.nres2(res)
    np.testing.assert_allclose(out["best"], [1, 1, 0])
    np.testing.assert_allclose(out["worst"], [1, 2, 2])
    np.testing.assert_allclose(out["mean"], [1, 1 + 0.5 * (2 / 15) * 0.388, 0.388])


def test_ipssm_scenarios_bracket_the_mean_and_agree_without_missing():
    v = _ipssm_vars(n=2, genes={"NPM1": [np.nan, 0.0], "RUNX1": [np.nan, 1.0]})
    best, mean, worst = (ipss.ipssm_score(v, s, rounding=None) for s in ("best", "mean", "worst"))
    assert best[0] < mean[0] < worst[0]
    assert best[1] == mean[1] == worst[1]
    with pytest.raises(ValueError, match="scenario"):
        ipss.ipssm_score(v, "typical")


def test_ipssm_categories_at_cut_points():
    scores = np.array([-1.5, -1.49, -0.5, 0.0, 0.01, 0.5, 1.5, 1.51])
    np.testing.assert_array_equal(ipss.ipssm_category(scores), [0, 1, 1, 2, 3, 3, 4, 5])


@settings(max_examples=100, deadline=None)
@given(
    hb=st.floats(4, 20),
    plt=st.floats(0, 500),
    blasts=st.floats(0, 25),
    cyto=st.integers(0, 3),
    gene=st.sampled_from(["TP53multi", "FLT3", "MLL_PTD", "NPM1", "RUNX1", "ASXL1", "KRAS", "WT1"]),
)
def test_ipssm_monotone_in_each_risk_factor(hb, plt, blasts, cyto, gene):
    def s(**kw):
        args = dict(hb=[hb], plt=[plt], bm_blasts=[blasts], cyto=[cyto]) | kw
        return ipss.ipssm_score(_ipssm_vars(**args), rounding=None)[0]

    ref = s()
    assert s(hb=[max(hb - 1, 4)]) >= ref
    assert s(plt=[max(plt - 50, 0)]) >= ref
    assert s(bm_blasts=[blasts + 2]) >= ref
    assert s(cyto=[cyto + 1]) > ref
    assert s(genes={gene: [1.0]}) > ref


# --- CPSS-mol (Elena 2016) --------------------------------------------------------------


def test_cpss_mol_hand_cases():
    # Normal karyotype (0) + ASXL1 (1) + RUNX1 (2) = genetic score 3 -> high (3);
    # + blasts 6% (1) + WBC 20 (1) + no transfusion = 5 -> High (group 3).
    # -Y alone (0), no mutations -> 0; blasts 4%, WBC 12.9, transfused -> 1 -> Intermediate-1.
    # Trisomy 8 (2) + NRAS (1) = 3 -> high 3; blasts 2, WBC 5 -> 3 -> Intermediate-2.
    risk = cpss.cpss_cytogenetic_risk(
        normal=np.array([1, 0, 0]), minus_y_alone=np.array([0, 1, 0]), trisomy8=np.array([0, 0, 1]),
        chr7=np.zeros(3), complex_=np.zeros(3),
    )  # fmt: skip
    np.testing.assert_array_equal(risk, [0, 0, 2])
    score = cpss.cpss_genetic_score(
        risk, np.array([1, 0, 0]), np.array([0, 0, 1]), np.zeros(3), np.array([1, 0, 0])
    )
    genetic = cpss.cpss_genetic_risk(score)
    np.testing.assert_array_equal(genetic, [3, 0, 3])
    points = cpss.cpss_mol_points(genetic, np.array([6, 4, 2]), np.array([20, 12.9, 5]), np.array([0, 1, 0]))
    np.testing.assert_array_equal(points, [5, 1, 3])
    np.testing.assert_array_equal(cpss.cpss_mol_group(points), [3, 1, 2])
    # An abnormality other than -Y, +8, chr 7 or complex is intermediate.
    assert cpss.cpss_cytogenetic_risk(0.0, 0.0, 0.0, 0.0, 0.0) == 1
    assert np.isnan(cpss.cpss_mol_points(0.0, np.nan, 5.0, 0.0))


@settings(max_examples=100, deadline=None)
@given(genetic=st.integers(0, 3), blasts=st.floats(0, 19), wbc=st.floats(0, 100), td=st.integers(0, 1))
def test_cpss_mol_monotone(genetic, blasts, wbc, td):
    p = cpss.cpss_mol_points(genetic, blasts, wbc, td)
    assert cpss.cpss_mol_points(min(genetic + 1, 3), blasts, wbc, td) >= p
    assert cpss.cpss_mol_points(genetic, blasts + 5, wbc, td) >= p
    assert cpss.cpss_mol_points(genetic, blasts, wbc + 10, td) >= p
    assert cpss.cpss_mol_points(genetic, blasts, wbc, 1) >= p


# --- ELN 2022 (Döhner 2022) -------------------------------------------------------------


def _eln(**on):
    flags = {k: np.zeros(1) for k in eln.ELN2022_INPUTS}
    flags.update({k: np.array([float(v)]) for k, v in on.items()})
    return eln.eln2022_risk(flags)[0]


@pytest.mark.parametrize(
    ("flags", "group"),
    [
        ({}, 1),  # nothing: intermediate
        ({"t_8_21": 1}, 0),
        ({"inv16": 1, "ASXL1": 1}, 0),  # MR gene does not override a favourable subtype
        ({"NPM1": 1}, 0),
        ({"NPM1": 1, "FLT3_ITD": 1}, 1),
        ({"FLT3_ITD": 1}, 1),
        ({"NPM1": 1, "minus7": 1}, 2),  # NPM1 with adverse cytogenetics is adverse
        ({"CEBPA_bZIP": 1}, 0),
        ({"t_9_11": 1}, 1),
        ({"t_9_11": 1, "RUNX1": 1}, 1),  # t(9;11) takes precedence over adverse mutations
        ({"kmt2a_r": 1}, 2),
        ({"complex_or_monosomal": 1}, 2),
        ({"TP53": 1}, 2),
        ({"SRSF2": 1}, 2),
        ({"NPM1": 1, "SRSF2": 1}, 0),
    ],
)
def test_eln2022_hand_cases(flags, group):
    assert _eln(**flags) == group


def test_eln2022_unknown_flags():
    # Unknown TP53 in an otherwise intermediate patient: could be adverse -> unknown.
    assert np.isnan(_eln(TP53=np.nan))
    # Unknown TP53 beside t(8;21): favourable either way -> favourable.
    assert _eln(t_8_21=1, TP53=np.nan) == 0
    with pytest.raises(KeyError, match="missing input"):
        eln.eln2022_risk({"NPM1": np.zeros(1)})


# --- R-ISS (Palumbo 2015) ---------------------------------------------------------------


def test_riss_hand_cases():
    stage = riss.riss_stage(
        beta2m=np.array([2.0, 2.0, 6.0, 6.0, 4.0, 2.0]),
        albumin=np.array([4.0, 4.0, 3.0, 3.0, 4.0, 3.0]),
        high_risk_cyto=np.array([0, 1, 0, 0, 1, 0]),
        ldh_high=np.array([0, 0, 1, 0, 1, 0]),
    )
    # ISS I standard: I; ISS I + del17p: II; ISS III + high LDH: III; ISS III standard: II;
    # ISS II (beta2m 4): II whatever else; beta2m 2 with albumin 3: ISS II -> II.
    np.testing.assert_array_equal(stage, [1, 2, 3, 2, 2, 2])
    np.testing.assert_array_equal(
        riss.iss_stage(np.array([3.49, 3.5, 5.5]), np.array([3.5, 4, 1])), [1, 2, 3]
    )
    # ISS I with unknown LDH could be I or II: unknown; ISS III needs no albumin.
    assert np.isnan(riss.riss_stage(2.0, 4.0, 0.0, np.nan))
    assert riss.iss_stage(6.0, np.nan) == 3


@settings(max_examples=100, deadline=None)
@given(b2m=st.floats(0.5, 15), alb=st.floats(1.5, 5.5), hr=st.integers(0, 1), ldh=st.integers(0, 1))
def test_riss_monotone(b2m, alb, hr, ldh):
    s = riss.riss_stage(b2m, alb, hr, ldh)
    assert riss.riss_stage(b2m + 2, alb, hr, ldh) >= s
    assert riss.riss_stage(b2m, alb - 1, hr, ldh) >= s
    assert riss.riss_stage(b2m, alb, 1, ldh) >= s
    assert riss.riss_stage(b2m, alb, hr, 1) >= s


def test_eln2022_unknowns_are_exact():
    # NPM1 and FLT3-ITD both unknown: intermediate at both extremes, but NPM1+/ITD- is
    # favourable, so the group is undetermined.
    assert np.isnan(_eln(NPM1=np.nan, FLT3_ITD=np.nan))
    # Adverse cytogenetics known: adverse whatever the unknown mutations (no CBF possible).
    assert _eln(minus7=1, TP53=np.nan, NPM1=np.nan, ASXL1=np.nan) == 2


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from([0.0, 1.0, np.nan]),
        min_size=len(eln.ELN2022_INPUTS),
        max_size=len(eln.ELN2022_INPUTS),
    )
)
def test_eln2022_unknown_iff_completions_disagree(values):
    flags = {k: np.array([v]) for k, v in zip(eln.ELN2022_INPUTS, values, strict=True)}
    group = eln.eln2022_risk(flags)[0]
    unknown = [k for k, v in zip(eln.ELN2022_INPUTS, values, strict=True) if np.isnan(v)]
    if len(unknown) > 6:
        unknown_subset = unknown[:6]  # enumerate these; fix the rest at random
        rng = np.random.default_rng(0)
        flags = {
            k: (np.array([float(rng.integers(0, 2))]) if k in unknown[6:] else v) for k, v in flags.items()
        }
    else:
        unknown_subset = unknown
    # every completion of the enumerated unknowns, one row each, in one call (rows are independent)
    bits = np.arange(2 ** len(unknown_subset))
    filled = {k: np.repeat(v, len(bits)) for k, v in flags.items()}
    for i, k in enumerate(unknown_subset):
        filled[k] = ((bits >> i) & 1).astype(np.float64)
    outcomes = set(eln.eln2022_risk(filled).tolist())
    if not np.isnan(group):
        assert outcomes == {group}
    elif len(unknown) <= 6:
        assert len(outcomes) > 1
