"""The MDS and CMML simulators (schema, realism, calibration, ground truth) and content-addressed datasets."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import threading

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from fedjax_rhd.guide_cache import cached_guide
from fedjax_rhd.scores import ipss
from fedjax_rhd.simulate import GENERATOR_VERSION, cmml, copula, mds, simulate_mds
from fedjax_rhd.sources.scores import clinical_scores
from fedjax_rhd.sources.simulated import SIMULATORS, generator_fingerprint, simulator_for
from harmonize.datasets import load_or_build_dataset
from harmonize.guide import Feature, load_guide
from harmonize.identity import DatasetCacheError, dataset_id
from harmonize.inputs import file_digest
from harmonize.registry import DatasetSpec, dataset_folder


@pytest.fixture(scope="module")
def cmml_guide():
    return load_guide("cmml")


def _guide(use_case: str):
    return cached_guide(use_case)  # parsed once per process (each hypothesis example asks again)


def _simulate(use_case: str, n: int, seed: int) -> pl.DataFrame:
    return simulator_for(use_case)(_guide(use_case), n=n, seed=seed)


@pytest.fixture(scope="module")
def large(request):
    return {uc: _simulate(uc, 20000, 3) for uc in ("mds", "cmml")}


def _genes(guide):
    return [f.name for f in guide.features if f.group == "genomic"]


def _rate(df: pl.DataFrame, expr: pl.Expr) -> float:
    return float(df.select(expr.cast(pl.Float64).mean()).item())


def _check_table(df: pl.DataFrame, guide, n: int) -> None:
    """Every generated table against the guide's kinds and ranges."""
    assert df.height == n
    assert df.columns == ["patient_id", "centre", *guide.feature_names, "time", "event", "oracle_risk"]
    assert df["patient_id"].is_sorted() and df["patient_id"].n_unique() == n
    want = {"continuous": pl.Float64, "binary": pl.Int8, "categorical": pl.String}
    for f in guide.features:
        col = df[f.name]
        assert col.dtype == want[f.kind], f.name
        values = col.drop_nulls()
        if values.len() == 0:
            continue
        if f.kind == "continuous":
            low, high = f.valid_range
            assert values.min() >= low and values.max() <= high, f.name
        elif f.kind == "binary":
            assert set(values.unique().to_list()) <= {0, 1}, f.name
        else:
            assert set(values.unique().to_list()) <= set(f.levels), f.name
    days = df["time"].to_numpy() * 365.25
    np.testing.assert_allclose(days, np.round(days), atol=1e-6)
    assert days.min() >= 1 - 1e-9 and df["time"].null_count() == 0
    assert set(df["event"].unique().to_list()) <= {0, 1}
    assert np.isfinite(df["oracle_risk"].to_numpy()).all()


# ---------------------------------------------------------------- simulators


@pytest.mark.parametrize("use_case", ["mds", "cmml"])
def test_same_seed_same_frame_other_seed_other_frame(use_case):
    a, b, c = (_simulate(use_case, 600, s) for s in (7, 7, 8))
    assert a.equals(b)
    assert not a.equals(c)
    assert a["patient_id"].equals(c["patient_id"])


def test_generator_versions():
    assert GENERATOR_VERSION == "mds-sim-3" and cmml.GENERATOR_VERSION == "cmml-sim-2"


@settings(max_examples=12, deadline=None)
@given(use_case=st.sampled_from(["mds", "cmml"]), n=st.integers(1, 400), seed=st.integers(0, 2**32 - 1))
def test_every_table_follows_the_guide(use_case, n, seed):
    _check_table(_simulate(use_case, n, seed), _guide(use_case), n)


def test_default_sizes_and_ids(mds_guide, cmml_guide):
    df = simulate_mds(mds_guide)
    _check_table(df, mds_guide, 4427)
    assert df["patient_id"][0] == "MDS-SIM-000001"
    dc = cmml.simulate_cmml(cmml_guide)
    _check_table(dc, cmml_guide, 1737)
    assert dc["patient_id"][0] == "CMML-SIM-000001"
    assert len(_genes(mds_guide)) == 55 and len(_genes(cmml_guide)) == 54  # 54 genes (+ TP53 multi-hit)


