"""Canonical patient records -> FHIR R5 resources, validated, one NDJSON per type per centre.

Per patient (ARCHITECTURE §1.1, HL7 Genomics Reporting IG STU2 for genomics):

- ``Patient`` (source id as identifier; ``gender`` where the guide maps a
  feature there; ``deceasedBoolean`` = the event),
- ``Condition`` (the guide's diagnosis code; ``onsetAge`` = age at diagnosis),
- one ``Observation`` per recorded lab (LOINC + UCUM ``valueQuantity``), finding
  (``valueCodeableConcept`` / ``valueBoolean``) and image-feature vector
  (``valueSampledData``; one resource per vector, not one per component),
- one variant ``Observation`` (69548-6, gene studied 48018-6 with its HGNC id)
  per *found* variant, plus one region-studied panel ``Observation`` (53041-0)
  listing the genes the patient was tested for, so that wild type (on the panel,
  no variant) differs from not tested (not on the panel),
- ``MedicationStatement`` / ``Procedure`` for treatment features,
- the survival time as an ``Observation`` (project code, years) next to
  ``Patient.deceasedBoolean``.

Every resource is validated with ``fhir.resources`` (R5) before it is written;
a resource that fails raises :class:`FhirValidationError` naming the centre,
patient, source row, resource, feature and field. Records that cannot become
a patient (no id, duplicate id, no valid survival endpoint) are quarantined
and counted; single bad values (a level not in the guide, a binary that is
not 0/1, a unit the pipeline cannot convert) are rejected and counted; both
go to ``ingest.json`` and from there into the quality report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson
import pydantic
from fhir.resources.condition import Condition
from fhir.resources.medicationstatement import MedicationStatement
from fhir.resources.observation import Observation
from fhir.resources.patient import Patient
from fhir.resources.procedure import Procedure

from harmonize import terminology as term
from harmonize.fhir_validate import ShapeValidator
from harmonize.guide import Feature, Guide, require_fhir
from harmonize.quality import MAX_LISTED
from harmonize.sources import RECORD_TARGETS, PatientRecord, SourceAdapter

RESOURCE_MODELS: dict[str, type[pydantic.BaseModel]] = {
    "Patient": Patient,
    "Condition": Condition,
    "Observation": Observation,
    "MedicationStatement": MedicationStatement,
    "Procedure": Procedure,
}
INGEST_REPORT = "ingest.json"
SOURCE_MANIFEST = "source.json"
MAX_FINDINGS = 500  # row-level findings listed individually (all are counted)

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,48}$")
_CATEGORY_LAB = [{"coding": [{"system": term.OBSERVATION_CATEGORY, "code": "laboratory"}]}]
_CATEGORY_IMAGING = [{"coding": [{"system": term.OBSERVATION_CATEGORY, "code": "imaging"}]}]
_ADHERENCE = "http://hl7.org/fhir/CodeSystem/medication-statement-adherence"
_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"


class FhirValidationError(ValueError):
    """A built resource does not validate; the message names patient, resource, feature and field."""


def fhir_id(patient_id: str) -> str:
    """A FHIR resource id for a source patient id (the id itself when legal, else a hash)."""
    if _FHIR_ID.match(patient_id):
        return patient_id
    return "h" + hashlib.sha256(patient_id.encode()).hexdigest()[:24]


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": term.UCUM, "code": unit}


def _coding(c: Any) -> dict[str, Any]:
    out = {"system": c.system, "code": c.code}
    if c.display:
        out["display"] = c.display
    return out


def _gene_concept(f: Feature) -> dict[str, Any]:
    return {"coding": [{"system": term.HGNC, "code": f.fhir.hgnc, "display": f.fhir.gene}]}


@dataclasses.dataclass
class IngestStats:
    """What one centre's ingestion did; written as ``ingest.json``."""

    centre: str
    n_records: int = 0
    n_patients: int = 0
    resources: Counter = dataclasses.field(default_factory=Counter)
    quarantined: Counter = dataclasses.field(default_factory=Counter)  # reason -> records
    quarantined_rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    rejected_values: dict[str, Counter] = dataclasses.field(default_factory=dict)  # feature -> reason -> n
    findings: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # row-level, first MAX_FINDINGS
    n_findings: int = 0
    notes: dict[str, Any] = dataclasses.field(default_factory=dict)  # the adapter's (file, unmapped columns)
    build_seconds: float = 0.0
    validate_seconds: float = 0.0
    write_seconds: float = 0.0

    def quarantine(self, rec: PatientRecord, reason: str, field: str = "record") -> None:
        self.quarantined[reason] += 1
        if len(self.quarantined_rows) < MAX_LISTED:
            self.quarantined_rows.append(
                {
                    "source": rec.source,
                    "row": rec.row,
                    "patient_id": rec.patient_id,
                    "field": field,
                    "reason": reason,
                }
            )

    def reject(
        self,
        feature: str,
        reason: str,
        rec: PatientRecord | None = None,
        field: str | None = None,
        where: tuple[str | None, int | None] = (None, None),
    ) -> None:
        self.rejected_values.setdefault(feature, Counter())[reason] += 1
        if rec is not None:
            self.finding(rec, field or feature, reason, "value rejected (missing)", where)

    def finding(
        self,
        rec: PatientRecord,
        field: str,
        reason: str,
        action: str,
        where: tuple[str | None, int | None] = (None, None),
    ) -> None:
        """List a row-level problem with file, row and field (the first MAX_FINDINGS; all are counted).

        ``where`` overrides the record's file and row when the fault lies in another file.
        """
        self.n_findings += 1
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(
                {
                    "source": where[0] or rec.source,
                    "row": where[1] or rec.row,
                    "patient_id": rec.patient_id,
                    "field": field,
                    "reason": reason,
                    "action": action,
                }
            )

    def to_json(self) -> dict[str, Any]:
        return {
            "centre": self.centre,
            "n_records": self.n_records,
            "n_patients": self.n_patients,
            "resources": dict(sorted(self.resources.items())),
            "quarantined": dict(sorted(self.quarantined.items())),
            "quarantined_rows": self.quarantined_rows,
            "rejected_values": {k: dict(sorted(v.items())) for k, v in sorted(self.rejected_values.items())},
            "findings": self.findings,
            "n_findings": self.n_findings,
            "notes": self.notes,
            "timing": {
                "build_seconds": self.build_seconds,
                "validate_seconds": self.validate_seconds,
                "write_seconds": self.write_seconds,
            },
        }


