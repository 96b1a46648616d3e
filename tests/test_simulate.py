"""The MDS simulator (schema, realism, calibration) and content-addressed datasets."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing

import numpy as np
import polars as pl
import pytest
from lifelines import KaplanMeierFitter
from lifelines.utils import concordance_index

from fedjax_rhd.datasets import (
    SIMULATORS,
    DatasetCacheError,
    dataset_id,
    load_or_build_simulated,
    simulator_for,
)
from fedjax_rhd.simulate import GENERATOR_VERSION, simulate_mds
from harmonize.guide import Feature

LABS = ("hb", "plt", "anc", "bm_blasts")


@pytest.fixture(scope="module")
def default_cohort(mds_guide):
    return simulate_mds(mds_guide)


@pytest.fixture(scope="module")
def large_cohort(mds_guide):
    return simulate_mds(mds_guide, n=20000, seed=0)


def _genes(guide):
    return [f.name for f in guide.features if f.group == "genomic"]


def _rate(df: pl.DataFrame, expr: pl.Expr) -> float:
    return float(df.select(expr.cast(pl.Float64).mean()).item())


# ---------------------------------------------------------------- simulator


def test_same_seed_same_frame_other_seed_other_frame(mds_guide):
    a = simulate_mds(mds_guide, n=600, seed=7)
    b = simulate_mds(mds_guide, n=600, seed=7)
    c = simulate_mds(mds_guide, n=600, seed=8)
    assert a.equals(b)
    assert not a.equals(c)
    assert a["patient_id"].equals(c["patient_id"])
    assert GENERATOR_VERSION == "mds-sim-1"


def test_schema_follows_the_guide(mds_guide, default_cohort):
    df = default_cohort
    assert df.height == 4427
    assert df.columns == ["patient_id", "centre", *mds_guide.feature_names, "time", "event", "oracle_risk"]
    assert df["patient_id"][0] == "MDS-SIM-000001"
    assert df["patient_id"].is_sorted() and df["patient_id"].n_unique() == df.height
    assert df["centre"].unique().to_list() == ["simulated"]
    want = {"continuous": pl.Float64, "binary": pl.Int8, "categorical": pl.String}
    for f in mds_guide.features:
        col = df[f.name]
        assert col.dtype == want[f.kind], f.name
        values = col.drop_nulls()
        if f.kind == "continuous":
            low, high = f.valid_range
            assert values.min() >= low and values.max() <= high, f.name
        elif f.kind == "binary":
            assert set(values.unique().to_list()) <= {0, 1}, f.name
        else:
            assert set(values.unique().to_list()) == set(f.levels), f.name
    assert df["time"].dtype == pl.Float64 and df["event"].dtype == pl.Int8
    assert df["oracle_risk"].dtype == pl.Float64
    days = df["time"].to_numpy() * 365.25
    np.testing.assert_allclose(days, np.round(days), atol=1e-6)
    assert days.min() >= 1 - 1e-9
    assert set(df["event"].unique().to_list()) == {0, 1}
    assert df["time"].n_unique() < df.height  # whole days: realistic ties


def test_missingness_present_and_oracle_complete(mds_guide, default_cohort):
    df = default_cohort
    for lab in LABS:
        assert 0.005 < df[lab].null_count() / df.height < 0.10, lab
    assert 0.01 < df["ipssr_cyto"].null_count() / df.height < 0.06
    genes = _genes(mds_guide)
    n_null = df.select(pl.sum_horizontal(pl.col(g).is_null() for g in genes)).to_series()
    assert set(n_null.unique().to_list()) == {0, len(genes)}  # a panel is missing whole or not at all
    assert 0.03 < _rate(df, pl.col(genes[0]).is_null()) < 0.07
    for col in ("patient_id", "centre", "time", "event", "oracle_risk"):
        assert df[col].null_count() == 0, col
    assert np.isfinite(df["oracle_risk"].to_numpy()).all()
    incomplete = df.filter(pl.any_horizontal(pl.col(f).is_null() for f in mds_guide.feature_names))
    assert incomplete.height > 0 and incomplete["oracle_risk"].null_count() == 0


def test_outcome_calibration_on_a_large_draw(large_cohort, default_cohort):
    for df in (large_cohort, default_cohort):
        assert 0.35 <= _rate(df, pl.col("event")) <= 0.70
    t, e = large_cohort["time"].to_numpy(), large_cohort["event"].to_numpy()
    c = concordance_index(t, -large_cohort["oracle_risk"].to_numpy(), e)
    assert 0.78 <= c <= 0.86
    median_os = KaplanMeierFitter().fit(t, e).median_survival_time_
    assert 3.0 <= median_os <= 5.5


def test_labs_and_demographics_look_like_mds(large_cohort):
    df = large_cohort
    q = lambda col, p: float(df[col].drop_nulls().quantile(p))
    assert 9.2 <= q("hb", 0.5) <= 10.2
    assert 110 <= q("plt", 0.5) <= 160 and q("plt", 0.95) > 2.5 * q("plt", 0.5)  # long right tail
    assert 1.4 <= q("anc", 0.5) <= 2.2
    assert q("bm_blasts", 0.5) < 5 and q("bm_blasts", 0.75) < 10 and q("bm_blasts", 0.99) >= 15
    assert 70 <= q("age", 0.5) <= 74
    assert 0.55 <= _rate(df, pl.col("sex_male")) <= 0.65
    # labs are correlated through disease severity: more blasts, fewer platelets
    both = df.drop_nulls(["plt", "bm_blasts"])
    rho = np.corrcoef(np.log(both["plt"].to_numpy()), np.log1p(both["bm_blasts"].to_numpy()))[0, 1]
    assert -0.5 < rho < -0.15


def test_cytogenetic_and_gene_frequencies(mds_guide, large_cohort):
    cyto = large_cohort["ipssr_cyto"].drop_nulls()
    freq = {level: float((cyto == level).mean()) for level in mds_guide.feature("ipssr_cyto").levels}
    bands = {
        "very_good": (0.02, 0.07),
        "good": (0.62, 0.78),
        "intermediate": (0.10, 0.20),
        "poor": (0.03, 0.09),
        "very_poor": (0.03, 0.08),
    }
    for level, (low, high) in bands.items():
        assert low <= freq[level] <= high, (level, freq[level])
    panel = large_cohort.drop_nulls(_genes(mds_guide))
    gene_bands = {"SF3B1": (0.18, 0.28), "TET2": (0.20, 0.35), "ASXL1": (0.17, 0.30), "TP53": (0.07, 0.12)}
    for gene, (low, high) in gene_bands.items():
        assert low <= _rate(panel, pl.col(gene)) <= high, gene


def test_co_occurrence_and_exclusivity(mds_guide, large_cohort):
    panel = large_cohort.drop_nulls(_genes(mds_guide))
    p = lambda gene, cond=None: _rate(panel if cond is None else panel.filter(cond), pl.col(gene))
    for a, b in [("SF3B1", "SRSF2"), ("SF3B1", "U2AF1"), ("SRSF2", "U2AF1"), ("SRSF2", "ZRSR2")]:
        assert p(b, pl.col(a) == 1) < 0.3 * p(b), (a, b)  # splicing factors exclude each other
    for b in ("RUNX1", "EZH2", "STAG2", "SRSF2"):
        assert p(b, pl.col("ASXL1") == 1) > 2 * p(b, pl.col("ASXL1") == 0), b
    very_poor = pl.col("ipssr_cyto") == "very_poor"
    assert p("TP53", very_poor) > 0.6
    assert p("TP53", very_poor) > 8 * p("TP53", pl.col("ipssr_cyto") == "good")


def test_guide_missing_or_unknown_feature_fails_clearly(mds_guide):
    without = dataclasses.replace(
        mds_guide, features=tuple(f for f in mds_guide.features if f.name != "TP53")
    )
    with pytest.raises(ValueError, match="lacks feature.*TP53"):
        simulate_mds(without, n=50)
    extra = dataclasses.replace(
        mds_guide, features=(*mds_guide.features, Feature("KRAS", "binary", "genomic"))
    )
    with pytest.raises(ValueError, match="KRAS.*no generative model"):
        simulate_mds(extra, n=50)
    retyped = dataclasses.replace(
        mds_guide,
        features=tuple(
            dataclasses.replace(f, kind="continuous") if f.name == "SF3B1" else f for f in mds_guide.features
        ),
    )
    with pytest.raises(ValueError, match="SF3B1"):
        simulate_mds(retyped, n=50)


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


def test_cache_round_trip_and_tamper_detection(mds_guide, tmp_path):
    df, card = load_or_build_simulated(mds_guide, n=300, seed=4, data_root=tmp_path)
    folder = tmp_path / "simulated" / "mds" / "n300-seed4"
    assert sorted(p.name for p in folder.iterdir()) == ["dataset.json", "simulated.parquet"]  # no temp files
    assert json.loads((folder / "dataset.json").read_text()) == card
    assert card["id"] == dataset_id(df, mds_guide)
    assert card["use_case"] == "mds" and card["guide_version"] == mds_guide.version
    assert card["generator"] == {"version": GENERATOR_VERSION, "seed": 4, "n": 300}
    assert card["centres"] == [{"name": "simulated", "n_rows": 300, "n_events": card["n_events"]}]
    assert card["n_rows"] == 300 and card["n_events"] == int(df["event"].sum())
    assert [f["name"] for f in card["features"]] == list(mds_guide.feature_names)
    assert card["provenance"]["source"] == "simulated"
    assert df["patient_id"].is_sorted()

    again, card2 = load_or_build_simulated(mds_guide, n=300, seed=4, data_root=str(tmp_path))
    assert card2 == card and again.equals(df)
    assert dataset_id(again, mds_guide) == card["id"]

    tampered = df.with_columns(
        pl.when(pl.int_range(pl.len()) == 5).then(99.0).otherwise(pl.col("age")).alias("age")
    )
    tampered.write_parquet(folder / "simulated.parquet")
    with pytest.raises(DatasetCacheError, match="corrupted"):
        load_or_build_simulated(mds_guide, n=300, seed=4, data_root=tmp_path)
    (folder / "simulated.parquet").write_bytes(b"not a parquet file")
    with pytest.raises(DatasetCacheError, match="corrupted"):
        load_or_build_simulated(mds_guide, n=300, seed=4, data_root=tmp_path)
    with pytest.raises(DatasetCacheError, match="stale"):
        load_or_build_simulated(
            dataclasses.replace(mds_guide, version="0.0.0"), n=300, seed=4, data_root=tmp_path
        )


def _build_in_child(data_root: str) -> str:
    from fedjax_rhd.datasets import load_or_build_simulated as build
    from harmonize.guide import load_guide

    return build(load_guide("mds"), n=2000, seed=5, data_root=data_root)[1]["id"]


def test_parallel_builds_agree(mds_guide, tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        ids = pool.map(_build_in_child, [str(tmp_path)] * 2)
    assert ids[0] == ids[1]
    df, card = load_or_build_simulated(mds_guide, n=2000, seed=5, data_root=tmp_path)
    assert card["id"] == ids[0] == dataset_id(df, mds_guide)


def test_simulator_dispatch(mds_guide, tmp_path):
    assert SIMULATORS["mds"] is simulate_mds and simulator_for("mds") is simulate_mds
    with pytest.raises(KeyError, match="no simulator for use case 'cll'"):
        simulator_for("cll")
    with pytest.raises(KeyError, match="no simulator"):
        load_or_build_simulated(
            dataclasses.replace(mds_guide, use_case="cll"), n=10, seed=0, data_root=tmp_path
        )