@pytest.mark.parametrize("use_case", ["mds", "cmml"])
def test_missingness_at_real_rates_and_oracle_complete(use_case, large):
    df, guide = large[use_case], _guide(use_case)
    assert 0.005 < df["hb"].null_count() / df.height < 0.02  # IWG-PM: 0.7-0.8%
    assert 0.015 < df["anc"].null_count() / df.height < 0.04  # IWG-PM: 2.3-2.8%
    cyto = [f.name for f in guide.features if f.group == "cytogenetic"]
    nulls = df.select(pl.sum_horizontal(pl.col(c).is_null() for c in cyto)).to_series()
    assert set(nulls.unique().to_list()) == {0, len(cyto)}  # a failed karyotype blanks the whole group
    assert 0.025 < _rate(df, pl.col(cyto[0]).is_null()) < 0.06  # IWG-PM: 3.9% / 4.6%
    genes = _genes(guide)
    n_null = df.select(pl.sum_horizontal(pl.col(g).is_null() for g in genes)).to_series()
    assert set(n_null.unique().to_list()) == {0, len(genes)}  # a panel is missing whole or not at all
    assert 0.02 < _rate(df, pl.col(genes[0]).is_null()) < 0.04


# IWG-PM (2,494 MDS patients with survival), measured by experiments/simulation/fit.py.
MDS_GENE_FREQ = {"TET2": 28.1, "SF3B1": 25.7, "ASXL1": 24.3, "DNMT3A": 17.2, "SRSF2": 14.0, "TP53": 12.2}


def test_mds_marginals_and_pairs(large):
    df = large["mds"]
    for gene, pct in MDS_GENE_FREQ.items():
        assert abs(_rate(df, pl.col(gene)) * 100 - pct) < 1.5, gene
    q = lambda col, p: float(df[col].drop_nulls().quantile(p))
    assert 9.2 <= q("hb", 0.5) <= 10.2 and 110 <= q("plt", 0.5) <= 160 and 70 <= q("age", 0.5) <= 74
    assert q("plt", 0.95) > 2.5 * q("plt", 0.5)  # long right tail
    p = lambda gene, cond=None: _rate(df if cond is None else df.filter(cond), pl.col(gene))
    for a, b in [("SF3B1", "SRSF2"), ("SF3B1", "U2AF1"), ("SRSF2", "U2AF1"), ("SRSF2", "ZRSR2")]:
        assert p(b, pl.col(a) == 1) < 0.6 * p(b), (a, b)  # IWG-PM ratios 0.10-0.41
    for b in ("RUNX1", "EZH2", "STAG2", "SRSF2"):
        assert p(b, pl.col("ASXL1") == 1) > 1.8 * p(b, pl.col("ASXL1") == 0), b
    assert p("TP53", pl.col("complex_karyotype") == 1) > 5 * p("TP53", pl.col("complex_karyotype") == 0)
    assert p("TP53", pl.col("ipssr_cyto") == "very_poor") > 0.5
    assert p("complex_karyotype", pl.col("ipssr_cyto") == "very_poor") > 0.8
    assert df.filter(pl.col("TP53multi") == 1)["TP53"].min() == 1  # multi-hit implies TP53


def test_cmml_marginals(large):
    df = large["cmml"]
    assert 55 <= _rate(df, pl.col("TET2")) * 100 <= 65 and 29 <= _rate(df, pl.col("SRSF2")) * 100 <= 39
    assert 0.6 <= _rate(df, pl.col("sex_male")) <= 0.8
    assert 0.12 <= _rate(df, pl.col("transfusion_dependent")) <= 0.30
    mono = df["monocytes"].drop_nulls()
    assert mono.quantile(0.1) >= 0.9  # CMML: persistent monocytosis (>= 1e9/L)


