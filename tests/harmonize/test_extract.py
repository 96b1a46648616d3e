"""FHIR -> ML-ready table: exact round trip, unit conversions, ranges, panels, vectors, treatment."""

from __future__ import annotations

import json

import numpy as np
import orjson
import polars as pl
import pytest

from fedjax_rhd.simulate.mds import simulate_mds
from fedjax_rhd.sources.simulated import SIMULATORS, simulator_for
from harmonize.extract import extract_centre
from harmonize.fhir import ingest_centre, ingest_source
from harmonize.guide import load_guide
from harmonize.identity import dataset_id
from harmonize.quality import quality_report, report_markdown
from harmonize.sources import CanonicalExportSource, PatientRecord, canonical_schema, write_canonical_export

TOY = """\
use_case: toy
version: "1.0"
fhir:
  condition: {system: "http://hl7.org/fhir/sid/icd-10", code: C93.1}
endpoint:
  time: {name: time, unit: a}
  event: {name: event}
features:
  - {name: hb, kind: continuous, group: clinical, unit: g/dL, range: [3, 20],
     fhir: {resource: Observation, system: "http://loinc.org", code: 718-7}}
  - {name: complex, kind: binary, group: cytogenetic,
     fhir: {resource: Observation, system: "https://fedjax-rhd.org/fhir/CodeSystem/feature", code: complex}}
  - {name: risk, kind: categorical, group: clinical, levels: [low, high],
     fhir: {resource: Observation, system: "https://fedjax-rhd.org/fhir/CodeSystem/feature", code: risk}}
  - {name: NRAS, kind: binary, group: genomic, fhir: {resource: Observation, gene: NRAS}}
  - {name: KRAS, kind: binary, group: genomic, fhir: {resource: Observation, gene: KRAS}}
  - {name: hma, kind: binary, group: treatment,
     fhir: {resource: MedicationStatement, code: hma,
            system: "https://fedjax-rhd.org/fhir/CodeSystem/feature"}}
  - {name: sct, kind: binary, group: treatment,
     fhir: {resource: Procedure, system: "http://snomed.info/sct", code: "234336002"}}
"""
WSI = 6  # image-feature vector width (one SampledData Observation per patient)


def _toy_guide(tmp_path):
    wsi = "".join(
        f"  - {{name: wsi_{i}, kind: continuous, group: wsi, unit: '1', range: [-100, 100],\n"
        f"     fhir: {{resource: Observation, system: 'https://fedjax-rhd.org/fhir/CodeSystem/feature',"
        f" code: wsi-embedding, vector: wsi}}}}\n"
        for i in range(WSI)
    )
    path = tmp_path / "toy.yaml"
    path.write_text(TOY + wsi)
    return load_guide(path)


def _toy_table(guide, n=60, seed=0):
    rng = np.random.default_rng(seed)
    cols = {
        "patient_id": [f"T-{i:03d}" for i in range(n)],
        "centre": ["east" if i % 2 else "west" for i in range(n)],
        "hb": np.round(rng.uniform(5, 15, n), 1),
        "complex": rng.integers(0, 2, n),
        "risk": rng.choice(["low", "high"], n),
        "NRAS": rng.integers(0, 2, n),
        "KRAS": rng.integers(0, 2, n),
        "hma": rng.integers(0, 2, n),
        "sct": rng.integers(0, 2, n),
        **{f"wsi_{i}": rng.normal(size=n) for i in range(WSI)},
        "time": np.round(rng.uniform(1, 3000, n)) / 365.25,
        "event": rng.integers(0, 2, n),
    }
    df = pl.DataFrame(cols).with_columns(
        pl.col("complex", "NRAS", "KRAS", "hma", "sct", "event").cast(pl.Int8)
    )
    missing = rng.random((n, len(df.columns))) < 0.15
    exprs = []
    for j, c in enumerate(df.columns):
        if c in ("patient_id", "centre", "time", "event", "KRAS"):
            exprs.append(pl.col(c))
        else:
            exprs.append(pl.when(pl.Series(missing[:, j])).then(None).otherwise(pl.col(c)).alias(c))
    df = df.select(exprs)
    # KRAS missing exactly when NRAS is (one panel per patient); one whole vector missing.
    df = df.with_columns(pl.when(pl.col("NRAS").is_null()).then(None).otherwise(pl.col("KRAS")).alias("KRAS"))
    return df.with_columns(
        [
            pl.when(pl.col("patient_id") == "T-007")
            .then(None)
            .otherwise(pl.col(f"wsi_{i}"))
            .alias(f"wsi_{i}")
            for i in range(WSI)
        ]
    )


