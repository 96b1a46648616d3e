"""The optional treatment layer: hand-checked rules, rates, recovered hazard ratios, off-by-default identity,
guide layer, FHIR round trip, config knob and one tiny run with the layer on."""

from __future__ import annotations

import json
import math

import numpy as np
import orjson
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fedjax_rhd.config import run_config
from fedjax_rhd.results import validate_results
from fedjax_rhd.simulate import simulate_cmml, simulate_mds
from fedjax_rhd.simulate import treatment as tx
from fedjax_rhd.sources.simulated import generator_fingerprint
from harmonize.extract import extract_centre
from harmonize.fhir import ingest_source
from harmonize.guide import GuideError, load_guide
from harmonize.identity import dataset_id
from harmonize.registry import source_card, spec_for_run
from harmonize.sources import CanonicalExportSource, write_canonical_export
from tests.conftest import TINY, compose, run_in_process

SIMULATE = {"mds": simulate_mds, "cmml": simulate_cmml}
TX_COLUMNS = list(tx.FEATURES)


# --- assignment rules, by hand -----------------------------------------------------------------


def test_first_line_probabilities_by_hand():
    p = tx.MDS  # p_hma_lower .05, p_hma_higher .9, p_hma_old .6, p_intensive .4 (< 65 y, blasts >= 10)
    higher = np.array([False, True, True, True, True, True, False])
    age = np.array([60.0, 60.0, 60.0, 85.0, 64.9, 65.0, 50.0])
    blasts = np.array([15.0, 12.0, 5.0, 15.0, 10.0, 10.0, 2.0])
    got = tx.first_line_probabilities(higher, age, blasts, p)
    expected = np.array(
        [
            [0.95, 0.05, 0.0],  # lower risk: supportive care, a few HMA, never intensive
            [0.06, 0.54, 0.4],  # young, excess blasts: 40% intensive, 90% of the rest HMA
            [0.10, 0.90, 0.0],  # young, few blasts: no intensive chemotherapy
            [0.40, 0.60, 0.0],  # >= 80: fewer HMA, no intensive
            [0.06, 0.54, 0.4],  # just under the age cut, blasts at the cut: eligible
            [0.10, 0.90, 0.0],  # at the age cut: not eligible
            [0.95, 0.05, 0.0],
        ]
    )
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_hsct_probability_by_hand():
    higher = np.array([True, True, True, False])
    age = np.array([69.9, 70.0, 50.0, 50.0])
    donor = np.array([True, True, False, True])
    np.testing.assert_allclose(tx.hsct_probability(higher, age, donor, tx.MDS), [0.6, 0.0, 0.0, 0.0])


def test_assignment_with_certain_probabilities_is_exact():
    certain = tx.TreatmentParams(
        p_hma_lower=0.0,
        p_hma_higher=1.0,
        p_hma_old=1.0,
        p_intensive=1.0,
        p_decitabine=0.0,
        p_donor=1.0,
        p_hsct=1.0,
        response_rates=(0.0, 0.0, 0.0, 1.0, 0.0),
    )
    higher = np.array([False, True, True, True])
    age = np.array([50.0, 60.0, 75.0, 60.0])
    blasts = np.array([20.0, 15.0, 15.0, 3.0])
    out = tx.assign_treatment(np.random.default_rng(0), higher, age, blasts, certain)
    np.testing.assert_array_equal(out["intensive_chemo"], [0, 1, 0, 0])
    np.testing.assert_array_equal(out["hma_azacitidine"], [0, 0, 1, 1])
    np.testing.assert_array_equal(out["hma_decitabine"], [0, 0, 0, 0])
    np.testing.assert_array_equal(out["allo_hsct"], [0, 1, 0, 1])  # 75 is past the transplant age
    np.testing.assert_array_equal(out["hma_response"], [-1, -1, 3, 3])  # "sd", none without HMA


