"""FHIR NDJSON -> one ML-ready parquet per centre, in canonical units (ARCHITECTURE §1.2).

The fast path: every NDJSON line is parsed once with ``orjson`` and read by
plain dict access (a ``fhir.resources`` parse per line costs ~40x more; each
resource was validated when it was written). Observations are routed by their
code (system, code) to the guide feature that owns it; variants by the HGNC
id of their gene-studied component; the panel says which genes were tested.

Values are converted to the guide's canonical UCUM unit (conversions counted),
values outside the guide's valid range are set missing (counted, with patient
ids), and patients without a valid survival endpoint are quarantined
(counted). Nothing is dropped without a count in the returned
:class:`ExtractStats`, which feeds the quality report.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import polars as pl

from harmonize import terminology as term
from harmonize.guide import Feature, Guide, require_fhir
from harmonize.quality import MAX_LISTED
from harmonize.sources import canonical_schema


@dataclasses.dataclass
class ExtractStats:
    """What one centre's extraction did (counts feed the quality report)."""

    centre: str
    n_patients: int = 0
    n_resources: int = 0
    conversions: Counter = dataclasses.field(default_factory=Counter)  # "feature: from -> to" -> n
    out_of_range: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    rejected_values: dict[str, Counter] = dataclasses.field(default_factory=dict)
    quarantined: Counter = dataclasses.field(default_factory=Counter)
    quarantined_patients: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    unmapped: Counter = dataclasses.field(default_factory=Counter)  # "Type system|code" -> n
    inferred: Counter = dataclasses.field(default_factory=Counter)  # "feature: how" -> n
    seconds: float = 0.0

    def reject(self, feature: str, reason: str) -> None:
        self.rejected_values.setdefault(feature, Counter())[reason] += 1

    def flag_range(self, f: Feature, pid: str, value: float) -> None:
        entry = self.out_of_range.setdefault(
            f.name, {"count": 0, "range": list(f.valid_range), "examples": []}
        )
        entry["count"] += 1
        if len(entry["examples"]) < 10:
            entry["examples"].append({"patient_id": pid, "value": value})

    def to_json(self) -> dict[str, Any]:
        return {
            "centre": self.centre,
            "n_patients": self.n_patients,
            "n_resources": self.n_resources,
            "conversions": dict(sorted(self.conversions.items())),
            "out_of_range": dict(sorted(self.out_of_range.items())),
            "rejected_values": {k: dict(sorted(v.items())) for k, v in sorted(self.rejected_values.items())},
            "quarantined": dict(sorted(self.quarantined.items())),
            "quarantined_patients": self.quarantined_patients,
            "unmapped_resources": dict(sorted(self.unmapped.items())),
            "inferred": dict(sorted(self.inferred.items())),
            "seconds": self.seconds,
        }


# A unit conversion and its inverse (mmol/L -> g/dL of a value written from g/dL) can land a
# bound value a few ulps outside the guide's range; that is arithmetic, not an implausible value.
RANGE_ROUNDING_TOLERANCE = 1e-9


def _snap_to_range(f: Feature, value: float, stats: ExtractStats) -> float:
    """Snap a value just outside a range bound (by float rounding only) onto it, counting each snap."""
    lo, hi = f.valid_range
    bound = lo if value < lo else hi if value > hi else None
    if bound is None or abs(value - bound) > RANGE_ROUNDING_TOLERANCE * max(1.0, abs(bound)):
        return value
    stats.inferred[f"{f.name}: snapped to range bound {bound:g} (conversion rounding)"] += 1
    return float(bound)


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as err:
                raise ValueError(f"{path}:{lineno}: not valid JSON: {err}") from None


def _code(concept: dict[str, Any] | None) -> tuple[str, str] | None:
    if not concept:
        return None
    codings = concept.get("coding") or []
    if not codings:
        return None
    return (codings[0].get("system", ""), codings[0].get("code", ""))


class _Router:
    """Maps resource codes to guide features."""

    def __init__(self, guide: Guide) -> None:
        self.by_code: dict[tuple[str, str, str], list[Feature]] = {}
        self.by_hgnc: dict[str, Feature] = {}
        self.gender: Feature | None = None
        self.onset_age: Feature | None = None
        for f in guide.features:
            m = f.fhir
            if m.element == "gender":
                self.gender = f
            elif m.element == "onsetAge":
                self.onset_age = f
            elif m.gene is not None:
                self.by_hgnc[m.hgnc] = f
            else:
                self.by_code.setdefault((m.resource, m.coding.system, m.coding.code), []).append(f)


def _analyte(f: Feature) -> str | None:
    return f.fhir.coding.code if f.fhir is not None and f.fhir.coding is not None else None


def _subject(res: dict[str, Any]) -> str | None:
    ref = (res.get("subject") or {}).get("reference", "")
    return ref[len("Patient/") :] if ref.startswith("Patient/") else None