def _round_trip(df, guide, root):
    write_canonical_export(df, guide, root / "export", {"source": "test"})
    ingest_source(CanonicalExportSource(root / "export", guide), guide, root / "fhir")
    centres = sorted(df["centre"].unique().to_list())
    return {c: extract_centre(root / "fhir", c, guide) for c in centres}


# mds_wsi (1536 embedding columns) is the heaviest case; the default suite checks its exact FHIR round
# trip in tests/simulate/test_simulate_usecases.py::test_mds_wsi_through_fhir_is_fast_and_exact.
ROUND_TRIP_CASES = [
    pytest.param(u, marks=pytest.mark.slow) if u == "mds_wsi" else u for u in sorted(SIMULATORS)
]


@pytest.mark.parametrize("use_case", ROUND_TRIP_CASES)
def test_simulated_round_trip_is_exact_per_centre(tmp_path, use_case):
    """Every use case with a simulator: canonical table -> FHIR -> table, bit for bit."""
    guide = load_guide(use_case)
    df = simulator_for(use_case)(guide, n=300, seed=4)
    df = df.with_columns(pl.Series("centre", np.array(["north", "south"])[np.arange(300) % 2]))
    out = _round_trip(df, guide, tmp_path)
    for centre, (table, stats) in out.items():
        expected = df.filter(pl.col("centre") == centre).drop("oracle_risk").sort("patient_id")
        assert table.equals(expected), centre  # bit-equal values, nulls and dtypes
        assert table.schema == expected.schema
        assert stats.conversions == {} and stats.out_of_range == {} and not stats.quarantined
    combined = pl.concat([t for t, _ in out.values()])
    assert dataset_id(combined, guide) == dataset_id(df.drop("oracle_risk"), guide)


def test_vectors_treatment_findings_round_trip(tmp_path):
    guide = _toy_guide(tmp_path)
    df = _toy_table(guide)
    out = _round_trip(df, guide, tmp_path)
    for centre, (table, stats) in out.items():
        expected = df.filter(pl.col("centre") == centre).sort("patient_id")
        assert table.equals(expected), centre
        assert not stats.rejected_values and not stats.unmapped
    files = sorted(p.name for p in (tmp_path / "fhir" / "west").glob("*.ndjson"))
    assert files == [
        "Condition.ndjson",
        "MedicationStatement.ndjson",
        "Observation.ndjson",
        "Patient.ndjson",
        "Procedure.ndjson",
    ]
    vectors = [
        r
        for line in (tmp_path / "fhir" / "west" / "Observation.ndjson").read_bytes().splitlines()
        if "valueSampledData" in (r := orjson.loads(line))
    ]
    n_with_vector = df.filter(
        (pl.col("centre") == "west")
        & pl.any_horizontal([pl.col(f"wsi_{i}").is_not_null() for i in range(WSI)])
    ).height
    assert len(vectors) == n_with_vector  # one resource per vector, none when all missing
    assert all(len(r["valueSampledData"]["data"].split()) == WSI for r in vectors)
    assert any("E" in r["valueSampledData"]["data"].split() for r in vectors)  # a missing component


def _rec(pid, units=None, time=1.5, **values):
    return PatientRecord(pid, "c1", "hand.csv", 1, values, units or {}, time, 0)


def test_unit_conversion_out_of_range_and_report(tmp_path, mds_guide):
    records = [
        _rec("P1", units={"hb": "g/L", "plt": "/uL"}, hb=97.0, plt=130000.0),
        _rec("P2", hb=25.0, plt=150.0),  # Hb above the guide's 20 g/dL: set missing, counted
        _rec("P3", units={"hb": "g/L"}, hb=20.0),  # 2.0 g/dL: below 3, counted after conversion
    ]
    stats_in = ingest_centre(records, mds_guide, tmp_path, "c1")
    table, stats = extract_centre(tmp_path, "c1", mds_guide)
    assert table["hb"].to_list() == [9.7, None, None]  # 97 g/L -> 9.7 g/dL exactly
    assert table["plt"].to_list() == [130.0, 150.0, None]
    assert dict(stats.conversions) == {"hb: g/L -> g/dL": 2, "plt: /uL -> 10*9/L": 1}
    assert stats.out_of_range["hb"]["count"] == 2
    assert stats.out_of_range["hb"]["examples"] == [
        {"patient_id": "P2", "value": 25.0},
        {"patient_id": "P3", "value": 2.0},
    ]
    report = quality_report(table, mds_guide, stats_in.to_json(), stats.to_json())
    hb = next(r for r in report["completeness"] if r["feature"] == "hb")
    assert (hb["observed"], hb["missing"], hb["completeness"]) == (1, 2, pytest.approx(1 / 3))
    md = report_markdown(report)
    assert "hb: g/L -> g/dL | 2" in md and "P2=25.0" in md
    assert json.loads(json.dumps(report)) == report


