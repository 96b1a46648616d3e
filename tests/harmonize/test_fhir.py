"""Records -> FHIR R5: every resource validates, codes/systems/units read back, bad input is named."""

from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import orjson
import polars as pl
import pytest
from fhir.resources.condition import Condition
from fhir.resources.observation import Observation
from fhir.resources.patient import Patient

from fedjax_rhd.simulate.mds import simulate_mds
from harmonize import terminology as term
from harmonize.fhir import (
    RESOURCE_MODELS,
    FhirValidationError,
    build_resources,
    ingest_centre,
    ingest_source,
    validate_resource,
)
from harmonize.sources import CanonicalExportSource, PatientRecord, write_canonical_export

CENTRES = ("A", "B", "C")


@pytest.fixture(scope="module")
def mds_fhir(tmp_path_factory, mds_guide):
    df = simulate_mds(mds_guide, n=240, seed=11)
    df = df.with_columns(pl.Series("centre", np.array(CENTRES)[np.arange(df.height) % 3]))
    root = tmp_path_factory.mktemp("fhir")
    write_canonical_export(df, mds_guide, root / "export", {"source": "test"})
    stats = ingest_source(CanonicalExportSource(root / "export", mds_guide), mds_guide, root / "fhir")
    return df, root / "fhir", stats


def _resources(folder, rtype):
    path = folder / f"{rtype}.ndjson"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.is_file() else []


def test_one_ndjson_per_type_per_centre_and_every_resource_validates(mds_fhir):
    df, fhir_dir, stats = mds_fhir
    assert sorted(stats) == list(CENTRES)
    for centre in CENTRES:
        folder = fhir_dir / centre
        assert sorted(p.name for p in folder.glob("*.ndjson")) == [
            "Condition.ndjson",
            "Observation.ndjson",
            "Patient.ndjson",
        ]
        counts = {}
        for path in folder.glob("*.ndjson"):
            rtype = path.stem
            lines = path.read_bytes().splitlines()
            counts[rtype] = len(lines)
            for line in lines:
                RESOURCE_MODELS[rtype].model_validate_json(line)  # raises on any invalid resource
        assert counts == dict(stats[centre].resources)
        assert stats[centre].n_patients == df.filter(pl.col("centre") == centre).height
        report = json.loads((folder / "ingest.json").read_text())
        assert report["quarantined"] == {} and report["rejected_values"] == {}


def test_sample_reads_back_with_codes_systems_and_units(mds_fhir, mds_guide):
    df, fhir_dir, _ = mds_fhir
    rows = df.filter(pl.col("centre") == "A")
    by_subject: dict[str, list[Observation]] = {}
    for raw in _resources(fhir_dir / "A", "Observation"):
        obs = Observation.model_validate(raw)
        by_subject.setdefault(obs.subject.reference, []).append(obs)
    patients = {p["id"]: Patient.model_validate(p) for p in _resources(fhir_dir / "A", "Patient")}
    conditions = {
        c["subject"]["reference"]: Condition.model_validate(c)
        for c in _resources(fhir_dir / "A", "Condition")
    }

    def codes(o):
        return (o.code.coding[0].system, o.code.coding[0].code)

    tp53_seen = wild_type_seen = untested_seen = 0
    for row in rows.iter_rows(named=True):
        pid = row["patient_id"]
        ref = f"Patient/{pid}"
        obs = by_subject[ref]
        patient = patients[pid]
        assert patient.identifier[0].value == pid
        assert patient.gender == ("male" if row["sex_male"] == 1 else "female")
        assert patient.deceasedBoolean is bool(row["event"])
        cond = conditions[ref]
        assert (cond.code.coding[0].system, cond.code.coding[0].code) == (term.ICD10, "D46.9")
        if row["age"] is None:
            assert cond.onsetAge is None
        else:
            assert cond.onsetAge.value == Decimal(repr(row["age"]))
            assert (cond.onsetAge.system, cond.onsetAge.code) == (term.UCUM, "a")
        hb = [o for o in obs if codes(o) == (term.LOINC, "718-7")]
        if row["hb"] is None:
            assert hb == []
        else:
            (o,) = hb
            q = o.valueQuantity
            assert (q.system, q.code, q.unit) == (term.UCUM, "g/dL", "g/dL")
            assert float(q.value) == row["hb"]
        (os_obs,) = [o for o in obs if codes(o) == (term.PROJECT, term.OS_TIME_CODE)]
        assert float(os_obs.valueQuantity.value) == row["time"] and os_obs.valueQuantity.code == "a"
        variants = [o for o in obs if codes(o) == (term.LOINC, "69548-6")]
        genes_found = set()
        for v in variants:
            (comp,) = v.component
            assert (comp.code.coding[0].system, comp.code.coding[0].code) == (term.LOINC, "48018-6")
            coding = comp.valueCodeableConcept.coding[0]
            assert coding.system == term.HGNC and term.hgnc_table()[coding.display] == coding.code
            genes_found.add(coding.display)
        genes = [f for f in mds_guide.features if f.group == "genomic" and f.fhir.gene is not None]
        assert genes_found == {f.fhir.gene for f in genes if row[f.name] == 1}
        panels = [o for o in obs if codes(o) == (term.LOINC, "53041-0")]
        if row["TP53"] is None:
            assert panels == [] and variants == []
            untested_seen += 1
        else:
            (panel,) = panels
            studied = [c.valueCodeableConcept.coding[0].code for c in panel.component]
            assert studied == [term.hgnc_table()[f.fhir.gene] for f in genes]
            tp53_seen += row["TP53"] == 1
            wild_type_seen += row["TP53"] == 0
    assert tp53_seen and wild_type_seen and untested_seen  # the sample covers all three cases