def test_treatment_log_hazard_by_hand():
    cols = {
        "hma_azacitidine": np.array([1, 0, 0, 0, 1]),
        "hma_decitabine": np.array([0, 1, 0, 0, 0]),
        "intensive_chemo": np.array([0, 0, 1, 0, 0]),
        "allo_hsct": np.array([0, 0, 0, 1, 1]),
        "hma_response": np.array([0, 4, -1, -1, 3]),
    }
    p = tx.MDS
    # centred offsets: beta - sum(rate * beta); sum = .17(-.5) + .12(-.35) + .16(-.25) + .2(.6) = -0.047
    mean = 0.17 * -0.5 + 0.12 * -0.35 + 0.16 * -0.25 + 0.35 * 0.0 + 0.20 * 0.6
    expected = [
        math.log(0.58) + (-0.5 - mean),
        math.log(0.88) + (0.6 - mean),
        math.log(0.76),
        math.log(0.56),
        math.log(0.58) + math.log(0.56) + (0.0 - mean),
    ]
    np.testing.assert_allclose(tx.treatment_log_hazard(cols, p), expected, atol=1e-12)
    assert abs(float(np.dot(p.response_rates, p.centred_response_log_hr))) < 1e-12


def test_params_reject_bad_response_rates():
    with pytest.raises(ValueError, match="sum to 1"):
        tx.TreatmentParams(response_rates=(0.5, 0.5, 0.5, 0.0, 0.0))
    with pytest.raises(ValueError, match="need"):
        tx.TreatmentParams(response_rates=(1.0,))


# --- rates on a large draw ---------------------------------------------------------------------


def test_response_and_first_line_rates_within_sampling_error():
    n = 200_000
    rng = np.random.default_rng(11)
    higher = rng.random(n) < 0.5
    age = rng.uniform(40, 90, n)
    blasts = rng.uniform(0, 19, n)
    out = tx.assign_treatment(np.random.default_rng(12), higher, age, blasts, tx.MDS)
    probs = tx.first_line_probabilities(higher, age, blasts, tx.MDS)
    hma = (out["hma_azacitidine"] + out["hma_decitabine"]).astype(bool)
    observed_lines = np.array(
        [(~hma & (out["intensive_chemo"] == 0)).sum(), hma.sum(), out["intensive_chemo"].sum()]
    )
    expected_lines = probs.sum(axis=0)
    sd_lines = np.sqrt((probs * (1 - probs)).sum(axis=0))
    assert np.all(np.abs(observed_lines - expected_lines) < 4 * sd_lines), (observed_lines, expected_lines)
    # responses among HMA-treated: binomial proportions within 4 standard errors
    m = int(hma.sum())
    counts = np.bincount(out["hma_response"][hma], minlength=5)
    rates = np.asarray(tx.MDS.response_rates)
    se = np.sqrt(rates * (1 - rates) / m)
    assert np.all(np.abs(counts / m - rates) < 4 * se), (counts / m, rates)
    assert np.all(out["hma_response"][~hma] == -1)
    overall = counts[:3].sum() / m  # CR + PR + HI
    assert 0.40 <= overall <= 0.50
    dec_share = out["hma_decitabine"][hma].mean()
    assert abs(dec_share - tx.MDS.p_decitabine) < 4 * math.sqrt(0.2 * 0.8 / m)


# --- the hazard effect, recovered by a Cox fit ---------------------------------------------------


def _tx_arrays(df: pl.DataFrame) -> dict[str, np.ndarray]:
    codes = {level: i for i, level in enumerate(tx.RESPONSE_LEVELS)}
    return {
        **{c: df[c].to_numpy().astype(np.int64) for c in TX_COLUMNS[:4]},
        "hma_response": np.array([-1 if v is None else codes[v] for v in df["hma_response"].to_list()]),
    }