def _clean_values(rec: PatientRecord, guide: Guide, stats: IngestStats) -> dict[str, Any]:
    """Drop (and count) values the guide cannot represent; keep the rest as reported."""
    out: dict[str, Any] = {}
    for f in guide.features:
        v = rec.values.get(f.name)
        if v is None:
            continue
        if f.kind == "continuous":
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
                stats.reject(f.name, f"not a finite number: {v!r}", rec)
                continue
            unit = rec.units.get(f.name, f.unit)
            conv = term.conversion(unit, str(f.unit), f.fhir.coding.code if f.fhir.coding else None)
            if conv is None:
                stats.reject(f.name, f"unit {unit!r} has no conversion to {f.unit!r}", rec)
                continue
            canonical = float(v) * conv[0] / conv[1]
            if f.valid_range is not None and not f.valid_range[0] <= canonical <= f.valid_range[1]:
                # Extraction sets it missing and counts it; here it is listed with its row.
                stats.finding(
                    rec, f.name, f"{canonical:g} {f.unit} outside {list(f.valid_range)}", "set missing"
                )
            out[f.name] = float(v)
        elif f.kind == "binary":
            if v not in (0, 1) or isinstance(v, float) and not v.is_integer():
                stats.reject(f.name, f"binary value not 0/1: {v!r}", rec)
                continue
            out[f.name] = int(v)
        else:
            if str(v) not in f.levels:
                stats.reject(f.name, f"level {v!r} not in {list(f.levels)}", rec)
                continue
            out[f.name] = str(v)
    return out


