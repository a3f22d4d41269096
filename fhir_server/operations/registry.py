"""The table of ``$operations``: one entry per operation, looked up by the HTTP layer.

An operation handler is a plain async function ``handler(request) -> OperationResult``. Handlers know
nothing about HTTP; the router builds the ``OperationRequest`` from either a ``Parameters`` body (POST)
or the query string (GET, each parameter becoming a ``valueString``), and turns the result into a
response. Register handlers by adding them to ``fhir_server/operations/table.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from fhir_server import definitions
from fhir_server.interactions.context import RequestContext
from fhir_server.interactions.errors import FhirError

Level = Literal["system", "type", "instance"]


@dataclass
class OperationRequest:
    name: str  # without the leading "$"
    level: Level
    resource_type: str | None
    id: str | None
    method: str  # GET or POST
    parameters: dict[str, Any]  # a FHIR Parameters resource
    context: RequestContext
    # For operations whose POST body is a resource rather than Parameters (e.g. $validate may get one).
    body_resource: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class OperationResult:
    body: dict[str, Any] | None = None  # a FHIR resource (Parameters, Bundle, OperationOutcome, ...)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None  # pre-serialised body (streams, NDJSON), with headers naming its type


Handler = Callable[[OperationRequest], Awaitable[OperationResult]]


@dataclass(frozen=True)
class Operation:
    name: str
    handler: Handler
    resource_types: tuple[str, ...] = ()  # empty with system=True only: system-level operation
    system: bool = False
    type_level: bool = False
    instance_level: bool = False
    affects_state: bool = False
    get_allowed: bool = True
    definition: str = ""  # canonical URL of its OperationDefinition
    # ``_format`` is one of its parameters (an output format), not FHIR's response format.
    takes_format: bool = False


def find(table: list[Operation], name: str, level: Level, resource_type: str | None) -> Operation | None:
    for op in table:
        if op.name != name:
            continue
        if level == "system" and op.system:
            return op
        at_level = (level == "type" and op.type_level) or (level == "instance" and op.instance_level)
        if resource_type in op.resource_types and at_level:
            return op
    return None


def parameter_values(parameters: dict[str, Any], name: str) -> list[Any]:
    """The ``value[x]`` (or ``resource``) of every parameter called ``name``, whatever its type."""
    out: list[Any] = []
    listed = parameters.get("parameter")
    for p in listed if isinstance(listed, list) else ():
        if not isinstance(p, dict) or p.get("name") != name:
            continue
        if "resource" in p:
            out.append(p["resource"])
            continue
        for key, value in p.items():
            if key.startswith("value"):
                out.append(value)
                break
        else:
            if "part" in p:
                out.append(p)
    return out


def parameter_value(parameters: dict[str, Any], name: str) -> Any:
    values = parameter_values(parameters, name)
    return values[0] if values else None


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