def test_invalid_resource_is_caught_at_write_time_naming_patient_and_field(tmp_path, mds_guide):
    df = simulate_mds(mds_guide, n=20, seed=2).filter(pl.col("hb").is_not_null())
    write_canonical_export(df, mds_guide, tmp_path / "export", {})
    source = CanonicalExportSource(tmp_path / "export", mds_guide)

    def broken(rec, values, guide):
        out = build_resources(rec, values, guide)
        for feature, res in out:
            if feature == "hb":
                del res["status"]  # Observation.status is required (1..1)
        return out

    with pytest.raises(FhirValidationError) as err:
        ingest_centre(source.records("simulated"), mds_guide, tmp_path / "fhir", "simulated", builder=broken)
    msg = str(err.value)
    first = df["patient_id"][0]
    assert f"patient {first}" in msg and "feature hb" in msg and "field status" in msg
    assert "row 1" in msg and "simulated.csv" in msg
    assert not (tmp_path / "fhir" / "simulated").exists()  # nothing half-written under the final name


def test_validate_resource_names_every_failing_field():
    bad = {"resourceType": "Patient", "id": "p1", "gender": 3, "deceasedBoolean": "often"}
    with pytest.raises(FhirValidationError, match=r"patient p1: invalid Patient: field ") as err:
        validate_resource(bad, where="patient p1")
    assert "field gender" in str(err.value) and "field deceasedBoolean" in str(err.value)
    with pytest.raises(FhirValidationError, match="unsupported resourceType 'Specimen'"):
        validate_resource({"resourceType": "Specimen"}, where="x")


def _record(pid, row, time=1.0, event=1, units=None, **values):
    return PatientRecord(
        patient_id=pid,
        centre="c1",
        source="hand.csv",
        row=row,
        values=values,
        units=units or {},
        time=time,
        event=event,
    )


def test_bad_records_are_quarantined_and_bad_values_rejected_all_counted(tmp_path, mds_guide):
    records = [
        _record("P1", 1, hb=9.5),
        _record(None, 2, hb=9.0),
        _record("P1", 3, hb=8.0),
        _record("P3", 4, time=0.0),
        _record("P4", 5, time=None),
        _record("P5", 6, event=2),
        _record("P6", 7, sex_male=2, ipssr_cyto="awful", hb=95.0, units={"hb": "mg"}),
        _record("P7", 8, plt=float("nan"), TP53=1),
    ]
    stats = ingest_centre(records, mds_guide, tmp_path, "c1")
    assert stats.n_records == 8 and stats.n_patients == 3  # P1, P6, P7
    assert dict(stats.quarantined) == {
        "missing patient_id": 1,
        "duplicate patient_id (first seen at row 1); conflicting values": 1,  # hb 8.0 vs 9.5
        "survival time not a positive number": 1,
        "missing survival time": 1,
        "event not 0/1": 1,
    }
    assert stats.n_records == stats.n_patients + sum(stats.quarantined.values())
    rejected = {k: dict(v) for k, v in stats.rejected_values.items()}
    assert rejected == {
        "sex_male": {"binary value not 0/1: 2": 1},
        "ipssr_cyto": {"level 'awful' not in ['very_good', 'good', 'intermediate', 'poor', 'very_poor']": 1},
        "hb": {"unit 'mg' has no conversion to 'g/dL'": 1},
        "plt": {"not a finite number: nan": 1},
    }
    listed = json.loads((tmp_path / "c1" / "ingest.json").read_text())["quarantined_rows"]
    assert [r["row"] for r in listed] == [2, 3, 4, 5, 6]
    assert [r["field"] for r in listed] == ["patient_id", "hb", "time", "time", "event"]
    findings = json.loads((tmp_path / "c1" / "ingest.json").read_text())["findings"]
    assert {(r["row"], r["field"]) for r in findings} == {
        (7, "sex_male"),
        (7, "ipssr_cyto"),
        (7, "hb"),
        (8, "plt"),
    }