@pytest.mark.parametrize(
    ("use_case", "score", "low", "high"), [("mds", "IPSS-M", 0.70, 0.76), ("cmml", "CPSS-mol", 0.60, 0.70)]
)
def test_ground_truth_in_realistic_ranges(use_case, score, low, high, large):
    df, guide = large[use_case], _guide(use_case)
    t, e = df["time"].to_numpy(), df["event"].to_numpy()
    assert 0.78 <= concordance_index(t, -df["oracle_risk"].to_numpy(), e) <= 0.85
    name, scores = clinical_scores(df, guide)
    assert name == score
    s = scores["clinical_score"].to_numpy()
    ok = ~np.isnan(s)
    assert ok.mean() > 0.85
    assert low <= concordance_index(t[ok], -s[ok], e[ok]) <= high
    assert 0.42 <= _rate(df, pl.col("event")) <= 0.56  # IWG-PM: 48% / 47% deaths


def test_ipssr_on_simulated_mds(large):
    df, guide = large["mds"], _guide("mds")
    levels = guide.feature("ipssr_cyto").levels
    cyto = np.array([np.nan if v is None else levels.index(v) for v in df["ipssr_cyto"].to_list()])
    num = lambda c: df[c].cast(pl.Float64).fill_null(np.nan).to_numpy()
    r = ipss.ipssr_score(num("hb"), num("plt"), num("anc"), num("bm_blasts"), cyto)
    ok = ~np.isnan(r)
    c = concordance_index(df["time"].to_numpy()[ok], -r[ok], df["event"].to_numpy()[ok])
    assert 0.66 <= c <= 0.72


def test_oracle_is_the_documented_hazard(large):
    df = large["mds"]
    km = KaplanMeierFitter().fit(df["time"].to_numpy(), df["event"].to_numpy())
    assert abs(km.predict(3.0) - 0.54) < 0.04  # IWG-PM: 0.54 at 3 years
    cov = {"hb": np.array([12.0]), "plt": np.array([200.0]), "bm_blasts": np.array([1.0])}
    base = {**cov, "anc": np.array([3.0]), "age": np.array([72.0]), "sex_male": np.array([0])}
    base["ipssr_cyto"] = np.array([1])
    for name in (*mds.LESIONS, "TP53multi"):
        base[name] = np.array([0])
    for gene in copula.load_params("mds").genes:
        base[gene] = np.array([0])
    worse = {**base, "TP53": np.array([1]), "TP53multi": np.array([1]), "complex_karyotype": np.array([1])}
    assert mds.oracle_log_hazard(worse)[0] > mds.oracle_log_hazard(base)[0] + 1.0
    older = {**base, "age": np.array([85.0])}
    assert mds.oracle_log_hazard(older)[0] > mds.oracle_log_hazard(base)[0]  # age: missed by IPSS-M
    assert mds.ipssm_linear(older)[0] == mds.ipssm_linear(base)[0]


def test_guide_missing_or_unknown_feature_fails_clearly(mds_guide):
    without = dataclasses.replace(
        mds_guide, features=tuple(f for f in mds_guide.features if f.name != "TP53")
    )
    with pytest.raises(ValueError, match="lacks feature.*TP53"):
        simulate_mds(without, n=50)
    extra = dataclasses.replace(
        mds_guide, features=(*mds_guide.features, Feature("NOTCH1", "binary", "genomic"))
    )
    with pytest.raises(ValueError, match="NOTCH1.*no generative model"):
        simulate_mds(extra, n=50)
    retyped = dataclasses.replace(
        mds_guide,
        features=tuple(
            dataclasses.replace(f, kind="continuous") if f.name == "SF3B1" else f for f in mds_guide.features
        ),
    )
    with pytest.raises(ValueError, match="SF3B1"):
        simulate_mds(retyped, n=50)
    with pytest.raises(ValueError, match="n must be"):
        simulate_mds(mds_guide, n=0)


