"""Implementation guides: the one feature schema of a use case.

A guide (``harmonize/guides/<use_case>.yaml``) names every feature with its kind,
group, canonical unit and valid range, plus the survival endpoint. Simulators,
configs, the data layer and the models all read it through :func:`load_guide`,
which validates the file and fails naming the file, the feature and the field.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml

from harmonize import terminology as term

GUIDES_DIR = Path(__file__).resolve().parent / "guides"
# Optional layers (``harmonize/guides/layers/<layer>.yaml``), added on request by
# ``load_guide("<use_case>+<layer>")``; the base guide and its default datasets never change.
LAYERS_DIR = GUIDES_DIR / "layers"
# Folders of the user's own guides, searched (in order) before the shipped ones when a guide
# is named rather than given by path: `HARMONIZE_GUIDES=/my/guides:/shared/guides`.
GUIDE_PATH_ENV = "HARMONIZE_GUIDES"

FeatureKind = Literal["continuous", "binary", "categorical"]
KINDS: tuple[str, ...] = ("continuous", "binary", "categorical")
GROUPS: tuple[str, ...] = ("clinical", "cytogenetic", "genomic", "treatment", "wsi", "pet", "cnv")
FHIR_RESOURCES: tuple[str, ...] = ("Patient", "Condition", "Observation", "MedicationStatement", "Procedure")
# Features stored on a resource element rather than as a resource of their own.
FHIR_ELEMENTS: dict[tuple[str, str], str] = {
    ("Patient", "gender"): "binary",
    ("Condition", "onsetAge"): "continuous",
}
_LOINC_CODE = re.compile(r"^\d{1,7}-\d$")
_URI = re.compile(r"^(https?://|urn:)\S+$")

# libyaml's parser where PyYAML has it: the same documents, ~10x faster on the guides (0.13 s each)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class GuideError(ValueError):
    """A guide file is malformed; the message names the file, feature and field."""


@dataclasses.dataclass(frozen=True)
class Coding:
    """A code in a code system (FHIR ``Coding``)."""

    system: str
    code: str
    display: str = ""


@dataclasses.dataclass(frozen=True)
class FhirMapping:
    """Where a feature lives in FHIR R5 (the guide's ``fhir:`` block of a feature).

    Attributes:
        resource: ``Patient``, ``Condition``, ``Observation``, ``MedicationStatement``
            or ``Procedure``.
        coding: the resource's code (Observation.code, MedicationStatement.medication,
            Procedure.code); implied for gene variants (LOINC 69548-6).
        element: a resource element instead of a resource of its own
            (``Patient.gender``, ``Condition.onsetAge``).
        positive: for ``Patient.gender``, the gender that encodes 1 (e.g. ``male``).
        gene: HGNC symbol of a genomic variant feature (Genomics Reporting IG:
            1 = a variant found, 0 = gene on the patient's panel without variant).
        hgnc: the gene's HGNC id, checked against the shipped HGNC table.
        vector: name of an image-feature vector; the features sharing it form one
            Observation with ``valueSampledData``, components in guide order.
        value_system: code system of a categorical feature's answers (the levels).
    """

    resource: str
    coding: Coding | None = None
    element: str | None = None
    positive: str | None = None
    gene: str | None = None
    hgnc: str | None = None
    vector: str | None = None
    value_system: str | None = None


@dataclasses.dataclass(frozen=True)
class Feature:
    """One feature of the common data model.

    Attributes:
        name: column name in every ML-ready table.
        kind: ``continuous``, ``binary`` (0/1) or ``categorical`` (one of ``levels``).
        group: data layer the feature belongs to; scenarios drop whole groups.
        unit: canonical UCUM unit (continuous features only).
        valid_range: inclusive (low, high) for continuous features; values outside
            are out-of-range input, never silently clipped.
        levels: ordered category labels (categorical features only).
        log: model the feature on a log1p scale (skewed labs such as platelets).
        fhir: where the feature lives in FHIR (needed to harmonise through FHIR).
        definition: what the feature means in words: what counts as positive, which
            source call it is (e.g. FLT3 = non-ITD calls); ``""`` where the guide gives none
            (the quality report then says so).
    """

    name: str
    kind: FeatureKind
    group: str
    unit: str | None = None
    valid_range: tuple[float, float] | None = None
    levels: tuple[str, ...] = ()
    log: bool = False
    fhir: FhirMapping | None = None
    definition: str = ""

    @property
    def width(self) -> int:
        """Number of model input columns (one-hot width for categoricals)."""
        return len(self.levels) if self.kind == "categorical" else 1


@dataclasses.dataclass(frozen=True)
class Guide:
    """A validated implementation guide."""

    use_case: str
    version: str
    description: str
    features: tuple[Feature, ...]
    time_unit: str
    path: str
    condition: Coding | None = None  # the use case's diagnosis (Condition.code), e.g. ICD-10 D46.9
    # endpoint.time.zero_allowed: a survival time of 0 is data, not an error (IWG-PM records
    # OS_YEARS 0 for deaths or censoring at sample collection); negative times never are.
    time_zero_allowed: bool = False
    layers: tuple[str, ...] = ()  # optional layers appended to the base guide's features, in order

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    @property
    def encoded_names(self) -> tuple[str, ...]:
        """Model input columns: categoricals expand to ``name=level`` one-hots."""
        names: list[str] = []
        for f in self.features:
            if f.kind == "categorical":
                names.extend(f"{f.name}={level}" for level in f.levels)
            else:
                names.append(f.name)
        return tuple(names)

    def feature(self, name: str) -> Feature:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(f"guide {self.use_case!r} has no feature {name!r}")


def _fail(path: Path, where: str, msg: str) -> GuideError:
    return GuideError(f"{path}: {where}: {msg}")


def _parse_feature(raw: Any, index: int, path: Path) -> Feature:
    where = f"features[{index}]"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a mapping")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise _fail(path, where, "field 'name' is missing or empty")
    where = f"feature {name!r}"
    allowed = {"name", "kind", "group", "unit", "range", "levels", "log", "fhir", "definition"}
    unknown = set(raw) - allowed
    if unknown:
        raise _fail(path, where, f"unknown field(s) {sorted(unknown)}; allowed {sorted(allowed)}")
    kind = raw.get("kind")
    if kind not in KINDS:
        raise _fail(path, where, f"field 'kind' is {kind!r}, expected one of {KINDS}")
    group = raw.get("group")
    if group not in GROUPS:
        raise _fail(path, where, f"field 'group' is {group!r}, expected one of {GROUPS}")
    valid_range = None
    levels: tuple[str, ...] = ()
    if kind == "continuous":
        rng = raw.get("range")
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(v, int | float) for v in rng)):
            raise _fail(path, where, f"field 'range' must be [low, high] numbers, got {rng!r}")
        if not rng[0] < rng[1]:
            raise _fail(path, where, f"field 'range' has low >= high: {rng!r}")
        if raw.get("log") and rng[0] < 0:
            raise _fail(path, where, "field 'log' needs a non-negative range")
        if not isinstance(raw.get("unit"), str):
            raise _fail(path, where, "continuous features need a UCUM 'unit'")
        valid_range = (float(rng[0]), float(rng[1]))
    elif kind == "categorical":
        lv = raw.get("levels")
        if not (isinstance(lv, list) and len(lv) >= 2 and len(set(lv)) == len(lv)):
            raise _fail(path, where, f"field 'levels' must list >= 2 distinct labels, got {lv!r}")
        levels = tuple(str(v) for v in lv)
    for field in ("range", "levels", "log"):
        if kind != "continuous" and field in ("range", "log") and field in raw:
            raise _fail(path, where, f"field {field!r} only applies to continuous features")
        if kind != "categorical" and field == "levels" and field in raw:
            raise _fail(path, where, "field 'levels' only applies to categorical features")
    definition = raw.get("definition", "")
    if not isinstance(definition, str):
        raise _fail(path, where, f"field 'definition' must be text, got {definition!r}")
    fhir = None
    if "fhir" in raw:
        fhir = _parse_fhir(raw["fhir"], name, kind, group, raw.get("unit"), path)
    return Feature(
        name=name,
        kind=kind,
        group=group,
        unit=raw.get("unit"),
        valid_range=valid_range,
        levels=levels,
        log=bool(raw.get("log", False)),
        fhir=fhir,
        definition=" ".join(definition.split()),
    )


def _parse_coding(raw: Any, path: Path, where: str) -> Coding:
    if not isinstance(raw, dict):
        raise _fail(path, where, f"must be a mapping with 'system' and 'code', got {raw!r}")
    unknown = set(raw) - {"system", "code", "display"}
    if unknown:
        raise _fail(path, where, f"unknown field(s) {sorted(unknown)}; allowed ['code', 'display', 'system']")
    system, code = raw.get("system"), raw.get("code")
    if not isinstance(system, str) or not _URI.match(system):
        raise _fail(path, where, f"field 'system' must be a URI (http(s):// or urn:), got {system!r}")
    if not isinstance(code, str | int) or not str(code).strip():
        raise _fail(path, where, f"field 'code' is missing or empty, got {code!r}")
    code = str(code)
    if system == term.LOINC and not _LOINC_CODE.match(code):
        raise _fail(path, where, f"LOINC code {code!r} is malformed (expected e.g. '718-7')")
    if system == term.SNOMED and not code.isdigit():
        raise _fail(path, where, f"SNOMED CT code {code!r} must be digits")
    return Coding(system=system, code=code, display=str(raw.get("display", "")))


def _parse_fhir(raw: Any, name: str, kind: str, group: str, unit: Any, path: Path) -> FhirMapping:
    where = f"feature {name!r} field 'fhir'"
    if not isinstance(raw, dict):
        raise _fail(path, where, "must be a mapping")
    allowed = {"resource", "system", "code", "display", "element", "positive", "gene", "hgnc", "vector"}
    allowed |= {"value_system"}
    unknown = set(raw) - allowed
    if unknown:
        raise _fail(path, where, f"unknown field(s) {sorted(unknown)}; allowed {sorted(allowed)}")
    resource = raw.get("resource")
    if resource not in FHIR_RESOURCES:
        raise _fail(path, where, f"'resource' is {resource!r}, expected one of {FHIR_RESOURCES}")
    element = raw.get("element")
    if element is not None:
        needed = FHIR_ELEMENTS.get((resource, element))
        if needed is None:
            raise _fail(
                path, where, f"element {resource}.{element} is not supported; use {sorted(FHIR_ELEMENTS)}"
            )
        if kind != needed:
            raise _fail(path, where, f"{resource}.{element} holds {needed} features, {name!r} is {kind}")
        if element == "gender" and raw.get("positive") not in ("male", "female"):
            raise _fail(
                path, where, "Patient.gender needs 'positive: male' or 'positive: female' (the 1 value)"
            )
        if element == "onsetAge" and unit != "a":
            raise _fail(path, where, f"Condition.onsetAge needs unit 'a' (years), got {unit!r}")
        return FhirMapping(resource=resource, element=element, positive=raw.get("positive"))
    if resource in ("Patient", "Condition"):
        raise _fail(path, where, f"{resource} features need an 'element' ({sorted(FHIR_ELEMENTS)})")
    gene = raw.get("gene")
    if gene is not None:
        if resource != "Observation" or kind != "binary" or group != "genomic":
            raise _fail(path, where, "'gene' applies to binary genomic Observation features only")
        try:
            hgnc = term.check_gene(str(gene), raw.get("hgnc"))
        except ValueError as err:
            raise _fail(path, where, str(err)) from None
        return FhirMapping(
            resource=resource,
            coding=Coding(term.LOINC, term.LOINC_VARIANT, "Genetic variant assessment"),
            gene=str(gene),
            hgnc=hgnc,
        )
    coding = _parse_coding({k: raw[k] for k in ("system", "code", "display") if k in raw}, path, where)
    vector = raw.get("vector")
    if vector is not None and (resource != "Observation" or kind != "continuous"):
        raise _fail(
            path, where, "'vector' (valueSampledData) applies to continuous Observation features only"
        )
    if resource in ("MedicationStatement", "Procedure") and kind != "binary":
        raise _fail(path, where, f"{resource} features must be binary (1 = given/done, 0 = not), not {kind}")
    value_system = raw.get("value_system")
    if kind == "categorical":
        value_system = value_system or term.PROJECT
        if not _URI.match(str(value_system)):
            raise _fail(path, where, f"'value_system' must be a URI, got {value_system!r}")
    elif value_system is not None:
        raise _fail(path, where, "'value_system' applies to categorical features only")
    return FhirMapping(
        resource=resource,
        coding=coding,
        vector=None if vector is None else str(vector),
        value_system=value_system,
    )


def _check_vectors(features: tuple[Feature, ...], path: Path) -> None:
    """Features sharing a vector must share its code and unit (one Observation each)."""
    seen: dict[str, Feature] = {}
    for f in features:
        if f.fhir is None or f.fhir.vector is None:
            continue
        first = seen.setdefault(f.fhir.vector, f)
        if (f.fhir.coding, f.unit, f.group) != (first.fhir.coding, first.unit, first.group):
            raise _fail(
                path,
                f"feature {f.name!r}",
                f"vector {f.fhir.vector!r} mixes codes, units or groups (first member {first.name!r})",
            )
    codes: dict[Coding, str] = {}
    for f in features:
        if f.fhir is None or f.fhir.coding is None or f.fhir.gene is not None:
            continue
        key = f.fhir.vector or f.name
        other = codes.setdefault(f.fhir.coding, key)
        if other != key:
            raise _fail(
                path, f"feature {f.name!r}", f"FHIR code {f.fhir.coding.code!r} is also used by {other!r}"
            )


def require_fhir(guide: Guide) -> None:
    """Fail unless every feature (and the diagnosis) has a FHIR mapping.

    Harmonising through FHIR needs one; adding the ``fhir:`` blocks to a guide
    is all a new use case needs.

    Raises:
        GuideError: listing the features without a ``fhir`` block.
    """
    missing = [f.name for f in guide.features if f.fhir is None]
    if missing:
        raise GuideError(f"{guide.path}: feature(s) {missing} have no 'fhir' block (resource, system, code)")
    if guide.condition is None:
        raise GuideError(f"{guide.path}: top level: 'fhir.condition' (the diagnosis code) is missing")


def with_layer(guide: Guide, layer: str) -> Guide:
    """The guide plus an optional layer's features (appended after the base guide's).

    A layer file (``harmonize/guides/layers/<layer>.yaml``) has ``layer``, ``version``,
    ``applies_to`` (use cases) and ``features`` in the guide's format. The result keeps
    the base guide's use case and path; its version becomes ``<base>+<layer>.<layer
    version>`` so datasets built with the layer never pass for the base guide's.

    Raises:
        GuideError: unknown layer, a use case the layer does not apply to, a malformed
            feature or a name the base guide already uses.
    """
    path = LAYERS_DIR / f"{layer}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in LAYERS_DIR.glob("*.yaml"))
        raise GuideError(f"no guide layer {layer!r} at {path}; shipped layers: {shipped}")
    raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    if not isinstance(raw, dict) or set(raw) != {"layer", "version", "applies_to", "features"}:
        raise _fail(path, "top level", "needs exactly 'layer', 'version', 'applies_to' and 'features'")
    if raw["layer"] != layer:
        raise _fail(path, "top level", f"'layer' is {raw['layer']!r}, the file name says {layer!r}")
    if guide.use_case not in (raw["applies_to"] or []):
        raise _fail(path, "applies_to", f"layer {layer!r} does not apply to use case {guide.use_case!r}")
    if not isinstance(raw["features"], list) or not raw["features"]:
        raise _fail(path, "top level", "'features' must be a non-empty list")
    added = tuple(_parse_feature(f, i, path) for i, f in enumerate(raw["features"]))
    clash = sorted(set(guide.feature_names) & {f.name for f in added})
    if clash:
        raise _fail(path, "features", f"name(s) {clash} already in guide {guide.use_case!r}")
    features = guide.features + added
    _check_vectors(features, path)
    return dataclasses.replace(
        guide,
        version=f"{guide.version}+{layer}.{raw['version']}",
        features=features,
        layers=(*guide.layers, layer),
    )


def guide_search_path() -> tuple[Path, ...]:
    """Where a named guide is looked for: ``$HARMONIZE_GUIDES`` folders, then the shipped ones."""
    extra = [Path(p) for p in os.environ.get(GUIDE_PATH_ENV, "").split(os.pathsep) if p]
    return (*extra, GUIDES_DIR)


def guide_file(use_case_or_path: str | Path) -> Path:
    """The file of a guide given by path (``*.yaml``/``*.yml``) or by name (the search path).

    A name not found anywhere resolves to the shipped folder (where the error then points).
    """
    path = Path(use_case_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    for folder in guide_search_path():
        candidate = folder / f"{use_case_or_path}.yaml"
        if candidate.is_file():
            return candidate
    return GUIDES_DIR / f"{use_case_or_path}.yaml"


def load_guide(use_case_or_path: str | Path) -> Guide:
    """Load and validate a guide by use-case name (shipped guides) or file path.

    A name ``"<use_case>+<layer>[+<layer>...]"`` adds optional layers
    (:func:`with_layer`), e.g. ``load_guide("mds+treatment")``. A name is looked up on
    :func:`guide_search_path` (the user's ``$HARMONIZE_GUIDES`` folders first); a path
    ending in ``.yaml`` is read as given (relative to the working directory).

    Raises:
        GuideError: naming the file, the feature and the field at fault.
        FileNotFoundError: when no such guide exists.
    """
    if (
        isinstance(use_case_or_path, str)
        and "+" in use_case_or_path
        and not use_case_or_path.endswith((".yaml", ".yml"))
    ):
        base, *layers = use_case_or_path.split("+")
        guide = load_guide(base)
        for layer in layers:
            guide = with_layer(guide, layer)
        return guide
    path = guide_file(use_case_or_path)
    if not path.is_file():
        shipped = sorted(p.stem for p in GUIDES_DIR.glob("*.yaml"))
        raise FileNotFoundError(
            f"no guide at {path}; shipped guides: {shipped}; give your own guide by path "
            f"(my_guide.yaml) or put its folder on ${GUIDE_PATH_ENV}"
        )
    raw = yaml.load(path.read_text(), Loader=_YAML_LOADER)
    if not isinstance(raw, dict):
        raise _fail(path, "top level", "must be a mapping")
    for key in ("use_case", "version", "features", "endpoint"):
        if key not in raw:
            raise _fail(path, "top level", f"missing field {key!r}")
    if not isinstance(raw["features"], list) or not raw["features"]:
        raise _fail(path, "top level", "'features' must be a non-empty list")
    features = tuple(_parse_feature(f, i, path) for i, f in enumerate(raw["features"]))
    names = [f.name for f in features]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise _fail(path, "features", f"duplicate feature names {dupes}")
    reserved = {"patient_id", "centre", "time", "event", "oracle_risk"} & set(names)
    if reserved:
        raise _fail(path, "features", f"reserved column names used as features: {sorted(reserved)}")
    _check_vectors(features, path)
    condition = None
    top_fhir = raw.get("fhir")
    if top_fhir is not None:
        if not isinstance(top_fhir, dict) or set(top_fhir) - {"condition"}:
            raise _fail(path, "top level 'fhir'", "must be a mapping with 'condition' only")
        if "condition" in top_fhir:
            condition = _parse_coding(top_fhir["condition"], path, "fhir.condition")
    endpoint = raw["endpoint"]
    try:
        time_unit = str(endpoint["time"]["unit"])
    except (KeyError, TypeError) as err:
        raise _fail(path, "endpoint", "needs time.unit") from err
    if time_unit != "a":
        raise _fail(path, "endpoint", f"time.unit must be 'a' (years), got {time_unit!r}")
    zero_allowed = endpoint["time"].get("zero_allowed", False)
    if not isinstance(zero_allowed, bool):
        raise _fail(path, "endpoint", f"time.zero_allowed must be true or false, got {zero_allowed!r}")
    return Guide(
        use_case=str(raw["use_case"]),
        version=str(raw["version"]),
        description=str(raw.get("description", "")).strip(),
        features=features,
        time_unit=time_unit,
        path=str(path),
        condition=condition,
        time_zero_allowed=zero_allowed,
    )