def _endpoint_problem(rec: PatientRecord, zero_allowed: bool = False) -> tuple[str, str] | None:
    """``(field, reason)`` why a record cannot become a patient, or ``None``."""
    for issue in rec.issues:
        if issue.target in RECORD_TARGETS:
            return issue.column, issue.reason
    if rec.patient_id is None or not str(rec.patient_id).strip():
        return "patient_id", "missing patient_id"
    if rec.time is None:
        return "time", "missing survival time"
    if not isinstance(rec.time, int | float) or not math.isfinite(rec.time) or rec.time < 0:
        return "time", "survival time not a positive number"
    if rec.time == 0 and not zero_allowed:
        return "time", "survival time not a positive number"
    if rec.event is None:
        return "event", "missing event"
    if rec.event not in (0, 1):
        return "event", "event not 0/1"
    return None


def build_resources(
    rec: PatientRecord, values: dict[str, Any], guide: Guide
) -> list[tuple[str | None, dict[str, Any]]]:
    """All resources of one patient as ``(feature or None, resource dict)`` pairs.

    ``values`` are the record's cleaned values (:func:`_clean_values`). The dicts
    are plain JSON (floats stay floats, so the NDJSON round-trips exactly).
    """
    pid = str(rec.patient_id)
    rid = fhir_id(pid)
    subject = {"reference": f"Patient/{rid}"}
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "id": rid,
        "identifier": [{"system": term.PATIENT_ID_SYSTEM, "value": pid, "assigner": {"display": rec.centre}}],
        "deceasedBoolean": bool(rec.event),
    }
    condition: dict[str, Any] = {
        "resourceType": "Condition",
        "id": f"{rid}-dx",
        "clinicalStatus": {"coding": [{"system": _CLINICAL, "code": "active"}]},
        "code": {"coding": [_coding(guide.condition)]},
        "subject": subject,
    }
    out: list[tuple[str | None, dict[str, Any]]] = [(None, patient), (None, condition)]
    vectors: dict[str, list[Feature]] = {}
    studied: list[Feature] = []
    for k, f in enumerate(guide.features):
        m = f.fhir
        if m.vector is not None:
            vectors.setdefault(m.vector, []).append(f)
            continue
        if f.name not in values:
            continue
        v = values[f.name]
        oid = f"{rid}-f{k}"
        if m.element == "gender":
            negative = "female" if m.positive == "male" else "male"
            patient["gender"] = m.positive if v == 1 else negative
        elif m.element == "onsetAge":
            condition["onsetAge"] = _quantity(v, rec.units.get(f.name, "a"))
        elif m.gene is not None:
            studied.append(f)
            if v == 1:
                obs = {
                    "resourceType": "Observation",
                    "id": oid,
                    "status": "final",
                    "category": _CATEGORY_LAB,
                    "code": {"coding": [_coding(m.coding)]},
                    "subject": subject,
                    "valueCodeableConcept": {
                        "coding": [{"system": term.LOINC, "code": term.LOINC_PRESENT, "display": "Present"}]
                    },
                    "component": [
                        {
                            "code": {"coding": [{"system": term.LOINC, "code": term.LOINC_GENE_STUDIED}]},
                            "valueCodeableConcept": _gene_concept(f),
                        }
                    ],
                }
                out.append((f.name, obs))
        elif m.resource == "Observation":
            obs = {
                "resourceType": "Observation",
                "id": oid,
                "status": "final",
                "category": _CATEGORY_LAB,
                "code": {"coding": [_coding(m.coding)]},
                "subject": subject,
            }
            if f.kind == "continuous":
                obs["valueQuantity"] = _quantity(v, rec.units.get(f.name, str(f.unit)))
            elif f.kind == "categorical":
                obs["valueCodeableConcept"] = {"coding": [{"system": m.value_system, "code": v}]}
            else:
                obs["valueBoolean"] = bool(v)
            out.append((f.name, obs))
        elif m.resource == "MedicationStatement":
            adherence = "taking" if v == 1 else "not-taking"
            out.append(
                (
                    f.name,
                    {
                        "resourceType": "MedicationStatement",
                        "id": oid,
                        "status": "recorded",
                        "medication": {"concept": {"coding": [_coding(m.coding)]}},
                        "subject": subject,
                        "adherence": {"code": {"coding": [{"system": _ADHERENCE, "code": adherence}]}},
                    },
                )
            )
        elif m.resource == "Procedure":
            out.append(
                (
                    f.name,
                    {
                        "resourceType": "Procedure",
                        "id": oid,
                        "status": "completed" if v == 1 else "not-done",
                        "code": {"coding": [_coding(m.coding)]},
                        "subject": subject,
                    },
                )
            )
    if studied:
        out.append(
            (
                None,
                {
                    "resourceType": "Observation",
                    "id": f"{rid}-panel",
                    "status": "final",
                    "category": _CATEGORY_LAB,
                    "code": {"coding": [{"system": term.LOINC, "code": term.LOINC_REGION_STUDIED}]},
                    "subject": subject,
                    "component": [
                        {
                            "code": {"coding": [{"system": term.LOINC, "code": term.LOINC_GENE_STUDIED}]},
                            "valueCodeableConcept": _gene_concept(f),
                        }
                        for f in studied
                    ],
                },
            )
        )
    for j, (name, members) in enumerate(vectors.items()):
        if not any(f.name in values for f in members):
            continue  # the whole vector is missing: no resource
        first = members[0]
        # "E" marks a component that could not be measured (FHIR SampledData).
        data = " ".join(repr(values[f.name]) if f.name in values else "E" for f in members)
        out.append(
            (
                name,
                {
                    "resourceType": "Observation",
                    "id": f"{rid}-v{j}",
                    "status": "final",
                    "category": _CATEGORY_IMAGING,
                    "code": {"coding": [_coding(first.fhir.coding)]},
                    "subject": subject,
                    "valueSampledData": {
                        "origin": _quantity(0.0, str(first.unit)),
                        "intervalUnit": "1",
                        "dimensions": 1,
                        "data": data,
                    },
                },
            )
        )
    out.append(
        (
            "time",
            {
                "resourceType": "Observation",
                "id": f"{rid}-os",
                "status": "final",
                "code": {"coding": [{"system": term.PROJECT, "code": term.OS_TIME_CODE}]},
                "subject": subject,
                "valueQuantity": _quantity(float(rec.time), guide.time_unit),
            },
        )
    )
    return out


