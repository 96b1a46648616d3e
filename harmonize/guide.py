"""Implementation guides: the one feature schema of a use case.

A guide (``harmonize/guides/<use_case>.yaml``) names every feature with its kind,
group, canonical unit and valid range, plus the survival endpoint. Simulators,
configs, the data layer and the models all read it through :func:`load_guide`,
which validates the file and fails naming the file, the feature and the field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import yaml

GUIDES_DIR = Path(__file__).resolve().parent / "guides"

FeatureKind = Literal["continuous", "binary", "categorical"]
KINDS: tuple[str, ...] = ("continuous", "binary", "categorical")
GROUPS: tuple[str, ...] = ("clinical", "cytogenetic", "genomic", "treatment", "wsi", "pet", "cnv")


class GuideError(ValueError):
    """A guide file is malformed; the message names the file, feature and field."""


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
    """

    name: str
    kind: FeatureKind
    group: str
    unit: str | None = None
    valid_range: tuple[float, float] | None = None
    levels: tuple[str, ...] = ()
    log: bool = False

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
    allowed = {"name", "kind", "group", "unit", "range", "levels", "log", "fhir"}
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
    return Feature(
        name=name,
        kind=kind,
        group=group,
        unit=raw.get("unit"),
        valid_range=valid_range,
        levels=levels,
        log=bool(raw.get("log", False)),
    )


def load_guide(use_case_or_path: str | Path) -> Guide:
    """Load and validate a guide by use-case name (shipped guides) or file path.

    Raises:
        GuideError: naming the file, the feature and the field at fault.
        FileNotFoundError: when no such guide exists.
    """
    path = Path(use_case_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = GUIDES_DIR / f"{use_case_or_path}.yaml"
    if not path.is_file():
        shipped = sorted(p.stem for p in GUIDES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no guide at {path}; shipped guides: {shipped}")
    raw = yaml.safe_load(path.read_text())
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
    endpoint = raw["endpoint"]
    try:
        time_unit = str(endpoint["time"]["unit"])
    except (KeyError, TypeError) as err:
        raise _fail(path, "endpoint", "needs time.unit") from err
    if time_unit != "a":
        raise _fail(path, "endpoint", f"time.unit must be 'a' (years), got {time_unit!r}")
    return Guide(
        use_case=str(raw["use_case"]),
        version=str(raw["version"]),
        description=str(raw.get("description", "")).strip(),
        features=features,
        time_unit=time_unit,
        path=str(path),
    )
