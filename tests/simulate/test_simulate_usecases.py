"""Simulated AML (Beat AML-calibrated), myeloma with PET radiomics, MDS with slide embeddings.

Calibration targets for AML are read from the committed parameter file (measured on Beat
AML by ``experiments/simulation/fit_aml.py``); for myeloma they are the published figures
cited in ``fedjax_rhd/simulate/mm.py``.
"""

from __future__ import annotations

import json
import time

import numpy as np
import polars as pl
import pytest
from lifelines.utils import concordance_index
from scipy.sparse.linalg import svds

from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.scores import riss
from fedjax_rhd.simulate import aml, mds_wsi, mm
from fedjax_rhd.simulate.mds import simulate_mds
from fedjax_rhd.sources.scores import clinical_scores
from fedjax_rhd.sources.simulated import SIMULATORS
from harmonize.datasets import load_or_build_dataset
from harmonize.guide import load_guide, require_fhir
from harmonize.identity import dataset_id
from harmonize.registry import DatasetSpec


@pytest.fixture(scope="module")
def aml_guide():
    return load_guide("aml")


@pytest.fixture(scope="module")
def mm_guide():
    return load_guide("mm")


@pytest.fixture(scope="module")
def wsi_guide():
    return cached_guide("mds_wsi")  # 1,536 features: parsed once, shared with the schema test


@pytest.fixture(scope="module")
def aml_large(aml_guide):
    return aml.simulate_aml(aml_guide, n=20000, seed=0)


@pytest.fixture(scope="module")
def mm_large(mm_guide):
    return mm.simulate_mm(mm_guide, n=20000, seed=0)


def _c(df: pl.DataFrame, risk: np.ndarray) -> float:
    ok = ~np.isnan(risk)
    return concordance_index(df["time"].to_numpy()[ok], -risk[ok], df["event"].to_numpy()[ok])


@pytest.mark.parametrize(
    ("use_case", "n", "prefix"),
    [("aml", 1547, "AML-SIM"), ("mm", 1005, "MM-SIM"), ("mds_wsi", 860, "MDS-SIM")],
)
def test_schema_determinism_and_registration(use_case, n, prefix):
    guide = cached_guide(use_case)
    require_fhir(guide)
    sim = SIMULATORS[use_case]
    a, b, c = sim(guide, n=120, seed=4), sim(guide, n=120, seed=4), sim(guide, n=120, seed=5)
    assert a.equals(b) and not a.equals(c)
    assert a.columns == ["patient_id", "centre", *guide.feature_names, "time", "event", "oracle_risk"]
    assert a["patient_id"][0].startswith(prefix) and a["patient_id"].is_sorted()
    want = {"continuous": pl.Float64, "binary": pl.Int8, "categorical": pl.String}
    for f in guide.features:
        col = a[f.name]
        assert col.dtype == want[f.kind], f.name
        if f.kind == "continuous" and col.drop_nulls().len():
            assert f.valid_range[0] <= col.min() and col.max() <= f.valid_range[1], f.name
    assert (a["time"] > 0).all() and set(a["event"].unique()) <= {0, 1}
    assert dataset_id(a, guide).startswith("ds-")
    assert sim.__defaults__[0] == n  # the study's cohort size is the default


def test_aml_frequencies_and_associations_match_beat_aml(aml_large):
    targets = aml.params()["targets"]
    df = aml_large
    for flag, beat in targets["freq"].items():
        if flag in ("CEBPA", "PDS5B"):
            continue
        sim = float(df[flag].mean())
        # 20,000 draws: sampling error ~0.004; the class model reproduces Beat AML within 0.03.
        assert abs(sim - beat) < 0.03, (flag, sim, beat)
    for key, (given, not_given) in targets["associations"].items():
        a, b = key.split("|")
        sim_given = float(df.filter(pl.col(b) == 1)[a].mean())
        sim_not = float(df.filter(pl.col(b) == 0)[a].mean())
        assert abs(sim_given - given) < 0.08 and abs(sim_not - not_given) < 0.08, (key, sim_given, sim_not)
    for lab, (q1, med, q3) in targets["lab_quartiles"].items():
        got = float(df[lab].median())
        assert q1 <= got <= q3 and abs(got - med) <= 0.25 * (q3 - q1) + 1e-9, (lab, got, med)


def test_aml_missingness_is_blockwise(aml_large):
    cyto = [f for f in ("t_8_21", "inv16", "minus7", "normal_karyotype")]
    nulls = aml_large.select([pl.col(c).is_null() for c in cyto]).to_numpy()
    assert (nulls == nulls[:, :1]).all()  # a karyotype is there or not
    miss = aml.params()["missing"]
    assert abs(nulls[:, 0].mean() - miss["cytogenetic_block"]) < 0.01
    assert abs(aml_large["ldh"].is_null().mean() - miss["ldh"]) < 0.015
    itd = aml_large["FLT3_ITD"].to_numpy()
    ar = aml_large["FLT3_ITD_ar"].to_numpy()
    assert (ar[itd == 0] == 0).all() and np.nanmedian(ar[itd == 1]) == pytest.approx(0.5, abs=0.05)