def test_cox_fit_recovers_the_configured_log_hazard_ratios():
    from lifelines import CoxPHFitter

    guide = load_guide("mds+treatment")
    df = simulate_mds(guide, n=30_000, seed=5, with_treatment=True)
    t = _tx_arrays(df)
    base = df["oracle_risk"].to_numpy() - tx.treatment_log_hazard(t, tx.MDS)
    resp = t["hma_response"]
    x = pl.DataFrame(
        {
            "base": base,
            "aza": t["hma_azacitidine"],
            "dec": t["hma_decitabine"],
            "ic": t["intensive_chemo"],
            "hsct": t["allo_hsct"],
            **{
                f"r_{lv}": (resp == i).astype(np.int64)
                for i, lv in enumerate(tx.RESPONSE_LEVELS)
                if lv != "sd"
            },
            "time": df["time"].to_numpy(),
            "event": df["event"].to_numpy(),
        }
    ).to_pandas()
    fit = CoxPHFitter().fit(x, duration_col="time", event_col="event")
    p = tx.MDS
    # SD is the reference response: an HMA's coefficient carries SD's centred offset.
    c = p.centred_response_log_hr
    truth = {
        "base": 1.0,
        "aza": p.log_hr_azacitidine + c[3],
        "dec": p.log_hr_decitabine + c[3],
        "ic": p.log_hr_intensive,
        "hsct": p.log_hr_hsct,
        "r_cr": c[0] - c[3],
        "r_pr": c[1] - c[3],
        "r_hi": c[2] - c[3],
        "r_pd": c[4] - c[3],
    }
    for name, value in truth.items():
        coef, se = fit.params_[name], fit.standard_errors_[name]
        # 3.3 standard errors: a 99.9% interval per coefficient, so nine checks rarely fail by chance
        assert abs(coef - value) < 3.3 * se, (name, coef, value, se)


# --- off by default: nothing changes ------------------------------------------------------------


@pytest.mark.parametrize("use_case", ["mds", "cmml"])
def test_layer_off_is_the_default_and_on_keeps_every_other_draw(use_case):
    simulate = SIMULATE[use_case]
    base_guide, tx_guide = load_guide(use_case), load_guide(f"{use_case}+treatment")
    assert "treatment" not in {f.group for f in base_guide.features}
    off = simulate(base_guide, n=800, seed=3)
    assert off.equals(simulate(base_guide, n=800, seed=3, with_treatment=False))
    on = simulate(tx_guide, n=800, seed=3, with_treatment=True)
    assert on.select(base_guide.feature_names).equals(off.select(base_guide.feature_names))
    t = _tx_arrays(on)
    effect = tx.treatment_log_hazard(t, tx.PARAMS[use_case])
    np.testing.assert_allclose(
        on["oracle_risk"].to_numpy(), off["oracle_risk"].to_numpy() + effect, atol=1e-12
    )
    untreated = effect == 0.0
    assert 100 < untreated.sum() < 800
    # same exponential draw: untreated patients keep their time and event exactly
    for col in ("time", "event"):
        np.testing.assert_array_equal(on[col].to_numpy()[untreated], off[col].to_numpy()[untreated])
    assert dataset_id(off, base_guide) != dataset_id(on, tx_guide)


def test_default_dataset_spec_and_fingerprint_ignore_the_layer(mds_guide):
    spec = spec_for_run(
        use_case="mds", guide="mds", source="simulated", dataset=None, n_patients=50, seed_data=0
    )
    assert spec.name == "mds-sim-n50-seed0" and "treatment" not in dict(spec.options)
    assert source_card(spec, mds_guide)["generator"] == generator_fingerprint("mds")
    on = spec_for_run(
        use_case="mds",
        guide="mds",
        source="simulated",
        dataset=None,
        n_patients=50,
        seed_data=0,
        treatment=True,
    )
    assert on.name == "mds-sim-n50-seed0-treatment" and dict(on.options)["treatment"] is True
    assert source_card(on, load_guide("mds+treatment"))["generator"] == generator_fingerprint(
        "mds", treatment=True
    )
    assert generator_fingerprint("mds", treatment=True) != generator_fingerprint("mds")
    with pytest.raises(ValueError, match="use_case.source=simulated"):
        spec_for_run(
            use_case="mds",
            guide="mds",
            source="iwgpm",
            dataset=None,
            n_patients=1,
            seed_data=0,
            treatment=True,
        )


