"""Validate many resources of few shapes at the cost of their shapes, with the same verdicts.

A cohort's resources come from one builder and a guide, so thousands of them differ only in their
``id``, their subject reference and numbers (``Quantity.value``): 600 simulated patients give about
14,000 resources but a few hundred shapes, and ``fhir.resources`` (pydantic) spends about 2 ms on
each one, most of a dataset build. :class:`ShapeValidator` validates each distinct *shape* once with
``fhir.resources`` and checks the abstracted values by their datatype's own rule instead:

- a top-level ``id`` matching the ``id`` datatype's pattern and length (read from ``fhir_core``'s
  constants, so a library that changes them changes this);
- a ``reference`` string ``Patient/<id>`` with such an id (a FHIR ``string`` of that form is valid);
- a number under a ``value`` key that is a finite ``int``/``float`` (not ``bool``): every finite
  number is a valid FHIR ``decimal``; NaN and infinities are not, and are left in the shape.

Only values that satisfy their rule are replaced by a placeholder; anything else stays in the shape,
so a resource with a bad id or a NaN is validated in full and fails with ``fhir.resources``' own
message. Validation of a pydantic model is compositional over fields (no FHIRPath invariants are
evaluated), so a resource is valid exactly when its shape is valid and each abstracted value meets
its rule; ``tests/harmonize/test_fhir_validate.py`` checks the verdicts equal full validation on
damaged resources.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import fhir_core.constraints

_ID = re.compile(fhir_core.constraints.TYPES_ID_PATTERN)
_ID_MAX = fhir_core.constraints.TYPES_ID_MAX_LENGTH
_PATIENT_PREFIX = "Patient/"
_PLACEHOLDER_ID = "id"
_PLACEHOLDER_REF = "Patient/id"
_PLACEHOLDER_NUMBER = 1.0


def valid_id(value: object) -> bool:
    """Whether ``value`` is a valid FHIR ``id`` by ``fhir_core``'s pattern and length limit."""
    return (
        isinstance(value, str)
        and (_ID_MAX is None or len(value) <= _ID_MAX)
        and _ID.fullmatch(value) is not None
    )


def _finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _abstract(node: Any, *, top: bool) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if top and key == "id" and valid_id(value):
                out[key] = _PLACEHOLDER_ID
            elif (
                key == "reference"
                and isinstance(value, str)
                and value.startswith(_PATIENT_PREFIX)
                and valid_id(value[len(_PATIENT_PREFIX) :])
            ):
                out[key] = _PLACEHOLDER_REF
            elif key == "value" and _finite_number(value):
                out[key] = _PLACEHOLDER_NUMBER
            else:
                out[key] = _abstract(value, top=False)
        return out
    if isinstance(node, list):
        return [_abstract(item, top=False) for item in node]
    return node


def resource_shape(resource: dict[str, Any]) -> str:
    """The resource with its valid id, patient reference and finite numbers replaced, as a key.

    ``repr``, not JSON: JSON writes NaN and None alike (``null``), and a NaN must never share a
    shape with a valid resource whose value is absent.
    """
    return repr(_abstract(resource, top=True))


class ShapeValidator:
    """Calls ``validate`` once per distinct shape; later resources of a known-valid shape pass.

    Args:
        validate: the full validator, ``validate(resource, where=...)``, raising on an invalid
            resource (``harmonize.fhir.validate_resource``).

    Invalid shapes are not remembered: each resource of one is validated in full and raises.
    """

    def __init__(self, validate: Callable[..., None]) -> None:
        self._validate = validate
        self._valid: set[str] = set()
        self.n_full = 0
        self.n_checked = 0

    def __call__(self, resource: dict[str, Any], *, where: str) -> None:
        """Validate ``resource`` (raises exactly when full validation raises)."""
        self.n_checked += 1
        shape = resource_shape(resource)
        if shape in self._valid:
            return
        self.n_full += 1
        self._validate(resource, where=where)
        self._valid.add(shape)
