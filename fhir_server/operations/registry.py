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


_BLOCKING_CODES = frozenset({"structure", "value"})


def check_complex(name: str, value: dict[str, Any], fhir_type: str) -> None:
    """400 when a complex parameter (a Coding, a CodeableConcept, an inline ValueSet...) has elements of
    the wrong JSON type or unknown elements: handlers read them as well-formed FHIR."""
    from fhir_server.validation.validator import validate

    if definitions.is_resource_type(fhir_type):
        if value.get("resourceType") != fhir_type:
            raise FhirError(
                400,
                f"Parameter '{name}' must be a {fhir_type} resource",
                expression=[f"{fhir_type}.resourceType"],
            )
        issues = validate(value)
    else:
        wrapped = {"resourceType": "Parameters", "parameter": [{"name": name, f"value{fhir_type}": value}]}
        issues = validate(wrapped)
    blocking = [i for i in issues if i.get("severity") == "error" and i.get("code") in _BLOCKING_CODES]
    if blocking:
        first = blocking[0].get("diagnostics", "")
        raise FhirError(400, f"Parameter '{name}' is not a valid {fhir_type}: {first}", issues=blocking)