def test_aml_eln_on_hand_made_rows():
    cov = {k: np.zeros(5) for k in aml.eln.ELN2022_INPUTS}
    cov["TP53_vaf"] = np.zeros(5)
    cov["NPM1"][0] = 1  # NPM1 without ITD: favourable
    cov["TP53"][1], cov["TP53_vaf"][1] = 1, 0.05  # below the 10% VAF threshold: not adverse
    cov["TP53"][2], cov["TP53_vaf"][2] = 1, 0.30  # adverse
    cov["NPM1"][3], cov["FLT3_ITD"][3] = 1, 1  # NPM1 with ITD: intermediate
    cov["TP53"][4], cov["TP53_vaf"][4] = 1, np.nan  # VAF unknown: undetermined
    got = aml.eln.eln2022_risk(aml.eln_flags(cov))
    np.testing.assert_array_equal(got[:4], [0.0, 1.0, 2.0, 1.0])
    assert np.isnan(got[4])


def test_aml_ground_truth_and_eln_discrimination(aml_large, aml_guide):
    name, scores = clinical_scores(aml_large, aml_guide)
    assert name == "ELN 2022"
    eln_c = _c(aml_large, scores["clinical_score"].fill_null(np.nan).to_numpy())
    oracle_c = _c(aml_large, aml_large["oracle_risk"].to_numpy())
    assert 0.78 <= oracle_c <= 0.85 and 0.58 <= eln_c <= 0.68, (oracle_c, eln_c)


def test_mm_matches_published_frequencies(mm_large):
    df = mm_large
    # (value, target, tolerance): Kyle 2003, Greipp 2005, Palumbo 2015, Walker 2018.
    checks = {
        "male": (df["sex_male"].mean(), 0.59, 0.02),
        "age median": (df["age"].median(), 66.0, 1.0),
        "Hb < 12": ((df["hb"] < 12).mean(), 0.73, 0.04),
        "creatinine >= 2": ((df["creatinine"] >= 2).mean(), 0.19, 0.03),
        "calcium >= 11": ((df["calcium"] >= 11).mean(), 0.13, 0.03),
        "LDH high": ((df["ldh"] > mm.LDH_ULN).mean(), 0.11, 0.03),
        "del(17p)": (df["del17p"].mean(), 0.09, 0.02),
        "t(4;14)": (df["t_4_14"].mean(), 0.12, 0.02),
        "t(14;16)": (df["t_14_16"].mean(), 0.03, 0.01),
        "1q gain": (df["gain1q"].mean(), 0.35, 0.03),
        "del(1p)": (df["del1p"].mean(), 0.10, 0.03),
    }
    for name, (got, want, tol) in checks.items():
        assert abs(float(got) - want) <= tol, (name, got, want)
    gain_t414 = df.filter(pl.col("t_4_14") == 1)["gain1q"].mean()
    assert gain_t414 > 0.6  # t(4;14) myeloma mostly carries 1q gain
    iss = riss.iss_stage(df["beta2m"].to_numpy(), df["albumin"].fill_null(np.nan).to_numpy())
    shares = [np.mean(iss[~np.isnan(iss)] == s) for s in (1, 2, 3)]
    np.testing.assert_allclose(shares, [0.29, 0.38, 0.34], atol=0.07)
    stage = mm.riss_score(df)
    shares = [np.mean(stage[~np.isnan(stage)] == s) for s in (1, 2, 3)]
    np.testing.assert_allclose(shares, [0.28, 0.62, 0.10], atol=0.07)


def test_mm_riss_on_hand_made_rows():
    table = pl.DataFrame(
        {
            "beta2m": [2.0, 6.0, 6.0, 4.0, 2.0],
            "albumin": [4.0, 3.0, 3.0, 3.0, 4.0],
            "ldh": [150.0, 300.0, 150.0, 150.0, None],
            "del17p": [0, 0, 0, 1, 0],
            "t_4_14": [0, 0, 0, 0, 0],
            "t_14_16": [0, 0, 0, 0, 0],
        }
    )
    got = mm.riss_score(table)
    # ISS I + standard risk + normal LDH = I; ISS III + high LDH = III; ISS III alone = II;
    # ISS II with del(17p) = II; ISS I with unknown LDH: undetermined.
    np.testing.assert_array_equal(got[:4], [1.0, 3.0, 2.0, 2.0])
    assert np.isnan(got[4])