def test_panel_distinguishes_wild_type_from_not_tested(tmp_path, mds_guide):
    genes = [f.name for f in mds_guide.features if f.group == "genomic"]
    tested = dict.fromkeys(genes, 0) | {"TP53": 1}
    records = [_rec("P1", **tested), _rec("P2"), _rec("P3", **(dict.fromkeys(genes[:3], 0)))]
    ingest_centre(records, mds_guide, tmp_path, "c1")
    table, _ = extract_centre(tmp_path, "c1", mds_guide)
    assert table.filter(pl.col("patient_id") == "P1").select(genes).row(0) == tuple(
        int(g == "TP53") for g in genes
    )
    assert table.filter(pl.col("patient_id") == "P2").select(genes).row(0) == (None,) * len(genes)
    p3 = table.filter(pl.col("patient_id") == "P3").select(genes).row(0)
    assert p3 == (0, 0, 0) + (None,) * (len(genes) - 3)  # partial panel: untested genes stay missing


def test_variant_off_the_panel_is_kept_and_counted(tmp_path, mds_guide):
    ingest_centre([_rec("P1", TP53=1, SF3B1=0)], mds_guide, tmp_path, "c1")
    obs_path = tmp_path / "c1" / "Observation.ndjson"
    lines = [orjson.loads(x) for x in obs_path.read_bytes().splitlines()]
    panel = next(r for r in lines if r["code"]["coding"][0]["code"] == "53041-0")
    # The panel forgets TP53 although a TP53 variant was reported.
    panel["component"] = [
        c for c in panel["component"] if c["valueCodeableConcept"]["coding"][0]["display"] != "TP53"
    ]
    obs_path.write_bytes(b"\n".join(orjson.dumps(r) for r in lines) + b"\n")
    table, stats = extract_centre(tmp_path, "c1", mds_guide)
    assert table["TP53"].to_list() == [1] and table["SF3B1"].to_list() == [0]
    assert dict(stats.inferred) == {"TP53: variant without a panel entry, kept as 1": 1}


def test_conflicts_orphans_and_missing_endpoint_are_counted(tmp_path, mds_guide):
    ingest_centre([_rec("P1", hb=9.0), _rec("P2", hb=10.0)], mds_guide, tmp_path, "c1")
    obs_path = tmp_path / "c1" / "Observation.ndjson"
    lines = obs_path.read_bytes().splitlines()
    hb_p1 = next(orjson.loads(x) for x in lines if b'"718-7"' in x and b"Patient/P1" in x)
    extra = [
        hb_p1 | {"id": "dup", "valueQuantity": hb_p1["valueQuantity"] | {"value": 11.0}},  # conflicting
        hb_p1 | {"id": "orphan", "subject": {"reference": "Patient/NOPE"}},
        hb_p1 | {"id": "odd", "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]}},
    ]
    # P2 loses its survival-time observation: quarantined at extraction.
    kept = [x for x in lines if not (b"overall-survival-time" in x and b"Patient/P2" in x)]
    obs_path.write_bytes(b"\n".join(kept + [orjson.dumps(r) for r in extra]) + b"\n")
    table, stats = extract_centre(tmp_path, "c1", mds_guide)
    assert table["patient_id"].to_list() == ["P1"] and table["hb"].to_list() == [None]
    assert dict(stats.rejected_values["hb"]) == {"conflicting values for one patient": 1}
    assert dict(stats.unmapped) == {
        "Observation with unknown subject": 1,
        "Observation http://loinc.org|2345-7": 1,
    }
    assert dict(stats.quarantined) == {"no survival time observation": 1}


def test_canonical_schema_matches_guide_kinds(mds_guide):
    schema = canonical_schema(mds_guide)
    assert list(schema)[:3] == ["patient_id", "age", "sex_male"] and list(schema)[-2:] == ["time", "event"]
    assert schema["ipssr_cyto"] == pl.String and schema["TP53"] == pl.Int8 and schema["hb"] == pl.Float64


def test_export_refuses_another_use_case(tmp_path, mds_guide):
    df = simulate_mds(mds_guide, n=10, seed=0)
    write_canonical_export(df, mds_guide, tmp_path / "ex", {})
    manifest = json.loads((tmp_path / "ex" / "export.json").read_text())
    manifest["use_case"] = "aml"
    (tmp_path / "ex" / "export.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="export is for use case 'aml'"):
        CanonicalExportSource(tmp_path / "ex", mds_guide)


def test_toy_guide_loads(tmp_path):
    guide = _toy_guide(tmp_path)
    assert [f.fhir.vector for f in guide.features if f.group == "wsi"] == ["wsi"] * WSI
    assert guide.feature("sct").fhir.coding.code == "234336002"