def validate_resource(resource: dict[str, Any], *, where: str) -> None:
    """Validate one resource dict with ``fhir.resources`` (R5).

    Args:
        resource: the resource as JSON-ready dict.
        where: who it belongs to, e.g. ``"centre A, patient P1 (row 3), feature hb"``.

    Raises:
        FhirValidationError: naming ``where``, the resource type and each failing field.
    """
    rtype = resource.get("resourceType")
    model = RESOURCE_MODELS.get(str(rtype))
    if model is None:
        raise FhirValidationError(f"{where}: unsupported resourceType {rtype!r}")
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as err:
        fields = "; ".join(
            f"field {'.'.join(str(p) for p in e['loc']) or '(resource)'}: {e['msg']}" for e in err.errors()
        )
        raise FhirValidationError(f"{where}: invalid {rtype}: {fields}") from None


def ingest_centre(
    records: Iterable[PatientRecord],
    guide: Guide,
    out_dir: str | Path,
    centre: str,
    *,
    seen_ids: set[str] | None = None,
    builder: Callable[..., list[tuple[str | None, dict[str, Any]]]] = build_resources,
    progress: bool = False,
    total: int | None = None,
    notes: Callable[[], dict[str, Any]] | None = None,
) -> IngestStats:
    """Build, validate and write one centre's resources as ``<out_dir>/<centre>/<Type>.ndjson``.

    Args:
        records: the centre's records (from a source adapter).
        guide: a guide with FHIR mappings for every feature.
        out_dir: the dataset's FHIR folder.
        centre: the centre's name.
        seen_ids: patient ids already ingested from other centres (updated), so
            ids stay unique over the dataset.
        builder: resource builder (tests swap in a broken one).
        progress: show a progress bar.
        total: number of records, for the progress bar.
        notes: called after the records are read; what it returns (the source
            file, its unmapped columns) goes to ``ingest.json`` and the quality report.

    Returns:
        The centre's statistics, also written to ``<out_dir>/<centre>/ingest.json``.

    Raises:
        FhirValidationError: a resource fails validation (nothing is half-written:
            files go to a temporary folder that is only renamed on success).
        GuideError: the guide lacks FHIR mappings.
    """
    require_fhir(guide)
    seen = seen_ids if seen_ids is not None else set()
    folder = Path(out_dir) / centre
    tmp = Path(out_dir) / f".{centre}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    for stale in tmp.iterdir():
        stale.unlink()
    stats = IngestStats(centre=centre)
    # One full fhir.resources validation per distinct resource shape (same verdicts, ~50x fewer calls).
    validate = ShapeValidator(validate_resource)
    handles: dict[str, Any] = {}
    first_row: dict[str, int] = {}
    first_values: dict[str, dict[str, Any]] = {}
    if progress:
        from tqdm import tqdm

        records = tqdm(records, desc=f"FHIR {centre}", unit=" patients", total=total, leave=False)
    try:
        for rec in records:
            stats.n_records += 1
            problem = _endpoint_problem(rec, guide.time_zero_allowed)
            if problem is None and str(rec.patient_id) in seen:
                where = (
                    f"row {first_row[rec.patient_id]}" if rec.patient_id in first_row else "another centre"
                )
                reason = f"duplicate patient_id (first seen at {where})"
                if rec.patient_id in first_values:
                    dup = _clean_values(rec, guide, IngestStats(centre=centre))
                    old = first_values[rec.patient_id]
                    differ = [f for f in guide.feature_names if dup.get(f) != old.get(f)]
                    if differ:
                        reason += "; conflicting values"
                        problem = (", ".join(differ), reason)
                problem = problem or ("patient_id", reason)
            if problem is not None:
                stats.quarantine(rec, problem[1], problem[0])
                continue
            pid = str(rec.patient_id)
            seen.add(pid)
            first_row[pid] = rec.row
            t0 = time.perf_counter()
            for issue in rec.issues:
                stats.reject(issue.target, issue.reason, rec, issue.column, where=(issue.source, issue.row))
            values = _clean_values(rec, guide, stats)
            first_values[pid] = values
            resources = builder(rec, values, guide)
            t1 = time.perf_counter()
            for feature, res in resources:
                where = f"{rec.source} row {rec.row}: centre {centre}, patient {pid}"
                validate(res, where=where if feature is None else f"{where}, feature {feature}")
            t2 = time.perf_counter()
            for _, res in resources:
                rtype = res["resourceType"]
                if rtype not in handles:
                    handles[rtype] = open(tmp / f"{rtype}.ndjson", "wb")  # noqa: SIM115
                handles[rtype].write(orjson.dumps(res) + b"\n")
                stats.resources[rtype] += 1
            t3 = time.perf_counter()
            stats.build_seconds += t1 - t0
            stats.validate_seconds += t2 - t1
            stats.write_seconds += t3 - t2
            stats.n_patients += 1
    finally:
        for h in handles.values():
            h.close()
    if notes is not None:
        stats.notes = notes()
    (tmp / INGEST_REPORT).write_text(json.dumps(stats.to_json(), indent=1) + "\n", encoding="utf-8")
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
        folder.rmdir()
    tmp.rename(folder)
    return stats


def ingest_source(
    source: SourceAdapter, guide: Guide, out_dir: str | Path, *, progress: bool = False
) -> dict[str, IngestStats]:
    """Ingest every centre of a source (patient ids unique over all centres).

    Also writes ``<out_dir>/source.json`` (adapter, centres, provenance), which
    extraction copies into the dataset card.
    """
    require_fhir(guide)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    manifest = {
        "adapter": source.name,
        "use_case": guide.use_case,
        "guide_version": guide.version,
        "centres": list(source.centres()),
        "provenance": source.provenance(),
    }
    (Path(out_dir) / SOURCE_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    seen: set[str] = set()
    count = getattr(source, "n_records", None)  # optional: sizes the progress bar
    return {
        centre: ingest_centre(
            source.records(centre),
            guide,
            out_dir,
            centre,
            seen_ids=seen,
            progress=progress,
            total=count(centre) if progress and count is not None else None,
            notes=(lambda c=centre: source.notes(c)) if hasattr(source, "notes") else None,
        )
        for centre in source.centres()
    }