def _hgnc_ids(res: dict[str, Any]) -> list[str]:
    out = []
    for comp in res.get("component") or []:
        if _code(comp.get("code")) == (term.LOINC, term.LOINC_GENE_STUDIED):
            code = _code(comp.get("valueCodeableConcept"))
            if code is not None and code[0] == term.HGNC:
                out.append(code[1])
    return out


def _set(values: dict[str, Any], stats: ExtractStats, f: str, v: Any) -> None:
    """Record a value; two different values for one patient make it missing (counted)."""
    if f in values and values[f] != v:
        stats.reject(f, "conflicting values for one patient")
        values[f] = _CONFLICT
    elif f not in values:
        values[f] = v


_CONFLICT = object()


def extract_centre(fhir_dir: str | Path, centre: str, guide: Guide) -> tuple[pl.DataFrame, ExtractStats]:
    """Read one centre's NDJSON files back into the canonical table.

    Args:
        fhir_dir: the dataset's FHIR folder (holding ``<centre>/<Type>.ndjson``).
        centre: the centre's name.
        guide: the guide the resources were written with.

    Returns:
        ``(table, stats)``: ``patient_id, centre, <guide features>, time, event``
        sorted by ``patient_id`` (continuous Float64 in canonical units, binary
        Int8, categorical String), and what was converted, nulled or quarantined.
    """
    import time as _time

    require_fhir(guide)
    started = _time.perf_counter()
    folder = Path(fhir_dir) / centre
    if not folder.is_dir():
        raise FileNotFoundError(f"no FHIR folder for centre {centre!r} at {folder}")
    stats = ExtractStats(centre=centre)
    router = _Router(guide)
    pids: dict[str, str] = {}  # resource id -> source patient id
    event: dict[str, int] = {}
    values: dict[str, dict[str, Any]] = {}
    studied: dict[str, set[str]] = {}
    found: dict[str, set[str]] = {}
    os_time: dict[str, tuple[float, str]] = {}

    for res in _lines(folder / "Patient.ndjson"):
        stats.n_resources += 1
        rid = res["id"]
        if rid in pids:
            stats.unmapped["Patient with a duplicate resource id (later one ignored)"] += 1
            continue
        ident = next(
            (i for i in res.get("identifier") or [] if i.get("system") == term.PATIENT_ID_SYSTEM), None
        )
        pids[rid] = ident["value"] if ident else rid
        vals = values.setdefault(rid, {})
        if "deceasedBoolean" in res:
            event[rid] = int(bool(res["deceasedBoolean"]))
        if router.gender is not None and "gender" in res:
            g = res["gender"]
            if g in ("male", "female"):
                vals[router.gender.name] = int(g == router.gender.fhir.positive)
            else:
                stats.reject(router.gender.name, f"gender {g!r} is neither male nor female")

    def patient_of(res: dict[str, Any]) -> str | None:
        rid = _subject(res)
        if rid is None or rid not in pids:
            stats.unmapped[f"{res.get('resourceType')} with unknown subject"] += 1
            return None
        return rid

    def quantity(f: Feature, rid: str, q: dict[str, Any]) -> None:
        unit = q.get("code") or q.get("unit") or ""
        conv = term.conversion(unit, str(f.unit), _analyte(f))
        if "value" not in q:
            stats.reject(f.name, "quantity without a value")
            return
        if conv is None:
            stats.reject(f.name, f"unit {unit!r} has no conversion to {f.unit!r}")
            return
        v = float(q["value"])
        if unit != f.unit:
            v = v * conv[0] / conv[1]
            stats.conversions[f"{f.name}: {unit} -> {f.unit}"] += 1
        _set(values[rid], stats, f.name, v)

    for res in _lines(folder / "Condition.ndjson"):
        stats.n_resources += 1
        rid = patient_of(res)
        if rid is None:
            continue
        if _code(res.get("code")) != (guide.condition.system, guide.condition.code):
            stats.unmapped[f"Condition {'|'.join(_code(res.get('code')) or ('?', '?'))}"] += 1
        if router.onset_age is not None and "onsetAge" in res:
            quantity(router.onset_age, rid, res["onsetAge"])

    for res in _lines(folder / "Observation.ndjson"):
        stats.n_resources += 1
        rid = patient_of(res)
        if rid is None:
            continue
        code = _code(res.get("code"))
        if code == (term.LOINC, term.LOINC_VARIANT):
            for h in _hgnc_ids(res):
                if h in router.by_hgnc:
                    found.setdefault(rid, set()).add(h)
                else:
                    stats.unmapped[f"variant in gene {h} outside the guide"] += 1
            continue
        if code == (term.LOINC, term.LOINC_REGION_STUDIED):
            studied.setdefault(rid, set()).update(_hgnc_ids(res))
            continue
        if code == (term.PROJECT, term.OS_TIME_CODE):
            q = res.get("valueQuantity") or {}
            os_time[rid] = (q.get("value"), q.get("code") or q.get("unit") or "")
            continue
        feats = router.by_code.get(("Observation", *code)) if code else None
        if not feats:
            stats.unmapped[f"Observation {'|'.join(code or ('?', '?'))}"] += 1
            continue
        f = feats[0]
        if f.fhir.vector is not None:
            sd = res.get("valueSampledData") or {}
            data = str(sd.get("data", "")).split()
            if len(data) != len(feats):
                stats.reject(f.fhir.vector, f"SampledData has {len(data)} values, guide has {len(feats)}")
                continue
            unit = (sd.get("origin") or {}).get("code", f.unit)
            conv = term.conversion(unit, str(f.unit))
            if conv is None:
                stats.reject(f.fhir.vector, f"unit {unit!r} has no conversion to {f.unit!r}")
                continue
            for member, token in zip(feats, data, strict=True):
                if token in ("E", "L", "U"):
                    continue
                v = float(token) * conv[0] / conv[1]
                _set(values[rid], stats, member.name, v)
        elif f.kind == "continuous":
            quantity(f, rid, res.get("valueQuantity") or {})
        elif f.kind == "categorical":
            c = _code(res.get("valueCodeableConcept"))
            if c is None or c[0] != f.fhir.value_system or c[1] not in f.levels:
                stats.reject(f.name, f"answer {c!r} not in the guide's levels")
            else:
                _set(values[rid], stats, f.name, c[1])
        elif "valueBoolean" in res:
            _set(values[rid], stats, f.name, int(bool(res["valueBoolean"])))

    for rtype in ("MedicationStatement", "Procedure"):
        for res in _lines(folder / f"{rtype}.ndjson"):
            stats.n_resources += 1
            rid = patient_of(res)
            if rid is None:
                continue
            if rtype == "MedicationStatement":
                code = _code((res.get("medication") or {}).get("concept"))
            else:
                code = _code(res.get("code"))
            feats = router.by_code.get((rtype, *code)) if code else None
            if not feats:
                stats.unmapped[f"{rtype} {'|'.join(code or ('?', '?'))}"] += 1
                continue
            if rtype == "MedicationStatement":
                adherence = _code((res.get("adherence") or {}).get("code"))
                v = None if adherence is None else {"taking": 1, "not-taking": 0}.get(adherence[1])
            else:
                v = {"completed": 1, "not-done": 0}.get(res.get("status"))
            if v is None:
                stats.reject(feats[0].name, f"{rtype} status/adherence does not say given or not")
            else:
                _set(values[rid], stats, feats[0].name, v)

    genes = {f.fhir.hgnc: f.name for f in guide.features if f.fhir.gene is not None}
    for rid, hg in studied.items():
        for h in hg & genes.keys():
            values[rid][genes[h]] = int(h in found.get(rid, ()))
    for rid, hg in found.items():
        untested = hg - studied.get(rid, set())
        for h in untested:
            # A found variant means the gene was tested even if the panel omits it.
            stats.inferred[f"{genes[h]}: variant without a panel entry, kept as 1"] += 1
            values[rid][genes[h]] = 1

    rows: list[dict[str, Any]] = []
    for rid, pid in pids.items():
        t, unit = os_time.get(rid, (None, ""))
        problem = None
        if rid not in event:
            problem = "no Patient.deceasedBoolean (event)"
        elif t is None:
            problem = "no survival time observation"
        else:
            conv = term.conversion(unit, guide.time_unit)
            if conv is None:
                problem = f"survival time unit {unit!r} not convertible to {guide.time_unit!r}"
            else:
                t = float(t) * conv[0] / conv[1]
                if not math.isfinite(t) or t < 0 or (t == 0 and not guide.time_zero_allowed):
                    problem = "survival time not positive"
        if problem is not None:
            stats.quarantined[problem] += 1
            if len(stats.quarantined_patients) < MAX_LISTED:
                stats.quarantined_patients.append({"patient_id": pid, "reason": problem})
            continue
        vals = values.get(rid, {})
        row: dict[str, Any] = {"patient_id": pid, "centre": centre}
        for f in guide.features:
            v = vals.get(f.name)
            if v is _CONFLICT:
                v = None
            if v is not None and f.kind == "continuous":
                lo, hi = f.valid_range
                v = _snap_to_range(f, v, stats)
                if not lo <= v <= hi:
                    stats.flag_range(f, pid, v)
                    v = None
            row[f.name] = v
        row["time"], row["event"] = t, event[rid]
        rows.append(row)
    schema = {"patient_id": pl.String(), "centre": pl.String()}
    schema.update({k: v for k, v in canonical_schema(guide).items() if k != "patient_id"})
    table = pl.DataFrame(rows, schema=schema, orient="row").sort("patient_id")
    stats.n_patients = table.height
    stats.seconds = _time.perf_counter() - started
    return table, stats