# ---------------------------------------------------------------- datasets


def test_dataset_id_depends_on_content_only(mds_guide):
    df = simulate_mds(mds_guide, n=400, seed=2)
    ident = dataset_id(df, mds_guide)
    assert ident.startswith("ds-") and len(ident) == 19
    shuffled = df.sample(fraction=1.0, shuffle=True, seed=1)
    assert not shuffled["patient_id"].equals(df["patient_id"])
    assert dataset_id(shuffled, mds_guide) == ident
    assert dataset_id(df.select(df.columns[::-1]), mds_guide) == ident
    assert dataset_id(df.with_columns(pl.col("SF3B1").cast(pl.Float64)), mds_guide) == ident

    row = pl.int_range(pl.len()) == 17
    bumped = df.with_columns(pl.when(row).then(pl.col("time") + 1 / 365.25).otherwise(pl.col("time")))
    assert dataset_id(bumped, mds_guide) != ident
    relabelled = df.with_columns(
        pl.when(row).then(pl.lit("poor")).otherwise(pl.col("ipssr_cyto")).alias("ipssr_cyto")
    )
    if df["ipssr_cyto"][17] != "poor":
        assert dataset_id(relabelled, mds_guide) != ident
    nulled = df.with_columns(pl.when(row).then(None).otherwise(pl.col("age")).alias("age"))
    assert dataset_id(nulled, mds_guide) != ident
    assert dataset_id(df.drop("oracle_risk"), mds_guide) != ident
    assert dataset_id(df, dataclasses.replace(mds_guide, version="9.9.9")) != ident

    zeros = df.with_columns(pl.lit(0.0).alias("oracle_risk"))
    negative_zeros = df.with_columns(pl.lit(-0.0).alias("oracle_risk"))
    assert dataset_id(zeros, mds_guide) == dataset_id(negative_zeros, mds_guide)

    with pytest.raises(ValueError, match="outside the schema"):
        dataset_id(df.with_columns(pl.lit(1).alias("extra")), mds_guide)
    with pytest.raises(ValueError, match="lacks column"):
        dataset_id(df.drop("hb"), mds_guide)
    with pytest.raises(ValueError, match="not unique"):
        dataset_id(pl.concat([df, df.head(1)]), mds_guide)


def _sim_spec(n: int, seed: int) -> DatasetSpec:
    return DatasetSpec(f"mds-sim-n{n}-seed{seed}", "mds", "simulated", (("n", n), ("seed", seed)))


def test_cache_round_trip_and_tamper_detection(mds_guide, tmp_path):
    df, card = load_or_build_dataset(_sim_spec(300, 4), mds_guide, tmp_path)
    folder = dataset_folder(tmp_path, "mds-sim-n300-seed4")
    assert sorted(p.name for p in folder.parent.iterdir()) == ["mds-sim-n300-seed4"]  # no temp folders
    assert json.loads((folder / "dataset.json").read_text()) == card
    assert card["id"] == dataset_id(df, mds_guide)
    assert df.drop("centre").equals(simulate_mds(mds_guide, n=300, seed=4).drop("centre").sort("patient_id"))
    assert card["use_case"] == "mds" and card["guide_version"] == mds_guide.version
    assert card["source"] == {
        "name": "simulated",
        "options": {"n": 300, "seed": 4},
        "generator": generator_fingerprint("mds"),
        "inputs": {"guide mds": file_digest(mds_guide.path)},
    }
    assert GENERATOR_VERSION in card["provenance"]["source"] and "seed=4" in card["provenance"]["source"]
    assert [(c["name"], c["n_rows"], c["n_events"]) for c in card["centres"]] == [
        ("simulated", 300, card["n_events"])
    ]
    assert card["n_rows"] == 300 and card["n_events"] == int(df["event"].sum())
    assert [f["name"] for f in card["features"]] == list(mds_guide.feature_names)
    assert card["provenance"]["source"].startswith("simulated")
    assert df["patient_id"].is_sorted()

    again, card2 = load_or_build_dataset(_sim_spec(300, 4), mds_guide, str(tmp_path))
    assert card2 == card and again.equals(df)
    assert dataset_id(again, mds_guide) == card["id"]

    table = folder / "tables" / "simulated.parquet"
    stored = pl.read_parquet(table)
    tampered = stored.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(99.0).otherwise(pl.col("age")).alias("age")
    )
    tampered.write_parquet(table)
    with pytest.raises(DatasetCacheError, match="corrupted"):
        load_or_build_dataset(_sim_spec(300, 4), mds_guide, tmp_path)
    table.write_bytes(b"not a parquet file")
    with pytest.raises(DatasetCacheError, match="corrupted"):
        load_or_build_dataset(_sim_spec(300, 4), mds_guide, tmp_path)
    with pytest.raises(DatasetCacheError, match="stale"):
        load_or_build_dataset(_sim_spec(300, 4), dataclasses.replace(mds_guide, version="0.0.0"), tmp_path)


