"""Real cohorts through FHIR equal what the cohort readers parsed, and every source row is accounted for.

The run path (``fedjax_rhd.sources.load_use_case``: source -> FHIR R5 -> table) is
compared with the readers' own parsed tables (``fedjax_rhd.cohorts.iwgpm`` /
``beataml``), which never went through FHIR.

Skips when ``../shared/data`` is absent. ``cmml_iwgpm`` and ``aml_beat`` run by
default (~20 s to build both); ``mds_iwgpm`` (2,957 records, ~1 min) is slow.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import polars as pl
import pytest

from fedjax_rhd.cohorts import beataml, iwgpm, resolve_real_data_root
from fedjax_rhd.config import run_config
from fedjax_rhd.data.federated import build_federated_data
from fedjax_rhd.federation.loop import run_federation
from fedjax_rhd.federation.registry import make_backend
from fedjax_rhd.sources import UseCase, load_use_case
from harmonize.guide import load_guide
from harmonize.registry import dataset_folder
from tests.conftest import compose

ROOT = resolve_real_data_root()
needs_data = pytest.mark.skipif(
    not (ROOT / "mds_iwgpm").is_dir() or not (ROOT / "aml_beat2").is_dir(),
    reason=f"real cohort data absent at {ROOT}",
)
CASES = [
    pytest.param("cmml_iwgpm", "iwgpm", id="cmml_iwgpm"),
    pytest.param("aml_beat", "beataml", id="aml_beat"),
    pytest.param("mds_iwgpm", "iwgpm", id="mds_iwgpm", marks=pytest.mark.slow),
]
# Training through FHIR vs on the reader's table compiles a round per cohort shape (~10 s each): the
# default suite trains on Beat AML (natural centres, Int8 vs Float64 binaries); the IWG-PM cohorts' tables
# are compared value by value above and trained on in the slow suite.
MODEL_CASES = [
    pytest.param("cmml_iwgpm", "iwgpm", id="cmml_iwgpm", marks=pytest.mark.slow),
    pytest.param("aml_beat", "beataml", id="aml_beat"),
    pytest.param("mds_iwgpm", "iwgpm", id="mds_iwgpm", marks=pytest.mark.slow),
]


READERS = {"mds_iwgpm": iwgpm.load_mds, "cmml_iwgpm": iwgpm.load_cmml, "aml_beat": beataml.load_aml}


def _both(use_case: str, source: str, data_root):
    """(through FHIR by the run path, the reader's own parse of the raw files)."""
    fhir = load_use_case(
        UseCase(name=use_case, guide=use_case, source=source, n_patients=0),
        seed_data=0,
        data_root=data_root,
        real_data_root=None,
    )
    return fhir, READERS[use_case](load_guide(use_case), ROOT)


def _source_rows(use_case: str) -> int:
    """Source records counted straight from the raw files (independently of the readers)."""
    if use_case == "aml_beat":
        clinical = pl.read_excel(ROOT / "aml_beat2" / "beataml_wv1to4_clinical.xlsx", engine="openpyxl")
        return clinical["dbgap_subject_id"].n_unique()  # one record per patient
    raw = pl.read_csv(
        ROOT / "mds_iwgpm" / "df_clinical.tsv", separator="\t", null_values=["NA"], infer_schema_length=None
    )
    return raw.filter(pl.col("WHO_2016") == "CMML").height if use_case == "cmml_iwgpm" else raw.height


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("real")


@needs_data
@pytest.mark.parametrize(("use_case", "source"), CASES)
def test_real_cohort_through_fhir_equals_the_reader(use_case, source, data_root):
    guide = load_guide(use_case)
    fhir, direct = _both(use_case, source, data_root)

    # Same rows, same values (binaries are Int8 in FHIR tables, Float64 in the readers' ones).
    a, b = fhir.table.drop("centre"), direct.table.sort("patient_id").drop("centre")
    assert a["patient_id"].to_list() == b["patient_id"].to_list()
    assert fhir.table["centre"].to_list() == direct.table.sort("patient_id")["centre"].to_list()
    for f in [*guide.feature_names, "time", "event"]:
        x, y = a[f], b[f]
        if x.dtype == pl.String:
            assert x.to_list() == y.to_list(), f
        else:
            np.testing.assert_array_equal(
                x.cast(pl.Float64).to_numpy(), y.cast(pl.Float64).to_numpy(), err_msg=f
            )
    # Scores kept outside FHIR, joined back per patient.
    assert fhir.score_name == direct.score_name
    s_direct = direct.scores.sort("patient_id")
    assert fhir.scores.columns[: len(s_direct.columns)] == s_direct.columns
    assert fhir.scores.select(s_direct.columns).equals(s_direct)

    # Quality reports account for every source row.
    folder = dataset_folder(data_root, use_case)
    total = {"n_records": 0, "n_rows": 0, "quarantined": 0}
    for centre in fhir.card["centres"]:
        report = json.loads((folder / "quality" / f"{centre['name']}.json").read_text())
        c = report["counts"]
        assert c["n_records"] == c["n_rows"] + c["quarantined_at_ingest"] + c["quarantined_at_extraction"]
        total["n_records"] += c["n_records"]
        total["n_rows"] += c["n_rows"]
        total["quarantined"] += c["quarantined_at_ingest"] + c["quarantined_at_extraction"]
        if use_case != "aml_beat":
            # The gene flags are cross-checked against the variant list (maf.tsv).
            genes = [f.name for f in guide.features if f.fhir.gene is not None]
            flags = int(fhir.table.select(genes).sum().sum_horizontal()[0])
            notes = report["source"]
            assert notes["flag_1_and_listed"] + notes["flag_1_not_listed"] == flags
            assert notes["genes_checked"] == len(genes) and notes["vaf_outside_0_1"] == 0
        if use_case == "aml_beat":
            assert report["source"]["patients"] == c["n_records"]
            assert report["source"]["chosen_exome_in_sample_mapping"] == report["source"]["chosen_with_exome"]
            assert "Initial Diagnosis" in report["source"]["record_selection"]
            assert sum(report["source"]["specimen_stage_chosen"].values()) == c["n_records"]
    assert total["n_records"] == _source_rows(use_case)
    assert total["n_rows"] == direct.table.height
    assert total["quarantined"] == sum(direct.card["quality"]["dropped"].values())


@needs_data
@pytest.mark.parametrize(("use_case", "source"), MODEL_CASES)
def test_real_cohort_model_results_equal_through_fhir(use_case, source, data_root):
    guide = load_guide(use_case)
    fhir, direct = _both(use_case, source, data_root)
    overrides = [f"use_case={use_case}", "strategy.rounds=2", "strategy.patience=null"]
    overrides += ["strategy.client.local_epochs=1"] + (["split=natural"] if use_case == "aml_beat" else [])
    config = run_config(compose(overrides))
    results = []
    for cohort in (fhir, direct):
        data = build_federated_data(cohort.table, guide, config.split)
        backend = make_backend(config.backend, data, config.algorithm_spec(data.num_features))
        results.append((run_federation(backend, config.schedule(), progress=False), data))
    (a, da), (b, db) = results
    assert da.test_patient_ids == db.test_patient_ids and da.node_names == db.node_names
    for x, y in zip(jax.tree.leaves(a.global_params), jax.tree.leaves(b.global_params), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert a.rounds[-1]["val_loss_federated"] == b.rounds[-1]["val_loss_federated"]
    # The clinical score on the test rows is the same too.
    ids = list(da.test_patient_ids)
    for cohort in (fhir, direct):
        s = cohort.scores.filter(pl.col("patient_id").is_in(ids)).sort("patient_id")
        assert s.height == len(ids)
    sa = fhir.scores.filter(pl.col("patient_id").is_in(ids)).sort("patient_id")["clinical_score"]
    sb = direct.scores.filter(pl.col("patient_id").is_in(ids)).sort("patient_id")["clinical_score"]
    assert sa.to_list() == sb.to_list()
