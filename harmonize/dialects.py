"""Hospital dialects: the simulated cohort exported per centre the way real hospitals differ.

Each dialect is a declarative mapping (:mod:`harmonize.mapping`) plus what the
writer needs to produce a matching file (date origin, title rows above an
Excel header). The writer splits a canonical table over ``n_centres`` centres
(seeded), writes each centre's export in the dialect ``DIALECTS[k % 3]`` and
the mapping YAML beside it; reading the exports back goes through the same
:class:`~harmonize.mapped_source.MappedSource` a user's CSV does. The dialects differ
in everything the issue names:

========  ==========================  ==========================  =========================
          ``en_csv``                  ``de_csv``                  ``fr_xlsx``
========  ==========================  ==========================  =========================
format    CSV, ``,``                  CSV, ``;``, decimal comma   XLSX, two title rows
names     English                     German                      French (UTF-8 accents)
Hb        g/dL                        g/L                         mmol/L
counts    10^9/L                      per µL                      10^3/µL
sex       M/F                         1/2 (1 = male)              H/F
time      days                        diagnosis + last contact    months
                                      dates (dd.mm.yyyy)
event     DEAD/ALIVE                  1/0                         décédé/vivant
genes     wide 0/1 matrix ``mut_``    long variant list with      wide matrix ``mut_``
                                      HGVS and VAF (second file)  with oui/non
========  ==========================  ==========================  =========================
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from harmonize import terminology as term
from harmonize.guide import Guide

_CYTO = ("very_good", "good", "intermediate", "poor", "very_poor")

DIALECTS: dict[str, dict[str, Any]] = {
    "en_csv": {
        "format": "csv",
        "columns": {"age": "Age", "sex_male": "Sex", "hb": "Hemoglobin", "plt": "Platelets", "anc": "ANC"},
        "units": {"hb": "g/dL", "plt": "10*9/L", "anc": "10*9/L", "bm_blasts": "%", "age": "a"},
        "codes": {
            "sex_male": {"M": 1, "F": 0},
            "ipssr_cyto": dict(
                zip(("Very good", "Good", "Intermediate", "Poor", "Very poor"), _CYTO, strict=True)
            ),
        },
        "prefix": "",
        "time": {"column": "OS_days", "unit": "d"},
        "event": {"column": "Status", "codes": {"DEAD": 1, "ALIVE": 0}},
        "patient_id": "PatientID",
        "genes": {"prefix": "mut_"},
        "na": "NA",
    },
    "de_csv": {
        "format": "csv",
        "delimiter": ";",
        "decimal_comma": True,
        "columns": {
            "age": "Alter",
            "sex_male": "Geschlecht",
            "hb": "Haemoglobin",
            "plt": "Thrombozyten",
            "anc": "Neutrophile",
            "bm_blasts": "KM_Blasten",
            "ipssr_cyto": "Zytogenetik",
        },
        "units": {"hb": "g/L", "plt": "/uL", "anc": "/uL", "bm_blasts": "%", "age": "a"},
        "codes": {
            "sex_male": {"1": 1, "2": 0},
            "ipssr_cyto": dict(
                zip(("sehr gut", "gut", "intermediär", "schlecht", "sehr schlecht"), _CYTO, strict=True)
            ),
        },
        "prefix": "",
        "time": {"start": "Diagnosedatum", "end": "Letzter_Kontakt", "format": "%d.%m.%Y"},
        "event": {"column": "Verstorben", "codes": {"1": 1, "0": 0}},
        "patient_id": "Patienten_ID",
        "variants": True,
        "na": "",
    },
    "fr_xlsx": {
        "format": "xlsx",
        "title_rows": ["Registre MDS - export", "Centre hospitalier (fictif)"],
        "columns": {
            "age": "Âge",
            "sex_male": "Sexe",
            "hb": "Hémoglobine",
            "plt": "Plaquettes",
            "anc": "PNN",
            "bm_blasts": "Blastes_médullaires",
            "ipssr_cyto": "Cytogénétique",
        },
        "units": {"hb": "mmol/L", "plt": "10*3/uL", "anc": "10*3/uL", "bm_blasts": "%", "age": "a"},
        "codes": {
            "sex_male": {"H": 1, "F": 0},
            "ipssr_cyto": {str(k): level for k, level in enumerate(_CYTO)},
        },
        "prefix": "",
        "time": {"column": "Survie_mois", "unit": "mo"},
        "event": {"column": "Statut", "codes": {"décédé": 1, "vivant": 0}},
        "patient_id": "Identifiant",
        "genes": {"prefix": "mut_", "codes": {"oui": 1, "non": 0}},
        "na": None,
    },
}
"""Dialect name -> its declarative description (mapping + writer hints)."""

DIALECT_ORDER: tuple[str, ...] = tuple(DIALECTS)


def _inverse(codes: Mapping[str, Any] | None, value: Any) -> Any:
    if codes is None:
        return value
    for src, v in codes.items():
        if v == value:
            return src
    raise KeyError(value)


def _mapping(dialect: dict[str, Any], guide: Guide, file: str, centre: str) -> dict[str, Any]:
    """The mapping YAML (as a dict) that reads a dialect's export back."""
    features: dict[str, Any] = {}
    genes = dialect.get("genes") is not None or dialect.get("variants")
    for f in guide.features:
        if genes and f.fhir is not None and f.fhir.gene is not None:
            continue
        spec: dict[str, Any] = {"column": dialect["columns"].get(f.name, f.name)}
        if f.kind == "continuous":
            spec["unit"] = dialect["units"].get(f.name, f.unit)
        if f.name in dialect["codes"]:
            spec["codes"] = dict(dialect["codes"][f.name])
        features[f.name] = spec
    out: dict[str, Any] = {
        "file": file,
        "format": dialect["format"],
        "centre": centre,
        "patient_id": {"column": dialect["patient_id"]},
        "time": dict(dialect["time"]),
        "event": dict(dialect["event"]),
        "features": features,
    }
    if dialect.get("delimiter"):
        out["delimiter"] = dialect["delimiter"]
    if dialect.get("decimal_comma"):
        out["decimal"] = ","
    if dialect.get("title_rows"):
        out["header_row"] = len(dialect["title_rows"]) + 1
    if dialect.get("genes"):
        out["genes"] = dict(dialect["genes"])
    if dialect.get("variants"):
        out["variants"] = {
            "file": f"{Path(file).stem}_variants.tsv",
            "patient_id": "Patienten_ID",
            "gene": "Gen",
            "hgvs": "HGVSp",
            "vaf": "VAF",
            "not_tested": "nicht getestet",
        }
    return out


