"""Bring any table: starter guides, centres from a column, sentinels, derived flags, definitions.

Every expected value is written out by hand from the small tables in each test.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from harmonize.cli import main as harmonize_main
from harmonize.datasets import build_dataset
from harmonize.errors import InputError, NoUsableRows
from harmonize.guide import GUIDE_PATH_ENV, GuideError, load_guide
from harmonize.mapped_source import mapped_source
from harmonize.mapping import MappingError
from harmonize.registry import DatasetSpec
from harmonize.tables import SourceError
from tests.conftest import ROOT

P = "https://fedjax-rhd.org/fhir/CodeSystem/feature"
GUIDE = f"""
use_case: toy
version: "0.1.0"
fhir:
  condition: {{system: "http://hl7.org/fhir/sid/icd-10", code: C92.0}}
endpoint:
  time: {{unit: a}}
features:
  - {{name: age, kind: continuous, group: clinical, unit: a, range: [0, 110],
      definition: "age at diagnosis", fhir: {{resource: Condition, element: onsetAge}}}}
  - {{name: hb, kind: continuous, group: clinical, unit: g/dL, range: [2, 25],
      fhir: {{resource: Observation, system: "http://loinc.org", code: "718-7"}}}}
  - {{name: NPM1, kind: binary, group: genomic, definition: "1 = NPM1 mutated",
      fhir: {{resource: Observation, gene: NPM1, hgnc: "HGNC:7910"}}}}
  - {{name: FLT3_ITD, kind: binary, group: genomic, definition: "1 = FLT3 internal tandem duplication",
      fhir: {{resource: Observation, system: "{P}", code: flt3-itd}}}}
  - {{name: t_8_21, kind: binary, group: cytogenetic,
      fhir: {{resource: Observation, system: "{P}", code: t-8-21}}}}
  - {{name: normal_karyotype, kind: binary, group: cytogenetic,
      fhir: {{resource: Observation, system: "{P}", code: normal-karyotype}}}}
  - {{name: kmt2a_r, kind: binary, group: cytogenetic,
      fhir: {{resource: Observation, system: "{P}", code: kmt2a}}}}
