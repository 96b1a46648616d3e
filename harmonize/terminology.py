"""Code systems, the shipped HGNC gene table and UCUM unit conversions.

Everything here is offline: the HGNC table ships in ``harmonize/data`` and the
unit table below names every conversion the pipeline may apply, so a unit it
does not know fails with its name instead of being guessed. Code-system URIs
follow the FHIR terminology registry (LOINC, SNOMED CT, ICD-10, UCUM, HGNC as
used by the HL7 Genomics Reporting IG); features without a certain standard
code use the project's own code system, whose URI is stated here.
"""

from __future__ import annotations

import functools
from pathlib import Path

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
UCUM = "http://unitsofmeasure.org"
HGNC = "http://www.genenames.org/geneId"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# Project code system: features (and their answer lists) that have no code we
# could vouch for in a standard system, e.g. the IPSS-R cytogenetic category.
PROJECT = "https://fedjax-rhd.org/fhir/CodeSystem/feature"
PATIENT_ID_SYSTEM = "https://fedjax-rhd.org/fhir/NamingSystem/source-patient-id"

# HL7 Genomics Reporting IG: variant observation, gene studied, region studied (panel).
LOINC_VARIANT = "69548-6"
LOINC_GENE_STUDIED = "48018-6"
LOINC_REGION_STUDIED = "53041-0"
LOINC_PRESENT = "LA9633-4"
# Overall survival time from diagnosis (death or last follow-up): no LOINC we trust.
OS_TIME_CODE = "overall-survival-time"

KNOWN_SYSTEMS: tuple[str, ...] = (LOINC, SNOMED, ICD10, HGNC, PROJECT)

HGNC_TABLE = Path(__file__).resolve().parent / "data" / "hgnc_genes.tsv"


@functools.cache
def hgnc_table() -> dict[str, str]:
    """Approved HGNC symbol -> HGNC id (``"TP53" -> "HGNC:11998"``) from the shipped table."""
    table: dict[str, str] = {}
    for lineno, line in enumerate(HGNC_TABLE.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#") or line.startswith("symbol\t"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1].startswith("HGNC:"):
            raise ValueError(f"{HGNC_TABLE}:{lineno}: expected 'SYMBOL<TAB>HGNC:<n>', got {line!r}")
        table[parts[0]] = parts[1]
    return table


def check_gene(symbol: str, hgnc_id: str | None = None) -> str:
    """Return the HGNC id of an approved symbol; fail if unknown or if ``hgnc_id`` disagrees.

    Raises:
        ValueError: naming the symbol and, for a mismatch, both ids.
    """
    table = hgnc_table()
    if symbol not in table:
        raise ValueError(
            f"gene symbol {symbol!r} is not in the shipped HGNC table {HGNC_TABLE} "
            "(use the approved symbol, or add the gene's row to the table)"
        )
    if hgnc_id is not None and hgnc_id != table[symbol]:
        raise ValueError(f"gene {symbol!r}: HGNC id {hgnc_id!r} differs from the table's {table[symbol]!r}")
    return table[symbol]


# (from unit, to unit) -> (multiplier, divisor): value_to = value_from * mul / div.
# A multiplier and a divisor (instead of one factor) keep conversions such as
# g/L -> g/dL exact for values reported at the source's precision (97 / 10 is
# the double nearest 9.7; 97 * 0.1 is not).
_CONVERSIONS: dict[tuple[str, str], tuple[float, float]] = {
    ("g/L", "g/dL"): (1.0, 10.0),
    ("g/dL", "g/L"): (10.0, 1.0),
    ("mg/dL", "g/dL"): (1.0, 1000.0),
    ("10*3/uL", "10*9/L"): (1.0, 1.0),
    ("/uL", "10*9/L"): (1.0, 1000.0),
    ("/nL", "10*9/L"): (1.0, 1.0),
    ("10*9/L", "10*3/uL"): (1.0, 1.0),
    ("10*9/L", "/uL"): (1000.0, 1.0),
    ("1", "%"): (100.0, 1.0),
    ("%", "1"): (1.0, 100.0),
    ("d", "a"): (1.0, 365.25),
    ("wk", "a"): (7.0, 365.25),
    ("mo", "a"): (1.0, 12.0),
    ("a", "d"): (365.25, 1.0),
    ("a", "mo"): (12.0, 1.0),
}

# Conversions that depend on the analyte (molar <-> mass needs its molar mass),
# keyed by (analyte code, from, to). Haemoglobin (LOINC 718-7) per haem monomer,
# 16.114 g/mmol: 1 mmol/L = 1.6114 g/dL.
_ANALYTE_CONVERSIONS: dict[tuple[str, str, str], tuple[float, float]] = {
    ("718-7", "mmol/L", "g/dL"): (16.114, 10.0),
    ("718-7", "g/dL", "mmol/L"): (10.0, 16.114),
}

KNOWN_UNITS: frozenset[str] = frozenset(u for pair in _CONVERSIONS for u in pair) | {
    "mmol/L",
    "kg",
    "cm",
    "mg/L",
    "U/L",
}


def conversion(from_unit: str, to_unit: str, analyte: str | None = None) -> tuple[float, float] | None:
    """``(multiplier, divisor)`` converting ``from_unit`` to ``to_unit``; ``None`` if unknown.

    The identity is ``(1.0, 1.0)``. ``analyte`` (the feature's code, e.g. LOINC
    ``718-7``) enables conversions that hold for one analyte only (mmol/L of haemoglobin).
    """
    if from_unit == to_unit:
        return (1.0, 1.0)
    if analyte is not None and (analyte, from_unit, to_unit) in _ANALYTE_CONVERSIONS:
        return _ANALYTE_CONVERSIONS[(analyte, from_unit, to_unit)]
    return _CONVERSIONS.get((from_unit, to_unit))