def test_parallel_builds_agree(mds_guide, tmp_path):
    """Two builds started at once (parallel jobs sharing a data root) give one folder and the same id.

    Threads released by one barrier: the cache's guard is a build in a temporary folder renamed into
    place (no lock), so two threads race through the same path as two processes would, without the
    seconds two fresh interpreters take to import JAX.
    """
    start = threading.Barrier(2)

    def build(_: int) -> str:
        start.wait()
        return load_or_build_dataset(_sim_spec(300, 5), mds_guide, tmp_path)[1]["id"]

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        ids = list(pool.map(build, range(2)))
    assert ids[0] == ids[1]
    df, card = load_or_build_dataset(_sim_spec(300, 5), mds_guide, tmp_path)
    assert card["id"] == ids[0] == dataset_id(df, mds_guide)
    assert sorted(p.name for p in (tmp_path / "datasets").iterdir()) == ["mds-sim-n300-seed5"]


def test_simulator_dispatch(mds_guide, tmp_path):
    assert SIMULATORS["mds"] is simulate_mds and simulator_for("mds") is simulate_mds
    assert simulator_for("cmml") is cmml.simulate_cmml
    with pytest.raises(KeyError, match="no simulator for use case 'cll'"):
        simulator_for("cll")
    with pytest.raises(KeyError, match="no simulator"):
        load_or_build_dataset(_sim_spec(10, 0), dataclasses.replace(mds_guide, use_case="cll"), tmp_path)


# ---------------------------------------------------------------- exact discrete marginals


def test_exact_flags_and_levels_by_rank():
    z = np.array([0.3, -1.2, 2.0, 0.9, -0.1, 1.5, -2.2, 0.0])
    flags, cut = copula.exact_flags(z, 0.4)  # round(3.2) = 3 carriers: the three largest latents
    assert flags.tolist() == [0, 0, 1, 1, 0, 1, 0, 0] and cut == 0.9
    none, cut0 = copula.exact_flags(z, 0.01)
    assert none.sum() == 0 and cut0 == np.inf
    # levels 0/1/2 with p = (0.25, 0.5, 0.25): ranks 0-1 -> 0, 2-5 -> 1, 6-7 -> 2
    levels = copula.exact_levels(z, np.array([0.25, 0.5, 0.25]))
    assert levels.tolist() == [1, 0, 2, 1, 1, 2, 0, 1]


@pytest.mark.parametrize("seed", range(5))
def test_cmml_gene_frequencies_at_study_size(cmml_guide, seed):
    """Top-20 CMML genes within 2 points of the fitted (IWG-PM) frequencies at n = 1,737, every seed."""
    params = copula.load_params("cmml")
    p = {g: params.marginals[g]["p"] for g in params.genes}
    df = cmml.simulate_cmml(cmml_guide, n=1737, seed=seed)
    for g in sorted(p, key=p.get, reverse=True)[:20]:
        assert abs(_rate(df, pl.col(g)) - p[g]) * 100 <= 2.0, g
