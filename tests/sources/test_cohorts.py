"""Real cohorts: readers, stored-score reproduction, guides, natural split, clinical score on test rows.

Tests that read ``../shared/data`` skip when it is absent (a clean clone on CI).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from fedjax_rhd.cohorts import RealDataMissing, beataml, iwgpm, resolve_real_data_root
from fedjax_rhd.data.federated import SplitSpec, build_federated_data
from fedjax_rhd.metrics.clinical import clinical_score_result, scores_on_test
from fedjax_rhd.scores import ipss
from harmonize.guide import load_guide

ROOT = resolve_real_data_root()
needs_data = pytest.mark.skipif(
    not (ROOT / "mds_iwgpm").is_dir(), reason=f"real cohort data absent at {ROOT}"
)


@pytest.fixture(scope="module")
def iwgpm_raw():
    return iwgpm.read_raw(ROOT)


@needs_data
def test_ipssm_reproduces_stored_scores_and_categories(iwgpm_raw):
    raw, paths = iwgpm_raw
    stored = raw["IPSSM_SCORE"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    complete = raw.select(
        pl.all_horizontal(pl.col("HB", "PLT", "BM_BLAST", "CYTO_IPSSR").is_not_null())
    ).to_series()
    complete = complete.to_numpy()
    assert complete.sum() == 2701
    assert np.array_equal(complete, ~np.isnan(stored))  # the stored score exists exactly for complete rows
    ours = ipss.ipssm_score(iwgpm.ipssm_inputs(raw, paths["df_clinical"]), "mean")
    equal = np.isclose(ours[complete], stored[complete], rtol=0, atol=1e-9)
    assert equal.sum() >= 2698
    # The misses sit at the Hb clip boundary (Hb = 4.0), as the reference notes say.
    assert set(raw["HB"].to_numpy()[complete][~equal]) <= {4.0}
    names = np.array([c.replace(" ", "-") for c in ipss.IPSSM_CATEGORIES])[
        ipss.ipssm_category(stored[complete])
    ]
    assert (names == raw["IPSSM"].to_numpy()[complete]).all()


@needs_data
def test_ipssr_reproduces_every_stored_score(iwgpm_raw):
    raw, paths = iwgpm_raw
    ours = iwgpm.ipssr_from_raw(raw, paths["df_clinical"])
    stored = raw["IPSSR_SCORE"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    complete = ~np.isnan(ours)
    assert complete.sum() == 2649
    np.testing.assert_array_equal(ours[complete], stored[complete])
    labels = {
        "Very Low": "Very-Low",
        "Low": "Low",
        "Intermediate": "Int",
        "High": "High",
        "Very High": "Very-High",
    }
    cats = np.array([labels[c] for c in ipss.IPSSR_CATEGORIES])[ipss.ipssr_category(ours[complete])]
    assert (cats == raw["IPSSR"].to_numpy()[complete]).all()


@needs_data
def test_ipssra_matches_stored_within_the_age_rounding(iwgpm_raw):
    # The stored IPSS-RA uses the exact (fractional) age; the table has whole years, so
    # ours may differ by at most one year's worth of the age term, |0.05 - 0.005 R|.
    raw, paths = iwgpm_raw
    r = iwgpm.ipssr_from_raw(raw, paths["df_clinical"])
    age = raw["AGE"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    stored = raw["IPSSRA_SCORE"].cast(pl.Float64).fill_null(np.nan).to_numpy()
    ours = ipss.ipssra_score(r, age)
    ok = ~np.isnan(ours) & ~np.isnan(stored)
    assert ok.sum() >= 2600
    assert np.all(np.abs(ours[ok] - stored[ok]) <= np.abs(0.05 - 0.005 * r[ok]) + 1e-9)


@needs_data
def test_mds_iwgpm_table_and_guide_rule(iwgpm_raw):
    guide = load_guide("mds_iwgpm")
    cohort = iwgpm.load_mds(guide, ROOT)
    raw, _ = iwgpm_raw
    n_no_os = int(raw["OS_YEARS"].is_null().sum())
    assert cohort.table.height == 2957 - n_no_os == cohort.card["n_rows"]
    assert cohort.card["quality"]["dropped"] == {"no overall survival (OS_YEARS/OS_STATUS missing)": n_no_os}
    assert cohort.card["n_events"] == 1354
    # The guide's flags are exactly those present in >= 1% of the patients with OS.
    kept = raw.filter(raw["OS_YEARS"].is_not_null())
    flag_cols = [c for c in kept.columns if c.startswith(("mut:", "cna:"))]
    frequent = {c.split(":", 1)[1] for c in flag_cols if kept[c].sum() >= 0.01 * kept.height}
    binary = {f.name for f in guide.features if f.group in ("genomic", "cytogenetic") and f.kind == "binary"}
    assert binary == frequent
    assert cohort.scores["patient_id"].to_list() == cohort.table["patient_id"].to_list()
    assert cohort.score_name == "IPSS-M" and cohort.scores["clinical_score"].null_count() == 0


@needs_data
def test_cmml_and_aml_cohorts():
    cmml = iwgpm.load_cmml(load_guide("cmml_iwgpm"), ROOT)
    dropped = sum(cmml.card["quality"]["dropped"].values())
    assert cmml.card["quality"]["n_source_records"] == 272 and cmml.table.height == 272 - dropped
    assert cmml.score_name == "CPSS-mol"
    pts = cmml.scores["clinical_score"].drop_nulls()
    assert pts.min() >= 0 and pts.max() <= 5  # transfusion dependence scored 0: at most 5 of 6 points

    aml = beataml.load_aml(load_guide("aml_beat"), ROOT)
    q = aml.card["quality"]
    assert q["n_patients"] == 805 and aml.table["patient_id"].n_unique() == aml.table.height
    assert aml.table.height == 805 - sum(q["dropped"].values())
    assert aml.table["centre"].n_unique() == 8
    assert q["eln2022_derived"] + q["eln2017_fallback"] + q["no_eln"] == aml.table.height
    scores = aml.scores["clinical_score"].drop_nulls()
    assert set(scores.unique().to_list()) <= {0.0, 0.5, 1.0, 1.5, 2.0}


@needs_data
def test_guide_gene_rules_for_cmml_and_aml(iwgpm_raw):
    # cmml_iwgpm: genes mutated in >= 5% of the CMML patients with OS.
    raw, _ = iwgpm_raw
    cmml = raw.filter((raw["WHO_2016"] == "CMML") & raw["OS_YEARS"].is_not_null())
    frequent = {c[4:] for c in cmml.columns if c.startswith("mut:") and cmml[c].sum() >= 0.05 * cmml.height}
    guide = load_guide("cmml_iwgpm")
    assert {f.name for f in guide.features if f.group == "genomic"} == frequent
    # aml_beat: genes with a WES call in >= 3% of sequenced specimens (NPM1 from the clinical call).
    wes = pl.read_csv(
        ROOT / "aml_beat2" / "beataml_wes_wv1to4_mutations_dbgap.txt",
        separator="\t",
        infer_schema_length=None,
    )
    n_samples = wes["dbgap_sample_id"].n_unique()
    per_gene = wes.unique(["dbgap_sample_id", "symbol"]).group_by("symbol").len()
    frequent = set(per_gene.filter(pl.col("len") >= 0.03 * n_samples)["symbol"].to_list()) - {"NPM1"}
    guide = load_guide("aml_beat")
    assert {f.name for f in guide.features if f.group == "genomic"} - {"FLT3_ITD", "NPM1"} == frequent


def test_missing_data_fails_naming_the_path(tmp_path, monkeypatch):
    from fedjax_rhd.sources import UseCase, load_use_case

    monkeypatch.setenv("FEDJAX_RHD_SHARED_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(RealDataMissing, match="nowhere"):  # the run path, data folder from the env var
        load_use_case(
            UseCase(name="mds_iwgpm", guide="mds_iwgpm", source="iwgpm"),
            seed_data=0,
            data_root=tmp_path / "data",
            real_data_root=None,
        )
    with pytest.raises(RealDataMissing, match="elsewhere"):  # a reader given a folder without the cohort
        beataml.load_aml(load_guide("aml_beat"), tmp_path / "elsewhere")


def test_karyotype_flags_hand_cases():
    from fedjax_rhd.cohorts.beataml import karyotype_flags

    f = karyotype_flags("46,XY,t(8;21)(q22;q22)[20]", None)
    assert f["t_8_21"] == 1 and f["complex_or_monosomal"] == 0 and f["normal_karyotype"] == 0
    f = karyotype_flags("46,XX[20]", None)
    assert f["normal_karyotype"] == 1 and not any(f[k] for k in f if k != "normal_karyotype")
    f = karyotype_flags("45,XX,-7[20]", None)
    assert f["minus7"] == 1 and f["complex_or_monosomal"] == 0
    # Two autosomal monosomies: monosomal karyotype.
    assert karyotype_flags("44,XY,-5,-7[20]", None)["complex_or_monosomal"] == 1
    f = karyotype_flags("46,XX,add(5)(q31),del(17)(p11.2)[12]/46,XX[3]", None)
    assert f["abn17p"] == 1 and f["minus5_del5q"] == 0
    assert karyotype_flags("46,XY,del(5)(q13q33),+8,-17[20]", None)["complex_or_monosomal"] == 1
    # Missing karyotype: unknown, unless a fusion call fixes a flag.
    f = karyotype_flags(None, "CBFB-MYH11")
    assert f["inv16"] == 1 and np.isnan(f["t_8_21"])
    # ELN 2022 (Döhner H, et al. Blood 2022;140:1345-77, Table 6): t(9;11)(p21.3;q23.3)/MLLT3::KMT2A is
    # intermediate, every other KMT2A rearrangement adverse, so t(9;11) must not raise the KMT2A flag
    f = karyotype_flags("46,XX,t(9;11)(p22;q23)[20]", "MLLT3-KMT2A")
    assert (f["t_9_11"], f["kmt2a_r"]) == (1, 0)
    for other in (
        "46,XY,t(11;19)(q23;p13.1)[20]",
        "46,XY,t(6;11)(q27;q23)[20]",
        "46,XX,t(10;11)(p12;q23)[20]",
    ):
        f = karyotype_flags(other, None)
        assert (f["t_9_11"], f["kmt2a_r"]) == (0, 1), other
    assert karyotype_flags("46,XY[20]", "KMT2A_re")["kmt2a_r"] == 1


def _centred_table(n=400, seed=0):
    guide = load_guide("mds")
    rng = np.random.default_rng(seed)
    sizes = {"A": 200, "B": 120, "C": 60, "D": 20}
    centre = np.repeat(list(sizes), list(sizes.values()))
    table = pl.DataFrame(
        {
            "patient_id": [f"p{i:04d}" for i in range(n)],
            "centre": centre,
            **{
                f.name: (
                    rng.choice(list(f.levels), n)
                    if f.kind == "categorical"
                    else rng.integers(0, 2, n).astype(float)
                    if f.kind == "binary"
                    else rng.uniform(*f.valid_range, n)
                )
                for f in guide.features
            },
            "time": rng.exponential(2.0, n),
            "event": rng.integers(0, 2, n).astype(float),
        }
    )
    return table, guide, sizes


def test_natural_split_one_node_per_centre_largest_first():
    table, guide, sizes = _centred_table()
    spec = SplitSpec(name="natural", fractions=(), natural=True, seed=3)
    fed = build_federated_data(table, guide, spec)
    assert fed.node_names == ("centreA", "centreB", "centreC", "centreD")
    test_ids = set(fed.test_patient_ids)
    centre_of = dict(zip(table["patient_id"], table["centre"], strict=True))
    n_test_per_centre = {c: sum(centre_of[p] == c for p in test_ids) for c in sizes}
    for name, n_tr, n_va in zip(fed.node_names, fed.n_train, fed.n_val, strict=True):
        assert n_tr + n_va == sizes[name[-1]] - n_test_per_centre[name[-1]]
    with pytest.raises(ValueError, match="no fractions"):
        SplitSpec(name="natural", fractions=(0.5, 0.5), natural=True)


def test_scores_on_test_keeps_test_order_and_result_shape():
    scores = pl.DataFrame({"patient_id": ["a", "b", "c"], "clinical_score": [1.0, None, 3.0]})
    out = scores_on_test(scores, ["c", "a", "b"])
    assert out["patient_id"].to_list() == ["c", "a", "b"]
    assert out["clinical_score"].to_list() == [3.0, 1.0, None]
    with pytest.raises(ValueError, match="no score row"):
        scores_on_test(scores, ["z"])
    time = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    event = np.array([1.0, 1.0, 0.0, 1.0, 1.0])
    score = np.array([1.0, 2.0, np.nan, 4.0, 5.0])  # perfectly concordant on the scored rows
    res = clinical_score_result("X", score, time, event, -score, n_boot=20, seed=0)
    assert res["n_scored"] == 4 and res["c_index_test"]["estimate"] == 1.0
    assert res["model_c_index_test_scored_rows"]["estimate"] == 0.0


def test_file_digests_detect_a_changed_file(tmp_path):
    from fedjax_rhd.cohorts.common import file_digests

    folder = tmp_path / "cohort"
    folder.mkdir()
    (folder / "a.tsv").write_text("x\n")
    good = "8b0b8b7a11a0d1d4a2d4e7b1d4ea6cd1bd2c0f0c3a1b3d14d2b7cd1e5b51f1c3"  # not the digest of "x\n"
    (tmp_path / "SHA256SUMS").write_text(f"{good}  cohort/a.tsv\n")
    with pytest.raises(ValueError, match="a.tsv: sha256"):
        file_digests({"a": folder / "a.tsv"})
    import hashlib

    real = hashlib.sha256(b"x\n").hexdigest()
    (tmp_path / "SHA256SUMS").write_text(f"{real}  cohort/a.tsv\n")
    assert file_digests({"a": folder / "a.tsv"})["a"]["sha256"] == real


def test_real_cohort_caches_record_their_adapters_code(tmp_path):
    """A dataset built by an older adapter is refused as stale (harmonize.datasets), like a simulator's."""
    import importlib.util

    from fedjax_rhd.sources.code_fingerprint import code_fingerprint
    from harmonize.registry import SOURCES

    for name in ("beataml", "iwgpm"):
        assert SOURCES[name].fingerprint is not None, name
    path = tmp_path / "adapter.py"
    path.write_text("X = 1\n")
    spec = importlib.util.spec_from_file_location("adapter_under_test", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before = code_fingerprint(module)(None, {})
    assert before == code_fingerprint(module)(None, {}) and len(before) == 12
    path.write_text("X = 2  # a parsing fix\n")
    assert code_fingerprint(module)(None, {}) != before
