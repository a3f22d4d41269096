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

from fhir_server.interactions.context import RequestContext

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
    for p in parameters.get("parameter", []) or []:
        if p.get("name") != name:
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
