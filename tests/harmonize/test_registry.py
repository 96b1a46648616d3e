"""Dataset registry: built on first use, cached, stable content ids; same training as the canonical table."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import polars as pl
import pytest

from fedjax_rhd.config import run_config
from fedjax_rhd.data.federated import build_federated_data
from fedjax_rhd.federation.loop import run_federation
from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.simulate.mds import simulate_mds
from fedjax_rhd.sources.simulated import generator_fingerprint
from harmonize import registry
from harmonize.datasets import load_or_build_dataset
from harmonize.guide import load_guide
from harmonize.identity import DatasetCacheError, dataset_id
from harmonize.registry import DatasetSpec, dataset_folder, spec_for_run
from tests.conftest import ROOT, compose

N, SEED = 300, 1


def _spec(name="mds-test", source="simulated"):
    return DatasetSpec(name=name, guide="mds", source=source, options=(("n", N), ("seed", SEED)))


@pytest.fixture(scope="module")
def built(tmp_path_factory, mds_guide):
    root = tmp_path_factory.mktemp("reg")
    df, card = load_or_build_dataset(_spec(), mds_guide, root)
    return root, df, card


def test_built_dataset_equals_the_simulated_table(built, mds_guide):
    root, df, card = built
    expected = simulate_mds(mds_guide, n=N, seed=SEED).sort("patient_id")
    assert df.equals(expected)  # features, endpoint and the oracle side file, bit for bit
    assert card["id"] == dataset_id(expected, mds_guide)
    folder = dataset_folder(root, "mds-test")
    for sub in ("export/simulated.csv", "fhir/simulated/Patient.ndjson", "tables/simulated.parquet"):
        assert (folder / sub).is_file(), sub
    quality = json.loads((folder / "quality" / "simulated.json").read_text())
    assert quality["counts"]["n_records"] == quality["counts"]["n_rows"] == N
    assert card["centres"] == [
        {
            "name": "simulated",
            "n_rows": N,
            "n_events": int(expected["event"].sum()),
            "n_records": N,
            "quarantined": 0,
            "quality_report": "quality/simulated.md",
        }
    ]
    assert card["source"] == {
        "name": "simulated",
        "options": {"n": N, "seed": SEED},
        "generator": generator_fingerprint("mds"),
        # the guide file's sha256 (a simulator reads no file; its generator fingerprint covers it)
        "inputs": {"guide mds": hashlib.sha256(Path(mds_guide.path).read_bytes()).hexdigest()},
    }
    assert card["truth_columns"] == ["oracle_risk"]
    assert {f["name"]: f["fhir"].get("code") for f in card["features"]}["hb"] == "718-7"


def test_id_is_stable_across_a_rebuild_and_the_cache_is_reused(built, tmp_path, mds_guide):
    root, _, card = built
    card_path = dataset_folder(root, "mds-test") / "dataset.json"
    before = card_path.stat().st_mtime_ns
    _, again = load_or_build_dataset(_spec(), mds_guide, root)
    assert again["id"] == card["id"] and card_path.stat().st_mtime_ns == before  # read, not rebuilt
    _, fresh = load_or_build_dataset(_spec(), mds_guide, tmp_path)  # rebuilt from scratch elsewhere
    assert fresh["id"] == card["id"]


def test_id_changes_when_one_value_changes(tmp_path, mds_guide, monkeypatch, built):
    _, _, card = built

    def nudged(guide, options):
        df = simulate_mds(guide, n=options["n"], seed=options["seed"])
        first = df["patient_id"][0]
        hb = pl.when(pl.col("patient_id") == first).then(pl.col("hb") + 0.1).otherwise(pl.col("hb"))
        return df.with_columns(hb.alias("hb")), {"source": "nudged"}

    monkeypatch.setitem(
        registry.SOURCES, "nudged", registry.RegisteredSource("nudged", registry.table_source(nudged))
    )
    _, other = load_or_build_dataset(_spec(source="nudged"), mds_guide, tmp_path)
    assert other["id"] != card["id"]


def test_a_process_checks_a_dataset_once_until_one_of_its_files_changes(built, mds_guide, monkeypatch):
    """The second load in a process (a sweep worker's next job) reuses the checked table, hashing nothing."""
    from harmonize import datasets

    root, df, card = built
    folder = dataset_folder(root, "mds-test")
    hashed = []
    real_id = datasets.dataset_id
    monkeypatch.setattr(datasets, "dataset_id", lambda d, g: hashed.append(1) or real_id(d, g))
    monkeypatch.setattr(datasets, "_CHECKED", {})
    first, _ = datasets.load_dataset(folder, mds_guide)
    again, card_again = datasets.load_dataset(folder, mds_guide)
    assert len(hashed) == 1 and again is first and first.equals(df) and card_again == card
    # the same bytes written again (a new modification time): read and checked afresh
    table = folder / "tables" / "simulated.parquet"
    st = table.stat()
    os.utime(table, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    fresh, _ = datasets.load_dataset(folder, mds_guide)
    assert len(hashed) == 2 and fresh is not first and fresh.equals(df)


def test_corrupted_or_mismatched_cache_fails_clearly(tmp_path, mds_guide):
    _, card = load_or_build_dataset(_spec(), mds_guide, tmp_path)
    with pytest.raises(DatasetCacheError, match="was built from source"):
        load_or_build_dataset(
            DatasetSpec("mds-test", "mds", "simulated", (("n", N), ("seed", SEED + 1))), mds_guide, tmp_path
        )
    table = dataset_folder(tmp_path, "mds-test") / "tables" / "simulated.parquet"
    df = pl.read_parquet(table)
    df.with_columns(pl.col("time") * 2).write_parquet(table)
    with pytest.raises(DatasetCacheError, match=f"differs from {card['id']}"):
        load_or_build_dataset(_spec(), mds_guide, tmp_path)
    # Truncated by hand: refused naming the file, never read half-way.
    table.write_bytes(table.read_bytes()[:100])
    with pytest.raises(DatasetCacheError, match=f"corrupted dataset file {table}: not a readable parquet"):
        load_or_build_dataset(_spec(), mds_guide, tmp_path)
    # A card edited into something that is not a card.
    card_path = dataset_folder(tmp_path, "mds-test") / "dataset.json"
    card_path.write_text("[]")
    with pytest.raises(DatasetCacheError, match=f"dataset card {card_path} is not a card"):
        load_or_build_dataset(_spec(), mds_guide, tmp_path)


def test_spec_for_run_names_simulated_datasets():
    spec = spec_for_run(
        use_case="mds", guide="mds", source="simulated", dataset=None, n_patients=10, seed_data=2
    )
    assert spec == DatasetSpec("mds-sim-n10-seed2", "mds", "simulated", (("n", 10), ("seed", 2)))
    named = spec_for_run(
        use_case="mds", guide="mds", source="simulated", dataset="x", n_patients=10, seed_data=2
    )
    assert named.name == "x"


def test_spec_for_run_takes_each_source_its_own_options():
    """Each registration says which run values become options; names and options as before the move."""
    run = dict(guide="g", dataset=None, n_patients=10, seed_data=2, n_centres=4, root="/raw")
    dialects = spec_for_run(use_case="mds_dialects", source="simulated_dialects", **run)
    assert dialects == DatasetSpec(
        "mds_dialects", "g", "simulated_dialects", (("centres", 4), ("n", 10), ("seed", 2))
    )
    real = spec_for_run(use_case="aml_beat", source="beataml", **run)
    assert real == DatasetSpec("aml_beat", "g", "beataml", (("root", "/raw"),))
    assert spec_for_run(use_case="aml_beat", source="beataml", **{**run, "root": None}).options == ()
    csv = spec_for_run(use_case="u", source="csv", mapping=("a.yaml", "b.yaml"), **run)
    assert csv == DatasetSpec("u", "g", "csv", (("mapping", ["a.yaml", "b.yaml"]),))
    with pytest.raises(ValueError, match="use_case.source=csv needs use_case.mapping"):
        spec_for_run(use_case="u", source="csv", **run)
    with pytest.raises(KeyError, match="unknown source 'nope'"):
        spec_for_run(use_case="u", source="nope", **run)


def test_register_source_refuses_a_second_meaning():
    entry = registry.SOURCES["export"]
    assert registry.register_source("export", entry.factory, inputs=entry.inputs) == entry  # the same again
    with pytest.raises(ValueError, match="registered already"):
        registry.register_source("export", lambda guide, options, folder: None)
    with pytest.raises(ValueError, match="run_options"):
        registry.register_source("x", entry.factory, run_options=("colour",))
    assert registry.SOURCES["export"] == entry and "x" not in registry.SOURCES


def test_training_on_the_harmonised_dataset_equals_training_on_the_canonical_table(built, mds_guide):
    _, harmonised, _ = built
    canonical = simulate_mds(mds_guide, n=N, seed=SEED)
    config = run_config(
        compose(["strategy.rounds=2", "strategy.patience=null", "strategy.client.local_epochs=1"])
    )
    results = []
    for df in (harmonised, canonical):
        data = build_federated_data(df, mds_guide, config.split)
        spec = config.algorithm_spec(data.num_features)
        sim = run_federation(make_backend(config.backend, data, spec), config.schedule(), progress=False)
        results.append((sim, data))
    (a, da), (b, db) = results
    assert da.test_patient_ids == db.test_patient_ids
    for x, y in zip(jax.tree.leaves(a.global_params), jax.tree.leaves(b.global_params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.rounds[-1]["val_loss_federated"] == b.rounds[-1]["val_loss_federated"]


def test_cli_help_in_a_fresh_process():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "harmonize", "--help"], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0
    for word in ("build", "ingest", "extract", "show", "examples"):
        assert word in proc.stdout


def test_cli_build_and_show(tmp_path, monkeypatch, capsys):
    from harmonize.cli import main

    monkeypatch.chdir(tmp_path)
    main(["build", "--use-case", "mds", "--n", "120", "--seed", "3", "--quiet"])
    assert "mds-sim-n120-seed3: id ds-" in capsys.readouterr().out
    main(["show", "card", "mds-sim-n120-seed3"])
    card = json.loads(capsys.readouterr().out)
    assert card["n_rows"] == 120 and (tmp_path / "data" / "datasets" / "mds-sim-n120-seed3").is_dir()
    main(["show", "quality", "mds-sim-n120-seed3", "--centre", "simulated"])
    assert "## Completeness per feature" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no dataset 'nope'"):
        main(["show", "card", "nope"])
    with pytest.raises(SystemExit) as err:
        main(["guide", "no_such_guide"])
    assert err.value.code == 1 and "no guide at" in capsys.readouterr().err


def test_a_table_source_goes_through_the_same_path(tmp_path, mds_guide, monkeypatch):
    table = simulate_mds(mds_guide, n=50, seed=9).drop("centre", "oracle_risk")
    monkeypatch.setitem(
        registry.SOURCES,
        "cohort",
        registry.RegisteredSource(
            "cohort",
            registry.table_source(lambda guide, options: (table, {"source": "a cohort"}), centre="cohort"),
        ),
    )
    spec = spec_for_run(use_case="mds", guide="mds", source="cohort", dataset=None, n_patients=0, seed_data=0)
    df, card = load_or_build_dataset(spec, mds_guide, tmp_path)
    assert card["name"] == "mds" and card["provenance"] == {"source": "a cohort"}
    assert [c["name"] for c in card["centres"]] == ["cohort"]  # one centre, named after the source
    assert df.drop("centre").equals(table.sort("patient_id"))


@pytest.mark.slow
def test_benchmark_meets_the_budget():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_harmonize", ROOT / "experiments/bench/harmonize.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert bench.main([])["pipeline_seconds"] <= bench.BUDGET_SECONDS


def test_recalibrated_simulator_makes_the_cache_stale(tmp_path, monkeypatch):
    """Simulator code or fitted parameters changed without a version bump: a clear error, not reuse."""
    guide = load_guide("mds")
    spec = DatasetSpec(name="tiny", guide="mds", source="simulated", options=(("n", 60), ("seed", 0)))
    load_or_build_dataset(spec, guide, tmp_path)
    recalibrated = dataclasses.replace(registry.SOURCES["simulated"], fingerprint=lambda g, o: "recalibrated")
    monkeypatch.setitem(registry.SOURCES, "simulated", recalibrated)
    with pytest.raises(DatasetCacheError, match="the source.s code changed since it was built"):
        load_or_build_dataset(spec, guide, tmp_path)