def _fmt_number(v: float, decimal_comma: bool) -> str:
    text = repr(float(v))
    return text.replace(".", ",") if decimal_comma else text


def _cell(f: Any, value: Any, dialect: dict[str, Any]) -> Any:
    """One canonical value as the dialect writes it (``None`` = missing)."""
    if value is None:
        return dialect["na"]
    if f.kind == "continuous":
        unit = dialect["units"].get(f.name, f.unit)
        mul, div = term.conversion(
            str(f.unit), unit, f.fhir.coding.code if f.fhir and f.fhir.coding else None
        )
        v = float(value) * mul / div
        return v if dialect["format"] == "xlsx" else _fmt_number(v, dialect.get("decimal_comma", False))
    if f.name in dialect["codes"]:
        return _inverse(dialect["codes"][f.name], value if f.kind == "categorical" else int(value))
    return int(value) if f.kind == "binary" else str(value)


def write_dialect_export(
    df: pl.DataFrame, guide: Guide, folder: Path, centre: str, dialect_name: str, seed: int
) -> Path:
    """Write one centre's rows in one dialect; return the mapping YAML's path.

    Args:
        df: canonical rows of the centre (``patient_id``, guide features, ``time``, ``event``).
        guide: the guide.
        folder: where the export and its mapping go.
        centre: the centre's name (file stem).
        dialect_name: a key of :data:`DIALECTS`.
        seed: seeds the synthetic details only a dialect has (diagnosis dates, HGVS, VAF).
    """
    dialect = DIALECTS[dialect_name]
    rng = np.random.default_rng(seed)
    suffix = "xlsx" if dialect["format"] == "xlsx" else "csv"
    file = f"{centre}.{suffix}"
    mapping = _mapping(dialect, guide, file, centre)
    gene_feats = [f for f in guide.features if f.fhir is not None and f.fhir.gene is not None]
    other = [f for f in guide.features if f.name in mapping["features"]]
    header = [mapping["patient_id"]["column"]] + [mapping["features"][f.name]["column"] for f in other]
    if dialect.get("genes"):
        header += [dialect["genes"]["prefix"] + f.name for f in gene_feats]
    t = dialect["time"]
    header += [t["column"]] if "column" in t else [t["start"], t["end"]]
    header.append(dialect["event"]["column"])
    rows: list[list[Any]] = []
    variants: list[list[Any]] = []
    for rec in df.iter_rows(named=True):
        row: list[Any] = [rec["patient_id"]] + [_cell(f, rec[f.name], dialect) for f in other]
        if dialect.get("genes"):
            codes = dialect["genes"].get("codes")
            row += [
                dialect["na"] if rec[f.name] is None else _inverse(codes, rec[f.name]) for f in gene_feats
            ]
        if dialect.get("variants"):
            for f in gene_feats:
                # The list names the HGNC gene symbol, not the feature (MLL_PTD is a KMT2A finding).
                symbol = f.fhir.gene
                if rec[f.name] is None:
                    variants.append([rec["patient_id"], symbol, "nicht getestet", ""])
                elif rec[f.name] == 1:
                    vaf = round(float(rng.uniform(0.05, 0.55)), 3)
                    variants.append(
                        [rec["patient_id"], symbol, f"p.(Arg{int(rng.integers(10, 900))}Ter)", vaf]
                    )
        if "column" in t:
            mul, div = term.conversion(guide.time_unit, t["unit"])
            v = rec["time"] * mul / div
            row.append(
                v if dialect["format"] == "xlsx" else _fmt_number(v, dialect.get("decimal_comma", False))
            )
        else:
            start = dt.date(2005, 1, 1) + dt.timedelta(days=int(rng.integers(0, 15 * 365)))
            end = start + dt.timedelta(days=max(1, round(rec["time"] * 365.25)))
            row += [start.strftime(t["format"]), end.strftime(t["format"])]
        row.append(_inverse(dialect["event"]["codes"], int(rec["event"])))
        rows.append(row)
    folder.mkdir(parents=True, exist_ok=True)
    if dialect["format"] == "xlsx":
        import openpyxl

        book = openpyxl.Workbook()
        ws = book.active
        for title in dialect["title_rows"]:
            ws.append([title])
        ws.append(header)
        for row in rows:
            ws.append(row)
        book.save(folder / file)
    else:
        with open(folder / file, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, delimiter=dialect.get("delimiter", ","))
            w.writerow(header)
            w.writerows([["" if c is None else c for c in r] for r in rows])
    if dialect.get("variants"):
        with open(folder / mapping["variants"]["file"], "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, delimiter="\t")
            w.writerow(["Patienten_ID", "Gen", "HGVSp", "VAF"])
            w.writerows(variants)
    path = folder / f"{centre}.mapping.yaml"
    path.write_text(
        f"# Mapping of centre {centre} (dialect {dialect_name}) onto guide {guide.use_case}.\n"
        + yaml.safe_dump(mapping, sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    return path


def split_centres(df: pl.DataFrame, n_centres: int, seed: int) -> list[pl.DataFrame]:
    """Rows sorted by ``patient_id``, shuffled by ``seed``, dealt round-robin over ``n_centres``."""
    if n_centres < 1:
        raise ValueError(f"n_centres must be >= 1, got {n_centres}")
    df = df.sort("patient_id")
    order = np.random.default_rng(seed).permutation(df.height)
    k = np.empty(df.height, dtype=np.int64)
    k[order] = np.arange(df.height) % n_centres
    return [df.filter(pl.Series(k == c)) for c in range(n_centres)]


def write_dialect_exports(
    df: pl.DataFrame, guide: Guide, folder: str | Path, *, n_centres: int, seed: int
) -> list[Path]:
    """Split a canonical table over centres, one dialect each; return the mapping paths."""
    folder = Path(folder)
    paths = []
    for c, part in enumerate(split_centres(df, n_centres, seed)):
        name = DIALECT_ORDER[c % len(DIALECT_ORDER)]
        centre = chr(ord("A") + c) if c < 26 else f"Z{c + 1}"  # nodes become centreA, centreB, ...
        paths.append(write_dialect_export(part, guide, folder, centre, name, seed + 1000 * (c + 1)))
    return paths