def test_mm_pet_is_blocky_correlated_and_prognostic(mm_large, mm_guide):
    pet = mm_large.select([f.name for f in mm_guide.features if f.group == "pet"]).drop_nulls().to_numpy()
    corr = np.corrcoef(pet, rowvar=False)
    block = np.arange(mm.PET_FEATURES) // 8
    same = np.abs(corr[(block[:, None] == block[None, :]) & ~np.eye(mm.PET_FEATURES, dtype=bool)]).mean()
    other = np.abs(corr[block[:, None] != block[None, :]]).mean()
    assert same > other + 0.2, (same, other)
    df = mm_large.drop_nulls()
    # PET relates to the clinical layers (tumour burden -> beta-2 microglobulin) ...
    top = np.linalg.svd(pet - pet.mean(0), full_matrices=False)[2][:5]
    scores = (df.select([f.name for f in mm_guide.features if f.group == "pet"]).to_numpy()) @ top.T
    r = [abs(np.corrcoef(scores[:, j], np.log(df["beta2m"].to_numpy()))[0, 1]) for j in range(5)]
    assert max(r) > 0.3
    # ... and carries prognosis beyond them: the truth without its PET factors is clearly weaker.
    cov, factors = mm._draw(np.random.default_rng(0), mm_large.height)  # simulate_mm's first draws
    np.testing.assert_allclose(mm.oracle_log_hazard(cov, factors), mm_large["oracle_risk"].to_numpy())
    no_pet = factors.copy()
    no_pet[:, 1:3] = 0.0
    full, clinical = (
        _c(mm_large, mm_large["oracle_risk"].to_numpy()),
        _c(mm_large, mm.oracle_log_hazard(cov, no_pet)),
    )
    assert full > 0.78 and full - clinical > 0.05, (full, clinical)
    stage = mm.riss_score(mm_large)
    assert 0.58 <= _c(mm_large, stage) <= 0.68


def test_mds_wsi_guide_is_generated_from_mds(wsi_guide, mds_guide):
    assert mds_wsi.GUIDE_PATH.read_text(encoding="utf-8") == mds_wsi.guide_yaml(), (
        "harmonize/guides/mds_wsi.yaml drifted from mds.yaml: "
        "run python -m fedjax_rhd.simulate.mds_wsi --write-guide"
    )
    assert tuple(f for f in wsi_guide.features if f.group != "wsi") == mds_guide.features
    assert [f.name for f in wsi_guide.features if f.group == "wsi"] == list(mds_wsi.wsi_names())
    assert len(mds_wsi.wsi_names()) == 1536


def test_mds_wsi_keeps_the_mds_layers_and_adds_a_low_rank_embedding(wsi_guide, mds_guide):
    df = mds_wsi.simulate_mds_wsi(wsi_guide, n=3000, seed=2)
    mds = simulate_mds(mds_guide, n=3000, seed=2)
    assert df.select(mds_guide.feature_names).equals(mds.select(mds_guide.feature_names))
    emb = df.select(mds_wsi.wsi_names())
    nulls = emb.select(pl.all().is_null()).to_numpy()
    assert (nulls == nulls[:, :1]).all() and 0.02 < nulls[:, 0].mean() < 0.06  # whole slides missing
    x = emb.drop_nulls().to_numpy()
    # the 13 leading singular triplets (all the checks below use), not the full 1536-column SVD
    _, sv, vt = svds(x - x.mean(0), k=13, random_state=0)
    order = np.argsort(sv)[::-1]  # largest first
    sv, vt = sv[order], vt[order]
    eig = sv**2 / len(x)
    assert eig[11] > 10 * eig[12]  # rank 12 above the noise floor
    # The slide carries signal the clinical layers do not: the full truth beats the MDS truth.
    full = _c(df, df["oracle_risk"].to_numpy())
    clinical = _c(df, mds["oracle_risk"].to_numpy())
    assert 0.78 <= full <= 0.85 and full - clinical > 0.025, (full, clinical)
    # and the embedding is correlated with the clinical state (blasts, Hb, the MDS truth)
    ok = ~np.isnan(emb.to_numpy()[:, 0])
    z = (x - x.mean(0)) @ vt[:12].T
    r = [abs(np.corrcoef(z[:, j], mds["oracle_risk"].to_numpy()[ok])[0, 1]) for j in range(12)]
    assert max(r) > 0.2


def test_mds_wsi_through_fhir_is_fast_and_exact(tmp_path, wsi_guide):
    spec = DatasetSpec(name="wsi-test", guide="mds_wsi", source="simulated", options=(("n", 60), ("seed", 1)))
    start = time.perf_counter()
    df, card = load_or_build_dataset(spec, wsi_guide, tmp_path)
    elapsed = time.perf_counter() - start
    expected = mds_wsi.simulate_mds_wsi(wsi_guide, n=60, seed=1).sort("patient_id")
    assert df.equals(expected)
    assert card["id"] == dataset_id(expected, wsi_guide)
    lines = (tmp_path / "datasets" / "wsi-test" / "fhir" / "simulated" / "Observation.ndjson").read_text()
    vectors = [r for r in map(json.loads, lines.splitlines()) if "valueSampledData" in r]
    assert len(vectors) == expected["wsi_0001"].drop_nulls().len()  # one Observation per slide
    assert elapsed < 30.0
