"""The shape of a ``Parameters`` resource that code reading it relies on.

``$operation`` handlers and FHIRPath Patch read parameters by name and take their ``value[x]`` as the
type the name says; a body where ``parameter`` is not an array, a name is not a string or a
``valueInteger`` is an object must be a 400 before any of them looks.
"""

from __future__ import annotations

from typing import Any

from fhir_server import definitions
from fhir_server.interactions.errors import FhirError

_NUMBERS = frozenset({"integer", "positiveInt", "unsignedInt", "integer64"})


def _json_type_ok(fhir_type: str, value: Any) -> bool:
    """Does ``value`` have the JSON type a ``value[fhir_type]`` needs (FHIR JSON, R4)?"""
    if fhir_type == "boolean":
        return isinstance(value, bool)
    if fhir_type in _NUMBERS:
        return isinstance(value, int) and not isinstance(value, bool)
    if fhir_type == "decimal":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if fhir_type in definitions.primitive_types():
        return isinstance(value, str)
    return isinstance(value, dict)


def _check_parameter(p: Any, where: str) -> None:
    if not isinstance(p, dict):
        raise FhirError(400, f"{where} must be a JSON object", code="structure", expression=[where])
    if not isinstance(p.get("name"), str):
        raise FhirError(400, f"{where}.name must be a string", code="required", expression=[f"{where}.name"])
    values = [k for k in p if k.startswith("value")]
    if len(values) + ("resource" in p) > 1:
        raise FhirError(400, f"{where} has more than one value", code="structure", expression=[where])
    for key in values:
        fhir_type = key[5:6].lower() + key[6:]
        if not _json_type_ok(fhir_type, p[key]):
            raise FhirError(
                400,
                f"{where}.{key} is not a valid {fhir_type or 'value'}",
                code="value",
                expression=[f"{where}.{key}"],
            )
    if "resource" in p and not isinstance(p["resource"], dict):
        raise FhirError(
            400, f"{where}.resource must be a JSON object", code="structure", expression=[f"{where}.resource"]
        )
    if "part" in p:
        parts = p["part"]
        if not isinstance(parts, list):
            raise FhirError(
                400, f"{where}.part must be an array", code="structure", expression=[f"{where}.part"]
            )
        for n, part in enumerate(parts):
            _check_parameter(part, f"{where}.part[{n}]")


def check_parameters(parameters: dict[str, Any]) -> None:
    """The shape every handler relies on (400 otherwise): ``parameter`` an array of named parameters,
    each value of the JSON type its ``value[x]`` name says, ``part`` arrays of the same."""
    listed = parameters.get("parameter", [])
    if not isinstance(listed, list):
        raise FhirError(
            400,
            "Parameters.parameter must be an array",
            code="structure",
            expression=["Parameters.parameter"],
        )
    for n, p in enumerate(listed):
        _check_parameter(p, f"Parameters.parameter[{n}]")