def test_deterministic_given_the_seed():
    g = load_guide("cmml+treatment")
    a = simulate_cmml(g, n=300, seed=9, with_treatment=True)
    assert a.equals(simulate_cmml(g, n=300, seed=9, with_treatment=True))
    assert not a.select(TX_COLUMNS).equals(
        simulate_cmml(g, n=300, seed=10, with_treatment=True).select(TX_COLUMNS)
    )


@settings(max_examples=10, deadline=None)
@given(use_case=st.sampled_from(["mds", "cmml"]), n=st.integers(1, 300), seed=st.integers(0, 2**32 - 1))
def test_every_table_with_the_layer_follows_the_guide_and_the_rules(use_case, n, seed):
    guide = load_guide(f"{use_case}+treatment")
    df = SIMULATE[use_case](guide, n=n, seed=seed, with_treatment=True)
    assert df.columns == ["patient_id", "centre", *guide.feature_names, "time", "event", "oracle_risk"]
    for f in guide.features[-5:]:
        want = pl.Int8 if f.kind == "binary" else pl.String
        assert df[f.name].dtype == want, f.name
        values = set(df[f.name].drop_nulls().to_list())
        assert values <= ({0, 1} if f.kind == "binary" else set(f.levels)), f.name
    t = _tx_arrays(df)
    for c in TX_COLUMNS[:4]:
        assert df[c].null_count() == 0, c  # complete: no extra missingness
    hma = t["hma_azacitidine"] + t["hma_decitabine"]
    assert np.all(hma + t["intensive_chemo"] <= 1)  # one first-line therapy at most
    np.testing.assert_array_equal(t["hma_response"] >= 0, hma == 1)  # response iff an HMA was given
    age = df["age"].to_numpy()
    young = np.where(np.isnan(age), True, age < tx.PARAMS[use_case].hsct_age_max)
    assert np.all(young[t["allo_hsct"] == 1])
    assert np.isfinite(df["oracle_risk"].to_numpy()).all()


# --- the guide layer ----------------------------------------------------------------------------


def test_guide_layer_appends_treatment_features(mds_guide):
    g = load_guide("mds+treatment")
    assert g.features[: len(mds_guide.features)] == mds_guide.features
    assert [f.name for f in g.features[len(mds_guide.features) :]] == TX_COLUMNS
    assert {f.group for f in g.features[len(mds_guide.features) :]} == {"treatment"}
    assert {f.name: f.kind for f in g.features if f.group == "treatment"} == tx.FEATURES
    assert g.feature("hma_response").levels == tx.RESPONSE_LEVELS
    assert g.version == f"{mds_guide.version}+treatment.0.1.0" and g.layers == ("treatment",)
    codes = {f.name: (f.fhir.resource, f.fhir.coding.system, f.fhir.coding.code) for f in g.features[-5:]}
    assert codes["hma_azacitidine"] == ("MedicationStatement", "http://www.whocc.no/atc", "L01BC07")
    assert codes["hma_decitabine"] == ("MedicationStatement", "http://www.whocc.no/atc", "L01BC08")
    assert codes["allo_hsct"] == ("Procedure", "http://snomed.info/sct", "234336002")


def test_guide_layer_errors_name_the_problem():
    with pytest.raises(GuideError, match="does not apply to use case 'aml'"):
        load_guide("aml+treatment")
    with pytest.raises(GuideError, match="no guide layer 'dosing'"):
        load_guide("mds+dosing")
    with pytest.raises(ValueError, match=r"hma_azacitidine.*no generative model"):
        simulate_mds(load_guide("mds+treatment"), n=10, seed=0)
    with pytest.raises(ValueError, match="lacks feature"):
        simulate_mds(load_guide("mds"), n=10, seed=0, with_treatment=True)


# --- FHIR round trip ----------------------------------------------------------------------------