"""


def _write(folder: Path, table: str, mapping: str, name: str = "t.csv") -> tuple[object, Path]:
    (folder / "toy.yaml").write_text(GUIDE, encoding="utf-8")
    (folder / name).write_text(table, encoding="utf-8")
    (folder / "m.yaml").write_text(mapping, encoding="utf-8")
    return load_guide(folder / "toy.yaml"), folder / "m.yaml"


def _records(guide, mapping: Path) -> dict[str, list]:
    src = mapped_source(guide, mapping)
    return {c: list(src.records(c)) for c in src.centres()}, src


def test_walkthrough_from_an_empty_folder_registers_a_dataset(tmp_path, monkeypatch, capsys):
    # docs/user_csv.md, first section: nothing but the table in a fresh folder, no edit.
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "docs" / "examples" / "my_cohort.csv", "my_cohort.csv")
    harmonize_main(["guide", "new", "--from", "my_cohort.csv"])
    guide = load_guide("my_cohort.guide.yaml")
    kinds = {f.name: (f.kind, f.group) for f in guide.features}
    assert kinds == {
        "age": ("continuous", "clinical"),
        "sex": ("binary", "clinical"),
        "hb": ("continuous", "clinical"),
        "wbc": ("continuous", "clinical"),
        "npm1": ("binary", "genomic"),  # HGNC symbol: a Genomics Reporting variant
        "flt3_itd": ("binary", "genomic"),  # FLT3 + an allelic state: a project code
        "cyto": ("categorical", "clinical"),
    }
    assert guide.feature("cyto").levels == ("adverse", "favourable", "normal")
    assert guide.feature("npm1").fhir.gene == "NPM1" and guide.feature("sex").fhir.element == "gender"
    assert guide.feature("hb").valid_range == (0.0, 20.0)  # observed 7.9..13.4 -> [0, 20]
    assert all(f.definition for f in guide.features)
    harmonize_main(
        ["map", "--use-case", "my_cohort.guide.yaml", "--mapping", "my_cohort.mapping.yaml"]
        + ["--out", "data/datasets/my-cohort", "--quiet", "--strict"]
    )
    assert "note" not in capsys.readouterr().out.split("unmapped columns:")[1]  # left out on purpose
    raw = pl.read_csv("my_cohort.csv", null_values="NA")
    for centre in ("north", "south"):
        got = pl.read_parquet(f"data/datasets/my-cohort/tables/{centre}.parquet").sort("patient_id")
        want = raw.filter(pl.col("hospital") == centre).sort("patient")
        assert got["patient_id"].to_list() == want["patient"].to_list()
        assert got["time"].to_list() == pytest.approx([m / 12 for m in want["os_months"]], rel=1e-12)
        assert got["event"].to_list() == [int(s) for s in want["status"]]  # 0.0/1.0 cells
        assert got["flt3_itd"].to_list() == [int(v) for v in want["flt3_itd"]]  # TRUE/FALSE cells
        assert got["sex"].to_list() == [int(s == "M") for s in want["sex"]]
        assert got["hb"].to_list() == want["hb"].to_list()  # NA stays missing
    # The use-case config lives in the user's folder too: Hydra's search path finds it.
    Path("conf/use_case").mkdir(parents=True)
    Path("conf/use_case/my_cohort.yaml").write_text(
        "defaults: [use_case_schema, _self_]\nname: my_cohort\nguide: my_cohort.guide.yaml\nsource: csv\n"
        "n_patients: 0\nmapping: [my_cohort.mapping.yaml]\ndataset: my-cohort\n"
    )
    from fedjax_rhd.config import run_config
    from fedjax_rhd.sources import load_use_case
    from tests.conftest import compose

    cfg = compose(["use_case=my_cohort", f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "data_root=data"])
    c = run_config(cfg)
    cohort = load_use_case(c.use_case, seed_data=0, data_root=c.data_root, real_data_root=c.real_data_root)
    card = json.loads(Path("data/datasets/my-cohort/dataset.json").read_text())
    assert cohort.card["id"] == card["id"] and cohort.table.height == 12  # the registered dataset, reused


def test_starter_guesses_endpoint_codes_units_and_refuses_to_overwrite(tmp_path):
    from harmonize.starter import infer, nice_ceiling, write_starter

    assert [nice_ceiling(x) for x in (0.3, 1.0, 1.2, 13.4, 130.5, 0.0)] == [0.5, 1.0, 2.0, 20.0, 200.0, 1.0]
    (tmp_path / "x.tsv").write_text(
        "ID\tOS_days\tVital\tRisk\tdup\n1\t300\tDead\tlow\t5\n2\t20\tAlive\thigh\t5\n3\t400\tDead\tlow\t6\n"
    )
    s = infer(tmp_path / "x.tsv")
    assert (s.patient_id, s.time.name, s.time_unit, s.time_unit_guessed) == ("ID", "OS_days", "d", False)
    assert s.event.name == "Vital" and s.event_codes == {"Alive": 0, "Dead": 1}
    assert [(f["name"], f["kind"]) for f in s.features] == [("Risk", "categorical"), ("dup", "continuous")]
    write_starter(tmp_path / "x.tsv")
    with pytest.raises(Exception, match="exists; pass --force"):
        write_starter(tmp_path / "x.tsv")
    (tmp_path / "y.csv").write_text("a;b;c\n1;2;x\n2;3;y\n")
    s = infer(tmp_path / "y.csv")
    assert s.delimiter == ";" and s.patient_id is None and s.event is None and s.time is None
    (tmp_path / "z.csv").write_text("a\tb\n1\t2\n")  # a "CSV" written with tabs keeps its delimiter
    assert infer(tmp_path / "z.csv").delimiter == "\t" and infer(tmp_path / "x.tsv").delimiter is None


@pytest.mark.parametrize(
    ("cells", "codes", "events"),
    [
        (("0.0", "1.0", "1"), "", [0, 1, 1]),
        (("FALSE", "TRUE", "true"), "", [0, 1, 1]),
        (("alive", "dead", "Dead"), ", codes: {alive: 0, dead: 1}", [0, 1, 1]),
    ],
)
def test_event_cells_written_as_floats_booleans_or_words_are_events(tmp_path, cells, codes, events):
    rows = "".join(f"p{k},{k + 1},{c}\n" for k, c in enumerate(cells))
    guide, m = _write(
        tmp_path,
        "id,t,ev\n" + rows,
        f"file: t.csv\npatient_id: id\ntime: {{column: t, unit: a}}\nevent: {{column: ev{codes}}}\n",
    )
    recs, _ = _records(guide, m)
    assert [r.event for r in recs["t"]] == events and not any(r.issues for r in recs["t"])


def test_an_event_that_is_not_0_or_1_is_quarantined_naming_it(tmp_path):
    guide, m = _write(
        tmp_path, "id,t,ev\np,1,2.0\n", "file: t.csv\npatient_id: id\ntime: {column: t}\nevent: ev\n"
    )
    (rec,) = _records(guide, m)[0]["t"]
    assert rec.event is None and rec.issues[0].reason == "event '2.0' is not 0/1 (nor a mapped code)"


def test_missing_sentinels_global_and_per_column_are_counted(tmp_path):
    table = "id,t,ev,hb,npm\na,1,1,89,1\nb,2,.,9.5,unk\nc,3,0,89.0,-1\nd,4,0,-1,0\n"
    mapping = (
        'file: t.csv\npatient_id: id\nmissing: [".", 89, "unk"]\ntime: {column: t}\nevent: ev\n'
        "features:\n  hb: {column: hb, unit: g/dL}\n  NPM1: {column: npm, missing: [-1]}\n"
    )
    guide, m = _write(tmp_path, table, mapping)
    recs, src = _records(guide, m)
    got = [(r.values["hb"], r.values["NPM1"], r.event) for r in recs["t"]]
    # hb 89 and 89.0 are the sentinel 89; -1 is NPM1's sentinel only, so hb -1 is out of range later.
    assert got == [(None, 1, 1), (9.5, None, None), (None, None, 0), (-1.0, 0, 0)]
    assert recs["t"][1].issues[0].reason == "event is missing"
    sentinels = src.notes("t")["missing_sentinels"]
    assert sentinels["global"] == [".", "89", "unk"]
    assert sentinels["set_missing"] == [
        {"feature": "NPM1", "column": "npm", "sentinel": "-1", "cells": 1},
        {"feature": "NPM1", "column": "npm", "sentinel": "unk", "cells": 1},
        {"feature": "event", "column": "ev", "sentinel": ".", "cells": 1},
        {"feature": "hb", "column": "hb", "sentinel": "89", "cells": 2},
    ]


def test_a_sentinel_that_is_also_a_code_is_refused_naming_the_key(tmp_path):
    mapping = (
        "file: t.csv\npatient_id: id\nmissing: [9]\ntime: {column: t}\nevent: ev\n"
        'features:\n  NPM1: {column: npm, codes: {"9": 1, "0": 0}}\n'
    )
    guide, m = _write(tmp_path, "id,t,ev,npm\n", mapping)
    with pytest.raises(MappingError, match=r"row 7 \(line\), field 'features.NPM1.codes.9'.*also a missing"):
        mapped_source(guide, m)


def test_derived_flags_any_none_all_of_columns_and_values(tmp_path):
    table = (
        "id,t,ev,t821,inv16,m7,fusions\n"
        "a,1,1,0,0,0,KMT2A::AFF1\n"  # no lesion: normal
        "b,1,1,1,0,0,\n"  # t(8;21): not normal; no fusion call: unknown
        "c,1,1,0,NA,0,MLLT3::KMT2A; BCR::ABL1\n"  # one lesion unknown, none found: undetermined
        "d,1,1,0,NA,1,KMT2A::MLLT10\n"  # -7 found: not normal whatever inv16 is
    )
    mapping = (
        "file: t.csv\npatient_id: id\ntime: {column: t}\nevent: ev\nfeatures:\n"
        "  normal_karyotype: {none_of: [t821, inv16, m7]}\n"
        '  kmt2a_r: {column: fusions, any_of: ["KMT2A::AFF1", "kmt2a::mllt10"], separator: ";"}\n'
        "  t_8_21: {all_of: [t821]}\n"
    )
    guide, m = _write(tmp_path, table, mapping)
    recs, src = _records(guide, m)
    got = [(r.values["normal_karyotype"], r.values["kmt2a_r"], r.values["t_8_21"]) for r in recs["t"]]
    # MLLT3::KMT2A is t(9;11), not listed: 0 (ELN 2022 counts it apart from other KMT2A fusions).
    assert got == [(1, 1, 0), (0, None, 1), (None, 0, 0), (0, 1, 0)]
    derived = src.notes("t")["derived_features"]
    assert derived["normal_karyotype"] == {
        "rule": "none_of of the 0/1 columns ['t821', 'inv16', 'm7']",
        "positive": 1,
        "negative": 2,
        "undetermined": 1,
    }
    assert derived["kmt2a_r"]["positive"] == 2 and "separator" not in derived["kmt2a_r"]["rule"]
    assert src.notes("t")["unmapped_columns"] == []


def test_a_derived_rule_on_a_continuous_feature_is_refused(tmp_path):
    mapping = "file: t.csv\npatient_id: id\ntime: {column: t}\nevent: ev\nfeatures:\n  hb: {any_of: [a]}\n"
    guide, m = _write(tmp_path, "id,t,ev\n", mapping)
    with pytest.raises(MappingError, match="features.hb.*make a 0/1 flag; 'hb' is continuous"):
        mapped_source(guide, m)


def test_one_table_yields_a_centre_per_value_of_its_centre_column(tmp_path):
    table = "id,site,t,ev\na,B,1,1\nb,A,2,0\nc,B,3,1\n"
    mapping = "file: t.csv\ncentre: {column: site, codes: {A: alpha}}\npatient_id: id\ntime: {column: t}\n"
    mapping += "event: ev\n"
    guide, m = _write(tmp_path, table, mapping)
    recs, src = _records(guide, m)
    assert {c: [(r.patient_id, r.row) for r in rs] for c, rs in recs.items()} == {
        "B": [("a", 1), ("c", 3)],
        "alpha": [("b", 2)],
    }
    assert src.notes("B")["centre_from_column"] == "site" and src.notes("B")["unmapped_columns"] == []
    (tmp_path / "t.csv").write_text("id,site,t,ev\na,B,1,1\nb,,2,0\n")
    with pytest.raises(SourceError, match=r"t.csv: row 2 \(line 3\), field 'site': no centre"):
        mapped_source(guide, m)
    (tmp_path / "t.csv").write_text("id,site,t,ev\n")
    with pytest.raises(
        NoUsableRows, match=r"row 1 \(header\), field '\(records\)': .* column 'site' names no"
    ):
        mapped_source(guide, m)


def test_an_r_table_whose_header_is_one_field_short_maps_by_name(tmp_path):
    # write.table(df, sep="\t"): row names in every row, no header field for them.
    table = "id\tt\tev\n1\tp1\t2.5\t1\n2\tp2\t3\t0\n"
    mapping = "file: t.tsv\npatient_id: id\ntime: {column: t}\nevent: ev\n"
    guide, m = _write(tmp_path, table, mapping, name="t.tsv")
    recs, src = _records(guide, m)
    assert [(r.patient_id, r.time, r.event) for r in recs["t"]] == [("p1", 2.5, 1), ("p2", 3.0, 0)]
    assert "row names" in src.notes("t")["table"]["row_names"]


def test_reference_columns_give_an_external_cohort_its_clinical_score(tmp_path):
    table = "id,t,ev,ELN,vaf\na,1,1,Adverse,0.31\nb,2,0,Favorable,\nc,3,1,Intermediate,NA\n"
    mapping = (
        "file: t.csv\npatient_id: id\ntime: {column: t}\nevent: ev\n"
        "reference:\n  clinical_score: {column: ELN, codes: {Favorable: 0, Intermediate: 1, Adverse: 2}}\n"
        "  source_eln2022: ELN\n  score_tp53_vaf: vaf\n"
        'provenance: {clinical_score: "ELN 2022 (the source\'s own)"}\n'
    )
    guide, m = _write(tmp_path, table, mapping)
    spec = DatasetSpec(
        name="ext", guide=str(tmp_path / "toy.yaml"), source="csv", options=(("mapping", [str(m)]),)
    )
    card = build_dataset(spec, guide, tmp_path / "ds")
    ref = pl.read_parquet(tmp_path / "ds" / "reference.parquet")
    assert ref.to_dicts() == [
        {"patient_id": "a", "clinical_score": 2.0, "source_eln2022": "Adverse", "score_tp53_vaf": 0.31},
        {"patient_id": "b", "clinical_score": 0.0, "source_eln2022": "Favorable", "score_tp53_vaf": None},
        {"patient_id": "c", "clinical_score": 1.0, "source_eln2022": "Intermediate", "score_tp53_vaf": None},
    ]
    from fedjax_rhd.sources.scores import clinical_scores

    table_df = pl.DataFrame({"patient_id": ["c", "a"]})
    name, scores = clinical_scores(table_df, guide, card=card, reference=ref)
    assert name == "ELN 2022 (the source's own)" and scores["clinical_score"].to_list() == [1.0, 2.0]


def test_a_reference_column_must_carry_a_reference_prefix(tmp_path):
    mapping = "file: t.csv\npatient_id: id\ntime: {column: t}\nevent: ev\nreference:\n  eln: ELN\n"
    guide, m = _write(tmp_path, "id,t,ev\n", mapping)
    with pytest.raises(MappingError, match="field 'reference.eln'.*clinical_score"):
        mapped_source(guide, m)


def test_report_lists_guide_features_left_out_and_a_mapped_flt3_itd_is_no_gene_without_column(tmp_path):
    table = "id,t,ev,itd,mut_NPM1\na,1,1,1,0\nb,2,0,0,1\n"
    mapping = (
        "file: t.csv\npatient_id: id\ntime: {column: t}\nevent: ev\n"
        "features:\n  FLT3_ITD: itd\ngenes: {prefix: mut_}\n"
    )
    guide, m = _write(tmp_path, table, mapping)
    spec = DatasetSpec(name="q", guide="toy", source="csv", options=(("mapping", [str(m)]),))
    build_dataset(spec, guide, tmp_path / "ds")
    report = json.loads((tmp_path / "ds" / "quality" / "t.json").read_text())
    assert report["source"]["guide_genes_without_a_column"] == []  # FLT3_ITD has the column itd
    assert report["source"]["guide_features_not_mapped"] == [
        "age", "hb", "t_8_21", "normal_karyotype", "kmt2a_r"
    ]  # fmt: skip
    assert report["features_without_definition"] == ["hb", "t_8_21", "normal_karyotype", "kmt2a_r"]
    md = (tmp_path / "ds" / "quality" / "t.md").read_text()
    assert "| FLT3_ITD | genomic | 2 | 0 | 100.0% | 1 = FLT3 internal tandem duplication |" in md
    assert "| hb | clinical | 0 | 2 | 0.0% | (none in the guide) |" in md
    assert "4 feature(s) have no definition in the guide" in md
    assert "Guide features the mapping leaves out (missing for every patient) (5): age, hb," in md


def test_guide_definitions_are_text_and_shown(tmp_path, capsys):
    (tmp_path / "g.yaml").write_text(GUIDE.replace('definition: "age at diagnosis"', "definition: [1]"))
    with pytest.raises(GuideError, match="feature 'age': field 'definition' must be text"):
        load_guide(tmp_path / "g.yaml")
    harmonize_main(["guide", "aml_beat"])
    out = capsys.readouterr().out
    assert "= 1 = a KMT2A (11q23) rearrangement other than t(9;11)" in out and "no definition" not in out
    (tmp_path / "toy.yaml").write_text(GUIDE)
    harmonize_main(["guide", str(tmp_path / "toy.yaml")])
    out = capsys.readouterr().out
    assert "  NPM1           binary      genomic     Observation http://loinc.org|69548-6 gene NPM1" in out
    assert "= 1 = NPM1 mutated" in out
    assert out.strip().endswith("4 of 7 features have no definition: hb, t_8_21, normal_karyotype, kmt2a_r")


@pytest.mark.parametrize("use_case", ["aml", "aml_beat", "mds_iwgpm", "cmml_iwgpm"])
def test_shipped_real_and_aml_guides_define_every_genomic_and_cytogenetic_feature(use_case):
    guide = load_guide(use_case)
    undefined = [f.name for f in guide.features if f.group in ("genomic", "cytogenetic") and not f.definition]
    assert undefined == []
    if not use_case.startswith("aml"):
        return
    # ELN 2022 (Döhner 2022, Table 6): t(9;11) is intermediate, other KMT2A rearrangements adverse.
    assert "other than t(9;11)" in guide.feature("kmt2a_r").definition
    assert (
        "ITD is the" in guide.feature("FLT3").definition
        or "FLT3-ITD is the" in guide.feature("FLT3").definition
    )


def test_a_named_guide_is_found_on_the_users_search_path(tmp_path, monkeypatch):
    (tmp_path / "toy.yaml").write_text(GUIDE)
    with pytest.raises(FileNotFoundError, match="HARMONIZE_GUIDES"):
        load_guide("toy")
    monkeypatch.setenv(GUIDE_PATH_ENV, f"/nonexistent:{tmp_path}")
    assert load_guide("toy").path == str(tmp_path / "toy.yaml")
    assert load_guide("mds").use_case == "mds"  # the shipped guides stay found
    from fedjax_rhd.guide_cache import cached_guide

    assert cached_guide("toy").use_case == "toy"


def test_eln_2022_on_an_external_cohort_takes_inputs_the_guide_lacks_from_reference_columns():
    # ELN 2022 (Döhner H, et al. Blood 2022;140:1345-77, Table 6), by hand per row.
    from fedjax_rhd.scores import eln
    from fedjax_rhd.sources.scores import clinical_scores

    guide = load_guide("aml_beat")  # no CEBPA_bZIP, no ZRSR2, no TP53 VAF among its features
    ids = ["a", "b", "c", "d", "e", "f", "g", "h"]
    zeros = {k: [0] * 8 for k in eln.ELN2022_INPUTS if k in guide.feature_names}
    zeros["t_8_21"][0] = 1  # a: t(8;21): favourable
    zeros["NPM1"][1] = 1  # b: NPM1 without FLT3-ITD: favourable
    zeros["TP53"][2] = zeros["TP53"][3] = 1  # c: VAF 5%: not counted, intermediate; d: VAF 30%: adverse
    zeros["kmt2a_r"][5] = 1  # f: KMT2A rearranged (not t(9;11)): adverse
    zeros["ASXL1"][7] = None  # h: a myelodysplasia-related gene unknown: adverse or intermediate
    table = pl.DataFrame({"patient_id": ids, **zeros})
    reference = pl.DataFrame(
        {
            "patient_id": list(reversed(ids)),  # joined by id, not by order
            "score_TP53_vaf": list(reversed([0.0, 0.0, 0.05, 0.3, 0.0, 0.0, 0.0, 0.0])),
            "score_CEBPA_bZIP": list(reversed([0, 0, 0, 0, 1, 0, 0, 0])),  # e: bZIP in frame: favourable
            "score_ZRSR2": list(reversed([0, 0, 0, 0, 0, 0, 1, 0])),  # g: ZRSR2: adverse
        }
    )
    name, scores = clinical_scores(table, guide, reference=reference)
    assert name == "ELN 2022" and scores["patient_id"].to_list() == ids
    assert scores["clinical_score"].to_list() == [0.0, 0.0, 1.0, 2.0, 0.0, 2.0, 2.0, None]
    assert clinical_scores(table, guide, reference=reference.drop("score_ZRSR2")) == (
        "",
        None,
    )  # input missing


def test_starter_renames_centres_whose_names_cannot_name_files(tmp_path):
    from harmonize.starter import write_starter

    (tmp_path / "c.csv").write_text("id,site,time,event\na,St. Mary's,1,1\nb,Q2,2,0\nc,St. Mary's,3,0\n")
    with pytest.raises(InputError, match=r"c.csv: row 1 \(header\), field '\(columns\)': no column is left"):
        write_starter(tmp_path / "c.csv")
    (tmp_path / "c.csv").write_text(
        "id,site,time,event,x\na,St. Mary's,1,1,0\nb,Q2,2,0,1\nc,St. Mary's,3,0,1\n"
    )
    guide_path, mapping_path, _ = write_starter(tmp_path / "c.csv")
    assert '{column: "site", codes: {"St. Mary\'s": "St_Mary_s"}}' in mapping_path.read_text()
    src = mapped_source(load_guide(guide_path), mapping_path)
    assert src.centres() == ("Q2", "St_Mary_s")
    assert [r.patient_id for r in src.records("St_Mary_s")] == ["a", "c"]
