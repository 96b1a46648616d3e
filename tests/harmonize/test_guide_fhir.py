"""Guides' FHIR mappings: the shipped codes, the HGNC table, and clear failures on bad guides."""

from __future__ import annotations

import textwrap

import pytest

from harmonize import terminology as term
from harmonize.guide import GuideError, load_guide, require_fhir

HEAD = """\
use_case: toy
version: "1.0"
fhir:
  condition: {system: "http://hl7.org/fhir/sid/icd-10", code: D46.9}
endpoint:
  time: {name: time, unit: a}
  event: {name: event}
features:
"""


def _guide(tmp_path, features: str, head: str = HEAD):
    path = tmp_path / "toy.yaml"
    path.write_text(head + textwrap.indent(textwrap.dedent(features), "  "))
    return load_guide(path)


def test_mds_guide_has_the_reference_codes(mds_guide):
    require_fhir(mds_guide)
    assert mds_guide.version == "0.3.0"
    assert (mds_guide.condition.system, mds_guide.condition.code) == (term.ICD10, "D46.9")
    labs = {f.name: (f.fhir.coding.system, f.fhir.coding.code, f.unit) for f in mds_guide.features[2:5]}
    # /work/shared/docs/fhir_codes.md: Hb 718-7 g/dL, platelets 777-3 and ANC 751-8 in 10*9/L.
    assert labs == {
        "hb": (term.LOINC, "718-7", "g/dL"),
        "plt": (term.LOINC, "777-3", "10*9/L"),
        "anc": (term.LOINC, "751-8", "10*9/L"),
    }
    assert mds_guide.feature("age").fhir.element == "onsetAge"
    assert mds_guide.feature("sex_male").fhir.positive == "male"
    genes = [f for f in mds_guide.features if f.group == "genomic" and f.name != "TP53multi"]
    assert len(genes) == 54
    for f in genes:
        assert f.fhir.gene == (f.name if f.name != "MLL_PTD" else "KMT2A")  # KMT2A partial tandem duplication
        assert f.fhir.coding.code == "69548-6"
    assert mds_guide.feature("TP53multi").fhir.coding.code == "tp53-multi-hit"
    assert mds_guide.feature("TP53").fhir.hgnc == "HGNC:11998"
    assert mds_guide.feature("SF3B1").fhir.hgnc == "HGNC:10768"


def test_hgnc_table_is_one_to_one():
    table = term.hgnc_table()
    assert len(table) >= 80
    assert len(set(table.values())) == len(table)
    assert all(i.startswith("HGNC:") and i[5:].isdigit() for i in table.values())
    assert table["DNMT3A"] == "HGNC:2978" and table["ASXL1"] == "HGNC:18318"


def test_a_guide_without_fhir_loads_but_cannot_be_harmonised(tmp_path):
    g = _guide(tmp_path, "- {name: hb, kind: continuous, group: clinical, unit: g/dL, range: [3, 20]}\n")
    with pytest.raises(GuideError, match=r"\['hb'\] have no 'fhir' block"):
        require_fhir(g)


def test_minimal_guide_with_codes(tmp_path):
    g = _guide(
        tmp_path,
        """\
        - name: hb
          kind: continuous
          group: clinical
          unit: g/dL
          range: [3, 20]
          fhir: {resource: Observation, system: "http://loinc.org", code: "718-7"}
        """,
    )
    require_fhir(g)
    assert g.feature("hb").fhir.coding.code == "718-7"


BAD = {
    "unknown gene": (
        "- {name: FOO1, kind: binary, group: genomic, fhir: {resource: Observation, gene: FOO1}}",
        "FOO1.*not in the shipped HGNC table",
    ),
    "wrong HGNC id": (
        "- {name: TP53, kind: binary, group: genomic,"
        ' fhir: {resource: Observation, gene: TP53, hgnc: "HGNC:1"}}',
        "HGNC id 'HGNC:1' differs from the table's 'HGNC:11998'",
    ),
    "malformed LOINC": (
        "- {name: hb, kind: continuous, group: clinical, unit: g/dL, range: [3, 20],"
        ' fhir: {resource: Observation, system: "http://loinc.org", code: "718"}}',
        "LOINC code '718' is malformed",
    ),
    "system not a URI": (
        "- {name: hb, kind: continuous, group: clinical, unit: g/dL, range: [3, 20],"
        " fhir: {resource: Observation, system: loinc, code: 718-7}}",
        "'system' must be a URI",
    ),
    "missing code": (
        "- {name: hb, kind: continuous, group: clinical, unit: g/dL, range: [3, 20],"
        ' fhir: {resource: Observation, system: "http://loinc.org"}}',
        "'code' is missing",
    ),
    "unknown resource": (
        "- {name: hb, kind: continuous, group: clinical, unit: g/dL, range: [3, 20],"
        ' fhir: {resource: Specimen, system: "http://loinc.org", code: 718-7}}',
        "'resource' is 'Specimen'",
    ),
    "gender without positive": (
        "- {name: sex_male, kind: binary, group: clinical, fhir: {resource: Patient, element: gender}}",
        "positive: male",
    ),
    "onsetAge in months": (
        "- {name: age, kind: continuous, group: clinical, unit: mo, range: [0, 1200],"
        " fhir: {resource: Condition, element: onsetAge}}",
        "onsetAge needs unit 'a'",
    ),
    "continuous procedure": (
        "- {name: sct, kind: continuous, group: treatment, unit: '1', range: [0, 1],"
        ' fhir: {resource: Procedure, system: "http://snomed.info/sct", code: "234336002"}}',
        "Procedure features must be binary",
    ),
    "unknown fhir field": (
        "- {name: hb, kind: continuous, group: clinical, unit: g/dL, range: [3, 20],"
        ' fhir: {resource: Observation, system: "http://loinc.org", code: 718-7, units: g}}',
        r"unknown field\(s\) \['units'\]",
    ),
    "one code, two features": (
        "- {name: hb, kind: continuous, group: clinical, unit: g/dL, range: [3, 20],"
        ' fhir: {resource: Observation, system: "http://loinc.org", code: 718-7}}\n'
        "- {name: hb2, kind: continuous, group: clinical, unit: g/dL, range: [3, 20],"
        ' fhir: {resource: Observation, system: "http://loinc.org", code: 718-7}}',
        "also used by 'hb'",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_fhir_blocks_fail_naming_file_feature_and_field(tmp_path, case):
    features, message = BAD[case]
    with pytest.raises(GuideError, match=message) as err:
        _guide(tmp_path, features + "\n")
    assert "toy.yaml" in str(err.value)


def test_bad_condition_code_fails(tmp_path):
    head = HEAD.replace("code: D46.9}", 'code: ""}')
    with pytest.raises(GuideError, match="fhir.condition: field 'code'"):
        _guide(tmp_path, "- {name: x, kind: binary, group: clinical}\n", head=head)


def test_unit_conversions_are_exact_for_source_precision():
    mul, div = term.conversion("g/L", "g/dL")
    assert 97.0 * mul / div == 9.7  # 97 * 0.1 would give 9.700000000000001
    assert term.conversion("/uL", "10*9/L") == (1.0, 1000.0)
    assert term.conversion("g/dL", "g/dL") == (1.0, 1.0)
    assert term.conversion("mmol/L", "g/dL") is None