@pytest.mark.parametrize("use_case", ["mds", "cmml"])
def test_fhir_round_trip_of_the_treatment_columns(tmp_path, use_case):
    guide = load_guide(f"{use_case}+treatment")
    df = SIMULATE[use_case](guide, n=250, seed=2, with_treatment=True)
    write_canonical_export(df, guide, tmp_path / "export", {"source": "test"})
    stats = ingest_source(CanonicalExportSource(tmp_path / "export", guide), guide, tmp_path / "fhir")
    n_given = sum(int(df[c].sum()) for c in TX_COLUMNS[:3])
    assert stats["simulated"].resources["MedicationStatement"] == 3 * 250  # given or explicitly not given
    assert stats["simulated"].resources["Procedure"] == 250
    table, ex = extract_centre(tmp_path / "fhir", "simulated", guide)
    expected = df.drop("oracle_risk").sort("patient_id")
    assert table.equals(expected) and table.schema == expected.schema
    assert not ex.unmapped and not ex.rejected_values
    folder = tmp_path / "fhir" / "simulated"
    meds = [orjson.loads(line) for line in (folder / "MedicationStatement.ndjson").read_bytes().splitlines()]
    taking = [m for m in meds if m["adherence"]["code"]["coding"][0]["code"] == "taking"]
    assert len(taking) == n_given
    aza = {
        m["subject"]["reference"]
        for m in taking
        if m["medication"]["concept"]["coding"][0]["code"] == "L01BC07"
    }
    assert len(aza) == int(df["hma_azacitidine"].sum())
    procs = [orjson.loads(line) for line in (folder / "Procedure.ndjson").read_bytes().splitlines()]
    assert sum(p["status"] == "completed" for p in procs) == int(df["allo_hsct"].sum())
    obs = [orjson.loads(line) for line in (folder / "Observation.ndjson").read_bytes().splitlines()]
    responses = [o for o in obs if o["code"]["coding"][0]["code"] == "hma-best-response"]
    assert len(responses) == df["hma_response"].is_not_null().sum()
    assert {o["valueCodeableConcept"]["coding"][0]["system"] for o in responses} == {
        "https://fedjax-rhd.org/fhir/CodeSystem/iwg-response"
    }


# --- config and one tiny run --------------------------------------------------------------------


def test_config_knob_is_off_by_default_and_names_the_layered_guide():
    off = run_config(compose()).use_case
    assert off.treatment is False and off.guide_name == "mds"
    on = run_config(compose(["use_case=cmml", "use_case.treatment=true"])).use_case
    assert on.treatment is True and on.guide_name == "cmml+treatment"


def test_tiny_run_with_the_layer_on(tmp_path):
    res = run_in_process([*TINY, "use_case.treatment=true"], tmp_path / "run", tmp_path / "data")
    validate_results(res)
    assert res["dataset"]["layers"] == ["treatment"]
    assert res["dataset"]["name"] == "mds-sim-n600-seed0-treatment"
    assert res["config"]["use_case"]["treatment"] is True
    card = json.loads((tmp_path / "data" / "datasets" / res["dataset"]["name"] / "dataset.json").read_text())
    assert card["id"] == res["dataset"]["id"] and card["source"]["options"]["treatment"] is True
    assert [f["name"] for f in card["features"] if f["group"] == "treatment"] == TX_COLUMNS
    assert res["preprocessing"]  # the treatment columns went through the same preprocessing


def test_harmonize_cli_builds_a_layered_guide(tmp_path, capsys):
    from harmonize.cli import main

    main(
        ["build", "tiny", "--use-case", "cmml+treatment", "--n", "40", "--seed", "0"]
        + ["--data-root", str(tmp_path), "--quiet"]
    )
    assert "tiny-treatment: id ds-" in capsys.readouterr().out
    card = json.loads((tmp_path / "datasets" / "tiny-treatment" / "dataset.json").read_text())
    assert card["source"]["options"] == {"n": 40, "seed": 0, "treatment": True}
    assert card["guide_version"].endswith("+treatment.0.1.0")
