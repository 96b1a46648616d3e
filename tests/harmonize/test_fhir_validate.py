"""Validating by shape gives the same verdicts as fhir.resources on every resource, damaged or not."""

from __future__ import annotations

import copy
import math

import numpy as np
import orjson
import polars as pl
import pytest

from fedjax_rhd.simulate.mds import simulate_mds
from harmonize.fhir import FhirValidationError, ingest_source, validate_resource
from harmonize.fhir_validate import ShapeValidator, resource_shape, valid_id
from harmonize.sources import CanonicalExportSource, write_canonical_export


@pytest.fixture(scope="module")
def resources(tmp_path_factory, mds_guide):
    df = simulate_mds(mds_guide, n=60, seed=3)
    df = df.with_columns(pl.Series("centre", np.array(["A", "B"])[np.arange(df.height) % 2]))
    root = tmp_path_factory.mktemp("shape")
    write_canonical_export(df, mds_guide, root / "export", {"source": "test"})
    ingest_source(CanonicalExportSource(root / "export", mds_guide), mds_guide, root / "fhir")
    return [
        orjson.loads(line)
        for path in sorted((root / "fhir").rglob("*.ndjson"))
        for line in path.read_bytes().splitlines()
    ]


def _full_verdict(resource) -> bool:
    try:
        validate_resource(resource, where="t")
    except FhirValidationError:
        return False
    return True


def _first_number_path(node, path=()):
    """Path to the first ``value`` number in a resource (a Quantity's), or None."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "value" and isinstance(value, (int, float)) and not isinstance(value, bool):
                return (*path, key)
            found = _first_number_path(value, (*path, key))
            if found:
                return found
    if isinstance(node, list):
        for i, item in enumerate(node):
            found = _first_number_path(item, (*path, i))
            if found:
                return found
    return None


def _set(node, path, value):
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


def _damaged(resource):
    """Variants that break exactly one abstracted value's rule, or a field the shape keeps."""
    out = []
    for bad_id in ["has space", "x" * 256, "", "ü", 7]:
        r = copy.deepcopy(resource)
        r["id"] = bad_id
        out.append(r)
    if "subject" in resource:
        for bad_ref in ["", "   ", 3]:
            r = copy.deepcopy(resource)
            r["subject"]["reference"] = bad_ref
            out.append(r)
    path = _first_number_path(resource)
    if path is not None:
        for bad in [math.nan, math.inf, -math.inf, "12", True, None, [1.0]]:
            r = copy.deepcopy(resource)
            _set(r, path, bad)
            out.append(r)
    for key in ("status", "code"):
        if key in resource:
            r = copy.deepcopy(resource)
            r.pop(key)
            out.append(r)
    return out


def test_builder_output_is_few_shapes_and_all_valid(resources):
    check = ShapeValidator(validate_resource)
    for r in resources:
        check(r, where="t")  # raises on an invalid one
    assert check.n_checked == len(resources)
    # 60 patients x ~23 resources but far fewer shapes: that is the saving.
    assert check.n_full < len(resources) / 5


def test_damaged_resources_get_the_full_validators_verdict_after_their_valid_shape_was_seen(resources):
    check = ShapeValidator(validate_resource)
    for r in resources:
        check(r, where="t")
    n_damaged = 0
    for r in resources[::7]:
        for bad in _damaged(r):
            n_damaged += 1
            expected = _full_verdict(bad)
            try:
                check(bad, where="t")
                got = True
            except FhirValidationError:
                got = False
            assert got == expected, (bad, expected)
    assert n_damaged > 100


def test_valid_values_are_abstracted_and_invalid_ones_kept():
    base = {"resourceType": "Observation", "id": "p1-os", "subject": {"reference": "Patient/p1"}}
    same = {"resourceType": "Observation", "id": "p2-os", "subject": {"reference": "Patient/p2"}}
    assert resource_shape(base) == resource_shape(same)
    assert resource_shape(base) != resource_shape({**base, "id": "bad id"})
    assert resource_shape(base) != resource_shape({**base, "subject": {"reference": "Group/p1"}})
    q = {"valueQuantity": {"value": 1.5, "unit": "g/dL"}}
    assert resource_shape(q) == resource_shape({"valueQuantity": {"value": -7, "unit": "g/dL"}})
    assert resource_shape(q) != resource_shape({"valueQuantity": {"value": math.nan, "unit": "g/dL"}})
    assert resource_shape(q) != resource_shape({"valueQuantity": {"value": True, "unit": "g/dL"}})
    # JSON would write both as null: a NaN must not ride on a valid shape without a value.
    nan = {"valueQuantity": {"value": math.nan, "unit": "g/dL"}}
    assert resource_shape(nan) != resource_shape({"valueQuantity": {"value": None, "unit": "g/dL"}})
    assert valid_id("a-B.9") and not valid_id("a_b") and not valid_id("")
